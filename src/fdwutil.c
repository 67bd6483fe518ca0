/*-------------------------------------------------------------------------
 *
 * fdwutil.c
 *		  Small planner and executor helpers every pgpoly FDW uses.
 *
 * Each store's FDW callbacks differ in what they push down and send; the
 * pieces here are the same for all of them: whose user mapping a scan or
 * a modification uses (the plan's checkAsUser), checking a SQL function's
 * caller's SELECT privilege as a query would (or USAGE on a server, for a
 * function that names one), recognising a store's foreign tables,
 * looking through binary-compatible casts, showing pushed clauses in
 * EXPLAIN, recognising columns and run-time constants in clauses, which
 * columns an UPDATE assigns, when INSERT may be batched, and
 * handing the old row to DELETE ... RETURNING, and building foreign paths
 * across PostgreSQL versions.
 *
 * src/fdwutil.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/sysattr.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "foreign/fdwapi.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "nodes/makefuncs.h"
#include "nodes/pathnodes.h"
#include "nodes/primnodes.h"
#include "optimizer/appendinfo.h"
#include "optimizer/inherit.h"
#include "optimizer/optimizer.h"
#include "optimizer/clauses.h"
#include "optimizer/pathnode.h"
#include "parser/parse_relation.h"
#include "parser/parsetree.h"
#include "rewrite/rewriteManip.h"
#include "storage/sinval.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"

#include "pgpoly.h"

/*
 * Whose user mapping a foreign table is accessed with: the user the
 * executor checks the table's permissions as (ExecCheckPermissions()).  A
 * view owned by another role reads its tables as the view owner; otherwise
 * it is the current user.  The planner and the executor take it from the
 * plan, never from GetUserId() alone, as postgres_fdw does on every
 * version: PostgreSQL 16 moved checkAsUser from the range table entry to
 * RTEPermissionInfo, RelOptInfo.userid, ForeignScan.checkAsUser and
 * ExecGetResultRelCheckAsUser().
 */

/* The user for planning baserel (RelOptInfo.userid, set from checkAsUser). */
Oid
PgpolyRelUser(RelOptInfo *baserel)
{
	return OidIsValid(baserel->userid) ? baserel->userid : GetUserId();
}

/* The user for rte at execution (a relation the plan reads). */
Oid
PgpolyRteUser(EState *estate, RangeTblEntry *rte)
{
	Oid			userid;

#if PG_VERSION_NUM >= 160000
	userid = rte->perminfoindex == 0 ? InvalidOid :
		getRTEPermissionInfo(estate->es_rteperminfos, rte)->checkAsUser;
#else
	userid = rte->checkAsUser;
#endif
	return OidIsValid(userid) ? userid : GetUserId();
}

/* The user for a ForeignScan node (a base, join or upper relation). */
Oid
PgpolyScanUser(ForeignScanState *node)
{
	ForeignScan *fs = (ForeignScan *) node->ss.ps.plan;

#if PG_VERSION_NUM >= 160000
	return OidIsValid(fs->checkAsUser) ? fs->checkAsUser : GetUserId();
#else
	return PgpolyRteUser(node->ss.ps.state,
						 exec_rt_fetch(PgpolyScanRelid(fs), node->ss.ps.state));
#endif
}

/*
 * The user for a result relation.  A partition that INSERT or COPY routes
 * a row to has no range table entry of its own (ri_RangeTableIndex 0): it
 * is written as its root's user.
 */
Oid
PgpolyModifyUser(ResultRelInfo *rinfo, EState *estate)
{
#if PG_VERSION_NUM >= 160000
	return ExecGetResultRelCheckAsUser(rinfo, estate);
#else
	Index		rti = rinfo->ri_RangeTableIndex;

	if (rti == 0 && rinfo->ri_RootResultRelInfo != NULL)
		rti = rinfo->ri_RootResultRelInfo->ri_RangeTableIndex;
	if (rti == 0)
		return GetUserId();
	return PgpolyRteUser(estate, exec_rt_fetch(rti, estate));
#endif
}

