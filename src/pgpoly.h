/*-------------------------------------------------------------------------
 *
 * pgpoly.h
 *		  The cross-file API of pgpoly's shared core.
 *
 * Every store (Redis, Elasticsearch, vector service) plugs into the same
 * core: option validation (option.c), the per-backend connection cache
 * (connection.c), the interruptible socket wait (wait.c), the transaction
 * write buffer (xact.c), the scan and modify lifecycle (lifecycle.c),
 * datum <-> store text under fixed settings (convert.c) and JSON <-> datum
 * conversion (json.c).  A store describes itself once with a PgpolyStore
 * and never reimplements these.
 *
 * Invariants kept by the core:
 *	- No library call ever blocks on the network; every wait goes through
 *	  PgpolyWaitSocket(), which services interrupts and postmaster death.
 *	- A connection that fails mid-request is never reused.
 *	- Secrets live only in user mapping options and never reach EXPLAIN,
 *	  error messages or logs.
 *	- No connection is opened or handed out to a non-superuser whose user
 *	  mapping carries no credential, or to a store that does not ask for
 *	  it, unless a superuser set the mapping's password_required 'false'
 *	  (the trust rule, as postgres_fdw's).
 *
 * src/pgpoly.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGPOLY_H
#define PGPOLY_H

#include "postgres.h"

#include "fmgr.h"
#include "foreign/foreign.h"
#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "nodes/bitmapset.h"
#include "nodes/nodes.h"
#include "nodes/pg_list.h"
#include "utils/relcache.h"
#include "utils/timestamp.h"

/* ----------------------------------------------------------------
 *		Options (option.c)
 * ----------------------------------------------------------------
 */
typedef enum PgpolyOptionType
{
	PGPOLY_OPT_STRING,
	PGPOLY_OPT_INT,				/* integer within [min, max] */
	PGPOLY_OPT_BOOL,
	PGPOLY_OPT_ENUM,			/* one of a comma-separated list */
	PGPOLY_OPT_URL,				/* comma-separated http(s) base URLs */
	PGPOLY_OPT_FILE,			/* a server-side file libcurl reads: only
								 * superusers and pg_read_server_files */
	PGPOLY_OPT_SOCKET,			/* absolute path of a Unix-domain socket */
	PGPOLY_OPT_HEADER			/* a STRING sent in an HTTP header: no
								 * control character */
} PgpolyOptionType;

/* One valid option of a store, in one catalog context. */
typedef struct PgpolyOption
{
	const char *name;
	Oid			context;		/* ForeignServerRelationId etc. */
	PgpolyOptionType type;
	int64		min;			/* INT bounds; STRING: minimum length */
	int64		max;
	const char *values;			/* PGPOLY_OPT_ENUM: "a,b,c" */
	bool		secret;			/* user-mapping only, never shown */
} PgpolyOption;

extern void PgpolyValidateOptions(const PgpolyOption *valid, List *options,
								  Oid context);
extern const char *PgpolyGetOption(List *options, const char *name,
								   const char *dflt);
extern int64 PgpolyGetIntOption(List *options, const char *name, int64 dflt);
extern bool PgpolyGetBoolOption(List *options, const char *name, bool dflt);
extern bool PgpolyParseBool(const char *value, bool *result);
extern List *PgpolySecretValues(const PgpolyOption *valid, List *options);
extern void PgpolyRejectImportOptions(List *options);

/* ----------------------------------------------------------------
 *		FDW helpers shared by the stores (fdwutil.c)
 * ----------------------------------------------------------------
 */
struct PlannerInfo;
struct RelOptInfo;
struct RangeTblEntry;
struct ResultRelInfo;
struct ExprState;
struct ModifyTable;
struct ModifyTableState;
struct ForeignPath;
struct ForeignScan;
struct ForeignScanState;
struct PathTarget;
struct TupleTableSlot;
struct EState;

extern Oid	PgpolyRelUser(struct RelOptInfo *baserel);
extern Oid	PgpolyRteUser(struct EState *estate, struct RangeTblEntry *rte);
extern Oid	PgpolyScanUser(struct ForeignScanState *node);
extern Oid	PgpolyModifyUser(struct ResultRelInfo *rinfo, struct EState *estate);
extern Index PgpolyScanRelid(struct ForeignScan *fs);
/* A column mapped to a store field, for PgpolyCheckWrittenFields. */
typedef struct PgpolyFieldRef
{
	const char *column;
	const char *field;			/* not NUL-terminated: len bytes */
	size_t		len;
	AttrNumber	attnum;
	char		path_sep;		/* '.' where "a.b" is b inside a; 0: flat */
	bool		holds_fields;	/* its object value takes the fields under it */
} PgpolyFieldRef;

extern char *PgpolyRelationName(Oid relid);
/* Fill *ref for column i (0-based) of a store's table; false: no field. */
typedef bool (*PgpolyColumnField) (const void *tbl, int i, PgpolyFieldRef *ref);

extern void PgpolyCheckWrittenFields(const char *relname, const void *tbl, int natts,
									 PgpolyColumnField field, CmdType op,
									 Bitmapset *assigned);
extern void PgpolyCheckSelect(Oid relid, Bitmapset *attnums);
extern void PgpolyCheckServerUsage(ForeignServer *server);
extern bool PgpolyIsForeignTableOf(Oid relid,
								   void (*relsize) (struct PlannerInfo *root,
													struct RelOptInfo *baserel,
													Oid foreigntableid));
extern Node *PgpolyStripRelabel(Node *n);
extern AttrNumber PgpolyColumnOf(Node *n, struct RelOptInfo *baserel);
extern bool PgpolyIsScanConstant(Node *expr);
extern int	PgpolyBtreeStrategy(Oid opno, Oid typid);
extern char *PgpolyDeparseClauses(List *clauses, struct PlannerInfo *root,
								  struct RelOptInfo *baserel);
extern int	PgpolyModifyBatchSize(struct ResultRelInfo *rinfo, int dflt);
extern bool PgpolyPlanModifiesTwice(struct PlannerInfo *root, Oid relid);
extern List *PgpolyPlanModifyColumns(struct PlannerInfo *root,
									 struct ModifyTable *plan,
									 Index resultRelation);
extern struct ForeignPath *PgpolyForeignScanPath(struct PlannerInfo *root,
												 struct RelOptInfo *rel, double rows,
												 Cost startup, Cost total,
												 List *pathkeys, Bitmapset *required_outer,
												 List *fdw_private);
