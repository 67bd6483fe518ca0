/*-------------------------------------------------------------------------
 *
 * json.c
 *		  JSON <-> datum conversion shared by the stores.
 *
 * Incoming JSON (a Redis json value, an Elasticsearch _source, vector
 * metadata) is parsed with PostgreSQL's own jsonb parser, not jansson:
 * it keeps numeric precision and accepts everything PostgreSQL accepts, and
 * the result is exactly what a jsonb column would hold.  Store JSON is
 * verified for the database encoding first (22021 otherwise); a \u0000,
 * which jsonb cannot hold, is masked and its paths reported to the caller
 * (PgpolyJsonbFromStore), who raises 22021 if such a value would reach a
 * datum and reads the other fields as usual.  Field values are turned into
 * the text form of the target column type, which the column's PgpolyConv
 * reads (convert.c), so every SQL type converts the same way.
 *
 * Outgoing JSON has one encoder, json_form(): numbers and booleans keep
 * their JSON types, json/jsonb values are embedded as is, arrays become
 * JSON arrays, dates and times are ISO 8601 strings as to_json() writes
 * them, everything else becomes a JSON string of its text form.  A JSON
 * array has no lower bound, so a store document refuses an array whose
 * subscripts do not start at 1 (it would read back as another value).  Store
 * documents get the fixed form (PgpolyJsonAppendValue: timestamptz in UTC,
 * floats exact, under the fixed settings of convert.c); the feature
 * store's serving path gets the session's, as to_jsonb() (PgpolyJsonbValue).
 *
 * src/json.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "pgpoly_jansson.h"

#include "access/detoast.h"
#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "common/shortest_dec.h"
#include "mb/pg_wchar.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "parser/parse_coerce.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/float.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"

#include "pgpoly.h"

/* Parse len bytes of JSON text made by pgpoly into a jsonb datum. */
Datum
PgpolyJsonbFromText(const char *json, int len)
{
	char	   *copy = pnstrdup(json, len);

	return DirectFunctionCall1(jsonb_in, CStringGetDatum(copy));
}

/*
 * The next JSON escape at or after p (before end): a pointer to its
 * backslash, or NULL.  Backslashes occur only in strings, each starting
 * an escape of which we skip the escaped character.
 */
static const char *
next_escape(const char *p, const char *end)
{
	if (p >= end)
		return NULL;
	return memchr(p, '\\', end - p);
}

/* Whether the escape at p is \u0000, a NUL character. */
static bool
is_nul_escape(const char *p, const char *end)
{
	return end - p >= 6 && p[1] == 'u' && memcmp(p + 2, "0000", 4) == 0;
}

/* Whether json has a \u0000 escape. */
static bool
has_nul_escape(const char *json, size_t len)
{
	const char *end = json + len;
	const char *p = json;

	while ((p = next_escape(p, end)) != NULL)
	{
		if (is_nul_escape(p, end))
			return true;
		p += 2;
	}
	return false;
}

/*
 * A copy of json with every \u0000 escape replaced by \u003f ("?"), which
 * PostgreSQL's jsonb accepts; the caller has made sure that no replaced
 * character can reach a datum.
 */
static char *
mask_nul_escapes(const char *json, size_t len)
{
	char	   *copy = pnstrdup(json, len);
	const char *end = copy + len;
	char	   *p = copy;

	while ((p = (char *) next_escape(p, end)) != NULL)
	{
		if (is_nul_escape(p, end))
			memcpy(p + 2, "003f", 4);
		p += 2;
	}
	return copy;
}

static void collect_nul_paths(json_t *v, StringInfo path, List **paths);

/* collect_nul_paths of child m, named name, of a value at path. */
static void
collect_child(json_t *m, const char *name, StringInfo path, List **paths)
{
	int			len = path->len;

	appendStringInfo(path, "%s%s", len > 0 ? "." : "", name);
	collect_nul_paths(m, path, paths);
	path->len = len;
	path->data[len] = '\0';
}

/*
 * Append to *paths the paths (keys and array indexes joined by '.') of the
 * strings of v that contain a NUL; path holds v's own path.
 */
static void
collect_nul_paths(json_t *v, StringInfo path, List **paths)
{
	const char *key;
	json_t	   *m;
	size_t		i;
	char		index[32];

	switch (json_typeof(v))
	{
		case JSON_OBJECT:
			json_object_foreach(v, key, m)
				collect_child(m, key, path, paths);
			break;
		case JSON_ARRAY:
			json_array_foreach(v, i, m)
			{
				snprintf(index, sizeof(index), "%zu", i);
				collect_child(m, index, path, paths);
			}
			break;
		case JSON_STRING:
			if (memchr(json_string_value(v), '\0', json_string_length(v)) != NULL)
				*paths = lappend(*paths, pstrdup(path->data));
			break;
		default:
			break;
	}
}

/*
 * The paths of json's strings that contain a NUL.  If jansson cannot say
 * (a NUL in an object key), the one path "" stands for "anywhere".
 */
