/*-------------------------------------------------------------------------
 *
 * xact.c
 *		  The transaction write buffer shared by every store.
 *
 * A store's modify callbacks hand each row's write (an opaque payload) to a
 * PgpolyWriter, which follows the table's write_mode: 'immediate' sends
 * pipelined batches through the store while the statement runs.  A batch
 * that is not full is listed as unsent, and sent early when anything uses
 * a store (a trigger's or function's query, another node of the statement
 * writing the table), so that what runs during a statement sees its
 * writes, and they reach the store in the order they were made.  Before
 * any immediate batch is sent, the open scans paging through its store's
 * target by position (PgpolyPagedScan) read their remaining pages, so that
 * a write made by a function or trigger their query runs, or between two
 * FETCHes of a cursor, moves no row they have not read yet.
 *
 * With write_mode 'transactional' a store does not send a write while the
 * statement runs: PgpolyWriterAdd() appends the payload to the
 * connection's list, tagged with the table, the table's target (see
 * PgpolyPendingWrites) and the subtransaction nesting level.  Then:
 *	- later scans of the table in the same transaction ask for the pending
 *	  writes (PgpolyPendingWrites) when they start and overlay them:
 *	  read-your-writes, of the statements before (as a snapshot); those of
 *	  the other tables that address the same rows too, where the store says
 *	  which (PgpolyStore.shares_writes);
 *	- ROLLBACK TO SAVEPOINT drops the writes of the aborted levels, and a
 *	  released savepoint hands its writes to the parent level;
 *	- at XACT_EVENT_PRE_COMMIT each connection's store flush() sends all of
 *	  them in as few round trips as it can; if it ereports, COMMIT fails and
 *	  PostgreSQL rolls back, so a failed write is never silent.  Query
 *	  cancels are held from the first send until the COMMIT ends
 *	  (hold_cancel_for_send): a cancel must not roll back what a store
 *	  may already have applied.  A store
 *	  may have sent them ahead while the statements ran (buffered(), Redis'
 *	  write stream: queued in a MULTI that only flush() EXECs), so that
 *	  the store's work overlaps the backend's; what it applies still
 *	  depends on flush() alone, and it is told the transaction ended
 *	  (xact_end) to drop what it sent ahead on ROLLBACK.  Before
 *	  that, a connection that holds the transaction's session state (a
 *	  Redis WATCH) but no writes, while other connections of its store
 *	  write, has its store check what was read through it (check_reads);
 *	- ROLLBACK discards them (nothing was sent);
 *	- PREPARE TRANSACTION with pending writes is refused, since the stores
 *	  have no two-phase commit.
 *
 * With write_mode 'outbox' the payloads are buffered the same way, so the
 * transaction's reads see them and the stores check them as the statement
 * runs, but they are never sent.  What goes out is the row change the core
 * captured beside them (PgpolyAddChange: an upsert, an update of some
 * columns or a delete, in the fixed text form), kept in one list for the
 * whole transaction in write order, with the same savepoint rules.  At
 * pre-commit, before the transactional writes are sent (sending is the
 * last step that may fail: nothing a failed COMMIT wrote may be in a
 * store), the sync module queues the changes in pgpoly.sync_queue
 * (SyncQueueChanges), and the sync
 * worker delivers them after COMMIT: COMMIT neither waits on nor fails
 * with the store.  The worker itself writes such tables transactionally
 * (PgpolyDeliverOutbox).
 *
 * Payloads and list cells live in TopTransactionContext: they cannot
 * outlive the transaction.  So do the table descriptors they point into
 * (field names, index, collection ...): PgpolyXactTable() loads one per
 * table and user once per transaction and hands it to every later
 * statement, until DDL on the table, its server or a user mapping
 * invalidates it (writes already buffered keep the old one), so that many
 * statements in one transaction do not load many copies.
 *
 * src/xact.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/hsearch.h"
#include "foreign/foreign.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "pgpoly.h"

/* Connections holding writes in this transaction, in first-write order. */
static List *WritingConnections = NIL;	/* in TopTransactionContext */

/* Row changes of outbox tables, in write order (PgpolyChange *). */
static List *OutboxChanges = NIL;	/* in TopTransactionContext */

/* This process delivers outbox changes: outbox tables are transactional. */
static bool DeliveringOutbox = false;

/* The statements running now deliver outbox changes (not source syncs). */
static bool DeliveringChanges = false;

