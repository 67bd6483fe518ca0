/*-------------------------------------------------------------------------
 *
 * elastic_fdw.c
 *		  pgpoly_elastic: options, planning, scan and modify callbacks, EXPLAIN.
 *
 * Planning splits the restriction clauses into those Elasticsearch
 * evaluates exactly (elastic_query.c) and local ones.  On top of the
 * pushed quals it pushes:
 *	- ORDER BY on _score (with a full-text query) or sortable columns, as
 *	  the "sort" of the request (a path with the query's pathkeys);
 *	- LIMIT (+ OFFSET, fetched then skipped by the Limit node) as "size",
 *	  only for a single-table SELECT whose quals were all pushed and whose
 *	  ORDER BY, if any, is pushed too;
 *	- count(*) without GROUP BY as a _count request (UPPERREL_GROUP_AGG).
 * None of these is pushed while the transaction has buffered writes to the
 * table: the scan then overlays them and rechecks the pushed quals locally.
 * Scores are requested only when _score is used.
 *
 * The scan of the target of an UPDATE or DELETE hands what it read of
 * each row, by _id, to the modification through its ResultRelInfo
 * (target_reads): the concrete index the document is in, which every hit
 * carries as _index (the table's index option may be an alias, a comma
 * list or a pattern: a write to an alias goes to its write index,
 * aliases.html, whatever index the document is in, and a write to a list
 * or a pattern fails), the document's custom routing, which every hit of a
 * document indexed with one carries as _routing (mapping-routing-field.html),
 * and, when the modification is transactional and its write depends on
 * what it reads (reads_for_write), the version the scan asked for
 * (_seq_no, _primary_term).  The bulk action then carries the routing
 * ("routing" of the action metadata, docs-bulk.html: without it a partial
 * update misses the document, a delete deletes nothing, a whole-document
 * "index" creates a second document with the same _id on another shard),
 * goes to the document's index, and is sent on the condition that the
 * document still has that version (elastic_bulk.c).  No request asks for
 * more: plain SELECTs do not change.  A document id the scan reads in two
 * indices or with two routings names two documents the write, which gets
 * the _id only, cannot tell apart: an ERROR, unless the plan's local quals
 * (when not volatile) reject all but one of them.
 *
 * No network I/O happens at plan time except the mapping lookup for text
 * columns (elastic_conn.c) and use_remote_estimate.
 *
 * fdw/elastic_fdw.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/reloptions.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_foreign_table.h"
#include "catalog/pg_type.h"
#include "catalog/pg_user_mapping.h"
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
#include "optimizer/paths.h"
#include "optimizer/planmain.h"
#include "optimizer/restrictinfo.h"
#include "optimizer/tlist.h"
#include "parser/parsetree.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"
#include "utils/typcache.h"

#include "elastic.h"

/* Rows assumed for an index never measured. */
#define ELASTIC_DEFAULT_ROWS	1000.0
#define ELASTIC_REQUEST_COST	25.0
#define ELASTIC_PER_ROW_COST	0.01

const PgpolyOption ElasticOptions[] = {
	{"url", ForeignServerRelationId, PGPOLY_OPT_URL, 0, 0, NULL, false},
	{"connect_timeout_ms", ForeignServerRelationId, PGPOLY_OPT_INT, 1, INT_MAX, NULL, false},
	{"timeout_ms", ForeignServerRelationId, PGPOLY_OPT_INT, 1, INT_MAX, NULL, false},
	{"ca_file", ForeignServerRelationId, PGPOLY_OPT_FILE, 0, 0, NULL, false},
	{"verify_tls", ForeignServerRelationId, PGPOLY_OPT_BOOL, 0, 0, NULL, false},
	{"username", UserMappingRelationId, PGPOLY_OPT_STRING, 1, 0, NULL, false},
	{"password", UserMappingRelationId, PGPOLY_OPT_STRING, 0, 0, NULL, true},
	{"api_key", UserMappingRelationId, PGPOLY_OPT_HEADER, 1, 0, NULL, true},
	{"password_required", UserMappingRelationId, PGPOLY_OPT_BOOL, 0, 0, NULL, false},
	{"index", ForeignTableRelationId, PGPOLY_OPT_STRING, 1, 0, NULL, false},
	{"fetch_size", ForeignTableRelationId, PGPOLY_OPT_INT, 1, ELASTIC_MAX_RESULT_WINDOW, NULL, false},
	{"batch_size", ForeignTableRelationId, PGPOLY_OPT_INT, 1, 1000000, NULL, false},
	{"refresh", ForeignTableRelationId, PGPOLY_OPT_ENUM, 0, 0, "false,true,wait_for", false},
	{"write_mode", ForeignTableRelationId, PGPOLY_OPT_ENUM, 0, 0, "transactional,immediate,outbox", false},
	{"use_remote_estimate", ForeignTableRelationId, PGPOLY_OPT_BOOL, 0, 0, NULL, false},
	{"field", AttributeRelationId, PGPOLY_OPT_STRING, 1, 0, NULL, false},
	{NULL}
};

/* fdw_private of the ForeignScan plan, by position. */
enum ElasticPrivate
{
	EPRIV_MODE,					/* Integer: EMODE_* */
	EPRIV_CONDS,				/* conds (ElasticCondsToList) */
	EPRIV_SORTS,				/* sorts (ElasticSortsToList) */
	EPRIV_INCLUDES,				/* List of String */
	EPRIV_FLAGS,				/* Integer: EFLAG_* */
	EPRIV_LIMIT,				/* Integer: rows to fetch, -1 */
	EPRIV_PUSHED,				/* String: pushed clauses, deparsed */
	EPRIV_FIELDS,				/* List of String: the column fields whose
								 * mapping the conds and sorts rely on */
	EPRIV_FACTS					/* String: what the mapping said of them
								 * (ElasticMappingFacts) */
};

#define EMODE_SCAN	0
#define EMODE_COUNT 1

#define EFLAG_SOURCE_ALL	0x01
#define EFLAG_NEED_SOURCE	0x02
#define EFLAG_NEED_SCORE	0x04
#define EFLAG_FIELDS_READ	0x08	/* output or local quals read fields */
#define EFLAG_SEQ_NO		0x10	/* hits carry _seq_no and _primary_term */
#define EFLAG_WHOLE_SOURCE	0x20	/* includes read from the whole _source */

/* Planner state of an Elasticsearch base relation. */
typedef struct ElasticRelInfo
{
	ElasticTable *tbl;
	Oid			userid;
	List	   *conds;			/* ElasticCond * */
	List	   *exprs;			/* their values: fdw_exprs */
	List	   *remote;			/* RestrictInfo pushed */
	List	   *local;			/* RestrictInfo kept local */
	bool		has_query;		/* a _query cond was pushed */
	bool		written;		/* the transaction wrote to the table */
	Bitmapset  *attrs_used;		/* offset by FirstLowInvalidHeapAttributeNumber */
	Bitmapset  *attrs_checked;	/* columns of pushed clauses, read to check */
} ElasticRelInfo;

/* Executor state of a scan. */
typedef struct ElasticScanState
{
	PgpolyScanState core;		/* user, connection, memory (lifecycle.c) */
	ElasticTable *tbl;
	int			mode;
	ElasticQuerySpec spec;
	List	   *exprs;			/* ExprState of fdw_exprs */
	ElasticParamValue *params;
	ExprState  *recheck;		/* pushed quals, for overlay rows */
	bool		recheck_all;	/* the mapping changed since planning: the
								 * pushed quals are checked on every row */
	ElasticScan *scan;
	bool		count_done;
	int			requests;		/* of finished scans */
	const char *paging;
	struct HTAB *reads;			/* the scan of an UPDATE's or DELETE's
								 * target: its ReadEntry map (in the modify
								 * state's memory), else NULL */
	MemoryContext reads_cxt;	/* that memory */
	bool		filter_reads;	/* the plan's local quals (non-volatile)
								 * decide which rows are noted in reads */
	char	   *last_index;		/* the index and routing noted last (in */
	char	   *last_routing;	/* reads_cxt), shared by the next entries
								 * that have the same */
} ElasticScanState;

/* The identity column of the old row (core.junk[0]): _id. */
static const char *const elastic_junk[] = {"pgpoly_id", NULL};

/* Executor state of INSERT/UPDATE/DELETE. */
typedef struct ElasticModifyState
{
	PgpolyModifyState core;		/* user, connection, writer, junk columns */
	ElasticTable *tbl;
	ElasticOverlay *ov;			/* ON CONFLICT DO NOTHING, transactional:
								 * the buffered writes, by id */
	HTAB	   *sent;			/* ON CONFLICT DO NOTHING, sent at once:
								 * the ids of the statement's rows sent */
	HTAB	   *reads;			/* ReadEntry by id, filled by the scan of
								 * the target */
	bool		versioned;		/* that scan read versions (EFLAG_SEQ_NO):
								 * the writes are sent on them */
	HTAB	   *moves;			/* UPDATE through a partitioned table: its
								 * rows by _id (PgpolyMoves), or NULL */
} ElasticModifyState;

