/*-------------------------------------------------------------------------
 *
 * elastic_scan.c
 *		  pgpoly_elastic scan execution: paging, type mapping, overlay.
 *
 * Paging, chosen when the scan starts:
 *	- single: a pushed LIMIT within index.max_result_window: one _search
 *	  with size;
 *	- an ids query: a first plain page of one hit more than the ids, so
 *	  that it is the only one unless an _id names documents on two shards
 *	  (custom routing), when paging goes on as below;
 *	- otherwise a first plain page of fetch_size; if it is not full it was
 *	  the whole result (one round trip).  If it is full the scan restarts
 *	  under a point in time with search_after on the sort values plus a
 *	  tiebreaker: Elasticsearch >= 7.12 (POST /<index>/_pit, _shard_doc)
 *	  and OpenSearch >= 2.4 (its own POST /<index>/_search/point_in_time;
 *	  _id before 3.3, _shard_doc from 3.3), or else under a scroll
 *	  context (ES 7.10/7.11, OpenSearch < 2.4): result sets are unbounded
 *	  by max_result_window.  elastic_conn.c cites the API pages.
 * A page under a PIT or a scroll must not end with the hit the page before
 * ended with: a store answering the next page with the same page again (a
 * cache in front of the cluster) is an ERROR before any row of it is
 * returned, not the same rows again until statement_timeout.
 * PIT and scroll contexts are closed when the scan ends; if it is aborted
 * the release of its memory queues the close, sent at the end of the
 * transaction or else at the next request on the same connection;
 * the backend's exit closes those still open (elastic_conn.c; keep_alive
 * expires them anyway).
 *
 * Each page is parsed once with PostgreSQL's jsonb parser; a hit's _source
 * becomes a jsonb datum by copying its container, and columns are read
 * from it with the core's PgpolyJsonbFieldText() and the column's
 * PgpolyConv, under the core's fixed settings (one scope per row).  Dates
 * may be ISO text or epoch milliseconds.  A value that does not convert is
 * an ERROR naming the document id and field; so is an array or object read
 * by a scalar column (PgpolyJsonbFieldValues: Elasticsearch matches a
 * pushed term on any element, so no single value could stand for the
 * field; an array column reads a single value as an array of one), and a
 * string with a NUL
 * character (\u0000) that a column would read (22021), while one in a
 * field no column reads is ignored.
 *
 * Read-your-writes: the transaction's buffered writes to the table hide
 * the remote documents they replace; the rows they create are returned
 * after the remote ones (the caller rechecks the pushed quals on them).
 * A write replaces the hits of its _id in its index (an INSERT's: any
 * index) with its routing: another document with that _id, in another
 * index of an alias or under another routing, stays visible.
 *
 * Memory: the scan lives in its own context; each page in a page context
 * reset per page, each row in a row context reset per row.
 *
 * fdw/elastic_scan.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "elastic.h"

typedef enum ElasticPaging
{
	PAGING_FIRST,				/* plain first page, maybe the only one */
	PAGING_SINGLE,				/* one request, from/size */
	PAGING_PIT,
	PAGING_SCROLL
} ElasticPaging;

/*
 * Buffered writes by document id.  An _id is unique per shard of one index
 * only: writes of one id to two indices (of an alias) or with two routings
 * write two documents, each kept as its own target.
 */
struct ElasticOverlay
{
	HTAB	   *map;			/* OverlayEntry by id */
	MemoryContext cxt;			/* the overlay's memory */
};

typedef struct OverlayEntry
{
	PgpolyKeyRef id;			/* hash key (PgpolyKeyTable): the id of
								 * the last write of targets */
	List	   *targets;		/* ElasticWrite *: the last write of each
								 * document (index, routing) of the id */
} OverlayEntry;

struct ElasticScan
{
	ElasticTable *tbl;
	PgpolyConnection *conn;
	ElasticQuerySpec *spec;
	ElasticParamValue *params;
	bool	   *fetched;		/* per column: its field is in what the
								 * request asks of _source (fetched_columns) */
	MemoryContext cxt;			/* the scan */
	MemoryContext page_cxt;
	MemoryContext row_cxt;
	MemoryContextCallback abort_cb;
	ElasticPaging paging;
	char	   *context_id;		/* open PIT or scroll id, or NULL */
	ElasticOpenContext *tracked;	/* its entry (elastic_conn.c) */
	char	   *search_after;	/* PIT: JSON array of the last hit's sort */
	char	   *last_hit;		/* scroll: [_index, _id] of the last hit */
	int			page_size;
	JsonbContainer *hits;		/* current page's hits array */
	List	   *nuls;			/* paths of the page's strings with a NUL */
	int			nhits;
	int			pos;
	bool		last_page;
	bool		remote_done;
	int64		returned;		/* remote rows returned */
	/* the row returned last (ElasticScanHit) */
	char	   *last_id;		/* its document id */
	JsonbContainer *row_hit;	/* its hit (a remote row), or NULL */
	int			row_hitno;		/* and the hit's number in the page */
	ElasticWrite *row_write;	/* the pending write (an overlay row) */
	int64		last_seq_no;	/* spec->seq_no, a remote row: its version */
	int64		last_primary_term;
	int			requests;
	/* read-your-writes */
	ElasticOverlay *overlay;
	List	   *overlay_ids;	/* char *, first-write order */
	ListCell   *overlay_next;
	int			overlay_target; /* in the targets of overlay_next's id */
	bool		overlay_phase;
};

static void fetch_page(ElasticScan *scan);
static void note_last_hit(ElasticScan *scan);
static char *hit_routing(ElasticScan *scan, JsonbContainer *hit, int hitno,
						 const char *id);
static char *hit_index(ElasticScan *scan, JsonbContainer *hit, int hitno,
					   const char *id);
static void routing_column(ElasticTable *tbl, const char *routing,
						   Datum *values, bool *nulls);

/* Memory callback: an aborted scan queues its open context for closing. */
static void
scan_released(void *arg)
{
	ElasticScan *scan = arg;

	if (scan->tracked)
		ElasticQueueClose(scan->tracked);
	scan->tracked = NULL;
	scan->context_id = NULL;
}

