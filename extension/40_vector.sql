-- pgpoly_vector: the vector-service foreign-data wrapper (Chroma API v2),
-- the pgvector-style distance operators on real[] and vector_search().

CREATE FUNCTION pgpoly.vector_handler()
RETURNS fdw_handler
AS 'MODULE_PATHNAME', 'pgpoly_vector_handler'
LANGUAGE C STRICT;

CREATE FUNCTION pgpoly.vector_validator(text[], oid)
RETURNS void
AS 'MODULE_PATHNAME', 'pgpoly_vector_validator'
LANGUAGE C STRICT;

CREATE FOREIGN DATA WRAPPER pgpoly_vector
  HANDLER pgpoly.vector_handler
  VALIDATOR pgpoly.vector_validator;

COMMENT ON FOREIGN DATA WRAPPER pgpoly_vector IS
'Vector service (Chroma API v2): collections as tables, k-NN pushdown of ORDER BY embedding <-> q LIMIT k';

-- Distance functions and operators.  pgvector spells them the same way for
-- its vector type; these work on real[].  The operators live in schema
-- public so that they resolve in a default search_path.

CREATE FUNCTION pgpoly.l2_distance(real[], real[])
RETURNS double precision
AS 'MODULE_PATHNAME', 'pgpoly_l2_distance'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION pgpoly.cosine_distance(real[], real[])
RETURNS double precision
AS 'MODULE_PATHNAME', 'pgpoly_cosine_distance'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION pgpoly.negative_inner_product(real[], real[])
RETURNS double precision
AS 'MODULE_PATHNAME', 'pgpoly_negative_inner_product'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE OPERATOR public.<-> (
    LEFTARG = real[], RIGHTARG = real[],
    FUNCTION = pgpoly.l2_distance,
    COMMUTATOR = OPERATOR(public.<->)
);

CREATE OPERATOR public.<=> (
    LEFTARG = real[], RIGHTARG = real[],
    FUNCTION = pgpoly.cosine_distance,
    COMMUTATOR = OPERATOR(public.<=>)
);

CREATE OPERATOR public.<#> (
    LEFTARG = real[], RIGHTARG = real[],
    FUNCTION = pgpoly.negative_inner_product,
    COMMUTATOR = OPERATOR(public.<#>)
);

COMMENT ON OPERATOR public.<-> (real[], real[]) IS 'Euclidean distance';
COMMENT ON OPERATOR public.<=> (real[], real[]) IS 'cosine distance (1 - cosine similarity)';
COMMENT ON OPERATOR public.<#> (real[], real[]) IS 'negative inner product';

CREATE FUNCTION pgpoly.vector_search(tbl regclass, query real[], k int DEFAULT 10,
                                     filter jsonb DEFAULT NULL)
RETURNS TABLE(id text, distance double precision, document text, metadata jsonb)
AS 'MODULE_PATHNAME', 'pgpoly_vector_search'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION pgpoly.vector_search(regclass, real[], int, jsonb) IS
'The k nearest records of a pgpoly_vector table, in its collection''s distance; filter: metadata equality (arrays: one of)';