/* A table descriptor loaded for this transaction's buffered writes. */
typedef struct XactTable
{
	Oid			relid;
	Oid			userid;
	PgpolyLoadTable load;		/* which store's descriptor */
	bool		stale;			/* invalidated: load anew for new writes */
	void	   *tbl;
} XactTable;

static List *XactTables = NIL;	/* XactTable *, in TopTransactionContext */

/* Memory context for payloads: lives exactly as long as the transaction. */
MemoryContext
PgpolyWriteContext(void)
{
	return TopTransactionContext;
}

/*
 * The descriptor of foreign table relid as userid sees it, loaded by load()
 * into TopTransactionContext the first time this transaction asks (for
 * buffered writes to point into), then shared by later statements.
 */
void *
PgpolyXactTable(Oid relid, Oid userid, PgpolyLoadTable load)
{
	MemoryContext old;
	XactTable  *t;
	ListCell   *lc;

	foreach(lc, XactTables)
	{
		t = lfirst(lc);
		if (!t->stale && t->relid == relid && t->userid == userid && t->load == load)
			return t->tbl;
	}
	old = MemoryContextSwitchTo(TopTransactionContext);
	t = palloc0(sizeof(XactTable));
	t->relid = relid;
	t->userid = userid;
	t->load = load;
	t->tbl = load(relid, userid);
	XactTables = lappend(XactTables, t);
	MemoryContextSwitchTo(old);
	return t->tbl;
}

/* Mark the descriptors of relid (InvalidOid: all) stale. */
static void
invalidate_tables(Oid relid)
{
	ListCell   *lc;

	foreach(lc, XactTables)
	{
		XactTable  *t = lfirst(lc);

		if (!OidIsValid(relid) || t->relid == relid)
			t->stale = true;
	}
}

/* Relcache callback: the table's columns or options may have changed. */
static void
relcache_callback(Datum arg, Oid relid)
{
	invalidate_tables(relid);
}

/* Syscache callback: a foreign table, server or user mapping changed. */
static void
syscache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	invalidate_tables(InvalidOid);
}

/*
 * The write_mode of a foreign table with these options.  The sync worker
 * delivers the changes of outbox tables by writing them transactionally.
 */
PgpolyWriteMode
PgpolyTableWriteMode(List *options)
{
	const char *mode = PgpolyGetOption(options, "write_mode", "transactional");

	if (strcmp(mode, "immediate") == 0)
		return PGPOLY_WRITE_IMMEDIATE;
	if (strcmp(mode, "outbox") == 0 && !DeliveringOutbox)
		return PGPOLY_WRITE_OUTBOX;
	return PGPOLY_WRITE_TRANSACTIONAL;
}

/* This process is the sync worker: write outbox tables transactionally. */
void
PgpolyDeliverOutbox(void)
{
	DeliveringOutbox = true;
}

/*
 * Whether this process is the sync worker, which replicates what
 * PostgreSQL committed: its writes are last-writer-wins by design.
 */
bool
PgpolyIsSyncWorker(void)
{
	return DeliveringOutbox;
}

/*
 * The sync worker is (on) or is no longer (off) running the statements
 * that deliver the changes of a sync: of an outbox table, what the
 * writer's statements left, composed; of a source table, its rows as they
 * are now.  A store may write a row image there that no INSERT of its own
 * could make (see PgpolyChangesDelivered).
 */
void
PgpolyDeliveringChanges(bool on)
{
	DeliveringChanges = on;
}

/*
 * Whether the statement running delivers sync changes.  An upsert then
 * (composed from an INSERT and an UPDATE, or a source row now all NULL)
 * may set every column to NULL, which a Redis hash table writes as the
 * UPDATE would have (its fields removed) instead of refusing it as it
 * refuses such an INSERT.
 */
bool
PgpolyChangesDelivered(void)
{
	return DeliveringChanges;
}

/*
 * Where foreign table relid of store keeps its rows now, when its writes do
 * not say it themselves (PgpolyStore.target_option, by default the table's
 * name); NULL for a store whose writes do.  palloc'd in the current memory
 * context.
 */
static char *
table_target(const PgpolyStore *store, Oid relid)
{
	ForeignTable *ft;
	char	   *name;

	if (store->target_option == NULL)
		return NULL;
	ft = GetForeignTable(relid);
	name = get_rel_name(relid);
	return pstrdup(PgpolyGetOption(ft->options, store->target_option,
								   name ? name : ""));
}

