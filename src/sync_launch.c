/*-------------------------------------------------------------------------
 *
 * sync_launch.c
 *		  Starting and waking the sync worker of a database; the launcher;
 *		  the sync GUCs.
 *
 * One worker per database delivers every sync of that database.  It holds
 * a session-level advisory lock (SyncLockTag) for as long as it runs, from
 * before it connects to its database, so a second worker started by a race
 * finds the lock taken and exits, and a worker that takes seconds to
 * connect is not started again meanwhile.
 *
 * Without shared_preload_libraries pgpoly has no shared memory of its own,
 * so the worker is found, and started, through the lock and the process
 * array:
 *	- After a transaction that queued changes commits (a source table's
 *	  capture or an outbox table's COMMIT; and when create_sync,
 *	  drop_sync, sync_wait or sync_retry run), and after a COMMIT PREPARED
 *	  in a database with pgpoly (the prepared transaction may have queued
 *	  changes: its own session forgot them at PREPARE, and may be gone,
 *	  with the worker, after a restart), SyncKickWorker() tries the
 *	  lock: free means no worker, so it registers a dynamic background worker
 *	  (unless the one it registered last has not been forked yet); taken
 *	  means one runs or is connecting, and its latch is set so it delivers
 *	  at once (a connecting worker reads the queue once connected).
 *	- A worker leaves only when its database has no syncs, and it releases
 *	  the lock before its last look at pgpoly.syncs: a transaction that
 *	  commits a new sync or change either finds the lock free (and starts a
 *	  worker) or committed before that last look (and is seen).
 *
 * With shared_preload_libraries = 'pgpoly', a launcher started by the
 * postmaster (at start-up and after a crash-restart) starts a worker for
 * every database that accepts connections; a worker for a database without
 * syncs exits at once.  Workers are never restarted by the postmaster
 * (BGW_NEVER_RESTART): the launcher or the next write does it.
 *
 * src/sync_launch.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "tcop/utility.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "sync.h"

int			pgpoly_sync_batch_size = 5000;
int			pgpoly_sync_max_attempts = 5;
int			pgpoly_sync_max_retry_delay = 10000;

/* How long a session waits for a background worker slot (start_worker). */
#define SYNC_SLOT_WAIT_MS		1000

/* This transaction queued changes / must kick the worker after COMMIT. */
static bool QueuedInXact = false;
static bool KickAtCommit = false;

/* This process is a sync worker (it never kicks itself). */
bool		SyncIsWorker = false;

/*
 * The advisory lock a database's worker holds.  Field 4 is neither 1 nor 2,
 * the values pg_advisory_lock() uses, so no SQL call can take it.
 */
void
SyncLockTag(LOCKTAG *tag, Oid dboid)
{
	SET_LOCKTAG_ADVISORY(*tag, dboid, 0x7067706f, 0x73796e63, 0x5359);
}

/*
 * Register a worker for database dboid; false if no slot was free.  With
 * handle, *handle is set to the new worker's (palloc'd in the current
 * memory context).
 */
static bool
register_worker(Oid dboid, BackgroundWorkerHandle **handle)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(bgw.bgw_library_name, "pgpoly", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "PgpolySyncWorkerMain", BGW_MAXLEN);
	snprintf(bgw.bgw_name, BGW_MAXLEN, "pgpoly sync worker for database %u", dboid);
	strlcpy(bgw.bgw_type, SYNC_WORKER_TYPE, BGW_MAXLEN);
	bgw.bgw_main_arg = ObjectIdGetDatum(dboid);
	bgw.bgw_notify_pid = 0;
	return RegisterDynamicBackgroundWorker(&bgw, handle);
}

