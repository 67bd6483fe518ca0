/*-------------------------------------------------------------------------
 *
 * redis_scan.c
 *		  Reading a Redis table: key lookups, SCAN, read-your-writes.
 *
 * A RedisScan produces rows round by round.  A round is one pipelined
 * request: the fetch of up to fetch_size keys (one fetch command per key,
 * plus TTL when the _ttl column is read), and in a full scan the next SCAN
 * step on every node not finished, so a page of keys costs one round trip,
 * not two.  Keys come either from a list (pushed down key = / IN / ANY, or
 * the outer side of a batched join) or from SCAN MATCH on the glob-escaped
 * key prefix, deduplicated since SCAN may return a key twice.  On a Redis
 * Cluster every primary is scanned, all of them in each round, each with
 * its own cursor; the keys of a round are fetched from the nodes serving
 * their slots.  A key that moves between nodes during the scan (a slot
 * being resharded) could escape both cursors, so a cluster scan compares
 * what the primaries say of their slots before and after, and reads the
 * keys of every slot that moved or was moving from its nodes (those
 * already returned are skipped).  While an immediate-mode writer's
 * statement runs, its writes land during the SCAN, which may return keys
 * added during it: the SCAN then runs to its end, keys only, before the
 * first row (RedisScan.collect), and the rows are the keys it listed.
 * An immediate-mode write from elsewhere (a function the query calls, a
 * statement between two FETCHes) makes an open SCAN list its remaining
 * keys before it is sent (drain_scan), and collect from then on.
 *
 * Rounds overlap with the caller's work: as soon as a round's replies are
 * read, the next round is sent (RedisSend), so Redis answers it while the
 * rows of this one are converted and consumed; its replies are read when
 * they are needed.  Two round contexts alternate.  A SCAN page is read for
 * its cursor and kept; its keys are taken with the round's other pages',
 * one of each in turn (on a cluster every primary's keys then share each
 * fetch round), and a key-only scan takes them once the next page is asked
 * for, so that Redis walks that page meanwhile.
 *
 * When the query reads no value of the table (count(*), the key alone, a
 * semi or anti join on the key), nothing is fetched: a full scan's rows are
 * the keys SCAN returns (SCAN ... TYPE filters the type), and a key lookup
 * asks TYPE instead of the value (which also checks the key's type as the
 * fetch command would).  Writes buffered by the transaction turn this off:
 * the read-your-writes overlay needs each key's contents.  Otherwise only
 * the columns the query reads are converted.
 *
 * When the query reads some fields of a hash (and perhaps its key), and its
 * caller answers the same for a hash none of whose read fields is set as
 * for a missing key (RedisScanAllowFieldFetch: a left join reading fields
 * alone, or a clause no row with such a field NULL passes), only those
 * fields are fetched, by HMGET: HMGET cannot tell such a hash from a
 * missing key, and need not.  Buffered writes still apply: they set or
 * remove fields, or replace or delete the whole key, and the fields read
 * come out as a full fetch would give them.
 *
 * Every key's remote contents become a RedisKeyState; writes of this
 * transaction that are still buffered (write_mode 'transactional') are then
 * applied to it, so a transaction reads its own writes.  Keys that exist
 * only in the buffer are produced after the remote SCAN ends.
 *
 * Memory: key states live in their round's context, reset when the round
 * after next is built; their items point straight into the round's replies
 * (no copies), which redis_io.c builds in that same context.  The keys of a
 * full scan are copied once into the scan's key memory, where the set of
 * keys seen points to them.  Datums of the current row live in a row
 * context reset at each row; they are read from the stored bytes with
 * their lengths (convert.c), one fixed-settings scope per row.
 *
 * fdw/redis_scan.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <hiredis/hiredis.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "redis.h"

/* A Redis key as hash tables see it (RedisKeyRef, redis.h). */
typedef RedisKeyRef KeyRef;

/* Buffered writes of one table, by key. */
struct RedisOverlay
{
	HTAB	   *bykey;			/* OverlayEntry, keyed by KeyRef */
};

typedef struct OverlayEntry
{
	KeyRef		ref;			/* hash key: points at a RedisWrite's key */
	List	   *writes;			/* RedisWrite *, in write order */
	bool		seen;			/* met during the remote scan */
} OverlayEntry;

/* How a round reads the keys of its states. */
typedef enum FetchKind
{
	FETCH_VALUES,				/* the table type's fetch command (+ TTL) */
	FETCH_FIELDS,				/* HMGET of the hash fields the query reads */
	FETCH_TYPE,					/* TYPE: whether the key exists (and its type) */
	FETCH_NONE					/* nothing to fetch */
} FetchKind;

/* One pipelined request of a scan and the key states it yields. */
typedef struct ScanRound
{
	RedisScan  *scan;
	MemoryContext cxt;			/* states, keys and replies of the round */
	RedisKeyState *states;
	int			nstates;
	int			maxstates;
	redisReply **pages;			/* SCAN replies whose keys are not taken yet
								 * (kept in cxt) */
	int			npages;
	FetchKind	fetch;
	int			nwatch;			/* WATCH replies, first (RedisScanWatch) */
	int			per_key;		/* fetch replies per state */
	int			nfetch;			/* fetch replies, first */
	int			nscan;			/* SCAN replies, after them */
	int		   *scan_node;		/* the node of each */
	bool		scan_rows;		/* key-only SCAN: its new keys are the rows */
	int			expected;		/* replies */
	int			received;		/* handled: always the first ones */
	int			base;			/* index of the first reply of the request
								 * the round is read by (0, or received when
								 * its rest is asked for again) */
	bool		handling;		/* a reply's handler runs (an error left it
								 * half done) */
	uint64		ticket;			/* sent; replies not read yet (RedisSend) */
	redisReply *error;			/* the first error, raised when the round is used */
	int			error_state;	/* the state it concerns, or -1 */
	int			moved_state;	/* states from here on are keys of moved
								 * slots, which no TYPE filter saw (else
								 * INT_MAX) */
	bool		ready;			/* built (and sent): its rows come next */
	bool		streaming;		/* its keys come in pieces (RedisScanAddKeys) */
	bool		lazy;			/* current, its replies read as its states
								 * are asked for (RedisScanTakeKeysLazily) */
	int			nsent;			/* states whose fetch was appended */
} ScanRound;

/* What building a round gave. */
typedef enum RoundKind
{
	ROUND_NONE,					/* no round: the scan is over */
	ROUND_SENT,					/* its request is on its way */
	ROUND_LOCAL					/* its states are known without Redis */
} RoundKind;

/* The cursors one node's SCAN returned, as cursor_cycles follows them. */
typedef struct CursorWalk
{
	uint64		mark;			/* a cursor it returned */
	uint32		steps;			/* cursors since the mark was set */
	uint32		span;			/* steps until the mark moves (0: no mark) */
} CursorWalk;

struct RedisScan
{
	RedisTable *tbl;
	PgpolyConnection *conn;
	bool		need_ttl;
	RedisOverlay *ov;
	const bool *needed;			/* per column: the query reads it (NULL: all) */
	int		   *readcols;		/* the columns it reads, by index */
	int			nread;
	bool		one_row;		/* only whether a key has rows matters */
	bool		watch;			/* WATCH each key before it is read ... */
	bool		watch_keyonly;	/* ... even when no value is read */
	int			watch_level;	/* the subtransaction that began the scan's */
	SubTransactionId watch_subid;	/* node (RedisScanWatch) */
	int			keyonly;		/* no value is read: fetch none (-1: not decided) */
	bool		absent_no_row;	/* a hash without the fields read may be
								 * taken for a missing key */
	int			fields;			/* fetch the fields read alone (HMGET); -1:
								 * not decided */
	const char **fargv;			/* HMGET, the key (set per key), the fields */
	size_t	   *flens;
	int			nfargs;
	MemoryContext row_cxt;
	ScanRound	rounds[2];
	int			cur;			/* the round whose rows are handed out, -1 */

	/* key list mode */
	char	  **keys;
	size_t	   *lens;
	int			nkeys;
	int			keypos;

	/* SCAN mode: a cursor on each node holding keys (one but on a cluster) */
	MemoryContext seen_cxt;		/* all below; reset by a restart */
	char	   *pattern;
	char	   *literal;		/* pattern is literal || '*': the literal, */
	int			literal_len;	/* unescaped (else NULL) */
	int			nnodes;			/* 0: not started */
	char	  **nodes;			/* their addresses */
	char		(*cursors)[32];
	uint64	   *reopens;		/* each node's peer_reopen as its walk began */
	CursorWalk *walks;			/* the cursors each node returned */
	bool	   *node_done;
	bool		scan_done;		/* every cursor is back at 0 */
	bool		collect;		/* list every key before the first row
								 * (build_scan_round) */
	bool		ended;			/* the moved keys were collected */
	PgpolyPagedScan paged;		/* listed while SCAN has pages left */
	ScanRound  *drained;		/* drain_scan's SCAN steps (an error may
								 * leave pages of it to take) */
	RedisClusterView *view;		/* cluster: the slots as the SCAN began */
	RedisKeySet *seen;			/* every key met, pointing at its copy */
	char	   *arena;			/* where the next key copy goes */
	size_t		arena_left;
	char	  **queue;			/* keys met, not fetched yet (fetch mode) */
	size_t	   *queuelens;
	int			nqueue;
	int			maxqueue;
	int			queuepos;
	int			moved_from;		/* queue index of the first moved key
								 * (valid once ended) */
	bool		overlay_done;

	/* zset score range (NULL: all) */
	char	   *score_min;
	char	   *score_max;

	/* the row being handed out */
	int			cur_state;
	int			cur_item;

	int64		round_trips;
	RedisTrips *trips;			/* round trips per node */

	/* for error context */
	RedisKeyState *err_state;
	const char *err_field;
};

/* ----------------------------------------------------------------
 *		Key sets
 * ----------------------------------------------------------------
 */

/*
 * A set of Redis keys (any bytes, with their length), kept by pointer.
 * The keys are entries of an array, in the order they were added; the hash
 * table over them is open addressing with linear probing over 8-byte slots
 * (the key's hash and its entry), so that a probe, which misses the cache
 * once a scan has met ~100k keys, touches one slot, and the key's bytes
 * only when the hashes are equal.  The load stays at most one half.
 */
typedef struct KeyEntry
{
	const char *key;
	uint32		len;
	int			idx;			/* the index it was first given */
} KeyEntry;

typedef struct KeySlot
{
	uint32		hash;
	uint32		entry;			/* entries index + 1; 0: empty */
} KeySlot;

struct RedisKeySet
{
	MemoryContext cxt;
	KeySlot    *slots;
	void	   *slots_mem;		/* the chunk slots are in */
	uint32		mask;			/* slots - 1 (a power of two) */
	uint32		count;			/* entries */
	KeyEntry   *entries;		/* (mask + 1) / 2 of them: the most the load
								 * allows */
};

/*
 * Give set n zeroed slots (in set->cxt; set->slots_mem is the chunk to
 * free).  Slots are probed at random, one TLB miss each once they span
 * many pages, which is costly under virtualization: an array of 1 MB or
 * more goes on transparent huge pages where the kernel makes them
 * (PgpolyAllocHugePages).
 */
static void
keyset_alloc_slots(RedisKeySet *set, uint32 n)
{
	Size		size = sizeof(KeySlot) * (Size) n;
	char	   *p;

	if (size >= PGPOLY_HUGE_PAGE / 2)
		p = PgpolyAllocHugePages(set->cxt, size, &set->slots_mem);
	else
		p = set->slots_mem = MemoryContextAllocExtended(set->cxt, size, MCXT_ALLOC_HUGE);
	memset(p, 0, size);
	set->slots = (KeySlot *) p;
}

/* A set for about expected keys (it grows), in cxt. */
RedisKeySet *
RedisKeySetCreate(MemoryContext cxt, int expected)
{
	RedisKeySet *set = MemoryContextAlloc(cxt, sizeof(RedisKeySet));
	uint32		size = 16;

	PgpolyKeyHashSeed();

	while (size < (uint32) Min(Max(expected, 0), 1 << 28) * 2)
		size <<= 1;
	set->cxt = cxt;
	keyset_alloc_slots(set, size);
	set->entries = MemoryContextAllocExtended(cxt, sizeof(KeyEntry) * (size / 2),
											  MCXT_ALLOC_HUGE);
	set->mask = size - 1;
	set->count = 0;
	return set;
}

