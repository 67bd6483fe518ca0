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
#if PG_VERSION_NUM >= 150000
	MarkGUCPrefixReserved("pgpoly");
#else
	EmitWarningsOnPlaceholders("pgpoly");
#endif
	PgpolyConnectionInit();
	PgpolyXactInit();
	RedisJoinInit();
}
