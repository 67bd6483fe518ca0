/*-------------------------------------------------------------------------
 *
 * redis_io.c
 *		  hiredis, non-blocking, driven by the core's interruptible wait.
 *
 * hiredis 0.14 has no connect-with-options and no async API we could wait
 * on from a backend, so each connection to a Redis server is created with
 * redisConnectNonBlock(), or redisConnectUnixNonBlock() for a server's
 * unix_socket (cheaper than loopback TCP for a Redis on the same host;
 * everything after the connect is the same: waits, AUTH, SELECT, the
 * trust rule's probe), and every exchange is: append commands (RESP we
 * encode ourselves) to each node's output, then alternate non-blocking
 * sendmsg() of that output / recv() into the node's RESP reader
 * (redis_resp.c) whenever the core's wait says a socket is ready, taking
 * out complete replies with RedisReaderNext().  Nothing blocks, so a cancel
 * or statement_timeout is serviced between the calls.
 *
 * A node's output is a list of byte runs written with one sendmsg() per
 * wake-up: small commands are copied into the node's buffer, RESP that a
 * caller encoded once and keeps until the exchange ends (the buffered
 * writes of a COMMIT) is referenced where it lies, so a large COMMIT is
 * neither copied nor re-encoded and leaves in few large writes.
 *
 * A pgpoly connection (one cache entry) may span several Redis servers, its
 * nodes: one for a single server or Sentinel's primary, one per cluster
 * node met for a Redis Cluster (redis_cluster.c decides where each command
 * goes).  An exchange first sends every node its part of the pipeline, then
 * waits on all their sockets at once, so a request touching n nodes costs
 * one round trip in wall time; replies reach the caller's handler in the
 * order the commands were appended, whatever node answered first.
 *
 * Invariants:
 *	- Appending a command starts a request on the connection cache entry;
 *	  only a complete exchange ends it.  An ERROR in between (a bad value
 *	  while building commands, a timeout, an error reply the caller raises)
 *	  therefore leaves the connection "busy" and all its nodes are closed.
 *	- Replies are hiredis redisReply objects built by redis_resp.c, one
 *	  chunk per reply, in the memory context that is current when the
 *	  exchange runs.  A handler may keep a reply (it then lives as long as
 *	  that context); others are freed at once.  hiredis' reader and its
 *	  malloc-based freeReplyObject() are never used.
 *	- pgpoly.max_response_size bounds what one exchange (all its replies,
 *	  from all its nodes) makes the backend hold: live reply objects at
 *	  their real size plus the readers' unparsed bytes, charged before each
 *	  allocation or read (an announced array count is charged from its
 *	  header, before any element arrives).  Past it the exchange raises
 *	  54000.
 *	- Replies and commands stay in step on every node: bytes received while
 *	  no request is pending, more replies than commands, or a reply of a
 *	  type the command never returns break the connection with an ERROR
 *	  (08P01), so no statement ever takes another command's reply for its
 *	  own.  The one command a request carries that its caller did not
 *	  append, the UNWATCH of a node still watching for an ended
 *	  transaction (redis_end_session), goes first and is answered first.
 *	- Bytes from Redis (keys, error texts) reach messages only through
 *	  PgpolyPrintable(, 200): escaped and capped.
 *	- A node's output is written only when its socket is writable (or
 *	  once, without waiting, when the exchange starts), never by blocking;
 *	  bytes it references are read only while their exchange runs: a new
 *	  request or closing the node forgets the output of an abandoned one.
 *	- A request sent ahead (RedisSend) may grow while Redis answers it
 *	  (RedisResume, RedisSendMore) and be read in parts (RedisReceiveSome):
 *	  between those calls it is not busy, and any other request on the
 *	  connection first reads all the replies it still owes.
 *	- One kind of request stays open across statements: the write stream's
 *	  (redis_stream.c), on a connection of its own.  RedisPump() moves it
 *	  on without waiting and without ERROR (a failure is returned, the
 *	  caller drops the connection); its exchange runs at COMMIT and reads
 *	  only the replies the pumps did not take.  The RESP it references is
 *	  the transaction's buffered writes, which live until the transaction
 *	  ends, when the stream is closed unless its EXEC ended the request.
 *
 * fdw/redis_io.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <hiredis/hiredis.h>

#include "access/xact.h"
#include "mb/pg_wchar.h"
#include "catalog/pg_authid.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "redis.h"

static void *redis_connect(PgpolyConnection *conn, ForeignServer *server,
						   UserMapping *user);
static PgpolyConnection *redis_table_connection(Oid relid, Oid userid);
static void redis_check_reads(PgpolyConnection *conn);
static bool redis_end_session(PgpolyConnection *conn);
static RedisHandle *begin_request(PgpolyConnection *conn);
static void redis_disconnect(void *handle);
static List *redis_node_rows(PgpolyConnection *conn);

/*
 * What the running exchange may allocate (pgpoly.max_response_size): reply
 * objects alive now, counted at their real size in the memory context, plus
 * the bytes the readers (redis_resp.c) hold that are not parsed yet.  A
 * reply is charged before it is allocated; a read never asks for more
 * bytes than the budget has room for.  Past it the exchange raises 54000.
 */
typedef struct ReplyBudget
{
	MemoryContext cxt;			/* replies are built here */
	RedisHandle *h;				/* the unparsed bytes of its active nodes ... */
	RedisReader *reader;		/* ... or of this one reader count too */
	Size		used;			/* bytes of live reply objects */
	Size		limit;
} ReplyBudget;

static ReplyBudget Budget;

/*
 * Start counting a new exchange's replies, built in cxt: those of h's
 * active nodes (RedisExchange), or of one reader (a synchronous call).
 */
static void
budget_begin(MemoryContext cxt, RedisHandle *h, RedisReader *reader)
{
	Budget.cxt = cxt;
	Budget.h = h;
	Budget.reader = reader;
	Budget.used = 0;
	Budget.limit = PGPOLY_MAX_RESPONSE_BYTES;
}

/* Bytes the budget still has room for (0 when it is spent). */
static Size
budget_room(void)
{
	Size		held = Budget.used;

	if (Budget.reader)
		held += RedisReaderPending(Budget.reader);
	for (int i = 0; Budget.h && i < Budget.h->nnodes; i++)
	{
		RedisNode  *node = Budget.h->nodes[i];

		if (node->active && node->ctx)
			held += RedisReaderPending(node->in);
	}
	return held >= Budget.limit ? 0 : Budget.limit - held;
}

/* Free a reply (one chunk, redis_resp.c) and give its space back. */
static void
reply_free(redisReply *r)
{
	Size		space;

	if (r == NULL)
		return;
	space = GetMemoryChunkSpace(r);
	Budget.used -= Min(Budget.used, space);
	pfree(r);
}

/* Free a reply of an exchange that no handler will see (redis_cluster.c). */
void
RedisReplyDiscard(redisReply *reply)
{
	reply_free(reply);
}

const PgpolyStore RedisStore = {
	"redis",
	"Redis",
	RedisOptions,
	redis_connect,
	redis_disconnect,
	RedisFlushWrites,
	pgpoly_redis_handler,
	RedisConflictColumns,
	redis_node_rows,
	redis_table_connection,
	redis_check_reads,
	redis_end_session,
	RedisStreamBuffered,
	RedisStreamXactEnd,
	NULL,						/* a write's key names its target */
	NULL,
	RedisSharesWrites
};

/* Make node the one conn's messages name (conn->target). */
static void
name_node(PgpolyConnection *conn, RedisNode *node)
{
	strlcpy(conn->target, node->addr, sizeof(conn->target));
}

/* Raise a connection-class error for conn at node; what failed is in detail. */
static void
io_error(PgpolyConnection *conn, RedisNode *node, const char *what,
		 const char *detail)
{
	name_node(conn, node);
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("Redis server \"%s\" at %s: %s", conn->servername,
					conn->target, what),
			 detail ? errdetail("%s", detail) : 0,
			 errhint("Check that Redis is running and that the server's options point at it, not at another service.")));
}

/* ----------------------------------------------------------------
 *		A node's output
 * ----------------------------------------------------------------
 */

/*
 * A run of a node's output: len bytes at ptr, or (ptr NULL) at off in the
 * node's copied buffer, which may move while it grows.
 */
typedef struct RedisOut
{
	const char *ptr;
	size_t		off;
	size_t		len;
} RedisOut;

/* Whether node has output not written yet. */
static inline bool
out_pending(RedisNode *node)
{
	return node->outpos < node->nout;
}

/*
 * Forget node's output (all written, or the request is abandoned); the
 * memory of a large one is given back.
 */
static void
out_reset(RedisNode *node)
{
	node->nout = node->outpos = 0;
	node->outdone = 0;
	if (node->maxout > 1024)
	{
		pfree(node->out);
		node->out = NULL;
		node->maxout = 0;
	}
	if (node->copied.data && node->copied.maxlen > 1024 * 1024)
	{
		pfree(node->copied.data);
		node->copied.data = NULL;
	}
	else if (node->copied.data)
		resetStringInfo(&node->copied);
}

/*
 * Add len bytes to node's output: a copy, or (copy false) the bytes where
 * they are, which the caller keeps unchanged until the exchange ends.  A
 * run that continues the last one extends it.
 */
static void
out_add(RedisNode *node, const char *bytes, size_t len, bool copy)
{
	RedisOut   *last = node->nout > 0 ? &node->out[node->nout - 1] : NULL;
	size_t		off = 0;

	if (len == 0)
		return;					/* out_write steps over bytes, not runs */
	if (copy)
	{
		if (node->copied.data == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(GetMemoryChunkContext(node));

			initStringInfo(&node->copied);
			MemoryContextSwitchTo(old);
		}
		off = node->copied.len;
		appendBinaryStringInfo(&node->copied, bytes, len);
		if (last && last->ptr == NULL && last->off + last->len == off)
		{
			last->len += len;
			return;
		}
		bytes = NULL;
	}
	else if (last && last->ptr && last->ptr + last->len == bytes)
	{
		last->len += len;
		return;
	}
	if (node->nout == node->maxout)
	{
		node->maxout = Max(16, node->maxout * 2);
		node->out = node->out ?
			repalloc_huge(node->out, sizeof(RedisOut) * node->maxout) :
			MemoryContextAllocExtended(GetMemoryChunkContext(node),
									   sizeof(RedisOut) * node->maxout,
									   MCXT_ALLOC_HUGE);
	}
	node->out[node->nout++] = (RedisOut)
	{
		bytes, off, len
	};
}

/*
 * Write as much of node's output as its socket takes, without blocking:
 * up to 128 runs per sendmsg(), again only while the socket took all it
 * was given.  NULL, or why the node failed.
 */
static char *
out_write(RedisNode *node)
{
	while (out_pending(node))
	{
		struct iovec iov[128];
		struct msghdr msg;
		size_t		want = 0;
		ssize_t		n;
		int			niov = 0;

		for (int i = node->outpos; i < node->nout && niov < lengthof(iov); i++)
		{
			RedisOut   *o = &node->out[i];
			size_t		skip = i == node->outpos ? node->outdone : 0;

			iov[niov].iov_base = (char *) (o->ptr ? o->ptr : node->copied.data + o->off) + skip;
			iov[niov].iov_len = o->len - skip;
			want += iov[niov++].iov_len;
		}
		memset(&msg, 0, sizeof(msg));
		msg.msg_iov = iov;
		msg.msg_iovlen = niov;
		n = sendmsg(node->ctx->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0)
		{
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return NULL;
			return pstrdup(strerror(errno));
		}
		/* Step over what went out. */
		for (size_t left = (size_t) n; left > 0;)
		{
			RedisOut   *o = &node->out[node->outpos];
			size_t		step = Min(left, o->len - node->outdone);

			node->outdone += step;
			left -= step;
			if (node->outdone == o->len)
			{
				node->outpos++;
				node->outdone = 0;
			}
		}
		if ((size_t) n < want)
			return NULL;		/* the socket is full */
	}
	out_reset(node);
	return NULL;
}

