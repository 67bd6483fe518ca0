#!/usr/bin/env python3
"""Lock order of the sync's tables and its row in pgpoly.syncs.

ALTER TABLE (add, drop or rename a column, rename the table) of a sync's
source or target locks the table, then updates the sync's row in
pgpoly.syncs (SyncNoteColumnsChanged, SyncNoteRelationRenamed).  The sync
worker's batch and drop_sync locked that row first and the tables after, so
either could wait for the ALTER while the ALTER waited for them: "deadlock
detected", the batch's (retried) or the user's statement's.  A batch also
read an outbox table's definition under a lock it let go, and opened the
table for its delivery with a weaker lock than the delivery's, so that an
ALTER between the two waited for it while it waited for the ALTER.  Now every
party locks the tables first, in the mode it writes them with, then the row.

Each case makes the order it checks certain with a session holding a lock
that the batch or drop_sync must wait for (CREATE TRIGGER's on a table, or
a read of the source), then runs the ALTER and lets the blocker go:

1. A table sync's batch waits for its target (a CREATE TRIGGER open); the
   source gets a column: before, the batch then waited for the source while
   holding the sync's row, which the ALTER waited for.
2. drop_sync() waits for the source (a reader holds it); that reader adds a
   column: before, drop_sync held the sync's row, which the ALTER then
   waited for, while drop_sync waited for the ALTER's table.
3. An outbox table's batch waits for the table (a CREATE TRIGGER open) and
   the same transaction adds a column to it: before, the batch held the
   table (AccessShareLock) while waiting for its RowExclusiveLock.

Checked each time: the ALTER and the blocked party succeed, no "deadlock
detected" is logged, and the target ends in the source's (or the writes')
last state.
"""

import os

import pgtest
import sync_helper

check = pgtest.check

# pgpoly loaded in a session, so that its utility hook runs there (it then
# updates the sync's row at ALTER TABLE, as in any session that used it)
LOADED = "SELECT count(*) FROM kv_redis;"


def last(r):
    """The last line of a psql result's output."""
    lines = r.out.strip().splitlines()
    return lines[-1] if lines else ""


def waits_for(db, table, backend_type=None):
    """Whether a backend of db (of backend_type, if given) waits for a lock
    on table."""
    cond = "AND a.backend_type = '%s'" % backend_type if backend_type else ""
    return pgtest.psql(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
        "WHERE NOT l.granted AND l.relation = '%s'::regclass %s" % (table, cond),
        db=db).out.strip() not in ("", "0")


def blocked(db, pid):
    """Whether backend pid (of database db) waits for a lock."""
    return pgtest.psql("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s" % pid,
                       db=db).out.strip() == "Lock"


def worker_waits_for(db, table):
    """Whether the sync worker of db waits for a lock on table."""
    return waits_for(db, table, "pgpoly sync worker")


def source_column_added(db, sync, a):
    """Case 1: a column added to the source while a batch waits for the
    target."""
    w = a.run("BEGIN; CREATE TRIGGER t BEFORE INSERT ON kv_redis FOR EACH ROW "
              "EXECUTE FUNCTION same_row();")
    check(w.rc == 0, "CREATE TRIGGER failed: %s" % w.err)
    r = pgtest.psql("INSERT INTO kv VALUES (2, 'b', 2);", db=db)
    check(r.rc == 0, "INSERT failed: %s" % r.err)
    check(pgtest.wait_for(lambda: worker_waits_for(db, "kv_redis"), timeout=10),
          "the worker's batch did not reach the target")
    b = pgtest.Session(db=db)
    try:
        b.value(LOADED)
        pid = b.value("SELECT pg_backend_pid();")
        b.send("ALTER TABLE kv ADD COLUMN extra int;")
        # the ALTER waits (now for the batch's lock on the source, before
        # for the sync's row); then the batch may go on
        check(pgtest.wait_for(lambda: blocked(db, pid), timeout=10), "the ALTER did not wait")
        w = a.run("ROLLBACK;")
        r = b.wait(timeout=30)
        check(r.rc == 0, "ALTER TABLE of the source failed: %s" % r.err.strip())
    finally:
        b.close()
    r = pgtest.psql("UPDATE kv SET v = 'b2', extra = 1 WHERE k = 2; "
                    "SELECT pgpoly.sync_wait('%s', '30 s'), kv_diff();" % sync, db=db)
    check(last(r) == "t|0", "the source's last state was not delivered: %s %s"
          % (r.out, r.err))


