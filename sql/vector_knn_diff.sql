--
-- pgpoly_vector k-NN pushdown, differential against a real Chroma: every
-- k-NN query runs on the foreign table (one /query) and on a native copy
-- (PostgreSQL's own <=>, <->, <#>); ids, their order and the distances
-- (rounded to float4 precision) must be the same.  Attacked:
--   - records whose embedding is a zero vector in a cosine collection: SQL's
--     <=> makes their distance NaN, which sorts after every number, but the
--     service normalizes vectors and puts a zero one at distance 1, before
--     every record farther than 1 (pointing away from the query);
--   - a zero query vector (every distance NaN: any k records are the
--     answer, and their distances are NaN);
--   - records orthogonal to the query, at distance exactly 1 like zero
--     vectors in the service, and records with tiny components;
--   - LIMIT 0, OFFSET past the end, k beyond the collection, a filter,
--     generic plans;
--   - comparisons of numbers with a fractional bound: pgpoly writes a
--     float8 or numeric that is a whole number as a JSON integer (2.0 as 2),
--     which Chroma keeps as an integer and compares with the bound
--     truncated to an integer (2 < 2.5 and -1 > -1.5 are false there);
--   - IN lists holding a NULL (Chroma refuses a null in $in).
-- The collections pgpoly_rt_kd_* are created and dropped here.
--
\getenv chroma_url CHROMA_URL
\set VERBOSITY terse
\! for c in pgpoly_rt_kd_cos pgpoly_rt_kd_l2 pgpoly_rt_kd_ip pgpoly_rt_kd_num; do curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/$c"; done

CREATE SERVER kd_chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
-- 30 records in general position, 2 zero vectors, 2 one-hot vectors
-- (orthogonal to some queries), 2 pointing away from the first query.
CREATE TABLE kd_native (id text COLLATE "C" PRIMARY KEY, embedding real[], metadata jsonb);
INSERT INTO kd_native
SELECT 'g' || lpad(i::text, 2, '0'),
       ARRAY[sin(i * 1.1), cos(i * 0.7), sin(i * 0.3) + 0.2]::real[],
       jsonb_build_object('grp', (ARRAY['a', 'b'])[i % 2 + 1], 'n', i)
FROM generate_series(1, 30) i;
INSERT INTO kd_native VALUES
  ('zero1', '{0,0,0}', '{"grp": "a", "n": 100}'),
  ('zero2', '{-0,0,-0}', '{"grp": "b", "n": 101}'),
  ('onehot_y', '{0,1,0}', '{"grp": "a", "n": 102}'),
  ('onehot_z', '{0,0,2}', '{"grp": "b", "n": 103}'),
  ('away1', '{-1,-0.01,0}', '{"grp": "a", "n": 104}'),
  ('away2', '{-2,0.03,-0.01}', '{"grp": "b", "n": 105}');
CREATE FOREIGN TABLE kd_cos (id text, embedding real[], metadata jsonb, grp text, n int,
                             _distance float8)
  SERVER kd_chroma OPTIONS (collection 'pgpoly_rt_kd_cos', create_collection 'true',
                            distance 'cosine', fetch_size '7');
CREATE FOREIGN TABLE kd_l2 (id text, embedding real[], metadata jsonb, grp text, n int)
  SERVER kd_chroma OPTIONS (collection 'pgpoly_rt_kd_l2', create_collection 'true', distance 'l2');
CREATE FOREIGN TABLE kd_ip (id text, embedding real[], metadata jsonb, grp text, n int)
  SERVER kd_chroma OPTIONS (collection 'pgpoly_rt_kd_ip', create_collection 'true', distance 'ip');
INSERT INTO kd_cos (id, embedding, metadata) SELECT * FROM kd_native;
INSERT INTO kd_l2 (id, embedding, metadata) SELECT * FROM kd_native;
INSERT INTO kd_ip (id, embedding, metadata) SELECT * FROM kd_native;
CREATE VIEW kd_nat AS
  SELECT id, embedding, metadata, metadata->>'grp' AS grp, (metadata->>'n')::int AS n
  FROM kd_native;

-- Differences between the answer of foreign query f and that of native
-- query n, both returning (id, d), d the distance: 0 is the same answer,
-- -1 an error.  Records at equal distances may come in any order, so the
-- answers are compared as their sequences of distances (to 3 decimals: the
-- service computes in float4), and each id of f must be a record at the
-- distance f gives it (op and v: the operator and the query vector), once.
CREATE FUNCTION kd_diff(f text, n text, op text, v real[], tbl text DEFAULT 'kd_native')
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE r bigint;
BEGIN
  EXECUTE format('WITH a AS MATERIALIZED (SELECT row_number() OVER () AS pos, id, round(d::numeric, 3) AS d FROM (%1$s) q),
                       b AS MATERIALIZED (SELECT row_number() OVER () AS pos, id, round(d::numeric, 3) AS d FROM (%2$s) q)
    SELECT (SELECT count(*) FROM ((SELECT pos, d FROM a EXCEPT ALL SELECT pos, d FROM b)
                                  UNION ALL (SELECT pos, d FROM b EXCEPT ALL SELECT pos, d FROM a)) x)
         + (SELECT count(*) FROM a LEFT JOIN %5$I k USING (id)
            WHERE round((k.embedding %3$s %4$L)::numeric, 3) IS DISTINCT FROM a.d)
         + (SELECT count(*) - count(DISTINCT id) FROM a)', f, n, op, v, tbl) INTO r;
  RETURN r;
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE '%: %', f, SQLERRM;
  RETURN -1;
END $$;
-- The queries' clauses after FROM: %1$s the operator, %2$s the query vector.
CREATE TABLE kd_queries (name text, q text);
INSERT INTO kd_queries VALUES
  ('k 5', 'ORDER BY embedding %1$s %2$L LIMIT 5'),
  ('k 12', 'ORDER BY embedding %1$s %2$L LIMIT 12'),
  ('k 33 (all but 3)', 'ORDER BY embedding %1$s %2$L LIMIT 33'),
  ('k 36 (all)', 'ORDER BY embedding %1$s %2$L LIMIT 36'),
  ('k 50', 'ORDER BY embedding %1$s %2$L LIMIT 50'),
  ('offset', 'ORDER BY embedding %1$s %2$L LIMIT 4 OFFSET 29'),
  ('offset past the end', 'ORDER BY embedding %1$s %2$L LIMIT 4 OFFSET 40'),
  ('limit 0', 'ORDER BY embedding %1$s %2$L LIMIT 0'),
  ('filter', 'WHERE grp = ''a'' ORDER BY embedding %1$s %2$L LIMIT 17'),
  ('filter n', 'WHERE n >= 20 ORDER BY embedding %1$s %2$L LIMIT 14');
-- The query vectors: toward +x (away1, away2 point away from it; onehot_*
-- are orthogonal to it), toward +y, a mixed one, one with tiny components.
CREATE TABLE kd_vectors (vname text, v real[]);
INSERT INTO kd_vectors VALUES ('+x', '{1,0,0}'), ('+y', '{0,3,0}'), ('mixed', '{0.3,-0.2,0.9}'),
  ('tiny', '{1e-20,0,1e-20}');
CREATE FUNCTION kd_check(tbl text, op text) RETURNS TABLE (name text, diff bigint)
LANGUAGE sql AS $$
  SELECT vname || ': ' || name,
         kd_diff(format('SELECT id, embedding %s %L AS d FROM %s ', op, v, tbl) || format(q, op, v),
                 format('SELECT id, embedding %s %L AS d FROM kd_nat ', op, v) || format(q, op, v),
                 op, v)
  FROM kd_queries, kd_vectors
$$;

-- Every k-NN query above is pushed (one /query).
EXPLAIN (COSTS OFF) SELECT id FROM kd_cos ORDER BY embedding <=> '{1,0,0}' LIMIT 5;
SELECT name, diff FROM kd_check('kd_cos', '<=>') WHERE diff <> 0;
SELECT name, diff FROM kd_check('kd_l2', '<->') WHERE diff <> 0;
SELECT name, diff FROM kd_check('kd_ip', '<#>') WHERE diff <> 0;
SELECT count(*) AS checked FROM kd_check('kd_cos', '<=>');

-- The zero vectors come last, with NaN distances, as on the native table.
SELECT * FROM (SELECT id, (embedding <=> '{1,0,0}')::real AS d, _distance::real
               FROM kd_cos ORDER BY embedding <=> '{1,0,0}' LIMIT 3 OFFSET 33) s
ORDER BY d, id;
SELECT * FROM (SELECT id, (embedding <=> '{1,0,0}')::real AS d
               FROM kd_nat ORDER BY embedding <=> '{1,0,0}' LIMIT 3 OFFSET 33) s
ORDER BY d, id;
-- The service's answer had one at distance 1: EXPLAIN ANALYZE says so.
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT id FROM kd_cos ORDER BY embedding <=> '{1,0,0}' LIMIT 34;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT id FROM kd_cos ORDER BY embedding <=> '{1,0,0}' LIMIT 5;
-- A zero query vector: every distance is NaN, any k records are the answer.
SELECT count(*), count(*) FILTER (WHERE d = 'NaN') AS nan, count(DISTINCT id) AS ids
FROM (SELECT id, embedding <=> '{0,0,0}' AS d FROM kd_cos
      ORDER BY embedding <=> '{0,0,0}' LIMIT 6) s;
SELECT count(*), count(*) FILTER (WHERE d = 'NaN') AS nan
FROM (SELECT id, _distance AS d FROM kd_cos WHERE grp = 'b'
      ORDER BY embedding <=> '{0,0,0}' LIMIT 40) s;

-- Generic plans: the query vector and the filter value are parameters.
SET plan_cache_mode = force_generic_plan;
PREPARE kd_top(real[], text) AS
  SELECT id, embedding <=> $1 AS d FROM kd_cos WHERE grp = $2 ORDER BY embedding <=> $1 LIMIT 16;
PREPARE kd_top_native(real[], text) AS
  SELECT id, embedding <=> $1 AS d FROM kd_nat WHERE grp = $2 ORDER BY embedding <=> $1 LIMIT 16;
CREATE TEMP TABLE kd_a1 AS EXECUTE kd_top('{1,0,0}', 'a');
CREATE TEMP TABLE kd_n1 AS EXECUTE kd_top_native('{1,0,0}', 'a');
CREATE TEMP TABLE kd_a2 AS EXECUTE kd_top('{1,0,0}', 'b');
CREATE TEMP TABLE kd_n2 AS EXECUTE kd_top_native('{1,0,0}', 'b');
CREATE TEMP TABLE kd_a3 AS EXECUTE kd_top('{0,-1,0}', 'a');
CREATE TEMP TABLE kd_n3 AS EXECUTE kd_top_native('{0,-1,0}', 'a');
SELECT kd_diff('TABLE kd_a1', 'TABLE kd_n1', '<=>', '{1,0,0}') AS a,
       kd_diff('TABLE kd_a2', 'TABLE kd_n2', '<=>', '{1,0,0}') AS b,
       kd_diff('TABLE kd_a3', 'TABLE kd_n3', '<=>', '{0,-1,0}') AS a_neg_y;
RESET plan_cache_mode;
DEALLOCATE kd_top;
DEALLOCATE kd_top_native;
DROP TABLE kd_a1, kd_n1, kd_a2, kd_n2, kd_a3, kd_n3;

-- Numbers, whole (stored as integers) and fractional, compared with
-- whole and fractional bounds, in plain scans (also checked locally) and
-- k-NN searches (not checked: a record the filter should not admit is an
-- ERROR, one it misses is a wrong answer).
CREATE TABLE kd_num_native (id text COLLATE "C" PRIMARY KEY, embedding real[], x float8,
                            nm numeric, s text);
INSERT INTO kd_num_native
SELECT 'x' || lpad(g::text, 2, '0'), ARRAY[g, g % 5 + 0.5]::real[], g / 4.0 - 3,
       (g / 4.0 - 3)::numeric, (ARRAY['a', 'b', NULL])[1 + g % 3]
FROM generate_series(0, 24) g;
CREATE FOREIGN TABLE kd_num (id text, embedding real[], x float8, nm numeric, s text)
  SERVER kd_chroma OPTIONS (collection 'pgpoly_rt_kd_num', create_collection 'true',
                            distance 'l2');
INSERT INTO kd_num SELECT * FROM kd_num_native;
CREATE TABLE kd_num_queries AS
SELECT col, op, b FROM unnest(ARRAY['x', 'nm']) col, unnest(ARRAY['<', '<=', '>', '>=', '=']) op,
  unnest(ARRAY['-2.5', '-1.1', '-0.5', '0.25', '0.5', '1.9', '2', '2.5', '2.9999999999']) b;
SELECT * FROM (
  SELECT col || ' ' || op || ' ' || b AS clause,
         kd_diff(format('SELECT id, embedding <-> ''{0,0}'' AS d FROM kd_num WHERE %s %s %s ORDER BY id', col, op, b),
                 format('SELECT id, embedding <-> ''{0,0}'' AS d FROM kd_num_native WHERE %s %s %s ORDER BY id', col, op, b),
                 '<->', '{0,0}', 'kd_num_native') AS scan,
         kd_diff(format('SELECT id, embedding <-> ''{0,0}'' AS d FROM kd_num WHERE %s %s %s ORDER BY embedding <-> ''{0,0}'' LIMIT 30', col, op, b),
                 format('SELECT id, embedding <-> ''{0,0}'' AS d FROM kd_num_native WHERE %s %s %s ORDER BY embedding <-> ''{0,0}'' LIMIT 30', col, op, b),
                 '<->', '{0,0}', 'kd_num_native') AS knn
  FROM kd_num_queries) d
WHERE (scan, knn) <> (0, 0);
SELECT count(*) AS checked FROM kd_num_queries;
-- What is sent for a fractional bound: integral bounds that decide for the
-- integers the service holds, the fractional one for the others.
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM kd_num WHERE x < 2.5 AND nm >= -1.5;
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM kd_num WHERE x = 0.25;
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM kd_num WHERE x > 0.5;
-- IN lists with a NULL.
SELECT id FROM kd_num WHERE s IN ('a', NULL) AND x < 0 ORDER BY id;
SELECT id FROM kd_num_native WHERE s IN ('a', NULL) AND x < 0 ORDER BY id;
SELECT id FROM kd_num WHERE s = ANY ('{b,NULL}') ORDER BY embedding <-> '{3,0}' LIMIT 3;
SELECT id FROM kd_num_native WHERE s = ANY ('{b,NULL}') ORDER BY embedding <-> '{3,0}' LIMIT 3;
SELECT id FROM kd_num WHERE s IN (NULL, NULL) ORDER BY id;
-- pgpoly.vector_search's filter compares a number as = does.
SELECT id FROM pgpoly.vector_search('kd_num', '{0,0}', 30, '{"x": 0.25}') ORDER BY id;
SELECT id FROM pgpoly.vector_search('kd_num', '{0,0}', 30, '{"x": -2.75, "s": "b"}') ORDER BY id;
SELECT id FROM pgpoly.vector_search('kd_num', '{0,0}', 30, '{"nm": 2}') ORDER BY id;
DROP TABLE kd_num_queries, kd_num_native;

DROP FUNCTION kd_check(text, text);
DROP FUNCTION kd_diff(text, text, text, real[], text);
DROP TABLE kd_queries, kd_vectors;
DROP VIEW kd_nat;
DROP TABLE kd_native;
DROP SERVER kd_chroma CASCADE;
\! for c in pgpoly_rt_kd_cos pgpoly_rt_kd_l2 pgpoly_rt_kd_ip pgpoly_rt_kd_num; do curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/$c"; done
