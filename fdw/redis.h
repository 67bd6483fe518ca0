/*-------------------------------------------------------------------------
 *
 * redis.h
 *		  Internal API shared by the pgpoly_redis source files.
 *
 * redis_fdw.c		FDW handler, validator, planning, EXPLAIN
 * redis_io.c		hiredis in non-blocking mode on the core's wait; pipelines
 *					to every node of a connection at once
 * redis_resp.c		the RESP reader: received bytes -> reply objects
 * redis_cluster.c	topologies: hash slots, the cluster's slot map,
 *					redirections, Sentinel discovery
 * redis_table.c	table options and column roles
 * redis_scan.c		scan execution, read-your-writes overlay
 * redis_modify.c	INSERT/UPDATE/DELETE, write buffer payloads, flush
 * redis_join.c		batched join of a local relation to a Redis table
 * redis_import.c	IMPORT FOREIGN SCHEMA feature_views
 *
 * Outside fdw/, the feature store's serving path (src/features.c) reads
 * Redis through this API too (RedisLoadTable, RedisScan*, RedisKeySet*).
 *
 * Invariant: every Redis key is built as key_prefix || stored form of the
 * key value (convert.c: fixed text, raw bytes for bytea) and sent as a
 * binary-safe argv element (never formatted into a command string).
 *
 * fdw/redis.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGPOLY_REDIS_H
#define PGPOLY_REDIS_H

#include "pgpoly.h"

#include "access/tupdesc.h"
#include "fmgr.h"
#include "nodes/execnodes.h"
#include "nodes/parsenodes.h"
#include "nodes/pathnodes.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"

struct redisReply;

typedef enum RedisTableType
{
	REDIS_HASH,
	REDIS_STRING,
	REDIS_JSON,
	REDIS_ZSET,
	REDIS_SET,
	REDIS_LIST
} RedisTableType;

/* What a column of a Redis foreign table stands for. */
typedef enum RedisColRole
{
	RCOL_NONE,					/* dropped column */
	RCOL_KEY,
	RCOL_FIELD,					/* hash field / json field */
	RCOL_VALUE,					/* string value / list element */
	RCOL_MEMBER,				/* zset/set member */
	RCOL_SCORE,					/* zset score */
	RCOL_IDX,					/* list index */
	RCOL_TTL					/* read-only remaining TTL */
} RedisColRole;

typedef struct RedisColumn
{
	RedisColRole role;
	char	   *name;			/* column name */
	char	   *field;			/* hash/json field name */
	size_t		fieldlen;
	int			hint;			/* scan: item position of field last time */
	Oid			typid;
	int32		typmod;
	bool		is_array;
	PgpolyConv	conv;			/* datum <-> stored bytes (convert.c) */
} RedisColumn;

/*
 * Default watch_limit: how many keys one transaction's UPDATEs and DELETEs
 * may WATCH on a connection.  Redis (7.0 tested) checks each key a WATCH
 * adds against every key the connection already watches, so n keys cost
 * n^2/2 comparisons on the server, which blocks it meanwhile: 1000 keys
 * take milliseconds, 62k keys took a minute.
 */
#define REDIS_WATCH_LIMIT 1000

/* A Redis foreign table, resolved from the catalogs (no network). */
typedef struct RedisTable
{
	Oid			relid;
	char	   *relname;
	RedisTableType type;
	const char *type_name;		/* table_type option value */
	char	   *prefix;
	int			prefixlen;
	int			ttl_seconds;	/* -1: none */
	int			fetch_size;
	int			batch_size;
	int			watch_limit;	/* keys a transaction may WATCH (0: none) */
	bool		transactional;
	bool		remote_estimate;
	int			natts;
	RedisColumn *cols;			/* indexed by attnum - 1 */
	bool		fixed_in;		/* reading some column needs fixed settings */
	struct ResultRelInfo *target;	/* scanned for this UPDATE/DELETE target
									 * (RedisNoteMisspelled), or NULL */
	AttrNumber	key_att;		/* attnums (0 when absent) */
	AttrNumber	member_att;
	AttrNumber	score_att;
	AttrNumber	idx_att;
	AttrNumber	value_att;
	AttrNumber	ttl_att;
	ForeignServer *server;
	UserMapping *user;			/* may be NULL */
	bool		cluster;		/* the server is a Redis Cluster */
} RedisTable;

