#!/usr/bin/env python3
"""Run the fault tests: every test/fault/test_*.py, each in its own process,
up to JOBS of them at a time.

Run by test/fault/run-own-servers.sh (which test/run-tests.sh starts beside
the pg_regress suite) after it has started PostgreSQL, Redis, Chroma and the
Elasticsearch stand-in; the tests inherit PGHOST/PGPORT/PGUSER/PGDATABASE,
REDIS_PORT, PGPOLY_WORK and PGPOLY_PIDS from it (see pgtest.py).  A test passes when it exits 0 within
the timeout.  Prints "ok"/"FAILED" per test as each finishes, with its
seconds, the output of a failed test (captured per test, so never
interleaved with another's) right after its line, the 15 slowest tests, and a
final "N passed, N failed" line; exits 1 if any test failed.

Usage: run.py [-j JOBS] [SUBSTRING ...]
  (only tests whose name contains a SUBSTRING)

Concurrency.  JOBS (-j, else $PGPOLY_TEST_JOBS, else 2) tests run at once;
1 runs them one after another, in name order, as before.  Tests that run
together share the harness's servers, so a test must keep to its own:
its own databases and roles (names with its pid: pgtest.create_db()), key
prefixes, index and collection names on the shared Redis, Elasticsearch
stand-in and Chroma; a private Redis (pgtest.start_redis()) or cluster
(sync_helper.Cluster) for anything it breaks, restarts, reconfigures or
counts (CONFIG SET, FLUSHALL, INFO, CLIENT LIST, a server's log lines).
A test that cannot, because what it checks or does is cluster-wide,
carries the marker line

    # pgpoly-fault: exclusive

(at the start of a line, in its first 100 lines): such tests run first,
one at a time with no other fault test beside them (the pg_regress
suite runs beside them on servers of its own); then the others run JOBS at a time,
the longest first (by DURATIONS below, the seconds a test last took on a
quiet 2-core machine; a test not listed counts as DEFAULT_DURATION), so that
the lanes end together.

Time limits: each test gets 120 seconds, times PGPOLY_TIMEOUT_SCALE
(`make valgrind` sets 20 and runs one job: its backends are CPU-bound),
times JOBS (the tests that run at once share the CPUs).
SIGINT/SIGTERM/SIGHUP kill every running test's process group.
"""

import os
import queue
import signal
import subprocess
import sys
import threading
import time

# Seconds per test, times PGPOLY_TIMEOUT_SCALE (make valgrind) and the job
# count (tests running beside each other share the machine's CPUs).
TIMEOUT_BASE = 120 * float(os.environ.get("PGPOLY_TIMEOUT_SCALE") or 1)
TIMEOUT = TIMEOUT_BASE
HERE = os.path.dirname(os.path.abspath(__file__))
EXCLUSIVE_MARKER = "# pgpoly-fault: exclusive"

# Seconds each longer test took (in `make test`, two at a time, on a 2-core
# machine; 5 s or more),
# for the longest-first order; tests not listed are assumed short.  Only
# the order depends on these: refresh them when a test grows a lot.
DEFAULT_DURATION = 2.0
DURATIONS = {
    "test_vector_scale": 67, "test_fdw_differential": 45,
    "test_dml_differential_layouts": 37, "test_pg_upgrade": 31, "test_session_soak": 30,
    "test_redis_sentinel": 27, "test_redis_watch": 24, "test_features_differential": 22,
    "test_dml_differential": 19, "test_dml_differential_lists": 19,
    "test_features_concurrent": 19, "test_redis_reconnect": 19,
    "test_executor_features": 16, "test_sync_backfill_restart": 16, "test_explain_formats": 15,
    "test_sync_outage": 15, "test_sql_surface_fuzz": 14, "test_sync_template_copy": 14,
    "test_jepsen_invariants": 13, "test_redis_cluster": 13, "test_sync_crash": 13,
    "test_sync_outbox": 12, "test_elastic_paging": 11, "test_search_runs_reference": 11,
    "test_client_protocol_stores": 10, "test_redis_stream_attack": 10,
    "test_sync_restore_same_cluster": 10, "test_outbox_differential": 9,
    "test_prediction_partitions": 9, "test_redis_paused": 9,
    "test_redis_reconnect_attack": 9, "test_sync_multidb": 9, "test_drift_reference": 8,
    "test_sync_prepared": 8, "test_sync_reload": 8, "test_sync_restore_columns": 8,
    "test_catalog_cache_reset": 7, "test_commit_cancel": 7, "test_features_standby": 7,
    "test_redis_sentinel_memory": 7, "test_redis_stream": 7,
    "test_sync_outbox_rename": 7, "test_ddl_midsession": 6, "test_elastic_dupid": 6,
    "test_lineage_differential": 6, "test_redis_cluster_keyonly": 6,
    "test_sync_owner_roles": 6, "test_xact_interrupts": 6, "test_dump_everything": 5,
    "test_encoding": 5, "test_features_commit_order": 5, "test_real_drivers": 5,
    "test_sync_logical_replication": 5,
}


def discover(filters):
    """Sorted test_*.py paths in this directory, narrowed by the filters."""
    names = sorted(n for n in os.listdir(HERE)
                   if n.startswith("test_") and n.endswith(".py"))
    if filters:
        names = [n for n in names if any(f in n for f in filters)]
    return [os.path.join(HERE, n) for n in names]


def test_name(path):
    return os.path.splitext(os.path.basename(path))[0]


