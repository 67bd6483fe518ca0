--
-- pgpoly_vector scans by id lists that repeat ids: each record is one row,
-- as in a native table (differential), whether the repeats fall in one
-- request or in two (fetch_size 1), with buffered writes, in a k-NN query
-- and in a join whose inner side is scanned by a parameter (rescans).
--
\getenv chroma_url CHROMA_URL
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_vsi"

CREATE SERVER vsi FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE vsi_t (id text, embedding real[], document text) SERVER vsi
  OPTIONS (collection 'regress_vsi', create_collection 'true', distance 'l2');
CREATE FOREIGN TABLE vsi_one (id text, embedding real[], document text) SERVER vsi
  OPTIONS (collection 'regress_vsi', create_collection 'true', distance 'l2',
           fetch_size '1');
CREATE TABLE vsi_native (id text COLLATE "C" PRIMARY KEY, embedding real[], document text);
INSERT INTO vsi_t VALUES ('a', '{1,0}', 'A'), ('b', '{0,1}', 'B'), ('c', '{1,1}', 'C');
INSERT INTO vsi_native SELECT * FROM vsi_t;

-- The same queries on each table: the same rows.
CREATE TABLE vsi_queries (n int, q text);
INSERT INTO vsi_queries VALUES
  (1, $$SELECT id, document FROM %s WHERE id = ANY('{a,a,b}')$$),
  (2, $$SELECT id, document FROM %s WHERE id = ANY('{a,b,a,a}')$$),
  (3, $$SELECT id, document FROM %s WHERE id = ANY('{a,zz,zz}')$$),
  (4, $$SELECT id FROM %s WHERE id = ANY('{a,a,b,c}') ORDER BY embedding <-> '{0,1}' LIMIT 2$$),
  (5, $$SELECT x, t.id FROM unnest('{a,b,a,zz}'::text[]) x JOIN %s t ON t.id = x$$),
  (6, $$SELECT id FROM %s WHERE id = 'a' OR id = ANY('{a,b}')$$);
CREATE FUNCTION vsi_rows(q text, tbl text) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format('SELECT (s)::text FROM (' || q || ') s ORDER BY 1', tbl);
END $$;
SELECT n, tbl, ARRAY(SELECT vsi_rows(q, tbl)) = ARRAY(SELECT vsi_rows(q, 'vsi_native')) AS same
  FROM vsi_queries, unnest('{vsi_t,vsi_one}'::text[]) tbl ORDER BY n, tbl;
SELECT * FROM vsi_rows((SELECT q FROM vsi_queries WHERE n = 2), 'vsi_one');

-- With buffered writes of the transaction.
BEGIN;
INSERT INTO vsi_t VALUES ('d', '{2,2}', 'D');
INSERT INTO vsi_one VALUES ('e', '{2,3}', 'E');
DELETE FROM vsi_t WHERE id = 'b';
INSERT INTO vsi_native VALUES ('d', '{2,2}', 'D'), ('e', '{2,3}', 'E');
DELETE FROM vsi_native WHERE id = 'b';
SELECT id FROM vsi_t WHERE id = ANY('{d,d,a,b,b}') ORDER BY id;
SELECT id FROM vsi_one WHERE id = ANY('{e,e,a,a}') ORDER BY id;
SELECT id FROM vsi_t WHERE id = ANY('{d,d,a,a}') ORDER BY embedding <-> '{2,2}' LIMIT 3;
ROLLBACK;

\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_vsi"
DROP SERVER vsi CASCADE;
DROP TABLE vsi_native, vsi_queries;
DROP FUNCTION vsi_rows(text, text);
