--
-- pgpoly_redis: direct modification attacked.  Statements built to make the
-- key scan enforce only part of the WHERE, to hide a per-row value in the
-- assignment, or to meet buffered writes, errors and plan shapes that the
-- direct path must handle as the per-row path does.  Each statement runs on
--   da  (may go direct),
--   dar (the same statement with RETURNING: the per-row path),
--   dan (a native table),
-- and reports the three row counts and whether da's plan went direct; the
-- three tables must then hold the same rows.  Keys hold LIKE and glob
-- metacharacters, a newline, a trailing space and non-ASCII.
--
\getenv redis_port REDIS_PORT
\! redis-cli -p "$REDIS_PORT" eval "for _, k in ipairs(redis.call('keys', ARGV[1])) do redis.call('del', k) end" 0 'regress_dma:*' > /dev/null
CREATE SERVER rdma FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE FOREIGN TABLE da (id text OPTIONS (key 'true'), n int, s text)
  SERVER rdma OPTIONS (key_prefix 'regress_dma:a:');
CREATE FOREIGN TABLE dar (id text OPTIONS (key 'true'), n int, s text)
  SERVER rdma OPTIONS (key_prefix 'regress_dma:b:');
CREATE TABLE dan (id text PRIMARY KEY, n int, s text);
CREATE FUNCTION dma_diff(OUT per_row bigint, OUT native bigint) LANGUAGE sql AS $$
  SELECT (SELECT count(*) FROM ((TABLE da EXCEPT ALL TABLE dar) UNION ALL
                                (TABLE dar EXCEPT ALL TABLE da)) d),
         (SELECT count(*) FROM ((TABLE da EXCEPT ALL TABLE dan) UNION ALL
                                (TABLE dan EXCEPT ALL TABLE da)) d) $$;
CREATE FUNCTION dma_run(stmt text, OUT direct bigint, OUT per_row bigint,
                        OUT native bigint, OUT went_direct bool)
LANGUAGE plpgsql AS $$
DECLARE
  plan text;
BEGIN
  went_direct := false;
  FOR plan IN EXECUTE 'EXPLAIN (COSTS OFF) ' || format(stmt, 'da') LOOP
    IF plan ~ 'Foreign (Update|Delete) on da' THEN went_direct := true; END IF;
  END LOOP;
  EXECUTE format(stmt, 'da');
  GET DIAGNOSTICS direct = ROW_COUNT;
  EXECUTE format(stmt, 'dar') || ' RETURNING 1';
  GET DIAGNOSTICS per_row = ROW_COUNT;
  EXECUTE format(stmt, 'dan');
  GET DIAGNOSTICS native = ROW_COUNT;
END $$;
-- Run each statement of stmts (%s: the table) in turn; one line each.
CREATE FUNCTION dma_runs(VARIADIC stmts text[])
RETURNS TABLE (i bigint, direct bigint, per_row bigint, native bigint, went_direct bool)
LANGUAGE plpgsql AS $$
BEGIN
  FOR k IN 1 .. cardinality(stmts) LOOP
    i := k;
    SELECT r.* INTO direct, per_row, native, went_direct FROM dma_run(stmts[k]) r;
    RETURN NEXT;
  END LOOP;
END $$;
CREATE FUNCTION dma_reset() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM da;
  DELETE FROM dar WHERE length(id) >= 0;
  DELETE FROM dan;
  INSERT INTO dan VALUES ('k1', 1, 's1'), ('k2', 2, 's2'), ('k_3', 3, 's3'),
    ('kx3', 4, 's4'), ('k%4', 5, 's5'), ('k*5', 6, 's6'), ('k?6', 7, 's7'),
    ('k[7]', 8, 's8'), ('k\8', 9, 's9'), ('K1', 10, 'S1'), ('k', 11, 's11'),
    ('', 12, 'empty'), (E'k\n1', 13, 'nl'), ('kß', 14, 'sz'), ('k1 ', 15, 'sp');
  INSERT INTO da SELECT * FROM dan;
  INSERT INTO dar SELECT * FROM dan;
END $$;
SELECT dma_reset();

