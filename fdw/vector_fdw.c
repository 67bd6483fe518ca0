/*-------------------------------------------------------------------------
 *
 * vector_fdw.c
 *		  pgpoly_vector: handler, planning, scan callbacks, EXPLAIN and
 *		  IMPORT FOREIGN SCHEMA.
 *
 * Planning translates the restriction clauses the service can evaluate
 * with the same result as SQL (the provider writes them in its filter
 * language):
 *	- id = expr, id = ANY(array expr)					-> ids
 *	- metadata->>'k' = text, = ANY(text[])				-> $eq / $in
 *	- a column mapped to a metadata key (field): text = / ANY, number
 *	  comparisons {=,<,<=,>,>=}, integer = ANY, boolean =, b, NOT b
 *														-> $eq $lt $in ...
 * ($ne and $nin are never used: Chroma lets records without the key pass
 * them, SQL does not.)  Only where the service compares as SQL does: text
 * under a deterministic collation, a value of the column's own type (or
 * another integer width), not float4 (SQL rounds the stored number to
 * float4 first); a numeric or float8 value is sent as the float8 bound that
 * selects the same numbers (PgpolyFloat8Bound); an integer or numeric value
 * the service would compare rounded (Qdrant's doubles: 2^53 and beyond;
 * Chroma's integers against a numeric's float8 bound beyond 2^53,
 * VectorProvider.exact_bound) is not sent.  A number or boolean
 * column reads only a JSON number or boolean (a string "5" is an ERROR:
 * VectorMetadataFieldValue), so the typed match selects every record it
 * reads; as with postgres_fdw's remote conditions, a record whose value
 * the column refuses may be filtered out by the service instead of
 * raising that ERROR.  A cast of metadata->>'k' ((metadata->>'k')::int)
 * is not sent: SQL casts the text, and the string "5" is 5 there.  In a
 * plain scan every clause is also rechecked locally, so the translated
 * part only narrows what is fetched.
 *
 * k-NN: for SELECT ... ORDER BY embedding <op> const LIMIT n on one vector
 * table, GetForeignUpperPaths(UPPERREL_FINAL) adds a path that replaces
 * the Sort and the Limit by one /query with n_results = n (+ offset), but
 * only when the operator's metric is the collection's distance and every
 * clause was translated: then the service's answer is the exact answer
 * and nothing needs rechecking.  Otherwise PostgreSQL sorts locally and
 * EXPLAIN says why.  The scan of such a path returns the ORDER BY value
 * itself (fdw_scan_tlist), converted from Chroma's distance.  The
 * collection's distance is read once per transaction; a plan records the
 * one its decision relied on (VPRIV_DISTANCE), and a scan that finds
 * another replans the table's cached plans (check_distance).
 *
 * Writes: INSERT upserts, UPDATE updates (or moves the id), DELETE deletes,
 * through the transaction buffer (write_mode 'transactional') or in
 * batches while the statement runs ('immediate').
 *
 * fdw/vector_fdw.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pgpoly_jansson.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/sysattr.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/explain.h"
#include "executor/executor.h"
#include "foreign/fdwapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/appendinfo.h"
#include "optimizer/cost.h"
#include "optimizer/inherit.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/planmain.h"
#include "optimizer/restrictinfo.h"
#include "optimizer/tlist.h"
#include "parser/parse_coerce.h"
#include "parser/parsetree.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"

#include "vector.h"

/* Cost model: one request, and per row. */
#define VECTOR_REQUEST_COST		10.0
#define VECTOR_PER_ROW_COST		0.01
#define VECTOR_UNKNOWN_ROWS		1000.0
#define VECTOR_UNKNOWN_IDS		100.0

/* What each fdw_exprs element is. */
enum VectorExprKind
{
	VEXPR_ID = 1,				/* one id */
	VEXPR_ID_ARRAY,				/* array of ids */
	VEXPR_COND,					/* value of a metadata condition */
	VEXPR_QUERY					/* the k-NN query vector */
};

/* fdw_private of the ForeignScan plan, by position. */
enum VectorPrivate
{
	VPRIV_KINDS,				/* List of Integer per fdw_expr */
	VPRIV_COND_KEYS,			/* List of String per VEXPR_COND */
	VPRIV_COND_OPS,				/* List of Integer (VectorCondOp) */
	VPRIV_INCLUDE,				/* Integer: VINC_* */
	VPRIV_K,					/* Integer: n_results, -1 if not k-NN */
	VPRIV_OFFSET,				/* Integer: rows to skip (k-NN OFFSET) */
	VPRIV_METRIC,				/* Integer: the operator's VectorDistance */
	VPRIV_PUSHED,				/* String: translated clauses, deparsed */
	VPRIV_WHERE,				/* String: where as EXPLAIN shows it */
	VPRIV_NOTE,					/* String: why k-NN is local, "" if n/a */
	VPRIV_SCAN_MAP,				/* List of Integer: scan tuple column -> attno
								 * (0: the ORDER BY distance); NIL: base */
	VPRIV_DISTANCE,				/* Integer: the collection's distance the
								 * k-NN decision relied on, -1: none */
	VPRIV_READ					/* List of Integer: the attnos the query
								 * reads, the only columns converted */
};

/* A translated condition, at plan time. */
typedef struct VectorCondPlan
{
	char	   *key;
	VectorCondOp op;
	Expr	   *value;
} VectorCondPlan;

/* Planner state of a vector base relation. */
typedef struct VectorRelInfo
{
	VectorTable *tbl;
	double		fetched;		/* records a plain scan reads (estimate) */
	List	   *id_exprs;		/* at most one id clause's value */
	List	   *id_kinds;
	List	   *conds;			/* VectorCondPlan * */
	List	   *pushed;			/* translated clauses */
	bool		all_pushed;
	double		nids;			/* estimate, or -1 when no id clause */
	int			include;
	/* k-NN analysis (GetForeignPaths) */
	bool		knn_ok;
	char	   *knn_note;
	Expr	   *knn_expr;		/* the ORDER BY expression */
	Expr	   *knn_query;		/* its constant side */
	VectorDistance knn_metric;
	int			knn_k;
	int			knn_offset;
	int			knn_distance;	/* the collection's distance it relied on
								 * (VectorDistance), -1: none consulted */
} VectorRelInfo;

/* Executor state of a scan. */
typedef struct VectorScanState
{
	PgpolyScanState core;		/* user, connection, memory (lifecycle.c) */
	VectorTable *tbl;
	List	   *exprs;
	List	   *kinds;
	List	   *cond_keys;
	List	   *cond_ops;
	int			include;
	int			k;
	int			offset;
	VectorDistance metric;
	List	   *scan_map;
	VectorScanSpec spec;
	VectorScan *scan;
	bool	   *read;			/* by attnum - 1: the query reads it */
	int			requests;		/* of finished scans (rescans) */
	bool		ran_local;
	Datum	   *values;			/* full-width row */
	bool	   *nulls;
} VectorScanState;

/* The identity column of the old row (core.junk[0]): id. */
static const char *const vector_junk[] = {"pgpoly_id", NULL};

/*
 * Executor state of INSERT/UPDATE/DELETE.  The core's row context holds a
 * row's (or batch's) metadata being built; core.junk_row is the whole old
 * row (UPDATE, DELETE RETURNING).
 */
typedef struct VectorModifyState
{
	PgpolyModifyState core;		/* user, connection, writer, junk columns */
	VectorTable *tbl;
	VectorCollection *coll;		/* for dimension checks; may be NULL */
	int			dim;			/* expected dimension, 0: not known yet */
	HTAB	   *ov;				/* ON CONFLICT DO NOTHING, transactional:
								 * the buffered writes, by id */
	HTAB	   *moves;			/* UPDATE that may change ids: where its
								 * rows are (PgpolyMoves), or NULL */
} VectorModifyState;

PG_FUNCTION_INFO_V1(pgpoly_vector_handler);

static void vectorGetForeignRelSize(PlannerInfo *root, RelOptInfo *baserel,
									Oid foreigntableid);

/* ----------------------------------------------------------------
 *		Helpers
 * ----------------------------------------------------------------
 */

/* What a condition's value must be (by the column side's type). */
typedef enum ValueKind
{
	VK_NONE,
	VK_STRING,
	VK_NUMBER,
	VK_BOOL
} ValueKind;

/* Value kind of a SQL type. */
static ValueKind
kind_of_type(Oid typid)
{
	switch (TypeCategory(typid))
	{
		case TYPCATEGORY_STRING:
			return VK_STRING;
		case TYPCATEGORY_NUMERIC:
			return VK_NUMBER;
		case TYPCATEGORY_BOOLEAN:
			return VK_BOOL;
		default:
			return VK_NONE;
	}
}

/*
 * Whether a column of base type typid reads a stored number as the service
 * compares it (typed, as VectorMetadataFieldValue reads it): not float4,
 * nor the other numeric types (money, oid), which pgpoly writes otherwise.
 */
static bool
is_filter_number_type(Oid typid)
{
	return typid == INT2OID || typid == INT4OID || typid == INT8OID ||
		typid == FLOAT8OID || typid == NUMERICOID;
}

/*
 * Whether a filter can name metadata key: Chroma reads a key beginning with
 * '$' in a where object as an operator ({"$and": {"$eq": "x"}} is refused
 * as an invalid where clause), so a clause on such a key is evaluated
 * locally, and vector_search() refuses it.
 */
bool
VectorFilterableKey(const char *key)
{
	return key[0] != '$';
}

/* key, or NULL when no filter can name it. */
static char *
filter_key(char *key)
{
	return VectorFilterableKey(key) ? key : NULL;
}

/*
 * The metadata key a column-side expression stands for, and its value
 * kind: metadata->>'k' (string), or a column mapped with field (its
 * type's kind).  NULL when it is none of these, or when no filter can name
 * the key (filter_key).
 */
static char *
metadata_key(Node *n, RelOptInfo *baserel, VectorTable *tbl, ValueKind *kind)
{
	AttrNumber	att = PgpolyColumnOf(n, baserel);
	OpExpr	   *op;
	Const	   *k;

	n = PgpolyStripRelabel(n);
	if (att > 0)
	{
		if (tbl->cols[att - 1].role != VCOL_FIELD || tbl->cols[att - 1].is_array ||
			strchr(tbl->cols[att - 1].field, '.') != NULL)
			return NULL;
		/*
		 * A type modifier (a domain's too) makes what the column reads of a
		 * stored value another value (varchar(n) cuts blanks past n,
		 * numeric(p,s) rounds), which the service, comparing the stored
		 * one, does not see: a k-NN answer is not rechecked.
		 */
		if (tbl->cols[att - 1].conv.basetypmod >= 0)
			return NULL;
		/*
		 * A number or boolean column reads only a JSON number (boolean),
		 * never a string "5" ("true"), which is an ERROR
		 * (VectorMetadataFieldValue): the service's typed match selects
		 * every record it reads.  Not float4: SQL rounds the stored number
		 * to float4 first (0.10000000000000002 = 0.1::float4), the service
		 * compares the number itself.
		 */
		*kind = kind_of_type(tbl->cols[att - 1].typid);
		if (*kind == VK_NUMBER && !is_filter_number_type(tbl->cols[att - 1].conv.basetype))
			return NULL;
		return *kind == VK_NONE ? NULL : filter_key(tbl->cols[att - 1].field);
	}
	/*
	 * A cast of metadata->>'k' ((metadata->>'k')::int) is not one: SQL
	 * casts the text it reads, so the string "5" (or " 5") is 5 there and
	 * 5.5 or "x" cast to int is an error, while the service's number match
	 * sees neither.  Such a clause is evaluated locally.
	 */
	*kind = VK_STRING;
	if (!IsA(n, OpExpr))
		return NULL;
	op = (OpExpr *) n;
	if (op->opfuncid != F_JSONB_OBJECT_FIELD_TEXT || list_length(op->args) != 2)
		return NULL;
	att = PgpolyColumnOf(linitial(op->args), baserel);
	k = lsecond(op->args);
	if (att == 0 || att != tbl->meta_att || !IsA(k, Const) || k->constisnull)
		return NULL;
	return filter_key(TextDatumGetCString(k->constvalue));
}

