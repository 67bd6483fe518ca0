-- pgpoly_redis: the streaming batched join (pieces sent while the outer
-- rows are read, replies read as rows need them) attacked: executor errors,
-- savepoints and cursors with replies still owed, rescans, two joins on one
-- connection, TTL (two replies per key), other table types, a closed
-- connection between FETCHes, all-NULL batches, a differential against a
-- native copy over many fetch sizes.  Each answer is the native one.
\getenv redis_port REDIS_PORT
\set VERBOSITY terse
CREATE SERVER rja FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE FOREIGN TABLE ja (k text OPTIONS (key 'true'), n int, t text) SERVER rja
  OPTIONS (key_prefix 'regress_jsa:');
CREATE FOREIGN TABLE ja100 (k text OPTIONS (key 'true'), n int, t text) SERVER rja
  OPTIONS (key_prefix 'regress_jsa:', fetch_size '100');
CREATE FOREIGN TABLE ja7 (k text OPTIONS (key 'true'), n int) SERVER rja
  OPTIONS (key_prefix 'regress_jsa:', fetch_size '7');
CREATE FOREIGN TABLE jattl (k text OPTIONS (key 'true'), n int, _ttl int) SERVER rja
  OPTIONS (key_prefix 'regress_jsa:');
CREATE FOREIGN TABLE jaz (key text, member text, score float8) SERVER rja
  OPTIONS (table_type 'zset', key_prefix 'regress_jsa_z:');
INSERT INTO ja SELECT 'k' || i, i, (i * 7 % 13)::text FROM generate_series(1, 3000) i;
INSERT INTO jaz SELECT 'z' || (i % 300), 'm' || i, i FROM generate_series(1, 1500) i;
CREATE TABLE jn AS SELECT 'k' || i AS k, i AS n, (i * 7 % 13)::text AS t
  FROM generate_series(1, 3000) i;
CREATE TABLE jids AS SELECT 'k' || (i % 3100) AS k, 'z' || (i % 350) AS z, i
  FROM generate_series(1, 3500) i;
INSERT INTO jids VALUES (NULL, NULL, 0), (NULL, NULL, -1), ('k5', 'z5', -5), ('k5', 'z5', -6);
ANALYZE jids; ANALYZE jn;

-- An executor error (division by zero, a failing cast) while replies are
-- owed; the next statements get their own replies.
SELECT f.n / (l.i - 40) FROM jids l JOIN ja f ON f.k = l.k;
SELECT count(*), sum(f.n) FROM jids l JOIN ja f ON f.k = l.k;
SELECT (f.t || 'x')::int FROM jids l JOIN ja f ON f.k = l.k WHERE l.i > 2;
SELECT n FROM ja WHERE k = 'k77';

-- Savepoints: a cursor opened before, part-read; errors and joins inside
-- the subtransaction; the cursor goes on where it was.
BEGIN;
DECLARE c0 CURSOR FOR SELECT l.i, f.n FROM jids l JOIN ja f ON f.k = l.k;
FETCH 2 FROM c0;
SAVEPOINT s1;
DECLARE c2 CURSOR FOR SELECT l.i, f.n, f.t FROM jids l JOIN ja f ON f.k = l.k;
FETCH 3 FROM c2;
SELECT 1 / 0;
ROLLBACK TO s1;
FETCH 3 FROM c0;
SAVEPOINT s2;
SELECT f.n / 0 FROM jids l JOIN ja f ON f.k = l.k;
ROLLBACK TO s2;
FETCH 2 FROM c0;
SAVEPOINT s3;
SELECT count(*), sum(f.n) FROM jids l JOIN ja f ON f.k = l.k;
ROLLBACK TO s3;
MOVE FORWARD ALL IN c0;
COMMIT;

-- Two cursors on the connection, interleaved.
BEGIN;
DECLARE d1 CURSOR FOR SELECT l.i, f.n FROM jids l JOIN ja f ON f.k = l.k;
DECLARE d2 CURSOR FOR SELECT l.i, f.n FROM jids l JOIN ja7 f ON f.k = l.k;
FETCH 2 FROM d1;
FETCH 2 FROM d2;
FETCH 2 FROM d1;
MOVE FORWARD ALL IN d1;
MOVE FORWARD ALL IN d2;
COMMIT;

-- Two batched joins on one connection in one query; UNION ALL with LIMITs;
-- CTEs.
SELECT count(*), sum(f1.n + f2.n) FROM jids l JOIN ja f1 ON f1.k = l.k
  JOIN ja100 f2 ON f2.k = 'k' || (f1.n + 1);
SELECT count(*), sum(f1.n + f2.n) FROM jids l JOIN jn f1 ON f1.k = l.k
  JOIN jn f2 ON f2.k = 'k' || (f1.n + 1);
SELECT count(*) FROM ((SELECT f.n FROM jids l JOIN ja f ON f.k = l.k LIMIT 5)
  UNION ALL (SELECT f.n FROM jids l JOIN ja7 f ON f.k = l.k LIMIT 40)
  UNION ALL (SELECT f.n FROM jids l JOIN ja f ON f.k = l.k)) u;