static List *
nul_paths(const char *json, size_t len)
{
	json_error_t err;
	json_t	   *doc = json_loadb(json, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
	List	   *paths = NIL;
	StringInfoData path;

	if (doc == NULL)
		return list_make1(pstrdup(""));
	PgpolyJsonOwn(doc);
	initStringInfo(&path);
	collect_nul_paths(doc, &path, &paths);
	return paths != NIL ? paths : list_make1(pstrdup(""));
}

/*
 * Whether a value read at path (dot-separated, as in nuls) contains or is
 * inside a string that held a NUL: one of nuls is path, lies under it, or
 * is above it.
 */
bool
PgpolyJsonNulAt(List *nuls, const char *path)
{
	size_t		flen = strlen(path);
	ListCell   *lc;

	foreach(lc, nuls)
	{
		const char *p = lfirst(lc);
		size_t		plen = strlen(p);
		size_t		n = Min(plen, flen);

		if (plen == 0 || flen == 0)
			return true;
		if (strncmp(p, path, n) == 0 &&
			(plen == flen || (plen > flen ? p[flen] == '.' : path[plen] == '.')))
			return true;
	}
	return false;
}

/*
 * The path ("a.b.0.c") of the first string of v (or key) that the database
 * encoding cannot hold, appended to path; false if there is none.
 */
static bool
untranslatable_path(json_t *v, StringInfo path)
{
	const char *key;
	json_t	   *m;
	size_t		i;
	int			base = path->len;

	if (json_is_string(v))
		return !PgpolyStoreTextConverts(json_string_value(v), json_string_length(v));
	json_object_foreach(v, key, m)
	{
		path->len = base;
		path->data[base] = '\0';
		appendStringInfo(path, "%s%s", base ? "." : "",
						 PgpolyStoreTextConverts(key, strlen(key)) ? key : "?");
		if (!PgpolyStoreTextConverts(key, strlen(key)) || untranslatable_path(m, path))
			return true;
	}
	json_array_foreach(v, i, m)
	{
		path->len = base;
		path->data[base] = '\0';
		appendStringInfo(path, "%s%zu", base ? "." : "", i);
		if (untranslatable_path(m, path))
			return true;
	}
	path->len = base;
	path->data[base] = '\0';
	return false;
}

/*
 * A store's JSON document (len bytes, UTF-8) in the database encoding:
 * json itself where no conversion is needed (PgpolyStoreToServer), else a
 * converted copy.  A character the database encoding lacks is an ERROR
 * 22P05 naming its place in the document.
 */
static void untranslatable_error(const char *json, size_t len) pg_attribute_noreturn();

static const char *
json_to_server(const char *json, size_t *len)
{
	const char *out;

	if (!PgpolyStoreConverts() || memchr(json, '\0', *len) != NULL)
		return PgpolyStoreToServer(json, len, "JSON from the store");
	out = PgpolyStoreToServerOrNull(json, len, "JSON from the store");
	if (out == NULL)
		untranslatable_error(json, *len);
	return out;
}

/*
 * ERROR 22P05 for a store's JSON document (UTF-8, len bytes) holding a
 * character the database encoding lacks (as such or as a \u escape),
 * naming where.
 */
static void
untranslatable_error(const char *json, size_t len)
{
	StringInfoData path;
	json_t	   *doc;

	initStringInfo(&path);
	doc = json_loadb(json, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	if (doc != NULL)
	{
		PgpolyJsonOwn(doc);
		(void) untranslatable_path(doc, &path);
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNTRANSLATABLE_CHARACTER),
			 errmsg("JSON from the store has a character with no equivalent in encoding \"%s\" at \"%s\"",
					GetDatabaseEncodingName(), path.data),
			 errhint("Use a database whose encoding is UTF8 to read this value.")));
}

/*
 * PgpolyJsonbFromServerText of text (len bytes), a store's document utf8
 * (utf8len bytes) converted: a \u escape of a character the database
 * encoding lacks is untranslatable_error naming its place.
 */
static Datum
jsonb_of_converted(const char *text, size_t len, List **nuls,
				   const char *utf8, size_t utf8len)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum		result = (Datum) 0;

	PG_TRY();
	{
		result = PgpolyJsonbFromServerText(text, len, nuls);
	}
	PG_CATCH();
	{
		if (geterrcode() != ERRCODE_UNTRANSLATABLE_CHARACTER)
			PG_RE_THROW();
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		untranslatable_error(utf8, utf8len);
	}
	PG_END_TRY();
	return result;
}

/*
 * A store's JSON document (len bytes, UTF-8) as jsonb: converted to the
 * database encoding first (json_to_server: free in a UTF8 database, 22P05
 * for a character the database encoding lacks), then as
 * PgpolyJsonbFromServerText.
 */
Datum
PgpolyJsonbFromStore(const char *json, size_t len, List **nuls)
{
	size_t		slen = len;
	const char *text;
	Datum		result;
	ListCell   *lc;

	if (len == 0 || !PgpolyStoreConverts())
		return PgpolyJsonbFromServerText(json, len, nuls);
	text = json_to_server(json, &slen);
	result = jsonb_of_converted(text, slen, nuls, json, len);
	if (text == json || nuls == NULL || *nuls == NIL)
		return result;
	/* jansson cannot read the converted text: find the paths in the UTF-8 */
	*nuls = nul_paths(json, len);
	foreach(lc, *nuls)
		lfirst(lc) = (char *) PgpolyStoreToServerCstr(lfirst(lc),
													  "JSON field name from the store");
	return result;
}

/*
 * A JSON document (len bytes) in the database encoding, as jsonb: a store's
 * once converted, or one built of a store's values (vector metadata).  The
 * text must be valid in the database encoding (else ERROR 22021).
 * PostgreSQL's jsonb cannot hold a NUL character (\u0000): when the text
 * has one and nuls is not NULL, *nuls gets the paths of the strings that
 * held one (see PgpolyJsonNulAt) and the jsonb has "?" in their place; the
 * caller must then raise an ERROR before any of those values reaches a
 * datum.  With nuls NULL such a document is an ERROR (22021).  *nuls is NIL
 * in the common case.
 */
Datum
PgpolyJsonbFromServerText(const char *json, size_t len, List **nuls)
{
	int			ok;
	List	   *paths;

	if (nuls)
		*nuls = NIL;
	ok = pg_encoding_verifymbstr(GetDatabaseEncoding(), json, (int) len);
	if (len > (size_t) INT_MAX || ok != (int) len)
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("JSON from the store is not valid %s: byte 0x%02x at offset %d of %zu",
						GetDatabaseEncodingName(),
						(unsigned char) json[Min((size_t) ok, len - 1)], ok, len)));
	if (!has_nul_escape(json, len))
		return PgpolyJsonbFromText(json, (int) len);
	paths = nul_paths(json, len);
	if (nuls == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("JSON from the store has a NUL character (\\u0000), which jsonb cannot hold, at \"%s\"",
						(char *) linitial(paths))));
	*nuls = paths;
	return PgpolyJsonbFromText(mask_nul_escapes(json, len), (int) len);
}

/*
 * Whether nuls (see PgpolyJsonbFromStore) only says that the text holds a
 * NUL character somewhere: in an object key, which jansson cannot parse,
 * so no value and no document of the text can be named.
 */
bool
PgpolyJsonNulUnplaced(List *nuls)
{
	return list_length(nuls) == 1 && ((const char *) linitial(nuls))[0] == '\0';
}

