/*-------------------------------------------------------------------------
 *
 * redis_join.c
 *		  Batched join of any relation to a Redis table on its key column.
 *
 * A nested loop with a parameterized Redis scan pays one round trip per
 * outer row, and a hash join scans the whole key prefix.  Instead, for a
 * join clause  redis.key = <outer expression>  we offer a CustomScan,
 * "Redis Batched Join", that reads the outer side in batches of fetch_size
 * rows, fetches the batch's distinct keys in one pipelined round, and
 * probes them through a hash index.  INNER, LEFT, SEMI and ANTI joins are
 * supported; EXPLAIN shows the node, its outer key and, under ANALYZE, the
 * round trips made.
 *
 * Plan shape: custom_scan_tlist is the outer plan's target list followed by
 * one Var per Redis column; tlist, quals and custom_exprs are rewritten by
 * setrefs.c to reference it (INDEX_VAR).  custom_exprs holds the outer key
 * expression first, then the join clauses (ON) that decide whether a Redis
 * row matches; plan.qual holds the clauses applied after the join.  The key
 * equality the node joins on is enforced by the fetch itself (only that
 * key is read, and equality of the key is equality of its stored bytes),
 * so it is not evaluated again; every other clause is.
 *
 * Execution overlaps with Redis: once a batch's round is read, the next
 * batch of outer rows is read and its round sent, so Redis answers it while
 * the rows of this batch are joined.  Within a batch too: its fetches leave
 * in pieces as its outer rows are read, and its rows are joined as their
 * replies arrive (one request, one round trip), so even a join of one
 * batch keeps the backend and Redis busy at once.  Only the Redis columns the query reads
 * are converted; when it reads none but the key (a semi or anti join on the
 * key, or only the key of a hash), each key's existence is asked (TYPE)
 * instead of its value.  When it reads some fields of a hash and a hash
 * with none of them set would give the same rows as a missing key (a left
 * join whose output reads fields alone, its ON clauses any column, or a
 * clause no row with such a field NULL matches: absent_is_no_row), only
 * those fields are fetched (HMGET).
 *
 * fdw/redis_join.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/explain.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "nodes/extensible.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/paths.h"
#include "optimizer/restrictinfo.h"
#include "parser/parsetree.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/ruleutils.h"

#include "redis.h"

/* custom_private of the plan, by position. */
enum RedisJoinPrivate
{
	RJ_RELID,					/* Oid (as Integer): the Redis foreign table */
	RJ_JOINTYPE,				/* Integer */
	RJ_NOUTER,					/* Integer: outer columns in the scan tlist */
	RJ_INNER_ATTS,				/* List of Integer: attno of each inner column */
	RJ_NEED_TTL,				/* Integer */
	RJ_READ,					/* List of Integer: inner columns read */
	RJ_ABSENT_NO_ROW			/* Integer: absent_is_no_row */
};

/*
 * A batch of outer rows and their keys, fetched in one round.  The outer
 * rows are kept as their columns' datums (nouter per row, by-reference ones
 * copied into cxt): no tuple is formed, and none deformed again to join.
 */
typedef struct JoinBatch
{
	Datum	   *values;			/* row i's columns at i * nouter */
	bool	   *nulls;
	int			maxrows;		/* rows values has room for */
	char	  **keys;			/* Redis key of each, NULL for a NULL key */
	size_t	   *lens;
	int		   *stateidx;		/* its distinct key's state in the round */
	int			n;
	bool		sent;			/* its round was sent, not taken yet */
	MemoryContext cxt;			/* the keys and by-reference datums */
} JoinBatch;

typedef struct RedisJoinState
{
	CustomScanState css;
	PlanState  *outer;
	RedisTable *tbl;
	Index		rti;			/* its range table entry */
	RedisScan  *scan;
	JoinType	jointype;
	int			nouter;
	List	   *inner_atts;
	bool		need_ttl;
	ExprState  *keyexpr;
	AttrNumber	keycol;			/* the key is this outer column (no
								 * expression to evaluate), or 0 */
	TupleDesc	outer_desc;		/* of the outer rows: how to copy datums */
	PgpolyConv	keyconv;		/* the outer key's type -> stored form, */
	bool		keyconv_ready;	/* unless it is the key column's */
	ExprState  *joinqual;
	bool	   *needed;			/* the Redis columns read, by attno - 1 */
	bool		fields_only;	/* fetch the fields read alone (HMGET) */

	/* the batch being joined and the next one, whose round is on its way */
	JoinBatch	batches[2];
	int			cur;			/* batches[cur] is joined; -1: none yet */
	int			cap;
	int			pos;			/* outer row being joined */
	int			item;			/* next Redis row of its key */
	bool		matched;
	bool		outer_done;
	Datum	   *rowvals;		/* one Redis row, by attno */
	bool	   *rownulls;
	RedisTrips *trips;			/* round trips per node */
} RedisJoinState;

