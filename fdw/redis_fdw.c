/*-------------------------------------------------------------------------
 *
 * redis_fdw.c
 *		  pgpoly_redis: handler, planning, scan and modify callbacks, EXPLAIN.
 *
 * Planning classifies the restriction clauses into what Redis can use:
 *	- key = expr, key = ANY(array expr), key IN (...): fetch those keys,
 *	  pipelined in rounds of fetch_size (expr may be a Param, including the
 *	  InitPlan of key = ANY(ARRAY(SELECT ...)));
 *	- key LIKE 'prefix%': SCAN MATCH on the escaped prefix;
 *	- zset score comparisons: ZRANGEBYSCORE bounds;
 *	- otherwise SCAN MATCH key_prefix*.
 * The key clause that lists the keys is enforced by the fetch itself (only
 * those keys are read, and buffered writes are overlaid on exactly those
 * keys), so it is not rechecked: rechecking key = ANY($1) would cost
 * keys x rows comparisons.  Every other clause, LIKE and score ranges
 * included, is still checked locally: the pushed part only narrows what is
 * fetched.  A key clause is pushed only where SQL equality is equality of
 * the stored bytes (PgpolyKeyEqualityIsByteEquality: integer, text under a
 * deterministic collation, uuid, date/timestamp ... keys; not numeric,
 * float, bpchar, or nondeterministic collations), as it is in Redis; the
 * batched join asks the same function.  Otherwise the clause is a local
 * filter over a full scan, and EXPLAIN VERBOSE says why.  No network I/O
 * happens at plan time unless use_remote_estimate.
 *
 * A scan of a hash whose local clauses can never be true with some field
 * they read NULL (r.clicks > 10) fetches the fields it reads alone (HMGET):
 * a hash holding none of them is then no row either way, and HMGET need
 * not tell it from a missing key (RedisQualsRejectNullField; the batched
 * join asks the same function).  The scan of an UPDATE's or DELETE's
 * target reads the whole hash.
 *
 * An UPDATE or DELETE that needs no whole row (see "Direct modification")
 * runs in the scan node: it finds the keys (and reads the columns the
 * assigned values use) and writes them as the per-row path would, without
 * the whole old row PostgreSQL asks a foreign UPDATE for.
 *
 * fdw/redis_fdw.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <hiredis/hiredis.h>

#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/sysattr.h"
#include "access/xact.h"
#include "common/hashfn.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "commands/explain.h"
#include "executor/executor.h"
#include "foreign/fdwapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/appendinfo.h"
#include "optimizer/clauses.h"
#include "optimizer/cost.h"
#include "optimizer/inherit.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/planmain.h"
#include "optimizer/restrictinfo.h"
#include "parser/parse_coerce.h"
#include "parser/parsetree.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"
#include "utils/typcache.h"

#include "redis.h"

/* Cost model: a pipelined round trip, and per key fetched. */
#define REDIS_ROUND_TRIP_COST	2.0
#define REDIS_PER_KEY_COST		0.01
/* Rows assumed for a full SCAN of a table never measured: pessimistic. */
#define REDIS_UNKNOWN_ROWS		100000.0
/* Keys assumed for a key array known only at run time. */
#define REDIS_UNKNOWN_KEYS		100.0

/* What fdw_exprs elements are (parallel list in fdw_private). */
enum RedisExprKind
{
	REXPR_KEY = 1,				/* one key */
	REXPR_KEY_ARRAY,			/* array of keys */
	REXPR_SCORE_MIN,			/* score >= */
	REXPR_SCORE_MIN_EXCL,		/* score > */
	REXPR_SCORE_MAX,			/* score <= */
	REXPR_SCORE_MAX_EXCL		/* score < */
};

/* fdw_private of the ForeignScan plan, by position. */
enum RedisPrivate
{
	RPRIV_KINDS,				/* List of Integer: kind of each fdw_expr */
	RPRIV_PATTERN,				/* String: SCAN MATCH pattern, "" if keys */
	RPRIV_NEED_TTL,				/* Integer: read _ttl */
	RPRIV_PUSHED,				/* String: pushed clauses, deparsed */
	RPRIV_NKEYS,				/* Integer: keys known at plan time, -1 */
	RPRIV_NOTE,					/* String: why no key clause was pushed */
	RPRIV_ATTRS,				/* List of Integer: the columns read */
	RPRIV_ABSENT_NO_ROW			/* Integer: a hash without the fields read
								 * is as good as none (the local quals
								 * reject it): fetch them alone */
};

/* Planner state of a Redis base relation. */
typedef struct RedisRelInfo
{
	RedisTable *tbl;
	List	   *exprs;			/* fdw_exprs */
	List	   *kinds;			/* RedisExprKind of each */
	List	   *pushed;			/* clauses (Expr) used for fetching */
	Expr	   *key_clause;		/* the one enforced by fetching: no recheck */
	char	   *pattern;		/* SCAN MATCH pattern when no keys */
	bool		has_keys;
	double		nkeys;			/* keys to fetch (estimate) */
	int			nkeys_known;	/* exact count at plan time, or -1 */
	const char *note;			/* why a key clause was not pushed */
} RedisRelInfo;

/* Executor state of a Redis foreign scan. */
typedef struct RedisScanState
{
	PgpolyScanState core;		/* user, connection, memory (lifecycle.c) */
	RedisTable *tbl;
	List	   *exprs;			/* ExprState of fdw_exprs */
	List	   *kinds;
	char	   *pattern;
	bool		need_ttl;
	bool	   *needed;			/* the columns read, by attno - 1 */
	RedisScan  *scan;			/* NULL until the first row is asked */
	int64		round_trips;	/* of finished scans (rescans) */
	RedisTrips *trips;			/* per node, of all of them */
	PgpolyConv	keyconv;		/* the key clause's value type */
	bool		keyconv_ready;
	int			level;			/* the subtransaction that began the node */
	SubTransactionId subid;		/* (a cursor's DECLARE): RedisScanWatch */
} RedisScanState;

/* The identity columns of the old row, by their index in core.junk. */
enum RedisJunk
{
	RJUNK_KEY,
	RJUNK_MEMBER,
	RJUNK_IDX,
	RJUNK_VALUE
};

static const char *const redis_junk[] = {"pgpoly_key", "pgpoly_member", "pgpoly_idx",
"pgpoly_value", NULL};

/* The attnum of each identity column of tbl, by RedisJunk (0: none). */
static void
junk_atts(const RedisTable *tbl, AttrNumber *atts)
{
	atts[RJUNK_KEY] = tbl->key_att;
	atts[RJUNK_MEMBER] = tbl->member_att;
	atts[RJUNK_IDX] = tbl->idx_att;
	atts[RJUNK_VALUE] = tbl->type == REDIS_LIST ? tbl->value_att : 0;
}

/* Executor state of INSERT/UPDATE/DELETE. */
typedef struct RedisModifyState
{
	PgpolyModifyState core;		/* user, connection, writer, junk columns */
	RedisTable *tbl;
	RedisOverlay *ov;			/* ON CONFLICT DO NOTHING, transactional:
								 * the buffered writes, by key */
	RedisOverlay *later;		/* immediate: the buffered writes COMMIT
								 * sends after this statement's, by key */
	int			later_from;		/* of that many writes of the connection */
	HTAB	   *misspelled;		/* RedisMisspelling by identity, or NULL */
	HTAB	   *held;			/* UPDATE that may move rows: PgpolyHeldRow by
								 * identity, or NULL */
	/* direct modification (redisBeginDirectModify) */
	CmdType		direct_op;		/* CMD_UPDATE, CMD_DELETE; else CMD_UNKNOWN */
	bool		set_processed;	/* count the rows in es_processed */
	bool		done;			/* every key found was written */
	int			nassign;		/* UPDATE: the assignments, after the scan's */
	AttrNumber *assign_att;		/* fdw_exprs: their columns */
	ExprState **assign_expr;
	bool		per_row;		/* they read the row: evaluated per row */
	int64		rows;			/* rows modified */
} RedisModifyState;

static void track_moves(RedisModifyState *ms, ResultRelInfo *rinfo);
static RedisKeyRef identity(RedisTable *tbl, Datum *values, bool *nulls);
static void moved_onto_error(RedisModifyState *ms, Datum *values, bool *nulls,
							 PgpolyMoveCheck how) pg_attribute_noreturn();
static bool scan_row_marked(EState *estate, Index rti);

/*
 * A row the scan for this UPDATE/DELETE read from a key or member stored in
 * another spelling than the fixed form of its value (RedisNoteMisspelled).
 */
typedef struct RedisMisspelling
{
	RedisKeyRef id;				/* RedisRowIdentity(): the hash key */
	AttrNumber	att;			/* the column spelled otherwise */
	char	   *spelling;		/* as stored */
	char	   *form;			/* the fixed form */
} RedisMisspelling;

PG_FUNCTION_INFO_V1(pgpoly_redis_handler);

/* ----------------------------------------------------------------
 *		Helpers
 * ----------------------------------------------------------------
 */

/* Whether n is a Var of baserel's column att. */
static bool
is_column(Node *n, RelOptInfo *baserel, AttrNumber att)
{
	return PgpolyColumnOf(n, baserel) == att;
}

/*
 * Whether  key = value  (operator opno, collation coll; valtype the
 * value's type) can be looked up by the value's stored bytes, as the core
 * decides for the scan and the batched join alike.  If not, the reason is
 * kept for EXPLAIN.
 */
static bool
is_key_equality(RedisRelInfo *ri, Oid opno, Oid coll, Oid valtype)
{
	const char *why;
	char	   *name;
	RedisColumn *key = &ri->tbl->cols[ri->tbl->key_att - 1];

	if (PgpolyKeyEqualityIsByteEquality(opno, key->typid, key->typmod, valtype, coll, &why))
		return true;
	name = get_opname(opno);
	if (ri->note == NULL && name != NULL && strcmp(name, "=") == 0)
		ri->note = why;			/* an equality on the key that stays local */
	return false;
}

/* ----------------------------------------------------------------
 *		Qual classification
 * ----------------------------------------------------------------
 */

/* Record a clause pushed as fdw_expr expr of kind. */
static void
push(RedisRelInfo *ri, Expr *clause, Node *expr, int kind)
{
	ri->exprs = lappend(ri->exprs, expr);
	ri->kinds = lappend_int(ri->kinds, kind);
	ri->pushed = lappend(ri->pushed, clause);
}

/* Number of elements of an array expression known at plan time, or -1. */
static int
array_length_known(Node *arr)
{
	if (IsA(arr, Const) && !((Const *) arr)->constisnull)
	{
		ArrayType  *a = DatumGetArrayTypeP(((Const *) arr)->constvalue);

		return ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));
	}
	if (IsA(arr, ArrayExpr))
		return list_length(((ArrayExpr *) arr)->elements);
	return -1;
}

/* key = expr (either side); true if pushed. */
static bool
classify_key_eq(RedisRelInfo *ri, RelOptInfo *baserel, OpExpr *op)
{
	Node	   *l = linitial(op->args);
	Node	   *r = lsecond(op->args);
	AttrNumber	key = ri->tbl->key_att;

	if (!is_column(l, baserel, key))
	{
		Node	   *t = l;

		l = r;
		r = t;
	}
	if (!is_column(l, baserel, key) || !PgpolyIsScanConstant(r) ||
		!is_key_equality(ri, op->opno, op->inputcollid, exprType(r)))
		return false;
	push(ri, (Expr *) op, r, REXPR_KEY);
	ri->key_clause = (Expr *) op;
	ri->nkeys += 1;
	if (ri->nkeys_known >= 0)
		ri->nkeys_known += 1;
	return true;
}

/* key = ANY(array expr), also IN (...); true if pushed. */
static bool
classify_key_any(RedisRelInfo *ri, RelOptInfo *baserel, ScalarArrayOpExpr *sa)
{
	Node	   *arr = lsecond(sa->args);
	int			n;

	if (!sa->useOr || !is_column(linitial(sa->args), baserel, ri->tbl->key_att) ||
		!PgpolyIsScanConstant(arr) ||
		!is_key_equality(ri, sa->opno, sa->inputcollid, get_element_type(exprType(arr))))
		return false;
	push(ri, (Expr *) sa, arr, REXPR_KEY_ARRAY);
	ri->key_clause = (Expr *) sa;
	n = array_length_known(arr);
	ri->nkeys += n >= 0 ? n : REDIS_UNKNOWN_KEYS;
	ri->nkeys_known = (n >= 0 && ri->nkeys_known >= 0) ? ri->nkeys_known + n : -1;
	return true;
}

/*
 * key LIKE 'literal%': the literal prefix, or NULL if the pattern has any
 * other wildcard or escape.
 */
