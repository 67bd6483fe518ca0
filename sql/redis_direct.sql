--
-- pgpoly_redis: direct modification.  UPDATE t SET col = <an expression of
-- the row's own key and fields, or the same value for every row> and
-- DELETE FROM t, whose WHERE the Redis scan enforces entirely, run in the
-- scan node: the keys and the columns the expressions read are read, and
-- each key found gets the writes the per-row path would give its row.
-- Differential: the same statements run on
--   dm  (direct),
--   dmr (the same statement with RETURNING, which keeps the per-row path),
--   dmn (a native table),
-- and the three must hold the same rows and report the same row counts.
--
\getenv redis_port REDIS_PORT
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_dm:*' | xargs -r redis-cli -p "$REDIS_PORT" del > /dev/null
CREATE SERVER rdm FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE FOREIGN TABLE dm (id text OPTIONS (key 'true'), n int, s text, t timestamptz)
  SERVER rdm OPTIONS (key_prefix 'regress_dm:a:');
CREATE FOREIGN TABLE dmr (id text OPTIONS (key 'true'), n int, s text, t timestamptz)
  SERVER rdm OPTIONS (key_prefix 'regress_dm:b:');
CREATE TABLE dmn (id text PRIMARY KEY, n int, s text, t timestamptz);
-- Rows that differ between dm and dmr, and between dm and dmn (0, 0: equal).
CREATE FUNCTION dm_diff(OUT per_row bigint, OUT native bigint) LANGUAGE sql AS $$
  SELECT (SELECT count(*) FROM ((TABLE dm EXCEPT ALL TABLE dmr) UNION ALL
                                (TABLE dmr EXCEPT ALL TABLE dm)) d),
         (SELECT count(*) FROM ((TABLE dm EXCEPT ALL TABLE dmn) UNION ALL
                                (TABLE dmn EXCEPT ALL TABLE dm)) d) $$;
-- Run stmt (%s: the table) on the three tables, in one transaction each;
-- the row counts, and whether dm's plan was a direct modification.
CREATE FUNCTION dm_run(stmt text, OUT direct bigint, OUT per_row bigint,
                       OUT native bigint, OUT went_direct bool)
LANGUAGE plpgsql AS $$
DECLARE
  plan text;
BEGIN
  went_direct := false;
  FOR plan IN EXECUTE 'EXPLAIN (COSTS OFF) ' || format(stmt, 'dm') LOOP
    IF plan ~ 'Foreign (Update|Delete) on dm' THEN went_direct := true; END IF;
  END LOOP;
  EXECUTE format(stmt, 'dm');
  GET DIAGNOSTICS direct = ROW_COUNT;
  EXECUTE format(stmt, 'dmr') || ' RETURNING 1';
  GET DIAGNOSTICS per_row = ROW_COUNT;
  EXECUTE format(stmt, 'dmn');
  GET DIAGNOSTICS native = ROW_COUNT;
END $$;
INSERT INTO dm SELECT 'k' || i, i, 's' || i, '2024-01-01 00:00+00'::timestamptz + i * interval '1 hour'
  FROM generate_series(1, 30) i;
INSERT INTO dmr SELECT * FROM dm;
INSERT INTO dmn SELECT * FROM dm;
SELECT * FROM dm_diff();

-- What goes direct, and what EXPLAIN says.
EXPLAIN (VERBOSE, COSTS OFF) UPDATE dm SET n = 7;
EXPLAIN (VERBOSE, COSTS OFF) UPDATE dm SET s = NULL, n = 1 WHERE id = ANY ('{k1,k2}');
EXPLAIN (VERBOSE, COSTS OFF) DELETE FROM dm WHERE id LIKE 'k1%';
EXPLAIN (VERBOSE, COSTS OFF) DELETE FROM dm WHERE id = 'k3';

