#!/usr/bin/env python3
"""Run the fault tests: every test/fault/test_*.py, each in its own process.

Run by test/run-tests.sh after the harness has started PostgreSQL and Redis;
the tests inherit PGHOST/PGPORT/PGUSER/PGDATABASE, REDIS_PORT, PGPOLY_WORK and
PGPOLY_PIDS from it (see pgtest.py).  A test passes when it exits 0 within
the timeout.  Prints "ok"/"FAILED" per test, the output of failed tests, and
a final "N passed, N failed" line; exits 1 if any test failed.

Usage: run.py [SUBSTRING ...]   (only tests whose name contains a SUBSTRING)
"""

import os
import signal
import subprocess
import sys
import time

# Seconds per test, times PGPOLY_TIMEOUT_SCALE (make valgrind).
TIMEOUT = 120 * float(os.environ.get("PGPOLY_TIMEOUT_SCALE") or 1)
HERE = os.path.dirname(os.path.abspath(__file__))


def discover(filters):
    """Sorted test_*.py paths in this directory, narrowed by the filters."""
    names = sorted(n for n in os.listdir(HERE)
                   if n.startswith("test_") and n.endswith(".py"))
    if filters:
        names = [n for n in names if any(f in n for f in filters)]
    return [os.path.join(HERE, n) for n in names]


def kill_group(proc):
    """Kill the test and every process in its process group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


_current = None  # the running test's Popen


def on_signal(signum, frame):
    """Stop the running test's process group, then exit."""
    if _current is not None:
        kill_group(_current)
    sys.exit(128 + signum)


def run_one(path):
    """Run one test; return (passed, combined output, seconds)."""
    global _current
    start = time.monotonic()
    proc = _current = subprocess.Popen([sys.executable, path], cwd=HERE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
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
        _current = None
    return passed, out.decode("utf-8", "replace"), time.monotonic() - start


def main():
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    tests = discover(sys.argv[1:])
    passed = failed = 0
    for path in tests:
        name = os.path.splitext(os.path.basename(path))[0]
        ok, out, secs = run_one(path)
        print("fault %-40s ... %s  %.1f s" % (name, "ok" if ok else "FAILED", secs),
              flush=True)
        if ok:
            passed += 1
            # a case a passing test skipped is shown, with why
            for line in out.splitlines():
                if line.startswith("note:") and "skipped" in line:
                    print("    " + line, flush=True)
        else:
            failed += 1
            print("----- output of %s -----" % name)
            print(out.rstrip())
            print("----- end of %s -----" % name, flush=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
