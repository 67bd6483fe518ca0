--
-- pgpoly_elastic: mapping parameters that make what a field indexes differ
-- from its _source, and mappings that change under a long-lived session.
-- Differential: every query runs on the foreign table (pushed down) and on
-- a native copy read by a full scan; a difference is a wrong answer.
-- Attacked:
--   - ignore_above (ignore-above.html): a keyword longer than the limit, in
--     characters (UTF-16 code units: an emoji counts two), is not indexed,
--     so a term, range, exists or sort on it misses the document; the
--     default dynamic mapping gives every string a .keyword with 256;
--   - null_value (null-value.html): an explicit null is indexed as the
--     value, so a term, range, exists or sort finds it where SQL reads NULL;
--   - copy_to (copy-to.html): the target indexes values its _source lacks;
--   - ignore_malformed (ignore-malformed.html): "the malformed field is not
--     indexed, but other fields in the document are processed normally",
--     so a value SQL reads from _source (3000000000 in an integer field,
--     40000 in a short, a date in another format) is invisible to a term,
--     range, exists or sort;
--   - an alias field, a runtime field shadowing a mapped one;
--   - an alias moved to an index mapping the field otherwise (blue/green
--     reindex), an index deleted and re-created, a pattern reaching a new
--     index, in the same session, with plain and cached generic plans.
--
\getenv es_url ES_URL
\set VERBOSITY terse

CREATE SERVER em_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('em_es', 'DELETE', '/regress_em') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('em_es', 'PUT', '/regress_em', '{"mappings": {
    "properties": {
      "kw": {"type": "keyword", "ignore_above": 5},
      "t": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 5}}},
      "nk": {"type": "keyword", "null_value": "none"},
      "nn": {"type": "long", "null_value": 0},
      "nd": {"type": "date", "null_value": "2000-01-01"},
      "nb": {"type": "boolean", "null_value": false},
      "first": {"type": "keyword", "copy_to": "names"},
      "last": {"type": "keyword", "copy_to": ["names"]},
      "names": {"type": "keyword"},
      "al": {"type": "alias", "path": "kw"},
      "rt": {"type": "keyword"}},
    "runtime": {"rt": {"type": "keyword"}}}}')->>'acknowledged' AS created;
CREATE FOREIGN TABLE em_raw (_id text, _source jsonb)
  SERVER em_es OPTIONS (index 'regress_em', refresh 'true');
INSERT INTO em_raw VALUES
  ('1', '{"kw": "abc", "t": "abc", "nk": "none", "nn": 0, "nd": "2000-01-01", "nb": false,
          "first": "Ann", "names": "Ann Lee", "rt": "x"}'),
  ('2', '{"kw": "abcdefgh", "t": "abcdefgh", "nk": null, "nn": null, "nd": null, "nb": null,
          "first": "Bob", "last": "Ray"}'),
  ('3', '{"kw": "ab😀😀", "t": "ab😀😀", "nk": "b", "nn": 5, "nd": "2024-01-02", "nb": true}'),
  ('4', '{"kw": "zzzzzzzzz", "t": "zzzzzzzzz", "nk": "c", "nn": -3, "nd": "1999-05-05", "nb": false,
          "last": "Ann"}'),
  ('5', '{"kw": "abcde", "t": "abcde"}'),
  ('6', '{}');

CREATE FOREIGN TABLE em (_id text, kw text COLLATE "C", t text COLLATE "C",
                         nk text COLLATE "C", nn int, nd date, nb bool,
                         names text COLLATE "C", al text COLLATE "C", rt text COLLATE "C")
  SERVER em_es OPTIONS (index 'regress_em');
CREATE TABLE em_native AS SELECT * FROM em;
SELECT * FROM em_native ORDER BY _id;

