--
-- write_mode 'outbox': writes to a foreign table queued at COMMIT and
-- delivered by the sync worker (API.md section 5), for the three wrappers.
-- Every table is checked against a native copy that got the same
-- statements; sync_wait() is the only synchronisation.  A server on port 1
-- (nothing listens there) stands for a store that is down.  Redis keys
-- regress_outbox:*, index regress_outbox_docs and collection
-- pgpoly_rt_outbox are created and removed here.
--
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL
\set VERBOSITY terse
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_outbox:*' | xargs -r redis-cli -p "$REDIS_PORT" del > /dev/null
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_outbox"

-- Rejected changes are retried twice, quickly (read by the worker at start).
DO $$ BEGIN
  EXECUTE format('ALTER DATABASE %I SET pgpoly.sync_max_attempts = 2', current_database());
  EXECUTE format('ALTER DATABASE %I SET pgpoly.sync_max_retry_delay = 300', current_database());
END $$;
-- A worker an earlier test left (its syncs dropped, it leaves shortly) read
-- the settings before the ones above: wait for it to go.
DO $$ BEGIN
  FOR i IN 1..600 LOOP
    EXIT WHEN NOT pgpoly._sync_worker_running();
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;

CREATE SERVER ob_redis FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port :'redis_port');

--
-- The option: an enum value, for hash, json and string tables only.
--
CREATE FOREIGN TABLE bad (key text) SERVER ob_redis OPTIONS (write_mode 'outbx');
CREATE FOREIGN TABLE bad (key text, member text, score float8)
  SERVER ob_redis OPTIONS (table_type 'zset', write_mode 'outbox');
CREATE FOREIGN TABLE bad (key text, idx int, value text)
  SERVER ob_redis OPTIONS (table_type 'list');
ALTER FOREIGN TABLE bad OPTIONS (ADD write_mode 'outbox');
DROP FOREIGN TABLE bad;

CREATE FOREIGN TABLE kv (k text OPTIONS (key 'true'), v text, n int, at timestamptz)
  SERVER ob_redis OPTIONS (key_prefix 'regress_outbox:kv:', write_mode 'outbox');
-- What Redis holds, read through a transactional table on the same keys.
CREATE FOREIGN TABLE kv_now (k text OPTIONS (key 'true'), v text, n int, at timestamptz)
  SERVER ob_redis OPTIONS (key_prefix 'regress_outbox:kv:');
CREATE TABLE kv_copy (k text PRIMARY KEY, v text, n int, at timestamptz);
-- Rows of the native copy missing from Redis and the reverse (0 = equal).
CREATE FUNCTION kv_diff() RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM (
    (SELECT * FROM kv_copy EXCEPT ALL SELECT * FROM kv_now)
    UNION ALL
    (SELECT * FROM kv_now EXCEPT ALL SELECT * FROM kv_copy)) d $$;

EXPLAIN (COSTS OFF) INSERT INTO kv VALUES ('a', 'x', 1, now());
INSERT INTO kv VALUES ('a', 'x', 1, now()) ON CONFLICT DO NOTHING;

--
-- Writes are queued at COMMIT; the transaction reads its own (its buffered
-- writes are overlaid), Redis has nothing until the worker delivers.
--
BEGIN;
INSERT INTO kv SELECT 'k' || i, 'v' || i, i, '2024-01-01 00:00+00' FROM generate_series(1, 20) i;
SELECT count(*) AS read_your_writes, (SELECT count(*) FROM kv_now) AS in_redis FROM kv;
SELECT count(*) AS queued_before_commit FROM pgpoly.sync_queue;
COMMIT;
INSERT INTO kv_copy SELECT 'k' || i, 'v' || i, i, '2024-01-01 00:00+00' FROM generate_series(1, 20) i;
SELECT name, source, target FROM pgpoly.sync_status;
SELECT pgpoly.sync_wait('public.kv');
SELECT kv_diff(), (SELECT count(*) FROM kv_now) AS in_redis;

