/*-------------------------------------------------------------------------
 *
 * ingest.c
 *		  C helpers of ingest_features (extension/35_ingest.sql): the source
 *		  rows' numbering and created_at, each entity's newest row, and the
 *		  offline append without the executor.
 *
 * Invariants:
 *	- Nothing here decides what is written: the SQL function keeps the
 *	  contract (API.md section 3) and builds every value; these only do
 *	  per-row work that SQL does at a higher cost.
 *	- The offline append (pgpoly._offline_append) inserts exactly the rows
 *	  and values the statement's INSERT would, into a plain table for which
 *	  pgpoly._offline_direct said so (src/directinsert.c: no triggers, no
 *	  row-level security, no generated columns, not a partition, the
 *	  caller's privileges), with the columns the INSERT does not name
 *	  given their defaults as the INSERT gives them; any other offline
 *	  table is appended to by the INSERT itself.
 *
 * src/ingest.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/catalog.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "nodes/params.h"
#include "nodes/pathnodes.h"
#include "nodes/supportnodes.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/hsearch.h"
#include "utils/rel.h"
#include "utils/selfuncs.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "pgpoly.h"

PG_FUNCTION_INFO_V1(pgpoly_ingest_ordinal);
PG_FUNCTION_INFO_V1(pgpoly_ingest_clock);
PG_FUNCTION_INFO_V1(pgpoly_ingest_newest_step);
PG_FUNCTION_INFO_V1(pgpoly_ingest_newest_final);
PG_FUNCTION_INFO_V1(pgpoly_ingest_is_newest);
PG_FUNCTION_INFO_V1(pgpoly_ingest_is_newest_support);
PG_FUNCTION_INFO_V1(pgpoly_offline_direct);
PG_FUNCTION_INFO_V1(pgpoly_offline_append_step);
PG_FUNCTION_INFO_V1(pgpoly_offline_append_final);

/*
 * pgpoly._ingest_ordinal(): 1, 2, 3 ... on the successive calls from one
 * call site in one execution of a query (the count lives with the call's
 * FmgrInfo, made afresh by each execution).  ingest_features numbers its
 * source rows with it as the rows are read; row_number() OVER () would do
 * the same, but copies every row into its window's tuple store first.
 */
Datum
pgpoly_ingest_ordinal(PG_FUNCTION_ARGS)
{
	int64	   *count = (int64 *) fcinfo->flinfo->fn_extra;

	if (count == NULL)
	{
		count = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(int64));
		fcinfo->flinfo->fn_extra = count;
	}
	PG_RETURN_INT64(++(*count));
}

/*
 * pgpoly._ingest_clock(): clock_timestamp(), but each call from one call
 * site in one execution of a query at least a microsecond later than the
 * one before (the last value lives with the call's FmgrInfo).
 * ingest_features stamps created_at with it: the source's rows get
 * distinct created_at in the source's order (a later row of one entity and
 * event time is the newer one), however fast they are appended.
 */
Datum
pgpoly_ingest_clock(PG_FUNCTION_ARGS)
{
	TimestampTz *last = (TimestampTz *) fcinfo->flinfo->fn_extra;
	TimestampTz now = GetCurrentTimestamp();

	if (last == NULL)
	{
		last = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(TimestampTz));
		fcinfo->flinfo->fn_extra = last;
	}
	else if (now <= *last)
		now = *last + 1;
	*last = now;
	PG_RETURN_TIMESTAMPTZ(now);
}

/*
 * The largest source row number pgpoly._ingest_newest takes: its answer
 * holds a bit per row number, in one bytea.
 */
#define NEWEST_MAX_ORD	((int64) (MaxAllocSize - VARHDRSZ - 1) * 8 - 1)

/* An entity's newest source row so far (pgpoly._ingest_newest) */
typedef struct NewestRow
{
	PgpolyKeyRef id;			/* the entity's text (hash key, copied) */
	TimestampTz et;				/* the row's event time */
	int64		ord;			/* and its number in the source */
} NewestRow;