static bool enable_batched_join = true;
static set_join_pathlist_hook_type prev_join_hook = NULL;

static Plan *plan_join(PlannerInfo *root, RelOptInfo *rel, CustomPath *best_path,
					   List *tlist, List *clauses, List *custom_plans);
static Node *create_join_state(CustomScan *cscan);
static void begin_join(CustomScanState *node, EState *estate, int eflags);
static TupleTableSlot *exec_join(CustomScanState *node);
static void end_join(CustomScanState *node);
static void rescan_join(CustomScanState *node);
static void explain_join(CustomScanState *node, List *ancestors, ExplainState *es);

static const CustomPathMethods path_methods = {
	.CustomName = "Redis Batched Join",
	.PlanCustomPath = plan_join,
};

static const CustomScanMethods plan_methods = {
	.CustomName = "Redis Batched Join",
	.CreateCustomScanState = create_join_state,
};

static const CustomExecMethods exec_methods = {
	.CustomName = "Redis Batched Join",
	.BeginCustomScan = begin_join,
	.ExecCustomScan = exec_join,
	.EndCustomScan = end_join,
	.ReScanCustomScan = rescan_join,
	.ExplainCustomScan = explain_join,
};

/* ----------------------------------------------------------------
 *		Planning
 * ----------------------------------------------------------------
 */

/* Whether any expression in exprs uses a system column or whole row of relid. */
static bool
uses_special_columns(List *exprs, Index relid)
{
	Bitmapset  *attrs = NULL;
	int			x = -1;

	pull_varattnos((Node *) exprs, relid, &attrs);
	while ((x = bms_next_member(attrs, x)) >= 0)
		if (x + FirstLowInvalidHeapAttributeNumber <= 0)
			return true;
	return false;
}

/*
 * The outer expression of a usable  key = outer  join clause, or NULL.  It
 * is usable when the Redis scan would push the same clause down: the core's
 * PgpolyKeyEqualityIsByteEquality decides for both, so the keys fetched are
 * exactly the keys that can match.
 */
static Expr *
outer_key_expr(RestrictInfo *ri, RelOptInfo *outerrel, RelOptInfo *innerrel,
			   RedisTable *tbl)
{
	OpExpr	   *op = (OpExpr *) ri->clause;
	AttrNumber	key_att = tbl->key_att;
	Node	   *l,
			   *r;
	Var		   *v;

	if (!IsA(op, OpExpr) || list_length(op->args) != 2)
		return NULL;
	l = linitial(op->args);
	r = lsecond(op->args);
	for (int side = 0; side < 2; side++)
	{
		Node	   *k = side == 0 ? l : r;
		Node	   *o = side == 0 ? r : l;

		v = (Var *) k;
		while (v && IsA(v, RelabelType))
			v = (Var *) ((RelabelType *) v)->arg;
		if (v && IsA(v, Var) && v->varno == innerrel->relid && v->varattno == key_att &&
			PgpolyKeyEqualityIsByteEquality(op->opno, tbl->cols[key_att - 1].typid,
											tbl->cols[key_att - 1].typmod,
											exprType(o), op->inputcollid, NULL) &&
			bms_is_subset(pull_varnos(NULL, o), outerrel->relids) &&
			!contain_volatile_functions(o))
			return (Expr *) o;
	}
	return NULL;
}

/*
 * Whether the join's clauses let us build the node at all.  A placeholder
 * the Redis side computes (coalesce(r.v, 0) of a subquery under an outer
 * join) must come out NULL in a null-extended row, but the node computes
 * its output from the joined row: such a join is left to the core.
 */
static bool
join_is_usable(RelOptInfo *joinrel, RelOptInfo *innerrel, List *restrictlist)
{
	ListCell   *lc;

	foreach(lc, restrictlist)
		if (((RestrictInfo *) lfirst(lc))->pseudoconstant)
			return false;
	foreach(lc, innerrel->reltarget->exprs)
		if (IsA(lfirst(lc), PlaceHolderVar))
			return false;
	return !uses_special_columns(joinrel->reltarget->exprs, innerrel->relid) &&
		!uses_special_columns(extract_actual_clauses(restrictlist, false), innerrel->relid) &&
		!uses_special_columns(extract_actual_clauses(innerrel->baserestrictinfo, false),
							  innerrel->relid);
}

