/*-------------------------------------------------------------------------
 *
 * elastic_conn.c
 *		  pgpoly_elastic connections: version detection, requests, errors.
 *
 * A connection is the core's HTTP client (one curl handle, keep-alive)
 * plus what GET / said about the cluster, asked once per connection:
 * Elasticsearch 7.10+/8.x or OpenSearch (told apart by version.distribution
 * and the tagline, since OpenSearch can report version 7.10.2), and which
 * point-in-time API deep scans can use with which tiebreaker:
 *	- Elasticsearch >= 7.12: POST /<index>/_pit, DELETE /_pit {"id": ...},
 *	  tiebreaker _shard_doc (added in 7.12);
 *	  https://www.elastic.co/guide/en/elasticsearch/reference/current/point-in-time-api.html
 *	- OpenSearch >= 2.4: its own API, POST /<index>/_search/point_in_time
 *	  (response {"pit_id": ...}), DELETE /_search/point_in_time
 *	  {"pit_id": [...]};
 *	  https://docs.opensearch.org/latest/api-reference/search-apis/point-in-time-api/
 *	  OpenSearch has no _shard_doc before 3.3 (opensearch-project/OpenSearch
 *	  #17064, #18924), so on 2.4 - 3.2 the tiebreaker is _id, as in the
 *	  search_after example of
 *	  https://docs.opensearch.org/latest/search-plugins/searching-data/paginate/
 *	  (sorting on _id needs indices.id_field_data.enabled, true by default);
 *	- otherwise (Elasticsearch 7.10/7.11, OpenSearch 1.x - 2.3, or an
 *	  OpenSearch that reports a 7.x compatibility version) scroll.
 *
 * Invariants:
 *	- Every request goes through PgpolyHttpRequest: interruptible, bounded
 *	  by timeout_ms, failing over across the urls, retrying 429/502/503
 *	  (never another 4xx) with jittered backoff.
 *	- An HTTP error status becomes an ERROR carrying Elasticsearch's error
 *	  type and reason; a missing index is ERRCODE_FDW_TABLE_NOT_FOUND naming
 *	  it, a closed or blocked one 55000 (ElasticRaiseIndexCondition, for
 *	  bulk items too): the index, not the documents, is at fault.
 *	  Credentials never appear in a message.
 *	- PIT and scroll contexts a scan could not close (it was aborted) are
 *	  queued per server and user mapping and closed before the next request
 *	  on that connection; Elasticsearch also expires them (keep_alive).  A
 *	  scan that read its rows is not failed by the close of its context: a
 *	  refused or failed close is a WARNING (ElasticCloseContext).
 *	- pgpoly.elastic_request sends nothing but a read (request_is_read) in a
 *	  read-only transaction: 25006, as every other write path of pgpoly.
 *
 * fdw/elastic_conn.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pgpoly_jansson.h"

#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "elastic.h"

static void elastic_forget(PgpolyConnection *conn);
static void elastic_xact_end(PgpolyConnection *conn, bool commit);
static void close_at_exit(int code, Datum arg);
static void *elastic_connect(PgpolyConnection *conn, ForeignServer *server,
							 UserMapping *user);
static void elastic_disconnect(void *handle);

const PgpolyStore ElasticStore = {
	"elastic",
	"Elasticsearch",
	ElasticOptions,
	elastic_connect,
	elastic_disconnect,
	ElasticSendWrites,
	pgpoly_elastic_handler,
	ElasticConflictColumns,
	.xact_end = elastic_xact_end,
	.target_option = "index",
	.forget = elastic_forget
};

/* One mapped leaf field, over the indexes the index name reaches. */
typedef struct ElasticMappedField
{
	char	   *path;			/* "a.b" */
	char	   *type;			/* "keyword", "date" ...; "" when indexes
								 * disagree */
	bool		keyword;		/* text with a .keyword keyword subfield in
								 * every index that maps it */
	int			indexes;		/* indexes mapping it */
	int			ignore_above;	/* smallest ignore_above of the field, -1 */
	int			kw_ignore_above;	/* the same of its .keyword, -1 */
	bool		null_value;		/* some index indexes a JSON null as a value
								 * (the field's or its .keyword's) */
	bool		hidden;			/* a copy_to target or a runtime field:
								 * what it indexes is not its _source */
	bool		ignore_malformed;	/* some index maps it with
									 * ignore_malformed: a value it cannot
									 * parse is in _source, not indexed */
} ElasticMappedField;

/*
 * Field facts of one index (or pattern, alias), cached per connection and
 * read again in each transaction that uses them (lxid).
 */
typedef struct ElasticMappingCache
{
	char	   *index;
	LocalTransactionId lxid;	/* the transaction that read it */
	int			indexes;		/* indexes in the GET index answer */
	List	   *fields;			/* ElasticMappedField * */
	List	   *hidden;			/* char *: copy_to targets, runtime fields */
} ElasticMappingCache;

/*
 * A PIT or scroll context a scan opened (ElasticTrackContext), closed by
 * the scan when it ends; queued once the scan is gone without closing it,
 * for the next chance: the next request on the same connection, the end of
 * the transaction that aborted, or the backend's exit (which also closes
 * the contexts of scans still open then).
 */
struct ElasticOpenContext
{
	PgpolyConnKey key;
	PgpolyConnection *conn;		/* the cache entry (kept while this is:
								 * elastic_forget drops its contexts) */
	bool		pit;
	bool		queued;			/* its scan is gone */
	bool		closed;			/* closed at exit while its scan lived */
	char	   *id;
};

static List *OpenContexts = NIL;	/* ElasticOpenContext *, in QueueMemory */
static MemoryContext QueueMemory = NULL;

/* The handle of conn (connected). */
ElasticHandle *
ElasticConnHandle(PgpolyConnection *conn)
{
	PgpolyEnsureConnected(conn);	/* reopen a closed or broken handle */
	return (ElasticHandle *) conn->handle;
}

/* The connection for tbl's server and user mapping, from the cache. */
PgpolyConnection *
ElasticGetConnection(ElasticTable *tbl)
{
	PgpolyConnection *conn = PgpolyGetConnection(&ElasticStore, tbl->server,
												 tbl->user);

	ElasticSendQueuedCloses(conn);
	return conn;
}

/*
 * The HTTP client configuration from server and user mapping options.
 * Under the trust rule, each URL must first refuse GET / without
 * credentials.
 */
static void
http_config(ForeignServer *server, UserMapping *user, PgpolyHttpConfig *cfg)
{
	List	   *umopts = user ? user->options : NIL;
	const char *api_key = PgpolyGetOption(umopts, "api_key", NULL);

	memset(cfg, 0, sizeof(*cfg));
	cfg->urls = PgpolyServerUrls(server, "http://127.0.0.1:9200");
	cfg->secrets = PgpolySecretValues(ElasticOptions, umopts);
	cfg->username = PgpolyGetOption(umopts, "username", NULL);
	cfg->password = PgpolyGetOption(umopts, "password", NULL);
	if (api_key)
		cfg->headers = list_make1(psprintf("Authorization: ApiKey %s", api_key));
	cfg->ca_file = PgpolyGetOption(server->options, "ca_file", NULL);
	cfg->verify_tls = PgpolyGetBoolOption(server->options, "verify_tls", true);
	if (user && PgpolyMustProveCredential(user))
		cfg->probe_path = "/";
}

/* Parse "major.minor..." into h; false if it is not a version number. */
static bool
parse_version(ElasticHandle *h, const char *number)
{
	if (sscanf(number, "%d.%d", &h->major, &h->minor) != 2)
		return false;
	strlcpy(h->version, number, sizeof(h->version));
	return true;
}

