--
-- ingest_features' newest row of each entity (pgpoly._ingest_newest and
-- pgpoly._ingest_is_newest, src/ingest.c), differentially against the
-- DISTINCT ON (k COLLATE "C") ... ORDER BY k COLLATE "C", et DESC, ord DESC
-- it replaces: the same rows over entities that differ in case, trailing
-- blanks or length only, compressed (TOASTed) ones, heavy ties of event
-- time, infinities, NULLs, row numbers with gaps, fed in any order; and
-- end to end, what ingest_features leaves in Redis.
--
\getenv redis_port REDIS_PORT
\set VERBOSITY terse
\set SHOW_CONTEXT never
SET client_min_messages = warning;
SELECT setseed(0.25);

-- 30k rows over ~1200 entities, 6 event times (with the infinities)
CREATE TABLE ign_rows (ord bigint, k text, et timestamptz);
ALTER TABLE ign_rows ALTER k SET STORAGE MAIN;
INSERT INTO ign_rows
SELECT g * 3 + (g % 2),		-- gaps, not in the order of the rows
	   CASE WHEN random() < 0.01 THEN NULL
			ELSE (ARRAY['a', 'A', 'a ', 'ä', '', 'ab', repeat('x', 3000), repeat('x', 3001)])
				 [1 + (random() * 7)::int] || CASE WHEN random() < 0.5 THEN (random() * 150)::int::text ELSE '' END
	   END,
	   CASE WHEN random() < 0.01 THEN NULL
			ELSE (ARRAY['-infinity', '2024-01-01', '2024-01-01 00:00:00.000001', '2024-01-02',
						'infinity']::timestamptz[])[1 + (random() * 4)::int]
	   END
FROM generate_series(1, 30000) g;
-- some entities stored compressed
SELECT count(*) > 0 AS compressed FROM ign_rows WHERE pg_column_compression(k) IS NOT NULL;

-- the rows kept either way (the aggregate fed in random order), and the
-- rows by which they differ
CREATE TABLE ign_kept AS
WITH nw AS (SELECT pgpoly._ingest_newest(r.k, r.et, r.ord ORDER BY random()) AS b FROM ign_rows r)
SELECT r.ord FROM ign_rows r, nw WHERE pgpoly._ingest_is_newest(nw.b, r.ord);
CREATE TABLE ign_ref AS
SELECT DISTINCT ON (r.k COLLATE "C") r.ord FROM ign_rows r
WHERE r.k IS NOT NULL AND r.et IS NOT NULL
ORDER BY r.k COLLATE "C", r.et DESC, r.ord DESC;
SELECT count(*) AS kept, count(DISTINCT ord) AS distinct_kept FROM ign_kept;
SELECT count(*) AS entities FROM (SELECT DISTINCT k COLLATE "C" FROM ign_rows
								  WHERE k IS NOT NULL AND et IS NOT NULL) e;
(SELECT 'hash only' AS side, ord FROM ign_kept EXCEPT SELECT 'hash only', ord FROM ign_ref)
UNION ALL
(SELECT 'sort only', ord FROM ign_ref EXCEPT SELECT 'sort only', ord FROM ign_kept);

-- ties of entity and event time: the larger row number, wherever it comes
SELECT r.ord FROM (VALUES (5::bigint), (9), (7)) r(ord), LATERAL (
	SELECT pgpoly._ingest_newest('a', timestamptz '2024-01-01', o.ord ORDER BY o.ord DESC) AS b
	FROM (VALUES (5::bigint), (9), (7)) o(ord)) nw
WHERE pgpoly._ingest_is_newest(nw.b, r.ord);
-- no rows, only NULLs: NULL, nothing kept
SELECT pgpoly._ingest_newest(k, et, ord) IS NULL AS none FROM ign_rows WHERE false;
SELECT pgpoly._ingest_newest(NULL::text, et, ord) IS NULL AS none FROM ign_rows;
-- row numbers it cannot hold; ones it does not know
SELECT pgpoly._ingest_newest('a', now(), 0);
SELECT pgpoly._ingest_newest('a', now(), 9000000000000);
SELECT o, pgpoly._ingest_is_newest('\x02'::bytea, o) FROM unnest('{-1, 0, 1, 8, 9}'::bigint[]) o;
SELECT pgpoly._ingest_is_newest(NULL, 1) IS NULL AS unknown;