/*
 * set_join_pathlist_hook: offer the batched join when the inner side is a
 * Redis table joined on its key.
 */
static void
redis_join_paths(PlannerInfo *root, RelOptInfo *joinrel, RelOptInfo *outerrel,
				 RelOptInfo *innerrel, JoinType jointype, JoinPathExtraData *extra)
{
	Path	   *outer_path = outerrel->cheapest_total_path;
	RedisTable *tbl;
	Expr	   *okey = NULL;
	RestrictInfo *keyri = NULL;
	CustomPath *cp;
	ListCell   *lc;
	double		rounds;

	if (prev_join_hook)
		prev_join_hook(root, joinrel, outerrel, innerrel, jointype, extra);
	if (!enable_batched_join || !RedisIsRedisRel(innerrel) ||
		!bms_is_empty(innerrel->lateral_relids) || outer_path == NULL ||
		PATH_REQ_OUTER(outer_path) != NULL ||
		(jointype != JOIN_INNER && jointype != JOIN_LEFT &&
		 jointype != JOIN_SEMI && jointype != JOIN_ANTI) ||
		!join_is_usable(joinrel, innerrel, extra->restrictlist))
		return;

	tbl = RedisRelTable(innerrel);
	foreach(lc, extra->restrictlist)
	{
		RestrictInfo *ri = lfirst(lc);

		/*
		 * Only an ON clause may drive an outer join.  (A semi join's clauses
		 * all count as pushed down, and each may drive it.)
		 */
		if ((jointype == JOIN_LEFT || jointype == JOIN_ANTI) &&
			RINFO_IS_PUSHED_DOWN(ri, joinrel->relids))
			continue;
		if ((okey = outer_key_expr(ri, outerrel, innerrel, tbl)) != NULL)
		{
			keyri = ri;
			break;
		}
	}
	if (okey == NULL)
		return;

	cp = makeNode(CustomPath);
	cp->path.pathtype = T_CustomScan;
	cp->path.parent = joinrel;
	cp->path.pathtarget = joinrel->reltarget;
	cp->path.param_info = NULL;
	cp->path.rows = joinrel->rows;
	rounds = ceil(outer_path->rows / tbl->fetch_size);
	cp->path.startup_cost = outer_path->startup_cost + 2.0;
	cp->path.total_cost = outer_path->total_cost + rounds * 2.0 +
		outer_path->rows * (0.01 + cpu_operator_cost * list_length(extra->restrictlist)) +
		joinrel->rows * cpu_tuple_cost;
	cp->custom_paths = list_make1(outer_path);
#if PG_VERSION_NUM >= 150000
	cp->flags = CUSTOMPATH_SUPPORT_PROJECTION;	/* ExecProject is ours anyway */
#endif
	cp->custom_private = list_make5(okey, extra->restrictlist, makeInteger(jointype),
									makeInteger(innerrel->relid), keyri);
	cp->methods = &path_methods;
	add_path(joinrel, &cp->path);
}

/*
 * Whether a row of the Redis table (range table index relid) none of whose
 * read fields is set gives the join the same rows as no Redis row, so that
 * the fields read may be fetched alone (RedisScanAllowFieldFetch): in a
 * left join whose output and clauses after the join (outread: the columns
 * they read) read fields alone (such a row comes out as the outer row with
 * NULLs, joined or not: its ON clauses, whatever columns they read, the key
 * included, only decide which), or when a clause deciding whether a row
 * matches (matchquals) is never true with some field read NULL.
 */
static bool
absent_is_no_row(RedisTable *tbl, Index relid, JoinType jointype, List *outread,
				 List *matchquals)
{
	bool		fields = true;
	ListCell   *lc;

	foreach(lc, outread)
		if (tbl->cols[lfirst_int(lc) - 1].role != RCOL_FIELD)
			fields = false;
	return (jointype == JOIN_LEFT && fields) ||
		RedisQualsRejectNullField(tbl, relid, matchquals);
}

