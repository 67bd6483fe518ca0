--
-- Registry additions: tags, search_runs (MLflow filter grammar), dataset versions
-- and the inputs of runs, content hashes.
--
\set VERBOSITY terse
\set SHOW_CONTEXT never
SET client_min_messages = warning;
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';

-- The public contract: argument names and result types.
SELECT p.proname, pg_get_function_arguments(p.oid) AS arguments,
       pg_get_function_result(p.oid) AS result
FROM pg_proc p
WHERE p.pronamespace = 'pgpoly'::regnamespace
  AND p.proname IN ('set_tag', 'delete_tag', 'search_runs', 'log_input', 'register_dataset')
ORDER BY p.proname;

-- The SQLSTATE and message of a statement ('ok' if none).
CREATE FUNCTION rs_err(cmd text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE cmd;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
-- Run names found by a search, in result order.
CREATE FUNCTION rs(filter text, order_by text DEFAULT NULL, max_results int DEFAULT 100)
RETURNS text LANGUAGE sql AS $$
	SELECT coalesce(string_agg(s.run_name, ' ' ORDER BY s.ordinality), '(none)')
	FROM pgpoly.search_runs('rs_exp', filter, order_by, max_results) WITH ORDINALITY s
$$;

--
-- Runs with params, tags and metrics; start times fixed so that orders are stable.
--
SELECT pgpoly.start_run('rs_exp', 'rf_small', params => '{"model": "rf", "trees": "10"}',
                        tags => '{"team": "growth"}') AS r1 \gset
SELECT pgpoly.start_run('rs_exp', 'rf_big', params => '{"model": "rf", "trees": "500"}',
                        tags => '{"team": "growth", "my tag": "x"}') AS r2 \gset
SELECT pgpoly.start_run('rs_exp', 'xgb', params => '{"model": "xgb"}',
                        tags => '{"team": "risk"}') AS r3 \gset
SELECT pgpoly.start_run('rs_exp', 'linear', params => '{"model": "Linear''s"}') AS r4 \gset
SELECT pgpoly.start_run('rs_other', 'elsewhere', params => '{"model": "rf"}') AS r5 \gset
UPDATE pgpoly.runs SET start_time = '2024-06-01 10:00+00'::timestamptz + x.n * interval '1 hour'
FROM (VALUES (:'r1'::uuid, 1), (:'r2'::uuid, 2), (:'r3'::uuid, 3), (:'r4'::uuid, 4), (:'r5'::uuid, 5)) x(id, n)
WHERE run_id = x.id;
SELECT pgpoly.log_metric(:'r1', 'rmse', 0.50, 1), pgpoly.log_metric(:'r1', 'rmse', 0.40, 2),
       pgpoly.log_metric(:'r2', 'rmse', 0.30, 1), pgpoly.log_metric(:'r3', 'rmse', 0.45, 1),
       pgpoly.log_metric(:'r3', 'f1-score', 0.9), pgpoly.log_metric(:'r5', 'rmse', 0.1);
SELECT pgpoly.end_run(:'r1'), pgpoly.end_run(:'r2', 'FAILED'), pgpoly.end_run(:'r3');
UPDATE pgpoly.runs SET end_time = start_time + interval '30 min' WHERE run_id IN (:'r1', :'r2', :'r3');

--
-- Tags: set, overwrite, delete
--
SELECT pgpoly.set_tag(:'r4', 'team', 'growth');
SELECT pgpoly.set_tag(run => :'r4', key => 'stage', value => 'draft');
SELECT pgpoly.set_tag(:'r4', 'stage', 'reviewed');			-- tags can change
SELECT pgpoly.set_tag(:'r4', 'tmp', '1');
SELECT pgpoly.delete_tag(:'r4', 'tmp');
SELECT tags FROM pgpoly.runs WHERE run_id = :'r4';
\set VERBOSITY default
SELECT pgpoly.set_tag('00000000-0000-0000-0000-000000000000', 'team', 'x');
SELECT pgpoly.set_tag(:'r4', '', 'x');
SELECT pgpoly.set_tag(:'r4', 'team', NULL);
\set VERBOSITY terse
SELECT replace(rs_err(format('SELECT pgpoly.delete_tag(%L, %L)', :'r4', 'tmp')), :'r4', '<r4>') AS no_such_tag;

--
-- search_runs: each comparison kind (latest metric values), default order newest first
--
SELECT rs(NULL) AS all_runs, rs('   ') AS blank;
SELECT rs('metrics.rmse < 0.45') AS lt, rs('metrics.rmse <= 0.45') AS le,
       rs('metrics.rmse > 0.4') AS gt, rs('metrics.rmse >= 0.4') AS ge,
       rs('metrics.rmse = 0.3') AS eq, rs('metrics.rmse != 0.3') AS ne;
-- latest value (step 2: 0.40), not the best or the first
SELECT rs('metrics.rmse = 0.5') AS first_value, rs('metric.rmse = 4e-1') AS latest;
SELECT rs('params.model = ''rf''') AS sq, rs('params.model = "rf"') AS dq,
       rs('params.model != ''rf''') AS ne, rs('param.model LIKE ''r%''') AS "like",
       rs('parameters.model ILIKE ''R%''') AS ilike, rs('params.model = ''Linear''''s''') AS quote;
SELECT rs('params.model IN (''xgb'', "rf")') AS "in", rs('params.model NOT IN (''xgb'')') AS not_in,
       rs('params.trees = ''10''') AS trees;
SELECT rs('tags.team = ''growth''') AS team, rs('tags.`my tag` = ''x''') AS backquoted,
       rs('tags."my tag" = ''x''') AS dquoted, rs('tags.team != ''growth''') AS other_team;
SELECT rs('metrics.`f1-score` > 0.5') AS f1, rs('metrics."f1-score" > 0.5') AS f1_dq;
SELECT rs('attributes.status = ''FINISHED''') AS finished, rs('attribute.status != ''RUNNING''') AS ended,
       rs('attr.run_name LIKE ''rf%''') AS rf_names, rs('run.run_id = ''' || :'r3' || '''') AS by_id;
-- MLflow: an identifier without a prefix is an attribute, and created / Created
-- stand for start_time, `run name` / `Run name` / `Run Name` for run_name; each
-- form must give the answer of the prefixed one
SELECT replace(f.a, :'r3', '<r3>') AS filter, replace(f.b, :'r3', '<r3>') AS same_as,
       rs(f.a) AS runs, rs(f.a) = rs(f.b) AS same
FROM (VALUES ('status = ''FINISHED''', 'attributes.status = ''FINISHED'''),
             ('run_name LIKE ''rf%'' AND status != ''RUNNING''',
              'attributes.run_name LIKE ''rf%'' AND attributes.status != ''RUNNING'''),
             ('run_id = ''' || :'r3' || '''', 'attributes.run_id = ''' || :'r3' || ''''),
             ('start_time < ''2024-06-01 12:30+00''', 'attributes.start_time < ''2024-06-01 12:30+00'''),
             ('end_time > 0', 'attributes.end_time > 0'),
             ('created > 1717236000000', 'attributes.start_time > 1717236000000'),
             ('attributes.Created < ''2024-06-01 12:30+00''', 'attributes.start_time < ''2024-06-01 12:30+00'''),
             ('attributes.`Run name` = ''xgb''', 'attributes.run_name = ''xgb'''),
             ('attr."run name" IN (''xgb'', ''linear'')', 'attributes.run_name IN (''xgb'', ''linear'')'))
     AS f(a, b);
