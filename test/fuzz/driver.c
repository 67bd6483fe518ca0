/*-------------------------------------------------------------------------
 *
 * driver.c
 *		  pgpoly_fuzz_run(): libFuzzer's loop inside a PostgreSQL backend.
 *
 * libFuzzer is linked without its main() (libclang_rt.fuzzer_no_main) and
 * started through LLVMFuzzerRunDriver() with the arguments given in SQL.
 * It exits the process when it is done (or when it found something), so
 * the function does not return in practice.
 *
 * test/fuzz/driver.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "fuzz.h"

extern int	LLVMFuzzerRunDriver(int *argc, char ***argv,
								int (*cb) (const uint8_t *data, size_t size));

static const PgpolyFuzzHarness *Harness;
static MemoryContext InputContext;
static bool Verbose;			/* PGPOLY_FUZZ_VERBOSE: print each ERROR */

/* libFuzzer's callback: one input in a subtransaction; an ERROR is fine. */
static int
run_one(const uint8_t *data, size_t size)
{
	MemoryContext outer = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	MemoryContextReset(InputContext);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(InputContext);
	PG_TRY();
	{
		Harness->one(data, size);
		if (Harness->done)
			Harness->done();
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		if (Harness->done)
			Harness->done();
		MemoryContextSwitchTo(InputContext);
		if (Verbose)
			EmitErrorReport();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(outer);
	CurrentResourceOwner = owner;
	if (Harness->after)
		Harness->after();
	return 0;
}

PG_FUNCTION_INFO_V1(pgpoly_fuzz_run);

/*
 * pgpoly_fuzz_run(harness text, args text[]): run libFuzzer on the named
 * harness; args are libFuzzer's command line (flags and corpus dirs).
 */
Datum
pgpoly_fuzz_run(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			argc;
	char	  **argv;

	for (int i = 0; PgpolyFuzzHarnesses[i]; i++)
		if (strcmp(PgpolyFuzzHarnesses[i]->name, name) == 0)
			Harness = PgpolyFuzzHarnesses[i];
	if (Harness == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("no fuzz harness named \"%s\"", name)));
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), TEXTOID, -1, false,
					  TYPALIGN_INT, &elems, &nulls, &n);
	argv = MemoryContextAlloc(TopMemoryContext, sizeof(char *) * (n + 2));
	argv[0] = "pgpoly_fuzz";
	for (int i = 0; i < n; i++)
		argv[i + 1] = MemoryContextStrdup(TopMemoryContext,
										  TextDatumGetCString(elems[i]));
	argv[n + 1] = NULL;
	argc = n + 1;

	Verbose = getenv("PGPOLY_FUZZ_VERBOSE") != NULL;
	InputContext = AllocSetContextCreate(TopMemoryContext, "pgpoly fuzz input",
										 ALLOCSET_DEFAULT_SIZES);
	Harness->init();
	PG_RETURN_INT32(LLVMFuzzerRunDriver(&argc, &argv, run_one));
}
