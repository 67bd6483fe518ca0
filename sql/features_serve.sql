-- get_online_features served by its C implementation (src/features.c) for a
-- text-keyed view: the same answers as the PL/pgSQL implementation
-- pgpoly._get_online_features for every status, the offline probe and the
-- write-back made without PL/pgSQL, and a per-backend cache of each view's
-- catalog facts and probe statements that follows DDL on its tables, types
-- and schemas and changes of its definition.
\getenv redis_port REDIS_PORT
SET timezone = 'UTC';
CREATE SERVER fsv FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER fsv;
-- Redis as it is.
CREATE FOREIGN TABLE fsv_raw (key text, clicks text, ctr text, country text, _event_time text)
  SERVER fsv OPTIONS (key_prefix 'regress_fsv:', write_mode 'immediate');
-- Calls of PL/pgSQL function f counted so far (track_functions = 'pl'); the
-- counts are not flushed inside a transaction block, so differences taken
-- in one are exact.
CREATE FUNCTION plpgsql_calls(f text) RETURNS bigint LANGUAGE sql AS $$
	SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions
	WHERE schemaname = 'pgpoly' AND funcname = f
$$;
-- Error reporter: SQLSTATE and message.
CREATE FUNCTION err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- A view whose online table has only types the C path converts, over a
-- user-supplied offline table whose entity column is a domain.
CREATE DOMAIN fsv_ent AS text;
CREATE TABLE fsv_off (entity fsv_ent NOT NULL, event_time timestamptz NOT NULL,
                      created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                      clicks int, ctr float8, country text);
CREATE INDEX ON fsv_off (entity, event_time DESC, created_at DESC);
CREATE FOREIGN TABLE fsv_online (user_id text OPTIONS (key 'true'), clicks int, ctr float8,
                                 country text)
  SERVER fsv OPTIONS (key_prefix 'regress_fsv:');
SELECT pgpoly.create_feature_view('fsv', 'user_id', 'fsv_online', 'fsv_off', ttl => '1 day');

-- Every status (times relative to now(), so event times are not shown):
--   e1 fresh online
--   e2 stale online, a fresh newer row offline: offline (written back)
--   e3 stale online, an older row offline: expired (the online value)
--   e4 only offline, fresh: offline (written back)
--   e5 only offline, stale: expired (the offline value)
--   e6 nowhere: missing
--   e7 online with no event time (unknown: stale), a fresh row offline: offline
INSERT INTO pgpoly.fsv_serving (user_id, clicks, ctr, country, _event_time) VALUES
  ('e1', 1, 0.5, 'de', now() - interval '1 hour'),
  ('e2', 20, 0.25, 'fr', now() - interval '3 days'),
  ('e3', 3, 0.125, 'us', now() - interval '3 days'),
  ('e7', 70, NULL, NULL, NULL);
INSERT INTO fsv_off (entity, event_time, clicks, ctr, country) VALUES
  ('e2', now() - interval '2 hours', 2, 0.75, 'fr'),
  ('e3', now() - interval '5 days', 30, 1.5, 'us'),
  ('e4', now() - interval '3 hours', 4, 1e-7, 'jp'),
  ('e4', now() - interval '4 hours', 44, 0, 'jp'),
  ('e5', now() - interval '4 days', 5, -2.5, NULL),
  ('e7', now() - interval '1 hour', 7, 0.1, 'br');

-- In a READ ONLY transaction nothing is written back: the C path and the
-- PL/pgSQL implementation give the same rows, in the same order, and the C
-- path ran no PL/pgSQL.
BEGIN TRANSACTION READ ONLY;
SET LOCAL track_functions = 'pl';
SELECT plpgsql_calls('_get_online_features') AS c0 \gset
SELECT entity, features, source
  FROM pgpoly.get_online_features('fsv', '{e6,e1,e2,e3,e4,e5,e7,e1,e4}');
SELECT plpgsql_calls('_get_online_features') - :c0 AS general_calls;
SELECT count(*) AS differences FROM (
  (SELECT * FROM pgpoly.get_online_features('fsv', '{e6,e1,e2,e3,e4,e5,e7,e1,e4}')
   EXCEPT ALL
   SELECT * FROM pgpoly._get_online_features('fsv', '{e6,e1,e2,e3,e4,e5,e7,e1,e4}', NULL))
  UNION ALL
  (SELECT * FROM pgpoly._get_online_features('fsv', '{e6,e1,e2,e3,e4,e5,e7,e1,e4}', NULL)
   EXCEPT ALL
   SELECT * FROM pgpoly.get_online_features('fsv', '{e6,e1,e2,e3,e4,e5,e7,e1,e4}'))) d;
