--
-- ingest_features' offline append without the executor's INSERT
-- (pgpoly._offline_append, src/ingest.c): the same rows, values, defaults,
-- errors as the INSERT it replaces, differentially against a view whose
-- offline table has a no-op trigger (the INSERT itself); and every kind of
-- offline table only the executor may write to still gets the INSERT.
--
\getenv redis_port REDIS_PORT
\set VERBOSITY terse
\set SHOW_CONTEXT never
SET client_min_messages = warning;
SET timezone = 'UTC';
SET datestyle = 'ISO, YMD';
CREATE SERVER iod FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER iod;
CREATE FUNCTION iod_err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- two views alike but for their offline tables: a (direct) and x (a no-op
-- BEFORE trigger, so the INSERT); an identity, a default, NOT NULL, CHECK,
-- a unique index, typmods the values are assigned to (varchar(8), numeric(6,2))
CREATE FOREIGN TABLE iod_on_a (user_id text OPTIONS (key 'true'), clicks int, score numeric,
  tag text) SERVER iod OPTIONS (key_prefix 'regress_iod:a:', fetch_size '7');
CREATE FOREIGN TABLE iod_on_x (user_id text OPTIONS (key 'true'), clicks int, score numeric,
  tag text) SERVER iod OPTIONS (key_prefix 'regress_iod:x:', fetch_size '7');
CREATE TABLE iod_off_a (id bigint GENERATED ALWAYS AS IDENTITY, user_id varchar(8) NOT NULL,
  event_time timestamptz NOT NULL, created_at timestamptz NOT NULL, note text DEFAULT 'n/a',
  clicks int CHECK (clicks >= 0), score numeric(6,2), tag varchar(4), must text NOT NULL DEFAULT 'm',
  UNIQUE (user_id, event_time));
CREATE TABLE iod_off_x (LIKE iod_off_a INCLUDING ALL);
CREATE FUNCTION iod_noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER iod_noop BEFORE INSERT ON iod_off_x FOR EACH ROW EXECUTE FUNCTION iod_noop();
SELECT pgpoly.create_feature_view('iod_a', 'user_id', 'iod_on_a', 'iod_off_a');
SELECT pgpoly.create_feature_view('iod_x', 'user_id', 'iod_on_x', 'iod_off_x');
-- which path each takes
SELECT c.relname, pgpoly._offline_direct(c.oid, '{user_id,event_time,created_at,clicks,score,tag}')
FROM pg_class c WHERE c.relname IN ('iod_off_a', 'iod_off_x') ORDER BY 1;

-- iod_both(src): ingest src into both views (each call in a subtransaction),
-- the results side by side
CREATE FUNCTION iod_both(src text) RETURNS TABLE (direct text, executor text) LANGUAGE sql AS $$
	SELECT iod_err(format('SELECT pgpoly.ingest_features(%L, %L)', 'iod_a', src)),
	       iod_err(format('SELECT pgpoly.ingest_features(%L, %L)', 'iod_x', src))