/*
 * The slot of the key (hash h) in set, or the empty slot where it goes.
 * key NULL: the first empty slot (growing: the keys are distinct).
 */
static inline KeySlot *
keyset_slot(RedisKeySet *set, const char *key, size_t len, uint32 h)
{
	uint32		i = h & set->mask;

	for (;;)
	{
		KeySlot    *s = &set->slots[i];

		if (s->entry == 0)
			return s;
		if (s->hash == h && key)
		{
			KeyEntry   *e = &set->entries[s->entry - 1];

			if (e->len == len && memcmp(e->key, key, len) == 0)
				return s;
		}
		i = (i + 1) & set->mask;
	}
}

/* Double the slots of set (and the room for entries). */
static void
keyset_grow(RedisKeySet *set)
{
	KeySlot    *old = set->slots;
	void	   *old_mem = set->slots_mem;
	uint32		n = set->mask + 1;

	if (n >= (1U << 30))
		elog(ERROR, "too many Redis keys in one set");
	keyset_alloc_slots(set, n * 2);
	set->mask = n * 2 - 1;
	for (uint32 i = 0; i < n; i++)
		if (old[i].entry)
			*keyset_slot(set, NULL, 0, old[i].hash) = old[i];
	pfree(old_mem);
	set->entries = repalloc_huge(set->entries, sizeof(KeyEntry) * n);
}

/*
 * The entry of key in set, *found saying whether it was there; a new key's
 * entry is made for it with index next, pointing at key (the caller may
 * make it point at a copy of the same bytes).
 */
static KeyEntry *
keyset_enter_hashed(RedisKeySet *set, const char *key, size_t len, uint32 h,
					int next, bool *found)
{
	KeySlot    *s;
	KeyEntry   *e;

	if (len > PG_UINT32_MAX)
		elog(ERROR, "Redis key of %zu bytes is too long", len);
	if ((set->count + 1) * 2 > set->mask + 1)
		keyset_grow(set);
	s = keyset_slot(set, key, len, h);
	*found = s->entry != 0;
	if (*found)
		return &set->entries[s->entry - 1];
	e = &set->entries[set->count++];
	e->key = key;
	e->len = (uint32) len;
	e->idx = next;
	s->hash = h;
	s->entry = set->count;
	return e;
}

/* keyset_enter_hashed of key, hashed here. */
static inline KeyEntry *
keyset_enter(RedisKeySet *set, const char *key, size_t len, int next, bool *found)
{
	return keyset_enter_hashed(set, key, len, PgpolyKeyHash(key, len), next, found);
}

/*
 * Make room for n more keys in set now, so that no slot moves while they
 * are entered (what keyset_prefetch loaded stays useful).
 */
static void
keyset_reserve(RedisKeySet *set, uint32 n)
{
	while ((uint64) set->count + n > (set->mask + 1) / 2)
		keyset_grow(set);
}

/*
 * Start loading the slot a key of hash h is probed at first: a probe
 * misses the cache once the set is large, and a batch of keys whose slots
 * are loaded together waits once for all of them.
 */
static inline void
keyset_prefetch(RedisKeySet *set, uint32 h)
{
#if defined(__GNUC__) || defined(__clang__)
	__builtin_prefetch(&set->slots[h & set->mask], 1);
#endif
}

/* Add key of len bytes (kept by pointer) to set; false if it was there. */
bool
RedisKeySetAdd(RedisKeySet *set, const char *key, size_t len)
{
	bool		found;

	keyset_enter(set, key, len, 0, &found);
	return !found;
}

/*
 * The index of key in set; a new key gets index next.  Lets a caller that
 * deduplicates keys map each original row to its distinct key's slot.
 */
int
RedisKeySetIndex(RedisKeySet *set, const char *key, size_t len, int next)
{
	bool		found;

	return keyset_enter(set, key, len, next, &found)->idx;
}

/*
 * Add buffered write w to *ov (created, in the current memory context, if
 * NULL).
 */
void
RedisOverlayAdd(RedisOverlay **ov, RedisWrite *w)
{
	KeyRef		ref;
	OverlayEntry *e;
	bool		found;

	if (*ov == NULL)
	{
		*ov = palloc(sizeof(RedisOverlay));
		(*ov)->bykey = PgpolyKeyTable("pgpoly redis overlay", sizeof(OverlayEntry),
								 CurrentMemoryContext);
	}
	ref.key = RedisWriteKey(w);
	ref.len = w->keylen;
	e = hash_search((*ov)->bykey, &ref, HASH_ENTER, &found);
	if (!found)
	{
		e->writes = NIL;
		e->seen = false;
	}
	e->writes = lappend(e->writes, w);
}

/*
 * Index buffered writes (PgpolyWrite * of one table, PgpolyPendingWrites)
 * by key.  NULL when there are none, which keeps the common case free.
 */
RedisOverlay *
RedisBuildOverlay(List *pending)
{
	RedisOverlay *ov = NULL;
	ListCell   *lc;

	foreach(lc, pending)
		RedisOverlayAdd(&ov, ((PgpolyWrite *) lfirst(lc))->payload);
	return ov;
}

/* The first buffered write of ov to key (len bytes), or NULL. */
RedisWrite *
RedisOverlayFirstWrite(RedisOverlay *ov, const char *key, size_t len)
{
	KeyRef		ref = {key, len};
	OverlayEntry *e;

	if (ov == NULL)
		return NULL;
	e = hash_search(ov->bykey, &ref, HASH_FIND, NULL);
	return e ? linitial(e->writes) : NULL;
}

/* Append an item to st. */
static void
add_item(RedisKeyState *st, const char *a, size_t alen, const char *b,
		 size_t blen)
{
	RedisItem  *it;

	if (st->nitems == st->maxitems)
	{
		st->maxitems = Max(4, st->maxitems * 2);
		st->items = st->items ?
			repalloc(st->items, sizeof(RedisItem) * st->maxitems) :
			palloc(sizeof(RedisItem) * st->maxitems);
	}
	it = &st->items[st->nitems++];
	it->a = a ? RedisBytesCopy(a, alen) : NULL;
	it->alen = alen;
	it->b = b ? RedisBytesCopy(b, blen) : NULL;
	it->blen = blen;
}

/* Index of the item whose a equals s, or -1. */
static int
find_item(RedisKeyState *st, const char *s, size_t len)
{
	int			i;

	for (i = 0; i < st->nitems; i++)
		if (st->items[i].alen == len && memcmp(st->items[i].a, s, len) == 0)
			return i;
	return -1;
}

/* Remove item i, keeping order. */
static void
remove_item(RedisKeyState *st, int i)
{
	memmove(&st->items[i], &st->items[i + 1],
			sizeof(RedisItem) * (st->nitems - i - 1));
	st->nitems--;
}

/* Set field it.a of a hash state to it.b (a copy), where it is or at the end. */
static void
set_field(RedisKeyState *st, RedisItem it)
{
	int			i = find_item(st, it.a, it.alen);

	if (i < 0)
		add_item(st, it.a, it.alen, it.b, it.blen);
	else
	{
		st->items[i].b = RedisBytesCopy(it.b, it.blen);
		st->items[i].blen = it.blen;
	}
}

/* Apply one buffered write to a key's state. */
static void
apply_write(RedisKeyState *st, RedisWrite *w)
{
	RedisItem	it;
	int			i;

	switch (w->kind)
	{
		case RW_PUT:
			st->nitems = 0;
			for (i = 0; i < w->nitems; i++)
			{
				it = RedisWriteGetItem(w, i);
				add_item(st, it.a, it.alen, it.b, it.blen);
			}
			break;
		case RW_MERGE:
			for (i = 0; i < w->nitems; i++)
			{
				int			j;

				it = RedisWriteGetItem(w, i);
				if (it.b != NULL)
					set_field(st, it);
				else if ((j = find_item(st, it.a, it.alen)) >= 0)
					remove_item(st, j);
			}
			break;
		case RW_DEL:
			st->nitems = 0;
			break;
		case RW_ADD:
			it = RedisWriteGetItem(w, 0);
			i = find_item(st, it.a, it.alen);
			if (i >= 0)
				remove_item(st, i);
			add_item(st, it.a, it.alen, it.b, it.blen);
			break;
		case RW_REM:
		case RW_REM_FIRST:
			it = RedisWriteGetItem(w, 0);
			i = find_item(st, it.a, it.alen);
			if (i >= 0)
				remove_item(st, i);
			break;
		case RW_APPEND:
			it = RedisWriteGetItem(w, 0);
			add_item(st, it.a, it.alen, NULL, 0);
			break;
		case RW_SET_IDX:
			it = RedisWriteGetItem(w, 0);
			if (w->idx >= 0 && w->idx < st->nitems)
			{
				st->items[w->idx].a = RedisBytesCopy(it.a, it.alen);
				st->items[w->idx].alen = it.alen;
			}
			break;
	}
}

/*
 * The TTL of st's key (as TTL says it: -1 none, -2 no key) once write w,
 * just applied to st, is done: the writer's table sets its ttl_seconds
 * (EXPIRE, SET ... EX); else a SET (string, json) or the DEL and HSET of
 * a hash moved across slots makes a key without one, as does creating the
 * key; an HSET, HDEL or element write keeps it, and so does a RENAME (the
 * moved key's, which is not read: the TTL the key had).  Made through
 * whichever table of the same keys: not the reader's ttl_seconds.
 */
static int64
write_ttl(RedisKeyState *st, RedisWrite *w)
{
	if (st->nitems == 0)
		return -2;
	if (w->tbl->ttl_seconds > 0)
		return w->tbl->ttl_seconds;
	if (st->ttl == -2 || (w->kind == RW_PUT && !w->renamed))
		return -1;
	return st->ttl;
}

/*
 * ERROR if buffered write w, made through another table of the same hashes,
 * RENAMEd a key to st's, moving fields along that w's table does not map
 * and tbl reads: their values are in Redis under the old key, which the
 * overlay does not read.
 */
static void
check_renamed_fields(RedisTable *tbl, RedisWrite *w, RedisKeyState *st)
{
	const RedisTable *wt = w->tbl;

	if (!w->renamed || wt->relid == tbl->relid)
		return;
	for (int i = 0; i < tbl->natts; i++)
	{
		const RedisColumn *c = &tbl->cols[i];
		bool		mapped = false;

		if (c->role != RCOL_FIELD)
			continue;
		for (int j = 0; j < wt->natts && !mapped; j++)
			mapped = wt->cols[j].role == RCOL_FIELD &&
				wt->cols[j].fieldlen == c->fieldlen &&
				memcmp(wt->cols[j].field, c->field, c->fieldlen) == 0;
		if (!mapped)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot read field \"%s\" of key \"%s\" through foreign table \"%s\"",
							c->field, PgpolyPrintable(st->key, st->keylen, 200),
							tbl->relname),
					 errdetail("This transaction buffered a change of key that moved the hash to it through foreign table \"%s\", which does not map the field.",
							   wt->relname),
					 errhint("Read the key after COMMIT, or change the key through a table that maps every field.")));
	}
}

/*
 * Apply the buffered writes for st's key, if any.  An emptied key does not
 * exist (Redis deletes empty collections).
 */
void
RedisApplyOverlay(RedisTable *tbl, RedisOverlay *ov, RedisKeyState *st)
{
	KeyRef		ref = {st->key, st->keylen};
	OverlayEntry *e;
	ListCell   *lc;
	RedisWrite *renamed = NULL;

	if (ov == NULL)
		return;
	e = hash_search(ov->bykey, &ref, HASH_FIND, NULL);
	if (e == NULL)
		return;
	e->seen = true;
	foreach(lc, e->writes)
	{
		RedisWrite *w = lfirst(lc);

		apply_write(st, w);
		st->ttl = write_ttl(st, w);
		/* a RENAME's fields count until a DEL or SET replaces the key */
		if (w->renamed || w->kind == RW_DEL || w->kind == RW_PUT)
			renamed = w->renamed ? w : NULL;
	}
	st->exists = st->nitems > 0;
	if (renamed != NULL && st->exists)
		check_renamed_fields(tbl, renamed, st);
}

/*
 * Whether the row identity id (RedisInsertIdentity: key, and member for
 * set/zset) exists once the buffered writes of ov are applied to what
 * Redis has (remote: the identity exists in Redis).
 */