/* Raise the ERROR for a url whose GET / was not a cluster's (why: what it did). */
static void
not_elastic(PgpolyConnection *conn, const char *why, PgpolyHttpResponse *resp)
{
	ereport(ERROR,
			(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
			 errmsg("server \"%s\" at %s does not look like Elasticsearch or OpenSearch",
					conn->servername, conn->target),
			 errdetail("%s; the response begins: %s", why,
					   PgpolyHttpExcerpt(conn, resp->body, resp->len)),
			 errhint("Check the server option url: it must point at an Elasticsearch or OpenSearch cluster.")));
}

/*
 * GET / and record what the cluster is.  OpenSearch is recognised by
 * version.distribution or its tagline, never by the number alone.
 */
static void
detect_version(PgpolyConnection *conn, ElasticHandle *h)
{
	PgpolyHttpResponse resp;
	json_t	   *doc;
	json_t	   *ver;
	const char *number;
	const char *dist;
	const char *tagline;

	PgpolyHttpRequest(conn, h->http, "GET", "/", NULL, 0, NULL, ELASTIC_RETRIES, &resp);
	/* a cluster answers GET / (or refuses it, 401/403): 404 is another service */
	if (resp.status == 404)
		not_elastic(conn, "GET / answered 404", &resp);
	if (resp.status != 200)
		ElasticRaiseStatus(conn, "GET", "/", NULL, &resp);
	doc = PgpolyJsonParse(conn, resp.body, resp.len, "cluster information (GET /)");
	ver = json_object_get(doc, "version");
	number = json_string_value(json_object_get(ver, "number"));
	dist = json_string_value(json_object_get(ver, "distribution"));
	tagline = json_string_value(json_object_get(doc, "tagline"));
	if (number == NULL || !parse_version(h, number))
		not_elastic(conn, "GET / returned no version.number", &resp);
	h->opensearch = (dist && strcmp(dist, "opensearch") == 0) ||
		(tagline && strstr(tagline, "OpenSearch") != NULL);
	if (!h->opensearch && (h->major < 7 || (h->major == 7 && h->minor < 10)))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
				 errmsg("Elasticsearch %s at %s is not supported", h->version,
						conn->target),
				 errhint("pgpoly_elastic needs Elasticsearch 7.10 or later, or OpenSearch.")));
	h->pit_api = EPIT_NONE;
	h->tiebreaker = NULL;
	if (!h->opensearch)
	{
		/* _shard_doc, the PIT tiebreaker search_after needs, came in ES 7.12. */
		if (h->major > 7 || h->minor >= 12)
		{
			h->pit_api = EPIT_ES;
			h->tiebreaker = "_shard_doc";
		}
	}
	else if (h->major < 7 && (h->major > 2 || (h->major == 2 && h->minor >= 4)))
	{
		/*
		 * OpenSearch's PIT API came in 2.4.  A 7.x number is the 7.10.2 an
		 * OpenSearch in compatibility mode reports: its version is unknown,
		 * so it scrolls.  _shard_doc came in OpenSearch 3.3.
		 */
		h->pit_api = EPIT_OPENSEARCH;
		h->tiebreaker = (h->major > 3 || (h->major == 3 && h->minor >= 3)) ?
			"_shard_doc" : "_id";
	}
}

/*
 * PgpolyStore.connect: open the HTTP client and detect the version.  Until
 * the handle is returned the cache does not own it: free it on error.
 */
static void *
elastic_connect(PgpolyConnection *conn, ForeignServer *server, UserMapping *user)
{
	PgpolyHttpConfig cfg;
	ElasticHandle *h;

	http_config(server, user, &cfg);
	snprintf(conn->target, sizeof(conn->target), "%s", (char *) linitial(cfg.urls));
	h = MemoryContextAllocZero(TopMemoryContext, sizeof(ElasticHandle));
	h->http = PgpolyHttpOpen(&cfg);
	PG_TRY();
	{
		detect_version(conn, h);
	}
	PG_CATCH();
	{
		conn->busy = false;
		PgpolyHttpClose(h->http);
		pfree(h);
		PG_RE_THROW();
	}
	PG_END_TRY();
	snprintf(conn->target, sizeof(conn->target), "%s", PgpolyHttpBaseUrl(h->http));
	return h;
}

/* Free one cached mapping. */
static void
free_mapping(ElasticMappingCache *m)
{
	ListCell   *lc;

	foreach(lc, m->fields)
	{
		ElasticMappedField *f = lfirst(lc);

		pfree(f->path);
		pfree(f->type);
	}
	list_free_deep(m->fields);
	list_free_deep(m->hidden);
	pfree(m->index);
	pfree(m);
}

/* PgpolyStore.disconnect: close the client; never ereports. */
static void
elastic_disconnect(void *handle)
{
	ElasticHandle *h = handle;
	ListCell   *lc;

	PgpolyHttpClose(h->http);
	foreach(lc, h->mappings)
		free_mapping(lfirst(lc));
	list_free(h->mappings);
	pfree(h);
}

/* ----------------------------------------------------------------
 *		Requests and errors
 * ----------------------------------------------------------------
 */

/*
 * Path of index (percent-encoded, wildcards and commas kept) followed by
 * suffix (e.g. "/_search").
 */
char *
ElasticIndexPath(const char *index, const char *suffix)
{
	StringInfoData buf;
	const char *p;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '/');
	/* the index name's UTF-8 bytes, percent-encoded */
	for (p = PgpolyServerToStoreCstr(index, true); *p; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (isalnum(c) || strchr("-_.*,+", c))
			appendStringInfoChar(&buf, c);
		else
			appendStringInfo(&buf, "%%%02X", c);
	}
	appendStringInfoString(&buf, suffix);
	return buf.data;
}

/*
 * Send a request on conn (body JSON unless content_type says otherwise).
 * The HTTP status is left to the caller.  index only names the index in
 * messages.
 */
void
ElasticRequest(PgpolyConnection *conn, const char *method, const char *path,
			   const char *body, size_t len, const char *content_type,
			   const char *index, PgpolyHttpResponse *resp)
{
	PgpolyHttpRequest(conn, ElasticConnHandle(conn)->http, method, path, body,
					  len, content_type ? content_type : "application/json",
					  ELASTIC_RETRIES, resp);
	snprintf(conn->target, sizeof(conn->target), "%s",
			 PgpolyHttpBaseUrl(ElasticConnHandle(conn)->http));
}

/* ElasticRequest, with any non-2xx status an ERROR. */
void
ElasticRequestOk(PgpolyConnection *conn, const char *method, const char *path,
				 const char *body, size_t len, const char *index,
				 PgpolyHttpResponse *resp)
{
	ElasticRequest(conn, method, path, body, len, NULL, index, resp);
	if (resp->status < 200 || resp->status > 299)
		ElasticRaiseStatus(conn, method, path, index, resp);
}

/* A JSON string (else NULL) of an error body, as an excerpt for a message. */
static char *
string_excerpt(PgpolyConnection *conn, json_t *s)
{
	if (!json_is_string(s))
		return NULL;
	return PgpolyHttpExcerpt(conn, json_string_value(s), json_string_length(s));
}

/*
 * The reason of the parse_exception that failed the first shard of a
 * search (err: the "error" object), or NULL: a query_string Lucene cannot
 * parse fails every shard with query_shard_exception "Failed to parse
 * query [...]" caused by parse_exception "Cannot parse '...': Encountered
 * ..." (query-dsl-query-string-query.html).
 */
static char *
query_parse_failure(PgpolyConnection *conn, json_t *err)
{
	json_t	   *shard = json_array_get(json_object_get(err, "failed_shards"), 0);
	json_t	   *cause = json_object_get(json_object_get(shard, "reason"), "caused_by");

	if (!json_is_string(json_object_get(cause, "type")) ||
		strcmp(json_string_value(json_object_get(cause, "type")), "parse_exception") != 0)
		return NULL;
	return string_excerpt(conn, json_object_get(cause, "reason"));
}

