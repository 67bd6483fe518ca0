#!/usr/bin/env python3
"""No silently lost update on Redis: WATCH before the read, EXEC at COMMIT.

An UPDATE or DELETE of a Redis table in write_mode 'transactional' reads
its keys when the statement runs and writes them at COMMIT.  Every key it
reads is WATCHed first on the connection that sends the COMMIT's
MULTI/EXEC, so a key another client changes in between aborts the EXEC and
the COMMIT fails with 40001, writing nothing.  On one server:

  * increments interleaved by hand (A reads, B reads, A commits, B
    commits), by the direct modification (key lookup and SCAN) and by the
    row-by-row path (RETURNING): B's COMMIT fails with 40001 naming the
    table and server, with a hint to retry; the counter ends equal to the
    number of COMMITs that succeeded; a PostgreSQL row written in B's
    transaction is rolled back too;
  * SELECT ... FOR UPDATE / FOR NO KEY UPDATE / FOR SHARE / FOR KEY SHARE
    (by key, over SCAN, in a subquery, FOR UPDATE OF f joined to a local
    table, through a view owned by a role with its own user mapping and
    through another server naming the same Redis: the connection that
    watched writes nothing and is checked with an empty MULTI/EXEC first;
    a missing key looked up FOR UPDATE, then INSERTed, too; with an ALTER
    SERVER by another session in between, the connection keeps its WATCHes
    and commits),
    then another session or client changes the key, then a
    constant UPDATE writing back what A computed: COMMIT fails with 40001,
    the other value stays; without the change it commits; a plain SELECT
    sends no WATCH; SKIP LOCKED is an ERROR 0A000; EXPLAIN VERBOSE shows
    Redis Watch on the scans that watch;
  * three sessions incrementing in rounds (all read, then all commit in
    turn, the failed ones retried): the counter equals the successes;
  * a key deleted by another client between an UPDATE (to a constant, a
    key-only read: key lookup and SCAN; also in a WITH of a DELETE) and
    COMMIT: 40001, the key stays deleted (before: re-created holding only
    the assigned field); a key-only DELETE in a WITH of an UPDATE watches
    nothing;
  * a DELETE whose WHERE reads a value another client changes before
    COMMIT: 40001, the key keeps the other client's value;
  * the pgpoly connection killed between the read and COMMIT (Redis drops
    the WATCHes with it): COMMIT fails, the key keeps the other client's
    value;
  * an UPDATE cancelled mid-round in a savepoint (the connection closed,
    its WATCHes lost), ROLLBACK TO, another UPDATE: COMMIT succeeds if no
    WATCH was made outside the savepoint, else fails with 40001;
  * no stray WATCH: after a ROLLBACK, after a statement that failed, and
    after a COMMIT whose UPDATE matched nothing (keys read, nothing
    written), a later transaction on the same session commits a write even
    though the keys read before were changed meanwhile;
  * pgbench -M prepared -c 4 -j 2 -t 200 of UPDATE f SET v = v + 1 WHERE
    key = 'ctr' (the README's case, --max-tries retrying the 40001s): the
    counter ends at 800 (281 before);
  * the connection is kept (no new Redis connection, the same client
    ids in CLIENT LIST) after a COMMIT whose EXEC ran, and after a
    transaction that watched keys and wrote nothing through it (FOR
    UPDATE or an UPDATE matching nothing, then COMMIT; ROLLBACK; an ERROR
    then ROLLBACK; FOR UPDATE, or an ERROR, in a savepoint rolled back):
    its WATCHes are released by an UNWATCH sent ahead of its next command,
    so a blind write of the key read, changed by another client
    meanwhile, commits (in the same transaction after ROLLBACK TO, where
    the WATCH used to stay and fail the COMMIT with 40001);
  * a FOR UPDATE cursor declared before a savepoint, fetched in it (its
    next round read ahead there), ROLLBACK TO, fetched on: a row it
    returns after the rollback, changed by another client, fails the
    COMMIT of a write of it with 40001 (before: overwritten);
  * Redis' commandstats: one WATCH per round of fetch_size keys (a 1000-key
    UPDATE over SCAN with fetch_size 100 sends 10 or 11, no more round trips);
  * watch_limit: a transaction whose UPDATEs read more keys (1001 > 1000,
    the default) watches no more on that server after the limit, with one
    WARNING naming the option, and writes them; the next transaction
    watches again; with watch_limit 0 it writes without WATCH; a DELETE reading keys alone (1001
    of them) watches nothing.
On a Redis Cluster (3 primaries): interleaved increments of one key, of
keys of two slots served by different primaries, and of keys sharing a hash
tag fail B's COMMIT with 40001 and nothing of B is written; of keys of two
slots of one primary (the README's limit), B's COMMIT fails with 40001
saying that 1 of its 2 blocks was aborted; FOR UPDATE of keys on two
primaries through another server naming the cluster, then an UPDATE
through f: checked first, 40001 and nothing written if one changed.  Behind Sentinel, a failover
between the UPDATE and COMMIT fails the COMMIT (40001: the watching
connection was closed) and leaves the new primary's value.  No crash in the PostgreSQL log.
"""

import os
import subprocess

import pgtest
import redis_cluster

check = pgtest.check


def q(sess, sql):
    """The output of a statement that must succeed (else the test stops)."""
    return sess.value(sql, 60)


def conflict(r, what, table="f", server="rw"):
    """r is the 40001 of a WATCH conflict naming table and server."""
    return check(r.rc == 1 and r.sqlstate == "40001" and ('"%s"' % table) in r.err
                 and ('"%s"' % server) in r.err and "retried" in r.err
                 and "may still apply" not in r.err,
                 "%s: want ERROR 40001 naming table \"%s\" and server \"%s\" with a "
                 "retry hint; got rc=%s sqlstate=%s: %s"
                 % (what, table, server, r.rc, r.sqlstate, r.err.strip()[:600]))


