/*-------------------------------------------------------------------------
 *
 * sync_worker.c
 *		  The sync worker: delivers the queued changes of every sync of one
 *		  database, batch by batch.
 *
 * Each batch is one short transaction: it reads up to pgpoly.sync_batch_size
 * queued keys of one sync (oldest first), delivers them as the sync's owner
 * (sync.c: upsert the rows present, delete the keys gone), deletes the queue
 * entries and COMMITs.  The batches of an outbox table's sync carry row
 * changes, which sync_outbox.c reads, delivers as their writers and
 * dequeues; the failure handling below is the same for both kinds.  With write_mode 'transactional' the target's store
 * receives the writes at pre-commit, so the entries are deleted exactly
 * when the store acknowledged them; if the worker dies between the store's
 * acknowledgement and the local commit, the entries stay and are delivered
 * again, which has no further effect (each delivery re-reads the source).
 * No snapshot is held between batches.
 *
 * Failures are classified by SQLSTATE:
 *	- the store is unreachable (class 08, HV00N, timeouts and cancels, 53),
 *	  or the target is there but cannot take writes now (55000: a closed or
 *	  blocked Elasticsearch index):
 *	  the sync waits with exponential backoff (up to
 *	  pgpoly.sync_max_retry_delay), state 'retrying'; a LOG line when it goes
 *	  and when it comes back, never one per change;
 *	- the sync itself cannot work (class 42 or 28: privileges, a dropped
 *	  relation or column, credentials; 2F003, the trust rule; HV00R and
 *	  option errors): the same backoff, state 'failing' (an outbox writer's
 *	  missing privilege or dropped role rejects that writer's changes only);
 *	- anything else is taken as the store rejecting a change: the batch is
 *	  split in halves, queued as isolated entries delivered on their own, down
 *	  to single keys; a single key is retried pgpoly.sync_max_attempts times
 *	  with backoff and then moved to pgpoly.sync_dead_letters.  Other keys
 *	  keep flowing meanwhile.
 * Other syncs of the database are unaffected by one sync's failures.
 *
 * Lock order of a batch: pgpoly.syncs and pgpoly.sync_queue (in the mode it
 * writes them with, before reading them: SyncLockInternalTables), then the
 * sync's source and target (lock_tables), then the sync's row.  ALTER TABLE
 * takes a table before the row, and drop_sync the internal tables, the
 * source and the row, in the same order.
 *
 * Signals: SIGTERM stops the worker after the current batch (a batch
 * waiting on a store is interrupted and rolled back); SIGHUP reloads the
 * configuration.  The worker exits by itself when its database has no
 * syncs left (see sync_launch.c for the lock protocol).
 *
 * src/sync_worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "sync.h"

/* How a sync is doing, as the worker sees it. */
typedef enum SyncHealth
{
	SYNC_OK,
	SYNC_STORE_DOWN,			/* state 'retrying' */
	SYNC_FAILING				/* state 'failing' */
} SyncHealth;

/* What a failure means. */
typedef enum SyncFailure
{
	FAIL_TRANSIENT,				/* retry soon, quietly */
	FAIL_STORE_DOWN,
	FAIL_SYNC,
	FAIL_REJECTED				/* blame the keys of the batch */
} SyncFailure;

/* Per sync, across batches (TopMemoryContext). */
typedef struct SyncRuntime
{
	int32		id;				/* hash key */
	SyncHealth	health;
	int			delay_ms;		/* current backoff */
	TimestampTz retry_at;		/* no batch before this */
	TimestampTz trouble_since;
	bool		seen;			/* still defined in this cycle */
} SyncRuntime;

static volatile sig_atomic_t StopRequested = false;
static volatile sig_atomic_t InDelivery = false;
static HTAB *Runtimes = NULL;
static LOCKTAG WorkerLock;

/*
 * SIGTERM: stop after the current batch; a batch waiting on a store is
 * interrupted (the delivery is rolled back and done again later).
 */
static void
sync_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	StopRequested = true;
	if (InDelivery)
	{
		InterruptPending = true;
		ProcDiePending = true;
	}
	SetLatch(MyLatch);
	errno = save_errno;
}

/*
 * Run fn(arg) in a transaction of its own, connected to SPI.  Returns NULL
 * on success; after an ERROR (also one raised by COMMIT, where the stores
 * flush) the transaction is rolled back and the error returned, copied into
 * the caller's memory context.
 */
static ErrorData *
run_transaction(void (*fn) (void *), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ErrorData  *volatile edata = NULL;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		PushActiveSnapshot(GetTransactionSnapshot());
		fn(arg);
		PopActiveSnapshot();
		SPI_finish();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	return edata;
}

/* "message; detail" of an error, for last_error and dead letters. */
static char *
error_text(ErrorData *e)
{
	if (e->detail)
		return psprintf("%s; %s", e->message, e->detail);
	return pstrdup(e->message);
}

/* Run sql with args (nulls as SPI takes them, or NULL); ERROR unless it returned expect. */
void
SyncExecute(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
		int expect)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (rc != expect)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
}

/* ----------------------------------------------------------------
 *		Loading the syncs
 * ----------------------------------------------------------------
 */

/* Arguments of load_fn. */
typedef struct LoadArgs
{
	MemoryContext cxt;
	List	   *syncs;
} LoadArgs;