/* Buffer payload for relid on conn, for target; outbox: never sent. */
static void
buffer_write(PgpolyConnection *conn, Oid relid, const char *target,
			 void *payload, bool outbox)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	PgpolyWrite *w = palloc(sizeof(PgpolyWrite));

	w->relid = relid;
	w->level = GetCurrentTransactionNestLevel();
	w->outbox = outbox;
	w->target = target;
	w->payload = payload;
	if (conn->writes == NIL)
		WritingConnections = lappend(WritingConnections, conn);
	conn->writes = lappend(conn->writes, w);
	MemoryContextSwitchTo(old);
	if (!outbox && conn->store->buffered)
		conn->store->buffered(conn, payload);
}

/*
 * Queue change (allocated in TopTransactionContext) for COMMIT, tagged
 * with the current subtransaction level.
 */
void
PgpolyAddChange(PgpolyChange *change)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

	change->level = GetCurrentTransactionNestLevel();
	OutboxChanges = lappend(OutboxChanges, change);
	MemoryContextSwitchTo(old);
}

/* Whether this transaction holds outbox changes not queued yet. */
bool
PgpolyChangesPending(void)
{
	return OutboxChanges != NIL;
}

/*
 * Immediate-mode writers holding whole rows not sent yet (PgpolyWriter),
 * oldest first.  Their statements are still running; anything that uses a
 * store meanwhile sends them first (PgpolySendUnsentWrites).
 */
static dlist_head UnsentWriters = DLIST_STATIC_INIT(UnsentWriters);

/* Take node off its list, if *listed says it is on one. */
static void
unlist_node(dlist_node *node, bool *listed)
{
	if (!*listed)
		return;
	dlist_delete(node);
	*listed = false;
}

/* Take w off UnsentWriters (a no-op when it is not there). */
static void
writer_unlist(void *arg)
{
	PgpolyWriter *w = arg;

	unlist_node(&w->unsent_node, &w->listed);
}

/*
 * Put w on UnsentWriters.  Its batch memory unlists it when it is reset
 * (the batch was sent) or deleted (the statement ended or failed), so
 * the list never points into freed memory.
 */
static void
writer_list(PgpolyWriter *w)
{
	if (w->listed)
		return;
	w->forget.func = writer_unlist;
	w->forget.arg = w;
	MemoryContextRegisterResetCallback(w->batch_cxt, &w->forget);
	w->subid = GetCurrentSubTransactionId();
	dlist_push_tail(&UnsentWriters, &w->unsent_node);
	w->listed = true;
}

/*
 * Immediate mode: send the rows that running statements have written to
 * relid (InvalidOid: to any table) but not sent yet (their batches are not
 * full), but those of writer except (NULL: none), before something else
 * uses a store.  A statement's
 * triggers and the functions it calls run while its batch is open: an
 * AFTER ROW or statement trigger, or a BEFORE ROW trigger of a later row,
 * that reads the table must see the rows the statement wrote before it,
 * as on a native table, and its own writes must land after them.  So this
 * runs whenever a connection is taken from the cache (connection.c), and
 * before a modification writes a row of relid (PgpolyModifyRow: another
 * node of the statement, a data-modifying WITH query, may hold earlier
 * writes of the same rows; the partitions a statement's rows are routed to
 * are other tables, whose batches stay open).  A statement that writes
 * through one node and uses no other connection meanwhile batches as
 * before.
 */
void
PgpolySendUnsentWrites(PgpolyWriter *except, Oid relid)
{
	for (;;)
	{
		PgpolyWriter *next = NULL;
		dlist_iter	iter;

		/*
		 * sending may send others (and unlist them): look again each time;
		 * held rows only once their UPDATE has read all its rows, and after
		 * every other writer (the partition's own moves land first)
		 */
		dlist_foreach(iter, &UnsentWriters)
		{
			PgpolyWriter *w = dlist_container(PgpolyWriter, unsent_node, iter.cur);

			if (w != except && !w->in_row &&	/* mid-row: payloads incomplete */
				(!OidIsValid(relid) || w->relid == relid) &&
				(!w->held || *w->held_until) &&
				(next == NULL || (next->held && !w->held)))
				next = w;
		}
		if (next == NULL)
			return;
		PgpolyWriterFlush(next);
	}
}

/*
 * (Sub)transaction abort: forget the unsent rows of the statements that
 * failed (subid: those of subtransactions started at or after it;
 * InvalidSubTransactionId: all), as their EndForeignModify would never
 * send them.
 */
static void
unlist_aborted(SubTransactionId subid)
{
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &UnsentWriters)
	{
		PgpolyWriter *w = dlist_container(PgpolyWriter, unsent_node, iter.cur);

		if (subid == InvalidSubTransactionId || w->subid >= subid)
			writer_unlist(w);
	}
}