/*
 * The condition operator for SQL operator opno comparing a value of typid
 * (swapped: with the value on the left), or -1 when opno is not one of the
 * type's btree comparisons.
 */
static int
cond_op(Oid opno, Oid typid, bool swapped)
{
	switch (PgpolyBtreeStrategy(opno, typid))
	{
		case BTEqualStrategyNumber:
			return VCOND_EQ;
		case BTLessStrategyNumber:
			return swapped ? VCOND_GT : VCOND_LT;
		case BTLessEqualStrategyNumber:
			return swapped ? VCOND_GE : VCOND_LE;
		case BTGreaterStrategyNumber:
			return swapped ? VCOND_LT : VCOND_GT;
		case BTGreaterEqualStrategyNumber:
			return swapped ? VCOND_LE : VCOND_GE;
	}
	return -1;
}

/* ----------------------------------------------------------------
 *		Qual translation
 * ----------------------------------------------------------------
 */

/* Whether equality under collation collid is equality of the bytes. */
static bool
deterministic(Oid collid)
{
	return !OidIsValid(collid) || get_collation_isdeterministic(collid);
}

/* Record a translated condition. */
static void
add_cond(VectorRelInfo *ri, Expr *clause, const char *key, int op, Node *value)
{
	VectorCondPlan *c = palloc(sizeof(VectorCondPlan));

	c->key = pstrdup(key);
	c->op = (VectorCondOp) op;
	c->value = (Expr *) value;
	ri->conds = lappend(ri->conds, c);
	ri->pushed = lappend(ri->pushed, clause);
}

/* id = expr; true if translated. */
static bool
translate_id_eq(VectorRelInfo *ri, RelOptInfo *baserel, OpExpr *op, Node *l, Node *r)
{
	if (ri->id_exprs != NIL || PgpolyColumnOf(l, baserel) != ri->tbl->id_att ||
		!PgpolyIsScanConstant(r) || op->opno != TextEqualOperator ||
		!deterministic(op->inputcollid))
		return false;
	ri->id_exprs = list_make1(r);
	ri->id_kinds = list_make1_int(VEXPR_ID);
	ri->pushed = lappend(ri->pushed, op);
	ri->nids = 1;
	return true;
}

/* A binary clause: id = expr, or a metadata comparison. */
static bool
translate_opexpr(VectorRelInfo *ri, RelOptInfo *baserel, OpExpr *op)
{
	Node	   *l,
			   *r;
	bool		swapped = false;
	ValueKind	kind;
	char	   *key;
	int			cop;

	if (list_length(op->args) != 2)
		return false;
	l = linitial(op->args);
	r = lsecond(op->args);
	if (PgpolyIsScanConstant(l) && !PgpolyIsScanConstant(r))
	{
		l = lsecond(op->args);
		r = linitial(op->args);
		swapped = true;
	}
	if (translate_id_eq(ri, baserel, op, l, r))
		return true;
	if (!PgpolyIsScanConstant(r) || (key = metadata_key(l, baserel, ri->tbl, &kind)) == NULL)
		return false;
	cop = cond_op(op->opno, exprType(l), swapped);
	if (cop < 0 || kind_of_type(exprType(r)) != kind ||
		!PgpolyValueHasColumnForm(exprType(l), exprType(r)))
		return false;
	/* Only equality is the same in both worlds for strings and booleans. */
	if (kind != VK_NUMBER && (cop != VCOND_EQ ||
							  (kind == VK_STRING && op->opno != TextEqualOperator)))
		return false;
	/* the service compares strings by their bytes */
	if (kind == VK_STRING && !deterministic(op->inputcollid))
		return false;
	add_cond(ri, (Expr *) op, key, cop, r);
	return true;
}

/*
 * Whether col = ANY(arr) with operator opno compares integers: the
 * service's $in matches an integer exactly (not a float, whose fractional
 * values it truncates).
 */
static bool
is_integer_any(Oid opno, Node *col, Node *arr)
{
	Oid			ct = getBaseType(exprType(col));
	Oid			et = get_element_type(getBaseType(exprType(arr)));

	return (ct == INT2OID || ct == INT4OID || ct == INT8OID) &&
		(et == INT2OID || et == INT4OID || et == INT8OID) &&
		PgpolyBtreeStrategy(opno, ct) == BTEqualStrategyNumber;
}

/* col = ANY(array): ids, or $in on a string or integer metadata key. */
static bool
translate_any(VectorRelInfo *ri, RelOptInfo *baserel, ScalarArrayOpExpr *sa)
{
	Node	   *l = linitial(sa->args);
	Node	   *arr = lsecond(sa->args);
	ValueKind	kind;
	char	   *key;

	if (!sa->useOr || !PgpolyIsScanConstant(arr))
		return false;
	if (sa->opno != TextEqualOperator)
	{
		key = metadata_key(l, baserel, ri->tbl, &kind);
		if (key == NULL || kind != VK_NUMBER || !is_integer_any(sa->opno, l, arr))
			return false;
		add_cond(ri, (Expr *) sa, key, VCOND_IN, arr);
		return true;
	}
	if (ri->id_exprs == NIL && PgpolyColumnOf(l, baserel) == ri->tbl->id_att &&
		deterministic(sa->inputcollid))
	{
		ri->id_exprs = list_make1(arr);
		ri->id_kinds = list_make1_int(VEXPR_ID_ARRAY);
		ri->pushed = lappend(ri->pushed, sa);
		ri->nids = IsA(arr, Const) && !((Const *) arr)->constisnull ?
			ArrayGetNItems(ARR_NDIM(DatumGetArrayTypeP(((Const *) arr)->constvalue)),
						   ARR_DIMS(DatumGetArrayTypeP(((Const *) arr)->constvalue))) :
			VECTOR_UNKNOWN_IDS;
		return true;
	}
	key = metadata_key(l, baserel, ri->tbl, &kind);
	if (key == NULL || kind != VK_STRING || !deterministic(sa->inputcollid))
		return false;
	add_cond(ri, (Expr *) sa, key, VCOND_IN, arr);
	return true;
}

/*
 * A boolean column as a whole clause: b (b = true, as the planner
 * simplifies it) or NOT b; true if translated as b's equality.
 */
static bool
translate_bool(VectorRelInfo *ri, RelOptInfo *baserel, Expr *clause)
{
	bool		negated = is_notclause(clause);
	Node	   *col = negated ? (Node *) get_notclausearg(clause) : (Node *) clause;
	ValueKind	kind;
	char	   *key;

	if (!IsA(PgpolyStripRelabel(col), Var) ||
		(key = metadata_key(col, baserel, ri->tbl, &kind)) == NULL || kind != VK_BOOL)
		return false;
	add_cond(ri, clause, key, VCOND_EQ, makeBoolConst(!negated, false));
	return true;
}

/* Translate what can be; all_pushed says whether everything was. */
static void
translate_quals(VectorRelInfo *ri, RelOptInfo *baserel)
{
	ListCell   *lc;

	ri->all_pushed = true;
	ri->nids = -1;
	foreach(lc, baserel->baserestrictinfo)
	{
		Expr	   *clause = ((RestrictInfo *) lfirst(lc))->clause;
		bool		ok = false;

		if (IsA(clause, OpExpr))
			ok = translate_opexpr(ri, baserel, (OpExpr *) clause);
		else if (IsA(clause, ScalarArrayOpExpr))
			ok = translate_any(ri, baserel, (ScalarArrayOpExpr *) clause);
		else
			ok = translate_bool(ri, baserel, clause);
		if (!ok)
			ri->all_pushed = false;
	}
}

/* The VINC_* flags for the columns in attrs (pull_varattnos form). */
static int
include_for(VectorTable *tbl, Bitmapset *attrs)
{
	int			inc = 0;
	int			x = -1;

	while ((x = bms_next_member(attrs, x)) >= 0)
	{
		AttrNumber	att = x + FirstLowInvalidHeapAttributeNumber;

		if (att == 0)
			return VINC_EMBEDDING | VINC_DOCUMENT | VINC_METADATA;
		if (att < 0 || att > tbl->natts)
			continue;
		switch (tbl->cols[att - 1].role)
		{
			case VCOL_EMBEDDING:
				inc |= VINC_EMBEDDING;
				break;
			case VCOL_DOCUMENT:
				inc |= VINC_DOCUMENT;
				break;
			case VCOL_METADATA:
			case VCOL_FIELD:
				inc |= VINC_METADATA;
				break;
			default:
				break;
		}
	}
	return inc;
}

/*
 * The attnos of the columns in attrs (pull_varattnos form), every column
 * for a whole-row reference: the only columns a scan converts, so that a
 * record holding a value its column's type refuses fails only the queries
 * that read that column (as elastic_fdw.c reads only attrs_used).
 */
static List *
read_columns(VectorTable *tbl, Bitmapset *attrs)
{
	List	   *read = NIL;

	for (AttrNumber att = 1; att <= tbl->natts; att++)
		if (bms_is_member(att - FirstLowInvalidHeapAttributeNumber, attrs) ||
			bms_is_member(0 - FirstLowInvalidHeapAttributeNumber, attrs))
			read = lappend_int(read, att);
	return read;
}

/* ----------------------------------------------------------------
 *		k-NN analysis
 * ----------------------------------------------------------------
 */

/* Whether the query is a plain SELECT over baserel alone. */
static bool
simple_select(PlannerInfo *root, RelOptInfo *baserel)
{
	Query	   *parse = root->parse;

	return parse->commandType == CMD_SELECT &&
		bms_membership(root->all_baserels) == BMS_SINGLETON &&
		bms_is_member(baserel->relid, root->all_baserels) &&
		parse->groupClause == NIL && parse->groupingSets == NIL &&
		parse->distinctClause == NIL && !parse->hasAggs &&
		!parse->hasWindowFuncs && !parse->hasTargetSRFs &&
		parse->havingQual == NULL && parse->rowMarks == NIL &&
		parse->setOperations == NULL;
}

/*
 * If ORDER BY is exactly "embedding <op> const" (either order, ascending,
 * NULLS LAST), return the expression and set *query and *metric.
 */
static Expr *
knn_order_expr(PlannerInfo *root, RelOptInfo *baserel, VectorTable *tbl,
			   Expr **query, VectorDistance *metric)
{
	Query	   *parse = root->parse;
	SortGroupClause *sgc;
	OpExpr	   *op;
	Node	   *a,
			   *b;

	if (tbl->emb_att == 0 || list_length(parse->sortClause) != 1)
		return NULL;
	sgc = linitial(parse->sortClause);
	if (sgc->sortop != Float8LessOperator || sgc->nulls_first)
		return NULL;
	op = (OpExpr *) get_sortgroupclause_expr(sgc, parse->targetList);
	if (!IsA(op, OpExpr) || list_length(op->args) != 2 || op->opresulttype != FLOAT8OID)
		return NULL;
	*metric = VectorOperatorMetric(get_opname(op->opno));
	a = linitial(op->args);
	b = lsecond(op->args);
	if (PgpolyColumnOf(b, baserel) == tbl->emb_att)
	{
		Node	   *t = a;

		a = b;
		b = t;
	}
	if (*metric == VDIST_UNKNOWN || PgpolyColumnOf(a, baserel) != tbl->emb_att ||
		!PgpolyIsScanConstant(b) || exprType(a) != exprType(b))
		return NULL;
	*query = (Expr *) b;
	return (Expr *) op;
}

/*
 * The most results one k-NN request asks for (n_results = LIMIT + OFFSET).
 * A larger LIMIT is sorted locally: a request capped at this size would
 * return fewer rows than the query asks for.
 */
#define VECTOR_KNN_MAX_RESULTS	100000

/*
 * Const value of a LIMIT/OFFSET expression (dflt if absent), at most
 * VECTOR_KNN_MAX_RESULTS + 1 (enough to tell it is too large); -1 if it is
 * not a constant.
 */
