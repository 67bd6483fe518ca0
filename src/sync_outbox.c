/*-------------------------------------------------------------------------
 *
 * sync_outbox.c
 *		  The outbox of foreign tables in write_mode 'outbox': their row
 *		  changes queued at COMMIT, and their delivery by the sync worker.
 *
 * A transaction's outbox changes (captured by outbox.c) are queued at
 * pre-commit, in pgpoly.sync_queue, as entries of at most SYNC_CHUNK_KEYS
 * changes of one table, writer and kind (op, columns): keys text[] holds
 * their identities, vals text[][] their values (one row per change), all in
 * the fixed text form of convert.c.  Each outbox table has a sync of kind
 * 'outbox' named after it (schema.table), made by its first COMMIT.
 *
 * Order.  Per key, the target must end in the state of the last committed
 * write, whatever order concurrent transactions commit in.  So queueing
 * first takes, for each key written, a transaction lock (a bucket of 4096
 * per table; a transaction writing many buckets takes one lock for the
 * table instead: src/keylock.c, shared with the feature store), and only
 * then takes the entries' ids from the queue's sequence: two transactions
 * writing one key queue in the order they commit, and a snapshot that sees
 * the later one sees the earlier one.  The
 * locks are held from pre-commit to COMMIT only: taking them never waits
 * on a store, though a transaction that also writes tables in another
 * write_mode holds them while it sends those writes (queueing comes first,
 * so that a queueing that fails leaves nothing in a store: xact.c).  The
 * worker reads entries in entry_id order.
 *
 * Delivery.  The worker composes a batch's changes per key (a later upsert
 * or delete replaces what came before; an update changes the columns it
 * assigns of an upsert, adds to an update, and has nothing to change after
 * a delete), then delivers each key once, as the user who wrote it (so with
 * that user's mapping and privileges), with SQL on the foreign table that
 * the store's own pipelined write path runs: INSERT of the upserts (Redis
 * and vector INSERT overwrite, an Elasticsearch INSERT is an "index"),
 * UPDATE ... FROM of the updates (which change the rows present when
 * delivered, as an UPDATE would), DELETE of the deletes.  The table is
 * written transactionally there (PgpolyDeliverOutbox), so the store has the
 * writes when the worker's COMMIT dequeues them; delivering a batch again
 * after a crash writes the same values again.  Composition and delivery in
 * separate batches give the same result.
 *
 * A feature view's serving table in outbox mode is delivered newest-wins,
 * as put_features decides when it writes directly: an upsert reaches the
 * store only if its _event_time is not older than the stored one (the
 * comparison is part of the delivering INSERT), and of two upserts of one
 * key the one with the newer _event_time wins (ties: the later).
 *
 * Rejected changes.  When the store rejects a batch, its composed changes
 * are queued again as isolated entries, one per key, in two groups
 * (halves), each group delivered on its own, down to single keys retried
 * with backoff and moved to the dead letters at last (sync_worker.c decides
 * when).  While a key has an isolated entry, its later changes are parked
 * behind it instead of being delivered, so they can never overtake it;
 * other keys flow.  A key's parked changes form a chain: a change by the
 * writer of the chain's last link is composed into it, a change by another
 * writer becomes a new link (an isolated entry that waits, not_before
 * 'infinity'), so that each writer's change is delivered as that writer,
 * or dead-lettered under that writer's name, never merged into another
 * writer's (delivered as the later writer, a rejected change would reach
 * the store with that writer's rights).  Only a chain's first link is ever
 * delivered: the next one is due once it is gone (delivered or buried).
 *
 * src/sync_outbox.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "sync.h"

/* ----------------------------------------------------------------
 *		Queueing at COMMIT
 * ----------------------------------------------------------------
 */

/* Saved plans (TopMemoryContext, kept by SPI). */
static SPIPlanPtr FindSyncPlan = NULL;
static SPIPlanPtr MakeSyncPlan = NULL;
static SPIPlanPtr StaleSyncPlan = NULL;
static SPIPlanPtr FollowNamesPlan = NULL;
static SPIPlanPtr EntryPlan = NULL;
static SPIPlanPtr IsolatedPlan = NULL;	/* the worker's (queue_isolated) */

/* A saved plan of sql with nargs arguments of types. */
static SPIPlanPtr
saved_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		*plan = p;
	}
	return *plan;
}

/* The outbox sync of relid, key-share locked, or 0 (the latest snapshot). */
static int32
find_sync(Oid relid)
{
	Oid			type = OIDOID;
	Datum		arg = ObjectIdGetDatum(relid);
	SPIPlanPtr	plan = saved_plan(&FindSyncPlan,
								  "SELECT sync_id, COALESCE(target_ref OPERATOR(pg_catalog.<>) "
								  "pgpoly._sync_ref($1), false) "
								  "FROM pgpoly.syncs "
								  "WHERE kind = 'outbox' AND target = $1::pg_catalog.regclass "
								  "FOR KEY SHARE", 1, &type);
	bool		isnull;
	int32		id;

	if (SPI_execute_snapshot(plan, &arg, NULL, GetLatestSnapshot(), InvalidSnapshot,
							 false, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "looking up the outbox sync of relation %u failed", relid);
	if (SPI_processed == 0)
		return 0;
	id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									 1, &isnull));

	/*
	 * A restored table: number the queued changes' columns again before
	 * this transaction's are queued with the table's numbers now.
	 */
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull)))
		SyncResolveColumns(id, NULL);
	return id;
}

/*
 * Make relid's outbox sync (named name, key column key_att) unless one of
 * that name exists; whether it was made.  A sync of that name left behind
 * by a dropped outbox table with nothing queued and no dead letters is
 * removed first: it has nothing to deliver, and a table created again under
 * the name would otherwise refuse every write (42710).  So is the name of a
 * sync whose table was renamed where pgpoly was not loaded (the worker would
 * rename it later: SyncFollowNamesSQL).
 */