/*
 * ERROR for the value at field of a store document that held a NUL
 * character (what: e.g. "document \"x\""), or, field NULL, for a NUL in an
 * object key somewhere in what (PgpolyJsonNulUnplaced); the caller's error
 * context may add more.
 */
void
PgpolyJsonNulError(const char *what, const char *field, PgpolyConv *conv)
{
	if (field == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("an object key in %s contains a NUL character (\\u0000)", what),
				 errdetail("PostgreSQL's text and jsonb cannot hold NUL characters.")));
	ereport(ERROR,
			(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
			 errmsg("field \"%s\" of %s contains a NUL character (\\u0000)", field, what),
			 conv && conv->name ?
			 errdetail("Column \"%s\" (%s) cannot hold NUL characters.", conv->name,
					   format_type_with_typemod(conv->typid, conv->typmod)) :
			 errdetail("PostgreSQL's text and jsonb cannot hold NUL characters.")));
}

/*
 * Append s (len bytes, which may include NULs; s[len] must be '\0') as a
 * JSON string, a NUL as \u0000.
 */
void
PgpolyJsonEscape(StringInfo buf, const char *s, size_t len)
{
	const char *end = s + len;
	StringInfoData part;

	if (memchr(s, '\0', len) == NULL)
	{
		escape_json(buf, s);
		return;
	}
	initStringInfo(&part);
	appendStringInfoChar(buf, '"');
	while (s <= end)
	{
		/* escape_json quotes its argument: keep what is between the quotes */
		resetStringInfo(&part);
		escape_json(&part, s);
		appendBinaryStringInfo(buf, part.data + 1, part.len - 2);
		s += strlen(s);
		if (s < end)
			appendStringInfoString(buf, "\\u0000");
		s++;
	}
	appendStringInfoChar(buf, '"');
	pfree(part.data);
}

static void append_array_literal(StringInfo buf, JsonbContainer *array, bool json);

/*
 * The text of a JSON string for a column: its contents, or for a json/jsonb
 * column or element (json) the JSON string itself.
 */
static char *
string_text(JsonbValue *v, bool json, size_t *len)
{
	StringInfoData buf;

	if (!json)
	{
		*len = v->val.string.len;
		return pnstrdup(v->val.string.val, v->val.string.len);
	}
	initStringInfo(&buf);
	escape_json(&buf, pnstrdup(v->val.string.val, v->val.string.len));
	*len = buf.len;
	return buf.data;
}

/*
 * Append one jsonb scalar as an element of a PostgreSQL array literal;
 * json: the array's elements are json or jsonb.
 */