bool
RedisIdentityExists(RedisTable *tbl, RedisOverlay *ov, RedisItem *id,
					bool remote)
{
	RedisKeyState st;

	memset(&st, 0, sizeof(st));
	st.key = id->a;
	st.keylen = id->alen;
	st.ttl = -2;
	if (remote)
		add_item(&st, id->b ? id->b : "", id->blen, NULL, 0);
	st.exists = remote;
	RedisApplyOverlay(tbl, ov, &st);
	if (id->b == NULL)
		return st.nitems > 0;
	return find_item(&st, id->b, id->blen) >= 0;
}

/* Append an item pointing into memory the caller keeps alive (no copy). */
static void
add_item_ref(RedisKeyState *st, char *a, size_t alen, char *b, size_t blen)
{
	if (st->nitems == st->maxitems)
	{
		st->maxitems = Max(4, st->maxitems * 2);
		st->items = st->items ?
			repalloc(st->items, sizeof(RedisItem) * st->maxitems) :
			palloc(sizeof(RedisItem) * st->maxitems);
	}
	st->items[st->nitems++] = (RedisItem)
	{
		a, alen, b, blen
	};
}

/*
 * Items of st from a reply that is an array of bulk strings built flat
 * (RESP_REPLY_STRINGS): pairs, or single strings.  The array's length was
 * checked.
 */
static void
items_from_strings(RedisKeyState *st, redisReply *r, bool pairs)
{
	RedisString *s = RedisReplyStrings(r);
	int			n = (int) (pairs ? r->elements / 2 : r->elements);

	if (st->maxitems < n)
	{
		st->items = st->items ?
			repalloc(st->items, sizeof(RedisItem) * n) :
			palloc(sizeof(RedisItem) * n);
		st->maxitems = n;
	}
	for (int i = 0; i < n; i++)
		st->items[i] = pairs ?
			(RedisItem) {s[2 * i].str, s[2 * i].len, s[2 * i + 1].str, s[2 * i + 1].len} :
			(RedisItem) {s[i].str, s[i].len, NULL, 0};
	st->nitems = n;
}

/*
 * Fill st from the reply of the table type's fetch command, built as
 * objects or flat (RESP_REPLY_STRINGS).  The items point into r (its
 * strings are NUL-terminated), so r must live as long as st.  An error
 * reply (WRONGTYPE) raises an ERROR naming the key; a reply no Redis sends
 * to that command (GET answered by an array, HGETALL by a string, an odd
 * field/value list ...) is a protocol violation.
 */
void
RedisStateFromReply(RedisTable *tbl, RedisKeyState *st, redisReply *r,
					PgpolyConnection *conn)
{
	bool		strings = tbl->type == REDIS_STRING || tbl->type == REDIS_JSON;
	bool		pairs = tbl->type == REDIS_HASH || tbl->type == REDIS_ZSET;
	size_t		i;

	st->nitems = 0;
	if (r->type == REDIS_REPLY_ERROR)
		RedisReplyError(conn, r, st->key, st->keylen, tbl);
	if (strings && r->type == REDIS_REPLY_STRING)
		add_item_ref(st, r->str, r->len, NULL, 0);
	else if (!strings &&
			 (r->type == REDIS_REPLY_ARRAY || r->type == RESP_REPLY_STRINGS))
	{
		if (pairs && r->elements % 2 != 0)
			RedisProtocolError(conn, RedisFetchCommand(tbl), r,
							   psprintf("an odd number of elements (%zu) for key \"%s\"",
										r->elements, PgpolyPrintable(st->key, st->keylen, 200)));
		if (r->type == RESP_REPLY_STRINGS)
			items_from_strings(st, r, pairs);
		for (i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i += pairs ? 2 : 1)
		{
			redisReply *a = r->element[i];
			redisReply *b = pairs ? r->element[i + 1] : NULL;

			if (a->type != REDIS_REPLY_STRING || (b && b->type != REDIS_REPLY_STRING))
				RedisProtocolError(conn, RedisFetchCommand(tbl),
								   a->type != REDIS_REPLY_STRING ? a : b,
								   psprintf("an element that is no string for key \"%s\"",
											PgpolyPrintable(st->key, st->keylen, 200)));
			add_item_ref(st, a->str, a->len, b ? b->str : NULL, b ? b->len : 0);
		}
	}
	else if (!strings || r->type != REDIS_REPLY_NIL)
		RedisProtocolError(conn, RedisFetchCommand(tbl), r,
						   psprintf("the reply for key \"%s\"",
									PgpolyPrintable(st->key, st->keylen, 200)));
	st->exists = st->nitems > 0;
}

/*
 * Glob match of the len bytes at s (any byte, NUL included) against the
 * NUL-terminated pattern p, supporting the '*' and '\\' escapes our
 * patterns use.
 */
static bool
glob_match(const char *p, const char *s, size_t len)
{
	for (; *p; p++, s++, len--)
	{
		if (*p == '*')
		{
			for (;; s++, len--)
			{
				if (glob_match(p + 1, s, len))
					return true;
				if (len == 0)
					return false;
			}
		}
		if (*p == '\\' && p[1])
			p++;
		if (len == 0 || *s != *p)
			return false;
	}
	return len == 0;
}

/*
 * Whether the len bytes at key match the scan's pattern: a comparison of
 * the prefix when the pattern is a literal followed by '*' (the key prefix
 * and a LIKE prefix are), else glob_match.
 */
static inline bool
pattern_match(RedisScan *scan, const char *key, size_t len)
{
	if (scan->literal)
		return len >= (size_t) scan->literal_len &&
			memcmp(key, scan->literal, scan->literal_len) == 0;
	return glob_match(scan->pattern, key, len);
}

/*
 * Whether the len bytes at s are a SCAN cursor as Redis writes one, an
 * unsigned 64-bit number in decimal without leading zeros (into *value).
 * Anything else ("00", "+1", 2^64) is a protocol error: sent back, "00"
 * would never be the "0" that ends the iteration.
 */
static bool
parse_cursor(const char *s, size_t len, uint64 *value)
{
	uint64		v = 0;

	if (len == 0 || len > 20 || (s[0] == '0' && len > 1))
		return false;
	for (size_t i = 0; i < len; i++)
	{
		if (s[i] < '0' || s[i] > '9' ||
			v > (PG_UINT64_MAX - (uint64) (s[i] - '0')) / 10)
			return false;
		v = v * 10 + (uint64) (s[i] - '0');
	}
	*value = v;
	return true;
}

/*
 * Whether cursor, the next one a node returned, closes a cycle (Brent's
 * algorithm: it equals the mark, a cursor the node returned before, which
 * moves to the current cursor after 1, 2, 4 ... steps).  Redis walks its
 * table in reverse binary order and each cursor it returns comes strictly
 * later in that order than the one it was given, a table resized or being
 * rehashed meanwhile included (and, on a cluster node, its slots' tables in
 * turn), so no full iteration of a real Redis repeats a cursor: one that
 * does would loop forever, returning no new key.  Constant memory; a cycle
 * of n cursors is caught within a few times n steps.
 */
static bool
cursor_cycles(CursorWalk *w, uint64 cursor)
{
	if (w->span > 0 && cursor == w->mark)
		return true;
	if (++w->steps >= w->span)
	{
		w->mark = cursor;
		w->steps = 0;
		w->span = w->span == 0 ? 1 : Min(w->span, PG_UINT32_MAX / 2) * 2;
	}
	return false;
}

static char *new_key(RedisScan *scan, const char *key, size_t len, uint32 h);
static void queue_key(RedisScan *scan, char *key, size_t len);
static bool status_is(redisReply *reply, const char *word);

/*
 * Start a SCAN: on a cluster what the primaries say of their slots (in
 * seen_cxt), then the nodes holding keys (on a cluster, those that say
 * they serve slots), each with cursor 0.
 */
