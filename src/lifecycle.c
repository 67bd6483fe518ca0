/*-------------------------------------------------------------------------
 *
 * lifecycle.c
 *		  The life of a foreign scan and of a foreign modification, the same
 *		  for every store.
 *
 * A store's scan and modify callbacks embed a PgpolyScanState or a
 * PgpolyModifyState as the first member of their own state and leave to
 * the core what every store would otherwise repeat:
 *	- whose user mapping is used: the plan's checkAsUser (fdwutil.c), so a
 *	  view owned by another role reads and writes with its owner's mapping;
 *	- the connection, from the cache;
 *	- memory.  The state of a node lives in the executor's query memory.  A
 *	  scan has a context for the state of one (re)scan, reset by ReScan,
 *	  and one for the current row (or round), reset per row and by ReScan;
 *	  so a correlated subquery rescanning a foreign table 20k times ends
 *	  where it began.  A modification has a context reset per row (or per
 *	  batch).  Nothing of a statement goes to TopTransactionContext but the
 *	  writes it buffers for COMMIT; the table descriptor they point into is
 *	  loaded there once per transaction and table (PgpolyXactTable), so
 *	  20k single-row statements in one transaction do not grow it either;
 *	- read-your-writes: the writes buffered for the table are taken once,
 *	  when the node starts (ExecutorStart: at the start of a statement, at
 *	  a cursor's DECLARE), and kept over rescans; so a scan sees the writes
 *	  of earlier statements only, as a snapshot would: not its own
 *	  statement's (a correlated subquery rescanned after the statement's
 *	  first insert), nor those made between a cursor's DECLARE and FETCH;
 *	- a new row is checked, before the store gets it, against the bounds
 *	  of a foreign partition and, in write_mode 'immediate', the WITH
 *	  CHECK OPTION of the views written through (PgpolyModifyCheckRow);
 *	- for a modification: write_mode and batch_size, the writer, the
 *	  columns an UPDATE assigns (and per row those its BEFORE ROW UPDATE
 *	  triggers change), the identity (junk) columns of the old row,
 *	  and INSERT ... ON CONFLICT: DO NOTHING is passed to the store, which
 *	  must make the insert conditional (an existing key is never
 *	  overwritten) and report which rows it inserted; DO UPDATE, and a
 *	  conflict target other than the columns that identify a row (the
 *	  store's conflict_columns), are ERRORs;
 *	- write_mode 'outbox': the modification opens no connection, refuses ON
 *	  CONFLICT (whether a key exists can only be known when the change is
 *	  delivered), and captures each row change for the outbox (outbox.c):
 *	  INSERTs here, UPDATEs and DELETEs when the store's callbacks call
 *	  PgpolyModifyOutbox().  The store builds and checks its payloads as in
 *	  transactional mode; the writer buffers them for the transaction's
 *	  reads only.
 *
 * PostgreSQL finds no arbiter index on a foreign table, so it refuses
 * ON CONFLICT (col) DO NOTHING before any FDW callback runs; a planner hook
 * checks the target against the store's conflict_columns and removes it.  The
 * hook exists once the library is loaded (any earlier use of pgpoly in the
 * session, or session_preload_libraries); before that PostgreSQL's own
 * ERROR stands, which refuses the statement but never overwrites.
 *
 * src/lifecycle.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "foreign/foreign.h"
#include "nodes/execnodes.h"
#include "nodes/plannodes.h"
#include "optimizer/planner.h"
#include "parser/parsetree.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/float.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "pgpoly.h"

/* The stores _PG_init registered (at most one per wrapper). */
#define MAX_STORES 4
static const PgpolyStore *Stores[MAX_STORES];
static int	NumStores = 0;

static planner_hook_type prev_planner_hook = NULL;

/* ----------------------------------------------------------------
 *		Stores and connections
 * ----------------------------------------------------------------
 */

/* Make store known to the core (from _PG_init). */
void
PgpolyRegisterStore(const PgpolyStore *store)
{
	if (NumStores >= MAX_STORES)
		elog(ERROR, "too many pgpoly stores");
	Stores[NumStores++] = store;
}

/* The store of foreign table relid, or NULL if pgpoly does not serve it. */
const PgpolyStore *
PgpolyStoreOf(Oid relid)
{
	ForeignTable *ft = GetForeignTable(relid);
	ForeignDataWrapper *fdw = GetForeignDataWrapper(GetForeignServer(ft->serverid)->fdwid);
	FmgrInfo	finfo;

	if (!OidIsValid(fdw->fdwhandler))
		return NULL;
	fmgr_info(fdw->fdwhandler, &finfo);
	for (int i = 0; i < NumStores; i++)
		if (Stores[i]->handler == finfo.fn_addr)
			return Stores[i];
	return NULL;
}

/* The cached connection for relid's server and userid's user mapping. */
PgpolyConnection *
PgpolyTableConnection(const PgpolyStore *store, Oid relid, Oid userid)
{
	ForeignServer *server;

	if (store->table_connection)
		return store->table_connection(relid, userid);
	server = GetForeignServer(GetForeignTable(relid)->serverid);

	return PgpolyGetConnection(store, server,
							   PgpolyGetUserMapping(userid, server->serverid));
}

/* ----------------------------------------------------------------
 *		Scans
 * ----------------------------------------------------------------
 */

/*
 * BeginForeignScan for every store: allocate the store's scan state (size
 * bytes, PgpolyScanState first) in the query memory, resolve the table, the
 * user and, unless EXPLAIN only, the connection and the table's buffered
 * writes (which every rescan reads through); no I/O.  Sets node->fdw_state
 * and returns it.
 */