/* PlanCustomPath: build the scan tlist and split the clauses. */
static Plan *
plan_join(PlannerInfo *root, RelOptInfo *rel, CustomPath *best_path, List *tlist,
		  List *clauses, List *custom_plans)
{
	Plan	   *outer_plan = linitial(custom_plans);
	Expr	   *okey = linitial(best_path->custom_private);
	List	   *restrictlist = lsecond(best_path->custom_private);
	JoinType	jointype = intVal(lthird(best_path->custom_private));
	RestrictInfo *keyri = list_nth(best_path->custom_private, 4);
	List	   *read;
	List	   *outread;		/* read by the output and otherquals */
	RelOptInfo *innerrel = NULL;
	CustomScan *cs = makeNode(CustomScan);
	List	   *scan_tlist = NIL;
	List	   *inner_atts = NIL;
	List	   *joinquals,
			   *otherquals;
	ListCell   *lc;
	RedisTable *tbl;
	Bitmapset  *attrs = NULL;

	/* The inner relation, as the path recorded it (both sides may be Redis). */
	innerrel = find_base_rel(root, intVal(lfourth(best_path->custom_private)));
	tbl = RedisRelTable(innerrel);

	foreach(lc, outer_plan->targetlist)
		scan_tlist = lappend(scan_tlist,
							 makeTargetEntry(copyObject(((TargetEntry *) lfirst(lc))->expr),
											 list_length(scan_tlist) + 1, NULL, false));
	for (AttrNumber att = 1; att <= tbl->natts; att++)
	{
		RedisColumn *col = &tbl->cols[att - 1];

		if (col->role == RCOL_NONE)
			continue;
		scan_tlist = lappend(scan_tlist,
							 makeTargetEntry((Expr *) makeVar(innerrel->relid, att, col->typid,
															  col->typmod,
															  get_typcollation(col->typid), 0),
											 list_length(scan_tlist) + 1, NULL, false));
		inner_atts = lappend_int(inner_atts, att);
	}

	extract_actual_join_clauses(restrictlist, rel->relids, &joinquals, &otherquals);
	if (jointype == JOIN_INNER)
	{
		joinquals = list_concat(joinquals, otherquals);
		otherquals = NIL;
	}
	/*
	 * The inner relation's own clauses, its pseudoconstant ones included:
	 * PostgreSQL turns i4 = 1 AND i4 = 2 into i4 = 1 and a constant false,
	 * which a scan of the relation would check in a gating Result above it,
	 * and this node takes the scan's place.
	 */
	joinquals = list_concat(joinquals, extract_actual_clauses(innerrel->baserestrictinfo, false));
	joinquals = list_concat(joinquals, extract_actual_clauses(innerrel->baserestrictinfo, true));
	/* the fetch enforces the key equality: no recheck */
	joinquals = list_delete_ptr(joinquals, keyri->clause);
	otherquals = list_delete_ptr(otherquals, keyri->clause);

	/*
	 * The Redis columns read: the path's output (tlist may still be empty:
	 * a projection put on the node later computes from that output) and
	 * the clauses evaluated here.
	 */
	pull_varattnos((Node *) best_path->path.pathtarget->exprs, innerrel->relid, &attrs);
	pull_varattnos((Node *) otherquals, innerrel->relid, &attrs);
	outread = RedisColumnsRead(tbl, attrs);
	pull_varattnos((Node *) joinquals, innerrel->relid, &attrs);
	read = RedisColumnsRead(tbl, attrs);

	cs->scan.plan.targetlist = tlist;
	cs->scan.plan.qual = otherquals;
	cs->scan.scanrelid = 0;
	cs->flags = best_path->flags;
	cs->custom_plans = custom_plans;
	cs->custom_exprs = lcons(okey, joinquals);
	cs->custom_scan_tlist = scan_tlist;
	cs->custom_private = list_make5(makeInteger((int) planner_rt_fetch(innerrel->relid, root)->relid),
									makeInteger(jointype),
									makeInteger(list_length(outer_plan->targetlist)),
									inner_atts,
									makeInteger(tbl->ttl_att != 0 &&
												list_member_int(read, tbl->ttl_att)));
	cs->custom_private = lappend(cs->custom_private, read);

	/*
	 * What decides whether a Redis row matches: the ON clauses; in inner
	 * and semi joins every clause the node evaluates.
	 */
	cs->custom_private =
		lappend(cs->custom_private,
				makeInteger(absent_is_no_row(tbl, innerrel->relid, jointype, outread,
											 jointype == JOIN_SEMI ?
											 list_concat_copy(joinquals, otherquals) :
											 joinquals)));
	cs->methods = &plan_methods;
	return &cs->scan.plan;
}

/* ----------------------------------------------------------------
 *		Execution
 * ----------------------------------------------------------------
 */

/* CreateCustomScanState. */
static Node *
create_join_state(CustomScan *cscan)
{
	RedisJoinState *js = palloc0(sizeof(RedisJoinState));

	NodeSetTag(js, T_CustomScanState);
	js->css.methods = &exec_methods;
	return (Node *) js;
}

/*
 * The outer column (1-based, of the scan tuple's first nouter) that the
 * outer key expression expr merely reads, or 0 when it computes something.
 * A binary-compatible relabeling leaves the datum as it is.
 */
