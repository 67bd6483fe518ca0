--
-- Sync: native tables kept in step with Redis, Elasticsearch and the vector
-- store by the outbox and its worker (API.md section 5).  Every delivery is
-- checked against the source row for row; sync_wait() is the only
-- synchronisation.  Redis keys regress_sync:*, index regress_sync_docs and
-- collections pgpoly_rt_sync and pgpoly_rt_sync_tags are created and removed here.
--
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL
\set VERBOSITY terse
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_sync:*' | xargs -r redis-cli -p "$REDIS_PORT" del > /dev/null
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_sync"
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_sync_tags"

-- Rejected changes are retried twice, quickly (read by the worker at start).
DO $$ BEGIN
  EXECUTE format('ALTER DATABASE %I SET pgpoly.sync_max_attempts = 2', current_database());
  EXECUTE format('ALTER DATABASE %I SET pgpoly.sync_max_retry_delay = 500', current_database());
END $$;

-- Poll the status view until a sync reaches a state (30 s at most).
CREATE FUNCTION sync_state_is(sync text, want text) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1..600 LOOP
    IF (SELECT state FROM pgpoly.sync_status WHERE name = sync) = want THEN
      RETURN true;
    END IF;
    PERFORM pg_sleep(0.05);
  END LOOP;
  RETURN false;
END $$;

CREATE SERVER sync_redis FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port :'redis_port');
CREATE FOREIGN TABLE users_hash (id text OPTIONS (key 'true'), name text, score int,
                                 tags text[], _ttl int)
  SERVER sync_redis OPTIONS (table_type 'hash', key_prefix 'regress_sync:h:');
CREATE FOREIGN TABLE users_json (id text OPTIONS (key 'true'), name text, score int)
  SERVER sync_redis OPTIONS (table_type 'json', key_prefix 'regress_sync:j:');
CREATE FOREIGN TABLE users_str (key text, name text)
  SERVER sync_redis OPTIONS (table_type 'string', key_prefix 'regress_sync:s:');
CREATE FOREIGN TABLE users_zset (key text, member text, score float8)
  SERVER sync_redis OPTIONS (table_type 'zset', key_prefix 'regress_sync:z:');

CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL, score int, tags text[],
                    secret text);
INSERT INTO users VALUES (1, 'ann', 10, '{a,b}', 's1'), (2, 'bob', 20, NULL, 's2'),
                         (3, 'cy', NULL, '{}', 's3');

-- Rows in the source but not in the target and the reverse (0 = in step).
CREATE FUNCTION users_hash_diff() RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM (
    (SELECT id::text, name, score, tags FROM users
     EXCEPT ALL SELECT id, name, score, tags FROM users_hash)
    UNION ALL
    (SELECT id, name, score, tags FROM users_hash
     EXCEPT ALL SELECT id::text, name, score, tags FROM users)) d $$;
CREATE FUNCTION users_str_diff() RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM (
    (SELECT id::text, name FROM users EXCEPT ALL SELECT key, name FROM users_str)
    UNION ALL
    (SELECT key, name FROM users_str EXCEPT ALL SELECT id::text, name FROM users)) d $$;

