--
-- INSERT ... ON CONFLICT DO NOTHING on a vector table, many rows per batch,
-- against a real Chroma: differential against a native table with a
-- unique index on id, in immediate and transactional mode.  The rows
-- skipped are those whose id an earlier row of the same batch (or of an
-- earlier batch) inserted, the collection holds, or the transaction's
-- buffered writes leave existing; ids are compared as bytes, whole (long
-- ids differing only beyond byte 255 are different ids), also under a
-- nondeterministic collation (Chroma's identity is the bytes).  A NULL id
-- is an ERROR, as for any vector INSERT.
--
\getenv chroma_url CHROMA_URL
\! for c in regress_vcb regress_vcb_ci; do curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/$c"; done

CREATE SERVER vcb FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE vcb_t (id text, embedding real[], document text) SERVER vcb
  OPTIONS (collection 'regress_vcb', create_collection 'true', distance 'l2',
           batch_size '40');
CREATE FOREIGN TABLE vcb_now (id text, embedding real[], document text) SERVER vcb
  OPTIONS (collection 'regress_vcb', create_collection 'true', distance 'l2',
           batch_size '40', write_mode 'immediate');
CREATE TABLE vcb_native (id text COLLATE "C" UNIQUE, embedding real[], document text);

-- Rows in order n: short ids repeating within and across batches of 40,
-- 300-byte ids differing in their last byte only, ids differing in case.
CREATE TABLE vcb_src (n int PRIMARY KEY, id text COLLATE "C", document text);
INSERT INTO vcb_src
  SELECT g, CASE g % 4
              WHEN 0 THEN 'k' || (g % 23)
              WHEN 1 THEN repeat('x', 299) || (g % 7)
              WHEN 2 THEN (ARRAY['Case', 'case', 'CASE', 'cAsE'])[g % 16 / 4 + 1]
              ELSE 'u' || g END,
         'doc ' || g
  FROM generate_series(1, 200) g;
SELECT count(*) AS rows, count(DISTINCT id) AS ids, max(length(id)) AS longest FROM vcb_src;

-- Some ids exist before: in the collection and in the native copy.
INSERT INTO vcb_now VALUES ('k5', '{0,0,1}', 'before'), ('Case', '{0,0,1}', 'before'),
  (repeat('x', 299) || '3', '{0,0,1}', 'before');
INSERT INTO vcb_native SELECT * FROM vcb_now;

-- The two results differ in no row (which row of an id won included), as
-- the transactional table reads them (with its buffered writes).
CREATE VIEW vcb_diff AS
  (SELECT id, document FROM vcb_t EXCEPT SELECT id, document FROM vcb_native)
  UNION ALL
  (SELECT id, document FROM vcb_native EXCEPT SELECT id, document FROM vcb_t);

-- Immediate: one statement, five batches.
INSERT INTO vcb_now SELECT id, '{1,0,0}', document FROM vcb_src ORDER BY n
  ON CONFLICT DO NOTHING;
\echo :ROW_COUNT
INSERT INTO vcb_native SELECT id, '{1,0,0}', document FROM vcb_src ORDER BY n
  ON CONFLICT DO NOTHING;
\echo :ROW_COUNT
SELECT count(*) AS stored FROM vcb_now;
SELECT count(*) AS differences FROM vcb_diff;
SELECT id, document FROM vcb_now WHERE id ILIKE 'case' OR id = 'k5' ORDER BY id COLLATE "C";

-- Transactional: buffered deletes and inserts before, then the batches.
BEGIN;
DELETE FROM vcb_t WHERE id IN ('k5', 'Case', 'u3');
DELETE FROM vcb_native WHERE id IN ('k5', 'Case', 'u3');
INSERT INTO vcb_t VALUES ('k5', '{0,1,0}', 'buffered'), ('new', '{0,1,0}', 'buffered');
INSERT INTO vcb_native VALUES ('k5', '{0,1,0}', 'buffered'), ('new', '{0,1,0}', 'buffered');
INSERT INTO vcb_t SELECT id, '{0,1,1}', 'again ' || document FROM vcb_src ORDER BY n DESC
  ON CONFLICT DO NOTHING;
\echo :ROW_COUNT
INSERT INTO vcb_native SELECT id, '{0,1,1}', 'again ' || document FROM vcb_src ORDER BY n DESC
  ON CONFLICT DO NOTHING;
\echo :ROW_COUNT
SELECT count(*) AS differences FROM vcb_diff;
COMMIT;
SELECT count(*) AS differences FROM vcb_diff;
SELECT id, document FROM vcb_t WHERE id IN ('k5', 'Case', 'u3', 'new') ORDER BY id COLLATE "C";

-- A NULL id conflicts with nothing and cannot be stored.
\set VERBOSITY terse
INSERT INTO vcb_now VALUES ('u1', '{1,1,1}', 'x'), (NULL, '{1,1,1}', 'x')
  ON CONFLICT DO NOTHING;
INSERT INTO vcb_t VALUES (NULL, '{1,1,1}', 'x') ON CONFLICT DO NOTHING;
\set VERBOSITY default

-- Under a nondeterministic collation the ids are still the service's
-- bytes: 'Case' and 'case' are two records, as SELECT shows them.
CREATE COLLATION vcb_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE FOREIGN TABLE vcb_ci_t (id text COLLATE vcb_ci, embedding real[], document text)
  SERVER vcb OPTIONS (collection 'regress_vcb_ci', create_collection 'true', distance 'l2',
                      batch_size '40');
INSERT INTO vcb_ci_t SELECT id, '{1,0,0}', document FROM vcb_src
  WHERE id ILIKE 'case' ORDER BY n ON CONFLICT DO NOTHING;
\echo :ROW_COUNT
SELECT id COLLATE "C" AS id, document FROM vcb_ci_t ORDER BY 1;
SELECT count(*) FROM vcb_ci_t WHERE id = 'CASE';

\! for c in regress_vcb regress_vcb_ci; do curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/$c"; done
DROP SERVER vcb CASCADE;
DROP TABLE vcb_native, vcb_src CASCADE;
DROP COLLATION vcb_ci;
