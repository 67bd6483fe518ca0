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

The cluster has wal_level logical, for two more attacks:

6. Logical replication.  Database sub subscribes to table kv of database
   pub (same cluster) and syncs its kv, partitioned there (a partition
   with other column numbers), to Redis.  The rows the initial table
   synchronisation copies, and those the apply worker inserts, updates,
   moves to another key (and partition), deletes and truncates, all reach
   Redis: the target equals sub's kv row for row.  (The apply worker fires
   row triggers only, never statement triggers.)
7. A hot standby of the cluster: sync_wait there waits until the standby
   has replayed the primary's deliveries (true), and never registers a
   worker: no WARNING about worker slots, and a parallel query on the
   standby still gets its workers after more sync_wait calls than slots.
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
    sql(c, "UPDATE kv SET n = 42 WHERE k = 1")
    pgtest.check(pgtest.wait_for(lambda: worker(c) not in (0, pid), timeout=30),
                 "a write did not start a new worker")
    # the postmaster logs a worker's exit when it reaps it, before it starts
    # the next one: the log now holds whatever the old worker's exit wrote
    log = c.log_since(mark)
    pgtest.check("exited with exit code" not in log and "FATAL" not in log,
                 "the worker did not stop cleanly:\n" + log)
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


def rows(c, db):
    """kv of db as one text, to compare two databases."""
    return sql(c, "SELECT count(*) || ':' || coalesce(md5(string_agg(k || '/' || v || '/' "
                  "|| coalesce(n::text, '-'), ',' ORDER BY k)), '') FROM kv", db)


def replicated(c, what):
    """Wait until sub's kv equals pub's, then until Redis equals sub's kv."""
    ok = pgtest.wait_for(lambda: rows(c, "sub") == rows(c, "pub"), timeout=60,
                         interval=0.1)
    pgtest.check(ok, "%s: sub never caught up with pub: %s vs %s"
          % (what, rows(c, "sub"), rows(c, "pub")))
    pgtest.check(sql(c, "SELECT pgpoly.sync_wait('kv', '60 s')", "sub") == "t",
          "%s: the changes the apply worker made were not delivered" % what)
    pgtest.check(sql(c, "SELECT kv_diff()", "sub") == "0",
          "%s: Redis differs from the subscriber's table (%s rows in Redis)"
          % (what, sql(c, "SELECT count(*) FROM kv_redis", "sub")))


def test_logical(c, rport):
    sql(c, "CREATE DATABASE pub; CREATE DATABASE sub", "postgres")
    sql(c, "CREATE TABLE kv (k int PRIMARY KEY, v text NOT NULL, n int);"
           "INSERT INTO kv SELECT i, 'copied', i FROM generate_series(1, 50) i;"
           "CREATE PUBLICATION p FOR TABLE kv;"
           "SELECT pg_create_logical_replication_slot('s_sub', 'pgoutput') IS NOT NULL", "pub")
    # sub's kv is partitioned, a partition with other attnums than kv's.
    setup = sh.setup_sql(rport, "lr:").replace(
        "CREATE TABLE kv (k int PRIMARY KEY, v text NOT NULL, n int);",
        "CREATE TABLE kv (k int PRIMARY KEY, v text NOT NULL, n int) PARTITION BY RANGE (k);"
        "CREATE TABLE kv_low PARTITION OF kv FOR VALUES FROM (MINVALUE) TO (60);"
        "CREATE TABLE kv_high (n int, v text NOT NULL, k int NOT NULL);"
        "ALTER TABLE kv ATTACH PARTITION kv_high FOR VALUES FROM (60) TO (MAXVALUE);")
    pgtest.check("PARTITION BY" in setup, "the set-up SQL changed")
    sql(c, "CREATE EXTENSION pgpoly;" + setup, "sub")
    sql(c, "CREATE SUBSCRIPTION s CONNECTION 'host=127.0.0.1 port=%d dbname=pub user=postgres' "
           "PUBLICATION p WITH (create_slot = false, slot_name = 's_sub')" % c.port, "sub")
    replicated(c, "initial table synchronisation")
    sql(c, "INSERT INTO kv SELECT i, 'applied', i FROM generate_series(51, 80) i;"
           "UPDATE kv SET v = 'updated', n = -n WHERE k % 7 = 0;"
           "DELETE FROM kv WHERE k BETWEEN 10 AND 19;"
           "UPDATE kv SET k = 1000 + k WHERE k IN (1, 2, 3);"
           "BEGIN; INSERT INTO kv VALUES (500, 'in a transaction', 0);"
           "UPDATE kv SET v = 'twice' WHERE k = 500; COMMIT", "pub")
    replicated(c, "inserts, updates and deletes applied")
    sql(c, "BEGIN; TRUNCATE kv; INSERT INTO kv VALUES (7, 'after truncate', 7); COMMIT", "pub")
    replicated(c, "truncate applied")
    sql(c, "DROP SUBSCRIPTION s", "sub")