-- its rows are estimated as DISTINCT ON estimates the entities: 200 of
-- 100k (so the batched join to Redis is planned over them as before),
-- all of 50
CREATE FUNCTION ign_rows_estimate(q text) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE
	p json;
BEGIN
	EXECUTE 'EXPLAIN (FORMAT JSON) ' || q INTO p;
	RETURN p -> 0 -> 'Plan' -> 'Plan Rows';
END $$;
SELECT ign_rows_estimate($$WITH s AS MATERIALIZED (SELECT g::bigint AS ord FROM generate_series(1, 100000) g)
	SELECT * FROM s WHERE pgpoly._ingest_is_newest('\x02', s.ord)$$) AS of_100k,
	   ign_rows_estimate($$WITH s AS MATERIALIZED (SELECT g::bigint AS ord FROM generate_series(1, 50) g)
	SELECT * FROM s WHERE pgpoly._ingest_is_newest('\x02', s.ord)$$) AS of_50;

-- end to end: 6000 source rows of ~700 entities with ties, into a view whose
-- Redis holds 100 of them already (some newer, some as new, some older);
-- rounds of 50 keys
CREATE SERVER ign FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER ign;
CREATE FOREIGN TABLE ign_on (user_id text OPTIONS (key 'true'), clicks int, tag text)
	SERVER ign OPTIONS (key_prefix 'regress_ign:', fetch_size '50');
SELECT pgpoly.create_feature_view('ign', 'user_id', 'ign_on');
SELECT count(pgpoly.put_features('ign', 'e' || i, jsonb_build_object('clicks', -i, 'tag', 'held'),
								 timestamptz '2024-01-01' + (i % 7) * interval '1 hour'))
FROM generate_series(0, 99) i;
CREATE TABLE ign_held AS SELECT user_id, clicks, tag, _event_time FROM pgpoly.ign_serving;
CREATE TABLE ign_src AS
SELECT g, 'e' || (random() * 700)::int AS user_id,
	   timestamptz '2024-01-01' + (random() * 5)::int * interval '1 hour' AS event_time,
	   g AS clicks, md5(g::text) AS tag
FROM generate_series(1, 6000) g;
SELECT pgpoly.ingest_features('ign', 'SELECT user_id, event_time, clicks, tag FROM ign_src ORDER BY g');
-- expected: each entity's newest source row, unless Redis held a newer one
CREATE TABLE ign_expected AS
WITH newest AS (SELECT DISTINCT ON (s.user_id COLLATE "C") s.user_id, s.clicks, s.tag, s.event_time
				FROM ign_src s ORDER BY s.user_id COLLATE "C", s.event_time DESC, s.g DESC)
SELECT n.user_id, n.clicks, n.tag, n.event_time AS _event_time
FROM newest n LEFT JOIN ign_held h ON h.user_id = n.user_id
WHERE h._event_time IS NULL OR h._event_time <= n.event_time
UNION ALL
SELECT h.* FROM ign_held h LEFT JOIN newest n ON n.user_id = h.user_id
WHERE n.user_id IS NULL OR h._event_time > n.event_time;
SELECT count(*) AS online, count(*) FILTER (WHERE tag = 'held') AS held_kept FROM pgpoly.ign_serving;
(SELECT 'redis only' AS side, * FROM pgpoly.ign_serving EXCEPT SELECT 'redis only', * FROM ign_expected)
UNION ALL
(SELECT 'expected only', * FROM ign_expected EXCEPT SELECT 'expected only', * FROM pgpoly.ign_serving);

-- clean up
DELETE FROM pgpoly.ign_serving;
SELECT pgpoly.drop_feature_view('ign', drop_tables => true);
DELETE FROM pgpoly.lineage_edges WHERE dst_name LIKE 'ign\_%' OR src_name LIKE 'pgpoly.ign\_%';
DELETE FROM pgpoly.datasets WHERE name LIKE 'ign\_%' OR name LIKE 'pgpoly.ign\_%';
DROP TABLE ign_rows, ign_kept, ign_ref, ign_held, ign_src, ign_expected;
DROP FUNCTION ign_rows_estimate(text);
DROP SERVER ign CASCADE;
