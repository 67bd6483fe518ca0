--
-- pgpoly_vector: the memo of the last rendered k-NN query vector (see
-- vector_query_memo) under several vectors in one statement or
-- transaction, aborts, DISCARD ALL, other collections and dimensions,
-- vector variants and float settings; each answer is that of its own
-- vector (compared with a native copy where it is computed).  And the memo
-- keeps no huge vector: the session's TopMemoryContext does not grow by
-- the size of a 1,000,000-element query vector.  The collections
-- pgpoly_rt_qme, pgpoly_rt_qme3 and pgpoly_rt_qmee are created and dropped
-- here.
--
\getenv chroma_url CHROMA_URL
\set VERBOSITY terse
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_qme"
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_qme3"
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_qmee"
CREATE SERVER qe_chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE TABLE qe_native (id text COLLATE "C" PRIMARY KEY, embedding real[]);
INSERT INTO qe_native SELECT 'r' || i, ARRAY[0.25, 0.5, 0.125, i]::real[]
FROM generate_series(-8, 8) i WHERE i <> 0;
CREATE FOREIGN TABLE qe (id text, embedding real[], _distance float8)
  SERVER qe_chroma OPTIONS (collection 'pgpoly_rt_qme', create_collection 'true', distance 'l2');
INSERT INTO qe (id, embedding) SELECT * FROM qe_native;
-- a second collection, of 3 dimensions
CREATE TABLE qe3_native (id text COLLATE "C" PRIMARY KEY, embedding real[]);
INSERT INTO qe3_native SELECT 's' || i, ARRAY[0.25, 0.5, i]::real[]
FROM generate_series(-8, 8) i WHERE i <> 0;
CREATE FOREIGN TABLE qe3 (id text, embedding real[], _distance float8)
  SERVER qe_chroma OPTIONS (collection 'pgpoly_rt_qme3', create_collection 'true', distance 'l2');
INSERT INTO qe3 (id, embedding) SELECT * FROM qe3_native;

-- A lateral k-NN, its vector alternating per outer row.
SELECT q.n, f.ids, f.ids = nat.ids AS same
FROM (VALUES (1, '{0.25,0.5,0.125,7.4}'::real[]), (2, '{0.25,0.5,0.125,-7.4}'),
             (3, '{0.25,0.5,0.125,7.4}'), (4, '{0.25,0.5,0.125,-3.4}'),
             (5, '{0.25,0.5,0.125,-3.4}'), (6, '{0.25,0.5,0.125,7.4}')) q(n, v),
LATERAL (SELECT string_agg(id, ',') ids FROM (SELECT id FROM qe ORDER BY embedding <-> q.v LIMIT 3) s) f,
LATERAL (SELECT string_agg(id, ',') ids FROM (SELECT id FROM qe_native ORDER BY embedding <-> q.v, id LIMIT 3) s) nat
ORDER BY q.n;
-- Three k-NN scans per row, two collections of other dimensions.
SELECT x,
  (SELECT string_agg(id, ',') FROM (SELECT id FROM qe ORDER BY embedding <-> ARRAY[0.25,0.5,0.125,x + 0.3]::real[] LIMIT 2) s) a,
  (SELECT string_agg(id, ',') FROM (SELECT id FROM qe3 ORDER BY embedding <-> ARRAY[0.25,0.5,x + 0.3]::real[] LIMIT 2) s) b,
  (SELECT string_agg(id, ',') FROM (SELECT id FROM qe ORDER BY embedding <-> ARRAY[0.25,0.5,0.125,-x - 0.3]::real[] LIMIT 2) s) c
FROM generate_series(-6, 6, 4) x;
-- Cursors interleaving three k-NN scans.
BEGIN;
DECLARE c1 CURSOR FOR SELECT id FROM qe ORDER BY embedding <-> '{0.25,0.5,0.125,7.4}' LIMIT 6;
DECLARE c2 CURSOR FOR SELECT id FROM qe ORDER BY embedding <-> '{0.25,0.5,0.125,-7.4}' LIMIT 6;
DECLARE c3 CURSOR FOR SELECT id FROM qe3 ORDER BY embedding <-> '{0.25,0.5,0.4}';
FETCH 2 FROM c1; FETCH 2 FROM c2; FETCH 2 FROM c3; FETCH 2 FROM c1; FETCH 2 FROM c2; FETCH 2 FROM c1;
COMMIT;

-- An aborted transaction, then the same vector; an ERROR after its
-- rendering (a different dimension), then the last good vector again;
-- DISCARD ALL.
BEGIN;
SELECT id FROM qe ORDER BY embedding <-> '{0.25,0.5,0.125,5.4}' LIMIT 2;
ROLLBACK;
SELECT id FROM qe ORDER BY embedding <-> '{0.25,0.5,0.125,5.4}' LIMIT 2;
DO $$
BEGIN
  PERFORM count(*) FROM (SELECT id FROM qe ORDER BY embedding <-> '{0.25,0.5,0.125,5.4,1}' LIMIT 2) s;
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE 'refused: %', SQLSTATE;
END $$;
SELECT id FROM qe ORDER BY embedding <-> '{0.25,0.5,0.125,5.4}' LIMIT 2;
-- (NaN and Infinity are ranked here, not sent)
SELECT count(*) FROM (SELECT id FROM qe ORDER BY embedding <-> '{0.25,0.5,NaN,-5.4}' LIMIT 2) s;
SELECT id FROM qe ORDER BY embedding <-> '{0.25,0.5,0.125,-5.4}' LIMIT 2;
DISCARD ALL;
SELECT id FROM qe ORDER BY embedding <-> '{0.25,0.5,0.125,-5.4}' LIMIT 2;
SELECT id FROM qe ORDER BY embedding <-> '{0.25,0.5,0.125,5.4}' LIMIT 2;

