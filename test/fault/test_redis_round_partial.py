#!/usr/bin/env python3
"""A round sent ahead, read in part by another statement that then fails.

A Redis scan sends its next round as soon as it has read one; another
request on the connection first reads that round's replies for it.  If that
other request is cancelled (statement_timeout) after some of the round's
replies arrived and before the rest, the connection is closed and the round
holds part of its replies.  The scan (an open cursor, the failed statement
rolled back to a savepoint) must then ask for the rest on the new connection
and return every row once, not fail with an internal error.

A small RESP server (string keys s:k1 .. s:k6, SCAN pages of two keys)
holds its reply to one armed command for 2 s:
  * a key list in rounds of 3, cut after the GET of k4 (then k5 is late);
  * a full scan with _ttl (GET and TTL per key, then the next SCAN page),
    cut between a key's GET and its TTL, and cut before a SCAN step;
each time FETCH ALL gives exactly the remaining rows, and the session goes
on.  A reply whose handling fails (GET answered by an integer) while another
statement reads the round leaves the round unusable: the cursor's next
FETCH fails with class 08 ("cut short"), not an internal error.  Last,
the server sends every reply one byte at a time (values holding CRLF, CR,
"$5", "*1" and "-ERR"): a full scan with TTL, a key list and a key-only
read (TYPE) return the values exactly.  No crash in the PostgreSQL log.
"""

import threading
import time

import pgtest

check = pgtest.check


bulk = pgtest.resp_bulk
commands = pgtest.resp_commands


class SlowRedis:
    """A threaded RESP server (string keys s:k1 .. s:k6, SCAN pages of two
    keys) that answers one armed command late, once."""

    def __init__(self, delay):
        self.strings = {b"s:k%d" % i: b"v%d" % i for i in range(1, 7)}
        # Values holding RESP's own bytes, for the replies sent byte by byte.
        self.strings.update({b"x:a": b"a\r\nb\rc\n$5\r\n*1\r\n",
                             b"x:b": b"", b"x:c": b"\r", b"x:d": b"-ERR no"})
        self.dribble = False      # send every reply one byte at a time
        self.delay = delay
        self.lock = threading.Lock()
        self.armed = None         # (command, key) to answer late, once
        self.wrong = False        # answer it with an integer instead
        self.stalled = 0
        self.server = pgtest.TcpServer(self._serve)
        self.port = self.server.port

    def arm(self, name, key, wrong=False):
        """Answer the next `name key` command late (wrong: with no delay,
        by an integer, which that command never answers)."""
        with self.lock:
            self.armed = (name, key)
            self.wrong = wrong

    def _late(self, cmd):
        """Whether cmd is the armed command (disarming it)."""
        with self.lock:
            if self.armed != (cmd[0].upper(), cmd[1] if len(cmd) > 1 else None):
                return False
            self.armed = None
            self.stalled += 1
            return True

    def _reply(self, cmd):
        """What Redis would answer."""
        name = cmd[0].upper()
        if name == b"GET":
            return bulk(self.strings.get(cmd[1]))
        if name == b"TTL":
            return b":-1\r\n" if cmd[1] in self.strings else b":-2\r\n"
        if name == b"SCAN":
            prefix = cmd[3].rstrip(b"*")
            keys = sorted(k for k in self.strings if k.startswith(prefix))
            at = int(cmd[1])
            nxt = at + 2 if at + 2 < len(keys) else 0
            return b"*2\r\n" + bulk(b"%d" % nxt) + b"*%d\r\n" % len(
                keys[at:at + 2]) + b"".join(bulk(k) for k in keys[at:at + 2])
        if name == b"PING":
            return b"+PONG\r\n"
        if name == b"TYPE":
            return b"+string\r\n" if cmd[1] in self.strings else b"+none\r\n"
        return b"-ERR unknown command\r\n"

    def _serve(self, c):
        try:
            for cmd in commands(c):
                if self.dribble:
                    for i in range(len(self._reply(cmd))):
                        c.sendall(self._reply(cmd)[i:i + 1])
                        time.sleep(0.0005)
                elif not self._late(cmd):
                    c.sendall(self._reply(cmd))
                elif self.wrong:
                    c.sendall(b":5\r\n")
                else:
                    time.sleep(self.delay)
                    c.sendall(self._reply(cmd))
        except (EOFError, ValueError):
            pass                  # the client left (TcpServer closes c)


def cut_round(s, srv, query, first, rest, what):
    """Open a cursor on query, FETCH 1 (first, the rows expected); another
    statement then reads the cursor's next round, which srv (armed) holds
    up, and is cancelled; after ROLLBACK TO SAVEPOINT, FETCH ALL must give
    rest."""
    stalled = srv.stalled
    r = s.run("BEGIN; DECLARE c CURSOR FOR %s; FETCH 1 FROM c;" % query)
    check(r.rc == 0 and r.out.split() == first,
          "%s: first FETCH: rc=%s out=%r err=%s" % (what, r.rc, r.out, r.err))
    r = s.run("""
        SAVEPOINT sp;
        SET LOCAL statement_timeout = '%dms';
        SELECT value FROM t WHERE key = 'k1';
    """ % int(500 * pgtest.SCALE))
    check("57014" in r.err,
          "%s: the statement reading the cursor's round was not cancelled: "
          "rc=%s out=%r err=%s" % (what, r.rc, r.out, r.err))
    check(srv.stalled == stalled + 1, "%s: the server held no reply" % what)
    r = s.run("ROLLBACK TO sp; FETCH ALL FROM c;")
    check(r.rc == 0 and r.err.strip() == "" and r.out.split() == rest,
          "%s: FETCH after the cut round: rc=%s out=%r err=%s"
          % (what, r.rc, r.out, r.err))
    r = s.run("COMMIT; SELECT value FROM t WHERE key IN ('k2', 'k6') ORDER BY 1;")
    check(r.rc == 0 and r.out.split() == ["v2", "v6"],
          "%s: after COMMIT: rc=%s out=%r err=%s" % (what, r.rc, r.out, r.err))


