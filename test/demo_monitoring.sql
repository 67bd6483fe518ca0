-- demo_monitoring.sql: inference data and monitoring for a churn model.
--
-- A model trained on a training set is promoted; serving logs its predictions
-- with the features it saw; ground truth arrives later; drift between the
-- training set and the last hour of serving traffic shows what changed.  Then
-- the registry searched the MLflow way.  Run with psql in a database where
-- pgpoly is installed; everything happens in one transaction that is rolled
-- back at the end (the prediction partitions too), so the demo can be re-run.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset footer off
SET timezone = 'UTC';
SET client_min_messages = warning;
BEGIN;
\o /dev/null
SELECT setseed(0.7);
\o

\echo '== Monitoring 1. Training: a run reads version v1 of a training set and registers the model'
CREATE TABLE demo_mon_train AS
SELECT 'u' || g AS user_id,
       20 + (g * 7919) % 40 AS age,                                   -- 20..59, evenly spread
       CASE WHEN g % 4 = 0 THEN 'pro' ELSE 'free' END AS plan,
       round((random() * 30)::numeric, 1)::float8 AS sessions_7d,
       g % 5 = 0 AS churned
FROM generate_series(1, 5000) g;
\o /dev/null
SELECT pgpoly.register_dataset('demo_mon_train', 'postgres://demo_mon_train', version => 'v1');
\o
SELECT pgpoly.start_run('demo_mon', 'gbm-v1', params => '{"model": "gbm", "depth": "6"}') AS run1 \gset
SELECT pgpoly.start_run('demo_mon', 'logreg', params => '{"model": "logreg"}') AS run2 \gset
\o /dev/null
SELECT pgpoly.log_input(:'run1', 'demo_mon_train', 'v1');
SELECT pgpoly.log_input(:'run2', 'demo_mon_train');                   -- the newest: v1
SELECT pgpoly.log_metric(:'run1', 'auc', 0.81), pgpoly.log_metric(:'run2', 'auc', 0.74);
SELECT pgpoly.set_tag(:'run1', 'stage', 'prod'), pgpoly.set_tag(:'run2', 'stage', 'baseline');
SELECT pgpoly.end_run(:'run1'), pgpoly.end_run(:'run2');
SELECT pgpoly.register_model_version('demo_mon_churn', 's3://models/churn/logreg', run => :'run2');
SELECT pgpoly.register_model_version('demo_mon_churn', 's3://models/churn/gbm', run => :'run1');
SELECT pgpoly.set_model_alias('demo_mon_churn', 'champion', 2);
\o
\echo '-- runs of demo_mon with auc > 0.7 in production, best first (MLflow filter syntax)'
SELECT run_name, status, tags->>'stage' AS stage
FROM pgpoly.search_runs('demo_mon', 'metrics.auc > 0.7 AND tags.stage = ''prod''', 'metrics.auc DESC');
\echo '-- which dataset version each run read'
SELECT r.run_name, d.name AS dataset, d.version
FROM pgpoly.run_inputs i JOIN pgpoly.runs r USING (run_id) JOIN pgpoly.datasets d USING (dataset_id)
WHERE d.name = 'demo_mon_train' ORDER BY r.run_name;

\echo
\echo '== Monitoring 2. Serving: 3000 predictions logged in batches of JSON, model given as demo_mon_churn@champion'
-- traffic of the last three hours; in the last hour older users on the pro plan
-- arrive (a marketing campaign), which the model never saw in training
CREATE TEMP TABLE demo_mon_traffic AS
SELECT g, 'u' || (g % 4000) AS user_id,
       now() - (180 - g * 180.0 / 3000) * interval '1 minute' AS ts,
       CASE WHEN g > 2000 THEN 45 + g % 30 ELSE 20 + (g * 7919) % 40 END AS age,
       CASE WHEN g > 2000 AND g % 2 = 0 THEN 'pro' WHEN g % 4 = 0 THEN 'pro' ELSE 'free' END AS plan,
       round((random() * 30)::numeric, 1)::float8 AS sessions_7d
FROM generate_series(1, 3000) g;
SELECT sum(pgpoly.log_predictions(b.rows)) AS logged
FROM (SELECT jsonb_agg(jsonb_build_object(
             'model', 'demo_mon_churn@champion', 'entity', t.user_id, 'ts', t.ts,
             'features', jsonb_build_object('age', t.age, 'plan', t.plan, 'sessions_7d', t.sessions_7d),
             'prediction', jsonb_build_object('churn', (t.age + t.g) % 7 = 0),
             'confidence', 0.5 + ((t.g * 31) % 50) / 100.0,
             'latency_ms', 2 + (t.g % 13) * 0.5,
             'request_id', 'demo-req-' || t.g)) AS rows
      FROM demo_mon_traffic t GROUP BY t.g / 500) b;
SELECT model_name, version, count(*) AS predictions, round(avg(latency_ms)::numeric, 2) AS avg_latency_ms,
       min(ts)::timestamp(0) AS first, max(ts)::timestamp(0) AS last
FROM pgpoly.predictions WHERE model_name = 'demo_mon_churn' GROUP BY 1, 2;

\echo
\echo '== Monitoring 3. Ground truth arrives for some requests and joins on request_id'
\o /dev/null
SELECT pgpoly.log_label('demo-req-' || g, jsonb_build_object('churn', g % 9 = 0))
FROM generate_series(1, 3000, 3) g;
\o
SELECT version, count(*) AS labeled,
       round(avg(((prediction->>'churn')::bool = (label->>'churn')::bool)::int), 3) AS accuracy,
       round(avg(confidence)::numeric, 3) AS mean_confidence
FROM pgpoly.labeled_predictions WHERE model_name = 'demo_mon_churn' GROUP BY version;

\echo
\echo '== Monitoring 4. Drift: the training set against the last hour of serving traffic'
SELECT feature, round(psi::numeric, 4) AS psi, round(ks::numeric, 4) AS ks, status
FROM pgpoly.drift('demo_mon_train',
	$$SELECT (features->>'age')::int AS age, features->>'plan' AS plan,
	         (features->>'sessions_7d')::float8 AS sessions_7d
	  FROM pgpoly.predictions
	  WHERE model_name = 'demo_mon_churn' AND ts > now() - interval '1 hour'$$);
\echo '-- the hour before, for comparison: no drift'
SELECT feature, round(psi::numeric, 4) AS psi, status
FROM pgpoly.drift('demo_mon_train',
	$$SELECT (features->>'age')::int AS age, features->>'plan' AS plan,
	         (features->>'sessions_7d')::float8 AS sessions_7d
	  FROM pgpoly.predictions
	  WHERE model_name = 'demo_mon_churn'
	    AND ts BETWEEN now() - interval '2 hours' AND now() - interval '1 hour'$$);

ROLLBACK;
RESET client_min_messages;
\pset footer on
\set QUIET off