static bool
make_sync(Oid relid, const char *name, AttrNumber key_att)
{
	Oid			types[3] = {OIDOID, TEXTOID, INT2OID};
	Datum		values[3];

	values[0] = ObjectIdGetDatum(relid);
	values[1] = CStringGetTextDatum(name);
	values[2] = Int16GetDatum(key_att);
	if (SPI_execute_snapshot(saved_plan(&StaleSyncPlan,
										"DELETE FROM pgpoly.syncs s WHERE s.name = $2 "
										"AND s.kind = 'outbox' AND s.target OPERATOR(pg_catalog.<>) $1 "
										"AND NOT EXISTS (SELECT FROM pg_catalog.pg_class c "
										"WHERE c.oid OPERATOR(pg_catalog.=) s.target) "
										"AND NOT EXISTS (SELECT FROM pgpoly.sync_queue q "
										"WHERE q.sync_id OPERATOR(pg_catalog.=) s.sync_id) "
										"AND NOT EXISTS (SELECT FROM pgpoly.sync_dead_letters d "
										"WHERE d.sync_id OPERATOR(pg_catalog.=) s.sync_id)",
										3, types),
							 values, NULL, GetLatestSnapshot(), InvalidSnapshot,
							 false, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "removing the outbox sync of a dropped table failed");
	if (SPI_execute_snapshot(saved_plan(&FollowNamesPlan, SyncFollowNamesSQL, 0, NULL),
							 NULL, NULL, GetLatestSnapshot(), InvalidSnapshot,
							 false, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "renaming the outbox syncs of renamed tables failed");
	if (SPI_execute_snapshot(saved_plan(&MakeSyncPlan,
										"INSERT INTO pgpoly.syncs (name, kind, target, key_attnum, "
										"target_key_attnum, source_attnums, target_attnums, owner, "
										"target_ref, target_columns) "
										"SELECT $2, 'outbox', c.oid, $3, $3, '{}', '{}', c.relowner, "
										"pgpoly._sync_ref(c.oid), pgpoly._sync_columns(c.oid) "
										"FROM pg_catalog.pg_class c WHERE c.oid = $1 "
										"ON CONFLICT DO NOTHING", 3, types),
							 values, NULL, GetLatestSnapshot(), InvalidSnapshot,
							 false, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "making the outbox sync of relation %u failed", relid);
	return SPI_processed > 0;
}

/*
 * The id of relid's outbox sync (key column key_att), made by the first
 * COMMIT that queues a change of relid.  Read with the latest snapshot, so
 * that a sync another transaction made after this one's snapshot is found
 * (not made twice) at any isolation level; its row is key-share locked
 * until COMMIT, so drop_sync waits for the changes to be queued.
 */
static int32
outbox_sync(Oid relid, AttrNumber key_att)
{
	char	   *name = SyncQualifiedName(relid);
	int32		id = find_sync(relid);

	if (id != 0)
		return id;
	make_sync(relid, name, key_att);
	id = find_sync(relid);
	if (id == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("cannot queue the outbox changes of foreign table %s: a sync named \"%s\" exists",
						name, name),
				 errdetail("The changes of a table in write_mode 'outbox' are queued for a sync named after the table."),
				 errhint("Drop that sync with pgpoly.drop_sync() and create it under another name.")));
	return id;
}

/*
 * Lock the keys of relid in changes until COMMIT (see the file header and
 * keylock.c): a writer of one key waits for the other writers of it.
 */
static void
lock_table_keys(Oid relid, List *changes)
{
	char	  **keys = palloc(sizeof(char *) * list_length(changes));
	size_t	   *lens = palloc(sizeof(size_t) * list_length(changes));
	int			n = 0;
	ListCell   *lc;

	foreach(lc, changes)
	{
		PgpolyChange *c = lfirst(lc);

		if (c->relid == relid)
		{
			lens[n] = strlen(c->key);
			keys[n] = (char *) PgpolyServerToStore(c->key, &lens[n], false);
			n++;
		}
	}
	(void) PgpolyLockKeys(relid, keys, lens, n, true);
}

/* Whether b continues a's entry: same table, writer, kind and columns. */
static bool
same_entry(PgpolyChange *a, PgpolyChange *b)
{
	return a->relid == b->relid && a->userid == b->userid && a->op == b->op &&
		a->ncols == b->ncols &&
		(a->atts == b->atts || memcmp(a->atts, b->atts, sizeof(AttrNumber) * a->ncols) == 0);
}

/* A text[] of n C strings (NULL elements where s[i] is NULL), dims given. */
static Datum
text_array(char **s, int n, int ndims, int *dims)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(n, 1));
	int			lbs[2] = {1, 1};

	for (int i = 0; i < n; i++)
	{
		nulls[i] = s[i] == NULL;
		d[i] = nulls[i] ? (Datum) 0 : CStringGetTextDatum(s[i]);
	}
	return PointerGetDatum(construct_md_array(d, nulls, ndims, dims, lbs, TEXTOID, -1,
											  false, TYPALIGN_INT));
}

/* Insert one queue entry of sync_id: the n changes at c (one kind). */
static void
write_entry(int32 sync_id, PgpolyChange **c, int n)
{
	Oid			types[6] = {INT4OID, TEXTARRAYOID, CHAROID, REGROLEOID, INT2ARRAYOID, TEXTARRAYOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	char	  **keys = palloc(sizeof(char *) * n);
	int			ncols = c[0]->ncols;

	for (int i = 0; i < n; i++)
		keys[i] = c[i]->key;
	values[0] = Int32GetDatum(sync_id);
	values[1] = text_array(keys, n, 1, &n);
	values[2] = CharGetDatum(c[0]->op);
	values[3] = ObjectIdGetDatum(c[0]->userid);
	values[4] = SyncAttnumArray(c[0]->atts, ncols);
	if (ncols > 0)
	{
		char	  **vals = palloc(sizeof(char *) * n * ncols);
		int			dims[2] = {n, ncols};

		for (int i = 0; i < n; i++)
			memcpy(&vals[i * ncols], c[i]->values, sizeof(char *) * ncols);
		values[5] = text_array(vals, n * ncols, 2, dims);
	}
	else
		nulls[5] = 'n';
	if (c[0]->op == PGPOLY_CHANGE_DELETE)
		nulls[4] = 'n';
	if (SPI_execute_plan(saved_plan(&EntryPlan,
									"INSERT INTO pgpoly.sync_queue "
									"(sync_id, keys, op, userid, cols, vals) "
									"VALUES ($1, $2, $3, $4, $5, $6)", 6, types),
						 values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "queueing outbox changes failed");
}

/* The sync id of relid: sync_ids[i] belongs to relids[i]. */
static int32
sync_of(List *relids, List *sync_ids, Oid relid)
{
	ListCell   *lc;

	foreach(lc, relids)
		if (lfirst_oid(lc) == relid)
		return list_nth_int(sync_ids, foreach_current_index(lc));
	elog(ERROR, "relation %u has no outbox sync", relid);
	return 0;
}

/*
 * Write the changes as entries: runs of one table, writer and kind, of at
 * most SYNC_CHUNK_KEYS changes, in the order they were made.
 */
static void
write_entries(List *changes, List *relids, List *sync_ids)
{
	PgpolyChange **run = palloc(sizeof(PgpolyChange *) * SYNC_CHUNK_KEYS);
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "pgpoly outbox entry",
											  ALLOCSET_DEFAULT_SIZES);
	int			n = 0;
	ListCell   *lc;

	foreach(lc, changes)
	{
		PgpolyChange *c = lfirst(lc);

		if (n > 0 && (n == SYNC_CHUNK_KEYS || !same_entry(run[0], c)))
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			write_entry(sync_of(relids, sync_ids, run[0]->relid), run, n);
			MemoryContextSwitchTo(old);
			MemoryContextReset(cxt);
			n = 0;
		}
		run[n++] = c;
	}
	if (n > 0)
		write_entry(sync_of(relids, sync_ids, run[0]->relid), run, n);
	MemoryContextDelete(cxt);
}

/*
 * The changes of tables that still exist (a table dropped after it was
 * written has nothing to deliver); *relids gets those tables, by OID, the
 * order in which every COMMIT makes their syncs and takes their locks (so
 * that two COMMITs never wait for each other in a cycle).
 */
static List *
live_changes(List *changes, List **relids)
{
	List	   *live = NIL;
	ListCell   *lc;

	foreach(lc, changes)
	{
		PgpolyChange *c = lfirst(lc);

		if (get_rel_relkind(c->relid) != RELKIND_FOREIGN_TABLE)
			continue;
		live = lappend(live, c);
		if (!list_member_oid(*relids, c->relid))
			*relids = lappend_oid(*relids, c->relid);
	}
	list_sort(*relids, list_oid_cmp);
	return live;
}

/* The outbox sync of each table of relids (made if new), in that order. */
static List *
table_syncs(List *relids, List *changes)
{
	List	   *sync_ids = NIL;
	ListCell   *lc;

	foreach(lc, relids)
	{
		ListCell   *cc;

		foreach(cc, changes)
		{
			PgpolyChange *c = lfirst(cc);

			if (c->relid == lfirst_oid(lc))
			{
				sync_ids = lappend_int(sync_ids, outbox_sync(c->relid, c->key_att));
				break;
			}
		}
	}
	return sync_ids;
}

/* Take the commit-order locks of the keys of every table of relids. */
static void
lock_keys(List *relids, List *changes)
{
	ListCell   *lc;

	foreach(lc, relids)
		lock_table_keys(lfirst_oid(lc), changes);
}

/*
 * Pre-commit (xact.c): queue the transaction's outbox changes, in write
 * order, after taking the commit-order locks of their keys.  Runs as the
 * extension's owner: no writer needs rights on the queue.  An ERROR fails
 * the COMMIT.
 */