static char *
like_prefix(RelOptInfo *baserel, RedisTable *tbl, OpExpr *op)
{
	Const	   *c = lsecond(op->args);
	char	   *pat;
	size_t		len;

	if (op->opno != OID_TEXT_LIKE_OP ||
		!is_column(linitial(op->args), baserel, tbl->key_att) ||
		!IsA(c, Const) || c->constisnull)
		return NULL;
	pat = TextDatumGetCString(c->constvalue);
	len = strlen(pat);
	if (len == 0 || pat[len - 1] != '%' || strpbrk(pat, "_\\") != NULL ||
		strchr(pat, '%') != pat + len - 1)
		return NULL;
	pat[len - 1] = '\0';
	return pat;
}

/* zset score comparison with a run-time constant; true if pushed. */
static bool
classify_score(RedisRelInfo *ri, RelOptInfo *baserel, OpExpr *op)
{
	Node	   *l = linitial(op->args);
	Node	   *r = lsecond(op->args);
	bool		swapped = false;
	int			kind;

	if (ri->tbl->type != REDIS_ZSET || list_length(op->args) != 2)
		return false;
	if (!is_column(l, baserel, ri->tbl->score_att))
	{
		Node	   *t = l;

		l = r;
		r = t;
		swapped = true;
	}
	/* a float4 value compares widened (0.1::float4 is 0.10000000149...) */
	if (!is_column(l, baserel, ri->tbl->score_att) || !PgpolyIsScanConstant(r) ||
		!PgpolyValueHasColumnForm(ri->tbl->cols[ri->tbl->score_att - 1].typid, exprType(r)))
		return false;
	/* the score type's own comparisons, whatever the search_path holds */
	switch (PgpolyBtreeStrategy(op->opno, FLOAT8OID))
	{
		case BTEqualStrategyNumber:
			push(ri, (Expr *) op, r, REXPR_SCORE_MIN);
			ri->exprs = lappend(ri->exprs, r);
			ri->kinds = lappend_int(ri->kinds, REXPR_SCORE_MAX);
			return true;
		case BTGreaterEqualStrategyNumber:
			kind = swapped ? REXPR_SCORE_MAX : REXPR_SCORE_MIN;
			break;
		case BTGreaterStrategyNumber:
			kind = swapped ? REXPR_SCORE_MAX_EXCL : REXPR_SCORE_MIN_EXCL;
			break;
		case BTLessEqualStrategyNumber:
			kind = swapped ? REXPR_SCORE_MIN : REXPR_SCORE_MAX;
			break;
		case BTLessStrategyNumber:
			kind = swapped ? REXPR_SCORE_MIN_EXCL : REXPR_SCORE_MAX_EXCL;
			break;
		default:
			return false;
	}
	push(ri, (Expr *) op, r, kind);
	return true;
}

/* Sort the restriction clauses into what Redis can use. */
static void
classify_quals(RedisRelInfo *ri, RelOptInfo *baserel)
{
	ListCell   *lc;
	char	   *prefix = NULL;

	ri->nkeys_known = 0;
	foreach(lc, baserel->baserestrictinfo)
	{
		Expr	   *clause = ((RestrictInfo *) lfirst(lc))->clause;

		/* Keys: the first key clause decides; others are checked locally. */
		if (!ri->has_keys && IsA(clause, OpExpr) &&
			classify_key_eq(ri, baserel, (OpExpr *) clause))
			ri->has_keys = true;
		else if (!ri->has_keys && IsA(clause, ScalarArrayOpExpr) &&
				 classify_key_any(ri, baserel, (ScalarArrayOpExpr *) clause))
			ri->has_keys = true;
		else if (IsA(clause, OpExpr) && classify_score(ri, baserel, (OpExpr *) clause))
			continue;
		else if (prefix == NULL && IsA(clause, OpExpr) &&
				 (prefix = like_prefix(baserel, ri->tbl, (OpExpr *) clause)) != NULL)
			ri->pushed = lappend(ri->pushed, clause);
	}
	if (ri->has_keys)
		ri->note = NULL;
	else
	{
		char	   *full = psprintf("%s%s", ri->tbl->prefix,
								prefix ? PgpolyServerToStoreCstr(prefix, false) : "");

		ri->pattern = psprintf("%s*", RedisGlobEscape(full, strlen(full)));
		ri->nkeys_known = -1;
	}
}

/* ----------------------------------------------------------------
 *		Estimates and paths
 * ----------------------------------------------------------------
 */

/* Reply handler for the remote estimate: per node DBSIZE, then one SCAN page. */
static bool
estimate_reply(redisReply *r, int index, void *arg)
{
	double	   *counts = arg;

	if (index % 2 == 0 && r->type == REDIS_REPLY_INTEGER)
		counts[index] = (double) r->integer;
	else if (index % 2 == 1 && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
			 r->element[1]->type == REDIS_REPLY_ARRAY)
		counts[index] = (double) r->element[1]->elements;
	return false;
}

/*
 * use_remote_estimate: keys matching the pattern, extrapolated from one
 * SCAN page of 1000 over DBSIZE keys, summed over a cluster's primaries.
 * One round trip.
 */
static double
remote_estimate(RedisTable *tbl, const char *pattern)
{
	PgpolyConnection *conn = RedisGetConnection(tbl);
	List	   *nodes = RedisPrimaryNodes(conn);
	const char *dbsize[1] = {"DBSIZE"};
	const char *scan[8] = {"SCAN", "0", "MATCH", pattern, "COUNT", "1000",
	"TYPE", RedisScanTypeFilter(tbl)};
	double	   *counts = palloc0(sizeof(double) * 2 * list_length(nodes));
	double		total = 0;
	ListCell   *lc;

	foreach(lc, nodes)
	{
		RedisAppendToNode(conn, lfirst(lc), 1, dbsize, NULL);
		RedisAppendToNode(conn, lfirst(lc), 8, scan, NULL);
	}
	RedisExchange(conn, 2 * list_length(nodes), estimate_reply, counts);
	for (int i = 0; i < list_length(nodes); i++)
		total += counts[2 * i] <= 1000 ? counts[2 * i + 1] :
			counts[2 * i] * counts[2 * i + 1] / 1000.0;
	return total;
}

/* Rows one key yields, by table type. */
static double
rows_per_key(RedisTable *tbl)
{
	return (tbl->type == REDIS_HASH || tbl->type == REDIS_STRING ||
			tbl->type == REDIS_JSON) ? 1.0 : 10.0;
}

/* GetForeignRelSize: classify quals, estimate rows without network I/O. */
static void
redisGetForeignRelSize(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	RedisRelInfo *ri = palloc0(sizeof(RedisRelInfo));
	double		fetched;
	List	   *local = NIL;
	ListCell   *lc;

	ri->tbl = RedisLoadTable(foreigntableid, PgpolyRelUser(baserel));
	baserel->fdw_private = ri;
	classify_quals(ri, baserel);

	if (ri->has_keys)
		fetched = ri->nkeys;
	else if (ri->tbl->remote_estimate)
		fetched = remote_estimate(ri->tbl, ri->pattern);
	else
		fetched = baserel->tuples >= 0 ? baserel->tuples : REDIS_UNKNOWN_ROWS;
	ri->nkeys = Max(fetched, 1.0);

	/* Selectivity of the clauses not already accounted for by the keys. */
	foreach(lc, baserel->baserestrictinfo)
	{
		RestrictInfo *rinfo = lfirst(lc);

		if (!list_member_ptr(ri->pushed, rinfo->clause) || !ri->has_keys)
			local = lappend(local, rinfo);
	}
	baserel->rows = clamp_row_est(ri->nkeys * rows_per_key(ri->tbl) *
								  clauselist_selectivity(root, local, baserel->relid,
														 JOIN_INNER, NULL));
}

/* Cost of fetching nkeys keys in rounds of fetch_size. */
static Cost
fetch_cost(RedisTable *tbl, double nkeys, bool scan)
{
	double		rounds = ceil(nkeys / tbl->fetch_size) * (scan ? 2 : 1);

	return rounds * REDIS_ROUND_TRIP_COST + nkeys * REDIS_PER_KEY_COST;
}

/* GetForeignPaths: one unparameterized path (joins use redis_join.c). */
static void
redisGetForeignPaths(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	RedisRelInfo *ri = baserel->fdw_private;
	Cost		startup = REDIS_ROUND_TRIP_COST;
	Cost		total = startup + fetch_cost(ri->tbl, ri->nkeys, !ri->has_keys) +
		baserel->rows * cpu_tuple_cost;

	add_path(baserel, (Path *)
			 PgpolyForeignScanPath(root, baserel, baserel->rows, startup, total,
								   NIL, NULL, NIL));
}

/*
 * The columns of the table the plan reads (RedisColumnsRead): those the
 * scan outputs and those its local quals use.  The key clause enforced by
 * fetching is not among the local quals.
 */
static List *
columns_read(RelOptInfo *baserel, RedisTable *tbl, List *local)
{
	Bitmapset  *attrs = NULL;

	pull_varattnos((Node *) baserel->reltarget->exprs, baserel->relid, &attrs);
	pull_varattnos((Node *) local, baserel->relid, &attrs);
	return RedisColumnsRead(tbl, attrs);
}

/*
 * Whether quals (over range table index relid, tbl's) can never all be true
 * when some field of tbl that they read is NULL: then a hash none of whose
 * read fields is set gives no row through them, as a missing key gives none,
 * and the fields read may be fetched alone (RedisScanAllowFieldFetch).
 */
bool
RedisQualsRejectNullField(RedisTable *tbl, Index relid, List *quals)
{
	ListCell   *lc;

	foreach(lc, find_nonnullable_vars((Node *) quals))
	{
		Var		   *v = lfirst(lc);

		if (IsA(v, Var) && v->varno == relid && v->varlevelsup == 0 &&
			v->varattno > 0 && v->varattno <= tbl->natts &&
			tbl->cols[v->varattno - 1].role == RCOL_FIELD)
			return true;
	}
	return false;
}

/*
 * GetForeignPlan: every clause but the key clause stays a local qual; the
 * values of pushed clauses go to fdw_exprs.
 */
static ForeignScan *
redisGetForeignPlan(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid,
					ForeignPath *best_path, List *tlist, List *scan_clauses,
					Plan *outer_plan)
{
	RedisRelInfo *ri = baserel->fdw_private;
	List	   *local = NIL;
	List	   *priv;
	List	   *attrs;
	ListCell   *lc;

	foreach(lc, scan_clauses)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);

		if (rinfo->clause != ri->key_clause && !rinfo->pseudoconstant)
			local = lappend(local, rinfo->clause);
	}

	attrs = columns_read(baserel, ri->tbl, local);
	priv = list_make5(ri->kinds,
					  makeString(ri->pattern ? ri->pattern : pstrdup("")),
					  makeInteger(ri->tbl->ttl_att != 0 &&
								  list_member_int(attrs, ri->tbl->ttl_att)),
					  makeString(PgpolyDeparseClauses(ri->pushed, root, baserel)),
					  makeInteger(ri->nkeys_known));
	priv = lappend(priv, makeString(pstrdup(ri->note ? ri->note : "")));
	priv = lappend(priv, attrs);
	priv = lappend(priv, makeInteger(RedisQualsRejectNullField(ri->tbl, baserel->relid, local)));
	return make_foreignscan(tlist, local, baserel->relid, ri->exprs, priv,
							NIL, NIL, outer_plan);
}

/* ----------------------------------------------------------------
 *		Scan execution
 * ----------------------------------------------------------------
 */

/* BeginForeignScan: resolve the table and connection; no I/O yet. */
static void
redisBeginForeignScan(ForeignScanState *node, int eflags)
{
	ForeignScan *fs = (ForeignScan *) node->ss.ps.plan;
	RedisScanState *st = PgpolyScanBegin(sizeof(RedisScanState), &RedisStore,
										 node, eflags);

	st->kinds = list_nth(fs->fdw_private, RPRIV_KINDS);
	st->pattern = strVal(list_nth(fs->fdw_private, RPRIV_PATTERN));
	st->need_ttl = intVal(list_nth(fs->fdw_private, RPRIV_NEED_TTL));
	st->level = GetCurrentTransactionNestLevel();
	st->subid = GetCurrentSubTransactionId();
	/* SKIP LOCKED is an ERROR at once, whether or not the scan runs */
	(void) scan_row_marked(node->ss.ps.state, fs->scan.scanrelid);
	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;
	st->tbl = RedisLoadTable(st->core.relid, st->core.userid);
	st->tbl->target = RedisScanTarget(node->ss.ps.state, fs->scan.scanrelid);
	st->needed = RedisColumnsNeeded(st->tbl, list_nth(fs->fdw_private, RPRIV_ATTRS));
	st->exprs = ExecInitExprList(fs->fdw_exprs, (PlanState *) node);
}