static void
scan_start(RedisScan *scan)
{
	MemoryContext old;
	List	   *nodes;
	ListCell   *lc;
	int			i = 0;

	if (scan->seen_cxt == NULL)
		scan->seen_cxt = AllocSetContextCreate(GetMemoryChunkContext(scan),
											   "pgpoly redis seen keys",
											   ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(scan->seen_cxt);
	scan->seen = RedisKeySetCreate(scan->seen_cxt, scan->tbl->fetch_size);
	scan->view = RedisClusterViewOf(scan->conn, NIL);
	nodes = scan->view ? RedisClusterViewNodes(scan->view) :
		RedisPrimaryNodes(scan->conn);
	scan->nnodes = list_length(nodes);
	scan->nodes = palloc(sizeof(char *) * scan->nnodes);
	scan->cursors = palloc(sizeof(scan->cursors[0]) * scan->nnodes);
	scan->reopens = palloc0(sizeof(uint64) * scan->nnodes);
	scan->walks = palloc0(sizeof(CursorWalk) * scan->nnodes);
	scan->node_done = palloc0(sizeof(bool) * scan->nnodes);
	foreach(lc, nodes)
	{
		scan->nodes[i] = lfirst(lc);
		strcpy(scan->cursors[i++], "0");
	}
	MemoryContextSwitchTo(old);
}

/* RedisMovedKey: a key of a slot that moved, if the scan wants it and lacks it. */
static void
add_moved_key(const char *key, size_t len, void *arg)
{
	RedisScan  *scan = arg;
	char	   *copy;

	if (pattern_match(scan, key, len) &&
		(copy = new_key(scan, key, len, PgpolyKeyHash(key, len))) != NULL)
		queue_key(scan, copy, len);
}

/*
 * Every cursor is back at 0.  On a cluster, queue the keys of the slots
 * that moved while the SCAN ran; they are fetched next.
 */
static void
scan_end(RedisScan *scan)
{
	MemoryContext old;
	List	   *nodes = NIL;

	scan->ended = true;
	scan->moved_from = scan->nqueue;
	if (scan->view == NULL)
		return;
	old = MemoryContextSwitchTo(scan->seen_cxt);
	for (int i = 0; i < scan->nnodes; i++)
		nodes = lappend(nodes, scan->nodes[i]);
	RedisClusterMovedKeys(scan->conn, scan->view,
						  RedisClusterViewOf(scan->conn, nodes),
						  add_moved_key, scan);
	MemoryContextSwitchTo(old);
}

/* ----------------------------------------------------------------
 *		Rounds
 * ----------------------------------------------------------------
 */

/*
 * Whether a scan of tbl that reads the columns needed[attno - 1] (NULL:
 * all), with TTL or not, reads no value: only which keys exist (one_row:
 * the caller only asks whether a key has rows).  The planner asks it for
 * EXPLAIN, the scan to decide what to fetch.
 */
bool
RedisKeysOnly(RedisTable *tbl, const bool *needed, bool need_ttl, bool one_row)
{
	if (needed == NULL || need_ttl ||
		!(one_row || tbl->type == REDIS_HASH || tbl->type == REDIS_STRING ||
		  tbl->type == REDIS_JSON))
		return false;
	for (int i = 0; i < tbl->natts; i++)
		if (needed[i] && tbl->cols[i].role != RCOL_KEY)
			return false;
	return true;
}

static bool scan_keyonly(RedisScan *scan);

/* Whether scan WATCHes the keys it reads (RedisScanWatch). */
static bool
scan_watches(RedisScan *scan)
{
	return scan->watch && (scan->watch_keyonly || !scan_keyonly(scan));
}

/*
 * Whether scan fetches nothing but existence: RedisKeysOnly, and no
 * buffered writes to overlay (they need each key's contents) nor score
 * range.  Decided once, when the first round is built.
 */
static bool
scan_keyonly(RedisScan *scan)
{
	if (scan->keyonly < 0)
		scan->keyonly = scan->ov == NULL && scan->score_min == NULL &&
			RedisKeysOnly(scan->tbl, scan->needed, scan->need_ttl, scan->one_row);
	return scan->keyonly;
}

/*
 * Whether scan read keys only (1), values (0), or has not decided yet (-1):
 * EXPLAIN ANALYZE says what was done, which buffered writes can change.
 */
int
RedisScanKeysOnly(RedisScan *scan)
{
	return scan->keyonly;
}

/*
 * Whether a scan of tbl that reads the columns needed[attno - 1] (NULL:
 * all), with TTL or not, can fetch the fields it reads alone (HMGET), if
 * its caller allows it (RedisScanAllowFieldFetch): a hash table, some field
 * read, and no column but fields and the key (which the row takes from the
 * key it asked for).  The planner asks it for EXPLAIN, the scan to decide
 * what to fetch.
 */
bool
RedisFieldsOnly(RedisTable *tbl, const bool *needed, bool need_ttl)
{
	bool		field = false;

	if (needed == NULL || need_ttl || tbl->type != REDIS_HASH)
		return false;
	for (int i = 0; i < tbl->natts; i++)
	{
		if (!needed[i])
			continue;
		if (tbl->cols[i].role == RCOL_FIELD)
			field = true;
		else if (tbl->cols[i].role != RCOL_KEY)
			return false;
	}
	return field;
}

/*
 * Whether scan fetches the fields it reads alone: allowed by its caller,
 * RedisFieldsOnly, and not key-only.  Decided once, when the first round is
 * built; the HMGET's arguments are made then, in the scan's memory.
 */
static bool
scan_fields(RedisScan *scan)
{
	RedisTable *tbl = scan->tbl;
	MemoryContext cxt = GetMemoryChunkContext(scan);

	if (scan->fields >= 0)
		return scan->fields;
	scan->fields = scan->absent_no_row && !scan_keyonly(scan) &&
		RedisFieldsOnly(tbl, scan->needed, scan->need_ttl);
	if (!scan->fields)
		return false;
	scan->fargv = MemoryContextAlloc(cxt, sizeof(char *) * (scan->nread + 2));
	scan->flens = MemoryContextAlloc(cxt, sizeof(size_t) * (scan->nread + 2));
	scan->fargv[0] = "HMGET";
	scan->flens[0] = 5;
	scan->nfargs = 2;
	for (int k = 0; k < scan->nread; k++)
	{
		RedisColumn *col = &tbl->cols[scan->readcols[k]];

		if (col->role != RCOL_FIELD)
			continue;
		scan->fargv[scan->nfargs] = col->field;
		scan->flens[scan->nfargs++] = col->fieldlen;
	}
	return true;
}

/* How a round of scan reads the values of its keys (not key-only). */
static inline FetchKind
value_fetch(RedisScan *scan)
{
	return scan_fields(scan) ? FETCH_FIELDS : FETCH_VALUES;
}

/* Append a state for key (kept by pointer) to round r. */
static RedisKeyState *
add_state(ScanRound *r, char *key, size_t len)
{
	RedisKeyState *st;

	if (r->nstates == r->maxstates)
	{
		r->maxstates = Max(64, r->maxstates * 2);
		r->states = r->states ?
			repalloc_huge(r->states, sizeof(RedisKeyState) * r->maxstates) :
			MemoryContextAllocExtended(r->cxt, sizeof(RedisKeyState) * r->maxstates,
									   MCXT_ALLOC_HUGE);
	}
	st = &r->states[r->nstates++];
	memset(st, 0, sizeof(RedisKeyState));
	st->key = key;
	st->keylen = len;
	st->ttl = -2;
	return st;
}

/* States for n keys, copied into the round's memory (one chunk). */
static void
add_key_states(ScanRound *r, char **keys, size_t *lens, int n)
{
	Size		total = 0;
	char	   *p;

	for (int i = 0; i < n; i++)
		total += lens[i] + 1;
	p = MemoryContextAllocExtended(r->cxt, Max(total, 1), MCXT_ALLOC_HUGE);
	for (int i = 0; i < n; i++)
	{
		memcpy(p, keys[i], lens[i]);
		p[lens[i]] = '\0';
		add_state(r, p, lens[i]);
		p += lens[i] + 1;
	}
}

/* A copy of a key met by the SCAN, in the scan's key memory. */
static char *
copy_key(RedisScan *scan, const char *key, size_t len)
{
	char	   *p;

	if (len + 1 > scan->arena_left)
	{
		scan->arena_left = Max(len + 1, 64 * 1024);
		scan->arena = MemoryContextAllocExtended(scan->seen_cxt, scan->arena_left,
												 MCXT_ALLOC_HUGE);
	}
	p = scan->arena;
	memcpy(p, key, len);
	p[len] = '\0';
	scan->arena += len + 1;
	scan->arena_left -= len + 1;
	return p;
}

/*
 * A key met by the SCAN (or moved during it), of hash h (PgpolyKeyHash): if
 * it is new, a copy of it for the set of keys seen, else NULL.
 */
static char *
new_key(RedisScan *scan, const char *key, size_t len, uint32 h)
{
	bool		found;
	KeyEntry   *e = keyset_enter_hashed(scan->seen, key, len, h, 0, &found);

	if (found)
		return NULL;
	e->key = copy_key(scan, key, len);
	return (char *) e->key;
}

/* Queue a new key for fetching. */
static void
queue_key(RedisScan *scan, char *key, size_t len)
{
	if (scan->nqueue == scan->maxqueue)
	{
		scan->maxqueue = Max(1024, scan->maxqueue * 2);
		scan->queue = scan->queue ?
			repalloc_huge(scan->queue, sizeof(char *) * scan->maxqueue) :
			MemoryContextAllocExtended(scan->seen_cxt, sizeof(char *) * scan->maxqueue,
									   MCXT_ALLOC_HUGE);
		scan->queuelens = scan->queuelens ?
			repalloc_huge(scan->queuelens, sizeof(size_t) * scan->maxqueue) :
			MemoryContextAllocExtended(scan->seen_cxt, sizeof(size_t) * scan->maxqueue,
									   MCXT_ALLOC_HUGE);
	}
	scan->queue[scan->nqueue] = key;
	scan->queuelens[scan->nqueue++] = len;
}

/* Take up to fetch_size queued keys into round r (their copies stay put). */
static void
take_queued(RedisScan *scan, ScanRound *r)
{
	int			n = Min(scan->tbl->fetch_size, scan->nqueue - scan->queuepos);

	for (int i = 0; i < n; i++)
	{
		if (scan->ended && scan->queuepos + i >= scan->moved_from &&
			r->moved_state == INT_MAX)
			r->moved_state = r->nstates;
		add_state(r, scan->queue[scan->queuepos + i], scan->queuelens[scan->queuepos + i]);
	}
	scan->queuepos += n;
	if (scan->queuepos == scan->nqueue)
	{
		scan->queuepos = scan->nqueue = 0;	/* the queue starts over */
		scan->moved_from = 0;	/* (nothing is queued after the moved keys) */
	}
}

/*
 * Append the fetch command and TTL (when the scan needs it) for one key;
 * value false: the TTL alone (its value's reply already came).
 */
static void
append_fetch(RedisScan *scan, FetchKind fetch, const char *key, size_t keylen,
			 bool value)
{
	RedisTable *tbl = scan->tbl;
	const char *argv[6];
	size_t		lens[6];
	int			argc = 2;

	if (fetch == FETCH_FIELDS)
	{
		scan->fargv[1] = key;
		scan->flens[1] = keylen;
		RedisAppendArgv(scan->conn, scan->nfargs, scan->fargv, scan->flens);
		return;
	}
	argv[0] = fetch == FETCH_TYPE ? "TYPE" : RedisFetchCommand(tbl);
	argv[1] = key;
	lens[1] = keylen;
	if (fetch == FETCH_TYPE)
		;
	else if (tbl->type == REDIS_ZSET && scan->score_min)
	{
		argv[0] = "ZRANGEBYSCORE";
		argv[2] = scan->score_min;
		argv[3] = scan->score_max;
		argv[4] = "WITHSCORES";
		argc = 5;
	}
	else if (tbl->type == REDIS_ZSET || tbl->type == REDIS_LIST)
	{
		argv[2] = "0";
		argv[3] = "-1";
		argc = 4;
		if (tbl->type == REDIS_ZSET)
			argv[argc++] = "WITHSCORES";
	}
	lens[0] = strlen(argv[0]);
	for (int i = 2; i < argc; i++)
		lens[i] = strlen(argv[i]);
	if (value)
		RedisAppendArgv(scan->conn, argc, argv, lens);
	if (fetch == FETCH_VALUES && scan->need_ttl)
	{
		const char *targv[2] = {"TTL", key};
		size_t		tlens[2] = {3, keylen};

		RedisAppendArgv(scan->conn, 2, targv, tlens);
	}
}

/*
 * The WATCH commands round r sends ahead of its fetches (RedisScanWatch):
 * one for all its keys, or on a cluster one per key (a multi-key WATCH
 * there must hold one slot's keys, and during a slot migration only a
 * one-key command follows ASK to where its key is).  With append, they
 * are appended from the from'th on.
 */
static int
round_watches(RedisScan *scan, ScanRound *r, bool append, int from)
{
	const char **argv;
	size_t	   *lens;
	int			nwatch = 0;
	int			start = 0;
	bool		cluster;

	if (!scan_watches(scan) || r->fetch == FETCH_NONE || r->nstates == 0)
		return 0;
	cluster = RedisIsCluster(scan->conn);
	if (!append)
		return cluster ? r->nstates : 1;
	argv = palloc(sizeof(char *) * (r->nstates + 1));
	lens = palloc(sizeof(size_t) * (r->nstates + 1));
	argv[0] = "WATCH";
	lens[0] = 5;
	for (int i = 0; i < r->nstates; i++)
	{
		int			argc = i - start + 1;

		argv[argc] = r->states[i].key;
		lens[argc] = r->states[i].keylen;
		if (cluster || i + 1 == r->nstates)
		{
			if (nwatch++ >= from)
				RedisAppendArgv(scan->conn, argc + 1, argv, lens);
			start = i + 1;
		}
	}
	pfree(argv);
	pfree(lens);
	return nwatch;
}

/* Append round r's WATCH commands from the from'th on. */
static void
append_watches(RedisScan *scan, ScanRound *r, int from)
{
	if (from < r->nwatch)
		round_watches(scan, r, true, from);
}

/* A reply to a WATCH of round r: OK, or the ERROR Redis gave. */
static void
watch_reply(ScanRound *r, redisReply *reply)
{
	if (reply->type == REDIS_REPLY_ERROR)
		RedisReplyError(r->scan->conn, reply, NULL, 0, r->scan->tbl);
	if (reply->type != REDIS_REPLY_STATUS || !status_is(reply, "OK"))
		RedisProtocolError(r->scan->conn, "WATCH", reply, NULL);
}

/*
 * Append node's SCAN step (argv: SCAN's arguments but the cursor).  A
 * cursor other than 0 is a place in the key table of the Redis process
 * that returned it.  If Redis closed the node's connection since the walk
 * began (a restart, its timeout setting, CLIENT KILL) and it was opened
 * anew, that may be a restarted Redis, whose table has another order (a
 * new hash seed): the walk would skip keys without a word, so the scan
 * fails instead.
 */
static void
append_scan_step(RedisScan *scan, int node, const char **argv)
{
	uint64		reopen;

	argv[1] = scan->cursors[node];
	reopen = RedisAppendToNode(scan->conn, scan->nodes[node], 8, argv, NULL);
	if (strcmp(argv[1], "0") == 0)
		scan->reopens[node] = reopen;
	else if (reopen > scan->reopens[node])
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("Redis server \"%s\" at %s closed the connection during a scan of foreign table \"%s\"",
						scan->conn->servername, scan->nodes[node], scan->tbl->relname),
				 errdetail("Redis closed the connection the SCAN was on (a restart, its timeout setting, CLIENT KILL); a SCAN cursor cannot be continued on a new connection, since a restarted Redis orders its keys differently and keys would be missed."),
				 errhint("Run the query again (open the cursor again).")));
}

/*
 * Append the commands of round r from reply index from on: its WATCHes,
 * its fetches, then its SCAN steps.
 */
static void
append_round(RedisScan *scan, ScanRound *r, int from)
{
	char		count[16];
	const char *argv[8] = {"SCAN", NULL, "MATCH", scan->pattern,
	"COUNT", count, "TYPE", RedisScanTypeFilter(scan->tbl)};

	if (r->nwatch > 0)
		append_watches(scan, r, from);
	from = Max(from - r->nwatch, 0);
	if (r->fetch != FETCH_NONE)
		for (int i = 0; i < r->nstates; i++)
			if ((i + 1) * r->per_key > from)
				append_fetch(scan, r->fetch, r->states[i].key, r->states[i].keylen,
							 i * r->per_key >= from);
	snprintf(count, sizeof(count), "%d", scan->tbl->fetch_size);
	for (int i = Max(from - r->nfetch, 0); i < r->nscan; i++)
		append_scan_step(scan, r->scan_node[i], argv);
}

