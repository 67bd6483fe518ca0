/*-------------------------------------------------------------------------
 *
 * predictions.c
 *		  pgpoly.log_predictions() in C: a light walk over the JSON array of
 *		  prediction rows (shapes, keys, the (model, version) pairs), then the
 *		  rows converted, checked and inserted without the executor.
 *
 * log_predictions (extension/36_monitoring.sql) must reject a batch whose
 * elements are not objects or carry unknown keys before it writes anything,
 * and resolve each distinct (model, version) pair once ('name@alias' at call
 * time).  Done in SQL these were two more passes over the rows, each
 * decoding every element (jsonb_array_elements with a jsonb minus per
 * element, then jsonb_to_recordset with a GROUP BY); here one iteration over
 * the binary array does both without converting any value.
 *
 * Invariants:
 *	- Nothing here converts a value: the (model, version) pairs are handed
 *	  back as a small JSON array of objects holding the elements' own JSON
 *	  values, which SQL converts with jsonb_to_recordset exactly as it
 *	  converts the rows themselves (same types, same errors).
 *	- Pairs are deduplicated only against the previous row's pair (a batch's
 *	  rows usually share one): SQL takes the DISTINCT of what is returned,
 *	  so a missed duplicate costs a row of that small array, never a result.
 *	- The first element that is not an object or has a key log_prediction
 *	  has no argument for is reported by position only; SQL names the
 *	  problem (type, key) from that element, as it always did.
 *	- The INSERT that logs the rows never routes them with a partition
 *	  descriptor older than the partitions found by name: before it, the
 *	  partitions of the batch's months are locked (_lock_partitions), which
 *	  waits for a creator that committed but has not yet sent its catalog
 *	  invalidations, and reads them.
 *	- _prediction_insert gives each value the value, or the ERROR,
 *	  jsonb_to_recordset would give it (the same input functions on the same
 *	  text, elements and keys in the same order), applies every check of
 *	  _log_predictions, and inserts only what an INSERT by the same user
 *	  would: with that user's privileges (ExecCheckRTPerms), what the
 *	  INSERT gives the parent's other columns (PgpolyDirectInsertDefaults:
 *	  the identity, defaults, a NULL checked by its domain), the
 *	  partitions' constraints and indexes.  Anything only the executor
 *	  honours (triggers, row-level security, a foreign or differently laid
 *	  out partition, generated columns, a volatile default of a column no
 *	  key fills, a CHECK or domain CHECK calling a volatile function, a
 *	  read-only transaction) makes it do nothing, or stop, and
 *	  the caller
 *	  INSERTs instead; a row it cannot log makes it stop, and the caller
 *	  undoes what it inserted by an ERROR.
 *
 * src/predictions.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/execPartition.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "partitioning/partdesc.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "pgpoly.h"

/* The keys of a log_predictions element: log_prediction's argument names. */
typedef struct PredictionKey
{
	const char *name;
	int			len;			/* strlen(name) */
} PredictionKey;

#define PKEY(s) {s, sizeof(s) - 1}
static const PredictionKey PredictionKeys[] = {
	PKEY("model"), PKEY("version"), PKEY("entity"), PKEY("prediction"), PKEY("features"),
	PKEY("confidence"), PKEY("latency_ms"), PKEY("request_id"), PKEY("ts")
};

/*
 * Which known key the string s of length len is (its index), or -1.  The
 * length and first byte rule out all but one candidate before a memcmp.
 */
static int
prediction_key(const char *s, int len)
{
	for (int i = 0; i < lengthof(PredictionKeys); i++)
	{
		if (PredictionKeys[i].len == len && PredictionKeys[i].name[0] == s[0] &&
			memcmp(PredictionKeys[i].name, s, len) == 0)
			return i;
	}
	return -1;
}

/*
 * Whether two scalar values are the same JSON value byte for byte (missing
 * is jbvNull).  Containers never compare equal: a missed duplicate is only
 * one more pair for SQL to fold.
 */
static bool
same_scalar(const JsonbValue *a, const JsonbValue *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type)
	{
		case jbvNull:
			return true;
		case jbvBool:
			return a->val.boolean == b->val.boolean;
		case jbvString:
			return a->val.string.len == b->val.string.len &&
				memcmp(a->val.string.val, b->val.string.val, a->val.string.len) == 0;
		case jbvNumeric:
			return VARSIZE_ANY(a->val.numeric) == VARSIZE_ANY(b->val.numeric) &&
				memcmp(a->val.numeric, b->val.numeric, VARSIZE_ANY(a->val.numeric)) == 0;
		default:
			return false;
	}
}

