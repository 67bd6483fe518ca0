/*-------------------------------------------------------------------------
 *
 * vector_chroma.c
 *		  The Chroma REST API (v2): connection, collections, requests,
 *		  responses, and sending buffered writes.
 *
 * Collections are addressed by name for lookup and creation
 * (.../collections/{name}) but by UUID for every record route
 * (.../collections/{uuid}/get|query|upsert|update|delete).  The UUID, the
 * distance and the dimension of each collection are cached on the
 * connection, so a query costs one request; a record route answering 404
 * (the collection was dropped and re-created elsewhere) drops the entry,
 * looks the name up again and retries once.
 *
 * Invariants:
 *	- Every upsert/update body carries embeddings (vector_fdw.c refuses a
 *	  row without one): Chroma corrupts a collection written without them.
 *	- jansson documents are owned by the current memory context
 *	  (PgpolyJsonParse); metadata objects become jsonb through their JSON
 *	  text and PostgreSQL's parser, numbers printed in shortest round-trip
 *	  form so that nothing is altered.
 *	- Errors name the server, the URL, the collection and what Chroma said;
 *	  the api_key is a header and never appears in a message.
 *
 * fdw/vector_chroma.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pgpoly_jansson.h"

#include <math.h>

#include "common/shortest_dec.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "vector.h"

/* The store handle of one cached connection. */
typedef struct ChromaConn
{
	PgpolyHttp *http;
	MemoryContext cxt;			/* the collection cache */
	char	   *base;			/* /api/v2/tenants/T/databases/D */
	List	   *colls;			/* VectorCollection *, in cxt */
} ChromaConn;

static void *chroma_connect(PgpolyConnection *conn, ForeignServer *server,
							UserMapping *user);
static void chroma_disconnect(void *handle);

const PgpolyStore VectorStore = {
	"vector",
	chroma_connect,
	chroma_disconnect,
	VectorFlushWrites
};

/* Percent-encode a path segment (names are [A-Za-z0-9._-] in Chroma). */
static char *
url_segment(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (isalnum(c) || c == '.' || c == '_' || c == '-')
			appendStringInfoChar(&buf, c);
		else
			appendStringInfo(&buf, "%%%02X", c);
	}
	return buf.data;
}

/* PgpolyStore.connect: set up the HTTP client; no network I/O yet. */
static void *
chroma_connect(PgpolyConnection *conn, ForeignServer *server, UserMapping *user)
{
	const char *url = PgpolyGetOption(server->options, "url", NULL);
	const char *key = user ? PgpolyGetOption(user->options, "api_key", NULL) : NULL;
	PgpolyHttpConfig cfg;
	ChromaConn *cc;

	if (url == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("vector server \"%s\" has no option \"url\"", server->servername),
				 errhint("ALTER SERVER %s OPTIONS (ADD url 'http://host:8000').",
						 quote_identifier(server->servername))));
	memset(&cfg, 0, sizeof(cfg));
	cfg.urls = PgpolySplitUrls(url);
	if (cfg.urls == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"url\": \"%s\"", url)));
	cfg.verify_tls = true;
	if (key)
	{
		cfg.headers = lappend(cfg.headers, psprintf("Authorization: Bearer %s", key));
		cfg.headers = lappend(cfg.headers, psprintf("X-Chroma-Token: %s", key));
	}
	cc = MemoryContextAllocZero(TopMemoryContext, sizeof(ChromaConn));
	cc->cxt = AllocSetContextCreate(TopMemoryContext, "pgpoly vector collections",
									ALLOCSET_SMALL_SIZES);
	cc->base = MemoryContextStrdup(cc->cxt,
								   psprintf("/api/v2/tenants/%s/databases/%s",
											url_segment(PgpolyGetOption(server->options, "tenant",
																		"default_tenant")),
											url_segment(PgpolyGetOption(server->options, "database",
																		"default_database"))));
	PG_TRY();
	{
		cc->http = PgpolyHttpOpen(&cfg);
	}
	PG_CATCH();
	{
		MemoryContextDelete(cc->cxt);
		pfree(cc);
		PG_RE_THROW();
	}
	PG_END_TRY();
	strlcpy(conn->target, PgpolyHttpBaseUrl(cc->http), sizeof(conn->target));
	return cc;
}

