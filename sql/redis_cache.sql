-- A backend keeps each Redis foreign table resolved (options, columns,
-- server, user mapping, conversions) for the next statement; any change
-- to them takes effect at the next execution, even of a prepared
-- statement whose generic plan is reused.  The trust rule is checked
-- with the user mapping as it is now.
\getenv redis_port REDIS_PORT
\set VERBOSITY terse
CREATE SERVER rc FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER rc;
CREATE FOREIGN TABLE rc_t (key text, v int, w text)
  SERVER rc OPTIONS (key_prefix 'regress_rc:a:', write_mode 'immediate');
CREATE FOREIGN TABLE rc_b (key text, v int, w text)
  SERVER rc OPTIONS (key_prefix 'regress_rc:b:', write_mode 'immediate');
INSERT INTO rc_t VALUES ('k', 1, 'x');
INSERT INTO rc_b VALUES ('k', 2, 'y');

SET plan_cache_mode = force_generic_plan;
PREPARE q(text) AS SELECT v::text AS v, w::text AS w FROM rc_t WHERE key = $1;
EXECUTE q('k');
-- the table's options
ALTER FOREIGN TABLE rc_t OPTIONS (SET key_prefix 'regress_rc:b:');
EXECUTE q('k');
-- a column's options
ALTER FOREIGN TABLE rc_t ALTER COLUMN w OPTIONS (ADD field 'v');
EXECUTE q('k');
-- a column's type
ALTER FOREIGN TABLE rc_t ALTER COLUMN w TYPE int;
EXECUTE q('k');
-- the server's options
ALTER SERVER rc OPTIONS (ADD db '1');
EXECUTE q('k');
ALTER SERVER rc OPTIONS (DROP db);
EXECUTE q('k');
-- the table's name, in messages
CREATE FOREIGN TABLE rc_s (key text, value text)
  SERVER rc OPTIONS (table_type 'string', key_prefix 'regress_rc:b:', write_mode 'immediate');
INSERT INTO rc_s VALUES ('s', 'a string');
\set VERBOSITY default
SELECT v FROM rc_t WHERE key = 's';
ALTER FOREIGN TABLE rc_t RENAME TO rc_renamed;
SELECT v FROM rc_renamed WHERE key = 's';
\set VERBOSITY terse
DELETE FROM rc_s;
DEALLOCATE q;
PREPARE q(text) AS SELECT v::text AS v, w::text AS w FROM rc_renamed WHERE key = $1;
EXECUTE q('k');

-- The user mapping: the trust rule sees it as it is now.
CREATE ROLE regress_rc_user;
GRANT SELECT ON rc_renamed TO regress_rc_user;
CREATE USER MAPPING FOR regress_rc_user SERVER rc OPTIONS (password_required 'false');
SET ROLE regress_rc_user;
EXECUTE q('k');
RESET ROLE;
ALTER USER MAPPING FOR regress_rc_user SERVER rc OPTIONS (SET password_required 'true');
SET ROLE regress_rc_user;
EXECUTE q('k');
RESET ROLE;
DROP USER MAPPING FOR regress_rc_user SERVER rc;
SET ROLE regress_rc_user;
EXECUTE q('k');
RESET ROLE;

DEALLOCATE q;
RESET plan_cache_mode;
DELETE FROM rc_b;
DELETE FROM rc_renamed;
DROP SERVER rc CASCADE;
DROP ROLE regress_rc_user;
