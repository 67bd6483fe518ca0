--
-- Sync into a Redis hash table of source rows whose mapped columns are all
-- NULL: Redis has no empty hashes, so the mapped fields are removed (the
-- key goes with them unless fields the table does not map remain), as an
-- UPDATE setting every column NULL does.  Never a dead letter, never the
-- old values left behind.  Differential: what the hash table reads for
-- each key against the source row after sync_wait.
--
\getenv redis_port REDIS_PORT
\set VERBOSITY terse
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_synn:*' | xargs -r redis-cli -p "$REDIS_PORT" del > /dev/null
DO $$ BEGIN
  EXECUTE format('ALTER DATABASE %I SET pgpoly.sync_max_attempts = 2', current_database());
  EXECUTE format('ALTER DATABASE %I SET pgpoly.sync_max_retry_delay = 500', current_database());
END $$;

CREATE SERVER synn_redis FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port :'redis_port');
CREATE FOREIGN TABLE synn_hash (id text OPTIONS (key 'true'), a text, b int)
  SERVER synn_redis OPTIONS (table_type 'hash', key_prefix 'regress_synn:h:');
CREATE TABLE synn_src (id int PRIMARY KEY, a text, b int, local_only text);
INSERT INTO synn_src VALUES (1, 'one', 1, 'x'), (2, 'two', 2, 'y'), (3, 'three', NULL, 'z');

-- Source rows against what the hash table reads for their keys (a key
-- Redis does not hold reads as NULLs), and hash rows without a source row.
CREATE FUNCTION synn_diff() RETURNS bigint LANGUAGE sql AS $$
  SELECT (SELECT count(*) FROM synn_src s LEFT JOIN synn_hash h ON h.id = s.id::text
          WHERE (s.a, s.b) IS DISTINCT FROM (h.a, h.b))
       + (SELECT count(*) FROM synn_hash h
          WHERE NOT EXISTS (SELECT FROM synn_src s WHERE s.id::text = h.id)) $$;

SELECT pgpoly.create_sync('synn', 'synn_src', 'synn_hash');
SELECT pgpoly.sync_wait('synn');
SELECT * FROM synn_hash ORDER BY id;
SELECT synn_diff();

-- A field the table does not map, written by someone else.
\! redis-cli -p "$REDIS_PORT" hset regress_synn:h:2 extra kept > /dev/null

-- Every mapped column NULL: by UPDATE, by a new row, by an upsert.
UPDATE synn_src SET a = NULL, b = NULL WHERE id IN (1, 2);
INSERT INTO synn_src VALUES (4, NULL, NULL, 'w');
INSERT INTO synn_src VALUES (3, NULL, NULL, NULL)
  ON CONFLICT (id) DO UPDATE SET a = excluded.a, b = excluded.b;
SELECT pgpoly.sync_wait('synn');
SELECT synn_diff();
SELECT * FROM synn_hash ORDER BY id;
\! redis-cli -p "$REDIS_PORT" exists regress_synn:h:1 regress_synn:h:3 regress_synn:h:4
\! redis-cli -p "$REDIS_PORT" hgetall regress_synn:h:2
SELECT state, pending, dead_letters, last_error FROM pgpoly.sync_status WHERE name = 'synn';

-- Values again: the key comes back.
UPDATE synn_src SET b = 10 WHERE id = 1;
SELECT pgpoly.sync_wait('synn');
SELECT synn_diff();
SELECT * FROM synn_hash ORDER BY id;

-- The FDW's own INSERT still refuses a row of only NULL fields.
INSERT INTO synn_hash VALUES ('5', NULL, NULL);

SELECT pgpoly.drop_sync('synn');
DROP TABLE synn_src;
DROP SERVER synn_redis CASCADE;
DROP FUNCTION synn_diff;
DO $$ BEGIN
  EXECUTE format('ALTER DATABASE %I RESET pgpoly.sync_max_attempts', current_database());
  EXECUTE format('ALTER DATABASE %I RESET pgpoly.sync_max_retry_delay', current_database());
END $$;
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_synn:*' | xargs -r redis-cli -p "$REDIS_PORT" del > /dev/null
