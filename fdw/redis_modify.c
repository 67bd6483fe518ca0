/*-------------------------------------------------------------------------
 *
 * redis_modify.c
 *		  INSERT, UPDATE and DELETE on Redis tables.
 *
 * Each row change becomes one or two RedisWrite: what the change means to
 * a reader (the overlay kind, key and items) plus the Redis commands that
 * perform it.  With write_mode 'transactional' the writes go to the core's
 * transaction buffer and are sent at pre-commit by RedisFlushWrites() as one
 * pipelined MULTI ... EXEC per server, or on a Redis Cluster one per hash
 * slot (Redis runs a MULTI/EXEC only within one slot), all of them in one
 * exchange; with 'immediate' they are sent in pipelined batches of
 * batch_size while the statement runs.  A large transaction on one server
 * streams its writes into a MULTI on a second connection as they are
 * buffered (redis_stream.c); RedisFlushWrites() then sends the rest and
 * EXEC there, and reads the replies as it would on the main connection.
 *
 * A write is encoded once, when its row is written: its commands become the
 * RESP that goes to Redis, laid out in an arena (see WriteArena) next to
 * the RESP of the writes before it, and its key and items are offsets into
 * those bytes.  At flush the bytes are sent where they lie: no copy, no
 * second encoding, and 100k buffered rows take a few large writes.  The
 * arena holds a write's header and bytes without an allocation of their
 * own (a few hundred bytes per hash row, in chunks of up to 1 MB).  A
 * value's stored form is copied once, into the RESP: from the datum itself
 * (text, bytea) or from the builder's slot for its column, where a number
 * or date is written (PgpolyDatumBytesRef); nothing is palloc'd per value.
 *
 * Semantics (documented in the README):
 *	- INSERT of an existing key overwrites the table's columns; hash fields
 *	  the table does not map are kept.  NULL removes a hash field.
 *	- UPDATE writes only the columns set (a reader in the transaction sees
 *	  them merged into what Redis holds); a changed key moves the key
 *	  (RENAME for hashes, so unmapped fields and TTL move along; a list
 *	  element moves to the end of the other list).  RENAME cannot cross
 *	  hash slots: on a cluster a hash moved to another slot is written
 *	  whole at its new key and deleted at the old one.
 *	- DELETE removes the key (zset/set: the member; list: the first equal
 *	  element).
 *	- INSERT ... ON CONFLICT DO NOTHING never overwrites: the existence
 *	  test and the write are one atomic command.  A hash, string or json
 *	  row conflicts with an existing key of any type (SET ... NX for
 *	  string/json; for a hash a script: EXISTS, HSET, EXPIRE).  A set or
 *	  zset row conflicts with the member already in the key's set (SADD,
 *	  ZADD NX; with ttl_seconds a script, so that a skipped member leaves
 *	  the key's TTL alone).  A list element has no identity: ON CONFLICT is
 *	  refused for lists.  In write_mode 'transactional' the same
 *	  conditional commands are buffered; which rows count as inserted is
 *	  decided when the statement runs, against Redis and the transaction's
 *	  buffered writes (RedisRowsExist, RedisIdentityExists).
 *	- Nothing is dropped silently: a value Redis cannot hold (NULL string
 *	  value, a hash with no fields, a write to _ttl) is an ERROR.
 *
 * fdw/redis_modify.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <hiredis/hiredis.h>

#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "redis.h"

/*
 * Lua of a hash INSERT ... ON CONFLICT DO NOTHING: KEYS[1] the key,
 * ARGV[1] the TTL in seconds ('' for none), then field/value pairs.
 * Returns 1 when it inserted, 0 when the key existed.
 */
static const char HashNxScript[] =
"if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end "
"redis.call('HSET', KEYS[1], unpack(ARGV, 2)) "
"if ARGV[1] ~= '' then redis.call('EXPIRE', KEYS[1], ARGV[1]) end "
"return 1";

/*
 * Lua of a set/zset member INSERT ... ON CONFLICT DO NOTHING with a TTL:
 * KEYS[1] the key, ARGV[1] the TTL, ARGV[2] the member, ARGV[3] the score
 * (zset).  The TTL is set only when the member was added.
 */
static const char MemberNxScript[] =
"local n "
"if #ARGV == 3 then n = redis.call('ZADD', KEYS[1], 'NX', ARGV[3], ARGV[2]) "
"else n = redis.call('SADD', KEYS[1], ARGV[2]) end "
"if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end "
"return n";

/* ----------------------------------------------------------------
 *		The arena of buffered writes
 * ----------------------------------------------------------------
 */

#define ARENA_FIRST_CHUNK	(8 * 1024)
#define ARENA_MAX_CHUNK		(4 * 1024 * 1024)

/* One stream of an arena: the free end of its current chunk. */
typedef struct ArenaStream
{
	char	   *free;			/* NULL: no chunk yet */
	char	   *end;
	Size		next_chunk;		/* size of the next chunk taken */
} ArenaStream;

/*
 * The writes built for one memory context (the transaction's, shared by
 * all statements of the transaction, or an immediate-mode batch's) live in
 * chunks of that context, filled front to back in two streams: headers and
 * items in one, the bytes (RESP) in the other, so that the RESP of
 * successive writes lies back to back.  A reset callback of the context
 * forgets the arena when the chunks go; the next write starts a new one.
 */
typedef struct WriteArena
{
	MemoryContext cxt;
	ArenaStream meta;			/* RedisWrite headers and items */
	ArenaStream bytes;			/* RedisWrite.data */
	struct WriteArena *next;	/* in Arenas */
	MemoryContextCallback forget;
} WriteArena;

static WriteArena *Arenas = NULL;	/* the arenas of live contexts */

/* Reset callback of an arena's context: unlink the arena (it goes too). */
static void
arena_forget(void *arg)
{
	WriteArena **p;

	for (p = &Arenas; *p != NULL; p = &(*p)->next)
		if (*p == (WriteArena *) arg)
		{
			*p = (*p)->next;
			return;
		}
}

/* The arena of cxt, created in it on first use. */
static WriteArena *
arena_of(MemoryContext cxt)
{
	WriteArena *a;

	for (a = Arenas; a != NULL; a = a->next)
		if (a->cxt == cxt)
			return a;
	a = MemoryContextAllocZero(cxt, sizeof(WriteArena));
	a->cxt = cxt;
	a->meta.next_chunk = a->bytes.next_chunk = ARENA_FIRST_CHUNK;
	a->forget.func = arena_forget;
	a->forget.arg = a;
	MemoryContextRegisterResetCallback(cxt, &a->forget);
	a->next = Arenas;
	Arenas = a;
	return a;
}

/*
 * size bytes of stream s of arena a, aligned to align (a power of two): the
 * current chunk's free end, or a new chunk (twice the last, up to
 * ARENA_MAX_CHUNK, or as large as size needs).  Chunks of 2 MB and more
 * (a transaction's writes past the first 2 MB of a stream) go on huge
 * pages (PgpolyAllocHugePages): ingest_features' 100k hash rows fill
 * about 24 MB, which faulted in 4 kB at a time cost the backend ~14 us a
 * page on a virtual machine (6k faults).
 */