-- UPDATE to constants, to NULL, to stable expressions; DELETE with and
-- without key quals.
SELECT * FROM dm_run('UPDATE %s SET n = 7');
SELECT * FROM dm_diff();
SELECT * FROM dm_run($$UPDATE %s SET s = NULL, t = '2030-01-01 12:00+00' WHERE id = ANY ('{k1,k2,nope}')$$);
SELECT * FROM dm_run($$UPDATE %s SET n = -1 WHERE id = 'k3'$$);
SELECT * FROM dm_run($$UPDATE %s SET n = 0 WHERE id = 'nope'$$);
SELECT * FROM dm_run($$UPDATE %s SET n = NULL, s = upper('x' || 'y') WHERE id LIKE 'k2%%'$$);
SELECT * FROM dm_run($$UPDATE %s SET t = '2024-06-01'::date + interval '1 day', s = current_setting('timezone') WHERE id IN ('k4', 'k5')$$);
SELECT * FROM dm_run($$UPDATE %s SET n = (SELECT max(x) FROM generate_series(1, 5) x) WHERE id = 'k6'$$);
SELECT * FROM dm_diff();
SELECT * FROM dm_run($$DELETE FROM %s WHERE id = 'k7'$$);
SELECT * FROM dm_run($$DELETE FROM %s WHERE id = ANY ('{k8,k9,nope}')$$);
SELECT * FROM dm_run($$DELETE FROM %s WHERE id LIKE 'k1%%'$$);
SELECT * FROM dm_diff();
SELECT * FROM dm ORDER BY id;

-- A hash whose fields all become NULL is gone (Redis has no empty hashes),
-- on both paths; the statement counts the row.
UPDATE dm SET n = NULL, s = NULL, t = NULL WHERE id = 'k4';
UPDATE dmr SET n = NULL, s = NULL, t = NULL WHERE id = 'k4' RETURNING id;
SELECT (SELECT count(*) FROM dm WHERE id = 'k4') AS direct,
       (SELECT count(*) FROM dmr WHERE id = 'k4') AS per_row;
DELETE FROM dmn WHERE id = 'k4';

-- Prepared statements: the sixth execution uses the generic plan, whose
-- values are Params.
PREPARE u(int, text) AS UPDATE dm SET n = $1 WHERE id = $2;
PREPARE ur(int, text) AS UPDATE dmr SET n = $1 WHERE id = $2 RETURNING id;
PREPARE un(int, text) AS UPDATE dmn SET n = $1 WHERE id = $2;
PREPARE d(text[]) AS DELETE FROM dm WHERE id = ANY ($1);
PREPARE dr(text[]) AS DELETE FROM dmr WHERE id = ANY ($1) RETURNING id;
PREPARE dn(text[]) AS DELETE FROM dmn WHERE id = ANY ($1);
EXECUTE u(100, 'k20'); EXECUTE ur(100, 'k20'); EXECUTE un(100, 'k20');
EXECUTE u(101, 'k21'); EXECUTE ur(101, 'k21'); EXECUTE un(101, 'k21');
EXECUTE u(102, 'k22'); EXECUTE ur(102, 'k22'); EXECUTE un(102, 'k22');
EXECUTE u(103, 'k23'); EXECUTE ur(103, 'k23'); EXECUTE un(103, 'k23');
EXECUTE u(104, 'k24'); EXECUTE ur(104, 'k24'); EXECUTE un(104, 'k24');
EXECUTE u(NULL, 'k25'); EXECUTE ur(NULL, 'k25'); EXECUTE un(NULL, 'k25');
EXECUTE u(106, 'nope'); EXECUTE ur(106, 'nope'); EXECUTE un(106, 'nope');
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE u(107, 'k26');
EXECUTE u(107, 'k26'); EXECUTE ur(107, 'k26'); EXECUTE un(107, 'k26');
EXECUTE d('{k30}'); EXECUTE dr('{k30}'); EXECUTE dn('{k30}');
EXECUTE d('{k29}'); EXECUTE dr('{k29}'); EXECUTE dn('{k29}');
EXECUTE d('{k28}'); EXECUTE dr('{k28}'); EXECUTE dn('{k28}');
EXECUTE d('{k27}'); EXECUTE dr('{k27}'); EXECUTE dn('{k27}');
EXECUTE d('{nope}'); EXECUTE dr('{nope}'); EXECUTE dn('{nope}');
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE d('{k26,k25}');
EXECUTE d('{k26,k25}'); EXECUTE dr('{k26,k25}'); EXECUTE dn('{k26,k25}');
SELECT * FROM dm_diff();
DEALLOCATE ALL;

