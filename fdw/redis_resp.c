/*-------------------------------------------------------------------------
 *
 * redis_resp.c
 *		  The RESP reader: bytes received from a Redis node -> replies.
 *
 * Each node of a connection has a RedisReader: a buffer the socket is read
 * into directly, and the position of the next reply.  A reply is taken out
 * in two passes.  The first walks its RESP headers as bytes arrive, and is
 * resumed where it stopped when more come (no byte is looked at twice
 * while a large reply trickles in); it checks the syntax and adds up the
 * exact memory the reply's objects will take (a complete array of one bulk
 * string or nil, HMGET's reply for one field, in one step:
 * measure_one_string).  Once the reply is complete,
 * the second pass builds it as hiredis' redisReply objects in one
 * allocation of that size: strings are copied next to their objects,
 * NUL-terminated, and nothing points into the buffer, which is compacted
 * only when it runs out of room.
 *
 * A caller that asks for it (flat) gets an array all of whose elements are
 * bulk strings (HGETALL's, HMGET's without nil ...) in a flatter form, a
 * RESP_REPLY_STRINGS reply: one copy of its bytes with each string
 * NUL-terminated in place, and a (pointer, length) per element, without an
 * object per element.  It is built from the bytes the first pass checked
 * and takes less memory than the objects the first pass counted.
 *
 * Invariants:
 *	- Memory is charged before it is allocated: the first pass refuses a
 *	  reply whose objects would not fit in the room the caller gives, as
 *	  soon as a header announces it (an array of a billion elements is
 *	  refused from its header; each element counts at least one object).
 *	- Nothing here ereports: errors are returned with a message, so the
 *	  caller decides (54000 for the budget, 08P01 for the protocol).
 *	- Any byte may appear in a bulk string (binary safe); a bulk string
 *	  must end with CRLF, lengths and counts are strict decimal, nesting
 *	  is bounded: anything else is a protocol error, never a guess.
 *	- One reply is one chunk of memory, headed by its top-level object:
 *	  pfree() of the reply frees all of it.
 *
 * fdw/redis_resp.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <hiredis/hiredis.h>

#include "utils/memutils.h"

#include "redis.h"

#define RESP_MAX_DEPTH	8		/* arrays in arrays (CLUSTER SLOTS: 3) */
#define RESP_MIN_READ	(16 * 1024) /* room made before a read */
#define RESP_INITIAL	(64 * 1024)
#define RESP_GROW_MAX	(512 * 1024)	/* grown beyond only for one reply */

#define OBJ_SIZE		MAXALIGN(sizeof(redisReply))

struct RedisReader
{
	MemoryContext cxt;			/* the buffer's */
	char	   *buf;
	size_t		cap;
	size_t		len;			/* bytes in buf */
	size_t		pos;			/* start of the next reply */
	/* the first pass over the reply at pos, resumable */
	size_t		at;				/* next header to read */
	size_t		searched;		/* bytes after it known to hold no CRLF */
	int			depth;			/* open arrays */
	int64		left[RESP_MAX_DEPTH];	/* elements each still owes */
	Size		need;			/* bytes of the objects read so far */
	bool		flat;			/* so far an array of bulk strings only */
	char		error[160];
};

/* A new, empty reader whose buffer lives in cxt. */
RedisReader *
RedisReaderCreate(MemoryContext cxt)
{
	RedisReader *r = MemoryContextAllocZero(cxt, sizeof(RedisReader));

	r->cxt = cxt;
	return r;
}

/* Free r and its buffer. */
void
RedisReaderFree(RedisReader *r)
{
	if (r->buf)
		pfree(r->buf);
	pfree(r);
}

/* Bytes received and not yet taken out as replies. */
size_t
RedisReaderPending(RedisReader *r)
{
	return r->len - r->pos;
}

/*
 * Where the next read may put up to *room bytes (at least RESP_MIN_READ):
 * the parsed bytes are dropped first, and the buffer grows while it keeps
 * filling up, or to hold the reply being read.  The caller then reports
 * what it read with RedisReaderAdvance.
 */
char *
RedisReaderSpace(RedisReader *r, size_t *room)
{
	if (r->pos > 0 && (r->pos == r->len || r->cap - r->len < RESP_MIN_READ))
	{
		if (r->len > r->pos)
			memmove(r->buf, r->buf + r->pos, r->len - r->pos);
		r->len -= r->pos;
		r->at -= r->pos;
		r->pos = 0;
	}
	if (r->buf == NULL)
	{
		r->cap = RESP_INITIAL;
		r->buf = MemoryContextAllocExtended(r->cxt, r->cap, MCXT_ALLOC_HUGE);
	}
	else if (r->cap - r->len < RESP_MIN_READ ||
			 (r->len > r->cap / 2 && r->cap < RESP_GROW_MAX))
	{
		r->cap *= 2;
		r->buf = repalloc_huge(r->buf, r->cap);
	}
	*room = r->cap - r->len;
	return r->buf + r->len;
}