static char *
arena_take(WriteArena *a, ArenaStream *s, Size size, Size align)
{
	char	   *p = s->free ? (char *) TYPEALIGN(align, s->free) : NULL;

	if (p == NULL || size > (Size) (s->end - p))
	{
		Size		chunk = Max(s->next_chunk, size + align);
		void	   *mem;

		if (chunk >= PGPOLY_HUGE_PAGE)
			p = PgpolyAllocHugePages(a->cxt, chunk, &mem);
		else
			p = MemoryContextAllocExtended(a->cxt, chunk, MCXT_ALLOC_HUGE);
		s->end = p + chunk;
		s->next_chunk = Min(s->next_chunk * 2, ARENA_MAX_CHUNK);
		p = (char *) TYPEALIGN(align, p);
	}
	s->free = p + size;
	return p;
}

/* ----------------------------------------------------------------
 *		Building a write
 * ----------------------------------------------------------------
 */

/*
 * Bytes of a write being built: argument arg of its commands, or (arg -1)
 * the len bytes at p, laid out after the RESP (p NULL: no bytes).
 */
typedef struct ByteRef
{
	int			arg;
	const char *p;
	size_t		len;
} ByteRef;

static const ByteRef NoBytes = {-1, NULL, 0};

/* The commands of one write at most: RENAME or DEL, HSET, HDEL, EXPIRE. */
#define MAX_WRITE_CMDS 4

/*
 * A write being built: the arguments of its commands (pointing at the
 * caller's bytes) and its items, until build_end() lays it out.  One
 * builder serves all writes (they are built one at a time); its arrays
 * grow in TopMemoryContext to the widest table met.
 */
typedef struct WriteBuilder
{
	RedisTable *tbl;
	RedisWriteKind kind;
	ByteRef		key;
	const char *keybytes;
	size_t		keylen;
	long		idx;
	bool		renamed;		/* RedisWrite.renamed */
	int			ncmds;
	int			cmdargc[MAX_WRITE_CMDS];
	int			nargs;
	Size		argbytes;		/* RESP bytes of the nargs arguments */
	int			nitems;
	int			maxargs;		/* the arrays' sizes */
	int			maxitems;
	const char **argv;
	size_t	   *lens;
	uint32	   *argoff;			/* where build_end puts each argument */
	ByteRef    *items;			/* a and b of each item */
	const char **text;			/* hash_fields: stored form of each column */
	size_t	   *textlen;
	char	   *form;			/* PGPOLY_FORM_BUFSIZE bytes per column, where
								 * a number's or date's form is written */
	char		ttl[16];		/* the table's ttl_seconds as text */
	char		idxtext[24];
} WriteBuilder;

static WriteBuilder Builder;

/* Grow the builder's arrays to hold a write of a natts-column table. */
static void
build_reserve(WriteBuilder *b, int natts)
{
	int			maxargs = 4 * natts + 16;	/* RENAME, HSET, HDEL, EXPIRE, EVAL */
	int			maxitems = natts + 1;

	if (maxargs > b->maxargs)
	{
		if (b->argv)
		{
			pfree(b->argv);
			pfree(b->lens);
			pfree(b->argoff);
		}
		b->argv = MemoryContextAlloc(TopMemoryContext, sizeof(char *) * maxargs);
		b->lens = MemoryContextAlloc(TopMemoryContext, sizeof(size_t) * maxargs);
		b->argoff = MemoryContextAlloc(TopMemoryContext, sizeof(uint32) * maxargs);
		b->maxargs = maxargs;
	}
	if (maxitems > b->maxitems)
	{
		if (b->items)
		{
			pfree(b->items);
			pfree(b->text);
			pfree(b->textlen);
			pfree(b->form);
		}
		b->items = MemoryContextAlloc(TopMemoryContext, sizeof(ByteRef) * 2 * maxitems);
		b->text = MemoryContextAlloc(TopMemoryContext, sizeof(char *) * maxitems);
		b->textlen = MemoryContextAlloc(TopMemoryContext, sizeof(size_t) * maxitems);
		b->form = MemoryContextAlloc(TopMemoryContext, (Size) PGPOLY_FORM_BUFSIZE * maxitems);
		b->maxitems = maxitems;
	}
}

/* Start building a write of kind to key (keylen bytes) of tbl. */
static WriteBuilder *
build_begin(RedisTable *tbl, RedisWriteKind kind, const char *key,
			size_t keylen)
{
	WriteBuilder *b = &Builder;

	build_reserve(b, tbl->natts);
	b->tbl = tbl;
	b->kind = kind;
	b->keybytes = key;
	b->keylen = keylen;
	b->key = (ByteRef)
	{
		-1, key, keylen
	};
	b->idx = 0;
	b->renamed = false;
	b->ncmds = b->nargs = b->nitems = 0;
	b->argbytes = 0;
	if (tbl->ttl_seconds > 0)
		snprintf(b->ttl, sizeof(b->ttl), "%d", tbl->ttl_seconds);
	else
		b->ttl[0] = '\0';
	return b;
}

/* ERROR for a write that outgrew the builder (a can't-happen). */
static pg_noinline void
too_many(WriteBuilder *b, const char *what)
{
	elog(ERROR, "Redis write of foreign table \"%s\" has too many %s",
		 b->tbl->relname, what);
}

/*
 * Add an argument (len bytes at s, which must stay valid until
 * build_end) to the last command; its index.
 */
static inline int
arg_len(WriteBuilder *b, const char *s, size_t len)
{
	if (unlikely(b->ncmds == 0 || b->nargs == b->maxargs))
		too_many(b, "arguments");
	b->argv[b->nargs] = s;
	b->lens[b->nargs] = len;
	b->argbytes += RedisRespArgSize(len);
	b->cmdargc[b->ncmds - 1]++;
	return b->nargs++;
}

/* Add an argument that is a NUL-terminated name or number. */
static int
arg_str(WriteBuilder *b, const char *s)
{
	return arg_len(b, s, strlen(s));
}

/* Add the key as an argument; the write's key is its first occurrence. */
static int
arg_key(WriteBuilder *b)
{
	int			i = arg_len(b, b->keybytes, b->keylen);

	if (b->key.arg < 0)
		b->key = (ByteRef)
	{
		i, NULL, 0
	};
	return i;
}

/* Start a command: its name; the caller adds the arguments. */
static void
begin_bare_cmd(WriteBuilder *b, const char *name)
{
	if (b->ncmds == MAX_WRITE_CMDS)
		too_many(b, "commands");
	b->cmdargc[b->ncmds++] = 0;
	arg_str(b, name);
}

/* Start a command: name, then the key. */
static void
begin_cmd(WriteBuilder *b, const char *name)
{
	begin_bare_cmd(b, name);
	arg_key(b);
}

/* A ByteRef to argument i. */
static inline ByteRef
ref_arg(int i)
{
	ByteRef		r = {i, NULL, 0};

	return r;
}

/* A ByteRef to len bytes at p (not an argument). */
static inline ByteRef
ref_bytes(const char *p, size_t len)
{
	ByteRef		r = {-1, p, len};

	return r;
}

/* Add an item (a, b) for the overlay. */
static inline void
add_item(WriteBuilder *b, ByteRef a, ByteRef bb)
{
	if (unlikely(b->nitems == b->maxitems))
		too_many(b, "items");
	b->items[2 * b->nitems] = a;
	b->items[2 * b->nitems + 1] = bb;
	b->nitems++;
}

/* Bytes r adds after the RESP (0 for an argument or no bytes). */
static inline Size
ref_extra(const ByteRef *r)
{
	return r->arg < 0 && r->p != NULL ? r->len : 0;
}