/* PgpolyStore.disconnect: free everything; never ereports. */
static void
chroma_disconnect(void *handle)
{
	ChromaConn *cc = handle;

	PgpolyHttpClose(cc->http);
	MemoryContextDelete(cc->cxt);
	pfree(cc);
}

/* The handle of conn (opened by PgpolyGetConnection). */
static ChromaConn *
handle_of(PgpolyConnection *conn)
{
	PgpolyEnsureConnected(conn);
	return (ChromaConn *) conn->handle;
}

/* The cached connection for tbl's server and user mapping. */
PgpolyConnection *
VectorGetConnection(VectorTable *tbl)
{
	return PgpolyGetConnection(&VectorStore, tbl->server, tbl->user);
}

/* ----------------------------------------------------------------
 *		Requests and errors
 * ----------------------------------------------------------------
 */

/*
 * Raise the ERROR for a non-2xx answer to what (e.g. "query of collection
 * \"x\""), quoting Chroma's {"error", "message"} when the body has one.
 */
static void
service_error(PgpolyConnection *conn, PgpolyHttpResponse *resp, const char *method,
			  const char *path, const char *what)
{
	json_error_t jerr;
	json_t	   *doc = json_loadb(resp->body, resp->len, 0, &jerr);
	char	   *said;
	int			code;

	if (doc && json_is_string(json_object_get(doc, "message")))
		said = psprintf("%s: %s",
						json_is_string(json_object_get(doc, "error")) ?
						json_string_value(json_object_get(doc, "error")) : "error",
						json_string_value(json_object_get(doc, "message")));
	else
		said = psprintf("%.200s", resp->len ? resp->body : "(empty body)");
	if (doc)
		json_decref(doc);
	if (resp->status == 404)
		code = ERRCODE_FDW_TABLE_NOT_FOUND;
	else if (resp->status == 401 || resp->status == 403)
		code = ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
	else
		code = ERRCODE_FDW_ERROR;
	ereport(ERROR,
			(errcode(code),
			 errmsg("vector server \"%s\" at %s: %s failed with HTTP %ld",
					conn->servername, conn->target, what, resp->status),
			 errdetail("Chroma said: %s; request: %s %s", said, method, path),
			 resp->status == 401 || resp->status == 403 ?
			 errhint("Check the api_key option of the user mapping.") : 0));
}

/*
 * Send one request and return the parsed JSON of a 2xx answer, or NULL for
 * a 404 when notfound_ok.  Any other status is an ERROR.
 */
static json_t *
chroma_call(PgpolyConnection *conn, const char *method, const char *path,
			StringInfo body, const char *what, bool notfound_ok)
{
	ChromaConn *cc = handle_of(conn);
	PgpolyHttpResponse resp;

	PgpolyHttpRequest(conn, cc->http, method, path, body ? body->data : NULL,
					  body ? body->len : 0, NULL, 2, &resp);
	if (resp.status == 404 && notfound_ok)
		return NULL;
	if (resp.status < 200 || resp.status > 299)
		service_error(conn, &resp, method, path, what);
	return PgpolyJsonParse(conn, resp.body, resp.len, what);
}

/* ----------------------------------------------------------------
 *		Collections
 * ----------------------------------------------------------------
 */

/* A malformed response: ERROR naming what was expected. */
static void
bad_response(PgpolyConnection *conn, const char *what, const char *expected)
{
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
			 errmsg("vector server \"%s\" at %s sent an unexpected %s",
					conn->servername, conn->target, what),
			 errdetail("Expected %s.", expected)));
}

