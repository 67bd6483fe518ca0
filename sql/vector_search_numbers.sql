--
-- pgpoly.vector_search's filter numbers compared as a WHERE clause's
-- numeric comparison is: a number the service would compare rounded (an
-- integer beyond 2^53, a decimal with more digits than a float8 holds)
-- never matches a record SQL would not match.  Differential against the
-- same filter on a native copy of the metadata (jsonb equality).  The
-- collection pgpoly_rt_vsn is created and dropped here.
--
\getenv chroma_url CHROMA_URL
\set VERBOSITY terse
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vsn"
CREATE SERVER vsn_chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE vsn (id text, embedding real[], metadata jsonb)
  SERVER vsn_chroma OPTIONS (collection 'pgpoly_rt_vsn', create_collection 'true',
                             distance 'l2');
INSERT INTO vsn VALUES
  ('a', '{1,0}', '{"n": 9007199254740992}'), ('b', '{0.9,0.1}', '{"n": 9007199254740993}'),
  ('c', '{0.8,0.2}', '{"n": 9007199254740994}'), ('d', '{0.7,0.3}', '{"n": 0.1}'),
  ('e', '{0.6,0.4}', '{"n": 9223372036854775807}'), ('f', '{0.5,0.5}', '{"n": 2}'),
  ('g', '{0.4,0.6}', '{"n": 2.5}');
CREATE TABLE vsn_native AS SELECT id, metadata FROM vsn;
-- each filter: the ids vector_search returns (or its error) and the ids
-- whose metadata holds that number
CREATE FUNCTION vsn_ids(f jsonb) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
  SELECT string_agg(id, ',' ORDER BY id) INTO r
  FROM pgpoly.vector_search('vsn', '{1,0}', 10, f);
  RETURN coalesce(r, '');
EXCEPTION WHEN OTHERS THEN
  RETURN 'ERROR ' || SQLSTATE;
END $$;
SELECT f, vsn_ids(f) AS searched,
       (SELECT coalesce(string_agg(id, ',' ORDER BY id), '') FROM vsn_native n
        WHERE n.metadata -> 'n' = f -> 'n') AS native
FROM unnest('{"{\"n\": 9007199254740992}","{\"n\": 9007199254740993}",
              "{\"n\": 9007199254740994}","{\"n\": 0.1}",
              "{\"n\": 0.1000000000000000001}","{\"n\": 9223372036854775807}",
              "{\"n\": 9223372036854775808}","{\"n\": 2}","{\"n\": 2.0}",
              "{\"n\": 2.5}","{\"n\": 1e400}","{\"n\": -0}"}'::jsonb[]) f;
-- arrays (IN): each number must be sent as written
SELECT f, vsn_ids(f) AS searched,
       (SELECT coalesce(string_agg(id, ',' ORDER BY id), '') FROM vsn_native n
        WHERE n.metadata -> 'n' IN (SELECT jsonb_array_elements(f -> 'n'))) AS native
FROM unnest('{"{\"n\": [9007199254740992, 2]}","{\"n\": [9007199254740993, 2]}",
              "{\"n\": [0.1, 2.5]}","{\"n\": [0.1000000000000000001]}",
              "{\"n\": [2.50, 3]}"}'::jsonb[]) f;
-- the messages
\set VERBOSITY default
SELECT * FROM pgpoly.vector_search('vsn', '{1,0}', 10, '{"n": 9007199254740993}');
SELECT * FROM pgpoly.vector_search('vsn', '{1,0}', 10, '{"n": [1, 9007199254740993]}');
SELECT * FROM pgpoly.vector_search('vsn', '{1,0}', 10, '{"n": 1e400}');
\set VERBOSITY terse
DROP FUNCTION vsn_ids(jsonb);
DROP TABLE vsn_native;
DELETE FROM vsn;
DROP SERVER vsn_chroma CASCADE;
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vsn"