/*
 * Copy n bytes from src to dst.  Most arguments are a few bytes long (a
 * field name, a number): fixed-size moves that overlap copy them without
 * the call memcpy() costs.
 */
static inline void
copy_bytes(char *dst, const char *src, size_t n)
{
	if (n > 16)
		memcpy(dst, src, n);
	else if (n >= 8)
	{
		memcpy(dst, src, 8);
		memcpy(dst + n - 8, src + n - 8, 8);
	}
	else if (n >= 4)
	{
		memcpy(dst, src, 4);
		memcpy(dst + n - 4, src + n - 4, 4);
	}
	else if (n > 0)
	{
		dst[0] = src[0];
		dst[n / 2] = src[n / 2];
		dst[n - 1] = src[n - 1];
	}
}

/*
 * Place r in data: the offset and length of its argument, or its bytes
 * copied at *extra (advanced past them), or REDIS_NO_BYTES.
 */
static inline void
place(WriteBuilder *b, const ByteRef *r, char *data, Size *extra,
	  uint32 *off, uint32 *len)
{
	if (r->arg >= 0)
	{
		*off = b->argoff[r->arg];
		*len = (uint32) b->lens[r->arg];
	}
	else if (r->p == NULL)
	{
		*off = REDIS_NO_BYTES;
		*len = 0;
	}
	else
	{
		memcpy(data + *extra, r->p, r->len);
		*off = (uint32) *extra;
		*len = (uint32) r->len;
		*extra += r->len;
	}
}

/*
 * Lay the write out in cxt's arena: the RESP of its commands, then the key
 * and item bytes that are no argument.  The builder is free again after.
 */
static RedisWrite *
build_end(WriteBuilder *b, MemoryContext cxt)
{
	WriteArena *a = arena_of(cxt);
	Size		resplen = 0;
	Size		total;
	Size		extra;
	char	   *data;
	char	   *p;
	RedisWrite *w;
	int			arg = 0;

	for (int c = 0; c < b->ncmds; c++)
		resplen += RedisRespHeaderSize(b->cmdargc[c]);
	resplen += b->argbytes;
	total = resplen + ref_extra(&b->key);
	for (int i = 0; i < 2 * b->nitems; i++)
		total += ref_extra(&b->items[i]);
	if (total >= REDIS_NO_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a write to key \"%s\" of foreign table \"%s\" is too large",
						PgpolyPrintable(b->keybytes, b->keylen, 200), b->tbl->relname),
				 errdetail("Its commands take %zu bytes; at most %u can be sent.",
						   (size_t) total, REDIS_NO_BYTES - 1)));
	data = arena_take(a, &a->bytes, total, 1);
	w = (RedisWrite *) arena_take(a, &a->meta,
								  offsetof(RedisWrite, items) + sizeof(RedisWriteItem) * b->nitems,
								  MAXIMUM_ALIGNOF);
	p = data;
	for (int c = 0; c < b->ncmds; c++)
	{
		p = RedisRespPutHeader(p, '*', b->cmdargc[c]);
		for (int j = 0; j < b->cmdargc[c]; j++, arg++)
		{
			/* RedisRespPutArg, its bytes copied without a call */
			p = RedisRespPutHeader(p, '$', b->lens[arg]);
			b->argoff[arg] = (uint32) (p - data);
			copy_bytes(p, b->argv[arg], b->lens[arg]);
			p += b->lens[arg];
			*p++ = '\r';
			*p++ = '\n';
		}
	}
	if ((Size) (p - data) != resplen)
		elog(ERROR, "Redis write encoded in %zu bytes, %zu expected",
			 (size_t) (p - data), (size_t) resplen);
	w->tbl = b->tbl;
	w->applied = NULL;
	w->data = data;
	w->resplen = (uint32) resplen;
	w->ncmds = (uint16) b->ncmds;
	w->nitems = (uint16) b->nitems;
	w->kind = b->kind;
	w->idx = b->idx;
	w->renamed = b->renamed;
	extra = resplen;
	place(b, &b->key, data, &extra, &w->keyoff, &w->keylen);
	for (int i = 0; i < b->nitems; i++)
	{
		place(b, &b->items[2 * i], data, &extra, &w->items[i].aoff, &w->items[i].alen);
		place(b, &b->items[2 * i + 1], data, &extra, &w->items[i].boff, &w->items[i].blen);
	}
	Assert(extra == total);
	return w;
}

/* Add EXPIRE key ttl_seconds when the table has a TTL. */
static void
add_expire(WriteBuilder *b)
{
	if (b->tbl->ttl_seconds <= 0)
		return;
	begin_cmd(b, "EXPIRE");
	arg_str(b, b->ttl);
}

/* ERROR for a value Redis cannot hold. */
static void
reject_null(RedisTable *tbl, const char *colname, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_NOT_NULL_VIOLATION),
			 errmsg("column \"%s\" of foreign table \"%s\" cannot be NULL",
					colname, tbl->relname),
			 errdetail("%s", why)));
}

/*
 * The stored form of column i (0-based) of a row, value not NULL, for the
 * write being built: the datum's own bytes, or its form written into the
 * builder's slot of column i; valid until build_end (no copy of its own).
 */
static inline const char *
column_form(WriteBuilder *b, int i, Datum value, size_t *len)
{
	return PgpolyDatumBytesRef(&b->tbl->cols[i].conv, value,
							   b->form + (Size) i * PGPOLY_FORM_BUFSIZE, len);
}

/* Whether column att is written by this change (INSERT: all). */
static bool
is_written(Bitmapset *updated, AttrNumber att)
{
	return updated == NULL || bms_is_member(att, updated);
}

/*
 * Hash commands and items of the row values/nulls: HSET of the written
 * non-NULL fields and HDEL of the written NULL ones (a command without
 * fields is left out: Redis rejects it).  Items: the written non-NULL
 * fields; an RW_MERGE also the removed ones (without b); with all_items
 * every other non-NULL field too (an RW_PUT holds the whole row).
 */
static void
hash_fields(WriteBuilder *b, Datum *values, bool *nulls, Bitmapset *updated,
			bool all_items)
{
	RedisTable *tbl = b->tbl;
	int			nset = 0;
	int			ndel = 0;
	int			i;

	for (i = 0; i < tbl->natts; i++)
		if (tbl->cols[i].role == RCOL_FIELD && is_written(updated, i + 1))
		{
			if (nulls[i])
				ndel++;
			else
				nset++;
		}
	if (nset > 0)
		begin_cmd(b, "HSET");
	/* the written values as HSET's arguments, each converted in place */
	for (i = 0; i < tbl->natts; i++)
	{
		b->text[i] = NULL;
		if (tbl->cols[i].role != RCOL_FIELD || nulls[i])
			continue;
		if (is_written(updated, i + 1))
		{
			int			f = arg_len(b, tbl->cols[i].field, tbl->cols[i].fieldlen);
			const char *text;
			size_t		len;

			text = column_form(b, i, values[i], &len);
			add_item(b, ref_arg(f), ref_arg(arg_len(b, text, len)));
		}
		else if (all_items)
			b->text[i] = column_form(b, i, values[i], &b->textlen[i]);
	}
	for (i = 0; all_items && i < tbl->natts; i++)
		if (b->text[i])
			add_item(b, ref_bytes(tbl->cols[i].field, tbl->cols[i].fieldlen),
					 ref_bytes(b->text[i], b->textlen[i]));
	if (ndel > 0)
		begin_cmd(b, "HDEL");
	for (i = 0; ndel > 0 && i < tbl->natts; i++)
		if (tbl->cols[i].role == RCOL_FIELD && nulls[i] && is_written(updated, i + 1))
		{
			int			f = arg_len(b, tbl->cols[i].field, tbl->cols[i].fieldlen);

			if (b->kind == RW_MERGE)
				add_item(b, ref_arg(f), NoBytes);
		}
}

