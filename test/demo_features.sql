-- demo_features.sql: the feature store, end to end, for a churn model.
-- Run with psql after `\getenv redis_port REDIS_PORT` (test/demo.sql does it) in a
-- database where pgpoly is installed.  Everything it creates is removed at the end,
-- including its Redis keys (prefix demo_fs:), so it can be re-run.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset footer off
SET timezone = 'UTC';

\echo '== 1. A feature view: Redis hash table online, history table offline'
CREATE SERVER demo_fs_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER demo_fs_redis;
CREATE FOREIGN TABLE demo_user_activity (
    user_id    text OPTIONS (key 'true'),
    logins_7d  int,
    spend_30d  numeric(10,2),
    plan       text
) SERVER demo_fs_redis OPTIONS (key_prefix 'demo_fs:user:');
\o /dev/null
SELECT pgpoly.create_feature_view('demo_user_activity', entity => 'user_id',
                                  online_table => 'demo_user_activity', ttl => '7 days');
\o
SELECT name, entity, online_table, offline_table, ttl FROM pgpoly.feature_views
WHERE name = 'demo_user_activity';

\echo '== 2. Features put: each put appends history and updates Redis (newest wins)'
\o /dev/null
SELECT pgpoly.put_features('demo_user_activity', u, f::jsonb, now() - age::interval)
FROM (VALUES
    ('alice', '{"logins_7d": 3,  "spend_30d": 20.00, "plan": "free"}', '20 days'),
    ('alice', '{"logins_7d": 9,  "spend_30d": 49.90, "plan": "pro"}',  '10 days'),
    ('alice', '{"logins_7d": 12, "spend_30d": 59.90, "plan": "pro"}',  '1 day'),
    ('bob',   '{"logins_7d": 5,  "spend_30d": 0,     "plan": "free"}', '15 days'),
    ('bob',   '{"logins_7d": 0,  "spend_30d": 0,     "plan": "free"}', '9 days'),
    ('carol', '{"logins_7d": 7,  "spend_30d": 15.00, "plan": "basic"}','2 hours'),
    -- a late event for carol: recorded offline, Redis keeps the newer value
    ('carol', '{"logins_7d": 1,  "spend_30d": 5.00,  "plan": "basic"}','3 days')
) AS v(u, f, age);
\o
SELECT entity, event_time::date, logins_7d, spend_30d, plan
FROM pgpoly.demo_user_activity_history ORDER BY entity, event_time;

\echo '== 3. Served online: one pipelined Redis round; stale or missing users fall back'
-- dave has no data; bob's newest value (9 days) is older than the 7-day ttl
SELECT entity, features, event_time::date, source
FROM pgpoly.get_online_features('demo_user_activity', '{carol,alice,bob,dave}');

\echo '== 4. A training set, point in time: each label sees only what was known then'
CREATE TEMP TABLE demo_labels (user_id text, event_time timestamptz, churned bool);
INSERT INTO demo_labels VALUES
    ('alice', now() - interval '15 days', false),   -- the 20-day-old row (free plan)
    ('alice', now(),                      false),   -- sees yesterday's row
    ('bob',   now() - interval '9 days',  true),    -- sees the row of that instant
    ('bob',   now(),                      true),    -- 9 days old > ttl: NULL
    ('carol', now() - interval '25 days', false);   -- before any data: NULL
\o /dev/null
SELECT pgpoly.create_training_set('demo_churn_train',
    'SELECT user_id, event_time, churned FROM demo_labels', '{demo_user_activity:*}');
\o
SELECT user_id, event_time::date, churned, demo_user_activity__logins_7d AS logins_7d,
       demo_user_activity__spend_30d AS spend_30d, demo_user_activity__plan AS plan
FROM demo_churn_train;

\echo '== 5. Its lineage: training set <- feature view <- offline history'
SELECT depth, kind, name, relation FROM pgpoly.lineage('dataset', 'demo_churn_train');

\echo '== 6. Freshness, and materialize after Redis lost its keys'
SELECT view_name, newest_event_time::date, ttl, stale FROM pgpoly.feature_freshness
WHERE view_name = 'demo_user_activity';
DELETE FROM demo_user_activity;
SELECT pgpoly.materialize('demo_user_activity') AS keys_written;
SELECT user_id, logins_7d, plan FROM demo_user_activity ORDER BY 1;

-- clean up
\o /dev/null
SET client_min_messages = warning;
DELETE FROM demo_user_activity;
SELECT pgpoly.drop_feature_view('demo_user_activity', drop_tables => true);
DELETE FROM pgpoly.lineage_edges
WHERE dst_name = 'demo_churn_train' OR dst_name = 'demo_user_activity';
DELETE FROM pgpoly.datasets
WHERE name IN ('demo_churn_train', 'pgpoly.demo_user_activity_history');
DROP TABLE demo_churn_train, demo_labels;
DROP SERVER demo_fs_redis CASCADE;
RESET client_min_messages;
\o