/* redis_table.c */
extern RedisTable *RedisLoadTable(Oid relid, Oid userid);
extern bool RedisSharesWrites(Oid relid, void *payload);
extern const char *RedisFetchCommand(RedisTable *tbl);
extern const char *RedisScanTypeFilter(RedisTable *tbl);
extern char *RedisGlobEscape(const char *s, int len);
extern char *RedisKeyFromDatum(RedisTable *tbl, PgpolyConv *conv, Datum value,
							   size_t *len);
extern char *RedisLookupKey(RedisTable *tbl, PgpolyConv *conv, Datum value,
							 size_t *len);
extern char *RedisDatumText(RedisTable *tbl, AttrNumber att, Datum value,
							size_t *len);
extern Datum RedisTextDatum(RedisTable *tbl, AttrNumber att, const char *s,
							size_t len);
extern bool RedisIdentityMisspelled(RedisTable *tbl, AttrNumber att, Datum value,
									const char *s, size_t len);
extern char *RedisRowIdentity(RedisTable *tbl, Datum *values, bool *nulls,
							  size_t *len);
extern const PgpolyOption RedisOptions[];

/* redis_io.c */
/*
 * Handles one reply; returns true to keep it (it then lives in the memory
 * context the exchange ran in).
 */
typedef bool (*RedisReplyHandler) (struct redisReply *reply, int index,
								   void *arg);

/* Round trips per node, as EXPLAIN ANALYZE shows them. */
typedef struct RedisTrips
{
	int			n;
	char	  **addr;
	int64	   *count;
} RedisTrips;

extern const PgpolyStore RedisStore;
extern PgpolyConnection *RedisGetConnection(RedisTable *tbl);
extern void RedisAppendArgv(PgpolyConnection *conn, int argc,
							const char **argv, const size_t *lens);
extern uint64 RedisAppendToNode(PgpolyConnection *conn, const char *addr,
								int argc, const char **argv,
								const size_t *lens);
extern void RedisAppendEncoded(PgpolyConnection *conn, const char *resp,
							   size_t len, int ncmds, int slot);
extern void RedisExchange(PgpolyConnection *conn, int nreplies,
						  RedisReplyHandler handler, void *arg);
extern uint64 RedisSend(PgpolyConnection *conn, int nreplies,
						RedisReplyHandler handler, void *arg, bool flat);
extern void RedisReceive(PgpolyConnection *conn, uint64 ticket);
extern bool RedisReceiveSome(PgpolyConnection *conn, uint64 ticket,
							 int nreplies);
extern bool RedisResume(PgpolyConnection *conn, uint64 ticket);
extern void RedisSendMore(PgpolyConnection *conn, uint64 ticket, int nreplies);

/* Whether reply (number index of its request) is the one expected. */
typedef bool (*RedisAckCheck) (struct redisReply *reply, int index, void *arg);
extern char *RedisPump(PgpolyConnection *conn, const char *usual,
					   RedisAckCheck ack, void *arg, int *taken);
extern bool RedisPeerClosed(PgpolyConnection *conn);
extern void RedisCheckMulti(PgpolyConnection *conn);
extern bool RedisMultiRefused(PgpolyConnection *conn);
extern int	RedisReplyErrcode(const char *msg);
extern void RedisReplyError(PgpolyConnection *conn, struct redisReply *reply,
							const char *key, size_t keylen,
							RedisTable *tbl) pg_attribute_noreturn();
extern void RedisProtocolError(PgpolyConnection *conn, const char *command,
							   struct redisReply *r,
							   const char *what) pg_attribute_noreturn();
