"""Small stdlib helpers for the fault tests in test/fault/test_*.py.

The tests run under test/fault/run.py, started by test/run-tests.sh, so the
environment already points at the harness's servers: PGHOST/PGPORT/PGUSER/
PGDATABASE (PostgreSQL), REDIS_PORT (the shared Redis), PGPOLY_WORK (the run's
work directory) and PGPOLY_PIDS (the file of processes the harness stops at
the end).  A test that breaks a store starts its own Redis with start_redis()
so the shared one stays healthy for the other tests.

A test looks like:

    import pgtest

    def test():
        port = pgtest.start_redis()
        pgtest.kill_redis(port)
        rc, out, err = pgtest.psql("SELECT 1", timeout=10)
        pgtest.check(rc != 0, "query fails when redis is gone")

    pgtest.main(test)
"""

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
import traceback

REDIS_FLAGS = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--daemonize", "yes"]

_failures = []
_redis = {}  # port -> (pid, dir) for the instances this process started


class Result(tuple):
    """(rc, stdout, stderr) of a psql run, plus .elapsed in seconds.

    rc is -1 when psql was killed because the timeout expired.
    """

    def __new__(cls, rc, out, err, elapsed):
        self = super().__new__(cls, (rc, out, err))
        self.elapsed = elapsed
        return self

    rc = property(lambda self: self[0])
    out = property(lambda self: self[1])
    err = property(lambda self: self[2])


def psql(sql, db=None, timeout=60, env=None):
    """Run SQL (any number of statements) through psql -X -v ON_ERROR_STOP=1 -At.

    The SQL is fed on stdin, so statements run one by one and psql stops at
    the first error.  Returns Result(rc, stdout, stderr) with stdout/stderr
    as str; rc is -1 if the timeout expired (psql is then killed).
    """
    cmd = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", "-f", "-"]
    if db:
        cmd += ["-d", db]
    penv = dict(os.environ)
    if env:
        penv.update(env)
    start = time.monotonic()
    try:
        p = subprocess.run(cmd, input=sql, capture_output=True, text=True,
                           timeout=timeout, env=penv)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        out = _text(e.stdout)
        err = _text(e.stderr) + "\npsql timed out after %s s\n" % timeout
        rc = -1
    return Result(rc, out, err, time.monotonic() - start)


def _text(b):
    """Decode captured output that may be None or bytes."""
    if b is None:
        return ""
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else b


def work_dir():
    """The harness's per-run work directory."""
    w = os.environ.get("PGPOLY_WORK")
    if not w or not os.path.isdir(w):
        sys.exit("pgtest: PGPOLY_WORK is not set; run the fault tests via "
                 "`make test` (test/run-tests.sh)")
    return w


def free_port():
    """A TCP port on 127.0.0.1 that is free right now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _proc_start(pid):
    """Start time of a process in clock ticks (field 22 of /proc/PID/stat)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def register_pid(pid, label="process"):
    """Record a process for the harness to stop at the end of the run."""
    start = _proc_start(pid)
    if start is None:
        return
    with open(os.environ.get("PGPOLY_PIDS") or
              os.path.join(work_dir(), "pids"), "a") as f:
        f.write("%d %s %s\n" % (pid, start, label))


def redis_cli(port, *args, timeout=10):
    """Run redis-cli against a port; return (rc, stdout, stderr)."""
    try:
        p = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port)]
                           + [str(a) for a in args],
                           capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout.strip(), p.stderr.strip()
    except subprocess.TimeoutExpired:
        return -1, "", "redis-cli timed out"


def start_redis(port=None, name=None):
    """Start an extra Redis on 127.0.0.1 and return its port.

    Pass port= to restart an instance on the port it had (e.g. after
    kill_redis).  Files go to $PGPOLY_WORK/redis-NAME.
    """
    name = name or "fault-%d-%d" % (os.getpid(), len(_redis) + 1)
    d = os.path.join(work_dir(), "redis-" + name)
    os.makedirs(d, exist_ok=True)
    pidfile = os.path.join(d, "redis.pid")
    for _ in range(1 if port else 3):
        p = port or free_port()
        if os.path.exists(pidfile):
            os.unlink(pidfile)
        subprocess.run(["redis-server", "--port", str(p)] + REDIS_FLAGS +
                       ["--pidfile", pidfile, "--dir", d,
                        "--logfile", os.path.join(d, "redis.log")],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if (redis_cli(p, "ping", timeout=2)[1] == "PONG"
                    and os.path.exists(pidfile)):
                with open(pidfile) as f:
                    pid = int(f.read().strip())
                register_pid(pid, "redis-" + name)
                _redis[p] = (pid, d)
                return p
            time.sleep(0.1)
        if os.path.exists(pidfile):
            _kill_pidfile(pidfile)
    raise RuntimeError("could not start redis-server %s (see %s)"
                       % (name, os.path.join(d, "redis.log")))


def _kill_pidfile(pidfile):
    """SIGKILL the process named in a pidfile, ignoring errors."""
    try:
        with open(pidfile) as f:
            os.kill(int(f.read().strip()), signal.SIGKILL)
    except (OSError, ValueError):
        pass


def _wait_gone(pid, timeout=10):
    """Wait until a process has exited; return True if it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _proc_start(pid) is None or _is_zombie(pid):
            return True
        time.sleep(0.05)
    return False


def _is_zombie(pid):
    """True if the process has exited but not been reaped."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def stop_redis(port):
    """Shut down a Redis started by start_redis() cleanly and wait for it."""
    pid, _ = _redis[port]
    redis_cli(port, "shutdown", "nosave")
    if not _wait_gone(pid):
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid)
    del _redis[port]


def kill_redis(port, sig=signal.SIGKILL):
    """Send a signal to a Redis started by start_redis().

    SIGKILL (the default) waits until it is gone; SIGSTOP/SIGCONT pause and
    resume it.
    """
    pid, _ = _redis[port]
    os.kill(pid, sig)
    if sig == signal.SIGKILL:
        _wait_gone(pid)
        del _redis[port]


@atexit.register
def _stop_all_redis():
    """Kill the instances this test left running (the harness would too)."""
    for pid, _ in list(_redis.values()):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    _redis.clear()


def check(cond, message):
    """Record a failed check (and print it); return cond."""
    if not cond:
        _failures.append(message)
        print("FAIL: %s" % message, flush=True)
    return cond


def failures():
    """Messages of the checks that failed so far."""
    return list(_failures)


def main(func=None):
    """Run func() (if given) and exit: 1 if it raised or any check failed."""
    if func is not None:
        try:
            func()
        except Exception:  # noqa: BLE001 -- report any error as a failure
            traceback.print_exc()
            _failures.append("exception: %s" % sys.exc_info()[1])
    if _failures:
        print("%d check(s) failed" % len(_failures), flush=True)
        sys.exit(1)
    sys.exit(0)
