--
-- Sync under concurrent sessions: interleavings forced with dblink
-- sessions and lock waits (no sleeps decide an order), then every target
-- is compared with its source.  Redis keys regress_race:* are created and
-- removed here.
--
\getenv redis_port REDIS_PORT
\set VERBOSITY terse
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_race:*' | xargs -r -d '\n' redis-cli -p "$REDIS_PORT" del > /dev/null
CREATE EXTENSION dblink;
CREATE SERVER race_redis FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port :'redis_port');

-- Two more sessions on this database; their backend pids.
SELECT dblink_connect(s, format('host=127.0.0.1 port=%s dbname=%s',
                                current_setting('port'), current_database()))
  FROM unnest(ARRAY['s1', 's2']) s;
SELECT pid AS s1_pid FROM dblink('s1', 'SELECT pg_backend_pid()') AS t(pid int) \gset
SELECT pid AS s2_pid FROM dblink('s2', 'SELECT pg_backend_pid()') AS t(pid int) \gset
-- Wait until backend pid waits for a lock (30 s at most).
CREATE FUNCTION waits_for_lock(pid int) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1..3000 LOOP
    IF EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = waits_for_lock.pid AND NOT l.granted) THEN
      RETURN true;
    END IF;
    PERFORM pg_sleep(0.01);
  END LOOP;
  RETURN false;
