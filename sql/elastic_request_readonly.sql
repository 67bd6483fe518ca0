--
-- pgpoly.elastic_request in a read-only transaction (SET TRANSACTION READ
-- ONLY, default_transaction_read_only; a hot standby is read-only the same
-- way): a request that reads (GET, HEAD, a POST to a search endpoint, the
-- close of a point in time) is sent; any other is refused with SQLSTATE
-- 25006 before anything reaches the cluster, as every write of a foreign
-- table is.  Afterwards the cluster shows that no refused request was sent.
-- Indices regress_ro and regress_ro_new are created and removed here.
--
\getenv es_url ES_URL
\set VERBOSITY terse

CREATE SERVER ro_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('ro_es', 'DELETE', '/regress_ro') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('ro_es', 'DELETE', '/regress_ro_new') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('ro_es', 'PUT', '/regress_ro',
  '{"mappings": {"properties": {"n": {"type": "long"}}}}') ->> 'acknowledged' AS created;
CREATE FOREIGN TABLE ro (_id text, n bigint) SERVER ro_es
  OPTIONS (index 'regress_ro', refresh 'true');
INSERT INTO ro VALUES ('1', 1), ('2', 2);

-- Sends one request; 'ok', or the error's SQLSTATE and message.
CREATE FUNCTION pg_temp.ro_try(method text, path text, body jsonb DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text;
    msg text;
BEGIN
    PERFORM pgpoly.elastic_request('ro_es', method, path, body);
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    RETURN st || ': ' || msg;
END $$;

BEGIN;
SET TRANSACTION READ ONLY;
SELECT m, p, pg_temp.ro_try(m, p, b::jsonb) AS result
FROM (VALUES
  -- reads
  ('GET', '/regress_ro/_search', NULL),
  ('HEAD', '/regress_ro', NULL),
  ('GET', '/regress_ro/_mapping', NULL),
  ('POST', '/regress_ro/_search', '{"query": {"match_all": {}}}'),
  ('POST', '/regress_ro/_count', '{"query": {"match_all": {}}}'),
  ('POST', '/_all/_count', NULL),
  ('POST', '/regress_ro/_mget', '{"ids": ["1"]}'),
  ('POST', '/%72egress_ro/_count?q=n:1', NULL),
  ('GET', '/regress_ro/_doc/a%2Fb', NULL),
  ('GET', '/regress_ro/_doc/_refresh', NULL),
  ('DELETE', '/_search/scroll', '{"scroll_id": "regress_ro_none"}'),
  ('GET', '/regress_ro/_doc/1?refresh=false&realtime=true', NULL),
  ('GET', '/regress_ro/_doc/1?_source=refresh', NULL),
  -- writes: refused
  ('PUT', '/regress_ro_new', '{}'),
  ('PUT', '/regress_ro/_doc/2?refresh=true', '{"n": 20}'),
  ('POST', '/regress_ro/_doc?refresh=true', '{"n": 3}'),
  ('DELETE', '/regress_ro/_doc/1?refresh=true', NULL),
  ('DELETE', '/regress_ro', NULL),
  ('POST', '/_bulk?refresh=true', NULL),
  ('POST', '/regress_ro/_delete_by_query?refresh=true', '{"query": {"match_all": {}}}'),
  ('POST', '/regress_ro/_refresh', NULL),
  ('POST', '/regress_ro', NULL),
  ('POST', '/_all', NULL),
  ('PATCH', '/regress_ro/_search', NULL),
  ('DELETE', '/regress_ro/_search', NULL),
  -- a write behind a search endpoint: dot segments (libcurl resolves
  -- them), an encoded "_" or "/", a fragment
  ('POST', '/regress_ro/_search/../_doc?refresh=true', '{"n": 4}'),
  ('POST', '/regress_ro/_search/%2E%2E/_doc?refresh=true', '{"n": 5}'),
  ('POST', '/%5Fsearch/regress_ro/_doc?refresh=true', '{"n": 6}'),
  ('POST', '/regress_ro%2F_search/_doc?refresh=true', '{"n": 7}'),
  ('POST', '/regress_ro/_doc#/_search', '{"n": 8}'),
  -- GET and DELETE routes that change the cluster: a refresh or flush
  -- (Elasticsearch takes GET for both), OpenSearch's search pipelines
  -- (DELETE /_search/pipeline/<id>), also behind dot segments or an
  -- encoded "_"
  ('GET', '/regress_ro/_refresh', NULL),
  ('GET', '/_refresh', NULL),
  ('GET', '/regress_ro/_flush', NULL),
  ('GET', '/_flush/synced', NULL),
  ('GET', '/_cache/clear', NULL),
  ('GET', '/regress_ro/_search/../_refresh', NULL),
  ('GET', '/regress_ro/%5Frefresh', NULL),
  ('HEAD', '/regress_ro/_refresh', NULL),
  ('DELETE', '/_search/pipeline/regress_ro_pipe', NULL),
  ('DELETE', '/_search/pipeline/*', NULL),
  ('DELETE', '/_pit/regress_ro', NULL),
  ('DELETE', '/_search/../regress_ro', NULL),
  -- a refresh parameter refreshes the shards before the read
  ('GET', '/regress_ro/_doc/1?refresh', NULL),
  ('GET', '/regress_ro/_doc/1?realtime=true&refresh=true', NULL),
  ('POST', '/regress_ro/_mget?%72efresh=1', '{"ids": ["1"]}'),
  ('GET', '/regress_ro/_doc/1?refresh=', NULL),
  -- a route with an index name where the path has a search endpoint or
  -- an index expression starting with "_": POST /_search/_bulk is a bulk
  -- request whose actions name their index, GET /_all,idx/_refresh a
  -- refresh of idx
  ('POST', '/_search/_bulk', '{"delete": {"_index": "regress_ro", "_id": "1"}}'),
  ('POST', '/_count/_bulk', '{"delete": {"_index": "regress_ro", "_id": "1"}}'),
  ('POST', '/_search/x/_bulk', '{"delete": {"_index": "regress_ro", "_id": "1"}}'),
  ('POST', '/regress_ro/_search/_doc', '{"n": 9}'),
  ('POST', '/_mget/_update_by_query', NULL),
  ('GET', '/_all,regress_ro/_refresh', NULL),
  ('GET', '/_x*,regress_ro/_flush', NULL),
  ('GET', '/_search/_refresh', NULL),
  ('HEAD', '/_count/_cache/clear', NULL),
  -- reads still: the sub-routes of the search endpoints, index lists
  ('POST', '/_search/template', '{"source": {"query": {"match_all": {}}}}'),
  ('POST', '/regress_ro/_msearch/template', NULL),
  ('POST', '/regress_ro/_validate/query', '{"query": {"match_all": {}}}'),
  ('POST', '/regress_ro/_explain/1', '{"query": {"match_all": {}}}'),
  ('POST', '/regress_ro/_search/', '{"query": {"match_all": {}}}'),
  ('POST', '/_all,regress_ro/_count', NULL),
  ('GET', '/regress_ro/_source/_flush', NULL),
  -- POST reads besides searches; their neighbours that write
  ('POST', '/regress_ro/_analyze', '{"text": "a b"}'),
  ('POST', '/regress_ro/_termvectors/1', '{}'),
  ('POST', '/_ingest/pipeline/_simulate', '{"pipeline": {"processors": []}, "docs": []}'),
  ('POST', '/_ingest/pipeline/regress_ro_p/_simulate', '{"docs": []}'),
  ('POST', '/_scripts/painless/_execute', '{"script": {"source": "1"}}'),
  ('POST', '/_render/template', '{"source": "{}"}'),
  ('POST', '/_ingest/pipeline/regress_ro_p', '{"processors": []}'),
  ('POST', '/_scripts/regress_ro_s', '{"script": {"lang": "painless", "source": "1"}}'),
  ('POST', '/regress_ro/_termvectors/1/_update', '{"doc": {"n": 10}}')
) AS r(m, p, b);
COMMIT;

-- A point in time opened and closed in a read-only transaction.
BEGIN READ ONLY;
SELECT pgpoly.elastic_request('ro_es', 'POST', '/regress_ro/_pit?keep_alive=1m') ->> 'id' AS pit
\gset
SELECT pgpoly.elastic_request('ro_es', 'DELETE', '/_pit',
  jsonb_build_object('id', :'pit')) ->> 'succeeded' AS closed;
COMMIT;

-- default_transaction_read_only: the same.
SET default_transaction_read_only = on;
SELECT pg_temp.ro_try('PUT', '/regress_ro_new', '{}') AS put;
SELECT pgpoly.elastic_request('ro_es', 'POST', '/regress_ro/_count') ->> 'count' AS count;
RESET default_transaction_read_only;

-- Nothing refused reached the cluster: the two documents as they were,
-- no new index.
SELECT pgpoly.elastic_request('ro_es', 'POST', '/regress_ro/_refresh') IS NOT NULL AS refreshed;
SELECT * FROM ro ORDER BY _id;
SELECT pgpoly.elastic_request('ro_es', 'GET', '/regress_ro_new') ->> 'status' AS new_index;

-- A read-write transaction sends writes as before.
DROP FOREIGN TABLE ro;
SELECT pgpoly.elastic_request('ro_es', 'DELETE', '/regress_ro') ->> 'acknowledged' AS dropped;
SELECT pgpoly.elastic_request('ro_es', 'DELETE', '/regress_ro_new') IS NOT NULL AS cleaned;
DROP SERVER ro_es;
