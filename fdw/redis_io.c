/*-------------------------------------------------------------------------
 *
 * redis_io.c
 *		  hiredis, non-blocking, driven by the core's interruptible wait.
 *
 * hiredis 0.14 has no connect-with-options and no async API we could wait
 * on from a backend, so the context is created with redisConnectNonBlock()
 * and every exchange is: append commands (RESP we encode ourselves), then
 * alternate redisBufferWrite / redisBufferRead whenever PgpolyWaitSocket()
 * says the socket is ready, pulling parsed replies with
 * redisGetReplyFromReader().  Only these three non-blocking calls touch the
 * socket, so hiredis never blocks and a cancel or statement_timeout is
 * serviced between them.
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
 *	- Bytes buffered for replies not yet complete are bounded by
 *	  pgpoly.max_response_size.
 *
 * fdw/redis_io.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>
#include <hiredis/hiredis.h>

#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "redis.h"

static void *redis_connect(PgpolyConnection *conn, ForeignServer *server,
						   UserMapping *user);
static void redis_disconnect(void *handle);

/* Memory context replies of the running exchange are allocated in. */
static MemoryContext ReplyContext = NULL;

/* Zeroed allocation for the reply functions; NULL (not ERROR) when out of memory. */
static void *
reply_alloc(size_t size)
{
	/* Too large is "out of memory" to hiredis: elog must not fire in here. */
	if (!AllocSizeIsValid(size))
		return NULL;
	return MemoryContextAllocExtended(ReplyContext, size,
									  MCXT_ALLOC_NO_OOM | MCXT_ALLOC_ZERO);
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
		pfree(r->element);
	}
	if (r->str)
		pfree(r->str);
	pfree(r);
}

/* Link a new reply into its parent array, as hiredis' own functions do. */
static void *
link_reply(const redisReadTask *task, redisReply *r)
{
	if (task->parent)
		((redisReply *) task->parent->obj)->element[task->idx] = r;
	return r;
}

/* hiredis reply function: bulk/status/error string. */
static void *
reply_string(const redisReadTask *task, char *str, size_t len)
{
	redisReply *r = reply_alloc(sizeof(redisReply));

	if (r == NULL || (r->str = reply_alloc(len + 1)) == NULL)
	{
		if (r)
			pfree(r);
		return NULL;
	}
	r->type = task->type;
	memcpy(r->str, str, len);
	r->len = len;
	return link_reply(task, r);
}

/* hiredis reply function: array of n elements. */
static void *
reply_array(const redisReadTask *task, int n)
{
	redisReply *r = reply_alloc(sizeof(redisReply));

	if (r == NULL)
		return NULL;
	if (n > 0 && (r->element = reply_alloc(sizeof(redisReply *) * (size_t) n)) == NULL)
	{
		pfree(r);
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
				 errdetail("Redis answered: %s", reply->str),
				 errhint("Check the user mapping's user and password and the server option db.")));
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

/* Read what the socket holds; enforce the response size bound. */
static void
read_some(PgpolyConnection *conn, redisContext *ctx, Size *pending)
{
	size_t		before = ctx->reader->len;

	if (redisBufferRead(ctx) != REDIS_OK)
		io_error(conn, ctx->err == REDIS_ERR_EOF ?
				 "the server closed the connection" : "could not read the reply",
				 ctx->errstr);
	if (ctx->reader->len > before)
		*pending += ctx->reader->len - before;
	if (*pending > PGPOLY_MAX_RESPONSE_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("Redis server \"%s\" at %s sent a reply larger than pgpoly.max_response_size (%d kB)",
						conn->servername, conn->target, pgpoly_max_response_kb),
				 errhint("Fetch fewer or smaller keys per round (fetch_size), or raise pgpoly.max_response_size.")));
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
	Size		pending = 0;
	int			got = 0;

	ReplyContext = CurrentMemoryContext;
	write_some(conn, ctx);		/* usually all of it, without a wait */
	while (got < nreplies)
	{
		void	   *reply = NULL;
		int			want;
		int			rc;

		if (redisGetReplyFromReader(ctx, &reply) != REDIS_OK)
			io_error(conn, "received a malformed reply", ctx->errstr);
		if (reply != NULL)
		{
			pending = 0;
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
			read_some(conn, ctx, &pending);
	}
	/* Nothing may stay unsent: the next request would inherit it. */
	while (sdslen(ctx->obuf) > 0)
	{
		if (PgpolyWaitSocket(ctx->fd, PGPOLY_WAIT_WRITE, deadline, -1) < 0)
			io_error(conn, "timed out sending the request", NULL);
		write_some(conn, ctx);
	}
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
	const char *msg = reply->str ? reply->str : "unknown error";

	conn->errors++;
	if (strncmp(msg, "WRONGTYPE", 9) == 0 && key && tbl)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("Redis key \"%.*s\" does not hold a %s", (int) keylen, key,
						RedisScanTypeFilter(tbl)),
				 errdetail("Foreign table \"%s\" has table_type '%s'; Redis answered: %s",
						   tbl->relname, tbl->type_name, msg),
				 errhint("Check the table's key_prefix and table_type.")));
	if (key)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("Redis server \"%s\" at %s returned an error for key \"%.*s\"",
						conn->servername, conn->target, (int) keylen, key),
				 errdetail("Redis answered: %s", msg)));
	ereport(ERROR,
			(errcode(ERRCODE_FDW_ERROR),
			 errmsg("Redis server \"%s\" at %s returned an error",
					conn->servername, conn->target),
			 errdetail("Redis answered: %s", msg)));
}