/* What the scan of a modification's target read of a document. */
typedef struct ReadEntry
{
	PgpolyKeyRef id;			/* hash key (PgpolyKeyTable) */
	char	   *index;			/* its concrete index, or NULL: the
								 * table's (a row of this transaction's
								 * INSERT) */
	char	   *routing;		/* its custom routing, or NULL */
	int64		seq_no;			/* its version, or -1: see set_read */
	int64		primary_term;
} ReadEntry;

PG_FUNCTION_INFO_V1(pgpoly_elastic_handler);
PG_FUNCTION_INFO_V1(pgpoly_elastic_validator);

/*
 * ERROR unless a column's field option is a path of non-empty keys: it is
 * split at dots, and an empty key ("a.", ".a", "a..b") names a field
 * Elasticsearch refuses and that a read of the column could never find.
 */
static void
check_field_path(List *options)
{
	const char *field = PgpolyGetOption(options, "field", NULL);
	size_t		len = field ? strlen(field) : 0;

	if (field == NULL || len == 0)
		return;					/* absent, or refused as empty */
	if (field[0] == '.' || field[len - 1] == '.' || strstr(field, "..") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"field\": \"%s\"", field),
				 errdetail("A field path is split at dots and none of its keys may be empty."),
				 errhint("Name the field as Elasticsearch does, e.g. \"address.city\".")));
}

/* Validator of pgpoly_elastic options (CREATE/ALTER of every object). */
Datum
pgpoly_elastic_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));

	PgpolyValidateOptions(ElasticOptions, options, PG_GETARG_OID(1));
	if (PG_GETARG_OID(1) == AttributeRelationId)
		check_field_path(options);
	PG_RETURN_VOID();
}

/* ----------------------------------------------------------------
 *		Table descriptor
 * ----------------------------------------------------------------
 */

/* Complain about a reserved column of the wrong type. */
static void
bad_reserved(ElasticTable *tbl, const char *name, const char *want)
{
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
			 errmsg("column \"%s\" of foreign table \"%s\" must be of type %s",
					name, tbl->relname, want)));
}

/* Role of a column from its name, checking reserved columns' types. */
static ElasticColRole
column_role(ElasticTable *tbl, const char *name, Oid typid)
{
	if (strcmp(name, "_id") == 0)
	{
		if (typid != TEXTOID && typid != VARCHAROID)
			bad_reserved(tbl, name, "text");
		return ECOL_ID;
	}
	if (strcmp(name, "_score") == 0)
	{
		if (typid != FLOAT4OID && typid != FLOAT8OID)
			bad_reserved(tbl, name, "real");
		return ECOL_SCORE;
	}
	if (strcmp(name, "_query") == 0)
	{
		if (typid != TEXTOID)
			bad_reserved(tbl, name, "text");
		return ECOL_QUERY;
	}
	if (strcmp(name, "_source") == 0)
	{
		if (typid != JSONBOID)
			bad_reserved(tbl, name, "jsonb");
		return ECOL_SOURCE;
	}
	if (strcmp(name, "_routing") == 0)
	{
		if (typid != TEXTOID && typid != VARCHAROID)
			bad_reserved(tbl, name, "text");
		return ECOL_ROUTING;
	}
	return ECOL_FIELD;
}

/* Fill one column descriptor from the attribute. */
static void
load_column(ElasticTable *tbl, Relation rel, int i)
{
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), i);
	ElasticColumn *col = &tbl->cols[i];
	ListCell   *lc;

	if (att->attisdropped)
	{
		col->role = ECOL_NONE;
		return;
	}
	col->name = pstrdup(NameStr(att->attname));
	col->field = col->name;
	col->typid = att->atttypid;
	col->typmod = att->atttypmod;
	PgpolyConvInit(&col->conv, col->typid, col->typmod, col->name);
	/* a domain reads as its base type (an array, a date ...) does */
	col->is_array = col->conv.is_array;
	col->basetype = col->is_array ? get_element_type(col->conv.basetype) :
		col->conv.basetype;
	col->is_json = col->conv.is_json && !col->is_array;
	col->is_datetime = col->basetype == DATEOID || col->basetype == TIMESTAMPOID ||
		col->basetype == TIMESTAMPTZOID;
	if (col->is_datetime && !col->is_array && col->basetype != TIMESTAMPTZOID)
		PgpolyConvInit(&col->instant, TIMESTAMPTZOID, -1, col->name);
	col->role = column_role(tbl, col->name, col->typid);
	foreach(lc, GetForeignColumnOptions(tbl->relid, i + 1))
	{
		DefElem    *def = lfirst_node(DefElem, lc);

		if (strcmp(def->defname, "field") == 0)
			col->field = pstrdup(defGetString(def));
	}
	if (col->role == ECOL_ID)
		tbl->id_att = i + 1;
	else if (col->role == ECOL_SCORE)
		tbl->score_att = i + 1;
	else if (col->role == ECOL_QUERY)
		tbl->query_att = i + 1;
	else if (col->role == ECOL_SOURCE)
		tbl->source_att = i + 1;
	else if (col->role == ECOL_ROUTING)
		tbl->routing_att = i + 1;
}

/*
 * Resolve foreign table relid (for userid's mapping) into an ElasticTable,
 * in the current memory context.  No network I/O.
 */
ElasticTable *
ElasticLoadTable(Oid relid, Oid userid)
{
	ForeignTable *ft = GetForeignTable(relid);
	ElasticTable *tbl = palloc0(sizeof(ElasticTable));
	Relation	rel;

	tbl->relid = relid;
	tbl->relname = get_rel_name(relid);
	tbl->server = GetForeignServer(ft->serverid);
	tbl->user = PgpolyGetUserMapping(userid, ft->serverid);
	tbl->index = pstrdup(PgpolyGetOption(ft->options, "index", tbl->relname));
	tbl->fetch_size = (int) PgpolyGetIntOption(ft->options, "fetch_size", 1000);
	tbl->batch_size = (int) PgpolyGetIntOption(ft->options, "batch_size", 500);
	tbl->refresh = pstrdup(PgpolyGetOption(ft->options, "refresh", "false"));
	tbl->transactional = strcmp(PgpolyGetOption(ft->options, "write_mode",
												"transactional"), "transactional") == 0;
	rel = table_open(relid, AccessShareLock);
	tbl->natts = RelationGetDescr(rel)->natts;
	tbl->cols = palloc0(sizeof(ElasticColumn) * Max(tbl->natts, 1));
	for (int i = 0; i < tbl->natts; i++)
		load_column(tbl, rel, i);
	table_close(rel, AccessShareLock);
	return tbl;
}

/* ----------------------------------------------------------------
 *		Planning
 * ----------------------------------------------------------------
 */

/* Rows of the index from _count (use_remote_estimate). */
static double
remote_rows(ElasticTable *tbl)
{
	PgpolyConnection *conn = ElasticGetConnection(tbl);

	return (double) ElasticCount(tbl, conn, NIL, NULL, NIL);
}

/* GetForeignRelSize: classify the quals, estimate the rows. */
static void
elasticGetForeignRelSize(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	ElasticRelInfo *ri = palloc0(sizeof(ElasticRelInfo));
	ForeignTable *ft = GetForeignTable(foreigntableid);
	ListCell   *lc;
	double		rows = ELASTIC_DEFAULT_ROWS;

	baserel->fdw_private = ri;
	ri->userid = PgpolyRelUser(baserel);
	ri->tbl = ElasticLoadTable(foreigntableid, ri->userid);
	ri->written = ElasticHasPendingWrites(foreigntableid);
	foreach(lc, baserel->baserestrictinfo)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);
		int			before = list_length(ri->conds);
		bool		recheck;

		if (ElasticClassifyQual(ri->tbl, baserel, rinfo->clause, &ri->conds, &ri->exprs,
								&recheck))
		{
			ri->remote = lappend(ri->remote, rinfo);
			if (((ElasticCond *) list_nth(ri->conds, before))->kind == ECOND_QUERY)
				ri->has_query = true;
		}
		/* a clause Elasticsearch only narrows down is also checked here */
		if (recheck || list_length(ri->conds) == before)
			ri->local = lappend(ri->local, rinfo);
	}
	pull_varattnos((Node *) baserel->reltarget->exprs, baserel->relid, &ri->attrs_used);
	foreach(lc, ri->local)
		pull_varattnos((Node *) ((RestrictInfo *) lfirst(lc))->clause, baserel->relid,
					   &ri->attrs_used);
	/*
	 * The columns of pushed clauses are read too: a field holding an array
	 * matches a term on any element, and only reading it (an ERROR for a
	 * scalar column) keeps such a document from passing as a row whose
	 * column satisfied the clause.
	 */
	foreach(lc, ri->remote)
		pull_varattnos((Node *) ((RestrictInfo *) lfirst(lc))->clause, baserel->relid,
					   &ri->attrs_checked);
	if (PgpolyGetBoolOption(ft->options, "use_remote_estimate", false))
		rows = Max(remote_rows(ri->tbl), 1.0);
	baserel->rows = clamp_row_est(rows * clauselist_selectivity(root, baserel->baserestrictinfo,
																 0, JOIN_INNER, NULL));
	foreach(lc, ri->conds)
		if (((ElasticCond *) lfirst(lc))->kind == ECOND_IDS)
			baserel->rows = 1;
}

