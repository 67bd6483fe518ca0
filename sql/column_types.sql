--
-- A foreign table's column reads what a native table with the same column
-- declaration would hold, or refuses it.  Attacked, on all three stores:
--   - object names (regclass, regtype, regprocedure, regoper, regconfig):
--     their text is qualified only where the session's search_path does not
--     reach them, so a value written under one search_path read back under
--     another as another object or as none at all;
--   - a NOT NULL domain (or one whose CHECK refuses NULL): a field the
--     store does not hold read as NULL in the column, which no native row
--     can hold (postgres_fdw runs the input function on NULLs to check);
--   - a domain over timestamp(p) / timestamptz(p): the domain's precision
--     did not round what the fast path of the fixed form read (Redis, vector
--     metadata), nor what Elasticsearch reads as an instant (an offset,
--     epoch milliseconds), as a cast to the domain does;
--   - a timestamp(p) key stored with more digits reads rounded: a key lookup
--     by a value's text found it for a value it does not equal.
-- Differential: each store's rows against a native copy, EXCEPT ALL both
-- ways (0 = no row differs).
--
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_ct"
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_ct_nn"

CREATE SERVER ct_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE SERVER ct_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
CREATE SERVER ct_vec FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
SELECT pgpoly.elastic_request('ct_es', 'DELETE', '/regress_ct') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('ct_es', 'DELETE', '/regress_ct_nn') IS NOT NULL AS cleaned;

-- Objects of the same names in two schemas.
CREATE SCHEMA ct_s;
CREATE TABLE ct_s.ct_obj (a int);
CREATE TABLE public.ct_obj (b int);
CREATE TYPE ct_s.ct_mood AS ENUM ('x');
CREATE FUNCTION ct_s.ct_fn(int) RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE FUNCTION public.ct_fn(int) RETURNS int LANGUAGE sql AS 'SELECT 2';
CREATE OPERATOR ct_s.### (LEFTARG = int, RIGHTARG = int, FUNCTION = int4pl);
CREATE TEXT SEARCH CONFIGURATION ct_s.ct_cfg (COPY = pg_catalog.simple);
CREATE TYPE ct_names AS (c regclass, t regtype);
CREATE TABLE ct_native (id int, c regclass, t regtype, p regprocedure, o regoperator,
                        cf regconfig, ca regclass[], r ct_names);
CREATE FOREIGN TABLE ct_h (id int OPTIONS (key 'true'), c regclass, t regtype,
                           p regprocedure, o regoperator, cf regconfig, ca regclass[],
                           r ct_names)
  SERVER ct_redis OPTIONS (key_prefix 'regress_ct:h:');
CREATE FOREIGN TABLE ct_j (id int OPTIONS (key 'true'), c regclass, t regtype,
                           p regprocedure, o regoperator, cf regconfig, ca regclass[],
                           r ct_names)
  SERVER ct_redis OPTIONS (table_type 'json', key_prefix 'regress_ct:j:');
CREATE FOREIGN TABLE ct_e (_id text, id int, c regclass, t regtype, p regprocedure,
                           o regoperator, cf regconfig, ca regclass[], r ct_names)
  SERVER ct_es OPTIONS (index 'regress_ct', refresh 'true');
CREATE FOREIGN TABLE ct_v (id text, embedding real[], k int OPTIONS (field 'k'),
                           c regclass OPTIONS (field 'c'), t regtype OPTIONS (field 't'),
                           p regprocedure OPTIONS (field 'p'))
  SERVER ct_vec OPTIONS (collection 'regress_ct', create_collection 'true', distance 'l2');
CREATE FOREIGN TABLE ct_h_text (id int OPTIONS (key 'true'), c text, t text, p text,
                                o text, cf text, ca text, r text)
  SERVER ct_redis OPTIONS (key_prefix 'regress_ct:h:');