/* n bytes were read to where RedisReaderSpace pointed. */
void
RedisReaderAdvance(RedisReader *r, size_t n)
{
	Assert(n <= r->cap - r->len);
	r->len += n;
}

/*
 * Forget everything received (the connection is being closed or was reset),
 * and give a buffer grown for one large reply back.
 */
void
RedisReaderReset(RedisReader *r)
{
	r->len = r->pos = r->at = r->searched = 0;
	r->depth = 0;
	r->need = 0;
	r->flat = true;
	if (r->buf && r->cap > RESP_GROW_MAX)
	{
		pfree(r->buf);
		r->buf = NULL;
		r->cap = 0;
	}
}

/*
 * Shrink a buffer grown for one large reply once nothing is pending (at
 * the end of a request).
 */
void
RedisReaderTrim(RedisReader *r)
{
	if (r->pos == r->len && r->cap > RESP_GROW_MAX)
		RedisReaderReset(r);
}

/* ----------------------------------------------------------------
 *		First pass: syntax and size
 * ----------------------------------------------------------------
 */

/*
 * The CRLF ending the line that starts at p (avail bytes), or NULL if it
 * has not arrived.
 */
static inline const char *
line_end(const char *p, size_t avail)
{
	const char *end = p + avail;

	while (p < end)
	{
		const char *cr = memchr(p, '\r', end - p);

		if (cr == NULL || cr + 1 >= end)
			return NULL;
		if (cr[1] == '\n')
			return cr;
		p = cr + 1;
	}
	return NULL;
}

/*
 * The header line at p (avail bytes received) of an integer, a bulk string
 * or an array: a type byte, then strict decimal (an optional '-', 1 to 19
 * digits, no overflow), then CRLF.  1 with *value and *hdr (its length)
 * set, 0 if it has not fully arrived, -1 if it is not such a line.
 */
static inline int
int_line(const char *p, size_t avail, int64 *value, size_t *hdr)
{
	size_t		i = 1;
	bool		neg = false;
	uint64		v = 0;
	int			digits = 0;

	if (avail > 1 && p[1] == '-')
	{
		neg = true;
		i = 2;
	}
	for (; i < avail; i++)
	{
		char		c = p[i];

		if (c >= '0' && c <= '9')
		{
			if (++digits > 19)
				return -1;
			v = v * 10 + (c - '0');
			continue;
		}
		if (c != '\r' || digits == 0)
			return -1;
		if (i + 1 >= avail)
			return 0;
		if (p[i + 1] != '\n' || v > (uint64) PG_INT64_MAX + (neg ? 1 : 0))
			return -1;
		*value = neg ? (int64) (0 - v) : (int64) v;
		*hdr = i + 2;
		return 1;
	}
	return 0;
}

/* A protocol error: r->error says what. */
static int
syntax_error(RedisReader *r, const char *what)
{
	snprintf(r->error, sizeof(r->error), "Protocol error: %s", what);
	return RESP_ERROR;
}

/*
 * The element at r->at is complete (consumed bytes long): count it in the
 * arrays that hold it.  true when the whole reply is complete.
 */
static bool
element_done(RedisReader *r, size_t consumed)
{
	r->at += consumed;
	r->searched = 0;
	while (r->depth > 0)
	{
		if (--r->left[r->depth - 1] > 0)
			return false;
		r->depth--;
	}
	return true;
}

/*
 * Walk the headers of the reply at r->pos from where the last call stopped.
 * RESP_DONE when it is complete (its objects need r->need bytes),
 * RESP_MORE when more bytes are needed, RESP_BUDGET when its objects would
 * take more than room bytes, RESP_ERROR when the bytes are not RESP.
 */
