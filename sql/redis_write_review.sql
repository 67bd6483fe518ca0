--
-- pgpoly_redis writes under attack (review of the write path): every table
-- is checked against a native copy that got the same statements.  Redis
-- keys regress_wr:* are created and removed here.
--
\getenv redis_port REDIS_PORT
\set VERBOSITY terse
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_wr:*' | xargs -r redis-cli -p "$REDIS_PORT" del > /dev/null
CREATE SERVER wr FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');

--
-- BEFORE ROW UPDATE triggers may set columns the UPDATE does not assign:
-- they are written too (as postgres_fdw sends every column then), in every
-- write_mode; a column the trigger leaves alone is not written.
--
CREATE FOREIGN TABLE wt (id text OPTIONS (key 'true'), a text, b int, c text)
  SERVER wr OPTIONS (key_prefix 'regress_wr:t:');
CREATE FOREIGN TABLE wti (id text OPTIONS (key 'true'), a text, b int, c text)
  SERVER wr OPTIONS (key_prefix 'regress_wr:t:', write_mode 'immediate');
CREATE TABLE wtn (id text PRIMARY KEY, a text, b int, c text);
CREATE FUNCTION wr_trig() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.c := CASE WHEN NEW.a = 'null-c' THEN NULL ELSE 'trig-' || NEW.a END;
  IF NEW.a = 'move' THEN NEW.id := NEW.id || '-moved'; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER t BEFORE UPDATE ON wt FOR EACH ROW EXECUTE FUNCTION wr_trig();
CREATE TRIGGER t BEFORE UPDATE ON wti FOR EACH ROW EXECUTE FUNCTION wr_trig();
CREATE TRIGGER t BEFORE UPDATE ON wtn FOR EACH ROW EXECUTE FUNCTION wr_trig();
INSERT INTO wt VALUES ('1', 'x', 1, 'c1'), ('2', 'y', 2, 'c2'), ('3', 'z', 3, 'c3'),
  ('4', 'w', 4, 'c4');
INSERT INTO wtn VALUES ('1', 'x', 1, 'c1'), ('2', 'y', 2, 'c2'), ('3', 'z', 3, 'c3'),
  ('4', 'w', 4, 'c4');
UPDATE wt SET a = 'X' WHERE id = '1' RETURNING *;
UPDATE wtn SET a = 'X' WHERE id = '1';
UPDATE wti SET a = 'Y' WHERE id = '2';
UPDATE wtn SET a = 'Y' WHERE id = '2';
BEGIN;
UPDATE wt SET a = 'null-c' WHERE id = '3';
UPDATE wtn SET a = 'null-c' WHERE id = '3';
SELECT * FROM wt EXCEPT SELECT * FROM wtn;   -- read-your-writes
COMMIT;
UPDATE wt SET a = 'move' WHERE id = '4';
UPDATE wtn SET a = 'move' WHERE id = '4';
UPDATE wt SET b = b + 10;                     -- c is set again, to what it is
UPDATE wtn SET b = b + 10;
SELECT * FROM wt ORDER BY id;
(SELECT * FROM wt EXCEPT SELECT * FROM wtn) UNION ALL (SELECT * FROM wtn EXCEPT SELECT * FROM wt);

-- A trigger leaving the read-only _ttl alone is no write to it; one that
-- sets it is refused as an assignment would be.
CREATE FOREIGN TABLE wtt (id text OPTIONS (key 'true'), a text, c text, _ttl bigint)
  SERVER wr OPTIONS (key_prefix 'regress_wr:tt:', ttl_seconds '1000');
CREATE TRIGGER t BEFORE UPDATE ON wtt FOR EACH ROW EXECUTE FUNCTION wr_trig();
INSERT INTO wtt (id, a) VALUES ('1', 'x');
UPDATE wtt SET a = 'X';
SELECT id, a, c, _ttl > 0 AS has_ttl FROM wtt;
CREATE FUNCTION wr_trig_ttl() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW._ttl := 5; RETURN NEW; END $$;
CREATE TRIGGER t2 BEFORE UPDATE ON wtt FOR EACH ROW EXECUTE FUNCTION wr_trig_ttl();
UPDATE wtt SET a = 'Z';
SELECT id, a, c FROM wtt;

-- write_mode 'outbox': the queued change carries the trigger's columns.
CREATE FOREIGN TABLE wto (id text OPTIONS (key 'true'), a text, b int, c text)
  SERVER wr OPTIONS (key_prefix 'regress_wr:o:', write_mode 'outbox');
CREATE TRIGGER t BEFORE UPDATE ON wto FOR EACH ROW EXECUTE FUNCTION wr_trig();
INSERT INTO wto VALUES ('1', 'x', 1, 'c1'), ('2', 'y', 2, 'c2');
SELECT pgpoly.sync_wait('public.wto');
UPDATE wto SET a = 'X' WHERE id = '1';
UPDATE wto SET b = 20 WHERE id = '2';
SELECT pgpoly.sync_wait('public.wto');
CREATE FOREIGN TABLE wto_now (id text OPTIONS (key 'true'), a text, b int, c text)
  SERVER wr OPTIONS (key_prefix 'regress_wr:o:');