/*
 * Whether node's unwritten output references a caller's bytes (copy false
 * in out_add) rather than copies.
 */
static bool
out_references(RedisNode *node)
{
	for (int i = node->outpos; i < node->nout; i++)
		if (node->out[i].ptr != NULL)
			return true;
	return false;
}

/* Free node's output buffers (the node is closed). */
static void
out_free(RedisNode *node)
{
	node->nout = node->outpos = node->maxout = 0;
	node->outdone = 0;
	if (node->out)
		pfree(node->out);
	node->out = NULL;
	if (node->copied.data)
		pfree(node->copied.data);
	node->copied.data = NULL;
}

/* ----------------------------------------------------------------
 *		Nodes
 * ----------------------------------------------------------------
 */

/* A new node of h (not connected): host:port, or the socket at path host. */
static RedisNode *
add_node(RedisHandle *h, const char *host, int port, bool is_socket)
{
	MemoryContext old = MemoryContextSwitchTo(h->cxt);
	RedisNode  *node;

	if (h->nnodes == h->maxnodes)
	{
		h->maxnodes = Max(4, h->maxnodes * 2);
		h->nodes = h->nodes ? repalloc(h->nodes, sizeof(RedisNode *) * h->maxnodes) :
			palloc(sizeof(RedisNode *) * h->maxnodes);
	}
	node = palloc0(sizeof(RedisNode));
	node->index = h->nnodes;
	node->host = pstrdup(host);
	node->port = port;
	node->is_socket = is_socket;
	node->addr = is_socket ? pstrdup(host) :
		strchr(host, ':') ? psprintf("[%s]:%d", host, port) :
		psprintf("%s:%d", host, port);
	h->nodes[h->nnodes++] = node;
	MemoryContextSwitchTo(old);
	return node;
}

/* The node at host:port, added to h if it is new (not connected). */
RedisNode *
RedisNodeGet(RedisHandle *h, const char *host, int port)
{
	for (int i = 0; i < h->nnodes; i++)
		if (!h->nodes[i]->is_socket && h->nodes[i]->port == port &&
			strcmp(h->nodes[i]->host, host) == 0)
			return h->nodes[i];
	return add_node(h, host, port, false);
}

/* Position of node in h->nodes. */
int
RedisNodeIndex(RedisHandle *h, RedisNode *node)
{
	if (node->index < 0 || node->index >= h->nnodes || h->nodes[node->index] != node)
		elog(ERROR, "Redis node %s is not part of its connection", node->addr);
	return node->index;
}

/* Close node's connection (if open); never ereports. */
void
RedisNodeClose(RedisHandle *h, RedisNode *node)
{
	if (node->ctx == NULL)
		return;
	if (node->watched)
		h->watch_lost = true;	/* its WATCHes are gone (RedisCheckWatches) */
	node->watched = node->stale_watch = node->unwatch_sent = false;
	RedisReaderReset(node->in);	/* bytes of the old connection */
	redisFree(node->ctx);
	node->ctx = NULL;
	out_free(node);
	if (h->waitset)
		PgpolyWaitSetForget(h->waitset);	/* its descriptor may be reused */
}

/*
 * Close node and free it, its names and its reader (whose buffer lives in
 * the handle's memory, RedisNodeOpen): a sentinel's node once asked, or a
 * primary Sentinel's handle forgets.  The caller drops every pointer to
 * it.  Never ereports.
 */
void
RedisNodeFree(RedisHandle *h, RedisNode *node)
{
	RedisNodeClose(h, node);
	if (node->in)
		RedisReaderFree(node->in);
	if (node->queue)
		pfree(node->queue);
	if (node->index >= 0)
		pfree(node->host);		/* a sentinel's is its topology's */
	pfree(node->addr);
	pfree(node);
}

/*
 * Connections this backend opened to Redis nodes: each gets the next
 * number (RedisNode.session), so that a node opened anew after Redis
 * closed it (RedisNode.peer_reopen) is later than any walk of a SCAN
 * cursor begun before, on whatever handle.
 */
static uint64 Sessions = 0;

/* Wait until a non-blocking connect completes; NULL or why it failed. */
static char *
finish_connect(PgpolyConnection *conn, redisContext *ctx)
{
	TimestampTz deadline = PgpolyDeadline(conn->connect_timeout_ms);
	int			err = 0;
	socklen_t	errlen = sizeof(err);

	if (PgpolyWaitSocket(ctx->fd, PGPOLY_WAIT_WRITE, deadline, -1) < 0)
		return psprintf("timed out after %d ms", conn->connect_timeout_ms);
	if (getsockopt(ctx->fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0)
		err = errno;
	return err != 0 ? pstrdup(strerror(err)) : NULL;
}

/* Append the RESP encoding of one command to buf (lens NULL: C strings). */
void
RedisEncodeCommand(StringInfo buf, int argc, const char **argv, const size_t *lens)
{
	size_t		local[16];
	size_t	   *len = argc <= lengthof(local) ? local : palloc(sizeof(size_t) * argc);
	size_t		total = RedisRespHeaderSize(argc);
	char	   *p;

	for (int i = 0; i < argc; i++)
	{
		len[i] = lens ? lens[i] : strlen(argv[i]);
		total += RedisRespArgSize(len[i]);
	}
	if (total >= (size_t) (MaxAllocSize - buf->len))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a Redis command of %zu bytes is too large to send", total)));
	enlargeStringInfo(buf, (int) total);
	p = RedisRespPutHeader(buf->data + buf->len, '*', argc);
	for (int i = 0; i < argc; i++)
		p = RedisRespPutArg(p, argv[i], len[i]);
	buf->len += (int) total;
	buf->data[buf->len] = '\0';
	if (len != local)
		pfree(len);
}

/* Raise the ERROR for an exchange that went over pgpoly.max_response_size. */
static void
budget_error(PgpolyConnection *conn, RedisNode *node)
{
	name_node(conn, node);
	ereport(ERROR,
			(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
			 errmsg("Redis server \"%s\" at %s sent a reply larger than pgpoly.max_response_size (%d kB)",
					conn->servername, conn->target, pgpoly_max_response_kb),
			 errdetail("The replies of one request, counted as the memory they take before it is allocated, would exceed the limit."),
			 errhint("Fetch fewer or smaller keys per round (fetch_size), or raise pgpoly.max_response_size; one key's value comes in one reply (a set, list, sorted set or hash whole, about 60 bytes per member plus its text).")));
}

/*
 * Read what node's socket holds into its reader, at most room bytes,
 * without waiting.  NULL, or why the node failed (closed, unreadable);
 * *got says whether bytes came.  Never ERROR but for out of memory.
 */
static char *
node_recv(RedisNode *node, Size room, bool *got)
{
	size_t		space;
	char	   *dst;
	ssize_t		n;

	*got = false;
	dst = RedisReaderSpace(node->in, &space);
	n = recv(node->ctx->fd, dst, Min(room, space), 0);
	if (n < 0)
	{
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return NULL;
		return psprintf("could not read the reply: %s", strerror(errno));
	}
	if (n == 0)
		return pstrdup("the server closed the connection");
	RedisReaderAdvance(node->in, n);
	*got = true;
	return NULL;
}

/*
 * node_recv, never more than the budget of the exchange has room for
 * (past it, the 54000 ERROR).
 */
static char *
node_read(PgpolyConnection *conn, RedisNode *node, bool *got)
{
	Size		room = budget_room();

	*got = false;
	if (room == 0)
		budget_error(conn, node);
	return node_recv(node, room, got);
}

/*
 * The next complete reply in node's reader, or NULL when more bytes are
 * needed; flat: an array of bulk strings comes as RESP_REPLY_STRINGS.  A
 * reply larger than the budget is the 54000 ERROR; bytes that are not RESP
 * are a protocol violation.
 */
static redisReply *
next_reply(PgpolyConnection *conn, RedisNode *node, bool flat)
{
	redisReply *reply;

	switch (RedisReaderNext(node->in, budget_room(), Budget.cxt, flat, &reply))
	{
		case RESP_DONE:
			Budget.used += GetMemoryChunkSpace(reply);
			return reply;
		case RESP_MORE:
			return NULL;
		case RESP_BUDGET:
			budget_error(conn, node);
			break;
		case RESP_OOM:
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory while reading a Redis reply")));
			break;
	}
	conn->busy = true;
	name_node(conn, node);
	ereport(ERROR,
			(errcode(ERRCODE_PROTOCOL_VIOLATION),
			 errmsg("Redis server \"%s\" at %s: received a malformed reply",
					conn->servername, conn->target),
			 errdetail("%s", RedisReaderError(node->in)),
			 errhint("Check that the server options host and port point at a Redis server.")));
	return NULL;				/* keep compiler quiet */
}

/* What a non-blocking peek at a node's socket found. */
typedef enum NodePeek
{
	PEEK_NOTHING,				/* nothing to read yet */
	PEEK_DATA,					/* bytes are waiting */
	PEEK_CLOSED,				/* the server closed the connection */
	PEEK_FAILED					/* another socket error (errno) */
} NodePeek;

/* Peek at node's socket without waiting and without taking a byte. */
static NodePeek
node_peek(RedisNode *node)
{
	char		c;
	ssize_t		n = recv(node->ctx->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

	if (n > 0)
		return PEEK_DATA;
	if (n == 0 || errno == ECONNRESET)
		return PEEK_CLOSED;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return PEEK_NOTHING;
	return PEEK_FAILED;
}

/*
 * Check, when a request first uses node, that it sent nothing since the
 * last request ended: bytes now would be a reply to no command, and taking
 * them for the next command's reply would shift every later answer.  Costs
 * one non-blocking recv.  Returns false when Redis closed the connection
 * while it was idle (its timeout setting, a restart, CLIENT KILL) and
 * may_reopen: the caller opens it anew; else that is the connection ERROR.
 */
static bool
check_idle(PgpolyConnection *conn, RedisNode *node, bool may_reopen)
{
	if (RedisReaderPending(node->in) > 0)
	{
		name_node(conn, node);
		RedisProtocolError(conn, "no command", NULL,
						   "bytes left over from the previous request");
	}
	switch (node_peek(node))
	{
		case PEEK_NOTHING:
			break;
		case PEEK_DATA:
			name_node(conn, node);
			RedisProtocolError(conn, "no command", NULL,
							   "data sent while no request was pending");
			break;
		case PEEK_CLOSED:
			if (may_reopen)
				return false;
			io_error(conn, node, "the server closed the connection", NULL);
			break;
		case PEEK_FAILED:
			io_error(conn, node, "could not read from the connection", strerror(errno));
			break;
	}
	return true;
}

/* Whether some open node of conn's handle may not run MULTI (setup_session). */
bool
RedisMultiRefused(PgpolyConnection *conn)
{
	RedisHandle *h = conn->handle;

	for (int i = 0; h != NULL && i < h->nnodes; i++)
		if (h->nodes[i]->ctx != NULL && h->nodes[i]->multi_refused)
			return true;
	return false;
}

/*
 * ERROR (42501) before a COMMIT sends writes wrapped in MULTI/EXEC on a
 * connection whose ACL user may not run MULTI: Redis would refuse the
 * MULTI and apply every write after it at once, while the COMMIT fails.
 */
void
RedisCheckMulti(PgpolyConnection *conn)
{
	if (!RedisMultiRefused(conn))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("the Redis user of server \"%s\" may not run MULTI", conn->servername),
			 errdetail("write_mode 'transactional' sends a transaction's writes to Redis wrapped in MULTI and EXEC; nothing was sent."),
			 errhint("Grant the Redis ACL user +@transaction (MULTI, EXEC, WATCH, DISCARD), or use write_mode 'immediate' for this table.")));
}

