"""Sync: no committed change is lost when the worker or PostgreSQL dies.

A private cluster with shared_preload_libraries = 'pgpoly' (the launcher),
a private Redis with an append-only file (so that its own restart loses
nothing):

1. kill -9 of the worker while a batch waits on the store (Redis paused: the
   commands were sent, so Redis applies them when it resumes, but the local
   commit never happens).  The postmaster's crash-restart kills every
   backend; the launcher starts the worker again; the batch is delivered a
   second time, with no further effect: the target equals the source row
   for row.  No write, no sync_wait is needed to resume.
2. pg_ctl restart -m immediate with changes queued while Redis is down:
   after the restart and Redis's return, they are all delivered.
3. SIGTERM (pg_terminate_backend) of an idle worker: it exits cleanly (no
   FATAL, exit status 0); the next write starts a new one on demand.
4. Without shared_preload_libraries: after a kill -9 crash-restart,
   sync_wait starts the worker on demand and everything arrives.
5. pg_ctl stop -m fast: the worker stops with the server.
"""

import os
import signal
import time

import pgtest
import sync_helper as sh

REDIS_ARGS = ["--appendonly", "yes", "--appendfsync", "always"]
REDIS_NAME = "sync-crash-%d" % os.getpid()


def sql(c, text, db="s"):
    r = c.psql(text, db=db, timeout=120)
    pgtest.check(r.rc == 0, "SQL failed: %s\n%s" % (text.strip()[:200], r.err))
    return r.out.strip()


def status(c):
    """(pending, state) of sync kv; the view never starts a worker."""
    out = sql(c, "SELECT pending, state FROM pgpoly.sync_status WHERE name = 'kv'")
    pending, state = out.split("|")
    return int(pending), state


def wait_delivered(c, what, timeout=60):
    """Poll until nothing is pending (without waking or starting a worker)."""
    ok = pgtest.wait_for(lambda: c.ready("s") and status(c)[0] == 0,
                         timeout=timeout, interval=0.1)
    pgtest.check(ok, "%s: changes still pending after %d s: %s"
                 % (what, timeout, c.ready("s") and status(c)))
    pgtest.check(sql(c, "SELECT kv_diff()") == "0",
                 "%s: source and target differ" % what)


def worker(c):
    return sh.worker_pid(lambda q: c.psql(q, timeout=10), "s")


def kill_mid_batch(c, rport, lo, hi):
    """kill -9 the worker while its batch of keys lo..hi waits on a paused Redis."""
    pgtest.kill_redis(rport, signal.SIGSTOP)
    try:
        sql(c, "INSERT INTO kv SELECT i, 'v' || i, i FROM generate_series(%d, %d) i "
               "ON CONFLICT (k) DO UPDATE SET v = excluded.v || '*'" % (lo, hi))
        sql(c, "UPDATE kv SET n = -n WHERE k %% 7 = 0 AND k BETWEEN %d AND %d" % (lo, hi))
        # A batch stuck on the paused store for a while has sent its writes.
        busy = pgtest.wait_for(
            lambda: sql(c, "SELECT count(*) FROM pg_stat_activity WHERE "
                           "backend_type = 'pgpoly sync worker' AND state = 'active' "
                           "AND now() - state_change > interval '0.3 s'",
                        db="postgres") == "1", timeout=30)
        pgtest.check(busy, "the worker never waited on the paused store")
        pid = worker(c)
        sh.kill(pid, signal.SIGKILL)
        sh.wait_gone(pid)
    finally:
        pgtest.kill_redis(rport, signal.SIGCONT)
    return pid


def test_kill9(c, rport):
    mark = c.log_mark()
    old = kill_mid_batch(c, rport, 1, 3000)
    pgtest.check(pgtest.wait_for(lambda: c.ready("s"), timeout=60),
                 "the cluster did not come back after the crash")
    log = c.log_since(mark)
    pgtest.check("terminated by signal 9" in log and "reinitializing" in log,
                 "no crash-restart in the log:\n" + log[-2000:])
    wait_delivered(c, "after kill -9")
    new = worker(c)
    pgtest.check(new not in (0, old), "the launcher did not start a new worker")


def test_immediate_restart(c, rport):
    pgtest.kill_redis(rport)
    sql(c, "UPDATE kv SET v = v || '!' WHERE k <= 100")
    sql(c, "DELETE FROM kv WHERE k BETWEEN 101 AND 200")
    sql(c, "INSERT INTO kv VALUES (5000, 'new', 1)")
    pending = status(c)[0]
    pgtest.check(pending >= 201, "changes should wait while Redis is down: %d" % pending)
    c.restart("immediate")
    pgtest.start_redis(port=rport, name=REDIS_NAME, extra_args=REDIS_ARGS)
    wait_delivered(c, "after pg_ctl restart -m immediate")


def test_sigterm(c):
    pid = worker(c)
    pgtest.check(pid != 0, "no worker before SIGTERM")
    mark = c.log_mark()
    sql(c, "SELECT pg_terminate_backend(%d)" % pid, db="postgres")
    pgtest.check(sh.wait_gone(pid), "the worker did not exit on SIGTERM")
    time.sleep(0.2)
    log = c.log_since(mark)
    pgtest.check("exited with exit code" not in log and "FATAL" not in log,
                 "the worker did not stop cleanly:\n" + log)
    sql(c, "UPDATE kv SET n = 42 WHERE k = 1")
    pgtest.check(pgtest.wait_for(lambda: worker(c) not in (0, pid), timeout=30),
                 "a write did not start a new worker")
    wait_delivered(c, "after SIGTERM")


def test_without_preload(c, rport):
    c.restart("fast", options="-c shared_preload_libraries=''")
    pgtest.check(worker(c) == 0, "a worker runs without the launcher")
    sql(c, "UPDATE kv SET n = 7")  # starts the worker on demand
    pgtest.check(pgtest.wait_for(lambda: worker(c) != 0, timeout=30),
                 "a write did not start the worker")
    kill_mid_batch(c, rport, 2001, 6000)
    pgtest.check(pgtest.wait_for(lambda: c.ready("s"), timeout=60),
                 "the cluster did not come back after the crash")
    r = c.psql("SELECT pgpoly.sync_wait('kv', '60 s')", db="s", timeout=90)
    pgtest.check(r.rc == 0 and r.out.strip() == "t",
                 "sync_wait did not bring the worker back: %s %s" % (r.out, r.err))
    pgtest.check(sql(c, "SELECT kv_diff()") == "0", "differ after sync_wait")


def test_shutdown(c):
    pid = worker(c)
    start = time.monotonic()
    r = c.stop("fast", timeout=30)
    pgtest.check(r.returncode == 0, "pg_ctl stop failed: %s" % r.stderr)
    pgtest.check(time.monotonic() - start < 20, "shutdown waited for the worker")
    pgtest.check(sh.wait_gone(pid, 5), "the worker survived the shutdown")


def test():
    rport = pgtest.start_redis(name=REDIS_NAME, extra_args=REDIS_ARGS)
    c = sh.Cluster(preload=True, name="sync-crash")
    sql(c, "CREATE DATABASE s", db="postgres")
    sql(c, "ALTER DATABASE s SET pgpoly.sync_max_retry_delay = 1000", db="postgres")
    # A server timeout longer than the test's pause keeps the batch waiting.
    sql(c, "CREATE EXTENSION pgpoly;" + sh.setup_sql(rport, "crash:", timeout_ms=60000))
    test_kill9(c, rport)
    test_immediate_restart(c, rport)
    test_sigterm(c)
    test_without_preload(c, rport)
    test_shutdown(c)


pgtest.main(test)
