/*-------------------------------------------------------------------------
 *
 * vector_qdrant.c
 *		  Provider 'qdrant': the Qdrant REST API: collections, request
 *		  bodies, filters, responses, and sending buffered writes.
 *
 * Routes (API reference https://api.qdrant.tech/api-reference):
 *	GET  /collections/{name}				describe (size, distance)
 *	PUT  /collections/{name}				create (create_collection)
 *	GET  /collections						list (IMPORT FOREIGN SCHEMA)
 *	POST /collections/{name}/points			retrieve by ids
 *	POST /collections/{name}/points/scroll	pages; ids with a filter
 *	POST /collections/{name}/points/query	k-NN
 *	PUT  /collections/{name}/points?wait=true			upsert (update_mode:
 *						insert_only for INSERT ... ON CONFLICT DO NOTHING,
 *						update_only for UPDATE; points/upsert-points)
 *	POST /collections/{name}/points/delete?wait=true	delete
 * The api_key goes in the header "api-key".
 *
 * Records: the point's payload holds the metadata keys plus the document
 * under the key "document"; a metadata key "document" is therefore
 * refused on write and never seen on read.  Point ids are unsigned
 * integers or UUIDs; the id column is text, so pgpoly accepts exactly the
 * texts Qdrant gives back for them: an unsigned integer in decimal without
 * leading zeros (at most 2^63 - 1, what jansson parses), or a UUID in
 * lowercase 8-4-4-4-12 form.  Writing any other id is an ERROR naming it
 * (it would be refused, or read back under another spelling); reading one
 * by id finds nothing, since no point can have it.  (Mapping arbitrary
 * text to v5 UUIDs was rejected: the points would not be addressable by
 * other Qdrant clients under the ids users see.)
 *
 * Scores (https://qdrant.tech/documentation/concepts/search/#metrics):
 * Euclid's score is the Euclidean distance, Cosine's the cosine
 * similarity, Dot's the dot product; they become 1 - score and -score
 * for <=> and <#>.
 *
 * Invariants:
 *	- Upserts wait for the write (?wait=true), so a COMMIT that succeeded
 *	  is visible to the next read.
 *	- A filter admits exactly what the SQL quals admit: numbers compare
 *	  with range (match on an integer skips float payloads), strings and
 *	  booleans with match, and a condition on the key "document" matches
 *	  nothing.  A range compares as doubles (qdrant_exact_bound): a
 *	  comparison with a bound it would decide otherwise is not sent.
 *
 * fdw/vector_qdrant.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pgpoly_jansson.h"

#include <math.h>

#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/json.h"

#include "vector.h"

#define QDRANT_DOCUMENT_KEY "document"

/* VectorProvider.configure: the api-key header; routes start at the root. */
static void
qdrant_configure(ForeignServer *server, UserMapping *user, List **headers, char **base)
{
	const char *key = user ? PgpolyGetOption(user->options, "api_key", NULL) : NULL;

	if (key)
		*headers = lappend(*headers, psprintf("api-key: %s", key));
	*base = "";
}

/* VectorProvider.error_text: {"status": {"error": "..."}}. */
static const char *
qdrant_error_text(json_t *doc)
{
	json_t	   *err = json_object_get(json_object_get(doc, "status"), "error");

	return json_is_string(err) ? json_string_value(err) : NULL;
}

/* The "result" member of a response, checked with is (json_is_object ...). */
static json_t *
result_of(PgpolyConnection *conn, json_t *doc, int (*is) (const json_t *),
		  const char *what, const char *expected)
{
	json_t	   *result = json_object_get(doc, "result");

	if (result == NULL || !is(result))
		VectorBadResponse(conn, what, expected);
	return result;
}

/* json_is_object/json_is_array are macros; these can be passed around. */
static int
is_object(const json_t *v)
{
	return json_is_object(v);
}

static int
is_array(const json_t *v)
{
	return json_is_array(v);
}

/* The route of tbl's collection, plus suffix. */
static char *
route(PgpolyConnection *conn, VectorTable *tbl, const char *suffix)
{
	return psprintf("%s/collections/%s%s", VectorBase(conn),
					VectorUrlSegment(tbl->collection), suffix);
}

/* ----------------------------------------------------------------
 *		Ids
 * ----------------------------------------------------------------
 */

