--
-- pgpoly_elastic read-your-writes: a transaction's buffered writes are
-- overlaid on what the index returns, by document _id (a seeded key table,
-- src/keyhash.c, since ids are chosen by whoever writes them).
-- Differential: the same writes go to a native table keyed by the same ids,
-- and every read of the foreign table inside the transaction, and after
-- COMMIT, must match the native one.  The ids differ only in case, in
-- leading or trailing spaces, in control characters and other bytes that
-- are not letters, in a combining accent, and in the last byte of a
-- 512-byte id (Elasticsearch's longest).  The index regress_eo is created
-- and dropped here.
--
\getenv es_url ES_URL
\set VERBOSITY terse

CREATE SERVER eo_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('eo_es', 'DELETE', '/regress_eo') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('eo_es', 'PUT', '/regress_eo',
  '{"mappings": {"properties": {"v": {"type": "long"}, "s": {"type": "keyword"}}}}')
  ->> 'acknowledged' AS created;
CREATE FOREIGN TABLE eo (_id text, v int, s text)
  SERVER eo_es OPTIONS (index 'regress_eo', refresh 'true');
CREATE TABLE eo_native (id text COLLATE "C" PRIMARY KEY, v int, s text);

-- The ids, numbered.
CREATE TABLE eo_ids (n int PRIMARY KEY, id text COLLATE "C" UNIQUE NOT NULL);
INSERT INTO eo_ids
  SELECT row_number() OVER (ORDER BY o), id FROM (
    SELECT o, id FROM unnest(ARRAY[
      'key', 'Key', 'KEY', 'kEy', 'key ', 'key  ', ' key', 'k ey',
      E'key\t', E'key\n', E'\x01key', E'key\x1f', E'\x7f', E'\x01', E'\x02',
      '"', '\', '%2F', '%', '?x=1', '#', '+', 'a b', 'a+b',
      'é', U&'e\0301', 'É', U&'\00e9 ', '日本', '日本 ',
      repeat('z', 511) || 'a', repeat('z', 511) || 'b', repeat('z', 511) || 'A'])
      WITH ORDINALITY u(id, o)
    UNION ALL SELECT 100 + g, 'k' || g FROM generate_series(1, 200) g) a;
SELECT count(*) AS ids, count(DISTINCT lower(id)) AS ids_ignoring_case FROM eo_ids;

-- Rows of the foreign table that the native one lacks, and the reverse.
CREATE FUNCTION eo_diff() RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM (
    (SELECT _id, v, s FROM eo EXCEPT ALL SELECT id, v, s FROM eo_native)
    UNION ALL
    (SELECT id, v, s FROM eo_native EXCEPT ALL SELECT _id, v, s FROM eo)) d $$;
-- Ids whose lookup by _id (one query per id) differs between the two.
CREATE FUNCTION eo_lookup_diff() RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM eo_ids i
   WHERE (SELECT row(v, s) FROM eo WHERE _id = i.id)
         IS DISTINCT FROM (SELECT row(v, s) FROM eo_native WHERE id = i.id) $$;

-- Committed: every other id.
INSERT INTO eo SELECT id, n, 'seed' FROM eo_ids WHERE n % 2 = 0;
INSERT INTO eo_native SELECT id, n, 'seed' FROM eo_ids WHERE n % 2 = 0;
SELECT eo_diff() AS diff, eo_lookup_diff() AS lookup_diff;

-- Buffered: inserts, updates and deletes (through the overlay), then
-- ON CONFLICT DO NOTHING inserts, which conflict with the transaction's own
-- rows and not with the ones it deleted.
BEGIN;
INSERT INTO eo SELECT id, n, 'new' FROM eo_ids WHERE n % 2 = 1;
INSERT INTO eo_native SELECT id, n, 'new' FROM eo_ids WHERE n % 2 = 1;
UPDATE eo SET v = v + 1000, s = 'upd' WHERE v % 3 = 0;
UPDATE eo_native SET v = v + 1000, s = 'upd' WHERE v % 3 = 0;
DELETE FROM eo WHERE v % 5 = 0;
DELETE FROM eo_native WHERE v % 5 = 0;
UPDATE eo SET s = s || '+' WHERE _id IN (SELECT id FROM eo_ids WHERE n % 7 = 0);
UPDATE eo_native SET s = s || '+' WHERE id IN (SELECT id FROM eo_ids WHERE n % 7 = 0);
INSERT INTO eo SELECT id, -n, 'again' FROM eo_ids WHERE n % 4 = 0 ON CONFLICT DO NOTHING;
INSERT INTO eo_native SELECT id, -n, 'again' FROM eo_ids WHERE n % 4 = 0 ON CONFLICT DO NOTHING;
SELECT eo_diff() AS diff, eo_lookup_diff() AS lookup_diff;
SELECT to_jsonb(_id) AS id, v, s FROM eo WHERE _id IN (SELECT id FROM eo_ids WHERE n <= 8)
  ORDER BY _id COLLATE "C";
SELECT (SELECT count(*) FROM eo) = (SELECT count(*) FROM eo_native) AS same_count,
       (SELECT count(*) FROM eo_native WHERE s = 'again') AS reinserted;
-- A pushed id list reads through the overlay as well.
SELECT count(*) AS listed_diff FROM (
  (SELECT _id, v, s FROM eo WHERE _id = ANY (ARRAY(SELECT id FROM eo_ids WHERE n % 3 <> 1))
   EXCEPT ALL
   SELECT id, v, s FROM eo_native WHERE id = ANY (ARRAY(SELECT id FROM eo_ids WHERE n % 3 <> 1)))
  UNION ALL
  (SELECT id, v, s FROM eo_native WHERE id = ANY (ARRAY(SELECT id FROM eo_ids WHERE n % 3 <> 1))
   EXCEPT ALL
   SELECT _id, v, s FROM eo WHERE _id = ANY (ARRAY(SELECT id FROM eo_ids WHERE n % 3 <> 1)))) d;
COMMIT;
SELECT eo_diff() AS diff, eo_lookup_diff() AS lookup_diff;

-- A transaction rolled back leaves both as they were.
BEGIN;
DELETE FROM eo WHERE _id IN ('key', 'KEY ', 'key ');
DELETE FROM eo_native WHERE id IN ('key', 'KEY ', 'key ');
INSERT INTO eo VALUES ('KEY ', 1, 'rolled back');
INSERT INTO eo_native VALUES ('KEY ', 1, 'rolled back');
SELECT eo_diff() AS diff;
SELECT to_jsonb(_id) AS id, v, s FROM eo WHERE lower(_id) LIKE '%key%' ORDER BY _id COLLATE "C";
ROLLBACK;
SELECT eo_diff() AS diff, eo_lookup_diff() AS lookup_diff;

DROP FOREIGN TABLE eo;
DROP TABLE eo_native, eo_ids;
DROP FUNCTION eo_diff(), eo_lookup_diff();
SELECT pgpoly.elastic_request('eo_es', 'DELETE', '/regress_eo') ->> 'acknowledged' AS dropped;
DROP SERVER eo_es;