/* Add a SCAN step on every node not finished to round r. */
static void
add_scan_steps(RedisScan *scan, ScanRound *r)
{
	r->scan_node = MemoryContextAlloc(r->cxt, sizeof(int) * scan->nnodes);
	r->pages = MemoryContextAlloc(r->cxt, sizeof(redisReply *) * scan->nnodes);
	for (int i = 0; i < scan->nnodes; i++)
		if (!scan->node_done[i])
			r->scan_node[r->nscan++] = i;
}

/* The table type's error for a key TYPE says holds another type. */
static void
wrong_type_error(RedisScan *scan, RedisKeyState *st, redisReply *type)
{
	RedisTable *tbl = scan->tbl;

	scan->conn->errors++;
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
			 errmsg("Redis key \"%s\" does not hold a %s",
					PgpolyPrintable(st->key, st->keylen, 200), RedisScanTypeFilter(tbl)),
			 errdetail("Foreign table \"%s\" has table_type '%s'; Redis answered TYPE: %s",
					   tbl->relname, tbl->type_name,
					   PgpolyPrintable(type->str, type->len, 200)),
			 errhint("Check the table's key_prefix and table_type.")));
}

/* Whether a status reply says exactly word (its bytes, NUL included). */
static inline bool
status_is(redisReply *reply, const char *word)
{
	return reply->len == strlen(word) && memcmp(reply->str, word, reply->len) == 0;
}

/*
 * Whether reply says that its key holds another type than tbl's: a
 * WRONGTYPE error of the fetch command, or a TYPE naming another type.
 */
static bool
other_type(RedisTable *tbl, FetchKind fetch, redisReply *reply)
{
	if (reply->type == REDIS_REPLY_ERROR)
		return reply->len >= 9 && memcmp(reply->str, "WRONGTYPE", 9) == 0;
	return fetch == FETCH_TYPE && reply->type == REDIS_REPLY_STATUS &&
		!status_is(reply, "none") && !status_is(reply, RedisScanTypeFilter(tbl));
}

/*
 * Fill st from the reply of the scan's HMGET: a value or nil for each field
 * asked, in that order.  The fields set become items (pointing into r, so r
 * must live as long as st); a hash with none of them set counts as missing
 * (RedisScanAllowFieldFetch).  Any other shape of reply is a protocol
 * violation.
 */
static void
state_from_fields(RedisScan *scan, RedisKeyState *st, redisReply *r)
{
	int			nfields = scan->nfargs - 2;

	if ((r->type != REDIS_REPLY_ARRAY && r->type != RESP_REPLY_STRINGS) ||
		r->elements != (size_t) nfields)
		RedisProtocolError(scan->conn, "HMGET", r,
						   psprintf("the reply for key \"%s\" (%d fields asked)",
									PgpolyPrintable(st->key, st->keylen, 200), nfields));
	st->nitems = 0;
	if (r->type == RESP_REPLY_STRINGS)
	{
		RedisString *s = RedisReplyStrings(r);

		/* every field set: no nil in a flat reply */
		for (int i = 0; i < nfields; i++)
			add_item_ref(st, unconstify(char *, scan->fargv[i + 2]), scan->flens[i + 2],
						 s[i].str, s[i].len);
		st->exists = true;
		return;
	}
	for (int i = 0; i < nfields; i++)
	{
		redisReply *v = r->element[i];

		if (v->type == REDIS_REPLY_NIL)
			continue;
		if (v->type != REDIS_REPLY_STRING)
			RedisProtocolError(scan->conn, "HMGET", v,
							   psprintf("an element that is no string for key \"%s\"",
										PgpolyPrintable(st->key, st->keylen, 200)));
		add_item_ref(st, unconstify(char *, scan->fargv[i + 2]), scan->flens[i + 2],
					 v->str, v->len);
	}
	st->exists = st->nitems > 0;
}

/*
 * A fetch reply of round r: the fetch command's (kept: the key state points
 * into it), TTL's, or TYPE's.  An error reply (WRONGTYPE ...) and a TYPE of
 * another type are kept and raised when the round's rows are asked for, not
 * now: the replies of a round sent ahead may be read by another request of
 * the query, for rows that are then never asked for.  A key of a moved slot
 * holding another type is no row (SCAN's TYPE filter never saw it).  A
 * reply of a type the command never answers with breaks the connection at
 * once.
 */
static bool
fetch_reply(ScanRound *r, redisReply *reply, int index)
{
	RedisScan  *scan = r->scan;
	RedisKeyState *st = &r->states[index / r->per_key];

	if (index % r->per_key == 0 && index / r->per_key >= r->moved_state &&
		other_type(scan->tbl, r->fetch, reply))
	{
		st->exists = false;
		st->nitems = 0;
		st->keyonly = r->fetch == FETCH_TYPE;
		return false;
	}
	if (reply->type == REDIS_REPLY_ERROR || other_type(scan->tbl, r->fetch, reply))
	{
		if (r->error != NULL)
			return false;
		r->error = reply;
		r->error_state = index / r->per_key;
		return true;
	}
	if (r->fetch == FETCH_TYPE)
	{
		if (reply->type != REDIS_REPLY_STATUS)
			RedisProtocolError(scan->conn, "TYPE", reply, NULL);
		st->exists = !status_is(reply, "none");
		st->keyonly = true;
		return false;
	}
	if (index % r->per_key != 0)
	{
		if (reply->type != REDIS_REPLY_INTEGER)
			RedisProtocolError(scan->conn, "TTL", reply, NULL);
		st->ttl = reply->integer;
		return false;
	}
	if (r->fetch == FETCH_FIELDS)
		state_from_fields(scan, st, reply);
	else
		RedisStateFromReply(scan->tbl, st, reply, scan->conn);
	return true;
}

/*
 * The cursor of a SCAN reply of round r from node, after checking that the
 * reply is a [cursor, keys] pair whose cursor is a number (parse_cursor)
 * the node did not return before in this scan (cursor_cycles).
 */
static void
scan_cursor(ScanRound *r, redisReply *reply, int node)
{
	RedisScan  *scan = r->scan;
	uint64		cursor;

	if (reply->type == REDIS_REPLY_ERROR)
		RedisReplyError(scan->conn, reply, NULL, 0, scan->tbl);
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
		reply->element[0]->type != REDIS_REPLY_STRING ||
		reply->element[1]->type != REDIS_REPLY_ARRAY)
		RedisProtocolError(scan->conn, "SCAN", reply, "no [cursor, keys] pair");
	if (!parse_cursor(reply->element[0]->str, reply->element[0]->len, &cursor))
		RedisProtocolError(scan->conn, "SCAN", reply,
						   "its cursor is no unsigned 64-bit decimal number as Redis writes one");
	if (cursor != 0 && cursor_cycles(&scan->walks[node], cursor))
		RedisProtocolError(scan->conn, "SCAN", reply,
						   psprintf("cursor %.*s was returned before in this scan of node %s, so the scan would never end",
									(int) reply->element[0]->len, reply->element[0]->str,
									scan->nodes[node]));
	memcpy(scan->cursors[node], reply->element[0]->str, reply->element[0]->len);
	scan->cursors[node][reply->element[0]->len] = '\0';
	scan->node_done[node] = strcmp(scan->cursors[node], "0") == 0;
	scan->scan_done = true;
	for (int i = 0; i < scan->nnodes; i++)
		if (!scan->node_done[i])
			scan->scan_done = false;
}

/*
 * Take key k (checked, hashed: h) of a SCAN page of round r: if it was not
 * met before, it is a row of a key-only scan, or queued for fetching.
 */
static inline void
take_key(ScanRound *r, redisReply *k, uint32 h)
{
	RedisScan  *scan = r->scan;
	char	   *copy = new_key(scan, k->str, k->len, h);

	if (copy == NULL)
		return;
	if (r->scan_rows)
	{
		RedisKeyState *st = add_state(r, copy, k->len);

		st->exists = true;
		st->keyonly = true;
	}
	else
		queue_key(scan, copy, k->len);
}

/* Check key k of a SCAN page: a string matching the scan's pattern. */
static inline void
check_key(RedisScan *scan, redisReply *k)
{
	if (k->type != REDIS_REPLY_STRING)
		RedisProtocolError(scan->conn, "SCAN", k, "a key that is no string");
	if (!pattern_match(scan, k->str, k->len))
		RedisProtocolError(scan->conn, "SCAN", k,
						   psprintf("key \"%s\", which does not match %s",
									PgpolyPrintable(k->str, k->len, 200), scan->pattern));
}

/*
 * Take the n keys of batch (checked) into round r: hashed and their slots
 * loaded first, so that the batch waits for memory once.
 */
static void
take_batch(ScanRound *r, redisReply **batch, uint32 *hashes, int n)
{
	RedisKeySet *seen = r->scan->seen;

	if (n == 0)
		return;
	keyset_reserve(seen, n);
	for (int i = 0; i < n; i++)
	{
		hashes[i] = PgpolyKeyHash(batch[i]->str, batch[i]->len);
		keyset_prefetch(seen, hashes[i]);
	}
	for (int i = 0; i < n; i++)
		take_key(r, batch[i], hashes[i]);
}

/*
 * Take the keys of round r's SCAN pages (their cursors taken), one of each
 * page in turn: on a cluster the keys of every primary then share each
 * fetch round, which they answer at once, instead of one primary's page
 * filling a round while the others idle.  Keys go into the set of keys met
 * in batches of SCAN_PREFETCH, each batch's slots loaded at once.
 */
#define SCAN_PREFETCH 32

static void
take_pages(ScanRound *r)
{
	RedisScan  *scan = r->scan;
	MemoryContext old;
	redisReply *batch[SCAN_PREFETCH];
	uint32		hashes[SCAN_PREFETCH];
	size_t		most = 0;
	int			n = 0;

	if (r->npages == 0)
		return;					/* (a key list has no set of keys met) */
	old = MemoryContextSwitchTo(r->cxt);
	for (int p = 0; p < r->npages; p++)
		most = Max(most, r->pages[p]->element[1]->elements);
	for (size_t i = 0; i < most; i++)
	{
		for (int p = 0; p < r->npages; p++)
		{
			redisReply *keys = r->pages[p]->element[1];

			if (i >= keys->elements)
				continue;
			check_key(scan, keys->element[i]);
			batch[n++] = keys->element[i];
			if (n == SCAN_PREFETCH)
			{
				take_batch(r, batch, hashes, n);
				n = 0;
			}
		}
	}
	take_batch(r, batch, hashes, n);
	r->npages = 0;
	MemoryContextSwitchTo(old);
}

/*
 * Reply handler of a round (RedisSend), in the round's memory.  A reply
 * counts as received once its handler is done with it.
 */
static bool
round_reply(redisReply *reply, int index, void *arg)
{
	ScanRound  *r = arg;
	bool		keep = false;

	index += r->base;
	r->handling = true;
	if (index < r->nwatch)
		watch_reply(r, reply);
	else if ((index -= r->nwatch) < r->nfetch)
		keep = fetch_reply(r, reply, index);
	else
	{
		/* the page's keys are taken with the round's other pages' */
		scan_cursor(r, reply, r->scan_node[index - r->nfetch]);
		r->pages[r->npages++] = reply;
		keep = true;
	}
	r->handling = false;
	r->received++;
	return keep;
}

/*
 * The level scan's WATCHes are made at (RedisScanWatch): if the
 * subtransaction that began its node has ended since (a RELEASE made the
 * node its parent's), the outermost, released at transaction end only.
 */
static int
watch_level(RedisScan *scan)
{
	return SubTransactionIsActive(scan->watch_subid) ? scan->watch_level : 1;
}

/* Send round r (built: states and SCAN steps) on its way. */
static void
send_round(RedisScan *scan, ScanRound *r)
{
	MemoryContext old = MemoryContextSwitchTo(r->cxt);

	r->per_key = r->fetch == FETCH_VALUES && scan->need_ttl ? 2 : 1;
	r->nfetch = r->fetch == FETCH_NONE ? 0 : r->nstates * r->per_key;
	r->nwatch = round_watches(scan, r, false, 0);
	if (r->nwatch > 0 && !RedisWatchBudget(scan->conn, scan->tbl, r->nstates))
		r->nwatch = 0;
	r->expected = r->nwatch + r->nfetch + r->nscan;
	r->received = 0;
	r->base = 0;
	append_round(scan, r, 0);
	if (r->nwatch > 0)
		RedisNoteWatch(scan->conn, watch_level(scan));
	r->ticket = RedisSend(scan->conn, r->expected, round_reply, r, true);
	scan->round_trips++;
	RedisCountTrips(scan->conn, scan->trips);
	MemoryContextSwitchTo(old);
}