/*
 * An empty overlay in cxt: document id -> the last buffered write of each
 * document (index, routing) of the id.  The ids are the
 * transaction's (or anyone's, for ids the index assigned or a SELECT
 * copied): a seeded key table (keyhash.c), so that ids chosen to collide
 * cannot make the overlay quadratic.
 */
ElasticOverlay *
ElasticOverlayCreate(MemoryContext cxt)
{
	ElasticOverlay *ov = MemoryContextAlloc(cxt, sizeof(ElasticOverlay));

	ov->map = PgpolyKeyTable("pgpoly elastic overlay", sizeof(OverlayEntry), cxt);
	ov->cxt = cxt;
	return ov;
}

/*
 * Whether a write to index/routing and a document in index2/routing2 (a
 * hit, or another write) are the same document.  A NULL index is the
 * table's index option (an INSERT): where an alias writes, not known here;
 * it stands for any index.  A NULL routing is none (the _id routes).
 */
static bool
same_document(const char *index, const char *routing, const char *index2,
			  const char *routing2)
{
	if (routing != routing2 && (!routing || !routing2 || strcmp(routing, routing2) != 0))
		return false;
	return !index || !index2 || strcmp(index, index2) == 0;
}

/*
 * Make w the last write of its id, and of its document, in ov; true if the
 * id is new.  The entry's key points at the id of the write it keeps,
 * which the caller keeps as long as the overlay.
 */
bool
ElasticOverlayAdd(ElasticOverlay *ov, ElasticWrite *w)
{
	PgpolyKeyRef ref = {w->id, strlen(w->id)};
	bool		found;
	OverlayEntry *e = hash_search(ov->map, &ref, HASH_ENTER, &found);
	MemoryContext old = MemoryContextSwitchTo(ov->cxt);
	ListCell   *lc;

	if (!found)
		e->targets = NIL;
	e->id.key = w->id;			/* the same bytes, in the write kept */
	foreach(lc, e->targets)
	{
		ElasticWrite *t = lfirst(lc);

		if (same_document(t->index, t->routing, w->index, w->routing))
			e->targets = foreach_delete_current(e->targets, lc);
	}
	e->targets = lappend(e->targets, w);
	MemoryContextSwitchTo(old);
	return !found;
}

/*
 * Whether the buffered writes in ov leave a document of id (a NUL-free
 * string) they wrote: the last write of one of its documents is not a
 * DELETE.
 */
bool
ElasticOverlayLive(ElasticOverlay *ov, const char *id)
{
	OverlayEntry *e = PgpolyKeyTableFind(ov->map, id, strlen(id));
	ListCell   *lc;

	foreach(lc, e ? e->targets : NIL)
		if (((ElasticWrite *) lfirst(lc))->op != EWRITE_DELETE)
			return true;
	return false;
}

/*
 * Whether the last buffered write in ov of the document id has in index
 * (concrete) with routing (NULL: none) is a DELETE: the document is gone
 * for the transaction, although Elasticsearch still has it.
 */
bool
ElasticOverlayDeleted(ElasticOverlay *ov, const char *id, const char *index,
					  const char *routing)
{
	OverlayEntry *e = PgpolyKeyTableFind(ov->map, id, strlen(id));
	ListCell   *lc;

	foreach(lc, e ? e->targets : NIL)
	{
		ElasticWrite *t = lfirst(lc);

		if (same_document(t->index, t->routing, index, routing))
			return t->op == EWRITE_DELETE;
	}
	return false;
}

/* Build the overlay of pending, the table's buffered writes. */
static void
build_overlay(ElasticScan *scan, List *pending)
{
	ListCell   *lc;

	if (pending == NIL)
		return;
	scan->overlay = ElasticOverlayCreate(scan->cxt);
	foreach(lc, pending)
	{
		ElasticWrite *w = ((PgpolyWrite *) lfirst(lc))->payload;

		if (ElasticOverlayAdd(scan->overlay, w))
			scan->overlay_ids = lappend(scan->overlay_ids, w->id);
	}
}

/* Number of ids an ids query names (-1 if not known or not an ids query). */
static int
ids_count(ElasticScan *scan)
{
	ListCell   *lc;

	foreach(lc, scan->spec->conds)
	{
		ElasticCond *c = lfirst(lc);
		ElasticParamValue *p = c->expr >= 0 ? &scan->params[c->expr] : NULL;

		if (c->kind == ECOND_IDS)
			return 1;
		if (c->kind == ECOND_IDS_IN && p && !p->isnull)
		{
			ArrayType  *a = DatumGetArrayTypeP(p->value);

			return ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));
		}
	}
	return -1;
}

/*
 * Per column of tbl, whether the _source spec asks for holds its field
 * (palloc'd): a field not fetched is no field the document lacks.
 */
static bool *
fetched_columns(ElasticTable *tbl, ElasticQuerySpec *spec)
{
	bool	   *fetched = palloc0(sizeof(bool) * Max(tbl->natts, 1));
	ListCell   *lc;

	for (int i = 0; i < tbl->natts && spec->need_source; i++)
	{
		if (tbl->cols[i].role != ECOL_FIELD)
			continue;
		fetched[i] = spec->source_all;
		foreach(lc, spec->includes)
			if (strcmp(strVal(lfirst(lc)), tbl->cols[i].field) == 0)
				fetched[i] = true;
	}
	return fetched;
}

/*
 * Start a scan (no I/O until the first row is asked) that reads through
 * pending (the table's buffered writes, PgpolyPendingWrites).  spec and
 * params must live as long as the scan.
 */
