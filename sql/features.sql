-- Feature store: feature views, put/get online, point-in-time joins, materialize.
\getenv redis_port REDIS_PORT
SET timezone = 'UTC';
CREATE SERVER fs FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER fs;
-- Redis as it is, for checking what pgpoly stored.
CREATE FOREIGN TABLE fs_raw (key text, clicks text, ctr text, _event_time text)
  SERVER fs OPTIONS (key_prefix 'regress_fs:user:', write_mode 'immediate');
-- Error reporter: SQLSTATE and message.
CREATE FUNCTION err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- A view over a table without _event_time (pgpoly adds an internal serving
-- table), and one over an int-keyed table that declares it (used directly).
CREATE FOREIGN TABLE user_stats (user_id text OPTIONS (key 'true'), clicks int,
  ctr float8 OPTIONS (field 'c'), tags text[])
  SERVER fs OPTIONS (key_prefix 'regress_fs:user:');
CREATE FOREIGN TABLE item_stats (item_id int OPTIONS (key 'true'), price numeric(10,2),
  _event_time timestamptz)
  SERVER fs OPTIONS (key_prefix 'regress_fs:item:', fetch_size '2');
SELECT pgpoly.create_feature_view('user_stats', 'user_id', 'user_stats', ttl => '2 days');
SELECT pgpoly.create_feature_view(name => 'item_stats', entity => 'item_id',
                                  online_table => 'item_stats');
SELECT name, entity, online_table, offline_table, ttl FROM pgpoly.feature_views ORDER BY 1;
-- pgpoly's own state, and the definition as the functions see it (types from
-- the catalog)
SELECT view_name, serving_table, key_column, entity_column, features
  FROM pgpoly._feature_view_storage ORDER BY 1;
SELECT name, key_type, entity_type, feature_types, problem
  FROM pgpoly._feature_view_storage s, pgpoly._fv_lookup(s.view_name) ORDER BY 1;
\d pgpoly.user_stats_history
\d pgpoly.user_stats_serving

-- create_feature_view validates its input.
CREATE TABLE not_redis (user_id text, clicks int);
CREATE FOREIGN TABLE user_set (key text, member text) SERVER fs
  OPTIONS (table_type 'set', key_prefix 'regress_fs:set:');
SELECT err($$SELECT pgpoly.create_feature_view('v', 'user_id', 'not_redis')$$);
SELECT err($$SELECT pgpoly.create_feature_view('v', 'user_id', 'user_set')$$);
SELECT err($$SELECT pgpoly.create_feature_view('user_stats', 'user_id', 'user_stats')$$);
SELECT err($$SELECT pgpoly.create_feature_view('v', 'user_id', 'user_stats', ttl => '-1 hour')$$);
SELECT err($$SELECT pgpoly.create_feature_view('v', 'user_id', 'user_stats', 'not_redis')$$);
SELECT err($$SELECT pgpoly.create_feature_view('bad name', 'user_id', 'user_stats')$$);

-- put_features: unknown view, unknown feature, values that do not fit.
SELECT err($$SELECT pgpoly.put_features('nope', 'u1', '{}')$$);
SELECT err($$SELECT pgpoly.put_features('user_stats', 'u1', '{"clickz": 1}')$$);
SELECT err($$SELECT pgpoly.put_features('user_stats', 'u1', '{"clicks": "many"}')$$);
SELECT err($$SELECT pgpoly.put_features('user_stats', 'u1', '{"clicks": 1.5}')$$);
SELECT err($$SELECT pgpoly.put_features('user_stats', 'u1', '[1]')$$);
SELECT err($$SELECT pgpoly.put_features('item_stats', 'x', '{"price": 1}')$$);
SELECT count(*) FROM pgpoly.user_stats_history;

-- Offline and online in the caller's transaction: ROLLBACK undoes both.
BEGIN;
SELECT pgpoly.put_features('user_stats', 'u1', '{"clicks": 1, "ctr": 0.1}', '2024-01-01');
SELECT * FROM pgpoly.get_online_features('user_stats', '{u1}');   -- reads its own write
ROLLBACK;
SELECT count(*) FROM pgpoly.user_stats_history;
SELECT count(*) FROM fs_raw;

-- History for the point-in-time tests (hand-computed answers below).
SELECT pgpoly.put_features('user_stats', 'u1', '{"clicks": 1, "ctr": 0.1}', '2024-01-01');
SELECT pgpoly.put_features('user_stats', 'u1', '{"clicks": 3, "ctr": 0.3}', '2024-01-03');
-- same event time, written later: wins ties
SELECT pgpoly.put_features(view => 'user_stats', entity => 'u1',
                           features => '{"clicks": 33, "ctr": 0.33, "tags": ["a", "b"]}',
                           event_time => '2024-01-03');
