--
-- Parallel query.  A foreign scan never runs in a parallel worker of its
-- own plan (no store declares IsForeignScanParallelSafe): under a Gather it
-- stays in the leader, and reads the transaction's buffered writes there,
-- as a native twin n does (diff: 0 rows).  A worker can still reach a
-- store through a function its author marked PARALLEL SAFE; the worker
-- has neither the leader's buffered writes nor its connections, so it
-- would read past the transaction's own writes (n's twin function sees
-- them): that is an ERROR, as PostgreSQL refuses temporary tables in a
-- worker.  pgpoly's own PARALLEL SAFE functions compute only.
--
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL
SET timezone = 'UTC';
CREATE SCHEMA parallel_worker;
SET search_path = parallel_worker, public;
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_pw:*' | xargs -r redis-cli -p "$REDIS_PORT" del > /dev/null
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_pw"
CREATE SERVER pw_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE SERVER pw_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
CREATE SERVER pw_chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
SELECT pgpoly.elastic_request('pw_es', 'DELETE', '/regress_es_pw') IS NOT NULL AS cleaned;
CREATE FOREIGN TABLE r (id text OPTIONS (key 'true'), v int) SERVER pw_redis
  OPTIONS (key_prefix 'regress_pw:');
CREATE FOREIGN TABLE e (_id text, v int) SERVER pw_es
  OPTIONS (index 'regress_es_pw', refresh 'true');
CREATE FOREIGN TABLE c (id text, embedding real[], v int) SERVER pw_chroma
  OPTIONS (collection 'pgpoly_rt_pw', create_collection 'true', distance 'l2');
CREATE TABLE n (id text PRIMARY KEY, v int);
-- the native side of the joins: large enough for a parallel scan
CREATE TABLE big (id text, w int);
INSERT INTO big SELECT 'k' || (i % 40), i FROM generate_series(1, 20000) i;
ANALYZE big;
INSERT INTO n SELECT 'k' || i, i FROM generate_series(1, 30) i;
INSERT INTO r SELECT * FROM n;
INSERT INTO e SELECT * FROM n;
INSERT INTO c SELECT id, ARRAY[1, 0, 0]::real[], v FROM n;
-- one join per table, the same over n; the difference is a wrong answer
CREATE VIEW joined AS
  SELECT 'r' AS s, b.id, count(*) AS cnt, sum(t.v) AS total FROM big b JOIN r t ON t.id = b.id GROUP BY b.id
  UNION ALL SELECT 'e', b.id, count(*), sum(t.v) FROM big b JOIN e t ON t._id = b.id GROUP BY b.id
  UNION ALL SELECT 'c', b.id, count(*), sum(t.v) FROM big b JOIN c t ON t.id = b.id GROUP BY b.id;
CREATE FUNCTION diff() RETURNS TABLE (s text, id text, cnt bigint, total bigint, only_in text)
LANGUAGE sql AS $$
  WITH want AS (SELECT x.s, b.id, count(*) AS cnt, sum(t.v) AS total
                FROM big b JOIN n t ON t.id = b.id, (VALUES ('r'), ('e'), ('c')) x(s)
                GROUP BY x.s, b.id)
  SELECT * FROM ((SELECT *, 'store' FROM joined EXCEPT ALL SELECT *, 'store' FROM want)
                 UNION ALL
                 (SELECT *, 'native' FROM want EXCEPT ALL SELECT *, 'native' FROM joined)) d
  ORDER BY 1, 2 $$;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET enable_nestloop = off;
SET enable_mergejoin = off;
-- the native scan is parallel, the foreign scan is in the leader
EXPLAIN (COSTS OFF) SELECT b.id, sum(t.v) FROM big b JOIN r t ON t.id = b.id GROUP BY b.id;
SELECT * FROM diff();
BEGIN;
UPDATE n SET v = v * 100 WHERE v % 3 = 0;
UPDATE r SET v = v * 100 WHERE v % 3 = 0;
UPDATE e SET v = v * 100 WHERE v % 3 = 0;
UPDATE c SET v = v * 100 WHERE v % 3 = 0;
INSERT INTO n VALUES ('k35', 35);
INSERT INTO r VALUES ('k35', 35);
INSERT INTO e VALUES ('k35', 35);
INSERT INTO c VALUES ('k35', ARRAY[1, 0, 0]::real[], 35);
SELECT * FROM diff();
COMMIT;
SELECT * FROM diff();
RESET enable_nestloop;
RESET enable_mergejoin;

-- Functions marked PARALLEL SAFE reading each table, run in a worker.
CREATE FUNCTION fn(k text) RETURNS int LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT v FROM n WHERE id = k $$;
CREATE FUNCTION fr(k text) RETURNS int LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT v FROM r WHERE id = k $$;
CREATE FUNCTION fe(k text) RETURNS int LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT v FROM e WHERE _id = k $$;
CREATE FUNCTION fc(k text) RETURNS int LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT v FROM c WHERE id = k $$;
SET force_parallel_mode = on;
EXPLAIN (COSTS OFF) SELECT fr('w1');
BEGIN;
INSERT INTO n VALUES ('w1', 7);
INSERT INTO r VALUES ('w1', 7);
INSERT INTO e VALUES ('w1', 7);
INSERT INTO c VALUES ('w1', ARRAY[1, 0, 0]::real[], 7);
SELECT fn('w1');
SAVEPOINT s;
SELECT fr('w1');
ROLLBACK TO s;
SELECT fe('w1');
ROLLBACK TO s;
SELECT fc('w1');
ROLLBACK TO s;
-- the same functions in the leader see the writes
SET LOCAL force_parallel_mode = off;
SELECT fn('w1'), fr('w1'), fe('w1'), fc('w1');
COMMIT;
-- refused with nothing pending too: the worker cannot know
SELECT fr('w1');
RESET force_parallel_mode;
SELECT fn('w1'), fr('w1'), fe('w1'), fc('w1');

-- pgpoly's PARALLEL SAFE functions (each computes from its arguments only;
-- one reaching a store or the transaction's state must not be listed)
SELECT p.oid::regprocedure AS parallel_safe, p.provolatile
FROM pg_proc p WHERE p.pronamespace = 'pgpoly'::regnamespace AND p.proparallel = 's'
ORDER BY p.oid::regprocedure::text COLLATE "C";

DELETE FROM r;
DELETE FROM c;
SELECT pgpoly.elastic_request('pw_es', 'DELETE', '/regress_es_pw') ->> 'acknowledged' AS dropped;
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_pw"
DROP SCHEMA parallel_worker CASCADE;
DROP SERVER pw_redis, pw_es, pw_chroma CASCADE;