/* Whether att (a column attnum) is used by the scan's output or local quals. */
static bool
att_used(ElasticRelInfo *ri, AttrNumber att)
{
	return bms_is_member(att - FirstLowInvalidHeapAttributeNumber, ri->attrs_used) ||
		bms_is_member(0 - FirstLowInvalidHeapAttributeNumber, ri->attrs_used);
}

/*
 * The pushed sort for the query's pathkeys, or NIL (with *ok false) if any
 * of them cannot be pushed.  A date/time column can only be the last key:
 * Elasticsearch orders the instants it indexed, and documents the column
 * reads as equal (one day, one rounded second, one microsecond of a
 * date_nanos) are ordered by their instants rather than by the next key.
 */
static List *
pushable_sorts(PlannerInfo *root, RelOptInfo *baserel, ElasticRelInfo *ri, bool *ok)
{
	List	   *sorts = NIL;
	ListCell   *lc;

	*ok = false;
	foreach(lc, root->query_pathkeys)
	{
		PathKey    *pk = lfirst(lc);
		EquivalenceClass *ec = pk->pk_eclass;
		ElasticSort *s = NULL;
		ListCell   *mc;

		if (ec->ec_has_volatile)
			return NIL;
		foreach(mc, ec->ec_members)
		{
			EquivalenceMember *em = lfirst(mc);
			Expr	   *e = em->em_expr;
			ElasticColumn *col;
			char	   *field;

			e = (Expr *) PgpolyStripRelabel((Node *) e);
			if (!IsA(e, Var) || ((Var *) e)->varno != baserel->relid ||
				((Var *) e)->varattno <= 0 || ((Var *) e)->varattno > ri->tbl->natts)
				continue;
			col = &ri->tbl->cols[((Var *) e)->varattno - 1];
			if (pk->pk_opfamily != lookup_type_cache(col->typid, TYPECACHE_BTREE_OPFAMILY)->btree_opf)
				continue;
			if (col->role == ECOL_SCORE && ri->has_query)
				field = "_score";
			else if (col->role != ECOL_FIELD ||
					 !ElasticSortableColumn(ri->tbl, ((Var *) e)->varattno, ec->ec_collation, &field))
				continue;
			if (col->is_datetime && lnext(root->query_pathkeys, lc) != NULL)
				return NIL;
			s = palloc(sizeof(ElasticSort));
			s->field = field;
			s->desc = pk->pk_strategy == BTGreaterStrategyNumber;
			s->nulls_first = pk->pk_nulls_first;
			break;
		}
		if (s == NULL)
			return NIL;
		sorts = lappend(sorts, s);
	}
	*ok = true;
	return sorts;
}

/* The value of a LIMIT/OFFSET Const, or -1 when it is not one. */
static int64
const_int8(Node *n)
{
	if (n == NULL)
		return 0;
	if (!IsA(n, Const) || ((Const *) n)->consttype != INT8OID)
		return -1;
	if (((Const *) n)->constisnull)
		return -1;
	return DatumGetInt64(((Const *) n)->constvalue);
}

/*
 * Rows to fetch for a pushed LIMIT (LIMIT + OFFSET), or -1 when the LIMIT
 * cannot be pushed: only a plain single-table SELECT whose quals are all
 * pushed.
 */
static int64
pushable_limit(PlannerInfo *root, ElasticRelInfo *ri)
{
	Query	   *parse = root->parse;
	int64		count;
	int64		offset;

	if (parse->commandType != CMD_SELECT || parse->limitCount == NULL ||
		parse->limitOption != LIMIT_OPTION_COUNT || parse->hasAggs ||
		parse->groupClause || parse->groupingSets || parse->havingQual ||
		parse->distinctClause || parse->hasWindowFuncs || parse->hasTargetSRFs ||
		parse->setOperations || parse->rowMarks ||
		bms_membership(root->all_baserels) != BMS_SINGLETON ||
		ri->local != NIL || ri->written)
		return -1;
	count = const_int8(parse->limitCount);
	offset = const_int8(parse->limitOffset);
	if (count < 0 || offset < 0 || count > PG_INT32_MAX || offset > PG_INT32_MAX)
		return -1;
	return count + offset;
}

/* Path fdw_private: (sorts, Integer limit). */
static List *
path_private(List *sorts, int64 limit)
{
	return list_make2(ElasticSortsToList(sorts), makeInteger((int) limit));
}

/* GetForeignPaths: a plain path, and one with the query's order pushed. */
static void
elasticGetForeignPaths(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid)
{
	ElasticRelInfo *ri = baserel->fdw_private;
	double		rows = baserel->rows;
	Cost		startup = ELASTIC_REQUEST_COST;
	Cost		run = rows * (cpu_tuple_cost + ELASTIC_PER_ROW_COST) +
		ELASTIC_REQUEST_COST * ceil(rows / ri->tbl->fetch_size);
	int64		limit = pushable_limit(root, ri);
	bool		sort_ok = false;
	List	   *sorts = NIL;

	if (root->query_pathkeys && !ri->written)
		sorts = pushable_sorts(root, baserel, ri, &sort_ok);
	add_path(baserel, (Path *)
			 PgpolyForeignScanPath(root, baserel, rows, startup, startup + run, NIL,
								   baserel->lateral_relids,
								   path_private(NIL, root->query_pathkeys ? -1 : limit)));
	/* Sorting costs Elasticsearch no more; a pushed LIMIT fetches less. */
	if (sort_ok)
		add_path(baserel, (Path *)
				 PgpolyForeignScanPath(root, baserel, rows, startup,
									   startup + run * (limit >= 0 && limit < rows ?
														limit / rows : 1.0),
									   root->query_pathkeys, baserel->lateral_relids,
									   path_private(sorts, limit)));
}

/* Whether the aggregate target is count(*) only (no FILTER, DISTINCT). */
static bool
is_count_star_target(PathTarget *target)
{
	ListCell   *lc;

	if (target->exprs == NIL)
		return false;
	foreach(lc, target->exprs)
	{
		Aggref	   *agg = lfirst(lc);

		if (!IsA(agg, Aggref) || agg->aggfnoid != F_COUNT_ || agg->aggfilter ||
			agg->aggdistinct || agg->aggorder || agg->agglevelsup != 0)
			return false;
	}
	return true;
}

/* GetForeignUpperPaths: count(*) without GROUP BY becomes _count. */
static void
elasticGetForeignUpperPaths(PlannerInfo *root, UpperRelationKind stage,
							RelOptInfo *input_rel, RelOptInfo *output_rel,
							void *extra)
{
	ElasticRelInfo *ri = input_rel->fdw_private;
	Query	   *parse = root->parse;

	if (stage != UPPERREL_GROUP_AGG || input_rel->reloptkind != RELOPT_BASEREL ||
		ri == NULL || output_rel->fdw_private != NULL)
		return;
	if (ri->local != NIL || ri->written || parse->groupClause || parse->groupingSets ||
		parse->havingQual || !is_count_star_target(output_rel->reltarget))
		return;
	output_rel->fdw_private = ri;
	add_path(output_rel, (Path *)
			 PgpolyForeignUpperPath(root, output_rel, output_rel->reltarget, 1,
									ELASTIC_REQUEST_COST, ELASTIC_REQUEST_COST + 1,
									NIL, list_make1(makeInteger(EMODE_COUNT))));
}

/* The pushed clauses (RestrictInfos), deparsed for EXPLAIN. */
static char *
deparse_pushed(PlannerInfo *root, RelOptInfo *baserel, List *remote)
{
	return PgpolyDeparseClauses(extract_actual_clauses(remote, false), root, baserel);
}

/*
 * Whether column col reads the spelling of a JSON number: a numeric (1.50
 * is not 1.5 to its text, and it holds more digits than a double), json or
 * jsonb column (or an array of them).  Elasticsearch returns _source as it
 * was indexed, but a source filter makes it parse the document and write
 * it again, turning every number with a fraction or exponent into a double
 * (elastic/elasticsearch#40202): such columns must be read from the whole
 * _source.
 */
static bool
reads_number_spelling(ElasticColumn *col)
{
	return col->is_json || col->basetype == NUMERICOID ||
		col->basetype == JSONOID || col->basetype == JSONBOID;
}

/*
 * _source fields the scan needs (EPRIV_INCLUDES) and the flags: none and
 * EFLAG_SOURCE_ALL for the _source column; EFLAG_WHOLE_SOURCE when an
 * included column reads_number_spelling.
 */