def is_exclusive(path):
    """Whether the test carries the exclusive marker in its first 100 lines."""
    with open(path, errors="replace") as f:
        for i, line in enumerate(f):
            if i >= 100:
                break
            if line.rstrip() == EXCLUSIVE_MARKER:
                return True
    return False


def schedule(tests, jobs):
    """(exclusive tests, shared tests), each list in the order to start them:
    name order for one job; else exclusive in name order, shared longest
    first (ties by name)."""
    if jobs == 1:
        return [], list(tests)
    excl = [t for t in tests if is_exclusive(t)]
    shared = [t for t in tests if t not in excl]
    shared.sort(key=lambda t: (-DURATIONS.get(test_name(t), DEFAULT_DURATION),
                               test_name(t)))
    return excl, shared


def kill_group(proc):
    """Kill the test and every process in its process group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


_lock = threading.Lock()
_running = set()  # the running tests' Popen objects
_stopping = False  # a signal arrived: start nothing more


def on_signal(signum, frame):
    """Stop every running test's process group, then exit."""
    global _stopping
    with _lock:
        _stopping = True
        for proc in list(_running):
            kill_group(proc)
    sys.stdout.flush()
    os._exit(128 + signum)


def run_one(path):
    """Run one test; return (passed, combined output, seconds)."""
    start = time.monotonic()
    with _lock:
        if _stopping:
            return False, "(not run: interrupted)\n", 0.0
        proc = subprocess.Popen([sys.executable, path], cwd=HERE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        _running.add(proc)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
        passed = proc.returncode == 0
        if not passed:
            out += b"\n(exit status %d)\n" % proc.returncode
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, _ = proc.communicate()
        out += b"\n(timed out after %d s)\n" % TIMEOUT
        passed = False
    finally:
        # Leftover children (e.g. a stuck psql) die with the test.
        kill_group(proc)
        with _lock:
            _running.discard(proc)
    return passed, out.decode("utf-8", "replace"), time.monotonic() - start


class Report:
    """Prints each result as it arrives (from the main thread only) and
    counts them."""

    def __init__(self):
        self.passed = self.failed = 0
        self.total_secs = 0.0
        self.times = []  # (seconds, name) of every test run

    def add(self, name, ok, out, secs):
        self.total_secs += secs
        self.times.append((secs, name))
        print("fault %-40s ... %s  %.1f s" % (name, "ok" if ok else "FAILED", secs),
              flush=True)
        if ok:
            self.passed += 1
            # a case a passing test skipped is shown, with why
            for line in out.splitlines():
                if line.startswith("note:") and "skipped" in line:
                    print("    " + line, flush=True)
        else:
            self.failed += 1
            print("----- output of %s -----" % name)
            print(out.rstrip())
            print("----- end of %s -----" % name, flush=True)

    def print_slowest(self, n=15):
        """The n longest tests, longest first (for DURATIONS below)."""
        if len(self.times) < 2:
            return
        print("slowest fault tests:")
        for secs, name in sorted(self.times, key=lambda t: (-t[0], t[1]))[:n]:
            print("    %6.1f s  %s" % (secs, name))


def run_lanes(tests, jobs, report):
    """Run tests, at most jobs at a time, in list order; return each lane's
    busy seconds."""
    todo = queue.Queue()
    for t in tests:
        todo.put(t)
    done = queue.Queue()
    jobs = max(1, min(jobs, len(tests)))
    busy = [0.0] * jobs

    def lane(i):
        while True:
            try:
                path = todo.get_nowait()
            except queue.Empty:
                break
            ok, out, secs = run_one(path)
            busy[i] += secs
            done.put((test_name(path), ok, out, secs))
        done.put(None)

    for i in range(jobs):
        threading.Thread(target=lane, args=(i,), daemon=True).start()
    finished = 0
    while finished < jobs:
        item = done.get()
        if item is None:
            finished += 1
        else:
            report.add(*item)
    return busy


def parse_args(argv):
    """(jobs, filters) from the command line and $PGPOLY_TEST_JOBS."""
    jobs = os.environ.get("PGPOLY_TEST_JOBS") or "2"
    filters = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-j" and i + 1 < len(argv):
            jobs = argv[i + 1]
            i += 1
        elif a.startswith("-j") and len(a) > 2:
            jobs = a[2:]
        elif a in ("-h", "--help"):
            print(__doc__)
            sys.exit(0)
        else:
            filters.append(a)
        i += 1
    try:
        jobs = int(jobs)
    except ValueError:
        jobs = 0
    if jobs < 1:
        sys.exit("run.py: the job count (-j, PGPOLY_TEST_JOBS) must be a "
                 "positive integer, not %r" % jobs)
    return jobs, filters


def main():
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    global TIMEOUT
    jobs, filters = parse_args(sys.argv[1:])
    TIMEOUT = TIMEOUT_BASE * jobs
    excl, shared = schedule(discover(filters), jobs)
    report = Report()
    start = time.monotonic()
    run_lanes(excl, 1, report)
    busy = run_lanes(shared, jobs, report)
    wall = time.monotonic() - start
    if jobs > 1:
        print("fault tests: %.1f s wall, %.1f s of tests, %d job(s); exclusive %d test(s) "
              "first, then lanes busy %s s" % (
                  wall, report.total_secs, jobs, len(excl),
                  " / ".join("%.1f" % b for b in busy)))
    report.print_slowest()
    print("%d passed, %d failed" % (report.passed, report.failed))
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