SELECT pgpoly.put_features('user_stats', 'u1', '{"clicks": 10, "ctr": 1.0}', '2024-01-10');
SELECT pgpoly.put_features('user_stats', 'u2', '{"clicks": 5}', '2024-01-05');
-- an older event arrives late: kept offline, online keeps the newer value
SELECT pgpoly.put_features('user_stats', 'u1', '{"clicks": 9, "ctr": 0.9}', '2024-01-09');
SELECT pgpoly.put_features('item_stats', '1', '{"price": 9.99}', '2024-01-01');
SELECT pgpoly.put_features('item_stats', '001', '{"price": "19.99"}', '2024-01-04');
SELECT entity, event_time, clicks, ctr, tags FROM pgpoly.user_stats_history
  ORDER BY entity, event_time, created_at;
SELECT entity, event_time, price FROM pgpoly.item_stats_history ORDER BY 1, 2;
SELECT * FROM fs_raw ORDER BY key;      -- the field of ctr is "c": not mapped here
SELECT * FROM item_stats ORDER BY 1;

-- Online serving: input order, duplicates kept, NULL and unknown entities.
-- The ttl (2 days) has passed for all of these: 'expired'.
SELECT * FROM pgpoly.get_online_features('user_stats', '{u2,u1,nobody,u1,NULL}');
SELECT * FROM pgpoly.get_online_features(view => 'item_stats', entities => '{01,2,1}',
                                         features => '{price}');
SELECT * FROM pgpoly.get_online_features('user_stats', '{u1}', '{ctr}');
SELECT err($$SELECT * FROM pgpoly.get_online_features('user_stats', '{u1}', '{nope}')$$);
SELECT err($$SELECT * FROM pgpoly.get_online_features('nope', '{u1}')$$);

-- Fresh values (relative to now(), so only the status is shown).
SELECT pgpoly.put_features('user_stats', 'u3', '{"clicks": 3}', now() - interval '1 hour');
SELECT pgpoly.put_features('user_stats', 'u4', '{"clicks": 4}', now() - interval '1 day');
SELECT pgpoly.put_features('user_stats', 'u5', '{"clicks": 5}', now() - interval '3 days');
-- u4 is gone from Redis: served from offline, and written back online
DELETE FROM user_stats WHERE user_id = 'u4';
SELECT entity, features, source
  FROM pgpoly.get_online_features('user_stats', '{u3,u4,u5,u6}');
SELECT user_id, clicks FROM user_stats WHERE user_id = 'u4';
SELECT entity, source FROM pgpoly.get_online_features('user_stats', '{u4}');
-- One pipelined Redis round per call (per fetch_size keys: item_stats has 2).
SELECT requests AS r0 FROM pgpoly.connections() WHERE server = 'fs' \gset
SELECT count(*) FROM pgpoly.get_online_features('user_stats', '{u1,u2,u3,u4,u5,u6,u1}');
SELECT requests - :r0 AS round_trips FROM pgpoly.connections() WHERE server = 'fs';
SELECT requests AS r0 FROM pgpoly.connections() WHERE server = 'fs' \gset
SELECT count(*) FROM pgpoly.get_online_features('item_stats', '{1,2,3,1,4}');
SELECT requests - :r0 AS round_trips FROM pgpoly.connections() WHERE server = 'fs';

-- Point-in-time join, hand-computed answers in the spine's "expect" column.
CREATE TABLE spine (id int, user_id text, item_id int, event_time timestamptz, expect text);
INSERT INTO spine VALUES
  (1, 'u1', 1, '2023-12-31', 'before any data: null'),
  (2, 'u1', 1, '2024-01-01', 'exactly at an event: 1'),
  (3, 'u1', 1, '2024-01-02', '1'),
  (4, 'u1', 2, '2024-01-03', 'tie on event_time, newest created_at: 33'),
  (5, 'u1', 1, '2024-01-05', 'exactly at the ttl boundary (inclusive): 33'),
  (6, 'u1', 1, '2024-01-05 00:00:01', 'just past the ttl: null'),
  (7, 'u1', 1, '2024-01-05', 'duplicate spine row: 33'),
  (8, 'u2', NULL, '2024-01-06', '5'),
  (9, 'nobody', 1, '2024-01-06', 'entity without data: null'),
  (10, 'u1', 1, '2024-01-11', 'late arrival 01-09 is older than 01-10: 10');
SELECT row_no, spine->>'id' AS id, spine->>'expect' AS expect, features
FROM pgpoly.get_historical_features('SELECT * FROM spine ORDER BY id DESC',
                                    '{user_stats:clicks,item_stats:*,user_stats:clicks}');
