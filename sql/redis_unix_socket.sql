-- pgpoly_redis through a Unix-domain socket (server option unix_socket):
-- validation at CREATE/ALTER SERVER, precise errors for a path that leads
-- to no Redis, and the same data read, written and joined through the
-- socket and through TCP on the same Redis (the harness's Redis listens on
-- both; differences are counted with EXCEPT ALL both ways and must be 0).
-- Paths that change per run are never printed: they are compared in SQL.
\getenv redis_port REDIS_PORT
\getenv redis_socket REDIS_SOCKET
\set VERBOSITY default

-- The path must be absolute and fit in sockaddr_un (107 bytes).
CREATE SERVER us_bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (unix_socket 'redis.sock');
CREATE SERVER us_bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (unix_socket '');
CREATE SERVER us_bad FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (unix_socket '/tmp/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock');
-- 107 bytes is the longest path that fits.
CREATE SERVER us_long FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (unix_socket '/tmp/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock');
DROP SERVER us_long;
-- It replaces host and port, and reaches one server: not a cluster or Sentinel.
CREATE SERVER us_bad FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (unix_socket '/tmp/r.sock', host '127.0.0.1');
CREATE SERVER us_bad FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (port '6379', unix_socket '/tmp/r.sock');
CREATE SERVER us_bad FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (unix_socket '/tmp/r.sock', cluster 'true');
CREATE SERVER us_bad FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (unix_socket '/tmp/r.sock', nodes '127.0.0.1:7000');
CREATE SERVER us_bad FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (unix_socket '/tmp/r.sock', sentinels '127.0.0.1:26379', sentinel_master 'm');
-- A server option only.
CREATE SERVER us_tcp FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER us_tcp OPTIONS (unix_socket '/tmp/r.sock');
CREATE FOREIGN TABLE us_bad (key text) SERVER us_tcp OPTIONS (unix_socket '/tmp/r.sock');
-- ALTER SERVER is validated the same way.
ALTER SERVER us_tcp OPTIONS (ADD unix_socket '/tmp/r.sock');
CREATE SERVER us_sock FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (unix_socket '/tmp/r.sock');
ALTER SERVER us_sock OPTIONS (SET unix_socket 'tmp/r.sock');
ALTER SERVER us_sock OPTIONS (ADD port '6379');
ALTER SERVER us_sock OPTIONS (SET unix_socket :'redis_socket');

-- A path that leads to no Redis: 08001 saying what is wrong with it.
CREATE SERVER us_missing FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (unix_socket '/nonexistent-pgpoly-dir/redis.sock');
CREATE FOREIGN TABLE us_missing_t (key text OPTIONS (key 'true'), v text)
  SERVER us_missing OPTIONS (key_prefix 'regress_us:');
SELECT * FROM us_missing_t;
ALTER SERVER us_missing OPTIONS (SET unix_socket '/dev/null');
SELECT * FROM us_missing_t WHERE key = 'a';
DROP SERVER us_missing CASCADE;

-- The same keys through both transports, and a native copy.
CREATE FOREIGN TABLE us_h_tcp (key text OPTIONS (key 'true'), n int, s text, f float8)
  SERVER us_tcp OPTIONS (key_prefix 'regress_us:h:');
CREATE FOREIGN TABLE us_h_sock (key text OPTIONS (key 'true'), n int, s text, f float8)
  SERVER us_sock OPTIONS (key_prefix 'regress_us:h:');
CREATE FOREIGN TABLE us_h_sock_now (key text OPTIONS (key 'true'), n int, s text, f float8)
  SERVER us_sock OPTIONS (key_prefix 'regress_us:h:', write_mode 'immediate');
CREATE TABLE us_native (key text PRIMARY KEY, n int, s text, f float8);
INSERT INTO us_native
SELECT 'k' || i, i * 7 % 100, CASE WHEN i % 5 = 0 THEN NULL ELSE md5(i::text) END, i / 3.0
FROM generate_series(1, 400) i;

