/*-------------------------------------------------------------------------
 *
 * vector_harness.h
 *		  The flows of the vector service harnesses "chroma" and "qdrant"
 *		  (vector_harness.c), parameterized by the provider's replies.
 *
 * test/fuzz/vector_harness.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGPOLY_FUZZ_VECTOR_HARNESS_H
#define PGPOLY_FUZZ_VECTOR_HARNESS_H

#include "harness.h"

/* The request flows (byte 0, bits 0-2, of an input). */
enum
{
	VFLOW_PAGES,				/* a paged scan (get / scroll) */
	VFLOW_IDS,					/* a scan by ids */
	VFLOW_KNN,					/* k-NN through the service's query */
	VFLOW_LOCAL,				/* k-NN computed locally (buffered writes) */
	VFLOW_SEARCH,				/* pgpoly.vector_search() */
	VFLOW_COUNT,				/* use_remote_estimate's count */
	VFLOW_IMPORT,				/* IMPORT FOREIGN SCHEMA (list collections) */
	VFLOW_WRITES				/* buffered writes sent (upsert, delete ...) */
};

/* What differs between the two harnesses. */
typedef struct VectorHarnessProvider
{
	/* the canned description of the collection, for distance 0-2 */
	const char *(*collection) (int distance);
	HarnessEnvelope envelope;
} VectorHarnessProvider;

extern void VectorHarnessInit(void);
extern void VectorHarnessOne(const VectorHarnessProvider *p,
							 const uint8_t *data, size_t size);
extern void VectorHarnessDone(void);

#endif							/* PGPOLY_FUZZ_VECTOR_HARNESS_H */
