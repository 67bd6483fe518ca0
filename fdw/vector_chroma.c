/*-------------------------------------------------------------------------
 *
 * vector_chroma.c
 *		  Provider 'chroma': the Chroma REST API (v2): collections, request
 *		  bodies, filters, responses, and sending buffered writes.
 *
 * Collections are addressed by name for lookup and creation
 * (.../collections/{name}) but by UUID for every record route
 * (.../collections/{uuid}/get|query|upsert|update|delete).  The UUID, the
 * distance and the dimension of each collection are cached on the
 * connection, so a query costs one request: a collection's distance cannot
 * change in place, and a record route answering 404 (the collection was
 * dropped and re-created elsewhere) drops the entry, looks the name up
 * again and retries once, except a query made for another distance or
 * dimension (40001; VectorFreshCollection need not read it per transaction).
 *
 * Invariants:
 *	- Every upsert/update body carries embeddings (vector_fdw.c refuses a
 *	  row without one): Chroma corrupts a collection written without them.
 *	- jansson documents are owned by the current memory context
 *	  (PgpolyJsonParse); metadata objects become jsonb through their JSON
 *	  text and PostgreSQL's parser, numbers printed in shortest round-trip
 *	  form so that nothing is altered.
 *	- Filters use only operators whose Chroma semantics match SQL's ($ne
 *	  and $nin let records without the key through, so they are never
 *	  built).
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
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "vector.h"

/*
 * VectorProvider.configure: the api_key headers, and the tenant/database
 * prefix of every route.
 */
static void
chroma_configure(ForeignServer *server, UserMapping *user, List **headers, char **base)
{
	const char *key = user ? PgpolyGetOption(user->options, "api_key", NULL) : NULL;

	if (key)
	{
		*headers = lappend(*headers, psprintf("Authorization: Bearer %s", key));
		*headers = lappend(*headers, psprintf("X-Chroma-Token: %s", key));
	}
	*base = psprintf("/api/v2/tenants/%s/databases/%s",
					 VectorUrlSegment(PgpolyGetOption(server->options, "tenant",
													  "default_tenant")),
					 VectorUrlSegment(PgpolyGetOption(server->options, "database",
													  "default_database")));
}

/* ----------------------------------------------------------------
 *		Requests and errors
 * ----------------------------------------------------------------
 */

/* VectorProvider.error_text: "error: message" of Chroma's error body. */
static const char *
chroma_error_text(json_t *doc)
{
	json_t	   *err = json_object_get(doc, "error");

	if (!json_is_string(json_object_get(doc, "message")))
		return NULL;
	return psprintf("%s: %s", json_is_string(err) ? json_string_value(err) : "error",
					json_string_value(json_object_get(doc, "message")));
}

/* ----------------------------------------------------------------
 *		Collections
 * ----------------------------------------------------------------
 */

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