-- Rows of a that b lacks plus the reverse.
CREATE FUNCTION us_diff(a text, b text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  EXECUTE format('WITH a AS MATERIALIZED (%s), b AS MATERIALIZED (%s)
                  SELECT count(*) FROM ((TABLE a EXCEPT ALL TABLE b)
                                        UNION ALL (TABLE b EXCEPT ALL TABLE a)) d', a, b)
    INTO n;
  RETURN n;
END $$;

-- Transactional writes through the socket (sent at COMMIT), read over TCP.
BEGIN;
INSERT INTO us_h_sock SELECT * FROM us_native WHERE key <= 'k3';
SELECT count(*) FROM us_h_sock;  -- read-your-writes before COMMIT
COMMIT;
-- Immediate writes through the socket.
INSERT INTO us_h_sock_now SELECT * FROM us_native WHERE key > 'k3';
SELECT us_diff('SELECT * FROM us_h_tcp', 'SELECT * FROM us_native') AS tcp_vs_native,
       us_diff('SELECT * FROM us_h_sock', 'SELECT * FROM us_native') AS sock_vs_native,
       (SELECT count(*) FROM us_h_sock) AS nrows;
-- The connection really goes through the socket.
SELECT target = :'redis_socket' AS through_socket FROM pgpoly.connections()
  WHERE server = 'us_sock';
SELECT target = '127.0.0.1:' || :'redis_port' AS through_tcp FROM pgpoly.connections()
  WHERE server = 'us_tcp';

-- Key lookups, a prepared generic plan, a batched join, a join to the TCP
-- table: the same answers.
SELECT * FROM us_h_sock WHERE key = 'k42';
SELECT * FROM us_h_sock WHERE key IN ('k1', 'k5', 'nope') ORDER BY key;
SET plan_cache_mode = force_generic_plan;
PREPARE us_q(text) AS SELECT n, s FROM us_h_sock WHERE key = $1;
EXECUTE us_q('k7');
EXECUTE us_q('k8');
EXECUTE us_q('absent');
DEALLOCATE us_q;
RESET plan_cache_mode;
CREATE TABLE us_ids AS SELECT i AS id, 'k' || (i * 3) AS k FROM generate_series(1, 200) i;
ANALYZE us_ids;
EXPLAIN (COSTS OFF)
SELECT i.id, h.n FROM us_ids i JOIN us_h_sock h ON h.key = i.k;
SELECT us_diff('SELECT i.id, h.n, h.s FROM us_ids i JOIN us_h_sock h ON h.key = i.k',
               'SELECT i.id, h.n, h.s FROM us_ids i JOIN us_native h ON h.key = i.k') AS join_vs_native,
       us_diff('SELECT i.id, h.n, h.s FROM us_ids i LEFT JOIN us_h_sock h ON h.key = i.k',
               'SELECT i.id, h.n, h.s FROM us_ids i LEFT JOIN us_h_tcp h ON h.key = i.k') AS left_join_vs_tcp,
       us_diff('SELECT a.key, b.f FROM us_h_sock a JOIN us_h_tcp b USING (key)',
               'SELECT key, f FROM us_native') AS sock_join_tcp;

-- UPDATE and DELETE through the socket, checked over TCP.
UPDATE us_h_sock SET n = n + 1000 WHERE key IN ('k10', 'k11');
UPDATE us_native SET n = n + 1000 WHERE key IN ('k10', 'k11');
DELETE FROM us_h_sock WHERE key = 'k12';
DELETE FROM us_native WHERE key = 'k12';
SELECT us_diff('SELECT * FROM us_h_tcp', 'SELECT * FROM us_native') AS after_writes;

-- Switching a server from TCP to the socket reconnects through the socket,
-- and db is selected there as over TCP.
ALTER SERVER us_tcp OPTIONS (DROP host, DROP port, ADD unix_socket :'redis_socket', ADD db '1');
INSERT INTO us_h_tcp VALUES ('only_in_db1', 1, 'x', 0);
SELECT key FROM us_h_tcp;
SELECT target = :'redis_socket' AS through_socket FROM pgpoly.connections()
  WHERE server = 'us_tcp';
SELECT count(*) FROM us_h_sock WHERE key = 'only_in_db1';
DELETE FROM us_h_tcp;

DELETE FROM us_h_sock;
SELECT count(*) FROM us_h_sock;
DROP FUNCTION us_diff(text, text);
DROP TABLE us_native, us_ids;
DROP SERVER us_tcp, us_sock CASCADE;