/*
 * Immediate-mode writers whose statements are running (set up and their
 * executor memory not gone yet).  Their writes land while the statement's
 * scans still read: a scan whose store pages by position (an offset) or
 * iterates a keyspace that may show new keys can meet them, and reads all
 * of its pages before it returns a row while one runs (see
 * PgpolyImmediateWritesRunning).
 */
static int	RunningImmediateWriters = 0;

/* Memory callback: w's statement ended (or failed). */
static void
writer_stopped(void *arg)
{
	if (RunningImmediateWriters > 0)
		RunningImmediateWriters--;
}

/*
 * Whether an immediate-mode writer's statement is running: its writes may
 * land in a store while a scan of the same statement (an INSERT ... SELECT
 * from the table itself, the scan of an UPDATE's or DELETE's target) still
 * pages through it.  A native table shows a statement none of its own
 * writes; a scan that pages by position must read every page before the
 * first write is sent to show the same (a DELETE would otherwise shift
 * rows it has not read yet below its offset, and an INSERT ... SELECT
 * would read the rows it inserted, without end).
 */
bool
PgpolyImmediateWritesRunning(void)
{
	return RunningImmediateWriters > 0;
}

/*
 * Set w up for one statement's writes to relid on conn, in mode.
 * Immediate-mode batches live in a child of parent (the executor's query
 * context).
 */
void
PgpolyWriterInit(PgpolyWriter *w, PgpolyConnection *conn, Oid relid,
				 PgpolyWriteMode mode, int batch_size, PgpolySendWrites send,
				 MemoryContext parent)
{
	w->conn = conn;
	w->relid = relid;
	w->transactional = mode != PGPOLY_WRITE_IMMEDIATE;
	w->outbox = mode == PGPOLY_WRITE_OUTBOX;
	/*
	 * An outbox write goes where the table points when the worker delivers
	 * it, so every read overlays it: no target of its own.
	 */
	w->target = NULL;
	if (mode == PGPOLY_WRITE_TRANSACTIONAL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

		w->target = table_target(conn->store, relid);
		MemoryContextSwitchTo(old);
	}
	w->batch_size = batch_size;
	w->send = send;
	w->pending = NIL;
	w->batch_cxt = AllocSetContextCreate(parent, "pgpoly write batch",
										 ALLOCSET_DEFAULT_SIZES);
	w->in_row = false;
	w->listed = false;
	w->sent = 0;
	if (mode == PGPOLY_WRITE_IMMEDIATE)
	{
		w->running.func = writer_stopped;
		w->running.arg = w;
		MemoryContextRegisterResetCallback(parent, &w->running);
		RunningImmediateWriters++;
	}
}

/*
 * Memory a payload for w must be built in: the transaction's (buffered
 * writes live until COMMIT) or the current batch's.
 */
MemoryContext
PgpolyWriterContext(PgpolyWriter *w)
{
	return w->transactional ? TopTransactionContext : w->batch_cxt;
}

/*
 * Buffer payload, or add it to the batch.  A full batch is sent only by
 * PgpolyWriterEndRow(): sending resets the batch's memory, which may still
 * hold the row's other payloads.
 */
void
PgpolyWriterAdd(PgpolyWriter *w, void *payload)
{
	MemoryContext old;

	if (w->transactional)
	{
		buffer_write(w->conn, w->relid, w->target, payload, w->outbox);
		return;
	}
	old = MemoryContextSwitchTo(w->batch_cxt);
	w->pending = lappend(w->pending, payload);
	MemoryContextSwitchTo(old);
	w->in_row = true;
}

/*
 * After all of a row's payloads: send the batch if it is full, else list
 * it as unsent, for PgpolySendUnsentWrites.
 */
void
PgpolyWriterEndRow(PgpolyWriter *w)
{
	w->in_row = false;
	if (w->held)
	{
		/* sent by PgpolyModifyEnd, or once *held_until (see there) */
		if (w->pending != NIL)
			writer_list(w);
		return;
	}
	if (list_length(w->pending) >= w->batch_size)
		PgpolyWriterFlush(w);
	else if (w->pending != NIL)
		writer_list(w);
}

/* Error context of PgpolySendProgress: what was applied, what not sent. */
static void
send_progress_context(void *arg)
{
	PgpolySendProgress *p = arg;

	if (p->later > 0)
		errcontext("%s: " INT64_FORMAT " earlier %s(s) of %s, sent in %s, were applied "
				   "and stay applied; " INT64_FORMAT " later %s(s) of %s were not sent",
				   p->prefix, p->applied, p->unit, p->of, p->via,
				   p->later, p->unit, p->of);
	else
		errcontext("%s: " INT64_FORMAT " earlier %s(s) of %s, sent in %s, were applied "
				   "and stay applied",
				   p->prefix, p->applied, p->unit, p->of, p->via);
}

