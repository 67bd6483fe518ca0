/*-------------------------------------------------------------------------
 *
 * redis_io.c
 *		  hiredis, non-blocking, driven by the core's interruptible wait.
 *
 * hiredis 0.14 has no connect-with-options and no async API we could wait
 * on from a backend, so the context is created with redisConnectNonBlock()
 * and every exchange is: append commands (RESP we encode ourselves), then
 * alternate redisBufferWrite / a non-blocking recv() fed to the hiredis
 * reader whenever PgpolyWaitSocket() says the socket is ready, pulling
 * parsed replies with redisReaderGetReply().  Nothing blocks inside hiredis,
 * so a cancel or statement_timeout is serviced between the calls.
 *
 * Invariants:
 *	- Appending a command starts a request on the connection cache entry;
 *	  only a complete exchange ends it.  An ERROR in between (a bad value
 *	  while building commands, a timeout, an error reply the caller raises)
 *	  therefore leaves the connection "busy" and it is discarded.
 *	- Replies are built by our own hiredis reply-object functions in the
 *	  memory context that is current when the exchange runs (allocation
 *	  never ereports inside hiredis: MCXT_ALLOC_NO_OOM).  A handler may keep
 *	  a reply (it then lives as long as that context); others are freed at
 *	  once.  hiredis' malloc-based freeReplyObject() is never used.
 *	- pgpoly.max_response_size bounds what one exchange (all its replies)
 *	  makes the backend hold: live reply objects at their real size plus
 *	  the reader's unparsed bytes, charged before each allocation or read
 *	  (an announced array count is charged before its element array
 *	  exists).  The reply functions refuse past it; the ERROR (54000) is
 *	  raised after hiredis returns.
 *	- Replies and commands stay in step: bytes received while no request is
 *	  pending, more replies than commands, or a reply of a type the command
 *	  never returns break the connection with an ERROR (08P01), so no
 *	  statement ever takes another command's reply for its own.
 *	- Bytes from Redis (keys, error texts) reach messages only through
 *	  PgpolyPrintable(, 200): escaped and capped.
 *
 * fdw/redis_io.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>
#include <hiredis/hiredis.h>

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "redis.h"

static void *redis_connect(PgpolyConnection *conn, ForeignServer *server,
						   UserMapping *user);
static void redis_disconnect(void *handle);

/*
 * What the running exchange may allocate (pgpoly.max_response_size): reply
 * objects alive now, counted at their real size in the memory context, plus
 * the bytes the hiredis reader holds that are not parsed yet.  The reply
 * functions below run inside hiredis and must not ereport: past the budget
 * they refuse (return NULL, which hiredis reports as out of memory) and set
 * exceeded; the exchange raises the ERROR once hiredis has returned.
 */
typedef struct ReplyBudget
{
	MemoryContext cxt;			/* replies are built here */
	redisReader *reader;		/* its unparsed bytes count too */
	Size		used;			/* bytes of live reply objects */
	Size		limit;
	bool		exceeded;		/* an allocation was refused */
} ReplyBudget;

static ReplyBudget Budget;

/* Start counting a new exchange's replies, built in cxt. */
static void
budget_begin(MemoryContext cxt, redisReader *reader)
{
	Budget.cxt = cxt;
	Budget.reader = reader;
	Budget.used = 0;
	Budget.limit = PGPOLY_MAX_RESPONSE_BYTES;
	Budget.exceeded = false;
}

/* Bytes the budget still has room for (0 when it is spent). */
static Size
budget_room(void)
{
	Size		held = Budget.used;

	if (Budget.reader)
		held += Budget.reader->len - Budget.reader->pos;
	return held >= Budget.limit ? 0 : Budget.limit - held;
}

/*
 * Zeroed allocation for the reply functions, charged to the budget before
 * it is made; NULL (never an ERROR) when the budget or memory is short.
 */
static void *
reply_alloc(size_t size)
{
	void	   *p;

	if (size > budget_room())
	{
		Budget.exceeded = true;
		return NULL;
	}
	p = MemoryContextAllocExtended(Budget.cxt, size,
								   MCXT_ALLOC_NO_OOM | MCXT_ALLOC_ZERO);
	if (p != NULL)
		Budget.used += GetMemoryChunkSpace(p);
	return p;
}

