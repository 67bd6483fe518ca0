"""Helpers of the sync fault tests (test_sync_*.py).

Cluster: a private PostgreSQL cluster in $PGPOLY_WORK, optionally with
shared_preload_libraries = 'pgpoly' (the sync launcher), that a test may
crash, restart and stop without disturbing the harness's server.

setup_sql(): the objects the sync tests share, as SQL: a Redis hash table
fed by the native table kv through sync "kv", and a diff function that
compares them row for row.
"""

import atexit
import os
import pwd
import re
import shutil
import signal
import subprocess
import threading
import time

import pgtest

_clusters = []


def _pg_bindir():
    """The PostgreSQL 15 bin directory (pg_config --bindir)."""
    cfg = os.environ.get("PG_CONFIG", "pg_config")
    return subprocess.run([cfg, "--bindir"], capture_output=True, text=True,
                          check=True).stdout.strip()


def _os_user():
    """The OS user that runs the cluster (initdb refuses root), as lib.sh."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    for name in ("postgres", "pgpoly"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                    "/usr/sbin/nologin", "pgpoly"], check=True)
    return "pgpoly"


class Cluster:
    """A private PostgreSQL cluster on a free loopback port; with primary
    (a Cluster), a hot standby of it made by pg_basebackup.  conf: more
    postgresql.conf lines."""

    def __init__(self, preload=True, name="sync", conf="", primary=None):
        self.user = _os_user()
        self.bindir = _pg_bindir()
        self.dir = os.path.join(pgtest.work_dir(), "pg-%s-%d" % (name, os.getpid()))
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "postgres.log")
        self.port = None
        os.makedirs(os.path.join(self.dir, "sock"), exist_ok=True)
        shutil.chown(self.dir, self.user)
        shutil.chown(os.path.join(self.dir, "sock"), self.user)
        if primary is None:
            self._as_user(["initdb", "-D", self.data, "-A", "trust", "-U", "postgres",
                           "--no-sync", "-E", "UTF8", "--locale=C"])
        else:
            self._as_user(["pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port),
                           "-U", "postgres", "-D", self.data, "-R", "-X", "stream",
                           "--checkpoint=fast", "--no-sync"])
        conf_file = os.path.join(self.data, "postgresql.conf")
        with open(conf_file, "a") as f:
            f.write("\nlisten_addresses = '127.0.0.1'\n"
                    "unix_socket_directories = '%s'\n"
                    "fsync = off\nfull_page_writes = off\n"
                    "log_line_prefix = '%%m [%%p] %%q%%a '\n"
                    "max_worker_processes = 16\n"
                    % os.path.join(self.dir, "sock"))
            if preload:
                f.write("shared_preload_libraries = 'pgpoly'\n")
            f.write(conf + "\n")
        _clusters.append(self)
        # The port is chosen just before the first start (initdb takes seconds)
        pgtest.on_free_port(lambda port: self._first_start(conf_file, port))

    def _first_start(self, conf_file, port):
        """Start on port: False if the port was taken."""
        self.port = port
        with open(conf_file, "a") as f:
            f.write("port = %d\n" % port)
        mark = self.log_mark()
        try:
            self.start()
        except subprocess.CalledProcessError:
            if "could not bind" not in self.log_since(mark):
                raise
            return False
        return True

    def _as_user(self, args, check=True, timeout=120):
        cmd = [os.path.join(self.bindir, args[0])] + args[1:]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", self.user, "--"] + cmd
        return subprocess.run(cmd, capture_output=True, text=True, check=check,
                              timeout=timeout, cwd=self.dir)

    def env(self):
        """libpq environment pointing at this cluster."""
        return {"PGHOST": "127.0.0.1", "PGPORT": str(self.port),
                "PGUSER": "postgres", "PGDATABASE": "postgres"}

    def start(self, options=None):
        """Start the cluster and wait until it accepts connections: through
        PGPOLY_PG_WRAPPER when set, as the harness's server (`make valgrind`
        runs this cluster's backends and sync worker under valgrind too)."""
        args = ["pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t",
                str(int(60 * pgtest.SCALE))]
        if os.environ.get("PGPOLY_PG_WRAPPER"):
            args += ["-p", os.environ["PGPOLY_PG_WRAPPER"]]
        if options:
            args += ["-o", options]
        self._as_user(args + ["start"], timeout=int(60 * pgtest.SCALE) + 60)
        pgtest.register_pid(self.postmaster_pid(), "postgres-" + os.path.basename(self.dir))

    def stop(self, mode="fast", timeout=60):
        """pg_ctl stop; returns the CompletedProcess."""
        return self._as_user(["pg_ctl", "-D", self.data, "-m", mode, "-w", "-t",
                              str(timeout), "stop"], check=False, timeout=timeout + 10)

    def restart(self, mode="immediate", options=None):
        """Stop (mode) and start again."""
        self.stop(mode)
        self.start(options)

    def postmaster_pid(self):
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            return int(f.readline())

    def psql(self, sql, db="postgres", **kw):
        return pgtest.psql(sql, db=db, env=self.env(), **kw)

    def value(self, sql, db="postgres"):
        """stdout of SQL that must succeed, stripped."""
        r = self.psql(sql, db=db, timeout=120)
        if r.rc != 0:
            raise RuntimeError("SQL failed: %s\n%s" % (sql, r.err))
        return r.out.strip()

    def ready(self, db="postgres"):
        """Whether the cluster accepts queries now."""
        return self.psql("SELECT 1", db=db, timeout=10).rc == 0

    def log_mark(self):
        try:
            return os.path.getsize(self.log)
        except OSError:
            return 0

    def log_since(self, mark):
        with open(self.log, errors="replace") as f:
            f.seek(mark)
            return f.read()


