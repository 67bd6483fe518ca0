-- Reading stored text into typed columns: the fast paths of src/convert.c
-- (integers, float8, date, timestamp and timestamptz in the fixed form)
-- must give exactly what the type's input function gives under the fixed
-- settings, for the text pgpoly writes and for any other text another tool
-- may have written: the same value, or the same error.  Differential: each
-- candidate string is written through a text column and read back through
-- a typed one, and compared with a cast of the same string.
\getenv redis_port REDIS_PORT
\set VERBOSITY terse

CREATE SERVER conv_srv FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER conv_srv;
CREATE FOREIGN TABLE conv_text (key text, v text)
  SERVER conv_srv OPTIONS (key_prefix 'pgpoly_test:conv:', write_mode 'immediate');
-- One table per type, each reading field v of the same keys.
DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['int2', 'int4', 'int8', 'float8', 'date', 'timestamp',
                           'timestamptz', 'timestamp(3)', 'timestamptz(0)'] LOOP
    EXECUTE format('CREATE FOREIGN TABLE %I (key text, v %s) SERVER conv_srv
                    OPTIONS (key_prefix %L)', 'conv_' || regexp_replace(t, '\W', '', 'g'), t,
                   'pgpoly_test:conv:');
  END LOOP;
END $$;

-- The settings the input functions run under (convert.c); the casts below
-- must see the same.
SET DateStyle = 'ISO, MDY';
SET TimeZone = 'UTC';
SET IntervalStyle = postgres;

CREATE TABLE candidates (typ text, s text);
INSERT INTO candidates SELECT t, s FROM unnest(ARRAY['int2', 'int4', 'int8']) t,
  unnest(ARRAY['0', '42', '-42', '+42', ' 42', '42 ', '007', '-0', '', ' ', 'abc',
               '0x10', '1_000', '1.0', '1e3', '32767', '32768', '-32768', '-32769',
               '2147483647', '2147483648', '-2147483648', '-2147483649',
               '9223372036854775807', '9223372036854775808', '-9223372036854775808',
               '-9223372036854775809', '99999999999999999999']) s;
INSERT INTO candidates SELECT 'float8', s FROM unnest(ARRAY['0', '0.1', '-0', '1e-300',
  '1e400', '-1e400', '4.9e-324', '2e-324', 'NaN', 'nan', 'Infinity', '-Infinity', 'inf',
  ' 1.5 ', '1.5x', '0x1p3', '', '.5', '5.', '1e', '0.30000000000000004',
  '1.7976931348623157e308', '1.7976931348623159e308', '123456789012345678901234567890']) s;
INSERT INTO candidates SELECT 'date', s FROM unnest(ARRAY['2024-06-01', '2024-6-1',
  '2024-02-29', '2023-02-29', '2024-04-31', '2024-13-01', '2024-00-10', '0000-01-01',
  '0001-01-01', '9999-12-31', '10000-01-01', '20240601', ' 2024-06-01', '2024-06-01 ',
  '06/01/2024', '01/06/2024', '2024-06-01 BC', 'infinity', 'epoch', '2024-06-01x',
  '2024/06/01', '2024-06-01 00:00:00']) s;