-- Rows of query a that query b lacks plus the reverse, and for ordered
-- queries the positions too (0: the same answer; -1: an error).
CREATE FUNCTION em_diff(a text, b text) RETURNS bigint LANGUAGE plpgsql AS $$
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
CREATE TABLE em_queries (name text, q text);
INSERT INTO em_queries VALUES
  ('kw = long', 'SELECT _id FROM %s WHERE kw = ''abcdefgh'' ORDER BY _id'),
  ('kw = short', 'SELECT _id FROM %s WHERE kw = ''abc'' ORDER BY _id'),
  ('kw = at the limit', 'SELECT _id FROM %s WHERE kw = ''abcde'' ORDER BY _id'),
  ('kw = emoji', 'SELECT _id FROM %s WHERE kw = ''ab😀😀'' ORDER BY _id'),
  ('kw IN', 'SELECT _id FROM %s WHERE kw IN (''abc'', ''zzzzzzzzz'') ORDER BY _id'),
  ('kw <>', 'SELECT _id FROM %s WHERE kw <> ''abc'' ORDER BY _id'),
  ('kw >', 'SELECT _id FROM %s WHERE kw > ''abd'' ORDER BY _id'),
  ('kw IS NULL', 'SELECT _id FROM %s WHERE kw IS NULL ORDER BY _id'),
  ('kw IS NOT NULL', 'SELECT _id FROM %s WHERE kw IS NOT NULL ORDER BY _id'),
  ('kw order', 'SELECT _id, kw FROM %s ORDER BY kw LIMIT 4'),
  ('kw count', 'SELECT count(*) FROM %s WHERE kw IS NOT NULL'),
  ('t = long', 'SELECT _id FROM %s WHERE t = ''abcdefgh'' ORDER BY _id'),
  ('t = short', 'SELECT _id FROM %s WHERE t = ''abc'' ORDER BY _id'),
  ('t IN', 'SELECT _id FROM %s WHERE t IN (''abc'', ''zzzzzzzzz'') ORDER BY _id'),
  ('t <>', 'SELECT _id FROM %s WHERE t <> ''abc'' ORDER BY _id'),
  ('t <> long', 'SELECT _id FROM %s WHERE t <> ''abcdefgh'' ORDER BY _id'),
  ('t <', 'SELECT _id FROM %s WHERE t < ''b'' ORDER BY _id'),
  ('t IS NULL', 'SELECT _id FROM %s WHERE t IS NULL ORDER BY _id'),
  ('t order', 'SELECT _id, t FROM %s ORDER BY t DESC LIMIT 3'),
  ('nk = null_value', 'SELECT _id FROM %s WHERE nk = ''none'' ORDER BY _id'),
  ('nk <>', 'SELECT _id FROM %s WHERE nk <> ''b'' ORDER BY _id'),
  ('nk IN', 'SELECT _id FROM %s WHERE nk IN (''none'', ''c'') ORDER BY _id'),
  ('nk IS NULL', 'SELECT _id FROM %s WHERE nk IS NULL ORDER BY _id'),
  ('nk IS NOT NULL', 'SELECT _id FROM %s WHERE nk IS NOT NULL ORDER BY _id'),
  ('nk order', 'SELECT _id, nk FROM %s ORDER BY nk NULLS FIRST, _id LIMIT 4'),
  ('nn = 0', 'SELECT _id FROM %s WHERE nn = 0 ORDER BY _id'),
  ('nn < 1', 'SELECT _id FROM %s WHERE nn < 1 ORDER BY _id'),
  ('nn IS NULL', 'SELECT _id FROM %s WHERE nn IS NULL ORDER BY _id'),
  ('nn order', 'SELECT _id, nn FROM %s ORDER BY nn LIMIT 3'),
  ('nn count', 'SELECT count(*) FROM %s WHERE nn <= 0'),
  ('nd =', 'SELECT _id FROM %s WHERE nd = ''2000-01-01'' ORDER BY _id'),
  ('nd <', 'SELECT _id FROM %s WHERE nd < ''2001-01-01'' ORDER BY _id'),
  ('nd IS NULL', 'SELECT _id FROM %s WHERE nd IS NULL ORDER BY _id'),
  ('nb = false', 'SELECT _id FROM %s WHERE nb = false ORDER BY _id'),
  ('NOT nb', 'SELECT _id FROM %s WHERE NOT nb ORDER BY _id'),
  ('nb IS NULL', 'SELECT _id FROM %s WHERE nb IS NULL ORDER BY _id'),
  ('copy_to =', 'SELECT _id FROM %s WHERE names = ''Ann'' ORDER BY _id'),
  ('copy_to IS NOT NULL', 'SELECT _id FROM %s WHERE names IS NOT NULL ORDER BY _id'),
  ('copy_to order', 'SELECT _id, names FROM %s ORDER BY names LIMIT 2'),
  ('alias field =', 'SELECT _id FROM %s WHERE al = ''abc'' ORDER BY _id'),
  ('alias field IS NOT NULL', 'SELECT _id FROM %s WHERE al IS NOT NULL ORDER BY _id');
