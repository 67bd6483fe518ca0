-- pgpoly_elastic at Elasticsearch's size limits: an IN list longer than
-- index.max_terms_count (65536 by default) is still pushed down, split into
-- several terms queries of at most that many values.
\getenv es_url ES_URL
\set VERBOSITY terse

CREATE SERVER es_limits FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('es_limits', 'DELETE', '/regress_es_limits') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('es_limits', 'PUT', '/regress_es_limits',
  '{"mappings": {"properties": {"n": {"type": "long"}, "kw": {"type": "keyword"},
                                "f": {"type": "double"}}}}') ->> 'acknowledged' AS created;
CREATE FOREIGN TABLE lim (_id text, n bigint, kw text, f float8)
  SERVER es_limits OPTIONS (index 'regress_es_limits', refresh 'true');
INSERT INTO lim VALUES ('a', 1, 'k1', 0), ('b', 70000, 'k70000', 1.5),
  ('c', 140000, 'k140000', -2), ('d', -5, 'none', 99);

-- 150,000 values: three terms queries; each value found wherever it falls.
EXPLAIN (VERBOSE, COSTS OFF)
SELECT _id FROM lim WHERE n = ANY (ARRAY(SELECT g::bigint FROM generate_series(1, 150000) g));
SELECT _id FROM lim WHERE n = ANY (ARRAY(SELECT g::bigint FROM generate_series(1, 150000) g))
  ORDER BY _id;
SELECT _id FROM lim WHERE kw = ANY (ARRAY(SELECT 'k' || g FROM generate_series(1, 150000) g))
  ORDER BY _id;
-- 65536 values, the most one terms query takes.
SELECT _id FROM lim WHERE n = ANY (ARRAY(SELECT g::bigint FROM generate_series(-65530, 5) g))
  ORDER BY _id;
-- Zeros of float8 count twice (0.0 and -0.0); NULLs are skipped.
SELECT _id FROM lim WHERE f = ANY (ARRAY(SELECT CASE WHEN g % 7 = 1 THEN NULL ELSE g / 2.0 END::float8
                                   FROM generate_series(-70000, 70000) g))
  ORDER BY _id;
SELECT count(*) FROM lim WHERE n = ANY (ARRAY(SELECT g::bigint FROM generate_series(1, 150000) g));
-- _id lists are ids queries, which have no such limit.
SELECT _id FROM lim WHERE _id = ANY (ARRAY(SELECT chr(97 + g % 3) || g FROM generate_series(1, 100000) g)
                                    || ARRAY['b', 'd'])
  ORDER BY _id;

-- _bulk bodies stay within http.max_content_length (100mb by default): 110
-- documents of 1 MB, fewer than batch_size, go in several requests.
CREATE FOREIGN TABLE lim_big (_id text, n bigint, kw text)
  SERVER es_limits OPTIONS (index 'regress_es_limits', fetch_size '10');
INSERT INTO lim_big SELECT 'big' || g, g, repeat(chr(97 + g % 26), 1000000)
  FROM generate_series(1, 110) g;
SELECT count(*), sum(length(kw)), count(DISTINCT left(kw, 1)) FROM lim_big WHERE _id LIKE 'big%';
UPDATE lim_big SET kw = left(kw, 10) WHERE _id LIKE 'big%';
SELECT count(*), sum(length(kw)) FROM lim_big WHERE _id LIKE 'big%';
-- One document over the limit goes alone, and is refused with 54000.
\set VERBOSITY sqlstate
INSERT INTO lim_big VALUES ('huge', 0, repeat('x', 105000000));
\set VERBOSITY terse
SELECT count(*) FROM lim_big WHERE _id = 'huge';
DROP FOREIGN TABLE lim_big;

DROP FOREIGN TABLE lim;
SELECT pgpoly.elastic_request('es_limits', 'DELETE', '/regress_es_limits') ->> 'acknowledged' AS dropped;
DROP SERVER es_limits;