-- Every kind of write.  UPDATE and DELETE read the rows from Redis when the
-- statement runs; an UPDATE writes only the columns it assigns; a new key
-- moves the row.
UPDATE kv SET n = n * 10 WHERE k IN ('k1', 'k2', 'k3');
UPDATE kv_copy SET n = n * 10 WHERE k IN ('k1', 'k2', 'k3');
DELETE FROM kv WHERE k IN ('k4', 'k5');
DELETE FROM kv_copy WHERE k IN ('k4', 'k5');
UPDATE kv SET k = 'moved' WHERE k = 'k6';
UPDATE kv_copy SET k = 'moved' WHERE k = 'k6';
INSERT INTO kv VALUES ('k7', 'overwritten', NULL, NULL);
UPDATE kv_copy SET v = 'overwritten', n = NULL, at = NULL WHERE k = 'k7';
SELECT pgpoly.sync_wait('public.kv');
SELECT kv_diff();
SELECT * FROM kv_now WHERE k IN ('k1', 'k4', 'k6', 'moved', 'k7') ORDER BY k;

-- ROLLBACK, ROLLBACK TO SAVEPOINT, and a failed statement queue nothing.
BEGIN;
INSERT INTO kv VALUES ('ghost', 'g', 0, NULL);
DELETE FROM kv WHERE k = 'k1';
ROLLBACK;
BEGIN;
UPDATE kv SET v = 'kept' WHERE k = 'k8';
SAVEPOINT s;
DELETE FROM kv WHERE k = 'k8';
INSERT INTO kv VALUES ('ghost', 'g', 0, NULL);
ROLLBACK TO SAVEPOINT s;
SAVEPOINT s2;
UPDATE kv SET n = -1 WHERE k = 'k9';
RELEASE SAVEPOINT s2;
SAVEPOINT s3;
INSERT INTO kv VALUES ('null key', 'x', 1, NULL), (NULL, 'y', 2, NULL);
ROLLBACK TO SAVEPOINT s3;
COMMIT;
UPDATE kv_copy SET v = 'kept' WHERE k = 'k8';
UPDATE kv_copy SET n = -1 WHERE k = 'k9';
SELECT pgpoly.sync_wait('public.kv');
SELECT kv_diff(), (SELECT count(*) FROM kv_now WHERE k IN ('ghost', 'null key')) AS ghosts;

-- Many changes of one key in one transaction end as the last one did.
BEGIN;
INSERT INTO kv VALUES ('churn', 'a', 1, NULL);
UPDATE kv SET v = 'b' WHERE k = 'churn';
DELETE FROM kv WHERE k = 'churn';
INSERT INTO kv VALUES ('churn', 'c', 3, NULL);
UPDATE kv SET n = 30 WHERE k = 'churn';
DELETE FROM kv WHERE k = 'k10';
UPDATE kv SET v = 'after delete' WHERE k = 'k10';     -- reads nothing: deleted above
COMMIT;
INSERT INTO kv_copy VALUES ('churn', 'c', 30, NULL);
DELETE FROM kv_copy WHERE k = 'k10';
SELECT pgpoly.sync_wait('public.kv');
SELECT kv_diff();

-- Values travel in the fixed text form: the writer's settings do not matter.
SET datestyle = 'SQL, DMY';
SET timezone = 'Asia/Kolkata';
INSERT INTO kv VALUES ('time', 'written in IST', 1, '2024-03-01 12:00:00');
RESET datestyle;
RESET timezone;
INSERT INTO kv_copy VALUES ('time', 'written in IST', 1, '2024-03-01 06:30:00+00');
SELECT pgpoly.sync_wait('public.kv');
SELECT kv_diff();

-- Every isolation level queues at COMMIT.
BEGIN ISOLATION LEVEL REPEATABLE READ;
INSERT INTO kv VALUES ('rr', 'repeatable read', 1, NULL);
COMMIT;
BEGIN ISOLATION LEVEL SERIALIZABLE;
INSERT INTO kv VALUES ('ser', 'serializable', 1, NULL);
COMMIT;
INSERT INTO kv_copy VALUES ('rr', 'repeatable read', 1, NULL), ('ser', 'serializable', 1, NULL);
SELECT pgpoly.sync_wait('public.kv');
SELECT kv_diff();

