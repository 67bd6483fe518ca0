"""Small stdlib helpers for the fault tests in test/fault/test_*.py.

The tests run under test/fault/run.py, started by test/run-tests.sh (through
test/fault/run-own-servers.sh, servers apart from the pg_regress suite's), so the
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

More helpers: create_db() (a scratch database with the extension, dropped
at exit), Session (one psql process, so statements share a backend; send()/
wait() to act while a statement runs; Result.sqlstate), wait_for() (poll
with a deadline instead of sleeping), run_at_barrier() (scripts in
sessions released at the same instant), TcpServer/read_http_request() and
serve_tcp() (fake servers), redis_clients()/redis_stat() (CLIENT
LIST, INFO commandstats), backend_sockets()/proc_status_kb() (a backend's
open sockets and memory), pg_log_mark()/check_pg_log() (no crashed backend
in $PGPOLY_PGLOG since the mark).

PGPOLY_TIMEOUT_SCALE (default 1; `make valgrind` runs the backends under
valgrind with 20) stretches time: every timeout given to psql(),
Session.wait() and wait_for() is multiplied by it, and Result.elapsed is
wall time divided by it, so a test's time limits hold on a slowed backend
without editing the test.
"""

import atexit
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

REDIS_FLAGS = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--daemonize", "yes"]

_failures = []
_redis = {}  # port -> (pid, dir) for the instances this process started
_databases = []  # databases create_db() made, dropped at exit
_sessions = []  # open Session objects, closed at exit

SCALE = float(os.environ.get("PGPOLY_TIMEOUT_SCALE") or 1)

_SQLSTATE_RE = re.compile(r"(?:ERROR|FATAL|PANIC):\s+([0-9A-Z]{5}):")


class Result(tuple):
    """(rc, stdout, stderr) of a psql run, plus .elapsed in seconds
    (wall time divided by PGPOLY_TIMEOUT_SCALE).

    rc is -1 when psql was killed because the timeout expired.
    """

    def __new__(cls, rc, out, err, elapsed):
        self = super().__new__(cls, (rc, out, err))
        self.elapsed = elapsed / SCALE
        return self

    rc = property(lambda self: self[0])
    out = property(lambda self: self[1])
    err = property(lambda self: self[2])

    @property
    def sqlstate(self):
        """SQLSTATE of the first ERROR in stderr (needs VERBOSITY verbose), or None."""
        m = _SQLSTATE_RE.search(self.err)
        return m.group(1) if m else None


def psql(sql, db=None, timeout=60, env=None, verbose=False):
    """Run SQL (any number of statements) through psql -X -v ON_ERROR_STOP=1 -At.

    The SQL is fed on stdin, so statements run one by one and psql stops at
    the first error.  Returns Result(rc, stdout, stderr) with stdout/stderr
    as str; rc is -1 if the timeout expired (psql is then killed).
    verbose=True sets VERBOSITY verbose, so errors carry their SQLSTATE
    (Result.sqlstate).
    """
    cmd = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", "-f", "-"]
    if verbose:
        cmd += ["-v", "VERBOSITY=verbose"]
    if db:
        cmd += ["-d", db]
    penv = dict(os.environ)
    if env:
        penv.update(env)
    start = time.monotonic()
    timeout = timeout * SCALE
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


def on_free_port(start, attempts=3):
    """Call start(port) with a free port, and with another one while it returns
    False (the server could not bind it: free_port() only says the port was
    free, and a client's connection can take it as its local port before the
    server binds it).  start raises for any other failure.  Returns the port."""
    for _ in range(attempts):
        port = free_port()
        if start(port):
            return port
    raise RuntimeError("no free port could be bound in %d attempts" % attempts)