\set cols 'id, c, t, p, o, cf, ca, r::text'
CREATE FUNCTION ct_differences(rel regclass, cols text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  EXECUTE format('SELECT count(*) FROM ((SELECT %2$s FROM ct_native EXCEPT ALL SELECT %2$s FROM %1$s)
                  UNION ALL (SELECT %2$s FROM %1$s EXCEPT ALL SELECT %2$s FROM ct_native)) x',
                 rel, cols) INTO n;
  RETURN n;
END $$;

-- Written where ct_s comes first, read where it is not on the path.
SET search_path = ct_s, public;
INSERT INTO public.ct_native VALUES
  (1, 'ct_obj', 'ct_mood', 'ct_fn(int)', '###(int,int)', 'ct_cfg', '{ct_obj,public.ct_obj}',
   ROW('ct_obj', 'ct_mood')),
  (2, 'public.ct_obj', 'int', 'public.ct_fn(int)', '+(int,int)', 'simple', '{}',
   ROW('pg_class', 'text[]'));
INSERT INTO public.ct_h SELECT * FROM public.ct_native;
INSERT INTO public.ct_j SELECT * FROM public.ct_native;
INSERT INTO public.ct_e SELECT id::text, * FROM public.ct_native;
INSERT INTO public.ct_v SELECT id::text, '{1,0}', id, c, t, p FROM public.ct_native;
RESET search_path;
SELECT ct_differences('ct_h', :'cols') AS hash, ct_differences('ct_j', :'cols') AS json,
       ct_differences('ct_e', :'cols') AS elastic;
SELECT count(*) AS vector FROM ((SELECT id, c, t, p FROM ct_native
                                 EXCEPT ALL SELECT k, c, t, p FROM ct_v)
                                UNION ALL (SELECT k, c, t, p FROM ct_v
                                 EXCEPT ALL SELECT id, c, t, p FROM ct_native)) x;
-- The stored text names each object whatever the reader's search_path.
SELECT * FROM ct_h_text ORDER BY id;
-- Unqualified text another client wrote reads as a cast in the session
-- does: through the session's search_path.
UPDATE ct_h_text SET c = 'ct_obj', ca = '{ct_obj}' WHERE id = 2;
SELECT c, ca FROM ct_h WHERE id = 2;
SET search_path = ct_s, public;
SELECT c, ca, c = 'ct_s.ct_obj'::regclass AS same FROM public.ct_h WHERE id = 2;
RESET search_path;

-- NOT NULL domains: a field the store does not hold is no NULL for them.
CREATE DOMAIN ct_nn AS text NOT NULL;
CREATE DOMAIN ct_nn_check AS int CHECK (VALUE IS NOT NULL);
CREATE DOMAIN ct_nullable AS int CHECK (VALUE > 0);
CREATE TABLE ct_nn_native (id int, a ct_nn, b ct_nn_check, c ct_nullable);
-- A native table refuses what the stores hold below.
INSERT INTO ct_nn_native VALUES (1, NULL, 1, 1);
INSERT INTO ct_nn_native VALUES (1, 'a', NULL, 1);
CREATE FOREIGN TABLE ct_nn_raw (id int OPTIONS (key 'true'), a text, b text, c text)
  SERVER ct_redis OPTIONS (key_prefix 'regress_ct:nn:');
CREATE FOREIGN TABLE ct_nn_h (id int OPTIONS (key 'true'), a ct_nn, b ct_nn_check,
                              c ct_nullable)
  SERVER ct_redis OPTIONS (key_prefix 'regress_ct:nn:');
INSERT INTO ct_nn_raw VALUES (1, 'a', '1', NULL), (2, NULL, '2', '2'), (3, 'c', NULL, '3');
SELECT * FROM ct_nn_h WHERE id = 1;
SELECT * FROM ct_nn_h WHERE id = 2;
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ct_nn_h WHERE id = 3;
\echo :LAST_ERROR_SQLSTATE
-- Redis: columns not read are not checked.
SELECT id, c FROM ct_nn_h ORDER BY id;
-- Writes were refused before, and still are.
INSERT INTO ct_nn_h VALUES (4, NULL, 4, 4);
UPDATE ct_nn_h SET b = NULL WHERE id = 1;
-- Elasticsearch: a document without the field, and one with a JSON null.
CREATE FOREIGN TABLE ct_nn_e_raw (_id text, _source jsonb)
  SERVER ct_es OPTIONS (index 'regress_ct_nn', refresh 'true');
