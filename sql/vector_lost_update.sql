--
-- pgpoly_vector: an UPDATE of a record that another client deletes after
-- the UPDATE read it and before the write is sent.  Chroma's update of an
-- id it does not hold answers success and applies nothing, so the write
-- would be silently lost.  pgpoly fails it instead, SQLSTATE 40001 (as an
-- Elasticsearch update of a document deleted meanwhile), before the
-- update is sent: at COMMIT in transactional mode, in the statement in
-- immediate mode.  The deleted record is not brought back, and the other
-- records of the update are not changed.  The collection pgpoly_rt_vlu is created and
-- dropped here.
--
\getenv chroma_url CHROMA_URL
\set VERBOSITY default
\set SHOW_CONTEXT never
\setenv VLU_DB :DBNAME
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vlu"
\! curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"name":"pgpoly_rt_vlu","configuration":{"hnsw":{"space":"l2"}}}' "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections"

CREATE SERVER vlu_chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE SERVER vlu_other FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
-- this session's table, in both write modes, and another client's
CREATE FOREIGN TABLE vlu_t (id text, embedding real[], document text)
  SERVER vlu_chroma OPTIONS (collection 'pgpoly_rt_vlu');
CREATE FOREIGN TABLE vlu_i (id text, embedding real[], document text)
  SERVER vlu_chroma OPTIONS (collection 'pgpoly_rt_vlu', write_mode 'immediate');
CREATE FOREIGN TABLE vlu_o (id text, embedding real[], document text)
  SERVER vlu_other OPTIONS (collection 'pgpoly_rt_vlu', write_mode 'immediate');
-- the other client deletes id, in the middle of this session's statement
CREATE FUNCTION vlu_delete(i text) RETURNS bool LANGUAGE plpgsql VOLATILE AS
$$BEGIN DELETE FROM vlu_o WHERE id = i; RETURN true; END$$;

INSERT INTO vlu_t VALUES ('a', '{1,0,0}', 'one'), ('b', '{0,1,0}', 'two'),
  ('c', '{0,0,1}', 'three');

-- Transactional: the UPDATE reads 'a' and 'c', another client deletes 'a'
-- before COMMIT.
BEGIN;
UPDATE vlu_t SET document = upper(document) WHERE id IN ('a', 'c');
\! psql -X -q -d "$VLU_DB" -c "DELETE FROM vlu_o WHERE id = 'a'"
COMMIT;
\echo :LAST_ERROR_SQLSTATE
SELECT id, document FROM vlu_o ORDER BY id;

-- Immediate: 'b' is deleted after the UPDATE's scan read it.
UPDATE vlu_i SET document = 'TWO' WHERE id = 'b' AND vlu_delete('b');
\echo :LAST_ERROR_SQLSTATE
SELECT id, document FROM vlu_o ORDER BY id;

-- An UPDATE of records that are there still works, both modes.
UPDATE vlu_t SET document = 'THREE' WHERE id = 'c';
UPDATE vlu_i SET document = 'Three' WHERE id = 'c' RETURNING id, document;
SELECT id, document FROM vlu_o ORDER BY id;

\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vlu"
DROP FUNCTION vlu_delete(text);
DROP SERVER vlu_chroma CASCADE;
DROP SERVER vlu_other CASCADE;