extern char *RedisBytesCopy(const char *s, size_t len);
extern bool RedisIsCluster(PgpolyConnection *conn);
extern bool RedisWatchBudget(PgpolyConnection *conn, RedisTable *tbl, int nkeys);
extern void RedisNoteWatch(PgpolyConnection *conn, int level);
extern void RedisCheckWatches(PgpolyConnection *conn);
extern void RedisExecAnswered(PgpolyConnection *conn, int index);
extern void RedisWatchesSettled(PgpolyConnection *conn);
extern int	RedisNodesWatching(PgpolyConnection *conn);
extern void RedisAppendUnwatch(PgpolyConnection *conn);
extern List *RedisPrimaryNodes(PgpolyConnection *conn);
extern const char *RedisReplyNode(PgpolyConnection *conn, int index);
extern void RedisCountTrips(PgpolyConnection *conn, RedisTrips *trips);
extern char *RedisTripsText(RedisTrips *trips);

/*
 * The state of one key as a scan sees it: remote contents, then pending
 * writes applied.  items hold (a, b) pairs of text: hash (field, value),
 * string/json (value, -), zset (member, score), set (member, -), list
 * (value, -).
 */
typedef struct RedisItem
{
	char	   *a;
	size_t		alen;
	char	   *b;
	size_t		blen;
} RedisItem;

typedef struct RedisKeyState
{
	char	   *key;			/* full Redis key */
	size_t		keylen;
	bool		exists;
	bool		keyonly;		/* only whether it exists is known: one row */
	long long	ttl;			/* -1: none, -2: unknown */
	int			nitems;
	int			maxitems;
	RedisItem  *items;
} RedisKeyState;

/* Kinds of buffered write, as the read-your-writes overlay sees them. */
typedef enum RedisWriteKind
{
	RW_PUT,						/* replace contents with items */
	RW_MERGE,					/* hash: set the fields of items with a value,
								 * remove those without (b absent) */
	RW_DEL,						/* the key is gone */
	RW_ADD,						/* upsert member (zset/set) */
	RW_REM,						/* remove member */
	RW_APPEND,					/* list: append value */
	RW_SET_IDX,					/* list: replace element idx */
	RW_REM_FIRST				/* list: remove first equal value */
} RedisWriteKind;

/*
 * An item of a buffered write: offsets of its a and b bytes in the write's
 * data (boff REDIS_NO_BYTES: no b).
 */
typedef struct RedisWriteItem
{
	uint32		aoff;
	uint32		alen;
	uint32		boff;
	uint32		blen;
} RedisWriteItem;

#define REDIS_NO_BYTES	PG_UINT32_MAX

/*
 * A buffered write: what it means to a reader (kind, key, items) and the
 * commands that perform it, encoded once, when the row is written, as the
 * RESP that goes to Redis.  data holds the ncmds commands (resplen bytes,
 * sent as they are), then any key or item bytes that are no argument of
 * them; key and items are offsets into it, so nothing is decoded again.
 * Header and data live in the arena of the memory context the write was
 * built for (redis_modify.c): no allocation of their own.
 */
typedef struct RedisWrite
{
	RedisTable *tbl;			/* for messages at flush */
	bool	   *applied;		/* INSERT ... ON CONFLICT DO NOTHING sent
								 * at once: set to whether it inserted */
	char	   *data;
	uint32		resplen;
	uint32		keyoff;
	uint32		keylen;
	uint16		ncmds;			/* commands in data, one reply each */
	uint16		nitems;
	RedisWriteKind kind;
	long		idx;			/* RW_SET_IDX */
	bool		renamed;		/* RW_PUT of a hash by RENAME of another key:
								 * the key also gets the fields tbl does not
								 * map, which its items do not hold */
	RedisWriteItem items[FLEXIBLE_ARRAY_MEMBER];	/* RW_PUT, RW_MERGE: the
													 * fields; else one */
} RedisWrite;

/* The key of buffered write w (keylen bytes, not NUL-terminated). */
static inline const char *
RedisWriteKey(const RedisWrite *w)
{
	return w->data + w->keyoff;
}

/* Item i of buffered write w, as the overlay applies it (b NULL: none). */
static inline RedisItem
RedisWriteGetItem(const RedisWrite *w, int i)
{
	const RedisWriteItem *it = &w->items[i];
	RedisItem	r;

	r.a = w->data + it->aoff;
	r.alen = it->alen;
	r.b = it->boff == REDIS_NO_BYTES ? NULL : w->data + it->boff;
	r.blen = it->blen;
	return r;
}

/* redis_scan.c */