def hget(port, key, field):
    return pgtest.redis_cli(port, "hget", key, field)[1]


def interleaved(a, b, port, sql, what):
    """A and B run sql in their transactions, A commits, then B: B fails."""
    pgtest.redis_cli(port, "hset", "f:ctr", "v", "0")
    q(a, "BEGIN; " + sql)
    q(b, "BEGIN; INSERT INTO native VALUES (1); " + sql)
    q(a, "COMMIT;")
    r = b.run("COMMIT;")
    conflict(r, what)
    v = hget(port, "f:ctr", "v")
    check(v == "1", "%s: counter is %r after one successful COMMIT, want 1" % (what, v))
    n = q(b, "SELECT count(*) FROM native;")
    check(n == "0", "%s: the native row of the failed COMMIT stayed (%s)" % (what, n))


def rounds(sessions, port, nrounds):
    """Every session reads, then each commits in turn; retries count."""
    pgtest.redis_cli(port, "hset", "f:ctr", "v", "0")
    ok = pgtest.commit_rounds(sessions, "UPDATE f SET v = v + 1 WHERE key = 'ctr';",
                              nrounds, lambda r: conflict(r, "round COMMIT"))
    v = hget(port, "f:ctr", "v")
    check(v == str(ok), "%d sessions x %d rounds: counter %r, want the %d successes"
          % (len(sessions), nrounds, v, ok))


def deleted_meanwhile(a, port, sql, what):
    """A key deleted after the UPDATE read it: COMMIT fails, it stays gone."""
    pgtest.redis_cli(port, "hset", "f:gone", "v", "5", "w", "old")
    q(a, "BEGIN; " + sql)
    pgtest.redis_cli(port, "del", "f:gone")
    conflict(a.run("COMMIT;"), what)
    ex = pgtest.redis_cli(port, "exists", "f:gone")[1]
    check(ex == "0", "%s: the deleted key exists again after COMMIT (%r)"
          % (what, pgtest.redis_cli(port, "hgetall", "f:gone")[1]))


def changed_meanwhile(a, port, key, sql, between, sqlstates, what):
    """A runs sql on key (v 5), between() runs, key's v becomes 50 by
    another client: A's COMMIT fails with one of sqlstates, v stays 50."""
    pgtest.redis_cli(port, "hset", "f:" + key, "v", "5")
    q(a, sql)
    between()
    pgtest.redis_cli(port, "hset", "f:" + key, "v", "50")
    r = a.run("COMMIT;")
    if "40001" in sqlstates and r.sqlstate == "40001":
        conflict(r, what)
    else:
        check(r.rc == 1 and (r.sqlstate or "").startswith(sqlstates),
              "%s: want an ERROR %s; got rc=%s sqlstate=%s: %s"
              % (what, "/".join(sqlstates), r.rc, r.sqlstate, r.err.strip()[:400]))
    v = hget(port, "f:" + key, "v")
    check(v == "50", "%s: the COMMIT overwrote the other client's value (v=%r, want 50)"
          % (what, v))


def no_stray_watch(a, port, before, what):
    """After before, a change to ctr does not fail A's next write."""
    pgtest.redis_cli(port, "hset", "f:ctr", "v", "0")
    a.run(before)
    pgtest.redis_cli(port, "hset", "f:ctr", "v", "100")
    r = a.run("BEGIN; INSERT INTO f VALUES ('blind', 1, 'x'); COMMIT;")
    check(r.rc == 0, "%s: a later blind write failed: %s" % (what, r.err.strip()[:400]))
    check(hget(port, "f:blind", "v") == "1", "%s: the later write is missing" % what)
    pgtest.redis_cli(port, "del", "f:blind")


def cancelled_in_savepoint(a, port, before, after, want_ok, what):
    """A runs before, then in a savepoint an UPDATE of ctr cancelled while
    Redis is paused (the connection is closed mid-request, its WATCHes
    with it), ROLLBACK TO, then after and COMMIT: it commits iff want_ok
    (no WATCH made outside the savepoint was lost), else 40001."""
    pgtest.redis_cli(port, "hset", "f:ctr", "v", "0")
    q(a, "BEGIN; " + before + " SAVEPOINT s;")
    pgtest.redis_cli(port, "client", "pause", "1000", "all")
    r = a.run("SET LOCAL statement_timeout = 200; UPDATE f SET v = v + 1 WHERE key = 'ctr';")
    check(r.sqlstate == "57014", "%s: the UPDATE was not cancelled: %s" % (what, r.err.strip()))
    q(a, "ROLLBACK TO s;")
    pgtest.wait_for(lambda: pgtest.redis_cli(port, "ping")[1] == "PONG", what="unpause")
    q(a, after)
    r = a.run("COMMIT;")
    if want_ok:
        check(r.rc == 0 and hget(port, "f:ctr", "v") == "10",
              "%s: want a successful COMMIT writing v = 10; got rc=%s v=%r: %s"
              % (what, r.rc, hget(port, "f:ctr", "v"), r.err.strip()[:400]))
    else:
        check(r.rc == 1 and r.sqlstate == "40001",
              "%s: want 40001 (WATCHes made before the savepoint were lost); got rc=%s "
              "sqlstate=%s" % (what, r.rc, r.sqlstate))


