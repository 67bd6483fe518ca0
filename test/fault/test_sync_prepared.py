"""Sync: COMMIT PREPARED of a transaction that queued changes starts the worker.

A private cluster without shared_preload_libraries (max_prepared_transactions
set), a Redis, sync kv (sync_helper.setup_sql).  Nothing but the statement
under test may start the worker: the checks read the status view and the
Redis table, which never start one.

1. No worker runs (it was terminated).  A transaction changing kv is
   PREPAREd in one session and COMMIT PREPARED in another session that has
   used pgpoly: the changes arrive without any further write or sync_wait
   (the worker is started at that COMMIT, as after a plain COMMIT).
2. The limit: after a restart, a session that never loaded pgpoly runs no
   pgpoly code at all at COMMIT PREPARED, so no worker is started and the
   changes wait (pending, no worker) until the next sync_wait (or write, or
   create_sync, sync_retry), which delivers them.
3. With session_preload_libraries = 'pgpoly' for the database, a fresh
   session's COMMIT PREPARED after a restart starts the worker.
"""

import os
import time

import pgtest
import sync_helper as sh


def sql(c, text, db="s"):
    r = c.psql(text, db=db, timeout=120)
    pgtest.check(r.rc == 0, "SQL failed: %s\n%s" % (text.strip()[:200], r.err))
    return r.out.strip()


def worker(c):
    return sh.worker_pid(lambda q: c.psql(q, timeout=10), "s")


def pending(c):
    return int(sql(c, "SELECT pending FROM pgpoly.sync_status WHERE name = 'kv'"))


def stop_worker(c):
    pid = worker(c)
    if pid:
        sql(c, "SELECT pg_terminate_backend(%d)" % pid)
        pgtest.check(sh.wait_gone(pid, 30), "the worker did not exit")
    pgtest.check(worker(c) == 0, "a worker still runs")


def prepare(c, gid, lo, hi, n):
    sql(c, "BEGIN; UPDATE kv SET n = %d WHERE k BETWEEN %d AND %d; "
           "INSERT INTO kv SELECT i, 'p', %d FROM generate_series(%d, %d) i; "
           "PREPARE TRANSACTION '%s';" % (n, lo, hi, n, hi + 1000, hi + 1010, gid))


def delivered(c, what):
    ok = pgtest.wait_for(lambda: pending(c) == 0 and sql(c, "SELECT kv_diff()") == "0",
                         timeout=30, interval=0.2)
    pgtest.check(ok, "%s: not delivered (pending %d, worker %d, diff %s)"
                 % (what, pending(c), worker(c), sql(c, "SELECT kv_diff()")))


def test_commit_prepared_kicks(c):
    stop_worker(c)
    prepare(c, "p1", 1, 20, 11)
    pgtest.check(worker(c) == 0, "PREPARE TRANSACTION started a worker")
    # a session that has used pgpoly (read the Redis table) commits it
    sql(c, "SELECT count(*) FROM kv_redis; COMMIT PREPARED 'p1';")
    delivered(c, "COMMIT PREPARED in a session that loaded pgpoly")
    pgtest.check(worker(c) != 0, "no worker after COMMIT PREPARED")


def test_after_restart_unloaded(c):
    prepare(c, "p2", 21, 40, 22)
    c.restart("fast")
    pgtest.check(pgtest.wait_for(lambda: c.ready("s"), timeout=60), "no restart")
    pgtest.check(worker(c) == 0, "a worker runs after the restart")
    sql(c, "COMMIT PREPARED 'p2';")
    time.sleep(2 * pgtest.SCALE)
    pgtest.check(worker(c) == 0 and pending(c) > 0,
                 "the documented limit changed: worker %d, pending %d (update README)"
                 % (worker(c), pending(c)))
    pgtest.check(sql(c, "SELECT pgpoly.sync_wait('kv', '60 s')") == "t",
                 "sync_wait did not deliver the prepared transaction's changes")
    pgtest.check(sql(c, "SELECT kv_diff()") == "0", "differ after sync_wait")


def test_after_restart_session_preload(c):
    sql(c, "ALTER DATABASE s SET session_preload_libraries = 'pgpoly'", db="postgres")
    prepare(c, "p3", 41, 60, 33)
    c.restart("fast")
    pgtest.check(pgtest.wait_for(lambda: c.ready("s"), timeout=60), "no restart")
    pgtest.check(worker(c) == 0, "a worker runs after the restart")
    sql(c, "COMMIT PREPARED 'p3';")
    delivered(c, "COMMIT PREPARED after a restart, session_preload_libraries")
    sql(c, "ALTER DATABASE s RESET session_preload_libraries", db="postgres")


def test():
    rport = pgtest.start_redis(name="sync-prepared-%d" % os.getpid())
    c = sh.Cluster(preload=False, name="sync-prepared",
                   conf="max_prepared_transactions = 4\n")
    sql(c, "CREATE DATABASE s", db="postgres")
    sql(c, "CREATE EXTENSION pgpoly;" + sh.setup_sql(rport, "prepared:"))
    sql(c, "INSERT INTO kv SELECT i, 'v' || i, i FROM generate_series(1, 100) i")
    pgtest.check(sql(c, "SELECT pgpoly.sync_wait('kv', '60 s')") == "t", "initial delivery")
    test_commit_prepared_kicks(c)
    test_after_restart_unloaded(c)
    test_after_restart_session_preload(c)
    c.stop()


pgtest.main(test)
