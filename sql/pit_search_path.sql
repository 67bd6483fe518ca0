--
-- get_historical_features and create_training_set run the caller's spine
-- with the caller's search_path (its names resolve as in the caller's
-- session), so every name of their own, in their bodies and in the SQL they
-- build around the spine, is qualified: no function, aggregate or operator
-- the caller's search_path finds first (a better match than a polymorphic
-- built-in, or a schema before pg_catalog) changes what they return.
--
\getenv redis_port REDIS_PORT
\set VERBOSITY terse
SET client_min_messages = warning;
SET timezone = 'UTC';
CREATE SERVER psp FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER psp;
CREATE FOREIGN TABLE psp_on (user_id text OPTIONS (key 'true'), clicks int, tag text,
  _event_time timestamptz) SERVER psp OPTIONS (key_prefix 'regress_psp:');
CREATE TABLE psp_off (user_id text NOT NULL, event_time timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(), clicks int, tag text);
SELECT pgpoly.create_feature_view('psp', 'user_id', 'psp_on', 'psp_off', ttl => '2 hours');
INSERT INTO psp_off (user_id, event_time, clicks, tag)
  SELECT 'u' || (g % 2), '2024-01-01'::timestamptz + g * interval '1 hour', g, 't' || g
  FROM generate_series(1, 6) g;
CREATE TABLE psp_spine AS
  SELECT * FROM (VALUES ('u0', '2024-01-01 02:30+00'::timestamptz), ('u1', '2024-01-01 05:00+00'),
                        ('u0', '2024-01-01 12:00+00'), ('u2', '2024-01-01 03:00+00'),
                        ('u1', '2024-01-01 00:30+00')) v(user_id, event_time);
-- Both answers, as text, under a pinned search_path.
CREATE FUNCTION psp_answer() RETURNS TABLE (r text)
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
BEGIN
  RETURN QUERY SELECT ROW(t.user_id, t.event_time, t.psp__clicks, t.psp__tag)::text FROM public.psp_ts t;
END
$$;
CREATE FUNCTION psp_run() RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
  -- under the caller's search_path
  RETURN QUERY SELECT ROW(h.row_no, h.spine, h.features)::pg_catalog.text
    FROM pgpoly.get_historical_features('SELECT * FROM psp_spine', '{psp:*}') h;
  PERFORM pgpoly.create_training_set('public.psp_ts', 'SELECT * FROM psp_spine', '{psp:clicks,psp:tag}');
  RETURN QUERY SELECT a.r FROM public.psp_answer() a;
  DROP TABLE public.psp_ts;
  DELETE FROM pgpoly.lineage_edges l WHERE l.dst_name OPERATOR(pg_catalog.=) 'public.psp_ts';
  DELETE FROM pgpoly.datasets d WHERE d.name OPERATOR(pg_catalog.=) 'public.psp_ts';
END
$$;
-- the answer with nothing shadowed
CREATE TABLE psp_expected AS SELECT * FROM psp_run() r;
SELECT * FROM psp_expected;
-- (the caller's search_path: psp_run runs under it)
CREATE FUNCTION psp_differences() RETURNS TABLE (r text, missing bool)
LANGUAGE sql AS $$
  (SELECT e.r, true FROM public.psp_expected e EXCEPT ALL SELECT s.r, true FROM public.psp_run() s(r))
  UNION ALL
  (SELECT s.r, false FROM public.psp_run() s(r) EXCEPT ALL SELECT e.r, false FROM public.psp_expected e)
$$;
-- Better matches than pg_catalog's polymorphic or "any" functions win even
-- with pg_catalog searched first (the default search_path).
CREATE SCHEMA psp_match;
CREATE FUNCTION psp_match.unnest(text[]) RETURNS SETOF text LANGUAGE sql AS $$SELECT 'nope'$$;
CREATE FUNCTION psp_match.format(text, text) RETURNS text LANGUAGE sql AS 'SELECT $1';
CREATE FUNCTION psp_match.array_to_string(text[], text) RETURNS text LANGUAGE sql AS $$SELECT 'x'$$;
CREATE FUNCTION psp_match.jsonb_build_object(text, int) RETURNS jsonb LANGUAGE sql AS $$SELECT '{}'::jsonb$$;
CREATE FUNCTION psp_match.agg_s(text[], text) RETURNS text[] LANGUAGE sql AS $$SELECT '{}'::text[]$$;
CREATE AGGREGATE psp_match.array_agg(text) (sfunc = psp_match.agg_s, stype = text[]);
SET search_path = psp_match, public;
SELECT * FROM psp_differences();
-- a spine without the entity names what it lacks
SELECT * FROM pgpoly.get_historical_features('SELECT event_time FROM psp_spine', '{psp:*}');
RESET search_path;
-- A schema searched before pg_catalog shadows even its exact matches.
CREATE SCHEMA psp_before;
CREATE FUNCTION psp_before.eq(text, text) RETURNS bool LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR psp_before.= (LEFTARG = text, RIGHTARG = text, FUNCTION = psp_before.eq);
CREATE FUNCTION psp_before.contained(text[], text[]) RETURNS bool LANGUAGE sql AS 'SELECT false';
CREATE OPERATOR psp_before.<@ (LEFTARG = text[], RIGHTARG = text[], FUNCTION = psp_before.contained);
CREATE FUNCTION psp_before.cat(text, text) RETURNS text LANGUAGE sql AS $$SELECT 'x'$$;
CREATE OPERATOR psp_before.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = psp_before.cat);
CREATE FUNCTION psp_before.count_s(bigint) RETURNS bigint LANGUAGE sql AS 'SELECT $1 + 3';
CREATE AGGREGATE psp_before.count(*) (sfunc = psp_before.count_s, stype = bigint, initcond = '0');
SET search_path = psp_before, pg_catalog, public;
SELECT * FROM psp_differences();
SELECT * FROM pgpoly.get_historical_features('SELECT event_time FROM psp_spine', '{psp:*}');
RESET search_path;
DROP SCHEMA psp_match, psp_before CASCADE;
SELECT pgpoly.drop_feature_view('psp');
DROP FUNCTION psp_differences(), psp_run(), psp_answer();
DROP TABLE psp_spine, psp_off, psp_expected;
DROP FOREIGN TABLE psp_on;
DROP SERVER psp CASCADE;
