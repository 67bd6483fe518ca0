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
  * three sessions incrementing in rounds (all read, then all commit in
    turn, the failed ones retried): the counter equals the successes;
  * a key deleted by another client between an UPDATE (to a constant, a
    key-only read: key lookup and SCAN) and COMMIT: 40001, the key stays
    deleted (before: re-created holding only the assigned field);
  * a DELETE whose WHERE reads a value another client changes before
    COMMIT: 40001, the key keeps the other client's value;
  * the pgpoly connection killed between the read and COMMIT (Redis drops
    the WATCHes with it): COMMIT fails, the key keeps the other client's
    value;
  * no stray WATCH: after a ROLLBACK, after a statement that failed, and
    after a COMMIT whose UPDATE matched nothing (keys read, nothing
    written), a later transaction on the same session commits a write even
    though the keys read before were changed meanwhile;
  * Redis' commandstats: one WATCH per round of fetch_size keys (a 1000-key
    UPDATE with fetch_size 100 sends 10 WATCHes, no more round trips).
On a Redis Cluster (3 primaries): interleaved increments of one key, and of
keys of two slots served by different primaries, fail B's COMMIT with 40001
and nothing of B is written.  No crash in the PostgreSQL log.
"""

import os

import pgtest
import redis_cluster

check = pgtest.check


def q(sess, sql, timeout=60):
    """The output of a statement that must succeed."""
    r = sess.run(sql, timeout)
    if r.rc != 0:
        check(False, "statement failed: %s\n%s" % (sql.strip()[:300], r.err.strip()))
        return None
    return r.out.strip()


def conflict(r, what, table="f", server="rw"):
    """r is the 40001 of a WATCH conflict naming table and server."""
    return check(r.rc == 1 and r.sqlstate == "40001" and ('"%s"' % table) in r.err
                 and ('"%s"' % server) in r.err and "retried" in r.err,
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
    ok = 0
    for _ in range(nrounds):
        for s in sessions:
            q(s, "BEGIN; UPDATE f SET v = v + 1 WHERE key = 'ctr';")
        for s in sessions:
            r = s.run("COMMIT;")
            if r.rc == 0:
                ok += 1
            else:
                conflict(r, "round COMMIT")
    v = hget(port, "f:ctr", "v")
    check(v == str(ok), "%d sessions x %d rounds: counter %r, want the %d successes"
          % (len(sessions), nrounds, v, ok))
    check(ok == nrounds, "each round should commit exactly one session: %d of %d"
          % (ok, nrounds))


def deleted_meanwhile(a, port, sql, what):
    """A key deleted after the UPDATE read it: COMMIT fails, it stays gone."""
    pgtest.redis_cli(port, "hset", "f:gone", "v", "5", "w", "old")
    q(a, "BEGIN; " + sql)
    pgtest.redis_cli(port, "del", "f:gone")
    conflict(a.run("COMMIT;"), what)
    ex = pgtest.redis_cli(port, "exists", "f:gone")[1]
    check(ex == "0", "%s: the deleted key exists again after COMMIT (%r)"
          % (what, pgtest.redis_cli(port, "hgetall", "f:gone")[1]))


def no_stray_watch(a, port, before, what):
    """After before, a change to ctr does not fail A's next write."""
    pgtest.redis_cli(port, "hset", "f:ctr", "v", "0")
    a.run(before)
    pgtest.redis_cli(port, "hset", "f:ctr", "v", "100")
    r = a.run("BEGIN; INSERT INTO f VALUES ('blind', 1, 'x'); COMMIT;")
    check(r.rc == 0, "%s: a later blind write failed: %s" % (what, r.err.strip()[:400]))
    check(hget(port, "f:blind", "v") == "1", "%s: the later write is missing" % what)
    pgtest.redis_cli(port, "del", "f:blind")


