--
-- ingest_features runs the caller's source with the caller's search_path, so
-- every name of its own in the statement it builds around the source, and in
-- its own body, is qualified: no function, aggregate, operator, collation or
-- type the caller's search_path finds first (a better match than a
-- polymorphic built-in, or a schema before pg_catalog) changes what it
-- returns or writes, nor do the view's own types (text here).
--
\getenv redis_port REDIS_PORT
\set VERBOSITY terse
SET client_min_messages = warning;
SET timezone = 'UTC';
CREATE SERVER isp FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER isp;
-- a text key, an offline entity column that could cut it
CREATE FOREIGN TABLE isp_on (user_id text OPTIONS (key 'true'), clicks int, ctr float8,
  tag text, _event_time timestamptz) SERVER isp OPTIONS (key_prefix 'regress_isp:', fetch_size '2');
CREATE TABLE isp_off (user_id varchar(16) NOT NULL, event_time timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(), clicks int, ctr float8, tag text);
SELECT pgpoly.create_feature_view('isp', 'user_id', 'isp_on', 'isp_off');
-- u1 and u2 twice (the later event wins online), u3 held newer in Redis
CREATE TABLE isp_src AS
  SELECT 'u' || (g % 4) AS user_id, '2024-01-01'::timestamptz + g * interval '1 hour' AS event_time,
         g AS clicks, g / 8.0 AS ctr, 't' || g AS tag
  FROM generate_series(1, 6) g;

-- A fresh view: no offline rows, u3 held online with a newer event.
CREATE FUNCTION isp_reset() RETURNS void LANGUAGE sql SET search_path = pg_catalog, public AS $$
  DELETE FROM public.isp_off;
  DELETE FROM public.isp_on;
  INSERT INTO public.isp_on VALUES ('u3', 100, 0.5, 'held', '2030-01-01');
$$;

-- The view's rows, offline then online, as text.
CREATE FUNCTION isp_state() RETURNS TABLE (side text, r text)
LANGUAGE sql SET search_path = pg_catalog, public AS $$
  SELECT 'off', ROW(o.user_id, o.event_time, o.clicks, o.ctr, o.tag)::text FROM public.isp_off o
  UNION ALL
  SELECT 'on', ROW(o.user_id, o.clicks, o.ctr, o.tag, o._event_time)::text FROM public.isp_on o
$$;

-- the answer with nothing shadowed
SELECT isp_reset();
SELECT pgpoly.ingest_features('isp', 'isp_src');
CREATE TABLE isp_expected AS SELECT * FROM isp_state();
SELECT * FROM isp_expected ORDER BY side, r;

-- The rows by which the view differs from isp_expected (both ways).
CREATE FUNCTION isp_differences() RETURNS TABLE (side text, r text, missing bool)
LANGUAGE sql SET search_path = pg_catalog, public AS $$
  (SELECT e.*, true FROM public.isp_expected e EXCEPT SELECT s.*, true FROM public.isp_state() s)
  UNION ALL
  (SELECT s.*, false FROM public.isp_state() s EXCEPT SELECT e.*, false FROM public.isp_expected e)
$$;

-- Better matches than pg_catalog's polymorphic or "any" functions win even
-- with pg_catalog searched first (the default search_path).
CREATE SCHEMA isp_match;
CREATE FUNCTION isp_match.unnest(text[]) RETURNS SETOF text LANGUAGE sql AS $$SELECT 'clicks'$$;
CREATE FUNCTION isp_match.format(text, text) RETURNS text LANGUAGE sql AS 'SELECT $1';
CREATE FUNCTION isp_match.array_position(text[], text) RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION isp_match.array_to_string(text[], text) RETURNS text LANGUAGE sql AS $$SELECT 'x'$$;
SET search_path = isp_match, public;
SELECT isp_reset();
SELECT pgpoly.ingest_features('isp', 'isp_src');
SELECT * FROM isp_differences();
-- a source the function reads the columns of: one it lacks
SELECT pgpoly.ingest_features('isp', 'SELECT user_id, clicks FROM isp_src');

