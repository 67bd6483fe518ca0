-- pgpoly_redis: the Redis foreign-data wrapper.

CREATE FUNCTION pgpoly.redis_handler()
RETURNS fdw_handler
AS 'MODULE_PATHNAME', 'pgpoly_redis_handler'
LANGUAGE C STRICT;

CREATE FUNCTION pgpoly.redis_validator(text[], oid)
RETURNS void
AS 'MODULE_PATHNAME', 'pgpoly_redis_validator'
LANGUAGE C STRICT;

CREATE FOREIGN DATA WRAPPER pgpoly_redis
  HANDLER pgpoly.redis_handler
  VALIDATOR pgpoly.redis_validator;

COMMENT ON FOREIGN DATA WRAPPER pgpoly_redis IS
'Redis 6/7: hash, string, json, zset, set and list keys as tables';

-- The key column of a pgpoly_redis table, as the FDW resolves it (internal).
CREATE FUNCTION pgpoly._redis_key_column(rel regclass)
RETURNS text
AS 'MODULE_PATHNAME', 'pgpoly_redis_key_column'
LANGUAGE C STRICT STABLE;

-- The Redis Cluster hash slot of a key (CRC16 of the key or of its {hash tag},
-- modulo 16384), as CLUSTER KEYSLOT computes it.
CREATE FUNCTION pgpoly.redis_key_slot(key text)
RETURNS int
AS 'MODULE_PATHNAME', 'pgpoly_redis_key_slot'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION pgpoly.redis_key_slot(text) IS
'Redis Cluster hash slot of a key, {hash tags} honoured (as CLUSTER KEYSLOT)';
