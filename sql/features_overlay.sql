-- A feature view whose online table has no _event_time (or writes
-- immediately) reads and writes Redis through its internal serving table
-- pgpoly.<view>_serving: the same server, key_prefix and fields.  Within a
-- transaction, what materialize, put_features, ingest_features and
-- get_online_features' write-back buffer there is seen by the user's online
-- table, and what the user buffers through the online table is seen by the
-- newest-wins reads of those functions: both tables overlay the buffered
-- writes to their keys, in write order.  Differential: the same steps run
-- once with each statement committed on its own (nothing buffered across
-- statements) and once in one transaction (with a savepoint rolled back);
-- every read must give the same answer, and so must Redis after COMMIT.
\getenv redis_port REDIS_PORT
SET timezone = 'UTC';
CREATE SERVER fov FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER fov;

CREATE FOREIGN TABLE fov_t (user_id text OPTIONS (key 'true'), clicks int)
  SERVER fov OPTIONS (key_prefix 'regress_fov_t:');
CREATE FOREIGN TABLE fov_i (user_id text OPTIONS (key 'true'), clicks int)
  SERVER fov OPTIONS (key_prefix 'regress_fov_i:', write_mode 'immediate');
SELECT pgpoly.create_feature_view('fov_t', 'user_id', 'fov_t');
SELECT pgpoly.create_feature_view('fov_i', 'user_id', 'fov_i');
SELECT view_name, serving_table FROM pgpoly._feature_view_storage
WHERE view_name LIKE 'fov%' ORDER BY 1;

-- What each read step saw, per run.
CREATE TABLE fov_log (run text, n int, v text);

-- The steps: %1$L the run, %2$I the online table, %3$L the view, %4$s the
-- step's number.  xact_only: savepoint steps, and what they roll back.
CREATE TABLE fov_steps (mode text, n int, xact_only bool DEFAULT false, sql text);
CREATE FUNCTION fov_read(what text) RETURNS text LANGUAGE sql AS $$
	SELECT format($q$INSERT INTO fov_log SELECT %%1$L, %%4$s, (%s)$q$, what)
