/*-------------------------------------------------------------------------
 *
 * keyhash.c
 *		  Hash tables keyed by bytes that anyone may choose.
 *
 * The keys the stores' hash tables hold (Redis keys met by a SCAN or
 * written by an INSERT ... SELECT, row identities, Elasticsearch document
 * ids) come from a store or from rows someone else may write.  With a hash
 * they can predict, keys made to share a hash would all land in one chain
 * or one run of slots, and n of them would cost n^2 key comparisons.  So
 * they are hashed with a secret the backend draws once
 * (PgpolyKeyHashSeed).  An unseeded multiply-and-shift mix had such keys
 * even under any seed: flipping the top bit of a word flips the same two
 * bits of the state whatever it is (multiplying by an odd constant adds
 * 2^63), which the next word flips back; PgpolyKeyHash (pgpoly.h, inline
 * for the Redis key sets' probes) folds a 128-bit product instead.
 *
 * src/keyhash.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/hsearch.h"

#include "pgpoly.h"

uint64		PgpolyKeyHashSecret[2];
bool		PgpolyKeyHashSeeded = false;

/* Draw the backend's PgpolyKeyHash secret, once, before the first table. */
void
PgpolyKeyHashSeed(void)
{
	if (PgpolyKeyHashSeeded)
		return;
	if (!pg_strong_random(PgpolyKeyHashSecret, sizeof(PgpolyKeyHashSecret)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random hash seed")));
	PgpolyKeyHashSecret[1] |= 1;	/* an odd multiplier */
	PgpolyKeyHashSeeded = true;
}

/* Hash of the bytes a PgpolyKeyRef points at (dynahash's hash function). */
static uint32
keyref_hash(const void *key, Size keysize)
{
	const PgpolyKeyRef *r = key;

	return PgpolyKeyHash(r->key, r->len);
}

/* Equality of the bytes two PgpolyKeyRefs point at (0 when equal). */
static int
keyref_match(const void *a, const void *b, Size keysize)
{
	const PgpolyKeyRef *x = a;
	const PgpolyKeyRef *y = b;

	return x->len != y->len || memcmp(x->key, y->key, x->len) != 0;
}

/*
 * A hash table in cxt keyed by PgpolyKeyRef (the first field of its
 * entries of entrysize), hashed with the backend's secret.  An entry's
 * bytes must live as long as the entry: the caller points the key at
 * memory it keeps.
 */
HTAB *
PgpolyKeyTable(const char *name, Size entrysize, MemoryContext cxt)
{
	HASHCTL		ctl;

	PgpolyKeyHashSeed();
	ctl.keysize = sizeof(PgpolyKeyRef);
	ctl.entrysize = entrysize;
	ctl.hash = keyref_hash;
	ctl.match = keyref_match;
	ctl.hcxt = cxt;
	return hash_create(name, 256, &ctl,
					   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
}

/*
 * The entry of key (len bytes) in table (a PgpolyKeyTable); a new one
 * (*found false) points at a copy of the bytes in cxt, which must live as
 * long as the table, and the caller sets the rest of it.
 */
void *
PgpolyKeyTableEnter(HTAB *table, MemoryContext cxt, const char *key, size_t len,
					bool *found)
{
	PgpolyKeyRef ref = {key, len};
	PgpolyKeyRef *e = hash_search(table, &ref, HASH_ENTER, found);

	if (!*found)
	{
		char	   *copy = MemoryContextAlloc(cxt, Max(len, 1));

		memcpy(copy, key, len);
		e->key = copy;
	}
	return e;
}

/* The entry of key (len bytes) in table (a PgpolyKeyTable), or NULL. */
void *
PgpolyKeyTableFind(HTAB *table, const char *key, size_t len)
{
	PgpolyKeyRef ref = {key, len};

	return hash_search(table, &ref, HASH_FIND, NULL);
}
