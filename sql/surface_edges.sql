-- Edge inputs found by test/fault/test_sql_surface_fuzz.py: each must be a
-- clear ERROR naming what was wrong, with a precise SQLSTATE.
SET client_min_messages = warning;
-- SQLSTATE and message (numbers that vary between runs masked), or 'ok'.
CREATE FUNCTION edge_err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || regexp_replace(left(SQLERRM, 60), '[0-9]+', 'N', 'g');
END $$;

-- An enum option value longer than 255 bytes is an invalid value of that
-- option: the closest-spelling hint failed on it with "levenshtein
-- argument exceeds maximum length of 255 characters".
CREATE SERVER edge_redis FOREIGN DATA WRAPPER pgpoly_redis;
CREATE SERVER edge_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url 'http://127.0.0.1:9');
CREATE SERVER edge_vec FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url 'http://127.0.0.1:9');
CREATE FOREIGN TABLE edge_t (key text) SERVER edge_redis;
SELECT repeat('x', 300) AS long \gset
SELECT q, edge_err(format(q, :'long')) FROM (VALUES
  ($$CREATE SERVER edge_bad FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (provider %L)$$),
  ($$CREATE FOREIGN TABLE edge_bad (key text) SERVER edge_redis OPTIONS (table_type %L)$$),
  ($$CREATE FOREIGN TABLE edge_bad (key text) SERVER edge_redis OPTIONS (write_mode %L)$$),
  ($$CREATE FOREIGN TABLE edge_bad (_id text) SERVER edge_es OPTIONS (refresh %L)$$),
  ($$CREATE FOREIGN TABLE edge_bad (id text) SERVER edge_vec OPTIONS (distance %L)$$),
  ($$ALTER FOREIGN TABLE edge_t OPTIONS (ADD table_type %L)$$)) v(q);
-- a typo still gets its hint
\set VERBOSITY default
CREATE FOREIGN TABLE edge_bad (key text) SERVER edge_redis OPTIONS (table_type 'hahs');