$$;
INSERT INTO fov_steps (mode, n, xact_only, sql) VALUES
 ('t', 1, false, fov_read($$SELECT pgpoly.materialize(%3$L)::text$$)),
 ('t', 2, false, fov_read($$SELECT string_agg(user_id || '=' || coalesce(clicks::text, '-'), ',' ORDER BY user_id) FROM %2$I$$)),
 ('t', 3, false, fov_read($$SELECT clicks::text FROM %2$I WHERE user_id = 'u2'$$)),
 ('t', 4, false, $$DELETE FROM %2$I WHERE user_id IN ('u1', 'u2')$$),
 ('t', 5, false, fov_read($$SELECT string_agg(user_id || '=' || coalesce(clicks::text, '-'), ',' ORDER BY user_id) FROM %2$I$$)),
 ('t', 6, false, fov_read($$SELECT string_agg(entity || ':' || source || ':' || features::text, ' ') FROM pgpoly.get_online_features(%3$L, '{u1,u3}')$$)),
 ('t', 7, false, fov_read($$SELECT string_agg(user_id || '=' || coalesce(clicks::text, '-'), ',' ORDER BY user_id) FROM %2$I$$)),
 ('t', 8, false, $$UPDATE %2$I SET clicks = 99 WHERE user_id = 'u3'$$),
 ('t', 9, false, fov_read($$SELECT string_agg(entity || ':' || source || ':' || features::text, ' ') FROM pgpoly.get_online_features(%3$L, '{u3}')$$)),
 ('t', 10, true, $$SAVEPOINT s$$),
 ('t', 11, true, $$DELETE FROM %2$I$$),
 ('t', 12, true, $$SELECT pgpoly.put_features(%3$L, 'u4', '{"clicks": 40}', '2025-01-01')$$),
 ('t', 13, true, $$ROLLBACK TO SAVEPOINT s$$),
 ('t', 14, false, fov_read($$SELECT string_agg(user_id || '=' || coalesce(clicks::text, '-'), ',' ORDER BY user_id) FROM %2$I$$)),
 ('t', 15, false, fov_read($$SELECT pgpoly.ingest_features(%3$L, $s$SELECT 'u4' AS user_id, timestamptz '2023-06-01' AS event_time, 7 AS clicks$s$)::text$$)),
 ('t', 16, false, $$DELETE FROM %2$I WHERE user_id = 'u5'$$),
 ('t', 17, false, fov_read($$SELECT pgpoly.ingest_features(%3$L, $s$SELECT 'u5' AS user_id, timestamptz '2023-06-01' AS event_time, 8 AS clicks$s$)::text$$)),
 ('t', 18, false, fov_read($$SELECT string_agg(user_id || '=' || coalesce(clicks::text, '-'), ',' ORDER BY user_id) FROM %2$I$$)),
 ('t', 19, false, $$SELECT pgpoly.put_features(%3$L, 'u6', '{"clicks": 6}', '2024-01-01')$$),
 ('t', 20, false, fov_read($$SELECT count(*)::text FROM %2$I$$)),
 ('t', 21, false, $$DELETE FROM %2$I$$),
 ('t', 22, false, fov_read($$SELECT count(*)::text FROM %2$I$$)),
 ('t', 23, false, $$SELECT pgpoly.put_features(%3$L, 'u1', '{"clicks": 11}', '2023-01-01')$$),
 ('t', 24, false, $$INSERT INTO %2$I VALUES ('u2', 22)$$),
 ('t', 25, false, fov_read($$SELECT pgpoly.materialize(%3$L)::text$$)),
 ('t', 26, false, fov_read($$SELECT string_agg(user_id || '=' || coalesce(clicks::text, '-'), ',' ORDER BY user_id) FROM %2$I$$)),
 -- immediate: the user's writes are sent at once; those of the view's
 -- functions, buffered after them, are seen by the user's reads
 ('i', 1, false, $$INSERT INTO %2$I VALUES ('u7', 70)$$),
 ('i', 2, false, fov_read($$SELECT pgpoly.materialize(%3$L)::text$$)),
 ('i', 3, false, fov_read($$SELECT string_agg(user_id || '=' || coalesce(clicks::text, '-'), ',' ORDER BY user_id) FROM %2$I$$)),
 ('i', 4, false, fov_read($$SELECT clicks::text FROM %2$I WHERE user_id = 'u3'$$)),
 ('i', 5, false, $$DELETE FROM %2$I WHERE user_id = 'u7'$$),
 ('i', 6, false, fov_read($$SELECT string_agg(entity || ':' || source || ':' || coalesce(features::text, '-'), ' ') FROM pgpoly.get_online_features(%3$L, '{u1,u7}')$$)),
 ('i', 7, false, $$SELECT pgpoly.put_features(%3$L, 'u8', '{"clicks": 8}', '2024-01-01')$$),
 ('i', 8, false, fov_read($$SELECT string_agg(user_id || '=' || coalesce(clicks::text, '-'), ',' ORDER BY user_id) FROM %2$I$$));