static int
const_limit(Node *n, int dflt)
{
	if (n == NULL)
		return dflt;
	if (!IsA(n, Const) || ((Const *) n)->constisnull)
		return -1;
	return (int) Min(DatumGetInt64(((Const *) n)->constvalue), VECTOR_KNN_MAX_RESULTS + 1);
}

/*
 * The collection's distance known at plan time: the table option, or the
 * collection's description read in this transaction (one request per
 * transaction: it may have been re-created with another distance); the
 * plan records the latter (*consulted), for the scan to check.
 * VDIST_UNKNOWN if the collection does not exist.
 */
static VectorDistance
plan_distance(VectorTable *tbl, int *consulted)
{
	VectorCollection *c;

	if (tbl->distance != VDIST_UNKNOWN)
		return tbl->distance;
	c = VectorFreshCollection(VectorGetConnection(tbl), tbl, true);
	*consulted = c ? c->distance : VDIST_UNKNOWN;
	return *consulted;
}

static char *cond_unsafe(VectorTable *tbl, VectorCondPlan *c);

/* Decide whether ORDER BY ... LIMIT can be a /query; else say why not. */
static void
analyze_knn(PlannerInfo *root, RelOptInfo *baserel, VectorRelInfo *ri)
{
	Query	   *parse = root->parse;
	VectorDistance dist;
	ListCell   *lc;
	int			count,
				offset;

	ri->knn_distance = -1;
	ri->knn_expr = knn_order_expr(root, baserel, ri->tbl, &ri->knn_query, &ri->knn_metric);
	if (ri->knn_expr == NULL || !simple_select(root, baserel))
		return;
	count = const_limit(parse->limitCount, -1);
	offset = const_limit(parse->limitOffset, 0);
	if (count < 0 || offset < 0 || parse->limitOption != LIMIT_OPTION_COUNT)
	{
		ri->knn_note = "no constant LIMIT (ORDER BY without LIMIT n is sorted locally)";
		return;
	}
	if (count + offset > VECTOR_KNN_MAX_RESULTS)
	{
		ri->knn_note = psprintf("LIMIT plus OFFSET exceeds %d, the most one request asks for",
								VECTOR_KNN_MAX_RESULTS);
		return;
	}
	if (!ri->all_pushed)
	{
		ri->knn_note = "a WHERE clause cannot be translated into a filter of the service";
		return;
	}
	foreach(lc, ri->conds)
		if ((ri->knn_note = cond_unsafe(ri->tbl, lfirst(lc))) != NULL)
			return;
	dist = plan_distance(ri->tbl, &ri->knn_distance);
	if (dist != ri->knn_metric)
	{
		ri->knn_note = dist == VDIST_UNKNOWN ?
			psprintf("collection \"%s\" does not exist", ri->tbl->collection) :
			psprintf("operator %s does not match the collection's distance '%s' (use %s)",
					 VectorOperatorName(ri->knn_metric), VectorDistanceName(dist),
					 VectorOperatorName(dist));
		return;
	}
	ri->knn_ok = true;
	ri->knn_k = count + offset;
	ri->knn_offset = offset;
}

/* ----------------------------------------------------------------
 *		Sizes and paths
 * ----------------------------------------------------------------
 */

/* GetForeignRelSize: translate quals, estimate rows (no network I/O). */
static void
vectorGetForeignRelSize(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	VectorRelInfo *ri = palloc0(sizeof(VectorRelInfo));
	Bitmapset  *attrs = NULL;
	List	   *local = NIL;
	ListCell   *lc;
	double		rows;

	ri->tbl = VectorLoadTable(foreigntableid, PgpolyRelUser(baserel));
	baserel->fdw_private = ri;
	translate_quals(ri, baserel);

	pull_varattnos((Node *) baserel->reltarget->exprs, baserel->relid, &attrs);
	foreach(lc, baserel->baserestrictinfo)
		pull_varattnos((Node *) ((RestrictInfo *) lfirst(lc))->clause, baserel->relid, &attrs);
	ri->include = include_for(ri->tbl, attrs);

	foreach(lc, baserel->baserestrictinfo)
		if (ri->nids < 0 || !list_member_ptr(ri->pushed, ((RestrictInfo *) lfirst(lc))->clause))
			local = lappend(local, lfirst(lc));
	if (ri->nids >= 0)
		rows = ri->nids;
	else if (ri->tbl->remote_estimate)
		rows = VectorRemoteCount(ri->tbl);
	else
		rows = baserel->tuples > 0 ? baserel->tuples : VECTOR_UNKNOWN_ROWS;
	ri->fetched = Max(rows, 1.0);
	baserel->rows = clamp_row_est(rows * clauselist_selectivity(root, local, baserel->relid,
																JOIN_INNER, NULL));
}

/* GetForeignPaths: one unsorted path; k-NN goes through the upper hook. */
static void
vectorGetForeignPaths(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	VectorRelInfo *ri = baserel->fdw_private;
	double		fetched = ri->fetched;
	Cost		startup = VECTOR_REQUEST_COST;
	Cost		total = startup +
		ceil(fetched / ri->tbl->fetch_size) * VECTOR_REQUEST_COST +
		fetched * VECTOR_PER_ROW_COST + baserel->rows * cpu_tuple_cost;

	analyze_knn(root, baserel, ri);
	add_path(baserel, (Path *)
			 PgpolyForeignScanPath(root, baserel, baserel->rows, startup, total,
								   NIL, NULL, NIL));
}

/* Whether every Var of the final target is a user column of baserel. */
static bool
target_is_plain(PathTarget *target, RelOptInfo *baserel)
{
	List	   *vars = pull_var_clause((Node *) target->exprs, PVC_RECURSE_PLACEHOLDERS);
	ListCell   *lc;

	foreach(lc, vars)
	{
		Var		   *v = lfirst(lc);

		if (!IsA(v, Var) || v->varno != baserel->relid || v->varattno <= 0)
			return false;
	}
	return true;
}

/* The vector base relation of a single-table query, or NULL. */
static RelOptInfo *
single_vector_rel(PlannerInfo *root)
{
	RelOptInfo *rel;

	if (bms_membership(root->all_baserels) != BMS_SINGLETON)
		return NULL;
	rel = find_base_rel(root, bms_singleton_member(root->all_baserels));
	if (rel->reloptkind != RELOPT_BASEREL || rel->fdwroutine == NULL ||
		rel->fdwroutine->GetForeignRelSize != vectorGetForeignRelSize)
		return NULL;
	/* a relation PostgreSQL proved empty (WHERE false) was never planned */
	if (rel->fdw_private == NULL)
		return NULL;
	return rel;
}

/*
 * GetForeignUpperPaths: at UPPERREL_FINAL, replace Sort + Limit of a
 * k-NN query by one /query (see the file header for when).
 */
static void
vectorGetForeignUpperPaths(PlannerInfo *root, UpperRelationKind stage,
						   RelOptInfo *input_rel, RelOptInfo *output_rel,
						   void *extra)
{
	RelOptInfo *baserel;
	VectorRelInfo *ri;
	PathTarget *target = root->upper_targets[UPPERREL_FINAL];
	ForeignPath *path;

	if (stage != UPPERREL_FINAL || !((FinalPathExtraData *) extra)->limit_needed)
		return;
	baserel = single_vector_rel(root);
	if (baserel == NULL)
		return;
	ri = baserel->fdw_private;
	if (!ri->knn_ok)
		return;
	if (!target_is_plain(target, baserel))
	{
		ri->knn_note = "the select list has a whole-row or system column";
		return;
	}
	path = PgpolyForeignUpperPath(root, input_rel, target, ri->knn_k - ri->knn_offset,
								  VECTOR_REQUEST_COST,
								  VECTOR_REQUEST_COST + ri->knn_k * VECTOR_PER_ROW_COST,
								  root->sort_pathkeys, list_make1(makeInteger(1)));
	add_path(output_rel, (Path *) path);
}

/* ----------------------------------------------------------------
 *		Plans
 * ----------------------------------------------------------------
 */

/* JSON text of a Const value (arrays as JSON arrays). */
static char *
const_json(Const *c)
{
	StringInfoData buf;

	initStringInfo(&buf);
	PgpolyJsonAppendValue(&buf, c->constvalue, c->consttype, c->constisnull);
	return buf.data;
}

static void eval_cond(VectorTable *tbl, VectorScanSpec *spec, char *key,
					  VectorCondOp op, Datum v, Oid typid, bool isnull);

/*
 * The where object as EXPLAIN shows it: constants as the scan sends them
 * (eval_cond), run-time values as "$n".
 */
static char *
explain_where(VectorRelInfo *ri)
{
	List	   *conds = NIL;
	ListCell   *lc;

	foreach(lc, ri->conds)
	{
		VectorCondPlan *p = lfirst(lc);
		VectorCondEval *e = palloc0(sizeof(VectorCondEval));
		VectorScanSpec sent = {.k = -1};

		if (IsA(p->value, Const))
		{
			Const	   *c = (Const *) p->value;

			eval_cond(ri->tbl, &sent, p->key, p->op, c->constvalue, c->consttype,
					  c->constisnull);
			if (!sent.empty)
			{
				conds = list_concat(conds, sent.conds);
				continue;
			}
		}
		e->key = p->key;
		e->op = p->op;
		e->value = IsA(p->value, Const) ? const_json((Const *) p->value) :
			psprintf("\"$%d\"", foreach_current_index(lc) + 1);
		conds = lappend(conds, e);
	}
	return VectorWhereJson(ri->tbl, conds);
}

/* fdw_exprs (ids, then condition values) and their kinds. */
static List *
plan_exprs(VectorRelInfo *ri, List **kinds, List **keys, List **ops)
{
	List	   *exprs = list_copy(ri->id_exprs);
	ListCell   *lc;

	*kinds = list_copy(ri->id_kinds);
	foreach(lc, ri->conds)
	{
		VectorCondPlan *c = lfirst(lc);

		exprs = lappend(exprs, c->value);
		*kinds = lappend_int(*kinds, VEXPR_COND);
		*keys = lappend(*keys, makeString(c->key));
		*ops = lappend_int(*ops, c->op);
	}
	return exprs;
}

/*
 * The scan tuple of a k-NN plan: the ORDER BY expression (filled with the
 * distance) and the base columns the final target needs.  *map gets the
 * attno of each entry (0 for the distance), *attrs those columns.
 */
static List *
knn_scan_tlist(List *tlist, Expr *knn_expr, List **map, Bitmapset **attrs)
{
	List	   *scan_tlist = list_make1(makeTargetEntry(copyObject(knn_expr), 1, NULL, false));
	ListCell   *lc;

	*map = list_make1_int(0);
	foreach(lc, tlist)
	{
		TargetEntry *tle = lfirst(lc);
		ListCell   *vc;

		if (equal(tle->expr, knn_expr))
			continue;
		foreach(vc, pull_var_clause((Node *) tle->expr, PVC_RECURSE_PLACEHOLDERS))
		{
			Var		   *v = lfirst(vc);

			if (tlist_member((Expr *) v, scan_tlist))
				continue;
			scan_tlist = lappend(scan_tlist,
								 makeTargetEntry((Expr *) v, list_length(scan_tlist) + 1,
												 NULL, false));
			*map = lappend_int(*map, v->varattno);
			*attrs = bms_add_member(*attrs, v->varattno - FirstLowInvalidHeapAttributeNumber);
		}
	}
	return scan_tlist;
}

