/*-------------------------------------------------------------------------
 *
 * ingest.c
 *		  C helpers of ingest_features (extension/35_ingest.sql).
 *
 * Invariant: nothing here reads or writes a table; the SQL function keeps
 * the contract (API.md section 3) and only asks these for per-row work that
 * SQL does at a higher cost.
 *
 * src/ingest.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

PG_FUNCTION_INFO_V1(pgpoly_ingest_ordinal);

/*
 * pgpoly._ingest_ordinal(): 1, 2, 3 ... on the successive calls from one
 * call site in one execution of a query (the count lives with the call's
 * FmgrInfo, made afresh by each execution).  ingest_features numbers its
 * source rows with it as the rows are read; row_number() OVER () would do
 * the same, but copies every row into its window's tuple store first.
 */
Datum
pgpoly_ingest_ordinal(PG_FUNCTION_ARGS)
{
	int64	   *count = (int64 *) fcinfo->flinfo->fn_extra;

	if (count == NULL)
	{
		count = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(int64));
		fcinfo->flinfo->fn_extra = count;
	}
	PG_RETURN_INT64(++(*count));
}