$$;
-- the rows by which the two offline tables differ (created_at as its rank;
-- the identity unless with_id is false), and whether each table's created_at
-- follow its ids (the source's order)
CREATE FUNCTION iod_diff(with_id bool DEFAULT true) RETURNS TABLE (side text, r text) LANGUAGE sql AS $$
	WITH a AS (SELECT ROW(CASE WHEN with_id THEN id END, user_id, event_time,
	                      rank() OVER (ORDER BY created_at), note, clicks, score, tag, must)::text AS r
	           FROM iod_off_a),
	     x AS (SELECT ROW(CASE WHEN with_id THEN id END, user_id, event_time,
	                      rank() OVER (ORDER BY created_at), note, clicks, score, tag, must)::text AS r
	           FROM iod_off_x)
	(SELECT 'direct only', r FROM a EXCEPT SELECT 'direct only', r FROM x)
	UNION ALL
	(SELECT 'executor only', r FROM x EXCEPT SELECT 'executor only', r FROM a)
	ORDER BY 1, 2
$$;
CREATE FUNCTION iod_order() RETURNS TABLE (tbl text, distinct_in_id_order bool) LANGUAGE sql AS $$
	SELECT 'a', count(*) = count(DISTINCT created_at)
	            AND array_agg(id ORDER BY created_at) = array_agg(id ORDER BY id) FROM iod_off_a
	UNION ALL
	SELECT 'x', count(*) = count(DISTINCT created_at)
	            AND array_agg(id ORDER BY created_at) = array_agg(id ORDER BY id) FROM iod_off_x
$$;

-- rows with NULL features, values the typmods round, a subset of the features
SELECT * FROM iod_both($$SELECT * FROM (VALUES
	('u1', timestamptz '2024-06-01', 1, 1.005, 'ab'),
	('u2', timestamptz '2024-06-01', NULL, NULL, NULL),
	('u1', timestamptz '2024-06-02', 3, 2.999, 'abcd'),
	('u3', timestamptz '2024-06-01', 0, -0.004, 'x  ')) v(user_id, event_time, clicks, score, tag)$$);
SELECT * FROM iod_both($$SELECT 'u4' AS user_id, timestamptz '2024-06-01' AS event_time, 4 AS clicks$$);
SELECT * FROM iod_diff();
SELECT id, user_id, event_time, note, clicks, score, tag, must FROM iod_off_a ORDER BY id;

-- more rows than one batch of the append (1000), over three batches
SELECT * FROM iod_both($$SELECT 'b' || g AS user_id, timestamptz '2024-01-01' + g * interval '1 minute'
	AS event_time, g AS clicks, g / 7.0 AS score, (g % 10)::text AS tag FROM generate_series(1, 2500) g$$);
SELECT * FROM iod_diff();
SELECT * FROM iod_order();
-- each row found through both indexes
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT count(*) FROM iod_off_a WHERE user_id LIKE 'b%' AND user_id >= 'b' AND user_id < 'c';
SELECT count(*) FROM iod_off_a a WHERE a.user_id = 'b1234' AND a.event_time = timestamptz '2024-01-01' + 1234 * interval '1 minute';
RESET enable_seqscan;
RESET enable_bitmapscan;

-- errors: the INSERT's, and nothing appended
SELECT count(*) AS before FROM iod_off_a;
-- a CHECK violation in the second batch
SELECT * FROM iod_both($$SELECT 'c' || g AS user_id, now() AS event_time,
	CASE WHEN g = 1500 THEN -1 ELSE g END AS clicks FROM generate_series(1, 2000) g$$);
-- a duplicate of a row already there, and one within the source
SELECT * FROM iod_both($$SELECT 'u4' AS user_id, timestamptz '2024-06-01' AS event_time, 5 AS clicks$$);
SELECT * FROM iod_both($$SELECT 'd' || (g % 1200) AS user_id, timestamptz '2024-06-01' AS event_time
	FROM generate_series(1, 1300) g$$);
-- a tag longer than varchar(4), a score numeric(6,2) cannot hold
SELECT * FROM iod_both($$SELECT 'u5' AS user_id, now() AS event_time, 'abcde' AS tag$$);
SELECT * FROM iod_both($$SELECT 'u5' AS user_id, now() AS event_time, 12345.6 AS score$$);
-- an entity longer than varchar(8) (ingest_features' own check)
SELECT * FROM iod_both($$SELECT 'u123456789' AS user_id, now() AS event_time$$);
-- NOT NULL of a column without a default once its default is dropped
ALTER TABLE iod_off_a ALTER must DROP DEFAULT;
ALTER TABLE iod_off_x ALTER must DROP DEFAULT;
SELECT * FROM iod_both($$SELECT 'u6' AS user_id, now() AS event_time$$);
SELECT count(*) AS after FROM iod_off_a;
-- (the identities differ from here on: a failed append has taken the
-- values of the rows of its batch, the INSERT those up to the failing row;
-- either way they are lost, as a failed COPY's)
SELECT * FROM iod_diff(false);
-- in a read-only transaction: the INSERT's error
BEGIN READ ONLY;
SELECT pgpoly._offline_direct('iod_off_a'::regclass, '{user_id,event_time,created_at}');
SELECT iod_err($$SELECT pgpoly.ingest_features('iod_a', 'SELECT ''u7'' AS user_id, now() AS event_time')$$);
ROLLBACK;

-- privileges: a role with INSERT on the offline table's columns only, and
-- one without it, as the INSERT checks them
CREATE ROLE regress_iod_w;
GRANT USAGE ON FOREIGN SERVER iod TO regress_iod_w;
CREATE USER MAPPING FOR regress_iod_w SERVER iod OPTIONS (password_required 'false');
GRANT SELECT, INSERT ON iod_on_a TO regress_iod_w;
GRANT USAGE ON SCHEMA pgpoly TO regress_iod_w;
GRANT SELECT ON ALL TABLES IN SCHEMA pgpoly TO regress_iod_w;
SET ROLE regress_iod_w;
SELECT pgpoly._offline_direct('iod_off_a'::regclass, '{user_id,event_time,created_at}') AS no_insert;
SELECT iod_err($$SELECT pgpoly.ingest_features('iod_a', 'SELECT ''u7'' AS user_id, now() AS event_time')$$);
RESET ROLE;
GRANT INSERT (user_id, event_time, created_at, clicks, score, tag) ON iod_off_a TO regress_iod_w;
SET ROLE regress_iod_w;
SELECT pgpoly._offline_direct('iod_off_a'::regclass, '{user_id,event_time,created_at,clicks,score,tag}') AS column_insert;
SELECT pgpoly._offline_direct('iod_off_a'::regclass, '{user_id,event_time,created_at,note}') AS other_column;
RESET ROLE;

-- offline tables only the executor may write to: partitioned, a partition,
-- row-level security, a generated column, a foreign key; each still
-- ingested through the INSERT (routing, policies, generated values, checks)
CREATE FOREIGN TABLE iod_on_p (user_id text OPTIONS (key 'true'), clicks int)
  SERVER iod OPTIONS (key_prefix 'regress_iod:p:');
CREATE TABLE iod_off_part (user_id text, event_time timestamptz, created_at timestamptz, clicks int)
  PARTITION BY RANGE (event_time);
CREATE TABLE iod_off_part_23 PARTITION OF iod_off_part FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE iod_off_part_24 PARTITION OF iod_off_part FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE iod_off_rls (user_id text, event_time timestamptz, created_at timestamptz, clicks int);
ALTER TABLE iod_off_rls ENABLE ROW LEVEL SECURITY;
ALTER TABLE iod_off_rls FORCE ROW LEVEL SECURITY;
CREATE POLICY iod_pos ON iod_off_rls USING (true) WITH CHECK (clicks > 0);
CREATE TABLE iod_off_gen (user_id text, event_time timestamptz, created_at timestamptz, clicks int,
  twice int GENERATED ALWAYS AS (clicks * 2) STORED);
CREATE TABLE iod_users (user_id text PRIMARY KEY);
INSERT INTO iod_users VALUES ('p1'), ('p2');
CREATE TABLE iod_off_fk (user_id text REFERENCES iod_users, event_time timestamptz,
  created_at timestamptz, clicks int);
SELECT c.relname, pgpoly._offline_direct(c.oid, '{user_id,event_time,created_at,clicks}')
FROM pg_class c WHERE c.relname LIKE 'iod\_off\_%' AND c.relname NOT IN ('iod_off_a', 'iod_off_x')
  AND c.relkind IN ('r', 'p')
ORDER BY 1;
-- row-level security applies to a role without BYPASSRLS
GRANT SELECT, INSERT ON iod_on_p, iod_off_rls TO regress_iod_w;
SET ROLE regress_iod_w;
SELECT pgpoly._offline_direct('iod_off_rls'::regclass, '{user_id,event_time,created_at,clicks}') AS rls_as_user;
RESET ROLE;
SELECT pgpoly.create_feature_view('iod_part', 'user_id', 'iod_on_p', 'iod_off_part');
SELECT pgpoly.create_feature_view('iod_p23', 'user_id', 'iod_on_p', 'iod_off_part_23');
SELECT pgpoly.create_feature_view('iod_rls', 'user_id', 'iod_on_p', 'iod_off_rls');
SELECT pgpoly.create_feature_view('iod_gen', 'user_id', 'iod_on_p', 'iod_off_gen');
SELECT pgpoly.create_feature_view('iod_fk', 'user_id', 'iod_on_p', 'iod_off_fk');
CREATE FUNCTION iod_src(clicks int, ts text) RETURNS text LANGUAGE sql AS $$
	SELECT format('SELECT * FROM (VALUES (%L, timestamptz %L, 1), (%L, timestamptz %L, %s)) v(user_id, event_time, clicks)',
	              'p1', '2023-06-01', 'p2', ts, clicks)
$$;
SELECT iod_err(format('SELECT pgpoly.ingest_features(%L, %L)', 'iod_part', iod_src(2, '2024-06-01'))) AS part;
SELECT tableoid::regclass, user_id, clicks FROM iod_off_part ORDER BY 2;
SELECT iod_err(format('SELECT pgpoly.ingest_features(%L, %L)', 'iod_p23', iod_src(2, '2024-06-01'))) AS partition_bound;
SET ROLE regress_iod_w;
SELECT iod_err(format('SELECT pgpoly.ingest_features(%L, %L)', 'iod_rls', iod_src(0, '2024-06-01'))) AS rls_check;
SELECT iod_err(format('SELECT pgpoly.ingest_features(%L, %L)', 'iod_rls', iod_src(2, '2024-06-01'))) AS rls;
RESET ROLE;
SELECT iod_err(format('SELECT pgpoly.ingest_features(%L, %L)', 'iod_gen', iod_src(2, '2024-06-01'))) AS gen;
SELECT user_id, clicks, twice FROM iod_off_gen ORDER BY 1;
SELECT iod_err(format('SELECT pgpoly.ingest_features(%L, %L)', 'iod_fk',
	replace(iod_src(2, '2024-06-01'), '''p2''', '''p9'''))) AS fk_missing;
SELECT iod_err(format('SELECT pgpoly.ingest_features(%L, %L)', 'iod_fk', iod_src(2, '2024-06-01'))) AS fk;
SELECT (SELECT count(*) FROM iod_off_rls) AS rls_rows, (SELECT count(*) FROM iod_off_fk) AS fk_rows;

-- offline tables the INSERT treats differently from a plain append, each
-- pair alike but for x's no-op trigger (the INSERT): iod_pair(n, onfeats,
-- ddl) makes views n_a and n_x over offline tables n_a and n_x (ddl, %1$s
-- the table's name); iod_pair_both(n, src) ingests src into both;
-- iod_pair_diff(n) lists the rows by which the tables differ
CREATE FUNCTION iod_pair(n text, onfeats text, ddl text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE s text;
BEGIN
	FOREACH s IN ARRAY ARRAY['a', 'x'] LOOP
		EXECUTE format('CREATE FOREIGN TABLE %I (user_id text OPTIONS (key ''true''), %s) SERVER iod OPTIONS (key_prefix %L)',
		               n || '_on_' || s, onfeats, 'regress_iod:' || n || ':' || s || ':');
		EXECUTE format(ddl, n || '_' || s);
		PERFORM pgpoly.create_feature_view(n || '_' || s, 'user_id', n || '_on_' || s, n || '_' || s);
	END LOOP;
	EXECUTE format('CREATE TRIGGER iod_noop BEFORE INSERT ON %I FOR EACH ROW EXECUTE FUNCTION iod_noop()', n || '_x');
	RETURN format('direct: %s', pgpoly._offline_direct((n || '_a')::regclass, '{user_id,event_time}'));
END $$;
CREATE FUNCTION iod_pair_both(n text, src text) RETURNS TABLE (direct text, executor text) LANGUAGE sql AS $$
	SELECT replace(iod_err(format('SELECT pgpoly.ingest_features(%L, %L)', n || '_a', src)), n || '_a', n || '_?'),
	       replace(iod_err(format('SELECT pgpoly.ingest_features(%L, %L)', n || '_x', src)), n || '_x', n || '_?')
$$;
CREATE FUNCTION iod_pair_diff(n text) RETURNS TABLE (side text, r text) LANGUAGE plpgsql AS $$
BEGIN
	RETURN QUERY EXECUTE format($q$
		WITH a AS (SELECT (to_jsonb(t) - 'created_at')::text AS r FROM %1$I t),
		     x AS (SELECT (to_jsonb(t) - 'created_at')::text AS r FROM %2$I t)
		(SELECT 'direct only', r FROM a EXCEPT ALL SELECT 'direct only', r FROM x)
		UNION ALL
		(SELECT 'executor only', r FROM x EXCEPT ALL SELECT 'executor only', r FROM a)
		UNION ALL
		SELECT 'rows', (SELECT count(*) FROM a) || ' ' || (SELECT count(*) FROM x)
		ORDER BY 1, 2$q$, n || '_a', n || '_x');
END $$;
-- a column the INSERT does not name, without a default, of a domain with
-- NOT NULL or CHECK: the INSERT's NULL is the domain's, and checked
CREATE DOMAIN iod_nn AS text NOT NULL;
CREATE DOMAIN iod_chk AS int CHECK (VALUE IS NOT NULL AND VALUE > 0);
CREATE DOMAIN iod_dflt AS int DEFAULT 3 CHECK (VALUE > 0);
SELECT iod_pair('iod_dom', 'clicks int', 'CREATE TABLE %1$s (user_id text, event_time timestamptz, created_at timestamptz, clicks int, d iod_nn)');
SELECT * FROM iod_pair_both('iod_dom', $$SELECT 'u1' AS user_id, timestamptz '2024-06-01' AS event_time, 1 AS clicks$$);
ALTER TABLE iod_dom_a ALTER d TYPE iod_chk USING NULL;
ALTER TABLE iod_dom_x ALTER d TYPE iod_chk USING NULL;
SELECT * FROM iod_pair_both('iod_dom', $$SELECT 'u1' AS user_id, timestamptz '2024-06-01' AS event_time, 1 AS clicks$$);
ALTER TABLE iod_dom_a ALTER d TYPE iod_dflt USING NULL;
ALTER TABLE iod_dom_x ALTER d TYPE iod_dflt USING NULL;
SELECT * FROM iod_pair_both('iod_dom', $$SELECT 'u1' AS user_id, timestamptz '2024-06-01' AS event_time, 1 AS clicks$$);
SELECT * FROM iod_pair_diff('iod_dom');
-- event_time and created_at altered since the view was made (to a domain,
-- to timestamp): the INSERT's assignment casts
CREATE DOMAIN iod_before_2030 AS timestamptz CHECK (VALUE < '2030-01-01');
SELECT iod_pair('iod_typ', 'clicks int', 'CREATE TABLE %1$s (user_id text, event_time timestamptz, created_at timestamptz, clicks int)');
ALTER TABLE iod_typ_a ALTER event_time TYPE iod_before_2030, ALTER created_at TYPE timestamp;
ALTER TABLE iod_typ_x ALTER event_time TYPE iod_before_2030, ALTER created_at TYPE timestamp;
SELECT * FROM iod_pair_both('iod_typ', $$SELECT 'u1' AS user_id, timestamptz '2024-06-01' AS event_time, 1 AS clicks$$);
SELECT * FROM iod_pair_both('iod_typ', $$SELECT 'u2' AS user_id, timestamptz '2031-06-01' AS event_time, 1 AS clicks$$);
SELECT * FROM iod_pair_diff('iod_typ');
-- a feature named as the entity column, event_time or created_at: the
-- INSERT names a column twice (its ERROR), nothing appended
SELECT iod_pair('iod_dup', 'created_at timestamptz', 'CREATE TABLE %1$s (user_id text, event_time timestamptz, created_at timestamptz)');
SELECT * FROM iod_pair_both('iod_dup', $$SELECT 'u1' AS user_id, timestamptz '2024-06-01' AS event_time, timestamptz '2000-01-01' AS created_at$$);
SELECT * FROM iod_pair_diff('iod_dup');
-- a rule on the offline table: the rewriter's (an INSTEAD rule the INSERT
-- in a WITH refuses), nothing appended to the table itself
SELECT iod_pair('iod_rule', 'clicks int', 'CREATE TABLE %1$s (user_id text, event_time timestamptz, created_at timestamptz, clicks int)');
CREATE TABLE iod_rule_sink (LIKE iod_rule_a);
CREATE RULE iod_rule_r AS ON INSERT TO iod_rule_a DO INSTEAD INSERT INTO iod_rule_sink VALUES (NEW.*);
CREATE RULE iod_rule_r AS ON INSERT TO iod_rule_x DO INSTEAD INSERT INTO iod_rule_sink VALUES (NEW.*);
SELECT pgpoly._offline_direct('iod_rule_a'::regclass, '{user_id,event_time,created_at,clicks}') AS with_rule;
SELECT * FROM iod_pair_both('iod_rule', $$SELECT 'u1' AS user_id, timestamptz '2024-06-01' AS event_time, 1 AS clicks$$);
SELECT * FROM iod_pair_diff('iod_rule');
-- a volatile default that reads the table: each row's value as the INSERT
-- gives it (the rows before it in the table), not a batch's
CREATE FUNCTION iod_rows(r regclass) RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE n bigint;
BEGIN
	EXECUTE format('SELECT count(*) FROM %s', r) INTO n;
	RETURN n;
END $$;
SELECT iod_pair('iod_vol', 'clicks int', 'CREATE TABLE %1$s (user_id text, event_time timestamptz, created_at timestamptz, clicks int, seen bigint DEFAULT iod_rows(''%1$s''))');
SELECT pgpoly._offline_direct('iod_vol_a'::regclass, '{user_id,event_time,created_at,clicks}') AS volatile_default;
SELECT * FROM iod_pair_both('iod_vol', $$SELECT 'u' || g AS user_id, timestamptz '2024-06-01' AS event_time, g AS clicks FROM generate_series(1, 1200) g$$);
SELECT * FROM iod_pair_diff('iod_vol');
-- a CHECK with a volatile function that reads the table (of the table, of
-- the domain of a column the INSERT does not name): each row is checked
-- once the rows before it are in the table (the INSERT's), not before its
-- batch is (iod_vd: the two tables counted, the first ingested first)
CREATE FUNCTION iod_few(r text) RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	RETURN iod_rows(r::regclass) < 500;
END $$;
CREATE FUNCTION iod_few_vd() RETURNS bool LANGUAGE plpgsql VOLATILE AS $$
BEGIN
	RETURN iod_rows('iod_vd_a') + iod_rows('iod_vd_x') < 500;
END $$;
CREATE DOMAIN iod_vdom_nn AS int CHECK (VALUE IS NOT NULL OR iod_few_vd());
SELECT iod_pair('iod_vchk', 'clicks int', 'CREATE TABLE %1$s (user_id text, event_time timestamptz, created_at timestamptz, clicks int CHECK (iod_few(''%1$s'')))');
SELECT * FROM iod_pair_both('iod_vchk', $$SELECT 'u' || g AS user_id, timestamptz '2024-06-01' AS event_time, g AS clicks FROM generate_series(1, 600) g$$);
SELECT * FROM iod_pair_diff('iod_vchk');
SELECT iod_pair('iod_vd', 'clicks int', 'CREATE TABLE %1$s (user_id text, event_time timestamptz, created_at timestamptz, clicks int, d iod_vdom_nn)');
SELECT * FROM iod_pair_both('iod_vd', $$SELECT 'u' || g AS user_id, timestamptz '2024-06-01' AS event_time, g AS clicks FROM generate_series(1, 600) g$$);
SELECT * FROM iod_pair_diff('iod_vd');
-- a column the append writes made an identity GENERATED ALWAYS: the
-- INSERT's ERROR, nothing appended
SELECT iod_pair('iod_ida', 'clicks int', 'CREATE TABLE %1$s (user_id text, event_time timestamptz, created_at timestamptz, clicks int)');
ALTER TABLE iod_ida_a ALTER clicks SET NOT NULL, ALTER clicks ADD GENERATED ALWAYS AS IDENTITY;
ALTER TABLE iod_ida_x ALTER clicks SET NOT NULL, ALTER clicks ADD GENERATED ALWAYS AS IDENTITY;
SELECT * FROM iod_pair_both('iod_ida', $$SELECT 'u' || g AS user_id, timestamptz '2024-06-01' AS event_time, g AS clicks FROM generate_series(1, 3) g$$);
SELECT * FROM iod_pair_diff('iod_ida');
SELECT count(pgpoly.drop_feature_view(n || s)) AS dropped
FROM unnest('{iod_dom,iod_typ,iod_dup,iod_rule,iod_vol,iod_vchk,iod_vd,iod_ida}'::text[]) n, unnest('{_a,_x}'::text[]) s;
DROP TABLE iod_dom_a, iod_dom_x, iod_typ_a, iod_typ_x, iod_dup_a, iod_dup_x, iod_rule_a, iod_rule_x,
	iod_rule_sink, iod_vol_a, iod_vol_x, iod_vchk_a, iod_vchk_x, iod_vd_a, iod_vd_x, iod_ida_a, iod_ida_x;
-- (their Redis keys first: 2,400 left behind would slow every later scan
-- of the shared Redis)
DO $$ DECLARE t text; BEGIN
	FOREACH t IN ARRAY '{iod_dom_on_a,iod_dom_on_x,iod_typ_on_a,iod_typ_on_x,iod_dup_on_a,iod_dup_on_x,iod_rule_on_a,iod_rule_on_x,iod_vol_on_a,iod_vol_on_x,iod_vchk_on_a,iod_vchk_on_x,iod_vd_on_a,iod_vd_on_x,iod_ida_on_a,iod_ida_on_x}'::text[] LOOP
		EXECUTE format('DELETE FROM %I', t);
	END LOOP;
END $$;
DROP FOREIGN TABLE iod_dom_on_a, iod_dom_on_x, iod_typ_on_a, iod_typ_on_x, iod_dup_on_a, iod_dup_on_x,
	iod_rule_on_a, iod_rule_on_x, iod_vol_on_a, iod_vol_on_x, iod_vchk_on_a, iod_vchk_on_x,
	iod_vd_on_a, iod_vd_on_x, iod_ida_on_a, iod_ida_on_x;
DROP DOMAIN iod_nn, iod_chk, iod_dflt, iod_before_2030, iod_vdom_nn;
DROP FUNCTION iod_few(text), iod_few_vd();

-- clean up (the Redis keys too)
SELECT pgpoly.drop_feature_view(v) FROM unnest('{iod_a,iod_x,iod_part,iod_p23,iod_rls,iod_gen,iod_fk}'::text[]) v;
DELETE FROM iod_on_a;
DELETE FROM iod_on_x;
DELETE FROM iod_on_p;
DROP TABLE iod_off_a, iod_off_x, iod_off_part, iod_off_rls, iod_off_gen, iod_off_fk, iod_users;
DROP FOREIGN TABLE iod_on_a, iod_on_x, iod_on_p;
DROP USER MAPPING FOR regress_iod_w SERVER iod;
REVOKE ALL ON ALL TABLES IN SCHEMA pgpoly FROM regress_iod_w;
REVOKE USAGE ON SCHEMA pgpoly FROM regress_iod_w;
DROP SERVER iod CASCADE;
DROP ROLE regress_iod_w;
