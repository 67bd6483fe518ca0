/*-------------------------------------------------------------------------
 *
 * keylock.c
 *		  Transaction locks on the keys of a table: the one mechanism that
 *		  orders writers of the same key (outbox queueing, feature store).
 *
 * A key's lock is its table's bucket of it: an advisory lock tag
 * (database, relid, bucket, KEYLOCK_FIELD4) in ExclusiveLock, one of
 * KEYLOCK_BUCKETS per table, taken under a ShareLock on the table's
 * "all buckets" tag; a writer of many keys takes that one in ExclusiveLock
 * instead.  Field 4 is pgpoly's own, so SQL advisory locks (field 4 is 1
 * or 2) never meet these.  Invariants:
 *	- locks are transaction locks (released at COMMIT or ROLLBACK, after
 *	  the pre-commit flush of the stores; with a subtransaction that aborts
 *	  when taken in it) and never wait on a store;
 *	- one call takes the table lock first, then its buckets in ascending
 *	  order, so two calls never wait on each other in a cycle (calls of one
 *	  transaction in another order can: PostgreSQL's deadlock detector
 *	  ends one with 40P01);
 *	- a transaction holds at most KEYLOCK_MAX_BUCKETS bucket locks per
 *	  table: past that it takes the table's exclusive lock, so that the
 *	  shared lock table is never exhausted by one long transaction.
 *
 * src/keylock.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "utils/memutils.h"

#include "pgpoly.h"

/* Field 4 of the lock tags, bucket count, the table's tag, bucket limit. */
#define KEYLOCK_FIELD4			0x4F42
#define KEYLOCK_BUCKETS			4096
#define KEYLOCK_ALL_BUCKETS		0xFFFFFFFF
#define KEYLOCK_MAX_BUCKETS		64

/* The bucket locks a transaction took on one table. */
typedef struct HeldTable
{
	Oid			relid;
	int			count;
} HeldTable;

/* Bucket locks taken per table in this transaction (HeldTable *). */
static List *HeldBuckets = NIL;	/* in TopTransactionContext */
static LocalTransactionId HeldLxid = InvalidLocalTransactionId;

/* The lock tag of (relid, bucket). */
static void
key_lock_tag(LOCKTAG *tag, Oid relid, uint32 bucket)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, relid, bucket, KEYLOCK_FIELD4);
}

/* qsort comparator of uint32. */
static int
compare_uint32(const void *a, const void *b)
{
	uint32		x = *(const uint32 *) a;
	uint32		y = *(const uint32 *) b;

	return x < y ? -1 : x > y;
}

/*
 * The count of relid's bucket locks in this transaction (made 0 on first
 * use).  The entries live in TopTransactionContext and are forgotten when
 * the local transaction id changes.
 */
static int *
held_count(Oid relid)
{
	ListCell   *lc;
	HeldTable  *h;
	MemoryContext old;

	if (HeldLxid != MyProc->lxid)
	{
		HeldBuckets = NIL;
		HeldLxid = MyProc->lxid;
	}
	foreach(lc, HeldBuckets)
	{
		h = lfirst(lc);
		if (h->relid == relid)
			return &h->count;
	}
	old = MemoryContextSwitchTo(TopTransactionContext);
	h = palloc0(sizeof(HeldTable));
	h->relid = relid;
	HeldBuckets = lappend(HeldBuckets, h);
	MemoryContextSwitchTo(old);
	return &h->count;
}

/*
 * How many of the n buckets of relid this transaction does not hold yet:
 * those locking them would add (a call locking again what it locked
 * before, get_online_features' second look, adds none).
 */
static int
not_held(Oid relid, const uint32 *buckets, int n)
{
	int			count = 0;

	for (int i = 0; i < n; i++)
	{
		LOCKTAG		tag;

		key_lock_tag(&tag, relid, buckets[i]);
		if (!LockHeldByMe(&tag, ExclusiveLock))
			count++;
	}
	return count;
}

/*
 * Take the n locks tags[] in modes[], in order, counting in *fresh those
 * the transaction did not hold yet; without wait, give back those taken
 * and return false as soon as one is held by another transaction.
 */
static bool
acquire_all(LOCKTAG *tags, LOCKMODE *modes, int n, bool wait, int *fresh)
{
	*fresh = 0;
	for (int i = 0; i < n; i++)
	{
		LockAcquireResult r = LockAcquire(&tags[i], modes[i], false, !wait);

		if (r == LOCKACQUIRE_NOT_AVAIL)
		{
			while (--i >= 0)
				LockRelease(&tags[i], modes[i], false);
			return false;
		}
		if (r == LOCKACQUIRE_OK)
			(*fresh)++;
	}
	return true;
}

/*
 * Lock the keys keys[0..n-1] (lens[i] bytes each, in the store's form: UTF-8
 * text, PgpolyServerToStore) of table relid until the
 * end of the transaction (see the file header); n < 0 locks every key of
 * the table.  Waits for the transactions holding them when wait, else
 * returns false (taking nothing) if one does.  Returns true once held.
 */
bool
PgpolyLockKeys(Oid relid, char **keys, const size_t *lens, int n, bool wait)
{
	uint32	   *buckets = palloc(sizeof(uint32) * Max(n, 1));
	LOCKTAG    *tags = palloc(sizeof(LOCKTAG) * (Max(n, 0) + 1));
	LOCKMODE   *modes = palloc(sizeof(LOCKMODE) * (Max(n, 0) + 1));
	int			distinct = 0;
	int		   *held;
	int			fresh;

	key_lock_tag(&tags[0], relid, KEYLOCK_ALL_BUCKETS);
	if (n == 0 || LockHeldByMe(&tags[0], ExclusiveLock))
		return true;			/* nothing to lock, or all of it held */
	for (int i = 0; i < n; i++)
		buckets[i] = hash_bytes((const unsigned char *) keys[i], lens[i]) % KEYLOCK_BUCKETS;
	qsort(buckets, Max(n, 0), sizeof(uint32), compare_uint32);
	for (int i = 0; i < n; i++)
		if (i == 0 || buckets[i] != buckets[i - 1])
			buckets[distinct++] = buckets[i];
	held = held_count(relid);
	if (n < 0 || *held + not_held(relid, buckets, distinct) > KEYLOCK_MAX_BUCKETS)
	{
		modes[0] = ExclusiveLock;
		return acquire_all(tags, modes, 1, wait, &fresh);
	}
	modes[0] = ShareLock;
	for (int i = 0; i < distinct; i++)
	{
		key_lock_tag(&tags[i + 1], relid, buckets[i]);
		modes[i + 1] = ExclusiveLock;
	}
	if (!acquire_all(tags, modes, distinct + 1, wait, &fresh))
		return false;
	*held += fresh;
	return true;
}
