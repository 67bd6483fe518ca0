-- demo_vector.sql: vector search over model embeddings, joined to the registry.
--
-- Model embeddings live in Chroma (a pgpoly_vector foreign table); model
-- metadata in pgpoly's registry tables.  One query finds the models nearest
-- to an embedding, pgvector style, and joins them to their versions.
-- Needs CHROMA_URL in the environment (test/demo.sh's harness sets it).
\set ON_ERROR_STOP 1
\set QUIET 1
\pset footer off
\getenv chroma_url CHROMA_URL
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgpoly;

\echo
\echo '== Vector search: model embeddings in Chroma'
CREATE SERVER demo_vectors FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE demo_model_embeddings (
    id        text,
    embedding real[],
    document  text,
    metadata  jsonb,
    task      text OPTIONS (field 'task'),
    _distance float8
) SERVER demo_vectors
  OPTIONS (collection 'pgpoly_demo_models', create_collection 'true', distance 'cosine');

-- The registry rows the embeddings describe.
SELECT count(pgpoly.register_model_version(m, 's3://models/' || m || '/v' || v, NULL,
                                           jsonb_build_object('framework', f))) AS registered
FROM (VALUES ('resnet', 1, 'torch'), ('resnet', 2, 'torch'), ('vit', 1, 'jax'),
             ('bert', 1, 'torch'), ('whisper', 1, 'torch')) t(m, v, f) \gset

-- One embedding per model version, written in one transaction (sent at COMMIT).
BEGIN;
DELETE FROM demo_model_embeddings;
INSERT INTO demo_model_embeddings (id, embedding, document, metadata) VALUES
  ('resnet@1',  '{0.90,0.10,0.05,0.00}', 'ResNet-50 image classifier', '{"task": "vision", "model": "resnet", "version": 1}'),
  ('resnet@2',  '{0.85,0.20,0.05,0.05}', 'ResNet-101 image classifier', '{"task": "vision", "model": "resnet", "version": 2}'),
  ('vit@1',     '{0.70,0.40,0.10,0.00}', 'Vision transformer',          '{"task": "vision", "model": "vit", "version": 1}'),
  ('bert@1',    '{0.05,0.90,0.30,0.10}', 'BERT text encoder',           '{"task": "nlp", "model": "bert", "version": 1}'),
  ('whisper@1', '{0.10,0.30,0.90,0.20}', 'Whisper speech recognition',  '{"task": "audio", "model": "whisper", "version": 1}');
COMMIT;

\echo
\echo '-- The 3 models nearest to a query embedding, with their registry rows:'
SELECT e.id, round(e._distance::numeric, 4) AS cosine_distance, e.task,
       v.source_uri, v.tags->>'framework' AS framework
FROM (SELECT id, _distance, task, metadata
      FROM demo_model_embeddings
      ORDER BY embedding <=> '{0.8,0.3,0.1,0.0}'
      LIMIT 3) e
JOIN pgpoly.model_versions v
  ON v.model_name = e.metadata->>'model' AND v.version = (e.metadata->>'version')::int
ORDER BY e._distance;

\echo
\echo '-- The same search restricted to NLP models: what is sent to Chroma (one /query'
\echo '-- with the filter and n_results = 3), then the query and its rows:'
EXPLAIN (COSTS OFF)
SELECT id, round(_distance::numeric, 4) AS cosine_distance, document
FROM demo_model_embeddings
WHERE task = 'nlp'
ORDER BY embedding <=> '{0.8,0.3,0.1,0.0}'
LIMIT 3;
\set ECHO queries
SELECT id, round(_distance::numeric, 4) AS cosine_distance, document
FROM demo_model_embeddings
WHERE task = 'nlp'
ORDER BY embedding <=> '{0.8,0.3,0.1,0.0}'
LIMIT 3;
\set ECHO none

\echo
\echo '-- For ORMs: pgpoly.vector_search():'
SELECT id, round(distance::numeric, 4) AS distance, metadata->>'task' AS task
FROM pgpoly.vector_search('demo_model_embeddings', '{0.1,0.3,0.9,0.2}', 2);

DROP FOREIGN TABLE demo_model_embeddings;
DROP SERVER demo_vectors;
