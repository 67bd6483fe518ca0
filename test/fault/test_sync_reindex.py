#!/usr/bin/env python3
"""REINDEX of the sync's internal tables while a batch of the worker runs.

REINDEX TABLE takes ShareLock on the table, then AccessExclusiveLock on each
index.  A batch of the sync worker read pgpoly.sync_queue (and
pgpoly.syncs) first, holding AccessShareLock on the table and the index it
read, and wrote them later (the dequeue, the sync's counters), needing
RowExclusiveLock, which the REINDEX's ShareLock blocks: the REINDEX waited
for the batch's index lock and the batch for the REINDEX ("deadlock
detected", the batch retried).  A batch now takes both tables in the mode
it writes them with before it reads them.

drop_sync() read pgpoly.syncs, then waited for the source (its DROP TRIGGER)
and deleted the sync's row: the same deadlock with REINDEX TABLE
pgpoly.syncs; it (and sync_retry) now takes both tables first too.

Each batch case holds the batch at the sync's target (a CREATE TRIGGER open
in another session) once it has read the queue, starts the REINDEX, then
lets the batch go; the drop_sync case holds drop_sync at the source (a
reader's lock) the same way.  Checked: the REINDEX succeeds, so does
drop_sync, the change is delivered, and no "deadlock detected" is logged.
"""

import os

import pgtest
import sync_helper

check = pgtest.check


def last(r):
    """The last line of a psql result's output."""
    lines = r.out.strip().splitlines()
    return lines[-1] if lines else ""


def worker_waits_for(db, table):
    """Whether the sync worker of db waits for a lock on table."""
    return pgtest.psql(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
        "WHERE NOT l.granted AND l.relation = '%s'::regclass "
        "AND a.backend_type = 'pgpoly sync worker'" % table, db=db).out.strip() not in ("", "0")


def blocked(db, pid):
    """Whether backend pid (of database db) waits for a lock."""
    return pgtest.psql("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s" % pid,
                       db=db).out.strip() == "Lock"


def reindex_during_batch(db, sync, a, table, key):
    """REINDEX TABLE table while a batch delivering key waits at the target."""
    w = a.run("BEGIN; CREATE TRIGGER t BEFORE INSERT ON kv_redis FOR EACH ROW "
              "EXECUTE FUNCTION same_row();")
    check(w.rc == 0, "CREATE TRIGGER failed: %s" % w.err)
    r = pgtest.psql("INSERT INTO kv VALUES (%d, 'v%d', %d);" % (key, key, key), db=db)
    check(r.rc == 0, "INSERT failed: %s" % r.err)
    check(pgtest.wait_for(lambda: worker_waits_for(db, "kv_redis"), timeout=10),
          "the worker's batch did not reach the target")
    b = pgtest.Session(db=db)
    try:
        pid = b.value("SELECT pg_backend_pid();")
        b.send("REINDEX TABLE %s;" % table)
        # the REINDEX waits (before, for the batch's index lock; now, for
        # its table lock) or is done; then the batch may go on
        pgtest.wait_for(lambda: blocked(db, pid), timeout=3)
        a.run("ROLLBACK;")
        r = b.wait(timeout=30)
        check(r.rc == 0, "REINDEX TABLE %s failed: %s" % (table, r.err.strip()))
    finally:
        b.close()
    r = pgtest.psql("SELECT pgpoly.sync_wait('%s', '30 s'), kv_diff();" % sync, db=db)
    check(last(r) == "t|0", "the change was not delivered: %s %s" % (r.out, r.err))


def reindex_during_drop_sync(db, sync, a):
    """REINDEX TABLE pgpoly.syncs while drop_sync() waits for the source
    (a reader holds it), having read pgpoly.syncs."""
    w = a.run("BEGIN; SELECT count(*) FROM kv;")
    check(w.rc == 0, "reading the source failed: %s" % w.err)
    b = pgtest.Session(db=db)
    c = pgtest.Session(db=db)
    try:
        pid = b.value("SELECT pg_backend_pid();")
        b.send("SELECT pgpoly.drop_sync('%s');" % sync)
        check(pgtest.wait_for(lambda: blocked(db, pid), timeout=10),
              "drop_sync did not wait for the source")
        pid = c.value("SELECT pg_backend_pid();")
        c.send("REINDEX TABLE pgpoly.syncs;")
        pgtest.wait_for(lambda: blocked(db, pid), timeout=3)
        a.run("COMMIT;")
        r = b.wait(timeout=30)
        check(r.rc == 0, "drop_sync during REINDEX failed: %s" % r.err.strip())
        r = c.wait(timeout=30)
        check(r.rc == 0, "REINDEX TABLE pgpoly.syncs during drop_sync failed: %s"
              % r.err.strip())
    finally:
        b.close()
        c.close()


def test():
    port = int(os.environ["REDIS_PORT"])
    prefix = "reindex%d:" % os.getpid()
    sync = "reindex_%d" % os.getpid()
    mark = pgtest.pg_log_mark()
    db = pgtest.create_db("pgpoly_sync_reindex")
    r = pgtest.psql(sync_helper.setup_sql(port, prefix, sync=sync) +
                    "CREATE FUNCTION same_row() RETURNS trigger LANGUAGE plpgsql "
                    "AS $$ BEGIN RETURN NEW; END $$;", db=db)
    check(r.rc == 0, "set-up failed: %s" % r.err)
    r = pgtest.psql("INSERT INTO kv VALUES (1, 'a', 1); "
                    "SELECT pgpoly.sync_wait('%s', '30 s'), kv_diff();" % sync, db=db)
    check(last(r) == "t|0", "the first change was not delivered: %s %s" % (r.out, r.err))
    a = pgtest.Session(db=db)
    try:
        reindex_during_batch(db, sync, a, "pgpoly.sync_queue", 2)
        reindex_during_batch(db, sync, a, "pgpoly.syncs", 3)
        reindex_during_drop_sync(db, sync, a)
    finally:
        a.close()
        pgtest.psql("SELECT pgpoly.drop_sync(name) FROM pgpoly.syncs", db=db)
        for k in ("1", "2", "3"):
            pgtest.redis_cli(port, "DEL", prefix + k)
    path = os.environ.get("PGPOLY_PGLOG")
    if path and mark is not None:
        with open(path, errors="replace") as f:
            f.seek(mark)
            lines = f.readlines()
        dead = [i for i, l in enumerate(lines) if "deadlock detected" in l]
        check(not dead, "a deadlock was logged:\n" +
              "".join("".join(lines[i:i + 6]) for i in dead[:3]))
    pgtest.check_pg_log(mark)


pgtest.main(test)
