--
-- EXPLAIN (VERBOSE) of INSERT, UPDATE and DELETE shows what each row (or
-- batch) sends to the store, for every Redis table type, Elasticsearch and
-- a vector service; the scans under UPDATE/DELETE show their own requests.
-- An outbox table shows no write: the sync worker delivers it.
--
\set VERBOSITY terse
SET client_min_messages = warning;
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL
CREATE SERVER ew_redis FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER ew_redis;
CREATE FOREIGN TABLE ew_h (id text OPTIONS (key 'true'), n int, s text OPTIONS (field 'str'))
  SERVER ew_redis OPTIONS (key_prefix 'regress_ew:h:', ttl_seconds '60');
CREATE FOREIGN TABLE ew_s (key text, value int)
  SERVER ew_redis OPTIONS (table_type 'string', key_prefix 'regress_ew:s:', ttl_seconds '5');
CREATE FOREIGN TABLE ew_j (key text, a int, b text)
  SERVER ew_redis OPTIONS (table_type 'json', key_prefix 'regress_ew:j:');
CREATE FOREIGN TABLE ew_z (key text, member text, score float8)
  SERVER ew_redis OPTIONS (table_type 'zset', key_prefix 'regress_ew:z:', ttl_seconds '60');
CREATE FOREIGN TABLE ew_set (key text, member text)
  SERVER ew_redis OPTIONS (table_type 'set', key_prefix 'regress_ew:set:');
CREATE FOREIGN TABLE ew_l (key text, idx int, value text)
  SERVER ew_redis OPTIONS (table_type 'list', key_prefix 'regress_ew:l:');
CREATE FOREIGN TABLE ew_o (id text OPTIONS (key 'true'), n int)
  SERVER ew_redis OPTIONS (key_prefix 'regress_ew:o:', write_mode 'outbox');

-- hash: every column written on INSERT (NULL: HDEL), the assigned ones on UPDATE
EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO ew_h VALUES ('a', 1, 'x');
EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO ew_h VALUES ('a', 1, 'x') ON CONFLICT DO NOTHING;
EXPLAIN (VERBOSE, COSTS OFF) UPDATE ew_h SET s = 'y' WHERE n > 0;
EXPLAIN (VERBOSE, COSTS OFF) UPDATE ew_h SET id = id || '2', n = n + 1 WHERE n > 0;
EXPLAIN (VERBOSE, COSTS OFF) UPDATE ew_h SET id = id || '2' WHERE n > 0;
EXPLAIN (VERBOSE, COSTS OFF) DELETE FROM ew_h WHERE n > 0;
-- string and json: the whole value
EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO ew_s VALUES ('a', 1) ON CONFLICT DO NOTHING;
EXPLAIN (VERBOSE, COSTS OFF) UPDATE ew_s SET value = value + 1;
EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO ew_j VALUES ('a', 1, 'b');
EXPLAIN (VERBOSE, COSTS OFF) UPDATE ew_j SET key = 'c' WHERE b = 'x';
-- collections: one member or element per row
EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO ew_z VALUES ('a', 'm', 1);
EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO ew_z VALUES ('a', 'm', 1) ON CONFLICT DO NOTHING;
EXPLAIN (VERBOSE, COSTS OFF) UPDATE ew_z SET score = 2 WHERE score > 1;
EXPLAIN (VERBOSE, COSTS OFF) UPDATE ew_z SET member = 'n' WHERE score > 1;
EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO ew_set VALUES ('a', 'm') ON CONFLICT DO NOTHING;
EXPLAIN (VERBOSE, COSTS OFF) DELETE FROM ew_set WHERE member = 'm';
EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO ew_l (key, value) VALUES ('a', 'v');
EXPLAIN (VERBOSE, COSTS OFF) UPDATE ew_l SET value = 'w' WHERE value = 'v';
EXPLAIN (VERBOSE, COSTS OFF) DELETE FROM ew_l WHERE value = 'v';
-- outbox: queued at COMMIT, no command of the statement's own
EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO ew_o VALUES ('a', 1);

-- Elasticsearch: the _bulk action of each row
CREATE SERVER ew_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER ew_es;
SELECT pgpoly.elastic_request('ew_es', 'PUT', '/regress_ew',
  '{"mappings": {"properties": {"n": {"type": "integer"}}}}') ->> 'acknowledged' AS created;
CREATE FOREIGN TABLE ew_e (_id text, n int) SERVER ew_es OPTIONS (index 'regress_ew');
CREATE FOREIGN TABLE ew_ei (_id text, n int) SERVER ew_es
  OPTIONS (index 'regress_ew', write_mode 'immediate', refresh 'wait_for');
EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO ew_e VALUES ('a', 1);
EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO ew_e VALUES ('a', 1) ON CONFLICT DO NOTHING;
EXPLAIN (VERBOSE, COSTS OFF) UPDATE ew_e SET n = 2 WHERE n = 1;
EXPLAIN (VERBOSE, COSTS OFF) DELETE FROM ew_ei WHERE n = 1;

-- a vector service: the request of each batch
CREATE SERVER ew_vec FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE ew_v (id text, embedding real[], document text)
  SERVER ew_vec OPTIONS (collection 'pgpoly_rt_ew', create_collection 'true', distance 'l2');
EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO ew_v VALUES ('a', '{1,2}', 'd');
EXPLAIN (VERBOSE, COSTS OFF) INSERT INTO ew_v VALUES ('a', '{1,2}', 'd') ON CONFLICT DO NOTHING;
EXPLAIN (VERBOSE, COSTS OFF) UPDATE ew_v SET document = 'e' WHERE id = 'a';
EXPLAIN (VERBOSE, COSTS OFF) DELETE FROM ew_v WHERE id = 'a';

-- a stored generated column is written with the column it is computed
-- from: the Redis Write line names it too (it named the assigned columns
-- only), and the hash gets both
CREATE FOREIGN TABLE ew_g (id text OPTIONS (key 'true'), c int,
    g int GENERATED ALWAYS AS (c * 2) STORED, d int)
  SERVER ew_redis OPTIONS (key_prefix 'regress_ew:g:');
EXPLAIN (VERBOSE, COSTS OFF) UPDATE ew_g SET c = 5 WHERE id = 'x';
INSERT INTO ew_g (id, c, d) VALUES ('x', 1, 0);
UPDATE ew_g SET c = 5 WHERE id = 'x';
\! redis-cli -p $REDIS_PORT hmget regress_ew:g:x c g d
DELETE FROM ew_g;

-- Clean up
SELECT pgpoly.elastic_request('ew_es', 'DELETE', '/regress_ew') ->> 'acknowledged' AS dropped;
DROP SERVER ew_redis, ew_es, ew_vec CASCADE;