/* Read pgpoly.syncs (nothing when the extension is gone) into args->cxt. */
static void
load_fn(void *arg)
{
	LoadArgs   *la = arg;
	Oid			nsp = get_namespace_oid("pgpoly", true);

	if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid("syncs", nsp)))
		return;
	/*
	 * The column names of the relations whose attnums are still the
	 * recorded ones, as they are now (RENAME COLUMN): what a dump carries,
	 * and what a restored sync is mapped by (SyncResolveColumns).
	 */
	if (!RecoveryInProgress())
		SyncExecute("UPDATE pgpoly.syncs s SET source_columns = n.sc, target_columns = n.tc, "
					"source_ref = n.sr, target_ref = n.tr "
					"FROM (SELECT sync_id, pgpoly._sync_columns(source) AS sc, "
					"             pgpoly._sync_columns(target) AS tc, "
					"             pgpoly._sync_ref(source) AS sr, pgpoly._sync_ref(target) AS tr "
					"      FROM pgpoly.syncs) n "
					"WHERE n.sync_id = s.sync_id "
					"AND s.source_ref IS NOT DISTINCT FROM n.sr "
					"AND s.target_ref IS NOT DISTINCT FROM n.tr "
					"AND (s.source_columns IS DISTINCT FROM n.sc "
					"     OR s.target_columns IS DISTINCT FROM n.tc) "
					"OR n.sync_id = s.sync_id AND s.target_ref IS NULL",
					0, NULL, NULL, NULL, SPI_OK_UPDATE);
	/* renamed outbox tables, in sessions that had not loaded pgpoly */
	if (!RecoveryInProgress())
		SyncExecute(SyncFollowNamesSQL, 0, NULL, NULL, NULL, SPI_OK_UPDATE);
	/* outbox tables given to another owner, in such sessions */
	if (!RecoveryInProgress())
		SyncExecute(SyncFollowOwnersSQL, 0, NULL, NULL, NULL, SPI_OK_UPDATE);
	SyncExecute("SELECT sync_id, name, target::pg_catalog.text, source::pg_catalog.oid, "
				"target::pg_catalog.oid, owner::pg_catalog.oid, key_attnum, "
				"target_key_attnum, source_attnums, target_attnums, kind = 'outbox', "
				"COALESCE(source_ref <> pgpoly._sync_ref(source::pg_catalog.oid), false) "
				"OR COALESCE(target_ref <> pgpoly._sync_ref(target::pg_catalog.oid), false), "
				"home IS DISTINCT FROM pgpoly._sync_home() "
				"FROM pgpoly.syncs ORDER BY sync_id", 0, NULL, NULL, NULL, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(la->cxt);
		SyncRow    *s = palloc0(sizeof(SyncRow));
		bool		isnull;
		int			n;

		s->id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		s->name = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
		s->target_name = TextDatumGetCString(SPI_getbinval(tup, desc, 3, &isnull));
		s->source = DatumGetObjectId(SPI_getbinval(tup, desc, 4, &isnull));
		s->target = DatumGetObjectId(SPI_getbinval(tup, desc, 5, &isnull));
		s->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 6, &isnull));
		s->key_att = DatumGetInt16(SPI_getbinval(tup, desc, 7, &isnull));
		s->target_key_att = DatumGetInt16(SPI_getbinval(tup, desc, 8, &isnull));
		s->satts = SyncAttnums(SPI_getbinval(tup, desc, 9, &isnull), &s->ncols);
		s->tatts = SyncAttnums(SPI_getbinval(tup, desc, 10, &isnull), &n);
		s->outbox = DatumGetBool(SPI_getbinval(tup, desc, 11, &isnull));
		s->moved = DatumGetBool(SPI_getbinval(tup, desc, 12, &isnull));
		s->away = DatumGetBool(SPI_getbinval(tup, desc, 13, &isnull));
		la->syncs = lappend(la->syncs, s);
		MemoryContextSwitchTo(old);
	}
}

/*
 * The syncs of this database, in cxt.  *ok is false when reading them
 * failed (logged).
 */
static List *
load_syncs(MemoryContext cxt, bool *ok)
{
	LoadArgs	la = {cxt, NIL};
	ErrorData  *e = run_transaction(load_fn, &la);

	*ok = (e == NULL);
	if (e)
		ereport(LOG,
				(errmsg("pgpoly sync worker could not read its syncs: %s", error_text(e))));
	return la.syncs;
}

/* The worker's state of sync id (created on first use). */
static SyncRuntime *
runtime(int32 id)
{
	bool		found;
	SyncRuntime *rt;

	if (Runtimes == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int32);
		ctl.entrysize = sizeof(SyncRuntime);
		Runtimes = hash_create("pgpoly sync runtimes", 16, &ctl, HASH_ELEM | HASH_BLOBS);
	}
	rt = hash_search(Runtimes, &id, HASH_ENTER, &found);
	if (!found)
	{
		memset(rt, 0, sizeof(*rt));
		rt->id = id;
	}
	rt->seen = true;
	return rt;
}

/* Forget the state of syncs not seen since the last call. */
static void
forget_dropped_syncs(void)
{
	HASH_SEQ_STATUS scan;
	SyncRuntime *rt;

	if (Runtimes == NULL)
		return;
	hash_seq_init(&scan, Runtimes);
	while ((rt = hash_seq_search(&scan)) != NULL)
	{
		if (!rt->seen)
			hash_search(Runtimes, &rt->id, HASH_REMOVE, NULL);
		else
			rt->seen = false;
	}
}