-- In a transaction that has buffered writes to the same keys, the keys are
-- found through them (read-your-writes): a key inserted in the transaction
-- is updated, a key it deleted is not.
BEGIN;
INSERT INTO dm VALUES ('new1', 1, 'n', NULL), ('k5', 55, NULL, NULL);
INSERT INTO dmr VALUES ('new1', 1, 'n', NULL), ('k5', 55, NULL, NULL);
INSERT INTO dmn VALUES ('new1', 1, 'n', NULL) ON CONFLICT (id) DO NOTHING;
UPDATE dmn SET n = 55, s = NULL, t = NULL WHERE id = 'k5';
DELETE FROM dm WHERE id = 'k6';
DELETE FROM dmr WHERE id = 'k6';
DELETE FROM dmn WHERE id = 'k6';
EXPLAIN (ANALYZE, VERBOSE, COSTS OFF, TIMING OFF, SUMMARY OFF) UPDATE dm SET s = 'tx' WHERE id = 'nope';
SELECT * FROM dm_run($$UPDATE %s SET s = 'tx'$$);
SELECT * FROM dm_run($$UPDATE %s SET n = 5 WHERE id = ANY ('{k5,k6,new1}')$$);
SELECT * FROM dm_diff();
SELECT * FROM dm_run($$DELETE FROM %s WHERE id LIKE 'new%%'$$);
COMMIT;
SELECT * FROM dm_diff();
SELECT * FROM dm ORDER BY id;

-- ROLLBACK sends nothing; a savepoint rolled back loses its writes only.
BEGIN;
UPDATE dm SET n = 999;
DELETE FROM dm WHERE id = 'k2';
ROLLBACK;
BEGIN;
UPDATE dm SET s = 'kept' WHERE id = 'k2';
SAVEPOINT s;
DELETE FROM dm;
ROLLBACK TO SAVEPOINT s;
COMMIT;
UPDATE dmr SET s = 'kept' WHERE id = 'k2' RETURNING id;
UPDATE dmn SET s = 'kept' WHERE id = 'k2';
SELECT * FROM dm_diff();

-- A key another client deletes between the UPDATE and COMMIT is not
-- created again: the UPDATE WATCHed it before reading it, so the COMMIT's
-- EXEC aborts and COMMIT fails with 40001, on both paths (README).
BEGIN;
UPDATE dm SET n = 42 WHERE id = 'k20';
UPDATE dmr SET n = 42 WHERE id = 'k20' RETURNING id;
\! redis-cli -p "$REDIS_PORT" del regress_dm:a:k20 regress_dm:b:k20 > /dev/null
COMMIT;
SELECT * FROM dm WHERE id = 'k20' UNION ALL SELECT * FROM dmr WHERE id = 'k20';
DELETE FROM dmn WHERE id = 'k20';
SELECT * FROM dm_diff();

-- A read-only transaction refuses it.
BEGIN READ ONLY;
UPDATE dm SET n = 1;
ROLLBACK;
BEGIN READ ONLY;
DELETE FROM dm WHERE id = 'k2';
ROLLBACK;

-- Privileges: without UPDATE (DELETE) on the table, refused; with it, the
-- statement runs with the role's user mapping.
CREATE ROLE regress_dm_user;
CREATE USER MAPPING FOR regress_dm_user SERVER rdm OPTIONS (password_required 'false');
GRANT SELECT ON dm TO regress_dm_user;
SET ROLE regress_dm_user;
UPDATE dm SET n = 1 WHERE id = 'k2';
DELETE FROM dm WHERE id = 'k2';
RESET ROLE;
GRANT UPDATE, DELETE ON dm TO regress_dm_user;
SET ROLE regress_dm_user;
UPDATE dm SET n = 1 WHERE id = 'k2';
DELETE FROM dm WHERE id = 'k3';
RESET ROLE;
SELECT user_name FROM pgpoly.connections() WHERE server = 'rdm' ORDER BY 1;
UPDATE dmr SET n = 1 WHERE id = 'k2' RETURNING id;
UPDATE dmn SET n = 1 WHERE id = 'k2';
DELETE FROM dmr WHERE id = 'k3' RETURNING id;
DELETE FROM dmn WHERE id = 'k3';
SELECT * FROM dm_diff();