static void
append_array_element(StringInfo buf, JsonbValue *v, bool json)
{
	const char *s;
	size_t		len;

	switch (v->type)
	{
		case jbvNull:
			appendStringInfoString(buf, "NULL");
			return;
		case jbvBinary:
			if (JsonContainerIsArray(v->val.binary.data))
			{
				append_array_literal(buf, v->val.binary.data, json);
				return;
			}
			s = JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
			break;
		case jbvString:
			s = string_text(v, json, &len);
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
append_array_literal(StringInfo buf, JsonbContainer *array, bool json)
{
	int			n = JsonContainerSize(array);
	int			i;

	appendStringInfoChar(buf, '{');
	for (i = 0; i < n; i++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(array, i);

		if (i > 0)
			appendStringInfoChar(buf, ',');
		append_array_element(buf, v, json);
	}
	appendStringInfoChar(buf, '}');
}

/*
 * Text form, for a column's input function, of one jsonb value.  A JSON
 * array becomes an array literal when the column is an array; other
 * containers become JSON text (for json/jsonb columns).  A string is its
 * contents, except for a json/jsonb column or array elements (to_json),
 * which get the JSON string itself.  Returns NULL for JSON null.
 */
static char *
jsonb_value_text(JsonbValue *v, bool to_array, bool to_json, size_t *len)
{
	StringInfoData buf;
	char	   *s;

	switch (v->type)
	{
		case jbvNull:
			return NULL;
		case jbvString:
			return string_text(v, to_json, len);
		case jbvNumeric:
			s = DatumGetCString(DirectFunctionCall1(numeric_out,
													NumericGetDatum(v->val.numeric)));
			*len = strlen(s);
			return s;
		case jbvBool:
			*len = v->val.boolean ? 4 : 5;
			return pstrdup(v->val.boolean ? "true" : "false");
		case jbvBinary:
			initStringInfo(&buf);
			if (to_array && JsonContainerIsArray(v->val.binary.data))
				append_array_literal(&buf, v->val.binary.data, to_json);
			else
				JsonbToCString(&buf, v->val.binary.data, v->val.binary.len);
			*len = buf.len;
			return buf.data;
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
	return NULL;
}

/*
 * The matches of path p in the jsonb object container c in every spelling
 * a document may give a dotted path (PGPOLY_FIELD_EVERY): the key p, or a
 * key that is a prefix of p ending before one of its dots whose value is an
 * object holding the rest in any spelling ({"a.b": {"c": 1}} and
 * {"a": {"b.c": 1}} give a.b.c too).  Returns how many are not JSON null
 * (the first goes to *found, if none yet); a null one goes to *null_found;
 * *through_array is set when a prefix's value is an array.
 */
static int
field_matches(JsonbContainer *c, const char *p, JsonbValue **found,
			  JsonbValue **null_found, bool *through_array)
{
	int			n = 0;
	const char *end = p + strlen(p);

	while (end > p)
	{
		JsonbValue *v = getKeyJsonValueFromContainer(c, p, end - p, NULL);

		if (v != NULL && *end == '\0')
		{
			if (v->type == jbvNull)
				*null_found = v;
			else
			{
				n++;
				if (*found == NULL)
					*found = v;
			}
		}
		else if (v != NULL && v->type == jbvBinary)
		{
			if (JsonContainerIsObject(v->val.binary.data))
				n += field_matches(v->val.binary.data, end + 1, found, null_found,
								   through_array);
			else if (JsonContainerIsArray(v->val.binary.data))
				*through_array = true;
		}
		/* the next shorter prefix: up to the dot before end */
		do
			end--;
		while (end > p && *end != '.');
	}
	return n;
}

/*
 * The value at field of the jsonb object, or NULL when it is absent.
 *	- PGPOLY_FIELD_KEY: field is one top-level key, dots included (a Redis
 *	  json table's columns are its top-level fields, and are written so);
 *	- PGPOLY_FIELD_PATH: a path "a.b" is the key "a.b" if the object has
 *	  one, otherwise descends into nested objects (vector metadata, which a
 *	  Chroma or Qdrant writer may keep flat);
 *	- PGPOLY_FIELD_EVERY: the path in every spelling (field_matches), as
 *	  Elasticsearch indexes it; a document giving it in two spellings
 *	  (both {"a.b": 1} and {"a": {"b": 2}}) holds several values: an ERROR
 *	  (22P02), as no single value could stand for them.  JSON nulls count
 *	  only when there is nothing else.
 * *through_array is set when the path meets an array on the way (and then
 * the value is NULL too, for KEY and PATH).
 */
static JsonbValue *
field_value(Datum jsonb, const char *field, PgpolyFieldPath how, bool *through_array)
{
	Jsonb	   *jb = DatumGetJsonbP(jsonb);
	JsonbContainer *c = &jb->root;
	JsonbValue *v = NULL;
	const char *p = field;

	*through_array = false;
	if (how == PGPOLY_FIELD_EVERY)
	{
		JsonbValue *null_found = NULL;

		if (!JsonContainerIsObject(c))
		{
			*through_array = JsonContainerIsArray(c);
			return NULL;
		}
		if (field_matches(c, field, &v, &null_found, through_array) > 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("the document gives field \"%s\" in more than one spelling (a dotted key and nested objects), which gives it several values",
							field),
					 errhint("Read the enclosing field into a jsonb column.")));
		return v ? v : null_found;
	}
	for (;;)
	{
		const char *dot = how == PGPOLY_FIELD_PATH ? strchr(p, '.') : NULL;
		int			len = dot ? (int) (dot - p) : (int) strlen(p);

		if (!JsonContainerIsObject(c))
		{
			*through_array = JsonContainerIsArray(c);
			return NULL;
		}
		/*
		 * A literal dotted key wins over descending: try it first (the key
		 * "a.b" that a Chroma or Qdrant writer puts in flat metadata).
		 */
		if (dot != NULL &&
			(v = getKeyJsonValueFromContainer(c, p, strlen(p), NULL)) != NULL)
			break;
		v = getKeyJsonValueFromContainer(c, p, len, NULL);
		if (v == NULL)
			return NULL;
		if (dot == NULL)
			break;
		if (v->type != jbvBinary)
			return NULL;
		c = v->val.binary.data;
		p = dot + 1;
	}
	return v;
}

/*
 * Text form of the top-level field of a jsonb object, ready for the input
 * function of a column (to_array: the column is an array type).  Returns
 * NULL when the field is absent or JSON null.  A path "a.b" descends into
 * nested objects.  The text's length goes to *len when len is not NULL.
 */
char *
PgpolyJsonbFieldText(Datum jsonb, const char *field, bool to_array,
					 size_t *len)
{
	size_t		dummy;
	bool		through_array;
	JsonbValue *v = field_value(jsonb, field, PGPOLY_FIELD_PATH, &through_array);

	return v ? jsonb_value_text(v, to_array, false, len ? len : &dummy) : NULL;
}

/*
 * PgpolyJsonbFieldText for a column of the type conv describes: an array
 * (a domain over one too) reads a JSON array, and a json or jsonb column
 * (or its elements) reads the field's JSON values as they are, strings
 * included.
 */
char *
PgpolyJsonbColumnText(Datum jsonb, const char *field, PgpolyFieldPath how,
					  const PgpolyConv *conv, size_t *len)
{
	bool		through_array;
	JsonbValue *v = field_value(jsonb, field, how, &through_array);

	return v ? jsonb_value_text(v, conv->is_array, conv->is_json, len) : NULL;
}

/* Whether len bytes at s are the text json_form writes a non-finite number as. */
static bool
is_nonfinite_text(const char *s, int len)
{
	return (len == 3 && memcmp(s, "NaN", 3) == 0) ||
		(len == 8 && memcmp(s, "Infinity", 8) == 0) ||
		(len == 9 && memcmp(s, "-Infinity", 9) == 0);
}

/*
 * Whether scalar v has the JSON type json_form writes for a value of base
 * type basetype: a number for int2/4/8, float4, float8 and numeric (the
 * latter three write Infinity, -Infinity and NaN as exactly those
 * strings), a boolean for bool.  Any value fits another type.
 */
static bool
json_type_fits(JsonbValue *v, Oid basetype)
{
	switch (basetype)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
			return v->type == jbvNumeric;
		case FLOAT4OID:
		case FLOAT8OID:
		case NUMERICOID:
			return v->type == jbvNumeric ||
				(v->type == jbvString &&
				 is_nonfinite_text(v->val.string.val, v->val.string.len));
		case BOOLOID:
			return v->type == jbvBool;
		default:
			return true;
	}
}

static void json_type_error(JsonbValue *v, const char *field,
							const PgpolyConv *conv) pg_attribute_noreturn();

/*
 * ERROR (22P02): field holds v, which a typed read of a column of the type
 * conv describes refuses (json_type_fits).
 */
static void
json_type_error(JsonbValue *v, const char *field, const PgpolyConv *conv)
{
	bool		boolean = conv->basetype == BOOLOID;
	bool		ints = conv->basetype == INT2OID || conv->basetype == INT4OID ||
		conv->basetype == INT8OID;
	char	   *found;
	size_t		len;

	if (v->type == jbvString)
		found = psprintf("the string \"%s\"",
						 PgpolyPrintable(v->val.string.val, v->val.string.len, 64));
	else
		found = psprintf("the %s %s", v->type == jbvBool ? "boolean" : "number",
						 jsonb_value_text(v, false, false, &len));
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("field \"%s\" holds %s, not a JSON %s", field, found,
					boolean ? "boolean" : "number"),
			 errdetail("A column of type %s reads only what pgpoly writes for it: %s.",
					   format_type_be(conv->typid),
					   boolean ? "true or false" : ints ? "a JSON number" :
					   "a JSON number, or the string \"Infinity\", \"-Infinity\" or \"NaN\""),
			 errhint("Read the field into a text or jsonb column, or store the value as the column writes it.")));
}