/* ----------------------------------------------------------------
 *		One batch
 * ----------------------------------------------------------------
 */

/* Add key to the batch (duplicates are removed later). */
static void
batch_add_key(Batch *b, char *key)
{
	if (b->nkeys == b->maxkeys)
	{
		b->maxkeys = Max(64, b->maxkeys * 2);
		b->keys = b->keys ? repalloc(b->keys, sizeof(char *) * b->maxkeys) :
			palloc(sizeof(char *) * b->maxkeys);
	}
	b->keys[b->nkeys++] = key;
}

/* Add one queue entry (its id and keys, copied into cxt) to the batch. */
static void
batch_add_entry(Batch *b, HeapTuple tup, TupleDesc desc, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	bool		isnull;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	TimestampTz queued_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 3, &isnull));

	b->entry_ids = b->entry_ids ?
		repalloc(b->entry_ids, sizeof(int64) * (b->nentries + 1)) : palloc(sizeof(int64));
	b->entry_ids[b->nentries++] = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	if (b->nentries == 1 || queued_at < b->queued_at)
		b->queued_at = queued_at;
	b->attempts = Max(b->attempts, DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull)));
	deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, desc, 2, &isnull)),
					  TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
		if (!nulls[i])
			batch_add_key(b, TextDatumGetCString(elems[i]));
	MemoryContextSwitchTo(old);
}

/*
 * Consider one queue row for the batch; false when the batch is complete.
 * An isolated entry (keys of a rejected batch) is delivered on its own.
 */
static bool
batch_take(Batch *b, HeapTuple tup, TupleDesc desc, MemoryContext cxt, TimestampTz now)
{
	bool		isnull;
	bool		isolated = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
	Datum		nb = SPI_getbinval(tup, desc, 6, &isnull);

	if (!isnull && DatumGetTimestampTz(nb) > now)
	{
		if (b->next_retry == 0 || DatumGetTimestampTz(nb) < b->next_retry)
			b->next_retry = DatumGetTimestampTz(nb);
		return true;
	}
	if (b->nentries > 0 && (isolated || b->isolated))
	{
		b->more = true;
		return false;
	}
	batch_add_entry(b, tup, desc, cxt);
	b->isolated = isolated;
	if (isolated)
		return false;
	if (b->nkeys >= pgpoly_sync_batch_size)
	{
		b->more = true;
		return false;
	}
	return true;
}

