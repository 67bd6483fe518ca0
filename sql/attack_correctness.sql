--
-- Same answer every time, attacked the way users break it.  Each query runs
-- on a foreign table and on a native copy of the same rows, from sessions
-- whose settings differ from the writer's; a difference is a wrong answer.
--   1. Elasticsearch: pushed comparisons of a column with a value of another
--      type (timestamp vs timestamptz, date vs timestamptz, float8 vs
--      float4), constants and generic-plan parameters; char(n) columns.
--   2. Elasticsearch: a field holding an array (or object) read by a scalar
--      column.
--   3. The vector service: metadata filters under a nondeterministic
--      collation, with a value of another type, beyond float8.
--   4. Redis: UPDATE/DELETE of a row whose key or member another client
--      wrote in another spelling than pgpoly's fixed text form; zset score
--      ranges with float4 and NaN values.
--
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_ac_v"

CREATE COLLATION ac_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
-- Rows of query a that query b lacks plus the reverse (0: the same rows).
CREATE FUNCTION ac_diff(a text, b text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  EXECUTE format('WITH a AS MATERIALIZED (%1$s), b AS MATERIALIZED (%2$s)
                  SELECT count(*) FROM ((TABLE a EXCEPT ALL TABLE b)
                                        UNION ALL (TABLE b EXCEPT ALL TABLE a)) d', a, b) INTO n;
  RETURN n;
END $$;

-- Rows of query q.
CREATE FUNCTION ac_count(q text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  EXECUTE format('SELECT count(*) FROM (%s) q', q) INTO n;
  RETURN n;
END $$;

-- ---------------------------------------------------------------- 1. ES values
CREATE SERVER ac_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('ac_es', 'DELETE', '/regress_ac') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('ac_es', 'PUT', '/regress_ac',
    '{"mappings": {"properties": {"ts": {"type": "date"}, "tz": {"type": "date"},
      "d": {"type": "date"}, "f8": {"type": "double"}, "c": {"type": "keyword"},
      "n": {"type": "double"}}}}')->>'acknowledged';
CREATE FOREIGN TABLE ac_e (_id text, ts timestamp, tz timestamptz, d date, f8 float8, c char(4),
                           n numeric)
  SERVER ac_es OPTIONS (index 'regress_ac', refresh 'true');
CREATE TABLE ac_e_native (_id text, ts timestamp, tz timestamptz, d date, f8 float8, c char(4),
                          n numeric);
-- Instants around New York's spring DST change, floats that are float4
-- values and their float8 neighbours, char(n) values that differ only in
-- trailing blanks or sort before a blank, numerics (Elasticsearch keeps
-- them as float8s; these have no more digits than a float8 holds).
SELECT setseed(0.17);
SET TimeZone = 'UTC';
INSERT INTO ac_e_native
SELECT i, ts, ts AT TIME ZONE 'UTC', ts::date,
       CASE WHEN i % 2 = 0 THEN (i / 10.0)::float4::float8 ELSE i / 10.0 END,
       (ARRAY['ab', 'ab  ', E'ab\001', 'b', 'a'])[1 + i % 5], round(random()::numeric * 1000, 6)
FROM (SELECT i, timestamp '2024-03-09 20:00' + random() * interval '20 hours' AS ts
      FROM generate_series(1, 60) i) s;
INSERT INTO ac_e SELECT * FROM ac_e_native;

-- Read from sessions in other zones (one with DST, one with a 45-minute offset).
CREATE TABLE ac_e_queries (name text, q text);
INSERT INTO ac_e_queries VALUES
  ('timestamp > timestamptz', 'SELECT _id FROM %s WHERE ts > ''2024-03-10 02:30:00-05''::timestamptz'),
  ('timestamp <= timestamptz', 'SELECT _id FROM %s WHERE ts <= ''2024-03-10 05:00+00''::timestamptz + (now() - now())'),
  ('timestamp = ANY(timestamptz[])', 'SELECT _id FROM %s WHERE ts = ANY (ARRAY(SELECT ts::timestamptz FROM ac_e_native WHERE _id < ''3''))'),
  ('timestamptz < timestamp', 'SELECT _id FROM %s WHERE tz < ''2024-03-10 01:30''::timestamp'),
  ('timestamptz >= timestamp', 'SELECT _id FROM %s WHERE tz >= ''2024-03-10 03:30''::timestamp'),
  ('date > timestamptz', 'SELECT _id FROM %s WHERE d > ''2024-03-09 20:00-05''::timestamptz'),
  ('date = timestamp', 'SELECT _id FROM %s WHERE d = ''2024-03-10''::timestamp'),
  ('float8 = float4', 'SELECT _id FROM %s WHERE f8 = 0.4::float4'),
  ('float8 < float4', 'SELECT _id FROM %s WHERE f8 < 1.2::float4'),
  ('float8 IN float4', 'SELECT _id FROM %s WHERE f8 IN (0.4::float4, 0.7::float4)'),
  ('char(4) =', 'SELECT _id FROM %s WHERE c = ''ab'''),
  ('char(4) IN', 'SELECT _id FROM %s WHERE c IN (''ab '', ''b'')'),
  ('char(4) <>', 'SELECT _id FROM %s WHERE c <> ''ab'''),
  ('char(4) order', 'SELECT _id, row_number() OVER () FROM (SELECT _id FROM %s ORDER BY c, _id LIMIT 30) s'),
  -- Elasticsearch holds no infinite date and no number beyond float8, nor
  -- more digits than a float8 (its range query rounds them).
  ('date < infinity', 'SELECT _id FROM %s WHERE d < ''infinity'''),
  ('date <> infinity', 'SELECT _id FROM %s WHERE d <> ''infinity'''),
  ('timestamptz > -infinity', 'SELECT _id FROM %s WHERE tz > ''-infinity'''),
  ('timestamp = infinity', 'SELECT _id FROM %s WHERE ts = ''infinity'''),
  ('float8 < Infinity', 'SELECT _id FROM %s WHERE f8 < ''Infinity'''),
  ('float8 <> NaN', 'SELECT _id FROM %s WHERE f8 <> ''NaN'''),
  ('numeric < NaN', 'SELECT _id FROM %s WHERE n < ''NaN'''),
  ('numeric < 1e400', 'SELECT _id FROM %s WHERE n < 1e400'),
  ('numeric > 1e400', 'SELECT _id FROM %s WHERE n > 1e400'),
  ('numeric IN 1e400', 'SELECT _id FROM %s WHERE n IN (1e400, (SELECT n FROM ac_e_native WHERE _id = ''5''))'),
  ('numeric >= more digits', 'SELECT _id FROM %s WHERE n >= (SELECT n + 1e-20 FROM ac_e_native WHERE _id = ''5'')'),
  ('numeric <= more digits', 'SELECT _id FROM %s WHERE n <= (SELECT n - 1e-20 FROM ac_e_native WHERE _id = ''5'')'),
  ('numeric = more digits', 'SELECT _id FROM %s WHERE n = (SELECT n + 1e-20 FROM ac_e_native WHERE _id = ''5'')');
SET TimeZone = 'America/New_York';
SELECT name, ac_diff(format(q, 'ac_e'), format(q, 'ac_e_native')) AS new_york,
       ac_count(format(q, 'ac_e_native')) AS native_rows
FROM ac_e_queries ORDER BY name;
SET TimeZone = 'Asia/Kathmandu';
SELECT name, ac_diff(format(q, 'ac_e'), format(q, 'ac_e_native')) AS kathmandu
FROM ac_e_queries ORDER BY name;
-- Generic plans: the parameter's type is not the column's.
SET TimeZone = 'America/New_York';
SET plan_cache_mode = force_generic_plan;
PREPARE ac_ts(timestamptz) AS SELECT count(*) FROM ac_e WHERE ts < $1;
PREPARE ac_tz(timestamp) AS SELECT count(*) FROM ac_e WHERE tz > $1;
PREPARE ac_f(float4) AS SELECT count(*) FROM ac_e WHERE f8 = $1;
EXECUTE ac_ts('2024-03-10 04:00-05');
SELECT count(*) FROM ac_e_native WHERE ts < '2024-03-10 04:00-05'::timestamptz;
EXECUTE ac_tz('2024-03-10 04:00');
SELECT count(*) FROM ac_e_native WHERE tz > '2024-03-10 04:00'::timestamp;
EXECUTE ac_f(0.4);
SELECT count(*) FROM ac_e_native WHERE f8 = 0.4::float4;
RESET plan_cache_mode;
-- Document ids under a nondeterministic collation: an ids query compares
-- bytes, so the clause stays in PostgreSQL.
CREATE FOREIGN TABLE ac_e_ci (_id text COLLATE ac_ci, c char(4))
  SERVER ac_es OPTIONS (index 'regress_ac', refresh 'true');
INSERT INTO ac_e_ci VALUES ('Doc-A', 'x'), ('doc-b', 'y');
SELECT _id FROM ac_e_ci WHERE _id = 'doc-a';
SELECT _id FROM ac_e_ci WHERE _id IN ('DOC-B', 'nope');
SELECT _id FROM ac_e WHERE _id = 'DOC-A' COLLATE ac_ci;
DELETE FROM ac_e_ci WHERE _id IN ('doc-a', 'DOC-B');
-- What stays in PostgreSQL, and what is still sent (a value of the column's
-- own type, in the fixed form).
EXPLAIN (VERBOSE, COSTS OFF)
SELECT _id FROM ac_e WHERE ts > '2024-03-10 02:30:00-05'::timestamptz AND f8 = 0.4::float4
  AND c = 'ab' AND tz >= '2024-03-10 03:30-04';

-- ---------------------------------------------------------------- 2. ES arrays
-- Elasticsearch matches a term on any element of an array, so a scalar
-- column cannot read an array: its row would not satisfy the pushed
-- clause that selected it.  An array column reads it.
SELECT pgpoly.elastic_request('ac_es', 'DELETE', '/regress_ac_tags') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('ac_es', 'PUT', '/regress_ac_tags',
    '{"mappings": {"properties": {"tag": {"type": "keyword"}}}}')->>'acknowledged';
CREATE FOREIGN TABLE ac_tags (_id text, tags text[] OPTIONS (field 'tag'),
                              owner jsonb OPTIONS (field 'owner'))
  SERVER ac_es OPTIONS (index 'regress_ac_tags', refresh 'true');
CREATE FOREIGN TABLE ac_tag (_id text, tag text, owner_name text OPTIONS (field 'owner.name'))
  SERVER ac_es OPTIONS (index 'regress_ac_tags');
INSERT INTO ac_tags VALUES ('1', '{a,b}', NULL), ('2', NULL, '[{"name": "x"}, {"name": "y"}]');
SELECT _id, tags FROM ac_tags WHERE 'a' = ANY (tags);
\set VERBOSITY terse
SELECT _id, tag FROM ac_tag WHERE tag = 'a';
\echo :LAST_ERROR_SQLSTATE
SELECT _id, owner_name FROM ac_tag WHERE owner_name = 'x';
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
SELECT _id, tag FROM ac_tag WHERE _id = '1';
SELECT _id, owner_name FROM ac_tag WHERE _id = '2';
-- Single values read as before, and the same clauses find them.
CREATE FOREIGN TABLE ac_tag_w (_id text, tag text, owner jsonb)
  SERVER ac_es OPTIONS (index 'regress_ac_tags', refresh 'true');
INSERT INTO ac_tag_w VALUES ('3', 'a', '{"name": "x"}');
SELECT _id, tag, owner_name FROM ac_tag WHERE tag = 'a' AND owner_name = 'x' AND _id > '2';
SELECT _id, tags, owner FROM ac_tags ORDER BY _id;  -- "a" reads as {a}

-- ---------------------------------------------------------------- 3. vector filters
CREATE SERVER ac_vec FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE ac_v (id text, embedding real[], metadata jsonb,
    task text OPTIONS (field 'task'), f8 float8 OPTIONS (field 'f8'))
  SERVER ac_vec OPTIONS (collection 'regress_ac_v', create_collection 'true', distance 'l2');
CREATE TABLE ac_v_native (id text, embedding real[], metadata jsonb, task text, f8 float8);
INSERT INTO ac_v_native
SELECT CASE WHEN i % 2 = 0 THEN 'Rec-' ELSE 'rec-' END || i, ARRAY[i, 0]::real[],
       jsonb_build_object('task', t, 'f8', f), t, f
FROM (SELECT i, (ARRAY['Vision', 'vision', 'VISION', 'nlp'])[1 + i % 4] AS t,
             CASE WHEN i % 2 = 0 THEN (i / 10.0)::float4::float8 ELSE i / 10.0 END AS f
      FROM generate_series(1, 12) i) s;
-- JSON has no Infinity or NaN: such floats are written as strings.
INSERT INTO ac_v_native
SELECT n, ARRAY[100 + i, 0]::real[], jsonb_build_object('task', 'special', 'f8', f), 'special', f
FROM (VALUES (1, 'inf', 'Infinity'::float8), (2, 'ninf', '-Infinity'), (3, 'nan', 'NaN')) v(i, n, f);
INSERT INTO ac_v (id, embedding, task, f8) SELECT id, embedding, task, f8 FROM ac_v_native;
CREATE TABLE ac_v_queries (name text, q text);
INSERT INTO ac_v_queries VALUES
  ('ci =', 'SELECT id FROM %s WHERE task = ''vision'' COLLATE ac_ci'),
  ('ci = k-NN', 'SELECT id FROM %s WHERE task = ''vision'' COLLATE ac_ci ORDER BY embedding <-> ''{0,0}'' LIMIT 4'),
  ('ci ->>', 'SELECT id FROM %s WHERE metadata->>''task'' = ''VISION'' COLLATE ac_ci'),
  ('ci IN', 'SELECT id FROM %s WHERE task COLLATE ac_ci IN (''vision'', ''x'')'),
  ('ci id =', 'SELECT task FROM %s WHERE id = ''REC-1'' COLLATE ac_ci'),
  ('ci id IN', 'SELECT task FROM %s WHERE id COLLATE ac_ci IN (''rec-2'', ''REC-3'')'),
  ('float8 = float4', 'SELECT id FROM %s WHERE f8 = 0.4::float4'),
  ('float8 = float4 k-NN', 'SELECT id FROM %s WHERE f8 <= 0.8::float4 ORDER BY embedding <-> ''{0,0}'' LIMIT 3'),
  ('beyond float8 >', 'SELECT id FROM %s WHERE (metadata->>''f8'')::numeric > 1e400'),
  ('beyond float8 <', 'SELECT id FROM %s WHERE (metadata->>''f8'')::numeric < 1e400 ORDER BY embedding <-> ''{0,0}'' LIMIT 3'),
  ('beyond float8 >=', 'SELECT id FROM %s WHERE (metadata->>''f8'')::numeric >= -1e400 ORDER BY embedding <-> ''{0,0}'' LIMIT 3'),
  ('Infinity k-NN', 'SELECT id FROM %s WHERE f8 < ''Infinity'' ORDER BY embedding <-> ''{0,0}'' LIMIT 3'),
  ('more digits k-NN', 'SELECT id FROM %s WHERE (metadata->>''f8'')::numeric > 0.40000000000000000001 ORDER BY embedding <-> ''{0,0}'' LIMIT 3'),
  ('more digits = k-NN', 'SELECT id FROM %s WHERE (metadata->>''f8'')::numeric = 0.30000000000000000001 ORDER BY embedding <-> ''{0,0}'' LIMIT 3'),
  ('strings Infinity, NaN: >', 'SELECT id FROM %s WHERE f8 > 1'),
  ('strings Infinity, NaN: <', 'SELECT id FROM %s WHERE f8 < 1'),
  ('strings Infinity, NaN: = Infinity', 'SELECT id FROM %s WHERE f8 = ''Infinity'''),
  ('strings Infinity, NaN: >= Infinity', 'SELECT id FROM %s WHERE f8 >= ''Infinity'''),
  ('strings Infinity, NaN: < NaN', 'SELECT id FROM %s WHERE f8 < ''NaN'''),
  ('strings Infinity, NaN: = NaN', 'SELECT id FROM %s WHERE f8 = ''NaN'''),
  ('strings Infinity, NaN: numeric >', 'SELECT id FROM %s WHERE (metadata->>''f8'')::numeric > 1'),
  ('strings Infinity, NaN: k-NN', 'SELECT id FROM %s WHERE f8 > 1 ORDER BY embedding <-> ''{200,0}'' LIMIT 3');
SELECT name, ac_diff(format(q, 'ac_v'), format(q, 'ac_v_native')) AS vector,
       ac_count(format(q, 'ac_v_native')) AS native_rows
FROM ac_v_queries ORDER BY name;
EXPLAIN (VERBOSE, COSTS OFF)
SELECT id FROM ac_v WHERE task = 'vision' COLLATE ac_ci ORDER BY embedding <-> '{0,0}' LIMIT 4;

-- ---------------------------------------------------------------- 4. Redis spellings
-- Another client wrote an int key as "007", a uuid key in capitals and a
-- timestamptz member in ISO 8601 with a T: a scan reads them (as 7, the
-- uuid, the instant), but pgpoly's fixed form of those values names
-- another key or member, so UPDATE and DELETE of such a row would write a
-- second key, or remove nothing while counting the row.  They are refused;
-- rows stored in the fixed form are modified as usual.
CREATE SERVER ac_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE FOREIGN TABLE ac_raw (key text, v text) SERVER ac_redis
  OPTIONS (key_prefix 'regress_ac:', write_mode 'immediate');
CREATE FOREIGN TABLE ac_int (k int OPTIONS (key 'true'), v text) SERVER ac_redis
  OPTIONS (key_prefix 'regress_ac:i:', write_mode 'immediate');
CREATE FOREIGN TABLE ac_uuid (k uuid OPTIONS (key 'true'), v text) SERVER ac_redis
  OPTIONS (key_prefix 'regress_ac:u:');
CREATE FOREIGN TABLE ac_zraw (key text, member text, score float8) SERVER ac_redis
  OPTIONS (table_type 'zset', key_prefix 'regress_ac:z:', write_mode 'immediate');
CREATE FOREIGN TABLE ac_z (key text, member timestamptz, score float8) SERVER ac_redis
  OPTIONS (table_type 'zset', key_prefix 'regress_ac:z:');
CREATE FOREIGN TABLE ac_lraw (key text, idx int, value text) SERVER ac_redis
  OPTIONS (table_type 'list', key_prefix 'regress_ac:l:', write_mode 'immediate');
CREATE FOREIGN TABLE ac_l (key text, idx int, value float8) SERVER ac_redis
  OPTIONS (table_type 'list', key_prefix 'regress_ac:l:', write_mode 'immediate');
DELETE FROM ac_raw;
DELETE FROM ac_zraw;
DELETE FROM ac_lraw;
INSERT INTO ac_raw VALUES ('i:007', 'a'), ('i:8', 'b'), ('u:A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', 'u');
INSERT INTO ac_zraw VALUES ('z', '2024-03-10T07:30:00Z', 1), ('z', '2024-03-11 07:30:00+00', 2);
INSERT INTO ac_lraw (key, value) VALUES ('l', '1.50'), ('l', '2.5');
SELECT k, v FROM ac_int ORDER BY k;
SELECT k, v FROM ac_uuid;
SELECT key, member FROM ac_z ORDER BY score;
\set VERBOSITY terse
UPDATE ac_int SET v = 'changed' WHERE v = 'a';
\echo :LAST_ERROR_SQLSTATE
DELETE FROM ac_int WHERE k = 7 AND v = 'a';  -- a key lookup reads "7" only: no row
UPDATE ac_uuid SET v = 'changed' WHERE v = 'u';
DELETE FROM ac_z WHERE score = 1;
UPDATE ac_z SET score = 5 WHERE score < 10;
-- ... also when the rows come from a Redis Batched Join.
CREATE TABLE ac_zk (k text);
INSERT INTO ac_zk VALUES ('z');
ANALYZE ac_zk;
EXPLAIN (COSTS OFF) DELETE FROM ac_z USING ac_zk WHERE ac_z.key = ac_zk.k;
DELETE FROM ac_z USING ac_zk WHERE ac_z.key = ac_zk.k;
DELETE FROM ac_l WHERE value = 1.5;
\set VERBOSITY default
SELECT key, v FROM ac_raw ORDER BY key;
SELECT key, member, score FROM ac_zraw ORDER BY score;
SELECT key, idx, value FROM ac_lraw ORDER BY idx;
DELETE FROM ac_uuid;
-- Rows in the fixed form: modified as usual, also by a scan that reads the
-- others.
UPDATE ac_int SET v = 'b2' WHERE v = 'b';
DELETE FROM ac_z WHERE score = 2 RETURNING member;
DELETE FROM ac_l WHERE value = 2.5 RETURNING value;
SELECT key, v FROM ac_raw ORDER BY key;
SELECT key, member, score FROM ac_zraw ORDER BY score;
SELECT key, idx, value FROM ac_lraw ORDER BY idx;

-- zset score ranges (ZRANGEBYSCORE): a float4 value compares widened, and
-- NaN, which Redis refuses as a bound, is above every score in SQL.
CREATE FOREIGN TABLE ac_scores (key text, member text, score float8) SERVER ac_redis
  OPTIONS (table_type 'zset', key_prefix 'regress_ac:s:', write_mode 'immediate');
CREATE TABLE ac_scores_native (key text, member text, score float8);
INSERT INTO ac_scores_native VALUES ('s', 'a', 0.1000000001), ('s', 'b', 0.1), ('s', 'c', '-Infinity'),
  ('s', 'd', 'Infinity'), ('s', 'e', 1.5), ('t', 'a', 0.10000000149011612);
INSERT INTO ac_scores SELECT * FROM ac_scores_native;
SELECT q, ac_diff(format('SELECT key, member FROM ac_scores WHERE %s', q),
                  format('SELECT key, member FROM ac_scores_native WHERE %s', q)) AS redis,
       ac_count(format('SELECT key, member FROM ac_scores_native WHERE %s', q)) AS native_rows
FROM unnest(ARRAY['score < 0.1::float4', 'score <= 0.1::float4', 'score > 0.1::float4',
                  'score = 0.1::float4', 'score < ''NaN''', 'score >= ''NaN''', 'score = ''NaN''',
                  'score BETWEEN 0.1 AND ''NaN''', 'score < ''Infinity''',
                  'score > ''-Infinity'' AND score <= ''Infinity''']) q;

-- An operator named < that the search_path puts before pg_catalog's is not
-- the type's ordering: pushdown recognises comparisons by their btree
-- strategy, not by name, so the clause stays local (here it means >).
CREATE FUNCTION ac_gt(float8, float8) RETURNS bool LANGUAGE sql IMMUTABLE
  AS 'SELECT $1 > $2';
CREATE OPERATOR public.< (LEFTARG = float8, RIGHTARG = float8, FUNCTION = ac_gt);
SET search_path = public, pg_catalog;
SELECT ac_diff('SELECT key, member FROM ac_scores WHERE score < 1',
               'SELECT key, member FROM ac_scores_native WHERE score < 1') AS redis,
       ac_count('SELECT key, member FROM ac_scores_native WHERE score < 1') AS native_rows;
SELECT ac_diff('SELECT id FROM ac_v WHERE f8 < 1', 'SELECT id FROM ac_v_native WHERE f8 < 1') AS vector,
       ac_count('SELECT id FROM ac_v_native WHERE f8 < 1') AS native_rows;
SELECT ac_diff('SELECT _id FROM ac_e WHERE f8 < 1', 'SELECT _id FROM ac_e_native WHERE f8 < 1') AS elastic,
       ac_count('SELECT _id FROM ac_e_native WHERE f8 < 1') AS native_rows;
RESET search_path;
DROP OPERATOR public.< (float8, float8);
DROP FUNCTION ac_gt(float8, float8);

-- Clean up every key, document and collection this test wrote.
RESET TimeZone;
DELETE FROM ac_raw;
DELETE FROM ac_zraw;
DELETE FROM ac_lraw;
DELETE FROM ac_scores;
SELECT pgpoly.elastic_request('ac_es', 'DELETE', '/regress_ac')->>'acknowledged';
SELECT pgpoly.elastic_request('ac_es', 'DELETE', '/regress_ac_tags')->>'acknowledged';
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_ac_v"
DROP SERVER ac_es CASCADE;
DROP SERVER ac_vec CASCADE;
DROP SERVER ac_redis CASCADE;
DROP TABLE ac_e_native, ac_e_queries, ac_v_native, ac_v_queries, ac_zk,
  ac_scores_native;
DROP FUNCTION ac_diff(text, text);
DROP FUNCTION ac_count(text);
DROP COLLATION ac_ci;
