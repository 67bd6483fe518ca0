-- Store values are bytes with a length.  bytea round-trips any bytes (Redis
-- keeps them raw); a NUL byte or invalid UTF-8 that would reach a text-input
-- column is an ERROR 22021 naming the key or document and the field, never a
-- truncated value.  Redis, Elasticsearch (\u0000 in documents) and Chroma.
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL

-- The SQLSTATE of a statement ('ok' when it succeeds).
CREATE FUNCTION sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE;
END $$;
CREATE TABLE all_bytes AS
  SELECT string_agg(set_byte('\x00'::bytea, 0, i), ''::bytea ORDER BY i) AS b
  FROM generate_series(0, 255) i;

CREATE SERVER rb FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');

-- bytea: all 256 byte values, as a hash field, a string value, a set member
-- and a list element; a key with a NUL byte.
CREATE FOREIGN TABLE bh (k text OPTIONS (key 'true'), b bytea)
  SERVER rb OPTIONS (key_prefix 'regress_bin:h:');
INSERT INTO bh SELECT 'all', b FROM all_bytes;
INSERT INTO bh VALUES ('ascii', 'hi'::bytea), ('empty', '');
SELECT k, length(b), b = (SELECT b FROM all_bytes) AS same FROM bh ORDER BY k;
CREATE FOREIGN TABLE bs (k bytea OPTIONS (key 'true'), v bytea)
  SERVER rb OPTIONS (table_type 'string', key_prefix 'regress_bin:s:');
INSERT INTO bs SELECT '\x00ff', b FROM all_bytes;
INSERT INTO bs VALUES ('\x41', '\x00');
SELECT k, length(v), v = (SELECT b FROM all_bytes) AS same FROM bs ORDER BY k;
SELECT v FROM bs WHERE k = '\x41';
CREATE FOREIGN TABLE bset (key text, member bytea)
  SERVER rb OPTIONS (table_type 'set', key_prefix 'regress_bin:set:');
CREATE FOREIGN TABLE blist (key text, idx int, value bytea)
  SERVER rb OPTIONS (table_type 'list', key_prefix 'regress_bin:l:');
-- Read-your-writes in a transaction compares and copies bytes too.
BEGIN;
INSERT INTO bset VALUES ('s', '\x00'), ('s', '\x0000'), ('s', '\x00ff'), ('s', '\x00');
INSERT INTO blist (key, value) SELECT 'l', b FROM all_bytes;
INSERT INTO blist (key, value) VALUES ('l', '\x00'), ('l', '\x0000');
SELECT member FROM bset ORDER BY member;
SELECT idx, length(value), value = (SELECT b FROM all_bytes) AS same FROM blist ORDER BY idx;
COMMIT;
SELECT member FROM bset ORDER BY member;
DELETE FROM bset WHERE member = '\x00';
UPDATE blist SET value = '\x00' || value WHERE idx = 0;
SELECT member FROM bset ORDER BY member;
SELECT idx, length(value), value = '\x00'::bytea || (SELECT b FROM all_bytes) AS same
FROM blist ORDER BY idx;

-- INSERT ... ON CONFLICT DO NOTHING writes the same bytes (its conditional
-- commands: an EVAL for hashes, SET NX, SADD/ZADD NX, EVAL with a TTL).
INSERT INTO bh SELECT 'oc', b FROM all_bytes ON CONFLICT DO NOTHING;
INSERT INTO bh VALUES ('oc', 'x') ON CONFLICT DO NOTHING;
INSERT INTO bs SELECT '\x00ee', b FROM all_bytes ON CONFLICT DO NOTHING;
SELECT k FROM bs ORDER BY k;  -- keys that differ only after a NUL byte stay apart
INSERT INTO bset VALUES ('soc', '\x00'), ('soc', '\x0001') ON CONFLICT DO NOTHING;
CREATE FOREIGN TABLE bset_ttl (key text, member bytea)
  SERVER rb OPTIONS (table_type 'set', key_prefix 'regress_bin:set:', ttl_seconds '600');
INSERT INTO bset_ttl VALUES ('soc', '\x0002'), ('soc', '\x00') ON CONFLICT DO NOTHING;
SELECT length(b), b = (SELECT b FROM all_bytes) AS same FROM bh WHERE k = 'oc';
SELECT length(v), v = (SELECT b FROM all_bytes) AS same FROM bs WHERE k = '\x00ee';
SELECT member FROM bset WHERE key = 'soc' ORDER BY member;
DELETE FROM bh WHERE k = 'oc';
DELETE FROM bs WHERE k = '\x00ee';
DELETE FROM bset WHERE key = 'soc';

-- Stored raw: the hash field of 'hi'::bytea holds the two bytes "hi".
CREATE FOREIGN TABLE th (k text OPTIONS (key 'true'), b text)
  SERVER rb OPTIONS (key_prefix 'regress_bin:h:');
