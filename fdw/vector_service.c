/*-------------------------------------------------------------------------
 *
 * vector_service.c
 *		  The provider-agnostic side of a vector service: connection,
 *		  collection cache, errors, dispatch to the provider, and batching
 *		  of writes.
 *
 * One PgpolyStore serves every provider: the connection's handle is a
 * VectorConn that carries the provider chosen by the server option
 * provider ('chroma' default, 'qdrant'), its HTTP client, the path prefix
 * of its routes and the collections it has described.  Changing the
 * option invalidates the cached connection like any server option.
 *
 * Invariants:
 *	- Everything that differs between services is in the provider
 *	  (vector_chroma.c, vector_qdrant.c); this file and its callers never
 *	  look at the provider's name.
 *	- Errors name the server, the URL, the collection and what the service
 *	  said (an excerpt: PgpolyHttpExcerpt); the api_key is a header and
 *	  never appears in a message.
 *	- jansson documents are owned by the current memory context
 *	  (PgpolyJsonParse).
 *	- A flush sends no write to a collection unless every embedding it
 *	  writes there has one dimension (link_dimensions); Chroma also checks
 *	  it against the collection as resolved at send time
 *	  (VectorCheckFlushDimension), Qdrant when the statement began.
 *	- An update is sent only for records the service holds when the batch
 *	  is sent (check_update_targets), and with a request that cannot
 *	  create a record.
 *
 * fdw/vector_service.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pgpoly_jansson.h"

#include <float.h>
#include <math.h>

#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "lib/stringinfo.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "vector.h"

/* The store handle of one cached connection. */
typedef struct VectorConn
{
	const VectorProvider *provider;
	PgpolyHttp *http;
	MemoryContext cxt;			/* the collection cache */
	char	   *base;			/* path prefix of every route */
	List	   *colls;			/* VectorCollection *, in cxt */
	List	   *retired;		/* VectorCollection * forgotten in transaction
								 * retired_lxid: a scan or write of it may
								 * still use them; freed in a later one */
	LocalTransactionId retired_lxid;
} VectorConn;

static void *service_connect(PgpolyConnection *conn, ForeignServer *server,
							 UserMapping *user);
static void service_disconnect(void *handle);
static PgpolyConnection *table_connection(Oid relid, Oid userid);

const PgpolyStore VectorStore = {
	"vector",
	"vector service",
	VectorOptions,
	service_connect,
	service_disconnect,
	VectorSendWrites,			/* flush: the buffered writes, batched */
	pgpoly_vector_handler,
	VectorConflictColumns,
	.target_option = "collection",
	.table_connection = table_connection
};

/* The provider named by server's option provider (validated: known). */
const VectorProvider *
VectorServerProvider(ForeignServer *server)
{
	const char *name = PgpolyGetOption(server->options, "provider", "chroma");

	return strcmp(name, VectorQdrant.name) == 0 ? &VectorQdrant : &VectorChroma;
}

/*
 * PgpolyStore.connect: set up the HTTP client; no network I/O yet.  Under
 * the trust rule, each URL must first refuse to list the collections
 * without credentials.
 */
static void *
service_connect(PgpolyConnection *conn, ForeignServer *server, UserMapping *user)
{
	PgpolyHttpConfig cfg;
	VectorConn *vc;
	char	   *base = NULL;

	memset(&cfg, 0, sizeof(cfg));
	cfg.urls = PgpolyServerUrls(server, NULL);
	cfg.secrets = PgpolySecretValues(VectorOptions, user ? user->options : NIL);
	cfg.verify_tls = true;
	vc = MemoryContextAllocZero(TopMemoryContext, sizeof(VectorConn));
	vc->provider = VectorServerProvider(server);
	vc->provider->configure(server, user, &cfg.headers, &base);
	vc->cxt = AllocSetContextCreate(TopMemoryContext, "pgpoly vector collections",
									ALLOCSET_SMALL_SIZES);
	vc->base = MemoryContextStrdup(vc->cxt, base);
	if (user && PgpolyMustProveCredential(user))
		cfg.probe_path = psprintf("%s/collections", base);
	PG_TRY();
	{
		vc->http = PgpolyHttpOpen(&cfg);
	}
	PG_CATCH();
	{
		MemoryContextDelete(vc->cxt);
		pfree(vc);
		PG_RE_THROW();
	}
	PG_END_TRY();
	strlcpy(conn->target, PgpolyHttpBaseUrl(vc->http), sizeof(conn->target));
	return vc;
}

/* PgpolyStore.disconnect: free everything; never ereports. */
static void
service_disconnect(void *handle)
{
	VectorConn *vc = handle;

	PgpolyHttpClose(vc->http);
	MemoryContextDelete(vc->cxt);
	pfree(vc);
}

/* The handle of conn (opened by PgpolyGetConnection). */
static VectorConn *
handle_of(PgpolyConnection *conn)
{
	PgpolyEnsureConnected(conn);
	return (VectorConn *) conn->handle;
}

/* The cached connection for tbl's server and user mapping. */
PgpolyConnection *
VectorGetConnection(VectorTable *tbl)
{
	return PgpolyGetConnection(&VectorStore, tbl->server, tbl->user);
}

/*
 * PgpolyStore.table_connection: the connection for a table, from the
 * table cache's resolved server and user mapping.
 */
static PgpolyConnection *
table_connection(Oid relid, Oid userid)
{
	return VectorGetConnection(VectorLoadTable(relid, userid));
}

