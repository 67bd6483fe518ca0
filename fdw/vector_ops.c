/*-------------------------------------------------------------------------
 *
 * vector_ops.c
 *		  Distance operators on real[] and pgpoly.vector_search().
 *
 * The operators <-> (Euclidean), <=> (cosine distance) and <#> (negative
 * inner product) use pgvector's spelling and metrics, so a query written
 * for pgvector reads the same against a pgpoly_vector table; the planner
 * recognises them in ORDER BY to push a k-NN search down (vector_fdw.c),
 * and they compute locally everywhere else.  Sums are accumulated in
 * double precision.
 *
 * Invariants: a dimension mismatch, a NULL element or a multidimensional
 * array is an ERROR, never a silently wrong distance.
 *
 * fdw/vector_ops.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pgpoly_jansson.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"

#include "vector.h"

/* Extract the float4 elements of a real[] datum; ERROR on NULLs or >1 dims. */
static float4 *
array_floats(ArrayType *arr, int *dim)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	float4	   *v;
	Oid			elemtype = ARR_ELEMTYPE(arr);

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("a vector must be a one-dimensional array")));
	if (elemtype == FLOAT4OID && !ARR_HASNULL(arr))
	{
		/* real[] without NULLs: its elements are the float4s, one after another */
		n = ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
		v = palloc(sizeof(float4) * Max(n, 1));
		if (n > 0)
			memcpy(v, ARR_DATA_PTR(arr), sizeof(float4) * n);
		*dim = n;
		return v;
	}
	if (elemtype == FLOAT4OID)
		deconstruct_array(arr, FLOAT4OID, 4, true, TYPALIGN_INT, &elems, &nulls, &n);
	else if (elemtype == FLOAT8OID)
		deconstruct_array(arr, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
						  &elems, &nulls, &n);
	else
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("a vector must be an array of real, not of %s",
						format_type_be(elemtype))));
	v = palloc(sizeof(float4) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("a vector must not contain NULL elements"),
					 errdetail("Element %d is NULL.", i + 1)));
		v[i] = elemtype == FLOAT4OID ? DatumGetFloat4(elems[i]) :
			(float4) DatumGetFloat8(elems[i]);
	}
	*dim = n;
	return v;
}

/* Parse pgvector's text form "[1,2,3]" (a JSON array of numbers). */
static float4 *
text_floats(const char *s, int *dim)
{
	int			cap = 16;
	int			n = 0;
	float4	   *v = palloc(sizeof(float4) * cap);
	const char *p = strchr(s, '[');

	if (p == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("invalid vector: \"%s\"", s)));
	for (p++; *p && *p != ']';)
	{
		char	   *end;

		if (n == cap)
			v = repalloc(v, sizeof(float4) * (cap *= 2));
		v[n++] = strtof(p, &end);
		if (end == p)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("invalid vector: \"%s\"", s)));
		p = end;
		while (*p == ',' || *p == ' ')
			p++;
	}
	*dim = n;
	return v;
}

/*
 * The elements of a vector datum of type typid: real[], double precision[]
 * or pgvector's vector.  Returns a palloc'd array and its length in *dim.
 */
float4 *
VectorDatumFloats(Datum value, Oid typid, int *dim)
{
	Oid			outfn;
	bool		isvarlena;

	if (type_is_array(typid))
		return array_floats(DatumGetArrayTypeP(value), dim);
	getTypeOutputInfo(typid, &outfn, &isvarlena);
	return text_floats(OidOutputFunctionCall(outfn, value), dim);
}

/* Append v as a JSON array of shortest round-trip float4 literals. */
static void
append_floats(StringInfo buf, const float4 *v, int dim, char open, char close)
{
	char		num[FLOAT_SHORTEST_DECIMAL_LEN];

	appendStringInfoChar(buf, open);
	for (int i = 0; i < dim; i++)
	{
		if (i > 0)
			appendStringInfoChar(buf, ',');
		float_to_shortest_decimal_buf(v[i], num);
		appendStringInfoString(buf, num);
	}
	appendStringInfoChar(buf, close);
}