/* Free what reply_alloc returned and give its space back to the budget. */
static void
reply_release(void *p)
{
	Size		space = GetMemoryChunkSpace(p);

	Budget.used -= Min(Budget.used, space);
	pfree(p);
}

/* Free a reply built by the functions below (recursively). */
static void
reply_free(void *obj)
{
	redisReply *r = obj;

	if (r == NULL)
		return;
	if (r->element)
	{
		for (size_t i = 0; i < r->elements; i++)
			reply_free(r->element[i]);
		reply_release(r->element);
	}
	reply_release(r);			/* a string lives in the same chunk */
}

/* Link a new reply into its parent array, as hiredis' own functions do. */
static void *
link_reply(const redisReadTask *task, redisReply *r)
{
	if (task->parent)
		((redisReply *) task->parent->obj)->element[task->idx] = r;
	return r;
}

/*
 * hiredis reply function: bulk/status/error string, NUL-terminated, in one
 * chunk with its reply (half the allocations of a round).
 */
static void *
reply_string(const redisReadTask *task, char *str, size_t len)
{
	redisReply *r;

	if (len > MaxAllocSize - sizeof(redisReply) - 1 ||
		(r = reply_alloc(sizeof(redisReply) + len + 1)) == NULL)
		return NULL;
	r->type = task->type;
	r->str = (char *) (r + 1);
	memcpy(r->str, str, len);
	r->len = len;
	return link_reply(task, r);
}

/*
 * hiredis reply function: array of n elements.  The element array is
 * charged before it is allocated, so an announced count larger than the
 * budget is refused at once.
 */
static void *
reply_array(const redisReadTask *task, int n)
{
	Size		need = sizeof(redisReply) + (Size) Max(n, 0) * sizeof(redisReply *);
	redisReply *r;

	if (need > budget_room())
	{
		Budget.exceeded = true;
		return NULL;
	}
	if ((r = reply_alloc(sizeof(redisReply))) == NULL)
		return NULL;
	if (n > 0 && (r->element = reply_alloc(sizeof(redisReply *) * (Size) n)) == NULL)
	{
		reply_release(r);
		return NULL;
	}
	r->type = REDIS_REPLY_ARRAY;
	r->elements = n;
	return link_reply(task, r);
}

/* hiredis reply function: integer. */
static void *
reply_integer(const redisReadTask *task, long long value)
{
	redisReply *r = reply_alloc(sizeof(redisReply));

	if (r == NULL)
		return NULL;
	r->type = REDIS_REPLY_INTEGER;
	r->integer = value;
	return link_reply(task, r);
}

/* hiredis reply function: nil. */
static void *
reply_nil(const redisReadTask *task)
{
	redisReply *r = reply_alloc(sizeof(redisReply));

	if (r == NULL)
		return NULL;
	r->type = REDIS_REPLY_NIL;
	return link_reply(task, r);
}

static redisReplyObjectFunctions ReplyFunctions = {
	reply_string, reply_array, reply_integer, reply_nil, reply_free
};

const PgpolyStore RedisStore = {
	"redis",
	"Redis",
	RedisOptions,
	redis_connect,
	redis_disconnect,
	RedisFlushWrites,
	pgpoly_redis_handler,
	RedisConflictColumns
};

/* Raise a connection-class error for conn; what failed is in detail. */
static void
io_error(PgpolyConnection *conn, const char *what, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("Redis server \"%s\" at %s: %s", conn->servername,
					conn->target, what),
			 detail ? errdetail("%s", detail) : 0));
}

/* Wait until the non-blocking connect completes; ERROR if it fails. */
static void
finish_connect(PgpolyConnection *conn, redisContext *ctx)
{
	TimestampTz deadline = PgpolyDeadline(conn->connect_timeout_ms);
	int			err = 0;
	socklen_t	errlen = sizeof(err);
	int			rc;

	rc = PgpolyWaitSocket(ctx->fd, PGPOLY_WAIT_WRITE, deadline, -1);
	if (rc < 0)
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("could not connect to Redis server \"%s\" at %s: timed out after %d ms",
						conn->servername, conn->target, conn->connect_timeout_ms),
				 errhint("Check that Redis is running, or raise the server option connect_timeout_ms.")));
	if (getsockopt(ctx->fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0)
		err = errno;
	if (err != 0)
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("could not connect to Redis server \"%s\" at %s: %s",
						conn->servername, conn->target, strerror(err)),
				 errhint("Check the server options host and port, and that Redis is running.")));
}

