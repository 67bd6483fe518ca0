--
-- write_mode 'outbox': a key whose change the store rejected waits for its
-- retry (parked), and a later change of that key by ANOTHER writer must
-- not be merged into it.  Merged, the rejected change would be delivered
-- as the later writer: with that writer's rights (a change whose writer
-- lost the privilege reaching the store all the same), or ending in the
-- dead letters under the other writer's name.  Each writer's change is
-- delivered, or dead-lettered, on its own, in order per key.  Redis keys
-- regress_opark:* are created and removed here.
--
\getenv redis_port REDIS_PORT
\set VERBOSITY terse
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_opark:*' | xargs -r -d '\n' redis-cli -p "$REDIS_PORT" del > /dev/null

-- The worker's attempts and longest retry delay (read by the worker at
-- start), or their defaults (NULL).
CREATE FUNCTION opark_retries(attempts int, delay_ms int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('ALTER DATABASE %I %s', current_database(),
                 coalesce('SET pgpoly.sync_max_attempts = ' || attempts, 'RESET pgpoly.sync_max_attempts'));
  EXECUTE format('ALTER DATABASE %I %s', current_database(),
                 coalesce('SET pgpoly.sync_max_retry_delay = ' || delay_ms, 'RESET pgpoly.sync_max_retry_delay'));
END $$;
-- Rejected changes are retried quickly and often (no worker runs now:
-- every test drops its syncs).
SELECT opark_retries(1000, 200);

CREATE SERVER opark_redis FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port :'redis_port');
-- Held: nothing listens on port 1 until the writers have committed.
CREATE SERVER opark_held FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port '1', connect_timeout_ms '300');
CREATE FOREIGN TABLE pk (k text OPTIONS (key 'true'), v text, w text)
  SERVER opark_held OPTIONS (key_prefix 'regress_opark:', write_mode 'outbox');
-- What Redis holds.
CREATE FOREIGN TABLE pk_now (k text OPTIONS (key 'true'), v text, w text)
  SERVER opark_redis OPTIONS (key_prefix 'regress_opark:');
INSERT INTO pk_now VALUES ('k', 'v0', 'w0'), ('j', 'v0', 'w0');

-- Writer a may INSERT (until revoked), writer b may INSERT and UPDATE.
CREATE ROLE regress_opark_a;
CREATE ROLE regress_opark_b;
CREATE USER MAPPING FOR regress_opark_a SERVER opark_held
  OPTIONS (password_required 'false');
CREATE USER MAPPING FOR regress_opark_b SERVER opark_held
  OPTIONS (password_required 'false');
GRANT SELECT, INSERT ON pk TO regress_opark_a;
GRANT SELECT, INSERT, UPDATE ON pk TO regress_opark_b;

-- Poll cond (a query as superuser) until it is true (30 s at most).
CREATE FUNCTION opark_until(cond text) RETURNS bool LANGUAGE plpgsql AS $$
DECLARE
  ok bool;
BEGIN
  FOR i IN 1..600 LOOP
    EXECUTE cond INTO ok;
    IF ok THEN
      RETURN true;
    END IF;
    PERFORM pg_sleep(0.05);
  END LOOP;
  RETURN false;
END $$;
-- The queue of pk: each entry's keys, kind, writer, columns, isolation,
-- and whether it waits for an earlier change of its key.
CREATE VIEW opark_queue AS
  SELECT q.keys, q.op, q.userid::text AS writer, q.cols, q.isolated,
         q.not_before IS NOT DISTINCT FROM 'infinity' AS waits
    FROM pgpoly.sync_queue q JOIN pgpoly.syncs s USING (sync_id)
   WHERE s.name = 'public.pk' ORDER BY waits, q.entry_id;

