--
-- Row and statement triggers on foreign tables of every store, in
-- write_mode 'transactional' and 'immediate', against a native table with
-- the same rows and triggers.  Each statement runs from the same four rows
-- on every table; the row count, the RETURNING rows, the triggers' log and
-- the final contents must be the native table's.  What the triggers do:
--   * BEFORE ROW: v 'skip' returns NULL (the row is not written), 'mod'
--     changes n, 'rekey' changes the key, 'count' stores in n how many rows
--     the table holds then: on a native table, the rows this statement
--     wrote before it too;
--   * AFTER ROW: logs the row; v 'echo' inserts another row into the same
--     table, 'seen' logs how many rows the table holds (every row of the
--     statement is written by then);
--   * BEFORE and AFTER STATEMENT: log; AFTER logs the table's contents.
-- In write_mode 'immediate' the rows a statement wrote used to wait in the
-- batch until the statement ended, so triggers read the table without
-- them.  A trigger changing an Elasticsearch _id is refused (0A000), as
-- assigning it is.
--
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_mtr_v"
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_mtr_vi"

CREATE SERVER mtr_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER mtr_redis;
CREATE SERVER mtr_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
CREATE SERVER mtr_vec FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
SELECT pgpoly.elastic_request('mtr_es', 'DELETE', '/regress_mtr,regress_mtr_i') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('mtr_es', 'PUT', '/' || i,
    '{"mappings": {"properties": {"v": {"type": "keyword"}, "n": {"type": "integer"}}}}')->>'acknowledged'
FROM unnest('{regress_mtr,regress_mtr_i}'::text[]) i;

CREATE TABLE mtr_native (k text PRIMARY KEY, v text, n int);
CREATE FOREIGN TABLE mtr_hash (k text OPTIONS (key 'true'), v text, n int)
  SERVER mtr_redis OPTIONS (table_type 'hash', key_prefix 'regress_mtr:t:');
CREATE FOREIGN TABLE mtr_hash_now (k text OPTIONS (key 'true'), v text, n int)
  SERVER mtr_redis OPTIONS (table_type 'hash', key_prefix 'regress_mtr:i:', write_mode 'immediate');
CREATE FOREIGN TABLE mtr_es (_id text, v text, n int)
  SERVER mtr_es OPTIONS (index 'regress_mtr', refresh 'true');
CREATE FOREIGN TABLE mtr_es_now (_id text, v text, n int)
  SERVER mtr_es OPTIONS (index 'regress_mtr_i', refresh 'true', write_mode 'immediate');
CREATE FOREIGN TABLE mtr_vec (id text, embedding real[] DEFAULT '{1,0}', v text, n int)
  SERVER mtr_vec OPTIONS (collection 'regress_mtr_v', create_collection 'true', distance 'l2');
CREATE FOREIGN TABLE mtr_vec_now (id text, embedding real[] DEFAULT '{1,0}', v text, n int)
  SERVER mtr_vec OPTIONS (collection 'regress_mtr_vi', create_collection 'true', distance 'l2',
                          write_mode 'immediate');
CREATE TABLE mtr_tables (t text, key text);
INSERT INTO mtr_tables VALUES ('mtr_native', 'k'), ('mtr_hash', 'k'), ('mtr_hash_now', 'k'),
  ('mtr_es', '_id'), ('mtr_es_now', '_id'), ('mtr_vec', 'id'), ('mtr_vec_now', 'id');
CREATE TABLE mtr_log (t text, ev text);

