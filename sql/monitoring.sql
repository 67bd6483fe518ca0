--
-- Inference data and monitoring: the prediction log and its partitions, labels,
-- drift; log_predictions and drift against straightforward references.
-- (Feature views: ingest.sql.  PSI/KS against an independent implementation:
-- test/fault/test_drift_reference.py.)
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
       -- the month of ts, not of now(): a run at the last instant of a month
       -- logs into that month and checks in the next
       tableoid::regclass::text = 'pgpoly.predictions_' || to_char(ts AT TIME ZONE 'UTC', 'YYYY_MM')
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
FROM pgpoly.predictions WHERE ts < '2025-01-01' AND model_name = 'mon_churn' ORDER BY prediction_id;
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
FROM pgpoly.labeled_predictions WHERE model_name = 'mon_churn' ORDER BY prediction_id;
-- a dashboard query: labeled predictions per model version
SELECT model_name, version, count(*) AS labeled
FROM pgpoly.labeled_predictions WHERE model_name = 'mon_churn' GROUP BY 1, 2 ORDER BY 1, 2;
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

--
-- log_predictions() and drift() against straightforward references.
--
-- log_predictions: a batch is logged in the order of its elements with the
-- values jsonb_to_recordset reads; a batch with bad elements logs nothing
-- and raises the error log_prediction raises for the first bad element,
-- prefixed with its position.
--
-- drift() against a straightforward reference query, on generated data with
-- NULLs, ties, equal edges, NaN, infinities, -0, unseen categories, empty and
-- tiny sides, every numeric type and bins from 2 to 50.  The reference takes
-- API.md 6 word for word: edges by percentile_cont, bin = 1 + the number of
-- edges below the value, KS by a running sum over the union of both sides'
-- values, PSI summed over the bins.  (drift's own implementation: a sort and a
-- merge in C, src/drift.c.)
--
SET extra_float_digits = 3;

SELECT pgpoly.register_model_version('diff_m', 's3://d/1'), pgpoly.register_model_version('diff_m', 's3://d/2');
SELECT pgpoly.set_model_alias('diff_m', 'live', 2);
-- 200 good elements: models by version and by alias, every optional key
-- present or absent, all in the current month
CREATE TABLE diff_good AS
SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
	'model', CASE WHEN g % 3 = 0 THEN 'diff_m@live' ELSE 'diff_m' END,
	'version', CASE WHEN g % 3 = 0 THEN NULL ELSE 1 + g % 2 END,
	'entity', CASE WHEN g % 5 <> 0 THEN 'e' || g END,
	'prediction', jsonb_build_object('p', g),
	'features', CASE WHEN g % 4 <> 0 THEN jsonb_build_object('x', g) END,
	'confidence', CASE WHEN g % 6 <> 0 THEN g / 200.0 END,
	'latency_ms', CASE WHEN g % 7 <> 0 THEN g % 9 END,
	'request_id', CASE WHEN g % 2 = 0 THEN 'r' || g END,
	'ts', CASE WHEN g % 8 = 0 THEN to_jsonb(date_trunc('month', now()) + g * interval '1 second') END))
	ORDER BY g) AS j
FROM generate_series(1, 200) g;
BEGIN;	-- one now(): the ts of elements without one
SELECT pgpoly.log_predictions(j) AS logged FROM diff_good;
WITH want AS (
	SELECT u.i, CASE WHEN u.model LIKE '%@live' THEN 2 ELSE u.version END AS version, u.entity,
	       u.prediction, u.features, u.confidence, u.latency_ms, u.request_id, u.ts
	FROM diff_good, ROWS FROM (jsonb_to_recordset(j)
	                      AS (model text, version int, entity text, prediction jsonb, features jsonb,
	                          confidence float8, latency_ms float8, request_id text, ts timestamptz))
	           WITH ORDINALITY AS u(model, version, entity, prediction, features, confidence,
	                                latency_ms, request_id, ts, i)),
got AS (
	SELECT row_number() OVER (ORDER BY p.prediction_id) AS i, p.*
	FROM pgpoly.predictions p WHERE p.model_name = 'diff_m')
