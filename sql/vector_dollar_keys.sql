--
-- Metadata keys beginning with '$', as columns (field '$and') and through
-- the metadata column (metadata->>'$or').  Chroma reads such a key in a
-- where object as an operator and refused the filter pgpoly pushed down
-- ({"$and": {"$eq": "x"}}: "Invalid where clause", HTTP 400), so every
-- WHERE clause on one failed, in a plain scan and a k-NN query alike.  Now
-- the clause is evaluated locally (EXPLAIN shows no where object) and each
-- query answers as on a native copy; vector_search() refuses such a filter
-- key with 0A000.
--
\getenv chroma_url CHROMA_URL
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_vdk"

CREATE SERVER vdk FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE vdk_f (id text, embedding real[],
    a text OPTIONS (field '$and'), b text OPTIONS (field '$or'),
    n int OPTIONS (field '$in'), plain text OPTIONS (field 'plain'))
  SERVER vdk OPTIONS (collection 'regress_vdk', create_collection 'true', distance 'l2');
CREATE FOREIGN TABLE vdk_m (id text, embedding real[], metadata jsonb)
  SERVER vdk OPTIONS (collection 'regress_vdk');
CREATE TABLE vdk_n (id text COLLATE "C", embedding real[], a text, b text, n int, plain text);
INSERT INTO vdk_f VALUES ('1', '{1,0}', 'x', 'y', 1, 'p'), ('2', '{0,1}', 'p', 'q', 2, 'p'),
    ('3', '{1,1}', 'x', 'q', 3, 'r');
INSERT INTO vdk_n VALUES ('1', '{1,0}', 'x', 'y', 1, 'p'), ('2', '{0,1}', 'p', 'q', 2, 'p'),
    ('3', '{1,1}', 'x', 'q', 3, 'r');
SELECT id, metadata FROM vdk_m ORDER BY id;

EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM vdk_f WHERE a = 'x' AND plain = 'p';
SELECT id FROM vdk_f WHERE a = 'x' ORDER BY id;
SELECT id FROM vdk_n WHERE a = 'x' ORDER BY id;
SELECT id FROM vdk_f WHERE b IN ('y', 'q') AND n >= 2 ORDER BY id;
SELECT id FROM vdk_n WHERE b IN ('y', 'q') AND n >= 2 ORDER BY id;
SELECT id FROM vdk_f WHERE a = 'x' AND plain = 'p';
SELECT id FROM vdk_n WHERE a = 'x' AND plain = 'p';
SELECT id FROM vdk_m WHERE metadata->>'$or' = 'q' ORDER BY id;
SELECT id FROM vdk_m WHERE (metadata->>'$in')::int > 1 ORDER BY id;
SELECT id FROM vdk_f WHERE a = 'x' ORDER BY embedding <-> '{1,0.1}' LIMIT 1;
SELECT id FROM vdk_n WHERE a = 'x' ORDER BY embedding <-> '{1,0.1}' LIMIT 1;
SELECT id FROM vdk_m WHERE metadata->>'$and' = 'p' ORDER BY embedding <-> '{1,0.1}' LIMIT 1;
WITH w AS (UPDATE vdk_f SET plain = 'u' WHERE b = 'q' RETURNING id, plain) SELECT * FROM w ORDER BY id;
SELECT id, plain FROM vdk_f ORDER BY id;
DELETE FROM vdk_f WHERE a = 'p' RETURNING id;
SELECT id FROM vdk_f ORDER BY id;
SELECT id FROM pgpoly.vector_search('vdk_m', '{1,0}', 2, '{"plain": "u"}');
\set VERBOSITY sqlstate
SELECT id FROM pgpoly.vector_search('vdk_m', '{1,0}', 2, '{"$and": "x"}');
\set VERBOSITY default
SELECT id FROM pgpoly.vector_search('vdk_f', '{1,0}', 2, '{"$or": "q"}');
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_vdk"
DROP SERVER vdk CASCADE;
DROP TABLE vdk_n;