static AttrNumber
outer_column(Expr *expr, int nouter)
{
	while (expr && IsA(expr, RelabelType))
		expr = ((RelabelType *) expr)->arg;
	if (expr && IsA(expr, Var) && ((Var *) expr)->varno == INDEX_VAR &&
		((Var *) expr)->varattno >= 1 && ((Var *) expr)->varattno <= nouter)
		return ((Var *) expr)->varattno;
	return 0;
}

/* BeginCustomScan: the outer plan, expressions, and the Redis side. */
static void
begin_join(CustomScanState *node, EState *estate, int eflags)
{
	RedisJoinState *js = (RedisJoinState *) node;
	CustomScan *cs = (CustomScan *) node->ss.ps.plan;
	int			nouter = intVal(list_nth(cs->custom_private, RJ_NOUTER));
	TargetEntry *first_inner = list_nth(cs->custom_scan_tlist, nouter);
	Index		rti;
	RangeTblEntry *rte;
	PgpolyConnection *conn;

	/*
	 * The Redis table's range table index: read it from the first inner
	 * column's Var, which setrefs.c offsets into the flat range table like
	 * every Var.  RJ_RELID (custom_private) is not offset, so it is wrong
	 * when the join was planned in a subquery (CTE, sublink).
	 */
	rti = castNode(Var, first_inner->expr)->varno;
	rte = exec_rt_fetch(rti, estate);

	js->outer = ExecInitNode(linitial(cs->custom_plans), estate, eflags);
	node->custom_ps = list_make1(js->outer);
	js->jointype = intVal(list_nth(cs->custom_private, RJ_JOINTYPE));
	js->nouter = nouter;
	js->inner_atts = list_nth(cs->custom_private, RJ_INNER_ATTS);
	js->need_ttl = intVal(list_nth(cs->custom_private, RJ_NEED_TTL));
	js->keyexpr = ExecInitExpr(linitial(cs->custom_exprs), &node->ss.ps);
	js->keycol = outer_column(linitial(cs->custom_exprs), nouter);
	js->outer_desc = ExecGetResultType(js->outer);
	Assert(js->outer_desc->natts >= nouter);
	js->joinqual = ExecInitQual(list_copy_tail(cs->custom_exprs, 1), &node->ss.ps);
	js->tbl = RedisLoadTable(rte->relid, PgpolyRteUser(estate, rte));
	js->rti = rti;
	js->tbl->target = RedisScanTarget(estate, rti);
	js->needed = RedisColumnsNeeded(js->tbl, list_nth(cs->custom_private, RJ_READ));
	/* an UPDATE or DELETE target is read whole */
	js->fields_only = intVal(list_nth(cs->custom_private, RJ_ABSENT_NO_ROW)) &&
		js->tbl->target == NULL &&
		RedisFieldsOnly(js->tbl, js->needed, js->need_ttl);
	js->cur = -1;
	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;

	conn = RedisGetConnection(js->tbl);
	js->scan = RedisScanBegin(js->tbl, conn, js->need_ttl,
							  PgpolyPendingWrites(conn, js->tbl->relid));
	RedisScanSetColumns(js->scan, js->needed,
						js->jointype == JOIN_SEMI || js->jointype == JOIN_ANTI);
	if (js->fields_only)
		RedisScanAllowFieldFetch(js->scan);
	RedisScanWatchTarget(js->scan, js->tbl, estate, rti,
						 GetCurrentTransactionNestLevel(), GetCurrentSubTransactionId());
	js->trips = palloc0(sizeof(RedisTrips));
	RedisScanSetTrips(js->scan, js->trips);
	js->cap = js->tbl->fetch_size;
	for (int b = 0; b < 2; b++)
	{
		JoinBatch  *batch = &js->batches[b];

		batch->keys = palloc(sizeof(char *) * js->cap);
		batch->lens = palloc(sizeof(size_t) * js->cap);
		batch->stateidx = palloc(sizeof(int) * js->cap);
		batch->cxt = AllocSetContextCreate(estate->es_query_cxt, "pgpoly redis join batch",
										   ALLOCSET_DEFAULT_SIZES);
	}
	js->rowvals = palloc(sizeof(Datum) * js->tbl->natts);
	js->rownulls = palloc(sizeof(bool) * js->tbl->natts);
}

/*
 * Keep outer row n of batch: its columns' datums, the by-reference ones
 * copied into the batch's memory (as a copy of the slot would keep them;
 * the outer plan's slot changes with its next row).
 */
