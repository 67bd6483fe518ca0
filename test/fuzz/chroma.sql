-- Objects of the "chroma" fuzz harness (test/fuzz/fuzz_chroma.c,
-- test/fuzz/vector_harness.c), created in the throwaway cluster of
-- `make fuzz`; @SO@ and @PORT@ are replaced by test/fuzz/run.sh.
CREATE FUNCTION fuzz_vector_handler() RETURNS fdw_handler AS '@SO@', 'pgpoly_vector_handler' LANGUAGE C STRICT;
CREATE FUNCTION fuzz_vector_validator(text[], oid) RETURNS void AS '@SO@', 'pgpoly_vector_validator' LANGUAGE C STRICT;
CREATE FOREIGN DATA WRAPPER pgpoly_vector HANDLER fuzz_vector_handler VALIDATOR fuzz_vector_validator;
CREATE SERVER fuzz_vec FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url 'http://127.0.0.1:@PORT@', provider 'chroma', timeout_ms '5000', connect_timeout_ms '1000');
CREATE FOREIGN TABLE fz_vec (id text, embedding real[], document text, metadata jsonb, grp text, n int, score float8, tags text[], at timestamptz, _distance float8) SERVER fuzz_vec OPTIONS (collection 'fz_vec', fetch_size '2', batch_size '2');
CREATE FOREIGN TABLE fz_vec_fields (id text, embedding real[], document text, grp varchar(4), n numeric, flag bool, _distance float8) SERVER fuzz_vec OPTIONS (collection 'fz_vec', fetch_size '3');
CREATE FUNCTION fz_vector_search(tbl regclass, query real[], k int, filter jsonb) RETURNS TABLE(id text, distance double precision, document text, metadata jsonb) AS '@SO@', 'pgpoly_vector_search' LANGUAGE C VOLATILE;
SET pgpoly.max_response_size = '256kB';
