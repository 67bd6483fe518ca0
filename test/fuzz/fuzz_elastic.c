/*-------------------------------------------------------------------------
 *
 * fuzz_elastic.c
 *		  Fuzz harness "elastic": Elasticsearch responses into rows, end to
 *		  end.
 *
 * Every input plays the Elasticsearch (or OpenSearch) server of one request
 * flow of pgpoly's real code, on the foreign tables test/fuzz/elastic.sql
 * creates: a scan of fz_docs (every kind of column: text, int, bigint,
 * float8, numeric, bool, timestamptz, date, text[], jsonb, a nested field
 * 'a.b', _id, _score, _source; fetch_size 2, so a full first page moves
 * the scan to a point in time or a scroll), with or without a LIMIT,
 * scores and buffered writes overlaying the hits; a scan of the index
 * pattern of fz_plain; count(*) (_count); a bulk write of index, update,
 * delete and create actions in two batches (_bulk, every item checked); the
 * existence check of ON CONFLICT (_mget); the mapping facts the planner
 * asks (_mapping); IMPORT FOREIGN SCHEMA through the wrapper's routine;
 * and pgpoly.elastic_request().  The bytes go through libcurl and
 * pgpoly's HTTP client (src/http.c: framing, the response bound, retries,
 * error statuses), the version detection, the JSON parsing (jsonb and
 * jansson) and the conversion of every field into its column.
 *
 * Input layout: byte 0 picks the flow (bits 0-2) and the cluster that
 * GET / describes (bits 3-5: Elasticsearch 8 or 7.10, OpenSearch 2.11, 3.3
 * or 1.3, canned; 5-7: the first segment answers GET / itself); byte 1
 * the flow's options; the rest is the script (harness.c), whose
 * structured replies are search pages of hits, bulk items, multi-get
 * docs, or index mappings, by flow.
 *
 * Oracles (harness.c): every datum of every row is a valid value of its
 * column; every generated CREATE FOREIGN TABLE parses.
 *
 * test/fuzz/fuzz_elastic.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pgpoly_jansson.h"

#include <stdlib.h>

#include "foreign/fdwapi.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "elastic.h"
#include "fuzz.h"
#include "pgpoly.h"
#include "harness.h"

extern Datum pgpoly_elastic_request(PG_FUNCTION_ARGS);

enum
{
	FLOW_SCAN, FLOW_SCAN2, FLOW_PATTERN, FLOW_COUNT, FLOW_BULK, FLOW_MGET,
	FLOW_MAPPING, FLOW_IMPORT
};

#define SHARDS "\"_shards\":{\"total\":1,\"successful\":1,\"skipped\":0,\"failed\":0}"

/* GET / of the canned clusters (byte 0, bits 3-5). */
static const char *const Clusters[] = {
	"{\"name\":\"n\",\"cluster_name\":\"c\",\"version\":{\"number\":\"8.11.1\",\"build_flavor\":\"default\"},\"tagline\":\"You Know, for Search\"}",
	"{\"name\":\"n\",\"cluster_name\":\"c\",\"version\":{\"number\":\"7.10.2\",\"build_flavor\":\"default\"},\"tagline\":\"You Know, for Search\"}",
	"{\"name\":\"n\",\"cluster_name\":\"c\",\"version\":{\"distribution\":\"opensearch\",\"number\":\"2.11.0\"},\"tagline\":\"The OpenSearch Project: https://opensearch.org/\"}",
	"{\"name\":\"n\",\"cluster_name\":\"c\",\"version\":{\"distribution\":\"opensearch\",\"number\":\"3.3.0\"},\"tagline\":\"The OpenSearch Project: https://opensearch.org/\"}",
	"{\"name\":\"n\",\"cluster_name\":\"c\",\"version\":{\"distribution\":\"opensearch\",\"number\":\"1.3.0\"},\"tagline\":\"The OpenSearch Project: https://opensearch.org/\"}",
};

static ElasticTable *Docs;		/* fz_docs */
static ElasticTable *Plain;		/* fz_plain */