/*
 * Read the model and version of element obj (an object container) into
 * pair[0..1] (jbvNull when absent); false if it has a key that is not a
 * log_prediction argument.  The keys are read straight from obj's JEntry
 * array (an object's keys come first, each a string), without an iterator
 * decoding every key and value; only model and version are then looked up.
 */
static bool
scan_element(JsonbContainer *obj, JsonbValue *pair)
{
	int			count = JsonContainerSize(obj);
	const char *base = (const char *) &obj->children[count * 2];
	uint32		start = 0;
	uint32		end = 0;
	bool		seen[2] = {false, false};

	for (int i = 0; i < count; i++)
	{
		int			which;

		JBE_ADVANCE_OFFSET(end, obj->children[i]);
		Assert(JBE_ISSTRING(obj->children[i]));
		which = prediction_key(base + start, end - start);
		if (which < 0)
			return false;
		if (which <= 1)
			seen[which] = true;
		start = end;
	}
	for (int i = 0; i < 2; i++)
	{
		pair[i].type = jbvNull;
		if (seen[i])
			getKeyJsonValueFromContainer(obj, PredictionKeys[i].name, PredictionKeys[i].len,
										 &pair[i]);
	}
	return true;
}

/* Append {"model": m, "version": v} (absent ones left out) to the array in *st. */
static void
push_pair(JsonbParseState **st, JsonbValue *pair)
{
	pushJsonbValue(st, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < 2; i++)
	{
		JsonbValue	k;

		if (pair[i].type == jbvNull)
			continue;
		k.type = jbvString;
		k.val.string.val = (char *) PredictionKeys[i].name;
		k.val.string.len = PredictionKeys[i].len;
		pushJsonbValue(st, WJB_KEY, &k);
		pushJsonbValue(st, WJB_VALUE, &pair[i]);
	}
	pushJsonbValue(st, WJB_END_OBJECT, NULL);
}

PG_FUNCTION_INFO_V1(pgpoly_prediction_scan);

/*
 * pgpoly._prediction_scan(rows jsonb, OUT bad bigint, OUT pairs jsonb,
 * OUT n bigint): rows must be a JSON array (22023 if not).  bad: the
 * position (1-based) of the first element that is not an object or has an
 * unknown key, NULL if none; pairs: a JSON array of {"model", "version"}
 * objects covering every element's pair (NULL when bad is set); n: the
 * number of elements.
 */
Datum
pgpoly_prediction_scan(PG_FUNCTION_ARGS)
{
	Jsonb	   *rows = PG_GETARG_JSONB_P(0);
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbParseState *st = NULL;
	JsonbValue	elem;
	JsonbValue	pair[2];
	JsonbValue	last[2];
	bool		have_last = false;
	int64		pos = 0;
	TupleDesc	desc;
	Datum		values[3] = {0};
	bool		nulls[3] = {true, true, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "_prediction_scan must return a record");
	if (!JB_ROOT_IS_ARRAY(rows) || JB_ROOT_IS_SCALAR(rows))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("argument \"rows\" must be a JSON array")));

	pushJsonbValue(&st, WJB_BEGIN_ARRAY, NULL);
	it = JsonbIteratorInit(&rows->root);
	while ((tok = JsonbIteratorNext(&it, &elem, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		pos++;
		if (elem.type != jbvBinary || !JsonContainerIsObject(elem.val.binary.data) ||
			!scan_element(elem.val.binary.data, pair))
		{
			values[0] = Int64GetDatum(pos);
			nulls[0] = false;
			break;
		}
		if (have_last && same_scalar(&pair[0], &last[0]) && same_scalar(&pair[1], &last[1]))
			continue;
		push_pair(&st, pair);
		last[0] = pair[0];
		last[1] = pair[1];
		have_last = true;
	}
	if (nulls[0])
	{
		values[1] = JsonbPGetDatum(JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_ARRAY, NULL)));
		nulls[1] = false;
	}
	values[2] = Int64GetDatum(JsonContainerSize(&rows->root));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

/* Whether part is in the partition descriptor of parent an INSERT routes with */
static bool
partdesc_has(Relation parent, Oid part)
{
	PartitionDesc pd = RelationGetPartitionDesc(parent, !IsolationUsesXactSnapshot());

	for (int i = 0; i < pd->nparts; i++)
	{
		if (pd->oids[i] == part)
			return true;
	}
	return false;
}