--
-- create_sync checks its arguments before anything is made.
--
SELECT pgpoly.create_sync('bad', 'users', 'users');
CREATE VIEW users_v AS SELECT * FROM users;
SELECT pgpoly.create_sync('bad', 'users_v', 'users_hash');
SELECT pgpoly.create_sync('bad', 'users', 'users_zset');
CREATE TABLE nopk (a int, name text);
SELECT pgpoly.create_sync('bad', 'nopk', 'users_hash');
SELECT pgpoly.create_sync('bad', 'nopk', 'users_hash', 'zz');
SELECT pgpoly.create_sync('bad', 'nopk', 'users_hash', 'a');
ALTER TABLE nopk ALTER a SET NOT NULL;
SELECT pgpoly.create_sync('bad', 'nopk', 'users_hash', 'a');
CREATE TABLE unrelated (id int PRIMARY KEY, zzz text);
SELECT pgpoly.create_sync('bad', 'unrelated', 'users_hash');
CREATE TABLE wrong_type (id int PRIMARY KEY, name text, score jsonb);
SELECT pgpoly.create_sync('bad', 'wrong_type', 'users_hash');
SELECT pgpoly.create_sync(NULL, 'users', 'users_hash');
SELECT pgpoly.create_sync('', 'users', 'users_hash');
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pgpoly.create_sync('bad', 'users', 'users_hash');
ROLLBACK;
SELECT count(*) AS syncs, (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgpoly_sync_%') AS triggers
  FROM pgpoly.syncs;

--
-- Redis hash, json and string targets.  The backfill queues the existing rows.
--
SELECT pgpoly.create_sync('users_hash', 'users', 'users_hash');
SELECT pgpoly.create_sync('users_json', 'users', 'users_json', backfill => false);
SELECT pgpoly.create_sync('users_str', 'users', 'users_str', key_column => 'id');
SELECT pgpoly.create_sync('users_hash', 'users', 'users_json');
SELECT pgpoly.sync_wait();
SELECT * FROM users_hash ORDER BY id;
SELECT users_hash_diff(), users_str_diff();
SELECT count(*) AS json_rows FROM users_json;	-- no backfill

-- Every kind of write: multi-row INSERT, UPDATE, DELETE, a moved key, upsert.
INSERT INTO users SELECT i, 'u' || i, i, ARRAY['t' || i], NULL FROM generate_series(4, 8) i;
UPDATE users SET score = score + 100 WHERE id IN (1, 4);
DELETE FROM users WHERE id IN (2, 5);
UPDATE users SET id = 30 WHERE id = 3;
INSERT INTO users VALUES (6, 'six', 66, NULL, NULL), (9, 'nine', 9, NULL, NULL)
  ON CONFLICT (id) DO UPDATE SET name = excluded.name, score = excluded.score;
BEGIN;
UPDATE users SET name = 'seven' WHERE id = 7;
SAVEPOINT s;
DELETE FROM users WHERE id = 7;
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT pgpoly.sync_wait('users_hash'), pgpoly.sync_wait('users_str', '30 s'), pgpoly.sync_wait('users_json');
SELECT * FROM users_hash ORDER BY id;
SELECT users_hash_diff(), users_str_diff();
SELECT id, name, score FROM users_json ORDER BY id;
SELECT name, source, target, state, pending, oldest_pending, lag, applied > 0 AS applied,
       dead_letters, last_error, last_applied_at IS NOT NULL AS applied_at
  FROM pgpoly.sync_status ORDER BY name;

-- ROLLBACK leaves no trace: nothing is queued, nothing delivered.
BEGIN;
INSERT INTO users VALUES (99, 'ghost', 0, NULL, NULL);
DELETE FROM users WHERE id = 1;
SELECT sum(pending) > 0 AS queued_inside FROM pgpoly.sync_status;
ROLLBACK;
SELECT sum(pending) AS pending_after_rollback FROM pgpoly.sync_status;

-- sync_wait refuses what it cannot do.
BEGIN;
UPDATE users SET score = 1 WHERE id = 1;
SELECT pgpoly.sync_wait('users_hash');
ROLLBACK;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pgpoly.sync_wait('users_hash');
ROLLBACK;
SELECT pgpoly.sync_wait('nosuch');

-- Keys are queued in a fixed text form: a writer's DateStyle does not matter.
CREATE TABLE events (day date PRIMARY KEY, n int);
CREATE FOREIGN TABLE events_hash (day text OPTIONS (key 'true'), n int)
  SERVER sync_redis OPTIONS (table_type 'hash', key_prefix 'regress_sync:e:');
SELECT pgpoly.create_sync('events', 'events', 'events_hash');
SET datestyle = 'SQL, DMY';
INSERT INTO events VALUES ('01/03/2024', 1), ('02/03/2024', 2);
DELETE FROM events WHERE day = '02/03/2024';
RESET datestyle;
SELECT pgpoly.sync_wait('events');
SELECT * FROM events_hash ORDER BY day;

-- TRUNCATE queues a delete of every row it removes.
TRUNCATE users;
SELECT pgpoly.sync_wait();
SELECT count(*) AS hash_rows, users_hash_diff(), users_str_diff() FROM users_hash;
INSERT INTO users VALUES (1, 'ann', 10, '{a}', NULL), (2, 'bob', 20, NULL, NULL);
SELECT pgpoly.sync_wait();
SELECT users_hash_diff(), users_str_diff();

--
-- A change Redis rejects (the key holds a string) goes to the dead letters
-- after its attempts; the other keys of its batch are delivered.
--
CREATE FOREIGN TABLE hash_as_str (key text, v text)
  SERVER sync_redis OPTIONS (table_type 'string', key_prefix 'regress_sync:h:');
INSERT INTO hash_as_str VALUES ('7', 'not a hash');
INSERT INTO users VALUES (5, 'five', 5, NULL, NULL), (7, 'poison', 7, NULL, NULL),
                         (8, 'eight', 8, NULL, NULL);
SELECT pgpoly.sync_wait('users_hash');
SELECT id, name FROM users_hash ORDER BY id;
SELECT name, key, op, payload, error, attempts FROM pgpoly.sync_dead_letters;
SELECT name, dead_letters, last_error IS NOT NULL AS has_error FROM pgpoly.sync_status
  WHERE name = 'users_hash';
-- Fixed by hand, then retried: delivered from the row as it is now.
DELETE FROM hash_as_str WHERE key = '7';
UPDATE users SET name = 'seven again' WHERE id = 7;
SELECT pgpoly.sync_retry('users_hash');
SELECT pgpoly.sync_wait('users_hash');
SELECT users_hash_diff(), (SELECT count(*) FROM pgpoly.sync_dead_letters) AS dead_letters;
SELECT pgpoly.sync_retry('users_hash');
SELECT pgpoly.sync_retry('nosuch');

--
-- Elasticsearch: the key feeds _id.
--
CREATE SERVER sync_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('sync_es', 'DELETE', '/regress_sync_docs') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('sync_es', 'PUT', '/regress_sync_docs',
  '{"mappings": {"properties": {"title": {"type": "text"}, "n": {"type": "long"}}}}')
  ->> 'acknowledged' AS created;
CREATE FOREIGN TABLE docs_es (_id text, title text, n text, _score float4)
  SERVER sync_es OPTIONS (index 'regress_sync_docs', refresh 'true');
CREATE FOREIGN TABLE docs_es_noid (title text)
  SERVER sync_es OPTIONS (index 'regress_sync_docs');
CREATE TABLE docs (doc_id bigint PRIMARY KEY, title text, n text);
SELECT pgpoly.create_sync('docs_bad', 'docs', 'docs_es_noid');
INSERT INTO docs SELECT i, 'doc ' || i, i::text FROM generate_series(1, 20) i;
SELECT pgpoly.create_sync('docs_es', 'docs', 'docs_es');
UPDATE docs SET title = 'changed' WHERE doc_id <= 3;
DELETE FROM docs WHERE doc_id BETWEEN 10 AND 14;
UPDATE docs SET doc_id = 100 WHERE doc_id = 20;
-- 'abc' does not fit the index's long field n: a mapping conflict.
INSERT INTO docs VALUES (50, 'conflict', 'abc'), (51, 'fine', '51');
SELECT pgpoly.sync_wait('docs_es');
SELECT count(*) AS differences FROM (
  (SELECT doc_id::text, title, n FROM docs WHERE doc_id <> 50
   EXCEPT ALL SELECT _id, title, n FROM docs_es)
  UNION ALL
  (SELECT _id, title, n FROM docs_es
   EXCEPT ALL SELECT doc_id::text, title, n FROM docs)) d;
SELECT _id, title, n FROM docs_es WHERE _id IN ('1', '20', '100', '50', '51') ORDER BY _id;
SELECT name, key, op, payload, attempts, error LIKE '%mapper_parsing_exception%' AS mapping_error
  FROM pgpoly.sync_dead_letters WHERE name = 'docs_es';

--
-- Vector store: the embedding comes from a real[] source column.
--
CREATE SERVER sync_chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE items_vec (id text, embedding real[], document text, metadata jsonb,
                                _distance float8)
  SERVER sync_chroma OPTIONS (collection 'pgpoly_rt_sync', create_collection 'true',
                              distance 'l2');
CREATE TABLE items_noemb (item_id text PRIMARY KEY, document text);
SELECT pgpoly.create_sync('items_bad', 'items_noemb', 'items_vec');
CREATE TABLE items (item_id text PRIMARY KEY, embedding real[] NOT NULL, document text,
                    metadata jsonb);
INSERT INTO items VALUES ('a', '{1,0,0}', 'alpha', '{"k": 1}'), ('b', '{0,1,0}', 'beta', NULL),
                         ('c', '{0,0,1}', NULL, '{"k": "three"}');
SELECT pgpoly.create_sync('items_vec', 'items', 'items_vec');
SELECT pgpoly.sync_wait('items_vec');
UPDATE items SET embedding = '{0.5,0.25,0.125}', document = 'alpha 2' WHERE item_id = 'a';
DELETE FROM items WHERE item_id = 'b';
-- Wrong dimension: rejected by the collection, the others flow.
INSERT INTO items VALUES ('d', '{1,1}', 'flat', NULL), ('e', '{1,1,1}', 'eee', NULL);
SELECT pgpoly.sync_wait('items_vec');
SELECT id, embedding, document, metadata FROM items_vec ORDER BY id;
SELECT count(*) AS differences FROM (
  (SELECT item_id, embedding, document, metadata FROM items WHERE item_id <> 'd'
   EXCEPT ALL SELECT id, embedding, document, metadata FROM items_vec)
  UNION ALL
  (SELECT id, embedding, document, metadata FROM items_vec
   EXCEPT ALL SELECT item_id, embedding, document, metadata FROM items)) d;
SELECT name, key, op, payload, attempts FROM pgpoly.sync_dead_letters WHERE name = 'items_vec';
-- A source column set to NULL removes its key from the record (Chroma
-- merges the keys of an upsert into the record's, so the null is sent).
CREATE FOREIGN TABLE tags_vec (id text, embedding real[], tag text)
  SERVER sync_chroma OPTIONS (collection 'pgpoly_rt_sync_tags', create_collection 'true',
                              distance 'l2');
CREATE TABLE tags (id text PRIMARY KEY, embedding real[] NOT NULL, tag text);
SELECT pgpoly.create_sync('tags_vec', 'tags', 'tags_vec');
INSERT INTO tags VALUES ('t1', '{1,0}', 'red'), ('t2', '{0,1}', 'blue');
SELECT pgpoly.sync_wait('tags_vec');
UPDATE tags SET tag = NULL WHERE id = 't1';
SELECT pgpoly.sync_wait('tags_vec');
SELECT id, tag FROM tags_vec ORDER BY id;

--
-- Privileges: the source's owner with the rights to write the target may
-- create a sync; the worker delivers as that owner; the internal tables are
-- closed to users; dead letters are visible to the owner's role only.
--
CREATE ROLE regress_sync_owner;
CREATE ROLE regress_sync_other;
GRANT USAGE ON SCHEMA pgpoly TO regress_sync_owner, regress_sync_other;
CREATE TABLE owned (id int PRIMARY KEY, name text);
ALTER TABLE owned OWNER TO regress_sync_owner;
GRANT INSERT ON owned TO regress_sync_other;
CREATE FOREIGN TABLE owned_hash (id text OPTIONS (key 'true'), name text)
  SERVER sync_redis OPTIONS (table_type 'hash', key_prefix 'regress_sync:o:');
SET ROLE regress_sync_other;
SELECT pgpoly.create_sync('owned', 'owned', 'owned_hash');
RESET ROLE;
SET ROLE regress_sync_owner;
SELECT pgpoly.create_sync('owned', 'owned', 'owned_hash');
RESET ROLE;
GRANT SELECT, INSERT, DELETE ON owned_hash TO regress_sync_owner;
SET ROLE regress_sync_owner;
SELECT pgpoly.create_sync('owned', 'owned', 'owned_hash', backfill => false);
SELECT count(*) FROM pgpoly.syncs;
INSERT INTO pgpoly.sync_queue (sync_id, keys) VALUES (1, '{1}');
CREATE TRIGGER steal AFTER INSERT ON owned FOR EACH STATEMENT
  EXECUTE FUNCTION pgpoly._sync_capture('1', '1');
RESET ROLE;
SET ROLE regress_sync_other;
SELECT pgpoly.drop_sync('owned');
SELECT pgpoly.sync_retry('owned');
RESET ROLE;
-- The owner lost the right to write the target: the worker does not write
-- it.  (A writer needs no rights on the queue.)
REVOKE INSERT ON owned_hash FROM regress_sync_owner;
SET ROLE regress_sync_other;
INSERT INTO owned VALUES (1, 'one');
RESET ROLE;
SELECT sync_state_is('owned', 'failing');
SELECT pgpoly.sync_wait('owned', '0.2 s') AS delivered;
SELECT last_error, pending FROM pgpoly.sync_status WHERE name = 'owned';
-- Every role sees the sync; only the owner's role its last_error.
SET ROLE regress_sync_other;
SELECT name, state, last_error IS NULL AS error_hidden FROM pgpoly.sync_status
WHERE name = 'owned';
RESET ROLE;
SET ROLE regress_sync_owner;
SELECT last_error IS NOT NULL AS error_shown FROM pgpoly.sync_status WHERE name = 'owned';
RESET ROLE;
SELECT count(*) AS redis_rows FROM owned_hash;
-- Dead letters: rows of other owners are invisible.
INSERT INTO pgpoly.sync_dead_letters (name, key, op, error, attempts, sync_id, owner)
  SELECT name, '1', 'upsert', 'test', 1, sync_id, owner FROM pgpoly.syncs WHERE name = 'owned';
SET ROLE regress_sync_other;
SELECT count(*) AS visible_to_other FROM pgpoly.sync_dead_letters;
-- and sync_status counts only the dead letters the caller may see (it
-- counted every one, the owner's role's or not)
SELECT name, dead_letters FROM pgpoly.sync_status WHERE name = 'owned';
RESET ROLE;
SET ROLE regress_sync_owner;
SELECT name, key FROM pgpoly.sync_dead_letters;
SELECT name, dead_letters FROM pgpoly.sync_status WHERE name = 'owned';
DELETE FROM pgpoly.sync_dead_letters WHERE name = 'owned';
RESET ROLE;
SELECT pgpoly.drop_sync('owned');

-- The capture trigger refuses to feed a sync from another table.
CREATE TABLE decoy (id int PRIMARY KEY);
SELECT sync_id AS users_hash_id FROM pgpoly.syncs WHERE name = 'users_hash' \gset
CREATE TRIGGER decoy AFTER INSERT ON decoy REFERENCING NEW TABLE AS n FOR EACH STATEMENT
  EXECUTE FUNCTION pgpoly._sync_capture(:'users_hash_id', '1');
INSERT INTO decoy VALUES (1);
DROP TABLE decoy;

-- A source dropped behind the sync's back: the sync says so, drop_sync cleans up.
CREATE TABLE doomed (id int PRIMARY KEY, name text);
SELECT pgpoly.create_sync('doomed', 'doomed', 'users_json');
DROP TABLE doomed;
SELECT sync_state_is('doomed', 'failing');
-- (the worker may meet the drop inside its own statement: either message;
-- any other is printed)
SELECT CASE WHEN last_error LIKE 'relation % of a pgpoly sync no longer exists%'
              OR last_error LIKE 'relation "%doomed" does not exist%'
            THEN 'reported' ELSE last_error END AS reported
  FROM pgpoly.sync_status WHERE name = 'doomed';
SELECT pgpoly.drop_sync('doomed');

--
-- drop_sync removes the triggers, the queue and the dead letters; the worker
-- leaves once no sync remains.
--
SELECT pgpoly.drop_sync('nosuch');
-- read-only transactions: refused before anything is looked up (25006)
BEGIN READ ONLY;
SELECT pgpoly.drop_sync('nosuch');
ROLLBACK;
BEGIN READ ONLY;
SELECT pgpoly.sync_retry('nosuch');
ROLLBACK;
BEGIN READ ONLY;
SELECT pgpoly.create_sync('ro', 'users', 'users');
ROLLBACK;
SELECT pgpoly.drop_sync(name) FROM pgpoly.syncs ORDER BY name;
SELECT count(*) AS syncs, (SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgpoly_sync_%') AS triggers,
       (SELECT count(*) FROM pgpoly.sync_queue) AS queued,
       (SELECT count(*) FROM pgpoly.sync_dead_letters) AS dead_letters
  FROM pgpoly.syncs;
DO $$ BEGIN
  FOR i IN 1..600 LOOP
    EXIT WHEN NOT pgpoly._sync_worker_running();
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
SELECT pgpoly._sync_worker_running() AS worker_running;
INSERT INTO users VALUES (3, 'after drop', 0, NULL, NULL);
SELECT count(*) AS queued_after_drop FROM pgpoly.sync_queue;

-- Clean up.
DO $$ BEGIN
  EXECUTE format('ALTER DATABASE %I RESET pgpoly.sync_max_attempts', current_database());
  EXECUTE format('ALTER DATABASE %I RESET pgpoly.sync_max_retry_delay', current_database());
END $$;
SELECT pgpoly.elastic_request('sync_es', 'DELETE', '/regress_sync_docs') ->> 'acknowledged' AS dropped;
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_sync:*' | xargs -r redis-cli -p "$REDIS_PORT" del > /dev/null
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_sync"
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_sync_tags"
DROP TABLE users, events, nopk, unrelated, wrong_type, docs, items, items_noemb, tags, owned CASCADE;
DROP SERVER sync_redis, sync_es, sync_chroma CASCADE;
DROP FUNCTION sync_state_is, users_hash_diff, users_str_diff;
REVOKE USAGE ON SCHEMA pgpoly FROM regress_sync_owner, regress_sync_other;
DROP ROLE regress_sync_owner, regress_sync_other;