SELECT b FROM th WHERE k = 'ascii';

-- Text columns: a NUL byte, or bytes that are not UTF-8, are an ERROR 22021
-- that names the key and the field; valid UTF-8 reads as text.
INSERT INTO bh VALUES ('nul', 'a\000b'::bytea), ('bad', '\x41c328'), ('utf8', '\x636166c3a9');
SELECT b FROM th WHERE k = 'utf8';
SELECT b FROM th WHERE k = 'nul';
SELECT b FROM th WHERE k = 'bad';
SELECT sqlstate_of($$SELECT b FROM th WHERE k = 'nul'$$) AS nul,
       sqlstate_of($$SELECT b FROM th WHERE k = 'bad'$$) AS bad;
-- Every type read through an input function refuses them the same way
-- (not "a", what a C string would make of a NUL).
CREATE FOREIGN TABLE vh (k text OPTIONS (key 'true'), b varchar(10))
  SERVER rb OPTIONS (key_prefix 'regress_bin:h:');
CREATE FOREIGN TABLE jh (k text OPTIONS (key 'true'), b jsonb)
  SERVER rb OPTIONS (key_prefix 'regress_bin:h:');
CREATE FOREIGN TABLE ah (k text OPTIONS (key 'true'), b text[])
  SERVER rb OPTIONS (key_prefix 'regress_bin:h:');
SELECT sqlstate_of($$SELECT b FROM vh WHERE k = 'nul'$$) AS "varchar",
       sqlstate_of($$SELECT b FROM jh WHERE k = 'nul'$$) AS jsonb,
       sqlstate_of($$SELECT b FROM ah WHERE k = 'bad'$$) AS "text[]";
-- The whole table: a bad value fails a scan that reads it; count(*) reads
-- no value (the keys alone), so it counts every row.
SELECT sqlstate_of($$SELECT count(b) FROM th$$) AS whole_table;
SELECT count(*) FROM th;
-- A key with a NUL byte, read into a text key column.
CREATE FOREIGN TABLE ts (k text OPTIONS (key 'true'), v bytea)
  SERVER rb OPTIONS (table_type 'string', key_prefix 'regress_bin:s:');
SELECT k FROM ts ORDER BY k;
SELECT sqlstate_of($$SELECT k FROM ts$$) AS key_with_nul;

-- JSON values: a \u0000 in a field a column reads is an ERROR 22021 naming
-- the key and the field; in a field no column reads it does not matter.
CREATE FOREIGN TABLE jraw (key text, value text)
  SERVER rb OPTIONS (table_type 'string', key_prefix 'regress_bin:j:');
INSERT INTO jraw VALUES ('d1', '{"name": "a\u0000b", "n": 1, "tags": ["x", "\u0000"], "ok": "\\u0000"}');
CREATE FOREIGN TABLE jname (key text, name text, n int)
  SERVER rb OPTIONS (table_type 'json', key_prefix 'regress_bin:j:');
CREATE FOREIGN TABLE jtags (key text, n int, tags text[])
  SERVER rb OPTIONS (table_type 'json', key_prefix 'regress_bin:j:');
CREATE FOREIGN TABLE jok (key text, n int, ok text)
  SERVER rb OPTIONS (table_type 'json', key_prefix 'regress_bin:j:');
SELECT * FROM jname;
SELECT * FROM jtags;
SELECT * FROM jok;
SELECT sqlstate_of($$SELECT * FROM jname$$) AS name, sqlstate_of($$SELECT * FROM jtags$$) AS tags;
-- A \u0000 in an object key: the value cannot be read, and no field of it
-- is named (which one holds the key cannot be known).
INSERT INTO jraw VALUES ('d2', '{"n": 2, "o": {"k\u0000": 1}}');
SELECT * FROM jok WHERE key = 'd2';
DELETE FROM jraw WHERE key = 'd2';

-- Elasticsearch: documents with \u0000, indexed through the REST API.
CREATE SERVER es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('es', 'DELETE', '/regress_es_bin') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('es', 'PUT', '/regress_es_bin', '{"mappings": {"properties": {
    "title": {"type": "text"}, "n": {"type": "long"}, "other": {"type": "keyword"}}}}')->>'acknowledged';
\! printf '%s\n' '{"index": {"_index": "regress_es_bin", "_id": "d1"}}' '{"title": "a\u0000b", "n": 1, "other": "fine"}' '{"index": {"_index": "regress_es_bin", "_id": "d2"}}' '{"title": "fine", "n": 2, "other": "x\u0000"}' | curl -s -o /dev/null -X POST "$ES_URL/_bulk?refresh=true" -H 'Content-Type: application/x-ndjson' --data-binary @-
CREATE FOREIGN TABLE es_title (_id text, title text, n int)
  SERVER es OPTIONS (index 'regress_es_bin');
CREATE FOREIGN TABLE es_other (_id text, n int, other text)
  SERVER es OPTIONS (index 'regress_es_bin');
