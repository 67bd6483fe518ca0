--
-- pgvector-style distance operators on real[] (no service needed).
--
-- They resolve unqualified in a default search_path.
SHOW search_path;
SELECT '{3,4}'::real[] <-> '{0,0}'::real[] AS l2,
       '{1,0}'::real[] <=> '{0,1}'::real[] AS cos_orthogonal,
       '{1,1}'::real[] <=> '{2,2}'::real[] AS cos_same_direction,
       '{1,2,3}'::real[] <#> '{4,5,6}'::real[] AS neg_ip;
-- Commutative, strict, and usable in ORDER BY like pgvector.
SELECT '{0,0}'::real[] <-> '{3,4}'::real[] = '{3,4}'::real[] <-> '{0,0}'::real[] AS commutes;
SELECT '{1,2}'::real[] <-> NULL::real[] IS NULL AS null_is_null;
SELECT v, v <-> '{0,0}' AS d
FROM (VALUES ('{1,1}'::real[]), ('{0,2}'), ('{-0.5,0}')) t(v)
ORDER BY v <-> '{0,0}';
-- Zero vector: cosine distance is NaN, as in pgvector.
SELECT '{0,0}'::real[] <=> '{1,2}'::real[] AS cos_zero;
-- Errors: dimensions, NULL elements, multidimensional arrays.
\set VERBOSITY terse
SELECT '{1,2}'::real[] <-> '{1,2,3}'::real[];
SELECT '{1,NULL}'::real[] <=> '{1,2}'::real[];
SELECT '{{1,2},{3,4}}'::real[] <#> '{1,2}'::real[];
\set VERBOSITY default
-- The functions behind them.
SELECT pgpoly.l2_distance('{1,2}', '{4,6}'), pgpoly.cosine_distance('{1,0}', '{1,0}'),
       pgpoly.negative_inner_product('{1,2}', '{3,4}');
