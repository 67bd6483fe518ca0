--
-- pgpoly_vector writes against a real Chroma: INSERT/UPDATE/DELETE through
-- the transaction buffer, immediate mode, errors, options, IMPORT.
--
\getenv chroma_url CHROMA_URL
\! for c in pgpoly_rt_w pgpoly_rt_imm pgpoly_rt_imp; do curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/$c"; done

CREATE SERVER chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE models (id text, embedding real[], document text, metadata jsonb,
                             task text OPTIONS (field 'task'), _distance float8)
  SERVER chroma OPTIONS (collection 'pgpoly_rt_w', create_collection 'true', distance 'l2',
                         batch_size '2');

-- Nothing yet: the collection is created on first write.
SELECT count(*) FROM models;

-- Transactional (default): buffered, visible to later reads, sent at COMMIT.
BEGIN;
INSERT INTO models VALUES
  ('m1', '{1,0,0}', 'resnet', '{"task": "vision", "v": 1}', NULL),
  ('m2', '{0,1,0}', 'bert', NULL, 'nlp'),
  ('m3', '{0,0,1}', NULL, '{"x": 0.1}', 'vision');
SELECT id, document, metadata, task FROM models ORDER BY id;
SELECT id, _distance FROM models ORDER BY embedding <-> '{1,0.1,0}' LIMIT 2;
COMMIT;
SELECT id, embedding, document, metadata, task FROM models ORDER BY id;
EXPLAIN (COSTS OFF) INSERT INTO models (id, embedding) VALUES ('x', '{1,1,1}');

-- ROLLBACK discards; UPDATE replaces metadata (removed keys are removed).
BEGIN;
UPDATE models SET metadata = '{"task": "audio"}' WHERE id = 'm1';
UPDATE models SET task = 'nlp2', document = 'bert-large' WHERE id = 'm2';
DELETE FROM models WHERE id = 'm3' RETURNING id, metadata;
SELECT id, document, metadata, task FROM models ORDER BY id;
ROLLBACK;
SELECT id, document, metadata, task FROM models ORDER BY id;
UPDATE models SET metadata = '{"task": "audio"}' WHERE id = 'm1';
UPDATE models SET task = 'nlp2', document = 'bert-large' WHERE id = 'm2';
SELECT id, document, metadata, task FROM models ORDER BY id;
-- A mapped column set to NULL removes its metadata key.
UPDATE models SET task = NULL WHERE id = 'm3';
SELECT id, metadata, task FROM models WHERE id = 'm3';
UPDATE models SET task = 'vision' WHERE id = 'm3';
-- Changing the id moves the record; the embedding can change too.
UPDATE models SET id = 'm3b', embedding = '{0,0,2}' WHERE id = 'm3';
SELECT id, embedding FROM models ORDER BY id;
-- INSERT of an existing id upserts.
INSERT INTO models (id, embedding, document) VALUES ('m1', '{1,0,0}', 'resnet-50');
SELECT id, document FROM models WHERE id = 'm1';

-- ... and a mapped column that is NULL removes its key, as in an UPDATE
-- (Chroma merges an upsert's keys into the record's): the collection keeps
-- what the transaction read.
INSERT INTO models (id, embedding, task) VALUES ('m7', '{7,7,7}', 'vision');
BEGIN;
INSERT INTO models (id, embedding, task) VALUES ('m7', '{7,7,7}', NULL);
SELECT id, metadata, task FROM models WHERE id = 'm7';
COMMIT;
SELECT id, metadata, task FROM models WHERE id = 'm7';
DELETE FROM models WHERE id = 'm7';

-- Savepoints.
BEGIN;
DELETE FROM models WHERE id = 'm1';
SAVEPOINT s;
INSERT INTO models (id, embedding) VALUES ('m9', '{9,9,9}');
ROLLBACK TO SAVEPOINT s;
SELECT id FROM models ORDER BY id;
COMMIT;
SELECT id FROM models ORDER BY id;

-- Errors at INSERT time: no embedding, wrong dimension, NULL id, nested metadata.
\set VERBOSITY terse
INSERT INTO models (id) VALUES ('bad');
INSERT INTO models (id, embedding) VALUES ('bad', '{1,2}');
INSERT INTO models (id, embedding) VALUES (NULL, '{1,2,3}');
INSERT INTO models (id, embedding) VALUES ('bad', '{1,NULL,3}');
INSERT INTO models (id, embedding, metadata) VALUES ('bad', '{1,2,3}', '{"a": {"b": 1}}');
INSERT INTO models (id, embedding, metadata) VALUES ('bad', '{1,2,3}', '[1]');
\set VERBOSITY default
SELECT count(*) FROM models WHERE id = 'bad';