/* The HTTP client of conn. */
PgpolyHttp *
VectorHttp(PgpolyConnection *conn)
{
	return handle_of(conn)->http;
}

/* The path prefix of conn's routes (e.g. Chroma's tenant and database). */
const char *
VectorBase(PgpolyConnection *conn)
{
	return handle_of(conn)->base;
}

/* ----------------------------------------------------------------
 *		Requests and errors
 * ----------------------------------------------------------------
 */

static void service_error(PgpolyConnection *conn, PgpolyHttpResponse *resp,
						  const char *method, const char *path,
						  const char *what) pg_attribute_noreturn();
static bool json_answer(PgpolyHttpResponse *resp);

/*
 * Raise the ERROR for a non-2xx answer to what (e.g. "query of collection
 * \"x\""), quoting the service's error message when the body has one.
 */
static void
service_error(PgpolyConnection *conn, PgpolyHttpResponse *resp, const char *method,
			  const char *path, const char *what)
{
	const VectorProvider *prov = handle_of(conn)->provider;
	json_error_t jerr;
	json_t	   *doc = json_loadb(resp->body, resp->len, 0, &jerr);
	const char *text = doc ? prov->error_text(doc) : NULL;
	bool		is_json = doc != NULL;
	char	   *said;
	int			code;

	if (text)
		said = PgpolyHttpExcerpt(conn, text, strlen(text));
	else
		said = PgpolyHttpExcerpt(conn, resp->body, resp->len);
	if (doc)
		json_decref(doc);
	if (resp->status == 404 && !is_json)
		code = ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION;	/* no such route */
	else if (resp->status == 404)
		code = ERRCODE_FDW_TABLE_NOT_FOUND;
	else
		code = PgpolyHttpStatusErrcode(resp->status);
	ereport(ERROR,
			(errcode(code),
			 errmsg("vector server \"%s\" at %s: %s failed with HTTP %ld",
					conn->servername, conn->target, what, resp->status),
			 errdetail("%s said: %s; request: %s %s", prov->label, said, method, path),
			 resp->status == 401 || resp->status == 403 ?
			 errhint("Check the api_key option of the user mapping.") :
			 resp->status == 404 && !is_json ?
			 errhint("The service has no such route: check the server options url (its base URL, without a path) and provider.") : 0));
}

/*
 * Whether resp's body is JSON.  The services answer a missing collection or
 * record with a JSON error; a 404 without one is a route the service does
 * not have (a url with a path, another service at that address).
 */
static bool
json_answer(PgpolyHttpResponse *resp)
{
	json_error_t jerr;
	json_t	   *doc = json_loadb(resp->body, resp->len, 0, &jerr);

	if (doc == NULL)
		return false;
	json_decref(doc);
	return true;
}

/*
 * Send one request and return the parsed JSON of a 2xx answer, or NULL for
 * a 404 when notfound_ok.  Any other status is an ERROR.
 */
json_t *
VectorCall(PgpolyConnection *conn, const char *method, const char *path,
		   StringInfo body, const char *what, bool notfound_ok)
{
	VectorRefusal refusal;
	json_t	   *doc = VectorCallRefusable(conn, method, path, body, what, &refusal);

	if (doc == NULL &&
		!(refusal.resp.status == 404 && notfound_ok && json_answer(&refusal.resp)))
		VectorRefused(conn, &refusal);
	return doc;
}

/*
 * Send one request and return the parsed JSON of a 2xx answer.  A 400 or
 * 404 answer returns NULL with *refusal filled in, for the caller to look
 * at the collection before it raises it (VectorRefused); any other status
 * is an ERROR.
 */
json_t *
VectorCallRefusable(PgpolyConnection *conn, const char *method, const char *path,
					StringInfo body, const char *what, VectorRefusal *refusal)
{
	VectorConn *vc = handle_of(conn);
	PgpolyHttpResponse *resp = &refusal->resp;

	PgpolyHttpRequest(conn, vc->http, method, path, body ? body->data : NULL,
					  body ? body->len : 0, NULL, 2, resp);
	refusal->method = method;
	refusal->path = path;
	refusal->what = what;
	if (resp->status == 400 || resp->status == 404)
		return NULL;
	if (resp->status < 200 || resp->status > 299)
		service_error(conn, resp, method, path, what);
	return PgpolyJsonParse(conn, resp->body, resp->len, what);
}

/* Raise the ERROR of a refused request (VectorCallRefusable). */
void
VectorRefused(PgpolyConnection *conn, VectorRefusal *refusal)
{
	service_error(conn, &refusal->resp, refusal->method, refusal->path, refusal->what);
}

/*
 * ERROR 40001 unless collection c (as the service describes it now) has
 * the distance and dimension of expect, the description a request of op
 * ("query" ...) was made for: the collection was dropped and re-created
 * since, and the statement's plan and request were made for the old one.
 * The table's cached plans are made again at their next use.
 */
void
VectorCheckRecreated(VectorTable *tbl, const VectorCollection *c,
					 const VectorCollection *expect, const char *op)
{
	if (c->distance == expect->distance &&
		(c->dimension <= 0 || expect->dimension <= 0 ||
		 c->dimension == expect->dimension))
		return;
	PgpolyReplanReaders(tbl->relid);
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("collection \"%s\" of foreign table \"%s\" was re-created with distance '%s' and dimension %d",
					tbl->collection, tbl->relname, VectorDistanceName(c->distance),
					c->dimension),
			 errdetail("The statement's %s was made for distance '%s' and dimension %d.",
					   op, VectorDistanceName(expect->distance), expect->dimension),
			 errhint("Run the statement again: it is planned for the collection as it is now.")));
}