/*
 * ERROR for an INSERT of a hash row whose fields are all NULL (its items
 * hold no set field: an RW_MERGE's NULL fields are removals).
 */
static void
reject_empty_hash(WriteBuilder *b)
{
	for (int i = 0; i < b->nitems; i++)
		if (b->items[2 * i + 1].p != NULL || b->items[2 * i + 1].arg >= 0)
			return;
	ereport(ERROR,
			(errcode(ERRCODE_NOT_NULL_VIOLATION),
			 errmsg("cannot store a row with only NULL fields in Redis hash table \"%s\"",
					b->tbl->relname),
			 errdetail("Redis has no empty hashes: the key \"%s\" would not exist.",
					   PgpolyPrintable(b->keybytes, b->keylen, 200))));
}

/* JSON object text (UTF-8) of the table's field columns. */
static char *
json_object_text(RedisTable *tbl, Datum *values, bool *nulls)
{
	StringInfoData buf;
	bool		first = true;
	int			i;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (i = 0; i < tbl->natts; i++)
	{
		RedisColumn *col = &tbl->cols[i];

		if (col->role != RCOL_FIELD)
			continue;
		if (!first)
			appendStringInfoChar(&buf, ',');
		first = false;
		escape_json(&buf, col->field);
		appendStringInfoChar(&buf, ':');
		PgpolyJsonAppendValue(&buf, values[i], col->typid, nulls[i]);
	}
	appendStringInfoChar(&buf, '}');
	return (char *) PgpolyServerToStoreCstr(buf.data, false);	/* as UTF-8 */
}

/*
 * string/json write of the row: SET key value [NX] [EX ttl] (nx: only if
 * the key does not exist).
 */
static void
string_put(WriteBuilder *b, Datum *values, bool *nulls, bool nx)
{
	RedisTable *tbl = b->tbl;
	const char *text;
	size_t		len;
	int			v;

	if (tbl->type == REDIS_JSON)
	{
		text = json_object_text(tbl, values, nulls);
		len = strlen(text);		/* JSON we wrote: no NULs */
	}
	else
	{
		if (nulls[tbl->value_att - 1])
			reject_null(tbl, tbl->cols[tbl->value_att - 1].name,
						"A Redis string cannot hold NULL; DELETE the row instead.");
		text = column_form(b, tbl->value_att - 1, values[tbl->value_att - 1], &len);
	}
	begin_cmd(b, "SET");
	v = arg_len(b, text, len);
	if (nx)
		arg_str(b, "NX");
	if (tbl->ttl_seconds > 0)
	{
		arg_str(b, "EX");
		arg_str(b, b->ttl);
	}
	add_item(b, ref_arg(v), NoBytes);
}

/* Stored form of a collection column that must not be NULL; *len set. */
static char *
required_text(RedisTable *tbl, AttrNumber att, Datum *values, bool *nulls,
			  size_t *len)
{
	if (nulls[att - 1])
		reject_null(tbl, tbl->cols[att - 1].name,
					"Redis collections cannot hold NULL elements.");
	return RedisDatumText(tbl, att, values[att - 1], len);
}

/*
 * The element of a row: a = member (zset, set) or value (list), with its
 * length; b = the score of a zset member when score is asked for.
 */
static RedisItem
row_element(RedisTable *tbl, Datum *values, bool *nulls, bool score)
{
	RedisItem	it = {NULL, 0, NULL, 0};

	it.a = required_text(tbl, tbl->type == REDIS_LIST ? tbl->value_att : tbl->member_att,
						 values, nulls, &it.alen);
	if (score && tbl->type == REDIS_ZSET)
		it.b = required_text(tbl, tbl->score_att, values, nulls, &it.blen);
	return it;
}

/*
 * Commands of a member INSERT ... ON CONFLICT DO NOTHING of elem (zset,
 * set): one atomic command that adds it only if it is not there, and sets
 * the TTL only then.  Returns the member's argument.
 */
static int
member_nx(WriteBuilder *b, RedisItem elem, int *score)
{
	RedisTable *tbl = b->tbl;
	int			m;

	if (tbl->ttl_seconds > 0)
	{
		begin_bare_cmd(b, "EVAL");
		arg_len(b, MemberNxScript, sizeof(MemberNxScript) - 1);
		arg_str(b, "1");
		arg_key(b);
		arg_str(b, b->ttl);
		m = arg_len(b, elem.a, elem.alen);
		if (tbl->type == REDIS_ZSET)
			*score = arg_len(b, elem.b, elem.blen);
		return m;
	}
	if (tbl->type == REDIS_ZSET)
	{
		begin_cmd(b, "ZADD");
		arg_str(b, "NX");
		*score = arg_len(b, elem.b, elem.blen);
		return arg_len(b, elem.a, elem.alen);
	}
	begin_cmd(b, "SADD");
	return arg_len(b, elem.a, elem.alen);
}

/*
 * zset/set/list element write (add, remove, append, set, remove first) of
 * elem (see row_element) to key, built for cxt; nx: an add only if the
 * member is not there (ON CONFLICT DO NOTHING).
 */
static RedisWrite *
element_write(RedisTable *tbl, RedisWriteKind kind, char *key, size_t keylen,
			  RedisItem elem, long idx, bool nx, MemoryContext cxt)
{
	WriteBuilder *b = build_begin(tbl, kind, key, keylen);
	int			member = -1;
	int			score = -1;

	b->idx = idx;
	switch (kind)
	{
		case RW_ADD:
			if (nx)
				member = member_nx(b, elem, &score);
			else if (tbl->type == REDIS_ZSET)
			{
				begin_cmd(b, "ZADD");
				score = arg_len(b, elem.b, elem.blen);
				member = arg_len(b, elem.a, elem.alen);
			}
			else
			{
				begin_cmd(b, "SADD");
				member = arg_len(b, elem.a, elem.alen);
			}
			break;
		case RW_REM:
			begin_cmd(b, tbl->type == REDIS_ZSET ? "ZREM" : "SREM");
			member = arg_len(b, elem.a, elem.alen);
			break;
		case RW_APPEND:
			begin_cmd(b, "RPUSH");
			member = arg_len(b, elem.a, elem.alen);
			break;
		case RW_SET_IDX:
			begin_cmd(b, "LSET");
			snprintf(b->idxtext, sizeof(b->idxtext), "%ld", idx);
			arg_str(b, b->idxtext);
			member = arg_len(b, elem.a, elem.alen);
			break;
		case RW_REM_FIRST:
			begin_cmd(b, "LREM");
			arg_str(b, "1");
			member = arg_len(b, elem.a, elem.alen);
			break;
		default:
			elog(ERROR, "unexpected element write kind %d", (int) kind);
	}
	add_item(b, ref_arg(member), score >= 0 ? ref_arg(score) : NoBytes);
	if ((kind == RW_ADD && !nx) || kind == RW_APPEND)
		add_expire(b);
	return build_end(b, cxt);
}