CREATE FOREIGN TABLE ct_nn_e (_id text, a ct_nn, c ct_nullable)
  SERVER ct_es OPTIONS (index 'regress_ct_nn');
INSERT INTO ct_nn_e_raw VALUES ('1', '{"a": "x", "c": 1}');
SELECT * FROM ct_nn_e;
-- A field the scan does not fetch is not read as missing.
SELECT _id, c FROM ct_nn_e;
INSERT INTO ct_nn_e_raw VALUES ('2', '{"c": 2}');
SELECT * FROM ct_nn_e ORDER BY _id;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM ct_nn_e_raw WHERE _id = '2';
INSERT INTO ct_nn_e_raw VALUES ('3', '{"a": null, "c": 3}');
SELECT * FROM ct_nn_e ORDER BY _id;
-- Vector metadata without the key.
CREATE FOREIGN TABLE ct_nn_v_raw (id text, embedding real[], metadata jsonb)
  SERVER ct_vec OPTIONS (collection 'regress_ct_nn', create_collection 'true',
                         distance 'l2');
CREATE FOREIGN TABLE ct_nn_v (id text, embedding real[], a ct_nn OPTIONS (field 'a'),
                              c ct_nullable OPTIONS (field 'c'))
  SERVER ct_vec OPTIONS (collection 'regress_ct_nn');
INSERT INTO ct_nn_v_raw VALUES ('1', '{1,0}', '{"a": "x", "c": 1}');
SELECT id, a, c FROM ct_nn_v;
-- A scan reading no metadata does not read the key as missing.
SELECT id FROM ct_nn_v;
INSERT INTO ct_nn_v_raw VALUES ('2', '{0,1}', '{"c": 2}');
SELECT id, a, c FROM ct_nn_v ORDER BY id;
\echo :LAST_ERROR_SQLSTATE
-- A row without metadata lacks the key too.
DELETE FROM ct_nn_v_raw WHERE id = '2';
INSERT INTO ct_nn_v_raw VALUES ('4', '{0,1}', NULL);
SELECT id, a, c FROM ct_nn_v ORDER BY id;
-- A field another client stored that a type modifier changes on read
-- ('abc  ' in varchar(3) reads 'abc', 1.256 in numeric(4,1) reads 1.3): a
-- k-NN's pushed filter compared the stored value, and its answer, used as it
-- is, held a record the clause refuses (the filter stays local).
CREATE FOREIGN TABLE ct_tm_v (id text, embedding real[], f varchar(3) OPTIONS (field 'f'),
                              n numeric(4,1) OPTIONS (field 'n'))
  SERVER ct_vec OPTIONS (collection 'regress_ct_nn');
INSERT INTO ct_nn_v_raw VALUES ('5', '{1,0}', '{"a": "y", "f": "abc  ", "n": 1.256}');
CREATE TABLE ct_tm_native (id text, embedding real[], f varchar(3), n numeric(4,1));
INSERT INTO ct_tm_native VALUES ('5', '{1,0}', 'abc  ', 1.256);
SELECT id, f, n FROM ct_tm_v WHERE id = '5';
SELECT id FROM ct_tm_native WHERE f = 'abc  ' ORDER BY embedding <-> '{1,0}' LIMIT 1;
SELECT id FROM ct_tm_v WHERE f = 'abc  ' ORDER BY embedding <-> '{1,0}' LIMIT 1;
SELECT id FROM ct_tm_v WHERE f IN ('abc  ', 'q') ORDER BY embedding <-> '{1,0}' LIMIT 1;
SELECT id FROM ct_tm_native WHERE n > 1.26 ORDER BY embedding <-> '{1,0}' LIMIT 1;
SELECT id FROM ct_tm_v WHERE n > 1.26 ORDER BY embedding <-> '{1,0}' LIMIT 1;
DELETE FROM ct_nn_v_raw WHERE id = '5';
-- Written whole, a row is checked before it is sent.
INSERT INTO ct_nn_v VALUES ('3', '{1,1}', NULL, 3);