-- Assignments that read the row: the scan reads the key and the columns
-- they use (EXPLAIN VERBOSE: Redis Columns Read), and evaluates them per
-- row.  A missing field is NULL, so n + 1 stays NULL.
EXPLAIN (VERBOSE, COSTS OFF) UPDATE dm SET n = n + 1;
EXPLAIN (VERBOSE, COSTS OFF) UPDATE dm SET n = n * 2, s = s || id WHERE id = ANY ('{k2,k5}');
EXPLAIN (VERBOSE, COSTS OFF) UPDATE dm SET s = id || '!' WHERE id = 'k2';
INSERT INTO dm VALUES ('nul', NULL, 'x', NULL), ('nul2', 4, NULL, NULL);
INSERT INTO dmr VALUES ('nul', NULL, 'x', NULL), ('nul2', 4, NULL, NULL);
INSERT INTO dmn VALUES ('nul', NULL, 'x', NULL), ('nul2', 4, NULL, NULL);
SELECT * FROM dm_run('UPDATE %s SET n = n + 1');
SELECT * FROM dm_run($$UPDATE %s SET n = n * 2, s = s || id WHERE id = ANY ('{k2,k5,nul,nul2,nope}')$$);
SELECT * FROM dm_run($$UPDATE %s SET s = CASE WHEN n > 10 THEN 'big' WHEN n IS NULL THEN 'none' ELSE s END$$);
SELECT * FROM dm_run($$UPDATE %s SET t = coalesce(t, '2020-01-01 00:00+00') + n * interval '1 minute', n = length(s) + n WHERE id LIKE 'k2%%'$$);
SELECT * FROM dm_run($$UPDATE %s SET s = upper(s), n = 1 WHERE id = 'nul'$$);
SELECT * FROM dm_run($$UPDATE %s SET s = id || ':' || n::text, n = n - (SELECT count(*) FROM generate_series(1, 3))$$);
SELECT * FROM dm_diff();
SELECT * FROM dm ORDER BY id;
-- The assignments see the old row, all of them (SET a = b, b = a swaps).
SELECT * FROM dm_run($$UPDATE %s SET n = length(s), s = n::text WHERE id IN ('k2', 'nul2')$$);
SELECT * FROM dm_diff();
-- A generic plan with Params over the row.
PREPARE u(int, text) AS UPDATE dm SET n = n + $1 WHERE id = $2;
PREPARE ur(int, text) AS UPDATE dmr SET n = n + $1 WHERE id = $2 RETURNING id;
PREPARE un(int, text) AS UPDATE dmn SET n = n + $1 WHERE id = $2;
EXECUTE u(1, 'k2'); EXECUTE ur(1, 'k2'); EXECUTE un(1, 'k2');
EXECUTE u(2, 'k5'); EXECUTE ur(2, 'k5'); EXECUTE un(2, 'k5');
EXECUTE u(3, 'nul'); EXECUTE ur(3, 'nul'); EXECUTE un(3, 'nul');
EXECUTE u(4, 'k2'); EXECUTE ur(4, 'k2'); EXECUTE un(4, 'k2');
EXECUTE u(5, 'nope'); EXECUTE ur(5, 'nope'); EXECUTE un(5, 'nope');
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE u(6, 'k5');
EXECUTE u(6, 'k5'); EXECUTE ur(6, 'k5'); EXECUTE un(6, 'k5');
EXECUTE u(NULL, 'k2'); EXECUTE ur(NULL, 'k2'); EXECUTE un(NULL, 'k2');
SELECT * FROM dm_diff();
DEALLOCATE ALL;
-- Buffered writes of the same keys earlier in the transaction: the
-- expressions read the transaction's own values (and a field it set to
-- NULL), keys it inserted, not keys it deleted; savepoints.
BEGIN;
INSERT INTO dm VALUES ('new2', 10, 'n2', NULL), ('k5', 500, NULL, NULL);
INSERT INTO dmr VALUES ('new2', 10, 'n2', NULL), ('k5', 500, NULL, NULL);
INSERT INTO dmn VALUES ('new2', 10, 'n2', NULL);
UPDATE dmn SET n = 500, s = NULL, t = NULL WHERE id = 'k5';
SELECT * FROM dm_run($$UPDATE %s SET s = 'was ' || n WHERE id = 'k2'$$);
SELECT * FROM dm_run($$DELETE FROM %s WHERE id = 'k6'$$);
SELECT * FROM dm_run($$UPDATE %s SET n = n + 1, s = coalesce(s, 'null') || '+' WHERE id = ANY ('{k2,k5,k6,new2}')$$);
SAVEPOINT s;
SELECT * FROM dm_run('UPDATE %s SET n = n * 100');
ROLLBACK TO SAVEPOINT s;
SELECT * FROM dm_run($$UPDATE %s SET n = n + 1 WHERE id LIKE 'new%%'$$);
SELECT * FROM dm_diff();
COMMIT;
SELECT * FROM dm_diff();
BEGIN;
UPDATE dm SET n = n + 1000;
ROLLBACK;
SELECT * FROM dm_diff();
-- A malformed stored value of a column read: the per-row path's ERROR.
\! redis-cli -p "$REDIS_PORT" hset regress_dm:a:k2 n 12x > /dev/null
\! redis-cli -p "$REDIS_PORT" hset regress_dm:b:k2 n 12x > /dev/null
UPDATE dm SET n = n + 1 WHERE id = 'k2';
UPDATE dmr SET n = n + 1 WHERE id = 'k2' RETURNING id;
UPDATE dm SET s = n::text;
UPDATE dmr SET s = n::text RETURNING id;
-- One that is not read is not converted: the direct path writes the
-- columns assigned (as postgres_fdw never reads the others); the per-row
-- path converts the whole row and fails.
UPDATE dm SET s = s || '.' WHERE id = 'k2';
UPDATE dmr SET s = s || '.' WHERE id = 'k2' RETURNING id;
\! redis-cli -p "$REDIS_PORT" hget regress_dm:a:k2 s
\! redis-cli -p "$REDIS_PORT" hset regress_dm:a:k2 n 2 s 'was 2' > /dev/null
\! redis-cli -p "$REDIS_PORT" hset regress_dm:b:k2 n 2 s 'was 2' > /dev/null
UPDATE dmn SET n = 2, s = 'was 2' WHERE id = 'k2';
SELECT * FROM dm_diff();
-- Column privileges: SET n = n + 1 needs SELECT on n, as before.
CREATE ROLE regress_dm_col;
CREATE USER MAPPING FOR regress_dm_col SERVER rdm OPTIONS (password_required 'false');
GRANT UPDATE (n, s) ON dm TO regress_dm_col;
GRANT SELECT (id, s) ON dm TO regress_dm_col;
GRANT UPDATE (n, s), SELECT (id, s) ON dmr TO regress_dm_col;
SET ROLE regress_dm_col;
UPDATE dm SET n = n + 1 WHERE id = 'k2';
UPDATE dmr SET n = n + 1 WHERE id = 'k2' RETURNING id;
UPDATE dm SET n = 1 WHERE id = 'k2';
UPDATE dm SET s = s || id WHERE id = 'k2';
RESET ROLE;
UPDATE dmr SET n = 1, s = s || id WHERE id = 'k2' RETURNING id;
UPDATE dmn SET n = 1, s = s || id WHERE id = 'k2';
SELECT * FROM dm_diff();
DROP USER MAPPING FOR regress_dm_col SERVER rdm;
REVOKE ALL ON dm, dmr FROM regress_dm_col;
DROP ROLE regress_dm_col;
DELETE FROM dm WHERE id LIKE 'n%';
DELETE FROM dmr WHERE id LIKE 'n%';
DELETE FROM dmn WHERE id LIKE 'n%';

