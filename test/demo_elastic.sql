-- pgpoly demo: full-text search over model cards in Elasticsearch, joined
-- with the model registry.  Uses ES_URL: a real cluster when the harness was
-- given PGPOLY_ES_URL, otherwise test/es_standin.py.
\getenv es_url ES_URL
\set ON_ERROR_STOP 1

CREATE SERVER demo_search FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');

-- Which Elasticsearch is this?
SELECT CASE WHEN info->>'name' = 'standin' AND info->>'cluster_name' = 'pgpoly-standin'
            THEN 'the test stand-in (test/es_standin.py)'
            ELSE 'a real cluster' END AS search_backend,
       coalesce(info#>>'{version,distribution}', 'elasticsearch') AS distribution,
       info#>>'{version,number}' AS version
  FROM pgpoly.elastic_request('demo_search', 'GET', '/') AS info;

-- A fresh index with an explicit mapping (set-up output hidden).
\o /dev/null
SELECT pgpoly.elastic_request('demo_search', 'DELETE', '/pgpoly_demo_cards');
SELECT pgpoly.elastic_request('demo_search', 'PUT', '/pgpoly_demo_cards', '{"mappings": {"properties": {
    "model": {"type": "keyword"}, "title": {"type": "text"},
    "body": {"type": "text"}, "task": {"type": "keyword"}}}}');
\o

CREATE FOREIGN TABLE demo_cards (
    _id text, model text, title text, body text, task text, _score real, _query text
) SERVER demo_search OPTIONS (index 'pgpoly_demo_cards', refresh 'true');

-- Index a few model cards (one _bulk request at COMMIT).
INSERT INTO demo_cards (_id, model, title, body, task) VALUES
  ('card-churn', 'churn', 'Churn classifier', 'gradient boosted trees predicting customer churn from usage features', 'tabular'),
  ('card-vit', 'vit-small', 'Vision transformer', 'image classification model, a small vision transformer fine-tuned on product photos', 'vision'),
  ('card-detr', 'detector', 'Object detector', 'detects products in shelf images; vision model with a transformer head', 'vision'),
  ('card-bert', 'intent', 'Intent model', 'text classification of support tickets with a transformer encoder', 'nlp');

-- Register the models and versions.
\o /dev/null
SELECT pgpoly.register_model_version('vit-small', 's3://models/vit-small/1');
SELECT pgpoly.register_model_version('vit-small', 's3://models/vit-small/2');
SELECT pgpoly.register_model_version('detector', 's3://models/detector/1');
SELECT pgpoly.register_model_version('intent', 's3://models/intent/1');
\o

\echo '-- Full-text search, pushed down: what Elasticsearch is asked, then the query and its hits:'
EXPLAIN (VERBOSE, COSTS OFF)
SELECT _id, model, round(_score::numeric, 3) AS score FROM demo_cards
 WHERE _query = 'vision AND transformer' ORDER BY _score DESC LIMIT 3;
\set ECHO queries
SELECT _id, model, round(_score::numeric, 3) AS score FROM demo_cards
 WHERE _query = 'vision AND transformer' ORDER BY _score DESC LIMIT 3;
\set ECHO none

\echo '-- The hits joined with the registry: latest version of each matching model:'
SELECT c.model, c.title, v.version AS latest_version, v.source_uri
  FROM (SELECT model, title, _score FROM demo_cards
         WHERE _query = 'vision AND transformer' ORDER BY _score DESC LIMIT 3) c
  JOIN LATERAL (SELECT version, source_uri FROM pgpoly.model_versions mv
                 WHERE mv.model_name = c.model ORDER BY version DESC LIMIT 1) v ON true
 ORDER BY c.model;

\echo '-- Model cards per task (an aggregate over the index):'
SELECT task, count(*) FROM demo_cards GROUP BY task ORDER BY task;

DROP FOREIGN TABLE demo_cards;
\o /dev/null
SELECT pgpoly.elastic_request('demo_search', 'DELETE', '/pgpoly_demo_cards');
\o
DROP SERVER demo_search;
