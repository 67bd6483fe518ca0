#!/usr/bin/env python3
"""The streaming batched join's round, read in part, then cut.

The batched join sends a batch's GETs in pieces (32 keys, then doubling)
and reads their replies only as far as the joined rows need them; the rest
is read by the next request on the connection.  A small RESP server (string
keys s:k1 .. s:k100) answers one armed GET (s:k50, in the second piece) late,
wrongly or not at all, once.  A cursor on the join of 100 local rows is
FETCHed once (the first replies read), then:
  * another statement (in a savepoint) reads the rest of the round for it
    and is cancelled while s:k50 is held (57014): after ROLLBACK TO, FETCH
    ALL gives exactly the 99 rows not returned yet (the lost replies asked
    again on the new connection), and the session goes on;
  * another statement reads a wrong reply (an integer to GET): 08P01 for it,
    and the cursor then fails with class 08 ("cut short"), not an internal
    error, nor rows from misread replies;
  * the cursor itself reads the wrong reply: 08P01, and the next statement
    gets its own replies;
  * the server closes the connection instead of answering s:k50, while the
    cursor reads: class 08, and the next statement reconnects.
A cursor rolled back, or a LIMIT, leaves replies owed, and the server then
closes the connection: the next statement reconnects (it never asked for
those replies) instead of failing with 08006.  Last, every reply is sent
one byte at a time: the join returns every value
exactly.  No crash in the PostgreSQL log.
"""

import threading
import time

import pgtest

