--
-- UPDATE ... FROM and DELETE ... USING whose join matches one foreign row
-- more than once.  PostgreSQL modifies such a row once, with one of the
-- matches, counts it once, returns it once, and fires its row triggers
-- once (the later matches find it already modified by the statement).
-- Each statement runs on a foreign table of every store and on a native
-- copy; the row counts, RETURNING rows and trigger firings must be the
-- same, and the value written one of the matches'.
--
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_mjd_v"

CREATE SERVER mjd_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER mjd_redis;
CREATE SERVER mjd_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
CREATE SERVER mjd_vec FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
SELECT pgpoly.elastic_request('mjd_es', 'DELETE', '/regress_mjd') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('mjd_es', 'PUT', '/regress_mjd',
    '{"mappings": {"properties": {"v": {"type": "keyword"}}}}')->>'acknowledged';

-- key k, value v in every table
CREATE FOREIGN TABLE mjd_hash (k text OPTIONS (key 'true'), v text)
  SERVER mjd_redis OPTIONS (table_type 'hash', key_prefix 'regress_mjd:h:');
CREATE FOREIGN TABLE mjd_hash_now (k text OPTIONS (key 'true'), v text)
  SERVER mjd_redis OPTIONS (table_type 'hash', key_prefix 'regress_mjd:n:', write_mode 'immediate');
CREATE FOREIGN TABLE mjd_es (_id text, v text)
  SERVER mjd_es OPTIONS (index 'regress_mjd', refresh 'true');
CREATE FOREIGN TABLE mjd_vec (id text, embedding real[], v text OPTIONS (field 'v'))
  SERVER mjd_vec OPTIONS (collection 'regress_mjd_v', create_collection 'true', distance 'l2');
CREATE TABLE mjd_native (k text PRIMARY KEY, v text);

-- the rows: a .. f; the join source matches b twice, c three times, d once
CREATE TABLE mjd_rows AS SELECT k, 'orig-' || k AS v FROM unnest('{a,b,c,d,e,f}'::text[]) k;
CREATE TABLE mjd_src (k text, nv text);
INSERT INTO mjd_src VALUES ('b', 'b1'), ('b', 'b2'), ('c', 'c1'), ('c', 'c2'), ('c', 'c3'),
                           ('d', 'd1'), ('zz', 'none');

-- (re)fill table t (NULL: every table) with mjd_rows
CREATE FUNCTION mjd_fill(t text DEFAULT NULL) RETURNS void LANGUAGE plpgsql AS $$
DECLARE x text;
BEGIN
  FOR x IN SELECT unnest('{mjd_hash,mjd_hash_now,mjd_es,mjd_vec,mjd_native}'::text[]) LOOP
    CONTINUE WHEN t IS NOT NULL AND x <> t;
    EXECUTE format('DELETE FROM %I', x);
    IF x = 'mjd_vec' THEN
      INSERT INTO mjd_vec SELECT k, ARRAY[ascii(k), 0]::real[], v FROM mjd_rows;
    ELSE
      EXECUTE format('INSERT INTO %I SELECT * FROM mjd_rows', x);
    END IF;
  END LOOP;
END $$;

-- row triggers count their firings per table
CREATE TABLE mjd_fired (tbl text, op text, k text);
CREATE FUNCTION mjd_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO mjd_fired VALUES (TG_TABLE_NAME, TG_OP, to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END)::text);
  RETURN NULL;
END $$;

