/*-------------------------------------------------------------------------
 *
 * vector_harness.c
 *		  The request flows of the vector service harnesses "chroma" and
 *		  "qdrant": pgpoly_vector's real code against a scripted service.
 *
 * Each input plays the service of one flow on the foreign tables the
 * harness's setup script creates on a server of its provider: fz_vec (id,
 * embedding real[], document, metadata jsonb, metadata fields of several
 * types, _distance) and fz_vec_fields (no metadata column: fields only).
 * The flows are a paged scan (fetch_size 2, a pushed filter or not), a
 * scan by ids, a k-NN query answered by the service, a k-NN computed
 * locally over buffered writes, pgpoly.vector_search() (through SQL, a
 * filter or not), use_remote_estimate's count, IMPORT FOREIGN SCHEMA
 * through the wrapper's routine, and buffered writes sent in batches.
 * Rows go through VectorRowToValues as a scan returns them and every datum
 * is checked by the oracle (harness.c).
 *
 * Input layout: byte 0 picks the flow (bits 0-2, see vector_harness.h),
 * the distance of the canned collection description that answers the
 * first request, the lookup (bits 3-4: l2, cosine, ip), or none (bit 5:
 * the first segment answers it; IMPORT has no lookup); byte 1 the flow's options (bit 0: the
 * table; bit 1: a pushed filter; bits 2-3: vector_search's filter); the
 * rest is the script (harness.c).  Structured replies are the provider's
 * envelope (VectorHarnessProvider) around records.
 *
 * This file is harness machinery, compiled without coverage.
 *
 * test/fuzz/vector_harness.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "foreign/fdwapi.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "vector.h"
#include "vector_harness.h"

static VectorTable *Tables[2];	/* fz_vec, fz_vec_fields */
static const char *const TableNames[2] = {"fz_vec", "fz_vec_fields"};
static const VectorDistance Distances[3] = {VDIST_L2, VDIST_COSINE, VDIST_IP};
static const float4 QueryVector[3] = {1.0f, 0.0f, 0.5f};

/* Load the tables and start the peer on the port of their server. */
void
VectorHarnessInit(void)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	const char *url;

	for (int i = 0; i < 2; i++)
		Tables[i] = VectorLoadTable(HarnessRelid(TableNames[i]), GetUserId());
	MemoryContextSwitchTo(old);
	url = PgpolyGetOption(Tables[0]->server->options, "url", NULL);
	HttpPeerStart(atoi(strrchr(url, ':') + 1));
}

/* Check every column of a row (the oracle). */
static void
check_row(VectorTable *tbl, VectorRow *row)
{
	Datum	   *values = palloc(sizeof(Datum) * tbl->natts);
	bool	   *nulls = palloc(sizeof(bool) * tbl->natts);

	VectorRowToValues(tbl, row, true, NULL, values, nulls);
	HarnessRow();
	for (int i = 0; i < tbl->natts; i++)
		if (tbl->cols[i].role != VCOL_NONE && !nulls[i])
			HarnessCheckDatum(tbl->cols[i].typid, tbl->cols[i].typmod, values[i],
							  tbl->cols[i].name);
}

/* A write of tbl: id, embedding, document and metadata. */
static VectorWrite *
make_write(VectorTable *tbl, VectorWriteKind kind, const char *id, float4 x)
{
	VectorWrite *w = palloc0(sizeof(VectorWrite));

	w->kind = kind;
	w->tbl = tbl;
	w->row.id = pstrdup(id);
	w->row.dim = 3;
	w->row.emb = palloc(sizeof(float4) * 3);
	w->row.emb[0] = x;
	w->row.emb[1] = 0.5f;
	w->row.emb[2] = -x;
	w->row.document = psprintf("document %s", id);
	w->row.metadata = psprintf("{\"grp\":\"a\",\"n\":%s}", id);
	w->send_metadata = w->row.metadata;
	return w;
}

/* Buffered writes of tbl, as PgpolyWrite for a scan's overlay. */
static List *
pending_writes(VectorTable *tbl)
{
	List	   *pending = NIL;
	VectorWrite *w[3] = {
		make_write(tbl, VW_UPSERT, "1", 1.0f),
		make_write(tbl, VW_UPSERT, "7", 0.25f),
		make_write(tbl, VW_DELETE, "2", 0.0f)
	};

	for (int i = 0; i < 3; i++)
	{
		PgpolyWrite *pw = palloc0(sizeof(PgpolyWrite));

		pw->relid = tbl->relid;
		pw->payload = w[i];
		pending = lappend(pending, pw);
	}
	return pending;
}

/* A pushed filter: grp = 'a' AND n >= 1. */
static List *
filter_conds(void)
{
	VectorCondEval *a = palloc0(sizeof(VectorCondEval));
	VectorCondEval *b = palloc0(sizeof(VectorCondEval));

	a->key = "grp";
	a->op = VCOND_EQ;
	a->value = "\"a\"";
	b->key = "n";
	b->op = VCOND_GE;
	b->value = "1";
	return list_make2(a, b);
}