-- Plans that keep the per-row path.
CREATE FUNCTION dm_trig() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RETURN NEW; END $$;
EXPLAIN (COSTS OFF) UPDATE dm SET n = 1 RETURNING id;      -- RETURNING
EXPLAIN (COSTS OFF) DELETE FROM dm RETURNING *;
EXPLAIN (COSTS OFF) UPDATE dm SET n = random()::int;       -- volatile
EXPLAIN (COSTS OFF) UPDATE dm SET n = n + random()::int;   -- volatile, over the row
EXPLAIN (COSTS OFF) UPDATE dm SET s = dm::text;            -- the whole row
EXPLAIN (COSTS OFF) UPDATE dm SET n = n + 1 WHERE s = 'x'; -- a local qual
EXPLAIN (COSTS OFF) UPDATE dm SET n = 1 WHERE n > 5;       -- a local qual
EXPLAIN (COSTS OFF) DELETE FROM dm WHERE id LIKE '%1';     -- not a prefix
EXPLAIN (COSTS OFF) DELETE FROM dm WHERE id = 'k1' AND id LIKE 'k%';   -- LIKE on fetched keys
EXPLAIN (COSTS OFF) UPDATE dm SET id = 'z' WHERE id = 'k1';             -- the key assigned
EXPLAIN (COSTS OFF) UPDATE dm SET n = 1 FROM dmn WHERE dm.id = dmn.id;  -- a join
EXPLAIN (COSTS OFF) UPDATE dm SET n = (SELECT n FROM dmn WHERE dmn.id = dm.id);
EXPLAIN (COSTS OFF) UPDATE dm SET n = (SELECT max(n) FROM dmn) + n;   -- an InitPlan: direct
-- A multiple-assignment sub-select that reads the row is a SubPlan in the
-- scan's own targetlist, which a direct modification does not run: per-row
-- (it crashed the backend when taken as a constant).  An uncorrelated one
-- is an InitPlan: direct.
EXPLAIN (COSTS OFF) UPDATE dm SET (n, s) = (SELECT 1, 'x') WHERE id = 'k2';
EXPLAIN (COSTS OFF) UPDATE dm SET (n, s) = (SELECT n + 1, s || 'y') WHERE id = 'k2';
SELECT * FROM dm_run($$UPDATE %s SET (n, s) = (SELECT n + 1, s || 'y'), t = NULL WHERE id = 'k2'$$);
SELECT * FROM dm_run($$UPDATE %s SET (n, s) = (SELECT 3, 'z') WHERE id = 'k5'$$);
SELECT * FROM dm_diff();
CREATE TRIGGER t BEFORE UPDATE ON dm FOR EACH ROW EXECUTE FUNCTION dm_trig();
EXPLAIN (COSTS OFF) UPDATE dm SET n = 1;                   -- a row trigger
DROP TRIGGER t ON dm;
CREATE TRIGGER t AFTER DELETE ON dm FOR EACH ROW EXECUTE FUNCTION dm_trig();
EXPLAIN (COSTS OFF) DELETE FROM dm;
DROP TRIGGER t ON dm;
-- A statement trigger is no obstacle.
CREATE TRIGGER t AFTER UPDATE ON dm FOR EACH STATEMENT EXECUTE FUNCTION dm_trig();
EXPLAIN (COSTS OFF) UPDATE dm SET n = 1;
DROP TRIGGER t ON dm;