/* A datum of col's type (real[] or pgvector's vector) holding v. */
Datum
VectorFloatsDatum(const float4 *v, int dim, VectorColumn *col)
{
	StringInfoData buf;

	if (col->typid == FLOAT4ARRAYOID)
	{
		Datum	   *elems = palloc(sizeof(Datum) * Max(dim, 1));

		for (int i = 0; i < dim; i++)
			elems[i] = Float4GetDatum(v[i]);
		return PointerGetDatum(construct_array(elems, dim, FLOAT4OID, 4, true,
											   TYPALIGN_INT));
	}
	initStringInfo(&buf);
	append_floats(&buf, v, dim, '[', ']');
	return PgpolyTextToDatum(&col->conv, buf.data, buf.len);
}

/* Distance between a and b (same dimension) in metric. */
double
VectorLocalDistance(VectorDistance metric, const float4 *a, const float4 *b, int dim)
{
	double		dot = 0,
				na = 0,
				nb = 0,
				l2 = 0;

	for (int i = 0; i < dim; i++)
	{
		double		x = a[i],
					y = b[i];

		dot += x * y;
		na += x * x;
		nb += y * y;
		l2 += (x - y) * (x - y);
	}
	switch (metric)
	{
		case VDIST_L2:
			return sqrt(l2);
		case VDIST_COSINE:
			if (na == 0 || nb == 0)
				return get_float8_nan();
			return 1.0 - dot / sqrt(na * nb);
		case VDIST_IP:
			return -dot;
		default:
			elog(ERROR, "unknown vector metric %d", (int) metric);
	}
	return 0;					/* keep compiler quiet */
}

/*
 * A distance Chroma reports for a collection of distance d, in the metric
 * of d's operator: l2 is squared, ip is 1 - dot, cosine is already 1 - cos.
 */
double
VectorConvertDistance(VectorDistance d, double chroma)
{
	switch (d)
	{
		case VDIST_L2:
			return sqrt(Max(chroma, 0.0));
		case VDIST_IP:
			return chroma - 1.0;
		default:
			return chroma;
	}
}

/* The two real[] arguments of an operator call, checked for dimensions. */
static double
operator_distance(FunctionCallInfo fcinfo, VectorDistance metric)
{
	int			da,
				db;
	float4	   *a = array_floats(PG_GETARG_ARRAYTYPE_P(0), &da);
	float4	   *b = array_floats(PG_GETARG_ARRAYTYPE_P(1), &db);

	if (da != db)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("different vector dimensions %d and %d", da, db)));
	return VectorLocalDistance(metric, a, b, da);
}

PG_FUNCTION_INFO_V1(pgpoly_l2_distance);
PG_FUNCTION_INFO_V1(pgpoly_cosine_distance);
PG_FUNCTION_INFO_V1(pgpoly_negative_inner_product);

/* real[] <-> real[]: Euclidean distance. */
Datum
pgpoly_l2_distance(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(operator_distance(fcinfo, VDIST_L2));
}

/* real[] <=> real[]: cosine distance (1 - cosine similarity). */
Datum
pgpoly_cosine_distance(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(operator_distance(fcinfo, VDIST_COSINE));
}

/* real[] <#> real[]: negative inner product. */
Datum
pgpoly_negative_inner_product(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(operator_distance(fcinfo, VDIST_IP));
}

/* ----------------------------------------------------------------
 *		pgpoly.vector_search()
 * ----------------------------------------------------------------
 */

/* Whether metadata key is one that tbl maps to a column (VCOL_FIELD). */
static bool
is_field_key(VectorTable *tbl, const char *key)
{
	for (int i = 0; i < tbl->natts; i++)
		if (tbl->cols[i].role == VCOL_FIELD && strcmp(tbl->cols[i].field, key) == 0)
			return true;
	return false;
}

/* Whether number d is one of the whole numbers of JSON array arr. */
static bool
whole_in_array(json_t *arr, double d)
{
	size_t		i;
	json_t	   *e;

	json_array_foreach(arr, i, e)
		if (json_is_number(e) && json_number_value(e) == d)
		return true;
	return false;
}

/*
 * conds with what keeps an IN of array arr from matching integers it does
 * not hold, for tbl's service.  Chroma (truncates_bounds, see
 * VectorNumberConds) compares an integer it holds with a fractional value
 * of $in truncated: 2 is "in" [2.5].  An integer equals no fractional
 * number, so for each fractional element d the integers floor(d) and
 * floor(d) + 1 (whichever way the service truncates) are excluded, unless
 * the array holds them: x < i OR x > i, which compares exactly with
 * integers and floats alike (a float equal to d still passes), OR what
 * others (the IN of the array's strings and booleans, or NULL) admits.
 */
