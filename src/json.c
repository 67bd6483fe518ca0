/*-------------------------------------------------------------------------
 *
 * json.c
 *		  JSON <-> datum conversion shared by the stores.
 *
 * Incoming JSON (a Redis json value, an Elasticsearch _source, vector
 * metadata) is parsed with PostgreSQL's own jsonb parser, not jansson:
 * it keeps numeric precision and accepts everything PostgreSQL accepts, and
 * the result is exactly what a jsonb column would hold.  Field values are
 * turned into the text form of the target column type and then go through
 * that type's input function, so every SQL type converts the same way.
 *
 * Outgoing JSON is written with escape_json(); numbers and booleans keep
 * their JSON types, json/jsonb values are embedded as is, arrays become
 * JSON arrays, dates and times are ISO 8601 strings as to_json() writes
 * them, everything else becomes a JSON string of its text form.
 *
 * src/json.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pgpoly_jansson.h"

#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "parser/parse_coerce.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "pgpoly.h"

/* Parse len bytes of JSON text into a jsonb datum (ERROR on bad JSON). */
Datum
PgpolyJsonbFromText(const char *json, int len)
{
	char	   *copy = pnstrdup(json, len);

	return DirectFunctionCall1(jsonb_in, CStringGetDatum(copy));
}

static void append_array_literal(StringInfo buf, JsonbContainer *array);

/* Append one jsonb scalar as an element of a PostgreSQL array literal. */
static void
append_array_element(StringInfo buf, JsonbValue *v)
{
	const char *s;

	switch (v->type)
	{
		case jbvNull:
			appendStringInfoString(buf, "NULL");
			return;
		case jbvBinary:
			if (JsonContainerIsArray(v->val.binary.data))
			{
				append_array_literal(buf, v->val.binary.data);
				return;
			}
			s = JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
			break;
		case jbvString:
			s = pnstrdup(v->val.string.val, v->val.string.len);
			break;
		case jbvNumeric:
			s = DatumGetCString(DirectFunctionCall1(numeric_out,
													NumericGetDatum(v->val.numeric)));
			break;
		case jbvBool:
			s = v->val.boolean ? "true" : "false";
			break;
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
	/* Quote every element: array_in then never misreads braces or commas. */
	appendStringInfoChar(buf, '"');
	for (; *s; s++)
	{
		if (*s == '"' || *s == '\\')
			appendStringInfoChar(buf, '\\');
		appendStringInfoChar(buf, *s);
	}
	appendStringInfoChar(buf, '"');
}

/* Append a jsonb array as a PostgreSQL array literal ({..}). */
static void
append_array_literal(StringInfo buf, JsonbContainer *array)
{
	int			n = JsonContainerSize(array);
	int			i;

	appendStringInfoChar(buf, '{');
	for (i = 0; i < n; i++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(array, i);

		if (i > 0)
			appendStringInfoChar(buf, ',');
		append_array_element(buf, v);
	}
	appendStringInfoChar(buf, '}');
}

/*
 * Text form, for a column's input function, of one jsonb value.  A JSON
 * array becomes an array literal when the column is an array; other
 * containers become JSON text (for json/jsonb columns).  Returns NULL for
 * JSON null.
 */
static char *
jsonb_value_text(JsonbValue *v, bool to_array)
{
	StringInfoData buf;

	switch (v->type)
	{
		case jbvNull:
			return NULL;
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		case jbvBinary:
			initStringInfo(&buf);
			if (to_array && JsonContainerIsArray(v->val.binary.data))
				append_array_literal(&buf, v->val.binary.data);
			else
				JsonbToCString(&buf, v->val.binary.data, v->val.binary.len);
			return buf.data;
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
	return NULL;
}

/*
 * Text form of the top-level field of a jsonb object, ready for the input
 * function of a column (to_array: the column is an array type).  Returns
 * NULL when the field is absent or JSON null.  A path "a.b" descends into
 * nested objects.
 */
char *
PgpolyJsonbFieldText(Datum jsonb, const char *field, bool to_array)
{
	Jsonb	   *jb = DatumGetJsonbP(jsonb);
	JsonbContainer *c = &jb->root;
	JsonbValue *v = NULL;
	const char *p = field;

	for (;;)
	{
		const char *dot = strchr(p, '.');
		int			len = dot ? (int) (dot - p) : (int) strlen(p);

		if (!JsonContainerIsObject(c))
			return NULL;
		v = getKeyJsonValueFromContainer(c, p, len, NULL);
		if (v == NULL)
			return NULL;
		/* A literal dotted key wins over descending: try it first. */
		if (dot == NULL)
			break;
		if (v->type != jbvBinary)
			return NULL;
		c = v->val.binary.data;
		p = dot + 1;
	}
	return jsonb_value_text(v, to_array);
}

/* Whether s is a valid JSON number (numeric_out can say NaN, Infinity). */
static bool
is_json_number(const char *s)
{
	return s[0] == '-' || (s[0] >= '0' && s[0] <= '9');
}

/*
 * Append value, of type typid, to buf as a JSON value.
 */
void
PgpolyJsonAppendValue(StringInfo buf, Datum value, Oid typid, bool isnull)
{
	Oid			outfn;
	bool		isvarlena;
	char	   *s;

	if (isnull)
	{
		appendStringInfoString(buf, "null");
		return;
	}
	if (type_is_array(typid))
	{
		s = TextDatumGetCString(DirectFunctionCall1(array_to_json, value));
		appendStringInfoString(buf, s);
		return;
	}
	switch (typid)
	{
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			{
				/* ISO 8601, exactly as to_json() writes it. */
				char		dt[MAXDATELEN + 1];

				appendStringInfoChar(buf, '"');
				appendStringInfoString(buf, JsonEncodeDateTime(dt, value, typid, NULL));
				appendStringInfoChar(buf, '"');
				return;
			}
		default:
			break;
	}
	getTypeOutputInfo(typid, &outfn, &isvarlena);
	s = OidOutputFunctionCall(outfn, value);
	switch (TypeCategory(typid))
	{
		case TYPCATEGORY_NUMERIC:
			if (is_json_number(s) && strcmp(s, "-Infinity") != 0)
			{
				appendStringInfoString(buf, s);
				return;
			}
			break;
		case TYPCATEGORY_BOOLEAN:
			appendStringInfoString(buf, DatumGetBool(value) ? "true" : "false");
			return;
		default:
			if (typid == JSONOID || typid == JSONBOID)
			{
				appendStringInfoString(buf, s);
				return;
			}
			break;
	}
	escape_json(buf, s);
}

/* Memory context callback: drop the reference the context holds. */
static void
json_release(void *arg)
{
	json_decref((json_t *) arg);
}

/*
 * Make the current memory context own doc: it is released when the context
 * is reset or deleted, so no error path can leak it.  A NULL doc (jansson
 * out of memory) is an ERROR.  Returns doc.
 */
json_t *
PgpolyJsonOwn(json_t *doc)
{
	MemoryContextCallback *cb;

	if (doc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory building a JSON document")));
	cb = palloc(sizeof(MemoryContextCallback));
	cb->func = json_release;
	cb->arg = doc;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, cb);
	return doc;
}

/*
 * Parse a store's JSON response (what: e.g. "search response") with
 * jansson, owned by the current memory context (PgpolyJsonOwn).  Malformed
 * JSON is an ERROR naming the server and quoting an excerpt of the text.
 */
json_t *
PgpolyJsonParse(PgpolyConnection *conn, const char *text, size_t len,
				const char *what)
{
	json_error_t err;
	json_t	   *doc = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);

	if (doc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("%s server \"%s\" sent a malformed %s", conn->store->name,
						conn->servername, what),
				 errdetail("%s at offset %d; the response begins: %s",
						   PgpolyHttpExcerpt(conn, err.text, strlen(err.text)),
						   err.position, PgpolyHttpExcerpt(conn, text, len))));
	return PgpolyJsonOwn(doc);
}

