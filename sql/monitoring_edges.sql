--
-- Monitoring edge cases: what counts as a value, and the names of far months.
--
\set VERBOSITY terse
SET client_min_messages = warning;
-- the SQLSTATE and message of a statement's error ('ok' if none)
CREATE FUNCTION me_err(q text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $f$;

-- drift: a composite value with NULL fields is a value (count() counts it, as
-- feature_stats does), not a missing one; SQL's "row IS NOT NULL" is false for
-- it.  Compared with the definition of API.md 6 spelled out in plain SQL:
-- categories by text form over the values that are not the null value.
CREATE TYPE me_pair AS (a int, b int);
CREATE TABLE me_ref (c me_pair, t text);
INSERT INTO me_ref VALUES (ROW(1, NULL), 'x'), (ROW(1, NULL), 'x'), (ROW(2, 2), 'y'),
                          (ROW(NULL, NULL), ''), (NULL, NULL);
CREATE TABLE me_cur (c me_pair, t text);
INSERT INTO me_cur VALUES (ROW(1, NULL), 'x'), (ROW(NULL, NULL), ''), (ROW(3, NULL), 'z'), (NULL, NULL);
CREATE FUNCTION me_psi(ref regclass, cur regclass, col text) RETURNS float8 LANGUAGE plpgsql AS $f$
DECLARE v float8;
BEGIN
	EXECUTE format($q$
		WITH r AS (SELECT %3$I::text AS v, count(*) AS n FROM %1$s WHERE num_nulls(%3$I) = 0 GROUP BY 1),
		c AS (SELECT %3$I::text AS v, count(*) AS n FROM %2$s WHERE num_nulls(%3$I) = 0 GROUP BY 1),
		b AS (SELECT r.n AS nr, coalesce(c.n, 0) AS nc FROM r LEFT JOIN c USING (v)
			  UNION ALL SELECT 0, coalesce(sum(c.n), 0) FROM c WHERE v NOT IN (SELECT v FROM r)),
		p AS (SELECT greatest(nr::float8 / (SELECT sum(n) FROM r), 0.0001) AS pr,
					 greatest(nc::float8 / (SELECT sum(n) FROM c), 0.0001) AS pc FROM b)
		SELECT sum((pc - pr) * ln(pc / pr)) FROM p$q$, ref, cur, col) INTO v;
	RETURN v;
END $f$;
SELECT d.feature, d.psi IS NOT NULL AS has_psi, abs(d.psi - me_psi('me_ref', 'me_cur', d.feature)) < 1e-12 AS psi_ok,
       d.ks, d.status
FROM pgpoly.drift('me_ref', 'me_cur') d ORDER BY d.feature;
-- a current side whose only values have NULL fields still has values
SELECT d.feature, d.psi IS NOT NULL AS has_psi, d.status
FROM pgpoly.drift('me_ref', $$SELECT ROW(1, NULL)::me_pair AS c$$) d;
-- and feature_stats-like counting agrees: 4 values in the reference
SELECT count(c) AS values_in_ref FROM me_ref;
DROP FUNCTION me_psi(regclass, regclass, text);
DROP TABLE me_ref, me_cur;
DROP TYPE me_pair;

-- retention: the partition of a month of year 10000 or later (a five-digit
-- name) is dropped like any other once its whole month is before older_than.
-- Each drop is rolled back: it also drops the other tests' partitions.
SELECT pgpoly.register_model_version('me_m', 's3://me') AS v;
SELECT pgpoly.log_prediction('me_m', 1, 'e', '1', ts => '10000-01-15 00:00+00') > 0 AS logged;
SELECT pgpoly.create_prediction_partitions('12345-06-01 00:00+00', '12345-06-02 00:00+00') AS made;
CREATE VIEW me_far AS
  SELECT string_agg(c.relname, ', ' ORDER BY c.relname) AS far_partitions
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
  WHERE i.inhparent = 'pgpoly.predictions'::regclass AND c.relname ~ '_[0-9]{5}_';
TABLE me_far;
BEGIN;
SELECT pgpoly.drop_prediction_partitions('10000-01-31 23:59:59+00') >= 0 AS dropped;
TABLE me_far;
SELECT pgpoly.drop_prediction_partitions('10000-02-01 00:00+00') >= 1 AS dropped;
TABLE me_far;
SELECT pgpoly.drop_prediction_partitions('12345-07-01 00:00+00') = 1 AS dropped_one;
TABLE me_far;
ROLLBACK;
BEGIN;
SELECT pgpoly.drop_prediction_partitions('infinity') >= 2 AS dropped;
TABLE me_far;
ROLLBACK;
DROP VIEW me_far;
DROP TABLE pgpoly.predictions_10000_01, pgpoly.predictions_12345_06;

-- a role that may not create partitions logging into a month without one, in a
-- session far west of UTC: the error names the month as the partitions are cut
-- (in UTC) and the partition, not the month's first instant in local time
-- ("2040-02-29 21:00:00-03", the month before's last day)
CREATE ROLE regress_me_serving;
GRANT USAGE ON SCHEMA pgpoly TO regress_me_serving;
GRANT INSERT, SELECT (prediction_id) ON pgpoly.predictions TO regress_me_serving;
GRANT SELECT ON pgpoly.registered_models, pgpoly.model_versions, pgpoly.model_aliases
  TO regress_me_serving;
SET timezone = 'America/Sao_Paulo';
SET ROLE regress_me_serving;
SELECT me_err('SELECT pgpoly.log_prediction(''me_m'', 1, ''e'', ''1'', ts => ''2040-03-01 10:00:00+00'')') AS error;
SELECT me_err('SELECT pgpoly.log_prediction(''me_m'', 1, ''e'', ''1'', ts => ''0044-03-15 00:00:00+00 BC'')') AS error;
RESET ROLE;
RESET timezone;
REVOKE ALL ON pgpoly.registered_models, pgpoly.model_versions, pgpoly.model_aliases
  FROM regress_me_serving;
REVOKE ALL ON pgpoly.predictions FROM regress_me_serving;
REVOKE ALL ON SCHEMA pgpoly FROM regress_me_serving;
DROP ROLE regress_me_serving;

-- log_label replacing a label the caller's UPDATE cannot change (row-level
-- security hides it, or a trigger skips the update): the INSERT keeps meeting
-- it, and the upsert looped forever; now an ERROR (42501).  statement_timeout
-- only bounds the test.
SELECT pgpoly.log_prediction('me_m', 1, 'e', '1', request_id => 'me-r1', ts => '2089-07-10 00:00+00') > 0 AS logged;
SELECT pgpoly.log_prediction('me_m', 1, 'e', '1', request_id => 'me-r2', ts => '2089-07-10 00:00+00') > 0 AS logged;
SELECT pgpoly.log_label('me-r1', '{"team": "b"}');
CREATE ROLE regress_me_labeler;
GRANT USAGE ON SCHEMA pgpoly TO regress_me_labeler;
GRANT SELECT (request_id) ON pgpoly.predictions TO regress_me_labeler;
GRANT SELECT, INSERT, UPDATE ON pgpoly.prediction_labels TO regress_me_labeler;
ALTER TABLE pgpoly.prediction_labels ENABLE ROW LEVEL SECURITY;
CREATE POLICY me_team_a ON pgpoly.prediction_labels TO regress_me_labeler
  USING (label->>'team' = 'a') WITH CHECK (label->>'team' = 'a');
SET ROLE regress_me_labeler;
SET statement_timeout = '20s';
SELECT me_err('SELECT pgpoly.log_label(''me-r1'', ''{"team": "a"}'')') AS error;
-- its own team's labels it logs and replaces
SELECT pgpoly.log_label('me-r2', '{"team": "a", "v": 1}');
SELECT pgpoly.log_label('me-r2', '{"team": "a", "v": 2}');
RESET statement_timeout;
RESET ROLE;
SELECT request_id, label FROM pgpoly.prediction_labels WHERE request_id LIKE 'me-%' ORDER BY 1;
DROP POLICY me_team_a ON pgpoly.prediction_labels;
ALTER TABLE pgpoly.prediction_labels DISABLE ROW LEVEL SECURITY;
-- a trigger that skips updates (labels frozen once logged)
CREATE FUNCTION me_freeze() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER me_freeze BEFORE UPDATE ON pgpoly.prediction_labels
  FOR EACH ROW EXECUTE FUNCTION me_freeze();
SET statement_timeout = '20s';
SELECT me_err('SELECT pgpoly.log_label(''me-r1'', ''{"team": "c"}'')') AS error;
RESET statement_timeout;
DROP TRIGGER me_freeze ON pgpoly.prediction_labels;
DROP FUNCTION me_freeze();
DELETE FROM pgpoly.prediction_labels WHERE request_id LIKE 'me-%';
DROP TABLE pgpoly.predictions_2089_07;
REVOKE ALL ON pgpoly.prediction_labels, pgpoly.predictions FROM regress_me_labeler;
REVOKE ALL ON SCHEMA pgpoly FROM regress_me_labeler;
DROP ROLE regress_me_labeler;
DROP FUNCTION me_err(text);

-- a prediction error without a hint sends none (it sent an empty one, shown
-- as an empty "HINT:" line); one with a hint keeps it
\set VERBOSITY default
\set SHOW_CONTEXT never
SELECT pgpoly.log_predictions('[{"model": "me_m", "version": 1, "prediction": 1, "version": "x"}]');
SELECT pgpoly.log_predictions('[{"model": "me_m", "version": 1, "prediction": null}]');
SELECT pgpoly.log_prediction('me_m', 7, 'e', '1');
SELECT pgpoly.log_prediction('me_m', NULL, 'e', '1');
\set VERBOSITY terse
\set SHOW_CONTEXT errors