/* A malformed response: ERROR naming what was expected. */
void
VectorBadResponse(PgpolyConnection *conn, const char *what, const char *expected)
{
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
			 errmsg("vector server \"%s\" at %s sent an unexpected %s",
					conn->servername, conn->target, what),
			 errdetail("Expected %s.", expected)));
}

/* ----------------------------------------------------------------
 *		Collections
 * ----------------------------------------------------------------
 */

/* ERROR: tbl's collection does not exist. */
void
VectorNoCollection(PgpolyConnection *conn, VectorTable *tbl)
{
	ereport(ERROR,
			(errcode(ERRCODE_FDW_TABLE_NOT_FOUND),
			 errmsg("collection \"%s\" of foreign table \"%s\" does not exist on vector server \"%s\"",
					tbl->collection, tbl->relname, conn->servername),
			 errhint("Create the collection, or set create_collection 'true' and distance on the foreign table.")));
}

/* The cached description of collection name, or NULL. */
VectorCollection *
VectorCachedCollection(PgpolyConnection *conn, const char *name)
{
	ListCell   *lc;

	foreach(lc, handle_of(conn)->colls)
		if (strcmp(((VectorCollection *) lfirst(lc))->name, name) == 0)
			return lfirst(lc);
	return NULL;
}

/* Cache a copy of c on the connection; returns the copy. */
VectorCollection *
VectorRememberCollection(PgpolyConnection *conn, VectorCollection *c)
{
	VectorConn *vc = handle_of(conn);
	MemoryContext old = MemoryContextSwitchTo(vc->cxt);
	VectorCollection *copy = palloc(sizeof(VectorCollection));

	*copy = *c;
	copy->name = pstrdup(c->name);
	copy->uuid = pstrdup(c->uuid);
	copy->lxid = MyProc->lxid;
	vc->colls = lappend(vc->colls, copy);
	MemoryContextSwitchTo(old);
	return copy;
}

/*
 * The description of tbl's collection: cached, or asked of the service.
 * NULL when it does not exist and missing_ok; else an ERROR.
 */
VectorCollection *
VectorLookupCollection(PgpolyConnection *conn, VectorTable *tbl, bool missing_ok)
{
	VectorCollection *c = VectorCachedCollection(conn, tbl->collection);

	return c ? c : handle_of(conn)->provider->lookup(conn, tbl, missing_ok);
}

/*
 * The description of tbl's collection read in this transaction, for what
 * depends on its distance or dimension (a k-NN): a description cached by
 * an earlier transaction is read again, since the collection may have been
 * dropped and re-created with another distance or dimension meanwhile (one
 * request per transaction).  Not with a provider that routes by UUID
 * (Chroma): there the request sent to a re-created collection's old UUID
 * answers 404, and the look-up that follows finds the new distance
 * (record_call: 40001 for a k-NN made for another one), so the cached
 * description costs no request, unless it had no dimension yet (a
 * collection without records: the first one sets it).  NULL when it does
 * not exist and missing_ok; else an ERROR.
 */
VectorCollection *
VectorFreshCollection(PgpolyConnection *conn, VectorTable *tbl, bool missing_ok)
{
	VectorCollection *c = VectorCachedCollection(conn, tbl->collection);

	/* a dimension unknown then (no record yet) may be known by now */
	if (c && c->lxid != MyProc->lxid &&
		(!handle_of(conn)->provider->routes_by_uuid || c->dimension <= 0))
	{
		VectorForgetCollection(conn, tbl);
		c = NULL;
	}
	return c ? c : handle_of(conn)->provider->lookup(conn, tbl, missing_ok);
}

/*
 * use_remote_estimate: the number of records in tbl's collection, asked of
 * the service at plan time (0 when the collection does not exist yet).
 */
double
VectorRemoteCount(VectorTable *tbl)
{
	PgpolyConnection *conn = VectorGetConnection(tbl);
	VectorCollection *c = VectorLookupCollection(conn, tbl, true);

	return c ? handle_of(conn)->provider->count(conn, tbl, c) : 0;
}

/*
 * Drop the cached description of tbl's collection (to see it afresh).  A
 * scan or write of this transaction may still hold it: it is freed in a
 * later transaction (with the others forgotten in this one).
 */
void
VectorForgetCollection(PgpolyConnection *conn, VectorTable *tbl)
{
	VectorConn *vc = handle_of(conn);
	ListCell   *lc;

	if (vc->retired_lxid != MyProc->lxid)
	{
		foreach(lc, vc->retired)
		{
			VectorCollection *c = lfirst(lc);

			pfree(c->name);
			pfree(c->uuid);
			pfree(c);
		}
		list_free(vc->retired);
		vc->retired = NIL;
		vc->retired_lxid = MyProc->lxid;
	}
	foreach(lc, vc->colls)
	{
		VectorCollection *c = lfirst(lc);

		if (strcmp(c->name, tbl->collection) == 0)
		{
			MemoryContext old = MemoryContextSwitchTo(vc->cxt);

			vc->colls = foreach_delete_current(vc->colls, lc);
			vc->retired = lappend(vc->retired, c);
			MemoryContextSwitchTo(old);
			return;
		}
	}
}

