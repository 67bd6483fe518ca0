/*-------------------------------------------------------------------------
 *
 * pgpoly.c
 *		  Module initialisation and GUCs.
 *
 * The module registers its transaction callbacks and the connection cache
 * once per backend, and reserves the "pgpoly." GUC prefix.
 *
 * Invariant: every pgpoly.* GUC, the stores' included, is defined before
 * the prefix is reserved.  A value set before the library was loaded
 * (ALTER DATABASE/ROLE ... SET, PGOPTIONS, a SET in the session) waits as a
 * placeholder that DefineCustom*Variable() adopts; MarkGUCPrefixReserved()
 * removes the placeholders still undefined, so a variable defined after it
 * would lose its value silently.
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
#include <sys/mman.h>

#include "utils/guc.h"

#include "pgpoly.h"

PG_MODULE_MAGIC;

/* Upper bound on one reply from any store, in kB. */
int			pgpoly_max_response_kb = 64 * 1024;

void		_PG_init(void);

/* Module load: GUCs (all of them before the prefix is reserved), callbacks. */
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
	RedisJoinInit();			/* pgpoly.enable_batched_join */
	RedisStreamInit();			/* pgpoly.redis_stream_threshold */
	SyncInit();					/* pgpoly.sync_* */
#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("pgpoly");
#else
	EmitWarningsOnPlaceholders("pgpoly");
#endif
	PgpolyConnectionInit();
	PgpolyXactInit();
	PgpolyFeaturesInit();
	PgpolyRegisterStore(&RedisStore);
	PgpolyRegisterStore(&ElasticStore);
	PgpolyRegisterStore(&VectorStore);
	PgpolyLifecycleInit();
}

/*
 * size bytes of cxt starting on a huge-page boundary (PGPOLY_HUGE_PAGE),
 * asked of the kernel as transparent huge pages before anything touches
 * them, where it makes them on request (madvise mode; elsewhere nothing
 * changes): one page fault and one TLB entry per 2 MB instead of 512, which
 * matters under virtualization, where each fault is dear.  The unused head
 * of the allocation is never touched, so it takes no memory.  *chunk is
 * the allocation (to pfree); the memory is not zeroed.
 */
void *
PgpolyAllocHugePages(MemoryContext cxt, Size size, void **chunk)
{
	char	   *p;

	*chunk = MemoryContextAllocExtended(cxt, TYPEALIGN(PGPOLY_HUGE_PAGE, size) + PGPOLY_HUGE_PAGE,
										MCXT_ALLOC_HUGE);
	p = (char *) TYPEALIGN(PGPOLY_HUGE_PAGE, *chunk);
#ifdef MADV_HUGEPAGE
	(void) madvise(p, TYPEALIGN(PGPOLY_HUGE_PAGE, size), MADV_HUGEPAGE);
#endif
	return p;
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