-- Start a run: Redis emptied, the history back to its five rows.
CREATE FUNCTION fov_reset(tbl regclass, hist regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('DELETE FROM %s', tbl);
	EXECUTE format('TRUNCATE %s', hist);
	EXECUTE format($q$INSERT INTO %s (entity, event_time, clicks)
				   SELECT 'u' || g, timestamptz '2024-01-01' + g * interval '1 hour', g
				   FROM generate_series(1, 5) g$q$, hist);
END $$;

-- The statements of a run of mode's steps: each on its own (ending NULL),
-- or in one transaction ended by ending (ROLLBACK: over Redis holding what
-- materialize gives); then the online table as Redis holds it (step 100).
CREATE FUNCTION fov_script(mode text, run text, ending text) RETURNS SETOF text
LANGUAGE sql AS $$
	SELECT q FROM (
		SELECT 0 AS o, format('SELECT fov_reset(%L, %L)', 'fov_' || mode,
							  'pgpoly.fov_' || mode || '_history') AS q
		UNION ALL
		SELECT 1, format('SELECT pgpoly.materialize(%L)', 'fov_' || mode) WHERE ending = 'ROLLBACK'
		UNION ALL
		SELECT 2, 'BEGIN' WHERE ending IS NOT NULL
		UNION ALL
		SELECT 3 + s.n, format(s.sql, run, 'fov_' || mode, 'fov_' || mode, s.n)
		FROM fov_steps s WHERE s.mode = fov_script.mode AND (ending IS NOT NULL OR NOT s.xact_only)
		UNION ALL
		SELECT 1000, ending WHERE ending IS NOT NULL
		UNION ALL
		SELECT 1001, format(fov_read($q$SELECT string_agg(user_id || '=' || coalesce(clicks::text, '-'), ',' ORDER BY user_id) FROM %2$I$q$),
							run, 'fov_' || mode, 'fov_' || mode, 100)
	) s ORDER BY o
$$;

-- Each statement on its own (the reference answers), then one transaction:
-- the transactional online table, then the immediate one.
SELECT fov_script('t', 'auto', NULL) \gexec
SELECT fov_script('t', 'xact', 'COMMIT') \gexec
SELECT fov_script('t', 'rollback', 'ROLLBACK') \gexec
SELECT fov_script('i', 'auto_i', NULL) \gexec
SELECT fov_script('i', 'xact_i', 'COMMIT') \gexec

-- What the runs saw, and where they differ (none).
SELECT run, n, v FROM fov_log WHERE run IN ('xact', 'xact_i') ORDER BY run, n;
SELECT a.run, coalesce(a.n, x.n) AS n, a.v AS alone, x.v AS in_xact
FROM (SELECT * FROM fov_log WHERE run IN ('auto', 'auto_i')) a
FULL JOIN (SELECT * FROM fov_log WHERE run IN ('xact', 'xact_i')) x
  ON x.run = replace(a.run, 'auto', 'xact') AND x.n = a.n
WHERE a.v IS DISTINCT FROM x.v;
-- after ROLLBACK: the five materialized keys
SELECT v FROM fov_log WHERE run = 'rollback' AND n = 100;

-- An immediate write to a key that the transaction's buffered writes of
-- another table (the serving table) change at COMMIT would be undone by
-- them: refused, nothing sent.
SELECT fov_reset('fov_i', 'pgpoly.fov_i_history');
BEGIN;
SELECT pgpoly.put_features('fov_i', 'u1', '{"clicks": 100}', '2025-01-01');
SAVEPOINT s;
DELETE FROM fov_i WHERE user_id = 'u1';
ROLLBACK TO SAVEPOINT s;
UPDATE fov_i SET clicks = 5 WHERE user_id = 'u1';
ROLLBACK TO SAVEPOINT s;
INSERT INTO fov_i VALUES ('u1', 5);
ROLLBACK TO SAVEPOINT s;
-- other keys are written at once
INSERT INTO fov_i VALUES ('u9', 9);
SELECT user_id, clicks FROM fov_i ORDER BY 1;
COMMIT;
SELECT user_id, clicks FROM fov_i ORDER BY 1;

-- An outbox online table: its serving table is in outbox mode too, and the
-- sync worker decides what their queued writes do when it delivers them
-- (newest-wins), so neither table overlays the other's: each reads its own.
CREATE FOREIGN TABLE fov_o (user_id text OPTIONS (key 'true'), clicks int)
  SERVER fov OPTIONS (key_prefix 'regress_fov_o:', write_mode 'outbox');
SELECT pgpoly.create_feature_view('fov_o', 'user_id', 'fov_o');
BEGIN;
SELECT pgpoly.put_features('fov_o', 'u1', '{"clicks": 1}', '2024-01-01');
INSERT INTO fov_o VALUES ('u2', 2);
SELECT user_id, clicks FROM fov_o ORDER BY 1;
SELECT user_id, clicks FROM pgpoly.fov_o_serving ORDER BY 1;
ROLLBACK;
SELECT pgpoly.drop_feature_view('fov_o');
DROP FOREIGN TABLE fov_o;

SELECT fov_reset('fov_t', 'pgpoly.fov_t_history');
SELECT fov_reset('fov_i', 'pgpoly.fov_i_history');
SELECT pgpoly.drop_feature_view('fov_t');
SELECT pgpoly.drop_feature_view('fov_i');
DROP SERVER fov CASCADE;
DROP FUNCTION fov_read(text), fov_reset(regclass, regclass),
  fov_script(text, text, text);
DROP TABLE fov_log, fov_steps;