/* The distance ("space") of a collection object. */
static VectorDistance
collection_distance(json_t *obj)
{
	json_t	   *cfg = json_object_get(obj, "configuration_json");
	const char *kinds[] = {"hnsw", "spann"};

	for (int i = 0; i < lengthof(kinds); i++)
	{
		json_t	   *space = json_object_get(json_object_get(cfg, kinds[i]), "space");

		if (json_is_string(space))
			return VectorParseDistance(json_string_value(space));
	}
	return VDIST_L2;			/* Chroma's default */
}

/* A VectorCollection (in cxt) from a collection object. */
static VectorCollection *
parse_collection(PgpolyConnection *conn, json_t *obj, MemoryContext cxt)
{
	json_t	   *id = json_object_get(obj, "id");
	json_t	   *name = json_object_get(obj, "name");
	json_t	   *dim = json_object_get(obj, "dimension");
	VectorCollection *c;

	if (!json_is_object(obj) || !json_is_string(id) || !json_is_string(name))
		bad_response(conn, "collection description", "an object with \"id\" and \"name\"");
	c = MemoryContextAllocZero(cxt, sizeof(VectorCollection));
	c->name = MemoryContextStrdup(cxt, json_string_value(name));
	c->uuid = MemoryContextStrdup(cxt, json_string_value(id));
	c->distance = collection_distance(obj);
	c->dimension = json_is_integer(dim) ? (int) json_integer_value(dim) : 0;
	return c;
}

/* Forget the cached description of collection name. */
static void
forget_collection(ChromaConn *cc, const char *name)
{
	ListCell   *lc;

	foreach(lc, cc->colls)
	{
		VectorCollection *c = lfirst(lc);

		if (strcmp(c->name, name) == 0)
		{
			cc->colls = foreach_delete_current(cc->colls, lc);
			return;
		}
	}
}

/* Create tbl's collection with its distance option (get_or_create). */
static json_t *
create_collection(PgpolyConnection *conn, VectorTable *tbl)
{
	StringInfoData body;

	if (tbl->distance == VDIST_UNKNOWN)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("cannot create collection \"%s\" for foreign table \"%s\": no distance",
						tbl->collection, tbl->relname),
				 errhint("Set the table option distance to 'l2', 'cosine' or 'ip'.")));
	initStringInfo(&body);
	appendStringInfoString(&body, "{\"name\":");
	escape_json(&body, tbl->collection);
	appendStringInfo(&body, ",\"get_or_create\":true,\"configuration\":{\"hnsw\":{\"space\":\"%s\"}}}",
					 VectorDistanceName(tbl->distance));
	return chroma_call(conn, "POST", psprintf("%s/collections", handle_of(conn)->base),
					   &body, psprintf("creation of collection \"%s\"", tbl->collection),
					   false);
}

/*
 * The description of tbl's collection: cached, or looked up by name.  A
 * missing collection is created when create is true and the table has
 * create_collection; otherwise it is NULL when missing_ok, else an ERROR.
 */
static VectorCollection *
lookup(PgpolyConnection *conn, VectorTable *tbl, bool missing_ok, bool create)
{
	ChromaConn *cc = handle_of(conn);
	ListCell   *lc;
	json_t	   *obj;
	VectorCollection *c;
	MemoryContext old;

	foreach(lc, cc->colls)
		if (strcmp(((VectorCollection *) lfirst(lc))->name, tbl->collection) == 0)
			return lfirst(lc);
	obj = chroma_call(conn, "GET",
					  psprintf("%s/collections/%s", cc->base, url_segment(tbl->collection)),
					  NULL, psprintf("lookup of collection \"%s\"", tbl->collection), true);
	if (obj == NULL && create && tbl->create)
		obj = create_collection(conn, tbl);
	if (obj == NULL)
	{
		if (missing_ok)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_FDW_TABLE_NOT_FOUND),
				 errmsg("collection \"%s\" of foreign table \"%s\" does not exist on vector server \"%s\"",
						tbl->collection, tbl->relname, conn->servername),
				 errhint("Create the collection, or set create_collection 'true' and distance on the foreign table.")));
	}
	c = parse_collection(conn, obj, cc->cxt);
	old = MemoryContextSwitchTo(cc->cxt);
	cc->colls = lappend(cc->colls, c);
	MemoryContextSwitchTo(old);
	return c;
}