SELECT name, em_diff(format(q, 'em'), format(q, 'em_native')) AS diff
FROM em_queries ORDER BY name;

-- A value known only at execution (generic plan): compared exactly within
-- ignore_above, and rechecked, found through match_all, beyond it.
SET plan_cache_mode = force_generic_plan;
PREPARE em_kw(text) AS SELECT _id FROM em WHERE kw = $1 ORDER BY _id;
EXECUTE em_kw('abc');
EXECUTE em_kw('abcdefgh');
EXECUTE em_kw('ab😀😀');
PREPARE em_t(text[]) AS SELECT _id FROM em WHERE t = ANY($1) ORDER BY _id;
EXECUTE em_t('{abc,zzzzzzzzz}');
EXECUTE em_t('{abcde}');
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE em_kw('abc');
RESET plan_cache_mode;

-- What is sent: equality within ignore_above as a term; <> through the
-- text field's exists; nothing for long values, ranges, sorts, exists of a
-- keyword with ignore_above, IS NULL on a null_value field, copy_to
-- targets, runtime fields.
EXPLAIN (VERBOSE, COSTS OFF) SELECT _id FROM em WHERE kw = 'abc' AND t <> 'abc';
EXPLAIN (VERBOSE, COSTS OFF) SELECT _id FROM em WHERE kw = 'abcdefgh' AND t > 'a' AND kw IS NULL;
EXPLAIN (VERBOSE, COSTS OFF) SELECT _id FROM em ORDER BY t LIMIT 2;
EXPLAIN (VERBOSE, COSTS OFF) SELECT _id FROM em WHERE nk = 'b' AND nn IS NULL AND nb IS NOT NULL;
EXPLAIN (VERBOSE, COSTS OFF) SELECT _id FROM em WHERE names = 'Ann' AND rt = 'x';

-- Blue/green: an alias moves to an index mapping the field as analyzed
-- text (no .keyword); the session planned on the keyword mapping.
SELECT pgpoly.elastic_request('em_es', 'DELETE', '/regress_em_blue,regress_em_green') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('em_es', 'PUT', '/regress_em_blue',
    '{"mappings": {"properties": {"f": {"type": "keyword"}, "n": {"type": "long"}}}}')->>'acknowledged' AS created;
SELECT pgpoly.elastic_request('em_es', 'PUT', '/regress_em_green',
    '{"mappings": {"properties": {"f": {"type": "text"}, "n": {"type": "keyword"}}}}')->>'acknowledged' AS created;
SELECT pgpoly.elastic_request('em_es', 'POST', '/_aliases',
    '{"actions": [{"add": {"index": "regress_em_blue", "alias": "regress_em_live"}}]}')->>'acknowledged' AS aliased;
CREATE FOREIGN TABLE em_blue (_id text, _source jsonb)
  SERVER em_es OPTIONS (index 'regress_em_blue', refresh 'true');
CREATE FOREIGN TABLE em_green (_id text, _source jsonb)
  SERVER em_es OPTIONS (index 'regress_em_green', refresh 'true');
INSERT INTO em_blue VALUES ('b1', '{"f": "Hello world", "n": 5}'), ('b2', '{"f": "bye", "n": 10}');
INSERT INTO em_green VALUES ('g1', '{"f": "Hello world", "n": 5}'), ('g2', '{"f": "world", "n": 10}'),
  ('g3', '{"f": "Hello", "n": 40}');
CREATE FOREIGN TABLE em_live (_id text, f text COLLATE "C", n int)
  SERVER em_es OPTIONS (index 'regress_em_live');
CREATE FOREIGN TABLE em_live2 (_id text, n int)
  SERVER em_es OPTIONS (index 'regress_em_live');
SELECT _id FROM em_live WHERE f = 'Hello world';
SET plan_cache_mode = force_generic_plan;
PREPARE em_live_f(text) AS SELECT _id FROM em_live WHERE f = $1 ORDER BY _id;
PREPARE em_live_n(int) AS SELECT _id FROM em_live2 WHERE n > $1 ORDER BY n LIMIT 2;
EXECUTE em_live_f('Hello world');
EXECUTE em_live_n(1);
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE em_live_n(1);
-- Another client moves the alias (one atomic _aliases request).
\! curl -s -o /dev/null -H 'Content-Type: application/json' -X POST "$ES_URL/_aliases" -d '{"actions": [{"remove": {"index": "regress_em_blue", "alias": "regress_em_live"}}, {"add": {"index": "regress_em_green", "alias": "regress_em_live"}}]}'
CREATE TABLE em_live_native AS SELECT * FROM em_live;
-- This session must not compare by the mapping it read before.
SELECT em_diff('SELECT _id FROM em_live WHERE f = ''Hello world'' ORDER BY _id',
               'SELECT _id FROM em_live_native WHERE f = ''Hello world'' ORDER BY _id') AS diff;
