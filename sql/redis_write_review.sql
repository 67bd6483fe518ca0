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

\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_wr:*' | xargs -r redis-cli -p "$REDIS_PORT" del > /dev/null
DROP SERVER wr CASCADE;
DROP TABLE wtn;
DROP FUNCTION wr_trig(), wr_trig_ttl();