/*
 * Whether Redis closed conn's connection (one server), with nothing it
 * sent before left unread.  Never ERROR.
 */
bool
RedisPeerClosed(PgpolyConnection *conn)
{
	RedisNode  *node = ((RedisHandle *) conn->handle)->nodes[0];

	return node->ctx == NULL || node_peek(node) == PEEK_CLOSED;
}

/*
 * Send the RESP of ncmds commands (in buf) to node and read their replies,
 * synchronously, for connection set-up and topology queries.  Returns the
 * replies (allocated in the current memory context), or NULL with *error
 * set when the node could not be reached; the node is then closed.  ERROR
 * only on interrupts and out of memory.
 */
static redisReply **
node_call_raw(PgpolyConnection *conn, RedisHandle *h, RedisNode *node,
			  StringInfo buf, int ncmds, char **error)
{
	ReplyBudget saved = Budget;	/* a node opened in the middle of an exchange */
	redisContext *ctx = node->ctx;
	TimestampTz deadline = PgpolyDeadline(conn->timeout_ms);
	redisReply **replies = palloc0(sizeof(redisReply *) * ncmds);
	int			got = 0;
	bool		bytes;

	/* replies a request sent ahead still owes would be taken for these */
	if (h != NULL && h->pend.ticket != 0 && node->active)
		elog(ERROR, "Redis node called while a request's replies are owed");
	*error = NULL;
	budget_begin(CurrentMemoryContext, NULL, node->in);
	out_add(node, buf->data, buf->len, true);
	while (got < ncmds && *error == NULL)
	{
		redisReply *reply;
		int			rc;

		if ((reply = next_reply(conn, node, false)) != NULL)
			replies[got++] = reply;
		else if ((rc = PgpolyWaitSocket(ctx->fd, PGPOLY_WAIT_READ |
										(out_pending(node) ? PGPOLY_WAIT_WRITE : 0),
										deadline, -1)) < 0)
			*error = psprintf("no answer within %d ms", conn->timeout_ms);
		else if ((rc & PGPOLY_WAIT_WRITE) && (*error = out_write(node)) != NULL)
			continue;
		else if (rc & PGPOLY_WAIT_READ)
			*error = node_read(conn, node, &bytes);
	}
	if (*error == NULL && RedisReaderPending(node->in) > 0)
	{
		name_node(conn, node);
		RedisProtocolError(conn, "no command", NULL, "more replies than commands");
	}
	Budget = saved;
	if (*error != NULL)
	{
		RedisNodeClose(h, node);
		return NULL;
	}
	return replies;
}

/*
 * One command on node, synchronously (see node_call_raw): the reply, or
 * NULL with *error set.
 */
redisReply *
RedisNodeCall(PgpolyConnection *conn, RedisHandle *h, RedisNode *node,
			  int argc, const char **argv, char **error)
{
	StringInfoData buf;
	redisReply **r;

	initStringInfo(&buf);
	RedisEncodeCommand(&buf, argc, argv, NULL);
	r = node_call_raw(conn, h, node, &buf, 1, error);
	return r ? r[0] : NULL;
}

/*
 * The trust rule's check, for a user who must prove the credential is
 * asked for: a PING, alone, that Redis must refuse with NOAUTH (2F003
 * otherwise).  Nothing the user chose (the password, a user name) is sent
 * before that answer: the node is any address a non-superuser named, and
 * to a line-based service (memcached, SMTP, a local daemon's socket) each
 * RESP argument is a line it would run as a command.  false with *error
 * set if the node cannot be reached.
 */
static bool
check_credential_asked(PgpolyConnection *conn, RedisHandle *h, RedisNode *node,
					   char **error)
{
	const char *argv[1] = {"PING"};
	redisReply *r = RedisNodeCall(conn, h, node, 1, argv, error);

	if (r == NULL)
		return false;
	if (r->type != REDIS_REPLY_ERROR || r->len < 6 || memcmp(r->str, "NOAUTH", 6) != 0)
	{
		name_node(conn, node);
		PgpolyCredentialNotRequested(conn, "PING without AUTH");
	}
	return true;
}

/*
 * Send AUTH and SELECT as the user mapping and server options ask, after
 * the trust rule's check (check_credential_asked) when the user needs it.
 * One round trip (two with the check).  An error reply (a wrong password)
 * is an ERROR, an unreachable node returns false.
 */
static bool
setup_session(PgpolyConnection *conn, RedisHandle *h, RedisNode *node,
			  char **error)
{
	StringInfoData buf;
	redisReply **r;
	int			n = 0;
	int			multi = -1;		/* the MULTI probe's reply, if sent */

	if (h->probe && !check_credential_asked(conn, h, node, error))
		return false;
	initStringInfo(&buf);
	/* An empty password means none: Redis without requirepass rejects AUTH. */
	if (h->password != NULL && h->password[0] != '\0')
	{
		const char *argv[3] = {"AUTH", h->username, h->password};

		if (h->username)
			RedisEncodeCommand(&buf, 3, argv, NULL);
		else
		{
			argv[1] = h->password;
			RedisEncodeCommand(&buf, 2, argv, NULL);
		}
		n++;
	}
	if (h->db != 0)
	{
		char		db[16];
		const char *argv[2] = {"SELECT", db};

		snprintf(db, sizeof(db), "%d", h->db);
		RedisEncodeCommand(&buf, 2, argv, NULL);
		n++;
	}

	/*
	 * An ACL user may lack MULTI (its category @transaction is not in
	 * @write).  Redis then refuses the MULTI of a COMMIT and runs the writes
	 * after it at once, outside any transaction: so ask now (an empty MULTI,
	 * DISCARD: no effect either way), and COMMIT refuses to send writes on a
	 * connection that may not wrap them (RedisCheckMulti).
	 */
	if (h->username != NULL)
	{
		const char *argv[1] = {"MULTI"};

		RedisEncodeCommand(&buf, 1, argv, NULL);
		argv[0] = "DISCARD";
		RedisEncodeCommand(&buf, 1, argv, NULL);
		multi = n;
		n += 2;
	}
	if (n == 0)
		return true;
	if ((r = node_call_raw(conn, h, node, &buf, n, error)) == NULL)
		return false;
	if (multi >= 0)
	{
		node->multi_refused = r[multi]->type == REDIS_REPLY_ERROR;
		n = multi;				/* their replies are not set-up errors */
	}
	for (int i = 0; i < n; i++)
	{
		if (r[i]->type != REDIS_REPLY_STATUS)
			name_node(conn, node);	/* for the ERROR below */
		if (r[i]->type == REDIS_REPLY_ERROR)
			ereport(ERROR,
					(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
					 errmsg("could not set up the connection to Redis server \"%s\" at %s",
							conn->servername, conn->target),
					 errdetail("Redis answered: %s", PgpolyPrintable(r[i]->str, r[i]->len, 200)),
					 errhint("Check the user mapping's user and password and the server option db.")));
		if (r[i]->type != REDIS_REPLY_STATUS)
			RedisProtocolError(conn, "the connection set-up (AUTH, SELECT)", r[i], NULL);
	}
	return true;
}

/*
 * Open node's connection (setup: with AUTH/SELECT).  false with *error set
 * if the node cannot be reached (the caller decides whether that is an
 * ERROR: a cluster tries another node); an ERROR for a rejected password.
 */
bool
RedisNodeOpen(PgpolyConnection *conn, RedisHandle *h, RedisNode *node,
			  bool setup, char **error)
{
	redisContext *ctx;

	Assert(node->ctx == NULL);
	ctx = node->is_socket ? redisConnectUnixNonBlock(node->host) :
		redisConnectNonBlock(node->host, node->port);
	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while connecting to Redis")));
	if (ctx->err)
	{
		*error = pstrdup(ctx->errstr);
		redisFree(ctx);
		return false;
	}
	/* A cancel while the connect waits must not leak ctx and its socket. */
	PG_TRY();
	{
		*error = finish_connect(conn, ctx);
	}
	PG_CATCH();
	{
		redisFree(ctx);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (*error != NULL)
	{
		redisFree(ctx);
		return false;
	}
	node->ctx = ctx;
	node->session = ++Sessions;
	if (node->in == NULL)
		node->in = RedisReaderCreate(h->cxt);
	if (h->waitset)
		PgpolyWaitSetForget(h->waitset);
	return !setup || setup_session(conn, h, node, error);
}

/*
 * The connection ERROR for a Unix-domain socket node that could not be
 * reached (error: what connecting said), saying which of the usual
 * mistakes it is: no file at the path, a file that is not a socket, one
 * the database server's OS user may not use (connecting needs search
 * permission on its directories and write permission on it), or a socket
 * nobody listens on.
 */
static void
socket_error(PgpolyConnection *conn, RedisNode *node, const char *error)
{
	struct stat st;
	int			err;

	/*
	 * Why a path cannot be used tells whether a file exists on the database
	 * host and what it is: only roles that may read server files learn it.
	 */
	if (!superuser() && !has_privs_of_role(GetUserId(), ROLE_PG_READ_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("could not connect to Redis server \"%s\" through unix_socket \"%s\"",
						conn->servername, node->host),
				 errhint("Check that Redis listens on this socket; a superuser or a member of pg_read_server_files sees the reason.")));
	err = stat(node->host, &st) == 0 ? 0 : errno;
	if (err == 0 && !S_ISSOCK(st.st_mode))
		err = ENOTSOCK;
	else if (err == 0 && access(node->host, W_OK) != 0)
		err = errno;
	if (err == ENOENT || err == ENOTDIR)
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("could not connect to Redis server \"%s\": unix_socket \"%s\" does not exist",
						conn->servername, node->host),
				 errhint("Check that Redis runs with its unixsocket setting at this path, or change the server option unix_socket.")));
	if (err == ENOTSOCK)
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("could not connect to Redis server \"%s\": unix_socket \"%s\" is not a socket",
						conn->servername, node->host),
				 errhint("The server option unix_socket must name the socket file of Redis' unixsocket setting.")));
	if (err == EACCES || err == EPERM)
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("could not connect to Redis server \"%s\": permission denied for unix_socket \"%s\"",
						conn->servername, node->host),
				 errdetail("The database server's operating-system user may not use the socket: %s.",
						   strerror(err)),
				 errhint("Let that user reach the socket's directory and write to the socket (Redis' unixsocketperm), or change the server option unix_socket.")));
	ereport(ERROR,
			(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
			 errmsg("could not connect to Redis server \"%s\" through unix_socket \"%s\": %s",
					conn->servername, node->host, error),
			 errhint("Check that Redis is running and listens on this socket, or raise connect_timeout_ms.")));
}