/* Key of a full row; NULL keys are rejected. */
static char *
row_key(RedisTable *tbl, Datum *values, bool *nulls, size_t *len)
{
	if (nulls[tbl->key_att - 1])
		reject_null(tbl, tbl->cols[tbl->key_att - 1].name,
					"The key column names the Redis key.");
	return RedisKeyFromDatum(tbl, NULL, values[tbl->key_att - 1], len);
}

/* Refuse writes to the read-only _ttl column. */
static void
check_ttl_untouched(RedisTable *tbl, bool *nulls, Bitmapset *updated)
{
	if (tbl->ttl_att == 0)
		return;
	if (updated ? bms_is_member(tbl->ttl_att, updated) : !nulls[tbl->ttl_att - 1])
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("column \"_ttl\" of foreign table \"%s\" is read-only",
						tbl->relname),
				 errhint("Set the table option ttl_seconds to give written keys an expiry.")));
}

/*
 * The write of an INSERT of one full row, built for cxt (temporary memory
 * and the result come from the current context); nx: ON CONFLICT DO
 * NOTHING, one atomic command that inserts only if the row does not exist
 * yet (see the file header).
 */
static RedisWrite *
insert_write(RedisTable *tbl, Datum *values, bool *nulls, bool nx,
			 MemoryContext cxt)
{
	size_t		keylen;
	char	   *key;
	WriteBuilder *b;

	check_ttl_untouched(tbl, nulls, NULL);
	key = row_key(tbl, values, nulls, &keylen);
	switch (tbl->type)
	{
		case REDIS_HASH:

			/*
			 * HSET of the non-NULL fields, HDEL of the NULL ones: the fields
			 * no column of tbl maps stay, as an RW_MERGE says to a reader
			 * through another table of the same hashes (PgpolySharesWrites);
			 * the if-absent script writes a key that has no fields.
			 */
			b = build_begin(tbl, nx ? RW_PUT : RW_MERGE, key, keylen);
			if (nx)
			{
				begin_bare_cmd(b, "EVAL");
				arg_len(b, HashNxScript, sizeof(HashNxScript) - 1);
				arg_str(b, "1");
				arg_key(b);
				arg_str(b, b->ttl);
				for (int i = 0; i < tbl->natts; i++)
					if (tbl->cols[i].role == RCOL_FIELD && !nulls[i])
					{
						int			f = arg_len(b, tbl->cols[i].field, tbl->cols[i].fieldlen);
						const char *text;
						size_t		len;

						text = column_form(b, i, values[i], &len);
						add_item(b, ref_arg(f), ref_arg(arg_len(b, text, len)));
					}
			}
			else
				hash_fields(b, values, nulls, NULL, false);
			/* a delivered outbox upsert of NULLs: HDEL, as its UPDATE did */
			if (nx || !PgpolyChangesDelivered())
				reject_empty_hash(b);
			if (!nx)
				add_expire(b);
			return build_end(b, cxt);
		case REDIS_STRING:
		case REDIS_JSON:
			b = build_begin(tbl, RW_PUT, key, keylen);
			string_put(b, values, nulls, nx);
			return build_end(b, cxt);
		case REDIS_ZSET:
		case REDIS_SET:
			return element_write(tbl, RW_ADD, key, keylen,
								 row_element(tbl, values, nulls, true), 0, nx, cxt);
		case REDIS_LIST:
			if (nx)
				elog(ERROR, "ON CONFLICT on a Redis list table");
			return element_write(tbl, RW_APPEND, key, keylen,
								 row_element(tbl, values, nulls, false), 0, false, cxt);
	}
	elog(ERROR, "unexpected Redis table type %d", (int) tbl->type);
	return NULL;				/* keep compiler quiet */
}

/*
 * The writes of an INSERT of one full row, built for cxt (temporary memory
 * and the list come from the current context).
 */
List *
RedisInsertWrites(RedisTable *tbl, Datum *values, bool *nulls,
				  MemoryContext cxt)
{
	return list_make1(insert_write(tbl, values, nulls, false, cxt));
}

/* DEL key (an RW_DEL write to key), built for cxt. */
static RedisWrite *
del_write(RedisTable *tbl, char *key, size_t keylen, bool send,
		  MemoryContext cxt)
{
	WriteBuilder *b = build_begin(tbl, RW_DEL, key, keylen);

	if (send)
		begin_cmd(b, "DEL");
	return build_end(b, cxt);
}

/*
 * The writes of a DELETE, built for cxt; old holds the row identity (key,
 * member, ...).
 */
List *
RedisDeleteWrites(RedisTable *tbl, Datum *old, bool *oldnulls,
				  MemoryContext cxt)
{
	size_t		keylen;
	char	   *key = row_key(tbl, old, oldnulls, &keylen);

	switch (tbl->type)
	{
		case REDIS_ZSET:
		case REDIS_SET:
			return list_make1(element_write(tbl, RW_REM, key, keylen,
											row_element(tbl, old, oldnulls, false),
											0, false, cxt));
		case REDIS_LIST:
			return list_make1(element_write(tbl, RW_REM_FIRST, key, keylen,
											row_element(tbl, old, oldnulls, false),
											0, false, cxt));
		default:
			return list_make1(del_write(tbl, key, keylen, true, cxt));
	}
}

/*
 * Hash UPDATE: the changed columns only, merged by a reader into what the
 * key holds.  A changed key is RENAMEd first (the new key then holds the
 * whole row); on a cluster, a new key in another hash slot cannot be a
 * RENAME target: the new key gets every column of the row and the old key
 * is deleted.
 */
static List *
hash_update(RedisTable *tbl, char *oldkey, size_t oldlen, char *key,
			size_t keylen, Datum *values, bool *nulls, Bitmapset *updated,
			MemoryContext cxt)
{
	WriteBuilder *b;
	RedisWrite *del;
	RedisWrite *w;
	bool		split;

	if (oldlen == keylen && memcmp(oldkey, key, keylen) == 0)
	{
		b = build_begin(tbl, RW_MERGE, key, keylen);
		hash_fields(b, values, nulls, updated, false);
		add_expire(b);
		if (b->ncmds == 0)
			return NIL;			/* nothing changes */
		return list_make1(build_end(b, cxt));
	}
	split = tbl->cluster && RedisKeySlot(oldkey, oldlen) != RedisKeySlot(key, keylen);
	del = del_write(tbl, oldkey, oldlen, split, cxt);
	b = build_begin(tbl, RW_PUT, key, keylen);
	if (split)
	{
		begin_cmd(b, "DEL");
		hash_fields(b, values, nulls, NULL, false);
	}
	else
	{
		b->renamed = true;
		begin_bare_cmd(b, "RENAME");
		arg_len(b, oldkey, oldlen);
		arg_key(b);
		hash_fields(b, values, nulls, updated, true);
	}
	add_expire(b);
	w = build_end(b, cxt);
	return list_make2(del, w);
}

/*
 * The writes of an UPDATE, built for cxt: old holds the row identity
 * columns, values the complete new row, updated the attnums the statement
 * assigns.
 */