static List *
exclude_truncated(List *conds, VectorTable *tbl, const char *key, json_t *arr,
				  VectorCondEval *others)
{
	size_t		i;
	json_t	   *e;

	if (!tbl->provider->truncates_bounds)
		return conds;
	json_array_foreach(arr, i, e)
	{
		double		d = json_is_number(e) ? json_number_value(e) : 0;

		if (!json_is_number(e) || d == floor(d))
			continue;
		/* not whole, so well within the range of int64 */
		for (int64 n = (int64) floor(d); n <= (int64) floor(d) + 1; n++)
		{
			VectorCondEval *lt = palloc0(sizeof(VectorCondEval));
			VectorCondEval *gt = palloc0(sizeof(VectorCondEval));

			if (whole_in_array(arr, (double) n))
				continue;
			lt->key = gt->key = pstrdup(key);
			lt->op = VCOND_LT;
			gt->op = VCOND_GT;
			lt->value = gt->value = psprintf(INT64_FORMAT, n);
			lt->or_else = gt;
			gt->or_else = others;
			conds = lappend(conds, lt);
		}
	}
	return conds;
}

/*
 * The number filter holds at key (element i of the array there, or the
 * value itself for i < 0), as a numeric datum: its exact value, which
 * jansson's double may have rounded (9007199254740993, 0.1000000000000000001).
 */
static Datum
filter_number(Jsonb *filter, const char *key, int i)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&filter->root, key, strlen(key), NULL);

	if (v != NULL && i >= 0 && v->type == jbvBinary)
		v = getIthJsonbValueFromContainer(v->val.binary.data, i);
	if (v == NULL || v->type != jbvNumeric)
		elog(ERROR, "filter key \"%s\" does not hold a number", key);
	return NumericGetDatum(v->val.numeric);
}

/*
 * Refuse an IN array arr (at key of filter) holding a number that would
 * not be sent exactly as written (VectorNumericSentExactly): the service
 * would compare its rounded double.
 */
static void
check_array_numbers(VectorTable *tbl, Jsonb *filter, const char *key, json_t *arr)
{
	size_t		i;
	json_t	   *e;

	json_array_foreach(arr, i, e)
	{
		Datum		num;

		if (!json_is_number(e))
			continue;
		num = filter_number(filter, key, (int) i);
		if (!VectorNumericSentExactly(tbl, num))
			VectorRefuseRounded(tbl, key, num, true);
	}
}

/* The JSON kinds an IN array may hold, each sent as an array of its own. */
typedef enum FilterKind
{
	FK_NUMBER,
	FK_STRING,
	FK_BOOLEAN
} FilterKind;

/* VCOND_IN of key and the elements of arr of kind k, or_else others; NULL if none. */
static VectorCondEval *
in_of_kind(const char *key, json_t *arr, FilterKind k, VectorCondEval *others)
{
	json_t	   *part = json_array();
	VectorCondEval *c = NULL;
	size_t		i;
	json_t	   *e;
	char	   *s;

	json_array_foreach(arr, i, e)
		if (k == FK_NUMBER ? json_is_number(e) :
			k == FK_STRING ? json_is_string(e) : json_is_boolean(e))
		json_array_append(part, e);
	if (json_array_size(part) > 0)
	{
		s = json_dumps(part, JSON_COMPACT);
		if (s == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory building a JSON document")));
		c = palloc0(sizeof(VectorCondEval));
		c->key = pstrdup(key);
		c->op = VCOND_IN;
		c->value = pstrdup(s);
		c->or_else = others;
		free(s);
	}
	json_decref(part);
	return c;
}

/*
 * conds with the IN of filter array arr at key: a service compares the
 * elements of one $in of one type (Chroma answers HTTP 400 to [1, "1"]),
 * so the numbers, strings and booleans are each an IN, ORed; the numbers'
 * with exclude_truncated.  *empty for an empty array, which no record
 * matches (a service refuses an empty $in).  An element that is no
 * scalar equals no metadata value a service holds: ERROR, as for a value.
 */
static List *
array_conditions(List *conds, VectorTable *tbl, Jsonb *filter, const char *key,
				 json_t *arr, bool *empty)
{
	VectorCondEval *others;
	VectorCondEval *strings;
	VectorCondEval *numbers;
	size_t		i;
	json_t	   *e;

	json_array_foreach(arr, i, e)
		if (!json_is_string(e) && !json_is_number(e) && !json_is_boolean(e))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("filter array for key \"%s\" must hold strings, numbers or booleans", key)));
	if (json_array_size(arr) == 0)
	{
		*empty = true;
		return conds;
	}
	check_array_numbers(tbl, filter, key, arr);
	others = in_of_kind(key, arr, FK_BOOLEAN, NULL);
	strings = in_of_kind(key, arr, FK_STRING, others);
	if (strings != NULL)
		others = strings;
	numbers = in_of_kind(key, arr, FK_NUMBER, others);
	if (numbers == NULL)
		return lappend(conds, others);
	conds = lappend(conds, numbers);
	return exclude_truncated(conds, tbl, key, arr, others);
}

