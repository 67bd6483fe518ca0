/*-------------------------------------------------------------------------
 *
 * connection.c
 *		  Per-backend connection cache shared by every store.
 *
 * Connections are keyed by (server OID, user mapping OID) and kept in
 * TopMemoryContext across statements and transactions.  The store opens and
 * closes its own handle through its PgpolyStore callbacks; the cache decides
 * when: it reconnects after ALTER SERVER / ALTER USER MAPPING (syscache
 * invalidation; at the end of a transaction that used the connection,
 * else at its next use), and it never reuses a connection whose last request did not
 * finish (an ERROR or cancel hit it mid-request, leaving the protocol state
 * unknown): such a connection is closed at transaction end and reopened on
 * next use.
 *
 * The trust rule is enforced here, for every store, before a connection is
 * opened or handed out again: a non-superuser needs a user mapping with a
 * credential (a secret option of the store) unless a superuser waived it
 * with password_required 'false'; and the store's connect() checks that
 * the store asked for that credential (PgpolyMustProveCredential), as
 * postgres_fdw checks that the server used the password.  A cached
 * connection carries no authority of its own: the check is made for the
 * user asking each time, so one opened for a superuser is never reused by
 * a role that SET ROLE made current, and a reconnection uses the mapping
 * the connection is for, never another one of the same user.
 *
 * The secret option values of each connection's user mapping are kept with
 * it, so that no message quoting what a store sent (PgpolyPrintable) can
 * carry a credential that a hostile store echoes back.
 *
 * A store may open a second connection for a cache entry
 * (PgpolyOpenSibling: the Redis write stream), through the same connect()
 * and trust rule; it is no entry of the cache: the store keeps it with the
 * entry's handle and closes it with that handle, and is told when each
 * transaction ends (PgpolyStore.xact_end) to close it if it was left in
 * the middle of something.
 *
 * pgpoly.connections() and pgpoly.disconnect() expose the cache to SQL.
 *
 * src/connection.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/parallel.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "common/hashfn.h"
#include "lib/stringinfo.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/syscache.h"

#include "pgpoly.h"

static HTAB *ConnectionHash = NULL;

/* Whether the connection was used by the current transaction. */
static List *UsedThisXact = NIL;	/* of PgpolyConnKey *, in TopMemoryContext */

/*
 * The user mapping (umid, InvalidOid for none) each (server, user) took
 * first in the current transaction (pin_mapping).
 */
typedef struct PinnedMapping
{
	Oid			serverid;
	Oid			userid;
	Oid			umid;
} PinnedMapping;

static List *Pinned = NIL;		/* of PinnedMapping *, in TopMemoryContext */

/* Close the store handle; keeps the entry (and its counters). */
static void
close_handle(PgpolyConnection *conn)
{
	if (conn->handle != NULL)
	{
		void	   *h = conn->handle;

		conn->handle = NULL;
		conn->store->disconnect(h);
	}
	conn->busy = false;
	conn->invalidated = false;
}

/*
 * An entry was invalidated since prune_dropped() last ran to the end: its
 * server or user mapping may have been dropped.  Invalidated counts the
 * entries marked, so that prune_dropped() can tell whether one was marked
 * while it read the catalogs.
 */
static bool PrunePending = false;
static uint64 Invalidated = 0;

static bool used_this_xact(PgpolyConnection *conn);
static UserMapping *mapping_of(PgpolyConnection *conn);

/*
 * A hash of the options a handle of server and user is opened with (the
 * server's and the user mapping's), to tell whether they changed since.
 */
static uint64
options_hash(ForeignServer *server, UserMapping *user)
{
	StringInfoData buf;
	List	   *lists[2] = {server->options, user->options};
	uint64		h;

	initStringInfo(&buf);
	for (int i = 0; i < 2; i++)
	{
		ListCell   *lc;

		foreach(lc, lists[i])
		{
			DefElem    *d = lfirst(lc);

			appendStringInfoString(&buf, d->defname);
			appendStringInfoChar(&buf, '\0');
			appendStringInfoString(&buf, defGetString(d));
			appendStringInfoChar(&buf, '\0');
		}
		appendStringInfoChar(&buf, '\1');
	}
	h = hash_bytes_extended((const unsigned char *) buf.data, buf.len, 0);
	pfree(buf.data);
	return h;
}

/*
 * Close conn's handle in the middle of a transaction (an error broke it,
 * pgpoly.disconnect()).  If the transaction used it, it is not opened
 * anew with other options than it had until the transaction ends
 * (check_outdated): a cursor still open, or the transaction's next
 * statements, would go on with the new options (another server or
 * database) after reading or writing with the old ones.
 */