/* The state of one pgpoly._ingest_newest aggregate */
typedef struct NewestRows
{
	struct HTAB *rows;			/* NewestRow by entity (PgpolyKeyTable) */
	int64		maxord;			/* the largest row number met */
} NewestRows;

/*
 * The transition function of pgpoly._ingest_newest(k text, et timestamptz,
 * ord bigint): keep row ord if it is the newest of entity k so far, the
 * one a DISTINCT ON (k COLLATE "C") ... ORDER BY k COLLATE "C", et DESC,
 * ord DESC would keep: entities are equal when their bytes are, the later
 * event time wins, then the larger row number.  A row with a NULL is
 * skipped (ingest_features refuses the source before it reads the
 * answer).  The table and the entities' copies live in the aggregate's
 * memory context: one entry per entity, as the serving write buffer keeps
 * one write per entity.
 */
Datum
pgpoly_ingest_newest_step(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	NewestRows *st;
	text	   *k;
	TimestampTz et;
	int64		ord;
	NewestRow  *row;
	bool		found;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		elog(ERROR, "_ingest_newest_step called in non-aggregate context");
	st = PG_ARGISNULL(0) ? NULL : (NewestRows *) PG_GETARG_POINTER(0);
	if (st == NULL)
	{
		st = MemoryContextAllocZero(aggcxt, sizeof(NewestRows));
		st->rows = PgpolyKeyTable("pgpoly newest source rows", sizeof(NewestRow), aggcxt);
	}
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		PG_RETURN_POINTER(st);
	k = PG_GETARG_TEXT_PP(1);
	et = PG_GETARG_TIMESTAMPTZ(2);
	ord = PG_GETARG_INT64(3);
	if (ord < 1)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("source row number " INT64_FORMAT " is out of range", ord),
				 errdetail("Source rows are numbered from 1.")));
	if (ord > NEWEST_MAX_ORD)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("source row number " INT64_FORMAT " is out of range", ord),
				 errdetail("ingest_features takes at most " INT64_FORMAT " source rows in one call.",
						   NEWEST_MAX_ORD)));
	row = PgpolyKeyTableEnter(st->rows, aggcxt, VARDATA_ANY(k), VARSIZE_ANY_EXHDR(k), &found);
	if (!found || et > row->et || (et == row->et && ord > row->ord))
	{
		row->et = et;
		row->ord = ord;
	}
	st->maxord = Max(st->maxord, ord);
	PG_RETURN_POINTER(st);
}

/*
 * The final function of pgpoly._ingest_newest: the rows kept, as a bytea
 * whose bit ord % 8 of byte ord / 8 is set for row number ord
 * (pgpoly._ingest_is_newest reads it); NULL for no rows.
 */
Datum
pgpoly_ingest_newest_final(PG_FUNCTION_ARGS)
{
	NewestRows *st;
	bytea	   *bits;
	unsigned char *b;
	Size		nbytes;
	HASH_SEQ_STATUS seq;
	NewestRow  *row;

	if (!AggCheckCallContext(fcinfo, NULL))
		elog(ERROR, "_ingest_newest_final called in non-aggregate context");
	st = PG_ARGISNULL(0) ? NULL : (NewestRows *) PG_GETARG_POINTER(0);
	if (st == NULL || st->maxord == 0)
		PG_RETURN_NULL();
	nbytes = (Size) (st->maxord / 8) + 1;
	bits = palloc0(VARHDRSZ + nbytes);
	SET_VARSIZE(bits, VARHDRSZ + nbytes);
	b = (unsigned char *) VARDATA(bits);
	hash_seq_init(&seq, st->rows);
	while ((row = hash_seq_search(&seq)) != NULL)
		b[row->ord / 8] |= 1 << (row->ord % 8);
	PG_RETURN_BYTEA_P(bits);
}

/*
 * pgpoly._ingest_is_newest(rows bytea, ord bigint): whether row number ord
 * is one of rows (pgpoly._ingest_newest's answer).
 */