def locked_read(a, port, select, change, want_conflict, what, table="f", server="rw"):
    """A reads ctr (v 5) with select, change() (unless None) sets v to 100
    meanwhile, A writes back the value it computed (v + 1) with a constant
    UPDATE and commits: 40001 leaving 100 if want_conflict, else the COMMIT
    writes 6."""
    pgtest.redis_cli(port, "hset", "f:ctr", "v", "5")
    v = q(a, "BEGIN; %s;" % select)
    if not check(v == "5", "%s: %s read %r, want 5" % (what, select, v)):
        a.run("ROLLBACK;")
        return
    if change is not None:
        change()
    q(a, "UPDATE f SET v = %d WHERE key = 'ctr';" % (int(v) + 1))
    r = a.run("COMMIT;")
    got = hget(port, "f:ctr", "v")
    if want_conflict:
        conflict(r, what, table, server)
        check(got == "100", "%s: the COMMIT overwrote the concurrent value (v=%r, want 100)"
              % (what, got))
    else:
        check(r.rc == 0 and got == "6", "%s: want a COMMIT writing v = 6; got rc=%s v=%r: %s"
              % (what, r.rc, got, r.err.strip()[:400]))


def select_for_update(a, b, port):
    """SELECT ... FOR UPDATE/SHARE watches the keys it reads (the ORM
    pattern: read, compute, write back); a plain SELECT watches nothing."""
    by_session = lambda: q(b, "UPDATE f SET v = 100 WHERE key = 'ctr';")
    by_client = lambda: pgtest.redis_cli(port, "hset", "f:ctr", "v", "100")
    for lock in ("FOR UPDATE", "FOR NO KEY UPDATE", "FOR SHARE", "FOR KEY SHARE",
                 "FOR UPDATE NOWAIT"):
        sel = "SELECT v FROM f WHERE key = 'ctr' " + lock
        locked_read(a, port, sel, by_session, True,
                    "SELECT %s, another session's UPDATE committed" % lock)
        locked_read(a, port, sel, None, False, "SELECT %s, no concurrent change" % lock)
    locked_read(a, port, "SELECT v FROM f WHERE key = 'ctr' FOR SHARE", by_client, True,
                "SELECT FOR SHARE, another Redis client's HSET")
    # over SCAN and in a subquery
    for sql, what in (
            ("SELECT v FROM f WHERE key LIKE 'ct%' FOR UPDATE", "FOR UPDATE over SCAN"),
            ("SELECT * FROM (SELECT v FROM f WHERE key = 'ctr' FOR UPDATE) s",
             "FOR UPDATE in a subquery")):
        locked_read(a, port, sql, by_client, True, what + ", another Redis client's HSET")
    # FOR UPDATE OF f joined to a local table: the row mark needs f's whole
    # row, which the batched join does not return, so f's own scan reads
    # (and watches) the keys
    q(a, "INSERT INTO locals VALUES ('ctr'); ANALYZE locals;")
    join = "SELECT f.v FROM locals l JOIN f ON f.key = l.k FOR UPDATE OF f"
    plan = q(a, "EXPLAIN (VERBOSE, COSTS OFF) " + join + ";")
    check(plan is not None and "Redis Watch" in plan,
          "EXPLAIN VERBOSE of FOR UPDATE OF f shows no Redis Watch: %s" % plan)
    locked_read(a, port, join, by_client, True,
                "FOR UPDATE OF f joined to a local table, another Redis client's HSET")
    # FOR UPDATE of the local table only: f is not watched
    w0 = pgtest.redis_stat(port, "watch")
    q(a, "BEGIN; SELECT f.v FROM locals l JOIN f ON f.key = l.k FOR UPDATE OF l; COMMIT;")
    check(pgtest.redis_stat(port, "watch") == w0, "FOR UPDATE OF a local table watched f")
    # EXPLAIN VERBOSE says which scans watch: FOR UPDATE and UPDATE, not SELECT
    for sql, want in (("SELECT v FROM f WHERE key = 'ctr' FOR UPDATE;", True),
                      ("UPDATE f SET v = v + 1 WHERE key = 'ctr';", True),
                      ("SELECT v FROM f WHERE key = 'ctr';", False)):
        plan = q(a, "EXPLAIN (VERBOSE, COSTS OFF) " + sql)
        check(plan is not None and ("Redis Watch" in plan) == want,
              "EXPLAIN VERBOSE %s: want Redis Watch %s: %s" % (sql, want, plan))
    # one WATCH for a FOR UPDATE key lookup; a plain SELECT sends none
    w0 = pgtest.redis_stat(port, "watch")
    q(a, "BEGIN; SELECT v FROM f WHERE key = 'ctr' FOR UPDATE; COMMIT;")
    w = pgtest.redis_stat(port, "watch") - w0
    check(w == 1, "SELECT FOR UPDATE by key sent %d WATCH, want 1" % w)
    w0 = pgtest.redis_stat(port, "watch")
    q(a, "BEGIN; SELECT v FROM f WHERE key = 'ctr'; SELECT count(*) FROM f; "
      "SELECT f.v FROM locals l JOIN f ON f.key = l.k; COMMIT;")
    w = pgtest.redis_stat(port, "watch") - w0
    check(w == 0, "plain SELECTs sent %d WATCH, want none" % w)
    # SKIP LOCKED cannot be honoured: Redis has no row locks to skip
    r = a.run("SELECT v FROM f WHERE key = 'ctr' FOR UPDATE SKIP LOCKED;")
    check(r.rc == 1 and r.sqlstate == "0A000" and "SKIP LOCKED" in r.err and '"f"' in r.err,
          "FOR UPDATE SKIP LOCKED: want ERROR 0A000 naming f; got rc=%s sqlstate=%s: %s"
          % (r.rc, r.sqlstate, r.err.strip()[:400]))
    # a key looked up FOR UPDATE is watched even though it does not exist:
    # check-then-INSERT fails if another client created it meanwhile
    pgtest.redis_cli(port, "del", "f:nokey")
    q(a, "BEGIN; SELECT v FROM f WHERE key = 'nokey' FOR UPDATE;")
    pgtest.redis_cli(port, "hset", "f:nokey", "v", "99")
    conflict(a.run("INSERT INTO f VALUES ('nokey', 1); COMMIT;"),
             "FOR UPDATE of a missing key, then INSERT of it")
    check(hget(port, "f:nokey", "v") == "99", "INSERT after FOR UPDATE of a missing key "
          "overwrote the key another client created")
    # ALTER SERVER by another session between the FOR UPDATE and the UPDATE
    # invalidates the connection: it keeps its WATCHes until the end of the
    # transaction, as it keeps buffered writes (before: closed at the
    # UPDATE, and the COMMIT failed with 40001 though nothing had changed)
    pgtest.redis_cli(port, "hset", "f:ctr", "v", "5")
    q(a, "BEGIN; SELECT v FROM f WHERE key = 'ctr' FOR UPDATE;")
    q(b, "ALTER SERVER rw OPTIONS (SET timeout_ms '5001');")
    r = a.run("UPDATE f SET v = 6 WHERE key = 'ctr'; COMMIT;")
    check(r.rc == 0 and hget(port, "f:ctr", "v") == "6",
          "FOR UPDATE, ALTER SERVER by another session, UPDATE: want a COMMIT writing "
          "v = 6; got rc=%s v=%r: %s" % (r.rc, hget(port, "f:ctr", "v"), r.err.strip()[:400]))
    q(b, "ALTER SERVER rw OPTIONS (SET timeout_ms '5000');")
    # FOR UPDATE through a view owned by a role with its own user mapping
    # watches on that role's connection, and the UPDATE writes through
    # ours: the COMMIT checks the watching connection first (before: it
    # wrote nothing, was closed, and the UPDATE overwrote the change); so
    # does one through another server naming the same Redis
    owner = "watch_owner_%d" % os.getpid()
    q(a, "CREATE ROLE %s; GRANT USAGE ON FOREIGN SERVER rw, rw2 TO %s; "
      "GRANT SELECT, UPDATE ON f, f2 TO %s; "
      "CREATE USER MAPPING FOR %s SERVER rw OPTIONS (password_required 'false'); "
      "CREATE USER MAPPING FOR CURRENT_USER SERVER rw; "
      "CREATE VIEW fv AS SELECT * FROM f; ALTER VIEW fv OWNER TO %s;"
      % ((owner,) * 5))
    for sel, what, table, server in (
            ("SELECT v FROM fv WHERE key = 'ctr' FOR UPDATE",
             "FOR UPDATE through a view of another role's user mapping", "f", "rw"),
            ("SELECT v FROM f2 WHERE key = 'ctr' FOR UPDATE",
             "FOR UPDATE through another server naming the same Redis", "f2", "rw2")):
        w0 = pgtest.redis_stat(port, "watch")
        locked_read(a, port, sel, by_client, True, what + ", another Redis client's HSET",
                    table, server)
        check(pgtest.redis_stat(port, "watch") > w0, "%s: no WATCH sent" % what)
        locked_read(a, port, sel, None, False, what + ", no concurrent change")
    r = a.run("BEGIN; SELECT v FROM fv WHERE key = 'ctr' FOR UPDATE;")
    pgtest.redis_cli(port, "hset", "f:ctr", "v", "100")
    r = a.run("UPDATE f SET v = 6 WHERE key = 'ctr'; COMMIT;")
    check(r.sqlstate == "40001" and ('role "%s"' % owner) in r.err,
          "FOR UPDATE through a view: the 40001 does not name role %s: %s"
          % (owner, r.err.strip()[:400]))
    a.run("ROLLBACK;")
    q(a, "DROP VIEW fv; DROP USER MAPPING FOR CURRENT_USER SERVER rw; "
      "DROP OWNED BY %s; DROP ROLE %s;" % (owner, owner))
    # watch_limit 0: FOR UPDATE watches nothing, as UPDATE
    q(a, "ALTER FOREIGN TABLE f OPTIONS (ADD watch_limit '0');")
    locked_read(a, port, "SELECT v FROM f WHERE key = 'ctr' FOR UPDATE", by_session, False,
                "SELECT FOR UPDATE with watch_limit 0 (last COMMIT wins)")
    q(a, "ALTER FOREIGN TABLE f OPTIONS (DROP watch_limit);")


