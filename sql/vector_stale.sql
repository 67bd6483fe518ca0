--
-- pgpoly_vector: a collection re-created with another distance or dimension
-- while a session (its cached collection, its cached plans) lives on.  The
-- session reads and writes through vs_t; the re-creation happens through
-- curl and another server (another connection), as another client would.
-- Every k-NN answer is compared with PostgreSQL's own operators on a
-- native copy (ids, order, distances to 3 decimals).
-- The collection pgpoly_rt_vs is created and dropped here.
--
\getenv chroma_url CHROMA_URL
\set VERBOSITY terse
\setenv VS_DB :DBNAME
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vs"
\! curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"name":"pgpoly_rt_vs","configuration":{"hnsw":{"space":"l2"}}}' "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections"

CREATE SERVER vs_chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE SERVER vs_other FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
-- no distance option: the collection's distance decides the pushdown
CREATE FOREIGN TABLE vs_t (id text, embedding real[], _distance float8)
  SERVER vs_chroma OPTIONS (collection 'pgpoly_rt_vs');
CREATE FOREIGN TABLE vs_w (id text, embedding real[])
  SERVER vs_other OPTIONS (collection 'pgpoly_rt_vs');
-- l2 and cosine rank these differently: far ones along the query, near
-- ones off its direction
CREATE TABLE vs_native (id text COLLATE "C" PRIMARY KEY, embedding real[]);
INSERT INTO vs_native
SELECT 'r' || lpad(i::text, 2, '0'),
       ARRAY[(i % 7) * 0.9 + 0.1, sin(i * 1.3), cos(i * 0.4) * (i % 3)]::real[]
FROM generate_series(1, 24) i;
INSERT INTO vs_t (id, embedding) SELECT * FROM vs_native;

-- Differences between the foreign and the native answer (0: the same):
-- the rows' distances by SQL's operator, in order (rows at equal distances
-- may come in any order), and _distance where the scan gives it (a pushed
-- k-NN; NULL when the ORDER BY is computed above the scan).
CREATE FUNCTION vs_diff(op text, v real[], k int) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE r bigint;
BEGIN
  EXECUTE format('WITH a AS MATERIALIZED (SELECT row_number() OVER () AS pos, id, round((embedding %1$s %2$L)::numeric, 3) AS d,
                                                 round(_distance::numeric, 3) AS sd
                                          FROM (SELECT id, embedding, _distance FROM vs_t ORDER BY embedding %1$s %2$L LIMIT %3$s) q),
                       b AS MATERIALIZED (SELECT row_number() OVER () AS pos, id, round((embedding %1$s %2$L)::numeric, 3) AS d
                                          FROM (SELECT * FROM vs_native ORDER BY embedding %1$s %2$L, id LIMIT %3$s) q)
    SELECT (SELECT count(*) FROM ((SELECT pos, d FROM a EXCEPT ALL SELECT pos, d FROM b)
                                  UNION ALL (SELECT pos, d FROM b EXCEPT ALL SELECT pos, d FROM a)) x)
         + (SELECT count(*) FROM a WHERE sd IS NOT NULL AND sd <> d)', op, v, k) INTO r;
  RETURN r;
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE '%: %', op, SQLERRM;
  RETURN -1;
END $$;

-- The l2 collection: <-> is pushed, <=> is not.
EXPLAIN (COSTS OFF) SELECT id FROM vs_t ORDER BY embedding <-> '{1,0,0}' LIMIT 5;
EXPLAIN (COSTS OFF) SELECT id FROM vs_t ORDER BY embedding <=> '{1,0,0}' LIMIT 5;
SELECT vs_diff('<->', '{1,0,0}', 5) AS l2, vs_diff('<=>', '{1,0,0}', 5) AS cos;
-- plans cached before the re-creation
PREPARE vs_l2(real[]) AS SELECT id, round(_distance::numeric, 3) FROM vs_t ORDER BY embedding <-> $1 LIMIT 5;
PREPARE vs_cos(real[]) AS SELECT id, round(_distance::numeric, 3) FROM vs_t ORDER BY embedding <=> $1 LIMIT 5;
SET plan_cache_mode = force_generic_plan;
EXECUTE vs_l2('{1,0,0}');
EXECUTE vs_cos('{1,0,0}');
RESET plan_cache_mode;

-- Re-created with distance cosine (the common re-embedding workflow), by
-- another client.
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vs"
\! curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"name":"pgpoly_rt_vs","configuration":{"hnsw":{"space":"cosine"}}}' "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections"
INSERT INTO vs_w SELECT * FROM vs_native;

-- The same session: the first k-NN pushed for the old distance fails once
-- with 40001 (-1: its request met the re-created collection), then every
-- answer is the SQL operator's.
SELECT vs_diff('<->', '{1,0,0}', 5) AS l2, vs_diff('<=>', '{1,0,0}', 5) AS cos;
SELECT vs_diff('<->', '{0.2,1,-0.5}', 7) AS l2, vs_diff('<=>', '{0.2,1,-0.5}', 7) AS cos;
-- now <=> is pushed, <-> is not
EXPLAIN (COSTS OFF) SELECT id FROM vs_t ORDER BY embedding <-> '{1,0,0}' LIMIT 5;
EXPLAIN (COSTS OFF) SELECT id FROM vs_t ORDER BY embedding <=> '{1,0,0}' LIMIT 5;
-- the generic plans cached under l2 (native answers alongside)
SET plan_cache_mode = force_generic_plan;
EXECUTE vs_l2('{1,0,0}');
SELECT id, round((embedding <-> '{1,0,0}')::numeric, 3) FROM vs_native ORDER BY embedding <-> '{1,0,0}', id LIMIT 5;
EXECUTE vs_l2('{1,0,0}');
EXECUTE vs_cos('{1,0,0}');
SELECT id, round((embedding <=> '{1,0,0}')::numeric, 3) FROM vs_native ORDER BY embedding <=> '{1,0,0}', id LIMIT 5;
EXECUTE vs_cos('{1,0,0}');
RESET plan_cache_mode;
-- within a transaction that already read the collection (another session
-- re-creates and fills it)
BEGIN;
SELECT vs_diff('<=>', '{1,0,0}', 5) AS cos;
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vs"
\! curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"name":"pgpoly_rt_vs","configuration":{"hnsw":{"space":"l2"}}}' "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections"
\! psql -X -q -d "$VS_DB" -c 'INSERT INTO vs_w SELECT * FROM vs_native'
SELECT id FROM vs_t ORDER BY embedding <=> '{1,0,0}' LIMIT 5;
ROLLBACK;
SELECT vs_diff('<->', '{1,0,0}', 5) AS l2, vs_diff('<=>', '{1,0,0}', 5) AS cos;

-- Re-created with another dimension: 40001 once (the cached plan's
-- request met the re-created collection), then a clear error; no crash.
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vs"
\! curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"name":"pgpoly_rt_vs","configuration":{"hnsw":{"space":"l2"}}}' "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections"
INSERT INTO vs_w VALUES ('four', '{1,0,0,0}');
SELECT id FROM vs_t ORDER BY embedding <-> '{1,0,0}' LIMIT 5;
EXECUTE vs_l2('{1,0,0}');
SELECT id, _distance FROM vs_t ORDER BY embedding <-> '{1,0,0,0}' LIMIT 5;
INSERT INTO vs_t VALUES ('three', '{1,0,0}');
SELECT id FROM vs_t ORDER BY id;

\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vs"
DROP SERVER vs_chroma, vs_other CASCADE;
DROP TABLE vs_native;
DROP FUNCTION vs_diff;