ElasticScan *
ElasticScanBegin(ElasticTable *tbl, PgpolyConnection *conn,
				 ElasticQuerySpec *spec, ElasticParamValue *params,
				 List *pending, MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "pgpoly elastic scan",
											  ALLOCSET_DEFAULT_SIZES);
	ElasticScan *scan = MemoryContextAllocZero(cxt, sizeof(ElasticScan));
	MemoryContext old = MemoryContextSwitchTo(cxt);
	int			nids;

	scan->tbl = tbl;
	scan->conn = conn;
	scan->spec = spec;
	scan->params = params;
	scan->fetched = fetched_columns(tbl, spec);
	scan->cxt = cxt;
	scan->page_cxt = AllocSetContextCreate(cxt, "pgpoly elastic page",
										   ALLOCSET_DEFAULT_SIZES);
	scan->row_cxt = AllocSetContextCreate(cxt, "pgpoly elastic row",
										  ALLOCSET_DEFAULT_SIZES);
	scan->abort_cb.func = scan_released;
	scan->abort_cb.arg = scan;
	MemoryContextRegisterResetCallback(cxt, &scan->abort_cb);
	build_overlay(scan, pending);
	if (scan->overlay && (spec->limit >= 0 || spec->sorts != NIL))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("foreign table \"%s\" has uncommitted writes that a plan made before them cannot see",
						tbl->relname),
				 errhint("Run the query again (it is planned anew), or COMMIT first.")));
	nids = ids_count(scan);
	scan->page_size = tbl->fetch_size;
	scan->paging = PAGING_FIRST;
	if (spec->limit >= 0 && spec->limit <= ELASTIC_MAX_RESULT_WINDOW)
	{
		scan->paging = PAGING_SINGLE;
		scan->page_size = (int) spec->limit;
	}
	else if (nids >= 0 && nids < ELASTIC_MAX_RESULT_WINDOW)
	{
		/*
		 * One page of one hit more than the ids named: an _id is unique
		 * per shard only (documents indexed with different routings), and
		 * a full page pages on like any other.
		 */
		scan->page_size = nids + 1;
	}
	MemoryContextSwitchTo(old);
	return scan;
}

/*
 * Open a PIT on the index; returns its id.  Elasticsearch:
 * POST /<index>/_pit?keep_alive=1m answers {"id": ...}; OpenSearch:
 * POST /<index>/_search/point_in_time?keep_alive=1m answers
 * {"pit_id": ..., "_shards": ..., "creation_time": ...}.
 */
static char *
open_pit(ElasticScan *scan)
{
	bool		os = ElasticConnHandle(scan->conn)->pit_api == EPIT_OPENSEARCH;
	char	   *path = ElasticIndexPath(scan->tbl->index, os ?
										"/_search/point_in_time?keep_alive=" ELASTIC_KEEP_ALIVE :
										"/_pit?keep_alive=" ELASTIC_KEEP_ALIVE);
	PgpolyHttpResponse resp;
	Datum		doc;
	char	   *id;

	scan->requests++;
	ElasticRequestOk(scan->conn, "POST", path, NULL, 0, scan->tbl->index, &resp);
	doc = ElasticParseJsonb(scan->conn, NULL, resp.body, resp.len, "point-in-time response");
	id = PgpolyJsonbFieldText(doc, os ? "pit_id" : "id", false, NULL);
	if (id == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("Elasticsearch server \"%s\" opened no point in time on index \"%s\"",
						scan->conn->servername, scan->tbl->index),
				 errdetail("The response begins: %s",
						   PgpolyHttpExcerpt(scan->conn, resp.body, resp.len))));
	return MemoryContextStrdup(scan->cxt, id);
}

/* The request path and body of the next page. */
static char *
page_request(ElasticScan *scan, StringInfo body)
{
	const char *tiebreaker = scan->paging == PAGING_PIT ?
		ElasticConnHandle(scan->conn)->tiebreaker : NULL;

	ElasticAppendBody(body, scan->spec, scan->params, scan->page_size, tiebreaker);
	/* Index order is the cheapest scroll, unless scores are wanted. */
	if (scan->paging == PAGING_SCROLL && scan->spec->sorts == NIL &&
		!scan->spec->need_score)
		appendStringInfoString(body, ",\"sort\":[\"_doc\"]");
	if (scan->paging == PAGING_PIT)
	{
		appendStringInfoString(body, ",\"pit\":{\"id\":");
		escape_json(body, scan->context_id);
		appendStringInfoString(body, ",\"keep_alive\":\"" ELASTIC_KEEP_ALIVE "\"}");
		if (scan->search_after)
			appendStringInfo(body, ",\"search_after\":%s", scan->search_after);
		appendStringInfoChar(body, '}');
		return "/_search";
	}
	appendStringInfoChar(body, '}');
	if (scan->paging == PAGING_SCROLL)
		return ElasticIndexPath(scan->tbl->index, "/_search?scroll=" ELASTIC_KEEP_ALIVE);
	return ElasticIndexPath(scan->tbl->index, "/_search");
}

/*
 * ERROR unless a search or count response (doc) covers every shard of
 * index within the time limit: Elasticsearch answers 200 with the hits or
 * the count of the shards that answered.
 */
static void
check_complete(PgpolyConnection *conn, const char *index, Datum doc)
{
	char	   *timed_out = PgpolyJsonbFieldText(doc, "timed_out", false, NULL);
	char	   *failed = PgpolyJsonbFieldText(doc, "_shards.failed", false, NULL);

	if (timed_out && strcmp(timed_out, "true") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("Elasticsearch search on index \"%s\" timed out on server \"%s\"; the results would be partial",
						index, conn->servername)));
	if (failed && strcmp(failed, "0") != 0)
	{
		char	   *failures = PgpolyJsonbFieldText(doc, "_shards.failures", false, NULL);

		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("Elasticsearch search on index \"%s\" failed on %s shard(s) of server \"%s\"; the results would be partial",
						index, failed, conn->servername),
				 failures ? errdetail("Shard failures: %s",
									  PgpolyHttpExcerpt(conn, failures, strlen(failures))) : 0));
	}
}

