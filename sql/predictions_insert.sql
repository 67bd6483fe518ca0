--
-- log_predictions' direct insertion (pgpoly._prediction_insert in
-- src/predictions.c: values converted as jsonb_to_recordset converts them,
-- batches of 1000 rows per partition inserted without the executor) against
-- log_prediction called row by row, and the cases it leaves to the
-- executor's INSERT (triggers, row-level security, column privileges, a
-- read-only transaction, a partition whose columns are in another order).
--
\set VERBOSITY terse
\set SHOW_CONTEXT never
SET client_min_messages = warning;
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';

-- The SQLSTATE and message of a statement ('ok' if none).
CREATE FUNCTION ins_err(cmd text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE cmd;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

SELECT pgpoly.register_model_version('ins_m', 's3://i/1'), pgpoly.register_model_version('ins_m', 's3://i/2');
SELECT pgpoly.set_model_alias('ins_m', 'live', 2);
SELECT pgpoly.create_prediction_partitions('2011-03-01', '2011-04-01');
SELECT pgpoly.create_prediction_partitions(now(), now()) >= 0 AS this_month_ready;

-- 2,600 elements over three months (runs of one month, then alternating row
-- by row: partitions switched mid-batch), every key in every JSON form the
-- column's type takes (numbers and booleans into text, strings into numbers
-- and times, scalars into jsonb, JSON null, absent)
CREATE TABLE ins_batch AS
SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
	'model', CASE WHEN g % 3 = 0 THEN 'ins_m@live' ELSE 'ins_m' END,
	'version', CASE WHEN g % 3 = 0 THEN NULL WHEN g % 3 = 1 THEN to_jsonb(1) ELSE to_jsonb('2'::text) END,
	'entity', CASE g % 6 WHEN 0 THEN to_jsonb('e' || g) WHEN 1 THEN to_jsonb(g) WHEN 2 THEN to_jsonb(g % 4 = 2)
	                     WHEN 3 THEN jsonb_build_object('id', g, 'k', 'v') WHEN 4 THEN 'null'::jsonb END,
	'prediction', CASE g % 5 WHEN 0 THEN jsonb_build_object('p', g) WHEN 1 THEN to_jsonb(g / 7.0)
	                         WHEN 2 THEN to_jsonb('s' || g) WHEN 3 THEN to_jsonb(g % 2 = 0)
	                         ELSE jsonb_build_array(g, 'x', NULL) END,
	'features', CASE g % 4 WHEN 0 THEN jsonb_build_object('x', g, 'y', repeat('f', g % 50))
	                       WHEN 1 THEN 'null'::jsonb WHEN 2 THEN to_jsonb(g) END,
	'confidence', CASE g % 7 WHEN 0 THEN to_jsonb(g / 2600.0) WHEN 1 THEN to_jsonb((g / 13.0)::text)
	                         WHEN 2 THEN to_jsonb('1e-3'::text) WHEN 3 THEN to_jsonb(12345678901234567890.5) END,
	'latency_ms', CASE g % 5 WHEN 0 THEN to_jsonb(g % 9) WHEN 1 THEN to_jsonb('0.25'::text)
	                         WHEN 2 THEN to_jsonb('Infinity'::text) WHEN 3 THEN to_jsonb(0.1234567890123456789) END,
	'request_id', CASE WHEN g % 2 = 0 THEN to_jsonb('r' || g) WHEN g % 9 = 1 THEN to_jsonb(g) END,
	'ts', CASE WHEN g % 10 = 5 THEN NULL WHEN g % 10 = 6 THEN 'null'::jsonb
	           WHEN g <= 1200 THEN to_jsonb('2011-03-05 10:00:00+00'::timestamptz + g * interval '1 second')
	           WHEN g <= 2000 THEN to_jsonb('2011-04-' || (10 + g % 15) || 'T01:02:03.456789+05:30')
	           WHEN g % 2 = 0 THEN to_jsonb('March 9, 2011 ' || (g % 24) || ':00 UTC')
	           ELSE to_jsonb('2011-04-30 23:59:59.999999-00'::text) END))
	ORDER BY g) AS j
