-- Entities are matched in the offline table by their canonical text, byte
-- for byte (the Redis key; here a text key: the entity's text as given),
-- found through the entity column's index (its type's default equality
-- operator and its collation), by every path: get_online_features' offline
-- probe (the C index probe, the kept probe statement, the PL/pgSQL
-- implementation), get_historical_features and create_training_set,
-- materialize (the index walk and the DISTINCT ON).  Each is compared with
-- the query a user writes on the native table, comparing the column's text
-- to the entity's under COLLATE "C": citext (extension citext, whose
-- operators the functions' pinned search_path does not see), a
-- nondeterministic ICU collation, domains over text and int, varchar(n) and
-- numeric(p,s) (never cut or rounded into another entity), uuid.
-- (features_entity_rule checks the same rule against what is served.)
\getenv redis_port REDIS_PORT
SET timezone = 'UTC';
CREATE EXTENSION citext;
CREATE COLLATION fet_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE DOMAIN fet_dtext AS text CHECK (VALUE <> '');
CREATE DOMAIN fet_dint AS int CHECK (VALUE > 0);
CREATE SERVER fet FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER fet;
CREATE FUNCTION err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- A view fet_<name> whose offline table fet_<name>_off has an entity column
-- of type typ, with (idx) or without the probe's index; its online table
-- (text key) declares _event_time, so it is the serving table.
CREATE FUNCTION fet_view(name text, typ text, idx bool DEFAULT true) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('CREATE FOREIGN TABLE fet_%s_on (user_id text OPTIONS (key ''true''), '
				   'clicks int, _event_time timestamptz) SERVER fet OPTIONS (key_prefix %L)',
				   name, 'regress_fet_' || name || ':');
	EXECUTE format('CREATE TABLE fet_%s_off (entity %s NOT NULL, event_time timestamptz NOT NULL, '
				   'created_at timestamptz NOT NULL DEFAULT clock_timestamp(), clicks int)', name, typ);
	IF idx THEN
		EXECUTE format('CREATE INDEX ON fet_%1$s_off (entity, event_time DESC, created_at DESC)', name);
	END IF;
	PERFORM pgpoly.create_feature_view('fet_' || name, 'user_id', format('fet_%s_on', name)::regclass,
									   format('fet_%s_off', name)::regclass, ttl => '1 day');
END $$;

-- Rows get_online_features (impl 'c', or 'sql': the PL/pgSQL one) and the
-- user's query differ by, both ways, for entities ents not online.  In a
-- read-only transaction: nothing goes back online.
CREATE FUNCTION fet_online_diff(name text, typ text, ents text[], impl text DEFAULT 'c')
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
BEGIN
	EXECUTE format($q$
		WITH got AS (SELECT * FROM pgpoly.%1$s('fet_%2$s', $1, NULL)),
		want AS (
			SELECT e.e, CASE WHEN h.event_time IS NOT NULL
							 THEN jsonb_build_object('clicks', h.clicks) END AS f, h.event_time,
				   CASE WHEN h.event_time IS NULL THEN 'missing'
						WHEN h.event_time >= now() - interval '1 day' THEN 'offline'
						ELSE 'expired' END AS src
			FROM unnest($1) WITH ORDINALITY e(e, i)
			LEFT JOIN LATERAL (SELECT * FROM fet_%2$s_off h
							   WHERE h.entity::text COLLATE "C" = e.e COLLATE "C"
							   ORDER BY h.event_time DESC, h.created_at DESC LIMIT 1) h ON true)
		SELECT count(*) FROM ((TABLE got EXCEPT ALL TABLE want)
							  UNION ALL (TABLE want EXCEPT ALL TABLE got)) d$q$,
		CASE impl WHEN 'c' THEN 'get_online_features' ELSE '_get_online_features' END, name, typ)
	INTO n USING ents;
	RETURN n;
END $$;