/*
 * The name of relation relid; ERROR (42P01) if there is none, as for a
 * regclass argument holding a dropped table's OID.  For SQL functions that
 * take a regclass, before any message names the relation.
 */
char *
PgpolyRelationName(Oid relid)
{
	char	   *name = get_rel_name(relid);

	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	return name;
}

PG_FUNCTION_INFO_V1(pgpoly_relation_name);

/*
 * pgpoly._relation_name(rel oid): PgpolyRelationName for the SQL functions
 * (42P01 for a dropped table's OID given as a regclass argument).
 */
Datum
pgpoly_relation_name(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(PgpolyRelationName(PG_GETARG_OID(0))));
}

/*
 * Whether field a lies strictly inside field b's path ("a.b" in "a"), for
 * stores whose fields are paths (path_sep set).
 */
static bool
field_inside(const PgpolyFieldRef *a, const PgpolyFieldRef *b)
{
	return b->path_sep != '\0' && a->len > b->len &&
		memcmp(a->field, b->field, b->len) == 0 && a->field[b->len] == b->path_sep;
}

/*
 * ERROR (HV007) if a modification of foreign table relname would write two
 * of its columns to one store field: one value would silently replace the
 * other (and in Redis a NULL deletes the field the other column sets); or,
 * where fields are paths, one column inside another's field ("a.b" and
 * "a") unless that one holds_fields (a jsonb object the deeper fields are
 * merged into): the document written could not be read back into the
 * columns.  field(tbl, i, &ref) describes column i (0-based) of the store's
 * table descriptor tbl and returns false for one that is no field (key, id,
 * reserved, dropped); op: the modification; assigned: the columns an
 * UPDATE sets (an INSERT writes every column, a DELETE none).  Reading one
 * field into two columns (as two types) stays allowed.
 */
void
PgpolyCheckWrittenFields(const char *relname, const void *tbl, int natts,
						 PgpolyColumnField field, CmdType op, Bitmapset *assigned)
{
	PgpolyFieldRef *refs;
	int			n = 0;

	if (op != CMD_INSERT && op != CMD_UPDATE)
		return;
	refs = palloc0(sizeof(PgpolyFieldRef) * Max(natts, 1));
	for (int i = 0; i < natts; i++)
		if (field(tbl, i, &refs[n]))
			n++;
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++)
		{
			const PgpolyFieldRef *a = &refs[i];
			const PgpolyFieldRef *b = &refs[j];
			bool		same = i < j && a->len == b->len &&
				memcmp(a->field, b->field, a->len) == 0;

			if (!same && (i == j || !field_inside(a, b) || b->holds_fields))
				continue;
			if (op == CMD_UPDATE && !(bms_is_member(a->attnum, assigned) &&
									  bms_is_member(b->attnum, assigned)))
				continue;
			if (same)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_COLUMN_NAME),
						 errmsg("columns \"%s\" and \"%s\" of foreign table \"%s\" would both be written to field \"%s\"",
								a->column, b->column, relname,
								PgpolyPrintable(a->field, a->len, 200)),
						 errhint("Give each written column its own field (column option field); two columns may read one field.")));
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_COLUMN_NAME),
					 errmsg("column \"%s\" of foreign table \"%s\" would write field \"%s\" inside field \"%s\" of column \"%s\"",
							a->column, relname, PgpolyPrintable(a->field, a->len, 200),
							PgpolyPrintable(b->field, b->len, 200), b->column),
					 errhint("A column whose field holds other columns' fields must be jsonb (its object is merged with them); otherwise write them in separate tables.")));
		}
	pfree(refs);
}

/*
 * ERROR unless the current user may read columns attnums (user attribute
 * numbers; empty: the table as in count(*)) of relation relid, checked
 * exactly as the executor checks a SELECT of them: the table's privilege
 * or every column's, the ExecutorCheckPerms hook, and the same
 * "permission denied" error (SQLSTATE 42501).  For SQL functions that read
 * a foreign table on the caller's behalf (pgpoly.vector_search); call it
 * before any network I/O.
 */