FROM generate_series(1, 2600) g;

-- the batch inserted by _prediction_insert itself (every row: not left to
-- the executor), then logged by log_predictions, then each element by
-- log_prediction, its values converted by jsonb_to_record: the same rows, in
-- the same partitions, three times
BEGIN;	-- one now()
SELECT pgpoly._prediction_insert('pgpoly.predictions', j, '{ins_m,ins_m,ins_m@live}', '{1,2,NULL}',
                                 '{ins_m,ins_m,ins_m}', '{1,2,2}') AS direct
FROM ins_batch;
SELECT pgpoly.log_predictions(j) AS logged FROM ins_batch;
SELECT count(*) AS single_calls
FROM ins_batch, jsonb_array_elements(j) AS e(v),
     jsonb_to_record(e.v) AS r(model text, version int, entity text, prediction jsonb, features jsonb,
                               confidence float8, latency_ms float8, request_id text, ts timestamptz),
     pgpoly.log_prediction(r.model, r.version, r.entity, r.prediction, r.features, r.confidence,
                           r.latency_ms, r.request_id, r.ts) AS id;
WITH rows AS (
	SELECT (row_number() OVER (ORDER BY p.prediction_id) - 1) / 2600 AS run,
	       (row_number() OVER (ORDER BY p.prediction_id) - 1) % 2600 AS i,
	       p.tableoid::regclass AS part, p.*
	FROM pgpoly.predictions p WHERE p.model_name = 'ins_m'),
single AS (SELECT * FROM rows WHERE run = 2)
SELECT b.run, count(*) AS compared,
       count(*) FILTER (WHERE (b.part, b.model_name, b.version, b.entity, b.features, b.prediction,
                               b.confidence, b.latency_ms, b.request_id, b.ts)
                              IS DISTINCT FROM
                              (s.part, s.model_name, s.version, s.entity, s.features, s.prediction,
                               s.confidence, s.latency_ms, s.request_id, s.ts)) AS different,
       count(DISTINCT b.part) AS partitions, count(DISTINCT b.version) AS versions,
       count(*) FILTER (WHERE b.ts = now()) AS ts_now
