#!/usr/bin/env python3
"""The HTTP client's kept wait set survives libcurl's resolver socket.

The client keeps its wait set across requests and rebuilt it only when
libcurl closed a socket through CURLOPT_CLOSESOCKETFUNCTION.  libcurl's
threaded resolver closes the socket pair it reports for a name's
resolution with close() itself; the connection's socket opened next gets
the same descriptor number, the set still listed that number (its epoll
registration gone with the closed socket) and the wait failed with
"epoll_ctl() failed: No such file or directory" (or hung).  A server URL
whose host is a name libcurl resolves through the system resolver (the
machine's host name, not "localhost" nor an address) shows it at the first
request; the test then runs several more, including ones after ALTER SERVER
changes the URL (a new name to resolve), and one whose first URL's name
does not resolve (the failover to the second URL resolves again).
"""

import socket

import es_helper
import pgtest

check = pgtest.check


def resolvable_name():
    """A host name other than localhost resolving to 127.0.0.1, or None."""
    for name in (socket.gethostname(), "vm", "runsc"):
        try:
            if name and name != "localhost" and socket.gethostbyname(name) == "127.0.0.1":
                return name
        except OSError:
            pass
    return None


def test():
    name = resolvable_name()
    if name is None:
        print("skipped: no host name other than localhost resolves to 127.0.0.1")
        return
    es = es_helper.Standin()
    es.load("docs", 30)
    db = pgtest.create_db("pgpoly_http_ws")
    r = pgtest.psql("""
        CREATE SERVER es FOREIGN DATA WRAPPER pgpoly_elastic
            OPTIONS (url 'http://%s:%d', timeout_ms '20000');
        CREATE USER MAPPING FOR CURRENT_USER SERVER es;
        CREATE FOREIGN TABLE docs (_id text, n int) SERVER es;
    """ % (name, es.port), db=db)
    check(r.rc == 0, "setup: %s" % r.err)
    s = pgtest.Session(db)
    for i in range(3):
        r = s.run("SELECT count(*), sum(n) FROM docs;", timeout=60)
        check(r.rc == 0, "query %d through %s: %s" % (i, name, r.err))
        check(r.out.split() == ["30|435"] or "30" in r.out, "query %d: %r" % (i, r.out))
    r = s.run("ALTER SERVER es OPTIONS (SET url 'http://localhost:%d');" % es.port)
    check(r.rc == 0, "alter: %s" % r.err)
    r = s.run("SELECT count(*) FROM docs;", timeout=60)
    check(r.rc == 0 and "30" in r.out, "after ALTER SERVER to localhost: %s %s" % (r.out, r.err))
    r = s.run("ALTER SERVER es OPTIONS (SET url 'http://%s:%d');" % (name, es.port))
    check(r.rc == 0, "alter back: %s" % r.err)
    r = s.run("SELECT count(*) FROM docs;", timeout=60)
    check(r.rc == 0 and "30" in r.out, "after ALTER SERVER back to %s: %s %s" % (name, r.out, r.err))
    # a name that does not resolve, then the next URL
    r = s.run("ALTER SERVER es OPTIONS (SET url 'http://pgpoly-no-such-host.invalid:%d, http://%s:%d');"
              % (es.port, name, es.port))
    check(r.rc == 0, "alter to two URLs: %s" % r.err)
    r = s.run("SELECT count(*) FROM docs;", timeout=60)
    check(r.rc == 0 and "30" in r.out,
          "the second URL after the first's failed resolution: %s %s" % (r.out, r.err))
    s.close()


pgtest.main(test)