/*
 * The partition of parent named name (in parent's schema), locked ROW
 * EXCLUSIVE like the INSERT that routes rows into it, and in the partition
 * descriptor that INSERT will route with; InvalidOid if no relation has that
 * name.  A relation of that name that is not a partition of parent is an
 * ERROR: rows for its month would find no partition.
 */
static Oid
lock_partition(Relation parent, const char *name)
{
	Oid			part = get_relname_relid(name, RelationGetNamespace(parent));
	List	   *ancestors;

	if (!OidIsValid(part))
		return InvalidOid;

	/*
	 * A partition of parent in the catalog (pg_inherits, under the same
	 * snapshot that found the name), checked before it is locked: the
	 * caller's INSERT on parent gives no right to lock another table's
	 * partition, not even to wait for it.
	 */
	ancestors = get_rel_relispartition(part) ? get_partition_ancestors(part) : NIL;
	if (ancestors != NIL && linitial_oid(ancestors) == RelationGetRelid(parent))
	{
		/*
		 * Found in the catalog, whose snapshot sees a creator as soon as it
		 * has committed; the cached partition descriptor of parent only
		 * learns of it from the creator's invalidations, sent after that but
		 * before the creator releases its locks.  Locking the partition waits
		 * for them, and a new lock reads them.
		 */
		LockRelationOid(part, RowExclusiveLock);
		if (partdesc_has(parent, part))
			return part;

		/*
		 * PostgreSQL can cache a descriptor that predates a partition whose
		 * creator's invalidations it has already read: RelationBuildPartitionDesc
		 * lists the partitions under one catalog snapshot, then opens catalogs
		 * (reading invalidations, the creator's among them, which reset the
		 * descriptor being built) and installs what it built anyway.  Nothing
		 * resets it after that.  The creator is done (the lock says so):
		 * rebuild parent's entry from a fresh snapshot and look again.
		 */
		InvalidateCatalogSnapshot();
		RelationCacheInvalidateEntry(RelationGetRelid(parent));
		if (partdesc_has(parent, part))
			return part;
	}
	ereport(ERROR,
			(errcode(ERRCODE_WRONG_OBJECT_TYPE),
			 errmsg("relation \"%s.%s\" is not a partition of \"%s.%s\"",
					get_namespace_name(RelationGetNamespace(parent)), name,
					get_namespace_name(RelationGetNamespace(parent)),
					RelationGetRelationName(parent)),
			 errhint("Attach it again, or rename it so that the partition of its month can be created.")));
	return InvalidOid;			/* keep the compiler quiet */
}

PG_FUNCTION_INFO_V1(pgpoly_lock_partitions);

/*
 * pgpoly._lock_partitions(parent regclass, names text[]) RETURNS int: take
 * the locks an INSERT into parent takes, ROW EXCLUSIVE on parent and then on
 * the partitions named names that exist, before that INSERT; returns the
 * position (1-based) of the first name that has no relation, NULL if none.
 * A caller that may not INSERT into parent locks nothing (its INSERT raises
 * the privilege error).  Locking parent first, as the INSERT does, keeps the
 * partitions from being dropped meanwhile and the lock order of DROP.
 */