static void
close_in_xact(PgpolyConnection *conn)
{
	bool		used = used_this_xact(conn);

	close_handle(conn);
	conn->closed_used |= used;
}

/*
 * Before conn's handle is opened again with the options of server and
 * user as they are now: ERROR if this transaction used and closed it
 * (close_in_xact) and its server's or user mapping's options changed since
 * it was opened, whether before it was closed or after.  A change that
 * left the options as they were (GRANT, OWNER TO, a cache reset) does not
 * count.
 */
static void
check_outdated(PgpolyConnection *conn, ForeignServer *server, UserMapping *user)
{
	if (conn->closed_used && options_hash(server, user) != conn->options_hash)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("the connection to server \"%s\" was closed after its options changed during the transaction",
						conn->servername),
				 errdetail("Opening it again would use the new options for the rest of a transaction that used the old ones."),
				 errhint("Run the transaction again.")));
}

/*
 * conn was invalidated: keep it if its server's and user mapping's options
 * are what it was opened with.  That is a syscache reset (a backend
 * that fell behind the invalidation queue, under other sessions' DDL,
 * gets every entry invalidated), GRANT, OWNER TO or RENAME.  Reopening it
 * would drop the store's session state for nothing, and move a Sentinel
 * server's session to whichever primary the sentinels name now.  The
 * trust rule is checked on every look-up regardless (check_trust).
 *
 * The options are read here, after the mark is cleared, never taken from
 * the caller: its copy may predate an invalidation that reading the
 * catalogs since took in (prune_dropped), and comparing with it would
 * clear that invalidation for good.  One that comes in while they are
 * read marks conn again.  A server or mapping dropped leaves conn marked.
 */
static void
keep_if_unchanged(PgpolyConnection *conn)
{
	ForeignServer *server;

	conn->invalidated = false;
	server = GetForeignServerExtended(conn->key.serverid, FSV_MISSING_OK);
	if (server == NULL ||
		(OidIsValid(conn->key.umid) &&
		 !SearchSysCacheExists1(USERMAPPINGOID, ObjectIdGetDatum(conn->key.umid))) ||
		options_hash(server, mapping_of(conn)) != conn->options_hash)
	{
		conn->invalidated = true;
		return;
	}
	strlcpy(conn->servername, server->servername, NAMEDATALEN);
}

/* Syscache callback: mark connections whose server or mapping changed. */
static void
invalidate_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	HASH_SEQ_STATUS scan;
	PgpolyConnection *conn;

	hash_seq_init(&scan, ConnectionHash);
	while ((conn = hash_seq_search(&scan)) != NULL)
	{
		if (hashvalue == 0 ||
			(cacheid == FOREIGNSERVEROID && conn->server_hashvalue == hashvalue) ||
			(cacheid == USERMAPPINGOID && conn->mapping_hashvalue == hashvalue))
		{
			conn->invalidated = true;
			PrunePending = true;
			Invalidated++;
		}
	}
}

/* Create the cache and register the invalidation callbacks (once). */
void
PgpolyConnectionInit(void)
{
	HASHCTL		ctl;

	if (ConnectionHash != NULL)
		return;
	ctl.keysize = sizeof(PgpolyConnKey);
	ctl.entrysize = sizeof(PgpolyConnection);
	ConnectionHash = hash_create("pgpoly connections", 8, &ctl,
								 HASH_ELEM | HASH_BLOBS);
	CacheRegisterSyscacheCallback(FOREIGNSERVEROID, invalidate_callback, 0);
	CacheRegisterSyscacheCallback(USERMAPPINGOID, invalidate_callback, 0);
}

/* The stand-in for "no user mapping": no options, umid InvalidOid. */
static UserMapping *
no_mapping(Oid userid, Oid serverid)
{
	UserMapping *um = palloc0(sizeof(UserMapping));	/* options NIL */

	um->umid = InvalidOid;
	um->userid = userid;
	um->serverid = serverid;
	return um;
}

/*
 * The user mapping userid uses on serverid: its own or PUBLIC's, or when
 * there is none a mapping without options and with umid InvalidOid.  Stores
 * that work without credentials (Redis without AUTH, a local Chroma) do not
 * force superusers to create an empty mapping; the empty one still says
 * whose connection it is, for the trust rule.  palloc'd in the current
 * memory context.
 */
UserMapping *
PgpolyGetUserMapping(Oid userid, Oid serverid)
{
	HeapTuple	tp;

	tp = SearchSysCache2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(userid),
						 ObjectIdGetDatum(serverid));
	if (!HeapTupleIsValid(tp))
		tp = SearchSysCache2(USERMAPPINGUSERSERVER, ObjectIdGetDatum(InvalidOid),
							 ObjectIdGetDatum(serverid));
	if (!HeapTupleIsValid(tp))
		return no_mapping(userid, serverid);
	ReleaseSysCache(tp);
	return GetUserMapping(userid, serverid);
}