/* The hits array of resp (parsed: doc), or ERROR. */
static JsonbContainer *
response_hits(ElasticScan *scan, Datum doc, PgpolyHttpResponse *resp)
{
	Jsonb	   *jb = DatumGetJsonbP(doc);
	JsonbValue *hits = NULL;
	JsonbValue *arr = NULL;

	if (JsonContainerIsObject(&jb->root))
		hits = getKeyJsonValueFromContainer(&jb->root, "hits", 4, NULL);
	if (hits && hits->type == jbvBinary && JsonContainerIsObject(hits->val.binary.data))
		arr = getKeyJsonValueFromContainer(hits->val.binary.data, "hits", 4, NULL);
	if (arr == NULL || arr->type != jbvBinary || !JsonContainerIsArray(arr->val.binary.data))
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("Elasticsearch server \"%s\" sent a search response without hits.hits",
						scan->conn->servername),
				 errdetail("The response begins: %s",
						   PgpolyHttpExcerpt(scan->conn, resp->body, resp->len))));
	/* Every hit must be an object: later code reads them as containers. */
	for (int i = 0; i < (int) JsonContainerSize(arr->val.binary.data); i++)
	{
		JsonbValue *hv = getIthJsonbValueFromContainer(arr->val.binary.data, i);

		if (hv->type != jbvBinary || !JsonContainerIsObject(hv->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
					 errmsg("Elasticsearch server \"%s\" sent a search hit that is not an object",
							scan->conn->servername),
					 errdetail("Hit %d of the page; the response begins: %s", i,
							   PgpolyHttpExcerpt(scan->conn, resp->body, resp->len))));
	}
	return arr->val.binary.data;
}

/* Keep the continuation (pit_id, _scroll_id) a response carries. */
static void
keep_continuation(ElasticScan *scan, Datum doc)
{
	const char *key = scan->paging == PAGING_PIT ? "pit_id" :
		scan->paging == PAGING_SCROLL ? "_scroll_id" : NULL;
	char	   *id = key ? PgpolyJsonbFieldText(doc, key, false, NULL) : NULL;

	if (id && (scan->context_id == NULL || strcmp(id, scan->context_id) != 0))
	{
		scan->context_id = MemoryContextStrdup(scan->cxt, id);
		scan->tracked = ElasticTrackContext(scan->conn, scan->paging == PAGING_PIT,
											id, scan->tracked);
	}
}

/* Send the request for the next page and parse it. */
static void
fetch_page(ElasticScan *scan)
{
	StringInfoData body;
	PgpolyHttpResponse resp;
	const char *path;
	Datum		doc;
	MemoryContext old;

	MemoryContextReset(scan->page_cxt);
	old = MemoryContextSwitchTo(scan->page_cxt);
	initStringInfo(&body);
	if (scan->paging == PAGING_SCROLL && scan->context_id)
	{
		path = "/_search/scroll";
		appendStringInfoString(&body, "{\"scroll\":\"" ELASTIC_KEEP_ALIVE "\",\"scroll_id\":");
		escape_json(&body, scan->context_id);
		appendStringInfoChar(&body, '}');
	}
	else
		path = page_request(scan, &body);
	scan->requests++;
	ElasticRequestOk(scan->conn, "POST", path, body.data, body.len,
					 scan->tbl->index, &resp);
	doc = ElasticParseJsonb(scan->conn, &scan->nuls, resp.body, resp.len, "search response");
	check_complete(scan->conn, scan->tbl->index, doc);
	keep_continuation(scan, doc);
	scan->hits = response_hits(scan, doc, &resp);
	scan->nhits = JsonContainerSize(scan->hits);
	scan->pos = 0;
	scan->last_page = scan->paging == PAGING_SINGLE || scan->nhits < scan->page_size;
	if (scan->paging == PAGING_PIT || scan->paging == PAGING_SCROLL)
		note_last_hit(scan);
	MemoryContextSwitchTo(old);
}

/* Close the scan's PIT or scroll context, if open. */
static void
close_context(ElasticScan *scan)
{
	char	   *id = scan->context_id;

	if (id == NULL)
		return;
	scan->context_id = NULL;
	ElasticUntrackContext(scan->tracked);
	scan->tracked = NULL;
	scan->requests++;
	ElasticCloseContext(scan->conn, scan->paging == PAGING_PIT, id, scan->tbl->index);
}

/*
 * Decide, after a full first plain page, to restart under a PIT or a
 * scroll context (the first page's rows were not returned yet).
 */
static void
switch_to_deep(ElasticScan *scan)
{
	ElasticHandle *h = ElasticConnHandle(scan->conn);

	if (h->pit_api != EPIT_NONE)
	{
		scan->paging = PAGING_PIT;
		scan->context_id = open_pit(scan);
		scan->tracked = ElasticTrackContext(scan->conn, true, scan->context_id, NULL);
	}
	else
		scan->paging = PAGING_SCROLL;
	fetch_page(scan);
}

/*
 * ERROR if the value at path of hit number hitno of the page held a NUL
 * character (which the parsed page has masked); what names the value.
 */
static void
check_nul(ElasticScan *scan, int hitno, const char *path, const char *id)
{
	if (scan->nuls != NIL &&
		PgpolyJsonNulAt(scan->nuls, psprintf("hits.hits.%d.%s", hitno, path)))
	{
		if (PgpolyJsonNulUnplaced(scan->nuls))
			PgpolyJsonNulError(psprintf("a page of hits from index \"%s\"", scan->tbl->index),
							   NULL, NULL);
		PgpolyJsonNulError(psprintf("document \"%s\" in index \"%s\"",
									id ? id : "?", scan->tbl->index),
						   path, NULL);
	}
}

/* The sort values of the last hit of the page, as JSON (PIT paging). */
static char *
last_hit_sort(ElasticScan *scan, JsonbContainer *hit)
{
	JsonbValue *sort = getKeyJsonValueFromContainer(hit, "sort", 4, NULL);

	check_nul(scan, scan->nhits - 1, "sort", NULL);
	if (sort == NULL || sort->type != jbvBinary)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("Elasticsearch server \"%s\" sent a hit without sort values",
						scan->conn->servername)));
	return JsonbToCString(NULL, sort->val.binary.data, sort->val.binary.len);
}

/* Append to buf member key of hit as a JSON string ("" if not a string). */
static void
append_member(StringInfo buf, JsonbContainer *hit, const char *key)
{
	JsonbValue *v = getKeyJsonValueFromContainer(hit, key, strlen(key), NULL);

	if (v != NULL && v->type == jbvString)
		PgpolyJsonEscape(buf, v->val.string.val, v->val.string.len);
	else
		appendStringInfoString(buf, "\"\"");
}

/*
 * [_index, _id, _routing] of the last hit of the page, as JSON (scroll
 * paging): an _id is unique per shard only, and documents with one _id
 * on two shards have two routings.
 */
