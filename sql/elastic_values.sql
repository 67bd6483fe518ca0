--
-- pgpoly_elastic: pushed comparisons and sorts select what PostgreSQL would
-- select from the values the table reads, whatever the field's mapping and
-- the session's settings.  Differential: every query runs on the foreign
-- table (pushed down) and on a native copy read by a full scan; a
-- difference is a wrong answer.  Attacked:
--   - a date field keeps milliseconds: timestamps that differ in their
--     microseconds (as now() writes them) compare and sort alike in
--     Elasticsearch;
--   - dates written with an offset, or as epoch milliseconds, are instants
--     in Elasticsearch: a timestamp column reads their UTC time and a date
--     column their UTC day; timestamp(p) columns round what they read;
--   - fields whose mapped type does not compare as the column's SQL type:
--     float (single precision) and long (truncates 2.75 to 2) read by
--     float8/numeric columns, numbers in a keyword field read by an int
--     column (ordered as strings), keywords with a lowercase normalizer
--     ('Ab' = 'ab'), a field the mapping does not have, a field an index
--     pattern maps differently in its indexes;
--   - an index whose mapping disables _source (its fields read as NULL);
--   - a field holding an array, matched by a pushed term on any element,
--     in a column the query does not select; a field of a nested object;
--   - a double field tells -0.0 from 0.0 (a term 0 misses -0.0, gte 0
--     too), SQL does not;
--   - a date_nanos field holds microseconds: the upper bound of the range
--     sent for a timestamp column's value must not cut them;
--   - a sort key after a date/time column: documents the column reads as
--     equal (one day, one rounded second) are different instants in
--     Elasticsearch, which orders them by instant, not by the next key;
--   - sessions west of UTC with a half-hour offset and east with one,
--     DateStyle/IntervalStyle/extra_float_digits/lc_numeric, generic plans
--     with NULL parameters.
--
\getenv es_url ES_URL
\set VERBOSITY terse

CREATE SERVER ev_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('ev_es', 'DELETE', '/regress_ev') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('ev_es', 'DELETE', '/regress_ev2') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('ev_es', 'DELETE', '/regress_ev3') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('ev_es', 'DELETE', '/regress_ev4') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('ev_es', 'PUT', '/regress_ev', '{"mappings": {"dynamic": false,
    "properties": {"ts": {"type": "date"}, "d": {"type": "date"}, "ns": {"type": "date_nanos"},
      "f": {"type": "float"}, "fd": {"type": "double"}, "l": {"type": "long"},
      "kw": {"type": "keyword"}, "n": {"type": "long"},
      "kn": {"type": "keyword", "normalizer": "lowercase"},
      "tn": {"type": "text", "fields": {"keyword": {"type": "keyword", "normalizer": "lowercase"}}}}}}')
  ->>'acknowledged' AS created;
-- A second index the pattern regress_ev* reaches maps n as a keyword.
SELECT pgpoly.elastic_request('ev_es', 'PUT', '/regress_ev2', '{"mappings": {"dynamic": false,
    "properties": {"n": {"type": "keyword"}, "fd": {"type": "double"}}}}')->>'acknowledged' AS created;

-- Documents as another client writes them: sub-millisecond times, offsets,
-- epoch milliseconds, dates with times, numbers of every kind.
CREATE FOREIGN TABLE ev_raw (_id text, _source jsonb)
  SERVER ev_es OPTIONS (index 'regress_ev', refresh 'true');
CREATE FOREIGN TABLE ev_raw2 (_id text, _source jsonb)
  SERVER ev_es OPTIONS (index 'regress_ev2', refresh 'true');