SELECT count(*) AS compared,
       count(*) FILTER (WHERE (w.version, w.entity, w.prediction, w.features, w.confidence, w.latency_ms,
                               w.request_id, coalesce(w.ts, now()))
                              IS DISTINCT FROM
                              (g.version, g.entity, g.prediction, g.features, g.confidence, g.latency_ms,
                               g.request_id, g.ts)) AS different
FROM want w FULL JOIN got g ON g.i = w.i;
COMMIT;
-- one or two bad elements among good ones: nothing is logged, and the error
-- is the first bad one's, as log_prediction raises it
CREATE TABLE diff_bad(kind, elem, call) AS VALUES
	('null model', '{"model": null, "version": 1, "prediction": 1}'::jsonb, $$NULL, 1, NULL, '1'$$),
	('empty model', '{"model": "", "version": 1, "prediction": 1}', $$'', 1, NULL, '1'$$),
	('unknown model', '{"model": "diff_nope", "version": 1, "prediction": 1}', $$'diff_nope', 1, NULL, '1'$$),
	('unknown version', '{"model": "diff_m", "version": 3, "prediction": 1}', $$'diff_m', 3, NULL, '1'$$),
	('unknown alias', '{"model": "diff_m@gone", "prediction": 1}', $$'diff_m@gone', NULL, NULL, '1'$$),
	('no version', '{"model": "diff_m", "prediction": 1}', $$'diff_m', NULL, NULL, '1'$$),
	('no prediction', '{"model": "diff_m", "version": 1}', $$'diff_m', 1, NULL, NULL$$),
	('negative latency', '{"model": "diff_m", "version": 1, "prediction": 1, "latency_ms": -1}',
	 $$'diff_m', 1, NULL, '1', latency_ms => -1$$),
	('NaN latency', '{"model": "diff_m", "version": 1, "prediction": 1, "latency_ms": "NaN"}',
	 $$'diff_m', 1, NULL, '1', latency_ms => 'NaN'$$),
	('empty request_id', '{"model": "diff_m", "version": 1, "prediction": 1, "request_id": ""}',
	 $$'diff_m', 1, NULL, '1', request_id => ''$$),
	('infinite ts', '{"model": "diff_m", "version": 1, "prediction": 1, "ts": "infinity"}',
	 $$'diff_m', 1, NULL, '1', ts => 'infinity'$$);
SELECT count(*) AS before FROM pgpoly.predictions \gset
WITH cases AS (
	SELECT b.kind, b2.kind AS kind2, pos, pos2, b.call,
	       (SELECT jsonb_agg(CASE WHEN e.i = pos THEN b.elem WHEN e.i = pos2 THEN b2.elem ELSE e.v END ORDER BY e.i)
	        FROM diff_good, jsonb_array_elements(diff_good.j) WITH ORDINALITY AS e(v, i) WHERE e.i <= 20) AS batch
	FROM diff_bad b, diff_bad b2, (VALUES (1, 20), (7, 8), (20, 20)) AS p(pos, pos2)
	WHERE b2.kind IN ('unknown model', 'no prediction', 'NaN latency')),
res AS (
	SELECT c.*, mon_err(format('SELECT pgpoly.log_predictions(%L)', c.batch)) AS got,
	       regexp_replace(mon_err(format('SELECT pgpoly.log_prediction(%s)', c.call)),
	                      '^(.....): ', '\1: element ' || c.pos || ' of rows: ') AS want
	FROM cases c)
SELECT count(*) AS batches, count(DISTINCT got) AS distinct_errors,
       array_agg(format('%s@%s + %s@%s: %s / %s', kind, pos, kind2, pos2, got, want)) FILTER (WHERE got <> want) AS mismatches