/* Pid of this database's running sync worker, or 0. */
static int
find_worker_pid(void)
{
	int		   *pids = palloc(sizeof(int) * ProcGlobal->allProcCount);
	int			n = 0;
	int			found = 0;

	LWLockAcquire(ProcArrayLock, LW_SHARED);
	for (uint32 i = 0; i < ProcGlobal->allProcCount; i++)
	{
		PGPROC	   *proc = &ProcGlobal->allProcs[i];

		if (proc->pid != 0 && proc->isBackgroundWorker &&
			proc->databaseId == MyDatabaseId && proc->pid != MyProcPid)
			pids[n++] = proc->pid;
	}
	LWLockRelease(ProcArrayLock);
	for (int i = 0; i < n && found == 0; i++)
	{
		const char *type = GetBackgroundWorkerTypeByPid(pids[i]);

		if (type && strcmp(type, SYNC_WORKER_TYPE) == 0)
			found = pids[i];
	}
	pfree(pids);
	return found;
}

/* Set the latch of this database's worker, if one runs. */
static void
wake_worker(void)
{
	static int	cached_pid = 0;
	PGPROC	   *proc = cached_pid ? BackendPidGetProc(cached_pid) : NULL;

	if (proc == NULL || !proc->isBackgroundWorker || proc->databaseId != MyDatabaseId)
	{
		cached_pid = find_worker_pid();
		proc = cached_pid ? BackendPidGetProc(cached_pid) : NULL;
	}
	/* The worker may exit meanwhile: a stale latch is harmless. */
	if (proc != NULL)
		SetLatch(&proc->procLatch);
}

/*
 * Whether this database's worker lock is free (no worker delivers).  Never
 * ERRORs.
 */
static bool
worker_lock_free(void)
{
	LOCKTAG		tag;

	SyncLockTag(&tag, MyDatabaseId);
	if (LockAcquireExtended(&tag, ExclusiveLock, true, true, false, NULL) != LOCKACQUIRE_OK)
		return false;
	LockRelease(&tag, ExclusiveLock, true);
	return true;
}

/*
 * No background worker slot was free: wait up to SYNC_SLOT_WAIT_MS for a
 * worker to hold the lock (it is woken) or for a slot (a worker is
 * registered into *last).  Sessions committing at once while no worker
 * runs all find the lock free and each registers a worker; the surplus
 * ones take slots only until they find the lock taken and exit, so a slot
 * missing now is usually back within milliseconds.  Returns whether a
 * worker runs or was started.  Sleeps without CHECK_FOR_INTERRUPTS: it
 * runs after COMMIT, where an ERROR is not allowed.
 */
static bool
wait_for_slot(BackgroundWorkerHandle **last)
{
	for (int waited = 0; waited < SYNC_SLOT_WAIT_MS; waited += 10)
	{
		pg_usleep(10000L);
		if (!worker_lock_free())
		{
			wake_worker();
			return true;
		}
		if (register_worker(MyDatabaseId, last))
			return true;
	}
	return false;
}

/*
 * Start a worker for this database: the caller found the worker lock free
 * after its COMMIT, so no worker is delivering or connecting.  The worker
 * this backend started last is enough if it has not been forked yet: it
 * takes the lock and then reads the queue, which holds what this backend
 * committed.  Once forked, it takes the lock before it connects (however
 * long connecting takes), so finding the lock free then means it is
 * leaving (no sync was left when it looked) or gone, or is still loading
 * the library (a short moment): then another is started; a surplus one
 * finds the lock taken and exits.  With no slot free, waits for one (wait_for_slot)
 * unless it warned within the last minute.  Never ERRORs: it may run after
 * COMMIT.
 */