/* What setup_reply checks: the replies of [PING,] AUTH, SELECT. */
typedef struct SetupCheck
{
	PgpolyConnection *conn;
	bool		probe;			/* reply 0 answers a PING sent before AUTH */
} SetupCheck;

/* Check a reply of the connection set-up ([PING,] AUTH, SELECT). */
static bool
setup_reply(redisReply *reply, int index, void *arg)
{
	SetupCheck *check = arg;
	PgpolyConnection *conn = check->conn;

	/* The trust rule: a PING answered before AUTH means no password is asked. */
	if (check->probe && index == 0)
	{
		if (reply->type != REDIS_REPLY_ERROR || reply->len < 6 ||
			memcmp(reply->str, "NOAUTH", 6) != 0)
			PgpolyCredentialNotRequested(conn, "PING without AUTH");
		return false;
	}
	if (reply->type == REDIS_REPLY_ERROR)
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("could not set up the connection to Redis server \"%s\" at %s",
						conn->servername, conn->target),
				 errdetail("Redis answered: %s", PgpolyPrintable(reply->str, reply->len, 200)),
				 errhint("Check the user mapping's user and password and the server option db.")));
	if (reply->type != REDIS_REPLY_STATUS)
		RedisProtocolError(conn, "the connection set-up (AUTH, SELECT)", reply, NULL);
	return false;
}

/*
 * Send AUTH and SELECT as the user mapping and server options ask; first,
 * for a user who must prove the credential is asked for (the trust rule),
 * a PING that Redis must refuse with NOAUTH.  One round trip.
 */
static void
setup_session(PgpolyConnection *conn, ForeignServer *server, UserMapping *user)
{
	List	   *umopts = user ? user->options : NIL;
	const char *password = PgpolyGetOption(umopts, "password", NULL);
	const char *username = PgpolyGetOption(umopts, "user", NULL);
	const char *db = PgpolyGetOption(server->options, "db", "0");
	SetupCheck	check = {conn, user && PgpolyMustProveCredential(user)};
	int			n = 0;

	if (check.probe)
	{
		const char *argv[1] = {"PING"};

		RedisAppendArgv(conn, 1, argv, NULL);
		n++;
	}

	/* An empty password means none: Redis without requirepass rejects AUTH. */
	if (password != NULL && password[0] != '\0')
	{
		const char *argv[3] = {"AUTH", username, password};

		if (username)
			RedisAppendArgv(conn, 3, argv, NULL);
		else
		{
			argv[1] = password;
			RedisAppendArgv(conn, 2, argv, NULL);
		}
		n++;
	}
	if (strcmp(db, "0") != 0)
	{
		const char *argv[2] = {"SELECT", db};

		RedisAppendArgv(conn, 2, argv, NULL);
		n++;
	}
	if (n > 0)
		RedisExchange(conn, n, setup_reply, &check);
}

/* PgpolyStore.connect: open a non-blocking hiredis context. */
static void *
redis_connect(PgpolyConnection *conn, ForeignServer *server, UserMapping *user)
{
	const char *host = PgpolyGetOption(server->options, "host", "127.0.0.1");
	int			port = (int) PgpolyGetIntOption(server->options, "port", 6379);
	redisContext *ctx;

	snprintf(conn->target, sizeof(conn->target), "%s:%d", host, port);
	ctx = redisConnectNonBlock(host, port);
	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while connecting to Redis")));
	ctx->reader->fn = &ReplyFunctions;
	if (ctx->err)
	{
		char		msg[sizeof(ctx->errstr)];

		strlcpy(msg, ctx->errstr, sizeof(msg));
		redisFree(ctx);
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("could not connect to Redis server \"%s\" at %s: %s",
						conn->servername, conn->target, msg),
				 errhint("Check the server options host and port, and that Redis is running.")));
	}

	/* Until the handle is returned, the cache does not own ctx: free it here. */
	PG_TRY();
	{
		finish_connect(conn, ctx);
		conn->handle = ctx;
		setup_session(conn, server, user);
		conn->handle = NULL;
	}
	PG_CATCH();
	{
		conn->handle = NULL;
		conn->busy = false;
		redis_disconnect(ctx);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return ctx;
}

