--
-- drift() runs the caller's queries with the caller's search_path, so every
-- name of its own in the statements it builds around them is qualified: no
-- function, aggregate, operator or type the caller's search_path finds
-- first (a better match, or a schema before pg_catalog) changes a result.
--
\set VERBOSITY terse
SET client_min_messages = warning;

CREATE TABLE dsp_r AS
  SELECT g::float8 AS x, (g % 3)::text || 'abc' AS c, g::int AS i,
         CASE WHEN g % 10 = 0 THEN NULL ELSE (g % 5)::numeric END AS n
  FROM generate_series(1, 100) g;
CREATE TABLE dsp_k AS
  SELECT (g * 1.5)::float8 AS x, (g % 4)::text || 'abd' AS c, (g * 2)::int AS i,
         CASE WHEN g % 7 = 0 THEN NULL ELSE (g % 6)::numeric END AS n
  FROM generate_series(1, 100) g;

-- the answers with nothing shadowed, by table name and by query
CREATE TABLE dsp_expected AS
  SELECT 'tables' AS form, d.* FROM pgpoly.drift('dsp_r', 'dsp_k') d
  UNION ALL
  SELECT 'queries', d.* FROM pgpoly.drift('SELECT * FROM dsp_r', 'WITH w AS (SELECT * FROM dsp_k) SELECT * FROM w', bins => 4) d;
SELECT * FROM dsp_expected ORDER BY form, feature;

-- drift's answers under the caller's search_path that differ from dsp_expected
-- (compared with pg_catalog's operators: the search_path may shadow them)
CREATE FUNCTION dsp_differences() RETURNS TABLE (form text, feature text, psi float8, ks float8, status text)
LANGUAGE sql AS $$
  SELECT e.form, e.feature, a.psi, a.ks, a.status
  FROM (SELECT 'tables' AS form, d.* FROM pgpoly.drift('dsp_r', 'dsp_k') d
        UNION ALL
        SELECT 'queries', d.* FROM pgpoly.drift('SELECT * FROM dsp_r',
            'WITH w AS (SELECT * FROM dsp_k) SELECT * FROM w', bins => 4) d) a
  FULL JOIN public.dsp_expected e
    ON a.form OPERATOR(pg_catalog.=) e.form AND a.feature OPERATOR(pg_catalog.=) e.feature
  WHERE a.feature IS NULL OR e.feature IS NULL OR a.psi IS DISTINCT FROM e.psi
     OR a.ks IS DISTINCT FROM e.ks OR NOT a.status OPERATOR(pg_catalog.=) e.status
$$;

-- Better matches than pg_catalog's polymorphic or "any" functions win even
-- with pg_catalog searched first (the default search_path).
CREATE SCHEMA dsp_match;
SET search_path = dsp_match, public;
CREATE FUNCTION dsp_match.cardinality(float8[]) RETURNS int LANGUAGE sql AS 'SELECT 1';
SELECT * FROM dsp_differences();
CREATE FUNCTION dsp_match.aa_s(float8[], float8) RETURNS float8[] LANGUAGE sql AS 'SELECT $1 || $2 || $2';
CREATE AGGREGATE dsp_match.array_agg(float8) (sfunc = dsp_match.aa_s, stype = float8[]);
SELECT * FROM dsp_differences();
CREATE FUNCTION dsp_match.array_position(text[], text) RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION dsp_match.pg_typeof(int) RETURNS regtype LANGUAGE sql AS $$SELECT 'text'::regtype$$;
CREATE FUNCTION dsp_match.format(text, text, text, text) RETURNS text LANGUAGE sql AS 'SELECT $1';
SELECT * FROM dsp_differences();

-- A schema searched before pg_catalog shadows even its exact matches: the
-- aggregates, operators and types drift names.
CREATE SCHEMA dsp_before;
CREATE FUNCTION dsp_before.sum_s(bigint, bigint) RETURNS bigint LANGUAGE sql AS 'SELECT $1 + 2 * $2';
CREATE AGGREGATE dsp_before.sum(bigint) (sfunc = dsp_before.sum_s, stype = bigint, initcond = '0');
CREATE FUNCTION dsp_before.count_s(bigint) RETURNS bigint LANGUAGE sql AS 'SELECT $1 + 3';
CREATE AGGREGATE dsp_before.count(*) (sfunc = dsp_before.count_s, stype = bigint, initcond = '0');
CREATE FUNCTION dsp_before.eq(text, text) RETURNS bool LANGUAGE sql AS 'SELECT left($1, 1) = left($2, 1)';
CREATE OPERATOR dsp_before.= (LEFTARG = text, RIGHTARG = text, FUNCTION = dsp_before.eq);
CREATE FUNCTION dsp_before.lt(int, int) RETURNS bool LANGUAGE sql AS 'SELECT $1 > $2';
CREATE OPERATOR dsp_before.< (LEFTARG = int, RIGHTARG = int, FUNCTION = dsp_before.lt);
CREATE FUNCTION dsp_before.match(text, text) RETURNS bool LANGUAGE sql AS 'SELECT false';
CREATE OPERATOR dsp_before.~* (LEFTARG = text, RIGHTARG = text, FUNCTION = dsp_before.match);
CREATE DOMAIN dsp_before.text AS varchar(1);
CREATE DOMAIN dsp_before.float8 AS int;
SET search_path = dsp_before, dsp_match, pg_catalog, public;
SELECT * FROM dsp_differences();

RESET search_path;
DROP SCHEMA dsp_match, dsp_before CASCADE;
DROP FUNCTION dsp_differences();
DROP TABLE dsp_r, dsp_k, dsp_expected;