/* A VectorCollection (in the current context) from a collection object. */
static VectorCollection *
parse_collection(PgpolyConnection *conn, json_t *obj)
{
	json_t	   *id = json_object_get(obj, "id");
	json_t	   *name = json_object_get(obj, "name");
	json_t	   *dim = json_object_get(obj, "dimension");
	VectorCollection *c;

	if (!json_is_object(obj) || !json_is_string(id) || !json_is_string(name))
		VectorBadResponse(conn, "collection description", "an object with \"id\" and \"name\"");
	c = palloc0(sizeof(VectorCollection));
	c->name = VectorCollectionName(conn, name, "collection description");
	c->uuid = pstrdup(json_string_value(id));
	c->distance = collection_distance(obj);
	c->dimension = json_is_integer(dim) ? (int) json_integer_value(dim) : 0;
	return c;
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
	return VectorCall(conn, "POST", psprintf("%s/collections", VectorBase(conn)),
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
	VectorCollection *c = VectorCachedCollection(conn, tbl->collection);
	json_t	   *obj;

	if (c)
		return c;
	obj = VectorCall(conn, "GET",
					 psprintf("%s/collections/%s", VectorBase(conn),
							  VectorUrlSegment(tbl->collection)),
					 NULL, psprintf("lookup of collection \"%s\"", tbl->collection), true);
	if (obj == NULL && create && tbl->create)
		obj = create_collection(conn, tbl);
	if (obj == NULL)
	{
		if (!missing_ok)
			VectorNoCollection(conn, tbl);
		return NULL;
	}
	return VectorRememberCollection(conn, parse_collection(conn, obj));
}

/* VectorProvider.lookup (no creation). */
static VectorCollection *
chroma_lookup(PgpolyConnection *conn, VectorTable *tbl, bool missing_ok)
{
	return lookup(conn, tbl, missing_ok, false);
}

/*
 * Send a record route request (op: "get", "query", "upsert" ...) for tbl's
 * collection; on 404 re-resolve the name once (it may have been re-created).
 * A request built for collection expect (a query: its answer is ranked and
 * converted by expect's distance, its vector has expect's dimension) is
 * not sent to a collection re-created with another distance or dimension
 * (since this statement looked it up, or since it was cached by an earlier
 * transaction): 40001, the statement is to be run again (its plan is made
 * again).  A batch of a flush whose embeddings (dim_of's dimension) do not
 * fit the collection as resolved now is not sent either: 22000.
 */
static json_t *
record_call(PgpolyConnection *conn, VectorTable *tbl, const char *op,
			StringInfo body, bool create, const VectorCollection *expect,
			const VectorWrite *dim_of)
{
	char	   *what = psprintf("%s on collection \"%s\"", op, tbl->collection);

	for (int attempt = 0;; attempt++)
	{
		VectorCollection *c = lookup(conn, tbl, false, create);
		json_t	   *doc;

		if (attempt > 0 && expect)
			VectorCheckRecreated(tbl, c, expect, op);
		VectorCheckFlushDimension(tbl, c, dim_of, attempt > 0);
		doc = VectorCall(conn, "POST",
						  psprintf("%s/collections/%s/%s", VectorBase(conn), c->uuid, op),
						  body, what, attempt == 0);
		if (doc != NULL)
			return doc;
		VectorForgetCollection(conn, tbl);
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

/* Body of a /query; q NULL writes "$query" (EXPLAIN). */
static void
query_body(StringInfo buf, const float4 *q, int dim, int k, const char *where,
		   List *ids, bool explain_ids, int include)
{
	appendStringInfoString(buf, "{\"query_embeddings\":[");
	if (q)
		VectorAppendQueryFloats(buf, q, dim);
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

/* VectorProvider.query_text: the /query request as EXPLAIN shows it. */
static char *
chroma_query_text(VectorTable *tbl, const char *where, int k, int include, bool ids)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "POST collections/{id of \"%s\"}/query ", tbl->collection);
	query_body(&buf, NULL, 0, k, where, NIL, ids, include);
	return buf.data;
}

/* VectorProvider.scan_text: the /get request of a plain scan, for EXPLAIN. */
static char *
chroma_scan_text(VectorTable *tbl, bool by_ids, const char *where, int include)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "POST collections/{id of \"%s\"}/get {", tbl->collection);
	if (by_ids)
		appendStringInfoString(&buf, "\"ids\":$ids,");
	else
		appendStringInfo(&buf, "\"limit\":%d,\"offset\":$offset,", tbl->fetch_size);
	if (where)
		appendStringInfo(&buf, "\"where\":%s,", where);
	append_include(&buf, include & ~VINC_DISTANCE);
	appendStringInfoChar(&buf, '}');
	if (!by_ids)
		appendStringInfoString(&buf, ", paged");
	return buf.data;
}

/* ----------------------------------------------------------------
 *		Filters
 * ----------------------------------------------------------------
 */

/*
 * {"key": {"$op": value}} for one condition, or {"$or": [that, ...]} when
 * it admits c->or_else too.
 */
static char *
cond_json(VectorCondEval *c)
{
	static const char *const ops[] = {"$eq", "$lt", "$lte", "$gt", "$gte", "$in"};
	StringInfoData buf;

	initStringInfo(&buf);
	if (c->or_else)
		appendStringInfoString(&buf, "{\"$or\":[");
	appendStringInfoChar(&buf, '{');
	escape_json(&buf, c->key);
	appendStringInfo(&buf, ":{\"%s\":%s}}", ops[c->op], c->value);
	if (c->or_else)
		appendStringInfo(&buf, ",%s]}", cond_json(c->or_else));
	return buf.data;
}

/* VectorProvider.filter: the where object of conds (ANDed with $and). */
static char *
chroma_filter(List *conds)
{
	StringInfoData buf;
	ListCell   *lc;

	if (list_length(conds) == 1)
		return cond_json(linitial(conds));
	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"$and\":[");
	foreach(lc, conds)
		appendStringInfo(&buf, "%s%s", foreach_current_index(lc) ? "," : "",
						 cond_json(lfirst(lc)));
	appendStringInfoString(&buf, "]}");
	return buf.data;
}