def kept_connection(a, port):
    """A transaction that watched keys (UPDATE, FOR UPDATE) and wrote none
    through that connection keeps it (before: closed and reopened at the
    next statement) and leaves no WATCH behind: another client changes the
    key read, then a blind write of it on the same connection commits."""

    def client_ids():
        """The ids of Redis' clients but redis-cli (new ones each time)."""
        return sorted(c["id"] for c in pgtest.redis_clients(port) or [])

    read = "SELECT v FROM f WHERE key = 'ctr' FOR UPDATE;"
    blind = "INSERT INTO f VALUES ('ctr', 7, 'blind');"
    q(a, "SELECT count(*) FROM f;")
    for before, after, what in (
            ("BEGIN; UPDATE f SET v = v + 1 WHERE key = 'ctr'; COMMIT;", "",
             "a COMMIT that ran its EXEC"),
            ("BEGIN; %s COMMIT;" % read, "", "FOR UPDATE, COMMIT writing nothing"),
            ("BEGIN; UPDATE f SET v = 1 WHERE key = 'ctr' AND v > 1000; COMMIT;", "",
             "an UPDATE matching nothing, COMMIT"),
            ("BEGIN; %s ROLLBACK;" % read, "", "FOR UPDATE, ROLLBACK"),
            ("BEGIN; UPDATE f SET v = v + 1 WHERE key = 'ctr'; ROLLBACK;", "",
             "UPDATE, ROLLBACK"),
            ("BEGIN; %s SELECT 1 / 0; ROLLBACK;" % read, "",
             "FOR UPDATE, an ERROR, ROLLBACK"),
            ("BEGIN; SAVEPOINT s; %s ROLLBACK TO s;" % read, "COMMIT;",
             "FOR UPDATE in a savepoint rolled back, then a write in the transaction"),
            ("BEGIN; SAVEPOINT s; %s SELECT 1 / 0; ROLLBACK TO s;" % read, "COMMIT;",
             "FOR UPDATE and an ERROR in a savepoint, then a write in the transaction"),
            ("BEGIN; SAVEPOINT s; UPDATE f SET v = v / 0 WHERE key = 'ctr'; ROLLBACK TO s;",
             "COMMIT;", "an UPDATE failing in a savepoint, then a write in the transaction")):
        pgtest.redis_cli(port, "del", "f:ctr")
        pgtest.redis_cli(port, "hset", "f:ctr", "v", "5")
        ids0 = client_ids()
        a.run(before)
        pgtest.redis_cli(port, "hset", "f:ctr", "v", "100")
        # the transaction of a savepoint goes on; else a new one
        r = a.run(blind + " " + after if after else "BEGIN; " + blind + " COMMIT;")
        check(r.rc == 0 and hget(port, "f:ctr", "w") == "blind",
              "%s: the write of a key another client changed meanwhile failed (a WATCH "
              "left behind): rc=%s %s" % (what, r.rc, r.err.strip()[:400]))
        q(a, "SELECT count(*) FROM f;")
        ids1 = client_ids()
        # a reconnect shows as a new id; ids may also go away meanwhile, of
        # earlier sessions' connections whose backends exit slowly (valgrind)
        check(ids1 and set(ids1) <= set(ids0), "%s: the connection was closed "
              "and reopened (client ids %s, were %s)" % (what, ids1, ids0))


