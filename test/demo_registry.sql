-- demo_registry.sql: the model registry and lineage, for a churn model.
-- Run with psql in a database where pgpoly is installed.  Everything happens in
-- one transaction that is rolled back at the end, so the demo can be re-run.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset footer off
SET timezone = 'UTC';
BEGIN;
-- calls that only record something return void; their empty results are sent to
-- /dev/null between "\o /dev/null" and "\o"

\echo '== 1. Data: a raw table feeds a feature view, which feeds a training set'
\o /dev/null
SELECT pgpoly.register_dataset('demo_events', uri => 's3://lake/events/2024', store => 's3');
SELECT pgpoly.register_dataset('demo_train_churn', store => 'postgres', version => '2024-06');
SELECT pgpoly.add_lineage('dataset', 'demo_events', 'feature_view', 'demo_user_activity', 'materialized');
SELECT pgpoly.add_lineage('feature_view', 'demo_user_activity', 'dataset', 'demo_train_churn');
\o

\echo '== 2. Two training runs in experiment demo_churn, with params and metrics'
SELECT pgpoly.start_run('demo_churn', 'xgb-depth4', params => '{"max_depth": "4", "eta": "0.3"}') AS run_a \gset
SELECT pgpoly.start_run('demo_churn', 'xgb-depth8', params => '{"max_depth": "8", "eta": "0.1"}') AS run_b \gset
\o /dev/null
SELECT pgpoly.log_input(:'run_a', 'demo_train_churn');
SELECT pgpoly.log_input(:'run_b', 'demo_train_churn');
-- an auc curve per run: one value per epoch (step), fixed timestamps
SELECT pgpoly.log_metric(:'run_a', 'auc', 0.70 + 0.02 * s, s, '2024-06-01 10:00+00'::timestamptz + s * interval '1 min'),
       pgpoly.log_metric(:'run_b', 'auc', 0.68 + 0.03 * s, s, '2024-06-01 11:00+00'::timestamptz + s * interval '1 min')
FROM generate_series(0, 4) AS s;
SELECT pgpoly.log_param(:'run_b', 'seed', '7');
SELECT pgpoly.end_run(:'run_a');
SELECT pgpoly.end_run(:'run_b');
\o

SELECT r.run_name, r.status, r.params, round(m.value::numeric, 3) AS latest_auc, m.step
FROM pgpoly.runs r
JOIN pgpoly.experiments e USING (experiment_id)
JOIN pgpoly.latest_metrics m ON m.run_id = r.run_id AND m.key = 'auc'
WHERE e.name = 'demo_churn'
ORDER BY m.value DESC;

\echo '== 3. Register both models; the better one becomes champion'
SELECT pgpoly.register_model_version('demo_churn', 's3://models/churn/a', run => :'run_a') AS v_a,
       pgpoly.register_model_version('demo_churn', 's3://models/churn/b', run => :'run_b') AS v_b \gset
\o /dev/null
SELECT pgpoly.set_model_alias('demo_churn', 'champion', :v_a);
SELECT pgpoly.set_model_alias('demo_churn', 'champion', :v_b);	-- promotion
SELECT pgpoly.set_model_alias('demo_churn', 'challenger', :v_a);
\o
SELECT pgpoly.model_version_by_alias('demo_churn', 'champion') AS champion_version;

\echo '-- alias history (ranges are [set, moved))'
SELECT alias, version, upper_inf(valid) AS current
FROM pgpoly.model_alias_history
WHERE model_name = 'demo_churn'
ORDER BY alias, lower(valid);

\echo '-- BI view: each alias with its run and the run''s latest auc'
SELECT a.alias, a.version, r.run_name, v.source_uri, round(m.value::numeric, 3) AS auc
FROM pgpoly.model_aliases a
JOIN pgpoly.model_versions v USING (model_name, version)
JOIN pgpoly.runs r ON r.run_id = v.run_id
LEFT JOIN pgpoly.latest_metrics m ON m.run_id = v.run_id AND m.key = 'auc'
WHERE a.model_name = 'demo_churn'
ORDER BY a.alias;

\echo '== 4. Lineage: the champion is served by a scoring job into an Elasticsearch index'
\o /dev/null
SELECT pgpoly.add_lineage('model_version', 'demo_churn@' || :v_b, 'job', 'demo_nightly_scoring', 'deployed');
SELECT pgpoly.add_lineage('job', 'demo_nightly_scoring', 'es_index', 'demo_churn_scores', 'output');
\o

\echo '-- where do the scores in demo_churn_scores come from? (runs shown by name)'
SELECT l.depth, l.kind,
       coalesce((SELECT r.run_name FROM pgpoly.runs r WHERE l.kind = 'run' AND r.run_id::text = l.name), l.name) AS name,
       l.relation,
       coalesce((SELECT r.run_name FROM pgpoly.runs r WHERE l.parent_kind = 'run' AND r.run_id::text = l.parent_name), l.parent_name) AS reached_from
FROM pgpoly.lineage('es_index', 'demo_churn_scores', 'upstream') AS l
ORDER BY l.depth, l.kind, name;

\echo '-- what is affected if demo_events is bad? (downstream, 3 hops)'
SELECT depth, kind, name
FROM pgpoly.lineage('dataset', 'demo_events', direction => 'downstream', max_depth => 3)
WHERE kind <> 'run'
ORDER BY depth, kind, name;
SELECT count(*) AS affected_runs
FROM pgpoly.lineage('dataset', 'demo_events', direction => 'downstream', max_depth => 3)
WHERE kind = 'run';

ROLLBACK;
\pset footer on
\set QUIET off