-- The WHERE: only what the scan enforces exactly goes direct.  LIKE with
-- '_', an escape (backslash or ESCAPE), a second wildcard, ILIKE, a LIKE on
-- an expression of the key, OR of key clauses, a key clause with another
-- clause, a pseudo-constant clause (a gating Result): the per-row path.
-- Glob metacharacters in a LIKE prefix are escaped for SCAN MATCH.
SELECT * FROM dma_runs(
  $$UPDATE %s SET s = 'a1' WHERE id LIKE 'k_%%'$$,
  $$UPDATE %s SET s = 'a2' WHERE id LIKE 'k\_%%'$$,
  $$UPDATE %s SET s = 'a3' WHERE id LIKE 'k\%%%%'$$,
  $$UPDATE %s SET s = 'a4' WHERE id LIKE 'k#_%%' ESCAPE '#'$$,
  $$UPDATE %s SET s = 'a5' WHERE id LIKE 'k%%' ESCAPE 'k'$$,
  $$UPDATE %s SET s = 'a6' WHERE id LIKE 'k*%%'$$,
  $$UPDATE %s SET s = 'a7' WHERE id LIKE 'k?%%'$$,
  $$UPDATE %s SET s = 'a8' WHERE id LIKE 'k[%%'$$,
  $$UPDATE %s SET s = 'a9' WHERE id LIKE 'k\\%%'$$,
  $$UPDATE %s SET s = 'a10' WHERE id ILIKE 'k1%%'$$,
  $$UPDATE %s SET s = 'a11' WHERE id LIKE '%%'$$,
  $$UPDATE %s SET s = 'a12' WHERE id LIKE 'k%%' AND id LIKE '%%1'$$,
  $$UPDATE %s SET s = 'a13' WHERE id LIKE E'k\n%%'$$,
  $$UPDATE %s SET s = 'a14' WHERE id LIKE 'kß%%'$$,
  $$UPDATE %s SET s = 'a15' WHERE upper(id) LIKE 'K1%%'$$,
  $$UPDATE %s SET s = 'a16' WHERE id NOT LIKE 'k1%%'$$,
  $$UPDATE %s SET s = 'a17' WHERE id LIKE 'k1%%' COLLATE "C"$$,
  $$UPDATE %s SET s = 'a18' WHERE id LIKE 'k1%%'::varchar$$,
  $$DELETE FROM %s WHERE id LIKE 'k1%%' AND (SELECT false)$$,
  $$UPDATE %s SET s = 'a20' WHERE id LIKE 'k1%%' AND now() < '2000-01-01'$$);
SELECT * FROM dma_diff();
SELECT * FROM dma_runs(
  $$UPDATE %s SET n = 100 WHERE id = ANY ('{k1,NULL,k2}')$$,
  $$UPDATE %s SET n = 101 WHERE id IN ('k1', 'k1', 'k2', 'k2')$$,
  $$UPDATE %s SET n = 102 WHERE id = NULL$$,
  $$UPDATE %s SET n = 103 WHERE id = ANY (NULL::text[])$$,
  $$UPDATE %s SET n = 104 WHERE id = ANY ('{}')$$,
  $$UPDATE %s SET n = 105 WHERE id = 'k1' OR id = 'k2'$$,
  $$UPDATE %s SET n = 106 WHERE id = 'k1' AND n = 1$$,
  $$UPDATE %s SET n = 107 WHERE false$$,
  $$UPDATE %s SET n = 108 WHERE id = 'k1' AND id = 'k2'$$,
  $$UPDATE %s SET n = 109 WHERE id = 'k1' AND id LIKE 'x%%'$$,
  $$UPDATE %s SET n = 110 WHERE id = ANY ('{k1,k2}') AND id = ANY ('{k2,K1}')$$,
  $$UPDATE %s SET n = 111 WHERE id = 'k1 '$$,
  $$UPDATE %s SET n = 112 WHERE id = ''$$,
  $$UPDATE %s SET n = 113 WHERE id = 'k1' AND random() < 2$$,
  $$UPDATE %s SET n = 114 WHERE id = (SELECT 'k2')$$,
  $$UPDATE %s SET n = 115 WHERE id = ANY ((SELECT array_agg(x) FROM unnest('{k1,k2,k1}'::text[]) x)::text[])$$,
  $$UPDATE %s SET n = 116 WHERE id IS NOT NULL$$,
  $$DELETE FROM %s WHERE id = 'k2' AND (SELECT false)$$);
