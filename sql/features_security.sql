-- Feature store in a shared database: privilege checks as the equivalent
-- statements make them, serving without writing where writing is not
-- allowed (read-only transaction, a reader role), no PUBLIC grants on
-- internal tables, and dynamic SQL that stored names cannot inject into.
\getenv redis_port REDIS_PORT
SET timezone = 'UTC';
CREATE SERVER fss FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
-- One mapping for every role (a local test Redis without AUTH).  The trust
-- rule, where present, needs a superuser's password_required 'false' for
-- non-superusers to use it.
DO $$
BEGIN
	CREATE USER MAPPING FOR PUBLIC SERVER fss OPTIONS (password_required 'false');
EXCEPTION WHEN fdw_invalid_option_name THEN
	CREATE USER MAPPING FOR PUBLIC SERVER fss;
END $$;
-- Redis as it is, for checking what was written.
CREATE FOREIGN TABLE fss_raw (key text, clicks text, _event_time text)
  SERVER fss OPTIONS (key_prefix 'regress_fss:u:', write_mode 'immediate');
CREATE FUNCTION err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
GRANT EXECUTE ON FUNCTION err(text) TO PUBLIC;

-- Roles: a reader (SELECT on the view's tables), a writer (may put and
-- write back), one with no rights on the tables, and one with rights on the
-- internal serving table but not on the user's online table.
CREATE ROLE regress_fss_reader;
CREATE ROLE regress_fss_writer;
CREATE ROLE regress_fss_nobody;
CREATE ROLE regress_fss_sneaky;
GRANT USAGE ON SCHEMA pgpoly TO regress_fss_reader, regress_fss_writer, regress_fss_nobody,
  regress_fss_sneaky;
GRANT SELECT ON pgpoly.feature_views, pgpoly._feature_view_storage, pgpoly.datasets,
  pgpoly.lineage_edges, pgpoly.feature_freshness
  TO regress_fss_reader, regress_fss_writer, regress_fss_nobody, regress_fss_sneaky;

-- A text-keyed view (served by the C fast path) and an int-keyed one (served
-- by the PL/pgSQL path).  Grants on the online tables come first: the
-- internal serving tables get a copy of them.
CREATE FOREIGN TABLE sec_user (user_id text OPTIONS (key 'true'), clicks int)
  SERVER fss OPTIONS (key_prefix 'regress_fss:u:');
CREATE FOREIGN TABLE sec_item (item_id int OPTIONS (key 'true'), clicks int)
  SERVER fss OPTIONS (key_prefix 'regress_fss:i:');
GRANT SELECT ON sec_user, sec_item TO regress_fss_reader;
GRANT SELECT, INSERT, UPDATE ON sec_user, sec_item TO regress_fss_writer;
SELECT pgpoly.create_feature_view('sec_user', 'user_id', 'sec_user', ttl => '1 day');
SELECT pgpoly.create_feature_view('sec_item', 'item_id', 'sec_item', ttl => '1 day');
GRANT SELECT ON pgpoly.sec_user_history, pgpoly.sec_item_history
  TO regress_fss_reader, regress_fss_sneaky;
GRANT SELECT, INSERT ON pgpoly.sec_user_history, pgpoly.sec_item_history TO regress_fss_writer;
GRANT SELECT ON pgpoly.sec_user_serving TO regress_fss_sneaky;