static List *
source_includes(ElasticRelInfo *ri, int *flags)
{
	List	   *includes = NIL;
	ElasticTable *tbl = ri->tbl;
	bool		verbatim = false;

	*flags = ri->has_query && tbl->score_att && att_used(ri, tbl->score_att) ?
		EFLAG_NEED_SCORE : 0;
	if (tbl->source_att && att_used(ri, tbl->source_att))
	{
		*flags |= EFLAG_SOURCE_ALL | EFLAG_NEED_SOURCE;
		return NIL;
	}
	for (int i = 0; i < tbl->natts; i++)
	{
		if (tbl->cols[i].role != ECOL_FIELD)
			continue;
		if (att_used(ri, i + 1))
			*flags |= EFLAG_FIELDS_READ;
		if (att_used(ri, i + 1) ||
			bms_is_member(i + 1 - FirstLowInvalidHeapAttributeNumber, ri->attrs_checked))
		{
			includes = lappend(includes, makeString(tbl->cols[i].field));
			verbatim |= reads_number_spelling(&tbl->cols[i]);
		}
	}
	if (verbatim)
		*flags |= EFLAG_WHOLE_SOURCE;
	if (includes)
		*flags |= EFLAG_NEED_SOURCE;
	return includes;
}

/*
 * Whether the scan of baserel reads the documents a transactional UPDATE
 * or DELETE writes at COMMIT, and what it reads decides what is written:
 * then its hits carry their version (EFLAG_SEQ_NO), and the writes are
 * sent on the condition that the documents still have it.  An UPDATE
 * always depends on what it read (the values SET reads, or for a partial
 * update that the document still exists); a DELETE only when it reads a
 * value (a field, _source or _query), not when it names documents by _id
 * alone: a document changed or deleted meanwhile then ends as if the
 * DELETE had come after that change.  Plain SELECTs never ask.
 */
static bool
reads_for_write(PlannerInfo *root, RelOptInfo *baserel, ElasticRelInfo *ri)
{
	CmdType		cmd = root->parse->commandType;
	Bitmapset  *read = bms_union(ri->attrs_used, ri->attrs_checked);
	int			x = -1;
	ListCell   *lc;

	if ((cmd != CMD_UPDATE && cmd != CMD_DELETE) || !ri->tbl->transactional ||
		!bms_is_member(baserel->relid, root->all_result_relids))
		return false;
	if (cmd == CMD_UPDATE || ri->has_query)
		return true;
	foreach(lc, ri->conds)
		if (((ElasticCond *) lfirst(lc))->kind != ECOND_IDS &&
			((ElasticCond *) lfirst(lc))->kind != ECOND_IDS_IN)
			return true;
	while ((x = bms_next_member(read, x)) >= 0)
	{
		AttrNumber	att = x + FirstLowInvalidHeapAttributeNumber;

		if (att == 0 || (att > 0 && att != ri->tbl->id_att))
			return true;		/* the whole row, or a column but _id */
	}
	return false;
}

/* GetForeignPlan for count(*) (an upper relation). */
static ForeignScan *
count_plan(RelOptInfo *foreignrel, List *tlist, Plan *outer_plan)
{
	ElasticRelInfo *ri = foreignrel->fdw_private;
	List	   *priv = list_make5(makeInteger(EMODE_COUNT), ElasticCondsToList(ri->conds),
								  NIL, NIL, makeInteger(0));

	priv = lappend(priv, makeInteger(-1));
	priv = lappend(priv, makeString(""));
	priv = lappend(priv, ri->tbl->consulted);
	priv = lappend(priv, makeString(ElasticMappingFacts(ri->tbl, ri->tbl->consulted)));
	return make_foreignscan(tlist, NIL, 0, ri->exprs, priv, tlist, NIL, outer_plan);
}

/* Position of ptr in list, or -1. */
static int
list_position(List *list, void *ptr)
{
	ListCell   *lc;

	foreach(lc, list)
		if (lfirst(lc) == ptr)
			return foreach_current_index(lc);
	return -1;
}

/* GetForeignPlan: pushed quals leave the local qual list. */
static ForeignScan *
elasticGetForeignPlan(PlannerInfo *root, RelOptInfo *baserel, Oid foreigntableid,
					  ForeignPath *best_path, List *tlist, List *scan_clauses,
					  Plan *outer_plan)
{
	ElasticRelInfo *ri;
	List	   *local = NIL;
	List	   *recheck = NIL;
	List	   *priv;
	List	   *includes;
	int			flags;
	ListCell   *lc;

	if (IS_UPPER_REL(baserel))
		return count_plan(baserel, tlist, outer_plan);
	ri = baserel->fdw_private;
	foreach(lc, scan_clauses)
	{
		RestrictInfo *rinfo = lfirst_node(RestrictInfo, lc);
		int			pos = list_position(ri->remote, rinfo);

		if (pos < 0 || list_member_ptr(ri->local, rinfo))
			local = lappend(local, rinfo->clause);
		else if (((ElasticCond *) list_nth(ri->conds, pos))->kind != ECOND_QUERY)
			recheck = lappend(recheck, rinfo->clause);
	}
	includes = source_includes(ri, &flags);
	if (reads_for_write(root, baserel, ri))
		flags |= EFLAG_SEQ_NO;
	priv = list_make5(makeInteger(EMODE_SCAN), ElasticCondsToList(ri->conds),
					  linitial(best_path->fdw_private), includes, makeInteger(flags));
	priv = lappend(priv, lsecond(best_path->fdw_private));
	priv = lappend(priv, makeString(deparse_pushed(root, baserel, ri->remote)));
	priv = lappend(priv, ri->tbl->consulted);
	priv = lappend(priv, makeString(ElasticMappingFacts(ri->tbl, ri->tbl->consulted)));
	return make_foreignscan(tlist, local, baserel->relid, ri->exprs, priv, NIL,
							recheck, outer_plan);
}

/* ----------------------------------------------------------------
 *		Scan execution
 * ----------------------------------------------------------------
 */

/* The query spec of a plan's fdw_private. */
static void
spec_from_private(ElasticQuerySpec *spec, List *priv)
{
	int			flags = intVal(list_nth(priv, EPRIV_FLAGS));

	spec->conds = ElasticCondsFromList(list_nth(priv, EPRIV_CONDS));
	spec->sorts = ElasticSortsFromList(list_nth(priv, EPRIV_SORTS));
	spec->includes = list_nth(priv, EPRIV_INCLUDES);
	spec->source_all = (flags & EFLAG_SOURCE_ALL) != 0;
	spec->whole_source = (flags & EFLAG_WHOLE_SOURCE) != 0;
	spec->need_source = (flags & EFLAG_NEED_SOURCE) != 0;
	spec->fields_read = (flags & (EFLAG_FIELDS_READ | EFLAG_SOURCE_ALL)) != 0;
	spec->need_score = (flags & EFLAG_NEED_SCORE) != 0;
	/* the sync worker replicates committed writes: nothing to protect */
	spec->seq_no = (flags & EFLAG_SEQ_NO) != 0 && !PgpolyIsSyncWorker();
	spec->limit = intVal(list_nth(priv, EPRIV_LIMIT));
}

/* BeginForeignScan: resolve table and connection; no I/O yet. */
static void
elasticBeginForeignScan(ForeignScanState *node, int eflags)
{
	ForeignScan *fs = (ForeignScan *) node->ss.ps.plan;
	ElasticScanState *st = PgpolyScanBegin(sizeof(ElasticScanState), &ElasticStore,
										   node, eflags);

	/* SKIP LOCKED is an ERROR at once: nothing is locked to skip */
	(void) PgpolyScanRowMarked(node->ss.ps.state, PgpolyScanRelid(fs), &ElasticStore, NULL);

	st->mode = intVal(list_nth(fs->fdw_private, EPRIV_MODE));
	spec_from_private(&st->spec, fs->fdw_private);
	st->tbl = ElasticLoadTable(st->core.relid, st->core.userid);
	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;
	ElasticSendQueuedCloses(st->core.conn);
	st->exprs = ExecInitExprList(fs->fdw_exprs, (PlanState *) node);
	st->recheck = ExecInitQual(fs->fdw_recheck_quals, (PlanState *) node);
	st->filter_reads = fs->scan.plan.qual != NIL &&
		!contain_volatile_functions((Node *) fs->scan.plan.qual);
}

/* Evaluate fdw_exprs into st->params (copied into the current memory). */
static void
eval_params(ForeignScanState *node, ElasticScanState *st)
{
	ExprContext *econtext = node->ss.ps.ps_ExprContext;
	ListCell   *lc;
	int			i = 0;

	st->params = palloc0(sizeof(ElasticParamValue) * Max(list_length(st->exprs), 1));
	foreach(lc, st->exprs)
	{
		ExprState  *es = lfirst(lc);
		ElasticParamValue *p = &st->params[i++];
		int16		typlen;
		bool		typbyval;

		p->typid = exprType((Node *) es->expr);
		p->value = ExecEvalExpr(es, econtext, &p->isnull);
		get_typlenbyval(p->typid, &typlen, &typbyval);
		if (!p->isnull)
			p->value = datumCopy(p->value, typbyval, typlen);
	}
}