SELECT * FROM dma_diff();
-- A generic plan with NULL parameters.
PREPARE dma_k(text) AS DELETE FROM da WHERE id = $1;
PREPARE dma_a(text[]) AS DELETE FROM da WHERE id = ANY ($1);
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE dma_k(NULL);
EXECUTE dma_k(NULL);
EXECUTE dma_a(NULL);
EXECUTE dma_a('{NULL,NULL}');
EXECUTE dma_a('{k9,NULL,k9}');
RESET plan_cache_mode;
DEALLOCATE ALL;
SELECT * FROM dma_diff();

-- The assigned value: volatile inside a SQL function, nextval,
-- clock_timestamp() take the per-row path (one value per row); stable
-- functions, an InitPlan reading the table being updated, a multiple
-- assignment from one sub-select, DEFAULT go direct.
CREATE SEQUENCE dma_seq;
CREATE FUNCTION dma_vol() RETURNS int LANGUAGE sql AS $$ SELECT (random() * 1e9)::int $$;
CREATE FUNCTION dma_stable() RETURNS int STABLE LANGUAGE sql AS $$ SELECT 77 $$;
SELECT * FROM dma_runs(
  $$UPDATE %s SET n = dma_vol()$$,
  $$UPDATE %s SET n = nextval('dma_seq')$$,
  $$UPDATE %s SET s = clock_timestamp()::text$$);
-- clock_timestamp() may repeat within one microsecond: the per-row path
-- shows as more than one value, the direct path would give one.
SELECT count(DISTINCT n) AS distinct_n, count(DISTINCT s) > 1 AS s_per_row, count(*) FROM da;
SELECT * FROM dma_runs(
  $$UPDATE %s SET n = dma_stable(), s = 'st'$$,
  $$UPDATE %s SET n = (SELECT count(*) FROM da WHERE id LIKE 'k1%%')$$,
  $$UPDATE %s SET (n, s) = (SELECT 5, 'multi') WHERE id LIKE 'k%%'$$,
  $$UPDATE %s SET n = (SELECT count(*) FROM dan x WHERE x.id < %1$s.id)$$,
  $$UPDATE %s SET s = DEFAULT WHERE id = 'K1'$$);
SELECT * FROM dma_diff();
ALTER FOREIGN TABLE da ALTER COLUMN n SET DEFAULT (random() * 1e9)::int;
EXPLAIN (COSTS OFF) UPDATE da SET n = DEFAULT;
ALTER FOREIGN TABLE da ALTER COLUMN n SET DEFAULT 42;
EXPLAIN (COSTS OFF) UPDATE da SET n = DEFAULT;
ALTER FOREIGN TABLE da ALTER COLUMN n DROP DEFAULT;
-- A domain CHECK fails when a row is met, not when none is.
CREATE DOMAIN dma_pos AS int CHECK (VALUE > 0);
SELECT * FROM dma_run($$UPDATE %s SET n = (-1)::dma_pos WHERE id = 'nope'$$);
UPDATE da SET n = (-1)::dma_pos WHERE id LIKE 'k%';

-- Types: the column type's errors, and values whose stored form must not
-- depend on the session's settings.
CREATE FOREIGN TABLE dty (id text OPTIONS (key 'true'), v varchar(3), num numeric(5,2),
                          ts timestamptz, b bytea, arr int[], j jsonb)
  SERVER rdma OPTIONS (key_prefix 'regress_dma:t:');
CREATE FOREIGN TABLE dtyr (id text OPTIONS (key 'true'), v varchar(3), num numeric(5,2),
                           ts timestamptz, b bytea, arr int[], j jsonb)
  SERVER rdma OPTIONS (key_prefix 'regress_dma:tr:');
INSERT INTO dty VALUES ('a', 'x', 1, '2024-01-01 00:00+00', '\x00', '{1}', '{}'),
                       ('b', 'y', 2, '2024-01-01 00:00+00', '\x01', '{2}', '{}');