-- Elasticsearch: a varchar(n) _id or field another client stored with blanks
-- past n reads cut, as a native varchar(n) column holds it (the _id did not:
-- it read 5 characters into varchar(3)), and a clause the value no longer
-- satisfies does not find it (ES compares the stored text: rechecked).
CREATE DOMAIN ct_vc3 AS varchar(3);
CREATE FOREIGN TABLE ct_vc_e_raw (_id text, _source jsonb)
  SERVER ct_es OPTIONS (index 'regress_ct_vc', refresh 'true');
CREATE FOREIGN TABLE ct_vc_e (_id varchar(3), f varchar(3), g ct_vc3)
  SERVER ct_es OPTIONS (index 'regress_ct_vc');
SELECT pgpoly.elastic_request('ct_es', 'DELETE', '/regress_ct_vc') IS NOT NULL AS cleaned;
INSERT INTO ct_vc_e_raw VALUES ('abc  ', '{"f": "abc  ", "g": "abc  "}'),
                               ('xyz', '{"f": "xyz", "g": "xyz"}');
CREATE TABLE ct_vc_native (_id varchar(3), f varchar(3), g ct_vc3);
INSERT INTO ct_vc_native VALUES ('abc  ', 'abc  ', 'abc  '), ('xyz', 'xyz', 'xyz');
SELECT '"' || _id || '"' AS id, '"' || f || '"' AS f, '"' || g || '"' AS g
  FROM ct_vc_e ORDER BY 1;
SELECT count(*) AS differences FROM
  ((SELECT * FROM ct_vc_native EXCEPT ALL SELECT * FROM ct_vc_e)
   UNION ALL (SELECT * FROM ct_vc_e EXCEPT ALL SELECT * FROM ct_vc_native)) x;
SELECT _id FROM ct_vc_e WHERE _id = 'abc  ';
SELECT _id FROM ct_vc_e WHERE _id IN ('abc  ', 'xyz');
SELECT _id FROM ct_vc_e WHERE f = 'abc  ';
SELECT _id FROM ct_vc_e WHERE f IN ('abc  ', 'q');
SELECT _id FROM ct_vc_e WHERE f > 'abc' ORDER BY 1;
SELECT _id FROM ct_vc_native WHERE f > 'abc' ORDER BY 1;
SELECT _id FROM ct_vc_e WHERE g = 'abc  ';
INSERT INTO ct_vc_e_raw VALUES ('abc', '{"f": "abc", "g": "abc"}');
INSERT INTO ct_vc_native VALUES ('abc', 'abc', 'abc');
SELECT f, count(*) FROM ct_vc_native GROUP BY f ORDER BY 1;
SELECT f, count(*) FROM ct_vc_e GROUP BY f ORDER BY 1;
SELECT count(DISTINCT f) FROM ct_vc_e;
-- Elasticsearch: date/time domains with a precision round what they read.
CREATE DOMAIN ct_ts0 AS timestamp(0);
CREATE DOMAIN ct_tz1 AS timestamptz(1);
CREATE TABLE ct_ts_native (id int, s text, ts ct_ts0, tz ct_tz1, ts2 timestamp(2));
SET TimeZone = 'UTC';
SET DateStyle = ISO;
INSERT INTO ct_ts_native VALUES
  (1, '2024-01-01T10:00:00.789Z', '2024-01-01 10:00:00.789', '2024-01-01 10:00:00.789+00',
   '2024-01-01 10:00:00.789'),
  (2, '1704103200789', '2024-01-01 10:00:00.789', '2024-01-01 10:00:00.789+00',
   '2024-01-01 10:00:00.789'),
  (3, '2024-01-01T12:30:00.25+02:30', '2024-01-01 10:00:00.25', '2024-01-01 10:00:00.25+00',
   '2024-01-01 10:00:00.25');