extern struct ForeignPath *PgpolyForeignUpperPath(struct PlannerInfo *root,
												  struct RelOptInfo *rel,
												  struct PathTarget *target,
												  double rows, Cost startup,
												  Cost total, List *pathkeys,
												  List *fdw_private);
extern void PgpolyReplanReaders(Oid relid);
extern char *PgpolyJunkName(const char *base, struct TupleDescData *desc, AttrNumber att);
extern void PgpolyAddRowIdentity(struct PlannerInfo *root, Index rtindex, Relation rel,
								 AttrNumber att, const char *base);
extern void PgpolyAddOldRow(struct PlannerInfo *root, Index rtindex);
extern void PgpolyStoreOldRow(struct TupleTableSlot *slot,
							  struct TupleTableSlot *planSlot,
							  AttrNumber junk, Relation rel);

/* ----------------------------------------------------------------
 *		Stores, connections (connection.c)
 * ----------------------------------------------------------------
 */
struct PgpolyConnection;

/*
 * What a store tells the core about itself.  options is its option table:
 * its secret options are the credentials the trust rule looks for in a
 * user mapping.  connect() opens a connection (it must use
 * PgpolyWaitSocket for every wait and ereport on failure; when
 * PgpolyMustProveCredential(user), it must first check that the store
 * refuses a request without the credential, else call
 * PgpolyCredentialNotRequested) and returns the store's handle; disconnect() closes it and must not ereport.  flush()
 * sends the transaction's buffered writes (their payloads, in write order,
 * on a connected handle) at pre-commit, and ereports on any failure so
 * that COMMIT fails.  describe() (optional) lists the connections a handle
 * holds when it spans several servers (a Redis Cluster's nodes), as
 * PgpolyConnRow, for pgpoly.connections(); NIL or no callback: the
 * connection is its own row.
 */
typedef struct PgpolyConnRow
{
	char	   *target;			/* host:port or URL */
	int64		requests;
	int64		errors;
} PgpolyConnRow;

typedef struct PgpolyStore
{
	const char *name;			/* "redis", "elastic", "vector" */
	const char *label;			/* for messages: "Redis", "Elasticsearch" ... */
	const PgpolyOption *options;	/* valid options; secret ones: credentials */
	void	   *(*connect) (struct PgpolyConnection *conn,
							ForeignServer *server, UserMapping *user);
	void		(*disconnect) (void *handle);
	void		(*flush) (struct PgpolyConnection *conn, List *payloads);
	/* the FDW handler: recognises the store's foreign tables */
	PGFunction	handler;
	/*
	 * INSERT ... ON CONFLICT: the attnums (a List of int) of the columns
	 * that identify a row of foreign table relid (key, _id, id; Redis
	 * set/zset: key and member); ERROR where a conflict has no meaning for
	 * the table.
	 */
	List	   *(*conflict_columns) (Oid relid);
	List	   *(*describe) (struct PgpolyConnection *conn);
	/*
	 * Optional: the connection for foreign table relid and user userid,
	 * when the store keeps the table's server and user mapping resolved
	 * (NULL: the core reads them from the catalogs each time).
	 */
	struct PgpolyConnection *(*table_connection) (Oid relid, Oid userid);
	/*
	 * Optional: at pre-commit, before the writes are sent, for a connection
	 * that holds the transaction's session state (watching) but has
	 * nothing to write while other connections of the store do: ERROR if
	 * that state says a value the transaction read there changed since,
	 * and release it (see xact.c).
	 */
	void		(*check_reads) (struct PgpolyConnection *conn);
	/*
	 * Optional: at the end of the transaction, or of the subtransaction
	 * that made all of it, for a connection that still holds that session
	 * state (watching) and is not in the middle of a request: arrange,
	 * without I/O and without ERROR, that the state is released ahead of
	 * the connection's next command (Redis: UNWATCH), and return true.
	 * False, or no callback: the core closes the connection.
	 */
	bool		(*end_session) (struct PgpolyConnection *conn);
	/*
	 * Optional: a transactional write (payload, not outbox) was just
	 * appended to conn->writes.  The store may send the writes ahead of
	 * COMMIT where the store applies nothing before it (Redis queues them
	 * in a MULTI on a second connection), as long as flush() still sends
	 * exactly conn's writes then.  Must not fail the statement for a
	 * failure of that sending: it falls back to flush() sending all.
	 */
	void		(*buffered) (struct PgpolyConnection *conn, void *payload);
	/*
	 * Optional: the transaction ended (commit: after flush()); without
	 * ERROR, forget or close what buffered() sent ahead.  Called only for
	 * a connection with a handle.  No I/O but a short request bounded by a
	 * timeout of its own that raises nothing (PgpolyHttpTryRequest:
	 * Elasticsearch closes the contexts a dropped scan left open).
	 */
	void		(*xact_end) (struct PgpolyConnection *conn, bool commit);
	/*
	 * Optional: the foreign-table option naming where the table's rows
	 * live when a buffered write does not carry it in its key (Elasticsearch
	 * "index", vector "collection"; default: the table's name).  A read
	 * overlays only the buffered writes made for the target the table names
	 * now (PgpolyPendingWrites): those made before an ALTER or RENAME that
	 * moved it go to the old target at COMMIT (outbox writes go where the
	 * table points at delivery: always overlaid).  NULL: every write names
	 * its target itself (Redis keys carry key_prefix).
	 */
	const char *target_option;
	/*
	 * Optional: conn's server or user mapping was dropped and its cache
	 * entry is being removed (its handle closed already); without I/O and
	 * without ERROR, free what the store keeps for conn->key elsewhere.
	 */
	void		(*forget) (struct PgpolyConnection *conn);
	/*
	 * Optional: whether foreign table relid addresses the rows that the
	 * transactional write payload, buffered through another table of the
	 * same server and user mapping, writes, so that a read of relid
	 * overlays it (PgpolyPendingWrites).  The store's overlay must then
	 * apply a write by what it does in the store, not by the table that
	 * made it (Redis: by key and field name).  Asked once per other table
	 * and PgpolyPendingWrites.  NULL: a table overlays its own writes only.
	 */
	bool		(*shares_writes) (Oid relid, void *payload);
} PgpolyStore;

/* Cache key: one connection per server and user mapping. */
typedef struct PgpolyConnKey
{
	Oid			serverid;
	Oid			umid;			/* InvalidOid when there is no mapping */
} PgpolyConnKey;