void *
PgpolyScanBegin(Size size, const PgpolyStore *store, ForeignScanState *node,
				int eflags)
{
	EState	   *estate = node->ss.ps.state;
	ForeignScan *fs = (ForeignScan *) node->ss.ps.plan;
	PgpolyScanState *ss;

	Assert(size >= sizeof(PgpolyScanState));
	ss = MemoryContextAllocZero(estate->es_query_cxt, size);
	ss->relid = exec_rt_fetch(PgpolyScanRelid(fs), estate)->relid;
	ss->userid = PgpolyScanUser(node);
	if (!(eflags & EXEC_FLAG_EXPLAIN_ONLY))
	{
		ss->conn = PgpolyTableConnection(store, ss->relid, ss->userid);
		ss->pending = PgpolyPendingWrites(ss->conn, ss->relid);
	}
	ss->scan_cxt = AllocSetContextCreate(estate->es_query_cxt, "pgpoly scan",
										 ALLOCSET_DEFAULT_SIZES);
	ss->row_cxt = AllocSetContextCreate(estate->es_query_cxt, "pgpoly scan row",
										ALLOCSET_DEFAULT_SIZES);
	node->fdw_state = ss;
	return ss;
}

/*
 * Start the current (re)scan: switch to the scan's memory, where the store
 * builds what the scan needs (reading through ss->pending).  Returns the
 * context to switch back to.
 */
MemoryContext
PgpolyScanStart(PgpolyScanState *ss)
{
	MemoryContext old = MemoryContextSwitchTo(ss->scan_cxt);

	ss->started = true;
	return old;
}

/*
 * Switch to a fresh row context for the next row (the previous row's
 * datums are gone).  Returns the context to switch back to.
 */
MemoryContext
PgpolyScanRow(PgpolyScanState *ss)
{
	MemoryContextReset(ss->row_cxt);
	return MemoryContextSwitchTo(ss->row_cxt);
}

/*
 * ReScanForeignScan for every store: forget the scan (its memory is
 * reset; the store drops its pointers into it); the next row starts anew.
 */
void
PgpolyScanRescan(PgpolyScanState *ss)
{
	MemoryContextReset(ss->scan_cxt);
	MemoryContextReset(ss->row_cxt);
	ss->started = false;
}

/* EndForeignScan for every store: free the scan's memory now. */
void
PgpolyScanEnd(PgpolyScanState *ss)
{
	if (ss == NULL)
		return;
	MemoryContextDelete(ss->scan_cxt);
	MemoryContextDelete(ss->row_cxt);
	ss->scan_cxt = ss->row_cxt = NULL;
}

/* ----------------------------------------------------------------
 *		Modifications
 * ----------------------------------------------------------------
 */

/* ERROR for INSERT ... ON CONFLICT DO UPDATE on relid. */
static void
refuse_do_update(Oid relid)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("ON CONFLICT DO UPDATE is not supported on foreign table \"%s\"",
					get_rel_name(relid)),
			 errdetail("pgpoly inserts with ON CONFLICT DO NOTHING only: an existing key is left untouched."),
			 errhint("Use ON CONFLICT DO NOTHING, then UPDATE the rows that conflicted.")));
}

/* The names of the attnums cols of relid, "a, b", for messages. */
static char *
column_names(Oid relid, List *cols)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, cols)
		appendStringInfo(&buf, "%s%s", buf.len ? ", " : "",
						 quote_identifier(get_attname(relid, lfirst_int(lc), false)));
	return buf.data;
}

/*
 * Whether an ON CONFLICT target (arbiter InferenceElem list, WHERE) names
 * exactly the columns cols of the result relation, as plain as written: no
 * COLLATE, operator class or WHERE.
 */
static bool
target_is(OnConflictExpr *oc, List *cols, Index resultRelation)
{
	Bitmapset  *named = NULL;
	ListCell   *lc;

	if (oc->arbiterWhere != NULL || list_length(oc->arbiterElems) != list_length(cols))
		return false;
	foreach(lc, oc->arbiterElems)
	{
		InferenceElem *ie = lfirst(lc);
		Var		   *v = (Var *) ie->expr;

		if (v == NULL || !IsA(v, Var) || v->varno != resultRelation ||
			!list_member_int(cols, v->varattno) || bms_is_member(v->varattno, named) ||
			OidIsValid(ie->infercollid) || OidIsValid(ie->inferopclass))
			return false;
		named = bms_add_member(named, v->varattno);
	}
	return true;
}

/*
 * Check INSERT ... ON CONFLICT on foreign table relid of store: DO UPDATE
 * is refused; DO NOTHING needs a table where a conflict has a meaning, and
 * a conflict target must be the columns that identify a row.
 */
static void
check_on_conflict(const PgpolyStore *store, Oid relid, OnConflictExpr *oc,
				  Index resultRelation)
{
	List	   *cols;

	if (oc->action == ONCONFLICT_UPDATE)
		refuse_do_update(relid);
	cols = store->conflict_columns(relid);
	if (oc->arbiterElems == NIL && oc->arbiterWhere == NULL)
		return;
	if (!target_is(oc, cols, resultRelation))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
				 errmsg("the ON CONFLICT target of foreign table \"%s\" must be (%s)",
						get_rel_name(relid), column_names(relid, cols)),
				 errdetail("%s identifies a row of the table by %s.", store->label,
						   list_length(cols) > 1 ? "these columns" : "this column"),
				 errhint("Write ON CONFLICT (%s) DO NOTHING, or ON CONFLICT DO NOTHING without a target.",
						 column_names(relid, cols))));
}

/*
 * Check the ON CONFLICT clauses of q and of its WITH queries that insert
 * into pgpoly tables; drop a valid target, which PostgreSQL would look for
 * in a unique index that a foreign table cannot have.
 */
static void
plan_on_conflict(Query *q)
{
	RangeTblEntry *rte;
	const PgpolyStore *store;
	ListCell   *lc;

	foreach(lc, q->cteList)
	{
		CommonTableExpr *cte = lfirst(lc);

		if (IsA(cte->ctequery, Query))
			plan_on_conflict((Query *) cte->ctequery);
	}
	if (q->commandType != CMD_INSERT || q->onConflict == NULL)
		return;
	rte = rt_fetch(q->resultRelation, q->rtable);
	if (rte->relkind != RELKIND_FOREIGN_TABLE ||
		(store = PgpolyStoreOf(rte->relid)) == NULL)
		return;
	check_on_conflict(store, rte->relid, q->onConflict, q->resultRelation);
	q->onConflict->arbiterElems = NIL;
	q->onConflict->arbiterWhere = NULL;
}

