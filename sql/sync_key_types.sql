--
-- Sync keys whose type's equality is not identity, or whose target key
-- column would convert them: every source is compared with its Redis
-- target key for key after sync_wait().  Redis keys regress_skt:* are
-- created and removed here.
--
\getenv redis_port REDIS_PORT
\set VERBOSITY terse
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_skt:*' | xargs -r -d '\n' redis-cli -p "$REDIS_PORT" del > /dev/null
CREATE EXTENSION citext;
CREATE SERVER skt_redis FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port :'redis_port');
CREATE COLLATION skt_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE DOMAIN skt_pos AS int CHECK (VALUE > 0);

-- Source table name (k keytype PRIMARY KEY, v text), a Redis hash target
-- name_r whose key column has tkeytype (and collation tcoll), and the sync
-- name between them.
CREATE FUNCTION skt_make(name text, keytype text, tkeytype text DEFAULT 'text',
                         tcoll text DEFAULT 'default')
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('CREATE TABLE %I (k %s PRIMARY KEY, v text)', name, keytype);
  EXECUTE format('CREATE FOREIGN TABLE %I (k %s OPTIONS (key ''true'')%s, v text) '
                 'SERVER skt_redis OPTIONS (table_type ''hash'', key_prefix %L)',
                 name || '_r', tkeytype,
                 CASE WHEN tcoll <> 'default' THEN ' COLLATE ' || quote_ident(tcoll) ELSE '' END,
                 'regress_skt:' || name || ':');
  PERFORM pgpoly.create_sync(name, name::regclass, (name || '_r')::regclass);
END $$;
-- After the sync delivered: the source rows (key as text) and the target's
-- keys and values, side by side; [key] marks a target key.
CREATE FUNCTION skt_show(name text) RETURNS TABLE (src text, store text)
LANGUAGE plpgsql AS $$
BEGIN
  IF NOT pgpoly.sync_wait(name) THEN
    RAISE EXCEPTION 'sync % did not catch up', name;
  END IF;
  RETURN QUERY EXECUTE format(
    'SELECT * FROM (SELECT s.k::text || ''='' || s.v AS a, NULL::text AS b FROM %I s '
    'UNION ALL SELECT NULL, ''['' || t.k::text || '']='' || t.v FROM %I t) u '
    'ORDER BY a COLLATE "C", b COLLATE "C"', name, name || '_r');
END $$;

-- A nondeterministic collation: 'Ab' and 'AB' are one key.  An update to
-- the equal key 'AB' and the delete leave no 'Ab' behind.
SELECT skt_make('ci', 'text COLLATE skt_ci');
INSERT INTO ci VALUES ('Ab', 'x'), ('cd', 'y');
SELECT * FROM skt_show('ci');
UPDATE ci SET k = 'AB', v = 'x2' WHERE k = 'ab';
SELECT * FROM skt_show('ci');
UPDATE ci SET k = 'aB' WHERE k = 'ab';
DELETE FROM ci WHERE k = 'CD';
SELECT * FROM skt_show('ci');
DELETE FROM ci;
SELECT * FROM skt_show('ci');

-- The same collation on the target's key column: the delete of the old
-- key 'Ab' must not remove the row just written as 'AB'.
SELECT skt_make('cc', 'text COLLATE skt_ci', 'text', 'skt_ci');
INSERT INTO cc VALUES ('Ab', 'x');
SELECT * FROM skt_show('cc');
UPDATE cc SET k = 'AB', v = 'x2';
SELECT * FROM skt_show('cc');
-- A deterministic source key, a nondeterministic target key column:
-- 'Ab' and 'AB' are two rows; deleting one keeps the other.
SELECT skt_make('dc', 'text', 'text', 'skt_ci');
INSERT INTO dc VALUES ('Ab', 'x'), ('AB', 'y');
SELECT * FROM skt_show('dc');
DELETE FROM dc WHERE k = 'Ab';
SELECT * FROM skt_show('dc');
DELETE FROM dc;
DELETE FROM cc;
SELECT * FROM skt_show('dc') UNION ALL SELECT * FROM skt_show('cc');

-- citext, written under a search_path without citext's schema.
SELECT skt_make('ct', 'citext');
INSERT INTO ct VALUES ('Ab', 'x');
SET search_path = pg_catalog;
UPDATE public.ct SET k = 'AB', v = 'x2';
RESET search_path;
SELECT * FROM skt_show('ct');
DELETE FROM ct WHERE k = 'ab';
SELECT * FROM skt_show('ct');