-- the order of the input; whether the event time served is the offline
-- table's newest (true: e3's expired value is the online one)
SELECT (SELECT array_agg(g.entity || ':' || g.source || ':' ||
                         coalesce((g.event_time = o.event_time)::text, 'none') ORDER BY g.ord)
        FROM pgpoly.get_online_features('fsv', '{e6,e1,e2,e3,e4,e5,e7,e1,e4}')
             WITH ORDINALITY g(entity, features, event_time, source, ord)
        LEFT JOIN LATERAL (SELECT max(f.event_time) AS event_time FROM fsv_off f
                           WHERE f.entity = g.entity::fsv_ent) o ON true) AS served;
-- requested features, in the order asked, and the same with the PL/pgSQL path
SELECT entity, features, source FROM pgpoly.get_online_features('fsv', '{e1,e4,e6}', '{country,clicks}');
SELECT count(*) AS differences FROM (
  SELECT * FROM pgpoly.get_online_features('fsv', '{e1,e4,e6}', '{country,clicks}')
  EXCEPT ALL
  SELECT * FROM pgpoly._get_online_features('fsv', '{e1,e4,e6}', '{country,clicks}')) d;
SELECT plpgsql_calls('_get_online_features') - :c0 AS general_calls;   -- the 3 above
COMMIT;
SELECT key, clicks FROM fsv_raw ORDER BY key;

-- A writer's call writes the fresh offline values back online (e2, e4, e7;
-- not the expired e5), in its transaction, without PL/pgSQL.
BEGIN;
SET LOCAL track_functions = 'pl';
SELECT plpgsql_calls('_get_online_features') AS c0 \gset
SELECT entity, source FROM pgpoly.get_online_features('fsv', '{e1,e2,e3,e4,e5,e6,e7}');
SELECT plpgsql_calls('_get_online_features') - :c0 AS general_calls;
SELECT entity, source FROM pgpoly.get_online_features('fsv', '{e2,e4,e7}');
COMMIT;
SELECT key, clicks, ctr, country, _event_time IS NOT NULL AS has_event_time
  FROM fsv_raw ORDER BY key;

-- Calls the C path hands to the PL/pgSQL implementation: a NULL entity, an
-- unknown feature, an unknown view.
SELECT entity, features, source FROM pgpoly.get_online_features('fsv', '{e1,NULL}', '{clicks}');
SELECT err($$SELECT * FROM pgpoly.get_online_features('fsv', '{e1}', '{nope}')$$);
SELECT err($$SELECT * FROM pgpoly.get_online_features('nope', '{e1}')$$);

--
-- The per-backend cache follows the catalog.  Each case first serves a miss
-- (which prepares and keeps the probe statement), then changes what the
-- statement's text names, then serves again.
--
DELETE FROM pgpoly.fsv_serving WHERE user_id IN ('e2', 'e4', 'e7');
BEGIN TRANSACTION READ ONLY;
SELECT entity, features, source FROM pgpoly.get_online_features('fsv', '{e4}');
COMMIT;