Datum
pgpoly_ingest_is_newest(PG_FUNCTION_ARGS)
{
	bytea	   *bits = PG_GETARG_BYTEA_PP(0);
	int64		ord = PG_GETARG_INT64(1);

	if (ord < 0 || (uint64) ord / 8 >= VARSIZE_ANY_EXHDR(bits))
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL((((const unsigned char *) VARDATA_ANY(bits))[ord / 8] >> (ord % 8)) & 1);
}

/*
 * The planner support function of pgpoly._ingest_is_newest: the share of
 * a relation's rows that are their entity's newest is estimated as
 * DISTINCT ON estimates the entities, by the distinct values of the row
 * number's column (none known for a CTE: 200, or the rows when fewer).
 * So the newest rows of a source estimated at n rows are estimated at
 * what the DISTINCT ON ingest_features used before gave, and the plan
 * over them (the batched join to Redis) is chosen as it was.
 */
Datum
pgpoly_ingest_is_newest_support(PG_FUNCTION_ARGS)
{
	Node	   *rawreq = (Node *) PG_GETARG_POINTER(0);
	SupportRequestSelectivity *req;
	Var		   *ord;
	RelOptInfo *rel;
	VariableStatData vardata;
	double		groups;
	bool		isdefault;

	if (!IsA(rawreq, SupportRequestSelectivity))
		PG_RETURN_POINTER(NULL);
	req = (SupportRequestSelectivity *) rawreq;
	if (req->is_join || list_length(req->args) != 2 || !IsA(lsecond(req->args), Var))
		PG_RETURN_POINTER(NULL);
	ord = lsecond_node(Var, req->args);
	if (ord->varlevelsup != 0 || ord->varno < 1 ||
		ord->varno >= req->root->simple_rel_array_size)
		PG_RETURN_POINTER(NULL);
	rel = req->root->simple_rel_array[ord->varno];
	if (rel == NULL || rel->tuples <= 0)
		PG_RETURN_POINTER(NULL);
	/* (estimate_num_groups would scale by rel->rows, not yet estimated) */
	examine_variable(req->root, (Node *) ord, 0, &vardata);
	groups = get_variable_numdistinct(&vardata, &isdefault);
	ReleaseVariableStats(vardata);
	req->selectivity = Min(1.0, Min(groups, rel->tuples) / rel->tuples);
	PG_RETURN_POINTER(req);
}

/* Rows buffered before they are inserted, as COPY's batches */
#define OFFLINE_BATCH 1000
/*
 * ... or fewer, once their values take this many bytes (COPY caps a batch
 * at 64kB): a batch holds its rows' values as they came, before any is
 * compressed or moved to TOAST, so 1000 rows of large values would take
 * 1000 times the memory of the INSERT's one row
 */
#define OFFLINE_BATCH_BYTES (1024 * 1024)

/* The state of one pgpoly._offline_append aggregate */
typedef struct OfflineAppend
{
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *row;		/* the current row (virtual) */
	int			ncols;			/* columns named, one per value argument */
	AttrNumber *attnum;			/* rel's column of each value */
	ExprState **defaults;		/* per column of rel not named: its value */
	ExprState **coerce;			/* per value: its typmod coercion, or NULL */
	ParamListInfo params;		/* the values, as the coercions' input */
	TupleTableSlot *slots[OFFLINE_BATCH];	/* made as needed */
	int			nslots;			/* slots holding a row */
	Size		nbytes;			/* and the size of their tuples */
	CommandId	cid;
	int64		count;			/* rows appended */
	bool		done;			/* the final function ran */
} OfflineAppend;

/*
 * The range table entry of an INSERT into rel naming the columns of cols (a
 * text[] of names); NULL if one is not a live column of rel or is named
 * twice (the INSERT then gives its own ERROR: a view whose features
 * include its entity column, event_time or created_at).  attnum, if not
 * NULL, gets their numbers.
 */
