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
 *
 * src/predictions.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/jsonb.h"

/* The keys of a log_predictions element: log_prediction's argument names. */
static const char *const PredictionKeys[] = {
	"model", "version", "entity", "prediction", "features", "confidence",
	"latency_ms", "request_id", "ts"
};

/* Which known key a JSON object key is (its index), or -1. */
static int
prediction_key(const JsonbValue *k)
{
	for (int i = 0; i < lengthof(PredictionKeys); i++)
	{
		if (strlen(PredictionKeys[i]) == (size_t) k->val.string.len &&
			memcmp(PredictionKeys[i], k->val.string.val, k->val.string.len) == 0)
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
 * log_prediction argument.
 */
static bool
scan_element(JsonbContainer *obj, JsonbValue *pair)
{
	JsonbIterator *it = JsonbIteratorInit(obj);
	JsonbIteratorToken tok;
	JsonbValue	k;
	JsonbValue	v;
	int			which = -1;

	pair[0].type = jbvNull;
	pair[1].type = jbvNull;
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			which = prediction_key(&k);
			if (which < 0)
				return false;	/* the iterator's memory goes with the call's */
			tok = JsonbIteratorNext(&it, &v, true);
			Assert(tok == WJB_VALUE);
			if (which <= 1)
				pair[which] = v;
		}
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
		k.val.string.val = (char *) PredictionKeys[i];
		k.val.string.len = strlen(PredictionKeys[i]);
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