-- A second table on the same collection checks the dimension too.
CREATE FOREIGN TABLE models_any (id text, embedding real[])
  SERVER chroma OPTIONS (collection 'pgpoly_rt_w');
\set VERBOSITY terse
INSERT INTO models_any VALUES ('bad2', '{1,2,3,4,5}');
\set VERBOSITY default

-- Immediate mode: sent while the statement runs, in batches.
CREATE FOREIGN TABLE imm (id text, embedding real[], document text)
  SERVER chroma OPTIONS (collection 'pgpoly_rt_imm', create_collection 'true', distance 'cosine',
                         write_mode 'immediate', batch_size '3');
EXPLAIN (COSTS OFF) INSERT INTO imm VALUES ('a', '{1,2}');
BEGIN;
INSERT INTO imm SELECT 'i' || i, ARRAY[i, 1]::real[], 'doc ' || i FROM generate_series(1, 7) i;
ROLLBACK;
SELECT count(*) FROM imm;
DELETE FROM imm WHERE id IN ('i1', 'i2');
SELECT id FROM imm ORDER BY id;

-- Unknown collection, options.
CREATE FOREIGN TABLE missing (id text, embedding real[])
  SERVER chroma OPTIONS (collection 'pgpoly_rt_does_not_exist');
\set VERBOSITY terse
SELECT * FROM missing;
EXPLAIN (COSTS OFF) SELECT id FROM missing ORDER BY embedding <-> '{1}' LIMIT 1;
CREATE FOREIGN TABLE bad_opt (id text) SERVER chroma OPTIONS (colection 'x');
CREATE FOREIGN TABLE bad_opt (id text) SERVER chroma OPTIONS (distance 'manhattan');
CREATE FOREIGN TABLE bad_opt (id text) SERVER chroma OPTIONS (batch_size '0');
CREATE SERVER bad_srv FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (api_key 'secret');
CREATE SERVER bad_srv FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (provider 'pinecone');
CREATE FOREIGN TABLE bad_col (id int) SERVER chroma;
SELECT * FROM bad_col;
CREATE FOREIGN TABLE no_id (embedding real[]) SERVER chroma;
SELECT * FROM no_id;
\set VERBOSITY default
CREATE USER MAPPING FOR CURRENT_USER SERVER chroma OPTIONS (api_key 'not-shown');
SELECT count(*) FROM models;

-- IMPORT FOREIGN SCHEMA: one table per collection.
CREATE SCHEMA imported;
IMPORT FOREIGN SCHEMA any_name LIMIT TO (pgpoly_rt_w, pgpoly_rt_imm) FROM SERVER chroma INTO imported;
SELECT c.relname, ft.ftoptions FROM pg_foreign_table ft JOIN pg_class c ON c.oid = ft.ftrelid
WHERE c.relnamespace = 'imported'::regnamespace ORDER BY 1;
SELECT id, document FROM imported.pgpoly_rt_w ORDER BY id;
SELECT id FROM imported.pgpoly_rt_imm ORDER BY embedding <=> '{1,0}' LIMIT 2;

-- A service error at COMMIT fails the COMMIT, and the transaction rolls
-- back: here the collection is dropped behind our back before COMMIT.
CREATE FOREIGN TABLE gone (id text, embedding real[])
  SERVER chroma OPTIONS (collection 'pgpoly_rt_imp', create_collection 'true', distance 'ip');
INSERT INTO gone VALUES ('g1', '{1,2}');
CREATE FOREIGN TABLE gone_nocreate (id text, embedding real[])
  SERVER chroma OPTIONS (collection 'pgpoly_rt_imp');
CREATE TABLE local_log (msg text);
BEGIN;
INSERT INTO local_log VALUES ('written with the vector insert');
INSERT INTO gone_nocreate VALUES ('g2', '{3,4}');
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_imp"
\set VERBOSITY sqlstate
COMMIT;
\set VERBOSITY default
SELECT count(*) AS local_rows FROM local_log;
-- The session goes on; create_collection makes it anew on the next write.
SELECT count(*) FROM gone;
INSERT INTO gone VALUES ('g3', '{5,6}');
SELECT id FROM gone;

-- The connection is cached and reused.
SELECT server, store, requests > 0 AS used FROM pgpoly.connections() WHERE store = 'vector';

SET client_min_messages = warning;
DROP SCHEMA imported CASCADE;
RESET client_min_messages;
DROP USER MAPPING FOR CURRENT_USER SERVER chroma;
DROP FOREIGN TABLE models, models_any, imm, missing, bad_col, no_id, gone, gone_nocreate;
DROP TABLE local_log;
DROP SERVER chroma;
\! for c in pgpoly_rt_w pgpoly_rt_imm pgpoly_rt_imp; do curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/$c"; done