class TcpServer:
    """A TCP server on 127.0.0.1 for fake stores, in daemon threads.

    Each accepted connection runs handle(sock) in a thread of its own and is
    closed when handle returns (or raises OSError).  .port is the port,
    .accepted counts connections so far, .stop is an Event long-running
    handlers should watch; close() sets it and stops accepting.  With path:
    a Unix-domain socket there instead (mode 777; .port is None).  With
    sock: that TCP socket, already bound by the caller (another address or
    family), instead.
    """

    def __init__(self, handle, path=None, sock=None):
        self.handle = handle
        self.port = None
        if sock is not None:
            self.sock = sock
            self.port = sock.getsockname()[1]
        elif path:
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.bind(path)
            os.chmod(path, 0o777)
        else:
            self.sock = socket.socket()
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(("127.0.0.1", 0))
            self.port = self.sock.getsockname()[1]
        self.sock.listen(16)
        self.accepted = 0
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.port is not None:
                tcp_nodelay(c)
            self.accepted += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            self.handle(c)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stop.set()
        self.sock.close()


def read_http_request(sock, buf=b""):
    """Read one HTTP/1.1 request from sock (buf: bytes already read).

    Returns (method, path, header lines as bytes, bytes read past the
    request's body), or None if the peer closed first.
    """
    req = read_http_request_body(sock, buf)
    return None if req is None else req[:3] + req[4:]


def read_http_request_body(sock, buf=b""):
    """read_http_request, also returning the body: (method, path, header
    lines, body, bytes read past the body), or None."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    method, path = lines[0].split(b" ")[:2]
    length = 0
    for line in lines[1:]:
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        rest += chunk
    return method.decode(), path.decode(), lines[1:], rest[:length], rest[length:]


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


def start_redis(port=None, name=None, extra_args=()):
    """Start an extra Redis on 127.0.0.1 and return its port.

    Pass port= to restart an instance on the port it had (e.g. after
    kill_redis).  Files go to $PGPOLY_WORK/redis-NAME (pass the same name
    to restart with the same files, e.g. an append-only file).
    extra_args are more redis-server flags; they override the defaults
    (e.g. ["--appendonly", "yes"]).
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
                        "--logfile", os.path.join(d, "redis.log")]
                       + [str(a) for a in extra_args],
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


