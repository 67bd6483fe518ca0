--
-- pgpoly_vector against a real Chroma: scans, filters, k-NN pushdown with
-- _distance checked against the local operators, fallbacks, EXPLAIN.
--
\getenv chroma_url CHROMA_URL
-- Start from nothing (a previous failed run may have left collections).
\! for c in pgpoly_rt_l2 pgpoly_rt_cos pgpoly_rt_ip; do curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/$c"; done

CREATE SERVER chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');

-- 40 records of dimension 4, with metadata, kept locally as the reference.
CREATE TABLE ref AS
SELECT 'r' || lpad(i::text, 2, '0') AS id,
       ARRAY[sin(i), cos(i * 1.3), sin(i * 0.7) + 0.5, cos(i * 2.1)]::real[] AS embedding,
       'document ' || i AS document,
       jsonb_build_object('grp', (ARRAY['a','b','c'])[i % 3 + 1], 'n', i, 'even', i % 2 = 0) AS metadata
FROM generate_series(1, 40) i;

CREATE FOREIGN TABLE v_l2 (id text, embedding real[], document text, metadata jsonb,
                           grp text OPTIONS (field 'grp'), n int, _distance float8)
  SERVER chroma OPTIONS (collection 'pgpoly_rt_l2', create_collection 'true', distance 'l2',
                         fetch_size '7');
CREATE FOREIGN TABLE v_cos (id text, embedding real[], document text, metadata jsonb, _distance float8)
  SERVER chroma OPTIONS (collection 'pgpoly_rt_cos', create_collection 'true', distance 'cosine');
CREATE FOREIGN TABLE v_ip (id text, embedding real[], metadata jsonb, _distance float8)
  SERVER chroma OPTIONS (collection 'pgpoly_rt_ip', create_collection 'true', distance 'ip');

INSERT INTO v_l2 (id, embedding, document, metadata) SELECT * FROM ref;
INSERT INTO v_cos SELECT * FROM ref;
INSERT INTO v_ip (id, embedding, metadata) SELECT id, embedding, metadata FROM ref;

-- Paged scans (fetch_size 7) see every record.
SELECT count(*), count(DISTINCT id), min(id), max(id) FROM v_l2;
SELECT count(*) FROM v_cos;
-- Values come back as written (real[] exactly, metadata as jsonb).
SELECT count(*) AS same FROM v_l2 v JOIN ref r USING (id)
WHERE v.embedding = r.embedding AND v.document = r.document AND v.metadata = r.metadata
  AND v.grp = r.metadata->>'grp' AND v.n = (r.metadata->>'n')::int AND v._distance IS NULL;

-- Fetch by ids.
SELECT id, document, grp, n FROM v_l2 WHERE id = 'r05';
SELECT id, n FROM v_l2 WHERE id IN ('r01', 'r02', 'nope') ORDER BY id;
SELECT id FROM v_l2 WHERE id = ANY ('{}'::text[]);
EXPLAIN (VERBOSE, COSTS OFF) SELECT id, n FROM v_l2 WHERE id IN ('r01', 'r02');

-- Metadata filters on text and on mapped number columns are translated
-- (not a cast of ->>: SQL reads the string "5" as 5 there, the service's
-- number match does not), and all are still checked locally.
SELECT id FROM v_l2 WHERE metadata->>'grp' = 'b' AND (metadata->>'n')::int >= 30 ORDER BY id;
SELECT id FROM v_l2 WHERE grp IN ('a', 'c') AND n < 6 ORDER BY id;
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM v_l2 WHERE grp IN ('a', 'c') AND n < 6;
-- Not translated (<> lets records without the key through in Chroma).
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM v_l2 WHERE grp <> 'a';
SELECT count(*) FROM v_l2 WHERE grp <> 'a';

-- k-NN: pushed down when the operator matches the collection's distance;
-- same ids and distances as the local operator on the reference table.
\set q '''{0.3,-0.2,0.9,0.1}'''
EXPLAIN (VERBOSE, COSTS OFF)
SELECT id, _distance FROM v_l2 ORDER BY embedding <-> :q LIMIT 5;
SELECT v.id, round(v._distance::numeric, 5) AS fdw, round((r.embedding <-> :q)::numeric, 5) AS local
FROM (SELECT id, _distance FROM v_l2 ORDER BY embedding <-> :q LIMIT 5) v JOIN ref r USING (id)
ORDER BY v._distance;
SELECT (SELECT array_agg(id) FROM (SELECT id FROM v_l2 ORDER BY embedding <-> :q LIMIT 8) s) =
       (SELECT array_agg(id) FROM (SELECT id FROM ref ORDER BY embedding <-> :q LIMIT 8) s) AS l2_same;
