/*-------------------------------------------------------------------------
 *
 * outbox.c
 *		  write_mode 'outbox': the row changes a modification captures for
 *		  the sync worker.
 *
 * A write to a foreign table in write_mode 'outbox' reaches no store while
 * the statement runs.  Its store builds and checks the payloads as in
 * transactional mode (the transaction's reads see them), and the core
 * captures here what the sync worker will deliver after COMMIT, one
 * PgpolyChange per row change:
 *	- INSERT: an upsert of the whole row (every column but the identity);
 *	- UPDATE: an update of the columns it assigns, of the row whose identity
 *	  the statement read (the store's first junk column).  An UPDATE that
 *	  changes the identity becomes a delete of the old identity and an
 *	  upsert of the whole new row;
 *	- DELETE: a delete of the identity it read.
 * The identity is the column the store identifies a row by, the first of
 * its conflict_columns: the Redis key, Elasticsearch _id, the vector id.
 * Values are converted to the fixed text form of convert.c as the row is
 * written, so the writer's DateStyle, TimeZone or extra_float_digits never
 * reach the store, and the changes need no datum after the statement.
 *
 * Changes live in TopTransactionContext and go to xact.c's list
 * (PgpolyAddChange), which applies the savepoint rules and has the sync
 * module queue them at pre-commit.  The column lists they point to are
 * made once per statement and shared.
 *
 * src/outbox.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "pgpoly.h"

/* What the capture of one modification keeps (the statement's memory). */
typedef struct PgpolyOutboxCapture
{
	AttrNumber	key_att;		/* the identity column */
	PgpolyConv *convs;			/* per column, attnum - 1 (key: always set) */
	int			nall;			/* upsert: every live column but the key */
	AttrNumber *all;			/* (TopTransactionContext, shared) */
	int			nupd;			/* update: the assigned ones but the key */
	AttrNumber *upd;			/* (TopTransactionContext, shared) */
} PgpolyOutboxCapture;

/*
 * Set up the capture of ms: the identity column, the conversions of the
 * columns, and the column lists the changes share.
 */
static PgpolyOutboxCapture *
capture_begin(PgpolyModifyState *ms)
{
	MemoryContext cxt = GetMemoryChunkContext(ms);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	PgpolyOutboxCapture *cap = palloc0(sizeof(PgpolyOutboxCapture));
	const PgpolyStore *store = PgpolyStoreOf(ms->relid);
	Relation	rel = relation_open(ms->relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);

	cap->key_att = linitial_int(store->conflict_columns(ms->relid));
	cap->convs = palloc0(sizeof(PgpolyConv) * desc->natts);
	MemoryContextSwitchTo(TopTransactionContext);
	cap->all = palloc(sizeof(AttrNumber) * Max(desc->natts, 1));
	cap->upd = palloc(sizeof(AttrNumber) * Max(desc->natts, 1));
	MemoryContextSwitchTo(cxt);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);

		if (a->attisdropped)
			continue;
		PgpolyConvInit(&cap->convs[i], a->atttypid, a->atttypmod,
					   pstrdup(NameStr(a->attname)));
		if (a->attnum == cap->key_att)
			continue;
		cap->all[cap->nall++] = a->attnum;
		if (bms_is_member(a->attnum, ms->assigned))
			cap->upd[cap->nupd++] = a->attnum;
	}
	relation_close(rel, AccessShareLock);
	MemoryContextSwitchTo(old);
	return cap;
}

/* The fixed text of value (of column att) in TopTransactionContext. */
static char *
value_text(PgpolyOutboxCapture *cap, AttrNumber att, Datum value)
{
	size_t		len;
	char	   *s = PgpolyDatumToText(&cap->convs[att - 1], value, &len);

	return MemoryContextStrdup(TopTransactionContext, s);
}

/* The identity in slot's column key_att (NULL: a store bug). */
static char *
slot_key(PgpolyOutboxCapture *cap, TupleTableSlot *slot)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, cap->key_att, &isnull);

	if (isnull)
		elog(ERROR, "pgpoly outbox: a row change has a NULL identity");
	return value_text(cap, cap->key_att, d);
}

/* A change of relid by userid, in TopTransactionContext. */
static PgpolyChange *
new_change(PgpolyModifyState *ms, char op, char *key, int ncols, AttrNumber *atts)
{
	PgpolyChange *c = MemoryContextAllocZero(TopTransactionContext, sizeof(PgpolyChange));

	c->relid = ms->relid;
	c->userid = ms->userid;
	c->op = op;
	c->key_att = ms->capture->key_att;
	c->key = key;
	c->ncols = ncols;
	c->atts = atts;
	if (ncols > 0)
		c->values = MemoryContextAllocZero(TopTransactionContext, sizeof(char *) * ncols);
	return c;
}

