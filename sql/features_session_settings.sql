-- An entity given as text is read as the caller's own SQL reads a literal of
-- the view's key type (DateStyle field order, TimeZone, IntervalStyle), and
-- is stored, online and offline, under one canonical text whatever the
-- session's settings: the key's text in Redis (ISO, UTC, IntervalStyle
-- postgres, hex bytea).  So put_features, get_online_features (online and
-- its offline fallback), ingest_features and get_historical_features agree
-- on which entity a value names, from sessions with any DateStyle
-- ('SQL, DMY', 'German', 'Postgres, MDY'), TimeZone (west and east of
-- UTC), IntervalStyle or bytea_output.
\getenv redis_port REDIS_PORT
CREATE SERVER fss FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER fss;
CREATE FUNCTION err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
-- A view fss_<name> keyed by type typ (pgpoly makes its history table, whose
-- entity column is text), and its Redis keys as they are.
CREATE FUNCTION fss_view(name text, typ text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('CREATE FOREIGN TABLE fss_%1$s (k %2$s OPTIONS (key ''true''), clicks int) '
				   'SERVER fss OPTIONS (key_prefix %3$L)', name, typ, 'regress_fss_' || name || ':');
	EXECUTE format('CREATE FOREIGN TABLE fss_%1$s_raw (key text, clicks text) '
				   'SERVER fss OPTIONS (key_prefix %2$L, write_mode ''immediate'')',
				   name, 'regress_fss_' || name || ':');
	PERFORM pgpoly.create_feature_view('fss_' || name, 'k', format('fss_%s', name)::regclass);
END $$;
SELECT fss_view('d', 'date'), fss_view('t', 'timestamptz'), fss_view('i', 'interval'),
       fss_view('b', 'bytea');

-- date: '01/02/2024' is 1 February in a DMY session, as in the caller's SQL
SET datestyle = 'SQL, DMY';
SELECT '01/02/2024'::date = '2024-02-01' AS dmy_reads_february;
SELECT pgpoly.put_features('fss_d', '01/02/2024', '{"clicks": 1}', '2024-03-01 00:00+00');
SET datestyle = 'German';
SELECT pgpoly.put_features('fss_d', '03.02.2024', '{"clicks": 3}', '2024-03-01 00:00+00');
-- a date's own text in the session's style reads back as that date
SELECT pgpoly.put_features('fss_d', '2024-02-05'::date::text, '{"clicks": 5}', '2024-03-01 00:00+00');
RESET datestyle;
SELECT key, clicks FROM fss_d_raw ORDER BY key;
SELECT entity, clicks FROM pgpoly.fss_d_history ORDER BY entity;
-- every session finds them by its own spelling, online and offline
SET datestyle = 'German';
SELECT entity, features, source FROM pgpoly.get_online_features('fss_d', '{01.02.2024,03.02.2024,05.02.2024}');
SET datestyle = 'Postgres, MDY';
SELECT entity, features, source FROM pgpoly.get_online_features('fss_d', '{02/01/2024,02/03/2024,2024-02-05}');
DELETE FROM fss_d_raw;
SET datestyle = 'SQL, DMY';
BEGIN READ ONLY;
SELECT entity, features, source FROM pgpoly.get_online_features('fss_d', '{01/02/2024,03/02/2024,02/01/2024}');
COMMIT;
-- a text the session cannot read as a date is its error, 22008
SELECT err($$SELECT pgpoly.put_features('fss_d', '13/13/2024', '{"clicks": 1}')$$);
RESET datestyle;

-- timestamptz: a text without offset is in the session's TimeZone; the
-- entity's text offline is the same instant's text whatever the TimeZone
SET timezone = 'America/New_York';
SELECT pgpoly.put_features('fss_t', '2024-01-01 00:00', '{"clicks": 1}', '2024-03-01 00:00+00');
SET timezone = 'UTC';
SELECT pgpoly.put_features('fss_t', '2024-01-01 05:00', '{"clicks": 2}', '2024-03-02 00:00+00');
SET timezone = 'Asia/Kolkata';
SELECT pgpoly.ingest_features('fss_t', $$SELECT '2024-01-01 10:30'::timestamptz AS k,
                                           timestamptz '2024-03-03 00:00+00' AS event_time, 3 AS clicks$$);
SET timezone = 'UTC';
SELECT key, clicks FROM fss_t_raw ORDER BY key;
SELECT entity, event_time, clicks FROM pgpoly.fss_t_history ORDER BY event_time;
SET timezone = 'America/Los_Angeles';
SELECT entity, features, source FROM pgpoly.get_online_features('fss_t', '{2023-12-31 21:00}');
DELETE FROM fss_t_raw;
BEGIN READ ONLY;
SELECT entity, features, source FROM pgpoly.get_online_features('fss_t', '{2023-12-31 21:00}');
COMMIT;
-- the point-in-time join finds the history of the spine's instant in any TimeZone
SELECT spine->>'k' AS k, features
FROM pgpoly.get_historical_features(
  $$SELECT timestamptz '2024-01-01 05:00+00' AS k, timestamptz '2024-03-02 12:00+00' AS event_time$$,
  ARRAY['fss_t:clicks']);
SET timezone = 'UTC';
SELECT spine->>'k' AS k, features
FROM pgpoly.get_historical_features(
  $$SELECT timestamptz '2024-01-01 05:00+00' AS k, timestamptz '2024-03-02 12:00+00' AS event_time$$,
  ARRAY['fss_t:clicks']);

-- the spine's entity reaches the key type through its text, which the
-- point-in-time join prints in ISO form: in Postgres style a time in
-- Asia/Kolkata is '... 2024 IST', which reads back as Israel time (the join
-- found no row, silently)
SET datestyle = 'Postgres, MDY';
SET timezone = 'Asia/Kolkata';
SELECT (timestamptz '2024-01-01 05:00+00')::text AS session_text,
       (timestamptz '2024-01-01 05:00+00')::text::timestamptz = '2024-01-01 05:00+00' AS reads_back;
SELECT spine->>'k' AS k, features
FROM pgpoly.get_historical_features(
  $$SELECT timestamptz '2024-01-01 05:00+00' AS k, timestamptz '2024-03-02 12:00+00' AS event_time$$,
  ARRAY['fss_t:clicks']);
SELECT pgpoly.create_training_set('fss_ts',
  $$SELECT timestamptz '2024-01-01 05:00+00' AS k, timestamptz '2024-03-02 12:00+00' AS event_time$$,
  ARRAY['fss_t:clicks']);
SELECT fss_t__clicks FROM fss_ts;
DROP TABLE fss_ts;
-- and the spine's own text reads in the caller's field order, as in its SQL
SET datestyle = 'SQL, DMY';
SELECT spine->>'k' AS k, features
FROM pgpoly.get_historical_features(
  $$SELECT '03/02/2024'::date AS k, timestamptz '2024-03-02 12:00+00' AS event_time$$,
  ARRAY['fss_d:clicks']);
RESET datestyle;
RESET timezone;

-- float keys: a spine printed with extra_float_digits 0 lost digits
SELECT fss_view('f', 'float8');
SELECT pgpoly.put_features('fss_f', (0.1::float8 + 0.2)::text, '{"clicks": 7}', '2024-03-01 00:00+00');
SELECT entity FROM pgpoly.fss_f_history;
SET extra_float_digits = 0;
SELECT features FROM pgpoly.get_historical_features(
  $$SELECT 0.1::float8 + 0.2 AS k, timestamptz '2024-03-02 12:00+00' AS event_time$$,
  ARRAY['fss_f:clicks']);
SELECT pgpoly.create_training_set('fss_ts',
  $$SELECT 0.1::float8 + 0.2 AS k, timestamptz '2024-03-02 12:00+00' AS event_time$$,
  ARRAY['fss_f:clicks']);
SELECT fss_f__clicks FROM fss_ts;
DROP TABLE fss_ts;
RESET extra_float_digits;
DELETE FROM fss_f_raw;

-- interval under IntervalStyle sql_standard, bytea under bytea_output escape
SET intervalstyle = 'sql_standard';
SELECT pgpoly.put_features('fss_i', '1 day 2 hours', '{"clicks": 1}', '2024-03-01 00:00+00');
SET bytea_output = 'escape';
SELECT pgpoly.put_features('fss_b', '\x01ff', '{"clicks": 1}', '2024-03-01 00:00+00');
RESET intervalstyle;
RESET bytea_output;
SELECT pgpoly.put_features('fss_i', '1 day 02:00', '{"clicks": 2}', '2024-03-02 00:00+00');
SELECT pgpoly.put_features('fss_b', '\x01FF', '{"clicks": 2}', '2024-03-02 00:00+00');
SELECT entity, clicks FROM pgpoly.fss_i_history ORDER BY event_time;
SELECT entity, clicks FROM pgpoly.fss_b_history ORDER BY event_time;
DELETE FROM fss_i_raw;
SET intervalstyle = 'iso_8601';
SET bytea_output = 'escape';
BEGIN READ ONLY;
SELECT entity, features, source FROM pgpoly.get_online_features('fss_i', '{P1DT2H}');
SELECT entity, features, source FROM pgpoly.get_online_features('fss_b', ARRAY['\001\377']);
COMMIT;
RESET intervalstyle;
RESET bytea_output;

-- an array key is refused: its entities could not be looked up (key = ANY
-- (keys) reads an array of arrays as one of elements: 42883 at every call)
CREATE DOMAIN fss_ints AS int[];
CREATE FOREIGN TABLE fss_arr (k fss_ints OPTIONS (key 'true'), clicks int) SERVER fss;
SELECT err($$SELECT pgpoly.create_feature_view('fss_arr', 'k', 'fss_arr')$$);
DROP FOREIGN TABLE fss_arr;
DROP DOMAIN fss_ints;

DELETE FROM fss_b;
SELECT pgpoly.drop_feature_view('fss_' || n, drop_tables => true) FROM unnest('{d,t,i,b,f}'::text[]) n;
DELETE FROM pgpoly.lineage_edges WHERE src_name LIKE 'pgpoly.fss_%';
DELETE FROM pgpoly.lineage_edges WHERE dst_name = 'fss_ts';
DELETE FROM pgpoly.datasets WHERE name LIKE 'pgpoly.fss_%' OR name = 'fss_ts';
DROP SERVER fss CASCADE;
DROP FUNCTION err(text), fss_view(text, text);
