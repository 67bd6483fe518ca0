--
-- write_mode 'outbox' against a transactional twin: each outbox table
-- (prefix regress_okeys:o:) gets the same statements as a transactional
-- table on prefix regress_okeys:t:, and after sync_wait() Redis must hold
-- the same rows under both prefixes.  Keys whose type's equality is not
-- identity (numeric 1.0 = 1.00, float8 0 = -0, interval, citext, a
-- nondeterministic collation), writers' settings, triggers, generated
-- columns and changes composed into a row of NULLs.  Redis keys
-- regress_okeys:* are created and removed here.
--
\getenv redis_port REDIS_PORT
\set VERBOSITY terse
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_okeys:*' | xargs -r -d '\n' redis-cli -p "$REDIS_PORT" del > /dev/null
CREATE EXTENSION citext;
CREATE COLLATION okeys_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE SERVER okeys_redis FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port :'redis_port');

-- What Redis holds under each prefix, keys as text ("table:key").
CREATE FOREIGN TABLE o_now (k text OPTIONS (key 'true'), v text, w text, g text)
  SERVER okeys_redis OPTIONS (key_prefix 'regress_okeys:o:');
CREATE FOREIGN TABLE t_now (k text OPTIONS (key 'true'), v text, w text, g text)
  SERVER okeys_redis OPTIONS (key_prefix 'regress_okeys:t:');
-- Rows of one prefix missing from the other (0 = the outbox did as the
-- transactional writes did).
CREATE FUNCTION okeys_diff() RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM (
    (SELECT * FROM o_now EXCEPT ALL SELECT * FROM t_now)
    UNION ALL
    (SELECT * FROM t_now EXCEPT ALL SELECT * FROM o_now)) d $$;
