--
-- pgpoly_vector converts only the columns a query reads.  A record written
-- by another client of the collection may hold a metadata value that does
-- not convert to its column's type (a string in an int key, a number out
-- of the column's range): a query that does not read that column finds the
-- record as a native table would (differential); one that reads it, or the
-- whole row, is the same clear ERROR as before.
--
\getenv chroma_url CHROMA_URL
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_vrc"

CREATE SERVER vrc FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
-- the other client's view: the whole metadata as jsonb
CREATE FOREIGN TABLE vrc_raw (id text, embedding real[], document text, metadata jsonb)
  SERVER vrc OPTIONS (collection 'regress_vrc', create_collection 'true', distance 'l2');
-- ours: the keys n and s mapped to typed columns, and the whole metadata
CREATE FOREIGN TABLE vrc_t (id text, embedding real[], document text, n int,
                            s smallint, metadata jsonb, _distance float8)
  SERVER vrc OPTIONS (collection 'regress_vrc', distance 'l2');
CREATE TABLE vrc_native (id text COLLATE "C" PRIMARY KEY, embedding real[], document text,
                         metadata jsonb);
INSERT INTO vrc_raw VALUES
  ('g1', '{1,0}', 'one', '{"n": 1, "s": 1}'),
  ('g2', '{0,1}', 'two', '{"n": 2, "s": 2}'),
  ('g3', '{2,2}', 'three', '{"n": 3, "s": 3}'),
  ('bad', '{1,1}', 'bad', '{"n": "x", "s": 1}'),
  ('big', '{3,3}', 'big', '{"n": 4, "s": 100000}');
INSERT INTO vrc_native SELECT * FROM vrc_raw;