/*
 * The filter jsonb as pushed conditions: scalar -> equality, array -> IN
 * (array_conditions); *empty when a number no stored number equals.
 * Without a metadata column, tbl exposes only its metadata-field columns:
 * a key of another field is not a column of it, as in a WHERE clause.
 */
static List *
filter_conditions(VectorTable *tbl, Jsonb *filter, bool *empty)
{
	char	   *text = JsonbToCString(NULL, &filter->root, VARSIZE(filter));
	json_error_t err;
	json_t	   *doc = json_loads(text, JSON_DECODE_ANY, &err);
	List	   *conds = NIL;
	const char *key;
	json_t	   *v;

	/* Owned by the context: the keys stay valid for the messages below. */
	if (doc != NULL)
		PgpolyJsonOwn(doc);
	/* jsonb's text is valid JSON: jansson refuses only a number it cannot hold */
	if (doc == NULL && JB_ROOT_IS_OBJECT(filter))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("filter holds a number beyond the range a vector service compares: %s",
						err.text)));
	if (doc == NULL || !json_is_object(doc))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("filter must be a JSON object of metadata keys and values")));
	json_object_foreach(doc, key, v)
	{
		VectorCondEval *c = palloc0(sizeof(VectorCondEval));
		char	   *s;

		if (!json_is_array(v) && !json_is_string(v) && !json_is_number(v) &&
			!json_is_boolean(v))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("filter value for key \"%s\" must be a string, number, boolean or array", key)));
		if (tbl->meta_att == 0 && !is_field_key(tbl, key))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("filter key \"%s\" is not a column of foreign table \"%s\"",
							key, tbl->relname),
					 errhint("Without a metadata column, vector_search filters only on the metadata fields the table has as columns.")));
		if (!VectorFilterableKey(key))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("filter key \"%s\" cannot be searched for: the service reads a key beginning with \"$\" as an operator",
							key),
					 errhint("Compare it in the WHERE clause of a k-NN query (ORDER BY embedding <-> query LIMIT k), which evaluates it locally.")));
		/* a number is compared as a WHERE clause's numeric is */
		if (json_is_number(v))
		{
			conds = VectorNumericEqConds(conds, tbl, pstrdup(key),
										 filter_number(filter, key, -1), empty);
			continue;
		}
		if (json_is_array(v))
		{
			conds = array_conditions(conds, tbl, filter, key, v, empty);
			continue;
		}
		c->key = pstrdup(key);
		c->op = VCOND_EQ;
		s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		if (s == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory building a JSON document")));
		c->value = pstrdup(s);
		free(s);
		conds = lappend(conds, c);
	}
	return conds;
}

/*
 * The metadata of a record as jsonb, limited to what tbl exposes: all of
 * it through a metadata column, else only the keys of its metadata-field
 * columns (NULL if none is present).
 */
static Datum
exposed_metadata(VectorTable *tbl, const char *metadata, bool *isnull)
{
	Datum		all = PgpolyJsonbFromServerText(metadata, strlen(metadata), NULL);
	JsonbContainer *root = &DatumGetJsonbP(all)->root;
	StringInfoData buf;

	*isnull = false;
	if (tbl->meta_att != 0)
		return all;
	initStringInfo(&buf);
	for (int i = 0; i < tbl->natts && JsonContainerIsObject(root); i++)
	{
		VectorColumn *col = &tbl->cols[i];
		JsonbValue *v;

		if (col->role != VCOL_FIELD)
			continue;
		v = getKeyJsonValueFromContainer(root, col->field, strlen(col->field), NULL);
		if (v == NULL)
			continue;
		appendStringInfoChar(&buf, buf.len ? ',' : '{');
		escape_json(&buf, col->field);
		appendStringInfo(&buf, ":%s", JsonbToCString(NULL, &JsonbValueToJsonb(v)->root, 0));
	}
	if (buf.len == 0)
	{
		*isnull = true;
		return (Datum) 0;
	}
	appendStringInfoChar(&buf, '}');
	return PgpolyJsonbFromText(buf.data, buf.len);
}

