--
-- log_predictions / log_prediction under attack (a review of the C walk of
-- src/predictions.c and the SQL around it).  Each block is an input that
-- gave a wrong answer before its fix; the expected output records the
-- right one.  (The behaviour that held up is in monitoring.sql.)
--
\set VERBOSITY terse
\set SHOW_CONTEXT never
SET client_min_messages = warning;
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';

-- The SQLSTATE and message of a statement ('ok' if none).
CREATE FUNCTION atk_err(cmd text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE cmd;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

SELECT pgpoly.register_model_version('atk_m', 's3://a/1'), pgpoly.register_model_version('atk_m', 's3://a/2');
SELECT pgpoly.set_model_alias('atk_m', 'live', 2);
SELECT pgpoly.create_prediction_partitions() >= 0 AS this_month_ready;

--
-- An explicit version -1 is not "no version": 'name@alias' with version -1
-- names a model called 'name@alias' (which does not exist), whether or not
-- the same batch also uses the alias (it was logged as the alias's version,
-- or failed with "failed no check", by the pair key that stood -1 for NULL).
--
SELECT count(*) AS before FROM pgpoly.predictions WHERE model_name = 'atk_m' \gset
SELECT atk_err($$SELECT pgpoly.log_prediction('atk_m@live', -1, NULL, '1')$$) AS single,
       atk_err($$SELECT pgpoly.log_predictions('[{"model": "atk_m@live", "version": -1, "prediction": 1}]')$$) AS alone,
       atk_err($$SELECT pgpoly.log_predictions('[{"model": "atk_m@live", "prediction": 1},
                                                {"model": "atk_m@live", "version": -1, "prediction": 2}]')$$) AS after_alias,
       atk_err($$SELECT pgpoly.log_predictions('[{"model": "atk_m@live", "version": -1, "prediction": 1},
                                                {"model": "atk_m@live", "prediction": 2}]')$$) AS before_alias;
-- the same in a month without its partition (the general path)
SELECT atk_err($$SELECT pgpoly.log_predictions('[{"model": "atk_m@live", "prediction": 1, "ts": "2099-03-01Z"},
                                                {"model": "atk_m@live", "version": -1, "prediction": 2, "ts": "2099-03-01Z"}]')$$) AS general_after,
       atk_err($$SELECT pgpoly.log_predictions('[{"model": "atk_m@live", "version": -1, "prediction": 1, "ts": "2099-03-01Z"},
                                                {"model": "atk_m@live", "prediction": 2, "ts": "2099-03-01Z"}]')$$) AS general_before;
SELECT count(*) - :before AS logged_by_bad_batches FROM pgpoly.predictions WHERE model_name = 'atk_m';
-- the alias and version 2 side by side still resolve to the same version
SELECT pgpoly.log_predictions('[{"model": "atk_m@live", "prediction": "a1"}, {"model": "atk_m", "version": 2, "prediction": "a2"},
                               {"model": "atk_m@live", "prediction": "a3"}]') AS logged;
SELECT prediction, model_name, version FROM pgpoly.predictions
WHERE model_name = 'atk_m' AND prediction::text LIKE '"a_"' ORDER BY prediction_id;

--
-- Which bad element a batch reports (README): the first that is not an
-- object with known keys, else the first with a value of the wrong type,
-- else the first that fails a check; not simply the first bad one.
--
SELECT atk_err($$SELECT pgpoly.log_predictions('[{"model": null, "version": 1, "prediction": 1},
                                                {"model": "atk_m", "version": 1, "prediction": 1, "bogus": 1},
                                                {"model": "atk_m", "version": "x", "prediction": 1}]')$$) AS shape_first,
       atk_err($$SELECT pgpoly.log_predictions('[{"model": null, "version": 1, "prediction": 1},
                                                {"model": "atk_m", "version": 9, "prediction": 1},
                                                {"model": "atk_m", "version": 1, "prediction": 1, "ts": "x"}]')$$) AS type_next,
       atk_err($$SELECT pgpoly.log_predictions('[{"model": "atk_m", "version": 1, "prediction": 1},
                                                {"model": "atk_m", "version": 9, "prediction": 1},
                                                {"model": null, "version": 1, "prediction": 1}]')$$) AS then_checks;

--
-- A batch is logged in the order of its elements (prediction_id increasing),
-- also when it takes the general path (here: a month without its partition)
-- with many distinct models, where the planner hashed the rows rather than
-- the pairs and the ids followed the pairs.
--
SELECT count(pgpoly.register_model_version('atk_o' || g, 's3://o')) AS registered FROM generate_series(1, 1000) g;
CREATE TABLE atk_order AS
SELECT jsonb_agg(jsonb_build_object('model', 'atk_o' || (1 + g % 1000), 'version', 1, 'prediction', g,
                                    'ts', '2099-07-07T00:00:00Z') ORDER BY g) AS j
FROM generate_series(1, 1500) g;
SELECT pgpoly.log_predictions(j) AS logged FROM atk_order;
SELECT count(*) AS rows, count(*) FILTER (WHERE p.prediction::text::int <> p.i) AS out_of_order
FROM (SELECT prediction, row_number() OVER (ORDER BY prediction_id) AS i
      FROM pgpoly.predictions WHERE ts = '2099-07-07T00:00:00Z') p;
-- the same rows in a month that has its partition (the fast path, which
-- finds each row's pair by one lookup in a map of the 1000 pairs)
BEGIN;
SELECT pgpoly.log_predictions(jsonb_agg(e.v - 'ts' ORDER BY e.i)) AS logged
FROM atk_order, jsonb_array_elements(atk_order.j) WITH ORDINALITY AS e(v, i);
SELECT count(*) AS rows, count(*) FILTER (WHERE p.prediction::text::int <> p.i) AS out_of_order,
       count(*) FILTER (WHERE p.model_name <> 'atk_o' || (1 + p.i % 1000) OR p.version <> 1) AS wrong_model
FROM (SELECT prediction, model_name, version, row_number() OVER (ORDER BY prediction_id) AS i
      FROM pgpoly.predictions WHERE model_name LIKE 'atk\_o%' AND ts = now()) p;
ROLLBACK;
DROP TABLE atk_order;

--
-- A month BC has a partition of its own: to_char's YYYY has no era, so
-- March 44 BC and March 44 took one name, and whichever came second found
-- the other's partition by name and failed with "no partition of relation
-- found".  Retention drops a BC month as the month it is.
--
SELECT pgpoly.log_prediction('atk_m', 1, NULL, '"bc"', ts => '0044-03-15 12:00:00+00 BC') > 0 AS bc_logged,
       pgpoly.log_prediction('atk_m', 1, NULL, '"ad"', ts => '0044-03-15 12:00:00+00') > 0 AS ad_logged,
       pgpoly.log_predictions('[{"model": "atk_m", "version": 1, "prediction": "bc2", "ts": "0044-03-16 00:00:00+00 BC"},
                                {"model": "atk_m", "version": 1, "prediction": "ad2", "ts": "0044-03-16 00:00:00+00"}]') AS batch_logged;
SELECT prediction, ts, tableoid::regclass FROM pgpoly.predictions WHERE ts < '0100-01-01 00:00:00+00' ORDER BY prediction_id;
SELECT pgpoly.drop_prediction_partitions('0001-01-01 00:00:00+00') AS dropped_bc;
SELECT pgpoly.drop_prediction_partitions('0044-04-01 00:00:00+00') AS dropped_ad;
SELECT count(*) AS left_before_100 FROM pgpoly.predictions WHERE ts < '0100-01-01 00:00:00+00';

--
-- The partitions a writer's call creates (as the extension's owner) go to the
-- database's default tablespace, not to the writer's default_tablespace: a
-- role without CREATE on a tablespace put them there.
--
SET allow_in_place_tablespaces = on;
CREATE TABLESPACE regress_atk_space LOCATION '';
RESET allow_in_place_tablespaces;
CREATE ROLE regress_atk_writer NOLOGIN;
GRANT USAGE ON SCHEMA pgpoly TO regress_atk_writer;
GRANT INSERT, SELECT (prediction_id) ON pgpoly.predictions TO regress_atk_writer;
GRANT EXECUTE ON FUNCTION pgpoly._prediction_partitions(timestamptz[]) TO regress_atk_writer;
GRANT SELECT ON pgpoly.registered_models, pgpoly.model_versions, pgpoly.model_aliases TO regress_atk_writer;
SET ROLE regress_atk_writer;
SELECT has_tablespace_privilege('regress_atk_space', 'CREATE') AS writer_may_create_there;
SET default_tablespace = regress_atk_space;
SELECT pgpoly.log_predictions('[{"model": "atk_m", "version": 1, "prediction": "t", "ts": "2098-02-02Z"}]') AS logged;
RESET default_tablespace;
RESET ROLE;
SELECT c.relname, t.spcname
FROM pg_class c LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace
WHERE c.relnamespace = 'pgpoly'::regnamespace AND c.relname LIKE 'predictions\_2098\_02%' ORDER BY c.relname;
DROP TABLE pgpoly.predictions_2098_02;
DROP OWNED BY regress_atk_writer;
DROP ROLE regress_atk_writer;
DROP TABLESPACE regress_atk_space;

--
-- create_prediction_partitions in a session west of UTC makes every month
-- from since's to until's: it stepped a month at a time in the session's
-- time zone, where 1 December 00:00 UTC is 30 November, so the steps fell
-- on the 31st, then the 28th, and February was skipped.
--
SET timezone = 'America/New_York';
SELECT pgpoly.create_prediction_partitions('2097-12-01 19:00:00+00', '2098-03-01 19:00:00+00') AS created;
SELECT pgpoly.create_prediction_partitions('2097-06-15 00:00:00+00', '2097-07-15 00:00:00+00') AS created;
SET timezone = 'UTC';
SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bounds
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'pgpoly.predictions'::regclass AND c.relname LIKE 'predictions\_2097%'
   OR i.inhparent = 'pgpoly.predictions'::regclass AND c.relname LIKE 'predictions\_2098%'
ORDER BY c.relname;
DROP TABLE pgpoly.predictions_2097_06, pgpoly.predictions_2097_07, pgpoly.predictions_2097_12,
           pgpoly.predictions_2098_01, pgpoly.predictions_2098_02, pgpoly.predictions_2098_03;

--
-- drop_prediction_partitions in a session west of UTC drops only the months
-- that end before older_than: it added the month to the month's start in the
-- session's time zone, so March 2077 (1 March 00:00 UTC is 28 February in New
-- York) ended on 28 March, and a retention of "before 29 March" dropped the
-- rows of 30 March.
--
SELECT pgpoly.log_predictions('[{"model": "atk_m", "version": 1, "prediction": "mar30", "ts": "2077-03-30 12:00:00+00"},
                               {"model": "atk_m", "version": 1, "prediction": "feb10", "ts": "2077-02-10 12:00:00+00"}]') AS logged;
SET timezone = 'America/New_York';
BEGIN;
SELECT pgpoly.drop_prediction_partitions('2077-03-29 12:00:00+00') > 0 AS dropped_some;
SET LOCAL timezone = 'UTC';
SELECT prediction, ts FROM pgpoly.predictions WHERE ts >= '2077-01-01 00:00:00+00' AND ts < '2078-01-01 00:00:00+00';
SELECT c.relname FROM pg_class c
WHERE c.relnamespace = 'pgpoly'::regnamespace AND c.relname IN ('predictions_2077_02', 'predictions_2077_03');
ROLLBACK;
SET timezone = 'UTC';
DROP TABLE pgpoly.predictions_2077_02, pgpoly.predictions_2077_03;

--
-- A month whose table is not a partition (detached to archive it, say): the
-- name is taken, so the partition cannot be created, and logging into that
-- month names the table in the way (42809) instead of failing with "no
-- partition of relation found for row"; nothing is logged.
--
SELECT pgpoly.create_prediction_partitions('2096-05-01 00:00:00+00', '2096-05-01 00:00:00+00') AS created;
ALTER TABLE pgpoly.predictions DETACH PARTITION pgpoly.predictions_2096_05;
SELECT atk_err($$SELECT pgpoly.log_prediction('atk_m', 1, NULL, '"x"', ts => '2096-05-05 00:00:00+00')$$) AS single;
SELECT atk_err($$SELECT pgpoly.log_predictions('[{"model": "atk_m", "version": 1, "prediction": "x",
                                                  "ts": "2096-05-05 00:00:00+00"}]')$$) AS batch;
SELECT count(*) AS logged FROM pgpoly.predictions_2096_05;
DROP TABLE pgpoly.predictions_2096_05;

--
-- _lock_partitions (the locks a writer takes before its INSERT, so that it
-- sees a partition whose creator has just committed: test/fault/
-- test_prediction_partitions.py) takes the INSERT's own locks: on the parent
-- and its partitions only, and only for a role that may INSERT into it.
--
SELECT atk_err($$SELECT pgpoly._lock_partitions('pgpoly.predictions', '{registered_models}')$$) AS not_a_partition;
SELECT pgpoly._prediction_partition_name(date_trunc('month', now(), 'UTC')) AS this_month \gset
BEGIN;
SELECT pgpoly._lock_partitions('pgpoly.predictions', ARRAY[:'this_month', 'predictions_2096_06', NULL]) AS first_missing;
SELECT CASE WHEN c.relname = :'this_month' THEN 'this month''s partition' ELSE c.relname END AS locked, l.mode
FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
WHERE l.pid = pg_backend_pid() AND c.relname LIKE 'predictions%' ORDER BY c.relname <> 'predictions', l.mode;
ROLLBACK;
CREATE ROLE regress_atk_reader NOLOGIN;
GRANT USAGE ON SCHEMA pgpoly TO regress_atk_reader;
SET ROLE regress_atk_reader;
BEGIN;
SELECT pgpoly._lock_partitions('pgpoly.predictions', ARRAY[:'this_month', 'predictions_2096_06']) AS first_missing;
SELECT count(*) AS locks_taken FROM pg_locks l
WHERE l.pid = pg_backend_pid() AND l.mode = 'RowExclusiveLock';
ROLLBACK;
RESET ROLE;
DROP OWNED BY regress_atk_reader;
DROP ROLE regress_atk_reader;

--
-- A request_id of any length is logged, labelled and joined: a request id of
-- ~9.6 kB that does not compress failed log_prediction, log_predictions and
-- log_label with "index row size ... exceeds btree version 4 maximum 2704",
-- an error naming an index rather than the element or argument.
--
SELECT string_agg(md5(i::text), '') AS long_id FROM generate_series(1, 300) i \gset
SELECT length(:'long_id') AS id_length;
SELECT pgpoly.log_prediction('atk_m', 1, 'e1', '"long1"', request_id => :'long_id') > 0 AS logged_one;
SELECT pgpoly.log_predictions(jsonb_build_array(
         jsonb_build_object('model', 'atk_m', 'version', 2, 'prediction', 'long2', 'request_id', :'long_id'),
         jsonb_build_object('model', 'atk_m@live', 'prediction', 'long3',
                            'request_id', :'long_id' || repeat(md5('x'), 20000)))) AS logged_batch;
SELECT pgpoly.log_label(:'long_id', '"first"');
SELECT pgpoly.log_label(:'long_id', '"corrected"');
SELECT pgpoly.log_label(:'long_id' || repeat(md5('x'), 20000), '"other"');
SELECT prediction, version, label, length(request_id) AS id_length
FROM pgpoly.labeled_predictions WHERE request_id LIKE left(:'long_id', 64) || '%' ORDER BY prediction;
SELECT count(*) AS labels FROM pgpoly.prediction_labels WHERE request_id LIKE left(:'long_id', 64) || '%';
-- still one label per request id, and found without reading them all
SELECT atk_err(format('INSERT INTO pgpoly.prediction_labels (request_id, label) VALUES (%L, %L)',
                      :'long_id', '"dup"')) AS second_label;
DELETE FROM pgpoly.prediction_labels WHERE request_id LIKE left(:'long_id', 64) || '%';
DELETE FROM pgpoly.predictions WHERE request_id LIKE left(:'long_id', 64) || '%';

-- Clean up what this test logged and registered, so a later test (monitoring
-- run after this one in the same database) does not see it.
DELETE FROM pgpoly.predictions WHERE model_name = 'atk_m' OR model_name LIKE 'atk\_o%';
DROP TABLE pgpoly.predictions_2099_07;
DELETE FROM pgpoly.registered_models WHERE name = 'atk_m' OR name LIKE 'atk\_o%';
DROP FUNCTION atk_err(text);
