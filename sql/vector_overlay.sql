--
-- pgpoly_vector read-your-writes against a real Chroma: a transaction's
-- buffered writes are overlaid on what the service returns, by record id (a
-- seeded key table, src/keyhash.c, since ids are chosen by whoever writes
-- them).  Differential: the same writes go to a native table keyed by the
-- same ids, and every read of the foreign table inside the transaction (a
-- paged scan, a lookup per id, a pushed id list, a k-NN computed locally),
-- and after COMMIT, must match the native one.  The ids differ only in case,
-- in leading or trailing spaces, in control characters and other bytes that
-- are not letters, in a combining accent, and in the last byte of ids longer
-- than 255 bytes (the overlay kept ids truncated to 255 bytes as its keys).
-- The collection pgpoly_rt_ov is created and dropped here.
--
\getenv chroma_url CHROMA_URL
\set VERBOSITY terse
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_ov"

CREATE SERVER vo_chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE vo (id text, embedding real[], v int, s text)
  SERVER vo_chroma OPTIONS (collection 'pgpoly_rt_ov', create_collection 'true', distance 'l2',
                            batch_size '7', fetch_size '50');
CREATE TABLE vo_native (id text COLLATE "C" PRIMARY KEY, embedding real[], v int, s text);

-- The ids, numbered.
CREATE TABLE vo_ids (n int PRIMARY KEY, id text COLLATE "C" UNIQUE NOT NULL);
INSERT INTO vo_ids
  SELECT row_number() OVER (ORDER BY o), id FROM (
    SELECT o, id FROM unnest(ARRAY[
      'key', 'Key', 'KEY', 'kEy', 'key ', 'key  ', ' key', 'k ey',
      E'key\t', E'key\n', E'\x01key', E'key\x1f', E'\x7f', E'\x01', E'\x02',
      '"', '\', '%2F', '%', '?x=1', '#', '+', 'a b', 'a+b', '/', '../x',
      'é', U&'e\0301', 'É', U&'\00e9 ', '日本', '日本 ',
      repeat('z', 255) || 'a', repeat('z', 255) || 'b', repeat('z', 255) || 'A',
      repeat('z', 255), repeat('z', 254) || 'é',
      repeat('y', 600) || 'a', repeat('y', 600) || 'b', repeat('y', 600) || ' '])
      WITH ORDINALITY u(id, o)
    UNION ALL SELECT 100 + g, 'k' || g FROM generate_series(1, 200) g) a;
SELECT count(*) AS ids, count(DISTINCT lower(id)) AS ids_ignoring_case,
       count(DISTINCT substring(convert_to(id, 'UTF8') FOR 255)) AS ids_by_first_255_bytes FROM vo_ids;

-- Rows of the foreign table that the native one lacks, and the reverse.
CREATE FUNCTION vo_diff() RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM (
    (SELECT id, embedding, v, s FROM vo EXCEPT ALL SELECT id, embedding, v, s FROM vo_native)
    UNION ALL
    (SELECT id, embedding, v, s FROM vo_native EXCEPT ALL SELECT id, embedding, v, s FROM vo)) d $$;
-- Ids whose lookup by id (one query per id) differs between the two.
CREATE FUNCTION vo_lookup_diff() RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM vo_ids i
   WHERE (SELECT row(v, s) FROM vo WHERE id = i.id)
         IS DISTINCT FROM (SELECT row(v, s) FROM vo_native WHERE id = i.id) $$;
-- The 12 nearest records to a point (all distances differ), as ids and values.
CREATE FUNCTION vo_knn_diff() RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM (
    (SELECT * FROM (SELECT id, v, s FROM vo ORDER BY embedding <-> '{120.3,0}' LIMIT 12) a
     EXCEPT ALL
     SELECT * FROM (SELECT id, v, s FROM vo_native ORDER BY embedding <-> '{120.3,0}' LIMIT 12) b)
    UNION ALL
    (SELECT * FROM (SELECT id, v, s FROM vo_native ORDER BY embedding <-> '{120.3,0}' LIMIT 12) b
     EXCEPT ALL
     SELECT * FROM (SELECT id, v, s FROM vo ORDER BY embedding <-> '{120.3,0}' LIMIT 12) a)) d $$;

