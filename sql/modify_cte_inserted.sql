--
-- A statement whose one node INSERTs a row (or routes one into a foreign
-- partition, an UPDATE moving it there) and whose other node, a
-- data-modifying WITH query, UPDATEs or DELETEs rows of the same table.
-- PostgreSQL runs a WITH query nobody reads after the main statement, and
-- its scan, under the statement's snapshot, does not see the rows the
-- statement inserted: the DELETE removes the old row of a key, the new row
-- stays.  A store holds one row per key, _id or id, the new row overwrote
-- the old one, and the later node deleted or updated the new row (the rows
-- an INSERT or a move wrote were lost, silently, in every write_mode).
-- Each statement runs on an all-native copy too, and the contents must be
-- the same.
--
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL
\! redis-cli -p $REDIS_PORT --scan --pattern 'regress_mci*' | xargs -r redis-cli -p $REDIS_PORT del > /dev/null
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_mci_v"
CREATE SERVER mci_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER mci_redis;
CREATE SERVER mci_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
CREATE SERVER mci_vec FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
SELECT pgpoly.elastic_request('mci_es', 'DELETE', '/regress_mci*') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('mci_es', 'PUT', '/regress_mci_e',
    '{"mappings": {"properties": {"v": {"type": "integer"}}}}')->>'acknowledged' AS created;

-- one table per store and write_mode, and a native one
CREATE TABLE mci_n (k text, v int);
CREATE FOREIGN TABLE mci_rt (k text OPTIONS (key 'true'), v int)
  SERVER mci_redis OPTIONS (key_prefix 'regress_mci_t:');
CREATE FOREIGN TABLE mci_ri (k text OPTIONS (key 'true'), v int)
  SERVER mci_redis OPTIONS (key_prefix 'regress_mci_i:', write_mode 'immediate');
CREATE FOREIGN TABLE mci_z (k text OPTIONS (key 'true'), member text, score float8)
  SERVER mci_redis OPTIONS (key_prefix 'regress_mci_z:', table_type 'zset', write_mode 'immediate');
CREATE FOREIGN TABLE mci_e (_id text, v int)
  SERVER mci_es OPTIONS (index 'regress_mci_e', refresh 'true', write_mode 'immediate');
CREATE FOREIGN TABLE mci_v (id text, embedding real[] DEFAULT '{1,0}', v int)
  SERVER mci_vec OPTIONS (collection 'regress_mci_v', create_collection 'true', distance 'l2');
