--
-- Inference data and monitoring: the prediction log and its partitions, labels,
-- drift.  (Feature views: ingest.sql.  PSI/KS against an independent
-- implementation: test/fault/test_drift_reference.py.)
--
\set VERBOSITY terse
\set SHOW_CONTEXT never
SET client_min_messages = warning;
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';

-- The public contract: argument names and result columns.
SELECT p.proname, pg_get_function_arguments(p.oid) AS arguments,
       pg_get_function_result(p.oid) AS result
FROM pg_proc p
WHERE p.pronamespace = 'pgpoly'::regnamespace
  AND p.proname IN ('log_prediction', 'log_predictions', 'log_label', 'drift', 'feature_stats',
                    'ingest_features', 'create_prediction_partitions', 'drop_prediction_partitions')
ORDER BY p.proname;
SELECT table_name, string_agg(column_name || ' ' || data_type, ', ' ORDER BY ordinal_position)
FROM information_schema.columns
WHERE table_schema = 'pgpoly' AND table_name IN ('predictions', 'labeled_predictions', 'prediction_labels')
GROUP BY table_name ORDER BY table_name;
-- nothing is granted to anyone but the owner
SELECT c.relname,
       (SELECT count(*) FROM aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
        WHERE a.grantee <> c.relowner) AS grants_to_others
FROM pg_class c
WHERE c.relnamespace = 'pgpoly'::regnamespace
  AND c.relname IN ('predictions', 'prediction_labels', 'labeled_predictions')
ORDER BY c.relname;

