-- pgpoly_redis as client drivers use PostgreSQL: cursors (JDBC fetchSize,
-- psql DECLARE/FETCH) interleaved with writes of the same transaction,
-- prepared statements and generic plans.  Each answer is compared with the
-- same statements on a native copy (EXCEPT ALL both ways: 0 differences).
\getenv redis_port REDIS_PORT
CREATE SERVER rcl FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE FOREIGN TABLE f (id text OPTIONS (key 'true'), v int)
  SERVER rcl OPTIONS (key_prefix 'regress_cl:f:', fetch_size '7');
CREATE TABLE n (id text, v int);
INSERT INTO f SELECT 'k' || i, i FROM generate_series(1, 60) i;
INSERT INTO n SELECT * FROM f;

-- The rows FETCH n FROM cursor c returns, as (id, v).
CREATE FUNCTION fetch_rows(c text, n int) RETURNS TABLE (id text, v int)
LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format('FETCH %s FROM %I', n, c);
END $$;
CREATE TABLE got_f (id text, v int);
CREATE TABLE got_n (id text, v int);
-- Differences between what the two cursors returned (0, 0 expected).
CREATE VIEW diff AS
SELECT (SELECT count(*) FROM (TABLE got_f EXCEPT ALL TABLE got_n) x) AS f_not_n,
       (SELECT count(*) FROM (TABLE got_n EXCEPT ALL TABLE got_f) x) AS n_not_f,
       (SELECT count(*) FROM got_f) AS rows;

-- A cursor does not see the writes its transaction makes after DECLARE
-- (its snapshot is DECLARE's), whether it fetched before them or not, over
-- a full scan and over a correlated subquery rescanned per row.
BEGIN;
DECLARE cf CURSOR FOR SELECT * FROM f;
DECLARE cn CURSOR FOR SELECT * FROM n;
DECLARE sf CURSOR FOR SELECT n.id, (SELECT v FROM f WHERE f.id = n.id) FROM n ORDER BY n.id;
DECLARE sn CURSOR FOR SELECT n.id, (SELECT v FROM n n2 WHERE n2.id = n.id) FROM n ORDER BY n.id;
INSERT INTO got_f SELECT * FROM fetch_rows('cf', 10);
INSERT INTO got_n SELECT * FROM fetch_rows('cn', 10);
INSERT INTO got_f SELECT * FROM fetch_rows('sf', 10);
INSERT INTO got_n SELECT * FROM fetch_rows('sn', 10);
UPDATE f SET v = -v WHERE id LIKE 'k1%' OR id LIKE 'k5%';
UPDATE n SET v = -v WHERE id LIKE 'k1%' OR id LIKE 'k5%';
DELETE FROM f WHERE id LIKE 'k2%';
DELETE FROM n WHERE id LIKE 'k2%';
INSERT INTO f VALUES ('new1', 1), ('new2', 2);
INSERT INTO n VALUES ('new1', 1), ('new2', 2);
INSERT INTO got_f SELECT * FROM fetch_rows('cf', 1000);
INSERT INTO got_n SELECT * FROM fetch_rows('cn', 1000);
INSERT INTO got_f SELECT * FROM fetch_rows('sf', 1000);
INSERT INTO got_n SELECT * FROM fetch_rows('sn', 1000);
SELECT * FROM diff;
-- A cursor declared now sees them.
TRUNCATE got_f, got_n;
DECLARE cf2 CURSOR FOR SELECT * FROM f;
DECLARE cn2 CURSOR FOR SELECT * FROM n;
INSERT INTO got_f SELECT * FROM fetch_rows('cf2', 1000);
INSERT INTO got_n SELECT * FROM fetch_rows('cn2', 1000);
SELECT * FROM diff;
ROLLBACK;

-- Nor does a statement see its own writes: a correlated subquery rescanned
-- after the statement's first insert (batch_size 1: each row buffered at
-- once) counts as a native one does.
CREATE TABLE src (k text);
INSERT INTO src VALUES ('new1'), ('new1'), ('new2'), ('k3');
ALTER FOREIGN TABLE f OPTIONS (ADD batch_size '1');
BEGIN;
INSERT INTO f SELECT s.k || 'x', (SELECT count(*) FROM f WHERE f.id = s.k || 'x') FROM src s;
INSERT INTO n SELECT s.k || 'x', (SELECT count(*) FROM n n2 WHERE n2.id = s.k || 'x') FROM src s;
INSERT INTO f SELECT s.k, 1 FROM src s WHERE NOT EXISTS (SELECT FROM f WHERE f.id = s.k);
INSERT INTO n SELECT s.k, 1 FROM src s WHERE NOT EXISTS (SELECT FROM n n2 WHERE n2.id = s.k);
TRUNCATE got_f, got_n;
INSERT INTO got_f SELECT * FROM f WHERE id LIKE 'new%' OR id LIKE 'k3%';
INSERT INTO got_n SELECT DISTINCT ON (id) * FROM n WHERE id LIKE 'new%' OR id LIKE 'k3%';
SELECT * FROM diff;
ROLLBACK;
ALTER FOREIGN TABLE f OPTIONS (DROP batch_size);

DELETE FROM f;
DROP SERVER rcl CASCADE;
