--
-- Re-creating a training set (or re-running get_historical_features with a
-- dataset) never rewrites what earlier runs consumed: new content is a new
-- version of the dataset, identical content reuses the newest one, and
-- run_inputs keep pointing at the content hash each run logged.
--
\getenv redis_port REDIS_PORT
\set VERBOSITY terse
\set SHOW_CONTEXT never
SET client_min_messages = warning;
CREATE SERVER dv_srv FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER dv_srv;
CREATE FOREIGN TABLE dv_users (user_id text OPTIONS (key 'true'), clicks int)
  SERVER dv_srv OPTIONS (key_prefix 'regress_dv:user:');
SELECT pgpoly.create_feature_view('dv_users', 'user_id', 'dv_users');
SELECT pgpoly.put_features('dv_users', u, jsonb_build_object('clicks', c), '2024-01-01 00:00:00+00')
FROM (VALUES ('u1', 3), ('u2', 4)) v(u, c);
CREATE TABLE dv_labels (user_id text, event_time timestamptz, churned bool);
INSERT INTO dv_labels VALUES ('u1', '2024-02-01 00:00:00+00', true), ('u2', '2024-02-01 00:00:00+00', false);
CREATE VIEW dv_spine_a AS SELECT user_id, event_time, churned FROM dv_labels;
CREATE VIEW dv_spine_b AS SELECT user_id, event_time, NOT churned AS churned FROM dv_labels;
-- which content each run of experiment dv_exp consumed
CREATE VIEW dv_inputs AS
SELECT r.run_name, d.name, d.version, d.content_hash AS h
FROM pgpoly.run_inputs i JOIN pgpoly.runs r USING (run_id) JOIN pgpoly.datasets d USING (dataset_id)
WHERE r.experiment_id = (SELECT experiment_id FROM pgpoly.experiments WHERE name = 'dv_exp');

--
-- create_training_set: content A, a run consumes it; dropped and made again
-- with content B (labels swapped): the run still points at A.
--
SELECT pgpoly.create_training_set('dv_ts', 'SELECT * FROM dv_spine_a', '{dv_users:*}') AS rows;
SELECT pgpoly._dataset_content_hash('dv_ts') AS h_a \gset
SELECT pgpoly.start_run('dv_exp', 'r1') AS r1 \gset
SELECT pgpoly.log_input(:'r1', 'dv_ts');
DROP TABLE dv_ts;
SELECT pgpoly.create_training_set('dv_ts', 'SELECT * FROM dv_spine_b', '{dv_users:*}') AS rows;
SELECT pgpoly._dataset_content_hash('dv_ts') AS h_b \gset
SELECT :'h_a' <> :'h_b' AS contents_differ;
SELECT run_name, version, h = :'h_a' AS consumed_a, h = :'h_b' AS consumed_b
FROM dv_inputs WHERE name = 'dv_ts' ORDER BY run_name;
-- the new content is a new version; the old one is kept as it was
SELECT version, content_hash = :'h_a' AS is_a, content_hash = :'h_b' AS is_b, store
FROM pgpoly.datasets WHERE name = 'dv_ts' ORDER BY dataset_id;

-- log_input: NULL (and no version) is the newest, an explicit version that one
SELECT pgpoly.start_run('dv_exp', 'r2') AS r2 \gset
SELECT pgpoly.start_run('dv_exp', 'r3') AS r3 \gset
SELECT pgpoly.start_run('dv_exp', 'r4') AS r4 \gset
SELECT pgpoly.log_input(:'r2', 'dv_ts');
SELECT pgpoly.log_input(:'r3', 'dv_ts', NULL);
SELECT pgpoly.log_input(:'r4', 'dv_ts', version => 'auto-2');
SELECT run_name, version, h = :'h_a' AS consumed_a, h = :'h_b' AS consumed_b
FROM dv_inputs WHERE name = 'dv_ts' ORDER BY run_name;

-- the same content again reuses the newest version; content A again (after
-- B) is a third version, whose hash is A's
DROP TABLE dv_ts;
SELECT pgpoly.create_training_set('dv_ts', 'SELECT * FROM dv_spine_b ORDER BY user_id DESC', '{dv_users:*}') AS rows;
SELECT count(*) AS versions FROM pgpoly.datasets WHERE name = 'dv_ts';
DROP TABLE dv_ts;
SELECT pgpoly.create_training_set('dv_ts', 'SELECT * FROM dv_spine_a', '{dv_users:*}') AS rows;
SELECT version, content_hash = :'h_a' AS is_a, content_hash = :'h_b' AS is_b
FROM pgpoly.datasets WHERE name = 'dv_ts' ORDER BY dataset_id;
SELECT run_name, version, h = :'h_a' AS consumed_a, h = :'h_b' AS consumed_b
FROM dv_inputs WHERE name = 'dv_ts' ORDER BY run_name;
-- a version's rows are gone only with the version: re-registering without a
-- version moves the newest's location, never a content hash
SELECT pgpoly.register_dataset('dv_ts', 'postgres://db/dv_ts');
SELECT version, uri, content_hash = :'h_a' AS is_a, content_hash = :'h_b' AS is_b
FROM pgpoly.datasets WHERE name = 'dv_ts' ORDER BY dataset_id;
-- lineage: one edge per feature view and per run, as before
SELECT src_kind, src_name, dst_kind, relation FROM pgpoly.lineage_edges
WHERE src_name = 'dv_ts' OR dst_name = 'dv_ts' ORDER BY src_kind, dst_kind, relation;
SELECT count(*) AS run_edges FROM pgpoly.lineage_edges WHERE src_name = 'dv_ts' AND dst_kind = 'run';