typedef struct PgpolyConnection
{
	PgpolyConnKey key;			/* hash key (must be first) */
	const PgpolyStore *store;
	void	   *handle;			/* store's handle; NULL if closed */
	char		servername[NAMEDATALEN];
	Oid			userid;			/* user it was last handed out for */
	char		target[256];	/* host:port or URL, for messages */
	bool		busy;			/* inside a request; an error now breaks it */
	bool		checked;		/* opened with the trust rule's check that
								 * the store asks for the credential */
	bool		invalidated;	/* server or mapping changed */
	bool		closed_used;	/* a handle this transaction used was closed:
								 * reopening it with other options would
								 * mix them (check_outdated) */
	uint64		options_hash;	/* of the options the handle was opened with */
	bool		watching;		/* holds session state of this transaction
								 * (Redis WATCH) that only a successful
								 * COMMIT clears: else released at its end
								 * (PgpolyStore.end_session) or closed */
	int			watch_level;	/* the outermost subtransaction level that
								 * made it (PgpolyConnectionsAtSubEnd) */
	bool		flush_settled;	/* the COMMIT-time flush failed with an
								 * outcome the store knows (its ERROR says
								 * what was written): not in doubt */
	uint32		server_hashvalue;
	uint32		mapping_hashvalue;
	int64		requests;
	int64		errors;
	int			connect_timeout_ms;
	int			timeout_ms;
	List	   *writes;			/* pending PgpolyWrite, TopTransactionContext */
	List	   *secrets;		/* char *: the mapping's secret option values,
								 * TopMemoryContext; masked by PgpolyPrintable */
} PgpolyConnection;

extern PgpolyConnection *PgpolyGetConnection(const PgpolyStore *store,
											 ForeignServer *server,
											 UserMapping *user);
extern PgpolyConnection *PgpolyGetConnectionEntry(const PgpolyStore *store,
												  ForeignServer *server,
												  UserMapping *user);
extern UserMapping *PgpolyGetUserMapping(Oid userid, Oid serverid);
extern bool PgpolyMustProveCredential(UserMapping *user);
extern void PgpolyCredentialNotRequested(PgpolyConnection *conn,
										 const char *how);
extern void PgpolyEnsureConnected(PgpolyConnection *conn);
extern PgpolyConnection *PgpolyOpenSibling(PgpolyConnection *conn);
extern void PgpolyCloseSibling(PgpolyConnection *sibling);
extern void PgpolyBeginRequest(PgpolyConnection *conn);
extern void PgpolyEndRequest(PgpolyConnection *conn);
extern void PgpolyConnectionsAtXactEnd(bool isCommit);
extern List *PgpolyWatchingConnections(void);
extern void PgpolyConnectionsAtSubEnd(bool isCommit);
extern void PgpolyConnectionInit(void);
extern size_t PgpolySecretAt(const char *text, size_t len);

/* ----------------------------------------------------------------
 *		Interruptible waits (wait.c)
 * ----------------------------------------------------------------
 */
#define PGPOLY_WAIT_READ	0x01
#define PGPOLY_WAIT_WRITE	0x02

extern TimestampTz PgpolyDeadline(int timeout_ms);
extern int	PgpolyWaitSocket(pgsocket sock, int events, TimestampTz deadline,
							 long max_sleep_ms);
extern int	PgpolyWaitSockets(int n, const pgsocket *socks, const int *events,
							  TimestampTz deadline, long max_sleep_ms,
							  int *ready);

typedef struct PgpolyWaitSet PgpolyWaitSet;
extern PgpolyWaitSet *PgpolyWaitSetCreate(MemoryContext cxt);
extern void PgpolyWaitSetForget(PgpolyWaitSet *ws);
extern void PgpolyWaitSetFree(PgpolyWaitSet *ws);
extern int	PgpolyWaitSetWait(PgpolyWaitSet *ws, int n, const pgsocket *socks,
							  const int *events, TimestampTz deadline,
							  long max_sleep_ms, int *ready);

/* ----------------------------------------------------------------
 *		Resolved foreign tables, cached per backend (tablecache.c)
 * ----------------------------------------------------------------
 */
/* Resolves a table from the catalogs, in the current memory context. */
typedef void *(*PgpolyTableLoader) (Oid relid, Oid userid);
typedef struct PgpolyTableCache PgpolyTableCache;
extern PgpolyTableCache *PgpolyTableCacheCreate(const char *name,
												PgpolyTableLoader load);
extern void *PgpolyTableCacheGet(PgpolyTableCache *cache, Oid relid, Oid userid);

/* ----------------------------------------------------------------
 *		HTTP client of the REST stores (http.c)
 * ----------------------------------------------------------------
 */
typedef struct PgpolyHttp PgpolyHttp;

typedef struct PgpolyHttpConfig
{
	List	   *urls;			/* char *: base URLs, failover order */
	const char *username;		/* basic auth, or NULL */
	const char *password;
	List	   *headers;		/* char *: "Name: value" carrying credentials
								 * (an API key) */
	List	   *secrets;		/* char *: never quoted (PgpolyHttpExcerpt) */
	const char *ca_file;
	bool		verify_tls;
	const char *probe_path;		/* the trust rule: GET it without credentials
								 * from each URL before its first request,
								 * and go on only if that is refused (401,
								 * 403); NULL: no check */
} PgpolyHttpConfig;

typedef struct PgpolyHttpResponse
{
	long		status;
	char	   *body;			/* palloc'd, NUL-terminated */
	size_t		len;
} PgpolyHttpResponse;

extern PgpolyHttp *PgpolyHttpOpen(const PgpolyHttpConfig *cfg);
extern void PgpolyHttpClose(PgpolyHttp *h);
extern const char *PgpolyHttpBaseUrl(PgpolyHttp *h);
extern void PgpolyHttpRequest(PgpolyConnection *conn, PgpolyHttp *h,
							  const char *method, const char *path,
							  const char *body, size_t len,
							  const char *content_type, int retries,
							  PgpolyHttpResponse *resp);
extern List *PgpolySplitUrls(const char *urls);
extern void PgpolyCheckUrls(const char *option, const char *value,
							const char *servername);
extern List *PgpolyServerUrls(ForeignServer *server, const char *dflt);
extern int	PgpolyHttpStatusErrcode(long status);
extern bool PgpolyHttpRetried(long status);
extern long PgpolyHttpTryRequest(PgpolyConnection *conn, PgpolyHttp *h,
								 const char *method, const char *path,
								 const char *body, TimestampTz deadline);