/* Whether id is a lowercase 8-4-4-4-12 UUID. */
static bool
is_uuid(const char *id)
{
	if (strlen(id) != 36)
		return false;
	for (int i = 0; i < 36; i++)
	{
		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (id[i] != '-')
				return false;
		}
		else if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return false;
	}
	return true;
}

/* Whether id is an unsigned integer in canonical decimal, <= 2^63 - 1. */
static bool
is_number_id(const char *id)
{
	size_t		n = strlen(id);

	if (n == 0 || n > 19 || (id[0] == '0' && n > 1))
		return false;
	for (size_t i = 0; i < n; i++)
		if (id[i] < '0' || id[i] > '9')
			return false;
	return n < 19 || strcmp(id, "9223372036854775807") <= 0;
}

/* Whether id can be a Qdrant point id as pgpoly spells it. */
static bool
valid_id(const char *id)
{
	return is_number_id(id) || is_uuid(id);
}

/* Append id as a point id: a number, or a UUID string. */
static void
append_id(StringInfo buf, const char *id)
{
	if (is_number_id(id))
		appendStringInfoString(buf, id);
	else
		escape_json(buf, id);
}

/* Append [id, ...] of the ids that can exist; returns how many. */
static int
append_ids(StringInfo buf, List *ids)
{
	ListCell   *lc;
	int			n = 0;

	appendStringInfoChar(buf, '[');
	foreach(lc, ids)
	{
		if (!valid_id(lfirst(lc)))
			continue;
		if (n++ > 0)
			appendStringInfoChar(buf, ',');
		append_id(buf, lfirst(lc));
	}
	appendStringInfoChar(buf, ']');
	return n;
}

/* ----------------------------------------------------------------
 *		Collections
 * ----------------------------------------------------------------
 */

/* The VectorDistance of a Qdrant distance name (Manhattan: unknown). */
static VectorDistance
parse_distance(const char *s)
{
	if (strcmp(s, "Euclid") == 0)
		return VDIST_L2;
	if (strcmp(s, "Cosine") == 0)
		return VDIST_COSINE;
	if (strcmp(s, "Dot") == 0)
		return VDIST_IP;
	return VDIST_UNKNOWN;
}

/* The Qdrant name of a distance. */
static const char *
distance_name(VectorDistance d)
{
	static const char *const names[] = {"?", "Euclid", "Cosine", "Dot"};

	return names[d];
}

/*
 * A VectorCollection from the result of GET /collections/{name}:
 * {"config": {"params": {"vectors": {"size": 4, "distance": "Cosine"}}}}
 * (https://api.qdrant.tech/api-reference/collections/get-collection).
 */
static VectorCollection *
parse_collection(PgpolyConnection *conn, const char *name, json_t *result)
{
	json_t	   *vectors = json_object_get(json_object_get(json_object_get(result, "config"),
														  "params"), "vectors");
	json_t	   *size = json_object_get(vectors, "size");
	json_t	   *dist = json_object_get(vectors, "distance");
	VectorCollection *c;

	if (json_is_object(vectors) && size == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("collection \"%s\" on vector server \"%s\" has named vectors",
						name, conn->servername),
				 errhint("pgpoly_vector reads collections with one unnamed vector.")));
	if (!json_is_integer(size) || !json_is_string(dist))
		VectorBadResponse(conn, "collection description",
						  "\"config\": {\"params\": {\"vectors\": {\"size\", \"distance\"}}}");
	c = palloc0(sizeof(VectorCollection));
	c->name = pstrdup(name);
	c->uuid = pstrdup(name);
	c->distance = parse_distance(json_string_value(dist));
	c->dimension = (int) json_integer_value(size);
	return c;
}

/* GET /collections/{name}: its description, or NULL if it does not exist. */
static VectorCollection *
describe(PgpolyConnection *conn, const char *name)
{
	json_t	   *doc = VectorCall(conn, "GET",
								 psprintf("%s/collections/%s", VectorBase(conn),
										  VectorUrlSegment(name)),
								 NULL, psprintf("lookup of collection \"%s\"", name), true);

	if (doc == NULL)
		return NULL;
	return parse_collection(conn, name,
							result_of(conn, doc, is_object, "collection description",
									  "\"result\": {...}"));
}

/*
 * Create tbl's collection for vectors of dim dimensions:
 * PUT /collections/{name} {"vectors": {"size": dim, "distance": "Cosine"}}
 * (https://api.qdrant.tech/api-reference/collections/create-collection).
 */
