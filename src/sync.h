/*-------------------------------------------------------------------------
 *
 * sync.h
 *		  Internal API of the sync (outbox) files.
 *
 * sync.c			the SQL functions: create_sync, drop_sync, sync_wait,
 *					sync_retry; definitions and the delivery SQL of a sync
 * sync_capture.c	the capture trigger and the queue writer
 * sync_launch.c	starting and waking the per-database worker, the launcher
 * sync_worker.c	the worker: batches, delivery, backoff, dead letters
 *
 * Invariant: the outbox holds keys, not row images; delivery re-reads the
 * source (see extension/60_sync.sql).
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
	char	   *absent_sql;		/* $1 key_type[] -> target_key_type[] gone */
	char	   *delete_sql;		/* $1 target_key_type[]: delete them */
	char	   *payload_sql;	/* $1 key_type: the row as jsonb */
} SyncDef;

/* sync.c */
extern SyncDef *SyncBuildDef(int32 id, const char *name, Oid source, Oid target,
							 Oid owner, AttrNumber key_att, AttrNumber target_key_att,
							 int ncols, const AttrNumber *source_atts,
							 const AttrNumber *target_atts);
extern Oid	SyncAdminRole(void);
extern void SyncBecome(Oid role, bool restricted, Oid *save_user,
					   int *save_sec);
extern int	SyncFixedSettings(bool with_search_path);
extern char *SyncQualifiedName(Oid relid);

/* sync_capture.c */
typedef struct SyncKeyQueue SyncKeyQueue;
extern SyncKeyQueue *SyncKeyQueueBegin(int32 sync_id, Oid source, Oid key_type);
extern void SyncKeyQueueAdd(SyncKeyQueue *q, Datum key);
extern int64 SyncKeyQueueEnd(SyncKeyQueue *q);
extern int64 SyncQueueAllKeys(int32 sync_id, Oid source, AttrNumber key_att);

/* sync_launch.c */
extern bool SyncIsWorker;
extern void SyncNoteQueued(void);
extern void SyncKickAtCommit(void);
extern bool SyncQueuedInXact(void);
extern void SyncKickWorker(void);
extern bool SyncWorkerRunning(void);
extern void SyncLockTag(LOCKTAG *tag, Oid dboid);

extern PGDLLEXPORT void PgpolySyncLauncherMain(Datum arg);

/* sync_worker.c */
extern PGDLLEXPORT void PgpolySyncWorkerMain(Datum arg);

#endif							/* PGPOLY_SYNC_H */