/* qsort comparator of C strings. */
static int
compare_keys(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Sort the batch's keys and drop duplicates. */
static void
batch_dedupe(Batch *b)
{
	int			n = 0;

	if (b->nkeys == 0)
		return;
	qsort(b->keys, b->nkeys, sizeof(char *), compare_keys);
	for (int i = 0; i < b->nkeys; i++)
		if (n == 0 || strcmp(b->keys[n - 1], b->keys[i]) != 0)
			b->keys[n++] = b->keys[i];
	b->nkeys = n;
}

/* Read the next batch of sync s from the queue, oldest first. */
static void
fetch_batch(SyncRow *s, Batch *b, MemoryContext cxt)
{
	Oid			type = INT4OID;
	Datum		arg = Int32GetDatum(s->id);
	TimestampTz now = GetCurrentTimestamp();
	Portal		portal;
	bool		open = true;

	portal = SPI_cursor_open_with_args(NULL,
									   "SELECT entry_id, keys, queued_at, attempts, isolated, not_before "
									   "FROM pgpoly.sync_queue WHERE sync_id = $1 "
									   "ORDER BY queued_at, entry_id",
									   1, &type, &arg, NULL, true, 0);
	while (open)
	{
		SPI_cursor_fetch(portal, true, 64);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed && open; i++)
			open = batch_take(b, SPI_tuptable->vals[i], SPI_tuptable->tupdesc, cxt, now);
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	batch_dedupe(b);
}

/*
 * The batch's keys (fixed text forms, see sync_capture.c) as an array of
 * the source key type.
 */
static Datum
key_array(SyncDef *def, char **keys, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	PgpolyConv	conv;
	int16		len;
	bool		byval;
	char		align;

	PgpolyConvInit(&conv, def->key_type, -1, NULL);
	get_typlenbyvalalign(def->key_type, &len, &byval, &align);
	for (int i = 0; i < n; i++)
		d[i] = PgpolyServerTextToDatum(&conv, keys[i], strlen(keys[i]));
	return PointerGetDatum(construct_array(d, n, def->key_type, len, byval, align));
}

/* Error context of a delivery: the sync and how many keys. */
static void
deliver_callback(void *arg)
{
	SyncDef    *def = arg;

	errcontext("delivering changes of pgpoly sync \"%s\"", def->name);
}

/*
 * Plan the delivery's reads of the source as index probes of the batch's
 * keys.  A batch reads a few thousand keys of a table that may have just
 * grown by far more without being analysed yet; a sequential scan per batch
 * would make delivery quadratic in the size of a bulk write.  Returns the
 * GUC nest level to end.
 */
static int
probe_by_key(void)
{
	int			level = NewGUCNestLevel();

	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_hashjoin", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_mergejoin", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return level;
}

/*
 * Deliver keys as the sync's owner: upsert the rows present, delete from
 * the target the keys whose row is gone.
 */
static void
deliver(SyncDef *def, char **keys, int n)
{
	Datum		arr = key_array(def, keys, n);
	Oid			save_user;
	int			save_sec;
	bool		isnull;
	Datum		absent;
	ErrorContextCallback errcb;
	int			guc_level;

	errcb.callback = deliver_callback;
	errcb.arg = def;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	guc_level = probe_by_key();
	SyncBecome(def->owner, true, &save_user, &save_sec);
	/*
	 * A row is the source's whole state: one whose mapped columns are all
	 * NULL says every field is absent, which a Redis hash table writes as
	 * its UPDATE would (the fields removed, and the key with them unless
	 * unmapped fields remain) instead of refusing it as it refuses such an
	 * INSERT: a dead letter would leave the old values served.
	 */
	PgpolyDeliveringChanges(true);
	PG_TRY();
	{
		SyncExecute(def->upsert_sql, 1, &def->key_array_type, &arr, NULL, SPI_OK_INSERT);
	}
	PG_FINALLY();
	{
		PgpolyDeliveringChanges(false);
	}
	PG_END_TRY();
	/*
	 * The keys are distinct and unique in the source: when each found a row
	 * and equal keys are identical, the rows written are the keys queued.
	 * Otherwise the target keys no row was written to are deleted (a key
	 * 1.0 whose row now has the key 1 among them).
	 */
	if (SPI_processed < (uint64) n || !def->key_identical)
	{
		SyncExecute(def->absent_sql, 1, &def->key_array_type, &arr, NULL, SPI_OK_SELECT);
		absent = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			SyncExecute(def->delete_sql, 1, &def->target_key_array_type, &absent, NULL,
					SPI_OK_DELETE);
	}
	SetUserIdAndSecContext(save_user, save_sec);
	AtEOXact_GUC(true, guc_level);
	error_context_stack = errcb.previous;
}

/* The batch's entries as a bigint[]. */
static Datum
entry_array(Batch *b)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(b->nentries, 1));

	for (int i = 0; i < b->nentries; i++)
		d[i] = Int64GetDatum(b->entry_ids[i]);
	return PointerGetDatum(construct_array(d, b->nentries, INT8OID, 8,
										   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* Delete the batch's queue entries (outbox: see SyncOutboxConsume). */
static void
dequeue_batch(SyncRow *s, Batch *b)
{
	Oid			types[2] = {INT8ARRAYOID, INT4OID};
	Datum		values[2];

	if (s->outbox)
	{
		SyncOutboxConsume(s, b);
		return;
	}
	values[0] = entry_array(b);
	values[1] = Int32GetDatum(s->id);
	SyncExecute("DELETE FROM pgpoly.sync_queue WHERE entry_id = ANY ($1) AND sync_id = $2",
				2, types, values, NULL, SPI_OK_DELETE);
}

/* Dequeue the delivered batch; count its keys as applied. */
static void
finish_batch(SyncRow *s, Batch *b)
{
	Oid			utypes[2] = {INT4OID, INT8OID};
	Datum		uvalues[2] = {Int32GetDatum(s->id), Int64GetDatum(b->nkeys)};

	dequeue_batch(s, b);
	SyncExecute("UPDATE pgpoly.syncs SET applied = applied + $2, "
				"last_applied_at = pg_catalog.clock_timestamp(), state = 'ok', last_error = NULL "
				"WHERE sync_id = $1", 2, utypes, uvalues, NULL, SPI_OK_UPDATE);
}

/*
 * Lock the tables a batch of sync s reads and writes, in the modes it uses
 * them (the source read, the target written), until the batch ends.  Every
 * party takes a sync's tables before its row in pgpoly.syncs: ALTER TABLE
 * locks the table, then updates the row (SyncNoteColumnsChanged), drop_sync
 * locks the source first too, and a batch does so here, before lock_sync.
 * Taking the delivery's own mode at once also means the batch never waits
 * for a stronger lock on a table while it holds a weaker one that a waiting
 * ALTER needs.
 */
static void
lock_tables(SyncRow *s)
{
	if (OidIsValid(s->source))
		LockRelationOid(s->source, AccessShareLock);
	LockRelationOid(s->target, RowExclusiveLock);
}

/*
 * Lock the sync's row once the batch holds its tables (false if the sync
 * was dropped): drop_sync and sync_retry lock it too, so they wait for a
 * batch, and the batch for them.
 */
static bool
lock_sync(SyncRow *s)
{
	Oid			type = INT4OID;
	Datum		arg = Int32GetDatum(s->id);

	SyncExecute("SELECT 1 FROM pgpoly.syncs WHERE sync_id = $1 FOR NO KEY UPDATE",
			1, &type, &arg, NULL, SPI_OK_SELECT);
	return SPI_processed == 1;
}

/* The definition and delivery SQL of the sync a row describes. */
static SyncDef *
row_def(SyncRow *s)
{
	return SyncBuildDef(s->id, s->name, s->source, s->target, s->owner, s->key_att,
						s->target_key_att, s->ncols, s->satts, s->tatts);
}

/* Arguments of deliver_fn. */
typedef struct DeliverArgs
{
	SyncRow    *s;
	Batch	   *b;
	MemoryContext cxt;
} DeliverArgs;

/*
 * One batch of an outbox table's sync: its changes, delivered as their
 * writers.  A batch whose changes all joined isolated entries delivers
 * nothing but is dequeued all the same.
 */
static void
deliver_outbox(DeliverArgs *da)
{
	/* locks the table when there are changes, as lock_tables() */
	SyncOutboxFetch(da->s, da->b, da->cxt);
	if (da->b->nentries == 0 || !lock_sync(da->s))
	{
		da->b->nkeys = 0;
		return;
	}
	InDelivery = true;
	SyncOutboxDeliver(da->s, da->b);
	finish_batch(da->s, da->b);
}

/* One batch: read it, deliver it, dequeue it (COMMIT flushes the stores). */
static void
deliver_fn(void *arg)
{
	DeliverArgs *da = arg;
	SyncRow    *s = da->s;
	SyncDef    *def;

	pgstat_report_activity(STATE_RUNNING, "delivering pgpoly sync changes");
	SyncLockInternalTables();
	/* these update the sync's row: its tables first (lock_tables) */
	if (s->away || s->moved)
		lock_tables(s);
	if (s->away)
		SyncClaimHome(s);
	if (s->moved)
		SyncResolveColumns(s->id, s);
	if (s->outbox)
	{
		deliver_outbox(da);
		return;
	}
	/* a sync whose table is gone says so, queued changes or not */
	(void) row_def(s);
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(s->owner)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the owner (role %u) of pgpoly sync \"%s\" no longer exists",
						s->owner, s->name)));
	fetch_batch(s, da->b, da->cxt);
	if (da->b->nkeys == 0)
		return;
	/* the delivery's SQL is built again under the locks it runs under */
	lock_tables(s);
	def = row_def(s);
	if (!lock_sync(s))
	{
		da->b->nkeys = 0;
		return;
	}
	InDelivery = true;
	deliver(def, da->b->keys, da->b->nkeys);
	finish_batch(s, da->b);
}

