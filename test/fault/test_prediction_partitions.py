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
  * A creator held between its commit becoming visible and the sending of its
    catalog invalidations (gdb breakpoint on AtEOXact_Inval): a session whose
    cached partition descriptor predates the creator logs into the new months
    (log_prediction, and a log_predictions batch spanning three months).  It
    finds the partitions by name, so it must wait for the creator (its lock on
    the new partition shows in pg_locks), then succeed: this is the
    interleaving behind the rare "no partition of relation predictions found
    for row" of the many-sessions case above.  Skipped (with a note) when gdb
    cannot attach to a backend, or under valgrind.

Needs PGHOST/PGPORT/PGUSER (a role that may create databases) and psql on PATH.
"""

import os
import shutil
import subprocess
import sys
import time

import pgtest

SESSIONS = int(os.environ.get("PARTITION_CONC_SESSIONS", "4"))
BATCHES = int(os.environ.get("PARTITION_CONC_BATCHES", "10"))
LOCK_KEY = 724502


def log_sql(day, entity="e"):
    # noon UTC of day: the month is day's whatever the session's time zone
    return ("SELECT pgpoly.log_prediction('pc_model', 1, '%s', '1', ts => '%s 12:00:00+00');"
            % (entity, day))


def waiting_on_lock(db, pid):
    r = pgtest.psql("SELECT count(*) FROM pg_locks WHERE pid = %d AND NOT granted" % pid, db=db)
    return r.rc == 0 and r.out.strip() not in ("", "0")


def finished_or_waiting(db, session, pid, timeout=60):
    """Wait until session's statement has finished (its Result) or the
    session waits for a lock (None)."""
    done = []

    def cond():
        r = session.wait(timeout=0.2)
        if r.rc != -1:
            done.append(r)
            return True
        return waiting_on_lock(db, pid)
    pgtest.wait_for(cond, timeout=timeout)
    return done[0] if done else None


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
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %d "
        "AND classid = 0 AND objsubid = 1 AND NOT granted AND database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())"
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
    r = pgtest.psql("SELECT count(*) FROM pgpoly.predictions WHERE ts >= '2031-01-01 00:00:00+00'", db=db)
    pgtest.check(r.out.strip() == str(SESSIONS * BATCHES * 3),
                 "all %d rows logged, got %r" % (SESSIONS * BATCHES * 3, r.out))


class Hold:
    """gdb attached to a backend, stopping it at the first call of function;
    release() lets it go on, after gdb has run the commands on_release (gdb
    commands, e.g. a call) in it.  gdb gives up by itself after a while, so a
    killed test does not leave the backend stopped."""

    def __init__(self, pid, function, on_release=""):
        d = pgtest.work_dir()
        self.files = {k: os.path.join(d, "hold_%d.%s" % (pid, k))
                      for k in ("gdb", "attached", "hit", "go")}
        for k in ("attached", "hit", "go"):
            if os.path.exists(self.files[k]):
                os.unlink(self.files[k])
        with open(self.files["gdb"], "w") as f:
            # SIGUSR1 passes without stopping: PostgreSQL signals every
            # backend with it (procsignal barriers, e.g. another test's DROP
            # DATABASE; sinval catch-up), and a stop there would end the
            # batch script's "continue" (gdb would detach before the hit)
            f.write("set pagination off\nset confirm off\n"
                    "handle SIGUSR1 nostop noprint pass\n"
                    "break %(function)s\n"
                    "commands 1\n"
                    "shell touch %(hit)s\n"
                    "shell i=0; while [ ! -e %(go)s ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done\n"
                    "%(on_release)s"
                    "delete\ndetach\nquit\nend\n"
                    "shell touch %(attached)s\n"
                    "continue\n" % dict(self.files, function=function,
                                        on_release=on_release and on_release + "\n"))
        self.pid = pid
        self.gdb = subprocess.Popen(["gdb", "-q", "-nx", "-batch", "-p", str(pid),
                                     "-x", self.files["gdb"]],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True,
                                    start_new_session=True)

    def attached(self):
        """Whether gdb traces the backend with its breakpoint set (False: gdb gave up)."""
        pgtest.wait_for(lambda: os.path.exists(self.files["attached"]) or
                        self.gdb.poll() is not None, timeout=60)
        return os.path.exists(self.files["attached"]) and self.gdb.poll() is None

    def held(self):
        """Wait until the backend is stopped at the breakpoint."""
        return pgtest.wait_for(lambda: os.path.exists(self.files["hit"]), timeout=60)

    def release(self):
        """Let the backend go on and wait for gdb to detach; gdb's output."""
        open(self.files["go"], "w").close()
        try:
            out, _ = self.gdb.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.gdb.kill()
            out, _ = self.gdb.communicate()
        return out


class CommitHold(Hold):
    """A backend stopped in AtEOXact_Inval: its transaction is committed and
    visible to new snapshots, its catalog invalidations are not sent and its
    locks not released."""

    def __init__(self, pid):
        super().__init__(pid, "AtEOXact_Inval")