-- Nothing of the feature store in schema pgpoly grants anything to PUBLIC
-- (the sync views' row-secured grants are checked in security.sql); the
-- serving tables carry exactly the online tables' grants.
SELECT c.relname, a.privilege_type
FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
WHERE c.relnamespace = 'pgpoly'::regnamespace AND a.grantee = 0
  AND c.relname NOT IN ('sync_status', 'sync_dead_letters');
SELECT c.relname, a.grantee::regrole, a.privilege_type
FROM pg_class c, aclexplode(c.relacl) a
WHERE c.oid IN ('pgpoly.sec_user_serving'::regclass, 'pgpoly.sec_item_serving'::regclass)
  AND a.grantee <> c.relowner
ORDER BY 1, 2, 3;

-- Data: u1 fresh online; u2 fresh offline but gone from Redis; u3 only an
-- old value (expired).  Likewise items 1, 2, 3.
SELECT pgpoly.put_features('sec_user', 'u1', '{"clicks": 1}', now() - interval '1 hour');
SELECT pgpoly.put_features('sec_user', 'u2', '{"clicks": 2}', now() - interval '2 hours');
SELECT pgpoly.put_features('sec_user', 'u3', '{"clicks": 3}', now() - interval '3 days');
SELECT pgpoly.put_features('sec_item', '1', '{"clicks": 1}', now() - interval '1 hour');
SELECT pgpoly.put_features('sec_item', '2', '{"clicks": 2}', now() - interval '2 hours');
SELECT pgpoly.put_features('sec_item', '3', '{"clicks": 3}', now() - interval '3 days');
DELETE FROM sec_user WHERE user_id IN ('u2', 'u3');
DELETE FROM sec_item WHERE item_id IN (2, 3);
SELECT key, clicks FROM fss_raw ORDER BY key;

--
-- Serving without writing
--

-- A reader serves misses from offline; nothing is written back.
SET ROLE regress_fss_reader;
SELECT entity, features, source
  FROM pgpoly.get_online_features('sec_user', '{u1,u2,u3,nobody}');
SELECT entity, features, source
  FROM pgpoly.get_online_features('sec_item', '{1,2,3,4}');
RESET ROLE;
SELECT key, clicks FROM fss_raw ORDER BY key;

-- A READ ONLY transaction serves misses; no error, nothing written.
BEGIN TRANSACTION READ ONLY;
SELECT entity, features, source
  FROM pgpoly.get_online_features('sec_user', '{u1,u2,u3,nobody}');
SELECT entity, features, source
  FROM pgpoly.get_online_features('sec_item', '{1,2,3,4}');
COMMIT;
SELECT key, clicks FROM fss_raw ORDER BY key;
-- default_transaction_read_only is the same thing
SET default_transaction_read_only = on;
SELECT entity, source FROM pgpoly.get_online_features('sec_user', '{u2}');
RESET default_transaction_read_only;
SELECT key, clicks FROM fss_raw ORDER BY key;

-- A writer's call writes the fresh offline values back (the expired one is
-- not), in its transaction.
SET ROLE regress_fss_writer;
BEGIN;
SELECT entity, source FROM pgpoly.get_online_features('sec_user', '{u2,u3}');
SELECT entity, source FROM pgpoly.get_online_features('sec_item', '{2,3}');
SELECT entity, source FROM pgpoly.get_online_features('sec_user', '{u2}');   -- now online
ROLLBACK;
RESET ROLE;
SELECT key, clicks FROM fss_raw ORDER BY key;
SET ROLE regress_fss_writer;
SELECT entity, source FROM pgpoly.get_online_features('sec_user', '{u2,u3}');
SELECT entity, source FROM pgpoly.get_online_features('sec_item', '{2,3}');
RESET ROLE;
SELECT key, clicks FROM fss_raw ORDER BY key;

--
-- Privilege errors, as the equivalent statements give them
--

-- get_online_features: SELECT on the online table, even when every entity
-- is online and fresh (the fast path), and on the offline table.
SET ROLE regress_fss_nobody;
SELECT err($$SELECT * FROM pgpoly.get_online_features('sec_user', '{u1}')$$);
SELECT err($$SELECT * FROM pgpoly.get_online_features('sec_item', '{1}')$$);
SELECT err($$SELECT * FROM sec_user$$);   -- the plain statement, for comparison
RESET ROLE;
-- SELECT on the internal serving table does not replace the online table's
SET ROLE regress_fss_sneaky;
SELECT err($$SELECT * FROM pgpoly.get_online_features('sec_user', '{u1}')$$);
RESET ROLE;
-- SELECT on every column of the online table does, as for a SELECT *
GRANT SELECT (user_id, clicks) ON sec_user TO regress_fss_sneaky;
SET ROLE regress_fss_sneaky;
SELECT entity, source FROM pgpoly.get_online_features('sec_user', '{u1}');
RESET ROLE;
REVOKE SELECT (user_id, clicks) ON sec_user FROM regress_fss_sneaky;
GRANT SELECT ON sec_user TO regress_fss_nobody;
SET ROLE regress_fss_nobody;
SELECT err($$SELECT * FROM pgpoly.get_online_features('sec_user', '{u1}')$$);
RESET ROLE;
REVOKE SELECT ON sec_user FROM regress_fss_nobody;