/* The count(*) row: every output column is the count. */
static TupleTableSlot *
iterate_count(ForeignScanState *node, ElasticScanState *st)
{
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;
	int64		n;

	ExecClearTuple(slot);
	if (st->count_done)
		return slot;
	st->count_done = true;
	st->requests++;
	n = ElasticCount(st->tbl, st->core.conn, st->spec.conds, st->params,
					 st->core.pending);
	for (int i = 0; i < slot->tts_tupleDescriptor->natts; i++)
	{
		slot->tts_values[i] = Int64GetDatum(n);
		slot->tts_isnull[i] = false;
	}
	return ExecStoreVirtualTuple(slot);
}

/*
 * The ReadEntry map of the modification whose target the scan reads,
 * created at its first use; NULL if there is none (a SELECT, the scan of
 * EvalPlanQual or a plan the executor does not modify with).  A scan that
 * reads versions (spec.seq_no) makes the modification's writes versioned.
 */
static HTAB *
target_reads(ForeignScanState *node, ElasticScanState *st)
{
	EState	   *estate = node->ss.ps.state;
	Index		rti = ((Scan *) node->ss.ps.plan)->scanrelid;
	ResultRelInfo *target;
	ElasticModifyState *ms;

	if (rti == 0 || estate->es_result_relations == NULL ||
		!ExecRelationIsTargetRelation(estate, rti) ||
		(target = estate->es_result_relations[rti - 1]) == NULL ||
		(ms = target->ri_FdwState) == NULL)
		return NULL;
	st->reads_cxt = GetMemoryChunkContext(ms);
	if (ms->reads == NULL)
		ms->reads = PgpolyKeyTable("pgpoly elastic documents read",
								   sizeof(ReadEntry), st->reads_cxt);
	if (st->spec.seq_no)
		ms->versioned = true;
	return ms->reads;
}

/* Whether two index names or routings (or NULLs) are the same. */
static bool
same_name(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* A routing or NULL (none), for a message. */
static const char *
routing_text(const char *routing)
{
	return routing ? quote_literal_cstr(routing) : "(none)";
}

/*
 * name (or NULL) in the memory of the scan's reads: last, the copy an
 * earlier entry holds, when it is the same (most documents of a scan share
 * their index and routing), else a new copy.
 */
static char *
shared_name(ElasticScanState *st, char *last, const char *name)
{
	if (name == NULL || (last && strcmp(last, name) == 0))
		return name ? last : NULL;
	return MemoryContextStrdup(st->reads_cxt, name);
}

/*
 * Whether the row in the scan tuple passes the plan's local quals, when
 * they can be checked here (st->filter_reads); else true.
 */
static bool
passes_local_quals(ForeignScanState *node, ElasticScanState *st)
{
	ExprContext *econtext = node->ss.ps.ps_ExprContext;
	MemoryContext old;
	bool		pass;

	if (!st->filter_reads)
		return true;
	old = MemoryContextSwitchTo(econtext->ecxt_per_tuple_memory);
	pass = ExecQual(node->ss.ps.qual, econtext);
	MemoryContextSwitchTo(old);
	return pass;
}

/*
 * Note what the scan read of the row just returned (its index, routing
 * and version) for the modification.  ERROR if the scan gave the same _id
 * in another index or with another routing before: Elasticsearch keeps
 * _id unique per shard of an index only, and the write, which gets the
 * _id of the row only, could not tell the two documents apart.  Only rows
 * the modification can get count: a row the plan's local quals (checked
 * here too when they are not volatile; the executor checks them again)
 * reject is not noted.
 */
static void
note_read(ForeignScanState *node, ElasticScanState *st)
{
	const char *index;
	const char *routing;
	int64		seq_no;
	int64		primary_term;
	const char *id;
	ReadEntry  *e;
	bool		found;

	if (st->reads == NULL || !passes_local_quals(node, st))
		return;
	id = ElasticScanHit(st->scan, &index, &routing, &seq_no, &primary_term);
	if (id == NULL)
		return;
	e = PgpolyKeyTableEnter(st->reads, st->reads_cxt, id, strlen(id), &found);
	if (found && (!same_name(e->index, index) || !same_name(e->routing, routing)))
		ereport(ERROR,
				(errcode(ERRCODE_CARDINALITY_VIOLATION),
				 errmsg("index \"%s\" of foreign table \"%s\" holds more than one document with _id \"%s\"",
						st->tbl->index, st->tbl->relname, id),
				 errdetail("One is in index \"%s\" with routing %s, another in index \"%s\" with routing %s: Elasticsearch keeps _id unique per shard of an index only.",
						   e->index ? e->index : st->tbl->index, routing_text(e->routing),
						   index ? index : st->tbl->index, routing_text(routing)),
				 errhint("An UPDATE or DELETE writes a document by its _id and cannot tell them apart; write them through Elasticsearch with their index and routing.")));
	if (!found)
	{
		e->index = st->last_index = shared_name(st, st->last_index, index);
		e->routing = st->last_routing = shared_name(st, st->last_routing, routing);
	}
	e->seq_no = seq_no;
	e->primary_term = primary_term;
}

/*
 * Check that the mapping, read in this transaction, still says what the
 * plan's pushed clauses and sorts relied on: a cached plan may have been
 * made before an alias moved to another index, an index was re-created
 * or a pattern reached a new index.  If it changed, the plans of the table
 * are made again at their next use, and this scan sends only the clauses that do
 * not depend on the mapping (_id, _query) and checks the others on every
 * row (they are its fdw_recheck_quals); a pushed sort or count(*) cannot
 * be done here instead: ERROR, to be run again.
 */
static void
check_mapping(ForeignScanState *node, ElasticScanState *st)
{
	List	   *priv = ((ForeignScan *) node->ss.ps.plan)->fdw_private;
	List	   *fields = list_nth(priv, EPRIV_FIELDS);
	char	   *planned = strVal(list_nth(priv, EPRIV_FACTS));
	char	   *now;
	List	   *kept = NIL;
	ListCell   *lc;

	if (fields == NIL)
		return;
	now = ElasticMappingFacts(st->tbl, fields);
	if (strcmp(now, planned) == 0)
		return;
	/* at once, not at commit: an ERROR would discard it */
	PgpolyReplanReaders(st->core.relid);
	if (st->mode == EMODE_COUNT || st->spec.sorts != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("the mapping of index \"%s\" of foreign table \"%s\" changed since the statement was planned",
						st->tbl->index, st->tbl->relname),
				 errdetail("The plan pushed a %s relying on: %s; the mapping now says: %s.",
						   st->mode == EMODE_COUNT ? "count" : "sort", planned, now),
				 errhint("Run the statement again: its plan is made again from the current mapping.")));
	foreach(lc, st->spec.conds)
	{
		ElasticCond *c = lfirst(lc);

		if (c->kind == ECOND_QUERY || c->kind == ECOND_IDS || c->kind == ECOND_IDS_IN)
			kept = lappend(kept, c);
	}
	st->spec.conds = kept;
	st->spec.limit = -1;
	st->recheck_all = true;
}

/* IterateForeignScan: the next row, fetching a page when needed. */
static TupleTableSlot *
elasticIterateForeignScan(ForeignScanState *node)
{
	ElasticScanState *st = node->fdw_state;
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;
	ExprContext *econtext = node->ss.ps.ps_ExprContext;
	bool		from_overlay;

	if (!st->core.started)
	{
		MemoryContext old = PgpolyScanStart(&st->core);

		check_mapping(node, st);
		eval_params(node, st);
		if (st->reads == NULL)
			st->reads = target_reads(node, st);
		if (st->mode != EMODE_COUNT)
			st->scan = ElasticScanBegin(st->tbl, st->core.conn, &st->spec, st->params,
										st->core.pending, st->core.scan_cxt);
		MemoryContextSwitchTo(old);
	}
	if (st->mode == EMODE_COUNT)
		return iterate_count(node, st);
	for (;;)
	{
		ExecClearTuple(slot);
		if (!ElasticScanNext(st->scan, slot->tts_values, slot->tts_isnull, &from_overlay))
			return slot;
		ExecStoreVirtualTuple(slot);
		/* the executor sets it only after we return: note_read's quals need it */
		slot->tts_tableOid = RelationGetRelid(node->ss.ss_currentRelation);
		econtext->ecxt_scantuple = slot;
		if ((!from_overlay && !st->recheck_all) || ExecQual(st->recheck, econtext))
		{
			note_read(node, st);
			return slot;
		}
	}
}

/* End the current scan (closing its context on the server). */
static void
end_scan(ElasticScanState *st)
{
	if (st->scan == NULL)
		return;
	st->requests += ElasticScanRequests(st->scan);
	st->paging = ElasticScanPaging(st->scan);
	ElasticScanEnd(st->scan);
	st->scan = NULL;
}

/* ReScanForeignScan: params may have changed; start over. */
static void
elasticReScanForeignScan(ForeignScanState *node)
{
	ElasticScanState *st = node->fdw_state;

	end_scan(st);
	st->params = NULL;
	st->count_done = false;
	PgpolyScanRescan(&st->core);
}

