#!/usr/bin/env python3
"""Attacks on the reopening of a cached Redis connection Redis closed while
it was idle (test_redis_reconnect.py has the plain cases).

  * a SCAN cursor across a Redis restart: a cursor (DECLARE ... FETCH) over
    a full scan, Redis restarted (same port, same keys: a new process walks
    its key table in another order, its hash seed is new) between two
    FETCHes.  The old code reconnected and went on with the old process's
    SCAN cursor: about a fifth of the keys were missing, without an error.
    Now the FETCH fails with 08006 (or, were it ever to go on, returns every
    key).  The same after CLIENT KILL (the reopened connection cannot tell
    a restart), for a key-only and a full-row scan; a cursor over a key
    list has no SCAN cursor and goes on after the restart, reading every
    key;
  * WATCH and savepoints: a key read FOR UPDATE in a savepoint that was
    released (its WATCH is the transaction's) and the connection closed:
    the UPDATE fails (40001 or class 08) and the key keeps its value; read
    FOR UPDATE in a savepoint rolled back (PostgreSQL released the row
    lock, the WATCH is released too): after the close the UPDATE and
    COMMIT work;
  * the write stream and the main connection both closed while the
    transaction paused: COMMIT writes every row once;
  * a hostile server (a stdlib RESP server) that, once the cached
    connection is closed, refuses the next one: "-ERR max number of
    clients reached" and a close, a close at once, a close after AUTH's
    +OK, a close on SELECT: each statement fails with class 08 at once,
    after at most one new connection (no reconnect loop), and the backend
    lives on; a server that applies an immediate-mode SET and closes
    without answering: the INSERT fails with class 08 and the SET was
    received once (never sent again on a new connection);
  * 30 statements, each after Redis closed the connection (CLIENT KILL):
    the backend holds as many sockets, and the connection as much memory,
    afterwards as before (no leak);
  * no crash in the PostgreSQL log.
"""

import threading
import time

import pgtest

check = pgtest.check
N = 3000
IDLE_CLOSE = ["--timeout", "1"]  # Redis closes clients idle for 1 s


def fill(port, n):
    """Keys kv:1 .. kv:n in db 0 of port."""
    pgtest.redis_cli(port, "eval", "for i = 1, tonumber(ARGV[1]) do "
                     "redis.call('set', 'kv:' .. i, 'v' .. i) end", "0", n)


def clients(port):
    """Ids of port's clients but redis-cli's own."""
    return set(c["id"] for c in pgtest.redis_clients(port) or [])


def wait_closed(port):
    """Wait until Redis (timeout 1) closed every client it has now."""
    ids = clients(port)
    check(pgtest.wait_for(lambda: not (clients(port) & ids), timeout=10,
                          what="Redis idle timeout"),
          "Redis did not close the idle connections %s" % ids)


def scan_cursor(s, port, sel, cut, what):
    """A cursor over kv, cut (restart, kill) between two FETCHes."""
    r = s.run("BEGIN; DECLARE c CURSOR FOR SELECT %s FROM kv; "
              "FETCH 500 FROM c;" % sel)
    first = r.out.split()
    check(r.rc == 0 and len(first) == 500, "%s: first FETCH: %s"
          % (what, r.err.strip()))
    cut()
    r = s.run("FETCH ALL FROM c;", timeout=20)
    keys = set(x.split("|")[0] for x in first + r.out.split())
    check((r.rc == 1 and r.sqlstate == "08006") or
          (r.rc == 0 and len(keys) == N),
          "%s: a SCAN cursor continued on a new connection: want 08006 or "
          "all %d keys, got rc=%s %s and %d keys: %s"
          % (what, N, r.rc, r.sqlstate, len(keys), r.err.strip()))
    s.run("ROLLBACK;")


def scan_attacks(s, port):
    """SCAN cursors across a restart and CLIENT KILL; a key-list cursor."""
    def restart():
        pgtest.stop_redis(port)
        pgtest.start_redis(port=port, extra_args=IDLE_CLOSE)
        fill(port, N)

    def kill():
        for cid in clients(port):
            pgtest.redis_cli(port, "client", "kill", "id", cid)

    for sel in ("key", "key, value"):
        scan_cursor(s, port, sel, restart, "restart, SELECT %s" % sel)
        scan_cursor(s, port, sel, kill, "CLIENT KILL, SELECT %s" % sel)
    r = s.run("BEGIN; DECLARE c CURSOR FOR SELECT key, value FROM kv "
              "WHERE key = ANY (ARRAY(SELECT g::text "
              "FROM generate_series(1, 600) g)); FETCH 100 FROM c;")
    check(r.rc == 0, "key-list cursor: %s" % r.err.strip())
    restart()
    r2 = s.run("FETCH ALL FROM c; COMMIT;", timeout=20)
    rows = set(r.out.split() + r2.out.split())
    check(r2.rc == 0 and len(rows) == 600,
          "a key-list cursor after a restart: want 600 rows, got rc=%s %d: %s"
          % (r2.rc, len(rows), r2.err.strip()))