-- the contents of table t: "key=v/n,..."
CREATE FUNCTION mtr_contents(t text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE key text := (SELECT m.key FROM mtr_tables m WHERE m.t = mtr_contents.t); r text;
BEGIN
  EXECUTE format('SELECT string_agg(format(''%%s=%%s/%%s'', %I, v, n), '','' ORDER BY %I) FROM %I',
                 key, key, t) INTO r;
  RETURN r;
END $$;
-- (re)fill table t with rows a .. d (d: 'keep'), no trigger firing
CREATE FUNCTION mtr_fill(t text) RETURNS void LANGUAGE plpgsql
SET session_replication_role = replica AS $$
DECLARE key text := (SELECT m.key FROM mtr_tables m WHERE m.t = mtr_fill.t);
BEGIN
  EXECUTE format('DELETE FROM %I', t);
  EXECUTE format('INSERT INTO %I (%I, v, n) VALUES (''a'', ''va'', 1), (''b'', ''vb'', 2), (''c'', ''vc'', 3), (''d'', ''keep'', 4)', t, key);
END $$;

CREATE FUNCTION mtr_before() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE kc text := TG_ARGV[0]; j jsonb;
BEGIN
  IF TG_OP = 'DELETE' THEN
    INSERT INTO mtr_log VALUES (TG_TABLE_NAME, 'BD:' || (to_jsonb(OLD)->>kc));
    RETURN CASE WHEN OLD.v = 'keep' THEN NULL ELSE OLD END;
  END IF;
  j := to_jsonb(NEW);
  INSERT INTO mtr_log VALUES (TG_TABLE_NAME, 'B' || left(TG_OP, 1) || ':' || (j->>kc));
  IF NEW.v = 'skip' THEN RETURN NULL; END IF;
  IF NEW.v = 'mod' THEN NEW.n := NEW.n * 100; END IF;
  IF NEW.v = 'rekey' THEN
    NEW := jsonb_populate_record(NEW, jsonb_build_object(kc, (j->>kc) || '2'));
  END IF;
  IF NEW.v = 'count' THEN
    EXECUTE format('SELECT count(*) FROM %I', TG_TABLE_NAME) INTO NEW.n;
  END IF;
  RETURN NEW;
END $$;
CREATE FUNCTION mtr_after() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE kc text := TG_ARGV[0]; n bigint;
BEGIN
  IF TG_LEVEL = 'STATEMENT' THEN
    INSERT INTO mtr_log VALUES (TG_TABLE_NAME, 'S' || left(TG_WHEN, 1) || left(TG_OP, 1) ||
      CASE WHEN TG_WHEN = 'AFTER' THEN '=' || coalesce(mtr_contents(TG_TABLE_NAME), '') ELSE '' END);
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO mtr_log VALUES (TG_TABLE_NAME, 'AD:' || (to_jsonb(OLD)->>kc));
  ELSE
    INSERT INTO mtr_log VALUES (TG_TABLE_NAME, 'A' || left(TG_OP, 1) || ':' ||
                                (to_jsonb(NEW)->>kc) || '=' || NEW.v || '/' || NEW.n);
    IF NEW.v = 'echo' THEN
      EXECUTE format('INSERT INTO %I (%I, v, n) VALUES ($1, ''echoed'', $2)', TG_TABLE_NAME, kc)
        USING (to_jsonb(NEW)->>kc) || 'e', NEW.n;
    END IF;
    IF NEW.v = 'seen' THEN
      EXECUTE format('SELECT count(*) FROM %I', TG_TABLE_NAME) INTO n;
      INSERT INTO mtr_log VALUES (TG_TABLE_NAME, 'seen=' || n);
    END IF;
  END IF;
  RETURN NULL;
END $$;
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT * FROM mtr_tables LOOP
    EXECUTE format('CREATE TRIGGER b BEFORE INSERT OR UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION mtr_before(%L)', r.t, r.key);
    EXECUTE format('CREATE TRIGGER a AFTER INSERT OR UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION mtr_after(%L)', r.t, r.key);
    EXECUTE format('CREATE TRIGGER sb BEFORE INSERT OR UPDATE OR DELETE ON %I FOR EACH STATEMENT EXECUTE FUNCTION mtr_after(%L)', r.t, r.key);
    EXECUTE format('CREATE TRIGGER sa AFTER INSERT OR UPDATE OR DELETE ON %I FOR EACH STATEMENT EXECUTE FUNCTION mtr_after(%L)', r.t, r.key);
  END LOOP;
END $$;

-- run stmt (%1$s: the table, %2$s: its key column) on table t:
-- "row count | RETURNING rows | triggers' log | contents"
CREATE FUNCTION mtr_run(t text, stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE key text := (SELECT m.key FROM mtr_tables m WHERE m.t = mtr_run.t);
        ret text := CASE WHEN key = 'id' THEN 'id, v, n' ELSE '*' END;
        n bigint; r text; lg text;
BEGIN
  PERFORM mtr_fill(t);
  BEGIN
    EXECUTE format('WITH m AS (' || stmt || ' RETURNING ' || ret ||
                   ') SELECT string_agg(m::text, '','' ORDER BY m::text) FROM m', t, key) INTO r;
  EXCEPTION WHEN OTHERS THEN r := 'ERROR ' || SQLSTATE;
  END;
  PERFORM mtr_fill(t);
  DELETE FROM mtr_log;
  BEGIN
    EXECUTE format(stmt, t, key);
    GET DIAGNOSTICS n = ROW_COUNT;
  EXCEPTION WHEN OTHERS THEN RETURN 'ERROR ' || SQLSTATE || ': ' || SQLERRM;
  END;
  SELECT string_agg(ev, ' ' ORDER BY ev) INTO lg FROM mtr_log WHERE mtr_log.t = mtr_run.t;
  RETURN format('%s | %s | %s | %s', n, r, lg, mtr_contents(t));
END $$;
-- stmt on every table: the native table's result, then each foreign
-- table's where it differs
CREATE FUNCTION mtr_all(stmt text) RETURNS TABLE (t text, result text) LANGUAGE plpgsql AS $$
DECLARE native text := mtr_run('mtr_native', stmt); r record; res text;
BEGIN
  t := 'mtr_native'; result := native; RETURN NEXT;
  FOR r IN SELECT m.t FROM mtr_tables m WHERE m.t <> 'mtr_native' ORDER BY m.t LOOP
    res := mtr_run(r.t, stmt);
    CONTINUE WHEN res = native;
    t := r.t; result := res; RETURN NEXT;
  END LOOP;
END $$;

\pset format unaligned
-- BEFORE ROW INSERT: skip, change a value, change the key
SELECT * FROM mtr_all($$INSERT INTO %1$s (%2$s, v, n) VALUES ('x', 'skip', 1), ('y', 'mod', 2), ('z', 'plain', 3), ('w', 'rekey', 4)$$);
-- BEFORE ROW triggers see the rows the statement inserted before them,
-- AFTER ROW and statement triggers every row of the statement
SELECT * FROM mtr_all($$INSERT INTO %1$s (%2$s, v, n) VALUES ('x', 'count', 1), ('y', 'count', 2), ('z', 'seen', 3)$$);
SELECT * FROM mtr_all($$INSERT INTO %1$s (%2$s, v, n) SELECT 'g' || g, 'seen', g FROM generate_series(1, 3) g$$);
-- an AFTER ROW trigger inserting into the same table
SELECT * FROM mtr_all($$INSERT INTO %1$s (%2$s, v, n) VALUES ('x', 'echo', 1), ('y', 'seen', 2)$$);
-- ON CONFLICT DO NOTHING: BEFORE ROW fires for every row, AFTER ROW for
-- the rows inserted; a key changed by the trigger decides the conflict
SELECT * FROM mtr_all($$INSERT INTO %1$s (%2$s, v, n) VALUES ('a', 'plain', 1), ('y', 'mod', 2), ('y', 'plain', 3), ('c', 'rekey', 4), ('z', 'count', 5) ON CONFLICT DO NOTHING$$);
-- UPDATE: skip, change a value (the Elasticsearch _id cannot change)
SELECT * FROM mtr_all($$UPDATE %1$s SET v = CASE %2$s WHEN 'a' THEN 'skip' WHEN 'b' THEN 'mod' ELSE 'plain' END$$);
SELECT * FROM mtr_all($$UPDATE %1$s SET v = 'rekey' WHERE %2$s = 'c'$$);
-- the AFTER STATEMENT trigger sees every row updated, and the rows the
-- AFTER ROW triggers inserted
SELECT * FROM mtr_all($$UPDATE %1$s SET v = 'echo', n = n + 10 WHERE %2$s IN ('a', 'b')$$);
SELECT * FROM mtr_all($$UPDATE %1$s SET n = n * 2$$);
-- DELETE: BEFORE ROW keeps d; the AFTER STATEMENT trigger sees none of
-- the rows deleted
SELECT * FROM mtr_all($$DELETE FROM %1$s WHERE %2$s > 'a'$$);
\pset format aligned

-- a generic plan of a prepared INSERT with row triggers, immediate mode
SELECT mtr_fill('mtr_hash_now');
DELETE FROM mtr_log;
SET plan_cache_mode = force_generic_plan;
PREPARE mtr_p(text, text) AS INSERT INTO mtr_hash_now VALUES ($1, 'count', 0), ($2, 'seen', 0);
EXECUTE mtr_p('p1', 'p2');
EXECUTE mtr_p('p3', 'p4');
RESET plan_cache_mode;
SELECT ev FROM mtr_log WHERE ev LIKE 'seen%' OR ev LIKE 'AI%' ORDER BY ev;

-- rows of a failed statement that were not sent yet stay unsent, also when
-- the transaction goes on (a PL/pgSQL EXCEPTION block, ROLLBACK TO) and
-- uses the store again
ALTER FOREIGN TABLE mtr_hash_now OPTIONS (ADD batch_size '10');
ALTER FOREIGN TABLE mtr_es_now OPTIONS (ADD batch_size '10');
ALTER FOREIGN TABLE mtr_vec_now OPTIONS (ADD batch_size '10');
SET session_replication_role = replica;
DELETE FROM mtr_hash_now; DELETE FROM mtr_es_now; DELETE FROM mtr_vec_now;
DO $$
BEGIN
  BEGIN
    INSERT INTO mtr_hash_now SELECT 'e' || g, 'v', 10 / (3 - g) FROM generate_series(1, 3) g;
  EXCEPTION WHEN division_by_zero THEN RAISE NOTICE 'hash: %', SQLERRM;
  END;
  BEGIN
    INSERT INTO mtr_es_now SELECT 'e' || g, 'v', 10 / (3 - g) FROM generate_series(1, 3) g;
  EXCEPTION WHEN division_by_zero THEN RAISE NOTICE 'es: %', SQLERRM;
  END;
  BEGIN
    INSERT INTO mtr_vec_now (id, v, n) SELECT 'e' || g, 'v', 10 / (3 - g) FROM generate_series(1, 3) g;
  EXCEPTION WHEN division_by_zero THEN RAISE NOTICE 'vec: %', SQLERRM;
  END;
  PERFORM count(*) FROM mtr_hash;
END $$;
BEGIN;
SAVEPOINT s;
INSERT INTO mtr_hash_now SELECT 'f' || g, 'v', 10 / (3 - g) FROM generate_series(1, 3) g;
ROLLBACK TO s;
SELECT count(*) FROM mtr_hash;
COMMIT;
SELECT (SELECT count(*) FROM mtr_hash_now) AS hash, (SELECT count(*) FROM mtr_es_now) AS es,
       (SELECT count(*) FROM mtr_vec_now) AS vec;
RESET session_replication_role;

DELETE FROM mtr_hash; DELETE FROM mtr_hash_now; DELETE FROM mtr_vec; DELETE FROM mtr_vec_now;
SELECT pgpoly.elastic_request('mtr_es', 'DELETE', '/regress_mtr,regress_mtr_i')->>'acknowledged';
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_mtr_v"
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_mtr_vi"