void
SyncQueueChanges(List *changes)
{
	List	   *relids = NIL;
	List	   *live = live_changes(changes, &relids);
	List	   *sync_ids;
	Oid			save_user;
	int			save_sec;
	int			level;

	if (live == NIL)
		return;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	/* not under the writer's search_path, whose "=" would run as the admin */
	level = SyncSafeSearchPath();
	SyncBecome(SyncAdminRole(), false, &save_user, &save_sec);
	sync_ids = table_syncs(relids, live);
	lock_keys(relids, live);
	write_entries(live, relids, sync_ids);
	SetUserIdAndSecContext(save_user, save_sec);
	AtEOXact_GUC(true, level);
	PopActiveSnapshot();
	SPI_finish();
	SyncNoteQueued();
}

/*
 * Whether pgpoly table relname has a row visible now whose column colname
 * equals value (operator proc eqproc), found through index indexname on
 * that column: a probe without SPI, cheap enough for every modification
 * of a foreign table.  *sync_id (if not NULL) gets the row's sync_id.
 */
static bool
index_has(Oid nsp, const char *relname, const char *indexname, const char *colname,
		  RegProcedure eqproc, Datum value, int32 *sync_id)
{
	Relation	rel = table_open(get_relname_relid(relname, nsp), AccessShareLock);
	Snapshot	snap = RegisterSnapshot(GetLatestSnapshot());
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	/* systable_beginscan takes the table's column numbers */
	ScanKeyInit(&key, get_attnum(RelationGetRelid(rel), colname), BTEqualStrategyNumber,
				eqproc, value);
	scan = systable_beginscan(rel, get_relname_relid(indexname, nsp), true, snap, 1, &key);
	tup = systable_getnext(scan);
	if (tup != NULL && sync_id != NULL)
	{
		bool		isnull;

		*sync_id = DatumGetInt32(heap_getattr(tup, get_attnum(RelationGetRelid(rel), "sync_id"),
											  RelationGetDescr(rel), &isnull));
	}
	systable_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);
	return tup != NULL;
}

/*
 * ERROR if foreign table relid, about to be written in another write_mode
 * than 'outbox', still has outbox changes queued: the worker would deliver
 * them after this write and overwrite it with older values (a table's
 * write_mode set from 'outbox' to 'transactional' while its store was
 * down).  The ALTER waited for the transactions that wrote the table, so
 * every change of theirs is queued by now.  The worker's own writes are
 * exempt: it delivers them.
 */
void
PgpolyCheckOutboxDrained(Oid relid)
{
	Oid			nsp;
	int32		sync_id;
	char	   *name;

	if (SyncIsWorker || !OidIsValid(nsp = get_namespace_oid("pgpoly", true)) ||
		!index_has(nsp, "syncs", "syncs_outbox_target_key", "target", F_OIDEQ,
				   ObjectIdGetDatum(relid), &sync_id) ||
		!index_has(nsp, "sync_queue", "sync_queue_entry_idx", "sync_id", F_INT4EQ,
				   Int32GetDatum(sync_id), NULL))
		return;
	name = SyncQualifiedName(relid);
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("foreign table %s has outbox changes not delivered yet", name),
			 errdetail("They were written in write_mode 'outbox' and would overwrite this write when the sync worker delivers them."),
			 errhint("Wait for them with pgpoly.sync_wait(%s), or discard them with pgpoly.drop_sync(%s).",
					 quote_literal_cstr(name), quote_literal_cstr(name))));
}

/* ----------------------------------------------------------------
 *		Delivery (the sync worker)
 * ----------------------------------------------------------------
 */

/* Upsert regardless of the stored event time (only isolated entries). */
#define CHANGE_UPSERT_ALWAYS	'U'

/*
 * How delivery statements find a key's row: as the store does, by the
 * key's fixed text.  The key type's equality does where it is byte
 * equality (text, integers, uuid ...), and a store can look the key up;
 * under COLLATE "C" where only the column's nondeterministic collation
 * keeps it from being; elsewhere (numeric 1.0 = 1.00, float8 0 = -0,
 * interval, citext, char(n) ...) the text forms are compared, since the
 * equality would match other keys of the store too.
 */
typedef enum OutboxKeyMatch
{
	KEY_MATCH_EQUAL,
	KEY_MATCH_C_COLLATION,
	KEY_MATCH_TEXT
} OutboxKeyMatch;

/* The target table as a batch sees it (the cycle's memory). */
typedef struct OutboxTable
{
	Oid			relid;
	char	   *rel;			/* qualified, quoted */
	int			natts;
	bool	   *live;			/* per column (attnum - 1): delivered (not
								 * dropped, not generated) */
	char	  **names;			/* column names */
	PgpolyConv *convs;
	AttrNumber	key_att;
	char	   *key_eq;			/* OPERATOR(schema.=) of the key type */
	OutboxKeyMatch key_match;	/* how a statement finds a key (key_match()) */
	AttrNumber	event_att;		/* newest-wins column, or 0 */
} OutboxTable;

/* A change for one key: an entry's, or several composed. */
typedef struct OutboxRow
{
	char	   *key;
	char		op;				/* PGPOLY_CHANGE_* or CHANGE_UPSERT_ALWAYS */
	Oid			userid;			/* the writer of the last change composed */
	bool	   *set;			/* per column: written */
	char	  **vals;			/* its value (NULL: SQL NULL) */
	int			order;			/* position in the batch */
	int			park;			/* index of the isolated row it joins, or -1 */
	int64		entry_id;		/* an isolated row's entry, else 0 */
	bool		link;			/* an isolated row waiting for an earlier one
								 * (not_before 'infinity') */
	bool		waiting;		/* an isolated row behind another of its key */
} OutboxRow;

/* What this file knows of a batch (the cycle's memory). */
typedef struct OutboxBatch
{
	OutboxTable t;
	int			nisolated;
	OutboxRow **isolated;		/* the sync's isolated rows, by key and chain */
	List	   *parked;			/* OutboxRow *: changes joining one of them */
} OutboxBatch;

/* Columns of the queue entries read (see decode_entry). */
#define QUEUE_COLUMNS \
	"entry_id, keys, op, userid, cols, vals, queued_at, attempts, not_before, grp"

/*
 * SyncExecute(sql ...), then back in cxt: SPI leaves the caller in its own
 * memory, which goes with SPI_finish, and a batch must outlive the
 * transaction that read it (a failed delivery is handled in another).
 */
static void
spi_execute_in(MemoryContext cxt, const char *sql, int nargs, Oid *types,
			   Datum *values, int expect)
{
	SyncExecute(sql, nargs, types, values, NULL, expect);
	MemoryContextSwitchTo(cxt);
}

/* The quoted name of live column att of relid; ERROR if it was dropped. */
static char *
live_column(Oid relid, AttrNumber att)
{
	char	   *name = get_attname(relid, att, true);

	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("the key column of foreign table %s, used by its outbox, no longer exists",
						SyncQualifiedName(relid)),
				 errhint("Drop the sync with pgpoly.drop_sync(): its changes cannot be delivered.")));
	return name;
}

/*
 * The newest-wins column of relid: _event_time, if relid is the serving
 * table of a feature view, else 0.
 */