static VectorCollection *
create_collection(PgpolyConnection *conn, VectorTable *tbl, int dim)
{
	StringInfoData body;
	VectorCollection c;

	if (tbl->distance == VDIST_UNKNOWN)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("cannot create collection \"%s\" for foreign table \"%s\": no distance",
						tbl->collection, tbl->relname),
				 errhint("Set the table option distance to 'l2', 'cosine' or 'ip'.")));
	initStringInfo(&body);
	appendStringInfo(&body, "{\"vectors\":{\"size\":%d,\"distance\":\"%s\"}}",
					 dim, distance_name(tbl->distance));
	(void) VectorCall(conn, "PUT", route(conn, tbl, ""), &body,
					  psprintf("creation of collection \"%s\"", tbl->collection), false);
	c.name = tbl->collection;
	c.uuid = tbl->collection;
	c.distance = tbl->distance;
	c.dimension = dim;
	return VectorRememberCollection(conn, &c);
}

/* VectorProvider.lookup: GET /collections/{name}, cached. */
static VectorCollection *
qdrant_lookup(PgpolyConnection *conn, VectorTable *tbl, bool missing_ok)
{
	VectorCollection *c = describe(conn, tbl->collection);

	if (c == NULL)
	{
		if (!missing_ok)
			VectorNoCollection(conn, tbl);
		return NULL;
	}
	return VectorRememberCollection(conn, c);
}

/*
 * VectorProvider.list_collections: GET /collections
 * ({"result": {"collections": [{"name": ...}]}},
 * https://api.qdrant.tech/api-reference/collections/get-collections),
 * then each one described for its distance.
 */
static List *
qdrant_list_collections(PgpolyConnection *conn)
{
	json_t	   *doc = VectorCall(conn, "GET", psprintf("%s/collections", VectorBase(conn)),
								 NULL, "listing of collections", false);
	json_t	   *list = json_object_get(result_of(conn, doc, is_object, "collection list",
												 "\"result\": {\"collections\": [...]}"),
								   "collections");
	List	   *result = NIL;
	size_t		i;
	json_t	   *obj;

	if (!json_is_array(list))
		VectorBadResponse(conn, "collection list", "\"result\": {\"collections\": [...]}");
	json_array_foreach(list, i, obj)
	{
		VectorCollection *c;

		c = describe(conn, VectorCollectionName(conn, json_object_get(obj, "name"),
												"collection list"));
		if (c)
			result = lappend(result, c);
	}
	return result;
}

/*
 * Send a request on tbl's collection.  A 404 means the collection is gone:
 * forget its cached description and say so.  Qdrant routes by name, so a
 * collection dropped and re-created since it was described answers a
 * request made for the old one (a query for expect's distance and
 * dimension, a write of dim_of's embeddings) with a bare 400 (another
 * dimension) or not at all: after a 400 the collection is described again,
 * and a change is the ERROR of a re-created collection (40001 for the
 * query, whose plan was made for the old one; 22000 for the write).
 */
static json_t *
record_call(PgpolyConnection *conn, VectorTable *tbl, const char *method,
			const char *suffix, StringInfo body, const char *op,
			const VectorCollection *expect, const VectorWrite *dim_of)
{
	VectorRefusal refusal;
	json_t	   *doc = VectorCallRefusable(conn, method, route(conn, tbl, suffix), body,
										  psprintf("%s on collection \"%s\"", op,
												   tbl->collection),
										  &refusal);

	if (doc != NULL)
		return doc;
	VectorForgetCollection(conn, tbl);
	if (refusal.resp.status == 404)
		VectorNoCollection(conn, tbl);
	if (expect || dim_of)
	{
		VectorCollection *c = qdrant_lookup(conn, tbl, false);

		if (expect)
			VectorCheckRecreated(tbl, c, expect, op);
		VectorCheckFlushDimension(tbl, c, dim_of, true);
	}
	VectorRefused(conn, &refusal);
	return NULL;				/* keep compiler quiet */
}

/* ----------------------------------------------------------------
 *		Filters
 * ----------------------------------------------------------------
 */

/* Append {"key": key, cond} (cond: "match": ... or "range": ...). */
static void
append_field_cond(StringInfo buf, const char *key, const char *cond)
{
	appendStringInfoString(buf, "{\"key\":");
	escape_json(buf, key);
	appendStringInfo(buf, ",%s}", cond);
}

/*
 * Append the equality of key and v: match for strings and booleans; a
 * closed range for numbers (match on an integer skips float payloads such
 * as 2.0, which SQL's numeric equality admits).
 */