def cursor_across_savepoint(a, port):
    """A FOR UPDATE cursor declared before a savepoint is fetched in it (its
    first round of fetch_size keys read, the next sent ahead: both WATCH
    their keys), ROLLBACK TO, then fetched on: the rows it returns now are
    the transaction's, locked as PostgreSQL locks a cursor's rows, so one
    changed by another client before COMMIT fails the COMMIT of a constant
    write of it with 40001 (before: ROLLBACK TO released every WATCH made in
    the savepoint, those of the rows still to come too, and the COMMIT
    overwrote the other client's change)."""
    q(a, "INSERT INTO big SELECT g::text, g FROM generate_series(1, 300) g;")
    keys = ", ".join("'%d'" % g for g in range(1, 301))
    q(a, "BEGIN; DECLARE c CURSOR FOR SELECT key, v FROM big WHERE key IN (%s) "
      "FOR UPDATE;" % keys)
    q(a, "SAVEPOINT s; FETCH 1 FROM c; ROLLBACK TO s;")
    rows = (q(a, "FETCH 150 FROM c;") or "").split()
    key = rows[-1].split("|")[0] if rows else "150"     # of the second round
    pgtest.redis_cli(port, "hset", "b:" + key, "v", "-5")
    r = a.run("UPDATE big SET v = 0 WHERE key = '%s'; COMMIT;" % key)
    conflict(r, "a FOR UPDATE cursor fetched across ROLLBACK TO, a row it returned "
             "after it changed", "big")
    v = hget(port, "b:" + key, "v")
    check(v == "-5", "a FOR UPDATE cursor fetched across ROLLBACK TO: the COMMIT "
          "overwrote the other client's change (v=%r)" % v)


def setup(name, server_options, more=""):
    """A database with server rw (server_options) and hash table f: its
    name, or None if the setup failed."""
    db = pgtest.create_db(name)
    r = pgtest.psql("""
        CREATE SERVER rw FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (%s, timeout_ms '5000');
        CREATE FOREIGN TABLE f (key text, v int, w text) SERVER rw
            OPTIONS (table_type 'hash', key_prefix 'f:');
    """ % server_options + more, db=db)
    return db if check(r.rc == 0, "%s: setup failed: %s" % (name, r.err)) else None