/* GetForeignPlan: a base scan, or (upper rel) the k-NN query. */
static ForeignScan *
vectorGetForeignPlan(PlannerInfo *root, RelOptInfo *foreignrel, Oid foreigntableid,
					 ForeignPath *best_path, List *tlist, List *scan_clauses,
					 Plan *outer_plan)
{
	bool		knn = IS_UPPER_REL(foreignrel);
	RelOptInfo *baserel = knn ? single_vector_rel(root) : foreignrel;
	VectorRelInfo *ri = baserel->fdw_private;
	List	   *kinds = NIL,
			   *keys = NIL,
			   *ops = NIL,
			   *map = NIL,
			   *scan_tlist = NIL;
	List	   *exprs = plan_exprs(ri, &kinds, &keys, &ops);
	int			include = ri->include;
	char	   *where = explain_where(ri);
	Bitmapset  *attrs = NULL;
	List	   *priv;
	ListCell   *lc;

	if (knn)
	{
		scan_tlist = knn_scan_tlist(tlist, ri->knn_expr, &map, &attrs);
		include = include_for(ri->tbl, attrs);
		exprs = lappend(exprs, ri->knn_query);
		kinds = lappend_int(kinds, VEXPR_QUERY);
	}
	else
	{
		/* the columns above the scan and in its quals (also join clauses) */
		pull_varattnos((Node *) baserel->reltarget->exprs, baserel->relid, &attrs);
		foreach(lc, scan_clauses)
			pull_varattnos((Node *) ((RestrictInfo *) lfirst(lc))->clause,
						   baserel->relid, &attrs);
		include |= include_for(ri->tbl, attrs);
	}
	priv = list_make5(kinds, keys, ops, makeInteger(include),
					  makeInteger(knn ? ri->knn_k : -1));
	priv = lappend(priv, makeInteger(knn ? ri->knn_offset : 0));
	priv = lappend(priv, makeInteger(ri->knn_metric));
	priv = lappend(priv, makeString(PgpolyDeparseClauses(ri->pushed, root, baserel)));
	priv = lappend(priv, makeString(where ? where : pstrdup("")));
	priv = lappend(priv, makeString(pstrdup(!knn && ri->knn_note ? ri->knn_note : "")));
	priv = lappend(priv, map);
	priv = lappend(priv, makeInteger(ri->knn_distance));
	priv = lappend(priv, read_columns(ri->tbl, attrs));
	return make_foreignscan(tlist, knn ? NIL : extract_actual_clauses(scan_clauses, false),
							knn ? 0 : baserel->relid, exprs, priv, scan_tlist, NIL,
							outer_plan);
}

/* ----------------------------------------------------------------
 *		Scan execution
 * ----------------------------------------------------------------
 */

/* BeginForeignScan: resolve table and connection; no I/O yet. */
static void
vectorBeginForeignScan(ForeignScanState *node, int eflags)
{
	ForeignScan *fs = (ForeignScan *) node->ss.ps.plan;
	VectorScanState *st = PgpolyScanBegin(sizeof(VectorScanState), &VectorStore,
										  node, eflags);
	ListCell   *lc;

	/* SKIP LOCKED is an ERROR at once: nothing is locked to skip */
	(void) PgpolyScanRowMarked(node->ss.ps.state, PgpolyScanRelid(fs), &VectorStore, NULL);

	st->kinds = list_nth(fs->fdw_private, VPRIV_KINDS);
	st->cond_keys = list_nth(fs->fdw_private, VPRIV_COND_KEYS);
	st->cond_ops = list_nth(fs->fdw_private, VPRIV_COND_OPS);
	st->include = intVal(list_nth(fs->fdw_private, VPRIV_INCLUDE));
	st->k = intVal(list_nth(fs->fdw_private, VPRIV_K));
	st->offset = intVal(list_nth(fs->fdw_private, VPRIV_OFFSET));
	st->metric = (VectorDistance) intVal(list_nth(fs->fdw_private, VPRIV_METRIC));
	st->scan_map = list_nth(fs->fdw_private, VPRIV_SCAN_MAP);
	st->tbl = VectorLoadTable(st->core.relid, st->core.userid);
	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;
	st->exprs = ExecInitExprList(fs->fdw_exprs, (PlanState *) node);
	st->values = palloc(sizeof(Datum) * Max(st->tbl->natts, 1));
	st->nulls = palloc(sizeof(bool) * Max(st->tbl->natts, 1));
	st->read = palloc0(sizeof(bool) * Max(st->tbl->natts, 1));
	foreach(lc, (List *) list_nth(fs->fdw_private, VPRIV_READ))
		st->read[lfirst_int(lc) - 1] = true;
}

/* Add the text elements of a text[] datum to the id list. */
static List *
add_array_ids(List *ids, Datum arr)
{
	Datum	   *elems;
	bool	   *enulls;
	int			n;

	deconstruct_array(DatumGetArrayTypeP(arr), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &enulls, &n);
	for (int i = 0; i < n; i++)
		if (!enulls[i])
			ids = lappend(ids, TextDatumGetCString(elems[i]));
	return ids;
}

/* The btree strategy of a condition operator (not VCOND_IN), and back. */
static const int vcond_strategy[] = {BTEqualStrategyNumber, BTLessStrategyNumber,
BTLessEqualStrategyNumber, BTGreaterStrategyNumber, BTGreaterEqualStrategyNumber};

static VectorCondOp
strategy_vcond(int strategy)
{
	for (int op = VCOND_EQ; op <= VCOND_GE; op++)
		if (vcond_strategy[op] == strategy)
			return (VectorCondOp) op;
	elog(ERROR, "unexpected comparison strategy %d", strategy);
}

/*
 * The condition admitting the metadata strings "Infinity", "-Infinity" and
 * "NaN" (which is how a float8 or numeric that JSON cannot hold as a number
 * is written) that SQL's  <strategy> v  admits, v being a float8 or
 * numeric of type typid; NULL when it admits none of them.
 */
static VectorCondEval *
special_values(char *key, int strategy, Datum v, Oid typid)
{
	static const char *const specials[] = {"Infinity", "-Infinity", "NaN"};
	const double values[] = {get_float8_infinity(), -get_float8_infinity(), get_float8_nan()};
	bool		numeric = getBaseType(typid) == NUMERICOID;
	VectorCondEval *c = NULL;

	for (int i = 0; i < lengthof(specials); i++)
	{
		int			cmp;
		bool		admitted;

		if (numeric)
			cmp = DatumGetInt32(DirectFunctionCall2(numeric_cmp,
													DirectFunctionCall3(numeric_in,
																		CStringGetDatum(specials[i]),
																		ObjectIdGetDatum(InvalidOid),
																		Int32GetDatum(-1)),
													v));
		else
			cmp = float8_cmp_internal(values[i], DatumGetFloat8(v));
		admitted = strategy == BTLessStrategyNumber ? cmp < 0 :
			strategy == BTLessEqualStrategyNumber ? cmp <= 0 :
			strategy == BTGreaterStrategyNumber ? cmp > 0 :
			strategy == BTGreaterEqualStrategyNumber ? cmp >= 0 : cmp == 0;
		if (!admitted)
			continue;
		if (c == NULL)
		{
			c = palloc0(sizeof(VectorCondEval));
			c->key = key;
			c->op = VCOND_IN;
			c->value = "[";
		}
		c->value = psprintf("%s%s\"%s\"", c->value, strlen(c->value) > 1 ? "," : "",
							specials[i]);
	}
	if (c)
		c->value = psprintf("%s]", c->value);
	return c;
}

/*
 * The JSON array of the non-NULL elements of arr, a text[] or an integer
 * array (k IN (a, NULL) admits what k IN (a) admits; the service refuses a
 * null in $in), or NULL when there are none.
 */
static char *
in_values_json(Datum arr)
{
	ArrayType  *a = DatumGetArrayTypeP(arr);
	Oid			et = ARR_ELEMTYPE(a);
	int16		typlen;
	bool		typbyval;
	char		typalign;
	StringInfoData buf;
	Datum	   *elems;
	bool	   *enulls;
	int			n;
	bool		any = false;

	get_typlenbyvalalign(et, &typlen, &typbyval, &typalign);
	deconstruct_array(a, et, typlen, typbyval, typalign, &elems, &enulls, &n);
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	for (int i = 0; i < n; i++)
	{
		if (enulls[i])
			continue;
		if (any)
			appendStringInfoChar(&buf, ',');
		PgpolyJsonAppendValue(&buf, elems[i], et, false);
		any = true;
	}
	appendStringInfoChar(&buf, ']');
	return any ? buf.data : NULL;
}

/*
 * Whether text t could be what SQL reads of a metadata value that is not a
 * string (metadata->>'k', or a text column mapped to k): a number's text
 * (numeric_out: '3', '-2.5', '100000000000000000000'; the exponent forms
 * are taken too, to be safe), 'true' or 'false', an array's or an object's
 * JSON.  The service compares a string with strings only, so its match
 * "$eq": "3" misses the number 3, which SQL reads as '3'; for any other
 * text the string match selects exactly what SQL's comparison does.
 */
static bool
text_may_be_nonstring(const char *t)
{
	const char *p = t;

	if (strcmp(t, "true") == 0 || strcmp(t, "false") == 0 || t[0] == '[' || t[0] == '{')
		return true;
	if (*p == '-')
		p++;
	if (*p < '0' || *p > '9')
		return false;
	return strspn(p, "0123456789.eE+-") == strlen(p);
}

/*
 * Whether a string condition's value v (text, or text[] for IN) holds a
 * text that could be SQL's reading of a number or a boolean
 * (text_may_be_nonstring): then the string match sent would select fewer
 * records than SQL, and the condition is not sent (eval_cond).
 */
static bool
string_value_unsafe(Datum v, VectorCondOp op)
{
	Datum	   *elems;
	bool	   *enulls;
	int			n;

	if (op != VCOND_IN)
		return text_may_be_nonstring(TextDatumGetCString(v));
	deconstruct_array(DatumGetArrayTypeP(v), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &enulls, &n);
	for (int i = 0; i < n; i++)
		if (!enulls[i] && text_may_be_nonstring(TextDatumGetCString(elems[i])))
			return true;
	return false;
}

/*
 * Whether a condition's value, of type typid, is text to match strings:
 * text, or text[] for IN (an integer array's $in matches numbers).
 */
static bool
is_string_value(VectorCondOp op, Oid typid)
{
	if (op == VCOND_IN)
		typid = get_element_type(getBaseType(typid));
	return kind_of_type(typid) == VK_STRING;
}

/* The value of an integer datum of type typid (int2, int4 or int8). */
static int64
integer_value(Datum v, Oid typid)
{
	switch (getBaseType(typid))
	{
		case INT2OID:
			return DatumGetInt16(v);
		case INT4OID:
			return DatumGetInt32(v);
		default:
			return DatumGetInt64(v);
	}
}

/*
 * The elements of an array datum v (of array type typid), NULLs left out,
 * into *elems (*n of them); *et gets their type.
 */
static void
array_elements(Datum v, Oid typid, Oid *et, Datum **elems, int *n)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	bool	   *enulls;
	int			all;

	*et = get_element_type(getBaseType(typid));
	get_typlenbyvalalign(*et, &typlen, &typbyval, &typalign);
	deconstruct_array(DatumGetArrayTypeP(v), *et, typlen, typbyval, typalign,
					  elems, &enulls, &all);
	*n = 0;
	for (int i = 0; i < all; i++)
		if (!enulls[i])
			(*elems)[(*n)++] = (*elems)[i];
}

/*
 * Whether a number condition's value v (an integer or a numeric, or an
 * integer array for IN) is one tbl's service would compare rounded with a
 * number it holds (VectorProvider.exact_bound: Qdrant compares as doubles,
 * so 2^53 + 1 is not > 2^53 there; Chroma compares the integers a numeric
 * column holds with the float8 bound sent for 2^53 + 1, which is 2^53):
 * then the condition is not sent (eval_cond).  A numeric is sent as the
 * float8 PgpolyFloat8Bound gives, so that is the bound asked about; one
 * beyond the range of float8, or NaN, is sent as the largest float8, which
 * no number exceeds, and compares exactly anywhere.  A float8 column's
 * value always is sent: SQL reads the stored number as a float8 too.
 */