/* Collections of conn's server (for IMPORT FOREIGN SCHEMA). */
List *
VectorListCollections(PgpolyConnection *conn)
{
	return handle_of(conn)->provider->list_collections(conn);
}

/* ----------------------------------------------------------------
 *		JSON helpers of the providers
 * ----------------------------------------------------------------
 */

/* Percent-encode a path segment (leaves [A-Za-z0-9._-] alone). */
char *
VectorUrlSegment(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	/* the segment's UTF-8 bytes, percent-encoded */
	for (s = PgpolyServerToStoreCstr(s, true); *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (isalnum(c) || c == '.' || c == '_' || c == '-')
			appendStringInfoChar(&buf, c);
		else
			appendStringInfo(&buf, "%%%02X", c);
	}
	return buf.data;
}

/*
 * The id of a record the service sent (a string).  An id holding a NUL
 * character is an ERROR 22021: ids name records, and text cannot hold it.
 */
char *
VectorRecordId(PgpolyConnection *conn, json_t *id)
{
	const char *s = json_string_value(id);
	size_t		len = json_string_length(id);

	if (memchr(s, '\0', len) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("vector server \"%s\" sent a record id with a NUL character: \"%s\"",
						conn->servername, PgpolyPrintable(s, len, 200)),
				 errdetail("PostgreSQL text cannot hold NUL characters.")));
	return pstrdup(PgpolyStoreToServer(s, &len, "record id"));
}

/*
 * The name of a collection the service described or listed (what: the
 * response): a non-empty string without NUL characters, else an ERROR.
 * Such a name could not be addressed or become a table name.  The name is
 * the database's text, as the collection option it is compared with (and
 * request paths are converted back to UTF-8).
 */
char *
VectorCollectionName(PgpolyConnection *conn, json_t *name, const char *what)
{
	const char *s = json_string_value(name);

	if (s == NULL || s[0] == '\0' || strlen(s) != json_string_length(name))
		VectorBadResponse(conn, what, "collections named by non-empty strings");
	return pstrdup(PgpolyStoreToServerCstr(s, "collection name"));
}

/*
 * A copy of a record's document (a string) as a C string; *had_nul says
 * whether it held a NUL character, which reading it must then refuse
 * (VectorDocumentNul): the copy stops there.
 */
char *
VectorDocument(json_t *doc, bool *had_nul)
{
	const char *s = json_string_value(doc);
	size_t		len = json_string_length(doc);

	*had_nul = memchr(s, '\0', len) != NULL;
	if (*had_nul)
		return pstrdup(s);		/* an ERROR if read (VectorDocumentNul) */
	return pstrdup(PgpolyStoreToServer(s, &len, "value for column \"document\""));
}

/*
 * Set row's embedding from emb, a JSON array of numbers (what names it in
 * messages).  An element beyond real's range is an ERROR, as float4in
 * says: a float4 would silently hold Infinity instead.
 */
void
VectorParseEmbedding(PgpolyConnection *conn, VectorRow *row, json_t *emb,
					 const char *what)
{
	size_t		j;
	json_t	   *x;

	row->dim = (int) json_array_size(emb);
	row->emb = palloc(sizeof(float4) * Max(row->dim, 1));
	json_array_foreach(emb, j, x)
	{
		double		v = json_number_value(x);

		if (!json_is_number(x))
			VectorBadResponse(conn, what, "an array of numbers");
		if (fabs(v) > FLT_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("vector server \"%s\" sent an embedding element out of range for type real: %g",
							conn->servername, v),
					 errcontext("record \"%s\"", row->id)));
		row->emb[j] = (float4) v;
	}
}

/* ERROR 22021: row's document held a NUL character (conv: the column). */
void
VectorDocumentNul(VectorRow *row, PgpolyConv *conv)
{
	PgpolyJsonNulError(psprintf("record \"%s\"", row->id), "document", conv);
}

/*
 * Append a jansson value (UTF-8) as JSON text in the database encoding, as
 * every request body is built (PgpolyHttpRequest sends it as UTF-8), reals
 * in shortest round-trip form.
 */
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
				escape_json(buf, PgpolyStoreToServerCstr(key, "metadata key"));
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
			{
				size_t		len = json_string_length(v);
				const char *s = PgpolyStoreToServer(json_string_value(v), &len,
													"metadata value");

				PgpolyJsonEscape(buf, s, len);
			}
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

/*
 * Append v as a JSON array of shortest round-trip float4 numbers, written
 * straight into buf (room for the longest form of each made first).
 */
void
VectorAppendFloats(StringInfo buf, const float4 *v, int dim)
{
	enlargeStringInfo(buf, dim * FLOAT_SHORTEST_DECIMAL_LEN + 2);
	buf->data[buf->len++] = '[';
	for (int i = 0; i < dim; i++)
	{
		if (i > 0)
			buf->data[buf->len++] = ',';
		if (isnan(v[i]) || isinf(v[i]))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("a vector sent to the service must not contain NaN or Infinity")));
		buf->len += float_to_shortest_decimal_bufn(v[i], buf->data + buf->len);
	}
	buf->data[buf->len++] = ']';
	buf->data[buf->len] = '\0';
}