/* Drop the cached description of tbl's collection (to see it afresh). */
void
VectorForgetCollection(PgpolyConnection *conn, VectorTable *tbl)
{
	forget_collection(handle_of(conn), tbl->collection);
}

/* Public lookup (no creation). */
VectorCollection *
VectorLookupCollection(PgpolyConnection *conn, VectorTable *tbl, bool missing_ok)
{
	return lookup(conn, tbl, missing_ok, false);
}

/*
 * Send a record route request (op: "get", "query", "upsert" ...) for tbl's
 * collection; on 404 re-resolve the name once (it may have been re-created).
 */
static json_t *
record_call(PgpolyConnection *conn, VectorTable *tbl, const char *op,
			StringInfo body, bool create)
{
	ChromaConn *cc = handle_of(conn);
	char	   *what = psprintf("%s on collection \"%s\"", op, tbl->collection);

	for (int attempt = 0;; attempt++)
	{
		VectorCollection *c = lookup(conn, tbl, false, create);
		json_t	   *doc;

		doc = chroma_call(conn, "POST",
						  psprintf("%s/collections/%s/%s", cc->base, c->uuid, op),
						  body, what, attempt == 0);
		if (doc != NULL)
			return doc;
		forget_collection(cc, tbl->collection);
	}
}

/* ----------------------------------------------------------------
 *		Request bodies
 * ----------------------------------------------------------------
 */

/* Append ,"include":[...] for the include flags. */
static void
append_include(StringInfo buf, int include)
{
	bool		first = true;

	appendStringInfoString(buf, "\"include\":[");
#define INC(flag, name) \
	if (include & (flag)) { appendStringInfo(buf, "%s\"%s\"", first ? "" : ",", name); first = false; }
	INC(VINC_EMBEDDING, "embeddings");
	INC(VINC_DOCUMENT, "documents");
	INC(VINC_METADATA, "metadatas");
	INC(VINC_DISTANCE, "distances");
#undef INC
	appendStringInfoChar(buf, ']');
}

/* Append a JSON array of the strings in list. */
static void
append_ids(StringInfo buf, List *ids)
{
	ListCell   *lc;

	appendStringInfoChar(buf, '[');
	foreach(lc, ids)
	{
		if (foreach_current_index(lc) > 0)
			appendStringInfoChar(buf, ',');
		escape_json(buf, lfirst(lc));
	}
	appendStringInfoChar(buf, ']');
}

/* Append v as a JSON array of shortest round-trip float4 numbers. */
static void
append_vector(StringInfo buf, const float4 *v, int dim)
{
	char		num[FLOAT_SHORTEST_DECIMAL_LEN];

	appendStringInfoChar(buf, '[');
	for (int i = 0; i < dim; i++)
	{
		if (i > 0)
			appendStringInfoChar(buf, ',');
		if (isnan(v[i]) || isinf(v[i]))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("a vector sent to the service must not contain NaN or Infinity")));
		float_to_shortest_decimal_buf(v[i], num);
		appendStringInfoString(buf, num);
	}
	appendStringInfoChar(buf, ']');
}

/* Body of a /query; q NULL writes "$query" (EXPLAIN). */
static void
query_body(StringInfo buf, const float4 *q, int dim, int k, const char *where,
		   List *ids, bool explain_ids, int include)
{
	appendStringInfoString(buf, "{\"query_embeddings\":[");
	if (q)
		append_vector(buf, q, dim);
	else
		appendStringInfoString(buf, "$query");
	appendStringInfo(buf, "],\"n_results\":%d,", k);
	if (where)
		appendStringInfo(buf, "\"where\":%s,", where);
	if (ids != NIL)
	{
		appendStringInfoString(buf, "\"ids\":");
		append_ids(buf, ids);
		appendStringInfoChar(buf, ',');
	}
	else if (explain_ids)
		appendStringInfoString(buf, "\"ids\":$ids,");
	append_include(buf, include);
	appendStringInfoChar(buf, '}');
}