-- A regclass naming no relation (a dropped table's OID) is an unknown
-- relation (42P01); create_sync printed a NULL name as "(null)".
CREATE TABLE edge_src (id text PRIMARY KEY);
CREATE TABLE edge_gone (id text);
SELECT 'edge_gone'::regclass::oid AS gone \gset
DROP TABLE edge_gone;
SELECT q, edge_err(format(q, :gone)) FROM (VALUES
  ($$SELECT pgpoly.create_sync('edge', %s::oid::regclass, 'edge_t')$$),
  ($$SELECT pgpoly.create_sync('edge', 'edge_src', %s::oid::regclass)$$),
  ($$SELECT * FROM pgpoly.vector_search(%s::oid::regclass, '{1,2,3}', 1)$$)) v(q);

-- log_input registers an unknown dataset: a name or version too long for
-- the registry's index is reported as register_dataset reports it (it was
-- PostgreSQL's "index row size ... exceeds btree version 4 maximum").
SELECT pgpoly.start_run('edge_exp') AS run \gset
SELECT string_agg(md5(g::text), '') AS incompressible FROM generate_series(1, 200) g \gset
SELECT edge_err(format('SELECT pgpoly.log_input(%L, %L)', :'run', :'incompressible')) AS dataset,
       edge_err(format('SELECT pgpoly.log_input(%L, %L, %L)', :'run', 'ds', :'incompressible')) AS version;
SELECT count(*) FROM pgpoly.datasets WHERE name = 'ds' OR octet_length(name) > 2000;
-- so is a metric key (metrics are indexed by run, key and step); a long key
-- that compresses below the limit is kept
SELECT edge_err(format('SELECT pgpoly.log_metric(%L, %L, 1)', :'run', :'incompressible')) AS metric_key;
-- an incompressible key just under the btree limit itself (2700 bytes:
-- with the entry's header, run_id and step it is over) is named too
SELECT edge_err(format('SELECT pgpoly.log_metric(%L, %L, 1)', :'run', left(:'incompressible', 2700))) AS metric_key_2700;
SELECT pgpoly.log_metric(:'run', repeat('k', 5000), 1);
SELECT octet_length(key), value FROM pgpoly.metrics WHERE run_id = :'run';
DELETE FROM pgpoly.metrics WHERE run_id = :'run';

-- IMPORT FOREIGN SCHEMA takes no options: one is an error naming it, before
-- any request (they were ignored: a typo or an option meant for the tables
-- went unnoticed).  The servers are unreachable: the error comes first.
CREATE USER MAPPING FOR CURRENT_USER SERVER edge_redis;
CREATE USER MAPPING FOR CURRENT_USER SERVER edge_es;
CREATE USER MAPPING FOR CURRENT_USER SERVER edge_vec;
CREATE SCHEMA edge_imp;
SELECT q, edge_err(q) FROM (VALUES
  ($$IMPORT FOREIGN SCHEMA "x*" FROM SERVER edge_es INTO edge_imp OPTIONS (fetch_size '10')$$),
  ($$IMPORT FOREIGN SCHEMA anything FROM SERVER edge_vec INTO edge_imp OPTIONS (distance 'l2')$$),
  ($$IMPORT FOREIGN SCHEMA feature_views FROM SERVER edge_redis INTO edge_imp OPTIONS (bogus '1')$$)) v(q);
DROP SCHEMA edge_imp;

-- Two columns mapped to one store field: a write would keep one value and
-- lose the other (Redis: a NULL deletes the field the other column sets),
-- so INSERT, and an UPDATE assigning both, are refused (HV007) before
-- anything is written; reading one field into two
-- columns, and updating one of them, work.
\getenv redis_port REDIS_PORT
CREATE SERVER edge_live FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER edge_live;
CREATE FOREIGN TABLE edge_one (key text, a text) SERVER edge_live
  OPTIONS (key_prefix 'regress_edge:', write_mode 'immediate');
CREATE FOREIGN TABLE edge_dup (key text, v text OPTIONS (field 'a'), w text OPTIONS (field 'a'),
  n int OPTIONS (field 'a')) SERVER edge_live OPTIONS (key_prefix 'regress_edge:');
INSERT INTO edge_one VALUES ('k', '7');
\set VERBOSITY terse
INSERT INTO edge_dup VALUES ('k', 'v1', 'w1', 1);
INSERT INTO edge_dup (key, v) VALUES ('k2', 'v1');
COPY edge_dup FROM stdin;
k3	v	w	3
\.
SELECT * FROM edge_dup;
UPDATE edge_dup SET v = '8';
SELECT * FROM edge_dup;
UPDATE edge_dup SET v = '9', n = 9;
DELETE FROM edge_dup;
SELECT count(*) FROM edge_one;
\getenv es_url ES_URL
CREATE SERVER edge_es_live FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER edge_es_live;
CREATE FOREIGN TABLE edge_edup (_id text, v text OPTIONS (field 'a.b'), w text OPTIONS (field 'a.b'))
  SERVER edge_es_live OPTIONS (index 'regress_edge_dup', write_mode 'immediate');
INSERT INTO edge_edup VALUES ('1', 'v', 'w');
CREATE FOREIGN TABLE edge_vdup (id text, embedding real[], task text, w text OPTIONS (field 'task'))
  SERVER edge_vec OPTIONS (collection 'regress_edge_dup');
INSERT INTO edge_vdup VALUES ('1', '{1,2}', 't', 'w');
\set VERBOSITY default
DROP SERVER edge_live, edge_es_live CASCADE;

-- A sync name too long for pgpoly.syncs' unique index names the argument
-- (54000) as the registry functions do; a long name that compresses is kept.
CREATE TABLE edge_sync_src (id text PRIMARY KEY, a text);
CREATE FOREIGN TABLE edge_sync_t (id text OPTIONS (key 'true'), a text) SERVER edge_redis;
SELECT edge_err(format('SELECT pgpoly.create_sync(%L, %L, %L, backfill => false)',
                       :'incompressible', 'edge_sync_src', 'edge_sync_t')) AS sync_name;
SELECT pgpoly.create_sync(repeat('s', 5000), 'edge_sync_src', 'edge_sync_t', backfill => false);
SELECT octet_length(name) FROM pgpoly.syncs WHERE name LIKE 'sss%';
SELECT pgpoly.drop_sync(repeat('s', 5000));
-- A target mapping two source columns to one store field (the columns a and
-- b of the target both write hash field "a") is refused at create_sync.
CREATE TABLE edge_sync_src2 (id text PRIMARY KEY, a text, b text);
CREATE FOREIGN TABLE edge_sync_dup (id text OPTIONS (key 'true'), a text,
  b text OPTIONS (field 'a')) SERVER edge_redis;
SELECT edge_err($$SELECT pgpoly.create_sync('edge_dup', 'edge_sync_src2', 'edge_sync_dup', backfill => false)$$) AS dup_fields;
SELECT count(*) FROM pgpoly.syncs WHERE name = 'edge_dup';
DROP FOREIGN TABLE edge_sync_dup, edge_sync_t;
DROP TABLE edge_sync_src, edge_sync_src2;

-- create_prediction_partitions makes one partition per month: a range of
-- more than 120 months is refused (22023) rather than creating ~80 000
-- partitions until statement_timeout.
SELECT edge_err($$SELECT pgpoly.create_prediction_partitions(since => '4713-01-01 BC')$$) AS since_bc,
       edge_err($$SELECT pgpoly.create_prediction_partitions('2020-01-01', '2030-02-01')$$) AS eleven_years;

-- log_metric refuses a time that is not finite, as log_prediction and
-- log_label do (22023).
SELECT edge_err(format('SELECT pgpoly.log_metric(%L, %L, 1, ts => %L)', :'run', 'k', t)) AS ts
FROM unnest(ARRAY['infinity', '-infinity']) t;
SELECT count(*) FROM pgpoly.metrics WHERE run_id = :'run';

-- create_feature_view given a dropped table's OID: 42P01, as create_sync.
SELECT edge_err(format('SELECT pgpoly.create_feature_view(%L, %L, %s::oid::regclass)', 'edge_fv', 'user_id', :gone)) AS online,
       edge_err(format('SELECT pgpoly.create_feature_view(%L, %L, %L, %s::oid::regclass)', 'edge_fv', 'key', 'edge_t', :gone)) AS offline;

-- tenant and database are Chroma options: a Qdrant server refuses them (HV00D),
-- also when ALTER SERVER makes a Chroma server with them a Qdrant one.
SELECT q, edge_err(q) FROM (VALUES
  ($$CREATE SERVER edge_q1 FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url 'http://127.0.0.1:9', provider 'qdrant', tenant 't')$$),
  ($$CREATE SERVER edge_q2 FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url 'http://127.0.0.1:9', provider 'qdrant', database 'd')$$),
  ($$ALTER SERVER edge_vec OPTIONS (ADD tenant 't', ADD provider 'qdrant')$$),
  ($$CREATE SERVER edge_c FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url 'http://127.0.0.1:9', tenant 't', database 'd')$$),
  ($$ALTER SERVER edge_c OPTIONS (ADD provider 'qdrant')$$)) v(q);
