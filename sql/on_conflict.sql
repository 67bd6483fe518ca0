--
-- INSERT ... ON CONFLICT on the three stores: DO NOTHING leaves an existing
-- key / document / record untouched and does not count the row (command
-- tag, RETURNING), in write_mode 'immediate' and 'transactional' (where the
-- transaction's own writes conflict too, and the buffered write stays
-- conditional until COMMIT); a conflict target must be the row's identity;
-- DO UPDATE is refused.  Another writer is played by an immediate-mode
-- table on the same keys, whose writes are sent at once.
--
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL
\! for c in regress_oc_v regress_oc_vi; do curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/$c"; done
CREATE SERVER oc_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
-- The same Redis through another server object: another connection, another
-- writer (a table of oc_redis over the same keys would overlay the buffered
-- writes, and could not write their keys at once: features_overlay.sql).
CREATE SERVER oc_redis_other FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
-- Command tags show what was counted.
\set QUIET off

-- ---------------------------------------------------------------- Redis hash
CREATE FOREIGN TABLE oc_h (k text OPTIONS (key 'true'), a int, b text)
  SERVER oc_redis OPTIONS (key_prefix 'regress_oc:h:');
-- The same keys, written at once by another writer; and the raw hash with a
-- field oc_h lacks.
CREATE FOREIGN TABLE oc_h_now (k text OPTIONS (key 'true'), a int, b text, extra text)
  SERVER oc_redis_other OPTIONS (key_prefix 'regress_oc:h:', write_mode 'immediate');
DELETE FROM oc_h_now;
INSERT INTO oc_h_now VALUES ('a', 1, 'one', 'kept');

-- Transactional (default): the existing key is skipped, untouched.
INSERT INTO oc_h VALUES ('a', 2, NULL), ('b', 3, 'three') ON CONFLICT DO NOTHING;
INSERT INTO oc_h VALUES ('a', 2, 'two'), ('c', 4, 'four')
  ON CONFLICT (k) DO NOTHING RETURNING k, a;
SELECT * FROM oc_h_now ORDER BY k;

-- Read-your-writes: rows of this transaction conflict, deleted ones do not.
BEGIN;
INSERT INTO oc_h VALUES ('d', 5, 'five');
INSERT INTO oc_h VALUES ('d', 6, 'six') ON CONFLICT DO NOTHING;
DELETE FROM oc_h WHERE k = 'a';
INSERT INTO oc_h VALUES ('a', 7, 'seven') ON CONFLICT DO NOTHING RETURNING *;
UPDATE oc_h SET b = 'renamed', k = 'e' WHERE k = 'b';
INSERT INTO oc_h VALUES ('b', 8, 'eight'), ('e', 9, 'nine') ON CONFLICT DO NOTHING RETURNING k;
-- Duplicates in one statement: the first wins, as in a native table.
INSERT INTO oc_h VALUES ('f', 10, 'first'), ('f', 11, 'second') ON CONFLICT DO NOTHING;
SELECT * FROM oc_h ORDER BY k;
SELECT count(*) AS sent_yet FROM oc_h_now WHERE k IN ('d', 'f');
COMMIT;
SELECT * FROM oc_h_now ORDER BY k;

-- The buffered write stays conditional: a key another writer creates before
-- COMMIT is not overwritten (the statement had counted the row).
BEGIN;
INSERT INTO oc_h VALUES ('g', 12, 'mine') ON CONFLICT DO NOTHING;
INSERT INTO oc_h_now VALUES ('g', 13, 'theirs', 'x');
COMMIT;
SELECT * FROM oc_h_now WHERE k = 'g';

-- A batch (one round trip for the existence test) and a WITH query.
INSERT INTO oc_h SELECT 'n' || g, g, NULL FROM generate_series(1, 30) g;
INSERT INTO oc_h SELECT 'n' || g, -g, NULL FROM generate_series(21, 40) g ON CONFLICT DO NOTHING;
WITH ins AS (INSERT INTO oc_h SELECT 'n' || g, -g, NULL FROM generate_series(31, 45) g
             ON CONFLICT (k) DO NOTHING RETURNING k)