static AttrNumber
event_column(Oid relid)
{
	Oid			type = REGCLASSOID;
	Datum		arg = ObjectIdGetDatum(relid);
	AttrNumber	att;

	spi_execute_in(CurrentMemoryContext,
				   "SELECT 1 FROM pgpoly._feature_view_storage WHERE serving_table = $1",
				   1, &type, &arg, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return 0;
	att = get_attnum(relid, "_event_time");
	return att > 0 && get_atttype(relid, att) == TIMESTAMPTZOID ? att : 0;
}

/* How statements find a key of column key_att of relid (OutboxKeyMatch). */
static OutboxKeyMatch
key_match_kind(Oid relid, AttrNumber key_att)
{
	Oid			typid;
	int32		typmod;
	Oid			collid;
	Oid			base;

	get_atttypetypmodcoll(relid, key_att, &typid, &typmod, &collid);
	base = getBaseType(typid);
	if (!PgpolyKeyEqualityIsByteEquality(lookup_type_cache(base, TYPECACHE_EQ_OPR)->eq_opr,
										 base, -1, base, InvalidOid, NULL))
		return KEY_MATCH_TEXT;
	if (OidIsValid(collid) && !get_collation_isdeterministic(collid))
		return KEY_MATCH_C_COLLATION;
	return KEY_MATCH_EQUAL;
}

/*
 * "lhs = rhs" for keys, compared as key_match says; rhs is "ANY ($n)" of
 * the key type's array, or of text[] for KEY_MATCH_TEXT (see key_param),
 * or the key column of a row (param false).  The text form is the output
 * function's (format %s), which under the worker's settings is the fixed
 * form of convert.c (set_worker_settings).
 */
static char *
key_compare(OutboxTable *t, const char *lhs, const char *rhs, bool param)
{
	switch (t->key_match)
	{
		case KEY_MATCH_EQUAL:
			break;
		case KEY_MATCH_C_COLLATION:
			return psprintf("%s COLLATE pg_catalog.\"C\" %s %s", lhs, t->key_eq, rhs);
		case KEY_MATCH_TEXT:
			return psprintf("pg_catalog.format('%%s', %s) COLLATE pg_catalog.\"C\" "
							"OPERATOR(pg_catalog.=) %s%s%s", lhs,
							param ? "" : "pg_catalog.format('%s', ", rhs, param ? "" : ")");
	}
	return psprintf("%s %s %s", lhs, t->key_eq, rhs);
}

/*
 * Describe the target of sync s into t, in the current memory context.
 * The table stays locked, in the mode its delivery writes it with, until
 * the batch ends: the batch takes it before the sync's row, as ALTER TABLE
 * and drop_sync do (see lock_tables in sync_worker.c), and its delivery
 * runs with the description read here.
 */
static void
describe_table(SyncRow *s, OutboxTable *t)
{
	Relation	rel = try_relation_open(s->target, RowExclusiveLock);
	TupleDesc	desc;

	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the foreign table of outbox sync \"%s\" was dropped with changes not delivered",
						s->name),
				 errhint("Drop the sync with pgpoly.drop_sync(%s): its changes cannot be delivered.",
						 quote_literal_cstr(s->name))));
	desc = RelationGetDescr(rel);
	t->relid = s->target;
	t->rel = SyncQualifiedName(s->target);
	t->natts = desc->natts;
	t->live = palloc0(sizeof(bool) * Max(t->natts, 1));
	t->names = palloc0(sizeof(char *) * Max(t->natts, 1));
	t->convs = palloc0(sizeof(PgpolyConv) * Max(t->natts, 1));
	for (int i = 0; i < t->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);

		if (a->attisdropped)
			continue;
		/* a stored generated column is computed again by the delivery */
		t->live[i] = a->attgenerated == '\0';
		t->names[i] = pstrdup(NameStr(a->attname));
		PgpolyConvInit(&t->convs[i], a->atttypid, a->atttypmod, t->names[i]);
	}
	relation_close(rel, NoLock);
	t->key_att = s->target_key_att;
	(void) live_column(t->relid, t->key_att);
	t->key_eq = SyncEqualityOperator(getBaseType(t->convs[t->key_att - 1].typid));
	t->key_match = key_match_kind(t->relid, t->key_att);
	t->event_att = event_column(t->relid);
}

/* A change of t without columns. */
static OutboxRow *
new_row(OutboxTable *t, char *key, char op, Oid userid, int order)
{
	OutboxRow  *r = palloc0(sizeof(OutboxRow));

	r->key = key;
	r->op = op;
	r->userid = userid;
	r->set = palloc0(sizeof(bool) * Max(t->natts, 1));
	r->vals = palloc0(sizeof(char *) * Max(t->natts, 1));
	r->order = order;
	r->park = -1;
	return r;
}

/*
 * The changes of one queue entry (a row of QUEUE_COLUMNS), appended to
 * rows from position *n on (the caller made room for them).  Values of
 * columns dropped since are left out.
 */
static void
decode_entry(OutboxTable *t, HeapTuple tup, TupleDesc desc, OutboxRow **rows, int *n)
{
	bool		isnull;
	Datum	   *keys;
	int			nkeys;
	char		op = DatumGetChar(SPI_getbinval(tup, desc, 3, &isnull));
	Oid			userid = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
	Datum		d;
	int16	   *cols = NULL;
	int			ncols = 0;
	Datum	   *vals = NULL;
	bool	   *vnulls = NULL;
	int			nvals;

	deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, desc, 2, &isnull)),
					  TEXTOID, -1, false, TYPALIGN_INT, &keys, NULL, &nkeys);
	d = SPI_getbinval(tup, desc, 5, &isnull);
	if (!isnull)
	{
		ArrayType  *a = DatumGetArrayTypeP(d);

		ncols = ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));
		cols = (int16 *) ARR_DATA_PTR(a);
	}
	d = SPI_getbinval(tup, desc, 6, &isnull);
	if (!isnull)
		deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
						  &vals, &vnulls, &nvals);
	for (int i = 0; i < nkeys; i++)
	{
		OutboxRow  *r = new_row(t, TextDatumGetCString(keys[i]), op, userid, *n);

		for (int j = 0; vals && j < ncols; j++)
		{
			AttrNumber	att = cols[j];

			if (att < 1 || att > t->natts || !t->live[att - 1] || att == t->key_att)
				continue;
			r->set[att - 1] = true;
			if (!vnulls[i * ncols + j])
				r->vals[att - 1] = TextDatumGetCString(vals[i * ncols + j]);
		}
		rows[(*n)++] = r;
	}
}

/* Whether upsert a is older than upsert b by t's newest-wins column. */
static bool
older(OutboxTable *t, OutboxRow *a, OutboxRow *b)
{
	PgpolyConv *conv = &t->convs[t->event_att - 1];
	char	   *x = a->vals[t->event_att - 1];
	char	   *y = b->vals[t->event_att - 1];

	if (x == NULL || y == NULL)
		return false;
	return DatumGetTimestampTz(PgpolyServerTextToDatum(conv, x, strlen(x))) <
		DatumGetTimestampTz(PgpolyServerTextToDatum(conv, y, strlen(y)));
}

/* Whether op upserts. */
static inline bool
is_upsert(char op)
{
	return op == PGPOLY_CHANGE_UPSERT || op == CHANGE_UPSERT_ALWAYS;
}

/*
 * Compose change ch (a later one, or several composed) onto st, the state
 * of the same key so far (see the file header).
 */
static void
compose(OutboxTable *t, OutboxRow *st, OutboxRow *ch)
{
	bool		always;

	switch (ch->op)
	{
		case PGPOLY_CHANGE_DELETE:
			st->op = PGPOLY_CHANGE_DELETE;
			memset(st->set, 0, sizeof(bool) * t->natts);
			break;
		case PGPOLY_CHANGE_UPDATE:
			if (st->op == PGPOLY_CHANGE_DELETE)
				return;			/* no row to update */
			for (int i = 0; i < t->natts; i++)
				if (ch->set[i])
				{
					st->set[i] = true;
					st->vals[i] = ch->vals[i];
				}
			break;
		default:
			if (t->event_att && is_upsert(st->op) && older(t, ch, st))
				return;			/* newest wins */
			/* after a delete, the stored value is gone: nothing to compare */
			always = st->op == PGPOLY_CHANGE_DELETE || st->op == CHANGE_UPSERT_ALWAYS ||
				ch->op == CHANGE_UPSERT_ALWAYS;
			st->op = always && t->event_att ? CHANGE_UPSERT_ALWAYS : PGPOLY_CHANGE_UPSERT;
			memcpy(st->set, ch->set, sizeof(bool) * t->natts);
			memcpy(st->vals, ch->vals, sizeof(char *) * t->natts);
			break;
	}
	st->userid = ch->userid;
}

/* A copy of r (its own column arrays). */
static OutboxRow *
copy_row(OutboxTable *t, OutboxRow *r)
{
	OutboxRow  *c = new_row(t, r->key, r->op, r->userid, r->order);

	memcpy(c->set, r->set, sizeof(bool) * t->natts);
	memcpy(c->vals, r->vals, sizeof(char *) * t->natts);
	return c;
}