/* PgpolyStore.disconnect: close and free the context. */
static void
redis_disconnect(void *handle)
{
	redisContext *ctx = handle;

	/* A partial reply belongs to a memory context that may be gone. */
	ctx->reader->reply = NULL;
	redisFree(ctx);
}

/*
 * The connection for tbl's server and user mapping, from the cache.
 */
PgpolyConnection *
RedisGetConnection(RedisTable *tbl)
{
	return PgpolyGetConnection(&RedisStore, tbl->server, tbl->user);
}

/* Append "<prefix><n>\r\n" to buf. */
static inline void
append_header(StringInfo buf, char prefix, size_t n)
{
	char		tmp[24];
	int			len;

	tmp[0] = prefix;
	len = 1 + pg_ulltoa_n((uint64) n, tmp + 1);
	tmp[len++] = '\r';
	tmp[len++] = '\n';
	appendBinaryStringInfo(buf, tmp, len);
}

static void write_some(PgpolyConnection *conn, redisContext *ctx);
static void check_idle(PgpolyConnection *conn, redisContext *ctx);

/*
 * Output buffered beyond this is written out (non-blocking) while commands
 * are still being appended: hiredis grows its buffer linearly past 1 MB, so
 * a large COMMIT would otherwise copy its commands quadratically.
 */
#define REDIS_EAGER_WRITE_BYTES (256 * 1024)

/*
 * Append one command to the connection's output buffer (lens NULL: the
 * argv are NUL-terminated).  The RESP encoding is written here, binary-safe
 * with explicit lengths, and handed to hiredis as a preformatted command:
 * this avoids hiredis' per-argument format parsing.  Starts a request if
 * none is open.
 */
void
RedisAppendArgv(PgpolyConnection *conn, int argc, const char **argv,
				const size_t *lens)
{
	static StringInfo buf = NULL;
	redisContext *ctx;
	int			i;

	if (!conn->busy)
	{
		PgpolyEnsureConnected(conn);	/* reopen a closed or broken handle */
		PgpolyBeginRequest(conn);
		check_idle(conn, conn->handle);
	}
	ctx = conn->handle;
	if (buf == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		buf = makeStringInfo();
		MemoryContextSwitchTo(old);
	}
	resetStringInfo(buf);
	append_header(buf, '*', argc);
	for (i = 0; i < argc; i++)
	{
		size_t		len = lens ? lens[i] : strlen(argv[i]);

		append_header(buf, '$', len);
		appendBinaryStringInfo(buf, argv[i], len);
		appendBinaryStringInfo(buf, "\r\n", 2);
	}
	if (redisAppendFormattedCommand(ctx, buf->data, buf->len) != REDIS_OK)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while building a Redis command")));
	if (sdslen(ctx->obuf) > REDIS_EAGER_WRITE_BYTES)
		write_some(conn, ctx);
}

/* Write what the output buffer holds, without blocking. */
static void
write_some(PgpolyConnection *conn, redisContext *ctx)
{
	int			done = 0;

	if (redisBufferWrite(ctx, &done) != REDIS_OK)
		io_error(conn, "could not send the request", ctx->errstr);
}

/* Raise the ERROR for an exchange that went over pgpoly.max_response_size. */
static void
budget_error(PgpolyConnection *conn)
{
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("Redis server \"%s\" at %s sent a reply larger than pgpoly.max_response_size (%d kB)",
					conn->servername, conn->target, pgpoly_max_response_kb),
			 errdetail("The replies of one request, counted as the memory they take before it is allocated, would exceed the limit."),
			 errhint("Fetch fewer or smaller keys per round (fetch_size), or raise pgpoly.max_response_size.")));
}

/*
 * Check, when a request starts, that the server sent nothing since the last
 * one ended: bytes now would be a reply to no command, and taking them for
 * the next command's reply would shift every later answer.  Costs one
 * non-blocking recv.
 */