def cmdstat(port, cmd):
    """calls of cmd in Redis' INFO commandstats."""
    out = pgtest.redis_cli(port, "info", "commandstats")[1]
    for line in out.splitlines():
        if line.startswith("cmdstat_%s:" % cmd):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def single_server():
    port = pgtest.start_redis(name="watch-%d" % os.getpid())
    db = pgtest.create_db("pgpoly_redis_watch")
    r = pgtest.psql("""
        CREATE SERVER rw FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d', timeout_ms '5000');
        CREATE FOREIGN TABLE f (key text, v int, w text) SERVER rw
            OPTIONS (table_type 'hash', key_prefix 'f:');
        CREATE FOREIGN TABLE big (key text, v int) SERVER rw
            OPTIONS (table_type 'hash', key_prefix 'b:', fetch_size '100');
        CREATE TABLE native (id int);
    """ % port, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
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

    deleted_meanwhile(a, port, "UPDATE f SET w = 'new' WHERE key = 'gone';",
                      "constant UPDATE by key, key deleted before COMMIT")
    deleted_meanwhile(a, port, "UPDATE f SET w = 'new' WHERE key LIKE 'gon%';",
                      "constant UPDATE over a key-only SCAN, key deleted before COMMIT")
    deleted_meanwhile(a, port, "UPDATE f SET w = w || '!' WHERE key = 'gone' RETURNING w;",
                      "row-by-row UPDATE, key deleted before COMMIT")

    pgtest.redis_cli(port, "hset", "f:d", "v", "5")
    q(a, "BEGIN; DELETE FROM f WHERE key = 'd' AND v < 10;")
    pgtest.redis_cli(port, "hset", "f:d", "v", "50")
    conflict(a.run("COMMIT;"), "DELETE whose WHERE read a value changed before COMMIT")
    v = hget(port, "f:d", "v")
    check(v == "50", "the DELETE removed a key another client changed (v=%r)" % v)

    # the connection that holds the WATCHes dies before COMMIT
    pgtest.redis_cli(port, "hset", "f:ctr", "v", "0")
    q(a, "BEGIN; UPDATE f SET v = v + 1 WHERE key = 'ctr';")
    pgtest.redis_cli(port, "client", "kill", "skipme", "yes", "type", "normal")
    pgtest.redis_cli(port, "hset", "f:ctr", "v", "7")
    r = a.run("COMMIT;")
    check(r.rc == 1 and (r.sqlstate == "40001" or (r.sqlstate or "").startswith("08")),
          "COMMIT after the watching connection died: want 40001 (or class 08); "
          "got rc=%s sqlstate=%s: %s" % (r.rc, r.sqlstate, r.err.strip()[:400]))
    v = hget(port, "f:ctr", "v")
    check(v == "7", "COMMIT after the watching connection died overwrote the "
          "other client's value (v=%r, want 7)" % v)

    no_stray_watch(a, port, "BEGIN; UPDATE f SET v = v + 1 WHERE key = 'ctr'; ROLLBACK;",
                   "after ROLLBACK")
    no_stray_watch(a, port, "BEGIN; UPDATE f SET v = v / 0 WHERE key = 'ctr'; ROLLBACK;",
                   "after a failed statement")
    no_stray_watch(a, port, "BEGIN; UPDATE f SET v = 1 WHERE key = 'ctr' AND v > 1000; COMMIT;",
                   "after a COMMIT that read keys and wrote none")
    no_stray_watch(a, port, "BEGIN; SAVEPOINT s; UPDATE f SET v = v / 0 WHERE key LIKE 'ct%'; "
                   "ROLLBACK TO s; COMMIT;", "after ROLLBACK TO SAVEPOINT and COMMIT")

    # WATCH rides with the reads: one per round of fetch_size keys
    q(a, "INSERT INTO big SELECT g::text, g FROM generate_series(1, 1000) g;")
    w0, h0 = cmdstat(port, "watch"), cmdstat(port, "hgetall")
    q(a, "BEGIN; UPDATE big SET v = v + 1; COMMIT;")
    w, h = cmdstat(port, "watch") - w0, cmdstat(port, "hgetall") - h0
    check(w == 10 and h == 1000,
          "UPDATE of 1000 keys (fetch_size 100): %d WATCH and %d HGETALL, want 10 and 1000"
          % (w, h))
    print("commandstats, UPDATE of 1000 keys at fetch_size 100: WATCH %d, HGETALL %d" % (w, h))
    for s in (a, b, c):
        s.close()
    pgtest.stop_redis(port)


def cluster():
    cl = redis_cluster.Cluster(primaries=3, replicas=0)
    try:
        port = cl.primaries()[0]
        db = pgtest.create_db("pgpoly_redis_watch_cluster")
        r = pgtest.psql("""
            CREATE SERVER rw FOREIGN DATA WRAPPER pgpoly_redis
              OPTIONS (nodes '127.0.0.1:%d', timeout_ms '5000');
            CREATE FOREIGN TABLE f (key text, v int, w text) SERVER rw
              OPTIONS (table_type 'hash', key_prefix 'f:');
        """ % port, db=db)
        if not check(r.rc == 0, "cluster setup failed: %s" % r.err):
            return
        a, b = pgtest.Session(db), pgtest.Session(db)
        # keys on two different primaries
        keys = []
        node_of = {}
        for i in range(200):
            k = "k%d" % i
            node = cl.owner(cl.keyslot("f:" + k))
            if node not in node_of:
                node_of[node] = k
                keys.append(k)
            if len(keys) == 2:
                break
        for what, where in (("one key", "key = 'k0'"),
                            ("keys on two primaries",
                             "key IN ('%s', '%s')" % tuple(keys))):
            q(a, "INSERT INTO f SELECT g, 0 FROM unnest(ARRAY['k0', '%s', '%s']) g;"
              % tuple(keys))
            q(a, "BEGIN; UPDATE f SET v = v + 1 WHERE %s;" % where)
            q(b, "BEGIN; UPDATE f SET v = v + 1 WHERE %s;" % where)
            q(a, "COMMIT;")
            r = b.run("COMMIT;")
            conflict(r, "cluster, %s" % what)
            out = q(a, "SELECT string_agg(v::text, ',' ORDER BY key) FROM f WHERE %s;" % where)
            want = ",".join(["1"] * (1 if what == "one key" else 2))
            check(out == want, "cluster, %s: values %r after one successful COMMIT, want %r"
                  % (what, out, want))
        a.close()
        b.close()
    finally:
        cl.stop()


def test():
    mark = pgtest.pg_log_mark()
    single_server()
    cluster()
    pgtest.check_pg_log(mark)


pgtest.main(test)
