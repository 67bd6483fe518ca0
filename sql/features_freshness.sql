-- feature_freshness: the newest offline event time of each view, checked
-- against max(event_time) of the same table after every kind of change
-- (rows appended in time order, back-filled, deleted from the table's end,
-- future and infinite event times, updated), for the default history table,
-- a user's partitioned offline table and one without an index; and the
-- default history table's index on event_time is a BRIN (its maintenance
-- costs every write next to nothing; the btree it replaced cost each
-- ingested row a second index insertion).
\getenv redis_port REDIS_PORT
SET timezone = 'UTC';
CREATE SERVER ffr FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER ffr;
CREATE FOREIGN TABLE ffr_user (user_id text OPTIONS (key 'true'), clicks int)
  SERVER ffr OPTIONS (key_prefix 'ffr_user:');
SELECT pgpoly.create_feature_view('ffr_user', 'user_id', 'ffr_user');
SELECT indexrelid::regclass AS index, am.amname, pg_get_indexdef(indexrelid) ~ 'autosummarize' AS autosummarize
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
WHERE indrelid = 'pgpoly.ffr_user_history'::regclass ORDER BY 1::text;

-- differs(): the views whose newest_event_time is not max(event_time) of
-- their offline table (an empty result is right)
CREATE FUNCTION differs() RETURNS TABLE (view_name text, shown timestamptz, actual timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
	r record;
	m timestamptz;
BEGIN
	FOR r IN SELECT f.name, f.offline_table, x.newest_event_time
			 FROM pgpoly.feature_views f JOIN pgpoly.feature_freshness x ON x.view_name = f.name
			 WHERE f.name LIKE 'ffr%' LOOP
		EXECUTE format('SELECT max(event_time) FROM %s', r.offline_table) INTO m;
		IF m IS DISTINCT FROM r.newest_event_time THEN
			view_name := r.name; shown := r.newest_event_time; actual := m;
			RETURN NEXT;
		END IF;
	END LOOP;
END $$;

-- a user's partitioned offline table, and one without any index
CREATE FOREIGN TABLE ffr_part (user_id text OPTIONS (key 'true'), clicks int)
  SERVER ffr OPTIONS (key_prefix 'ffr_part:');
CREATE TABLE ffr_part_hist (entity text, event_time timestamptz, created_at timestamptz DEFAULT clock_timestamp(),
                            clicks int) PARTITION BY RANGE (event_time);
CREATE TABLE ffr_part_old PARTITION OF ffr_part_hist FOR VALUES FROM (MINVALUE) TO ('2024-01-01');
CREATE TABLE ffr_part_new PARTITION OF ffr_part_hist FOR VALUES FROM ('2024-01-01') TO (MAXVALUE);
SELECT pgpoly.create_feature_view('ffr_part', 'user_id', 'ffr_part', 'ffr_part_hist');
CREATE FOREIGN TABLE ffr_heap (user_id text OPTIONS (key 'true'), clicks int)
  SERVER ffr OPTIONS (key_prefix 'ffr_heap:');
CREATE TABLE ffr_heap_hist (entity text, event_time timestamptz, created_at timestamptz DEFAULT clock_timestamp(),
                            clicks int);
SELECT pgpoly.create_feature_view('ffr_heap', 'user_id', 'ffr_heap', 'ffr_heap_hist');

-- empty tables
SELECT view_name, newest_event_time FROM pgpoly.feature_freshness
WHERE view_name LIKE 'ffr%' ORDER BY 1;
SELECT * FROM differs();

-- fill(n, start, step): n rows per table, the i-th at start + i * step
CREATE FUNCTION fill(n int, start timestamptz, step interval) RETURNS void LANGUAGE sql AS $$
	INSERT INTO pgpoly.ffr_user_history (entity, event_time, clicks)
	SELECT 'u' || i % 500, start + i * step, i FROM generate_series(1, n) i;
	INSERT INTO ffr_part_hist (entity, event_time, clicks)
	SELECT 'u' || i % 500, start + i * step, i FROM generate_series(1, n) i;
	INSERT INTO ffr_heap_hist (entity, event_time, clicks)
	SELECT 'u' || i % 500, start + i * step, i FROM generate_series(1, n) i;
$$;
-- each table far larger than the newest pages' share
SELECT fill(60000, '2023-06-01', '1 minute');
SELECT pg_relation_size('pgpoly.ffr_user_history') > 200 * 8192 AS large;
SELECT * FROM differs();
VACUUM pgpoly.ffr_user_history;		-- the BRIN summarised
SELECT * FROM differs();
-- back-filled: older rows appended last
SELECT fill(20000, '2020-01-01', '1 second');
SELECT * FROM differs();
-- the newest rows deleted: the table's end holds only old ones
DELETE FROM pgpoly.ffr_user_history WHERE event_time > '2023-07-15';
DELETE FROM ffr_part_hist WHERE event_time > '2023-07-15';
DELETE FROM ffr_heap_hist WHERE event_time > '2023-07-15';
SELECT * FROM differs();
-- the end of the table emptied (deleted and vacuumed, pages kept)
DELETE FROM pgpoly.ffr_user_history WHERE event_time < '2021-01-01';
DELETE FROM ffr_heap_hist WHERE event_time < '2021-01-01';
SELECT * FROM differs();
VACUUM pgpoly.ffr_user_history;
SELECT * FROM differs();
-- one future row in the middle of the table, then infinity
UPDATE pgpoly.ffr_user_history SET event_time = '2030-01-01' WHERE clicks = 1000;
UPDATE ffr_heap_hist SET event_time = '2030-01-01' WHERE clicks = 1000;
UPDATE ffr_part_hist SET event_time = '2030-01-01' WHERE clicks = 1000;
SELECT * FROM differs();
SELECT view_name, newest_event_time FROM pgpoly.feature_freshness WHERE view_name LIKE 'ffr%' ORDER BY 1;
UPDATE pgpoly.ffr_user_history SET event_time = 'infinity' WHERE clicks = 2000;
SELECT * FROM differs();
-- in a transaction that deletes the newest row, then rolls it back
BEGIN;
DELETE FROM pgpoly.ffr_user_history WHERE event_time = 'infinity';
SELECT * FROM differs();
ROLLBACK;
SELECT * FROM differs();
-- appended again in time order, then emptied
SELECT fill(30000, '2025-01-01', '1 second');
SELECT * FROM differs();
TRUNCATE pgpoly.ffr_user_history, ffr_part_hist, ffr_heap_hist;
SELECT * FROM differs();
-- the newest row first in the table, far from its end
SELECT fill(1, '2031-01-01', '1 second');
SELECT fill(60000, '2023-06-01', '1 minute');
VACUUM pgpoly.ffr_user_history;
SELECT * FROM differs();
SELECT view_name, newest_event_time FROM pgpoly.feature_freshness WHERE view_name LIKE 'ffr%' ORDER BY 1;
TRUNCATE pgpoly.ffr_user_history, ffr_part_hist, ffr_heap_hist;
SELECT view_name, newest_event_time FROM pgpoly.feature_freshness WHERE view_name LIKE 'ffr%' ORDER BY 1;

SELECT pgpoly.drop_feature_view('ffr_user');
SELECT pgpoly.drop_feature_view('ffr_part');
SELECT pgpoly.drop_feature_view('ffr_heap');
DROP TABLE ffr_part_hist, ffr_heap_hist;
DROP FUNCTION differs();
DROP FUNCTION fill(int, timestamptz, interval);
DROP SERVER ffr CASCADE;
