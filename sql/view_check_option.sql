--
-- Auto-updatable views WITH CHECK OPTION over foreign tables of every
-- store, in write_mode 'transactional' and 'immediate', against the same
-- views over a native table.  PostgreSQL checks a view's option after the
-- FDW wrote the row: a buffered write goes with the failed transaction,
-- but one sent at once used to stay in the store, so a view's check
-- option did not keep rows outside it out of an immediate table.  Each
-- statement runs from the same four rows on every table; the row count,
-- the RETURNING rows, the error and the final contents must be the native
-- table's.  The immediate tables send every row at once (batch_size 1).
--
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_vco_v"
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_vco_vi"
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_vco_vb"

CREATE SERVER vco_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER vco_redis;
CREATE SERVER vco_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
CREATE SERVER vco_vec FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
SELECT pgpoly.elastic_request('vco_es', 'DELETE', '/regress_vco,regress_vco_i,regress_vco_b') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('vco_es', 'PUT', '/' || i,
    '{"mappings": {"properties": {"v": {"type": "keyword"}, "n": {"type": "integer"}}}}')->>'acknowledged'
FROM unnest('{regress_vco,regress_vco_i,regress_vco_b}'::text[]) i;

CREATE TABLE vco_native (k text PRIMARY KEY, v text, n int);
CREATE FOREIGN TABLE vco_hash (k text OPTIONS (key 'true'), v text, n int)
  SERVER vco_redis OPTIONS (table_type 'hash', key_prefix 'regress_vco:t:');
CREATE FOREIGN TABLE vco_hash_now (k text OPTIONS (key 'true'), v text, n int)
  SERVER vco_redis OPTIONS (table_type 'hash', key_prefix 'regress_vco:i:',
                            write_mode 'immediate', batch_size '1');
CREATE FOREIGN TABLE vco_es (_id text, v text, n int)
  SERVER vco_es OPTIONS (index 'regress_vco', refresh 'true');
CREATE FOREIGN TABLE vco_es_now (_id text, v text, n int)
  SERVER vco_es OPTIONS (index 'regress_vco_i', refresh 'true', write_mode 'immediate',
                         batch_size '1');
CREATE FOREIGN TABLE vco_vec (id text, embedding real[] DEFAULT '{1,0}', v text, n int)
  SERVER vco_vec OPTIONS (collection 'regress_vco_v', create_collection 'true', distance 'l2');
CREATE FOREIGN TABLE vco_vec_now (id text, embedding real[] DEFAULT '{1,0}', v text, n int)
  SERVER vco_vec OPTIONS (collection 'regress_vco_vi', create_collection 'true', distance 'l2',
                          write_mode 'immediate', batch_size '1');
CREATE FOREIGN TABLE vco_es_batch (_id text, v text, n int)
  SERVER vco_es OPTIONS (index 'regress_vco_b', write_mode 'immediate');
CREATE FOREIGN TABLE vco_vec_batch (id text, embedding real[] DEFAULT '{1,0}', v text, n int)
  SERVER vco_vec OPTIONS (collection 'regress_vco_vb', create_collection 'true', distance 'l2',
                          write_mode 'immediate');
CREATE TABLE vco_tables (t text, key text);
INSERT INTO vco_tables VALUES ('vco_native', 'k'), ('vco_hash', 'k'), ('vco_hash_now', 'k'),
  ('vco_es', '_id'), ('vco_es_now', '_id'), ('vco_vec', 'id'), ('vco_vec_now', 'id'),
  ('vco_es_batch', '_id'), ('vco_vec_batch', 'id');

-- over each table t: c_t (CASCADED: n < 10), l_t (over c_t, LOCAL: n > 0),
-- u_t (over c_t, no option of its own), x_t (v <> 'bad': a column an
-- UPDATE of n does not assign)
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT * FROM vco_tables LOOP
    EXECUTE format('CREATE VIEW %I AS SELECT %I AS key, v, n FROM %I WHERE n < 10 WITH CASCADED CHECK OPTION', 'c_' || r.t, r.key, r.t);
    EXECUTE format('CREATE VIEW %I AS SELECT * FROM %I WHERE n > 0 WITH LOCAL CHECK OPTION', 'l_' || r.t, 'c_' || r.t);
    EXECUTE format('CREATE VIEW %I AS SELECT * FROM %I WHERE n > 0', 'u_' || r.t, 'c_' || r.t);
    EXECUTE format('CREATE VIEW %I AS SELECT %I AS key, v, n FROM %I WHERE v <> ''bad'' WITH CHECK OPTION', 'x_' || r.t, r.key, r.t);
  END LOOP;
END $$;