List *
RedisUpdateWrites(RedisTable *tbl, Datum *old, bool *oldnulls, Datum *values,
				  bool *nulls, Bitmapset *updated, MemoryContext cxt)
{
	size_t		oldlen;
	size_t		keylen;
	size_t		idxlen;
	char	   *oldkey = row_key(tbl, old, oldnulls, &oldlen);
	char	   *key;
	bool		moved;

	check_ttl_untouched(tbl, nulls, updated);
	if (updated != NULL && !bms_is_member(tbl->key_att, updated))
	{
		key = oldkey;			/* the key column is not assigned */
		keylen = oldlen;
	}
	else
		key = row_key(tbl, values, nulls, &keylen);
	moved = oldlen != keylen || memcmp(oldkey, key, keylen) != 0;

	switch (tbl->type)
	{
		case REDIS_HASH:
			return hash_update(tbl, oldkey, oldlen, key, keylen, values, nulls,
							   updated, cxt);
		case REDIS_STRING:
		case REDIS_JSON:
			{
				WriteBuilder *b = build_begin(tbl, RW_PUT, key, keylen);
				RedisWrite *w;

				string_put(b, values, nulls, false);
				w = build_end(b, cxt);
				if (moved)
					return list_make2(linitial(RedisDeleteWrites(tbl, old, oldnulls, cxt)), w);
				return list_make1(w);
			}
		case REDIS_ZSET:
		case REDIS_SET:
			{
				RedisItem	member = row_element(tbl, values, nulls, true);
				RedisItem	oldmember = row_element(tbl, old, oldnulls, false);
				List	   *result = NIL;

				if (moved || member.alen != oldmember.alen ||
					memcmp(member.a, oldmember.a, member.alen) != 0)
					result = RedisDeleteWrites(tbl, old, oldnulls, cxt);
				return lappend(result,
							   element_write(tbl, RW_ADD, key, keylen, member, 0,
											 false, cxt));
			}
		case REDIS_LIST:
			if (bms_is_member(tbl->idx_att, updated))
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot change the idx of a Redis list element"),
						 errhint("DELETE the element and INSERT it again: INSERT appends.")));
			/* A new key moves the element: off the old list, onto the end of the new. */
			if (moved)
				return lappend(RedisDeleteWrites(tbl, old, oldnulls, cxt),
							   element_write(tbl, RW_APPEND, key, keylen,
											 row_element(tbl, values, nulls, false), 0,
											 false, cxt));
			return list_make1(element_write(tbl, RW_SET_IDX, key, keylen,
											row_element(tbl, values, nulls, false),
											atol(RedisDatumText(tbl, tbl->idx_att,
																old[tbl->idx_att - 1], &idxlen)),
											false, cxt));
	}
	return NIL;
}

/*
 * The write of an INSERT ... ON CONFLICT DO NOTHING of one full row, built
 * for cxt: one atomic command that inserts only if the row does not exist.
 * With applied, the reply of an immediate-mode send sets *applied to
 * whether it inserted (buffered writes pass NULL: COMMIT does not report
 * it).
 */
RedisWrite *
RedisInsertIfAbsentWrite(RedisTable *tbl, Datum *values, bool *nulls,
						 bool *applied, MemoryContext cxt)
{
	RedisWrite *w = insert_write(tbl, values, nulls, true, cxt);

	w->applied = applied;
	return w;
}

/*
 * The identity an INSERT of a full row conflicts on: the key in id->a, and
 * for set/zset the member in id->b (NULL otherwise).
 */
void
RedisInsertIdentity(RedisTable *tbl, Datum *values, bool *nulls, RedisItem *id)
{
	memset(id, 0, sizeof(RedisItem));
	id->a = row_key(tbl, values, nulls, &id->alen);
	if (tbl->type == REDIS_ZSET || tbl->type == REDIS_SET)
	{
		id->b = required_text(tbl, tbl->member_att, values, nulls, &id->blen);
	}
}

/* Arguments of the reply handler of RedisRowsExist. */
typedef struct ExistsReplies
{
	PgpolyConnection *conn;
	RedisTable *tbl;
	RedisItem  *ids;
	bool	   *exists;
} ExistsReplies;

/* Reply handler of RedisRowsExist: an integer (EXISTS, SISMEMBER) or a score. */
static bool
exists_reply(redisReply *r, int index, void *arg)
{
	ExistsReplies *er = arg;

	if (r->type == REDIS_REPLY_ERROR)
		RedisReplyError(er->conn, r, er->ids[index].a, er->ids[index].alen, er->tbl);
	er->exists[index] = r->type == REDIS_REPLY_INTEGER ? r->integer > 0 :
		r->type != REDIS_REPLY_NIL;
	return false;
}

/*
 * Whether each of the n identities (RedisInsertIdentity) exists in Redis
 * now, in one pipelined round: EXISTS key, SISMEMBER key member, or ZSCORE
 * key member.
 */
void
RedisRowsExist(PgpolyConnection *conn, RedisTable *tbl, RedisItem *ids, int n,
			   bool *exists)
{
	ExistsReplies er = {conn, tbl, ids, exists};

	for (int i = 0; i < n; i++)
	{
		const char *argv[3] = {"EXISTS", ids[i].a, ids[i].b};
		size_t		lens[3] = {6, ids[i].alen, ids[i].blen};
		int			argc = 2;

		if (tbl->type == REDIS_SET || tbl->type == REDIS_ZSET)
		{
			argv[0] = tbl->type == REDIS_SET ? "SISMEMBER" : "ZSCORE";
			lens[0] = strlen(argv[0]);
			argc = 3;
		}
		RedisAppendArgv(conn, argc, argv, lens);
	}
	if (n > 0)
		RedisExchange(conn, n, exists_reply, &er);
}

/* Arguments of the reply handler of a write exchange. */
typedef struct WriteReplies
{
	PgpolyConnection *conn;
	RedisWrite **owner;			/* the write of each command; NULL: MULTI,
								 * EXEC, UNWATCH */
	int		   *multi;			/* atomic: the MULTI of each command's block
								 * (-1: an UNWATCH after them) */
	bool		atomic;
	bool		cluster;
	/* atomic: what failed, reported once every reply is in */
	int			failed;			/* the first command that failed, or -1 */
	char	   *answer;			/* what Redis said about it */
	List	   *lost_keys;		/* keys of the writes not applied */
	RedisWrite *last_lost;		/* the write of the last key listed */
	int			nblocks;		/* MULTI/EXEC blocks sent */
	int			napplied;		/* of them, those that ran */
	int			nconflicts;		/* of them, those a WATCH aborted */
	RedisWrite *conflict;		/* the first write of the first of those */
	List	   *written;		/* nodes where a block ran */
	int			base;			/* replies taken before the exchange (a
								 * write stream's): its first one's index */
} WriteReplies;

/* ERROR for a failed write command of an immediate-mode batch. */
static void
write_failed(WriteReplies *wr, int cmd, redisReply *r)
{
	RedisWrite *w = wr->owner[cmd];
	const char *answer = PgpolyPrintable(r->str, r->len, 200);

	wr->conn->errors++;
	ereport(ERROR,
			(errcode(RedisReplyErrcode(answer)),
			 errmsg("could not write key \"%s\" of foreign table \"%s\" to Redis server \"%s\"",
					PgpolyPrintable(RedisWriteKey(w), w->keylen, 200), w->tbl->relname,
					wr->conn->servername),
			 errdetail("Redis answered: %s", answer)));
}

/* Remember the first failure of a block: command cmd, Redis said r. */
static void
note_failure(WriteReplies *wr, int cmd, redisReply *r)
{
	if (wr->failed >= 0)
		return;
	wr->failed = cmd;
	wr->answer = r->type == REDIS_REPLY_ERROR ? PgpolyPrintable(r->str, r->len, 200) :
		pstrdup("an unexpected reply");
}