/* The /query request as EXPLAIN shows it. */
char *
VectorQueryText(VectorTable *tbl, const char *where, int k, int include, bool ids)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "POST collections/{id of \"%s\"}/query ", tbl->collection);
	query_body(&buf, NULL, 0, k, where, NIL, ids, include | VINC_DISTANCE);
	return buf.data;
}

/* ----------------------------------------------------------------
 *		Responses
 * ----------------------------------------------------------------
 */

/* Append a jansson value as JSON text, reals in shortest round-trip form. */
void
VectorAppendJson(StringInfo buf, json_t *v)
{
	const char *key;
	json_t	   *m;
	size_t		i;
	char		num[DOUBLE_SHORTEST_DECIMAL_LEN];

	switch (json_typeof(v))
	{
		case JSON_OBJECT:
			appendStringInfoChar(buf, '{');
			i = 0;
			json_object_foreach(v, key, m)
			{
				if (i++ > 0)
					appendStringInfoChar(buf, ',');
				escape_json(buf, key);
				appendStringInfoChar(buf, ':');
				VectorAppendJson(buf, m);
			}
			appendStringInfoChar(buf, '}');
			break;
		case JSON_ARRAY:
			appendStringInfoChar(buf, '[');
			json_array_foreach(v, i, m)
			{
				if (i > 0)
					appendStringInfoChar(buf, ',');
				VectorAppendJson(buf, m);
			}
			appendStringInfoChar(buf, ']');
			break;
		case JSON_STRING:
			escape_json(buf, json_string_value(v));
			break;
		case JSON_INTEGER:
			appendStringInfo(buf, "%lld", (long long) json_integer_value(v));
			break;
		case JSON_REAL:
			double_to_shortest_decimal_buf(json_real_value(v), num);
			appendStringInfoString(buf, num);
			break;
		case JSON_TRUE:
			appendStringInfoString(buf, "true");
			break;
		case JSON_FALSE:
			appendStringInfoString(buf, "false");
			break;
		case JSON_NULL:
			appendStringInfoString(buf, "null");
			break;
	}
}

/* The i-th element of an optional array field (NULL when absent/null). */
static json_t *
opt_item(json_t *arr, size_t i)
{
	return json_is_array(arr) ? json_array_get(arr, i) : NULL;
}

/* Fill row from the i-th elements of the response's parallel arrays. */
static void
parse_record(PgpolyConnection *conn, VectorRow *row, json_t *id, json_t *emb,
			 json_t *doc, json_t *meta)
{
	if (!json_is_string(id))
		bad_response(conn, "record", "string ids");
	row->id = pstrdup(json_string_value(id));
	if (json_is_array(emb))
	{
		size_t		j;
		json_t	   *x;

		row->dim = (int) json_array_size(emb);
		row->emb = palloc(sizeof(float4) * Max(row->dim, 1));
		json_array_foreach(emb, j, x)
		{
			if (!json_is_number(x))
				bad_response(conn, "embedding", "an array of numbers");
			row->emb[j] = (float4) json_number_value(x);
		}
	}
	if (json_is_string(doc))
		row->document = pstrdup(json_string_value(doc));
	if (json_is_object(meta))
	{
		StringInfoData buf;

		initStringInfo(&buf);
		VectorAppendJson(&buf, meta);
		row->metadata = buf.data;
	}
}

/*
 * Rows of a /get response ({"ids": [...], "embeddings": [...] ...}), or of
 * the first query of a /query response (one more level of arrays), with
 * distances converted to the metric of distance d.
 */