/*
 * Whether user carries one of store's credentials (a secret option with a
 * non-empty value, as postgres_fdw wants a non-empty password).  names
 * gets the credential options as "password or api_key", for messages.
 */
static bool
has_credential(const PgpolyStore *store, UserMapping *user, StringInfo names)
{
	const PgpolyOption *o;
	bool		found = false;

	for (o = store->options; o && o->name; o++)
	{
		const char *value;

		if (!o->secret)
			continue;
		appendStringInfo(names, "%s%s", names->len ? " or " : "", o->name);
		value = PgpolyGetOption(user->options, o->name, NULL);
		if (value && value[0] != '\0')
			found = true;
	}
	return found;
}

/*
 * The trust rule, as postgres_fdw's check_conn_params(): a non-superuser
 * may only use a user mapping that carries a credential, unless a superuser
 * set the mapping's option password_required 'false'.  Otherwise any role
 * allowed to create a server could make the backend connect, from the
 * database host, to a store that trusts that host (a local Redis without
 * AUTH).  user->userid is the user whose mapping is used; no mapping at
 * all carries no credential.  Called before a connection is opened or
 * handed out, never after any network I/O.
 */
static void
check_trust(const PgpolyStore *store, ForeignServer *server, UserMapping *user)
{
	StringInfoData names;
	const char *role;

	if (superuser_arg(user->userid))
		return;
	initStringInfo(&names);
	if (has_credential(store, user, &names))
		return;
	if (!PgpolyGetBoolOption(user->options, "password_required", true))
		return;

	role = GetUserNameFromId(user->userid, true);
	if (role == NULL)
		role = "?";
	ereport(ERROR,
			(errcode(ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED),
			 errmsg("%s is required to use server \"%s\"",
					names.data, server->servername),
			 OidIsValid(user->umid) ?
			 errdetail("Non-superusers must provide %s in the user mapping, and the user mapping of role \"%s\" has none.",
					   names.data, role) :
			 errdetail("Non-superusers must provide %s in the user mapping, and role \"%s\" has no user mapping for this server.",
					   names.data, role),
			 errhint("Add option %s to the user mapping of role \"%s\", or have a superuser set password_required 'false' on it.",
					 names.data, role)));
}

/*
 * Whether the store must show, when it connects for user, that it asked
 * for the credential (postgres_fdw's PQconnectionUsedPassword() check):
 * true for a non-superuser whose mapping does not waive the trust rule.
 * A credential the store never checks proves nothing: without this, a
 * made-up password would open a Redis on 127.0.0.1 that has no AUTH.
 */
bool
PgpolyMustProveCredential(UserMapping *user)
{
	return !superuser_arg(user->userid) &&
		PgpolyGetBoolOption(user->options, "password_required", true);
}

/*
 * ERROR from a store's connect(): the store answered how (e.g. "PING
 * without AUTH") without asking for the credential of the user mapping,
 * so PgpolyMustProveCredential() users may not use it.  The reply itself
 * is never quoted: the store may be any service the server can reach.
 */
void
PgpolyCredentialNotRequested(PgpolyConnection *conn, const char *how)
{
	ereport(ERROR,
			(errcode(ERRCODE_S_R_E_PROHIBITED_SQL_STATEMENT_ATTEMPTED),
			 errmsg("server \"%s\" at %s does not ask for a credential",
					conn->servername, conn->target),
			 errdetail("Non-superusers may only use a store that authenticates them, and it answered %s.",
					   how),
			 errhint("Enable authentication on the store, or have a superuser set password_required 'false' on the user mapping.")));
}

/* Remember that this transaction used conn. */
static void
mark_used(PgpolyConnection *conn)
{
	MemoryContext old;
	ListCell   *lc;

	foreach(lc, UsedThisXact)
		if (memcmp(lfirst(lc), &conn->key, sizeof(PgpolyConnKey)) == 0)
			return;
	old = MemoryContextSwitchTo(TopMemoryContext);
	UsedThisXact = lappend(UsedThisXact,
						   memcpy(palloc(sizeof(PgpolyConnKey)), &conn->key,
								  sizeof(PgpolyConnKey)));
	MemoryContextSwitchTo(old);
}

/* Fill the entry's descriptive fields and timeouts from the catalogs. */
static void
describe_connection(PgpolyConnection *conn, ForeignServer *server,
					UserMapping *user)
{
	strlcpy(conn->servername, server->servername, NAMEDATALEN);
	conn->server_hashvalue =
		GetSysCacheHashValue1(FOREIGNSERVEROID, ObjectIdGetDatum(server->serverid));
	conn->mapping_hashvalue = OidIsValid(user->umid) ?
		GetSysCacheHashValue1(USERMAPPINGOID, ObjectIdGetDatum(user->umid)) : 0;
	conn->connect_timeout_ms =
		(int) PgpolyGetIntOption(server->options, "connect_timeout_ms", 2000);
	conn->timeout_ms =
		(int) PgpolyGetIntOption(server->options, "timeout_ms", 5000);
}