void
PgpolyCheckSelect(Oid relid, Bitmapset *attnums)
{
	RangeTblEntry *rte = makeNode(RangeTblEntry);
	Bitmapset  *cols = NULL;
	int			att = -1;

	while ((att = bms_next_member(attnums, att)) >= 0)
		cols = bms_add_member(cols, att - FirstLowInvalidHeapAttributeNumber);
	rte->rtekind = RTE_RELATION;
	rte->relid = relid;
	rte->relkind = get_rel_relkind(relid);
	rte->rellockmode = AccessShareLock;
#if PG_VERSION_NUM >= 160000
	{
		RTEPermissionInfo *perm = makeNode(RTEPermissionInfo);

		perm->relid = relid;
		perm->requiredPerms = ACL_SELECT;
		perm->selectedCols = cols;
		rte->perminfoindex = 1;
		ExecCheckPermissions(list_make1(rte), list_make1(perm), true);
	}
#else
	rte->requiredPerms = ACL_SELECT;
	rte->selectedCols = cols;
	ExecCheckRTPerms(list_make1(rte), true);
#endif
}

/*
 * ERROR unless the current user has USAGE on server, as dblink asks of a
 * server named by a SQL function: for functions that act with a user
 * mapping of the server without going through a foreign table
 * (pgpoly.elastic_request).
 */
void
PgpolyCheckServerUsage(ForeignServer *server)
{
	AclResult	aclresult;

#if PG_VERSION_NUM >= 160000
	aclresult = object_aclcheck(ForeignServerRelationId, server->serverid,
								GetUserId(), ACL_USAGE);
#else
	aclresult = pg_foreign_server_aclcheck(server->serverid, GetUserId(),
										   ACL_USAGE);
#endif
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FOREIGN_SERVER, server->servername);
}

/*
 * Whether the scan of range table entry rti carries a row mark of some
 * strength (FOR UPDATE, FOR NO KEY UPDATE, FOR SHARE, FOR KEY SHARE; found
 * in the statement's flat PlanRowMark list, offset like scanrelid).  The
 * rowmark PostgreSQL adds to the other relations of an UPDATE or DELETE
 * has none.  No store holds row locks: NOWAIT never waits anyway, but SKIP
 * LOCKED cannot skip a row another transaction is working on, so it is an
 * ERROR (with the store's hint, or a plain one) rather than a silently
 * unlocked queue handing every worker the same rows.
 */
bool
PgpolyScanRowMarked(EState *estate, Index rti, const PgpolyStore *store,
					const char *hint)
{
	ListCell   *lc;

	foreach(lc, estate->es_plannedstmt->rowMarks)
	{
		PlanRowMark *rc = lfirst(lc);

		if (rc->rti != rti || rc->strength == LCS_NONE)
			continue;
		if (rc->waitPolicy == LockWaitSkip)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("SKIP LOCKED is not supported for %s foreign table \"%s\"",
							store->label,
							get_rel_name(exec_rt_fetch(rti, estate)->relid)),
					 errdetail("%s holds no row locks, so rows another transaction reads cannot be skipped.",
							   store->label),
					 errhint("%s", hint ? hint :
							 "Remove SKIP LOCKED; FOR UPDATE and FOR SHARE lock nothing in the store either.")));
		return true;
	}
	return false;
}

/*
 * The range table index of the foreign table a ForeignScan reads: its
 * scanrelid, or for a scan that replaces an upper relation (pushed LIMIT,
 * count, k-NN) the one base relation it covers.
 */
Index
PgpolyScanRelid(ForeignScan *fs)
{
	return fs->scan.scanrelid > 0 ? fs->scan.scanrelid :
		(Index) bms_next_member(fs->fs_relids, -1);
}