/*
 * PgpolyJsonbFieldText for a store in which every field may hold one value
 * or an array of values and a query on a field matches any of them
 * (Elasticsearch), for a column of the type conv describes.  An array
 * column reads one value as an array of one (a json/jsonb array's strings
 * as JSON strings); any other column needs one value, and an array or an object at
 * field is an ERROR (22P02): no single value of the column could stand for
 * it, and the row a pushed  col = 'a'  selected from ["a", "b"] would not
 * satisfy that clause.  So is a path that crosses an array (a.b of
 * {"a": [{"b": 1}, {"b": 2}]}), whatever the column.  Callers use this
 * function for columns that are not json or jsonb (arrays of them may be).
 *
 * typed: a scalar column reads only the JSON type pgpoly writes for its
 * type (json_type_fits; a number column not the string "5", a boolean
 * column not "true"); another is an ERROR (22P02), so that a store filter
 * comparing typed values (a vector service's number range) selects every
 * value the column reads.  Otherwise the column's input function reads the
 * value's text, whatever its JSON type (Elasticsearch indexes the string
 * "5" of a numeric field as 5).
 */
char *
PgpolyJsonbFieldValues(Datum jsonb, const char *field, PgpolyFieldPath how,
					   const PgpolyConv *conv, bool typed, size_t *len)
{
	bool		to_array = conv->is_array;
	bool		through_array;
	JsonbValue *v = field_value(jsonb, field, how, &through_array);
	StringInfoData buf;

	if (through_array)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("the field's path crosses an array, which gives it several values"),
				 errhint("Read the enclosing field into a jsonb column.")));
	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type != jbvBinary)
	{
		if (typed && !to_array && !json_type_fits(v, conv->basetype))
			json_type_error(v, field, conv);
		if (!to_array)
			return jsonb_value_text(v, false, conv->is_json, len);
		initStringInfo(&buf);
		appendStringInfoChar(&buf, '{');
		append_array_element(&buf, v, conv->is_json);
		appendStringInfoChar(&buf, '}');
		*len = buf.len;
		return buf.data;
	}
	if (!to_array)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("the field holds %s, not a single value",
						JsonContainerIsArray(v->val.binary.data) ? "an array" : "an object"),
				 errhint("Declare the column as an array type, or jsonb, to read it.")));
	return jsonb_value_text(v, true, conv->is_json, len);
}

/* ----------------------------------------------------------------
 *		Datum -> JSON
 * ----------------------------------------------------------------
 */

/* What a value is in JSON. */
typedef enum JsonForm
{
	JF_NULL,
	JF_TRUE,
	JF_FALSE,
	JF_NUMBER,					/* text: a JSON number */
	JF_STRING,					/* text: the string, unescaped */
	JF_JSON						/* text: JSON (json, jsonb, arrays) */
} JsonForm;

/*
 * Whether s, the output of numeric_out or of a float's, is a JSON number:
 * the only other forms they have are NaN, Infinity and -Infinity.
 */
static bool
is_json_number(const char *s)
{
	if (s[0] == '-')
		s++;
	return s[0] >= '0' && s[0] <= '9';
}

/* Arguments of output_call: what to convert and the result. */
typedef struct OutputCall
{
	Datum		value;
	Oid			typid;
	char	   *text;
	bool		money;			/* in the store form, with money in it */
	bool		qualify;		/* in the store form, with object names in it */
} OutputCall;

static void output_call(OutputCall *oc, bool array);

/*
 * PgpolyWithCMoney and PgpolyWithQualifiedNames callbacks: output_call of
 * an array, of another value.
 */
static void
output_array_io(void *arg)
{
	output_call(arg, true);
}

static void
output_value_io(void *arg)
{
	output_call(arg, false);
}

/* The text of oc's value: array_to_json for arrays, else its output. */
static void
output_call(OutputCall *oc, bool array)
{
	Oid			outfn;
	bool		isvarlena;

	/* an object name's store form: qualified, however deep it lies */
	if (oc->qualify)
	{
		oc->qualify = false;
		PgpolyWithQualifiedNames(array ? output_array_io : output_value_io, oc);
		return;
	}
	/* a money value's store form: lc_monetary 'C', however deep it lies */
	if (oc->money)
	{
		oc->money = false;
		PgpolyWithCMoney(array ? output_array_io : output_value_io, oc);
		return;
	}
	if (array)
	{
		oc->text = TextDatumGetCString(DirectFunctionCall1(array_to_json, oc->value));
		return;
	}
	getTypeOutputInfo(oc->typid, &outfn, &isvarlena);
	oc->text = OidOutputFunctionCall(outfn, oc->value);
}

/*
 * output_call under the fixed settings when fixed (a scope of its own
 * unless one is open), else under the session's.
 */
static char *
output_text(Datum value, Oid typid, bool array, bool fixed)
{
	OutputCall	oc = {value, typid, NULL, fixed && PgpolyTypeHasMoney(typid),
	fixed && PgpolyTypeHasObjectNames(typid)};

	if (!fixed || PgpolyFixedSettingsActive())
	{
		output_call(&oc, array);
		return oc.text;
	}
	PgpolyFixedSettingsEnter();
	PG_TRY();
	{
		output_call(&oc, array);
	}
	PG_FINALLY();
	{
		PgpolyFixedSettingsLeave();
	}
	PG_END_TRY();
	return oc.text;
}

/*
 * ERROR unless every dimension of array value starts at subscript 1: a JSON
 * array has no lower bound and reads back starting at 1, an unequal array
 * ('[0:1]={a,b}' <> '{a,b}', and a[0] would be NULL).  to_json() drops the
 * bounds; a store document must not.
 */
static void
check_lower_bounds(Datum value)
{
	ArrayType  *arr = DatumGetArrayTypeP(value);
	int		   *lbs = ARR_LBOUND(arr);

	for (int i = 0; i < ARR_NDIM(arr); i++)
		if (lbs[i] != 1)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("an array whose subscripts start at %d cannot be stored in a JSON document",
							lbs[i]),
					 errdetail("A JSON array has no lower bound: the value would read back with subscripts starting at 1."),
					 errhint("Store the array with subscripts from 1, or the column in a Redis hash table, which keeps the text form.")));
}