/*
 * RedisNodeOpen, raising the connection ERROR when the node is unreachable.
 * If no node holds commands of the current request, nothing of it went
 * out: a COMMIT's flush failing here is settled (flush_settled), not in
 * doubt.
 */
static void
node_open_or_error(PgpolyConnection *conn, RedisHandle *h, RedisNode *node)
{
	char	   *error;
	bool		sent = false;

	if (RedisNodeOpen(conn, h, node, true, &error))
		return;
	for (int i = 0; i < h->nnodes; i++)
		sent |= h->nodes[i]->active;
	if (!sent)
		conn->flush_settled = true;
	name_node(conn, node);
	if (node->is_socket)
		socket_error(conn, node, error);
	ereport(ERROR,
			(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
			 errmsg("could not connect to Redis server \"%s\" at %s: %s",
					conn->servername, conn->target, error),
			 errhint("Check that Redis is running and the server's options (host and port, nodes, sentinels), or raise connect_timeout_ms.")));
}

/*
 * Open node anew (or ERROR) after Redis closed its connection: a restart
 * perhaps, which SCAN cursors of the old connection do not survive
 * (RedisAppendToNode).
 */
static void
node_open_anew(PgpolyConnection *conn, RedisHandle *h, RedisNode *node)
{
	node_open_or_error(conn, h, node);
	node->peer_reopen = node->session;
	(void) check_idle(conn, node, false);
}

/* ----------------------------------------------------------------
 *		Connections (PgpolyStore callbacks)
 * ----------------------------------------------------------------
 */

/* A new handle for server's topology, its session options from user. */
static RedisHandle *
new_handle(ForeignServer *server, UserMapping *user, RedisTopology *topo)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "pgpoly redis connection",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	List	   *umopts = user ? user->options : NIL;
	const char *password = PgpolyGetOption(umopts, "password", NULL);
	const char *username = PgpolyGetOption(umopts, "user", NULL);
	RedisHandle *h = palloc0(sizeof(RedisHandle));
	ListCell   *lc;

	h->kind = topo->kind;
	h->cxt = cxt;
	h->password = password ? pstrdup(password) : NULL;
	h->username = username ? pstrdup(username) : NULL;
	h->db = (int) PgpolyGetIntOption(server->options, "db", 0);
	h->probe = user && PgpolyMustProveCredential(user);
	h->open_group = -1;
	h->waitset = PgpolyWaitSetCreate(cxt);
	if (topo->kind != RTOPO_SINGLE)
	{
		foreach(lc, topo->addrs)
		{
			RedisAddr  *a = lfirst(lc);
			RedisAddr  *copy = palloc(sizeof(RedisAddr));

			copy->host = pstrdup(a->host);
			copy->port = a->port;
			h->seeds = lappend(h->seeds, copy);
		}
	}
	if (topo->kind == RTOPO_SENTINEL)
	{
		h->master = pstrdup(topo->master);
		h->check_ms = topo->check_ms;
	}
	if (topo->kind == RTOPO_CLUSTER)
	{
		h->slots = palloc(sizeof(int16) * REDIS_NSLOTS);
		memset(h->slots, 0xff, sizeof(int16) * REDIS_NSLOTS);	/* all -1 */
		h->req_cxt = AllocSetContextCreate(cxt, "pgpoly redis request",
										   ALLOCSET_DEFAULT_SIZES);
	}
	MemoryContextSwitchTo(old);
	return h;
}

/*
 * PgpolyStore.connect: open the connection the server's topology describes
 * (one server, Sentinel's primary, or a cluster's slot map).  Nodes of a
 * cluster are opened when first needed.
 */
static void *
redis_connect(PgpolyConnection *conn, ForeignServer *server, UserMapping *user)
{
	RedisTopology topo;
	RedisHandle *h;

	RedisTopologyFromOptions(server->options, &topo);
	h = new_handle(server, user, &topo);
	PG_TRY();
	{
		if (topo.kind == RTOPO_SINGLE)
		{
			RedisAddr  *a = topo.unix_socket ? NULL : linitial(topo.addrs);
			RedisNode  *node = a ? RedisNodeGet(h, a->host, a->port) :
				add_node(h, topo.unix_socket, 0, true);

			name_node(conn, node);
			node_open_or_error(conn, h, node);
		}
		else if (topo.kind == RTOPO_SENTINEL)
			name_node(conn, RedisSentinelPrimary(conn, h, &topo));
		else
			RedisClusterRefresh(conn, h);
	}
	PG_CATCH();
	{
		conn->busy = false;
		redis_disconnect(h);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return h;
}

/* PgpolyStore.disconnect: close every node and free the handle. */
static void
redis_disconnect(void *handle)
{
	RedisHandle *h = handle;

	RedisStreamClose(h);
	for (int i = 0; i < h->nnodes; i++)
		RedisNodeClose(h, h->nodes[i]);
	PgpolyWaitSetFree(h->waitset);
	MemoryContextDelete(h->cxt);
}

/*
 * PgpolyStore.describe: for pgpoly.connections(), one row per open node of
 * a cluster connection (NIL for one server: the connection is its row).
 */
static List *
redis_node_rows(PgpolyConnection *conn)
{
	RedisHandle *h = conn->handle;
	List	   *rows = NIL;

	if (h->kind != RTOPO_CLUSTER)
		return NIL;
	for (int i = 0; i < h->nnodes; i++)
	{
		RedisNode  *node = h->nodes[i];
		PgpolyConnRow *row;

		if (node->ctx == NULL)
			continue;
		row = palloc(sizeof(PgpolyConnRow));
		row->target = pstrdup(node->addr);
		row->requests = node->requests;
		row->errors = node->errors;
		rows = lappend(rows, row);
	}
	return rows;
}

/*
 * The connection for tbl's server and user mapping, from the cache.
 */
PgpolyConnection *
RedisGetConnection(RedisTable *tbl)
{
	return PgpolyGetConnection(&RedisStore, tbl->server, tbl->user);
}

/*
 * PgpolyStore.table_connection: the connection for a table, from the
 * table cache's resolved server and user mapping.
 */
static PgpolyConnection *
redis_table_connection(Oid relid, Oid userid)
{
	return RedisGetConnection(RedisLoadTable(relid, userid));
}

/* Whether conn is a Redis Cluster connection (opening it if needed). */
bool
RedisIsCluster(PgpolyConnection *conn)
{
	PgpolyEnsureConnected(conn);
	return ((RedisHandle *) conn->handle)->kind == RTOPO_CLUSTER;
}

/*
 * Before a scan WATCHes nkeys more keys for tbl on conn: whether it may.
 * Past tbl's watch_limit keys in one transaction there (see
 * REDIS_WATCH_LIMIT) it may not, nor may any later scan of the
 * transaction on conn: the keys watched so far stay watched, the others
 * are written as before WATCH existed (the last COMMIT wins), and a
 * WARNING says so, once per transaction.  (A bulk UPDATE keeps working as
 * documented; a small transaction, where concurrent read-modify-write
 * happens, is protected whole.)
 */
bool
RedisWatchBudget(PgpolyConnection *conn, RedisTable *tbl, int nkeys)
{
	RedisHandle *h = conn->handle;
	int64		total = (h->watching ? h->nwatched : 0) + nkeys;

	if (h->capped_lxid == MyProc->lxid)
		return false;
	if (total > tbl->watch_limit)
	{
		h->capped_lxid = MyProc->lxid;
		ereport(WARNING,
				(errcode(ERRCODE_WARNING),
				 errmsg("UPDATE, DELETE or SELECT FOR UPDATE/SHARE of foreign table \"%s\" reads more keys than its watch_limit (%d) lets this transaction WATCH on Redis server \"%s\"",
						tbl->relname, tbl->watch_limit, conn->servername),
				 errdetail("The keys watched so far stay watched (COMMIT fails with 40001 if another client changed one); a change another client makes to the others before COMMIT is overwritten (the last COMMIT wins). Redis checks each watched key against all the others, so many keys would block the server."),
				 errhint("Update fewer keys per transaction, or raise the table's watch_limit option; watch_limit 0 turns WATCH, and this warning, off.")));
		return false;
	}
	h->nwatched = total;
	if (!h->watching)
		strlcpy(h->watch_relname, tbl->relname, NAMEDATALEN);
	return true;
}

/*
 * The request being built on conn appended WATCH commands (a scan of an
 * UPDATE's or DELETE's target, RedisScanWatch): its active nodes now hold
 * WATCHes of this transaction, which its COMMIT's EXEC relies on, and so
 * does each node the cluster's MOVED or ASK sends a command of the request
 * to while it runs: all are released at its end (UNWATCH).  They are made
 * at subtransaction nesting level level (the scan's, RedisScanWatch): a
 * rollback of that level releases them (PgpolyConnectionsAtSubEnd).  If
 * the transaction watched keys on an earlier handle of conn (closed since:
 * pgpoly.disconnect(), a broken request), those WATCHes are lost.
 */
void
RedisNoteWatch(PgpolyConnection *conn, int level)
{
	RedisHandle *h = conn->handle;

	if (conn->watching && !h->watching)
		h->watch_lost = true;
	conn->watch_level = conn->watching ? Min(conn->watch_level, level) : level;
	conn->watching = h->watching = true;
	h->req_watches = true;		/* and those a redirect adds (activate) */
	for (int i = 0; i < h->nnodes; i++)
		if (h->nodes[i]->active)
			h->nodes[i]->watched = true;
}

/*
 * Before the COMMIT's MULTI/EXEC is sent (its commands appended, so a
 * Sentinel recheck already ran): ERROR 40001 if a node that held this
 * transaction's WATCHes was closed since they were sent (a failover, a
 * timeout, pgpoly.disconnect()), since the EXEC could then overwrite a key
 * another client changed after the transaction read it.  Nothing is sent:
 * the request is left open, so the connection is closed at abort.
 */
void
RedisCheckWatches(PgpolyConnection *conn)
{
	RedisHandle *h = conn->handle;

	if (!conn->watching || (h->watching && !h->watch_lost))
		return;
	conn->flush_settled = true; /* nothing was sent */
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not serialize the writes of this transaction on Redis server \"%s\"",
					conn->servername),
			 errdetail("The connection that watched the keys the transaction's UPDATE, DELETE or SELECT FOR UPDATE/SHARE read was closed before COMMIT (a failover, an error or pgpoly.disconnect()), so Redis could not tell whether another client changed them; nothing was written."),
			 errhint("The transaction can be retried.")));
}

/*
 * The EXEC (or UNWATCH) of command index of the last exchange was
 * answered: whatever the answer, Redis cleared the WATCHes of the
 * connection that ran it.
 */
void
RedisExecAnswered(PgpolyConnection *conn, int index)
{
	RedisHandle *h = conn->handle;

	if (h->kind != RTOPO_CLUSTER || index < 0 || index >= h->ncmds)
		h->nodes[0]->watched = false;
	else
		h->nodes[h->cmds[index].node]->watched = false;
}

/*
 * Cluster: how many nodes hold WATCHes of the transaction (what
 * RedisAppendUnwatch will append); 0 on one server, whose EXEC clears them.
 */
int
RedisNodesWatching(PgpolyConnection *conn)
{
	RedisHandle *h = conn->handle;
	int			n = 0;

	if (!conn->watching || h->kind != RTOPO_CLUSTER)
		return 0;
	for (int i = 0; i < h->nnodes; i++)
		n += h->nodes[i]->watched;
	return n;
}