def single_server():
    port = pgtest.start_redis(name="watch-%d" % os.getpid())
    db = setup("pgpoly_redis_watch", "host '127.0.0.1', port '%d'" % port, """
        CREATE FOREIGN TABLE big (key text, v int) SERVER rw
            OPTIONS (table_type 'hash', key_prefix 'b:', fetch_size '100');
        CREATE TABLE native (id int);
        CREATE TABLE locals (k text);
        CREATE SERVER rw2 FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d', timeout_ms '5000');
        CREATE FOREIGN TABLE f2 (key text, v int, w text) SERVER rw2
            OPTIONS (table_type 'hash', key_prefix 'f:');""" % port)
    if db is None:
        return
    a, b, c = pgtest.Session(db), pgtest.Session(db), pgtest.Session(db)

    plan = q(a, "EXPLAIN (VERBOSE, COSTS OFF) UPDATE f SET v = v + 1 WHERE key = 'ctr';")
    check(plan is not None and "Direct Modify" in plan,
          "the key-lookup increment is not a direct modification: %s" % plan)
    interleaved(a, b, port, "UPDATE f SET v = v + 1 WHERE key = 'ctr';",
                "direct UPDATE by key")
    interleaved(a, b, port, "UPDATE f SET v = v + 1 WHERE key LIKE 'ct%';",
                "direct UPDATE over SCAN")
    interleaved(a, b, port, "UPDATE f SET v = v + 1 WHERE key = 'ctr' RETURNING v;",
                "row-by-row UPDATE (RETURNING)")
    rounds([a, b, c], port, 5)
    select_for_update(a, b, port)

    for sql, what in (
            ("UPDATE f SET w = 'new' WHERE key = 'gone';", "constant UPDATE by key"),
            ("UPDATE f SET w = 'new' WHERE key LIKE 'gon%';",
             "constant UPDATE over a key-only SCAN"),
            ("UPDATE f SET w = w || '!' WHERE key = 'gone' RETURNING w;", "row-by-row UPDATE"),
            ("WITH u AS (UPDATE f SET w = 'new' WHERE key = 'gone') DELETE FROM native;",
             "constant UPDATE in a WITH of a DELETE")):
        deleted_meanwhile(a, port, sql, what + ", key deleted before COMMIT")
    # a key-only DELETE in a WITH of an UPDATE watches nothing, as on its own
    w0 = pgtest.redis_stat(port, "watch")
    q(a, "BEGIN; WITH d AS (DELETE FROM f WHERE key = 'nokey') UPDATE native SET id = id; "
      "COMMIT;")
    w = pgtest.redis_stat(port, "watch") - w0
    check(w == 0, "a key-only DELETE in a WITH of an UPDATE sent %d WATCH, want none" % w)

    changed_meanwhile(a, port, "d", "BEGIN; DELETE FROM f WHERE key = 'd' AND v < 10;",
                      lambda: pgtest.redis_cli(port, "hset", "f:d", "v", "50"),
                      ("40001",), "DELETE whose WHERE read a value changed before COMMIT")
    # the connection that holds the WATCHes dies before COMMIT: 40001 (or
    # class 08 if the death shows only while the EXEC is sent)
    changed_meanwhile(a, port, "ctr", "BEGIN; UPDATE f SET v = v + 1 WHERE key = 'ctr';",
                      lambda: pgtest.redis_cli(port, "client", "kill", "skipme", "yes",
                                               "type", "normal"),
                      ("40001", "08"), "COMMIT after the watching connection died")

    for before, what in (
            ("UPDATE f SET v = v + 1 WHERE key = 'ctr'; ROLLBACK;", "after ROLLBACK"),
            ("UPDATE f SET v = v / 0 WHERE key = 'ctr'; ROLLBACK;", "after a failed statement"),
            ("UPDATE f SET v = 1 WHERE key = 'ctr' AND v > 1000; COMMIT;",
             "after a COMMIT that read keys and wrote none"),
            ("SAVEPOINT s; UPDATE f SET v = v / 0 WHERE key LIKE 'ct%'; ROLLBACK TO s; COMMIT;",
             "after ROLLBACK TO SAVEPOINT and COMMIT")):
        no_stray_watch(a, port, "BEGIN; " + before, what)

    # a statement cancelled in the middle of its watched round, in a savepoint:
    # if nothing outside the savepoint watched, ROLLBACK TO leaves nothing
    # that depends on the lost WATCHes and the transaction commits (before:
    # 40001 on every retry); WATCHes made before it, or released into the
    # transaction, were lost with the connection: 40001
    upd = "UPDATE f SET v = v + 10 WHERE key = 'ctr';"
    cancelled_in_savepoint(a, port, "", upd, True, "only the cancelled statement watched")
    cancelled_in_savepoint(a, port, "UPDATE f SET w = 'x' WHERE key = 'other';", upd, False,
                           "a WATCH made before the savepoint")
    cancelled_in_savepoint(a, port, "SAVEPOINT r; UPDATE f SET w = 'x' WHERE key = 'other'; "
                           "RELEASE r;", upd, False, "a WATCH released into the transaction")

    # the README's pgbench run: every increment counts
    pgtest.redis_cli(port, "hset", "f:ctr", "v", "0")
    script = os.path.join(pgtest.work_dir(), "watch-incr.sql")
    with open(script, "w") as fh:
        fh.write("UPDATE f SET v = v + 1 WHERE key = 'ctr';\n")
    p = subprocess.run(["pgbench", "-n", "-M", "prepared", "-c", "4", "-j", "2", "-t", "200",
                        "--max-tries", "100000", "-f", script, db],
                       capture_output=True, text=True, timeout=300)
    v = hget(port, "f:ctr", "v")
    retried = [l for l in p.stdout.splitlines() if "retried" in l or "failed" in l]
    check(p.returncode == 0 and v == "800",
          "pgbench -c 4 -t 200 of v = v + 1: counter %r, want 800 (rc %d): %s %s"
          % (v, p.returncode, p.stdout[-600:], p.stderr[-600:]))
    print("pgbench -M prepared -c 4 -j 2 -t 200: counter %s; %s" % (v, "; ".join(retried)))

    # a COMMIT whose EXEC ran keeps the connection, and so does every end of
    # a transaction (or savepoint) that watched keys and wrote nothing
    kept_connection(a, port)

    # WATCH rides with the reads: one per round of fetch_size keys
    q(a, "INSERT INTO big SELECT g::text, g FROM generate_series(1, 1000) g;")
    w0, h0 = pgtest.redis_stat(port, "watch"), pgtest.redis_stat(port, "hgetall")
    q(a, "BEGIN; UPDATE big SET v = v + 1; COMMIT;")
    w, h = pgtest.redis_stat(port, "watch") - w0, pgtest.redis_stat(port, "hgetall") - h0
    check(10 <= w <= 11 and h == 1000,
          "UPDATE of 1000 keys (fetch_size 100, over SCAN): %d WATCH and %d HGETALL, "
          "want one WATCH per fetch round (10, or 11 as SCAN pages fall) and 1000" % (w, h))
    print("commandstats, UPDATE of 1000 keys at fetch_size 100: WATCH %d, HGETALL %d" % (w, h))
    # past watch_limit (1000 by default) the transaction watches no more keys
    # on that server: the statement runs, with one WARNING per transaction
    # naming the option, and what it writes is written
    q(a, "INSERT INTO big VALUES ('1001', 1001);")
    w0 = pgtest.redis_stat(port, "watch")
    r = a.run("BEGIN; UPDATE big SET v = v + 1; UPDATE big SET v = v + 1; COMMIT;")
    w = pgtest.redis_stat(port, "watch") - w0
    check(r.rc == 0 and r.err.count("WARNING") == 1 and "watch_limit" in r.err,
          "UPDATE of 1001 keys twice: want success and one WARNING naming watch_limit; "
          "got rc=%s: %s" % (r.rc, r.err.strip()[:600]))
    check(1 <= w <= 11, "UPDATE past watch_limit: %d WATCH commands, want those of its "
          "first 1000 keys at most (10 or 11 rounds), none for the second" % w)
    check(pgtest.redis_cli(port, "hget", "b:1001", "v")[1] == "1003" and
          pgtest.redis_cli(port, "hget", "b:1", "v")[1] == "4",
          "UPDATE past watch_limit: the increments were not written")
    # the next transaction watches again, within the limit
    w0 = pgtest.redis_stat(port, "watch")
    r = a.run("BEGIN; UPDATE big SET v = v + 1 WHERE key = '7'; COMMIT;")
    check(r.rc == 0 and "WARNING" not in r.err and pgtest.redis_stat(port, "watch") == w0 + 1,
          "the transaction after a capped one: want one WATCH and no WARNING; got rc=%s, "
          "%d WATCH: %s" % (r.rc, pgtest.redis_stat(port, "watch") - w0, r.err.strip()[:400]))
    q(a, "ALTER FOREIGN TABLE big OPTIONS (ADD watch_limit '0');")
    w0 = pgtest.redis_stat(port, "watch")
    q(a, "BEGIN; UPDATE big SET v = v + 1; COMMIT;")
    check(pgtest.redis_stat(port, "watch") == w0, "watch_limit 0 still sent WATCH")
    check(pgtest.redis_cli(port, "hget", "b:1001", "v")[1] == "1004",
          "watch_limit 0: the UPDATE was not written")
    # a DELETE that reads no value watches nothing (no limit either)
    q(a, "ALTER FOREIGN TABLE big OPTIONS (SET watch_limit '1000');")
    w0 = pgtest.redis_stat(port, "watch")
    out = q(a, "BEGIN; DELETE FROM big; COMMIT;")
    check(pgtest.redis_stat(port, "watch") == w0 and
          pgtest.redis_cli(port, "exists", "b:1")[1] == "0",
          "a key-only DELETE of 1001 keys: WATCH sent or keys left (%s)" % out)
    cursor_across_savepoint(a, port)
    for s in (a, b, c):
        s.close()
    pgtest.stop_redis(port)