/*
 * Push p's error context, when earlier requests applied something, for
 * the request about to be sent.  p must stay valid until
 * PgpolySendProgressPop() or the error.
 */
void
PgpolySendProgressPush(PgpolySendProgress *p)
{
	p->pushed = p->applied > 0;
	if (!p->pushed)
		return;
	p->cb.callback = send_progress_context;
	p->cb.arg = p;
	p->cb.previous = error_context_stack;
	error_context_stack = &p->cb;
}

/* Pop what PgpolySendProgressPush() pushed (the request succeeded). */
void
PgpolySendProgressPop(PgpolySendProgress *p)
{
	if (p->pushed)
		error_context_stack = p->cb.previous;
	p->pushed = false;
}

/* Scans paging through a store now (PgpolyPagedScan), oldest first. */
static dlist_head PagedScans = DLIST_STATIC_INIT(PagedScans);

/* Take ps off PagedScans (a no-op when it is not there). */
static void
paged_scan_unlist(void *arg)
{
	PgpolyPagedScan *ps = arg;

	unlist_node(&ps->node, &ps->listed);
}

/*
 * List ps, a scan of store's target (NULL: any) with more pages to read,
 * so that immediate-mode writes have drain(arg) read them first; if
 * reaches is given, only the writes to the tables for which
 * reaches(arg, relid) is true (those that may add, move or remove a row
 * the scan has not read yet).  It stays listed until PgpolyPagedScanClose() or until cxt, the memory
 * holding ps, is reset or deleted (a rescan, the end of the scan, an
 * error).
 */
void
PgpolyPagedScanOpen(PgpolyPagedScan *ps, const PgpolyStore *store,
					const char *target, PgpolyWriteReaches reaches,
					PgpolyDrainPages drain, void *arg, MemoryContext cxt)
{
	if (ps->listed)
		return;
	if (ps->forget.func == NULL)
	{
		ps->forget.func = paged_scan_unlist;
		ps->forget.arg = ps;
		MemoryContextRegisterResetCallback(cxt, &ps->forget);
	}
	ps->store = store;
	ps->target = target;
	ps->reaches = reaches;
	ps->drain = drain;
	ps->arg = arg;
	dlist_push_tail(&PagedScans, &ps->node);
	ps->listed = true;
}

/* The scan read its last page: writes need no longer wait for it. */
void
PgpolyPagedScanClose(PgpolyPagedScan *ps)
{
	paged_scan_unlist(ps);
}

/*
 * Have ps read its remaining pages.  It is unlisted first (draining sends
 * requests, and so may send other unsent batches, which must not drain it
 * again); if an error cuts the drain short (a cancel, a store timing out)
 * it is listed again, since it still has pages to read: the error may be
 * caught (ROLLBACK TO SAVEPOINT, an EXCEPTION block) and the scan read on.
 */