static void
check_idle(PgpolyConnection *conn, redisContext *ctx)
{
	char		c;
	ssize_t		n;

	if (ctx->reader->len > ctx->reader->pos)
		RedisProtocolError(conn, "no command", NULL,
						   "bytes left over from the previous request");
	n = recv(ctx->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n > 0)
		RedisProtocolError(conn, "no command", NULL,
						   "data sent while no request was pending");
	if (n == 0)
		io_error(conn, "the server closed the connection", NULL);
	if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		io_error(conn, "could not read from the connection", strerror(errno));
}

/*
 * Read what the socket holds into the reader, never more than the budget
 * has room for: the reader's buffer is charged before it grows.
 */
static void
read_some(PgpolyConnection *conn, redisContext *ctx)
{
	static char buf[64 * 1024];
	Size		room = budget_room();
	ssize_t		n;

	if (room == 0)
		budget_error(conn);
	n = recv(ctx->fd, buf, Min(room, sizeof(buf)), 0);
	if (n < 0)
	{
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		io_error(conn, "could not read the reply", strerror(errno));
	}
	if (n == 0)
		io_error(conn, "the server closed the connection", NULL);
	if (redisReaderFeed(ctx->reader, buf, n) != REDIS_OK)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while reading a Redis reply")));
}

/*
 * The next complete reply in the reader, or NULL when more bytes are
 * needed.  A refusal of the reply functions is the budget's 54000 ERROR;
 * anything else hiredis rejects is a protocol violation.
 */
static redisReply *
next_reply(PgpolyConnection *conn, redisContext *ctx)
{
	void	   *reply = NULL;

	if (redisReaderGetReply(ctx->reader, &reply) != REDIS_OK)
	{
		if (Budget.exceeded)
			budget_error(conn);
		conn->busy = true;
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("Redis server \"%s\" at %s: received a malformed reply",
						conn->servername, conn->target),
				 errdetail("%s", ctx->reader->errstr),
				 errhint("Check that the server options host and port point at a Redis server.")));
	}
	return reply;
}

/* Hand one reply to the handler; free it on every path unless it kept it. */
static void
deliver(PgpolyConnection *conn, redisReply *reply, int index,
		RedisReplyHandler handler, void *arg)
{
	volatile bool keep = false;

	PG_TRY();
	{
		if (handler)
			keep = handler(reply, index, arg);
		else if (reply->type == REDIS_REPLY_ERROR)
			RedisReplyError(conn, reply, NULL, 0, NULL);
	}
	PG_CATCH();
	{
		reply_free(reply);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (!keep)
		reply_free(reply);
}

/*
 * Send the appended commands and read nreplies replies, handing each to
 * handler(reply, index, arg) as it arrives (handler NULL: error replies
 * raise an ERROR).  Replies are allocated in the caller's memory context; a
 * handler returning true keeps its reply there.  The whole exchange is bounded by the server's
 * timeout_ms and interruptible.  Ends the request on success.
 */
void
RedisExchange(PgpolyConnection *conn, int nreplies, RedisReplyHandler handler,
			  void *arg)
{
	redisContext *ctx = conn->handle;
	TimestampTz deadline = PgpolyDeadline(conn->timeout_ms);
	int			got = 0;

	budget_begin(CurrentMemoryContext, ctx->reader);
	write_some(conn, ctx);		/* usually all of it, without a wait */
	while (got < nreplies)
	{
		redisReply *reply;
		int			want;
		int			rc;

		if ((reply = next_reply(conn, ctx)) != NULL)
		{
			deliver(conn, reply, got++, handler, arg);
			continue;
		}
		want = PGPOLY_WAIT_READ | (sdslen(ctx->obuf) > 0 ? PGPOLY_WAIT_WRITE : 0);
		rc = PgpolyWaitSocket(ctx->fd, want, deadline, -1);
		if (rc < 0)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("Redis server \"%s\" at %s did not answer within %d ms",
							conn->servername, conn->target, conn->timeout_ms),
					 errhint("Raise the server option timeout_ms, or check the server's load.")));
		if (rc & PGPOLY_WAIT_WRITE)
			write_some(conn, ctx);
		if (rc & PGPOLY_WAIT_READ)
			read_some(conn, ctx);
	}
	/* More than was asked for is a reply to no command: the stream is off. */
	if (ctx->reader->len > ctx->reader->pos)
		RedisProtocolError(conn, "no command", NULL,
						   "more replies than commands");
	/* Nothing may stay unsent: the next request would inherit it. */
	while (sdslen(ctx->obuf) > 0)
	{
		if (PgpolyWaitSocket(ctx->fd, PGPOLY_WAIT_WRITE, deadline, -1) < 0)
			io_error(conn, "timed out sending the request", NULL);
		write_some(conn, ctx);
	}
	Budget.reader = NULL;
	PgpolyEndRequest(conn);
}

