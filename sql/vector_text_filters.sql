--
-- pgpoly_vector: text comparisons on a metadata key (metadata->>'k' and a
-- text column mapped to the key), differential against a native copy of
-- the records as pgpoly reads them back.  SQL's ->> (and the column) read
-- a number or a boolean as its text ('3', '3.0', 'true'), which the
-- service's string match ($eq "3") does not select: such a value must not
-- be sent as a string match alone.  Every filter form runs in plain scans
-- and k-NN, with constants and in generic plans (parameters).
-- The collection pgpoly_rt_vtf is created and dropped here.
--
\getenv chroma_url CHROMA_URL
\set VERBOSITY terse
\setenv VTF_COLL pgpoly_rt_vtf
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/$VTF_COLL"
\! curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"name":"pgpoly_rt_vtf","configuration":{"hnsw":{"space":"l2"}}}' "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections"
-- written by another client, as it wrote them: strings, integers, floats
-- (3.0 stays a float), booleans, a record without the key
\! C="$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections"; id=$(curl -s "$C/$VTF_COLL" | jq -r .id); curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"ids":["s3","i3","f3","f35","big","neg","bt","bf","st","sa","none"],"embeddings":[[1,0],[0.95,0.1],[0.9,0.2],[0.85,0.3],[0.8,0.4],[0.75,0.5],[0.7,0.6],[0.65,0.7],[0.6,0.8],[0.55,0.9],[0.5,1]],"metadatas":[{"k":"3"},{"k":3},{"k":3.0},{"k":3.5},{"k":1e20},{"k":-2},{"k":true},{"k":false},{"k":"true"},{"k":"abc"},{"o":1}]}' "$C/$id/add"

CREATE SERVER vtf_chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE vtf (id text, embedding real[], metadata jsonb, k text)
  SERVER vtf_chroma OPTIONS (collection 'pgpoly_rt_vtf');
CREATE TABLE vtf_native AS SELECT id, embedding, metadata, k FROM vtf;
SELECT id, metadata->>'k' AS meta_k, k FROM vtf_native ORDER BY id COLLATE "C";