/*
 * planner_hook: ON CONFLICT on pgpoly tables, then plan as usual.
 * PostgreSQL 19 passes the EXPLAIN state along.
 */
#if PG_VERSION_NUM >= 190000
#define PLANNER_ARGS_DECL	, ExplainState *es
#define PLANNER_ARGS		, es
#else
#define PLANNER_ARGS_DECL
#define PLANNER_ARGS
#endif
static PlannedStmt *
lifecycle_planner(Query *parse, const char *query_string, int cursorOptions,
				  ParamListInfo boundParams PLANNER_ARGS_DECL)
{
	plan_on_conflict(parse);
	if (prev_planner_hook)
		return prev_planner_hook(parse, query_string, cursorOptions, boundParams
								 PLANNER_ARGS);
	return standard_planner(parse, query_string, cursorOptions, boundParams
							PLANNER_ARGS);
}

/*
 * PlanForeignModify's ON CONFLICT check (fdwutil.c): without the planner
 * hook's target information, the action and the table.
 */
void
PgpolyPlanOnConflict(ModifyTable *plan, Oid relid)
{
	const PgpolyStore *store;

	if (plan->onConflictAction == ONCONFLICT_NONE)
		return;
	if (plan->onConflictAction == ONCONFLICT_UPDATE)
		refuse_do_update(relid);
	store = PgpolyStoreOf(relid);
	if (store)
		(void) store->conflict_columns(relid);
}

/*
 * The cache entry for relid's server and userid's user mapping, checked by
 * the trust rule but not connected (write_mode 'outbox').
 */
static PgpolyConnection *
table_connection_entry(const PgpolyStore *store, Oid relid, Oid userid)
{
	ForeignServer *server = GetForeignServer(GetForeignTable(relid)->serverid);

	return PgpolyGetConnectionEntry(store, server,
									PgpolyGetUserMapping(userid, server->serverid));
}

/* ERROR for INSERT ... ON CONFLICT DO NOTHING on an outbox table. */
static void
refuse_outbox_on_conflict(Oid relid)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("ON CONFLICT is not supported on foreign table \"%s\" in write_mode 'outbox'",
					get_rel_name(relid)),
			 errdetail("Whether a row exists in the store is known only when the sync worker delivers the change."),
			 errhint("Use write_mode 'transactional' for conditional inserts, or a plain INSERT, which overwrites.")));
}

/* The batch_size option of relid, or dflt. */
static int
table_batch_size(List *options, int dflt)
{
	return (int) PgpolyGetIntOption(options, "batch_size", dflt);
}

/*
 * Once the store has loaded its table: find its row-identity columns in
 * the plan's rows, junk column i carrying column atts[i] (0: none) under
 * the name PgpolyAddRowIdentity gave it from names[i] (a NULL-terminated
 * list).  Nothing for an INSERT, COPY or tuple routing.
 */
void
PgpolyModifyFindJunk(PgpolyModifyState *ms, const char *const *names,
					 const AttrNumber *atts)
{
	TupleDesc	desc = RelationGetDescr(ms->rinfo->ri_RelationDesc);

	for (int i = 0; names[i] && i < PGPOLY_MAX_JUNK; i++)
		ms->id_atts[i] = atts[i];
	for (int i = 0; ms->plan_tlist && names[i] && i < PGPOLY_MAX_JUNK; i++)
		if (atts[i] != InvalidAttrNumber)
			ms->junk[i] = ExecFindJunkAttributeInTlist(ms->plan_tlist,
													   PgpolyJunkName(names[i], desc,
																	  atts[i]));
}

/*
 * The part of PgpolyModifyBegin every modification shares, the plan's
 * ModifyTable aside: allocate the store's state (size bytes,
 * PgpolyModifyState first) in estate's query memory, resolve the table,
 * the user, the connection, write_mode and batch_size (default
 * default_batch_size), and set the writer up with send for immediate mode.
 * Sets rinfo->ri_FdwState and returns it.
 */
static PgpolyModifyState *
modify_begin(Size size, const PgpolyStore *store, EState *estate,
			 ResultRelInfo *rinfo, int default_batch_size, PgpolySendWrites send)
{
	MemoryContext old = MemoryContextSwitchTo(estate->es_query_cxt);
	PgpolyModifyState *ms = palloc0(Max(size, sizeof(PgpolyModifyState)));
	ForeignTable *ft;
	PgpolyWriteMode mode;

	ms->relid = RelationGetRelid(rinfo->ri_RelationDesc);
	ms->rinfo = rinfo;
	ms->userid = PgpolyModifyUser(rinfo, estate);
	ft = GetForeignTable(ms->relid);
	mode = PgpolyTableWriteMode(ft->options);
	ms->transactional = mode != PGPOLY_WRITE_IMMEDIATE;
	ms->outbox = mode == PGPOLY_WRITE_OUTBOX;
	if (!ms->outbox)
		PgpolyCheckOutboxDrained(ms->relid);	/* or older changes overwrite it */
	ms->conn = ms->outbox ? table_connection_entry(store, ms->relid, ms->userid) :
		PgpolyTableConnection(store, ms->relid, ms->userid);
	ms->batch_size = table_batch_size(ft->options, default_batch_size);
	PgpolyWriterInit(&ms->writer, ms->conn, ms->relid, mode,
					 ms->batch_size, send, estate->es_query_cxt);
	ms->row_cxt = AllocSetContextCreate(estate->es_query_cxt, "pgpoly modify row",
										ALLOCSET_DEFAULT_SIZES);
	rinfo->ri_FdwState = ms;
	MemoryContextSwitchTo(old);
	return ms;
}

/*
 * The UPDATE and DELETE states running row by row in this backend, of
 * every statement being executed (a trigger's or a function's nested one
 * and the statement that runs it): listed from PgpolyModifyBegin until
 * their statement's memory goes.
 */
static dlist_head ModifyingStates = DLIST_STATIC_INIT(ModifyingStates);

