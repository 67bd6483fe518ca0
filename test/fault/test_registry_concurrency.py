#!/usr/bin/env python3
"""Concurrent model registry writes: version numbers, experiments, alias history.

Several psql sessions, released at the same instant, each start a run in the same
new experiment, then register N versions of one model and point the alias
"champion" at each version they registered.  Afterwards:

  * every registration succeeded and the versions are exactly 1..sessions*N,
    each handed out once (no duplicates, no gaps);
  * the experiment was created once, and every session got its own run;
  * the alias history of (model, champion) is one chain of ranges, each starting
    where the previous one ends, with exactly one open range, which matches
    model_aliases and model_version_by_alias().

Needs PGHOST/PGPORT/PGUSER (a role that may create databases) and psql on PATH.
Creates and drops its own scratch database.  Exit status 0 on success.
Environment: REGISTRY_CONC_SESSIONS (default 4), REGISTRY_CONC_VERSIONS (default 50),
PGPOLY_EXTENSION (default pgpoly: the extension to create).
"""

import os
import subprocess
import sys
import time

SESSIONS = int(os.environ.get("REGISTRY_CONC_SESSIONS", "4"))
VERSIONS = int(os.environ.get("REGISTRY_CONC_VERSIONS", "50"))
EXTENSION = os.environ.get("PGPOLY_EXTENSION", "pgpoly")
DB = "pgpoly_registry_conc_%d" % os.getpid()
LOCK_KEY = 724501                       # the start barrier's advisory lock


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
    """The SQL one session runs: wait at the barrier, then register and alias."""
    lines = [
        # blocks until the controller releases its exclusive lock
        "SELECT pg_advisory_lock_shared(%d);" % LOCK_KEY,
        "SELECT pg_advisory_unlock_shared(%d);" % LOCK_KEY,
        "SELECT pgpoly.start_run('conc_experiment', 'session_%d') AS run \\gset" % i,
    ]
    for j in range(VERSIONS):
        lines.append(
            "SELECT 'version=' || pgpoly.register_model_version("
            "'conc_model', 's3://conc/%d/%d', :'run') AS v \\gset" % (i, j))
        lines.append("\\echo :v")
        lines.append(
            "SELECT pgpoly.set_model_alias('conc_model', 'champion', "
            "substr(:'v', 9)::int);")
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


def check(versions):
    total = SESSIONS * VERSIONS
    if sorted(versions) != list(range(1, total + 1)):
        dup = sorted({v for v in versions if versions.count(v) > 1})
        fail("versions are not exactly 1..%d (duplicates: %s)" % (total, dup))
    rows = query("SELECT count(*), count(DISTINCT version), max(version) "
                 "FROM pgpoly.model_versions WHERE model_name = 'conc_model'")
    if rows != ["%d|%d|%d" % (total, total, total)]:
        fail("model_versions holds %s, expected %d distinct versions" % (rows, total))
    rows = query("SELECT (SELECT count(*) FROM pgpoly.experiments "
                 "        WHERE name = 'conc_experiment'), "
                 "       (SELECT count(DISTINCT run_id) FROM pgpoly.runs)")
    if rows != ["1|%d" % SESSIONS]:
        fail("experiments|runs = %s, expected 1|%d" % (rows, SESSIONS))
    rows = query("SELECT count(*) FROM pgpoly.lineage_edges WHERE relation = 'output' "
                 "AND dst_kind = 'model_version'")
    if rows != [str(total)]:
        fail("%s run -> model_version edges, expected %d" % (rows, total))
    # alias history: one gap-free chain, one open range, matching the current alias
    rows = query("""
        SELECT count(*) FILTER (WHERE upper_inf(valid)),
               count(*) FILTER (WHERE prev_upper IS NOT NULL
                                AND prev_upper <> lower(valid)),
               count(*) FILTER (WHERE prev_upper IS NULL),
               (SELECT version FROM pgpoly.model_alias_history
                WHERE model_name = 'conc_model' AND upper_inf(valid))
                 = pgpoly.model_version_by_alias('conc_model', 'champion'),
               (SELECT version FROM pgpoly.model_aliases
                WHERE model_name = 'conc_model' AND alias = 'champion')
                 = pgpoly.model_version_by_alias('conc_model', 'champion')
        FROM (SELECT valid, lag(upper(valid)) OVER (ORDER BY lower(valid)) AS prev_upper
              FROM pgpoly.model_alias_history
              WHERE model_name = 'conc_model' AND alias = 'champion') h""")
    if rows != ["1|0|1|t|t"]:
        fail("alias history is not one chain with one open range matching the "
             "alias (open|gaps|starts|history_ok|alias_ok = %s)" % rows)
    print("ok: %d sessions x %d registrations -> versions 1..%d, "
          "alias history consistent" % (SESSIONS, VERSIONS, total))


def main():
    subprocess.run(["dropdb", "--if-exists", DB], check=True)
    subprocess.run(["createdb", DB], check=True)
    try:
        query("CREATE EXTENSION %s" % EXTENSION)
        check(run_sessions())
    finally:
        subprocess.run(["dropdb", "--if-exists", DB])


if __name__ == "__main__":
    main()
