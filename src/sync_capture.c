/*-------------------------------------------------------------------------
 *
 * sync_capture.c
 *		  Change capture of synced tables: the keys each statement wrote,
 *		  queued in the writer's own transaction.
 *
 * create_sync attaches four statement-level triggers to the source table
 * (AFTER INSERT / UPDATE / DELETE with transition tables, BEFORE TRUNCATE),
 * all calling pgpoly_sync_capture().  A statement costs one pass over its
 * transition tables and one queue row per SYNC_CHUNK_KEYS keys, however
 * many rows it wrote.  A logical replication apply worker fires no
 * statement trigger but row triggers: a fifth trigger, per row, fired in
 * replica mode only, queues the rows such a worker writes (one queue row
 * per row).
 *
 * Invariants:
 *	- The queue holds keys, never row images: the worker re-reads the current
 *	  row of each key when it delivers (sync_worker.c), so a key queued twice,
 *	  or by transactions that commit in another order, converges on the last
 *	  committed version.
 *	- An UPDATE queues its new keys and those old keys that changed: a moved
 *	  key is then deleted from the target (its row is gone) and the new key
 *	  upserted.  This holds whatever order the two transition tables list
 *	  their rows in: every new key is queued, and an old key is skipped only
 *	  when it equals a new key, which is queued.
 *	- TRUNCATE queues every key the table holds before it is emptied, so the
 *	  target loses exactly those keys (it costs a scan of the table, made as
 *	  the sync's owner, as the backfill of create_sync).
 *	- Keys are queued in the fixed text form of convert.c, which the worker
 *	  reads back with the same conversion: a writer's DateStyle, TimeZone or
 *	  extra_float_digits never changes which key is delivered.
 *	- Queue rows are written as the extension's owner: no user needs rights
 *	  on pgpoly.sync_queue.  The insert checks that the sync's source is the
 *	  table the trigger fired on, so attaching the trigger elsewhere cannot
 *	  feed another sync.
 *
 * src/sync_capture.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/partition.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "replication/logicalworker.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "sync.h"

/* Keys of one sync being queued, written in chunks. */
struct SyncKeyQueue
{
	int32		sync_id;
	Oid			source;
	PgpolyConv	conv;			/* the key type's conversion */
	MemoryContext cxt;			/* the chunk's texts, reset per chunk */
	Datum	   *keys;
	int			nkeys;
	int64		total;
};

/* Saved plan of the queue insert (TopMemoryContext, kept by SPI). */
static SPIPlanPtr EnqueuePlan = NULL;

/* The saved plan that inserts one chunk, checking the sync's source. */
static SPIPlanPtr
enqueue_plan(void)
{
	Oid			types[3] = {INT4OID, TEXTARRAYOID, OIDOID};

	if (EnqueuePlan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare("INSERT INTO pgpoly.sync_queue (sync_id, keys) "
									   "SELECT $1, $2 FROM pgpoly.syncs "
									   "WHERE sync_id = $1 AND source = $3::pg_catalog.regclass",
									   3, types);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		EnqueuePlan = plan;
	}
	return EnqueuePlan;
}

/* Insert the chunk q holds, as the extension's owner. */
static void
write_chunk(SyncKeyQueue *q)
{
	Datum		values[3];
	Oid			save_user;
	int			save_sec;
	int			level;
	int			rc;

	values[0] = Int32GetDatum(q->sync_id);
	values[1] = PointerGetDatum(construct_array(q->keys, q->nkeys, TEXTOID, -1,
												false, TYPALIGN_INT));
	values[2] = ObjectIdGetDatum(q->source);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* the writer's search_path could lend the admin her "=" (sync_id = $1) */
	level = SyncSafeSearchPath();
	SyncBecome(SyncAdminRole(), false, &save_user, &save_sec);
	rc = SPI_execute_plan(enqueue_plan(), values, NULL, false, 0);
	SetUserIdAndSecContext(save_user, save_sec);
	AtEOXact_GUC(true, level);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "queueing sync changes failed: %s", SPI_result_code_string(rc));
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("table \"%s\" is not the source of the pgpoly sync its trigger names",
						get_rel_name(q->source)),
				 errdetail("The trigger names sync %d.", q->sync_id),
				 errhint("Triggers calling pgpoly._sync_capture() are made by pgpoly.create_sync only; drop this one.")));
	SPI_finish();
	q->total += q->nkeys;
	q->nkeys = 0;
	MemoryContextReset(q->cxt);
}