-- Keys of another type under the prefix: a full scan skips them (SCAN ...
-- TYPE), a listed key is an ERROR, as on the per-row path.
\! redis-cli -p "$REDIS_PORT" set regress_dm:a:str x > /dev/null
\! redis-cli -p "$REDIS_PORT" set regress_dm:b:str x > /dev/null
UPDATE dm SET s = 'all';
WITH r AS (UPDATE dmr SET s = 'all' RETURNING id) SELECT count(*) FROM r;
UPDATE dmn SET s = 'all';
SELECT * FROM dm_diff();
UPDATE dm SET s = 'one' WHERE id = 'str';
UPDATE dmr SET s = 'one' WHERE id = 'str' RETURNING id;
DELETE FROM dm WHERE id = 'str';
DELETE FROM dmr WHERE id = 'str' RETURNING id;
\! redis-cli -p "$REDIS_PORT" get regress_dm:a:str

-- A key stored in another spelling than pgpoly's form of its value (an
-- integer key "007") is refused, as on the per-row path: the write would
-- go to key "7".
CREATE FOREIGN TABLE dmi (id int OPTIONS (key 'true'), v int)
  SERVER rdm OPTIONS (key_prefix 'regress_dm:i:');
\! redis-cli -p "$REDIS_PORT" hset regress_dm:i:007 v 1 > /dev/null
\! redis-cli -p "$REDIS_PORT" hset regress_dm:i:8 v 8 > /dev/null
UPDATE dmi SET v = 2;
UPDATE dmi SET v = 2 RETURNING id;
DELETE FROM dmi WHERE id = 8;
DELETE FROM dmi;
DELETE FROM dmi RETURNING id;
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_dm:i:*' | sort

-- _ttl is not read to find the keys; it cannot be assigned; ttl_seconds
-- gives an updated key its expiry, as the per-row path does.
CREATE FOREIGN TABLE dmt (id text OPTIONS (key 'true'), v text, _ttl bigint)
  SERVER rdm OPTIONS (key_prefix 'regress_dm:t:', ttl_seconds '1000');
