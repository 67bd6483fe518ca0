#!/usr/bin/env python3
"""Redis connections that fail half-way are freed: no socket, no context.

A Redis node's connection (a hiredis context and its socket, malloc'd
outside PostgreSQL's memory contexts) must be freed on every path out of
opening or asking it, ERRORs included.  Checked, in one session, each
case repeated so that a leak shows as a growing number of the backend's
sockets (and, under `make valgrind`, as no definite leak at backend exit):

  * a connect cancelled while it waits: the server is a listener whose
    accept queue is full (it never accepts), so the TCP connect hangs; a
    statement_timeout well under connect_timeout_ms cancels it (57014);
  * a sentinel (server option sentinels) that answers the
    get-master-addr-by-name question with two replies: the protocol ERROR
    (08P01) is raised while the sentinel's connection, which belongs to no
    handle, is open;
  * a sentinel that accepts and never answers, the statement cancelled by
    statement_timeout while it waits (57014).

After each case the backend is the same (same pid), holds no more sockets
than after the case's first statement, and pgpoly.connections() lists no
connection to the server.
"""

import socket
import time

import pgtest
import redis_cluster

check = pgtest.check


def full_listener():
    """A listening socket whose accept queue is full, the fillers, and
    whether a further connect to it hangs (it must, for the test)."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(lsock.getsockname())
        fillers.append(c)
        time.sleep(0.05)
    probe = socket.socket()
    probe.settimeout(1)
    try:
        probe.connect(lsock.getsockname())
        hangs = False
    except socket.timeout:
        hangs = True
    except OSError:
        hangs = False
    probe.close()
    return lsock, fillers, hangs


def fake_sentinel(reply):
    """A fake sentinel answering each command with reply (bytes), or never
    answering (None).  Returns its listening socket."""
    def serve(sock):
        conn = redis_cluster.Resp.on(sock)
        try:
            while True:
                conn.read()
                if reply is not None:
                    sock.sendall(reply)
        except (ConnectionError, OSError, ValueError):
            pass
        sock.close()
    return pgtest.serve_tcp(serve)


def no_leak(s, pid, server, sql, want, rounds=8):
    """Run sql rounds times: each fails with SQLSTATE want; the backend's
    sockets do not grow after the first; no cached connection is left."""
    base = None
    for i in range(rounds):
        r = s.run(sql, timeout=30)
        check(r.rc == 1 and r.sqlstate == want,
              "%s (server %s): want SQLSTATE %s, got rc=%s sqlstate=%s: %s"
              % (sql, server, want, r.rc, r.sqlstate, r.err.strip()))
        if i == 0:
            base = pgtest.backend_sockets(pid)
    now = pgtest.backend_sockets(pid)
    check(base is not None and now is not None and now <= base,
          "server %s: the backend's sockets grew from %s to %s over %d "
          "failed statements" % (server, base, now, rounds - 1))
    check(s.value("SELECT pg_backend_pid();") == str(pid),
          "server %s: the session's backend changed (it died and psql "
          "reconnected?)" % server)
    n = s.value("SELECT count(*) FROM pgpoly.connections() "
                "WHERE server = '%s';" % server)
    check(n == "0", "pgpoly.connections() lists %s connection(s) to %s"
          % (n, server))


def test():
    mark = pgtest.pg_log_mark()
    lsock, fillers, hangs = full_listener()
    if not check(hangs, "a connect to a listener with a full accept queue "
                 "did not hang: the test cannot run here"):
        return
    extra = fake_sentinel(b"+OK\r\n+OK\r\n")
    mute = fake_sentinel(None)
    db = pgtest.create_db("pgpoly_redis_node_leaks")
    r = pgtest.psql("""
        CREATE SERVER rhang FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d', connect_timeout_ms '600000');
        CREATE SERVER rextra FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (sentinels '127.0.0.1:%d', sentinel_master 'm',
                     connect_timeout_ms '600000', timeout_ms '600000');
        CREATE SERVER rmute FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (sentinels '127.0.0.1:%d', sentinel_master 'm',
                     connect_timeout_ms '600000', timeout_ms '600000');
        CREATE FOREIGN TABLE t_rhang (key text, value text) SERVER rhang
            OPTIONS (table_type 'string');
        CREATE FOREIGN TABLE t_rextra (key text, value text) SERVER rextra
            OPTIONS (table_type 'string');
        CREATE FOREIGN TABLE t_rmute (key text, value text) SERVER rmute
            OPTIONS (table_type 'string');
    """ % (lsock.getsockname()[1], extra.getsockname()[1],
           mute.getsockname()[1]), db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return

    s = pgtest.Session(db)
    pid = int(s.value("SELECT pg_backend_pid();"))
    s.value("SET statement_timeout = '%dms';" % int(300 * pgtest.SCALE))
    for server, want in (("rhang", "57014"), ("rextra", "08P01"),
                         ("rmute", "57014")):
        no_leak(s, pid, server, "SELECT * FROM t_%s WHERE key = 'a';"
                % server, want)
    s.close()
    for c in fillers + [lsock, extra, mute]:
        c.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