--
-- A version registered ahead, with no content and no run yet, takes the
-- training set's content; one a run already consumed does not.
--
SELECT pgpoly.register_dataset('dv_pre', 's3://x/pre', version => 'v1');
SELECT pgpoly.create_training_set('dv_pre', 'SELECT * FROM dv_spine_a', '{dv_users:*}') AS rows;
SELECT version, uri, store, content_hash = :'h_a' AS is_a FROM pgpoly.datasets WHERE name = 'dv_pre';
CREATE TABLE dv_hand AS SELECT 1 AS x;		-- made by hand, consumed, then replaced
SELECT pgpoly.register_dataset('dv_hand');
SELECT pgpoly.start_run('dv_exp', 'r5') AS r5 \gset
SELECT pgpoly.log_input(:'r5', 'dv_hand');
DROP TABLE dv_hand;
SELECT pgpoly.create_training_set('dv_hand', 'SELECT * FROM dv_spine_a', '{dv_users:*}') AS rows;
SELECT version, content_hash = :'h_a' AS is_a FROM pgpoly.datasets WHERE name = 'dv_hand' ORDER BY dataset_id;
SELECT run_name, version, h IS NULL AS no_hash FROM dv_inputs WHERE name = 'dv_hand';

-- An automatic version never takes a version name a user registered.
SELECT pgpoly.create_training_set('dv_col', 'SELECT * FROM dv_spine_a', '{dv_users:*}') AS rows;
SELECT pgpoly.register_dataset('dv_col', version => 'auto-3');
SELECT pgpoly.log_input(:'r5', 'dv_col');
DROP TABLE dv_col;
SELECT pgpoly.create_training_set('dv_col', 'SELECT * FROM dv_spine_b', '{dv_users:*}') AS rows;
SELECT version, content_hash = :'h_a' AS is_a, content_hash = :'h_b' AS is_b
FROM pgpoly.datasets WHERE name = 'dv_col' ORDER BY dataset_id;
SELECT run_name, version FROM dv_inputs WHERE name = 'dv_col';

--
-- get_historical_features(dataset => ...) versions the rows it returned
--
SELECT count(*) FROM pgpoly.get_historical_features('SELECT * FROM dv_spine_a', '{dv_users:*}', dataset => 'dv_hist');
SELECT pgpoly.start_run('dv_exp', 'r6') AS r6 \gset
SELECT pgpoly.log_input(:'r6', 'dv_hist');
SELECT content_hash AS h_hist_a FROM pgpoly.datasets WHERE name = 'dv_hist' \gset
SELECT row_no, spine->>'user_id' AS u, features
FROM pgpoly.get_historical_features('SELECT * FROM dv_spine_b ORDER BY user_id DESC', '{dv_users:*}', dataset => 'dv_hist');
SELECT count(*) FROM pgpoly.get_historical_features('SELECT * FROM dv_spine_b ORDER BY user_id DESC', '{dv_users:*}', dataset => 'dv_hist');
SELECT version, content_hash = :'h_hist_a' AS is_first, split_part(content_hash, ':', 1) AS method
FROM pgpoly.datasets WHERE name = 'dv_hist' ORDER BY dataset_id;
SELECT run_name, version, h = :'h_hist_a' AS consumed_first FROM dv_inputs WHERE name = 'dv_hist';
-- its hash is that of a table holding the rows it returned
CREATE TABLE dv_hist_rows AS SELECT * FROM pgpoly.get_historical_features('SELECT * FROM dv_spine_a', '{dv_users:*}');
SELECT pgpoly._dataset_content_hash('dv_hist_rows') = :'h_hist_a' AS hash_of_rows_returned;
-- without a dataset nothing is registered
SELECT count(*) FROM pgpoly.get_historical_features('SELECT * FROM dv_spine_a WHERE false', '{dv_users:*}');
SELECT count(*) AS versions FROM pgpoly.datasets WHERE name = 'dv_hist';
-- no rows: registered with the hash of an empty table of them
SELECT count(*) FROM pgpoly.get_historical_features('SELECT * FROM dv_spine_a WHERE false', '{dv_users:*}', dataset => 'dv_empty');
TRUNCATE dv_hist_rows;
SELECT content_hash = pgpoly._dataset_content_hash('dv_hist_rows') AS empty_hash
FROM pgpoly.datasets WHERE name = 'dv_empty';

-- clean up
CREATE FOREIGN TABLE dv_raw (key text, clicks text)
  SERVER dv_srv OPTIONS (key_prefix 'regress_dv:', write_mode 'immediate');
DELETE FROM dv_raw;
SELECT pgpoly.drop_feature_view('dv_users', drop_tables => true);
DELETE FROM pgpoly.runs WHERE experiment_id = (SELECT experiment_id FROM pgpoly.experiments WHERE name = 'dv_exp');
DELETE FROM pgpoly.experiments WHERE name = 'dv_exp';
DELETE FROM pgpoly.lineage_edges WHERE dst_name LIKE 'dv\_%' OR src_name LIKE 'dv\_%'
  OR src_name LIKE 'pgpoly.dv\_%';
DELETE FROM pgpoly.datasets WHERE name LIKE 'dv\_%' OR name LIKE 'pgpoly.dv\_%';
RESET client_min_messages;
