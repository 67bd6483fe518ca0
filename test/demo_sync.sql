-- demo_sync.sql: `make demo` — a native table kept in step with a Redis cache
-- and a search index while Redis is stopped and started again.
--
-- test/demo.sh runs this file three times, with -v step=before, down and
-- after; between them it shuts Redis down (saving its data) and starts it
-- again.  REDIS_PORT and ES_URL come from the environment.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset footer off
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
SET client_min_messages = warning;
SELECT :'step' = 'before' AS before, :'step' = 'down' AS down, :'step' = 'after' AS after \gset

\if :before
\echo
\echo '== Keeping stores in sync: one native table, a Redis cache and a search index'
CREATE SERVER demo_sync_redis FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port :'redis_port', connect_timeout_ms '500', timeout_ms '1000');
CREATE SERVER demo_sync_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
\o /dev/null
SELECT pgpoly.elastic_request('demo_sync_es', 'DELETE', '/pgpoly_demo_products');
SELECT pgpoly.elastic_request('demo_sync_es', 'PUT', '/pgpoly_demo_products',
  '{"mappings": {"properties": {"title": {"type": "text"}, "price": {"type": "double"}}}}');
\o
CREATE TABLE demo_products (id int PRIMARY KEY, title text NOT NULL, price numeric(8,2));
CREATE FOREIGN TABLE demo_products_cache (id text OPTIONS (key 'true'), title text, price numeric)
  SERVER demo_sync_redis OPTIONS (table_type 'hash', key_prefix 'demo:product:');
CREATE FOREIGN TABLE demo_products_search (_id text, title text, price numeric, _query text)
  SERVER demo_sync_es OPTIONS (index 'pgpoly_demo_products', refresh 'true');
INSERT INTO demo_products VALUES
  (1, 'espresso machine', 249.00), (2, 'coffee grinder', 89.50), (3, 'milk frother', 39.90);

-- One sync per target; the existing rows are queued first (the backfill).
SELECT pgpoly.create_sync('products_cache', 'demo_products', 'demo_products_cache') AS cache_backfill,
       pgpoly.create_sync('products_search', 'demo_products', 'demo_products_search') AS search_backfill;
-- Writes to the native table are all the application does from now on.
UPDATE demo_products SET price = 229.00 WHERE id = 1;
SELECT pgpoly.sync_wait() AS delivered;
\echo 'Redis and the index follow the table:'
SELECT id, title, price FROM demo_products_cache ORDER BY id;
SELECT _id, title FROM demo_products_search WHERE _query = 'coffee OR espresso' ORDER BY _id;
\echo
\echo '(test/demo.sh now shuts Redis down)'
\endif

\if :down
\echo
\echo '== Redis is down: writers still commit, the changes wait in the outbox'
INSERT INTO demo_products VALUES (4, 'coffee scale', 24.99);
UPDATE demo_products SET title = 'burr coffee grinder' WHERE id = 2;
DELETE FROM demo_products WHERE id = 3;
SELECT pgpoly.sync_wait('products_search') AS search_delivered,
       pgpoly.sync_wait('products_cache', '3 s') AS cache_delivered;
SELECT name, state, pending, lag > interval '0' AS lagging, dead_letters,
       left(last_error, 60) AS last_error
  FROM pgpoly.sync_status ORDER BY name;
\echo 'The index is already up to date:'
SELECT _id, title FROM demo_products_search WHERE _query = 'coffee' ORDER BY _id;
\echo
\echo '(test/demo.sh now starts Redis again)'
\endif

\if :after
\echo
\echo '== Redis is back: the worker delivers what waited, nothing is lost'
SELECT pgpoly.sync_wait('products_cache', '60 s') AS delivered;
SELECT id, title, price FROM demo_products_cache ORDER BY id;
\echo 'Rows that differ between the table and the cache (none):'
SELECT id::text, title, price FROM demo_products
EXCEPT SELECT id, title, price FROM demo_products_cache;
SELECT name, state, pending, lag, applied, dead_letters FROM pgpoly.sync_status ORDER BY name;
\echo 'The worker logged when Redis went away and when it came back (server log).'

-- Clean up.
SELECT pgpoly.drop_sync('products_cache'), pgpoly.drop_sync('products_search') \gset
DELETE FROM demo_products_cache;
\o /dev/null
SELECT pgpoly.elastic_request('demo_sync_es', 'DELETE', '/pgpoly_demo_products');
\o
DROP TABLE demo_products;
DROP SERVER demo_sync_redis, demo_sync_es CASCADE;
\endif
