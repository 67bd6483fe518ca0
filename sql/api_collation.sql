--
-- The registry and monitoring API under a nondeterministic collation: a text
-- argument given COLLATE ac_ci (case-insensitive) names the object spelt
-- exactly so, as in the default collation.  Every pair of objects below
-- differs only in case; each call names one of them and must touch that one
-- only, and never fail on the collation (0A000 from a regular expression or
-- LIKE on the argument inside the function).
--
\getenv redis_port REDIS_PORT
\set VERBOSITY terse
\set SHOW_CONTEXT never
SET client_min_messages = warning;
SET timezone = 'UTC';
CREATE COLLATION ac_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);

--
-- Runs: start_run puts the run in the experiment spelt so; search_runs lists
-- that experiment's runs and compiles a filter in ac_ci.
--
SELECT pgpoly.start_run('ac_exp', 'lower1') IS NOT NULL AS started;
SELECT pgpoly.start_run('ac_exp', 'lower2', params => '{"lr": "a"}') IS NOT NULL AS started;
SELECT pgpoly.start_run('AC_EXP' COLLATE ac_ci, 'upper1', params => '{"lr": "A"}') AS run_u \gset
SELECT e.name AS experiment FROM pgpoly.runs r JOIN pgpoly.experiments e USING (experiment_id)
WHERE r.run_id = :'run_u';
SELECT run_name FROM pgpoly.search_runs('AC_EXP' COLLATE ac_ci) ORDER BY run_name COLLATE "C";
SELECT run_name FROM pgpoly.search_runs('ac_exp' COLLATE ac_ci) ORDER BY run_name COLLATE "C";
SELECT run_name FROM pgpoly.search_runs('ac_exp', 'params.lr = ''a''' COLLATE ac_ci,
										'attributes.run_name DESC' COLLATE ac_ci);

-- log_param: a value differing only in case is a different value (23505), not
-- a silent no-op
\set VERBOSITY sqlstate
SELECT pgpoly.log_param(:'run_u', 'lr', 'a' COLLATE ac_ci);
\set VERBOSITY terse
SELECT pgpoly.log_param(:'run_u', 'lr', 'A' COLLATE ac_ci);
SELECT params FROM pgpoly.runs WHERE run_id = :'run_u';

-- tags are JSON keys, compared as spelt already
SELECT pgpoly.set_tag(:'run_u', 'team', 'a' COLLATE ac_ci);
SELECT pgpoly.set_tag(:'run_u', 'TEAM' COLLATE ac_ci, 'b' COLLATE ac_ci);
\set VERBOSITY sqlstate
SELECT pgpoly.delete_tag(:'run_u', 'Team' COLLATE ac_ci);
\set VERBOSITY terse
SELECT pgpoly.delete_tag(:'run_u', 'TEAM' COLLATE ac_ci);
SELECT tags FROM pgpoly.runs WHERE run_id = :'run_u';

-- end_run and empty-name checks: a zero-width space is ignored by ac_ci but
-- is not a valid status, and a name of it alone is not empty
SELECT pgpoly.end_run(:'run_u', E'finished\u200b' COLLATE ac_ci);
SELECT pgpoly.end_run(:'run_u', 'killed' COLLATE ac_ci);
SELECT status FROM pgpoly.runs WHERE run_id = :'run_u';
SELECT pgpoly.register_dataset(E'\u200b' COLLATE ac_ci, 'uri:zw');
SELECT uri FROM pgpoly.datasets WHERE name = E'\u200b';
DELETE FROM pgpoly.datasets WHERE name = E'\u200b';