/* EndForeignScan: close the PIT/scroll context; the connection stays. */
static void
elasticEndForeignScan(ForeignScanState *node)
{
	ElasticScanState *st = node->fdw_state;

	if (st == NULL)
		return;
	end_scan(st);
	PgpolyScanEnd(&st->core);
}

/* ----------------------------------------------------------------
 *		EXPLAIN
 * ----------------------------------------------------------------
 */

/* Params for EXPLAIN: Const values, placeholders for the rest. */
static ElasticParamValue *
explain_params(ForeignScanState *node, ExplainState *es)
{
	ForeignScan *fs = (ForeignScan *) node->ss.ps.plan;
	List	   *ctx = set_deparse_context_plan(es->deparse_cxt, node->ss.ps.plan, NIL);
	ElasticParamValue *params = palloc0(sizeof(ElasticParamValue) *
										Max(list_length(fs->fdw_exprs), 1));
	ListCell   *lc;

	foreach(lc, fs->fdw_exprs)
	{
		Node	   *e = lfirst(lc);
		ElasticParamValue *p = &params[foreach_current_index(lc)];

		p->typid = exprType(e);
		if (IsA(e, Const))
		{
			p->value = ((Const *) e)->constvalue;
			p->isnull = ((Const *) e)->constisnull;
		}
		else
			p->explain = psprintf("<%s>", deparse_expression(e, ctx, false, false));
	}
	return params;
}

/* ExplainForeignScan: the request and its body, pushed quals, paging. */
static void
elasticExplainForeignScan(ForeignScanState *node, ExplainState *es)
{
	ForeignScan *fs = (ForeignScan *) node->ss.ps.plan;
	ElasticScanState *st = node->fdw_state;
	ElasticQuerySpec *spec = &st->spec;
	ElasticParamValue *params = explain_params(node, es);
	char	   *pushed = strVal(list_nth(fs->fdw_private, EPRIV_PUSHED));
	StringInfoData body;

	initStringInfo(&body);
	if (st->mode == EMODE_COUNT)
	{
		appendStringInfoString(&body, "{\"query\":");
		ElasticAppendQuery(&body, spec->conds, params, false);
		appendStringInfoChar(&body, '}');
		/* an aggregate's scan names no relation of its own: name the table */
		ExplainPropertyText("Elasticsearch Relation", st->tbl->relname, es);
		ExplainPropertyText("Elasticsearch Request",
							psprintf("POST %s", ElasticIndexPath(st->tbl->index, "/_count")), es);
	}
	else
	{
		bool		bounded = spec->limit >= 0 && spec->limit <= ELASTIC_MAX_RESULT_WINDOW;

		ElasticAppendBody(&body, spec, params, bounded ? (int) spec->limit : st->tbl->fetch_size,
						  NULL);
		appendStringInfoChar(&body, '}');
		ExplainPropertyText("Elasticsearch Request",
							psprintf("POST %s", ElasticIndexPath(st->tbl->index, "/_search")), es);
		if (!bounded)
			ExplainPropertyText("Elasticsearch Paging",
								psprintf("pages of %d; point in time + search_after (scroll on Elasticsearch < 7.12 and OpenSearch < 2.4) when the first page is full",
										 st->tbl->fetch_size), es);
	}
	if (es->verbose)
	{
		ExplainPropertyText("Elasticsearch Body", body.data, es);
		if (pushed[0] != '\0')
			ExplainPropertyText("Elasticsearch Pushed Quals", pushed, es);
	}
	if (es->analyze)
	{
		if (st->scan)
			end_scan(st);
		ExplainPropertyInteger("Elasticsearch Requests", NULL, st->requests, es);
	}
}

/* ----------------------------------------------------------------
 *		Modification
 * ----------------------------------------------------------------
 */

/* AddForeignUpdateTargets: _id identifies the document. */
static void
elasticAddForeignUpdateTargets(PlannerInfo *root, Index rtindex,
							   RangeTblEntry *target_rte, Relation target_relation)
{
	ElasticTable *tbl = ElasticLoadTable(RelationGetRelid(target_relation), GetUserId());

	if (tbl->id_att == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_COLUMN_NAME_NOT_FOUND),
				 errmsg("foreign table \"%s\" has no _id column, needed to UPDATE or DELETE documents",
						tbl->relname),
				 errhint("Add a column: ALTER FOREIGN TABLE %s ADD COLUMN _id text.",
						 quote_identifier(tbl->relname))));
	PgpolyAddRowIdentity(root, rtindex, target_relation, tbl->id_att, elastic_junk[0]);
	PgpolyAddOldRow(root, rtindex);
}

/* PlanForeignModify: for UPDATE, the assigned columns. */
static List *
elasticPlanForeignModify(PlannerInfo *root, ModifyTable *plan, Index resultRelation,
						 int subplan_index)
{
	return PgpolyPlanModifyColumns(root, plan, resultRelation);
}

/* PgpolyLoadTable of the core's lifecycle. */
static void *
load_table(Oid relid, Oid userid)
{
	return ElasticLoadTable(relid, userid);
}

/* PgpolyColumnField: column i of the table, if it maps to a document field. */
static bool
column_field(const void *t, int i, PgpolyFieldRef *ref)
{
	const ElasticColumn *col = &((const ElasticTable *) t)->cols[i];

	if (col->role != ECOL_FIELD)
		return false;
	*ref = (PgpolyFieldRef) {col->name, col->field, strlen(col->field), i + 1, '.',
	col->typid == JSONBOID};
	return true;
}

/* Set up modify state for rinfo (also for COPY and tuple routing). */
static ElasticModifyState *
begin_modify(ModifyTableState *mtstate, ResultRelInfo *rinfo, List *fdw_private)
{
	ElasticModifyState *ms = PgpolyModifyBegin(sizeof(ElasticModifyState), &ElasticStore,
											   mtstate, rinfo, fdw_private,
											   500, ElasticSendWrites);

	ms->tbl = PgpolyModifyTable(&ms->core, load_table);
	PgpolyModifyFindJunk(&ms->core, elastic_junk, &ms->tbl->id_att);
	ms->core.written_row = true;
	PgpolyCheckWrittenFields(ms->tbl->relname, ms->tbl, ms->tbl->natts, column_field,
							 mtstate->operation, ms->core.assigned);
	if (ms->core.outbox && ms->tbl->id_att == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("write_mode 'outbox' of foreign table \"%s\" needs an _id column",
						ms->tbl->relname),
				 errdetail("A document the outbox delivers must keep one id whenever it is sent: an INSERT without _id would be indexed again as a new document by each delivery attempt."),
				 errhint("Add a column: ALTER FOREIGN TABLE %s ADD COLUMN _id text.",
						 quote_identifier(ms->tbl->relname))));
	return ms;
}

/* BeginForeignModify. */
static void
elasticBeginForeignModify(ModifyTableState *mtstate, ResultRelInfo *rinfo,
						  List *fdw_private, int subplan_index, int eflags)
{
	ElasticModifyState *ms;

	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;
	ms = begin_modify(mtstate, rinfo, fdw_private);
	/* rows of other partitions may be moved in: check_moved_in */
	if (mtstate->operation == CMD_UPDATE && rinfo->ri_RootResultRelInfo != NULL &&
		ms->tbl->id_att)
		ms->moves = PgpolyMoves(GetMemoryChunkContext(ms));
}

/* ERROR 23505: a row of the UPDATE moved onto the document at id (how). */
static void
moved_onto_error(ElasticModifyState *ms, PgpolyMoveCheck how, const char *id)
{
	PgpolyMovedOntoError(ms->tbl->relname, "Elasticsearch", how,
						 psprintf("_id \"%s\"", PgpolyPrintable(id, strlen(id), 200)));
}

/*
 * Rows an UPDATE moves into the index it updates (PgpolyModifyMovedIn): an
 * index action would replace a document the statement updates, or the
 * update the row moved in.
 */
static void
check_moved_in(ElasticModifyState *ms, TupleTableSlot **slots, int n)
{
	PgpolyModifyMovedIn(&ms->core, ms->moves, ms->tbl->id_att, slots, n,
						ms->tbl->relname, "Elasticsearch", "_id");
}

/* Hand a write to the table's writer (buffered writes are noted for plans). */
static void
queue_write(ElasticModifyState *ms, ElasticWrite *w)
{
	PgpolyWriterAdd(&ms->core.writer, w);
	if (ms->core.transactional)
		ElasticNoteWrite(ms->core.relid);
	PgpolyWriterEndRow(&ms->core.writer);	/* each row has exactly one write */
}

/*
 * ERROR unless the table's _id column holds id, the id pgpoly assigned to
 * a row inserted without one: a varchar(n) too short for it would make
 * every read of the document fail, with the document already written.
 */