/*
 * The last query vector rendered by VectorAppendQueryFloats and its text:
 * a prepared statement or a PL/pgSQL loop sends the same query vector (a
 * constant, or a parameter bound to the same value) again and again, and
 * its rendering (Ryu, ~270 instructions a number) was the largest part of
 * building the request.  Keyed by the exact bits of every element, so an
 * equal key always renders to the same text: the memo can never be stale.
 * Kept in TopMemoryContext, filled only after a rendering succeeded, and
 * only for a vector of at most QUERY_MEMO_MAX_DIM elements: the memo lives
 * as long as the session, so one huge query vector must not keep its copy
 * and text (~20 bytes an element) allocated until the backend exits.
 */
#define QUERY_MEMO_MAX_DIM 16000	/* pgvector's largest vector */

static float4 *query_memo_vec;
static char *query_memo_text;
static int	query_memo_dim = -1;
static int	query_memo_len;
static int	query_memo_room;		/* elements query_memo_vec holds */
static int	query_memo_text_room;	/* bytes query_memo_text holds */

/*
 * VectorAppendFloats for the query vector of a k-NN request, from the memo
 * when v is bit for bit the last query vector rendered.
 */
void
VectorAppendQueryFloats(StringInfo buf, const float4 *v, int dim)
{
	int			start = buf->len;
	int			len;

	if (dim == query_memo_dim &&
		memcmp(v, query_memo_vec, sizeof(float4) * dim) == 0)
	{
		appendBinaryStringInfo(buf, query_memo_text, query_memo_len);
		return;
	}
	VectorAppendFloats(buf, v, dim);
	len = buf->len - start;
	/* invalid until refilled; no freed pointer kept if an allocation fails */
	query_memo_dim = -1;
	if (dim > QUERY_MEMO_MAX_DIM)
		return;
	if (query_memo_vec == NULL || dim > query_memo_room)
	{
		if (query_memo_vec)
			pfree(query_memo_vec);
		query_memo_vec = NULL;
		query_memo_vec = MemoryContextAlloc(TopMemoryContext, sizeof(float4) * Max(dim, 1));
		query_memo_room = dim;
	}
	if (query_memo_text == NULL || len + 1 > query_memo_text_room)
	{
		if (query_memo_text)
			pfree(query_memo_text);
		query_memo_text = NULL;
		query_memo_text = MemoryContextAlloc(TopMemoryContext, len + 1);
		query_memo_text_room = len + 1;
	}
	memcpy(query_memo_vec, v, sizeof(float4) * dim);
	memcpy(query_memo_text, buf->data + start, len + 1);
	query_memo_len = len;
	query_memo_dim = dim;
}

/* ----------------------------------------------------------------
 *		Dispatch to the provider
 * ----------------------------------------------------------------
 */

/* The provider's filter of conds (ANDed), or NULL when there are none. */
char *
VectorWhereJson(VectorTable *tbl, List *conds)
{
	return conds == NIL ? NULL : tbl->provider->filter(conds);
}

/* A condition key op value, also admitting or_else (may be NULL). */
static VectorCondEval *
make_cond(char *key, VectorCondOp op, char *value, VectorCondEval *or_else)
{
	VectorCondEval *c = palloc0(sizeof(VectorCondEval));

	c->key = key;
	c->op = op;
	c->value = value;
	c->or_else = or_else;
	return c;
}

/*
 * conds with the conditions admitting the numbers x with  x op d  (d a
 * float8 bound, op not VCOND_IN) and what specials admits (or NULL)
 * appended, for tbl's service.  Chroma (truncates_bounds) keeps a whole
 * number written without a fraction (pgpoly writes a float8 2.0 as 2) as
 * an integer, which it compares with a fractional bound truncated to an
 * integer (2 < 2.5 and -1 > -1.5 are false there).  So a fractional bound
 * is sent with the integral bounds f = floor(d) and c = f + 1 around it,
 * which compare exactly with integers and floats alike, and decide for
 * integers: x < d becomes (x < d OR x <= f) AND x < c, x > d becomes
 * (x > d OR x >= c) AND x > f, x = d becomes x = d AND x > f AND x < c.
 * Whatever an integer compared with d gives, the integral conditions
 * decide; a float passes them wherever it passes x op d.
 */
List *
VectorNumberConds(List *conds, VectorTable *tbl, char *key, VectorCondOp op, double d,
				  VectorCondEval *specials)
{
	StringInfoData buf;
	bool		below = op == VCOND_LT || op == VCOND_LE;
	char	   *f;
	char	   *c;

	initStringInfo(&buf);
	PgpolyJsonAppendValue(&buf, Float8GetDatum(d), FLOAT8OID, false);
	if (!tbl->provider->truncates_bounds || d == floor(d))
		return lappend(conds, make_cond(key, op, buf.data, specials));
	/* not whole, so well within the range of int64 */
	f = psprintf(INT64_FORMAT, (int64) floor(d));
	c = psprintf(INT64_FORMAT, (int64) floor(d) + 1);
	if (op == VCOND_EQ)
	{
		conds = lappend(conds, make_cond(key, op, buf.data, NULL));
		conds = lappend(conds, make_cond(key, VCOND_GT, f, NULL));
		return lappend(conds, make_cond(key, VCOND_LT, c, NULL));
	}
	conds = lappend(conds, make_cond(key, op, buf.data,
									 make_cond(key, below ? VCOND_LE : VCOND_GE,
											   below ? f : c, specials)));
	return lappend(conds, make_cond(key, below ? VCOND_LT : VCOND_GT, below ? c : f,
									specials));
}