-- the contents of table t: "key=v/n,..."
CREATE FUNCTION vco_contents(t text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE key text := (SELECT m.key FROM vco_tables m WHERE m.t = vco_contents.t); r text;
BEGIN
  EXECUTE format('SELECT string_agg(format(''%%s=%%s/%%s'', %I, v, n), '','' ORDER BY %I) FROM %I',
                 key, key, t) INTO r;
  RETURN r;
END $$;
CREATE FUNCTION vco_fill(t text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE key text := (SELECT m.key FROM vco_tables m WHERE m.t = vco_fill.t);
BEGIN
  EXECUTE format('DELETE FROM %I', t);
  EXECUTE format('INSERT INTO %I (%I, v, n) VALUES (''a'', ''va'', 1), (''b'', ''vb'', 2), (''c'', ''vc'', 3), (''d'', ''vd'', 4)', t, key);
END $$;
-- run stmt (%1$s: the table) on table t:
-- "row count | RETURNING rows | contents", or "ERROR sqlstate: message | contents"
CREATE FUNCTION vco_run(t text, stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE n bigint; r text;
BEGIN
  PERFORM vco_fill(t);
  BEGIN
    EXECUTE format('WITH m AS (' || stmt || ' RETURNING *) SELECT string_agg(m::text, '','' ORDER BY m::text) FROM m', t) INTO r;
  EXCEPTION WHEN OTHERS THEN r := 'ERROR ' || SQLSTATE;
  END;
  PERFORM vco_fill(t);
  BEGIN
    EXECUTE format(stmt, t);
    GET DIAGNOSTICS n = ROW_COUNT;
  EXCEPTION WHEN OTHERS THEN
    RETURN 'ERROR ' || SQLSTATE || ': ' || replace(SQLERRM, t, '*') || ' | ' || vco_contents(t);
  END;
  RETURN format('%s | %s | %s', n, r, vco_contents(t));
END $$;
-- stmt on every table: the native table's result, then each foreign
-- table's where it differs (view names in messages are shown as *_*)
CREATE FUNCTION vco_all(stmt text) RETURNS TABLE (t text, result text) LANGUAGE plpgsql AS $$
DECLARE native text := vco_run('vco_native', stmt); r record; res text;
BEGIN
  t := 'vco_native'; result := native; RETURN NEXT;
  FOR r IN SELECT m.t FROM vco_tables m WHERE m.t <> 'vco_native' ORDER BY m.t LOOP
    res := vco_run(r.t, stmt);
    CONTINUE WHEN res = native;
    t := r.t; result := res; RETURN NEXT;
  END LOOP;
END $$;

\pset format unaligned
-- INSERT: a row outside the view is refused and not written (the rows an
-- immediate table sent before it stay written: write_mode 'immediate' is
-- not atomic)
SELECT * FROM vco_all($$INSERT INTO c_%1$s VALUES ('y', 'bad', 50)$$);
SELECT * FROM vco_all($$INSERT INTO c_%1$s VALUES ('x', 'ok', 5), ('y', 'bad', 50)$$);
SELECT * FROM vco_all($$INSERT INTO c_%1$s VALUES ('x', 'ok', 5), ('y', 'ok', 6)$$);
SELECT * FROM vco_all($$INSERT INTO l_%1$s VALUES ('y', 'bad', -5)$$);
SELECT * FROM vco_all($$INSERT INTO l_%1$s VALUES ('y', 'bad', 50)$$);
SELECT * FROM vco_all($$INSERT INTO u_%1$s VALUES ('y', 'unchecked', -5)$$);
SELECT * FROM vco_all($$INSERT INTO u_%1$s VALUES ('y', 'bad', 50)$$);
SELECT * FROM vco_all($$INSERT INTO c_%1$s VALUES ('y', 'ok', 6), ('z', 'bad', 60) ON CONFLICT DO NOTHING$$);
SELECT * FROM vco_all($$INSERT INTO c_%1$s VALUES ('a', 'dup', 5), ('y', 'ok', 6) ON CONFLICT DO NOTHING$$);
-- a row whose id an earlier row of the statement inserted is skipped
-- unchecked, in the same batch too (Redis checks it: see below)
SELECT * FROM vco_all($$INSERT INTO c_%1$s VALUES ('y', 'ok', 6), ('y', 'dup', 60) ON CONFLICT DO NOTHING$$);
-- UPDATE: a row leaving the view is refused and not written
SELECT * FROM vco_all($$UPDATE c_%1$s SET n = 50 WHERE key = 'a'$$);
SELECT * FROM vco_all($$UPDATE l_%1$s SET n = n - 5 WHERE key = 'b'$$);
SELECT * FROM vco_all($$UPDATE x_%1$s SET n = n + 1$$);
SELECT * FROM vco_all($$UPDATE x_%1$s SET v = 'bad' WHERE key = 'c'$$);
SELECT * FROM vco_all($$UPDATE c_%1$s SET n = n + 1 WHERE key = 'd'$$);
SELECT * FROM vco_all($$DELETE FROM c_%1$s WHERE n > 2$$);
\pset format aligned

-- Immediate tables and ON CONFLICT DO NOTHING: the option is checked on
-- every row before it is sent.  Redis checks a row that conflicts too
-- (whether it conflicts is known only once it is sent); Elasticsearch and
-- vector tables look the ids up first and, as the native table, skip the
-- conflicting row unchecked.
SELECT * FROM vco_all($$INSERT INTO c_%1$s VALUES ('a', 'dup', 50) ON CONFLICT DO NOTHING$$);

-- a generic plan of a prepared INSERT through the view
SELECT vco_fill('vco_hash_now');
SET plan_cache_mode = force_generic_plan;
PREPARE vco_p(text, int) AS INSERT INTO c_vco_hash_now VALUES ($1, 'p', $2);
EXECUTE vco_p('p1', 5);
EXECUTE vco_p('p2', 50);
RESET plan_cache_mode;
SELECT k, v, n FROM vco_hash_now WHERE k LIKE 'p%' ORDER BY k;

-- a row routed through a partitioned table to an immediate foreign partition
CREATE TABLE vco_parted (k text, v text, n int) PARTITION BY RANGE (k);
CREATE FOREIGN TABLE vco_parted_f PARTITION OF vco_parted FOR VALUES FROM ('a') TO ('m')
  SERVER vco_redis OPTIONS (table_type 'hash', key_prefix 'regress_vco:p:',
                            write_mode 'immediate', batch_size '1');
ALTER FOREIGN TABLE vco_parted_f ALTER COLUMN k OPTIONS (ADD key 'true');
CREATE TABLE vco_parted_rest PARTITION OF vco_parted DEFAULT;
CREATE VIEW vco_parted_v AS SELECT * FROM vco_parted WHERE n < 10 WITH CHECK OPTION;
INSERT INTO vco_parted_v VALUES ('b', 'ok', 1);
INSERT INTO vco_parted_v VALUES ('c', 'bad', 50);
UPDATE vco_parted_v SET n = 60 WHERE k = 'b';
SELECT * FROM vco_parted_f;
DELETE FROM vco_parted;
DROP TABLE vco_parted CASCADE;

-- A Redis table with ttl_seconds: the row written has the _ttl its key
-- gets, as a native table's column DEFAULT, and the view checks that row
-- (the statement's _ttl is NULL) in every write mode, one row at a time
-- or in batches, before an immediate write is sent.
CREATE TABLE vco_ttl_native (k text PRIMARY KEY, n int, _ttl int DEFAULT 600);
CREATE FOREIGN TABLE vco_ttl (k text OPTIONS (key 'true'), n int, _ttl int)
  SERVER vco_redis OPTIONS (table_type 'hash', key_prefix 'regress_vco:ttl:', ttl_seconds '600');
CREATE FOREIGN TABLE vco_ttl_now (k text OPTIONS (key 'true'), n int, _ttl int)
  SERVER vco_redis OPTIONS (table_type 'hash', key_prefix 'regress_vco:ttli:', ttl_seconds '600',
                            write_mode 'immediate', batch_size '1');
CREATE FOREIGN TABLE vco_ttl_batch (k text OPTIONS (key 'true'), n int, _ttl int)
  SERVER vco_redis OPTIONS (table_type 'hash', key_prefix 'regress_vco:ttlb:', ttl_seconds '600',
                            write_mode 'immediate');
CREATE FUNCTION vco_ttl_run(stmt text, pred text DEFAULT '_ttl IS NULL OR _ttl < 100') RETURNS TABLE (t text, result text) LANGUAGE plpgsql AS $$
DECLARE r text; n bigint;
BEGIN
  FOREACH t IN ARRAY '{vco_ttl_native,vco_ttl,vco_ttl_now,vco_ttl_batch}'::text[] LOOP
    EXECUTE format('CREATE TEMP VIEW vco_ttl_v AS SELECT * FROM %I WHERE ' || pred || ' WITH CHECK OPTION', t);
    BEGIN
      EXECUTE stmt;
      GET DIAGNOSTICS n = ROW_COUNT;
      r := n::text;
    EXCEPTION WHEN OTHERS THEN r := 'ERROR ' || SQLSTATE;
    END;
    DROP VIEW vco_ttl_v;
    EXECUTE format('SELECT %L || '' | '' || coalesce(string_agg(k || ''/'' || n, '','' ORDER BY k), '''') FROM %I', r, t) INTO result;
    RETURN NEXT;
  END LOOP;
END $$;
SELECT * FROM vco_ttl_run($$INSERT INTO vco_ttl_v (k, n) VALUES ('a', 1)$$);
SELECT * FROM vco_ttl_run($$INSERT INTO vco_ttl_v (k, n) VALUES ('b', 1), ('c', 2)$$);
SELECT * FROM vco_ttl_run($$INSERT INTO vco_ttl_v (k, n) VALUES ('d', 1) ON CONFLICT DO NOTHING$$);
SELECT * FROM vco_ttl_run($$INSERT INTO vco_ttl_v (k, n) VALUES ('f', 1), ('g', 2)$$, '_ttl > 100');
DELETE FROM vco_ttl; DELETE FROM vco_ttl_now; DELETE FROM vco_ttl_batch;

DELETE FROM vco_hash; DELETE FROM vco_hash_now; DELETE FROM vco_vec; DELETE FROM vco_vec_now; DELETE FROM vco_vec_batch;
SELECT pgpoly.elastic_request('vco_es', 'DELETE', '/regress_vco,regress_vco_i,regress_vco_b')->>'acknowledged';
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_vco_v"
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_vco_vi"
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_vco_vb"