-- Rows written by another client: the date field holds s.
CREATE FOREIGN TABLE ct_ts_e (_id text, id int, ts ct_ts0 OPTIONS (field 's'),
                              tz ct_tz1 OPTIONS (field 's'),
                              ts2 timestamp(2) OPTIONS (field 's'))
  SERVER ct_es OPTIONS (index 'regress_ct_ts');
SELECT pgpoly.elastic_request('ct_es', 'DELETE', '/regress_ct_ts') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('ct_es', 'PUT', '/regress_ct_ts',
    '{"mappings": {"properties": {"s": {"type": "date"}}}}')->>'acknowledged';
CREATE FOREIGN TABLE ct_ts_e_raw (_id text, _source jsonb)
  SERVER ct_es OPTIONS (index 'regress_ct_ts', refresh 'true');
INSERT INTO ct_ts_e_raw
  SELECT id, jsonb_build_object('id', id, 's', CASE WHEN s ~ '^\d+$' THEN to_jsonb(s::bigint)
                                                    ELSE to_jsonb(s) END)
  FROM ct_ts_native;
SELECT * FROM ct_ts_e_raw ORDER BY _id;
SELECT id, ts, tz, ts2 FROM ct_ts_e ORDER BY id;
SELECT count(*) AS differences FROM
  ((SELECT id, ts, tz, ts2 FROM ct_ts_native EXCEPT ALL SELECT id, ts, tz, ts2 FROM ct_ts_e)
   UNION ALL (SELECT id, ts, tz, ts2 FROM ct_ts_e
              EXCEPT ALL SELECT id, ts, tz, ts2 FROM ct_ts_native)) x;
-- Redis: text in the fixed form (the fast path of src/convert.c) rounds too.
CREATE FOREIGN TABLE ct_ts_h_raw (id int OPTIONS (key 'true'), ts text, tz text)
  SERVER ct_redis OPTIONS (key_prefix 'regress_ct:ts:');
CREATE FOREIGN TABLE ct_ts_h (id int OPTIONS (key 'true'), ts ct_ts0, tz ct_tz1)
  SERVER ct_redis OPTIONS (key_prefix 'regress_ct:ts:');
INSERT INTO ct_ts_h_raw VALUES (1, '2024-01-01 10:00:00.789', '2024-01-01 10:00:00.789+00'),
                               (2, '2024-01-01 10:00:00.25', '2024-01-01 12:30:00.25+02:30');
SELECT id, ts, tz FROM ct_ts_h ORDER BY id;
SELECT count(*) AS differences FROM
  ((SELECT id, ts::ct_ts0, tz::ct_tz1 FROM ct_ts_h_raw EXCEPT ALL SELECT id, ts, tz FROM ct_ts_h)
   UNION ALL (SELECT id, ts, tz FROM ct_ts_h
              EXCEPT ALL SELECT id, ts::ct_ts0, tz::ct_tz1 FROM ct_ts_h_raw)) x;
-- A timestamp(p) key another client stored with more digits reads rounded:
-- a key lookup by the value's text found it for a value it does not equal.
CREATE FOREIGN TABLE ct_key_raw (k text OPTIONS (key 'true'), v text)
  SERVER ct_redis OPTIONS (key_prefix 'regress_ct:k:');
CREATE FOREIGN TABLE ct_key (k timestamp(0) OPTIONS (key 'true'), v text)
  SERVER ct_redis OPTIONS (key_prefix 'regress_ct:k:');
CREATE FOREIGN TABLE ct_key_dom (k ct_ts0 OPTIONS (key 'true'), v text)
  SERVER ct_redis OPTIONS (key_prefix 'regress_ct:k:');