/* A scan of tbl as spec says, every row checked. */
static void
run_scan(VectorTable *tbl, VectorScanSpec *spec, List *pending)
{
	PgpolyConnection *conn = VectorGetConnection(tbl);
	VectorScan *scan;
	VectorRow  *row;

	spec->include = VINC_EMBEDDING | VINC_DOCUMENT | VINC_METADATA;
	spec->where = VectorWhereJson(tbl, spec->conds);
	scan = VectorScanBegin(tbl, conn, spec, pending);
	while ((row = VectorScanNext(scan)) != NULL)
	{
		check_row(tbl, row);
		CHECK_FOR_INTERRUPTS();
	}
}

/* pgpoly.vector_search() through SQL, every column of the result checked. */
static void
flow_search(VectorTable *tbl, uint8_t opt)
{
	static const char *const filters[4] = {
		"NULL", "'{\"grp\": \"a\"}'", "'{\"n\": [1, 2.5]}'", "'{\"grp\": [\"a\", \"b\"], \"flag\": true}'"
	};
	int			rc;

	SPI_connect();
	rc = SPI_execute(psprintf("SELECT * FROM fz_vector_search('%s', '{1,0,0.5}', 3, %s)",
							  tbl->relname, filters[(opt >> 2) & 3]), false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "vector_search: SPI_execute returned %d", rc);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HarnessRow();
		for (int c = 1; c <= SPI_tuptable->tupdesc->natts; c++)
		{
			bool		isnull;
			Datum		v = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, c, &isnull);

			if (!isnull)
				HarnessCheckDatum(SPI_gettypeid(SPI_tuptable->tupdesc, c), -1, v,
								  SPI_fname(SPI_tuptable->tupdesc, c));
		}
	}
	SPI_finish();
}

/* IMPORT FOREIGN SCHEMA FROM SERVER fuzz_vec, through the routine. */
static void
flow_import(VectorTable *tbl)
{
	ImportForeignSchemaStmt *stmt = makeNode(ImportForeignSchemaStmt);
	FdwRoutine *routine = GetFdwRoutineByServerId(tbl->server->serverid);

	stmt->server_name = tbl->server->servername;
	stmt->remote_schema = "default";
	stmt->local_schema = "public";
	stmt->list_type = FDW_IMPORT_SCHEMA_ALL;
	HarnessCheckImport(routine->ImportForeignSchema(stmt, tbl->server->serverid));
}

/* Buffered writes of every kind, sent as the flush at COMMIT sends them. */
static void
flow_writes(VectorTable *tbl)
{
	List	   *writes = list_make4(make_write(tbl, VW_UPSERT, "1", 1.0f),
									make_write(tbl, VW_UPSERT, "2", 2.0f),
									make_write(tbl, VW_DELETE, "3", 0.0f),
									make_write(tbl, VW_INSERT, "4", 4.0f));

	VectorSendWrites(VectorGetConnection(tbl), writes);
}

/* One input: set the peer's script, run the chosen flow. */
void
VectorHarnessOne(const VectorHarnessProvider *p, const uint8_t *data, size_t size)
{
	VectorTable *tbl;
	VectorScanSpec *spec;
	HttpPeerReply lookup;
	int			flow;
	int			dist;
	bool		canned;

	if (size < 2)
		return;
	flow = data[0] & 7;
	dist = ((data[0] >> 3) & 3) % 3;
	/* IMPORT lists the collections first: nothing to look up */
	canned = (data[0] & 0x20) == 0 && flow != VFLOW_IMPORT;
	tbl = Tables[data[1] & 1];
	lookup = (HttpPeerReply) {200, HTTP_PEER_LENGTH, p->collection(dist), 0};
	lookup.len = strlen(lookup.body);
	HarnessScript(data + 2, size - 2, &lookup, canned, p->envelope, flow);
	spec = palloc0(sizeof(VectorScanSpec));
	if (data[1] & 2)
		spec->conds = filter_conds();
	switch (flow)
	{
		case VFLOW_PAGES:
			run_scan(tbl, spec, NIL);
			break;
		case VFLOW_IDS:
			spec->by_ids = true;
			spec->ids = list_make4("1", "2", "5c56c793-69f3-4fbf-87e6-c4bf54c28c26", "x y");
			run_scan(tbl, spec, NIL);
			break;
		case VFLOW_KNN:
		case VFLOW_LOCAL:
			spec->query = (float4 *) QueryVector;
			spec->dim = 3;
			spec->metric = Distances[dist];
			spec->k = 3;
			run_scan(tbl, spec, flow == VFLOW_LOCAL ? pending_writes(tbl) : NIL);
			break;
		case VFLOW_SEARCH:
			flow_search(tbl, data[1]);
			break;
		case VFLOW_COUNT:
			(void) VectorRemoteCount(tbl);
			break;
		case VFLOW_IMPORT:
			flow_import(tbl);
			break;
		case VFLOW_WRITES:
			flow_writes(tbl);
			break;
	}
	HarnessCompleted();
}

/* After each input: the peer resets its end (no TIME_WAIT anywhere). */
void
VectorHarnessDone(void)
{
	HttpPeerReset();
}
