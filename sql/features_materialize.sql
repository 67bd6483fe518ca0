-- materialize() reads the newest offline row of each entity through the
-- (entity, event_time DESC, created_at DESC) index, fetching only those rows
-- from the heap (pgpoly._fv_newest_rows): the same rows as the DISTINCT ON it
-- runs otherwise, whatever the snapshot cannot see (deleted, updated, rolled
-- back or uncommitted rows), ties and window bounds; used only where it may
-- be (such an index, no row-level security, the caller's SELECT privilege).
\getenv redis_port REDIS_PORT
SET timezone = 'UTC';
CREATE SERVER fsm FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
-- one mapping for every role (see features_security.sql)
DO $$
BEGIN
	CREATE USER MAPPING FOR PUBLIC SERVER fsm OPTIONS (password_required 'false');
EXCEPTION WHEN fdw_invalid_option_name THEN
	CREATE USER MAPPING FOR PUBLIC SERVER fsm;
END $$;
CREATE FUNCTION err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

CREATE FOREIGN TABLE fsm_online (user_id text OPTIONS (key 'true'), clicks int, note text)
  SERVER fsm OPTIONS (key_prefix 'regress_fsm:');
SELECT pgpoly.create_feature_view('fsm', 'user_id', 'fsm_online');
-- fillfactor 50 leaves room on each page for HOT updates
ALTER TABLE pgpoly.fsm_history SET (fillfactor = 50);

-- The newest rows of the window [since, until] as the DISTINCT ON finds them
-- (entity, event time, created_at and features; ties of all three are not
-- made here).
CREATE FUNCTION newest_sql(since timestamptz, until timestamptz)
RETURNS TABLE (entity text, event_time timestamptz, created_at timestamptz, clicks int, note text)
LANGUAGE sql AS $$
	SELECT DISTINCT ON (h.entity) h.entity, h.event_time, h.created_at, h.clicks, h.note
	FROM pgpoly.fsm_history h WHERE h.event_time BETWEEN since AND until
	ORDER BY h.entity, h.event_time DESC, h.created_at DESC
$$;
-- The same through the index walk.
CREATE FUNCTION newest_walk(since timestamptz, until timestamptz)
RETURNS TABLE (entity text, event_time timestamptz, created_at timestamptz, clicks int, note text)
LANGUAGE sql AS $$
	SELECT h.entity, h.event_time, h.created_at, h.clicks, h.note
	FROM pgpoly._fv_newest_rows(NULL::pgpoly.fsm_history, 'entity', since, until) h
$$;
-- Rows in one walk but not in the other, both ways, over several windows.
CREATE FUNCTION walk_differences() RETURNS bigint LANGUAGE sql AS $$
	SELECT count(*) FROM (VALUES ('-infinity'::timestamptz, 'infinity'::timestamptz),
	                             ('2024-01-02', '2024-01-04'), ('2024-01-03', '2024-01-03'),
	                             ('2024-01-05', '2024-01-01')) w(s, u),
	LATERAL ((SELECT * FROM newest_sql(w.s, w.u) EXCEPT ALL SELECT * FROM newest_walk(w.s, w.u))
	         UNION ALL
	         (SELECT * FROM newest_walk(w.s, w.u) EXCEPT ALL SELECT * FROM newest_sql(w.s, w.u))) d
$$;

-- 300 entities with 1..6 rows each over five days, same-day events of an
-- entity on distinct times, created_at distinct (clock_timestamp).
INSERT INTO pgpoly.fsm_history (entity, event_time, created_at, clicks, note)
SELECT 'e' || e, timestamptz '2024-01-01' + (d - 1) * interval '1 day' + (e % 7) * interval '1 hour',
       clock_timestamp(), e * 10 + d, 'n' || d
FROM generate_series(1, 300) e, generate_series(1, 5) d
WHERE d <= 1 + e % 6;
-- ties on event_time: the later created_at wins
INSERT INTO pgpoly.fsm_history (entity, event_time, created_at, clicks, note)
SELECT entity, event_time, created_at + interval '1 second', clicks + 1000, 'tie'
FROM pgpoly.fsm_history WHERE entity IN ('e3', 'e9', 'e27');
-- rows on the window bounds
INSERT INTO pgpoly.fsm_history (entity, event_time, clicks, note) VALUES
  ('b1', '2024-01-02', 1, 'on since'), ('b1', '2024-01-04', 2, 'on until'),
  ('b2', '2024-01-03', 3, 'the only one');
VACUUM ANALYZE pgpoly.fsm_history;
SELECT pgpoly._fv_newest_usable('pgpoly.fsm_history', 'entity') AS usable;
SELECT walk_differences();
SELECT count(*) FROM newest_walk('-infinity', 'infinity');
SELECT entity, event_time, clicks, note FROM newest_walk('2024-01-02', '2024-01-04')
  WHERE entity IN ('b1', 'b2', 'e27') ORDER BY entity;

-- What the snapshot cannot see is skipped: the newest rows of some entities
-- deleted, others updated (HOT: the index entry leads to the new version),
-- rows of a rolled-back transaction.
DELETE FROM pgpoly.fsm_history h USING newest_sql('-infinity', 'infinity') n
WHERE h.entity = n.entity AND h.created_at = n.created_at AND n.entity LIKE 'e1%';
BEGIN;
UPDATE pgpoly.fsm_history h SET clicks = -h.clicks, note = 'updated'
FROM newest_sql('-infinity', 'infinity') n
WHERE h.entity = n.entity AND h.created_at = n.created_at AND n.entity LIKE 'e2%';
SELECT n_tup_upd, n_tup_hot_upd > 0 AS some_hot FROM pg_stat_xact_user_tables
  WHERE relid = 'pgpoly.fsm_history'::regclass;
COMMIT;
BEGIN;
INSERT INTO pgpoly.fsm_history (entity, event_time, clicks, note)
SELECT 'e' || e, '2024-01-09', 0, 'rolled back' FROM generate_series(1, 300) e;
ROLLBACK;
SELECT walk_differences();
SELECT count(*) FILTER (WHERE note = 'updated') AS updated,
       count(*) FILTER (WHERE note = 'rolled back') AS rolled_back
  FROM newest_walk('-infinity', 'infinity');
-- the same after VACUUM (pruned HOT chains, all-visible pages)
VACUUM pgpoly.fsm_history;
SELECT walk_differences();
-- rows of the caller's own transaction
BEGIN;
INSERT INTO pgpoly.fsm_history (entity, event_time, clicks, note) VALUES
  ('e5', '2024-01-08', 5, 'mine'), ('new', '2024-01-08', 6, 'mine');
SELECT walk_differences();
SELECT entity, note FROM newest_walk('-infinity', 'infinity') WHERE note = 'mine' ORDER BY 1;
ROLLBACK;

-- the rows come back in the table's row type, a dropped column included
ALTER TABLE pgpoly.fsm_history ADD COLUMN junk int;
ALTER TABLE pgpoly.fsm_history DROP COLUMN junk;
SELECT walk_differences();
-- materialize() gives the same Redis contents either way: through the walk,
-- and with the index gone (the DISTINCT ON).
SELECT pgpoly.materialize('fsm', '2024-01-02', '2024-01-04');
CREATE TEMP TABLE online_walk AS SELECT * FROM pgpoly.fsm_serving;
DELETE FROM fsm_online;
DROP INDEX pgpoly.fsm_history_entity_time_idx;
SELECT pgpoly._fv_newest_usable('pgpoly.fsm_history', 'entity') AS usable;
SELECT pgpoly.materialize('fsm', '2024-01-02', '2024-01-04');
SELECT count(*) AS keys, (SELECT count(*) FROM (
  (SELECT * FROM pgpoly.fsm_serving EXCEPT ALL SELECT * FROM online_walk)
  UNION ALL (SELECT * FROM online_walk EXCEPT ALL SELECT * FROM pgpoly.fsm_serving)) d) AS differences
  FROM online_walk;
-- without the index, _fv_newest_rows gives the same rows (its own DISTINCT ON)
SELECT walk_differences();
-- also over more rows than one batch of its cursor (1000)
INSERT INTO pgpoly.fsm_history (entity, event_time, created_at, clicks, note)
SELECT 'bulk' || g, '2024-01-03', clock_timestamp(), g, NULL FROM generate_series(1, 2500) g;
SELECT walk_differences(), (SELECT count(*) FROM newest_walk('-infinity', 'infinity')) AS newest;
DELETE FROM pgpoly.fsm_history WHERE entity LIKE 'bulk%';

-- Only an index of exactly that order will do: not another order, a
-- partial, collated, expression or other-opclass index, nor one a failed
-- CREATE INDEX CONCURRENTLY left invalid (over a full duplicate row).
CREATE INDEX fsm_asc ON pgpoly.fsm_history (entity, event_time, created_at);
CREATE INDEX fsm_partial ON pgpoly.fsm_history (entity, event_time DESC, created_at DESC)
  WHERE clicks > 0;
CREATE INDEX fsm_collated ON pgpoly.fsm_history (entity COLLATE "POSIX", event_time DESC, created_at DESC);
CREATE INDEX fsm_expr ON pgpoly.fsm_history (lower(entity), event_time DESC, created_at DESC);
CREATE INDEX fsm_ops ON pgpoly.fsm_history (entity text_pattern_ops, event_time DESC, created_at DESC);
INSERT INTO pgpoly.fsm_history (entity, event_time, created_at, clicks, note)
SELECT 'zz', '2024-01-03', '2024-01-03', 7, 'dup' FROM generate_series(1, 2);
CREATE UNIQUE INDEX CONCURRENTLY fsm_invalid ON pgpoly.fsm_history (entity, event_time DESC, created_at DESC);
SELECT indisvalid FROM pg_index WHERE indexrelid = 'pgpoly.fsm_invalid'::regclass;
SELECT pgpoly._fv_newest_usable('pgpoly.fsm_history', 'entity') AS usable;
SELECT walk_differences();
DROP INDEX pgpoly.fsm_asc, pgpoly.fsm_partial, pgpoly.fsm_collated, pgpoly.fsm_expr,
  pgpoly.fsm_ops, pgpoly.fsm_invalid;
DELETE FROM pgpoly.fsm_history WHERE entity = 'zz';
CREATE INDEX fsm_history_entity_time_idx ON pgpoly.fsm_history (entity, event_time DESC, created_at DESC);
SELECT pgpoly._fv_newest_usable('pgpoly.fsm_history', 'entity') AS usable;
SELECT pgpoly._fv_newest_usable('pgpoly.fsm_history', 'nope') AS usable;

-- Row-level security: the walk is not used (materialize sees only the rows
-- the policies let it see, through the DISTINCT ON), nor by _fv_newest_rows.
CREATE ROLE regress_fsm_user;
GRANT USAGE ON SCHEMA pgpoly TO regress_fsm_user;
GRANT SELECT ON pgpoly.feature_views, pgpoly._feature_view_storage TO regress_fsm_user;
GRANT SELECT, INSERT, UPDATE ON fsm_online, pgpoly.fsm_serving TO regress_fsm_user;
GRANT SELECT ON pgpoly.fsm_history TO regress_fsm_user;
ALTER TABLE pgpoly.fsm_history ENABLE ROW LEVEL SECURITY;
CREATE POLICY fsm_b ON pgpoly.fsm_history FOR SELECT USING (entity LIKE 'b%');
DELETE FROM fsm_online;
SET ROLE regress_fsm_user;
SELECT pgpoly._fv_newest_usable('pgpoly.fsm_history', 'entity') AS usable;
SELECT count(*) AS rows, count(*) FILTER (WHERE entity NOT LIKE 'b%') AS hidden
  FROM pgpoly._fv_newest_rows(NULL::pgpoly.fsm_history, 'entity', '-infinity', 'infinity');
SELECT pgpoly.materialize('fsm', '2024-01-02', '2024-01-04');
RESET ROLE;
SELECT user_id, clicks FROM pgpoly.fsm_serving ORDER BY 1;
ALTER TABLE pgpoly.fsm_history DISABLE ROW LEVEL SECURITY;
-- and without SELECT on the table, nothing is read
REVOKE SELECT ON pgpoly.fsm_history FROM regress_fsm_user;
SET ROLE regress_fsm_user;
SELECT err($$SELECT pgpoly._fv_newest_rows(NULL::pgpoly.fsm_history, 'entity', '-infinity', 'infinity')$$);
RESET ROLE;

-- The DISTINCT ON returns whole rows, also of a table with a column named
-- as its alias h (a bare h would be that column, read as a row).
CREATE TABLE fsm_h (entity text NOT NULL, event_time timestamptz NOT NULL,
                    created_at timestamptz NOT NULL, h text, n int);
INSERT INTO fsm_h VALUES ('a', '2024-01-01', '2024-01-01', 'old', 1),
  ('a', '2024-01-02', '2024-01-02', 'new', 2), ('b', '2024-01-01', '2024-01-01', NULL, 3);
SELECT * FROM pgpoly._fv_newest_rows(NULL::fsm_h, 'entity', '-infinity', 'infinity') ORDER BY entity;
DROP TABLE fsm_h;

-- Clean up.
DELETE FROM fsm_online;
SELECT pgpoly.drop_feature_view('fsm', drop_tables => true);
DELETE FROM pgpoly.lineage_edges WHERE src_name = 'pgpoly.fsm_history';
DELETE FROM pgpoly.datasets WHERE name = 'pgpoly.fsm_history';
REVOKE ALL ON pgpoly.feature_views, pgpoly._feature_view_storage FROM regress_fsm_user;
REVOKE USAGE ON SCHEMA pgpoly FROM regress_fsm_user;
DROP FUNCTION err(text), newest_sql(timestamptz, timestamptz),
  newest_walk(timestamptz, timestamptz), walk_differences();
DROP SERVER fsm CASCADE;
DROP ROLE regress_fsm_user;