/* State of PgpolyJsonTopLevelBool's parse. */
typedef struct TopBool
{
	const char *key;
	int			depth;			/* object nesting */
	bool		want;			/* inside the wanted top-level field */
	bool		found;
	bool		value;
} TopBool;

#if PG_VERSION_NUM >= 160000
#define JSON_CB_RESULT JsonParseErrorType
#define JSON_CB_DONE return JSON_SUCCESS
#else
#define JSON_CB_RESULT void
#define JSON_CB_DONE return
#endif

static JSON_CB_RESULT
topbool_object_start(void *state)
{
	((TopBool *) state)->depth++;
	JSON_CB_DONE;
}

static JSON_CB_RESULT
topbool_object_end(void *state)
{
	((TopBool *) state)->depth--;
	JSON_CB_DONE;
}

static JSON_CB_RESULT
topbool_field_start(void *state, char *fname, bool isnull)
{
	TopBool    *tb = state;

	tb->want = tb->depth == 1 && fname && strcmp(fname, tb->key) == 0;
	JSON_CB_DONE;
}

static JSON_CB_RESULT
topbool_scalar(void *state, char *token, JsonTokenType tokentype)
{
	TopBool    *tb = state;

	if (tb->want && tb->depth == 1 &&
		(tokentype == JSON_TOKEN_TRUE || tokentype == JSON_TOKEN_FALSE))
	{
		tb->found = true;
		tb->value = tokentype == JSON_TOKEN_TRUE;
	}
	tb->want = false;
	JSON_CB_DONE;
}

/*
 * Whether json is valid JSON, and (in *found / *value) whether its top-level
 * object has the boolean member key.  PostgreSQL's lexer validates without
 * building a document, so a large response whose flag says there is nothing
 * to inspect (an Elasticsearch bulk response with "errors": false) costs no
 * parse tree.
 */
bool
PgpolyJsonTopLevelBool(const char *json, size_t len, const char *key,
					   bool *found, bool *value)
{
	TopBool		tb = {key, 0, false, false, false};
	JsonSemAction sem = {0};
	JsonLexContext *lex;
	bool		ok;

	sem.semstate = &tb;
	sem.object_start = topbool_object_start;
	sem.object_end = topbool_object_end;
	sem.object_field_start = topbool_field_start;
	sem.scalar = topbool_scalar;
#if PG_VERSION_NUM >= 170000
	lex = makeJsonLexContextCstringLen(NULL, (char *) json, len, PG_UTF8, true);
#else
	lex = makeJsonLexContextCstringLen((char *) json, len, PG_UTF8, true);
#endif
	ok = pg_parse_json(lex, &sem) == JSON_SUCCESS;
	*found = ok && tb.found;
	*value = tb.value;
	return ok;
}