static int
measure(RedisReader *r, Size room)
{
	for (;;)
	{
		const char *p = r->buf + r->at;
		size_t		avail = r->len - r->at;
		const char *eol;
		size_t		hdr = 0;
		int64		n = 0;
		int			rc;

		if (avail == 0)
			return RESP_MORE;
		switch (p[0])
		{
			case '+':
			case '-':
				/* a long status line trickling in is searched once */
				if (avail < 3 ||
					(eol = line_end(p + 1 + r->searched, avail - 1 - r->searched)) == NULL)
				{
					if (avail > 2)
						r->searched = avail - 2;	/* a CR may end it */
					return RESP_MORE;
				}
				hdr = eol + 2 - p;
				r->flat = false;
				if (r->need + OBJ_SIZE + MAXALIGN(hdr - 2) > room)
					return RESP_BUDGET;
				r->need += OBJ_SIZE + MAXALIGN(hdr - 2);
				if (element_done(r, hdr))
					return RESP_DONE;
				continue;
			case ':':
			case '$':
			case '*':
				if ((rc = int_line(p, avail, &n, &hdr)) == 0)
					return RESP_MORE;
				if (rc < 0 || (p[0] != ':' && n < -1))
					return syntax_error(r, p[0] == ':' ? "bad integer value" :
										p[0] == '$' ? "bad bulk string length" :
										"bad array length");
				break;
			default:
				if (p[0] > 0x20 && p[0] < 0x7f && p[0] != '\\')
					snprintf(r->error, sizeof(r->error),
							 "Protocol error, got \"%c\" as reply type byte", p[0]);
				else
					snprintf(r->error, sizeof(r->error),
							 "Protocol error, got \"\\x%02x\" as reply type byte",
							 (unsigned char) p[0]);
				return RESP_ERROR;
		}
		/* flat: the top is a non-empty array, its elements bulk strings */
		if (p[0] == '*' && n > 0 ? r->depth != 0 :
			p[0] != '$' || n < 0 || r->depth != 1)
			r->flat = false;
		if (p[0] == '$' && n >= 0)
		{
			if ((uint64) n > (uint64) room ||
				r->need + OBJ_SIZE + MAXALIGN(n + 1) > room)
				return RESP_BUDGET;
			if (avail < hdr + n + 2)
				return RESP_MORE;	/* counted when complete */
			if (p[hdr + n] != '\r' || p[hdr + n + 1] != '\n')
				return syntax_error(r, "bulk string not terminated by CRLF");
			r->need += OBJ_SIZE + MAXALIGN(n + 1);
			hdr += n + 2;
		}
		else if (p[0] == '*' && n > 0)
		{
			/* every element takes at least an object and its pointer */
			if ((uint64) n > (uint64) room / (OBJ_SIZE + sizeof(redisReply *)) ||
				r->need + OBJ_SIZE + (Size) n * (OBJ_SIZE + sizeof(redisReply *)) > room)
				return RESP_BUDGET;
			if (r->depth == RESP_MAX_DEPTH)
				return syntax_error(r, "arrays nested too deeply");
			r->need += OBJ_SIZE + MAXALIGN((Size) n * sizeof(redisReply *));
			r->left[r->depth++] = n;
			r->at += hdr;
			r->searched = 0;
			continue;
		}
		else
		{
			/* an integer, a nil, an empty array */
			if (r->need + OBJ_SIZE > room)
				return RESP_BUDGET;
			r->need += OBJ_SIZE;
		}
		if (element_done(r, hdr))
			return RESP_DONE;
	}
}

/*
 * measure's shortcut for the reply at r->pos when it is an array of one
 * bulk string or nil, "*1\r\n$<n>\r\n<n bytes>\r\n" or "*1\r\n$-1\r\n"
 * (HMGET of one field: the batched join's read of each key's event time),
 * has fully arrived and its objects fit in room: sets what measure would
 * (r->need, r->at, r->flat) and returns true.  Anything else (another
 * shape, a count of 19 digits, a part still to come, over the budget,
 * bytes measure would refuse) returns false with r untouched: measure then
 * walks it as any reply.
 */
static inline bool
measure_one_string(RedisReader *r, Size room)
{
	const char *p = r->buf + r->pos;
	size_t		avail = r->len - r->pos;
	size_t		i = 5;
	uint64		n = 0;
	Size		need = OBJ_SIZE + MAXALIGN(sizeof(redisReply *));

	if (avail < 9 || memcmp(p, "*1\r\n$", 5) != 0 ||
		room / (OBJ_SIZE + sizeof(redisReply *)) < 1 ||
		OBJ_SIZE + OBJ_SIZE + sizeof(redisReply *) > room)
		return false;
	if (memcmp(p + 5, "-1\r\n", 4) == 0)
	{
		/* a nil: an object, and not flat */
		if (need + OBJ_SIZE > room)
			return false;
		r->need = need + OBJ_SIZE;
		r->flat = false;
		r->at = r->pos + 9;
		r->searched = 0;
		return true;
	}
	for (; i < avail && i < 5 + 18 && p[i] >= '0' && p[i] <= '9'; i++)
		n = n * 10 + (p[i] - '0');
	if (i == 5 || avail - i < 2 || p[i] != '\r' || p[i + 1] != '\n')
		return false;
	i += 2;
	if (avail - i < 2 || n > avail - i - 2 || p[i + n] != '\r' || p[i + n + 1] != '\n' ||
		n > (uint64) room || need + OBJ_SIZE + MAXALIGN(n + 1) > room)
		return false;
	r->need = need + OBJ_SIZE + MAXALIGN(n + 1);
	r->at = r->pos + i + n + 2;
	r->searched = 0;
	return true;
}