FROM res;
SELECT count(*) - :before AS logged_by_bad_batches FROM pgpoly.predictions;
-- the key check (src/predictions.c reads an element's keys from its JEntries)
-- against the list of keys: near misses of known keys (same length and first
-- byte, a prefix, a longer key, another case, a trailing space), the empty
-- key, and objects of 40 keys (whose JEntries carry offsets, not only
-- lengths) beside known keys: the element is refused naming its least
-- unknown key
WITH keys(k) AS (VALUES ('modes'), ('versioN'), ('tz'), ('t'), (''), ('predictionx'), ('request_ix'),
                        ('Model'), ('entit'), ('featurés'), ('confidence '), ('latency_m'), ('zz')),
cases AS (
	SELECT format('key %L', k) AS kind, jsonb_build_object(k, 1) AS extra, k AS want FROM keys
	UNION ALL
	SELECT '40 keys', (SELECT jsonb_object_agg('k' || g, g) FROM generate_series(10, 49) g), 'k10'
	UNION ALL
	SELECT '40 long keys', (SELECT jsonb_object_agg(repeat('x', 30) || g, g) FROM generate_series(10, 49) g),
	       repeat('x', 30) || '10'),
res AS (
	SELECT c.kind, mon_err(format('SELECT pgpoly.log_predictions(%L)', jsonb_build_array(
	           '{"model": "diff_m", "version": 1, "prediction": 1}'::jsonb,
	           '{"model": "diff_m", "version": 1, "prediction": 1, "request_id": "r", "ts": "2020-01-01Z"}'::jsonb
	           || c.extra))) AS got,
	       format('22023: element 2 of rows: unknown key "%s"', c.want) AS want
	FROM cases c)
SELECT count(*) AS key_cases,
       array_agg(format('%s: %s / %s', kind, got, want)) FILTER (WHERE got <> want) AS mismatches
FROM res;
SELECT count(*) - :before AS logged_by_bad_keys FROM pgpoly.predictions;
-- a batch over two months whose partitions are missing takes the general path
-- (partitions made as needed)
SELECT pgpoly.log_predictions(jsonb_build_array(
	jsonb_build_object('model', 'diff_m', 'version', 1, 'prediction', 1, 'ts', '2020-01-31T23:59:59Z'),
	jsonb_build_object('model', 'diff_m', 'version', 1, 'prediction', 2, 'ts', '2020-02-01T00:00:00Z'),
	jsonb_build_object('model', 'diff_m', 'version', 1, 'prediction', 3, 'latency_ms', -1))) IS NULL AS logged;
SELECT pgpoly.log_predictions(jsonb_build_array(
	jsonb_build_object('model', 'diff_m', 'version', 1, 'prediction', 1, 'ts', '2020-01-31T23:59:59Z'),
	jsonb_build_object('model', 'diff_m', 'version', 1, 'prediction', 2, 'ts', '2020-02-01T00:00:00Z'))) AS logged;
SELECT prediction, tableoid::regclass FROM pgpoly.predictions WHERE ts < '2021-01-01' AND model_name = 'diff_m'
ORDER BY prediction_id;
-- a batch over months that have their partitions is one INSERT as well
SELECT pgpoly.log_predictions(jsonb_build_array(
	jsonb_build_object('model', 'diff_m', 'version', 1, 'prediction', 4, 'ts', '2020-01-15T00:00:00Z'),
	jsonb_build_object('model', 'diff_m', 'version', 1, 'prediction', 5, 'ts', '2020-02-15T00:00:00Z'))) AS logged;
SELECT prediction, tableoid::regclass FROM pgpoly.predictions
WHERE ts < '2021-01-01' AND model_name = 'diff_m' AND prediction::text IN ('4', '5') ORDER BY prediction_id;
-- each (model, version) pair is resolved once whatever the JSON form of the
-- version, with pairs repeated apart, and a single pair (after conversion)
-- matched without a key
SELECT pgpoly.log_predictions('[{"model": "diff_m", "version": 1, "prediction": 11},
	{"model": "diff_m", "version": "1", "prediction": 12}, {"model": "diff_m@live", "prediction": 13},
	{"model": "diff_m", "version": 1, "prediction": 14}, {"model": "diff_m", "version": "2", "prediction": 15}]') AS logged;
SELECT pgpoly.log_predictions('[{"model": "diff_m", "version": 2, "prediction": 16},
	{"model": "diff_m", "version": "2", "prediction": 17}]') AS logged;
SELECT prediction, version FROM pgpoly.predictions
WHERE model_name = 'diff_m' AND prediction::text IN ('11', '12', '13', '14', '15', '16', '17') ORDER BY prediction_id;
SELECT mon_err($$SELECT pgpoly.log_predictions('[{"model": "diff_m", "version": 2, "prediction": 1}, {"model": "diff_m", "version": "2", "prediction": 1}, {"model": "diff_m", "version": 3, "prediction": 1}]')$$) AS third_pair_unknown,
       mon_err($$SELECT pgpoly.log_predictions('[{"model": "diff_m", "version": 2, "prediction": 1}, {"model": "diff_m", "version": 2, "prediction": 1, "Model": "x", "aa": 1}]')$$) AS unknown_keys;
-- a writer without INSERT: the batch's own error comes first, as before
CREATE ROLE regress_diff_reader NOLOGIN;
GRANT USAGE ON SCHEMA pgpoly TO regress_diff_reader;
GRANT SELECT ON pgpoly.registered_models, pgpoly.model_versions, pgpoly.model_aliases TO regress_diff_reader;
SET ROLE regress_diff_reader;
SELECT mon_err($$SELECT pgpoly.log_predictions('[{"model": "diff_m", "version": 1, "prediction": 1}, {"model": "diff_m", "version": 9, "prediction": 1}]')$$) AS bad_row_first,
       mon_err($$SELECT pgpoly.log_predictions('[{"model": "diff_m", "version": 1, "prediction": 1}]')$$) AS then_privileges;
RESET ROLE;
DROP OWNED BY regress_diff_reader;
DROP ROLE regress_diff_reader;

-- PSI and KS of column col of tables ref and cur, numeric (num) or not.
CREATE FUNCTION ref_drift(ref text, cur text, col text, bins int, num bool,
                          OUT psi float8, OUT ks float8)
LANGUAGE plpgsql AS $$
BEGIN
	IF num THEN
		EXECUTE format($q$
			WITH r AS (SELECT t.%3$I::float8 AS v FROM %1$I t WHERE t.%3$I IS NOT NULL),
			c AS (SELECT t.%3$I::float8 AS v FROM %2$I t WHERE t.%3$I IS NOT NULL),
			n AS (SELECT (SELECT count(*) FROM r) AS nr, (SELECT count(*) FROM c) AS nc),
			e AS (SELECT percentile_cont(ARRAY(SELECT k::float8 / $1 FROM generate_series(1, $1 - 1) k))
						 WITHIN GROUP (ORDER BY r.v) AS edges FROM r),
			binned AS (SELECT 1 + (SELECT count(*) FROM unnest(e.edges) x WHERE x < s.v) AS bin, s.side
					   FROM e, (SELECT v, 'r' AS side FROM r UNION ALL SELECT v, 'c' FROM c) s),
			p AS (SELECT greatest(count(*) FILTER (WHERE b.side = 'r')::float8 / n.nr, 0.0001) AS pr,
						 greatest(count(*) FILTER (WHERE b.side = 'c')::float8 / n.nc, 0.0001) AS pc
				  FROM n, generate_series(1, $1) g LEFT JOIN binned b ON b.bin = g
				  GROUP BY g, n.nr, n.nc),
			u AS (SELECT v, count(*) FILTER (WHERE side = 'r') AS cr, count(*) FILTER (WHERE side = 'c') AS cc
				  FROM (SELECT v, 'r' AS side FROM r UNION ALL SELECT v, 'c' FROM c) s GROUP BY v),
			w AS (SELECT sum(u.cr) OVER (ORDER BY u.v) AS fr, sum(u.cc) OVER (ORDER BY u.v) AS fc FROM u)
			SELECT (SELECT sum((p.pc - p.pr) * ln(p.pc / p.pr)) FROM p),
				   (SELECT max(abs(w.fr::float8 / n.nr - w.fc::float8 / n.nc)) FROM w)
			FROM n WHERE n.nr > 0 AND n.nc > 0$q$, ref, cur, col)
		INTO psi, ks USING bins;
	ELSE
		EXECUTE format($q$
			WITH r AS (SELECT t.%3$I::text AS v FROM %1$I t WHERE t.%3$I IS NOT NULL),
			c AS (SELECT t.%3$I::text AS v FROM %2$I t WHERE t.%3$I IS NOT NULL),
			n AS (SELECT (SELECT count(*) FROM r) AS nr, (SELECT count(*) FROM c) AS nc),
			cats AS (SELECT DISTINCT v FROM r),
			bins AS (SELECT cats.v AS bin FROM cats UNION ALL SELECT NULL),
			p AS (SELECT greatest((SELECT count(*) FROM r WHERE r.v IS NOT DISTINCT FROM b.bin)::float8 / n.nr, 0.0001) AS pr,
						 greatest((SELECT count(*) FROM c WHERE c.v = b.bin
								   OR (b.bin IS NULL AND c.v NOT IN (SELECT v FROM cats)))::float8 / n.nc, 0.0001) AS pc
				  FROM n, bins b)
			SELECT (SELECT sum((p.pc - p.pr) * ln(p.pc / p.pr)) FROM p), NULL::float8
			FROM n WHERE n.nr > 0 AND n.nc > 0$q$, ref, cur, col)
		INTO psi;
	END IF;
END
$$;

-- Generated sides: t is the share of NULLs, columns of every kind.
SELECT setseed(0.1234);
CREATE TABLE d_ref AS
SELECT CASE WHEN random() < 0.1 THEN NULL ELSE random() * 10 END AS f,           -- no ties
       CASE WHEN random() < 0.05 THEN NULL ELSE (random() * 6)::int END AS i,    -- ties
       CASE WHEN random() < 0.6 THEN 3 ELSE (random() * 100)::bigint END AS b,   -- equal edges
       round((random() * 4 - 2)::numeric, 1) AS n,
       (random() * 3)::real AS r,
       CASE WHEN g = 1 THEN '-Infinity'::float8 WHEN g <= 4 THEN 'NaN'::float8
            WHEN g = 5 THEN 'Infinity'::float8 WHEN g % 7 = 0 THEN '-0'::float8
            WHEN g % 5 = 0 THEN 0 ELSE round(random() * 8) - 4 END AS s,          -- NaN, inf, -0
       CASE WHEN random() < 0.1 THEN NULL ELSE (ARRAY['a', 'b', 'b', 'c'])[1 + (random() * 3)::int] END AS cat,
       random() < 0.3 AS flag
FROM generate_series(1, 1500) g;
CREATE TABLE d_cur AS
SELECT CASE WHEN random() < 0.2 THEN NULL ELSE random() * 12 - 1 END AS f,
       CASE WHEN random() < 0.05 THEN NULL ELSE (random() * 8)::int END AS i,
       CASE WHEN random() < 0.3 THEN 3 ELSE (random() * 120)::bigint END AS b,
       round((random() * 4 - 1.5)::numeric, 1) AS n,
       (random() * 3.5)::real AS r,
       CASE WHEN g <= 2 THEN 'NaN'::float8 WHEN g <= 4 THEN 'Infinity'::float8
            WHEN g % 3 = 0 THEN '-0'::float8 ELSE round(random() * 9) - 4 END AS s,
       CASE WHEN random() < 0.3 THEN NULL ELSE (ARRAY['a', 'b', 'c', 'd', 'e'])[1 + (random() * 4)::int] END AS cat,
       random() < 0.5 AS flag
FROM generate_series(1, 1200) g;
-- tiny and degenerate sides
CREATE TABLE d_one AS SELECT * FROM d_ref WHERE f IS NOT NULL AND cat IS NOT NULL LIMIT 1;
CREATE TABLE d_two AS SELECT * FROM d_cur WHERE f IS NOT NULL LIMIT 2;
CREATE TABLE d_const AS SELECT 5::float8 AS f, 5 AS i, 5::bigint AS b, 5::numeric AS n, 5::real AS r,
                               5::float8 AS s, 'a' AS cat, true AS flag FROM generate_series(1, 50);
CREATE TABLE d_nulls AS SELECT * FROM d_ref WHERE false
UNION ALL SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM generate_series(1, 5);

-- every pair of sides, bins 2, 3, 10, 50: drift equals the reference (PSI
-- to 1e-12, KS exactly: the same divisions of the same counts), and the
-- status follows the PSI
WITH pairs(ref, cur) AS (VALUES ('d_ref', 'd_cur'), ('d_cur', 'd_ref'), ('d_ref', 'd_ref'),
                                ('d_one', 'd_cur'), ('d_ref', 'd_two'), ('d_const', 'd_cur'),
                                ('d_ref', 'd_const'), ('d_nulls', 'd_cur'), ('d_ref', 'd_nulls')),
cols(col, num) AS (VALUES ('f', true), ('i', true), ('b', true), ('n', true), ('r', true),
                          ('s', true), ('cat', false), ('flag', false)),
cmp AS (
	SELECT p.ref, p.cur, k.bins, d.feature, d.psi, d.ks, d.status, x.psi AS want_psi, x.ks AS want_ks
	FROM pairs p, unnest('{2,3,10,50}'::int[]) AS k(bins),
	     pgpoly.drift(p.ref, p.cur, bins => k.bins) AS d
	JOIN cols ON cols.col = d.feature,
	     ref_drift(p.ref, p.cur, d.feature, k.bins, cols.num) AS x)
SELECT count(*) AS compared,
       count(*) FILTER (WHERE psi IS NOT NULL) AS with_psi,
       count(*) FILTER (WHERE ks IS NOT NULL) AS with_ks,
       count(*) FILTER (WHERE psi >= 0.25) AS drifting,
       count(*) FILTER (WHERE psi < 0.1) AS stable,
       array_agg(DISTINCT format('%s/%s/%s/%s: psi %s vs %s, ks %s vs %s', ref, cur, bins, feature,
                                 psi, want_psi, ks, want_ks))
         FILTER (WHERE (psi IS NULL) <> (want_psi IS NULL) OR abs(psi - want_psi) > 1e-12
                    OR ks IS DISTINCT FROM want_ks
                    OR status IS DISTINCT FROM pgpoly._drift_status(want_psi)) AS mismatches
FROM cmp;

-- the same through queries (one scan of each side per feature)
CREATE TABLE d_ref_q AS SELECT s, f FROM d_ref WHERE i > 1;
CREATE TABLE d_cur_q AS SELECT f, s FROM d_cur;
SELECT d.feature, abs(d.psi - x.psi) < 1e-12 AS psi_ok, d.ks = x.ks AS ks_ok
FROM pgpoly.drift('SELECT s, f FROM d_ref WHERE i > 1', 'SELECT f, s FROM d_cur', bins => 7) AS d,
     ref_drift('d_ref_q', 'd_cur_q', d.feature, 7, true) AS x;

-- the C part on its own: empty samples give NULLs, NaN sorts last and -0 = 0
SELECT * FROM pgpoly._drift_numeric_bins('{}', '{1}', 2);
SELECT * FROM pgpoly._drift_numeric_bins('{1,2,3,4}', '{}', 2);
SELECT * FROM pgpoly._drift_numeric_bins('{NaN,1,-0,0,2,NaN}', '{0,NaN,-0}', 3);
-- a numeric value beyond float8 is an error, as its cast is
SELECT * FROM pgpoly.drift('SELECT 1e309::numeric AS v', 'SELECT 1::numeric AS v');
-- an edge interpolated beyond float8 is percentile_cont's Infinity (not an overflow ERROR)
SELECT * FROM pgpoly._drift_numeric_bins('{-1e308,1e308}', '{0}', 2);
-- bad arguments of the C part (it is callable on its own)
SELECT * FROM pgpoly._drift_numeric_bins('{1,NULL}', '{1}', 2);
SELECT * FROM pgpoly._drift_numeric_bins('{{1,2},{3,4}}', '{1}', 2);
SELECT * FROM pgpoly._drift_numeric_bins('{1}', '{1}', 1);
RESET extra_float_digits;

-- Clean up
DROP TABLE mon_ref, mon_cur;
DROP TABLE diff_good, diff_bad, d_ref, d_cur, d_one, d_two, d_const, d_nulls, d_ref_q, d_cur_q;
DROP FUNCTION ref_drift(text, text, text, int, bool);
DELETE FROM pgpoly.registered_models WHERE name = 'diff_m';
DROP VIEW mon_partitions;
DROP FUNCTION mon_err(text);
TRUNCATE pgpoly.prediction_labels;
SELECT pgpoly.drop_prediction_partitions('infinity') > 0 AS dropped_all;
DELETE FROM pgpoly.predictions;
DELETE FROM pgpoly.registered_models WHERE name = 'mon_churn';
DROP OWNED BY regress_mon_writer, regress_mon_reader;
DROP ROLE regress_mon_writer, regress_mon_reader;