static void
start_worker(void)
{
	static BackgroundWorkerHandle *last = NULL;	/* TopMemoryContext */
	static TimestampTz last_warning = 0;
	MemoryContext old;
	pid_t		pid;
	bool		started;

	if (last != NULL &&
		GetBackgroundWorkerPid(last, &pid) == BGWH_NOT_YET_STARTED)
		return;
	if (last != NULL)
		pfree(last);
	last = NULL;
	old = MemoryContextSwitchTo(TopMemoryContext);
	started = register_worker(MyDatabaseId, &last) ||
		(TimestampDifferenceExceeds(last_warning, GetCurrentTimestamp(), 60000) &&
		 wait_for_slot(&last));
	MemoryContextSwitchTo(old);
	if (started || !TimestampDifferenceExceeds(last_warning, GetCurrentTimestamp(), 60000))
		return;
	last_warning = GetCurrentTimestamp();
	ereport(WARNING,
			(errmsg("could not start the pgpoly sync worker: no free background worker slot"),
			 errdetail("Changes stay queued until a worker runs."),
			 errhint("Raise max_worker_processes.")));
}

/*
 * Make sure this database's worker runs and looks at the queue now: start
 * one if none holds the lock, else wake it.  Never ERRORs (see
 * sync_xact_callback).  A hot standby has no worker (the primary's delivers
 * what the standby replays): a worker registered there would only wait for
 * the end of recovery, holding a background worker slot.
 */
void
SyncKickWorker(void)
{
	if (SyncIsWorker || !IsUnderPostmaster || RecoveryInProgress())
		return;
	if (worker_lock_free())
		start_worker();
	else
		wake_worker();
}

/* Whether this database's sync worker is running. */
bool
SyncWorkerRunning(void)
{
	return find_worker_pid() != 0;
}

/* Note that this transaction queued changes (kick the worker at COMMIT). */
void
SyncNoteQueued(void)
{
	QueuedInXact = true;
	KickAtCommit = true;
}

/* Kick the worker once this transaction commits (a sync was made or dropped). */
void
SyncKickAtCommit(void)
{
	KickAtCommit = true;
}

/* Whether this transaction has queued changes (not yet committed). */
bool
SyncQueuedInXact(void)
{
	return QueuedInXact;
}

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/*
 * ProcessUtility hook: a COMMIT PREPARED in a database with pgpoly kicks
 * the worker once it commits, since the prepared transaction may have
 * queued changes (which it does not tell).  PostgreSQL runs no transaction
 * callback for the prepared transaction itself, only for the one running
 * COMMIT PREPARED, and only a backend that has loaded pgpoly runs this
 * hook (see README: the worker after a restart).
 */
static void
sync_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					 ProcessUtilityContext context, ParamListInfo params,
					 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
	/* a sync's recorded column names follow its tables' (sync.c) */
	if ((IsA(stmt, RenameStmt) && ((RenameStmt *) stmt)->renameType == OBJECT_COLUMN &&
		 ((RenameStmt *) stmt)->relation) ||
		(IsA(stmt, AlterTableStmt) && ((AlterTableStmt *) stmt)->relation))
		SyncNoteColumnsChanged(RangeVarGetRelid(IsA(stmt, RenameStmt) ?
												((RenameStmt *) stmt)->relation :
												((AlterTableStmt *) stmt)->relation,
												NoLock, true));
	/* the syncs are the roles' objects (sync.c) */
	if (IsA(stmt, ReassignOwnedStmt) || IsA(stmt, DropOwnedStmt))
		SyncNoteOwnedChanged(stmt);
	/* an outbox sync's name follows its table's (sync.c) */
	if ((IsA(stmt, RenameStmt) &&
		 (((RenameStmt *) stmt)->renameType == OBJECT_TABLE ||
		  ((RenameStmt *) stmt)->renameType == OBJECT_FOREIGN_TABLE ||
		  ((RenameStmt *) stmt)->renameType == OBJECT_SCHEMA)) ||
		(IsA(stmt, AlterObjectSchemaStmt) &&
		 (((AlterObjectSchemaStmt *) stmt)->objectType == OBJECT_TABLE ||
		  ((AlterObjectSchemaStmt *) stmt)->objectType == OBJECT_FOREIGN_TABLE)))
		SyncNoteRelationRenamed();
	if (IsA(stmt, TransactionStmt) &&
		((TransactionStmt *) stmt)->kind == TRANS_STMT_COMMIT_PREPARED &&
		OidIsValid(get_namespace_oid("pgpoly", true)))
		KickAtCommit = true;
}

