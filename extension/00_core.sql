-- pgpoly extension script: core objects (operations functions).
-- Assembled with the other extension/*.sql fragments into pgpoly--0.1.sql.

\echo Use "CREATE EXTENSION pgpoly" to load this file. \quit

-- Schema pgpoly is created by CREATE EXTENSION (control file: schema = pgpoly).

CREATE FUNCTION pgpoly.connections(
    OUT server name, OUT store text, OUT target text, OUT user_name name,
    OUT requests bigint, OUT errors bigint, OUT in_transaction bool)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pgpoly_connections'
LANGUAGE C STRICT VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION pgpoly.connections() IS
'Open connections to the foreign stores cached by this backend';

CREATE FUNCTION pgpoly.disconnect(server name DEFAULT NULL)
RETURNS int
AS 'MODULE_PATHNAME', 'pgpoly_disconnect'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION pgpoly.disconnect(name) IS
'Close cached store connections of one server (NULL: all); returns how many were closed';

-- Like postgres_fdw_disconnect(), callable by everyone: it only closes the
-- calling backend's own cached connections.

-- The name of relation rel; 42P01 if there is none (a dropped table's OID
-- given as a regclass argument), as the C functions report it.
CREATE FUNCTION pgpoly._relation_name(rel oid)
RETURNS text
AS 'MODULE_PATHNAME', 'pgpoly_relation_name'
LANGUAGE C STRICT STABLE PARALLEL SAFE;
