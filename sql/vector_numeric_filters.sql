--
-- pgpoly_vector: numeric comparisons over a cast of a metadata text
-- ((metadata->>'k')::numeric = 5), differential against a native copy of
-- the records as pgpoly reads them back.  SQL casts the text it reads, so
-- the string "5" (and " 5", which the input functions accept) is 5 there,
-- and 5.5 or "x" cast to int is an error; the service's number match sees
-- neither: such a comparison is evaluated locally, in plain scans and
-- k-NN.  A number or boolean column mapped to a key reads only JSON
-- numbers (booleans), so its comparisons are sent, exactly (differential).
-- The collections pgpoly_rt_vnf and pgpoly_rt_vnc are created and dropped
-- here.
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

-- A number or boolean column mapped to a key reads only what pgpoly writes
-- for its type, a JSON number (boolean): a string "5" (" 5", "true") is an
-- ERROR (22P02) naming the key, the column and the record, never read as
-- 5; so its comparisons are sent to the service (below), which may filter
-- out such a record instead of raising the ERROR, as postgres_fdw's remote
-- conditions may.
CREATE FOREIGN TABLE vnf_col (id text, embedding real[], n numeric OPTIONS (field 'k'), i int OPTIONS (field 'k'), b bool)
  SERVER vnf_chroma OPTIONS (collection 'pgpoly_rt_vnf');
