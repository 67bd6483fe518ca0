--
-- The sync worker exits when its database has no sync left; a write queued
-- right after that (a new sync within a second of the last worker start
-- from this session) must start a new worker.  It used to be throttled to
-- one start a second per session, so the change stayed queued until some
-- later write or sync_wait() came by.  Nothing here calls sync_wait().
-- Redis keys regress_srestart:* are created and removed here.
--
\getenv redis_port REDIS_PORT
\set VERBOSITY terse
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_srestart:*' | xargs -r -d '\n' redis-cli -p "$REDIS_PORT" del > /dev/null

CREATE SERVER srestart_redis FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER srestart_redis;
CREATE FOREIGN TABLE sr (k text OPTIONS (key 'true'), v text)
  SERVER srestart_redis OPTIONS (key_prefix 'regress_srestart:', write_mode 'outbox');
CREATE FOREIGN TABLE sr_now (k text OPTIONS (key 'true'), v text)
  SERVER srestart_redis OPTIONS (key_prefix 'regress_srestart:');

-- Poll cond until it is true (20 s at most); never starts a worker.
CREATE FUNCTION srestart_until(cond text) RETURNS bool LANGUAGE plpgsql AS $$
DECLARE
  ok bool;
BEGIN
  FOR i IN 1..400 LOOP
    EXECUTE cond INTO ok;
    IF ok THEN
      RETURN true;
    END IF;
    PERFORM pg_sleep(0.05);
  END LOOP;
  RETURN false;
END $$;

-- No worker runs (every test drops its syncs).
SELECT srestart_until('SELECT NOT pgpoly._sync_worker_running()');

-- A write starts a worker, which delivers it.
INSERT INTO sr VALUES ('a', '1');
SELECT srestart_until($$SELECT EXISTS (SELECT FROM sr_now WHERE k = 'a' AND v = '1')$$);

-- The sync is dropped: the worker, left without syncs, exits.
SELECT count(pgpoly.drop_sync(name)) FROM pgpoly.syncs;
SELECT srestart_until('SELECT NOT pgpoly._sync_worker_running()');

-- A new write at once (its table's sync is made again): a worker starts
-- and delivers it.
INSERT INTO sr VALUES ('b', '2');
SELECT srestart_until($$SELECT EXISTS (SELECT FROM sr_now WHERE k = 'b' AND v = '2')
  AND (SELECT pending FROM pgpoly.sync_status WHERE name = 'public.sr') = 0$$) AS delivered;
SELECT name, pending FROM pgpoly.sync_status ORDER BY name COLLATE "C";

-- Clean up.
SELECT count(pgpoly.drop_sync(name)) FROM pgpoly.syncs;
SELECT srestart_until('SELECT NOT pgpoly._sync_worker_running()');
DROP SERVER srestart_redis CASCADE;
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_srestart:*' | xargs -r -d '\n' redis-cli -p "$REDIS_PORT" del > /dev/null
