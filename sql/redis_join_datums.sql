-- The Redis Batched Join keeps its outer rows as datums per batch and reads
-- a key that is an outer column from them: differential tests (the same
-- query on a native copy of the Redis data, fetch_size 1000 and 7) with
-- outer rows of long compressed and external (toasted) text projected
-- after several batches, toasted keys, varchar keys (relabeled), NULL and
-- duplicate keys, more than 1000 outer rows, LIMIT inside a batch, the join
-- rescanned (LATERAL, correlated subquery), a SCROLL cursor read backwards,
-- a generic plan, a nondeterministic collation, a domain key and an
-- expanded array projected from a subquery.
\getenv redis_port REDIS_PORT
CREATE SERVER ajs FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
SELECT setseed(0.7);
CREATE TABLE rn (key text, v int, w text);
INSERT INTO rn SELECT 'k' || i || CASE WHEN i % 7 = 0 THEN repeat('x', 3000) ELSE '' END,
  i, CASE WHEN i % 3 = 0 THEN NULL ELSE md5(i::text) END
FROM generate_series(1, 3000) i WHERE i % 5 <> 0;
CREATE FOREIGN TABLE rr (key text OPTIONS (key 'true'), v int, w text)
  SERVER ajs OPTIONS (key_prefix 'regress_ajs:');
CREATE FOREIGN TABLE rr7 (key text OPTIONS (key 'true'), v int, w text)
  SERVER ajs OPTIONS (key_prefix 'regress_ajs:', fetch_size '7');
INSERT INTO rr SELECT * FROM rn;
-- outer: long compressible and uncompressible values, toasted keys, NULLs, duplicates
CREATE TABLE l (id int, k text, kv varchar(4000), big text, ext text, n numeric);
ALTER TABLE l ALTER ext SET STORAGE EXTERNAL;
INSERT INTO l SELECT i,
  CASE WHEN i % 11 = 0 THEN NULL ELSE 'k' || j || CASE WHEN j % 7 = 0 THEN repeat('x', 3000) ELSE '' END END,
  'k' || j || CASE WHEN j % 7 = 0 THEN repeat('x', 3000) ELSE '' END,
  repeat(md5(i::text), 200 + i % 50),
  (SELECT string_agg(md5((i * 1000 + g)::text), '') FROM generate_series(1, 100 + i % 10) g),
  i / 7.0
FROM (SELECT i, 1 + (random() * 3100)::int AS j FROM generate_series(1, 2600) i) s;
ANALYZE l, rn;
SELECT count(*), count(*) FILTER (WHERE pg_column_compression(big) IS NOT NULL) AS compressed,
       count(*) FILTER (WHERE k IS NULL) AS nulls FROM l;