/*
 * Start queueing keys of key_type for sync_id, whose source table is
 * source, until SyncKeyQueueEnd().
 */
SyncKeyQueue *
SyncKeyQueueBegin(int32 sync_id, Oid source, Oid key_type)
{
	SyncKeyQueue *q = palloc0(sizeof(SyncKeyQueue));

	q->sync_id = sync_id;
	q->source = source;
	PgpolyConvInit(&q->conv, key_type, -1, NULL);
	q->cxt = AllocSetContextCreate(CurrentMemoryContext, "pgpoly sync keys",
								   ALLOCSET_DEFAULT_SIZES);
	q->keys = palloc(sizeof(Datum) * SYNC_CHUNK_KEYS);
	return q;
}

/* Queue one key (not NULL), in its fixed text form. */
void
SyncKeyQueueAdd(SyncKeyQueue *q, Datum key)
{
	MemoryContext old = MemoryContextSwitchTo(q->cxt);
	size_t		len;
	char	   *text = PgpolyDatumToText(&q->conv, key, &len);

	q->keys[q->nkeys++] = PointerGetDatum(cstring_to_text_with_len(text, (int) len));
	MemoryContextSwitchTo(old);
	if (q->nkeys == SYNC_CHUNK_KEYS)
		write_chunk(q);
}

/*
 * Write the last chunk and have the worker woken at COMMIT.  Returns how
 * many keys were queued; frees q.
 */
int64
SyncKeyQueueEnd(SyncKeyQueue *q)
{
	int64		total;

	if (q->nkeys > 0)
		write_chunk(q);
	total = q->total;
	if (total > 0)
		SyncNoteQueued();
	MemoryContextDelete(q->cxt);
	pfree(q->keys);
	pfree(q);
	return total;
}

/* The key of the row in slot; a NULL key is an ERROR. */
static Datum
slot_key(TupleTableSlot *slot, AttrNumber att, Relation rel)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, att, &isnull);

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("the key column \"%s\" of synced table \"%s\" cannot be NULL",
						get_attname(RelationGetRelid(rel), att, false),
						RelationGetRelationName(rel)),
				 errdetail("A row without a key cannot be kept in step with the target.")));
	return d;
}

/* A slot reading ts from its start through a read pointer of our own. */
static TupleTableSlot *
open_transition(Tuplestorestate *ts, Relation rel)
{
	int			ptr = tuplestore_alloc_read_pointer(ts, EXEC_FLAG_REWIND);

	tuplestore_select_read_pointer(ts, ptr);
	tuplestore_rescan(ts);
	return MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsMinimalTuple);
}

/* Queue the key of every row of one transition table. */
static void
queue_table(SyncKeyQueue *q, Tuplestorestate *ts, Relation rel, AttrNumber att)
{
	TupleTableSlot *slot = open_transition(ts, rel);

	while (tuplestore_gettupleslot(ts, true, false, slot))
		SyncKeyQueueAdd(q, slot_key(slot, att, rel));
	ExecDropSingleTupleTableSlot(slot);
}

/*
 * UPDATE: queue every new key, and each old key that differs from the new
 * key read alongside it (see the header for why any pairing is correct).
 */
static void
queue_update(SyncKeyQueue *q, TriggerData *td, AttrNumber att)
{
	Relation	rel = td->tg_relation;
	Form_pg_attribute a = TupleDescAttr(RelationGetDescr(rel), att - 1);
	TupleTableSlot *oslot = open_transition(td->tg_oldtable, rel);
	TupleTableSlot *nslot = open_transition(td->tg_newtable, rel);

	for (;;)
	{
		bool		has_old;
		bool		has_new;
		Datum		newkey = (Datum) 0;

		has_new = tuplestore_gettupleslot(td->tg_newtable, true, false, nslot);
		has_old = tuplestore_gettupleslot(td->tg_oldtable, true, false, oslot);
		if (!has_old && !has_new)
			break;
		if (has_new)
		{
			newkey = slot_key(nslot, att, rel);
			SyncKeyQueueAdd(q, newkey);
		}
		if (has_old)
		{
			Datum		oldkey = slot_key(oslot, att, rel);

			if (!has_new || !datumIsEqual(oldkey, newkey, a->attbyval, a->attlen))
				SyncKeyQueueAdd(q, oldkey);
		}
	}
	ExecDropSingleTupleTableSlot(oslot);
	ExecDropSingleTupleTableSlot(nslot);
}