END $$;
-- The result of the query sent on conn (its first column of its first row).
CREATE FUNCTION result_of(conn text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  r text;
BEGIN
  SELECT t.r INTO r FROM dblink_get_result(conn) AS t(r text);
  PERFORM * FROM dblink_get_result(conn) AS t(r text);    -- the end of the results
  RETURN r;
END $$;

--
-- create_sync waits for a writer that holds the table; the rows that
-- writer committed before the capture triggers existed are backfilled.
--
CREATE TABLE bf (k int PRIMARY KEY, v text);
CREATE FOREIGN TABLE bf_redis (k text OPTIONS (key 'true'), v text)
  SERVER race_redis OPTIONS (key_prefix 'regress_race:bf:');
INSERT INTO bf VALUES (1, 'before');
SELECT dblink_exec('s1', 'BEGIN');
SELECT dblink_exec('s1', 'INSERT INTO bf VALUES (2, ''committed while create_sync waited'')');
SELECT dblink_send_query('s2', 'SELECT pgpoly.create_sync(''bf'', ''bf'', ''bf_redis'')');
SELECT waits_for_lock(:s2_pid);
SELECT dblink_exec('s1', 'COMMIT');
SELECT result_of('s2') AS backfilled;
SELECT pgpoly.sync_wait('bf');
SELECT * FROM bf_redis ORDER BY k;

--
-- TRUNCATE in a REPEATABLE READ transaction removes rows committed after
-- its snapshot too: their keys are deleted from the target as well.
--
SELECT dblink_exec('s1', 'BEGIN ISOLATION LEVEL REPEATABLE READ');
SELECT * FROM dblink('s1', 'SELECT count(*) FROM bf') AS t(rows_seen bigint);
INSERT INTO bf VALUES (3, 'after the snapshot');
SELECT pgpoly.sync_wait('bf');
SELECT dblink_exec('s1', 'TRUNCATE bf');
SELECT dblink_exec('s1', 'COMMIT');
SELECT pgpoly.sync_wait('bf');
SELECT count(*) AS source_rows, (SELECT count(*) FROM bf_redis) AS target_rows FROM bf;

--
-- Keys that are equal but not identical (numeric 1.0 and 1): an UPDATE
-- from one to the other leaves only the new key in the target.
--
CREATE TABLE nk (k numeric PRIMARY KEY, v text);
CREATE FOREIGN TABLE nk_redis (k text OPTIONS (key 'true'), v text)
  SERVER race_redis OPTIONS (key_prefix 'regress_race:nk:');
SELECT pgpoly.create_sync('nk', 'nk', 'nk_redis');
INSERT INTO nk VALUES (1.0, 'one'), (2, 'two'), (3.50, 'three');
SELECT pgpoly.sync_wait('nk');
UPDATE nk SET k = 1 WHERE k = 1.0;
UPDATE nk SET k = 2.00 WHERE k = 2;
BEGIN;
UPDATE nk SET k = 3.5 WHERE k = 3.50;
UPDATE nk SET v = 'three again' WHERE k = 3.5;
COMMIT;
SELECT pgpoly.sync_wait('nk');
SELECT * FROM nk_redis ORDER BY k;
SELECT k::text, v FROM nk ORDER BY k;

--
-- Concurrent writers of the same keys, in forced interleavings: the target
-- ends as the last committed version of each key.
--
CREATE TABLE kv (k int PRIMARY KEY DEFERRABLE, v text);
CREATE FOREIGN TABLE kv_redis (k text OPTIONS (key 'true'), v text)
  SERVER race_redis OPTIONS (key_prefix 'regress_race:kv:');
SELECT pgpoly.create_sync('kv', 'kv', 'kv_redis', key_column => 'k');
INSERT INTO kv VALUES (1, 'one'), (2, 'two'), (3, 'three');
-- s1 deletes key 1; s2's update waits for it and finds nothing, then s2
-- inserts key 1 again.  The worker delivers s1's delete while s2 is open.
SELECT dblink_exec('s1', 'BEGIN');
SELECT dblink_exec('s1', 'DELETE FROM kv WHERE k = 1');
SELECT dblink_exec('s2', 'BEGIN');
SELECT dblink_send_query('s2', 'UPDATE kv SET v = ''lost update'' WHERE k = 1');
SELECT waits_for_lock(:s2_pid);
SELECT dblink_exec('s1', 'COMMIT');
SELECT result_of('s2');
SELECT dblink_exec('s2', 'INSERT INTO kv VALUES (1, ''inserted again'')');
SELECT pgpoly.sync_wait('kv');
SELECT * FROM kv_redis ORDER BY k;
SELECT dblink_exec('s2', 'COMMIT');
-- s2 updates key 2 first, s1 swaps keys 2 and 3 after it: s1 commits last.
SELECT dblink_exec('s2', 'BEGIN');
SELECT dblink_exec('s2', 'UPDATE kv SET v = ''two by s2'' WHERE k = 2');
SELECT dblink_exec('s1', 'BEGIN');
SELECT dblink_send_query('s1', 'UPDATE kv SET k = 5 - k WHERE k IN (2, 3)');
SELECT waits_for_lock(:s1_pid);
SELECT dblink_exec('s2', 'COMMIT');
SELECT result_of('s1');
SELECT dblink_exec('s1', 'COMMIT');
SELECT pgpoly.sync_wait('kv');
SELECT * FROM kv_redis ORDER BY k;
SELECT count(*) AS differences FROM (
  (SELECT k::text, v FROM kv EXCEPT ALL SELECT k, v FROM kv_redis)
  UNION ALL
  (SELECT k, v FROM kv_redis EXCEPT ALL SELECT k::text, v FROM kv)) d;

-- A prepared transaction's changes are delivered once COMMIT PREPARED runs.
BEGIN;
UPDATE kv SET v = 'prepared' WHERE k = 1;
PREPARE TRANSACTION 'regress_race';
SELECT pgpoly.sync_wait('kv');
SELECT v FROM kv_redis WHERE k = '1';
COMMIT PREPARED 'regress_race';
SELECT pgpoly.sync_wait('kv');
SELECT v FROM kv_redis WHERE k = '1';

--
-- Outbox tables: two writers of one key, the first to write commits last;
-- the store ends with its value (writes queue in commit order).
--
CREATE FOREIGN TABLE ob (k text OPTIONS (key 'true'), v text)
  SERVER race_redis OPTIONS (key_prefix 'regress_race:ob:', write_mode 'outbox');
SELECT dblink_exec('s1', 'BEGIN');
SELECT dblink_exec('s1', 'INSERT INTO ob VALUES (''a'', ''written first, committed last'')');
SELECT dblink_exec('s2', 'BEGIN');
SELECT dblink_exec('s2', 'INSERT INTO ob VALUES (''a'', ''written last, committed first'')');
SELECT dblink_exec('s2', 'COMMIT');
SELECT dblink_exec('s1', 'COMMIT');
SELECT pgpoly.sync_wait('public.ob');
SELECT * FROM ob;

-- The first COMMITs writing two new outbox tables, in opposite orders, make
-- their syncs without a deadlock.  (This session holds both syncs' names
-- until both COMMITs wait, so that they make them at the same time.)
CREATE FOREIGN TABLE ob_x (k text OPTIONS (key 'true'), v text)
  SERVER race_redis OPTIONS (key_prefix 'regress_race:x:', write_mode 'outbox');
CREATE FOREIGN TABLE ob_y (k text OPTIONS (key 'true'), v text)
  SERVER race_redis OPTIONS (key_prefix 'regress_race:y:', write_mode 'outbox');
SELECT dblink_exec('s1', 'BEGIN');
SELECT dblink_exec('s1', 'INSERT INTO ob_x VALUES (''s1'', ''x'')');
SELECT dblink_exec('s1', 'INSERT INTO ob_y VALUES (''s1'', ''y'')');
SELECT dblink_exec('s2', 'BEGIN');
SELECT dblink_exec('s2', 'INSERT INTO ob_y VALUES (''s2'', ''y'')');
SELECT dblink_exec('s2', 'INSERT INTO ob_x VALUES (''s2'', ''x'')');
BEGIN;
INSERT INTO pgpoly.syncs (name, kind, target, key_attnum, target_key_attnum,
                          source_attnums, target_attnums, owner)
  SELECT 'public.' || t, 'outbox', t::regclass, 1, 1, '{}', '{}', current_user::regrole
  FROM unnest(ARRAY['ob_x', 'ob_y']) t;
SELECT dblink_send_query('s1', 'COMMIT'), dblink_send_query('s2', 'COMMIT');
SELECT waits_for_lock(:s1_pid), waits_for_lock(:s2_pid);
ROLLBACK;
SELECT result_of('s1') AS s1, result_of('s2') AS s2;
SELECT pgpoly.sync_wait('public.ob_x'), pgpoly.sync_wait('public.ob_y');
SELECT (SELECT string_agg(k || '=' || v, ' ' ORDER BY k) FROM ob_x) AS x,
       (SELECT string_agg(k || '=' || v, ' ' ORDER BY k) FROM ob_y) AS y;

--
-- Database defaults meant for sessions do not reach the worker: with
-- default_transaction_read_only it could not dequeue (nor record why);
-- the text forms it writes (a timestamptz key into a text key column) are
-- the fixed ones whatever the TimeZone or bytea_output, or a change of
-- TimeZone would leave each key twice in the target.
--
CREATE TABLE tk (k timestamptz PRIMARY KEY, b bytea);
CREATE FOREIGN TABLE tk_redis (k text OPTIONS (key 'true'), b text)
  SERVER race_redis OPTIONS (key_prefix 'regress_race:tk:');
SELECT pgpoly.create_sync('tk', 'tk', 'tk_redis');
INSERT INTO tk VALUES ('2024-01-01 10:00+00', 'hi');
SELECT pgpoly.sync_wait('tk');
CREATE FUNCTION restart_worker() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_terminate_backend(pid) FROM pg_stat_activity
    WHERE backend_type = 'pgpoly sync worker' AND datname = current_database();
  FOR i IN 1..3000 LOOP
    EXIT WHEN NOT pgpoly._sync_worker_running();
    PERFORM pg_sleep(0.01);
  END LOOP;
END $$;
DO $$ BEGIN
  EXECUTE format('ALTER DATABASE %I SET default_transaction_read_only = on', current_database());
  EXECUTE format('ALTER DATABASE %I SET default_transaction_isolation = serializable',
                 current_database());
  EXECUTE format('ALTER DATABASE %I SET timezone = %L', current_database(), 'Asia/Kolkata');
  EXECUTE format('ALTER DATABASE %I SET bytea_output = escape', current_database());
END $$;
SELECT restart_worker();
INSERT INTO kv VALUES (10, 'database defaults');
UPDATE tk SET b = 'hello';
SELECT pgpoly.sync_wait('kv', '10 s'), pgpoly.sync_wait('tk', '10 s');
SELECT v FROM kv_redis WHERE k = '10';
SELECT * FROM tk_redis;
DO $$ BEGIN
  EXECUTE format('ALTER DATABASE %I RESET default_transaction_read_only', current_database());
  EXECUTE format('ALTER DATABASE %I RESET default_transaction_isolation', current_database());
  EXECUTE format('ALTER DATABASE %I RESET timezone', current_database());
  EXECUTE format('ALTER DATABASE %I RESET bytea_output', current_database());
END $$;

-- Clean up.
SELECT dblink_disconnect(s) FROM unnest(ARRAY['s1', 's2']) s;
SELECT pgpoly.drop_sync(name) FROM pgpoly.syncs ORDER BY name;
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_race:*' | xargs -r -d '\n' redis-cli -p "$REDIS_PORT" del > /dev/null
DROP TABLE bf, nk, kv, tk;
DROP SERVER race_redis CASCADE;
DROP FUNCTION waits_for_lock, result_of, restart_worker;
DROP EXTENSION dblink;