/* ERROR: the service sent record id of tbl with what wrong about it. */
static void
lying_record(PgpolyConnection *conn, VectorTable *tbl, const char *id, const char *wrong,
			 const char *rule)
{
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
			 errmsg("vector server \"%s\" sent record \"%s\" of foreign table \"%s\" %s",
					conn->servername, id, tbl->relname, wrong),
			 errdetail_internal("%s", rule)));
}

/*
 * The description of tbl's collection that row's embedding (of a record
 * the service just sent) must fit: the cached one, or, where the service
 * routes by name (Qdrant) and the cached one does not fit, the one the
 * service gives now (the collection may have been re-created since it was
 * cached).  NULL when unknown.
 */
static VectorCollection *
current_description(PgpolyConnection *conn, VectorTable *tbl, VectorRow *row)
{
	VectorCollection *c = VectorCachedCollection(conn, tbl->collection);

	if ((c == NULL || (c->dimension > 0 && c->dimension != row->dim)) &&
		!tbl->provider->routes_by_uuid)
	{
		VectorForgetCollection(conn, tbl);
		c = tbl->provider->lookup(conn, tbl, true);
	}
	return c;
}

/*
 * ERROR unless each of rows (sent by the service for a request of tbl that
 * included include) has the embedding asked for, of the collection's
 * dimension.  A record without one could not have been written, and one of
 * another dimension does not belong to the collection.
 */
static void
check_embeddings(PgpolyConnection *conn, VectorTable *tbl, List *rows, int include)
{
	ListCell   *lc;

	if (!(include & VINC_EMBEDDING))
		return;
	foreach(lc, rows)
	{
		VectorRow  *row = lfirst(lc);
		VectorCollection *c;

		if (row->emb == NULL)
			lying_record(conn, tbl, row->id, "without its embedding",
						 "An embedding was asked for, and every record has one.");
		c = current_description(conn, tbl, row);
		if (c && c->dimension > 0 && c->dimension != row->dim)
			lying_record(conn, tbl, row->id,
						 psprintf("with an embedding of %d dimensions, collection \"%s\" has %d",
								  row->dim, tbl->collection, c->dimension),
						 "Every record of a collection has the collection's dimension.");
	}
}

/* Records with the given ids (and where), in one request. */
List *
VectorGetByIds(PgpolyConnection *conn, VectorTable *tbl, VectorCollection *coll,
			   List *ids, const char *where, int include)
{
	List	   *rows = tbl->provider->get_by_ids(conn, tbl, coll, ids, where,
												 include & ~VINC_DISTANCE);

	check_embeddings(conn, tbl, rows, include);
	return rows;
}

/* One page of the records matching where (see VectorProvider.get_page). */
List *
VectorGetPage(PgpolyConnection *conn, VectorTable *tbl, VectorCollection *coll,
			  const char *where, char **cursor, int limit, int include)
{
	List	   *rows = tbl->provider->get_page(conn, tbl, coll, where, cursor, limit,
											   include & ~VINC_DISTANCE);

	check_embeddings(conn, tbl, rows, include);
	return rows;
}

/* qsort comparator of C strings. */
static int
cmp_strings(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/*
 * What is wrong with rows as the answer to a k-NN request for k records in
 * metric d (a phrase for a message, its record in *id), or NULL: an answer
 * has at most k records, each once, each with a distance that is a number
 * (not negative for <->, within [0, 2] for <=>), nearest first (ties in any
 * order); a record whose distance overflowed the service's precision
 * (distance_overflow) is in no particular place (the scan ranks the answer
 * itself then).
 */
static char *
knn_answer_fault(List *rows, int k, VectorDistance d, const char **id)
{
	int			n = list_length(rows);
	char	  **ids = palloc(sizeof(char *) * Max(n, 1));
	VectorRow  *prev = NULL;
	ListCell   *lc;

	*id = n > 0 ? ((VectorRow *) linitial(rows))->id : "";
	if (n > k)
		return psprintf("among %d records answering a k-NN request for %d", n, k);
	foreach(lc, rows)
	{
		VectorRow  *row = lfirst(lc);

		*id = row->id;
		ids[foreach_current_index(lc)] = row->id;
		/* ranked by a distance the service could not compute: ranked here */
		if (row->distance_overflow)
			continue;
		if (!row->has_distance || isnan(row->distance))
			return "in a k-NN answer without a distance";
		/* (services compute in single precision: a few ulps of slack) */
		if (d == VDIST_L2 && row->distance < -1e-5)
			return psprintf("in a k-NN answer at a negative Euclidean distance (%g)",
							row->distance);
		if (d == VDIST_COSINE && (row->distance < -1e-5 || row->distance > 2 + 1e-5))
			return psprintf("in a k-NN answer at a cosine distance outside [0, 2] (%g)",
							row->distance);
		if (prev && row->distance < prev->distance)
			return psprintf("in a k-NN answer at distance %g, after record \"%s\" at %g",
							row->distance, prev->id, prev->distance);
		prev = row;
	}
	qsort(ids, n, sizeof(char *), cmp_strings);
	for (int i = 1; i < n; i++)
		if (strcmp(ids[i - 1], ids[i]) == 0)
		{
			*id = ids[i];
			return "twice in a k-NN answer";
		}
	return NULL;
}

/*
 * ERROR unless rows is an answer of the service to a k-NN request for k
 * records of collection coll (knn_answer_fault).  Where the service routes
 * by name (Qdrant), a collection re-created under the name since coll was
 * read ranks by its own distance: that is told first (40001).
 */
static void
check_knn_answer(PgpolyConnection *conn, VectorTable *tbl, VectorCollection *coll,
				 List *rows, int k)
{
	const char *id;
	char	   *fault = knn_answer_fault(rows, k, coll->distance, &id);

	if (fault == NULL)
		return;
	if (!tbl->provider->routes_by_uuid)
	{
		VectorForgetCollection(conn, tbl);
		VectorCheckRecreated(tbl, tbl->provider->lookup(conn, tbl, false), coll, "query");
	}
	lying_record(conn, tbl, id, fault,
				 psprintf("A k-NN request for %d records is answered by at most %d records, each once, each with its distance, nearest first.",
						  k, k));
}

/*
 * The k nearest records to q (matching where and ids), nearest first, as
 * the service answered (checked: check_knn_answer).
 */
List *
VectorQuery(PgpolyConnection *conn, VectorTable *tbl, VectorCollection *coll,
			const float4 *q, int dim, int k, const char *where, List *ids,
			int include)
{
	List	   *rows;

	if (coll->dimension > 0 && dim != coll->dimension)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("query vector has %d dimensions, collection \"%s\" has %d",
						dim, coll->name, coll->dimension)));
	rows = tbl->provider->query(conn, tbl, coll, q, dim, k, where, ids,
								include | VINC_DISTANCE);
	check_knn_answer(conn, tbl, coll, rows, k);
	check_embeddings(conn, tbl, rows, include);
	return rows;
}