static void
append_eq(StringInfo buf, const char *key, json_t *v)
{
	StringInfoData val;

	initStringInfo(&val);
	VectorAppendJson(&val, v);
	if (json_is_number(v))
		append_field_cond(buf, key, psprintf("\"range\":{\"gte\":%s,\"lte\":%s}",
											 val.data, val.data));
	else
		append_field_cond(buf, key, psprintf("\"match\":{\"value\":%s}", val.data));
}

/*
 * VectorProvider.exact_bound: whether a range with bound decides every
 * integer or number it holds as SQL compares the exact values.  Qdrant's
 * range bounds are doubles, and it compares a payload number converted to
 * a double (https://qdrant.tech/documentation/concepts/filtering/#range;
 * an integer payload is a 64-bit integer, concepts/payload/#integer):
 * 2^53 + 1 becomes 2^53, which is not > 2^53.  Conversion being monotonic,
 * a bound of magnitude below 2^53, which every integer up to 2^53 compares
 * with exactly and every integer beyond lies outside, is decided exactly,
 * for = (a closed range), <, <=, > and >= alike; a float payload is a
 * double already (as PgpolyFloat8Bound assumes).  Whether the value is an
 * integer does not matter: Qdrant sees only the double.
 */
static bool
qdrant_exact_bound(double bound, bool integer)
{
	return fabs(bound) < 9007199254740992.0;	/* 2^53 */
}

/* Whether every element of arr is a string (match any); else a should list. */
static bool
matchable_any(json_t *arr)
{
	size_t		i;
	json_t	   *e;

	json_array_foreach(arr, i, e)
		if (!json_is_string(e))
		return false;
	return true;
}

static void append_one_cond(StringInfo buf, VectorCondEval *c);

/*
 * Append one condition of the "must" list
 * (https://qdrant.tech/documentation/concepts/filtering/): a "should" of
 * it and c->or_else when it admits that too.
 */
static void
append_cond(StringInfo buf, VectorCondEval *c)
{
	if (c->or_else == NULL)
	{
		append_one_cond(buf, c);
		return;
	}
	appendStringInfoString(buf, "{\"should\":[");
	append_one_cond(buf, c);
	appendStringInfoChar(buf, ',');
	append_cond(buf, c->or_else);
	appendStringInfoString(buf, "]}");
}

/* Append condition c itself (see append_cond). */
static void
append_one_cond(StringInfo buf, VectorCondEval *c)
{
	static const char *const ranges[] = {NULL, "lt", "lte", "gt", "gte", NULL};
	json_t	   *v = json_loads(c->value, JSON_DECODE_ANY, NULL);
	size_t		i;
	json_t	   *e;

	if (v == NULL)
		elog(ERROR, "pgpoly_vector: condition value is not JSON: %s", c->value);
	PgpolyJsonOwn(v);
	if (strcmp(c->key, QDRANT_DOCUMENT_KEY) == 0)
	{
		/* metadata never has this key (it is the document): match nothing */
		appendStringInfoString(buf, "{\"must\":[{\"is_empty\":{\"key\":\"document\"}}],"
							   "\"must_not\":[{\"is_empty\":{\"key\":\"document\"}}]}");
		return;
	}
	switch (c->op)
	{
		case VCOND_EQ:
			append_eq(buf, c->key, v);
			break;
		case VCOND_IN:
			if (matchable_any(v))
			{
				append_field_cond(buf, c->key, psprintf("\"match\":{\"any\":%s}", c->value));
				break;
			}
			appendStringInfoString(buf, "{\"should\":[");
			json_array_foreach(v, i, e)
			{
				if (i > 0)
					appendStringInfoChar(buf, ',');
				append_eq(buf, c->key, e);
			}
			appendStringInfoString(buf, "]}");
			break;
		default:
			append_field_cond(buf, c->key, psprintf("\"range\":{\"%s\":%s}",
													ranges[c->op], c->value));
			break;
	}
}

/* VectorProvider.filter: {"must": [conditions]}. */
static char *
qdrant_filter(List *conds)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"must\":[");
	foreach(lc, conds)
	{
		if (foreach_current_index(lc) > 0)
			appendStringInfoChar(&buf, ',');
		append_cond(&buf, lfirst(lc));
	}
	appendStringInfoString(&buf, "]}");
	return buf.data;
}