-- The offline table renamed, and a new table under its old name: the view
-- (which holds the table's OID) still reads the renamed one.
ALTER TABLE fsv_off RENAME TO fsv_off_renamed;
CREATE TABLE fsv_off (LIKE fsv_off_renamed INCLUDING ALL);
INSERT INTO fsv_off (entity, event_time, clicks) VALUES ('e4', now(), -1);
BEGIN TRANSACTION READ ONLY;
SELECT entity, features, source FROM pgpoly.get_online_features('fsv', '{e4}');
COMMIT;
DROP TABLE fsv_off;
ALTER TABLE fsv_off_renamed RENAME TO fsv_off;

-- The entity column's type renamed, and a new type under its old name that
-- no entity fits.
ALTER DOMAIN fsv_ent RENAME TO fsv_ent_renamed;
CREATE DOMAIN fsv_ent AS text CHECK (false);
BEGIN TRANSACTION READ ONLY;
SELECT entity, features, source FROM pgpoly.get_online_features('fsv', '{e4}');
COMMIT;
DROP DOMAIN fsv_ent;
ALTER DOMAIN fsv_ent_renamed RENAME TO fsv_ent;

-- The offline table's schema renamed, and a new schema of the old name with
-- a table of the same name.
CREATE SCHEMA fsv_s;
ALTER TABLE fsv_off SET SCHEMA fsv_s;
BEGIN TRANSACTION READ ONLY;
SELECT entity, features, source FROM pgpoly.get_online_features('fsv', '{e4}');
COMMIT;
ALTER SCHEMA fsv_s RENAME TO fsv_s_renamed;
CREATE SCHEMA fsv_s;
CREATE TABLE fsv_s.fsv_off (LIKE fsv_s_renamed.fsv_off INCLUDING ALL);
INSERT INTO fsv_s.fsv_off (entity, event_time, clicks) VALUES ('e4', now(), -2);
BEGIN TRANSACTION READ ONLY;
SELECT entity, features, source FROM pgpoly.get_online_features('fsv', '{e4}');
COMMIT;
DROP SCHEMA fsv_s CASCADE;
ALTER TABLE fsv_s_renamed.fsv_off SET SCHEMA public;
DROP SCHEMA fsv_s_renamed;

-- A feature column renamed in the offline table: the probe is prepared
-- anew and fails as the PL/pgSQL implementation does.
ALTER TABLE fsv_off RENAME COLUMN country TO land;
SELECT err($$SELECT * FROM pgpoly.get_online_features('fsv', '{e4}')$$);
SELECT err($$SELECT * FROM pgpoly._get_online_features('fsv', '{e4}', NULL)$$);
ALTER TABLE fsv_off RENAME COLUMN land TO country;
BEGIN TRANSACTION READ ONLY;
SELECT entity, features, source FROM pgpoly.get_online_features('fsv', '{e4}');
COMMIT;

-- The view dropped and created again over another offline table: the new
-- definition is read on the next call.
SELECT pgpoly.drop_feature_view('fsv');
CREATE TABLE fsv_off2 (LIKE fsv_off INCLUDING ALL);
INSERT INTO fsv_off2 (entity, event_time, clicks) VALUES ('e4', now() - interval '1 minute', 400);
SELECT pgpoly.create_feature_view('fsv', 'user_id', 'fsv_online', 'fsv_off2', ttl => '1 day');
BEGIN TRANSACTION READ ONLY;
SELECT entity, features, source FROM pgpoly.get_online_features('fsv', '{e4}');
COMMIT;

-- The stored definition edited so that it no longer fits its tables: the
-- call is refused (by the PL/pgSQL implementation, which says why).
UPDATE pgpoly._feature_view_storage SET features = '{clicks,nope}' WHERE view_name = 'fsv';
SELECT err($$SELECT * FROM pgpoly.get_online_features('fsv', '{e4}')$$);
UPDATE pgpoly._feature_view_storage SET features = '{clicks,ctr,country}' WHERE view_name = 'fsv';
BEGIN TRANSACTION READ ONLY;
SELECT entity, features, source FROM pgpoly.get_online_features('fsv', '{e4}');
COMMIT;

-- A definition change seen inside its own transaction, then rolled back:
-- the old definition is served again.
BEGIN;
SELECT pgpoly.drop_feature_view('fsv');
SELECT pgpoly.create_feature_view('fsv', 'user_id', 'fsv_online', 'fsv_off', ttl => '1 day');
SELECT entity, features, source FROM pgpoly.get_online_features('fsv', '{e4}');
ROLLBACK;
BEGIN TRANSACTION READ ONLY;
SELECT entity, features, source FROM pgpoly.get_online_features('fsv', '{e4}');
COMMIT;

-- Clean up.
DELETE FROM pgpoly.fsv_serving;
SELECT pgpoly.drop_feature_view('fsv', drop_tables => true);
DELETE FROM pgpoly.lineage_edges WHERE src_name IN ('public.fsv_off', 'public.fsv_off2');
DELETE FROM pgpoly.datasets WHERE name IN ('public.fsv_off', 'public.fsv_off2');
DROP TABLE fsv_off, fsv_off2;
DROP DOMAIN fsv_ent;
DROP FUNCTION plpgsql_calls(text), err(text);
DROP SERVER fsv CASCADE;
