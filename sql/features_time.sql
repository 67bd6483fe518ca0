-- Time semantics of the feature store at the edges of the timestamptz range.
--
-- feature_freshness over a view whose newest offline event time is infinite
-- (written into the offline table by the user): its age has
-- no interval (now() - 'infinity' is an ERROR, which made the whole view
-- fail, for every view) and is NULL; stale follows the serving rule.
\getenv redis_port REDIS_PORT
SET timezone = 'UTC';
CREATE SERVER fti FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER fti;
-- fti_view(name, ttl): a feature view over a new online table of its name
CREATE FUNCTION fti_view(name text, ttl interval) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('CREATE FOREIGN TABLE %I (user_id text OPTIONS (key ''true''), clicks int) '
				   'SERVER fti OPTIONS (key_prefix %L)', name, 'regress_' || name || ':');
	PERFORM pgpoly.create_feature_view(name, 'user_id', name::regclass, ttl => ttl);
END $$;
SELECT fti_view('fti_a', '1 day'), fti_view('fti_b', '1 day'), fti_view('fti_c', NULL);
-- a finite newest time in each (in one transaction: the same now()), then
-- one view's newest infinite
BEGIN;
SELECT pgpoly.put_features(v, 'u1', '{"clicks": 1}', now() - interval '1 hour')
FROM unnest('{fti_a,fti_b,fti_c}'::text[]) v;
-- the age of a finite newest time is still now() - newest_event_time
SELECT view_name, age = interval '1 hour' AS one_hour, stale
FROM pgpoly.feature_freshness WHERE view_name LIKE 'fti%' ORDER BY 1;
COMMIT;
INSERT INTO pgpoly.fti_a_history (entity, event_time, created_at, clicks)
VALUES ('u2', 'infinity', clock_timestamp(), 2);
INSERT INTO pgpoly.fti_c_history (entity, event_time, created_at, clicks)
VALUES ('u3', 'infinity', clock_timestamp(), 3);
SELECT view_name, newest_event_time = 'infinity' AS infinite, age IS NULL AS no_age,
       age >= interval '1 hour' AS hour_old, ttl, stale
FROM pgpoly.feature_freshness WHERE view_name LIKE 'fti%' ORDER BY 1;
-- '-infinity' as the only event time: older than any ttl
TRUNCATE pgpoly.fti_b_history;
INSERT INTO pgpoly.fti_b_history (entity, event_time, created_at, clicks)
VALUES ('u4', '-infinity', clock_timestamp(), 4);
SELECT view_name, newest_event_time, age, stale
FROM pgpoly.feature_freshness WHERE view_name = 'fti_b';

-- A ttl reaching back past the first timestamptz (4714-11-24 BC): '10000
-- years', '1000000 years' (the absolute span did not fit an interval), or
-- a '1 day' ttl at a spine time of 4714 BC.  now() - ttl and event_time -
-- ttl failed with "timestamp out of range" in every function of the view
-- (put_features too) and in feature_freshness for every view; every event
-- time is now within such a ttl.
SELECT fti_view('fti_long', '10000 years'), fti_view('fti_huge', '1000000 years'),
       fti_view('fti_day', '1 day');
SELECT pgpoly.put_features(v, 'u1', '{"clicks": 1}', t)
FROM unnest('{fti_long,fti_huge,fti_day}'::text[]) v,
     unnest('{4714-11-24 00:00:00+00 BC,1000-01-01 00:00+00,2020-01-01 00:00+00}'::timestamptz[]) t;
SELECT view_name, newest_event_time, stale FROM pgpoly.feature_freshness
WHERE view_name IN ('fti_long', 'fti_huge', 'fti_day') ORDER BY 1;
-- the online value (2020) is fresh under the long ttls; u2 is unknown
SELECT v, o.entity, o.features, o.event_time, o.source
FROM unnest('{fti_long,fti_huge,fti_day}'::text[]) v,
     pgpoly.get_online_features(v, '{u1,u2}') o ORDER BY 1, 2;
-- the point-in-time join against the same join written natively: event_time
-- <= spine time and (as an instant difference, in seconds) not more than
-- ttl older
CREATE TABLE fti_spine (user_id text, event_time timestamptz);
INSERT INTO fti_spine VALUES ('u1', '4714-11-24 12:00:00+00 BC'), ('u1', '4714-11-25 12:00:00+00 BC'),
  ('u1', '1000-01-01 00:00+00'), ('u1', '2020-06-01 00:00+00'), ('u1', 'infinity'), ('u1', '-infinity');