static void
keep_outer_row(RedisJoinState *js, JoinBatch *batch, int n, TupleTableSlot *slot)
{
	TupleDesc	desc = js->outer_desc;
	Datum	   *values;
	bool	   *nulls;

	if (n == batch->maxrows)
	{
		batch->maxrows = Max(64, batch->maxrows * 2);
		batch->values = batch->values ?
			repalloc_huge(batch->values, sizeof(Datum) * js->nouter * (Size) batch->maxrows) :
			MemoryContextAllocExtended(js->css.ss.ps.state->es_query_cxt,
									   sizeof(Datum) * js->nouter * (Size) batch->maxrows,
									   MCXT_ALLOC_HUGE);
		batch->nulls = batch->nulls ?
			repalloc_huge(batch->nulls, sizeof(bool) * js->nouter * (Size) batch->maxrows) :
			MemoryContextAllocExtended(js->css.ss.ps.state->es_query_cxt,
									   sizeof(bool) * js->nouter * (Size) batch->maxrows,
									   MCXT_ALLOC_HUGE);
	}
	values = batch->values + (Size) n * js->nouter;
	nulls = batch->nulls + (Size) n * js->nouter;
	slot_getallattrs(slot);
	for (int i = 0; i < js->nouter; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		nulls[i] = slot->tts_isnull[i];
		values[i] = nulls[i] || att->attbyval ? slot->tts_values[i] :
			datumCopy(slot->tts_values[i], false, att->attlen);
	}
}

/*
 * Load the scan tuple with outer row pos of batch and, if vals is not NULL,
 * the Redis row vals/nulls (else NULLs for the Redis columns).
 */
static TupleTableSlot *
fill_scan_tuple(RedisJoinState *js, JoinBatch *batch, int pos, Datum *vals,
				bool *nulls)
{
	TupleTableSlot *scan = js->css.ss.ss_ScanTupleSlot;
	ListCell   *lc;
	int			i = js->nouter;

	ExecClearTuple(scan);
	memcpy(scan->tts_values, batch->values + (Size) pos * js->nouter,
		   sizeof(Datum) * js->nouter);
	memcpy(scan->tts_isnull, batch->nulls + (Size) pos * js->nouter,
		   sizeof(bool) * js->nouter);
	foreach(lc, js->inner_atts)
	{
		int			att = lfirst_int(lc);

		scan->tts_values[i] = vals ? vals[att - 1] : (Datum) 0;
		scan->tts_isnull[i++] = vals ? nulls[att - 1] : true;
	}
	return ExecStoreVirtualTuple(scan);
}

/*
 * Keys of a batch whose fetch leaves before the batch is read: Redis starts
 * on them while the rest of the outer rows are read, the next pieces
 * doubling in size (few system calls, Redis never idle).
 */
#define JOIN_FIRST_PIECE	32

/*
 * Read the next batch of outer rows into batch and send the fetch of their
 * distinct keys (RedisScanAddKeys, in pieces as they are read).  The outer
 * plan runs in the caller's memory context (it may allocate scan state
 * that must outlive the batch); only the keys and the kept rows' datums
 * live in the batch's context.  A key that is an outer column is taken from
 * the kept row; any other key expression is evaluated over the scan tuple.
 * false if no outer row was left.
 */
static bool
read_batch(RedisJoinState *js, JoinBatch *batch)
{
	ExprContext *econtext = js->css.ss.ps.ps_ExprContext;
	RedisKeySet *seen;
	char	  **dkeys;
	size_t	   *dlens;
	int			nd = 0;
	int			nsent = 0;

	if (!js->keyconv_ready &&
		exprType((Node *) js->keyexpr->expr) != js->tbl->cols[js->tbl->key_att - 1].typid)
	{
		MemoryContext old = MemoryContextSwitchTo(js->css.ss.ps.state->es_query_cxt);

		PgpolyConvInit(&js->keyconv, exprType((Node *) js->keyexpr->expr), -1, NULL);
		js->keyconv_ready = true;
		MemoryContextSwitchTo(old);
	}
	MemoryContextReset(batch->cxt);
	seen = RedisKeySetCreate(batch->cxt, js->cap);
	dkeys = MemoryContextAlloc(batch->cxt, sizeof(char *) * js->cap);
	dlens = MemoryContextAlloc(batch->cxt, sizeof(size_t) * js->cap);
	batch->n = 0;
	while (batch->n < js->cap && !js->outer_done)
	{
		TupleTableSlot *slot = ExecProcNode(js->outer);
		MemoryContext old;
		bool		isnull;
		Datum		key;
		int			n = batch->n;

		if (TupIsNull(slot))
		{
			js->outer_done = true;
			break;
		}
		old = MemoryContextSwitchTo(batch->cxt);
		keep_outer_row(js, batch, n, slot);
		if (js->keycol > 0)
		{
			key = batch->values[(Size) n * js->nouter + js->keycol - 1];
			isnull = batch->nulls[(Size) n * js->nouter + js->keycol - 1];
		}
		else
		{
			ResetExprContext(econtext);
			econtext->ecxt_scantuple = fill_scan_tuple(js, batch, n, NULL, NULL);
			key = ExecEvalExpr(js->keyexpr, econtext, &isnull);
		}
		batch->keys[n] = isnull ? NULL :
			RedisLookupKey(js->tbl, js->keyconv_ready ? &js->keyconv : NULL,
						   key, &batch->lens[n]);
		MemoryContextSwitchTo(old);
		batch->stateidx[n] = batch->keys[n] ?
			RedisKeySetIndex(seen, batch->keys[n], batch->lens[n], nd) : -1;
		if (batch->stateidx[n] == nd)
		{
			dkeys[nd] = batch->keys[n];
			dlens[nd++] = batch->lens[n];
		}
		batch->n++;
		/* keys in pieces of the size sent before, JOIN_FIRST_PIECE first */
		if (nd - nsent >= Max(JOIN_FIRST_PIECE, nsent))
		{
			RedisScanAddKeys(js->scan, dkeys + nsent, dlens + nsent, nd - nsent, js->cap);
			nsent = nd;
		}
	}
	if (batch->n == 0)
		return false;
	if (nd > nsent)
		RedisScanAddKeys(js->scan, dkeys + nsent, dlens + nsent, nd - nsent, nd);
	RedisScanEndKeys(js->scan);
	batch->sent = true;
	return true;
}

