-- get_online_features' direct offline probe and materialize's index walk
-- (src/features.c: probe_direct, _fv_newest_rows) attacked where the
-- offline index alone does not give what a query of the offline table
-- gives: every answer compared with the PL/pgSQL implementation and with a
-- DISTINCT ON of the table.  Offline tables with inheritance children (a
-- scan of the parent reads the children's rows, its index does not hold
-- them), event_time altered to timestamp or date under another TimeZone,
-- and indexes the probe must not read (partial, expression, other order,
-- operator class or collation of any key, invalid), or may (INCLUDE), a
-- nondeterministic collation, DDL that rewrites the table between calls, a
-- column added with a default, an index a snapshot may not use yet.
\getenv redis_port REDIS_PORT
SET timezone = 'UTC';
CREATE SERVER fpa FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
DO $$
BEGIN
	CREATE USER MAPPING FOR PUBLIC SERVER fpa OPTIONS (password_required 'false');
EXCEPTION WHEN fdw_invalid_option_name THEN
	CREATE USER MAPPING FOR PUBLIC SERVER fpa;
END $$;
CREATE FOREIGN TABLE fpa_online (user_id text OPTIONS (key 'true'), clicks int)
  SERVER fpa OPTIONS (key_prefix 'regress_fpa:');
SELECT pgpoly.create_feature_view('fpa', 'user_id', 'fpa_online', ttl => '1 day');
-- e1: two rows; e2: same event time, the later created_at wins; E2 differs
-- from e2 only in case; e3 stale; e4 nowhere
INSERT INTO pgpoly.fpa_history (entity, event_time, created_at, clicks) VALUES
  ('e1', now() - interval '1 hour', now(), 1),
  ('e1', now() - interval '2 hours', now(), 11),
  ('e2', now() - interval '1 hour', now() - interval '1 minute', 2),
  ('e2', now() - interval '1 hour', now(), 22),
  ('E2', now() - interval '30 minutes', now(), 222),
  ('e3', now() - interval '5 days', now(), 3);