WITH a AS MATERIALIZED (SELECT l.i, f.n FROM jids l JOIN ja f ON f.k = l.k),
     b AS (SELECT l.i, f.n FROM jids l JOIN ja100 f ON f.k = l.k)
SELECT count(*), sum(a.n), sum(b.n) FROM a JOIN b USING (i);

-- Rescans (LATERAL, with and without LIMIT; a correlated subplan).
SELECT g, s.c, s.sm FROM generate_series(1, 4) g, LATERAL (SELECT count(*) c, sum(f.n) sm
  FROM jids l JOIN ja f ON f.k = l.k WHERE l.i % 4 = g % 4) s ORDER BY g;
SELECT g, s.c, s.sm FROM generate_series(1, 4) g, LATERAL (SELECT count(*) c, sum(f.n) sm
  FROM jids l JOIN jn f ON f.k = l.k WHERE l.i % 4 = g % 4) s ORDER BY g;
SELECT g, s.n FROM generate_series(1, 4) g, LATERAL (SELECT f.n FROM jids l
  JOIN ja f ON f.k = l.k WHERE l.i >= g * 50 LIMIT 2) s;
SELECT g, (SELECT f.n FROM jids l JOIN ja f ON f.k = l.k WHERE l.i > g * 100
  ORDER BY l.i LIMIT 1) FROM generate_series(1, 3) g;

-- TTL: two replies per key, read as rows need them; a zset (rows per key).
SELECT count(*), sum(f.n), bool_and(f._ttl = -1) FROM jids l JOIN jattl f ON f.k = l.k;
SELECT l.i, f.n, f._ttl FROM jids l JOIN jattl f ON f.k = l.k LIMIT 2;
SELECT count(*), sum(z.score) FROM jids l JOIN jaz z ON z.key = l.z;
SELECT l.i, z.member FROM jids l JOIN jaz z ON z.key = l.z LIMIT 2;

-- A batch of NULL keys only: nothing sent.
SELECT count(*) FROM (SELECT NULL::text k FROM generate_series(1, 50)) l JOIN ja f ON f.k = l.k;
SELECT count(*) FROM (SELECT NULL::text k FROM generate_series(1, 50)) l LEFT JOIN ja f ON f.k = l.k;

-- The connection closed between FETCHes, and while the outer rows are read:
-- the replies not received are asked again.
BEGIN;
DECLARE c CURSOR FOR SELECT l.i, f.n FROM jids l JOIN ja f ON f.k = l.k;
FETCH 2 FROM c;
SELECT pgpoly.disconnect('rja');
FETCH 2 FROM c;
SELECT n FROM ja WHERE k = 'k150';
MOVE FORWARD ALL IN c;
COMMIT;
SELECT count(*), sum(f.n) FROM (SELECT k, i, CASE WHEN i IN (40, 70, 700)
  THEN pgpoly.disconnect('rja') END d FROM jids) l JOIN ja f ON f.k = l.k;

-- Differential, many fetch sizes (pieces of 32, 64, ... straddling them):
-- left and anti joins, the outer side a Redis scan of the same connection.
CREATE TABLE jr AS SELECT CASE WHEN i % 19 = 0 THEN NULL
  ELSE 'k' || ((i * 7919) % 3300) END AS k, i FROM generate_series(1, 5000) i;
ANALYZE jr;
DO $$
DECLARE fs int; bad bigint; tot bigint := 0;
BEGIN
  FOREACH fs IN ARRAY ARRAY[1, 3, 31, 32, 33, 64, 65, 97, 1000, 4999, 10000] LOOP
    EXECUTE format('ALTER FOREIGN TABLE ja OPTIONS (ADD fetch_size %L)', fs::text);
    SELECT count(*) INTO bad FROM ((SELECT l.i, f.n, f.t FROM jr l LEFT JOIN ja f ON f.k = l.k)
      EXCEPT ALL (SELECT l.i, f.n, f.t FROM jr l LEFT JOIN jn f ON f.k = l.k)) x;
    tot := tot + bad;
    SELECT count(*) INTO bad FROM ((SELECT l.i FROM jr l WHERE NOT EXISTS (SELECT 1 FROM ja f WHERE f.k = l.k))
      EXCEPT ALL (SELECT l.i FROM jr l WHERE NOT EXISTS (SELECT 1 FROM jn f WHERE f.k = l.k))) x;
    tot := tot + bad;
    SELECT count(*) INTO bad FROM ((SELECT o.k, f.n FROM (SELECT k FROM ja OFFSET 0) o JOIN ja f ON f.k = o.k)
      EXCEPT ALL (SELECT k, n FROM jn)) x;
    tot := tot + bad;
    EXECUTE 'ALTER FOREIGN TABLE ja OPTIONS (DROP fetch_size)';
  END LOOP;
  RAISE NOTICE 'mismatches: %', tot;
END $$;
SELECT count(*) FROM jr l LEFT JOIN ja f ON f.k = l.k;
\set VERBOSITY default

DELETE FROM ja;
DELETE FROM jaz;
DROP TABLE jn, jids, jr;
DROP SERVER rja CASCADE;
