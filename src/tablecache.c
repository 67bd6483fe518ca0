/*-------------------------------------------------------------------------
 *
 * tablecache.c
 *		  Per-backend caches of foreign tables resolved from the catalogs.
 *
 * Each store resolves a foreign table into a struct of its own (options
 * with defaults, column roles, conversions: RedisTable, VectorTable) with a
 * loader that reads only the catalogs.  A prepared statement's every
 * execution would otherwise read the table's, its columns', its server's
 * and its user mapping's catalog entries and look up the I/O functions of
 * every column again (a third of a Redis point lookup's work, a tenth of a
 * vector k-NN query's).  A PgpolyTableCache keeps the loader's results by
 * (table, user), as the relcache keeps relations.
 *
 * Invariants:
 *	- Any change of the table (relcache invalidation), of any foreign
 *	  table's options, server, user mapping or type (syscache
 *	  invalidations) drops the entries concerned (for the syscaches: all of
 *	  them, in every cache) before the next use; an entry built while an
 *	  invalidation came in is used once and not kept.
 *	- A result is read-only and owned by the cache; a dropped entry's
 *	  memory is freed at the end of the transaction, never under a query
 *	  still using it.  A loader's ERROR caches nothing.
 *	- Privileges are not cached: the executor checks them, and the trust
 *	  rule is checked whenever a connection is handed out.
 *
 * src/tablecache.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "pgpoly.h"

/* The caches there can be (one per store). */
#define MAX_TABLE_CACHES 4

typedef struct TableKey
{
	Oid			relid;
	Oid			userid;
} TableKey;

/* The memory of an entry; once dropped, linked for freeing. */
typedef struct Retired
{
	MemoryContext cxt;			/* holds this struct too */
	struct Retired *next;
} Retired;

typedef struct TableEntry
{
	TableKey	key;			/* hash key (first) */
	void	   *tbl;			/* NULL: to be resolved */
	Retired    *mem;
} TableEntry;

struct PgpolyTableCache
{
	const char *name;			/* constant: its memory contexts' identifier */
	PgpolyTableLoader load;
	HTAB	   *hash;
	bool		has_dropped;	/* some entry may have tbl NULL */
	int			resolving;		/* resolve() calls running */
};

static PgpolyTableCache Caches[MAX_TABLE_CACHES];
static int	NumCaches = 0;
static Retired *RetiredList = NULL;
static uint64 Invalidations = 0;	/* counts the callbacks below */

/* Drop an entry (no allocation: invalidation callbacks may not fail). */
static void
drop_entry(PgpolyTableCache *cache, TableEntry *e)
{
	if (e->tbl == NULL)
		return;
	e->mem->next = RetiredList;
	RetiredList = e->mem;
	e->tbl = NULL;
	e->mem = NULL;
	cache->has_dropped = true;
}

/*
 * Remove the entries dropped since the last look-up (their memory is
 * freed at transaction end, free_retired): else one per (table, user)
 * ever resolved stays, and a session that creates and drops tables grows
 * for as long as it lives.  Only between look-ups: never while resolve()
 * holds an entry.
 */
static void
remove_dropped(PgpolyTableCache *cache)
{
	HASH_SEQ_STATUS hs;
	TableEntry *e;

	if (!cache->has_dropped || cache->resolving > 0)
		return;
	cache->has_dropped = false;
	hash_seq_init(&hs, cache->hash);
	while ((e = hash_seq_search(&hs)) != NULL)
		if (e->tbl == NULL)
			hash_search(cache->hash, &e->key, HASH_REMOVE, NULL);
}

/* Relcache callback: drop the entries of relid (InvalidOid: all). */
static void
relcache_callback(Datum arg, Oid relid)
{
	Invalidations++;
	for (int i = 0; i < NumCaches; i++)
	{
		HASH_SEQ_STATUS hs;
		TableEntry *e;

		hash_seq_init(&hs, Caches[i].hash);
		while ((e = hash_seq_search(&hs)) != NULL)
			if (!OidIsValid(relid) || e->key.relid == relid)
				drop_entry(&Caches[i], e);
	}
}

/*
 * Syscache callback (foreign tables, servers, user mappings, types): drop
 * every entry; such changes are rare.
 */
static void
syscache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	relcache_callback(arg, InvalidOid);
}

/* Transaction end: free the memory of dropped entries (no query uses it). */
static void
free_retired(XactEvent event, void *arg)
{
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		event != XACT_EVENT_PREPARE && event != XACT_EVENT_PARALLEL_COMMIT &&
		event != XACT_EVENT_PARALLEL_ABORT)
		return;
	while (RetiredList)
	{
		Retired    *r = RetiredList;

		RetiredList = r->next;
		MemoryContextDelete(r->cxt);
	}
}

/*
 * A new cache of the tables load resolves (once per backend and store:
 * call it at the first look-up).  name, a constant string, identifies its
 * memory contexts.
 */
PgpolyTableCache *
PgpolyTableCacheCreate(const char *name, PgpolyTableLoader load)
{
	PgpolyTableCache *cache;
	HASHCTL		ctl;

	if (NumCaches == MAX_TABLE_CACHES)
		elog(ERROR, "too many pgpoly table caches");
	ctl.keysize = sizeof(TableKey);
	ctl.entrysize = sizeof(TableEntry);
	ctl.hcxt = CacheMemoryContext;
	cache = &Caches[NumCaches];
	cache->hash = hash_create(name, 16, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	cache->name = name;
	cache->load = load;
	if (NumCaches++ == 0)
	{
		CacheRegisterRelcacheCallback(relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(FOREIGNTABLEREL, syscache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(FOREIGNSERVEROID, syscache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(USERMAPPINGOID, syscache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(TYPEOID, syscache_callback, (Datum) 0);
		RegisterXactCallback(free_retired, NULL);
	}
	return cache;
}

/*
 * Resolve relid for userid into e, in memory of its own.  If an
 * invalidation came in meanwhile, the result may already be stale: it is
 * used by this caller and dropped at once.
 */
static void *
resolve(PgpolyTableCache *cache, TableEntry *e, Oid relid, Oid userid)
{
	uint64		before = Invalidations;
	MemoryContext cxt = AllocSetContextCreate(CacheMemoryContext, "pgpoly table",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	void	   *tbl = NULL;

	MemoryContextSetIdentifier(cxt, cache->name);

	cache->resolving++;
	PG_TRY();
	{
		tbl = cache->load(relid, userid);
	}
	PG_CATCH();
	{
		cache->resolving--;
		cache->has_dropped = true;	/* e stays unresolved */
		MemoryContextSwitchTo(old);
		MemoryContextDelete(cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	cache->resolving--;
	e->mem = palloc0(sizeof(Retired));
	e->mem->cxt = cxt;
	e->tbl = tbl;
	MemoryContextSwitchTo(old);
	if (Invalidations != before)
		drop_entry(cache, e);
	return tbl;
}

/*
 * Foreign table relid as seen by userid (for the user mapping): the
 * loader's result, cached (read-only; see the invariants above).
 */
void *
PgpolyTableCacheGet(PgpolyTableCache *cache, Oid relid, Oid userid)
{
	TableKey	key;
	TableEntry *e;
	bool		found;

	remove_dropped(cache);
	key.relid = relid;
	key.userid = userid;
	e = hash_search(cache->hash, &key, HASH_ENTER, &found);
	if (!found)
	{
		e->tbl = NULL;
		e->mem = NULL;
	}
	return e->tbl ? e->tbl : resolve(cache, e, relid, userid);
}
