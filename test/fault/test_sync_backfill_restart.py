"""Sync: restarts in the middle of a large backfill; the launcher terminated.

A private cluster with shared_preload_libraries = 'pgpoly', the harness's
Redis.  Table kv has 100000 rows when create_sync('kv') backfills it:

1. pg_ctl restart -m fast while the worker delivers the backfill, then
   pg_ctl restart -m immediate while it still does: after each restart the
   launcher starts the worker again (no write, no sync_wait needed) and in
   the end the target equals the source (kv_diff() = 0), the queue is empty
   and nothing is failing or dead-lettered.
2. pg_terminate_backend of the launcher: the postmaster starts it again (it
   is a bgworker with a restart time), and it starts the worker of a
   database whose change was queued in the meantime.
"""

import os
import time

import pgtest
import sync_helper as sh

ROWS = 100000


def test():
    rport = int(os.environ["REDIS_PORT"])
    pfx = "bfr%d:" % os.getpid()
    c = sh.Cluster(preload=True, name="sync-bfr")

    def q(text, db="bf"):
        return c.value(text, db=db)

    q("CREATE DATABASE bf", db="postgres")
    q("CREATE EXTENSION pgpoly")
    setup = sh.setup_sql(rport, pfx, timeout_ms=5000)
    # 100000 rows in kv before create_sync: its backfill queues them all
    setup = setup.replace("SELECT pgpoly.create_sync",
                          "INSERT INTO kv SELECT g, 'v' || g, g FROM generate_series(1, %d) g;\n"
                          "SELECT pgpoly.create_sync" % ROWS)
    q(setup)
    queued = lambda: int(q("SELECT count(*) FROM pgpoly.sync_queue"))
    pgtest.check(pgtest.wait_for(lambda: queued() < ROWS, timeout=60), "delivery started")
    for mode in ("fast", "immediate"):
        left = queued()
        c.restart(mode)
        pgtest.check(left > 0, "restart -m %s while the backfill is delivered" % mode)
    pgtest.check(pgtest.wait_for(lambda: queued() == 0, timeout=240),
                 "the launcher's worker delivers the rest: %d left" % queued())
    pgtest.check(q("SELECT kv_diff()") == "0", "target equals source")
    pgtest.check(q("SELECT count(*) FROM pgpoly.sync_dead_letters") == "0", "no dead letters")
    pgtest.check(q("SELECT state FROM pgpoly.sync_status WHERE name = 'kv'") != "failing",
                 "not failing")

    # 2. the launcher terminated
    launcher = lambda: c.value("SELECT pid FROM pg_stat_activity "
                               "WHERE backend_type = 'pgpoly sync launcher'")
    old = launcher()
    pgtest.check(old != "", "a launcher runs")
    wpid = sh.worker_pid(lambda s: c.psql(s, db="postgres"), "bf")
    if wpid:
        q("SELECT pg_terminate_backend(%d)" % wpid)
    q("SELECT pg_terminate_backend(%s)" % old)
    pgtest.check(pgtest.wait_for(lambda: launcher() not in ("", old), timeout=30),
                 "the launcher restarts")
    q("UPDATE kv SET v = 'after' WHERE k = 7")
    pgtest.check(pgtest.wait_for(lambda: q("SELECT v FROM kv_redis WHERE k = '7'") == "after",
                                 timeout=30), "delivered after the launcher restarted")
    pgtest.redis_cli(rport, "EVAL", "for _,k in ipairs(redis.call('KEYS', ARGV[1])) do "
                     "redis.call('DEL', k) end return 0", "0", pfx + "*")
    c.stop("fast")


pgtest.main(test)
