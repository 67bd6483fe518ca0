/*-------------------------------------------------------------------------
 *
 * redis_import.c
 *		  IMPORT FOREIGN SCHEMA for pgpoly_redis.
 *
 * Redis has no catalog to import from, so the one importable "schema" is
 * feature_views: one foreign table per registered feature view whose online
 * table lives on the server, named after the view, with the online table's
 * columns and options plus _event_time (which pgpoly keeps in every feature
 * hash).  The statements are generated in SQL by pgpoly._fv_import_ddl()
 * (extension/30_features.sql), next to the registry they read.
 *
 * fdw/redis_import.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "foreign/fdwapi.h"
#include "utils/builtins.h"

#include "redis.h"

/*
 * ImportForeignSchema: the CREATE FOREIGN TABLE statements for
 * IMPORT FOREIGN SCHEMA feature_views, LIMIT TO / EXCEPT applied.  The list
 * and its strings are allocated in the caller's memory context.
 */
List *
redisImportForeignSchema(ImportForeignSchemaStmt *stmt, Oid serverOid)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			argtypes[2] = {OIDOID, TEXTOID};
	Datum		args[2];
	List	   *result = NIL;
	int			ret;

	PgpolyRejectImportOptions(stmt->options);
	if (strcmp(stmt->remote_schema, "feature_views") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_SCHEMA_NOT_FOUND),
				 errmsg("pgpoly_redis cannot import schema \"%s\"", stmt->remote_schema),
				 errdetail("Redis keeps no table definitions to import."),
				 errhint("IMPORT FOREIGN SCHEMA feature_views creates one table per registered feature view of the server.")));

	args[0] = ObjectIdGetDatum(serverOid);
	args[1] = CStringGetTextDatum(stmt->server_name);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args("SELECT view_name, ddl FROM pgpoly._fv_import_ddl($1, $2)",
								2, argtypes, args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(ret));

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		char	   *name = SPI_getvalue(tup, SPI_tuptable->tupdesc, 1);
		char	   *ddl = SPI_getvalue(tup, SPI_tuptable->tupdesc, 2);
		MemoryContext old;

		if (!IsImportableForeignTable(name, stmt))
			continue;
		old = MemoryContextSwitchTo(caller);
		result = lappend(result, pstrdup(ddl));
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return result;
}
