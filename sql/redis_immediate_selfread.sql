--
-- pgpoly_redis, write_mode 'immediate': a statement that scans the table it
-- writes sees the table as of its start, as a native table shows a
-- statement none of its own writes.  SCAN may return keys added while it
-- iterates, so with fetch_size 10 (SCAN takes many rounds) an INSERT ...
-- SELECT from the table itself would read rows it inserted, and an UPDATE
-- moving keys would meet keys it moved.  Differential: each statement runs
-- on the Redis tables and on native copies; counts and contents must agree.
-- batch_size 10: the writes land while the SCAN still runs.
--
\getenv redis_port REDIS_PORT
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_isr:*' | xargs -r redis-cli -p "$REDIS_PORT" del > /dev/null

CREATE SERVER risr FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER risr;
CREATE FOREIGN TABLE isr_h (key text OPTIONS (key 'true'), v text, n int)
  SERVER risr OPTIONS (key_prefix 'regress_isr:h:', fetch_size '10', batch_size '10',
                       write_mode 'immediate');
CREATE FOREIGN TABLE isr_s (key text OPTIONS (key 'true'), v text)
  SERVER risr OPTIONS (table_type 'string', key_prefix 'regress_isr:s:', fetch_size '10', batch_size '10',
                       write_mode 'immediate');
CREATE TABLE isr_hn (key text, v text, n int);
CREATE TABLE isr_sn (key text, v text);

-- the Redis table and its native copy hold the same rows
CREATE FUNCTION isr_same(f regclass, n regclass) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  fc bigint; nc bigint; diff bigint; ex text;
BEGIN
  EXECUTE format('SELECT count(*) FROM %s', f) INTO fc;
  EXECUTE format('SELECT count(*) FROM %s', n) INTO nc;
  EXECUTE format('SELECT count(*) FROM ((TABLE %s EXCEPT ALL TABLE %s) UNION ALL (TABLE %s EXCEPT ALL TABLE %s)) d',
                 f, n, n, f) INTO diff;
  EXECUTE format('SELECT string_agg(x, '' '') FROM (SELECT x FROM ((SELECT ''+'' || key FROM %s EXCEPT SELECT ''+'' || key FROM %s) UNION ALL (SELECT ''-'' || key FROM %s EXCEPT SELECT ''-'' || key FROM %s)) d(x) ORDER BY x LIMIT 4) e',
                 f, n, n, f) INTO ex;
  RETURN format('%s rows, native %s, %s differ %s', fc, nc, diff, ex);
END $$;

INSERT INTO isr_hn SELECT 'k' || g, 'v' || g, g FROM generate_series(1, 500) g;
INSERT INTO isr_h SELECT * FROM isr_hn;
INSERT INTO isr_sn SELECT 'k' || g, 'v' || g FROM generate_series(1, 300) g;
INSERT INTO isr_s SELECT * FROM isr_sn;
SELECT isr_same('isr_h', 'isr_hn');
SELECT isr_same('isr_s', 'isr_sn');

-- INSERT ... SELECT from the table itself: 500 rows read, 500 inserted
INSERT INTO isr_h SELECT key || 'x', v, n FROM isr_h;
INSERT INTO isr_hn SELECT key || 'x', v, n FROM isr_hn;
SELECT isr_same('isr_h', 'isr_hn');

-- the same, reading the key alone (a key-only SCAN of a string table)
INSERT INTO isr_s SELECT key || 'x', 'c' FROM isr_s;
INSERT INTO isr_sn SELECT key || 'x', 'c' FROM isr_sn;
SELECT isr_same('isr_s', 'isr_sn');

-- an UPDATE moving every key: each row moves once
UPDATE isr_h SET key = key || 'y';
UPDATE isr_hn SET key = key || 'y';
SELECT isr_same('isr_h', 'isr_hn');
WITH u AS (UPDATE isr_h SET key = key || 'z', n = n + 1 RETURNING key)
SELECT count(*), count(DISTINCT key) FROM u;
UPDATE isr_hn SET key = key || 'z', n = n + 1;
SELECT isr_same('isr_h', 'isr_hn');

-- a DELETE whose rows are inserted again under new keys in the same statement
WITH d AS (DELETE FROM isr_h WHERE n % 2 = 0 RETURNING *)
INSERT INTO isr_h SELECT key || 'w', v, n + 1 FROM d;
WITH d AS (DELETE FROM isr_hn WHERE n % 2 = 0 RETURNING *)
INSERT INTO isr_hn SELECT key || 'w', v, n + 1 FROM d;
SELECT isr_same('isr_h', 'isr_hn');

-- the Redis round trips of q's scan (EXPLAIN ANALYZE; q runs)
CREATE FUNCTION isr_trips(q text) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
  plan jsonb;
BEGIN
  EXECUTE 'EXPLAIN (ANALYZE, FORMAT JSON) ' || q INTO plan;
  RETURN jsonb_path_query_first(plan, 'strict $.**."Redis Round Trips"')::int;
END $$;

-- a plain SELECT streams: LIMIT 1 takes a round or two of the ~100 SCAN steps
SELECT isr_trips('SELECT * FROM isr_h LIMIT 1') < 10 AS streams;
SELECT count(*), count(DISTINCT key) FROM isr_h;
-- under an immediate-mode INSERT the SCAN runs to its end first
SELECT isr_trips($$INSERT INTO isr_h SELECT key || 'l', v, n FROM isr_h LIMIT 1$$) > 50
  AS listed_first;
DELETE FROM isr_h WHERE key LIKE '%l';
SELECT isr_same('isr_h', 'isr_hn');

-- transactional mode: the writes are buffered, the scan streams
ALTER FOREIGN TABLE isr_h OPTIONS (SET write_mode 'transactional');
SELECT isr_trips($$INSERT INTO isr_h SELECT key || 'l', v, n FROM isr_h LIMIT 1$$) < 10
  AS streams;
DELETE FROM isr_h WHERE key LIKE '%l';
INSERT INTO isr_h SELECT key || 'q', v, n FROM isr_h;
INSERT INTO isr_hn SELECT key || 'q', v, n FROM isr_hn;
SELECT isr_same('isr_h', 'isr_hn');

DROP FUNCTION isr_same(regclass, regclass), isr_trips(text);
DROP TABLE isr_hn, isr_sn;
DROP SERVER risr CASCADE;
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_isr:*' | xargs -r redis-cli -p "$REDIS_PORT" del > /dev/null