--
-- Datasets: register_dataset without a version updates the newest version of
-- the dataset spelt so; log_input records that dataset.
--
SELECT pgpoly.register_dataset('AC_DS', 'uri:upper');
SELECT pgpoly.register_dataset('ac_ds', 'uri:lower');
SELECT pgpoly.register_dataset('AC_DS' COLLATE ac_ci, 'uri:upper2');
SELECT pgpoly.register_dataset('ac_ds', 'uri:lower-v2', version => 'V2');
SELECT pgpoly.register_dataset('ac_ds' COLLATE ac_ci, 'uri:lower-v2b', version => 'v2' COLLATE ac_ci);
SELECT name, version, uri FROM pgpoly.datasets WHERE name ILIKE 'ac\_ds'
ORDER BY name COLLATE "C", version COLLATE "C";
SELECT pgpoly.log_input(:'run_u', 'AC_DS' COLLATE ac_ci);
SELECT pgpoly.log_input(:'run_u', 'ac_ds' COLLATE ac_ci, 'v2' COLLATE ac_ci);
SELECT d.name, d.version FROM pgpoly.run_inputs i JOIN pgpoly.datasets d USING (dataset_id)
WHERE i.run_id = :'run_u' ORDER BY d.name COLLATE "C", d.version COLLATE "C";

--
-- Models and aliases: ac_m and AC_M, aliases prod and Prod.
--
SELECT pgpoly.register_model_version('ac_m', 's3://m/1');
SELECT pgpoly.register_model_version('ac_m', 's3://m/2');
SELECT pgpoly.register_model_version('AC_M' COLLATE ac_ci, 's3://M/1');
SELECT pgpoly.set_model_alias('ac_m', 'prod', 1);
SELECT pgpoly.set_model_alias('ac_m', 'Prod' COLLATE ac_ci, 2);
SELECT pgpoly.set_model_alias('AC_M' COLLATE ac_ci, 'prod' COLLATE ac_ci, 1);
SELECT pgpoly.set_model_alias('AC_M' COLLATE ac_ci, 'prod', 2);	-- AC_M has no version 2
SELECT pgpoly.set_model_alias('ac_m', 'p@rod' COLLATE ac_ci, 1);	-- no '@' in an alias, whatever the collation
SELECT model_name, alias, version FROM pgpoly.model_aliases
WHERE model_name ILIKE 'ac\_m' ORDER BY model_name COLLATE "C", alias COLLATE "C";
SELECT pgpoly.model_version_by_alias('ac_m', 'prod' COLLATE ac_ci) AS prod,
	   pgpoly.model_version_by_alias('ac_m', 'Prod' COLLATE ac_ci) AS "Prod",
	   pgpoly.model_version_by_alias('AC_M' COLLATE ac_ci, 'prod') AS "AC_M prod";
SELECT pgpoly.model_version_by_alias('AC_M' COLLATE ac_ci, 'Prod');
SELECT pgpoly.delete_model_alias('ac_m', 'Prod' COLLATE ac_ci);
SELECT pgpoly.delete_model_alias('AC_M' COLLATE ac_ci, 'Prod' COLLATE ac_ci);
SELECT model_name, alias, version FROM pgpoly.model_aliases
WHERE model_name ILIKE 'ac\_m' ORDER BY model_name COLLATE "C", alias COLLATE "C";
SELECT model_name, alias, version, upper_inf(valid) AS open FROM pgpoly.model_alias_history
WHERE model_name ILIKE 'ac\_m'
ORDER BY model_name COLLATE "C", alias COLLATE "C", version;

--
-- Lineage: nodes differing in case are different nodes; model_version names
-- are parsed whatever the collation.
--
SELECT pgpoly.add_lineage('dataset', 'AC_DS' COLLATE ac_ci, 'dataset', 'ac_ds' COLLATE ac_ci);
SELECT pgpoly.add_lineage('dataset' COLLATE ac_ci, 'ac_ds', 'model_version' COLLATE ac_ci,
						  'AC_M@1' COLLATE ac_ci);