/*
 * Cluster: append UNWATCH for each node holding WATCHes of the
 * transaction, after the COMMIT's blocks (so after each node's own): a
 * node may hold some and run no block.  Their replies are
 * RedisExecAnswered's like EXEC's.
 */
void
RedisAppendUnwatch(PgpolyConnection *conn)
{
	RedisHandle *h = conn->handle;
	const char *argv[1] = {"UNWATCH"};

	if (!conn->watching || h->kind != RTOPO_CLUSTER)
		return;
	for (int i = 0; i < h->nnodes; i++)
		if (h->nodes[i]->watched)
			RedisClusterRoute(conn, h, h->ncmds, 1, argv, NULL, h->nodes[i]);
}

/* What check_reads' exchange found. */
typedef struct CheckReplies
{
	PgpolyConnection *conn;
	bool		aborted;		/* an EXEC answered nil */
} CheckReplies;

/* A reply of check_reads' exchange: MULTI's OK, then EXEC's [] or nil. */
static bool
check_reply(redisReply *r, int index, void *arg)
{
	CheckReplies *cr = arg;

	if (index % 2 == 0)
	{
		if (r->type != REDIS_REPLY_STATUS)
			RedisProtocolError(cr->conn, "MULTI", r, NULL);
		return false;
	}
	RedisExecAnswered(cr->conn, index);
	if (r->type == REDIS_REPLY_NIL)
		cr->aborted = true;
	else if (r->type != REDIS_REPLY_ARRAY || r->elements != 0)
		RedisProtocolError(cr->conn, "EXEC", r, "not an empty array");
	return false;
}

/*
 * PgpolyStore.check_reads: conn holds WATCHes of the transaction (keys an
 * UPDATE, DELETE or SELECT FOR UPDATE read) and writes nothing, while
 * another Redis connection of the transaction writes (another user
 * mapping, say a view owner's, or another server naming the same Redis):
 * what was read here may be written there.  Each node holding WATCHes
 * runs an empty MULTI/EXEC, which Redis aborts if one of them changed:
 * then ERROR 40001, before any write is sent.  Either way the WATCHes are
 * gone, and the connection is kept.
 */
static void
redis_check_reads(PgpolyConnection *conn)
{
	RedisHandle *h = begin_request(conn);
	const char *argv[1];
	CheckReplies cr = {conn, false};
	char	   *role = GetUserNameFromId(conn->userid, true);
	int			n = 0;

	for (int i = 0; i < h->nnodes; i++)
	{
		if (!h->nodes[i]->watched)
			continue;
		for (int c = 0; c < 2; c++, n++)
		{
			argv[0] = c == 0 ? "MULTI" : "EXEC";
			if (h->kind == RTOPO_CLUSTER)
				RedisClusterRoute(conn, h, h->ncmds, 1, argv, NULL, h->nodes[i]);
			else
				RedisAppendArgv(conn, 1, argv, NULL);
		}
	}
	RedisCheckWatches(conn);
	if (n > 0)
		RedisExchange(conn, n, check_reply, &cr);
	else
		PgpolyEndRequest(conn);	/* nothing to ask */
	if (cr.aborted)
	{
		conn->flush_settled = true; /* nothing was written */
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize the reads of foreign table \"%s\" on Redis server \"%s\"",
						h->watch_relname, conn->servername),
				 errdetail("Another client changed a key that this transaction's UPDATE, DELETE or SELECT FOR UPDATE/SHARE read through the connection of role \"%s\", which writes nothing, while the transaction writes to Redis through another connection, so Redis aborted the check (WATCH).",
						   role ? role : "?"),
				 errhint("Nothing was written; the transaction can be retried.")));
	}
	RedisWatchesSettled(conn);
}

/*
 * After the COMMIT's MULTI/EXEC blocks ran (RedisExecAnswered): if no node
 * holds WATCHes of the transaction any more, the connection needs no
 * closing at its end (else, say after an UNWATCH failed, it is).
 */
void
RedisWatchesSettled(PgpolyConnection *conn)
{
	RedisHandle *h = conn->handle;

	if (!conn->watching || h->watch_lost)
		return;
	for (int i = 0; i < h->nnodes; i++)
		if (h->nodes[i]->watched)
			return;
	conn->watching = h->watching = false;
	h->nwatched = 0;
}

/*
 * PgpolyStore.end_session: the transaction (or the subtransaction that
 * made them all) ended with WATCHes on conn that no EXEC cleared: a
 * ROLLBACK, or a COMMIT that wrote nothing through conn.  Each node
 * holding some sends UNWATCH ahead of its next command (activate), in the
 * same round trip, so no later EXEC can be aborted by them and the
 * connection is kept.  No I/O here: this runs in an abort.
 */
static bool
redis_end_session(PgpolyConnection *conn)
{
	RedisHandle *h = conn->handle;

	for (int i = 0; i < h->nnodes; i++)
	{
		RedisNode  *node = h->nodes[i];

		if (node->watched && node->ctx)
			node->stale_watch = true;
		node->watched = false;
	}
	h->watching = false;
	h->watch_lost = false;
	h->nwatched = 0;
	return true;
}

/* ----------------------------------------------------------------
 *		Requests
 * ----------------------------------------------------------------
 */

static void write_some(PgpolyConnection *conn, RedisNode *node);
static void settle(PgpolyConnection *conn);

/*
 * Start a request on conn unless one is open: reconnect a closed or broken
 * handle, bring a cluster's slot map up to date, and forget the last
 * request's per-node state.  Returns the handle.
 */
static RedisHandle *
begin_request(PgpolyConnection *conn)
{
	RedisHandle *h;

	if (conn->busy)
		return conn->handle;
	PgpolyEnsureConnected(conn);
	settle(conn);
	h = conn->handle;
	if (h->kind == RTOPO_CLUSTER && h->map_stale)
		RedisClusterRefresh(conn, h);
	PgpolyBeginRequest(conn);
	if (h->kind == RTOPO_SENTINEL)
	{
		/* an ERROR here leaves conn busy: the connection is then closed */
		RedisNode  *moved = RedisSentinelRecheck(conn, h);

		if (moved)
			name_node(conn, moved);
	}
	for (int i = 0; i < h->nnodes; i++)
	{
		RedisNode  *node = h->nodes[i];

		node->active = false;
		node->readable = false;
		node->nqueue = node->nread = 0;
		node->failure = NULL;
		out_reset(node);
	}
	h->req_watches = false;
	if (h->kind == RTOPO_CLUSTER)
	{
		MemoryContextReset(h->req_cxt);
		h->resp.data = NULL;
		h->cmds = NULL;
		h->ncmds = h->maxcmds = 0;
		h->open_group = -1;
	}
	return h;
}

/*
 * Make node part of the running request: open it if needed, and count the
 * request (and, until it ends well, an error) against it.
 */
static void
activate(PgpolyConnection *conn, RedisHandle *h, RedisNode *node)
{
	if (node->active)
		return;

	/*
	 * A connection Redis closed while idle is opened anew, as postgres_fdw
	 * does with a broken cached connection, unless it held WATCHes of this
	 * transaction: those are gone with it (RedisNodeClose notes that), and
	 * a write must not go out unwatched.  Nothing else of a transaction
	 * lives on a connection between requests (buffered writes are sent in
	 * one request at COMMIT; the write stream has its own connection).
	 */
	if (node->ctx != NULL && !check_idle(conn, node, !node->watched))
	{
		elog(DEBUG1, "pgpoly: Redis server \"%s\" at %s closed the idle connection; reconnecting",
			 conn->servername, node->addr);
		RedisNodeClose(h, node);
		node_open_anew(conn, h, node);
	}
	if (node->ctx == NULL)
	{
		node_open_or_error(conn, h, node);
		(void) check_idle(conn, node, false);
	}
	node->active = true;
	node->requests++;
	node->errors++;				/* undone when the request ends well */
	/* a WATCH answered MOVED or ASK is sent again here, and held here */
	if (h->req_watches)
		node->watched = true;
	if (node->stale_watch)
	{
		static const char unwatch[] = "*1\r\n$7\r\nUNWATCH\r\n";

		/* the WATCHes of an ended transaction go first (end_session) */
		out_add(node, unwatch, sizeof(unwatch) - 1, true);
		node->stale_watch = false;
		node->unwatch_sent = true;
	}
}

/*
 * Queue ncmds commands (len bytes of RESP: copied, or with copy false
 * referenced; see out_add) for node, and on a cluster record what the reply
 * of the one command will answer: entry, a command index or RQ_ASKING (one
 * server needs no record, its replies come in order).
 */
static void
node_send(PgpolyConnection *conn, RedisHandle *h, RedisNode *node, int entry,
		  const char *resp, size_t len, int ncmds, bool copy)
{
	activate(conn, h, node);
	out_add(node, resp, len, copy);
	if (h->kind == RTOPO_CLUSTER)
	{
		Assert(ncmds == 1);
		if (node->nqueue == node->maxqueue)
		{
			node->maxqueue = Max(64, node->maxqueue * 2);
			node->queue = node->queue ?
				repalloc_huge(node->queue, sizeof(int) * node->maxqueue) :
				MemoryContextAllocExtended(h->cxt, sizeof(int) * node->maxqueue,
										   MCXT_ALLOC_HUGE);
		}
		node->queue[node->nqueue] = entry;
	}
	node->nqueue += ncmds;
}

/*
 * Queue one command (len bytes of RESP) for node; copy false: the bytes
 * stay valid and unchanged until the exchange ends.  See node_send.
 */
void
RedisNodeSend(PgpolyConnection *conn, RedisHandle *h, RedisNode *node,
			  int entry, const char *resp, size_t len, bool copy)
{
	node_send(conn, h, node, entry, resp, len, 1, copy);
}

/*
 * Append one command to the request (lens NULL: the argv are C strings),
 * starting a request if none is open.  The RESP encoding is written here,
 * binary-safe with explicit lengths, and handed to hiredis as a
 * preformatted command: this avoids hiredis' per-argument format parsing.
 * On a cluster the command goes to the node serving its key's slot
 * (argv[1]; MULTI/EXEC follow the commands they wrap).
 */
void
RedisAppendArgv(PgpolyConnection *conn, int argc, const char **argv,
				const size_t *lens)
{
	static StringInfo buf = NULL;
	RedisHandle *h = begin_request(conn);

	if (h->kind == RTOPO_CLUSTER)
	{
		RedisClusterRoute(conn, h, h->ncmds, argc, argv, lens, NULL);
		return;
	}
	if (buf == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		buf = makeStringInfo();
		MemoryContextSwitchTo(old);
	}
	resetStringInfo(buf);
	RedisEncodeCommand(buf, argc, argv, lens);
	RedisNodeSend(conn, h, h->nodes[0], 0, buf->data, buf->len, true);
}

/* Length of the one RESP command (our own encoding) that starts resp. */
static size_t
command_length(const char *resp, size_t len)
{
	const char *p = resp;
	const char *end = resp + len;
	long		argc;
	char	   *next;

	if (len == 0 || *p != '*')
		elog(ERROR, "malformed RESP command");
	argc = strtol(p + 1, &next, 10);
	p = next + 2;
	while (argc-- > 0 && p < end && *p == '$')
	{
		long		n = strtol(p + 1, &next, 10);

		p = next + 2 + n + 2;
	}
	if (argc >= 0 || p > end)
		elog(ERROR, "malformed RESP command");
	return p - resp;
}