INSERT INTO dmt (id, v) VALUES ('a', 'x'), ('b', 'y');
\! redis-cli -p "$REDIS_PORT" persist regress_dm:t:a > /dev/null
EXPLAIN (VERBOSE, COSTS OFF) UPDATE dmt SET v = 'z' WHERE id = 'a';
UPDATE dmt SET v = 'z' WHERE id = 'a';
SELECT id, v, _ttl BETWEEN 990 AND 1000 AS has_ttl FROM dmt ORDER BY id;
UPDATE dmt SET _ttl = 5;
EXPLAIN (COSTS OFF) UPDATE dmt SET v = 'w' WHERE _ttl > 0;
EXPLAIN (COSTS OFF) UPDATE dmt SET v = v || _ttl;          -- _ttl read: per-row

-- String tables: the value; json tables: DELETE only (an UPDATE rewrites
-- the whole document, which needs the row).
CREATE FOREIGN TABLE dms (key text, value text)
  SERVER rdm OPTIONS (table_type 'string', key_prefix 'regress_dm:s:');
CREATE FOREIGN TABLE dmj (k text OPTIONS (key 'true'), a int, b text)
  SERVER rdm OPTIONS (table_type 'json', key_prefix 'regress_dm:j:');
INSERT INTO dms VALUES ('a', '1'), ('b', '2');
INSERT INTO dmj VALUES ('a', 1, 'x'), ('b', 2, 'y');
EXPLAIN (COSTS OFF) UPDATE dms SET value = 'v';
UPDATE dms SET value = 'v' WHERE key = 'a';
UPDATE dms SET value = NULL WHERE key = 'nope';     -- no row: nothing to refuse
UPDATE dms SET value = NULL WHERE key = 'b';        -- as the per-row path: ERROR
UPDATE dms SET value = NULL WHERE key = 'b' RETURNING key;
EXPLAIN (COSTS OFF) UPDATE dmj SET a = 3;
EXPLAIN (COSTS OFF) DELETE FROM dmj WHERE k = 'a';
DELETE FROM dmj WHERE k = 'a';
EXPLAIN (VERBOSE, COSTS OFF) UPDATE dms SET value = value || key WHERE key = 'a';
UPDATE dms SET value = value || key WHERE key = 'a';
UPDATE dms SET value = value || key WHERE key = 'b' RETURNING key;
SELECT * FROM dms ORDER BY key;
SELECT * FROM dmj ORDER BY k;
-- Collections have a row per member: the per-row path.
CREATE FOREIGN TABLE dmz (key text, member text, score float8)
  SERVER rdm OPTIONS (table_type 'zset', key_prefix 'regress_dm:z:');
EXPLAIN (COSTS OFF) DELETE FROM dmz WHERE key = 'a';
EXPLAIN (COSTS OFF) UPDATE dmz SET score = 1 WHERE key = 'a';

-- write_mode 'immediate': the writes are sent while the statement runs, in
-- batches of batch_size.
CREATE FOREIGN TABLE dmm (id text OPTIONS (key 'true'), n int)
  SERVER rdm OPTIONS (key_prefix 'regress_dm:m:', write_mode 'immediate', batch_size '3');
INSERT INTO dmm SELECT 'm' || i, i FROM generate_series(1, 10) i;
EXPLAIN (VERBOSE, COSTS OFF) UPDATE dmm SET n = 0 WHERE id LIKE 'm1%';
BEGIN;
UPDATE dmm SET n = 0 WHERE id LIKE 'm1%';
\! redis-cli -p "$REDIS_PORT" hget regress_dm:m:m10 n
ROLLBACK;
BEGIN;
UPDATE dmm SET n = n * 10 + 1 WHERE n IS NOT NULL;   -- per-row
UPDATE dmm SET n = n * 10 + 1;                       -- direct, reads the first
\! redis-cli -p "$REDIS_PORT" hget regress_dm:m:m7 n
ROLLBACK;
SELECT id, n FROM dmm WHERE id IN ('m7', 'm10') ORDER BY id;
DELETE FROM dmm WHERE id <> 'x' AND id LIKE 'm%';   -- per-row
DELETE FROM dmm;
SELECT count(*) FROM dmm;

-- write_mode 'outbox': the changes queued at COMMIT are the per-row path's
-- (a trigger on the outbox keeps a copy of each, per key).
CREATE FOREIGN TABLE dmo (id text OPTIONS (key 'true'), n int, s text)
  SERVER rdm OPTIONS (key_prefix 'regress_dm:o:', write_mode 'outbox');