/*
 * Whether catalog relid has a row of OID oid (its first column, indexed by
 * indexid).  Read from the catalog, not the syscache: a look-up of a
 * dropped object there would leave a negative entry in CacheMemoryContext
 * for as long as the backend lives.
 */
static bool
catalog_has(Oid relid, Oid indexid, Oid oid)
{
	Relation	rel = table_open(relid, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	bool		found;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(oid));
	scan = systable_beginscan(rel, indexid, true, NULL, 1, &key);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * Remove the entries whose server or user mapping no longer exists (as
 * this transaction sees the catalogs), closing their handles: else every
 * CREATE SERVER ... DROP SERVER a long-lived (pooled) session makes leaves
 * an entry, and the secrets of its mapping, for as long as it lives.  An
 * entry this transaction uses, or that holds its writes or session state,
 * is kept (a scan may point at it) and looked at again next time.  Runs
 * where a store connection is asked for, never in an invalidation
 * callback or at transaction end, which may not read the catalogs.
 */
static void
prune_dropped(void)
{
	HASH_SEQ_STATUS scan;
	PgpolyConnection *conn;
	uint64		seen = Invalidated;
	bool		kept = false;

	/*
	 * PrunePending stays set until the scan ends: an ERROR reading the
	 * catalogs (lock_timeout, a cancel) must leave the work for next time.
	 */
	if (!PrunePending)
		return;
	hash_seq_init(&scan, ConnectionHash);
	while ((conn = hash_seq_search(&scan)) != NULL)
	{
		if (catalog_has(ForeignServerRelationId, ForeignServerOidIndexId,
						conn->key.serverid) &&
			(!OidIsValid(conn->key.umid) ||
			 catalog_has(UserMappingRelationId, UserMappingOidIndexId,
						 conn->key.umid)))
			continue;
		if (conn->busy || conn->writes != NIL || conn->watching || used_this_xact(conn))
		{
			kept = true;
			continue;
		}
		close_handle(conn);
		if (conn->store->forget)
			conn->store->forget(conn);
		list_free_deep(conn->secrets);
		conn->secrets = NIL;
		hash_search(ConnectionHash, &conn->key, HASH_REMOVE, NULL);
	}
	PrunePending = kept || Invalidated != seen;
}

/*
 * ERROR in a parallel worker.  A worker reaches a store only through a
 * function its author marked PARALLEL SAFE (no store declares a foreign
 * scan parallel safe); it has neither the leader's buffered writes, its
 * unsent immediate batches nor its WATCHes, so it would read past the
 * transaction's own writes.  As PostgreSQL refuses temporary tables there.
 */
static void
refuse_parallel_worker(ForeignServer *server)
{
	if (IsParallelWorker())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_STATE),
				 errmsg("cannot use pgpoly server \"%s\" in a parallel worker",
						server->servername),
				 errdetail("The transaction's buffered writes to its foreign tables are held by the leader process."),
				 errhint("Mark the function that reads its foreign tables PARALLEL RESTRICTED.")));
}

/*
 * The cache entry of server and user (from PgpolyGetUserMapping: umid
 * InvalidOid if there is no mapping), made if new, once the trust rule
 * lets user->userid use it.  A handle it may not hand to that user is
 * closed: one whose last request was cut off, one invalidated whose
 * options changed (unless this transaction used it: it may hold the
 * transaction's writes or WATCHes, which closing it would lose, or serve
 * a scan still open, a cursor, whose SCAN cursor or page would go on on
 * the new server or database; it is closed at its first use in a later
 * transaction), or one opened without the check that the store asks for
 * the credential (for a superuser or a waived mapping: PUBLIC's, say)
 * when user needs that check.
 */
static PgpolyConnection *
lookup_entry(const PgpolyStore *store, ForeignServer *server, UserMapping *user)
{
	PgpolyConnKey key;
	PgpolyConnection *conn;
	bool		found;

	refuse_parallel_worker(server);
	check_trust(store, server, user);
	PgpolyConnectionInit();
	prune_dropped();
	memset(&key, 0, sizeof(key));
	key.serverid = server->serverid;
	key.umid = user->umid;

	conn = hash_search(ConnectionHash, &key, HASH_ENTER, &found);
	if (!found)
	{
		memset(((char *) conn) + sizeof(key), 0, sizeof(*conn) - sizeof(key));
		conn->store = store;
		strlcpy(conn->servername, server->servername, NAMEDATALEN);
	}
	if (conn->handle && conn->invalidated)
		keep_if_unchanged(conn);
	if (conn->handle && (conn->busy ||
						 (conn->invalidated && conn->writes == NIL &&
						  !conn->watching && !used_this_xact(conn)) ||
						 (!conn->checked && PgpolyMustProveCredential(user))))
		close_in_xact(conn);
	if (conn->handle == NULL)
		check_outdated(conn, server, user);
	conn->userid = user->userid;
	return conn;
}