SELECT (SELECT array_agg(id) FROM (SELECT id FROM v_cos ORDER BY embedding <=> :q LIMIT 8) s) =
       (SELECT array_agg(id) FROM (SELECT id FROM ref ORDER BY embedding <=> :q LIMIT 8) s) AS cos_same;
SELECT (SELECT array_agg(id) FROM (SELECT id FROM v_ip ORDER BY embedding <#> :q LIMIT 8) s) =
       (SELECT array_agg(id) FROM (SELECT id FROM ref ORDER BY embedding <#> :q LIMIT 8) s) AS ip_same;
-- The ORDER BY value and _distance are in the operator's metric.
SELECT v.id, round(v.d::numeric, 5) AS d, round(v._distance::numeric, 5) AS dist,
       round((r.embedding <=> :q)::numeric, 5) AS local
FROM (SELECT id, embedding <=> :q AS d, _distance FROM v_cos ORDER BY embedding <=> :q LIMIT 3) v
JOIN ref r USING (id) ORDER BY v.d;
SELECT v.id, round(v._distance::numeric, 4) AS fdw, round((r.embedding <#> :q)::numeric, 4) AS local
FROM (SELECT id, _distance FROM v_ip ORDER BY embedding <#> :q LIMIT 3) v JOIN ref r USING (id)
ORDER BY v._distance;
-- With a filter (pushed as where, a mapped number column's too), OFFSET,
-- and ids.
EXPLAIN (VERBOSE, COSTS OFF)
SELECT id FROM v_l2 WHERE grp = 'a' ORDER BY embedding <-> :q LIMIT 3 OFFSET 1;
EXPLAIN (VERBOSE, COSTS OFF)
SELECT id FROM v_l2 WHERE grp = 'a' AND n > 10 ORDER BY embedding <-> :q LIMIT 3 OFFSET 1;
SELECT (SELECT array_agg(id) FROM (SELECT id FROM v_l2 WHERE grp = 'a' AND n > 10
                                   ORDER BY embedding <-> :q LIMIT 3 OFFSET 1) s) =
       (SELECT array_agg(id) FROM (SELECT id FROM ref WHERE metadata->>'grp' = 'a'
                                   AND (metadata->>'n')::int > 10
                                   ORDER BY embedding <-> :q LIMIT 3 OFFSET 1) s) AS filtered_same;
SELECT id FROM v_l2 WHERE id IN ('r03', 'r04', 'r05') ORDER BY embedding <-> :q LIMIT 2;
SELECT id FROM ref WHERE id IN ('r03', 'r04', 'r05') ORDER BY embedding <-> :q LIMIT 2;
SELECT id FROM v_l2 WHERE metadata->>'grp' = 'none' ORDER BY embedding <-> :q LIMIT 2;
-- k larger than the collection.
SELECT count(*) FROM (SELECT id FROM v_ip ORDER BY embedding <#> :q LIMIT 100) s;
-- A NULL query vector: every distance is NULL, so any k records that pass
-- the filter are the answer (as on the reference table), not none.
SET plan_cache_mode = force_generic_plan;
PREPARE knn_null(real[], text) AS
  SELECT count(*), count(_distance) AS distances, bool_and(grp = $2) AS filtered
  FROM (SELECT id, grp, _distance FROM v_l2 WHERE grp = $2 ORDER BY embedding <-> $1 LIMIT 4) s;
EXECUTE knn_null(NULL, 'a');
SELECT count(*) FROM (SELECT id FROM ref WHERE metadata->>'grp' = 'a'
                      ORDER BY embedding <-> NULL::real[] LIMIT 4) s;
EXECUTE knn_null(:q, 'b');
RESET plan_cache_mode;
DEALLOCATE knn_null;
SELECT count(*) FROM (SELECT id FROM v_ip ORDER BY embedding <#> NULL::real[] LIMIT 100) s;

-- Fallbacks: computed locally, and EXPLAIN says why; results still right.
EXPLAIN (COSTS OFF) SELECT id FROM v_cos ORDER BY embedding <-> :q LIMIT 3;
SELECT (SELECT array_agg(id) FROM (SELECT id FROM v_cos ORDER BY embedding <-> :q LIMIT 3) s) =
       (SELECT array_agg(id) FROM (SELECT id FROM ref ORDER BY embedding <-> :q LIMIT 3) s) AS mismatch_same;
EXPLAIN (COSTS OFF) SELECT id FROM v_l2 WHERE document LIKE '%1%' ORDER BY embedding <-> :q LIMIT 3;
SELECT id FROM v_l2 WHERE document LIKE '%1%' ORDER BY embedding <-> :q LIMIT 3;
SELECT id FROM ref WHERE document LIKE '%1%' ORDER BY embedding <-> :q LIMIT 3;
EXPLAIN (COSTS OFF) SELECT id FROM v_l2 ORDER BY embedding <-> :q;
-- LIMIT + OFFSET above one request's 100000 results: sorted locally (a
-- capped request would return fewer rows than asked for); at the cap, pushed.
EXPLAIN (COSTS OFF) SELECT id FROM v_l2 ORDER BY embedding <-> :q LIMIT 100001;
EXPLAIN (COSTS OFF) SELECT id FROM v_l2 ORDER BY embedding <-> :q LIMIT 99999 OFFSET 2;
EXPLAIN (COSTS OFF) SELECT id FROM v_l2 ORDER BY embedding <-> :q LIMIT 99999 OFFSET 1;
SELECT (SELECT array_agg(id) FROM (SELECT id FROM v_l2 ORDER BY embedding <-> :q LIMIT 9000000000 OFFSET 2) s) =
       (SELECT array_agg(id) FROM (SELECT id FROM ref ORDER BY embedding <-> :q LIMIT 9000000000 OFFSET 2) s) AS big_limit_same;
-- A join is sorted locally too.
SELECT v.id FROM v_l2 v JOIN ref r USING (id) ORDER BY v.embedding <-> :q LIMIT 2;

-- Read-your-writes: buffered writes take part in the k-NN (computed locally).
BEGIN;
INSERT INTO v_l2 (id, embedding, metadata) VALUES ('new', :q, '{"grp": "a", "n": 99}');
DELETE FROM v_l2 WHERE id = (SELECT id FROM ref ORDER BY embedding <-> :q LIMIT 1);
SELECT id, round(_distance::numeric, 5) FROM v_l2 ORDER BY embedding <-> :q LIMIT 2;
SELECT id FROM v_l2 WHERE grp = 'b' ORDER BY embedding <-> :q LIMIT 1;
ROLLBACK;
SELECT id FROM v_l2 WHERE id = 'new';

-- Row estimates: no request at plan time unless use_remote_estimate asks
-- the service for the collection's size.
EXPLAIN SELECT * FROM v_l2;
ALTER FOREIGN TABLE v_l2 OPTIONS (ADD use_remote_estimate 'true');
EXPLAIN SELECT * FROM v_l2;
ALTER FOREIGN TABLE v_l2 OPTIONS (DROP use_remote_estimate);

-- pgpoly.vector_search(): the same search for ORMs.
SELECT s.id, round(s.distance::numeric, 5), s.document
FROM pgpoly.vector_search('v_l2', :q, 3) s;
SELECT s.id, s.metadata->>'grp' AS grp
FROM pgpoly.vector_search('v_cos'::regclass, :q, 2, '{"grp": "c"}') s;
SELECT count(*) FROM pgpoly.vector_search('v_l2', :q, 5, '{"grp": ["a", "b"]}') s
WHERE s.metadata->>'grp' IN ('a', 'b');
-- A number array filter matches as the numbers' equality does in SQL:
-- fractional values against Chroma's integer metadata, and a float
-- metadata value equal to one of them (differential).
INSERT INTO ref VALUES ('r99', '{0.3,-0.2,0.9,0.2}', 'document 99', '{"grp": "a", "n": 2.5}');
INSERT INTO v_l2 (id, embedding, document, metadata) SELECT * FROM ref WHERE id = 'r99';
SELECT (SELECT array_agg(s.id ORDER BY s.id)
        FROM pgpoly.vector_search('v_l2', :q, 40, '{"n": [2.5, 3, 4.0, 7, -1.5]}') s) AS search,
       (SELECT array_agg(id ORDER BY id) FROM ref
        WHERE (metadata->>'n')::numeric IN (2.5, 3, 4.0, 7, -1.5)) AS local;
SELECT count(*) FROM pgpoly.vector_search('v_l2', :q, 40, '{"n": [2.5, 39.9]}') s;
SELECT (SELECT array_agg(s.id ORDER BY s.id)
        FROM pgpoly.vector_search('v_l2', :q, 40, '{"n": [12, 5]}') s) AS search,
       (SELECT array_agg(id ORDER BY id) FROM ref
        WHERE (metadata->>'n')::numeric IN (12, 5)) AS local;
DELETE FROM v_l2 WHERE id = 'r99';
DELETE FROM ref WHERE id = 'r99';
\set VERBOSITY terse
SELECT * FROM pgpoly.vector_search('ref', :q);
SELECT * FROM pgpoly.vector_search('v_l2', '{1,2}');
SELECT * FROM pgpoly.vector_search('v_l2', :q, 3, '{"grp": {"a": 1}}');
\set VERBOSITY default

DROP FOREIGN TABLE v_l2, v_cos, v_ip;
DROP TABLE ref;
DROP SERVER chroma;
\! for c in pgpoly_rt_l2 pgpoly_rt_cos pgpoly_rt_ip; do curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/$c"; done