CREATE FOREIGN TABLE es_n (_id text, n int)
  SERVER es OPTIONS (index 'regress_es_bin');
CREATE FOREIGN TABLE es_source (_id text, _source jsonb)
  SERVER es OPTIONS (index 'regress_es_bin');
SELECT * FROM es_title ORDER BY _id;
SELECT * FROM es_other ORDER BY _id;
SELECT * FROM es_n ORDER BY _id;
SELECT * FROM es_source ORDER BY _id;
SELECT sqlstate_of($$SELECT * FROM es_title$$) AS title, sqlstate_of($$SELECT * FROM es_other$$) AS other,
       sqlstate_of($$SELECT * FROM es_source$$) AS source;
-- The raw request function returns jsonb, which cannot hold it either.
SELECT sqlstate_of($$SELECT pgpoly.elastic_request('es', 'POST', '/regress_es_bin/_search', '{}')$$) AS raw;
-- A \u0000 in an object key (d2's): no document of the page can be read
-- (jansson cannot parse it), and none is named, d1 least of all.
SELECT pgpoly.elastic_request('es', 'DELETE', '/regress_es_binkey') IS NOT NULL AS cleaned;
\! printf '%s\n' '{"index": {"_index": "regress_es_binkey", "_id": "d1"}}' '{"n": 1, "o": {"k": "v"}}' '{"index": {"_index": "regress_es_binkey", "_id": "d2"}}' '{"n": 2, "o": {"k\u0000": "v"}}' | curl -s -o /dev/null -X POST "$ES_URL/_bulk?refresh=true" -H 'Content-Type: application/x-ndjson' --data-binary @-
CREATE FOREIGN TABLE es_key_n (_id text, n int)
  SERVER es OPTIONS (index 'regress_es_binkey');
CREATE FOREIGN TABLE es_key_o (_id text, n int, o jsonb)
  SERVER es OPTIONS (index 'regress_es_binkey');
SELECT * FROM es_key_n ORDER BY _id;
SELECT * FROM es_key_o ORDER BY _id;
SELECT pgpoly.elastic_request('es', 'DELETE', '/regress_es_binkey') IS NOT NULL AS cleaned;

-- Chroma: a record whose document and metadata hold \u0000, added through
-- Chroma's own API.
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_bin"
CREATE SERVER chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE vb (id text, embedding real[], document text, metadata jsonb,
                         t text OPTIONS (field 't'), n int OPTIONS (field 'n'))
  SERVER chroma OPTIONS (collection 'pgpoly_rt_bin', create_collection 'true', distance 'l2');
CREATE FOREIGN TABLE vb_n (id text, n int OPTIONS (field 'n'))
  SERVER chroma OPTIONS (collection 'pgpoly_rt_bin');
CREATE FOREIGN TABLE vb_doc (id text, document text)
  SERVER chroma OPTIONS (collection 'pgpoly_rt_bin');
CREATE FOREIGN TABLE vb_t (id text, t text OPTIONS (field 't'))
  SERVER chroma OPTIONS (collection 'pgpoly_rt_bin');
INSERT INTO vb (id, embedding, document, t, n) VALUES ('plain', '{1,0}', 'doc', 'text', 0);
\! python3 -c "import json, os, urllib.request as u; b = os.environ['CHROMA_URL'] + '/api/v2/tenants/default_tenant/databases/default_database/collections'; c = json.load(u.urlopen(b + '/pgpoly_rt_bin')); u.urlopen(u.Request(b + '/' + c['id'] + '/add', method='POST', headers={'Content-Type': 'application/json'}, data=json.dumps({'ids': ['nul'], 'embeddings': [[0.0, 1.0]], 'documents': ['a\u0000b'], 'metadatas': [{'t': 'x\u0000y', 'n': 1}]}).encode()))"
SELECT * FROM vb_n ORDER BY id;
SELECT * FROM vb_doc ORDER BY id;
SELECT * FROM vb_t ORDER BY id;
SELECT id, metadata FROM vb ORDER BY id;
SELECT sqlstate_of($$SELECT * FROM vb_doc$$) AS document, sqlstate_of($$SELECT * FROM vb_t$$) AS field,
       sqlstate_of($$SELECT id, metadata FROM vb$$) AS metadata;
SELECT id FROM pgpoly.vector_search('vb', '{0,1}', 1);

-- Clean up.
DELETE FROM bh; DELETE FROM bs; DELETE FROM bset; DELETE FROM blist; DELETE FROM jraw;
SELECT pgpoly.elastic_request('es', 'DELETE', '/regress_es_bin')->>'acknowledged';
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_bin"
DROP SERVER rb CASCADE;
DROP SERVER es CASCADE;
DROP SERVER chroma CASCADE;
DROP TABLE all_bytes;
DROP FUNCTION sqlstate_of(text);
