#!/usr/bin/env python3
"""ALTER TABLE of a synced table while the sync worker delivers.

ALTER TABLE of a sync's source or target updates the sync's row in
pgpoly.syncs (the column names it recorded, SyncNoteColumnsChanged) while
it holds the table's lock, and a batch of the worker holds that row.  It
updated the row for every ALTER TABLE, one that changes no column
(`ALTER FOREIGN TABLE ... OPTIONS`) included, so such a statement waited
for a batch in flight, and any lock order against the batch's could
deadlock (`outbox_keys` once failed with "deadlock detected" at
`ALTER FOREIGN TABLE sw OPTIONS (SET write_mode ...)`).  Only rows whose
recorded names change are now updated.

Checked: an ALTER ... OPTIONS leaves the sync's row unlocked (FOR NO KEY
UPDATE NOWAIT from another session succeeds while it is open); and a change
queued while a transaction holds a lock on the target (the worker's batch
waits for it, before it locks the sync's row), which then adds a column to
the target, is delivered once that transaction commits, with no deadlock
logged and the transaction successful.
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
    """Whether a backend of db waits for a lock on table."""
    return pgtest.psql(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
        "WHERE NOT l.granted AND l.relation = '%s'::regclass "
        "AND a.backend_type = 'pgpoly sync worker'" % table, db=db).out.strip() not in ("", "0")


def test():
    port = int(os.environ["REDIS_PORT"])
    prefix = "ddllock%d:" % os.getpid()
    sync = "ddl_lock_%d" % os.getpid()
    mark = pgtest.pg_log_mark()
    db = pgtest.create_db("pgpoly_sync_ddl_lock")
    r = pgtest.psql(sync_helper.setup_sql(port, prefix, sync=sync) +
                    "CREATE FUNCTION same_row() RETURNS trigger LANGUAGE plpgsql "
                    "AS $$ BEGIN RETURN NEW; END $$;", db=db)
    check(r.rc == 0, "set-up failed: %s" % r.err)
    r = pgtest.psql("INSERT INTO kv VALUES (1, 'a', 1); "
                    "SELECT pgpoly.sync_wait('%s', '30 s'), kv_diff();" % sync, db=db)
    check(last(r) == "t|0", "the first change was not delivered: %s %s"
          % (r.out, r.err))

    a = pgtest.Session(db=db)
    pids = [a.value("SELECT pg_backend_pid();"),
            pgtest.psql("SELECT pid FROM pg_stat_activity WHERE backend_type = "
                        "'pgpoly sync worker' AND datname = current_database()", db=db).out.strip()]
    try:
        # an ALTER that changes no column leaves the sync's row alone
        # (pgpoly loaded in the session first: its utility hook is then
        # installed before the ALTER runs, as in any session that used it)
        w = a.run("SELECT count(*) FROM kv_redis; "
                  "BEGIN; ALTER FOREIGN TABLE kv_redis OPTIONS (ADD fetch_size '50');")
        check(w.rc == 0, "ALTER ... OPTIONS failed: %s" % w.err)
        r = pgtest.psql("BEGIN; SELECT 1 FROM pgpoly.syncs WHERE name = '%s' "
                        "FOR NO KEY UPDATE NOWAIT; ROLLBACK;" % sync, db=db)
        check(r.rc == 0 and "1" in r.out.split(),
              "ALTER ... OPTIONS locked the sync's row: %s" % r.err.strip())
        w = a.run("ROLLBACK;")

        # a lock on the target held (CREATE TRIGGER's, which a foreign
        # table allows: LOCK TABLE does not), a change queued, then a
        # column added
        w = a.run("BEGIN; SET LOCAL deadlock_timeout = '60s'; "
                  "CREATE TRIGGER t BEFORE INSERT ON kv_redis FOR EACH ROW "
                  "EXECUTE FUNCTION same_row();")
        check(w.rc == 0, "CREATE TRIGGER failed: %s" % w.err)
        r = pgtest.psql("INSERT INTO kv VALUES (2, 'b', 2);", db=db)
        check(r.rc == 0, "INSERT failed: %s" % r.err)
        # the worker's batch reaches the target and waits for its lock
        # (before the fix it did so holding the sync's row; now it takes
        # its tables before the row)
        check(pgtest.wait_for(lambda: worker_waits_for(db, "kv_redis"), timeout=30,
                              what="the worker to wait for the target"),
              "the worker's batch never waited for the target's lock")
        a.send("ALTER FOREIGN TABLE kv_redis ADD COLUMN extra int; COMMIT;")
        w = a.wait(timeout=30)
        check(w.rc == 0 and "ERROR" not in w.err,
              "ALTER of the target while a change was queued failed: %s" % w.err.strip())
        r = pgtest.psql("SELECT pgpoly.sync_wait('%s', '30 s'), kv_diff();" % sync, db=db)
        check(last(r) == "t|0", "the queued change was not delivered: %s %s"
              % (r.out, r.err))
    finally:
        a.close()
        pgtest.psql("SELECT pgpoly.drop_sync('%s')" % sync, db=db)
        for k in ("1", "2"):
            pgtest.redis_cli(port, "DEL", prefix + k)
    # the log lines of this database's worker and of session a
    path = os.environ.get("PGPOLY_PGLOG")
    if path and mark is not None:
        with open(path, errors="replace") as f:
            f.seek(mark)
            dead = [l.rstrip() for l in f if "deadlock detected" in l
                    and any("[%s]" % p in l for p in pids)]
        check(not dead, "a deadlock was logged:\n  " + "\n  ".join(dead[:5]))
    pgtest.check_pg_log(mark)


pgtest.main(test)
