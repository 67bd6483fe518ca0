-- Feature store time rules: a ttl is an absolute duration (the same answers
-- in every TimeZone, across DST changes), ttl 0 means no ttl, the serving
-- rule, spine entities normalised to the view's key type, and spine columns
-- that collide with output columns.
\getenv redis_port REDIS_PORT
SET timezone = 'UTC';
CREATE SERVER fsp FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER fsp;
CREATE FUNCTION err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- A ttl as seconds: months count 30 days, years 365.25 (extract(epoch));
-- no ttl for NULL and 0.
SELECT t AS ttl, pgpoly._fv_ttl_span(t::interval) AS span
FROM (VALUES ('2 days'), ('36 hours'), ('1 mon'), ('1 year'), ('1 day -24 hours'), ('0'),
             (NULL)) v(t);
-- Subtracting it is the same instant arithmetic in every TimeZone.
SET timezone = 'America/New_York';
SELECT '2024-03-11 12:00+00'::timestamptz - pgpoly._fv_ttl_span('2 days') AS ny_spring,
       '2024-11-04 12:00+00'::timestamptz - pgpoly._fv_ttl_span('2 days') AS ny_fall;
SET timezone = 'UTC';
SELECT '2024-03-11 12:00+00'::timestamptz - pgpoly._fv_ttl_span('2 days') AS utc_spring,
       '2024-11-04 12:00+00'::timestamptz - pgpoly._fv_ttl_span('2 days') AS utc_fall;

-- The serving rule, case by case (fresh = 01-10: values older are stale;
-- NULL fresh: no ttl).  "want" is the hand-computed answer.
SELECT c.note, r.source, r.from_offline,
       (r.source, r.from_offline) = (c.want_source, c.want_offline) AS ok
FROM (VALUES
  ('2024-01-10', true,  '2024-01-11', true,  '2024-01-12', 'online',  false, 'online fresh: served as is'),
  ('2024-01-10', true,  '2024-01-10', false, NULL,         'online',  false, 'at the boundary: fresh'),
  ('2024-01-10', true,  '2024-01-09', true,  '2024-01-11', 'offline', true,  'online stale, offline newer and fresh'),
  ('2024-01-10', true,  '2024-01-08', true,  '2024-01-09', 'expired', true,  'offline newer but stale too'),
  ('2024-01-10', true,  '2024-01-09', true,  '2024-01-09', 'expired', false, 'equal: online kept'),
  ('2024-01-10', true,  '2024-01-09', true,  '2024-01-08', 'expired', false, 'online newer, stale'),
  ('2024-01-10', true,  NULL,         true,  '2024-01-11', 'offline', true,  'online without event time: stale'),
  ('2024-01-10', true,  NULL,         false, NULL,         'expired', false, 'online without event time, nothing offline'),
  ('2024-01-10', false, NULL,         true,  '2024-01-11', 'offline', true,  'online missing'),
  ('2024-01-10', false, NULL,         true,  '2024-01-01', 'expired', true,  'online missing, offline stale'),
  ('2024-01-10', false, NULL,         false, NULL,         'missing', false, 'nowhere'),
  (NULL,         true,  '2000-01-01', true,  '2024-01-01', 'online',  false, 'no ttl: any online value'),
  (NULL,         true,  NULL,         false, NULL,         'online',  false, 'no ttl: even without event time'),
  (NULL,         false, NULL,         true,  '2000-01-01', 'offline', true,  'no ttl: offline never expires')
) c(fresh, on_found, on_et, off_found, off_et, want_source, want_offline, note),
LATERAL pgpoly._fv_serve(c.fresh::timestamptz, c.on_found, c.on_et::timestamptz,
                         c.off_found, c.off_et::timestamptz) r;
SELECT pgpoly._fv_is_fresh(NULL, NULL) AS no_ttl, pgpoly._fv_is_fresh('2024-01-10', NULL) AS no_time,
       pgpoly._fv_is_fresh('2024-01-10', '2024-01-10') AS boundary,
       pgpoly._fv_is_fresh('2024-01-10', '2024-01-09 23:59:59') AS before;

--
-- Point-in-time across DST changes: New York and UTC give the same training
-- set, and it is the one computed by hand with epoch arithmetic.
--
CREATE FOREIGN TABLE pit_user (user_id text OPTIONS (key 'true'), clicks int)
  SERVER fsp OPTIONS (key_prefix 'regress_fsp:u:');