/*
 * Error type, reason and the index it names ("index", of an
 * index_closed_exception, index_not_found_exception ...) from an ES error
 * body (each may stay NULL), and the query_parse_failure, as excerpts fit
 * for a message.
 */
static void
error_type_reason(PgpolyConnection *conn, const char *body, size_t len,
				  char **type, char **reason, char **errindex, char **parse)
{
	json_error_t jerr;
	json_t	   *doc = json_loadb(body, len, 0, &jerr);
	json_t	   *err;

	*type = *reason = *errindex = *parse = NULL;
	if (doc == NULL)
		return;
	err = json_object_get(doc, "error");
	if (json_is_object(err))
	{
		json_t	   *causes = json_object_get(err, "root_cause");
		json_t	   *first = json_array_get(causes, 0);

		*parse = query_parse_failure(conn, err);

		/* The root cause says more than "all shards failed". */
		if (json_is_object(first) && json_string_value(json_object_get(first, "reason")))
			err = first;
		*type = string_excerpt(conn, json_object_get(err, "type"));
		*reason = string_excerpt(conn, json_object_get(err, "reason"));
		*errindex = string_excerpt(conn, json_object_get(err, "index"));
	}
	else if (json_is_string(err))
		*reason = string_excerpt(conn, err);
	json_decref(doc);
}

/*
 * ERROR if ES error type (not NULL; with status, as HTTP or as a bulk
 * item's) says that the index cannot take the request, whatever the
 * documents: it does not exist (HV00R), is closed (indices-close.html: "It
 * is not possible to index documents or to search for documents in a
 * closed index") or blocked (cluster_block_exception: index-modules-blocks.html, an
 * index.blocks.* setting, among them the read_only_allow_delete block
 * Elasticsearch sets on the indices of a node past the flood-stage disk
 * watermark, 429 since 7.7): 55000, a target that is there but unavailable
 * until someone acts, like an unreachable one, not a rejected document.  A
 * 5xx block (no master) is left to the caller: the store is down.  index:
 * the index meant; detail: what was sent and answered; more: appended to
 * the hint.
 */
void
ElasticRaiseIndexCondition(PgpolyConnection *conn, long status, const char *type,
						   const char *index, const char *detail, const char *more)
{
	if (status == 404 && strcmp(type, "index_not_found_exception") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_TABLE_NOT_FOUND),
				 errmsg("index \"%s\" does not exist on Elasticsearch server \"%s\"",
						index ? index : "?", conn->servername),
				 errdetail("%s", detail),
				 errhint("Create the index, or fix the foreign table option \"index\".%s", more)));
	if (strcmp(type, "index_closed_exception") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("index \"%s\" of Elasticsearch server \"%s\" is closed",
						index ? index : "?", conn->servername),
				 errdetail("%s", detail),
				 errhint("A closed index can be neither read nor written until it is opened (POST /<index>/_open).%s",
						 more)));
	if (strcmp(type, "cluster_block_exception") == 0 && status < 500)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("index \"%s\" of Elasticsearch server \"%s\" is blocked",
						index ? index : "?", conn->servername),
				 errdetail("%s", detail),
				 errhint("A block (index.blocks.write, read_only, or read_only_allow_delete, which Elasticsearch sets while a disk is past the flood-stage watermark) refuses the request until it is lifted.%s",
						 more)));
}

/* Raise the ERROR for an HTTP error status, with ES's type and reason. */
void
ElasticRaiseStatus(PgpolyConnection *conn, const char *method, const char *path,
				   const char *index, PgpolyHttpResponse *resp)
{
	char	   *type;
	char	   *reason;
	char	   *errindex;
	char	   *parse;

	error_type_reason(conn, resp->body, resp->len, &type, &reason, &errindex, &parse);
	/* pgpoly sends no query_string but a _query's: the user's syntax */
	if (resp->status == 400 && parse)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("Elasticsearch server \"%s\" could not parse a _query value",
						conn->servername),
				 errdetail("%s %s: %s: %s", method, path, reason ? reason : type, parse),
				 errhint("_query takes Lucene query string syntax: balance parentheses and quotes, and escape special characters with a backslash.")));
	/* the concrete index a closed index's error names; the table's if missing */
	if (type)
		ElasticRaiseIndexCondition(conn, resp->status, type,
								   strcmp(type, "index_not_found_exception") != 0 &&
								   errindex ? errindex : index,
								   psprintf("%s %s: %s", method, path, reason ? reason : type), "");
	ereport(ERROR,
			(errcode(PgpolyHttpStatusErrcode(resp->status)),
			 errmsg("Elasticsearch server \"%s\" at %s answered %ld%s%s",
					conn->servername, conn->target, resp->status,
					type ? ": " : "", type ? type : ""),
			 reason ? errdetail("%s %s: %s", method, path, reason) :
			 errdetail("%s %s; the response begins: %s", method, path,
					   PgpolyHttpExcerpt(conn, resp->body, resp->len)),
			 resp->status == 401 || resp->status == 403 ?
			 errhint("Check the user mapping's username and password, or api_key.") :
			 PgpolyHttpRetried(resp->status) ?
			 errhint("The request was retried %d times.", ELASTIC_RETRIES) :
			 resp->status == 413 ?
			 errhint("The request body was over the server's http.max_content_length (100mb by default): send less per statement (smaller documents, shorter IN lists) or raise that setting.") : 0));
}

/*
 * Whether a failed parse of body failed only on a NUL character (\u0000)
 * in otherwise valid text: a value jsonb cannot hold (22021), not a
 * malformed response.  Bytes that are not valid in the database encoding
 * make the whole response malformed (JSON is UTF-8 text).
 */
static bool
nul_in_valid_text(ErrorData *edata, const char *body, size_t len)
{
	return edata->sqlerrcode == ERRCODE_CHARACTER_NOT_IN_REPERTOIRE &&
		len <= (size_t) INT_MAX &&
		pg_encoding_verifymbstr(GetDatabaseEncoding(), body, (int) len) == (int) len;
}

/*
 * Parse a response body into jsonb with PostgreSQL's parser (numbers keep
 * their precision).  Malformed JSON (including bytes that are not valid
 * in the database encoding) is an FDW error naming the server, not the
 * jsonb input error; a \u0000 where nuls is NULL keeps SQLSTATE 22021.
 * nuls: see PgpolyJsonbFromStore.
 */
