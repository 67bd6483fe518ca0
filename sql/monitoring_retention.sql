--
-- Monitoring leftovers: log_label's time must be finite (as a prediction's),
-- and retention (drop_prediction_partitions) takes the labels of the
-- predictions it drops with them, keeping a label while its request_id still
-- has a prediction in a month that is kept.
--
\set VERBOSITY terse
SET client_min_messages = warning;
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';

-- The SQLSTATE and message of a statement ('ok' if none).
CREATE FUNCTION ret_err(cmd text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE cmd;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

-- a clean log: what earlier tests left is dropped (with their labels)
SELECT pgpoly.drop_prediction_partitions('infinity') >= 0 AS clean;
DELETE FROM pgpoly.prediction_labels;
SELECT pgpoly.register_model_version('ret_m', 's3://ret/1') AS version;

--
-- log_label with a time that is not finite: 22023 naming ts, as
-- log_prediction's (it stored a label at 'infinity', which no window of
-- label times ever reaches, and '-infinity', before every prediction)
--
SELECT pgpoly.log_prediction('ret_m', 1, 'e', '1', request_id => 'ret-now') IS NOT NULL AS logged;
SELECT ret_err($$SELECT pgpoly.log_label('ret-now', '1', 'infinity')$$) AS infinity,
       ret_err($$SELECT pgpoly.log_label('ret-now', '1', '-infinity')$$) AS minus_infinity;
SELECT count(*) AS labels_stored FROM pgpoly.prediction_labels;
-- NULL still means now, and a finite time is kept
SELECT pgpoly.log_label('ret-now', '1', NULL);
SELECT ts BETWEEN now() - interval '1 hour' AND now() AS null_is_now FROM pgpoly.prediction_labels WHERE request_id = 'ret-now';
SELECT pgpoly.log_label('ret-now', '2', '2020-05-01 10:00+00');
SELECT label, ts FROM pgpoly.prediction_labels WHERE request_id = 'ret-now';

--
-- Retention drops the labels of the dropped predictions: a label whose
-- request_id has no prediction left goes; one whose request_id also has a
-- prediction in a kept month stays (it labels that one too).
--
SELECT pgpoly.create_prediction_partitions('2020-01-01', '2020-03-01') AS created;
SELECT pgpoly.log_predictions('[
  {"model": "ret_m", "version": 1, "prediction": 1, "request_id": "ret-jan", "ts": "2020-01-10T00:00:00Z"},
  {"model": "ret_m", "version": 1, "prediction": 1, "request_id": "ret-feb", "ts": "2020-02-10T00:00:00Z"},
  {"model": "ret_m", "version": 1, "prediction": 1, "request_id": "ret-both", "ts": "2020-01-11T00:00:00Z"},
  {"model": "ret_m", "version": 1, "prediction": 2, "request_id": "ret-both", "ts": "2020-03-11T00:00:00Z"},
  {"model": "ret_m", "version": 1, "prediction": 1, "request_id": "ret-twice", "ts": "2020-01-12T00:00:00Z"},
  {"model": "ret_m", "version": 1, "prediction": 2, "request_id": "ret-twice", "ts": "2020-02-12T00:00:00Z"},
  {"model": "ret_m", "version": 1, "prediction": 1, "request_id": "ret-mar", "ts": "2020-03-10T00:00:00Z"},
  {"model": "ret_m", "version": 1, "prediction": 1, "ts": "2020-01-13T00:00:00Z"}]') AS logged;
SELECT pgpoly.log_label(r, to_jsonb(r)) FROM unnest(ARRAY['ret-jan', 'ret-feb', 'ret-both', 'ret-twice', 'ret-mar']) r;
-- January and February go; March and the current month stay
SELECT pgpoly.drop_prediction_partitions('2020-03-01') AS dropped;
SELECT request_id FROM pgpoly.prediction_labels ORDER BY 1;
-- every label left labels a prediction
SELECT count(*) AS orphans FROM pgpoly.prediction_labels l
WHERE NOT EXISTS (SELECT FROM pgpoly.predictions p WHERE p.request_id = l.request_id);
SELECT request_id, label FROM pgpoly.labeled_predictions ORDER BY 1;
-- a label logged again after its month is dropped has nothing to label
SELECT ret_err($$SELECT pgpoly.log_label('ret-jan', '1')$$) AS relabel_dropped;

SELECT pgpoly.drop_prediction_partitions('infinity') >= 2 AS dropped_all;
SELECT count(*) AS labels_left FROM pgpoly.prediction_labels;
DROP FUNCTION ret_err(text);
