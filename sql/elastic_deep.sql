-- pgpoly_elastic: result sets beyond index.max_result_window (10000):
-- bulk writes in batches, point in time + search_after paging (scroll on
-- OpenSearch), sorted deep paging, and count(*) through _count.
\getenv es_url ES_URL
\set VERBOSITY terse

CREATE SERVER es_deep FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('es_deep', 'DELETE', '/regress_es_deep') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('es_deep', 'PUT', '/regress_es_deep',
  '{"mappings": {"properties": {"n": {"type": "long"}, "grp": {"type": "keyword"},
                                "label": {"type": "text"}}}}') ->> 'acknowledged' AS created;

CREATE FOREIGN TABLE deep (_id text, n int, grp text, label text)
  SERVER es_deep OPTIONS (index 'regress_es_deep', fetch_size '2500',
                          batch_size '3000', refresh 'true');

-- 12,000 documents through the transaction buffer: 4 _bulk requests at COMMIT.
EXPLAIN (COSTS OFF)
  INSERT INTO deep SELECT 'd' || g, g, 'g' || (g % 3), 'label number ' || g
    FROM generate_series(1, 12000) g;
INSERT INTO deep SELECT 'd' || g, g, 'g' || (g % 3), 'label number ' || g
  FROM generate_series(1, 12000) g;

-- A full scan is not bounded by max_result_window.
SELECT count(*), sum(n), count(DISTINCT _id) FROM (SELECT _id, n FROM deep OFFSET 0) s;
SELECT count(*) FROM deep;
SELECT count(*) FROM deep WHERE grp = 'g1' AND n > 6000;
SELECT count(*), min(n), max(n) FROM deep WHERE grp = 'g2' AND label IS NOT NULL;

-- Sorted and deep: LIMIT + OFFSET over 10000 pages with search_after.
EXPLAIN (VERBOSE, COSTS OFF) SELECT _id, n FROM deep ORDER BY n DESC OFFSET 11995 LIMIT 10;
SELECT _id, n FROM deep ORDER BY n DESC OFFSET 11995 LIMIT 10;
SELECT n FROM deep WHERE grp = 'g0' ORDER BY n LIMIT 3;

-- A large UPDATE and DELETE in one transaction.
BEGIN;
UPDATE deep SET label = 'changed' WHERE grp = 'g1';
DELETE FROM deep WHERE n > 11000;
SELECT count(*) FROM deep WHERE label = 'changed';
COMMIT;
SELECT count(*) FROM deep;
SELECT count(*) FROM deep WHERE grp = 'g1' AND label = 'changed';

DROP FOREIGN TABLE deep;
SELECT pgpoly.elastic_request('es_deep', 'DELETE', '/regress_es_deep') ->> 'acknowledged' AS dropped;
DROP SERVER es_deep;
