-- The set of keys a scan has met (fdw/redis_scan.c, RedisKeySet) and the
-- key lists built with it: a key is equal to another only when all its
-- bytes are, whatever their 32-bit hashes say.  The three pairs of keys
-- below were searched for so that each pair's full Redis keys
-- ('regress_ks:c3453' and 'regress_ks:c12489' ...) have the same hash
-- (keyset_hash: 8 bytes at a time, then murmur's finalizer); a set that
-- compared hashes only would drop one key of each pair.  Binary keys
-- (bytea): the empty key, NULs alone and inside, and lengths around the
-- 8-byte words the hash reads (a tail of 1-7 bytes, trailing NULs).  Every
-- read is compared with a native copy; differences are counted both ways.
\getenv redis_port REDIS_PORT
\set VERBOSITY terse
CREATE SERVER ks FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE FOREIGN TABLE ks_s (key text, value text) SERVER ks
  OPTIONS (table_type 'string', key_prefix 'regress_ks:', fetch_size '2', write_mode 'immediate');
CREATE FOREIGN TABLE ks_big (key text, value text) SERVER ks
  OPTIONS (table_type 'string', key_prefix 'regress_ks:', fetch_size '1000');
CREATE TABLE ks_native (key text, value text);
INSERT INTO ks_native VALUES
  ('c3453', 'a'), ('c12489', 'b'), ('c7889', 'c'), ('c78710', 'd'),
  ('c10268', 'e'), ('c113897', 'f');
INSERT INTO ks_native SELECT 'n' || g, 'v' || g FROM generate_series(1, 9) g;
INSERT INTO ks_s SELECT * FROM ks_native;
CREATE FUNCTION ks_diff(a text, b text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  EXECUTE format('WITH a AS MATERIALIZED (%s), b AS MATERIALIZED (%s)
                  SELECT count(*) FROM ((TABLE a EXCEPT ALL TABLE b)
                                        UNION ALL (TABLE b EXCEPT ALL TABLE a)) d', a, b)
    INTO n;
  RETURN n;
END $$;

-- Full scans: keys only (SCAN pages are the rows), and with values.
SELECT count(*) FROM ks_s;
SELECT key FROM ks_s WHERE key LIKE 'c%' ORDER BY key;
SELECT ks_diff('SELECT key FROM ks_s', 'SELECT key FROM ks_native') AS keys,
       ks_diff('SELECT key FROM ks_big', 'SELECT key FROM ks_native') AS keys_one_round,
       ks_diff('SELECT * FROM ks_s', 'SELECT * FROM ks_native') AS rows;
-- Key lists (deduplicated through the same set): both keys of each pair.
SELECT key, value FROM ks_s
  WHERE key IN ('c3453', 'c12489', 'c7889', 'c78710', 'c10268', 'c113897', 'c3453')
  ORDER BY key;
SELECT key FROM ks_s WHERE key = ANY (ARRAY['c12489', 'c3453', 'c12489']) ORDER BY key;
-- The batched join keys a batch's rows by their distinct keys (repeated,
-- colliding, missing); semi and anti joins read keys only.
CREATE TABLE ks_outer (id int, k text);
INSERT INTO ks_outer VALUES (1, 'c3453'), (2, 'c12489'), (3, 'c3453'), (4, 'c78710'),
  (5, 'c7889'), (6, 'nope'), (7, 'c113897'), (8, NULL), (9, 'c10268'), (10, 'c12489');
ANALYZE ks_outer;
EXPLAIN (COSTS OFF) SELECT o.id, s.value FROM ks_outer o JOIN ks_s s ON s.key = o.k;
SELECT o.id, o.k, s.value FROM ks_outer o LEFT JOIN ks_s s ON s.key = o.k ORDER BY o.id;
SELECT ks_diff('SELECT o.id, s.value FROM ks_outer o JOIN ks_s s ON s.key = o.k',
               'SELECT o.id, s.value FROM ks_outer o JOIN ks_native s ON s.key = o.k') AS join,
       ks_diff('SELECT id FROM ks_outer o WHERE EXISTS (SELECT 1 FROM ks_s s WHERE s.key = o.k)',
               'SELECT id FROM ks_outer o WHERE EXISTS (SELECT 1 FROM ks_native s WHERE s.key = o.k)') AS semi,
       ks_diff('SELECT id FROM ks_outer o WHERE NOT EXISTS (SELECT 1 FROM ks_s s WHERE s.key = o.k)',
               'SELECT id FROM ks_outer o WHERE NOT EXISTS (SELECT 1 FROM ks_native s WHERE s.key = o.k)') AS anti;

-- Binary keys.
CREATE FOREIGN TABLE ks_b (key bytea, value text) SERVER ks
  OPTIONS (table_type 'string', key_prefix 'regress_ks_b:', fetch_size '3', write_mode 'immediate');
CREATE TABLE ks_bnative (key bytea, value text);
INSERT INTO ks_bnative VALUES
  ('', 'empty'), ('\x00', 'nul'), ('\x0000', 'nul2'), ('\x6100', 'a-nul'), ('\x61', 'a'),
  ('\x0061', 'nul-a'), ('\x610062', 'a-nul-b');
INSERT INTO ks_bnative
  SELECT decode(repeat('00', n), 'hex'), 'nuls' || n FROM generate_series(3, 17) n;
INSERT INTO ks_bnative
  SELECT decode(repeat('61', n), 'hex'), 'as' || n FROM generate_series(2, 17) n;
INSERT INTO ks_bnative
  SELECT decode(repeat('61', n) || '00', 'hex'), 'as-nul' || n FROM generate_series(7, 9) n;
INSERT INTO ks_b SELECT * FROM ks_bnative;
SELECT count(*), (SELECT count(*) FROM ks_bnative) AS native FROM ks_b;
SELECT ks_diff('SELECT key FROM ks_b', 'SELECT key FROM ks_bnative') AS keys,
       ks_diff('SELECT * FROM ks_b', 'SELECT * FROM ks_bnative') AS rows,
       ks_diff('SELECT * FROM ks_b WHERE key IN (''\x00'', ''\x0000'', '''', ''\x6100'', ''\x00'')',
               'SELECT * FROM ks_bnative WHERE key IN (''\x00'', ''\x0000'', '''', ''\x6100'')') AS list,
       ks_diff('SELECT n.key, b.value FROM ks_bnative n JOIN ks_b b ON b.key = n.key',
               'SELECT key, value FROM ks_bnative') AS join;

DELETE FROM ks_s;
DELETE FROM ks_b;
SELECT count(*) FROM ks_s;
DROP FUNCTION ks_diff(text, text);
DROP TABLE ks_native, ks_outer, ks_bnative;
DROP SERVER ks CASCADE;