ALTER FOREIGN TABLE mci_v ALTER COLUMN v OPTIONS (ADD field 'v');
CREATE VIEW mci_e_kv AS SELECT _id AS k, v FROM mci_e;
CREATE VIEW mci_v_kv AS SELECT id AS k, v FROM mci_v;
-- run statement s (%1$s the table, %2$s its key column) from the rows
-- a=1, b=2 on the native table and on table t: the rows t holds that the
-- native table does not, and the other way round
CREATE FUNCTION mci_diff(t text, key text, s text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text; v text := CASE WHEN t IN ('mci_e', 'mci_v') THEN t || '_kv' ELSE t END;
BEGIN
  DELETE FROM mci_n;
  EXECUTE format('DELETE FROM %I', t);
  INSERT INTO mci_n VALUES ('a', 1), ('b', 2);
  EXECUTE format('INSERT INTO %I (%I, v) VALUES (''a'', 1), (''b'', 2)', t, key);
  EXECUTE format(s, 'mci_n', 'k');
  EXECUTE format(s, t, key);
  EXECUTE format($q$SELECT coalesce(string_agg(d, ' ' ORDER BY d), 'same')
    FROM ((SELECT '+' || k || '=' || v AS d FROM %1$I EXCEPT SELECT '+' || k || '=' || v FROM mci_n)
          UNION ALL (SELECT '-' || k || '=' || v FROM mci_n EXCEPT SELECT '-' || k || '=' || v FROM %1$I)) x$q$, v) INTO r;
  RETURN r;
END $$;
-- a function inserting into table t (key column key): a nested statement
CREATE FUNCTION mci_ins(t text, key text, k text, v int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('INSERT INTO %I (%I, v) VALUES ($1, $2)', t, key) USING k, v;
  RETURN v;
END $$;
-- the same, its INSERT undone by the error its block catches
CREATE FUNCTION mci_try(t text, key text, k text, v int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  BEGIN
    PERFORM mci_ins(t, key, k, v);
    RAISE EXCEPTION 'undo';
  EXCEPTION WHEN raise_exception THEN NULL;
  END;
  RETURN v;
END $$;
CREATE TABLE mci_stmts (n int, s text);
INSERT INTO mci_stmts VALUES
  -- the WITH query runs after the INSERT, and does not see its row
  (1, $$WITH d AS (DELETE FROM %1$I WHERE %2$I = 'a' RETURNING *) INSERT INTO %1$I (%2$I, v) VALUES ('a', 10)$$),
  (2, $$WITH d AS (DELETE FROM %1$I RETURNING *) INSERT INTO %1$I (%2$I, v) VALUES ('a', 10), ('c', 30)$$),
  (3, $$WITH u AS (UPDATE %1$I SET v = v + 100 RETURNING *) INSERT INTO %1$I (%2$I, v) VALUES ('c', 30)$$),
  -- it runs first, as the INSERT reads it: as before
  (4, $$WITH d AS (DELETE FROM %1$I WHERE %2$I = 'a' RETURNING *) INSERT INTO %1$I (%2$I, v) SELECT %2$I, v + 10 FROM d$$),
  -- the INSERT is the WITH query, read by the main DELETE
  (5, $$WITH i AS (INSERT INTO %1$I (%2$I, v) VALUES ('a', 10), ('c', 30) RETURNING *) DELETE FROM %1$I WHERE v < 50 AND %2$I NOT IN (SELECT 'x' FROM i)$$),
  -- the INSERT is a nested statement's (a function's the main statement
  -- calls): the WITH query's snapshot does not see its rows either
  (6, $$WITH d AS (DELETE FROM %1$I WHERE %2$I = 'a' RETURNING *) SELECT mci_ins('%1$s', '%2$s', 'a', 10)$$),
  (7, $$WITH u AS (UPDATE %1$I SET v = v + 100 RETURNING *) SELECT mci_ins('%1$s', '%2$s', 'c', 30)$$),
  -- a nested INSERT run by the WITH query itself, after the main DELETE
  (8, $$WITH i AS (SELECT mci_ins('%1$s', '%2$s', 'a', 10)) DELETE FROM %1$I WHERE %2$I = 'a' AND EXISTS (SELECT FROM i)$$),
  -- a DELETE Redis carries out by itself (no RETURNING), nested too
  (9, $$WITH d AS (DELETE FROM %1$I WHERE %2$I = 'a') SELECT mci_ins('%1$s', '%2$s', 'a', 10)$$),
  (10, $$WITH d AS (DELETE FROM %1$I WHERE %2$I = 'a') INSERT INTO %1$I (%2$I, v) VALUES ('a', 10)$$),
  -- a nested INSERT rolled back (to its block's savepoint): the DELETE
  -- deletes the row it meets
  (11, $$WITH d AS (DELETE FROM %1$I WHERE %2$I = 'a' RETURNING *) SELECT mci_try('%1$s', '%2$s', 'a', 10)$$),
  -- two INSERTs, or an UPDATE and a DELETE, in one statement
  (12, $$WITH i AS (INSERT INTO %1$I (%2$I, v) VALUES ('c', 30) RETURNING *), d AS (DELETE FROM %1$I RETURNING *) INSERT INTO %1$I (%2$I, v) VALUES ('a', 10)$$),
  (13, $$WITH u AS (UPDATE %1$I SET v = v + 100 WHERE %2$I = 'a' RETURNING *), d AS (DELETE FROM %1$I WHERE %2$I = 'b' RETURNING *) INSERT INTO %1$I (%2$I, v) VALUES ('b', 20)$$);
SELECT s.n, t.t, mci_diff(t.t, t.key, s.s) AS rows
FROM mci_stmts s, (VALUES ('mci_rt', 'k'), ('mci_ri', 'k'), ('mci_e', '_id'), ('mci_v', 'id')) t(t, key)
ORDER BY 1, 2;
-- an UPDATE after an INSERT of a key: the native table holds two rows
-- there, the store one, the row inserted (the UPDATE finds the row it read
-- replaced, and skips it): b=20
CREATE FUNCTION mci_contents(t text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
  EXECUTE format('SELECT string_agg(k || ''='' || v, '' '' ORDER BY k, v) FROM %I', t) INTO r;
  RETURN r;
END $$;
SELECT t.t, mci_diff(t.t, t.key, $$WITH u AS (UPDATE %1$I SET v = v + 100 RETURNING *) INSERT INTO %1$I (%2$I, v) VALUES ('b', 20)$$) IS NOT NULL AS ran,
       mci_contents(CASE WHEN t.t IN ('mci_e', 'mci_v') THEN t.t || '_kv' ELSE t.t END) AS rows
FROM (VALUES ('mci_rt', 'k'), ('mci_ri', 'k'), ('mci_e', '_id'), ('mci_v', 'id')) t(t, key)
ORDER BY 1;
SELECT mci_contents('mci_n') AS native_rows;
-- a zset: one row per key and member
INSERT INTO mci_z VALUES ('z', 'm', 1), ('z', 'o', 2);
WITH d AS (DELETE FROM mci_z RETURNING *) INSERT INTO mci_z VALUES ('z', 'm', 5);
SELECT * FROM mci_z ORDER BY member;
-- a list: an INSERT appends, whatever idx it gives; the DELETE removes the
-- old element
CREATE FOREIGN TABLE mci_l (key text, idx int, value text)
  SERVER mci_redis OPTIONS (key_prefix 'regress_mci_l:', table_type 'list', write_mode 'immediate');
INSERT INTO mci_l (key, value) VALUES ('l', 'x');
WITH d AS (DELETE FROM mci_l WHERE key = 'l' RETURNING *) INSERT INTO mci_l (key, idx, value) VALUES ('l', 0, 'x');
SELECT * FROM mci_l;

-- a float8 key: Infinity minus Infinity is a NaN of other bits than
-- 'NaN', one key "NaN" in Redis all the same
CREATE FOREIGN TABLE mci_f (k float8 OPTIONS (key 'true'), v int)
  SERVER mci_redis OPTIONS (key_prefix 'regress_mci_f:', write_mode 'immediate');
CREATE TABLE mci_fn (k float8, v int);
INSERT INTO mci_f VALUES ('NaN', 1), (2, 2);
INSERT INTO mci_fn VALUES ('NaN', 1), (2, 2);
WITH d AS (DELETE FROM mci_fn RETURNING *) INSERT INTO mci_fn SELECT x - x, 10 FROM (VALUES ('Infinity'::float8)) s(x);
WITH d AS (DELETE FROM mci_f RETURNING *) INSERT INTO mci_f SELECT x - x, 10 FROM (VALUES ('Infinity'::float8)) s(x);
SELECT (SELECT string_agg(k || '=' || v, ' ' ORDER BY k) FROM mci_f) AS foreign_rows,
       (SELECT string_agg(k || '=' || v, ' ' ORDER BY k) FROM mci_fn) AS native_rows;

-- through a partitioned table: an INSERT routed into a foreign partition,
-- and an UPDATE moving rows into one (that it updates too, or not)
CREATE TABLE mcp (k text, v int) PARTITION BY LIST (left(k, 1));
CREATE TABLE mcp_a PARTITION OF mcp FOR VALUES IN ('a');
CREATE FOREIGN TABLE mcp_i PARTITION OF mcp FOR VALUES IN ('i')
  SERVER mci_redis OPTIONS (key_prefix 'regress_mci_pi:', write_mode 'immediate');
ALTER FOREIGN TABLE mcp_i ALTER COLUMN k OPTIONS (ADD key 'true');
CREATE FOREIGN TABLE mcp_t PARTITION OF mcp FOR VALUES IN ('t')
  SERVER mci_redis OPTIONS (key_prefix 'regress_mci_pt:');
ALTER FOREIGN TABLE mcp_t ALTER COLUMN k OPTIONS (ADD key 'true');
CREATE TABLE mcpn (k text, v int) PARTITION BY LIST (left(k, 1));
CREATE TABLE mcpn_a PARTITION OF mcpn FOR VALUES IN ('a');
CREATE TABLE mcpn_i PARTITION OF mcpn FOR VALUES IN ('i');
CREATE TABLE mcpn_t PARTITION OF mcpn FOR VALUES IN ('t');
CREATE FUNCTION mcp_diff(s text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
  DELETE FROM mcp; DELETE FROM mcpn;
  INSERT INTO mcp VALUES ('a1', 1), ('a2', 2), ('i1', 3), ('i2', 4), ('t1', 5), ('t2', 6);
  INSERT INTO mcpn VALUES ('a1', 1), ('a2', 2), ('i1', 3), ('i2', 4), ('t1', 5), ('t2', 6);
  EXECUTE format(s, 'mcpn', 'mcpn_i', 'mcpn_t');
  EXECUTE format(s, 'mcp', 'mcp_i', 'mcp_t');
  WITH f AS (SELECT right(tableoid::regclass::text, 1) AS part, k, v FROM mcp),
       n AS (SELECT right(tableoid::regclass::text, 1) AS part, k, v FROM mcpn)
  SELECT coalesce(string_agg(d, ' ' ORDER BY d), 'same') INTO r
  FROM ((SELECT '+' || part || ':' || k || '=' || v AS d FROM f EXCEPT SELECT '+' || part || ':' || k || '=' || v FROM n)
        UNION ALL (SELECT '-' || part || ':' || k || '=' || v FROM n EXCEPT SELECT '-' || part || ':' || k || '=' || v FROM f)) x;
  RETURN r;
END $$;
SELECT n, mcp_diff(s) AS rows FROM (VALUES
  (1, $$WITH d AS (DELETE FROM %1$I WHERE k IN ('i1', 't1') RETURNING *) INSERT INTO %1$I VALUES ('i1', 30), ('t1', 50)$$),
  (2, $$WITH d AS (DELETE FROM %2$I WHERE k = 'i1' RETURNING *), d2 AS (DELETE FROM %3$I RETURNING *) INSERT INTO %1$I VALUES ('i1', 30), ('t1', 50)$$),
  (3, $$WITH d AS (DELETE FROM %1$I WHERE k IN ('i1', 't1') RETURNING *) UPDATE %1$I SET k = CASE k WHEN 'a1' THEN 'i1' ELSE 't1' END, v = v * 10 WHERE k IN ('a1', 'a2')$$),
  (4, $$WITH d AS (DELETE FROM %2$I WHERE k = 'i1' RETURNING *) UPDATE %1$I SET k = CASE k WHEN 'a1' THEN 'i1' ELSE k END, v = v * 10 WHERE k <> 'i1'$$),
  (5, $$WITH u AS (UPDATE %1$I SET v = v + 100 WHERE k > 'b' RETURNING *) UPDATE %1$I SET k = 'i3', v = v * 10 WHERE k = 'a1'$$)) s(n, s)
ORDER BY 1;

DROP TABLE mcp, mcpn, mci_n, mci_stmts, mci_fn;
DROP FUNCTION mci_diff(text, text, text), mci_contents(text), mcp_diff(text), mci_ins(text, text, text, int),
  mci_try(text, text, text, int);
DELETE FROM mci_v;
DROP SERVER mci_redis, mci_es, mci_vec CASCADE;
\! redis-cli -p $REDIS_PORT --scan --pattern 'regress_mci*' | xargs -r redis-cli -p $REDIS_PORT del > /dev/null
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_mci_v"