/* ----------------------------------------------------------------
 *		Failures
 * ----------------------------------------------------------------
 */

/*
 * What an error SQLSTATE means for sync s (see the file header).  An outbox
 * table's changes are delivered as the users who wrote them: a writer's
 * missing privilege, or a writer dropped since, rejects that writer's
 * changes only.
 */
static SyncFailure
classify(SyncRow *s, int sqlerrcode)
{
	/* 55000: the target is there but unavailable (a closed index) */
	if (sqlerrcode == ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION ||
		sqlerrcode == ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE)
		return FAIL_STORE_DOWN;
	if (s->outbox && (sqlerrcode == ERRCODE_INSUFFICIENT_PRIVILEGE ||
					  sqlerrcode == ERRCODE_UNDEFINED_OBJECT))
		return FAIL_REJECTED;
	if (sqlerrcode == ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED ||
		sqlerrcode == ERRCODE_FDW_TABLE_NOT_FOUND ||
		sqlerrcode == ERRCODE_FDW_OPTION_NAME_NOT_FOUND ||
		sqlerrcode == ERRCODE_FDW_INVALID_OPTION_NAME ||
		sqlerrcode == ERRCODE_FDW_INVALID_OPTION_INDEX ||
		sqlerrcode == ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE)
		return FAIL_SYNC;
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_CONNECTION_EXCEPTION:
		case ERRCODE_OPERATOR_INTERVENTION:
		case ERRCODE_INSUFFICIENT_RESOURCES:
			return FAIL_STORE_DOWN;
		case ERRCODE_SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION:
		case ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION:
		case ERRCODE_INVALID_CATALOG_NAME:
		case ERRCODE_INVALID_SCHEMA_NAME:
			return FAIL_SYNC;
		case ERRCODE_TRANSACTION_ROLLBACK:
		case ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE:
			return FAIL_TRANSIENT;
		default:
			return FAIL_REJECTED;
	}
}

/* Arguments of the failure transactions. */
typedef struct FailArgs
{
	SyncRow    *s;
	Batch	   *b;
	char	   *error;
	const char *state;			/* new state, or NULL to keep it */
	List	   *requeue;		/* of Batch *: entries replacing b's */
	int			attempts;		/* of the requeued entries */
	TimestampTz not_before;
	bool		bury;			/* move b's key to the dead letters */
	char	   *dead_op;		/* ... as this change (source syncs) */
	Datum		dead_payload;
	bool		dead_payload_null;
} FailArgs;