def gdb_unusable():
    """Why a backend cannot be held with gdb here (None: it can)."""
    if os.environ.get("PGPOLY_PG_WRAPPER"):
        return "the server runs under a wrapper (valgrind)"
    if shutil.which("gdb") is None:
        return "gdb is not installed"
    return None


def test_commit_window(db):
    why = gdb_unusable()
    if why:
        print("note: commit-window case skipped: %s" % why)
        return
    for months, batch in ((["2032-01"], False), (["2033-01", "2033-02", "2033-03"], True)):
        b = pgtest.Session(db)
        b_pid = int(b.value("SELECT pg_backend_pid();"))
        # b's partition descriptor of pgpoly.predictions is built now, before the creator
        pgtest.check(b.run(log_sql("2029-12-16", "b")).rc == 0, "logging into an existing month")
        a = pgtest.Session(db)
        a_pid = int(a.value("SELECT pg_backend_pid();"))
        if batch:
            rows = ", ".join('{"model": "pc_model", "version": 1, "entity": "a", "prediction": 0, '
                             '"ts": "%s-10T00:00:00Z"}' % m for m in months)
            r = a.run("BEGIN; SELECT pgpoly.log_predictions('[%s]');" % rows)
        else:
            r = a.run("BEGIN; " + log_sql(months[0] + "-10", "a"))
        pgtest.check(r.rc == 0, "the creator logs into new months: %s" % r.err)
        hold = CommitHold(a_pid)
        if not hold.attached():
            print("note: commit-window case skipped: gdb could not attach to the backend:\n%s"
                  % hold.release())
            a.run("ROLLBACK;")
            a.close()
            b.close()
            return
        a.send("COMMIT;")
        pgtest.check(hold.held(), "the creator stops in AtEOXact_Inval")
        # the creator's partitions are committed: found by name
        r = pgtest.psql("SELECT count(*) FROM pg_class WHERE relname IN (%s)"
                        % ", ".join("'predictions_%s'" % m.replace("-", "_") for m in months), db=db)
        pgtest.check(r.out.strip() == str(len(months)), "the creator's partitions are visible: %r" % r.out)
        # the same months again, in another order: b must wait for the creator
        if batch:
            rows = ", ".join('{"model": "pc_model", "version": 1, "entity": "b", "prediction": 1, '
                             '"ts": "%s-20T00:00:00Z"}' % m for m in reversed(months))
            b.send("SELECT pgpoly.log_predictions('[%s]');" % rows)
        else:
            b.send(log_sql(months[0] + "-20", "b"))
        early = finished_or_waiting(db, b, b_pid)
        pgtest.check(early is None, "%s into a partition whose creator is still committing "
                     "finished without waiting: %s" % ("log_predictions" if batch else "log_prediction",
                                                       early and early.err.strip()))
        out = hold.release()
        r = a.wait(timeout=60)
        pgtest.check(r.rc == 0, "the creator commits: %s %s" % (r.err, out))
        if early is None:
            r = b.wait(timeout=60)
            pgtest.check(r.rc == 0, "logging once the creator has committed: %s" % r.err)
        r = pgtest.psql("SELECT count(*) FROM pgpoly.predictions WHERE entity = 'b' AND "
                        "to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM') IN (%s)"
                        % ", ".join("'%s'" % m for m in months), db=db)
        pgtest.check(r.out.strip() == str(len(months)), "b's rows of %s logged, got %r" % (months, r.out))
        a.close()
        b.close()


def test_stale_descriptor(db):
    """A logger whose cached partition descriptor of pgpoly.predictions was
    built across a creator's commit: PostgreSQL's RelationBuildPartitionDesc
    lists the partitions under one snapshot, then opens catalogs, which reads
    invalidations (the creator's among them), and installs the descriptor it
    built anyway: it lacks the creator's partition and nothing resets it.  The
    logger is held in partition_bounds_create (after the listing) while the
    creator commits, then reads the invalidations there (as a catalog open
    would) and goes on.  Logging into the creator's month must then succeed,
    and the logger must see every row of it."""
    why = gdb_unusable()
    if why:
        print("note: stale-descriptor case skipped: %s" % why)
        return
    for month, batch in (("2034-01", False), ("2034-02", True)):
        r = pgtest.Session(db)
        r_pid = int(r.value("SELECT pg_backend_pid();"))
        hold = Hold(r_pid, "partition_bounds_create",
                    on_release="call (void) AcceptInvalidationMessages()")
        if not hold.attached():
            print("note: stale-descriptor case skipped: gdb could not attach to the backend:\n%s"
                  % hold.release())
            r.close()
            return
        # r's first look at the partitions builds its descriptor: held there
        r.send("SELECT count(*) FROM pgpoly.predictions;")
        pgtest.check(hold.held(), "the logger stops while building its partition descriptor")
        res = pgtest.psql(log_sql(month + "-10", "a"), db=db)
        pgtest.check(res.rc == 0, "the creator logs into %s: %s" % (month, res.err))
        out = hold.release()
        res = r.wait(timeout=60)
        pgtest.check(res.rc == 0, "the logger's query: %s %s" % (res.err, out))
        if batch:
            res = r.run("SELECT pgpoly.log_predictions('[{\"model\": \"pc_model\", \"version\": 1, "
                        "\"entity\": \"r\", \"prediction\": 1, \"ts\": \"%s-20T00:00:00Z\"}]');" % month)
        else:
            res = r.run(log_sql(month + "-20", "r"))
        pgtest.check(res.rc == 0, "logging into %s with a descriptor built across its creator's "
                     "commit: %s" % (month, res.err.strip()))
        n = r.value("SELECT count(*) FROM pgpoly.predictions WHERE "
                    "to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM') = '%s';" % month)
        pgtest.check(n == "2", "the logger sees both rows of %s, got %r" % (month, n))
        r.close()