-- put_features: INSERT on the offline table; SELECT (newest-wins reads the
-- stored event time), INSERT and UPDATE on the online one.
SET ROLE regress_fss_reader;
SELECT err($$SELECT pgpoly.put_features('sec_user', 'u9', '{"clicks": 9}')$$);
RESET ROLE;
GRANT INSERT, UPDATE ON sec_user TO regress_fss_nobody;
GRANT INSERT ON pgpoly.sec_user_history TO regress_fss_nobody;
SET ROLE regress_fss_nobody;
SELECT err($$SELECT pgpoly.put_features('sec_user', 'u9', '{"clicks": 9}')$$);
RESET ROLE;
REVOKE INSERT, UPDATE ON sec_user FROM regress_fss_nobody;
REVOKE INSERT ON pgpoly.sec_user_history FROM regress_fss_nobody;
GRANT INSERT ON sec_user TO regress_fss_reader;
SET ROLE regress_fss_reader;
SELECT err($$SELECT pgpoly.put_features('sec_user', 'u9', '{"clicks": 9}')$$);
RESET ROLE;
REVOKE INSERT ON sec_user FROM regress_fss_reader;
REVOKE INSERT ON pgpoly.sec_user_history FROM regress_fss_writer;
SET ROLE regress_fss_writer;
SELECT err($$SELECT pgpoly.put_features('sec_user', 'u9', '{"clicks": 9}')$$);
RESET ROLE;
GRANT INSERT ON pgpoly.sec_user_history TO regress_fss_writer;
SET ROLE regress_fss_writer;
SELECT err($$SELECT pgpoly.put_features('sec_user', 'u9', '{"clicks": 9}')$$);
RESET ROLE;
SELECT key, clicks FROM fss_raw WHERE key = 'u9';

-- materialize: SELECT offline; SELECT, INSERT and UPDATE online.
SET ROLE regress_fss_reader;
SELECT err($$SELECT pgpoly.materialize('sec_user')$$);
RESET ROLE;
SET ROLE regress_fss_writer;
SELECT err($$SELECT pgpoly.materialize('sec_user')$$);
RESET ROLE;

-- Point-in-time joins: SELECT on the offline tables they read.
CREATE TABLE sec_spine AS SELECT 'u1'::text AS user_id, now() AS event_time;
GRANT SELECT ON sec_spine TO PUBLIC;
SET ROLE regress_fss_nobody;
SELECT err($$SELECT * FROM pgpoly.get_historical_features('SELECT * FROM sec_spine', '{sec_user:clicks}')$$);
SELECT err($$SELECT pgpoly.create_training_set('sec_train', 'SELECT * FROM sec_spine', '{sec_user:clicks}')$$);
RESET ROLE;
SET ROLE regress_fss_reader;
SELECT spine->>'user_id' AS user_id, features
  FROM pgpoly.get_historical_features('SELECT * FROM sec_spine', '{sec_user:clicks}');
RESET ROLE;

-- feature_freshness reads each offline table with the caller's privileges.
SET ROLE regress_fss_nobody;
SELECT err($$SELECT * FROM pgpoly.feature_freshness$$);
RESET ROLE;
SET ROLE regress_fss_reader;
SELECT view_name, stale FROM pgpoly.feature_freshness ORDER BY 1;
RESET ROLE;

-- create_feature_view: SELECT on the tables the view serves.
CREATE FOREIGN TABLE sec_other (k text OPTIONS (key 'true'), v int, _event_time timestamptz)
  SERVER fss OPTIONS (key_prefix 'regress_fss:o:');
GRANT CREATE ON SCHEMA pgpoly TO regress_fss_nobody;
GRANT INSERT ON pgpoly.feature_views, pgpoly._feature_view_storage, pgpoly.datasets,
  pgpoly.lineage_edges TO regress_fss_nobody;
SET ROLE regress_fss_nobody;
SELECT err($$SELECT pgpoly.create_feature_view('sec_other', 'k', 'sec_other')$$);
SELECT err($$SELECT pgpoly.create_feature_view('sec_other', 'k', 'sec_user', 'pgpoly.sec_user_history')$$);
RESET ROLE;
-- drop_feature_view: as DELETE FROM pgpoly.feature_views and DROP TABLE
SET ROLE regress_fss_reader;
SELECT err($$SELECT pgpoly.drop_feature_view('sec_user')$$);
RESET ROLE;
REVOKE CREATE ON SCHEMA pgpoly FROM regress_fss_nobody;
REVOKE INSERT ON pgpoly.feature_views, pgpoly._feature_view_storage, pgpoly.datasets,
  pgpoly.lineage_edges FROM regress_fss_nobody;
SELECT name FROM pgpoly.feature_views ORDER BY 1;

--
-- Stored names never become code
--

-- A role that may write the internal table (which nobody should be given)
-- plants SQL in it; the next caller gets an error, and no code runs.
CREATE TABLE sec_victim (x int);
CREATE ROLE regress_fss_tamper;
GRANT USAGE ON SCHEMA pgpoly TO regress_fss_tamper;
GRANT SELECT, UPDATE ON pgpoly._feature_view_storage TO regress_fss_tamper;
SET ROLE regress_fss_tamper;
UPDATE pgpoly._feature_view_storage
  SET key_column = 'item_id::text; DROP TABLE sec_victim; --'
  WHERE view_name = 'sec_item';