/* Queue a change writing the columns atts of slot to key (op). */
static void
add_row_change(PgpolyModifyState *ms, char op, char *key, TupleTableSlot *slot,
			   int ncols, AttrNumber *atts)
{
	PgpolyOutboxCapture *cap = ms->capture;
	PgpolyChange *c = new_change(ms, op, key, ncols, atts);

	for (int i = 0; i < ncols; i++)
	{
		bool		isnull;
		Datum		d = slot_getattr(slot, atts[i], &isnull);

		if (!isnull)
			c->values[i] = value_text(cap, atts[i], d);
	}
	PgpolyAddChange(c);
}

/* The identity of the old row, from planSlot's first junk column. */
static char *
old_key(PgpolyModifyState *ms, TupleTableSlot *planSlot)
{
	bool		isnull;
	Datum		d = PgpolyModifyJunk(ms, 0, planSlot, &isnull);

	if (isnull)
		elog(ERROR, "pgpoly outbox: the row to change has a NULL identity");
	return value_text(ms->capture, ms->capture->key_att, d);
}

/*
 * An UPDATE of key whose BEFORE ROW UPDATE triggers set more columns than
 * the statement assigns: the columns of ms->updated (the key aside).
 */
static void
add_trigger_change(PgpolyModifyState *ms, char *key, TupleTableSlot *slot)
{
	PgpolyOutboxCapture *cap = ms->capture;
	AttrNumber *atts = MemoryContextAlloc(TopTransactionContext,
										  sizeof(AttrNumber) * Max(cap->nall, 1));
	int			n = 0;

	for (int i = 0; i < cap->nall; i++)
		if (bms_is_member(cap->all[i], ms->updated))
			atts[n++] = cap->all[i];
	if (n > 0)
		add_row_change(ms, PGPOLY_CHANGE_UPDATE, key, slot, n, atts);
}

/*
 * UPDATE: the assigned columns of the row read (and those triggers set, see
 * PgpolyModifyUpdatedColumns); a new identity moves the
 * row (a delete, and an upsert of the whole new row).
 */
static void
capture_update(PgpolyModifyState *ms, TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	PgpolyOutboxCapture *cap = ms->capture;
	char	   *oldkey = old_key(ms, planSlot);
	char	   *newkey;

	slot_getallattrs(slot);
	newkey = slot_key(cap, slot);
	if (strcmp(oldkey, newkey) != 0)
	{
		PgpolyAddChange(new_change(ms, PGPOLY_CHANGE_DELETE, oldkey, 0, NULL));
		add_row_change(ms, PGPOLY_CHANGE_UPSERT, newkey, slot, cap->nall, cap->all);
	}
	else if (ms->updated != ms->assigned)
		add_trigger_change(ms, oldkey, slot);
	else if (cap->nupd > 0)
		add_row_change(ms, PGPOLY_CHANGE_UPDATE, oldkey, slot, cap->nupd, cap->upd);
}

/*
 * Capture the row change of a write to an outbox table (nothing in other
 * write modes): op INSERT (slot: the row inserted, with what the store
 * filled in, e.g. a generated _id), UPDATE (slot: the complete new row;
 * planSlot: the old row's identity) or DELETE (planSlot).  Stores call it
 * from ExecForeignUpdate / ExecForeignDelete after building their writes;
 * the core does for inserts.
 */
void
PgpolyModifyOutbox(PgpolyModifyState *ms, CmdType op, TupleTableSlot *slot,
				   TupleTableSlot *planSlot)
{
	MemoryContext old;

	if (!ms->outbox)
		return;
	if (ms->capture == NULL)
		ms->capture = capture_begin(ms);
	old = MemoryContextSwitchTo(ms->row_cxt);
	switch (op)
	{
		case CMD_INSERT:
			slot_getallattrs(slot);
			add_row_change(ms, PGPOLY_CHANGE_UPSERT, slot_key(ms->capture, slot), slot,
						   ms->capture->nall, ms->capture->all);
			break;
		case CMD_UPDATE:
			capture_update(ms, slot, planSlot);
			break;
		case CMD_DELETE:
			PgpolyAddChange(new_change(ms, PGPOLY_CHANGE_DELETE, old_key(ms, planSlot),
									   0, NULL));
			break;
		default:
			elog(ERROR, "pgpoly outbox: unexpected operation %d", (int) op);
	}
	MemoryContextSwitchTo(old);
}
