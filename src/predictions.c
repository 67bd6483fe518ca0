/*-------------------------------------------------------------------------
 *
 * predictions.c
 *		  The light pass of pgpoly.log_predictions(): one walk over the JSON
 *		  array of prediction rows before the one INSERT that logs them.
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
 *
 * src/predictions.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "partitioning/partdesc.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

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
	PartitionDesc pd;

	if (!OidIsValid(part))
		return InvalidOid;
	if (get_rel_relispartition(part))
	{
		/*
		 * Found in the catalog, whose snapshot sees a creator as soon as it
		 * has committed; the cached partition descriptor of parent only
		 * learns of it from the creator's invalidations, sent after that but
		 * before the creator releases its locks.  Locking the partition waits
		 * for them, and a new lock reads them.
		 */
		LockRelationOid(part, RowExclusiveLock);
		pd = RelationGetPartitionDesc(parent, !IsolationUsesXactSnapshot());
		for (int i = 0; i < pd->nparts; i++)
		{
			if (pd->oids[i] == part)
				return part;
		}
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
