-- Objects of the "elastic" fuzz harness (test/fuzz/fuzz_elastic.c), created
-- in the throwaway cluster of `make fuzz`; @SO@ and @PORT@ are replaced by
-- test/fuzz/run.sh.  The wrapper has its real name: pgpoly.elastic_request()
-- checks it.
CREATE FUNCTION fuzz_elastic_handler() RETURNS fdw_handler AS '@SO@', 'pgpoly_elastic_handler' LANGUAGE C STRICT;
CREATE FUNCTION fuzz_elastic_validator(text[], oid) RETURNS void AS '@SO@', 'pgpoly_elastic_validator' LANGUAGE C STRICT;
CREATE FOREIGN DATA WRAPPER pgpoly_elastic HANDLER fuzz_elastic_handler VALIDATOR fuzz_elastic_validator;
CREATE SERVER fuzz_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url 'http://127.0.0.1:@PORT@', timeout_ms '5000', connect_timeout_ms '1000');
CREATE FOREIGN TABLE fz_docs (_id text, t text, i int, b bigint, f float8, n numeric, ok bool, ts timestamptz, d date, tags text[], meta jsonb, nested text OPTIONS (field 'a.b'), _score real, _source jsonb) SERVER fuzz_es OPTIONS (index 'fz', fetch_size '2', batch_size '2');
CREATE FOREIGN TABLE fz_plain (_id text, t varchar(8), v numeric(6,2), ts timestamp) SERVER fuzz_es OPTIONS (index 'fz*,other', fetch_size '3');
SET pgpoly.max_response_size = '256kB';
