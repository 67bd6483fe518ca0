-- pgpoly_elastic: the Elasticsearch / OpenSearch foreign-data wrapper.

CREATE FUNCTION pgpoly.elastic_handler()
RETURNS fdw_handler
AS 'MODULE_PATHNAME', 'pgpoly_elastic_handler'
LANGUAGE C STRICT;

CREATE FUNCTION pgpoly.elastic_validator(text[], oid)
RETURNS void
AS 'MODULE_PATHNAME', 'pgpoly_elastic_validator'
LANGUAGE C STRICT;

CREATE FOREIGN DATA WRAPPER pgpoly_elastic
  HANDLER pgpoly.elastic_handler
  VALIDATOR pgpoly.elastic_validator;

COMMENT ON FOREIGN DATA WRAPPER pgpoly_elastic IS
'Elasticsearch 7.10+/8.x and OpenSearch indexes as tables: full-text search, pushdown, deep paging, bulk writes';

CREATE FUNCTION pgpoly.elastic_request(server name, method text, path text,
                                       body jsonb DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'pgpoly_elastic_request'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION pgpoly.elastic_request(name, text, text, jsonb) IS
'Send one request to a pgpoly_elastic server with its connection and credentials (index management: PUT /index with mappings, DELETE /index, _refresh); returns the response body, error bodies included.  In a read-only transaction only reads are sent (GET, HEAD, POST to _search, _msearch, _count, _mget, _field_caps, _validate, _explain or _pit, DELETE /_pit or /_search/...); anything else fails with SQLSTATE 25006';

-- It acts with the user mapping's credentials on anything the cluster allows.
REVOKE ALL ON FUNCTION pgpoly.elastic_request(name, text, text, jsonb) FROM PUBLIC;