def test():
    mark = pgtest.pg_log_mark()
    srv = SlowRedis(2.0 * pgtest.SCALE)
    db = pgtest.create_db("pgpoly_round_partial")
    r = pgtest.psql("""
        CREATE SERVER slow FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d', timeout_ms '%d');
        CREATE FOREIGN TABLE t (key text, value text) SERVER slow
            OPTIONS (table_type 'string', key_prefix 's:', fetch_size '3');
        CREATE FOREIGN TABLE tt (key text, value text, _ttl int) SERVER slow
            OPTIONS (table_type 'string', key_prefix 's:', fetch_size '3');
        CREATE FOREIGN TABLE x (key text, value text, _ttl int) SERVER slow
            OPTIONS (table_type 'string', key_prefix 'x:', fetch_size '3');
    """ % (srv.port, int(10000 * pgtest.SCALE)), db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return

    s = pgtest.Session(db)
    # A key list in rounds of 3: the second (k4, k5, k6) is cut after k4.
    srv.arm(b"GET", b"s:k5")
    cut_round(s, srv, "SELECT key, value FROM t WHERE key = ANY "
              "(ARRAY['k1','k2','k3','k4','k5','k6'])", ["k1|v1"],
              ["k2|v2", "k3|v3", "k4|v4", "k5|v5", "k6|v6"], "key list")
    # A full scan with TTL: rounds of GET and TTL per key, then the next
    # SCAN page.  Cut between a key's GET and its TTL, then before a SCAN.
    full = "SELECT key, value, coalesce(_ttl, -1) FROM tt"
    rest = ["k2|v2|-1", "k3|v3|-1", "k4|v4|-1", "k5|v5|-1", "k6|v6|-1"]
    srv.arm(b"TTL", b"s:k3")
    cut_round(s, srv, full, ["k1|v1|-1"], rest, "TTL cut")
    srv.arm(b"SCAN", b"4")
    cut_round(s, srv, full, ["k1|v1|-1"], rest, "SCAN cut")
    # A reply whose handling fails (GET answered by an integer) while
    # another statement reads the round: the round is unusable, the
    # cursor says so (class 08), and the session goes on.
    srv.arm(b"GET", b"s:k5", wrong=True)
    r = s.run("""
        BEGIN;
        DECLARE c CURSOR FOR SELECT key, value FROM t
            WHERE key = ANY (ARRAY['k1','k2','k3','k4','k5','k6']);
        FETCH 1 FROM c;
        SAVEPOINT sp;
        SELECT value FROM t WHERE key = 'k1';
    """)
    check("08P01" in r.err, "wrong reply read by another statement: "
          "rc=%s out=%r err=%s" % (r.rc, r.out, r.err))
    r = s.run("ROLLBACK TO sp; FETCH ALL FROM c;")
    check("08000" in r.err and "cut short" in r.err,
          "FETCH after a round cut by a wrong reply: rc=%s out=%r err=%s"
          % (r.rc, r.out, r.err))
    r = s.run("ROLLBACK; SELECT value FROM t WHERE key IN ('k2', 'k6') ORDER BY 1;")
    check(r.rc == 0 and r.out.split() == ["v2", "v6"],
          "after the wrong reply: rc=%s out=%r err=%s" % (r.rc, r.out, r.err))
    # Every reply split at every byte (the reader resumes anywhere: inside
    # a CRLF, a length, a value holding CRLF and RESP type bytes).
    srv.dribble = True
    want = "a:YQ0KYg1jCiQ1DQoqMQ0K b: c:DQ== d:LUVSUiBubw=="
    for what, sql in (
            ("full scan with TTL", "SELECT string_agg(key || ':' || "
             "encode(convert_to(value, 'UTF8'), 'base64'), ' ' ORDER BY key) "
             "FROM x WHERE _ttl IS DISTINCT FROM 0"),
            ("key list", "SELECT string_agg(key || ':' || "
             "encode(convert_to(value, 'UTF8'), 'base64'), ' ' ORDER BY key) "
             "FROM x WHERE key IN ('a', 'b', 'c', 'd', 'e')"),
            ("keys only", "SELECT string_agg(key || ':' || "
             "(SELECT encode(convert_to(value, 'UTF8'), 'base64') FROM x y "
             "WHERE y.key = x.key), ' ' ORDER BY key) FROM x "
             "WHERE key IN ('a', 'b', 'c', 'd', 'e')")):
        r = s.run(sql + ";")
        check(r.rc == 0 and r.out.strip() == want,
              "%s, byte by byte: rc=%s out=%r err=%s"
              % (what, r.rc, r.out, r.err))
    srv.dribble = False
    s.close()
    srv.server.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