/* ----------------------------------------------------------------
 *		Second pass: the objects
 * ----------------------------------------------------------------
 */

/* Bump allocation of size bytes (MAXALIGNed) in the reply's chunk. */
static inline void *
take(char **mem, Size size)
{
	void	   *p = *mem;

	*mem += MAXALIGN(size);
	return p;
}

/*
 * The number of a header line at p that measure checked (strict decimal
 * after the type byte, then CRLF), and *in past the line.  No checks: they
 * were made.
 */
static inline int64
checked_number(const char *p, const char **in)
{
	bool		neg = p[1] == '-';
	uint64		v = 0;

	for (p += 1 + neg; *p != '\r'; p++)
		v = v * 10 + (*p - '0');
	*in = p + 2;
	return neg ? (int64) (0 - v) : (int64) v;
}

/*
 * Build the bulk string (non-nil, header checked by measure) at *in into r,
 * advancing *in past it; its bytes come from *mem.
 */
static inline void
build_string(redisReply *r, const char **in, char **mem)
{
	size_t		len = (size_t) checked_number(*in, in);

	r->type = REDIS_REPLY_STRING;
	r->integer = 0;
	r->len = len;
	r->str = take(mem, len + 1);
	r->elements = 0;
	r->element = NULL;
	memcpy(r->str, *in, len);
	r->str[len] = '\0';
	*in += len + 2;
}

/*
 * Build the element whose header is at *in (checked by measure), advancing
 * *in past it; objects and strings come from *mem.  A bulk string element
 * of an array, the common case (HGETALL, HMGET ...), is built in the
 * array's loop.
 */
static redisReply *
build(const char **in, const char *end, char **mem)
{
	const char *p = *in;
	redisReply *r = take(mem, sizeof(redisReply));
	size_t		hdr = 0;
	int64		n = 0;

	if (p[0] == '$' && p[1] != '-')
	{
		build_string(r, in, mem);
		return r;
	}
	r->integer = 0;
	r->len = 0;
	r->str = NULL;
	r->elements = 0;
	r->element = NULL;
	if (p[0] == '+' || p[0] == '-')
	{
		hdr = line_end(p + 1, end - p - 1) + 2 - p; /* measure found it */
		r->type = p[0] == '+' ? REDIS_REPLY_STATUS : REDIS_REPLY_ERROR;
		r->len = hdr - 3;
		r->str = take(mem, r->len + 1);
		memcpy(r->str, p + 1, r->len);
		r->str[r->len] = '\0';
		*in = p + hdr;
		return r;
	}
	(void) int_line(p, end - p, &n, &hdr);	/* measure checked it */
	*in = p + hdr;
	if (p[0] == ':')
	{
		r->type = REDIS_REPLY_INTEGER;
		r->integer = n;
	}
	else if (n < 0)
		r->type = REDIS_REPLY_NIL;
	else if (p[0] == '$')
	{
		/* "$-0": a bulk string of length 0, as measure counted it */
		*in = p;
		build_string(r, in, mem);
	}
	else
	{
		Assert(p[0] == '*');
		r->type = REDIS_REPLY_ARRAY;
		r->elements = (size_t) n;
		if (n > 0)
			r->element = take(mem, sizeof(redisReply *) * (Size) n);
		for (int64 i = 0; i < n; i++)
		{
			if ((*in)[0] == '$' && (*in)[1] != '-')
			{
				r->element[i] = take(mem, sizeof(redisReply));
				build_string(r->element[i], in, mem);
			}
			else
				r->element[i] = build(in, end, mem);
		}
	}
	return r;
}

/*
 * The size of the complete reply at r->pos built flat (build_flat), which
 * measure found to be a non-empty array of bulk strings: its header
 * object, the elements' RedisString array, a copy of its bytes.
 */
static Size
flat_size(RedisReader *r)
{
	const char *in;
	int64		n = checked_number(r->buf + r->pos, &in);

	return OBJ_SIZE + MAXALIGN(sizeof(RedisString) * (Size) n) + (r->at - r->pos);
}

