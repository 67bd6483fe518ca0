-- Time semantics of the feature store at the edges of the timestamptz range.
--
-- feature_freshness over a view whose newest offline event time is infinite
-- (a user's offline table, or one written through put_features): its age has
-- no interval (now() - 'infinity' is an ERROR, which made the whole view
-- fail, for every view) and is NULL; stale follows the serving rule.
\getenv redis_port REDIS_PORT
SET timezone = 'UTC';
CREATE SERVER fti FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER fti;
CREATE FOREIGN TABLE fti_a (user_id text OPTIONS (key 'true'), clicks int)
  SERVER fti OPTIONS (key_prefix 'regress_fti_a:');
CREATE FOREIGN TABLE fti_b (user_id text OPTIONS (key 'true'), clicks int)
  SERVER fti OPTIONS (key_prefix 'regress_fti_b:');
CREATE FOREIGN TABLE fti_c (user_id text OPTIONS (key 'true'), clicks int)
  SERVER fti OPTIONS (key_prefix 'regress_fti_c:');
SELECT pgpoly.create_feature_view('fti_a', 'user_id', 'fti_a', ttl => '1 day'),
       pgpoly.create_feature_view('fti_b', 'user_id', 'fti_b', ttl => '1 day'),
       pgpoly.create_feature_view('fti_c', 'user_id', 'fti_c');
-- a finite newest time in each (in one transaction: the same now()), then
-- one view's newest infinite
BEGIN;
SELECT pgpoly.put_features(v, 'u1', '{"clicks": 1}', now() - interval '1 hour')
FROM unnest('{fti_a,fti_b,fti_c}'::text[]) v;
-- the age of a finite newest time is still now() - newest_event_time
SELECT view_name, age = interval '1 hour' AS one_hour, stale
FROM pgpoly.feature_freshness WHERE view_name LIKE 'fti%' ORDER BY 1;
COMMIT;
SELECT pgpoly.put_features('fti_a', 'u2', '{"clicks": 2}', 'infinity');
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

DELETE FROM pgpoly.fti_a_serving;
DELETE FROM pgpoly.fti_b_serving;
DELETE FROM pgpoly.fti_c_serving;
SELECT pgpoly.drop_feature_view(v, drop_tables => true) FROM unnest('{fti_a,fti_b,fti_c}'::text[]) v;
DROP SERVER fti CASCADE;
RESET timezone;
