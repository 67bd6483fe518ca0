/*-------------------------------------------------------------------------
 *
 * sync.h
 *		  Internal API of the sync (outbox) files.
 *
 * sync.c			the SQL functions: create_sync, drop_sync, sync_wait,
 *					sync_retry; definitions and the delivery SQL of a sync
 * sync_capture.c	the capture trigger and the queue writer
 * sync_outbox.c	tables in write_mode 'outbox': their changes queued at
 *					COMMIT, and their batches in the worker
 * sync_launch.c	starting and waking the per-database worker, the launcher
 * sync_worker.c	the worker: batches, delivery, backoff, dead letters
 *
 * Invariants: a source sync's outbox holds keys, not row images, and
 * delivery re-reads the source; an outbox table's holds the row changes,
 * in commit order per key (see extension/60_sync.sql).
 *
 * src/sync.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGPOLY_SYNC_H
#define PGPOLY_SYNC_H

#include "pgpoly.h"

#include "storage/lock.h"
#include "utils/array.h"

/* bgw_type of the worker, as pg_stat_activity.backend_type shows it. */
#define SYNC_WORKER_TYPE	"pgpoly sync worker"
#define SYNC_LAUNCHER_TYPE	"pgpoly sync launcher"

/* Keys per queue entry. */
#define SYNC_CHUNK_KEYS		1000

/* GUCs (sync_launch.c) */
extern int	pgpoly_sync_batch_size;
extern int	pgpoly_sync_max_attempts;
extern int	pgpoly_sync_max_retry_delay;

/*
 * A sync as the worker and create_sync see it: the definition resolved
 * against the catalogs, and the SQL that delivers a set of keys.  Built in
 * the current memory context by SyncLoad().
 */
typedef struct SyncDef
{
	int32		id;
	char	   *name;
	Oid			source;
	Oid			target;
	Oid			owner;
	AttrNumber	key_att;		/* source key column */
	Oid			key_type;		/* its base type */
	Oid			key_array_type;
	Oid			target_key_type;
	Oid			target_key_array_type;
	char	   *upsert_sql;		/* $1 key_type[]: upsert the rows present */
	bool		key_identical;	/* equal keys are identical (see sync.c) */
	char	   *absent_sql;		/* $1 key_type[] -> target_key_type[] gone */
	char	   *delete_sql;		/* $1 target_key_type[]: delete them */
	char	   *payload_sql;	/* $1 key_type: the row as jsonb */
} SyncDef;

/* A row of pgpoly.syncs, as the worker loads it each cycle. */
typedef struct SyncRow
{
	int32		id;
	char	   *name;
	char	   *target_name;
	bool		outbox;			/* an outbox table's sync (no source) */
	Oid			source;
	Oid			target;
	Oid			owner;
	AttrNumber	key_att;
	AttrNumber	target_key_att;
	int			ncols;
	AttrNumber *satts;
	AttrNumber *tatts;
	bool		moved;			/* source or target is not the relation the
								 * attnums were recorded for (restored) */
	bool		away;			/* its home is not this database (a copy, a
								 * restore, an upgraded cluster) */
} SyncRow;

/*
 * The queue entries and keys of one batch (in the cycle's memory).  For an
 * outbox sync, items[i] is the change delivered for keys[i], and outbox
 * what sync_outbox.c knows of the batch.
 */
typedef struct Batch
{
	int64	   *entry_ids;
	int			nentries;
	char	  **keys;			/* sorted, distinct */
	void	  **items;			/* outbox: per key, its composed change */
	int			nkeys;
	int			maxkeys;
	TimestampTz queued_at;		/* oldest entry's */
	int			attempts;		/* highest of the entries */
	bool		isolated;
	bool		more;			/* more entries may be ready */
	TimestampTz next_retry;		/* earliest not_before still ahead, or 0 */
	struct OutboxBatch *outbox;
} Batch;

/* sync.c */
extern char *SyncEqualityOperator(Oid typid);
extern Datum SyncAttnumArray(const AttrNumber *atts, int n);
extern SyncDef *SyncBuildDef(int32 id, const char *name, Oid source, Oid target,
							 Oid owner, AttrNumber key_att, AttrNumber target_key_att,
							 int ncols, const AttrNumber *source_atts,
							 const AttrNumber *target_atts);
extern Oid	SyncAdminRole(void);
extern void SyncBecome(Oid role, bool restricted, Oid *save_user,
					   int *save_sec);
extern int	SyncSafeSearchPath(void);
extern char *SyncQualifiedName(Oid relid);
extern AttrNumber *SyncAttnums(Datum d, int *n);
extern AttrNumber SyncRemapColumn(const char *sync, const char *role, Oid rel,
								  const char *name, AttrNumber old);
extern void SyncResolveColumns(int32 id, SyncRow *s);
extern void SyncLockInternalTables(void);
extern void SyncClaimHome(SyncRow *s);
extern void SyncNoteColumnsChanged(Oid relid);
extern const char *const SyncFollowNamesSQL;
extern const char *const SyncFollowOwnersSQL;
extern void SyncNoteRelationRenamed(void);
extern void SyncNoteOwnedChanged(Node *stmt);

/* sync_capture.c */
typedef struct SyncKeyQueue SyncKeyQueue;
extern SyncKeyQueue *SyncKeyQueueBegin(int32 sync_id, Oid source, Oid key_type);
extern void SyncKeyQueueAdd(SyncKeyQueue *q, Datum key);
extern int64 SyncKeyQueueEnd(SyncKeyQueue *q);
extern int64 SyncQueueAllKeys(int32 sync_id, Oid source, AttrNumber key_att,
							   Oid reader);

/* sync_launch.c */
extern bool SyncIsWorker;
extern void SyncNoteQueued(void);
extern void SyncKickAtCommit(void);
extern bool SyncQueuedInXact(void);
extern void SyncKickWorker(void);
extern bool SyncWorkerRunning(void);
extern void SyncLockTag(LOCKTAG *tag, Oid dboid);

extern PGDLLEXPORT void PgpolySyncLauncherMain(Datum arg);

/* sync_outbox.c: the outbox syncs' batches (sync_worker.c runs them) */
struct OutboxBatch;
extern void SyncOutboxFetch(SyncRow *s, Batch *b, MemoryContext cxt);
extern void SyncOutboxDeliver(SyncRow *s, Batch *b);
extern void SyncOutboxConsume(SyncRow *s, Batch *b);
extern void SyncOutboxRequeue(SyncRow *s, Batch *b, Batch *part,
							  TimestampTz queued_at, int attempts,
							  TimestampTz not_before);
extern void SyncOutboxBury(SyncRow *s, Batch *b, const char *error, int attempts);

/* sync_worker.c */
extern void SyncExecute(const char *sql, int nargs, Oid *types, Datum *values,
						const char *nulls, int expect);
extern PGDLLEXPORT void PgpolySyncWorkerMain(Datum arg);

#endif							/* PGPOLY_SYNC_H */