static List *
parse_records(PgpolyConnection *conn, json_t *doc, bool query, VectorDistance d)
{
	json_t	   *ids = json_object_get(doc, "ids");
	json_t	   *embs = json_object_get(doc, "embeddings");
	json_t	   *docs = json_object_get(doc, "documents");
	json_t	   *metas = json_object_get(doc, "metadatas");
	json_t	   *dists = json_object_get(doc, "distances");
	List	   *rows = NIL;
	size_t		n;

	if (query)
	{
		ids = json_array_get(ids, 0);
		embs = opt_item(embs, 0);
		docs = opt_item(docs, 0);
		metas = opt_item(metas, 0);
		dists = opt_item(dists, 0);
	}
	if (!json_is_array(ids))
		bad_response(conn, query ? "query response" : "get response",
					 query ? "\"ids\": [[...]]" : "\"ids\": [...]");
	n = json_array_size(ids);
	for (size_t i = 0; i < n; i++)
	{
		VectorRow  *row = palloc0(sizeof(VectorRow));
		json_t	   *dist = opt_item(dists, i);

		parse_record(conn, row, json_array_get(ids, i), opt_item(embs, i),
					 opt_item(docs, i), opt_item(metas, i));
		if (json_is_number(dist))
		{
			row->has_distance = true;
			row->distance = VectorConvertDistance(d, json_number_value(dist));
		}
		rows = lappend(rows, row);
	}
	return rows;
}

/* ----------------------------------------------------------------
 *		Reads
 * ----------------------------------------------------------------
 */

/* Records with the given ids (and where), in one /get. */
List *
VectorGetByIds(PgpolyConnection *conn, VectorTable *tbl, VectorCollection *coll,
			   List *ids, const char *where, int include)
{
	StringInfoData body;

	initStringInfo(&body);
	appendStringInfoString(&body, "{\"ids\":");
	append_ids(&body, ids);
	if (where)
		appendStringInfo(&body, ",\"where\":%s", where);
	appendStringInfoChar(&body, ',');
	append_include(&body, include & ~VINC_DISTANCE);
	appendStringInfoChar(&body, '}');
	return parse_records(conn, record_call(conn, tbl, "get", &body, false), false,
						 coll->distance);
}

/* One page (offset, limit) of the records matching where. */
List *
VectorGetPage(PgpolyConnection *conn, VectorTable *tbl, VectorCollection *coll,
			  const char *where, int offset, int limit, int include)
{
	StringInfoData body;

	initStringInfo(&body);
	appendStringInfo(&body, "{\"limit\":%d,\"offset\":%d,", limit, offset);
	if (where)
		appendStringInfo(&body, "\"where\":%s,", where);
	append_include(&body, include & ~VINC_DISTANCE);
	appendStringInfoChar(&body, '}');
	return parse_records(conn, record_call(conn, tbl, "get", &body, false), false,
						 coll->distance);
}

/* The k nearest records to q (matching where and ids), nearest first. */
List *
VectorQuery(PgpolyConnection *conn, VectorTable *tbl, VectorCollection *coll,
			const float4 *q, int dim, int k, const char *where, List *ids,
			int include)
{
	StringInfoData body;

	if (coll->dimension > 0 && dim != coll->dimension)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("query vector has %d dimensions, collection \"%s\" has %d",
						dim, coll->name, coll->dimension)));
	initStringInfo(&body);
	query_body(&body, q, dim, k, where, ids, false, include | VINC_DISTANCE);
	return parse_records(conn, record_call(conn, tbl, "query", &body, false), true,
						 coll->distance);
}

/* Collections of server (for IMPORT FOREIGN SCHEMA), paged by 100. */
List *
VectorListCollections(PgpolyConnection *conn, ForeignServer *server)
{
	ChromaConn *cc = handle_of(conn);
	List	   *result = NIL;
	const int	page = 100;

	for (int offset = 0;; offset += page)
	{
		json_t	   *doc = chroma_call(conn, "GET",
									  psprintf("%s/collections?limit=%d&offset=%d",
											   cc->base, page, offset),
									  NULL, "listing of collections", false);
		size_t		i;
		json_t	   *obj;

		if (!json_is_array(doc))
			bad_response(conn, "collection list", "an array of collections");
		json_array_foreach(doc, i, obj)
			result = lappend(result, parse_collection(conn, obj, CurrentMemoryContext));
		if (json_array_size(doc) < (size_t) page)
			break;
	}
	return result;
}

