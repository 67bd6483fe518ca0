-- pgpoly_elastic: options, type mapping, pushdown and EXPLAIN, writes and
-- transactions, errors.  Runs unchanged against test/es_standin.py or a real
-- cluster (ES_URL); indexes regress_es_* are created and dropped here.
\getenv es_url ES_URL
\set VERBOSITY terse

-- Options are validated at CREATE time.
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (ulr 'http://x');
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (verify_tls 'perhaps');
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (api_key 'secret');
CREATE SERVER es FOREIGN DATA WRAPPER pgpoly_elastic
  OPTIONS (url :'es_url', timeout_ms '10000', verify_tls 'true');
CREATE USER MAPPING FOR CURRENT_USER SERVER es OPTIONS (token 'x');
CREATE FOREIGN TABLE t_bad (a text) SERVER es OPTIONS (refresh 'sometimes');
CREATE FOREIGN TABLE t_bad (a text) SERVER es OPTIONS (fetch_size '20000');
CREATE FOREIGN TABLE t_bad (a text) SERVER es OPTIONS (write_mode 'eventually');
CREATE FOREIGN TABLE t_bad (_score text) SERVER es OPTIONS (index 'regress_es_docs');
SELECT * FROM t_bad;
DROP FOREIGN TABLE t_bad;

-- Index management goes through pgpoly.elastic_request (documented APIs).
SELECT pgpoly.elastic_request('es', 'DELETE', '/regress_es_docs') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('es', 'PUT', '/regress_es_docs', '{"mappings": {"properties": {
    "title":   {"type": "text", "fields": {"keyword": {"type": "keyword"}}},
    "body":    {"type": "text"},
    "task":    {"type": "keyword"},
    "n":       {"type": "long"},
    "price":   {"type": "double"},
    "tags":    {"type": "keyword"},
    "created": {"type": "date"},
    "ok":      {"type": "boolean"},
    "meta":    {"properties": {"a": {"type": "long"}, "b": {"type": "keyword"}}}}}}')
  ->> 'acknowledged' AS created;

CREATE FOREIGN TABLE docs (
    _id     text,
    title   text,
    body    text,
    task    text,
    n       int,
    price   float8,
    tags    text[],
    created timestamptz,
    ok      boolean,
    meta    jsonb,
    meta_b  text OPTIONS (field 'meta.b'),
    _score  real,
    _query  text,
    _source jsonb
) SERVER es OPTIONS (index 'regress_es_docs', refresh 'true');

INSERT INTO docs (_id, title, body, task, n, price, tags, created, ok, meta) VALUES
  ('1', 'Vision transformer', 'an image model for vision tasks', 'vision', 1, 1.5,
   '{a,b}', '2024-01-01 10:00:00+00', true, '{"a": 1, "b": "x"}'),
  ('2', 'Text model', 'a language model', 'nlp', 2, 2.25,
   '{b}', '2024-02-01 10:00:00+00', false, '{"a": 2, "b": "y"}'),
  ('3', 'Speech model', 'speech to text', 'audio', 3, NULL,
   NULL, NULL, NULL, NULL),
  ('4', 'Another vision model', 'vision detection', 'vision', 4, 10,
   '{c}', '2024-03-01 00:00:00+00', true, '{"a": 4}');

-- Type mapping: arrays, dates, booleans, objects -> jsonb, nested fields.
SELECT _id, title, task, n, price, tags, created, ok, meta, meta_b, _score
  FROM docs ORDER BY _id;
SELECT _source FROM docs WHERE _id = '3';

-- Full-text search: scores only when _score is used.
SELECT _id, title FROM docs WHERE _query = 'vision' ORDER BY _id;
SELECT _id, _score > 0 AS scored FROM docs WHERE _query = 'vision' ORDER BY _id;
SELECT _id, _score IS NULL AS unscored FROM docs WHERE task = 'nlp';
EXPLAIN (VERBOSE, COSTS OFF)
  SELECT _id, title, _score FROM docs WHERE _query = 'vision' ORDER BY _score DESC LIMIT 3;

-- Comparisons, IN, IS NULL: bool filter / must_not; text through .keyword.
EXPLAIN (VERBOSE, COSTS OFF)
  SELECT _id FROM docs
   WHERE title = 'Text model' AND n >= 2 AND n <> 3 AND price IS NOT NULL
     AND created > '2024-01-15' AND ok IS NOT NULL AND task IN ('nlp', 'audio');
