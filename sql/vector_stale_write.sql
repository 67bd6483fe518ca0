--
-- pgpoly_vector writes into a Chroma collection that another client dropped
-- and re-created with another dimension while this session had it cached
-- (its id answers 404; the name now resolves to a collection of 4
-- dimensions).  A write of 3-dimensional embeddings is an ERROR naming the
-- collection and both dimensions, SQLSTATE 22000 (as for a wrong dimension
-- on a collection that did not change), not Chroma's HTTP 400; in
-- transactional mode nothing of the transaction's writes to the collection
-- is sent (a DELETE buffered before the INSERT included).  Also: two
-- statements of one transaction writing different dimensions into an empty
-- collection fail at COMMIT before either is sent.
-- The collection pgpoly_rt_vsw is created and dropped here.
--
\getenv chroma_url CHROMA_URL
\set VERBOSITY default
\set SHOW_CONTEXT never
\setenv VSW_DB :DBNAME
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vsw"
\! curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"name":"pgpoly_rt_vsw","configuration":{"hnsw":{"space":"l2"}}}' "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections"

CREATE SERVER vsw_chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE SERVER vsw_other FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
-- this session's table, in both write modes, and another client's
CREATE FOREIGN TABLE vsw_t (id text, embedding real[])
  SERVER vsw_chroma OPTIONS (collection 'pgpoly_rt_vsw');
CREATE FOREIGN TABLE vsw_i (id text, embedding real[])
  SERVER vsw_chroma OPTIONS (collection 'pgpoly_rt_vsw', write_mode 'immediate');
CREATE FOREIGN TABLE vsw_o (id text, embedding real[])
  SERVER vsw_other OPTIONS (collection 'pgpoly_rt_vsw');

INSERT INTO vsw_t VALUES ('a', '{1,0,0}'), ('b', '{0,1,0}');
-- cached with 3 dimensions; a wrong dimension on it is refused
INSERT INTO vsw_t VALUES ('c', '{0,0,1}');
INSERT INTO vsw_t VALUES ('bad', '{0,0,1,0}');
SELECT id FROM vsw_t ORDER BY id;

-- Re-created with 4 dimensions by another client (another server: another
-- connection), which writes 'a' and 'd'.
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vsw"
\! curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"name":"pgpoly_rt_vsw","configuration":{"hnsw":{"space":"l2"}}}' "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections"
\! psql -X -q -d "$VSW_DB" -c "INSERT INTO vsw_o VALUES ('a', '{1,0,0,0}'), ('d', '{0,0,0,1}')"
-- a transactional statement (sent at its COMMIT)
INSERT INTO vsw_t VALUES ('x', '{1,1,0}');
\echo :LAST_ERROR_SQLSTATE
-- the error refreshed the session's description: now each row is checked
INSERT INTO vsw_t VALUES ('x', '{1,1,0}');
INSERT INTO vsw_t VALUES ('e', '{0,1,1,0}');
SELECT id, embedding FROM vsw_o ORDER BY id;

-- Re-created with 3 dimensions, for an immediate statement.
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vsw"
\! curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"name":"pgpoly_rt_vsw","configuration":{"hnsw":{"space":"l2"}}}' "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections"
\! psql -X -q -d "$VSW_DB" -c "INSERT INTO vsw_o VALUES ('a', '{1,0,0}'), ('d', '{0,0,1}')"
INSERT INTO vsw_i VALUES ('x', '{1,1,0,0}'), ('y', '{1,1,1,0}');
\echo :LAST_ERROR_SQLSTATE
SELECT id, embedding FROM vsw_o ORDER BY id;

-- Re-created with 4 dimensions between a DELETE and an INSERT of one
-- transaction: COMMIT fails and sends neither ('d' is still there).
BEGIN;
DELETE FROM vsw_t WHERE id = 'd';
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vsw"
\! curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"name":"pgpoly_rt_vsw","configuration":{"hnsw":{"space":"l2"}}}' "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections"
\! psql -X -q -d "$VSW_DB" -c "INSERT INTO vsw_o VALUES ('d', '{0,0,0,1}'), ('z', '{1,0,1,0}')"
INSERT INTO vsw_t VALUES ('y', '{1,1,0}');
COMMIT;
\echo :LAST_ERROR_SQLSTATE
SELECT id, embedding FROM vsw_o ORDER BY id;
SELECT id, embedding FROM vsw_t ORDER BY id;

-- An UPDATE whose scan meets the collection re-created with 3 dimensions:
-- the new embedding (of the dimension the statement started with) is
-- refused before it is sent.
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vsw"
\! curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"name":"pgpoly_rt_vsw","configuration":{"hnsw":{"space":"l2"}}}' "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections"
\! psql -X -q -d "$VSW_DB" -c "INSERT INTO vsw_o VALUES ('z', '{1,0,1}')"
UPDATE vsw_t SET embedding = '{9,9,9,9}' WHERE id = 'z';
\echo :LAST_ERROR_SQLSTATE
SELECT id, embedding FROM vsw_o ORDER BY id;

-- An empty collection, two statements of one transaction with different
-- dimensions: COMMIT fails before sending either.
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vsw2"
\! curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"name":"pgpoly_rt_vsw2","configuration":{"hnsw":{"space":"l2"}}}' "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections"
CREATE FOREIGN TABLE vsw_e (id text, embedding real[])
  SERVER vsw_chroma OPTIONS (collection 'pgpoly_rt_vsw2');
BEGIN;
INSERT INTO vsw_e VALUES ('p', '{1,0,0}');
INSERT INTO vsw_e VALUES ('q', '{1,0,0,0}');
COMMIT;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM vsw_e;
-- within one statement the second dimension is refused at once
INSERT INTO vsw_e VALUES ('p', '{1,0,0}'), ('q', '{1,0,0,0}');
INSERT INTO vsw_e VALUES ('p', '{1,0,0}');
SELECT id, embedding FROM vsw_e;

\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vsw"
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vsw2"
SET client_min_messages = warning;
DROP SERVER vsw_chroma, vsw_other CASCADE;