/* qsort comparator: by key, then batch order. */
static int
compare_rows(const void *a, const void *b)
{
	OutboxRow  *x = *(OutboxRow *const *) a;
	OutboxRow  *y = *(OutboxRow *const *) b;
	int			c = strcmp(x->key, y->key);

	return c != 0 ? c : (x->order > y->order) - (x->order < y->order);
}

/*
 * The index of the last link of key's chain among the sorted isolated rows
 * (where a later change of key is parked), or -1.
 */
static int
isolated_index(OutboxBatch *ob, const char *key)
{
	int			lo = 0;
	int			hi = ob->nisolated - 1;
	int			found = -1;

	while (lo <= hi)
	{
		int			mid = (lo + hi) / 2;
		int			c = strcmp(key, ob->isolated[mid]->key);

		if (c == 0)
			found = mid;
		if (c < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return found;
}

/* Add a key and its change to the batch. */
static void
batch_add_row(Batch *b, OutboxRow *r)
{
	if (b->nkeys == b->maxkeys)
	{
		b->maxkeys = Max(64, b->maxkeys * 2);
		b->keys = b->keys ? repalloc(b->keys, sizeof(char *) * b->maxkeys) :
			palloc(sizeof(char *) * b->maxkeys);
		b->items = b->items ? repalloc(b->items, sizeof(void *) * b->maxkeys) :
			palloc(sizeof(void *) * b->maxkeys);
	}
	b->keys[b->nkeys] = r->key;
	b->items[b->nkeys++] = r;
}

/* Add a queue entry's id to the batch. */
static void
batch_add_entry_id(Batch *b, int64 id)
{
	b->entry_ids = b->entry_ids ?
		repalloc(b->entry_ids, sizeof(int64) * (b->nentries + 1)) : palloc(sizeof(int64));
	b->entry_ids[b->nentries++] = id;
}

/* Note an entry's queued_at and attempts in the batch. */
static void
batch_note_age(Batch *b, HeapTuple tup, TupleDesc desc)
{
	bool		isnull;
	TimestampTz queued_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 7, &isnull));

	if (b->nentries == 1 || queued_at < b->queued_at)
		b->queued_at = queued_at;
	b->attempts = Max(b->attempts, DatumGetInt32(SPI_getbinval(tup, desc, 8, &isnull)));
}

/* The sync's isolated entries, by age (one key each); rows gets them. */
static int
read_isolated(SyncRow *s, OutboxTable *t, OutboxRow ***rows, SPITupleTable **tuples)
{
	Oid			type = INT4OID;
	Datum		arg = Int32GetDatum(s->id);
	int			n = 0;

	spi_execute_in(CurrentMemoryContext,
				   "SELECT " QUEUE_COLUMNS " FROM pgpoly.sync_queue "
				   "WHERE sync_id = $1 AND isolated ORDER BY queued_at, entry_id",
				   1, &type, &arg, SPI_OK_SELECT);
	*tuples = SPI_tuptable;
	*rows = palloc(sizeof(OutboxRow *) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
		decode_entry(t, SPI_tuptable->vals[i], SPI_tuptable->tupdesc, *rows, &n);
	if ((uint64) n != SPI_processed)
		elog(ERROR, "an isolated outbox entry of sync \"%s\" holds more than one key", s->name);
	return n;
}

/*
 * Take the oldest group of isolated entries that is due into b; note when
 * the others are.  The first link of a chain is due as its not_before says
 * (a link whose predecessor is gone: at once), the others wait.  Returns
 * whether a group was taken.
 */
static bool
take_group(Batch *b, OutboxRow **rows, SPITupleTable *tt, int n, TimestampTz now)
{
	bool		isnull;
	int64		grp = 0;
	bool		found = false;

	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = tt->vals[i];
		Datum		nb = SPI_getbinval(tup, tt->tupdesc, 9, &isnull);

		if (rows[i]->waiting)
			continue;			/* behind an earlier change of its key */
		if (!isnull && !rows[i]->link && DatumGetTimestampTz(nb) > now)
		{
			if (b->next_retry == 0 || DatumGetTimestampTz(nb) < b->next_retry)
				b->next_retry = DatumGetTimestampTz(nb);
			continue;
		}
		if (!found)
		{
			grp = DatumGetInt64(SPI_getbinval(tup, tt->tupdesc, 10, &isnull));
			found = true;
		}
		if (DatumGetInt64(SPI_getbinval(tup, tt->tupdesc, 10, &isnull)) != grp)
		{
			b->more = true;
			continue;
		}
		batch_add_entry_id(b, DatumGetInt64(SPI_getbinval(tup, tt->tupdesc, 1, &isnull)));
		batch_note_age(b, tup, tt->tupdesc);
		batch_add_row(b, rows[i]);
	}
	b->isolated = found;
	return found;
}

/*
 * qsort comparator of isolated rows: by key, then in chain order (the
 * entry retried or due first, then the waiting links in the order they
 * were parked).
 */
static int
compare_links(const void *a, const void *b)
{
	OutboxRow  *x = *(OutboxRow *const *) a;
	OutboxRow  *y = *(OutboxRow *const *) b;
	int			c = strcmp(x->key, y->key);

	if (c != 0)
		return c;
	if (x->link != y->link)
		return x->link ? 1 : -1;
	return (x->entry_id > y->entry_id) - (x->entry_id < y->entry_id);
}

/*
 * Note each isolated row's entry and whether it is a waiting link; sort a
 * copy of rows (read in tuple order, which rows keeps) by key and chain
 * into ob, and mark the rows behind another of their key as waiting.
 */
static void
index_isolated(OutboxBatch *ob, OutboxRow **rows, SPITupleTable *tt, int n)
{
	bool		isnull;

	ob->nisolated = n;
	ob->isolated = palloc(sizeof(OutboxRow *) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		Datum		nb = SPI_getbinval(tt->vals[i], tt->tupdesc, 9, &isnull);

		rows[i]->link = !isnull && TIMESTAMP_IS_NOEND(DatumGetTimestampTz(nb));
		rows[i]->entry_id = DatumGetInt64(SPI_getbinval(tt->vals[i], tt->tupdesc, 1, &isnull));
		ob->isolated[i] = rows[i];
	}
	qsort(ob->isolated, n, sizeof(OutboxRow *), compare_links);
	for (int i = 1; i < n; i++)
		ob->isolated[i]->waiting = strcmp(ob->isolated[i]->key, ob->isolated[i - 1]->key) == 0;
}

/* A key of the batch being read and who changed it last (key_writers). */
typedef struct KeyWriter
{
	uint64		hash;			/* of the key's text */
	Oid			writer;			/* of its last change so far */
	bool		update;			/* an update of it joined */
} KeyWriter;