SELECT count(*) AS inserted FROM ins;
SELECT count(*) AS n, min(a), max(a) FROM oc_h WHERE k LIKE 'n%';

-- Immediate mode: one atomic script per row, sent in the statement.
INSERT INTO oc_h_now VALUES ('a', 0, 'zero', NULL), ('h', 14, 'fourteen', NULL),
  ('h', 15, 'again', NULL) ON CONFLICT DO NOTHING RETURNING k, a;
INSERT INTO oc_h_now SELECT 'n' || g, 0, NULL, NULL FROM generate_series(40, 60) g
  ON CONFLICT DO NOTHING;
SELECT * FROM oc_h_now WHERE k IN ('a', 'h') ORDER BY k;
SELECT count(*) AS n, min(a), max(a) FROM oc_h_now WHERE k LIKE 'n%';
PREPARE oc_ins(text, int) AS INSERT INTO oc_h_now (k, a) VALUES ($1, $2) ON CONFLICT (k) DO NOTHING;
EXECUTE oc_ins('h', 16);
EXECUTE oc_ins('i', 17);
SELECT k, a FROM oc_h_now WHERE k IN ('h', 'i') ORDER BY k;
EXPLAIN (COSTS OFF) INSERT INTO oc_h VALUES ('x', 1, 'x') ON CONFLICT DO NOTHING;

-- Refused: DO UPDATE, a target that is not the key, an arbiter WHERE.
\set VERBOSITY terse
INSERT INTO oc_h VALUES ('a', 1, 'x') ON CONFLICT (k) DO UPDATE SET a = excluded.a;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO oc_h VALUES ('a', 1, 'x') ON CONFLICT (a) DO NOTHING;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO oc_h VALUES ('a', 1, 'x') ON CONFLICT (k, a) DO NOTHING;
INSERT INTO oc_h VALUES ('a', 1, 'x') ON CONFLICT (k) WHERE a > 0 DO NOTHING;
INSERT INTO oc_h VALUES ('a', 1, 'x') ON CONFLICT (k COLLATE "C") DO NOTHING;
\set VERBOSITY default
SELECT * FROM oc_h_now WHERE k = 'a';

-- ---------------------------------------------------------------- string, json
CREATE FOREIGN TABLE oc_s (key text, value text) SERVER oc_redis
  OPTIONS (table_type 'string', key_prefix 'regress_oc:s:', ttl_seconds '1000');
CREATE FOREIGN TABLE oc_s_now (key text, value text, _ttl int) SERVER oc_redis
  OPTIONS (table_type 'string', key_prefix 'regress_oc:s:', write_mode 'immediate');
CREATE FOREIGN TABLE oc_j (key text, x int, y text) SERVER oc_redis
  OPTIONS (table_type 'json', key_prefix 'regress_oc:s:', write_mode 'immediate');
DELETE FROM oc_s_now;
INSERT INTO oc_s_now (key, value) VALUES ('a', 'old');
INSERT INTO oc_s VALUES ('a', 'new'), ('b', 'new') ON CONFLICT DO NOTHING;
-- The skipped key keeps its value and its lack of expiry (SET ... NX EX).
SELECT key, value, _ttl > 0 AS expires FROM oc_s_now ORDER BY key;
INSERT INTO oc_j VALUES ('b', 1, 'y'), ('c', 2, 'z') ON CONFLICT (key) DO NOTHING RETURNING key;
SELECT key, value FROM oc_s_now ORDER BY key;

-- ---------------------------------------------------------------- zset, set
-- A row is one member: the member already in the key's set conflicts.
CREATE FOREIGN TABLE oc_z (key text, member text, score float8) SERVER oc_redis
  OPTIONS (table_type 'zset', key_prefix 'regress_oc:z:', write_mode 'immediate');
DELETE FROM oc_z;
INSERT INTO oc_z VALUES ('z', 'm1', 1);
INSERT INTO oc_z VALUES ('z', 'm1', 100), ('z', 'm2', 2), ('y', 'm1', 3)
  ON CONFLICT (member, key) DO NOTHING RETURNING key, member;
