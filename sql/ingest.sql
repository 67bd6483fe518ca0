--
-- Feature views and monitoring: ingest_features, feature_stats, the point-in-time
-- join of predictions to the features that were online when they were made, and
-- the content hash of a training set.
--
\getenv redis_port REDIS_PORT
\set VERBOSITY terse
\set SHOW_CONTEXT never
SET client_min_messages = warning;
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
CREATE SERVER ing FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER ing;
-- the test Redis has no password: a superuser waives the trust rule for PUBLIC
CREATE USER MAPPING FOR PUBLIC SERVER ing OPTIONS (password_required 'false');
-- Redis as it is, written immediately, for checking what ingest_features
-- stored; through another server object for the same Redis (another
-- connection: it overlays none of this session's buffered writes).
CREATE SERVER ing_other FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER ing_other;
CREATE FOREIGN TABLE ing_raw (key text, clicks text, ctr text, plan text, _event_time text)
  SERVER ing_other OPTIONS (key_prefix 'regress_ing:user:', write_mode 'immediate');
CREATE FOREIGN TABLE ing_item_raw (key text, price text, _event_time text)
  SERVER ing OPTIONS (key_prefix 'regress_ing:item:', write_mode 'immediate');
-- A text-keyed view without _event_time (pgpoly's serving table), and an
-- int-keyed one that declares it (used directly); small fetch_size: several rounds.
CREATE FOREIGN TABLE ing_users (user_id text OPTIONS (key 'true'), clicks int, ctr float8, plan text)
  SERVER ing OPTIONS (key_prefix 'regress_ing:user:', fetch_size '3');
CREATE FOREIGN TABLE ing_items (item_id int OPTIONS (key 'true'), price numeric(10,2),
  _event_time timestamptz) SERVER ing OPTIONS (key_prefix 'regress_ing:item:');
SELECT pgpoly.create_feature_view('ing_users', 'user_id', 'ing_users');
SELECT pgpoly.create_feature_view('ing_items', 'item_id', 'ing_items', ttl => '30 days');
CREATE FUNCTION ing_err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

--
-- ingest_features: every row offline, each entity's newest row online
--
-- u1 already has a newer value online: it keeps it (newer wins)
SELECT pgpoly.put_features('ing_users', 'u1', '{"clicks": 100, "plan": "pro"}', '2024-06-10');
CREATE TABLE ing_batch (user_id text, event_time timestamptz, clicks int, ctr float8, plan text, ord int);
INSERT INTO ing_batch VALUES
  ('u1', '2024-06-01', 1, 0.1, 'free', 1),
  ('u2', '2024-06-01', 2, 0.2, 'free', 2),
  ('u2', '2024-06-03', 3, 0.3, 'pro', 3),		-- u2's newest: online
  ('u2', '2024-06-02', 4, 0.4, 'free', 4),		-- late, offline only
  ('u3', '2024-06-05', 5, NULL, NULL, 5),
  ('u3', '2024-06-05', 6, 0.6, NULL, 6),		-- same event time, later row: online
  ('u4', '2024-06-01', 7, 0.7, 'pro', 7),
  ('u5', '2024-06-01', 8, 0.8, 'pro', 8),
  ('u6', '2024-06-01', 9, 0.9, 'pro', 9),
  ('u7', '2024-06-01', 10, 1.0, 'pro', 10);
BEGIN;
SELECT pgpoly.ingest_features('ing_users', 'SELECT user_id, event_time, clicks, ctr, plan FROM ing_batch ORDER BY ord') AS ingested;
-- the Redis writes wait for COMMIT (one pipelined MULTI/EXEC): only u1 so far
SELECT count(*) AS keys_before_commit FROM ing_raw;
COMMIT;
SELECT entity, event_time, clicks, ctr, plan FROM pgpoly.ing_users_history ORDER BY entity, event_time, clicks;
SELECT * FROM ing_raw ORDER BY key;
-- created_at follows the source's order (history ties break on it)
SELECT count(*) = count(DISTINCT created_at) AND
       array_agg(clicks ORDER BY created_at) = array_agg(clicks ORDER BY clicks) AS in_source_order
FROM pgpoly.ing_users_history WHERE clicks < 100;

-- a subset of the features (the others are NULL: a row is a full snapshot), a
-- table as the source, and an entity Redis holds a newer value for (u2)
CREATE TABLE ing_more AS SELECT 'u' || g AS user_id, timestamptz '2024-06-02' AS event_time, g * 10 AS clicks
FROM generate_series(2, 9) g;
SELECT pgpoly.ingest_features(view => 'ing_users', source => 'ing_more') AS ingested;
SELECT * FROM ing_raw ORDER BY key;
-- newer wins against Redis, ties included: u4 is held at 2024-06-02 and a row
-- of that same event time replaces it; u5 is held at 2024-06-02 and keeps it
SELECT pgpoly.ingest_features('ing_users', $$SELECT * FROM (VALUES ('u4', timestamptz '2024-06-02', 41),
	('u5', timestamptz '2024-06-01', 51)) v(user_id, event_time, clicks)$$) AS ingested;
SELECT key, clicks, _event_time FROM ing_raw WHERE key IN ('u4', 'u5') ORDER BY key;
-- several rows per entity, spread over rounds (fetch_size 3): each entity's
-- newest row is compared with what Redis holds: u6 (held 2024-06-02) gets its
-- newest row, 2024-07-01, its 2nd of 3; u8 (held 2024-06-02) keeps it, its
-- newest row (2024-06-01) being older
SELECT pgpoly.ingest_features('ing_users', $$SELECT * FROM (VALUES ('u6', timestamptz '2024-05-01', 61),
	('u7', timestamptz '2024-05-01', 71), ('u8', timestamptz '2024-05-01', 81), ('u6', timestamptz '2024-07-01', 62),
	('u8', timestamptz '2024-06-01', 82), ('u6', timestamptz '2024-05-02', 63)) v(user_id, event_time, clicks)$$) AS ingested;
SELECT key, clicks, _event_time FROM ing_raw WHERE key IN ('u6', 'u7', 'u8') ORDER BY key;
-- ROLLBACK undoes both stores
BEGIN;
SELECT pgpoly.ingest_features('ing_users', $$SELECT 'u1' AS user_id, now() AS event_time, -1 AS clicks -- comment$$);
ROLLBACK;
SELECT count(*) FILTER (WHERE clicks = -1) AS rolled_back_offline FROM pgpoly.ing_users_history;
SELECT clicks FROM ing_raw WHERE key = 'u1';
-- an empty source
SELECT pgpoly.ingest_features('ing_users', 'SELECT user_id, event_time FROM ing_batch WHERE false') AS ingested_none;
-- work_mem: the call runs with at least 64MB (the materialized source stays
-- in memory), or the caller's larger setting, as the source
-- sees it; the caller's setting is back after the call, in its transaction and
-- after an error
CREATE FOREIGN TABLE ing_wm (k text OPTIONS (key 'true'), wm text)
  SERVER ing OPTIONS (key_prefix 'regress_ing:wm:');
SELECT pgpoly.create_feature_view('ing_wm', 'k', 'ing_wm');
SET work_mem = '1MB';
BEGIN;
SELECT pgpoly.ingest_features('ing_wm', $$SELECT 'a' AS k, now() AS event_time, current_setting('work_mem') AS wm$$);
SHOW work_mem;
COMMIT;
SET work_mem = '200MB';
BEGIN;
SELECT pgpoly.ingest_features('ing_wm', $$SELECT 'b' AS k, now() AS event_time, current_setting('work_mem') AS wm$$);
SHOW work_mem;
COMMIT;
SET work_mem = '64MB';
SELECT pgpoly.ingest_features('ing_wm', $$SELECT 'c' AS k, now() AS event_time, current_setting('work_mem') AS wm$$);
SET work_mem = '2MB';
BEGIN;
SELECT ing_err($$SELECT pgpoly.ingest_features('ing_wm', 'SELECT NULL::text AS k, now() AS event_time')$$);
SHOW work_mem;
COMMIT;
SELECT entity, wm FROM pgpoly.ing_wm_history ORDER BY entity;
SELECT k, wm FROM ing_wm ORDER BY k;
DELETE FROM ing_wm;
SELECT pgpoly.drop_feature_view('ing_wm', drop_tables => true);
DROP FOREIGN TABLE ing_wm;
RESET work_mem;
-- a varchar(3) key: an entity longer than the key would be cut to another
-- entity's key (abcdef -> abc, overwriting abc online): the whole call is
-- refused with 22001 naming the row, and nothing is written in either store
CREATE FOREIGN TABLE ing_short (code varchar(3) OPTIONS (key 'true'), clicks int)
  SERVER ing OPTIONS (key_prefix 'regress_ing:short:');
CREATE FOREIGN TABLE ing_short_raw (key text, clicks text)
  SERVER ing OPTIONS (key_prefix 'regress_ing:short:', write_mode 'immediate');
SELECT pgpoly.create_feature_view('ing_short', 'code', 'ing_short');
SELECT pgpoly.ingest_features('ing_short', $$SELECT 'abc' AS code, timestamptz '2024-06-01' AS event_time, 1 AS clicks$$) AS ingested;
SELECT ing_err($$SELECT pgpoly.ingest_features('ing_short',
  'SELECT * FROM (VALUES (''xyz'', timestamptz ''2024-06-02'', 2), (''abcdef'', timestamptz ''2024-06-02'', 3)) v(code, event_time, clicks)')$$);
-- a long entity (row 1) and a NULL one (row 2): the NULL is reported first
SELECT ing_err($$SELECT pgpoly.ingest_features('ing_short',
  'SELECT * FROM (VALUES (''abcdef'', timestamptz ''2024-06-02'', 3), (NULL, timestamptz ''2024-06-02'', 4)) v(code, event_time, clicks)')$$);
SELECT * FROM ing_short_raw ORDER BY key;
SELECT entity, clicks FROM pgpoly.ing_short_history ORDER BY entity, clicks;
SELECT pgpoly.drop_feature_view('ing_short', drop_tables => true);
DROP FOREIGN TABLE IF EXISTS ing_short, ing_short_raw;
-- a char(3) key likewise: 'abcd' would be cut to abc's key; 'ab' and 'ab '
-- are one char(3) entity (its trailing blanks do not count)
CREATE FOREIGN TABLE ing_bp (code char(3) OPTIONS (key 'true'), clicks int)
  SERVER ing OPTIONS (key_prefix 'regress_ing:bp:');
CREATE FOREIGN TABLE ing_bp_raw (key text, clicks text)
  SERVER ing OPTIONS (key_prefix 'regress_ing:bp:', write_mode 'immediate');
SELECT pgpoly.create_feature_view('ing_bp', 'code', 'ing_bp');
SELECT pgpoly.ingest_features('ing_bp', $$SELECT * FROM (VALUES ('abc', timestamptz '2024-06-01', 1),
  ('ab', timestamptz '2024-06-01', 2), ('ab ', timestamptz '2024-06-02', 3)) v(code, event_time, clicks)$$) AS ingested;
SELECT ing_err($$SELECT pgpoly.ingest_features('ing_bp',
  'SELECT * FROM (VALUES (''xyz'', timestamptz ''2024-06-02'', 4), (''abcd'', timestamptz ''2024-06-03'', 5)) v(code, event_time, clicks)')$$);
SELECT * FROM ing_bp_raw ORDER BY key;
SELECT entity, clicks FROM pgpoly.ing_bp_history ORDER BY entity, clicks;
DELETE FROM ing_bp;
SELECT pgpoly.drop_feature_view('ing_bp', drop_tables => true);
DROP FOREIGN TABLE ing_bp, ing_bp_raw;
-- Text the source turns into times reads in the caller's DateStyle field
-- order, as in the caller's own SQL ('02/01/2024' is 2 January under DMY);
-- the caller's DateStyle is back after the call
CREATE FOREIGN TABLE ing_ds (k text OPTIONS (key 'true'), d date)
  SERVER ing OPTIONS (key_prefix 'regress_ing:ds:');
SELECT pgpoly.create_feature_view('ing_ds', 'k', 'ing_ds');
SELECT current_setting('DateStyle') AS ing_datestyle \gset
SET DateStyle = 'SQL, DMY';
SELECT pgpoly.ingest_features('ing_ds', $$SELECT 'a' AS k, '02/01/2024 10:00+00' AS event_time, '03/04/2024' AS d$$);
SHOW DateStyle;
SELECT entity, event_time = '02/01/2024 10:00+00'::timestamptz AS same_time, d = '03/04/2024'::date AS same_date
FROM pgpoly.ing_ds_history;
SET DateStyle = 'ISO, MDY';
SELECT entity, event_time, d FROM pgpoly.ing_ds_history;
SELECT k, d FROM ing_ds;
SET DateStyle = :'ing_datestyle';
DELETE FROM ing_ds;
SELECT pgpoly.drop_feature_view('ing_ds', drop_tables => true);
DROP FOREIGN TABLE ing_ds;

-- Int keys: entities in canonical form ('007' is item 7), numeric conversion
SELECT pgpoly.ingest_features('ing_items', $$SELECT * FROM (VALUES ('007', timestamptz '2024-06-01', 9.999),
	('7', '2024-06-02', 5), ('12', '2024-06-01', 1.5)) v(item_id, event_time, price)$$);
SELECT pgpoly.ingest_features('ing_items',
	$$SELECT item_id, event_time, price FROM (VALUES (7, timestamptz '2024-06-01', 1.0)) v(item_id, event_time, price)$$);
SELECT entity, event_time, price FROM pgpoly.ing_items_history ORDER BY entity, event_time, price;
SELECT * FROM ing_item_raw ORDER BY key;

-- Errors: clear SQLSTATEs; nothing is written
SELECT count(*) AS before FROM pgpoly.ing_users_history \gset
SELECT md5(string_agg(format('%s %s %s', key, clicks, _event_time), ',' ORDER BY key)) AS redis_before FROM ing_raw \gset
SELECT c.cmd, ing_err(c.cmd) AS error
FROM (VALUES
	('SELECT pgpoly.ingest_features(''ing_nope'', ''ing_batch'')'),
	('SELECT pgpoly.ingest_features(''ing_users'', ''ing_nope'')'),
	('SELECT pgpoly.ingest_features(''ing_users'', NULL)'),
	('SELECT pgpoly.ingest_features(''ing_users'', ''SELECT user_id, clicks FROM ing_batch'')'),
	('SELECT pgpoly.ingest_features(''ing_users'', ''SELECT event_time, clicks FROM ing_batch'')'),
	('SELECT pgpoly.ingest_features(''ing_users'', ''SELECT user_id, event_time, clicks, 1 AS clickz FROM ing_batch'')'),
	('SELECT pgpoly.ingest_features(''ing_users'', ''SELECT user_id, event_time, ord, clicks FROM ing_batch'')'),
	('SELECT pgpoly.ingest_features(''ing_users'', ''SELECT user_id, event_time, plan AS clicks FROM ing_batch'')'),
	('SELECT pgpoly.ingest_features(''ing_users'', ''SELECT user_id, event_time, user_id AS event_time FROM ing_batch'')'),
	('SELECT pgpoly.ingest_features(''ing_users'', ''SELECT CASE WHEN ord = 5 THEN NULL ELSE user_id END AS user_id, event_time FROM ing_batch'')'),
	('SELECT pgpoly.ingest_features(''ing_users'', ''SELECT user_id, NULL::timestamptz AS event_time FROM ing_batch'')'),
	-- a NULL entity (row 3) and a value that does not convert (row 7): the value's error, as
	-- when every row was read before any was written
	('SELECT pgpoly.ingest_features(''ing_users'', ''SELECT CASE WHEN ord = 3 THEN NULL ELSE user_id END AS user_id, event_time, CASE WHEN ord = 7 THEN ''''x'''' ELSE clicks::text END AS clicks FROM ing_batch'')'),
	-- a NULL event time in the last row, after rows that pass
	('SELECT pgpoly.ingest_features(''ing_users'', ''SELECT user_id, CASE WHEN ord < 10 THEN event_time END AS event_time FROM ing_batch ORDER BY ord'')'),
	('SELECT pgpoly.ingest_features(''ing_items'', $$SELECT ''seven'' AS item_id, now() AS event_time$$)'),
	('SELECT pgpoly.ingest_features(''ing_items'', $$SELECT 7 AS item_id, now() AS event_time, 123456789 AS price$$)')
) AS c(cmd);
SELECT count(*) - :before AS written_by_failed_calls FROM pgpoly.ing_users_history;
SELECT md5(string_agg(format('%s %s %s', key, clicks, _event_time), ',' ORDER BY key)) = :'redis_before' AS redis_untouched_by_failed_calls FROM ing_raw;

-- Privileges: INSERT on the offline table, SELECT and INSERT on the online table
-- (the statements ingest_features runs), checked before anything is read.
CREATE ROLE regress_ing_writer NOLOGIN;
GRANT USAGE ON SCHEMA pgpoly TO regress_ing_writer;
GRANT SELECT ON pgpoly.feature_views, pgpoly._feature_view_storage, ing_batch TO regress_ing_writer;
GRANT SELECT, INSERT ON pgpoly.ing_users_history TO regress_ing_writer;
SET ROLE regress_ing_writer;
SELECT ing_err('SELECT pgpoly.ingest_features(''ing_users'', ''ing_batch'')') AS without_online;
RESET ROLE;
GRANT SELECT ON ing_users TO regress_ing_writer;
SET ROLE regress_ing_writer;
SELECT ing_err('SELECT pgpoly.ingest_features(''ing_users'', ''ing_batch'')') AS without_online_insert;
RESET ROLE;
REVOKE INSERT ON pgpoly.ing_users_history FROM regress_ing_writer;
GRANT INSERT ON ing_users TO regress_ing_writer;
SET ROLE regress_ing_writer;
SELECT ing_err('SELECT pgpoly.ingest_features(''ing_users'', ''ing_batch'')') AS without_offline_insert;
RESET ROLE;
SELECT count(*) - :before AS written_by_denied_calls FROM pgpoly.ing_users_history;
-- with them (and, as for put_features, on the serving table pgpoly made for
-- this view, pgpoly.ing_users_serving) it works
GRANT INSERT ON pgpoly.ing_users_history TO regress_ing_writer;
GRANT SELECT, INSERT ON pgpoly.ing_users_serving TO regress_ing_writer;
SET ROLE regress_ing_writer;
SELECT pgpoly.ingest_features('ing_users', $$SELECT 'u9' AS user_id, timestamptz '2024-06-09' AS event_time, 99 AS clicks$$) AS by_writer;
RESET ROLE;
SELECT clicks, _event_time FROM ing_raw WHERE key = 'u9';

--
-- feature_stats over the offline history
--
-- ing_users history: clicks 1..10 (10 rows), 20..90 (8 rows), 99, 100 (put_features)
SELECT * FROM pgpoly.feature_stats('ing_users');
-- a window [since, until): the 2024-06-01 rows only
SELECT feature, count, nulls, distinct_count, mean, min, p50, max
FROM pgpoly.feature_stats('ing_users', since => '2024-06-01', until => '2024-06-02');
SELECT * FROM pgpoly.feature_stats('ing_items', '2030-01-01');
SELECT ing_err('SELECT pgpoly.feature_stats(''ing_nope'')') AS unknown_view,
       ing_err('SELECT pgpoly.feature_stats(''ing_users'', NULL)') AS null_since,
       ing_err('SELECT pgpoly.feature_stats(''ing_users'', ''2024-02-01'', ''2024-01-01'')') AS reversed;
-- drift of a view's history: one window against another
SELECT feature, status FROM pgpoly.drift(
	'SELECT clicks, plan FROM pgpoly.ing_users_history WHERE event_time < ''2024-06-02''',
	'SELECT clicks, plan FROM pgpoly.ing_users_history WHERE event_time >= ''2024-06-02''');

--
-- Predictions joined to the feature values that were online when they were made:
-- per prediction, the newest history row written (created_at) before it.
--
SELECT pgpoly.register_model_version('ing_model', 's3://m/1');
CREATE TABLE ing_times AS
	SELECT entity, clicks, created_at FROM pgpoly.ing_users_history WHERE entity = 'u2';
-- predictions for u2 at the instant of each of its writes (created_at: the
-- rows of one call are apart by as little as a microsecond), and one before any
SELECT count(pgpoly.log_prediction('ing_model', 1, 'u2', to_jsonb(t.clicks),
                                   ts => t.created_at)) AS logged
FROM ing_times t;
SELECT pgpoly.log_prediction('ing_model', 1, 'u2', '"none"',
                             ts => (SELECT min(created_at) FROM ing_times) - interval '1 day') > 0 AS logged;
SELECT p.prediction AS clicks_when_predicted, f.clicks AS online_clicks, f.event_time
FROM pgpoly.predictions p
LEFT JOIN LATERAL (
	SELECT h.clicks, h.event_time FROM pgpoly.ing_users_history h
	WHERE h.entity = p.entity AND h.created_at <= p.ts
	ORDER BY h.event_time DESC, h.created_at DESC LIMIT 1) f ON true
WHERE p.model_name = 'ing_model'
ORDER BY p.ts;

--
-- Training sets record a content hash of their rows
--
SELECT pgpoly.create_training_set('ing_train',
	'SELECT user_id, event_time FROM ing_batch ORDER BY ord', '{ing_users:clicks,ing_users:plan}');
SELECT pgpoly.create_training_set('ing_train_copy',
	'SELECT user_id, event_time FROM ing_batch ORDER BY ord DESC', '{ing_users:clicks,ing_users:plan}');
SELECT name, version, content_hash = pgpoly._dataset_content_hash('ing_train') AS hash_of_its_rows,
       content_hash LIKE 'pgpoly-rows-v3:%' AS method
FROM pgpoly.datasets WHERE name = 'ing_train';
SELECT (SELECT content_hash FROM pgpoly.datasets WHERE name = 'ing_train') =
       (SELECT content_hash FROM pgpoly.datasets WHERE name = 'ing_train_copy') AS same_rows_same_hash;

-- Redis read for newer-wins: each entity's _event_time alone (HMGET).  A hash
-- Redis holds without _event_time (another client's, u30) is overwritten as
-- a key Redis lacks (u31) is; one with a newer _event_time (u32) is kept.
INSERT INTO ing_raw (key, clicks) VALUES ('u30', '300');
INSERT INTO ing_raw (key, clicks, _event_time) VALUES ('u32', '320', '2030-01-01 00:00:00+00');
SELECT pgpoly.ingest_features('ing_users', $$SELECT * FROM (VALUES ('u30', timestamptz '2020-01-01', 31),
	('u31', timestamptz '2020-01-01', 311), ('u32', timestamptz '2029-01-01', 321)) v(user_id, event_time, clicks)$$) AS ingested;
SELECT key, clicks, _event_time FROM ing_raw WHERE key IN ('u30', 'u31', 'u32') ORDER BY key;

-- Clean up
DELETE FROM ing_raw;
DELETE FROM ing_item_raw;
SELECT pgpoly.drop_prediction_partitions('infinity') >= 0 AS dropped;
DELETE FROM pgpoly.registered_models WHERE name = 'ing_model';
SELECT pgpoly.drop_feature_view('ing_users', drop_tables => true);
SELECT pgpoly.drop_feature_view('ing_items', drop_tables => true);
DELETE FROM pgpoly.lineage_edges WHERE dst_name LIKE 'ing\_%' OR src_name LIKE 'pgpoly.ing\_%';
DELETE FROM pgpoly.datasets WHERE name LIKE 'ing\_%' OR name LIKE 'pgpoly.ing\_%';
DROP TABLE ing_batch, ing_more, ing_times, ing_train, ing_train_copy;
DROP FUNCTION ing_err(text);
DROP OWNED BY regress_ing_writer;
DROP ROLE regress_ing_writer;
DROP SERVER ing CASCADE;
DROP SERVER ing_other CASCADE;
