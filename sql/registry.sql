--
-- Native ML metadata: runs, params, metrics, model registry, aliases, lineage.
-- Run ids are random: the test captures them with \gset and prints run names.
--
\set VERBOSITY terse
\set SHOW_CONTEXT never
SET client_min_messages = warning;
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';

-- The public contract: argument names and result columns ORMs rely on.
SELECT p.proname, pg_get_function_arguments(p.oid) AS arguments,
       pg_get_function_result(p.oid) AS result
FROM pg_proc p
WHERE p.pronamespace = 'pgpoly'::regnamespace
  AND p.proname IN ('start_run', 'log_param', 'log_metric', 'log_input', 'end_run',
                    'register_model_version', 'set_model_alias', 'delete_model_alias',
                    'model_version_by_alias', 'register_dataset', 'add_lineage', 'lineage')
ORDER BY p.proname;

-- No table or view of the registry grants anything to anyone but its owner
-- (PUBLIC included).
SELECT c.relname,
       (SELECT count(*) FROM aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
        WHERE a.grantee <> c.relowner) AS grants_to_others
FROM pg_class c
WHERE c.relnamespace = 'pgpoly'::regnamespace
  AND c.relname IN ('experiments', 'runs', 'metrics', 'latest_metrics', 'registered_models',
                    'model_versions', 'model_aliases', 'model_alias_slots',
                    'model_alias_history', 'datasets', 'feature_views', 'lineage_edges')
ORDER BY c.relname;

-- Show a lineage node by a stable name: runs by their run_name.
CREATE FUNCTION reg_node(kind text, name text) RETURNS text LANGUAGE sql AS $$
	SELECT CASE WHEN kind = 'run'
	            THEN 'run:' || coalesce((SELECT r.run_name FROM pgpoly.runs r
	                                     WHERE r.run_id::text = name), name)
	            ELSE kind || ':' || name END
$$;
CREATE FUNCTION reg_lineage(kind text, name text, direction text DEFAULT 'upstream',
                            max_depth int DEFAULT 20)
RETURNS TABLE(depth int, node text, relation text, parent text) LANGUAGE sql AS $$
	SELECT l.depth, reg_node(l.kind, l.name), l.relation, reg_node(l.parent_kind, l.parent_name)
	FROM pgpoly.lineage(kind, name, direction, max_depth) AS l
	ORDER BY 1, 2