/* The writers of the keys of a batch being read, by key hash. */
static HTAB *
key_writers(void)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(KeyWriter);
	ctl.hcxt = CurrentMemoryContext;
	return hash_create("pgpoly outbox key writers", 256, &ctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/*
 * Whether the changes rows[0..n-1] of one entry (one writer and kind) may
 * join the batch whose keys' writers are in writers.  Not when one of them
 * is an update of a key changed earlier in the batch by another writer:
 * composed, both would be delivered as the later writer, who may lack the
 * rights the earlier change needs (a writer allowed to UPDATE one column
 * is refused the INSERT of the upsert its update joined, and both changes
 * end in the dead letters).  Nor, in a newest-wins table (t's event_att),
 * any change of a key that an update changed earlier in the batch, or an
 * update of a key changed earlier: an upsert is delivered only if not
 * older than the stored value, an update always, so composed with an
 * upsert the update would be lost with a late one (or its event time, a
 * backdated one, decide whether a newer one arrives).  The entry then
 * starts the next batch, which reads the store as the first one left it.
 * Otherwise an upsert or a delete replaces what came before and may
 * always join.  Notes the keys' writers when the entry joins.
 */
static bool
entry_may_join(OutboxTable *t, HTAB *writers, OutboxRow **rows, int n)
{
	bool		update = n > 0 && rows[0]->op == PGPOLY_CHANGE_UPDATE;

	for (int i = 0; i < n && (update || t->event_att); i++)
	{
		uint64		h = hash_bytes_extended((const unsigned char *) rows[i]->key,
											strlen(rows[i]->key), 0);
		KeyWriter  *e = hash_search(writers, &h, HASH_FIND, NULL);

		if (e == NULL)
			continue;
		if (update && e->writer != rows[i]->userid)
			return false;
		if (t->event_att && (update || e->update))
			return false;
	}
	for (int i = 0; i < n; i++)
	{
		uint64		h = hash_bytes_extended((const unsigned char *) rows[i]->key,
											strlen(rows[i]->key), 0);
		bool		found;
		KeyWriter  *e = hash_search(writers, &h, HASH_ENTER, &found);

		e->writer = rows[i]->userid;
		e->update = (found && e->update) || update;
	}
	return true;
}

/*
 * Read the sync's oldest entries up to pgpoly.sync_batch_size changes; *n
 * gets how many changes.
 */
static OutboxRow **
read_entries(SyncRow *s, Batch *b, OutboxTable *t, int *n)
{
	Oid			type = INT4OID;
	Datum		arg = Int32GetDatum(s->id);
	int			max = pgpoly_sync_batch_size + SYNC_CHUNK_KEYS;
	OutboxRow **rows = palloc(sizeof(OutboxRow *) * max);
	Portal		portal;
	bool		isnull;
	MemoryContext cxt = CurrentMemoryContext;

	HTAB	   *writers = key_writers();

	*n = 0;
	portal = SPI_cursor_open_with_args(NULL,
									   "SELECT " QUEUE_COLUMNS " FROM pgpoly.sync_queue "
									   "WHERE sync_id = $1 AND NOT isolated ORDER BY entry_id",
									   1, &type, &arg, NULL, true, 0);
	while (*n < pgpoly_sync_batch_size)
	{
		int			first = *n;

		SPI_cursor_fetch(portal, true, 1);
		MemoryContextSwitchTo(cxt);
		if (SPI_processed == 0)
			break;
		if (*n + SYNC_CHUNK_KEYS > max)
			rows = repalloc(rows, sizeof(OutboxRow *) * (max *= 2));
		decode_entry(t, SPI_tuptable->vals[0], SPI_tuptable->tupdesc, rows, n);
		if (!entry_may_join(t, writers, rows + first, *n - first))
		{
			*n = first;			/* it starts the next batch */
			b->more = true;
			SPI_freetuptable(SPI_tuptable);
			MemoryContextSwitchTo(cxt);
			break;
		}
		batch_add_entry_id(b, DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
														  SPI_tuptable->tupdesc, 1, &isnull)));
		batch_note_age(b, SPI_tuptable->vals[0], SPI_tuptable->tupdesc);
		SPI_freetuptable(SPI_tuptable);
		MemoryContextSwitchTo(cxt);
	}
	hash_destroy(writers);
	if (*n >= pgpoly_sync_batch_size)
		b->more = true;
	SPI_cursor_close(portal);
	MemoryContextSwitchTo(cxt);
	return rows;
}

/*
 * Compose the n changes per key; keys with an isolated entry are parked,
 * the others go into the batch (by key).
 */
static void
compose_batch(Batch *b, OutboxBatch *ob, OutboxRow **rows, int n)
{
	qsort(rows, n, sizeof(OutboxRow *), compare_rows);
	for (int i = 0; i < n;)
	{
		OutboxRow  *st = copy_row(&ob->t, rows[i]);
		int			j = i + 1;

		for (; j < n && strcmp(rows[j]->key, st->key) == 0; j++)
			compose(&ob->t, st, rows[j]);
		st->park = isolated_index(ob, st->key);
		if (st->park >= 0)
			ob->parked = lappend(ob->parked, st);
		else
			batch_add_row(b, st);
		i = j;
	}
}

/*
 * Read the next batch of outbox sync s into b (in cxt): the oldest group
 * of isolated entries that is due, or else the oldest entries composed per
 * key.
 */
void
SyncOutboxFetch(SyncRow *s, Batch *b, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	OutboxBatch *ob = palloc0(sizeof(OutboxBatch));
	OutboxRow **isolated;
	SPITupleTable *tt;
	int			n;
	Oid			type = INT4OID;
	Datum		arg = Int32GetDatum(s->id);

	b->outbox = ob;
	spi_execute_in(cxt, "SELECT 1 FROM pgpoly.sync_queue WHERE sync_id = $1 LIMIT 1",
				   1, &type, &arg, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		MemoryContextSwitchTo(old);
		return;
	}
	describe_table(s, &ob->t);
	n = read_isolated(s, &ob->t, &isolated, &tt);
	index_isolated(ob, isolated, tt, n);
	if (!take_group(b, isolated, tt, n, GetCurrentTimestamp()))
	{
		OutboxRow **rows;
		int			nrows;

		rows = read_entries(s, b, &ob->t, &nrows);
		compose_batch(b, ob, rows, nrows);
	}
	SPI_freetuptable(tt);
	MemoryContextSwitchTo(old);
}

/* The columns r writes, key first; returns how many. */
static int
row_columns(OutboxTable *t, OutboxRow *r, AttrNumber *atts)
{
	int			n = 0;

	atts[n++] = t->key_att;
	if (r->op == PGPOLY_CHANGE_DELETE)
		return n;
	for (int i = 0; i < t->natts; i++)
		if (r->set[i])
			atts[n++] = i + 1;
	return n;
}

/* Whether r and g deliver together: one writer, kind and set of columns. */
static bool
same_group(OutboxTable *t, OutboxRow *r, OutboxRow *g)
{
	return r->userid == g->userid && r->op == g->op &&
		memcmp(r->set, g->set, sizeof(bool) * t->natts) == 0;
}

/* The datum of text s of column att (key: the row's key). */
static Datum
value_datum(OutboxTable *t, AttrNumber att, const char *s)
{
	return PgpolyServerTextToDatum(&t->convs[att - 1], s, strlen(s));
}

/* The keys of rows as an array of the key type. */
static Datum
key_array(OutboxTable *t, OutboxRow **rows, int n, Oid *array_type)
{
	PgpolyConv *conv = &t->convs[t->key_att - 1];
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	int16		len;
	bool		byval;
	char		align;

	*array_type = get_array_type(conv->typid);
	if (!OidIsValid(*array_type))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("the key column of %s has a type without an array type", t->rel)));
	for (int i = 0; i < n; i++)
		d[i] = value_datum(t, t->key_att, rows[i]->key);
	get_typlenbyvalalign(conv->typid, &len, &byval, &align);
	return PointerGetDatum(construct_array(d, n, conv->typid, len, byval, align));
}

/*
 * The keys of rows as the parameter key_compare() compares them with: an
 * array of their fixed texts for KEY_MATCH_TEXT, else of the key type.
 */
static Datum
key_param(OutboxTable *t, OutboxRow **rows, int n, Oid *array_type)
{
	char	  **keys;

	if (t->key_match != KEY_MATCH_TEXT)
		return key_array(t, rows, n, array_type);
	keys = palloc(sizeof(char *) * Max(n, 1));
	for (int i = 0; i < n; i++)
		keys[i] = rows[i]->key;
	*array_type = TEXTARRAYOID;
	return text_array(keys, n, 1, &n);
}

/*
 * The rows as an array of the table's row type: the key and the columns
 * each writes (NULL elsewhere).  Any column type travels this way, arrays
 * included.
 */
static Datum
row_array(OutboxTable *t, TupleDesc desc, OutboxRow **rows, int n, Oid *array_type)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *values = palloc(sizeof(Datum) * Max(desc->natts, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(desc->natts, 1));

	*array_type = get_array_type(desc->tdtypeid);
	if (!OidIsValid(*array_type))
		elog(ERROR, "the row type of %s has no array type", t->rel);
	for (int i = 0; i < n; i++)
	{
		for (int j = 0; j < desc->natts; j++)
		{
			const char *s = j + 1 == t->key_att ? rows[i]->key :
				(j < t->natts && rows[i]->set[j]) ? rows[i]->vals[j] : NULL;

			nulls[j] = s == NULL;
			values[j] = s ? value_datum(t, j + 1, s) : (Datum) 0;
		}
		d[i] = heap_copy_tuple_as_datum(heap_form_tuple(desc, values, nulls), desc);
	}
	return PointerGetDatum(construct_array(d, n, desc->tdtypeid, -1, false, TYPALIGN_DOUBLE));
}