static void
drain_paged_scan(PgpolyPagedScan *ps)
{
	paged_scan_unlist(ps);
	PG_TRY();
	{
		ps->drain(ps->arg);
	}
	PG_CATCH();
	{
		if (!ps->listed)
		{
			dlist_push_tail(&PagedScans, &ps->node);
			ps->listed = true;
		}
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * Before w's batch is sent: have every open paged scan of its store and
 * target read its remaining pages.
 */
static void
drain_paged_scans(PgpolyWriter *w)
{
	const PgpolyStore *store = w->conn->store;
	char	   *target = NULL;
	bool		looked = false;

	for (;;)
	{
		PgpolyPagedScan *next = NULL;
		dlist_iter	iter;

		dlist_foreach(iter, &PagedScans)
		{
			PgpolyPagedScan *ps = dlist_container(PgpolyPagedScan, node, iter.cur);

			if (ps->store != store)
				continue;
			if (ps->reaches != NULL)
			{
				if (!ps->reaches(ps->arg, w->relid))
					continue;
				next = ps;
				break;
			}
			if (!looked)
			{
				target = table_target(store, w->relid);
				looked = true;
			}
			if (ps->target == NULL || target == NULL || strcmp(ps->target, target) == 0)
			{
				next = ps;
				break;
			}
		}
		if (next == NULL)
			return;
		drain_paged_scan(next);
	}
}

/*
 * Immediate mode: send what the batch holds (when full, when something
 * else uses a store, at the end of the statement).  The batch is taken
 * and unlisted first: sending may take a connection from the cache, which
 * sends the unsent batches.  A failure names what the statement's earlier
 * batches applied: ROLLBACK (TO SAVEPOINT) does not take them back.
 */
void
PgpolyWriterFlush(PgpolyWriter *w)
{
	List	   *batch = w->pending;
	PgpolySendProgress progress = {"write_mode 'immediate'", "write", "this statement",
	"earlier batches", w->sent, 0};

	if (batch == NIL)
		return;
	w->pending = NIL;
	w->in_row = false;
	writer_unlist(w);
	drain_paged_scans(w);
	PgpolySendProgressPush(&progress);
	w->send(w->conn, batch);
	PgpolySendProgressPop(&progress);
	w->sent += list_length(batch);
	MemoryContextReset(w->batch_cxt);
}

/*
 * Whether a read of foreign table relid overlays the buffered write w,
 * made through the table w->relid of the same connection.  A table reads
 * its own writes; another table's transactional writes too when the store
 * says the two address the same rows (PgpolyStore.shares_writes: a
 * feature view's serving table and the user's online table over the same
 * Redis keys), so that COMMIT sends what each read said, in write order.
 * Outbox writes of another table are not: the sync worker decides what
 * they do when it delivers them.  decided[1] and decided[0] cache the
 * tables the store said share relid's rows and those it said do not
 * (Lists of Oid), for one PgpolyPendingWrites.
 */
static bool
overlays_write(PgpolyConnection *conn, Oid relid, PgpolyWrite *w, List **decided)
{
	bool		shares;

	if (w->relid == relid)
		return true;
	if (w->outbox || conn->store->shares_writes == NULL)
		return false;
	if (list_member_oid(decided[1], w->relid))
		return true;
	if (list_member_oid(decided[0], w->relid))
		return false;
	shares = conn->store->shares_writes(relid, w->payload);
	decided[shares] = lappend_oid(decided[shares], w->relid);
	return shares;
}

/*
 * The pending writes that a read of relid on conn overlays (its own, and
 * those of the tables that share its rows: overlays_write), in write
 * order, as a new list (in the caller's memory context) of PgpolyWrite
 * pointers.  A scan node takes this once at its start (PgpolyScanBegin),
 * so it sees the writes of earlier statements only, over every rescan and
 * FETCH.  Writes made for another target than the one the table names now
 * (an ALTER FOREIGN TABLE of its index or collection, or a RENAME when the
 * name is the target, since they were made) are left out: COMMIT sends
 * them to their own target, which the table no longer reads.
 */
List *
PgpolyPendingWrites(PgpolyConnection *conn, Oid relid)
{
	List	   *result = NIL;
	List	   *decided[2] = {NIL, NIL};
	ListCell   *lc;
	char	   *target = NULL;
	bool		looked = false;

	foreach(lc, conn->writes)
	{
		PgpolyWrite *w = lfirst(lc);

		if (!overlays_write(conn, relid, w, decided))
			continue;
		if (!looked)
		{
			target = table_target(conn->store, relid);
			looked = true;
		}
		if (target != NULL && w->target != NULL && strcmp(target, w->target) != 0)
			continue;
		result = lappend(result, w);
	}
	list_free(decided[0]);
	list_free(decided[1]);
	return result;
}

/*
 * QueryCancelHoldoffCount from before the COMMIT-time flush held cancels,
 * or -1 when it holds none.
 */
static int	CancelHeldFrom = -1;

/* What a COMMIT-time flush is doing, for its error context. */
typedef struct FlushState
{
	PgpolyConnection *conn;		/* being flushed */
	List	   *sent;			/* connections this COMMIT already flushed */
} FlushState;

/*
 * Error context of a COMMIT-time flush: the outcome may be in doubt
 * (unless the store settled it, as a Redis EXEC aborted by WATCH does), and
 * the servers flushed before this one keep what they applied (the stores
 * have no two-phase commit): name them, since PostgreSQL reports the
 * COMMIT as failed and rolls its own changes back.  A cancel held since
 * the first send (hold_cancel_for_send) did not cause the error: say so,
 * or a user who cancelled would take the error for the cancel's.
 */
static void
flush_error_callback(void *arg)
{
	FlushState *fs = arg;
	PgpolyConnection *conn = fs->conn;
	StringInfoData done;
	ListCell   *lc;

	if (conn->flush_settled)
		errcontext("sending the transaction's buffered writes to %s server \"%s\" at COMMIT",
				   conn->store->label, conn->servername);
	else
		errcontext("sending the transaction's buffered writes to %s server \"%s\" at COMMIT; "
				   "if the server stopped answering after receiving them, it may still apply them",
				   conn->store->label, conn->servername);
	if (CancelHeldFrom >= 0 && QueryCancelPending)
		errcontext("a query cancel (pg_cancel_backend or statement_timeout) came while this COMMIT was sending "
				   "and was held, so as not to roll back what the stores applied: "
				   "it did not cause this error");
	if (fs->sent == NIL)
		return;
	initStringInfo(&done);
	foreach(lc, fs->sent)
	{
		PgpolyConnection *c = lfirst(lc);
		int			i = foreach_current_index(lc);

		if (i > 0)
			appendStringInfoString(&done, i == list_length(fs->sent) - 1 ? " and " : ", ");
		appendStringInfo(&done, "%s server \"%s\"", c->store->label, c->servername);
	}
	errcontext("this COMMIT had already sent the transaction's writes to %s, which applied them: "
			   "they stay written (the stores have no two-phase commit)", done.data);
}

/*
 * Hold query cancels (pg_cancel_backend, statement_timeout) before the
 * COMMIT's first write request goes to a store: from then on the store may
 * apply writes, and a cancel that rolled PostgreSQL back would leave them
 * applied.  A cancel held here is serviced when the COMMIT has ended
 * (release_cancel_hold); the backend is idle by then and PostgreSQL
 * ignores it, so the COMMIT completes.  A cancel that came earlier still
 * cancels the COMMIT, before anything was sent.  Termination is not held,
 * and each request stays bounded by the server's timeout_ms.
 */
static void
hold_cancel_for_send(void)
{
	if (CancelHeldFrom >= 0)
		return;
	CHECK_FOR_INTERRUPTS();
	CancelHeldFrom = QueryCancelHoldoffCount;
	HOLD_CANCEL_INTERRUPTS();
}

/*
 * At the transaction's end (commit or abort): restore the holdoff count
 * hold_cancel_for_send() found.  Restored, not decremented: an ERROR has
 * already reset it to 0 (errfinish) on the way to the abort.  Held until
 * the end, not only through the flush, so that no check for interrupts in
 * the rest of CommitTransaction (other callbacks, ON COMMIT actions) can
 * roll back a transaction whose writes the stores applied.
 */
static void
release_cancel_hold(void)
{
	if (CancelHeldFrom < 0)
		return;
	QueryCancelHoldoffCount = CancelHeldFrom;
	CancelHeldFrom = -1;
}

/*
 * Send one connection's writes through its store, connected; outbox writes
 * are not sent (a connection holding only those is not even opened).
 * sent: the connections this COMMIT flushed before, for the error context.
 * Returns whether anything was sent.
 */
static bool
flush_connection(PgpolyConnection *conn, List *sent)
{
	List	   *payloads = NIL;
	ListCell   *lc;
	ErrorContextCallback errcb;
	FlushState	fs;

	foreach(lc, conn->writes)
		if (!((PgpolyWrite *) lfirst(lc))->outbox)
			payloads = lappend(payloads, ((PgpolyWrite *) lfirst(lc))->payload);
	if (payloads == NIL)
		return false;
	fs.conn = conn;
	fs.sent = sent;
	errcb.callback = flush_error_callback;
	errcb.arg = &fs;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	conn->flush_settled = true;	/* nothing sent yet */
	PgpolyEnsureConnected(conn);
	hold_cancel_for_send();
	conn->flush_settled = false;
	conn->store->flush(conn, payloads);
	error_context_stack = errcb.previous;
	list_free(payloads);
	return true;
}

/* Whether conn holds writes that COMMIT sends (not outbox ones). */
static bool
sends_writes(PgpolyConnection *conn)
{
	ListCell   *lc;

	foreach(lc, conn->writes)
		if (!((PgpolyWrite *) lfirst(lc))->outbox)
			return true;
	return false;
}

/*
 * Before the writes are sent: a connection that read under session state
 * (Redis WATCH) but writes nothing cannot check that state with writes of
 * its own, yet what the transaction read through it may be written back
 * through another connection of the store (another user mapping, such as
 * a view owner's, or another server).  Its store checks it first
 * (check_reads): a value read there and changed since fails the COMMIT
 * before anything is sent.
 */
static void
check_reads(void)
{
	List	   *watching = PgpolyWatchingConnections();
	ListCell   *lc;

	foreach(lc, watching)
	{
		PgpolyConnection *conn = lfirst(lc);
		ListCell   *lw;
		bool		others = false;

		if (conn->store->check_reads == NULL || sends_writes(conn))
			continue;
		foreach(lw, WritingConnections)
		{
			PgpolyConnection *w = lfirst(lw);

			others |= w->store == conn->store && sends_writes(w);
		}
		if (others)
		{
			PgpolyEnsureConnected(conn);
			conn->store->check_reads(conn);
		}
	}
	list_free(watching);
}

/* Send every connection's writes; an ERROR here fails the COMMIT. */
static void
flush_all(void)
{
	List	   *sent = NIL;
	ListCell   *lc;

	foreach(lc, WritingConnections)
	{
		PgpolyConnection *conn = lfirst(lc);

		if (conn->writes != NIL)
		{
			if (flush_connection(conn, sent))
				sent = lappend(sent, conn);
			conn->writes = NIL;
		}
	}
	list_free(sent);
}

/*
 * Whether any connection still holds writes (savepoints may have emptied
 * them), or outbox changes wait for COMMIT.
 */
static bool
has_pending_writes(void)
{
	ListCell   *lc;

	if (OutboxChanges != NIL)
		return true;
	foreach(lc, WritingConnections)
		if (((PgpolyConnection *) lfirst(lc))->writes != NIL)
			return true;
	return false;
}

/*
 * Pre-commit: check the reads of connections that write nothing
 * (check_reads), queue the outbox changes, then send the transactional
 * writes.  Sending is last because it is the one step that cannot be taken
 * back: queueing may still fail (it waits for the commit-order locks of its
 * keys, so lock_timeout, a cancel or a deadlock can end it), and a COMMIT
 * that fails then must not have written anything to the stores.
 */
static void
pre_commit(void)
{
	check_reads();
	if (OutboxChanges != NIL)
	{
		SyncQueueChanges(OutboxChanges);
		OutboxChanges = NIL;
	}
	flush_all();
}

/* Top-level transaction callback. */
static void
xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			pre_commit();
			break;
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			flush_all();
			break;
		case XACT_EVENT_PRE_PREPARE:
			if (has_pending_writes())
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that has buffered pgpoly writes"),
						 errdetail("The foreign stores have no two-phase commit.")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			release_cancel_hold();
			unlist_aborted(InvalidSubTransactionId);
			PgpolyModifyingAbort(InvalidSubTransactionId);
			WritingConnections = NIL;
			OutboxChanges = NIL;
			XactTables = NIL;
			PgpolyConnectionsAtXactEnd(event != XACT_EVENT_ABORT &&
									   event != XACT_EVENT_PARALLEL_ABORT);
			break;
	}
}