static bool
number_value_unsafe(VectorTable *tbl, VectorCondOp op, Datum v, Oid typid)
{
	bool		(*exact) (double, bool) = tbl->provider->exact_bound;
	Oid			base = getBaseType(typid);
	Oid			et;
	Datum	   *elems;
	int			n;
	int			eq = BTEqualStrategyNumber;
	double		d;

	if (exact == NULL)
		return false;
	if (op == VCOND_IN)
	{
		array_elements(v, typid, &et, &elems, &n);
		for (int i = 0; i < n; i++)
			if (!exact((double) integer_value(elems[i], et), true))
				return true;
		return false;
	}
	if (base == INT2OID || base == INT4OID || base == INT8OID)
		return !exact((double) integer_value(v, base), true);
	if (base != NUMERICOID)
		return false;
	d = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow, v));
	if (isnan(d) || isinf(d))
		return false;
	/* v is its bound's shortest text (an equality is kept) and the bound */
	return !exact(d, PgpolyFloat8Bound(v, typid, &eq, &d) &&
				  d >= -9223372036854775808.0 && d < 9223372036854775808.0 &&
				  DatumGetInt32(DirectFunctionCall2(numeric_cmp, v,
													NumericGetDatum(int64_to_numeric((int64) d)))) == 0);
}

/*
 * ERROR for vector_search's filter number num at key (an element of its
 * array when element) that tbl's service would compare rounded.
 */
void
VectorRefuseRounded(VectorTable *tbl, const char *key, Datum num, bool element)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("filter value %s%s for key \"%s\" cannot be compared exactly by %s",
					DatumGetCString(DirectFunctionCall1(numeric_out, num)),
					element ? " in the array" : "", key, tbl->provider->label),
			 errdetail("%s would compare it rounded to a float8.", tbl->provider->label),
			 errhint("Compare it in the WHERE clause of a k-NN query (ORDER BY embedding <-> query LIMIT k), which evaluates it locally.")));
}

/*
 * conds with the equality of metadata key and the number num (a numeric
 * datum, from vector_search's filter) appended as a WHERE clause comparing
 * a numeric column with it sends it: its float8 bound (PgpolyFloat8Bound),
 * *empty set when no stored number can equal it.  A number the service
 * would compare rounded (number_value_unsafe: 9007199254740993, whose
 * float8 is 2^53) is an ERROR, as vector_search cannot evaluate it itself.
 */
List *
VectorNumericEqConds(List *conds, VectorTable *tbl, char *key, Datum num, bool *empty)
{
	int			strategy = BTEqualStrategyNumber;
	double		d;

	if (number_value_unsafe(tbl, VCOND_EQ, num, NUMERICOID))
		VectorRefuseRounded(tbl, key, num, false);
	if (!PgpolyFloat8Bound(num, NUMERICOID, &strategy, &d))
	{
		*empty = true;
		return conds;
	}
	return VectorNumberConds(conds, tbl, key, strategy_vcond(strategy), d, NULL);
}

/*
 * Whether the number num (a numeric datum) of an IN list is sent as it is
 * written, exactly: a float8's shortest text that tbl's service compares
 * exactly (VectorNumericEqConds would send it unchanged).
 */
bool
VectorNumericSentExactly(VectorTable *tbl, Datum num)
{
	int			strategy = BTEqualStrategyNumber;
	double		d;

	return !number_value_unsafe(tbl, VCOND_EQ, num, NUMERICOID) &&
		PgpolyFloat8Bound(num, NUMERICOID, &strategy, &d) &&
		strategy == BTEqualStrategyNumber && !isinf(d);
}

/*
 * Whether a condition's value v (not NULL) would make the service select
 * other records than SQL: a string match that could miss a number or a
 * boolean (string_value_unsafe), a number the service would compare
 * rounded (number_value_unsafe).  Such a condition is not sent.
 */
static bool
value_unsafe(VectorTable *tbl, VectorCondOp op, Datum v, Oid typid)
{
	if (is_string_value(op, typid))
		return string_value_unsafe(v, op);
	return number_value_unsafe(tbl, op, v, typid);
}

/*
 * Why a k-NN request is not planned with condition c: its constant value
 * is unsafe (value_unsafe), and PostgreSQL sorts locally (EXPLAIN says
 * why); NULL if it is not.  A value known only when the scan starts (a
 * parameter) is decided then (eval_cond).
 */
static char *
cond_unsafe(VectorTable *tbl, VectorCondPlan *c)
{
	Oid			typid = exprType((Node *) c->value);
	Const	   *k;

	if (!IsA(c->value, Const))
		return NULL;
	k = (Const *) c->value;
	if (k->constisnull || !value_unsafe(tbl, c->op, k->constvalue, typid))
		return NULL;
	if (is_string_value(c->op, typid))
		return pstrdup("a text comparison's value may be the text of a number or a boolean, which the service's string match does not select");
	return psprintf("%s would compare a number comparison's value rounded", tbl->provider->label);
}

/*
 * The VectorLocalCond of key op v, v of type typid (not NULL; for IN an
 * array): a text's texts, or a number's numbers as Numeric.
 */
static VectorLocalCond *
local_cond(char *key, VectorCondOp op, Datum v, Oid typid)
{
	VectorLocalCond *c = palloc0(sizeof(VectorLocalCond));
	Datum	   *elems = &v;
	int			n = 1;
	Oid			et = typid;

	c->key = key;
	c->op = op;
	if (op == VCOND_IN)
		array_elements(v, typid, &et, &elems, &n);
	et = getBaseType(et);
	c->specials = et == NUMERICOID;
	for (int i = 0; i < n; i++)
	{
		if (kind_of_type(et) == VK_STRING)
			c->texts = lappend(c->texts, TextDatumGetCString(elems[i]));
		else
			c->numbers = lappend(c->numbers, et == NUMERICOID ?
								 DatumGetNumericCopy(elems[i]) :
								 int64_to_numeric(integer_value(elems[i], et)));
	}
	return c;
}

/* Evaluate one condition value into spec (NULL or an empty IN: no rows). */
static void
eval_cond(VectorTable *tbl, VectorScanSpec *spec, char *key, VectorCondOp op, Datum v,
		  Oid typid, bool isnull)
{
	VectorCondEval *c = palloc0(sizeof(VectorCondEval));
	StringInfoData buf;
	double		d;

	if (!isnull && op == VCOND_IN)
	{
		c->value = in_values_json(v);
		isnull = c->value == NULL;
	}
	if (isnull)
	{
		spec->empty = true;
		return;
	}

	/*
	 * A condition with which the service would select other records than
	 * SQL (value_unsafe) is not sent: the scan fetches a superset.  A plain
	 * scan's clause is rechecked by SQL above it; a k-NN scan (whose value
	 * was a parameter: cond_unsafe) keeps it as a VectorLocalCond, computes
	 * the k-NN locally and checks every row against it (vector_scan.c).
	 */
	if (value_unsafe(tbl, op, v, typid))
	{
		if (spec->k >= 0)
			spec->local_conds = lappend(spec->local_conds, local_cond(key, op, v, typid));
		return;
	}
	if (op != VCOND_IN && (getBaseType(typid) == NUMERICOID ||
						   getBaseType(typid) == FLOAT8OID))
	{
		int			strategy = vcond_strategy[op];

		/* the infinities and NaN SQL admits are stored as strings */
		c->or_else = special_values(key, strategy, v, typid);
		if (!PgpolyFloat8Bound(v, typid, &strategy, &d))
		{
			if (c->or_else)
				spec->conds = lappend(spec->conds, c->or_else);
			else
				spec->empty = true;
			return;
		}
		spec->conds = VectorNumberConds(spec->conds, tbl, key, strategy_vcond(strategy), d,
										c->or_else);
		return;
	}
	if (c->value == NULL)
	{
		initStringInfo(&buf);
		PgpolyJsonAppendValue(&buf, v, typid, false);
		c->value = buf.data;
	}
	c->key = key;
	c->op = op;
	spec->conds = lappend(spec->conds, c);
}

/* Evaluate fdw_exprs into the scan's spec. */
static void
build_spec(ForeignScanState *node, VectorScanState *st)
{
	ExprContext *econtext = node->ss.ps.ps_ExprContext;
	VectorScanSpec *spec = &st->spec;
	ListCell   *le,
			   *lk;
	int			ncond = 0;

	memset(spec, 0, sizeof(*spec));
	spec->include = st->include;
	spec->metric = st->metric;
	spec->k = st->k;
	forboth(le, st->exprs, lk, st->kinds)
	{
		ExprState  *es = lfirst(le);
		bool		isnull;
		Datum		v = ExecEvalExpr(es, econtext, &isnull);
		Oid			typid = exprType((Node *) es->expr);

		switch (lfirst_int(lk))
		{
			case VEXPR_ID:
			case VEXPR_ID_ARRAY:
				spec->by_ids = true;
				if (!isnull)
					spec->ids = lfirst_int(lk) == VEXPR_ID ?
						lappend(spec->ids, TextDatumGetCString(v)) :
						add_array_ids(spec->ids, v);
				break;
			case VEXPR_COND:
				eval_cond(st->tbl, spec, strVal(list_nth(st->cond_keys, ncond)),
						  (VectorCondOp) list_nth_int(st->cond_ops, ncond), v, typid, isnull);
				ncond++;
				break;
			case VEXPR_QUERY:
				/* distances to NULL are NULL: ORDER BY keeps any k rows */
				if (isnull)
					spec->capped = true;
				else
					spec->query = VectorDatumFloats(v, typid, &spec->dim);
				break;
		}
	}
	if (spec->by_ids && spec->ids == NIL)
		spec->empty = true;
	spec->where = VectorWhereJson(st->tbl, spec->conds);
}

/*
 * Store row into the scan slot (full row, or the k-NN scan tuple).  Only
 * the columns the plan reads are converted; the others are NULL.
 */
static void
store_row(VectorScanState *st, VectorRow *row, TupleTableSlot *slot)
{
	VectorRowToValues(st->tbl, row, (st->spec.include & VINC_METADATA) != 0,
					  st->read, st->values, st->nulls);
	if (st->scan_map == NIL)
	{
		memcpy(slot->tts_values, st->values, sizeof(Datum) * st->tbl->natts);
		memcpy(slot->tts_isnull, st->nulls, sizeof(bool) * st->tbl->natts);
	}
	else
	{
		ListCell   *lc;

		foreach(lc, st->scan_map)
		{
			int			i = foreach_current_index(lc);
			int			att = lfirst_int(lc);

			slot->tts_values[i] = att == 0 ? Float8GetDatum(row->distance) : st->values[att - 1];
			slot->tts_isnull[i] = att == 0 ? !row->has_distance : st->nulls[att - 1];
		}
	}
	ExecStoreVirtualTuple(slot);
}

/*
 * Check that the collection's distance, read in this transaction, is still
 * the one the plan's k-NN decision relied on: a cached plan may have been
 * made before the collection was re-created with another distance.  If it
 * changed, the table's cached plans are made again at their next use; this
 * scan is right as it is (a pushed k-NN whose operator no longer matches
 * the distance is computed locally by VectorScanBegin, a local one is
 * sorted above the scan).
 */
static void
check_distance(ForeignScanState *node, VectorScanState *st)
{
	List	   *priv = ((ForeignScan *) node->ss.ps.plan)->fdw_private;
	int			planned = intVal(list_nth(priv, VPRIV_DISTANCE));
	VectorCollection *c;

	if (planned < 0)
		return;
	c = VectorFreshCollection(st->core.conn, st->tbl, true);
	if ((c ? c->distance : VDIST_UNKNOWN) != (VectorDistance) planned)
		PgpolyReplanReaders(st->core.relid);
}

/* IterateForeignScan: next row (the first call sends the request). */
static TupleTableSlot *
vectorIterateForeignScan(ForeignScanState *node)
{
	VectorScanState *st = node->fdw_state;
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;
	VectorRow  *row;
	MemoryContext old;

	ExecClearTuple(slot);
	if (!st->core.started)
	{
		old = PgpolyScanStart(&st->core);
		check_distance(node, st);
		build_spec(node, st);
		st->scan = VectorScanBegin(st->tbl, st->core.conn, &st->spec, st->core.pending);
		st->ran_local |= VectorScanWasLocal(st->scan);
		for (int i = 0; i < st->offset && VectorScanNext(st->scan); i++)
			;
		MemoryContextSwitchTo(old);
	}
	old = MemoryContextSwitchTo(st->core.scan_cxt);
	row = VectorScanNext(st->scan);
	(void) PgpolyScanRow(&st->core);
	if (row)
		store_row(st, row, slot);
	MemoryContextSwitchTo(old);
	return slot;
}

