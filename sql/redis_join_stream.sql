-- pgpoly_redis: the batched join sends a round's fetches in pieces as it
-- reads the outer rows, and reads the replies as the joined rows need them
-- (one round trip).  Other requests on the same connection in between, a
-- cursor stopped half way, LIMIT and an error reply must not change what
-- the join returns.
\getenv redis_port REDIS_PORT
CREATE SERVER rjs FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE FOREIGN TABLE js_feat (k text OPTIONS (key 'true'), n int, t text)
  SERVER rjs OPTIONS (key_prefix 'regress_js:');
-- the outer side on the same connection, in rounds of 7 keys
CREATE FOREIGN TABLE js_outer (k text OPTIONS (key 'true'), n int)
  SERVER rjs OPTIONS (key_prefix 'regress_js:', fetch_size '7');
INSERT INTO js_feat SELECT 'k' || i, i, repeat('x', i % 50) FROM generate_series(1, 300) i;
CREATE TABLE js_ids AS SELECT 'k' || i AS k, i FROM generate_series(1, 320) i;
ANALYZE js_ids;

-- One round of 320 keys, sent in pieces: still one round trip.
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
  SELECT sum(f.n) FROM js_ids l JOIN js_feat f ON f.k = l.k;
SELECT count(*), sum(f.n), sum(length(f.t)) FROM js_ids l JOIN js_feat f ON f.k = l.k;
SELECT count(*) FROM js_ids l LEFT JOIN js_feat f ON f.k = l.k WHERE f.k IS NULL;

-- The outer scan's own rounds go on the same connection while the join's
-- pieces are on their way: they read those replies first.
EXPLAIN (COSTS OFF)
  SELECT sum(f.n) FROM (SELECT k FROM js_outer OFFSET 0) o JOIN js_feat f ON f.k = o.k;
SELECT count(*), sum(f.n), sum(length(f.t))
  FROM (SELECT k FROM js_outer OFFSET 0) o JOIN js_feat f ON f.k = o.k;

-- LIMIT stops before the replies are all read; the next statement reads
-- the rest out of the way.
SELECT l.i, f.n FROM (SELECT * FROM js_ids ORDER BY i LIMIT 1000) l
  JOIN js_feat f ON f.k = l.k LIMIT 3;
SELECT f.k, f.n FROM js_ids l JOIN js_feat f ON f.k = l.k WHERE l.i = 300;

-- A cursor part-read; another query on the connection in between; the
-- cursor goes on with the rows it had not returned.
BEGIN;
DECLARE c CURSOR FOR SELECT l.i, f.n FROM js_ids l JOIN js_feat f ON f.k = l.k;
FETCH 2 FROM c;
SELECT n FROM js_feat WHERE k = 'k150';
FETCH 2 FROM c;
MOVE FORWARD ALL IN c;
COMMIT;

-- A key of another type in the round: the error is raised, and the
-- connection serves the next statement.
\set VERBOSITY terse
CREATE FOREIGN TABLE js_str (k text OPTIONS (key 'true'), v text)
  SERVER rjs OPTIONS (key_prefix 'regress_js:', table_type 'string');
DELETE FROM js_feat WHERE k = 'k250';
INSERT INTO js_str VALUES ('k250', 'a string');
SELECT count(*), sum(f.n) FROM js_ids l JOIN js_feat f ON f.k = l.k;
SELECT count(*), sum(f.n) FROM js_ids l JOIN js_feat f ON f.k = l.k WHERE l.i < 250;
\set VERBOSITY default

DELETE FROM js_str;
DELETE FROM js_feat;
DROP TABLE js_ids;
DROP SERVER rjs CASCADE;
