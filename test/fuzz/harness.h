/*-------------------------------------------------------------------------
 *
 * harness.h
 *		  What the JSON fuzz harnesses share (harness.c): the input's
 *		  script of HTTP replies, structured bodies, and the oracles.
 *
 * test/fuzz/harness.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGPOLY_FUZZ_HARNESS_H
#define PGPOLY_FUZZ_HARNESS_H

#include "postgres.h"

#include "nodes/pg_list.h"

#include "http_peer.h"

/*
 * Builds the body of a structured reply from its pieces (char *, each a
 * valid JSON value) for the request flow flow; returns a palloc'd body.
 */
typedef char *(*HarnessEnvelope) (int flow, List *pieces, size_t *len);

extern void HarnessScript(const uint8_t *data, size_t size,
						  const HttpPeerReply *prefix, int nprefix,
						  HarnessEnvelope envelope, int flow);
extern void HarnessRow(void);
extern void HarnessCompleted(void);
extern List *HarnessArrayItems(const char *json);
extern char *HarnessJoin(List *pieces, const char *open, const char *close);
extern void HarnessCheckDatum(Oid typid, int32 typmod, Datum value,
							  const char *what);
extern void HarnessCheckImport(List *commands);
extern void HarnessDisconnect(void);
extern Oid	HarnessRelid(const char *name);

#endif							/* PGPOLY_FUZZ_HARNESS_H */