SELECT o.a AS order_by, rs(NULL, o.a) AS runs, rs(NULL, o.a) = rs(NULL, o.b) AS same
FROM (VALUES ('start_time ASC', 'attributes.start_time ASC'), ('created', 'attributes.start_time'),
             ('run_name DESC, status', 'attributes.run_name DESC, attributes.status'),
             ('attributes.`Run Name`', 'attributes.run_name')) AS o(a, b);
-- times: epoch milliseconds (MLflow) or a timestamp string
SELECT rs('attributes.start_time >= ' || (extract(epoch FROM timestamptz '2024-06-01 13:00+00') * 1000)::bigint)
       AS since_13h_ms,
       rs('attributes.start_time < ''2024-06-01 12:30+00''') AS before_1230,
       rs('attributes.end_time > 0') AS ended_ms;
-- AND, keywords in any case, a run missing the key never matches
SELECT rs('metrics.rmse < 0.5 and params.model = ''rf'' AND tags.team = ''growth''') AS all3,
       rs('params.trees != ''10''') AS missing_param_no_match;

-- order_by: metrics (runs without the metric last, either direction), params,
-- attributes, several clauses; max_results
SELECT rs(NULL, 'metrics.rmse') AS rmse_asc, rs(NULL, 'metrics.rmse DESC') AS rmse_desc,
       rs(NULL, 'params.model desc') AS model_desc, rs(NULL, 'attributes.start_time ASC') AS oldest,
       rs(NULL, 'tags.team ASC, metrics.rmse DESC') AS two_keys, rs(NULL, 'metrics.rmse', 2) AS top2;

-- search_runs returns pgpoly.runs rows
SELECT run_name, status, params, tags
FROM pgpoly.search_runs(experiment => 'rs_exp', filter => 'params.model = ''rf''',
                        order_by => 'metrics.rmse ASC', max_results => 1);