SELECT _id FROM docs
 WHERE title = 'Text model' AND n >= 2 AND n <> 3 AND price IS NOT NULL
   AND created > '2024-01-15' AND ok IS NOT NULL AND task IN ('nlp', 'audio');
SELECT _id FROM docs WHERE price IS NULL;
SELECT _id FROM docs WHERE n <> 1 ORDER BY _id;
SELECT _id FROM docs WHERE NOT ok ORDER BY _id;
SELECT _id FROM docs WHERE _id IN ('2', '4', 'nope') ORDER BY _id;
-- An analyzed text field without .keyword is compared locally.
EXPLAIN (VERBOSE, COSTS OFF) SELECT _id FROM docs WHERE body = 'speech to text';
SELECT _id FROM docs WHERE body = 'speech to text';
-- A parameter is evaluated before the request.
PREPARE by_n(int) AS SELECT _id FROM docs WHERE n = $1;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE by_n(2);
EXECUTE by_n(2);
DEALLOCATE by_n;

-- ORDER BY and LIMIT are pushed only when every qual is.
EXPLAIN (VERBOSE, COSTS OFF) SELECT _id, n FROM docs ORDER BY n DESC LIMIT 2 OFFSET 1;
SELECT _id, n FROM docs ORDER BY n DESC LIMIT 2 OFFSET 1;
EXPLAIN (VERBOSE, COSTS OFF) SELECT _id FROM docs WHERE body = 'x' LIMIT 1;
SELECT _id, price FROM docs ORDER BY price DESC NULLS LAST, _id;
SELECT _id, created FROM docs ORDER BY created LIMIT 2;

-- count(*) becomes _count.
EXPLAIN (VERBOSE, COSTS OFF) SELECT count(*) FROM docs WHERE task = 'vision';
SELECT count(*) FROM docs WHERE task = 'vision';
SELECT count(*) FROM docs;

-- Values that do not fit the column name the document and field.
CREATE FOREIGN TABLE docs_badtype (_id text, title int)
  SERVER es OPTIONS (index 'regress_es_docs');
SELECT * FROM docs_badtype WHERE _id = '1';

-- Transactions: buffered, read-your-writes, ROLLBACK sends nothing.
BEGIN;
INSERT INTO docs (_id, title, task, n) VALUES ('5', 'Pending model', 'vision', 5);
UPDATE docs SET n = 20, meta_b = 'z' WHERE _id = '2';
DELETE FROM docs WHERE _id = '3';
SELECT _id, title, n, meta_b FROM docs ORDER BY _id;
SELECT count(*) FROM docs WHERE task = 'vision';
SELECT _id FROM docs WHERE n > 4 ORDER BY _id;
ROLLBACK;
SELECT _id, n FROM docs ORDER BY _id;

-- ROLLBACK TO SAVEPOINT drops the writes made after it.
BEGIN;
INSERT INTO docs (_id, title, n) VALUES ('6', 'kept', 6);
SAVEPOINT s;
INSERT INTO docs (_id, title, n) VALUES ('7', 'rolled back', 7);
ROLLBACK TO SAVEPOINT s;
UPDATE docs SET title = 'Text model v2', meta_b = 'w' WHERE _id = '2';
COMMIT;
SELECT _id, title, n, meta FROM docs ORDER BY _id;

-- The scan of an UPDATE's target asks for each hit's version
-- (seq_no_primary_term), which the write at COMMIT is conditioned on
-- (if_seq_no/if_primary_term); so does a DELETE that reads a value.  A
-- DELETE by _id alone does not, nor does any SELECT.
EXPLAIN (VERBOSE, COSTS OFF) UPDATE docs SET n = n + 1 WHERE _id = '2';
EXPLAIN (VERBOSE, COSTS OFF) DELETE FROM docs WHERE _id = '2' AND n < 10;
EXPLAIN (VERBOSE, COSTS OFF) DELETE FROM docs WHERE _id = '2';
BEGIN;
UPDATE docs SET n = n + 1 WHERE _id = '2';
UPDATE docs SET n = n + 1 WHERE _id = '2';
COMMIT;
SELECT _id, n FROM docs WHERE _id = '2';

