#!/usr/bin/env python3
"""Redis killed (SIGKILL) while a full scan of a foreign table is running.

A private Redis holds 50,000 hashes; the foreign table scans them with
fetch_size '100' (one SCAN round + one pipelined read per 100 keys).  A psql
session starts a slow full scan (pg_sleep per row keeps it running); once
Redis has served a few SCAN rounds, Redis is killed with SIGKILL.  Then:

  * the scan fails within a few seconds with SQLSTATE class 08, the message
    naming the server and host:port (no hang, no wrong count);
  * the backend survives (SELECT 1 in the same session, same pid);
  * with Redis started again on the same port, the next statement in the
    same session reconnects and returns the right data;
  * at most one cached connection and one Redis client remain, and the
    PostgreSQL log shows no crash.
"""

import signal
import subprocess
import time

import pgtest

check = pgtest.check
NKEYS = 50000


def fill(port, n):
    """HSET big:1..n v <i> through redis-cli --pipe; True on success."""
    cmds = []
    for i in range(1, n + 1):
        k, v = "big:%d" % i, str(i)
        cmds.append("*4\r\n$4\r\nHSET\r\n$%d\r\n%s\r\n$1\r\nv\r\n$%d\r\n%s\r\n"
                    % (len(k), k, len(v), v))
    p = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port),
                        "--pipe"], input="".join(cmds).encode(),
                       capture_output=True, timeout=30)
    return p.returncode == 0


def test():
    mark = pgtest.pg_log_mark()
    port = pgtest.start_redis()
    db = pgtest.create_db("pgpoly_redis_midscan")
    r = pgtest.psql("""
        CREATE SERVER rscan FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d', timeout_ms '2000');
        CREATE FOREIGN TABLE big (key text, v int) SERVER rscan
            OPTIONS (table_type 'hash', key_prefix 'big:', fetch_size '100');
    """ % port, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    if not check(fill(port, NKEYS), "could not fill Redis"):
        return

    s = pgtest.Session(db)
    pid = int(s.value("SELECT pg_backend_pid();"))
    r = s.run("SELECT count(*), sum(v) FROM big;", timeout=30)
    check(r.rc == 0 and r.out.strip() == "%d|%d" % (NKEYS, NKEYS * (NKEYS + 1) // 2),
          "full scan before the fault: got rc=%s out=%r err=%s"
          % (r.rc, r.out, r.err.strip()))

    # Start a scan that takes far longer than the test waits, and kill Redis
    # once it is well under way.
    scans_before = pgtest.redis_stat(port, "scan")
    s.send("SELECT count(*) FROM (SELECT key, pg_sleep(0.0005) FROM big) s;")
    started = pgtest.wait_for(
        lambda: (pgtest.redis_stat(port, "scan") or 0) >= scans_before + 5,
        timeout=10, interval=0.01)
    if not check(started, "the scan did not get going (SCAN calls %s -> %s)"
                 % (scans_before, pgtest.redis_stat(port, "scan"))):
        return
    killed_at = time.monotonic()
    pgtest.kill_redis(port, signal.SIGKILL)
    r = s.wait(timeout=15)
    waited = time.monotonic() - killed_at
    check(r.rc == 1 and (r.sqlstate or "").startswith("08")
          and '"rscan"' in r.err and ("127.0.0.1:%d" % port) in r.err,
          "scan with Redis killed mid-way: want an ERROR of class 08 naming "
          "server \"rscan\" and 127.0.0.1:%d; got rc=%s sqlstate=%s out=%r: %s"
          % (port, r.rc, r.sqlstate, r.out.strip(), r.err.strip()))
    check(waited < 5, "the scan took %.1f s to fail after Redis was killed"
          % waited)
    print("note: scan failed %.2f s after the kill: %s"
          % (waited, r.err.strip().splitlines()[0] if r.err.strip() else "-"))

    r = s.run("SELECT 1;")
    check(r.rc == 0 and r.out.strip() == "1",
          "backend unusable after the failed scan: %s" % r.err)
    check(s.value("SELECT pg_backend_pid();") == str(pid),
          "the session's backend changed (it died and psql reconnected?)")

    # Redis back on the same port (empty: no persistence): the next
    # statement reconnects.
    pgtest.start_redis(port=port)
    check(fill(port, 300), "could not refill Redis")
    r = s.run("SELECT count(*), sum(v) FROM big;", timeout=15)
    check(r.rc == 0 and r.out.strip() == "300|45150",
          "first statement after Redis restarted: want 300|45150, got rc=%s "
          "out=%r err=%s" % (r.rc, r.out, r.err.strip()))

    n = s.value("SELECT count(*) FROM pgpoly.connections() "
                "WHERE server = 'rscan';")
    check(n == "1", "want exactly 1 cached connection to rscan, got %s" % n)
    ok = pgtest.wait_for(lambda: (lambda c: c is not None and len(c) <= 1)(
        pgtest.redis_clients(port)), timeout=5)
    check(ok, "Redis has more than one client from the session: %s"
          % pgtest.redis_clients(port))
    s.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
