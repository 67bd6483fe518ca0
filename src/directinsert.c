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
 *	- A column the caller does not write gets what the INSERT's target list
 *	  gives it (PgpolyDirectInsertDefaults): its default, its identity, or
 *	  a NULL of its domain, checked as the domain checks it; a volatile
 *	  default other than nextval (it may read the table, where a batch's
 *	  rows are not yet) makes the insertion refused, as COPY then inserts
 *	  a row at a time; so does a CHECK constraint or a domain's CHECK with
 *	  a volatile function (a batch's rows are checked before any of them
 *	  is in the table, the INSERT's after the rows before them are).
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
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "rewrite/rewriteHandler.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/typcache.h"

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

/* Whether rte, an INSERT, names column attnum of its relation */
static bool
column_written(RangeTblEntry *rte, AttrNumber attnum)
{
	return bms_is_member(attnum - FirstLowInvalidHeapAttributeNumber, rte->insertedCols);
}

/*
 * The expression an INSERT (rte) into rel gives column attnum, which it
 * does not name (as the planner's expand_insert_targetlist makes it): the
 * column's default or identity, else a NULL of its type, coerced to its
 * domain when it has one (the domain's NOT NULL and CHECK apply); NULL for
 * a plain NULL.
 */
static Node *
unwritten_value(Relation rel, AttrNumber attnum)
{
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
	Node	   *expr = build_column_default(rel, attnum);

	if (expr == NULL && getBaseType(att->atttypid) != att->atttypid)
		expr = coerce_to_domain((Node *) makeNullConst(att->atttypid, -1, att->attcollation),
								InvalidOid, -1, att->atttypid, COERCION_IMPLICIT,
								COERCE_IMPLICIT_CAST, -1, false);
	return expr;
}

/*
 * Whether a column of rel that the INSERT rte does not name takes a value
 * with a volatile function other than nextval: it may read the table,
 * where the rows of a batch are not yet (COPY inserts a row at a time
 * then, for the same reason).
 */
static bool
volatile_default(Relation rel, RangeTblEntry *rte)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (AttrNumber a = 1; a <= desc->natts; a++)
	{
		Node	   *expr;

		if (TupleDescAttr(desc, a - 1)->attisdropped || column_written(rte, a))
			continue;
		expr = unwritten_value(rel, a);
		if (expr && contain_volatile_functions_not_nextval(expr))
			return true;
	}
	return false;
}

/*
 * Whether rte, an INSERT into rel, names a column GENERATED ALWAYS AS
 * IDENTITY: the INSERT's ERROR (the rewriter's), where a direct insertion
 * would store the value.
 */
static bool
identity_always_written(Relation rel, RangeTblEntry *rte)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (AttrNumber a = 1; a <= desc->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, a - 1);

		if (!att->attisdropped && att->attidentity == ATTRIBUTE_IDENTITY_ALWAYS &&
			column_written(rte, a))
			return true;
	}
	return false;
}

/*
 * Whether a value of type typid is checked with a volatile function other
 * than nextval: a CHECK of its domain (or of its elements' domain), which
 * may read the table, where the rows of a batch are not yet.
 */
static bool
volatile_type_check(Oid typid)
{
	Oid			elem = get_element_type(typid);
	DomainConstraintRef *ref;
	ListCell   *lc;

	if (OidIsValid(elem))
		return volatile_type_check(elem);
	if (get_typtype(typid) != TYPTYPE_DOMAIN)
		return false;
	/*
	 * every constraint of the domain and of the domains it is over (the
	 * reference is released by a callback of the current context: not on
	 * the stack)
	 */
	ref = palloc(sizeof(DomainConstraintRef));
	InitDomainConstraintRef(typid, ref, CurrentMemoryContext, false);
	foreach(lc, ref->constraints)
	{
		DomainConstraintState *c = (DomainConstraintState *) lfirst(lc);

		if (c->constrainttype == DOM_CONSTRAINT_CHECK &&
			contain_volatile_functions_not_nextval((Node *) c->check_expr))
			return true;
	}
	return volatile_type_check(getBaseType(typid));
}

/*
 * Whether a row of rel is checked with a volatile function other than
 * nextval (a CHECK constraint of rel, a domain of a column): the INSERT
 * checks a row after the rows before it are in the table, where a batch
 * checks its rows before any is (COPY has not this care: it checks a row
 * of a batch before its batch is inserted).
 */
static bool
volatile_checks(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; desc->constr && i < desc->constr->num_check; i++)
	{
		if (contain_volatile_functions_not_nextval(stringToNode(desc->constr->check[i].ccbin)))
			return true;
	}
	for (int a = 0; a < desc->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, a);

		if (!att->attisdropped && volatile_type_check(att->atttypid))
			return true;
	}
	return false;
}

/*
 * Whether a partition (part, as routing opened it) that a direct
 * insertion into its root reaches needs the executor: triggers, a foreign
 * table, columns in another order than the root's (the root's checks were
 * made by PgpolyDirectInsertRefused), a volatile check of its own.
 */
bool
PgpolyDirectInsertPartitionRefused(ResultRelInfo *part)
{
	return part->ri_TrigDesc || part->ri_FdwRoutine || part->ri_RootToPartitionMap ||
		volatile_checks(part->ri_RelationDesc);
}

/*
 * Whether an INSERT into rel (open and locked by the caller), described by
 * rte (requiredPerms, insertedCols), needs the executor: a read-only or
 * parallel context (its ERROR is the INSERT's), no USAGE on rel's schema
 * or missing privileges (the INSERT's ERROR), row-level security,
 * triggers (including the constraint triggers of foreign keys and
 * deferrable constraints), rules (the rewriter's: an INSTEAD rule writes
 * elsewhere, and the executor refuses some in a WITH), generated columns,
 * a volatile default of a column rte does not name, a column rte names
 * that is GENERATED ALWAYS AS IDENTITY, a volatile check of a row
 * (volatile_checks).
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
		(desc->constr && desc->constr->has_generated_stored) ||
		volatile_default(rel, rte) || identity_always_written(rel, rte) ||
		volatile_checks(rel);
}

/*
 * What an INSERT (rte) into rel gives each column it does not name,
 * planned as COPY plans its defaults: an array of one ExprState per
 * column of rel (attnum - 1), NULL where the column is written by the
 * caller, dropped, or plainly NULL.  Evaluate each in the per-tuple
 * context of the caller's EState, for each row.  Allocated in the current
 * memory context.
 */
ExprState **
PgpolyDirectInsertDefaults(Relation rel, RangeTblEntry *rte)
{
	TupleDesc	desc = RelationGetDescr(rel);
	ExprState **defaults = palloc0(desc->natts * sizeof(ExprState *));

	for (AttrNumber a = 1; a <= desc->natts; a++)
	{
		Node	   *expr;

		if (TupleDescAttr(desc, a - 1)->attisdropped || column_written(rte, a))
			continue;
		expr = unwritten_value(rel, a);
		if (expr)
			defaults[a - 1] = ExecInitExpr(expression_planner((Expr *) expr), NULL);
	}
	return defaults;
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