-- INSERT without _id: an id is assigned at once (RETURNING, later reads).
BEGIN;
INSERT INTO docs (title, n) VALUES ('no id', 8) RETURNING length(_id) AS id_length, n;
SELECT count(*) FROM docs WHERE _id IS NOT NULL AND title = 'no id';
COMMIT;
SELECT length(_id), title FROM docs WHERE n = 8;
DELETE FROM docs WHERE n = 8 RETURNING title;
-- UPDATE keeps the fields no column maps.
CREATE FOREIGN TABLE docs_narrow (_id text, n int)
  SERVER es OPTIONS (index 'regress_es_docs', refresh 'true', write_mode 'immediate');
UPDATE docs_narrow SET n = 40 WHERE _id = '4';
SELECT _id, title, n, tags FROM docs WHERE _id = '4';
-- _source can be written whole.
INSERT INTO docs (_id, _source, n) VALUES ('9', '{"title": "from source", "n": 1, "extra": [1, 2]}', 9);
SELECT _id, title, n, _source FROM docs WHERE _id = '9';
-- Changing _id is refused.
UPDATE docs SET _id = 'x' WHERE _id = '9';

-- A bulk item failure fails COMMIT, naming the document.
BEGIN;
INSERT INTO docs (_id, title) VALUES ('ok1', 'fine');
INSERT INTO docs (_id, _source) VALUES ('bad', '{"n": "not a number"}');
COMMIT;
SELECT _id FROM docs WHERE _id IN ('bad', 'ok1');  -- no rollback in Elasticsearch

-- A missing index is an ERROR naming it.
CREATE FOREIGN TABLE missing (_id text, title text) SERVER es OPTIONS (index 'regress_es_missing');
SELECT * FROM missing;
SELECT count(*) FROM missing;
SELECT * FROM missing WHERE title = 'x';

-- IMPORT FOREIGN SCHEMA from the mapping.
CREATE SCHEMA es_import;
IMPORT FOREIGN SCHEMA "regress_es_d*" FROM SERVER es INTO es_import;
\d es_import.regress_es_docs
SELECT _id, title, n FROM es_import.regress_es_docs WHERE _id = '1';
IMPORT FOREIGN SCHEMA "regress_es_d*" LIMIT TO (nothing_here) FROM SERVER es INTO public;

-- Dates as epoch milliseconds: a number beyond the timestamp range is an
-- ERROR, never a date wrapped around or a timestamp that cannot be output.
SELECT pgpoly.elastic_request('es', 'DELETE', '/regress_es_millis') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('es', 'PUT', '/regress_es_millis',
  '{"mappings": {"properties": {"ms": {"type": "long"}}}}') ->> 'acknowledged' AS created;
CREATE FOREIGN TABLE millis_w (_id text, ms bigint) SERVER es
  OPTIONS (index 'regress_es_millis', refresh 'true');
INSERT INTO millis_w VALUES ('ok', 1709294400123), ('far', 9223372036854775807),
  ('old', -300000000000000), ('edge', 9223372036854775);
CREATE FOREIGN TABLE millis (_id text, ms timestamptz) SERVER es
  OPTIONS (index 'regress_es_millis');
CREATE FOREIGN TABLE millis_d (_id text, d date OPTIONS (field 'ms')) SERVER es
  OPTIONS (index 'regress_es_millis');
SELECT _id, ms AT TIME ZONE 'UTC' AS ms_utc FROM millis WHERE _id = 'ok';
SELECT _id, d FROM millis_d WHERE _id = 'ok';
SELECT _id, ms FROM millis WHERE _id = 'far';
SELECT _id, d FROM millis_d WHERE _id = 'far';
SELECT _id, ms FROM millis WHERE _id = 'old';
SELECT _id, d FROM millis_d WHERE _id = 'old';
SELECT _id, ms FROM millis WHERE _id = 'edge';
DROP FOREIGN TABLE millis, millis_d, millis_w;
SELECT pgpoly.elastic_request('es', 'DELETE', '/regress_es_millis') ->> 'acknowledged' AS dropped;

-- Connections are cached; secrets never show.
SELECT server, store, requests > 0 AS used FROM pgpoly.connections() WHERE server = 'es';

DROP SCHEMA es_import CASCADE;
DROP FOREIGN TABLE docs, docs_badtype, docs_narrow, missing;
SELECT pgpoly.elastic_request('es', 'DELETE', '/regress_es_docs') ->> 'acknowledged' AS dropped;
DROP SERVER es CASCADE;