/*
 * Memory of large rounds, kept for the backend's next scans.  A round of
 * fetch_size keys takes a few MB (its replies and states); allocated afresh
 * by each statement, its pages would be faulted in (and zeroed by the
 * kernel) again every time, which costs a 1k-key join a quarter of its
 * time.  A scan borrows a context from here and gives it back, reset, when
 * its memory goes (end, rescan or error: a reset callback); the pool keeps
 * at most ROUND_POOL contexts, each trimmed to one block of at most
 * ROUND_KEEP_MAX bytes.
 */
#define ROUND_POOL			2
#define ROUND_KEEP_MIN		(1024 * 1024)
#define ROUND_KEEP_MAX		(4 * 1024 * 1024)

static MemoryContext RoundPool[ROUND_POOL];
static int	NumPooled = 0;
static Size RoundKeep = ROUND_KEEP_MIN;	/* the kept block of new ones */

/*
 * A round context back from a scan (reset callback): pool it, or free it if
 * the pool is full or the round outgrew the block it keeps by more than
 * ROUND_KEEP_MIN (the next one made keeps a block of that size, capped;
 * chunks above the allocator's chunk limit always have blocks of their
 * own, so what a round takes is always a bit more than its kept block).
 * Allocates nothing.
 */
static void
round_cxt_release(void *arg)
{
	MemoryContext cxt = (MemoryContext) arg;
	Size		used = MemoryContextMemAllocated(cxt, false);
	Size		want = Min(TYPEALIGN(ROUND_KEEP_MIN, used), ROUND_KEEP_MAX);

	MemoryContextReset(cxt);	/* runs its callbacks (replies still owed) */
	if (want > MemoryContextMemAllocated(cxt, false) + ROUND_KEEP_MIN)
	{
		RoundKeep = Max(RoundKeep, want);
		MemoryContextDelete(cxt);
	}
	else if (NumPooled < ROUND_POOL)
	{
		MemoryContextSetIdentifier(cxt, "kept");
		RoundPool[NumPooled++] = cxt;
	}
	else
		MemoryContextDelete(cxt);
}

/*
 * A context for a large round of scan, from the pool if it has one; it
 * goes back when the scan's memory is reset or deleted.
 */
static MemoryContext
round_cxt_borrow(RedisScan *scan)
{
	MemoryContext cxt;
	MemoryContextCallback *cb;

	cb = MemoryContextAlloc(GetMemoryChunkContext(scan), sizeof(MemoryContextCallback));
	if (NumPooled > 0)
		cxt = RoundPool[--NumPooled];
	else
		cxt = AllocSetContextCreate(TopMemoryContext, "pgpoly redis round", 0,
									RoundKeep, ALLOCSET_DEFAULT_MAXSIZE);
	MemoryContextSetIdentifier(cxt, "in use");	/* pg_backend_memory_contexts */
	cb->func = round_cxt_release;
	cb->arg = cxt;
	MemoryContextRegisterResetCallback(GetMemoryChunkContext(scan), cb);
	return cxt;
}

/* Forget round r and its memory (an exchange still owed is dropped). */
static void
clear_round(RedisScan *scan, ScanRound *r, int nkeys)
{
	if (r->cxt == NULL)
	{
		/*
		 * A round of a few keys takes a few kB (a context from the
		 * allocator's free list); one of many keys a few MB, from the pool.
		 */
		if (nkeys > 16)
			r->cxt = round_cxt_borrow(scan);
		else
			r->cxt = AllocSetContextCreate(GetMemoryChunkContext(scan),
										   "pgpoly redis round",
										   ALLOCSET_DEFAULT_SIZES);
	}
	else
		MemoryContextReset(r->cxt);
	memset(((char *) r) + offsetof(ScanRound, states), 0,
		   sizeof(ScanRound) - offsetof(ScanRound, states));
	r->scan = scan;
	r->error_state = -1;
	r->moved_state = INT_MAX;
}

/*
 * The next fetch_size keys a collecting key-only scan listed before the
 * moved ones, as rows of r: SCAN's TYPE filter saw them.
 */
static void
collected_rows(RedisScan *scan, ScanRound *r)
{
	int			n = Min(scan->tbl->fetch_size, scan->moved_from - scan->queuepos);

	for (int i = 0; i < n; i++)
	{
		RedisKeyState *st = add_state(r, scan->queue[scan->queuepos + i],
									  scan->queuelens[scan->queuepos + i]);

		st->exists = true;
		st->keyonly = true;
	}
	scan->queuepos += n;
	if (scan->queuepos == scan->nqueue)
	{
		scan->queuepos = scan->nqueue = 0;
		scan->moved_from = 0;
	}
}

/* States of the buffered keys that Redis did not have, into r. */
static void
overlay_states(RedisScan *scan, ScanRound *r)
{
	HASH_SEQ_STATUS hs;
	OverlayEntry *e;

	scan->overlay_done = true;
	if (scan->ov == NULL)
		return;
	hash_seq_init(&hs, scan->ov->bykey);
	while ((e = hash_seq_search(&hs)) != NULL)
		if (!e->seen && pattern_match(scan, e->ref.key, e->ref.len))
			/* a copy: rows are read from NUL-terminated bytes (a write's are not) */
			add_state(r, RedisBytesCopy(e->ref.key, e->ref.len), e->ref.len);
}

/*
 * PgpolyPagedScan's test: whether a write to foreign table relid may add a
 * key SCAN MATCH would return, i.e. whether its keys (its key_prefix, then
 * any text) may match the scan's pattern: whether the prefix and the
 * literal start of the pattern (up to its first wildcard) agree as far as
 * the shorter goes.  A write to a table of other keys (a log of what the
 * query did) leaves the scan paging.
 */
static bool
write_reaches(void *arg, Oid relid)
{
	RedisScan  *scan = arg;
	RedisTable *tbl = RedisLoadTable(relid, GetUserId());
	const char *p = scan->pattern;
	size_t		i = 0;

	for (; i < tbl->prefixlen && *p != '\0'; i++, p++)
	{
		if (*p == '*' || *p == '?' || *p == '[')
			return true;
		if (*p == '\\' && p[1] != '\0')
			p++;				/* an escaped byte */
		if (*p != tbl->prefix[i])
			return false;
	}
	return true;
}

/*
 * The keys of the SCAN pages a drain received before an error (a cancel,
 * a timeout on one node of a cluster) cut it short: their cursors moved
 * on when the replies came, so the keys are queued now or never.
 */
static void
take_drained_pages(RedisScan *scan)
{
	if (scan->drained != NULL && scan->drained->npages > 0)
		take_pages(scan->drained);
}

/*
 * PgpolyPagedScan's drain: an immediate-mode write is about to be sent
 * while SCAN has pages left (a function the scan's query calls writes, or
 * a statement between two FETCHes of a cursor), and SCAN may return keys
 * added during it.  List every key left now, as a collecting scan does:
 * the round sent ahead is read (its SCAN steps were asked before the
 * write), then SCAN steps of their own go to the end, their new keys
 * queued; the values are fetched as before, round by round.
 */
static void
drain_scan(void *arg)
{
	RedisScan  *scan = arg;
	ScanRound  *steps;

	if (scan->nnodes == 0 || scan->scan_done || scan->collect || scan->conn->busy)
		return;
	if (scan->cur >= 0 && scan->rounds[scan->cur ^ 1].ready)
		RedisReceive(scan->conn, scan->rounds[scan->cur ^ 1].ticket);
	take_drained_pages(scan);
	/* in the scan's memory: replies an error leaves owed find it there */
	if (scan->drained == NULL)
		scan->drained = MemoryContextAllocZero(GetMemoryChunkContext(scan),
											   sizeof(ScanRound));
	steps = scan->drained;
	while (!scan->scan_done)
	{
		MemoryContext old;

		clear_round(scan, steps, 0);
		steps->fetch = FETCH_NONE;
		old = MemoryContextSwitchTo(steps->cxt);
		add_scan_steps(scan, steps);
		send_round(scan, steps);
		RedisReceive(scan->conn, steps->ticket);
		MemoryContextSwitchTo(old);
		if (steps->received < steps->expected)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_EXCEPTION),
					 errmsg("a scan of foreign table \"%s\" was cut short",
							scan->tbl->relname),
					 errdetail("The connection was closed while the scan listed its keys."),
					 errhint("Run the query again (open the cursor again).")));
		take_pages(steps);
	}
	clear_round(scan, steps, 0);
	scan->collect = true;
}

/*
 * Build the SCAN mode round r: the fetch of queued keys with the next SCAN
 * step (or the SCAN step alone, key-only), then, once every cursor is back
 * at 0, the moved keys of a cluster, then the buffered keys Redis lacks.
 */
static RoundKind
build_scan_round(RedisScan *scan, ScanRound *r)
{
	bool		keyonly = scan_keyonly(scan);

	take_drained_pages(scan);
	if (scan->nnodes == 0)
	{
		scan_start(scan);

		/*
		 * An immediate-mode write of this statement (an INSERT ... SELECT
		 * from the table itself, an UPDATE moving keys) lands while the
		 * SCAN still runs, and SCAN may return keys added during it: the
		 * statement would read rows it wrote.  A native table shows a
		 * statement none of its own writes; so while an immediate writer
		 * runs, the SCAN goes to its end before the first row is returned
		 * (rows come from the keys it listed, the table's as the statement
		 * began).
		 */
		scan->collect = PgpolyImmediateWritesRunning();
		if (!scan->collect)
			PgpolyPagedScanOpen(&scan->paged, &RedisStore, NULL, write_reaches,
								drain_scan, scan, GetMemoryChunkContext(scan));
	}
	if (!scan->scan_done && scan->collect)
	{
		r->fetch = FETCH_NONE;	/* SCAN steps alone: their keys are queued */
		add_scan_steps(scan, r);
		return ROUND_SENT;
	}
	if (!scan->scan_done)
	{
		/*
		 * A key-only scan takes SCAN's keys as its rows, unless it watches
		 * them: a key must be watched before it is found to exist, so those
		 * are queued and asked TYPE of in the next round, after their WATCH.
		 */
		r->scan_rows = keyonly && !scan_watches(scan);
		r->fetch = r->scan_rows ? FETCH_NONE :
			keyonly ? FETCH_TYPE : value_fetch(scan);
		if (!r->scan_rows)
			take_queued(scan, r);
		/* the next page, unless the keys already met fill more rounds */
		if (r->scan_rows || scan->nqueue - scan->queuepos < scan->tbl->fetch_size)
			add_scan_steps(scan, r);
		return ROUND_SENT;
	}
	PgpolyPagedScanClose(&scan->paged);
	if (!scan->ended)
		scan_end(scan);
	if (scan->collect && keyonly && !scan_watches(scan) &&
		scan->queuepos < scan->moved_from)
	{
		/* the listed keys are the rows (the moved ones are asked TYPE) */
		collected_rows(scan, r);
		return ROUND_LOCAL;
	}
	if (scan->nqueue > scan->queuepos)
	{
		r->fetch = keyonly ? FETCH_TYPE : value_fetch(scan);
		take_queued(scan, r);
		return ROUND_SENT;
	}
	if (scan->overlay_done)
		return ROUND_NONE;
	overlay_states(scan, r);
	return ROUND_LOCAL;
}

/*
 * Build the next round of scan into r (its memory reset first) and send
 * it; ROUND_NONE when the scan has no more.
 */
static RoundKind
build_round(RedisScan *scan, ScanRound *r)
{
	RoundKind	kind = ROUND_SENT;
	MemoryContext old;

	if (scan->pattern == NULL)
	{
		int			n = Min(scan->tbl->fetch_size, scan->nkeys - scan->keypos);

		if (n <= 0)
			return ROUND_NONE;
		clear_round(scan, r, n);
		old = MemoryContextSwitchTo(r->cxt);
		r->fetch = scan_keyonly(scan) ? FETCH_TYPE : value_fetch(scan);
		add_key_states(r, scan->keys + scan->keypos, scan->lens + scan->keypos, n);
		scan->keypos += n;
	}
	else
	{
		clear_round(scan, r, scan->tbl->fetch_size);
		old = MemoryContextSwitchTo(r->cxt);
		kind = build_scan_round(scan, r);
	}
	MemoryContextSwitchTo(old);
	if (kind == ROUND_SENT)
		send_round(scan, r);
	r->ready = kind != ROUND_NONE;
	return kind;
}