-- sync_wait refuses to wait for changes of its own transaction; PREPARE
-- TRANSACTION is refused as with buffered writes.
BEGIN;
INSERT INTO kv VALUES ('k1', 'x', 1, NULL);
SELECT pgpoly.sync_wait('public.kv');
ROLLBACK;
BEGIN;
INSERT INTO kv VALUES ('k1', 'x', 1, NULL);
PREPARE TRANSACTION 'regress_outbox';
SELECT kv_diff();

--
-- The store is down: COMMIT neither waits nor fails; the changes wait in
-- the queue ('retrying') and arrive once it is back.
--
CREATE SERVER ob_down FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port '1', connect_timeout_ms '500');
CREATE FOREIGN TABLE later (k text OPTIONS (key 'true'), v text)
  SERVER ob_down OPTIONS (key_prefix 'regress_outbox:later:', write_mode 'outbox');
INSERT INTO later SELECT 'l' || i, 'v' || i FROM generate_series(1, 10) i;
INSERT INTO later VALUES ('l1', 'second');
-- Poll the status view until cond holds for a sync (30 s at most).
CREATE FUNCTION sync_until(sync text, cond text) RETURNS bool LANGUAGE plpgsql AS $$
DECLARE
  ok bool;
BEGIN
  FOR i IN 1..600 LOOP
    EXECUTE format('SELECT %s FROM pgpoly.sync_status WHERE name = $1', cond) INTO ok USING sync;
    IF ok THEN
      RETURN true;
    END IF;
    PERFORM pg_sleep(0.05);
  END LOOP;
  RETURN false;
END $$;
SELECT sync_until('public.later', $$state = 'retrying'$$);
SELECT pending, last_error LIKE 'could not connect to Redis server "ob_down"%' AS says_why
  FROM pgpoly.sync_status WHERE name = 'public.later';
SELECT pgpoly.sync_wait('public.later', '0.2 s') AS delivered;
ALTER SERVER ob_down OPTIONS (SET port :'redis_port');
SELECT pgpoly.sync_wait('public.later');
SELECT * FROM later ORDER BY k;

--
-- A change Redis rejects (the key holds a string) goes to the dead letters
-- after its attempts; the other keys flow; sync_retry queues it again.
--
CREATE FOREIGN TABLE kv_str (key text, value text)
  SERVER ob_redis OPTIONS (table_type 'string', key_prefix 'regress_outbox:kv:');
INSERT INTO kv_str VALUES ('poison', 'not a hash');
INSERT INTO kv VALUES ('poison', 'p', 1, NULL), ('fine1', 'f', 1, NULL), ('fine2', 'f', 2, NULL);
SELECT pgpoly.sync_wait('public.kv');
SELECT k, v FROM kv_now WHERE k IN ('fine1', 'fine2') ORDER BY k;
SELECT name, key, op, payload, writer, attempts, error LIKE '%WRONGTYPE%' AS wrongtype
  FROM pgpoly.sync_dead_letters;
SELECT dead_letters FROM pgpoly.sync_status WHERE name = 'public.kv';
DELETE FROM kv_str WHERE key = 'poison';
SELECT pgpoly.sync_retry('public.kv');
SELECT pgpoly.sync_wait('public.kv');
SELECT k, v, n FROM kv_now WHERE k = 'poison';
DELETE FROM kv WHERE k IN ('poison', 'fine1', 'fine2');
SELECT pgpoly.sync_wait('public.kv');
SELECT kv_diff(), (SELECT count(*) FROM pgpoly.sync_dead_letters) AS dead_letters;

--
-- Writers.  A change is delivered with its writer's user mapping and
-- privileges; the trust rule applies when the statement runs.
--
CREATE ROLE regress_outbox_writer;
GRANT USAGE ON SCHEMA pgpoly TO regress_outbox_writer;
GRANT SELECT, INSERT, UPDATE, DELETE ON kv TO regress_outbox_writer;
SET ROLE regress_outbox_writer;
INSERT INTO kv VALUES ('w', 'by writer', 1, NULL);      -- no credential: refused now
RESET ROLE;
CREATE USER MAPPING FOR regress_outbox_writer SERVER ob_redis
  OPTIONS (password_required 'false');
