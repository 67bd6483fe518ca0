#!/usr/bin/env python3
"""Monthly partitions of pgpoly.predictions created on demand, under concurrency.

  * A session that creates the partition of a new month in an open transaction
    does not block other sessions logging into existing months, nor readers.
  * A second session logging into the same new month waits for the creator
    (its lock shows in pg_locks), then succeeds once the creator commits: no
    "relation already exists", no "no partition of relation found".
  * If the creator rolls back, the waiter creates the partition itself.
  * Several sessions released at the same instant, each logging batches that
    span the same new months in different orders, all succeed; every month has
    exactly one partition and every row is there.

Needs PGHOST/PGPORT/PGUSER (a role that may create databases) and psql on PATH.
"""

import os
import subprocess
import sys

import pgtest

SESSIONS = int(os.environ.get("PARTITION_CONC_SESSIONS", "4"))
BATCHES = int(os.environ.get("PARTITION_CONC_BATCHES", "10"))
LOCK_KEY = 724502


def log_sql(ts, entity="e"):
    return ("SELECT pgpoly.log_prediction('pc_model', 1, '%s', '1', ts => '%s');"
            % (entity, ts))


def waiting_on_lock(db, pid):
    r = pgtest.psql("SELECT count(*) FROM pg_locks WHERE pid = %d AND NOT granted" % pid, db=db)
    return r.rc == 0 and r.out.strip() not in ("", "0")


def partitions(db, prefix):
    r = pgtest.psql("SELECT string_agg(relname, ' ' ORDER BY relname) FROM pg_class "
                    "WHERE relname LIKE 'predictions\\_%s%%' AND relkind = 'r'" % prefix, db=db)
    return r.out.strip()


def test_creator_and_waiter(db):
    a, b, c, d = (pgtest.Session(db) for _ in range(4))
    c_pid = int(c.value("SELECT pg_backend_pid();"))
    pgtest.check(a.run("BEGIN; " + log_sql("2030-01-15", "a")).rc == 0, "creator logs into a new month")
    # another month that exists: not blocked by the creator's lock
    r = b.run(log_sql("2029-12-15", "b"), timeout=60)
    pgtest.check(r.rc == 0, "logging into an existing month while a partition is created: %s" % r.err)
    r = d.run("SELECT count(*) FROM pgpoly.predictions;", timeout=60)
    pgtest.check(r.rc == 0, "reading while a partition is created: %s" % r.err)
    # the same new month: waits for the creator
    c.send("BEGIN; " + log_sql("2030-01-20", "c"))
    pgtest.check(pgtest.wait_for(lambda: waiting_on_lock(db, c_pid), timeout=30),
                 "the second creator waits for the first")
    pgtest.check(a.run("COMMIT;").rc == 0, "creator commits")
    r = c.wait(timeout=60)
    pgtest.check(r.rc == 0, "the waiter logs once the creator committed: %s" % r.err)
    pgtest.check(c.run("COMMIT;").rc == 0, "waiter commits")
    pgtest.check(partitions(db, "2030_01") == "predictions_2030_01", "one partition for 2030-01")
    r = pgtest.psql("SELECT count(*) FROM pgpoly.predictions_2030_01", db=db)
    pgtest.check(r.out.strip() == "2", "both rows of 2030-01 logged, got %r" % r.out)

    # a creator that rolls back: the waiter creates the partition
    c_pid = int(c.value("SELECT pg_backend_pid();"))
    pgtest.check(a.run("BEGIN; " + log_sql("2030-02-15", "a")).rc == 0, "second creator")
    c.send("BEGIN; " + log_sql("2030-02-20", "c"))
    pgtest.check(pgtest.wait_for(lambda: waiting_on_lock(db, c_pid), timeout=30),
                 "the waiter waits for the creator")
    pgtest.check(a.run("ROLLBACK;").rc == 0, "creator rolls back")
    r = c.wait(timeout=60)
    pgtest.check(r.rc == 0, "the waiter creates the partition after a rollback: %s" % r.err)
    pgtest.check(c.run("COMMIT;").rc == 0, "waiter commits")
    pgtest.check(partitions(db, "2030_02") == "predictions_2030_02", "one partition for 2030-02")
    for s in (a, b, c, d):
        s.close()


def worker_script(i):
    """Wait at the barrier, then log batches spanning 2031-01..03 in an order of its own."""
    months = ["2031-01", "2031-02", "2031-03"]
    lines = ["SELECT pg_advisory_lock_shared(%d);" % LOCK_KEY,
             "SELECT pg_advisory_unlock_shared(%d);" % LOCK_KEY]
    for j in range(BATCHES):
        order = months[(i + j) % 3:] + months[:(i + j) % 3]
        rows = ", ".join('{"model": "pc_model", "version": 1, "entity": "w%d", "prediction": %d, '
                         '"ts": "%s-1%dT00:00:00Z"}' % (i, j, m, k) for k, m in enumerate(order))
        lines.append("BEGIN;")
        lines.append("SELECT pgpoly.log_predictions('[%s]');" % rows)
        lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


def test_many_creators(db):
    holder = pgtest.Session(db)
    holder.value("SELECT pg_advisory_lock(%d);" % LOCK_KEY)
    procs = [subprocess.Popen(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(SESSIONS)]
    for i, p in enumerate(procs):
        p.stdin.write(worker_script(i))
        p.stdin.close()
    pgtest.check(pgtest.wait_for(lambda: pgtest.psql(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %d AND NOT granted"
        % LOCK_KEY, db=db).out.strip() == str(SESSIONS), timeout=60), "all workers at the barrier")
    holder.value("SELECT pg_advisory_unlock(%d);" % LOCK_KEY)
    for i, p in enumerate(procs):
        try:
            p.wait(timeout=90)
        except subprocess.TimeoutExpired:
            p.kill()
        err = p.stderr.read()
        pgtest.check(p.returncode == 0, "worker %d failed: %s" % (i, err))
    holder.close()
    pgtest.check(partitions(db, "2031") ==
                 "predictions_2031_01 predictions_2031_02 predictions_2031_03",
                 "one partition per month: %s" % partitions(db, "2031"))
    r = pgtest.psql("SELECT count(*) FROM pgpoly.predictions WHERE ts >= '2031-01-01'", db=db)
    pgtest.check(r.out.strip() == str(SESSIONS * BATCHES * 3),
                 "all %d rows logged, got %r" % (SESSIONS * BATCHES * 3, r.out))


def test():
    db = pgtest.create_db("pgpoly_partitions")
    r = pgtest.psql("SELECT pgpoly.register_model_version('pc_model', 's3://pc/1');"
                    "SELECT pgpoly.create_prediction_partitions('2029-12-01', '2029-12-01');", db=db)
    if r.rc != 0:
        raise RuntimeError("setup failed: %s" % r.err)
    test_creator_and_waiter(db)
    test_many_creators(db)


pgtest.main(test)
