--
-- A paged scan of a Chroma collection (pages are offsets) while writes in
-- write_mode 'immediate' reach the same collection from outside the
-- scanning statement's own modification: a function the query calls per
-- row, or a statement run between two FETCHes of a cursor.  Each write
-- would move the rows not read yet (a delete shifts them below the next
-- offset, an insert adds one the scan then reads), so the scan first reads
-- its remaining pages, and returns the rows the collection held before,
-- as the native twin n does.  Every query runs on both; the counts and the
-- contents must agree.
--
\getenv chroma_url CHROMA_URL
SET timezone = 'UTC';
CREATE SCHEMA vector_paged_writes;
SET search_path = vector_paged_writes, public;
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vpw"
CREATE SERVER vpw_chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
-- c pages by 5 rows; ci writes the same collection immediately
CREATE FOREIGN TABLE c (id text, embedding real[], v int) SERVER vpw_chroma
  OPTIONS (collection 'pgpoly_rt_vpw', create_collection 'true', distance 'l2', fetch_size '5');
CREATE FOREIGN TABLE ci (id text, embedding real[], v int) SERVER vpw_chroma
  OPTIONS (collection 'pgpoly_rt_vpw', create_collection 'true', distance 'l2',
           write_mode 'immediate', batch_size '1');
CREATE TABLE n (id text PRIMARY KEY, embedding real[], v int);
CREATE FUNCTION fill() RETURNS void LANGUAGE sql AS $$
  DELETE FROM n; DELETE FROM ci;
  INSERT INTO n SELECT 'k' || i, ARRAY[i, 0, 0]::real[], i FROM generate_series(1, 40) i;
  INSERT INTO ci SELECT * FROM n $$;
-- rows of c and of n that the other lacks (nothing, if they agree)
CREATE FUNCTION diff() RETURNS TABLE (id text, v int, only_in text) LANGUAGE sql AS $$
  (SELECT id, v, 'c' FROM c EXCEPT SELECT id, v, 'c' FROM n)
  UNION ALL (SELECT id, v, 'n' FROM n EXCEPT SELECT id, v, 'n' FROM c) ORDER BY 1 $$;
-- per row: delete it (from n, or from the collection through ci)
CREATE FUNCTION del(t text, k text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('DELETE FROM %I WHERE id = $1', t) USING k;
  RETURN k;
END $$;
-- per row: insert a new one (k || 'x', up to three x)
CREATE FUNCTION ins(t text, k text, v int) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  IF length(k) < 6 THEN
    EXECUTE format('INSERT INTO %I VALUES ($1, ARRAY[1, 0, 0]::real[], $2)', t) USING k || 'x', v;
  END IF;
  RETURN k;
END $$;

-- a queue drained by a function per row: every row is processed once
SELECT fill();
SELECT count(*), count(DISTINCT k) FROM (SELECT del('n', id) AS k FROM n) s;
SELECT count(*), count(DISTINCT k) FROM (SELECT del('ci', id) AS k FROM c) s;
SELECT count(*) AS left_in_c FROM c;
SELECT * FROM diff();
-- inserting per row: the scan reads none of the rows inserted
SELECT fill();
SELECT count(*) FROM (SELECT ins('n', id, v) FROM n) s;
SELECT count(*) FROM (SELECT ins('ci', id, v) FROM c) s;
SELECT * FROM diff();
-- the same with the writes in a BEFORE ROW trigger of a native table
SELECT fill();
CREATE TABLE log (id text);
CREATE FUNCTION log_del() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM del(TG_ARGV[0], NEW.id); RETURN NEW; END $$;
CREATE TRIGGER log_del BEFORE INSERT ON log FOR EACH ROW EXECUTE FUNCTION log_del('ci');
INSERT INTO log SELECT id FROM c;
SELECT count(*), count(DISTINCT id) FROM log;
SELECT count(*) AS left_in_c FROM c;
DROP TABLE log;
-- a cursor: the writes between two FETCHes show in neither
CREATE TABLE got (cur text, id text, v int);
CREATE FUNCTION fetch_rest(cur refcursor) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  r record;
BEGIN
  LOOP
    FETCH cur INTO r;
    EXIT WHEN NOT FOUND;
    INSERT INTO got VALUES (cur, r.id, r.v);
  END LOOP;
END $$;
SELECT fill();
BEGIN;
DECLARE cu CURSOR FOR SELECT id, v FROM c;
DECLARE cn CURSOR FOR SELECT id, v FROM n;
MOVE 3 IN cu;
MOVE 3 IN cn;
DELETE FROM ci WHERE v % 2 = 0;
DELETE FROM n WHERE v % 2 = 0;
INSERT INTO ci SELECT 'new' || i, ARRAY[1, 0, 0]::real[], i FROM generate_series(1, 10) i;
INSERT INTO n SELECT 'new' || i, ARRAY[1, 0, 0]::real[], i FROM generate_series(1, 10) i;
SELECT fetch_rest('cu'), fetch_rest('cn');
COMMIT;
SELECT cur, count(*), count(DISTINCT id) FROM got GROUP BY cur ORDER BY cur;
-- each read the rows deleted after its DECLARE, and none inserted after it
SELECT cur, count(*) FILTER (WHERE v % 2 = 0 AND id NOT LIKE 'new%') AS deleted_after,
       count(*) FILTER (WHERE id LIKE 'new%') AS inserted_after
FROM got GROUP BY cur ORDER BY cur;
SELECT * FROM diff();

DELETE FROM ci;
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vpw"
DROP SCHEMA vector_paged_writes CASCADE;
DROP SERVER vpw_chroma CASCADE;