@atexit.register
def _stop_clusters():
    for c in _clusters:
        try:
            c.stop("immediate", timeout=30)
        except Exception:  # noqa: BLE001 -- best effort at exit
            pass


def worker_pid(run, db):
    """Pid of the sync worker of database db (run: a psql-like callable), or 0."""
    r = run("SELECT pid FROM pg_stat_activity WHERE backend_type = 'pgpoly sync worker' "
            "AND datname = '%s'" % db)
    out = r.out.strip() if r.rc == 0 else ""
    return int(out.splitlines()[0]) if out else 0


def setup_sql(redis_port, prefix, timeout_ms=2000, sync="kv"):
    """Server, Redis table kv_redis, native table kv, sync `sync` (kv),
    kv_diff().  A test on the harness's cluster whose sync's log lines
    another test may count names it after itself."""
    return """
CREATE SERVER sync_redis FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port '%d', timeout_ms '%d', connect_timeout_ms '1000');
CREATE FOREIGN TABLE kv_redis (k text OPTIONS (key 'true'), v text, n int)
  SERVER sync_redis OPTIONS (table_type 'hash', key_prefix '%s');
CREATE TABLE kv (k int PRIMARY KEY, v text NOT NULL, n int);
CREATE FUNCTION kv_diff() RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM (
    (SELECT k::text, v, n FROM kv EXCEPT ALL SELECT k, v, n FROM kv_redis)
    UNION ALL
    (SELECT k, v, n FROM kv_redis EXCEPT ALL SELECT k::text, v, n FROM kv)) d $$;
SELECT pgpoly.create_sync('%s', 'kv', 'kv_redis');
""" % (redis_port, timeout_ms, prefix, sync)


def outbox_sql(redis_port, table, prefix):
    """Server r, outbox table `table` and table_now reading its Redis keys."""
    return """
CREATE SERVER r FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (host '127.0.0.1', port '%d');
CREATE USER MAPPING FOR CURRENT_USER SERVER r;
CREATE FOREIGN TABLE %s (k text OPTIONS (key 'true'), v text)
  SERVER r OPTIONS (key_prefix '%s', write_mode 'outbox');
CREATE FOREIGN TABLE %s_now (k text OPTIONS (key 'true'), v text)
  SERVER r OPTIONS (key_prefix '%s');
""" % (redis_port, table, prefix, table, prefix)


def check_no_slot_warning(mark):
    """Check that the PostgreSQL log since mark never says no worker slot was free."""
    path = os.environ.get("PGPOLY_PGLOG")
    if not path or mark is None:
        return
    with open(path, errors="replace") as f:
        f.seek(mark)
        lines = [l.rstrip() for l in f if "no free background worker slot" in l]
    pgtest.check(not lines, "the log says no slot was free:\n  " + "\n  ".join(lines[:5]))


def hget(rport, key, field):
    """HGET key field on the Redis on rport (a failed redis-cli fails the test)."""
    rc, out, err = pgtest.redis_cli(rport, "HGET", key, field)
    pgtest.check(rc == 0, "redis-cli HGET %s: %s" % (key, err))
    return out


def check_copy_held(c, db, origin, nsyncs):
    """Check that the nsyncs syncs of database db (a copy of database origin
    in Cluster c) deliver nothing: sync_wait gives up, and they turn
    'failing' with a last_error naming origin."""
    def q(text):
        return c.value(text, db=db)
    pgtest.check(q("SELECT pgpoly.sync_wait(NULL, '3 s')") == "f", "the copy's syncs delivered")
    pgtest.check(pgtest.wait_for(
        lambda: q("SELECT count(*) FROM pgpoly.sync_status WHERE state = 'failing'")
        == str(nsyncs), timeout=30, interval=0.2),
        "the copy's syncs are not failing: %s"
        % q("SELECT name, state, last_error FROM pgpoly.sync_status"))
    errs = q("SELECT string_agg(last_error, ' | ') FROM pgpoly.sync_status")
    pgtest.check(errs.count('belongs to database "%s"' % origin) == nsyncs,
                 "last_error names the database the syncs belong to: %s" % errs)


def count_lines(text, pattern):
    """How many lines of text match the regular expression pattern."""
    rx = re.compile(pattern)
    return sum(1 for line in text.splitlines() if rx.search(line))


def wait_gone(pid, timeout=30):
    """Wait until process pid has exited (or is a zombie)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            with open("/proc/%d/stat" % pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except (OSError, ProcessLookupError):
            return True
        time.sleep(0.05)
    return False


def kill(pid, sig=signal.SIGKILL):
    """Send sig to pid, ignoring a process already gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def writers_while_paused(rport, writer, args, pending):
    """Run writer(*args, seed, errors) in four threads while the Redis on
    rport is paused; check that they neither waited on it nor failed, and
    that pending() > 0 before Redis resumes."""
    errors = []
    pgtest.kill_redis(rport, signal.SIGSTOP)
    try:
        threads = [threading.Thread(target=writer, args=tuple(args) + (seed, errors))
                   for seed in range(4)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        # Wall time over PGPOLY_TIMEOUT_SCALE, as pgtest's Result.elapsed.
        pgtest.check((time.monotonic() - start) / pgtest.SCALE < 90,
                     "writers waited on the paused store")
        pgtest.check(not errors, "writer errors: %s" % errors[:3])
        pgtest.check(pending() > 0, "nothing pending while Redis is paused")
    finally:
        pgtest.kill_redis(rport, signal.SIGCONT)