-- Vector variants: NULL elements and two dimensions refused; another
-- lower bound, a denormal, a domain over real[] (constant and parameter).
SELECT id FROM qe ORDER BY embedding <-> '{0.25,0.5,NULL,5.4}' LIMIT 2;
SELECT id FROM qe ORDER BY embedding <-> '[2:5]={0.25,0.5,NULL,-6.1}'::real[] LIMIT 2;
SELECT id FROM qe ORDER BY embedding <-> '{{0.25,0.5},{0.125,5.4}}' LIMIT 2;
SELECT id FROM qe ORDER BY embedding <-> '[2:5]={0.25,0.5,0.125,-6.1}'::real[] LIMIT 2;
SELECT id FROM qe ORDER BY embedding <-> '{0.25,0.5,1e-45,6.1}' LIMIT 2;
CREATE DOMAIN qe_vec AS real[] CHECK (cardinality(VALUE) = 4);
SELECT id FROM qe ORDER BY embedding <-> '{0.25,0.5,0.125,3.1}'::qe_vec LIMIT 2;
PREPARE qe_d(qe_vec) AS SELECT id FROM qe ORDER BY embedding <-> $1 LIMIT 2;
EXECUTE qe_d('{0.25,0.5,0.125,-3.1}');
EXECUTE qe_d('{0.25,0.5,0.125,3.1}');
DEALLOCATE qe_d;
-- a vector read from a table, per outer row
CREATE TABLE qe_q (n int, v real[]);
INSERT INTO qe_q VALUES (1, '{0.25,0.5,0.125,-4.4}'), (2, '{0.25,0.5,0.125,4.4}'), (3, '{0.25,0.5,0.125,-4.4}');
SELECT q.n, f.id FROM qe_q q, LATERAL (SELECT id FROM qe ORDER BY embedding <-> q.v LIMIT 1) f ORDER BY q.n;
-- a PL/pgSQL variable changed in place (an expanded array) in a loop
DO $$
DECLARE v real[] := '{0.25,0.5,0.125,0}'; r text; n text; bad int := 0;
BEGIN
  FOR i IN -8..8 LOOP
    v[4] := i + 0.3;
    SELECT string_agg(id, ',') INTO r FROM (SELECT id FROM qe ORDER BY embedding <-> v LIMIT 2) s;
    SELECT string_agg(id, ',') INTO n FROM (SELECT id FROM qe_native ORDER BY embedding <-> v, id LIMIT 2) s;
    IF r IS DISTINCT FROM n THEN bad := bad + 1; END IF;
  END LOOP;
  RAISE NOTICE 'differing: %', bad;
END $$;

-- The rendering does not depend on float settings.
SET extra_float_digits = -15;
SELECT id FROM qe ORDER BY embedding <-> '{0.25,0.5,0.125,1.1}' LIMIT 2;
SET extra_float_digits = 3;
SELECT id FROM qe ORDER BY embedding <-> '{0.25,0.5,0.125,1.1}' LIMIT 2;
SELECT id FROM qe ORDER BY embedding <-> '{0.25,0.5,0.125,-1.1}' LIMIT 2;
RESET extra_float_digits;

-- A collection without records (its dimension unknown, so the query is
-- sent): a 1,000,000-element query vector leaves no copy of itself or its
-- text (~8 MB) in the session's memory.
\! curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"name":"pgpoly_rt_qmee","metadata":{"hnsw:space":"l2"}}' "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections"
CREATE FOREIGN TABLE qee (id text, embedding real[], _distance float8)
  SERVER qe_chroma OPTIONS (collection 'pgpoly_rt_qmee', distance 'l2');
SELECT sum(total_bytes) AS top_before FROM pg_backend_memory_contexts WHERE name = 'TopMemoryContext' \gset
SELECT count(*) FROM (SELECT id FROM qee ORDER BY embedding <->
  ARRAY(SELECT (i % 1000 / 7.0)::real FROM generate_series(1, 1000000) i) LIMIT 2) s;
SELECT id FROM qe ORDER BY embedding <-> '{0.25,0.5,0.125,-1.1}' LIMIT 2;
SELECT sum(total_bytes) - :top_before < 1048576 AS top_memory_kept_small
FROM pg_backend_memory_contexts WHERE name = 'TopMemoryContext';

DROP FOREIGN TABLE qe, qe3, qee;
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_qme"
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_qme3"
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_qmee"
DROP SERVER qe_chroma;
DROP TABLE qe_native, qe3_native, qe_q;
DROP DOMAIN qe_vec;