SELECT pgpoly.create_feature_view('pit_user', 'user_id', 'pit_user', ttl => '2 days');
-- Per user an event every 3 days around both 2024 DST changes of New York
-- (03-10, 11-03); the spine asks 47 to 50 hours after each event, where the
-- ttl boundary decides.
SELECT count(pgpoly.put_features('pit_user', u, jsonb_build_object('clicks', k),
                                 base + (u_off + k * 72) * interval '1 hour')) AS events
FROM (VALUES ('u1', 0), ('u2', 13), ('u3', 29)) users(u, u_off),
     (VALUES ('2024-03-05 10:00+00'::timestamptz), ('2024-10-29 10:00+00')) b(base),
     generate_series(0, 5) k;
CREATE TABLE pit_spine AS
SELECT row_number() OVER (ORDER BY h.entity, h.event_time, o) AS id, h.entity AS user_id,
       h.event_time + o * interval '30 minutes' AS event_time
FROM pgpoly.pit_user_history h, generate_series(94, 100) o;
-- the answer by hand: newest row at most 172800 seconds older than the spine row
CREATE TABLE pit_want AS
SELECT s.id, s.user_id, s.event_time,
       (SELECT h.clicks FROM pgpoly.pit_user_history h
        WHERE h.entity = s.user_id AND h.event_time <= s.event_time
          AND extract(epoch FROM s.event_time) - extract(epoch FROM h.event_time) <= 172800
        ORDER BY h.event_time DESC, h.created_at DESC LIMIT 1) AS pit_user__clicks
FROM pit_spine s;
SET timezone = 'America/New_York';
SELECT pgpoly.create_training_set('pit_train_ny', 'SELECT * FROM pit_spine ORDER BY id',
                                  '{pit_user:clicks}');
-- calendar arithmetic would differ here: "2 days" is 47 or 49 hours across a change
SELECT count(*) AS rows_where_calendar_days_differ
FROM pit_spine s
WHERE EXISTS (SELECT FROM pgpoly.pit_user_history h
              WHERE h.entity = s.user_id AND h.event_time <= s.event_time
                AND ((h.event_time >= s.event_time - interval '2 days')
                     <> (extract(epoch FROM s.event_time) - extract(epoch FROM h.event_time) <= 172800)));
SET timezone = 'UTC';
SELECT pgpoly.create_training_set('pit_train_utc', 'SELECT * FROM pit_spine ORDER BY id',
                                  '{pit_user:clicks}');
SELECT (SELECT count(*) FROM pit_want) AS spine_rows,
       (SELECT count(*) FROM pit_want WHERE pit_user__clicks IS NOT NULL) AS with_value,
       (SELECT count(*) FROM (SELECT * FROM pit_train_ny EXCEPT ALL SELECT * FROM pit_want) d)
     + (SELECT count(*) FROM (SELECT * FROM pit_want EXCEPT ALL SELECT * FROM pit_train_ny) d)
         AS ny_differs,
       (SELECT count(*) FROM (SELECT * FROM pit_train_utc EXCEPT ALL SELECT * FROM pit_want) d)
     + (SELECT count(*) FROM (SELECT * FROM pit_want EXCEPT ALL SELECT * FROM pit_train_utc) d)
         AS utc_differs;
-- get_historical_features follows the same rule, in spine order
SET timezone = 'America/New_York';
SELECT count(*) AS historical_differs
FROM pgpoly.get_historical_features('SELECT * FROM pit_spine ORDER BY id', '{pit_user:clicks}') g
JOIN pit_want w ON w.id = (g.spine->>'id')::bigint
WHERE g.row_no <> w.id
   OR (g.features->>'pit_user__clicks')::int IS DISTINCT FROM w.pit_user__clicks;
SET timezone = 'UTC';
-- freshness: stale by the same absolute ttl
SELECT view_name, ttl, stale FROM pgpoly.feature_freshness WHERE view_name = 'pit_user';

--
-- ttl 0: no ttl, as in Feast
--
CREATE FOREIGN TABLE pit_forever (user_id text OPTIONS (key 'true'), clicks int)
  SERVER fsp OPTIONS (key_prefix 'regress_fsp:f:');
SELECT pgpoly.create_feature_view('pit_forever', 'user_id', 'pit_forever', ttl => '0');
SELECT name, ttl FROM pgpoly.feature_views WHERE name = 'pit_forever';
SELECT pgpoly.put_features('pit_forever', 'old', '{"clicks": 1}', '2001-01-01');
SELECT pgpoly.put_features('pit_forever', 'gone', '{"clicks": 2}', '2001-01-01');
DELETE FROM pit_forever WHERE user_id = 'gone';
SELECT entity, features, source
  FROM pgpoly.get_online_features('pit_forever', '{old,gone,nobody}');
