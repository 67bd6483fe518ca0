/*-------------------------------------------------------------------------
 *
 * redis_scan.c
 *		  Reading a Redis table: key lookups, SCAN, read-your-writes.
 *
 * A RedisScan produces rows round by round.  Each round fetches up to
 * fetch_size keys in one pipelined exchange (one fetch command per key, plus
 * TTL when the _ttl column is read).  Keys come either from a list (pushed
 * down key = / IN / ANY, or the outer side of a batched join) or from
 * SCAN MATCH on the glob-escaped key prefix, deduplicated since SCAN may
 * return a key twice.  On a Redis Cluster every primary is scanned, all of
 * them in each round's one exchange, each with its own cursor; the keys of
 * a round are then fetched from the nodes serving their slots, again in one
 * exchange.  A key that moves between nodes during the scan (a slot being
 * resharded) could escape both cursors, so a cluster scan compares what
 * the primaries say of their slots before and after, and reads the keys of
 * every slot that moved or was moving from its nodes (those already
 * returned are skipped).
 *
 * Every key's remote contents become a RedisKeyState; writes of this
 * transaction that are still buffered (write_mode 'transactional') are then
 * applied to it, so a transaction reads its own writes.  Keys that exist
 * only in the buffer are produced after the remote SCAN ends.
 *
 * Memory: key states live in a round context reset at each round; their
 * items point straight into the round's replies (no copies), which
 * redis_io.c allocates in that same context.  Datums of the current row
 * live in a row context reset at each row; they are read from the stored
 * bytes with their lengths (convert.c), one fixed-settings scope per row.
 *
 * fdw/redis_scan.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <hiredis/hiredis.h>

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "mb/pg_wchar.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "redis.h"

/*
 * A Redis key as hash tables see it: bytes and their length (keys may hold
 * any byte, NUL included).  The bytes are kept by pointer, not copied.
 */
typedef struct KeyRef
{
	const char *key;
	size_t		len;
} KeyRef;

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

struct RedisScan
{
	RedisTable *tbl;
	PgpolyConnection *conn;
	bool		need_ttl;
	RedisOverlay *ov;
	MemoryContext round_cxt;
	MemoryContext row_cxt;

	/* key list mode */
	char	  **keys;
	size_t	   *lens;
	int			nkeys;
	int			keypos;

	/* SCAN mode: a cursor on each node holding keys (one but on a cluster) */
	MemoryContext seen_cxt;		/* seen, its keys, the nodes; reset by a restart */
	char	   *pattern;
	int			nnodes;			/* 0: not started */
	char	  **nodes;			/* their addresses */
	char	  (*cursors)[32];
	bool	   *node_done;
	bool		scan_done;
	RedisClusterView *view;		/* cluster: the slots as the SCAN began */
	char	  **moved;			/* keys of slots that moved meanwhile */
	size_t	   *movedlens;
	int			nmoved;
	int			maxmoved;
	int			movedpos;
	bool		fetching_moved; /* a round of them: SCAN's TYPE filter did
								 * not see those keys */
	bool		overlay_done;
	HTAB	   *seen;

	/* zset score range (NULL: all) */
	char	   *score_min;
	char	   *score_max;

	/* current round */
	RedisKeyState *states;
	int			nstates;
	int			cur_state;
	int			cur_item;

	int64		round_trips;
	RedisTrips *trips;			/* round trips per node */

	/* for error context */
	RedisKeyState *err_state;
	const char *err_field;
};

/* Hash of the bytes a KeyRef points at. */
static uint32
keyref_hash(const void *key, Size keysize)
{
	const KeyRef *r = key;

	return hash_bytes((const unsigned char *) r->key, (int) r->len);
}

/* Equality of the bytes two KeyRefs point at (0 when equal). */
static int
keyref_match(const void *a, const void *b, Size keysize)
{
	const KeyRef *x = a;
	const KeyRef *y = b;

	return x->len != y->len || memcmp(x->key, y->key, x->len) != 0;
}