/* MemoryContextCallback: the statement of UPDATE or DELETE state arg ends. */
static void
unlist_modifying(void *arg)
{
	PgpolyModifyState *ms = arg;

	if (ms->modifying_listed)
		dlist_delete(&ms->modifying_node);
	ms->modifying_listed = false;
}

/* List the UPDATE or DELETE state ms until its statement ends. */
static void
list_modifying(PgpolyModifyState *ms, EState *estate)
{
	ms->unlist.func = unlist_modifying;
	ms->unlist.arg = ms;
	MemoryContextRegisterResetCallback(estate->es_query_cxt, &ms->unlist);
	ms->modifying_subid = GetCurrentSubTransactionId();
	ms->modifying_listed = true;
	dlist_push_tail(&ModifyingStates, &ms->modifying_node);
}

/*
 * (Sub)transaction abort (subid: of subtransactions started at or after
 * it; InvalidSubTransactionId: all, and at commit): the UPDATEs and
 * DELETEs of the statements that failed stop running, and the others
 * forget the rows inserted there, which a native table no longer holds
 * (a function's INSERT in a block whose EXCEPTION clause caught an error).
 */
void
PgpolyModifyingAbort(SubTransactionId subid)
{
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &ModifyingStates)
	{
		PgpolyModifyState *ms = dlist_container(PgpolyModifyState, modifying_node,
												iter.cur);
		HASH_SEQ_STATUS seq;
		PgpolyInsertedRow *e;

		if (subid == InvalidSubTransactionId || ms->modifying_subid >= subid)
		{
			unlist_modifying(ms);
			continue;
		}
		if (ms->inserted == NULL)
			continue;
		hash_seq_init(&seq, ms->inserted);
		while ((e = hash_seq_search(&seq)) != NULL)
			if (e->subid >= subid)
				(void) hash_search(ms->inserted, &e->id, HASH_REMOVE, NULL);
	}
}

/*
 * An UPDATE or DELETE of a table that another node of the same statement
 * modifies too (a data-modifying WITH query and the main statement): one
 * row met by both is modified once, by the node that meets it first, as
 * PostgreSQL does (the other finds it modified by the command and skips
 * it).  So the nodes share one record of the rows modified
 * (PgpolyModifyAgain), made by the first of them to begin (the executor
 * begins every node before any runs).  Rows are told apart by their junk
 * columns, which every node of one table carries alike.
 */
static void
share_met(PgpolyModifyState *ms, EState *estate)
{
	int			nodes = 0;
	ListCell   *lc;

	foreach(lc, estate->es_plannedstmt->resultRelations)
		if (exec_rt_fetch(lfirst_int(lc), estate)->relid == ms->relid)
			nodes++;
	if (nodes < 2)
		return;
	ms->joined = true;
	foreach(lc, estate->es_opened_result_relations)
	{
		ResultRelInfo *other = lfirst(lc);
		PgpolyModifyState *oms = other->ri_FdwState;

		if (other != ms->rinfo && oms != NULL && oms->met != NULL &&
			RelationGetRelid(other->ri_RelationDesc) == ms->relid)
		{
			ms->met = oms->met;
			return;
		}
	}
	ms->met = PgpolyKeyTable("pgpoly rows modified", sizeof(PgpolyKeyRef),
							 estate->es_query_cxt);
}

/*
 * BeginForeignModify (fdw_private from PlanForeignModify) and
 * BeginForeignInsert (COPY FROM, tuple routing: fdw_private NIL) for every
 * store: modify_begin, then ON CONFLICT DO NOTHING, the assigned columns
 * and the plan's rows (the store then finds its junk columns there:
 * PgpolyModifyFindJunk).  Sets rinfo->ri_FdwState and returns it; except
 * where an UPDATE through a partitioned table moves a row into a partition
 * it updates too: PostgreSQL routes the row to the partition's own
 * ResultRelInfo, whose state stays the UPDATE's (its rows still to come
 * need their junk columns, its scan the state) and holds the INSERT's as
 * routed (PgpolyExecInsert; PgpolyModifyEnd ends both).  In immediate
 * mode the rows moved in are held until the UPDATE has read all its rows
 * (mt_done; then what uses a store first sends them, PgpolySendUnsentWrites:
 * its AFTER triggers find them) or ends: the partition's scan, which may
 * not have read yet, must not meet them (it would update them again, where
 * PostgreSQL's scan of a native partition does not see the rows its
 * statement adds).
 */
void *
PgpolyModifyBegin(Size size, const PgpolyStore *store, ModifyTableState *mtstate,
				  ResultRelInfo *rinfo, List *fdw_private, int default_batch_size,
				  PgpolySendWrites send)
{
	EState	   *estate = mtstate->ps.state;
	ModifyTable *plan = (ModifyTable *) mtstate->ps.plan;
	PgpolyModifyState *updating = fdw_private == NIL ? rinfo->ri_FdwState : NULL;
	PgpolyModifyState *ms = modify_begin(size, store, estate, rinfo,
										 default_batch_size, send);
	MemoryContext old = MemoryContextSwitchTo(estate->es_query_cxt);
	ListCell   *lc;

	ms->inserting = fdw_private == NIL || mtstate->operation == CMD_INSERT;
	if (updating != NULL)
	{
		updating->routed = ms;
		ms->writer.held = !ms->transactional;
		ms->writer.held_until = &mtstate->mt_done;
		rinfo->ri_FdwState = updating;
	}
	if (plan != NULL && IsA(plan, ModifyTable))
	{
		PgpolyPlanOnConflict(plan, ms->relid);
		ms->do_nothing = plan->onConflictAction == ONCONFLICT_NOTHING;
		if (ms->do_nothing && ms->outbox)
			refuse_outbox_on_conflict(ms->relid);
	}
	if (fdw_private != NIL)
	{
		foreach(lc, (List *) linitial(fdw_private))
			ms->assigned = bms_add_member(ms->assigned, lfirst_int(lc));
		ms->updated = ms->assigned;
		ms->joined = list_length(fdw_private) > 1 && intVal(lsecond(fdw_private)) != 0;
		ms->plan_tlist = outerPlanState(mtstate)->plan->targetlist;
		/* the whole old row (PgpolyAddOldRow; PostgreSQL's for UPDATE) */
		ms->junk_row = ExecFindJunkAttributeInTlist(ms->plan_tlist, "wholerow");
		if (mtstate->operation != CMD_INSERT)
		{
			share_met(ms, estate);
			list_modifying(ms, estate);
		}
		if (mtstate->operation == CMD_UPDATE && rinfo->ri_TrigDesc &&
			rinfo->ri_TrigDesc->trig_update_before_row)
			ms->old_row = ms->junk_row;
	}
	MemoryContextSwitchTo(old);
	return ms;
}

