#!/usr/bin/env python3
"""The trust rule's check of a REST store pins the address it reached.

A role under the trust rule (a non-superuser whose mapping is not waived)
may send its requests only to a service that refused a request without the
credential.  The check is made once per URL of a cached connection; if the
host name later resolved to another address (DNS rebinding, once libcurl's
DNS cache expired and the connection was reopened), the requests went to
that address unchecked.  Now every connection of the client goes to the
address the check reached.

Without root or a DNS server to control, the test uses the one name whose
resolution changes under it deterministically: libcurl resolves
"localhost" itself, to 127.0.0.1 and then ::1, trying them in that order.
On one port P:

  * [::1]:P is the checked service: 401 without the API key, a document
    naming it with the key; it closes the connection after each answer,
    so each request connects anew;
  * 127.0.0.1:P is bound but not listening (connections refused) while
    the role's first request is checked and sent: both reach [::1]:P;
  * then 127.0.0.1:P listens: a service that answers 200 to anyone (an
    internal service that asks for no credential).  Before the fix the
    role's next request connected to it (the first address of "localhost")
    and was answered by it; now it goes to [::1]:P, and the open service
    sees no request.

A superuser's connections are not pinned: the same sequence sends a
superuser's next request to 127.0.0.1:P (what libcurl resolves), as before.
Skipped (with a message) where the host has no IPv6 loopback.
"""

import json
import os
import socket

import pgtest

check = pgtest.check

ROLE = "fault_dnspin_user_%d" % os.getpid()
KEY = b"Authorization: ApiKey pin-key"
ES_ROOT = {"name": "checked", "version": {"number": "8.11.0"},
           "tagline": "You Know, for Search"}


class Service:
    """HTTP/1.1 on an already bound socket (pgtest.TcpServer, listening
    from start() on), one request per connection.
    want (a header line): 401 without it; else 200 to anyone.  Answers
    {"where": name} to anything but GET /, and records the paths asked."""

    def __init__(self, sock, name, want=None):
        self.sock, self.name, self.want = sock, name, want
        self.requests = []
        self.server = None

    def start(self):
        self.server = pgtest.TcpServer(self._serve, sock=self.sock)

    def _serve(self, c):
        req = pgtest.read_http_request(c)
        if req is None:
            return
        _, path, headers, _ = req
        self.requests.append(path)
        if self.want and not any(h.lower() == self.want.lower() for h in headers):
            status, body = 401, {"error": "Unauthorized"}
        elif path == "/":
            status, body = 200, ES_ROOT
        else:
            status, body = 200, {"where": self.name}
        body = json.dumps(body).encode()
        c.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                  % (status, len(body), body))

    def close(self):
        if self.server:
            self.server.close()
        else:
            self.sock.close()


def bind_pair():
    """Sockets bound (not listening) to [::1]:P and 127.0.0.1:P for a free
    P, or None without an IPv6 loopback."""
    for _ in range(50):
        try:
            s6 = socket.socket(socket.AF_INET6)
            s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s6.bind(("::1", 0))
        except OSError:
            return None
        port = s6.getsockname()[1]
        s4 = socket.socket()
        try:
            s4.bind(("127.0.0.1", port))
            return s6, s4, port
        except OSError:
            s4.close()
            s6.close()
    raise RuntimeError("no port free on both 127.0.0.1 and ::1")


def rebinding(s, server, pinned):
    """The sequence of the docstring as the session's current role, through
    server (whose mapping carries the key).  pinned: whether the request
    after the rebinding must still reach the checked service."""
    pair = bind_pair()
    if pair is None:
        print("skipped: no IPv6 loopback (::1)")
        return
    s6, s4, port = pair
    checked = Service(s6, "checked", want=KEY)
    open_svc = Service(s4, "open")
    checked.start()
    sql = "SELECT pgpoly.elastic_request('%s', 'GET', '/x') ->> 'where';" % server
    try:
        s.value("ALTER SERVER %s OPTIONS (SET url 'http://localhost:%d');"
                % (server, port))
        r = s.run(sql, timeout=60)
        check(r.rc == 0 and r.out.strip() == "checked",
              "%s, first request: want the checked service, got rc=%s %r %s"
              % (server, r.rc, r.out, r.err))
        open_svc.start()
        r = s.run(sql, timeout=60)
        want = "checked" if pinned else "open"
        check(r.rc == 0 and r.out.strip() == want,
              "%s, after 127.0.0.1:%d listens: want the %s service, got rc=%s %r %s"
              % (server, port, want, r.rc, r.out, r.err))
        if pinned:
            check(open_svc.requests == [],
                  "%s: the unchecked service was sent %r"
                  % (server, open_svc.requests))
    finally:
        checked.close()
        open_svc.close()


def test():
    mark = pgtest.pg_log_mark()
    db = pgtest.create_db("pgpoly_dns_pin")
    r = pgtest.psql("""
        CREATE ROLE %(role)s NOLOGIN;
        GRANT USAGE ON FOREIGN DATA WRAPPER pgpoly_elastic TO %(role)s;
        GRANT USAGE ON SCHEMA pgpoly TO %(role)s;
        GRANT EXECUTE ON FUNCTION pgpoly.elastic_request(name, text, text, jsonb)
            TO %(role)s;
    """ % {"role": ROLE}, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    s = pgtest.Session(db)
    try:
        # A superuser: not checked, not pinned (what libcurl resolves).
        s.value("""
            CREATE SERVER pin_su FOREIGN DATA WRAPPER pgpoly_elastic
                OPTIONS (url 'http://localhost:1');
            CREATE USER MAPPING FOR CURRENT_USER SERVER pin_su
                OPTIONS (api_key 'pin-key');
        """)
        rebinding(s, "pin_su", pinned=False)
        # A role under the trust rule.
        s.value("SET ROLE %s;" % ROLE)
        s.value("""
            CREATE SERVER pin_es FOREIGN DATA WRAPPER pgpoly_elastic
                OPTIONS (url 'http://localhost:1');
            CREATE USER MAPPING FOR CURRENT_USER SERVER pin_es
                OPTIONS (api_key 'pin-key');
        """)
        rebinding(s, "pin_es", pinned=True)
        s.value("RESET ROLE;")
    finally:
        s.close()
        pgtest.psql("DROP OWNED BY %s; DROP ROLE %s;" % (ROLE, ROLE), db=db)
    pgtest.check_pg_log(mark)


pgtest.main(test)