def redirected_watch(cl, a, k):
    """A slot moved since the session learnt the slot map: the WATCH of a
    FOR UPDATE of key k is answered MOVED and sent again to k's new owner,
    which then holds it.  After the transaction ends
    (COMMIT writing nothing, ROLLBACK), k changed by another client, a blind
    write of k commits (before: the new owner kept the WATCH, and the EXEC
    failed with 40001).  Then, k's slot moved back unseen again: an UPDATE
    of k redirected the same way, k changed by another client before
    COMMIT: 40001, k keeps the other client's value."""
    slot = cl.keyslot("f:" + k)
    for end in ("ROLLBACK;", "COMMIT;"):
        # each turn moves the slot to another primary, behind a's back
        cl.move_slot(slot, min(set(cl.primaries()) - {cl.owner(slot)}))
        r = a.run("BEGIN; SELECT v FROM f WHERE key = '%s' FOR UPDATE; %s" % (k, end))
        check(r.rc == 0, "cluster, FOR UPDATE redirected by MOVED: %s" % r.err.strip()[:400])
        redis_cluster.call(cl.owner(slot), "HSET", "f:" + k, "v", "50")
        r = a.run("BEGIN; INSERT INTO f VALUES ('%s', 9); COMMIT;" % k)
        v = redis_cluster.call(cl.owner(slot), "HGET", "f:" + k, "v")
        check(r.rc == 0 and v in (b"9", "9"),
              "cluster, FOR UPDATE redirected by MOVED, %s then a blind write of the key "
              "changed meanwhile: rc=%s v=%r: %s" % (end, r.rc, v, r.err.strip()[:400]))
    cl.move_slot(slot, min(set(cl.primaries()) - {cl.owner(slot)}))
    q(a, "BEGIN; UPDATE f SET v = v + 1 WHERE key = '%s';" % k)
    redis_cluster.call(cl.owner(slot), "HSET", "f:" + k, "v", "77")
    conflict(a.run("COMMIT;"), "cluster, UPDATE redirected by MOVED, key changed")
    v = redis_cluster.call(cl.owner(slot), "HGET", "f:" + k, "v")
    check(v in (b"77", "77"), "cluster, UPDATE redirected by MOVED: the failed COMMIT "
          "overwrote the other client's value (v=%r)" % (v,))