Datum
pgpoly_lock_partitions(PG_FUNCTION_ARGS)
{
	Oid			parentid = PG_GETARG_OID(0);
	ArrayType  *names = PG_GETARG_ARRAYTYPE_P(1);
	Relation	parent = NULL;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int32		missing = 0;

	if (get_rel_relkind(parentid) != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("relation with OID %u is not a partitioned table", parentid)));
	deconstruct_array(names, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (pg_class_aclcheck(parentid, GetUserId(), ACL_INSERT) == ACLCHECK_OK)
		parent = table_open(parentid, RowExclusiveLock);
	for (int i = 0; i < n; i++)
	{
		char	   *name;
		Oid			part;

		if (nulls[i])
			continue;
		name = TextDatumGetCString(elems[i]);
		part = parent ? lock_partition(parent, name) :
			get_relname_relid(name, get_rel_namespace(parentid));
		if (!OidIsValid(part) && missing == 0)
			missing = i + 1;
	}
	if (parent)
		table_close(parent, NoLock);	/* the locks are kept, as the INSERT's */
	if (missing == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32(missing);
}

/*
 * The rows of log_predictions, inserted without the executor
 * (pgpoly._prediction_insert): each element's values are converted as
 * jsonb_to_recordset converts them, checked as _log_predictions checks them,
 * routed to their partition, and inserted in batches (table_multi_insert and
 * the partition's indexes per tuple, as COPY does).
 */

/* The indexes of PredictionKeys, in the order of the columns they fill */
enum
{
	PK_MODEL, PK_VERSION, PK_ENTITY, PK_PREDICTION, PK_FEATURES, PK_CONFIDENCE,
	PK_LATENCY, PK_REQUEST_ID, PK_TS, PK_COUNT
};

/* The column of pgpoly.predictions each key fills (model: the pair's name) */
static const struct
{
	const char *name;
	Oid			type;
}			PredictionColumns[PK_COUNT] = {
	{"model_name", TEXTOID}, {"version", INT4OID}, {"entity", TEXTOID},
	{"prediction", JSONBOID}, {"features", JSONBOID}, {"confidence", FLOAT8OID},
	{"latency_ms", FLOAT8OID}, {"request_id", TEXTOID}, {"ts", TIMESTAMPTZOID}
};

StaticAssertDecl(lengthof(PredictionKeys) == PK_COUNT,
				 "PredictionKeys and PredictionColumns must match");

/* Rows of one partition buffered before they are inserted, as COPY's batches */
#define PREDICTION_BATCH 1000

/* A (model, version) pair as rows give it, resolved by _prediction_versions */
typedef struct PredictionPair
{
	text	   *m;
	bool		v_null;
	int32		v;				/* 0 when v_null */
	Datum		name;			/* text: the model's name */
	bool		ver_null;		/* no such model version */
	int32		ver;
} PredictionPair;

/* The state of one _prediction_insert call */
typedef struct PredictionInsert
{
	Relation	parent;
	EState	   *estate;
	ModifyTableState *mtstate;	/* a stand-in, for tuple routing */
	PartitionTupleRouting *proute;
	TupleTableSlot *rootslot;	/* the current row, as a row of parent */
	AttrNumber	attnum[PK_COUNT];	/* parent's column of each key */
	ExprState **defaults;		/* per column of parent not filled by a key */
	FmgrInfo	input[PK_COUNT];	/* input functions of the key columns */
	Oid			ioparam[PK_COUNT];
	PredictionPair *pairs;		/* sorted by pair_cmp */
	int			npairs;
	PredictionPair *last;		/* the pair of the previous row */
	ResultRelInfo *part;		/* the partition of the rows in slots */
	List	   *direct;			/* partitions found not refused (in es_query_cxt) */
	TupleTableSlot *slots[PREDICTION_BATCH];	/* part's slots, made as needed */
	int			nslots;			/* slots holding a row */
	CommandId	cid;
} PredictionInsert;

/*
 * The value of child i of a container whose children's data start at base,
 * the child's data spanning [start, end) there.  Numbers and containers are
 * stored int-aligned after padding (utils/jsonb.h).
 */
static void
jentry_value(JEntry je, const char *base, uint32 start, uint32 end, JsonbValue *v)
{
	if (JBE_ISNULL(je))
		v->type = jbvNull;
	else if (JBE_ISSTRING(je))
	{
		v->type = jbvString;
		v->val.string.val = (char *) base + start;
		v->val.string.len = end - start;
	}
	else if (JBE_ISNUMERIC(je))
	{
		v->type = jbvNumeric;
		v->val.numeric = (Numeric) (base + INTALIGN(start));
	}
	else if (JBE_ISBOOL_TRUE(je) || JBE_ISBOOL_FALSE(je))
	{
		v->type = jbvBool;
		v->val.boolean = JBE_ISBOOL_TRUE(je);
	}
	else
	{
		Assert(JBE_ISCONTAINER(je));
		v->type = jbvBinary;
		v->val.binary.data = (JsonbContainer *) (base + INTALIGN(start));
		v->val.binary.len = end - INTALIGN(start);
	}
}

/*
 * Read the values of element obj into vals, indexed as PredictionKeys (a
 * missing key reads as a JSON null, which converts as one).  An object's
 * children are its keys, then its values in the same order.
 */
static void
element_values(JsonbContainer *obj, JsonbValue *vals)
{
	int			count = JsonContainerSize(obj);
	const char *base = (const char *) &obj->children[count * 2];
	int			which[PK_COUNT] = {0};
	uint32		start = 0;
	uint32		end = 0;

	for (int k = 0; k < PK_COUNT; k++)
		vals[k].type = jbvNull;
	for (int i = 0; i < count * 2; i++)
	{
		JBE_ADVANCE_OFFSET(end, obj->children[i]);
		if (i >= count)
			jentry_value(obj->children[i], base, start, end, &vals[which[i - count]]);
		else if (i >= PK_COUNT ||
				 (which[i] = prediction_key(base + start, end - start)) < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a prediction row has a key that is not an argument of log_prediction")));
		start = end;
	}
}

/*
 * The text jsonb_to_recordset hands the input function of a column that is
 * not json(b) for the non-null value v: a string without its quotes, a
 * number or boolean as JSON writes it, a container as its JSON text.
 */
static char *
value_cstring(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v->val.numeric)));
		case jbvBinary:
			return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
	return NULL;				/* keep the compiler quiet */
}

