--
-- The scan and modify lifecycle keeps backend memory flat: 20k rescans of a
-- foreign scan (a correlated subquery) and 20k single-row statements in one
-- transaction, for each store.  Memory is the sum of total_bytes over
-- pg_backend_memory_contexts, read while a cursor holds the running query
-- (its ExecutorState included) or inside the transaction.  The bound, 5 MB,
-- is generous (each loop does its first iterations before the first
-- reading; the lifecycle grows by 0 bytes) against the leaks it guards:
-- before it, these loops grew the backend's contexts by 20 GB (Redis
-- rescans), 7.5 MB (5000 Elasticsearch rescans), 17 MB (500 vector
-- rescans) and 40 to 48 MB (20k INSERT statements, any store, either
-- write_mode).  Loops that wait on the Elasticsearch stand-in or Chroma for
-- every iteration are shorter, with bounds scaled to match; the 20k
-- statements of those stores write no row (the per-statement part of the
-- lifecycle), followed by a few hundred that write one.
--
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_lc"

CREATE FUNCTION backend_bytes() RETURNS bigint LANGUAGE sql
  AS $$ SELECT sum(total_bytes)::bigint FROM pg_backend_memory_contexts $$;

CREATE SERVER lc_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE SERVER lc_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
CREATE SERVER lc_vec FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE lc_r (key text, value text) SERVER lc_redis
  OPTIONS (table_type 'string', key_prefix 'regress_lc:', write_mode 'immediate');
CREATE FOREIGN TABLE lc_e (_id text, v text) SERVER lc_es
  OPTIONS (index 'regress_lc', write_mode 'immediate');
CREATE FOREIGN TABLE lc_v (id text, embedding real[], document text) SERVER lc_vec
  OPTIONS (collection 'regress_lc', create_collection 'true', distance 'l2',
           write_mode 'immediate');
SELECT pgpoly.elastic_request('lc_es', 'DELETE', '/regress_lc') IS NOT NULL AS cleaned;

-- Rows large enough that a leak per rescan would show: ES ids near the
-- 512-byte limit (the parameter of each rescan), 16 kB vector documents.
INSERT INTO lc_r SELECT 'k' || g, repeat('v', 1000) FROM generate_series(0, 9) g;
INSERT INTO lc_e SELECT 'k' || g || repeat('-', 480), 'v' || g FROM generate_series(0, 9) g;
SELECT pgpoly.elastic_request('lc_es', 'POST', '/regress_lc/_refresh') IS NOT NULL AS refreshed;
INSERT INTO lc_v SELECT 'k' || g, ARRAY[g, 1, 2]::real[], repeat('d', 16384)
  FROM generate_series(0, 9) g;

-- Redis: 20k rescans, each a pipelined key lookup.
BEGIN;
DECLARE c CURSOR FOR
  SELECT (SELECT length(value) FROM lc_r WHERE key = 'k' || (g % 10))
  FROM generate_series(1, 20200) g;
MOVE 200 FROM c;
SELECT backend_bytes() AS m0 \gset
MOVE 20000 FROM c;
SELECT backend_bytes() - :m0 < 5 * 1024 * 1024 AS redis_rescans_flat;
COMMIT;
SELECT count(*) FILTER (WHERE l = 1000) AS found
  FROM (SELECT (SELECT length(value) FROM lc_r WHERE key = 'k' || (g % 10)) AS l
        FROM generate_series(1, 100) g) s;

-- Elasticsearch: 5000 rescans, each a search by _id.
BEGIN;
DECLARE c CURSOR FOR
  SELECT (SELECT v FROM lc_e WHERE _id = 'k' || (g % 10) || repeat('-', 480))
  FROM generate_series(1, 5200) g;
MOVE 200 FROM c;
SELECT backend_bytes() AS m0 \gset
MOVE 5000 FROM c;
SELECT backend_bytes() - :m0 < 2 * 1024 * 1024 AS es_rescans_flat;
COMMIT;

-- Vector service: 20k rescans that need no request (a NULL id; the bound
-- is 1 MB, the leak was 3 MB), then 500 that each fetch a
-- 16 kB document from Chroma.
BEGIN;
DECLARE c CURSOR FOR
  SELECT (SELECT document FROM lc_v WHERE id = CASE WHEN g < 0 THEN 'k1' END)
  FROM generate_series(1, 20200) g;