/*
 * Add the key of value (of the key clause's type, conv) to keys and its
 * length to lens, deduplicated through *seen, made at the second key (a
 * lookup of one key needs no set).
 */
static void
add_key(RedisTable *tbl, PgpolyConv *conv, Datum value, List **keys,
		List **lens, RedisKeySet **seen)
{
	size_t		len;
	char	   *key = RedisLookupKey(tbl, conv, value, &len);

	if (key == NULL)
		return;					/* equals no key of the column */
	if (*keys != NIL)
	{
		if (*seen == NULL)
		{
			*seen = RedisKeySetCreate(CurrentMemoryContext, 0);
			RedisKeySetAdd(*seen, linitial(*keys), (size_t) linitial_int(*lens));
		}
		if (!RedisKeySetAdd(*seen, key, len))
			return;
	}
	*keys = lappend(*keys, key);
	*lens = lappend_int(*lens, (int) len);
}

/*
 * Text of a score bound value (the fixed form: all digits of a float), with
 * "(" for an exclusive bound.
 */
static char *
score_bound(Datum v, Oid typid, bool exclusive)
{
	PgpolyConv	conv;
	size_t		len;

	PgpolyConvInit(&conv, typid, -1, NULL);
	return psprintf("%s%s", exclusive ? "(" : "", PgpolyDatumToText(&conv, v, &len));
}

/*
 * The conversion of the pushed key clause's values (element type for
 * arrays); NULL when they have the key column's type.
 */
static PgpolyConv *
key_conv(RedisScanState *st, ExprState *es, int kind)
{
	Oid			typid = exprType((Node *) es->expr);

	if (kind == REXPR_KEY_ARRAY)
		typid = get_element_type(typid);
	if (typid == st->tbl->cols[st->tbl->key_att - 1].typid)
		return NULL;			/* the key column's own (RedisKeyFromDatum) */
	if (!st->keyconv_ready)
	{
		PgpolyConvInit(&st->keyconv, typid, -1, NULL);
		st->keyconv_ready = true;
	}
	return &st->keyconv;
}

/*
 * Tighten a score bound: keep the stricter of cur and the new value (a
 * float8).  NaN, which Redis refuses as a bound, is above every score in
 * SQL: as an upper bound it keeps every score, as a lower one it starts the
 * range at +inf (whose scores the local recheck drops as well).
 */
static void
tighten(char **cur, double *curval, Datum v, Oid typid, bool exclusive, bool lower)
{
	char	   *text;
	double		val;

	if (isnan(DatumGetFloat8(v)))
	{
		if (lower)
		{
			*cur = "+inf";
			*curval = get_float8_infinity();
		}
		return;
	}
	text = score_bound(v, typid, exclusive);
	val = strtod(text + (exclusive ? 1 : 0), NULL);

	if (*cur == NULL || (lower ? val > *curval : val < *curval) ||
		(val == *curval && exclusive))
	{
		*cur = text;
		*curval = val;
	}
}

/*
 * Whether the scan of node, of tbl reading the columns needed, fetches the
 * fields it reads alone (HMGET): its local quals reject a hash without them
 * (RPRIV_ABSENT_NO_ROW), it reads only fields and the key
 * (RedisFieldsOnly), and it is no scan of an UPDATE's or DELETE's target
 * (which is read whole).  The scan and EXPLAIN decide here.
 */
static bool
scan_fields_only(ForeignScanState *node, RedisTable *tbl, const bool *needed,
				 bool need_ttl)
{
	ForeignScan *fs = (ForeignScan *) node->ss.ps.plan;

	return intVal(list_nth(fs->fdw_private, RPRIV_ABSENT_NO_ROW)) &&
		!ExecRelationIsTargetRelation(node->ss.ps.state, fs->scan.scanrelid) &&
		RedisFieldsOnly(tbl, needed, need_ttl);
}

/* Evaluate fdw_exprs: set the scan's keys, pattern and score range. */
static void
start_scan(ForeignScanState *node, RedisScanState *st)
{
	ExprContext *econtext = node->ss.ps.ps_ExprContext;
	List	   *keys = NIL;
	List	   *keylens = NIL;
	char	   *smin = NULL;
	char	   *smax = NULL;
	double		vmin = 0,
				vmax = 0;
	RedisKeySet *seen = NULL;
	ListCell   *le,
			   *lk;

	st->scan = RedisScanBegin(st->tbl, st->core.conn, st->need_ttl,
							  st->core.pending);
	RedisScanSetColumns(st->scan, st->needed, false);
	if (scan_fields_only(node, st->tbl, st->needed, st->need_ttl))
		RedisScanAllowFieldFetch(st->scan);
	RedisScanWatchTarget(st->scan, st->tbl, node->ss.ps.state,
						 ((Scan *) node->ss.ps.plan)->scanrelid, st->level, st->subid);
	/* Per-node round trips add up over rescans: not in the scan's memory. */
	if (st->trips == NULL)
		st->trips = MemoryContextAllocZero(GetMemoryChunkContext(st), sizeof(RedisTrips));
	RedisScanSetTrips(st->scan, st->trips);

	forboth(le, st->exprs, lk, st->kinds)
	{
		ExprState  *es = lfirst(le);
		int			kind = lfirst_int(lk);
		bool		isnull;
		Datum		v = ExecEvalExpr(es, econtext, &isnull);
		Oid			typid = exprType((Node *) es->expr);

		if (isnull)
		{
			if (kind == REXPR_KEY || kind == REXPR_KEY_ARRAY)
				continue;		/* key = NULL matches nothing */
			keys = keylens = NIL;	/* score op NULL: nothing matches */
			smin = "+inf";
			smax = "-inf";
			continue;
		}
		if (kind == REXPR_KEY)
			add_key(st->tbl, key_conv(st, es, kind), v, &keys, &keylens, &seen);
		else if (kind == REXPR_KEY_ARRAY)
		{
			ArrayType  *arr = DatumGetArrayTypeP(v);
			Datum	   *elems;
			bool	   *enulls;
			int			n;
			int16		elmlen;
			bool		elmbyval;
			char		elmalign;

			get_typlenbyvalalign(ARR_ELEMTYPE(arr), &elmlen, &elmbyval, &elmalign);
			deconstruct_array(arr, ARR_ELEMTYPE(arr), elmlen, elmbyval, elmalign,
							  &elems, &enulls, &n);
			for (int i = 0; i < n; i++)
				if (!enulls[i])
					add_key(st->tbl, key_conv(st, es, kind), elems[i], &keys, &keylens, &seen);
		}
		else if (kind == REXPR_SCORE_MIN || kind == REXPR_SCORE_MIN_EXCL)
			tighten(&smin, &vmin, v, typid, kind == REXPR_SCORE_MIN_EXCL, true);
		else
			tighten(&smax, &vmax, v, typid, kind == REXPR_SCORE_MAX_EXCL, false);
	}

	if (st->pattern[0] != '\0')
		RedisScanSetPattern(st->scan, st->pattern);
	else
	{
		int			n = list_length(keys);
		char	  **kv = palloc(sizeof(char *) * Max(n, 1));
		size_t	   *lv = palloc(sizeof(size_t) * Max(n, 1));
		int			i = 0;
		ListCell   *lc,
				   *ll;

		forboth(lc, keys, ll, keylens)
		{
			kv[i] = lfirst(lc);
			lv[i] = (size_t) lfirst_int(ll);
			i++;
		}
		RedisScanSetKeys(st->scan, kv, lv, n);
	}
	if (smin || smax)
		RedisScanSetScoreRange(st->scan, smin ? smin : "-inf", smax ? smax : "+inf");
}

/*
 * IterateForeignScan: next row, fetching a round when needed.  The scan
 * (its rounds and rows included) lives in the core's scan memory.
 */
static TupleTableSlot *
redisIterateForeignScan(ForeignScanState *node)
{
	RedisScanState *st = node->fdw_state;
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;

	ExecClearTuple(slot);
	if (!st->core.started)
	{
		MemoryContext old = PgpolyScanStart(&st->core);

		start_scan(node, st);
		MemoryContextSwitchTo(old);
	}
	if (RedisScanNext(st->scan, slot->tts_values, slot->tts_isnull))
		ExecStoreVirtualTuple(slot);
	return slot;
}

/* ReScanForeignScan: re-evaluate keys (params may have changed) and refetch. */
static void
redisReScanForeignScan(ForeignScanState *node)
{
	RedisScanState *st = node->fdw_state;

	if (st->scan)
		st->round_trips += RedisScanRoundTrips(st->scan);
	st->scan = NULL;
	PgpolyScanRescan(&st->core);
}

/* EndForeignScan: the connection stays cached; the scan's memory is freed. */
static void
redisEndForeignScan(ForeignScanState *node)
{
	RedisScanState *st = node->fdw_state;

	if (st->scan)
		st->round_trips += RedisScanRoundTrips(st->scan);
	st->scan = NULL;
	PgpolyScanEnd(&st->core);
}

/* ----------------------------------------------------------------
 *		EXPLAIN
 * ----------------------------------------------------------------
 */

/*
 * The fetch command as EXPLAIN shows it: "HGETALL user:{key}"; by_score:
 * the scan has a pushed score range; keyonly: no value is read; fields:
 * the fields read alone (their names under VERBOSE, RedisFieldsText).
 */
static char *
fetch_text(RedisTable *tbl, bool by_score, bool keyonly, bool fields)
{
	const char *args = "";

	if (keyonly)
		return psprintf("TYPE %s{key}", tbl->prefix);
	if (fields)
		return psprintf("HMGET %s{key} {fields read}", tbl->prefix);
	if (by_score)
		return psprintf("ZRANGEBYSCORE %s{key} {min} {max} WITHSCORES", tbl->prefix);
	if (tbl->type == REDIS_ZSET)
		args = " 0 -1 WITHSCORES";
	else if (tbl->type == REDIS_LIST)
		args = " 0 -1";
	return psprintf("%s %s{key}%s", RedisFetchCommand(tbl), tbl->prefix, args);
}

/* ExplainForeignScan: the commands sent and the clauses they use. */
static void
redisExplainForeignScan(ForeignScanState *node, ExplainState *es)
{
	ForeignScan *fs = (ForeignScan *) node->ss.ps.plan;
	RedisScanState *st = node->fdw_state;
	RedisTable *tbl = st->tbl ? st->tbl : RedisLoadTable(st->core.relid, st->core.userid);
	char	   *pattern = strVal(list_nth(fs->fdw_private, RPRIV_PATTERN));
	int			nkeys = intVal(list_nth(fs->fdw_private, RPRIV_NKEYS));
	char	   *pushed = strVal(list_nth(fs->fdw_private, RPRIV_PUSHED));
	List	   *kinds = list_nth(fs->fdw_private, RPRIV_KINDS);
	bool		by_score = list_member_int(kinds, REXPR_SCORE_MIN) ||
		list_member_int(kinds, REXPR_SCORE_MIN_EXCL) ||
		list_member_int(kinds, REXPR_SCORE_MAX) ||
		list_member_int(kinds, REXPR_SCORE_MAX_EXCL);
	bool	   *needed = RedisColumnsNeeded(tbl, list_nth(fs->fdw_private, RPRIV_ATTRS));
	bool		keyonly = !by_score && RedisKeysOnly(tbl, needed, st->need_ttl, false);
	bool		fields = !by_score && !keyonly &&
		scan_fields_only(node, tbl, needed, st->need_ttl);
	bool		watch_keyonly;
	char	   *req;

	/* Executed: what the scan did (buffered writes make it read values). */
	if (es->analyze && st->scan && RedisScanKeysOnly(st->scan) >= 0)
		keyonly = RedisScanKeysOnly(st->scan) > 0;
	if (pattern[0] != '\0' && keyonly)
		req = psprintf("SCAN MATCH %s COUNT %d TYPE %s, keys only",
					   pattern, tbl->fetch_size, RedisScanTypeFilter(tbl));
	else if (pattern[0] != '\0')
		req = psprintf("SCAN MATCH %s COUNT %d TYPE %s, then %s per key, pipelined",
					   pattern, tbl->fetch_size, RedisScanTypeFilter(tbl),
					   fetch_text(tbl, by_score, false, fields));
	else if (nkeys >= 0)
		req = psprintf("%s x%d, pipelined", fetch_text(tbl, by_score, keyonly, fields), nkeys);
	else
		req = psprintf("%s per key, pipelined in rounds of %d",
					   fetch_text(tbl, by_score, keyonly, fields), tbl->fetch_size);
	if (st->need_ttl)
		req = psprintf("%s, with TTL", req);
	ExplainPropertyText("Redis", req, es);
	if (es->verbose && fields)
		ExplainPropertyText("Redis Fields", RedisFieldsText(tbl, needed), es);
	if (es->verbose && pushed[0] != '\0')
		ExplainPropertyText("Redis Pushed Quals", pushed, es);
	if (es->verbose && strVal(list_nth(fs->fdw_private, RPRIV_NOTE))[0] != '\0')
		ExplainPropertyText("Redis Key Filtered Locally",
							strVal(list_nth(fs->fdw_private, RPRIV_NOTE)), es);
	if (es->verbose &&
		RedisScanWatches(tbl, node->ss.ps.state, fs->scan.scanrelid, &watch_keyonly) &&
		(watch_keyonly || !keyonly))
		ExplainPropertyText("Redis Watch", RedisWatchText(tbl), es);
	if (es->verbose && tbl->cluster)
		ExplainPropertyText("Redis Cluster",
							pattern[0] != '\0' ?
							"SCAN on every primary at once; keys fetched from the nodes serving their slots" :
							"keys fetched from the nodes serving their slots, all nodes at once",
							es);
	if (es->analyze)
		ExplainPropertyInteger("Redis Round Trips", NULL,
							   st->round_trips + (st->scan ? RedisScanRoundTrips(st->scan) : 0),
							   es);
	if (es->analyze && es->verbose && tbl->cluster && st->trips)
		ExplainPropertyText("Redis Round Trips per Node", RedisTripsText(st->trips), es);
}