-- A schema searched before pg_catalog shadows even its exact matches: the
-- aggregates, operators, collations and types ingest_features names.
CREATE SCHEMA isp_before;
CREATE FUNCTION isp_before.count_s(bigint) RETURNS bigint LANGUAGE sql AS 'SELECT $1 + 3';
CREATE AGGREGATE isp_before.count(*) (sfunc = isp_before.count_s, stype = bigint, initcond = '0');
SET search_path = isp_before, pg_catalog, public;
SELECT isp_reset();
SELECT pgpoly.ingest_features('isp', 'isp_src');
SELECT * FROM isp_differences();
DROP AGGREGATE isp_before.count(*);
CREATE FUNCTION isp_before.min_s(bigint, bigint) RETURNS bigint LANGUAGE sql AS 'SELECT 1::bigint';
CREATE AGGREGATE isp_before.min(bigint) (sfunc = isp_before.min_s, stype = bigint, initcond = '1');
SELECT isp_reset();
SELECT pgpoly.ingest_features('isp', 'SELECT * FROM isp_src');
SELECT * FROM isp_differences();
DROP AGGREGATE isp_before.min(bigint);
CREATE FUNCTION isp_before.eq(text, text) RETURNS bool LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR isp_before.= (LEFTARG = text, RIGHTARG = text, FUNCTION = isp_before.eq);
CREATE FUNCTION isp_before.le(timestamptz, timestamptz) RETURNS bool LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR isp_before.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = isp_before.le);
SELECT isp_reset();
SELECT pgpoly.ingest_features('isp', 'isp_src');
SELECT * FROM isp_differences();
DROP OPERATOR isp_before.= (text, text);
DROP OPERATOR isp_before.<= (timestamptz, timestamptz);
CREATE COLLATION isp_before."C" (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE DOMAIN isp_before.text AS varchar(1);
CREATE DOMAIN isp_before.timestamptz AS date;
SELECT isp_reset();
SELECT pgpoly.ingest_features('isp', 'isp_src');
SELECT * FROM isp_differences();
-- a source value that does not convert names its column, and a source
-- without the view's columns names them, as with nothing shadowed
SELECT pgpoly.ingest_features('isp', $$SELECT user_id, event_time, 'x' AS clicks FROM isp_src$$);
SELECT pgpoly.ingest_features('isp', 'SELECT user_id, clicks FROM isp_src');


-- A type format_type() prints quoted ("char") is qualified too: a view with
-- a "char" feature, and a domain of that name before pg_catalog.
RESET search_path;
CREATE FOREIGN TABLE isp_con (user_id text OPTIONS (key 'true'), grade "char",
  _event_time timestamptz) SERVER isp OPTIONS (key_prefix 'regress_ispc:');
CREATE TABLE isp_coff (user_id text NOT NULL, event_time timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(), grade "char");
SELECT pgpoly.create_feature_view('ispc', 'user_id', 'isp_con', 'isp_coff');
CREATE DOMAIN isp_before."char" AS text CHECK (VALUE <> 'b');
SET search_path = isp_before, pg_catalog, public;
SELECT pgpoly.ingest_features('ispc',
  $$SELECT 'u1' AS user_id, '2024-01-01 00:00+00'::timestamptz AS event_time, 'b' AS grade$$);
SELECT user_id, grade, _event_time FROM public.isp_con;
SELECT user_id, event_time, grade FROM public.isp_coff;
RESET search_path;
DELETE FROM isp_con;
SELECT pgpoly.drop_feature_view('ispc');
DROP FOREIGN TABLE isp_con;
DROP TABLE isp_coff;

RESET search_path;
DROP SCHEMA isp_match, isp_before CASCADE;
DELETE FROM isp_on;
SELECT pgpoly.drop_feature_view('isp');
DROP FUNCTION isp_differences(), isp_state(), isp_reset();
DROP TABLE isp_src, isp_off, isp_expected;
DROP FOREIGN TABLE isp_on;
DROP SERVER isp CASCADE;
