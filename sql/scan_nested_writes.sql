--
-- A paged scan of Redis (SCAN, pages of fetch_size keys) or of a Chroma
-- collection (pages are offsets) while writes in write_mode 'immediate'
-- reach its rows from outside the scanning statement's own modification:
-- a function the query calls per row, a BEFORE ROW trigger of a native
-- table the query fills, a statement run between two FETCHes of a cursor.
-- SCAN may return keys added during it; on Chroma a delete shifts the
-- unread records below the next offset and an insert adds one the scan
-- then reads.  So before such a write is sent, the open paged scans read
-- their remaining pages (Redis: list their keys), and return the rows held
-- before it, as the native twin n does.  Every query runs on n and on the
-- store's table t (read through the paged table, written through the
-- immediate one); the counts and the contents must agree.
--
\getenv redis_port REDIS_PORT
\getenv chroma_url CHROMA_URL
SET timezone = 'UTC';
CREATE SCHEMA scan_nested_writes;
SET search_path = scan_nested_writes, public;
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_snw:*' | xargs -r redis-cli -p "$REDIS_PORT" del > /dev/null
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_snw"
CREATE SERVER snw_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE SERVER snw_chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
-- r, c page by 5 rows; ri, ci write the same rows immediately
CREATE FOREIGN TABLE r (id text OPTIONS (key 'true'), embedding real[], v int)
  SERVER snw_redis OPTIONS (key_prefix 'regress_snw:', fetch_size '5');
CREATE FOREIGN TABLE ri (id text OPTIONS (key 'true'), embedding real[], v int)
  SERVER snw_redis OPTIONS (key_prefix 'regress_snw:', write_mode 'immediate', batch_size '1');
CREATE FOREIGN TABLE c (id text, embedding real[], v int) SERVER snw_chroma
  OPTIONS (collection 'pgpoly_rt_snw', create_collection 'true', distance 'l2', fetch_size '5');
CREATE FOREIGN TABLE ci (id text, embedding real[], v int) SERVER snw_chroma
  OPTIONS (collection 'pgpoly_rt_snw', create_collection 'true', distance 'l2',
           write_mode 'immediate', batch_size '1');
