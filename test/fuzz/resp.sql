-- Objects of the "resp" fuzz harness (test/fuzz/fuzz_resp.c), created in
-- the throwaway cluster of `make fuzz`; @SO@ and @PORT@ are replaced by
-- test/fuzz/run.sh.  timeout_ms is short: an input whose script ends inside a
-- reply makes the client wait for bytes the peer never sends.
CREATE FUNCTION fuzz_redis_handler() RETURNS fdw_handler AS '@SO@', 'pgpoly_redis_handler' LANGUAGE C STRICT;
CREATE FUNCTION fuzz_redis_validator(text[], oid) RETURNS void AS '@SO@', 'pgpoly_redis_validator' LANGUAGE C STRICT;
CREATE FOREIGN DATA WRAPPER fuzz_redis HANDLER fuzz_redis_handler VALIDATOR fuzz_redis_validator;
CREATE SERVER fuzz FOREIGN DATA WRAPPER fuzz_redis OPTIONS (host '127.0.0.1', port '@PORT@', timeout_ms '10', connect_timeout_ms '1000');
CREATE SERVER fuzz_auth FOREIGN DATA WRAPPER fuzz_redis OPTIONS (host '127.0.0.1', port '@PORT@', db '3', timeout_ms '10');
CREATE USER MAPPING FOR CURRENT_USER SERVER fuzz_auth OPTIONS (user 'u', password 'pw');
CREATE FOREIGN TABLE fz_hash (key text, a text, b int, c float8, d jsonb) SERVER fuzz OPTIONS (table_type 'hash', key_prefix 'k:', fetch_size '2');
CREATE FOREIGN TABLE fz_hash_ttl (key text, a text, _ttl int) SERVER fuzz OPTIONS (table_type 'hash', key_prefix 'k:');
CREATE FOREIGN TABLE fz_string (key text, value text) SERVER fuzz OPTIONS (table_type 'string', key_prefix 'k:', ttl_seconds '60');
CREATE FOREIGN TABLE fz_json (key text, a text, b int, c jsonb, d numeric) SERVER fuzz OPTIONS (table_type 'json', key_prefix 'k:');
CREATE FOREIGN TABLE fz_zset (key text, member text, score float8) SERVER fuzz OPTIONS (table_type 'zset', key_prefix 'z:');
CREATE FOREIGN TABLE fz_set (key text, member text) SERVER fuzz OPTIONS (table_type 'set');
CREATE FOREIGN TABLE fz_list (key text, idx int, value bytea) SERVER fuzz OPTIONS (table_type 'list', key_prefix 'l:');
CREATE FOREIGN TABLE fz_auth (key text, value text) SERVER fuzz_auth OPTIONS (table_type 'string');
SET pgpoly.max_response_size = '256kB';