SELECT pgpoly.add_lineage('DATASET' COLLATE ac_ci, 'ac_ds', 'dataset', 'ac_other');
SELECT pgpoly.add_lineage('dataset', 'ac_ds', 'dataset', 'AC_DS' COLLATE ac_ci);	-- a cycle
SELECT src_kind, src_name, dst_kind, replace(dst_name, :'run_u', 'run_u') AS dst_name
FROM pgpoly.lineage_edges
WHERE src_name ILIKE 'ac\_%' OR dst_name ILIKE 'ac\_%'
ORDER BY src_name COLLATE "C", dst_kind, dst_name COLLATE "C";
SELECT depth, kind, replace(name, :'run_u', 'run_u') AS name
FROM pgpoly.lineage('dataset', 'AC_DS' COLLATE ac_ci, 'downstream' COLLATE ac_ci, 1);
SELECT depth, kind, name FROM pgpoly.lineage('model_version' COLLATE ac_ci, 'AC_M@1' COLLATE ac_ci);
SELECT depth, kind, name FROM pgpoly.lineage('dataset', 'Ac_Ds' COLLATE ac_ci);

--
-- Predictions and labels: the model (and alias) and request id spelt so.
--
SELECT pgpoly.log_prediction('ac_m@prod' COLLATE ac_ci, NULL, 'e1' COLLATE ac_ci, '{"p": 1}',
							 request_id => 'ac_r' COLLATE ac_ci) IS NOT NULL AS logged;
SELECT pgpoly.log_prediction('AC_M' COLLATE ac_ci, 1, 'E1' COLLATE ac_ci, '{"p": 2}',
							 request_id => 'AC_R' COLLATE ac_ci) IS NOT NULL AS logged;
SELECT pgpoly.log_prediction('AC_M@Prod' COLLATE ac_ci, NULL, 'e2', '{"p": 3}');
SELECT model_name, version, entity, request_id FROM pgpoly.predictions
WHERE model_name ILIKE 'ac\_m' ORDER BY request_id COLLATE "C";
SELECT pgpoly.log_label('ac_r', '"lower"');
SELECT pgpoly.log_label('AC_R' COLLATE ac_ci, '"upper"');
SELECT pgpoly.log_label('Ac_R' COLLATE ac_ci, '"mixed"');
SELECT request_id, label FROM pgpoly.prediction_labels WHERE request_id ILIKE 'ac\_r' ORDER BY request_id COLLATE "C";

--
-- drift: relation names and queries, features spelt so.
--
CREATE TABLE ac_ref AS SELECT g % 3 AS v, 'c' || g % 2 AS "V" FROM generate_series(1, 30) g;
SELECT feature, psi, status FROM pgpoly.drift('ac_ref' COLLATE ac_ci,
	'SELECT * FROM ac_ref' COLLATE ac_ci, ARRAY['V', 'v'] COLLATE ac_ci);
SELECT feature, psi FROM pgpoly.drift('ac_ref', 'ac_ref', ARRAY['X'] COLLATE ac_ci);
ALTER TABLE ac_ref DROP COLUMN "V";
SELECT feature, psi FROM pgpoly.drift('ac_ref', 'ac_ref', ARRAY['V'] COLLATE ac_ci);

--
-- Syncs (C functions: the name is a query parameter, compared as spelt).
--
CREATE SERVER ac_redis FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port :'redis_port');
CREATE FOREIGN TABLE ac_t1 (id text OPTIONS (key 'true'), v text)
  SERVER ac_redis OPTIONS (table_type 'hash', key_prefix 'regress_ac:1:');
CREATE FOREIGN TABLE ac_t2 (id text OPTIONS (key 'true'), v text)
  SERVER ac_redis OPTIONS (table_type 'hash', key_prefix 'regress_ac:2:');
CREATE TABLE ac_s1 (id int PRIMARY KEY, v text);
CREATE TABLE ac_s2 (id int PRIMARY KEY, v text);
SELECT pgpoly.create_sync('ac_s', 'ac_s1', 'ac_t1', backfill => false);
SELECT pgpoly.create_sync('AC_S' COLLATE ac_ci, 'ac_s2', 'ac_t2', backfill => false);
SELECT pgpoly.create_sync('Ac_s' COLLATE ac_ci, 'ac_s2', 'ac_t1', backfill => false);
SELECT pgpoly.sync_wait('ac_s' COLLATE ac_ci), pgpoly.sync_wait('AC_S' COLLATE ac_ci);
SELECT pgpoly.sync_retry('Ac_S' COLLATE ac_ci);
SELECT pgpoly.drop_sync('AC_S' COLLATE ac_ci);
SELECT name FROM pgpoly.sync_status WHERE name ILIKE 'ac\_s%' ORDER BY name COLLATE "C";
SELECT pgpoly.drop_sync('ac_s' COLLATE ac_ci);
SELECT pgpoly.drop_sync('Ac_s' COLLATE ac_ci);
DROP TABLE ac_s1, ac_s2;