static RangeTblEntry *
insert_rte(Relation rel, ArrayType *cols, AttrNumber **attnum, int *ncols)
{
	RangeTblEntry *rte = makeNode(RangeTblEntry);
	Datum	   *names;
	bool	   *nulls;
	int			n;

	deconstruct_array(cols, TEXTOID, -1, false, TYPALIGN_INT, &names, &nulls, &n);
	if (attnum)
		*attnum = palloc(n * sizeof(AttrNumber));
	for (int i = 0; i < n; i++)
	{
		AttrNumber	a = nulls[i] ? InvalidAttrNumber :
		get_attnum(RelationGetRelid(rel), TextDatumGetCString(names[i]));

		if (a <= 0 || bms_is_member(a - FirstLowInvalidHeapAttributeNumber,
									rte->insertedCols))
			return NULL;
		rte->insertedCols = bms_add_member(rte->insertedCols,
										   a - FirstLowInvalidHeapAttributeNumber);
		if (attnum)
			(*attnum)[i] = a;
	}
	if (ncols)
		*ncols = n;
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	rte->requiredPerms = ACL_INSERT;
	return rte;
}

/*
 * Whether relid is a table (not a partition, a system catalog or a TOAST
 * table) the current user may insert into: what pgpoly._offline_append may
 * lock.
 */
static bool
plain_table(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	bool		plain;

	if (!HeapTupleIsValid(tup))
		return false;
	plain = ((Form_pg_class) GETSTRUCT(tup))->relkind == RELKIND_RELATION &&
		!((Form_pg_class) GETSTRUCT(tup))->relispartition &&
		!IsCatalogRelationOid(relid) &&
		!IsToastNamespace(((Form_pg_class) GETSTRUCT(tup))->relnamespace);
	ReleaseSysCache(tup);
	return plain && PgpolyMayInsert(relid);
}

/*
 * Whether the INSERT of the columns cols into relid can be done by
 * pgpoly._offline_append: a plain table, not a partition, that no
 * executor-only feature applies to (PgpolyDirectInsertRefused, volatile
 * defaults included).  Takes the INSERT's lock (RowExclusiveLock, kept to the
 * end of the transaction, so that no trigger or policy can be added before
 * the append) unless the caller may not insert into relid; a table dropped
 * or attached as a partition while this waited for the lock is left to the
 * INSERT (its ERROR, its routing).
 */
static bool
offline_direct(Oid relid, ArrayType *cols)
{
	Relation	rel;
	RangeTblEntry *rte;
	bool		ok;

	if (XactReadOnly || IsInParallelMode() || !plain_table(relid))
		return false;
	rel = try_table_open(relid, RowExclusiveLock);
	if (rel == NULL)
		return false;
	rte = insert_rte(rel, cols, NULL, NULL);
	ok = rte != NULL && !rel->rd_rel->relispartition &&
		!PgpolyDirectInsertRefused(rel, rte);
	table_close(rel, NoLock);
	return ok;
}

/*
 * pgpoly._offline_direct(rel oid, cols text[]) RETURNS bool: whether
 * ingest_features appends to rel (the columns cols) with _offline_append
 * rather than an INSERT (offline_direct).
 */
Datum
pgpoly_offline_direct(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(offline_direct(PG_GETARG_OID(0), PG_GETARG_ARRAYTYPE_P(1)));
}

/*
 * The assignment of value arg (of type typid and typmod typmod) to column
 * att, as an INSERT's target list coerces it (a length coercion where the
 * typmods differ: varchar(n), numeric(p, s) ...; a cast where the column's
 * type changed since the view was made: event_time altered to a domain or
 * to timestamp), over parameter i + 1 of st->params; NULL if the value is
 * stored as it is.  No assignment cast: the INSERT's ERROR.
 */