SET ROLE regress_outbox_writer;
INSERT INTO kv VALUES ('w', 'by writer', 1, NULL);
RESET ROLE;
INSERT INTO kv_copy VALUES ('w', 'by writer', 1, NULL);
SELECT pgpoly.sync_wait('public.kv');
SELECT kv_diff();
-- Its privilege revoked before delivery (the store was down meanwhile): its
-- change is rejected, the others flow.
CREATE SERVER ob_held FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port '1', connect_timeout_ms '500');
CREATE FOREIGN TABLE held (k text OPTIONS (key 'true'), v text)
  SERVER ob_held OPTIONS (key_prefix 'regress_outbox:held:', write_mode 'outbox');
GRANT SELECT, INSERT ON held TO regress_outbox_writer;
CREATE USER MAPPING FOR regress_outbox_writer SERVER ob_held
  OPTIONS (password_required 'false');
SET ROLE regress_outbox_writer;
INSERT INTO held VALUES ('w', 'by writer');
RESET ROLE;
INSERT INTO held VALUES ('o', 'by owner');
SELECT sync_until('public.held', $$state = 'retrying'$$);
REVOKE INSERT ON held FROM regress_outbox_writer;
ALTER SERVER ob_held OPTIONS (SET port :'redis_port');
SELECT pgpoly.sync_wait('public.held');
SELECT * FROM held ORDER BY k;
SELECT key, op, payload, writer, error FROM pgpoly.sync_dead_letters;
-- Dead letters are the table owner's: other roles do not see them.
SET ROLE regress_outbox_writer;
SELECT count(*) AS visible_to_writer FROM pgpoly.sync_dead_letters;
SELECT pgpoly.sync_retry('public.held');
RESET ROLE;
DELETE FROM pgpoly.sync_dead_letters;

--
-- Elasticsearch: _id identifies a document; an INSERT without _id gets one
-- at once, kept by every delivery.
--
CREATE SERVER ob_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('ob_es', 'DELETE', '/regress_outbox_docs') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('ob_es', 'PUT', '/regress_outbox_docs',
  '{"mappings": {"properties": {"title": {"type": "text"}, "n": {"type": "long"}}}}')
  ->> 'acknowledged' AS created;
CREATE FOREIGN TABLE docs (_id text, title text, n bigint, _score float4)
  SERVER ob_es OPTIONS (index 'regress_outbox_docs', refresh 'true', write_mode 'outbox');
CREATE FOREIGN TABLE docs_noid (title text)
  SERVER ob_es OPTIONS (index 'regress_outbox_docs', write_mode 'outbox');
INSERT INTO docs_noid VALUES ('no id');
CREATE TABLE docs_copy (_id text PRIMARY KEY, title text, n bigint);
INSERT INTO docs (_id, title, n) SELECT i::text, 'doc ' || i, i FROM generate_series(1, 10) i;
INSERT INTO docs_copy SELECT i::text, 'doc ' || i, i FROM generate_series(1, 10) i;
WITH ins AS (INSERT INTO docs (title, n) VALUES ('auto id', 99) RETURNING _id)
INSERT INTO docs_copy SELECT _id, 'auto id', 99 FROM ins;
SELECT pgpoly.sync_wait('public.docs');
UPDATE docs SET n = n + 100 WHERE _id IN ('1', '2');
UPDATE docs_copy SET n = n + 100 WHERE _id IN ('1', '2');
DELETE FROM docs WHERE _id = '3';
DELETE FROM docs_copy WHERE _id = '3';
UPDATE docs SET title = 'renamed' WHERE _id = '4';
UPDATE docs_copy SET title = 'renamed' WHERE _id = '4';
SELECT pgpoly.sync_wait('public.docs');
SELECT count(*) AS differences FROM (
  (SELECT * FROM docs_copy EXCEPT ALL SELECT _id, title, n FROM docs)
  UNION ALL
  (SELECT _id, title, n FROM docs EXCEPT ALL SELECT * FROM docs_copy)) d;

--
-- Vector store: a wrong dimension is found by the worker and rejected; the
-- other records flow.
--
CREATE SERVER ob_chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE vec (id text, embedding real[], document text, metadata jsonb,
                          _distance float8)
  SERVER ob_chroma OPTIONS (collection 'pgpoly_rt_outbox', create_collection 'true',
                            distance 'l2', write_mode 'outbox');