-- Rows get_historical_features and the user's point-in-time join differ by
-- for spine (user_id, event_time), and likewise create_training_set's table.
CREATE FUNCTION fet_pit_diff(name text, typ text, spine text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
	m bigint;
	-- the user's join: row_no, user_id, event_time, clicks
	want text := format($q$
		SELECT row_number() OVER () AS row_no, s.user_id::text AS u, s.event_time, h.clicks AS c
		FROM (%3$s) s
		LEFT JOIN LATERAL (SELECT * FROM fet_%1$s_off h
						   WHERE h.entity::text COLLATE "C" = s.user_id::text COLLATE "C"
							 AND h.event_time <= s.event_time
							 AND h.event_time >= s.event_time - interval '1 day'
						   ORDER BY h.event_time DESC, h.created_at DESC LIMIT 1) h ON true$q$,
		name, typ, spine);
BEGIN
	EXECUTE format($q$
		WITH got AS (SELECT g.row_no, g.features->'fet_%1$s__clicks' AS c
					 FROM pgpoly.get_historical_features(%2$L, ARRAY['fet_%1$s:clicks']) g),
		want AS (SELECT w.row_no, coalesce(to_jsonb(w.c), 'null') AS c FROM (%3$s) w)
		SELECT count(*) FROM ((TABLE got EXCEPT ALL TABLE want)
							  UNION ALL (TABLE want EXCEPT ALL TABLE got)) d$q$, name, spine, want)
	INTO n;
	PERFORM pgpoly.create_training_set('fet_ts', spine, ARRAY['fet_' || name || ':clicks']);
	EXECUTE format($q$
		WITH got AS (SELECT t.user_id::text AS u, t.event_time, t.fet_%1$s__clicks AS c FROM fet_ts t),
		want AS (SELECT w.u, w.event_time, w.c FROM (%2$s) w)
		SELECT count(*) FROM ((TABLE got EXCEPT ALL TABLE want)
							  UNION ALL (TABLE want EXCEPT ALL TABLE got)) d$q$, name, want)
	INTO m;
	DROP TABLE fet_ts;
	DELETE FROM pgpoly.lineage_edges e WHERE e.dst_name = 'fet_ts';
	DELETE FROM pgpoly.datasets d WHERE d.name = 'fet_ts';
	RETURN n + m;
END $$;

-- Rows the online table and the user's DISTINCT ON differ by after
-- materialize (rolled back: the writes are only buffered).
CREATE FUNCTION fet_materialize_diff(name text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
BEGIN
	PERFORM pgpoly.materialize('fet_' || name);
	EXECUTE format($q$
		WITH got AS (SELECT o.user_id, o.clicks, o._event_time FROM fet_%1$s_on o),
		-- the newest row per Redis key: the entity's text, byte for byte
		want AS (SELECT DISTINCT ON (h.entity::text COLLATE "C") h.entity::text, h.clicks, h.event_time
				 FROM fet_%1$s_off h
				 ORDER BY h.entity::text COLLATE "C", h.event_time DESC, h.created_at DESC)
		SELECT count(*) FROM ((TABLE got EXCEPT ALL TABLE want)
							  UNION ALL (TABLE want EXCEPT ALL TABLE got)) d$q$, name)
	INTO n;
	RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = n::text;
EXCEPTION WHEN raise_exception THEN
	RETURN SQLERRM::bigint;
END $$;

-- citext: the online key text, the offline entity citext.  'abc' and 'ABC'
-- are two entities offline as online (the index finds both, the text tells
-- them apart); 'aBc' is no entity at all (the C fast path runs the kept
-- probe statement).
SELECT fet_view('cit', 'citext');
INSERT INTO fet_cit_off (entity, event_time, clicks) VALUES
  ('abc', now() - interval '3 hours', 1), ('ABC', now() - interval '2 hours', 2),
  ('Def', now() - interval '1 hour', 3), ('xyz', now() - interval '2 days', 4);
BEGIN READ ONLY;
SELECT entity, features, source FROM pgpoly.get_online_features('fet_cit', '{ABC,aBc,Def,DEF,xyz,nope}');
SELECT fet_online_diff('cit', 'citext', '{aBc,DEF,def,abc,ABC,xyz,nope}') AS c,
       fet_online_diff('cit', 'citext', '{aBc,DEF,def,abc,ABC,xyz,nope}', 'sql') AS sql;
COMMIT;
SELECT fet_pit_diff('cit', 'citext',
  $$SELECT * FROM (VALUES ('ABC', now()), ('abc', now() - interval '150 minutes'),
                          ('dEF', now()), ('nope', now())) s(user_id, event_time)$$);
-- the spine's own search_path without the citext schema: matched alike
BEGIN;
SET LOCAL search_path = pg_catalog, pg_temp;
SELECT row_no, features FROM pgpoly.get_historical_features(
  $$SELECT 'ABC'::text AS user_id, pg_catalog.now() AS event_time$$, ARRAY['fet_cit:clicks']);
COMMIT;
BEGIN;
SELECT fet_materialize_diff('cit');
ROLLBACK;
-- write-back under the requested key (the entity's text)
SELECT entity, features, source FROM pgpoly.get_online_features('fet_cit', '{ABC}');
SELECT user_id, clicks FROM fet_cit_on ORDER BY 1;
SELECT entity, features, source FROM pgpoly.get_online_features('fet_cit', '{ABC,abc}');
DELETE FROM fet_cit_on;

-- A nondeterministic collation on a text entity: the statement, with or
-- without the index (the C probe reads an index only where its equality is
-- the text's).
SELECT fet_view('nd', 'text COLLATE fet_ci');
SELECT fet_view('ndx', 'text COLLATE fet_ci', false);
INSERT INTO fet_nd_off (entity, event_time, clicks) VALUES
  ('abc', now() - interval '3 hours', 1), ('ABC', now() - interval '2 hours', 2),
  ('Def', now() - interval '1 hour', 3);
INSERT INTO fet_ndx_off SELECT * FROM fet_nd_off;
BEGIN READ ONLY;
SELECT entity, features, source FROM pgpoly.get_online_features('fet_nd', '{ABC,aBc,Def,DEF,nope}');
SELECT fet_online_diff('nd', 'text', '{aBc,DEF,def,abc,nope}') AS c,
       fet_online_diff('nd', 'text', '{aBc,DEF,def,abc,nope}', 'sql') AS sql,
       fet_online_diff('ndx', 'text', '{aBc,DEF,def,abc,nope}') AS c_noindex;
COMMIT;
-- the collation renamed: the statements made from now on spell its new name
-- (here the probe that writes back, not made in the read-only calls above)
ALTER COLLATION fet_ci RENAME TO fet_ci_renamed;
SELECT entity, features, source FROM pgpoly.get_online_features('fet_ndx', '{ABC}');
DELETE FROM fet_ndx_on;
ALTER COLLATION fet_ci_renamed RENAME TO fet_ci;
-- spines whose entity has another collation: the text decides, byte for byte
SELECT fet_pit_diff('nd', 'text', $$SELECT * FROM (VALUES ('ABC', now()), ('dEF', now())) s(user_id, event_time)$$);
SELECT row_no, features FROM pgpoly.get_historical_features(
  $$SELECT 'ABC'::text COLLATE "C" AS user_id, now() AS event_time$$, ARRAY['fet_nd:clicks']);
BEGIN;
SELECT fet_materialize_diff('nd') AS walk, fet_materialize_diff('ndx') AS distinct_on;
ROLLBACK;
-- and a plain text entity with a case-insensitive spine: 'ABC' is not 'abc'
SELECT fet_view('txt', 'text');
INSERT INTO fet_txt_off (entity, event_time, clicks) VALUES ('abc', now() - interval '1 hour', 1);
SELECT row_no, features FROM pgpoly.get_historical_features(
  $$SELECT 'ABC'::text COLLATE fet_ci AS user_id, now() AS event_time$$, ARRAY['fet_txt:clicks']);
SELECT fet_pit_diff('txt', 'text', $$SELECT * FROM (VALUES ('ABC', now()), ('abc', now())) s(user_id, event_time)$$);

-- Domains: over text (its check applies), over int (with this text key,
-- '007' is no entity 7: the key is the text given).
SELECT fet_view('dt', 'fet_dtext');
SELECT fet_view('di', 'fet_dint');
INSERT INTO fet_dt_off (entity, event_time, clicks) VALUES ('abc', now() - interval '1 hour', 1);
INSERT INTO fet_di_off (entity, event_time, clicks) VALUES (7, now() - interval '1 hour', 7), (8, now() - interval '2 hours', 8);
BEGIN READ ONLY;
SELECT fet_online_diff('dt', 'fet_dtext', '{abc,ABC,nope}') AS c,
       fet_online_diff('dt', 'fet_dtext', '{abc,ABC,nope}', 'sql') AS sql,
       fet_online_diff('di', 'fet_dint', '{007,7,8,9}') AS c_int,
       fet_online_diff('di', 'fet_dint', '{007,7,8,9}', 'sql') AS sql_int;
SELECT entity, features, source FROM pgpoly.get_online_features('fet_di', '{007,7,9}');
COMMIT;
SELECT fet_pit_diff('dt', 'fet_dtext', $$SELECT * FROM (VALUES ('abc', now()), ('ABC', now())) s(user_id, event_time)$$),
       fet_pit_diff('di', 'fet_dint', $$SELECT * FROM (VALUES ('007', now()), ('8', now()), ('9', now())) s(user_id, event_time)$$);
BEGIN;
SELECT fet_materialize_diff('dt'), fet_materialize_diff('di');
ROLLBACK;
-- A domain's typmod and CHECK are no part of its equality: over
-- varchar(3), 'abcd' is not 'abc' (a cast to the domain would cut it into
-- that entity); of the positive fet_dint, -1 is no entity (a cast to the
-- domain would fail its CHECK), as for the user's query of the column.
CREATE DOMAIN fet_dvc AS varchar(3);
SELECT fet_view('dvc', 'fet_dvc');
INSERT INTO fet_dvc_off (entity, event_time, clicks) VALUES ('abc', now() - interval '1 hour', 1);
BEGIN READ ONLY;
SELECT entity, features, source FROM pgpoly.get_online_features('fet_dvc', '{abcd,abc}');
SELECT entity, features, source FROM pgpoly.get_online_features('fet_di', '{-1,7}');
SELECT fet_online_diff('dvc', 'varchar', '{abcd,abc}') AS c,
       fet_online_diff('dvc', 'varchar', '{abcd,abc}', 'sql') AS sql,
       fet_online_diff('di', 'int', '{-1,0,7}') AS c_int,
       fet_online_diff('di', 'int', '{-1,0,7}', 'sql') AS sql_int;
COMMIT;
SELECT fet_pit_diff('dvc', 'varchar', $$SELECT * FROM (VALUES ('abcd', now()), ('abc', now())) s(user_id, event_time)$$),
       fet_pit_diff('di', 'int', $$SELECT * FROM (VALUES ('-1', now()), ('7', now())) s(user_id, event_time)$$);
BEGIN;
SELECT fet_materialize_diff('dvc');
ROLLBACK;
-- and put_features and ingest_features refuse an entity the domain would
-- cut (22001, as an INSERT of it fails), where they stored 'abcd' as 'abc'
SELECT err($$SELECT pgpoly.put_features('fet_dvc', 'abcd', '{"clicks": 9}')$$);
SELECT err($$SELECT pgpoly.ingest_features('fet_dvc', 'SELECT ''wxyz'' AS user_id, now() AS event_time')$$);
SELECT entity, clicks FROM fet_dvc_off ORDER BY 1;

-- varchar(3), char(3) and numeric(3,1) entities: 'abcdef' is not 'abc', 1.23 is not
-- 1.2 (a cast with the typmod would cut or round it into that entity);
-- put_features refuses an entity the column would cut.
SELECT fet_view('vc', 'varchar(3)');
SELECT fet_view('num', 'numeric(3,1)');
INSERT INTO fet_vc_off (entity, event_time, clicks) VALUES ('abc', now() - interval '1 hour', 1);
INSERT INTO fet_num_off (entity, event_time, clicks) VALUES (1.2, now() - interval '1 hour', 1);
BEGIN READ ONLY;
SELECT entity, features, source FROM pgpoly.get_online_features('fet_vc', '{abcdef,abc}');
SELECT entity, features, source FROM pgpoly.get_online_features('fet_num', '{1.23,1.2,1.20}');
SELECT fet_online_diff('vc', 'varchar', '{abcdef,abc}') AS c,
       fet_online_diff('vc', 'varchar', '{abcdef,abc}', 'sql') AS sql,
       fet_online_diff('num', 'numeric', '{1.23,1.2,1.20}') AS c_num,
       fet_online_diff('num', 'numeric', '{1.23,1.2,1.20}', 'sql') AS sql_num;
COMMIT;
SELECT fet_pit_diff('vc', 'varchar', $$SELECT * FROM (VALUES ('abcdef', now()), ('abc', now())) s(user_id, event_time)$$),
       fet_pit_diff('num', 'numeric', $$SELECT * FROM (VALUES ('1.23', now()), ('1.2', now())) s(user_id, event_time)$$);
SELECT err($$SELECT pgpoly.put_features('fet_vc', 'abcdef', '{"clicks": 9}')$$);
SELECT count(*) FROM fet_vc_off;
SELECT pgpoly.put_features('fet_vc', 'xy', '{"clicks": 9}', now() - interval '1 minute');
SELECT entity, clicks FROM fet_vc_off ORDER BY 1;
DELETE FROM fet_vc_on;
-- char(3) likewise: 'abcd' is refused; so is 'abc  ', which the column
-- would keep as 'abc', another entity of the text key (22023)
SELECT fet_view('chr', 'char(3)');
SELECT err($$SELECT pgpoly.put_features('fet_chr', 'abcd', '{"clicks": 9}')$$);
SELECT err($$SELECT pgpoly.put_features('fet_chr', 'abc  ', '{"clicks": 2}')$$);
SELECT pgpoly.put_features('fet_chr', 'ab', '{"clicks": 1}', now() - interval '2 minutes'),
       pgpoly.put_features('fet_chr', 'abc', '{"clicks": 2}', now() - interval '1 minute');
SELECT entity, length(entity), clicks FROM fet_chr_off ORDER BY 1;
DELETE FROM fet_chr_on;
BEGIN READ ONLY;
SELECT fet_online_diff('chr', 'bpchar', '{ab,"ab ",abc,abcd}') AS c,
       fet_online_diff('chr', 'bpchar', '{ab,"ab ",abc,abcd}', 'sql') AS sql;
COMMIT;
SELECT fet_pit_diff('chr', 'bpchar', $$SELECT * FROM (VALUES ('ab ', now()), ('abcd', now())) s(user_id, event_time)$$);

-- Nor is an entity an offline column of another type than the text key
-- would store as another entity written (22023): int '007' (as 7, entity
-- '7'), numeric(3,1) '1.23' (as 1.2: it was stored so), and (below) an
-- upper-case uuid.
SELECT err($$SELECT pgpoly.put_features('fet_di', '007', '{"clicks": 9}')$$);
SELECT err($$SELECT pgpoly.ingest_features('fet_di', 'SELECT * FROM (VALUES (''7'', now()), (''007'', now())) s(user_id, event_time)')$$);
SELECT err($$SELECT pgpoly.put_features('fet_num', '1.23', '{"clicks": 9}')$$);
-- one the column's type does not read names the column (it was only
-- PostgreSQL's 'invalid input syntax for type integer: "abc"')
SELECT err($$SELECT pgpoly.put_features('fet_di', 'abc', '{"clicks": 9}')$$);
SELECT err($$SELECT pgpoly.ingest_features('fet_di', 'SELECT * FROM (VALUES (''7'', now()), (''abc'', now())) s(user_id, event_time)')$$);
SELECT (SELECT count(*) FROM fet_di_off) AS di, (SELECT count(*) FROM fet_num_off) AS num;
SELECT pgpoly.put_features('fet_di', '9', '{"clicks": 9}', now() - interval '1 minute'),
       pgpoly.put_features('fet_num', '1.5', '{"clicks": 9}', now() - interval '1 minute');
SELECT entity, clicks FROM fet_di_off WHERE entity = 9
UNION ALL SELECT entity, clicks FROM fet_num_off WHERE entity = 1.5;
DELETE FROM fet_di_on;
DELETE FROM fet_num_on;

-- A char(3) key: 'abcd' is no key of the view (cut, it would be 'abc'):
-- missing online and offline, refused by put_features; 'ab ' is 'ab'.
CREATE FOREIGN TABLE fet_ck_on (user_id char(3) OPTIONS (key 'true'), clicks int,
                                _event_time timestamptz)
  SERVER fet OPTIONS (key_prefix 'regress_fet_ck:');
SELECT pgpoly.create_feature_view('fet_ck', 'user_id', 'fet_ck_on', ttl => '1 day');
SELECT pgpoly.put_features('fet_ck', 'abc', '{"clicks": 1}', now() - interval '2 minutes'),
       pgpoly.put_features('fet_ck', 'ab ', '{"clicks": 2}', now() - interval '1 minute');
SELECT err($$SELECT pgpoly.put_features('fet_ck', 'abcd', '{"clicks": 3}')$$);
SELECT entity, clicks FROM pgpoly.fet_ck_history ORDER BY 1;
SELECT entity, features, source FROM pgpoly.get_online_features('fet_ck', '{abc,abcd,ab,"ab "}');
SELECT row_no, features FROM pgpoly.get_historical_features(
  $$SELECT * FROM (VALUES ('abcd', now()), ('abc', now())) s(user_id, event_time)$$, ARRAY['fet_ck:clicks']);
DELETE FROM fet_ck_on;

-- uuid: with this text key only its own text (lower case, with hyphens) is the entity.
SELECT fet_view('uu', 'uuid');
INSERT INTO fet_uu_off (entity, event_time, clicks) VALUES
  ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', now() - interval '1 hour', 1);
BEGIN READ ONLY;
SELECT fet_online_diff('uu', 'uuid', '{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11,a0eebc999c0b4ef8bb6d6bb9bd380a11}') AS c,
       fet_online_diff('uu', 'uuid', '{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11,a0eebc999c0b4ef8bb6d6bb9bd380a11}', 'sql') AS sql;
COMMIT;
SELECT fet_pit_diff('uu', 'uuid', $$SELECT * FROM (VALUES ('A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', now())) s(user_id, event_time)$$);
-- an upper-case spelling, which the column would keep in lower case, is refused
SELECT err($$SELECT pgpoly.ingest_features('fet_uu', 'SELECT ''A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'' AS user_id, now() AS event_time')$$);

-- Reading an entity that the offline column's type does not read ('abc' or
-- 99999999999 of an int column, 'x' of a uuid one) finds no row: missing
-- online and offline, NULL features in the point-in-time join, as the
-- user's query comparing the column's text finds none (every path failed
-- with 22P02 or 22003, the cast of the entity to the column's type).
SELECT fet_view('int', 'int');
INSERT INTO fet_int_off (entity, event_time, clicks) VALUES (7, now() - interval '1 hour', 7);
BEGIN READ ONLY;
SELECT entity, features, source FROM pgpoly.get_online_features('fet_int', '{abc,99999999999,7," 7"}');
SELECT entity, features, source FROM pgpoly.get_online_features('fet_uu', '{x,a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}');
SELECT fet_online_diff('int', 'int', '{abc,99999999999,7," 7",1e3}') AS c,
       fet_online_diff('int', 'int', '{abc,99999999999,7," 7",1e3}', 'sql') AS sql,
       fet_online_diff('di', 'fet_dint', '{abc,-1,7}') AS c_domain,
       fet_online_diff('di', 'fet_dint', '{abc,-1,7}', 'sql') AS sql_domain,
       fet_online_diff('uu', 'uuid', '{x,a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}') AS c_uuid,
       fet_online_diff('uu', 'uuid', '{x,a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}', 'sql') AS sql_uuid;
COMMIT;
SELECT row_no, spine->>'user_id' AS user_id, features FROM pgpoly.get_historical_features(
  $$SELECT * FROM (VALUES ('abc', now()), ('7', now()), ('99999999999', now())) s(user_id, event_time)$$,
  ARRAY['fet_int:clicks', 'fet_uu:clicks']);
SELECT fet_pit_diff('int', 'int', $$SELECT * FROM (VALUES ('abc', now()), ('99999999999', now()), ('7', now()), (' 7', now())) s(user_id, event_time)$$),
       fet_pit_diff('di', 'fet_dint', $$SELECT * FROM (VALUES ('abc', now()), ('7', now())) s(user_id, event_time)$$),
       fet_pit_diff('uu', 'uuid', $$SELECT * FROM (VALUES ('x', now()), ('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', now())) s(user_id, event_time)$$);
BEGIN;
SELECT fet_materialize_diff('int'), fet_materialize_diff('uu');
ROLLBACK;
-- the offline probe still reads the column's index
EXPLAIN (COSTS OFF) SELECT * FROM fet_int_off h
  WHERE h.entity OPERATOR(pg_catalog.=) CAST(pgpoly._fv_entity_in('7', 'int4'::regtype) AS int)
  ORDER BY h.event_time DESC, h.created_at DESC LIMIT 1;

-- An entity type without a default equality (box: no btree or hash
-- operator class) is refused when the view is created, not at its first call.
SELECT err($$SELECT fet_view('bx', 'box', false)$$);
SELECT count(*) FROM pgpoly.feature_views WHERE name = 'fet_bx';
SELECT to_regclass('fet_bx_off') IS NULL AS rolled_back;

-- Clean up.
SELECT count(pgpoly.drop_feature_view(f.name)) FROM pgpoly.feature_views f WHERE f.name LIKE 'fet\_%';
DELETE FROM pgpoly.lineage_edges
  WHERE src_name LIKE 'public.fet\_%' OR src_name = 'pgpoly.fet_ck_history' OR dst_name LIKE 'fet\_%';
DELETE FROM pgpoly.datasets WHERE name LIKE 'public.fet\_%' OR name = 'pgpoly.fet_ck_history';
DROP TABLE fet_cit_off, fet_nd_off, fet_ndx_off, fet_txt_off, fet_dt_off, fet_di_off, fet_dvc_off,
  fet_vc_off, fet_chr_off, fet_num_off, fet_uu_off, fet_int_off;
DROP TABLE pgpoly.fet_ck_history;
DROP FOREIGN TABLE fet_ck_on, fet_cit_on, fet_nd_on, fet_ndx_on, fet_txt_on, fet_dt_on, fet_di_on, fet_dvc_on,
  fet_vc_on, fet_chr_on, fet_num_on, fet_uu_on, fet_int_on;
DROP SERVER fet CASCADE;
DROP FUNCTION err(text), fet_view(text, text, bool), fet_online_diff(text, text, text[], text),
  fet_pit_diff(text, text, text), fet_materialize_diff(text);
DROP DOMAIN fet_dtext, fet_dint, fet_dvc;
DROP COLLATION fet_ci;
DROP EXTENSION citext;