$$;
-- The SQLSTATE a statement raises ('ok' if none).
CREATE FUNCTION reg_sqlstate(cmd text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE cmd;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END
$$;

--
-- Run lifecycle
--
SELECT pgpoly.start_run('reg_churn', 'baseline', params => '{"lr": "0.1", "depth": 6}',
                        tags => '{"team": "growth"}') AS run1 \gset
SELECT e.name AS experiment, r.run_name, r.status, r.end_time IS NULL AS open,
       r.params, r.tags
FROM pgpoly.runs r JOIN pgpoly.experiments e USING (experiment_id)
WHERE r.run_id = :'run1';
-- a second run reuses the experiment; named arguments in any order
SELECT pgpoly.start_run(run_name => 'tuned', experiment => 'reg_churn') AS run2 \gset
SELECT pgpoly.start_run('reg_churn', 'crashed') AS run3 \gset
SELECT pgpoly.start_run('reg_churn', 'stopped') AS run4 \gset
SELECT count(*) AS experiments FROM pgpoly.experiments WHERE name = 'reg_churn';
SELECT pgpoly.end_run(:'run1');
SELECT pgpoly.end_run(:'run3', 'failed');		-- case-insensitive
SELECT pgpoly.end_run(run => :'run4', status => 'KILLED');
SELECT r.run_name, r.status, r.end_time >= r.start_time AS ended
FROM pgpoly.runs r JOIN pgpoly.experiments e USING (experiment_id)
WHERE e.name = 'reg_churn' ORDER BY r.run_name;
-- ending again changes the status, not the first end_time
SELECT end_time AS run3_end FROM pgpoly.runs WHERE run_id = :'run3' \gset
SELECT pgpoly.end_run(:'run3', 'FINISHED');
SELECT status, end_time = :'run3_end' AS same_end FROM pgpoly.runs WHERE run_id = :'run3';
SELECT pgpoly.end_run(:'run3', 'FAILED');

--
-- Params are write-once and kept in runs.params
--
SELECT pgpoly.log_param(:'run2', 'lr', '0.05');
SELECT pgpoly.log_param(:'run2', 'lr', '0.05');			-- same value: no-op
SELECT pgpoly.log_param(run => :'run2', key => 'optimizer', value => 'adam');
SELECT pgpoly.log_param(:'run1', 'depth', '6');			-- given to start_run as a number
SELECT params FROM pgpoly.runs WHERE run_id IN (:'run1', :'run2') ORDER BY run_name;

--
-- Metrics: full history; latest_metrics = highest step, ties to latest ts
--
SELECT pgpoly.log_metric(:'run1', 'loss', v, s, '2024-01-01 00:00+00'::timestamptz + s * interval '1 min')
FROM (VALUES (0, 0.9), (1, 0.5), (2, 0.3)) AS t(s, v);
-- a late write of an earlier step does not become "latest"
SELECT pgpoly.log_metric(:'run1', 'loss', 0.8, 1, '2024-01-02 00:00+00');
-- same step twice: the later timestamp wins, whatever the insertion order
SELECT pgpoly.log_metric(:'run1', 'auc', 0.71, 5, '2024-01-01 10:00+00');
SELECT pgpoly.log_metric(:'run1', 'auc', 0.74, 5, '2024-01-01 09:00+00');
SELECT pgpoly.log_metric(:'run2', 'auc', 0.83, 7, '2024-01-01 10:00+00');
SELECT pgpoly.log_metric(run => :'run2', key => 'auc', value => 0.81, step => 3);
SELECT pgpoly.log_metric(:'run3', 'auc', 'NaN', ts => '2024-01-01 12:00+00');
SELECT pgpoly.log_metric(:'run3', 'epochs', 12);
SELECT r.run_name, m.key, m.step, m.value, m.ts
FROM pgpoly.metrics m JOIN pgpoly.runs r USING (run_id)
WHERE r.run_id IN (:'run1', :'run2') AND m.key IN ('loss', 'auc') AND m.ts < '2025-01-01'
ORDER BY r.run_name, m.key, m.step, m.ts;
SELECT r.run_name, l.key, l.step, l.value, l.ts
FROM pgpoly.latest_metrics l JOIN pgpoly.runs r USING (run_id)
WHERE r.run_id IN (:'run1', :'run2', :'run3') AND l.key IN ('loss', 'auc')
ORDER BY r.run_name, l.key;
-- default step is 0, default ts is now()
SELECT step, ts BETWEEN now() - interval '10 min' AND now() AS ts_recent
FROM pgpoly.metrics WHERE run_id = :'run3' AND key = 'epochs';

--
-- Model versions: 1, 2, 3 ... per model; linked to runs
--
SELECT pgpoly.register_model_version('reg_churn_model', 's3://models/churn/1', :'run1');
SELECT pgpoly.register_model_version('reg_churn_model', 's3://models/churn/2', :'run2',
                                     tags => '{"framework": "xgboost"}');
SELECT pgpoly.register_model_version(model => 'reg_fraud_model', source_uri => 's3://models/fraud/1');
-- a rolled-back registration leaves no gap
BEGIN;
SELECT pgpoly.register_model_version('reg_churn_model', 's3://models/churn/tmp');
ROLLBACK;
SELECT pgpoly.register_model_version('reg_churn_model', 's3://models/churn/3');
SELECT v.model_name, v.version, r.run_name, v.source_uri, v.tags
FROM pgpoly.model_versions v LEFT JOIN pgpoly.runs r USING (run_id)
WHERE v.model_name LIKE 'reg\_%' ORDER BY v.model_name, v.version;

--
-- Aliases and their history
--
SELECT pgpoly.set_model_alias('reg_churn_model', 'champion', 1);
SELECT pgpoly.set_model_alias('reg_churn_model', 'challenger', 2);
SELECT pgpoly.model_version_by_alias('reg_churn_model', 'champion');
-- promote the challenger; moving champion closes its old range
SELECT pgpoly.set_model_alias('reg_churn_model', 'champion', 2);
SELECT pgpoly.set_model_alias('reg_churn_model', 'champion', 2);	-- no-op: no new history
SELECT pgpoly.delete_model_alias('reg_churn_model', 'challenger');
SELECT pgpoly.set_model_alias(model => 'reg_churn_model', alias => 'challenger', version => 3);
SELECT pgpoly.set_model_alias('reg_fraud_model', 'champion', 1);
SELECT model_name, alias, version FROM pgpoly.model_aliases
WHERE model_name LIKE 'reg\_%' ORDER BY model_name, alias;
SELECT pgpoly.model_version_by_alias('reg_churn_model', 'champion') AS champion,
       pgpoly.model_version_by_alias(model => 'reg_churn_model', alias => 'challenger') AS challenger;
-- history: each range starts where the previous one of the same alias ended (or
-- later, after a delete); only current assignments are open
SELECT h.alias, h.version, upper_inf(h.valid) AS current,
       lower(h.valid) = lag(upper(h.valid)) OVER w AS contiguous,
       lower(h.valid) >= lag(upper(h.valid)) OVER w AS after_previous
FROM pgpoly.model_alias_history h
WHERE h.model_name = 'reg_churn_model'
WINDOW w AS (PARTITION BY h.alias ORDER BY lower(h.valid))
ORDER BY h.alias, lower(h.valid);
-- the alias in force at a past instant
SELECT h.version AS champion_when_challenger_was_set
FROM pgpoly.model_alias_history h
WHERE h.model_name = 'reg_churn_model' AND h.alias = 'champion'
  AND h.valid @> (SELECT min(lower(valid)) FROM pgpoly.model_alias_history
                  WHERE model_name = 'reg_churn_model' AND alias = 'challenger');
-- the no-overlap rule is a real constraint, also against direct writes
INSERT INTO pgpoly.model_alias_history (model_name, alias, version, valid, alias_slot)
SELECT model_name, alias, 1, tstzrange('2000-01-01', NULL), alias_slot
FROM pgpoly.model_alias_history
WHERE model_name = 'reg_churn_model' AND alias = 'champion' AND upper_inf(valid);

--
-- Error paths: a clear message and SQLSTATE, never a raw constraint violation
--
\set VERBOSITY default
-- unknown run
SELECT pgpoly.log_param('00000000-0000-0000-0000-000000000000', 'lr', '1');
SELECT pgpoly.log_metric('00000000-0000-0000-0000-000000000000', 'auc', 1);
SELECT pgpoly.log_input('00000000-0000-0000-0000-000000000000', 'reg_ds');
SELECT pgpoly.end_run('00000000-0000-0000-0000-000000000000');
SELECT pgpoly.register_model_version('reg_churn_model', 's3://x', '00000000-0000-0000-0000-000000000000');
-- a param logged again with a different value (a run with a fixed id, for the message)
INSERT INTO pgpoly.runs (run_id, experiment_id, run_name, params)
SELECT '11111111-2222-3333-4444-555555555555', experiment_id, 'fixed_id', '{"lr": "0.05"}'
FROM pgpoly.experiments WHERE name = 'reg_churn';
SELECT pgpoly.log_param('11111111-2222-3333-4444-555555555555', 'lr', '0.5');
-- bad status
SELECT pgpoly.end_run(:'run2', 'DONE');
SELECT pgpoly.end_run(:'run2', 'RUNNING');
-- alias to a missing version, unknown model, unknown alias
SELECT pgpoly.set_model_alias('reg_churn_model', 'champion', 42);
SELECT pgpoly.set_model_alias('reg_no_such_model', 'champion', 1);
SELECT pgpoly.model_version_by_alias('reg_churn_model', 'staging');
SELECT pgpoly.model_version_by_alias('reg_no_such_model', 'champion');
SELECT pgpoly.delete_model_alias('reg_churn_model', 'staging');
-- an alias with '@' could not be named by 'model@alias' (log_prediction splits at
-- the last '@': 'reg_churn_model@ab@test' is model "reg_churn_model@ab", alias "test")
SELECT pgpoly.set_model_alias('reg_churn_model', 'ab@test', 1);
SELECT count(*) AS no_alias_with_at FROM pgpoly.model_aliases WHERE alias LIKE '%@%';
-- missing or malformed arguments
SELECT pgpoly.start_run(NULL);
SELECT pgpoly.start_run('');
SELECT pgpoly.start_run('reg_churn', params => '["lr"]');
SELECT pgpoly.log_param(:'run2', 'seed', NULL);
SELECT pgpoly.log_metric(:'run2', 'auc', NULL);
SELECT pgpoly.register_model_version('reg_churn_model', NULL);
-- bad lineage kind, direction, depth; unknown nodes
SELECT pgpoly.add_lineage('table', 'reg_a', 'dataset', 'reg_b');
SELECT pgpoly.add_lineage('run', 'not-a-uuid', 'dataset', 'reg_b');
SELECT pgpoly.add_lineage('run', '00000000-0000-0000-0000-000000000000', 'dataset', 'reg_b');
SELECT pgpoly.add_lineage('dataset', 'reg_b', 'model_version', 'reg_churn_model');
SELECT pgpoly.add_lineage('dataset', 'reg_b', 'model_version', 'reg_churn_model@9');
SELECT pgpoly.add_lineage('job', 'reg_x', 'job', 'reg_x');
SELECT * FROM pgpoly.lineage('dataset', 'reg_b', 'sideways');
SELECT * FROM pgpoly.lineage('dataset', 'reg_b', max_depth => -1);
SELECT * FROM pgpoly.lineage('table', 'reg_b');
SELECT * FROM pgpoly.lineage('job', 'reg_never_seen');
SELECT * FROM pgpoly.lineage('dataset', 'reg_never_seen', 'downstream');
\set VERBOSITY terse
-- the SQLSTATE of each error class
SELECT c.cmd, reg_sqlstate(c.cmd) AS sqlstate
FROM (VALUES
	('SELECT pgpoly.log_metric(''00000000-0000-0000-0000-000000000000'', ''auc'', 1)'),
	('SELECT pgpoly.set_model_alias(''reg_churn_model'', ''champion'', 42)'),
	('SELECT pgpoly.set_model_alias(''reg_no_such_model'', ''champion'', 1)'),
	('SELECT pgpoly.set_model_alias(''reg_churn_model'', ''ab@test'', 1)'),
	('SELECT pgpoly.model_version_by_alias(''reg_churn_model'', ''staging'')'),
	('SELECT pgpoly.delete_model_alias(''reg_churn_model'', ''staging'')'),
	('SELECT pgpoly.lineage(''job'', ''reg_never_seen'')'),
	('SELECT pgpoly.log_param(''11111111-2222-3333-4444-555555555555'', ''lr'', ''0.5'')'),
	('SELECT pgpoly.end_run(''11111111-2222-3333-4444-555555555555'', ''DONE'')'),
	('SELECT pgpoly.add_lineage(''table'', ''a'', ''job'', ''b'')'),
	('SELECT pgpoly.lineage(''job'', ''reg_a'', ''sideways'')'),
	('SELECT pgpoly.lineage(''job'', ''reg_a'', max_depth => -1)'),
	('SELECT pgpoly.start_run(NULL)'),
	('SELECT pgpoly.log_param(''11111111-2222-3333-4444-555555555555'', ''lr'', ''0.05'')')
) AS c(cmd);
-- nothing was written by the failed calls
SELECT params FROM pgpoly.runs WHERE run_id = :'run2';
SELECT count(*) AS churn_versions FROM pgpoly.model_versions WHERE model_name = 'reg_churn_model';
SELECT count(*) AS edges_to_reg_b FROM pgpoly.lineage_edges WHERE dst_name = 'reg_b' OR src_name = 'reg_b';

--
-- Lineage: raw data -> feature view -> training set -> runs -> model versions,
-- and a deployment job that reads the champion and writes an ES index.
--
SELECT pgpoly.register_dataset('reg_events', 's3://raw/events', 's3');
SELECT pgpoly.register_dataset('reg_users', store => 'postgres', version => 'v7');
SELECT pgpoly.register_dataset('reg_users', uri => 'postgres://crm/users');	-- update keeps version
SELECT name, uri, store, version FROM pgpoly.datasets WHERE name LIKE 'reg\_%' ORDER BY name;
SELECT pgpoly.add_lineage('dataset', 'reg_events', 'feature_view', 'reg_user_activity', 'materialized');
SELECT pgpoly.add_lineage('dataset', 'reg_users', 'feature_view', 'reg_user_activity', 'materialized');
SELECT pgpoly.add_lineage('feature_view', 'reg_user_activity', 'dataset', 'reg_train_2024');
SELECT pgpoly.add_lineage('feature_view', 'reg_user_activity', 'dataset', 'reg_train_2024');	-- again: no-op
SELECT pgpoly.log_input(:'run1', 'reg_train_2024');
SELECT pgpoly.log_input(:'run2', 'reg_train_2024');
SELECT pgpoly.log_input(run => :'run2', dataset => 'reg_holdout');		-- registered on the fly
SELECT pgpoly.add_lineage('model_version', 'reg_churn_model@2', 'job', 'reg_deploy', 'deployed');
SELECT pgpoly.add_lineage(src_kind => 'job', src_name => 'reg_deploy',
                          dst_kind => 'es_index', dst_name => 'reg_churn_scores', relation => 'output');
SELECT name, store FROM pgpoly.datasets WHERE name = 'reg_holdout';
-- edges recorded automatically by log_input and register_model_version
SELECT reg_node(src_kind, src_name) AS src, relation, reg_node(dst_kind, dst_name) AS dst
FROM pgpoly.lineage_edges
WHERE relation IN ('input', 'output') AND (src_name LIKE 'reg\_%' OR dst_name LIKE 'reg\_%')
ORDER BY 1, 3;
-- upstream (the default) of the index: every ancestor once, at its minimal depth
SELECT * FROM reg_lineage('es_index', 'reg_churn_scores');
-- max_depth
SELECT * FROM reg_lineage('es_index', 'reg_churn_scores', max_depth => 2);
SELECT count(*) FROM pgpoly.lineage('es_index', 'reg_churn_scores', max_depth => 0);
-- a registered dataset without edges has no lineage (not an error)
SELECT pgpoly.register_dataset('reg_lonely');
SELECT count(*) FROM pgpoly.lineage('dataset', 'reg_lonely', 'both');
-- downstream of a raw dataset
SELECT * FROM reg_lineage('dataset', 'reg_users', 'downstream');
-- both directions of the training set
SELECT * FROM reg_lineage('dataset', 'reg_train_2024', 'both');
-- named arguments, direction is case-insensitive, run nodes by run_id
SELECT depth, kind, name = :'run1' AS is_run1, relation
FROM pgpoly.lineage(kind => 'model_version', name => 'reg_churn_model@1',
                    direction => 'UPSTREAM', max_depth => 1);

-- Cycles terminate, each node is reported once
SELECT pgpoly.add_lineage('job', 'reg_a', 'job', 'reg_b');
SELECT pgpoly.add_lineage('job', 'reg_b', 'job', 'reg_c');
SELECT pgpoly.add_lineage('job', 'reg_c', 'job', 'reg_a');
SELECT pgpoly.add_lineage('job', 'reg_c', 'dataset', 'reg_out');
SELECT * FROM reg_lineage('job', 'reg_a', 'downstream');
SELECT * FROM reg_lineage('job', 'reg_a', 'upstream', 1000000);
SELECT * FROM reg_lineage('job', 'reg_b', 'both');

-- Deep graphs: a 16400-edge chain.  Depth is bounded at 16383 levels: asking for
-- more is an ERROR once the walk reaches the bound (and fine while it does not).
INSERT INTO pgpoly.lineage_edges (src_kind, src_name, dst_kind, dst_name)
SELECT 'job', 'reg_chain_' || i, 'job', 'reg_chain_' || (i + 1) FROM generate_series(1, 16400) i;
-- statistics of the chain: an autoanalyze that ran while the table was empty
-- (earlier tests add and remove edges) would plan each level as a full scan
ANALYZE pgpoly.lineage_edges;
SELECT count(*), max(depth), min(name) FILTER (WHERE depth = 16383) AS deepest
FROM pgpoly.lineage('job', 'reg_chain_16401', max_depth => 16383);
SELECT count(*), max(depth) FROM pgpoly.lineage('job', 'reg_chain_100', max_depth => 20000);
SELECT count(*) FROM pgpoly.lineage('job', 'reg_chain_16401', max_depth => 16384);

--
-- A BI query: each model's champion, with its run and the run's latest auc
--
SELECT a.model_name, a.version AS champion, r.run_name, round(l.value::numeric, 2) AS auc
FROM pgpoly.model_aliases a
JOIN pgpoly.model_versions v USING (model_name, version)
LEFT JOIN pgpoly.runs r ON r.run_id = v.run_id
LEFT JOIN pgpoly.latest_metrics l ON l.run_id = v.run_id AND l.key = 'auc'
WHERE a.alias = 'champion' AND a.model_name LIKE 'reg\_%'
ORDER BY a.model_name;
-- the best run of the experiment by latest auc
SELECT r.run_name, l.value AS auc
FROM pgpoly.runs r
JOIN pgpoly.experiments e USING (experiment_id)
JOIN pgpoly.latest_metrics l ON l.run_id = r.run_id AND l.key = 'auc'
WHERE e.name = 'reg_churn' AND l.value <> 'NaN'
ORDER BY l.value DESC LIMIT 1;

--
-- The reader/writer role pattern documented in the README
--
CREATE ROLE regress_pgpoly_reader NOLOGIN;
CREATE ROLE regress_pgpoly_writer NOLOGIN IN ROLE regress_pgpoly_reader;
GRANT USAGE ON SCHEMA pgpoly TO regress_pgpoly_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA pgpoly TO regress_pgpoly_reader;
GRANT INSERT, UPDATE ON pgpoly.experiments, pgpoly.runs, pgpoly.metrics,
      pgpoly.registered_models, pgpoly.model_versions, pgpoly.model_aliases,
      pgpoly.model_alias_slots, pgpoly.model_alias_history, pgpoly.datasets,
      pgpoly.run_inputs, pgpoly.lineage_edges TO regress_pgpoly_writer;
GRANT DELETE ON pgpoly.model_aliases, pgpoly.model_alias_history TO regress_pgpoly_writer;
SET ROLE regress_pgpoly_writer;
SELECT pgpoly.start_run('reg_roles', 'by_writer') AS run5 \gset
SELECT pgpoly.log_param(:'run5', 'lr', '0.2');
SELECT pgpoly.log_metric(:'run5', 'auc', 0.9, 1);
SELECT pgpoly.log_input(:'run5', 'reg_train_2024');
SELECT pgpoly.end_run(:'run5');
SELECT pgpoly.register_model_version('reg_roles_model', 's3://models/roles/1', :'run5');
SELECT pgpoly.set_model_alias('reg_roles_model', 'champion', 1);
SELECT pgpoly.delete_model_alias('reg_roles_model', 'champion');
RESET ROLE;
SET ROLE regress_pgpoly_reader;
SELECT count(*) FROM pgpoly.latest_metrics WHERE run_id = :'run5';
SELECT count(*) FROM pgpoly.lineage('run', :'run5', 'both');
SELECT pgpoly.start_run('reg_roles', 'by_reader');
SELECT pgpoly.log_metric(:'run5', 'auc', 0.1, 2);
RESET ROLE;

--
-- Clean up
--
DELETE FROM pgpoly.lineage_edges e
WHERE e.src_name LIKE 'reg\_%' OR e.dst_name LIKE 'reg\_%'
   OR e.src_name IN (SELECT r.run_id::text FROM pgpoly.runs r JOIN pgpoly.experiments x
                     USING (experiment_id) WHERE x.name LIKE 'reg\_%');
DELETE FROM pgpoly.registered_models WHERE name LIKE 'reg\_%';
DELETE FROM pgpoly.runs WHERE experiment_id IN
	(SELECT experiment_id FROM pgpoly.experiments WHERE name LIKE 'reg\_%');
DELETE FROM pgpoly.experiments WHERE name LIKE 'reg\_%';
DELETE FROM pgpoly.datasets WHERE name LIKE 'reg\_%';
DROP FUNCTION reg_lineage(text, text, text, int);
DROP FUNCTION reg_node(text, text);
DROP FUNCTION reg_sqlstate(text);
DROP OWNED BY regress_pgpoly_reader, regress_pgpoly_writer;
DROP ROLE regress_pgpoly_writer;
DROP ROLE regress_pgpoly_reader;