--
-- Feature views: create_feature_view takes the name and the entity column
-- spelt so (ac_fv and AC_FV are two views; the offline entity column is "Eid",
-- not "eid").
--
CREATE FOREIGN TABLE ac_fv_on (id text OPTIONS (key 'true'), clicks int, _event_time timestamptz)
  SERVER ac_redis OPTIONS (table_type 'hash', key_prefix 'regress_ac:fv:');
CREATE TABLE ac_fv_off (eid text, "Eid" text NOT NULL, event_time timestamptz NOT NULL,
						created_at timestamptz NOT NULL DEFAULT now(), clicks int);
SELECT pgpoly.create_feature_view('ac_fv', 'user_id', 'ac_fv_on');
SELECT pgpoly.create_feature_view('AC_FV' COLLATE ac_ci, 'Eid' COLLATE ac_ci, 'ac_fv_on', 'ac_fv_off');
SELECT pgpoly.create_feature_view('ac_fv' COLLATE ac_ci, 'Eid', 'ac_fv_on', 'ac_fv_off');
SELECT view_name, entity_column FROM pgpoly._feature_view_storage
WHERE view_name ILIKE 'ac\_fv' ORDER BY view_name COLLATE "C";
INSERT INTO ac_fv_off (eid, "Eid", event_time, clicks) VALUES ('x', 'U1', '2026-01-01', 7);
SELECT pgpoly.materialize('AC_FV' COLLATE ac_ci);
SELECT feature, count FROM pgpoly.feature_stats('AC_FV' COLLATE ac_ci);
SELECT entity, features FROM pgpoly.get_online_features('AC_FV' COLLATE ac_ci,
	ARRAY['U1', 'u1'] COLLATE ac_ci, ARRAY['clicks'] COLLATE ac_ci);
SELECT pgpoly.put_features('AC_FV' COLLATE ac_ci, 'u1' COLLATE ac_ci, '{"clicks": 8}');
SELECT entity, features FROM pgpoly.get_online_features('AC_FV', ARRAY['U1', 'u1']);
DELETE FROM ac_fv_on;
SELECT pgpoly.drop_feature_view('AC_FV' COLLATE ac_ci);
SELECT pgpoly.drop_feature_view('ac_fv' COLLATE ac_ci, drop_tables => true);
DROP TABLE ac_fv_off;
SELECT name FROM pgpoly.datasets WHERE name ILIKE '%ac\_fv%' ORDER BY name COLLATE "C";
DROP SERVER ac_redis CASCADE;

--
-- Clean up
--
DELETE FROM pgpoly.prediction_labels WHERE request_id ILIKE 'ac\_r';
DELETE FROM pgpoly.predictions WHERE model_name ILIKE 'ac\_m';
DELETE FROM pgpoly.lineage_edges WHERE src_name ILIKE 'ac\_%' OR src_name ILIKE '%.ac\_fv%'
	OR dst_name ILIKE 'ac\_%'
	OR src_name = :'run_u' OR dst_name = :'run_u';
DELETE FROM pgpoly.registered_models WHERE name ILIKE 'ac\_m';
DELETE FROM pgpoly.runs WHERE experiment_id IN
	(SELECT experiment_id FROM pgpoly.experiments WHERE name ILIKE 'ac\_exp');
DELETE FROM pgpoly.experiments WHERE name ILIKE 'ac\_exp';
DELETE FROM pgpoly.datasets WHERE name ILIKE 'ac\_ds' OR name ILIKE '%ac\_fv%';
DROP TABLE ac_ref;
DROP COLLATION ac_ci;