/*
 * Put one search result row into the SRF's tuplestore: the document and
 * metadata only as far as tbl has columns for them, as its k-NN query.
 */
static void
put_result(ReturnSetInfo *rsinfo, VectorTable *tbl, VectorRow *row)
{
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};

	values[0] = CStringGetTextDatum(row->id);
	values[1] = Float8GetDatum(row->distance);
	nulls[1] = !row->has_distance;
	if (row->document_nul && tbl->doc_att != 0)
		VectorDocumentNul(row, NULL);
	if (row->document && tbl->doc_att != 0)
		values[2] = CStringGetTextDatum(row->document);
	else
		nulls[2] = true;
	if (row->metadata && (tbl->meta_att != 0 || tbl->has_fields))
		values[3] = exposed_metadata(tbl, row->metadata, &nulls[3]);
	else
		nulls[3] = true;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * The columns of tbl that vector_search() reads, as the SELECT it stands
 * for would: id, the embedding searched, document, metadata, and the
 * metadata fields mapped to columns (the metadata it returns holds them).
 */
static Bitmapset *
searched_columns(VectorTable *tbl)
{
	Bitmapset  *cols = NULL;

	for (int i = 0; i < tbl->natts; i++)
	{
		VectorColRole role = tbl->cols[i].role;

		if (role != VCOL_NONE && role != VCOL_DISTANCE)
			cols = bms_add_member(cols, i + 1);
	}
	return cols;
}

PG_FUNCTION_INFO_V1(pgpoly_vector_search);

/*
 * pgpoly.vector_search(tbl, query, k, filter): the k nearest records of a
 * pgpoly_vector table in the metric of its collection's distance, nearest
 * first, for callers that cannot write ORDER BY ... <-> ... LIMIT k.  The
 * caller needs the SELECT privileges that query would need, and gets what
 * it would read: no document or metadata the table has no column for.
 */
Datum
pgpoly_vector_search(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			relid;
	VectorTable *tbl;
	PgpolyConnection *conn;
	VectorCollection *coll;
	VectorScanSpec spec;
	VectorScan *scan;
	VectorRow  *row;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tbl, query and k of pgpoly.vector_search must not be NULL")));
	relid = PG_GETARG_OID(0);
	if (PG_GETARG_INT32(2) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("k must not be negative")));
	if (!VectorIsVectorTable(relid))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a pgpoly_vector foreign table",
						PgpolyRelationName(relid))));
	SetSingleFuncCall(fcinfo, 0);

	tbl = VectorLoadTable(relid, GetUserId());
	PgpolyCheckSelect(relid, searched_columns(tbl));
	conn = VectorGetConnection(tbl);
	/* the metric: read in this transaction, as VectorScanBegin reads it */
	coll = VectorFreshCollection(conn, tbl, false);
	memset(&spec, 0, sizeof(spec));
	spec.query = array_floats(PG_GETARG_ARRAYTYPE_P(1), &spec.dim);
	spec.metric = coll->distance;
	spec.k = PG_GETARG_INT32(2);
	spec.include = VINC_DISTANCE | (tbl->doc_att ? VINC_DOCUMENT : 0) |
		(tbl->meta_att || tbl->has_fields ? VINC_METADATA : 0);
	if (!PG_ARGISNULL(3))
		spec.conds = filter_conditions(tbl, PG_GETARG_JSONB_P(3), &spec.empty);
	spec.where = VectorWhereJson(tbl, spec.conds);
	if (tbl->emb_att == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_COLUMN_NAME_NOT_FOUND),
				 errmsg("foreign table \"%s\" has no column \"embedding\"", tbl->relname)));

	scan = VectorScanBegin(tbl, conn, &spec, PgpolyPendingWrites(conn, tbl->relid));
	while ((row = VectorScanNext(scan)) != NULL)
		put_result(rsinfo, tbl, row);
	PG_RETURN_VOID();
}
