#!/usr/bin/env python3
"""A Redis reply larger than pgpoly.max_response_size.

A private Redis holds a 1 MB string and a 64 MB string.  One psql session:

  * with pgpoly.max_response_size '64kB', reading the 1 MB value (key lookup
    and full scan) fails with SQLSTATE 54000 and a message naming
    pgpoly.max_response_size; the backend survives (same pid);
  * reading the 64 MB value fails the same way, quickly, and the backend's
    peak memory (VmHWM) grows by far less than 64 MB: the reply is refused
    while it streams in, not buffered first;
  * after RESET pgpoly.max_response_size the 1 MB value reads back intact
    (length and md5), so the connection dropped after the error was
    replaced;
  * at most one cached connection and one Redis client remain, and the
    PostgreSQL log shows no crash.
"""

import hashlib
import subprocess

import pgtest

check = pgtest.check
MB = 1024 * 1024


def test():
    mark = pgtest.pg_log_mark()
    port = pgtest.start_redis()
    value = ("0123456789abcdef" * (MB // 16))
    # redis-cli -x reads the last argument from stdin.
    p = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "-x",
                        "set", "b:1m"], input=value.encode(),
                       capture_output=True, timeout=30)
    check(p.returncode == 0 and b"OK" in p.stdout, "SET of 1 MB failed: %r"
          % p.stderr)
    check(pgtest.redis_cli(port, "strlen", "b:1m")[1] == str(MB),
          "the 1 MB value has the wrong length in Redis")
    rc, out, err = pgtest.redis_cli(port, "setrange", "b:64m", 64 * MB - 1, "z")
    check(rc == 0, "SETRANGE of 64 MB failed: %s" % err)

    db = pgtest.create_db("pgpoly_redis_bigreply")
    r = pgtest.psql("""
        CREATE SERVER rbig FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d', timeout_ms '10000');
        CREATE FOREIGN TABLE big (key text, value text) SERVER rbig
            OPTIONS (table_type 'string', key_prefix 'b:');
    """ % port, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return

    s = pgtest.Session(db)
    pid = int(s.value("SELECT pg_backend_pid();"))
    s.value("SET pgpoly.max_response_size = '64kB';")

    for sql in ("SELECT length(value) FROM big WHERE key = '1m';",
                "SELECT key, length(value) FROM big;"):
        r = s.run(sql, timeout=20)
        check(r.rc == 1 and r.sqlstate == "54000"
              and "pgpoly.max_response_size" in r.err and '"rbig"' in r.err,
              "%s with max_response_size 64kB: want 54000 naming "
              "pgpoly.max_response_size and the server; got rc=%s sqlstate=%s "
              "out=%r: %s" % (sql, r.rc, r.sqlstate, r.out.strip(),
                              r.err.strip()))
        r = s.run("SELECT 1;")
        check(r.rc == 0 and r.out.strip() == "1",
              "backend unusable after the too-large reply: %s" % r.err)

    hwm_before = pgtest.proc_status_kb(pid, "VmHWM")
    r = s.run("SELECT length(value) FROM big WHERE key = '64m';", timeout=20)
    hwm_after = pgtest.proc_status_kb(pid, "VmHWM")
    check(r.rc == 1 and r.sqlstate == "54000",
          "64 MB value with max_response_size 64kB: want 54000, got rc=%s "
          "sqlstate=%s: %s" % (r.rc, r.sqlstate, r.err.strip()))
    check(r.elapsed < 3, "refusing the 64 MB reply took %.1f s" % r.elapsed)
    if hwm_before is not None and hwm_after is not None:
        grew = hwm_after - hwm_before
        check(grew < 16 * 1024, "the backend's peak memory grew by %d kB "
              "while refusing a 64 MB reply with a 64 kB limit" % grew)
        print("note: backend VmHWM grew by %d kB refusing the 64 MB reply"
              % grew)

    check(s.value("SELECT pg_backend_pid();") == str(pid),
          "the session's backend changed (it died and psql reconnected?)")
    s.value("RESET pgpoly.max_response_size;")
    r = s.run("SELECT length(value), md5(value) FROM big WHERE key = '1m';",
              timeout=20)
    want = "%d|%s" % (MB, hashlib.md5(value.encode()).hexdigest())
    check(r.rc == 0 and r.out.strip() == want,
          "1 MB value after RESET: want %s, got rc=%s out=%r err=%s"
          % (want, r.rc, r.out.strip(), r.err.strip()))

    n = s.value("SELECT count(*) FROM pgpoly.connections() "
                "WHERE server = 'rbig';")
    check(n == "1", "want exactly 1 cached connection to rbig, got %s" % n)
    ok = pgtest.wait_for(lambda: (lambda c: c is not None and len(c) <= 1)(
        pgtest.redis_clients(port)), timeout=5)
    check(ok, "Redis has more than one client from the session: %s"
          % pgtest.redis_clients(port))
    s.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