/* Remember that command cmd (of a block) was not applied; Redis said r. */
static void
note_lost(WriteReplies *wr, int cmd, redisReply *r)
{
	RedisWrite *w = wr->owner[cmd];

	if (w == NULL)
		return;
	note_failure(wr, cmd, r);
	if (w == wr->last_lost)
		return;					/* its other commands: listed once */
	wr->last_lost = w;
	wr->lost_keys = lappend(wr->lost_keys, PgpolyPrintable(RedisWriteKey(w), w->keylen, 200));
}

/*
 * EXEC of the block opened at MULTI m answered r (index e): an array of one
 * reply per command (the block ran), or an error (it did not).
 */
static void
exec_reply(WriteReplies *wr, int m, int e, redisReply *r)
{
	const char *node;

	RedisExecAnswered(wr->conn, e);
	if (r->type == REDIS_REPLY_NIL)
	{
		/* a key the transaction WATCHed changed: Redis ran none of it */
		if (wr->nconflicts++ == 0)
			wr->conflict = wr->owner[m + 1];
		return;
	}
	if (r->type == REDIS_REPLY_ERROR)
	{
		note_failure(wr, e, r);
		for (int i = m + 1; i < e; i++)
			note_lost(wr, i, r);
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY || (int) r->elements != e - m - 1)
		RedisProtocolError(wr->conn, "EXEC", r,
						   psprintf("not an array of %d replies", e - m - 1));
	for (size_t i = 0; i < r->elements; i++)
		if (r->element[i]->type == REDIS_REPLY_ERROR)
			note_lost(wr, m + 1 + i, r->element[i]);
	wr->napplied++;
	node = RedisReplyNode(wr->conn, e);
	if (!list_member(wr->written, makeString((char *) node)))
		wr->written = lappend(wr->written, makeString(pstrdup(node)));
}

/* The reply r to the UNWATCH at index: OK, or a failure of the COMMIT. */
static void
unwatch_reply(WriteReplies *wr, int index, redisReply *r)
{
	if (r->type == REDIS_REPLY_ERROR)
		note_failure(wr, index, r);
	else if (r->type != REDIS_REPLY_STATUS)
		RedisProtocolError(wr->conn, "UNWATCH", r, NULL);
	else
		RedisExecAnswered(wr->conn, index);
}

/*
 * Reply handler.  Immediate mode: any error is an ERROR at once, and a
 * conditional write (RedisInsertIfAbsentWrite) that asked for it learns
 * whether it inserted: 1 or OK, against 0 or nil.  Blocks: MULTI's OK, the
 * QUEUED acks, then EXEC's array; failures are collected and reported by
 * report_failures() once every block has answered, so the error can say
 * what was written where.  A reply of a type the command never answers
 * with is a protocol violation.
 */
static bool
write_reply(redisReply *r, int index, void *arg)
{
	WriteReplies *wr = arg;

	index += wr->base;
	if (!wr->atomic)
	{
		if (r->type == REDIS_REPLY_ERROR)
			write_failed(wr, index, r);
		if (wr->owner[index]->applied)
			*wr->owner[index]->applied = r->type == REDIS_REPLY_INTEGER ?
				r->integer > 0 : r->type != REDIS_REPLY_NIL;
		return false;
	}
	if (wr->multi[index] < 0)
	{
		unwatch_reply(wr, index, r);
		return false;
	}
	if (wr->multi[index] != index && wr->owner[index] == NULL)
	{
		exec_reply(wr, wr->multi[index], index, r);
		return false;
	}
	if (wr->multi[index] == index)	/* MULTI */
	{
		wr->nblocks++;
		if (r->type == REDIS_REPLY_ERROR)
			note_failure(wr, index, r);
	}
	else if (r->type == REDIS_REPLY_ERROR)	/* not QUEUED */
		note_lost(wr, index, r);
	if (r->type != REDIS_REPLY_STATUS && r->type != REDIS_REPLY_ERROR)
		RedisProtocolError(wr->conn, wr->multi[index] == index ? "MULTI" : "a queued command",
						   r, NULL);
	return false;
}

/* Up to ten of keys (already printable), quoted, for a message. */
static char *
keys_text(List *keys)
{
	StringInfoData buf;
	ListCell   *lc;
	int			n = 0;

	initStringInfo(&buf);
	foreach(lc, keys)
	{
		if (n++ == 10)
		{
			appendStringInfo(&buf, " and %d more", list_length(keys) - 10);
			break;
		}
		appendStringInfo(&buf, "%s\"%s\"", n > 1 ? ", " : "", (char *) lfirst(lc));
	}
	return buf.data;
}

/* The nodes of wr->written, for a message. */
static char *
nodes_text(List *nodes)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, nodes)
		appendStringInfo(&buf, "%s%s", buf.len ? ", " : "", strVal(lfirst(lc)));
	return buf.data;
}

/*
 * After the blocks answered, some EXEC returned nil: a key the transaction
 * read (and WATCHed, RedisScanWatch) was changed by another client before
 * COMMIT, and Redis ran none of that block: ERROR 40001.  On a cluster the
 * other blocks may have run; the hint then says which, not to retry.
 */
static void
report_conflict(WriteReplies *wr)
{
	RedisWrite *w = wr->conflict;

	wr->conn->errors++;
	wr->conn->flush_settled = true; /* every block answered: the hint says */
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not serialize the writes to foreign table \"%s\" on Redis server \"%s\"",
					w->tbl->relname, wr->conn->servername),
			 errdetail("Another client changed a key that this transaction's UPDATE, DELETE or SELECT FOR UPDATE/SHARE read (key \"%s\" or another of its MULTI/EXEC block), so Redis aborted the EXEC (WATCH).",
					   PgpolyPrintable(RedisWriteKey(w), w->keylen, 200)),
			 wr->napplied == 0 ?
			 errhint("Nothing was written; the transaction can be retried.") :
			 errhint("%d of %d hash-slot transactions were aborted; the others ran, on: %s.",
					 wr->nconflicts, wr->nblocks, nodes_text(wr->written))));
}

/*
 * After the blocks answered: ERROR if a write failed, naming its key (and
 * on a cluster the keys not written and the nodes that were).
 */
static void
report_failures(WriteReplies *wr)
{
	RedisWrite *w;

	if (wr->nconflicts > 0)
		report_conflict(wr);
	if (wr->failed < 0)
		return;
	wr->conn->errors++;
	w = wr->owner[wr->failed];
	if (w == NULL)
		ereport(ERROR,
				(errcode(RedisReplyErrcode(wr->answer)),
				 errmsg("Redis server \"%s\" did not execute the transaction's writes",
						wr->conn->servername),
				 errdetail("Redis answered: %s", wr->answer),
				 wr->cluster ?
				 errhint("Not written: %s.  %d of %d hash-slot transactions ran, on: %s.",
						 keys_text(wr->lost_keys), wr->napplied, wr->nblocks,
						 wr->napplied ? nodes_text(wr->written) : "no node") : 0));
	ereport(ERROR,
			(errcode(RedisReplyErrcode(wr->answer)),
			 errmsg("could not write key \"%s\" of foreign table \"%s\" to Redis server \"%s\"",
					PgpolyPrintable(RedisWriteKey(w), w->keylen, 200), w->tbl->relname,
					wr->conn->servername),
			 errdetail("Redis answered: %s", wr->answer),
			 wr->cluster ?
			 errhint("Not written: %s.  %d of %d hash-slot transactions ran (Redis applies the other commands of a MULTI/EXEC even when one fails at run time), on: %s.",
					 keys_text(wr->lost_keys), wr->napplied, wr->nblocks,
					 wr->napplied ? nodes_text(wr->written) : "no node") :
			 errhint("Redis applies the other commands of a MULTI/EXEC block even when one fails at run time; check the keys named.")));
}