/*
 * Subtransaction callback: on abort drop the writes made at or below the
 * aborted level; on commit (RELEASE) give them to the parent level.
 */
static void
subxact_callback(SubXactEvent event, SubTransactionId mySubid,
				 SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	ListCell   *lc;

	if (event != SUBXACT_EVENT_ABORT_SUB && event != SUBXACT_EVENT_COMMIT_SUB)
		return;
	PgpolyConnectionsAtSubEnd(event == SUBXACT_EVENT_COMMIT_SUB);
	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		unlist_aborted(mySubid);
		PgpolyModifyingAbort(mySubid);
	}

	foreach(lc, OutboxChanges)
	{
		PgpolyChange *c = lfirst(lc);

		if (c->level < level)
			continue;
		if (event == SUBXACT_EVENT_COMMIT_SUB)
			c->level = level - 1;
		else
			OutboxChanges = foreach_delete_current(OutboxChanges, lc);
	}

	foreach(lc, WritingConnections)
	{
		PgpolyConnection *conn = lfirst(lc);
		ListCell   *wc;

		foreach(wc, conn->writes)
		{
			PgpolyWrite *w = lfirst(wc);

			if (w->level < level)
				continue;
			if (event == SUBXACT_EVENT_COMMIT_SUB)
				w->level = level - 1;
			else
				conn->writes = foreach_delete_current(conn->writes, wc);
		}
	}
}

/* Register the callbacks (once per backend). */
void
PgpolyXactInit(void)
{
	RegisterXactCallback(xact_callback, NULL);
	RegisterSubXactCallback(subxact_callback, NULL);
	CacheRegisterRelcacheCallback(relcache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(FOREIGNTABLEREL, syscache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(FOREIGNSERVEROID, syscache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(USERMAPPINGOID, syscache_callback, (Datum) 0);
}
