--
-- Fields of JSON documents named by a field option with dots, and json
-- columns, read back as written.
-- Redis json tables: each column is a top-level field of the JSON object.  Differential: the foreign table against a native
-- copy of the rows written, compared through the text forms (json has no
-- equality), EXCEPT ALL both ways.
--   - a field option with a dot ('o.p') names a top-level key "o.p", which
--     INSERT writes; reads looked for a nested {"o": {"p": ...}} and found
--     nothing, and an UPDATE of another column then wrote the NULL back;
--   - a json column keeps its text as written (key order, duplicate keys,
--     blanks, the spelling of numbers, escapes, \u0000), not jsonb's form.
--
\getenv redis_port REDIS_PORT
\getenv chroma_url CHROMA_URL
\set VERBOSITY terse
CREATE SERVER rjf_srv FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER rjf_srv;
CREATE DOMAIN rjf_json AS json;
CREATE FOREIGN TABLE rjf (key text, n int OPTIONS (field 'o.p'), s text OPTIONS (field 'a.b.c'),
                          j json, jb jsonb, d rjf_json OPTIONS (field 'x.y'), t text)
  SERVER rjf_srv OPTIONS (table_type 'json', key_prefix 'regress_rjf:');
CREATE FOREIGN TABLE rjf_raw (key text, v text)
  SERVER rjf_srv OPTIONS (table_type 'string', key_prefix 'regress_rjf:', write_mode 'immediate');
CREATE TABLE rjf_native (key text, n int, s text, j json, jb jsonb, d rjf_json, t text);
INSERT INTO rjf_native VALUES
  ('1', 42, 'x', '{"b": 2, "a": 1}', '{"b": 2, "a": 1}', '{"z":0,"y":[1,{"k":"v"}]}', 'plain'),
  ('2', -1, '', '{"a":1, "a":2}', '[1, 2.50]', '[ 1 , 2.50 , 1e400 , -0 , 1E2 ]', E'\\u0000'),
  ('3', NULL, 'dots.in.value', '{"s":"\u00e9\ud83d\ude00\n\"q\"\\"}', '{"x": "\u00e9"}', '"str"', NULL),
  ('5', 7, 'y', '123.4500', '0.10', '-0', NULL);
INSERT INTO rjf SELECT * FROM rjf_native;
-- what is stored: the dotted names are top-level keys
SELECT v FROM rjf_raw WHERE key = '1';
CREATE FUNCTION rjf_diff() RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM (
    (SELECT key, n, s, j::text, jb, d::text, t FROM rjf
     EXCEPT ALL SELECT key, n, s, j::text, jb, d::text, t FROM rjf_native)
    UNION ALL
    (SELECT key, n, s, j::text, jb, d::text, t FROM rjf_native
     EXCEPT ALL SELECT key, n, s, j::text, jb, d::text, t FROM rjf)) x
$$;
SELECT rjf_diff() AS differences;
SELECT key, n, s, j, d FROM rjf ORDER BY key;
-- an UPDATE of one column keeps the others, in one transaction and immediately
BEGIN;
UPDATE rjf SET n = n + 1 WHERE key IN ('1', '2');
UPDATE rjf_native SET n = n + 1 WHERE key IN ('1', '2');
SELECT rjf_diff() AS differences_in_transaction;
COMMIT;
SELECT rjf_diff() AS differences_after_update;
SELECT v FROM rjf_raw WHERE key = '1';
ALTER FOREIGN TABLE rjf OPTIONS (ADD write_mode 'immediate');
UPDATE rjf SET t = 'changed' WHERE key = '3';
UPDATE rjf_native SET t = 'changed' WHERE key = '3';
SELECT rjf_diff() AS differences_after_immediate_update;
-- a json column holds \u0000 escapes (a jsonb or text column cannot)
INSERT INTO rjf_native VALUES ('4', 0, NULL, '{"nul":"a\u0000b"}', '{}', '{"k": "\u0000"}', 'nul in json columns');
INSERT INTO rjf SELECT * FROM rjf_native WHERE key = '4';
SELECT rjf_diff() AS differences_with_nul;
SELECT j, d FROM rjf WHERE key = '4';
-- a document another tool wrote with a nested object: the column "o.p" is
-- its top-level key, so absent
INSERT INTO rjf_raw VALUES ('6', '{"o": {"p": 5}, "a.b.c": "top", "j": {"b" : 1,"a":2}}');
SELECT key, n, s, j FROM rjf WHERE key = '6';
-- a NUL still cannot enter a jsonb or text column (22021); other columns
-- of the same document read
INSERT INTO rjf_raw VALUES ('7', '{"t": "a\u0000b", "jb": {"k": "\u0000"}, "j": [" \u0000 "], "o.p": 1}');
SELECT key, n, j FROM rjf WHERE key = '7';
SELECT t FROM rjf WHERE key = '7';
SELECT jb FROM rjf WHERE key = '7';
DELETE FROM rjf_raw;

--
-- Vector metadata is flat: a column with field 'o.p' is written as the
-- metadata key "o.p", and was read back NULL (reads descended into a nested
-- {"o": {"p": ...}}); so WHERE on it found nothing.  (A nested object
-- another writer made, a Qdrant payload, still reads through the path.)
--
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_jf"
CREATE SERVER jf_vec FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE jf_v (id text, embedding real[], n int OPTIONS (field 'o.p'), s text OPTIONS (field 'a.b'),
                           metadata jsonb)
  SERVER jf_vec OPTIONS (collection 'regress_jf', create_collection 'true', distance 'l2');
CREATE TABLE jf_v_native (id text, n int, s text);
INSERT INTO jf_v_native VALUES ('1', 42, 'x'), ('2', 7, NULL), ('3', NULL, 'y');
INSERT INTO jf_v (id, embedding, n, s) SELECT id, '{1,2}', n, s FROM jf_v_native;
SELECT id, metadata FROM jf_v ORDER BY id;
SELECT count(*) AS differences FROM (
  (SELECT id, n, s FROM jf_v EXCEPT ALL SELECT * FROM jf_v_native)
  UNION ALL (SELECT * FROM jf_v_native EXCEPT ALL SELECT id, n, s FROM jf_v)) x;
SELECT id FROM jf_v WHERE n = 42 ORDER BY id;
SELECT id FROM jf_v WHERE s IS NOT NULL ORDER BY id;
UPDATE jf_v SET n = n + 1 WHERE id = '1';
SELECT id, n, s, metadata FROM jf_v WHERE id = '1';
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_jf"