/* ----------------------------------------------------------------
 *		Request bodies
 * ----------------------------------------------------------------
 */

/* Append "with_payload":...,"with_vector":... for the include flags. */
static void
append_with(StringInfo buf, int include)
{
	if (include & VINC_METADATA)
		appendStringInfoString(buf, "\"with_payload\":true");
	else if (include & VINC_DOCUMENT)
		appendStringInfoString(buf, "\"with_payload\":[\"document\"]");
	else
		appendStringInfoString(buf, "\"with_payload\":false");
	appendStringInfo(buf, ",\"with_vector\":%s",
					 (include & VINC_EMBEDDING) ? "true" : "false");
}

/*
 * Append "filter": where, with the ids (text, "$ids" for EXPLAIN, or NULL)
 * as a has_id condition ANDed to it; nothing when both are absent.
 */
static void
append_filter(StringInfo buf, const char *ids, const char *where)
{
	if (ids == NULL && where == NULL)
		return;
	if (ids == NULL)
	{
		appendStringInfo(buf, "\"filter\":%s,", where);
		return;
	}
	appendStringInfo(buf, "\"filter\":{\"must\":[{\"has_id\":%s}%s%s]},", ids,
					 where ? "," : "", where ? where : "");
}

/*
 * Body of POST /points/query
 * (https://api.qdrant.tech/api-reference/search/query-points);
 * q NULL writes "$query" (EXPLAIN).
 */
static void
query_body(StringInfo buf, const float4 *q, int dim, int k, const char *where,
		   const char *ids, int include)
{
	appendStringInfoString(buf, "{\"query\":");
	if (q)
		VectorAppendQueryFloats(buf, q, dim);
	else
		appendStringInfoString(buf, "$query");
	appendStringInfo(buf, ",\"limit\":%d,", k);
	append_filter(buf, ids, where);
	append_with(buf, include);
	appendStringInfoChar(buf, '}');
}

/*
 * Body of POST /points/scroll
 * (https://api.qdrant.tech/api-reference/points/scroll-points);
 * offset is a point id as JSON text, or NULL for the first page.
 */
static void
scroll_body(StringInfo buf, int limit, const char *offset, const char *ids,
			const char *where, int include)
{
	appendStringInfo(buf, "{\"limit\":%d,", limit);
	if (offset)
		appendStringInfo(buf, "\"offset\":%s,", offset);
	append_filter(buf, ids, where);
	append_with(buf, include);
	appendStringInfoChar(buf, '}');
}

/* VectorProvider.query_text: the query request as EXPLAIN shows it. */
static char *
qdrant_query_text(VectorTable *tbl, const char *where, int k, int include, bool ids)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "POST collections/%s/points/query ",
					 VectorUrlSegment(tbl->collection));
	query_body(&buf, NULL, 0, k, where, ids ? "$ids" : NULL, include);
	return buf.data;
}

/* VectorProvider.scan_text: the request of a plain scan, for EXPLAIN. */
static char *
qdrant_scan_text(VectorTable *tbl, bool by_ids, const char *where, int include)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "POST collections/%s/points", VectorUrlSegment(tbl->collection));
	if (by_ids && where == NULL)
	{
		appendStringInfoString(&buf, " {\"ids\":$ids,");
		append_with(&buf, include);
		appendStringInfoChar(&buf, '}');
	}
	else if (by_ids)
	{
		appendStringInfoString(&buf, "/scroll ");
		scroll_body(&buf, tbl->fetch_size, NULL, "$ids", where, include);
	}
	else
	{
		appendStringInfoString(&buf, "/scroll ");
		scroll_body(&buf, tbl->fetch_size, "$next_page_offset", NULL, where, include);
		appendStringInfoString(&buf, ", paged");
	}
	return buf.data;
}

/* ----------------------------------------------------------------
 *		Responses
 * ----------------------------------------------------------------
 */

/* The text of a point id (number or string). */
static char *
id_text(PgpolyConnection *conn, json_t *id)
{
	if (json_is_integer(id))
		return psprintf("%lld", (long long) json_integer_value(id));
	if (json_is_string(id))
		return VectorRecordId(conn, id);
	VectorBadResponse(conn, "point", "an integer or string \"id\"");
	return NULL;				/* keep compiler quiet */
}

