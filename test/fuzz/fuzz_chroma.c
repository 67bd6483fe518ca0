/*-------------------------------------------------------------------------
 *
 * fuzz_chroma.c
 *		  Fuzz harness "chroma": Chroma (REST API v2) responses into vector
 *		  rows, end to end.
 *
 * The flows, the tables and the input layout are vector_harness.c's, on a
 * pgpoly_vector server with provider 'chroma' (test/fuzz/chroma.sql).  The
 * bytes go through libcurl and pgpoly's HTTP client, the collection lookup
 * (by name, then by UUID, re-resolved on 404), the parsing of /get and
 * /query responses (parallel arrays: ids, embeddings, documents,
 * metadatas, distances), the conversion of distances, metadata fields and
 * embeddings into columns, Chroma's error bodies and the collection list.
 *
 * Structured replies: each piece is one record as a JSON array [id,
 * embedding, document, metadata, distance] (missing elements are null);
 * the harness transposes the pieces into a /get response, or for the k-NN
 * flows into a /query response (one more level of arrays); for count the
 * first piece is the count, for IMPORT the pieces are the collections.
 *
 * test/fuzz/fuzz_chroma.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "fuzz.h"
#include "vector_harness.h"

#define NFIELDS 5

/* The canned GET .../collections/fz_vec of Chroma 1.0 (distance 0-2). */
static const char *
chroma_collection(int distance)
{
	static const char *const spaces[3] = {"l2", "cosine", "ip"};

	return psprintf("{\"id\":\"6b5b8c5e-6f2a-4f0e-9a51-4a5c3c1c9a01\",\"name\":\"fz_vec\","
					"\"configuration_json\":{\"hnsw\":{\"space\":\"%s\",\"ef_construction\":100,"
					"\"ef_search\":100,\"max_neighbors\":16,\"resize_factor\":1.2,"
					"\"sync_threshold\":1000},\"spann\":null,\"embedding_function\":null},"
					"\"metadata\":null,\"dimension\":3,\"tenant\":\"default_tenant\","
					"\"database\":\"default_database\",\"log_position\":0,\"version\":0}",
					spaces[distance]);
}

/* Records (pieces: [id, embedding, document, metadata, distance]) transposed. */
static char *
transpose(List *pieces, bool query)
{
	static const char *const names[NFIELDS] = {
		"ids", "embeddings", "documents", "metadatas", "distances"
	};
	StringInfoData cols[NFIELDS];
	StringInfoData buf;
	ListCell   *lc;
	int			nrec = 0;

	for (int k = 0; k < NFIELDS; k++)
		initStringInfo(&cols[k]);
	foreach(lc, pieces)
	{
		List	   *items = HarnessArrayItems(lfirst(lc));

		if (items == NIL)
			continue;
		for (int k = 0; k < NFIELDS; k++)
			appendStringInfo(&cols[k], "%s%s", nrec > 0 ? "," : "",
							 k < list_length(items) ? (char *) list_nth(items, k) : "null");
		nrec++;
	}
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (int k = 0; k < NFIELDS; k++)
		appendStringInfo(&buf, "%s\"%s\":%s[%s]%s", k > 0 ? "," : "", names[k],
						 query ? "[" : "", cols[k].data, query ? "]" : "");
	appendStringInfoString(&buf, ",\"uris\":null,\"data\":null,"
						   "\"include\":[\"embeddings\",\"documents\",\"metadatas\"]}");
	return buf.data;
}

/* The body of a structured reply for flow. */
static char *
chroma_envelope(int flow, List *pieces, size_t *len)
{
	char	   *body;

	if (flow == VFLOW_COUNT)
		body = pieces ? pstrdup(linitial(pieces)) : pstrdup("0");
	else if (flow == VFLOW_IMPORT)
		body = HarnessJoin(pieces, "[", "]");
	else
		body = transpose(pieces, flow == VFLOW_KNN || flow == VFLOW_SEARCH);
	*len = strlen(body);
	return body;
}

static const VectorHarnessProvider Chroma = {chroma_collection, chroma_envelope};

/* One input. */
static void
chroma_one(const uint8_t *data, size_t size)
{
	VectorHarnessOne(&Chroma, data, size);
}

const PgpolyFuzzHarness pgpoly_fuzz_chroma = {
	"chroma", VectorHarnessInit, chroma_one, VectorHarnessDone, HarnessDisconnect
};