/* The k-NN request as EXPLAIN shows it. */
char *
VectorQueryText(VectorTable *tbl, const char *where, int k, int include, bool ids)
{
	return tbl->provider->query_text(tbl, where, k, include | VINC_DISTANCE, ids);
}

/* The request of a plain scan as EXPLAIN shows it. */
char *
VectorScanText(VectorTable *tbl, bool by_ids, const char *where, int include)
{
	return tbl->provider->scan_text(tbl, by_ids, where, include);
}

/* ERROR now for a write the service would refuse at COMMIT. */
void
VectorCheckWrite(VectorWrite *w)
{
	if (w->tbl->provider->check_write)
		w->tbl->provider->check_write(w);
}

/*
 * ERROR (22000): the embedding of record id has got dimensions where tbl's
 * collection has (or, after this transaction's earlier writes, will have)
 * want.  detail, if not NULL, says where want comes from.
 */
void
VectorDimensionError(VectorTable *tbl, const char *id, int got, int want,
					 const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_EXCEPTION),
			 errmsg("embedding of record \"%s\" has %d dimensions, collection \"%s\" has %d",
					id, got, tbl->collection, want),
			 detail ? errdetail_internal("%s", detail) : 0));
}

/*
 * Before a batch of a flush is sent to collection c (as the service
 * describes it now): ERROR unless the embeddings the flush writes to it
 * (all of dim_of's dimension; NULL: none) have c's dimension.  The writes
 * were checked against the description the statements saw; it differs when
 * the collection was dropped and re-created since (recreated: the request
 * to its old id just answered 404), and the service would refuse the
 * batch with a bare HTTP 400 after the flush had sent the batches before.
 */
void
VectorCheckFlushDimension(VectorTable *tbl, const VectorCollection *c,
						  const VectorWrite *dim_of, bool recreated)
{
	if (dim_of == NULL || c == NULL || c->dimension <= 0 ||
		c->dimension == dim_of->row.dim)
		return;
	VectorDimensionError(tbl, dim_of->row.id, dim_of->row.dim, c->dimension,
						 recreated ?
						 "The collection was dropped and re-created since this session looked it up." :
						 NULL);
}

/* ----------------------------------------------------------------
 *		Writes
 * ----------------------------------------------------------------
 */

/*
 * Set each write's dim_of (the first write with an embedding to the same
 * collection), and ERROR before anything is sent when two writes to one
 * collection have different dimensions: statements of one transaction that
 * each matched a then empty collection, of which the service would take the
 * first batch and refuse a later one.
 */
static void
link_dimensions(VectorWrite **w, int n)
{
	List	   *firsts = NIL;
	ListCell   *lc;

	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < n; i++)
		{
			VectorWrite *first = NULL;

			foreach(lc, firsts)
				if (strcmp(((VectorWrite *) lfirst(lc))->tbl->collection,
						   w[i]->tbl->collection) == 0)
					first = lfirst(lc);
			if (pass == 1)
				w[i]->dim_of = first;
			else if (w[i]->kind == VW_DELETE)
				continue;
			else if (first == NULL)
				firsts = lappend(firsts, w[i]);
			else if (w[i]->row.dim != first->row.dim)
				VectorDimensionError(w[i]->tbl, w[i]->row.id, w[i]->row.dim,
									 first->row.dim,
									 psprintf("Record \"%s\" written to it earlier in this transaction has %d dimensions.",
											  first->row.id, first->row.dim));
		}
	list_free(firsts);
}

/* An id of an update batch (check_update_targets): whether the service holds it. */
typedef struct UpdateId
{
	PgpolyKeyRef id;			/* hash key (PgpolyKeyTable) */
	bool		there;
} UpdateId;

/* Whether the record of w must be there when w is sent (check_update_targets). */
static bool
must_exist(const VectorWrite *w)
{
	return w->kind == VW_UPDATE || w->must_exist;
}

