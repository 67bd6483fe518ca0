"""Sync: several databases, each with its worker, and too few worker slots.

A private cluster with shared_preload_libraries = 'pgpoly' (the launcher)
and max_worker_processes = 4: the launcher, PostgreSQL's logical
replication launcher and two sync workers.  Databases d1, d2, d3 each have
sync kv (sync_helper.setup_sql) into their own Redis key prefix.

1. d1 and d2 get a worker each and deliver; d3 finds no slot: its writer is
   warned, its sync shows 'no worker' with changes pending.  Each prefix
   holds exactly its database's rows (kv_diff): no cross-talk.
2. After a restart the launcher starts the workers of d1 and d2 and waits
   for a slot for d3; once d1's sync is dropped (its worker leaves) the
   launcher starts d3's worker, which delivers.
"""

import os

import pgtest
import sync_helper as sh

DBS = ("d1", "d2", "d3")


def sql(c, text, db):
    r = c.psql(text, db=db, timeout=120)
    pgtest.check(r.rc == 0, "SQL failed: %s\n%s" % (text.strip()[:200], r.err))
    return r.out.strip(), r.err


def value(c, text, db):
    return sql(c, text, db)[0]


def workers(c):
    return value(c, "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_stat_activity "
                    "WHERE backend_type = 'pgpoly sync worker'", "postgres")


def in_step(c, db):
    return value(c, "SELECT state || ' ' || pending || ' ' || kv_diff() "
                    "FROM pgpoly.sync_status", db) == "idle 0 0"


def test():
    rport = pgtest.start_redis(name="sync-multidb-%d" % os.getpid())
    c = sh.Cluster(preload=True, name="sync-multidb", conf="max_worker_processes = 4\n")
    warned = {}
    for i, db in enumerate(DBS):
        sql(c, "CREATE DATABASE %s" % db, "postgres")
        sql(c, "CREATE EXTENSION pgpoly;" + sh.setup_sql(rport, "md%d:" % i), db)
        warned[db] = "no free background worker slot" in sql(
            c, "INSERT INTO kv SELECT i, '%s', i FROM generate_series(1, 10) i" % db, db)[1]

    # 1. two workers, d3 without one
    for db in DBS[:2]:
        pgtest.check(pgtest.wait_for(lambda: in_step(c, db), timeout=30),
                     "%s not delivered: %s" % (db, value(c, "SELECT * FROM pgpoly.sync_status", db)))
        pgtest.check(not warned[db], "%s was warned" % db)
    pgtest.check(warned["d3"], "the writer of d3 is not warned")
    pgtest.check(value(c, "SELECT state, pending > 0 FROM pgpoly.sync_status", "d3")
                 == "no worker|t", "d3: %s" % value(c, "SELECT * FROM pgpoly.sync_status", "d3"))
    pgtest.check(workers(c) == "d1,d2", "workers: %s" % workers(c))

    # 2. the launcher after a restart, and a slot that frees
    c.restart("fast")
    pgtest.check(pgtest.wait_for(lambda: workers(c) == "d1,d2", timeout=30),
                 "workers after the restart: %s" % workers(c))
    pgtest.check(value(c, "SELECT state FROM pgpoly.sync_status", "d3") == "no worker",
                 "d3 has a worker")
    sql(c, "SELECT pgpoly.drop_sync('kv')", "d1")
    pgtest.check(pgtest.wait_for(lambda: in_step(c, "d3"), timeout=30),
                 "d3 not delivered once a slot freed: %s, workers %s"
                 % (value(c, "SELECT * FROM pgpoly.sync_status", "d3"), workers(c)))
    pgtest.check(workers(c) == "d2,d3", "workers at the end: %s" % workers(c))
    c.stop()


pgtest.main(test)
