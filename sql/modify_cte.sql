--
-- Data-modifying WITH queries and INSERT ... SELECT on foreign tables of
-- every store, in write_mode 'transactional' and 'immediate' (batches of
-- 10 rows), against a native table.  A statement with several modifying
-- nodes writes in the order PostgreSQL runs them: in write_mode
-- 'immediate' each node used to send its batch when it ended, so a WITH
-- query's DELETE of a key reached the store after the main INSERT of the
-- same key (which it then deleted), and an ON CONFLICT DO NOTHING found
-- a row another node had already deleted.  Each statement runs from the
-- same four rows on every table; the row count, the RETURNING rows and
-- the final contents must be the native table's.
--
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_mcte_v"
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_mcte_vi"

CREATE SERVER mcte_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER mcte_redis;
CREATE SERVER mcte_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
CREATE SERVER mcte_vec FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
SELECT pgpoly.elastic_request('mcte_es', 'DELETE', '/regress_mcte,regress_mcte_i') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('mcte_es', 'PUT', '/' || i,
    '{"mappings": {"properties": {"v": {"type": "keyword"}, "n": {"type": "integer"}}}}')->>'acknowledged'
FROM unnest('{regress_mcte,regress_mcte_i}'::text[]) i;

CREATE TABLE mcte_native (k text PRIMARY KEY, v text, n int);
CREATE FOREIGN TABLE mcte_hash (k text OPTIONS (key 'true'), v text, n int)
  SERVER mcte_redis OPTIONS (table_type 'hash', key_prefix 'regress_mcte:t:');
CREATE FOREIGN TABLE mcte_hash_now (k text OPTIONS (key 'true'), v text, n int)
  SERVER mcte_redis OPTIONS (table_type 'hash', key_prefix 'regress_mcte:i:',
                            write_mode 'immediate', batch_size '10');
CREATE FOREIGN TABLE mcte_es (_id text, v text, n int)
  SERVER mcte_es OPTIONS (index 'regress_mcte', refresh 'true');
CREATE FOREIGN TABLE mcte_es_now (_id text, v text, n int)
  SERVER mcte_es OPTIONS (index 'regress_mcte_i', refresh 'true', write_mode 'immediate',
                         batch_size '10');
CREATE FOREIGN TABLE mcte_vec (id text, embedding real[] DEFAULT '{1,0}', v text, n int)
  SERVER mcte_vec OPTIONS (collection 'regress_mcte_v', create_collection 'true', distance 'l2');
CREATE FOREIGN TABLE mcte_vec_now (id text, embedding real[] DEFAULT '{1,0}', v text, n int)
  SERVER mcte_vec OPTIONS (collection 'regress_mcte_vi', create_collection 'true', distance 'l2',
                          write_mode 'immediate', batch_size '10');
CREATE TABLE mcte_tables (t text, key text);
INSERT INTO mcte_tables VALUES ('mcte_native', 'k'), ('mcte_hash', 'k'), ('mcte_hash_now', 'k'),
  ('mcte_es', '_id'), ('mcte_es_now', '_id'), ('mcte_vec', 'id'), ('mcte_vec_now', 'id');

