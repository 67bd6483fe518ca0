#!/usr/bin/env python3
"""Redis closed a cached connection while it was idle.

Redis' own `timeout` setting (idle clients closed after N seconds; common in
production), a restart, or CLIENT KILL end a connection that pgpoly keeps
between statements.  Like postgres_fdw, which reconnects a cached
connection found broken when a transaction starts to use it, pgpoly opens
such a connection anew at its next use, as long as the transaction holds
nothing there (no WATCH): the first statement after the close must not
fail.  Checked against a private Redis with `timeout 1`, requirepass, and
the server option db '3' (a key of the same name in db 0 tells a
reconnection that forgot SELECT or AUTH):

  * a key lookup, a scan, an immediate-mode INSERT, a transactional INSERT
    (sent at COMMIT) and a batched join, each after Redis closed the idle
    connection: all work, and read and write db 3;
  * inside one transaction: a read, Redis closes the connection, more
    reads and a write: all work;
  * a key read FOR UPDATE (WATCH), then the connection closed, then an
    UPDATE of it: the transaction fails (40001 or class 08), never writes
    without its WATCH; the key keeps its value;
  * the write stream (pgpoly.redis_stream_threshold = 1) closed by Redis
    while its MULTI waits for COMMIT (the transaction paused longer than
    Redis' timeout): COMMIT sends everything on the main connection and
    every row is written, once;
  * CLIENT KILL of the session's connection between statements: the next
    statement works;
  * Redis stopped: the next statement fails with class 08 at once (no
    endless reconnecting), and works again once Redis is back;
  * afterwards one cached connection, no crash in the PostgreSQL log.
"""

import time

import pgtest

check = pgtest.check
PW = "reconnect-pw"


def cli(port, *args):
    """redis-cli with the password: (rc, stdout, stderr)."""
    return pgtest.redis_cli(port, "--no-auth-warning", "-a", PW, *args)


def start(port=None):
    """The private Redis: idle clients closed after 1 s, a password."""
    port = pgtest.start_redis(port=port, extra_args=["--timeout", "1"])
    pgtest.redis_cli(port, "config", "set", "requirepass", PW)
    return port


def backend_clients(port):
    """Ids of the clients of port but redis-cli's own."""
    rc, out, _ = cli(port, "client", "list")
    return set(f["id"] for f in (dict(x.split("=", 1) for x in line.split()
                                      if "=" in x)
                                 for line in out.splitlines())
               if f.get("cmd") not in ("client|list", "client"))


def wait_closed(port, session_ids):
    """Wait until Redis closed every client in session_ids (its timeout)."""
    return pgtest.wait_for(lambda: not (backend_clients(port) & session_ids),
                           timeout=10, what="Redis idle timeout")