/* Load the tables and start the peer on the port of their server. */
static void
elastic_init(void)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	const char *url;

	Docs = ElasticLoadTable(HarnessRelid("fz_docs"), GetUserId());
	Plain = ElasticLoadTable(HarnessRelid("fz_plain"), GetUserId());
	MemoryContextSwitchTo(old);
	url = PgpolyGetOption(Docs->server->options, "url", NULL);
	HttpPeerStart(atoi(strrchr(url, ':') + 1));
}

/*
 * The oracle of the bulk summary: the items of body that its reader without
 * a document (PgpolyJsonTopLevelScan, which lets a COMMIT skip the per-item
 * check) counts as written must be items that a document read of body
 * (jansson, as pgpoly's check reads it: a name given twice keeps its last
 * value) says were written, every member object's "status" a 2xx.  More is
 * a finding: a failed write taken as done.
 */
static void
check_bulk_summary(const char *body, size_t len)
{
	PgpolyJsonTopLevel summary = {"errors", "items", "status", 200, 299};
	json_t	   *doc;
	json_t	   *items;
	int			written = 0;
	size_t		i;
	json_t	   *item;

	summary.reject_key = "error";
	if (!PgpolyJsonTopLevelScan(body, len, &summary))
		return;
	doc = json_loadb(body, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	if (doc == NULL)
	{
		fprintf(stderr, "bulk summary read a body the document reader refuses: %.*s\n",
				(int) len, body);
		abort();
	}
	items = json_object_get(doc, "items");
	json_array_foreach(items, i, item)
	{
		const char *op;
		json_t	   *v;
		bool		ok = json_object_size(item) > 0;

		/* as item_failed reads an item: every member without error, a 2xx */
		json_object_foreach(item, op, v)
		{
			json_t	   *st = json_object_get(v, "status");

			ok &= json_object_get(v, "error") == NULL && json_is_integer(st) &&
				json_integer_value(st) >= 200 && json_integer_value(st) <= 299;
		}
		written += ok;
	}
	/* the fast path's test: every item counted, so every item must be written */
	if (summary.inner_count > written ||
		(summary.elements > 0 && summary.inner_count == summary.elements &&
		 written != summary.elements))
	{
		fprintf(stderr, "bulk summary counts %d items written, the document %d: %.*s\n",
				summary.inner_count, written, (int) len, body);
		abort();
	}
	json_decref(doc);
}

/* The body of a structured reply for flow: pieces in the flow's envelope. */
static char *
elastic_envelope(int flow, List *pieces, size_t *len)
{
	char	   *body;

	switch (flow)
	{
		case FLOW_COUNT:
			body = pieces ? psprintf("{\"count\":%s," SHARDS "}", (char *) linitial(pieces)) :
				pstrdup("{\"count\":0," SHARDS "}");
			break;
		case FLOW_BULK:
			/* "errors" true or false (the summary's path), by the count */
			body = HarnessJoin(pieces, list_length(pieces) % 2 ?
							   "{\"took\":1,\"errors\":true,\"items\":[" :
							   "{\"took\":1,\"errors\":false,\"items\":[", "]}");
			check_bulk_summary(body, strlen(body));
			break;
		case FLOW_MGET:
			body = HarnessJoin(pieces, "{\"docs\":[", "]}");
			break;
		case FLOW_MAPPING:
		case FLOW_IMPORT:
			{
				StringInfoData buf;
				ListCell   *lc;

				initStringInfo(&buf);
				appendStringInfoChar(&buf, '{');
				foreach(lc, pieces)
					appendStringInfo(&buf, "%s\"fz%s%d\":%s", foreach_current_index(lc) ? "," : "",
									 foreach_current_index(lc) ? "-" : "",
									 foreach_current_index(lc), (char *) lfirst(lc));
				appendStringInfoChar(&buf, '}');
				body = buf.data;
			}
			break;
		default:
			/* a search page, which also answers a PIT opening */
			body = psprintf("{\"pit_id\":\"cGl0\",\"id\":\"cGl0\",\"_scroll_id\":\"c2Nyb2xs\","
							"\"took\":1,\"timed_out\":false," SHARDS ","
							"\"hits\":{\"total\":{\"value\":%d,\"relation\":\"eq\"},"
							"\"max_score\":1.0,%s}}", list_length(pieces),
							HarnessJoin(pieces, "\"hits\":[", "]"));
			break;
	}
	*len = strlen(body);
	return body;
}

/* Check every column of a row (the oracle). */
static void
check_row(ElasticTable *tbl, Datum *values, bool *nulls)
{
	HarnessRow();
	for (int i = 0; i < tbl->natts; i++)
		if (tbl->cols[i].role != ECOL_NONE && !nulls[i])
			HarnessCheckDatum(tbl->cols[i].typid, tbl->cols[i].typmod, values[i],
							  tbl->cols[i].name);
}

/* Buffered writes of fz_docs (ids "1", "2" and a delete of "3"). */
static List *
pending_writes(ElasticTable *tbl)
{
	Datum	   *values = palloc0(sizeof(Datum) * tbl->natts);
	bool	   *nulls = palloc(sizeof(bool) * tbl->natts);
	List	   *pending = NIL;
	char	   *assigned;

	for (int i = 0; i < tbl->natts; i++)
		nulls[i] = true;
	for (int i = 0; i < 3; i++)
	{
		PgpolyWrite *w = palloc0(sizeof(PgpolyWrite));

		values[tbl->id_att - 1] = CStringGetTextDatum(psprintf("%d", i + 1));
		nulls[tbl->id_att - 1] = false;
		w->relid = tbl->relid;
		w->payload = i < 2 ? ElasticInsertWrite(tbl, values, nulls, &assigned) :
			ElasticDeleteWrite(tbl, "3");
		pending = lappend(pending, w);
	}
	return pending;
}

/* A scan of tbl: every row, each checked. */
static void
flow_scan(ElasticTable *tbl, uint8_t opt)
{
	ElasticQuerySpec *spec = palloc0(sizeof(ElasticQuerySpec));
	Datum	   *values = palloc(sizeof(Datum) * tbl->natts);
	bool	   *nulls = palloc(sizeof(bool) * tbl->natts);
	PgpolyConnection *conn = ElasticGetConnection(tbl);
	List	   *pending = (opt & 8) ? pending_writes(tbl) : NIL;
	ElasticScan *scan;
	bool		from_overlay;

	spec->source_all = spec->need_source = true;
	spec->need_score = (opt & 2) != 0;
	spec->limit = pending == NIL && (opt & 1) ? 1 + ((opt >> 4) & 7) : -1;
	scan = ElasticScanBegin(tbl, conn, spec, NULL, pending, CurrentMemoryContext);
	while (ElasticScanNext(scan, values, nulls, &from_overlay))
	{
		check_row(tbl, values, nulls);
		CHECK_FOR_INTERRUPTS();
	}
	ElasticScanEnd(scan);
}

/* Writes of every kind to fz_docs, sent in _bulk batches of 2. */
static void
flow_bulk(ElasticTable *tbl)
{
	Datum	   *values = palloc0(sizeof(Datum) * tbl->natts);
	bool	   *nulls = palloc(sizeof(bool) * tbl->natts);
	bool		applied = true;
	char	   *assigned;
	ElasticWrite *create;
	List	   *writes = NIL;

	for (int i = 0; i < tbl->natts; i++)
		nulls[i] = tbl->cols[i].role != ECOL_ID &&
			(tbl->cols[i].role != ECOL_FIELD || tbl->cols[i].is_datetime);
	for (int i = 0; i < tbl->natts; i++)
		if (!nulls[i])
			values[i] = PgpolyTextToDatum(&tbl->cols[i].conv,
										  tbl->cols[i].is_array ? "{1}" : "1", 1 + 2 * tbl->cols[i].is_array);
	writes = lappend(writes, ElasticInsertWrite(tbl, values, nulls, &assigned));
	writes = lappend(writes, ElasticUpdateWrite(tbl, "2", values, nulls,
												bms_make_singleton(2)));
	writes = lappend(writes, ElasticDeleteWrite(tbl, "3"));
	create = ElasticInsertWrite(tbl, values, nulls, &assigned);
	create->op = EWRITE_CREATE;
	create->applied = &applied;
	writes = lappend(writes, create);
	ElasticSendWrites(ElasticGetConnection(tbl), writes);
}

/*
 * The existence check of ON CONFLICT DO NOTHING: an ids search, or (realtime)
 * a multi-get with each row's routing.
 */
static void
flow_mget(ElasticTable *tbl, bool realtime)
{
	char	   *ids[3] = {"1", "2", "3"};
	char	   *routings[3] = {NULL, "r2", NULL};
	bool		exists[3];

	ElasticIdsExist(ElasticGetConnection(tbl), tbl, ids, routings, 3, realtime, NULL, exists);
}

/* What the planner asks of the mapping. */
static void
flow_mapping(ElasticTable *tbl)
{
	ElasticFieldFacts facts;

	(void) ElasticFieldType(tbl, "t", &facts);
	(void) ElasticFieldType(tbl, "a.b", &facts);
	(void) ElasticMappingFacts(tbl, list_make2(makeString("t"), makeString("a.b")));
}

/* IMPORT FOREIGN SCHEMA "fz*" FROM SERVER fuzz_es, through the routine. */
static void
flow_import(ElasticTable *tbl)
{
	ImportForeignSchemaStmt *stmt = makeNode(ImportForeignSchemaStmt);
	FdwRoutine *routine = GetFdwRoutineByServerId(tbl->server->serverid);

	stmt->server_name = tbl->server->servername;
	stmt->remote_schema = "fz*";
	stmt->local_schema = "public";
	stmt->list_type = FDW_IMPORT_SCHEMA_ALL;
	HarnessCheckImport(routine->ImportForeignSchema(stmt, tbl->server->serverid));
}

/* pgpoly.elastic_request(server, 'GET', '/fz/_doc/1'): any JSON back. */
static void
flow_request(ElasticTable *tbl)
{
	LOCAL_FCINFO(fcinfo, 4);
	Datum		result;

	InitFunctionCallInfoData(*fcinfo, NULL, 4, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = CStringGetDatum(tbl->server->servername);
	fcinfo->args[1].value = CStringGetTextDatum("GET");
	fcinfo->args[2].value = CStringGetTextDatum("/fz/_doc/1");
	for (int i = 0; i < 3; i++)
		fcinfo->args[i].isnull = false;
	fcinfo->args[3].isnull = true;
	result = pgpoly_elastic_request(fcinfo);
	if (!fcinfo->isnull)
		HarnessCheckDatum(JSONBOID, -1, result, "elastic_request result");
}

/* One input: set the peer's script, run the chosen flow. */
static void
elastic_one(const uint8_t *data, size_t size)
{
	int			flow;
	int			cluster;
	HttpPeerReply version;

	if (size < 2)
		return;
	flow = data[0] & 7;
	cluster = (data[0] >> 3) & 7;
	version = (HttpPeerReply) {200, HTTP_PEER_LENGTH, NULL, 0};
	if (cluster < lengthof(Clusters))
	{
		version.body = Clusters[cluster];
		version.len = strlen(version.body);
	}
	HarnessScript(data + 2, size - 2, &version, cluster < lengthof(Clusters),
				  elastic_envelope, flow);
	switch (flow)
	{
		case FLOW_SCAN:
		case FLOW_SCAN2:
			flow_scan(Docs, data[1]);
			break;
		case FLOW_PATTERN:
			flow_scan(Plain, data[1]);
			break;
		case FLOW_COUNT:
			(void) ElasticCount(Docs, ElasticGetConnection(Docs), NIL, NULL, NIL);
			break;
		case FLOW_BULK:
			flow_bulk(Docs);
			break;
		case FLOW_MGET:
			flow_mget(Docs, data[1] & 1);
			break;
		case FLOW_MAPPING:
			flow_mapping(Docs);
			break;
		case FLOW_IMPORT:
			if (data[1] & 1)
				flow_request(Docs);
			else
				flow_import(Docs);
			break;
	}
	HarnessCompleted();
}

/* After each input: the peer resets its end (no TIME_WAIT anywhere). */
static void
elastic_done(void)
{
	HttpPeerReset();
}

const PgpolyFuzzHarness pgpoly_fuzz_elastic = {
	"elastic", elastic_init, elastic_one, elastic_done, HarnessDisconnect
};