/*
 * BeginDirectModify for a store: the modification of rinfo that a foreign
 * scan node performs by itself (UPDATE of the columns assigned, or DELETE
 * with assigned NULL), as PgpolyModifyBegin sets it up.  No plan row
 * carries junk columns: the store passes a row holding the identity as
 * both the row and the plan row of PgpolyModifyOutbox, and sets junk[0] to
 * the identity column.  Sets rinfo->ri_FdwState and returns it.
 */
void *
PgpolyDirectModifyBegin(Size size, const PgpolyStore *store, EState *estate,
						ResultRelInfo *rinfo, List *assigned,
						int default_batch_size, PgpolySendWrites send)
{
	PgpolyModifyState *ms = modify_begin(size, store, estate, rinfo,
										 default_batch_size, send);
	MemoryContext old = MemoryContextSwitchTo(estate->es_query_cxt);
	ListCell   *lc;

	foreach(lc, assigned)
		ms->assigned = bms_add_member(ms->assigned, lfirst_int(lc));
	ms->updated = ms->assigned;
	list_modifying(ms, estate);
	MemoryContextSwitchTo(old);
	return ms;
}

/*
 * The store's descriptor of the table being modified, from load().  Writes
 * buffered for COMMIT point into it, so in write_mode 'transactional' it is
 * the transaction's (loaded once per transaction); otherwise it is loaded
 * into the query memory, and goes with the statement.
 */
void *
PgpolyModifyTable(PgpolyModifyState *ms, PgpolyLoadTable load)
{
	MemoryContext old;
	void	   *tbl;

	if (ms->transactional)
		return PgpolyXactTable(ms->relid, ms->userid, load);
	old = MemoryContextSwitchTo(GetMemoryChunkContext(ms));
	tbl = load(ms->relid, ms->userid);
	MemoryContextSwitchTo(old);
	return tbl;
}

/*
 * Start one row (or one batch) of a modification: send the rows of the
 * table that other nodes of the statement wrote in write_mode 'immediate'
 * and hold unsent (a data-modifying WITH query's DELETE of the key this row
 * inserts), so the store gets the statement's writes in the order they
 * were made; then switch to a fresh context for the row's temporary data.
 * Returns the context to switch back to.
 */
MemoryContext
PgpolyModifyRow(PgpolyModifyState *ms)
{
	PgpolySendUnsentWrites(&ms->writer, ms->relid);
	MemoryContextReset(ms->row_cxt);
	return MemoryContextSwitchTo(ms->row_cxt);
}

/* The value of the store's junk column i in planSlot. */
Datum
PgpolyModifyJunk(PgpolyModifyState *ms, int i, TupleTableSlot *planSlot,
				 bool *isnull)
{
	if (ms->junk[i] == InvalidAttrNumber)
		elog(ERROR, "pgpoly: row identity column %d of \"%s\" is missing from the plan",
			 i, get_rel_name(ms->relid));
	return ExecGetJunkAttribute(planSlot, ms->junk[i], isnull);
}

/*
 * Append to id one identity column's value d (isnull) of type att: its
 * length first, so that ("ab", "c") is not ("a", "bc"), then its bytes.  A
 * value and a junk column carrying it append the same bytes (detoasted).
 * A float NaN appends one NaN's bytes: NaNs of other bits (Infinity minus
 * Infinity) are one key, "NaN", in a store, and read back as that one.
 */
static void
append_identity(StringInfo id, Datum d, bool isnull, Form_pg_attribute att)
{
	uint32		len;

	if (!isnull && att->attbyval && (att->attlen == 4 || att->attlen == 8))
	{
		Oid			typid = att->atttypid;

		if (typid >= FirstNormalObjectId)
			typid = getBaseType(typid);
		if (typid == FLOAT8OID && isnan(DatumGetFloat8(d)))
			d = Float8GetDatum(get_float8_nan());
		else if (typid == FLOAT4OID && isnan(DatumGetFloat4(d)))
			d = Float4GetDatum(get_float4_nan());
	}
	if (isnull)
		len = PG_UINT32_MAX;
	else if (att->attbyval)
		len = sizeof(Datum);
	else if (att->attlen == -1)
	{
		d = PointerGetDatum(PG_DETOAST_DATUM_PACKED(d));
		len = VARSIZE_ANY_EXHDR(d);
	}
	else
		len = att->attlen == -2 ? strlen(DatumGetCString(d)) : att->attlen;
	appendBinaryStringInfo(id, (char *) &len, sizeof(len));
	if (isnull)
		return;
	if (att->attbyval)
		appendBinaryStringInfo(id, (char *) &d, sizeof(Datum));
	else
		appendBinaryStringInfo(id, att->attlen == -1 ? VARDATA_ANY(d) :
							   DatumGetPointer(d), len);
}

/*
 * Whether the statement already updated or deleted the row of planSlot: an
 * UPDATE ... FROM or DELETE ... USING whose join matched it more than once.
 * PostgreSQL modifies such a row once, with the first match, and counts,
 * returns and triggers it once (the later matches find it modified by the
 * statement itself and skip it); a store's ExecForeignUpdate and
 * ExecForeignDelete return NULL when this says true.  Writing the row again
 * would count it twice, and, to a store that checks versions, fail or
 * delete it twice.  The identity is the row's junk columns (the same bytes
 * for every match of one scanned row); a statement without a FROM or USING
 * list, or a second node modifying the table (share_met), never keeps one.
 * Also true for a row another node of the statement inserted at that
 * identity (note_inserted): the row read there was replaced.
 */