extern char *PgpolyHttpExcerpt(PgpolyConnection *conn, const char *text,
							   size_t len);

/* ----------------------------------------------------------------
 *		Transaction write buffer (xact.c)
 * ----------------------------------------------------------------
 */

/*
 * One buffered write.  The payload is the store's; the core only tracks
 * which table and (sub)transaction it belongs to.  Both live in
 * TopTransactionContext, so they vanish with the transaction.
 */
typedef struct PgpolyWrite
{
	Oid			relid;
	int			level;			/* subtransaction nest level that wrote it */
	bool		outbox;			/* write_mode 'outbox': seen by the
								 * transaction's reads, never sent */
	const char *target;			/* the table's target when it was written
								 * (PgpolyStore.target_option), or NULL
								 * (outbox: where the table points when it
								 * is delivered) */
	void	   *payload;
} PgpolyWrite;

/* A foreign table's write_mode option. */
typedef enum PgpolyWriteMode
{
	PGPOLY_WRITE_TRANSACTIONAL,	/* buffered, sent at COMMIT */
	PGPOLY_WRITE_IMMEDIATE,		/* sent in batches while the statement runs */
	PGPOLY_WRITE_OUTBOX			/* buffered, queued at COMMIT for the sync
								 * worker, which delivers it */
} PgpolyWriteMode;

extern PgpolyWriteMode PgpolyTableWriteMode(List *options);
extern void PgpolyDeliverOutbox(void);
extern bool PgpolyIsSyncWorker(void);
extern void PgpolyDeliveringChanges(bool on);
extern bool PgpolyChangesDelivered(void);

/*
 * Where one statement's writes to one table go (write_mode): into the
 * transaction buffer, or for 'immediate' into batches of batch_size that
 * send() transmits while the statement runs.  Stores build each payload in
 * PgpolyWriterContext(), hand it to PgpolyWriterAdd(), and call
 * PgpolyWriterEndRow() once the row's payloads are all added.  In outbox
 * mode the payloads are buffered like transactional ones, for the
 * transaction's reads (and the stores' checks) only: the row changes that
 * the outbox queues are captured by the core (PgpolyModifyOutbox).
 */
typedef void (*PgpolySendWrites) (PgpolyConnection *conn, List *payloads);

typedef struct PgpolyWriter
{
	PgpolyConnection *conn;
	Oid			relid;
	bool		transactional;	/* buffered: transactional or outbox */
	bool		outbox;
	const char *target;			/* transactional: the table's target, in
								 * TopTransactionContext (or NULL) */
	int			batch_size;
	PgpolySendWrites send;		/* immediate mode */
	List	   *pending;		/* immediate mode: payloads not yet sent */
	MemoryContext batch_cxt;	/* immediate mode: their memory */
	bool		in_row;			/* a row's payloads are being added */
	int64		sent;			/* immediate mode: payloads sent by earlier
								 * flushes of this statement */
	bool		listed;			/* in the list of unsent batches (xact.c) */
	bool		held;			/* immediate mode: send at PgpolyModifyEnd,
								 * or once *held_until (PgpolyModifyBegin:
								 * rows an UPDATE moves into a partition it
								 * updates) */
	const bool *held_until;		/* held: the UPDATE's node is done (its
								 * ModifyTableState's mt_done) */
	SubTransactionId subid;		/* the subtransaction that listed it */
	dlist_node	unsent_node;	/* its place there */
	MemoryContextCallback forget;	/* unlists it when batch_cxt goes */
	MemoryContextCallback running;	/* immediate: uncounts it when its
									 * statement's memory goes */
} PgpolyWriter;

/*
 * Writes to a store without transactions sent in several requests: while a
 * later request is sent, an error context says how many were applied by the
 * earlier requests (they stay: nothing rolls them back) and how many come
 * after it (not sent if it fails).  PgpolySendProgressPush() pushes it
 * when applied > 0; PgpolySendProgressPop() pops it (on success).
 */
typedef struct PgpolySendProgress
{
	const char *prefix;			/* "Elasticsearch has no rollback" */
	const char *unit;			/* "action", "record", "write" */
	const char *of;				/* "these writes", "this statement" */
	const char *via;			/* "earlier _bulk requests" */
	int64		applied;		/* in the requests answered before */
	int64		later;			/* after the request being sent */
	bool		pushed;
	ErrorContextCallback cb;
} PgpolySendProgress;

/*
 * An open scan reading a store page by page where a write sent meanwhile
 * would move its unread rows (pages by offset: a delete shifts them below
 * the next page, an insert adds one it would read).  Before an
 * immediate-mode batch is sent (PgpolyWriterFlush), each open paged scan of
 * the batch's store and target reads its remaining pages (drain), so it
 * returns the rows held before the write, as a native scan shows none of
 * the writes the functions of its query make.  Embedded in the scan's
 * state, in memory cxt given to PgpolyPagedScanOpen (xact.c).
 */
typedef void (*PgpolyDrainPages) (void *arg);

/* Whether a write to foreign table relid may reach the scan's unread rows. */
typedef bool (*PgpolyWriteReaches) (void *arg, Oid relid);

typedef struct PgpolyPagedScan
{
	const PgpolyStore *store;
	const char *target;			/* PgpolyStore.target_option's value, or
								 * NULL: any target of store */
	PgpolyWriteReaches reaches; /* or NULL: the target says */
	PgpolyDrainPages drain;
	void	   *arg;
	bool		listed;			/* in the list of open paged scans */
	dlist_node	node;			/* its place there */
	MemoryContextCallback forget;	/* unlists it when its memory goes */
} PgpolyPagedScan;

extern void PgpolyPagedScanOpen(PgpolyPagedScan *ps, const PgpolyStore *store,
								const char *target, PgpolyWriteReaches reaches,
								PgpolyDrainPages drain, void *arg,
								MemoryContext cxt);
extern void PgpolyPagedScanClose(PgpolyPagedScan *ps);

extern void PgpolySendProgressPush(PgpolySendProgress *p);
extern void PgpolySendProgressPop(PgpolySendProgress *p);
extern void PgpolyWriterInit(PgpolyWriter *w, PgpolyConnection *conn, Oid relid,
							 PgpolyWriteMode mode, int batch_size,
							 PgpolySendWrites send, MemoryContext parent);
