--
-- pgpoly_vector: numeric comparisons over a cast of a metadata text
-- ((metadata->>'k')::numeric = 5), differential against a native copy of
-- the records as pgpoly reads them back.  SQL casts the text it reads, so
-- the string "5" (and " 5", which the input functions accept) is 5 there,
-- and 5.5 or "x" cast to int is an error; the service's number match sees
-- neither: such a comparison is evaluated locally, in plain scans and
-- k-NN; so are those on a numeric or boolean column mapped to a key.
-- The collection pgpoly_rt_vnf is created and dropped here.
--
\getenv chroma_url CHROMA_URL
\set VERBOSITY terse
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vnf"
CREATE SERVER vnf_chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE vnf (id text, embedding real[], metadata jsonb)
  SERVER vnf_chroma OPTIONS (collection 'pgpoly_rt_vnf', create_collection 'true',
                             distance 'l2');
-- numbers, strings holding a number's text, a record without the key
-- (the metadata column writes its values as they are)
INSERT INTO vnf VALUES ('i5', '{1,0}', '{"k": 5}'), ('f5', '{0.95,0.1}', '{"k": 5.0}'),
  ('s5', '{0.9,0.2}', '{"k": "5"}'), ('sp5', '{0.85,0.3}', '{"k": " 5"}'),
  ('f55', '{0.8,0.4}', '{"k": 5.5}'), ('i7', '{0.75,0.5}', '{"k": 7}'),
  ('none', '{0.7,0.6}', '{"o": 1, "b": "true"}');
CREATE TABLE vnf_native AS SELECT id, embedding, metadata FROM vnf;
SELECT id, metadata->'k' AS meta_k FROM vnf_native ORDER BY id COLLATE "C";

-- The ids (in order) query q returns, or the error it raises.
CREATE FUNCTION vnf_ids(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
  EXECUTE format('SELECT string_agg(id, '','') FROM (%s) q', q) INTO r;
  RETURN coalesce(r, '');
EXCEPTION WHEN OTHERS THEN
  RETURN 'ERROR ' || SQLSTATE;
END $$;

CREATE TEMP TABLE vnf_forms (f text);
INSERT INTO vnf_forms VALUES
  ('(metadata->>''k'')::numeric = 5'), ('(metadata->>''k'')::float8 = 5'),
  ('(metadata->>''k'')::numeric < 6'), ('(metadata->>''k'')::float8 > 4'),
  ('(metadata->>''k'')::numeric <= 5'), ('5 = (metadata->>''k'')::numeric'),
  ('(metadata->>''k'')::numeric = ANY(ARRAY[5, 7])'),
  ('(metadata->>''k'')::int = 5'), ('(metadata->>''k'')::int8 > 4'),
  ('(metadata->>''k'')::int2 = ANY(ARRAY[5])'),
  ('(metadata->>''k'')::numeric > 5.2 AND (metadata->>''k'')::numeric < 6');

-- plain scans and k-NN: the foreign answer (ids or error) is the native one
SELECT f, knn, n, fo = n AS same
FROM (SELECT f, knn,
             vnf_ids(format('SELECT id FROM vnf WHERE %s ORDER BY %s', f,
                            CASE WHEN knn THEN 'embedding <-> ''{1,0}'' LIMIT 3' ELSE 'id COLLATE "C"' END)) AS fo,
             vnf_ids(format('SELECT id FROM vnf_native WHERE %s ORDER BY %s', f,
                            CASE WHEN knn THEN 'embedding <-> ''{1,0}'' LIMIT 3' ELSE 'id COLLATE "C"' END)) AS n
      FROM vnf_forms, (VALUES (false), (true)) k(knn)) x
ORDER BY f, knn;

-- not sent: the k-NN is sorted locally, a plain scan sends no filter
EXPLAIN (COSTS OFF) SELECT id FROM vnf WHERE (metadata->>'k')::numeric = 5 ORDER BY embedding <-> '{1,0}' LIMIT 3;
EXPLAIN (COSTS OFF) SELECT id FROM vnf WHERE (metadata->>'k')::int < 6;
-- in a generic plan too
PREPARE vnf_knn(numeric) AS SELECT id FROM vnf WHERE (metadata->>'k')::numeric = $1 ORDER BY embedding <-> '{1,0}' LIMIT 3;
SET plan_cache_mode = force_generic_plan;
EXECUTE vnf_knn(5);
RESET plan_cache_mode;

-- a numeric column mapped to the key reads the string "5" (and " 5") as 5,
-- a boolean column the string "true" as true: their comparisons are not
-- sent either (a constant bool comparison is SQL's "WHERE b", never sent;
-- a parameter's would be)
CREATE FOREIGN TABLE vnf_col (id text, embedding real[], n numeric OPTIONS (field 'k'), i int OPTIONS (field 'k'), b bool)
  SERVER vnf_chroma OPTIONS (collection 'pgpoly_rt_vnf');
SELECT id, n FROM vnf_col WHERE id = 's5';
SELECT id, n FROM vnf_col WHERE id = 'sp5';
SELECT id, i FROM vnf_col WHERE id = 'f55';
SELECT id, n FROM vnf_col WHERE n = 5 ORDER BY id COLLATE "C";
EXPLAIN (COSTS OFF) SELECT id FROM vnf_col WHERE n = 5;
SELECT id FROM vnf_col WHERE n = 5 ORDER BY embedding <-> '{1,0}' OFFSET 2 LIMIT 2;
SELECT id, b FROM vnf_col WHERE id = 'none';
SELECT id FROM vnf_col WHERE b = true;
PREPARE vnf_b(bool) AS SELECT id FROM vnf_col WHERE b = $1;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE vnf_b(true);
EXECUTE vnf_b(true);
PREPARE vnf_n(numeric) AS SELECT id FROM vnf_col WHERE n = $1 ORDER BY id COLLATE "C";
EXECUTE vnf_n(5);
RESET plan_cache_mode;

DROP FUNCTION vnf_ids(text);
DROP TABLE vnf_native;
DROP SERVER vnf_chroma CASCADE;
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vnf"