/* Record the error (and the new state, if any) on the sync. */
static void
record_error(FailArgs *fa)
{
	Oid			types[3] = {INT4OID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', fa->state ? ' ' : 'n'};

	values[0] = Int32GetDatum(fa->s->id);
	values[1] = CStringGetTextDatum(fa->error);
	values[2] = fa->state ? CStringGetTextDatum(fa->state) : (Datum) 0;
	SyncExecute("UPDATE pgpoly.syncs SET last_error = $2, state = COALESCE($3, state) "
			"WHERE sync_id = $1", 3, types, values, nulls, SPI_OK_UPDATE);
}

/* Queue part's keys as an isolated entry (the batch's age and attempts). */
static void
requeue(FailArgs *fa, Batch *part)
{
	Datum	   *keys = palloc(sizeof(Datum) * part->nkeys);
	Oid			types[5] = {INT4OID, TEXTARRAYOID, TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', fa->not_before ? ' ' : 'n'};

	if (fa->s->outbox)
	{
		SyncOutboxRequeue(fa->s, fa->b, part, fa->b->queued_at, fa->attempts,
						  fa->not_before);
		return;
	}
	for (int i = 0; i < part->nkeys; i++)
		keys[i] = CStringGetTextDatum(part->keys[i]);
	values[0] = Int32GetDatum(fa->s->id);
	values[1] = PointerGetDatum(construct_array(keys, part->nkeys, TEXTOID, -1,
												false, TYPALIGN_INT));
	values[2] = TimestampTzGetDatum(fa->b->queued_at);
	values[3] = Int32GetDatum(fa->attempts);
	values[4] = TimestampTzGetDatum(fa->not_before);
	SyncExecute("INSERT INTO pgpoly.sync_queue "
			"(sync_id, keys, queued_at, attempts, isolated, not_before) "
			"VALUES ($1, $2, $3, $4, true, $5)", 5, types, values, nulls, SPI_OK_INSERT);
}

/* Move the batch's single key to the dead letters. */
static void
bury(FailArgs *fa)
{
	Oid			types[6] = {INT4OID, TEXTOID, TEXTOID, JSONBOID, TEXTOID, INT4OID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', fa->dead_payload_null ? 'n' : ' ', ' ', ' '};

	if (fa->s->outbox)
	{
		SyncOutboxBury(fa->s, fa->b, fa->error, fa->attempts);
		return;
	}
	values[0] = Int32GetDatum(fa->s->id);
	values[1] = CStringGetTextDatum(fa->b->keys[0]);
	values[2] = CStringGetTextDatum(fa->dead_op);
	values[3] = fa->dead_payload;
	values[4] = CStringGetTextDatum(fa->error);
	values[5] = Int32GetDatum(fa->attempts);
	SyncExecute("INSERT INTO pgpoly.sync_dead_letters "
			"(name, key, op, payload, error, attempts, sync_id, owner) "
			"SELECT name, $2, $3, $4, $5, $6, sync_id, owner "
			"FROM pgpoly.syncs WHERE sync_id = $1", 6, types, values, nulls, SPI_OK_INSERT);
}

/*
 * Record the error on the sync, then replace the batch's entries by the
 * requeued parts or a dead letter (the sync's row is locked first, as in
 * every transaction that changes a sync's queue).
 */
static void
fail_fn(void *arg)
{
	FailArgs   *fa = arg;
	ListCell   *lc;

	SyncLockInternalTables();
	record_error(fa);
	if (fa->b == NULL || fa->b->nentries == 0 || (fa->requeue == NIL && !fa->bury))
		return;
	dequeue_batch(fa->s, fa->b);
	foreach(lc, fa->requeue)
		requeue(fa, lfirst(lc));
	if (fa->bury)
		bury(fa);
}

/* Arguments of payload_fn. */
typedef struct PayloadArgs
{
	SyncRow    *s;
	char	   *key;
	MemoryContext cxt;
	Datum		payload;
	bool		found;
} PayloadArgs;

/* The source row of a dead letter's key, as jsonb (read as the owner). */
static void
payload_fn(void *arg)
{
	PayloadArgs *pa = arg;
	SyncDef    *def = row_def(pa->s);
	PgpolyConv	conv;
	Datum		key;
	Oid			save_user;
	int			save_sec;

	PgpolyConvInit(&conv, def->key_type, -1, NULL);
	key = PgpolyServerTextToDatum(&conv, pa->key, strlen(pa->key));
	SyncBecome(def->owner, true, &save_user, &save_sec);
	SyncExecute(def->payload_sql, 1, &def->key_type, &key, NULL, SPI_OK_SELECT);
	SetUserIdAndSecContext(save_user, save_sec);
	pa->found = (SPI_processed > 0);
	if (pa->found)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		MemoryContext old = MemoryContextSwitchTo(pa->cxt);

		pa->payload = datumCopy(d, false, -1);
		MemoryContextSwitchTo(old);
	}
}

/* The n keys of b from the first on (with their changes), as a batch. */
static Batch *
batch_part(Batch *b, int first, int n)
{
	Batch	   *part = palloc0(sizeof(Batch));

	part->keys = b->keys + first;
	part->items = b->items ? b->items + first : NULL;
	part->nkeys = n;
	return part;
}

/* Milliseconds to wait before delivering a rejected key again. */
static int
rejection_delay(int attempts)
{
	int64		ms = 250L << Min(attempts, 20);

	return (int) Min(ms, (int64) pgpoly_sync_max_retry_delay);
}

/*
 * The target rejected batch b: split it into isolated halves, or retry its
 * single key later, or after pgpoly.sync_max_attempts move it to the dead
 * letters.
 */
static void
on_rejected(SyncRow *s, Batch *b, ErrorData *e, FailArgs *fa, MemoryContext cxt)
{
	fa->attempts = b->attempts;
	if (b->nkeys > 1)
	{
		int			half = b->nkeys / 2;

		fa->requeue = list_make2(batch_part(b, 0, half), batch_part(b, half, b->nkeys - half));
		return;
	}
	fa->attempts = b->attempts + 1;
	if (fa->attempts < pgpoly_sync_max_attempts)
	{
		fa->requeue = list_make1(batch_part(b, 0, 1));
		fa->not_before = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 rejection_delay(b->attempts));
		return;
	}
	fa->bury = true;
	if (!s->outbox)
	{
		PayloadArgs pa = {s, b->keys[0], cxt, (Datum) 0, false};
		ErrorData  *pe = run_transaction(payload_fn, &pa);

		fa->dead_op = (pe == NULL && !pa.found) ? "delete" : "upsert";
		fa->dead_payload = pa.payload;
		fa->dead_payload_null = !pa.found;
	}
	{
		ereport(LOG,
				(errmsg("pgpoly sync \"%s\": \"%s\" rejected the change of key \"%s\" %d times; moved it to pgpoly.sync_dead_letters",
						s->name, s->target_name, b->keys[0], fa->attempts),
				 errdetail("%s", fa->error)));
	}
}

/*
 * Enter health h (store down / failing): LOG the change, back off.
 * sqlerrcode: the error's.
 */
static void
on_unavailable(SyncRow *s, SyncRuntime *rt, SyncHealth h, FailArgs *fa, int sqlerrcode)
{
	TimestampTz now = GetCurrentTimestamp();

	if (rt->health != h)
	{
		ereport(LOG,
				(errmsg(h == SYNC_FAILING ?
						"pgpoly sync \"%s\": cannot deliver to \"%s\"; retrying with backoff" :
						sqlerrcode == ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE ?
						"pgpoly sync \"%s\": \"%s\" cannot take writes now; retrying with backoff" :
						"pgpoly sync \"%s\": the store of \"%s\" is unreachable; retrying with backoff",
						s->name, s->target_name),
				 errdetail("%s", fa->error)));
		if (rt->health == SYNC_OK)
			rt->trouble_since = now;
		rt->health = h;
		rt->delay_ms = 100;
	}
	else
		rt->delay_ms = Min(rt->delay_ms * 2, pgpoly_sync_max_retry_delay);
	rt->retry_at = TimestampTzPlusMilliseconds(now, rt->delay_ms);
	fa->state = h == SYNC_STORE_DOWN ? "retrying" : "failing";
}

/* Handle the error e of a batch of sync s. */
static void
on_failure(SyncRow *s, SyncRuntime *rt, Batch *b, ErrorData *e, MemoryContext cxt)
{
	SyncFailure f = classify(s, e->sqlerrcode);
	FailArgs	fa;
	ErrorData  *fe;

	ereport(DEBUG1,
			(errmsg("pgpoly sync \"%s\": a batch of %d keys failed: %s",
					s->name, b->nkeys, error_text(e))));
	memset(&fa, 0, sizeof(fa));
	fa.s = s;
	fa.b = b;
	fa.error = error_text(e);
	if (f == FAIL_REJECTED && b->nkeys == 0)
		f = FAIL_SYNC;			/* no key to blame */
	switch (f)
	{
		case FAIL_TRANSIENT:
			rt->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 100);
			return;
		case FAIL_STORE_DOWN:
			on_unavailable(s, rt, SYNC_STORE_DOWN, &fa, e->sqlerrcode);
			break;
		case FAIL_SYNC:
			on_unavailable(s, rt, SYNC_FAILING, &fa, e->sqlerrcode);
			break;
		case FAIL_REJECTED:
			on_rejected(s, b, e, &fa, cxt);
			break;
	}
	fe = run_transaction(fail_fn, &fa);
	if (fe)
	{
		ereport(LOG,
				(errmsg("pgpoly sync \"%s\": could not record a failed delivery: %s",
						s->name, error_text(fe))));
		rt->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000);
	}
}

