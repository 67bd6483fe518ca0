-- get_online_features' offline probe without a statement (src/features.c,
-- probe_direct): where the offline table has a text entity column and the
-- (entity, event_time DESC, created_at DESC) index, the entities online does
-- not serve are looked up in that index; the same answers as the PL/pgSQL
-- implementation for every status, the kept statement still doing every
-- write-back; the index is cached per view and follows DDL (dropped,
-- created again, replaced by one of another order) and row-level security
-- (checked per call and user).  Also the features object built in jsonb key
-- order once per call: duplicate and reordered feature requests, integers,
-- jsonb features.
\getenv redis_port REDIS_PORT
SET timezone = 'UTC';
CREATE SERVER fpr FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
-- one mapping for every role (see features_security.sql)
DO $$
BEGIN
	CREATE USER MAPPING FOR PUBLIC SERVER fpr OPTIONS (password_required 'false');
EXCEPTION WHEN fdw_invalid_option_name THEN
	CREATE USER MAPPING FOR PUBLIC SERVER fpr;
END $$;
-- Redis as it is.
CREATE FOREIGN TABLE fpr_raw (key text, clicks text, ctr text, country text, meta text,
                              _event_time text)
  SERVER fpr OPTIONS (key_prefix 'regress_fpr:', write_mode 'immediate');
CREATE FUNCTION err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
-- Rows one implementation gives and the other does not, both ways.
CREATE FUNCTION differences(ents text[], feats text[] DEFAULT NULL) RETURNS bigint
LANGUAGE sql AS $$
	SELECT count(*) FROM (
	  (SELECT * FROM pgpoly.get_online_features('fpr', ents, feats)
	   EXCEPT ALL SELECT * FROM pgpoly._get_online_features('fpr', ents, feats))
	  UNION ALL
	  (SELECT * FROM pgpoly._get_online_features('fpr', ents, feats)
	   EXCEPT ALL SELECT * FROM pgpoly.get_online_features('fpr', ents, feats))) d
$$;

-- The offline table is the one create_feature_view makes: text entity, the
-- index the probe reads.
CREATE FOREIGN TABLE fpr_online (user_id text OPTIONS (key 'true'), clicks int, ctr float8,
                                 country text, meta jsonb)
  SERVER fpr OPTIONS (key_prefix 'regress_fpr:');
SELECT pgpoly.create_feature_view('fpr', 'user_id', 'fpr_online', ttl => '1 day');
\d pgpoly.fpr_history

-- Every status (times relative to now()):
--   e1 fresh online
--   e2 stale online, a fresh newer row offline: offline (written back)
--   e3 stale online, an older row offline: expired (the online value)
--   e4 only offline, fresh (two rows: the newest): offline (written back)
--   e5 only offline, stale: expired (the offline value)
--   e6 nowhere: missing
--   e7 online with no event time (unknown: stale), a fresh row offline: offline
--   e8 only offline, two rows of the same event time: the later created_at
INSERT INTO pgpoly.fpr_serving (user_id, clicks, ctr, country, meta, _event_time) VALUES
  ('e1', 1, 0.5, 'de', '{"a": [1, 2]}', now() - interval '1 hour'),
  ('e2', 20, 0.25, 'fr', NULL, now() - interval '3 days'),
  ('e3', 3, 0.125, 'us', '"s"', now() - interval '3 days'),
  ('e7', 70, NULL, NULL, NULL, NULL);
INSERT INTO pgpoly.fpr_history (entity, event_time, created_at, clicks, ctr, country, meta) VALUES
  ('e2', now() - interval '2 hours', now(), 2, 0.75, 'fr', '{"x": 2}'),
  ('e3', now() - interval '5 days', now(), 30, 1.5, 'us', NULL),
  ('e4', now() - interval '3 hours', now(), 4, 1e-7, 'jp', '[4]'),
  ('e4', now() - interval '4 hours', now(), 44, 0, 'jp', '[44]'),
  ('e5', now() - interval '4 days', now(), 5, -2.5, NULL, 'null'),
  ('e7', now() - interval '1 hour', now(), 7, 0.1, 'br', '{}'),
  ('e8', date_trunc('minute', now()) - interval '1 hour', now() - interval '1 minute', 8, 0.8, 'old', NULL),
  ('e8', date_trunc('minute', now()) - interval '1 hour', now(), 88, 0.88, 'new', NULL);

