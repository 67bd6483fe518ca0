-- Values cross the wire in one fixed text form: what a session writes, a
-- session with any other DateStyle, IntervalStyle, TimeZone,
-- extra_float_digits or bytea_output reads back equal.  Differential: each
-- read is compared with a native copy of the same rows, EXCEPT ALL both ways
-- (0 = no row differs).  Redis (hash and json tables), Elasticsearch and the
-- vector service; then keys looked up across such sessions.
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL
\set VERBOSITY terse

CREATE TYPE settings_pair AS (at timestamptz, span interval, f float8, b bytea);
CREATE DOMAIN settings_day AS date CHECK (VALUE <> '1999-12-31');
CREATE TABLE native (
    id int, d date, ts timestamp, tz timestamptz, t time, ttz timetz,
    iv interval, f4 float4, f8 float8, n numeric, b bytea,
    da date[], tza timestamptz[], f8a float8[], iva interval[], ba bytea[],
    c settings_pair, r tstzrange, j jsonb, dd settings_day);

-- Values whose text differs between settings: an ambiguous date, a DST
-- gap, floats that need all 17 digits, negative and mixed intervals, bytes
-- that are not text, infinities, NaN, BC dates, odd zone offsets ...
SET TimeZone = 'UTC';
INSERT INTO native VALUES
  (1, '2024-02-01', '2024-02-01 13:14:15.123456', '2024-03-10 07:30:00+00',
   '24:00:00', '12:34:56.789+05:45', '-1 day +02:03:04.5', 0.1::float4,
   0.1::float8 + 0.2::float8, 1.0, '\x00ff7f80', '{2024-02-01,2024-12-31}',
   '{2024-03-10 07:30:00+00,1999-12-31 23:59:59.999999+00}', '{0.1,1e-300,-0}',
   '{1 mon -1 day,-00:00:00.000001}', '{"\\x00","\\x5c"}',
   ROW('2024-11-03 06:00:00+00', '1 year 2 mons 3 days 04:05:06.7', 1e300, '\x0a0d'),
   '[2024-03-10 06:59:59+00,2024-03-10 08:00:00+00)',
   '{"d": "2024-02-01", "f": 0.30000000000000004, "iv": "-1 day"}', '2024-02-01'),
  (2, '0044-03-15 BC', 'infinity', '-infinity', '00:00:00', '00:00:00-03:30',
   '178000000 years', 'NaN', 'Infinity', -123456789.987654, '', '{infinity}',
   '{-infinity}', '{NaN,-Infinity,5e-324}', '{-178000000 years}', '{}',
   ROW('infinity', '-1 mons', 'NaN', ''), 'empty', '[]', '-infinity'),
  (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL);
-- ... and random ones, reproducibly.
SELECT setseed(0.42);
INSERT INTO native
SELECT i, d, ts, tz, t, (t::text || z)::timetz, iv, f4, f8, n, b,
       ARRAY[d, d + 1], ARRAY[tz, tz + iv], ARRAY[f8, f8 / 3], ARRAY[iv, -iv], ARRAY[b, b || b],
       ROW(tz, iv, f8, b)::settings_pair, tstzrange(tz, tz + interval '1 day' * random()),
       jsonb_build_object('d', d::text, 'f', f8, 'n', n), d + 1
FROM (SELECT i,
             date '2000-01-01' + (random() * 40000)::int - 20000 AS d,
             timestamp '1990-01-01' + random() * interval '60 years' AS ts,
             timestamptz '1990-01-01 00:00+00' + random() * interval '60 years' AS tz,
             time '00:00' + random() * interval '24 hours' AS t,
             (ARRAY['+00', '-05', '+05:30', '+13:45', '-09:30'])[1 + (random() * 4)::int] AS z,
             make_interval(years => (random() * 20)::int - 10, months => (random() * 30)::int - 15,
                           days => (random() * 60)::int - 30, secs => random() * 1e5 - 5e4) AS iv,
             (random() - 0.5) * 10 ^ (random() * 600 - 300) AS f8,
             ((random() - 0.5) * 10 ^ (random() * 70 - 35))::float4 AS f4,
             round(random()::numeric * 1e6 - 5e5, (random() * 9)::int) AS n,
             decode(md5(i::text) || md5((i * 7)::text), 'hex') AS b
      FROM generate_series(4, 103) i) s;