/* A float's form: shortest exact digits when fixed, else float8out's. */
static JsonForm
float_form(Datum value, Oid typid, bool fixed, char **out)
{
	if (fixed)
	{
		*out = palloc(DOUBLE_SHORTEST_DECIMAL_LEN);
		if (typid == FLOAT4OID)
			float_to_shortest_decimal_buf(DatumGetFloat4(value), *out);
		else
			double_to_shortest_decimal_buf(DatumGetFloat8(value), *out);
	}
	else
		*out = DatumGetCString(typid == FLOAT4OID ?
								DirectFunctionCall1(float4out, value) :
								DirectFunctionCall1(float8out, value));
	return is_json_number(*out) ? JF_NUMBER : JF_STRING;
}

/*
 * The JSON form of value (not NULL) of type typid, and its text.  fixed:
 * the store form, independent of the session's settings (dates and times
 * in ISO 8601 with timestamptz in UTC, floats in shortest exact form,
 * bytea in hex, arrays through array_to_json under the fixed settings);
 * otherwise the form to_jsonb() gives in this session.  Numbers and
 * booleans keep their JSON types, json/jsonb are embedded as is, other
 * types become strings of their text form.
 */
static JsonForm
json_form(Datum value, Oid typid, bool fixed, char **out)
{
	static const int utc = 0;
	char		dt[MAXDATELEN + 1];
	char		category;

	switch (typid)
	{
		case BOOLOID:
			return DatumGetBool(value) ? JF_TRUE : JF_FALSE;
		case INT2OID:
			*out = psprintf("%d", (int) DatumGetInt16(value));
			return JF_NUMBER;
		case INT4OID:
			*out = psprintf("%d", DatumGetInt32(value));
			return JF_NUMBER;
		case INT8OID:
			*out = psprintf(INT64_FORMAT, DatumGetInt64(value));
			return JF_NUMBER;
		case FLOAT4OID:
		case FLOAT8OID:
			return float_form(value, typid, fixed, out);
		case NUMERICOID:
			*out = DatumGetCString(DirectFunctionCall1(numeric_out, value));
			return is_json_number(*out) ? JF_NUMBER : JF_STRING;
		case TEXTOID:
		case VARCHAROID:
			*out = TextDatumGetCString(value);
			return JF_STRING;
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			/* ISO 8601 as to_json() writes it; the store's in UTC */
			*out = pstrdup(JsonEncodeDateTime(dt, value, typid,
											   fixed && typid == TIMESTAMPTZOID ? &utc : NULL));
			return JF_STRING;
		case JSONOID:
			*out = TextDatumGetCString(value);
			return JF_JSON;
		case JSONBOID:
			*out = DatumGetCString(DirectFunctionCall1(jsonb_out, value));
			return JF_JSON;
		case BYTEAOID:
			/* a hex form over 1 GB: 54000, not an allocation failure */
			PgpolyCheckByteaHex(toast_raw_datum_size(value) - VARHDRSZ, NULL);
			*out = output_text(value, typid, false, fixed);
			return JF_STRING;
		default:
			break;
	}
	/* a domain has its base type's form, as in to_json() */
	if (get_typtype(typid) == TYPTYPE_DOMAIN)
		return json_form(value, getBaseType(typid), fixed, out);
	if (type_is_array(typid))
	{
		if (fixed)
			check_lower_bounds(value);
		*out = output_text(value, typid, true, fixed);
		return JF_JSON;
	}
	*out = output_text(value, typid, false, fixed);
	category = TypeCategory(typid);
	/* any text, for money ("1.234,56 €") and types we do not know */
	if (category == TYPCATEGORY_NUMERIC && IsValidJsonNumber(*out, strlen(*out)))
		return JF_NUMBER;
	if (category == TYPCATEGORY_BOOLEAN)
		return DatumGetBool(value) ? JF_TRUE : JF_FALSE;
	return JF_STRING;
}

/*
 * Append value, of type typid, to buf as a JSON value in the store form:
 * the one JSON encoder of every store document and query (Redis json
 * values, Elasticsearch documents and query values, vector metadata and
 * filters).  Independent of the session's settings.
 */
void
PgpolyJsonAppendValue(StringInfo buf, Datum value, Oid typid, bool isnull)
{
	char	   *text = NULL;

	switch (isnull ? JF_NULL : json_form(value, typid, true, &text))
	{
		case JF_NULL:
			appendStringInfoString(buf, "null");
			break;
		case JF_TRUE:
			appendStringInfoString(buf, "true");
			break;
		case JF_FALSE:
			appendStringInfoString(buf, "false");
			break;
		case JF_NUMBER:
		case JF_JSON:
			appendStringInfoString(buf, text);
			break;
		case JF_STRING:
			escape_json(buf, text);
			break;
	}
	if (text)
		pfree(text);
}

/*
 * Set *jv to value, of type typid, as to_jsonb() (jsonb_build_object)
 * makes it in this session: the same encoder as PgpolyJsonAppendValue, in
 * the session's form, for results computed in SQL elsewhere (the feature
 * store's serving path must equal its SQL implementation).
 */
void
PgpolyJsonbValue(JsonbValue *jv, Datum value, Oid typid, bool isnull)
{
	char	   *text = NULL;
	Jsonb	   *jb;

	/*
	 * Integers straight to numeric: the same value numeric_in makes of their
	 * text, without printing and parsing it (the serving path's hot spot).
	 */
	if (!isnull && (typid == INT2OID || typid == INT4OID || typid == INT8OID))
	{
		jv->type = jbvNumeric;
		jv->val.numeric = int64_to_numeric(typid == INT2OID ? DatumGetInt16(value) :
										   typid == INT4OID ? DatumGetInt32(value) :
										   DatumGetInt64(value));
		return;
	}
	switch (isnull ? JF_NULL : json_form(value, typid, false, &text))
	{
		case JF_NULL:
			jv->type = jbvNull;
			return;
		case JF_TRUE:
		case JF_FALSE:
			jv->type = jbvBool;
			jv->val.boolean = DatumGetBool(value);
			return;
		case JF_NUMBER:
			jv->type = jbvNumeric;
			jv->val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in,
																  CStringGetDatum(text),
																  ObjectIdGetDatum(InvalidOid),
																  Int32GetDatum(-1)));
			return;
		case JF_STRING:
			jv->type = jbvString;
			jv->val.string.val = text;
			jv->val.string.len = strlen(text);
			return;
		case JF_JSON:
			jb = typid == JSONBOID ? DatumGetJsonbP(value) :
				DatumGetJsonbP(PgpolyJsonbFromText(text, strlen(text)));
			jv->type = jbvBinary;
			jv->val.binary.data = &jb->root;
			jv->val.binary.len = VARSIZE(jb) - VARHDRSZ;
			return;
	}
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

