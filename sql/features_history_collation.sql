-- The default history table keeps its entity under COLLATE "C" (an entity is
-- its canonical text byte for byte: memcmp, where a libc or ICU default
-- collation ran strcoll in every comparison of every index insertion), and
-- its (entity, event_time DESC, created_at DESC) btree has no deduplication
-- (created_at makes equal keys all but impossible: the pass before each leaf
-- split merged nothing).  Every lookup still reads that index — the
-- point-in-time join from a spine whose entity is under another collation,
-- get_online_features' offline probe, a user's query comparing the column to
-- a literal, materialize's walk — and finds what a native query finds, over
-- entities that an ICU collation orders otherwise than their bytes ('a' 'B'
-- 'b' 'Ä' ...); so does a history table created before (the entity under
-- the default collation, the index deduplicating).
\getenv redis_port REDIS_PORT
SET timezone = 'UTC';
CREATE SERVER fhc FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER fhc;
CREATE FOREIGN TABLE fhc_user (user_id text OPTIONS (key 'true'), clicks int)
  SERVER fhc OPTIONS (key_prefix 'fhc_user:');
SELECT pgpoly.create_feature_view('fhc_user', 'user_id', 'fhc_user');
SELECT a.attname, c.collname
FROM pg_attribute a LEFT JOIN pg_collation c ON c.oid = a.attcollation
WHERE a.attrelid = 'pgpoly.fhc_user_history'::regclass AND a.attnum > 0 ORDER BY a.attnum;
SELECT i.indexrelid::regclass AS index, c.reloptions
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = 'pgpoly.fhc_user_history'::regclass ORDER BY 1::text;

-- 40 entities (upper and lower case, accents, a trailing blank, a prefix of
-- another) of 50 rows each, one in ten in the future
CREATE TABLE fhc_ents (e text COLLATE "C");
INSERT INTO fhc_ents
SELECT b || s FROM unnest(ARRAY['a', 'B', 'b', 'A', U&'\00C4', U&'\00E4', 'a ', 'ab', 'aB', 'z']) b,
	 unnest(ARRAY['', '1', U&'\00E9', 'Z']) s;
INSERT INTO pgpoly.fhc_user_history (entity, event_time, clicks)
SELECT e.e, now() - (g * 7 % 50 - 5) * interval '1 minute', g
FROM fhc_ents e, generate_series(1, 50) g;
ANALYZE pgpoly.fhc_user_history;

-- the native answer: the newest row of the same bytes at or before t
CREATE FUNCTION fhc_native(ent text, t timestamptz) RETURNS int LANGUAGE sql STABLE AS $$
	SELECT h.clicks FROM pgpoly.fhc_user_history h
	WHERE h.entity::bytea = ent::bytea AND h.event_time <= t
	ORDER BY h.event_time DESC, h.created_at DESC LIMIT 1
$$;

-- Every lookup against the native answer over the 40 entities (and two
-- that no row has): the point-in-time join from a spine under "C" and from
-- one under an ICU collation (each in its own order), get_online_features
-- over an empty Redis (every value from the offline probe: the entity's
-- newest row, the future ones too), materialize into an emptied Redis (the
-- index walk: the newest rows up to now).
CREATE FUNCTION fhc_check(what text)
RETURNS TABLE (lookup text, n bigint, differs bigint, found bigint) LANGUAGE plpgsql AS $$
DECLARE
	coll text;
BEGIN
	IF what = 'pit' THEN
		FOREACH coll IN ARRAY ARRAY['C', 'en-x-icu'] LOOP
			RETURN QUERY
			SELECT 'pit ' || coll, count(*), count(*) FILTER (WHERE g.c IS DISTINCT FROM fhc_native(g.u, g.t)),
				   count(g.c)
			FROM (SELECT x.spine->>'user_id' AS u, (x.spine->>'event_time')::timestamptz AS t,
						 (x.features->>'fhc_user__clicks')::int AS c
				  FROM pgpoly.get_historical_features(
						format($q$SELECT e COLLATE %I AS user_id, now() - interval '2 minutes' AS event_time
								  FROM fhc_ents UNION ALL SELECT 'nope', now() UNION ALL SELECT 'A ', now()
								  ORDER BY 1$q$, coll),
						'{fhc_user:clicks}') x) g;
		END LOOP;
	ELSIF what = 'online' THEN
		RETURN QUERY
		SELECT 'online', count(*),
			   count(*) FILTER (WHERE (o.features->>'clicks')::int IS DISTINCT FROM fhc_native(o.entity, 'infinity')),
			   count(*) FILTER (WHERE o.source = 'offline')
		FROM pgpoly.get_online_features('fhc_user', ARRAY(SELECT e FROM fhc_ents ORDER BY e COLLATE "en-x-icu")) o;
	ELSE
		RETURN QUERY
		SELECT 'materialize', count(*), count(*) FILTER (WHERE u.clicks IS DISTINCT FROM fhc_native(u.user_id, now())),
			   count(u.clicks)
		FROM fhc_user u;
	END IF;