/* A hash table keyed by KeyRef, entries of entrysize. */
static HTAB *
key_table(const char *name, Size entrysize, MemoryContext cxt)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(KeyRef);
	ctl.entrysize = entrysize;
	ctl.hash = keyref_hash;
	ctl.match = keyref_match;
	ctl.hcxt = cxt;
	return hash_create(name, 256, &ctl,
					   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
}

/* Entry of a key set: the key and the index it was first given. */
typedef struct KeySetEntry
{
	KeyRef		ref;
	int			idx;
} KeySetEntry;

/* A set of Redis keys (bytes with their length), for deduplication. */
HTAB *
RedisKeySet(MemoryContext cxt)
{
	return key_table("pgpoly redis key set", sizeof(KeySetEntry), cxt);
}

/* Add key of len bytes (kept by pointer) to set; false if it was there. */
bool
RedisKeySetAdd(HTAB *set, const char *key, size_t len)
{
	KeyRef		ref = {key, len};
	bool		found;

	hash_search(set, &ref, HASH_ENTER, &found);
	return !found;
}

/*
 * The index of key in set; a new key gets index next.  Lets a caller that
 * deduplicates keys map each original row to its distinct key's slot.
 */
int
RedisKeySetIndex(HTAB *set, const char *key, size_t len, int next)
{
	KeyRef		ref = {key, len};
	bool		found;
	KeySetEntry *e = hash_search(set, &ref, HASH_ENTER, &found);

	if (!found)
		e->idx = next;
	return e->idx;
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
		(*ov)->bykey = key_table("pgpoly redis overlay", sizeof(OverlayEntry),
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
 * Apply the buffered writes for st's key, if any.  An emptied key does not
 * exist (Redis deletes empty collections).
 */
void
RedisApplyOverlay(RedisTable *tbl, RedisOverlay *ov, RedisKeyState *st)
{
	KeyRef		ref = {st->key, st->keylen};
	OverlayEntry *e;
	ListCell   *lc;

	if (ov == NULL)
		return;
	e = hash_search(ov->bykey, &ref, HASH_FIND, NULL);
	if (e == NULL)
		return;
	e->seen = true;
	foreach(lc, e->writes)
		apply_write(st, lfirst(lc));
	st->exists = st->nitems > 0;
	st->ttl = tbl->ttl_seconds > 0 ? tbl->ttl_seconds : (st->exists ? st->ttl : -2);
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
 * Fill st from the reply of the table type's fetch command.  The items
 * point into r (hiredis strings are NUL-terminated), so r must live as long
 * as st.  An error reply (WRONGTYPE) raises an ERROR naming the key; a reply
 * no Redis sends to that command (GET answered by an array, HGETALL by a
 * string, an odd field/value list ...) is a protocol violation.
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
	else if (!strings && r->type == REDIS_REPLY_ARRAY)
	{
		if (pairs && r->elements % 2 != 0)
			RedisProtocolError(conn, RedisFetchCommand(tbl), r,
							   psprintf("an odd number of elements (%zu) for key \"%s\"",
										r->elements, PgpolyPrintable(st->key, st->keylen, 200)));
		for (i = 0; i < r->elements; i += pairs ? 2 : 1)
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

/* Arguments of the reply handler of a fetch round. */
typedef struct FetchRound
{
	RedisScan  *scan;
	int			per_key;		/* replies per key: 1, or 2 with TTL */
} FetchRound;

/*
 * Reply handler of a fetch round: the fetch reply, kept (it was allocated
 * in the round context, and the key state points into it), then the TTL
 * if asked.
 */
static bool
fetch_reply(redisReply *r, int index, void *arg)
{
	FetchRound *fr = arg;
	RedisScan  *scan = fr->scan;
	RedisKeyState *st = &scan->states[index / fr->per_key];

	if (index % fr->per_key != 0)
	{
		if (r->type == REDIS_REPLY_ERROR)
			RedisReplyError(scan->conn, r, st->key, st->keylen, scan->tbl);
		if (r->type != REDIS_REPLY_INTEGER)
			RedisProtocolError(scan->conn, "TTL", r, NULL);
		st->ttl = r->integer;
		return false;
	}
	/* A key of another type under the prefix: SCAN's TYPE filter skips it. */
	if (scan->fetching_moved && r->type == REDIS_REPLY_ERROR &&
		strncmp(r->str, "WRONGTYPE", 9) == 0)
	{
		st->nitems = 0;
		st->exists = false;
		return false;
	}
	RedisStateFromReply(scan->tbl, st, r, scan->conn);
	return true;
}

/* Append the fetch command (and TTL) for one key. */
static void
append_fetch(RedisScan *scan, const char *key, size_t keylen)
{
	RedisTable *tbl = scan->tbl;
	const char *argv[6];
	size_t		lens[6];
	int			argc = 2;

	argv[0] = RedisFetchCommand(tbl);
	argv[1] = key;
	lens[1] = keylen;
	if (tbl->type == REDIS_ZSET && scan->score_min)
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
	RedisAppendArgv(scan->conn, argc, argv, lens);
	if (scan->need_ttl)
	{
		const char *targv[2] = {"TTL", key};
		size_t		tlens[2] = {3, keylen};

		RedisAppendArgv(scan->conn, 2, targv, tlens);
	}
}

/*
 * Fetch nkeys keys in one pipelined exchange into the round's states
 * (allocated in the round context), applying buffered writes.
 */
void
RedisScanFetchKeys(RedisScan *scan, char **keys, size_t *lens, int nkeys)
{
	FetchRound	fr = {scan, scan->need_ttl ? 2 : 1};
	MemoryContext old;
	int			i;

	MemoryContextReset(scan->round_cxt);
	old = MemoryContextSwitchTo(scan->round_cxt);

	scan->states = palloc0(sizeof(RedisKeyState) * Max(nkeys, 1));
	scan->nstates = nkeys;
	scan->cur_state = 0;
	scan->cur_item = 0;
	for (i = 0; i < nkeys; i++)
	{
		scan->states[i].key = RedisBytesCopy(keys[i], lens[i]);
		scan->states[i].keylen = lens[i];
		scan->states[i].ttl = -2;
		append_fetch(scan, keys[i], lens[i]);
	}
	if (nkeys > 0)
	{
		RedisExchange(scan->conn, nkeys * fr.per_key, fetch_reply, &fr);
		scan->round_trips++;
		RedisCountTrips(scan->conn, scan->trips);
	}
	for (i = 0; i < nkeys; i++)
		RedisApplyOverlay(scan->tbl, scan->ov, &scan->states[i]);
	MemoryContextSwitchTo(old);
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
	/*
	 * A round of fetch_size replies takes a few hundred kB; a large first
	 * block is kept across resets, so rounds do not fault in fresh pages.
	 */
	scan->round_cxt = AllocSetContextCreate(CurrentMemoryContext,
											"pgpoly redis round",
											0, 1024 * 1024, ALLOCSET_DEFAULT_MAXSIZE);
	scan->row_cxt = AllocSetContextCreate(CurrentMemoryContext,
										  "pgpoly redis row",
										  ALLOCSET_SMALL_SIZES);
	scan->ov = RedisBuildOverlay(pending);
	scan->trips = palloc0(sizeof(RedisTrips));
	return scan;
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
	scan->pattern = pstrdup(pattern);
	scan->keys = NULL;
	scan->nkeys = 0;
}

/* Restrict zset members to a ZRANGEBYSCORE range. */
void
RedisScanSetScoreRange(RedisScan *scan, const char *min, const char *max)
{
	scan->score_min = pstrdup(min);
	scan->score_max = pstrdup(max);
}

/* Forget all progress; the next row comes from the first round again. */
void
RedisScanRestart(RedisScan *scan)
{
	MemoryContextReset(scan->round_cxt);
	scan->states = NULL;
	scan->nstates = scan->cur_state = scan->cur_item = 0;
	scan->keypos = 0;
	scan->nnodes = 0;
	scan->scan_done = false;
	scan->view = NULL;
	scan->moved = NULL;
	scan->movedlens = NULL;
	scan->nmoved = scan->maxmoved = scan->movedpos = 0;
	scan->overlay_done = false;
	if (scan->seen_cxt)
		MemoryContextReset(scan->seen_cxt);
	scan->seen = NULL;
	if (scan->ov)
	{
		HASH_SEQ_STATUS hs;
		OverlayEntry *e;

		hash_seq_init(&hs, scan->ov->bykey);
		while ((e = hash_seq_search(&hs)) != NULL)
			e->seen = false;
	}
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

/* Whether the len bytes at s are a SCAN cursor: decimal digits. */
static bool
valid_cursor(const char *s, size_t len, size_t max)
{
	if (len == 0 || len >= max)
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* Arguments of the reply handler of a SCAN step. */
typedef struct ScanStep
{
	RedisScan  *scan;
	int		   *which;			/* the node each reply comes from */
	char	  **keys;			/* new keys of the step */
	size_t	   *lens;
	int			nkeys;
	int			maxkeys;
} ScanStep;

/* Reply handler of SCAN on one node: its new cursor, then keys not seen before. */
static bool
scan_reply(redisReply *r, int index, void *arg)
{
	ScanStep   *step = arg;
	RedisScan  *scan = step->scan;
	int			node = step->which[index];
	redisReply *keys;
	size_t		i;

	if (r->type == REDIS_REPLY_ERROR)
		RedisReplyError(scan->conn, r, NULL, 0, scan->tbl);
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		r->element[0]->type != REDIS_REPLY_STRING ||
		r->element[1]->type != REDIS_REPLY_ARRAY ||
		!valid_cursor(r->element[0]->str, r->element[0]->len, sizeof(scan->cursors[0])))
		RedisProtocolError(scan->conn, "SCAN", r,
						   "no [cursor, keys] pair");
	memcpy(scan->cursors[node], r->element[0]->str, r->element[0]->len);
	scan->cursors[node][r->element[0]->len] = '\0';
	scan->node_done[node] = strcmp(scan->cursors[node], "0") == 0;

	keys = r->element[1];
	if (step->nkeys + keys->elements > step->maxkeys)
	{
		step->maxkeys = step->nkeys + keys->elements + 64;
		step->keys = repalloc(step->keys, sizeof(char *) * step->maxkeys);
		step->lens = repalloc(step->lens, sizeof(size_t) * step->maxkeys);
	}
	for (i = 0; i < keys->elements; i++)
	{
		redisReply *k = keys->element[i];
		char	   *copy;

		if (k->type != REDIS_REPLY_STRING)
			RedisProtocolError(scan->conn, "SCAN", k, "a key that is no string");
		if (!glob_match(scan->pattern, k->str, k->len))
			RedisProtocolError(scan->conn, "SCAN", k,
							   psprintf("key \"%s\", which does not match %s",
										PgpolyPrintable(k->str, k->len, 200), scan->pattern));
		copy = RedisBytesCopy(k->str, k->len);
		if (!RedisKeySetAdd(scan->seen, copy, k->len))
			continue;
		step->keys[step->nkeys] = copy;
		step->lens[step->nkeys++] = k->len;
	}
	return false;
}

/*
 * Start a SCAN: on a cluster what the primaries say of their slots (in
 * seen_cxt), then the nodes holding keys (on a cluster, those that say
 * they serve slots), each with cursor 0.
 */
static void
scan_start(RedisScan *scan)
{
	MemoryContext old = MemoryContextSwitchTo(scan->seen_cxt);
	List	   *nodes;
	ListCell   *lc;
	int			i = 0;

	scan->view = RedisClusterViewOf(scan->conn, NIL);
	nodes = scan->view ? RedisClusterViewNodes(scan->view) :
		RedisPrimaryNodes(scan->conn);

	scan->nnodes = list_length(nodes);
	scan->nodes = palloc(sizeof(char *) * scan->nnodes);
	scan->cursors = palloc(sizeof(scan->cursors[0]) * scan->nnodes);
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
	char	   *k;

	if (!glob_match(scan->pattern, key, len))
		return;
	k = RedisBytesCopy(key, len);
	if (!RedisKeySetAdd(scan->seen, k, len))
		return;
	if (scan->nmoved == scan->maxmoved)
	{
		scan->maxmoved = Max(64, scan->maxmoved * 2);
		scan->moved = scan->moved ? repalloc(scan->moved, sizeof(char *) * scan->maxmoved) :
			palloc(sizeof(char *) * scan->maxmoved);
		scan->movedlens = scan->movedlens ?
			repalloc(scan->movedlens, sizeof(size_t) * scan->maxmoved) :
			palloc(sizeof(size_t) * scan->maxmoved);
	}
	scan->moved[scan->nmoved] = k;
	scan->movedlens[scan->nmoved++] = len;
}

/*
 * Every cursor is back at 0.  On a cluster, collect the keys of the slots
 * that moved while the SCAN ran (in seen_cxt); they are fetched next.
 */
static void
scan_end(RedisScan *scan)
{
	MemoryContext old;
	List	   *nodes = NIL;

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

/*
 * One SCAN step on every node not finished (one exchange), then the fetch
 * of the new keys they returned.
 */
static void
scan_round(RedisScan *scan)
{
	RedisTable *tbl = scan->tbl;
	char		count[16];
	const char *argv[8] = {"SCAN", NULL, "MATCH", scan->pattern,
	"COUNT", count, "TYPE", RedisScanTypeFilter(tbl)};
	ScanStep	step = {scan};
	MemoryContext old;
	int			n = 0;

	if (scan->seen_cxt == NULL)
		scan->seen_cxt = AllocSetContextCreate(GetMemoryChunkContext(scan),
											   "pgpoly redis seen keys",
											   ALLOCSET_DEFAULT_SIZES);
	if (scan->seen == NULL)
		scan->seen = RedisKeySet(scan->seen_cxt);
	if (scan->nnodes == 0)
		scan_start(scan);
	snprintf(count, sizeof(count), "%d", tbl->fetch_size);
	old = MemoryContextSwitchTo(scan->seen_cxt);	/* the keys SCAN returns */
	MemoryContextReset(scan->round_cxt);
	step.which = palloc(sizeof(int) * scan->nnodes);
	step.maxkeys = 64;
	step.keys = palloc(sizeof(char *) * step.maxkeys);
	step.lens = palloc(sizeof(size_t) * step.maxkeys);
	for (int i = 0; i < scan->nnodes; i++)
	{
		if (scan->node_done[i])
			continue;
		argv[1] = scan->cursors[i];
		RedisAppendToNode(scan->conn, scan->nodes[i], 8, argv, NULL);
		step.which[n++] = i;
	}
	RedisExchange(scan->conn, n, scan_reply, &step);
	scan->round_trips++;
	RedisCountTrips(scan->conn, scan->trips);
	scan->scan_done = true;
	for (int i = 0; i < scan->nnodes; i++)
		if (!scan->node_done[i])
			scan->scan_done = false;
	MemoryContextSwitchTo(old);
	RedisScanFetchKeys(scan, step.keys, step.lens, step.nkeys);
	if (scan->scan_done)
		scan_end(scan);
	pfree(step.keys);
	pfree(step.lens);
	pfree(step.which);
}

/* After SCAN ends: states for buffered keys that Redis did not have. */
static void
overlay_round(RedisScan *scan)
{
	HASH_SEQ_STATUS hs;
	OverlayEntry *e;
	List	   *pending = NIL;
	ListCell   *lc;
	MemoryContext old;
	int			i = 0;

	scan->overlay_done = true;
	MemoryContextReset(scan->round_cxt);
	scan->nstates = 0;
	if (scan->ov == NULL)
		return;
	old = MemoryContextSwitchTo(scan->round_cxt);
	hash_seq_init(&hs, scan->ov->bykey);
	while ((e = hash_seq_search(&hs)) != NULL)
		if (!e->seen && glob_match(scan->pattern, e->ref.key, e->ref.len))
			pending = lappend(pending, e);
	scan->states = palloc0(sizeof(RedisKeyState) * Max(list_length(pending), 1));
	foreach(lc, pending)
	{
		OverlayEntry *pe = lfirst(lc);
		RedisKeyState *st = &scan->states[i++];

		/* a copy: rows are read from NUL-terminated bytes (a write's are not) */
		st->key = RedisBytesCopy(pe->ref.key, pe->ref.len);
		st->keylen = pe->ref.len;
		st->ttl = -2;
		RedisApplyOverlay(scan->tbl, scan->ov, st);
	}
	scan->nstates = i;
	scan->cur_state = scan->cur_item = 0;
	MemoryContextSwitchTo(old);
}

/* Fetch the next round; false when there is none. */
static bool
next_round(RedisScan *scan)
{
	if (scan->pattern == NULL)
	{
		int			n = Min(scan->tbl->fetch_size, scan->nkeys - scan->keypos);

		if (n <= 0)
			return false;
		RedisScanFetchKeys(scan, scan->keys + scan->keypos,
						   scan->lens + scan->keypos, n);
		scan->keypos += n;
		return true;
	}
	if (!scan->scan_done)
	{
		scan_round(scan);
		return true;
	}
	if (scan->movedpos < scan->nmoved)
	{
		int			n = Min(scan->tbl->fetch_size, scan->nmoved - scan->movedpos);

		scan->fetching_moved = true;
		RedisScanFetchKeys(scan, scan->moved + scan->movedpos,
						   scan->movedlens + scan->movedpos, n);
		scan->fetching_moved = false;
		scan->movedpos += n;
		return true;
	}
	if (!scan->overlay_done)
	{
		overlay_round(scan);
		return true;
	}
	return false;
}

/* Rows a key state produces. */
int
RedisStateRowCount(RedisTable *tbl, RedisKeyState *st)
{
	if (!st->exists)
		return 0;
	if (tbl->type == REDIS_HASH || tbl->type == REDIS_STRING ||
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
				if (json->nuls != NIL && PgpolyJsonNulAt(json->nuls, col->field))
					PgpolyJsonNulError("the Redis JSON value",
									   PgpolyJsonNulUnplaced(json->nuls) ? NULL : col->field,
									   &col->conv);
				return PgpolyJsonbColumnText(json->doc, col->field, &col->conv, len);
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
	int			i;
	AttrNumber	misspelled = 0; /* an identity column not in the fixed form */
	const char *spelling = NULL;
	size_t		spelling_len = 0;

	for (i = 0; i < tbl->natts; i++)
	{
		RedisColumn *col = &tbl->cols[i];
		char	   *text;
		size_t		len = 0;

		scan->err_field = col->role == RCOL_FIELD ? col->field : NULL;
		text = column_text(scan, st, item, col, &json, &len);
		nulls[i] = text == NULL;
		if (text == NULL)
			values[i] = (Datum) 0;
		else if (tbl->type == REDIS_JSON && col->role == RCOL_FIELD)
			values[i] = PgpolyTextToDatum(&col->conv, text, len);	/* JSON text */
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
 * Convert row item of st into values/nulls (datums in the row context,
 * valid until the next row) from the stored forms (convert.c), under the
 * fixed settings when some column's input function reads them.
 */
void
RedisStateRow(RedisScan *scan, RedisKeyState *st, int item, Datum *values,
			  bool *nulls)
{
	ErrorContextCallback errcb;
	MemoryContext old;

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
		while (scan->cur_state < scan->nstates)
		{
			RedisKeyState *st = &scan->states[scan->cur_state];

			if (scan->cur_item < RedisStateRowCount(scan->tbl, st))
			{
				RedisStateRow(scan, st, scan->cur_item++, values, nulls);
				return true;
			}
			scan->cur_state++;
			scan->cur_item = 0;
		}
		if (!next_round(scan))
			return false;
	}
}

/* State i of the current round (keys in the order given to FetchKeys). */
RedisKeyState *
RedisScanRoundState(RedisScan *scan, int i)
{
	Assert(i >= 0 && i < scan->nstates);
	return &scan->states[i];
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