-- The SQLSTATE and message of a statement ('ok' if none).
CREATE FUNCTION mon_err(cmd text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE cmd;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
-- The partitions of pgpoly.predictions before 2025 (later ones depend on today).
CREATE VIEW mon_partitions AS
	SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bounds,
	       c.relowner = p.relowner AS owned_like_parent
	FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
	WHERE i.inhparent = 'pgpoly.predictions'::regclass AND c.relname < 'predictions_2025';

SELECT pgpoly.register_model_version('mon_churn', 's3://m/1'),
       pgpoly.register_model_version('mon_churn', 's3://m/2'),
       pgpoly.register_model_version('mon_churn', 's3://m/3');
SELECT pgpoly.set_model_alias('mon_churn', 'champion', 1);

--
-- log_prediction: a version, or name@alias resolved when the call is made
--
SELECT pgpoly.log_prediction('mon_churn', 2, 'u1', '{"p": 0.2}', '{"age": 31, "plan": "pro"}',
                             0.8, 3.5, 'req-1', '2024-05-31 23:59:59.999999+00') AS id1 \gset
SELECT pgpoly.log_prediction('mon_churn@champion', NULL, 'u2', '{"p": 0.9}',
                             request_id => 'req-2', ts => '2024-06-01 00:00+00') AS id2 \gset
SELECT pgpoly.set_model_alias('mon_churn', 'champion', 3);
SELECT pgpoly.log_prediction(model => 'mon_churn@champion', version => NULL, entity => 'u3',
                             prediction => '1', ts => '2024-06-15 12:00+00') AS id3 \gset
SELECT :id1 < :id2 AND :id2 < :id3 AS ids_increase;
-- ts defaults to now(): the current month's partition, created on the fly
SELECT pgpoly.log_prediction('mon_churn', 1, NULL, '"no"') AS id_now \gset
SELECT ts BETWEEN now() - interval '1 minute' AND now() AS ts_now,
       tableoid::regclass::text = 'pgpoly.predictions_' || to_char(now() AT TIME ZONE 'UTC', 'YYYY_MM')
           AS in_this_months_partition
FROM pgpoly.predictions WHERE prediction_id = :id_now;

--
-- log_predictions: one INSERT for a JSON array
--
SELECT pgpoly.log_predictions($$[
  {"model": "mon_churn@champion", "entity": "u4", "prediction": {"p": 0.4}, "request_id": "req-4",
   "ts": "2024-06-20T08:00:00Z", "features": {"age": 40, "plan": "free"}},
  {"model": "mon_churn", "version": 1, "entity": "u5", "prediction": {"p": 0.7}, "confidence": 0.5,
   "latency_ms": 1.25, "request_id": "req-5", "ts": "2024-07-01 00:00:00+00",
   "features": {"age": 25, "plan": "pro"}},
  {"model": "mon_churn", "version": "2", "entity": 6, "prediction": [1, 2], "request_id": "req-4",
   "ts": "2024-06-20T08:00:00Z"}
]$$) AS logged;
SELECT pgpoly.log_predictions('[]') AS logged_none;
SELECT tableoid::regclass AS partition, model_name, version, entity, features, prediction,
       confidence, latency_ms, request_id, ts
FROM pgpoly.predictions WHERE ts < '2025-01-01' ORDER BY prediction_id;
-- one partition per month, bounded by UTC months, owned like the parent, with
-- its key and indexes
SELECT * FROM mon_partitions ORDER BY relname;
SELECT indexname, indexdef FROM pg_indexes
WHERE schemaname = 'pgpoly' AND tablename = 'predictions_2024_06' ORDER BY indexname;

--
-- Labels, and predictions joined to them
--
SELECT pgpoly.log_label('req-1', '0');
SELECT pgpoly.log_label('req-4', '{"churned": true}', '2024-07-01');
SELECT pgpoly.log_label(request_id => 'req-4', label => '{"churned": false}', ts => '2024-07-02');	-- replaced
SELECT prediction_id = :id1 AS is_id1, model_name, version, entity, prediction, label,
       CASE WHEN label_ts > now() - interval '1 hour' THEN 'recent' ELSE label_ts::text END AS label_ts
FROM pgpoly.labeled_predictions ORDER BY prediction_id;
-- a dashboard query: labeled predictions per model version
SELECT model_name, version, count(*) AS labeled
FROM pgpoly.labeled_predictions GROUP BY 1, 2 ORDER BY 1, 2;
-- predictions join the registry: the run behind each version (none here) and its alias history
SELECT p.version, v.source_uri, h.alias AS alias_at_prediction_time
FROM pgpoly.predictions p
JOIN pgpoly.model_versions v ON v.model_name = p.model_name AND v.version = p.version
LEFT JOIN pgpoly.model_alias_history h
       ON h.model_name = p.model_name AND h.version = p.version AND h.valid @> now()
WHERE p.prediction_id IN (:id2, :id3) ORDER BY p.prediction_id;

--
-- Errors: nothing is written by a failed call
--
SELECT count(*) AS before FROM pgpoly.predictions \gset
SELECT c.cmd, mon_err(c.cmd) AS error
FROM (VALUES
	('SELECT pgpoly.log_prediction(''mon_nope'', 1, ''u'', ''1'')'),
	('SELECT pgpoly.log_prediction(''mon_churn'', 9, ''u'', ''1'')'),
	('SELECT pgpoly.log_prediction(''mon_churn@nope'', NULL, ''u'', ''1'')'),
	('SELECT pgpoly.log_prediction(''mon_nope@champion'', NULL, ''u'', ''1'')'),
	('SELECT pgpoly.log_prediction(''mon_churn@champion'', 1, ''u'', ''1'')'),
	('SELECT pgpoly.log_prediction(''mon_churn'', NULL, ''u'', ''1'')'),
	('SELECT pgpoly.log_prediction(NULL, 1, ''u'', ''1'')'),
	('SELECT pgpoly.log_prediction('''', 1, ''u'', ''1'')'),
	('SELECT pgpoly.log_prediction(''mon_churn'', 1, ''u'', NULL)'),
	('SELECT pgpoly.log_prediction(''mon_churn'', 1, ''u'', ''1'', latency_ms => -1)'),
	('SELECT pgpoly.log_prediction(''mon_churn'', 1, ''u'', ''1'', latency_ms => ''NaN'')'),
	('SELECT pgpoly.log_prediction(''mon_churn'', 1, ''u'', ''1'', request_id => '''')'),
	('SELECT pgpoly.log_prediction(''mon_churn'', 1, ''u'', ''1'', ts => ''infinity'')'),
	('SELECT pgpoly.log_predictions(NULL)'),
	('SELECT pgpoly.log_predictions(''{"model": "mon_churn"}'')'),
	('SELECT pgpoly.log_predictions(''[{"model": "mon_churn", "version": 1, "prediction": 1}, 7]'')'),
	('SELECT pgpoly.log_predictions(''[{"model": "mon_churn", "version": 1, "prediction": 1, "confidnce": 1}]'')'),
	('SELECT pgpoly.log_predictions(''[{"model": "mon_churn", "version": 1, "prediction": 1}, {"model": "mon_churn", "version": "two", "prediction": 1}]'')'),
	('SELECT pgpoly.log_predictions(''[{"model": "mon_churn", "version": 1, "prediction": 1, "ts": "soon"}]'')'),
	('SELECT pgpoly.log_predictions(''[{"model": "mon_churn", "version": 1, "prediction": 1}, {"model": "mon_churn", "version": 4, "prediction": 1}]'')'),
	('SELECT pgpoly.log_predictions(''[{"model": "mon_churn", "version": 1, "prediction": 1}, {"model": "mon_churn", "version": 1}]'')'),
	('SELECT pgpoly.log_predictions(''[{"model": "mon_churn", "version": 1, "prediction": 1}, {"version": 1, "prediction": 1}]'')'),
	('SELECT pgpoly.log_label(''req-none'', ''1'')'),
	('SELECT pgpoly.log_label(''req-1'', NULL)'),
	('SELECT pgpoly.log_label(NULL, ''1'')')
) AS c(cmd);
SELECT count(*) - :before AS written_by_failed_calls FROM pgpoly.predictions;
SELECT label FROM pgpoly.prediction_labels WHERE request_id = 'req-1';
\set VERBOSITY default
SELECT pgpoly.log_prediction('mon_churn', NULL, 'u', '1');
SELECT pgpoly.log_predictions('[{"model": "mon_churn", "version": 1, "prediction": 1, "confidnce": 1}]');
\set VERBOSITY terse

--
-- Partitions: ahead of time, retention
--
SELECT pgpoly.create_prediction_partitions('2023-10-15', '2023-12-01') AS created,
       pgpoly.create_prediction_partitions('2023-10-15', '2023-12-01') AS created_again;
SELECT pgpoly.log_prediction('mon_churn', 1, 'old', '1', ts => '2023-11-11') IS NOT NULL AS logged_old;
-- bounds are UTC months whatever the session's settings ('IST' would also read
-- as Israel time if a bound went through the session's text form)
SET timezone = 'Asia/Kolkata';
SET datestyle = 'SQL, DMY';
SELECT pgpoly.create_prediction_partitions('2023-09-10 12:00+00', '2023-09-10 12:00+00') AS created_in_ist;
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
SELECT * FROM mon_partitions ORDER BY relname;
-- drops whole months before the cutoff (2023-09 to 2023-11), keeps the rest
SELECT pgpoly.drop_prediction_partitions('2023-12-31') AS dropped;
SELECT * FROM mon_partitions ORDER BY relname;
SELECT count(*) AS old_rows FROM pgpoly.predictions WHERE entity = 'old';
SELECT mon_err('SELECT pgpoly.create_prediction_partitions(''2024-02-01'', ''2024-01-01'')'),
       mon_err('SELECT pgpoly.create_prediction_partitions(''-infinity'', ''2024-01-01'')'),
       mon_err('SELECT pgpoly.drop_prediction_partitions(NULL)');

--
-- Privileges: writers need INSERT on predictions and SELECT on its prediction_id
-- (log_prediction returns it), and read access to the registry; the partition
-- of a new month is created for them.
--
CREATE ROLE regress_mon_writer NOLOGIN;
CREATE ROLE regress_mon_reader NOLOGIN;
GRANT USAGE ON SCHEMA pgpoly TO regress_mon_writer, regress_mon_reader;
GRANT SELECT ON pgpoly.registered_models, pgpoly.model_versions, pgpoly.model_aliases
	TO regress_mon_writer, regress_mon_reader;
GRANT INSERT, SELECT (prediction_id) ON pgpoly.predictions TO regress_mon_writer;
-- the partition helper is not PUBLIC's: a writer allowed to create partitions
GRANT EXECUTE ON FUNCTION pgpoly._prediction_partitions(timestamptz[]) TO regress_mon_writer;
SET ROLE regress_mon_writer;
SELECT pgpoly.log_prediction('mon_churn@champion', NULL, 'w1', '1', ts => '2023-01-05') IS NOT NULL AS writer_logged;
SELECT pgpoly.log_predictions('[{"model": "mon_churn", "version": 2, "prediction": 0, "ts": "2023-02-05T00:00:00Z"}]') AS writer_logged_batch;
RESET ROLE;
SET ROLE regress_mon_reader;
SELECT mon_err('SELECT pgpoly.log_prediction(''mon_churn'', 1, ''r1'', ''1'', ts => ''2023-03-05'')') AS reader;
RESET ROLE;
SELECT relname FROM mon_partitions WHERE relname < 'predictions_2023_04' ORDER BY 1;
-- without EXECUTE on the partition helper, writers log into existing months only
REVOKE EXECUTE ON FUNCTION pgpoly._prediction_partitions(timestamptz[]) FROM regress_mon_writer;
SET ROLE regress_mon_writer;
SELECT pgpoly.log_prediction('mon_churn', 1, 'w2', '1', ts => '2023-01-06') IS NOT NULL AS existing_month;
SELECT mon_err('SELECT pgpoly.log_prediction(''mon_churn'', 1, ''w3'', ''1'', ts => ''2023-03-06'')') AS new_month;
RESET ROLE;
-- labelers: SELECT on predictions.request_id, SELECT/INSERT/UPDATE on the labels
SET ROLE regress_mon_reader;
SELECT mon_err('SELECT pgpoly.log_label(''req-5'', ''1'')') AS label_without_grants;
RESET ROLE;
GRANT SELECT (request_id) ON pgpoly.predictions TO regress_mon_reader;
GRANT SELECT, INSERT, UPDATE ON pgpoly.prediction_labels TO regress_mon_reader;
SET ROLE regress_mon_reader;
SELECT pgpoly.log_label('req-5', '1');
SELECT pgpoly.log_label('req-5', '{"churned": true}');
RESET ROLE;
SELECT label FROM pgpoly.prediction_labels WHERE request_id = 'req-5';
SELECT pgpoly.drop_prediction_partitions('2023-06-01') AS dropped;

--
-- drift: hand-computed cases (the general check against an independent
-- implementation is test/fault/test_drift_reference.py)
--
CREATE TABLE mon_ref (x float8, n int, c text, b bool);
CREATE TABLE mon_cur (x float8, n int, c text, b bool);
-- x: reference 1..10, bins 2: edge = median 5.5, p_ref = (0.5, 0.5); current has 8
-- values <= 5.5: p_cur = (0.8, 0.2);
-- psi = 0.3 ln(0.8/0.5) + (-0.3) ln(0.2/0.5) = 0.415888; ks = F_ref(1) - F_cur(1) = 0.1 - 0.8
-- n: reference 1,2,3,4,5,5,5,6,7,8: median 5 is an edge; current values equal to it
-- (5) are in bin 1 (v <= e_1): p_ref = (0.7, 0.3), p_cur = (1.0, 0.0 -> 0.0001);
-- psi = 0.3 ln(1/0.7) + (0.0001 - 0.3) ln(0.0001/0.3) = 2.508112; ks = 1.0 - 0.7 at 5
-- c: reference a,a,b,b (+ NULLs), current a,b,z,z: bins a, b, unseen:
-- psi = 2 (0.25 - 0.5) ln(0.25/0.5) + (0.5 - 0.0001) ln(0.5/0.0001) = 4.604318
INSERT INTO mon_ref SELECT g, (ARRAY[1,2,3,4,5,5,5,6,7,8])[g], (ARRAY['a','a','b','b'])[g], g <= 5
FROM generate_series(1, 10) g;
INSERT INTO mon_cur SELECT (ARRAY[1,1,1,1,1,1,1,1,6,7])[g], (ARRAY[5,5,5,5,5,1,2,3,4,5])[g],
       (ARRAY['a','b','z','z'])[g], g <= 5
FROM generate_series(1, 10) g;
SELECT feature, round(psi::numeric, 6) AS psi, round(ks::numeric, 6) AS ks, status
FROM pgpoly.drift('mon_ref', 'mon_cur', bins => 2);
-- the same relations as queries; a subset of features, in the order given
SELECT feature, round(psi::numeric, 6) AS psi, round(ks::numeric, 6) AS ks, status
FROM pgpoly.drift('SELECT * FROM mon_ref', $$ SELECT c, x FROM mon_cur -- current$$,
                  features => '{c,x,c}', bins => 2);
-- identical data: no drift; default bins (10)
SELECT feature, psi, ks, status FROM pgpoly.drift('mon_ref', 'mon_ref');
-- a side without values: NULL
SELECT feature, psi, ks, status
FROM pgpoly.drift('mon_ref', 'SELECT x, c FROM mon_cur WHERE false');
-- the status thresholds
SELECT p, pgpoly._drift_status(p) FROM unnest('{0, 0.0999, 0.1, 0.2499, 0.25, 3}'::float8[]) p;
-- drift between training data and the features logged with predictions
SELECT feature, status FROM pgpoly.drift(
	'SELECT 30 + g % 20 AS age, CASE WHEN g % 3 = 0 THEN ''pro'' ELSE ''free'' END AS plan FROM generate_series(1, 100) g',
	$$SELECT (features->>'age')::int AS age, features->>'plan' AS plan FROM pgpoly.predictions
	  WHERE model_name = 'mon_churn' AND features IS NOT NULL$$);
-- errors
SELECT c.cmd, mon_err(c.cmd) AS error
FROM (VALUES
	('SELECT pgpoly.drift(''mon_ref'', ''mon_cur'', bins => 1)'),
	('SELECT pgpoly.drift(''mon_ref'', ''mon_cur'', bins => NULL)'),
	('SELECT pgpoly.drift(''mon_ref'', ''mon_cur'', ''{nope}'')'),
	('SELECT pgpoly.drift(''mon_ref'', ''SELECT 1 AS y'', ''{y}'')'),
	('SELECT pgpoly.drift(''mon_ref'', ''mon_cur'', ''{}'')'),
	('SELECT pgpoly.drift(''mon_ref'', ''mon_cur'', ''{x,NULL}'')'),
	('SELECT pgpoly.drift(''mon_ref'', ''SELECT x::text AS x FROM mon_cur'')'),
	('SELECT pgpoly.drift(''mon_nope'', ''mon_cur'')'),
	('SELECT pgpoly.drift(''mon_ref'', NULL)'),
	('SELECT pgpoly.drift(''mon_ref'', '''')'),
	('SELECT pgpoly.drift(''mon_ref'', ''SELECT 1 AS x, 2 AS x'')'),
	('SELECT pgpoly.drift(''mon_ref'', ''SELECT FROM mon_cur'')'),
	('SELECT pgpoly.drift(''mon_ref'', ''SELECT x FROM mon_nope'')'),
	('SELECT pgpoly.drift(''mon_ref'', ''SELECT x FROM mon_cur) s; SELECT (1'')')
) AS c(cmd);
-- the caller's privileges apply to what drift reads
SET ROLE regress_mon_reader;
SELECT mon_err('SELECT pgpoly.drift(''mon_ref'', ''mon_cur'')') AS reader_drift;
RESET ROLE;

-- Clean up
DROP TABLE mon_ref, mon_cur;
DROP VIEW mon_partitions;
DROP FUNCTION mon_err(text);
TRUNCATE pgpoly.prediction_labels;
SELECT pgpoly.drop_prediction_partitions('infinity') > 0 AS dropped_all;
DELETE FROM pgpoly.predictions;
DELETE FROM pgpoly.registered_models WHERE name = 'mon_churn';
DROP OWNED BY regress_mon_writer, regress_mon_reader;
DROP ROLE regress_mon_writer, regress_mon_reader;
