--
-- pgpoly.vector_search's filter: a value, or an array (IN) of strings,
-- numbers and booleans mixed (each kind compared as its own $in, ORed: a
-- service refuses a mixed $in), empty (matches nothing), with numbers
-- written with exponents, negative, underflowing, and keys beyond ASCII.
-- Differential against the same filter on a native copy of the metadata
-- (jsonb equality, IN of the array's elements).  The collection
-- pgpoly_rt_vsa is created and dropped here.
--
\getenv chroma_url CHROMA_URL
\set VERBOSITY terse
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vsa"
CREATE SERVER vsa_chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE vsa (id text, embedding real[], metadata jsonb)
  SERVER vsa_chroma OPTIONS (collection 'pgpoly_rt_vsa', create_collection 'true',
                             distance 'l2');
INSERT INTO vsa VALUES
  ('a', '{1,0}', '{"n": 1}'), ('b', '{0.9,0.1}', '{"n": true}'),
  ('c', '{0.8,0.2}', '{"n": 0}'), ('d', '{0.7,0.3}', '{"n": -5}'),
  ('e', '{0.6,0.4}', '{"n": 100}'), ('f', '{0.5,0.5}', '{"n": 2.5}'),
  ('g', '{0.4,0.6}', '{"n": "1"}'), ('h', '{0.3,0.7}', '{"n": false}'),
  ('i', '{0.2,0.8}', '{"éß": 1, "n": -0.5}'), ('j', '{0.1,0.9}', '{"n": 1e-300}'),
  ('k', '{0.05,0.95}', '{"n": "a"}'), ('l', '{0,1}', '{"n": 2}'), ('m', '{0,1}', '{"n": 3}');
CREATE TABLE vsa_native AS SELECT id, metadata FROM vsa;
CREATE FUNCTION vsa_ids(f jsonb) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
  SELECT string_agg(id, ',' ORDER BY id) INTO r
  FROM pgpoly.vector_search('vsa', '{1,0}', 10, f);
  RETURN coalesce(r, '');
EXCEPTION WHEN OTHERS THEN
  RETURN 'ERROR ' || SQLSTATE;
END $$;
SELECT left(f::text, 40) AS f, left(vsa_ids(f), 12) AS searched,
       (SELECT coalesce(string_agg(id, ',' ORDER BY id), '') FROM vsa_native n
        WHERE CASE WHEN jsonb_typeof(f -> (SELECT min(k) FROM jsonb_object_keys(f) k)) = 'array'
          THEN n.metadata -> (SELECT min(k) FROM jsonb_object_keys(f) k) IN (SELECT jsonb_array_elements(f -> (SELECT min(k) FROM jsonb_object_keys(f) k)))
          ELSE n.metadata -> (SELECT min(k) FROM jsonb_object_keys(f) k) = f -> (SELECT min(k) FROM jsonb_object_keys(f) k) END) AS native
FROM unnest(ARRAY[
 '{"n": 1}', '{"n": true}', '{"n": false}', '{"n": 0}', '{"n": -0}', '{"n": -5}', '{"n": -5.0}', '{"n": -0.5}',
 '{"n": 1E2}', '{"n": 2.5e0}', '{"n": 25e-1}', '{"n": 1e-400}', '{"n": -1e-400}', '{"n": 1e-300}',
 '{"n": [1, "1"]}', '{"n": [true]}', '{"n": [1]}', '{"n": [false, 0]}', '{"n": [0]}', '{"n": []}',
 '{"n": [[1], 2.5]}', '{"n": [{"a": 1}]}', '{"n": [1E2, -5]}', '{"n": [-0]}', '{"n": [1e-400]}', '{"n": [-0.5]}',
 '{"n": [1e-300]}', '{"n": [2.5e0]}', '{"n": ["a", 2.5, true]}', '{"n": ["a", 1.5]}', '{"n": [2.5, 3, false]}', '{"éß": 1}', '{"éß": [1]}', '{"n": [-9007199254740993]}',
 '{"n": -9007199254740993}', '{"n": [9223372036854775808]}', '{"n": ["a", 2.5, "b"]}'
]::jsonb[]) f;
\set VERBOSITY default
SELECT * FROM pgpoly.vector_search('vsa', '{1,0}', 10, '{"n": [1, [2]]}');
\set VERBOSITY terse
DROP FUNCTION vsa_ids(jsonb);
DROP TABLE vsa_native;
DELETE FROM vsa;
DROP SERVER vsa_chroma CASCADE;
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vsa"