SELECT * FROM wto_now ORDER BY id;
-- no sync left behind, and its worker gone (later tests start their own)
SELECT pgpoly.drop_sync('public.wto');
DO $$ BEGIN
  FOR i IN 1..600 LOOP
    EXIT WHEN NOT pgpoly._sync_worker_running();
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;

--
-- An UPDATE that moves a row onto the key (member) of another row of the
-- statement is refused, as a primary key's violation is natively, instead
-- of overwriting that row (a swap used to leave one row of two).
--
CREATE FOREIGN TABLE wsw (id text OPTIONS (key 'true'), a text)
  SERVER wr OPTIONS (key_prefix 'regress_wr:sw:');
CREATE FOREIGN TABLE wswi (id text OPTIONS (key 'true'), a text)
  SERVER wr OPTIONS (key_prefix 'regress_wr:sw:', write_mode 'immediate');
CREATE FOREIGN TABLE wss (id text OPTIONS (key 'true'), a text)
  SERVER wr OPTIONS (table_type 'string', key_prefix 'regress_wr:ss:');
CREATE FOREIGN TABLE wsz (k text OPTIONS (key 'true'), member text, score float8)
  SERVER wr OPTIONS (table_type 'zset', key_prefix 'regress_wr:sz:');
CREATE TABLE wswn (id text PRIMARY KEY, a text);
INSERT INTO wsw VALUES ('1', 'one'), ('2', 'two'), ('3', 'three');
INSERT INTO wss VALUES ('1', 'one'), ('2', 'two');
INSERT INTO wsz VALUES ('z', 'm1', 1), ('z', 'm2', 2);
INSERT INTO wswn VALUES ('1', 'one'), ('2', 'two'), ('3', 'three');
-- (which key the message names depends on the order Redis' SCAN returns)
CREATE FUNCTION wr_state(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || CASE WHEN SQLERRM LIKE 'UPDATE of foreign table % moves % onto key %'
                          THEN ' (moved onto)' ELSE '' END;
END $$;
SELECT wr_state($$UPDATE wsw SET id = CASE id WHEN '1' THEN '2' WHEN '2' THEN '1' ELSE id END$$);
SELECT wr_state($$UPDATE wswi SET id = CASE id WHEN '1' THEN '2' WHEN '2' THEN '1' ELSE id END$$);
SELECT wr_state($$UPDATE wswn SET id = CASE id WHEN '1' THEN '2' WHEN '2' THEN '1' ELSE id END$$);
SELECT wr_state($$UPDATE wss SET id = CASE id WHEN '1' THEN '2' ELSE '1' END$$);
SELECT wr_state($$UPDATE wsz SET member = CASE member WHEN 'm1' THEN 'm2' ELSE 'm1' END$$);
-- one row moved onto another row of the statement that stays
SELECT wr_state($$UPDATE wsw SET id = '3', a = a || '!' WHERE id IN ('1', '3')$$);
SELECT wr_state($$UPDATE wswn SET id = '3', a = a || '!' WHERE id IN ('1', '3')$$);
-- moves onto keys no row holds (then or any more) are fine
UPDATE wsw SET id = '4' WHERE id = '3';
UPDATE wswn SET id = '4' WHERE id = '3';
UPDATE wsw SET id = '3' WHERE id = '2';
UPDATE wswn SET id = '3' WHERE id = '2';
BEGIN;
UPDATE wsw SET id = '2' WHERE id = '1';
UPDATE wswn SET id = '2' WHERE id = '1';
SELECT * FROM wsw ORDER BY id;                -- read-your-writes
COMMIT;
-- the same row met twice (a join), not moved
UPDATE wsw SET a = a || '+' FROM (VALUES ('2'), ('2')) v(x) WHERE v.x = wsw.id;
UPDATE wswn SET a = a || '+' FROM (VALUES ('2'), ('2')) v(x) WHERE v.x = wswn.id;
SELECT * FROM wsw ORDER BY id;
(SELECT * FROM wsw EXCEPT SELECT * FROM wswn) UNION ALL (SELECT * FROM wswn EXCEPT SELECT * FROM wsw);
SELECT * FROM wss ORDER BY id;
SELECT * FROM wsz ORDER BY member;
DROP TABLE wswn;
DROP FUNCTION wr_state(text);

\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_wr:*' | xargs -r redis-cli -p "$REDIS_PORT" del > /dev/null
DROP SERVER wr CASCADE;
DROP TABLE wtn;
DROP FUNCTION wr_trig(), wr_trig_ttl();