-- In a READ ONLY transaction nothing is written back, and the direct probe
-- answers: what the PL/pgSQL implementation answers, row for row.
BEGIN TRANSACTION READ ONLY;
SELECT entity, features, source
  FROM pgpoly.get_online_features('fpr', '{e6,e1,e2,e3,e4,e5,e7,e8,e1,e4}');
SELECT differences('{e6,e1,e2,e3,e4,e5,e7,e8,e1,e4}') AS differences;
-- requested features: reordered, repeated, without and with a jsonb one
-- (the object built directly, or through pushJsonbValue)
SELECT entity, features FROM pgpoly.get_online_features('fpr', '{e1,e4}',
                                                         '{country,clicks,ctr,clicks}');
SELECT entity, features FROM pgpoly.get_online_features('fpr', '{e1,e4}',
                                                         '{meta,country,meta}');
SELECT f, differences('{e1,e2,e3,e4,e5,e6,e7,e8}', f) AS differences
  FROM (VALUES ('{clicks}'::text[]), ('{country,clicks,ctr,clicks}'), ('{ctr,ctr}'),
               ('{meta,country,meta}'), ('{clicks,meta}'), ('{}')) v(f);
COMMIT;
SELECT key FROM fpr_raw ORDER BY key;

-- A writer's call: the values served from offline go back online (e2, e4,
-- e7, e8; not the expired e5), the same answers.
BEGIN;
SELECT entity, source FROM pgpoly.get_online_features('fpr', '{e1,e2,e3,e4,e5,e6,e7,e8}');
COMMIT;
SELECT key, clicks, country, meta, _event_time IS NOT NULL AS has_event_time
  FROM fpr_raw ORDER BY key;
DELETE FROM pgpoly.fpr_serving WHERE user_id IN ('e2', 'e4', 'e7', 'e8');
UPDATE pgpoly.fpr_serving SET _event_time = now() - interval '3 days' WHERE user_id = 'e2';

-- The index dropped between two calls of a session: the probe statement
-- serves (the cached index is not read), the same answers; created again,
-- the probe reads the new one.  Then an index of another order, which the
-- probe cannot read, and the right one again.
BEGIN TRANSACTION READ ONLY;
SELECT entity, source FROM pgpoly.get_online_features('fpr', '{e4,e5,e6}');
COMMIT;
DROP INDEX pgpoly.fpr_history_entity_time_idx;
BEGIN TRANSACTION READ ONLY;
SELECT entity, source FROM pgpoly.get_online_features('fpr', '{e4,e5,e6}');
SELECT differences('{e1,e2,e3,e4,e5,e6,e7,e8}') AS differences;
COMMIT;
CREATE INDEX fpr_asc ON pgpoly.fpr_history (entity, event_time, created_at);
BEGIN TRANSACTION READ ONLY;
SELECT entity, features, source FROM pgpoly.get_online_features('fpr', '{e4,e8}');
SELECT differences('{e1,e2,e3,e4,e5,e6,e7,e8}') AS differences;
COMMIT;
DROP INDEX pgpoly.fpr_asc;
CREATE INDEX fpr_history_entity_time_idx ON pgpoly.fpr_history (entity, event_time DESC, created_at DESC);
BEGIN TRANSACTION READ ONLY;
SELECT entity, features, source FROM pgpoly.get_online_features('fpr', '{e4,e8}');
SELECT differences('{e1,e2,e3,e4,e5,e6,e7,e8}') AS differences;
COMMIT;