extern MemoryContext PgpolyWriterContext(PgpolyWriter *w);
extern void PgpolyWriterAdd(PgpolyWriter *w, void *payload);
extern void PgpolyWriterEndRow(PgpolyWriter *w);
extern void PgpolyWriterFlush(PgpolyWriter *w);
extern void PgpolySendUnsentWrites(PgpolyWriter *except, Oid relid);
extern bool PgpolyImmediateWritesRunning(void);
extern List *PgpolyPendingWrites(PgpolyConnection *conn, Oid relid);
extern MemoryContext PgpolyWriteContext(void);
extern void PgpolyXactInit(void);

/*
 * One row change of a table in write_mode 'outbox', as the sync worker will
 * deliver it: an upsert of the whole row, an update of some columns, or a
 * delete, of the row whose identity (Redis key, _id, id) is key.  Values
 * are in the fixed text form of convert.c; NULL is SQL NULL.  Lives in
 * TopTransactionContext until COMMIT queues it (SyncQueueChanges).
 */
#define PGPOLY_CHANGE_UPSERT	'u'
#define PGPOLY_CHANGE_UPDATE	'p'
#define PGPOLY_CHANGE_DELETE	'd'

typedef struct PgpolyChange
{
	Oid			relid;
	Oid			userid;			/* whose write: its user mapping delivers it */
	int			level;			/* subtransaction nest level */
	char		op;				/* PGPOLY_CHANGE_* */
	AttrNumber	key_att;		/* the identity column */
	char	   *key;			/* identity, fixed text form */
	int			ncols;			/* upsert, update: the columns written */
	AttrNumber *atts;			/* (shared by the changes of a statement) */
	char	  **values;
} PgpolyChange;

extern void PgpolyAddChange(PgpolyChange *change);
extern bool PgpolyChangesPending(void);
extern void SyncQueueChanges(List *changes);	/* sync_outbox.c */
extern void PgpolyCheckOutboxDrained(Oid relid);	/* sync_outbox.c */
extern bool PgpolyLockKeys(Oid relid, char **keys, const size_t *lens, int n,
						   bool wait);	/* keylock.c */

/* A store's table descriptor loader: relid as seen by userid. */
typedef void *(*PgpolyLoadTable) (Oid relid, Oid userid);

extern void *PgpolyXactTable(Oid relid, Oid userid, PgpolyLoadTable load);

/* ----------------------------------------------------------------
 *		Scan and modify lifecycle (lifecycle.c)
 * ----------------------------------------------------------------
 */

/*
 * What the core keeps of one foreign scan node.  A store's scan state
 * embeds it as its first member; PgpolyScanBegin() allocates the whole
 * state in the executor's query memory.
 */
typedef struct PgpolyScanState
{
	Oid			relid;			/* the foreign table scanned */
	Oid			userid;			/* whose user mapping: the plan's checkAsUser */
	PgpolyConnection *conn;		/* NULL under EXPLAIN without ANALYZE */
	MemoryContext scan_cxt;		/* the current (re)scan's state */
	MemoryContext row_cxt;		/* the current row's (or round's) datums */
	List	   *pending;		/* read-your-writes: the PgpolyWrite * of
								 * relid buffered when the node started */
	bool		started;		/* the current (re)scan has started */
} PgpolyScanState;

extern bool PgpolyScanRowMarked(struct EState *estate, Index rti,
								const PgpolyStore *store, const char *hint);
extern void *PgpolyScanBegin(Size size, const PgpolyStore *store,
							 struct ForeignScanState *node, int eflags);
extern MemoryContext PgpolyScanStart(PgpolyScanState *ss);
extern MemoryContext PgpolyScanRow(PgpolyScanState *ss);
extern void PgpolyScanRescan(PgpolyScanState *ss);
extern void PgpolyScanEnd(PgpolyScanState *ss);

/* Junk (row identity) columns a store asks for, at most this many. */
#define PGPOLY_MAX_JUNK 4

/*
 * What the core keeps of one modification of one foreign table (a
 * ModifyTable result relation, COPY FROM, or a partition INSERT routes
 * to).  A store's modify state embeds it as its first member.
 */
struct PgpolyOutboxCapture;

typedef struct PgpolyModifyState
{
	Oid			relid;
	Oid			userid;			/* whose user mapping: the plan's checkAsUser */
	PgpolyConnection *conn;		/* outbox: not connected by the core */
	bool		transactional;	/* write_mode: buffered (transactional or
								 * outbox) */
	bool		outbox;			/* write_mode 'outbox' */
	struct PgpolyOutboxCapture *capture;	/* outbox: set up by the first row */
	int			batch_size;
	bool		do_nothing;		/* INSERT ... ON CONFLICT DO NOTHING */
	Bitmapset  *updated;		/* UPDATE: the attnums the row writes (see
								 * PgpolyModifyUpdatedColumns) */
	Bitmapset  *assigned;		/* UPDATE: the attnums the statement assigns */
	AttrNumber	old_row;		/* UPDATE with BEFORE ROW UPDATE triggers:
								 * the whole old row in the plan's rows */
	AttrNumber	junk[PGPOLY_MAX_JUNK];	/* the store's identity columns in
										 * the plan's rows (0: absent) */
	AttrNumber	junk_row;		/* the whole old row, or 0 */
	List	   *plan_tlist;		/* UPDATE, DELETE: the plan's rows' columns */
	struct ResultRelInfo *rinfo;	/* the table's, for its partition bounds */
	bool		joined;			/* UPDATE ... FROM, DELETE ... USING: a row
								 * may come up more than once */
	struct HTAB *met;			/* joined: the identities modified so far
								 * (PgpolyModifyAgain) */
	PgpolyWriter writer;
	MemoryContext row_cxt;		/* one row's (or batch's) temporary data */
	bool		written_row;	/* every INSERT and UPDATE row goes through
								 * PgpolyReturnWrittenRow (set by the store) */
	struct PgpolyModifyState *routed;	/* UPDATE: the INSERT of the rows
										 * it moves into this partition */
	bool		inserting;		/* INSERT, COPY FROM or tuple routing */
	AttrNumber	id_atts[PGPOLY_MAX_JUNK];	/* the columns junk[i] carry (the
											 * first 0: an INSERT's rows have
											 * no identity, note_inserted) */
	struct HTAB *inserted;		/* UPDATE, DELETE: the identities of the rows
								 * INSERTs wrote meanwhile (note_inserted),
								 * or NULL */
	dlist_node	modifying_node; /* UPDATE, DELETE: in the list of them */
	bool		modifying_listed;	/* there */
	SubTransactionId modifying_subid;	/* the subtransaction listing it */
	MemoryContextCallback unlist;	/* unlists it when its statement ends */
} PgpolyModifyState;


