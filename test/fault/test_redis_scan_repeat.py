#!/usr/bin/env python3
"""SCAN returns keys more than once: every key is still one row.

Redis' SCAN guarantees every key present for the whole scan is returned, but
it may return a key several times (a table resized between calls).  A small
RESP server (string keys r:00000 .. r:02999, value "v" || key) pages SCAN by
its COUNT and repeats keys the way a resize can: each page also holds the
first keys of the page before it, its own first key twice, and every
seventh page the very first key again.  Against it:

  * count(*), the keys alone (key-only: SCAN pages are the rows, the next
    page asked for before a page's keys are deduplicated), the keys with
    their values (GET per key), and a LIKE prefix give each key once, at
    fetch_size 100 and 7 (the set of keys met grows through many sizes);
  * with a write buffered in the transaction (the values path, for the
    overlay) the buffered key is counted once and the rest once each;
  * a cursor reading a few rows at a time, while another statement reads
    the page the cursor sent ahead (the page kept for the cursor), still
    gets every key once, in SCAN order.
No crash in the PostgreSQL log.
"""

import threading

import pgtest

check = pgtest.check
bulk = pgtest.resp_bulk

N = 3000
KEYS = [b"r:%05d" % i for i in range(N)]


class RepeatRedis:
    """A threaded RESP server whose SCAN repeats keys."""

    def __init__(self):
        self.strings = {k: b"v" + k[2:] for k in KEYS}
        self.lock = threading.Lock()
        self.scans = 0            # SCAN commands answered
        self.sock = pgtest.serve_tcp(self._serve)
        self.port = self.sock.getsockname()[1]

    def _scan(self, cmd):
        """A page of the keys matching cmd's MATCH prefix, with repeats."""
        prefix = cmd[3].rstrip(b"*").replace(b"\\", b"")
        count = int(cmd[5])
        keys = sorted(k for k in self.strings if k.startswith(prefix))
        at = int(cmd[1])
        page = keys[at:at + count]
        if at > 0:
            page += keys[max(0, at - count):max(0, at - count) + 3]
        if page:
            page.append(page[0])
        if (at // count) % 7 == 6 and keys:
            page.insert(1, keys[0])
        nxt = at + count if at + count < len(keys) else 0
        with self.lock:
            self.scans += 1
        return b"*2\r\n" + bulk(b"%d" % nxt) + b"*%d\r\n" % len(page) + \
            b"".join(bulk(k) for k in page)

    def _reply(self, cmd):
        """What Redis would answer."""
        name = cmd[0].upper()
        if name == b"SCAN":
            return self._scan(cmd)
        if name == b"GET":
            return bulk(self.strings.get(cmd[1]))
        if name == b"TYPE":
            return b"+string\r\n" if cmd[1] in self.strings else b"+none\r\n"
        if name == b"TTL":
            return b":-1\r\n" if cmd[1] in self.strings else b":-2\r\n"
        if name == b"PING":
            return b"+PONG\r\n"
        return b"-ERR unknown command\r\n"

    def _serve(self, c):
        try:
            for cmd in pgtest.resp_commands(c):
                c.sendall(self._reply(cmd))
        except (EOFError, ValueError, OSError):
            pass
        finally:
            c.close()


def expect(s, sql, want, what):
    """sql in session s must print the lines want."""
    r = s.run(sql)
    check(r.rc == 0 and r.err.strip() == "" and r.out.split() == want,
          "%s: %s gave rc=%s out=%r (want %r) err=%s"
          % (what, sql, r.rc, r.out[:300], want, r.err.strip()))


def test():
    mark = pgtest.pg_log_mark()
    srv = RepeatRedis()
    db = pgtest.create_db("pgpoly_scan_repeat")
    r = pgtest.psql("""
        CREATE SERVER rep FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d', timeout_ms '10000');
        CREATE FOREIGN TABLE t100 (key text, value text) SERVER rep
            OPTIONS (table_type 'string', key_prefix 'r:', fetch_size '100',
                     write_mode 'transactional');
        CREATE FOREIGN TABLE t7 (key text, value text) SERVER rep
            OPTIONS (table_type 'string', key_prefix 'r:', fetch_size '7');
    """ % srv.port, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    s = pgtest.Session(db)
    total = str(N)
    for t in ("t100", "t7"):
        scans = srv.scans
        expect(s, "SELECT count(*) FROM %s;" % t, [total], t + " count(*)")
        check(srv.scans - scans > 10, "%s: only %d SCAN pages: the repeats "
              "did not cross pages" % (t, srv.scans - scans))
        expect(s, "SELECT count(*), count(DISTINCT key), min(key), max(key) "
               "FROM (SELECT key FROM %s) k;" % t,
               ["%s|%s|00000|%05d" % (total, total, N - 1)], t + " keys")
        expect(s, "SELECT count(*), count(DISTINCT key), "
               "count(*) FILTER (WHERE value = 'v' || key) FROM %s;" % t,
               ["%s|%s|%s" % (total, total, total)], t + " keys and values")
        expect(s, "SELECT count(*), count(DISTINCT key) FROM %s "
               "WHERE key LIKE '01%%';" % t, ["1000|1000"], t + " LIKE prefix")
        r = s.run("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) "
                  "SELECT key FROM %s;" % t)
        check(r.rc == 0 and "keys only" in r.out and
              "rows=%d " % N in r.out,
              "%s: SELECT key did not read keys only, %d rows: %s"
              % (t, N, r.out + r.err))

    # A buffered write: the values path, the overlay applied to each key.
    expect(s, "BEGIN; INSERT INTO t100 VALUES ('zz', 'vzz'), ('00005', 'new');"
           "SELECT count(*), count(DISTINCT key), "
           "count(*) FILTER (WHERE value = 'v' || key) FROM t100; ROLLBACK;",
           ["%d|%d|%d" % (N + 1, N + 1, N - 1 + 1)], "buffered writes")

    # A cursor reading the key-only scan a few rows at a time; between its
    # FETCHes another statement reads the page the cursor sent ahead.
    got = []
    r = s.run("BEGIN; DECLARE c CURSOR FOR SELECT key FROM t100;")
    check(r.rc == 0, "DECLARE: %s" % r.err)
    while True:
        r = s.run("FETCH 150 FROM c;")
        if not check(r.rc == 0 and r.err.strip() == "",
                     "FETCH: rc=%s err=%s" % (r.rc, r.err)):
            break
        rows = r.out.split()
        if not rows:
            break
        got += rows
        r = s.run("SELECT value FROM t7 WHERE key = '00042';")
        check(r.rc == 0 and r.out.strip() == "v00042",
              "a lookup between FETCHes gave rc=%s out=%r err=%s"
              % (r.rc, r.out, r.err))
    s.run("COMMIT;")
    check(got == [k[2:].decode() for k in KEYS],
          "the cursor gave %d rows, %d distinct, not each key once in SCAN "
          "order (first %r)" % (len(got), len(set(got)), got[:5]))
    s.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