INSERT INTO candidates SELECT t, s FROM unnest(ARRAY['timestamp', 'timestamptz', 'ts3', 'tz0']) t,
  unnest(ARRAY['2024-06-01 00:00:17+00', '2024-06-01 00:00:17.5+00',
    '2024-06-01 00:00:17.123456+00', '2024-06-01 00:00:17.1234565+00',
    '2024-06-01 00:00:17.9999995+00', '2024-06-01 00:00:17.+00', '2024-06-01 00:00:17.05',
    '2024-06-01 00:00:17+05:30', '2024-06-01 00:00:17-09:30', '2024-06-01 00:00:17+15:59',
    '2024-06-01 00:00:17+16', '2024-06-01 00:00:17+15:60', '2024-06-01 00:00:17+0530',
    '2024-06-01 00:00:17+05:30:15', '2024-06-01 00:00:17+5', '2024-06-01 00:00:17 +00',
    '2024-06-01 00:00:17', '2024-06-01 00:00:17 UTC', '2024-06-01 00:00:17 Europe/Paris',
    '2024-06-01T00:00:17+00', '2024-06-01 24:00:00+00', '2024-06-01 23:59:60+00',
    '2024-06-01 23:60:00+00', '2024-06-01 25:00:00+00', '2024-02-29 12:00:00+00',
    '2023-02-29 12:00:00+00', '0001-01-01 00:00:00+00', '0001-01-01 00:00:00+01',
    '0000-01-01 00:00:00+00', '9999-12-31 23:59:59.999999-15', '2024-06-01 00:00:17+00 BC',
    'infinity', '-infinity', '2024-06-01', '2024-6-1 0:0:17+00', ' 2024-06-01 00:00:17+00',
    '2024-06-01 00:00:17+00 ', '2024-06-01  00:00:17+00', '2024-06-01 00:00:17-00',
    '1999-12-31 23:59:59.999999+00', '2000-01-01 00:00:00+00', '1970-01-01 00:00:00+00',
    '2024-03-10 02:30:00+00', '06/01/2024 00:00:17+00', '2024-06-01 00:00:17+00:00']) s;
-- Plain decimals of up to 19 digits take convert.c's exact float8 path
-- (fast_float8): halfway cases, mantissas past 2^53, many digits after the
-- point; 20 digits and more go to float8in.
INSERT INTO candidates SELECT 'float8', s FROM unnest(ARRAY['9007199254740992',
  '9007199254740993', '9007199254740995', '-9007199254740997', '18014398509481986',
  '18014398509481990', '4503599627370497.5', '4503599627370496.5', '2251799813685248.25',
  '2251799813685248.75', '1234567890123456789', '9999999999999999999', '12345678901234567890',
  '0.1234567890123456789', '0.0000000000000000000001', '0.00000000000000000000001',
  '0.8944271909999159', '0.89442719099991586', '-.5', '1.', '-0.0', '-0.', '.',
  '-', '00000000000000000000.5', '1.2.3', '1..2', '+.5', '0.1e1']) s;
SELECT setseed(0.31);
INSERT INTO candidates
SELECT 'float8', sign || left(d, p) || '.' || substr(d, p + 1)
FROM (SELECT CASE WHEN random() < 0.3 THEN '-' ELSE '' END AS sign,
             left(lpad(floor(random() * 1e19)::numeric::text, 19, '0'),
                  1 + floor(random() * 19)::int) AS d
      FROM generate_series(1, 400)) r,
     LATERAL (SELECT floor(random() * (length(d) + 1))::int AS p) q;
-- ... and what pgpoly (or anyone with the fixed settings) writes, at random.
SELECT setseed(0.17);
INSERT INTO candidates
SELECT t, CASE t WHEN 'date' THEN (x::date)::text ELSE x::text END
FROM (SELECT timestamptz '0100-01-01 00:00+00' + random() * interval '9000 years' AS x
      FROM generate_series(1, 200)) r,
     unnest(ARRAY['date', 'timestamp', 'timestamptz', 'ts3', 'tz0']) t;
INSERT INTO candidates
SELECT 'float8', ((random() - 0.5) * 10 ^ (random() * 600 - 300))::text FROM generate_series(1, 200);
INSERT INTO candidates
SELECT 'int8', ((random() - 0.5) * 1.8e19)::numeric(20)::text FROM generate_series(1, 100);

