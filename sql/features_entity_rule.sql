-- One entity identity rule for training and serving: an entity is its
-- canonical stored text (its Redis key), byte for byte, on every path.
-- Features are written with put_features and ingest_features; then, for
-- every spine entity, the point-in-time join (get_historical_features and
-- create_training_set) must return exactly what get_online_features serves
-- for it (online, and from the offline fallback of the C and the PL/pgSQL
-- implementation), and what a native query matching the canonical text
-- exactly gives.  Offline entity columns whose type merges spellings the
-- key keeps apart: citext ('A'/'a'), a nondeterministic ICU collation
-- ('A'/'a', and 'é' composed/decomposed), numeric (1.0/1.00); and an int
-- key, whose spellings '007', ' 7' and '7' are all entity '7'.
\getenv redis_port REDIS_PORT
SET timezone = 'UTC';
CREATE EXTENSION citext;
CREATE COLLATION fer_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE SERVER fer FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER fer;

-- A view fer_<name>: online key of type key, offline entity column of type
-- typ (with the lookups' index).  canon is the entity's canonical text as a
-- format() template of an SQL expression (what the native query matches).
CREATE TABLE fer_views (name text PRIMARY KEY, canon text);
CREATE FUNCTION fer_view(name text, key text, typ text, canon text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('CREATE FOREIGN TABLE fer_%s_on (user_id %s OPTIONS (key ''true''), '
				   'clicks int, _event_time timestamptz) SERVER fer OPTIONS (key_prefix %L)',
				   name, key, 'regress_fer_' || name || ':');
	EXECUTE format('CREATE TABLE fer_%s_off (entity %s NOT NULL, event_time timestamptz NOT NULL, '
				   'created_at timestamptz NOT NULL DEFAULT clock_timestamp(), clicks int)', name, typ);
	EXECUTE format('CREATE INDEX ON fer_%1$s_off (entity, event_time DESC, created_at DESC)', name);
	PERFORM pgpoly.create_feature_view('fer_' || name, 'user_id', format('fer_%s_on', name)::regclass,
									   format('fer_%s_off', name)::regclass, ttl => '1 day');
	INSERT INTO fer_views VALUES (name, canon);
END $$;

-- Per spine entity of ents (all at time t): clicks from
-- get_historical_features, create_training_set, get_online_features ('c'
-- or 'sql': the PL/pgSQL implementation) and the native point-in-time
-- query matching the canonical text byte for byte, with the source
-- get_online_features gave.  In a read-only transaction there is no
-- training set (NULL).
CREATE FUNCTION fer_compare(name text, ents text[], impl text DEFAULT 'c', t timestamptz DEFAULT now())
RETURNS TABLE (entity text, pit int, training int, serving int, source text, native int)
LANGUAGE plpgsql AS $$
DECLARE
	v_canon text := (SELECT v.canon FROM fer_views v WHERE v.name = fer_compare.name);
	v_spine text := format('SELECT u AS user_id, %L::timestamptz AS event_time '
						   'FROM unnest(%L::text[]) WITH ORDINALITY x(u, i) ORDER BY i', t, ents);
	v_ro    bool := current_setting('transaction_read_only')::bool;
BEGIN
	IF NOT v_ro THEN
		PERFORM pgpoly.create_training_set('fer_ts', v_spine, ARRAY['fer_' || name || ':clicks']);
	END IF;
	RETURN QUERY EXECUTE format($q$
		SELECT e.e, (g.features->>'fer_%1$s__clicks')::int, ts.c,
			   (o.features->>'clicks')::int, o.source, h.clicks
		FROM unnest($1) WITH ORDINALITY e(e, i)
		JOIN (SELECT * FROM pgpoly.get_historical_features(%2$L, ARRAY['fer_%1$s:clicks'])) g
		  ON g.row_no = e.i
		LEFT JOIN (%6$s) ts ON ts.i = e.i
		JOIN (SELECT row_number() OVER () AS i, o.*
			  FROM pgpoly.%3$s('fer_%1$s', $1, NULL) AS o(entity, features, event_time, source)) o
		  ON o.i = e.i
		LEFT JOIN LATERAL (SELECT * FROM fer_%1$s_off h
						   WHERE %4$s COLLATE "C" = %5$s COLLATE "C"
							 AND h.event_time <= $2 AND h.event_time >= $2 - interval '1 day'
						   ORDER BY h.event_time DESC, h.created_at DESC LIMIT 1) h ON true
		ORDER BY e.i$q$,
		name, v_spine,
		CASE impl WHEN 'c' THEN 'get_online_features' ELSE '_get_online_features' END,
		format(v_canon, 'h.entity'), format(v_canon, 'e.e'),
		CASE WHEN v_ro THEN 'SELECT NULL::bigint AS i, NULL::int AS c'
			 ELSE format('SELECT row_number() OVER () AS i, t.fer_%s__clicks AS c FROM fer_ts t', name) END)
	USING ents, t;
	IF NOT v_ro THEN
		DROP TABLE fer_ts;
		DELETE FROM pgpoly.lineage_edges l WHERE l.dst_name = 'fer_ts';
		DELETE FROM pgpoly.datasets d WHERE d.name = 'fer_ts';
	END IF;
END $$;

-- Rows the online table and the newest offline row per canonical text
-- (within the ttl) differ by, both ways.
CREATE FUNCTION fer_online_diff(name text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
	v_canon text := (SELECT v.canon FROM fer_views v WHERE v.name = fer_online_diff.name);
	n bigint;
BEGIN
	EXECUTE format($q$
		WITH got AS (SELECT %2$s AS k, o.clicks, o._event_time FROM fer_%1$s_on o),
		want AS (SELECT DISTINCT ON (%3$s COLLATE "C") %3$s, h.clicks, h.event_time
				 FROM fer_%1$s_off h
				 ORDER BY %3$s COLLATE "C", h.event_time DESC, h.created_at DESC)
		SELECT count(*) FROM ((TABLE got EXCEPT ALL TABLE want)
							  UNION ALL (TABLE want EXCEPT ALL TABLE got)) d$q$,
		name, format(v_canon, 'o.user_id'), format(v_canon, 'h.entity'))
	INTO n;
	RETURN n;
END $$;

SELECT fer_view('cit', 'text', 'citext', '(%s)::text'),
       fer_view('nd', 'text', 'text COLLATE fer_ci', '(%s)::text'),
       fer_view('num', 'numeric', 'numeric', '(%s)::numeric::text'),
       fer_view('int', 'int', 'int', '(%s)::int::text');

-- Writes: the older spelling of each pair is written last, so that the
-- newest row of the type's equality is another entity's.
SELECT pgpoly.put_features('fer_cit', 'A', '{"clicks": 1}', now() - interval '1 hour'),
       pgpoly.put_features('fer_cit', 'a', '{"clicks": 2}', now() - interval '2 hours'),
       pgpoly.put_features('fer_cit', 'b', '{"clicks": 3}', now() - interval '1 hour');
SELECT pgpoly.ingest_features('fer_nd', $$
  SELECT * FROM (VALUES ('A', now() - interval '1 hour', 1), ('a', now() - interval '2 hours', 2),
                        (U&'\00E9', now() - interval '1 hour', 3),
                        (U&'e\0301', now() - interval '2 hours', 4),
                        ('a', now() - interval '3 hours', 5)) s(user_id, event_time, clicks)$$);
SELECT pgpoly.put_features('fer_num', '1.0', '{"clicks": 1}', now() - interval '1 hour'),
       pgpoly.put_features('fer_num', '1.00', '{"clicks": 2}', now() - interval '2 hours');
SELECT pgpoly.ingest_features('fer_num', $$
  SELECT * FROM (VALUES (2.5, now() - interval '1 hour', 3), (2.50, now() - interval '2 hours', 4))
    s(user_id, event_time, clicks)$$);
SELECT pgpoly.put_features('fer_int', '007', '{"clicks": 1}', now() - interval '2 hours'),
       pgpoly.put_features('fer_int', ' 7', '{"clicks": 2}', now() - interval '1 hour'),
       pgpoly.put_features('fer_int', '8', '{"clicks": 3}', now() - interval '1 hour');
SELECT pgpoly.ingest_features('fer_int', $$SELECT '008' AS user_id, now() - interval '2 hours' AS event_time, 4 AS clicks$$);

-- Every entity as online serves it: pit = training = serving = native.
SELECT * FROM fer_compare('cit', '{a,A,b,B,nope}');
SELECT * FROM fer_compare('nd', ARRAY['a', 'A', U&'\00E9', U&'e\0301', U&'\00C9', 'nope']);
SELECT * FROM fer_compare('num', '{1.0,1.00,1,2.5,2.50,3}');
SELECT * FROM fer_compare('int', '{007,7," 7",8,008,9}');
-- The text recheck is the built-in equality whatever the caller's
-- search_path (the spine's): a shadowing case-insensitive = for text gave
-- 'a' the value of 'A'.
CREATE SCHEMA fer_evil;
CREATE FUNCTION fer_evil.ci_eq(text, text) RETURNS bool LANGUAGE sql IMMUTABLE
  AS 'SELECT lower($1) OPERATOR(pg_catalog.=) lower($2)';
CREATE OPERATOR fer_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = fer_evil.ci_eq);
SET search_path = fer_evil, pg_catalog, public;
SELECT g.spine->>'user_id' AS entity, g.features
FROM pgpoly.get_historical_features($$SELECT u AS user_id, now() AS event_time
                                      FROM unnest('{a,A}'::text[]) u$$, '{fer_cit:clicks}') g;
RESET search_path;
DROP SCHEMA fer_evil CASCADE;
-- and at an earlier time, against the native query
SELECT entity, pit, training, native FROM fer_compare('cit', '{a,A}', t => now() - interval '90 minutes');
SELECT entity, pit, training, native FROM fer_compare('num', '{1.0,1.00}', t => now() - interval '90 minutes');

-- The offline fallback serves the same, in both implementations (read
-- only: nothing goes back online) ...
DELETE FROM fer_cit_on;
DELETE FROM fer_nd_on;
DELETE FROM fer_num_on;
DELETE FROM fer_int_on;
BEGIN READ ONLY;
SELECT * FROM fer_compare('cit', '{a,A,b,B,nope}');
SELECT * FROM fer_compare('cit', '{a,A,b,B,nope}', 'sql');
SELECT * FROM fer_compare('nd', ARRAY['a', 'A', U&'\00E9', U&'e\0301', U&'\00C9', 'nope']);
SELECT * FROM fer_compare('nd', ARRAY['a', 'A', U&'\00E9', U&'e\0301', U&'\00C9', 'nope'], 'sql');
SELECT * FROM fer_compare('num', '{1.0,1.00,1,2.5,2.50,3}', 'sql');
SELECT * FROM fer_compare('int', '{007,7," 7",8,008,9}', 'sql');
ROLLBACK;
-- ... and writes back under each entity's own key what it served
SELECT source, count(*) FROM pgpoly.get_online_features('fer_cit', '{a,A,b}') GROUP BY 1;
SELECT source, count(*) FROM pgpoly.get_online_features('fer_nd', ARRAY['a', 'A', U&'\00E9', U&'e\0301']) GROUP BY 1;
SELECT o_source, count(*) FROM pgpoly._get_online_features('fer_num', '{1.0,1.00,2.5,2.50}', NULL) GROUP BY 1;
SELECT fer_online_diff('cit') AS cit, fer_online_diff('nd') AS nd, fer_online_diff('num') AS num;
SELECT * FROM fer_compare('cit', '{a,A,b,B,nope}');
SELECT * FROM fer_compare('nd', ARRAY['a', 'A', U&'\00E9', U&'e\0301', U&'\00C9', 'nope']);

-- materialize writes the newest row of each canonical text: what online
-- held (the same, in every view)
DELETE FROM fer_cit_on;
DELETE FROM fer_nd_on;
DELETE FROM fer_num_on;
SELECT pgpoly.materialize('fer_cit') AS cit, pgpoly.materialize('fer_nd') AS nd,
       pgpoly.materialize('fer_num') AS num, pgpoly.materialize('fer_int') AS int;
SELECT fer_online_diff('cit') AS cit, fer_online_diff('nd') AS nd, fer_online_diff('num') AS num,
       fer_online_diff('int') AS int;
SELECT * FROM fer_compare('num', '{1.0,1.00,1,2.5,2.50,3}');

-- A row of the user's offline table that no lookup finds is no entity's:
-- with an int key, a text entity column's '007' (the lookups of entity 7
-- look for '7').  materialize skips it as the point-in-time join and the
-- fallback do (it served its newer value online as entity 7).
SELECT fer_view('itx', 'int', 'text', '(%s)::text');
INSERT INTO fer_itx_off (entity, event_time, clicks)
VALUES ('7', now() - interval '2 hours', 1), ('007', now() - interval '1 hour', 2),
       (' 8', now() - interval '1 hour', 3);
BEGIN READ ONLY;
SELECT * FROM fer_compare('itx', '{7,8}');
ROLLBACK;
SELECT pgpoly.materialize('fer_itx');
SELECT * FROM fer_compare('itx', '{7,8}');

-- A timestamptz key with a timestamp entity column: the column holds the
-- key's UTC time (writing '2024-01-02 10:00:00+00' into it stores 10:00),
-- so every path reads it back as UTC whatever the TimeZone (in Tokyo the
-- recheck read it as 01:00 UTC: the point-in-time join missed it,
-- put_features refused the entity, materialize wrote it under another key).
SELECT fer_view('tsn', 'timestamptz', 'timestamp', '(%s)::timestamp::text');
SELECT pgpoly.put_features('fer_tsn', '2024-01-02 10:00:00+00', '{"clicks": 1}', now() - interval '1 hour');
SET timezone = 'Asia/Tokyo';
SELECT * FROM fer_compare('tsn', '{2024-01-02 10:00:00+00}');
SELECT pgpoly.put_features('fer_tsn', '2024-01-02 10:00:00+00', '{"clicks": 2}', now() - interval '30 minutes');
DELETE FROM fer_tsn_on;
SELECT pgpoly.materialize('fer_tsn');
SELECT user_id, clicks FROM fer_tsn_on;
SELECT * FROM fer_compare('tsn', '{2024-01-02 10:00:00+00}');
SET timezone = 'UTC';

-- The lookups still descend the offline index (one probe per entity), the
-- text a filter on the rows it finds.
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT pgpoly._fv_offline_sql(v.offline_rel, v.entity_column, v.entity_match, v.serving_rel,
                              v.key_column, v.key_type, v.features, v.features, false,
                              pgpoly._fv_entity_is_key(v)) AS probe
FROM pgpoly._fv_lookup('fer_cit') v \gset
PREPARE fer_probe(text[], bool[], timestamptz[], timestamptz) AS :probe;
EXPLAIN (COSTS OFF) EXECUTE fer_probe('{a}', '{f}', '{NULL}', NULL);
DEALLOCATE fer_probe;
SELECT (pgpoly._fv_pit_query($$SELECT '1.0'::text AS user_id, now() AS event_time$$,
                             '{fer_num:clicks}')).from_clause AS pit \gset
EXPLAIN (COSTS OFF) SELECT * FROM :pit;
RESET enable_seqscan;
RESET enable_bitmapscan;
-- Where the column's equality is the key's (text, int, uuid of the key's
-- type) there is no recheck: a filter on the probe made the planner fetch
-- and sort all of an entity's rows (a bitmap heap scan) instead of reading
-- the index in order and stopping at the first row.
SELECT fer_view('txt', 'text', 'text', '(%s)::text'), fer_view('i8', 'bigint', 'bigint', '(%s)::bigint::text');
INSERT INTO fer_txt_off (entity, event_time, clicks)
SELECT 'u' || (i % 20), now() - i * interval '1 minute', i FROM generate_series(1, 4000) i;
INSERT INTO fer_i8_off (entity, event_time, clicks)
SELECT i % 20, now() - i * interval '1 minute', i FROM generate_series(1, 4000) i;
ANALYZE fer_txt_off, fer_i8_off;
SELECT (pgpoly._fv_pit_query($$SELECT 'u' || i AS user_id, now() AS event_time FROM generate_series(1, 5) i$$,
                             '{fer_txt:clicks}')).from_clause AS pit \gset
EXPLAIN (COSTS OFF) SELECT * FROM :pit;
SELECT (pgpoly._fv_pit_query($$SELECT i AS user_id, now() AS event_time FROM generate_series(1, 5) i$$,
                             '{fer_i8:clicks}')).from_clause AS pit \gset
EXPLAIN (COSTS OFF) SELECT * FROM :pit;
SELECT * FROM fer_compare('txt', '{u1,u2,u19,u20}');
SELECT * FROM fer_compare('i8', '{1,02,19,20}');

-- Clean up.
SELECT count(pgpoly.drop_feature_view(f.name)) FROM pgpoly.feature_views f WHERE f.name LIKE 'fer\_%';
DELETE FROM pgpoly.lineage_edges WHERE src_name LIKE 'public.fer\_%' OR dst_name LIKE 'fer\_%';
DELETE FROM pgpoly.datasets WHERE name LIKE 'public.fer\_%';
DELETE FROM fer_cit_on;
DELETE FROM fer_nd_on;
DELETE FROM fer_num_on;
DELETE FROM fer_int_on;
DELETE FROM fer_itx_on;
DELETE FROM fer_txt_on;
DELETE FROM fer_i8_on;
DELETE FROM fer_tsn_on;
DROP TABLE fer_cit_off, fer_nd_off, fer_num_off, fer_int_off, fer_itx_off, fer_txt_off, fer_i8_off,
  fer_tsn_off, fer_views;
DROP FOREIGN TABLE fer_cit_on, fer_nd_on, fer_num_on, fer_int_on, fer_itx_on, fer_txt_on, fer_i8_on,
  fer_tsn_on;
DROP SERVER fer CASCADE;
DROP FUNCTION fer_view(text, text, text, text), fer_compare(text, text[], text, timestamptz),
  fer_online_diff(text);
DROP COLLATION fer_ci;
DROP EXTENSION citext;