/*
 * Make round r (built) the current one: read its replies if they are still
 * owed, raise an error a reply held, and apply the buffered writes.  If the
 * connection was closed since the round was sent (pgpoly.disconnect(), or
 * another statement that read part of its replies failed), the commands
 * whose replies did not come are sent again; a reply whose handling an
 * error cut short leaves the round unusable.
 */
static void
take_round(RedisScan *scan, ScanRound *r)
{
	MemoryContext old;

	RedisReceive(scan->conn, r->ticket);
	r->ticket = 0;
	if (r->handling)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_EXCEPTION),
				 errmsg("a read of foreign table \"%s\" was cut short by an earlier error",
						scan->tbl->relname),
				 errdetail("A reply to the read could not be handled; the connection was closed."),
				 errhint("Run the query again (open the cursor again).")));
	if (r->received < r->expected)
	{
		if (r->scan_rows && r->received == 0)
			r->nstates = 0;
		old = MemoryContextSwitchTo(r->cxt);
		r->base = r->received;
		append_round(scan, r, r->base);
		if (r->nwatch > 0)
			RedisNoteWatch(scan->conn, watch_level(scan));	/* the connection may be new */
		RedisExchange(scan->conn, r->expected - r->base, round_reply, r);
		scan->round_trips++;
		MemoryContextSwitchTo(old);
	}
	if (r->error)
	{
		RedisKeyState *st = &r->states[r->error_state];

		if (r->error->type == REDIS_REPLY_ERROR)
			RedisReplyError(scan->conn, r->error, st->key, st->keylen, scan->tbl);
		wrong_type_error(scan, st, r->error);
	}
	/* the states' new items live as long as the round */
	old = MemoryContextSwitchTo(r->cxt);
	for (int i = 0; scan->ov && i < r->nstates; i++)
		RedisApplyOverlay(scan->tbl, scan->ov, &r->states[i]);
	MemoryContextSwitchTo(old);
	r->ready = false;
	scan->cur = r - scan->rounds;
	scan->cur_state = scan->cur_item = 0;
}

/*
 * The next round of rows, and the one after it sent at once, so that Redis
 * answers it while these rows are consumed; false when there is none.
 */
static bool
next_round(RedisScan *scan)
{
	ScanRound  *r = &scan->rounds[scan->cur < 0 ? 0 : scan->cur ^ 1];

	if (!r->ready && build_round(scan, r) == ROUND_NONE)
		return false;
	take_round(scan, r);
	/* a key-only page's keys are taken once the next page is asked for */
	if (!r->scan_rows)
		take_pages(r);
	build_round(scan, &scan->rounds[scan->cur ^ 1]);
	if (r->scan_rows)
		take_pages(r);
	return true;
}

/*
 * Whether a round's fetches may leave in pieces as its keys come: not when
 * WATCHes go first (one WATCH of all the round's keys before any fetch),
 * nor on a cluster (a piece would wait for the replies of the last).
 */
static bool
stream_ok(RedisScan *scan)
{
	return !scan_watches(scan) && !RedisIsCluster(scan->conn);
}

/*
 * Append and send the fetches of round r's states not sent yet: a piece of
 * the request of r's first piece while Redis still owes its replies
 * (RedisResume), else a request of its own.  If a piece's replies were
 * lost meanwhile (the connection was closed), the rest is left for
 * take_round, which asks again for everything not received.
 */
static void
send_states(RedisScan *scan, ScanRound *r)
{
	int			n = (r->nstates - r->nsent) * r->per_key;
	bool		more;
	MemoryContext old;

	if (n == 0)
		return;
	more = RedisResume(scan->conn, r->ticket);
	r->nfetch += n;
	r->expected += n;
	if (!more && r->received < r->expected - n)
	{
		r->nsent = r->nstates;
		return;
	}
	old = MemoryContextSwitchTo(r->cxt);
	for (int i = r->nsent; i < r->nstates; i++)
		append_fetch(scan, r->fetch, r->states[i].key, r->states[i].keylen, true);
	r->nsent = r->nstates;
	if (more)
		RedisSendMore(scan->conn, r->ticket, n);
	else
	{
		r->base = r->expected - n;
		r->ticket = RedisSend(scan->conn, n, round_reply, r, true);
		scan->round_trips++;
		RedisCountTrips(scan->conn, scan->trips);
	}
	MemoryContextSwitchTo(old);
}

/*
 * Add nkeys keys (copied) to the fetch round the scan builds next (begun
 * by the first call), and send their fetches at once where stream_ok, so
 * that Redis works on them while the caller finds the next keys (the
 * batched join reads its outer rows).  RedisScanEndKeys ends the round.
 * hint: about how many keys the round will have.
 */
void
RedisScanAddKeys(RedisScan *scan, char **keys, size_t *lens, int nkeys, int hint)
{
	ScanRound  *r = &scan->rounds[scan->cur < 0 ? 0 : scan->cur ^ 1];
	MemoryContext old;

	if (!r->streaming)
	{
		clear_round(scan, r, hint);
		r->fetch = scan_keyonly(scan) ? FETCH_TYPE : value_fetch(scan);
		r->per_key = r->fetch == FETCH_VALUES && scan->need_ttl ? 2 : 1;
		r->streaming = true;
	}
	old = MemoryContextSwitchTo(r->cxt);
	add_key_states(r, keys, lens, nkeys);
	MemoryContextSwitchTo(old);
	if (stream_ok(scan))
		send_states(scan, r);
}

/*
 * End the round RedisScanAddKeys built: send what was not sent; its rows
 * come with RedisScanTakeKeys, meanwhile the caller may work.
 */
void
RedisScanEndKeys(RedisScan *scan)
{
	ScanRound  *r = &scan->rounds[scan->cur < 0 ? 0 : scan->cur ^ 1];

	if (!r->streaming)
		RedisScanAddKeys(scan, NULL, NULL, 0, 0);
	if (r->nstates > 0 && stream_ok(scan))
		send_states(scan, r);
	else if (r->nstates > 0)
		send_round(scan, r);
	r->streaming = false;
	r->ready = true;
}

/*
 * Send the fetch of nkeys keys (copied) as the scan's next round; its rows
 * come with RedisScanTakeKeys, meanwhile the caller may work (the batched
 * join reads its next outer rows).
 */
void
RedisScanSendKeys(RedisScan *scan, char **keys, size_t *lens, int nkeys)
{
	RedisScanAddKeys(scan, keys, lens, nkeys, nkeys);
	RedisScanEndKeys(scan);
}

/*
 * Make the round RedisScanSendKeys sent the current one: its states are
 * then RedisScanRoundState(scan, i), in the order of its keys.
 */
void
RedisScanTakeKeys(RedisScan *scan)
{
	ScanRound  *r = &scan->rounds[scan->cur < 0 ? 0 : scan->cur ^ 1];

	if (!r->ready)
		elog(ERROR, "no Redis round was sent");
	take_round(scan, r);
}

/*
 * RedisScanTakeKeys, but the round's replies are read only as far as
 * RedisScanRoundState asks, so the caller joins the first rows while Redis
 * still sends the rest; the replies left are read by the next request on
 * the connection or when asked for.  An error reply is raised once it is
 * read.  A round whose states get the buffered writes (after all its
 * replies) or that was not sent as one request is taken at once.
 */
void
RedisScanTakeKeysLazily(RedisScan *scan)
{
	ScanRound  *r = &scan->rounds[scan->cur < 0 ? 0 : scan->cur ^ 1];

	if (!r->ready)
		elog(ERROR, "no Redis round was sent");
	if (scan->ov != NULL || !stream_ok(scan) || r->ticket == 0)
	{
		take_round(scan, r);
		return;
	}
	r->lazy = true;
	r->ready = false;
	scan->cur = r - scan->rounds;
	scan->cur_state = scan->cur_item = 0;
}

/*
 * Read the lazily taken round r until its reply want came (or an error
 * reply did): once all came, or the request is not pending any more, take
 * it as take_round does (the rest asked again if it was lost, the error
 * raised).
 */
static void
take_part(RedisScan *scan, ScanRound *r, int want)
{
	if (r->error == NULL && !r->handling &&
		RedisReceiveSome(scan->conn, r->ticket, want - r->received) &&
		r->error == NULL)
		return;
	r->lazy = false;
	take_round(scan, r);
}

/*
 * Fetch nkeys keys in one pipelined exchange into the round's states,
 * applying buffered writes (RedisScanSendKeys, then RedisScanTakeKeys).
 */
void
RedisScanFetchKeys(RedisScan *scan, char **keys, size_t *lens, int nkeys)
{
	RedisScanSendKeys(scan, keys, lens, nkeys);
	RedisScanTakeKeys(scan);
}

/*
 * Start a scan of tbl on conn that reads through pending (the table's
 * buffered writes, PgpolyPendingWrites); the caller then sets keys or a
 * pattern.
 */
RedisScan *
RedisScanBegin(RedisTable *tbl, PgpolyConnection *conn, bool need_ttl,
			   List *pending)
{
	RedisScan  *scan = palloc0(sizeof(RedisScan));

	scan->tbl = tbl;
	scan->conn = conn;
	scan->need_ttl = need_ttl;
	scan->keyonly = -1;
	scan->fields = -1;
	scan->cur = -1;
	scan->row_cxt = AllocSetContextCreate(CurrentMemoryContext,
										  "pgpoly redis row",
										  ALLOCSET_SMALL_SIZES);
	scan->ov = RedisBuildOverlay(pending);
	scan->trips = palloc0(sizeof(RedisTrips));
	return scan;
}

/*
 * The columns the caller reads (needed[attno - 1], kept by pointer; NULL:
 * all); the others come back NULL.  one_row: the caller only asks whether
 * a key has rows (a semi or anti join).  Before the first row.
 */
void
RedisScanSetColumns(RedisScan *scan, const bool *needed, bool one_row)
{
	scan->needed = needed;
	scan->one_row = one_row;
	scan->keyonly = -1;
	scan->fields = -1;
	scan->nread = 0;
	if (needed == NULL)
		return;
	scan->readcols = palloc(sizeof(int) * Max(scan->tbl->natts, 1));
	for (int i = 0; i < scan->tbl->natts; i++)
		if (needed[i])
			scan->readcols[scan->nread++] = i;
}

/*
 * Let the scan fetch only the hash fields it reads (RedisFieldsOnly): the
 * caller answers the same for a hash none of whose read fields is set as
 * for a missing key, which HMGET cannot tell apart.  Before the first row.
 */
void
RedisScanAllowFieldFetch(RedisScan *scan)
{
	scan->absent_no_row = true;
	scan->fields = -1;
}

/*
 * Watch every key before reading it (an UPDATE's or DELETE's target, or a
 * scan under SELECT ... FOR UPDATE/SHARE, in write_mode 'transactional';
 * RedisScanWatches): each round sends WATCH for its keys ahead
 * of their fetch, in the same pipeline, so that the COMMIT's EXEC fails if
 * another client changed one of them after the read (see RedisNoteWatch).
 * A key-only scan then asks each key's TYPE after its WATCH instead of
 * taking SCAN's keys as rows.  keyonly false: a scan that reads no value
 * watches nothing (a DELETE that reads keys alone: a key deleted, changed
 * or created meanwhile leaves the same outcome as if the DELETE had come
 * after or before that write).  Before the first row.
 *
 * level and subid: the subtransaction that began the scan's executor node,
 * which may be an ancestor of the one running it (a cursor declared before
 * a SAVEPOINT and fetched after it).  The WATCHes of its rounds are made at
 * that level (RedisNoteWatch): a ROLLBACK TO a later savepoint does not
 * release them, since the rows of a round sent there may be handed out
 * after it.
 */
void
RedisScanWatch(RedisScan *scan, bool keyonly, int level, SubTransactionId subid)
{
	scan->watch = true;
	scan->watch_keyonly = keyonly;
	scan->watch_level = level;
	scan->watch_subid = subid;
}

/* Use a key list (deduplicated by the caller); NULL keys: none. */
void
RedisScanSetKeys(RedisScan *scan, char **keys, size_t *lens, int nkeys)
{
	scan->keys = keys;
	scan->lens = lens;
	scan->nkeys = nkeys;
	scan->pattern = NULL;
}