CREATE FUNCTION vnf_error(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; msg text; det text; ctx text;
BEGIN
  EXECUTE q;
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                          det = PG_EXCEPTION_DETAIL, ctx = PG_EXCEPTION_CONTEXT;
  RETURN st || ': ' || msg || ' / ' || det || ' / ' || split_part(ctx, E'\n', 1);
END $$;
SELECT vnf_error('SELECT id, i FROM vnf_col WHERE id = ''s5''');
SELECT vnf_error('SELECT id, n FROM vnf_col WHERE id = ''sp5''');
SELECT vnf_error('SELECT id, b FROM vnf_col WHERE id = ''none''');
SELECT vnf_error('SELECT id, n FROM vnf_col WHERE n + 0 = 5');
SELECT vnf_error('SELECT id FROM vnf_col ORDER BY embedding <-> ''{1,0}'', n LIMIT 3');
\set VERBOSITY default
SELECT id, i FROM vnf_col WHERE id = 's5';
\set VERBOSITY terse
-- (the service's number match does not select s5 and sp5: no ERROR)
SELECT id, n FROM vnf_col WHERE n = 5 ORDER BY id COLLATE "C";
EXPLAIN (COSTS OFF) SELECT id FROM vnf_col WHERE n = 5;
SELECT id FROM vnf_col WHERE n = 5 ORDER BY embedding <-> '{1,0}' LIMIT 3;
PREPARE vnf_b(bool) AS SELECT id FROM vnf_col WHERE b = $1;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE vnf_b(true);
EXECUTE vnf_b(true);
PREPARE vnf_n(numeric) AS SELECT id FROM vnf_col WHERE n = $1 ORDER BY id COLLATE "C";
EXECUTE vnf_n(5);
RESET plan_cache_mode;

-- Comparisons on number and boolean columns mapped to keys, differential:
-- records written by pgpoly from typed columns, a native copy of them as
-- pgpoly reads them back, every operator against many values (integers,
-- fractions, -0, huge, Infinity and NaN, numerics with more digits than a
-- float8 holds, NULL), as constants, swapped, and generic-plan parameters,
-- in plain scans and in k-NN with LIMIT (each record at its own distance
-- from the query).  Every one is sent to the service (a k-NN is pushed)
-- but a numeric's the service would decide by another number: Chroma keeps
-- an integral numeric (pgpoly writes it as a JSON integer) as a 64-bit
-- integer, which it compares with the float8 bound sent for the value, so
-- a value beyond 2^53 that is not that float8 (9007199254740993, whose
-- bound is 2^53; 2^60, whose float8's shortest text is not 2^60) is
-- evaluated here, a k-NN with it computed here.
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vnc"
CREATE FOREIGN TABLE vnc (id text, embedding real[], metadata jsonb, i2 int2, i4 int4,
                          i8 int8, f8 float8, nm numeric, b bool)
  SERVER vnf_chroma OPTIONS (collection 'pgpoly_rt_vnc', create_collection 'true',
                             distance 'l2');
INSERT INTO vnc (id, embedding, i2, i4, i8, f8, nm, b) VALUES
  ('r01', '{1,0}', 0, 0, 0, 0, 0, true),
  ('r02', '{2,0}', -1, -1, -9223372036854775808, '-0', -0.5, false),
  ('r03', '{3,0}', 1, 1, 9223372036854775807, 0.1, 0.1000000000000000001, NULL),
  ('r04', '{4,0}', 2, 2, 9007199254740993, 0.25, 2, true),
  ('r05', '{5,0}', 3, 2147483647, 9007199254740992, 2, 2.5, false),
  ('r06', '{6,0}', -32768, -2147483648, 2, 2.5, -1.5, true),
  ('r07', '{7,0}', 32767, 5, 3, -1.5, 123456789012345678901234567890.5, NULL),
  ('r08', '{8,0}', NULL, NULL, NULL, 1e300, 'NaN', true),
  ('r09', '{9,0}', 5, 5, 5, 'Infinity', 'Infinity', false),
  ('r10', '{10,0}', 7, 7, -3, '-Infinity', '-Infinity', true),
  ('r11', '{11,0}', NULL, 3, NULL, 'NaN', 1e-20, NULL),
  ('r12', '{12,0}', 2, 3, 4, 5e-324, 0.30000000000000004, true),
  ('r13', '{13,0}', 4, 4, 4, 2.0000000000000004, 3, false),
  ('r14', '{14,0}', NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO vnc (id, embedding, metadata) VALUES ('r15', '{15,0}', '{"other": 1}');
-- numbers around 2^53 and the int64 extremes, which a numeric column (and
-- a float8 one, for a whole value) writes as JSON integers, kept exact by
-- the service
INSERT INTO vnc (id, embedding, i8, f8, nm) VALUES
  ('r16', '{16,0}', NULL, 9007199254740992, 9007199254740993),
  ('r17', '{17,0}', NULL, 9007199254740994, 9007199254740992),
  ('r18', '{18,0}', NULL, -9007199254740994, -9007199254740993),
  ('r19', '{19,0}', NULL, 9007199254740996, 9223372036854775807),
  ('r20', '{20,0}', NULL, 9223372036854774784, -9223372036854775808),
  ('r21', '{21,0}', NULL, NULL, 9007199254740995),
  ('r22', '{22,0}', NULL, NULL, 1152921504606846976),
  ('r23', '{23,0}', NULL, NULL, 1152921504606846990);
CREATE TABLE vnc_native AS SELECT id, embedding, i2, i4, i8, f8, nm, b FROM vnc;
SELECT id, i2, i4, i8, f8, nm, b FROM vnc_native ORDER BY id;

CREATE TEMP TABLE vnc_vals (col text, val text);
INSERT INTO vnc_vals SELECT c, v FROM unnest(ARRAY['i2', 'i4', 'i8']) c,
  unnest(ARRAY['''-9223372036854775808''::int8', '''-2147483648''::int4', '''-32768''::int2',
               '-1', '0', '1', '2', '3', '5', '9007199254740993::int8',
               '9223372036854775807::int8', '100000', 'NULL::int4']) v;
INSERT INTO vnc_vals SELECT 'f8', v || '::float8' FROM unnest(ARRAY['''-Infinity''',
  '-1e300', '-1.5', '''-0''', '0', '5e-324', '0.1', '0.25', '2', '2.5',
  '2.0000000000000004', '0.30000000000000004', '1e300', '''Infinity''', '''NaN''', 'NULL']) v;
INSERT INTO vnc_vals SELECT 'nm', v || '::numeric' FROM unnest(ARRAY['''-Infinity''',
  '-1.5', '-0.5', '0', '1e-20', '0.1', '0.1000000000000000001', '0.0999999999999999999',
  '0.30000000000000004', '2', '2.5', '3', '1e-400', '1e400',
  '123456789012345678901234567890', '123456789012345678901234567890.5',
  '''Infinity''', '''NaN''', 'NULL']) v;
INSERT INTO vnc_vals SELECT 'nm', v || '::numeric' FROM unnest(ARRAY['9007199254740992',
  '9007199254740993', '9007199254740992.5', '9007199254740994', '9007199254740995',
  '-9007199254740993', '-9007199254740992.5', '9223372036854775807', '9223372036854775808',
  '-9223372036854775808', '-9223372036854775809', '1152921504606846976',
  '1152921504606847000', '1e300', '-1e300']) v;
INSERT INTO vnc_vals SELECT 'f8', v || '::float8' FROM unnest(ARRAY['9007199254740992',
  '9007199254740994', '9007199254740996', '-9007199254740994', '9223372036854775807']) v;
-- an int8 column compared with a numeric (SQL compares i8::numeric)
INSERT INTO vnc_vals VALUES ('i8', '9007199254740993::numeric'), ('i8', '9007199254740992.5::numeric');
INSERT INTO vnc_vals VALUES ('b', 'true'), ('b', 'false'), ('b', 'NULL::bool');
-- = ANY on the integer columns (the arrays of the IN lists)
CREATE TEMP TABLE vnc_arrays (col text, val text);
INSERT INTO vnc_arrays SELECT c, v FROM unnest(ARRAY['i2', 'i4', 'i8']) c,
  unnest(ARRAY['ARRAY[0, 2, 5]', 'ARRAY[-1, NULL]', '''{}''::int4[]', 'NULL::int4[]',
               'ARRAY[9007199254740993, 9223372036854775807, 3]',
               'ARRAY[''-9223372036854775808''::int8, ''-32768''::int2, 7::int2]',
               'ARRAY[100000, 2147483647]']) v;

-- The plan of query q, in one text.
CREATE FUNCTION vnc_plan(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE line text; plan text := '';
BEGIN
  FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP
    plan := plan || line || E'\n';
  END LOOP;
  RETURN plan;
END $$;
-- One comparison in every form: the foreign and native ids (or errors),
-- and whether each foreign k-NN was pushed down.
CREATE FUNCTION vnc_check(col text, op text, val text,
    OUT form text, OUT knn bool, OUT fo text, OUT n text, OUT pushed bool)
RETURNS SETOF record LANGUAGE plpgsql AS $$
DECLARE
  typ text;
  cond text;
  tail text;
  plan text;
BEGIN
  EXECUTE format('SELECT pg_typeof(%s)::text', val) INTO typ;
  FOREACH form IN ARRAY ARRAY['const', 'swapped', 'param'] LOOP
    cond := CASE WHEN op = '= ANY' AND form = 'param' THEN format('%I = ANY ($1)', col)
                 WHEN op = '= ANY' THEN format('%I = ANY (%s)', col, val)
                 WHEN form = 'const' THEN format('%I %s %s', col, op, val)
                 WHEN form = 'swapped' THEN format('%s %s %I', val, op, col)
                 ELSE format('%I %s $1', col, op) END;
    FOREACH knn IN ARRAY ARRAY[false, true] LOOP
      tail := CASE WHEN knn THEN 'embedding <-> ''{0,0}'' LIMIT 4' ELSE 'id' END;
      n := vnf_ids(format('SELECT id FROM vnc_native WHERE %s ORDER BY %s',
                          replace(cond, '$1', val), tail));
      IF form = 'param' THEN
        EXECUTE format('PREPARE vnc_p(%s) AS SELECT string_agg(id, '','') FROM (SELECT id FROM vnc WHERE %s ORDER BY %s) q',
                       typ, cond, tail);
        BEGIN
          EXECUTE format('EXECUTE vnc_p(%s)', val) INTO fo;
          fo := coalesce(fo, '');
        EXCEPTION WHEN OTHERS THEN
          fo := 'ERROR ' || SQLSTATE;
        END;
        plan := vnc_plan(format('EXECUTE vnc_p(%s)', val));
        DEALLOCATE vnc_p;
      ELSE
        fo := vnf_ids(format('SELECT id FROM vnc WHERE %s ORDER BY %s', cond, tail));
        plan := vnc_plan(format('SELECT string_agg(id, '','') FROM (SELECT id FROM vnc WHERE %s ORDER BY %s) q',
                                cond, tail));
      END IF;
      -- a k-NN pushed down is one Foreign Scan, no Limit or Sort under the Aggregate
      pushed := CASE WHEN knn THEN plan NOT LIKE '%Limit%' AND plan NOT LIKE '%Sort%' END;
      RETURN NEXT;
    END LOOP;
  END LOOP;
END $$;
SET plan_cache_mode = force_generic_plan;
CREATE TEMP TABLE vnc_results AS
  SELECT v.col, o.op, v.val, c.*
  FROM vnc_vals v, unnest(ARRAY['=', '<', '<=', '>', '>=']) o(op),
       LATERAL vnc_check(v.col, o.op, v.val) c
  WHERE v.col <> 'b' OR o.op = '='
  UNION ALL
  SELECT a.col, '= ANY', a.val, c.* FROM vnc_arrays a, LATERAL vnc_check(a.col, '= ANY', a.val) c;
RESET plan_cache_mode;
-- no differences
SELECT col, op, val, form, knn, fo, n FROM vnc_results WHERE fo IS DISTINCT FROM n
  ORDER BY 1, 2, 3, 4, 5;
-- the k-NN not pushed: where the planner proves the query empty (a
-- comparison with a NULL constant), a numeric value Chroma would not decide
-- exactly (above; as a parameter, the plan is pushed and the scan computes
-- the k-NN itself), an int8 column compared with a numeric (SQL compares
-- i8::numeric, not the column)
SELECT col, val, string_agg(DISTINCT op, ' ') AS ops, string_agg(DISTINCT form, ' ') AS forms
  FROM vnc_results WHERE knn AND NOT pushed GROUP BY col, val ORDER BY 1, 2;
EXPLAIN (COSTS OFF) SELECT id FROM vnc WHERE nm = 9007199254740993 ORDER BY embedding <-> '{0,0}' LIMIT 3;
SELECT id, nm FROM vnc WHERE nm = 9007199254740993 ORDER BY embedding <-> '{0,0}' LIMIT 3;
SELECT id, nm FROM vnc WHERE nm > 9007199254740992 ORDER BY embedding <-> '{0,0}' LIMIT 5;
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM vnc WHERE nm > 9007199254740992 ORDER BY embedding <-> '{0,0}' LIMIT 5;
SELECT count(*) AS checked, count(*) FILTER (WHERE knn AND NOT pushed) AS knn_local,
       count(*) FILTER (WHERE n LIKE 'ERROR%') AS errors,
       count(DISTINCT n) AS answers FROM vnc_results;
-- what is sent
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM vnc WHERE i8 > 9007199254740992 ORDER BY embedding <-> '{0,0}' LIMIT 3;
EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM vnc WHERE f8 <= 2.5 AND nm > 0.1000000000000000001 AND b = false;
PREPARE vnc_knn(float8) AS SELECT id FROM vnc WHERE f8 > $1 ORDER BY embedding <-> '{0,0}' LIMIT 2;
SET plan_cache_mode = force_generic_plan;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE vnc_knn(0.1);
EXECUTE vnc_knn(0.1);
RESET plan_cache_mode;
-- not sent: float4 (SQL rounds the stored number to float4 first), a cast
-- of ->> (SQL reads the string "5" as 5 there), IN on a float8 column
-- (the service's $in truncates fractional values); IN on an integer column
-- is sent
CREATE FOREIGN TABLE vnc_f4 (id text, embedding real[], f8 float4)
  SERVER vnf_chroma OPTIONS (collection 'pgpoly_rt_vnc');
EXPLAIN (COSTS OFF) SELECT id FROM vnc_f4 WHERE f8 = 0.1::float4;
SELECT id FROM vnc_f4 WHERE f8 = 0.1::float4 AND id IN ('r02', 'r03', 'r04');
EXPLAIN (COSTS OFF) SELECT id FROM vnc WHERE (metadata->>'i4')::int = 5;
EXPLAIN (COSTS OFF) SELECT id FROM vnc WHERE f8 IN (2, 2.5);
EXPLAIN (COSTS OFF) SELECT id FROM vnc WHERE i4 IN (3, 5) ORDER BY embedding <-> '{0,0}' LIMIT 2;
-- what a typed column refuses: "inf" (pgpoly writes "Infinity"), the
-- number 1 in a boolean column, 5.5 in an integer one; a filter on another
-- key skips the record without reading it
INSERT INTO vnc (id, embedding, metadata)
  VALUES ('x1', '{30,0}', '{"f8": "inf", "nm": "Infinity", "b": 1, "i4": 5.5}');
SELECT id, nm FROM vnc WHERE id = 'x1';
SELECT vnf_error('SELECT f8 FROM vnc WHERE id = ''x1''');
SELECT vnf_error('SELECT b FROM vnc WHERE id = ''x1''');
SELECT vnf_error('SELECT i4 FROM vnc WHERE id = ''x1''');
SELECT id, b FROM vnc WHERE b ORDER BY embedding <-> '{0,0}' LIMIT 20;
SELECT vnf_error('SELECT id FROM vnc WHERE b::int = 1');
DROP FUNCTION vnf_error(text);
DROP FUNCTION vnc_check(text, text, text);
DROP FUNCTION vnc_plan(text);
DROP TABLE vnc_native;
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vnc"

DROP FUNCTION vnf_ids(text);
DROP TABLE vnf_native;
DROP SERVER vnf_chroma CASCADE;
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_vnf"