INSERT INTO dtyr SELECT * FROM dty;
UPDATE dty SET v = 'abcd';
UPDATE dty SET num = 1234.5;
BEGIN;
SET LOCAL TimeZone = 'Asia/Kolkata';
SET LOCAL DateStyle = 'SQL, DMY';
EXPLAIN (COSTS OFF) UPDATE dty SET ts = '01/02/2024 10:00', v = 'ab  ', num = 123.456;
UPDATE dty SET ts = '01/02/2024 10:00', v = 'ab  ', num = 123.456;
UPDATE dtyr SET ts = '01/02/2024 10:00', v = 'ab  ', num = 123.456 RETURNING 1;
COMMIT;
UPDATE dty SET b = '\x00ff00', arr = '{1,NULL,3}', j = '{"b": 1, "a": [2]}';
UPDATE dtyr SET b = '\x00ff00', arr = '{1,NULL,3}', j = '{"b": 1, "a": [2]}' RETURNING 1;
SELECT * FROM dty EXCEPT ALL SELECT * FROM dtyr;
SELECT * FROM dty ORDER BY id;
\! redis-cli -p "$REDIS_PORT" hget regress_dma:t:a ts

-- Key types whose equality is not the stored bytes' are not looked up: a
-- numeric, a float8, a nondeterministic collation (the per-row path finds
-- every equal key); COLLATE "C" makes the key clause byte equality again.
CREATE FOREIGN TABLE dnum (id numeric OPTIONS (key 'true'), v int)
  SERVER rdma OPTIONS (key_prefix 'regress_dma:n:');
\! for k in 1 1.0 1.00 2; do redis-cli -p "$REDIS_PORT" hset regress_dma:n:$k v 0 > /dev/null; done
EXPLAIN (COSTS OFF) UPDATE dnum SET v = 5 WHERE id = 1;
UPDATE dnum SET v = 5 WHERE id = 1;
UPDATE dnum SET v = 6 WHERE id = ANY ('{2}');
SELECT id::text, v FROM dnum ORDER BY 1;
CREATE COLLATION dma_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE FOREIGN TABLE dci (id text OPTIONS (key 'true') COLLATE dma_ci, n int, s text)
  SERVER rdma OPTIONS (key_prefix 'regress_dma:a:');
EXPLAIN (COSTS OFF) UPDATE dci SET s = 'ci' WHERE id = 'k1';
EXPLAIN (COSTS OFF) UPDATE dci SET s = 'ci' WHERE id = ANY ('{k1}');
UPDATE dci SET s = 'ci' WHERE id LIKE 'k%';
EXPLAIN (COSTS OFF) UPDATE dci SET s = 'ci' WHERE id = 'k1' COLLATE "C";
EXPLAIN (COSTS OFF) UPDATE dci SET s = 'ci' WHERE id LIKE 'k1%' COLLATE "C";
BEGIN;
UPDATE dci SET n = 1000 WHERE id = 'k1';
SELECT id, n FROM dci WHERE n = 1000 ORDER BY id COLLATE "C";
ROLLBACK;

-- Buffered writes of the transaction: keys with glob metacharacters only
-- in the buffer, a key renamed by an earlier UPDATE, a hash whose fields
-- were all set to NULL (it is gone), a key deleted then updated, a key
-- inserted ON CONFLICT DO NOTHING.
SELECT dma_reset();
BEGIN;
INSERT INTO da VALUES ('k[new', 1, 'b'), ('k*new', 1, 'b');
INSERT INTO dar VALUES ('k[new', 1, 'b'), ('k*new', 1, 'b');
INSERT INTO dan VALUES ('k[new', 1, 'b'), ('k*new', 1, 'b');
UPDATE da SET id = 'k1new' WHERE id = 'k1';
UPDATE dar SET id = 'k1new' WHERE id = 'k1';
UPDATE dan SET id = 'k1new' WHERE id = 'k1';
INSERT INTO da VALUES ('oc', 1, 'oc'), ('k2', 99, 'oc') ON CONFLICT DO NOTHING;
INSERT INTO dar VALUES ('oc', 1, 'oc'), ('k2', 99, 'oc') ON CONFLICT DO NOTHING;
INSERT INTO dan VALUES ('oc', 1, 'oc'), ('k2', 99, 'oc') ON CONFLICT DO NOTHING;
SELECT * FROM dma_runs(
  $$UPDATE %s SET s = 'b1' WHERE id LIKE 'k[%%'$$,
  $$UPDATE %s SET s = 'b2' WHERE id LIKE 'k*%%'$$,
  $$DELETE FROM %s WHERE id LIKE 'k?%%'$$,
  $$UPDATE %s SET n = 500 WHERE id = 'k1'$$,
  $$UPDATE %s SET n = 501 WHERE id = ANY ('{k1new,oc,k2}')$$,
  $$UPDATE %s SET s = 'b3' WHERE id LIKE 'k1%%'$$,
  $$DELETE FROM %s WHERE id = 'k1'$$,
  $$DELETE FROM %s WHERE id = 'kx3'$$,
  $$UPDATE %s SET s = 'b4' WHERE id = 'kx3'$$,
  $$UPDATE %s SET s = 'b5' WHERE id LIKE 'kx%%'$$,
  $$UPDATE %s SET s = 'b6'$$);
