--
-- A foreign table PostgreSQL proves empty while planning (WHERE false, a
-- comparison with a NULL constant, or with a NULL parameter value in a
-- custom plan) is a dummy relation that the FDW never planned: the planner
-- hooks that look at it afterwards (the vector k-NN path at UPPERREL_FINAL,
-- the Redis batched join on the inner side of an outer or anti join) must
-- leave it alone.  They crashed the backend.  Differential: each query
-- runs on the foreign tables and on native copies.  Found by
-- test/fault/test_fdw_differential.py.  The collection pgpoly_rt_empty and
-- the index er_docs are created and dropped here.
--
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL
\set VERBOSITY terse
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_empty"

CREATE SERVER er_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE SERVER er_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
CREATE SERVER er_chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
SELECT pgpoly.elastic_request('er_es', 'DELETE', '/er_docs') IS NOT NULL AS cleaned;
CREATE FOREIGN TABLE er_r (k text OPTIONS (key 'true'), f8 float8)
  SERVER er_redis OPTIONS (key_prefix 'regress_er:');
CREATE FOREIGN TABLE er_e (_id text, f8 float8)
  SERVER er_es OPTIONS (index 'er_docs', refresh 'true');
CREATE FOREIGN TABLE er_v (id text, embedding real[], f8 float8)
  SERVER er_chroma OPTIONS (collection 'pgpoly_rt_empty', create_collection 'true',
                            distance 'l2');
CREATE TABLE er_nat (id text, f8 float8);
INSERT INTO er_nat VALUES ('a', 1), ('b', 2);
CREATE TABLE er_side (sk text);
INSERT INTO er_side VALUES ('a'), ('b'), ('c');
INSERT INTO er_r SELECT * FROM er_nat;
INSERT INTO er_e SELECT * FROM er_nat;
INSERT INTO er_v SELECT id, ARRAY[f8, 1]::real[], f8 FROM er_nat;

-- Each query's rows on the foreign table minus those on the native copy,
-- and the other way round: 0 and 0 expected.
CREATE FUNCTION er_diff(q text, tbl text, key text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	a bigint;
	b bigint;
	fq text := replace(replace(q, '@T', tbl), '@K', key);
	nq text := replace(replace(q, '@T', 'er_nat'), '@K', 'id');
BEGIN
	EXECUTE format('SELECT count(*) FROM ((%s) EXCEPT ALL (%s)) x', fq, nq) INTO a;
	EXECUTE format('SELECT count(*) FROM ((%s) EXCEPT ALL (%s)) x', nq, fq) INTO b;
	RETURN a || ' ' || b;
END $$;

-- The batched join with an empty inner side (LEFT and anti joins keep the
-- outer rows), and the k-NN path of an empty relation.
SELECT t, er_diff(q, t, k) FROM (VALUES
    ('SELECT s.sk, f.f8 FROM er_side s LEFT JOIN (SELECT * FROM @T WHERE false) f ON f.@K = s.sk'),
    ('SELECT s.sk, f.f8 FROM er_side s LEFT JOIN (SELECT * FROM @T WHERE f8 > NULL::float8) f ON f.@K = s.sk'),
    ('SELECT s.sk FROM er_side s WHERE NOT EXISTS (SELECT 1 FROM @T f WHERE f.@K = s.sk AND false)'),
    ('SELECT @K FROM @T WHERE f8 >= NULL::float8 ORDER BY @K LIMIT 1'),
    ('SELECT @K FROM @T WHERE false LIMIT 1'),
    ('SELECT count(*) FROM @T WHERE false')) q(q),
  (VALUES ('er_r', 'k'), ('er_e', '_id'), ('er_v', 'id')) t(t, k)
ORDER BY q, t;
SELECT id FROM er_v WHERE false ORDER BY embedding <-> '{1,1}' LIMIT 1;

-- The same through prepared statements: a NULL parameter value makes the
-- custom plan's relation empty.
PREPARE er_q1(float8, int8) AS SELECT id FROM er_v WHERE f8 >= $1 ORDER BY id DESC LIMIT $2;
EXECUTE er_q1(NULL, 1);
EXECUTE er_q1(1, 1);
PREPARE er_q2(float8) AS
  SELECT s.sk, f.f8 FROM er_side s LEFT JOIN (SELECT * FROM er_r WHERE f8 > $1) f ON f.k = s.sk
  ORDER BY s.sk;
EXECUTE er_q2(NULL);
EXECUTE er_q2(1);

DEALLOCATE ALL;
DROP FUNCTION er_diff(text, text, text);
DELETE FROM er_r;
DELETE FROM er_v;
SELECT pgpoly.elastic_request('er_es', 'DELETE', '/er_docs') IS NOT NULL AS dropped;
DROP TABLE er_nat, er_side;
DROP SERVER er_redis, er_es, er_chroma CASCADE;
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_empty"