-- a's upsert of k is queued while the store is away; then a's INSERT is
-- revoked, so the store (back now) rejects a's change: k is parked.
SET ROLE regress_opark_a;
INSERT INTO pk VALUES ('k', 'by a', NULL);
RESET ROLE;
SELECT opark_until($$SELECT state = 'retrying' FROM pgpoly.sync_status WHERE name = 'public.pk'$$);
REVOKE INSERT ON pk FROM regress_opark_a;
ALTER SERVER opark_held OPTIONS (SET port :'redis_port');
SELECT opark_until($$SELECT count(*) = 1 FROM opark_queue WHERE isolated AND keys = '{k}'$$);

-- b updates k (and j): b's change of k must not join a's rejected one
-- (delivered as b, a's change would reach the store with b's INSERT).
SET ROLE regress_opark_b;
UPDATE pk SET w = 'by b';
RESET ROLE;
SELECT opark_until($$SELECT NOT EXISTS (SELECT FROM opark_queue WHERE NOT isolated)$$) AS read;
SELECT v, w FROM pk_now WHERE k = 'j';
-- a's change is retried on its own, as a; b's waits behind it.
SELECT opark_until($$SELECT (SELECT attempts FROM pgpoly.sync_queue q JOIN pgpoly.syncs s
  USING (sync_id) WHERE s.name = 'public.pk' AND q.userid = 'regress_opark_a'::regrole) >= 3$$)
  AS retried;
SELECT * FROM pk_now WHERE k = 'k';
SELECT keys, op, writer, cols, isolated, waits FROM opark_queue;

-- a may INSERT again: a's change arrives, then b's update after it.
GRANT INSERT ON pk TO regress_opark_a;
SELECT pgpoly.sync_wait('public.pk');
SELECT * FROM pk_now ORDER BY k;
SELECT count(*) AS dead_letters FROM pgpoly.sync_dead_letters;

--
-- Dead letters.  a's upsert of k is rejected again and parked, b updates
-- k, then a's change runs out of attempts: a's change (and only it) is a
-- dead letter under a's name; b's update is delivered after it, as b.
--
SELECT pgpoly.drop_sync('public.pk');
SELECT opark_until($$SELECT NOT pgpoly._sync_worker_running()$$) AS stopped;
SELECT opark_retries(6, 2000);
UPDATE pk_now SET v = 'v0', w = 'w0';
ALTER SERVER opark_held OPTIONS (SET port '1');
SET ROLE regress_opark_a;
INSERT INTO pk VALUES ('k', 'by a again', NULL);
RESET ROLE;
-- (sync_wait starts a worker: the one this backend started for drop_sync
-- may have come and gone within the second it waits between two starts)
SELECT opark_until($$SELECT NOT pgpoly.sync_wait('public.pk', '0.01 s') AND
  (SELECT state = 'retrying' FROM pgpoly.sync_status WHERE name = 'public.pk')$$);
REVOKE INSERT ON pk FROM regress_opark_a;
ALTER SERVER opark_held OPTIONS (SET port :'redis_port');
SELECT opark_until($$SELECT count(*) = 1 FROM opark_queue WHERE isolated AND keys = '{k}'$$);
SET ROLE regress_opark_b;
UPDATE pk SET w = 'b again' WHERE k = 'k';
RESET ROLE;
SELECT pgpoly.sync_wait('public.pk');
SELECT * FROM pk_now ORDER BY k;
SELECT key, op, payload, writer, attempts, error FROM pgpoly.sync_dead_letters;

-- Clean up.
SELECT pgpoly.drop_sync('public.pk');
SELECT opark_until($$SELECT NOT pgpoly._sync_worker_running()$$) AS stopped;
SELECT opark_retries(NULL, NULL);
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_opark:*' | xargs -r -d '\n' redis-cli -p "$REDIS_PORT" del > /dev/null
DROP VIEW opark_queue;
DROP FUNCTION opark_until, opark_retries;
DROP SERVER opark_redis, opark_held CASCADE;
DROP ROLE regress_opark_a, regress_opark_b;