static void
check_assigned_id(ElasticTable *tbl, const char *id)
{
	ElasticColumn *col = &tbl->cols[tbl->id_att - 1];

	if (col->typmod < 0 || (int) strlen(id) <= col->typmod - VARHDRSZ)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
			 errmsg("column \"_id\" of foreign table \"%s\" cannot hold the id given to a row inserted without one",
					tbl->relname),
			 errdetail("The id is %d characters long; the column is %s.",
					   (int) strlen(id), format_type_with_typemod(col->typid, col->typmod)),
			 errhint("Give the row an _id, or declare the column text.")));
}

/* Put the id pgpoly assigned into the slot's _id (for RETURNING). */
static void
store_assigned_id(EState *estate, ElasticTable *tbl, TupleTableSlot *slot, char *id)
{
	int			natts = slot->tts_tupleDescriptor->natts;
	Datum	   *values = palloc(sizeof(Datum) * natts);
	bool	   *nulls = palloc(sizeof(bool) * natts);

	slot_getallattrs(slot);
	memcpy(values, slot->tts_values, sizeof(Datum) * natts);
	memcpy(nulls, slot->tts_isnull, sizeof(bool) * natts);
	values[tbl->id_att - 1] = CStringGetTextDatum(id);
	nulls[tbl->id_att - 1] = false;
	PgpolyStoreRow(estate, slot, values, nulls);
}

/*
 * PgpolyWrittenRow: the row a read of the table finds after write (an
 * ElasticWrite), the document's _source as Elasticsearch will hold it
 * included (ElasticWriteRow).
 */
static void
written_row(PgpolyModifyState *core, void *write, Datum *values, bool *nulls)
{
	ElasticWriteRow(((ElasticModifyState *) core)->tbl, write, NULL, values, nulls);
}

/*
 * The write of an INSERT of slot (in the writer's memory); *assigned is
 * the id pgpoly gave a row without one.  ON CONFLICT DO NOTHING makes it a
 * "create"; applied, for one sent at once, learns whether it was inserted.
 */
static ElasticWrite *
insert_write(ElasticModifyState *ms, TupleTableSlot *slot, char **assigned,
			 bool *applied)
{
	MemoryContext old = MemoryContextSwitchTo(PgpolyWriterContext(&ms->core.writer));
	ElasticWrite *w;

	slot_getallattrs(slot);
	w = ElasticInsertWrite(ms->tbl, slot->tts_values, slot->tts_isnull, assigned);
	if (ms->core.do_nothing)
	{
		w->op = EWRITE_CREATE;
		w->applied = applied;
	}
	MemoryContextSwitchTo(old);
	return w;
}

/*
 * ON CONFLICT DO NOTHING: the _id each row names (NULL: a new random id,
 * which conflicts with nothing) and whether it exists now in any index or
 * shard the table reads (ElasticIdsExist, given each row's _routing).
 */
static void
ids_in_index(ElasticModifyState *ms, TupleTableSlot **slots, int n, char **ids,
			 bool *remote)
{
	ElasticTable *tbl = ms->tbl;
	char	  **named = palloc(sizeof(char *) * n);
	char	  **routings = palloc0(sizeof(char *) * n);
	bool	   *found = palloc(sizeof(bool) * n);
	int		   *row = palloc(sizeof(int) * n);
	int			nids = 0;

	for (int i = 0; i < n; i++)
	{
		slot_getallattrs(slots[i]);
		ids[i] = NULL;
		remote[i] = false;
		if (tbl->id_att == 0 || slots[i]->tts_isnull[tbl->id_att - 1])
			continue;
		ids[i] = named[nids] = TextDatumGetCString(slots[i]->tts_values[tbl->id_att - 1]);
		if (tbl->routing_att && !slots[i]->tts_isnull[tbl->routing_att - 1])
			routings[nids] = TextDatumGetCString(slots[i]->tts_values[tbl->routing_att - 1]);
		row[nids++] = i;
	}
	ElasticIdsExist(ms->core.conn, tbl, named, routings, nids, ms->core.transactional,
					ms->ov, found);
	for (int j = 0; j < nids; j++)
		remote[row[j]] = found[j];
}

/*
 * Whether document id exists as the transaction's buffered writes (this
 * statement's earlier rows included; ms->ov, NULL when nothing is
 * buffered) leave what the index has (remote: not counting the documents
 * those writes delete).  Sent at once, the statement's earlier rows
 * (ms->sent) count too: the ids search sees them only after a refresh, one
 * with another _routing would land on another shard, where its "create"
 * finds no conflict, and a row skipped only by its "create"'s 409 would
 * have had a view's check option checked first (PgpolyReturnWrittenRow),
 * failing where a native table skips the row unchecked.
 */
static bool
exists_after_writes(ElasticModifyState *ms, const char *id, bool remote)
{
	bool		found;

	if (ms->ov)
		return remote || ElasticOverlayLive(ms->ov, id);
	if (ms->sent == NULL)
		ms->sent = PgpolyKeyTable("pgpoly elastic ids sent", sizeof(PgpolyKeyRef),
								  GetMemoryChunkContext(ms));
	PgpolyKeyTableEnter(ms->sent, GetMemoryChunkContext(ms), id, strlen(id), &found);
	return remote || found;
}

/*
 * PgpolyInsertRows: INSERT of n rows.  ON CONFLICT DO NOTHING skips the
 * rows whose _id exists now (anywhere the table reads, ids_in_index) or
 * after the transaction's buffered writes, and makes the others "create"
 * actions: sent at once, their 409 items are rows skipped too.
 */
static void
insert_rows(PgpolyModifyState *core, EState *estate, TupleTableSlot **slots, int n,
			bool *inserted)
{
	ElasticModifyState *ms = (ElasticModifyState *) core;
	bool		check = ms->core.do_nothing;
	char	  **ids = palloc(sizeof(char *) * n);
	bool	   *remote = palloc(sizeof(bool) * n);

	if (check && ms->core.transactional && ms->ov == NULL)
	{
		ListCell   *lc;

		/* The statement's view of the buffered writes, kept up to date. */
		ms->ov = ElasticOverlayCreate(GetMemoryChunkContext(ms));
		foreach(lc, PgpolyPendingWrites(ms->core.conn, ms->core.relid))
			ElasticOverlayAdd(ms->ov, ((PgpolyWrite *) lfirst(lc))->payload);
	}
	if (check)
		ids_in_index(ms, slots, n, ids, remote);
	for (int i = 0; i < n; i++)
	{
		ElasticWrite *w;
		char	   *assigned;

		inserted[i] = !(check && ids[i] && exists_after_writes(ms, ids[i], remote[i]));
		if (!inserted[i])
			continue;
		w = insert_write(ms, slots[i], &assigned,
						 ms->core.transactional ? NULL : &inserted[i]);
		if (assigned && ms->tbl->id_att)
			check_assigned_id(ms->tbl, assigned);
		if (ms->ov)
			ElasticOverlayAdd(ms->ov, w);
		PgpolyReturnWrittenRow(&ms->core, estate, slots[i], written_row, w);
		queue_write(ms, w);
		if (assigned && ms->tbl->id_att)
			store_assigned_id(estate, ms->tbl, slots[i], assigned);
	}
	if (ms->core.do_nothing && !ms->core.transactional)
		PgpolyWriterFlush(&ms->core.writer);
}