Datum
ElasticParseJsonb(PgpolyConnection *conn, List **nuls, const char *body,
				  size_t len, const char *what)
{
	MemoryContext cxt = CurrentMemoryContext;
	Datum		result = (Datum) 0;

	PG_TRY();
	{
		result = PgpolyJsonbFromStore(body, len, nuls);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		const char *why;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		/* a character the database encoding lacks: not a malformed answer */
		if (edata->sqlerrcode == ERRCODE_UNTRANSLATABLE_CHARACTER)
			ReThrowError(edata);
		/* PostgreSQL's JSON errors quote the body too. */
		why = edata->detail ? edata->detail : edata->message;
		ereport(ERROR,
				(errcode(nul_in_valid_text(edata, body, len) ?
						 ERRCODE_CHARACTER_NOT_IN_REPERTOIRE : ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("Elasticsearch server \"%s\" at %s sent a malformed %s",
						conn->servername, conn->target, what),
				 errdetail("%s; the response (%zu bytes) begins: %s",
						   PgpolyHttpExcerpt(conn, why, strlen(why)),
						   len, PgpolyHttpExcerpt(conn, body, len))));
	}
	PG_END_TRY();
	return result;
}

/* ----------------------------------------------------------------
 *		Mappings
 * ----------------------------------------------------------------
 */

/* The cached field at path, or NULL. */
static ElasticMappedField *
mapped_field(ElasticMappingCache *m, const char *path)
{
	ListCell   *lc;

	foreach(lc, m->fields)
		if (strcmp(((ElasticMappedField *) lfirst(lc))->path, path) == 0)
			return lfirst(lc);
	return NULL;
}

/*
 * The ignore_above of a keyword mapping def, or -1: "strings longer than
 * the ignore_above setting will not be indexed or stored"
 * (ignore-above.html), counted in characters (a Java String's length:
 * UTF-16 code units).
 */
static int
mapped_limit(json_t *def)
{
	json_t	   *v = json_object_get(def, "ignore_above");
	const char *type = json_string_value(json_object_get(def, "type"));

	if (v == NULL || (type && strcmp(type, "keyword") != 0))
		return -1;
	if (json_is_integer(v))
		return (int) Max(Min(json_integer_value(v), INT_MAX), 0);
	if (json_is_string(v))
		return Max(atoi(json_string_value(v)), 0);
	return 0;					/* unreadable: trust no value */
}

/* The smaller of two ignore_above limits (-1: none). */
static int
min_limit(int a, int b)
{
	if (a < 0)
		return b;
	if (b < 0)
		return a;
	return Min(a, b);
}

/*
 * Whether def indexes an explicit JSON null as a value: "the null_value
 * parameter allows you to replace explicit null values with the specified
 * value so that it can be indexed and searched" (null-value.html); the
 * _source keeps the null.
 */
static bool
has_null_value(json_t *def)
{
	json_t	   *v = json_object_get(def, "null_value");

	return v != NULL && !json_is_null(v);
}

/*
 * Whether def keeps documents whose value it cannot parse, indexing none:
 * "the malformed field is not indexed, but other fields in the document
 * are processed normally" (ignore-malformed.html), so the _source holds a
 * value (3000000000 in an integer field, a date in another format) that a
 * term, range, exists or sort does not see.
 */
static bool
has_ignore_malformed(json_t *def)
{
	json_t	   *v = json_object_get(def, "ignore_malformed");

	return json_is_true(v) ||
		(json_is_string(v) && strcmp(json_string_value(v), "true") == 0);
}

/*
 * Whether the field types of type take ignore_malformed: "numeric, boolean,
 * date, date_nanos, geo_point, geo_shape, ip" (ignore-malformed.html; the
 * numeric types of number.html and unsigned_long).
 */
static bool
takes_ignore_malformed(const char *type)
{
	static const char *const types[] = {
		"long", "integer", "short", "byte", "double", "float", "half_float",
		"scaled_float", "unsigned_long", "boolean", "date", "date_nanos",
		"geo_point", "geo_shape", "ip"
	};

	for (int i = 0; i < lengthof(types); i++)
		if (type && strcmp(type, types[i]) == 0)
			return true;
	return false;
}

/*
 * Whether def (a field's mapping, of type type) keeps documents whose
 * value it cannot parse: its own ignore_malformed parameter, or else the
 * index's index.mapping.ignore_malformed (index_default), which applies to
 * the field types that take the parameter ("the index.mapping.ignore_malformed
 * setting can be set on the index level to ignore malformed content
 * globally across all allowed mapping types", ignore-malformed.html).
 */
static bool
field_ignores_malformed(json_t *def, const char *type, bool index_default)
{
	if (json_object_get(def, "ignore_malformed") != NULL)
		return has_ignore_malformed(def);
	return index_default && takes_ignore_malformed(type);
}

/*
 * Record one index's mapping def of leaf field path: its type (as_type if
 * not NULL; a field the indexes map differently gets type "", one with a
 * normalizer "normalized keyword"), and whether it is text with a
 * .keyword keyword subfield without a normalizer.  malformed_default is
 * the index's index.mapping.ignore_malformed.  Called in
 * TopMemoryContext.
 */
static void
note_field(ElasticMappingCache *m, const char *path, json_t *def, const char *as_type,
		   bool malformed_default)
{
	const char *type = as_type ? as_type : json_string_value(json_object_get(def, "type"));
	json_t	   *kw = json_object_get(json_object_get(def, "fields"), "keyword");
	const char *kwtype = json_string_value(json_object_get(kw, "type"));
	bool		keyword = as_type == NULL && kwtype && strcmp(kwtype, "keyword") == 0 &&
		json_object_get(kw, "normalizer") == NULL &&
		!json_is_false(json_object_get(kw, "index"));
	int			ignore_above = mapped_limit(def);
	int			kw_ignore_above = mapped_limit(kw);
	bool		null_value = has_null_value(def) || has_null_value(kw);
	ElasticMappedField *f = mapped_field(m, path);

	if (type == NULL)
		type = "object";
	/* a normalizer (lowercase ...) makes a keyword compare other than SQL */
	if (json_object_get(def, "normalizer") != NULL)
		type = "normalized keyword";
	if (f == NULL)
	{
		f = palloc0(sizeof(ElasticMappedField));
		f->path = pstrdup(path);
		f->type = pstrdup(type);
		f->keyword = keyword;
		f->ignore_above = f->kw_ignore_above = -1;
		m->fields = lappend(m->fields, f);
	}
	else if (strcmp(f->type, type) != 0)
		f->type[0] = '\0';
	f->keyword = f->keyword && keyword;
	f->ignore_above = min_limit(f->ignore_above, ignore_above);
	f->kw_ignore_above = min_limit(f->kw_ignore_above, kw_ignore_above);
	f->null_value = f->null_value || null_value;
	f->ignore_malformed = f->ignore_malformed ||
		field_ignores_malformed(def, json_string_value(json_object_get(def, "type")),
								malformed_default);
	f->indexes++;
}

/*
 * Record the fields def (a field's mapping, or one of its multi-fields)
 * copies its values into: "the original _source field will not be
 * modified to show the copied values" (copy-to.html), so such a target
 * indexes values its _source lacks.
 */
static void
note_copy_to(ElasticMappingCache *m, json_t *def)
{
	json_t	   *to = json_object_get(def, "copy_to");
	size_t		i;
	json_t	   *t;

	if (json_is_string(to))
		m->hidden = lappend(m->hidden, pstrdup(json_string_value(to)));
	json_array_foreach(to, i, t)
	{
		if (json_is_string(t))
			m->hidden = lappend(m->hidden, pstrdup(json_string_value(t)));
	}
}

/*
 * Record the leaf fields of one index's "properties" object under prefix.
 * The fields of a nested object are searched only by a nested query, and
 * a field mapped with "index": false not at all: they get types no column
 * compares through.  Called in TopMemoryContext: the cache lives as long
 * as the connection.
 */
static void
walk_properties(ElasticMappingCache *m, json_t *props, const char *prefix,
				bool nested, bool malformed_default)
{
	const char *key;
	json_t	   *def;

	json_object_foreach(props, key, def)
	{
		size_t		keylen = strlen(key);
		char	   *path = psprintf("%s%s", prefix,
									PgpolyStoreToServer(key, &keylen, "mapping field name"));
		json_t	   *sub = json_object_get(def, "properties");
		const char *type = json_string_value(json_object_get(def, "type"));
		const char *subname;
		json_t	   *subdef;

		note_copy_to(m, def);
		json_object_foreach(json_object_get(def, "fields"), subname, subdef)
			note_copy_to(m, subdef);
		if (json_is_object(sub))
		{
			char	   *sub_prefix = psprintf("%s.", path);

			walk_properties(m, sub, sub_prefix,
							nested || (type && strcmp(type, "nested") == 0),
							malformed_default);
			pfree(sub_prefix);
		}
		else if (nested)
			note_field(m, path, def, "in nested", malformed_default);
		else if (json_is_false(json_object_get(def, "index")))
			note_field(m, path, def, "not indexed", malformed_default);
		else
			note_field(m, path, def, NULL, malformed_default);
		pfree(path);
	}
}

/*
 * Whether the GET index answer def of one index sets (or defaults)
 * index.mapping.ignore_malformed to true: settings holds what the index
 * sets, defaults (include_defaults) what it does not, such as the true
 * that logsdb indices default to.  A setting's value is a string.
 */
static bool
index_ignores_malformed(json_t *def)
{
	static const char *const sections[] = {"settings", "defaults"};

	for (int i = 0; i < lengthof(sections); i++)
	{
		json_t	   *v = json_object_get(json_object_get(json_object_get(
							json_object_get(def, sections[i]), "index"), "mapping"),
										"ignore_malformed");

		if (v != NULL)
			return json_is_true(v) ||
				(json_is_string(v) && strcmp(json_string_value(v), "true") == 0);
	}
	return false;
}

/*
 * Fetch the mappings of index, and each index's index.mapping.ignore_malformed
 * (a setting, not in the mapping), into a new cache entry: one GET index
 * request (indices-get-index.html) whose answer filter_path
 * (common-options.html) cuts to those; settings.index.uuid, which every
 * index has, keeps an index whose mapping is empty in the answer.
 */
static ElasticMappingCache *
fetch_mapping(PgpolyConnection *conn, const char *index)
{
	PgpolyHttpResponse resp;
	char	   *path = ElasticIndexPath(index,
										"?include_defaults=true&filter_path=*.mappings,"
										"*.settings.index.uuid,"
										"*.settings.index.mapping.ignore_malformed,"
										"*.defaults.index.mapping.ignore_malformed");
	json_t	   *doc;
	const char *name;
	json_t	   *def;
	ElasticMappingCache *m;
	MemoryContext old;

	ElasticRequestOk(conn, "GET", path, NULL, 0, index, &resp);
	doc = PgpolyJsonParse(conn, resp.body, resp.len, "mapping");
	m = MemoryContextAllocZero(TopMemoryContext, sizeof(ElasticMappingCache));
	m->index = MemoryContextStrdup(TopMemoryContext, index);
	/* Several indexes (a pattern or alias): a field is known in all or none. */
	old = MemoryContextSwitchTo(TopMemoryContext);
	json_object_foreach(doc, name, def)
	{
		json_t	   *props = json_object_get(json_object_get(def, "mappings"), "properties");
		json_t	   *runtime = json_object_get(json_object_get(def, "mappings"), "runtime");
		const char *rname;
		json_t	   *rdef;

		m->indexes++;
		if (json_is_object(props))
			walk_properties(m, props, "", false, index_ignores_malformed(def));

		/*
		 * A runtime field is searched through its script, and one named as
		 * a mapped field shadows it (runtime-override-values.html).
		 */
		json_object_foreach(runtime, rname, rdef)
			m->hidden = lappend(m->hidden, pstrdup(rname));
	}
	MemoryContextSwitchTo(old);
	m->lxid = MyProc->lxid;
	return m;
}

/* Whether path is a copy_to target or a runtime field of m. */
static bool
hidden_field(ElasticMappingCache *m, const char *path)
{
	ListCell   *lc;

	foreach(lc, m->hidden)
		if (strcmp(lfirst(lc), path) == 0)
			return true;
	return false;
}

/*
 * The mapping of tbl's index, read in this transaction: a cached mapping
 * read in an earlier one is read again, since an alias may have moved to
 * another index, an index may have been re-created, a pattern may reach
 * a new index (one GET index request per transaction that plans or runs a
 * scan whose pushed clauses depend on it).
 */
static ElasticMappingCache *
current_mapping(ElasticTable *tbl)
{
	PgpolyConnection *conn = ElasticGetConnection(tbl);
	ElasticHandle *h = ElasticConnHandle(conn);
	ElasticMappingCache *m;
	ListCell   *lc;
	MemoryContext old;

	foreach(lc, h->mappings)
	{
		m = lfirst(lc);
		if (strcmp(m->index, tbl->index) != 0)
			continue;
		if (m->lxid == MyProc->lxid)
			return m;
		h->mappings = foreach_delete_current(h->mappings, lc);
		free_mapping(m);
		break;
	}
	m = fetch_mapping(conn, tbl->index);
	old = MemoryContextSwitchTo(TopMemoryContext);
	h->mappings = lappend(h->mappings, m);
	MemoryContextSwitchTo(old);
	return m;
}

/*
 * Forget the mappings cached for conn: a request sent through
 * pgpoly.elastic_request may have changed them within the transaction.
 */
static void
forget_mappings(PgpolyConnection *conn)
{
	ElasticHandle *h = ElasticConnHandle(conn);
	ListCell   *lc;

	foreach(lc, h->mappings)
		free_mapping(lfirst(lc));
	list_free(h->mappings);
	h->mappings = NIL;
}

/*
 * The type the index mapping gives field ("keyword", "date" ...), or NULL
 * when some index the table reads does not map it (Elasticsearch searches
 * no unmapped field), the indexes map it with different types, or what it
 * indexes is not what its _source holds (a copy_to target, a runtime
 * field, a field with ignore_malformed, its own or the index's: its
 * _source may hold values it did not index); *facts gets what else decides how it
 * compares (ignore_above, null_value, a .keyword subfield).  The mapping is read once per
 * transaction (this is plan time: a network call).
 */
const char *
ElasticFieldType(ElasticTable *tbl, const char *field, ElasticFieldFacts *facts)
{
	ElasticMappingCache *m = current_mapping(tbl);
	ElasticMappedField *f = mapped_field(m, field);

	memset(facts, 0, sizeof(*facts));
	facts->ignore_above = facts->kw_ignore_above = -1;
	if (f == NULL || f->indexes != m->indexes || f->type[0] == '\0' ||
		f->ignore_malformed || hidden_field(m, field))
		return NULL;
	facts->has_keyword = f->keyword;
	facts->ignore_above = f->ignore_above;
	facts->kw_ignore_above = f->kw_ignore_above;
	facts->null_value = f->null_value;
	return f->type;
}

/*
 * What the mapping says of the fields (column fields, String) a plan's
 * pushed clauses and sorts compare through, as a string: the plan records
 * it and the scan compares it with the mapping read in its transaction.
 */
char *
ElasticMappingFacts(ElasticTable *tbl, List *fields)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, fields)
	{
		ElasticFieldFacts facts;
		const char *type = ElasticFieldType(tbl, strVal(lfirst(lc)), &facts);

		appendStringInfo(&buf, "%s=%s,%d,%d,%d,%d;", strVal(lfirst(lc)),
						 type ? type : "-", facts.has_keyword, facts.ignore_above,
						 facts.kw_ignore_above, facts.null_value);
	}
	return buf.data;
}