/*
 * Whether relid is a foreign table whose wrapper's handler plans with
 * relsize (a store's GetForeignRelSize): false for any other relation or
 * an unused OID.  For SQL functions given a regclass, so that the wrong
 * kind of table is a clear error and never a catalog lookup failure.
 */
bool
PgpolyIsForeignTableOf(Oid relid, GetForeignRelSize_function relsize)
{
	if (get_rel_relkind(relid) != RELKIND_FOREIGN_TABLE)
		return false;
	return GetFdwRoutineByRelId(relid)->GetForeignRelSize == relsize;
}

/* n without binary-compatible casts on top (varchar -> text). */
Node *
PgpolyStripRelabel(Node *n)
{
	while (n && IsA(n, RelabelType))
		n = (Node *) ((RelabelType *) n)->arg;
	return n;
}

/*
 * Clauses (Expr) of baserel deparsed as "a AND b", for EXPLAIN.  The
 * deparse context knows the relation as range table entry 1: in a query
 * through a view, or with other tables, baserel is another one, so the
 * clauses are renumbered (a copy).
 */
char *
PgpolyDeparseClauses(List *clauses, PlannerInfo *root, RelOptInfo *baserel)
{
	RangeTblEntry *rte = planner_rt_fetch(baserel->relid, root);
	List	   *ctx = deparse_context_for(get_rel_name(rte->relid), rte->relid);
	StringInfoData buf;
	ListCell   *lc;

	if (baserel->relid != 1)
	{
		clauses = copyObject(clauses);
		ChangeVarNodes((Node *) clauses, baserel->relid, 1, 0);
	}
	initStringInfo(&buf);
	foreach(lc, clauses)
		appendStringInfo(&buf, "%s%s", buf.len ? " AND " : "",
						 deparse_expression(lfirst(lc), ctx, false, false));
	return buf.data;
}

/*
 * GetForeignModifyBatchSize for every store: the table's batch_size option
 * (default dflt), or 1 when RETURNING or row triggers need each row back.
 * Called before BeginForeignModify by COPY, so it reads the catalog.
 */
int
PgpolyModifyBatchSize(ResultRelInfo *rinfo, int dflt)
{
	ForeignTable *ft = GetForeignTable(RelationGetRelid(rinfo->ri_RelationDesc));

	if (rinfo->ri_projectReturning != NULL ||
		(rinfo->ri_TrigDesc && (rinfo->ri_TrigDesc->trig_insert_before_row ||
								rinfo->ri_TrigDesc->trig_insert_after_row)))
		return 1;
	return (int) PgpolyGetIntOption(ft->options, "batch_size", dflt);
}

/*
 * PlanForeignModify for every store: fdw_private is (the assigned columns
 * of an UPDATE as a list of attnums, NIL for INSERT and DELETE; Integer
 * joined: 1 when the statement's FROM or USING list joins other relations
 * to the table, so that one of its rows may come up more than once, see
 * PgpolyModifyAgain).  An ON CONFLICT clause is checked (lifecycle.c).
 */
List *
PgpolyPlanModifyColumns(PlannerInfo *root, ModifyTable *plan,
						Index resultRelation)
{
	List	   *cols = NIL;

	PgpolyPlanOnConflict(plan, planner_rt_fetch(resultRelation, root)->relid);
	if (plan->operation == CMD_UPDATE)
	{
		RelOptInfo *rel = find_base_rel(root, resultRelation);
		Bitmapset  *all = get_rel_all_updated_cols(root, rel);
		int			col = -1;

		while ((col = bms_next_member(all, col)) >= 0)
			cols = lappend_int(cols, col + FirstLowInvalidHeapAttributeNumber);
	}
	/* the target is the first item of the jointree, FROM/USING the others */
	return list_make2(cols, makeInteger(plan->operation != CMD_INSERT &&
										list_length(root->parse->jointree->fromlist) > 1));
}