/* A successful batch: LOG the return of a store that was unreachable. */
static void
on_success(SyncRow *s, SyncRuntime *rt)
{
	if (rt->health != SYNC_OK)
	{
		long		secs;
		int			usecs;

		TimestampDifference(rt->trouble_since, GetCurrentTimestamp(), &secs, &usecs);
		ereport(LOG,
				(errmsg("pgpoly sync \"%s\": delivering to \"%s\" again after %ld.%01d s",
						s->name, s->target_name, secs, usecs / 100000)));
	}
	rt->health = SYNC_OK;
	rt->delay_ms = 0;
	rt->retry_at = 0;
}

/*
 * Deliver one batch of sync s.  Returns whether to look again at once:
 * more entries may be ready, or a delivery waited on a store, which resets
 * the process latch (a writer's wake-up may be lost).  Lowers *wake_at to
 * when this sync next wants a look.
 */
static bool
deliver_one(SyncRow *s, SyncRuntime *rt, MemoryContext cxt, TimestampTz *wake_at)
{
	Batch		b;
	DeliverArgs da = {s, &b, cxt};
	ErrorData  *e;

	memset(&b, 0, sizeof(b));
	e = run_transaction(deliver_fn, &da);
	InDelivery = false;
	pgstat_report_activity(STATE_IDLE, NULL);
	if (e == NULL)
	{
		if (b.nkeys > 0)
			on_success(s, rt);
	}
	else
		on_failure(s, rt, &b, e, cxt);
	if (b.next_retry != 0 && b.next_retry < *wake_at)
		*wake_at = b.next_retry;
	if (rt->retry_at != 0 && rt->retry_at < *wake_at)
		*wake_at = rt->retry_at;
	if (e != NULL)
		return rt->retry_at == 0 || rt->retry_at <= GetCurrentTimestamp();
	/* The store's waits reset the latch: look again before sleeping. */
	return b.more || b.nkeys > 0;
}

/* ----------------------------------------------------------------
 *		Main loop
 * ----------------------------------------------------------------
 */

/*
 * One pass over the syncs: a batch of each sync that is due.  Returns
 * whether another pass should follow at once; sets *wake_at otherwise.
 */
