--
-- pgpoly_vector: the k-NN request body reuses the rendering of the last
-- query vector when the new one is bit for bit the same (a prepared
-- statement or a loop sending one vector again).  Never stale: each query
-- below differs from the one before it in one element only (the last, a
-- sign, the next float4, -0 against 0) or in its dimension, through a
-- constant, a parameter of a prepared statement with a generic plan, and a
-- PL/pgSQL loop; every answer is compared with the same query on a native
-- copy.  The collection pgpoly_rt_qmemo is created and dropped here.
--
\getenv chroma_url CHROMA_URL
\set VERBOSITY terse
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_qmemo"

CREATE SERVER qm_chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE TABLE qm_native (id text COLLATE "C" PRIMARY KEY, embedding real[]);
-- Along the last axis the records are far apart (+-1 .. +-8), so a query
-- whose last element changes sign or size has other nearest records.
INSERT INTO qm_native
SELECT 'r' || i, ARRAY[0.25, 0.5, 0.125, i]::real[]
FROM generate_series(-8, 8) i WHERE i <> 0;
CREATE FOREIGN TABLE qm (id text, embedding real[], _distance float8)
  SERVER qm_chroma OPTIONS (collection 'pgpoly_rt_qmemo', create_collection 'true',
                            distance 'l2');
INSERT INTO qm (id, embedding) SELECT * FROM qm_native;

-- The 3 nearest ids from the service and natively, and whether they agree.
CREATE FUNCTION qm_check(v real[]) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE f text; n text;
BEGIN
  SELECT string_agg(id, ',') INTO f
  FROM (SELECT id FROM qm ORDER BY embedding <-> v LIMIT 3) s;
  SELECT string_agg(id, ',') INTO n
  FROM (SELECT id FROM qm_native ORDER BY embedding <-> v, id LIMIT 3) s;
  RETURN f || CASE WHEN f = n THEN '' ELSE ' (native: ' || n || ')' END;
END $$;

-- The 3 nearest ids from the service, or the SQLSTATE of its error.
CREATE FUNCTION qm_try(v real[]) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  RETURN (SELECT string_agg(id, ',') FROM (SELECT id FROM qm ORDER BY embedding <-> v LIMIT 3) s);
EXCEPTION WHEN OTHERS THEN
  RETURN 'ERROR ' || SQLSTATE;
END $$;

-- Constants, one after another: each differs from the previous in one element.
EXPLAIN (COSTS OFF) SELECT id FROM qm ORDER BY embedding <-> '{0.25,0.5,0.125,7.4}' LIMIT 3;
SELECT id FROM qm ORDER BY embedding <-> '{0.25,0.5,0.125,7.4}' LIMIT 3;
SELECT id FROM qm ORDER BY embedding <-> '{0.25,0.5,0.125,7.4}' LIMIT 3;
SELECT id FROM qm ORDER BY embedding <-> '{0.25,0.5,0.125,-7.4}' LIMIT 3;
SELECT id FROM qm ORDER BY embedding <-> '{0.25,0.5,0.125,2.4}' LIMIT 3;
-- same rendering prefix, other dimension: refused (by the service or
-- pgpoly, whichever knows the collection's dimension first), as before
SELECT qm_try('{0.25,0.5,0.125}');
SELECT qm_try('{0.25,0.5,0.125,2.4,1}');
SELECT id FROM qm ORDER BY embedding <-> '{0.25,0.5,0.125,2.4}' LIMIT 3;

-- A prepared statement with a generic plan, its parameter alternating.
SET plan_cache_mode = force_generic_plan;
PREPARE qm_k(real[]) AS SELECT string_agg(id, ',') FROM (SELECT id FROM qm ORDER BY embedding <-> $1 LIMIT 3) s;
EXECUTE qm_k('{0.25,0.5,0.125,5.4}');
EXECUTE qm_k('{0.25,0.5,0.125,5.4}');
EXECUTE qm_k('{0.25,0.5,0.125,-5.4}');
EXECUTE qm_k('{0.25,0.5,0.125,5.4}');
-- the next float4 after 4.5 (4.5000005): 4.5 is a tie between r4 and r5,
-- broken one way by the smallest step up, the other way by the step down
EXECUTE qm_k('{0.25,0.5,0.125,4.5000005}');
EXECUTE qm_k('{0.25,0.5,0.125,4.4999995}');
EXECUTE qm_k('{0.25,0.5,0.125,4.5000005}');
-- -0 and 0 are different bits with different renderings ("-0" and "0")
EXECUTE qm_k('{-0,0.5,0.125,-1.2}');
EXECUTE qm_k('{0,0.5,0.125,-1.2}');
EXECUTE qm_k('{0.25,0.5,0.125,-2.4}');
DEALLOCATE qm_k;
RESET plan_cache_mode;

-- A loop: last elements from -8.7 to 9.3 in steps of 0.75 (never a tie),
-- each twice.
SELECT count(*) AS queries, count(*) FILTER (WHERE r LIKE '%native%') AS differing
FROM (SELECT qm_check(ARRAY[0.25, 0.5, 0.125, x / 4.0 + 0.3]::real[]) AS r
      FROM generate_series(-36, 36, 3) x, generate_series(1, 2) rep) s;
SELECT qm_check('{0.25,0.5,0.125,-6.2}'), qm_check('{0.25,0.5,0.125,6.2}'),
       qm_check('{0.25,0.5,0.125,-6.2}');

DROP FOREIGN TABLE qm;
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_qmemo"
DROP SERVER qm_chroma;
DROP TABLE qm_native;
DROP FUNCTION qm_check(real[]);
DROP FUNCTION qm_try(real[]);
