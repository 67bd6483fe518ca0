--
-- A paged Chroma scan whose drain is cut short.  Before an immediate-mode
-- write to the collection is sent, an open paged scan reads its remaining
-- pages (drain_pages).  Here a cursor's drain is cancelled by the write's
-- statement_timeout (4000 records of 2 kB, 200 pages of 20: some ten times
-- longer than 50 ms even on a quiet machine), the savepoint rolled back;
-- then half the records are deleted through the immediate table, and the
-- cursor read on.  It must
-- still return every record as of its DECLARE, as the native twin's cursor
-- does: the scan stays listed after the failed drain, so the delete has it
-- read its pages first (the next page's offset, read before the cut, must
-- still be there after the current batch's memory is reset).
--
\getenv chroma_url CHROMA_URL
SET timezone = 'UTC';
CREATE SCHEMA vector_drain_cut;
SET search_path = vector_drain_cut, public;
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vdc"
CREATE SERVER vdc FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE c (id text, embedding real[], document text, v int) SERVER vdc
  OPTIONS (collection 'pgpoly_rt_vdc', create_collection 'true', distance 'l2', fetch_size '20');
CREATE FOREIGN TABLE ci (id text, embedding real[], document text, v int) SERVER vdc
  OPTIONS (collection 'pgpoly_rt_vdc', create_collection 'true', distance 'l2',
           write_mode 'immediate');
CREATE TABLE n (id text PRIMARY KEY, embedding real[], document text, v int);
INSERT INTO n SELECT 'k' || i, array_fill(i::real, ARRAY[8]), repeat('d', 2000), i
FROM generate_series(1, 4000) i;
INSERT INTO c SELECT * FROM n;
-- the rows a cursor returns after its first
CREATE TABLE got (cur text, id text, len int);
CREATE FUNCTION fetch_rest(cur refcursor) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  r record;
BEGIN
  LOOP
    FETCH cur INTO r;
    EXIT WHEN NOT FOUND;
    INSERT INTO got VALUES (cur, r.id, r.len);
  END LOOP;
END $$;
BEGIN;
DECLARE cc CURSOR FOR SELECT id, length(document) AS len FROM c;
DECLARE cn CURSOR FOR SELECT id, length(document) AS len FROM n;
MOVE 1 IN cc;
MOVE 1 IN cn;
SAVEPOINT s;
SET LOCAL statement_timeout = '50ms';
INSERT INTO ci VALUES ('cut', ARRAY[0, 0, 0, 0, 0, 0, 0, 0]::real[], 'x', 0);
ROLLBACK TO s;
DELETE FROM ci WHERE v % 2 = 0;
DELETE FROM n WHERE v % 2 = 0;
SELECT fetch_rest('cc'), fetch_rest('cn');
COMMIT;
SELECT cur, count(*) + 1 AS rows, count(DISTINCT id) + 1 AS ids, sum(len) AS bytes
FROM got GROUP BY cur ORDER BY cur;
-- the rows each cursor returned that the other did not
SELECT id, min(cur) AS only_in FROM got GROUP BY id HAVING count(*) <> 2 ORDER BY id LIMIT 5;

DELETE FROM ci;
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vdc"
DROP SCHEMA vector_drain_cut CASCADE;
DROP SERVER vdc CASCADE;