static char *
last_hit_id(JsonbContainer *hit)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '[');
	append_member(&buf, hit, "_index");
	appendStringInfoChar(&buf, ',');
	append_member(&buf, hit, "_id");
	appendStringInfoChar(&buf, ',');
	append_member(&buf, hit, "_routing");
	appendStringInfoChar(&buf, ']');
	return buf.data;
}

/*
 * Note the last hit of the page just fetched under a PIT (its sort values,
 * the next page's search_after) or a scroll (its index and _id); ERROR if
 * the page before ended with that hit too, before any row of the page is
 * returned (see the file header).  A hit is in one page only: under a PIT
 * its sort values are unique (the tiebreaker), in a scroll its index, _id
 * and routing.  The notes live in the scan's memory.
 */
static void
note_last_hit(ElasticScan *scan)
{
	char	  **prev = scan->paging == PAGING_PIT ? &scan->search_after : &scan->last_hit;
	JsonbValue *hit;
	char	   *mark;

	if (scan->nhits == 0)
		return;
	hit = getIthJsonbValueFromContainer(scan->hits, scan->nhits - 1);
	mark = scan->paging == PAGING_PIT ? last_hit_sort(scan, hit->val.binary.data) :
		last_hit_id(hit->val.binary.data);
	if (*prev && strcmp(mark, *prev) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("Elasticsearch server \"%s\" answered the page after the one ending with %s with the same page again",
						scan->conn->servername,
						PgpolyHttpExcerpt(scan->conn, mark, strlen(mark))),
				 errdetail("A %s returns each document once; the scan stops instead of returning its rows again.",
						   scan->paging == PAGING_PIT ? "point in time" : "scroll"),
				 errcontext("index \"%s\"", scan->tbl->index)));
	*prev = MemoryContextStrdup(scan->cxt, mark);
}

/* Make sure a hit is available; false when the remote result is exhausted. */
static bool
next_hit(ElasticScan *scan)
{
	if (scan->remote_done)
		return false;
	if (scan->hits == NULL)
	{
		fetch_page(scan);
		if (scan->paging == PAGING_FIRST && !scan->last_page)
			switch_to_deep(scan);
	}
	while (scan->pos >= scan->nhits)
	{
		if (scan->last_page)
		{
			MemoryContext old = MemoryContextSwitchTo(scan->cxt);

			close_context(scan);
			MemoryContextSwitchTo(old);
			scan->remote_done = true;
			return false;
		}
		fetch_page(scan);
	}
	return true;
}

/* Text of a string member of a JSON object container, or NULL. */
static char *
member_text(JsonbContainer *obj, const char *key)
{
	JsonbValue *v = getKeyJsonValueFromContainer(obj, key, strlen(key), NULL);

	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* A jsonb datum of the _source object of a hit (or NULL). */
static Datum
hit_source(JsonbContainer *hit, bool *isnull)
{
	JsonbValue *v = getKeyJsonValueFromContainer(hit, "_source", 7, NULL);

	*isnull = (v == NULL || v->type != jbvBinary ||
			   !JsonContainerIsObject(v->val.binary.data));
	return *isnull ? (Datum) 0 : JsonbPGetDatum(JsonbValueToJsonb(v));
}

/*
 * Fill values/nulls from hit, number hitno of the page.  A hit without a
 * _source object when the query uses fields is an ERROR: its fields would
 * read as NULL, even those a pushed clause just matched (an index whose
 * mapping disables _source).  Columns read only to check pushed clauses
 * are then not checked.
 */
static void
hit_row(ElasticScan *scan, JsonbContainer *hit, int hitno, char *id,
		Datum *values, bool *nulls)
{
	ElasticTable *tbl = scan->tbl;
	bool		srcnull;
	Datum		source = hit_source(hit, &srcnull);

	if (srcnull && scan->spec->fields_read)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("Elasticsearch server \"%s\" sent document \"%s\" of index \"%s\" without a _source object",
						scan->conn->servername, id, tbl->index),
				 errhint("The index mapping may disable _source; such an index can only be read through _id and _score columns.")));
	if (srcnull)
		source = PgpolyJsonbFromText("{}", 2);
	ElasticRowFromSource(tbl, source, id, scan->nuls,
						 scan->nuls ? psprintf("hits.hits.%d._source", hitno) : NULL,
						 scan->fetched, values, nulls);
	if (tbl->score_att)
	{
		JsonbValue *s = getKeyJsonValueFromContainer(hit, "_score", 6, NULL);

		nulls[tbl->score_att - 1] = !(scan->spec->need_score && s && s->type == jbvNumeric);
		if (!nulls[tbl->score_att - 1])
			values[tbl->score_att - 1] =
				DirectFunctionCall1(numeric_float4, NumericGetDatum(s->val.numeric));
	}
	if (tbl->source_att && srcnull)
		nulls[tbl->source_att - 1] = true;
	if (tbl->routing_att)
		routing_column(tbl, hit_routing(scan, hit, hitno, id), values, nulls);
}

/*
 * An integer member of a hit (_seq_no, _primary_term) of at least min;
 * ERROR naming the document when it is missing or anything else (a
 * fraction, which numeric_int8 would round into another version, or a
 * number past any version: more than 18 digits).
 */
static int64
hit_int8(ElasticScan *scan, JsonbContainer *hit, const char *key, const char *id,
		 int64 min)
{
	JsonbValue *v = getKeyJsonValueFromContainer(hit, key, strlen(key), NULL);
	char	   *digits = v && v->type == jbvNumeric ?
		numeric_normalize(v->val.numeric) : "";
	size_t		len = strlen(digits);
	int64		n = -1;

	if (len > 0 && len <= 18 && strspn(digits, "0123456789") == len)
		n = strtoi64(digits, NULL, 10);
	if (n < min)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("Elasticsearch server \"%s\" sent document \"%s\" of index \"%s\" without a valid %s",
						scan->conn->servername, id, scan->tbl->index, key),
				 errdetail("The search asked for \"seq_no_primary_term\": true, to send the write with if_seq_no and if_primary_term; %s is %s.",
						   key, v == NULL ? "missing" :
						   v->type == jbvNumeric ? psprintf("%.40s%s, not an integer of at least " INT64_FORMAT, digits, len > 40 ? "..." : "", min) :
						   "not a number")));
	return n;
}