extern void *PgpolyModifyBegin(Size size, const PgpolyStore *store,
							   struct ModifyTableState *mtstate,
							   struct ResultRelInfo *rinfo, List *fdw_private,
							   int default_batch_size, PgpolySendWrites send);
extern void PgpolyModifyFindJunk(PgpolyModifyState *ms, const char *const *names,
								 const AttrNumber *atts);
extern void *PgpolyDirectModifyBegin(Size size, const PgpolyStore *store,
									 struct EState *estate,
									 struct ResultRelInfo *rinfo,
									 List *assigned, int default_batch_size,
									 PgpolySendWrites send);
extern void *PgpolyModifyTable(PgpolyModifyState *ms, PgpolyLoadTable load);
extern MemoryContext PgpolyModifyRow(PgpolyModifyState *ms);
extern Datum PgpolyModifyJunk(PgpolyModifyState *ms, int i,
							  struct TupleTableSlot *planSlot, bool *isnull);
/* Fill values/nulls with the row a read finds after write (a store's). */
typedef void (*PgpolyWrittenRow) (PgpolyModifyState *ms, void *write,
								  Datum *values, bool *nulls);
extern void PgpolyStoreRow(struct EState *estate, struct TupleTableSlot *slot,
						   Datum *values, bool *nulls);
extern void PgpolyReturnWrittenRow(PgpolyModifyState *ms, struct EState *estate,
								   struct TupleTableSlot *slot,
								   PgpolyWrittenRow fill, void *write);
extern void PgpolyModifyOldRow(PgpolyModifyState *ms,
							   struct TupleTableSlot *slot,
							   struct TupleTableSlot *planSlot, Relation rel);
extern void PgpolyModifyUpdatedColumns(PgpolyModifyState *ms,
									   struct TupleTableSlot *slot,
									   struct TupleTableSlot *planSlot);
extern void PgpolyModifyingAbort(SubTransactionId subid);
extern bool PgpolyModifyReplaced(PgpolyModifyState *ms, Datum *values, bool *nulls);
extern bool PgpolyModifyAgain(PgpolyModifyState *ms,
							   struct TupleTableSlot *planSlot);
extern void PgpolyModifyCheckRow(PgpolyModifyState *ms, struct EState *estate,
								 struct TupleTableSlot *slot, CmdType op);
extern void PgpolyModifyMovedIn(PgpolyModifyState *ms, struct HTAB *moves,
								AttrNumber att, struct TupleTableSlot **slots, int n,
								const char *relname, const char *store,
								const char *what);
extern void PgpolyModifyEnd(PgpolyModifyState *ms);
extern void PgpolyModifyOutbox(PgpolyModifyState *ms, CmdType op,
							   struct TupleTableSlot *slot,
							   struct TupleTableSlot *planSlot);
/*
 * A store's INSERT of n rows (one, or an executor batch): sets inserted[i]
 * to whether row i was (ON CONFLICT DO NOTHING skips rows that exist).
 * Runs in the modification's row context.
 */
typedef void (*PgpolyInsertRows) (PgpolyModifyState *ms, struct EState *estate,
								  struct TupleTableSlot **slots, int n,
								  bool *inserted);

extern struct TupleTableSlot *PgpolyExecInsert(PgpolyModifyState *ms,
											   struct EState *estate,
											   struct TupleTableSlot *slot,
											   PgpolyInsertRows insert_rows);
extern struct TupleTableSlot **PgpolyExecBatchInsert(PgpolyModifyState *ms,
													 struct EState *estate,
													 struct TupleTableSlot **slots,
													 int *numSlots,
													 PgpolyInsertRows insert_rows);
extern void PgpolyPlanOnConflict(struct ModifyTable *plan, Oid relid);
extern PgpolyConnection *PgpolyTableConnection(const PgpolyStore *store,
											   Oid relid, Oid userid);
extern void PgpolyRegisterStore(const PgpolyStore *store);
extern const PgpolyStore *PgpolyStoreOf(Oid relid);
extern void PgpolyLifecycleInit(void);

/* ----------------------------------------------------------------
 *		Datums <-> store text under fixed settings (convert.c)
 * ----------------------------------------------------------------
 */

/* Conversions that never read the session's settings. */
typedef enum PgpolyConvKind
{
	PGPOLY_CONV_GENERIC,		/* I/O functions, in a fixed-settings scope */
	PGPOLY_CONV_TEXT,			/* text, varchar */
	PGPOLY_CONV_BYTEA,
	PGPOLY_CONV_FLOAT4,
	PGPOLY_CONV_FLOAT8,
	PGPOLY_CONV_DATE,
	PGPOLY_CONV_TIMESTAMP,
	PGPOLY_CONV_TIMESTAMPTZ,
	PGPOLY_CONV_INTERVAL,
	PGPOLY_CONV_INT2,
	PGPOLY_CONV_INT4,
	PGPOLY_CONV_INT8
} PgpolyConvKind;

/* How values of one type (a column's) become store text and back. */
typedef struct PgpolyConv
{
	Oid			typid;
	int32		typmod;
	Oid			basetype;		/* typid, or a domain's base type */
	int32		basetypmod;		/* typmod, or a domain's base typmod */
	bool		is_domain;
	const char *name;			/* column name for messages, or NULL */
	PgpolyConvKind kind;		/* fast path of the base type */
	bool		out_settings;	/* the output function reads the settings */
	bool		in_settings;	/* the input function reads the settings */
	bool		in_fast;		/* input of the fixed form never reads them */
	bool		is_array;		/* basetype is an array type */
	bool		is_json;		/* basetype (or its element type) is json or jsonb */
	bool		money;			/* its I/O needs lc_monetary 'C' (PgpolyWithCMoney) */
	bool		qualify;		/* its output needs qualified object names
								 * (PgpolyWithQualifiedNames) */
	FmgrInfo	infn;
	Oid			ioparam;
	FmgrInfo	outfn;
	void	   *domain_extra;	/* domain_check's cache */
	MemoryContext mcxt;			/* where the caches live */
} PgpolyConv;

extern void PgpolyConvInit(PgpolyConv *conv, Oid typid, int32 typmod,
						   const char *name);
