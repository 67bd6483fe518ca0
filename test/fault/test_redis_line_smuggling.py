#!/usr/bin/env python3
"""A non-superuser cannot make the backend send her words, as lines, to a
service that is not Redis.

A role allowed to create pgpoly_redis servers names any address: host and
port, a unix_socket on the database host (reached as the postgres OS
user), or sentinels.  RESP sends each argument as a line of its own, so to
a line-based service (memcached, SMTP, a local daemon's socket) every
argument the role chose is a command it runs: a user mapping's password
"flush_all" empties a memcached.  The trust rule's check (PING, which
Redis must refuse with NOAUTH) used to be pipelined with AUTH, so the
password went out before the answer said whether a Redis was there; and
sentinels were sent the master name without any check.  Now nothing the
role chose is sent before the peer answered as Redis does.

A fake line-based service (it answers each line with ERROR, as memcached
does) records every byte it receives, over TCP and over a Unix socket:
  * a mapping's password and user name are never received (host/port and
    unix_socket servers); the statement fails, the backend survives;
  * a sentinel_master name is never received (sentinels at the fake);
  * a real Redis that asks for a password still works for the role, and a
    real sentinel-less Redis as a sentinel is still refused with the
    sentinels' error, quoting its NOAUTH (a sentinel with requirepass).
"""

import atexit
import os
import shutil
import tempfile
import threading

import pgtest

check = pgtest.check
ROLE = "fault_smuggle_%d" % os.getpid()
SECRET_PW = "flush_all"         # a memcached command, as the password
SECRET_USER = "stats_reset"     # and as the ACL user name
MASTER = "shutdown_now"         # as the sentinel master name


class LineService:
    """A memcached-like service: ERROR for each line, every byte recorded
    (over TCP, or on the Unix socket path)."""

    def __init__(self, path=None):
        self.data = bytearray()
        self.lock = threading.Lock()
        self.server = pgtest.TcpServer(self._serve, path)
        self.port = self.server.port

    def _serve(self, c):
        buf = b""
        while True:
            d = c.recv(4096)
            if not d:
                return
            with self.lock:
                self.data += d
            buf += d
            while b"\n" in buf:
                _, buf = buf.split(b"\n", 1)
                c.sendall(b"ERROR\r\n")

    def received(self):
        with self.lock:
            return bytes(self.data)


def attempt(db, sql):
    """Run sql as ROLE; its Result."""
    return pgtest.psql("SET ROLE %s;\n%s" % (ROLE, sql), db=db, verbose=True)


def via_sentinel(db, server, port, master):
    """Scan a table of a new server whose sentinel is at port, as ROLE."""
    return attempt(db, """
        CREATE SERVER %(s)s FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (sentinels '127.0.0.1:%(p)d', sentinel_master '%(m)s');
        CREATE USER MAPPING FOR %(role)s SERVER %(s)s OPTIONS (password 'x');
        CREATE FOREIGN TABLE t_%(s)s (key text, value text) SERVER %(s)s
            OPTIONS (table_type 'string');
        SELECT * FROM t_%(s)s;
    """ % {"s": server, "p": port, "m": master, "role": ROLE})


def test():
    mark = pgtest.pg_log_mark()
    db = pgtest.create_db("pgpoly_line_smuggling")
    d = tempfile.mkdtemp(prefix="pgpoly-ls-", dir="/tmp")
    os.chmod(d, 0o755)
    atexit.register(shutil.rmtree, d, True)
    tcp = LineService()
    unix = LineService(os.path.join(d, "svc.sock"))
    sentinel = LineService()
    redis = pgtest.start_redis()
    pgtest.redis_cli(redis, "config", "set", "requirepass", "redis-pw")
    r = pgtest.psql("""
        CREATE ROLE %(role)s NOLOGIN;
        GRANT USAGE ON FOREIGN DATA WRAPPER pgpoly_redis TO %(role)s;
        GRANT CREATE ON SCHEMA public TO %(role)s;
    """ % {"role": ROLE}, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    try:
        run(db, tcp, unix, sentinel, redis, os.path.join(d, "svc.sock"))
    finally:
        pgtest.psql("DROP OWNED BY %s; DROP ROLE %s;" % (ROLE, ROLE), db=db)
    pgtest.check_pg_log(mark)


def run(db, tcp, unix, sentinel, redis, path):
    servers = [("tcp", tcp, "host '127.0.0.1', port '%d'" % tcp.port),
               ("unix_socket", unix, "unix_socket '%s'" % path)]
    for label, svc, opts in servers:
        r = attempt(db, """
            CREATE SERVER s_%(l)s FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (%(o)s);
            CREATE USER MAPPING FOR %(role)s SERVER s_%(l)s
                OPTIONS (user '%(user)s', password '%(pw)s');
            CREATE FOREIGN TABLE t_%(l)s (key text, value text) SERVER s_%(l)s
                OPTIONS (table_type 'string');
            SELECT * FROM t_%(l)s;
        """ % {"l": label, "o": opts, "role": ROLE, "user": SECRET_USER,
               "pw": SECRET_PW})
        check(r.rc != 0, "%s: the scan of a line service succeeded: %s" % (label, r.out))
        got = svc.received()
        check(got.startswith(b"*1\r\n$4\r\nPING\r\n"),
              "%s: the check's PING was not sent: %r" % (label, got[:80]))
        check(SECRET_PW.encode() not in got and SECRET_USER.encode() not in got,
              "%s: the role's password or user name reached the service: %r"
              % (label, got))

    # Sentinels at the fake: the master name is never sent to it.  A Redis
    # as a "sentinel" answers PONG, then does not know SENTINEL: refused
    # with what it answered, as before.
    r = via_sentinel(db, "s_sent", sentinel.port, MASTER)
    check(r.rc != 0, "sentinel: the scan through a line service succeeded")
    check(MASTER.encode() not in sentinel.received(),
          "sentinel: the master name reached the service: %r" % sentinel.received())
    # It asks for a password (requirepass, as a sentinel with one does):
    # the error quotes its NOAUTH, as it did before the PING check.
    r = via_sentinel(db, "s_notsent", redis, "m")
    check(r.rc != 0 and "sentinel 127.0.0.1:%d answered PING with NOAUTH" % redis in r.err,
          "a Redis with requirepass as sentinel: %s" % r.err)

    # A real Redis that asks for a password works for the role.
    r = attempt(db, """
        CREATE SERVER s_ok FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d');
        CREATE USER MAPPING FOR %s SERVER s_ok OPTIONS (password 'redis-pw');
        CREATE FOREIGN TABLE t_ok (key text, value text) SERVER s_ok
            OPTIONS (table_type 'string', key_prefix 'ls:');
        INSERT INTO t_ok VALUES ('a', '1');
        SELECT key || '=' || value FROM t_ok;
    """ % (redis, ROLE))
    check(r.rc == 0 and r.out.strip().endswith("a=1"),
          "a Redis with a password: %s %s" % (r.out, r.err))
    r = attempt(db, "SELECT 1;")
    check(r.rc == 0, "the backend did not survive: %s" % r.err)


pgtest.main(test)
