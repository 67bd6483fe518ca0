-- pgpoly_elastic as client drivers use PostgreSQL: prepared statements whose
-- cached (generic) plan pushes ORDER BY, LIMIT or count(*) to Elasticsearch,
-- run in a transaction that writes the table (read-your-writes needs the
-- plan that keeps them local); a cursor over count(*) declared before the
-- writes; use_remote_estimate with writes pending.  Each answer is shown
-- beside the same statement's on a native copy.  Index regress_escl.
\getenv es_url ES_URL
CREATE SERVER escl FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('escl', 'DELETE', '/regress_escl') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('escl', 'PUT', '/regress_escl',
    '{"mappings": {"properties": {"n": {"type": "integer"}}}}')->>'acknowledged';
CREATE FOREIGN TABLE e (_id text, n int) SERVER escl
  OPTIONS (index 'regress_escl', refresh 'true');
CREATE TABLE en (_id text, n int);
INSERT INTO en SELECT 'd' || i, i FROM generate_series(1, 20) i;
INSERT INTO e SELECT * FROM en;

SET plan_cache_mode = force_generic_plan;
PREPARE top_e AS SELECT * FROM e ORDER BY n DESC LIMIT 3;
PREPARE top_n AS SELECT * FROM en ORDER BY n DESC LIMIT 3;
PREPARE cnt_e(int) AS SELECT count(*) FROM e WHERE n > $1;
PREPARE cnt_n(int) AS SELECT count(*) FROM en WHERE n > $1;
-- The generic plans push the sort, the limit and the count.
EXPLAIN (COSTS OFF) EXECUTE top_e;
EXPLAIN (COSTS OFF) EXECUTE cnt_e(5);
EXECUTE top_e;
EXECUTE cnt_e(5);

-- Writes, then the same prepared statements: replanned, they see them.
BEGIN;
INSERT INTO e VALUES ('x1', 100);
INSERT INTO en VALUES ('x1', 100);
UPDATE e SET n = -1 WHERE _id = 'd20';
UPDATE en SET n = -1 WHERE _id = 'd20';
EXECUTE top_e;
EXECUTE top_n;
EXECUTE cnt_e(5);
EXECUTE cnt_n(5);
EXPLAIN (COSTS OFF) EXECUTE cnt_e(5);
ROLLBACK;
-- After the transaction the plans push again.
EXPLAIN (COSTS OFF) EXECUTE cnt_e(5);
EXECUTE cnt_e(5);

-- A cursor over count(*) declared before the transaction's first write
-- (planned with _count) counts without the writes made after DECLARE.
BEGIN;
DECLARE cc CURSOR FOR SELECT count(*) FROM e WHERE n > 5;
DECLARE cn CURSOR FOR SELECT count(*) FROM en WHERE n > 5;
EXPLAIN (COSTS OFF) SELECT count(*) FROM e WHERE n > 5;
DELETE FROM e WHERE _id = 'd19';
DELETE FROM en WHERE _id = 'd19';
FETCH cc;
FETCH cn;
ROLLBACK;

-- use_remote_estimate plans with _count: an estimate does not need the
-- transaction's writes.
ALTER FOREIGN TABLE e OPTIONS (ADD use_remote_estimate 'true');
BEGIN;
INSERT INTO e VALUES ('x2', 1);
SELECT count(*) FROM e;
ROLLBACK;

DROP SERVER escl CASCADE;
DROP TABLE en;