/*
 * Whether a pending write replaces hit (number hitno of the page), of
 * document id: a write of its id to its index (or to the table's index
 * option) with its routing.
 */
static bool
overlay_replaces(ElasticScan *scan, JsonbContainer *hit, int hitno, const char *id)
{
	OverlayEntry *e = PgpolyKeyTableFind(scan->overlay->map, id, strlen(id));
	char	   *index = NULL;
	char	   *routing;
	ListCell   *lc;

	if (e == NULL)
		return false;
	routing = hit_routing(scan, hit, hitno, id);
	foreach(lc, e->targets)
	{
		ElasticWrite *t = lfirst(lc);

		/* the hit's _index is read only when a write names an index */
		if (t->index && index == NULL)
			index = hit_index(scan, hit, hitno, id);
		if (same_document(t->index, t->routing, index, routing))
			return true;
	}
	return false;
}

/* The next remote row not replaced by a pending write; false at the end. */
static bool
next_remote(ElasticScan *scan, Datum *values, bool *nulls)
{
	while (next_hit(scan))
	{
		JsonbValue *hv = getIthJsonbValueFromContainer(scan->hits, scan->pos++);
		JsonbContainer *hit = hv->val.binary.data;
		char	   *id = member_text(hit, "_id");

		if (id == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
					 errmsg("Elasticsearch server \"%s\" sent a hit without _id",
							scan->conn->servername)));
		check_nul(scan, scan->pos - 1, "_id", id);
		if (scan->overlay && overlay_replaces(scan, hit, scan->pos - 1, id))
			continue;
		hit_row(scan, hit, scan->pos - 1, id, values, nulls);
		scan->last_id = id;
		scan->row_hit = hit;
		scan->row_hitno = scan->pos - 1;
		scan->last_seq_no = -1;
		if (scan->spec->seq_no)
		{
			scan->last_seq_no = hit_int8(scan, hit, "_seq_no", id, 0);
			scan->last_primary_term = hit_int8(scan, hit, "_primary_term", id, 1);
		}
		scan->returned++;
		return true;
	}
	return false;
}

/* The next row created by a pending write; false at the end. */
static bool
next_overlay(ElasticScan *scan, Datum *values, bool *nulls)
{
	if (!scan->overlay_phase)
	{
		scan->overlay_phase = true;
		scan->overlay_next = list_head(scan->overlay_ids);
	}
	while (scan->overlay_next != NULL)
	{
		char	   *id = lfirst(scan->overlay_next);
		OverlayEntry *e = PgpolyKeyTableFind(scan->overlay->map, id, strlen(id));
		ElasticWrite *w;

		if (scan->overlay_target >= list_length(e->targets))
		{
			scan->overlay_next = lnext(scan->overlay_ids, scan->overlay_next);
			scan->overlay_target = 0;
			continue;
		}
		w = list_nth(e->targets, scan->overlay_target++);
		if (w->op == EWRITE_DELETE || w->row == NULL)
			continue;
		ElasticWriteRow(scan->tbl, w, scan->fetched, values, nulls);
		scan->last_id = w->id;
		scan->row_write = w;
		return true;
	}
	return false;
}

/* Whether the scan's query has a full-text condition. */
static bool
has_fulltext(ElasticScan *scan)
{
	ListCell   *lc;

	foreach(lc, scan->spec->conds)
		if (((ElasticCond *) lfirst(lc))->kind == ECOND_QUERY)
			return true;
	return false;
}

/*
 * The next row into values/nulls (valid until the next call); false at the
 * end.  *from_overlay: the row comes from a pending write and the caller
 * must check the pushed quals on it.
 */
bool
ElasticScanNext(ElasticScan *scan, Datum *values, bool *nulls, bool *from_overlay)
{
	MemoryContext old;
	bool		found;

	MemoryContextReset(scan->row_cxt);
	old = MemoryContextSwitchTo(scan->row_cxt);
	*from_overlay = false;
	scan->last_id = NULL;
	scan->row_hit = NULL;
	scan->row_write = NULL;
	found = next_remote(scan, values, nulls);
	if (!found && scan->overlay && !has_fulltext(scan))
		found = *from_overlay = next_overlay(scan, values, nulls);
	MemoryContextSwitchTo(old);
	return found;
}

/*
 * The custom routing of hit (number hitno of the page), its "_routing"
 * metadata field, or NULL when it has none (its _id routes it).  A hit
 * carries the routing a document was indexed with (mapping-routing-field.html);
 * anything but a string is an ERROR naming the document: a write sent
 * with another routing would miss the document, or index a second one
 * with the same _id on another shard.
 */
static char *
hit_routing(ElasticScan *scan, JsonbContainer *hit, int hitno, const char *id)
{
	JsonbValue *v = getKeyJsonValueFromContainer(hit, "_routing", 8, NULL);

	if (v == NULL)
		return NULL;
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("Elasticsearch server \"%s\" sent document \"%s\" of index \"%s\" with a _routing that is not a string",
						scan->conn->servername, id, scan->tbl->index),
				 errdetail("A write of the document is sent with the routing its hit carries, to reach the shard the document is on.")));
	check_nul(scan, hitno, "_routing", id);
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/*
 * The concrete index hit (number hitno of the page) came from, its "_index"
 * metadata field: the table's index option may name an alias, a comma
 * list or a pattern, which a write cannot address as it addresses a
 * document (aliases.html: a write to an alias goes to its write index,
 * or fails).  Anything but a non-empty string is an ERROR naming the
 * document.
 */
