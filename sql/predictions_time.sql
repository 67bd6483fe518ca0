--
-- The prediction log at the ends of the timestamptz range: a month is a
-- partition only if the whole month is in range (December 4714 BC to
-- November 294276, UTC).  A time in the first or last month failed with a
-- bare "timestamp out of range" (from the month's start or end); it is now
-- an error naming ts (22008), and the months next to them work, in any
-- TimeZone, created, routed and dropped.
--
\set VERBOSITY terse
\set SHOW_CONTEXT never
SET client_min_messages = warning;
SET timezone = 'Asia/Kathmandu';
SET datestyle = 'SQL, DMY';

CREATE FUNCTION pt_err(cmd text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE cmd;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
SELECT pgpoly.register_model_version('pt_m', 's3://pt/1');

SELECT t, pt_err(format('SELECT pgpoly.log_prediction(''pt_m'', 1, NULL, ''{}'', ts => %L)', t)) AS single,
       pt_err(format('SELECT pgpoly.log_predictions(%L)',
                     jsonb_build_array(jsonb_build_object('model', 'pt_m', 'version', 1, 'prediction', 1, 'ts', t)))) AS batch
FROM unnest('{4714-11-24 00:00:00+00 BC,4714-11-30 23:59:59.999999+00 BC,294276-12-01 00:00:00+00,294276-12-31 23:59:59.999999+00}'::text[]) t;
SELECT pt_err($$SELECT pgpoly.create_prediction_partitions('294276-10-15 00:00+00', '294276-12-15 00:00+00')$$) AS last_month,
       pt_err($$SELECT pgpoly.create_prediction_partitions('4714-11-25 00:00+00 BC', '4714-12-15 00:00+00 BC')$$) AS first_month;

-- the months next to them: created, routed (fast path and single) and dropped
SELECT pgpoly.log_prediction('pt_m', 1, NULL, '"a"', ts => '4714-12-01 00:00:00+00 BC') > 0 AS first_ok,
       pgpoly.log_predictions('[{"model": "pt_m", "version": 1, "prediction": "b", "ts": "294276-11-30 23:59:59.999999+00"},
                                {"model": "pt_m", "version": 1, "prediction": "c", "ts": "294276-11-01 05:45:00"}]') AS last_ok;
SET timezone = 'UTC';
SELECT prediction, ts, tableoid::regclass AS part FROM pgpoly.predictions WHERE model_name = 'pt_m' ORDER BY ts;
-- retention over them (only the first month is old enough here)
SELECT pgpoly.drop_prediction_partitions('4714-12-31 23:59:59.999999+00 BC') AS month_not_over,
       pgpoly.drop_prediction_partitions('4713-01-01 00:00:00+00 BC') AS first_dropped;
SELECT prediction FROM pgpoly.predictions WHERE model_name = 'pt_m' ORDER BY ts;
DROP TABLE pgpoly.predictions_294276_11;
-- 120 months across 1 BC / 1 AD (no year 0 between them) are within the
-- limit; 121 are not
SELECT pgpoly.create_prediction_partitions('0005-01-01 00:00:00+00 BC', '0005-12-01 00:00:00+00') AS made;
SELECT pt_err($$SELECT pgpoly.create_prediction_partitions('0005-01-01 00:00:00+00 BC', '0006-01-01 00:00:00+00')$$);
SELECT pgpoly.drop_prediction_partitions('0006-01-01 00:00:00+00') AS dropped;
DELETE FROM pgpoly.registered_models WHERE name = 'pt_m';
DROP FUNCTION pt_err(text);
RESET timezone;
RESET datestyle;