-- run statement stmt (%1$s: the table, %2$s: its key column) on table t:
-- "rows | RETURNING rows | trigger firings"
CREATE FUNCTION mjd_run(t text, key text, stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE n bigint; r bigint; f bigint;
BEGIN
  PERFORM mjd_fill(t);
  EXECUTE format('WITH m AS (' || stmt || ' RETURNING 1) SELECT count(*) FROM m', t, key) INTO r;
  PERFORM mjd_fill(t);
  DELETE FROM mjd_fired;
  EXECUTE format(stmt, t, key);
  GET DIAGNOSTICS n = ROW_COUNT;
  SELECT count(*) INTO f FROM mjd_fired WHERE tbl = t;
  RETURN format('%s | %s | %s', n, r, f);
END $$;

CREATE TRIGGER mjd_t AFTER UPDATE OR DELETE ON mjd_native FOR EACH ROW EXECUTE FUNCTION mjd_note();
CREATE TRIGGER mjd_t AFTER UPDATE OR DELETE ON mjd_hash FOR EACH ROW EXECUTE FUNCTION mjd_note();
CREATE TRIGGER mjd_t AFTER UPDATE OR DELETE ON mjd_hash_now FOR EACH ROW EXECUTE FUNCTION mjd_note();
CREATE TRIGGER mjd_t AFTER UPDATE OR DELETE ON mjd_es FOR EACH ROW EXECUTE FUNCTION mjd_note();
CREATE TRIGGER mjd_t AFTER UPDATE OR DELETE ON mjd_vec FOR EACH ROW EXECUTE FUNCTION mjd_note();

CREATE TABLE mjd_tables (t text, key text);
INSERT INTO mjd_tables VALUES ('mjd_native', 'k'), ('mjd_hash', 'k'), ('mjd_hash_now', 'k'),
  ('mjd_es', '_id'), ('mjd_vec', 'id');
CREATE TABLE mjd_stmts (name text, stmt text);
INSERT INTO mjd_stmts VALUES
  ('UPDATE FROM', 'UPDATE %1$s x SET v = s.nv FROM mjd_src s WHERE x.%2$s = s.k'),
  ('UPDATE FROM, own value', 'UPDATE %1$s x SET v = x.v || ''+'' FROM mjd_src s WHERE x.%2$s = s.k'),
  ('UPDATE FROM a join', 'UPDATE %1$s x SET v = s.nv FROM mjd_src s JOIN mjd_src s2 ON s2.k = s.k WHERE x.%2$s = s.k'),
  ('DELETE USING', 'DELETE FROM %1$s x USING mjd_src s WHERE x.%2$s = s.k'),
  ('DELETE USING, no duplicates', 'DELETE FROM %1$s x USING (SELECT DISTINCT k FROM mjd_src) s WHERE x.%2$s = s.k');

-- every statement on every table, from a fresh fill; the native answer first
SELECT s.name, t.t, mjd_run(t.t, t.key, s.stmt) AS "rows | returning | triggers"
FROM mjd_stmts s, mjd_tables t
ORDER BY s.name, t.t <> 'mjd_native', t.t;

-- the values written: each updated row holds one of its matches' values
SELECT mjd_fill();
UPDATE mjd_hash x SET v = s.nv FROM mjd_src s WHERE x.k = s.k;
UPDATE mjd_hash_now x SET v = s.nv FROM mjd_src s WHERE x.k = s.k;
UPDATE mjd_es x SET v = s.nv FROM mjd_src s WHERE x._id = s.k;
UPDATE mjd_vec x SET v = s.nv FROM mjd_src s WHERE x.id = s.k;
SELECT t, k, v IN (SELECT nv FROM mjd_src s WHERE s.k = u.k) OR (v = 'orig-' || k AND k NOT IN (SELECT k FROM mjd_src)) AS ok
FROM (SELECT 'hash' t, k, v FROM mjd_hash UNION ALL SELECT 'hash_now', k, v FROM mjd_hash_now
      UNION ALL SELECT 'es', _id, v FROM mjd_es
      UNION ALL SELECT 'vec', id, v FROM mjd_vec) u
WHERE NOT (v IN (SELECT nv FROM mjd_src s WHERE s.k = u.k) OR (v = 'orig-' || k AND k NOT IN (SELECT k FROM mjd_src)));
-- and "own value" appends once, not once per match
SELECT mjd_fill();
UPDATE mjd_hash x SET v = x.v || '+' FROM mjd_src s WHERE x.k = s.k;
UPDATE mjd_es x SET v = x.v || '+' FROM mjd_src s WHERE x._id = s.k;
SELECT k, v FROM mjd_hash ORDER BY k;
SELECT _id, v FROM mjd_es ORDER BY _id;

-- inside a transaction, read back before COMMIT, and with a generic plan
SELECT mjd_fill();
BEGIN;
WITH u AS (UPDATE mjd_hash x SET v = s.nv FROM mjd_src s WHERE x.k = s.k RETURNING x.k)
SELECT k FROM u ORDER BY k;
SELECT count(*) FROM mjd_hash WHERE v LIKE 'orig-%';
COMMIT;
SET plan_cache_mode = force_generic_plan;
PREPARE mjd_p(text) AS DELETE FROM mjd_hash x USING mjd_src s WHERE x.k = s.k AND s.k >= $1;
EXECUTE mjd_p('a');
EXECUTE mjd_p('a');
RESET plan_cache_mode;
SELECT k FROM mjd_hash ORDER BY k;

DELETE FROM mjd_hash; DELETE FROM mjd_hash_now; DELETE FROM mjd_es; DELETE FROM mjd_vec;
SELECT pgpoly.elastic_request('mjd_es', 'DELETE', '/regress_mjd')->>'acknowledged';
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_mjd_v"
