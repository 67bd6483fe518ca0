--
-- pgpoly_elastic and fields mapped with "ignore_malformed": true
-- (ignore-malformed.html: "the malformed field is not indexed, but other
-- fields in the document are processed normally"; its _source keeps the
-- value).  A value PostgreSQL reads from _source but Elasticsearch cannot
-- index -- 3000000000 in an integer field, 40000 in a short, a date in a
-- format the field does not parse -- is invisible to a term, range, exists
-- or sort on the field, so none of them is pushed: the clauses are checked
-- locally.  Differential: every query runs on the foreign table and on a
-- native copy read by a full scan; a difference is a wrong answer.
-- Index regress_emf is created and removed here.
--
\getenv es_url ES_URL
\set VERBOSITY terse

CREATE SERVER emf_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('emf_es', 'DELETE', '/regress_emf') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('emf_es', 'PUT', '/regress_emf', '{"mappings": {
    "properties": {
      "i": {"type": "integer", "ignore_malformed": true},
      "s": {"type": "short", "ignore_malformed": true},
      "d": {"type": "date", "ignore_malformed": true},
      "l": {"type": "long"}}}}')->>'acknowledged' AS created;
CREATE FOREIGN TABLE emf_raw (_id text, _source jsonb)
  SERVER emf_es OPTIONS (index 'regress_emf', refresh 'true');
INSERT INTO emf_raw VALUES
  ('1', '{"i": 5, "s": 5, "d": "2024-01-05", "l": 5}'),
  ('2', '{"i": 3000000000, "s": 40000, "d": "2024/01/05", "l": 6}'),
  ('3', '{"i": -3000000000, "s": -40000, "d": "2023-12-31", "l": 7}'),
  ('4', '{}');

CREATE FOREIGN TABLE emf (_id text, i bigint, s int, d date, l bigint)
  SERVER emf_es OPTIONS (index 'regress_emf');
CREATE TABLE emf_native AS SELECT * FROM emf;
SELECT * FROM emf_native ORDER BY _id;

-- Rows of query a that query b lacks plus the reverse, positions included
-- (0: the same answer; -1: an error).
CREATE FUNCTION emf_diff(a text, b text) RETURNS bigint LANGUAGE plpgsql AS $$
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
CREATE TABLE emf_queries (name text, q text);
INSERT INTO emf_queries VALUES
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
SELECT name, emf_diff(format(q, 'emf'), format(q, 'emf_native')) AS diff
FROM emf_queries ORDER BY name;

-- What is sent: the comparisons on l; nothing on i, s or d.
EXPLAIN (VERBOSE, COSTS OFF) SELECT _id FROM emf WHERE i > 0 AND s < 0 AND d IS NULL AND l > 5;
EXPLAIN (VERBOSE, COSTS OFF) SELECT _id FROM emf ORDER BY i LIMIT 2;

SELECT pgpoly.elastic_request('emf_es', 'DELETE', '/regress_emf')->>'acknowledged' AS dropped;
DROP SERVER emf_es CASCADE;
DROP TABLE emf_native, emf_queries;
DROP FUNCTION emf_diff;
