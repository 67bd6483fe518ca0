-- Writing values: the stored form pgpoly writes to Redis (src/convert.c,
-- laid out by the write builder of fdw/redis_modify.c) must be the text the
-- type's output function gives under the fixed settings (DateStyle ISO,
-- TimeZone UTC, IntervalStyle postgres, extra_float_digits 3), whatever
-- the writing session's settings: integers, floats (NaN, infinities, -0,
-- subnormals), dates and timestamps (years 1..9999 written by convert.c
-- itself; BC, five-digit years and infinities by datetime.c), intervals,
-- numeric, text, varchar, bytea (its raw bytes), in hash fields, string
-- values and keys, by every write path (buffered, immediate, ON CONFLICT,
-- UPDATE).  Differential: each table is read back through a table of text
-- columns over the same keys and compared with each value's cast to text
-- under the fixed settings, EXCEPT ALL both ways.
\getenv redis_port REDIS_PORT
\set VERBOSITY terse

CREATE SERVER wf_srv FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER wf_srv;

CREATE TABLE wf_native (id int, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, d date,
                        ts timestamp, tz timestamptz, iv interval, n numeric, t text,
                        vc varchar(12), b bytea);
SET DateStyle = ISO;
SET TimeZone = UTC;
SET IntervalStyle = postgres;
INSERT INTO wf_native VALUES
  (1, 0, 0, 0, 0, 0, '2000-01-01', '2000-01-01 00:00:00', '2000-01-01 00:00:00+00', '0',
   0, '', '', ''),
  (2, -32768, -2147483648, -9223372036854775808, '-0', '-0', '4714-11-24 BC',
   '4714-11-24 00:00:00 BC', '4714-11-24 00:00:00+00 BC', '-178000000 years', -0.0,
   'x', 'x', 'a'),
  (3, 32767, 2147483647, 9223372036854775807, 'NaN', 'NaN', '5874897-12-31',
   '294276-12-31 23:59:59.999999', '294276-12-31 23:59:59.999999+00', '178000000 years',
   'NaN', 'tab	and
newline', 'é', '\xc3a9'),
  (4, 1, 10, 100, 'Infinity', 'Infinity', 'infinity', 'infinity', 'infinity',
   '1 day -00:00:00.000001', 'Infinity', 'ünïcödé ☃', 'abcdefghijkl', '\x5c'),
  (5, -1, -10, -100, '-Infinity', '-Infinity', '-infinity', '-infinity', '-infinity',
   '-1 mons +2 days -03:04:05.5', '-Infinity', ' lead and trail ', ' ', 'abc'),
  (6, 9, 99, 999, 1.4e-45, 4.9e-324, '0001-12-31 BC', '0001-12-31 23:59:59.999999 BC',
   '0001-12-31 23:59:59.999999+00 BC', '1 year 2 mons 3 days 04:05:06.789',
   -123456789012345678901234567890.123456789012345678901234567890, '\', '\\', ''),
  (7, 10, 100, 1000, 3.4028235e38, 1.7976931348623157e308, '0001-01-01',
   '0001-01-01 00:00:00.000001', '0001-01-01 00:00:00.000001+00', '00:00:00.000001',
   1e-300, 'NULL', 'null', NULL),
  (8, 99, 999, 9999, 0.1, 0.1, '0999-12-31', '0999-12-31 23:59:59.999999',
   '0999-12-31 23:59:59.999999+00', '-00:00:00.000001', 1.000, '0', '-0', NULL),
  (9, 100, 1000, 10000, 1e10, 0.30000000000000004, '1000-01-01', '1000-01-01 00:00:00.1',
   '1000-01-01 00:00:00.1+00', '1000000 hours', 99999999999999999999, 'k', 'k', NULL),
  (10, -99, -999, -99999, -1.5, 1e22, '9999-12-31', '9999-12-31 23:59:59.999999',
   '9999-12-31 23:59:59.999999+00', '-2147483648 days', 0.000000001, NULL, NULL, NULL),
  (11, NULL, NULL, NULL, NULL, 1e21, '10000-01-01', '10000-01-01 00:00:00',
   '10000-01-01 00:00:00+00', '2147483647 mons 2147483647 days 2562047788:00:54.775807', NULL,
   NULL, NULL, NULL),
  (12, 12, 12, 12, 12, 123456789.125, '2024-02-29', '2024-02-29 12:00:00.05',
   '2024-02-29 12:00:00.05+00', '-2147483647 mons -2147483647 days -2562047788:00:54.775807', 12,
   'twelve', 'twelve', NULL),
  (13, 13, 13, 13, 13, 5e-324, '1999-12-31', '1999-12-31 23:59:59.999999',
   '1999-12-31 23:59:59.999999+00', '1 day', 13, 'thirteen', 'thirteen', NULL),
  (14, 14, 14, 14, 14, -1e-300, '1969-12-31', '1969-12-31 23:59:59.9',
   '1969-12-31 23:59:59.9+00', '-1 days', 14, 'f', 'f', NULL),
  (15, 15, 15, 15, 15, 15, '2024-06-01', '2024-06-01 00:00:17.000100',
   '2024-06-01 00:00:17.0001+00', '17 seconds', 15, 'f', 'f', NULL),
  (16, 16, 16, 16, 16, 16, '2024-06-01', '2024-06-01 00:00:17.123456',
   '2024-06-01 00:00:17.12345+00', '0.5 seconds', 16, 'f', 'f', NULL),
  (17, 17, 17, 17, 17, 17, '0044-03-15 BC', '0044-03-15 12:00:00 BC',
   '0044-03-15 12:00:00.5+00 BC', '-3 years', 17, 'f', 'f', NULL);
-- timestamps of every era at random, with microseconds (the fraction's
-- trailing zeros dropped), and numbers of every magnitude
SELECT setseed(0.31);
INSERT INTO wf_native
SELECT 100 + g, (random() * 65535 - 32768)::int2, (random() * 4294967295 - 2147483648)::int4,
       ((random() - 0.5) * 1.8e19)::numeric(20)::int8,
       ((random() - 0.5) * 10 ^ (random() * 70 - 35))::float4,
       ((random() - 0.5) * 10 ^ (random() * 600 - 300))::float8,
       x::date, x::timestamp, x, (x - timestamptz '2000-01-01 00:00+00') * (random() - 0.5),
       (random() * 10 ^ (random() * 40 - 20))::numeric, md5(g::text), left(md5(g::text), 12),
       NULL
FROM (SELECT g, timestamptz '4713-01-01 00:00+00 BC' +
                CASE g % 3 WHEN 0 THEN random() * interval '290000 years'
                           WHEN 1 THEN interval '4712 years' + random() * interval '10000 years'
                           ELSE interval '6712 years' + random() * interval '1000 years' END
                + (random() * 1000000)::int * interval '1 microsecond' AS x
      FROM generate_series(1, 3000) g) r;

-- typed tables (hash, immediate hash, ON CONFLICT hash, string), and tables
-- reading their stored text over the same keys
CREATE FOREIGN TABLE wf_h (id int OPTIONS (key 'true'), i2 int2, i4 int4, i8 int8, f4 float4,
                           f8 float8, d date, ts timestamp, tz timestamptz, iv interval,
                           n numeric, t text, vc varchar(12), b bytea)
  SERVER wf_srv OPTIONS (key_prefix 'pgpoly_test:wf:h:', watch_limit '0');
CREATE FOREIGN TABLE wf_hi (id int OPTIONS (key 'true'), i2 int2, i4 int4, i8 int8, f4 float4,
                            f8 float8, d date, ts timestamp, tz timestamptz, iv interval,
                            n numeric, t text, vc varchar(12), b bytea)
  SERVER wf_srv OPTIONS (key_prefix 'pgpoly_test:wf:hi:', write_mode 'immediate');
CREATE FOREIGN TABLE wf_hn (id int OPTIONS (key 'true'), i2 int2, i4 int4, i8 int8, f4 float4,
                            f8 float8, d date, ts timestamp, tz timestamptz, iv interval,
                            n numeric, t text, vc varchar(12), b bytea)
  SERVER wf_srv OPTIONS (key_prefix 'pgpoly_test:wf:hn:', ttl_seconds '600');
CREATE FOREIGN TABLE wf_s (id int8 OPTIONS (key 'true'), v timestamptz) SERVER wf_srv
  OPTIONS (table_type 'string', key_prefix 'pgpoly_test:wf:s:');
DO $$
DECLARE p text;
BEGIN
  FOREACH p IN ARRAY ARRAY['h', 'hi', 'hn'] LOOP
    EXECUTE format('CREATE FOREIGN TABLE %I (id int OPTIONS (key ''true''), i2 text, i4 text,
                    i8 text, f4 text, f8 text, d text, ts text, tz text, iv text, n text, t text,
                    vc text, b text) SERVER wf_srv OPTIONS (key_prefix %L)',
                   'wf_' || p || '_text', 'pgpoly_test:wf:' || p || ':');
  END LOOP;
END $$;
CREATE FOREIGN TABLE wf_s_text (id text OPTIONS (key 'true'), v text) SERVER wf_srv
  OPTIONS (table_type 'string', key_prefix 'pgpoly_test:wf:s:');
-- keys of every fast-path type: (key, id) tables and their text
DO $$
DECLARE c text[];
BEGIN
  FOREACH c SLICE 1 IN ARRAY ARRAY[['tz', 'timestamptz'], ['ts', 'timestamp'], ['d', 'date'],
                                   ['f8', 'float8'], ['n', 'numeric'], ['iv', 'interval']] LOOP
    EXECUTE format('CREATE FOREIGN TABLE %I (k %s OPTIONS (key ''true''), id int)
                    SERVER wf_srv OPTIONS (key_prefix %L)',
                   'wf_k_' || c[1], c[2], 'pgpoly_test:wf:k_' || c[1] || ':');
    EXECUTE format('CREATE FOREIGN TABLE %I (k text OPTIONS (key ''true''), id int)
                    SERVER wf_srv OPTIONS (key_prefix %L)',
                   'wf_k_' || c[1] || '_text', 'pgpoly_test:wf:k_' || c[1] || ':');
  END LOOP;
END $$;

-- the rows keyed by column col: one per distinct value (SQL equality: 0 and
-- -0, 1 and 1.000, '1 day' and '24 hours' are one value, one key)
CREATE FUNCTION wf_keys(col text) RETURNS TABLE (id int) LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format('SELECT min(id) FROM wf_native WHERE %1$I IS NOT NULL
                               GROUP BY %1$I', col);
END $$;

-- The writes, each path in a session with other settings than the fixed
-- ones (every IntervalStyle, extra_float_digits, DateStyle, TimeZone).
SET DateStyle = 'SQL, DMY';
SET TimeZone = 'America/St_Johns';
SET IntervalStyle = sql_standard;
SET extra_float_digits = 0;
SET bytea_output = escape;
BEGIN;
INSERT INTO wf_h SELECT * FROM wf_native;
INSERT INTO wf_s SELECT id, tz FROM wf_native;
INSERT INTO wf_k_tz SELECT tz, id FROM wf_keys('tz') JOIN wf_native USING (id);
INSERT INTO wf_k_ts SELECT ts, id FROM wf_keys('ts') JOIN wf_native USING (id);
COMMIT;
SET DateStyle = 'German';
SET TimeZone = 'Asia/Kathmandu';
SET IntervalStyle = iso_8601;
SET extra_float_digits = -15;
SET bytea_output = hex;
INSERT INTO wf_hi SELECT * FROM wf_native;
INSERT INTO wf_k_d SELECT d, id FROM wf_keys('d') JOIN wf_native USING (id);
INSERT INTO wf_k_f8 SELECT f8, id FROM wf_keys('f8') JOIN wf_native USING (id);
SET DateStyle = 'Postgres, YMD';
SET TimeZone = 'Pacific/Chatham';
SET IntervalStyle = postgres_verbose;
SET extra_float_digits = 1;
BEGIN;
INSERT INTO wf_hn SELECT * FROM wf_native ON CONFLICT DO NOTHING;
INSERT INTO wf_k_n SELECT n, id FROM wf_keys('n') JOIN wf_native USING (id);
INSERT INTO wf_k_iv SELECT iv, id FROM wf_keys('iv') JOIN wf_native USING (id);
COMMIT;

-- Read back under the fixed settings: every stored text is the native text.
SET DateStyle = ISO;
SET TimeZone = UTC;
SET IntervalStyle = postgres;
SET extra_float_digits = 3;
CREATE VIEW wf_native_text AS
SELECT id, i2::text, i4::text, i8::text, f4::text, f8::text, d::text, ts::text, tz::text,
       iv::text, n::text, t, vc::text, convert_from(b, 'UTF8') AS b
FROM wf_native;
CREATE FUNCTION wf_differences(rel regclass) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  EXECUTE format('SELECT count(*) FROM ((TABLE wf_native_text EXCEPT ALL TABLE %1$s)
                  UNION ALL (TABLE %1$s EXCEPT ALL TABLE wf_native_text)) x', rel) INTO n;
  RETURN n;
END $$;
SELECT wf_differences('wf_h_text') AS h, wf_differences('wf_hi_text') AS hi,
       wf_differences('wf_hn_text') AS hn, count(*) AS rows FROM wf_h_text;
SELECT count(*) AS string_differences FROM
  ((SELECT id::text, tz::text FROM wf_native WHERE tz IS NOT NULL EXCEPT ALL TABLE wf_s_text)
   UNION ALL (TABLE wf_s_text EXCEPT ALL SELECT id::text, tz::text FROM wf_native
              WHERE tz IS NOT NULL)) x;
CREATE FUNCTION wf_key_differences(col text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  EXECUTE format('SELECT count(*) FROM (
                    (SELECT %1$I::text, id FROM wf_keys(%1$L) JOIN wf_native USING (id)
                     EXCEPT ALL TABLE %2$I)
                    UNION ALL (TABLE %2$I EXCEPT ALL
                               SELECT %1$I::text, id FROM wf_keys(%1$L) JOIN wf_native USING (id))) x',
                 col, 'wf_k_' || col || '_text') INTO n;
  RETURN n;
END $$;
SELECT c AS key_column, wf_key_differences(c) AS differences,
       (SELECT count(*) FROM wf_keys(c)) AS keys
FROM unnest(ARRAY['tz', 'ts', 'd', 'f8', 'n', 'iv']) c;
-- the edge rows' stored text, as Redis holds it
SELECT id, f4, f8, d, ts, tz, iv FROM wf_h_text WHERE id < 100 ORDER BY id;

-- UPDATE writes the changed columns in the same form (tz moved by a
-- microsecond: fractions gain and lose digits; the BC and five-digit years
-- and the infinities go through datetime.c).
SET TimeZone = 'Australia/Eucla';
SET DateStyle = 'SQL, MDY';
BEGIN;
UPDATE wf_h SET tz = tz + interval '1 microsecond', ts = ts - interval '1 microsecond',
                d = d + 1, f8 = -f8, i8 = i8 / 3
  WHERE id NOT IN (2, 3) AND (id < 100 OR id % 10 = 0);
UPDATE wf_native SET tz = tz + interval '1 microsecond', ts = ts - interval '1 microsecond',
                     d = d + 1, f8 = -f8, i8 = i8 / 3
  WHERE id NOT IN (2, 3) AND (id < 100 OR id % 10 = 0);
COMMIT;
SET DateStyle = ISO;
SET TimeZone = UTC;
SELECT wf_differences('wf_h_text') AS h_after_update;

-- clean up
DELETE FROM wf_h;
DELETE FROM wf_hi;
DELETE FROM wf_hn;
DELETE FROM wf_s;
DELETE FROM wf_k_tz;
DELETE FROM wf_k_ts;
DELETE FROM wf_k_d;
DELETE FROM wf_k_f8;
DELETE FROM wf_k_n;
DELETE FROM wf_k_iv;
DROP SERVER wf_srv CASCADE;