/* ReScanForeignScan: parameters may have changed; start over. */
static void
vectorReScanForeignScan(ForeignScanState *node)
{
	VectorScanState *st = node->fdw_state;

	if (st->scan)
		st->requests += VectorScanRequests(st->scan);
	st->scan = NULL;
	PgpolyScanRescan(&st->core);
}

/* EndForeignScan: the connection stays cached; the scan's memory is freed. */
static void
vectorEndForeignScan(ForeignScanState *node)
{
	VectorScanState *st = node->fdw_state;

	if (st->scan)
		st->requests += VectorScanRequests(st->scan);
	st->scan = NULL;
	PgpolyScanEnd(&st->core);
}

/* ----------------------------------------------------------------
 *		EXPLAIN
 * ----------------------------------------------------------------
 */

/* The k-NN query vector ($query in the request) as EXPLAIN VERBOSE shows it. */
static char *
query_text(ForeignScan *fs, ExplainState *es)
{
	List	   *kinds = list_nth(fs->fdw_private, VPRIV_KINDS);
	List	   *ctx = set_deparse_context_plan(es->deparse_cxt, (Plan *) fs, NIL);
	ListCell   *le,
			   *lk;

	forboth(le, fs->fdw_exprs, lk, kinds)
		if (lfirst_int(lk) == VEXPR_QUERY)
			return deparse_expression(lfirst(le), ctx, false, false);
	return "";
}

/* ExplainForeignScan: the request, the k-NN decision, pushed quals. */
static void
vectorExplainForeignScan(ForeignScanState *node, ExplainState *es)
{
	ForeignScan *fs = (ForeignScan *) node->ss.ps.plan;
	VectorScanState *st = node->fdw_state;
	char	   *where = strVal(list_nth(fs->fdw_private, VPRIV_WHERE));
	char	   *pushed = strVal(list_nth(fs->fdw_private, VPRIV_PUSHED));
	char	   *note = strVal(list_nth(fs->fdw_private, VPRIV_NOTE));
	bool		by_ids = list_member_int(st->kinds, VEXPR_ID) ||
		list_member_int(st->kinds, VEXPR_ID_ARRAY);

	if (st->k >= 0)
	{
		ExplainPropertyText("Vector Relation", st->tbl->relname, es);
		ExplainPropertyText("Vector Request",
							VectorQueryText(st->tbl, where[0] ? where : NULL, st->k,
											st->include, by_ids), es);
		ExplainPropertyText("Vector k-NN",
							psprintf("pushed down: %s, n_results %d%s", VectorOperatorName(st->metric),
									 st->k, st->offset ? psprintf(", skip %d", st->offset) : ""),
							es);
		if (es->verbose)
			ExplainPropertyText("Vector Query", query_text(fs, es), es);
	}
	else
	{
		ExplainPropertyText("Vector Request",
							VectorScanText(st->tbl, by_ids, where[0] ? where : NULL,
										   st->include), es);
		if (note[0])
			ExplainPropertyText("Vector k-NN", psprintf("computed locally: %s", note), es);
	}
	if (es->verbose && pushed[0])
		ExplainPropertyText("Vector Pushed Quals", pushed, es);
	if (es->analyze)
	{
		ExplainPropertyInteger("Vector Requests", NULL,
							   st->requests + (st->scan ? VectorScanRequests(st->scan) : 0), es);
		if (st->ran_local)
			ExplainPropertyText("Vector k-NN Run",
								"computed locally (buffered writes, distance changed, a zero vector in a cosine answer, or a query vector with NaN or Infinity)", es);
	}
}

/* ----------------------------------------------------------------
 *		Modification
 * ----------------------------------------------------------------
 */

/* AddForeignUpdateTargets: the id; the old row for DELETE ... RETURNING. */
static void
vectorAddForeignUpdateTargets(PlannerInfo *root, Index rtindex,
							  RangeTblEntry *target_rte, Relation target_relation)
{
	VectorTable *tbl = VectorLoadTable(RelationGetRelid(target_relation), GetUserId());

	PgpolyAddRowIdentity(root, rtindex, target_relation, tbl->id_att, vector_junk[0]);
	PgpolyAddOldRow(root, rtindex);
}

/* PlanForeignModify: for UPDATE, the assigned columns. */
static List *
vectorPlanForeignModify(PlannerInfo *root, ModifyTable *plan, Index resultRelation,
						int subplan_index)
{
	return PgpolyPlanModifyColumns(root, plan, resultRelation);
}

/* PgpolyLoadTable of the core's lifecycle. */
static void *
load_table(Oid relid, Oid userid)
{
	return VectorLoadTable(relid, userid);
}

/* PgpolyColumnField: column i of the table, if it maps to a metadata key. */
static bool
column_field(const void *t, int i, PgpolyFieldRef *ref)
{
	const VectorColumn *col = &((const VectorTable *) t)->cols[i];

	if (col->role != VCOL_FIELD)
		return false;
	*ref = (PgpolyFieldRef) {col->name, col->field, strlen(col->field), i + 1};
	return true;
}

/* Set up modify state for rinfo (also for COPY and tuple routing). */
static VectorModifyState *
begin_modify(ModifyTableState *mtstate, ResultRelInfo *rinfo, List *fdw_private)
{
	VectorModifyState *ms = PgpolyModifyBegin(sizeof(VectorModifyState), &VectorStore,
											  mtstate, rinfo, fdw_private,
											  500, VectorSendWrites);

	ms->tbl = PgpolyModifyTable(&ms->core, load_table);
	PgpolyModifyFindJunk(&ms->core, vector_junk, &ms->tbl->id_att);
	ms->core.written_row = true;
	PgpolyCheckWrittenFields(ms->tbl->relname, ms->tbl, ms->tbl->natts, column_field,
							 mtstate->operation, ms->core.assigned);
	if (ms->core.outbox)
		return ms;				/* no service now: the worker checks the dimension */
	/* read once per transaction where routes are by name (Qdrant) */
	ms->coll = VectorFreshCollection(ms->core.conn, ms->tbl, ms->tbl->create);
	if (ms->coll && ms->coll->dimension == 0)
	{
		/* It was empty when cached: it may have a dimension by now. */
		VectorForgetCollection(ms->core.conn, ms->tbl);
		ms->coll = VectorLookupCollection(ms->core.conn, ms->tbl, ms->tbl->create);
	}
	ms->dim = ms->coll ? ms->coll->dimension : 0;
	return ms;
}

/*
 * BeginForeignModify.  An UPDATE that may change ids (assigns the id, or
 * has BEFORE ROW UPDATE triggers; through a partitioned table, which may
 * move rows of other partitions into this one: check_moved_in) keeps
 * where its rows are: the store
 * holds one record per id, and a change of id is a delete of the old id
 * and an upsert of the new one, which overwrites what is there.  A row
 * moved onto the id of another row of the statement is an ERROR, as a
 * unique key's violation is (check_moves), instead of losing that row (a
 * swap of two ids would leave one record).
 */
static void
vectorBeginForeignModify(ModifyTableState *mtstate, ResultRelInfo *rinfo,
						 List *fdw_private, int subplan_index, int eflags)
{
	VectorModifyState *ms;

	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;
	ms = begin_modify(mtstate, rinfo, fdw_private);
	if (mtstate->operation == CMD_UPDATE &&
		(bms_is_member(ms->tbl->id_att, ms->core.assigned) ||
		 ms->core.old_row != InvalidAttrNumber ||
		 rinfo->ri_RootResultRelInfo != NULL))
		ms->moves = PgpolyMoves(GetMemoryChunkContext(ms));
}

/*
 * The jansson object of a jsonb metadata value (owned by the context).
 * jsonb's text is valid JSON: jansson refuses it only for a number it
 * cannot hold (an integer beyond 64 bits, as jsonb writes 1e300 in full).
 */
static json_t *
metadata_object(VectorTable *tbl, Datum value)
{
	Jsonb	   *jb = DatumGetJsonbP(value);
	char	   *text = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	json_error_t err;
	json_t	   *obj = json_loads(PgpolyServerToStoreCstr(text, true), 0, &err);	/* UTF-8 */

	if (obj == NULL && JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("metadata of foreign table \"%s\" holds a number out of range",
						tbl->relname),
				 errdetail("%s.", err.text),
				 errhint("A metadata number without a fractional part must fit in 64 bits (jsonb writes 1e300 as its 301 digits); store others as strings.")));
	if (obj != NULL)
		PgpolyJsonOwn(obj);
	if (obj == NULL || !json_is_object(obj))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("metadata of foreign table \"%s\" must be a JSON object of strings, numbers and booleans",
						tbl->relname)));
	return obj;
}

/*
 * ERROR (HV007) if the metadata object obj written by the metadata column
 * (its value: metadata, a jsonb Datum) holds the key of field column i
 * with another value than v, the column's (NULL: the column removes the
 * key): one of the two would be lost.  The same value, as in a row read
 * from the table and written back, is fine: the key's value is compared
 * as the column reads it (a text column reads 5 as '5', a timestamptz
 * column any form of the time).
 */
/* Error context: a metadata value read as a field column, to compare them. */
static void
metadata_key_context(void *arg)
{
	VectorColumn *col = arg;

	errcontext("metadata key \"%s\" read as column \"%s\", which also writes it",
			   col->field, col->name);
}

static void
check_metadata_key(VectorTable *tbl, json_t *obj, Datum metadata, int i, json_t *v)
{
	json_t	   *old = json_object_get(obj, tbl->cols[i].field);

	if (old == NULL || (v != NULL && json_equal(old, v)))
		return;
	if (v != NULL && !json_is_object(old) && !json_is_array(old))
	{
		bool		isnull;
		Datum		read;
		StringInfoData buf;
		json_t	   *as_read;
		ErrorContextCallback cb = {error_context_stack, metadata_key_context,
		&tbl->cols[i]};

		error_context_stack = &cb;
		read = VectorMetadataFieldValue(&tbl->cols[i], metadata, &isnull);
		error_context_stack = cb.previous;
		initStringInfo(&buf);
		PgpolyJsonAppendValue(&buf, read, tbl->cols[i].typid, isnull);
		as_read = json_loads(PgpolyServerToStoreCstr(buf.data, true), JSON_DECODE_ANY, NULL);
		if (as_read != NULL)
			PgpolyJsonOwn(as_read);
		if (as_read != NULL && json_equal(as_read, v))
			return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_COLUMN_NAME),
			 errmsg("metadata key \"%s\" of foreign table \"%s\" is written by both column \"%s\" and the metadata column with different values",
					tbl->cols[i].field, tbl->relname, tbl->cols[i].name),
			 errhint("Leave the key out of the metadata value, or write it through column \"%s\" only.",
					 tbl->cols[i].name)));
}

/*
 * The new row's metadata object (owned by the current memory context):
 * the metadata column, then the mapped fields (for UPDATE, a field not
 * assigned does not override an assigned metadata column).
 */