/*
 * Keep the secret option values of user's mapping with conn (replacing
 * those of an earlier mapping), before its store connects and may quote
 * what the store answers to them.
 */
static void
remember_secrets(PgpolyConnection *conn, UserMapping *user)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	ListCell   *lc;

	list_free_deep(conn->secrets);
	conn->secrets = NIL;
	foreach(lc, PgpolySecretValues(conn->store->options, user->options))
		conn->secrets = lappend(conn->secrets, pstrdup(lfirst(lc)));
	MemoryContextSwitchTo(old);
}

/*
 * The length of the longest secret option value of a cached connection's
 * user mapping that text (len bytes) begins with; 0 if none.  For
 * PgpolyPrintable: never raises an ERROR.
 */
size_t
PgpolySecretAt(const char *text, size_t len)
{
	HASH_SEQ_STATUS scan;
	PgpolyConnection *conn;
	size_t		best = 0;

	if (ConnectionHash == NULL)
		return 0;
	hash_seq_init(&scan, ConnectionHash);
	while ((conn = hash_seq_search(&scan)) != NULL)
	{
		ListCell   *lc;

		foreach(lc, conn->secrets)
		{
			size_t		n = strlen(lfirst(lc));

			if (n > best && n <= len && memcmp(text, lfirst(lc), n) == 0)
				best = n;
		}
	}
	return best;
}

/*
 * User mapping umid (InvalidOid: none) of server serverid as it is now,
 * seen as user userid: never another mapping of that user (one created
 * since, in place of PUBLIC's).  ERROR, with hint, if it was dropped.
 * (Not inlined: PgpolyOpenSibling's PG_TRY would see its locals clobbered.)
 */
static pg_noinline UserMapping *
mapping_by_oid(Oid umid, Oid userid, Oid serverid, const char *servername,
			   const char *hint)
{
	HeapTuple	tp;
	Oid			umuser;
	UserMapping *um;

	if (!OidIsValid(umid))
		return no_mapping(userid, serverid);
	tp = SearchSysCache1(USERMAPPINGOID, ObjectIdGetDatum(umid));
	if (!HeapTupleIsValid(tp))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("the user mapping of a connection to server \"%s\" was dropped",
						servername),
				 errhint("%s", hint)));
	umuser = ((Form_pg_user_mapping) GETSTRUCT(tp))->umuser;
	ReleaseSysCache(tp);
	um = GetUserMapping(umuser, serverid);	/* umuser 0: PUBLIC */
	um->userid = userid;
	return um;
}

/*
 * The user mapping user->userid uses on server for the rest of the
 * transaction: the one it took first in this transaction.  Another session
 * may replace a role's mapping meanwhile (CREATE USER MAPPING for a role
 * that used PUBLIC's, DROP of its own leaving PUBLIC's): taking the new one
 * would open another cache entry, with the server's new options, so that
 * one transaction's writes went to two servers and its reads missed the
 * writes buffered on the first connection.  As a changed mapping or server
 * reaches a connection the transaction used at its end, so does a
 * replaced one.  ERROR if the mapping taken first was dropped.
 */
