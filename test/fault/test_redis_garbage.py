#!/usr/bin/env python3
"""A pgpoly_redis server pointing at something that is not Redis.

Tiny TCP servers on 127.0.0.1, run by this test, stand in for Redis:

  * http     -- answers every connection with an HTTP response and closes;
  * binary   -- answers with bytes that are no Redis reply and closes;
  * close    -- accepts and closes at once;
  * silent   -- accepts and never answers (server option timeout_ms '500');
  * endless  -- answers the first request by announcing a 100 MB bulk
                string and streaming bytes without end
                (pgpoly.max_response_size '64kB').  It waits for the request:
                bytes sent before any request are a protocol violation
                (08P01), not what this server is about.

Plus a server at an address that does not answer connects
(connect_timeout_ms '300').

Each query must fail quickly (< 3 s) with a clear ERROR: SQLSTATE class 08
or HV0xx (54000 for the endless reply), the message naming the server and
host:port; the backend survives (SELECT 1 in the same session, same pid);
the backend closes the socket it opened (the silent server sees EOF, the
endless one stops being read), and pgpoly.connections() keeps nothing
broken.  No crash in the PostgreSQL log.
"""

import socket
import threading
import time

import pgtest

check = pgtest.check


class FakeServer:
    """A TCP server on 127.0.0.1 that misbehaves in one way."""

    def __init__(self, mode):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.open = 0           # connections the peer has not closed yet
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            pgtest.tcp_nodelay(c)
            with self.lock:
                self.accepted += 1
                self.open += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            if self.mode == "http":
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                          b"Content-Length: 5\r\n\r\nhello")
            elif self.mode == "binary":
                c.sendall(b"\x00\xff\xfe\x01garbage\r\n\x80\x81")
            elif self.mode == "silent":
                c.settimeout(30)
                while c.recv(65536):    # read requests, never answer
                    pass
            elif self.mode == "endless":
                c.settimeout(30)
                c.recv(65536)           # the request
                c.sendall(b"$100000000\r\n")
                chunk = b"x" * 65536
                sent = 0
                while sent < 100000000:
                    c.sendall(chunk)
                    sent += len(chunk)
        except OSError:
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass
            with self.lock:
                self.open -= 1


def test():
    mark = pgtest.pg_log_mark()
    db = pgtest.create_db("pgpoly_redis_garbage")
    servers = {m: FakeServer(m) for m in
               ("http", "binary", "close", "silent", "endless")}
    sql = []
    for mode, fake in servers.items():
        sql.append("""
            CREATE SERVER g_%s FOREIGN DATA WRAPPER pgpoly_redis
                OPTIONS (host '127.0.0.1', port '%d', connect_timeout_ms '1000',
                         timeout_ms '500');
            CREATE FOREIGN TABLE t_%s (key text, value text) SERVER g_%s
                OPTIONS (table_type 'string');""" % (mode, fake.port, mode, mode))
    # 192.0.2.0/24 is TEST-NET-1: nothing answers there (or the network is
    # unreachable); either way the connect must fail within the timeout.
    sql.append("""
        CREATE SERVER g_blackhole FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '192.0.2.1', port '6379', connect_timeout_ms '300');
        CREATE FOREIGN TABLE t_blackhole (key text, value text)
            SERVER g_blackhole OPTIONS (table_type 'string');""")
    r = pgtest.psql("\n".join(sql), db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return

    s = pgtest.Session(db)
    pid = int(s.value("SELECT pg_backend_pid();"))
    s.value("SET pgpoly.max_response_size = '64kB';")

    cases = [(m, servers[m].port) for m in servers] + [("blackhole", 6379)]
    for mode, port in cases:
        host = "192.0.2.1" if mode == "blackhole" else "127.0.0.1"
        for sql in ("SELECT * FROM t_%s;" % mode,
                    "SELECT value FROM t_%s WHERE key = 'k';" % mode):
            r = s.run(sql, timeout=20)
            want = ("54000",) if mode == "endless" else ("08", "HV")
            ok = (r.rc == 1 and (r.sqlstate or "").startswith(want)
                  and ('"g_%s"' % mode) in r.err
                  and ("%s:%d" % (host, port)) in r.err)
            check(ok, "%s (%s server): want an ERROR with SQLSTATE %s naming "
                  "server \"g_%s\" and %s:%d; got rc=%s sqlstate=%s: %s"
                  % (sql, mode, "/".join(want), mode, host, port, r.rc,
                     r.sqlstate, r.err.strip()))
            check(r.elapsed < 3, "%s (%s server) took %.1f s"
                  % (sql, mode, r.elapsed))
            failed = r
            r = s.run("SELECT 1;")
            check(r.rc == 0 and r.out.strip() == "1",
                  "backend unusable after the %s server: %s" % (mode, r.err))
        if mode in servers:
            fake = servers[mode]
            check(fake.accepted >= 1, "the %s server saw no connection" % mode)
            closed = pgtest.wait_for(lambda: fake.open == 0, timeout=5)
            check(closed, "the backend kept %d socket(s) to the %s server "
                  "open after the error" % (fake.open, mode))
        print("note: %s server: %s" % (mode, failed.err.strip().splitlines()[0]
                                       if failed.err.strip() else "no error"))

    check(s.value("SELECT pg_backend_pid();") == str(pid),
          "the session's backend changed (it died and psql reconnected?)")
    n = s.value("SELECT count(*) FROM pgpoly.connections() "
                "WHERE server::text LIKE 'g\\_%';")
    check(n == "0", "pgpoly.connections() still lists %s connection(s) to "
          "servers that failed" % n)
    s.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