/*
 * Move to the next batch: take its round (read it first if it was not sent
 * ahead), then read the batch after it and send its round, so that Redis
 * answers while this one is joined.  false when the outer side is done.
 */
static bool
next_batch(RedisJoinState *js)
{
	int			b = js->cur < 0 ? 0 : js->cur ^ 1;

	if (!js->batches[b].sent && !read_batch(js, &js->batches[b]))
		return false;
	RedisScanTakeKeysLazily(js->scan);
	js->batches[b].sent = false;
	js->cur = b;
	js->pos = js->item = 0;
	js->matched = false;
	if (!js->outer_done)
		(void) read_batch(js, &js->batches[b ^ 1]);
	return true;
}

/* Move to the next outer row. */
static void
next_outer(RedisJoinState *js)
{
	js->pos++;
	js->item = 0;
	js->matched = false;
}

/* ExecCustomScan: the next joined row. */
static TupleTableSlot *
exec_join(CustomScanState *node)
{
	RedisJoinState *js = (RedisJoinState *) node;
	ExprContext *econtext = node->ss.ps.ps_ExprContext;

	for (;;)
	{
		JoinBatch  *batch;
		int			pos;
		RedisKeyState *st;
		int			nrows;
		bool		emit_nulls;

		ResetExprContext(econtext);
		if (js->cur < 0 || js->pos >= js->batches[js->cur].n)
		{
			if (!next_batch(js))
				return ExecClearTuple(node->ss.ps.ps_ResultTupleSlot);
			continue;
		}
		batch = &js->batches[js->cur];
		pos = js->pos;

		/* The Redis rows of this outer row's key, one per call. */
		st = batch->stateidx[js->pos] >= 0 ?
			RedisScanRoundState(js->scan, batch->stateidx[js->pos]) : NULL;
		nrows = st ? RedisStateRowCount(js->tbl, st) : 0;
		while (js->item < nrows)
		{
			RedisStateRow(js->scan, st, js->item++, js->rowvals, js->rownulls);
			econtext->ecxt_scantuple = fill_scan_tuple(js, batch, pos, js->rowvals,
													   js->rownulls);
			if (!ExecQual(js->joinqual, econtext))
				continue;
			js->matched = true;
			if (js->jointype == JOIN_ANTI)
				break;
			if (ExecQual(node->ss.ps.qual, econtext))
			{
				if (js->jointype == JOIN_SEMI)
					next_outer(js);
				return ExecProject(node->ss.ps.ps_ProjInfo);
			}
		}

		/* This outer row is done; outer joins may still emit it. */
		emit_nulls = !js->matched &&
			(js->jointype == JOIN_LEFT || js->jointype == JOIN_ANTI);
		next_outer(js);
		if (emit_nulls)
		{
			econtext->ecxt_scantuple = fill_scan_tuple(js, batch, pos, NULL, NULL);
			if (ExecQual(node->ss.ps.qual, econtext))
				return ExecProject(node->ss.ps.ps_ProjInfo);
		}
	}
}