def test_standby(c, rport):
    sb = sh.Cluster(preload=False, name="sync-standby", primary=c)
    ok = pgtest.wait_for(lambda: sb.psql("SELECT count(*) FROM pgpoly.syncs", db="s",
                                         timeout=10).out.strip() == "1", timeout=60)
    pgtest.check(ok, "the standby did not replay the sync")
    # Redis down: the primary's changes wait in the queue the standby replays.
    pgtest.kill_redis(rport)
    sql(c, "UPDATE kv SET v = 'standby' WHERE k <= 20")
    ok = pgtest.wait_for(lambda: sb.psql("SELECT pending FROM pgpoly.sync_status", db="s",
                                         timeout=10).out.strip() == "20", timeout=60)
    pgtest.check(ok, "the standby did not replay the queued changes")
    # More calls, each from a new backend, than the standby has worker slots.
    r = sb.psql("SELECT pgpoly.sync_wait('kv', '0 s');\n\\c\n" * 15, db="s", timeout=60)
    pgtest.check(r.rc == 0 and
                 [l for l in r.out.splitlines() if "connected" not in l] == ["f"] * 15,
                 "sync_wait on the standby while Redis is down: %s %s" % (r.out, r.err))
    pgtest.check("worker slot" not in r.err, "sync_wait on the standby warned: %s" % r.err)
    r = sb.psql("SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;"
                "SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 2;"
                "EXPLAIN (ANALYZE, COSTS OFF) SELECT count(*) FROM pg_class a, "
                "generate_series(1, 10) g", db="s", timeout=60)
    pgtest.check("Workers Launched: 2" in r.out,
                 "sync_wait on the standby took background worker slots:\n%s%s"
                 % (r.out, r.err))
    pgtest.check("pgpoly sync worker" not in sb.log_since(0),
                 "a sync worker ran on the standby")
    # Redis back: the primary delivers, the standby sees it and returns true.
    pgtest.start_redis(port=rport, name=REDIS_NAME, extra_args=REDIS_ARGS)
    r = sb.psql("SELECT pgpoly.sync_wait('kv', '60 s')", db="s", timeout=90)
    pgtest.check(r.rc == 0 and r.out.strip() == "t",
                 "sync_wait on the standby did not see the deliveries: %s %s" % (r.out, r.err))
    pgtest.check(sql(c, "SELECT kv_diff()") == "0", "Redis differs from the primary's kv")
    sb.stop("immediate")


def test_shutdown(c):
    pid = worker(c)
    start = time.monotonic()
    r = c.stop("fast", timeout=30)
    pgtest.check(r.returncode == 0, "pg_ctl stop failed: %s" % r.stderr)
    pgtest.check(time.monotonic() - start < 20, "shutdown waited for the worker")
    pgtest.check(sh.wait_gone(pid, 5), "the worker survived the shutdown")


def test():
    rport = pgtest.start_redis(name=REDIS_NAME, extra_args=REDIS_ARGS)
    c = sh.Cluster(preload=True, name="sync-crash", conf="wal_level = logical\n")
    test_logical(c, rport)
    sql(c, "CREATE DATABASE s", db="postgres")
    sql(c, "ALTER DATABASE s SET pgpoly.sync_max_retry_delay = 1000", db="postgres")
    # A server timeout longer than the test's pause keeps the batch waiting.
    sql(c, "CREATE EXTENSION pgpoly;" + sh.setup_sql(rport, "crash:", timeout_ms=60000))
    test_kill9(c, rport)
    test_immediate_restart(c, rport)
    test_sigterm(c)
    test_standby(c, rport)
    test_without_preload(c, rport)
    test_shutdown(c)


pgtest.main(test)