-- Rows of a relation that its native copy lacks, plus the reverse.
CREATE FUNCTION differences(rel regclass, cols text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  EXECUTE format('SELECT count(*) FROM ((SELECT %2$s FROM native EXCEPT ALL SELECT %2$s FROM %1$s)
                  UNION ALL (SELECT %2$s FROM %1$s EXCEPT ALL SELECT %2$s FROM native)) x',
                 rel, cols) INTO n;
  RETURN n;
END $$;
\set allcols 'id, d, ts, tz, t, ttz, iv, f4, f8, n, b, da, tza, f8a, iva, ba, c, r, j, dd'

-- Session settings, set the way a client would.
CREATE FUNCTION use_settings(datestyle text, intervalstyle text, tz text,
                             digits int, bytea text) RETURNS void LANGUAGE sql AS $$
  SELECT set_config('DateStyle', datestyle, false), set_config('IntervalStyle', intervalstyle, false),
         set_config('TimeZone', tz, false), set_config('extra_float_digits', digits::text, false),
         set_config('bytea_output', bytea, false)
$$;

-- Redis: a hash field per column, and a JSON document per key.
CREATE SERVER rs FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE FOREIGN TABLE rh (id int OPTIONS (key 'true'), d date, ts timestamp, tz timestamptz,
    t time, ttz timetz, iv interval, f4 float4, f8 float8, n numeric, b bytea,
    da date[], tza timestamptz[], f8a float8[], iva interval[], ba bytea[],
    c settings_pair, r tstzrange, j jsonb, dd settings_day)
  SERVER rs OPTIONS (key_prefix 'regress_settings:h:');
CREATE FOREIGN TABLE rj (id int OPTIONS (key 'true'), d date, ts timestamp, tz timestamptz,
    t time, ttz timetz, iv interval, f4 float4, f8 float8, n numeric, b bytea,
    da date[], tza timestamptz[], f8a float8[], iva interval[], ba bytea[],
    c settings_pair, r tstzrange, j jsonb, dd settings_day)
  SERVER rs OPTIONS (table_type 'json', key_prefix 'regress_settings:j:');

-- Written under one set of settings, read under others.
SELECT use_settings('SQL, DMY', 'sql_standard', 'America/New_York', -15, 'escape');
INSERT INTO rh SELECT * FROM native;
INSERT INTO rj SELECT * FROM native;
SELECT use_settings('German', 'iso_8601', 'Asia/Kolkata', 0, 'hex');
SELECT differences('rh', :'allcols') AS hash, differences('rj', :'allcols') AS json;
SELECT use_settings('Postgres, MDY', 'postgres_verbose', 'UTC', 3, 'escape');
SELECT differences('rh', :'allcols') AS hash, differences('rj', :'allcols') AS json;

-- Rewritten in yet other settings (UPDATE too), read back in the first ones.
SELECT use_settings('Postgres, DMY', 'iso_8601', 'Asia/Kolkata', 0, 'hex');
UPDATE rh SET tz = tz, iv = iv, f8 = f8, d = d;
DELETE FROM rj;
INSERT INTO rj SELECT * FROM native;
SELECT use_settings('SQL, DMY', 'sql_standard', 'America/New_York', -15, 'escape');
SELECT differences('rh', :'allcols') AS hash, differences('rj', :'allcols') AS json;

-- What is stored does not depend on the writer: ISO dates, UTC, all digits,
-- hex bytea in JSON (and raw bytes in hash fields).
CREATE FOREIGN TABLE rh_text (id int OPTIONS (key 'true'), d text, tz text, iv text, f8 text,
    tza text, c text)
  SERVER rs OPTIONS (key_prefix 'regress_settings:h:');
CREATE FOREIGN TABLE rj_text (id int OPTIONS (key 'true'), d text, tz text, iv text, f8 text,
    b text, tza text[])
  SERVER rs OPTIONS (table_type 'json', key_prefix 'regress_settings:j:');
SELECT * FROM rh_text WHERE id = 1;
SELECT * FROM rj_text WHERE id = 1;
CREATE FOREIGN TABLE rh_bytes (id int OPTIONS (key 'true'), b bytea)
  SERVER rs OPTIONS (key_prefix 'regress_settings:h:');
SELECT b = (SELECT b FROM native WHERE id = 1) AS raw_bytes FROM rh_bytes WHERE id = 1;

-- Elasticsearch: one document per row (dynamic mapping off: only _source).
CREATE SERVER es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('es', 'DELETE', '/regress_es_settings') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('es', 'PUT', '/regress_es_settings',
    '{"mappings": {"dynamic": false, "properties": {"id": {"type": "long"}}}}')->>'acknowledged';