SELECT srvname, srvoptions FROM pg_foreign_server WHERE srvname IN ('edge_vec', 'edge_q1', 'edge_q2', 'edge_c') ORDER BY 1;
DROP SERVER IF EXISTS edge_q1, edge_q2, edge_c;

-- Elasticsearch: columns whose field paths overlap (a and a.b, a.b and
-- a.b.c) wrote a document the table could not read back (a non-object
-- value of the shorter path was replaced by the deeper field's object).
-- A write of both is refused (HV007) before anything is sent, unless the
-- shorter one is jsonb (its object is merged with the deeper fields);
-- siblings (a.b and a.c) are fine.
CREATE SERVER edge_es_paths FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER edge_es_paths;
CREATE FOREIGN TABLE edge_epath (_id text, a int, ab int OPTIONS (field 'a.b'))
  SERVER edge_es_paths OPTIONS (index 'regress_edge_paths', write_mode 'immediate', refresh 'true');
CREATE FOREIGN TABLE edge_epath2 (_id text, ab int OPTIONS (field 'a.b'), abc text OPTIONS (field 'a.b.c'))
  SERVER edge_es_paths OPTIONS (index 'regress_edge_paths', write_mode 'immediate', refresh 'true');
CREATE FOREIGN TABLE edge_esib (_id text, ab int OPTIONS (field 'a.b'), ac int OPTIONS (field 'a.c'))
  SERVER edge_es_paths OPTIONS (index 'regress_edge_paths', write_mode 'immediate', refresh 'true');
\set VERBOSITY terse
INSERT INTO edge_epath VALUES ('1', 1, 2);
INSERT INTO edge_epath (_id, ab) VALUES ('1', 2);
INSERT INTO edge_epath2 VALUES ('1', 2, 'x');
INSERT INTO edge_esib VALUES ('1', 2, 3);
UPDATE edge_epath SET a = 5, ab = 6;
UPDATE edge_esib SET ab = 7;
SELECT _id, ab, ac FROM edge_esib ORDER BY _id;
-- a document written by another client with such fields still reads
CREATE FOREIGN TABLE edge_eraw (_id text, _source jsonb) SERVER edge_es_paths
  OPTIONS (index 'regress_edge_paths', write_mode 'immediate', refresh 'true');
INSERT INTO edge_eraw VALUES ('3', '{"a": {"b": 8, "c": 9}}');
SELECT _id, ab, ac FROM edge_esib ORDER BY _id;
SELECT _id, ab FROM edge_epath2 ORDER BY _id;
CREATE FOREIGN TABLE edge_ejpath (_id text, a jsonb, ab int OPTIONS (field 'a.b'))
  SERVER edge_es_paths OPTIONS (index 'regress_edge_paths', write_mode 'immediate', refresh 'true');
INSERT INTO edge_ejpath VALUES ('2', '{"z": 1}', 4);
INSERT INTO edge_ejpath VALUES ('4', '5', 4);
INSERT INTO edge_ejpath VALUES ('4', NULL, 4);
SELECT _id, a, ab FROM edge_ejpath ORDER BY _id;
-- a row read and written back unchanged keeps the document: the jsonb
-- object is merged at every depth (members beside a deeper column's field
-- were dropped), and a NULL deeper column under a scalar or array is no
-- field to write (it was a 22023)
CREATE FOREIGN TABLE edge_ejraw (_id text, _source jsonb) SERVER edge_es_paths
  OPTIONS (index 'regress_edge_jmerge', write_mode 'immediate', refresh 'true');
CREATE FOREIGN TABLE edge_ejdeep (_id text, a jsonb, abx int OPTIONS (field 'a.b.x'))
  SERVER edge_es_paths OPTIONS (index 'regress_edge_jmerge', write_mode 'immediate', refresh 'true');
INSERT INTO edge_ejraw VALUES ('1', '{"a": {"b": {"x": 1, "y": 2}, "c": 3}}');
UPDATE edge_ejdeep SET a = a, abx = abx;
INSERT INTO edge_ejdeep SELECT '2', a, 5 FROM edge_ejdeep;
SELECT _id, _source FROM edge_ejraw ORDER BY _id;
CREATE FOREIGN TABLE edge_ejsraw (_id text, _source jsonb) SERVER edge_es_paths
  OPTIONS (index 'regress_edge_jscalar', write_mode 'immediate', refresh 'true');
CREATE FOREIGN TABLE edge_ejs (_id text, a jsonb, ab int OPTIONS (field 'a.b'))
  SERVER edge_es_paths OPTIONS (index 'regress_edge_jscalar', write_mode 'immediate', refresh 'true');
INSERT INTO edge_ejsraw VALUES ('1', '{"a": 5}');
UPDATE edge_ejs SET a = a, ab = ab;
UPDATE edge_ejs SET a = '6', ab = 7;
SELECT _id, _source FROM edge_ejsraw ORDER BY _id;
\set VERBOSITY default
DROP SERVER edge_es_paths CASCADE;

-- Vector: the metadata column and a field column writing one key with
-- different values is refused (HV007) rather than keeping one of them; the
-- same value (a row read back and written again) is fine.
\getenv chroma_url CHROMA_URL
CREATE SERVER edge_chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER edge_chroma;
CREATE FOREIGN TABLE edge_vmeta (id text, embedding real[], metadata jsonb, task text)
  SERVER edge_chroma OPTIONS (collection 'regress_edge_meta', create_collection 'true',
                              distance 'l2', write_mode 'immediate');
\set VERBOSITY terse
INSERT INTO edge_vmeta VALUES ('1', '{1,2}', '{"task": "a", "x": 1}', 'b');
INSERT INTO edge_vmeta VALUES ('1', '{1,2}', '{"task": "a", "x": 1}', 'a');
INSERT INTO edge_vmeta VALUES ('2', '{2,1}', '{"task": "c"}', NULL);
SELECT id, metadata, task FROM edge_vmeta ORDER BY id;
UPDATE edge_vmeta SET metadata = '{"task": "d"}', task = 'e' WHERE id = '1';
UPDATE edge_vmeta SET metadata = '{"task": "d"}', task = NULL WHERE id = '1';
UPDATE edge_vmeta SET metadata = '{"task": "d"}' WHERE id = '1';
SELECT id, metadata, task FROM edge_vmeta ORDER BY id;
DELETE FROM edge_vmeta;
-- the same value as the column reads it: a row read back and written
-- again is fine whatever form the key has (it was refused for a number
-- in a text column, or another form of a timestamp)
CREATE FOREIGN TABLE edge_vtyped (id text, embedding real[], metadata jsonb, t text,
                                  ts timestamptz, n int)
  SERVER edge_chroma OPTIONS (collection 'regress_edge_meta2', create_collection 'true',
                              distance 'l2', write_mode 'immediate');
CREATE FOREIGN TABLE edge_vtraw (id text, embedding real[], metadata jsonb)
  SERVER edge_chroma OPTIONS (collection 'regress_edge_meta2', create_collection 'true',
                              distance 'l2', write_mode 'immediate');
INSERT INTO edge_vtraw VALUES ('1', '{1,2}', '{"t": 5, "ts": "2020-01-01T00:00:00Z", "n": 1.0}');
UPDATE edge_vtyped SET metadata = metadata, t = t, ts = ts, n = n;
INSERT INTO edge_vtyped SELECT '2', embedding, metadata, t, ts, n FROM edge_vtyped;
INSERT INTO edge_vtyped VALUES ('3', '{1,2}', '{"t": 5}', '6', NULL, NULL);
\set VERBOSITY default
INSERT INTO edge_vtyped VALUES ('3', '{1,2}', '{"n": "x"}', NULL, NULL, 5);
\set VERBOSITY terse
SELECT id, metadata FROM edge_vtraw ORDER BY id;
DELETE FROM edge_vtraw;
\set VERBOSITY default
DROP SERVER edge_chroma CASCADE;

DELETE FROM pgpoly.runs WHERE run_id = :'run';
DELETE FROM pgpoly.experiments WHERE name = 'edge_exp';
DROP FUNCTION edge_err(text);
DROP TABLE edge_src;
DROP SERVER edge_redis, edge_es, edge_vec CASCADE;
