-- Differential test of the key replies built flat (redis_resp.c build_flat:
-- a lookup's or join's fetch reply that is an array of bulk strings only,
-- copied once with each string NUL-terminated in place).  Values holding
-- CR, LF, CRLF, "\r\n$3\r\n" (RESP inside a value), empty strings and
-- strings longer than the reader's 64 kB buffer (the reply trickles in and
-- is resumed), in hashes (field/value pairs, HGETALL), in hashes read by
-- HMGET (a left join reading fields alone), in sets, lists and sorted sets
-- (single strings): every query must give the rows of the same query on a
-- native copy (EXCEPT ALL both ways: 0 differences), by key lookups, by the
-- batched join over fetch sizes 1, 3 and 1000, and by a full scan.
\getenv redis_port REDIS_PORT
CREATE SERVER rfr FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');

CREATE TABLE vals (i int, v text);
INSERT INTO vals VALUES
  (1, E'plain'), (2, E'a\rb'), (3, E'a\nb'), (4, E'a\r\nb'), (5, E'\r\n'),
  (6, E'\r'), (7, ''), (8, E'x\r\n$3\r\nabc\r\n'), (9, E'*2\r\n'),
  (10, repeat('long', 30000)), (11, repeat(E'\r\n', 40000)), (12, 'ünïcødé');

-- hashes: key h<i> with fields a (the value) and b (its length as text)
CREATE TABLE h_native (key text, a text, b int);
INSERT INTO h_native SELECT 'h' || i, v, length(v) FROM vals;
INSERT INTO h_native VALUES ('h13', NULL, 5), ('h14', E'only\r\na', NULL);
CREATE FOREIGN TABLE h_1000 (key text OPTIONS (key 'true'), a text, b int)
  SERVER rfr OPTIONS (key_prefix 'regress_fr:h:', write_mode 'immediate');
CREATE FOREIGN TABLE h_1 (key text OPTIONS (key 'true'), a text, b int)
  SERVER rfr OPTIONS (key_prefix 'regress_fr:h:', fetch_size '1');
CREATE FOREIGN TABLE h_3 (key text OPTIONS (key 'true'), a text, b int)
  SERVER rfr OPTIONS (key_prefix 'regress_fr:h:', fetch_size '3');
INSERT INTO h_1000 SELECT * FROM h_native;

-- a set, a list and a sorted set of the values (single strings per element)
CREATE TABLE m_native (key text, member text);
INSERT INTO m_native SELECT 'm' || (i % 3), v FROM vals;
CREATE FOREIGN TABLE s (key text, member text)
  SERVER rfr OPTIONS (table_type 'set', key_prefix 'regress_fr:s:', write_mode 'immediate');
INSERT INTO s SELECT * FROM m_native;
CREATE FOREIGN TABLE lst (key text, idx int, value text)
  SERVER rfr OPTIONS (table_type 'list', key_prefix 'regress_fr:l:', write_mode 'immediate');
INSERT INTO lst (key, value) SELECT key, member FROM m_native ORDER BY key, member;
CREATE FOREIGN TABLE z (key text, member text, score float8)
  SERVER rfr OPTIONS (table_type 'zset', key_prefix 'regress_fr:z:', write_mode 'immediate');
INSERT INTO z SELECT key, member, length(member) FROM m_native;

-- the outer side: every key, some twice, and keys Redis does not have
CREATE TABLE l (id int, k text);
INSERT INTO l SELECT i, 'h' || (i % 17) FROM generate_series(1, 40) i;
ANALYZE l;

-- diff(native query, foreign query): rows in one and not in the other
CREATE FUNCTION diff(q1 text, q2 text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
	EXECUTE format('SELECT count(*) FROM ((%s EXCEPT ALL %s) UNION ALL (%s EXCEPT ALL %s)) d',
				   q1, q2, q2, q1) INTO n;
	RETURN n;
END $$;

-- the batched join is the plan (HGETALL; HMGET for the left join of a, b)
EXPLAIN (COSTS OFF) SELECT l.id, h.a FROM l JOIN h_1000 h ON h.key = l.k;
EXPLAIN (COSTS OFF) SELECT l.id, h.a, h.b FROM l LEFT JOIN h_1000 h ON h.key = l.k;

SELECT t, diff(replace(q, '%s', 'h_native'), replace(q, '%s', t)) AS differences
FROM unnest(ARRAY['h_1', 'h_3', 'h_1000']) t,
     unnest(ARRAY[
       'SELECT l.id, h.key, h.a, h.b FROM l JOIN %s h ON h.key = l.k',
       'SELECT l.id, h.a, h.b FROM l LEFT JOIN %s h ON h.key = l.k',
       'SELECT l.id, length(h.a), md5(h.a) FROM l JOIN %s h ON h.key = l.k WHERE h.b > 3',
       'SELECT key, a, b FROM %s',
       'SELECT key, a, b FROM %s WHERE key IN (''h2'', ''h4'', ''h8'', ''h11'', ''h13'', ''h99'')'
     ]) q
ORDER BY 1, 2;

-- every key by a lookup of its own
SELECT count(*) AS lookups_differing FROM h_native n
WHERE (SELECT row(f.a, f.b) FROM h_1000 f WHERE f.key = n.key) IS DISTINCT FROM row(n.a, n.b);

-- sets, lists, sorted sets: by key lookups and full scans
SELECT diff('SELECT key, member FROM m_native', 'SELECT key, member FROM s') AS set_scan,
       diff('SELECT key, member FROM m_native WHERE key = ''m1''',
            'SELECT key, member FROM s WHERE key = ''m1''') AS set_lookup,
       diff('SELECT key, member FROM m_native', 'SELECT key, value FROM lst') AS list_scan,
       diff('SELECT key, member FROM m_native WHERE key = ''m2''',
            'SELECT key, value FROM lst WHERE key = ''m2''') AS list_lookup,
       diff('SELECT key, member, length(member)::float8 FROM m_native',
            'SELECT key, member, score FROM z') AS zset_scan,
       diff('SELECT key, member FROM m_native WHERE key = ''m0''',
            'SELECT key, member FROM z WHERE key = ''m0''') AS zset_lookup;

-- Clean up every key this test wrote.
DELETE FROM h_1000; DELETE FROM s; DELETE FROM lst; DELETE FROM z;
SELECT count(*) FROM h_1000;
DROP SERVER rfr CASCADE;
DROP TABLE vals, h_native, m_native, l;
DROP FUNCTION diff(text, text);