/*
 * Append ncmds commands already encoded as RESP: the len bytes at resp,
 * which the caller keeps unchanged until the exchange ends (they are sent
 * from where they are, never copied).  slot is the hash slot of the key
 * all of them name: a cluster routes each command by it.
 */
void
RedisAppendEncoded(PgpolyConnection *conn, const char *resp, size_t len,
				   int ncmds, int slot)
{
	RedisHandle *h = begin_request(conn);

	if (h->kind != RTOPO_CLUSTER)
	{
		node_send(conn, h, h->nodes[0], 0, resp, len, ncmds, false);
		return;
	}
	for (int i = 0; i < ncmds; i++)
	{
		size_t		n = command_length(resp, len);

		RedisClusterRouteEncoded(conn, h, h->ncmds, resp, n, slot);
		resp += n;
		len -= n;
	}
}

/*
 * Append a command that names no key (SCAN, DBSIZE ...) for the node at
 * addr, one of RedisPrimaryNodes(); on one server, addr is that server.
 * Returns the node's peer_reopen: the number of the last connection it
 * opened because Redis had closed the one before, perhaps at a restart
 * (0: none).  A larger one than when a SCAN walk began means its cursor
 * may be another Redis process's.  (A connection this backend closed
 * itself, by an ERROR or pgpoly.disconnect(), is not counted: the cursor
 * goes on, as it did before Redis-closed connections were reopened.)
 */
uint64
RedisAppendToNode(PgpolyConnection *conn, const char *addr, int argc,
				  const char **argv, const size_t *lens)
{
	RedisHandle *h = begin_request(conn);
	RedisAddr	a;
	RedisNode  *node;

	if (h->kind != RTOPO_CLUSTER)
	{
		/* a SCAN cursor of the primary Sentinel replaced means nothing here */
		if (strcmp(addr, h->nodes[0]->addr) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("the primary of Redis server \"%s\" moved from %s to %s during the statement",
							conn->servername, addr, h->nodes[0]->addr),
					 errdetail("A SCAN cursor of one node cannot be continued on another."),
					 errhint("Run the statement again.")));
		RedisAppendArgv(conn, argc, argv, lens);
		return h->nodes[0]->peer_reopen;
	}
	if (!RedisParseAddr(addr, strlen(addr), &a))
		elog(ERROR, "bad Redis node address \"%s\"", addr);
	node = RedisNodeGet(h, a.host, a.port);
	RedisClusterRoute(conn, h, h->ncmds, argc, argv, lens, node);
	return node->peer_reopen;
}

/*
 * The addresses of the nodes whose keys make up the data: a cluster's
 * primaries (the slot map brought up to date first; ERROR unless they serve
 * every slot, so that a scan never misses part of the data), or the one
 * server.
 * A palloc'd list of palloc'd strings, in the current memory context.
 */
List *
RedisPrimaryNodes(PgpolyConnection *conn)
{
	RedisHandle *h;
	List	   *result = NIL;

	PgpolyEnsureConnected(conn);
	settle(conn);
	h = conn->handle;
	if (h->kind == RTOPO_CLUSTER && h->map_stale && !conn->busy)
		RedisClusterRefresh(conn, h);
	if (h->kind != RTOPO_CLUSTER)
		return list_make1(pstrdup(h->nodes[0]->addr));
	RedisClusterCheckCoverage(conn, h);
	for (int i = 0; i < h->nnodes; i++)
		if (h->nodes[i]->primary)
			result = lappend(result, pstrdup(h->nodes[i]->addr));
	return result;
}

/*
 * The address of the node that answered command index of the last exchange
 * (for messages about writes); the server's on one server.
 */
const char *
RedisReplyNode(PgpolyConnection *conn, int index)
{
	RedisHandle *h = conn->handle;

	if (h->kind != RTOPO_CLUSTER || index < 0 || index >= h->ncmds)
		return h->nodes[0]->addr;
	return h->nodes[h->cmds[index].node]->addr;
}

/*
 * Add the nodes of the last exchange to trips (memory: trips' context).
 * Only a cluster's are counted: EXPLAIN shows them for clusters alone, and
 * a key lookup should not pay for them at every execution.
 */
void
RedisCountTrips(PgpolyConnection *conn, RedisTrips *trips)
{
	RedisHandle *h = conn->handle;
	MemoryContext cxt = GetMemoryChunkContext(trips);

	if (h->kind != RTOPO_CLUSTER)
		return;
	for (int i = 0; i < h->nnodes; i++)
	{
		RedisNode  *node = h->nodes[i];
		int			j;

		if (!node->active)
			continue;
		for (j = 0; j < trips->n; j++)
			if (strcmp(trips->addr[j], node->addr) == 0)
				break;
		if (j == trips->n)
		{
			trips->addr = trips->addr ?
				repalloc(trips->addr, sizeof(char *) * (j + 1)) :
				MemoryContextAlloc(cxt, sizeof(char *));
			trips->count = trips->count ?
				repalloc(trips->count, sizeof(int64) * (j + 1)) :
				MemoryContextAlloc(cxt, sizeof(int64));
			trips->addr[j] = MemoryContextStrdup(cxt, node->addr);
			trips->count[j] = 0;
			trips->n++;
		}
		trips->count[j]++;
	}
}

/* "host:port n, ..." of trips, for EXPLAIN. */
char *
RedisTripsText(RedisTrips *trips)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < trips->n; i++)
		appendStringInfo(&buf, "%s%s %lld", i ? ", " : "", trips->addr[i],
						 (long long) trips->count[i]);
	return buf.data;
}

/* ----------------------------------------------------------------
 *		Exchanges
 * ----------------------------------------------------------------
 */

/*
 * A node failed in the middle of an exchange.  One server: the ERROR now.
 * A cluster: record it, stop using the node, and let the other nodes finish
 * (so that the ERROR can say which nodes answered everything); the slot map
 * is asked again before the next request.
 */
static void
node_failed(PgpolyConnection *conn, RedisNode *node, const char *what,
			const char *detail)
{
	RedisHandle *h = conn->handle;

	if (h->kind != RTOPO_CLUSTER)
		io_error(conn, node, what, detail);
	node->failure = detail ? psprintf("%s: %s", what, detail) : pstrdup(what);
	h->map_stale = true;
}

/* Write what node's output holds, without blocking (out_write). */
static void
write_some(PgpolyConnection *conn, RedisNode *node)
{
	char	   *failure;

	if (node->failure == NULL && (failure = out_write(node)) != NULL)
		node_failed(conn, node, "could not send the request", failure);
}

/* Whether node still owes replies (or output) in this exchange. */
static bool
node_waiting(RedisNode *node)
{
	return node->active && node->failure == NULL &&
		(node->nread < node->nqueue || out_pending(node));
}

/*
 * Read what node's socket holds (node_read); a failure fails the node.
 * Remembers whether bytes came: then more may follow without a wait.
 */
static bool
read_some(PgpolyConnection *conn, RedisNode *node)
{
	char	   *failure = node_read(conn, node, &node->readable);

	if (failure)
		node_failed(conn, node, failure, NULL);
	return node->readable;
}

/*
 * Read again, without waiting, from the nodes owing replies whose last read
 * brought bytes (a round's replies arrive in many segments): true if any
 * brought more.  Saves a wait (two system calls) per segment.
 */
static bool
read_again(RedisExchangeState *ex)
{
	RedisHandle *h = ex->h;
	bool		got = false;

	for (int i = 0; i < h->nnodes; i++)
	{
		RedisNode  *node = h->nodes[i];

		if (node->readable && node_waiting(node) && node->nread < node->nqueue &&
			read_some(ex->conn, node))
			got = true;
	}
	return got;
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
 * A replica answered READONLY: behind Sentinel, the primary moved.  The
 * statement fails (the connection is then closed), and the next one asks
 * the sentinels again.
 */
static void
check_readonly(PgpolyConnection *conn, RedisHandle *h, RedisNode *node,
			   redisReply *reply)
{
	if (h->kind != RTOPO_SENTINEL || reply->type != REDIS_REPLY_ERROR ||
		strncmp(reply->str, "READONLY", 8) != 0)
		return;
	name_node(conn, node);
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("Redis server \"%s\" at %s is no longer the primary",
					conn->servername, conn->target),
			 errdetail("Redis answered: %s", PgpolyPrintable(reply->str, reply->len, 200)),
			 errhint("Sentinel moved the primary; the next statement asks the sentinels again.")));
}

/*
 * Take out the reply to the UNWATCH that activate() sent node ahead of the
 * request's commands: false while it has not arrived.  Anything but OK
 * breaks the connection (08P01).
 */
static bool
take_unwatch_reply(PgpolyConnection *conn, RedisNode *node)
{
	redisReply *reply = next_reply(conn, node, false);

	if (reply == NULL)
		return false;
	node->unwatch_sent = false;
	/* another status (QUEUED: the connection is in a MULTI) is no better */
	if (reply->type != REDIS_REPLY_STATUS || reply->len != 2 ||
		memcmp(reply->str, "OK", 2) != 0)
	{
		name_node(conn, node);
		RedisProtocolError(conn, "UNWATCH", reply, NULL);
	}
	reply_free(reply);
	return true;
}

/* Pull every complete reply node has buffered; true if there was one. */
static bool
drain_node(RedisExchangeState *ex, RedisNode *node, RedisReplyHandler handler,
		   void *arg)
{
	PgpolyConnection *conn = ex->conn;
	RedisHandle *h = ex->h;
	bool		progress = false;

	if (node->unwatch_sent && node->failure == NULL)
	{
		if (!take_unwatch_reply(conn, node))
			return false;
		progress = true;
	}
	while (node->failure == NULL && node->nread < node->nqueue)
	{
		redisReply *reply = next_reply(conn, node, ex->flat);

		if (reply == NULL)
			break;
		progress = true;
		check_readonly(conn, h, node, reply);
		if (h->kind == RTOPO_CLUSTER)
			RedisClusterReply(ex, node, node->queue[node->nread++], reply);
		else
		{
			node->nread++;
			deliver(conn, reply, ex->first + ex->next++, handler, arg);
		}
	}
	return progress;
}

/* Deliver the replies that are final, in command order (cluster). */
static void
deliver_ready(RedisExchangeState *ex, RedisReplyHandler handler, void *arg)
{
	RedisHandle *h = ex->h;

	while (ex->next < ex->n && h->cmds[ex->next].final)
	{
		redisReply *r = ex->held[ex->next];
		int			node = h->cmds[ex->next].node;

		ex->held[ex->next] = NULL;
		if (node != ex->named)	/* messages of the handler name the node */
		{
			name_node(ex->conn, h->nodes[node]);
			ex->named = node;
		}
		deliver(ex->conn, r, ex->next++, handler, arg);
	}
}

/*
 * Nothing more can arrive and some replies are missing: raise the first
 * node failure, saying which nodes answered everything.
 */
