#!/usr/bin/env python3
"""Concurrent content recording of one dataset name: versions stay distinct.

Several psql sessions, released at the same instant, each record ROUNDS new
contents (distinct content hashes) of the dataset "conc_ds" through
pgpoly._dataset_record_content, the function create_training_set and
get_historical_features(dataset => ...) call, and the same content of
"conc_same".  Afterwards:

  * every call succeeded (no unique violation from two sessions choosing the
    same automatic version);
  * conc_ds has one row per content: the unversioned entry and the versions
    auto-2 .. auto-N, each content hash once;
  * conc_same has exactly one row: identical content reuses the newest version.

Then, under REPEATABLE READ, a transaction whose snapshot predates another's
new version of the name fails with SQLSTATE 40001 (serialization_failure,
retry) instead of a raw unique violation, and records nothing.

Needs PGHOST/PGPORT/PGUSER (a role that may create databases) and psql on PATH.
Creates and drops its own scratch database.  Exit status 0 on success.
Environment: DATASET_CONC_SESSIONS (default 6), DATASET_CONC_ROUNDS (default 25),
PGPOLY_EXTENSION (default pgpoly: the extension to create).
"""

import os
import subprocess
import sys
import time

SESSIONS = int(os.environ.get("DATASET_CONC_SESSIONS", "6"))
ROUNDS = int(os.environ.get("DATASET_CONC_ROUNDS", "25"))
EXTENSION = os.environ.get("PGPOLY_EXTENSION", "pgpoly")
DB = "pgpoly_dataset_conc_%d" % os.getpid()
LOCK_KEY = 724502                       # the start barrier's advisory lock


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def psql_cmd(db, *extra):
    return ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db] + list(extra)


def query(sql, db=DB):
    """Run sql in db; return its unaligned output lines (fails the test on error)."""
    res = subprocess.run(psql_cmd(db, "-c", sql), capture_output=True, text=True)
    if res.returncode != 0:
        fail("query failed: %s\n%s" % (sql, res.stderr))
    return [line for line in res.stdout.splitlines() if line != ""]


def worker_script(i):
    """The SQL one session runs: wait at the barrier, then record contents."""
    lines = [
        # blocks until the controller releases its exclusive lock
        "SELECT pg_advisory_lock_shared(%d);" % LOCK_KEY,
        "SELECT pg_advisory_unlock_shared(%d);" % LOCK_KEY,
    ]
    for j in range(ROUNDS):
        lines.append("SELECT pgpoly._dataset_record_content('conc_ds', 'h-%d-%d');" % (i, j))
        lines.append("SELECT pgpoly._dataset_record_content('conc_same', 'same');")
    return "\n".join(lines) + "\n"


