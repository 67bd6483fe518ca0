-- ingest_features and materialize write each entity's newest row under its
-- Redis key, the entity's canonical text: source rows whose texts differ are
-- different keys online however the source's column compares them (citext, a
-- nondeterministic ICU collation on the column or by a COLLATE clause in the
-- source query, the view's entity column's own collation), and rows of one
-- text are one entity, the later source row winning a tie in event time.
-- Differential: the online and offline state after ingest_features equals
-- what a loop of put_features over the same rows in event-time (then source)
-- order gives on a twin view; materialize of that history gives the same
-- online state again.
\getenv redis_port REDIS_PORT
SET timezone = 'UTC';
CREATE EXTENSION citext;
CREATE COLLATION ic_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE SERVER ic FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER ic;

-- A view ic_<name> with a key column of type ktyp and an offline entity
-- column of type etyp (either may carry a COLLATE clause).
CREATE FUNCTION ic_view(name text, ktyp text, etyp text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('CREATE FOREIGN TABLE ic_%s_on (user_id %s OPTIONS (key ''true'') %s, '
				   'clicks int, _event_time timestamptz) SERVER ic OPTIONS (key_prefix %L)',
				   name, split_part(ktyp, ' COLLATE ', 1),
				   CASE WHEN ktyp LIKE '% COLLATE %' THEN 'COLLATE ' || split_part(ktyp, ' COLLATE ', 2) ELSE '' END,
				   'regress_ic_' || name || ':');
	EXECUTE format('CREATE TABLE ic_%s_off (entity %s NOT NULL, event_time timestamptz NOT NULL, '
				   'created_at timestamptz NOT NULL DEFAULT clock_timestamp(), clicks int)', name, etyp);
	EXECUTE format('CREATE INDEX ON ic_%1$s_off (entity, event_time DESC, created_at DESC)', name);
	PERFORM pgpoly.create_feature_view('ic_' || name, 'user_id', format('ic_%s_on', name)::regclass,
									   format('ic_%s_off', name)::regclass);
END $$;

-- Rows (both ways) by which relations a and b differ in columns cols.
CREATE FUNCTION ic_rel_diff(a text, b text, cols text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
BEGIN
	EXECUTE format('SELECT count(*) FROM ((SELECT %3$s FROM %1$I EXCEPT ALL SELECT %3$s FROM %2$I) '
				   'UNION ALL (SELECT %3$s FROM %2$I EXCEPT ALL SELECT %3$s FROM %1$I)) d', a, b, cols)
	INTO n;
	RETURN n;
END $$;

-- Rows by which the online tables, then the offline tables (entity text,
-- event_time, clicks), of views ic_<a> and ic_<b> differ.
CREATE FUNCTION ic_diff(a text, b text, OUT online bigint, OUT offline bigint)
LANGUAGE sql AS $$
	SELECT ic_rel_diff('ic_' || a || '_on', 'ic_' || b || '_on', 'user_id::text, clicks, _event_time'),
		   ic_rel_diff('ic_' || a || '_off', 'ic_' || b || '_off', 'entity::text, event_time, clicks')
$$;

-- Ingest src into a fresh view ic_<name> (key ktyp, entity etyp), put_features
-- the same rows one by one in event-time then source order into ic_<name>_ref,
-- materialize the reference's history into ic_<name>_mat; the differences of
-- ingest and materialize from the put_features loop, and the online keys.
CREATE FUNCTION ic_case(name text, ktyp text, etyp text, src text,
						OUT ingest_online bigint, OUT ingest_offline bigint,
						OUT mat_online bigint, OUT keys bigint)
LANGUAGE plpgsql AS $$
DECLARE
	r record;
BEGIN
	PERFORM ic_view(name, ktyp, etyp);
	PERFORM ic_view(name || '_ref', ktyp, etyp);
	PERFORM ic_view(name || '_mat', ktyp, etyp);
	PERFORM pgpoly.ingest_features('ic_' || name, src);
	FOR r IN EXECUTE format('SELECT o.user_id::text AS e, o.event_time, o.clicks '
							'FROM (SELECT q.*, row_number() OVER () AS i FROM (%s) q) o '
							'ORDER BY o.event_time, o.i', src) LOOP
		PERFORM pgpoly.put_features('ic_' || name || '_ref', r.e,
									jsonb_build_object('clicks', r.clicks), r.event_time);
	END LOOP;
	SELECT d.online, d.offline INTO ingest_online, ingest_offline FROM ic_diff(name, name || '_ref') d;
	EXECUTE format('INSERT INTO ic_%1$s_mat_off SELECT * FROM ic_%1$s_ref_off', name);
	PERFORM pgpoly.materialize('ic_' || name || '_mat');
	SELECT d.online INTO mat_online FROM ic_diff(name || '_mat', name || '_ref') d;
	EXECUTE format('SELECT count(*) FROM ic_%s_ref_on', name) INTO keys;
END $$;

-- 'A' and 'a' (and 'ß', 'SS') are different Redis keys: each source text is
-- written online with its own newest row; equal texts are one entity, the
-- later row winning a tie
CREATE TEMP VIEW ic_rows AS
	SELECT * FROM (VALUES
		('A', '2024-01-01 00:00+00'::timestamptz, 1), ('a', '2024-01-01 00:00+00', 2),
		('A', '2024-01-02 00:00+00', 3), ('a', '2024-01-01 00:00+00', 4),
		('b', '2024-01-03 00:00+00', 5), ('B', '2024-01-02 00:00+00', 6),
		('ss', '2024-01-01 00:00+00', 7), ('SS', '2024-01-01 00:00+00', 8),
		('A', '2024-01-02 00:00+00', 9)) v(user_id, event_time, clicks);

-- a nondeterministic collation on the source query's column
CREATE TABLE ic_src_ci (user_id text COLLATE ic_ci, event_time timestamptz, clicks int);
INSERT INTO ic_src_ci SELECT * FROM ic_rows;
SELECT * FROM ic_case('srcci', 'text', 'text', 'SELECT * FROM ic_src_ci');
-- a citext source column
CREATE TABLE ic_src_citext (user_id citext, event_time timestamptz, clicks int);
INSERT INTO ic_src_citext SELECT * FROM ic_rows;
SELECT * FROM ic_case('srccitext', 'text', 'text', 'SELECT * FROM ic_src_citext');
-- a COLLATE clause in the source query
SELECT * FROM ic_case('collate', 'text', 'text',
	'SELECT user_id COLLATE ic_ci AS user_id, event_time, clicks FROM ic_rows');
-- varchar source into a varchar key and a case-insensitive entity column
SELECT * FROM ic_case('varchar', 'varchar(10)', 'text COLLATE ic_ci',
	'SELECT user_id::varchar(5) COLLATE ic_ci AS user_id, event_time, clicks FROM ic_rows');
-- the view's key and entity columns citext
SELECT * FROM ic_case('citext', 'citext', 'citext', 'SELECT * FROM ic_rows');
-- the view's key column with the nondeterministic collation
SELECT * FROM ic_case('keyci', 'text COLLATE ic_ci', 'text COLLATE ic_ci', 'SELECT * FROM ic_src_ci');
-- a source column of another type than the key's: numeric 1.0 and 1.00 are
-- two texts of a text key, 1 and 1.0 one int entity
SELECT * FROM ic_case('numtext', 'text', 'text',
	$$SELECT * FROM (VALUES (1.0, '2024-01-01 00:00+00'::timestamptz, 1), (1.00, '2024-01-01 00:00+00', 2),
	                        (1.0, '2024-01-01 00:00+00', 3)) v(user_id, event_time, clicks)$$);
SELECT * FROM ic_case('numint', 'int', 'int',
	$$SELECT * FROM (VALUES ('1'::citext, '2024-01-01 00:00+00'::timestamptz, 1), ('01', '2024-01-01 00:00+00', 2),
	                        ('2', '2024-01-01 00:00+00', 3)) v(user_id, event_time, clicks)$$);

-- newer wins against what Redis holds under the key of the same text: with a
-- citext key, 'A' (older than Redis's 'A') must not be written because
-- Redis's 'a' is older
SELECT ic_view('nw', 'citext', 'citext');
SELECT pgpoly.put_features('ic_nw', 'A', '{"clicks": 100}', '2024-01-05 00:00+00'),
	   pgpoly.put_features('ic_nw', 'a', '{"clicks": 200}', '2024-01-01 00:00+00');
SELECT pgpoly.ingest_features('ic_nw', $$SELECT * FROM (VALUES ('A'::citext, '2024-01-03 00:00+00'::timestamptz, 1),
	('a', '2024-01-03 00:00+00', 2)) v(user_id, event_time, clicks)$$);
SELECT user_id::text, clicks, _event_time FROM ic_nw_on ORDER BY user_id::text COLLATE "C";
-- materialize likewise
INSERT INTO ic_nw_off VALUES ('A', '2024-01-04 00:00+00', now(), 3), ('a', '2024-01-04 00:00+00', now(), 4);
SELECT pgpoly.materialize('ic_nw');
SELECT user_id::text, clicks, _event_time FROM ic_nw_on ORDER BY user_id::text COLLATE "C";

-- put_features with an entity of a nondeterministic collation (read from
-- such a column) compares nothing else under it
SELECT pgpoly.put_features('ic_nw', user_id, '{"clicks": 5}', '2024-01-06 00:00+00') FROM ic_src_ci WHERE clicks = 9;
SELECT user_id::text, clicks FROM ic_nw_on ORDER BY user_id::text COLLATE "C";

-- arguments given in a nondeterministic collation: a view name is the name
-- as spelt ('IC_NW' is no view, not ic_nw), and the point-in-time join runs,
-- each spelling its own entity as online ('A' 5, 'a' 4)
CREATE TABLE ic_spine (user_id text COLLATE ic_ci, event_time timestamptz);
INSERT INTO ic_spine VALUES ('A', '2024-01-07 00:00+00'), ('a', '2024-01-07 00:00+00');
SELECT * FROM pgpoly.get_historical_features('SELECT * FROM ic_spine' COLLATE ic_ci,
											 ARRAY['ic_nw:clicks' COLLATE ic_ci]);
SELECT pgpoly.create_training_set('ic_ts' COLLATE ic_ci, 'SELECT * FROM ic_spine',
								  ARRAY['ic_nw:clicks' COLLATE ic_ci]);
SELECT user_id::text, ic_nw__clicks FROM ic_ts ORDER BY user_id::text COLLATE "C";
\set VERBOSITY terse
SELECT pgpoly.materialize('IC_NW' COLLATE ic_ci);
SELECT pgpoly.drop_feature_view('IC_NW' COLLATE ic_ci);
\set VERBOSITY default
SELECT name FROM pgpoly.feature_views WHERE name = 'ic_nw';
DELETE FROM pgpoly.datasets WHERE name LIKE '%ic\_ts';
DROP TABLE ic_ts, ic_spine;

-- clean up Redis
DO $$
DECLARE
	t text;
BEGIN
	FOR t IN SELECT c.relname FROM pg_class c WHERE c.relname LIKE 'ic\_%\_on' LOOP
		EXECUTE format('DELETE FROM %I', t);
	END LOOP;
END $$;
SELECT pgpoly.drop_feature_view(name) FROM pgpoly.feature_views WHERE name LIKE 'ic\_%' ORDER BY name;
DROP VIEW ic_rows;
DROP TABLE ic_src_ci, ic_src_citext;
DO $$
DECLARE
	t text;
BEGIN
	FOR t IN SELECT c.relname FROM pg_class c WHERE c.relname LIKE 'ic\_%\_o%' AND c.relkind IN ('r', 'f') LOOP
		EXECUTE format('DROP %s %I', CASE WHEN t LIKE '%\_on' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, t);
	END LOOP;
END $$;
DROP SERVER ic CASCADE;
DROP FUNCTION ic_view(text, text, text), ic_rel_diff(text, text, text), ic_diff(text, text), ic_case(text, text, text, text);
DROP COLLATION ic_ci;
DROP EXTENSION citext;
