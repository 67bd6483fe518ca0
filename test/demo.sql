-- demo.sql: `make demo` — one SQL engine over an ML platform's stores.
--
-- Online features live in Redis, model metadata in native tables; one query
-- joins them.  Then the model registry and lineage, the feature store
-- (online Redis + offline history, point-in-time training sets), inference
-- monitoring (prediction log, labels, drift against the training set), vector
-- search over model embeddings in Chroma, and full-text search over model
-- cards in Elasticsearch, both joined to the registry.  Run by test/demo.sh
-- against throwaway servers (REDIS_PORT is in the environment).  Each EXPLAIN
-- is followed by its own query, echoed, and the query's result.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset footer off
-- wide plans (request bodies) are wrapped at 120 columns
\pset format wrapped
\pset columns 120
\getenv redis_port REDIS_PORT
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgpoly;

\echo
\echo '== Redis: online features as a foreign table'
CREATE SERVER demo_online FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port :'redis_port');
CREATE FOREIGN TABLE demo_user_stats (
    user_id   text OPTIONS (key 'true'),
    clicks_7d int,
    ctr       float8,
    _ttl      int
) SERVER demo_online OPTIONS (table_type 'hash', key_prefix 'demo:user_stats:', ttl_seconds '86400');

-- Writes are buffered in the transaction and sent at COMMIT in one MULTI/EXEC.
BEGIN;
INSERT INTO demo_user_stats (user_id, clicks_7d, ctr)
SELECT 'u' || i, (i * 37) % 101, round(((i * 13) % 17) / 100.0, 3)
FROM generate_series(1, 1000) i;
COMMIT;
\echo 'wrote 1000 user feature rows to Redis; a few of them:'
SELECT user_id, clicks_7d, ctr, _ttl FROM demo_user_stats
WHERE user_id IN ('u1', 'u2', 'u3') ORDER BY user_id;

\echo
\echo '== A native table of users, joined to Redis on the key (batched, pipelined lookups)'
CREATE TABLE demo_users (user_id text PRIMARY KEY, country text, plan text);
INSERT INTO demo_users
SELECT 'u' || i, (ARRAY['de', 'fr', 'us'])[1 + i % 3], CASE WHEN i % 5 = 0 THEN 'pro' ELSE 'free' END
FROM generate_series(1, 1200) i;
ANALYZE demo_users;
\echo '-- the plan of the query below: 1200 users, their hashes fetched in pipelined rounds'
EXPLAIN (COSTS OFF)
SELECT u.country, u.plan, count(s.user_id) AS users_with_features,
       round(avg(s.ctr)::numeric, 4) AS avg_ctr, sum(s.clicks_7d) AS clicks
FROM demo_users u LEFT JOIN demo_user_stats s USING (user_id)
GROUP BY 1, 2 ORDER BY 1, 2;
\set ECHO queries
SELECT u.country, u.plan, count(s.user_id) AS users_with_features,
       round(avg(s.ctr)::numeric, 4) AS avg_ctr, sum(s.clicks_7d) AS clicks
FROM demo_users u LEFT JOIN demo_user_stats s USING (user_id)
GROUP BY 1, 2 ORDER BY 1, 2;
\set ECHO none

\echo
\echo '== Read-your-writes and ROLLBACK: nothing reaches Redis until COMMIT'
BEGIN;
UPDATE demo_user_stats SET clicks_7d = 0 WHERE user_id = 'u1';
SELECT user_id, clicks_7d AS inside_transaction FROM demo_user_stats WHERE user_id = 'u1';
ROLLBACK;
SELECT user_id, clicks_7d AS after_rollback FROM demo_user_stats WHERE user_id = 'u1';

\echo
\echo '== Connections cached by this session'
SELECT server, store, target, requests, errors FROM pgpoly.connections();

\echo
\ir demo_registry.sql

\echo
\ir demo_features.sql

\echo
\ir demo_monitoring.sql

\echo
\ir demo_vector.sql

\echo
\echo '== Search: model cards in Elasticsearch, joined to the registry'
\set QUIET 1
\ir demo_elastic.sql

-- Clean up the Redis keys and objects this demo made.
\set QUIET 1
SET client_min_messages = warning;
DELETE FROM demo_user_stats;
DROP TABLE demo_users;
DROP SERVER demo_online CASCADE;
\echo
\echo 'demo complete'