/* A Redis key (or a row identity) as hash tables see it (PgpolyKeyTable). */
typedef PgpolyKeyRef RedisKeyRef;
typedef struct RedisKeySet RedisKeySet;
extern RedisKeySet *RedisKeySetCreate(MemoryContext cxt, int expected);
extern bool RedisKeySetAdd(RedisKeySet *set, const char *key, size_t len);
extern int	RedisKeySetIndex(RedisKeySet *set, const char *key, size_t len,
							 int next);
typedef struct RedisOverlay RedisOverlay;
extern RedisOverlay *RedisBuildOverlay(List *pending);
extern void RedisOverlayAdd(RedisOverlay **ov, RedisWrite *w);
extern RedisWrite *RedisOverlayFirstWrite(RedisOverlay *ov, const char *key,
										  size_t len);
extern void RedisApplyOverlay(RedisTable *tbl, RedisOverlay *ov,
							  RedisKeyState *st);
extern bool RedisIdentityExists(RedisTable *tbl, RedisOverlay *ov,
								RedisItem *id, bool remote);
extern void RedisStateFromReply(RedisTable *tbl, RedisKeyState *st,
								struct redisReply *r, PgpolyConnection *conn);

/* redis_modify.c */
extern List *RedisInsertWrites(RedisTable *tbl, Datum *values, bool *nulls,
							   MemoryContext cxt);
extern List *RedisDeleteWrites(RedisTable *tbl, Datum *old, bool *oldnulls,
							   MemoryContext cxt);
extern List *RedisUpdateWrites(RedisTable *tbl, Datum *old, bool *oldnulls,
							   Datum *values, bool *nulls, Bitmapset *updated,
							   MemoryContext cxt);
extern RedisWrite *RedisInsertIfAbsentWrite(RedisTable *tbl, Datum *values,
											bool *nulls, bool *applied,
											MemoryContext cxt);
extern void RedisInsertIdentity(RedisTable *tbl, Datum *values, bool *nulls,
								RedisItem *id);
extern void RedisRowsExist(PgpolyConnection *conn, RedisTable *tbl,
						   RedisItem *ids, int n, bool *exists);
extern void RedisFlushWrites(PgpolyConnection *conn, List *payloads);
extern void RedisSendCommands(PgpolyConnection *conn, List *writes,
							  bool atomic);


/* redis_resp.c: the RESP reader of one node */
typedef struct RedisReader RedisReader;

#define RESP_DONE	0			/* a reply was taken out */
#define RESP_MORE	1			/* more bytes are needed */
#define RESP_BUDGET	2			/* the reply would exceed the room given */
#define RESP_ERROR	3			/* the bytes are not RESP */
#define RESP_OOM	4			/* out of memory */

extern RedisReader *RedisReaderCreate(MemoryContext cxt);
extern void RedisReaderFree(RedisReader *r);
extern size_t RedisReaderPending(RedisReader *r);
extern char *RedisReaderSpace(RedisReader *r, size_t *room);
extern void RedisReaderAdvance(RedisReader *r, size_t n);
extern void RedisReaderReset(RedisReader *r);
extern void RedisReaderTrim(RedisReader *r);
/*
 * A reply that is an array of bulk strings only, built flat for a caller
 * that asked (RedisReaderNext's flat): no hiredis type has this number;
 * elements says how many, RedisReplyStrings gives them (NUL-terminated).
 */
#define RESP_REPLY_STRINGS 1000

typedef struct RedisString
{
	char	   *str;
	size_t		len;
} RedisString;

extern int	RedisReaderNext(RedisReader *r, Size room, MemoryContext cxt,
							bool flat, struct redisReply **reply);
extern RedisString *RedisReplyStrings(struct redisReply *reply);
extern bool RedisReaderSkip(RedisReader *r, const char *bytes, size_t len);
extern const char *RedisReaderError(RedisReader *r);

/* redis_cluster.c: topologies */
#define REDIS_NSLOTS 16384		/* hash slots of a Redis Cluster */
#define REDIS_SENTINEL_CHECK_MS 1000	/* default sentinel_check_ms */

typedef enum RedisTopologyKind
{
	RTOPO_SINGLE,				/* host + port, or unix_socket */
	RTOPO_CLUSTER,				/* cluster 'true' or nodes: keys by hash slot */
	RTOPO_SENTINEL				/* sentinels + sentinel_master */
} RedisTopologyKind;

