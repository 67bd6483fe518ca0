#!/usr/bin/env python3
"""Redis stopped before a query, and Redis restarted between statements.

With a private Redis behind a pgpoly_redis server, one psql session checks:

  * Redis stopped before the session ever connected: SELECT, a key lookup
    and an INSERT (sent at COMMIT) each fail with SQLSTATE class 08 and a
    message naming the server and host:port, at once (not after a timeout);
    the backend survives (SELECT 1 in the same session, same pid).
  * Twenty more failing statements leak nothing: the backend holds no more
    sockets than after the first failure, and pgpoly.connections() lists no
    connection to the dead server.
  * Redis started again on the same port: the next statement reconnects and
    works (the failure was not sticky).
  * Redis stopped while the session holds a cached connection: the next
    statement fails with class 08; after Redis is back the next one works.
  * Redis restarted (clean shutdown, then SIGKILL) between two statements
    with no failure in between: the next statement opens the closed cached
    connection anew and returns the right data (test_redis_reconnect.py
    covers Redis' idle timeout and the other cases).
  * Afterwards at most one cached connection per server, at most one Redis
    client, and no crashed backend in the PostgreSQL log.
"""

import signal

import pgtest

check = pgtest.check


def is_conn_error(r, server, port):
    """The statement failed with class 08 naming server and host:port."""
    return (r.rc == 1 and (r.sqlstate or "").startswith("08")
            and ('"%s"' % server) in r.err and ("127.0.0.1:%d" % port) in r.err)


def test():
    mark = pgtest.pg_log_mark()
    port = pgtest.start_redis()
    db = pgtest.create_db("pgpoly_redis_down")
    r = pgtest.psql("""
        CREATE SERVER rdown FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d', connect_timeout_ms '1000',
                     timeout_ms '2000');
        CREATE FOREIGN TABLE kv (key text, value text) SERVER rdown
            OPTIONS (table_type 'string', key_prefix 'kv:');
        CREATE FOREIGN TABLE kv_now (key text, value text) SERVER rdown
            OPTIONS (table_type 'string', key_prefix 'kv:',
                     write_mode 'immediate');
    """ % port, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return

    s = pgtest.Session(db)
    pid = int(s.value("SELECT pg_backend_pid();"))

    # --- stopped before the first query -----------------------------------
    pgtest.stop_redis(port)
    for sql in ("SELECT * FROM kv;",
                "SELECT value FROM kv WHERE key = 'a';",
                "INSERT INTO kv VALUES ('a', '1');",
                "INSERT INTO kv_now VALUES ('a', '1');"):
        r = s.run(sql, timeout=15)
        check(is_conn_error(r, "rdown", port),
              "%s with Redis down: want an ERROR of class 08 naming server "
              "\"rdown\" and 127.0.0.1:%d, got rc=%s sqlstate=%s: %s"
              % (sql, port, r.rc, r.sqlstate, r.err.strip()))
        check(r.elapsed < 3, "%s with Redis down (connection refused) took "
              "%.1f s" % (sql, r.elapsed))
        r = s.run("SELECT 1;")
        check(r.rc == 0 and r.out.strip() == "1",
              "backend unusable after %s failed: %s" % (sql, r.err))
    check(s.value("SELECT pg_backend_pid();") == str(pid),
          "the session's backend changed (it died and psql reconnected?)")

    # --- repeated failures leak nothing -----------------------------------
    base = pgtest.backend_sockets(pid)
    for _ in range(20):
        s.run("SELECT * FROM kv;", timeout=15)
    now = pgtest.backend_sockets(pid)
    check(base is not None and now is not None and now <= base,
          "backend sockets grew from %s to %s over 20 failed statements"
          % (base, now))
    n = s.value("SELECT count(*) FROM pgpoly.connections() "
                "WHERE server = 'rdown';")
    check(n == "0", "pgpoly.connections() lists %s connection(s) to a Redis "
          "that is down" % n)

    # --- back on the same port: the next statement works ------------------
    pgtest.start_redis(port=port)
    pgtest.redis_cli(port, "set", "kv:a", "hello")
    r = s.run("SELECT value FROM kv WHERE key = 'a';")
    check(r.rc == 0 and r.out.strip() == "hello",
          "first statement after Redis came back: want 'hello', got rc=%s "
          "out=%r err=%s" % (r.rc, r.out, r.err.strip()))

    # --- stopped while a connection is cached ----------------------------
    pgtest.stop_redis(port)
    r = s.run("SELECT value FROM kv WHERE key = 'a';", timeout=15)
    check(is_conn_error(r, "rdown", port),
          "query on a cached connection after Redis stopped: want class 08 "
          "naming the server, got rc=%s sqlstate=%s: %s"
          % (r.rc, r.sqlstate, r.err.strip()))
    check(r.elapsed < 3, "query after Redis stopped took %.1f s" % r.elapsed)
    check(s.value("SELECT 1;") == "1", "backend unusable after the failure")
    pgtest.start_redis(port=port)
    pgtest.redis_cli(port, "set", "kv:a", "again")
    r = s.run("SELECT value FROM kv WHERE key = 'a';")
    check(r.rc == 0 and r.out.strip() == "again",
          "statement after Redis restarted (previous one failed): want "
          "'again', got rc=%s out=%r err=%s" % (r.rc, r.out, r.err.strip()))

    # --- restarted between two statements --------------------------------
    for how in ("shutdown", "SIGKILL"):
        r = s.run("SELECT count(*) FROM kv;")
        check(r.rc == 0, "scan before restart (%s) failed: %s" % (how, r.err))
        if how == "shutdown":
            pgtest.stop_redis(port)
        else:
            pgtest.kill_redis(port, signal.SIGKILL)
        pgtest.start_redis(port=port)
        pgtest.redis_cli(port, "set", "kv:a", how)
        r = s.run("SELECT value FROM kv WHERE key = 'a';", timeout=15)
        check(r.rc == 0 and r.out.strip() == how,
              "first statement after a Redis restart (%s): want %r, got "
              "rc=%s out=%r sqlstate=%s: %s" % (how, how, r.rc, r.out,
                                                r.sqlstate, r.err.strip()))

    # --- nothing leaked ---------------------------------------------------
    check(s.value("SELECT pg_backend_pid();") == str(pid),
          "the session's backend changed")
    n = s.value("SELECT count(*) FROM pgpoly.connections() "
                "WHERE server = 'rdown';")
    check(n == "1", "want exactly 1 cached connection to rdown, got %s" % n)
    clients = pgtest.wait_for(
        lambda: (lambda c: c is not None and len(c) <= 1)(
            pgtest.redis_clients(port)), timeout=5)
    check(clients, "Redis has more than one client from the session: %s"
          % pgtest.redis_clients(port))
    s.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
