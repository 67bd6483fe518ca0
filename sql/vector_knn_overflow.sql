--
-- pgpoly_vector k-NN pushdown against a real Chroma when a distance does not
-- fit in a float4: Chroma computes in single precision and writes a distance
-- that overflowed (an infinity, or NaN for an inner product of infinities)
-- as JSON null (serde_json writes a non-finite float so).  That is an
-- honest answer, not a lying service, but it ranks the overflowed records in
-- no particular order; SQL's <->, <#> (double precision) rank them.
-- Differential: the same k-NN queries on a native copy.  The collections
-- pgpoly_rt_ko_* are created and dropped here.
--
\getenv chroma_url CHROMA_URL
\set VERBOSITY terse
\! for c in pgpoly_rt_ko_l2 pgpoly_rt_ko_ip; do curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/$c"; done

CREATE SERVER ko_chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE TABLE ko_native (id text COLLATE "C" PRIMARY KEY, embedding real[], metadata jsonb);
INSERT INTO ko_native VALUES
  ('near', '{1,2}', '{"g": 1}'), ('mid', '{1e19,1e19}', '{"g": 1}'),
  ('big1', '{1e30,1e30}', '{"g": 1}'), ('big2', '{-1e30,-3e38}', '{"g": 2}'),
  ('big3', '{2e20,0}', '{"g": 2}'), ('big4', '{0,-5e25}', '{"g": 1}');
CREATE FOREIGN TABLE ko_l2 (id text, embedding real[], metadata jsonb, g int, _distance float8)
  SERVER ko_chroma OPTIONS (collection 'pgpoly_rt_ko_l2', create_collection 'true', distance 'l2');
CREATE FOREIGN TABLE ko_ip (id text, embedding real[], metadata jsonb, g int, _distance float8)
  SERVER ko_chroma OPTIONS (collection 'pgpoly_rt_ko_ip', create_collection 'true', distance 'ip');
INSERT INTO ko_l2 (id, embedding, metadata) SELECT * FROM ko_native;
INSERT INTO ko_ip (id, embedding, metadata) SELECT * FROM ko_native;
CREATE VIEW ko_nat AS SELECT id, embedding, (metadata->>'g')::int AS g FROM ko_native;

-- The rows of foreign query f and native query n (both: id, d) that differ
-- in the sequence of distances or, without ties, in the distance of an id
-- (to 5 digits, -0 as 0; records at equal distances come in any order);
-- -1: an error.
CREATE FUNCTION ko_diff(f text, n text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE r bigint;
BEGIN
  EXECUTE format('WITH a AS MATERIALIZED (SELECT row_number() OVER () AS pos, id, to_char(d + 0, ''9.9999EEEE'') AS d FROM (%1$s) q),
                       b AS MATERIALIZED (SELECT row_number() OVER () AS pos, id, to_char(d + 0, ''9.9999EEEE'') AS d FROM (%2$s) q)
    SELECT (SELECT count(*) FROM ((SELECT pos, d FROM a EXCEPT ALL SELECT pos, d FROM b)
                                  UNION ALL (SELECT pos, d FROM b EXCEPT ALL SELECT pos, d FROM a)) x)
         + (SELECT count(*) FROM ((SELECT id, d FROM a EXCEPT ALL SELECT id, d FROM b)
                                  UNION ALL (SELECT id, d FROM b EXCEPT ALL SELECT id, d FROM a)) y
            WHERE (SELECT count(*) FROM a) = (SELECT count(DISTINCT d) FROM a))', f, n) INTO r;
  RETURN r;
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE '%: %', f, SQLERRM;
  RETURN -1;
END $$;
CREATE FUNCTION ko_check(tbl text, op text) RETURNS TABLE (q text, diff bigint)
LANGUAGE sql AS $$
  SELECT format('%s %s, %s', v, c, k),
         ko_diff(format('SELECT id, embedding %s %L AS d FROM %s %s ORDER BY embedding %s %L LIMIT %s',
                        op, v, tbl, c, op, v, k),
                 format('SELECT id, embedding %s %L AS d FROM ko_nat %s ORDER BY embedding %s %L LIMIT %s',
                        op, v, c, op, v, k))
  FROM (VALUES ('{1,1}'), ('{1e30,1e30}'), ('{-3e38,0}')) v(v),
       (VALUES (''), ('WHERE g = 1')) c(c), (VALUES (2), (3), (6), (10)) k(k)
$$;

-- Records the service ranks by distances it could not compute: ranked here.
SELECT id, to_char(_distance, '9.9999EEEE') AS d FROM ko_l2 ORDER BY embedding <-> '{1,1}' LIMIT 6;
SELECT id, to_char(embedding <-> '{1,1}', '9.9999EEEE') AS d FROM ko_nat ORDER BY embedding <-> '{1,1}' LIMIT 6;
SELECT q, diff FROM ko_check('ko_l2', '<->') WHERE diff <> 0;
SELECT q, diff FROM ko_check('ko_ip', '<#>') WHERE diff <> 0;
SELECT count(*) AS checked FROM ko_check('ko_l2', '<->');

DROP FUNCTION ko_check(text, text);
DROP FUNCTION ko_diff(text, text);
DROP VIEW ko_nat;
DROP TABLE ko_native;
\! for c in pgpoly_rt_ko_l2 pgpoly_rt_ko_ip; do curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/$c"; done
DROP SERVER ko_chroma CASCADE;