CREATE FOREIGN TABLE es_rows (_id text, id int, d date, ts timestamp, tz timestamptz,
    t time, ttz timetz, iv interval, f4 float4, f8 float8, n numeric, b bytea,
    da date[], tza timestamptz[], f8a float8[], iva interval[], ba bytea[],
    c settings_pair, r tstzrange, j jsonb, dd settings_day)
  SERVER es OPTIONS (index 'regress_es_settings', refresh 'true');
SELECT use_settings('SQL, DMY', 'sql_standard', 'America/New_York', -15, 'escape');
INSERT INTO es_rows SELECT id::text, * FROM native;
SELECT use_settings('German', 'iso_8601', 'Asia/Kolkata', 0, 'hex');
SELECT differences('es_rows', :'allcols') AS elastic;
-- A pushed comparison means the same instant in every session.
SELECT pgpoly.elastic_request('es', 'DELETE', '/regress_es_settings_tz') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('es', 'PUT', '/regress_es_settings_tz',
    '{"mappings": {"properties": {"tz": {"type": "date"}, "d": {"type": "date"}}}}')->>'acknowledged';
CREATE FOREIGN TABLE es_tz (_id text, tz timestamptz, d date)
  SERVER es OPTIONS (index 'regress_es_settings_tz', refresh 'true');
SELECT use_settings('SQL, DMY', 'sql_standard', 'America/New_York', -15, 'escape');
INSERT INTO es_tz SELECT id::text, tz, d FROM native
  WHERE isfinite(tz) AND d BETWEEN '1000-01-01' AND '9999-12-31';
SELECT use_settings('German', 'iso_8601', 'Asia/Kolkata', 0, 'hex');
EXPLAIN (VERBOSE, COSTS OFF) SELECT _id FROM es_tz WHERE tz > '2024-03-10 02:00:00-05';
SELECT count(*) AS elastic,
       (SELECT count(*) FROM native WHERE tz > '2024-03-10 02:00:00-05' AND isfinite(tz)
          AND d BETWEEN '1000-01-01' AND '9999-12-31') AS native
FROM es_tz WHERE tz > '2024-03-10 02:00:00-05';
SELECT _id FROM es_tz WHERE d = '01.02.2024';
SELECT use_settings('ISO, MDY', 'postgres', 'UTC', 1, 'hex');
SELECT _id, d, tz, f8 FROM es_rows WHERE d = '2024-02-01' AND tz = '2024-03-10 07:30:00+00';

-- The vector service: scalar metadata.
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_settings"
CREATE SERVER chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE vec (id text, embedding real[], document text,
    k int OPTIONS (field 'k'), d date OPTIONS (field 'd'), ts timestamp OPTIONS (field 'ts'),
    tz timestamptz OPTIONS (field 'tz'), iv interval OPTIONS (field 'iv'),
    f8 float8 OPTIONS (field 'f8'), b bytea OPTIONS (field 'b'))
  SERVER chroma OPTIONS (collection 'pgpoly_rt_settings', create_collection 'true',
                         distance 'l2');
\set veccols 'id, d, ts, tz, iv, b'
SELECT use_settings('SQL, DMY', 'sql_standard', 'America/New_York', -15, 'escape');
INSERT INTO vec SELECT id::text, '{1,0}', NULL, id, d, ts, tz, iv, f8, b FROM native;
SELECT use_settings('German', 'iso_8601', 'Asia/Kolkata', 0, 'hex');
SELECT count(*) FROM ((SELECT id::text, d, ts, tz, iv, b FROM native
                       EXCEPT ALL SELECT :veccols FROM vec)
                      UNION ALL (SELECT :veccols FROM vec
                       EXCEPT ALL SELECT id::text, d, ts, tz, iv, b FROM native)) x;
-- Chroma parses JSON numbers to within an ulp (not always the nearest
-- double), so floats are compared to that precision; written under
-- extra_float_digits -15 they would keep one digit.
SELECT count(*) FROM native n JOIN vec v ON v.id = n.id::text
WHERE NOT (n.f8 IS NOT DISTINCT FROM v.f8 OR abs(n.f8 - v.f8) <= abs(n.f8) * 4.5e-16);
SELECT use_settings('ISO, MDY', 'postgres', 'UTC', 1, 'hex');
SELECT id, d, tz, f8 FROM vec WHERE d = '2024-02-01';

-- Keys across sessions.  A timestamptz key written in UTC is found, by key
-- lookup, from New York; a date key written under DMY from ISO.
CREATE FOREIGN TABLE tzk (k timestamptz OPTIONS (key 'true'), v int)
  SERVER rs OPTIONS (table_type 'string', key_prefix 'regress_settings:tzk:');