static void
raise_failure(RedisExchangeState *ex)
{
	RedisHandle *h = ex->h;
	StringInfoData done;
	RedisNode  *failed = NULL;

	initStringInfo(&done);
	for (int i = 0; i < h->nnodes; i++)
	{
		RedisNode  *node = h->nodes[i];

		if (!node->active)
			continue;
		if (node->failure && failed == NULL)
			failed = node;
		else if (!node->failure && node->nread == node->nqueue)
			appendStringInfo(&done, "%s%s", done.len ? ", " : "", node->addr);
	}
	if (failed == NULL)
		elog(ERROR, "Redis exchange on server \"%s\" lost %d replies",
			 ex->conn->servername, ex->n - ex->next);
	name_node(ex->conn, failed);
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("Redis server \"%s\" at %s: %s", ex->conn->servername,
					ex->conn->target, failed->failure),
			 done.len ? errdetail("The other nodes of the request answered all their commands: %s.", done.data) :
			 errdetail("No other node of the request answered all its commands.")));
}

/* Raise the timeout ERROR of an exchange, naming a node still owing replies. */
static void
timeout_error(RedisExchangeState *ex)
{
	RedisHandle *h = ex->h;

	for (int i = 0; i < h->nnodes; i++)
		if (node_waiting(h->nodes[i]))
		{
			name_node(ex->conn, h->nodes[i]);
			break;
		}
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("Redis server \"%s\" at %s did not answer within %d ms",
					ex->conn->servername, ex->conn->target, ex->conn->timeout_ms),
			 ex->retried ? errdetail("Commands were being sent again after the cluster answered: %s",
									 ex->retried) : 0,
			 errhint("Raise the server option timeout_ms, or check the server's load.")));
}

/* Nodes whose wait arrays fit on the stack (a single server: one). */
#define WAIT_FEW	8

/*
 * Wait for every node that owes replies or output (and for the next retry
 * of a cluster, if any is due before); then read and write what is ready.
 */
static void
wait_nodes(RedisExchangeState *ex, TimestampTz next_retry)
{
	RedisHandle *h = ex->h;
	bool		few = h->nnodes <= WAIT_FEW;
	pgsocket	socks_few[WAIT_FEW];
	int			events_few[WAIT_FEW];
	int			ready_few[WAIT_FEW];
	RedisNode  *which_few[WAIT_FEW];
	pgsocket   *socks = few ? socks_few : palloc(sizeof(pgsocket) * h->nnodes);
	int		   *events = few ? events_few : palloc(sizeof(int) * h->nnodes);
	int		   *ready = few ? ready_few : palloc(sizeof(int) * h->nnodes);
	RedisNode **which = few ? which_few : palloc(sizeof(RedisNode *) * h->nnodes);
	long		max_ms = -1;
	int			n = 0;
	int			rc;

	for (int i = 0; i < h->nnodes; i++)
	{
		RedisNode  *node = h->nodes[i];

		if (!node_waiting(node))
			continue;
		socks[n] = node->ctx->fd;
		events[n] = (node->nread < node->nqueue ? PGPOLY_WAIT_READ : 0) |
			(out_pending(node) ? PGPOLY_WAIT_WRITE : 0);
		which[n++] = node;
	}
	if (n == 0 && next_retry == DT_NOEND)
		raise_failure(ex);
	if (next_retry != DT_NOEND)
		max_ms = Max(0, (long) ((next_retry - GetCurrentTimestamp()) / 1000));
	rc = PgpolyWaitSetWait(h->waitset, n, socks, events, ex->deadline, max_ms, ready);
	if (rc < 0)
		timeout_error(ex);
	for (int i = 0; i < n; i++)
	{
		if (ready[i] & PGPOLY_WAIT_WRITE)
			write_some(ex->conn, which[i]);
		if ((ready[i] & PGPOLY_WAIT_READ) && which[i]->failure == NULL)
			read_some(ex->conn, which[i]);
	}
	if (!few)
	{
		pfree(socks);
		pfree(events);
		pfree(ready);
		pfree(which);
	}
}

/*
 * End the request after a complete exchange: nothing may stay unsent (the
 * next request would inherit it), and every node that took part gets its
 * request counted as one that ended well.
 */
static void
end_request(RedisExchangeState *ex)
{
	RedisHandle *h = ex->h;

	for (int i = 0; i < h->nnodes; i++)
	{
		RedisNode  *node = h->nodes[i];

		if (!node->active)
			continue;
		/* More than was asked for is a reply to no command: the stream is off. */
		if (RedisReaderPending(node->in) > 0)
		{
			name_node(ex->conn, node);
			RedisProtocolError(ex->conn, "no command", NULL,
							   "more replies than commands");
		}
		while (out_pending(node))
		{
			if (PgpolyWaitSocket(node->ctx->fd, PGPOLY_WAIT_WRITE, ex->deadline, -1) < 0)
				io_error(ex->conn, node, "timed out sending the request", NULL);
			write_some(ex->conn, node);
			if (node->failure)
				io_error(ex->conn, node, node->failure, NULL);
		}
		RedisReaderTrim(node->in);
		node->errors--;
	}
	Budget.h = NULL;
	PgpolyEndRequest(ex->conn);
}

/*
 * Run the exchange of the open request, which owes nreplies replies: send
 * what is still unsent, read replies and hand each to handler (flat: as
 * RedisSend's), its index offset by first (those before were read
 * earlier), until at least stop of them came.  If all came, ends the request; else (one server) the
 * request stays open, and used (the ReplyBudget of the replies kept)
 * goes on counting from where the earlier reads left it.  Returns the
 * replies read.
 */
static int
run_exchange_part(PgpolyConnection *conn, int nreplies, int stop, int first,
				  Size used, RedisReplyHandler handler, void *arg, bool flat)
{
	RedisHandle *h = conn->handle;
	RedisExchangeState ex;

	memset(&ex, 0, sizeof(ex));
	ex.named = -1;
	ex.conn = conn;
	ex.h = h;
	ex.n = nreplies;
	ex.first = first;
	ex.flat = flat && h->kind != RTOPO_CLUSTER;
	ex.deadline = PgpolyDeadline(conn->timeout_ms);
	budget_begin(CurrentMemoryContext, h, NULL);
	Budget.used = used;
	if (h->kind == RTOPO_CLUSTER)
	{
		if (nreplies != h->ncmds || h->open_group >= 0 || stop != nreplies)
			elog(ERROR, "Redis exchange expects %d replies for %d commands",
				 nreplies, h->ncmds);
		ex.held = palloc0(sizeof(redisReply *) * Max(nreplies, 1));
	}
	for (int i = 0; i < h->nnodes; i++)
		if (h->nodes[i]->active)
			write_some(conn, h->nodes[i]);	/* usually all of it, without a wait */
	while (ex.next < stop)
	{
		bool		progress = false;
		TimestampTz next_retry = DT_NOEND;

		for (int i = 0; i < h->nnodes; i++)
			if (h->nodes[i]->active && drain_node(&ex, h->nodes[i], handler, arg))
				progress = true;
		if (h->kind == RTOPO_CLUSTER)
		{
			next_retry = RedisClusterRetries(&ex);
			deliver_ready(&ex, handler, arg);
		}
		if (ex.next >= stop)
			break;
		if (!progress && !read_again(&ex))
			wait_nodes(&ex, next_retry);
	}
	if (ex.next < ex.n)
	{
		/* the rest is read later: the request stays open, not busy */
		h->pend.used = Budget.used;
		Budget.h = NULL;
		PgpolyEndRequest(conn);
		return ex.next;
	}
	end_request(&ex);
	return ex.next;
}

/*
 * Run the exchange of the open request: send what is still unsent, read
 * nreplies replies and hand each to handler (see RedisExchange).  Ends the
 * request on success.
 */
static void
run_exchange(PgpolyConnection *conn, int nreplies, RedisReplyHandler handler,
			 void *arg)
{
	(void) run_exchange_part(conn, nreplies, nreplies, 0, 0, handler, arg, false);
}

/*
 * Send the appended commands and read nreplies replies (one per command),
 * handing each to handler(reply, index, arg) in the order the commands were
 * appended (handler NULL: error replies raise an ERROR).  Every node gets
 * its commands before any reply is read, and all are waited on at once.
 * Replies are allocated in the caller's memory context; a handler returning
 * true keeps its reply there.  On a cluster, MOVED, ASK, TRYAGAIN and
 * CLUSTERDOWN replies never reach the handler: the commands they concern
 * are sent again (redis_cluster.c).  The whole exchange is bounded by the
 * server's timeout_ms and interruptible.  Ends the request on success.
 */
void
RedisExchange(PgpolyConnection *conn, int nreplies, RedisReplyHandler handler,
			  void *arg)
{
	if (!conn->busy)			/* nothing was appended */
	{
		Assert(nreplies == 0);
		return;
	}
	run_exchange(conn, nreplies, handler, arg);
}

/* ----------------------------------------------------------------
 *		Requests whose replies are read later
 * ----------------------------------------------------------------
 */

/* Who waits for the replies of a sent request (RedisSend). */
typedef struct PendingOwner
{
	MemoryContextCallback cb;
	PgpolyConnection *conn;
	uint64		ticket;
} PendingOwner;

/* Handler of replies nobody waits for any more. */
static bool
discard_reply(redisReply *reply, int index, void *arg)
{
	return false;
}

/*
 * Memory context callback: the memory the replies of a sent request were to
 * be built in is going away (its scan ended, or an error aborted it).  The
 * replies are still owed by Redis: they will be read and dropped before the
 * connection's next request.
 */
static void
orphan_pending(void *arg)
{
	PendingOwner *o = arg;
	RedisHandle *h = o->conn->handle;

	if (h != NULL && h->pend.ticket == o->ticket)
	{
		h->pend.handler = discard_reply;
		h->pend.arg = NULL;
		h->pend.cxt = NULL;
	}
}

/*
 * Read the replies of the request sent and not yet received, delivering
 * them to whoever sent it (or dropping them if it is gone): all of them,
 * so that a new request can start, or (one server) at least upto of them,
 * the request then staying open for the rest.  ERROR as RedisExchange.
 */
static void
finish_pending(PgpolyConnection *conn, RedisHandle *h, int upto)
{
	RedisPendingReplies p = h->pend;
	MemoryContext old = CurrentMemoryContext;
	int			got;

	h->pend.ticket = 0;
	conn->busy = true;			/* the request goes on ... */
	conn->errors++;				/* ... and counts as failed unless it ends well */
	if (p.cxt)
		MemoryContextSwitchTo(p.cxt);
	got = run_exchange_part(conn, p.n - p.done, Min(upto, p.n - p.done), p.done,
							p.used, p.handler, p.arg, p.flat);
	MemoryContextSwitchTo(old);
	if (p.done + got < p.n)
	{
		/* handler and context may have changed meanwhile (orphan_pending) */
		h->pend.ticket = p.ticket;
		h->pend.done = p.done + got;
	}
}

/*
 * Read out of the way the replies of a sent request nobody waits for any
 * more (orphan_pending: a join stopped by LIMIT, a cursor closed).  If the
 * connection broke before they came (Redis restarted, CLIENT KILL), they
 * are lost with it and nothing else is: its nodes are closed, and the
 * caller's request opens them anew (node_activate) rather than failing a
 * statement that never asked for those replies.  A node's WATCHes lost so
 * are noted (RedisNodeClose).  Any other error is raised.
 */