/* ----------------------------------------------------------------
 *		PIT and scroll contexts
 * ----------------------------------------------------------------
 */

/*
 * The request closing a PIT or scroll context id: its path, and its body
 * in *body.
 *	- Elasticsearch PIT: DELETE /_pit {"id": "..."}
 *	- OpenSearch PIT: DELETE /_search/point_in_time {"pit_id": ["..."]}
 *	  (answers 200 with {"pits": [{"pit_id", "successful"}]})
 *	- scroll: DELETE /_search/scroll {"scroll_id": "..."}
 */
static const char *
close_request(PgpolyConnection *conn, bool pit, const char *id, StringInfo body)
{
	bool		os_pit = pit && ElasticConnHandle(conn)->pit_api == EPIT_OPENSEARCH;

	initStringInfo(body);
	appendStringInfoString(body, !pit ? "{\"scroll_id\":" :
						   os_pit ? "{\"pit_id\":[" : "{\"id\":");
	escape_json(body, id);
	if (os_pit)
		appendStringInfoChar(body, ']');
	appendStringInfoChar(body, '}');
	return !pit ? "/_search/scroll" : os_pit ? "/_search/point_in_time" : "/_pit";
}

/* Whether an answer to a close says the context is gone (404: already). */
static bool
close_answered(long status)
{
	return status == 404 || (status >= 200 && status <= 299);
}