/*
 * Whether the modifying query q reaches relid: its target is relid, or an
 * inheritance parent (a partitioned table) whose UPDATE or DELETE modifies
 * relid as one of its children, or a partitioned table whose INSERT routes
 * rows into relid.
 */
static bool
query_modifies(Query *q, Oid relid)
{
	RangeTblEntry *rte;

	if (q->commandType == CMD_SELECT || q->resultRelation <= 0)
		return false;
	rte = rt_fetch(q->resultRelation, q->rtable);
	if (rte->relid == relid)
		return true;
	if (q->commandType == CMD_INSERT ? rte->relkind != RELKIND_PARTITIONED_TABLE :
		!rte->inh)
		return false;
	/* the planner holds a lock on every relation of the statement */
	return list_member_oid(find_all_inheritors(rte->relid, NoLock, NULL), relid);
}

/*
 * Whether the statement being planned modifies relid through more than
 * one node: its main statement and a data-modifying WITH query, or two
 * such queries (they can only be at the top level), either of them
 * perhaps through an inheritance parent of relid.  Such a statement's
 * UPDATE and DELETE go row by row (PgpolyModifyAgain), never as a direct
 * modification.
 */
bool
PgpolyPlanModifiesTwice(PlannerInfo *root, Oid relid)
{
	Query	   *top;
	int			nodes = 0;
	ListCell   *lc;

	while (root->parent_root != NULL)
		root = root->parent_root;
	top = root->parse;
	if (query_modifies(top, relid))
		nodes++;
	foreach(lc, top->cteList)
	{
		CommonTableExpr *cte = lfirst(lc);

		if (IsA(cte->ctequery, Query) && query_modifies((Query *) cte->ctequery, relid))
			nodes++;
	}
	return nodes > 1;
}

/*
 * The name of the junk column carrying row-identity column att of rel
 * (base: "pgpoly_key", "pgpoly_id" ...).  An UPDATE or DELETE through an
 * inheritance or partitioned parent gathers the row-identity columns of
 * all its children into one plan, and PostgreSQL lets one name stand for
 * one column definition only (add_row_identity_var: same attnum, type,
 * typmod and collation); so the name says which, and children keyed alike
 * share a column while a child whose key sits elsewhere (a dropped column
 * before it, another key column) gets its own.
 */
char *
PgpolyJunkName(const char *base, TupleDesc desc, AttrNumber att)
{
	Form_pg_attribute a = TupleDescAttr(desc, att - 1);

	return psprintf("%s_%d_%u_%d_%u", base, att, a->atttypid, a->atttypmod,
					a->attcollation);
}

/* AddForeignUpdateTargets: carry row-identity column att of rel (see PgpolyJunkName). */
void
PgpolyAddRowIdentity(PlannerInfo *root, Index rtindex, Relation rel, AttrNumber att,
					 const char *base)
{
	Form_pg_attribute a = TupleDescAttr(RelationGetDescr(rel), att - 1);

	add_row_identity_var(root, makeVar(rtindex, att, a->atttypid, a->atttypmod,
									   a->attcollation, 0),
						 rtindex, PgpolyJunkName(base, RelationGetDescr(rel), att));
}

/*
 * AddForeignUpdateTargets of a DELETE ... RETURNING: carry the whole old
 * row, as PostgreSQL's own "wholerow" junk column (a RECORD Var, which the
 * children of a parent share; a Var of the table's row type would be
 * another column definition per child).
 */
void
PgpolyAddOldRow(PlannerInfo *root, Index rtindex)
{
	if (root->parse->commandType == CMD_DELETE && root->parse->returningList != NIL)
		add_row_identity_var(root, makeVar(rtindex, InvalidAttrNumber, RECORDOID, -1,
										   InvalidOid, 0),
							 rtindex, "wholerow");
}

/*
 * DELETE ... RETURNING: store the whole old row, carried in planSlot's junk
 * column junk (0: none), into slot.  The slot gets its own copy (a heap
 * slot would otherwise keep a pointer into planSlot's memory).
 */