SELECT em_diff('SELECT _id FROM em_live WHERE f = ''Hello'' ORDER BY _id',
               'SELECT _id FROM em_live_native WHERE f = ''Hello'' ORDER BY _id') AS diff;
SELECT em_diff('SELECT _id FROM em_live WHERE n > 9 ORDER BY _id',
               'SELECT _id FROM em_live_native WHERE n > 9 ORDER BY _id') AS diff;
-- The generic plans made on the old mapping: the pushed clauses are
-- checked here instead (the same answer) and the plan is made again; a
-- pushed sort (or count) cannot be done here: refused once (40001), then
-- the plan is made again.
EXECUTE em_live_f('Hello world');
EXECUTE em_live_f('Hello');
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE em_live_f('Hello');
EXECUTE em_live_n(1);
\echo :LAST_ERROR_SQLSTATE
EXECUTE em_live_n(1);
SELECT _id FROM em_live_native WHERE n > 1 ORDER BY n LIMIT 2;
RESET plan_cache_mode;
-- An index deleted and re-created with another mapping, in one transaction.
BEGIN;
SELECT _id FROM em_live WHERE f = 'world' ORDER BY _id;
SELECT pgpoly.elastic_request('em_es', 'DELETE', '/regress_em_green')->>'acknowledged' AS dropped;
SELECT pgpoly.elastic_request('em_es', 'PUT', '/regress_em_green',
    '{"mappings": {"properties": {"f": {"type": "keyword"}}}}')->>'acknowledged' AS created;
SELECT pgpoly.elastic_request('em_es', 'POST', '/_aliases',
    '{"actions": [{"add": {"index": "regress_em_green", "alias": "regress_em_live"}}]}')->>'acknowledged' AS aliased;
\! printf '%s\n' '{"index":{"_id":"k1"}}' '{"f":"Hello world"}' '{"index":{"_id":"k2"}}' '{"f":"world"}' | curl -s -o /dev/null -H 'Content-Type: application/x-ndjson' -X POST "$ES_URL/regress_em_green/_bulk?refresh=true" --data-binary @-
SELECT _id FROM em_live WHERE f = 'world' ORDER BY _id;
EXPLAIN (VERBOSE, COSTS OFF) SELECT _id FROM em_live WHERE f = 'world';
COMMIT;

-- A pattern reaches a new index whose field another client's document
-- mapped dynamically (text with a .keyword): k compares through k.keyword
-- in one index and k in the other, so it stays local.
SELECT pgpoly.elastic_request('em_es', 'DELETE', '/regress_emp1,regress_emp2') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('em_es', 'PUT', '/regress_emp1',
    '{"mappings": {"properties": {"k": {"type": "keyword"}}}}')->>'acknowledged' AS created;
CREATE FOREIGN TABLE em_p1 (_id text, _source jsonb)
  SERVER em_es OPTIONS (index 'regress_emp1', refresh 'true');
INSERT INTO em_p1 VALUES ('p1', '{"k": "a b"}');
CREATE FOREIGN TABLE em_pat (_id text, k text COLLATE "C") SERVER em_es OPTIONS (index 'regress_emp*');
SELECT _id FROM em_pat WHERE k = 'a b' ORDER BY _id;
\! printf '%s\n' '{"index":{"_id":"p2"}}' '{"k":"a b"}' | curl -s -o /dev/null -H 'Content-Type: application/x-ndjson' -X POST "$ES_URL/regress_emp2/_bulk?refresh=true" --data-binary @-
SELECT _id FROM em_pat WHERE k = 'a b' ORDER BY _id;
SELECT pgpoly.elastic_request('em_es', 'DELETE', '/regress_emp1,regress_emp2')->>'acknowledged' AS dropped;