-- Rows one implementation gives and the other does not, both ways (the
-- transaction made READ ONLY: nothing written back), then what the C one
-- serves.
CREATE FUNCTION fpa_check(label text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	ents text[] := '{e1,e2,E2,e3,e4,k1,e1}';
	d    bigint;
	r    text;
BEGIN
	SET LOCAL transaction_read_only = on;
	SELECT count(*) INTO d FROM (
	  (SELECT * FROM pgpoly.get_online_features('fpa', ents)
	   EXCEPT ALL SELECT * FROM pgpoly._get_online_features('fpa', ents, NULL))
	  UNION ALL
	  (SELECT * FROM pgpoly._get_online_features('fpa', ents, NULL)
	   EXCEPT ALL SELECT * FROM pgpoly.get_online_features('fpa', ents))) x;
	SELECT string_agg(entity || '=' || coalesce(features->>'clicks', '-') || '/' || source, ' '
					  ORDER BY o) INTO r
	  FROM pgpoly.get_online_features('fpa', ents) WITH ORDINALITY g(entity, features, event_time, source, o);
	RETURN label || ': ' || d || ' differences; ' || r;
END $$;
-- _fv_newest_rows' rows (where usable) against the DISTINCT ON, both ways
CREATE FUNCTION fpa_walk(since timestamptz DEFAULT '-infinity',
						 until timestamptz DEFAULT 'infinity') RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	d bigint;
BEGIN
	IF NOT pgpoly._fv_newest_usable('pgpoly.fpa_history', 'entity') THEN
		RETURN 'not usable';
	END IF;
	WITH w AS (SELECT entity::text, event_time::text, created_at, clicks
			   FROM pgpoly._fv_newest_rows(NULL::pgpoly.fpa_history, 'entity', since, until)),
		 -- ordered by the columns themselves: an ORDER BY event_time over
		 -- the select list would sort its text form ('Wed ...' after 'Thu ...')
		 q AS (SELECT h.entity::text, h.event_time::text, h.created_at, h.clicks
			   FROM (SELECT DISTINCT ON (f.entity) f.*
					 FROM pgpoly.fpa_history f WHERE f.event_time BETWEEN since AND until
					 ORDER BY f.entity, f.event_time DESC, f.created_at DESC) h)
	SELECT count(*) INTO d FROM ((TABLE w EXCEPT ALL TABLE q) UNION ALL (TABLE q EXCEPT ALL TABLE w)) x;
	RETURN d || ' differences';
END $$;
SELECT fpa_check('as created'), fpa_walk(), fpa_walk(now() - interval '45 minutes', now());

-- event_time altered to timestamp (then date) under another TimeZone: the
-- walk would read it as timestamptz, the probe statement's array of it too.
SET timezone = 'Asia/Tokyo';
ALTER TABLE pgpoly.fpa_history ALTER event_time TYPE timestamp;
SELECT fpa_check('event_time timestamp'), fpa_walk(),
       fpa_walk(now() - interval '45 minutes', now()) AS window;
BEGIN TRANSACTION READ ONLY;
SELECT entity, source, event_time = (SELECT h.event_time::timestamptz FROM pgpoly.fpa_history h
                                     WHERE clicks = 1) AS same_instant
  FROM pgpoly.get_online_features('fpa', '{e1}');
COMMIT;
ALTER TABLE pgpoly.fpa_history ALTER event_time TYPE date;
-- (only the differences: what is fresh depends on the time of day)
SELECT split_part(fpa_check('event_time date'), ';', 1), fpa_walk(),
       fpa_walk(now() - interval '3 days', now()) AS window;
ALTER TABLE pgpoly.fpa_history ALTER event_time TYPE timestamptz
  USING event_time AT TIME ZONE 'Asia/Tokyo';
UPDATE pgpoly.fpa_history SET event_time = now() - interval '1 hour' WHERE clicks IN (1, 2, 22);
UPDATE pgpoly.fpa_history SET event_time = now() - interval '2 hours' WHERE clicks = 11;
UPDATE pgpoly.fpa_history SET event_time = now() - interval '30 minutes' WHERE clicks = 222;
RESET timezone;
SELECT fpa_check('timestamptz again'), fpa_walk();

-- Indexes the probe must not read, each alone, and one it may.
DROP INDEX pgpoly.fpa_history_entity_time_idx;
CREATE INDEX fpa_i ON pgpoly.fpa_history (entity, event_time DESC, created_at DESC) WHERE clicks <> 1;
SELECT fpa_check('partial'), fpa_walk();
DROP INDEX pgpoly.fpa_i;
CREATE INDEX fpa_i ON pgpoly.fpa_history (lower(entity), event_time DESC, created_at DESC);
SELECT fpa_check('expression'), fpa_walk();
DROP INDEX pgpoly.fpa_i;
CREATE INDEX fpa_i ON pgpoly.fpa_history (entity, event_time, created_at);
SELECT fpa_check('ascending'), fpa_walk();
DROP INDEX pgpoly.fpa_i;
CREATE INDEX fpa_i ON pgpoly.fpa_history (entity, event_time DESC NULLS LAST, created_at DESC);
SELECT fpa_check('nulls last'), fpa_walk();
DROP INDEX pgpoly.fpa_i;
CREATE INDEX fpa_i ON pgpoly.fpa_history (entity text_pattern_ops, event_time DESC, created_at DESC);
SELECT fpa_check('operator class'), fpa_walk();
DROP INDEX pgpoly.fpa_i;
CREATE INDEX fpa_i ON pgpoly.fpa_history (entity COLLATE "POSIX", event_time DESC, created_at DESC);
SELECT fpa_check('collation'), fpa_walk();
DROP INDEX pgpoly.fpa_i;
CREATE INDEX fpa_i ON pgpoly.fpa_history (event_time DESC, entity, created_at DESC);
SELECT fpa_check('other column order'), fpa_walk();
DROP INDEX pgpoly.fpa_i;
-- invalid: a failed CREATE UNIQUE INDEX CONCURRENTLY (a duplicate key)
INSERT INTO pgpoly.fpa_history (entity, event_time, created_at, clicks)
  SELECT entity, event_time, created_at, 3333 FROM pgpoly.fpa_history WHERE clicks = 3;
\set VERBOSITY terse
CREATE UNIQUE INDEX CONCURRENTLY fpa_i ON pgpoly.fpa_history (entity, event_time DESC, created_at DESC);
\set VERBOSITY default
SELECT indisvalid FROM pg_index WHERE indexrelid = 'pgpoly.fpa_i'::regclass;
SELECT fpa_check('invalid'), fpa_walk();
DROP INDEX pgpoly.fpa_i;
DELETE FROM pgpoly.fpa_history WHERE clicks = 3333;
CREATE INDEX fpa_i ON pgpoly.fpa_history (entity, event_time DESC, created_at DESC) INCLUDE (clicks);
SELECT fpa_check('include'), fpa_walk();
-- the table rewritten between calls of the session
VACUUM FULL pgpoly.fpa_history;
SELECT fpa_check('vacuum full'), fpa_walk();
CLUSTER pgpoly.fpa_history USING fpa_i;
SELECT fpa_check('cluster'), fpa_walk();
REINDEX TABLE pgpoly.fpa_history;
SELECT fpa_check('reindex'), fpa_walk();
ALTER TABLE pgpoly.fpa_history ALTER clicks TYPE bigint;
SELECT fpa_check('clicks bigint'), fpa_walk();
-- entity keys equal under a nondeterministic collation: still two entities
-- (e2 its own row, not E2's newer one)
CREATE COLLATION fpa_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
ALTER TABLE pgpoly.fpa_history ALTER entity TYPE text COLLATE fpa_ci;
SELECT fpa_check('case-insensitive entity'), fpa_walk();
ALTER TABLE pgpoly.fpa_history ALTER entity TYPE text COLLATE "default";
DROP COLLATION fpa_ci;
SELECT fpa_check('default collation again'), fpa_walk();

-- A column added with a default (no rewrite): the rows written before lack
-- it, the walk's rows have the default, as the table's.
ALTER TABLE pgpoly.fpa_history ADD COLUMN fpa_w int DEFAULT 7;
SELECT count(*) AS rows, count(*) FILTER (WHERE fpa_w IS DISTINCT FROM 7) AS without_default
  FROM pgpoly._fv_newest_rows(NULL::pgpoly.fpa_history, 'entity', '-infinity', 'infinity');
ALTER TABLE pgpoly.fpa_history DROP COLUMN fpa_w;

-- Inheritance children: their rows are the offline table's rows too (k1
-- only in the child, e1 newer there).  Neither the probe nor the walk may
-- read the parent's index alone.
CREATE TABLE fpa_child () INHERITS (pgpoly.fpa_history);
INSERT INTO fpa_child (entity, event_time, clicks) VALUES ('e1', now(), 1111), ('k1', now(), 2222);
SELECT fpa_check('with a child'), fpa_walk();
SELECT pgpoly.materialize('fpa');
SELECT user_id, clicks FROM pgpoly.fpa_serving ORDER BY 1;
DELETE FROM pgpoly.fpa_serving;
DROP TABLE fpa_child;
-- (ANALYZE finds no child and clears relhassubclass: usable again)
ANALYZE pgpoly.fpa_history;
SELECT fpa_check('child dropped'), fpa_walk();

-- An index built over broken HOT chains after the snapshot of a REPEATABLE
-- READ transaction (indcheckxmin): its entry for h1's updated row holds the
-- new event time, the snapshot sees the old one.  Neither the probe nor the
-- walk may read it in that transaction (as the planner does not); in the
-- next they do.
DROP INDEX pgpoly.fpa_i, pgpoly.fpa_history_time_idx;
INSERT INTO pgpoly.fpa_history (entity, event_time, clicks) VALUES
  ('h1', now() - interval '1 hour', 5), ('h1', now() - interval '2 hours', 55);
SELECT current_database() AS fpa_db \gset
\setenv FPA_DB :fpa_db
BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
SELECT count(*) FROM pgpoly.fpa_history;
\! psql -X -q -d "$FPA_DB" -c "UPDATE pgpoly.fpa_history SET event_time = now() WHERE clicks = 55" -c "CREATE INDEX fpa_i ON pgpoly.fpa_history (entity, event_time DESC, created_at DESC)" -At -c "SELECT 'indcheckxmin ' || indcheckxmin FROM pg_index WHERE indexrelid = 'pgpoly.fpa_i'::regclass"
SELECT entity, features FROM pgpoly.get_online_features('fpa', '{h1}');
SELECT pgpoly._fv_newest_usable('pgpoly.fpa_history', 'entity');
COMMIT;
SELECT fpa_check('the next transaction'), fpa_walk();
BEGIN TRANSACTION READ ONLY;
SELECT entity, features FROM pgpoly.get_online_features('fpa', '{h1}');
COMMIT;
DELETE FROM pgpoly.fpa_history WHERE entity = 'h1';

-- created_at altered to text of an ICU collation, its index key in "C":
-- the index orders the ties on event_time otherwise than ORDER BY
-- created_at DESC ('B' before 'a' in the column's collation, after it in
-- "C"); neither the probe nor the walk may read it.
ALTER TABLE pgpoly.fpa_history ALTER created_at DROP DEFAULT,
  ALTER created_at TYPE text COLLATE "und-x-icu";
DROP INDEX pgpoly.fpa_i;
CREATE INDEX fpa_i ON pgpoly.fpa_history (entity, event_time DESC, created_at COLLATE "C" DESC);
INSERT INTO pgpoly.fpa_history (entity, event_time, created_at, clicks) VALUES
  ('k1', now() - interval '1 hour', 'a', 4), ('k1', now() - interval '1 hour', 'B', 44);
SELECT fpa_check('created_at of another collation'), fpa_walk();

-- Clean up.
DELETE FROM pgpoly.fpa_serving;
SELECT pgpoly.drop_feature_view('fpa', drop_tables => true);
DELETE FROM pgpoly.lineage_edges WHERE src_name = 'pgpoly.fpa_history';
DELETE FROM pgpoly.datasets WHERE name = 'pgpoly.fpa_history';
DROP FUNCTION fpa_check(text), fpa_walk(timestamptz, timestamptz);
DROP SERVER fpa CASCADE;
