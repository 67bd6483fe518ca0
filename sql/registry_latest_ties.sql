--
-- latest_metrics (and so search_runs' metric filters and order_by) when a
-- run logs several values of a key at the same step and timestamp.  MLflow's
-- SQL store (SqlAlchemyStore._update_latest_metrics_if_necessary) replaces
-- the latest value only by one whose (step, timestamp, value) is strictly
-- greater, where the value compared is the stored one (sanitize_metric_value):
-- NaN as 0, +/-Infinity as +/-1.7976931348623157e308.  So on a tie of step
-- and timestamp the largest value wins with NaN counting as 0, and on a
-- complete tie the first logged stays.  Differential: every run's latest
-- value against that rule replayed here over the history in logging order.
--
\set VERBOSITY terse
SET client_min_messages = warning;
SET timezone = 'UTC';

-- Runs named after their history (values logged in this order, all at step
-- 3 and one timestamp, unless the name says otherwise).
CREATE TABLE lt_cases (name text, vals float8[], steps int[]);
INSERT INTO lt_cases VALUES
  ('half_nan',      '{0.5,NaN}',  NULL),       -- MLflow: 0.5 (NaN counts as 0)
  ('nan_half',      '{NaN,0.5}',  NULL),       -- 0.5
  ('neg_nan',       '{-1,NaN}',   NULL),       -- NaN (0 > -1)
  ('nan_neg',       '{NaN,-1}',   NULL),       -- NaN
  ('zero_nan',      '{0,NaN}',    NULL),       -- 0: a tie, the first stays
  ('nan_zero',      '{NaN,0}',    NULL),       -- NaN
  ('max_inf',       '{1.7976931348623157e308,Infinity}', NULL),  -- the max: a tie
  ('inf_max',       '{Infinity,1.7976931348623157e308}', NULL),  -- Infinity
  ('negmax_neginf', '{-1.7976931348623157e308,-Infinity}', NULL),
  ('two_three',     '{2,3}',      NULL),       -- 3
  ('nan_later_step', '{5,NaN}',   '{1,2}'),    -- NaN: the higher step
  ('nan_earlier_step', '{NaN,5}', '{2,1}');    -- NaN

-- One run per case, each history logged value by value in array order.
DO $$
DECLARE
  c lt_cases;
  r uuid;
BEGIN
  FOR c IN SELECT * FROM lt_cases ORDER BY name LOOP
    r := pgpoly.start_run('lt_exp', c.name);
    UPDATE pgpoly.runs SET start_time = '2024-01-01'::timestamptz
      + (SELECT count(*) FROM lt_cases x WHERE x.name < c.name) * interval '1 min'
    WHERE run_id = r;
    FOR i IN 1..cardinality(c.vals) LOOP
      PERFORM pgpoly.log_metric(r, 'm', c.vals[i], coalesce(c.steps[i], 3),
                                '2024-01-01 12:00+00');
    END LOOP;
  END LOOP;
END $$;

-- MLflow's rule, replayed over a run's history in logging order.
CREATE FUNCTION lt_mlflow_latest(r uuid, k text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE
  m record;
  best_step bigint;
  best_ts timestamptz;
  best_sv float8;
  best float8;
  sv float8;
BEGIN
  FOR m IN SELECT * FROM pgpoly.metrics WHERE run_id = r AND key = k ORDER BY metric_id LOOP
    sv := CASE WHEN m.value = 'NaN' THEN 0
               WHEN m.value = 'Infinity' THEN 1.7976931348623157e308
               WHEN m.value = '-Infinity' THEN -1.7976931348623157e308
               ELSE m.value END;
    IF best_step IS NULL OR (m.step, m.ts, sv) > (best_step, best_ts, best_sv) THEN
      best_step := m.step;
      best_ts := m.ts;
      best_sv := sv;
      best := m.value;
    END IF;
  END LOOP;
  RETURN best;
END $$;

SELECT r.run_name, l.value AS latest, lt_mlflow_latest(r.run_id, 'm') AS mlflow,
       l.value IS NOT DISTINCT FROM lt_mlflow_latest(r.run_id, 'm') AS same
FROM pgpoly.runs r JOIN pgpoly.experiments e USING (experiment_id)
LEFT JOIN pgpoly.latest_metrics l ON l.run_id = r.run_id AND l.key = 'm'
WHERE e.name = 'lt_exp'
ORDER BY r.run_name;

-- search_runs filters and orders by those latest values.
CREATE FUNCTION lt(filter text, order_by text DEFAULT NULL) RETURNS text LANGUAGE sql AS $$
  SELECT coalesce(string_agg(s.run_name, ' ' ORDER BY s.ordinality), '(none)')
  FROM pgpoly.search_runs('lt_exp', filter, order_by) WITH ORDINALITY s
$$;
SELECT lt('metrics.m > 0.4') AS above_04;
SELECT lt('metrics.m != 0.5') AS not_half;
SELECT lt(NULL, 'metrics.m DESC, attributes.run_name') AS by_m_desc;

-- The latest row of a key is still read with one index probe.
SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF)
SELECT value FROM pgpoly.latest_metrics
WHERE run_id = '00000000-0000-0000-0000-000000000000' AND key = 'm';
RESET enable_seqscan;
RESET enable_bitmapscan;