-- ignore_malformed: documents whose value the field could not index are
-- found by every comparison, IS [NOT] NULL and sort (nothing on i, s or d
-- is pushed; l, without the parameter, is).
SELECT pgpoly.elastic_request('em_es', 'DELETE', '/regress_emf') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('em_es', 'PUT', '/regress_emf', '{"mappings": {
    "properties": {
      "i": {"type": "integer", "ignore_malformed": true},
      "s": {"type": "short", "ignore_malformed": true},
      "d": {"type": "date", "ignore_malformed": true},
      "l": {"type": "long"}}}}')->>'acknowledged' AS created;
CREATE FOREIGN TABLE emf_raw (_id text, _source jsonb)
  SERVER em_es OPTIONS (index 'regress_emf', refresh 'true');
INSERT INTO emf_raw VALUES
  ('1', '{"i": 5, "s": 5, "d": "2024-01-05", "l": 5}'),
  ('2', '{"i": 3000000000, "s": 40000, "d": "2024/01/05", "l": 6}'),
  ('3', '{"i": -3000000000, "s": -40000, "d": "2023-12-31", "l": 7}'),
  ('4', '{}');
CREATE FOREIGN TABLE emf (_id text, i bigint, s int, d date, l bigint)
  SERVER em_es OPTIONS (index 'regress_emf');
CREATE TABLE emf_native AS SELECT * FROM emf;
SELECT * FROM emf_native ORDER BY _id;
TRUNCATE em_queries;
INSERT INTO em_queries VALUES
  ('i >', 'SELECT _id FROM %s WHERE i > 0 ORDER BY _id'),
  ('i =', 'SELECT _id FROM %s WHERE i = 3000000000 ORDER BY _id'),
  ('i IN', 'SELECT _id FROM %s WHERE i IN (5, -3000000000) ORDER BY _id'),
  ('i <>', 'SELECT _id FROM %s WHERE i <> 5 ORDER BY _id'),
  ('i IS NULL', 'SELECT _id FROM %s WHERE i IS NULL ORDER BY _id'),
  ('i IS NOT NULL', 'SELECT _id FROM %s WHERE i IS NOT NULL ORDER BY _id'),
  ('i order', 'SELECT _id, i FROM %s ORDER BY i DESC NULLS LAST LIMIT 2'),
  ('i count', 'SELECT count(*) FROM %s WHERE i >= 5'),
  ('s <', 'SELECT _id FROM %s WHERE s < 0 ORDER BY _id'),
  ('s IS NOT NULL', 'SELECT _id FROM %s WHERE s IS NOT NULL ORDER BY _id'),
  ('d >', 'SELECT _id FROM %s WHERE d > ''2024-01-01'' ORDER BY _id'),
  ('d =', 'SELECT _id FROM %s WHERE d = ''2024-01-05'' ORDER BY _id'),
  ('d IS NULL', 'SELECT _id FROM %s WHERE d IS NULL ORDER BY _id'),
  ('d order', 'SELECT _id, d FROM %s ORDER BY d DESC NULLS LAST, _id LIMIT 2'),
  ('l >', 'SELECT _id FROM %s WHERE l > 5 ORDER BY _id');
SELECT name, em_diff(format(q, 'emf'), format(q, 'emf_native')) AS diff
FROM em_queries ORDER BY name;
EXPLAIN (VERBOSE, COSTS OFF) SELECT _id FROM emf WHERE i > 0 AND s < 0 AND d IS NULL AND l > 5;
EXPLAIN (VERBOSE, COSTS OFF) SELECT _id FROM emf ORDER BY i LIMIT 2;
SELECT pgpoly.elastic_request('em_es', 'DELETE', '/regress_emf')->>'acknowledged' AS dropped;

-- The index-level default index.mapping.ignore_malformed (a setting, not in
-- the mapping): i and d take it, s sets false for itself (and so rejects a
-- malformed value: none is written), k is a keyword (which does not take
-- the parameter).  A pattern over that index and one without the setting:
-- a field is compared locally if any index keeps malformed values of it.
SELECT pgpoly.elastic_request('em_es', 'DELETE', '/regress_emi,regress_emj') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('em_es', 'PUT', '/regress_emi', '{
  "settings": {"index.mapping.ignore_malformed": true},
  "mappings": {"properties": {
      "i": {"type": "integer"}, "d": {"type": "date"},
      "s": {"type": "short", "ignore_malformed": false}, "k": {"type": "keyword"}}}}')->>'acknowledged' AS created;
SELECT pgpoly.elastic_request('em_es', 'PUT', '/regress_emj', '{
  "mappings": {"properties": {
      "i": {"type": "integer"}, "d": {"type": "date"},
      "s": {"type": "short"}, "k": {"type": "keyword"}}}}')->>'acknowledged' AS created;