END $$;
-- The steps, each run as its own statement (\gexec): the lookups against
-- the native answer, then their plans (the join's probe, the serving
-- fallback's statement, a user's own query with a literal: all descend the
-- entity index).
CREATE VIEW fhc_steps AS
SELECT q FROM unnest(ARRAY[
	'SELECT * FROM fhc_check(''pit'')',
	'DELETE FROM fhc_user',
	'SELECT * FROM fhc_check(''online'')',
	'DELETE FROM fhc_user',
	'SELECT pgpoly.materialize(''fhc_user'')',
	'SELECT * FROM fhc_check(''materialize'')',
	-- materialize walked the index
	'SELECT pgpoly._fv_newest_usable(''pgpoly.fhc_user_history'', ''entity'') AS walk',
	'SET enable_seqscan = off',
	'SET enable_bitmapscan = off',
	'EXPLAIN (COSTS OFF) SELECT * FROM ' ||
	(pgpoly._fv_pit_query($$SELECT 'a'::text COLLATE "en-x-icu" AS user_id, now() AS event_time$$,
						  '{fhc_user:clicks}')).from_clause,
	(SELECT 'PREPARE fhc_probe(text[], bool[], timestamptz[], timestamptz) AS ' ||
			pgpoly._fv_offline_sql(v.offline_rel, v.entity_column, v.entity_match, v.serving_rel,
								   v.key_column, v.key_type, v.features, v.features, false,
								   pgpoly._fv_entity_is_key(v))
	 FROM pgpoly._fv_lookup('fhc_user') v),
	'EXPLAIN (COSTS OFF) EXECUTE fhc_probe(''{a}'', ''{f}'', ''{NULL}'', NULL)',
	'DEALLOCATE fhc_probe',
	'EXPLAIN (COSTS OFF) SELECT clicks FROM pgpoly.fhc_user_history WHERE entity = ''a'' '
	'ORDER BY event_time DESC, created_at DESC LIMIT 1',
	'RESET enable_seqscan',
	'RESET enable_bitmapscan']) WITH ORDINALITY s(q, i) ORDER BY i;
SELECT q FROM fhc_steps \gexec

-- A query of yours comparing the entity to a column of another non-default
-- collation must name the collation to use (two implicit collations).
CREATE TABLE fhc_icu (e text COLLATE "en-x-icu");
INSERT INTO fhc_icu VALUES ('a'), (U&'\00C4');
SELECT count(*) FROM pgpoly.fhc_user_history h JOIN fhc_icu t ON h.entity = t.e;
SELECT count(*) FROM pgpoly.fhc_user_history h JOIN fhc_icu t ON h.entity = t.e COLLATE "C";
DROP TABLE fhc_icu;

-- A history table created before: the entity under the database's default
-- collation, the index deduplicating.  The same lookups, the same answers,
-- the same index.
DROP INDEX pgpoly.fhc_user_history_entity_time_idx;
ALTER TABLE pgpoly.fhc_user_history ALTER COLUMN entity TYPE text COLLATE pg_catalog."default";
CREATE INDEX fhc_user_history_entity_time_idx
	ON pgpoly.fhc_user_history (entity, event_time DESC, created_at DESC);
SELECT c.relname, c.reloptions, i.indcollation[0]::regcollation AS collation
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = 'pgpoly.fhc_user_history'::regclass AND c.relname LIKE '%entity%';
SELECT q FROM fhc_steps \gexec

-- Clean up.
SELECT pgpoly.drop_feature_view('fhc_user', drop_tables => true);
DELETE FROM pgpoly.lineage_edges WHERE src_name LIKE 'public.fhc\_%' OR dst_name LIKE 'fhc\_%';
DELETE FROM pgpoly.datasets WHERE name LIKE 'public.fhc\_%';
DELETE FROM fhc_user;
DROP VIEW fhc_steps;
DROP FUNCTION fhc_check;
DROP FUNCTION fhc_native;
DROP TABLE fhc_ents;
DROP FOREIGN TABLE fhc_user;
DROP USER MAPPING FOR CURRENT_USER SERVER fhc;
DROP SERVER fhc;