/* The WARNING of a context of index a scan could not close: why says why. */
static void
warn_not_closed(PgpolyConnection *conn, bool pit, const char *id, const char *index,
				const char *why)
{
	ereport(WARNING,
			(errcode(ERRCODE_FDW_ERROR),
			 errmsg("could not close the %s of index \"%s\" on Elasticsearch server \"%s\"",
					pit ? "point in time" : "scroll context", index, conn->servername),
			 errdetail("%s; %s id \"%s\".", why, pit ? "point in time" : "scroll",
					   PgpolyHttpExcerpt(conn, id, strlen(id))),
			 errhint("The rows were all read. Elasticsearch frees the %s when its keep_alive (%s) elapses.",
					 pit ? "point in time" : "scroll context", ELASTIC_KEEP_ALIVE)));
}

/*
 * Send the close of context id (a PIT, or a scroll when not pit): its path
 * in *path, the answer in *resp.  false, with what failed in *failure,
 * when the request failed at transport (SQLSTATE class 08: the store went
 * down, timeout_ms), which is caught: its connection stays marked in its
 * request (conn->busy) and is reopened at its next use
 * (PgpolyEnsureConnected).  The request is built inside too: a PIT's close
 * depends on the server's version, and a connection an earlier failed
 * close left is reopened there (ElasticConnHandle), which fails as the
 * request would.  Any other ERROR (a cancel, statement_timeout) is raised.
 */
static bool
try_close(PgpolyConnection *conn, bool pit, const char *id, const char **path,
		  PgpolyHttpResponse *resp, char **failure)
{
	StringInfoData body;
	MemoryContext cxt = CurrentMemoryContext;

	/* an ERROR zeroes them (errfinish); the caller may hold interrupts */
	int			holdoff = InterruptHoldoffCount;
	int			cancel_holdoff = QueryCancelHoldoffCount;
	ErrorData  *edata = NULL;

	PG_TRY();
	{
		*path = close_request(conn, pit, id, &body);
		ElasticRequest(conn, "DELETE", *path, body.data, body.len, NULL, NULL, resp);
		pfree(body.data);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (ERRCODE_TO_CATEGORY(edata->sqlerrcode) != ERRCODE_CONNECTION_EXCEPTION)
			PG_RE_THROW();
		FlushErrorState();
		InterruptHoldoffCount = holdoff;
		QueryCancelHoldoffCount = cancel_holdoff;
	}
	PG_END_TRY();
	if (edata == NULL)
		return true;
	*failure = edata->detail ? psprintf("%s: %s", edata->message, edata->detail) :
		pstrdup(edata->message);
	FreeErrorData(edata);
	return false;
}

/*
 * Close context id (a PIT, or a scroll when not pit) of a scan of index
 * that needs it no more (close_request).  Its rows are read, so a close
 * that fails does not fail the statement: Elasticsearch frees the context
 * itself when keep_alive elapses (close point in time API: "keeping points
 * in time has a cost; close them as soon as they are no longer required"),
 * so, as postgres_fdw does with the cleanup it cannot finish at abort
 * (pgfdw_abort_cleanup), it is a WARNING: an HTTP error status (but 404:
 * the context is gone already, which is success), or a transport failure
 * (try_close).  Any other ERROR (a cancel, statement_timeout) is raised.
 */
void
ElasticCloseContext(PgpolyConnection *conn, bool pit, const char *id, const char *index)
{
	PgpolyHttpResponse resp;
	const char *path;
	char	   *failure;

	if (!try_close(conn, pit, id, &path, &resp, &failure))
		warn_not_closed(conn, pit, id, index, failure);
	else if (!close_answered(resp.status))
	{
		char	   *type;
		char	   *reason;
		char	   *errindex;
		char	   *parse;

		error_type_reason(conn, resp.body, resp.len, &type, &reason, &errindex, &parse);
		warn_not_closed(conn, pit, id, index,
						psprintf("DELETE %s at %s answered %ld%s%s%s%s", path, conn->target,
								 resp.status, type ? ": " : "", type ? type : "",
								 reason ? ": " : "", reason ? reason : ""));
	}
}

/*
 * Note that a scan on conn opened context id (a PIT, or a scroll when not
 * pit), or that the context t it noted goes on as id (a continuation may
 * carry a new id).  Returns the entry, which the scan passes to
 * ElasticUntrackContext() when it closes the context itself, or to
 * ElasticQueueClose() when it is gone.
 */
ElasticOpenContext *
ElasticTrackContext(PgpolyConnection *conn, bool pit, const char *id,
					ElasticOpenContext *t)
{
	static bool exit_registered = false;
	MemoryContext old;

	if (QueueMemory == NULL)
		QueueMemory = AllocSetContextCreate(TopMemoryContext, "pgpoly elastic open contexts",
											ALLOCSET_SMALL_SIZES);
	if (!exit_registered)
	{
		before_shmem_exit(close_at_exit, (Datum) 0);
		exit_registered = true;
	}
	old = MemoryContextSwitchTo(QueueMemory);
	if (t == NULL)
	{
		t = palloc0(sizeof(ElasticOpenContext));
		t->key = conn->key;
		t->conn = conn;
		t->pit = pit;
		OpenContexts = lappend(OpenContexts, t);
	}
	else
		pfree(t->id);
	t->id = pstrdup(id);
	MemoryContextSwitchTo(old);
	return t;
}

/* Forget entry t (its context is closed, or cannot be any more). */
void
ElasticUntrackContext(ElasticOpenContext *t)
{
	if (t == NULL)
		return;
	OpenContexts = list_delete_ptr(OpenContexts, t);
	pfree(t->id);
	pfree(t);
}

/*
 * t's scan is gone without closing it (an error, a cancel, a cursor
 * dropped): close it at the next chance.  Called while the scan's memory
 * is released: no network I/O, no ereport.
 */
void
ElasticQueueClose(ElasticOpenContext *t)
{
	if (t->closed)
		ElasticUntrackContext(t);	/* closed at exit already */
	else
		t->queued = true;
}

/* The first context queued for conn's server and user mapping, or NULL. */
static ElasticOpenContext *
first_queued(PgpolyConnection *conn)
{
	ListCell   *lc;

	foreach(lc, OpenContexts)
	{
		ElasticOpenContext *t = lfirst(lc);

		if (t->queued && memcmp(&t->key, &conn->key, sizeof(PgpolyConnKey)) == 0)
			return t;
	}
	return NULL;
}

/*
 * Close the contexts queued for conn's server and user mapping, before a
 * statement's own request on it.  Each is forgotten first, and one the
 * store refuses (an HTTP error) is left to keep_alive with a DEBUG1 line:
 * the statement has nothing to do with it and must not fail for it.  A
 * transport failure (the store down, a timeout, a cancel) is the ERROR it
 * is: the statement's own request would meet it too.
 */
void
ElasticSendQueuedCloses(PgpolyConnection *conn)
{
	ElasticOpenContext *t;

	while ((t = first_queued(conn)) != NULL)
	{
		PgpolyHttpResponse resp;
		const char *path;
		char	   *failure;
		char	   *id = pstrdup(t->id);
		bool		pit = t->pit;

		ElasticUntrackContext(t);
		if (!try_close(conn, pit, id, &path, &resp, &failure))
		{
			/* not the caller's failure: it reopens the connection */
			ereport(DEBUG1,
					(errmsg_internal("pgpoly: Elasticsearch server \"%s\": the close of a context failed (%s); it expires after keep_alive",
									 conn->servername, failure)));
			pfree(id);
			break;
		}
		if (!close_answered(resp.status))
			ereport(DEBUG1,
					(errmsg_internal("pgpoly: Elasticsearch server \"%s\" refused to close a context (HTTP %ld); it expires after keep_alive",
									 conn->servername, resp.status)));
		pfree(id);
	}
}