static ExprState *
value_coercion(OfflineAppend *st, int i, Node *arg, Form_pg_attribute att)
{
	Param	   *param = makeNode(Param);
	Oid			typid = exprType(arg);
	Node	   *expr;

	param->paramkind = PARAM_EXTERN;
	param->paramid = i + 1;
	param->paramtype = typid;
	param->paramtypmod = exprTypmod(arg);
	param->paramcollid = exprCollation(arg);
	param->location = -1;
	st->params->params[i].ptype = typid;
	st->params->params[i].pflags = PARAM_FLAG_CONST;
	expr = coerce_to_target_type(NULL, (Node *) param, typid, att->atttypid, att->atttypmod,
								 COERCION_ASSIGNMENT, COERCE_IMPLICIT_CAST, -1);
	if (expr == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" is of type %s but expression is of type %s",
						NameStr(att->attname), format_type_be(att->atttypid),
						format_type_be(typid))));
	if (expr == (Node *) param)
		return NULL;
	return ExecInitExpr(expression_planner((Expr *) expr), NULL);
}

/*
 * Plan what the INSERT's target list does besides taking the values: the
 * value of each column of st->rel that rte does not name
 * (PgpolyDirectInsertDefaults), and each value argument's assignment to
 * its column (fcinfo's arguments from 3 on).
 */
static void
prepare_columns(OfflineAppend *st, FunctionCallInfo fcinfo, RangeTblEntry *rte)
{
	TupleDesc	desc = RelationGetDescr(st->rel);
	List	   *args = ((FuncExpr *) fcinfo->flinfo->fn_expr)->args;

	st->defaults = PgpolyDirectInsertDefaults(st->rel, rte);
	st->coerce = palloc0(st->ncols * sizeof(ExprState *));
	st->params = makeParamList(st->ncols);
	for (int i = 0; i < st->ncols; i++)
	{
		Node	   *arg = list_nth(args, i + 3);

		st->coerce[i] = value_coercion(st, i, arg, TupleDescAttr(desc, st->attnum[i] - 1));
	}
}

/*
 * Open relid for the appends of one aggregate (in the aggregate's memory
 * context): the executor state of an INSERT of the columns cols, its
 * privileges checked again (an ERROR as the INSERT's if they were revoked
 * since _offline_direct).
 */
static OfflineAppend *
append_open(FunctionCallInfo fcinfo, Oid relid, ArrayType *cols)
{
	OfflineAppend *st = palloc0(sizeof(OfflineAppend));
	RangeTblEntry *rte;

	if (!plain_table(relid))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("relation with OID %u cannot be appended to by _offline_append", relid)));
	st->rel = try_table_open(relid, RowExclusiveLock);
	if (st->rel == NULL || st->rel->rd_rel->relispartition)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("relation with OID %u cannot be appended to by _offline_append", relid)));
	rte = insert_rte(st->rel, cols, &st->attnum, &st->ncols);
	if (rte == NULL || st->ncols != PG_NARGS() - 3)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the columns of _offline_append do not match its values")));
	ExecCheckRTPerms(list_make1(rte), true);
	if (PgpolyDirectInsertRefused(st->rel, rte))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("relation \"%s\" cannot be appended to without the executor",
						RelationGetRelationName(st->rel))));
	prepare_columns(st, fcinfo, rte);
	st->estate = CreateExecutorState();
	ExecInitRangeTable(st->estate, list_make1(rte));
	st->rri = makeNode(ResultRelInfo);
	ExecInitResultRelation(st->estate, st->rri, 1);
	ExecOpenIndices(st->rri, false);
	st->cid = GetCurrentCommandId(true);
	st->estate->es_output_cid = st->cid;
	st->row = ExecInitExtraTupleSlot(st->estate, RelationGetDescr(st->rel), &TTSOpsVirtual);
	return st;
}

/*
 * Make st->row of the value arguments of fcinfo and the other columns'
 * defaults, check it as the INSERT checks a row (NOT NULL, CHECK), and
 * buffer a copy of it; a full buffer is inserted.
 */