/* ----------------------------------------------------------------
 *		Modification
 * ----------------------------------------------------------------
 */

/*
 * AddForeignUpdateTargets: the row identity (key; member for zset/set; idx
 * and value for lists), and the whole row for DELETE ... RETURNING.
 */
static void
redisAddForeignUpdateTargets(PlannerInfo *root, Index rtindex,
							 RangeTblEntry *target_rte, Relation target_relation)
{
	RedisTable *tbl = RedisLoadTable(RelationGetRelid(target_relation), GetUserId());
	AttrNumber	atts[lengthof(redis_junk)];

	junk_atts(tbl, atts);
	for (int i = 0; redis_junk[i]; i++)
		if (atts[i] != InvalidAttrNumber)
			PgpolyAddRowIdentity(root, rtindex, target_relation, atts[i], redis_junk[i]);
	PgpolyAddOldRow(root, rtindex);
}

/* PlanForeignModify: for UPDATE, the assigned columns. */
static List *
redisPlanForeignModify(PlannerInfo *root, ModifyTable *plan, Index resultRelation,
					   int subplan_index)
{
	return PgpolyPlanModifyColumns(root, plan, resultRelation);
}

/* PgpolySendWrites for write_mode 'immediate': one pipeline, no MULTI. */
static void
send_immediate(PgpolyConnection *conn, List *payloads)
{
	RedisSendCommands(conn, payloads, false);
}

/*
 * An immediate-mode write w is sent now; a write to its key that the
 * transaction buffered through another table reading the same keys (a
 * feature view's serving table: PgpolyPendingWrites) is sent at COMMIT,
 * after it, and would undo it: ERROR rather than let COMMIT silently
 * overwrite what the statement wrote.  The buffered writes are indexed
 * once per statement (again if some were added meanwhile).
 */
static void
check_no_later_write(RedisModifyState *ms, RedisWrite *w)
{
	PgpolyConnection *conn = ms->core.conn;
	RedisWrite *later;
	MemoryContext old;

	if (conn->writes == NIL)
		return;
	if (ms->later_from != list_length(conn->writes))
	{
		old = MemoryContextSwitchTo(GetMemoryChunkContext(ms));
		ms->later = RedisBuildOverlay(PgpolyPendingWrites(conn, ms->core.relid));
		MemoryContextSwitchTo(old);
		ms->later_from = list_length(conn->writes);
	}
	later = RedisOverlayFirstWrite(ms->later, RedisWriteKey(w), w->keylen);
	if (later != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot write key \"%s\" of foreign table \"%s\" immediately",
						PgpolyPrintable(RedisWriteKey(w), w->keylen, 200), ms->tbl->relname),
				 errdetail("This transaction buffered a write to the key through foreign table \"%s\", which COMMIT sends after it and which would undo it.",
						   later->tbl->relname),
				 errhint("Write the key in another transaction, or through a table with write_mode 'transactional'.")));
}

/* Hand all of a row's writes (RedisWrite *) to the table's writer. */
static void
queue_writes(RedisModifyState *ms, List *writes)
{
	ListCell   *lc;

	foreach(lc, writes)
	{
		if (!ms->core.writer.transactional)
			check_no_later_write(ms, lfirst(lc));
		PgpolyWriterAdd(&ms->core.writer, lfirst(lc));
	}
	PgpolyWriterEndRow(&ms->core.writer);	/* after the loop: it may free writes */
}

/* PgpolyLoadTable of the core's lifecycle. */
static void *
load_table(Oid relid, Oid userid)
{
	return RedisLoadTable(relid, userid);
}

/* PgpolyColumnField: column i of the table, if it maps to a hash or JSON field. */
static bool
column_field(const void *t, int i, PgpolyFieldRef *ref)
{
	const RedisColumn *col = &((const RedisTable *) t)->cols[i];

	if (col->role != RCOL_FIELD)
		return false;
	*ref = (PgpolyFieldRef) {col->name, col->field, col->fieldlen, i + 1};
	return true;
}

/* Set up modify state for rinfo (also used for COPY and routing). */
static RedisModifyState *
begin_modify(ModifyTableState *mtstate, ResultRelInfo *rinfo, List *fdw_private)
{
	RedisModifyState *ms = PgpolyModifyBegin(sizeof(RedisModifyState), &RedisStore,
											 mtstate, rinfo, fdw_private,
											 1000, send_immediate);
	AttrNumber	atts[lengthof(redis_junk)];

	ms->tbl = PgpolyModifyTable(&ms->core, load_table);
	junk_atts(ms->tbl, atts);
	PgpolyModifyFindJunk(&ms->core, redis_junk, atts);
	/* an INSERT appends a list element: no row it writes has the idx given */
	if (ms->tbl->type == REDIS_LIST)
		ms->core.id_atts[0] = InvalidAttrNumber;
	/* the _ttl a write gives its key (queue_row) */
	ms->core.written_row = ms->tbl->ttl_att != 0 && ms->tbl->ttl_seconds > 0;
	PgpolyCheckWrittenFields(ms->tbl->relname, ms->tbl, ms->tbl->natts, column_field,
							 mtstate->operation, ms->core.assigned);
	return ms;
}

/* BeginForeignModify. */
static void
redisBeginForeignModify(ModifyTableState *mtstate, ResultRelInfo *rinfo,
						List *fdw_private, int subplan_index, int eflags)
{
	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;
	track_moves(begin_modify(mtstate, rinfo, fdw_private), rinfo);
}

/*
 * PgpolyWrittenRow: the row written (write: its slot) with the _ttl a read
 * finds after the write, ttl_seconds, which every write sets
 * (RedisApplyOverlay); the other columns are stored as given.
 */
static void
written_row(PgpolyModifyState *core, void *write, Datum *values, bool *nulls)
{
	RedisTable *tbl = ((RedisModifyState *) core)->tbl;
	TupleTableSlot *slot = write;
	char	   *ttl = psprintf("%d", tbl->ttl_seconds);

	slot_getallattrs(slot);
	memcpy(values, slot->tts_values, sizeof(Datum) * tbl->natts);
	memcpy(nulls, slot->tts_isnull, sizeof(bool) * tbl->natts);
	values[tbl->ttl_att - 1] = RedisTextDatum(tbl, tbl->ttl_att, ttl, strlen(ttl));
	nulls[tbl->ttl_att - 1] = false;
}

/*
 * Hand the writes of the INSERT or UPDATE of slot, built from it, to the
 * writer.  A table with a _ttl column and ttl_seconds first makes slot the
 * row written, with the _ttl the write gives the key rather than the value
 * the statement had (NULL for an INSERT, the old TTL for an UPDATE): what
 * RETURNING, an AFTER ROW trigger and a view's check option read, the
 * last checked on it here before an immediate write is sent
 * (ms->core.written_row, see begin_modify).
 */
static void
queue_row(RedisModifyState *ms, EState *estate, TupleTableSlot *slot, List *writes)
{
	if (ms->core.written_row)
		PgpolyReturnWrittenRow(&ms->core, estate, slot, written_row, slot);
	queue_writes(ms, writes);
}

/*
 * ON CONFLICT DO NOTHING, write_mode 'immediate': the conditional writes
 * of the n rows go in one pipeline now, and their replies tell which rows
 * were inserted.
 */
static void
insert_if_absent_now(RedisModifyState *ms, EState *estate, TupleTableSlot **slots,
					 int n, bool *inserted)
{
	PgpolyWriter *writer = &ms->core.writer;

	for (int i = 0; i < n; i++)
	{
		RedisWrite *w;

		slot_getallattrs(slots[i]);
		inserted[i] = false;
		w = RedisInsertIfAbsentWrite(ms->tbl, slots[i]->tts_values,
									 slots[i]->tts_isnull, &inserted[i],
									 PgpolyWriterContext(writer));
		queue_row(ms, estate, slots[i], list_make1(w));
	}
	PgpolyWriterFlush(writer);
}

/*
 * ON CONFLICT DO NOTHING, write_mode 'transactional': a row is inserted
 * unless its key (member) exists in Redis now or in the transaction's
 * buffered writes, this statement's earlier rows included; the conditional
 * write is buffered, so a key someone else creates before COMMIT is not
 * overwritten either.
 */
static void
insert_if_absent_buffered(RedisModifyState *ms, EState *estate, TupleTableSlot **slots,
						  int n, bool *inserted)
{
	RedisItem  *ids = palloc(sizeof(RedisItem) * n);
	bool	   *remote = palloc(sizeof(bool) * n);
	MemoryContext old;

	for (int i = 0; i < n; i++)
	{
		slot_getallattrs(slots[i]);
		RedisInsertIdentity(ms->tbl, slots[i]->tts_values, slots[i]->tts_isnull, &ids[i]);
	}
	RedisRowsExist(ms->core.conn, ms->tbl, ids, n, remote);
	if (ms->ov == NULL)
	{
		old = MemoryContextSwitchTo(GetMemoryChunkContext(ms));
		ms->ov = RedisBuildOverlay(PgpolyPendingWrites(ms->core.conn, ms->core.relid));
		MemoryContextSwitchTo(old);
	}
	for (int i = 0; i < n; i++)
	{
		RedisWrite *w;

		inserted[i] = !RedisIdentityExists(ms->tbl, ms->ov, &ids[i], remote[i]);
		if (!inserted[i])
			continue;
		w = RedisInsertIfAbsentWrite(ms->tbl, slots[i]->tts_values,
									 slots[i]->tts_isnull, NULL,
									 PgpolyWriterContext(&ms->core.writer));
		old = MemoryContextSwitchTo(GetMemoryChunkContext(ms));
		RedisOverlayAdd(&ms->ov, w);
		MemoryContextSwitchTo(old);
		queue_row(ms, estate, slots[i], list_make1(w));
	}
}

/*
 * PgpolyInsertRows: INSERT of n rows (one, or a batch); ON CONFLICT DO
 * NOTHING skips the existing ones.
 */
static void
insert_rows(PgpolyModifyState *core, EState *estate, TupleTableSlot **slots, int n,
			bool *inserted)
{
	RedisModifyState *ms = (RedisModifyState *) core;

	if (ms->core.do_nothing && ms->core.transactional)
		insert_if_absent_buffered(ms, estate, slots, n, inserted);
	else if (ms->core.do_nothing)
		insert_if_absent_now(ms, estate, slots, n, inserted);
	else
		for (int i = 0; i < n; i++)
		{
			slot_getallattrs(slots[i]);
			queue_row(ms, estate, slots[i],
					  RedisInsertWrites(ms->tbl, slots[i]->tts_values,
										slots[i]->tts_isnull,
										PgpolyWriterContext(&ms->core.writer)));
			inserted[i] = true;
		}
}

/*
 * Rows an UPDATE through a partitioned table moves into this table, which
 * it updates too (ms: the UPDATE's state, see PgpolyModifyBegin): a row
 * landing on the key or member of a row the statement updates is an ERROR
 * (23505), as a row the UPDATE moves within the table is (check_moves):
 * Redis holds one row there, and the later write would overwrite the
 * other.  List elements have no identity and are appended.
 */