-- Rows of the caller's own transaction are seen, as by the statement.
BEGIN;
INSERT INTO pgpoly.fpr_history (entity, event_time, clicks) VALUES ('e9', now(), 9);
SET TRANSACTION READ ONLY;
SELECT entity, features, source FROM pgpoly.get_online_features('fpr', '{e9}');
ROLLBACK;

-- A value that does not convert fails the call wherever its entity is,
-- and the connection serves the next call; a longer call keeps the input
-- order.
INSERT INTO fpr_raw (key, clicks, _event_time) VALUES ('bad', 'x', now()::text);
SELECT err($$SELECT * FROM pgpoly.get_online_features('fpr',
             ARRAY['bad'] || ARRAY(SELECT 'n' || i FROM generate_series(1, 39) i))$$);
SELECT source, count(*) FROM pgpoly.get_online_features('fpr',
  ARRAY(SELECT 'n' || i FROM generate_series(1, 39) i) || '{e1,e3}') GROUP BY 1 ORDER BY 1;
SELECT err($$SELECT * FROM pgpoly.get_online_features('fpr',
             ARRAY(SELECT 'n' || i FROM generate_series(1, 39) i) || '{bad}')$$);
BEGIN TRANSACTION READ ONLY;
SELECT differences(ARRAY(SELECT 'e' || i FROM generate_series(1, 40) i)) AS differences;
SELECT array_agg(entity ORDER BY ord) = ARRAY(SELECT 'e' || i FROM generate_series(1, 40) i)
       AS input_order
  FROM pgpoly.get_online_features('fpr', ARRAY(SELECT 'e' || i FROM generate_series(1, 40) i))
       WITH ORDINALITY g(entity, features, event_time, source, ord);
COMMIT;
DELETE FROM fpr_raw WHERE key = 'bad';

-- Row-level security on the offline table: a user the policies apply to
-- gets what they let the statement see (e4 hidden: missing; e5 expired),
-- while the table's owner is served from the same backend's cache.
CREATE ROLE regress_fpr_user;
GRANT USAGE ON SCHEMA pgpoly TO regress_fpr_user;
GRANT SELECT ON pgpoly.feature_views, pgpoly._feature_view_storage TO regress_fpr_user;
GRANT SELECT ON fpr_online, pgpoly.fpr_serving, pgpoly.fpr_history TO regress_fpr_user;
ALTER TABLE pgpoly.fpr_history ENABLE ROW LEVEL SECURITY;
CREATE POLICY fpr_no_e4 ON pgpoly.fpr_history FOR SELECT USING (entity <> 'e4');
SET ROLE regress_fpr_user;
SELECT entity, source FROM pgpoly.get_online_features('fpr', '{e4,e5}');
SELECT differences('{e1,e2,e3,e4,e5,e6,e7,e8}') AS differences;
RESET ROLE;
BEGIN TRANSACTION READ ONLY;
SELECT entity, source FROM pgpoly.get_online_features('fpr', '{e4,e5}');
COMMIT;
-- and without SELECT on the offline table, nothing is read
ALTER TABLE pgpoly.fpr_history DISABLE ROW LEVEL SECURITY;
REVOKE SELECT ON pgpoly.fpr_history FROM regress_fpr_user;
SET ROLE regress_fpr_user;
SELECT err($$SELECT * FROM pgpoly.get_online_features('fpr', '{e4}')$$);
RESET ROLE;

-- Clean up.
DELETE FROM pgpoly.fpr_serving;
SELECT pgpoly.drop_feature_view('fpr', drop_tables => true);
DELETE FROM pgpoly.lineage_edges WHERE src_name = 'pgpoly.fpr_history';
DELETE FROM pgpoly.datasets WHERE name = 'pgpoly.fpr_history';
REVOKE ALL ON SCHEMA pgpoly FROM regress_fpr_user;
REVOKE ALL ON pgpoly.feature_views, pgpoly._feature_view_storage FROM regress_fpr_user;
DROP FUNCTION differences(text[], text[]), err(text);
DROP SERVER fpr CASCADE;
DROP ROLE regress_fpr_user;