INSERT INTO vec VALUES ('a', '{1,0,0}', 'alpha', '{"k": 1}'), ('b', '{0,1,0}', 'beta', NULL);
SELECT pgpoly.sync_wait('public.vec');
UPDATE vec SET document = 'alpha 2' WHERE id = 'a';
DELETE FROM vec WHERE id = 'b';
INSERT INTO vec VALUES ('flat', '{1,1}', 'wrong dimension', NULL);
INSERT INTO vec VALUES ('c', '{0,0,1}', 'gamma', NULL);
SELECT pgpoly.sync_wait('public.vec');
SELECT id, embedding, document, metadata FROM vec ORDER BY id;
-- An UPDATE to a wrong dimension is rejected when delivered; sync_retry
-- queues both dead letters again as they were, and they fail again.
UPDATE vec SET embedding = '{1,1}' WHERE id = 'c';
SELECT pgpoly.sync_wait('public.vec');
SELECT name, key, op, payload ->> 'embedding' AS embedding, attempts
  FROM pgpoly.sync_dead_letters ORDER BY key;
SELECT pgpoly.sync_retry('public.vec');
SELECT pgpoly.sync_wait('public.vec');
SELECT name, key, op, payload, attempts FROM pgpoly.sync_dead_letters ORDER BY key;
SELECT id, embedding FROM vec WHERE id = 'c';

SELECT name, source, target, state, pending, dead_letters, applied > 0 AS applied
  FROM pgpoly.sync_status ORDER BY name;

--
-- A source sync's worker delivers as the sync's owner, with the owner's
-- user mapping: a non-superuser owner needs a credential the store asks
-- for, or a superuser's password_required 'false'.  Until then the sync is
-- 'failing' with the reason, and no change is lost or buried.
--
CREATE ROLE regress_outbox_owner;
GRANT USAGE ON SCHEMA pgpoly TO regress_outbox_owner;
CREATE TABLE owned (id int PRIMARY KEY, v text);
ALTER TABLE owned OWNER TO regress_outbox_owner;
CREATE FOREIGN TABLE owned_hash (id text OPTIONS (key 'true'), v text)
  SERVER ob_redis OPTIONS (key_prefix 'regress_outbox:owned:');
GRANT SELECT, INSERT, DELETE ON owned_hash TO regress_outbox_owner;
SET ROLE regress_outbox_owner;
SELECT pgpoly.create_sync('owned', 'owned', 'owned_hash');
INSERT INTO owned VALUES (1, 'one'), (2, 'two');
RESET ROLE;
SELECT sync_until('owned', $$state = 'failing'$$);
SELECT pending, last_error FROM pgpoly.sync_status WHERE name = 'owned';
-- A password Redis does not ask for proves nothing.
CREATE USER MAPPING FOR regress_outbox_owner SERVER ob_redis OPTIONS (password 'made up');
SELECT sync_until('owned', $$last_error LIKE 'server "ob_redis" at 127.0.0.1:% does not ask for a credential; %'$$);
ALTER USER MAPPING FOR regress_outbox_owner SERVER ob_redis
  OPTIONS (DROP password, ADD password_required 'false');
SELECT pgpoly.sync_wait('owned');
SELECT * FROM owned_hash ORDER BY id;
SELECT state, last_error, dead_letters FROM pgpoly.sync_status WHERE name = 'owned';
SELECT pgpoly.drop_sync('owned');
DROP TABLE owned;
DROP FOREIGN TABLE owned_hash;
DROP USER MAPPING FOR regress_outbox_owner SERVER ob_redis;
REVOKE USAGE ON SCHEMA pgpoly FROM regress_outbox_owner;
DROP ROLE regress_outbox_owner;

--
-- Feature store: an online table in write_mode 'outbox'.  put_features and
-- materialize queue their online writes without reading Redis; the worker
-- delivers them newest-wins by event time; get_online_features serves from
-- the offline table while Redis cannot be reached.
--
CREATE SERVER fs_down FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port '1', connect_timeout_ms '500');
CREATE FOREIGN TABLE stats_online (user_id text OPTIONS (key 'true'), clicks int, ctr float8)
  SERVER fs_down OPTIONS (key_prefix 'regress_outbox:fs:', write_mode 'outbox');