bool
PgpolyModifyAgain(PgpolyModifyState *ms, TupleTableSlot *planSlot)
{
	TupleDesc	desc = planSlot->tts_tupleDescriptor;
	MemoryContext old;
	StringInfoData id;
	bool		found = false;

	if (!ms->joined && ms->inserted == NULL)
		return false;
	if (ms->joined && ms->met == NULL)
		ms->met = PgpolyKeyTable("pgpoly rows modified", sizeof(PgpolyKeyRef),
								 GetMemoryChunkContext(ms));
	old = MemoryContextSwitchTo(ms->row_cxt);
	initStringInfo(&id);
	for (int i = 0; i < PGPOLY_MAX_JUNK; i++)
	{
		bool		isnull;
		Datum		d;

		if (ms->junk[i] == InvalidAttrNumber)
			continue;
		d = ExecGetJunkAttribute(planSlot, ms->junk[i], &isnull);
		append_identity(&id, d, isnull, TupleDescAttr(desc, ms->junk[i] - 1));
	}
	if (ms->inserted != NULL)
		found = PgpolyKeyTableFind(ms->inserted, id.data, id.len) != NULL;
	if (!found && ms->joined)
		(void) PgpolyKeyTableEnter(ms->met, GetMemoryChunkContext(ms), id.data, id.len,
								   &found);
	MemoryContextSwitchTo(old);
	return found;
}

/* The identity of row values/nulls of ms's table into id (initialized). */
static void
row_identity(PgpolyModifyState *ms, Datum *values, bool *nulls, StringInfo id)
{
	TupleDesc	desc = RelationGetDescr(ms->rinfo->ri_RelationDesc);

	initStringInfo(id);
	for (int j = 0; j < PGPOLY_MAX_JUNK; j++)
		if (ms->id_atts[j] != InvalidAttrNumber)
			append_identity(id, values[ms->id_atts[j] - 1], nulls[ms->id_atts[j] - 1],
							TupleDescAttr(desc, ms->id_atts[j] - 1));
}

/*
 * A direct modification's PgpolyModifyAgain: whether an INSERT wrote the
 * row values/nulls (its identity columns, id_atts, set by the store) while
 * the modification ran (note_inserted): it skips the row.
 */
bool
PgpolyModifyReplaced(PgpolyModifyState *ms, Datum *values, bool *nulls)
{
	StringInfoData id;
	bool		found;

	if (ms->inserted == NULL)
		return false;
	row_identity(ms, values, nulls, &id);
	found = PgpolyKeyTableFind(ms->inserted, id.data, id.len) != NULL;
	pfree(id.data);
	return found;
}

/*
 * Note rows slots[i] (n of them) that an INSERT's state ms wrote
 * (inserted[i]), by identity, for every UPDATE and DELETE of the table
 * running meanwhile (ModifyingStates): a node of the same statement (not
 * the UPDATE moving these rows in), or of a statement that runs the one
 * inserting (a trigger's, a function's).  Such a node may meet the key
 * the INSERT wrote later (a data-modifying WITH query nobody reads runs
 * after the main statement); PostgreSQL's scan of a native table, under a
 * snapshot taken before, does not see the rows inserted, and modifies the
 * old row, where a store holds the row inserted: the node would delete or
 * overwrite it.  So it skips such a row (PgpolyModifyAgain), the row read
 * there having been replaced.  A node that begins later sees the rows, as
 * on a native table.
 */
static void
note_inserted(PgpolyModifyState *ms, TupleTableSlot **slots, int n,
			  const bool *inserted)
{
	dlist_iter	iter;
	bool		any = false;

	if (dlist_is_empty(&ModifyingStates) || ms->id_atts[0] == InvalidAttrNumber)
		return;
	dlist_foreach(iter, &ModifyingStates)
	{
		PgpolyModifyState *oms = dlist_container(PgpolyModifyState, modifying_node,
												 iter.cur);

		any |= oms->relid == ms->relid && oms->routed != ms;
	}
	if (!any)
		return;
	for (int i = 0; i < n; i++)
	{
		StringInfoData id;

		if (!inserted[i])
			continue;
		slot_getallattrs(slots[i]);
		row_identity(ms, slots[i]->tts_values, slots[i]->tts_isnull, &id);
		dlist_foreach(iter, &ModifyingStates)
		{
			PgpolyModifyState *oms = dlist_container(PgpolyModifyState, modifying_node,
													 iter.cur);
			MemoryContext cxt = GetMemoryChunkContext(oms);
			PgpolyInsertedRow *e;
			bool		found;

			if (oms->relid != ms->relid || oms->routed == ms)
				continue;
			if (oms->inserted == NULL)
				oms->inserted = PgpolyKeyTable("pgpoly rows inserted",
											   sizeof(PgpolyInsertedRow), cxt);
			e = PgpolyKeyTableEnter(oms->inserted, cxt, id.data, id.len, &found);
			e->subid = GetCurrentSubTransactionId();
		}
	}
}

/*
 * A new row (slot) of a foreign table that is a partition must fit the
 * partition's bounds.  PostgreSQL checks them on a native partition, and
 * moves an updated row that leaves them to the partition it belongs in, but
 * on a foreign partition it does neither: the contents are the user's
 * responsibility.  A row stored outside the bounds would be missed by
 * every query that prunes partitions, so it is refused: an INSERT or COPY
 * straight into the partition with PostgreSQL's own error (23514; a row
 * routed from the parent fits, unless a BEFORE ROW trigger changed it,
 * checked again as ExecInsert does), an UPDATE with one saying what to do
 * (PostgreSQL cannot move a row out of a foreign partition).
 */