-- Committed: every other id.
INSERT INTO vo SELECT id, ARRAY[n, 0]::real[], n, 'seed' FROM vo_ids WHERE n % 2 = 0;
INSERT INTO vo_native SELECT id, ARRAY[n, 0]::real[], n, 'seed' FROM vo_ids WHERE n % 2 = 0;
SELECT vo_diff() AS diff, vo_lookup_diff() AS lookup_diff, vo_knn_diff() AS knn_diff;

-- Buffered: inserts, updates and deletes (through the overlay), then
-- ON CONFLICT DO NOTHING inserts, which conflict with the transaction's own
-- rows and not with the ones it deleted.
BEGIN;
INSERT INTO vo SELECT id, ARRAY[n, 0]::real[], n, 'new' FROM vo_ids WHERE n % 2 = 1;
INSERT INTO vo_native SELECT id, ARRAY[n, 0]::real[], n, 'new' FROM vo_ids WHERE n % 2 = 1;
UPDATE vo SET v = v + 1000, s = 'upd' WHERE v % 3 = 0;
UPDATE vo_native SET v = v + 1000, s = 'upd' WHERE v % 3 = 0;
DELETE FROM vo WHERE v % 5 = 0;
DELETE FROM vo_native WHERE v % 5 = 0;
UPDATE vo SET s = s || '+' WHERE id IN (SELECT id FROM vo_ids WHERE n % 7 = 0);
UPDATE vo_native SET s = s || '+' WHERE id IN (SELECT id FROM vo_ids WHERE n % 7 = 0);
INSERT INTO vo SELECT id, ARRAY[n, 0]::real[], -n, 'again' FROM vo_ids WHERE n % 4 = 0
  ON CONFLICT DO NOTHING;
INSERT INTO vo_native SELECT id, ARRAY[n, 0]::real[], -n, 'again' FROM vo_ids WHERE n % 4 = 0
  ON CONFLICT DO NOTHING;
SELECT vo_diff() AS diff, vo_lookup_diff() AS lookup_diff, vo_knn_diff() AS knn_diff;
SELECT to_jsonb(id) AS id, v, s FROM vo WHERE id IN (SELECT id FROM vo_ids WHERE n <= 8)
  ORDER BY id COLLATE "C";
SELECT left(id, 3) AS starts, length(id) AS len, right(id, 1) AS last, v, s FROM vo
  WHERE length(id) > 250 ORDER BY id COLLATE "C";
SELECT (SELECT count(*) FROM vo) = (SELECT count(*) FROM vo_native) AS same_count,
       (SELECT count(*) FROM vo_native WHERE s = 'again') AS reinserted;
-- A pushed id list reads through the overlay as well.
SELECT count(*) AS listed_diff FROM (
  (SELECT id, v, s FROM vo WHERE id = ANY (ARRAY(SELECT id FROM vo_ids WHERE n % 3 <> 1))
   EXCEPT ALL
   SELECT id, v, s FROM vo_native WHERE id = ANY (ARRAY(SELECT id FROM vo_ids WHERE n % 3 <> 1)))
  UNION ALL
  (SELECT id, v, s FROM vo_native WHERE id = ANY (ARRAY(SELECT id FROM vo_ids WHERE n % 3 <> 1))
   EXCEPT ALL
   SELECT id, v, s FROM vo WHERE id = ANY (ARRAY(SELECT id FROM vo_ids WHERE n % 3 <> 1)))) d;
COMMIT;
SELECT vo_diff() AS diff, vo_lookup_diff() AS lookup_diff, vo_knn_diff() AS knn_diff;

-- A transaction rolled back leaves both as they were.
BEGIN;
DELETE FROM vo WHERE id IN ('key', 'KEY ', 'key ');
DELETE FROM vo_native WHERE id IN ('key', 'KEY ', 'key ');
INSERT INTO vo VALUES ('KEY ', '{1,1}', 1, 'rolled back');
INSERT INTO vo_native VALUES ('KEY ', '{1,1}', 1, 'rolled back');
SELECT vo_diff() AS diff;
SELECT to_jsonb(id) AS id, v, s FROM vo WHERE lower(id) LIKE '%key%' ORDER BY id COLLATE "C";
ROLLBACK;
SELECT vo_diff() AS diff, vo_lookup_diff() AS lookup_diff;

DROP FOREIGN TABLE vo;
DROP TABLE vo_native, vo_ids;
DROP FUNCTION vo_diff(), vo_lookup_diff(), vo_knn_diff();
DROP SERVER vo_chroma;
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_ov"