/*
 * Value v of key k as jsonb_to_recordset converts it to k's column type: JSON
 * null is NULL; jsonb takes the value itself; any other type the input
 * function of the type on value_cstring's text (so the same value, or the
 * same error).  A string into text is that text, which textin would make.
 */
static Datum
convert_value(PredictionInsert *st, int k, JsonbValue *v, bool *isnull)
{
	Oid			type = PredictionColumns[k].type;

	*isnull = (v->type == jbvNull);
	if (*isnull)
		return (Datum) 0;
	if (type == JSONBOID)
		return JsonbPGetDatum(JsonbValueToJsonb(v));
	if (type == TEXTOID && v->type == jbvString)
		return PointerGetDatum(cstring_to_text_with_len(v->val.string.val,
														v->val.string.len));
	return InputFunctionCall(&st->input[k], value_cstring(v), st->ioparam[k], -1);
}

/* qsort/bsearch order of pairs: by version (NULL last), then model bytes */
static int
pair_cmp(const void *a, const void *b)
{
	const PredictionPair *x = a;
	const PredictionPair *y = b;
	int			xlen = VARSIZE_ANY_EXHDR(x->m);
	int			ylen = VARSIZE_ANY_EXHDR(y->m);

	if (x->v_null != y->v_null)
		return x->v_null ? 1 : -1;
	if (x->v != y->v)
		return x->v < y->v ? -1 : 1;
	if (xlen != ylen)
		return xlen < ylen ? -1 : 1;
	return memcmp(VARDATA_ANY(x->m), VARDATA_ANY(y->m), xlen);
}

/* Deconstruct the array argument argno of fcinfo (elements of type elemtype) */
static int
array_arg(FunctionCallInfo fcinfo, int argno, Oid elemtype, Datum **elems, bool **nulls)
{
	int16		len;
	bool		byval;
	char		align;
	int			n;

	get_typlenbyvalalign(elemtype, &len, &byval, &align);
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(argno), elemtype, len, byval, align,
					  elems, nulls, &n);
	return n;
}

/*
 * Load the resolved pairs given as parallel arrays (fcinfo's arguments 2-5:
 * m text[], v int[], name text[], ver int[], as _prediction_versions returns
 * them) into st, sorted for look-ups.  Byte equality of models is the
 * equality of the SQL this replaces (texteq, jsonb keys).
 */
static void
load_pairs(PredictionInsert *st, FunctionCallInfo fcinfo)
{
	Datum	   *m,
			   *v,
			   *name,
			   *ver;
	bool	   *m_null,
			   *v_null,
			   *name_null,
			   *ver_null;
	int			n = array_arg(fcinfo, 2, TEXTOID, &m, &m_null);

	if (array_arg(fcinfo, 3, INT4OID, &v, &v_null) != n ||
		array_arg(fcinfo, 4, TEXTOID, &name, &name_null) != n ||
		array_arg(fcinfo, 5, INT4OID, &ver, &ver_null) != n)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the arrays of resolved pairs must have the same length")));
	st->pairs = palloc(Max(n, 1) * sizeof(PredictionPair));
	for (int i = 0; i < n; i++)
	{
		PredictionPair *p = &st->pairs[st->npairs];

		if (m_null[i])
			continue;			/* matches no row */
		p->m = DatumGetTextPP(m[i]);
		p->v_null = v_null[i];
		p->v = v_null[i] ? 0 : DatumGetInt32(v[i]);
		p->name = name[i];
		p->ver_null = ver_null[i] || name_null[i];
		p->ver = ver_null[i] ? 0 : DatumGetInt32(ver[i]);
		st->npairs++;
	}
	qsort(st->pairs, st->npairs, sizeof(PredictionPair), pair_cmp);
}