typedef struct RedisAddr
{
	char	   *host;
	int			port;
} RedisAddr;

/* What a server's options say about where its data lives. */
typedef struct RedisTopology
{
	RedisTopologyKind kind;
	List	   *addrs;			/* RedisAddr *: the server, seeds or sentinels */
	char	   *unix_socket;	/* one server through this socket (addrs
								 * NIL) */
	char	   *master;			/* sentinel_master */
	int			check_ms;		/* sentinel_check_ms */
} RedisTopology;

extern int	RedisKeySlot(const char *key, size_t len);
extern bool RedisCommandKey(int argc, const char **argv, const size_t *lens,
							const char **key, size_t *keylen);
extern bool RedisParseAddr(const char *s, size_t len, RedisAddr *addr);
extern void RedisTopologyFromOptions(List *options, RedisTopology *topo);
typedef struct RedisClusterView RedisClusterView;
typedef void (*RedisMovedKey) (const char *key, size_t len, void *arg);
extern RedisClusterView *RedisClusterViewOf(PgpolyConnection *conn, List *addrs);
extern List *RedisClusterViewNodes(RedisClusterView *v);
extern void RedisClusterMovedKeys(PgpolyConnection *conn,
								  RedisClusterView *before,
								  RedisClusterView *after,
								  RedisMovedKey add, void *arg);

/*
 * The Redis servers behind one pgpoly connection, shared by redis_io.c (the
 * I/O) and redis_cluster.c (where keys go).  A single server or the
 * Sentinel's primary is one node; a cluster has one per node met.
 */
#define RQ_ASKING	(-1)		/* queue entry: the ASKING of a redirection */

typedef struct RedisNode
{
	int			index;			/* in RedisHandle.nodes; -1: a sentinel */
	char	   *host;			/* or the path of a Unix-domain socket */
	int			port;			/* 0 for a Unix-domain socket */
	bool		is_socket;		/* host is a path: one server's only node */
	char	   *addr;			/* "host:port" or the socket's path, for
								 * messages and connections() */
	struct redisContext *ctx;	/* NULL: not connected */
	uint64		session;		/* ctx's number, new at each connect */
	uint64		peer_reopen;	/* the session opened since Redis closed the
								 * one before (0: none; RedisAppendToNode) */
	RedisReader *in;			/* its replies (read here, not by hiredis) */
	bool		primary;		/* serves slots in the current map */
	bool		multi_refused;	/* its ACL user may not run MULTI */
	bool		watched;		/* holds WATCHes of this transaction */
	bool		stale_watch;	/* holds WATCHes of an ended one: UNWATCH
								 * goes ahead of its next command */
	bool		unwatch_sent;	/* ... and was sent: its reply comes first */
	int64		requests;		/* requests it took part in */
	int64		errors;			/* of those, the ones that did not end well */
	/* the running request */
	bool		active;			/* has commands in it */
	bool		readable;		/* its last read brought bytes */
	int			nqueue;			/* replies expected */
	int			nread;			/* replies read */
	int		   *queue;			/* cluster: what each expected reply answers */
	int			maxqueue;
	char	   *failure;		/* cluster: why it failed in this request */
	/* its output not written yet, in order (redis_io.c) */
	struct RedisOut *out;
	int			nout;
	int			maxout;
	int			outpos;			/* first segment not written out */
	size_t		outdone;		/* bytes of it written */
	StringInfoData copied;		/* the bytes of copied commands */
} RedisNode;

/* A command of the running request on a cluster connection. */
typedef struct RedisCmdInfo
{
	const char *ext;			/* its RESP, kept by the caller until the
								 * exchange ends; NULL: ... */
	uint32		off;			/* ... in RedisHandle.resp */
	uint32		len;
	int			slot;			/* -1: keyless, sent to a named node */
	int			node;			/* node it was last sent to */
	int			group;			/* index of its MULTI, or -1 */
	bool		is_exec;		/* the EXEC that closes its group */
	bool		final;			/* its reply may be delivered */
	uint8		redirects;		/* MOVED and ASK followed */
	uint8		retries;		/* TRYAGAIN, CLUSTERDOWN waited out */
} RedisCmdInfo;