CREATE FOREIGN TABLE dk (k date OPTIONS (key 'true'), v int)
  SERVER rs OPTIONS (table_type 'string', key_prefix 'regress_settings:dk:');
SET TimeZone = 'UTC';
INSERT INTO tzk VALUES ('2024-03-10 07:30:00+00', 1), ('2024-11-03 06:00:00+00', 2);
SET DateStyle = 'SQL, DMY';
INSERT INTO dk VALUES ('01/02/2024', 1);
SET TimeZone = 'America/New_York';
SET DateStyle = 'ISO, MDY';
EXPLAIN (VERBOSE, COSTS OFF) SELECT v FROM tzk WHERE k = '2024-03-10 03:30:00-04';
SELECT v FROM tzk WHERE k = '2024-03-10 03:30:00-04';
SELECT v FROM tzk WHERE k = ANY ('{2024-11-03 01:00:00-05,2024-11-03 01:00:00-04}');
SELECT k FROM tzk ORDER BY k;
SELECT v FROM dk WHERE k = '2024-02-01';
-- Integers of any width are stored alike: an int8 parameter finds an int4 key.
CREATE FOREIGN TABLE ik (k int OPTIONS (key 'true'), v text)
  SERVER rs OPTIONS (table_type 'string', key_prefix 'regress_settings:ik:');
INSERT INTO ik VALUES (7, 'seven'), (-7, 'minus seven');
PREPARE by_int8(int8) AS SELECT v FROM ik WHERE k = $1;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE by_int8(7);
EXECUTE by_int8(7);
EXECUTE by_int8(4294967303);
EXPLAIN (COSTS OFF) SELECT x.n, ik.v FROM (VALUES (7::int8), (-7), (4294967303)) x(n) JOIN ik ON ik.k = x.n;
SELECT x.n, ik.v FROM (VALUES (7::int8), (-7), (4294967303)) x(n) JOIN ik ON ik.k = x.n ORDER BY 1;
-- numeric: 1 = 1.0 is not byte equality of "1" and "1.0", so the key clause
-- is a local filter (a scan), and finds the key; float8 likewise (0 = -0).
CREATE FOREIGN TABLE nk (k numeric OPTIONS (key 'true'), v int)
  SERVER rs OPTIONS (table_type 'string', key_prefix 'regress_settings:nk:');
INSERT INTO nk VALUES (1, 10), (2.50, 25);
EXPLAIN (VERBOSE, COSTS OFF) SELECT v FROM nk WHERE k = 1.0;
SELECT v FROM nk WHERE k = 1.0;
SELECT v FROM nk WHERE k IN (2.5, 3);
CREATE FOREIGN TABLE fk (k float8 OPTIONS (key 'true'), v int)
  SERVER rs OPTIONS (table_type 'string', key_prefix 'regress_settings:fk:');
INSERT INTO fk VALUES ('-0', 1), (0.30000000000000004, 2);
SELECT v FROM fk WHERE k = 0;
SET extra_float_digits = 0;
SELECT v FROM fk WHERE k = 0.1::float8 + 0.2::float8;
EXPLAIN (VERBOSE, COSTS OFF) SELECT v FROM fk WHERE k = 0;
-- bpchar: trailing blanks do not count in SQL; a local filter again.
CREATE FOREIGN TABLE bk (k char(4) OPTIONS (key 'true'), v int)
  SERVER rs OPTIONS (table_type 'string', key_prefix 'regress_settings:bk:');
INSERT INTO bk VALUES ('ab', 1);
SELECT v FROM bk WHERE k = 'ab  ';
SELECT v FROM bk WHERE k = 'ab'::char(2);

-- Clean up every key and document this test wrote.
RESET ALL;
DELETE FROM rh; DELETE FROM rj; DELETE FROM tzk; DELETE FROM dk; DELETE FROM ik;
DELETE FROM nk; DELETE FROM fk; DELETE FROM bk;
SELECT count(*) FROM rh_text;
SELECT pgpoly.elastic_request('es', 'DELETE', '/regress_es_settings')->>'acknowledged';
SELECT pgpoly.elastic_request('es', 'DELETE', '/regress_es_settings_tz')->>'acknowledged';
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_settings"
DROP SERVER rs CASCADE;
DROP SERVER es CASCADE;
DROP SERVER chroma CASCADE;
DROP FUNCTION differences(regclass, text);
DROP FUNCTION use_settings(text, text, text, int, text);
DROP TABLE native;
DROP TYPE settings_pair;
DROP DOMAIN settings_day;