/* The pair (m, v) of a row (v NULL: v_null), NULL if there is none */
static PredictionPair *
find_pair(PredictionInsert *st, text *m, bool v_null, int32 v)
{
	PredictionPair key;
	PredictionPair *found;

	key.m = m;
	key.v_null = v_null;
	key.v = v_null ? 0 : v;
	if (st->last && pair_cmp(&key, st->last) == 0)
		return st->last;
	found = bsearch(&key, st->pairs, st->npairs, sizeof(PredictionPair), pair_cmp);
	if (found)
		st->last = found;
	return found;
}

/*
 * Convert element obj (in jsonb_to_recordset's column order, so that the
 * first value to fail is the one it would fail on) and store it as a row of
 * parent in st->rootslot, its pair resolved and its other columns defaulted;
 * false, storing nothing, if it fails a check of _log_predictions (its pair
 * not a model version, prediction NULL, latency_ms negative or NaN,
 * request_id empty, ts not finite).  Allocates in the current context.
 */
static bool
form_row(PredictionInsert *st, JsonbContainer *obj)
{
	TupleTableSlot *slot = st->rootslot;
	ExprContext *econtext = GetPerTupleExprContext(st->estate);
	JsonbValue	vals[PK_COUNT];
	Datum		conv[PK_COUNT];
	bool		isnull[PK_COUNT];
	PredictionPair *pair;
	float8		latency;

	element_values(obj, vals);
	for (int k = 0; k < PK_COUNT; k++)
		conv[k] = convert_value(st, k, &vals[k], &isnull[k]);
	if (isnull[PK_MODEL] || isnull[PK_PREDICTION])
		return false;
	pair = find_pair(st, DatumGetTextPP(conv[PK_MODEL]), isnull[PK_VERSION],
					 DatumGetInt32(conv[PK_VERSION]));
	if (pair == NULL || pair->ver_null)
		return false;
	latency = DatumGetFloat8(conv[PK_LATENCY]);
	if (!isnull[PK_LATENCY] && (isnan(latency) || latency < 0))
		return false;
	if (!isnull[PK_REQUEST_ID] && VARSIZE_ANY_EXHDR(DatumGetTextPP(conv[PK_REQUEST_ID])) == 0)
		return false;
	if (isnull[PK_TS])
		conv[PK_TS] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	isnull[PK_TS] = false;
	if (TIMESTAMP_NOT_FINITE(DatumGetTimestampTz(conv[PK_TS])))
		return false;
	conv[PK_MODEL] = pair->name;
	conv[PK_VERSION] = Int32GetDatum(pair->ver);
	isnull[PK_VERSION] = false;

	/* the other columns' values (the identity ...), only for rows logged */
	ExecClearTuple(slot);
	for (int a = 0; a < slot->tts_tupleDescriptor->natts; a++)
	{
		slot->tts_values[a] = (Datum) 0;
		slot->tts_isnull[a] = true;
		if (st->defaults[a])
			slot->tts_values[a] = ExecEvalExpr(st->defaults[a], econtext,
											   &slot->tts_isnull[a]);
	}
	for (int k = 0; k < PK_COUNT; k++)
	{
		slot->tts_values[st->attnum[k] - 1] = conv[k];
		slot->tts_isnull[st->attnum[k] - 1] = isnull[k];
	}
	ExecStoreVirtualTuple(slot);
	return true;
}

/* Insert the rows buffered for st->part (PgpolyDirectInsertBatch) */
static void
flush_batch(PredictionInsert *st)
{
	PgpolyDirectInsertBatch(st->part, st->estate, st->slots, st->nslots, st->cid);
	st->nslots = 0;
}

/* Insert the rows buffered and let go of the current partition's slots */
static void
leave_partition(PredictionInsert *st, bool flush)
{
	if (st->part == NULL)
		return;
	if (flush)
		flush_batch(st);
	for (int i = 0; i < PREDICTION_BATCH && st->slots[i]; i++)
	{
		ExecDropSingleTupleTableSlot(st->slots[i]);
		st->slots[i] = NULL;
	}
	st->nslots = 0;
	table_finish_bulk_insert(st->part->ri_RelationDesc, 0);
	st->part = NULL;
}