/* ----------------------------------------------------------------
 *		Responses
 * ----------------------------------------------------------------
 */

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
		VectorBadResponse(conn, "record", "string ids");
	row->id = VectorRecordId(conn, id);
	if (json_is_array(emb))
		VectorParseEmbedding(conn, row, emb, "embedding");
	else if (emb != NULL && !json_is_null(emb))
		VectorBadResponse(conn, psprintf("embedding of record \"%s\"", row->id),
						  "an array of numbers or null");
	if (json_is_string(doc))
		row->document = VectorDocument(doc, &row->document_nul);
	else if (doc != NULL && !json_is_null(doc))
		VectorBadResponse(conn, psprintf("document of record \"%s\"", row->id),
						  "a string or null");
	if (meta != NULL && !json_is_null(meta) && !json_is_object(meta))
		VectorBadResponse(conn, psprintf("metadata of record \"%s\"", row->id),
						  "an object or null");
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
		VectorBadResponse(conn, query ? "query response" : "get response",
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

		/*
		 * Chroma computes distances in single precision and writes one that
		 * is not finite (an overflow to infinity, or NaN from infinities of
		 * both signs in an inner product) as null, as serde_json writes such
		 * a float: a distance it could not compute, not a record without one.
		 */
		else if (query && json_is_array(dists) && json_is_null(dist))
			row->distance_overflow = true;
		rows = lappend(rows, row);
	}
	return rows;
}

/* ----------------------------------------------------------------
 *		Reads
 * ----------------------------------------------------------------
 */

/*
 * The most ids one get asks for: Chroma's SQLite store binds each as a
 * SQL variable and answers 500 "too many SQL variables" past 32766 (an
 * upsert of more is fine: it is split by the store).
 */
#define CHROMA_GET_MAX_IDS 10000

/*
 * VectorProvider.get_by_ids: records with the given ids (and where), one
 * /get for each CHROMA_GET_MAX_IDS of them.
 */
static List *
chroma_get_by_ids(PgpolyConnection *conn, VectorTable *tbl, VectorCollection *coll,
				  List *ids, const char *where, int include)
{
	StringInfoData body;
	List	   *rows = NIL;

	initStringInfo(&body);
	for (int start = 0; start < list_length(ids); start += CHROMA_GET_MAX_IDS)
	{
		List	   *part = NIL;

		for (int i = start; i < Min(start + CHROMA_GET_MAX_IDS, list_length(ids)); i++)
			part = lappend(part, list_nth(ids, i));
		resetStringInfo(&body);
		appendStringInfoString(&body, "{\"ids\":");
		append_ids(&body, part);
		if (where)
			appendStringInfo(&body, ",\"where\":%s", where);
		appendStringInfoChar(&body, ',');
		append_include(&body, include);
		appendStringInfoChar(&body, '}');
		rows = list_concat(rows, parse_records(conn, record_call(conn, tbl, "get", &body, false,
																 NULL, NULL),
											   false, coll->distance));
		list_free(part);
	}
	return rows;
}

/*
 * VectorProvider.get_page: one /get page of the records matching where.
 * The cursor is the offset in decimal; a short page is the last one.
 */
static List *
chroma_get_page(PgpolyConnection *conn, VectorTable *tbl, VectorCollection *coll,
				const char *where, char **cursor, int limit, int include)
{
	StringInfoData body;
	int			offset = *cursor ? atoi(*cursor) : 0;
	List	   *rows;

	initStringInfo(&body);
	appendStringInfo(&body, "{\"limit\":%d,\"offset\":%d,", limit, offset);
	if (where)
		appendStringInfo(&body, "\"where\":%s,", where);
	append_include(&body, include);
	appendStringInfoChar(&body, '}');
	rows = parse_records(conn, record_call(conn, tbl, "get", &body, false, NULL, NULL), false,
						 coll->distance);
	*cursor = list_length(rows) < limit ? NULL :
		psprintf("%d", offset + list_length(rows));
	return rows;
}

/* VectorProvider.query: the k nearest records to q, one /query. */
static List *
chroma_query(PgpolyConnection *conn, VectorTable *tbl, VectorCollection *coll,
			 const float4 *q, int dim, int k, const char *where, List *ids,
			 int include)
{
	StringInfoData body;

	initStringInfo(&body);
	query_body(&body, q, dim, k, where, ids, false, include);
	return parse_records(conn, record_call(conn, tbl, "query", &body, false, coll, NULL), true,
						 coll->distance);
}