/* The replies of a request sent by RedisSend and not read yet. */
typedef struct RedisPendingReplies
{
	uint64		ticket;			/* 0: none */
	int			n;
	int			done;			/* of them read (RedisReceiveSome) */
	Size		used;			/* the bytes of those kept (ReplyBudget) */
	RedisReplyHandler handler;
	void	   *arg;
	MemoryContext cxt;			/* where to build them; NULL: drop them */
	bool		flat;			/* arrays of bulk strings come flat */
} RedisPendingReplies;

/* The store handle of a pgpoly_redis connection. */
/*
 * The write stream of a connection (redis_stream.c): a second connection
 * to the same server that queues the transaction's buffered writes in a
 * MULTI while the statements run, for COMMIT to EXEC.
 */
typedef struct RedisWriteStream
{
	PgpolyConnection *conn;		/* the second connection (kept across
								 * transactions), NULL: none */
	bool		open;			/* its MULTI of this transaction was sent */
	bool		off;			/* given up for this transaction */
	bool		pushing;		/* a push runs (still set: an ERROR cut it) */
	Size		unsent;			/* bytes buffered since the last push */
	int			nlisted;		/* elements of conn->writes sent or skipped */
	void	   *last;			/* the last of them (PgpolyWrite *) */
	int			nsent;			/* of them, writes with commands sent */
	struct RedisWrite *lastsent;	/* the last of those */
	int			acked;			/* replies taken: MULTI's OK, QUEUED ... */
} RedisWriteStream;

typedef struct RedisHandle
{
	RedisTopologyKind kind;
	MemoryContext cxt;			/* everything of the handle */
	RedisNode **nodes;
	int			nnodes;
	int			maxnodes;
	PgpolyWaitSet *waitset;
	char	   *username;		/* AUTH and SELECT of each node opened */
	char	   *password;
	int			db;
	bool		probe;			/* the trust rule: PING must meet NOAUTH first */
	/* cluster and Sentinel */
	List	   *seeds;			/* RedisAddr *, from the options: seeds or
								 * sentinels */
	/* Sentinel */
	char	   *master;			/* sentinel_master */
	int			check_ms;		/* sentinel_check_ms */
	TimestampTz next_check;		/* ask the sentinels again from then on */
	int16	   *slots;			/* node of each hash slot, -1: unknown */
	bool		map_stale;		/* ask CLUSTER SLOTS before the next request */
	/* WATCH (RedisNoteWatch) */
	bool		watching;		/* some node holds WATCHes of this transaction */
	int64		nwatched;		/* keys they watch (RedisWatchBudget) */
	LocalTransactionId capped_lxid;	/* transaction past its watch_limit */
	bool		watch_lost;		/* a node that held some was closed since */
	bool		req_watches;	/* the running request sends WATCHes: a node
								 * it reaches (a MOVED or ASK) holds some */
	char		watch_relname[NAMEDATALEN];	/* the first table they were for */
	/* the running request of a cluster connection */
	MemoryContext req_cxt;
	StringInfoData resp;		/* RESP of its commands, back to back */
	RedisCmdInfo *cmds;
	int			ncmds;
	int			maxcmds;
	int			open_group;		/* its MULTI not closed by EXEC yet, or -1 */
	RedisPendingReplies pend;	/* a request sent, its replies not read */
	RedisWriteStream stream;	/* one server: the write stream */
} RedisHandle;

/* redis_stream.c: the write stream (RedisWriteStream) */
extern void RedisStreamBuffered(PgpolyConnection *conn, void *payload);
extern PgpolyConnection *RedisStreamForCommit(PgpolyConnection *conn,
											  int *nsent, RedisWrite **lastsent,
											  int *acked);
extern void RedisStreamCommitted(PgpolyConnection *conn);
extern void RedisStreamXactEnd(PgpolyConnection *conn, bool commit);
extern void RedisStreamClose(RedisHandle *h);

