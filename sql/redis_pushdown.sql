-- pgpoly_redis: what is pushed down, checked through EXPLAIN, and results.
\getenv redis_port REDIS_PORT
CREATE SERVER rp FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE FOREIGN TABLE u (user_id text OPTIONS (key 'true'), clicks int, country text)
  SERVER rp OPTIONS (key_prefix 'regress_push:u:', fetch_size '3');
INSERT INTO u SELECT 'u' || i, i, CASE WHEN i % 2 = 0 THEN 'de' ELSE 'fr' END
  FROM generate_series(1, 10) i;
-- A key that needs glob escaping lives under the same prefix.
INSERT INTO u VALUES ('we*ird[1]', 99, 'xx');

-- key = const: one key.
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM u WHERE user_id = 'u3';
SELECT * FROM u WHERE user_id = 'u3';
-- IN / ANY: pipelined, deduplicated, NULLs ignored.
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM u WHERE user_id IN ('u1', 'u2', 'nope');
SELECT * FROM u WHERE user_id IN ('u1', 'u2', 'nope', 'u1', NULL) ORDER BY user_id;
SELECT * FROM u WHERE user_id = ANY ('{u4,u5}'::text[]) ORDER BY user_id;
SELECT user_id FROM u WHERE user_id IN ('u6', 'u6');
-- A parameter.
PREPARE q(text) AS SELECT clicks FROM u WHERE user_id = $1;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE q('u7');
EXECUTE q('u7');
EXECUTE q('u8');
-- key = ANY(ARRAY(SELECT ...)): the subquery runs first, keys go to Redis.
CREATE TABLE wanted (id text);
INSERT INTO wanted VALUES ('u2'), ('u9'), ('zz');
EXPLAIN (VERBOSE, COSTS OFF)
  SELECT * FROM u WHERE user_id = ANY (ARRAY(SELECT id FROM wanted));
SELECT * FROM u WHERE user_id = ANY (ARRAY(SELECT id FROM wanted)) ORDER BY 1;
-- LIKE 'prefix%' becomes SCAN MATCH with the prefix glob-escaped.
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM u WHERE user_id LIKE 'u1%';
SELECT * FROM u WHERE user_id LIKE 'u1%' ORDER BY 1;
SELECT * FROM u WHERE user_id LIKE 'we*ird[%' ORDER BY 1;
-- Other LIKE patterns are filtered locally over a full SCAN.
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM u WHERE user_id LIKE '%1';
SELECT count(*) FROM u WHERE user_id LIKE '%1';
-- Non-key quals are evaluated locally.
SELECT user_id FROM u WHERE country = 'de' ORDER BY clicks;
-- Full scan, with fetch_size 3 (several SCAN rounds), every key once.
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM u;
SELECT count(*), count(DISTINCT user_id), sum(clicks) FROM u;

-- Row estimates: key = const is one row, IN (n) about n.
EXPLAIN SELECT * FROM u WHERE user_id = 'u1';
EXPLAIN SELECT * FROM u WHERE user_id IN ('u1', 'u2', 'u3', 'u4');

-- zset score ranges go to ZRANGEBYSCORE.
CREATE FOREIGN TABLE lb (key text, member text, score float8) SERVER rp
  OPTIONS (table_type 'zset', key_prefix 'regress_push:lb:');
INSERT INTO lb SELECT 'g', 'p' || i, i FROM generate_series(1, 10) i;
EXPLAIN (VERBOSE, COSTS OFF)
  SELECT member FROM lb WHERE key = 'g' AND score > 3 AND score <= 6;
SELECT member, score FROM lb WHERE key = 'g' AND score > 3 AND score <= 6 ORDER BY score;
SELECT member FROM lb WHERE key = 'g' AND 8 < score ORDER BY score;
SELECT member FROM lb WHERE score = 5;
SELECT member FROM lb WHERE key = 'g' AND score BETWEEN 2 AND 3 ORDER BY score;

-- Rescans restart correctly (inner side of a nested loop).
SET enable_hashjoin = off; SET enable_mergejoin = off;
SET pgpoly.enable_batched_join = off;
SELECT w.id, u.clicks FROM wanted w LEFT JOIN u ON u.user_id = w.id ORDER BY 1;
RESET enable_hashjoin; RESET enable_mergejoin; RESET pgpoly.enable_batched_join;

-- use_remote_estimate asks Redis (one round trip) instead of assuming a
-- large table.  (Redis samples other keys too, so check the order of size.)
CREATE FUNCTION plan_rows(q text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE j json;
BEGIN
  EXECUTE 'EXPLAIN (FORMAT JSON) ' || q INTO j;
  RETURN (j->0->'Plan'->>'Plan Rows')::float8;
END $$;
SELECT plan_rows('SELECT * FROM u') AS guessed;
ALTER FOREIGN TABLE u OPTIONS (ADD use_remote_estimate 'true');
SELECT plan_rows('SELECT * FROM u') < 1000 AS asked_redis;
ALTER FOREIGN TABLE u OPTIONS (DROP use_remote_estimate);
DROP FUNCTION plan_rows(text);

DELETE FROM u; DELETE FROM lb;
DROP TABLE wanted;
DROP SERVER rp CASCADE;