INSERT INTO ev_raw
SELECT i::text, jsonb_strip_nulls(jsonb_build_object(
         'ts', CASE i % 5
                 WHEN 0 THEN to_jsonb(to_char(t, 'YYYY-MM-DD"T"HH24:MI:SS.US'))
                 WHEN 1 THEN to_jsonb(to_char(t + interval '5:30', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+05:30')
                 WHEN 2 THEN to_jsonb(to_char(t - interval '3:30', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '-03:30')
                 WHEN 3 THEN to_jsonb(floor(extract(epoch FROM t) * 1000)::bigint)
               END,
         'd', CASE i % 4
                WHEN 0 THEN to_char(t, 'YYYY-MM-DD')
                WHEN 1 THEN to_char(t - interval '5 hours', 'YYYY-MM-DD"T"HH24:MI:SS') || '-05:00'
                WHEN 2 THEN to_char(t, 'YYYY-MM-DD"T"HH24:MI:SS.US') || 'Z'
              END,
         'ns', to_char(t, 'YYYY-MM-DD"T"HH24:MI:SS.US') || 'Z',
         'f', i / 10.0, 'fd', i / 10.0, 'l', i / 4.0, 'kw', i, 'n', i, 'un', i,
         'kn', (ARRAY['Ab', 'aB', 'ab', 'b'])[1 + i % 4], 'tn', (ARRAY['Ab', 'ab', 'B'])[1 + i % 3]))
FROM (SELECT i, timestamp '2024-03-09 22:00' + i * interval '7 hours 0.00037 seconds' AS t
      FROM generate_series(1, 40) i) s;
INSERT INTO ev_raw2 VALUES ('x1', '{"n": 5, "fd": 0.5}'), ('x2', '{"n": 40, "fd": 3.3}');
-- Zeros of both signs, which a double field tells apart, as another client
-- writes them (pgpoly reads -0.0 as 0; jsonb has no -0.0).
\! printf '%s\n' '{"index":{"_id":"z1"}}' '{"fd":-0.0,"n":100}' '{"index":{"_id":"z2"}}' '{"fd":0.0,"n":101}' | curl -s -o /dev/null -H 'Content-Type: application/x-ndjson' -X POST "$ES_URL/regress_ev/_bulk?refresh=true" --data-binary @-

CREATE FOREIGN TABLE ev (_id text, ts timestamp, tz timestamptz OPTIONS (field 'ts'),
                         ts0 timestamp(0) OPTIONS (field 'ts'), tz2 timestamptz(2) OPTIONS (field 'ts'),
                         d date, ns timestamptz, f float8, fd float8, l numeric,
                         kw int, n int, un int, kn text COLLATE "C", tn text COLLATE "C")
  SERVER ev_es OPTIONS (index 'regress_ev');
CREATE FOREIGN TABLE ev_all (_id text, n int, fd float8)
  SERVER ev_es OPTIONS (index 'regress_ev*');
SET TimeZone = 'UTC';
CREATE TABLE ev_native AS SELECT * FROM ev;
CREATE TABLE ev_all_native AS SELECT * FROM ev_all;
-- What the columns read: the instant's UTC time and day, rounded by typmod.
SELECT _id, ts, ts0, tz2, d FROM ev_native WHERE _id IN ('1', '2', '3', '4', '5', '6') ORDER BY _id;
SELECT _id, fd, n FROM ev_native WHERE _id LIKE 'z%' ORDER BY _id;

-- Rows of query a that query b lacks plus the reverse, and for ordered
-- queries the positions too (0: the same answer; -1: an error).
CREATE FUNCTION ev_diff(a text, b text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  EXECUTE format('WITH a AS MATERIALIZED (SELECT row_number() OVER () AS pos, * FROM (%1$s) q),
                       b AS MATERIALIZED (SELECT row_number() OVER () AS pos, * FROM (%2$s) q)
                  SELECT count(*) FROM ((TABLE a EXCEPT ALL TABLE b)
                                        UNION ALL (TABLE b EXCEPT ALL TABLE a)) d', a, b) INTO n;
  RETURN n;
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE '%: %', a, SQLERRM;
  RETURN -1;
END $$;
CREATE TABLE ev_queries (name text, q text);
INSERT INTO ev_queries VALUES
  ('ts = v', 'SELECT _id FROM %s WHERE ts = (SELECT ts FROM ev_native WHERE _id = ''10'') ORDER BY _id'),
  ('ts > v', 'SELECT _id FROM %s WHERE ts > (SELECT ts + interval ''0.0002 s'' FROM ev_native WHERE _id = ''10'') ORDER BY _id'),
  ('ts >= v', 'SELECT _id FROM %s WHERE ts >= (SELECT ts + interval ''0.0001 s'' FROM ev_native WHERE _id = ''20'') ORDER BY _id'),
  ('ts < v', 'SELECT _id FROM %s WHERE ts < (SELECT ts + interval ''0.0001 s'' FROM ev_native WHERE _id = ''15'') ORDER BY _id'),
  ('ts <= v', 'SELECT _id FROM %s WHERE ts <= (SELECT ts - interval ''0.0001 s'' FROM ev_native WHERE _id = ''15'') ORDER BY _id'),
  ('tz between', 'SELECT _id FROM %s WHERE tz > ''2024-03-12 10:00:00.0012+00'' AND tz <= ''2024-03-14 00:00:00.0007-03:30'' ORDER BY _id'),
  ('ts0 = v', 'SELECT _id FROM %s WHERE ts0 = (SELECT ts0 FROM ev_native WHERE _id = ''12'') ORDER BY _id'),
  ('ts0 < v', 'SELECT _id FROM %s WHERE ts0 < (SELECT ts0 FROM ev_native WHERE _id = ''12'') ORDER BY _id'),
  ('tz2 >= v', 'SELECT _id FROM %s WHERE tz2 >= (SELECT tz2 FROM ev_native WHERE _id = ''13'') ORDER BY _id'),
  ('d = v', 'SELECT _id FROM %s WHERE d = ''2024-03-11'' ORDER BY _id'),
  ('d > v', 'SELECT _id FROM %s WHERE d > ''2024-03-11'' ORDER BY _id'),
  ('d <= v', 'SELECT _id FROM %s WHERE d <= ''2024-03-12'' ORDER BY _id'),
  ('d < v', 'SELECT _id FROM %s WHERE d < ''2024-03-12'' ORDER BY _id'),
  ('ns > v', 'SELECT _id FROM %s WHERE ns > (SELECT ns FROM ev_native WHERE _id = ''9'') ORDER BY _id'),
  ('ns = v', 'SELECT _id FROM %s WHERE ns = (SELECT ns FROM ev_native WHERE _id = ''9'') ORDER BY _id'),
  ('ns <= v', 'SELECT _id FROM %s WHERE ns <= (SELECT ns FROM ev_native WHERE _id = ''9'') ORDER BY _id'),
  ('ns BETWEEN', 'SELECT _id FROM %s WHERE ns BETWEEN (SELECT ns FROM ev_native WHERE _id = ''9'') AND (SELECT ns FROM ev_native WHERE _id = ''11'') ORDER BY _id'),
  ('ts order limit', 'SELECT _id, ts FROM %s ORDER BY ts DESC NULLS FIRST, _id LIMIT 7 OFFSET 2'),
  ('ts order', 'SELECT ts FROM %s WHERE ts IS NOT NULL ORDER BY ts LIMIT 9'),
  ('d order', 'SELECT d FROM %s ORDER BY d NULLS FIRST LIMIT 12'),
  ('d order, then n', 'SELECT d, n FROM %s ORDER BY d, n DESC LIMIT 12'),
  ('d desc order, then n', 'SELECT d, n FROM %s WHERE d IS NOT NULL ORDER BY d DESC, n LIMIT 9'),
  ('ns order', 'SELECT _id FROM %s ORDER BY ns DESC LIMIT 5'),
  ('float field', 'SELECT _id FROM %s WHERE f > 0.3 ORDER BY _id'),
  ('float field =', 'SELECT _id FROM %s WHERE f = 0.7 ORDER BY _id'),
  ('double field', 'SELECT _id FROM %s WHERE fd > 0.3 AND fd <= 2.1 ORDER BY _id'),
  ('double = 0', 'SELECT _id FROM %s WHERE fd = 0 ORDER BY _id'),
  ('double = -0', 'SELECT _id FROM %s WHERE fd = ''-0'' ORDER BY _id'),
  ('double <> 0', 'SELECT _id FROM %s WHERE fd <> 0 ORDER BY _id'),
  ('double >= 0', 'SELECT _id FROM %s WHERE fd >= 0 ORDER BY _id'),
  ('double <= -0', 'SELECT _id FROM %s WHERE fd <= ''-0'' ORDER BY _id'),
  ('double < 0', 'SELECT _id FROM %s WHERE fd < 0 ORDER BY _id'),
  ('double > -0', 'SELECT _id FROM %s WHERE fd > ''-0'' ORDER BY _id'),
  ('double IN (0, 0.5)', 'SELECT _id FROM %s WHERE fd IN (0, 0.5) ORDER BY _id'),
  ('double = 0::numeric', 'SELECT _id FROM %s WHERE fd = 0::numeric::float8 ORDER BY _id'),
  ('long field read as numeric', 'SELECT _id FROM %s WHERE l > 2 ORDER BY _id'),
  ('long field =', 'SELECT _id FROM %s WHERE l = 2 ORDER BY _id'),
  ('keyword read as int', 'SELECT _id FROM %s WHERE kw > 9 ORDER BY _id'),
  ('keyword order', 'SELECT kw FROM %s ORDER BY kw LIMIT 5'),
  ('normalized keyword =', 'SELECT _id FROM %s WHERE kn = ''ab'' ORDER BY _id'),
  ('normalized keyword IN', 'SELECT _id FROM %s WHERE kn IN (''AB'', ''b'') ORDER BY _id'),
  ('normalized keyword order', 'SELECT kn FROM %s ORDER BY kn LIMIT 20'),
  ('normalized .keyword =', 'SELECT _id FROM %s WHERE tn = ''Ab'' ORDER BY _id'),
  ('normalized .keyword <', 'SELECT _id FROM %s WHERE tn < ''a'' ORDER BY _id'),
  ('unmapped =', 'SELECT _id FROM %s WHERE un = 5'),
  ('unmapped IS NULL', 'SELECT count(*) FROM %s WHERE un IS NULL'),
  ('unmapped order', 'SELECT un FROM %s ORDER BY un DESC LIMIT 3'),
  ('count(*)', 'SELECT count(*) FROM %s WHERE ts >= (SELECT ts FROM ev_native WHERE _id = ''20'')');
CREATE FUNCTION ev_check() RETURNS TABLE (name text, diff bigint) LANGUAGE sql AS $$
  SELECT name, ev_diff(format(q, 'ev'), format(q, 'ev_native')) FROM ev_queries
  UNION ALL
  SELECT 'pattern: ' || name, ev_diff(format(q, 'ev_all'), format(q, 'ev_all_native'))
  FROM (VALUES ('n =', 'SELECT _id FROM %s WHERE n = 5 ORDER BY _id'),
               ('n >', 'SELECT _id FROM %s WHERE n > 9 ORDER BY _id'),
               ('n order', 'SELECT n FROM %s ORDER BY n LIMIT 4'),
               ('fd >', 'SELECT _id FROM %s WHERE fd > 3 ORDER BY _id')) v(name, q)
$$;

-- West of UTC by a half hour, with other text forms.
SET TimeZone = 'America/St_Johns';
SET DateStyle = 'SQL, DMY';
SET IntervalStyle = 'sql_standard';
SET extra_float_digits = -15;
SELECT name, diff FROM ev_check() WHERE diff <> 0;
SELECT count(*) AS checked FROM ev_check();
-- East of UTC by a half hour.
SET TimeZone = 'Asia/Kolkata';
SET DateStyle = 'German';
SET IntervalStyle = 'iso_8601';
SET extra_float_digits = 3;
SET lc_numeric = 'de_DE.UTF-8';
SELECT name, diff FROM ev_check() WHERE diff <> 0;
RESET lc_numeric;

-- Generic plans, NULL parameters.
SET plan_cache_mode = force_generic_plan;
PREPARE ev_ts(timestamp, timestamptz) AS
  SELECT count(*) FROM ev WHERE ts >= $1 AND tz < $2;
EXECUTE ev_ts('2024-03-11 05:00:00.0011', '2024-03-15 01:00:00.0004+00');
SELECT count(*) FROM ev_native WHERE ts >= '2024-03-11 05:00:00.0011' AND tz < '2024-03-15 01:00:00.0004+00';
EXECUTE ev_ts(NULL, '2024-03-15');
PREPARE ev_d(date) AS SELECT count(*) FROM ev WHERE d = $1;
EXECUTE ev_d('2024-03-12');
SELECT count(*) FROM ev_native WHERE d = '2024-03-12';
EXECUTE ev_d(NULL);
RESET plan_cache_mode;
RESET TimeZone;
RESET DateStyle;
RESET IntervalStyle;
RESET extra_float_digits;

-- What is sent: a date/time comparison as a range around the value, in
-- UTC with every field, that the clause (kept local) narrows; no sort on
-- a millisecond date field; nothing for fields whose type compares otherwise.
EXPLAIN (VERBOSE, COSTS OFF)
SELECT _id FROM ev WHERE ts > '2024-03-10 02:30:00.0004' AND ts0 = '2024-03-10 02:30:00'
  AND d <= '2024-03-12' AND f > 0.5 AND fd > 0.5 AND l > 1 AND kw = 3 AND un = 2 AND n = 4;
EXPLAIN (VERBOSE, COSTS OFF) SELECT _id FROM ev ORDER BY ts LIMIT 3;
EXPLAIN (VERBOSE, COSTS OFF) SELECT _id FROM ev ORDER BY ns LIMIT 3;
-- A comparison with zero takes in (or leaves out) -0.0 with 0.0.
EXPLAIN (VERBOSE, COSTS OFF) SELECT _id FROM ev WHERE fd = 0 AND fd >= 0 AND fd IN (0, 0.5);
-- A date/time column is pushed as the last sort key only: the next key
-- orders the rows the column reads as equal, which ES sees as different.
EXPLAIN (VERBOSE, COSTS OFF) SELECT d, n FROM ev ORDER BY d, n DESC LIMIT 3;
EXPLAIN (VERBOSE, COSTS OFF) SELECT d, n FROM ev ORDER BY n, d LIMIT 3;

-- An index whose mapping disables _source: its hits carry no fields, which
-- must not read as NULLs (n = 3 would return a row whose n is NULL).
SELECT pgpoly.elastic_request('ev_es', 'PUT', '/regress_ev3', '{"mappings": {
    "_source": {"enabled": false}, "properties": {"n": {"type": "long"}}}}')->>'acknowledged' AS created;
CREATE FOREIGN TABLE ev_nosrc (_id text, n int) SERVER ev_es OPTIONS (index 'regress_ev3', refresh 'true');
INSERT INTO ev_nosrc VALUES ('s1', 3), ('s2', 4);
SELECT _id, n FROM ev_nosrc WHERE n = 3;
SELECT _id FROM ev_nosrc WHERE n = 3;
DELETE FROM ev_nosrc WHERE n = 4;
SELECT _id FROM ev_nosrc;
SELECT pgpoly.elastic_request('ev_es', 'DELETE', '/regress_ev3')->>'acknowledged' AS dropped;

-- A field holding an array matches a term on any element: the column of a
-- pushed clause is read, so such a document is an ERROR (as when the
-- column is selected), not a row claiming tag = 'a' or n > 5.
CREATE FOREIGN TABLE ev_arr (_id text, tag text, n int) SERVER ev_es OPTIONS (index 'regress_ev4');
CREATE FOREIGN TABLE ev_arr_w (_id text, _source jsonb) SERVER ev_es
  OPTIONS (index 'regress_ev4', refresh 'true');
SELECT pgpoly.elastic_request('ev_es', 'PUT', '/regress_ev4', '{"mappings": {"properties": {
    "tag": {"type": "keyword"}, "n": {"type": "long"},
    "c": {"type": "nested", "properties": {"who": {"type": "keyword"}}}}}}')->>'acknowledged' AS created;
INSERT INTO ev_arr_w VALUES ('a1', '{"tag": ["a", "b"], "n": [1, 9]}'), ('a2', '{"tag": "a", "n": 2}');
SELECT _id FROM ev_arr WHERE tag = 'a';
SELECT _id FROM ev_arr WHERE n > 5;
SELECT _id FROM ev_arr WHERE n < 5 AND _id = 'a2';
-- The fields of a nested object match only through a nested query.
CREATE FOREIGN TABLE ev_nested (_id text, who text OPTIONS (field 'c.who')) SERVER ev_es
  OPTIONS (index 'regress_ev4');
INSERT INTO ev_arr_w VALUES ('a3', '{"c": {"who": "x"}}');
SELECT _id FROM ev_nested WHERE who = 'x';
SELECT pgpoly.elastic_request('ev_es', 'DELETE', '/regress_ev4')->>'acknowledged' AS dropped;

-- A dotted field in every spelling a document may give it: Elasticsearch
-- indexes o.p from {"o.p": ..} and from {"o": {"p": ..}}, a.b.c from
-- {"a.b": {"c": ..}} and {"a": {"b.c": ..}} too.  A column reads the one
-- value there is (a pushed IS NOT NULL selects no row reading NULL); a
-- document giving the field twice holds two values, which a pushed  p = 'y'
-- matches by either: an ERROR, as for an array, not a row with p = 'x'.
CREATE FOREIGN TABLE ev_dots (_id text, p text OPTIONS (field 'o.p'),
  c text OPTIONS (field 'a.b.c')) SERVER ev_es OPTIONS (index 'regress_ev5');
CREATE FOREIGN TABLE ev_dots_w (_id text, _source jsonb) SERVER ev_es
  OPTIONS (index 'regress_ev5', refresh 'true');
INSERT INTO ev_dots_w VALUES ('d1', '{"o.p": "x"}'), ('d2', '{"o": {"p": "y"}}'),
  ('d4', '{"a.b": {"c": "z"}}'), ('d5', '{"a": {"b.c": "w"}}'),
  ('d6', '{"a.b.c": "v", "o.p": null, "o": {"p": "u"}}');
SELECT _id, p, c FROM ev_dots ORDER BY _id;
SELECT _id, c FROM ev_dots WHERE c IS NOT NULL ORDER BY _id;
SELECT _id, p FROM ev_dots WHERE p = 'u';
INSERT INTO ev_dots_w VALUES ('d3', '{"o.p": "x", "o": {"p": "y"}}');
SELECT _id, p FROM ev_dots WHERE p = 'y' ORDER BY _id;
SELECT _id, p FROM ev_dots WHERE _id = 'd3';
SELECT _id, c FROM ev_dots WHERE _id = 'd3';
SELECT pgpoly.elastic_request('ev_es', 'DELETE', '/regress_ev5')->>'acknowledged' AS dropped;

DROP FUNCTION ev_check();
DROP FUNCTION ev_diff(text, text);
DROP TABLE ev_queries, ev_native, ev_all_native;
SELECT pgpoly.elastic_request('ev_es', 'DELETE', '/regress_ev')->>'acknowledged' AS dropped;
SELECT pgpoly.elastic_request('ev_es', 'DELETE', '/regress_ev2')->>'acknowledged' AS dropped;
DROP SERVER ev_es CASCADE;