SELECT s.event_time,
       h.features->>'fti_long__clicks' IS NOT NULL AS long_found,
       h.features->>'fti_huge__clicks' IS NOT NULL AS huge_found,
       h.features->>'fti_day__clicks' IS NOT NULL AS day_found,
       h.features = (SELECT jsonb_object_agg(v || '__clicks',
                       (SELECT x.clicks FROM (SELECT * FROM pgpoly.fti_long_history WHERE v = 'fti_long'
                                               UNION ALL SELECT * FROM pgpoly.fti_huge_history WHERE v = 'fti_huge'
                                               UNION ALL SELECT * FROM pgpoly.fti_day_history WHERE v = 'fti_day') x
                        WHERE x.entity = s.user_id AND x.event_time <= s.event_time
                          AND CASE WHEN isfinite(s.event_time)
                                   THEN extract(epoch FROM s.event_time) - extract(epoch FROM x.event_time)
                                        <= extract(epoch FROM (SELECT f.ttl FROM pgpoly.feature_views f WHERE f.name = v))
                                   -- an infinite time minus any ttl is itself
                                   ELSE x.event_time >= s.event_time END
                        ORDER BY x.event_time DESC LIMIT 1))
                     FROM unnest('{fti_long,fti_huge,fti_day}'::text[]) v) AS same_as_native
FROM pgpoly.get_historical_features('SELECT user_id, event_time FROM fti_spine',
                                    '{fti_long:clicks,fti_huge:clicks,fti_day:clicks}') h
CROSS JOIN LATERAL (SELECT (h.spine->>'user_id') AS user_id, (h.spine->>'event_time')::timestamptz AS event_time) s
ORDER BY h.row_no;
SELECT pgpoly.create_training_set('fti_ts', 'SELECT user_id, event_time FROM fti_spine',
                                  '{fti_long:clicks,fti_day:clicks}');
SELECT event_time, fti_long__clicks IS NOT NULL AS long_found, fti_day__clicks IS NOT NULL AS day_found
FROM fti_ts ORDER BY event_time;
DROP TABLE fti_ts, fti_spine;
DELETE FROM pgpoly.fti_long_serving;
DELETE FROM pgpoly.fti_huge_serving;
DELETE FROM pgpoly.fti_day_serving;
SELECT pgpoly.drop_feature_view(v, drop_tables => true) FROM unnest('{fti_long,fti_huge,fti_day}'::text[]) v;
DELETE FROM pgpoly.lineage_edges WHERE dst_name = 'fti_ts' OR src_name LIKE 'pgpoly.fti%';
DELETE FROM pgpoly.datasets WHERE name = 'fti_ts';

-- put_features and ingest_features refuse an infinite event time (22023),
-- writing nothing: online, 'infinity' was newer than every later write of
-- the entity, which never reached Redis again (silently).
CREATE FUNCTION err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
SELECT err($$SELECT pgpoly.put_features('fti_a', 'u5', '{"clicks": 5}', 'infinity')$$) AS put_inf,
       err($$SELECT pgpoly.put_features('fti_a', 'u5', '{"clicks": 5}', '-infinity')$$) AS put_minus_inf,
       err($$SELECT pgpoly.ingest_features('fti_a', 'SELECT user_id, event_time, 5 AS clicks FROM
              (VALUES (''u5'', timestamptz ''2024-01-01 00:00+00''), (''u6'', ''infinity'')) v(user_id, event_time)')$$)
         AS ingest_inf;
SELECT (SELECT count(*) FROM pgpoly.fti_a_history WHERE entity IN ('u5', 'u6')) AS offline,
       (SELECT count(*) FROM pgpoly.fti_a_serving WHERE user_id IN ('u5', 'u6')) AS online;
-- a finite time still wins over what is online, at the edges of the range
SELECT pgpoly.put_features('fti_a', 'u5', '{"clicks": 5}', '4714-11-24 00:00:00+00 BC'),
       pgpoly.put_features('fti_a', 'u5', '{"clicks": 6}', '294276-12-31 23:59:59.999999+00'),
       pgpoly.put_features('fti_a', 'u5', '{"clicks": 7}', '294276-12-31 23:59:59.999998+00');
SELECT user_id, clicks, _event_time FROM pgpoly.fti_a_serving WHERE user_id = 'u5';

DELETE FROM pgpoly.fti_a_serving;
DELETE FROM pgpoly.fti_b_serving;
DELETE FROM pgpoly.fti_c_serving;
SELECT pgpoly.drop_feature_view(v, drop_tables => true) FROM unnest('{fti_a,fti_b,fti_c}'::text[]) v;
DROP SERVER fti CASCADE;
DROP FUNCTION fti_view(text, interval), err(text);
RESET timezone;