def test_detach_concurrently(db):
    """A logger whose batch spans a partition being detached CONCURRENTLY
    and a month without a partition, in REPEATABLE READ (which routes rows
    into a partition pending detach).  The DETACH waits for an older reader;
    meanwhile the logger starts (held by gdb where it checks its right to
    create partitions).  When the reader ends, the DETACH takes SHARE UPDATE
    EXCLUSIVE on pgpoly.predictions and then wants ACCESS EXCLUSIVE on the
    partition.  A logger that locked that partition before creating its new
    month then waits for SHARE UPDATE EXCLUSIVE (the creators' lock) while
    the DETACH waits for it: a deadlock, whose victim may be the DETACH
    (leaving the partition pending detach).  Creating before locking, the
    DETACH completes and the logger fails on the detached partition with
    42809, no deadlock."""
    why = gdb_unusable()
    if why:
        print("note: detach-concurrently case skipped: %s" % why)
        return
    r = pgtest.psql("SELECT pgpoly.create_prediction_partitions('2036-01-01 00:00:00+00', "
                    "'2036-01-01 00:00:00+00');", db=db)
    pgtest.check(r.rc == 0, "a partition to detach: %s" % r.err)
    h, d, w = (pgtest.Session(db) for _ in range(3))
    d_pid = int(d.value("SELECT pg_backend_pid();"))
    w_pid = int(w.value("SELECT pg_backend_pid();"))
    pgtest.check(h.run("BEGIN; SELECT count(*) FROM pgpoly.predictions;").rc == 0, "an older reader")
    d.send("ALTER TABLE pgpoly.predictions DETACH PARTITION pgpoly.predictions_2036_01 CONCURRENTLY;")
    pgtest.wait_for(lambda: waiting_on_lock(db, d_pid), timeout=60)
    hold = Hold(w_pid, "has_function_privilege_name")
    if not hold.attached():
        print("note: detach-concurrently case skipped: gdb could not attach to the backend:\n%s"
              % hold.release())
        h.run("COMMIT;")
        for s in (h, d, w):
            s.close()
        return
    w.send("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT pgpoly.log_predictions('["
           "{\"model\": \"pc_model\", \"version\": 1, \"entity\": \"w\", \"prediction\": 1, "
           "\"ts\": \"2036-01-20T00:00:00Z\"}, {\"model\": \"pc_model\", \"version\": 1, "
           "\"entity\": \"w\", \"prediction\": 1, \"ts\": \"2036-05-20T00:00:00Z\"}]');")
    pgtest.check(hold.held(), "the logger stops before creating the partition of 2036-05")
    pgtest.check(h.run("COMMIT;").rc == 0, "the reader ends")
    done = finished_or_waiting(db, d, d_pid)
    out = hold.release()
    res = w.wait(timeout=60)
    pgtest.check(res.rc == 0 or res.sqlstate == "42809",
                 "logging into a partition pending detach and a new month: want success or "
                 "42809, got %s: %s %s" % (res.sqlstate, res.err.strip(), out if res.rc else ""))
    w.run("ROLLBACK;")
    if done is None:
        done = d.wait(timeout=60)
    pgtest.check(done.rc == 0, "the DETACH CONCURRENTLY: %s" % done.err.strip())
    if done.rc != 0:
        d.run("ALTER TABLE pgpoly.predictions DETACH PARTITION pgpoly.predictions_2036_01 FINALIZE;")
    pgtest.psql("DROP TABLE IF EXISTS pgpoly.predictions_2036_01;", db=db)
    for s in (h, d, w):
        s.close()


def test():
    db = pgtest.create_db("pgpoly_partitions")
    r = pgtest.psql("SELECT pgpoly.register_model_version('pc_model', 's3://pc/1');"
                    "SELECT pgpoly.create_prediction_partitions('2029-12-01 00:00:00+00', '2029-12-01 00:00:00+00');", db=db)
    if r.rc != 0:
        raise RuntimeError("setup failed: %s" % r.err)
    test_creator_and_waiter(db)
    test_many_creators(db)
    test_commit_window(db)
    test_stale_descriptor(db)
    test_detach_concurrently(db)


pgtest.main(test)