/* ----------------------------------------------------------------
 *		Writes
 * ----------------------------------------------------------------
 */

/* Body of an upsert/update of writes[0..n). */
static void
write_body(StringInfo buf, VectorWrite **w, int n)
{
	appendStringInfoString(buf, "{\"ids\":[");
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(buf, ',');
		escape_json(buf, w[i]->row.id);
	}
	appendStringInfoString(buf, "],\"embeddings\":[");
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(buf, ',');
		Assert(w[i]->row.emb != NULL);
		append_vector(buf, w[i]->row.emb, w[i]->row.dim);
	}
	appendStringInfoString(buf, "],\"documents\":[");
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(buf, ',');
		if (w[i]->row.document)
			escape_json(buf, w[i]->row.document);
		else
			appendStringInfoString(buf, "null");
	}
	appendStringInfoString(buf, "],\"metadatas\":[");
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(buf, ',');
		appendStringInfoString(buf, w[i]->send_metadata ? w[i]->send_metadata : "null");
	}
	appendStringInfoString(buf, "]}");
}

/* Send one batch: n writes of the same table and kind. */
static void
send_batch(PgpolyConnection *conn, VectorWrite **w, int n)
{
	static const char *const ops[] = {"upsert", "update", "delete"};
	VectorTable *tbl = w[0]->tbl;
	StringInfoData body;

	initStringInfo(&body);
	if (w[0]->kind == VW_DELETE)
	{
		appendStringInfoString(&body, "{\"ids\":[");
		for (int i = 0; i < n; i++)
		{
			if (i > 0)
				appendStringInfoChar(&body, ',');
			escape_json(&body, w[i]->row.id);
		}
		appendStringInfoString(&body, "]}");
	}
	else
		write_body(&body, w, n);
	PG_TRY();
	{
		(void) record_call(conn, tbl, ops[w[0]->kind], &body, w[0]->kind == VW_UPSERT);
	}
	PG_CATCH();
	{
		errcontext("%s of %d record(s) of foreign table \"%s\", first id \"%s\"",
				   ops[w[0]->kind], n, tbl->relname, w[0]->row.id);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * Send writes (VectorWrite *) in order: runs of the same table and kind go
 * in batches of the table's batch_size, one request each.
 */
void
VectorSendWrites(PgpolyConnection *conn, List *writes)
{
	int			n = list_length(writes);
	VectorWrite **w = palloc(sizeof(VectorWrite *) * Max(n, 1));
	int			start = 0;
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "pgpoly vector send",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old;

	for (int i = 0; i < n; i++)
		w[i] = list_nth(writes, i);
	old = MemoryContextSwitchTo(cxt);
	while (start < n)
	{
		int			end = start + 1;

		while (end < n && end - start < w[start]->tbl->batch_size &&
			   w[end]->kind == w[start]->kind && w[end]->tbl->relid == w[start]->tbl->relid &&
			   strcmp(w[end]->tbl->collection, w[start]->tbl->collection) == 0)
			end++;
		send_batch(conn, w + start, end - start);
		MemoryContextReset(cxt);
		start = end;
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

/* PgpolyStore.flush: send the transaction's buffered writes at pre-commit. */
void
VectorFlushWrites(PgpolyConnection *conn, List *writes)
{
	List	   *payloads = NIL;
	ListCell   *lc;

	PgpolyEnsureConnected(conn);
	foreach(lc, writes)
		payloads = lappend(payloads, ((PgpolyWrite *) lfirst(lc))->payload);
	VectorSendWrites(conn, payloads);
}