-- No user text reaches SQL: hostile keys and values are only data.
SELECT rs('params.model = ''rf''''; DROP TABLE pgpoly.runs; --''') AS value_with_sql,
       rs('params.`model'') IS NOT NULL OR (''1` = ''x''') AS key_with_sql,
       rs('tags."team"" OR true --" = ''x''') AS dq_key_with_sql;
SELECT count(*) AS runs_still_there FROM pgpoly.runs WHERE run_id = :'r1';

-- Errors: 22023 with the position and what was expected; unknown experiment 42704.
SELECT f.filter, rs_err(format('SELECT rs(%L)', f.filter)) AS error
FROM (VALUES ('metrics.rmse < ''x'''), ('metrics.rmse LIKE ''x'''), ('params.model > ''a'''),
             ('params.model = 1'), ('metrics.rmse << 1'), ('metrics.rmse < 1 OR params.model = ''rf'''),
             ('metrics.rmse < 1 AND'), ('metrics.rmse'), ('rmse < 1'), ('foo.x = ''1'''),
             ('params.model = ''rf'), ('params.model = "rf'), ('tags.`team = ''x'''),
             ('metrics.`` = 1'), ('metrics. rmse = 1'), ('attributes.owner = ''me'''),
             ('attributes.start_time = ''yesterday-ish'''), ('attributes.start_time LIKE ''2024%'''),
             ('params.model IN ''rf'''), ('params.model IN (''rf'' ''xgb'')'), ('params.model IN (1)'),
             ('params.model NOT ''rf'''), ('metrics.rmse < 1e999'), ('params.model = ''rf'' ;'),
             ('metrics.rmse < 0.5 params.model = ''rf''')) AS f(filter);
-- A LIKE pattern ending in a lone escape character (backslash) is malformed
-- whatever the data: no run's value may decide whether it is an error.
SELECT p.filter, rs_err(format('SELECT rs(%L)', p.filter)) AS error
FROM (VALUES ('params.model LIKE ''r\'''), ('params.model LIKE ''zz\'''),
             ('params.nokey ILIKE ''x\'''), ('attributes.run_id LIKE ''\'''),
             ('tags.team LIKE ''g\\\'''), ('params.model LIKE ''rf\\''')) AS p(filter);
SELECT o.order_by, rs_err(format('SELECT rs(NULL, %L)', o.order_by)) AS error
FROM (VALUES ('metrics.rmse sideways'), ('metrics.rmse DESC,'), ('rmse'), ('attributes.nope'),
             ('metrics.rmse, , params.model')) AS o(order_by);
\set VERBOSITY default
SELECT * FROM pgpoly.search_runs('rs_exp', 'metrics.rmse < 0.5 or params.model = ''rf''');
SELECT * FROM pgpoly.search_runs('rs_nope');
SELECT * FROM pgpoly.search_runs(NULL);
SELECT * FROM pgpoly.search_runs('rs_exp', max_results => 0);
SELECT * FROM pgpoly.search_runs('rs_exp', max_results => NULL);
\set VERBOSITY terse

--
-- Datasets are versioned: a new version keeps the old ones
--
SELECT pgpoly.register_dataset('rs_train', 's3://lake/train/v1', 's3', version => 'v1');
SELECT pgpoly.register_dataset('rs_train', 's3://lake/train/v2', 's3', version => 'v2');
SELECT pgpoly.register_dataset('rs_train', store => 's3', version => 'v1');	-- known version: NULL uri kept
SELECT pgpoly.register_dataset('rs_train', uri => 's3://lake/train/v2-moved', store => 's3');	-- no version: the newest
SELECT pgpoly.register_dataset('rs_plain');
SELECT pgpoly.register_dataset('rs_plain', 'file:///tmp/plain');			-- updates its unversioned entry
SELECT name, version, uri, store FROM pgpoly.datasets WHERE name LIKE 'rs\_%' ORDER BY name, dataset_id;

