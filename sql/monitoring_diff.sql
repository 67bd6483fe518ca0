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
\set VERBOSITY terse
\set SHOW_CONTEXT never
SET client_min_messages = warning;
SET extra_float_digits = 3;

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

-- (mon_err(cmd), the SQLSTATE and message of a statement: monitoring.sql, run
-- before this file in the same database)
SELECT pgpoly.register_model_version('diff_m', 's3://d/1'), pgpoly.register_model_version('diff_m', 's3://d/2');
SELECT pgpoly.set_model_alias('diff_m', 'live', 2);
-- 200 good elements: models by version and by alias, every optional key
-- present or absent, all in the current month
CREATE TABLE good AS
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
SELECT pgpoly.log_predictions(j) AS logged FROM good;
WITH want AS (
	SELECT u.i, CASE WHEN u.model LIKE '%@live' THEN 2 ELSE u.version END AS version, u.entity,
	       u.prediction, u.features, u.confidence, u.latency_ms, u.request_id, u.ts
	FROM good, ROWS FROM (jsonb_to_recordset(j)
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
CREATE TABLE bad(kind, elem, call) AS VALUES
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
	        FROM good, jsonb_array_elements(good.j) WITH ORDINALITY AS e(v, i) WHERE e.i <= 20) AS batch
	FROM bad b, bad b2, (VALUES (1, 20), (7, 8), (20, 20)) AS p(pos, pos2)
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
-- a batch over two months takes the general path (partitions made as needed)
SELECT pgpoly.log_predictions(jsonb_build_array(
	jsonb_build_object('model', 'diff_m', 'version', 1, 'prediction', 1, 'ts', '2020-01-31T23:59:59Z'),
	jsonb_build_object('model', 'diff_m', 'version', 1, 'prediction', 2, 'ts', '2020-02-01T00:00:00Z'),
	jsonb_build_object('model', 'diff_m', 'version', 1, 'prediction', 3, 'latency_ms', -1))) IS NULL AS logged;
SELECT pgpoly.log_predictions(jsonb_build_array(
	jsonb_build_object('model', 'diff_m', 'version', 1, 'prediction', 1, 'ts', '2020-01-31T23:59:59Z'),
	jsonb_build_object('model', 'diff_m', 'version', 1, 'prediction', 2, 'ts', '2020-02-01T00:00:00Z'))) AS logged;
SELECT prediction, tableoid::regclass FROM pgpoly.predictions WHERE ts < '2021-01-01' ORDER BY prediction_id;
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
-- an edge that overflows float8 is the error the SQL arithmetic raised
SELECT * FROM pgpoly._drift_numeric_bins('{-1e308,1e308}', '{0}', 2);
-- bad arguments of the C part (it is callable on its own)
SELECT * FROM pgpoly._drift_numeric_bins('{1,NULL}', '{1}', 2);
SELECT * FROM pgpoly._drift_numeric_bins('{{1,2},{3,4}}', '{1}', 2);
SELECT * FROM pgpoly._drift_numeric_bins('{1}', '{1}', 1);