/*
 * ReScanCustomScan: start over from the first outer row (a round still on
 * its way is dropped when its replies arrive).  ExecReScan does not know the
 * outer plan (a custom_ps child, not lefttree), so the changed parameters
 * are passed down here, as nodeAppend.c does: without them a child that
 * caches its output across rescans (a function scan's tuplestore, a hash
 * join's hash table, a sort) would replay what it computed for the previous
 * parameter values.  An outer plan with changed parameters is rescanned by
 * its next ExecProcNode.
 */
static void
rescan_join(CustomScanState *node)
{
	RedisJoinState *js = (RedisJoinState *) node;

	if (node->ss.ps.chgParam != NULL)
		UpdateChangedParamSet(js->outer, node->ss.ps.chgParam);
	if (js->outer->chgParam == NULL)
		ExecReScan(js->outer);
	js->cur = -1;
	js->batches[0].sent = js->batches[1].sent = false;
	js->batches[0].n = js->batches[1].n = 0;
	js->pos = js->item = 0;
	js->outer_done = false;
	js->matched = false;
	if (js->scan)
		RedisScanRestart(js->scan);
}

/* EndCustomScan. */
static void
end_join(CustomScanState *node)
{
	ExecEndNode(((RedisJoinState *) node)->outer);
}

/*
 * ExplainCustomScan: the Redis command (and under VERBOSE the fields it
 * asks for), the outer key, the round trips.
 */
static void
explain_join(CustomScanState *node, List *ancestors, ExplainState *es)
{
	RedisJoinState *js = (RedisJoinState *) node;
	CustomScan *cs = (CustomScan *) node->ss.ps.plan;
	List	   *ctx = set_deparse_context_plan(es->deparse_cxt, node->ss.ps.plan, ancestors);
	List	   *joinquals = list_copy_tail(cs->custom_exprs, 1);
	static const char *const types[] = {"Inner", "Left", "Full", "Right", "Semi", "Anti"};

	bool		keyonly = RedisKeysOnly(js->tbl, js->needed, js->need_ttl,
											js->jointype == JOIN_SEMI ||
											js->jointype == JOIN_ANTI);
	bool		watch_keyonly;

	/* Executed: what the scan did (buffered writes make it read values). */
	if (es->analyze && js->scan && RedisScanKeysOnly(js->scan) >= 0)
		keyonly = RedisScanKeysOnly(js->scan) > 0;
	ExplainPropertyText("Join Type", types[js->jointype], es);
	ExplainPropertyText("Redis",
						psprintf("%s %s{key} per distinct outer key, pipelined in rounds of %d%s",
								 keyonly ? "TYPE" : js->fields_only ? "HMGET" :
								 RedisFetchCommand(js->tbl),
								 js->tbl->prefix, js->tbl->fetch_size,
								 keyonly ? ", keys only" :
								 js->fields_only ? ", the fields read only" : ""), es);
	if (es->verbose && js->fields_only && !keyonly)
		ExplainPropertyText("Redis Fields", RedisFieldsText(js->tbl, js->needed), es);
	ExplainPropertyText("Outer Key",
						deparse_expression(linitial(cs->custom_exprs), ctx, true, false), es);
	if (joinquals != NIL)
		ExplainPropertyText("Join Filter",
							deparse_expression((Node *) make_ands_explicit(joinquals),
											   ctx, true, false), es);
	if (es->verbose &&
		RedisScanWatches(js->tbl, node->ss.ps.state, js->rti, &watch_keyonly) &&
		(watch_keyonly || !keyonly))
		ExplainPropertyText("Redis Watch", RedisWatchText(js->tbl), es);
	if (es->verbose && js->tbl->cluster)
		ExplainPropertyText("Redis Cluster",
							"each round's keys fetched from the nodes serving their slots, all nodes at once",
							es);
	if (es->analyze && js->scan)
		ExplainPropertyInteger("Redis Round Trips", NULL,
							   RedisScanRoundTrips(js->scan), es);
	if (es->analyze && es->verbose && js->tbl->cluster && js->trips)
		ExplainPropertyText("Redis Round Trips per Node", RedisTripsText(js->trips), es);
}

/* Register the path hook, the plan methods and the GUC. */
void
RedisJoinInit(void)
{
	DefineCustomBoolVariable("pgpoly.enable_batched_join",
							 "Lets the planner join to Redis tables with batched, pipelined key lookups.",
							 NULL, &enable_batched_join, true, PGC_USERSET, 0,
							 NULL, NULL, NULL);
	RegisterCustomScanMethods(&plan_methods);
	prev_join_hook = set_join_pathlist_hook;
	set_join_pathlist_hook = redis_join_paths;
}