static char *
hit_index(ElasticScan *scan, JsonbContainer *hit, int hitno, const char *id)
{
	JsonbValue *v = getKeyJsonValueFromContainer(hit, "_index", 6, NULL);

	if (v == NULL || v->type != jbvString || v->val.string.len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("Elasticsearch server \"%s\" sent document \"%s\" of index \"%s\" without a valid _index",
						scan->conn->servername, id, scan->tbl->index),
				 errdetail("A write of the document is sent to the concrete index its hit carries; _index is %s.",
						   v == NULL ? "missing" : v->type == jbvString ?
						   "empty" : "not a string")));
	check_nul(scan, hitno, "_index", id);
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/*
 * What the scan read of the row ElasticScanNext returned last, for the
 * write of an UPDATE or DELETE of it: its document id (NULL after the
 * end), in *index the concrete index it is in (NULL: the table's index
 * option), in *routing its custom routing (NULL: none), and in *seq_no and
 * *primary_term the version Elasticsearch sent with it when the scan
 * asks for versions (spec->seq_no; else *seq_no is -1).  A row of a pending
 * write has the index and routing of that write and *seq_no -1: the
 * version is what that write will return (see ElasticSendWrites).  The
 * index and routing of a hit are read here, only for the rows written.
 * Valid until the next ElasticScanNext.
 */
const char *
ElasticScanHit(ElasticScan *scan, const char **index, const char **routing,
			   int64 *seq_no, int64 *primary_term)
{
	*index = NULL;
	*routing = NULL;
	*seq_no = -1;
	*primary_term = 0;
	if (scan->row_write)
	{
		*index = scan->row_write->index;
		*routing = scan->row_write->routing;
	}
	else if (scan->row_hit)
	{
		MemoryContext old = MemoryContextSwitchTo(scan->row_cxt);

		*index = hit_index(scan, scan->row_hit, scan->row_hitno, scan->last_id);
		*routing = hit_routing(scan, scan->row_hit, scan->row_hitno, scan->last_id);
		MemoryContextSwitchTo(old);
		*seq_no = scan->last_seq_no;
		*primary_term = scan->last_primary_term;
	}
	return scan->last_id;
}

/*
 * End the scan: close its context on the server, free its memory.  While
 * the transaction is aborting (a portal dropped by ROLLBACK) no request is
 * sent: releasing the memory queues the close instead.
 */
void
ElasticScanEnd(ElasticScan *scan)
{
	if (!IsTransactionState())
	{
		MemoryContextDelete(scan->cxt);
		return;
	}
	PG_TRY();
	{
		close_context(scan);
	}
	PG_CATCH();
	{
		MemoryContextDelete(scan->cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextDelete(scan->cxt);
}

/* Requests the scan has sent (for EXPLAIN ANALYZE). */
int
ElasticScanRequests(ElasticScan *scan)
{
	return scan->requests;
}

/* How the scan paged (for EXPLAIN ANALYZE). */
const char *
ElasticScanPaging(ElasticScan *scan)
{
	switch (scan->paging)
	{
		case PAGING_FIRST:
			return "one page";
		case PAGING_SINGLE:
			return "one request (size)";
		case PAGING_PIT:
			return "point in time + search_after";
		case PAGING_SCROLL:
			return "scroll";
	}
	return "?";
}

/* ----------------------------------------------------------------
 *		Type mapping
 * ----------------------------------------------------------------
 */

/* Whether s is an integer literal (epoch milliseconds for a date field). */
static bool
is_integer_text(const char *s)
{
	if (*s == '-')
		s++;
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!isdigit((unsigned char) *s))
			return false;
	return true;
}

/*
 * A date/time column's datum for the instant ts (UTC): its day in UTC for
 * a date, its UTC time rounded to the column's precision for a timestamp,
 * checked against the column's domain.  This is the day or time
 * Elasticsearch indexes for the value (it reads a date with an offset as
 * an instant), so that a pushed comparison selects what SQL's does.
 */
static Datum
datetime_from_instant(ElasticColumn *col, Timestamp ts)
{
	Datum		d;

	if (col->basetype == DATEOID)
		d = DirectFunctionCall1(timestamp_date, TimestampGetDatum(ts));
	else
	{
		AdjustTimestampForTypmod(&ts, col->conv.basetypmod);	/* a domain's too */
		d = TimestampGetDatum(ts);
	}
	if (col->typid != col->basetype)
		domain_check(d, false, col->typid, NULL, NULL);
	return d;
}

/*
 * A date/time column's datum from epoch milliseconds (text: an integer).
 * A number beyond PostgreSQL's timestamp range is an ERROR, as in
 * to_timestamp(): it must neither wrap around into another date nor become
 * a timestamp that cannot be output.
 */
static Datum
datetime_from_millis(ElasticColumn *col, const char *text)
{
	int64		ms;
	Timestamp	ts;

	errno = 0;
	ms = strtoll(text, NULL, 10);
	if (errno == ERANGE || pg_mul_s64_overflow(ms, 1000, &ts) ||
		pg_sub_s64_overflow(ts, (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) *
							USECS_PER_DAY, &ts) ||
		!IS_VALID_TIMESTAMP(ts))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range: %s milliseconds since 1970-01-01", text)));
	return datetime_from_instant(col, ts);
}

/*
 * One column's datum from its text form (len bytes), under the fixed
 * settings (ERRORs raised by input functions).  A scalar date or timestamp
 * column reads the instant the text names (see datetime_from_instant).
 */
static Datum
column_datum(ElasticColumn *col, char *text, size_t len)
{
	if (col->is_datetime && !col->is_array && is_integer_text(text))
		return datetime_from_millis(col, text);
	/* a plain date (the column's fast path) is its own UTC day */
	if (col->is_datetime && !col->is_array && col->basetype != TIMESTAMPTZOID &&
		!(col->basetype == DATEOID && len == 10))
		return datetime_from_instant(col, DatumGetTimestamp(PgpolyServerTextToDatum(&col->instant,
																			 text, len)));
	return PgpolyServerTextToDatum(&col->conv, text, len);
}

/*
 * Fill the _routing column, if the table has one, with routing (NULL: the
 * document has none, its _id routes it).
 */
static void
routing_column(ElasticTable *tbl, const char *routing, Datum *values, bool *nulls)
{
	AttrNumber	att = tbl->routing_att;

	if (att == 0)
		return;
	nulls[att - 1] = routing == NULL;
	if (routing)
		values[att - 1] = PgpolyServerTextToDatum(&tbl->cols[att - 1].conv, routing,
											strlen(routing));
}

/*
 * Fill values/nulls with the row a read of the table finds after w, an
 * index or update write (w->row: the document it leaves), with the fields
 * fetched (NULL: all): the transaction's reads of its buffered writes and
 * the RETURNING of the write itself, so that both show the same row.  No
 * _score: there is no query.
 */
void
ElasticWriteRow(ElasticTable *tbl, ElasticWrite *w, const bool *fetched,
				Datum *values, bool *nulls)
{
	ElasticRowFromSource(tbl, PgpolyJsonbFromText(w->row, strlen(w->row)),
						 w->id, NIL, NULL, fetched, values, nulls);
	if (tbl->score_att)
		nulls[tbl->score_att - 1] = true;
	routing_column(tbl, w->routing, values, nulls);
}

/* ERROR if the value at base.field held a NUL character (see check_nul). */
static void
source_nul(List *nuls, const char *base, const char *field, const char *id,
		   ElasticTable *tbl, ElasticColumn *col)
{
	if (nuls != NIL && PgpolyJsonNulAt(nuls, field ? psprintf("%s.%s", base, field) : base))
		PgpolyJsonNulError(psprintf("document \"%s\" in index \"%s\"", id, tbl->index),
						   field ? field : "_source", &col->conv);
}

/* Fill values/nulls from source and id (see ElasticRowFromSource). */
static void
row_values(ElasticTable *tbl, Datum source, const char *id, List *nuls,
		   const char *base, const bool *fetched, Datum *values, bool *nulls,
		   volatile int *att)
{
	for (*att = 0; *att < tbl->natts; (*att)++)
	{
		ElasticColumn *col = &tbl->cols[*att];
		char	   *text;
		size_t		len;

		nulls[*att] = true;
		if (col->role == ECOL_ID)
		{
			/* varchar(n): cut (or refused) as its input does */
			values[*att] = col->typmod >= 0 ?
				PgpolyServerTextToDatum(&col->conv, id, strlen(id)) :
				CStringGetTextDatum(id);
			nulls[*att] = false;
		}
		else if (col->role == ECOL_SOURCE)
		{
			source_nul(nuls, base, NULL, id, tbl, col);
			values[*att] = source;
			nulls[*att] = false;
		}
		else if (col->role == ECOL_FIELD)
		{
			/*
			 * A whole _source (EFLAG_WHOLE_SOURCE) holds fields the query
			 * does not read: converting them could only fail it.
			 */
			if (fetched != NULL && !fetched[*att])
				continue;
			source_nul(nuls, base, col->field, id, tbl, col);
			text = col->is_json ?
				PgpolyJsonbColumnText(source, col->field, PGPOLY_FIELD_EVERY, &col->conv, &len) :
				PgpolyJsonbFieldValues(source, col->field, PGPOLY_FIELD_EVERY, &col->conv,
									   false, &len);
			if (text != NULL)
			{
				values[*att] = column_datum(col, text, len);
				nulls[*att] = false;
			}
			else
				values[*att] = PgpolyNullDatum(&col->conv);
		}
	}
}

/*
 * Fill values/nulls of the table's columns from a document's _source
 * (jsonb datum) and id.  nuls (NIL if none) are the paths of strings that
 * held a NUL character in the parsed response, base the path of this
 * _source in it.  Only the fields fetched (per column; NULL: every field)
 * says the request asked for are read, the other columns are NULL: a
 * whole _source holds fields the query does not read.  A value that does
 * not fit its column is an ERROR naming the document, the field and the
 * column, and so is a field the document lacks where the column's domain
 * refuses NULL.
 */
void
ElasticRowFromSource(ElasticTable *tbl, Datum source, const char *id,
					 List *nuls, const char *base, const bool *fetched,
					 Datum *values, bool *nulls)
{
	volatile int att = 0;
	MemoryContext cxt = CurrentMemoryContext;

	PgpolyFixedSettingsEnter();
	PG_TRY();
	{
		row_values(tbl, source, id, nuls, base, fetched, values, nulls, &att);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		ElasticColumn *col = &tbl->cols[att];

		PgpolyFixedSettingsLeave();
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED ||
			att >= tbl->natts || col->role != ECOL_FIELD)
			PG_RE_THROW();
		FlushErrorState();
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg("field \"%s\" of document \"%s\" in index \"%s\" does not fit column \"%s\" (%s)",
						col->field, id, tbl->index, col->name,
						format_type_with_typemod(col->typid, col->typmod)),
				 errdetail("%s", edata->message),
				 edata->hint ? errhint("%s", edata->hint) : 0,
				 errcontext("foreign table \"%s\"", tbl->relname)));
	}
	PG_END_TRY();
	PgpolyFixedSettingsLeave();
}