CREATE FOREIGN TABLE dmor (id text OPTIONS (key 'true'), n int, s text)
  SERVER rdm OPTIONS (key_prefix 'regress_dm:or:', write_mode 'outbox');
CREATE FOREIGN TABLE dmo_now (id text OPTIONS (key 'true'), n int, s text)
  SERVER rdm OPTIONS (key_prefix 'regress_dm:o:');
CREATE TABLE dm_queued (target regclass, op "char", key text, cols smallint[], vals text[]);
-- (pgpoly writes its queue under search_path pg_catalog, pg_temp)
CREATE FUNCTION dm_capture() RETURNS trigger LANGUAGE plpgsql SET search_path = public AS $$
BEGIN
  INSERT INTO dm_queued
    SELECT s.target, NEW.op, NEW.keys[i], NEW.cols, NEW.vals[i:i][:]
    FROM pgpoly.syncs s, generate_subscripts(NEW.keys, 1) i
    WHERE s.sync_id = NEW.sync_id AND s.target IN ('dmo'::regclass, 'dmor'::regclass);
  RETURN NULL;
END $$;
CREATE TRIGGER dm_capture AFTER INSERT ON pgpoly.sync_queue
  FOR EACH ROW EXECUTE FUNCTION dm_capture();
INSERT INTO dmo SELECT 'o' || i, i, 's' || i FROM generate_series(1, 12) i;
INSERT INTO dmor SELECT 'o' || i, i, 's' || i FROM generate_series(1, 12) i;
SELECT pgpoly.sync_wait('public.dmo'), pgpoly.sync_wait('public.dmor');
TRUNCATE dm_queued;
EXPLAIN (COSTS OFF) UPDATE dmo SET n = 0, s = NULL WHERE id LIKE 'o1%';
BEGIN;
UPDATE dmo SET n = 0, s = NULL WHERE id LIKE 'o1%';
DELETE FROM dmo WHERE id = ANY ('{o2,o3,nope}');
UPDATE dmo SET s = 'p' WHERE id = $$o4$$;
DELETE FROM dmo WHERE id LIKE 'o5%';
UPDATE dmo SET n = n + 100, s = s || id WHERE id IN ('o6', 'o7', 'o2');
COMMIT;
BEGIN;
WITH r AS (UPDATE dmor SET n = 0, s = NULL WHERE id LIKE 'o1%' RETURNING 1) SELECT count(*) FROM r;
WITH r AS (DELETE FROM dmor WHERE id = ANY ('{o2,o3,nope}') RETURNING 1) SELECT count(*) FROM r;
UPDATE dmor SET s = 'p' WHERE id = $$o4$$ RETURNING id;
DELETE FROM dmor WHERE id LIKE 'o5%' RETURNING id;
UPDATE dmor SET n = n + 100, s = s || id WHERE id IN ('o6', 'o7', 'o2') RETURNING id;
COMMIT;
SELECT op, key, cols, vals FROM dm_queued WHERE target = 'dmo'::regclass ORDER BY key, op;
SELECT count(*) AS differ FROM (
  (SELECT op, key, cols, vals FROM dm_queued WHERE target = 'dmo'::regclass
   EXCEPT ALL SELECT op, key, cols, vals FROM dm_queued WHERE target = 'dmor'::regclass)
  UNION ALL
  (SELECT op, key, cols, vals FROM dm_queued WHERE target = 'dmor'::regclass
   EXCEPT ALL SELECT op, key, cols, vals FROM dm_queued WHERE target = 'dmo'::regclass)) d;
SELECT pgpoly.sync_wait('public.dmo');
SELECT * FROM dmo_now ORDER BY id;
DROP TRIGGER dm_capture ON pgpoly.sync_queue;
DROP FUNCTION dm_capture();
DROP TABLE dm_queued;
SELECT pgpoly.drop_sync(name) FROM pgpoly.syncs
  WHERE target IN ('dmo'::regclass, 'dmor'::regclass) ORDER BY name;

-- In a CTE that is not the top statement, the count is not the statement's.
WITH w AS (UPDATE dm SET n = 3 WHERE id = 'k5') SELECT 1 AS one;

DROP TABLE dmn;
DROP FUNCTION dm_run(text), dm_diff(), dm_trig();
DROP SERVER rdm CASCADE;
DROP ROLE regress_dm_user;
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_dm:*' | xargs -r redis-cli -p "$REDIS_PORT" del > /dev/null