CREATE FUNCTION dq(q text, OUT batched bool, OUT nrows bigint, OUT diff bigint) LANGUAGE plpgsql AS $$
DECLARE fq text := format(q, 'rr'); nq text := format(q, 'rn'); f7 text := format(q, 'rr7'); line text; d7 bigint;
BEGIN
  batched := false;
  FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || fq LOOP
    batched := batched OR line LIKE '%Redis Batched Join%';
  END LOOP;
  EXECUTE format('WITH a AS MATERIALIZED (%1$s), b AS MATERIALIZED (%2$s)
     SELECT count(*) FROM ((TABLE a EXCEPT ALL TABLE b) UNION ALL (TABLE b EXCEPT ALL TABLE a)) d', fq, nq) INTO diff;
  EXECUTE format('WITH a AS MATERIALIZED (%1$s), b AS MATERIALIZED (%2$s)
     SELECT count(*) FROM ((TABLE a EXCEPT ALL TABLE b) UNION ALL (TABLE b EXCEPT ALL TABLE a)) d', f7, nq) INTO d7;
  diff := diff + d7;
  EXECUTE format('SELECT count(*) FROM (%s) n', nq) INTO nrows;
END $$;
SELECT q, (dq(q)).* FROM (VALUES
 ('SELECT l.id, l.k, l.big, l.ext, r.v, r.w FROM l JOIN %1$s r ON r.key = l.k'),
 ('SELECT l.id, l.big, l.ext, r.v FROM l LEFT JOIN %1$s r ON r.key = l.k'),
 ('SELECT l.id, l.kv, l.big, r.w FROM l LEFT JOIN %1$s r ON r.key = l.kv'),
 ('SELECT l.id, l.n, r.w FROM l JOIN %1$s r ON r.key = l.kv::text'),
 ('SELECT l.id, l.ext FROM l WHERE EXISTS (SELECT 1 FROM %1$s r WHERE r.key = l.k)'),
 ('SELECT l.id, l.big FROM l WHERE NOT EXISTS (SELECT 1 FROM %1$s r WHERE r.key = l.k)'),
 ('SELECT l.id, l.big, r.v FROM l JOIN %1$s r ON r.key = l.k AND length(l.big) > r.v'),
 ('SELECT * FROM (SELECT l.id, l.ext, r.v FROM l JOIN %1$s r ON r.key = l.k ORDER BY l.id LIMIT 1500) s'),
 ('SELECT m.m, s.* FROM generate_series(1, 3) m(m), LATERAL (SELECT l.id, l.big, r.v FROM l JOIN %1$s r ON r.key = l.k WHERE l.id %% 3 = m.m - 1 OFFSET 0) s'),
 ('SELECT m.m, (SELECT sum(length(l.ext) + r.v) FROM l JOIN %1$s r ON r.key = l.k WHERE l.id %% 50 = m.m) FROM generate_series(0, 49) m(m)')
) t(q);
-- cursor: scroll backwards over the join
BEGIN;
SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off;
EXPLAIN (COSTS OFF) SELECT l.id, md5(l.big || l.ext) AS h, r.v FROM l JOIN rr r ON r.key = l.k;
DECLARE c SCROLL CURSOR FOR SELECT l.id, md5(l.big || l.ext) AS h, r.v FROM l JOIN rr r ON r.key = l.k;
MOVE FORWARD 1700 IN c;
FETCH BACKWARD 5 FROM c;
FETCH FORWARD 3 FROM c;
FETCH ABSOLUTE 1003 FROM c;
FETCH LAST FROM c;
COMMIT;
BEGIN;
DECLARE c2 SCROLL CURSOR FOR SELECT l.id, md5(l.big || l.ext) AS h, r.v FROM l JOIN rn r ON r.key = l.k;
MOVE FORWARD 1700 IN c2;
FETCH BACKWARD 5 FROM c2;
FETCH FORWARD 3 FROM c2;
FETCH ABSOLUTE 1003 FROM c2;
FETCH LAST FROM c2;
COMMIT;
-- prepared generic plan
SET plan_cache_mode = force_generic_plan;
PREPARE p(int) AS SELECT count(*), sum(length(l.big)), sum(r.v), md5(string_agg(l.ext || r.w, ',' ORDER BY l.id)) FROM l JOIN rr r ON r.key = l.k WHERE l.id % $1 = 0;
PREPARE pn(int) AS SELECT count(*), sum(length(l.big)), sum(r.v), md5(string_agg(l.ext || r.w, ',' ORDER BY l.id)) FROM l JOIN rn r ON r.key = l.k WHERE l.id % $1 = 0;
EXPLAIN (COSTS OFF) EXECUTE p(1);
EXECUTE p(1); EXECUTE pn(1); EXECUTE p(3); EXECUTE pn(3); EXECUTE p(1); EXECUTE pn(1);
RESET plan_cache_mode;
-- nondeterministic collation key
CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE lc (id int, k text COLLATE ci);
INSERT INTO lc SELECT i, CASE WHEN i % 2 = 0 THEN upper('k' || i) ELSE 'k' || i END FROM generate_series(1, 1200) i;
EXPLAIN (COSTS OFF) SELECT count(*) FROM lc JOIN rr r ON r.key = lc.k;
SELECT count(*) FROM lc JOIN rr r ON r.key = lc.k;
EXPLAIN (COSTS OFF) SELECT count(*) FROM lc JOIN rr r ON r.key = lc.k COLLATE "C";
SELECT count(*) FROM lc JOIN rn r ON r.key = lc.k;
SELECT count(*) FROM lc JOIN rr r ON r.key = lc.k COLLATE "C";
SELECT count(*) FROM lc JOIN rn r ON r.key = lc.k COLLATE "C";

-- a domain key; an outer array built in a subquery (expanded) projected
CREATE DOMAIN dk AS text CHECK (VALUE <> 'zz');
CREATE TABLE ln (id int, d dk, a int[]);
INSERT INTO ln SELECT i, 'k' || (i % 3100), ARRAY[i, i + 1] FROM generate_series(1, 2300) i;
ANALYZE ln;
EXPLAIN (COSTS OFF) SELECT s.id, s.a, r.v FROM (SELECT id, d, array_append(a, id) AS a FROM ln OFFSET 0) s JOIN rr r ON r.key = s.d;
SELECT (SELECT count(*) FROM ((SELECT s.id, s.a, r.v FROM (SELECT id, d, array_append(a, id) AS a FROM ln OFFSET 0) s JOIN rr r ON r.key = s.d
  EXCEPT ALL SELECT s.id, s.a, r.v FROM (SELECT id, d, array_append(a, id) AS a FROM ln OFFSET 0) s JOIN rn r ON r.key = s.d)
  UNION ALL (SELECT s.id, s.a, r.v FROM (SELECT id, d, array_append(a, id) AS a FROM ln OFFSET 0) s JOIN rn r ON r.key = s.d
  EXCEPT ALL SELECT s.id, s.a, r.v FROM (SELECT id, d, array_append(a, id) AS a FROM ln OFFSET 0) s JOIN rr r ON r.key = s.d)) d) AS domain_array_diff;
DELETE FROM rr;
DROP SERVER ajs CASCADE;
DROP TABLE rn, l, lc, ln;
DROP FUNCTION dq(text);
DROP DOMAIN dk;
DROP COLLATION ci;
DEALLOCATE p;
DEALLOCATE pn;