def drop_sync_while_altered(db, sync, a):
    """Case 2: drop_sync() and an ALTER of the source."""
    w = a.run("BEGIN; SELECT count(*) FROM kv;")
    check(w.rc == 0, "reading the source failed: %s" % w.err)
    b = pgtest.Session(db=db)
    try:
        pid = b.value("SELECT pg_backend_pid();")
        b.send("SELECT pgpoly.drop_sync('%s');" % sync)
        check(pgtest.wait_for(lambda: blocked(db, pid), timeout=10),
              "drop_sync did not wait for the source")
        w = a.run("ALTER TABLE kv ADD COLUMN more int; COMMIT;", timeout=30)
        check(w.rc == 0 and "ERROR" not in w.err,
              "ALTER TABLE during drop_sync failed: %s" % w.err.strip())
        r = b.wait(timeout=30)
        check(r.rc == 0, "drop_sync during ALTER TABLE failed: %s" % r.err.strip())
    finally:
        b.close()
    r = pgtest.psql("SELECT count(*) FROM pgpoly.syncs WHERE name = '%s'" % sync, db=db)
    check(r.out.strip() == "0", "the sync was not dropped: %s %s" % (r.out, r.err))


def outbox_column_added(db, sync, a, port, ob_prefix):
    """Case 3: a column added to an outbox table in the transaction whose
    lock its batch waits for."""
    r = pgtest.psql("INSERT INTO ob VALUES ('1', 'one');"
                    "SELECT pgpoly.sync_wait(NULL, '30 s');", db=db)
    check(last(r) == "t", "the first outbox change was not delivered: %s %s" % (r.out, r.err))
    # hold the worker on the table sync's target while the change is queued
    w = a.run("BEGIN; CREATE TRIGGER t BEFORE INSERT ON kv_redis FOR EACH ROW "
              "EXECUTE FUNCTION same_row();")
    check(w.rc == 0, "CREATE TRIGGER failed: %s" % w.err)
    r = pgtest.psql("INSERT INTO kv VALUES (3, 'c', 3); INSERT INTO ob VALUES ('1', 'two');",
                    db=db)
    check(r.rc == 0, "the writes failed: %s" % r.err)
    check(pgtest.wait_for(lambda: worker_waits_for(db, "kv_redis"), timeout=10),
          "the worker's batch did not reach the table sync's target")
    b = pgtest.Session(db=db)
    try:
        w = b.run("BEGIN; SET LOCAL deadlock_timeout = '60s'; "
                  "CREATE TRIGGER t BEFORE INSERT ON ob FOR EACH ROW "
                  "EXECUTE FUNCTION same_row();")
        check(w.rc == 0, "CREATE TRIGGER on the outbox table failed: %s" % w.err)
        a.run("ROLLBACK;")
        check(pgtest.wait_for(lambda: worker_waits_for(db, "ob"), timeout=10),
              "the worker's batch did not reach the outbox table")
        w = b.run("ALTER FOREIGN TABLE ob ADD COLUMN extra int; COMMIT;", timeout=30)
        check(w.rc == 0 and "ERROR" not in w.err,
              "ALTER of the outbox table failed: %s" % w.err.strip())
    finally:
        b.close()
    r = pgtest.psql("SELECT pgpoly.sync_wait(NULL, '30 s'), kv_diff();", db=db)
    check(last(r) == "t|0", "the changes were not delivered: %s %s" % (r.out, r.err))
    check(sync_helper.hget(port, ob_prefix + "1", "v") == "two",
          "the outbox table's last write did not reach Redis")


def test():
    port = int(os.environ["REDIS_PORT"])
    prefix = "lockord%d:" % os.getpid()
    ob_prefix = "lockordob%d:" % os.getpid()
    sync = "lock_order_%d" % os.getpid()
    mark = pgtest.pg_log_mark()
    db = pgtest.create_db("pgpoly_sync_lock_order")
    r = pgtest.psql(sync_helper.setup_sql(port, prefix, sync=sync) +
                    "CREATE FUNCTION same_row() RETURNS trigger LANGUAGE plpgsql "
                    "AS $$ BEGIN RETURN NEW; END $$;"
                    "CREATE FOREIGN TABLE ob (k text OPTIONS (key 'true'), v text) "
                    "SERVER sync_redis OPTIONS (key_prefix '%s', write_mode 'outbox');"
                    % ob_prefix, db=db)
    check(r.rc == 0, "set-up failed: %s" % r.err)
    r = pgtest.psql("INSERT INTO kv VALUES (1, 'a', 1); "
                    "SELECT pgpoly.sync_wait('%s', '30 s'), kv_diff();" % sync, db=db)
    check(last(r) == "t|0", "the first change was not delivered: %s %s"
          % (r.out, r.err))

    a = pgtest.Session(db=db)
    try:
        a.value(LOADED)
        source_column_added(db, sync, a)
        outbox_column_added(db, sync, a, port, ob_prefix)
        drop_sync_while_altered(db, sync, a)
    finally:
        a.close()
        pgtest.psql("SELECT pgpoly.drop_sync(name) FROM pgpoly.syncs", db=db)
        for k in ("1", "2", "3"):
            pgtest.redis_cli(port, "DEL", prefix + k)
        pgtest.redis_cli(port, "DEL", ob_prefix + "1")
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