def test():
    mark = pgtest.pg_log_mark()
    port = start()
    cli(port, "-n", "3", "set", "kv:a", "three")
    cli(port, "-n", "0", "set", "kv:a", "zero")
    db = pgtest.create_db("pgpoly_redis_reconnect")
    r = pgtest.psql("""
        CREATE SERVER rre FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d', db '3',
                     connect_timeout_ms '1000', timeout_ms '3000');
        CREATE USER MAPPING FOR CURRENT_USER SERVER rre
            OPTIONS (password '%s');
        CREATE FOREIGN TABLE kv (key text, value text) SERVER rre
            OPTIONS (table_type 'string', key_prefix 'kv:');
        CREATE FOREIGN TABLE kv_now (key text, value text) SERVER rre
            OPTIONS (table_type 'string', key_prefix 'kv:',
                     write_mode 'immediate');
        CREATE TABLE ids AS SELECT k FROM (VALUES ('a'), ('b'), ('zz')) v(k);
    """ % (port, PW), db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    s = pgtest.Session(db)
    pid = s.value("SELECT pg_backend_pid();")

    def after_idle(sql, want, what):
        """Run sql once Redis closed the session's idle connection."""
        before = backend_clients(port)
        check(wait_closed(port, before), "%s: Redis did not close the idle "
              "connection(s) %s" % (what, before))
        r = s.run(sql, timeout=15)
        check(r.rc == 0 and (want is None or r.out.strip() == want),
              "%s after Redis closed the idle connection: want %r, got "
              "rc=%s sqlstate=%s out=%r err=%s"
              % (what, want, r.rc, r.sqlstate, r.out.strip(), r.err.strip()))
        return r

    check(s.value("SELECT value FROM kv WHERE key = 'a';") == "three",
          "first read did not read db 3")
    after_idle("SELECT value FROM kv WHERE key = 'a';", "three", "key lookup")
    after_idle("SELECT count(*) FROM kv;", "1", "scan")
    after_idle("INSERT INTO kv_now VALUES ('b', 'now');", None,
               "immediate INSERT")
    check(cli(port, "-n", "3", "get", "kv:b")[1] == "now",
          "the immediate INSERT did not reach db 3")
    after_idle("BEGIN; INSERT INTO kv VALUES ('c', 'xact'); COMMIT;", None,
               "transactional INSERT")
    check(cli(port, "-n", "3", "get", "kv:c")[1] == "xact",
          "the transactional INSERT did not reach db 3")
    after_idle("SELECT string_agg(i.k || '=' || kv.value, ',' ORDER BY i.k) "
               "FROM ids i JOIN kv ON kv.key = i.k;", "a=three,b=now",
               "batched join")
    check(cli(port, "-n", "0", "exists", "kv:b", "kv:c")[1] == "0",
          "a write after a reconnection went to db 0")

    # --- closed in the middle of a transaction that holds nothing there ---
    r = s.run("BEGIN; SELECT value FROM kv WHERE key = 'a';")
    check(r.rc == 0 and r.out.strip() == "three", "read in a transaction: %s"
          % r.err.strip())
    after_idle("SELECT value FROM kv WHERE key = 'c';", "xact",
               "a read later in the same transaction")
    after_idle("INSERT INTO kv VALUES ('d', 'late'); COMMIT;", None,
               "a write and COMMIT later in the same transaction")
    check(cli(port, "-n", "3", "get", "kv:d")[1] == "late",
          "the write of the transaction that reconnected is missing")

    # --- a WATCH lost with the connection: never a blind write ------------
    r = s.run("BEGIN; SELECT value FROM kv WHERE key = 'a' FOR UPDATE;")
    check(r.rc == 0 and r.out.strip() == "three", "FOR UPDATE read: %s"
          % r.err.strip())
    wait_closed(port, backend_clients(port))
    r = s.run("UPDATE kv SET value = 'blind' WHERE key = 'a';", timeout=15)
    c = s.run("COMMIT;", timeout=15)
    failed = [x for x in (r, c) if x.rc != 0]
    check(failed and (failed[0].sqlstate == "40001"
                      or (failed[0].sqlstate or "").startswith("08")),
          "an UPDATE whose WATCH was lost with the connection: want 40001 or "
          "class 08, got UPDATE rc=%s %s / COMMIT rc=%s %s: %s"
          % (r.rc, r.sqlstate, c.rc, c.sqlstate,
             (r.err + c.err).strip()))
    check(cli(port, "-n", "3", "get", "kv:a")[1] == "three",
          "the key read FOR UPDATE was written after its WATCH was lost")
    s.run("ROLLBACK;")

    # --- the write stream closed while its MULTI waits for COMMIT ---------
    r = s.run("SET pgpoly.redis_stream_threshold = 1; BEGIN; "
              "INSERT INTO kv SELECT 's' || g, 'v' || g "
              "FROM generate_series(1, 300) g;")
    check(r.rc == 0, "streamed INSERT failed: %s" % r.err.strip())
    wait_closed(port, backend_clients(port))
    r = s.run("COMMIT;", timeout=15)
    check(r.rc == 0, "COMMIT after Redis closed the stream in its MULTI: "
          "want success (everything sent on the main connection), got %s: %s"
          % (r.sqlstate, r.err.strip()))
    n = cli(port, "-n", "3", "eval",
            "return #redis.call('keys', 'kv:s*')", "0")[1]
    check(n == "300", "after the stream fell back, want 300 rows, got %s" % n)
    check(cli(port, "-n", "3", "get", "kv:s300")[1] == "v300", "row 300 wrong")
    s.run("RESET pgpoly.redis_stream_threshold;")

    # --- CLIENT KILL between statements -----------------------------------
    check(s.value("SELECT value FROM kv WHERE key = 'a';") == "three",
          "read before CLIENT KILL")
    for cid in backend_clients(port):
        cli(port, "client", "kill", "id", cid)
    r = s.run("SELECT value FROM kv WHERE key = 'a';", timeout=15)
    check(r.rc == 0 and r.out.strip() == "three",
          "read after CLIENT KILL: rc=%s %s %s" % (r.rc, r.sqlstate,
                                                    r.err.strip()))

    # --- Redis down: one quick class-08 failure, then back ----------------
    cli(port, "shutdown", "nosave")
    pgtest.stop_redis(port)
    t0 = time.monotonic()
    r = s.run("SELECT value FROM kv WHERE key = 'a';", timeout=15)
    check(r.rc == 1 and (r.sqlstate or "").startswith("08")
          and '"rre"' in r.err,
          "read with Redis stopped: want class 08 naming rre, got rc=%s "
          "%s: %s" % (r.rc, r.sqlstate, r.err.strip()))
    check(time.monotonic() - t0 < 3, "the failure with Redis stopped took "
          "%.1f s" % (time.monotonic() - t0))
    start(port)
    cli(port, "-n", "3", "set", "kv:a", "back")
    r = s.run("SELECT value FROM kv WHERE key = 'a';", timeout=15)
    check(r.rc == 0 and r.out.strip() == "back",
          "read after Redis came back: rc=%s %s" % (r.rc, r.err.strip()))

    check(s.value("SELECT pg_backend_pid();") == pid,
          "the session's backend changed")
    n = s.value("SELECT count(*) FROM pgpoly.connections() "
                "WHERE server = 'rre';")
    check(n == "1", "want 1 cached connection to rre, got %s" % n)
    s.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