-- Differences between the ids (in order) of foreign query f and native
-- query n: 0 is the same answer, -1 an error.
CREATE FUNCTION vtf_diff(f text, n text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE r bigint;
BEGIN
  EXECUTE format('WITH a AS MATERIALIZED (SELECT row_number() OVER () AS pos, id FROM (%1$s) q),
                       b AS MATERIALIZED (SELECT row_number() OVER () AS pos, id FROM (%2$s) q)
    SELECT count(*) FROM ((SELECT * FROM a EXCEPT ALL SELECT * FROM b)
                          UNION ALL (SELECT * FROM b EXCEPT ALL SELECT * FROM a)) x', f, n) INTO r;
  RETURN r;
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE '%: %', f, SQLERRM;
  RETURN -1;
END $$;

-- The same query with a parameter, in a generic plan (plpgsql, forced):
-- vtf_param on the foreign table, vtf_native_param on the native copy.
DO $do$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['vtf', 'vtf_native'] LOOP
    EXECUTE format($f$
CREATE FUNCTION %1$I(cond text, v text, knn bool) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
  CASE cond || knn::text
  WHEN 'meta_eqfalse' THEN RETURN QUERY SELECT id FROM %2$I WHERE metadata->>'k' = v ORDER BY id COLLATE "C";
  WHEN 'col_eqfalse' THEN RETURN QUERY SELECT id FROM %2$I WHERE k = v ORDER BY id COLLATE "C";
  WHEN 'meta_anyfalse' THEN RETURN QUERY SELECT id FROM %2$I WHERE metadata->>'k' = ANY(ARRAY[v, 'abc']) ORDER BY id COLLATE "C";
  WHEN 'col_anyfalse' THEN RETURN QUERY SELECT id FROM %2$I WHERE k = ANY(ARRAY[v, 'abc']) ORDER BY id COLLATE "C";
  WHEN 'meta_eqtrue' THEN RETURN QUERY SELECT id FROM %2$I WHERE metadata->>'k' = v ORDER BY embedding <-> '{1,0}' LIMIT 3;
  WHEN 'col_eqtrue' THEN RETURN QUERY SELECT id FROM %2$I WHERE k = v ORDER BY embedding <-> '{1,0}' LIMIT 3;
  WHEN 'meta_anytrue' THEN RETURN QUERY SELECT id FROM %2$I WHERE metadata->>'k' = ANY(ARRAY[v, 'abc']) ORDER BY embedding <-> '{1,0}' LIMIT 3;
  WHEN 'col_anytrue' THEN RETURN QUERY SELECT id FROM %2$I WHERE k = ANY(ARRAY[v, 'abc']) ORDER BY embedding <-> '{1,0}' LIMIT 3;
  END CASE;
END $$$f$, t || '_param', t);
  END LOOP;
END $do$;
CREATE TEMP TABLE vtf_values (v text);
INSERT INTO vtf_values VALUES ('3'), ('3.0'), ('3.5'), ('-2'), ('1e20'), ('1e+20'),
  ('100000000000000000000'), ('true'), ('false'), ('abc'), ('x'), ('');
CREATE TEMP TABLE vtf_forms (f text);
INSERT INTO vtf_forms VALUES
  ('metadata->>''k'' = %L'), ('k = %L'), ('%L = metadata->>''k'''),
  ('metadata->>''k'' <> %L'), ('k <> %L'),
  ('metadata->>''k'' = ANY(ARRAY[%L, ''abc''])'), ('k = ANY(ARRAY[%L, ''zz''])'),
  ('metadata->>''k'' = ANY(ARRAY[%L, NULL])'),
  ('(metadata->>''k'' IS NULL OR %L = '''')'), ('(k IS NULL OR %L = '''')');

-- plain scans and k-NN with constants: no differences
SELECT f, v, knn, d
FROM (SELECT f, v, knn,
             vtf_diff(format('SELECT id FROM vtf WHERE %s ORDER BY %s',
                             format(f, v), CASE WHEN knn THEN 'embedding <-> ''{1,0}'' LIMIT 3' ELSE 'id COLLATE "C"' END),
                      format('SELECT id FROM vtf_native WHERE %s ORDER BY %s',
                             format(f, v), CASE WHEN knn THEN 'embedding <-> ''{1,0}'' LIMIT 3' ELSE 'id COLLATE "C"' END)) AS d
      FROM vtf_forms, vtf_values, (VALUES (false), (true)) k(knn)) x
WHERE d <> 0;
SELECT count(*) AS checked FROM vtf_forms, vtf_values, (VALUES (false), (true)) k(knn);

-- generic plans: no differences
SET plan_cache_mode = force_generic_plan;
SELECT c, v, knn, d
FROM (SELECT c, v, knn,
             vtf_diff(format('SELECT * FROM vtf_param(%L, %L, %L) AS t(id)', c, v, knn),
                      format('SELECT * FROM vtf_native_param(%L, %L, %L) AS t(id)', c, v, knn)) AS d
      FROM (VALUES ('meta_eq'), ('col_eq'), ('meta_any'), ('col_any')) cs(c), vtf_values,
           (VALUES (false), (true)) k(knn)) x
WHERE d <> 0;
RESET plan_cache_mode;

-- k-NN stays pushed when the value cannot be the text of a number or a
-- boolean; otherwise it is sorted locally, and a plain scan sends no filter
-- on the key (SQL rechecks the clause).  A parameter is decided when the
-- scan starts: an unsafe value makes the k-NN computed locally, each row
-- checked against the text SQL reads.
EXPLAIN (COSTS OFF) SELECT id FROM vtf WHERE metadata->>'k' = 'abc' ORDER BY embedding <-> '{1,0}' LIMIT 3;
EXPLAIN (COSTS OFF) SELECT id FROM vtf WHERE k = ANY(ARRAY['abc', 'x']) ORDER BY embedding <-> '{1,0}' LIMIT 3;
EXPLAIN (COSTS OFF) SELECT id FROM vtf WHERE metadata->>'k' = '3' ORDER BY embedding <-> '{1,0}' LIMIT 3;
EXPLAIN (COSTS OFF) SELECT id FROM vtf WHERE k = ANY(ARRAY['abc', 'true']);
PREPARE vtf_knn(text) AS SELECT id FROM vtf WHERE metadata->>'k' = $1 ORDER BY embedding <-> '{1,0}' LIMIT 3;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE vtf_knn('abc');
EXECUTE vtf_knn('abc');
EXECUTE vtf_knn('3');
-- with a buffered write (transactional): the number 3 reads as '3'
BEGIN;
INSERT INTO vtf (id, embedding, metadata) VALUES ('w3', '{1,0.05}', '{"k": 3}'),
  ('w4', '{1,0.01}', '{"k": 4}');
EXECUTE vtf_knn('3');
EXECUTE vtf_knn('4');
ROLLBACK;
RESET plan_cache_mode;
SELECT id FROM vtf WHERE metadata->>'k' = '3' ORDER BY embedding <-> '{1,0}' LIMIT 3;
SELECT id FROM vtf WHERE k = 'true' ORDER BY id COLLATE "C";

DROP FUNCTION vtf_diff(text, text);
DROP FUNCTION vtf_param(text, text, bool);
DROP FUNCTION vtf_native_param(text, text, bool);
DROP TABLE vtf_native;
DROP SERVER vtf_chroma CASCADE;
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/$VTF_COLL"