/* "a, b, ..." of the columns atts[from..n-1], each formatted with fmt. */
static char *
column_list(OutboxTable *t, AttrNumber *atts, int from, int n, const char *fmt)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = from; i < n; i++)
	{
		const char *c = quote_identifier(t->names[atts[i] - 1]);

		if (i > from)
			appendStringInfoString(&buf, ", ");
		appendStringInfo(&buf, fmt, c, c);
	}
	return buf.data;
}

/*
 * The SQL delivering a group of kind op writing the columns atts (key
 * first): $1 is an array of the table's rows (a delete: of the keys), $2
 * of the keys.
 */
static char *
group_sql(OutboxTable *t, char op, AttrNumber *atts, int n)
{
	const char *k = quote_identifier(t->names[t->key_att - 1]);
	const char *tk = psprintf("t.%s", k);
	const char *rk = psprintf("r.%s", k);
	const char *e;

	switch (op)
	{
		case PGPOLY_CHANGE_DELETE:
			return psprintf("DELETE FROM %s WHERE %s", t->rel,
							key_compare(t, k, "ANY ($1)", true));
		case PGPOLY_CHANGE_UPDATE:
			return psprintf("UPDATE %s t SET %s FROM pg_catalog.unnest($1) AS r "
							"WHERE %s AND %s",
							t->rel, column_list(t, atts, 1, n, "%s = r.%s"),
							key_compare(t, tk, "ANY ($2)", true),
							key_compare(t, tk, rk, false));
		case PGPOLY_CHANGE_UPSERT:
			if (t->event_att == 0)
				break;
			/* newest wins: not over a newer stored value */
			e = quote_identifier(t->names[t->event_att - 1]);
			return psprintf("INSERT INTO %s (%s) SELECT %s FROM pg_catalog.unnest($1) AS r "
							"LEFT JOIN %s s ON %s "
							"WHERE s.%s IS NULL OR s.%s IS NULL OR r.%s IS NULL "
							"OR r.%s OPERATOR(pg_catalog.>=) s.%s",
							t->rel, column_list(t, atts, 0, n, "%s"),
							column_list(t, atts, 0, n, "r.%s"),
							t->rel, key_compare(t, psprintf("s.%s", k), rk, false),
							k, e, e, e, e);
		default:
			break;
	}
	return psprintf("INSERT INTO %s (%s) SELECT %s FROM pg_catalog.unnest($1) AS r",
					t->rel, column_list(t, atts, 0, n, "%s"),
					column_list(t, atts, 0, n, "r.%s"));
}

/* The SPI result of a group's statement. */
static int
group_result(char op)
{
	return op == PGPOLY_CHANGE_DELETE ? SPI_OK_DELETE :
		op == PGPOLY_CHANGE_UPDATE ? SPI_OK_UPDATE : SPI_OK_INSERT;
}

/* Deliver n changes of one group, as their writer. */
static void
deliver_group(OutboxTable *t, TupleDesc desc, OutboxRow **rows, int n)
{
	AttrNumber *atts = palloc(sizeof(AttrNumber) * (t->natts + 1));
	int			ncols = row_columns(t, rows[0], atts);
	Oid			types[2];
	Datum		values[2];
	int			nargs = 1;
	Oid			userid = rows[0]->userid;
	Oid			save_user;
	int			save_sec;

	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(userid)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role %u, which wrote the change of key \"%s\", no longer exists",
						userid, rows[0]->key)));
	if (rows[0]->op == PGPOLY_CHANGE_DELETE)
		values[0] = key_param(t, rows, n, &types[0]);
	else
		values[0] = row_array(t, desc, rows, n, &types[0]);
	if (rows[0]->op == PGPOLY_CHANGE_UPDATE)
		values[nargs++] = key_param(t, rows, n, &types[1]);
	SyncBecome(userid, true, &save_user, &save_sec);
	SyncExecute(group_sql(t, rows[0]->op, atts, ncols), nargs, types, values, NULL,
				group_result(rows[0]->op));
	SetUserIdAndSecContext(save_user, save_sec);
}

/*
 * The triggers and rules of rel ran with the statements that made the
 * changes (a BEFORE ROW trigger's values are in them): delivering the
 * changes must not run them again, or a trigger appending to a value would
 * append twice and an audit trigger log each change twice.  So rel's
 * changes are delivered with session_replication_role 'replica', as a
 * logical replication apply worker applies rows (triggers and rules
 * enabled ALWAYS or REPLICA still fire).  Returns the GUC nest level to
 * end after the delivery (an ERROR ends it too), or 0 when rel has none.
 */