CREATE FUNCTION conv_sqltype(typ text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE typ WHEN 'ts3' THEN 'timestamp(3)' WHEN 'tz0' THEN 'timestamptz(0)' ELSE typ END
$$;

-- Write s, read it back through the typed column; the text of the value,
-- or the SQLSTATE and message of the error.
CREATE FUNCTION conv_read(typ text, s text, k text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
  INSERT INTO conv_text VALUES (k, s);
  BEGIN
    EXECUTE format('SELECT v::text FROM %I WHERE key = $1',
                   'conv_' || regexp_replace(conv_sqltype(typ), '\W', '', 'g'))
      INTO r USING k;
    RETURN coalesce(r, 'NULL');
  EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || SQLERRM;
  END;
END $$;
CREATE FUNCTION conv_cast(typ text, s text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
  EXECUTE format('SELECT $1::%s::text', conv_sqltype(typ)) INTO r USING s;
  RETURN coalesce(r, 'NULL');
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ' ' || SQLERRM;
END $$;

CREATE TABLE results AS
SELECT typ, s, k, conv_read(typ, s, k) AS via_redis, conv_cast(typ, s) AS via_cast
FROM (SELECT typ, s, 'c' || row_number() OVER () AS k FROM candidates) c;

-- Every candidate read back as the cast reads it (0 rows) ...
SELECT typ, s, via_redis, via_cast FROM results WHERE via_redis IS DISTINCT FROM via_cast;
-- ... over values and errors alike.
SELECT typ, count(*) AS candidates, count(*) FILTER (WHERE via_cast ~ '^[0-9A-Z]{5} ') AS errors
FROM results GROUP BY typ ORDER BY typ;

-- The same under other session settings: the fast paths read none.
SET DateStyle = 'German, DMY';
SET TimeZone = 'America/New_York';
SELECT count(*) AS compared,
       count(*) FILTER (WHERE (SELECT v FROM conv_timestamptz WHERE key = r.k)
                              IS DISTINCT FROM r.via_cast::timestamptz) AS differ
FROM results r
WHERE r.via_cast !~ '^[0-9A-Z]{5} ' AND r.typ = 'timestamptz';
RESET DateStyle;
RESET TimeZone;

-- Output: a timestamptz is stored as PostgreSQL prints it in UTC (ISO),
-- over the whole range, whatever the session's TimeZone.
CREATE FOREIGN TABLE conv_out_tz (key text, value timestamptz) SERVER conv_srv
  OPTIONS (table_type 'string', key_prefix 'pgpoly_test:conv:out:');
CREATE FOREIGN TABLE conv_out_raw (key text, value text) SERVER conv_srv
  OPTIONS (table_type 'string', key_prefix 'pgpoly_test:conv:out:');
SELECT setseed(0.14);
CREATE TEMP TABLE out_tz AS
  SELECT g, timestamptz '4713-11-25 00:00+00 BC' + random() * interval '298000 years' AS x
  FROM generate_series(1, 3000) g
  UNION ALL VALUES (0, timestamptz 'infinity'), (-1, '-infinity'), (-2, '294276-12-31 23:59:59.999999+00'),
    (-3, '4714-11-24 00:00+00 BC'), (-4, '1969-12-31 23:59:59.999+00'), (-5, '2000-01-01 00:00:00.5+00');
SET TimeZone = 'Asia/Kathmandu';
INSERT INTO conv_out_tz SELECT g::text, x FROM out_tz;
SET TimeZone = 'UTC';
SET DateStyle = 'ISO';
SELECT count(*) AS compared, count(*) FILTER (WHERE r.value <> o.x::text) AS differ
FROM conv_out_raw r JOIN out_tz o ON r.key = o.g::text;
SELECT r.value FROM conv_out_raw r WHERE r.key::int <= 0 ORDER BY r.key::int;
RESET DateStyle;
RESET TimeZone;
DELETE FROM conv_out_raw;

DELETE FROM conv_text;
DROP SERVER conv_srv CASCADE;
DROP TABLE candidates, results;
DROP FUNCTION conv_sqltype(text), conv_read(text, text, text),
  conv_cast(text, text);