/*
 * Close context t on its connection, if that is open and not in the middle
 * of a request (reconnecting needs the catalogs), answered by deadline,
 * raising nothing (PgpolyHttpTryRequest): at transaction abort and at
 * backend exit, where an ERROR would escalate (to FATAL once proc_exit has
 * begun) and a dead store must not hold the backend (a context not closed
 * expires after keep_alive).  A request not answered leaves the connection
 * in it, which the core then closes (and this skips).  Returns whether the
 * store answered that the context is gone.
 */
static bool
close_quietly(ElasticOpenContext *t, TimestampTz deadline)
{
	PgpolyConnection *conn = t->conn;
	StringInfoData body;
	const char *path;
	bool		ok;

	if (conn == NULL || conn->handle == NULL || conn->busy)
		return false;
	path = close_request(conn, t->pit, t->id, &body);
	ok = close_answered(PgpolyHttpTryRequest(conn, ElasticConnHandle(conn)->http,
											 "DELETE", path, body.data, deadline));
	pfree(body.data);
	return ok;
}

/*
 * PgpolyStore.xact_end: after an abort, close the contexts its scans left
 * (queued as their memory was released) on conn, by short requests that
 * never ERROR (close_quietly) and share one bound of
 * ELASTIC_CLOSE_TIMEOUT_MS, however many there are; the first failure
 * leaves the rest to the next request or the backend's exit.  After a
 * commit too: a subtransaction's abort (ROLLBACK TO SAVEPOINT, an
 * exception block) queues those of the scans it dropped.
 */
static void
elastic_xact_end(PgpolyConnection *conn, bool commit)
{
	TimestampTz deadline = PgpolyDeadline(ELASTIC_CLOSE_TIMEOUT_MS);
	ElasticOpenContext *t;

	while ((t = first_queued(conn)) != NULL && close_quietly(t, deadline))
		ElasticUntrackContext(t);
}

/*
 * before_shmem_exit: the backend exits; close every context still open,
 * queued or of a scan that is still running (a FATAL in mid-scan: the
 * transaction is aborted after this runs), as close_quietly does, all
 * within one bound of ELASTIC_CLOSE_TIMEOUT_MS.  An entry of a live scan
 * stays, marked closed, for its scan to release.
 */
static void
close_at_exit(int code, Datum arg)
{
	TimestampTz deadline = PgpolyDeadline(ELASTIC_CLOSE_TIMEOUT_MS);
	ListCell   *lc;

	foreach(lc, OpenContexts)
	{
		ElasticOpenContext *t = lfirst(lc);

		if (!t->closed)
			(void) close_quietly(t, deadline);
		t->closed = true;
	}
}

/*
 * PgpolyStore.forget: conn's server or user mapping was dropped; no
 * request will close the contexts opened through it (keep_alive expires
 * them): forget them, so that no entry points at the cache entry.
 */
static void
elastic_forget(PgpolyConnection *conn)
{
	ListCell   *lc;

	foreach(lc, OpenContexts)
	{
		ElasticOpenContext *t = lfirst(lc);

		if (memcmp(&t->key, &conn->key, sizeof(PgpolyConnKey)) == 0)
		{
			t->conn = NULL;
			t->closed = true;	/* a live scan releases it */
			if (t->queued)
			{
				OpenContexts = foreach_delete_current(OpenContexts, lc);
				pfree(t->id);
				pfree(t);
			}
		}
	}
}

/* ----------------------------------------------------------------
 *		pgpoly.elastic_request()
 * ----------------------------------------------------------------
 */

/*
 * ERROR unless method is an HTTP token and path a request target without
 * spaces or control bytes: both go into the request line as they are
 * (libcurl sends a custom method verbatim), and a CR or LF there would
 * smuggle headers or a second request past the validated URL.
 */
static void
check_request_line(const char *method, const char *path)
{
	if (method[0] == '\0' || strspn(method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
									 "abcdefghijklmnopqrstuvwxyz0123456789"
									 "!#$%&'*+-.^_`|~") != strlen(method))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("method must be an HTTP method name such as GET, PUT or DELETE")));
	if (path[0] != '/')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("path must start with \"/\"")));
	for (const char *p = path; *p; p++)
		if ((unsigned char) *p <= ' ' || *p == '\x7f')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("path must not contain spaces or control characters"),
					 errhint("Percent-encode them, e.g. %%20 for a space.")));
}

/*
 * Whether a path segment (len bytes at seg, as sent) is one a read may
 * hold: not "." or ".." (libcurl resolves them, so the segments before
 * would not be the request's), nor percent-encoding a NUL, nor, when
 * strict, a leading "_", a "/" or a "\" (a server matching routes on the
 * decoded path would see another endpoint than the one tested here).  Its
 * first decoded bytes go to head (headsize - 1 at most, NUL-terminated;
 * "" for an empty segment), their number to *n.
 */
static bool
read_segment_ok(const char *seg, int len, bool strict, char *head,
				int headsize, int *n)
{
	bool		encoded = false;
	int			k = 0;				/* decoded bytes */

	for (int i = 0; i < len; i++, k++)
	{
		char		b = seg[i];

		if (b == '%' && i + 2 < len &&
			isxdigit((unsigned char) seg[i + 1]) && isxdigit((unsigned char) seg[i + 2]))
		{
			char		hex[3] = {seg[i + 1], seg[i + 2], '\0'};

			b = (char) strtol(hex, NULL, 16);
			encoded = true;
			i += 2;
		}
		if (b == '\0' || (strict && (b == '/' || b == '\\')))
			return false;
		if (k < headsize - 1)
			head[k] = b;
	}
	head[Min(k, headsize - 1)] = '\0';
	*n = k;
	if (strcmp(head, ".") == 0 || strcmp(head, "..") == 0)
		return false;
	if (strict && encoded && head[0] == '_')
		return false;
	return true;
}

/*
 * Whether the query string q ("?a=b&c", or "" or "#..." for none) has a
 * refresh parameter whose value is not "false" (names and values
 * percent-decoded, as the server reads them; "refresh" alone means true).
 */
static bool
query_refreshes(const char *q)
{
	if (*q != '?')
		return false;
	q++;
	while (*q && *q != '#')
	{
		int			len = (int) strcspn(q, "&#");
		int			eq = (int) strcspn(q, "=&#");
		char		name[16];
		char		value[16];
		int			n;

		/* read_segment_ok decodes; a name with a NUL (or "." / "..") is no read */
		if (!read_segment_ok(q, eq, false, name, sizeof(name), &n))
			return true;
		if (n == 7 && strcmp(name, "refresh") == 0)
		{
			if (eq >= len)
				return true;	/* "refresh" alone */
			if (!read_segment_ok(q + eq + 1, len - eq - 1, false, value, sizeof(value), &n) ||
				!(n == 5 && strcmp(value, "false") == 0))
				return true;
		}
		q += len;
		if (*q == '&')
			q++;
	}
	return false;
}

/* A path segment, decoded (its first bytes), and its decoded length. */
typedef struct ReadSegment
{
	char		head[16];
	int			n;
} ReadSegment;

/* Whether segment s is name (of fewer than 16 bytes) */
static bool
segment_is(const ReadSegment *s, const char *name)
{
	return s->n == (int) strlen(name) && strcmp(s->head, name) == 0;
}