/* Use SCAN MATCH pattern. */
void
RedisScanSetPattern(RedisScan *scan, const char *pattern)
{
	size_t		n = strlen(pattern);

	scan->pattern = pstrdup(pattern);
	scan->literal = NULL;
	if (n > 0 && pattern[n - 1] == '*')
	{
		char	   *lit = palloc(n);
		int			len = 0;
		bool		literal = true;

		for (size_t i = 0; literal && i < n - 1; i++)
		{
			if (pattern[i] == '\\')
				i++;			/* an escaped byte (the last '*', perhaps) */
			else if (pattern[i] == '*' || pattern[i] == '?' || pattern[i] == '[')
				literal = false;
			if (i >= n - 1)
				literal = false;
			else
				lit[len++] = pattern[i];
		}
		if (literal)
		{
			scan->literal = lit;
			scan->literal_len = len;
		}
	}
	scan->keys = NULL;
	scan->nkeys = 0;
}

/* Restrict zset members to a ZRANGEBYSCORE range. */
void
RedisScanSetScoreRange(RedisScan *scan, const char *min, const char *max)
{
	scan->score_min = pstrdup(min);
	scan->score_max = pstrdup(max);
	scan->keyonly = -1;
}

/*
 * Forget all progress; the next row comes from the first round again.  A
 * round still owed by Redis is dropped when its replies arrive.
 */
void
RedisScanRestart(RedisScan *scan)
{
	for (int i = 0; i < 2; i++)
		if (scan->rounds[i].cxt)
			clear_round(scan, &scan->rounds[i], 0);
	scan->cur = -1;
	scan->cur_state = scan->cur_item = 0;
	scan->keypos = 0;
	if (scan->seen_cxt)
		MemoryContextReset(scan->seen_cxt);
	scan->nnodes = 0;
	scan->scan_done = scan->ended = false;
	PgpolyPagedScanClose(&scan->paged);
	if (scan->drained != NULL)
		clear_round(scan, scan->drained, 0);
	scan->view = NULL;
	scan->seen = NULL;
	scan->arena = NULL;
	scan->arena_left = 0;
	scan->queue = NULL;
	scan->queuelens = NULL;
	scan->nqueue = scan->maxqueue = scan->queuepos = 0;
	scan->overlay_done = false;
	if (scan->ov)
	{
		HASH_SEQ_STATUS hs;
		OverlayEntry *e;

		hash_seq_init(&hs, scan->ov->bykey);
		while ((e = hash_seq_search(&hs)) != NULL)
			e->seen = false;
	}
}

/* Rows a key state produces. */
int
RedisStateRowCount(RedisTable *tbl, RedisKeyState *st)
{
	if (!st->exists)
		return 0;
	if (st->keyonly || tbl->type == REDIS_HASH || tbl->type == REDIS_STRING ||
		tbl->type == REDIS_JSON)
		return 1;
	return st->nitems;
}

/* Error context: name the Redis key and field being converted. */
static void
row_error_callback(void *arg)
{
	RedisScan  *scan = arg;
	RedisKeyState *st = scan->err_state;
	char	   *key = PgpolyPrintable(st->key, st->keylen, 200);

	if (scan->err_field)
		errcontext("Redis key \"%s\", field \"%s\" of foreign table \"%s\"",
				   key, scan->err_field, scan->tbl->relname);
	else
		errcontext("Redis key \"%s\" of foreign table \"%s\"",
				   key, scan->tbl->relname);
}

/* The JSON document of the current row of a json table, parsed once. */
typedef struct RowJson
{
	bool		parsed;
	Datum		doc;
	List	   *nuls;			/* paths of strings that held a NUL */
} RowJson;

/*
 * The stored form of column col of row item of st (with its length in
 * *len; the bytes are NUL-terminated at *len), or NULL.
 */
static char *
column_text(RedisScan *scan, RedisKeyState *st, int item, RedisColumn *col,
			RowJson *json, size_t *len)
{
	RedisTable *tbl = scan->tbl;
	char	   *s;
	int			i;
	bool		verbatim;
	bool		nul;

	switch (col->role)
	{
		case RCOL_KEY:
			*len = st->keylen - tbl->prefixlen;
			return st->key + tbl->prefixlen;
		case RCOL_FIELD:
			if (tbl->type == REDIS_JSON)
			{
				if (!json->parsed)
				{
					json->doc = PgpolyJsonbFromStore(st->items[0].a, st->items[0].alen,
													 &json->nuls);
					json->parsed = true;
				}
				/*
				 * A json column reads its text as written (key order,
				 * duplicate keys, \u0000 ...), not jsonb's form of it.
				 */
				verbatim = col->conv.basetype == JSONOID && !col->conv.is_array;
				nul = json->nuls != NIL && PgpolyJsonNulAt(json->nuls, col->field);
				if (nul && (!verbatim || PgpolyJsonNulUnplaced(json->nuls)))
					PgpolyJsonNulError("the Redis JSON value",
									   PgpolyJsonNulUnplaced(json->nuls) ? NULL : col->field,
									   &col->conv);
				s = PgpolyJsonbColumnText(json->doc, col->field, PGPOLY_FIELD_KEY, &col->conv, len);
				if (s != NULL && verbatim)
				{
					char	   *raw = PgpolyJsonFieldVerbatim(st->items[0].a, st->items[0].alen,
															  col->field, false, len);

					if (raw == NULL && nul)
						PgpolyJsonNulError("the Redis JSON value", col->field, &col->conv);
					if (raw != NULL)
						s = (char *) PgpolyStoreToServer(raw, len, "the Redis JSON value");
				}
				return s;
			}
			/* Fields usually come back in one order: try the last position. */
			i = col->hint;
			if (i >= st->nitems || st->items[i].alen != col->fieldlen ||
				memcmp(st->items[i].a, col->field, col->fieldlen) != 0)
			{
				i = find_item(st, col->field, col->fieldlen);
				if (i < 0)
					return NULL;
				col->hint = i;
			}
			*len = st->items[i].blen;
			return st->items[i].b;
		case RCOL_VALUE:
		case RCOL_MEMBER:
			*len = st->items[item].alen;
			return st->items[item].a;
		case RCOL_SCORE:
			*len = st->items[item].blen;
			return st->items[item].b;
		case RCOL_IDX:
			s = psprintf("%d", item);
			*len = strlen(s);
			return s;
		case RCOL_TTL:
			if (st->ttl == -2)
				return NULL;
			s = psprintf("%lld", st->ttl);
			*len = strlen(s);
			return s;
		case RCOL_NONE:
			break;
	}
	return NULL;
}

/* Convert row item of st into values/nulls (see RedisStateRow). */
static void
state_row_values(RedisScan *scan, RedisKeyState *st, int item, Datum *values,
				 bool *nulls)
{
	RedisTable *tbl = scan->tbl;
	RowJson		json = {false, (Datum) 0, NIL};
	AttrNumber	misspelled = 0; /* an identity column not in the fixed form */
	const char *spelling = NULL;
	size_t		spelling_len = 0;
	int			n = scan->needed ? scan->nread : tbl->natts;

	if (scan->needed)
		memset(nulls, true, sizeof(bool) * tbl->natts);	/* not read */
	for (int k = 0; k < n; k++)
	{
		int			i = scan->needed ? scan->readcols[k] : k;
		RedisColumn *col = &tbl->cols[i];
		char	   *text;
		size_t		len = 0;

		scan->err_field = col->role == RCOL_FIELD ? col->field : NULL;
		text = column_text(scan, st, item, col, &json, &len);
		nulls[i] = text == NULL;
		if (text == NULL)
			values[i] = PgpolyNullDatum(&col->conv);
		else if (tbl->type == REDIS_JSON && col->role == RCOL_FIELD)
			values[i] = PgpolyServerTextToDatum(&col->conv, text, len); /* from jsonb */
		else
			values[i] = RedisTextDatum(tbl, i + 1, text, len);
		if (tbl->target && text != NULL && misspelled == 0 &&
			RedisIdentityMisspelled(tbl, i + 1, values[i], text, len))
		{
			misspelled = i + 1;
			spelling = text;
			spelling_len = len;
		}
	}
	if (misspelled)
		RedisNoteMisspelled(tbl->target, values, nulls, misspelled, spelling,
							spelling_len);
}

/*
 * Whether the rows of scan are its keys alone, made without the row
 * context: a key-only scan (one row per key) reading the key column only,
 * whose input needs no fixed settings, for no UPDATE or DELETE.
 */
static inline bool
key_rows(RedisScan *scan)
{
	return scan->keyonly > 0 && scan->nread == 1 && !scan->tbl->fixed_in &&
		scan->tbl->target == NULL &&
		scan->tbl->cols[scan->readcols[0]].role == RCOL_KEY;
}

/*
 * The row of st in a scan of key_rows: the key's datum is made in the
 * current round's memory, which lives until the round after next is built
 * (after this row is consumed), so no row context is reset per row.
 */
static void
key_row(RedisScan *scan, RedisKeyState *st, Datum *values, bool *nulls)
{
	RedisTable *tbl = scan->tbl;
	int			i = scan->readcols[0];
	ErrorContextCallback errcb;
	MemoryContext old;

	memset(nulls, true, sizeof(bool) * tbl->natts);
	scan->err_state = st;
	scan->err_field = NULL;
	errcb.callback = row_error_callback;
	errcb.arg = scan;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	old = MemoryContextSwitchTo(scan->rounds[scan->cur].cxt);
	values[i] = RedisTextDatum(tbl, i + 1, st->key + tbl->prefixlen,
							   st->keylen - tbl->prefixlen);
	nulls[i] = false;
	MemoryContextSwitchTo(old);
	error_context_stack = errcb.previous;
}

/*
 * Convert row item of st into values/nulls (datums in the row context,
 * valid until the next row) from the stored forms (convert.c), under the
 * fixed settings when some column's input function reads them.  Columns
 * the caller does not read (RedisScanSetColumns) are NULL.
 */
void
RedisStateRow(RedisScan *scan, RedisKeyState *st, int item, Datum *values,
			  bool *nulls)
{
	ErrorContextCallback errcb;
	MemoryContext old;

	if (scan->needed && scan->nread == 0)
	{
		memset(nulls, true, sizeof(bool) * scan->tbl->natts);	/* count(*) */
		return;
	}
	if (key_rows(scan))
	{
		key_row(scan, st, values, nulls);
		return;
	}
	MemoryContextReset(scan->row_cxt);
	old = MemoryContextSwitchTo(scan->row_cxt);
	scan->err_state = st;
	errcb.callback = row_error_callback;
	errcb.arg = scan;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	if (scan->tbl->fixed_in)
	{
		PgpolyFixedSettingsEnter();
		PG_TRY();
		{
			state_row_values(scan, st, item, values, nulls);
		}
		PG_FINALLY();
		{
			PgpolyFixedSettingsLeave();
		}
		PG_END_TRY();
	}
	else
		state_row_values(scan, st, item, values, nulls);

	error_context_stack = errcb.previous;
	MemoryContextSwitchTo(old);
}

/* Next row of the scan into values/nulls; false at the end. */
bool
RedisScanNext(RedisScan *scan, Datum *values, bool *nulls)
{
	for (;;)
	{
		if (scan->cur >= 0)
		{
			ScanRound  *r = &scan->rounds[scan->cur];

			while (scan->cur_state < r->nstates)
			{
				RedisKeyState *st = &r->states[scan->cur_state];

				if (scan->cur_item < RedisStateRowCount(scan->tbl, st))
				{
					RedisStateRow(scan, st, scan->cur_item++, values, nulls);
					return true;
				}
				scan->cur_state++;
				scan->cur_item = 0;
			}
		}
		if (!next_round(scan))
			return false;
	}
}

/* State i of the current round (keys in the order given to SendKeys). */
RedisKeyState *
RedisScanRoundState(RedisScan *scan, int i)
{
	ScanRound  *r = &scan->rounds[scan->cur];

	Assert(scan->cur >= 0 && i >= 0 && i < r->nstates);
	if (r->lazy && ((i + 1) * r->per_key > r->received || r->error))
		take_part(scan, r, (i + 1) * r->per_key);
	return &r->states[i];
}

/* Pipelined exchanges this scan made so far (EXPLAIN ANALYZE). */
int64
RedisScanRoundTrips(RedisScan *scan)
{
	return scan->round_trips;
}

/*
 * Count this scan's round trips per node in trips (which a caller keeps
 * across rescans, for EXPLAIN ANALYZE) instead of the scan's own.
 */
void
RedisScanSetTrips(RedisScan *scan, RedisTrips *trips)
{
	scan->trips = trips;
}