/* ExecForeignInsert: NULL when ON CONFLICT DO NOTHING skipped the row. */
static TupleTableSlot *
elasticExecForeignInsert(EState *estate, ResultRelInfo *rinfo,
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
elasticExecForeignBatchInsert(EState *estate, ResultRelInfo *rinfo,
							  TupleTableSlot **slots, TupleTableSlot **planSlots,
							  int *numSlots)
{
	check_moved_in(rinfo->ri_FdwState, slots, *numSlots);
	return PgpolyExecBatchInsert(rinfo->ri_FdwState, estate, slots, numSlots,
								 insert_rows);
}

/* GetForeignModifyBatchSize: batch_size (default 500), see fdwutil.c. */
static int
elasticGetForeignModifyBatchSize(ResultRelInfo *rinfo)
{
	return PgpolyModifyBatchSize(rinfo, 500);
}

/* The _id of the row being updated or deleted. */
static char *
junk_id(ElasticModifyState *ms, TupleTableSlot *planSlot)
{
	bool		isnull;
	Datum		d = PgpolyModifyJunk(&ms->core, 0, planSlot, &isnull);

	if (isnull)
		elog(ERROR, "pgpoly_elastic: row to modify has a NULL _id");
	return TextDatumGetCString(d);
}

/*
 * Give w, the write of an UPDATE or DELETE (in the writer's memory), what
 * the target scan read of its document (ms->reads): its concrete index
 * and custom routing, so that the action reaches the document (not the
 * write index of an alias, nor the shard of its _id), and, when the scan
 * read versions, the condition that the document still has the version
 * the statement read.  A row the scan did not read from Elasticsearch
 * came from this transaction's own earlier write of the document: its
 * index and routing are that write's, and the condition that write's
 * result (seq_no -1, see ElasticSendWrites).
 */
static void
set_read(ElasticModifyState *ms, ElasticWrite *w)
{
	ReadEntry  *e = ms->reads ? PgpolyKeyTableFind(ms->reads, w->id, strlen(w->id)) : NULL;

	if (e && e->index)
		w->index = pstrdup(e->index);
	if (e && e->routing)
		w->routing = pstrdup(e->routing);
	if (!ms->versioned)
		return;
	w->versioned = true;
	w->seq_no = e ? e->seq_no : -1;
	w->primary_term = e ? e->primary_term : 0;
}

/* ExecForeignUpdate: slot holds the complete new row. */
static TupleTableSlot *
elasticExecForeignUpdate(EState *estate, ResultRelInfo *rinfo,
						 TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	ElasticModifyState *ms = rinfo->ri_FdwState;
	MemoryContext old = PgpolyModifyRow(&ms->core);
	char	   *id = junk_id(ms, planSlot);
	ElasticWrite *w;

	if (PgpolyModifyAgain(&ms->core, planSlot))
	{
		MemoryContextSwitchTo(old);
		return NULL;			/* a join met the row again */
	}
	PgpolyModifyCheckRow(&ms->core, estate, slot, CMD_UPDATE);

	slot_getallattrs(slot);
	PgpolyModifyUpdatedColumns(&ms->core, slot, planSlot);
	MemoryContextSwitchTo(PgpolyWriterContext(&ms->core.writer));
	w = ElasticUpdateWrite(ms->tbl, id, slot->tts_values, slot->tts_isnull,
						   ms->core.updated);
	/* its _id stays (ElasticUpdateWrite): a row moved in there is refused */
	if (ms->moves &&
		PgpolyMoveRow(ms->moves, GetMemoryChunkContext(ms), id, strlen(id),
					  id, strlen(id)) != PGPOLY_MOVE_OK)
		moved_onto_error(ms, PGPOLY_MOVED_ONTO_OLD, id);
	set_read(ms, w);
	MemoryContextSwitchTo(old);
	PgpolyReturnWrittenRow(&ms->core, estate, slot, written_row, w);
	queue_write(ms, w);
	PgpolyModifyOutbox(&ms->core, CMD_UPDATE, slot, planSlot);
	return slot;
}

/* ExecForeignDelete: RETURNING gets the whole old row when it asked for it. */
static TupleTableSlot *
elasticExecForeignDelete(EState *estate, ResultRelInfo *rinfo,
						 TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	ElasticModifyState *ms = rinfo->ri_FdwState;
	MemoryContext old = PgpolyModifyRow(&ms->core);
	char	   *id = junk_id(ms, planSlot);
	ElasticWrite *w;

	if (PgpolyModifyAgain(&ms->core, planSlot))
	{
		MemoryContextSwitchTo(old);
		return NULL;			/* a join met the row again */
	}

	MemoryContextSwitchTo(PgpolyWriterContext(&ms->core.writer));
	w = ElasticDeleteWrite(ms->tbl, id);
	set_read(ms, w);
	MemoryContextSwitchTo(old);
	queue_write(ms, w);
	PgpolyModifyOutbox(&ms->core, CMD_DELETE, NULL, planSlot);
	PgpolyModifyOldRow(&ms->core, slot, planSlot, rinfo->ri_RelationDesc);
	return slot;
}

/* EndForeignModify: send what immediate mode still holds. */
static void
elasticEndForeignModify(EState *estate, ResultRelInfo *rinfo)
{
	PgpolyModifyEnd(rinfo->ri_FdwState);
}

/* BeginForeignInsert: COPY FROM and tuple routing. */
static void
elasticBeginForeignInsert(ModifyTableState *mtstate, ResultRelInfo *rinfo)
{
	begin_modify(mtstate, rinfo, NIL);
}

/* IsForeignRelUpdatable: INSERT, UPDATE and DELETE. */
static int
elasticIsForeignRelUpdatable(Relation rel)
{
	return (1 << CMD_INSERT) | (1 << CMD_UPDATE) | (1 << CMD_DELETE);
}

/*
 * The _bulk request and action of each row mtstate writes to the table of
 * options, as EXPLAIN shows them (elastic_bulk.c builds them).
 */
static char *
bulk_text(ModifyTableState *mtstate, List *options, const char *relname)
{
	const char *refresh = PgpolyGetOption(options, "refresh", "false");
	const char *index = PgpolyGetOption(options, "index", relname);
	bool		versioned = PgpolyTableWriteMode(options) == PGPOLY_WRITE_TRANSACTIONAL;
	const char *path = strcmp(refresh, "false") == 0 ? "/_bulk" :
		psprintf("/_bulk?refresh=%s", refresh);

	if (mtstate->operation == CMD_INSERT)
		return psprintf("POST %s, %s per row (the whole document) to index %s", path,
						((ModifyTable *) mtstate->ps.plan)->onConflictAction == ONCONFLICT_NOTHING ?
						"\"create\"" : "\"index\"", index);
	return psprintf("POST %s, %s per row to the index its document was read from%s", path,
					mtstate->operation == CMD_UPDATE ?
					"\"update\" (the assigned fields)" : "\"delete\"",
					versioned ? ", on the version read (if_seq_no, if_primary_term)" : "");
}

/* ExplainForeignModify: the request each row's write goes in, and when. */
static void
elasticExplainForeignModify(ModifyTableState *mtstate, ResultRelInfo *rinfo,
							List *fdw_private, int subplan_index, ExplainState *es)
{
	ForeignTable *ft = GetForeignTable(RelationGetRelid(rinfo->ri_RelationDesc));
	PgpolyWriteMode mode = PgpolyTableWriteMode(ft->options);
	int			batch = (int) PgpolyGetIntOption(ft->options, "batch_size", 500);

	if (mode != PGPOLY_WRITE_OUTBOX)	/* the worker delivers them: outbox.c */
		ExplainPropertyText("Elasticsearch Write",
							bulk_text(mtstate, ft->options,
									  RelationGetRelationName(rinfo->ri_RelationDesc)),
							es);

	ExplainPropertyText("Elasticsearch Write Mode",
						mode == PGPOLY_WRITE_TRANSACTIONAL ?
						psprintf("transactional (_bulk batches of %d at COMMIT)", batch) :
						mode == PGPOLY_WRITE_OUTBOX ?
						"outbox (queued at COMMIT, delivered by the sync worker)" :
						psprintf("immediate (_bulk batches of %d)", batch), es);
}

/* ImportForeignSchema (elastic_import.c). */
static List *
elasticImportForeignSchema(ImportForeignSchemaStmt *stmt, Oid serverOid)
{
	return ElasticImportForeignSchema(stmt, serverOid);
}

/* The handler: the FDW routine table. */
Datum
pgpoly_elastic_handler(PG_FUNCTION_ARGS)
{
	FdwRoutine *r = makeNode(FdwRoutine);

	r->GetForeignRelSize = elasticGetForeignRelSize;
	r->GetForeignPaths = elasticGetForeignPaths;
	r->GetForeignPlan = elasticGetForeignPlan;
	r->GetForeignUpperPaths = elasticGetForeignUpperPaths;
	r->BeginForeignScan = elasticBeginForeignScan;
	r->IterateForeignScan = elasticIterateForeignScan;
	r->ReScanForeignScan = elasticReScanForeignScan;
	r->EndForeignScan = elasticEndForeignScan;
	r->ExplainForeignScan = elasticExplainForeignScan;
	r->AddForeignUpdateTargets = elasticAddForeignUpdateTargets;
	r->PlanForeignModify = elasticPlanForeignModify;
	r->BeginForeignModify = elasticBeginForeignModify;
	r->ExecForeignInsert = elasticExecForeignInsert;
	r->ExecForeignBatchInsert = elasticExecForeignBatchInsert;
	r->GetForeignModifyBatchSize = elasticGetForeignModifyBatchSize;
	r->ExecForeignUpdate = elasticExecForeignUpdate;
	r->ExecForeignDelete = elasticExecForeignDelete;
	r->EndForeignModify = elasticEndForeignModify;
	r->BeginForeignInsert = elasticBeginForeignInsert;
	r->EndForeignInsert = elasticEndForeignModify;
	r->IsForeignRelUpdatable = elasticIsForeignRelUpdatable;
	r->ExplainForeignModify = elasticExplainForeignModify;
	r->ImportForeignSchema = elasticImportForeignSchema;
	PG_RETURN_POINTER(r);
}

/*
 * PgpolyStore.conflict_columns: what an INSERT conflicts on, the document
 * id (_id).
 */
List *
ElasticConflictColumns(Oid relid)
{
	ElasticTable *tbl = ElasticLoadTable(relid, GetUserId());

	if (tbl->id_att == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("ON CONFLICT on foreign table \"%s\" needs an _id column",
						tbl->relname),
				 errdetail("A document conflicts with an existing one by its id."),
				 errhint("Add a column: ALTER FOREIGN TABLE %s ADD COLUMN _id text.",
						 quote_identifier(tbl->relname))));
	return list_make1_int(tbl->id_att);
}
