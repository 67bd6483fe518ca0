#!/usr/bin/env python3
"""Redis paused (SIGSTOP): every wait is bounded and interruptible.

A private Redis is stopped with SIGSTOP (the kernel still accepts TCP
connections, nothing answers).  One psql session with cached connections to
two servers on it (timeout_ms 5000, the default, and '300') checks:

  * statement_timeout '500ms' cancels a SELECT blocked on Redis with 57014
    in < 2 s wall time (contract: within ~100 ms of the timeout);
  * pg_cancel_backend() from another session cancels a blocked SELECT with
    57014 in < 1 s;
  * a COMMIT blocked sending buffered writes is stopped by timeout_ms
    '300' (class 08, < 2 s); pg_cancel_backend does not stop it (cancels
    are held once the writes went out: Redis may apply them), the default
    timeout_ms 5000 does (class 08, < 7 s); the PostgreSQL side of the
    transaction rolls back;
  * without statement_timeout, server option timeout_ms '300' fails the
    query with class 08 and a timeout message in < 2 s;
  * a new session whose connection is opened while Redis is paused is also
    cancelled by statement_timeout in < 2 s;
  * PGPOLY_TIMEOUT_SCALE (`make valgrind`) stretches the 5000 ms, so that
    the cancellations arrive first on a slowed backend, and divides the
    times measured here, as it does Result.elapsed;
  * after SIGCONT the next statement in the same session works (the broken
    connection was discarded and reopened), at most one cached connection per
    server remains, Redis ends with at most two clients (one per server), and
    the PostgreSQL log shows no crash.
"""

import signal
import time

import pgtest

check = pgtest.check


def blocked_in(pid, db, timeout=5):
    """Wait until backend pid is running a statement; True if it is."""
    def active():
        r = pgtest.psql("SELECT state FROM pg_stat_activity WHERE pid = %d;"
                        % pid, db=db, timeout=5)
        return r.rc == 0 and r.out.strip() == "active"
    return pgtest.wait_for(active, timeout=timeout, interval=0.02)


def since(t0):
    """Seconds since t0, divided by PGPOLY_TIMEOUT_SCALE (as Result.elapsed)."""
    return (time.monotonic() - t0) / pgtest.SCALE