/* An exchange in progress (RedisExchange), as the cluster code sees it. */
typedef struct RedisExchangeState
{
	PgpolyConnection *conn;
	RedisHandle *h;
	int			n;				/* replies the caller expects */
	int			next;			/* next reply to deliver */
	int			first;			/* the request's index of reply 0 (one
								 * server: RedisReceiveSome read the ones
								 * before) */
	struct redisReply **held;	/* cluster: replies read, not delivered */
	TimestampTz deadline;
	List	   *retries;		/* cluster: commands to send again later */
	char	   *retried;		/* cluster: the last answer waited out
								 * (TRYAGAIN ...), for a timeout's message */
	int			named;			/* the node conn->target names, -1 */
	bool		flat;			/* arrays of bulk strings come flat
								 * (RedisSend's flat; one server) */
} RedisExchangeState;

/* redis_io.c, for redis_cluster.c */
extern RedisNode *RedisNodeGet(RedisHandle *h, const char *host, int port);
extern int	RedisNodeIndex(RedisHandle *h, RedisNode *node);
extern bool RedisNodeOpen(PgpolyConnection *conn, RedisHandle *h,
						  RedisNode *node, bool setup, char **error);
extern void RedisNodeFree(RedisHandle *h, RedisNode *node);
extern void RedisNodeClose(RedisHandle *h, RedisNode *node);
extern struct redisReply *RedisNodeCall(PgpolyConnection *conn, RedisHandle *h,
										RedisNode *node, int argc,
										const char **argv, char **error);
extern void RedisNodeSend(PgpolyConnection *conn, RedisHandle *h,
						  RedisNode *node, int entry, const char *resp,
						  size_t len, bool copy);
extern void RedisReplyDiscard(struct redisReply *reply);
extern void RedisEncodeCommand(StringInfo buf, int argc, const char **argv,
							   const size_t *lens);

/* Bytes of the RESP header "<prefix><n>\r\n". */
static inline size_t
RedisRespHeaderSize(size_t n)
{
	size_t		d = 1;

	while (n >= 10000)
	{
		n /= 10000;
		d += 4;
	}
	return 3 + d + (n >= 10) + (n >= 100) + (n >= 1000);
}

/* Bytes of one RESP bulk-string argument of len bytes. */
static inline size_t
RedisRespArgSize(size_t len)
{
	return RedisRespHeaderSize(len) + len + 2;
}

/*
 * Write the RESP header "<prefix><n>\r\n" at p; returns its end.  Short
 * numbers, most of them, are written here rather than by pg_ulltoa_n.
 */
static inline char *
RedisRespPutHeader(char *p, char prefix, size_t n)
{
	*p++ = prefix;
	if (n < 10)
		*p++ = (char) ('0' + n);
	else if (n < 100)
	{
		*p++ = (char) ('0' + n / 10);
		*p++ = (char) ('0' + n % 10);
	}
	else
		p += pg_ulltoa_n((uint64) n, p);
	*p++ = '\r';
	*p++ = '\n';
	return p;
}

/* Write one RESP bulk-string argument (len bytes of s) at p; its end. */
static inline char *
RedisRespPutArg(char *p, const char *s, size_t len)
{
	p = RedisRespPutHeader(p, '$', len);
	memcpy(p, s, len);
	p += len;
	*p++ = '\r';
	*p++ = '\n';
	return p;
}

/* redis_cluster.c, for redis_io.c */
extern void RedisClusterRoute(PgpolyConnection *conn, RedisHandle *h, int idx,
							  int argc, const char **argv, const size_t *lens,
							  RedisNode *target);
extern void RedisClusterRouteEncoded(PgpolyConnection *conn, RedisHandle *h,
									 int idx, const char *resp, size_t len,
									 int slot);
extern void RedisClusterReply(RedisExchangeState *ex, RedisNode *node,
							  int entry, struct redisReply *reply);
extern TimestampTz RedisClusterRetries(RedisExchangeState *ex);
extern void RedisClusterRefresh(PgpolyConnection *conn, RedisHandle *h);
extern void RedisClusterCheckCoverage(PgpolyConnection *conn, RedisHandle *h);
extern RedisNode *RedisSentinelRecheck(PgpolyConnection *conn, RedisHandle *h);
extern RedisNode *RedisSentinelPrimary(PgpolyConnection *conn, RedisHandle *h,
									   RedisTopology *topo);