void
PgpolyStoreOldRow(TupleTableSlot *slot, TupleTableSlot *planSlot,
				  AttrNumber junk, Relation rel)
{
	bool		isnull;
	Datum		d;
	HeapTupleHeader td;
	HeapTupleData tup;

	if (junk == InvalidAttrNumber)
		return;
	d = ExecGetJunkAttribute(planSlot, junk, &isnull);
	if (isnull)
		return;
	td = DatumGetHeapTupleHeader(d);
	tup.t_len = HeapTupleHeaderGetDatumLength(td);
	ItemPointerSetInvalid(&tup.t_self);
	tup.t_tableOid = RelationGetRelid(rel);
	tup.t_data = td;
	ExecForceStoreHeapTuple(heap_copytuple(&tup), slot, true);
}

/* The attnum of n (casts looked through) if it is a column of baserel, else 0. */
AttrNumber
PgpolyColumnOf(Node *n, RelOptInfo *baserel)
{
	Var		   *v = (Var *) PgpolyStripRelabel(n);

	if (v && IsA(v, Var) && v->varno == baserel->relid && v->varlevelsup == 0 &&
		v->varattno > 0)
		return v->varattno;
	return 0;
}

/*
 * The strategy number of operator opno in the default btree operator
 * family of typid (a domain: of its base type), or 0 when it is not there.
 * Pushdown recognises a comparison by this, never by the operator's name,
 * which any schema on the search_path can define.
 */
int
PgpolyBtreeStrategy(Oid opno, Oid typid)
{
	TypeCacheEntry *tc = lookup_type_cache(getBaseType(typid), TYPECACHE_BTREE_OPFAMILY);

	if (!OidIsValid(tc->btree_opf))
		return 0;
	return get_op_opfamily_strategy(opno, tc->btree_opf);
}

/*
 * Whether expr can be computed before the scan starts (no Vars, nothing
 * volatile): Consts, Params, stable functions of them.
 */
bool
PgpolyIsScanConstant(Node *expr)
{
	return !contain_var_clause(expr) && !contain_volatile_functions(expr);
}

/*
 * create_foreignscan_path() without an outer path or restrictinfo list,
 * across the signature changes of PostgreSQL 17 and 18.
 */
ForeignPath *
PgpolyForeignScanPath(PlannerInfo *root, RelOptInfo *rel, double rows,
					  Cost startup, Cost total, List *pathkeys,
					  Relids required_outer, List *fdw_private)
{
	return create_foreignscan_path(root, rel, NULL, rows,
#if PG_VERSION_NUM >= 180000
								   0,
#endif
								   startup, total, pathkeys, required_outer, NULL,
#if PG_VERSION_NUM >= 170000
								   NIL,
#endif
								   fdw_private);
}

/* create_foreign_upper_path() likewise, for an upper relation. */
ForeignPath *
PgpolyForeignUpperPath(PlannerInfo *root, RelOptInfo *rel, PathTarget *target,
					   double rows, Cost startup, Cost total, List *pathkeys,
					   List *fdw_private)
{
	return create_foreign_upper_path(root, rel, target, rows,
#if PG_VERSION_NUM >= 180000
									 0,
#endif
									 startup, total, pathkeys, NULL,
#if PG_VERSION_NUM >= 170000
									 NIL,
#endif
									 fdw_private);
}

/*
 * Invalidate the cached plans that read relid, in this backend only, as
 * a local relcache invalidation does (the plan cache listens to those):
 * a scan that finds the store no longer says what its plan relied on
 * calls it, at once (an ERROR would discard a transactional one).
 */
void
PgpolyReplanReaders(Oid relid)
{
	SharedInvalidationMessage msg;

	msg.rc.id = SHAREDINVALRELCACHE_ID;
	msg.rc.dbId = MyDatabaseId;
	msg.rc.relId = relid;
	LocalExecuteInvalidationMessage(&msg);
}