/*
 * Route the row in st->rootslot to its partition and buffer it there after
 * the partition's NOT NULL and CHECK constraints; false, buffering nothing,
 * if that partition has what only the executor honours (triggers, a foreign
 * table, columns in another order, a volatile check:
 * PgpolyDirectInsertPartitionRefused).  A month without its partition is the
 * routing's ERROR, as the INSERT's.
 */
static bool
buffer_row(PredictionInsert *st)
{
	ResultRelInfo *part = ExecFindPartition(st->mtstate, st->mtstate->rootResultRelInfo,
											st->proute, st->rootslot, st->estate);
	TupleTableSlot *slot;

	if (part != st->part)
	{
		leave_partition(st, true);
		if (!list_member_ptr(st->direct, part))
		{
			MemoryContext old;

			if (PgpolyDirectInsertPartitionRefused(part))
				return false;
			/* asked once per partition: rows may switch partitions each */
			old = MemoryContextSwitchTo(st->estate->es_query_cxt);
			st->direct = lappend(st->direct, part);
			MemoryContextSwitchTo(old);
		}
		st->part = part;
	}
	if (st->slots[st->nslots] == NULL)
	{
		/* the slot, and the row copied into it, outlive the row's context */
		MemoryContext old = MemoryContextSwitchTo(st->estate->es_query_cxt);

		st->slots[st->nslots] = table_slot_create(part->ri_RelationDesc, NULL);
		MemoryContextSwitchTo(old);
	}
	/* checked as the row still is (no tuple to take apart: same columns) */
	if (part->ri_RelationDesc->rd_att->constr)
		ExecConstraints(part, st->rootslot, st->estate);
	slot = st->slots[st->nslots++];
	ExecCopySlot(slot, st->rootslot);
	if (st->nslots == PREDICTION_BATCH)
		flush_batch(st);
	return true;
}

/*
 * Find parent's column of each key (of the type jsonb_to_recordset converts
 * to) and the input function of its type.
 */
static void
prepare_columns(PredictionInsert *st)
{
	TupleDesc	desc = RelationGetDescr(st->parent);

	for (int k = 0; k < PK_COUNT; k++)
	{
		Oid			func;

		st->attnum[k] = InvalidAttrNumber;
		for (int a = 0; a < desc->natts; a++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, a);

			if (!att->attisdropped && strcmp(NameStr(att->attname), PredictionColumns[k].name) == 0)
				st->attnum[k] = a + 1;
		}
		if (st->attnum[k] == InvalidAttrNumber ||
			TupleDescAttr(desc, st->attnum[k] - 1)->atttypid != PredictionColumns[k].type)
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("relation \"%s\" has no column \"%s\" of type %s",
							RelationGetRelationName(st->parent), PredictionColumns[k].name,
							format_type_be(PredictionColumns[k].type))));
		getTypeInputInfo(PredictionColumns[k].type, &func, &st->ioparam[k]);
		fmgr_info(func, &st->input[k]);
	}
}

/* Set up the executor state that routes and inserts st's rows (as COPY's) */
static void
insert_begin(PredictionInsert *st, RangeTblEntry *rte)
{
	ResultRelInfo *root = makeNode(ResultRelInfo);

	st->estate = CreateExecutorState();
	ExecInitRangeTable(st->estate, list_make1(rte));
	ExecInitResultRelation(st->estate, root, 1);
	st->mtstate = makeNode(ModifyTableState);
	st->mtstate->ps.state = st->estate;
	st->mtstate->operation = CMD_INSERT;
	st->mtstate->mt_nrels = 1;
	st->mtstate->resultRelInfo = root;
	st->mtstate->rootResultRelInfo = root;
	st->proute = ExecSetupPartitionTupleRouting(st->estate, st->parent);
	st->cid = GetCurrentCommandId(true);
	st->estate->es_output_cid = st->cid;
	st->rootslot = ExecInitExtraTupleSlot(st->estate, RelationGetDescr(st->parent),
										  &TTSOpsVirtual);
}

/*
 * Open parentid and check what its INSERT by the current user would: USAGE
 * on its schema (the INSERT names it), INSERT on the key columns (the
 * executor's own check, with its hook).  False,
 * leaving nothing open, if something only the executor's INSERT honours
 * applies: a read-only or parallel context (its error), row-level
 * security, triggers, generated columns; the caller then INSERTs.
 */
