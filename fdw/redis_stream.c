/*-------------------------------------------------------------------------
 *
 * redis_stream.c
 *		  The write stream: a transaction's buffered Redis writes queued in
 *		  a MULTI while its statements run.
 *
 * With write_mode 'transactional' a write is encoded once, when its row is
 * written (redis_modify.c), and sent at COMMIT.  Sending 100k rows then,
 * and only then, puts Redis' work (parsing, queueing, running them) after
 * the backend's, never beside it.  Redis applies nothing of a MULTI before
 * its EXEC, so the writes can go out earlier: once a connection's writes
 * not yet sent pass pgpoly.redis_stream_threshold, a second connection to
 * the same server (the stream; opened like any other, with the same AUTH,
 * SELECT, unix_socket and timeouts, and kept with the first across
 * transactions) sends MULTI, then every write's RESP as it is buffered, in
 * buffer order, in pushes of a few tens of kB, without waiting: what the
 * socket does not take now goes with the next push, and the +QUEUED
 * replies that arrived are checked and dropped (RedisPump).  At COMMIT,
 * RedisFlushWrites() sends the rest and EXEC on the stream and reads the
 * replies exactly as on the main connection (RedisStreamForCommit).  EXEC
 * stays the last step of the pre-commit: a COMMIT that fails before writes
 * nothing.
 *
 * Invariants:
 *	- What was streamed is a prefix of what COMMIT sends, or the stream is
 *	  not used: ROLLBACK TO SAVEPOINT may drop buffered writes, and the
 *	  write list only ever loses elements (never reorders them, new ones
 *	  are appended), so its element nlisted-1 still being the last one the
 *	  stream looked at proves no streamed write was dropped.
 *	- Whenever the stream cannot be used as is, it is closed (Redis drops
 *	  a MULTI on disconnect) and COMMIT sends everything on the main
 *	  connection as before: a savepoint rollback dropped a streamed write;
 *	  the main connection holds WATCHes (the EXEC must run where they
 *	  are); the server or user mapping changed since the main connection
 *	  opened (the stream would take the new options, the main connection
 *	  and its writes keep the old ones); the server is a Redis Cluster (one MULTI per hash slot) or
 *	  behind Sentinel (the primary may move); the stream failed (could not
 *	  connect, a socket error, a reply that is not +QUEUED).  A failure of
 *	  the stream never fails a statement: COMMIT then meets, and reports,
 *	  whatever is wrong, as it did before streams existed.
 *	- A transaction that ends without the stream's EXEC (ROLLBACK, an
 *	  ERROR, a COMMIT that fell back) closes it; nothing is applied.  No
 *	  I/O then: this runs in an abort.
 *	- Memory stays bounded: the stream references the writes' RESP where
 *	  the arena keeps it until the transaction ends, and drains replies as
 *	  it goes.
 *
 * fdw/redis_stream.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>
#include <hiredis/hiredis.h>

#include "utils/guc.h"

#include "redis.h"

/* Unsent bytes of buffered writes that open the stream (0 or -1: never). */
static int	stream_threshold = 512 * 1024;

/* Once open, the stream sends what was buffered every this many bytes. */
#define STREAM_PUSH_BYTES	(64 * 1024)

