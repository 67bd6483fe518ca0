-- pgpoly_redis: option validation at CREATE/ALTER time, table shape checks.
\getenv redis_port REDIS_PORT
\set VERBOSITY default

-- Unknown options name the valid ones and suggest the closest.
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (hots '127.0.0.1');
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (flavour 'x');
-- Typed checks.
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port 'abc');
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '70000');
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (timeout_ms '0');
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (host '');
-- Secrets only on user mappings.
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (password 'secret');

CREATE SERVER rs FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port :'redis_port', connect_timeout_ms '2000', timeout_ms '5000');
ALTER SERVER rs OPTIONS (ADD db '0');
CREATE USER MAPPING FOR CURRENT_USER SERVER rs OPTIONS (host 'x');
-- An empty password means no AUTH.
CREATE USER MAPPING FOR CURRENT_USER SERVER rs OPTIONS (password '');

-- Table options.
CREATE FOREIGN TABLE t_bad (key text) SERVER rs OPTIONS (table_type 'graph');
CREATE FOREIGN TABLE t_bad (key text) SERVER rs OPTIONS (write_mode 'eventually');
-- a near miss gets the closest valid value
CREATE FOREIGN TABLE t_bad (key text) SERVER rs OPTIONS (table_type 'hsah');
CREATE FOREIGN TABLE t_bad (key text) SERVER rs OPTIONS (write_mode 'Immediate');
CREATE FOREIGN TABLE t_bad (key text) SERVER rs OPTIONS (fetch_size '0');
CREATE FOREIGN TABLE t_bad (key text) SERVER rs OPTIONS (ttl_seconds '-5');
CREATE FOREIGN TABLE t_bad (key text) SERVER rs OPTIONS (use_remote_estimate 'maybe');
CREATE FOREIGN TABLE t_bad (key text OPTIONS (key 'yes please')) SERVER rs;
CREATE FOREIGN TABLE t_bad (key text OPTIONS (feld 'x')) SERVER rs;

-- Shape checks happen when the table is first used.
CREATE FOREIGN TABLE t_nokey (id text, v text) SERVER rs OPTIONS (table_type 'string');
SELECT * FROM t_nokey;
CREATE FOREIGN TABLE t_zset_bad (key text, member text) SERVER rs OPTIONS (table_type 'zset');
SELECT * FROM t_zset_bad;
CREATE FOREIGN TABLE t_string_bad (key text, a text, b text) SERVER rs OPTIONS (table_type 'string');
SELECT * FROM t_string_bad;
CREATE FOREIGN TABLE t_twokeys (a text OPTIONS (key 'true'), b text OPTIONS (key 'true')) SERVER rs;
SELECT * FROM t_twokeys;
-- A column named key marked key 'false' is not the key: here it is the value.
CREATE FOREIGN TABLE t_notkey (key text OPTIONS (key 'false'), id text OPTIONS (key 'true'))
  SERVER rs OPTIONS (table_type 'string', key_prefix 'regress_opt:nk:');
INSERT INTO t_notkey VALUES ('the value', 'k1');
SELECT id, key FROM t_notkey;
DELETE FROM t_notkey;

-- EXPLAIN shows the commands, never the user mapping.
CREATE FOREIGN TABLE t_ok (id text OPTIONS (key 'true'), v int)
  SERVER rs OPTIONS (key_prefix 'regress_opt:');
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM t_ok WHERE id = 'a';
SELECT * FROM t_ok;

-- Connection cache and operations functions.
SELECT server, store, user_name, requests > 0 AS used, in_transaction
  FROM pgpoly.connections();
BEGIN;
SELECT count(*) FROM t_ok;
SELECT server, in_transaction FROM pgpoly.connections();
COMMIT;
SELECT pgpoly.disconnect('rs');
SELECT count(*) FROM pgpoly.connections();
SELECT pgpoly.disconnect('no_such_server');
SELECT count(*) FROM t_ok;
SELECT pgpoly.disconnect();
SELECT pgpoly.disconnect();
-- ALTER SERVER takes effect on the next statement: db 1 is another keyspace.
INSERT INTO t_ok VALUES ('a', 1);
SELECT * FROM t_ok;
ALTER SERVER rs OPTIONS (SET db '1');
SELECT * FROM t_ok;
ALTER SERVER rs OPTIONS (SET db '0');
SELECT * FROM t_ok;
DELETE FROM t_ok;

DROP SERVER rs CASCADE;