def watch_attacks(s, port):
    """WATCHes of savepoints, and the close of an idle connection."""
    pgtest.redis_cli(port, "set", "kv:w", "orig")
    r = s.run("BEGIN; SAVEPOINT a; "
              "SELECT value FROM kv WHERE key = 'w' FOR UPDATE; "
              "RELEASE SAVEPOINT a;")
    check(r.rc == 0 and r.out.strip() == "orig", "released FOR UPDATE: %s"
          % r.err.strip())
    wait_closed(port)
    r = s.run("UPDATE kv SET value = 'blind' WHERE key = 'w';", timeout=15)
    c = s.run("COMMIT;", timeout=15)
    failed = [x for x in (r, c) if x.rc != 0]
    check(failed and (failed[0].sqlstate == "40001" or
                      (failed[0].sqlstate or "").startswith("08")),
          "an UPDATE whose WATCH (of a released savepoint) went with the "
          "connection: want 40001 or class 08, got %s / %s"
          % (r.sqlstate, c.sqlstate))
    check(pgtest.redis_cli(port, "get", "kv:w")[1] == "orig",
          "a key read FOR UPDATE was written after its WATCH was lost")
    s.run("ROLLBACK;")

    r = s.run("BEGIN; SAVEPOINT a; "
              "SELECT value FROM kv WHERE key = 'w' FOR UPDATE; "
              "ROLLBACK TO SAVEPOINT a;")
    check(r.rc == 0, "FOR UPDATE rolled back: %s" % r.err.strip())
    wait_closed(port)
    r = s.run("UPDATE kv SET value = 'after' WHERE key = 'w'; COMMIT;",
              timeout=15)
    check(r.rc == 0 and pgtest.redis_cli(port, "get", "kv:w")[1] == "after",
          "a WATCH of a rolled-back savepoint kept the UPDATE from "
          "reconnecting: %s %s" % (r.sqlstate, r.err.strip()))


def stream_attack(s, port):
    """Stream and main connection both closed while the transaction paused."""
    r = s.run("SET pgpoly.redis_stream_threshold = 1; BEGIN; "
              "SELECT value FROM kv WHERE key = '1'; "
              "INSERT INTO kv SELECT 's' || g, 'x' || g "
              "FROM generate_series(1, 200) g;")
    check(r.rc == 0, "streamed INSERT: %s" % r.err.strip())
    wait_closed(port)
    r = s.run("COMMIT; RESET pgpoly.redis_stream_threshold;", timeout=15)
    n = pgtest.redis_cli(port, "eval", "return #redis.call('keys', 'kv:s*')",
                         "0")[1]
    check(r.rc == 0 and n == "200", "COMMIT after both connections closed: "
          "want 200 rows, got %s (%s %s)" % (n, r.sqlstate, r.err.strip()))


def leak_attack(s, port, pid):
    """30 reconnections: as many sockets and as much memory afterwards as
    before."""
    memory = ("SELECT sum(total_bytes) FROM pg_backend_memory_contexts "
              "WHERE name = 'pgpoly redis connection';")
    s.value("SELECT value FROM kv WHERE key = '1';")
    before = pgtest.backend_sockets(int(pid))
    mem = s.value(memory)
    for i in range(30):
        for cid in clients(port):
            pgtest.redis_cli(port, "client", "kill", "id", cid)
        r = s.run("SELECT value FROM kv WHERE key = '%d';" % (i + 1))
        check(r.rc == 0 and r.out.strip() == "v%d" % (i + 1),
              "read %d after CLIENT KILL: %s" % (i, r.err.strip()))
    after = pgtest.backend_sockets(int(pid))
    check(before is not None and after == before,
          "backend sockets before %s, after 30 reconnections %s"
          % (before, after))
    check(s.value(memory) == mem, "the connection's memory grew from %s to "
          "%s bytes over 30 reconnections" % (mem, s.value(memory)))