CREATE FOREIGN TABLE emi_raw (_id text, _source jsonb)
  SERVER em_es OPTIONS (index 'regress_emi', refresh 'true');
CREATE FOREIGN TABLE emj_raw (_id text, _source jsonb)
  SERVER em_es OPTIONS (index 'regress_emj', refresh 'true');
INSERT INTO emi_raw VALUES
  ('1', '{"i": 5, "s": 5, "d": "2024-01-05", "k": "a"}'),
  ('2', '{"i": 3000000000, "s": 6, "d": "2024/01/05", "k": "b"}'),
  ('3', '{"i": -3000000000, "s": 7, "d": "2023-12-31", "k": "a"}'),
  ('4', '{}');
INSERT INTO emj_raw VALUES ('5', '{"i": 9, "s": 8, "d": "2024-02-01", "k": "c"}');
CREATE FOREIGN TABLE emi (_id text, i bigint, s int, d date, k text)
  SERVER em_es OPTIONS (index 'regress_emi');
CREATE FOREIGN TABLE emij (_id text, i bigint, s int, d date, k text)
  SERVER em_es OPTIONS (index 'regress_emi,regress_emj');
CREATE TABLE emi_native AS SELECT * FROM emi;
CREATE TABLE emij_native AS SELECT * FROM emij;
INSERT INTO em_queries VALUES
  ('k =', 'SELECT _id FROM %s WHERE k = ''a'' ORDER BY _id'),
  ('s >', 'SELECT _id FROM %s WHERE s > 5 ORDER BY _id');
SELECT * FROM emij_native ORDER BY _id;
SELECT name, em_diff(format(q, 'emi'), format(q, 'emi_native')) AS diff_emi,
       em_diff(format(q, 'emij'), format(q, 'emij_native')) AS diff_emij
FROM em_queries WHERE name NOT LIKE 'l %' ORDER BY name;
EXPLAIN (VERBOSE, COSTS OFF) SELECT _id FROM emi WHERE i > 0 AND d IS NULL AND s > 5 AND k = 'a';
EXPLAIN (VERBOSE, COSTS OFF) SELECT _id FROM emij WHERE i > 0 AND s > 5 AND k = 'a';
SELECT pgpoly.elastic_request('em_es', 'DELETE', '/regress_emi,regress_emj')->>'acknowledged' AS dropped;

-- A field name holding '*': Elasticsearch resolves the field of an exists
-- query and of a sort as a pattern of field names, so `exists a*` would also
-- find a document holding only `ab`.  No clause on such a column is sent:
-- the filters and the sort stay local.
SELECT pgpoly.elastic_request('em_es', 'PUT', '/regress_ems', '{"mappings": {
    "properties": {"a*": {"type": "keyword"}, "ab": {"type": "keyword"}}}}')->>'acknowledged' AS created;
CREATE FOREIGN TABLE ems (_id text, star text OPTIONS (field 'a*'), ab text)
  SERVER em_es OPTIONS (index 'regress_ems', refresh 'true');
INSERT INTO ems VALUES ('1', 'x', NULL), ('2', NULL, 'y'), ('3', NULL, NULL);
EXPLAIN (VERBOSE, COSTS OFF)
SELECT _id FROM ems WHERE star IS NOT NULL AND ab IS NULL AND star <> 'z' ORDER BY star COLLATE "C";
SELECT _id FROM ems WHERE star IS NOT NULL ORDER BY _id;
SELECT _id FROM ems WHERE star IS NULL ORDER BY _id;
SELECT _id FROM ems WHERE star = 'x' OR ab = 'y' ORDER BY _id;
DROP FOREIGN TABLE ems;
SELECT pgpoly.elastic_request('em_es', 'DELETE', '/regress_ems')->>'acknowledged' AS dropped;

DEALLOCATE ALL;
DROP FUNCTION em_diff(text, text);
DROP TABLE em_queries, em_native, em_live_native, emf_native, emi_native, emij_native;
SELECT pgpoly.elastic_request('em_es', 'DELETE', '/regress_em')->>'acknowledged' AS dropped;
SELECT pgpoly.elastic_request('em_es', 'DELETE', '/regress_em_blue')->>'acknowledged' AS dropped;
SELECT pgpoly.elastic_request('em_es', 'DELETE', '/regress_em_green')->>'acknowledged' AS dropped;
DROP SERVER em_es CASCADE;