static void
drop_orphan(PgpolyConnection *conn, RedisHandle *h)
{
	MemoryContext cxt = CurrentMemoryContext;

	/* an ERROR zeroes them (errfinish); the caller may hold interrupts */
	int			holdoff = InterruptHoldoffCount;
	int			cancel_holdoff = QueryCancelHoldoffCount;

	PG_TRY();
	{
		finish_pending(conn, h, INT_MAX);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode != ERRCODE_CONNECTION_FAILURE)
			PG_RE_THROW();
		elog(DEBUG1, "pgpoly: replies owed to an ended scan were lost: %s; reconnecting",
			 edata->message);
		FlushErrorState();
		FreeErrorData(edata);
		InterruptHoldoffCount = holdoff;
		QueryCancelHoldoffCount = cancel_holdoff;
		for (int i = 0; i < h->nnodes; i++)
			if (h->nodes[i]->active)
				RedisNodeClose(h, h->nodes[i]);
		h->pend.ticket = 0;
		Budget.h = NULL;
		conn->busy = false;		/* the failed request stays counted */
	}
	PG_END_TRY();
}

/* Finish a sent request before conn does anything else (no-op if none). */
static void
settle(PgpolyConnection *conn)
{
	RedisHandle *h = conn->handle;

	if (conn->busy || h == NULL || h->pend.ticket == 0)
		return;
	if (h->pend.handler == discard_reply)
		drop_orphan(conn, h);
	else
		finish_pending(conn, h, INT_MAX);
}

/*
 * Write what the sockets of a request sent ahead take now; the rest is
 * written by whichever reads its replies.
 */
static void
write_ahead(PgpolyConnection *conn, RedisHandle *h)
{
	for (int i = 0; i < h->nnodes; i++)
	{
		RedisNode  *node = h->nodes[i];

		if (!node->active)
			continue;
		write_some(conn, node);
		/* what is left is written after the caller's bytes may be gone */
		if (out_references(node))
			elog(ERROR, "Redis request sent ahead references its caller's bytes");
	}
}

/*
 * Send the appended commands now and let the caller work while Redis
 * answers: their nreplies replies are read by RedisReceive(ticket), or by
 * the connection's next request, whichever comes first (it must not start
 * before they are read: replies come in order), and handed to handler(reply,
 * index, arg) as RedisExchange does, built in the memory context current
 * now; flat: a reply that is an array of bulk strings only comes as a
 * RESP_REPLY_STRINGS reply (redis_resp.c; on one server, not a cluster's
 * nodes).  arg and that context must live until then; if the context is reset
 * first, the replies are dropped when read.  Returns the ticket, 0 if
 * nothing was appended.  While the replies are owed the connection is not
 * "busy": an ERROR elsewhere does not break it.  Only copied commands may
 * be sent this way (not RedisAppendEncoded's): output the socket did not
 * take at once is written by whichever reads the replies.
 */
uint64
RedisSend(PgpolyConnection *conn, int nreplies, RedisReplyHandler handler,
		  void *arg, bool flat)
{
	static uint64 tickets = 0;
	RedisHandle *h = conn->handle;
	PendingOwner *o;

	if (!conn->busy)
	{
		Assert(nreplies == 0);
		return 0;
	}
	if (h->kind == RTOPO_CLUSTER && (nreplies != h->ncmds || h->open_group >= 0))
		elog(ERROR, "Redis request expects %d replies for %d commands",
			 nreplies, h->ncmds);
	write_ahead(conn, h);
	h->pend.ticket = ++tickets;
	h->pend.n = nreplies;
	h->pend.done = 0;
	h->pend.used = 0;
	h->pend.handler = handler;
	h->pend.arg = arg;
	h->pend.cxt = CurrentMemoryContext;
	h->pend.flat = flat;
	o = palloc(sizeof(PendingOwner));
	o->conn = conn;
	o->ticket = h->pend.ticket;
	o->cb.func = orphan_pending;
	o->cb.arg = o;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &o->cb);
	PgpolyEndRequest(conn);		/* not busy: its state is known */
	return h->pend.ticket;
}

/*
 * Reopen the request of ticket (RedisSend) to append more commands to it
 * while its replies are still owed, so that a caller can send a long
 * pipeline in pieces as it builds it and Redis starts on the first piece
 * at once.  true if that request is still pending on one server (no other
 * request read its replies since, not a cluster: there a new piece would
 * have to wait for the replies of the last): the caller then appends and
 * calls RedisSendMore.  false: nothing changed (append, then RedisSend).
 */
bool
RedisResume(PgpolyConnection *conn, uint64 ticket)
{
	RedisHandle *h = conn->handle;

	if (ticket == 0 || conn->busy || h == NULL || h->pend.ticket != ticket ||
		h->kind == RTOPO_CLUSTER)
		return false;
	/* the request goes on (an ERROR now breaks the connection) */
	conn->busy = true;
	conn->errors++;
	h->pend.ticket = 0;			/* no append settles it */
	return true;
}

/*
 * Send the commands appended since RedisResume(ticket): the request now
 * owes nreplies more replies, read and handled as RedisSend's.
 */
void
RedisSendMore(PgpolyConnection *conn, uint64 ticket, int nreplies)
{
	RedisHandle *h = conn->handle;

	Assert(conn->busy && h->pend.ticket == 0 && h->kind != RTOPO_CLUSTER);
	write_ahead(conn, h);
	h->pend.ticket = ticket;
	h->pend.n += nreplies;
	PgpolyEndRequest(conn);
}

/* What one reply taken by RedisPump may take: a few status replies. */
#define PUMP_ROOM	(64 * 1024)

/*
 * Take out, without waiting, the replies of node's request that arrived
 * (see RedisPump).  NULL, or why the request cannot go on.
 */
static char *
pump_replies(RedisNode *node, const char *usual, RedisAckCheck ack, void *arg)
{
	size_t		usual_len = strlen(usual);
	char	   *failure;
	bool		got;

	for (;;)
	{
		redisReply *reply;
		int			rc;
		bool		ok;

		if (node->nread == node->nqueue)
			return RedisReaderPending(node->in) > 0 ?
				pstrdup("more replies than commands") : NULL;
		if (node->nread > 0 && RedisReaderSkip(node->in, usual, usual_len))
		{
			node->nread++;
			continue;
		}
		rc = RedisReaderNext(node->in, PUMP_ROOM, CurrentMemoryContext, false, &reply);
		if (rc == RESP_DONE)
		{
			ok = ack(reply, node->nread, arg);
			pfree(reply);
			if (!ok)
				return pstrdup("a reply that is not the one expected");
			node->nread++;
			continue;
		}
		if (rc != RESP_MORE)
			return pstrdup(rc == RESP_OOM ? "out of memory" : "a malformed reply");
		if ((failure = node_recv(node, PUMP_ROOM, &got)) != NULL || !got)
			return failure;
	}
}

/*
 * Move conn's open request on without waiting (one server): write what
 * the socket takes of its output, and take out the replies that arrived:
 * those after the first that are the bytes usual (say "+QUEUED\r\n")
 * without building them, the others checked by ack(reply, index, arg)
 * (index: its place among the request's replies) and freed.  *taken: the
 * replies taken out so far in the request.  For a request that stays open
 * across statements, the write stream (redis_stream.c), whose exchange
 * runs at COMMIT and then reads only the replies not taken here.  NULL,
 * or why the request cannot go on: the socket failed, a reply was
 * malformed or not the one ack expected, or more replies came than
 * commands.  Never ERROR but for out of memory: the caller closes the
 * connection.
 */
char *
RedisPump(PgpolyConnection *conn, const char *usual, RedisAckCheck ack,
		  void *arg, int *taken)
{
	RedisHandle *h = conn->handle;
	RedisNode  *node = h->nodes[0];
	char	   *failure;

	if (!conn->busy || h->kind == RTOPO_CLUSTER || !node->active ||
		node->unwatch_sent)
		elog(ERROR, "Redis request pumped while not open on one server");
	failure = out_write(node);
	if (failure == NULL)
		failure = pump_replies(node, usual, ack, arg);
	*taken = node->nread;
	return failure;
}

/*
 * Read the replies of request ticket (RedisSend) if they are still owed.
 * Afterwards the caller's handler has seen them all, unless the connection
 * was closed in between (pgpoly.disconnect(), ALTER SERVER): the caller
 * counts what its handler got and sends the request again if it is short.
 */
void
RedisReceive(PgpolyConnection *conn, uint64 ticket)
{
	RedisHandle *h = conn->handle;

	if (ticket != 0 && !conn->busy && h != NULL && h->pend.ticket == ticket)
		finish_pending(conn, h, INT_MAX);
}

/*
 * Read at least nreplies more replies of request ticket (RedisSend), or
 * all it still owes, handing them to its handler as RedisReceive does, so
 * the caller can use the first replies while Redis still sends the rest.
 * true if replies are still owed afterwards (the request stays open);
 * false if none are, or the request was no longer pending (see
 * RedisReceive).
 */
bool
RedisReceiveSome(PgpolyConnection *conn, uint64 ticket, int nreplies)
{
	RedisHandle *h = conn->handle;

	if (ticket == 0 || conn->busy || h == NULL || h->pend.ticket != ticket)
		return false;
	finish_pending(conn, h, h->kind == RTOPO_CLUSTER ? INT_MAX : nreplies);
	return h->pend.ticket == ticket;
}

/*
 * The error codes (first word) of the replies by which Redis says that it
 * cannot take commands now, not that it refuses this one: loading its data
 * set, running a script, over maxmemory, a replica (of a lost primary), its
 * persistence failing, too few replicas, a cluster slot moving or down.
 */
static const char *const RedisUnavailableCodes[] = {
	"LOADING", "BUSY", "OOM", "READONLY", "MASTERDOWN", "MISCONF", "NOREPLICAS",
	"TRYAGAIN", "CLUSTERDOWN"
};

/*
 * The SQLSTATE of the Redis error reply msg (NUL-terminated, as
 * PgpolyPrintable makes it), the same for every write and read path:
 * WRONGTYPE a data type mismatch (HV004); NOPERM, an ACL refusing the
 * command or key, 42501; a server that cannot take commands now (above) a
 * connection failure (08006), as an HTTP 503 is (PgpolyHttpStatusErrcode):
 * the sync worker retries those with backoff for as long as it takes, where
 * it would bury a rejected change in the dead letters; anything else an
 * FDW error (HV000).
 */
int
RedisReplyErrcode(const char *msg)
{
	size_t		n = strcspn(msg, " ");

	if (n == 9 && strncmp(msg, "WRONGTYPE", n) == 0)
		return ERRCODE_FDW_INVALID_DATA_TYPE;
	if (n == 6 && strncmp(msg, "NOPERM", n) == 0)
		return ERRCODE_INSUFFICIENT_PRIVILEGE;
	for (int i = 0; i < lengthof(RedisUnavailableCodes); i++)
		if (strlen(RedisUnavailableCodes[i]) == n &&
			strncmp(msg, RedisUnavailableCodes[i], n) == 0)
			return ERRCODE_CONNECTION_FAILURE;
	return ERRCODE_FDW_ERROR;
}

/*
 * Raise the ERROR for an error reply about key (may be NULL) of tbl (may be
 * NULL), with the reply's SQLSTATE (RedisReplyErrcode).  WRONGTYPE gets a
 * message naming the key and the expected type.
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
				(errcode(RedisReplyErrcode(msg)),
				 errmsg("Redis server \"%s\" at %s returned an error for key \"%s\"",
						conn->servername, conn->target, PgpolyPrintable(key, keylen, 200)),
				 errdetail("Redis answered: %s", msg)));
	ereport(ERROR,
			(errcode(RedisReplyErrcode(msg)),
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
		case RESP_REPLY_STRINGS:
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