SELECT * FROM oc_z ORDER BY key, member;
BEGIN;
ALTER FOREIGN TABLE oc_z OPTIONS (SET write_mode 'transactional');
INSERT INTO oc_z VALUES ('z', 'm3', 3), ('z', 'm3', 30), ('z', 'm2', 20) ON CONFLICT DO NOTHING;
DELETE FROM oc_z WHERE key = 'z' AND member = 'm1';
INSERT INTO oc_z VALUES ('z', 'm1', 10) ON CONFLICT DO NOTHING;
COMMIT;
SELECT * FROM oc_z ORDER BY key, member;
\set VERBOSITY terse
INSERT INTO oc_z VALUES ('z', 'm9', 9) ON CONFLICT (key) DO NOTHING;
\set VERBOSITY default
CREATE FOREIGN TABLE oc_set (key text, member text) SERVER oc_redis
  OPTIONS (table_type 'set', key_prefix 'regress_oc:set:', ttl_seconds '1000',
           write_mode 'immediate');
CREATE FOREIGN TABLE oc_set_raw (key text, member text, _ttl int) SERVER oc_redis
  OPTIONS (table_type 'set', key_prefix 'regress_oc:set:', write_mode 'immediate');
DELETE FROM oc_set_raw;
INSERT INTO oc_set_raw (key, member) VALUES ('s', 'a');
-- A member skipped leaves the key's TTL alone; one added sets it.
INSERT INTO oc_set VALUES ('s', 'a') ON CONFLICT DO NOTHING;
SELECT key, member, _ttl > 0 AS expires FROM oc_set_raw ORDER BY member;
INSERT INTO oc_set VALUES ('s', 'a'), ('s', 'b') ON CONFLICT DO NOTHING;
SELECT key, member, _ttl > 0 AS expires FROM oc_set_raw ORDER BY member;

-- ---------------------------------------------------------------- list
-- A list element has no identity: ON CONFLICT is refused.
CREATE FOREIGN TABLE oc_l (key text, idx int, value text) SERVER oc_redis
  OPTIONS (table_type 'list', key_prefix 'regress_oc:l:');
\set VERBOSITY terse
INSERT INTO oc_l VALUES ('l', 0, 'x') ON CONFLICT DO NOTHING;
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default

-- ---------------------------------------------------------------- Elasticsearch
CREATE SERVER oc_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('oc_es', 'DELETE', '/regress_oc') IS NOT NULL AS cleaned;
CREATE FOREIGN TABLE oc_e (_id text, title text, n int) SERVER oc_es
  OPTIONS (index 'regress_oc', refresh 'true');
CREATE FOREIGN TABLE oc_e_now (_id text, title text, n int) SERVER oc_es
  OPTIONS (index 'regress_oc', refresh 'true', write_mode 'immediate');
INSERT INTO oc_e_now VALUES ('a', 'old', 1);
-- Immediate: "create" actions; the 409 items are the rows skipped.
INSERT INTO oc_e_now VALUES ('a', 'new', 2), ('b', 'bee', 3), ('b', 'again', 4)
  ON CONFLICT DO NOTHING RETURNING _id, title;