/*
 * Queue every key source holds (backfill, TRUNCATE), read through a cursor
 * as reader, the sync's owner, in a security-restricted operation: as the
 * worker reads the source when it delivers.  Never as the extension's
 * owner: the source may have children (inheritance, partitions) that are
 * foreign tables, which would be read with a superuser's user mapping and
 * without the trust rule.  Returns how many.
 *
 * The caller holds a lock that keeps writers out (CREATE TRIGGER's, or
 * TRUNCATE's), so the keys are read with the latest snapshot, not the
 * statement's or the transaction's: a writer that create_sync waited for
 * committed rows before the capture triggers existed (the backfill must
 * see them), and TRUNCATE removes the rows committed after a REPEATABLE
 * READ transaction's snapshot too (their deletes must be queued).
 */
int64
SyncQueueAllKeys(int32 sync_id, Oid source, AttrNumber key_att, Oid reader)
{
	Oid			key_type = getBaseType(get_atttype(source, key_att));
	SyncKeyQueue *q = SyncKeyQueueBegin(sync_id, source, key_type);
	char	   *sql = psprintf("SELECT %s FROM %s",
							   quote_identifier(get_attname(source, key_att, false)),
							   SyncQualifiedName(source));
	Portal		portal;
	Oid			save_user;
	int			save_sec;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	SyncBecome(reader, true, &save_user, &save_sec);
	PushActiveSnapshot(GetLatestSnapshot());
	portal = SPI_cursor_open_with_args(NULL, sql, 0, NULL, NULL, NULL, true, 0);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, SYNC_CHUNK_KEYS);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
										  1, &isnull);

			if (!isnull)
				SyncKeyQueueAdd(q, d);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	PopActiveSnapshot();
	SetUserIdAndSecContext(save_user, save_sec);
	SPI_finish();
	return SyncKeyQueueEnd(q);
}

/* The source, key column and owner of a sync, as its triggers need them. */
typedef struct SyncSource
{
	int32		sync_id;		/* hash key */
	Oid			source;
	AttrNumber	key_att;
	Oid			owner;
} SyncSource;

/* Per backend: a sync's source, key and owner never change (TopMemoryContext). */
static HTAB *SyncSources = NULL;

/* The source, key column and owner of sync_id (read once per backend). */
static SyncSource *
sync_source(int32 sync_id)
{
	SyncSource *ss;
	bool		found;
	Oid			type = INT4OID;
	Datum		arg = Int32GetDatum(sync_id);
	Oid			save_user;
	int			save_sec;
	int			level;
	bool		isnull;

	if (SyncSources == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int32);
		ctl.entrysize = sizeof(SyncSource);
		SyncSources = hash_create("pgpoly sync sources", 16, &ctl, HASH_ELEM | HASH_BLOBS);
	}
	ss = hash_search(SyncSources, &sync_id, HASH_FIND, NULL);
	if (ss)
		return ss;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	level = SyncSafeSearchPath();	/* as in write_chunk */
	SyncBecome(SyncAdminRole(), false, &save_user, &save_sec);
	if (SPI_execute_with_args("SELECT source::pg_catalog.oid, key_attnum, owner::pg_catalog.oid, "
							  "COALESCE(source_ref OPERATOR(pg_catalog.<>) "
							  "pgpoly._sync_ref(source::pg_catalog.oid), false), "
							  "source_columns[key_attnum], name "
							  "FROM pgpoly.syncs "
							  "WHERE sync_id = $1 AND source IS NOT NULL",
							  1, &type, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "reading pgpoly sync %d failed", sync_id);
	SetUserIdAndSecContext(save_user, save_sec);
	AtEOXact_GUC(true, level);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("the capture trigger names pgpoly sync %d, which does not exist", sync_id),
				 errhint("Triggers calling pgpoly._sync_capture() are made by pgpoly.create_sync only; drop this one.")));
	ss = hash_search(SyncSources, &sync_id, HASH_ENTER, &found);
	ss->source = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 1, &isnull));
	ss->key_att = DatumGetInt16(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 2, &isnull));
	ss->owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 3, &isnull));
	/*
	 * A restored source numbers its columns anew: its key by the recorded
	 * name (the worker numbers the sync's columns again, SyncResolveColumns).
	 */
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull)))
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull);

		ss->key_att = SyncRemapColumn(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6),
									  "source", ss->source,
									  isnull ? NULL : TextDatumGetCString(d), ss->key_att);
	}
	SPI_finish();
	return ss;
}

