--
-- Rescans of Elasticsearch and vector scans, differential: each query runs
-- against the foreign table and against a native copy, in nested loops
-- (hash and merge joins off) whose inner foreign scan is rescanned once per
-- outer row with new parameters: a join clause, a LATERAL top-k with ORDER
-- BY ... LIMIT, a correlated count(*), an = ANY over an array, a LATERAL
-- k-NN with a filter taken from the outer row; and a SCROLL cursor moved
-- backward and absolutely.  Every difference is a wrong answer (0 expected).
-- The index rs_docs and the collection pgpoly_rt_rescan are created and
-- dropped here.
--
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL
\set VERBOSITY terse
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_rescan"

CREATE SERVER rs_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('rs_es', 'DELETE', '/rs_docs') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('rs_es', 'PUT', '/rs_docs',
  '{"mappings":{"properties":{"grp":{"type":"integer"},"score":{"type":"double"},'
  '"name":{"type":"keyword"},"tags":{"type":"keyword"}}}}') IS NOT NULL AS created;
CREATE TABLE rs_nat (id text COLLATE "C" PRIMARY KEY, grp int, score float8, name text, tags text[]);
INSERT INTO rs_nat
SELECT 'd' || i, i % 7, (i * 37 % 101) / 10.0, 'name ' || (i % 13), ARRAY['t' || (i % 3), 't' || (i % 5)]
FROM generate_series(1, 300) i;
CREATE FOREIGN TABLE rs_esd (_id text COLLATE "C", grp int, score float8, name text, tags text[])
  SERVER rs_es OPTIONS (index 'rs_docs', fetch_size '17');
INSERT INTO rs_esd SELECT * FROM rs_nat;
SELECT pgpoly.elastic_request('rs_es', 'POST', '/rs_docs/_refresh') IS NOT NULL AS refreshed;
CREATE TABLE rs_outer AS
SELECT g AS grp, (g * 1.3)::float8 AS lim, 'name ' || (g * 2 % 13) AS nm FROM generate_series(0, 8) g;

-- rows of query f (foreign) missing from n (native) and the other way round
CREATE FUNCTION rs_diff(f text, n text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE d bigint;
BEGIN
	EXECUTE format('SELECT (SELECT count(*) FROM ((%s) EXCEPT ALL (%s)) a) + '
				   '(SELECT count(*) FROM ((%s) EXCEPT ALL (%s)) b)', f, n, n, f) INTO d;
	RETURN d;
END $$;

SET enable_hashjoin = off;
SET enable_mergejoin = off;
SET enable_material = off;
SELECT 'join clause' AS q, rs_diff(
  'SELECT o.grp, e._id, e.score FROM rs_outer o JOIN rs_esd e ON e.grp = o.grp AND e.score > o.lim',
  'SELECT o.grp, e.id, e.score FROM rs_outer o JOIN rs_nat e ON e.grp = o.grp AND e.score > o.lim') AS diff;
SELECT 'lateral top-k' AS q, rs_diff(
  'SELECT o.grp, x._id, x.score FROM rs_outer o, LATERAL (SELECT _id, score FROM rs_esd e
     WHERE e.grp = o.grp ORDER BY score DESC, _id LIMIT 3) x',
  'SELECT o.grp, x.id, x.score FROM rs_outer o, LATERAL (SELECT id, score FROM rs_nat e
     WHERE e.grp = o.grp ORDER BY score DESC, id LIMIT 3) x') AS diff;
SELECT 'correlated count' AS q, rs_diff(
  'SELECT o.grp, (SELECT count(*) FROM rs_esd e WHERE e.name = o.nm AND e.grp <> o.grp) FROM rs_outer o',
  'SELECT o.grp, (SELECT count(*) FROM rs_nat e WHERE e.name = o.nm AND e.grp <> o.grp) FROM rs_outer o') AS diff;
SELECT 'array any' AS q, rs_diff(
  'SELECT o.grp, x._id FROM rs_outer o, LATERAL (SELECT _id FROM rs_esd e
     WHERE (''t'' || o.grp) = ANY (e.tags) AND e.score < o.lim + 3) x',
  'SELECT o.grp, x.id FROM rs_outer o, LATERAL (SELECT id FROM rs_nat e
     WHERE (''t'' || o.grp) = ANY (e.tags) AND e.score < o.lim + 3) x') AS diff;
SELECT count(*) AS rows_compared FROM rs_outer o JOIN rs_nat e ON e.grp = o.grp AND e.score > o.lim;