static bool
insert_open(PredictionInsert *st, Oid parentid)
{
	RangeTblEntry *rte = makeNode(RangeTblEntry);

	if (XactReadOnly || IsInParallelMode() ||
		get_rel_relkind(parentid) != RELKIND_PARTITIONED_TABLE)
		return false;

	/*
	 * The lock is kept when this returns false: a caller that holds no
	 * INSERT on the table (nor on a column of it) must not get it, or a role
	 * that may only read the log would hold a writer's lock on it.
	 */
	if (!PgpolyMayInsert(parentid))
		return false;
	st->parent = table_open(parentid, RowExclusiveLock);	/* as the INSERT */
	prepare_columns(st);
	rte->rtekind = RTE_RELATION;
	rte->relid = parentid;
	rte->relkind = RELKIND_PARTITIONED_TABLE;
	rte->rellockmode = RowExclusiveLock;
	rte->requiredPerms = ACL_INSERT;
	for (int k = 0; k < PK_COUNT; k++)
		rte->insertedCols = bms_add_member(rte->insertedCols,
										   st->attnum[k] - FirstLowInvalidHeapAttributeNumber);
	if (PgpolyDirectInsertRefused(st->parent, rte))
	{
		table_close(st->parent, NoLock);
		return false;
	}
	st->defaults = PgpolyDirectInsertDefaults(st->parent, rte);
	insert_begin(st, rte);
	return true;
}

/* Insert what is buffered (if flush) and release what insert_begin set up */
static void
insert_end(PredictionInsert *st, bool flush)
{
	leave_partition(st, flush);
	ExecResetTupleTable(st->estate->es_tupleTable, false);
	ExecCleanupTupleRouting(st->mtstate, st->proute);
	ExecCloseResultRelations(st->estate);
	ExecCloseRangeTableRelations(st->estate);
	FreeExecutorState(st->estate);
	table_close(st->parent, NoLock);	/* the lock is kept, as the INSERT's */
}

PG_FUNCTION_INFO_V1(pgpoly_prediction_insert);

/*
 * pgpoly._prediction_insert(parent regclass, rows jsonb, m text[], v int[],
 * name text[], ver int[]) RETURNS bigint: insert the elements of rows (JSON
 * objects with known keys, as _prediction_scan found them) into the
 * partitions of parent, their pairs resolved through the arrays (as
 * _prediction_versions returns them), in the order of rows.  Returns the
 * number inserted: all of them, or fewer if a row failed a check or reached
 * a partition that needs the executor (the caller must then undo them, by
 * an ERROR); NULL, having inserted nothing, if parent needs the executor.
 * A value its type refuses is that type's ERROR, raised at the first
 * element and key jsonb_to_recordset would raise it at.
 */
Datum
pgpoly_prediction_insert(PG_FUNCTION_ARGS)
{
	Jsonb	   *rows = PG_GETARG_JSONB_P(1);
	JsonbContainer *root = &rows->root;
	int			count = JsonContainerSize(root);
	const char *base = (const char *) &root->children[count];
	PredictionInsert *st = palloc0(sizeof(PredictionInsert));
	MemoryContext rowcxt;
	uint32		start = 0;
	uint32		end = 0;
	int64		n = 0;

	if (!JB_ROOT_IS_ARRAY(rows) || JB_ROOT_IS_SCALAR(rows))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("argument \"rows\" must be a JSON array")));
	load_pairs(st, fcinfo);
	if (!insert_open(st, PG_GETARG_OID(0)))
		PG_RETURN_NULL();
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "log_predictions row",
								   ALLOCSET_DEFAULT_SIZES);
	for (int i = 0; i < count; i++)
	{
		JsonbValue	elem;
		MemoryContext old;
		bool		ok;

		CHECK_FOR_INTERRUPTS();
		JBE_ADVANCE_OFFSET(end, root->children[i]);
		jentry_value(root->children[i], base, start, end, &elem);
		start = end;
		if (elem.type != jbvBinary || !JsonContainerIsObject(elem.val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("element %d of rows is not a JSON object", i + 1)));
		old = MemoryContextSwitchTo(rowcxt);
		ok = form_row(st, elem.val.binary.data) && buffer_row(st);
		MemoryContextSwitchTo(old);
		MemoryContextReset(rowcxt);
		ResetPerTupleExprContext(st->estate);
		if (!ok)
			break;
		n++;
	}
	insert_end(st, n == count);
	MemoryContextDelete(rowcxt);
	PG_RETURN_INT64(n);
}