/*
 * The complete reply at r->pos, which measure found to be a non-empty
 * array of bulk strings, as a RESP_REPLY_STRINGS reply in one chunk of
 * size bytes (flat_size) in cxt, NULL if out of memory: its header object,
 * the elements' RedisString array, then a copy of the reply's bytes in
 * which the CR after each string becomes its NUL.
 */
static redisReply *
build_flat(RedisReader *r, Size size, MemoryContext cxt)
{
	const char *in = r->buf + r->pos;
	size_t		bytes = r->at - r->pos;
	int64		n = checked_number(in, &in);
	Size		head = size - bytes;
	char	   *mem;
	redisReply *reply;
	RedisString *strings;
	char	   *copy;

	mem = MemoryContextAllocExtended(cxt, size,
									 MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
	if (mem == NULL)
		return NULL;
	reply = (redisReply *) mem;
	strings = (RedisString *) (mem + OBJ_SIZE);
	copy = mem + head;
	memcpy(copy, r->buf + r->pos, bytes);
	memset(reply, 0, sizeof(redisReply));
	reply->type = RESP_REPLY_STRINGS;
	reply->elements = (size_t) n;
	/* in walks the buffer, the strings point at the same bytes of copy */
	for (int64 i = 0; i < n; i++)
	{
		size_t		len = (size_t) checked_number(in, &in);
		char	   *s = copy + (in - (r->buf + r->pos));

		strings[i].str = s;
		strings[i].len = len;
		s[len] = '\0';			/* was the CR of its CRLF */
		in += len + 2;
	}
	Assert(in == r->buf + r->at);
	return reply;
}

/* The elements of a RESP_REPLY_STRINGS reply (RedisReaderNext's flat). */
RedisString *
RedisReplyStrings(redisReply *reply)
{
	Assert(reply->type == RESP_REPLY_STRINGS);
	return (RedisString *) ((char *) reply + OBJ_SIZE);
}

/*
 * Take the next complete reply out of r into *reply, allocated in cxt as
 * one chunk, if its objects fit in room bytes; flat: an array of bulk
 * strings only comes as a RESP_REPLY_STRINGS reply (build_flat), any other
 * reply as objects.  Returns RESP_DONE (*reply set), RESP_MORE (nothing
 * yet: read more), RESP_BUDGET (it would not fit; nothing allocated),
 * RESP_ERROR (not RESP: RedisReaderError says why), or RESP_OOM (the
 * allocation failed).  Never ereports.
 */
int
RedisReaderNext(RedisReader *r, Size room, MemoryContext cxt, bool flat,
				redisReply **reply)
{
	int			rc;
	char	   *mem;
	const char *in;
	Size		size;

	*reply = NULL;
	if (r->pos == r->len)
		return RESP_MORE;
	if (r->at == r->pos && r->depth == 0)
	{
		r->need = 0;			/* a new reply */
		r->flat = true;
		rc = measure_one_string(r, room) ? RESP_DONE : measure(r, room);
	}
	else
		rc = measure(r, room);
	if (rc != RESP_DONE)
		return rc;
	/*
	 * Flat when asked and it takes no more than the objects measure
	 * charged (per element at most 25 header and trailer bytes and a
	 * 16-byte RedisString against an object, a pointer and a NUL: only
	 * "*1" with padded counts could take more).
	 */
	if (flat && r->flat && (size = flat_size(r)) <= r->need)
		*reply = build_flat(r, size, cxt);
	else
	{
		mem = MemoryContextAllocExtended(cxt, r->need,
										 MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
		if (mem != NULL)
		{
			in = r->buf + r->pos;
			*reply = build(&in, r->buf + r->at, &mem);
			Assert(in == r->buf + r->at);
		}
	}
	if (*reply == NULL)
		return RESP_OOM;
	r->pos = r->at;
	r->need = 0;
	return RESP_DONE;
}

/*
 * If the next reply is exactly the len bytes at bytes (a status line such
 * as "+QUEUED\r\n", complete), take it out without building it: true.
 */
bool
RedisReaderSkip(RedisReader *r, const char *bytes, size_t len)
{
	if (r->at != r->pos || r->depth != 0 || r->len - r->pos < len ||
		memcmp(r->buf + r->pos, bytes, len) != 0)
		return false;
	r->pos += len;
	r->at = r->pos;
	r->searched = 0;
	return true;
}

/* Why the last RedisReaderNext returned RESP_ERROR. */
const char *
RedisReaderError(RedisReader *r)
{
	return r->error;
}