def wait_for_waiters(n, timeout=60.0):
    """Poll pg_locks until n sessions wait on the barrier lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = int(query(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND objid = %d AND NOT granted AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"
            % LOCK_KEY)[0])
        if waiting >= n:
            return
        time.sleep(0.05)
    fail("sessions did not reach the start barrier within %.0fs" % timeout)


def run_sessions():
    """Start SESSIONS workers behind the barrier, release them, collect output."""
    controller = subprocess.Popen(psql_cmd(DB), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
    controller.stdin.write("SELECT pg_advisory_lock(%d); SELECT 'locked';\n" % LOCK_KEY)
    controller.stdin.flush()
    while controller.stdout.readline().strip() != "locked":
        pass
    workers = [subprocess.Popen(psql_cmd(DB), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
               for _ in range(SESSIONS)]
    for i, w in enumerate(workers):
        w.stdin.write(worker_script(i))
        w.stdin.close()
    wait_for_waiters(SESSIONS)
    controller.stdin.write("SELECT pg_advisory_unlock(%d);\n" % LOCK_KEY)
    controller.stdin.close()
    controller.wait()

    versions = []
    for i, w in enumerate(workers):
        out = w.stdout.read()
        err = w.stderr.read()
        if w.wait() != 0 or err.strip():
            fail("session %d failed (exit %s):\n%s" % (i, w.returncode, err))
        mine = [int(l[len("version="):]) for l in out.splitlines()
                if l.startswith("version=")]
        if len(mine) != VERSIONS:
            fail("session %d registered %d versions, expected %d"
                 % (i, len(mine), VERSIONS))
        if mine != sorted(mine):
            fail("session %d saw versions out of order: %s" % (i, mine))
        versions.extend(mine)
    return versions


def run_sessions():
    """Start SESSIONS workers behind the barrier, release them, wait for them."""
    controller = subprocess.Popen(psql_cmd(DB), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
    controller.stdin.write("SELECT pg_advisory_lock(%d); SELECT 'locked';\n" % LOCK_KEY)
    controller.stdin.flush()
    while controller.stdout.readline().strip() != "locked":
        pass
    workers = [subprocess.Popen(psql_cmd(DB), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
               for _ in range(SESSIONS)]
    for i, w in enumerate(workers):
        w.stdin.write(worker_script(i))
        w.stdin.close()
    wait_for_waiters(SESSIONS)
    controller.stdin.write("SELECT pg_advisory_unlock(%d);\n" % LOCK_KEY)
    controller.stdin.close()
    controller.wait()
    for i, w in enumerate(workers):
        w.stdout.read()
        err = w.stderr.read()
        if w.wait() != 0 or err.strip():
            fail("session %d failed (exit %s):\n%s" % (i, w.returncode, err))


def check():
    total = SESSIONS * ROUNDS
    rows = query("SELECT count(*), count(DISTINCT content_hash), "
                 "count(*) FILTER (WHERE version IS NULL), "
                 "count(DISTINCT version), "
                 "bool_and(version IS NULL OR version ~ '^auto-[0-9]+$'), "
                 "max(substr(version, 6)::int) "
                 "FROM pgpoly.datasets WHERE name = 'conc_ds'")
    want = "%d|%d|1|%d|t|%d" % (total, total, total - 1, total)
    if rows != [want]:
        fail("conc_ds rows|hashes|unversioned|versions|auto|max = %s, expected %s"
             % (rows, want))
    rows = query("SELECT count(*), min(content_hash) FROM pgpoly.datasets "
                 "WHERE name = 'conc_same'")
    if rows != ["1|same"]:
        fail("conc_same holds %s, expected one row with hash 'same'" % rows)
    print("ok: %d sessions x %d contents -> one version each (unversioned, "
          "auto-2..auto-%d); identical content one row" % (SESSIONS, ROUNDS, total))


def check_repeatable_read():
    """A stale REPEATABLE READ snapshot gets 40001, not a duplicate version."""
    query("SELECT pgpoly._dataset_record_content('conc_rr', 'rr-1')")
    stale = subprocess.Popen(psql_cmd(DB, "-v", "ON_ERROR_STOP=0"),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    stale.stdin.write("\\set VERBOSITY sqlstate\n"
                      "BEGIN ISOLATION LEVEL REPEATABLE READ;\n"
                      "SELECT count(*) FROM pgpoly.datasets; SELECT 'snapshot';\n")
    stale.stdin.flush()
    while stale.stdout.readline().strip() != "snapshot":
        pass
    query("SELECT pgpoly._dataset_record_content('conc_rr', 'rr-2')")
    out, err = stale.communicate(
        "SELECT pgpoly._dataset_record_content('conc_rr', 'rr-3');\nCOMMIT;\n")
    if "40001" not in err:
        fail("stale REPEATABLE READ recording: expected SQLSTATE 40001, got:\n%s%s"
             % (out, err))
    rows = query("SELECT string_agg(coalesce(version, '-') || '=' || content_hash, ' ' "
                 "ORDER BY dataset_id) FROM pgpoly.datasets WHERE name = 'conc_rr'")
    if rows != ["-=rr-1 auto-2=rr-2"]:
        fail("conc_rr holds %s after the failed stale recording" % rows)
    print("ok: a stale REPEATABLE READ snapshot gets 40001 and records nothing")


def main():
    subprocess.run(["dropdb", "--if-exists", DB], check=True)
    subprocess.run(["createdb", DB], check=True)
    try:
        query("CREATE EXTENSION %s" % EXTENSION)
        run_sessions()
        check()
        check_repeatable_read()
    finally:
        subprocess.run(["dropdb", "--if-exists", DB])


if __name__ == "__main__":
    main()