static void
check_moved_in(RedisModifyState *ms, TupleTableSlot **slots, int n)
{
	if (ms->core.routed == NULL || ms->held == NULL || ms->tbl->type == REDIS_LIST)
		return;
	for (int i = 0; i < n; i++)
	{
		RedisKeyRef id;
		PgpolyMoveCheck how;

		slot_getallattrs(slots[i]);
		id = identity(ms->tbl, slots[i]->tts_values, slots[i]->tts_isnull);
		how = PgpolyMoveIn(ms->held, GetMemoryChunkContext(ms), id.key, id.len,
						   ms->core.routed->writer.held);
		if (how != PGPOLY_MOVE_OK)
			moved_onto_error(ms, slots[i]->tts_values, slots[i]->tts_isnull, how);
		pfree((char *) id.key);
	}
}

/* ExecForeignInsert: NULL when ON CONFLICT DO NOTHING skipped the row. */
static TupleTableSlot *
redisExecForeignInsert(EState *estate, ResultRelInfo *rinfo,
					   TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	RedisModifyState *ms = rinfo->ri_FdwState;

	check_moved_in(ms, &slot, 1);
	return PgpolyExecInsert(&ms->core, estate, slot, insert_rows);
}

/* GetForeignModifyBatchSize: batch_size (default 1000), see fdwutil.c. */
static int
redisGetForeignModifyBatchSize(ResultRelInfo *rinfo)
{
	return PgpolyModifyBatchSize(rinfo, 1000);
}

/*
 * ExecForeignBatchInsert: the rows of a batch at once; ON CONFLICT DO
 * NOTHING returns the inserted ones.
 */
static TupleTableSlot **
redisExecForeignBatchInsert(EState *estate, ResultRelInfo *rinfo,
							TupleTableSlot **slots, TupleTableSlot **planSlots,
							int *numSlots)
{
	check_moved_in(rinfo->ri_FdwState, slots, *numSlots);
	return PgpolyExecBatchInsert(rinfo->ri_FdwState, estate, slots, numSlots,
								 insert_rows);
}

/*
 * The ResultRelInfo of the UPDATE/DELETE whose target a scan of range
 * table entry rti reads, or NULL (a plain read).
 */
ResultRelInfo *
RedisScanTarget(EState *estate, Index rti)
{
	if (rti == 0 || estate->es_result_relations == NULL ||
		!ExecRelationIsTargetRelation(estate, rti))
		return NULL;
	return estate->es_result_relations[rti - 1];
}

/*
 * The command (CMD_UPDATE, CMD_DELETE) of the ModifyTable whose result
 * relation is range table entry rti.  Not es_plannedstmt's commandType:
 * a data-modifying WITH runs an UPDATE inside a DELETE and vice versa.  A
 * ModifyTable heads the statement's plan or a WITH query's subplan; none
 * found, CMD_UNKNOWN (the caller then watches as for an UPDATE, the safe
 * side).
 */
static CmdType
target_operation(EState *estate, Index rti)
{
	PlannedStmt *stmt = estate->es_plannedstmt;
	ListCell   *lc;

	if (IsA(stmt->planTree, ModifyTable) &&
		list_member_int(((ModifyTable *) stmt->planTree)->resultRelations, rti))
		return ((ModifyTable *) stmt->planTree)->operation;
	foreach(lc, stmt->subplans)
	{
		ModifyTable *mt = lfirst(lc);

		if (mt != NULL && IsA(mt, ModifyTable) &&
			list_member_int(mt->resultRelations, rti))
			return mt->operation;
	}
	return CMD_UNKNOWN;
}

/*
 * Whether the scan of range table entry rti carries a row mark of some
 * strength (PgpolyScanRowMarked: SKIP LOCKED is an ERROR).
 */
static bool
scan_row_marked(EState *estate, Index rti)
{
	return PgpolyScanRowMarked(estate, rti, &RedisStore,
							   "Remove SKIP LOCKED; in write_mode 'transactional' FOR UPDATE watches the keys read instead.");
}

/*
 * Whether the scan of range table entry rti of tbl watches the keys it
 * reads, and *keyonly (RedisScanWatch) if so: in write_mode
 * 'transactional', the scan of an UPDATE's or DELETE's target (what it
 * read decides what it writes and whether: the values the SET and WHERE
 * read, and for an UPDATE that the key still exists) and a scan under
 * SELECT ... FOR UPDATE/SHARE (the application writes back what it read
 * there).  watch_limit 0 turns it off; the sync worker, which replicates
 * PostgreSQL's committed state, watches nothing.  The scan and EXPLAIN
 * decide here; SKIP LOCKED is an ERROR (scan_row_marked).
 */
bool
RedisScanWatches(RedisTable *tbl, EState *estate, Index rti, bool *keyonly)
{
	bool		marked = rti != 0 && scan_row_marked(estate, rti);

	*keyonly = true;
	if ((!marked && RedisScanTarget(estate, rti) == NULL) || !tbl->transactional ||
		tbl->watch_limit == 0 || PgpolyIsSyncWorker())
		return false;
	*keyonly = marked || target_operation(estate, rti) != CMD_DELETE;
	return true;
}

/* EXPLAIN VERBOSE's Redis Watch of a scan that watches (RedisScanWatches). */
char *
RedisWatchText(RedisTable *tbl)
{
	return psprintf("each key read, ahead of its read (watch_limit %d)", tbl->watch_limit);
}

/*
 * Make scan watch the keys it reads if RedisScanWatches says so; its node
 * was begun in subtransaction subid, at nesting level level.
 */
void
RedisScanWatchTarget(RedisScan *scan, RedisTable *tbl, EState *estate, Index rti,
					 int level, SubTransactionId subid)
{
	bool		keyonly;

	if (RedisScanWatches(tbl, estate, rti, &keyonly))
		RedisScanWatch(scan, keyonly, level, subid);
}

/*
 * Row identity values/nulls (RedisRowIdentity, palloc'd) as the hash key
 * of the tables of rows an UPDATE or DELETE keeps (PgpolyKeyTable): rows
 * are told apart by all of their identity's bytes, hashed with the
 * backend's secret, so that no two rows anyone may write are one row for
 * them (a hash alone, and one anyone can compute, made distinct keys one).
 */
static RedisKeyRef
identity(RedisTable *tbl, Datum *values, bool *nulls)
{
	RedisKeyRef id;

	id.key = RedisRowIdentity(tbl, values, nulls, &id.len);
	return id;
}

/* Whether identities a and b are the same. */
static bool
identity_equal(RedisKeyRef a, RedisKeyRef b)
{
	return a.len == b.len && memcmp(a.key, b.key, a.len) == 0;
}

/*
 * Remember that the row values/nulls, read for the UPDATE or DELETE of
 * target, was stored under s (len bytes) in identity column att: not the
 * fixed form of its value, which is what the modification would address
 * (check_spelling refuses it).  Rows the statement then filters out cost
 * nothing else.
 */
void
RedisNoteMisspelled(ResultRelInfo *target, Datum *values, bool *nulls,
					AttrNumber att, const char *s, size_t len)
{
	RedisModifyState *ms = target->ri_FdwState;
	MemoryContext old;
	RedisMisspelling *m;
	RedisKeyRef id;
	bool		found;
	size_t		flen;

	if (ms == NULL)
		return;					/* EXPLAIN only */
	old = MemoryContextSwitchTo(GetMemoryChunkContext(ms));
	if (ms->misspelled == NULL)
		ms->misspelled = PgpolyKeyTable("pgpoly misspelled rows", sizeof(RedisMisspelling),
									   CurrentMemoryContext);
	id = identity(ms->tbl, values, nulls);
	m = hash_search(ms->misspelled, &id, HASH_ENTER, &found);
	if (found)
		pfree((char *) id.key);
	else
	{
		m->att = att;
		m->spelling = PgpolyPrintable(s, len, 200);
		m->form = RedisDatumText(ms->tbl, att, values[att - 1], &flen);
		m->form = PgpolyPrintable(m->form, flen, 200);
	}
	MemoryContextSwitchTo(old);
}

/*
 * ERROR if the old row (identity old/oldnulls) is one the scan read from a
 * key or member spelled otherwise than its fixed form: UPDATE would write
 * a second key or member, DELETE remove nothing, and both count the row.
 */
static void
check_spelling(RedisModifyState *ms, Datum *old, bool *oldnulls)
{
	RedisMisspelling *m;
	RedisColumn *col;
	RedisKeyRef id;

	if (ms->misspelled == NULL)
		return;
	id = identity(ms->tbl, old, oldnulls);
	m = hash_search(ms->misspelled, &id, HASH_FIND, NULL);
	pfree((char *) id.key);
	if (m == NULL)
		return;
	col = &ms->tbl->cols[m->att - 1];
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("cannot update or delete a row whose %s \"%s\" is not stored in pgpoly's form \"%s\"",
					col->role == RCOL_KEY ? "key" :
					col->role == RCOL_MEMBER ? "member" : "list element",
					m->spelling, m->form),
			 errdetail("Column \"%s\" (%s) reads it as the value pgpoly writes as \"%s\", so the change would go to another %s.",
					   col->name, format_type_with_typemod(col->typid, col->typmod),
					   m->form, col->role == RCOL_KEY ? "key" : "member"),
			 errhint("Modify it through a foreign table whose column \"%s\" is text, or rewrite it in pgpoly's form.",
					 col->name),
			 errcontext("foreign table \"%s\"", ms->tbl->relname)));
}

/*
 * An UPDATE that may move rows (assigns the key or member, or has BEFORE
 * ROW UPDATE triggers; through a partitioned table, which may move rows of
 * other partitions into this one: check_moved_in) keeps where its rows are, so that a row moved onto
 * the identity of another row of the statement is an ERROR, as a unique
 * key's violation is, instead of losing that row: Redis holds one row per
 * key (member), and a move overwrites what is there (RENAME, SET, ZADD).
 * A swap of two keys would otherwise leave one row, and a shift of keys in
 * the wrong order would lose rows.  List elements have no identity; there
 * the table notes the lists the statement took elements off (see
 * check_list_moves).
 */
static void
track_moves(RedisModifyState *ms, ResultRelInfo *rinfo)
{
	RedisTable *tbl = ms->tbl;
	Bitmapset  *assigned = ms->core.assigned;

	if (!(bms_is_member(tbl->key_att, assigned) ||
		  (tbl->member_att && bms_is_member(tbl->member_att, assigned)) ||
		  ms->core.old_row != InvalidAttrNumber ||
		  (rinfo->ri_RootResultRelInfo != NULL && assigned != NULL)))
		return;
	ms->held = PgpolyMoves(GetMemoryChunkContext(ms));
}

/* ERROR 23505 for a row moved onto row identity values/nulls (see above). */
static void
moved_onto_error(RedisModifyState *ms, Datum *values, bool *nulls, PgpolyMoveCheck how)
{
	RedisTable *tbl = ms->tbl;
	size_t		len;
	char	   *key = RedisKeyFromDatum(tbl, NULL, values[tbl->key_att - 1], &len);
	size_t		mlen = 0;
	char	   *member = tbl->member_att ?
		RedisDatumText(tbl, tbl->member_att, values[tbl->member_att - 1], &mlen) : NULL;

	PgpolyMovedOntoError(tbl->relname, "Redis", how,
						 psprintf("key \"%s\"%s%s%s", PgpolyPrintable(key, len, 200),
								  member ? " member \"" : "",
								  member ? PgpolyPrintable(member, mlen, 200) : "",
								  member ? "\"" : ""));
}

/*
 * check_moves of a list element (old: its identity columns, values/nulls:
 * the new row).  A move takes the element off its list with LREM, and the
 * elements after it shift down one; an element of that list the statement
 * then changes in place would be written by LSET at the idx its scan read,
 * which now names the next element (or none: "index out of range").  So an
 * element changed in place on a list the statement already took an element
 * off is an ERROR instead of a write to another element.  The held table
 * notes those lists by key (moved_onto).
 */