static void
append_row(OfflineAppend *st, FunctionCallInfo fcinfo)
{
	TupleTableSlot *slot = st->row;
	ExprContext *econtext = GetPerTupleExprContext(st->estate);
	int			natts = slot->tts_tupleDescriptor->natts;

	ExecClearTuple(slot);
	for (int a = 0; a < natts; a++)
	{
		slot->tts_values[a] = (Datum) 0;
		slot->tts_isnull[a] = true;
		if (st->defaults[a])
			slot->tts_values[a] = ExecEvalExpr(st->defaults[a], econtext,
											   &slot->tts_isnull[a]);
	}
	econtext->ecxt_param_list_info = st->params;
	for (int i = 0; i < st->ncols; i++)
	{
		AttrNumber	a = st->attnum[i] - 1;

		slot->tts_values[a] = PG_GETARG_DATUM(i + 3);
		slot->tts_isnull[a] = PG_ARGISNULL(i + 3);
		if (st->coerce[i])
		{
			st->params->params[i].value = slot->tts_values[a];
			st->params->params[i].isnull = slot->tts_isnull[a];
			slot->tts_values[a] = ExecEvalExpr(st->coerce[i], econtext, &slot->tts_isnull[a]);
		}
	}
	ExecStoreVirtualTuple(slot);
	if (st->rel->rd_att->constr)
		ExecConstraints(st->rri, slot, st->estate);
	if (st->slots[st->nslots] == NULL)
		st->slots[st->nslots] = table_slot_create(st->rel, &st->estate->es_tupleTable);
	ExecCopySlot(st->slots[st->nslots], slot);
	/* the size of the tuple the copy formed (not computed a second time) */
	st->nbytes += ExecFetchSlotHeapTuple(st->slots[st->nslots++], false, NULL)->t_len;
	ResetPerTupleExprContext(st->estate);
	if (st->nslots == OFFLINE_BATCH || st->nbytes >= OFFLINE_BATCH_BYTES)
	{
		CHECK_FOR_INTERRUPTS();
		PgpolyDirectInsertBatch(st->rri, st->estate, st->slots, st->nslots, st->cid);
		st->nslots = 0;
		st->nbytes = 0;
	}
}

/*
 * The transition function of pgpoly._offline_append(rel oid, cols text[],
 * VARIADIC "any"): append one row, its values (of the columns cols, in
 * order) the arguments after cols.  The state (internal) is made in the
 * aggregate's memory context at the first row.
 */
Datum
pgpoly_offline_append_step(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	MemoryContext old;
	OfflineAppend *st;

	if (!AggCheckCallContext(fcinfo, &aggcxt))
		elog(ERROR, "_offline_append_step called in non-aggregate context");
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the relation and columns of _offline_append must not be NULL")));
	old = MemoryContextSwitchTo(aggcxt);
	st = PG_ARGISNULL(0) ?
		append_open(fcinfo, PG_GETARG_OID(1), PG_GETARG_ARRAYTYPE_P(2)) :
		(OfflineAppend *) PG_GETARG_POINTER(0);
	if (st->done)
		elog(ERROR, "_offline_append_step called after its final function");
	append_row(st, fcinfo);
	st->count++;
	MemoryContextSwitchTo(old);
	PG_RETURN_POINTER(st);
}

/*
 * The final function of pgpoly._offline_append: insert the rows still
 * buffered, release the executor state (the lock stays, as an INSERT's),
 * and return the number of rows appended (0 for none).
 */
Datum
pgpoly_offline_append_final(PG_FUNCTION_ARGS)
{
	OfflineAppend *st = PG_ARGISNULL(0) ? NULL : (OfflineAppend *) PG_GETARG_POINTER(0);

	if (!AggCheckCallContext(fcinfo, NULL))
		elog(ERROR, "_offline_append_final called in non-aggregate context");
	if (st == NULL)
		PG_RETURN_INT64(0);
	if (!st->done)
	{
		PgpolyDirectInsertBatch(st->rri, st->estate, st->slots, st->nslots, st->cid);
		st->nslots = 0;
		st->nbytes = 0;
		table_finish_bulk_insert(st->rel, 0);
		ExecResetTupleTable(st->estate->es_tupleTable, false);
		ExecCloseResultRelations(st->estate);
		ExecCloseRangeTableRelations(st->estate);
		FreeExecutorState(st->estate);
		table_close(st->rel, NoLock);
		st->done = true;
	}
	PG_RETURN_INT64(st->count);
}
