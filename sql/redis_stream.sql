-- The write stream (pgpoly.redis_stream_threshold): with threshold 1 byte
-- every transactional write is queued at once in a MULTI on a second
-- connection, and COMMIT sends EXEC there, or falls back to sending all on
-- the main connection (a savepoint dropped a streamed write, WATCHes).
-- Each transaction runs the same statements on a native copy; the tables
-- must agree inside the transaction (read-your-writes) and after COMMIT
-- (EXCEPT ALL both ways: 0 differences).
\getenv redis_port REDIS_PORT
CREATE SERVER rst FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE FOREIGN TABLE st_f (id text OPTIONS (key 'true'), a int, b text)
  SERVER rst OPTIONS (table_type 'hash', key_prefix 'regress_st:f:');
CREATE FOREIGN TABLE st_fs (id text OPTIONS (key 'true'), v text)
  SERVER rst OPTIONS (table_type 'string', key_prefix 'regress_st:s:');
CREATE TABLE st_n (id text, a int, b text);
CREATE TABLE st_ns (id text, v text);
CREATE VIEW st_diff AS
SELECT (SELECT count(*) FROM (SELECT * FROM st_f EXCEPT ALL TABLE st_n) x) AS f_not_n,
       (SELECT count(*) FROM (TABLE st_n EXCEPT ALL SELECT * FROM st_f) x) AS n_not_f,
       (SELECT count(*) FROM (SELECT * FROM st_fs EXCEPT ALL TABLE st_ns) x) AS fs_not_ns,
       (SELECT count(*) FROM (TABLE st_ns EXCEPT ALL SELECT * FROM st_fs) x) AS ns_not_fs,
       (SELECT count(*) FROM st_n) AS rows;

SHOW pgpoly.redis_stream_threshold;
SET pgpoly.redis_stream_threshold = 'many';
SET pgpoly.redis_stream_threshold = -2;
SET pgpoly.redis_stream_threshold = 1;

-- Inserts into two tables of one server, deletes, a savepoint that drops
-- streamed rows, one released, a plpgsql EXCEPTION block.
CREATE FUNCTION on_both(sql text) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
  EXECUTE format(sql, 'st_f', 'st_fs');
  EXECUTE format(sql, 'st_n', 'st_ns');
END $f$;
BEGIN;
SELECT on_both($$INSERT INTO %1$s SELECT 'k' || g, g, 'b' || g FROM generate_series(1, 200) g$$);
SELECT on_both($$INSERT INTO %2$s SELECT 's' || g, 'v' || g FROM generate_series(1, 50) g$$);
SAVEPOINT a;
SELECT on_both($$INSERT INTO %1$s SELECT 'k' || g, -g, 'dropped' FROM generate_series(201, 300) g$$);
SELECT * FROM st_diff;
ROLLBACK TO a;
SELECT on_both($$DELETE FROM %1$s WHERE id = 'k7'$$);
SAVEPOINT b;
SELECT on_both($$INSERT INTO %2$s VALUES ('s51', 'again')$$);
RELEASE b;
DO $do$ BEGIN
  PERFORM on_both($$INSERT INTO %1$s SELECT 'x' || g, g, 'x' FROM generate_series(1, 20) g$$);
  PERFORM 1 / 0;
EXCEPTION WHEN division_by_zero THEN
  PERFORM on_both($$INSERT INTO %1$s VALUES ('caught', 0, 'c')$$);
END $do$;
SELECT * FROM st_diff;
COMMIT;
SELECT * FROM st_diff;

-- An UPDATE (it WATCHes the keys it reads) after streamed inserts: COMMIT
-- EXECs on the main connection, where the WATCHes are.
BEGIN;
SELECT on_both($$INSERT INTO %1$s SELECT 'u' || g, g, 'u' FROM generate_series(1, 100) g$$);
SELECT on_both($$UPDATE %1$s SET a = a * 10 WHERE id IN ('k1', 'k2', 'u3')$$);
SELECT * FROM st_diff;
COMMIT;
SELECT * FROM st_diff;

-- A rolled-back transaction leaves nothing; the next one streams again.
BEGIN;
SELECT on_both($$INSERT INTO %1$s SELECT 'r' || g, g, 'r' FROM generate_series(1, 100) g$$);
ROLLBACK;
BEGIN;
SELECT on_both($$INSERT INTO %2$s SELECT 't' || g, 'v' FROM generate_series(1, 30) g$$);
COMMIT;
SELECT * FROM st_diff;

RESET pgpoly.redis_stream_threshold;
DELETE FROM st_f;
DELETE FROM st_fs;
DROP SERVER rst CASCADE;
DROP TABLE st_n, st_ns CASCADE;
DROP FUNCTION on_both(text);