/* Set row's embedding from a point's "vector" (an array, or null: absent). */
static void
parse_vector(PgpolyConnection *conn, VectorRow *row, json_t *vec)
{
	if (json_is_array(vec))
		VectorParseEmbedding(conn, row, vec, "vector");
	else if (vec != NULL && !json_is_null(vec))
		VectorBadResponse(conn, psprintf("vector of point \"%s\"", row->id),
						  "an array of numbers (one unnamed vector) or null");
}

/*
 * Set row's document and metadata from a point's payload (modified): an
 * object, or null when not asked for; its "document" a string or null.
 */
static void
parse_payload(PgpolyConnection *conn, VectorRow *row, json_t *payload)
{
	json_t	   *doc;
	StringInfoData buf;

	if (payload == NULL || json_is_null(payload))
		return;
	if (!json_is_object(payload))
		VectorBadResponse(conn, psprintf("payload of point \"%s\"", row->id),
						  "an object or null");
	doc = json_object_get(payload, QDRANT_DOCUMENT_KEY);
	if (json_is_string(doc))
		row->document = VectorDocument(doc, &row->document_nul);
	else if (doc != NULL && !json_is_null(doc))
		VectorBadResponse(conn, psprintf("payload key \"document\" of point \"%s\"", row->id),
						  "a string (the document) or null");
	json_object_del(payload, QDRANT_DOCUMENT_KEY);
	if (json_object_size(payload) == 0)
		return;
	initStringInfo(&buf);
	VectorAppendJson(&buf, payload);
	row->metadata = buf.data;
}

/*
 * The distance in the operator's metric from a score: Euclid's is the
 * distance, Cosine's the similarity, Dot's the dot product.
 */
static double
score_distance(VectorDistance d, double score)
{
	switch (d)
	{
		case VDIST_COSINE:
			return 1.0 - score;
		case VDIST_IP:
			return -score;
		default:
			return score;
	}
}

/* Rows of an array of points ({"id", "payload", "vector", "score"}). */
static List *
parse_points(PgpolyConnection *conn, json_t *points, VectorDistance d)
{
	List	   *rows = NIL;
	size_t		i;
	json_t	   *p;

	if (!json_is_array(points))
		VectorBadResponse(conn, "points", "an array of points");
	json_array_foreach(points, i, p)
	{
		VectorRow  *row = palloc0(sizeof(VectorRow));
		json_t	   *score = json_object_get(p, "score");

		if (!json_is_object(p))
			VectorBadResponse(conn, "point", "an object");
		row->id = id_text(conn, json_object_get(p, "id"));
		parse_vector(conn, row, json_object_get(p, "vector"));
		parse_payload(conn, row, json_object_get(p, "payload"));
		if (json_is_number(score))
		{
			row->has_distance = true;
			row->distance = score_distance(d, json_number_value(score));
		}
		rows = lappend(rows, row);
	}
	return rows;
}

/* ----------------------------------------------------------------
 *		Reads
 * ----------------------------------------------------------------
 */

/*
 * VectorProvider.get_by_ids: without a filter, POST /points
 * (https://api.qdrant.tech/api-reference/points/get-points, the result is
 * the array of points); with one, a scroll whose filter has has_id.
 */
static List *
qdrant_get_by_ids(PgpolyConnection *conn, VectorTable *tbl, VectorCollection *coll,
				  List *ids, const char *where, int include)
{
	StringInfoData idbuf;
	StringInfoData body;
	int			n;
	json_t	   *doc;

	initStringInfo(&idbuf);
	if ((n = append_ids(&idbuf, ids)) == 0)
		return NIL;
	initStringInfo(&body);
	if (where == NULL)
	{
		appendStringInfo(&body, "{\"ids\":%s,", idbuf.data);
		append_with(&body, include);
		appendStringInfoChar(&body, '}');
		doc = record_call(conn, tbl, "POST", "/points", &body, "retrieve", NULL, NULL);
		return parse_points(conn, result_of(conn, doc, is_array, "retrieve response",
											"\"result\": [points]"), coll->distance);
	}
	scroll_body(&body, n, NULL, idbuf.data, where, include);
	doc = record_call(conn, tbl, "POST", "/points/scroll", &body, "scroll", NULL, NULL);
	return parse_points(conn, json_object_get(result_of(conn, doc, is_object, "scroll response",
														"\"result\": {\"points\": [...]}"),
											  "points"), coll->distance);
}

/*
 * VectorProvider.get_page: one scroll page.  The cursor is the JSON text
 * of the response's next_page_offset (a point id); null ends the scan.
 */
