-- pgpoly_redis: joins of local tables to Redis tables on the key column.
\getenv redis_port REDIS_PORT
CREATE SERVER rj FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE FOREIGN TABLE feat (user_id text OPTIONS (key 'true'), clicks int, ctr float8)
  SERVER rj OPTIONS (key_prefix 'regress_join:', fetch_size '4');
INSERT INTO feat SELECT 'u' || i, i, i / 100.0 FROM generate_series(1, 20) i;
CREATE TABLE users (user_id text PRIMARY KEY, name text, country text);
INSERT INTO users SELECT 'u' || i, 'user ' || i, CASE WHEN i % 3 = 0 THEN 'de' ELSE 'fr' END
  FROM generate_series(1, 25) i;
INSERT INTO users VALUES ('u_null', NULL, NULL);
ANALYZE users;

-- Inner join: batched, pipelined key lookups instead of a SCAN of the prefix.
EXPLAIN (VERBOSE, COSTS OFF)
  SELECT u.name, f.clicks FROM users u JOIN feat f ON f.user_id = u.user_id;
SELECT u.name, f.clicks FROM users u JOIN feat f ON f.user_id = u.user_id
  ORDER BY f.clicks;
-- 26 outer rows in rounds of fetch_size 4: 7 round trips, not 26, no SCAN.
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
  SELECT u.name, f.clicks FROM users u JOIN feat f ON f.user_id = u.user_id;

-- Left join keeps the unmatched local rows.
SELECT u.user_id, f.clicks FROM users u LEFT JOIN feat f ON f.user_id = u.user_id
  WHERE u.user_id IN ('u1', 'u21', 'u_null') ORDER BY 1;
-- Extra join conditions and filters on both sides.
EXPLAIN (VERBOSE, COSTS OFF)
  SELECT u.user_id, f.ctr FROM users u LEFT JOIN feat f
    ON f.user_id = u.user_id AND f.clicks > 10
  WHERE u.country = 'de';
SELECT u.user_id, f.ctr FROM users u LEFT JOIN feat f
    ON f.user_id = u.user_id AND f.clicks > 10
  WHERE u.country = 'de' ORDER BY 1;
SELECT u.user_id, f.clicks FROM users u JOIN feat f ON f.user_id = u.user_id
  WHERE f.clicks % 5 = 0 AND u.country = 'fr' ORDER BY 1;
-- Semi and anti joins.
SELECT count(*) FROM users u WHERE EXISTS (SELECT 1 FROM feat f WHERE f.user_id = u.user_id);
SELECT user_id FROM users u WHERE NOT EXISTS (SELECT 1 FROM feat f WHERE f.user_id = u.user_id)
  ORDER BY 1;
-- Duplicate outer keys are fetched once and joined to every outer row.
SELECT x.k, f.clicks FROM (VALUES ('u2'), ('u2'), ('u3'), ('nope')) x(k)
  JOIN feat f ON f.user_id = x.k ORDER BY 1;
-- An expression on the outer side.
SELECT x.n, f.clicks FROM generate_series(1, 3) x(n) JOIN feat f ON f.user_id = 'u' || x.n
  ORDER BY 1;
-- The join sees writes buffered earlier in the transaction.
BEGIN;
UPDATE feat SET clicks = -1 WHERE user_id = 'u1';
DELETE FROM feat WHERE user_id = 'u2';
INSERT INTO feat VALUES ('u21', 21, 0.21);
SELECT u.user_id, f.clicks FROM users u JOIN feat f ON f.user_id = u.user_id
  WHERE u.user_id IN ('u1', 'u2', 'u21') ORDER BY 1;
ROLLBACK;
-- A three-way join: the Redis table joined to the result of a local join.
CREATE TABLE countries (code text PRIMARY KEY, label text);
INSERT INTO countries VALUES ('de', 'Germany'), ('fr', 'France');
SELECT c.label, sum(f.clicks) FROM users u JOIN countries c ON c.code = u.country
  JOIN feat f ON f.user_id = u.user_id GROUP BY c.label ORDER BY 1;
-- Inside subqueries (range table indexes shifted by the planner).
SELECT * FROM (SELECT count(*), sum(f.clicks) FROM users u JOIN feat f USING (user_id)) x;
SELECT (SELECT sum(f.clicks) FROM users u JOIN feat f USING (user_id) WHERE u.country = c.code)
  FROM countries c ORDER BY c.code;
-- Both sides in Redis: the node reads the side it planned as inner.
CREATE FOREIGN TABLE feat2 (user_id text OPTIONS (key 'true'), clicks int)
  SERVER rj OPTIONS (key_prefix 'regress_join:');
SELECT count(*), sum(a.clicks + b.clicks) FROM feat a JOIN feat2 b ON b.user_id = a.user_id;
SELECT count(*) FROM users u JOIN feat a ON a.user_id = u.user_id
  JOIN feat2 b ON b.user_id = a.user_id;
DROP FOREIGN TABLE feat2;
-- The join node can be turned off.
SET pgpoly.enable_batched_join = off;
EXPLAIN (COSTS OFF)
  SELECT u.name, f.clicks FROM users u JOIN feat f ON f.user_id = u.user_id;
RESET pgpoly.enable_batched_join;

DELETE FROM feat;
DROP TABLE users, countries;
DROP SERVER rj CASCADE;
