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

/*
 * The table of PgpolyMoveRow, in cxt: for stores that hold one row per
 * identity (a Redis key or member, a vector record's id), where a row
 * moved onto the identity of another row overwrites it.
 */
HTAB *
PgpolyMoves(MemoryContext cxt)
{
	return PgpolyKeyTable("pgpoly rows of an UPDATE", sizeof(PgpolyHeldRow), cxt);
}

/*
 * Note that an UPDATE writes the row met at identity o (olen bytes) at
 * identity n (nlen bytes), in moves (PgpolyMoves, whose context cxt keeps
 * the identities' copies).  A row moved onto the identity of another row
 * of the statement would overwrite it, or be overwritten by it: a swap of
 * two identities would leave one row, and a shift in the wrong order lose
 * rows.  So that is refused: PGPOLY_MOVED_ONTO_OLD when the row at o was
 * overwritten by a row the statement moved onto it, PGPOLY_MOVED_ONTO_NEW
 * when the row moves onto a row the statement met and left there or moved
 * there; the caller reports either as a unique key's violation
 * (PgpolyMovedOntoError), before anything of the row is written.  A move
 * onto an identity the statement does not touch is PGPOLY_MOVE_OK, as an
 * INSERT there would be.
 */
PgpolyMoveCheck
PgpolyMoveRow(HTAB *moves, MemoryContext cxt, const char *o, size_t olen,
			  const char *n, size_t nlen)
{
	PgpolyHeldRow *e;
	bool		found;

	bool		in_place = olen == nlen && memcmp(o, n, olen) == 0;

	/* a row moved in and held lands at o after this one moved away */
	e = PgpolyKeyTableFind(moves, o, olen);
	if (e != NULL && e->moved_onto && (in_place || !e->held_in))
		return PGPOLY_MOVED_ONTO_OLD;
	e = PgpolyKeyTableEnter(moves, cxt, n, nlen, &found);
	if (in_place)
	{
		if (!found)
			e->moved_onto = e->held_in = false;
		return PGPOLY_MOVE_OK;
	}
	if (found)
		return PGPOLY_MOVED_ONTO_NEW;
	e->moved_onto = true;
	e->held_in = false;
	e = PgpolyKeyTableFind(moves, o, olen);
	if (e != NULL && !e->held_in)
	{
		const char *key = e->id.key;

		hash_search(moves, &e->id, HASH_REMOVE, NULL);
		pfree((char *) key);
	}
	return PGPOLY_MOVE_OK;
}

/*
 * Note that an UPDATE through a partitioned table moves a row into the
 * table it updates too (a routed INSERT) at identity n (nlen bytes), in
 * moves.  Landing on a row the statement met and left or moved there is
 * PGPOLY_MOVED_ONTO_NEW; else a row of the table met there later is
 * PGPOLY_MOVED_ONTO_OLD (PgpolyMoveRow), as for a row the UPDATE itself
 * moved there.  Unless held: immediate mode sends the rows moved in at
 * the statement's end (PgpolyModifyBegin), so one met there later may
 * still move away first.
 */
PgpolyMoveCheck
PgpolyMoveIn(HTAB *moves, MemoryContext cxt, const char *n, size_t nlen,
			 bool held)
{
	bool		found;
	PgpolyHeldRow *e = PgpolyKeyTableEnter(moves, cxt, n, nlen, &found);

	if (found)
		return PGPOLY_MOVED_ONTO_NEW;
	e->moved_onto = true;
	e->held_in = held;
	return PGPOLY_MOVE_OK;
}

/*
 * ERROR 23505 for a row of an UPDATE of foreign table relname moved onto
 * the row at identity (printable, as "key \"k\"") of store, which holds one
 * row there (PgpolyMoveRow; how: PGPOLY_MOVED_ONTO_OLD or _NEW).
 */
void
PgpolyMovedOntoError(const char *relname, const char *store, PgpolyMoveCheck how,
					 const char *identity)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("UPDATE of foreign table \"%s\" %s %s",
					relname, how == PGPOLY_MOVED_ONTO_OLD ? "moves another row onto" :
					"moves two rows onto", identity),
			 errdetail("%s holds one row there: moving another row of the statement onto it would overwrite it.",
					   store),
			 errhint("Move the rows in separate statements, each onto an identity no row holds.")));
}
