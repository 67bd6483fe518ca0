"""Sync worker start: a burst of sessions committing while no worker runs.

Every session that commits a change finds the worker lock free and
registers a worker; the surplus workers find the lock taken and exit.  With
more sessions than background worker slots (the harness runs
max_worker_processes = 16), the surplus took every slot for a moment
and the other sessions got "could not start the pgpoly sync worker: no free
background worker slot ... Changes stay queued until a worker runs", which
was false (a worker was starting).  A session now waits for a worker to hold
the lock, or for a slot, before it says so.  Checked: no session and no log
line gives that WARNING, every change is delivered, the surplus workers
exit (one worker is left, the lock holder) and no process crashes.
"""

# pgpoly-fault: exclusive
# (run.py runs it alone: it fills the cluster's background worker slots on
# purpose, and it checks the whole server log for the slot WARNING)

import os

import pgtest
import sync_helper

SESSIONS = 24


def test():
    mark = pgtest.pg_log_mark()
    db = pgtest.create_db("pgpoly_sync_burst")
    r = pgtest.psql(sync_helper.outbox_sql(int(os.environ["REDIS_PORT"]), "burst", "sync_burst:"),
                    db=db)
    pgtest.check(r.rc == 0, "set-up failed: %s" % r.err)
    sessions = [pgtest.Session(db=db) for _ in range(SESSIONS)]
    try:
        # A new database: no sync, so no worker of it runs.
        pgtest.check(pgtest.psql("SELECT pgpoly._sync_worker_running()", db=db).out.strip()
                     == "f", "a sync worker runs before the burst")
        for i, s in enumerate(sessions):
            w = s.run("BEGIN; INSERT INTO burst VALUES ('k%d', 'v%d');" % (i, i))
            pgtest.check(w.rc == 0, "session %d: INSERT failed: %s" % (i, w.err))
        for s in sessions:
            s.send("COMMIT;")
        results = [s.wait(timeout=60) for s in sessions]
        for i, w in enumerate(results):
            pgtest.check(w.rc == 0 and "WARNING" not in w.err,
                         "session %d: COMMIT said: %s" % (i, w.err.strip()))
        out = pgtest.psql("SELECT pgpoly.sync_wait('public.burst', '60 s'); "
                          "SELECT count(*) FROM burst_now;", db=db, timeout=90).out.split()
        pgtest.check(out == ["t", str(SESSIONS)],
                     "not every change was delivered (sync_wait, rows): %s" % out)
        pgtest.check(pgtest.wait_for(
            lambda: pgtest.psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
                                "'pgpoly sync worker' AND datname = current_database()",
                                db=db).out.strip() == "1",
            timeout=30, what="the surplus workers to exit"),
            "the surplus sync workers did not exit")
    finally:
        for s in sessions:
            s.close()
        pgtest.psql("SELECT count(pgpoly.drop_sync(name)) FROM pgpoly.syncs", db=db)
        port = int(os.environ["REDIS_PORT"])
        for i in range(SESSIONS):
            pgtest.redis_cli(port, "DEL", "sync_burst:k%d" % i)
    sync_helper.check_no_slot_warning(mark)
    pgtest.check_pg_log(mark)


pgtest.main(test)