extern bool RedisIsRedirect(struct redisReply *reply);

/* redis_fdw.c: the plan's scan description, shared with redis_join.c */
typedef enum RedisScanMode
{
	RSCAN_KEYS,					/* fetch the listed keys */
	RSCAN_SCAN					/* SCAN MATCH pattern */
} RedisScanMode;

/* Rows of a Redis scan, produced round by round (redis_scan.c). */
typedef struct RedisScan RedisScan;
extern RedisScan *RedisScanBegin(RedisTable *tbl, PgpolyConnection *conn,
								 bool need_ttl, List *pending);
extern void RedisScanSetColumns(RedisScan *scan, const bool *needed,
								bool one_row);
extern bool RedisKeysOnly(RedisTable *tbl, const bool *needed, bool need_ttl,
						  bool one_row);
extern int	RedisScanKeysOnly(RedisScan *scan);
extern bool RedisFieldsOnly(RedisTable *tbl, const bool *needed, bool need_ttl);
extern void RedisScanAllowFieldFetch(RedisScan *scan);
extern void RedisScanWatch(RedisScan *scan, bool keyonly, int level,
						   SubTransactionId subid);
extern bool *RedisColumnsNeeded(RedisTable *tbl, List *attnos);
extern char *RedisFieldsText(RedisTable *tbl, const bool *needed);
extern List *RedisColumnsRead(RedisTable *tbl, Bitmapset *attrs);
extern void RedisScanSetKeys(RedisScan *scan, char **keys, size_t *lens,
							 int nkeys);
extern void RedisScanSetPattern(RedisScan *scan, const char *pattern);
extern void RedisScanSetScoreRange(RedisScan *scan, const char *min,
								   const char *max);
extern bool RedisScanNext(RedisScan *scan, Datum *values, bool *nulls);
extern void RedisScanRestart(RedisScan *scan);
extern int64 RedisScanRoundTrips(RedisScan *scan);
extern void RedisScanSetTrips(RedisScan *scan, RedisTrips *trips);
extern RedisKeyState *RedisScanRoundState(RedisScan *scan, int i);
extern void RedisScanFetchKeys(RedisScan *scan, char **keys, size_t *lens,
							   int nkeys);
extern void RedisScanSendKeys(RedisScan *scan, char **keys, size_t *lens,
							  int nkeys);
extern void RedisScanAddKeys(RedisScan *scan, char **keys, size_t *lens,
							 int nkeys, int hint);
extern void RedisScanEndKeys(RedisScan *scan);
extern void RedisScanTakeKeys(RedisScan *scan);
extern void RedisScanTakeKeysLazily(RedisScan *scan);
extern int	RedisStateRowCount(RedisTable *tbl, RedisKeyState *st);
extern void RedisStateRow(RedisScan *scan, RedisKeyState *st, int item,
						  Datum *values, bool *nulls);

/* redis_fdw.c */
extern bool RedisIsRedisTable(Oid relid);
extern struct ResultRelInfo *RedisScanTarget(struct EState *estate, Index rti);
extern bool RedisScanWatches(RedisTable *tbl, struct EState *estate, Index rti,
							 bool *keyonly);
extern char *RedisWatchText(RedisTable *tbl);
extern void RedisScanWatchTarget(RedisScan *scan, RedisTable *tbl,
								 struct EState *estate, Index rti, int level,
								 SubTransactionId subid);
extern void RedisNoteMisspelled(struct ResultRelInfo *target, Datum *values,
								bool *nulls, AttrNumber att, const char *s,
								size_t len);

/* redis_fdw.c, for redis_join.c */
extern Datum pgpoly_redis_handler(PG_FUNCTION_ARGS);
extern List *RedisConflictColumns(Oid relid);
extern bool RedisIsRedisRel(RelOptInfo *rel);
extern RedisTable *RedisRelTable(RelOptInfo *rel);
extern bool RedisQualsRejectNullField(RedisTable *tbl, Index relid, List *quals);

/* redis_join.c */
extern void RedisJoinInit(void);

/* redis_import.c */
extern List *redisImportForeignSchema(ImportForeignSchemaStmt *stmt,
										 Oid serverOid);

#endif							/* PGPOLY_REDIS_H */
