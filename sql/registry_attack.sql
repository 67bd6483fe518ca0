--
-- Registry and monitoring under attack: NaN metrics in search_runs, values that
-- depend on session settings (a training set's content hash, categories of
-- float arrays in drift and feature_stats), drift near the float8 limits.
--
\getenv redis_port REDIS_PORT
\set VERBOSITY terse
\set SHOW_CONTEXT never
SET client_min_messages = warning;
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';

--
-- search_runs: a NaN metric matches != only, as in IEEE 754 and MLflow (in
-- PostgreSQL's float8 order NaN is above every number, so it matched > and >=);
-- in an ordering it comes after the numbers and before runs without the metric,
-- in both directions.
--
SELECT pgpoly.start_run('ra_exp', 'nan') AS r1 \gset
SELECT pgpoly.start_run('ra_exp', 'one') AS r2 \gset
SELECT pgpoly.start_run('ra_exp', 'two') AS r3 \gset
SELECT pgpoly.start_run('ra_exp', 'none') AS r4 \gset
UPDATE pgpoly.runs r SET start_time = '2024-01-01'::timestamptz + v.d * interval '1 hour'
FROM (VALUES (:'r1'::uuid, 4), (:'r2', 3), (:'r3', 2), (:'r4', 1)) v(id, d)
WHERE r.run_id = v.id;
SELECT pgpoly.log_metric(:'r1', 'loss', 'NaN'),
       pgpoly.log_metric(:'r2', 'loss', 1),
       pgpoly.log_metric(:'r3', 'loss', 2),
       pgpoly.log_metric(:'r4', 'acc', 0.5);
CREATE FUNCTION ra(filter text, order_by text DEFAULT NULL) RETURNS text LANGUAGE sql AS $$
	SELECT coalesce(string_agg(s.run_name, ' ' ORDER BY s.ordinality), '(none)')
	FROM pgpoly.search_runs('ra_exp', filter, order_by) WITH ORDINALITY s
$$;
SELECT op, ra(format('metrics.loss %s 1', op)) AS vs_1, ra(format('metrics.loss %s 1e308', op)) AS vs_1e308
FROM unnest(ARRAY['<', '<=', '=', '>', '>=', '!=']) WITH ORDINALITY u(op, i) ORDER BY i;
SELECT ra(NULL, 'metrics.loss ASC') AS asc_order,
       ra(NULL, 'metrics.loss DESC') AS desc_order,
       ra(NULL, 'metrics.loss DESC, attributes.run_name DESC') AS two_keys,
       ra(NULL, 'metrics.acc DESC, metrics.loss') AS other_metric_first;
-- an infinite metric is a number: it compares and sorts as one
SELECT pgpoly.log_metric(:'r4', 'loss', 'Infinity');
SELECT ra('metrics.loss > 1e308') AS above_max, ra(NULL, 'metrics.loss DESC') AS desc_with_inf;

-- a run id in MLflow's form (32 hex digits) or upper case finds its run; a LIKE
-- pattern is matched against the canonical text
SELECT ra(format('attributes.run_id = %L', replace(:'r2', '-', ''))) AS mlflow_form,
       ra(format('attributes.run_id = %L', upper(:'r2'))) AS upper_case,
       ra(format('attributes.run_id IN (%L, %L)', '{' || :'r3' || '}', 'not-a-uuid')) AS in_list,
       ra(format('attributes.run_id != %L', upper(:'r1'))) AS not_equal,
       ra(format('attributes.run_id NOT IN (%L)', upper(:'r1'))) AS not_in,
       ra(format('attributes.run_id LIKE %L', upper(:'r2'))) AS like_upper,
       ra('attributes.run_id = ''not-a-uuid''') AS no_uuid;

-- start_run's params and tags are what log_param and set_tag accept: a JSON null
-- value read as "not set", so log_param could set a write-once param again
CREATE FUNCTION ra_err(cmd text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE cmd;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
SELECT ra_err($$SELECT pgpoly.start_run('ra_exp', params => '{"lr": "0.1", "n": null}')$$) AS null_param,
       ra_err($$SELECT pgpoly.start_run('ra_exp', tags => '{"t": null}')$$) AS null_tag,
       ra_err($$SELECT pgpoly.start_run('ra_exp', params => '{"": "x"}')$$) AS empty_key,
       ra_err($$SELECT pgpoly.register_model_version('ra_m', 's3://m', tags => '{"a": null}')$$) AS null_version_tag;
SELECT count(*) AS runs_created FROM pgpoly.runs r JOIN pgpoly.experiments e USING (experiment_id)
WHERE e.name = 'ra_exp';

--
-- A training set's content hash does not depend on the session: a money column
-- (no hash function: hashed through its text form) under another lc_monetary.
--
CREATE TABLE ra_money (id int, price money, note text);
INSERT INTO ra_money VALUES (1, 12.5, 'a'), (2, 1234.56, NULL);
SELECT pgpoly._dataset_content_hash('ra_money') AS h \gset
SET lc_monetary = 'de_DE.UTF-8';
SET extra_float_digits = -3;
SET intervalstyle = 'iso_8601';
SELECT pgpoly._dataset_content_hash('ra_money') = :'h' AS same_hash_under_de_de;
RESET lc_monetary;
RESET extra_float_digits;
RESET intervalstyle;

--
-- Categorical drift compares exact text forms: two float arrays that differ in
-- the 17th digit are two categories whatever extra_float_digits says.
--
CREATE TABLE ra_ref AS SELECT a::float8[] AS a FROM (VALUES ('{0.1}'), ('{0.10000000000000002}')) v(a);
CREATE TABLE ra_cur AS SELECT a::float8[] AS a FROM (VALUES ('{0.1}'), ('{0.1}')) v(a);
SELECT feature, round(psi::numeric, 6) AS psi, status FROM pgpoly.drift('ra_ref', 'ra_cur');
SET extra_float_digits = 0;
SELECT feature, round(psi::numeric, 6) AS psi, status FROM pgpoly.drift('ra_ref', 'ra_cur');
RESET extra_float_digits;

--
-- Drift near the float8 limits: the edge between -1.7e308 and 1.7e308 is
-- percentile_cont's Infinity (was an overflow ERROR).
--
SELECT feature, psi, ks, status
FROM pgpoly.drift('SELECT x FROM (VALUES (-1.7e308::float8), (1.7e308)) v(x)',
                  'SELECT x FROM (VALUES (-1.7e308::float8), (1.7e308), (1e308)) v(x)', bins => 2);
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) AS edge
FROM (VALUES (-1.7e308::float8), (1.7e308)) v(x);

--
-- feature_stats counts distinct float arrays exactly under any extra_float_digits.
--
CREATE SERVER ra FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER ra;
CREATE FOREIGN TABLE ra_emb (id text OPTIONS (key 'true'), emb float8[])
  SERVER ra OPTIONS (key_prefix 'regress_ra:emb:');
SELECT pgpoly.create_feature_view('ra_emb', 'id', 'ra_emb');
SELECT pgpoly.put_features('ra_emb', 'a', '{"emb": [0.1]}', '2024-01-01'),
       pgpoly.put_features('ra_emb', 'b', '{"emb": [0.10000000000000002]}', '2024-01-01');
SELECT feature, count, distinct_count FROM pgpoly.feature_stats('ra_emb');
SET extra_float_digits = 0;
SELECT feature, count, distinct_count FROM pgpoly.feature_stats('ra_emb');
RESET extra_float_digits;
DELETE FROM ra_emb;

-- feature_stats of float values near the float8 limits: the mean and stddev are
-- float8 values although float8 sums overflow (was "value out of range")
CREATE FOREIGN TABLE ra_big (id text OPTIONS (key 'true'), x float8, n numeric)
  SERVER ra OPTIONS (key_prefix 'regress_ra:big:');
SELECT pgpoly.create_feature_view('ra_big', 'id', 'ra_big');
SELECT pgpoly.put_features('ra_big', 'a', '{"x": 1.5e308, "n": 1}', '2024-01-01'),
       pgpoly.put_features('ra_big', 'b', '{"x": 1.5e308, "n": 2}', '2024-01-01'),
       pgpoly.put_features('ra_big', 'c', '{"x": -1.5e308, "n": 3}', '2024-01-01');
SELECT feature, count, mean, stddev, min, p50, max FROM pgpoly.feature_stats('ra_big');
SELECT avg(x::numeric)::float8 AS mean, stddev_samp(x::numeric)::float8 AS stddev
FROM (VALUES (1.5e308::float8), (1.5e308), (-1.5e308)) v(x);
-- a numeric beyond float8 is still an error (its min is no float8)
SELECT pgpoly.put_features('ra_big', 'd', '{"n": 1e400}', '2024-01-02');
SELECT left(ra_err($$SELECT * FROM pgpoly.feature_stats('ra_big')$$), 5) AS beyond_float8;
SELECT feature, count, mean FROM pgpoly.feature_stats('ra_big', until => '2024-01-02');
DELETE FROM ra_big;

--
-- Clean up: nothing of this test stays (other tests list the feature views,
-- the registry and the servers, and may run after it in any order).
--
SELECT pgpoly.drop_feature_view('ra_emb', drop_tables => true),
       pgpoly.drop_feature_view('ra_big', drop_tables => true);
DROP SERVER ra CASCADE;
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_ra:*' | xargs -r -d '\n' redis-cli -p "$REDIS_PORT" del > /dev/null
DROP TABLE ra_money, ra_ref, ra_cur;
DROP FUNCTION ra(text, text), ra_err(text);
DELETE FROM pgpoly.registered_models WHERE name = 'ra_m';
DELETE FROM pgpoly.runs WHERE experiment_id IN
	(SELECT experiment_id FROM pgpoly.experiments WHERE name = 'ra_exp');
DELETE FROM pgpoly.experiments WHERE name = 'ra_exp';
SELECT (SELECT count(*) FROM pgpoly.feature_views WHERE name LIKE 'ra\_%') AS feature_views,
       (SELECT count(*) FROM pgpoly.experiments WHERE name LIKE 'ra\_%') AS experiments,
       (SELECT count(*) FROM pg_class WHERE relname LIKE 'ra\_%') AS relations;