def start_chroma():
    """Start a private Chroma server (test/chroma's npm install, as
    test/lib_chroma.sh starts the shared one) and return its URL.  For tests
    whose requests are big enough to hold up the shared server the other
    tests use at the same time.  Stopped at exit, and by the harness."""
    exe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "chroma",
                       "node_modules", ".bin", "chroma")
    d = os.path.join(work_dir(), "chroma-%d" % os.getpid())
    os.makedirs(d, exist_ok=True)

    def start(port):
        log = open(os.path.join(d, "chroma.log"), "ab")
        proc = subprocess.Popen([exe, "run", "--path", os.path.join(d, "data"),
                                 "--host", "127.0.0.1", "--port", str(port)],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        log.close()
        register_pid(proc.pid, "chroma")
        atexit.register(_stop_process, proc)
        deadline = time.monotonic() + 30 * SCALE
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
                    c.sendall(b"GET /api/v2/heartbeat HTTP/1.0\r\n\r\n")
                    if c.recv(64).split(b" ")[1:2] == [b"200"]:
                        return True
            except OSError:
                pass
            time.sleep(0.1)
        _stop_process(proc)
        return False

    port = on_free_port(start)
    return "http://127.0.0.1:%d" % port


def _stop_process(proc):
    """Stop a process this test started (SIGTERM, then SIGKILL)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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


def tcp_nodelay(c):
    """TCP_NODELAY on an accepted socket, as Redis and Elasticsearch set it:
    without it a fake server's reply written in several sends waits for the
    client's delayed ACK (~40 ms) per round trip."""
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def serve_tcp(handler):
    """Listen on 127.0.0.1 (a free port) and run handler(sock) in a daemon
    thread for each connection accepted; the handler closes the socket.

    Returns the listening socket (its port: .getsockname()[1]); close it to
    stop accepting.  For the fake servers of the fault tests.
    """
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)

    def accept():
        while True:
            try:
                c, _ = lsock.accept()
            except OSError:
                return
            tcp_nodelay(c)
            threading.Thread(target=handler, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return lsock


def redis_pipeline(port, commands, timeout=10):
    """Send commands (lists of str/bytes/int) to the Redis at port in one
    pipeline; their replies, in order: str (simple and bulk strings, decoded
    with errors replaced), int, None (nil), list, or RedisError for an error
    reply.  One connection instead of a redis-cli process per command."""
    # the reader is closed with the socket: the recursive reply() closure is
    # a reference cycle, and a reader left to the cyclic GC kept the
    # connection open (a Redis client counted by redis_clients) until then
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock, \
            sock.makefile("rb") as reader:
        out = b""
        for cmd in commands:
            args = [a if isinstance(a, bytes) else str(a).encode() for a in cmd]
            out += b"*%d\r\n" % len(args) + b"".join(resp_bulk(a) for a in args)
        sock.sendall(out)

        def reply():
            head = reader.readline()
            if not head.endswith(b"\r\n"):
                raise EOFError("Redis closed the connection")
            kind, rest = head[:1], head[1:-2]
            if kind == b"+":
                return rest.decode(errors="replace")
            if kind == b"-":
                return RedisError(rest.decode(errors="replace"))
            if kind == b":":
                return int(rest)
            if kind == b"$":
                n = int(rest)
                return None if n < 0 else reader.read(n + 2)[:n].decode(errors="replace")
            if kind == b"*":
                n = int(rest)
                return None if n < 0 else [reply() for _ in range(n)]
            raise ValueError("not a RESP reply: %r" % head)

        return [reply() for _ in commands]


class RedisError(str):
    """An error reply of redis_pipeline."""


def resp_bulk(b):
    """RESP bulk string of bytes b (None: nil), for the fake Redis servers."""
    if b is None:
        return b"$-1\r\n"
    return b"$%d\r\n%s\r\n" % (len(b), b)


def resp_commands(sock):
    """The RESP commands (lists of bytes) sock sends, until it closes
    (EOFError then), for the fake Redis servers."""
    buf = b""

    def need(cond):
        nonlocal buf
        while not cond():
            data = sock.recv(65536)
            if not data:
                raise EOFError
            buf += data

    def line():
        nonlocal buf
        need(lambda: b"\r\n" in buf)
        head, buf = buf.split(b"\r\n", 1)
        return head

    while True:
        args = []
        for _ in range(int(line()[1:])):
            n = int(line()[1:])
            need(lambda: len(buf) >= n + 2)
            args.append(buf[:n])
            buf = buf[n + 2:]
        yield args


def wait_for(cond, timeout=10, interval=0.05, what="condition"):
    """Poll cond() until it returns a true value or timeout seconds pass.

    Returns cond()'s last value (false when the deadline expired).
    """
    deadline = time.monotonic() + timeout * SCALE
    while True:
        value = cond()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def redis_clients(port):
    """CLIENT LIST of a Redis as a list of dicts, without redis-cli's own entry.

    None if Redis did not answer.
    """
    rc, out, _ = redis_cli(port, "client", "list", timeout=5)
    if rc != 0:
        return None
    clients = []
    for line in out.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if fields.get("cmd") in ("client|list", "client"):
            continue
        clients.append(fields)
    return clients


def redis_stat(port, name):
    """calls= of one command in INFO commandstats (e.g. "scan"), or None."""
    rc, out, _ = redis_cli(port, "info", "commandstats", timeout=5)
    if rc != 0:
        return None
    for line in out.splitlines():
        if line.startswith("cmdstat_%s:" % name):
            for f in line.split(":", 1)[1].split(","):
                k, _, v = f.partition("=")
                if k == "calls":
                    return int(v)
    return 0


def create_db(prefix="pgpoly_fault", extension="pgpoly", encoding=None):
    """Create a scratch database with the extension; dropped at exit.

    encoding: the database encoding (from template0, C locale) instead of
    the default.  Returns its name.
    """
    name = "%s_%d_%d" % (prefix, os.getpid(), len(_databases) + 1)
    subprocess.run(["dropdb", "--if-exists", "--force", name],
                   capture_output=True)
    opts = []
    if encoding:
        opts = ["--template=template0", "--encoding=" + encoding, "--locale=C"]
    p = subprocess.run(["createdb"] + opts + [name], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("createdb %s failed: %s" % (name, p.stderr))
    _databases.append(name)
    r = psql("CREATE EXTENSION %s;" % extension, db=name, timeout=60)
    if r.rc != 0:
        raise RuntimeError("CREATE EXTENSION failed: %s" % r.err)
    return name


class Session:
    """One psql process kept open, so statements share one backend.

    Statements run with VERBOSITY verbose and without ON_ERROR_STOP, so an
    error does not end the session.  run() sends SQL and waits for it;
    send() + wait() let the caller act while a statement runs.  A statement
    "finishes" when psql has processed it and the markers echoed after it
    arrive on stdout and stderr.  Output that is not UTF-8 (a session in
    another client encoding) arrives with its bytes as \\xNN escapes rather
    than stopping the reader (which would leave wait() to time out).
    """

    def __init__(self, db=None, env=None):
        cmd = ["psql", "-X", "-q", "-At", "-v", "VERBOSITY=verbose"]
        if db:
            cmd += ["-d", db]
        penv = dict(os.environ)
        if env:
            penv.update(env)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True,
                                     encoding="utf-8",
                                     errors="backslashreplace", env=penv)
        self._q = queue.Queue()
        self._eof = set()
        self._n = 0
        self._pending = None
        for name, stream in (("out", self.proc.stdout),
                             ("err", self.proc.stderr)):
            threading.Thread(target=self._reader, args=(name, stream),
                             daemon=True).start()
        _sessions.append(self)

    def _reader(self, name, stream):
        for line in stream:
            self._q.put((name, line))
        self._q.put((name, None))

    def send(self, sql):
        """Send SQL (complete statements) without waiting for the result."""
        if self._pending is not None:
            raise RuntimeError("Session.send: previous statement not finished")
        self._n += 1
        marker = "__pgtest_done_%d__" % self._n
        try:
            self.proc.stdin.write("%s\n\\echo %s\n\\warn %s\n"
                                  % (sql.rstrip(), marker, marker))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        self._pending = {"marker": marker + "\n", "out": [], "err": [],
                         "seen": set(), "start": time.monotonic()}

    def wait(self, timeout=30):
        """Wait for the statement sent last; Result(rc, out, err).

        rc: 0 no error, 1 an ERROR/FATAL on stderr, 2 psql exited (e.g.
        the backend died), -1 timeout (call wait() again to keep waiting).
        """
        p = self._pending
        timeout = timeout * SCALE
        deadline = time.monotonic() + timeout
        while len(p["seen"]) < 2 and len(self._eof) < 2:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Result(-1, "".join(p["out"]),
                              "".join(p["err"]) + "\n(statement still running "
                              "after %s s)\n" % timeout,
                              time.monotonic() - p["start"])
            try:
                name, line = self._q.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self._eof.add(name)
            elif line == p["marker"]:
                p["seen"].add(name)
            else:
                p[name].append(line)
        self._pending = None
        out, err = "".join(p["out"]), "".join(p["err"])
        elapsed = time.monotonic() - p["start"]
        if len(p["seen"]) < 2:
            return Result(2, out, err + "\n(psql exited)\n", elapsed)
        rc = 1 if _SQLSTATE_RE.search(err) or re.search(
            r"^(ERROR|FATAL|PANIC):", err, re.M) else 0
        return Result(rc, out, err, elapsed)

    def run(self, sql, timeout=30):
        """send() then wait()."""
        self.send(sql)
        return self.wait(timeout)

    def value(self, sql, timeout=30):
        """The stdout of a statement that must succeed, stripped."""
        r = self.run(sql, timeout)
        if r.rc != 0:
            raise RuntimeError("statement failed: %s\n%s" % (sql, r.err))
        return r.out.strip()

    def close(self):
        """End psql (and so its backend)."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self in _sessions:
            _sessions.remove(self)


@atexit.register
def _cleanup_sessions_and_dbs():
    """Close leftover sessions, then drop the databases create_db() made."""
    for sess in list(_sessions):
        try:
            sess.proc.kill()
            sess.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
    _sessions.clear()
    for name in _databases:
        subprocess.run(["dropdb", "--if-exists", "--force", name],
                       capture_output=True, timeout=60)
    _databases.clear()


def backend_sockets(pid):
    """Number of sockets a process (e.g. a backend) holds open, or None."""
    try:
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return None
    n = 0
    for fd in fds:
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def proc_status_kb(pid, field):
    """A kB field of /proc/PID/status (e.g. "VmHWM", "VmRSS"), or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


_PG_LOG_BAD = re.compile(r"terminated by signal|was terminated|PANIC:|TRAP:|"
                         r"server process .* exited with exit code|"
                         r"terminating any other active server processes")


def pg_log_mark():
    """Current size of the PostgreSQL log ($PGPOLY_PGLOG), for check_pg_log()."""
    path = os.environ.get("PGPOLY_PGLOG")
    try:
        return os.path.getsize(path) if path else None
    except OSError:
        return None


def check_pg_log(mark):
    """Check that the PostgreSQL log since mark shows no crashed backend."""
    path = os.environ.get("PGPOLY_PGLOG")
    if not path or mark is None:
        print("note: PGPOLY_PGLOG not set; PostgreSQL log not checked")
        return True
    with open(path, errors="replace") as f:
        f.seek(mark)
        bad = [l.rstrip() for l in f if _PG_LOG_BAD.search(l)]
    return check(not bad, "PostgreSQL log shows a crash:\n  " + "\n  ".join(bad[:10]))


def commit_rounds(sessions, statement, nrounds, on_failure):
    """Optimistic-locking rounds: in each, every session runs statement in a
    new transaction, then each COMMITs in turn (so all but the first must
    fail: they read what the first changed).  on_failure(result) checks a
    failed COMMIT.  Checks that each round committed exactly one session;
    returns how many COMMITs succeeded (what the counter must equal)."""
    ok = 0
    for _ in range(nrounds):
        for s in sessions:
            r = s.run("BEGIN; " + statement)
            check(r.rc == 0, "%s: rc=%s %s" % (statement, r.rc, r.err.strip()[:300]))
        for s in sessions:
            r = s.run("COMMIT;")
            if r.rc == 0:
                ok += 1
            else:
                on_failure(r)
    check(ok == nrounds, "each round should commit exactly one session: %d of %d"
          % (ok, nrounds))
    return ok


def run_at_barrier(db, scripts, lock_key, timeout=90):
    """Run each SQL script in its own psql (ON_ERROR_STOP), all released at the
    same instant: each first waits on a shared advisory lock on lock_key that
    a holder session takes exclusively until every script waits for it.
    Returns one Result per script."""
    holder = Session(db)
    holder.value("SELECT pg_advisory_lock(%d);" % lock_key)
    gate = ("SELECT pg_advisory_lock_shared(%d);\n"
            "SELECT pg_advisory_unlock_shared(%d);\n" % (lock_key, lock_key))
    procs = []
    start = time.monotonic()
    for i, script in enumerate(scripts):
        path = os.path.join(work_dir(), "barrier_%d_%d.sql" % (os.getpid(), i))
        with open(path, "w") as f:
            f.write(gate + script)
        procs.append(subprocess.Popen(
            ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db, "-f", path],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    check(wait_for(lambda: psql(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %d "
        "AND classid = 0 AND objsubid = 1 AND NOT granted AND database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())"
        % lock_key, db=db).out.strip() == str(len(scripts)),
        timeout=60), "all sessions at the barrier")
    holder.value("SELECT pg_advisory_unlock(%d);" % lock_key)
    results = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=timeout * SCALE)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        results.append(Result(p.returncode, out, err, time.monotonic() - start))
    holder.close()
    return results


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