check = pgtest.check
bulk = pgtest.resp_bulk
N = 100
ALL = "%d|%d" % (N, N * (N + 1) // 2)


class CutRedis:
    """A threaded RESP server of string keys s:k1 .. s:kN that answers one
    armed GET late, wrongly or by closing the connection, once."""

    def __init__(self, delay):
        self.strings = {b"s:k%d" % i: b"%d" % i for i in range(1, N + 1)}
        self.delay = delay
        self.lock = threading.Lock()
        self.armed = None         # (key, how): how in late, wrong, close
        self.dribble = False
        self.hits = 0
        self.closed = 0           # connections closed by an armed GET
        self.server = pgtest.TcpServer(self._serve)
        self.port = self.server.port

    def arm(self, key, how):
        with self.lock:
            self.armed = (key, how)

    def _how(self, cmd):
        """How to answer cmd: None (at once) or the armed way (disarming)."""
        with self.lock:
            if (self.armed is None or cmd[0].upper() != b"GET"
                    or cmd[1] != self.armed[0]):
                return None
            how = self.armed[1]
            self.armed = None
            self.hits += 1
            return how

    def _reply(self, cmd):
        """GET and TYPE of string keys; PING; anything else fails."""
        if cmd[0].upper() == b"GET":
            return bulk(self.strings.get(cmd[1]))
        if cmd[0].upper() == b"TYPE":
            return b"+string\r\n" if cmd[1] in self.strings else b"+none\r\n"
        return b"+PONG\r\n" if cmd[0].upper() == b"PING" else b"-ERR unknown\r\n"

    def _serve(self, c):
        try:
            for cmd in pgtest.resp_commands(c):
                how = self._how(cmd)
                if how is not None:
                    # the replies before it go out first: the cursor's
                    # first FETCH reads some of them, not this one
                    time.sleep(self.delay if how == "late" else 0.3 * pgtest.SCALE)
                if how == "close":
                    with self.lock:
                        self.closed += 1
                    return
                if how == "wrong":
                    c.sendall(b":5\r\n")
                elif self.dribble:
                    out = self._reply(cmd)
                    for i in range(len(out)):
                        c.sendall(out[i:i + 1])
                else:
                    c.sendall(self._reply(cmd))
        except (EOFError, ValueError):
            pass


# No ORDER BY: a sort would read the whole round at the first FETCH.
JOIN = "SELECT l.i, t.value::int AS v FROM ids l JOIN t ON t.key = l.k"


def open_cursor(s, what):
    """BEGIN, a cursor on the join, FETCH 1: True if it gave row 1."""
    r = s.run("BEGIN; DECLARE c CURSOR FOR %s; FETCH 1 FROM c;" % JOIN)
    return check(r.rc == 0 and r.out.split() == ["1|1"],
                 "%s: first FETCH: rc=%s out=%r err=%s"
                 % (what, r.rc, r.out, r.err))


class Rows:
    """What rest_sum gives: rc, out, err, sqlstate as pgtest.Result."""

    def __init__(self, rc, out, err, sqlstate):
        self.rc, self.out, self.err, self.sqlstate = rc, out, err, sqlstate


def rest_sum(s):
    """FETCH ALL FROM c, its rows' count and sum of v as "count|sum" in out."""
    r = s.run("FETCH ALL FROM c;")
    if r.rc != 0 or r.err.strip():
        return r
    vals = [int(line.split("|")[1]) for line in r.out.split()]
    return Rows(r.rc, "%d|%d" % (len(vals), sum(vals)), r.err, r.sqlstate)


def test():
    mark = pgtest.pg_log_mark()
    srv = CutRedis(2.0 * pgtest.SCALE)
    db = pgtest.create_db("pgpoly_join_partial")
    r = pgtest.psql("""
        CREATE SERVER cut FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d', timeout_ms '%d');
        CREATE FOREIGN TABLE t (key text, value text) SERVER cut
            OPTIONS (table_type 'string', key_prefix 's:');
        CREATE TABLE ids AS SELECT 'k' || i AS k, i FROM generate_series(1, %d) i;
        ANALYZE ids;
    """ % (srv.port, int(10000 * pgtest.SCALE), N), db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    s = pgtest.Session(db)
    r = s.run("EXPLAIN (COSTS OFF) %s;" % JOIN)
    if not check("Redis Batched Join" in r.out,
                 "the join is not a batched join: %s %s" % (r.out, r.err)):
        return

    # Another statement reads the rest of the round and is cancelled.
    srv.arm(b"s:k50", "late")
    if open_cursor(s, "cancelled reader"):
        r = s.run("SAVEPOINT sp; SET LOCAL statement_timeout = '%dms'; "
                  "SELECT value FROM t WHERE key = 'k1';"
                  % int(500 * pgtest.SCALE))
        check("57014" in r.err, "the statement reading the join's round was "
              "not cancelled: rc=%s out=%r err=%s" % (r.rc, r.out, r.err))
        r = s.run("ROLLBACK TO sp;")
        r = rest_sum(s)
        check(r.rc == 0 and r.out.strip() == "%d|%d" % (N - 1, N * (N + 1) // 2 - 1),
              "FETCH ALL after the cut round: rc=%s out=%r err=%s"
              % (r.rc, r.out, r.err))
        s.run("COMMIT;")

    # Another statement reads a wrong reply in the round.
    srv.arm(b"s:k50", "wrong")
    if open_cursor(s, "wrong reply, other reader"):
        r = s.run("SAVEPOINT sp; SELECT value FROM t WHERE key = 'k1';")
        check("08P01" in r.err, "wrong reply read by another statement: "
              "rc=%s out=%r err=%s" % (r.rc, r.out, r.err))
        r = s.run("ROLLBACK TO sp;")
        r = rest_sum(s)
        check(r.rc != 0 and (r.sqlstate or "").startswith("08"),
              "FETCH after a round cut by a wrong reply: want class 08, got "
              "rc=%s out=%r err=%s" % (r.rc, r.out, r.err))
        s.run("ROLLBACK;")

    # The cursor reads the wrong reply itself; then the connection may be
    # used again.
    for how in ("wrong", "close"):
        srv.arm(b"s:k50", how)
        if open_cursor(s, "cursor reads %s" % how):
            r = rest_sum(s)
            check(r.rc != 0 and (r.sqlstate or "").startswith("08"),
                  "cursor reading the %s reply: want class 08, got rc=%s "
                  "out=%r err=%s" % (how, r.rc, r.out, r.err))
            s.run("ROLLBACK;")
        r = s.run("SELECT count(*), sum(t.value::int) FROM ids l "
                  "JOIN t ON t.key = l.k;")
        check(r.rc == 0 and r.out.strip() == ALL,
              "join after the %s reply: rc=%s out=%r err=%s"
              % (how, r.rc, r.out, r.err))

    # LIMIT leaves replies owed; the next statements get their own.
    for _ in range(3):
        r = s.run("SELECT l.i FROM ids l JOIN t ON t.key = l.k LIMIT 2;")
        check(r.rc == 0 and r.out.split() == ["1", "2"],
              "LIMIT: rc=%s out=%r err=%s" % (r.rc, r.out, r.err))
        r = s.run("SELECT value FROM t WHERE key = 'k77';")
        check(r.rc == 0 and r.out.strip() == "77",
              "after LIMIT: rc=%s out=%r err=%s" % (r.rc, r.out, r.err))

    # A join stopped with replies owed (a cursor rolled back, LIMIT), then
    # the connection dropped by the server (a restart, CLIENT KILL) before
    # they were read: the next statement, which never asked for them,
    # reconnects instead of failing.
    for what, stop in (("cursor rolled back", None), ("LIMIT", "LIMIT 2")):
        closed = srv.closed
        srv.arm(b"s:k50", "close")
        if stop is None:
            if open_cursor(s, what):
                s.run("ROLLBACK;")
        else:
            r = s.run("%s %s;" % (JOIN, stop))
            check(r.rc == 0 and r.out.split() == ["1|1", "2|2"],
                  "%s: rc=%s out=%r err=%s" % (what, r.rc, r.out, r.err))
        check(pgtest.wait_for(lambda: srv.closed > closed, timeout=10),
              "%s: the server did not close the connection" % what)
        r = s.run("SELECT value FROM t WHERE key = 'k77';")
        check(r.rc == 0 and r.out.strip() == "77",
              "%s, the connection then dropped: the next statement failed: "
              "rc=%s out=%r err=%s" % (what, r.rc, r.out, r.err))

    # Byte by byte.
    srv.dribble = True
    r = s.run("SELECT count(*), sum(t.value::int) FROM ids l JOIN t ON t.key = l.k;")
    check(r.rc == 0 and r.out.strip() == ALL,
          "byte by byte: rc=%s out=%r err=%s" % (r.rc, r.out, r.err))
    if open_cursor(s, "byte by byte"):
        r = rest_sum(s)
        check(r.rc == 0 and r.out.strip() == "%d|%d" % (N - 1, N * (N + 1) // 2 - 1),
              "byte by byte, cursor: rc=%s out=%r err=%s" % (r.rc, r.out, r.err))
        s.run("COMMIT;")
    srv.dribble = False
    check(srv.hits == 6, "the server's armed replies: %d of 6" % srv.hits)
    s.close()
    srv.server.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
