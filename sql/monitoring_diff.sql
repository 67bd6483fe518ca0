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
FROM generate_series(1, 3000) g;
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
FROM generate_series(1, 2500) g;
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