-- No _id: a new random id, never a conflict.
INSERT INTO oc_e_now (title, n) VALUES ('auto', 5) ON CONFLICT DO NOTHING;
SELECT _id, title, n FROM oc_e_now WHERE _id IN ('a', 'b') ORDER BY _id;
-- Transactional: _mget (real time) plus the transaction's writes.
BEGIN;
INSERT INTO oc_e VALUES ('a', 'x', 0), ('c', 'sea', 6) ON CONFLICT (_id) DO NOTHING RETURNING _id;
INSERT INTO oc_e VALUES ('c', 'x', 0) ON CONFLICT DO NOTHING;
DELETE FROM oc_e WHERE _id = 'b';
INSERT INTO oc_e VALUES ('b', 'bee again', 7) ON CONFLICT DO NOTHING;
INSERT INTO oc_e VALUES ('d', 'mine', 8) ON CONFLICT DO NOTHING;
INSERT INTO oc_e_now VALUES ('d', 'theirs', 9);
SELECT _id, title, n FROM oc_e WHERE _id <> 'a' AND title <> 'auto' ORDER BY _id;
COMMIT;
-- 'd' was created by the other writer before COMMIT: its create was skipped.
SELECT _id, title, n FROM oc_e_now WHERE title <> 'auto' ORDER BY _id;
INSERT INTO oc_e SELECT 'n' || g, 't', g FROM generate_series(1, 12) g;
INSERT INTO oc_e SELECT 'n' || g, 't', -g FROM generate_series(10, 20) g ON CONFLICT DO NOTHING;
SELECT count(*), min(n), max(n) FROM oc_e WHERE _id LIKE 'n%' AND title = 't';  -- (not the 'auto' row: its random _id may start with n)
\set VERBOSITY terse
INSERT INTO oc_e VALUES ('a', 'x', 0) ON CONFLICT (title) DO NOTHING;
INSERT INTO oc_e VALUES ('a', 'x', 0) ON CONFLICT (_id) DO UPDATE SET n = 1;
\echo :LAST_ERROR_SQLSTATE
CREATE FOREIGN TABLE oc_e_noid (title text) SERVER oc_es OPTIONS (index 'regress_oc');
INSERT INTO oc_e_noid VALUES ('x') ON CONFLICT DO NOTHING;
\set VERBOSITY default
SELECT pgpoly.elastic_request('oc_es', 'DELETE', '/regress_oc') IS NOT NULL AS cleaned;

-- ---------------------------------------------------------------- vector
CREATE SERVER oc_chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE oc_v (id text, embedding real[], document text) SERVER oc_chroma
  OPTIONS (collection 'regress_oc_v', create_collection 'true', distance 'l2');
CREATE FOREIGN TABLE oc_v_now (id text, embedding real[], document text) SERVER oc_chroma
  OPTIONS (collection 'regress_oc_v', create_collection 'true', distance 'l2',
           write_mode 'immediate');
INSERT INTO oc_v_now VALUES ('a', '{1,0,0}', 'old');
-- Immediate: existing ids are skipped; the others are added (Chroma /add
-- never overwrites a record).
INSERT INTO oc_v_now VALUES ('a', '{9,9,9}', 'new'), ('b', '{0,1,0}', 'bee'),
  ('b', '{0,2,0}', 'again') ON CONFLICT DO NOTHING RETURNING id, document;
SELECT id, embedding, document FROM oc_v_now ORDER BY id;
-- Transactional, with the transaction's own writes and another writer.
BEGIN;
INSERT INTO oc_v VALUES ('a', '{9,9,9}', 'x'), ('c', '{0,0,1}', 'sea')
  ON CONFLICT (id) DO NOTHING RETURNING id;
INSERT INTO oc_v VALUES ('c', '{9,9,9}', 'x') ON CONFLICT DO NOTHING;
DELETE FROM oc_v WHERE id = 'b';
INSERT INTO oc_v VALUES ('b', '{0,3,0}', 'bee again') ON CONFLICT DO NOTHING;
INSERT INTO oc_v VALUES ('d', '{1,1,0}', 'mine') ON CONFLICT DO NOTHING;
INSERT INTO oc_v_now VALUES ('d', '{1,1,1}', 'theirs');
SELECT id, document FROM oc_v ORDER BY id;
COMMIT;
SELECT id, embedding, document FROM oc_v_now ORDER BY id;
\set VERBOSITY terse
INSERT INTO oc_v VALUES ('a', '{1,0,0}', 'x') ON CONFLICT (document) DO NOTHING;
INSERT INTO oc_v VALUES ('a', '{1,0,0}', 'x') ON CONFLICT (id) DO UPDATE SET document = 'y';
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default

\! for c in regress_oc_v; do curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/$c"; done
DELETE FROM oc_h_now;
DELETE FROM oc_s_now;
DELETE FROM oc_z;
DELETE FROM oc_set_raw;
DROP SERVER oc_redis_other CASCADE;
DROP SERVER oc_redis, oc_es, oc_chroma CASCADE;