/* VectorProvider.list_collections: the tenant/database's, paged by 100. */
static List *
chroma_list_collections(PgpolyConnection *conn)
{
	List	   *result = NIL;
	const int	page = 100;

	for (int offset = 0;; offset += page)
	{
		json_t	   *doc = VectorCall(conn, "GET",
									 psprintf("%s/collections?limit=%d&offset=%d",
											  VectorBase(conn), page, offset),
									 NULL, "listing of collections", false);
		size_t		i;
		json_t	   *obj;

		if (!json_is_array(doc))
			VectorBadResponse(conn, "collection list", "an array of collections");
		json_array_foreach(doc, i, obj)
			result = lappend(result, parse_collection(conn, obj));
		if (json_array_size(doc) < (size_t) page)
			break;
	}
	return result;
}

/* ----------------------------------------------------------------
 *		Writes
 * ----------------------------------------------------------------
 */

/* Append the ids of writes[0..n), comma-separated. */
static void
append_write_ids(StringInfo buf, VectorWrite **w, int n)
{
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(buf, ',');
		escape_json(buf, w[i]->row.id);
	}
}

/* Body of an upsert/update of writes[0..n). */
static void
write_body(StringInfo buf, VectorWrite **w, int n)
{
	appendStringInfoString(buf, "{\"ids\":[");
	append_write_ids(buf, w, n);
	appendStringInfoString(buf, "],\"embeddings\":[");
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(buf, ',');
		Assert(w[i]->row.emb != NULL);
		VectorAppendFloats(buf, w[i]->row.emb, w[i]->row.dim);
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

/*
 * VectorProvider.count: GET .../collections/{id}/count, whose answer is a
 * bare integer.
 */
static double
chroma_count(PgpolyConnection *conn, VectorTable *tbl, VectorCollection *coll)
{
	json_t	   *doc = VectorCall(conn, "GET",
								 psprintf("%s/collections/%s/count", VectorBase(conn), coll->uuid),
								 NULL, psprintf("count of collection \"%s\"", tbl->collection),
								 false);

	if (!json_is_integer(doc))
		VectorBadResponse(conn, "count response", "an integer");
	return (double) json_integer_value(doc);
}

/* The record route of each VectorWriteKind. */
static const char *const WriteOps[] = {"upsert", "update", "delete", "add"};

/* VectorProvider.write_text. */
static char *
chroma_write_text(VectorTable *tbl, VectorWriteKind kind)
{
	return psprintf("POST collections/{id of \"%s\"}/%s", tbl->collection, WriteOps[kind]);
}

/* VectorProvider.send_batch: n writes of the same table and kind. */
static void
chroma_send_batch(PgpolyConnection *conn, VectorWrite **w, int n)
{
	StringInfoData body;

	initStringInfo(&body);
	if (w[0]->kind == VW_DELETE)
	{
		appendStringInfoString(&body, "{\"ids\":[");
		append_write_ids(&body, w, n);
		appendStringInfoString(&body, "]}");
	}
	else
		write_body(&body, w, n);
	(void) record_call(conn, w[0]->tbl, WriteOps[w[0]->kind], &body,
					   w[0]->kind == VW_UPSERT || w[0]->kind == VW_INSERT, NULL,
					   w[0]->dim_of);
}

/*
 * VectorProvider.exact_bound.  Chroma keeps a JSON integer as a 64-bit
 * integer (pgpoly writes an integral numeric, or int8, so) and a number with
 * a fraction or an exponent as a double.  It compares an integer with an
 * integer bound exactly, a double with an integer bound as a double, and an
 * integer with a double bound truncated to a 64-bit integer, saturating:
 * 9223372036854775807 is not < 1e300 there.  A numeric's float8 bound
 * decides the doubles exactly (PgpolyFloat8Bound), and the integers too
 * when it is the value itself (integer), or of a magnitude below 2^53,
 * where the float8s are close enough that no integer lies between the
 * value and its bound.  Otherwise an integer between them
 * (9007199254740993, whose bound is 2^53) would be decided by the bound,
 * not the value.
 */
static bool
chroma_exact_bound(double bound, bool integer)
{
	return integer || fabs(bound) < 9007199254740992.0; /* 2^53 */
}

const VectorProvider VectorChroma = {
	.name = "chroma",
	.label = "Chroma",
	.truncates_bounds = true,
	.exact_bound = chroma_exact_bound,
	.routes_by_uuid = true,
	.configure = chroma_configure,
	.error_text = chroma_error_text,
	.lookup = chroma_lookup,
	.list_collections = chroma_list_collections,
	.filter = chroma_filter,
	.get_by_ids = chroma_get_by_ids,
	.get_page = chroma_get_page,
	.query = chroma_query,
	.check_write = NULL,
	.send_batch = chroma_send_batch,
	.query_text = chroma_query_text,
	.count = chroma_count,
	.scan_text = chroma_scan_text,
	.write_text = chroma_write_text
};