static json_t *
new_metadata(VectorTable *tbl, Datum *values, bool *nulls, Bitmapset *updated)
{
	json_t	   *obj;
	const char *key;
	json_t	   *v;
	bool		meta_updated = updated && tbl->meta_att &&
		bms_is_member(tbl->meta_att, updated);
	bool		meta_written = tbl->meta_att && !nulls[tbl->meta_att - 1] &&
		(updated == NULL || meta_updated);

	if (tbl->meta_att && !nulls[tbl->meta_att - 1])
		obj = metadata_object(tbl, values[tbl->meta_att - 1]);
	else
		obj = PgpolyJsonOwn(PgpolyJsonNewObject());
	for (int i = 0; i < tbl->natts; i++)
	{
		StringInfoData buf;
		bool		both = meta_written && (updated == NULL || bms_is_member(i + 1, updated));

		if (tbl->cols[i].role != VCOL_FIELD)
			continue;
		if (nulls[i])
		{
			/* UPDATE ... SET field = NULL removes the key. */
			if (updated && bms_is_member(i + 1, updated))
			{
				if (both)
					check_metadata_key(tbl, obj, values[tbl->meta_att - 1], i, NULL);
				json_object_del(obj, tbl->cols[i].field);
			}
			continue;
		}
		if (meta_updated && !bms_is_member(i + 1, updated))
			continue;
		initStringInfo(&buf);
		PgpolyJsonAppendValue(&buf, values[i], tbl->cols[i].typid, false);
		v = json_loads(PgpolyServerToStoreCstr(buf.data, true), JSON_DECODE_ANY, NULL);
		if (v == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("value of column \"%s\" cannot be stored as metadata", tbl->cols[i].name)));
		/* Owned before check_metadata_key() can raise its ERROR. */
		PgpolyJsonOwn(v);
		if (both)
			check_metadata_key(tbl, obj, values[tbl->meta_att - 1], i, v);
		json_object_set(obj, tbl->cols[i].field, v);
	}
	json_object_foreach(obj, key, v)
		if (json_is_object(v) || json_is_array(v))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("metadata key \"%s\" of foreign table \"%s\" has a nested value",
						key, tbl->relname),
				 errhint("Chroma metadata values are strings, numbers and booleans.")));
	return obj;
}

/* JSON text of a jansson object (shortest reals), or NULL if empty. */
static char *
json_text(json_t *obj, MemoryContext cxt)
{
	StringInfoData buf;

	if (json_object_size(obj) == 0)
		return NULL;
	initStringInfo(&buf);
	VectorAppendJson(&buf, obj);
	return MemoryContextStrdup(cxt, buf.data);
}

/*
 * JSON text of the metadata object obj as the service keeps it (see
 * json_text): without its null-valued keys.  A null is no key: Chroma
 * stores none (and removes the key from a record it merges into), a column
 * mapped to the key reads NULL either way.  Qdrant, which would keep the
 * null, gets the same payload, so both read back what RETURNING shows.
 */
static char *
stored_metadata(json_t *obj, MemoryContext cxt)
{
	json_t	   *copy = PgpolyJsonOwn(json_copy(obj));
	const char *key;
	json_t	   *v;
	void	   *tmp;

	json_object_foreach_safe(copy, tmp, key, v)
		if (json_is_null(v))
		json_object_del(copy, key);
	return json_text(copy, cxt);
}

/*
 * The metadata keys of the table's field columns: those an upsert removes
 * when its column is NULL.  Chroma merges an upsert's keys into an existing
 * record's, so without a null for each the record would keep the value a
 * NULL column replaced, unlike what the transaction read (and a sync or
 * outbox delivering the row would leave the old value in the collection).
 */
static List *
field_keys(VectorTable *tbl)
{
	List	   *keys = NIL;

	for (int i = 0; i < tbl->natts; i++)
		if (tbl->cols[i].role == VCOL_FIELD)
			keys = lappend(keys, tbl->cols[i].field);
	return keys;
}

/* Build the write of a new row (kind VW_UPSERT, VW_INSERT or VW_UPDATE). */
static VectorWrite *
row_write(VectorModifyState *ms, VectorWriteKind kind, Datum *values, bool *nulls,
		  List *old_keys)
{
	VectorTable *tbl = ms->tbl;
	VectorWrite *w = palloc0(sizeof(VectorWrite));
	json_t	   *meta;
	MemoryContext cxt = CurrentMemoryContext;
	ListCell   *lc;

	w->kind = kind;
	w->tbl = tbl;
	if (nulls[tbl->id_att - 1])
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("id of a record of foreign table \"%s\" must not be NULL", tbl->relname)));
	w->row.id = TextDatumGetCString(values[tbl->id_att - 1]);
	if (tbl->emb_att == 0 || nulls[tbl->emb_att - 1])
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("record \"%s\" of foreign table \"%s\" has no embedding",
						w->row.id, tbl->relname),
				 errhint("Every record written to a vector collection needs an embedding.")));
	w->row.emb = VectorDatumFloats(values[tbl->emb_att - 1],
								   tbl->cols[tbl->emb_att - 1].typid, &w->row.dim);
	if (ms->dim > 0 && w->row.dim != ms->dim)
		VectorDimensionError(tbl, w->row.id, w->row.dim, ms->dim, NULL);
	ms->dim = w->row.dim;
	if (tbl->doc_att && !nulls[tbl->doc_att - 1])
		w->row.document = TextDatumGetCString(values[tbl->doc_att - 1]);

	MemoryContextSwitchTo(ms->core.row_cxt);
	meta = new_metadata(tbl, values, nulls, kind == VW_UPDATE ? ms->core.updated : NULL);
	w->row.metadata = stored_metadata(meta, cxt);
	/* Chroma's update and upsert merge keys: send null for the removed ones. */
	foreach(lc, old_keys)
		if (json_object_get(meta, lfirst(lc)) == NULL)
		json_object_set_new(meta, lfirst(lc), json_null());
	w->send_metadata = json_text(meta, cxt);
	MemoryContextSwitchTo(cxt);
	VectorCheckWrite(w);
	return w;
}

/*
 * PgpolyWrittenRow: the row a read of the table finds after write (a
 * VectorWrite: the record it leaves), so that the metadata column and the
 * columns mapped to its keys agree.
 */
static void
written_row(PgpolyModifyState *core, void *write, Datum *values, bool *nulls)
{
	VectorRowToValues(((VectorModifyState *) core)->tbl, &((VectorWrite *) write)->row,
					  true, NULL, values, nulls);
}

/* Hand a write to the table's writer (the caller ends the row). */
static void
queue_write(VectorModifyState *ms, VectorWrite *w)
{
	PgpolyWriterAdd(&ms->core.writer, w);
}

/*
 * An id of an ON CONFLICT DO NOTHING batch: whether it exists in the
 * collection now, and whether an earlier row of the batch inserted it.
 */
typedef struct BatchId
{
	PgpolyKeyRef id;			/* hash key (PgpolyKeyTable): the row's id */
	bool		remote;
	bool		inserted;
} BatchId;

/*
 * ON CONFLICT DO NOTHING: the entry of each row's id (NULL if it has none)
 * in a table of the batch's ids, and whether each exists in the collection
 * now, asked in one request (none exists before the collection does).  The
 * ids are anyone's: a seeded key table (keyhash.c) keeps both this and the
 * rows' later checks linear, whatever ids the rows or the service bring.
 * Everything lives in the current (row) memory context.
 */
static void
ids_in_collection(VectorModifyState *ms, TupleTableSlot **slots, int n,
				  BatchId **ids)
{
	VectorTable *tbl = ms->tbl;
	VectorCollection *coll = VectorLookupCollection(ms->core.conn, tbl, true);
	HTAB	   *batch = PgpolyKeyTable("pgpoly vector batch ids", sizeof(BatchId),
									   CurrentMemoryContext);
	List	   *wanted = NIL;
	ListCell   *lc;

	for (int i = 0; i < n; i++)
	{
		PgpolyKeyRef ref;
		bool		found;

		slot_getallattrs(slots[i]);
		ids[i] = NULL;
		if (slots[i]->tts_isnull[tbl->id_att - 1])
			continue;
		ref.key = TextDatumGetCString(slots[i]->tts_values[tbl->id_att - 1]);
		ref.len = strlen(ref.key);
		ids[i] = hash_search(batch, &ref, HASH_ENTER, &found);
		if (found)
			continue;			/* asked once */
		ids[i]->remote = ids[i]->inserted = false;
		wanted = lappend(wanted, (char *) ref.key);
	}
	if (coll == NULL || wanted == NIL)
		return;
	foreach(lc, VectorGetByIds(ms->core.conn, tbl, coll, wanted, NULL, 0))
	{
		VectorRow  *row = lfirst(lc);
		BatchId    *e = PgpolyKeyTableFind(batch, row->id, strlen(row->id));

		if (e)
			e->remote = true;
	}
}

/*
 * Whether the row of batch id e conflicts: its id exists in the collection,
 * as the transaction's buffered writes leave it (transactional: ms->ov
 * holds them, this statement's included), or as an earlier row of the
 * batch inserted it.
 */
static bool
row_conflicts(VectorModifyState *ms, BatchId *e)
{
	VectorWrite *w;

	if (e == NULL)
		return false;
	if (e->inserted)
		return true;
	w = ms->ov ? VectorOverlayLatest(ms->ov, e->id.key) : NULL;
	return w ? w->kind != VW_DELETE : e->remote;
}

/*
 * PgpolyInsertRows: INSERT of n rows, upserts.  ON CONFLICT DO NOTHING
 * skips the rows whose id exists and sends the others as inserts that the
 * service does not apply over an existing record.
 */
static void
insert_rows(PgpolyModifyState *core, EState *estate, TupleTableSlot **slots, int n,
			bool *inserted)
{
	VectorModifyState *ms = (VectorModifyState *) core;
	BatchId   **ids = palloc0(sizeof(BatchId *) * n);

	if (ms->core.do_nothing)
	{
		if (ms->core.transactional && ms->ov == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(GetMemoryChunkContext(ms));

			ms->ov = VectorOverlayBuild(PgpolyPendingWrites(ms->core.conn, ms->core.relid));
			MemoryContextSwitchTo(old);
		}
		ids_in_collection(ms, slots, n, ids);
	}
	for (int i = 0; i < n; i++)
	{
		MemoryContext old;
		VectorWrite *w;

		inserted[i] = !(ms->core.do_nothing && row_conflicts(ms, ids[i]));
		if (!inserted[i])
			continue;
		slot_getallattrs(slots[i]);
		old = MemoryContextSwitchTo(PgpolyWriterContext(&ms->core.writer));
		w = row_write(ms, ms->core.do_nothing ? VW_INSERT : VW_UPSERT,
					  slots[i]->tts_values, slots[i]->tts_isnull,
					  ms->core.do_nothing ? NIL : field_keys(ms->tbl));
		MemoryContextSwitchTo(old);
		if (ids[i])
			ids[i]->inserted = true;
		if (ms->core.do_nothing && ms->core.transactional)
		{
			old = MemoryContextSwitchTo(GetMemoryChunkContext(ms));
			VectorOverlayAdd(&ms->ov, w);
			MemoryContextSwitchTo(old);
		}
		PgpolyReturnWrittenRow(&ms->core, estate, slots[i], written_row, w);
		queue_write(ms, w);
		PgpolyWriterEndRow(&ms->core.writer);
	}
	if (ms->core.do_nothing && !ms->core.transactional)
		PgpolyWriterFlush(&ms->core.writer);
}

static void check_moved_in(VectorModifyState *ms, TupleTableSlot **slots, int n);

/* ExecForeignInsert: NULL when ON CONFLICT DO NOTHING skipped the row. */
static TupleTableSlot *
vectorExecForeignInsert(EState *estate, ResultRelInfo *rinfo,
						TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	check_moved_in(rinfo->ri_FdwState, &slot, 1);
	return PgpolyExecInsert(rinfo->ri_FdwState, estate, slot, insert_rows);
}

/*
 * ExecForeignBatchInsert: the rows of a batch at once; ON CONFLICT DO
 * NOTHING returns the inserted ones.
 */
static TupleTableSlot **
vectorExecForeignBatchInsert(EState *estate, ResultRelInfo *rinfo,
							 TupleTableSlot **slots, TupleTableSlot **planSlots,
							 int *numSlots)
{
	check_moved_in(rinfo->ri_FdwState, slots, *numSlots);
	return PgpolyExecBatchInsert(rinfo->ri_FdwState, estate, slots, numSlots,
								 insert_rows);
}

/* The old id from planSlot. */
static char *
old_id(VectorModifyState *ms, TupleTableSlot *planSlot)
{
	bool		isnull;
	Datum		d = PgpolyModifyJunk(&ms->core, 0, planSlot, &isnull);

	if (isnull)
		elog(ERROR, "pgpoly_vector: NULL row identity");
	return TextDatumGetCString(d);
}