/*
 * The key column in rel of sync ss: rel is its source, or a partition of
 * it (a row trigger on a partitioned table is cloned to the partitions,
 * where the key may have another attnum).  ERROR for another table.
 */
static AttrNumber
row_key_column(Relation rel, SyncSource *ss)
{
	Oid			relid = RelationGetRelid(rel);

	if (relid == ss->source)
		return ss->key_att;
	if (!rel->rd_rel->relispartition ||
		!list_member_oid(get_partition_ancestors(relid), ss->source))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("table \"%s\" is not the source of the pgpoly sync its trigger names",
						RelationGetRelationName(rel)),
				 errhint("Triggers calling pgpoly._sync_capture() are made by pgpoly.create_sync only; drop this one.")));
	return get_attnum(relid, get_attname(ss->source, ss->key_att, false));
}

/*
 * The row trigger (enabled REPLICA): queue the key(s) of the row.  A
 * logical replication apply worker fires row triggers only; everywhere
 * else the statement triggers capture the statement, so this does nothing.
 */
static void
capture_row(TriggerData *td, int32 sync_id)
{
	Relation	rel = td->tg_relation;
	SyncSource *ss;
	AttrNumber	att;
	SyncKeyQueue *q;
	Form_pg_attribute a;

	if (!IsLogicalWorker())
		return;
	ss = sync_source(sync_id);
	att = row_key_column(rel, ss);
	a = TupleDescAttr(RelationGetDescr(rel), att - 1);
	q = SyncKeyQueueBegin(sync_id, ss->source, getBaseType(a->atttypid));
	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		Datum		newkey = slot_key(td->tg_newslot, att, rel);
		Datum		oldkey = slot_key(td->tg_trigslot, att, rel);

		SyncKeyQueueAdd(q, newkey);
		if (!datumIsEqual(oldkey, newkey, a->attbyval, a->attlen))
			SyncKeyQueueAdd(q, oldkey);
	}
	else
		SyncKeyQueueAdd(q, slot_key(td->tg_trigslot, att, rel));
	SyncKeyQueueEnd(q);
}

PG_FUNCTION_INFO_V1(pgpoly_sync_capture);

/*
 * pgpoly._sync_capture(sync_id, key_attnum): the capture triggers of a
 * synced table (see sync.c for which they are).
 */
Datum
pgpoly_sync_capture(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	Relation	rel;
	int32		sync_id;
	AttrNumber	att;
	SyncKeyQueue *q;

	if (!CALLED_AS_TRIGGER(fcinfo) || td->tg_trigger->tgnargs != 2)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("pgpoly._sync_capture() must be called by the triggers of pgpoly.create_sync")));
	rel = td->tg_relation;
	sync_id = pg_strtoint32(td->tg_trigger->tgargs[0]);
	if (TRIGGER_FIRED_FOR_ROW(td->tg_event))
	{
		capture_row(td, sync_id);
		return PointerGetDatum(NULL);
	}
	/* the sync's key column (the trigger's argument is the number it had) */
	att = sync_source(sync_id)->key_att;
	if (att <= 0 || att > RelationGetDescr(rel)->natts ||
		TupleDescAttr(RelationGetDescr(rel), att - 1)->attisdropped)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("the key column of pgpoly sync %d no longer exists in table \"%s\"",
						sync_id, RelationGetRelationName(rel)),
				 errhint("Drop the sync with pgpoly.drop_sync() and create it again.")));

	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
	{
		SyncQueueAllKeys(sync_id, RelationGetRelid(rel), att, sync_source(sync_id)->owner);
		return PointerGetDatum(NULL);
	}
	q = SyncKeyQueueBegin(sync_id, RelationGetRelid(rel),
						  getBaseType(TupleDescAttr(RelationGetDescr(rel), att - 1)->atttypid));
	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event) && td->tg_oldtable && td->tg_newtable)
		queue_update(q, td, att);
	else if (td->tg_newtable)
		queue_table(q, td->tg_newtable, rel, att);
	else if (td->tg_oldtable)
		queue_table(q, td->tg_oldtable, rel, att);
	SyncKeyQueueEnd(q);
	return PointerGetDatum(NULL);
}