def cluster():
    cl = redis_cluster.Cluster(primaries=3, replicas=0)
    try:
        port = cl.primaries()[0]
        db = setup("pgpoly_redis_watch_cluster", "nodes '127.0.0.1:%d'" % port)
        if db is None:
            return
        a, b = pgtest.Session(db), pgtest.Session(db)
        # keys on two different primaries; two keys of two slots of one primary
        keys = []
        node_of = {}
        same_node = None
        for i in range(400):
            k = "k%d" % i
            node = cl.owner(cl.keyslot("f:" + k))
            if node not in node_of:
                node_of[node] = k
                keys.append(k)
            elif same_node is None and node == cl.owner(cl.keyslot("f:k0")) and k != "k0":
                same_node = k
        q(a, "INSERT INTO f SELECT g, 0 FROM unnest(ARRAY['k0', '%s', '%s', '%s', '{t}a', '{t}b']) g;"
          % (keys[0], keys[1], same_node))
        for what, where in (("one key", "key = 'k0'"),
                            ("keys on two primaries", "key IN ('%s', '%s')" % tuple(keys[:2])),
                            ("keys sharing a hash tag", "key IN ('{t}a', '{t}b')"),
                            ("two slots of one primary", "key IN ('k0', '%s')" % same_node)):
            q(a, "UPDATE f SET v = 0 WHERE %s;" % where)
            q(a, "BEGIN; UPDATE f SET v = v + 1 WHERE %s;" % where)
            q(b, "BEGIN; UPDATE f SET v = v + 1 WHERE %s;" % where)
            q(a, "COMMIT;")
            r = b.run("COMMIT;")
            out = q(a, "SELECT string_agg(v::text, ',' ORDER BY key) FROM f WHERE %s;" % where)
            if what == "two slots of one primary":
                # README's limit: the node's first block is aborted (40001),
                # its second block, no longer watched, runs
                check(r.rc == 1 and r.sqlstate == "40001" and "1 of 2 hash-slot" in r.err,
                      "cluster, %s: want 40001 saying 1 of 2 blocks were aborted; got "
                      "rc=%s sqlstate=%s: %s" % (what, r.rc, r.sqlstate, r.err.strip()[:600]))
                print("cluster, %s: values after A's COMMIT and B's failed one: %s"
                      % (what, out))
                continue
            conflict(r, "cluster, %s" % what)
            want = ",".join(["1"] * (1 if what == "one key" else 2))
            check(out == want, "cluster, %s: values %r after one successful COMMIT, want %r"
                  % (what, out, want))
        # FOR UPDATE of keys on two primaries through another server naming
        # the cluster, which writes nothing: checked with an empty
        # MULTI/EXEC on each watching node before f's writes are sent
        q(a, "CREATE SERVER rw2 FOREIGN DATA WRAPPER pgpoly_redis OPTIONS "
          "(nodes '127.0.0.1:%d', timeout_ms '5000'); CREATE FOREIGN TABLE f2 "
          "(key text, v int, w text) SERVER rw2 OPTIONS (table_type 'hash', "
          "key_prefix 'f:');" % port)
        two = "key IN ('%s', '%s')" % tuple(keys[:2])
        for change, want_ok in ((None, True), (keys[1], False)):
            q(a, "UPDATE f SET v = 0 WHERE %s;" % two)
            q(a, "BEGIN; SELECT key FROM f2 WHERE %s FOR UPDATE;" % two)
            if change is not None:
                redis_cluster.call(cl.owner(cl.keyslot("f:" + change)), "HSET",
                                   "f:" + change, "v", "50")
            r = a.run("UPDATE f SET v = 7 WHERE key = '%s'; COMMIT;" % keys[0])
            out = q(a, "SELECT string_agg(v::text, ',' ORDER BY key) FROM f WHERE %s;" % two)
            if want_ok:
                check(r.rc == 0, "cluster, FOR UPDATE through rw2 then UPDATE through rw: "
                      "COMMIT failed: %s" % r.err.strip()[:400])
            else:
                conflict(r, "cluster, FOR UPDATE through rw2, a key changed", "f2", "rw2")
                check(pgtest.redis_cli(cl.owner(cl.keyslot("f:" + keys[0])), "hget",
                                       "f:" + keys[0], "v")[1] == "0",
                      "cluster, FOR UPDATE through rw2: the failed COMMIT wrote (%s)" % out)
        # FOR UPDATE of keys on two primaries, nothing written: every node
        # keeps its connection and sends UNWATCH first; blind writes of the
        # keys, changed by another client meanwhile, commit
        owners = sorted({cl.owner(cl.keyslot("f:" + k)) for k in keys[:2]})

        def ids():
            return [sorted(c["id"] for c in pgtest.redis_clients(o) or []) for o in owners]

        for end in ("COMMIT;", "ROLLBACK;", "SAVEPOINT s; %s ROLLBACK TO s; COMMIT;"):
            locked = "SELECT key FROM f WHERE %s FOR UPDATE;" % two
            ids0 = ids()
            a.run("BEGIN; " + (end % locked if "%s" in end else locked + " " + end))
            for k in keys[:2]:
                redis_cluster.call(cl.owner(cl.keyslot("f:" + k)), "HSET", "f:" + k, "v", "50")
            r = a.run("BEGIN; INSERT INTO f VALUES ('%s', 8), ('%s', 8); COMMIT;"
                      % tuple(keys[:2]))
            out = q(a, "SELECT string_agg(v::text, ',' ORDER BY key) FROM f WHERE %s;" % two)
            check(r.rc == 0 and out == "8,8", "cluster, FOR UPDATE then %s then blind writes "
                  "of keys changed meanwhile: rc=%s values %r: %s"
                  % (end, r.rc, out, r.err.strip()[:400]))
            check(all(ids0) and ids() == ids0, "cluster, FOR UPDATE then %s: a node's "
                  "connection was reopened (client ids %s, were %s)" % (end, ids(), ids0))
        redirected_watch(cl, a, keys[0])
        a.close()
        b.close()
    finally:
        cl.stop()


def sentinel():
    st = redis_cluster.Sentinel()
    try:
        db = setup("pgpoly_redis_watch_sentinel",
                   "sentinels '127.0.0.1:%d', sentinel_master 'pgpoly', sentinel_check_ms '0'"
                   % st.sentinel)
        if db is None:
            return
        a = pgtest.Session(db)
        q(a, "INSERT INTO f VALUES ('ctr', 0);")
        q(a, "BEGIN; UPDATE f SET v = v + 1 WHERE key = 'ctr';")
        new = st.failover()
        redis_cluster.call(new, "HSET", "f:ctr", "v", "50")
        r = a.run("COMMIT;")
        check(r.rc == 1 and (r.sqlstate == "40001" or (r.sqlstate or "").startswith("08")),
              "Sentinel failover between the UPDATE and COMMIT: want 40001 (or class 08); "
              "got rc=%s sqlstate=%s: %s" % (r.rc, r.sqlstate, r.err.strip()[:400]))
        v = redis_cluster.call(new, "HGET", "f:ctr", "v")
        check(v in (b"50", "50"), "Sentinel failover: the COMMIT overwrote the new primary's "
              "value (v=%r, want 50)" % (v,))
        a.close()
    finally:
        st.stop()


def test():
    mark = pgtest.pg_log_mark()
    single_server()
    cluster()
    sentinel()
    pgtest.check_pg_log(mark)


pgtest.main(test)