FROM (SELECT * FROM rows WHERE run < 2) b FULL JOIN single s ON s.i = b.i
GROUP BY b.run ORDER BY b.run;
COMMIT;
-- what the indexes hold is what the rows hold (the batch's index entries)
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT count(*) AS by_request_id FROM pgpoly.predictions p
WHERE p.request_id IN (SELECT 'r' || g FROM generate_series(2, 2600, 2) g);
SELECT count(*) AS by_model_ts FROM pgpoly.predictions
WHERE model_name = 'ins_m' AND version = 2 AND ts >= '2011-03-01' AND ts < '2011-05-01';
RESET enable_seqscan;
RESET enable_bitmapscan;
SELECT count(*) AS by_model_ts_seq FROM pgpoly.predictions
WHERE model_name = 'ins_m' AND version = 2 AND ts >= '2011-03-01' AND ts < '2011-05-01';
DELETE FROM pgpoly.predictions WHERE model_name = 'ins_m';

-- a bad element after the first batches were inserted: nothing is logged,
-- and the error is the one jsonb_to_recordset or the checks raise for it
SELECT ins_err(format('SELECT pgpoly.log_predictions(%L)', (
	SELECT jsonb_agg(CASE WHEN g = 1500 THEN jsonb_build_object('model', 'ins_m', 'version', 'x', 'prediction', 1)
	                      ELSE jsonb_build_object('model', 'ins_m', 'version', 1, 'prediction', g,
	                                              'ts', '2011-03-02Z') END ORDER BY g)
	FROM generate_series(1, 2100) g))) AS bad_value_late,
       ins_err(format('SELECT pgpoly.log_predictions(%L)', (
	SELECT jsonb_agg(jsonb_build_object('model', 'ins_m', 'version', 1, 'prediction', g, 'ts', '2011-03-02Z',
	                                    'latency_ms', CASE WHEN g = 1500 THEN -1 END) ORDER BY g)
	FROM generate_series(1, 2100) g))) AS failed_check_late;
SELECT count(*) AS logged_by_bad_batches FROM pgpoly.predictions WHERE model_name = 'ins_m';
-- a month without its partition after the first batches: the rows inserted
-- are undone, the partition is made and every row logged once
SELECT pgpoly.log_predictions((
	SELECT jsonb_agg(jsonb_build_object('model', 'ins_m', 'version', 1, 'prediction', g,
	                                    'ts', CASE WHEN g = 1500 THEN '1999-01-01Z' ELSE '2011-03-02Z' END) ORDER BY g)
	FROM generate_series(1, 2100) g)) AS partition_missing_late;
SELECT count(*) AS rows, count(DISTINCT prediction) AS distinct_rows, count(DISTINCT tableoid) AS partitions
FROM pgpoly.predictions WHERE model_name = 'ins_m';
DELETE FROM pgpoly.predictions WHERE model_name = 'ins_m';
DROP TABLE pgpoly.predictions_1999_01;

-- a unique index a partition was given: a duplicate in the batch fails
-- there as the INSERT fails, and nothing is logged
CREATE UNIQUE INDEX ins_unique_rid ON pgpoly.predictions_2011_03 (request_id);
SELECT ins_err($$SELECT pgpoly.log_predictions('[{"model": "ins_m", "version": 1, "prediction": 1, "request_id": "u1", "ts": "2011-03-02Z"},
                                                {"model": "ins_m", "version": 1, "prediction": 2, "request_id": "u2", "ts": "2011-03-02Z"},
                                                {"model": "ins_m", "version": 1, "prediction": 3, "request_id": "u1", "ts": "2011-03-03Z"}]')$$) AS duplicate;
SELECT count(*) AS logged_by_duplicate FROM pgpoly.predictions WHERE model_name = 'ins_m';
DROP INDEX pgpoly.ins_unique_rid;

-- the direct insertion is taken for a plain table, and left to the
-- executor's INSERT (NULL: nothing done) where only that honours the table
CREATE FUNCTION ins_direct(rows jsonb) RETURNS bigint LANGUAGE sql AS $$
	SELECT pgpoly._prediction_insert('pgpoly.predictions', rows, '{ins_m}', '{1}', '{ins_m}', '{1}')
$$;
BEGIN;
SELECT ins_direct('[{"model": "ins_m", "version": 1, "prediction": 1, "ts": "2011-03-02Z"}]') AS plain,
       ins_direct('[{"model": "ins_m", "version": 2, "prediction": 1, "ts": "2011-03-02Z"}]') AS unknown_pair,
       ins_direct('[{"model": "ins_m", "version": 1, "prediction": 1, "latency_ms": "NaN", "ts": "2011-03-02Z"}]') AS nan_latency;
ROLLBACK;

-- a row trigger on predictions (cloned to its partitions), a statement
-- trigger, a trigger on one partition: fired as by an INSERT
CREATE FUNCTION ins_upper() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.entity := upper(NEW.entity) || '/' || TG_TABLE_NAME;
	RETURN NEW;
END
$$;
CREATE TABLE ins_stmts (n int);
CREATE FUNCTION ins_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.ins_stmts VALUES (1);
	RETURN NULL;
END
$$;
CREATE TRIGGER ins_upper BEFORE INSERT ON pgpoly.predictions FOR EACH ROW EXECUTE FUNCTION ins_upper();
SELECT ins_direct('[{"model": "ins_m", "version": 1, "prediction": 1, "ts": "2011-03-02Z"}]') AS row_trigger;
SELECT pgpoly.log_predictions('[{"model": "ins_m", "version": 1, "entity": "a", "prediction": 1, "ts": "2011-03-02Z"},
                               {"model": "ins_m", "version": 1, "entity": "b", "prediction": 2, "ts": "2011-04-02Z"}]') AS logged;
DROP TRIGGER ins_upper ON pgpoly.predictions;
CREATE TRIGGER ins_count AFTER INSERT ON pgpoly.predictions FOR EACH STATEMENT EXECUTE FUNCTION ins_count();
SELECT ins_direct('[{"model": "ins_m", "version": 1, "prediction": 1, "ts": "2011-03-02Z"}]') AS statement_trigger;
SELECT pgpoly.log_predictions('[{"model": "ins_m", "version": 1, "entity": "c", "prediction": 3, "ts": "2011-03-02Z"}]') AS logged;
SELECT count(*) AS statements_counted FROM ins_stmts;
DROP TRIGGER ins_count ON pgpoly.predictions;
CREATE TRIGGER ins_upper BEFORE INSERT ON pgpoly.predictions_2011_04 FOR EACH ROW EXECUTE FUNCTION ins_upper();
SELECT pgpoly.log_predictions('[{"model": "ins_m", "version": 1, "entity": "d", "prediction": 4, "ts": "2011-03-02Z"},
                               {"model": "ins_m", "version": 1, "entity": "e", "prediction": 5, "ts": "2011-04-02Z"},
                               {"model": "ins_m", "version": 1, "entity": "f", "prediction": 6, "ts": "2011-03-03Z"}]') AS logged;
DROP TRIGGER ins_upper ON pgpoly.predictions_2011_04;
SELECT prediction, entity, tableoid::regclass FROM pgpoly.predictions WHERE model_name = 'ins_m' ORDER BY prediction_id;
DELETE FROM pgpoly.predictions WHERE model_name = 'ins_m';

-- a partition whose columns are in another order than its parent's
CREATE TABLE pgpoly.predictions_2011_05 (dropped int, LIKE pgpoly.predictions INCLUDING CONSTRAINTS);
ALTER TABLE pgpoly.predictions_2011_05 DROP COLUMN dropped;
ALTER TABLE pgpoly.predictions ATTACH PARTITION pgpoly.predictions_2011_05
	FOR VALUES FROM ('2011-05-01Z') TO ('2011-06-01Z');
SELECT pgpoly.log_predictions('[{"model": "ins_m", "version": 1, "entity": "g", "prediction": 7, "ts": "2011-03-02Z"},
                               {"model": "ins_m", "version": 1, "entity": "h", "prediction": 8, "ts": "2011-05-02Z"}]') AS logged;
SELECT prediction, entity, ts, tableoid::regclass FROM pgpoly.predictions WHERE model_name = 'ins_m' ORDER BY prediction_id;
DROP TABLE pgpoly.predictions_2011_05;
DELETE FROM pgpoly.predictions WHERE model_name = 'ins_m';

-- row-level security: the policies of an INSERT apply
CREATE ROLE regress_ins_writer NOLOGIN;
GRANT USAGE ON SCHEMA pgpoly TO regress_ins_writer;
GRANT INSERT, SELECT (prediction_id) ON pgpoly.predictions TO regress_ins_writer;
GRANT SELECT ON pgpoly.registered_models, pgpoly.model_versions, pgpoly.model_aliases TO regress_ins_writer;
ALTER TABLE pgpoly.predictions ENABLE ROW LEVEL SECURITY;
CREATE POLICY ins_v1 ON pgpoly.predictions FOR INSERT TO regress_ins_writer WITH CHECK (version = 1);
CREATE POLICY ins_read ON pgpoly.predictions FOR SELECT TO regress_ins_writer USING (true);
SET ROLE regress_ins_writer;
SELECT ins_direct('[{"model": "ins_m", "version": 1, "prediction": 1, "ts": "2011-03-02Z"}]') AS rls;
SELECT ins_err($$SELECT pgpoly.log_predictions('[{"model": "ins_m", "version": 1, "prediction": 1, "ts": "2011-03-02Z"},
                                                {"model": "ins_m", "version": 2, "prediction": 2, "ts": "2011-03-02Z"}]')$$) AS version_2,
       ins_err($$SELECT pgpoly.log_predictions('[{"model": "ins_m", "version": 1, "prediction": 3, "ts": "2011-03-02Z"}]')$$) AS version_1;
RESET ROLE;
DROP POLICY ins_v1 ON pgpoly.predictions;
DROP POLICY ins_read ON pgpoly.predictions;
ALTER TABLE pgpoly.predictions DISABLE ROW LEVEL SECURITY;
SELECT prediction, version FROM pgpoly.predictions WHERE model_name = 'ins_m' ORDER BY prediction_id;
DELETE FROM pgpoly.predictions WHERE model_name = 'ins_m';

-- INSERT on some columns only: the INSERT's privilege error
REVOKE INSERT ON pgpoly.predictions FROM regress_ins_writer;
GRANT INSERT (model_name, version, prediction, ts) ON pgpoly.predictions TO regress_ins_writer;
SET ROLE regress_ins_writer;
SELECT ins_direct('[{"model": "ins_m", "version": 1, "prediction": 1, "ts": "2011-03-02Z"}]') AS some_columns;
SELECT ins_err($$SELECT pgpoly.log_predictions('[{"model": "ins_m", "version": 1, "prediction": 1, "ts": "2011-03-02Z"}]')$$) AS some_columns;
RESET ROLE;
DROP OWNED BY regress_ins_writer;
DROP ROLE regress_ins_writer;

-- a read-only transaction: the error of the statement that inserts, nothing written
BEGIN READ ONLY;
SELECT ins_direct('[{"model": "ins_m", "version": 1, "prediction": 1, "ts": "2011-03-02Z"}]') AS read_only;
SELECT ins_err($$SELECT pgpoly.log_predictions('[{"model": "ins_m", "version": 1, "prediction": 1, "ts": "2011-03-02Z"}]')$$) AS read_only;
ROLLBACK;
SELECT count(*) AS left_behind FROM pgpoly.predictions WHERE model_name = 'ins_m';

-- columns added to predictions that log_predictions does not write get what
-- the INSERT gives them: each batch logged by the direct insertion and again
-- by the INSERT (forced by a no-op row trigger), rows and errors compared
CREATE FUNCTION ins_noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE FUNCTION ins_rows() RETURNS bigint LANGUAGE sql VOLATILE AS
	$$ SELECT count(*) FROM pgpoly.predictions WHERE model_name = 'ins_m' $$;
CREATE TABLE ins_twin (path text, k text, res text, rows jsonb);
CREATE FUNCTION ins_both(k text, batch jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	p text;
	r text;
BEGIN
	FOREACH p IN ARRAY ARRAY['direct', 'insert'] LOOP
		IF p = 'insert' THEN
			CREATE TRIGGER ins_noop BEFORE INSERT ON pgpoly.predictions
				FOR EACH ROW EXECUTE FUNCTION ins_noop();
		END IF;
		r := ins_err(format('SELECT pgpoly.log_predictions(%L)', batch));
		INSERT INTO ins_twin
		SELECT p, k, r,
		       (SELECT jsonb_agg(to_jsonb(x) - 'prediction_id' ORDER BY x.prediction_id)
		        FROM pgpoly.predictions x WHERE x.model_name = 'ins_m');
		DELETE FROM pgpoly.predictions WHERE model_name = 'ins_m';
		IF p = 'insert' THEN
			DROP TRIGGER ins_noop ON pgpoly.predictions;
		END IF;
	END LOOP;
END
$$;
CREATE DOMAIN ins_dnn AS int;
CREATE DOMAIN ins_dflt AS text DEFAULT 'domain default' CHECK (VALUE <> '');
CREATE TABLE ins_unwritten_batch AS
SELECT jsonb_agg(jsonb_build_object('model', 'ins_m', 'version', 1, 'prediction', g,
                                    'ts', '2011-03-02Z') ORDER BY g) AS j
FROM generate_series(1, 1200) g;
BEGIN;	-- the columns are added and dropped with the transaction
-- a domain column without a default whose domain refuses NULL (a constraint
-- added NOT VALID: the table may hold other tests' rows)
ALTER TABLE pgpoly.predictions ADD COLUMN d_nn ins_dnn;
ALTER DOMAIN ins_dnn ADD CONSTRAINT ins_dnn_not_null CHECK (VALUE IS NOT NULL) NOT VALID;
SELECT ins_both('domain refusing NULL', j) FROM ins_unwritten_batch;
ALTER TABLE pgpoly.predictions DROP COLUMN d_nn;
-- a domain with its own default, a column with a stable default
ALTER TABLE pgpoly.predictions ADD COLUMN d_dflt ins_dflt, ADD COLUMN note text DEFAULT 'col default';
SELECT ins_both('domain default', j) FROM ins_unwritten_batch;
-- a volatile default that reads the table: each row sees the rows before it
-- (the INSERT's), not a batch's
ALTER TABLE pgpoly.predictions ADD COLUMN seen bigint DEFAULT public.ins_rows();
SELECT ins_both('volatile default', j) FROM ins_unwritten_batch;
-- (the volatile default leaves the batch to the INSERT: NULL, nothing done)
SELECT ins_direct('[{"model": "ins_m", "version": 1, "prediction": 1, "ts": "2011-03-02Z"}]') AS volatile_default;
ALTER TABLE pgpoly.predictions DROP COLUMN seen;
-- a CHECK with a volatile function that reads the table (of predictions, of
-- one partition, of a domain of a column no key fills): each row is checked
-- once the rows before it are in the table (the INSERT's), not before its
-- batch is
ALTER TABLE pgpoly.predictions ADD CONSTRAINT ins_vchk CHECK (public.ins_rows() < 500) NOT VALID;
SELECT ins_both('volatile check', jsonb_path_query_array(j, '$[0 to 599]')) FROM ins_unwritten_batch;
SELECT ins_direct('[{"model": "ins_m", "version": 1, "prediction": 1, "ts": "2011-03-02Z"}]') AS volatile_check;
ALTER TABLE pgpoly.predictions DROP CONSTRAINT ins_vchk;
ALTER TABLE pgpoly.predictions_2011_03 ADD CONSTRAINT ins_vchk_part CHECK (public.ins_rows() < 500) NOT VALID;
SELECT ins_both('volatile check of a partition', jsonb_path_query_array(j, '$[0 to 599]')) FROM ins_unwritten_batch;
ALTER TABLE pgpoly.predictions_2011_03 DROP CONSTRAINT ins_vchk_part;
CREATE DOMAIN ins_vdom AS int CHECK (VALUE IS NOT NULL OR public.ins_rows() < 500);
ALTER TABLE pgpoly.predictions ADD COLUMN d_vol ins_vdom;
SELECT ins_both('volatile check of a domain', jsonb_path_query_array(j, '$[0 to 599]')) FROM ins_unwritten_batch;
ALTER TABLE pgpoly.predictions DROP COLUMN d_vol;
-- a column log_predictions writes made an identity GENERATED ALWAYS: the
-- INSERT's ERROR, nothing logged
ALTER TABLE pgpoly.predictions ALTER version ADD GENERATED ALWAYS AS IDENTITY;
SELECT ins_both('identity always written', j) FROM ins_unwritten_batch;
ALTER TABLE pgpoly.predictions ALTER version DROP IDENTITY;
SELECT d.k, d.res AS direct, i.res AS by_insert, d.rows IS NOT DISTINCT FROM i.rows AS same_rows,
       jsonb_array_length(d.rows) AS logged
FROM ins_twin d JOIN ins_twin i ON i.k = d.k AND i.path = 'insert'
WHERE d.path = 'direct' ORDER BY d.k;
SELECT count(DISTINCT r ->> 'seen') AS distinct_seen
FROM ins_twin, jsonb_array_elements(rows) r WHERE k = 'volatile default' AND path = 'direct';
ROLLBACK;
DROP TABLE ins_unwritten_batch;
DROP DOMAIN ins_dnn, ins_dflt;
DROP FUNCTION ins_both(text, jsonb), ins_noop(), ins_rows();

DROP TABLE ins_batch, ins_stmts;
DROP FUNCTION ins_err(text), ins_direct(jsonb), ins_upper(), ins_count();
DROP TABLE pgpoly.predictions_2011_03, pgpoly.predictions_2011_04;
DELETE FROM pgpoly.registered_models WHERE name = 'ins_m';