RESET ROLE;
SELECT err($$SELECT * FROM pgpoly.get_online_features('sec_item', '{1}')$$);
SELECT err($$SELECT pgpoly.put_features('sec_item', '1', '{"clicks": 1}')$$);
SET ROLE regress_fss_tamper;
UPDATE pgpoly._feature_view_storage SET key_column = 'item_id',
  features = '{"clicks\"; DROP TABLE sec_victim; --"}' WHERE view_name = 'sec_item';
RESET ROLE;
SELECT err($$SELECT * FROM pgpoly.get_online_features('sec_item', '{1}')$$);
SELECT err($$SELECT * FROM pgpoly.get_historical_features('SELECT 1 AS item_id, now() AS event_time', '{sec_item:*}')$$);
-- pointing the view at another table is refused too
SET ROLE regress_fss_tamper;
UPDATE pgpoly._feature_view_storage SET features = '{clicks}', serving_table = 'fss_raw'
  WHERE view_name = 'sec_item';
RESET ROLE;
SELECT err($$SELECT * FROM pgpoly.get_online_features('sec_item', '{1}')$$);
SELECT err($$SELECT pgpoly.materialize('sec_item')$$);
-- and drop_feature_view never drops a table pgpoly did not make for the view
SET ROLE regress_fss_tamper;
UPDATE pgpoly._feature_view_storage SET serving_table = 'sec_victim', serving_created = true
  WHERE view_name = 'sec_item';
RESET ROLE;
SELECT pgpoly.drop_feature_view('sec_item', drop_tables => true);
SELECT count(*) AS victim_rows FROM sec_victim;
SELECT to_regclass('pgpoly.sec_item_serving') IS NOT NULL AS serving_kept,
       to_regclass('pgpoly.sec_item_history') IS NULL AS history_dropped;
DROP FOREIGN TABLE pgpoly.sec_item_serving;

-- Hostile type and column names of the user's own tables are quoted: a key
-- of a domain type and a feature whose names are SQL.
CREATE DOMAIN "text; DROP TABLE sec_victim; --" AS text;
CREATE FOREIGN TABLE sec_odd (
    k "text; DROP TABLE sec_victim; --" OPTIONS (key 'true'),
    "v""); DROP TABLE sec_victim; --" int
) SERVER fss OPTIONS (key_prefix 'regress_fss:odd:');
SELECT pgpoly.create_feature_view('sec_odd', 'k', 'sec_odd', ttl => '1 day');
SELECT pgpoly.put_features('sec_odd', 'a', '{"v\"); DROP TABLE sec_victim; --": 7}',
                           now() - interval '1 hour');
DELETE FROM sec_odd;
SELECT entity, features, source FROM pgpoly.get_online_features('sec_odd', '{a,b}');
SELECT entity, features, source FROM pgpoly.get_online_features('sec_odd', '{a}');
SELECT features FROM pgpoly.get_historical_features(
  $$SELECT 'a' AS k, now() AS event_time$$, '{sec_odd:*}');
SELECT pgpoly.materialize('sec_odd');
SELECT err($$SELECT * FROM pgpoly.get_online_features('x''; DROP TABLE sec_victim; --', '{a}')$$);
SELECT count(*) AS victim_rows FROM sec_victim;

-- Clean up.
DELETE FROM sec_odd;
DELETE FROM sec_user;
DELETE FROM sec_item;
SELECT pgpoly.drop_feature_view('sec_user', drop_tables => true);
SELECT pgpoly.drop_feature_view('sec_odd', drop_tables => true);
DELETE FROM pgpoly.lineage_edges WHERE dst_name LIKE 'sec\_%' OR src_name LIKE 'pgpoly.sec\_%';
DELETE FROM pgpoly.datasets WHERE name LIKE 'pgpoly.sec\_%';
DROP TABLE sec_spine, sec_victim;
DROP FOREIGN TABLE sec_user, sec_item, sec_other, sec_odd;
DROP DOMAIN "text; DROP TABLE sec_victim; --";
DROP FUNCTION err(text);
REVOKE ALL ON SCHEMA pgpoly FROM regress_fss_reader, regress_fss_writer, regress_fss_nobody,
  regress_fss_sneaky, regress_fss_tamper;
REVOKE ALL ON ALL TABLES IN SCHEMA pgpoly FROM regress_fss_reader, regress_fss_writer,
  regress_fss_nobody, regress_fss_sneaky, regress_fss_tamper;
DROP SERVER fss CASCADE;
DROP ROLE regress_fss_reader, regress_fss_writer, regress_fss_nobody, regress_fss_sneaky,
  regress_fss_tamper;