/* The keys of the old row's metadata column (UPDATE), in the row context. */
static List *
old_metadata_keys(VectorModifyState *ms, TupleTableSlot *planSlot)
{
	bool		isnull;
	Datum		d;
	json_t	   *obj;
	const char *key;
	json_t	   *v;
	List	   *keys = NIL;

	if (ms->core.junk_row == InvalidAttrNumber || ms->tbl->meta_att == 0)
		return NIL;
	d = ExecGetJunkAttribute(planSlot, ms->core.junk_row, &isnull);
	if (isnull)
		return NIL;
	d = GetAttributeByNum(DatumGetHeapTupleHeader(d), ms->tbl->meta_att, &isnull);
	if (isnull)
		return NIL;
	obj = metadata_object(ms->tbl, d);
	json_object_foreach(obj, key, v)
		keys = lappend(keys, pstrdup(key));
	return keys;
}

/* A delete of id. */
static VectorWrite *
delete_write(VectorModifyState *ms, char *id)
{
	VectorWrite *w = palloc0(sizeof(VectorWrite));

	w->kind = VW_DELETE;
	w->tbl = ms->tbl;
	w->row.id = pstrdup(id);
	return w;
}

/* ERROR 23505: a row of the UPDATE moved onto the record at id (how). */
static void
moved_onto_error(VectorModifyState *ms, PgpolyMoveCheck how, const char *id)
{
	PgpolyMovedOntoError(ms->tbl->relname, ms->tbl->provider->label, how,
						 psprintf("id \"%s\"", PgpolyPrintable(id, strlen(id), 200)));
}

/*
 * For an UPDATE that may change ids: ERROR if the row at oldid was
 * overwritten by a row the statement moved onto it, or if it moves to id
 * onto a row the statement met (PgpolyMoveRow), before anything of it is
 * sent.
 */
static void
check_moves(VectorModifyState *ms, const char *oldid, const char *id)
{
	PgpolyMoveCheck how;
	const char *at;

	if (ms->moves == NULL)
		return;
	how = PgpolyMoveRow(ms->moves, GetMemoryChunkContext(ms), oldid, strlen(oldid),
						id, strlen(id));
	if (how == PGPOLY_MOVE_OK)
		return;
	at = how == PGPOLY_MOVED_ONTO_OLD ? oldid : id;
	moved_onto_error(ms, how, at);
}

/* Rows an UPDATE moves into the collection it updates (PgpolyModifyMovedIn). */
static void
check_moved_in(VectorModifyState *ms, TupleTableSlot **slots, int n)
{
	PgpolyModifyMovedIn(&ms->core, ms->moves, ms->tbl->id_att, slots, n,
						ms->tbl->relname, ms->tbl->provider->label, "id");
}

/* ExecForeignUpdate: update in place, or delete + upsert when id changes. */
static TupleTableSlot *
vectorExecForeignUpdate(EState *estate, ResultRelInfo *rinfo,
						TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	VectorModifyState *ms = rinfo->ri_FdwState;
	MemoryContext old = PgpolyModifyRow(&ms->core);
	char	   *oldid = old_id(ms, planSlot);
	List	   *oldkeys;
	VectorWrite *w;

	if (PgpolyModifyAgain(&ms->core, planSlot))
	{
		MemoryContextSwitchTo(old);
		return NULL;			/* a join met the row again */
	}
	PgpolyModifyCheckRow(&ms->core, estate, slot, CMD_UPDATE);

	slot_getallattrs(slot);
	/* A mapped column set to NULL removes its key. */
	oldkeys = list_concat(old_metadata_keys(ms, planSlot), field_keys(ms->tbl));
	MemoryContextSwitchTo(PgpolyWriterContext(&ms->core.writer));
	w = row_write(ms, VW_UPDATE, slot->tts_values, slot->tts_isnull, oldkeys);
	check_moves(ms, oldid, w->row.id);
	if (strcmp(w->row.id, oldid) != 0)
	{
		VectorWrite *d = delete_write(ms, oldid);

		/*
		 * an upsert of the new id, its NULL columns' keys removed as well;
		 * the old record must still be there, or the upsert would bring a
		 * record another client deleted back under the new id
		 */
		d->must_exist = true;
		w->kind = VW_UPSERT;
		queue_write(ms, d);
	}
	MemoryContextSwitchTo(old);
	PgpolyReturnWrittenRow(&ms->core, estate, slot, written_row, w);
	queue_write(ms, w);
	PgpolyWriterEndRow(&ms->core.writer);
	PgpolyModifyOutbox(&ms->core, CMD_UPDATE, slot, planSlot);
	return slot;
}

/* ExecForeignDelete: by id; RETURNING gets the old row. */
static TupleTableSlot *
vectorExecForeignDelete(EState *estate, ResultRelInfo *rinfo,
						TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	VectorModifyState *ms = rinfo->ri_FdwState;
	MemoryContext old = PgpolyModifyRow(&ms->core);
	char	   *id = old_id(ms, planSlot);
	VectorWrite *w;

	if (PgpolyModifyAgain(&ms->core, planSlot))
	{
		MemoryContextSwitchTo(old);
		return NULL;			/* a join met the row again */
	}

	MemoryContextSwitchTo(PgpolyWriterContext(&ms->core.writer));
	w = delete_write(ms, id);
	MemoryContextSwitchTo(old);
	queue_write(ms, w);
	PgpolyWriterEndRow(&ms->core.writer);
	PgpolyModifyOutbox(&ms->core, CMD_DELETE, NULL, planSlot);
	PgpolyModifyOldRow(&ms->core, slot, planSlot, rinfo->ri_RelationDesc);
	return slot;
}

/* EndForeignModify: send what immediate mode still holds. */
static void
vectorEndForeignModify(EState *estate, ResultRelInfo *rinfo)
{
	PgpolyModifyEnd(rinfo->ri_FdwState);
}

/* BeginForeignInsert: COPY FROM and tuple routing. */
static void
vectorBeginForeignInsert(ModifyTableState *mtstate, ResultRelInfo *rinfo)
{
	begin_modify(mtstate, rinfo, NIL);
}

/* EndForeignInsert. */
static void
vectorEndForeignInsert(EState *estate, ResultRelInfo *rinfo)
{
	vectorEndForeignModify(estate, rinfo);
}

/* GetForeignModifyBatchSize: batch_size (default 500), see fdwutil.c. */
static int
vectorGetForeignModifyBatchSize(ResultRelInfo *rinfo)
{
	return PgpolyModifyBatchSize(rinfo, 500);
}

/* IsForeignRelUpdatable: INSERT, UPDATE and DELETE. */
static int
vectorIsForeignRelUpdatable(Relation rel)
{
	return (1 << CMD_INSERT) | (1 << CMD_UPDATE) | (1 << CMD_DELETE);
}

/* ExplainForeignModify: the request each batch of writes sends, and when. */
static void
vectorExplainForeignModify(ModifyTableState *mtstate, ResultRelInfo *rinfo,
						   List *fdw_private, int subplan_index, ExplainState *es)
{
	Oid			relid = RelationGetRelid(rinfo->ri_RelationDesc);
	ForeignTable *ft = GetForeignTable(relid);
	PgpolyWriteMode mode = PgpolyTableWriteMode(ft->options);
	int			batch = (int) PgpolyGetIntOption(ft->options, "batch_size", 500);
	VectorTable *tbl = VectorLoadTable(relid, GetUserId());
	VectorWriteKind kind = mtstate->operation == CMD_DELETE ? VW_DELETE :
		mtstate->operation == CMD_UPDATE ? VW_UPDATE :
		((ModifyTable *) mtstate->ps.plan)->onConflictAction == ONCONFLICT_NOTHING ?
		VW_INSERT : VW_UPSERT;

	if (mode != PGPOLY_WRITE_OUTBOX)	/* the worker delivers them: outbox.c */
		ExplainPropertyText("Vector Write",
							VectorServerProvider(GetForeignServer(ft->serverid))->write_text(tbl, kind),
							es);

	ExplainPropertyText("Vector Write Mode",
						mode == PGPOLY_WRITE_TRANSACTIONAL ?
						psprintf("transactional (upsert/update/delete batches of %d at COMMIT)", batch) :
						mode == PGPOLY_WRITE_OUTBOX ?
						"outbox (queued at COMMIT, delivered by the sync worker)" :
						psprintf("immediate (batches of %d)", batch), es);
}

/* ----------------------------------------------------------------
 *		IMPORT FOREIGN SCHEMA
 * ----------------------------------------------------------------
 */

/* ImportForeignSchema: one table per collection of the server's database. */
static List *
vectorImportForeignSchema(ImportForeignSchemaStmt *stmt, Oid serverOid)
{
	ForeignServer *server = GetForeignServer(serverOid);
	PgpolyConnection *conn;
	List	   *result = NIL;
	ListCell   *lc;

	PgpolyRejectImportOptions(stmt->options);
	conn = PgpolyGetConnection(&VectorStore, server,
							   PgpolyGetUserMapping(GetUserId(), serverOid));
	foreach(lc, VectorListCollections(conn))
	{
		VectorCollection *c = lfirst(lc);
		StringInfoData buf;

		if (!IsImportableForeignTable(c->name, stmt))
			continue;
		initStringInfo(&buf);
		appendStringInfo(&buf,
						 "CREATE FOREIGN TABLE %s.%s (id text, embedding real[], document text, "
						 "metadata jsonb, _distance double precision) SERVER %s "
						 "OPTIONS (collection %s, distance %s)",
						 quote_identifier(stmt->local_schema), quote_identifier(c->name),
						 quote_identifier(server->servername), quote_literal_cstr(c->name),
						 quote_literal_cstr(VectorDistanceName(c->distance)));
		result = lappend(result, buf.data);
	}
	return result;
}

/* ----------------------------------------------------------------
 *		Handler
 * ----------------------------------------------------------------
 */

/* The handler: the FDW routine table. */
Datum
pgpoly_vector_handler(PG_FUNCTION_ARGS)
{
	FdwRoutine *r = makeNode(FdwRoutine);

	r->GetForeignRelSize = vectorGetForeignRelSize;
	r->GetForeignPaths = vectorGetForeignPaths;
	r->GetForeignPlan = vectorGetForeignPlan;
	r->GetForeignUpperPaths = vectorGetForeignUpperPaths;
	r->BeginForeignScan = vectorBeginForeignScan;
	r->IterateForeignScan = vectorIterateForeignScan;
	r->ReScanForeignScan = vectorReScanForeignScan;
	r->EndForeignScan = vectorEndForeignScan;
	r->ExplainForeignScan = vectorExplainForeignScan;
	r->AddForeignUpdateTargets = vectorAddForeignUpdateTargets;
	r->PlanForeignModify = vectorPlanForeignModify;
	r->BeginForeignModify = vectorBeginForeignModify;
	r->ExecForeignInsert = vectorExecForeignInsert;
	r->ExecForeignBatchInsert = vectorExecForeignBatchInsert;
	r->GetForeignModifyBatchSize = vectorGetForeignModifyBatchSize;
	r->ExecForeignUpdate = vectorExecForeignUpdate;
	r->ExecForeignDelete = vectorExecForeignDelete;
	r->EndForeignModify = vectorEndForeignModify;
	r->BeginForeignInsert = vectorBeginForeignInsert;
	r->EndForeignInsert = vectorEndForeignInsert;
	r->IsForeignRelUpdatable = vectorIsForeignRelUpdatable;
	r->ExplainForeignModify = vectorExplainForeignModify;
	r->ImportForeignSchema = vectorImportForeignSchema;
	PG_RETURN_POINTER(r);
}

/* Whether relid is a foreign table of a pgpoly_vector server. */
bool
VectorIsVectorTable(Oid relid)
{
	return PgpolyIsForeignTableOf(relid, vectorGetForeignRelSize);
}

/*
 * PgpolyStore.conflict_columns: what an INSERT conflicts on, the record's
 * id.
 */
List *
VectorConflictColumns(Oid relid)
{
	return list_make1_int(VectorLoadTable(relid, GetUserId())->id_att);
}