static void
check_bounds(PgpolyModifyState *ms, EState *estate, TupleTableSlot *slot, CmdType op)
{
	ResultRelInfo *rinfo = ms->rinfo;
	Relation	rel = rinfo->ri_RelationDesc;

	if (!rel->rd_rel->relispartition)
		return;
	if (op == CMD_INSERT)
	{
		if (rinfo->ri_RootResultRelInfo == NULL ||
			(rinfo->ri_TrigDesc && rinfo->ri_TrigDesc->trig_insert_before_row))
			(void) ExecPartitionCheck(rinfo, slot, estate, true);
		return;
	}
	if (!ExecPartitionCheck(rinfo, slot, estate, false))
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("UPDATE would move a row out of foreign table partition \"%s\"",
						RelationGetRelationName(rel)),
				 errdetail("The new row is outside the partition's bounds, and PostgreSQL moves no row out of a partition that is a foreign table."),
				 errhint("DELETE the row and INSERT it through the partitioned table.")));
}

/*
 * Check a new row (slot) of an INSERT, COPY or UPDATE before the store
 * gets it: the partition's bounds (check_bounds) and, in write_mode
 * 'immediate', the WITH CHECK OPTION of the views the statement writes
 * through.  PostgreSQL checks a view's option only once the FDW has
 * written the row, which a buffered write survives (the ERROR discards it
 * with the transaction) but a write sent at once does not: the row the
 * view refuses would stay in the store.  So an immediate write checks it
 * first, with PostgreSQL's own error (44000); PostgreSQL's check after
 * the write then passes.  A store whose rows go through
 * PgpolyReturnWrittenRow (ms->written_row) has it check the row a read
 * will find instead of the values given.
 */
void
PgpolyModifyCheckRow(PgpolyModifyState *ms, EState *estate, TupleTableSlot *slot,
					 CmdType op)
{
	check_bounds(ms, estate, slot, op);
	/* a store deriving columns checks the row as written (see there) */
	if (!ms->transactional && !ms->written_row && ms->rinfo->ri_WithCheckOptions != NIL)
		ExecWithCheckOptions(WCO_VIEW_CHECK, ms->rinfo, slot, estate);
}

/*
 * Make values/nulls (one per column of slot's descriptor) slot's row,
 * copied into estate's per-tuple memory, where RETURNING reads it.  They
 * may point into slot's current row.
 */
void
PgpolyStoreRow(EState *estate, TupleTableSlot *slot, Datum *values, bool *nulls)
{
	TupleDesc	desc = slot->tts_tupleDescriptor;
	MemoryContext old = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
	Datum	   *v = palloc(sizeof(Datum) * desc->natts);
	bool	   *n = palloc(sizeof(bool) * desc->natts);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);

		n[i] = nulls[i] || a->attisdropped;
		v[i] = n[i] ? (Datum) 0 : datumCopy(values[i], a->attbyval, a->attlen);
	}
	ExecClearTuple(slot);
	memcpy(slot->tts_values, v, sizeof(Datum) * desc->natts);
	memcpy(slot->tts_isnull, n, sizeof(bool) * desc->natts);
	ExecStoreVirtualTuple(slot);
	MemoryContextSwitchTo(old);
}

/*
 * Whether the executor reads the row an INSERT or UPDATE hands back (its
 * slot): for RETURNING, for an AFTER ROW trigger's NEW, or for a view's
 * WITH CHECK OPTION, each checked after the FDW wrote the row.
 */
static bool
row_read_after_write(ResultRelInfo *rinfo)
{
	TriggerDesc *td = rinfo->ri_TrigDesc;

	return rinfo->ri_projectReturning != NULL || rinfo->ri_WithCheckOptions != NIL ||
		(td && (td->trig_insert_after_row || td->trig_update_after_row));
}

/*
 * INSERT or UPDATE: make slot the row a read of the table finds after the
 * store's write (fill puts it in values/nulls), rather than the values the
 * statement gave.  A store derives columns from what is written
 * (Elasticsearch's _source, a vector record's metadata and the columns
 * mapped to its keys), and what the executor reads from slot (RETURNING,
 * an AFTER ROW trigger's NEW, a view's check option) must not contradict a
 * read of the same row right after it, as on a native table.  When nothing
 * reads slot nothing is done; outbox writes are returned as queued.  In
 * write_mode 'immediate' the view's check option is checked here on that
 * row, before the write is sent (see PgpolyModifyCheckRow).  Call it before
 * the write is handed to the writer (a flush may free it).  The work is
 * done in the row's memory, whatever the caller's context.
 */
void
PgpolyReturnWrittenRow(PgpolyModifyState *ms, EState *estate, TupleTableSlot *slot,
					   PgpolyWrittenRow fill, void *write)
{
	int			natts = slot->tts_tupleDescriptor->natts;
	MemoryContext old;
	Datum	   *values;
	bool	   *nulls;

	if (ms->outbox || ms->rinfo == NULL || !row_read_after_write(ms->rinfo))
		return;
	old = MemoryContextSwitchTo(ms->row_cxt);
	values = palloc(sizeof(Datum) * natts);
	nulls = palloc(sizeof(bool) * natts);
	fill(ms, write, values, nulls);
	PgpolyStoreRow(estate, slot, values, nulls);
	if (!ms->transactional && ms->rinfo->ri_WithCheckOptions != NIL)
		ExecWithCheckOptions(WCO_VIEW_CHECK, ms->rinfo, slot, estate);
	MemoryContextSwitchTo(old);
}

/* DELETE ... RETURNING: the whole old row from planSlot into slot. */
void
PgpolyModifyOldRow(PgpolyModifyState *ms, TupleTableSlot *slot,
				   TupleTableSlot *planSlot, Relation rel)
{
	PgpolyStoreOldRow(slot, planSlot, ms->junk_row, rel);
}

/*
 * UPDATE: set ms->updated to the columns this row writes, in the current
 * (row) memory context.  They are the columns the statement assigns, and,
 * when BEFORE ROW UPDATE triggers ran, every other column whose value in
 * the new row (slot) differs from the old row's: a trigger may set columns
 * the statement does not name, and writing only the assigned ones would
 * lose its changes (postgres_fdw sends every column then; comparing spares
 * the read-only columns a trigger left alone, such as a Redis _ttl).  The
 * old row is planSlot's "wholerow" junk column, which PostgreSQL passes to
 * the triggers and builds the new row from.
 */