-- a scroll cursor over a sorted scan, moved both ways
BEGIN;
DECLARE rs_c SCROLL CURSOR FOR SELECT _id, score FROM rs_esd WHERE grp = 3 ORDER BY score, _id;
DECLARE rs_n SCROLL CURSOR FOR SELECT id, score FROM rs_nat WHERE grp = 3 ORDER BY score, id;
CREATE TEMP TABLE rs_moves (i int, f text, n text);
CREATE FUNCTION rs_move(i int, how text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE a text; b text;
BEGIN
	EXECUTE format('FETCH %s FROM rs_c', how) INTO a;
	EXECUTE format('FETCH %s FROM rs_n', how) INTO b;
	INSERT INTO rs_moves VALUES (i, a, b);
END $$;
SELECT rs_move(1, 'NEXT'), rs_move(2, 'NEXT'), rs_move(3, 'NEXT'), rs_move(4, 'PRIOR'),
       rs_move(5, 'ABSOLUTE 20'), rs_move(6, 'LAST'), rs_move(7, 'PRIOR'), rs_move(8, 'FIRST'),
       rs_move(9, 'RELATIVE 5'), rs_move(10, 'ABSOLUTE -2');
SELECT count(*) AS moves, count(*) FILTER (WHERE f IS DISTINCT FROM n) AS differ,
       count(*) FILTER (WHERE f IS NULL) AS at_end FROM rs_moves;
COMMIT;

-- vector: a LATERAL k-NN per outer row, filtered by the outer row's group
CREATE SERVER rs_chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE TABLE rs_vnat (id text COLLATE "C" PRIMARY KEY, embedding real[], metadata jsonb);
INSERT INTO rs_vnat
SELECT 'v' || lpad(i::text, 3, '0'), ARRAY[sin(i * 1.1), cos(i * 0.7), sin(i * 0.3) + 0.2]::real[],
       jsonb_build_object('grp', i % 4, 'n', i)
FROM generate_series(1, 120) i;
CREATE FOREIGN TABLE rs_vec (id text COLLATE "C", embedding real[], metadata jsonb, grp int, n int)
  SERVER rs_chroma OPTIONS (collection 'pgpoly_rt_rescan', create_collection 'true', distance 'l2',
                            fetch_size '11');
INSERT INTO rs_vec (id, embedding, metadata) SELECT * FROM rs_vnat;
CREATE TABLE rs_q AS SELECT q, ARRAY[cos(q), sin(q * 2), 0.5]::real[] AS vec, q % 4 AS grp
FROM generate_series(1, 8) q;
CREATE FUNCTION rs_l2(a real[], b real[]) RETURNS float8 LANGUAGE sql IMMUTABLE AS
  $$ SELECT sqrt(sum((x - y)::float8 ^ 2)) FROM unnest(a, b) u(x, y) $$;
SELECT 'lateral k-NN' AS q, rs_diff(
  'SELECT q.q, x.id FROM rs_q q, LATERAL (SELECT id FROM rs_vec v WHERE v.grp = q.grp
     ORDER BY embedding <-> q.vec LIMIT 4) x',
  'SELECT q.q, x.id FROM rs_q q, LATERAL (SELECT id FROM rs_vnat v WHERE (metadata->>''grp'')::int = q.grp
     ORDER BY rs_l2(embedding, q.vec), id LIMIT 4) x') AS diff;
SELECT 'vector join clause' AS q, rs_diff(
  'SELECT q.q, v.id FROM rs_q q JOIN rs_vec v ON v.n BETWEEN q.q * 10 AND q.q * 10 + 5 AND v.grp = q.grp',
  'SELECT q.q, v.id FROM rs_q q JOIN rs_vnat v ON (v.metadata->>''n'')::int BETWEEN q.q * 10 AND q.q * 10 + 5
     AND (v.metadata->>''grp'')::int = q.grp') AS diff;
RESET enable_hashjoin;
RESET enable_mergejoin;
RESET enable_material;

DROP FUNCTION rs_move(int, text);
DROP FUNCTION rs_diff(text, text);
DROP FUNCTION rs_l2(real[], real[]);
DROP TABLE rs_nat, rs_outer, rs_vnat, rs_q;
SELECT pgpoly.elastic_request('rs_es', 'DELETE', '/rs_docs') IS NOT NULL AS dropped;
DROP SERVER rs_es CASCADE;
DROP SERVER rs_chroma CASCADE;
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_rescan"