static UserMapping *
pin_mapping(ForeignServer *server, UserMapping *user)
{
	PinnedMapping *pin;
	ListCell   *lc;
	MemoryContext old;

	foreach(lc, Pinned)
	{
		pin = lfirst(lc);
		if (pin->serverid != server->serverid || pin->userid != user->userid)
			continue;
		if (pin->umid == user->umid)
			return user;
		return mapping_by_oid(pin->umid, user->userid, server->serverid,
							  server->servername,
							  "Another session replaced it during this transaction: run the transaction again.");
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	pin = palloc(sizeof(PinnedMapping));
	pin->serverid = server->serverid;
	pin->userid = user->userid;
	pin->umid = user->umid;
	Pinned = lappend(Pinned, pin);
	MemoryContextSwitchTo(old);
	return user;
}

/*
 * Open conn's handle with its server's and user mapping's options as they
 * are now (the trust rule checked again for the user conn was last handed
 * out for), read after the invalidation mark is cleared: one that comes in
 * meanwhile marks conn again.  Never with a caller's copy of them, which
 * may predate an invalidation taken in since (by the catalog reads of
 * lookup_entry): the handle would keep the old options, with no mark left
 * to reopen it.  ERROR as check_outdated, check_trust and connect().
 */
static void
open_handle(PgpolyConnection *conn)
{
	ForeignServer *server;
	UserMapping *user;

	conn->invalidated = false;
	server = GetForeignServer(conn->key.serverid);
	user = mapping_of(conn);
	check_outdated(conn, server, user);
	check_trust(conn->store, server, user);
	describe_connection(conn, server, user);
	remember_secrets(conn, user);
	conn->closed_used = false;
	conn->options_hash = options_hash(server, user);
	conn->handle = conn->store->connect(conn, server, user);
	conn->checked = PgpolyMustProveCredential(user);
}

/*
 * Get a connection to server for user (from PgpolyGetUserMapping), opening
 * one if the cache has none, the cached one was invalidated, or it broke.
 * ERROR if the trust rule does not let user->userid use it.  The returned
 * entry lives until the backend exits, or until a later transaction
 * finds its server or user mapping dropped (prune_dropped).  Whatever uses a store sees the
 * rows running statements wrote in write_mode 'immediate': they are sent
 * first (PgpolySendUnsentWrites).
 */
PgpolyConnection *
PgpolyGetConnection(const PgpolyStore *store, ForeignServer *server,
					UserMapping *user)
{
	PgpolyConnection *conn;

	PgpolySendUnsentWrites(NULL, InvalidOid);
	user = pin_mapping(server, user);
	conn = lookup_entry(store, server, user);
	if (conn->handle == NULL)
		open_handle(conn);
	mark_used(conn);
	return conn;
}

/*
 * As PgpolyGetConnection, but without opening a connection: for writes
 * that reach no store while the statement runs (write_mode 'outbox').  A
 * store opens the handle with PgpolyEnsureConnected() before any request.
 */
PgpolyConnection *
PgpolyGetConnectionEntry(const PgpolyStore *store, ForeignServer *server,
						 UserMapping *user)
{
	PgpolyConnection *conn;

	user = pin_mapping(server, user);
	conn = lookup_entry(store, server, user);
	if (conn->handle == NULL)
		describe_connection(conn, server, user);
	mark_used(conn);
	return conn;
}

/*
 * The user mapping conn is for (its key), as it is now, seen as the user
 * conn was last handed out for.  Never another mapping of that user (one
 * created since, in place of PUBLIC's): every later user of this cache
 * entry would share its credential.  ERROR if the mapping was dropped.
 */
static UserMapping *
mapping_of(PgpolyConnection *conn)
{
	return mapping_by_oid(conn->key.umid, conn->userid, conn->key.serverid,
						  conn->servername, "Run the statement again.");
}

/*
 * Make conn usable for a new request: if its handle was closed (by
 * pgpoly.disconnect(), an invalidation or an error) or broke, open a new
 * one, with its mapping as it is now (the trust rule is checked again for
 * the user conn was last handed out for).  Stores call this before every
 * request, so a scan or cursor that holds the entry across such an event
 * reconnects instead of using a dead handle.  Must not be called in the
 * middle of a request.
 */
void
PgpolyEnsureConnected(PgpolyConnection *conn)
{
	if (conn->handle && !conn->busy)
		return;
	if (conn->handle)
		close_in_xact(conn);	/* broken */
	open_handle(conn);
}

/*
 * A second connection to conn's server as conn's user mapping (as it is
 * now, the trust rule checked again), opened by the store's connect() like
 * any other: for a store that sends a transaction's writes ahead on a
 * connection of their own (PgpolyStore.buffered).  It is no cache entry:
 * the caller owns it (TopMemoryContext), keeps it with conn's handle and
 * closes it with PgpolyCloseSibling().  NULL when conn's server or user
 * mapping changed since conn was opened (conn->invalidated): the sibling
 * would take the new options (another host, port or db) while conn, and
 * the writes it holds, keep the old ones.  ERROR as connect().
 */
PgpolyConnection *
PgpolyOpenSibling(PgpolyConnection *conn)
{
	ForeignServer *server;
	UserMapping *user;
	PgpolyConnection *sib;

	if (conn->invalidated)
		return NULL;
	server = GetForeignServer(conn->key.serverid);
	user = mapping_of(conn);
	if (conn->invalidated)
		return NULL;			/* the look-ups took the change in */
	check_trust(conn->store, server, user);
	sib = MemoryContextAlloc(TopMemoryContext, sizeof(PgpolyConnection));
	memcpy(sib, conn, sizeof(PgpolyConnection));
	sib->handle = NULL;
	sib->busy = sib->watching = sib->invalidated = sib->closed_used = false;
	sib->requests = sib->errors = 0;
	sib->writes = NIL;
	sib->secrets = NIL;			/* conn's, in the cache, mask its messages */
	PG_TRY();
	{
		sib->handle = conn->store->connect(sib, server, user);
	}
	PG_CATCH();
	{
		pfree(sib);
		PG_RE_THROW();
	}
	PG_END_TRY();
	sib->checked = PgpolyMustProveCredential(user);
	return sib;
}

/* Close and free a connection of PgpolyOpenSibling(); never ereports. */
void
PgpolyCloseSibling(PgpolyConnection *sibling)
{
	if (sibling->handle != NULL)
		sibling->store->disconnect(sibling->handle);
	pfree(sibling);
}

/* Mark the start of a request: until PgpolyEndRequest, an error breaks conn. */
void
PgpolyBeginRequest(PgpolyConnection *conn)
{
	if (conn->busy)
		elog(ERROR, "pgpoly connection to server \"%s\" is already in a request",
			 conn->servername);
	conn->busy = true;
	conn->requests++;
	conn->errors++;				/* undone by PgpolyEndRequest */
}

/* Mark the end of a request that left the protocol in a clean state. */
void
PgpolyEndRequest(PgpolyConnection *conn)
{
	conn->busy = false;
	conn->errors--;
}

/*
 * Whether conn's store released the session state conn holds (watching)
 * ahead of its next command (PgpolyStore.end_session): else the caller
 * closes it.  Never ereports.
 */
static bool
end_session(PgpolyConnection *conn)
{
	return conn->store->end_session != NULL && conn->store->end_session(conn);
}

/*
 * Transaction end: drop pending writes (already flushed or discarded by
 * xact.c), and close connections left mid-request.  One invalidated stays
 * open until its next use (lookup_entry) or pgpoly.connections(), which
 * read the catalogs to tell whether its options changed; nothing here
 * may.  One
 * still holding the transaction's session state (ROLLBACK, or a COMMIT
 * that did not clear it: a FOR UPDATE that wrote nothing) is kept if its
 * store releases that state before its next command, else closed: the
 * next transaction must not inherit a WATCH that could abort its EXEC,
 * and nothing here may do I/O or fail in an abort.
 */
void
PgpolyConnectionsAtXactEnd(bool isCommit)
{
	HASH_SEQ_STATUS scan;
	PgpolyConnection *conn;

	list_free_deep(Pinned);		/* pinned before any entry was made too */
	Pinned = NIL;
	if (ConnectionHash == NULL)
		return;
	hash_seq_init(&scan, ConnectionHash);
	while ((conn = hash_seq_search(&scan)) != NULL)
	{
		conn->writes = NIL;		/* memory went with TopTransactionContext */
		if (conn->handle && conn->store->xact_end)
			conn->store->xact_end(conn, isCommit);
		if (conn->handle && (conn->busy ||
							 (conn->watching && !end_session(conn))))
			close_handle(conn);
		conn->busy = false;
		conn->watching = false;
		conn->closed_used = false;
	}
	list_free_deep(UsedThisXact);
	UsedThisXact = NIL;
}

/*
 * The connections holding session state of this transaction (watching),
 * in a list the caller frees: a scan of the cache could not be left by an
 * ERROR of the I/O the caller does with them.
 */
List *
PgpolyWatchingConnections(void)
{
	HASH_SEQ_STATUS scan;
	PgpolyConnection *conn;
	List	   *result = NIL;

	if (ConnectionHash == NULL)
		return NIL;
	hash_seq_init(&scan, ConnectionHash);
	while ((conn = hash_seq_search(&scan)) != NULL)
		if (conn->watching)
			result = lappend(result, conn);
	return result;
}

/*
 * Subtransaction end.  Abort: a connection left in the middle of a request
 * by the error is broken (unread replies, half-sent commands).  Close it
 * now, so that no scan still holding the entry (an open cursor of an outer
 * subtransaction) can append to it; its next request reconnects.  If all
 * the session state it held (WATCH) was made in the aborted subtransaction,
 * nothing left depends on it: its loss does not fail the COMMIT.  A
 * connection not in a request whose session state was all made in the
 * aborted subtransaction releases it as at transaction end (end_session),
 * so that a key read FOR UPDATE there and changed since does not fail the
 * COMMIT (PostgreSQL releases the row locks of an aborted subtransaction
 * too).  Commit (RELEASE): state made at this level is now the parent's.
 */
void
PgpolyConnectionsAtSubEnd(bool isCommit)
{
	HASH_SEQ_STATUS scan;
	PgpolyConnection *conn;
	int			level = GetCurrentTransactionNestLevel();

	if (ConnectionHash == NULL)
		return;
	hash_seq_init(&scan, ConnectionHash);
	while ((conn = hash_seq_search(&scan)) != NULL)
	{
		if (isCommit)
		{
			conn->watch_level = Min(conn->watch_level, level - 1);
			continue;
		}
		if (conn->handle && conn->busy)
		{
			close_in_xact(conn);
			if (conn->watch_level >= level)
				conn->watching = false;
		}
		else if (conn->handle && conn->watching && conn->watch_level >= level)
		{
			if (!end_session(conn))
				close_in_xact(conn);
			conn->watching = false;
		}
	}
}

/* Whether conn is in UsedThisXact. */
static bool
used_this_xact(PgpolyConnection *conn)
{
	ListCell   *lc;

	foreach(lc, UsedThisXact)
		if (memcmp(lfirst(lc), &conn->key, sizeof(PgpolyConnKey)) == 0)
			return true;
	return false;
}

/*
 * For pgpoly.connections(), which shows what the next statement would
 * use: an entry invalidated since it was last used, and not by this
 * transaction, is kept if its options are unchanged (keep_if_unchanged)
 * and closed otherwise, as its next use would.
 */
static void
settle_invalidated(PgpolyConnection *conn)
{
	if (conn->handle == NULL || !conn->invalidated || conn->busy ||
		conn->writes != NIL || conn->watching || used_this_xact(conn))
		return;
	keep_if_unchanged(conn);
	if (conn->invalidated)
		close_handle(conn);
}

PG_FUNCTION_INFO_V1(pgpoly_connections);

/* Add one row of pgpoly.connections() for conn, at target. */
static void
put_connection_row(ReturnSetInfo *rsinfo, PgpolyConnection *conn,
				   const char *target, int64 requests, int64 errors)
{
	Datum		values[7];
	bool		nulls[7] = {0};
	char	   *uname;

	values[0] = DirectFunctionCall1(namein, CStringGetDatum(conn->servername));
	values[1] = CStringGetTextDatum(conn->store->name);
	values[2] = CStringGetTextDatum(target);
	uname = GetUserNameFromId(conn->userid, true);
	if (uname)
		values[3] = DirectFunctionCall1(namein, CStringGetDatum(uname));
	else
		nulls[3] = true;
	values[4] = Int64GetDatum(requests);
	values[5] = Int64GetDatum(errors);
	values[6] = BoolGetDatum(used_this_xact(conn) || conn->writes != NIL);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * pgpoly.connections(): one row per open cached connection, or per server
 * it talks to when it spans several (a Redis Cluster's nodes).
 */
Datum
pgpoly_connections(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HASH_SEQ_STATUS scan;
	PgpolyConnection *conn;

	PgpolyMaterializedSRF(fcinfo);
	if (ConnectionHash == NULL)
		PG_RETURN_VOID();

	prune_dropped();
	hash_seq_init(&scan, ConnectionHash);
	while ((conn = hash_seq_search(&scan)) != NULL)
	{
		List	   *rows;
		ListCell   *lc;

		settle_invalidated(conn);
		if (conn->handle == NULL)
			continue;
		rows = conn->store->describe ? conn->store->describe(conn) : NIL;
		if (rows == NIL)
			put_connection_row(rsinfo, conn, conn->target, conn->requests,
							   conn->errors);
		foreach(lc, rows)
		{
			PgpolyConnRow *row = lfirst(lc);

			put_connection_row(rsinfo, conn, row->target, row->requests,
							   row->errors);
		}
	}
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(pgpoly_disconnect);

/*
 * pgpoly.disconnect(server name DEFAULT NULL): close the cached connections
 * of one server (NULL: all).  Refuses to drop a connection that holds
 * buffered writes of the current transaction.  Returns how many closed.
 */
Datum
pgpoly_disconnect(PG_FUNCTION_ARGS)
{
	HASH_SEQ_STATUS scan;
	PgpolyConnection *conn;
	Oid			serverid = InvalidOid;
	int			closed = 0;

	if (!PG_ARGISNULL(0))
	{
		char	   *name = NameStr(*PG_GETARG_NAME(0));

		serverid = GetForeignServerByName(name, false)->serverid;
	}
	if (ConnectionHash == NULL)
		PG_RETURN_INT32(0);

	hash_seq_init(&scan, ConnectionHash);
	while ((conn = hash_seq_search(&scan)) != NULL)
	{
		if (OidIsValid(serverid) && conn->key.serverid != serverid)
			continue;
		if (conn->handle == NULL)
			continue;
		if (conn->writes != NIL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("cannot close the connection to server \"%s\": it holds writes of the current transaction",
							conn->servername),
					 errhint("COMMIT or ROLLBACK first.")));
		close_in_xact(conn);
		closed++;
	}
	PG_RETURN_INT32(closed);
}