static void
check_list_moves(RedisModifyState *ms, Datum *old, bool *oldnulls, Datum *values,
				 bool *nulls)
{
	RedisTable *tbl = ms->tbl;
	AttrNumber	k = tbl->key_att;
	MemoryContext cxt;
	RedisKeyRef o;
	RedisKeyRef n;
	PgpolyHeldRow *e;
	bool		found;

	if (oldnulls[k - 1] || nulls[k - 1])
		return;					/* RedisUpdateWrites refuses a NULL key */
	cxt = MemoryContextSwitchTo(GetMemoryChunkContext(ms));
	o.key = RedisKeyFromDatum(tbl, NULL, old[k - 1], &o.len);
	MemoryContextSwitchTo(cxt);
	n.key = RedisKeyFromDatum(tbl, NULL, values[k - 1], &n.len);
	if (identity_equal(n, o))
	{
		/* in place: LSET at the idx read */
		e = hash_search(ms->held, &o, HASH_FIND, NULL);
		if (e != NULL && e->moved_onto)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("UPDATE of foreign table \"%s\" changes an element of list key \"%s\" after moving another element off it",
							tbl->relname, PgpolyPrintable(o.key, o.len, 200)),
					 errdetail("A move removes the element from its list (LREM), which shifts the elements after it: the idx this element was read at would name another one."),
					 errhint("Move the elements in one statement and change the others in another.")));
		pfree((char *) o.key);
		return;
	}
	e = hash_search(ms->held, &o, HASH_ENTER, &found);
	if (found)
		pfree((char *) o.key);	/* the entry has its own */
	e->moved_onto = true;
	e->held_in = false;
}

/*
 * For an UPDATE that may move rows: ERROR if the row (old identity
 * old/oldnulls) was overwritten by a row the statement moved onto it, or
 * if it moves (new row values/nulls) onto a row the statement met and
 * left there or moved there (PgpolyMoveRow).
 */
static void
check_moves(RedisModifyState *ms, Datum *old, bool *oldnulls, Datum *values,
			bool *nulls)
{
	RedisKeyRef o;
	RedisKeyRef n;
	PgpolyMoveCheck how;

	if (ms->held == NULL)
		return;
	if (ms->tbl->type == REDIS_LIST)
	{
		check_list_moves(ms, old, oldnulls, values, nulls);
		return;
	}
	o = identity(ms->tbl, old, oldnulls);
	n = identity(ms->tbl, values, nulls);
	how = PgpolyMoveRow(ms->held, GetMemoryChunkContext(ms), o.key, o.len, n.key, n.len);
	if (how == PGPOLY_MOVED_ONTO_OLD)
		moved_onto_error(ms, old, oldnulls, how);
	if (how == PGPOLY_MOVED_ONTO_NEW)
		moved_onto_error(ms, values, nulls, how);
	pfree((char *) o.key);
	pfree((char *) n.key);
}

/* The old row identity from planSlot's junk columns, as a full-width row. */
static void
old_identity(RedisModifyState *ms, TupleTableSlot *planSlot, Datum *old, bool *oldnulls)
{
	RedisTable *tbl = ms->tbl;

	memset(oldnulls, true, sizeof(bool) * tbl->natts);
	old[tbl->key_att - 1] = PgpolyModifyJunk(&ms->core, RJUNK_KEY, planSlot,
											 &oldnulls[tbl->key_att - 1]);
	if (tbl->member_att)
		old[tbl->member_att - 1] = PgpolyModifyJunk(&ms->core, RJUNK_MEMBER, planSlot,
													&oldnulls[tbl->member_att - 1]);
	if (tbl->idx_att)
		old[tbl->idx_att - 1] = PgpolyModifyJunk(&ms->core, RJUNK_IDX, planSlot,
												 &oldnulls[tbl->idx_att - 1]);
	if (tbl->type == REDIS_LIST)
		old[tbl->value_att - 1] = PgpolyModifyJunk(&ms->core, RJUNK_VALUE, planSlot,
												   &oldnulls[tbl->value_att - 1]);
}

/* ExecForeignUpdate: slot holds the complete new row. */
static TupleTableSlot *
redisExecForeignUpdate(EState *estate, ResultRelInfo *rinfo,
					   TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	RedisModifyState *ms = rinfo->ri_FdwState;
	MemoryContext old = PgpolyModifyRow(&ms->core);
	Datum	   *oldvals = palloc(sizeof(Datum) * ms->tbl->natts);
	bool	   *oldnulls = palloc(sizeof(bool) * ms->tbl->natts);
	List	   *writes;

	if (PgpolyModifyAgain(&ms->core, planSlot))
	{
		MemoryContextSwitchTo(old);
		return NULL;			/* a join met the row again */
	}
	PgpolyModifyCheckRow(&ms->core, estate, slot, CMD_UPDATE);

	old_identity(ms, planSlot, oldvals, oldnulls);
	check_spelling(ms, oldvals, oldnulls);
	slot_getallattrs(slot);
	PgpolyModifyUpdatedColumns(&ms->core, slot, planSlot);
	check_moves(ms, oldvals, oldnulls, slot->tts_values, slot->tts_isnull);
	writes = RedisUpdateWrites(ms->tbl, oldvals, oldnulls, slot->tts_values,
							   slot->tts_isnull, ms->core.updated,
							   PgpolyWriterContext(&ms->core.writer));
	queue_row(ms, estate, slot, writes);
	MemoryContextSwitchTo(old);
	PgpolyModifyOutbox(&ms->core, CMD_UPDATE, slot, planSlot);
	return slot;
}

/* ExecForeignDelete: RETURNING gets the whole old row when it asked for it. */
static TupleTableSlot *
redisExecForeignDelete(EState *estate, ResultRelInfo *rinfo,
					   TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	RedisModifyState *ms = rinfo->ri_FdwState;
	MemoryContext old = PgpolyModifyRow(&ms->core);
	Datum	   *oldvals = palloc(sizeof(Datum) * ms->tbl->natts);
	bool	   *oldnulls = palloc(sizeof(bool) * ms->tbl->natts);
	List	   *writes;

	if (PgpolyModifyAgain(&ms->core, planSlot))
	{
		MemoryContextSwitchTo(old);
		return NULL;			/* a join met the row again */
	}

	old_identity(ms, planSlot, oldvals, oldnulls);
	check_spelling(ms, oldvals, oldnulls);
	writes = RedisDeleteWrites(ms->tbl, oldvals, oldnulls,
							   PgpolyWriterContext(&ms->core.writer));
	queue_writes(ms, writes);
	MemoryContextSwitchTo(old);
	PgpolyModifyOutbox(&ms->core, CMD_DELETE, NULL, planSlot);

	PgpolyModifyOldRow(&ms->core, slot, planSlot, rinfo->ri_RelationDesc);
	return slot;
}

/* EndForeignModify: send what immediate mode still holds. */
static void
redisEndForeignModify(EState *estate, ResultRelInfo *rinfo)
{
	PgpolyModifyEnd(rinfo->ri_FdwState);
}

/* BeginForeignInsert: COPY FROM and tuple routing. */
static void
redisBeginForeignInsert(ModifyTableState *mtstate, ResultRelInfo *rinfo)
{
	begin_modify(mtstate, rinfo, NIL);
}

/* EndForeignInsert. */
static void
redisEndForeignInsert(EState *estate, ResultRelInfo *rinfo)
{
	redisEndForeignModify(estate, rinfo);
}

/* IsForeignRelUpdatable: INSERT, UPDATE and DELETE. */
static int
redisIsForeignRelUpdatable(Relation rel)
{
	return (1 << CMD_INSERT) | (1 << CMD_UPDATE) | (1 << CMD_DELETE);
}

static char *write_text(RedisTable *tbl, CmdType op, List *atts, bool nx,
						const char *per);

/* write_mode as EXPLAIN shows it (options: the table's, for batch_size). */
static const char *
write_mode_text(PgpolyWriteMode mode, List *options)
{
	if (mode == PGPOLY_WRITE_TRANSACTIONAL)
		return "transactional (MULTI/EXEC at COMMIT)";
	if (mode == PGPOLY_WRITE_OUTBOX)
		return "outbox (queued at COMMIT, delivered by the sync worker)";
	return psprintf("immediate (pipelined batches of %d)",
					(int) PgpolyGetIntOption(options, "batch_size", 1000));
}

/* Whether atts has a hash field column of tbl. */
static bool
assigns_field(RedisTable *tbl, List *atts)
{
	ListCell   *lc;

	foreach(lc, atts)
		if (tbl->cols[lfirst_int(lc) - 1].role == RCOL_FIELD)
			return true;
	return false;
}

/* Whether an UPDATE of tbl assigning atts may move a row (key, member). */
static bool
moves(RedisTable *tbl, List *atts)
{
	return list_member_int(atts, tbl->key_att) ||
		(tbl->member_att != 0 && list_member_int(atts, tbl->member_att));
}

/* What an UPDATE of tbl sends besides where it moves a row, for EXPLAIN. */
static const char *
moved_text(RedisTable *tbl)
{
	switch (tbl->type)
	{
		case REDIS_HASH:
			return "RENAME first where the key changes";
		case REDIS_STRING:
		case REDIS_JSON:
			return "DEL of the old key where the key changes";
		case REDIS_ZSET:
			return "ZREM of the old member first where the key or member changes";
		case REDIS_SET:
			return "SREM of the old member first where the key or member changes";
		case REDIS_LIST:
			break;
	}
	return "LREM and RPUSH instead where the key changes";
}

/*
 * The attnums of rinfo's columns that mtstate's UPDATE writes, in order:
 * those it assigns and the stored generated columns computed from them
 * (its INSERT: every column).
 */
static List *
written_atts(ModifyTableState *mtstate, ResultRelInfo *rinfo)
{
	int			natts = RelationGetDescr(rinfo->ri_RelationDesc)->natts;
	Bitmapset  *updated = NULL;
	List	   *atts = NIL;

	if (mtstate->operation == CMD_UPDATE)
		updated = ExecGetAllUpdatedCols(rinfo, mtstate->ps.state);
	for (AttrNumber att = 1; att <= natts; att++)
		if (mtstate->operation != CMD_UPDATE ||
			bms_is_member(att - FirstLowInvalidHeapAttributeNumber, updated))
			atts = lappend_int(atts, att);
	return atts;
}

/* ExplainForeignModify: the commands each row sends, where and when. */
static void
redisExplainForeignModify(ModifyTableState *mtstate, ResultRelInfo *rinfo,
						  List *fdw_private, int subplan_index, ExplainState *es)
{
	Oid			relid = RelationGetRelid(rinfo->ri_RelationDesc);
	ForeignTable *ft = GetForeignTable(relid);
	RedisTable *tbl = RedisLoadTable(relid, GetUserId());
	bool		nx = ((ModifyTable *) mtstate->ps.plan)->onConflictAction == ONCONFLICT_NOTHING;
	List	   *atts = written_atts(mtstate, rinfo);
	char	   *text = write_text(tbl, mtstate->operation, atts, nx, "per row");

	if (mtstate->operation == CMD_UPDATE && tbl->type == REDIS_HASH && !assigns_field(tbl, atts))
		text = psprintf("RENAME per row where the key changes");
	else if (mtstate->operation == CMD_UPDATE && moves(tbl, atts))
		text = psprintf("%s; %s", text, moved_text(tbl));
	/* outbox: the worker delivers them (outbox.c) */
	if (PgpolyTableWriteMode(ft->options) != PGPOLY_WRITE_OUTBOX)
		ExplainPropertyText("Redis Write", text, es);
	ExplainPropertyText("Redis Write Mode",
						write_mode_text(PgpolyTableWriteMode(ft->options), ft->options),
						es);
}

/* ----------------------------------------------------------------
 *		Direct modification
 *
 * UPDATE t SET col = <expression of the row's key and fields, or run-time
 * constant> and DELETE FROM t, whose WHERE the scan enforces entirely (a
 * pushed key clause, a key LIKE 'prefix%' in a full scan, or nothing), run
 * in the ForeignScan node itself.  The scan reads the key and the columns
 * the assigned expressions use: keys only (SCAN, or TYPE per listed key)
 * when they use none but the key, the values when they do or when the
 * transaction's buffered writes must be overlaid, converting only those
 * columns.  The expressions are evaluated per row over the scan slot (once,
 * if they do not read the row), and each key found gets the writes the
 * per-row path would give its row (RedisUpdateWrites, RedisDeleteWrites),
 * through the same writer, outbox capture and checks.  PostgreSQL asks a
 * foreign UPDATE for the whole old row, which the per-row path must fetch
 * and convert, every column, only to write one field back.  Unlike it, a
 * stored value that a column not read would refuse is no error here (as
 * with postgres_fdw's direct modification, which never reads it either).
 * The executor still checks SELECT privilege on the columns read.
 * ----------------------------------------------------------------
 */

/* fdw_private of a direct modification: the scan's (RPRIV_*), then these. */
enum RedisDirectPrivate
{
	RPRIV_DIRECT_SET_TAG = RPRIV_ABSENT_NO_ROW + 1,	/* Integer: canSetTag */
	RPRIV_DIRECT_ATTS,			/* List of Integer: the columns assigned,
								 * whose values are the fdw_exprs after the
								 * scan's (RPRIV_KINDS) */
	RPRIV_DIRECT_PER_ROW		/* Integer: the values read the row (its
								 * columns are the scan's RPRIV_ATTRS) */
};