/* Transaction callback: kick the worker once the changes are committed. */
static void
sync_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			if (KickAtCommit)
				SyncKickWorker();
			QueuedInXact = KickAtCommit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			QueuedInXact = KickAtCommit = false;
			break;
		default:
			break;
	}
}

PG_FUNCTION_INFO_V1(pgpoly_sync_worker_running);

/* pgpoly._sync_worker_running(): for the sync_status view. */
Datum
pgpoly_sync_worker_running(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(SyncWorkerRunning());
}

/* ----------------------------------------------------------------
 *		Launcher (shared_preload_libraries only)
 * ----------------------------------------------------------------
 */

/* The databases that accept connections, as a list of OIDs. */
static List *
connectable_databases(void)
{
	List	   *result = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		MemoryContext old;

		if (!db->datallowconn || db->datistemplate)
			continue;
		old = MemoryContextSwitchTo(TopMemoryContext);
		result = lappend_oid(result, db->oid);
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	PopActiveSnapshot();
	CommitTransactionCommand();
	return result;
}

/* Sleep up to ms on the latch; false once shutdown was requested. */
static bool
launcher_sleep(long ms)
{
	int			events = WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | (ms >= 0 ? WL_TIMEOUT : 0);

	(void) WaitLatch(MyLatch, events, ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
	return !ShutdownRequestPending;
}

/*
 * Main of the launcher: start a worker per connectable database (waiting
 * for free slots), then sleep until shutdown, so that the postmaster
 * restarts it, and it the workers, after a crash-restart (or after it was
 * terminated).
 */
void
PgpolySyncLauncherMain(Datum arg)
{
	List	   *dbs;
	ListCell   *lc;

	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname(SYNC_LAUNCHER_TYPE);

	dbs = connectable_databases();
	foreach(lc, dbs)
	{
		while (!register_worker(lfirst_oid(lc), NULL))
			if (!launcher_sleep(1000))
				proc_exit(1);
	}
	while (launcher_sleep(-1))
		;

	/*
	 * SIGTERM: at shutdown the postmaster does not restart anyone, but
	 * after pg_terminate_backend() exit status 0 would unregister the
	 * launcher for good (no worker after the next crash-restart); with 1
	 * the postmaster starts it again after bgw_restart_time.
	 */
	proc_exit(1);
}

/* Register the launcher (from _PG_init while preloading). */
static void
register_launcher(void)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 10;
	strlcpy(bgw.bgw_library_name, "pgpoly", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "PgpolySyncLauncherMain", BGW_MAXLEN);
	strlcpy(bgw.bgw_name, SYNC_LAUNCHER_TYPE, BGW_MAXLEN);
	strlcpy(bgw.bgw_type, SYNC_LAUNCHER_TYPE, BGW_MAXLEN);
	RegisterBackgroundWorker(&bgw);
}

/*
 * Module load: the sync GUCs, the transaction callback, and the launcher
 * when the library is preloaded.
 */
void
SyncInit(void)
{
	DefineCustomIntVariable("pgpoly.sync_batch_size",
							"Changes the sync worker delivers per transaction.",
							NULL, &pgpoly_sync_batch_size,
							5000, 1, 1000000, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgpoly.sync_max_attempts",
							"Deliveries of a change the target rejects before it becomes a dead letter.",
							NULL, &pgpoly_sync_max_attempts,
							5, 1, 1000, PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("pgpoly.sync_max_retry_delay",
							"Longest wait of the sync worker's exponential backoff.",
							"Bounds the retries while a store is unreachable and those of a rejected change.",
							&pgpoly_sync_max_retry_delay,
							10000, 100, INT_MAX / 2, PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	RegisterXactCallback(sync_xact_callback, NULL);
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = sync_process_utility;
	if (process_shared_preload_libraries_in_progress)
		register_launcher();
}