static List *
qdrant_get_page(PgpolyConnection *conn, VectorTable *tbl, VectorCollection *coll,
				const char *where, char **cursor, int limit, int include)
{
	StringInfoData body;
	json_t	   *result;
	json_t	   *next;

	initStringInfo(&body);
	scroll_body(&body, limit, *cursor, NULL, where, include);
	result = result_of(conn, record_call(conn, tbl, "POST", "/points/scroll", &body, "scroll",
											 NULL, NULL),
					   is_object, "scroll response", "\"result\": {\"points\": [...]}");
	next = json_object_get(result, "next_page_offset");
	*cursor = NULL;
	if (json_is_integer(next) || json_is_string(next))
	{
		StringInfoData buf;

		initStringInfo(&buf);
		VectorAppendJson(&buf, next);
		*cursor = buf.data;
	}
	return parse_points(conn, json_object_get(result, "points"), coll->distance);
}

/* VectorProvider.query: the k nearest points to q, one /points/query. */
static List *
qdrant_query(PgpolyConnection *conn, VectorTable *tbl, VectorCollection *coll,
			 const float4 *q, int dim, int k, const char *where, List *ids,
			 int include)
{
	StringInfoData idbuf;
	StringInfoData body;
	json_t	   *result;

	initStringInfo(&idbuf);
	if (ids != NIL && append_ids(&idbuf, ids) == 0)
		return NIL;
	initStringInfo(&body);
	query_body(&body, q, dim, k, where, ids != NIL ? idbuf.data : NULL, include);
	result = result_of(conn, record_call(conn, tbl, "POST", "/points/query", &body, "query",
											 coll, NULL),
					   is_object, "query response", "\"result\": {\"points\": [...]}");
	return parse_points(conn, json_object_get(result, "points"), coll->distance);
}

/* ----------------------------------------------------------------
 *		Writes
 * ----------------------------------------------------------------
 */

/*
 * VectorProvider.check_write: the id must be a point id as pgpoly spells
 * it, and the metadata must not use the document's payload key.
 */
static void
qdrant_check_write(VectorWrite *w)
{
	json_t	   *meta;

	if (!valid_id(w->row.id))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
				 errmsg("\"%s\" is not a valid Qdrant point id for foreign table \"%s\"",
						w->row.id, w->tbl->relname),
				 errhint("Use an unsigned integer (e.g. '42') or a lowercase UUID "
						 "(e.g. '5c56c793-69f3-4fbf-87e6-c4bf54c28c26').")));
	if (w->row.metadata == NULL)
		return;
	meta = json_loads(w->row.metadata, 0, NULL);
	if (meta == NULL)
		return;
	PgpolyJsonOwn(meta);
	if (json_object_get(meta, QDRANT_DOCUMENT_KEY) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("metadata of record \"%s\" has the key \"document\"", w->row.id),
				 errdetail("On a Qdrant server the payload key \"document\" holds the document column.")));
}

/* Append the payload of w: its metadata plus "document". */
static void
append_payload(StringInfo buf, VectorWrite *w)
{
	const char *meta = w->row.metadata;

	if (meta == NULL && w->row.document == NULL)
	{
		appendStringInfoString(buf, "{}");
		return;
	}
	if (meta == NULL)
		appendStringInfoChar(buf, '{');
	else
		appendBinaryStringInfo(buf, meta, strlen(meta) - 1);	/* without '}' */
	if (w->row.document)
	{
		appendStringInfo(buf, "%s\"document\":", meta ? "," : "");
		escape_json(buf, w->row.document);
	}
	appendStringInfoChar(buf, '}');
}

/*
 * Body of an upsert, PUT /points?wait=true {"points": [{"id", "vector",
 * "payload"}]} (https://api.qdrant.tech/api-reference/points/upsert-points).
 * An UPDATE is an upsert too: the new row is whole, and Qdrant replaces
 * the point's payload (Chroma merges keys, so it needs the removed ones).
 * The field "update_mode" (Qdrant's UpdateMode) makes it conditional: an
 * update adds "update_only", with which Qdrant changes existing points and
 * creates none (a point another client deleted is not brought back; the
 * get before it, check_update_targets in vector_service.c, tells that
 * case), an insert (ON CONFLICT DO NOTHING) "insert_only", with which it
 * leaves an existing point alone.
 */
