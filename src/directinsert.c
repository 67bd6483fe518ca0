/*-------------------------------------------------------------------------
 *
 * directinsert.c
 *		  Rows inserted into a table without the executor's INSERT, as COPY
 *		  inserts them: heap tuples a batch at a time (table_multi_insert),
 *		  then each tuple's index entries.  Shared by log_predictions
 *		  (src/predictions.c) and ingest_features' offline append
 *		  (src/ingest.c).
 *
 * Invariants:
 *	- A direct insertion does only what an INSERT by the same user would do
 *	  to a table that has no triggers, no rules, no row-level security and
 *	  no generated columns: the caller's privileges are checked as the
 *	  executor checks them (ExecCheckRTPerms, with its hook), NOT NULL and
 *	  CHECK constraints by ExecConstraints, unique and exclusion
 *	  constraints by the index insertion.  Anything else only the executor
 *	  honours makes PgpolyDirectInsertRefused say so, and the caller then
 *	  runs the INSERT.
 *	- No BulkInsertState: its ring of buffers would have this backend evict
 *	  and write the table's new pages itself, where an INSERT leaves them in
 *	  shared buffers for the background writer.
 *
 * src/directinsert.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/tableam.h"
#include "access/xact.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/rel.h"
#include "utils/rls.h"

#include "pgpoly.h"

/*
 * Whether the current user holds INSERT on relid or on a column of it: a
 * caller must not lock a table for writing (RowExclusiveLock) on behalf of
 * a user that may not write to it.
 */
bool
PgpolyMayInsert(Oid relid)
{
	return pg_class_aclcheck(relid, GetUserId(), ACL_INSERT) == ACLCHECK_OK ||
		pg_attribute_aclcheck_all(relid, GetUserId(), ACL_INSERT, ACLMASK_ANY) == ACLCHECK_OK;
}

/*
 * Whether an INSERT into rel (open and locked by the caller), described by
 * rte (requiredPerms, insertedCols), needs the executor: a read-only or
 * parallel context (its ERROR is the INSERT's), no USAGE on rel's schema
 * or missing privileges (the INSERT's ERROR), row-level security,
 * triggers (including the constraint triggers of foreign keys and
 * deferrable constraints), rules (the rewriter's: an INSTEAD rule writes
 * elsewhere, and the executor refuses some in a WITH), generated columns.
 */
bool
PgpolyDirectInsertRefused(Relation rel, RangeTblEntry *rte)
{
	TupleDesc	desc = RelationGetDescr(rel);

	return XactReadOnly || IsInParallelMode() ||
		pg_namespace_aclcheck(RelationGetNamespace(rel), GetUserId(),
							  ACL_USAGE) != ACLCHECK_OK ||
		!ExecCheckRTPerms(list_make1(rte), false) ||
		check_enable_rls(RelationGetRelid(rel), InvalidOid, true) == RLS_ENABLED ||
		rel->trigdesc != NULL || rel->rd_rules != NULL ||
		(desc->constr && desc->constr->has_generated_stored);
}

/*
 * Insert the n rows of slots (slots of rri's relation, made with
 * table_slot_create) as command cid: the heap tuples in one call, then
 * each one's index entries (unique and exclusion constraints checked as an
 * INSERT checks them).  The slots are cleared; estate's per-tuple context
 * is reset after each row.  rri's indexes must be open (ExecOpenIndices).
 */
void
PgpolyDirectInsertBatch(ResultRelInfo *rri, EState *estate, TupleTableSlot **slots,
						int n, CommandId cid)
{
	if (n == 0)
		return;
	table_multi_insert(rri->ri_RelationDesc, slots, n, cid, 0, NULL);
	for (int i = 0; i < n; i++)
	{
		if (rri->ri_NumIndices > 0)
			list_free(ExecInsertIndexTuples(rri, slots[i], estate,
											false, false, NULL, NIL));
		ExecClearTuple(slots[i]);
		ResetPerTupleExprContext(estate);
	}
}