extern char *PgpolyDatumToText(PgpolyConv *conv, Datum value, size_t *len);
extern void PgpolyCheckByteaHex(size_t n, PgpolyConv *conv);
extern char *PgpolyDatumToBytes(PgpolyConv *conv, Datum value, size_t *len);

/* Bytes of the buffer PgpolyDatumBytesRef writes a number or date/time to */
#define PGPOLY_FORM_BUFSIZE 129
extern const char *PgpolyDatumBytesRef(PgpolyConv *conv, Datum value,
									   char *buf, size_t *len);
extern Datum PgpolyTextToDatum(PgpolyConv *conv, const char *s, size_t len);
extern Datum PgpolyServerTextToDatum(PgpolyConv *conv, const char *s, size_t len);
extern const char *PgpolyStoreToServer(const char *s, size_t *len, const char *what);
extern const char *PgpolyStoreToServerOrNull(const char *s, size_t *len,
											  const char *what);
extern const char *PgpolyServerToStore(const char *s, size_t *len, bool strict);
extern const char *PgpolyServerToStoreCstr(const char *s, bool strict);
extern const char *PgpolyStoreToServerCstr(const char *s, const char *what);
extern bool PgpolyStoreConverts(void);
extern bool PgpolyStoreOrderIsByteOrder(void);
extern bool PgpolyStoreTextConverts(const char *s, size_t len);
extern Datum PgpolyJsonbFromServerText(const char *json, size_t len, List **nuls);
extern Datum PgpolyBytesToDatum(PgpolyConv *conv, const char *s, size_t len);
extern Datum PgpolyNullDatum(PgpolyConv *conv);
extern void PgpolyFixedSettingsEnter(void);
extern void PgpolyFixedSettingsLeave(void);
extern bool PgpolyFixedSettingsActive(void);
extern void PgpolyWithCMoney(void (*fn) (void *), void *arg);
extern bool PgpolyTypeHasMoney(Oid typid);
extern void PgpolyWithQualifiedNames(void (*fn) (void *), void *arg);
extern bool PgpolyTypeHasObjectNames(Oid typid);
extern bool PgpolyKeyEqualityIsByteEquality(Oid opno, Oid keytype, int32 keytypmod,
											Oid valtype, Oid collid, const char **why);
extern bool PgpolyValueHasColumnForm(Oid coltype, Oid valtype);
extern bool PgpolyKeyValueFits(PgpolyConv *key, PgpolyConv *valconv, Datum value);
extern bool PgpolyFloat8Bound(Datum value, Oid typid, int *strategy,
							  double *bound);
extern char *PgpolyPrintable(const char *s, size_t len, size_t max);

/* ----------------------------------------------------------------
 *		JSON <-> datum (json.c)
 * ----------------------------------------------------------------
 */
struct JsonbValue;
extern Datum PgpolyJsonbFromText(const char *json, int len);
extern Datum PgpolyJsonbFromStore(const char *json, size_t len, List **nuls);
extern bool PgpolyJsonNulAt(List *nuls, const char *path);
extern bool PgpolyJsonNulUnplaced(List *nuls);
extern void PgpolyJsonNulError(const char *what, const char *field,
							   PgpolyConv *conv) pg_attribute_noreturn();
extern char *PgpolyJsonbFieldText(Datum jsonb, const char *field,
								  bool to_array, size_t *len);
/* How a column's field option names a value of a JSON document. */
typedef enum PgpolyFieldPath
{
	PGPOLY_FIELD_KEY,			/* one top-level key, dots included */
	PGPOLY_FIELD_PATH,			/* "a.b": the key "a.b", else a's b */
	PGPOLY_FIELD_EVERY			/* every spelling of a dotted path, as
								 * Elasticsearch indexes it: two are an
								 * ERROR */
} PgpolyFieldPath;

extern char *PgpolyJsonbColumnText(Datum jsonb, const char *field, PgpolyFieldPath how,
								   const PgpolyConv *conv, size_t *len);
extern char *PgpolyJsonFieldVerbatim(const char *json, size_t len, const char *field,
									 bool nested, size_t *outlen);
extern char *PgpolyJsonbFieldValues(Datum jsonb, const char *field, PgpolyFieldPath how,
									const PgpolyConv *conv, bool typed, size_t *len);
extern void PgpolyJsonAppendValue(StringInfo buf, Datum value, Oid typid,
								  bool isnull);
extern void PgpolyJsonbValue(struct JsonbValue *jv, Datum value, Oid typid,
							 bool isnull);
extern void PgpolyJsonEscape(StringInfo buf, const char *s, size_t len);

/* jansson documents owned by a memory context (freed with it, on any path) */
struct json_t;
extern struct json_t *PgpolyJsonParse(PgpolyConnection *conn, const char *text,
									  size_t len, const char *what);
extern struct json_t *PgpolyJsonOwn(struct json_t *doc);
/* What PgpolyJsonTopLevelScan looks for (the keys) and found. */
typedef struct PgpolyJsonTopLevel
{
	const char *bool_key;		/* a boolean member, or NULL */
	const char *array_key;		/* an array member, or NULL */
	const char *inner_key;		/* an integer member of the objects inside
								 * its elements, or NULL */
	long		inner_lo;		/* the range of inner_key values counted */
	long		inner_hi;
	bool		found;			/* bool_key is there, a boolean */
	bool		value;			/* its value */
	int			elements;		/* elements of array_key's array, or -1 */
	int			inner_count;	/* elements that are objects of objects,
								 * each with inner_key members all in the
								 * range (at least one) */
	const char *reject_key;		/* a member of those objects that keeps an
								 * element from counting, or NULL */
	const char *match_key;		/* a string member each of those objects
								 * must have, equal to match_values[i] in
								 * element i, or NULL */
	char	  **match_values;
	int			nmatch;			/* match_values' length */
} PgpolyJsonTopLevel;

extern bool PgpolyJsonTopLevelScan(const char *json, size_t len,
								   PgpolyJsonTopLevel *out);

/* ----------------------------------------------------------------
 *		Hash tables keyed by bytes anyone may choose (keyhash.c)
 * ----------------------------------------------------------------
 */

/*
 * A key (a Redis key, a row identity, a document id) as hash tables see
 * it: bytes and their length (any byte, NUL included), kept by pointer,
 * not copied.
 */
typedef struct PgpolyKeyRef
{
	const char *key;
	size_t		len;
} PgpolyKeyRef;

