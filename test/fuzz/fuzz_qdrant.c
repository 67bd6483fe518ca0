/*-------------------------------------------------------------------------
 *
 * fuzz_qdrant.c
 *		  Fuzz harness "qdrant": Qdrant (REST API) responses into vector
 *		  rows, end to end.
 *
 * The flows, the tables and the input layout are vector_harness.c's, on a
 * pgpoly_vector server with provider 'qdrant' (test/fuzz/qdrant.sql).  The
 * bytes go through libcurl and pgpoly's HTTP client, the collection
 * description (size, distance, named vectors), the parsing of points
 * (integer or UUID ids, vectors, payloads with the document key, scores)
 * of retrieve, scroll (next_page_offset) and query responses, the
 * conversion of scores, metadata fields and vectors into columns, Qdrant's
 * error bodies and the collection list with each collection described.
 *
 * Structured replies: each piece is one point object; the harness wraps
 * them in {"result": [...]} for a retrieve by ids, in {"result":
 * {"points": [...], "next_page_offset": ...}} for scrolls and queries
 * (with a next page when there are two points or more), in a collection
 * description whose points_count is the first piece for the count, and in
 * {"result": {"collections": [...]}} for IMPORT.
 *
 * test/fuzz/fuzz_qdrant.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fuzz.h"
#include "vector_harness.h"

#define STATUS ",\"status\":\"ok\",\"time\":0.0001}"

/* The canned GET /collections/fz_vec of Qdrant (distance 0-2). */
static const char *
qdrant_collection(int distance)
{
	static const char *const names[3] = {"Euclid", "Cosine", "Dot"};

	return psprintf("{\"result\":{\"status\":\"green\",\"optimizer_status\":\"ok\","
					"\"indexed_vectors_count\":0,\"points_count\":4,\"segments_count\":1,"
					"\"config\":{\"params\":{\"vectors\":{\"size\":3,\"distance\":\"%s\"},"
					"\"shard_number\":1,\"replication_factor\":1,\"on_disk_payload\":true}},"
					"\"payload_schema\":{}}" STATUS, names[distance]);
}

/* The body of a structured reply for flow. */
static char *
qdrant_envelope(int flow, List *pieces, size_t *len)
{
	char	   *body;

	switch (flow)
	{
		case VFLOW_IDS:
			body = HarnessJoin(pieces, "{\"result\":[", "]" STATUS);
			break;
		case VFLOW_COUNT:
			body = psprintf("{\"result\":{\"points_count\":%s,\"config\":{\"params\":"
							"{\"vectors\":{\"size\":3,\"distance\":\"Cosine\"}}}}" STATUS,
							pieces ? (char *) linitial(pieces) : "0");
			break;
		case VFLOW_IMPORT:
			body = HarnessJoin(pieces, "{\"result\":{\"collections\":[", "]}" STATUS);
			break;
		case VFLOW_WRITES:
			body = pstrdup("{\"result\":{\"operation_id\":1,\"status\":\"completed\"}" STATUS);
			break;
		default:
			body = psprintf("%s,\"next_page_offset\":%s}" STATUS,
							HarnessJoin(pieces, "{\"result\":{\"points\":[", "]"),
							list_length(pieces) >= 2 ? "42" : "null");
			break;
	}
	*len = strlen(body);
	return body;
}

static const VectorHarnessProvider Qdrant = {qdrant_collection, qdrant_envelope};

/* One input. */
static void
qdrant_one(const uint8_t *data, size_t size)
{
	VectorHarnessOne(&Qdrant, data, size);
}

const PgpolyFuzzHarness pgpoly_fuzz_qdrant = {
	"qdrant", VectorHarnessInit, qdrant_one, VectorHarnessDone, HarnessDisconnect
};