-- log_input records the version used: NULL means the newest; an unknown version
-- or dataset is registered on the fly; the old two-argument form still works.
SELECT pgpoly.log_input(:'r1', 'rs_train');
SELECT pgpoly.log_input(:'r2', 'rs_train', 'v1');
SELECT pgpoly.log_input(run => :'r3', dataset => 'rs_train', version => 'v3');
SELECT pgpoly.log_input(:'r3', 'rs_new_data');
SELECT pgpoly.log_input(:'r3', 'rs_new_data');				-- again: no-op
SELECT r.run_name, d.name, d.version
FROM pgpoly.run_inputs i JOIN pgpoly.runs r USING (run_id) JOIN pgpoly.datasets d USING (dataset_id)
WHERE r.experiment_id = (SELECT experiment_id FROM pgpoly.experiments WHERE name = 'rs_exp')
ORDER BY r.run_name, d.name, d.version;
-- the lineage edge dataset -> run is recorded as before
SELECT count(*) AS input_edges FROM pgpoly.lineage_edges
WHERE src_name IN ('rs_train', 'rs_new_data') AND relation = 'input';
\set VERBOSITY default
SELECT pgpoly.register_dataset('rs_train', version => '');
SELECT pgpoly.log_input(:'r1', 'rs_train', '');
SELECT pgpoly.log_input(:'r1', NULL);
SELECT pgpoly.log_input('00000000-0000-0000-0000-000000000000', 'rs_train', 'v1');
\set VERBOSITY terse
-- the unique (name, version) rule, NULL versions included, also holds for direct DML
INSERT INTO pgpoly.datasets (name) VALUES ('rs_plain');

-- Content hashes: independent of row order, sensitive to any change of values,
-- duplicates, columns; types without a hash function (json) use their text forms.
CREATE TABLE rs_t1 AS SELECT g AS id, g * 0.5 AS x, 'v' || g AS s FROM generate_series(1, 100) g;
CREATE TABLE rs_t2 AS SELECT * FROM rs_t1 ORDER BY id DESC;
CREATE TABLE rs_t3 AS SELECT id, CASE WHEN id = 50 THEN x + 1 ELSE x END AS x, s FROM rs_t1;
CREATE TABLE rs_t4 AS SELECT * FROM rs_t1 UNION ALL SELECT * FROM rs_t1 WHERE id = 1;
CREATE TABLE rs_t5 AS SELECT id AS ident, x, s FROM rs_t1;
CREATE TABLE rs_t6 AS SELECT id, x, s, '{"a": 1}'::json AS j FROM rs_t1;
SELECT pgpoly._dataset_content_hash('rs_t1') = pgpoly._dataset_content_hash('rs_t2') AS order_free,
       pgpoly._dataset_content_hash('rs_t1') <> pgpoly._dataset_content_hash('rs_t3') AS value_changed,
       pgpoly._dataset_content_hash('rs_t1') <> pgpoly._dataset_content_hash('rs_t4') AS duplicate_row,
       pgpoly._dataset_content_hash('rs_t1') <> pgpoly._dataset_content_hash('rs_t5') AS renamed_column,
       split_part(pgpoly._dataset_content_hash('rs_t1'), ':', 1) AS method,
       split_part(pgpoly._dataset_content_hash('rs_t6'), ':', 1) AS method_json,
       length(split_part(pgpoly._dataset_content_hash('rs_t1'), ':', 2)) AS hex_digits;
-- the same hash in another session setting
SELECT pgpoly._dataset_content_hash('rs_t6') AS h6 \gset
SET timezone = 'America/New_York';
SET extra_float_digits = -3;
SELECT pgpoly._dataset_content_hash('rs_t6') = :'h6' AS settings_independent;
RESET timezone;
RESET extra_float_digits;

-- Writers need INSERT on run_inputs (README's role pattern).
CREATE ROLE regress_rs_writer NOLOGIN;
GRANT USAGE ON SCHEMA pgpoly TO regress_rs_writer;
GRANT SELECT ON ALL TABLES IN SCHEMA pgpoly TO regress_rs_writer;
GRANT INSERT, UPDATE ON pgpoly.datasets, pgpoly.lineage_edges, pgpoly.runs TO regress_rs_writer;
SET ROLE regress_rs_writer;
SELECT rs_err(format('SELECT pgpoly.log_input(%L, %L)', :'r4', 'rs_train')) AS without_run_inputs;
SELECT pgpoly.set_tag(:'r4', 'by', 'writer');
RESET ROLE;
GRANT INSERT ON pgpoly.run_inputs TO regress_rs_writer;
SET ROLE regress_rs_writer;
SELECT pgpoly.log_input(:'r4', 'rs_train');
RESET ROLE;

-- Clean up
DELETE FROM pgpoly.lineage_edges WHERE src_name LIKE 'rs\_%';
DELETE FROM pgpoly.runs WHERE experiment_id IN
	(SELECT experiment_id FROM pgpoly.experiments WHERE name LIKE 'rs\_%');
DELETE FROM pgpoly.experiments WHERE name LIKE 'rs\_%';
DELETE FROM pgpoly.datasets WHERE name LIKE 'rs\_%';
DROP TABLE rs_t1, rs_t2, rs_t3, rs_t4, rs_t5, rs_t6;
DROP FUNCTION rs(text, text, int);
DROP FUNCTION rs_err(text);
DROP OWNED BY regress_rs_writer;
DROP ROLE regress_rs_writer;