extern uint64 PgpolyKeyHashSecret[2];
extern bool PgpolyKeyHashSeeded;

extern void PgpolyKeyHashSeed(void);
extern struct HTAB *PgpolyKeyTable(const char *name, Size entrysize,
								   MemoryContext cxt);
extern void *PgpolyKeyTableEnter(struct HTAB *table, MemoryContext cxt,
								 const char *key, size_t len, bool *found);
extern void *PgpolyKeyTableFind(struct HTAB *table, const char *key, size_t len);

/*
 * An entry of PgpolyModifyState.inserted: a row an INSERT wrote in
 * subtransaction subid.
 */
typedef struct PgpolyInsertedRow
{
	PgpolyKeyRef id;			/* hash key (PgpolyKeyTable) */
	SubTransactionId subid;
} PgpolyInsertedRow;

/*
 * The rows an UPDATE that may move rows has met (PgpolyMoves), by where
 * they now are: moved_onto when an earlier row of the statement was moved
 * there.
 */
typedef struct PgpolyHeldRow
{
	PgpolyKeyRef id;			/* hash key (PgpolyKeyTable) */
	bool		moved_onto;
	bool		held_in;		/* moved_onto by a row moved into the table
								 * and held (PgpolyMoveIn) */
} PgpolyHeldRow;

/* PgpolyMoveRow: a row of an UPDATE moved onto another row of it, or not. */
typedef enum PgpolyMoveCheck
{
	PGPOLY_MOVE_OK,
	PGPOLY_MOVED_ONTO_OLD,		/* the row's old identity was moved onto */
	PGPOLY_MOVED_ONTO_NEW		/* its new identity holds a row met */
} PgpolyMoveCheck;

extern struct HTAB *PgpolyMoves(MemoryContext cxt);
extern PgpolyMoveCheck PgpolyMoveRow(struct HTAB *moves, MemoryContext cxt,
									 const char *o, size_t olen,
									 const char *n, size_t nlen);
extern PgpolyMoveCheck PgpolyMoveIn(struct HTAB *moves, MemoryContext cxt,
									const char *n, size_t nlen, bool held);
extern void PgpolyMovedOntoError(const char *relname, const char *store,
								 PgpolyMoveCheck how, const char *identity) pg_attribute_noreturn();

/*
 * One step of PgpolyKeyHash: mix the 64-bit word w into h, the 128-bit
 * product of h ^ w and the secret multiplier m folded to 64 bits.  A change
 * of the input changes the result by an amount that depends on the secret
 * (and on carries), so the next word cannot undo it but by knowing m.
 */
static inline uint64
pgpoly_key_mix(uint64 h, uint64 w, uint64 m)
{
#ifdef HAVE_INT128
	uint128		p = (uint128) (h ^ w) * m;

	return (uint64) p ^ (uint64) (p >> 64);
#else
	uint64		a = h ^ w;
	uint64		b = m;
	uint64		lo = (a & 0xffffffff) * (b & 0xffffffff);
	uint64		m1 = (a >> 32) * (b & 0xffffffff);
	uint64		m2 = (a & 0xffffffff) * (b >> 32);
	uint64		mid = (lo >> 32) + (m1 & 0xffffffff) + (m2 & 0xffffffff);

	return (a * b) ^ ((a >> 32) * (b >> 32) + (m1 >> 32) + (m2 >> 32) + (mid >> 32));
#endif
}

/*
 * Hash of a key's bytes, seeded (PgpolyKeyHashSeed must have run): eight
 * at a time, multiplied and folded, then murmur's 64-bit finalizer.  A
 * quarter of hash_bytes' instructions for the 10-40 byte keys of a table,
 * with the same spread over the slots.
 */
static inline uint32
PgpolyKeyHash(const char *key, size_t len)
{
	uint64		h = PgpolyKeyHashSecret[0] ^ len;
	const uint64 m = PgpolyKeyHashSecret[1];
	uint64		w;

	Assert(PgpolyKeyHashSeeded);

	for (; len >= 8; key += 8, len -= 8)
	{
		memcpy(&w, key, 8);
		h = pgpoly_key_mix(h, w, m);
	}
	if (len > 0)
	{
		/* the last 1-7 bytes, without a call to memcpy */
		w = 0;
		for (size_t i = 0; i < len; i++)
			w |= (uint64) (unsigned char) key[i] << (8 * i);
		h = pgpoly_key_mix(h, w, m);
	}
	h ^= h >> 33;
	h *= UINT64CONST(0xc4ceb9fe1a85ec53);
	h ^= h >> 33;
	return (uint32) h;
}

/* ----------------------------------------------------------------
 *		Module (pgpoly.c)
 * ----------------------------------------------------------------
 */
extern int	pgpoly_max_response_kb;

extern void PgpolyMaterializedSRF(FunctionCallInfo fcinfo);

/* The size of a transparent huge page (x86-64, arm64 with 4 kB pages). */
#define PGPOLY_HUGE_PAGE	(2 * 1024 * 1024)
extern void *PgpolyAllocHugePages(MemoryContext cxt, Size size, void **chunk);

/* Initialisers called from _PG_init (hooks, GUCs of one area). */
extern void RedisJoinInit(void);
extern void RedisStreamInit(void);	/* pgpoly.redis_stream_threshold */
extern void SyncInit(void);		/* sync_launch.c: before the prefix is reserved */
extern void PgpolyFeaturesInit(void);	/* features.c: cache invalidation */

/* ----------------------------------------------------------------
 *		Direct insertion, as COPY inserts (directinsert.c)
 * ----------------------------------------------------------------
 */
extern bool PgpolyMayInsert(Oid relid);
extern bool PgpolyDirectInsertRefused(Relation rel, struct RangeTblEntry *rte);
extern bool PgpolyDirectInsertPartitionRefused(struct ResultRelInfo *part);
extern struct ExprState **PgpolyDirectInsertDefaults(Relation rel,
													 struct RangeTblEntry *rte);
extern void PgpolyDirectInsertBatch(struct ResultRelInfo *rri, struct EState *estate,
									struct TupleTableSlot **slots, int n, CommandId cid);

/* The stores, registered with the core by _PG_init. */
extern const PgpolyStore RedisStore;
extern const PgpolyStore ElasticStore;
extern const PgpolyStore VectorStore;

#define PGPOLY_MAX_RESPONSE_BYTES ((Size) pgpoly_max_response_kb * 1024)

#endif							/* PGPOLY_H */