-- char(3): trailing blanks do not make another key.
SELECT skt_make('c3', 'char(3)');
INSERT INTO c3 VALUES ('ab', 'x'), ('cd ', 'y');
UPDATE c3 SET k = 'ab  ', v = 'x2' WHERE k = 'ab';
UPDATE c3 SET k = 'ef' WHERE k = 'cd';
SELECT * FROM skt_show('c3');
DELETE FROM c3 WHERE k = 'ab';
SELECT * FROM skt_show('c3');

-- numeric and float8 keys moved to an equal, differently written key.
SELECT skt_make('nu', 'numeric');
INSERT INTO nu VALUES (1.0, 'x'), (2, 'y');
UPDATE nu SET k = 1.00, v = 'x2' WHERE k = 1;
SELECT * FROM skt_show('nu');
DELETE FROM nu;
SELECT * FROM skt_show('nu');
SELECT skt_make('fl', 'float8');
INSERT INTO fl VALUES ('0', 'x');
UPDATE fl SET k = '-0', v = 'x2';
SELECT * FROM skt_show('fl');
DELETE FROM fl;
SELECT * FROM skt_show('fl');

-- timestamptz keys written under the writer's own TimeZone and DateStyle.
SELECT skt_make('tz', 'timestamptz');
SET TimeZone = 'Asia/Kolkata';
SET DateStyle = 'SQL, DMY';
INSERT INTO tz VALUES ('2026-01-02 03:04:05+00', 'x'), ('2026-06-01 00:00:00+00', 'y');
SET TimeZone = 'America/New_York';
SET DateStyle = 'German';
UPDATE tz SET v = 'x2' WHERE k = '2026-01-02 03:04:05+00';
DELETE FROM tz WHERE k = '2026-06-01 00:00:00+00';
RESET TimeZone;
RESET DateStyle;
SELECT * FROM skt_show('tz');

-- A target key column that would round or cut the source key is refused:
-- 1.04 and 1.01 would both be the target key 1.0, 'ab' and 'ab ' both 'ab'.
SELECT skt_make('tn', 'numeric', 'numeric(5,1)');
SELECT skt_make('ti', 'numeric', 'int');
SELECT skt_make('tv', 'text', 'varchar(2)');
SELECT skt_make('tc', 'text', 'char(3)');
-- char(n) even from char(n): the store keeps 'ab ', a delete names 'ab'.
SELECT skt_make('tb', 'char(3)', 'char(3)');
-- Nor the source's own type when its equality is not identity: moving the
-- key 1.0 to 1.00 would delete the old target key 1.0 by numeric equality,
-- which is the new key too (the target lost the row).
SELECT skt_make('tm', 'numeric(6,2)', 'numeric(6,2)');
SELECT skt_make('tf', 'float8', 'float8');
SELECT skt_make('tx', 'citext', 'citext');
SELECT count(*) FROM pgpoly.syncs
 WHERE name IN ('tn', 'ti', 'tv', 'tc', 'tb', 'tm', 'tf', 'tx');
-- text, varchar, the source's own type (domains resolved) are taken.
SELECT skt_make('tt', 'int', 'int');
SELECT skt_make('td', 'skt_pos', 'varchar');
INSERT INTO tt VALUES (5, 'a');
INSERT INTO td VALUES (7, 'b');
SELECT * FROM skt_show('tt');
SELECT * FROM skt_show('td');
DELETE FROM tt;
DELETE FROM td;
SELECT * FROM skt_show('tt') UNION ALL SELECT * FROM skt_show('td');

-- A composite key: its queued keys are whole values, not their first field.
CREATE TYPE skt_pair AS (a int, b text);
SELECT skt_make('cp', 'skt_pair');
INSERT INTO cp VALUES (ROW(1, 'x y'), 'x'), (ROW(2, NULL), 'y');
UPDATE cp SET k = ROW(3, 'z') WHERE (k).a = 1;
SELECT * FROM skt_show('cp');
DELETE FROM cp WHERE (k).a = 2;
SELECT * FROM skt_show('cp');
DELETE FROM cp;
SELECT * FROM skt_show('cp');

SELECT name, state, last_error FROM pgpoly.sync_status ORDER BY name COLLATE "C";

-- Clean up.
SELECT pgpoly.drop_sync(name) FROM pgpoly.syncs ORDER BY name;
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_skt:*' | xargs -r -d '\n' redis-cli -p "$REDIS_PORT" del > /dev/null
DROP TABLE ci, cc, dc, ct, c3, nu, fl, tz, tt, td, cp;
DROP SERVER skt_redis CASCADE;
DROP FUNCTION skt_make, skt_show;
DROP DOMAIN skt_pos;
DROP TYPE skt_pair;
DROP COLLATION skt_ci;
DROP EXTENSION citext;