static bool
deliver_all(List *syncs, MemoryContext cxt, TimestampTz *wake_at)
{
	TimestampTz now = GetCurrentTimestamp();
	bool		more = false;
	ListCell   *lc;

	*wake_at = TimestampTzPlusMilliseconds(now, 1000);
	foreach(lc, syncs)
	{
		SyncRow    *s = lfirst(lc);
		SyncRuntime *rt = runtime(s->id);

		CHECK_FOR_INTERRUPTS();
		if (StopRequested)
			return false;
		if (rt->retry_at > now)
		{
			*wake_at = Min(*wake_at, rt->retry_at);
			continue;
		}
		more |= deliver_one(s, rt, cxt, wake_at);
	}
	forget_dropped_syncs();
	return more;
}

/* Sleep until the latch is set or wake_at. */
static void
sleep_until(TimestampTz wake_at)
{
	long		secs;
	int			usecs;

	TimestampDifference(GetCurrentTimestamp(), wake_at, &secs, &usecs);
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 secs * 1000 + usecs / 1000 + 1, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
}

/*
 * No sync is left: release the lock, then look once more (a sync created
 * meanwhile either saw the lock free and started a worker, or is seen
 * now).  Returns whether the worker may exit.
 */
static bool
may_leave(MemoryContext cxt)
{
	bool		ok;

	LockRelease(&WorkerLock, ExclusiveLock, true);
	if (load_syncs(cxt, &ok) == NIL && ok)
		return true;
	return LockAcquire(&WorkerLock, ExclusiveLock, true, true) != LOCKACQUIRE_OK;
}

/* Deliver until stopped or no sync is left. */
static void
worker_loop(void)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "pgpoly sync cycle",
											  ALLOCSET_DEFAULT_SIZES);
	bool		announced = false;

	for (;;)
	{
		TimestampTz wake_at = 0;
		List	   *syncs;
		bool		ok;
		bool		more;

		CHECK_FOR_INTERRUPTS();
		if (StopRequested)
			return;
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextReset(cxt);
		MemoryContextSwitchTo(cxt);
		syncs = load_syncs(cxt, &ok);
		if (syncs == NIL && ok)
		{
			if (may_leave(cxt))
				return;
			continue;
		}
		if (!announced && syncs != NIL)
		{
			ereport(LOG, (errmsg("pgpoly sync worker started for database %u",
								 MyDatabaseId)));
			announced = true;
		}
		more = ok && deliver_all(syncs, cxt, &wake_at);
		if (!ok)
			wake_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000);
		pgstat_report_stat(false);
		if (!more && !StopRequested)
			sleep_until(wake_at);
	}
}

/*
 * The worker's settings: generated SQL parsed under a safe search_path,
 * and the output forms of convert.c (TimeZone UTC included) for what SQL
 * converts: a source column cast to a text target column (a timestamptz
 * key's text must not change with the server's TimeZone, or the target
 * would keep the old key), the text of an outbox table's key that the
 * delivery compares (sync_outbox.c, key_compare; money in the C locale's
 * form) and the dead letters' payloads (to_jsonb).  Its
 * transactions are READ COMMITTED and read-write whatever the database's
 * defaults for sessions say (default_transaction_read_only would keep it
 * from dequeueing, and from recording why).
 */
static void
set_worker_settings(void)
{
	SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET,
					PGC_S_OVERRIDE);
	SetConfigOption("datestyle", "ISO, YMD", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("intervalstyle", "postgres", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("extra_float_digits", "3", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("timezone", "UTC", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("bytea_output", "hex", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("lc_monetary", "C", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("application_name", SYNC_WORKER_TYPE, PGC_SUSET, PGC_S_OVERRIDE);
}

/*
 * Exit callback: release the worker lock if this process still holds it.
 * Once connected, ShutdownPostgres (which runs first) has released it
 * already; this covers an exit while connecting.
 */
static void
release_worker_lock(int code, Datum arg)
{
	if (LockHeldByMe(&WorkerLock, ExclusiveLock))
		LockRelease(&WorkerLock, ExclusiveLock, true);
}

/*
 * Take the worker lock of database dboid before connecting to it; false if
 * another worker holds it.  Connecting may take seconds (a loaded machine,
 * valgrind): holding the lock meanwhile tells the sessions that commit
 * changes that a worker is starting, so that they wake it rather than
 * register one more (SyncKickWorker).  The lock is taken without waiting
 * and is a session lock, which needs nothing of the connection.
 */
static bool
take_worker_lock(Oid dboid)
{
	SyncLockTag(&WorkerLock, dboid);
	before_shmem_exit(release_worker_lock, (Datum) 0);
	return LockAcquire(&WorkerLock, ExclusiveLock, true, true) == LOCKACQUIRE_OK;
}

/*
 * Main of a database's sync worker (bgw_main_arg: the database OID).  A
 * second worker of the same database finds the lock taken and exits before
 * it connects.
 */
void
PgpolySyncWorkerMain(Datum arg)
{
	pqsignal(SIGTERM, sync_sigterm);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	if (!take_worker_lock(DatumGetObjectId(arg)))
		proc_exit(0);
	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(arg), InvalidOid, 0);
	SyncIsWorker = true;
	PgpolyDeliverOutbox();
	set_worker_settings();
	worker_loop();
	proc_exit(0);
}