class Hostile:
    """A RESP server whose behaviour, per connection, is self.mode."""

    def __init__(self):
        self.mode = "normal"
        self.accepts = 0
        self.closed = 0
        self.sets = 0
        self.lock = threading.Lock()
        self.lsock = pgtest.serve_tcp(self.handle)
        self.port = self.lsock.getsockname()[1]

    def handle(self, sock):
        with self.lock:
            self.accepts += 1
        mode = self.mode
        try:
            if mode == "maxclients":
                sock.sendall(b"-ERR max number of clients reached\r\n")
            elif mode != "close_at_once":
                self.serve(sock, mode)
        except (EOFError, OSError):
            pass
        finally:
            sock.close()
            with self.lock:
                self.closed += 1

    def wait_all_closed(self, timeout=5):
        """Wait until every connection accepted so far has been closed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.closed == self.accepts:
                    return True
            time.sleep(0.01)
        return False

    def serve(self, sock, mode):
        for args in pgtest.resp_commands(sock):
            cmd = args[0].upper()
            if cmd == b"AUTH":
                sock.sendall(b"+OK\r\n")
                if mode == "close_after_auth":
                    return
            elif cmd == b"SELECT":
                if mode == "close_on_select":
                    return
                sock.sendall(b"+OK\r\n")
            elif cmd == b"GET":
                sock.sendall(pgtest.resp_bulk(b"A"))
                if mode == "answer_then_close":
                    return
            elif cmd == b"SET":
                with self.lock:
                    self.sets += 1
                if mode == "apply_then_close":
                    return
                sock.sendall(b"+OK\r\n")
            else:
                sock.sendall(b"-ERR unknown command\r\n")


def hostile_attacks(db):
    """Refused reconnections fail at once; a write is never sent twice."""
    f = Hostile()
    r = pgtest.psql("""
        CREATE SERVER fk FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d', db '2',
                     connect_timeout_ms '1000', timeout_ms '2000');
        CREATE USER MAPPING FOR CURRENT_USER SERVER fk
            OPTIONS (password 'pw');
        CREATE FOREIGN TABLE fkv (key text, value text) SERVER fk
            OPTIONS (table_type 'string', key_prefix 'k:',
                     write_mode 'immediate');
    """ % f.port, db=db)
    check(r.rc == 0, "hostile setup: %s" % r.err.strip())
    s = pgtest.Session(db)
    pid = s.value("SELECT pg_backend_pid();")
    for mode in ("maxclients", "close_at_once", "close_after_auth",
                 "close_on_select"):
        f.mode = "answer_then_close"
        r = s.run("SELECT value FROM fkv WHERE key = 'a';", timeout=10)
        check(r.rc == 0 and r.out.strip() == "A", "%s: the read before: %s"
              % (mode, r.err.strip()))
        f.mode = mode
        a0 = f.accepts
        r = s.run("SELECT value FROM fkv WHERE key = 'a';", timeout=20)
        check(r.rc == 1 and (r.sqlstate or "").startswith("08") and
              r.elapsed < 3,
              "%s: want class 08 at once, got rc=%s %s after %.1f s: %s"
              % (mode, r.rc, r.sqlstate, r.elapsed, r.err.strip()))
        check(f.accepts - a0 <= 1, "%s: %d connections for one statement"
              % (mode, f.accepts - a0))
    f.mode = "answer_then_close"
    r = s.run("SELECT value FROM fkv WHERE key = 'a';", timeout=10)
    check(r.rc == 0 and r.out.strip() == "A", "a read once the server is "
          "fine again: %s" % r.err.strip())
    # the server closes the connection after its answer: wait for that, or
    # the SET could be sent on it before the close arrives, and fail unsent
    check(f.wait_all_closed(), "the server did not close after its answer")
    f.mode = "apply_then_close"
    r = s.run("INSERT INTO fkv VALUES ('z', 'once');", timeout=20)
    check(r.rc == 1 and (r.sqlstate or "").startswith("08") and f.sets == 1,
          "an immediate SET closed unanswered: want class 08 and one SET, "
          "got rc=%s %s and %d SETs" % (r.rc, r.sqlstate, f.sets))
    check(s.value("SELECT pg_backend_pid();") == pid,
          "the backend changed under the hostile server")
    s.close()
    f.lsock.close()


def test():
    mark = pgtest.pg_log_mark()
    port = pgtest.start_redis(extra_args=IDLE_CLOSE)
    fill(port, N)
    db = pgtest.create_db("pgpoly_redis_reconnect_attack")
    r = pgtest.psql("""
        CREATE SERVER rra FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d',
                     connect_timeout_ms '1000', timeout_ms '3000');
        CREATE USER MAPPING FOR CURRENT_USER SERVER rra;
        CREATE FOREIGN TABLE kv (key text, value text) SERVER rra
            OPTIONS (table_type 'string', key_prefix 'kv:',
                     fetch_size '100');
    """ % port, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    s = pgtest.Session(db)
    pid = s.value("SELECT pg_backend_pid();")
    scan_attacks(s, port)
    watch_attacks(s, port)
    stream_attack(s, port)
    leak_attack(s, port, pid)
    check(s.value("SELECT pg_backend_pid();") == pid,
          "the session's backend changed")
    s.close()
    hostile_attacks(db)
    pgtest.check_pg_log(mark)


pgtest.main(test)