SELECT pgpoly.create_training_set('regress_fs_train',
  'SELECT id, user_id, item_id, event_time FROM spine ORDER BY id',
  ARRAY['user_stats:*', 'item_stats:price']);
\d regress_fs_train
SELECT * FROM regress_fs_train;
SELECT * FROM pgpoly.lineage('dataset', 'regress_fs_train');
SELECT pgpoly.create_training_set('regress_fs_empty', 'SELECT * FROM spine WHERE false',
                                  '{item_stats:price}');
-- get_historical_features(dataset => ...) registers the dataset too.
SELECT count(*) FROM pgpoly.get_historical_features('SELECT * FROM spine', '{item_stats:price}',
                                                    dataset => 'regress_fs_hist');
SELECT src_kind, src_name, dst_kind, dst_name FROM pgpoly.lineage_edges
  WHERE dst_name LIKE 'regress_fs%' ORDER BY 2, 4;
SELECT err($$SELECT * FROM pgpoly.get_historical_features('SELECT id, event_time FROM spine', '{user_stats:clicks}')$$);
SELECT err($$SELECT * FROM pgpoly.get_historical_features('SELECT * FROM spine', '{clicks}')$$);
SELECT err($$SELECT * FROM pgpoly.get_historical_features('SELECT * FROM spine', '{nope:clicks}')$$);
SELECT err($$SELECT * FROM pgpoly.get_historical_features('SELECT * FROM spine', '{user_stats:nope}')$$);
SELECT err($$SELECT * FROM pgpoly.get_historical_features('SELECT * FROM nope', '{user_stats:clicks}')$$);
SELECT err($$SELECT pgpoly.create_training_set('regress_fs_train', 'SELECT * FROM spine', '{item_stats:price}')$$);

-- materialize: newest offline row per entity in the window, unless online is newer.
DELETE FROM user_stats;
SELECT pgpoly.materialize('user_stats', '2024-01-01', '2024-01-05');
SELECT * FROM fs_raw ORDER BY key;
-- u1 online (01-03) is older than its 01-10 row; u2 online has the same event
-- time as its newest row (not newer: rewritten); u3..u5 are outside the window.
SELECT pgpoly.materialize('user_stats', end_time => '2024-01-31');
SELECT key, clicks, _event_time FROM fs_raw ORDER BY key;
-- an online value newer than the window's rows is kept
SELECT pgpoly.put_features('user_stats', 'u2', '{"clicks": 50}', '2024-02-01');
DELETE FROM pgpoly.user_stats_history WHERE event_time = '2024-02-01';
SELECT pgpoly.materialize('user_stats', end_time => '2024-01-31');
SELECT key, clicks, _event_time FROM fs_raw WHERE key = 'u2';
SELECT err($$SELECT pgpoly.materialize('user_stats', '2024-02-01', '2024-01-01')$$);

-- Freshness (age depends on now(): not shown).
SELECT view_name, newest_event_time > '2024-01-10' AS recent, ttl, stale
  FROM pgpoly.feature_freshness ORDER BY 1;

-- IMPORT FOREIGN SCHEMA feature_views: one table per view of the server.
CREATE SCHEMA fs_import;
IMPORT FOREIGN SCHEMA feature_views LIMIT TO (user_stats) FROM SERVER fs INTO fs_import;
\d fs_import.user_stats
SELECT user_id, clicks, ctr, _event_time FROM fs_import.user_stats WHERE user_id = 'u1';
IMPORT FOREIGN SCHEMA feature_views EXCEPT (user_stats) FROM SERVER fs INTO fs_import;
SELECT foreign_table_name FROM information_schema.foreign_tables
  WHERE foreign_table_schema = 'fs_import' ORDER BY 1;
IMPORT FOREIGN SCHEMA public FROM SERVER fs INTO fs_import;

-- Clean up: Redis keys, views, tables.
DELETE FROM user_stats;
DELETE FROM item_stats;
SELECT pgpoly.drop_feature_view('user_stats', drop_tables => true);
SELECT pgpoly.drop_feature_view('item_stats', drop_tables => true);
SELECT count(*) FROM pgpoly.feature_views;
DELETE FROM pgpoly.lineage_edges WHERE dst_name LIKE 'regress_fs%' OR src_name LIKE 'pgpoly.%_history';
DELETE FROM pgpoly.datasets WHERE name LIKE 'regress_fs%' OR name LIKE 'pgpoly.%_history';
DROP TABLE spine, not_redis, regress_fs_train, regress_fs_empty;
DROP FUNCTION err(text);
DROP SCHEMA fs_import CASCADE;
DROP SERVER fs CASCADE;
