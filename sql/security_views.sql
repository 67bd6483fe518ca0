--
-- pgpoly's views read their tables with the rights of the role querying
-- them (security_invoker), so privileges and row-level security an admin
-- puts on pgpoly.metrics, pgpoly.predictions or pgpoly.prediction_labels
-- hold through latest_metrics and labeled_predictions too, as they hold
-- for a query of the tables.  sync_status is the exception, on purpose:
-- PUBLIC reads it without any right on the sync tables.
--
\set VERBOSITY terse

-- Every view of the extension, and whether it runs as its caller.
SELECT c.relname, coalesce('security_invoker=true' = ANY (c.reloptions), false) AS invoker
  FROM pg_class c JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pgpoly')
   AND c.relkind = 'v'
 ORDER BY 1;

-- A reader as README's reader/writer pattern makes it: SELECT on the
-- schema's tables (and views).
CREATE ROLE regress_sv_reader;
GRANT USAGE ON SCHEMA pgpoly TO regress_sv_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA pgpoly TO regress_sv_reader;
-- A role granted only the view.
CREATE ROLE regress_sv_viewer;
GRANT USAGE ON SCHEMA pgpoly TO regress_sv_viewer;
GRANT SELECT ON pgpoly.latest_metrics, pgpoly.labeled_predictions TO regress_sv_viewer;

SELECT pgpoly.start_run('sv_exp', 'r1') AS run \gset
SELECT pgpoly.log_metric(:'run', 'auc', 0.7, 1), pgpoly.log_metric(:'run', 'auc', 0.8, 2),
       pgpoly.log_metric(:'run', 'secret_loss', 0.1, 1);
SELECT pgpoly.register_model_version('sv_model', 's3://sv/1');
SELECT pgpoly.log_prediction('sv_model', 1, 'u1', '1', request_id => 'sv-open',
                             ts => '2096-03-01 00:00+00') IS NOT NULL AS logged,
       pgpoly.log_prediction('sv_model', 1, 'u2', '2', request_id => 'sv-hidden',
                             ts => '2096-03-01 00:00+00') IS NOT NULL AS logged;
SELECT pgpoly.log_label('sv-open', '0'), pgpoly.log_label('sv-hidden', '1');

-- The admin hides metrics whose key starts with secret_, and the
-- predictions and labels of request sv-hidden, from the reader.
ALTER TABLE pgpoly.metrics ENABLE ROW LEVEL SECURITY;
CREATE POLICY sv_metrics ON pgpoly.metrics FOR SELECT USING (key NOT LIKE 'secret\_%');
ALTER TABLE pgpoly.predictions ENABLE ROW LEVEL SECURITY;
CREATE POLICY sv_predictions ON pgpoly.predictions FOR SELECT USING (request_id <> 'sv-hidden');
ALTER TABLE pgpoly.prediction_labels ENABLE ROW LEVEL SECURITY;
CREATE POLICY sv_labels ON pgpoly.prediction_labels FOR SELECT USING (request_id <> 'sv-hidden');

SET ROLE regress_sv_reader;
SELECT key, value, step FROM pgpoly.metrics WHERE run_id = :'run' ORDER BY key, step;
SELECT key, value, step FROM pgpoly.latest_metrics WHERE run_id = :'run' ORDER BY key;
SELECT request_id, label FROM pgpoly.labeled_predictions
 WHERE request_id LIKE 'sv-%' ORDER BY request_id;
RESET ROLE;

-- Without SELECT on the tables, the view alone reads nothing.
SET ROLE regress_sv_viewer;
SELECT count(*) FROM pgpoly.latest_metrics;
SELECT count(*) FROM pgpoly.labeled_predictions;
RESET ROLE;

-- sync_status stays readable by PUBLIC, which has no right on its tables.
SET ROLE regress_sv_viewer;
SELECT count(*) >= 0 AS readable FROM pgpoly.sync_status;
RESET ROLE;

-- Clean up.
DROP POLICY sv_metrics ON pgpoly.metrics;
DROP POLICY sv_predictions ON pgpoly.predictions;
DROP POLICY sv_labels ON pgpoly.prediction_labels;
ALTER TABLE pgpoly.metrics DISABLE ROW LEVEL SECURITY;
ALTER TABLE pgpoly.predictions DISABLE ROW LEVEL SECURITY;
ALTER TABLE pgpoly.prediction_labels DISABLE ROW LEVEL SECURITY;
DELETE FROM pgpoly.prediction_labels WHERE request_id LIKE 'sv-%';
DROP TABLE pgpoly.predictions_2096_03;
DELETE FROM pgpoly.registered_models WHERE name = 'sv_model';
DELETE FROM pgpoly.runs WHERE experiment_id IN
	(SELECT experiment_id FROM pgpoly.experiments WHERE name = 'sv_exp');
DELETE FROM pgpoly.experiments WHERE name = 'sv_exp';
DROP OWNED BY regress_sv_reader, regress_sv_viewer;
DROP ROLE regress_sv_reader, regress_sv_viewer;