/*
 * Before an update of writes[0..n) (or a batch of deletes, some of which
 * are of the old ids of UPDATEs that changed them: must_exist): ERROR
 * 40001 unless the collection holds every record that must exist, one get
 * by ids (the provider splits it into
 * requests of the size its service takes).  A record another client
 * deleted after the UPDATE read it would otherwise lose the write
 * silently (Chroma's update of an id it does not hold answers success
 * and applies nothing) or be brought back by it (Qdrant's upsert creates
 * the point).  One deleted between this get and the update is not
 * caught: neither service has a request that replaces whole records and
 * fails on a missing one (Qdrant's update vectors and overwrite payload
 * fail with 404, but only after changing the points they found, and take
 * two requests), so the providers send an update that applies nothing to
 * a missing record (Chroma's update, Qdrant's upsert with update_mode
 * "update_only"), as if the delete had come after the update.  The ids the service returns are marked in a seeded
 * key table of the batch's ids: linear, whatever ids either brings.
 */
static void
check_update_targets(PgpolyConnection *conn, VectorWrite **w, int n)
{
	VectorTable *tbl = w[0]->tbl;
	List	   *ids = NIL;
	List	   *found;
	ListCell   *lc;
	HTAB	   *seen = PgpolyKeyTable("pgpoly vector update ids", sizeof(UpdateId),
									  CurrentMemoryContext);

	for (int i = 0; i < n; i++)
	{
		bool		dup;
		UpdateId   *e;

		if (!must_exist(w[i]))
			continue;
		e = PgpolyKeyTableEnter(seen, CurrentMemoryContext, w[i]->row.id,
								strlen(w[i]->row.id), &dup);
		if (!dup)
		{
			e->there = false;
			ids = lappend(ids, w[i]->row.id);
		}
	}
	if (ids == NIL)
	{
		hash_destroy(seen);
		return;					/* plain deletes */
	}
	found = VectorGetByIds(conn, tbl, VectorLookupCollection(conn, tbl, false), ids, NULL, 0);
	foreach(lc, found)
	{
		const char *id = ((VectorRow *) lfirst(lc))->id;
		UpdateId   *e = PgpolyKeyTableFind(seen, id, strlen(id));

		if (e)
			e->there = true;
	}
	for (int i = 0; i < n; i++)
		if (must_exist(w[i]) &&
			!((UpdateId *) PgpolyKeyTableFind(seen, w[i]->row.id, strlen(w[i]->row.id)))->there)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not serialize the update of record \"%s\" of foreign table \"%s\" (collection \"%s\")",
							w[i]->row.id, tbl->relname, tbl->collection),
					 errdetail("Another client deleted the record after this UPDATE read it; the update is not sent to %s.",
							   tbl->provider->label),
					 errhint("The transaction can be retried (in write_mode 'immediate', the statement).")));
	hash_destroy(seen);
}

/*
 * Send one batch, naming it in the error context.  sent_before writes
 * went in earlier requests and were applied (the services have no
 * transactions: they stay), later come after it; a failure says so.
 */
static void
send_batch(PgpolyConnection *conn, VectorWrite **w, int n, int64 sent_before,
		   int64 later)
{
	static const char *const kinds[] = {"upsert", "update", "delete", "insert"};
	PgpolySendProgress progress = {NULL, "record", "these writes", "earlier requests",
	sent_before, later};

	progress.prefix = psprintf("%s has no rollback", handle_of(conn)->provider->label);
	PgpolySendProgressPush(&progress);
	PG_TRY();
	{
		if (w[0]->kind == VW_UPDATE || w[0]->kind == VW_DELETE)
			check_update_targets(conn, w, n);
		handle_of(conn)->provider->send_batch(conn, w, n);
	}
	PG_CATCH();
	{
		errcontext("%s of %d record(s) of foreign table \"%s\", first id \"%s\"",
				   kinds[w[0]->kind], n, w[0]->tbl->relname, w[0]->row.id);
		PG_RE_THROW();
	}
	PG_END_TRY();
	PgpolySendProgressPop(&progress);
}

/*
 * About the bytes w adds to a request body: id, document, metadata and
 * embedding (up to 16 characters a float) as JSON text.
 */
static size_t
write_bytes(VectorWrite *w)
{
	VectorRow  *r = &w->row;
	const char *meta = w->send_metadata ? w->send_metadata : r->metadata;

	return strlen(r->id) + (r->document ? strlen(r->document) : 0) +
		(meta ? strlen(meta) : 0) + (r->emb ? (size_t) r->dim * 16 : 0) + 64;
}

/*
 * Send writes (VectorWrite *) in order: runs of the same table and kind go
 * in batches of the table's batch_size, one request each, and of at most
 * VECTOR_MAX_BATCH_BYTES (the services refuse larger bodies with 413:
 * Chroma's limit is about 40 MB, Qdrant's 32 MB; a single larger record
 * goes alone).
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
	link_dimensions(w, n);
	old = MemoryContextSwitchTo(cxt);
	while (start < n)
	{
		int			end = start + 1;
		size_t		bytes = write_bytes(w[start]);

		while (end < n && end - start < w[start]->tbl->batch_size &&
			   (bytes += write_bytes(w[end])) <= VECTOR_MAX_BATCH_BYTES &&
			   w[end]->kind == w[start]->kind && w[end]->tbl->relid == w[start]->tbl->relid &&
			   strcmp(w[end]->tbl->collection, w[start]->tbl->collection) == 0)
			end++;
		send_batch(conn, w + start, end - start, start, n - end);
		MemoryContextReset(cxt);
		start = end;
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