/*
 * Raise the ERROR for an error reply about key (may be NULL) of tbl (may be
 * NULL).  WRONGTYPE gets a message naming the key and the expected type.
 */
void
RedisReplyError(PgpolyConnection *conn, redisReply *reply, const char *key,
				size_t keylen, RedisTable *tbl)
{
	const char *msg = reply->str ? PgpolyPrintable(reply->str, reply->len, 200) : "unknown error";

	conn->errors++;
	if (strncmp(msg, "WRONGTYPE", 9) == 0 && key && tbl)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("Redis key \"%s\" does not hold a %s", PgpolyPrintable(key, keylen, 200),
						RedisScanTypeFilter(tbl)),
				 errdetail("Foreign table \"%s\" has table_type '%s'; Redis answered: %s",
						   tbl->relname, tbl->type_name, msg),
				 errhint("Check the table's key_prefix and table_type.")));
	if (key)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("Redis server \"%s\" at %s returned an error for key \"%s\"",
						conn->servername, conn->target, PgpolyPrintable(key, keylen, 200)),
				 errdetail("Redis answered: %s", msg)));
	ereport(ERROR,
			(errcode(ERRCODE_FDW_ERROR),
			 errmsg("Redis server \"%s\" at %s returned an error",
					conn->servername, conn->target),
			 errdetail("Redis answered: %s", msg)));
}

/* A description of reply r (NULL: none) for messages. */
static char *
describe_reply(redisReply *r)
{
	switch (r ? r->type : 0)
	{
		case REDIS_REPLY_STRING:
			return psprintf("a string of %zu bytes", r->len);
		case REDIS_REPLY_ARRAY:
			return psprintf("an array of %zu elements", r->elements);
		case REDIS_REPLY_INTEGER:
			return psprintf("the integer %lld", r->integer);
		case REDIS_REPLY_NIL:
			return pstrdup("a nil reply");
		case REDIS_REPLY_STATUS:
			return psprintf("the status \"%s\"", PgpolyPrintable(r->str, r->len, 200));
		case REDIS_REPLY_ERROR:
			return psprintf("the error \"%s\"", PgpolyPrintable(r->str, r->len, 200));
	}
	return pstrdup("unexpected data");
}

/*
 * Raise the ERROR for a reply no Redis server sends there: of a type the
 * command never answers with (r; NULL when there is no reply to show), or
 * data when none was due.  command names what was asked, what (may be NULL)
 * what was wrong.  The connection is marked broken: its replies can no
 * longer be matched to commands, so the next statement reconnects.
 */
void
RedisProtocolError(PgpolyConnection *conn, const char *command, redisReply *r,
				   const char *what)
{
	conn->busy = true;
	ereport(ERROR,
			(errcode(ERRCODE_PROTOCOL_VIOLATION),
			 errmsg("Redis server \"%s\" at %s broke the protocol: unexpected reply to %s",
					conn->servername, conn->target, command),
			 what ? errdetail("Got %s: %s.", describe_reply(r), what) :
			 errdetail("Got %s.", describe_reply(r)),
			 errhint("The connection was closed; the next statement opens a new one.  Check that the server options host and port point at a Redis server.")));
}

/* A palloc'd copy of len bytes (any byte), NUL-terminated for convenience. */
char *
RedisBytesCopy(const char *s, size_t len)
{
	char	   *copy = palloc(len + 1);

	memcpy(copy, s, len);
	copy[len] = '\0';
	return copy;
}