-- Queries that read neither n nor s nor the whole row: the native rows.
-- (Those reading the metadata column or a key read other keys' bad values.)
CREATE TABLE vrc_queries (q int, sql text);
INSERT INTO vrc_queries VALUES
  (1, $$SELECT id FROM %s$$),
  (2, $$SELECT count(*) FROM %s$$),
  (3, $$SELECT id, document, embedding FROM %s WHERE document <> 'two'$$),
  (4, $$SELECT id, embedding <-> '{1,1}' FROM %s ORDER BY embedding <-> '{1,1}', id LIMIT 3$$),
  (5, $$SELECT id FROM %s ORDER BY embedding <-> '{3,3}' LIMIT 2$$),
  (6, $$SELECT a.id, b.document FROM %1$s a JOIN %1$s b ON a.id = b.id$$),
  (7, $$SELECT x, t.id FROM unnest('{bad,g1,big}'::text[]) x JOIN %s t ON t.id = x$$),
  (8, $$SELECT id FROM %s WHERE id = ANY('{bad,big,g2}') AND length(document) = 3$$),
  (9, $$SELECT id FROM %s t WHERE EXISTS (SELECT 1 FROM vrc_native v WHERE v.id = t.id)$$),
  (10, $$SELECT id, metadata FROM %s$$),
  (11, $$SELECT id, document FROM %s WHERE metadata->>'n' = 'x'$$),
  (12, $$SELECT id, metadata->'s' FROM %s ORDER BY embedding <-> '{1.1,1}' LIMIT 2$$),
  (13, $$SELECT a.id, b.metadata FROM %1$s a JOIN %1$s b ON a.id = b.id WHERE a.document <> 'two'$$),
  (14, $$SELECT (metadata->>'n')::int FROM %s WHERE id = 'big'$$),
  (15, $$SELECT (metadata->>'s')::int FROM %s WHERE id = 'bad'$$);
CREATE FUNCTION vrc_rows(q text, tbl text) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format('SELECT (s)::text FROM (' || q || ') s ORDER BY 1', tbl);
END $$;
SELECT q, ARRAY(SELECT vrc_rows(sql, 'vrc_t')) = ARRAY(SELECT vrc_rows(sql, 'vrc_native')) AS same
  FROM vrc_queries ORDER BY q;
-- the k-NN query is pushed down and asks only for what it reads
EXPLAIN (COSTS OFF, VERBOSE)
SELECT id, embedding <-> '{1,1}' FROM vrc_t ORDER BY embedding <-> '{1,1}' LIMIT 3;
EXPLAIN (COSTS OFF) SELECT id FROM vrc_t;
EXPLAIN (COSTS OFF) SELECT id, n FROM vrc_t;

-- Columns of good records read by a query that skips the bad ones, and the
-- good key of a record whose other key is bad.
SELECT id, n, s FROM vrc_t WHERE id IN ('g1', 'g3') ORDER BY id;
SELECT id, n FROM vrc_t ORDER BY embedding <-> '{0,1}' LIMIT 1;
SELECT id, n FROM vrc_t WHERE id = 'big';
SELECT id, s FROM vrc_t WHERE id = 'bad';
SELECT id, n, metadata FROM vrc_t ORDER BY embedding <-> '{3,3}' LIMIT 1;
-- s < 2 is sent: the service filters out big, whose s (100000) the
-- column would refuse, as postgres_fdw's remote conditions may.
SELECT id, s FROM vrc_t WHERE s < 2 ORDER BY id;

-- Reading a bad value, in the target list, a local qual, the whole row or
-- a k-NN query's target list, is the same ERROR as before.
SELECT id, n FROM vrc_t ORDER BY id;
SELECT id, s FROM vrc_t WHERE id = 'big';
SELECT id FROM vrc_t WHERE n + 0 > 0;
SELECT id FROM vrc_t WHERE s::text = '1';
SELECT t FROM vrc_t t WHERE id = 'bad';
SELECT row_to_json(t) FROM vrc_t t WHERE id = 'big';
SELECT id, n FROM vrc_t ORDER BY embedding <-> '{1,1}' LIMIT 1;
SELECT count(n) FROM vrc_t;
-- (a k-NN query of the whole row is sorted locally: every record's row)
SELECT t FROM vrc_t t ORDER BY embedding <-> '{0,1}' LIMIT 1;

-- Prepared statements under a generic plan, read by parameter (rescans).
SET plan_cache_mode = force_generic_plan;
PREPARE vrc_id(text) AS SELECT id, document FROM vrc_t WHERE id = $1;
EXECUTE vrc_id('bad');
EXECUTE vrc_id('big');
PREPARE vrc_n(text) AS SELECT id, n FROM vrc_t WHERE id = $1;
EXECUTE vrc_n('g2');
EXECUTE vrc_n('bad');
PREPARE vrc_knn(real[]) AS SELECT id FROM vrc_t ORDER BY embedding <-> $1 LIMIT 1;
EXECUTE vrc_knn('{1,1}');
EXECUTE vrc_knn('{3,3}');
DEALLOCATE ALL;
RESET plan_cache_mode;

-- Writes: UPDATE builds the new row from the old one, DELETE ... RETURNING
-- returns it: both read the whole row.  A DELETE without RETURNING reads
-- only the id (and the columns of its quals); the transaction's writes are
-- seen by its later reads without converting what they do not read.
BEGIN;
UPDATE vrc_t SET document = 'x' WHERE id = 'bad';
ROLLBACK;
BEGIN;
DELETE FROM vrc_t WHERE id = 'big' RETURNING id;
ROLLBACK;
BEGIN;
UPDATE vrc_t SET document = 'uno' WHERE id = 'g1' RETURNING id, n, document;
INSERT INTO vrc_t (id, embedding, document, metadata) VALUES ('new', '{5,5}', 'new', '{"s": 7}');
SELECT id, s FROM vrc_t WHERE metadata->>'n' = 'x';
DELETE FROM vrc_t WHERE document = 'bad';
DELETE FROM vrc_t WHERE metadata @> '{"n": 3}';
DELETE FROM vrc_native WHERE document = 'bad' OR metadata @> '{"n": 3}';
UPDATE vrc_native SET document = 'uno' WHERE id = 'g1';
INSERT INTO vrc_native VALUES ('new', '{5,5}', 'new', '{"s": 7}');
SELECT q, ARRAY(SELECT vrc_rows(sql, 'vrc_t')) = ARRAY(SELECT vrc_rows(sql, 'vrc_native')) AS same
  FROM vrc_queries ORDER BY q;
SELECT id, n, s FROM vrc_t WHERE id IN ('new', 'g1', 'g3') ORDER BY id;
ROLLBACK;
SELECT id FROM vrc_t ORDER BY id;

\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_vrc"
DROP SERVER vrc CASCADE;
DROP TABLE vrc_native, vrc_queries;
DROP FUNCTION vrc_rows(text, text);
