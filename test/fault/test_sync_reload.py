"""Sync: the worker's settings after a reload; its CPU while it cannot deliver.

A private cluster without shared_preload_libraries, one Redis, sync kv
(sync_helper.setup_sql).

1. pgpoly.sync_max_attempts changed in postgresql.conf (ALTER SYSTEM) and
   pg_reload_conf(), the worker still running: a change Redis rejects
   (WRONGTYPE) becomes a dead letter after the new number of attempts, then
   after another one set by a second reload (README: postgresql.conf
   settings apply after a reload).
2. The target's server points at a closed port with sync_max_retry_delay at
   its minimum (100 ms): the sync is 'retrying' with a last_error, and the
   worker, failing every batch, uses a small part of one CPU (its backoff
   holds, no hot loop).  Pointed back, everything is delivered.
"""

import os
import time

import pgtest
import sync_helper as sh


def sql(c, text, db="s"):
    r = c.psql(text, db=db, timeout=120)
    pgtest.check(r.rc == 0, "SQL failed: %s\n%s" % (text.strip()[:200], r.err))
    return r.out.strip()


def cpu_ticks(pid):
    """utime + stime of pid, in clock ticks."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def reload_attempts(c, n):
    """Set sync_max_attempts to n and reload; return once a new session
    sees n (the postmaster has read the file and signalled its children,
    the worker among them, which reads it before its next batch)."""
    sql(c, "LOAD 'pgpoly'; ALTER SYSTEM SET pgpoly.sync_max_attempts = %d; "
           "SELECT pg_reload_conf()" % n, db="postgres")
    pgtest.check(pgtest.wait_for(
        lambda: sql(c, "LOAD 'pgpoly'; SHOW pgpoly.sync_max_attempts",
                    db="postgres").splitlines()[-1] == str(n), timeout=30),
        "the reload of sync_max_attempts %d never reached a new session" % n)


def poisoned_attempts(c, rport, key):
    """Make Redis reject key of kv; the attempts of its dead letter."""
    pgtest.redis_cli(rport, "SET", "rl:%d" % key, "a string")
    sql(c, "INSERT INTO kv VALUES (%d, 'x', 1)" % key)
    ok = pgtest.wait_for(lambda: sql(c, "SELECT count(*) FROM pgpoly.sync_dead_letters "
                                        "WHERE key = '%d'" % key) == "1", timeout=30)
    pgtest.check(ok, "key %d did not become a dead letter: %s"
                 % (key, sql(c, "SELECT * FROM pgpoly.sync_status")))
    return sql(c, "SELECT attempts FROM pgpoly.sync_dead_letters WHERE key = '%d'" % key)


def test():
    rport = pgtest.start_redis(name="sync-reload-%d" % os.getpid())
    c = sh.Cluster(preload=False, name="sync-reload")
    sql(c, "CREATE DATABASE s", db="postgres")
    sql(c, "CREATE EXTENSION pgpoly;" + sh.setup_sql(rport, "rl:", timeout_ms=500))
    sql(c, "INSERT INTO kv SELECT i, 'v', i FROM generate_series(1, 10) i")
    pgtest.check(sql(c, "SELECT pgpoly.sync_wait('kv', '30 s')") == "t", "initial delivery")
    pid = sh.worker_pid(lambda q: c.psql(q, timeout=10), "s")
    pgtest.check(pid != 0, "a worker runs")

    # 1. reloads reach the running worker
    # the worker had its SIGHUP when reload_attempts returns, and reads the
    # file before its next batch: the first attempt, a retry delay (250 ms)
    # before the attempt that counts
    reload_attempts(c, 2)
    pgtest.check(poisoned_attempts(c, rport, 101) == "2", "sync_max_attempts 2 after a reload")
    reload_attempts(c, 3)
    pgtest.check(poisoned_attempts(c, rport, 102) == "3", "sync_max_attempts 3 after a reload")
    pgtest.check(sh.worker_pid(lambda q: c.psql(q, timeout=10), "s") == pid,
                 "the same worker delivered")

    # 2. failing every batch: backoff, no hot loop
    sql(c, "LOAD 'pgpoly'; ALTER SYSTEM SET pgpoly.sync_max_retry_delay = 100; "
           "SELECT pg_reload_conf()", db="postgres")
    pgtest.redis_cli(rport, "DEL", "rl:101", "rl:102")
    sql(c, "ALTER SERVER sync_redis OPTIONS (SET port '1')")
    sql(c, "UPDATE kv SET n = n + 1")
    pgtest.check(pgtest.wait_for(
        lambda: sql(c, "SELECT state FROM pgpoly.sync_status") == "retrying", timeout=30),
        "not retrying: %s" % sql(c, "SELECT state, last_error FROM pgpoly.sync_status"))
    hz = os.sysconf("SC_CLK_TCK")
    t0, c0 = time.monotonic(), cpu_ticks(pid)
    time.sleep(3)
    used = (cpu_ticks(pid) - c0) / hz / (time.monotonic() - t0)
    # (valgrind, PGPOLY_TIMEOUT_SCALE > 1, makes each retry cost more)
    pgtest.check(used < min(0.9, 0.3 * pgtest.SCALE),
                 "the worker used %.0f%% of a CPU while retrying" % (used * 100))
    pgtest.check(sql(c, "SELECT last_error IS NOT NULL FROM pgpoly.sync_status") == "t",
                 "last_error says why")
    sql(c, "ALTER SERVER sync_redis OPTIONS (SET port '%d')" % rport)
    pgtest.check(sql(c, "SELECT pgpoly.sync_wait('kv', '30 s')") == "t", "delivered after")
    pgtest.check(sql(c, "SELECT kv_diff()") == "0", "kv and Redis agree")
    c.stop()


pgtest.main(test)