/* Define pgpoly.redis_stream_threshold (from _PG_init). */
void
RedisStreamInit(void)
{
	DefineCustomIntVariable("pgpoly.redis_stream_threshold",
							"Buffered Redis writes that start sending them ahead of COMMIT.",
							"Once a transaction's writes to a Redis server not sent yet take this much, "
							"a second connection queues them in a MULTI as they come; COMMIT sends EXEC. "
							"0 or -1: send everything at COMMIT.",
							&stream_threshold,
							512 * 1024, -1, INT_MAX,
							PGC_USERSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
}

/* Forget what the stream sent in this transaction (not the connection). */
static void
forget_sent(RedisWriteStream *s)
{
	s->open = s->pushing = false;
	s->unsent = 0;
	s->nlisted = s->nsent = s->acked = 0;
	s->last = NULL;
	s->lastsent = NULL;
}

/*
 * Close the stream (if open) and forget what it sent; never ereports.
 * Redis drops the MULTI of a closed connection.
 */
static void
drop_stream(RedisWriteStream *s)
{
	if (s->conn)
		PgpolyCloseSibling(s->conn);
	s->conn = NULL;
	forget_sent(s);
}

/* PgpolyStore.disconnect, for the stream of h: close it. */
void
RedisStreamClose(RedisHandle *h)
{
	drop_stream(&h->stream);
}

/*
 * Whether the writes the stream looked at (the first nlisted of
 * conn->writes) are all still there, in place.
 */
static bool
prefix_intact(PgpolyConnection *conn, RedisWriteStream *s)
{
	return s->nlisted == 0 ||
		(list_length(conn->writes) >= s->nlisted &&
		 list_nth(conn->writes, s->nlisted - 1) == s->last);
}

/*
 * Whether the stream may carry conn's writes: one server (no cluster, no
 * Sentinel), no WATCHes on the main connection, nothing streamed dropped
 * and no push cut off by an ERROR.
 */
static bool
stream_usable(PgpolyConnection *conn, RedisHandle *h, RedisWriteStream *s)
{
	return !s->off && !s->pushing && h->kind == RTOPO_SINGLE &&
		!conn->watching && prefix_intact(conn, s);
}

/*
 * Open the stream (or take the one kept from an earlier transaction) and
 * start its request with MULTI.  A connection failure (class 08: Redis
 * unreachable, a hostile answer), or conn's server or user mapping changed
 * since conn was opened (no sibling: it would go elsewhere), closes it and
 * returns false: the statement goes on, COMMIT sends on the main
 * connection.  Any other ERROR (a cancel, out of memory) is raised.
 */
static bool
try_begin(PgpolyConnection *conn, RedisWriteStream *s)
{
	MemoryContext cxt = CurrentMemoryContext;
	const char *multi[1] = {"MULTI"};

	if (s->conn && s->conn->busy)
		drop_stream(s);			/* an ERROR cut its last request */
	PG_TRY();
	{
		if (s->conn == NULL)
			s->conn = PgpolyOpenSibling(conn);
		if (s->conn != NULL)
			RedisAppendArgv(s->conn, 1, multi, NULL);
	}
	PG_CATCH();
	{
		ErrorData  *e;

		MemoryContextSwitchTo(cxt);
		e = CopyErrorData();
		if (ERRCODE_TO_CATEGORY(e->sqlerrcode) != ERRCODE_CONNECTION_EXCEPTION)
			PG_RE_THROW();
		FlushErrorState();
		FreeErrorData(e);
		drop_stream(s);
		return false;
	}
	PG_END_TRY();
	if (s->conn == NULL)
		return false;
	if (RedisMultiRefused(s->conn))
	{
		/* its MULTI would be refused and the writes run at once */
		drop_stream(s);
		return false;
	}
	s->open = true;
	return true;
}

/*
 * try_begin, once more on a new connection if the kept one failed (Redis
 * closes idle clients after its timeout setting).
 */
static bool
begin_stream(PgpolyConnection *conn, RedisWriteStream *s)
{
	bool		kept = s->conn != NULL;

	return try_begin(conn, s) || (kept && try_begin(conn, s));
}

/*
 * RedisAckCheck of the stream: MULTI's OK first, then each command's
 * QUEUED (RedisPump takes most of those without building them, but one
 * that reached the reader in two pieces is built and comes here);
 * anything else is refused.
 */
static bool
stream_ack(redisReply *r, int index, void *arg)
{
	const char *want = index == 0 ? "OK" : "QUEUED";

	return r->type == REDIS_REPLY_STATUS && r->len == strlen(want) &&
		memcmp(r->str, want, r->len) == 0;
}

/*
 * Send the writes buffered on conn since the last push down the stream
 * (opening it first), and take the replies that came.  A failure drops the
 * stream for the rest of the transaction.
 */
static void
push(PgpolyConnection *conn, RedisHandle *h, RedisWriteStream *s)
{
	int			n = list_length(conn->writes);
	char	   *failure;

	s->unsent = 0;
	if (!stream_usable(conn, h, s))
	{
		if (s->open)
			drop_stream(s);		/* a kept idle one stays */
		s->off = true;
		return;
	}
	if (!s->open && !begin_stream(conn, s))
	{
		s->off = true;
		return;
	}
	s->pushing = true;
	for (int i = s->nlisted; i < n; i++)
	{
		PgpolyWrite *pw = list_nth(conn->writes, i);
		RedisWrite *w = pw->payload;

		if (!pw->outbox && w->ncmds > 0)
		{
			RedisAppendEncoded(s->conn, w->data, w->resplen, w->ncmds, -1);
			s->nsent++;
			s->lastsent = w;
		}
		s->last = pw;
	}
	s->nlisted = n;
	failure = RedisPump(s->conn, "+QUEUED\r\n", stream_ack, NULL, &s->acked);
	s->pushing = false;
	if (failure)
	{
		elog(DEBUG1, "pgpoly: write stream to Redis server \"%s\" dropped: %s",
			 conn->servername, failure);
		drop_stream(s);
		s->off = true;
	}
}

/*
 * PgpolyStore.buffered: the transactional write payload was appended to
 * conn->writes.  Past the threshold of unsent bytes, push.
 */
void
RedisStreamBuffered(PgpolyConnection *conn, void *payload)
{
	RedisHandle *h = conn->handle;
	RedisWriteStream *s;

	if (h == NULL || stream_threshold <= 0)
		return;
	s = &h->stream;
	s->unsent += ((RedisWrite *) payload)->resplen;
	if (s->off ||
		s->unsent < (s->open ? Min(stream_threshold, STREAM_PUSH_BYTES) : stream_threshold))
		return;
	push(conn, h, s);
}

/*
 * At COMMIT (RedisFlushWrites): the stream that carries conn's writes, its
 * request open (MULTI and the first *nsent writes with commands of
 * conn->writes sent, *lastsent the last of them, *acked replies taken),
 * for the rest and EXEC; or NULL
 * when COMMIT sends everything on conn (no stream, or one it may not use,
 * closed now).
 */
PgpolyConnection *
RedisStreamForCommit(PgpolyConnection *conn, int *nsent, RedisWrite **lastsent,
					 int *acked)
{
	RedisHandle *h = conn->handle;
	RedisWriteStream *s = &h->stream;
	const char *failure;

	if (!s->open)
		return NULL;
	if (!stream_usable(conn, h, s) || !s->conn->busy)
	{
		drop_stream(s);
		return NULL;
	}

	/*
	 * Take the replies that came, and see that the stream is still there:
	 * Redis closes a client idle past its timeout setting even in a MULTI
	 * (a transaction that paused between statements), and a closed
	 * connection's MULTI is dropped, nothing of it applied: COMMIT then
	 * sends everything on the main connection.  (Closed after this check,
	 * it is the COMMIT's connection ERROR, as on the main connection.)
	 */
	failure = RedisPump(s->conn, "+QUEUED\r\n", stream_ack, NULL, &s->acked);
	if (failure == NULL && RedisPeerClosed(s->conn))
		failure = "the server closed the connection";
	if (failure)
	{
		elog(DEBUG1, "pgpoly: write stream to Redis server \"%s\" dropped at COMMIT: %s",
			 conn->servername, failure);
		drop_stream(s);
		return NULL;
	}
	*nsent = s->nsent;
	*lastsent = s->lastsent;
	*acked = s->acked;
	return s->conn;
}

/*
 * The stream's EXEC was answered and checked: its request ended, and the
 * connection is kept for the next transaction.
 */
void
RedisStreamCommitted(PgpolyConnection *conn)
{
	forget_sent(&((RedisHandle *) conn->handle)->stream);
}

/*
 * PgpolyStore.xact_end: a stream still open was not EXECed (ROLLBACK, an
 * ERROR, a COMMIT that sent nothing or fell back): close it, so that Redis
 * drops its MULTI.  A kept stream is kept.  Never ereports.
 */
void
RedisStreamXactEnd(PgpolyConnection *conn, bool commit)
{
	RedisWriteStream *s = &((RedisHandle *) conn->handle)->stream;

	if (s->open || s->pushing || (s->conn && s->conn->busy))
		drop_stream(s);
	forget_sent(s);
	s->off = false;
}