static void
upsert_body(StringInfo buf, VectorWrite **w, int n)
{
	appendStringInfoString(buf, "{\"points\":[");
	for (int i = 0; i < n; i++)
	{
		appendStringInfoString(buf, i > 0 ? ",{\"id\":" : "{\"id\":");
		append_id(buf, w[i]->row.id);
		appendStringInfoString(buf, ",\"vector\":");
		Assert(w[i]->row.emb != NULL);
		VectorAppendFloats(buf, w[i]->row.emb, w[i]->row.dim);
		appendStringInfoString(buf, ",\"payload\":");
		append_payload(buf, w[i]);
		appendStringInfoChar(buf, '}');
	}
	appendStringInfoChar(buf, ']');
	if (w[0]->kind == VW_INSERT)
		appendStringInfoString(buf, ",\"update_mode\":\"insert_only\"");
	else if (w[0]->kind == VW_UPDATE)
		appendStringInfoString(buf, ",\"update_mode\":\"update_only\"");
	appendStringInfoChar(buf, '}');
}

/*
 * VectorProvider.count: points_count of GET /collections/{name}
 * (https://api.qdrant.tech/api-reference/collections/get-collection).
 */
static double
qdrant_count(PgpolyConnection *conn, VectorTable *tbl, VectorCollection *coll)
{
	json_t	   *doc = VectorCall(conn, "GET",
								 psprintf("%s/collections/%s", VectorBase(conn),
										  VectorUrlSegment(coll->name)),
								 NULL, psprintf("count of collection \"%s\"", coll->name), false);
	json_t	   *n = json_object_get(result_of(conn, doc, is_object, "collection description",
											  "\"result\": {...}"), "points_count");

	if (!json_is_integer(n))
		VectorBadResponse(conn, "collection description", "\"points_count\": integer");
	return (double) json_integer_value(n);
}

/* VectorProvider.write_text. */
static char *
qdrant_write_text(VectorTable *tbl, VectorWriteKind kind)
{
	const char *coll = VectorUrlSegment(tbl->collection);

	if (kind == VW_DELETE)
		return psprintf("POST collections/%s/points/delete?wait=true", coll);
	return psprintf("PUT collections/%s/points?wait=true%s", coll,
					kind == VW_INSERT ? " {\"update_mode\":\"insert_only\"}" :
					kind == VW_UPDATE ? " {\"update_mode\":\"update_only\"}" : "");
}

/*
 * VectorProvider.send_batch.  Deletes: POST /points/delete?wait=true
 * {"points": [ids]} (https://api.qdrant.tech/api-reference/points/delete-points);
 * an id that cannot exist is skipped.  Upserts create the collection first
 * when it is missing and the table has create_collection.
 */
static void
qdrant_send_batch(PgpolyConnection *conn, VectorWrite **w, int n)
{
	VectorTable *tbl = w[0]->tbl;
	StringInfoData body;

	initStringInfo(&body);
	if (w[0]->kind == VW_DELETE)
	{
		List	   *ids = NIL;

		for (int i = 0; i < n; i++)
			ids = lappend(ids, w[i]->row.id);
		appendStringInfoString(&body, "{\"points\":");
		if (append_ids(&body, ids) == 0)
			return;
		appendStringInfoChar(&body, '}');
		(void) record_call(conn, tbl, "POST", "/points/delete?wait=true", &body, "delete",
						   NULL, NULL);
		return;
	}
	if (VectorLookupCollection(conn, tbl, tbl->create) == NULL)
		(void) create_collection(conn, tbl, w[0]->row.dim);
	upsert_body(&body, w, n);
	(void) record_call(conn, tbl, "PUT", "/points?wait=true", &body, "upsert", NULL,
					   w[0]->dim_of);
}

const VectorProvider VectorQdrant = {
	.name = "qdrant",
	.label = "Qdrant",
	.truncates_bounds = false,
	.exact_bound = qdrant_exact_bound,
	.routes_by_uuid = false,
	.configure = qdrant_configure,
	.error_text = qdrant_error_text,
	.lookup = qdrant_lookup,
	.list_collections = qdrant_list_collections,
	.filter = qdrant_filter,
	.get_by_ids = qdrant_get_by_ids,
	.get_page = qdrant_get_page,
	.query = qdrant_query,
	.check_write = qdrant_check_write,
	.send_batch = qdrant_send_batch,
	.query_text = qdrant_query_text,
	.count = qdrant_count,
	.scan_text = qdrant_scan_text,
	.write_text = qdrant_write_text
};