/* State of PgpolyJsonTopLevelScan's parse. */
typedef struct TopScan
{
	PgpolyJsonTopLevel *out;
	int			depth;			/* object and array nesting */
	bool		want_bool;		/* inside the top-level bool_key member */
	bool		want_array;		/* inside the top-level array_key member */
	bool		in_array;		/* inside that member's array */
	bool		want_inner;		/* inside an inner_key member */
	int			elem_in;		/* the current element's inner_key members in
								 * the range */
	int			member_in;		/* those of its current member object */
	bool		want_match;		/* inside a match_key member */
	int			member_match;	/* the current member object's match_key
								 * members equal to the element's value */
	bool		elem_bad;		/* and one that is not (or is no integer), or
								 * the element is no object of objects */
} TopScan;

#if PG_VERSION_NUM >= 160000
#define JSON_CB_RESULT JsonParseErrorType
#define JSON_CB_DONE return JSON_SUCCESS
#else
#define JSON_CB_RESULT void
#define JSON_CB_DONE return
#endif

/* An inner_key member whose value is an object or an array: not counted */
static void
topscan_inner_container(TopScan *ts)
{
	if (ts->want_inner || ts->want_match)
		ts->elem_bad = true;
	ts->want_inner = ts->want_match = false;
}

static JSON_CB_RESULT
topscan_nest(void *state)
{
	TopScan    *ts = state;

	topscan_inner_container(ts);
	/* a member of an element: its object starts */
	if (ts->in_array && ts->depth == 3)
		ts->member_in = ts->member_match = 0;
	ts->depth++;
	JSON_CB_DONE;
}

static JSON_CB_RESULT
topscan_unnest(void *state)
{
	TopScan    *ts = state;

	/* a member object of an element without an inner_key member */
	if (ts->in_array && ts->depth == 4 && ts->member_in == 0)
		ts->elem_bad = true;
	/* or without a match_key member equal to the element's value */
	if (ts->in_array && ts->depth == 4 && ts->out->match_key && ts->member_match == 0)
		ts->elem_bad = true;
	ts->depth--;
	JSON_CB_DONE;
}

static JSON_CB_RESULT
topscan_array_start(void *state)
{
	TopScan    *ts = state;

	topscan_inner_container(ts);
	/* an element, or a member of one, that is an array, not an object */
	if (ts->in_array && (ts->depth == 2 || ts->depth == 3))
		ts->elem_bad = true;
	ts->depth++;
	if (ts->want_array && ts->depth == 2)
	{
		ts->in_array = true;
		ts->out->elements = 0;
		ts->out->inner_count = 0;
	}
	JSON_CB_DONE;
}

static JSON_CB_RESULT
topscan_array_end(void *state)
{
	TopScan    *ts = state;

	if (ts->depth == 2)
		ts->in_array = false;
	ts->depth--;
	JSON_CB_DONE;
}

static JSON_CB_RESULT
topscan_element_start(void *state, bool isnull)
{
	TopScan    *ts = state;

	if (ts->in_array && ts->depth == 2)
	{
		ts->out->elements++;
		ts->elem_in = 0;
		ts->elem_bad = false;
	}
	JSON_CB_DONE;
}

/*
 * An element counts in inner_count when it has an inner_key member in the
 * range and none outside it: a name may come twice in JSON (a document
 * reader keeps the last), and an element with a second member object could
 * hold a failure besides a success.
 */
static JSON_CB_RESULT
topscan_element_end(void *state, bool isnull)
{
	TopScan    *ts = state;

	if (ts->in_array && ts->depth == 2 && ts->elem_in > 0 && !ts->elem_bad)
		ts->out->inner_count++;
	JSON_CB_DONE;
}

static JSON_CB_RESULT
topscan_field_start(void *state, char *fname, bool isnull)
{
	TopScan    *ts = state;
	PgpolyJsonTopLevel *out = ts->out;

	if (ts->depth == 1)
	{
		ts->want_bool = out->bool_key && fname && strcmp(fname, out->bool_key) == 0;
		ts->want_array = out->array_key && fname && strcmp(fname, out->array_key) == 0;
		/* a name given again: its last value is the one a reader keeps */
		if (ts->want_bool)
			out->found = false;
		if (ts->want_array)
		{
			out->elements = -1;
			out->inner_count = 0;
		}
	}
	/* array (2), its element (3), the element's member object (4) */
	ts->want_inner = ts->in_array && ts->depth == 4 && out->inner_key && fname &&
		strcmp(fname, out->inner_key) == 0;
	ts->want_match = ts->in_array && ts->depth == 4 && out->match_key && fname &&
		strcmp(fname, out->match_key) == 0;
	if (ts->in_array && ts->depth == 4 && out->reject_key &&
		(fname == NULL || strcmp(fname, out->reject_key) == 0))
		ts->elem_bad = true;
	JSON_CB_DONE;
}

static JSON_CB_RESULT
topscan_scalar(void *state, char *token, JsonTokenType tokentype)
{
	TopScan    *ts = state;

	if (ts->want_bool && ts->depth == 1 &&
		(tokentype == JSON_TOKEN_TRUE || tokentype == JSON_TOKEN_FALSE))
	{
		ts->out->found = true;
		ts->out->value = tokentype == JSON_TOKEN_TRUE;
	}
	if (ts->want_inner && ts->depth == 4)
	{
		char	   *end = NULL;
		long		v = 0;

		if (tokentype == JSON_TOKEN_NUMBER)
			v = strtol(token, &end, 10);
		if (end && *end == '\0' && v >= ts->out->inner_lo && v <= ts->out->inner_hi)
		{
			ts->elem_in++;
			ts->member_in++;
		}
		else
			ts->elem_bad = true;
	}
	if (ts->want_match && ts->depth == 4)
	{
		int			i = ts->out->elements - 1;

		if (tokentype == JSON_TOKEN_STRING && i >= 0 && i < ts->out->nmatch &&
			token && strcmp(token, ts->out->match_values[i]) == 0)
			ts->member_match++;
		else
			ts->elem_bad = true;
	}
	/* an element, or a member of one, that is a scalar, not an object */
	if (ts->in_array && (ts->depth == 2 || ts->depth == 3))
		ts->elem_bad = true;
	ts->want_inner = ts->want_match = false;
	if (ts->depth == 1)
		ts->want_bool = false;
	JSON_CB_DONE;
}