/* ----------------------------------------------------------------
 *		count(*)
 * ----------------------------------------------------------------
 */

/*
 * count(*) of the documents matching conds, through _count, which cannot
 * see pending (the buffered writes the caller reads through: NIL for an
 * estimate).
 */
int64
ElasticCount(ElasticTable *tbl, PgpolyConnection *conn, List *conds,
			 ElasticParamValue *params, List *pending)
{
	StringInfoData body;
	PgpolyHttpResponse resp;
	char	   *path = ElasticIndexPath(tbl->index, "/_count");
	Datum		doc;
	char	   *count;
	long long	n;

	if (pending != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("foreign table \"%s\" has uncommitted writes that a plan made before them cannot see",
						tbl->relname),
				 errhint("Run the query again (it is planned anew), or COMMIT first.")));
	initStringInfo(&body);
	appendStringInfoString(&body, "{\"query\":");
	ElasticAppendQuery(&body, conds, params, false);
	appendStringInfoChar(&body, '}');
	ElasticRequestOk(conn, "POST", path, body.data, body.len, tbl->index, &resp);
	doc = ElasticParseJsonb(conn, NULL, resp.body, resp.len, "count response");
	check_complete(conn, tbl->index, doc);
	count = PgpolyJsonbFieldText(doc, "count", false, NULL);
	errno = 0;
	n = count && is_integer_text(count) ? strtoll(count, NULL, 10) : -1;
	/* a negative count, or one beyond int8, is no count */
	if (n < 0 || errno == ERANGE)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("Elasticsearch server \"%s\" sent a count response without a count of documents",
						conn->servername),
				 errdetail("The response begins: %s",
						   PgpolyHttpExcerpt(conn, resp.body, resp.len))));
	return (int64) n;
}
