--
-- pgpoly_elastic: an UPDATE that assigns a json/jsonb column replaces the
-- field's value, as on a native table, also when the old and the new value
-- are JSON objects.  Elasticsearch's partial "update" merges an object into
-- the object the document holds (keys the new value lacks would stay), so
-- such an UPDATE is sent as a script that sets the field.  Differential: a
-- native copy gets the same statements.  Fields no column maps, and the
-- siblings of a dotted field path, are kept (a partial update).
--
\getenv es_url ES_URL
\set VERBOSITY terse

CREATE SERVER euo_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('euo_es', 'DELETE', '/regress_euo') IS NOT NULL AS cleaned;
CREATE FOREIGN TABLE euo (_id text, j jsonb, js json, n int, o jsonb OPTIONS (field 'x.o'))
  SERVER euo_es OPTIONS (index 'regress_euo', refresh 'true');
CREATE FOREIGN TABLE euo_imm (_id text, j jsonb, js json, n int, o jsonb OPTIONS (field 'x.o'))
  SERVER euo_es OPTIONS (index 'regress_euo', refresh 'true', write_mode 'immediate');
CREATE FOREIGN TABLE euo_raw (_id text, _source jsonb)
  SERVER euo_es OPTIONS (index 'regress_euo', refresh 'true');
CREATE TABLE euo_n (_id text PRIMARY KEY, j jsonb, js json, n int, o jsonb);

INSERT INTO euo_raw VALUES
  ('a', '{"j": {"u": 1, "v": {"w": 2}}, "js": {"p": 1}, "n": 1, "x": {"o": {"q": 1}, "keep": 1}, "extra": {"e": 1}}'),
  ('b', '{"j": {"u": 1}, "js": {"p": 1}, "n": 2, "x": {"o": {"q": 1}}}'),
  ('c', '{"n": 3}');
INSERT INTO euo_n SELECT * FROM euo;

CREATE FUNCTION euo_diff() RETURNS TABLE (side text, _id text, j jsonb, js jsonb, n int, o jsonb)
LANGUAGE sql AS $$
  (SELECT 'foreign only', _id, j, js::jsonb, n, o FROM euo
   EXCEPT SELECT 'foreign only', _id, j, js::jsonb, n, o FROM euo_n)
  UNION ALL
  (SELECT 'native only', _id, j, js::jsonb, n, o FROM euo_n
   EXCEPT SELECT 'native only', _id, j, js::jsonb, n, o FROM euo)
  ORDER BY 1, 2
$$;

-- an object replaced by the empty object, and by one with other keys
UPDATE euo SET j = '{}' WHERE _id = 'a';
UPDATE euo_n SET j = '{}' WHERE _id = 'a';
UPDATE euo SET j = '{"v": {"x": 3}}', js = '{"r": 2}' WHERE _id = 'b';
UPDATE euo_n SET j = '{"v": {"x": 3}}', js = '{"r": 2}' WHERE _id = 'b';
SELECT * FROM euo_diff();

-- read back in the same transaction and after COMMIT; a dotted field path
BEGIN;
UPDATE euo SET o = '{"z": 1}', j = j || '{"k": 1}' WHERE _id IN ('a', 'c') RETURNING _id, j, o;
UPDATE euo_n SET o = '{"z": 1}', j = j || '{"k": 1}' WHERE _id IN ('a', 'c') RETURNING _id, j, o;
SELECT * FROM euo_diff();
COMMIT;
SELECT * FROM euo_diff();

-- write_mode 'immediate', an array of objects, NULL and back
UPDATE euo_imm SET j = '{"m": {"n": 1}}', js = '[{"a": 1}, {"b": 2}]' WHERE _id IN ('b', 'c');
UPDATE euo_n SET j = '{"m": {"n": 1}}', js = '[{"a": 1}, {"b": 2}]' WHERE _id IN ('b', 'c');
UPDATE euo_imm SET j = '{"m": {}}', o = NULL WHERE _id = 'c';
UPDATE euo_n SET j = '{"m": {}}', o = NULL WHERE _id = 'c';
UPDATE euo_imm SET j = NULL, o = '{"y": {}}' WHERE _id = 'b';
UPDATE euo_n SET j = NULL, o = '{"y": {}}' WHERE _id = 'b';
SELECT * FROM euo_diff();

-- fields no column maps and the siblings of x.o are kept
SELECT _id, _source FROM euo_raw ORDER BY _id;

-- A column whose field lies inside another assigned column's object (x.b in
-- x): the UPDATE writes what an INSERT of the same row writes, whichever
-- column comes first (the objects merged, as Elasticsearch merges dotted
-- names).
SELECT pgpoly.elastic_request('euo_es', 'DELETE', '/regress_euo_nest') IS NOT NULL AS cleaned;
CREATE FOREIGN TABLE euo_nest (_id text, xb int OPTIONS (field 'x.b'), x jsonb, xcd int OPTIONS (field 'x.c.d'))
  SERVER euo_es OPTIONS (index 'regress_euo_nest', refresh 'true');
CREATE FOREIGN TABLE euo_nest_raw (_id text, _source jsonb)
  SERVER euo_es OPTIONS (index 'regress_euo_nest', refresh 'true');
INSERT INTO euo_nest_raw VALUES ('u1', '{"x": {"c": {"e": 1}, "f": 1}}');
UPDATE euo_nest SET x = '{"a": 1}', xb = 2, xcd = 3 WHERE _id = 'u1';
INSERT INTO euo_nest VALUES ('i1', 2, '{"a": 1}', 3);
SELECT _id, _source FROM euo_nest_raw ORDER BY _id;
SELECT * FROM euo_nest ORDER BY _id;
SELECT pgpoly.elastic_request('euo_es', 'DELETE', '/regress_euo_nest') IS NOT NULL AS cleaned;

DROP FUNCTION euo_diff();
DROP TABLE euo_n;
SELECT pgpoly.elastic_request('euo_es', 'DELETE', '/regress_euo') IS NOT NULL AS cleaned;
DROP SERVER euo_es CASCADE;