/*
 * The ForeignScan of rtindex that is the subplan of plan (directly, or the
 * subplan_index'th child of an Append under it), or NULL: postgres_fdw's
 * find_modifytable_subplan.  Anything deeper involves a local join.
 */
static ForeignScan *
direct_subplan(ModifyTable *plan, Index rtindex, int subplan_index)
{
	Plan	   *subplan = outerPlan(plan);

	if (IsA(subplan, Result) && outerPlan(subplan) != NULL &&
		IsA(outerPlan(subplan), Append))
		subplan = outerPlan(subplan);
	if (IsA(subplan, Append))
	{
		Append	   *append = (Append *) subplan;

		if (subplan_index >= list_length(append->appendplans))
			return NULL;
		subplan = list_nth(append->appendplans, subplan_index);
	}
	if (!IsA(subplan, ForeignScan) ||
		((ForeignScan *) subplan)->scan.scanrelid != rtindex)
		return NULL;
	return (ForeignScan *) subplan;
}

/*
 * Whether the scan enforces every clause of quals (the plan's local
 * quals): only a key LIKE 'prefix%' of a full scan qualifies, which SCAN
 * MATCH (and the overlay's match of buffered keys) applies exactly.  Its
 * collation must be deterministic, where LIKE compares bytes.
 */
static bool
direct_quals_enforced(RedisRelInfo *ri, List *quals)
{
	ListCell   *lc;

	foreach(lc, quals)
	{
		Node	   *q = lfirst(lc);

		if (ri->has_keys || !IsA(q, OpExpr) || !list_member_ptr(ri->pushed, q) ||
			((OpExpr *) q)->opno != OID_TEXT_LIKE_OP ||
			!OidIsValid(((OpExpr *) q)->inputcollid) ||
			!get_collation_isdeterministic(((OpExpr *) q)->inputcollid))
			return false;
	}
	return true;
}

/*
 * Whether every Var of expr is a column of the row the scan can produce
 * for the direct modification of rtindex (tbl): the key, or a hash field or
 * a string's value (the _ttl column would need a TTL per key, and a whole
 * row every column); those columns are added to *reads.
 */
static bool
direct_vars_ok(RedisTable *tbl, Index rtindex, Node *expr, List **reads)
{
	List	   *vars = pull_var_clause(expr, PVC_INCLUDE_PLACEHOLDERS);
	ListCell   *lc;

	foreach(lc, vars)
	{
		Var		   *var = lfirst(lc);
		RedisColRole role;

		if (!IsA(var, Var) || var->varno != rtindex || var->varlevelsup != 0 ||
			var->varattno < 1 || var->varattno > tbl->natts)
			return false;
		role = tbl->cols[var->varattno - 1].role;
		if (role != RCOL_KEY &&
			!(tbl->type == REDIS_HASH && role == RCOL_FIELD) &&
			!(tbl->type == REDIS_STRING && role == RCOL_VALUE))
			return false;
		*reads = list_append_unique_int(*reads, var->varattno);
	}
	return true;
}

/*
 * Whether assigning expr to column att of tbl (the result relation
 * rtindex) can go direct: a hash field or a string's value (the writes of
 * a row need nothing else of it), and a value computed from the row's own
 * key and fields (whose columns are added to *reads) and from values the
 * same for every row: nothing volatile, no SubPlan run per row (Params and
 * InitPlans are computed once).
 */
static bool
direct_assignment_ok(RedisTable *tbl, Index rtindex, AttrNumber att, Expr *expr,
					 List **reads)
{
	RedisColRole role;

	if (att < 1 || att > tbl->natts)
		return false;
	role = tbl->cols[att - 1].role;
	if (!(tbl->type == REDIS_HASH && role == RCOL_FIELD) &&
		!(tbl->type == REDIS_STRING && role == RCOL_VALUE))
		return false;
	return !contain_volatile_functions((Node *) expr) &&
		!contain_subplans((Node *) expr) &&
		direct_vars_ok(tbl, rtindex, (Node *) expr, reads);
}

/*
 * PlanDirectModify: rewrite the ForeignScan under plan into the UPDATE or
 * DELETE itself when nothing needs the rows (see the section header).
 * PostgreSQL has already ruled out row triggers, WITH CHECK OPTION and
 * generated columns.  Anything else keeps the per-row path: an UPDATE of a
 * partition (PgpolyModifyCheckRow), RETURNING,
 * a join, local quals, a json or collection table for UPDATE (its write
 * needs the row), a set/zset/list for DELETE (one row per member), the key
 * or _ttl assigned, or an assigned value that reads _ttl, the whole row, a
 * SubPlan or anything volatile.
 */
static bool
redisPlanDirectModify(PlannerInfo *root, ModifyTable *plan, Index resultRelation,
					  int subplan_index)
{
	ForeignScan *fs;
	RedisRelInfo *ri;
	RedisTable *tbl;
	List	   *tlist = NIL;
	List	   *atts = NIL;
	List	   *reads = NIL;
	ListCell   *lc,
			   *la;

	if ((plan->operation != CMD_UPDATE && plan->operation != CMD_DELETE) ||
		plan->returningLists != NIL)
		return false;
	/*
	 * a partition's rows are checked against its bounds one by one, and a
	 * row another node of the statement modifies is modified once
	 */
	if ((plan->operation == CMD_UPDATE &&
		 get_rel_relispartition(planner_rt_fetch(resultRelation, root)->relid)) ||
		PgpolyPlanModifiesTwice(root, planner_rt_fetch(resultRelation, root)->relid))
		return false;
	fs = direct_subplan(plan, resultRelation, subplan_index);
	if (fs == NULL || !RedisIsRedisRel(root->simple_rel_array[resultRelation]))
		return false;
	ri = root->simple_rel_array[resultRelation]->fdw_private;
	tbl = ri->tbl;
	if (!(tbl->type == REDIS_HASH || tbl->type == REDIS_STRING ||
		  (tbl->type == REDIS_JSON && plan->operation == CMD_DELETE)) ||
		!direct_quals_enforced(ri, fs->scan.plan.qual))
		return false;
	/*
	 * A SubPlan in the scan's targetlist runs per row in its projection,
	 * which a direct modification does not do: a correlated multiple
	 * assignment, SET (a, b) = (SELECT ... t.c ...), is such a junk column,
	 * whose outputs the assigned values are (PARAM_MULTIEXPR Params).
	 */
	if (contain_subplans((Node *) fs->scan.plan.targetlist))
		return false;
	if (plan->operation == CMD_UPDATE)
	{
		get_translated_update_targetlist(root, resultRelation, &tlist, &atts);
		forboth(lc, tlist, la, atts)
			if (!direct_assignment_ok(tbl, resultRelation, lfirst_int(la),
									  lfirst_node(TargetEntry, lc)->expr, &reads))
				return false;
		foreach(lc, tlist)
			fs->fdw_exprs = lappend(fs->fdw_exprs, lfirst_node(TargetEntry, lc)->expr);
	}
	fs->operation = plan->operation;
	fs->resultRelation = resultRelation;
	fs->scan.plan.qual = NIL;	/* the LIKE prefix: SCAN MATCH applies it */
	/* the key and the columns the assignments read; no TTL */
	list_nth_cell(fs->fdw_private, RPRIV_NEED_TTL)->ptr_value = makeInteger(0);
	list_nth_cell(fs->fdw_private, RPRIV_ATTRS)->ptr_value =
		list_concat_unique_int(list_make1_int(tbl->key_att), reads);
	/* its quals are gone (enforced): the rows it finds are read whole */
	list_nth_cell(fs->fdw_private, RPRIV_ABSENT_NO_ROW)->ptr_value = makeInteger(0);
	fs->fdw_private = lappend(fs->fdw_private, makeInteger(plan->canSetTag));
	fs->fdw_private = lappend(fs->fdw_private, atts);
	fs->fdw_private = lappend(fs->fdw_private, makeInteger(reads != NIL));
	return true;
}

/*
 * BeginDirectModify: the scan that finds the keys (as a ForeignScan's, of
 * the key column and the columns the assigned values read) and the
 * modification's state, which is the result relation's as for the per-row
 * path (the scan notes misspelled keys there).
 */
static void
redisBeginDirectModify(ForeignScanState *node, int eflags)
{
	ForeignScan *fs = (ForeignScan *) node->ss.ps.plan;
	RedisScanState *st;
	RedisModifyState *ms;
	List	   *atts = list_nth(fs->fdw_private, RPRIV_DIRECT_ATTS);
	int			nscan = list_length(list_nth(fs->fdw_private, RPRIV_KINDS));
	ListCell   *lc;
	int			i = 0;

	redisBeginForeignScan(node, eflags);
	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;
	st = node->fdw_state;
	ms = PgpolyDirectModifyBegin(sizeof(RedisModifyState), &RedisStore,
								 node->ss.ps.state, node->resultRelInfo, atts,
								 1000, send_immediate);
	ms->tbl = PgpolyModifyTable(&ms->core, load_table);
	PgpolyCheckWrittenFields(ms->tbl->relname, ms->tbl, ms->tbl->natts, column_field,
							 fs->operation, ms->core.assigned);
	ms->core.junk[RJUNK_KEY] = ms->tbl->key_att;	/* see direct_outbox */
	ms->core.id_atts[RJUNK_KEY] = ms->tbl->key_att; /* PgpolyModifyReplaced */
	ms->direct_op = fs->operation;
	ms->set_processed = intVal(list_nth(fs->fdw_private, RPRIV_DIRECT_SET_TAG));
	ms->nassign = list_length(atts);
	ms->per_row = intVal(list_nth(fs->fdw_private, RPRIV_DIRECT_PER_ROW));
	ms->assign_att = palloc(sizeof(AttrNumber) * Max(ms->nassign, 1));
	ms->assign_expr = palloc(sizeof(ExprState *) * Max(ms->nassign, 1));
	foreach(lc, atts)
	{
		ms->assign_att[i] = lfirst_int(lc);
		ms->assign_expr[i] = list_nth(st->exprs, nscan + i);
		i++;
	}
}

/*
 * The new row of a key of a direct UPDATE into values/nulls (the key
 * aside).  Values the same for every row are computed once, when the
 * first key is found (the per-row path computes nothing when no row
 * matches), under the executor's per-query memory.  Values that read the
 * row (ms->per_row) are computed for each, over the scan slot holding the
 * columns read, in the per-tuple memory reset at the next row.
 */
static void
direct_values(ForeignScanState *node, RedisModifyState *ms, Datum *values,
			  bool *nulls)
{
	ExprContext *econtext = node->ss.ps.ps_ExprContext;
	MemoryContext old;

	if (ms->per_row)
	{
		ResetExprContext(econtext);
		econtext->ecxt_scantuple = node->ss.ss_ScanTupleSlot;
		old = MemoryContextSwitchTo(econtext->ecxt_per_tuple_memory);
	}
	else
		old = MemoryContextSwitchTo(node->ss.ps.state->es_query_cxt);

	memset(nulls, true, sizeof(bool) * ms->tbl->natts);
	for (int i = 0; i < ms->nassign; i++)
	{
		AttrNumber	att = ms->assign_att[i];

		values[att - 1] = ExecEvalExpr(ms->assign_expr[i], econtext, &nulls[att - 1]);
	}
	MemoryContextSwitchTo(old);
}

/*
 * write_mode 'outbox': the change of the row of key (the new row
 * values/nulls for UPDATE) as the per-row path captures it.  The row is
 * its own plan row, junk[0] being the key column.
 */
static void
direct_outbox(RedisModifyState *ms, TupleTableSlot *slot, Datum *values,
			  bool *nulls)
{
	ExecClearTuple(slot);
	memcpy(slot->tts_values, values, sizeof(Datum) * ms->tbl->natts);
	memcpy(slot->tts_isnull, nulls, sizeof(bool) * ms->tbl->natts);
	ExecStoreVirtualTuple(slot);
	PgpolyModifyOutbox(&ms->core, ms->direct_op, slot, slot);
}

/*
 * The next row of a direct modification into old/oldnulls: the key and
 * the columns the assignments read.  When they read the row, it is the
 * scan slot's (old and oldnulls are its arrays), over which they are
 * evaluated.
 */
static bool
direct_next_row(RedisScanState *st, RedisModifyState *ms, TupleTableSlot *slot,
				Datum *old, bool *oldnulls)
{
	if (!ms->per_row)
		return RedisScanNext(st->scan, old, oldnulls);
	ExecClearTuple(slot);
	if (!RedisScanNext(st->scan, old, oldnulls))
		return false;
	ExecStoreVirtualTuple(slot);
	return true;
}

