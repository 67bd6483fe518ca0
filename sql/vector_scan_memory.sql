--
-- A pgpoly_vector scan holds one batch of records at a time: a cursor
-- over 4000 records of 512 dimensions (8 MB of floats) fetched 100 at a
-- time keeps well under 2 MB in its scan's memory (its batch context
-- included) after 3950 rows; it used to keep every batch.  A local k-NN,
-- which needs every candidate, and a scan by ids still return the right
-- rows.  Real Chroma.
--
\getenv chroma_url CHROMA_URL
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_vsm"

CREATE SERVER vsm FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE vsm_t (id text, embedding real[], document text) SERVER vsm
  OPTIONS (collection 'regress_vsm', create_collection 'true', distance 'l2',
           write_mode 'immediate', fetch_size '100');
INSERT INTO vsm_t SELECT g::text, array_fill(g::real, ARRAY[512]), 'doc ' || g
  FROM generate_series(1, 4000) g;

BEGIN;
DECLARE c CURSOR FOR SELECT id, embedding[1] AS e FROM vsm_t;
MOVE 3950 IN c;
SELECT sum(total_bytes) < 2 * 1024 * 1024 AS one_batch
  FROM pg_backend_memory_contexts WHERE name IN ('pgpoly scan', 'pgpoly vector batch');
MOVE ALL IN c;
\echo :ROW_COUNT
COMMIT;

-- All rows, a local k-NN (cosine on an l2 collection), a scan by ids.
SELECT count(*), sum(embedding[512]), count(DISTINCT id) FROM vsm_t;
SELECT id FROM vsm_t ORDER BY embedding <=> array_fill(1::real, ARRAY[512]), id LIMIT 3;
SELECT count(*), min(id), max(id) FROM vsm_t
  WHERE id = ANY(ARRAY(SELECT g::text FROM generate_series(3900, 4100) g));

\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_vsm"
DROP SERVER vsm CASCADE;