/*
 * Whether pgpoly.elastic_request(method, path) only reads the cluster, so
 * that a read-only transaction may send it.  Segments are read decoded.
 * Elasticsearch routes a path that no route spells out by a route with an
 * index name in its place (POST /_search/_bulk is a bulk request with the
 * default index "_search", whose actions name their own indices), so a
 * read is told by all of its segments, not only by the first "_" one:
 *	- GET and HEAD (Elasticsearch answers a HEAD with the GET route), unless
 *	  a segment is _refresh, _flush or _cache (GET /idx/_refresh refreshes
 *	  as POST does), other than a document id after _doc, _source,
 *	  _explain or _termvectors;
 *	- a POST to a search endpoint, the first segment starting with "_" that
 *	  is no index expression (_all, a list with ",", a pattern with "*"):
 *	  _search, _msearch, _count, _mget, _field_caps, _validate, _explain,
 *	  _pit (which opens a point in time), _analyze, _termvectors,
 *	  _mtermvectors, _terms_enum, _rank_eval, _knn_search, _render,
 *	  _scripts/painless/_execute and the simulations of _ingest, followed
 *	  only by what their routes take (_search/scroll[/<id>],
 *	  _search/template, _search/point_in_time (OpenSearch),
 *	  _msearch/template, _validate/query, _explain/<id>,
 *	  _termvectors[/<id>], _render/template[/<id>],
 *	  _ingest[/pipeline][/<id>]/_simulate);
 *	- a DELETE closing a point in time or a scroll: exactly /_pit,
 *	  /_search/scroll[/<id>], /_search/point_in_time[/_all] (not the rest of
 *	  /_search/..., such as OpenSearch's DELETE /_search/pipeline/<id>).
 * Everything else, POST _refresh included, counts as a write.  Of the
 * query string only a refresh parameter counts (GET /idx/_doc/1?refresh,
 * _mget?refresh=true refresh the shards first): one not "false" makes a
 * write.
 */
static bool
request_is_read(const char *method, const char *path)
{
	static const char *const search_endpoints[] = {
		"_search", "_msearch", "_count", "_mget", "_field_caps",
		"_validate", "_explain", "_pit", "_analyze", "_mtermvectors",
		"_terms_enum", "_rank_eval", "_knn_search", NULL
	};
	static const char *const get_writes[] = {
		"_refresh", "_flush", "_cache", NULL
	};
	static const char *const id_endpoints[] = {
		"_doc", "_source", "_explain", "_termvectors", NULL
	};
	static const char *const closes[] = {
		"/_pit", "/_search/scroll", "/_search/point_in_time",
		"/_search/point_in_time/_all", NULL
	};
	size_t		pathlen = strcspn(path, "?#");
	const char *p = path;
	ReadSegment *segs;
	int			nsegs = 0;
	int			endpoint = -1;
	int			tail;
	const ReadSegment *t;
	bool		get;
	bool		post;

	get = pg_strcasecmp(method, "GET") == 0 || pg_strcasecmp(method, "HEAD") == 0;
	post = pg_strcasecmp(method, "POST") == 0;
	if (!get && !post && pg_strcasecmp(method, "DELETE") != 0)
		return false;
	if (query_refreshes(path + pathlen))
		return false;
	for (size_t i = 0; i < pathlen; i++)
		nsegs += path[i] == '/';
	segs = palloc0(sizeof(ReadSegment) * Max(nsegs, 1));
	nsegs = 0;
	while (p < path + pathlen)
	{
		int			len;
		ReadSegment *s = &segs[nsegs++];

		p++;					/* the "/" */
		len = (int) strcspn(p, "/?#");
		if (!read_segment_ok(p, len, !get, s->head, sizeof(s->head), &s->n))
			return false;
		/* (a longer segment is no endpoint a POST may read: refused) */
		if (endpoint < 0 && s->head[0] == '_' && !segment_is(s, "_all") &&
			strpbrk(s->head, ",*") == NULL)
			endpoint = nsegs - 1;
		p += len;
	}
	/* a trailing "/" adds no segment a route sees */
	if (nsegs > 1 && segs[nsegs - 1].n == 0)
		nsegs--;
	if (get)
	{
		for (int k = 0; k < nsegs; k++)
		{
			bool		is_id = false;

			for (int i = 0; k > 0 && id_endpoints[i]; i++)
				is_id |= segment_is(&segs[k - 1], id_endpoints[i]);
			for (int i = 0; !is_id && get_writes[i]; i++)
				if (segment_is(&segs[k], get_writes[i]))
					return false;
		}
		return true;
	}
	if (!post)
	{
		for (int i = 0; closes[i]; i++)
			if (strlen(closes[i]) == pathlen &&
				strncmp(path, closes[i], pathlen) == 0)
				return true;
		/* Elasticsearch 7's DELETE /_search/scroll/<scroll id>: one segment */
		return pathlen > 16 && strncmp(path, "/_search/scroll/", 16) == 0 &&
			memchr(path + 16, '/', pathlen - 16) == NULL;
	}
	if (endpoint < 0)
		return false;
	t = &segs[endpoint];
	tail = nsegs - endpoint - 1;	/* segments after the endpoint */
	if (segment_is(t, "_search"))
		return tail == 0 ||
			(tail == 1 && (segment_is(t + 1, "scroll") ||
						   segment_is(t + 1, "template") ||
						   segment_is(t + 1, "point_in_time"))) ||
			(tail == 2 && segment_is(t + 1, "scroll"));
	if (segment_is(t, "_msearch"))
		return tail == 0 || (tail == 1 && segment_is(t + 1, "template"));
	if (segment_is(t, "_validate"))
		return tail == 1 && segment_is(t + 1, "query");
	if (segment_is(t, "_explain"))
		return tail == 1;
	if (segment_is(t, "_termvectors"))
		return tail <= 1;
	if (segment_is(t, "_render"))
		return (tail == 1 || tail == 2) && segment_is(t + 1, "template");
	if (segment_is(t, "_scripts"))
		return tail == 2 && segment_is(t + 1, "painless") && segment_is(t + 2, "_execute");
	/* simulated pipelines and ingest: nothing is indexed */
	if (segment_is(t, "_ingest"))
		return tail >= 1 && tail <= 3 && segment_is(t + tail, "_simulate") &&
			(tail < 3 || segment_is(t + 1, "pipeline"));
	for (int i = 0; search_endpoints[i]; i++)
		if (segment_is(t, search_endpoints[i]))
			return tail == 0;
	return false;
}

PG_FUNCTION_INFO_V1(pgpoly_elastic_request);

/*
 * pgpoly.elastic_request(server name, method text, path text,
 * body jsonb DEFAULT NULL) RETURNS jsonb: send one request with the
 * server's connection and credentials and return the response body (an
 * Elasticsearch error body too: it carries "status").  For index
 * management (PUT /index with mappings, DELETE /index, _refresh).  It
 * bypasses foreign-table privileges, so it is revoked from PUBLIC and
 * needs USAGE on the server.  Not STRICT, because a NULL body means "no
 * body"; the other arguments must not be NULL.
 */
Datum
pgpoly_elastic_request(PG_FUNCTION_ARGS)
{
	ForeignServer *server;
	char	   *method;
	char	   *path;
	char	   *body;
	PgpolyConnection *conn;
	PgpolyHttpResponse resp;
	bool		is_read;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("server, method and path of pgpoly.elastic_request must not be NULL")));
	server = GetForeignServerByName(NameStr(*PG_GETARG_NAME(0)), false);
	method = text_to_cstring(PG_GETARG_TEXT_PP(1));
	path = text_to_cstring(PG_GETARG_TEXT_PP(2));
	body = PG_ARGISNULL(3) ? NULL :
		DatumGetCString(DirectFunctionCall1(jsonb_out, PG_GETARG_DATUM(3)));
	if (strcmp(GetForeignDataWrapper(server->fdwid)->fdwname, "pgpoly_elastic") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("server \"%s\" does not use the pgpoly_elastic wrapper",
						server->servername)));
	check_request_line(method, path);
	PgpolyCheckServerUsage(server);
	is_read = request_is_read(method, path);
	if (!is_read)
		PreventCommandIfReadOnly(psprintf("%s %s", method, path));
	conn = PgpolyGetConnection(&ElasticStore, server,
							   PgpolyGetUserMapping(GetUserId(), server->serverid));
	ElasticRequest(conn, method, path, body, body ? strlen(body) : 0, NULL, NULL, &resp);
	if (!is_read)
		forget_mappings(conn);
	if (resp.len == 0)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(ElasticParseJsonb(conn, NULL, resp.body, resp.len, "response"));
}