INSERT INTO ct_key_raw VALUES ('2024-01-01 10:00:00.5', 'a'), ('2024-01-01 10:00:01', 'b');
CREATE TABLE ct_key_native (k timestamp(0), v text);
INSERT INTO ct_key_native SELECT k::timestamp, v FROM ct_key_raw;
SELECT * FROM ct_key_native WHERE k = '2024-01-01 10:00:00.5'::timestamp;
SELECT * FROM ct_key WHERE k = '2024-01-01 10:00:00.5'::timestamp;
SELECT * FROM ct_key_dom WHERE k = '2024-01-01 10:00:00.5'::timestamp;
SELECT * FROM ct_key WHERE k = '2024-01-01 10:00:01'::timestamp ORDER BY v;
CREATE TABLE ct_key_probe (k timestamp);
INSERT INTO ct_key_probe VALUES ('2024-01-01 10:00:00.5'), ('2024-01-01 10:00:01');
SELECT p.k, n.v FROM ct_key_probe p JOIN ct_key_native n ON n.k = p.k ORDER BY 1, 2;
SELECT p.k, f.v FROM ct_key_probe p JOIN ct_key f ON f.k = p.k ORDER BY 1, 2;
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM ct_key WHERE k = '2024-01-01 10:00:01'::timestamp;
-- A varchar(n) key another client stored with blanks past n reads cut, as
-- a native column holds it: a lookup by a longer value's text found it for a
-- value it does not equal (no value of the column has more than n
-- characters).  The lookup stays pushed ('abc' finds the key 'abc' alone:
-- a key stored in another spelling is found by scans, not by lookups).
CREATE FOREIGN TABLE ct_vkey_raw (k text OPTIONS (key 'true'), v text)
  SERVER ct_redis OPTIONS (key_prefix 'regress_ct:vk:');
CREATE FOREIGN TABLE ct_vkey (k varchar(3) OPTIONS (key 'true'), v text)
  SERVER ct_redis OPTIONS (key_prefix 'regress_ct:vk:');
CREATE FOREIGN TABLE ct_vkey_dom (k ct_vc3 OPTIONS (key 'true'), v text)
  SERVER ct_redis OPTIONS (key_prefix 'regress_ct:vk:');
INSERT INTO ct_vkey_raw VALUES ('abc  ', 'blanks'), ('abc', 'plain');
CREATE TABLE ct_vkey_native (k varchar(3), v text);
INSERT INTO ct_vkey_native SELECT k, v FROM ct_vkey_raw;
SELECT v FROM ct_vkey_native WHERE k = 'abc  ' ORDER BY v;
SELECT v FROM ct_vkey WHERE k = 'abc  ' ORDER BY v;
SELECT v FROM ct_vkey WHERE k = 'abc  '::varchar ORDER BY v;
SELECT v FROM ct_vkey_dom WHERE k = 'abc  ' ORDER BY v;
SELECT v FROM ct_vkey WHERE k = ANY ('{"abc  ",abc}'::text[]) ORDER BY v;
PREPARE ct_vkey_p(text) AS SELECT v FROM ct_vkey WHERE k = $1 ORDER BY v;
EXECUTE ct_vkey_p('abc  ');
DEALLOCATE ct_vkey_p;
CREATE TABLE ct_vkey_probe (k text);
INSERT INTO ct_vkey_probe VALUES ('abc  '), ('abc');
ANALYZE ct_vkey_probe;
SELECT p.k, n.v FROM ct_vkey_probe p JOIN ct_vkey_native n ON n.k = p.k ORDER BY 1, 2;
EXPLAIN (COSTS OFF) SELECT p.k, f.v FROM ct_vkey_probe p JOIN ct_vkey f ON f.k = p.k;
SELECT p.k, f.v FROM ct_vkey_probe p JOIN ct_vkey f ON f.k = p.k ORDER BY 1, 2;
EXPLAIN (VERBOSE, COSTS OFF) SELECT v FROM ct_vkey WHERE k = 'abc  ';
RESET TimeZone;
RESET DateStyle;

DELETE FROM ct_h; DELETE FROM ct_j; DELETE FROM ct_nn_raw; DELETE FROM ct_ts_h_raw;
DELETE FROM ct_key_raw; DELETE FROM ct_vkey_raw;
SELECT pgpoly.elastic_request('ct_es', 'DELETE', '/' || i)->>'acknowledged'
  FROM unnest(ARRAY['regress_ct', 'regress_ct_nn', 'regress_ct_ts', 'regress_ct_vc']) i;
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_ct"
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_ct_nn"