static int
replica_role(Relation rel)
{
	int			level;

	if (rel->trigdesc == NULL && !rel->rd_rel->relhasrules)
		return 0;
	level = NewGUCNestLevel();
	(void) set_config_option("session_replication_role", "replica", PGC_SUSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	return level;
}

/* Deliver each group of one writer, kind and columns of b's changes. */
static void
deliver_groups(OutboxTable *t, TupleDesc desc, Batch *b)
{
	OutboxRow **group = palloc(sizeof(OutboxRow *) * Max(b->nkeys, 1));
	bool	   *done = palloc0(sizeof(bool) * Max(b->nkeys, 1));

	PgpolyDeliveringChanges(true);
	PG_TRY();
	{
		for (int i = 0; i < b->nkeys; i++)
		{
			int			n = 0;

			if (done[i])
				continue;
			for (int j = i; j < b->nkeys; j++)
				if (!done[j] && same_group(t, b->items[j], b->items[i]))
				{
					group[n++] = b->items[j];
					done[j] = true;
				}
			deliver_group(t, desc, group, n);
		}
	}
	PG_FINALLY();
	{
		PgpolyDeliveringChanges(false);
	}
	PG_END_TRY();
}

/*
 * Deliver the batch's changes: each group of one writer, kind and columns
 * with one statement on the target, as that writer.
 */
void
SyncOutboxDeliver(SyncRow *s, Batch *b)
{
	Relation	rel = relation_open(b->outbox->t.relid, AccessShareLock);
	int			level = replica_role(rel);

	deliver_groups(&b->outbox->t, RelationGetDescr(rel), b);
	if (level > 0)
		AtEOXact_GUC(true, level);
	relation_close(rel, AccessShareLock);
}

/* Arguments of an entry holding one change r (see entry_values). */
#define ENTRY_ARGS 5

/* keys, op, userid, cols, vals of an entry holding r alone. */
static void
entry_values(OutboxTable *t, OutboxRow *r, Datum *values, char *nulls)
{
	AttrNumber *atts = palloc(sizeof(AttrNumber) * (t->natts + 1));
	int			n = row_columns(t, r, atts) - 1;
	char	  **vals = palloc(sizeof(char *) * Max(n, 1));
	int			one = 1;
	int			dims[2] = {1, n};

	for (int i = 0; i < n; i++)
		vals[i] = r->vals[atts[i + 1] - 1];
	values[0] = text_array(&r->key, 1, 1, &one);
	values[1] = CharGetDatum(r->op);
	values[2] = ObjectIdGetDatum(r->userid);
	values[3] = SyncAttnumArray(atts + 1, n);
	values[4] = n > 0 ? text_array(vals, n, 2, dims) : (Datum) 0;
	memset(nulls, ' ', ENTRY_ARGS);
	if (r->op == PGPOLY_CHANGE_DELETE)
		nulls[3] = 'n';
	if (n == 0)
		nulls[4] = 'n';
}

/* A new value of the queue's sequence (entry ids and groups). */
static Datum
queue_nextval(void)
{
	bool		isnull;

	SyncExecute("SELECT pg_catalog.nextval(pg_catalog.pg_get_serial_sequence("
				"'pgpoly.sync_queue', 'entry_id'))", 0, NULL, NULL, NULL, SPI_OK_SELECT);
	return SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
}

/* Arguments of queue_isolated after the ENTRY_ARGS of the change. */
#define ISOLATED_ARGS (ENTRY_ARGS + 5)

/*
 * Queue change r of sync_id alone as an isolated entry of group grp, as
 * old as queued_at, with attempts, not delivered before not_before (0: at
 * once; DT_NOEND: a link waiting for the earlier changes of its key).
 */
static void
queue_isolated(OutboxTable *t, OutboxRow *r, int32 sync_id, TimestampTz queued_at,
			   int attempts, TimestampTz not_before, Datum grp)
{
	Oid			types[ISOLATED_ARGS] = {TEXTARRAYOID, CHAROID, REGROLEOID, INT2ARRAYOID,
	TEXTARRAYOID, INT4OID, TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID, INT8OID};
	Datum		values[ISOLATED_ARGS];
	char		nulls[ISOLATED_ARGS];

	entry_values(t, r, values, nulls);
	memset(nulls + ENTRY_ARGS, ' ', ISOLATED_ARGS - ENTRY_ARGS);
	values[ENTRY_ARGS] = Int32GetDatum(sync_id);
	values[ENTRY_ARGS + 1] = TimestampTzGetDatum(queued_at);
	values[ENTRY_ARGS + 2] = Int32GetDatum(attempts);
	values[ENTRY_ARGS + 3] = TimestampTzGetDatum(not_before);
	if (not_before == 0)
		nulls[ENTRY_ARGS + 3] = 'n';
	values[ENTRY_ARGS + 4] = grp;
	if (SPI_execute_plan(saved_plan(&IsolatedPlan,
									"INSERT INTO pgpoly.sync_queue (keys, op, userid, cols, vals, "
									"sync_id, queued_at, attempts, not_before, isolated, grp) "
									"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, true, $10)",
									ISOLATED_ARGS, types),
						 values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "queueing an isolated outbox change failed");
}

/*
 * Park change p behind iso, the last link of its key's chain: composed
 * into it when both are one writer's, else queued as the next link (one
 * of group *grp, taken when the batch's first link is made).  In a
 * newest-wins table an update and the change after one are links of their
 * own too (see entry_may_join).  b: the batch whose changes are parked.
 */
static void
park_change(SyncRow *s, Batch *b, OutboxRow *iso, OutboxRow *p, Datum *grp)
{
	OutboxTable *t = &b->outbox->t;
	Oid			types[ENTRY_ARGS + 1] = {TEXTARRAYOID, CHAROID, REGROLEOID, INT2ARRAYOID,
	TEXTARRAYOID, INT8OID};
	Datum		values[ENTRY_ARGS + 1];
	char		nulls[ENTRY_ARGS + 1];

	if (iso->userid != p->userid ||
		(t->event_att && (p->op == PGPOLY_CHANGE_UPDATE || iso->op == PGPOLY_CHANGE_UPDATE)))
	{
		if (*grp == (Datum) 0)
			*grp = queue_nextval();
		queue_isolated(t, p, s->id, b->queued_at, 0, DT_NOEND, *grp);
		return;
	}
	compose(t, iso, p);
	entry_values(t, iso, values, nulls);
	values[ENTRY_ARGS] = Int64GetDatum(iso->entry_id);
	nulls[ENTRY_ARGS] = ' ';
	SyncExecute("UPDATE pgpoly.sync_queue SET keys = $1, op = $2, userid = $3, "
				"cols = $4, vals = $5 WHERE entry_id = $6",
				ENTRY_ARGS + 1, types, values, nulls, SPI_OK_UPDATE);
}

/*
 * Dequeue the batch's entries and park the changes of keys with isolated
 * entries behind them (after a delivery, or when it failed and its
 * changes are queued again).
 */
void
SyncOutboxConsume(SyncRow *s, Batch *b)
{
	OutboxBatch *ob = b->outbox;
	Oid			types[2] = {INT4OID, INT8ARRAYOID};
	Datum		values[2];
	Datum	   *ids = palloc(sizeof(Datum) * Max(b->nentries, 1));
	Datum		grp = (Datum) 0;
	ListCell   *lc;

	for (int i = 0; i < b->nentries; i++)
		ids[i] = Int64GetDatum(b->entry_ids[i]);
	values[0] = Int32GetDatum(s->id);
	values[1] = PointerGetDatum(construct_array(ids, b->nentries, INT8OID, 8,
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	SyncExecute("DELETE FROM pgpoly.sync_queue WHERE sync_id = $1 AND entry_id = ANY ($2)",
				2, types, values, NULL, SPI_OK_DELETE);
	foreach(lc, ob->parked)
	{
		OutboxRow  *p = lfirst(lc);

		park_change(s, b, ob->isolated[p->park], p, &grp);
	}
}

/*
 * Queue the changes of part (of batch b) again, as isolated entries of one
 * new group: as old as queued_at, with attempts, not delivered before
 * not_before (0: at once).
 */
void
SyncOutboxRequeue(SyncRow *s, Batch *b, Batch *part, TimestampTz queued_at,
				  int attempts, TimestampTz not_before)
{
	Datum		grp = queue_nextval();

	for (int i = 0; i < part->nkeys; i++)
		queue_isolated(&b->outbox->t, part->items[i], s->id, queued_at, attempts,
					   not_before, grp);
}

/* The name of a change's kind in the dead letters. */
static const char *
op_name(char op)
{
	return op == PGPOLY_CHANGE_DELETE ? "delete" :
		op == PGPOLY_CHANGE_UPDATE ? "update" : "upsert";
}

/* The columns r writes as a jsonb object of their fixed texts, or NULL. */
static Datum
row_payload(OutboxTable *t, OutboxRow *r, bool *isnull)
{
	StringInfoData buf;
	bool		first = true;

	*isnull = r->op == PGPOLY_CHANGE_DELETE;
	if (*isnull)
		return (Datum) 0;
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int i = 0; i < t->natts; i++)
	{
		if (!r->set[i])
			continue;
		if (!first)
			appendStringInfoChar(&buf, ',');
		first = false;
		PgpolyJsonEscape(&buf, t->names[i], strlen(t->names[i]));
		appendStringInfoChar(&buf, ':');
		if (r->vals[i])
			PgpolyJsonEscape(&buf, r->vals[i], strlen(r->vals[i]));
		else
			appendStringInfoString(&buf, "null");
	}
	appendStringInfoChar(&buf, '}');
	return PgpolyJsonbFromText(buf.data, buf.len);
}

/*
 * Move the single change of batch b to the dead letters: its kind, the
 * columns it writes (as a jsonb object of their texts) and its writer.
 */
void
SyncOutboxBury(SyncRow *s, Batch *b, const char *error, int attempts)
{
	OutboxRow  *r = b->items[0];
	Oid			types[7] = {INT4OID, TEXTOID, TEXTOID, JSONBOID, TEXTOID, INT4OID, REGROLEOID};
	Datum		values[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;

	values[0] = Int32GetDatum(s->id);
	values[1] = CStringGetTextDatum(r->key);
	values[2] = CStringGetTextDatum(op_name(r->op));
	values[3] = row_payload(&b->outbox->t, r, &isnull);
	nulls[3] = isnull ? 'n' : ' ';
	values[4] = CStringGetTextDatum(error);
	values[5] = Int32GetDatum(attempts);
	values[6] = ObjectIdGetDatum(r->userid);
	SyncExecute("INSERT INTO pgpoly.sync_dead_letters "
				"(name, key, op, payload, error, attempts, sync_id, owner, writer) "
				"SELECT name, $2, $3, $4, $5, $6, sync_id, owner, $7 "
				"FROM pgpoly.syncs WHERE sync_id = $1", 7, types, values, nulls, SPI_OK_INSERT);
}