-- An outbox table name_o and its transactional twin name_t: key column k
-- of keytype (and collation coll), v and w text.
CREATE FUNCTION okeys_make(name text, keytype text, coll text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  k text := format('k %s OPTIONS (key %L) %s', keytype, 'true', 'COLLATE ' || quote_ident(coll));
BEGIN
  EXECUTE format('CREATE FOREIGN TABLE %I (%s, v text, w text) '
                 'SERVER okeys_redis OPTIONS (key_prefix %L, write_mode %L)',
                 name || '_o', k, 'regress_okeys:o:' || name || ':', 'outbox');
  EXECUTE format('CREATE FOREIGN TABLE %I (%s, v text, w text) '
                 'SERVER okeys_redis OPTIONS (key_prefix %L)',
                 name || '_t', k, 'regress_okeys:t:' || name || ':');
END $$;
-- Run sql (%s: the table) on the outbox table and on its twin.
CREATE FUNCTION okeys_run(name text, sql text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format(sql, quote_ident(name || '_o'));
  EXECUTE format(sql, quote_ident(name || '_t'));
END $$;

--
-- Keys equal under their type's equality but stored as different keys: a
-- change of one must not reach the others (the delivery compares the keys'
-- stored text, as the transactional write does).
--
SELECT okeys_make('num', 'numeric');
SELECT okeys_run('num', $$INSERT INTO %s VALUES (1.0, 'a'), (1.00, 'b'), (2, 'c'), (2.0, 'd')$$);
SELECT okeys_make('flt', 'float8');
SELECT okeys_run('flt', $$INSERT INTO %s VALUES ('-0', 'neg'), ('0', 'pos'), ('1e300', 'big')$$);
SELECT okeys_make('itv', 'interval');
SELECT okeys_run('itv', $$INSERT INTO %s VALUES ('1 day', 'day'), ('24 hours', 'hours')$$);
SELECT okeys_make('cit', 'citext');
SELECT okeys_run('cit', $$INSERT INTO %s VALUES ('Ab', 'mixed'), ('AB', 'upper'), ('x', 'x')$$);
SELECT okeys_make('nd', 'text', 'okeys_ci');
SELECT okeys_run('nd', $$INSERT INTO %s VALUES ('a', 'lower'), ('A', 'upper'), ('b', 'lower'), ('B', 'upper')$$);
SELECT pgpoly.sync_wait();
SELECT okeys_diff(), count(*) AS keys FROM o_now;

SELECT okeys_run('num', $$UPDATE %s SET v = 'one only' WHERE k::text = '1.0'$$);
SELECT okeys_run('num', $$DELETE FROM %s WHERE k::text = '2.0'$$);
SELECT okeys_run('flt', $$UPDATE %s SET w = 'negative zero' WHERE k::text = '-0'$$);
SELECT okeys_run('flt', $$DELETE FROM %s WHERE k::text = '0'$$);
SELECT okeys_run('itv', $$DELETE FROM %s WHERE extract(day FROM k) = 0$$);   -- 24 hours
SELECT okeys_run('itv', $$UPDATE %s SET v = 'a day' WHERE extract(day FROM k) = 1$$);
SELECT okeys_run('cit', $$UPDATE %s SET v = 'changed' WHERE k::text = 'Ab'$$);
SELECT okeys_run('cit', $$UPDATE %s SET k = 'y' WHERE k::text = 'x'$$);
SELECT okeys_run('nd', $$UPDATE %s SET v = 'changed' WHERE k COLLATE "C" = 'a'$$);
SELECT okeys_run('nd', $$DELETE FROM %s WHERE k COLLATE "C" = 'B'$$);
SELECT okeys_run('nd', $$UPDATE %s SET k = 'c' WHERE k COLLATE "C" = 'b'$$);
SELECT pgpoly.sync_wait();
SELECT okeys_diff();
SELECT k, v, w FROM o_now ORDER BY k COLLATE "C";

--
-- The writer's DateStyle, TimeZone, IntervalStyle and extra_float_digits
-- do not change a key: rows written under different settings are one
-- store key.
--
SELECT okeys_make('tsk', 'timestamptz');
SELECT okeys_make('f8k', 'float8');
SET datestyle = 'SQL, DMY';
SET timezone = 'Asia/Kolkata';
SET intervalstyle = 'sql_standard';
SET extra_float_digits = -10;
SELECT okeys_run('tsk', $$INSERT INTO %s VALUES ('01/03/2024 12:00', 'ist')$$);
SELECT okeys_run('f8k', $$INSERT INTO %s VALUES (0.1::float8 + 0.2::float8, 'short')$$);
RESET ALL;
SELECT okeys_run('tsk', $$INSERT INTO %s VALUES ('2024-03-01 06:30:00+00', 'utc')$$);
SELECT okeys_run('f8k', $$INSERT INTO %s VALUES ('0.30000000000000004', 'exact')$$);
SELECT pgpoly.sync_wait();
SELECT okeys_diff();
SELECT k, v FROM o_now WHERE k LIKE 'tsk:%' OR k LIKE 'f8k:%' ORDER BY k;

--
-- Triggers and generated columns ran with the writer's statement: the
-- delivery writes what they made and runs no trigger again (a BEFORE ROW
-- trigger appending '!' appends once; the audit has one row per change).
--
CREATE TABLE okeys_audit (tbl text, op text, k text, v text);
CREATE FUNCTION okeys_bang() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.v := NEW.v || '!'; RETURN NEW; END $$;
CREATE FUNCTION okeys_log() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO okeys_audit VALUES (TG_TABLE_NAME, TG_OP, NEW.k, NEW.v);
  RETURN NULL;
END $$;
CREATE FUNCTION okeys_triggers(tbl text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('CREATE TRIGGER bang BEFORE INSERT OR UPDATE ON %I '
                 'FOR EACH ROW EXECUTE FUNCTION okeys_bang()', tbl);
  EXECUTE format('CREATE TRIGGER log AFTER INSERT OR UPDATE ON %I '
                 'FOR EACH ROW EXECUTE FUNCTION okeys_log()', tbl);
END $$;
CREATE FOREIGN TABLE gen_o (k text OPTIONS (key 'true'), v text, w text,
                            g text GENERATED ALWAYS AS (upper(v) || coalesce(w, '')) STORED)
  SERVER okeys_redis OPTIONS (key_prefix 'regress_okeys:o:gen:', write_mode 'outbox');
CREATE FOREIGN TABLE gen_t (k text OPTIONS (key 'true'), v text, w text,
                            g text GENERATED ALWAYS AS (upper(v) || coalesce(w, '')) STORED)
  SERVER okeys_redis OPTIONS (key_prefix 'regress_okeys:t:gen:');
SELECT okeys_triggers('gen_o'), okeys_triggers('gen_t');
SELECT okeys_run('gen', $$INSERT INTO %s (k, v) VALUES ('a', 'x'), ('b', 'y')$$);
SELECT pgpoly.sync_wait();          -- an UPDATE reads what Redis has
SELECT okeys_run('gen', $$UPDATE %s SET w = 'w' WHERE k = 'a'$$);
SELECT okeys_run('gen', $$UPDATE %s SET v = 'z' WHERE k = 'b'$$);
SELECT pgpoly.sync_wait();
SELECT okeys_diff();
SELECT k, v, w, g FROM o_now WHERE k LIKE 'gen:%' ORDER BY k;
SELECT tbl, op, k, v FROM okeys_audit ORDER BY tbl, op, k, v;

--
-- An INSERT and an UPDATE to NULLs, composed into one upsert of NULLs: a
-- Redis hash then loses the fields, as the UPDATE would have removed them
-- (a field no column maps stays), instead of the store refusing the row
-- and keeping the old one.
--
SELECT okeys_make('nul', 'text');
SELECT okeys_run('nul', $$INSERT INTO %s VALUES ('a', 'old', 'old'), ('b', 'old', NULL)$$);
SELECT pgpoly.sync_wait();
UPDATE o_now SET g = 'unmapped' WHERE k = 'nul:b';
UPDATE t_now SET g = 'unmapped' WHERE k = 'nul:b';
BEGIN;
SELECT okeys_run('nul', $$INSERT INTO %s VALUES ('a', 'new', NULL), ('b', 'new', NULL)$$);
SELECT okeys_run('nul', $$UPDATE %s SET v = NULL$$);
COMMIT;
SELECT pgpoly.sync_wait();
SELECT okeys_diff();
SELECT k, v, w, g FROM o_now WHERE k LIKE 'nul:%' ORDER BY k;

--
-- Two writers of one key queued together: an upsert by a role that may
-- INSERT, then an update by a role that may only UPDATE one column.  Each
-- change is delivered as its writer (the update in a batch of its own),
-- not composed into one upsert the second role may not INSERT.
--
CREATE ROLE regress_okeys_ins;
CREATE ROLE regress_okeys_upd;
CREATE USER MAPPING FOR regress_okeys_ins SERVER okeys_redis OPTIONS (password_required 'false');
CREATE USER MAPPING FOR regress_okeys_upd SERVER okeys_redis OPTIONS (password_required 'false');
SELECT okeys_make('mw', 'text');
GRANT SELECT, INSERT ON mw_o, mw_t TO regress_okeys_ins;
GRANT SELECT, UPDATE (w) ON mw_o, mw_t TO regress_okeys_upd;
SELECT okeys_run('mw', $$INSERT INTO %s VALUES ('a', 'first', NULL)$$);
SELECT pgpoly.sync_wait();
-- The two roles write mw_t through two connections (two user mappings):
-- the UPDATE's WATCH would see the INSERT sent first at COMMIT as another
-- client's write and fail it with 40001 (README), so mw_t does not watch.
ALTER FOREIGN TABLE mw_t OPTIONS (ADD watch_limit '0');
BEGIN;
SET ROLE regress_okeys_ins;
SELECT okeys_run('mw', $$INSERT INTO %s VALUES ('a', 'second', NULL)$$);
SET ROLE regress_okeys_upd;
SELECT okeys_run('mw', $$UPDATE %s SET w = 'updated'$$);
RESET ROLE;
COMMIT;
SELECT pgpoly.sync_wait();
SELECT okeys_diff();
SELECT k, v, w FROM o_now WHERE k LIKE 'mw:%';

--
-- A table whose write_mode is set from 'outbox' to another while changes
-- are still queued (its store was down): its writes are refused until they
-- are delivered, since they would be delivered after the write and
-- overwrite it.
--
CREATE SERVER okeys_down FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port '1', connect_timeout_ms '300');
CREATE FOREIGN TABLE sw (k text OPTIONS (key 'true'), v text)
  SERVER okeys_down OPTIONS (key_prefix 'regress_okeys:sw:', write_mode 'outbox');
INSERT INTO sw VALUES ('a', 'older');
ALTER FOREIGN TABLE sw OPTIONS (SET write_mode 'transactional');
-- (The store is pointed at Redis in the same transaction as the refused
-- writes, so that the worker cannot deliver the queued change before them.)
BEGIN;
ALTER SERVER okeys_down OPTIONS (SET port :'redis_port');
SAVEPOINT s;
INSERT INTO sw VALUES ('a', 'newer');
ROLLBACK TO s;
UPDATE sw SET v = 'newer';
ROLLBACK TO s;
COMMIT;
SELECT pgpoly.sync_wait('public.sw');
INSERT INTO sw VALUES ('a', 'newer');
SELECT * FROM sw;

SELECT name, state, pending, dead_letters, last_error FROM pgpoly.sync_status
ORDER BY name COLLATE "C";

-- Clean up.
SELECT count(pgpoly.drop_sync(name)) FROM pgpoly.syncs;
DO $$ BEGIN
  FOR i IN 1..600 LOOP
    EXIT WHEN NOT pgpoly._sync_worker_running();
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_okeys:*' | xargs -r -d '\n' redis-cli -p "$REDIS_PORT" del > /dev/null
DROP SERVER okeys_redis, okeys_down CASCADE;
DROP ROLE regress_okeys_ins, regress_okeys_upd;
DROP TABLE okeys_audit;
DROP FUNCTION okeys_diff, okeys_make, okeys_run, okeys_bang, okeys_log, okeys_triggers;
DROP COLLATION okeys_ci;
DROP EXTENSION citext;