void
PgpolyModifyUpdatedColumns(PgpolyModifyState *ms, TupleTableSlot *slot,
						   TupleTableSlot *planSlot)
{
	TupleDesc	desc = slot->tts_tupleDescriptor;
	HeapTupleData tup;
	Datum		d;
	Datum	   *values;
	bool	   *nulls;
	bool		isnull;

	ms->updated = ms->assigned;
	if (ms->old_row == InvalidAttrNumber)
		return;
	d = ExecGetJunkAttribute(planSlot, ms->old_row, &isnull);
	if (isnull)
		elog(ERROR, "pgpoly: the old row of an UPDATE of \"%s\" is missing",
			 get_rel_name(ms->relid));
	tup.t_data = DatumGetHeapTupleHeader(d);
	tup.t_len = HeapTupleHeaderGetDatumLength(tup.t_data);
	ItemPointerSetInvalid(&tup.t_self);
	tup.t_tableOid = InvalidOid;
	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	heap_deform_tuple(&tup, desc, values, nulls);
	slot_getallattrs(slot);
	ms->updated = bms_copy(ms->assigned);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);

		if (a->attisdropped || bms_is_member(i + 1, ms->updated))
			continue;
		if (nulls[i] != slot->tts_isnull[i] ||
			(!nulls[i] && !datum_image_eq(values[i], slot->tts_values[i],
										  a->attbyval, a->attlen)))
			ms->updated = bms_add_member(ms->updated, i + 1);
	}
}

/*
 * Rows an UPDATE through a partitioned table moves into a table it updates
 * too (ms: the UPDATE's state; PgpolyModifyBegin), for a store holding one
 * row per text identity (column att; NULL: the store assigns one): a row
 * landing on the identity of a row the statement updates or moved in is
 * an ERROR (23505), as a row the UPDATE moves within the table is, noted
 * in moves (PgpolyMoves): one write would overwrite the other.  store and
 * what name them in the message ("Chroma", "id").
 */
void
PgpolyModifyMovedIn(PgpolyModifyState *ms, struct HTAB *moves, AttrNumber att,
					TupleTableSlot **slots, int n, const char *relname,
					const char *store, const char *what)
{
	if (ms->routed == NULL || moves == NULL || att == InvalidAttrNumber)
		return;
	for (int i = 0; i < n; i++)
	{
		char	   *id;
		PgpolyMoveCheck how;

		slot_getallattrs(slots[i]);
		if (slots[i]->tts_isnull[att - 1])
			continue;
		id = TextDatumGetCString(slots[i]->tts_values[att - 1]);
		how = PgpolyMoveIn(moves, GetMemoryChunkContext(ms), id, strlen(id),
						   ms->routed->writer.held);
		if (how != PGPOLY_MOVE_OK)
			PgpolyMovedOntoError(relname, store, how,
								 psprintf("%s \"%s\"", what,
										  PgpolyPrintable(id, strlen(id), 200)));
		pfree(id);
	}
}

/*
 * EndForeignModify / EndForeignInsert: send what immediate mode holds, the
 * rows an UPDATE moved into the table too (PgpolyModifyBegin).
 */
void
PgpolyModifyEnd(PgpolyModifyState *ms)
{
	if (ms != NULL)
		PgpolyWriterFlush(&ms->writer);
	if (ms != NULL && ms->routed != NULL)
		PgpolyWriterFlush(&ms->routed->writer);
}

/*
 * ExecForeignInsert for every store: the row goes through the store's
 * insert_rows; NULL when ON CONFLICT DO NOTHING skipped it (PostgreSQL then
 * neither counts nor returns it).
 */
TupleTableSlot *
PgpolyExecInsert(PgpolyModifyState *ms, EState *estate, TupleTableSlot *slot,
				 PgpolyInsertRows insert_rows)
{
	MemoryContext old;
	bool		inserted;

	if (ms->routed != NULL)		/* a row an UPDATE moves in */
		ms = ms->routed;
	old = PgpolyModifyRow(ms);

	PgpolyModifyCheckRow(ms, estate, slot, CMD_INSERT);
	insert_rows(ms, estate, &slot, 1, &inserted);
	note_inserted(ms, &slot, 1, &inserted);
	if (inserted)
		PgpolyModifyOutbox(ms, CMD_INSERT, slot, NULL);
	MemoryContextSwitchTo(old);
	return inserted ? slot : NULL;
}

/*
 * ExecForeignBatchInsert for every store: the rows of a batch go through
 * the store's insert_rows at once (one round trip where the store checks
 * or sends them); the answer is the slots of the rows inserted, and their
 * number in *numSlots.
 */
TupleTableSlot **
PgpolyExecBatchInsert(PgpolyModifyState *ms, EState *estate,
					  TupleTableSlot **slots, int *numSlots,
					  PgpolyInsertRows insert_rows)
{
	MemoryContext old;
	bool	   *inserted;
	TupleTableSlot **result = slots;

	if (ms->routed != NULL)		/* rows an UPDATE moves in */
		ms = ms->routed;
	old = PgpolyModifyRow(ms);
	inserted = palloc(sizeof(bool) * Max(*numSlots, 1));

	for (int i = 0; i < *numSlots; i++)
		PgpolyModifyCheckRow(ms, estate, slots[i], CMD_INSERT);
	insert_rows(ms, estate, slots, *numSlots, inserted);
	note_inserted(ms, slots, *numSlots, inserted);
	for (int i = 0; i < *numSlots; i++)
		if (inserted[i])
			PgpolyModifyOutbox(ms, CMD_INSERT, slots[i], NULL);
	if (ms->do_nothing)
	{
		int			n = 0;

		result = palloc(sizeof(TupleTableSlot *) * Max(*numSlots, 1));
		for (int i = 0; i < *numSlots; i++)
			if (inserted[i])
				result[n++] = slots[i];
		*numSlots = n;
	}
	MemoryContextSwitchTo(old);
	return result;
}

/* Install the planner hook (from _PG_init). */
void
PgpolyLifecycleInit(void)
{
	prev_planner_hook = planner_hook;
	planner_hook = lifecycle_planner;
}