SELECT features FROM pgpoly.get_historical_features(
  $$SELECT 'old' AS user_id, '2024-01-01'::timestamptz AS event_time$$, '{pit_forever:clicks}');
SELECT view_name, ttl, stale FROM pgpoly.feature_freshness WHERE view_name = 'pit_forever';
-- a ttl that is 0 seconds in another spelling is no ttl too; a negative one is an error
SELECT pgpoly.create_feature_view('pit_forever2', 'user_id', 'pit_forever', ttl => '1 mon -30 days');
SELECT ttl FROM pgpoly.feature_views WHERE name = 'pit_forever2';
SELECT err($$SELECT pgpoly.create_feature_view('pit_neg', 'user_id', 'pit_forever', ttl => '1 day -25 hours')$$);

--
-- Spine entities are normalised through the view's key type, as put_features does
--
CREATE FOREIGN TABLE pit_item (item_id int OPTIONS (key 'true'), price numeric)
  SERVER fsp OPTIONS (key_prefix 'regress_fsp:i:');
SELECT pgpoly.create_feature_view('pit_item', 'item_id', 'pit_item');
SELECT pgpoly.put_features('pit_item', '007', '{"price": 7}', '2024-01-01');
SELECT entity, event_time FROM pgpoly.pit_item_history;
SELECT spine->>'item_id' AS item_id, features
FROM pgpoly.get_historical_features(
  $$SELECT * FROM (VALUES ('007', '2024-02-01'::timestamptz), ('7', '2024-02-01'),
                          (' 7', '2024-02-01'), ('8', '2024-02-01')) s(item_id, event_time)$$,
  '{pit_item:price}');
SELECT spine->>'item_id' AS item_id, features
FROM pgpoly.get_historical_features(
  $$SELECT 7 AS item_id, '2024-02-01'::timestamptz AS event_time$$, '{pit_item:price}');
SELECT entity, features FROM pgpoly.get_online_features('pit_item', '{007,7}');
SELECT err($$SELECT * FROM pgpoly.get_historical_features('SELECT ''x'' AS item_id, now() AS event_time', '{pit_item:price}')$$);

--
-- A spine column named like an output column is an error (both functions)
--
SELECT err($$SELECT * FROM pgpoly.get_historical_features('SELECT user_id, event_time, 0 AS pit_user__clicks FROM pit_spine', '{pit_user:*}')$$);
SELECT err($$SELECT pgpoly.create_training_set('pit_clash', 'SELECT user_id, event_time, 0 AS pit_user__clicks FROM pit_spine', '{pit_user:clicks}')$$);
SELECT to_regclass('pit_clash') IS NULL AS not_created;
-- other names, and the same name for another view's feature, are fine
SELECT count(*) FROM pgpoly.get_historical_features(
  'SELECT user_id, event_time, 0 AS pit_user__other, 0 AS pit_item__clicks FROM pit_spine',
  '{pit_user:clicks}');
-- the missing-column error names what the spine returns
SELECT err($$SELECT * FROM pgpoly.get_historical_features('SELECT 1 AS id', '{pit_user:clicks}')$$);
-- spine columns named s and x (aliases of the spine's rows in the functions'
-- statements) are columns like any other: the spine returned whole
SELECT g.row_no, g.spine - 'event_time' AS spine, g.features
FROM pgpoly.get_historical_features(
  'SELECT id, user_id, event_time, 5 AS s, 6 AS x FROM pit_spine ORDER BY id LIMIT 2',
  '{pit_user:clicks}') g;
SELECT pgpoly.create_training_set('pit_sx',
  'SELECT id, user_id, event_time, 6 AS x FROM pit_spine ORDER BY id LIMIT 2', '{pit_user:clicks}');
SELECT id, user_id, x, pit_user__clicks FROM pit_sx ORDER BY id;
DROP TABLE pit_sx;

-- Clean up.
DELETE FROM pit_user;
DELETE FROM pit_forever;
DELETE FROM pit_item;
SELECT pgpoly.drop_feature_view(v, drop_tables => true)
FROM unnest('{pit_user,pit_forever,pit_forever2,pit_item}'::text[]) v;
DELETE FROM pgpoly.lineage_edges WHERE dst_name LIKE 'pit\_%' OR src_name LIKE 'pgpoly.pit\_%';
DELETE FROM pgpoly.datasets WHERE name LIKE 'pit\_%' OR name LIKE 'pgpoly.pit\_%';
DROP TABLE pit_spine, pit_want, pit_train_ny, pit_train_utc;
DROP FUNCTION err(text);
DROP SERVER fsp CASCADE;
