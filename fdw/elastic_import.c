/*-------------------------------------------------------------------------
 *
 * elastic_import.c
 *		  IMPORT FOREIGN SCHEMA "<index pattern>" for pgpoly_elastic.
 *
 * GET /<pattern>/_mapping gives one mapping per index; each becomes
 * CREATE FOREIGN TABLE <index> (_id text, <one column per top-level
 * field>, _score real, _query text) OPTIONS (index '<index>').  Indexes and
 * fields are taken in name order so the result does not depend on the
 * order of the JSON response.  LIMIT TO / EXCEPT filter by index name.
 *
 * Field types: text, keyword and other string-like types -> text; long ->
 * bigint; integer, short, byte -> integer; double, float, half_float,
 * scaled_float -> double precision; unsigned_long -> numeric; boolean ->
 * boolean; date, date_nanos -> timestamptz; objects, nested and anything
 * else -> jsonb.
 *
 * fdw/elastic_import.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pgpoly_jansson.h"

#include "foreign/fdwapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "elastic.h"

/* SQL type of an ES field mapping. */
static const char *
sql_type(json_t *def)
{
	const char *t = json_string_value(json_object_get(def, "type"));
	static const char *const map[][2] = {
		{"text", "text"}, {"keyword", "text"}, {"constant_keyword", "text"},
		{"wildcard", "text"}, {"match_only_text", "text"}, {"ip", "text"},
		{"version", "text"}, {"long", "bigint"}, {"integer", "integer"},
		{"short", "integer"}, {"byte", "integer"}, {"double", "double precision"},
		{"float", "double precision"}, {"half_float", "double precision"},
		{"scaled_float", "double precision"}, {"unsigned_long", "numeric"},
		{"boolean", "boolean"}, {"date", "timestamptz"}, {"date_nanos", "timestamptz"},
	};

	if (t == NULL)
		return "jsonb";			/* an object */
	for (int i = 0; i < lengthof(map); i++)
		if (strcmp(t, map[i][0]) == 0)
			return map[i][1];
	return "jsonb";
}

/* qsort comparator of C strings. */
static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The keys of a JSON object, sorted. */
static char **
sorted_keys(json_t *obj, int *n)
{
	char	  **keys = palloc(sizeof(char *) * Max(json_object_size(obj), 1));
	const char *key;
	json_t	   *val;

	*n = 0;
	json_object_foreach(obj, key, val)
		keys[(*n)++] = pstrdup(key);
	qsort(keys, *n, sizeof(char *), cmp_str);
	return keys;
}

/*
 * The CREATE FOREIGN TABLE statement of one index (index: its name in the
 * database encoding; the mapping's field names are the store's UTF-8).
 */
static char *
table_sql(ImportForeignSchemaStmt *stmt, const char *server, const char *index,
		  json_t *mapping)
{
	json_t	   *props = json_object_get(json_object_get(mapping, "mappings"), "properties");
	StringInfoData buf;
	char	  **fields;
	int			n = 0;

	initStringInfo(&buf);
	appendStringInfo(&buf, "CREATE FOREIGN TABLE %s.%s (\n    _id text",
					 quote_identifier(stmt->local_schema), quote_identifier(index));
	fields = json_is_object(props) ? sorted_keys(props, &n) : NULL;
	for (int i = 0; i < n; i++)
	{
		if (fields[i][0] == '_')
			continue;			/* would clash with the reserved columns */
		appendStringInfo(&buf, ",\n    %s %s",
						 quote_identifier(PgpolyStoreToServerCstr(fields[i], "mapping field name")),
						 sql_type(json_object_get(props, fields[i])));
	}
	appendStringInfo(&buf, ",\n    _score real,\n    _query text\n) SERVER %s OPTIONS (index %s)",
					 quote_identifier(server), quote_literal_cstr(index));
	return buf.data;
}

/* IMPORT FOREIGN SCHEMA: one foreign table per index of the pattern. */
List *
ElasticImportForeignSchema(ImportForeignSchemaStmt *stmt, Oid serverOid)
{
	ForeignServer *server = GetForeignServer(serverOid);
	PgpolyConnection *conn;
	PgpolyHttpResponse resp;
	json_t	   *doc;
	char	  **names;
	int			n;
	List	   *result = NIL;

	PgpolyRejectImportOptions(stmt->options);
	conn = ElasticGetConnection(&(ElasticTable) {
		.server = server,
		.user = PgpolyGetUserMapping(GetUserId(), serverOid)
	});
	ElasticRequestOk(conn, "GET", ElasticIndexPath(stmt->remote_schema, "/_mapping"),
					 NULL, 0, stmt->remote_schema, &resp);
	doc = PgpolyJsonParse(conn, resp.body, resp.len, "mapping");
	names = sorted_keys(doc, &n);
	for (int i = 0; i < n; i++)
		if (names[i][0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
					 errmsg("Elasticsearch server \"%s\" sent a mapping of an index with an empty name",
							conn->servername)));
	for (int i = 0; i < n; i++)
	{
		const char *name = PgpolyStoreToServerCstr(names[i], "index name");

		if (names[i][0] != '.' && IsImportableForeignTable(name, stmt))
			result = lappend(result, table_sql(stmt, server->servername, name,
											   json_object_get(doc, names[i])));
	}
	return result;
}