/*
 * Write every row the scan finds: its key becomes the old row's identity,
 * the columns read (if any) the assigned expressions' input, and the
 * writes are the per-row path's.
 */
static void
direct_modify_rows(ForeignScanState *node, RedisScanState *st,
				   RedisModifyState *ms)
{
	RedisTable *tbl = ms->tbl;
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;
	Datum	   *old = ms->per_row ? slot->tts_values : palloc(sizeof(Datum) * tbl->natts);
	bool	   *oldnulls = ms->per_row ? slot->tts_isnull : palloc(sizeof(bool) * tbl->natts);
	Datum	   *values = palloc(sizeof(Datum) * tbl->natts);
	bool	   *nulls = palloc(sizeof(bool) * tbl->natts);
	bool		computed = false;
	AttrNumber	k = tbl->key_att - 1;

	while (direct_next_row(st, ms, slot, old, oldnulls))
	{
		MemoryContext mcxt = PgpolyModifyRow(&ms->core);
		List	   *writes;

		/* a key the statement inserted meanwhile: the old row was replaced */
		if (PgpolyModifyReplaced(&ms->core, old, oldnulls))
		{
			MemoryContextSwitchTo(mcxt);
			continue;
		}
		check_spelling(ms, old, oldnulls);
		if (ms->direct_op == CMD_UPDATE)
		{
			if (!computed)
				direct_values(node, ms, values, nulls);
			computed = !ms->per_row;
			values[k] = old[k];
			nulls[k] = oldnulls[k];
			writes = RedisUpdateWrites(tbl, old, oldnulls, values, nulls,
									   ms->core.updated,
									   PgpolyWriterContext(&ms->core.writer));
		}
		else
			writes = RedisDeleteWrites(tbl, old, oldnulls,
									   PgpolyWriterContext(&ms->core.writer));
		queue_writes(ms, writes);
		MemoryContextSwitchTo(mcxt);
		if (ms->core.outbox)
			direct_outbox(ms, slot, ms->direct_op == CMD_UPDATE ? values : old,
						  ms->direct_op == CMD_UPDATE ? nulls : oldnulls);
		ms->rows++;
	}
	ExecClearTuple(slot);
	PgpolyWriterFlush(&ms->core.writer);
}

/*
 * IterateDirectModify: the whole modification, at the first call; no row
 * is returned (no RETURNING), the count goes to es_processed.
 */
static TupleTableSlot *
redisIterateDirectModify(ForeignScanState *node)
{
	RedisScanState *st = node->fdw_state;
	RedisModifyState *ms = node->resultRelInfo->ri_FdwState;

	if (!ms->done)
	{
		MemoryContext old = PgpolyScanStart(&st->core);

		start_scan(node, st);
		direct_modify_rows(node, st, ms);
		MemoryContextSwitchTo(old);
		ms->done = true;
		if (ms->set_processed)
			node->ss.ps.state->es_processed += ms->rows;
	}
	return ExecClearTuple(node->ss.ss_ScanTupleSlot);
}

/* EndDirectModify: the scan's memory goes; the writes are sent or buffered. */
static void
redisEndDirectModify(ForeignScanState *node)
{
	redisEndForeignScan(node);
}

/* " {name}" of column att of tbl, for write_text. */
static void
append_col(StringInfo buf, RedisTable *tbl, AttrNumber att)
{
	appendStringInfo(buf, " {%s}", tbl->cols[att - 1].name);
}

/*
 * The commands a write of op sends per row (per: "per row", "per key
 * found"), as EXPLAIN shows them (redis_modify.c builds them).  atts: the
 * attnums an UPDATE assigns; nx: INSERT ... ON CONFLICT DO NOTHING.
 */
static char *
write_text(RedisTable *tbl, CmdType op, List *atts, bool nx, const char *per)
{
	StringInfoData buf;
	ListCell   *lc;
	const char *p = tbl->prefix;
	bool		ttl = tbl->ttl_seconds > 0;
	bool		collection = tbl->type == REDIS_ZSET || tbl->type == REDIS_SET;

	initStringInfo(&buf);
	if (op == CMD_DELETE)
	{
		if (collection)
			appendStringInfo(&buf, "%s %s{key}", tbl->type == REDIS_ZSET ? "ZREM" : "SREM", p);
		else if (tbl->type == REDIS_LIST)
			appendStringInfo(&buf, "LREM %s{key} 1", p);
		else
			appendStringInfo(&buf, "DEL %s{key}", p);
		if (collection || tbl->type == REDIS_LIST)
			append_col(&buf, tbl, collection ? tbl->member_att : tbl->value_att);
		appendStringInfo(&buf, " %s", per);
		return buf.data;
	}
	switch (tbl->type)
	{
		case REDIS_HASH:
			if (nx)
				return psprintf("EVAL: HSET %s{key}%s unless it exists, %s", p,
								ttl ? " and EXPIRE" : "", per);
			appendStringInfo(&buf, "HSET %s{key}", p);
			foreach(lc, atts)
				if (tbl->cols[lfirst_int(lc) - 1].role == RCOL_FIELD)
					appendStringInfo(&buf, " %s {%s}", tbl->cols[lfirst_int(lc) - 1].field,
									 tbl->cols[lfirst_int(lc) - 1].name);
			appendStringInfo(&buf, " (HDEL for NULL) %s", per);
			break;
		case REDIS_STRING:
		case REDIS_JSON:
			appendStringInfo(&buf, "SET %s{key}", p);
			if (tbl->type == REDIS_STRING)
				append_col(&buf, tbl, tbl->value_att);
			else
				appendStringInfoString(&buf, " {JSON object of the columns}");
			if (nx)
				appendStringInfoString(&buf, " NX");
			if (ttl)
				appendStringInfo(&buf, " EX %d", tbl->ttl_seconds);
			appendStringInfo(&buf, " %s", per);
			return buf.data;
		case REDIS_ZSET:
		case REDIS_SET:
			if (nx && ttl)
				return psprintf("EVAL: %s %s{key} NX and EXPIRE if added, %s",
								tbl->type == REDIS_ZSET ? "ZADD" : "SADD", p, per);
			appendStringInfo(&buf, "%s %s{key}%s", tbl->type == REDIS_ZSET ? "ZADD" : "SADD",
							 p, nx && tbl->type == REDIS_ZSET ? " NX" : "");
			if (tbl->type == REDIS_ZSET)
				append_col(&buf, tbl, tbl->score_att);
			append_col(&buf, tbl, tbl->member_att);
			appendStringInfo(&buf, " %s", per);
			if (nx)
				return buf.data;
			break;
		case REDIS_LIST:
			appendStringInfo(&buf, "%s %s{key}", op == CMD_UPDATE ? "LSET" : "RPUSH", p);
			if (op == CMD_UPDATE)
				append_col(&buf, tbl, tbl->idx_att);
			append_col(&buf, tbl, tbl->value_att);
			appendStringInfo(&buf, " %s", per);
			if (op == CMD_UPDATE)
				return buf.data;
			break;
	}
	if (ttl)
		appendStringInfo(&buf, ", EXPIRE %s{key} %d", p, tbl->ttl_seconds);
	return buf.data;
}

/*
 * The commands a direct modification sends per key found, as EXPLAIN
 * shows them.
 */
static char *
direct_text(RedisTable *tbl, CmdType op, List *atts)
{
	return write_text(tbl, op, atts, false, "per key found");
}

/* The names of columns attnos of tbl, comma-separated, as EXPLAIN shows them. */
static char *
column_names(RedisTable *tbl, List *attnos)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, attnos)
		appendStringInfo(&buf, "%s%s", buf.len > 0 ? ", " : "",
						 quote_identifier(tbl->cols[lfirst_int(lc) - 1].name));
	return buf.data;
}

/*
 * ExplainDirectModify: the scan that finds the keys (and reads the columns
 * the assigned values use), the writes per key, and where they go.
 */
static void
redisExplainDirectModify(ForeignScanState *node, ExplainState *es)
{
	ForeignScan *fs = (ForeignScan *) node->ss.ps.plan;
	RedisScanState *st = node->fdw_state;
	RedisTable *tbl = st->tbl ? st->tbl : RedisLoadTable(st->core.relid, st->core.userid);
	ForeignTable *ft = GetForeignTable(tbl->relid);

	redisExplainForeignScan(node, es);
	ExplainPropertyText("Redis Direct Modify",
						direct_text(tbl, fs->operation,
									list_nth(fs->fdw_private, RPRIV_DIRECT_ATTS)),
						es);
	if (es->verbose && fs->operation == CMD_UPDATE)
		ExplainPropertyText("Redis Columns Read",
							intVal(list_nth(fs->fdw_private, RPRIV_DIRECT_PER_ROW)) ?
							column_names(tbl, list_nth(fs->fdw_private, RPRIV_ATTRS)) :
							"none (the assigned values do not read the row)",
							es);
	ExplainPropertyText("Redis Write Mode",
						write_mode_text(PgpolyTableWriteMode(ft->options), ft->options),
						es);
}

/* The handler: the FDW routine table. */
Datum
pgpoly_redis_handler(PG_FUNCTION_ARGS)
{
	FdwRoutine *r = makeNode(FdwRoutine);

	r->GetForeignRelSize = redisGetForeignRelSize;
	r->GetForeignPaths = redisGetForeignPaths;
	r->GetForeignPlan = redisGetForeignPlan;
	r->BeginForeignScan = redisBeginForeignScan;
	r->IterateForeignScan = redisIterateForeignScan;
	r->ReScanForeignScan = redisReScanForeignScan;
	r->EndForeignScan = redisEndForeignScan;
	r->ExplainForeignScan = redisExplainForeignScan;
	r->AddForeignUpdateTargets = redisAddForeignUpdateTargets;
	r->PlanForeignModify = redisPlanForeignModify;
	r->BeginForeignModify = redisBeginForeignModify;
	r->ExecForeignInsert = redisExecForeignInsert;
	r->ExecForeignBatchInsert = redisExecForeignBatchInsert;
	r->GetForeignModifyBatchSize = redisGetForeignModifyBatchSize;
	r->ExecForeignUpdate = redisExecForeignUpdate;
	r->ExecForeignDelete = redisExecForeignDelete;
	r->EndForeignModify = redisEndForeignModify;
	r->BeginForeignInsert = redisBeginForeignInsert;
	r->EndForeignInsert = redisEndForeignInsert;
	r->IsForeignRelUpdatable = redisIsForeignRelUpdatable;
	r->ExplainForeignModify = redisExplainForeignModify;
	r->PlanDirectModify = redisPlanDirectModify;
	r->BeginDirectModify = redisBeginDirectModify;
	r->IterateDirectModify = redisIterateDirectModify;
	r->EndDirectModify = redisEndDirectModify;
	r->ExplainDirectModify = redisExplainDirectModify;
	r->ImportForeignSchema = redisImportForeignSchema;
	PG_RETURN_POINTER(r);
}

/* Whether rel is a base relation scanned by pgpoly_redis (redis_join.c). */
bool
RedisIsRedisRel(RelOptInfo *rel)
{
	/*
	 * fdw_private is NULL when PostgreSQL proved the relation empty (WHERE
	 * false, a comparison with a NULL constant or parameter value) before
	 * asking us to plan it: it is a dummy relation then, not ours to plan.
	 */
	return rel->reloptkind == RELOPT_BASEREL && rel->fdwroutine != NULL &&
		rel->fdwroutine->GetForeignRelSize == redisGetForeignRelSize &&
		rel->fdw_private != NULL;
}

/* Whether relid is a foreign table of a pgpoly_redis server. */
bool
RedisIsRedisTable(Oid relid)
{
	return PgpolyIsForeignTableOf(relid, redisGetForeignRelSize);
}

/* The RedisTable the planner resolved for rel (redis_join.c). */
RedisTable *
RedisRelTable(RelOptInfo *rel)
{
	return ((RedisRelInfo *) rel->fdw_private)->tbl;
}

/*
 * PgpolyStore.conflict_columns: what an INSERT conflicts on, the key (and for
 * set/zset the member: a row is one member); a list element has none.
 */
List *
RedisConflictColumns(Oid relid)
{
	RedisTable *tbl = RedisLoadTable(relid, GetUserId());

	if (tbl->type == REDIS_LIST)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("ON CONFLICT is not supported on Redis list table \"%s\"",
						tbl->relname),
				 errdetail("A list element has no identity another could conflict with: INSERT appends.")));
	if (tbl->member_att)
		return list_make2_int(tbl->key_att, tbl->member_att);
	return list_make1_int(tbl->key_att);
}