def test():
    mark = pgtest.pg_log_mark()
    port = pgtest.start_redis()
    db = pgtest.create_db("pgpoly_redis_paused")
    r = pgtest.psql("""
        CREATE SERVER rp FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d', timeout_ms '%d');
        CREATE SERVER rp300 FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d', timeout_ms '300');
        CREATE FOREIGN TABLE t (key text, value text) SERVER rp
            OPTIONS (table_type 'string', key_prefix 'p:');
        CREATE FOREIGN TABLE t300 (key text, value text) SERVER rp300
            OPTIONS (table_type 'string', key_prefix 'p:');
        CREATE TABLE native (id int);
    """ % (port, int(5000 * pgtest.SCALE), port), db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    pgtest.redis_cli(port, "set", "p:a", "hello")

    s = pgtest.Session(db)
    pid = int(s.value("SELECT pg_backend_pid();"))
    check(s.value("SELECT value FROM t WHERE key = 'a';") == "hello",
          "read through rp before the pause")
    check(s.value("SELECT value FROM t300 WHERE key = 'a';") == "hello",
          "read through rp300 before the pause")

    pgtest.kill_redis(port, signal.SIGSTOP)
    try:
        # statement_timeout
        s.value("SET statement_timeout = '500ms';")
        for sql in ("SELECT * FROM t;", "SELECT value FROM t WHERE key = 'a';"):
            r = s.run(sql, timeout=10)
            check(r.rc == 1 and r.sqlstate == "57014",
                  "%s with Redis paused and statement_timeout 500ms: want "
                  "57014, got rc=%s sqlstate=%s: %s"
                  % (sql, r.rc, r.sqlstate, r.err.strip()))
            check(r.elapsed < 2.0, "statement_timeout 500ms took %.2f s to "
                  "cancel %s" % (r.elapsed, sql))
            print("note: statement_timeout 500ms cancelled %s after %.2f s"
                  % (sql, r.elapsed))
        s.value("RESET statement_timeout;")

        # pg_cancel_backend
        s.send("SELECT * FROM t;")
        if check(blocked_in(pid, db), "the SELECT did not start"):
            t0 = time.monotonic()
            c = pgtest.psql("SELECT pg_cancel_backend(%d);" % pid, db=db)
            r = s.wait(timeout=10)
            took = since(t0)
            check(c.rc == 0 and r.rc == 1 and r.sqlstate == "57014",
                  "pg_cancel_backend of a SELECT blocked on Redis: want "
                  "57014, got rc=%s sqlstate=%s: %s"
                  % (r.rc, r.sqlstate, r.err.strip()))
            check(took < 1.0, "pg_cancel_backend took %.2f s to stop a "
                  "SELECT blocked on Redis" % took)
            print("note: pg_cancel_backend stopped the SELECT after %.2f s"
                  % took)
        else:
            s.wait(timeout=15)

        # A COMMIT blocked on Redis.  (statement_timeout does not cover
        # COMMIT: PostgreSQL disables it before committing.)  The bound is
        # the server's timeout_ms: a cancel that arrives after the writes
        # were sent is held until the COMMIT ends (test_commit_cancel).
        for table, how in (("t", "cancel"), ("t300", "timeout_ms")):
            r = s.run("BEGIN; INSERT INTO native VALUES (1); "
                      "INSERT INTO %s VALUES ('w', 'x');" % table)
            check(r.rc == 0, "transaction before COMMIT failed: %s" % r.err)
            s.send("COMMIT;")
            t0 = time.monotonic()
            if how == "cancel":
                if check(blocked_in(pid, db), "the COMMIT did not start"):
                    t0 = time.monotonic()
                    pgtest.psql("SELECT pg_cancel_backend(%d);" % pid, db=db)
            bound = 7.0 if how == "cancel" else 2.0
            r = s.wait(timeout=15)
            took = since(t0)
            check(r.rc == 1 and (r.sqlstate or "").startswith("08")
                  and "did not answer" in r.err and took < bound,
                  "COMMIT blocked on a paused Redis (%s): want class 08 "
                  "(timeout_ms) in < %s s, got rc=%s sqlstate=%s after %.2f s: %s"
                  % (how, bound, r.rc, r.sqlstate, took, r.err.strip()))
            n = s.run("SELECT count(*) FROM native;")
            check(n.rc == 0 and n.out.strip() == "0",
                  "the native row of the failed COMMIT (%s) is visible: "
                  "rc=%s out=%r err=%s" % (how, n.rc, n.out, n.err.strip()))

        # timeout_ms, no statement_timeout
        for sql in ("SELECT * FROM t300;",
                    "SELECT value FROM t300 WHERE key = 'a';"):
            r = s.run(sql, timeout=10)
            check(r.rc == 1 and (r.sqlstate or "").startswith("08")
                  and '"rp300"' in r.err and ("127.0.0.1:%d" % port) in r.err
                  and "300 ms" in r.err,
                  "%s with Redis paused and timeout_ms 300: want class 08 "
                  "naming the server and the 300 ms; got rc=%s sqlstate=%s: %s"
                  % (sql, r.rc, r.sqlstate, r.err.strip()))
            check(r.elapsed < 2.0, "timeout_ms 300 took %.2f s to fail %s"
                  % (r.elapsed, sql))

        # a connection opened while Redis is paused
        s2 = pgtest.Session(db)
        s2.value("SET statement_timeout = '500ms';")
        r = s2.run("SELECT * FROM t;", timeout=10)
        check(r.rc == 1 and r.sqlstate == "57014" and r.elapsed < 2.0,
              "new connection to a paused Redis with statement_timeout 500ms: "
              "want 57014 in < 2 s, got rc=%s sqlstate=%s after %.2f s: %s"
              % (r.rc, r.sqlstate, r.elapsed, r.err.strip()))
        s2.close()
        check(s.value("SELECT 1;") == "1", "backend unusable while paused")
    finally:
        pgtest.kill_redis(port, signal.SIGCONT)

    # Redis resumed: the next statement works.
    for table in ("t", "t300"):
        r = s.run("SELECT value FROM %s WHERE key = 'a';" % table, timeout=10)
        check(r.rc == 0 and r.out.strip() == "hello",
              "first read of %s after Redis resumed: want 'hello', got rc=%s "
              "out=%r err=%s" % (table, r.rc, r.out, r.err.strip()))
    rc, out, _ = pgtest.redis_cli(port, "exists", "p:w")
    print("note: after the timed-out COMMIT, Redis EXISTS p:w = %s" % out)
    check(s.value("SELECT pg_backend_pid();") == str(pid),
          "the session's backend changed (it died and psql reconnected?)")
    rows = s.value("SELECT server, count(*) FROM pgpoly.connections() "
                   "GROUP BY 1 ORDER BY 1;")
    check(rows == "rp|1\nrp300|1", "want one cached connection per server, "
          "got %r" % rows)
    ok = pgtest.wait_for(lambda: (lambda c: c is not None and len(c) <= 2)(
        pgtest.redis_clients(port)), timeout=5)
    check(ok, "Redis still has more than 2 clients after the session's "
          "broken connections were dropped: %s" % pgtest.redis_clients(port))
    s.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