SELECT pgpoly.create_feature_view('obv', 'user_id', 'stats_online');
SELECT ftoptions FROM pg_foreign_table WHERE ftrelid = 'pgpoly.obv_serving'::regclass;
-- Redis is down: every put commits; the late event stays offline only.
SELECT pgpoly.put_features('obv', 'u1', '{"clicks": 1, "ctr": 0.1}', '2024-01-01 10:00+00');
SELECT pgpoly.put_features('obv', 'u1', '{"clicks": 3, "ctr": 0.3}', '2024-01-03 10:00+00');
SELECT pgpoly.put_features('obv', 'u1', '{"clicks": 2, "ctr": 0.2}', '2024-01-02 10:00+00');
SELECT pgpoly.put_features('obv', 'u2', '{"clicks": 5, "ctr": 0.5}', '2024-01-01 10:00+00');
SELECT pgpoly.ingest_features('obv', $$SELECT * FROM (VALUES
  ('u4', '2024-01-04 10:00+00'::timestamptz, 40), ('u4', '2024-01-02 10:00+00', 20),
  ('u2', '2023-12-30 10:00+00', 0)) AS v(user_id, event_time, clicks)$$);
SELECT entity, features, event_time, source
  FROM pgpoly.get_online_features('obv', '{u1,u2,u3,u1,u4}');
SELECT o_entity, o_features, o_source FROM pgpoly._get_online_features('obv', '{u2}', NULL);
SELECT sync_until('pgpoly.obv_serving', $$state = 'retrying'$$);
ALTER SERVER fs_down OPTIONS (SET port :'redis_port');
SELECT pgpoly.sync_wait('pgpoly.obv_serving');
SELECT entity, features, event_time, source FROM pgpoly.get_online_features('obv', '{u1,u2,u3,u4}');
-- An older event committed later loses at delivery.
SELECT pgpoly.put_features('obv', 'u2', '{"clicks": 4, "ctr": 0.4}', '2023-12-31 10:00+00');
SELECT pgpoly.put_features('obv', 'u3', '{"clicks": 7, "ctr": 0.7}', '2024-01-05 10:00+00');
SELECT pgpoly.sync_wait('pgpoly.obv_serving');
SELECT entity, features, event_time, source FROM pgpoly.get_online_features('obv', '{u2,u3}');
-- materialize queues the window's newest rows: an older one loses to online.
SELECT pgpoly.materialize('obv', end_time => '2024-01-02 12:00+00');
SELECT pgpoly.sync_wait('pgpoly.obv_serving');
SELECT entity, features ->> 'clicks' AS clicks, event_time
  FROM pgpoly.get_online_features('obv', '{u1,u2,u3}');
SELECT pgpoly.drop_feature_view('obv', drop_tables => true);

--
-- drop_sync discards an outbox table's queue and dead letters; its next
-- write makes the sync again.
--
SELECT pgpoly.drop_sync('public.vec');
INSERT INTO vec VALUES ('d', '{1,1,1}', 'delta', NULL);
SELECT pgpoly.sync_wait('public.vec');
SELECT id FROM vec ORDER BY id;
SELECT pgpoly.drop_sync(name) FROM pgpoly.syncs ORDER BY name;
DO $$ BEGIN
  FOR i IN 1..600 LOOP
    EXIT WHEN NOT pgpoly._sync_worker_running();
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;

-- Clean up.
DO $$ BEGIN
  EXECUTE format('ALTER DATABASE %I RESET pgpoly.sync_max_attempts', current_database());
  EXECUTE format('ALTER DATABASE %I RESET pgpoly.sync_max_retry_delay', current_database());
END $$;
SELECT pgpoly.elastic_request('ob_es', 'DELETE', '/regress_outbox_docs') ->> 'acknowledged' AS dropped;
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_outbox:*' | xargs -r redis-cli -p "$REDIS_PORT" del > /dev/null
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_outbox"
DROP SERVER ob_redis, ob_down, ob_held, ob_es, ob_chroma, fs_down CASCADE;
DROP TABLE kv_copy, docs_copy;
DROP FUNCTION kv_diff, sync_until;
REVOKE USAGE ON SCHEMA pgpoly FROM regress_outbox_writer;
DROP ROLE regress_outbox_writer;