CREATE TABLE n (id text PRIMARY KEY, embedding real[], v int);
-- the rows: n's 40, written to the store through its immediate table w
CREATE FUNCTION fill(w text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM n;
  EXECUTE format('DELETE FROM %I', w);
  INSERT INTO n SELECT 'k' || i, ARRAY[i, 0, 0]::real[], i FROM generate_series(1, 40) i;
  EXECUTE format('INSERT INTO %I SELECT * FROM n', w);
END $$;
-- rows of table t and of n that the other lacks (nothing, if they agree)
CREATE FUNCTION diff(t text) RETURNS TABLE (id text, v int, only_in text)
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format(
    '(SELECT id, v, %1$L FROM %1$I EXCEPT SELECT id, v, %1$L FROM n)
     UNION ALL (SELECT id, v, ''n'' FROM n EXCEPT SELECT id, v, ''n'' FROM %1$I)
     ORDER BY 1', t);
END $$;
-- per row: insert a new one (k || 'x', up to three x), or delete it
CREATE FUNCTION ins(t text, k text, v int) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  IF length(k) < 6 THEN
    EXECUTE format('INSERT INTO %I VALUES ($1, ARRAY[1, 0, 0]::real[], $2)', t) USING k || 'x', v;
  END IF;
  RETURN k;
END $$;
CREATE FUNCTION del(t text, k text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('DELETE FROM %I WHERE id = $1', t) USING k;
  RETURN k;
END $$;
-- a native table filled from a scan, whose BEFORE ROW trigger writes
CREATE TABLE log (id text);
CREATE FUNCTION log_ins() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM ins(TG_ARGV[0], NEW.id, 0); RETURN NEW; END $$;
-- the rows a cursor returns after its first three
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
-- Each scenario on n and on the store's tables t (read) and w (written);
-- returns what every step counted, native and store side by side.
CREATE FUNCTION scenarios(t text, w text)
RETURNS TABLE (step text, native bigint, store bigint, store_distinct bigint)
LANGUAGE plpgsql AS $$
DECLARE
  a bigint; b bigint; d bigint;
BEGIN
  -- inserting per row: the scan reads none of the rows inserted
  PERFORM fill(w);
  SELECT count(*) INTO a FROM (SELECT ins('n', id, v) FROM n) s;
  EXECUTE format('SELECT count(*), count(DISTINCT k) FROM (SELECT ins(%L, id, v) AS k FROM %I) s', w, t)
    INTO b, d;
  step := 'insert per row'; native := a; store := b; store_distinct := d; RETURN NEXT;
  EXECUTE 'SELECT count(*) FROM diff($1)' USING t INTO b;
  step := 'insert per row: rows apart'; native := 0; store := b; store_distinct := NULL; RETURN NEXT;
  -- the same reading the key alone (Redis: SCAN's keys are the rows)
  PERFORM fill(w);
  SELECT count(*) INTO a FROM (SELECT ins('n', id, 0) FROM n) s;
  EXECUTE format('SELECT count(*), count(DISTINCT k) FROM (SELECT ins(%L, id, 0) AS k FROM %I) s', w, t)
    INTO b, d;
  step := 'insert per row, key only'; native := a; store := b; store_distinct := d; RETURN NEXT;
  -- deleting per row: every row is processed once
  PERFORM fill(w);
  SELECT count(*) INTO a FROM (SELECT del('n', id) FROM n) s;
  EXECUTE format('SELECT count(*), count(DISTINCT k) FROM (SELECT del(%L, id) AS k FROM %I) s', w, t)
    INTO b, d;
  step := 'delete per row'; native := a; store := b; store_distinct := d; RETURN NEXT;
  EXECUTE format('SELECT count(*) FROM %I', t) INTO b;
  step := 'delete per row: rows left'; native := 0; store := b; store_distinct := NULL; RETURN NEXT;
  -- a BEFORE ROW trigger of a native table filled from the scan
  PERFORM fill(w);
  DELETE FROM log;
  EXECUTE format('CREATE TRIGGER log_ins BEFORE INSERT ON log FOR EACH ROW EXECUTE FUNCTION log_ins(%L)', w);
  EXECUTE format('INSERT INTO log SELECT id FROM %I', t);
  DROP TRIGGER log_ins ON log;
  SELECT count(*), count(DISTINCT id) INTO b, d FROM log;
  step := 'trigger per row'; native := 40; store := b; store_distinct := d; RETURN NEXT;
END $$;

SELECT * FROM scenarios('r', 'ri');
SELECT * FROM scenarios('c', 'ci');

-- A cursor: the rows inserted between two FETCHes show in none, those
-- deleted in all (as of the DECLARE).
SELECT fill('ri');
BEGIN;
DECLARE cr CURSOR FOR SELECT id, v FROM r;
DECLARE cn CURSOR FOR SELECT id, v FROM n;
MOVE 3 IN cr;
MOVE 3 IN cn;
INSERT INTO ri SELECT 'new' || i, ARRAY[1, 0, 0]::real[], i FROM generate_series(1, 30) i;
INSERT INTO n SELECT 'new' || i, ARRAY[1, 0, 0]::real[], i FROM generate_series(1, 30) i;
SELECT fetch_rest('cr'), fetch_rest('cn');
COMMIT;
SELECT * FROM diff('r');
SELECT fill('ci');
BEGIN;
DECLARE cc CURSOR FOR SELECT id, v FROM c;
DECLARE cn2 CURSOR FOR SELECT id, v FROM n;
MOVE 3 IN cc;
MOVE 3 IN cn2;
DELETE FROM ci WHERE v % 2 = 0;
DELETE FROM n WHERE v % 2 = 0;
INSERT INTO ci SELECT 'new' || i, ARRAY[1, 0, 0]::real[], i FROM generate_series(1, 10) i;
INSERT INTO n SELECT 'new' || i, ARRAY[1, 0, 0]::real[], i FROM generate_series(1, 10) i;
SELECT fetch_rest('cc'), fetch_rest('cn2');
COMMIT;
SELECT * FROM diff('c');
SELECT cur, count(*), count(DISTINCT id), count(*) FILTER (WHERE id LIKE 'new%') AS inserted_after
FROM got GROUP BY cur ORDER BY cur;

DELETE FROM ri;
DELETE FROM ci;
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_snw"
DROP SCHEMA scan_nested_writes CASCADE;
DROP SERVER snw_redis, snw_chroma CASCADE;