SELECT * FROM dma_diff();
-- A hash whose every field becomes NULL is gone (Redis has no empty hash):
-- both Redis paths then find no row, the native table keeps it.
UPDATE da SET n = NULL, s = NULL WHERE id = 'kß';
UPDATE dar SET n = NULL, s = NULL WHERE id = 'kß' RETURNING 1;
UPDATE da SET n = 7 WHERE id = 'kß';
UPDATE dar SET n = 7 WHERE id = 'kß' RETURNING 1;
COMMIT;
SELECT count(*) AS differ FROM ((TABLE da EXCEPT ALL TABLE dar) UNION ALL (TABLE dar EXCEPT ALL TABLE da)) d;
SELECT * FROM da ORDER BY id COLLATE "C";

-- An error at the first key found, with the key scan's next round in
-- flight (fetch_size 7): the statement writes nothing, the connection stays
-- usable, and ROLLBACK TO SAVEPOINT keeps the transaction's earlier writes.
CREATE FOREIGN TABLE dee (id text OPTIONS (key 'true'), n int)
  SERVER rdma OPTIONS (key_prefix 'regress_dma:e:', fetch_size '7');
INSERT INTO dee SELECT 'm' || i, i FROM generate_series(1, 600) i;
SET pgpoly_test.zero = '0';
UPDATE dee SET n = 1 / current_setting('pgpoly_test.zero')::int;
SELECT count(*), sum(n) FROM dee;
BEGIN;
UPDATE dee SET n = 0 WHERE id LIKE 'm2%';
SAVEPOINT s;
UPDATE dee SET n = 1 / current_setting('pgpoly_test.zero')::int WHERE id LIKE 'm1%';
ROLLBACK TO SAVEPOINT s;
DELETE FROM dee WHERE id LIKE 'm3%';
SELECT count(*), sum(n) FROM dee;
COMMIT;
SELECT count(*), sum(n) FROM dee;
RESET pgpoly_test.zero;

-- write_mode 'immediate' with small rounds and batches: the writes are
-- sent while the key scan's next round is in flight.
CREATE FOREIGN TABLE dim (id text OPTIONS (key 'true'), n int)
  SERVER rdma OPTIONS (key_prefix 'regress_dma:i:', write_mode 'immediate',
                       batch_size '3', fetch_size '7');
CREATE FOREIGN TABLE dimr (id text OPTIONS (key 'true'), n int)
  SERVER rdma OPTIONS (key_prefix 'regress_dma:ir:', write_mode 'immediate',
                       batch_size '3', fetch_size '7');
INSERT INTO dim SELECT 'm' || i, i FROM generate_series(1, 600) i;
INSERT INTO dimr SELECT * FROM dim;
UPDATE dim SET n = 0 WHERE id LIKE 'm1%';
WITH r AS (UPDATE dimr SET n = 0 WHERE id LIKE 'm1%' RETURNING 1) SELECT count(*) FROM r;
DELETE FROM dim WHERE id LIKE 'm2%';
WITH r AS (DELETE FROM dimr WHERE id LIKE 'm2%' RETURNING 1) SELECT count(*) FROM r;
UPDATE dim SET n = -1 WHERE id = ANY (ARRAY(SELECT 'm' || i FROM generate_series(1, 700, 3) i));
WITH r AS (UPDATE dimr SET n = -1 WHERE id = ANY (ARRAY(SELECT 'm' || i FROM generate_series(1, 700, 3) i)) RETURNING 1)
  SELECT count(*) FROM r;