MOVE 200 FROM c;
SELECT backend_bytes() AS m0 \gset
MOVE 20000 FROM c;
SELECT backend_bytes() - :m0 < 1024 * 1024 AS vector_rescans_flat;
CLOSE c;
DECLARE c CURSOR FOR
  SELECT (SELECT length(document) FROM lc_v WHERE id = 'k' || (g % 10))
  FROM generate_series(1, 600) g;
MOVE 100 FROM c;
SELECT backend_bytes() AS m0 \gset
MOVE 500 FROM c;
SELECT backend_bytes() - :m0 < 5 * 1024 * 1024 AS vector_fetching_rescans_flat;
COMMIT;

-- 20k single-row immediate-mode INSERTs in one transaction (Redis); 20k
-- INSERT statements that write no row, then 500 (ES) or 100 (vector) that
-- write one.
BEGIN;
DO $$ BEGIN FOR i IN 1..200 LOOP INSERT INTO lc_r VALUES ('m' || (i % 50), 'x'); END LOOP; END $$;
SELECT backend_bytes() AS m0 \gset
DO $$ BEGIN FOR i IN 1..20000 LOOP INSERT INTO lc_r VALUES ('m' || (i % 50), 'x'); END LOOP; END $$;
SELECT backend_bytes() - :m0 < 5 * 1024 * 1024 AS redis_inserts_flat;
DO $$ BEGIN FOR i IN 1..200 LOOP INSERT INTO lc_e VALUES ('m' || (i % 50), 'x'); END LOOP; END $$;
SELECT backend_bytes() AS m0 \gset
DO $$ BEGIN FOR i IN 1..20000 LOOP INSERT INTO lc_e SELECT 'm', 'x' WHERE i < 0; END LOOP; END $$;
DO $$ BEGIN FOR i IN 1..500 LOOP INSERT INTO lc_e VALUES ('m' || (i % 50), 'x'); END LOOP; END $$;
SELECT backend_bytes() - :m0 < 5 * 1024 * 1024 AS es_inserts_flat;
DO $$ BEGIN FOR i IN 1..200 LOOP INSERT INTO lc_v SELECT 'm', '{1,2,3}', 'x' WHERE i < 0; END LOOP; END $$;
SELECT backend_bytes() AS m0 \gset
DO $$ BEGIN FOR i IN 1..20000 LOOP INSERT INTO lc_v SELECT 'm', '{1,2,3}', 'x' WHERE i < 0; END LOOP; END $$;
DO $$ BEGIN FOR i IN 1..100 LOOP INSERT INTO lc_v VALUES ('m' || (i % 50), '{1,2,3}', 'x'); END LOOP; END $$;
SELECT backend_bytes() - :m0 < 5 * 1024 * 1024 AS vector_inserts_flat;
COMMIT;
SELECT count(*) AS redis_keys FROM lc_r WHERE key LIKE 'm%';
SELECT count(*) AS vector_records FROM lc_v WHERE id LIKE 'm%';

-- The same statements in write_mode 'transactional' buffer their writes,
-- which take memory until COMMIT; the table descriptor they point into is
-- loaded once per transaction, not once per statement.
ALTER FOREIGN TABLE lc_r OPTIONS (SET write_mode 'transactional');
BEGIN;
DO $$ BEGIN FOR i IN 1..200 LOOP INSERT INTO lc_r SELECT 'n', 'x' WHERE i < 0; END LOOP; END $$;
SELECT backend_bytes() AS m0 \gset
DO $$ BEGIN FOR i IN 1..20000 LOOP INSERT INTO lc_r SELECT 'n', 'x' WHERE i < 0; END LOOP; END $$;
SELECT backend_bytes() - :m0 < 5 * 1024 * 1024 AS redis_buffered_statements_flat;
COMMIT;

\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_lc"
SELECT pgpoly.elastic_request('lc_es', 'DELETE', '/regress_lc') IS NOT NULL AS cleaned;
DELETE FROM lc_r;
DROP FUNCTION backend_bytes();
DROP SERVER lc_redis, lc_es, lc_vec CASCADE;