/* State of PgpolyJsonFieldVerbatim's parse. */
typedef struct SpanScan
{
	JsonLexContext *lex;
	const char *base;			/* the text parsed */
	char	  **path;			/* the field's names, one per level */
	int			npath;
	int			matched;		/* inside the fields path[0 .. matched - 1] */
	bool		in_field;		/* inside the value of the field itself */
	int			start;			/* its last value's bytes [start, end), -1: none */
	int			end;
} SpanScan;

static JSON_CB_RESULT
span_field_start(void *state, char *fname, bool isnull)
{
	SpanScan   *ss = state;
	int			level = ss->lex->lex_level;

	if (level == ss->matched + 1 && level <= ss->npath && fname != NULL &&
		strcmp(fname, ss->path[level - 1]) == 0)
	{
		if (level < ss->npath)
			ss->matched = level;
		else
		{
			ss->in_field = true;
			ss->start = ss->lex->token_start - ss->base;
		}
	}
	JSON_CB_DONE;
}

static JSON_CB_RESULT
span_field_end(void *state, char *fname, bool isnull)
{
	SpanScan   *ss = state;
	int			level = ss->lex->lex_level;

	if (ss->in_field && level == ss->npath)
	{
		ss->in_field = false;
		ss->end = ss->lex->prev_token_terminator - ss->base;
	}
	else if (level == ss->matched && level > 0)
		ss->matched = level - 1;
	JSON_CB_DONE;
}

/*
 * The JSON text of the value at field of the JSON object json (len bytes),
 * byte for byte as it is written there (without the blanks around it), or
 * NULL when it is absent or json does not parse.  field and nested as for
 * field_value(); of duplicate keys the last
 * counts, as in jsonb.  For a json column, which keeps its text as written
 * (key order, duplicate keys, blanks, the spelling of numbers and escapes,
 * \u0000 included), where the jsonb the other columns read from would
 * give its normalized form.
 */
char *
PgpolyJsonFieldVerbatim(const char *json, size_t len, const char *field, bool nested,
						size_t *outlen)
{
	/* \u0000 stops the lexer: parse a copy masked with escapes of the same length */
	char	   *copy = has_nul_escape(json, len) ? mask_nul_escapes(json, len) : pnstrdup(json, len);
	SpanScan	ss = {0};
	JsonSemAction sem = {0};
	List	   *names = NIL;
	const char *p = field;
	ListCell   *lc;

	for (;;)
	{
		const char *dot = nested ? strchr(p, '.') : NULL;

		names = lappend(names, dot ? pnstrdup(p, dot - p) : pstrdup(p));
		if (dot == NULL)
			break;
		p = dot + 1;
	}
	ss.path = palloc(sizeof(char *) * list_length(names));
	foreach(lc, names)
		ss.path[foreach_current_index(lc)] = lfirst(lc);
	ss.npath = list_length(names);
	ss.base = copy;
	ss.start = ss.end = -1;
	sem.semstate = &ss;
	sem.object_field_start = span_field_start;
	sem.object_field_end = span_field_end;
#if PG_VERSION_NUM >= 170000
	ss.lex = makeJsonLexContextCstringLen(NULL, copy, len, GetDatabaseEncoding(), true);
#else
	ss.lex = makeJsonLexContextCstringLen(copy, len, GetDatabaseEncoding(), true);
#endif
	if (pg_parse_json(ss.lex, &sem) != JSON_SUCCESS || ss.start < 0 || ss.end < ss.start)
		return NULL;
	*outlen = ss.end - ss.start;
	return pnstrdup(json + ss.start, ss.end - ss.start);
}

/*
 * Whether json is valid JSON in UTF-8, and what its top-level object says (see
 * PgpolyJsonTopLevel): the boolean member bool_key, the number of elements
 * of the array member array_key, and how many of those elements are
 * objects whose members are all objects (items[i].index), each with an
 * integer member inner_key between inner_lo and inner_hi, no other
 * inner_key member and no member reject_key (and, with match_key, a
 * string member match_key equal to match_values[i] in the i-th element,
 * none other).  PostgreSQL's lexer validates
 * without building a document, so a large response whose summary says
 * there is nothing to inspect (an Elasticsearch bulk response with
 * "errors": false and one item per action, each with a 2xx status) costs
 * no parse tree.
 */
bool
PgpolyJsonTopLevelScan(const char *json, size_t len, PgpolyJsonTopLevel *out)
{
	TopScan		ts = {0};
	JsonSemAction sem = {0};
	JsonLexContext *lex;
	bool		ok;

	ts.out = out;
	out->found = out->value = false;
	out->elements = -1;
	out->inner_count = 0;
	/* PostgreSQL's lexer takes the bytes of a string as they come */
	if (len > INT_MAX || !pg_verify_mbstr(PG_UTF8, json, (int) len, true))
		return false;
	sem.semstate = &ts;
	sem.object_start = topscan_nest;
	sem.object_end = topscan_unnest;
	sem.array_start = topscan_array_start;
	sem.array_end = topscan_array_end;
	sem.array_element_start = topscan_element_start;
	sem.array_element_end = topscan_element_end;
	sem.object_field_start = topscan_field_start;
	sem.scalar = topscan_scalar;
#if PG_VERSION_NUM >= 170000
	lex = makeJsonLexContextCstringLen(NULL, (char *) json, len, PG_UTF8, true);
#else
	lex = makeJsonLexContextCstringLen((char *) json, len, PG_UTF8, true);
#endif
	ok = pg_parse_json(lex, &sem) == JSON_SUCCESS;
	if (!ok)
		out->found = false;
	return ok;
}