SELECT count(*) AS differ FROM ((TABLE dim EXCEPT ALL TABLE dimr) UNION ALL (TABLE dimr EXCEPT ALL TABLE dim)) d;
SELECT count(*), sum(n) FROM dim;

-- Through a partitioned parent or an inheritance parent the per-row path
-- runs (only a base relation goes direct); through views.
SELECT dma_reset();
CREATE TABLE dpp (id text, n int, s text) PARTITION BY LIST (left(id, 1));
CREATE FOREIGN TABLE dpp_k PARTITION OF dpp FOR VALUES IN ('k')
  SERVER rdma OPTIONS (key_prefix 'regress_dma:a:');
ALTER FOREIGN TABLE dpp_k ALTER COLUMN id OPTIONS (ADD key 'true');
CREATE TABLE dpp_rest PARTITION OF dpp DEFAULT;
INSERT INTO dpp_rest VALUES ('z', 0, 'native');
EXPLAIN (COSTS OFF) UPDATE dpp SET n = 77 WHERE id LIKE 'k1%';
UPDATE dpp SET n = 77 WHERE id LIKE 'k1%';
UPDATE dar SET n = 77 WHERE id LIKE 'k1%' RETURNING 1;
UPDATE dan SET n = 77 WHERE id LIKE 'k1%';
CREATE TABLE dip (id text, n int, s text);
CREATE FOREIGN TABLE dip_k () INHERITS (dip) SERVER rdma OPTIONS (key_prefix 'regress_dma:a:');
ALTER FOREIGN TABLE dip_k ALTER COLUMN id OPTIONS (ADD key 'true');
EXPLAIN (COSTS OFF) DELETE FROM dip WHERE id = 'k2';
DELETE FROM dip WHERE id = 'k2';
DELETE FROM dar WHERE id = 'k2' RETURNING 1;
DELETE FROM dan WHERE id = 'k2';
CREATE VIEW dvda WITH (security_barrier) AS SELECT * FROM da WHERE id LIKE 'k%';
CREATE VIEW dvdar WITH (security_barrier) AS SELECT * FROM dar WHERE id LIKE 'k%';
CREATE VIEW dvdan WITH (security_barrier) AS SELECT * FROM dan WHERE id LIKE 'k%';
CREATE VIEW dvn AS SELECT * FROM da WHERE n > 5;
SELECT * FROM dma_runs(
  $$UPDATE dv%1$s SET s = 'v0'$$,
  $$UPDATE dv%1$s SET s = 'v1' WHERE id LIKE 'k1%%'$$,
  $$DELETE FROM dv%1$s WHERE id = 'K1'$$);
EXPLAIN (COSTS OFF) UPDATE dvn SET s = 'v2';
SELECT * FROM dma_diff();

-- A value a column cannot read (abc in an int field): the per-row UPDATE
-- reads the whole old row and fails; a direct UPDATE reads no value.
\! redis-cli -p "$REDIS_PORT" hset regress_dma:a:k1 n abc > /dev/null
\! redis-cli -p "$REDIS_PORT" hset regress_dma:b:k1 n abc > /dev/null
UPDATE dar SET s = 'r' WHERE id = 'k1' AND length(id) > 0;
UPDATE da SET s = 'r' WHERE id = 'k1';
UPDATE da SET n = 1 WHERE id = 'k1';
SELECT * FROM da WHERE id = 'k1';

DROP VIEW dvda, dvdar, dvdan, dvn;
DROP TABLE dpp, dip CASCADE;
DROP TABLE dan;
DROP FUNCTION dma_runs(text[]), dma_run(text), dma_diff(), dma_reset(), dma_vol(), dma_stable();
DROP SEQUENCE dma_seq;
DROP SERVER rdma CASCADE;
DROP DOMAIN dma_pos;
DROP COLLATION dma_ci;
\! redis-cli -p "$REDIS_PORT" eval "for _, k in ipairs(redis.call('keys', ARGV[1])) do redis.call('del', k) end" 0 'regress_dma:*' > /dev/null
