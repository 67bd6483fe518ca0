/*-------------------------------------------------------------------------
 *
 * pgpoly.c
 *		  Module initialisation and GUCs.
 *
 * The module registers its transaction callbacks and the connection cache
 * once per backend, and reserves the "pgpoly." GUC prefix.
 *
 * src/pgpoly.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/tuplestore.h"
#include <limits.h>

#include "utils/guc.h"

#include "pgpoly.h"

PG_MODULE_MAGIC;

/* Upper bound on one reply from any store, in kB. */
int			pgpoly_max_response_kb = 64 * 1024;

void		_PG_init(void);

/* Module load: GUCs and the per-backend callbacks. */
void
_PG_init(void)
{
	DefineCustomIntVariable("pgpoly.max_response_size",
							"Largest single reply pgpoly accepts from a store.",
							"A larger reply fails the query instead of exhausting memory.",
							&pgpoly_max_response_kb,
							64 * 1024, 64, INT_MAX / 1024,
							PGC_USERSET, GUC_UNIT_KB,
							NULL, NULL, NULL);
	SyncInit();
#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("pgpoly");
#else
	EmitWarningsOnPlaceholders("pgpoly");
#endif
	PgpolyConnectionInit();
	PgpolyXactInit();
	RedisJoinInit();
}

/*
 * Set a set-returning function up to return its rows in a tuplestore
 * (rsinfo->setResult / setDesc), on every supported PostgreSQL version.
 */
void
PgpolyMaterializedSRF(FunctionCallInfo fcinfo)
{
#if PG_VERSION_NUM >= 160000
	InitMaterializedSRF(fcinfo, 0);
#elif PG_VERSION_NUM >= 150000
	SetSingleFuncCall(fcinfo, 0);
#else
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TupleDesc	desc;
	MemoryContext old;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		!(rsinfo->allowedModes & SFRM_Materialize))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = tuplestore_begin_heap(true, false, work_mem);
	rsinfo->setDesc = CreateTupleDescCopy(desc);
	MemoryContextSwitchTo(old);
#endif
}