/* A write with commands, in the order they are sent. */
typedef struct SendItem
{
	RedisWrite *w;
	int			slot;			/* of its key (on a cluster), else -1 */
	int			block;			/* its MULTI/EXEC block (atomic) */
} SendItem;

/*
 * The writes (RedisWrite *) that have commands, in the order they are
 * sent: as written, or for atomic writes on a cluster grouped by hash slot
 * (blocks in the order of their first write, writes in write order within
 * a block; every command of a write is in its key's slot).  Sets *n and
 * *nblocks.
 */
static SendItem *
order_writes(List *writes, bool cluster, bool by_slot, int *n, int *nblocks)
{
	int		   *block_of_slot = NULL;
	int		   *count = NULL;
	SendItem   *items;
	SendItem   *sorted;
	ListCell   *lc;

	*n = 0;
	*nblocks = 1;
	items = palloc_extended(sizeof(SendItem) * Max(list_length(writes), 1),
							MCXT_ALLOC_HUGE);
	if (by_slot)
	{
		block_of_slot = palloc(sizeof(int) * REDIS_NSLOTS);
		memset(block_of_slot, -1, sizeof(int) * REDIS_NSLOTS);
		count = palloc0(sizeof(int) * REDIS_NSLOTS);
		*nblocks = 0;
	}
	foreach(lc, writes)
	{
		RedisWrite *w = lfirst(lc);
		SendItem   *it = &items[*n];

		if (w->ncmds == 0)
			continue;			/* for readers only */
		it->w = w;
		it->slot = cluster ? RedisKeySlot(RedisWriteKey(w), w->keylen) : -1;
		it->block = 0;
		if (by_slot)
		{
			if (block_of_slot[it->slot] < 0)
				block_of_slot[it->slot] = (*nblocks)++;
			it->block = block_of_slot[it->slot];
			count[it->block]++;
		}
		(*n)++;
	}
	if (!by_slot || *nblocks <= 1)
		return items;
	/* A stable counting sort by block. */
	for (int b = 0, start = 0; b < *nblocks; b++)
	{
		int			c = count[b];

		count[b] = start;
		start += c;
	}
	sorted = palloc_extended(sizeof(SendItem) * *n, MCXT_ALLOC_HUGE);
	for (int i = 0; i < *n; i++)
		sorted[count[items[i].block]++] = items[i];
	pfree(items);
	return sorted;
}

/*
 * Send the commands of writes (RedisWrite *) of conn in one pipelined
 * exchange on via; atomic wraps them in MULTI/EXEC, one block per hash
 * slot on a cluster.  Their RESP is sent from where the writes keep it.
 * Any failed command is an ERROR naming its key, raised once every block
 * has answered.  via is conn, or the write stream of one server
 * (redis_stream.c) whose open request already holds MULTI and the first
 * nsent writes with commands, and whose first acked replies were taken.
 */
static void
send_writes(PgpolyConnection *conn, PgpolyConnection *via, List *writes,
			bool atomic, int nsent, RedisWrite *lastsent, int acked)
{
	WriteReplies wr = {via, NULL, NULL, atomic, false, -1};
	const char *multi[1] = {"MULTI"};
	const char *exec[1] = {"EXEC"};
	bool		resumed = via != conn;
	SendItem   *items;
	int			nwrites;
	int			nblocks;
	int			ncmds = 0;
	int			n = 0;
	int			m = -1;

	wr.cluster = RedisIsCluster(conn);
	items = order_writes(writes, wr.cluster, atomic && wr.cluster, &nwrites, &nblocks);
	if (nwrites == 0)
		return;
	if (resumed && (!atomic || wr.cluster || nsent > nwrites ||
					(nsent > 0 && items[nsent - 1].w != lastsent)))
		elog(ERROR, "Redis write stream resumed with %d of %d writes sent, not their prefix",
			 nsent, nwrites);
	wr.base = acked;
	wr.nblocks = acked > 0;		/* MULTI's OK was taken */
	for (int i = 0; i < nwrites; i++)
		ncmds += items[i].w->ncmds;
	if (atomic)
		ncmds += 2 * nblocks + RedisNodesWatching(conn);
	wr.owner = palloc_extended(sizeof(RedisWrite *) * ncmds, MCXT_ALLOC_HUGE);
	wr.multi = atomic ? palloc_extended(sizeof(int) * ncmds, MCXT_ALLOC_HUGE) : NULL;
	for (int i = 0; i < nwrites; i++)
	{
		RedisWrite *w = items[i].w;

		if (atomic && (i == 0 || items[i].block != items[i - 1].block))
		{
			wr.owner[n] = NULL;
			wr.multi[n] = m = n;
			n++;
			if (!resumed)
				RedisAppendArgv(conn, 1, multi, NULL);
		}
		if (i >= nsent)
			RedisAppendEncoded(via, w->data, w->resplen, w->ncmds, items[i].slot);
		for (int c = 0; c < w->ncmds; c++)
		{
			wr.owner[n] = w;
			if (atomic)
				wr.multi[n] = m;
			n++;
		}
		if (atomic && (i + 1 == nwrites || items[i + 1].block != items[i].block))
		{
			wr.owner[n] = NULL;
			wr.multi[n] = m;
			n++;
			RedisAppendArgv(via, 1, exec, NULL);
		}
	}
	for (; n < ncmds; n++)
	{
		wr.owner[n] = NULL;
		wr.multi[n] = -1;
	}
	if (atomic)
	{
		RedisAppendUnwatch(conn);
		RedisCheckWatches(conn);
		RedisCheckMulti(via);	/* every node it goes to is open now */
	}
	RedisExchange(via, ncmds - acked, write_reply, &wr);
	report_failures(&wr);
	if (atomic)
		RedisWatchesSettled(conn);
	pfree(wr.owner);
	if (wr.multi)
		pfree(wr.multi);
	pfree(items);
}

/*
 * Send the commands of writes (RedisWrite *) in one pipelined exchange;
 * see send_writes.
 */
void
RedisSendCommands(PgpolyConnection *conn, List *writes, bool atomic)
{
	send_writes(conn, conn, writes, atomic, 0, NULL, 0);
}

/*
 * PgpolyStore.flush: all the buffered writes in MULTI/EXEC blocks, the
 * rest of them and EXEC on the write stream if it carries the first ones
 * (redis_stream.c).
 */
void
RedisFlushWrites(PgpolyConnection *conn, List *payloads)
{
	int			nsent;
	int			acked;
	RedisWrite *lastsent;
	PgpolyConnection *stream = RedisStreamForCommit(conn, &nsent, &lastsent, &acked);

	if (stream == NULL)
	{
		RedisSendCommands(conn, payloads, true);
		return;
	}
	PG_TRY();
	{
		send_writes(conn, stream, payloads, true, nsent, lastsent, acked);
	}
	PG_CATCH();
	{
		/*
		 * The exchange broke (Redis went away, a reply out of step): the
		 * main connection, idle meanwhile, is closed too, as if the COMMIT
		 * had run there, so the next statement connects anew.
		 */
		if (stream->busy)
			conn->busy = true;
		PG_RE_THROW();
	}
	PG_END_TRY();
	RedisStreamCommitted(conn);
}