-- the contents of table t: "key=v/n,..."
CREATE FUNCTION mcte_contents(t text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE key text := (SELECT m.key FROM mcte_tables m WHERE m.t = mcte_contents.t); r text;
BEGIN
  EXECUTE format('SELECT string_agg(format(''%%s=%%s/%%s'', %I, v, n), '','' ORDER BY %I) FROM %I',
                 key, key, t) INTO r;
  RETURN r;
END $$;
CREATE FUNCTION mcte_fill(t text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE key text := (SELECT m.key FROM mcte_tables m WHERE m.t = mcte_fill.t);
BEGIN
  EXECUTE format('DELETE FROM %I', t);
  EXECUTE format('INSERT INTO %I (%I, v, n) VALUES (''a'', ''va'', 1), (''b'', ''vb'', 2), (''c'', ''vc'', 3), (''d'', ''vd'', 4)', t, key);
END $$;
-- run stmt (%1$s: the table, %2$s: its key column) on table t:
-- "row count | RETURNING rows | contents", or "ERROR sqlstate: message | contents"
CREATE FUNCTION mcte_run(t text, stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE key text := (SELECT m.key FROM mcte_tables m WHERE m.t = mcte_run.t);
        ret text := CASE WHEN key = 'id' THEN 'id, v, n' ELSE '*' END;
        n bigint; r text;
BEGIN
  PERFORM mcte_fill(t);
  BEGIN
    EXECUTE format('WITH m AS (' || stmt || ' RETURNING ' || ret ||
                   ') SELECT string_agg(m::text, '','' ORDER BY m::text) FROM m', t, key) INTO r;
  EXCEPTION WHEN OTHERS THEN r := 'ERROR ' || SQLSTATE;
  END;
  PERFORM mcte_fill(t);
  BEGIN
    EXECUTE format(stmt, t, key);
    GET DIAGNOSTICS n = ROW_COUNT;
  EXCEPTION WHEN OTHERS THEN
    RETURN 'ERROR ' || SQLSTATE || ': ' || SQLERRM || ' | ' || mcte_contents(t);
  END;
  RETURN format('%s | %s | %s', n, r, mcte_contents(t));
END $$;
-- stmt on every table: the native table's result, then each foreign
-- table's where it differs
CREATE FUNCTION mcte_all(stmt text) RETURNS TABLE (t text, result text) LANGUAGE plpgsql AS $$
DECLARE native text := mcte_run('mcte_native', stmt); r record; res text;
BEGIN
  t := 'mcte_native'; result := native; RETURN NEXT;
  FOR r IN SELECT m.t FROM mcte_tables m WHERE m.t <> 'mcte_native' ORDER BY m.t LOOP
    res := mcte_run(r.t, stmt);
    CONTINUE WHEN res = native;
    t := r.t; result := res; RETURN NEXT;
  END LOOP;
END $$;

\pset format unaligned
-- the WITH query's DELETE runs first, as the main INSERT reads its rows:
-- the key is deleted, then inserted anew
SELECT * FROM mcte_all($$WITH d AS (DELETE FROM %1$s WHERE %2$s = 'a' RETURNING *) INSERT INTO %1$s (%2$s, v, n) SELECT %2$s, 'new', 9 FROM d$$);
SELECT * FROM mcte_all($$WITH d AS (DELETE FROM %1$s WHERE %2$s = 'a' RETURNING *) INSERT INTO %1$s (%2$s, v, n) SELECT %2$s, 'new', 9 FROM d ON CONFLICT DO NOTHING$$);
-- the main DELETE runs first, the WITH query's INSERT after it
SELECT * FROM mcte_all($$WITH i AS (INSERT INTO %1$s (%2$s, v, n) VALUES ('a', 'new', 9) ON CONFLICT DO NOTHING RETURNING *) DELETE FROM %1$s WHERE %2$s = 'a'$$);
SELECT * FROM mcte_all($$WITH i AS (INSERT INTO %1$s (%2$s, v, n) VALUES ('x', 'new', 9) RETURNING *) DELETE FROM %1$s$$);
SELECT * FROM mcte_all($$WITH i AS (INSERT INTO %1$s (%2$s, v, n) VALUES ('x', 'new', 9) RETURNING *) UPDATE %1$s SET n = -n$$);
-- two WITH queries and the main statement, each a different row
SELECT * FROM mcte_all($$WITH u AS (UPDATE %1$s SET n = n + 100 WHERE %2$s = 'c' RETURNING *), d AS (DELETE FROM %1$s WHERE %2$s = 'd' RETURNING *) INSERT INTO %1$s (%2$s, v, n) SELECT %2$s || 'u', v, n FROM u UNION ALL SELECT %2$s || 'd', v, n FROM d$$);
-- INSERT ... SELECT from the table itself, with duplicates
SELECT * FROM mcte_all($$INSERT INTO %1$s (%2$s, v, n) SELECT CASE WHEN n %% 2 = 0 THEN %2$s ELSE %2$s || 'x' END, 'self', n FROM %1$s ON CONFLICT DO NOTHING$$);
SELECT * FROM mcte_all($$INSERT INTO %1$s (%2$s, v, n) SELECT CASE WHEN g <= 2 THEN 'a' ELSE 'k' || (g / 2) END, 'g' || g, g FROM generate_series(1, 25) g ON CONFLICT DO NOTHING$$);
-- a sub-select reads the table as it was before the statement
SELECT * FROM mcte_all($$UPDATE %1$s SET n = (SELECT count(*) FROM %1$s) WHERE %2$s = 'a'$$);
SELECT * FROM mcte_all($$DELETE FROM %1$s WHERE n < (SELECT max(n) FROM %1$s)$$);
\pset format aligned

DELETE FROM mcte_hash; DELETE FROM mcte_hash_now; DELETE FROM mcte_vec; DELETE FROM mcte_vec_now;
SELECT pgpoly.elastic_request('mcte_es', 'DELETE', '/regress_mcte,regress_mcte_i')->>'acknowledged';
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_mcte_v"
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_mcte_vi"
