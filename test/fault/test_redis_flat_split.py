#!/usr/bin/env python3
"""Key replies built flat (redis_resp.c build_flat) split at every byte.

A private Redis holds hashes, a set and a list whose values hold CR, LF,
CRLF, a trailing CR, RESP inside a value, NUL and other binary bytes
(bytea columns), invalid UTF-8 and NUL in text, and a value longer than
the reader's 64 kB buffer.  pgpoly reaches it through a proxy that
forwards the client's bytes as they come and Redis' replies:

  * split in two at every byte boundary (k bytes, a pause, the rest) for
    a lookup and for the batched join, whose replies for several keys
    come pipelined in one read;
  * trickled in chunks of 1 to 7 bytes (a slow server) for a join over
    every key, a value longer than the 64 kB buffer included.

Every query must give the same bytes as the same query on a native copy
(md5 of the rows); a text value that is not valid UTF-8, or that holds a
NUL, must give the same SQLSTATE on the flat path (HGETALL, HMGET, SMEMBERS,
LRANGE) as on the object path (GET of a string table); the backend
survives and the PostgreSQL log shows no crash.
"""

import random
import socket
import threading
import time

import pgtest

check = pgtest.check


class SplitProxy:
    """A TCP proxy to a Redis at port: client bytes pass as they come, the
    server's are split as .mode says: ("split", k) sends the first k bytes
    of each read, pauses, then the rest; ("trickle", n) sends chunks of 1 to
    n bytes with a pause between; None passes them as they come."""

    def __init__(self, port):
        self.upstream = port
        self.mode = None
        self.rng = random.Random(7)
        self.lsock = pgtest.serve_tcp(self._serve)
        self.port = self.lsock.getsockname()[1]

    def _serve(self, c):
        up = socket.create_connection(("127.0.0.1", self.upstream))
        pgtest.tcp_nodelay(up)

        def pump_up():
            try:
                while True:
                    data = c.recv(65536)
                    if not data:
                        break
                    up.sendall(data)
            except OSError:
                pass
            try:
                up.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        threading.Thread(target=pump_up, daemon=True).start()
        try:
            while True:
                data = up.recv(65536)
                if not data:
                    break
                mode = self.mode
                if mode and mode[0] == "split" and 0 < mode[1] < len(data):
                    c.sendall(data[:mode[1]])
                    time.sleep(0.01)
                    c.sendall(data[mode[1]:])
                elif mode and mode[0] == "trickle":
                    i = 0
                    while i < len(data):
                        n = self.rng.randint(1, mode[1])
                        c.sendall(data[i:i + n])
                        i += n
                        if i < 4096 or i % 8192 < n:
                            time.sleep(0.0002)
                else:
                    c.sendall(data)
        except OSError:
            pass
        finally:
            c.close()
            up.close()


VALUES = [
    b"plain", b"a\rb", b"a\nb", b"a\r\nb", b"\r\n", b"\r", b"ends\r", b"",
    b"x\r\n$3\r\nabc\r\n", b"*2\r\n$-1\r\n", b"$-0\r\n", b"\xc3\xbcn\xc3\xafc",
]
BINARY = [b"\x00", b"a\x00b", b"\x00\r\n\x00", b"\xff\xfe\r", b"\r\n\x00\r",
          bytes(range(256))]


def test():
    mark = pgtest.pg_log_mark()
    port = pgtest.start_redis()
    cmds = []
    for i, v in enumerate(VALUES):
        cmds.append(["HSET", "fs:h:h%d" % i, "a", v, "b", str(len(v))])
    for i, v in enumerate(BINARY):
        cmds.append(["HSET", "fs:b:b%d" % i, "v", v, "n", str(i)])
    cmds.append(["HSET", "fs:h:big", "a", b"\r\n" * 50000 + b"\r",
                 "b", "100001"])
    # fields that look alike: only "a" is column a
    cmds.append(["HSET", "fs:h:dup", "a\x00", "nul", "a\r", "cr", "a", "A",
                 "a\r\n", "crlf", " a", "sp", "b", "7"])
    cmds.append(["HSET", "fs:h:onlyb", "b", "3"])
    cmds.append(["SADD", "fs:s:s"] + VALUES)
    cmds.append(["RPUSH", "fs:l:l"] + VALUES + [b"z" * 70000])
    # text that is no UTF-8, and text holding a NUL: same key in each type
    for name, v in (("bad", b"a\xffb"), ("nul", b"a\x00b")):
        cmds.append(["SET", "fs:t:" + name, v])
        cmds.append(["HSET", "fs:h:" + name, "a", v, "b", "1"])
        cmds.append(["SADD", "fs:s:" + name, v])
        cmds.append(["RPUSH", "fs:l:" + name, v])
    replies = pgtest.redis_pipeline(port, cmds)
    check(not any(isinstance(x, pgtest.RedisError) for x in replies),
          "loading Redis failed: %r" % replies)

    proxy = SplitProxy(port)
    db = pgtest.create_db("pgpoly_redis_flat_split")
    native_h = ", ".join("('h%d', '\\x%s'::bytea, %d)" % (i, v.hex(), len(v))
                         for i, v in enumerate(VALUES))
    native_b = ", ".join("('b%d', '\\x%s'::bytea, %d)" % (i, v.hex(), i)
                         for i, v in enumerate(BINARY))
    native_m = ", ".join("('\\x%s'::bytea)" % v.hex() for v in VALUES)
    r = pgtest.psql("""
        CREATE SERVER rfs FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d', timeout_ms '20000');
        CREATE FOREIGN TABLE h (key text, a bytea, b int) SERVER rfs
            OPTIONS (table_type 'hash', key_prefix 'fs:h:');
        CREATE FOREIGN TABLE ht (key text, a text, b int) SERVER rfs
            OPTIONS (table_type 'hash', key_prefix 'fs:h:');
        CREATE FOREIGN TABLE hb (key text, v bytea, n int) SERVER rfs
            OPTIONS (table_type 'hash', key_prefix 'fs:b:');
        CREATE FOREIGN TABLE hx (key text, a bytea, _ttl int) SERVER rfs
            OPTIONS (table_type 'hash', key_prefix 'fs:h:');
        CREATE FOREIGN TABLE st (key text, member text) SERVER rfs
            OPTIONS (table_type 'set', key_prefix 'fs:s:');
        CREATE FOREIGN TABLE sb (key text, member bytea) SERVER rfs
            OPTIONS (table_type 'set', key_prefix 'fs:s:');
        CREATE FOREIGN TABLE lt (key text, idx int, value text) SERVER rfs
            OPTIONS (table_type 'list', key_prefix 'fs:l:');
        CREATE FOREIGN TABLE lb (key text, idx int, value bytea) SERVER rfs
            OPTIONS (table_type 'list', key_prefix 'fs:l:');
        CREATE FOREIGN TABLE tt (key text, value text) SERVER rfs
            OPTIONS (table_type 'string', key_prefix 'fs:t:');
        CREATE TABLE h_native (key text, a bytea, b int);
        INSERT INTO h_native VALUES %s;
        INSERT INTO h_native VALUES ('big', convert_to(repeat(E'\\r\\n', 50000) || E'\\r', 'UTF8'), 100001);
        CREATE TABLE b_native (key text, v bytea, n int);
        INSERT INTO b_native VALUES %s;
        CREATE TABLE m_native (member bytea);
        INSERT INTO m_native VALUES %s;
        CREATE TABLE keys (k text);
        INSERT INTO keys SELECT key FROM h_native UNION ALL SELECT key FROM b_native
            UNION ALL VALUES ('missing');
        ANALYZE keys;
    """ % (proxy.port, native_h, native_b, native_m), db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return

    s = pgtest.Session(db)
    pid = int(s.value("SELECT pg_backend_pid();"))
    digest = "SELECT md5(string_agg(x::text, ',' ORDER BY x::text)) FROM (%s) x;"
    queries = [
        # name, foreign query, native query
        ("hash join", "SELECT h.* FROM keys JOIN h ON h.key = keys.k",
         "SELECT h.* FROM keys JOIN h_native h ON h.key = keys.k"),
        ("binary join", "SELECT hb.* FROM keys JOIN hb ON hb.key = keys.k",
         "SELECT hb.* FROM keys JOIN b_native hb ON hb.key = keys.k"),
        ("field join", "SELECT keys.k, h.a FROM keys LEFT JOIN h ON h.key = keys.k",
         "SELECT keys.k, h.a FROM keys LEFT JOIN h_native h ON h.key = keys.k"),
        ("set", "SELECT member FROM sb WHERE key = 's'", "SELECT member FROM m_native"),
        ("list", "SELECT value FROM lb WHERE key = 'l' AND idx < %d" % len(VALUES),
         "SELECT member FROM m_native"),
    ]
    want = {}
    for name, _, nat in queries:
        want[name] = s.value(digest % nat)
    plan = s.run("EXPLAIN (COSTS OFF) SELECT h.* FROM keys JOIN h ON h.key = keys.k;")
    check(plan.rc == 0 and "Batched Join" in plan.out,
          "the hash join is not a batched join: %s %s" % (plan.out, plan.err))

    def same(mode, names=None):
        proxy.mode = mode
        try:
            for name, q, _ in queries:
                if names and name not in names:
                    continue
                r = s.run(digest % q, timeout=120)
                check(r.rc == 0 and r.out.strip() == want[name],
                      "%s via proxy %s: got rc=%s out=%r err=%s, want %s"
                      % (name, mode, r.rc, r.out.strip(), r.err.strip(), want[name]))
        finally:
            proxy.mode = None

    same(None)
    # every split point of a lookup's reply and of two pipelined replies
    lookup = "SELECT encode(a, 'hex') || b FROM h WHERE key = 'h3';"
    pair = ("SELECT string_agg(encode(h.a, 'hex') || h.b, ',' ORDER BY keys.k) FROM "
            "(VALUES ('h3'), ('h8')) keys(k) JOIN h ON h.key = keys.k;")
    want_lookup = VALUES[3].hex() + "4"
    want_pair = "%s4,%s%d" % (VALUES[3].hex(), VALUES[8].hex(), len(VALUES[8]))
    # with _ttl: each HGETALL followed by its TTL in the same read
    ttl = "SELECT encode(a, 'hex') || _ttl FROM hx WHERE key = 'h3';"
    want_ttl = VALUES[3].hex() + "-1"
    for k in range(1, 120):
        proxy.mode = ("split", k)
        for sql, w in ((lookup, want_lookup), (pair, want_pair), (ttl, want_ttl)):
            r = s.run(sql, timeout=30)
            check(r.rc == 0 and r.out.strip() == w,
                  "split at %d: %s gave rc=%s out=%r err=%s"
                  % (k, sql, r.rc, r.out.strip(), r.err.strip()))
        proxy.mode = None
    same(("trickle", 7))
    same(("trickle", 1), names=("binary join", "set"))

    # fields that look alike, by a lookup and by a join (HGETALL), and by
    # the fields fetched alone (HMGET: the join reading a and b only, with
    # keys whose fields are missing)
    for sql in ("SELECT a, b FROM ht WHERE key = 'dup';",
                "SELECT ht.a, ht.b FROM (VALUES ('dup')) k(k) JOIN ht ON ht.key = k.k;"):
        r = s.run(sql)
        check(r.rc == 0 and r.out.strip() == "A|7",
              "%s: got rc=%s out=%r err=%s" % (sql, r.rc, r.out, r.err.strip()))
    r = s.run("SELECT string_agg(k.k || '=' || coalesce(ht.a, 'null') || '/' || "
              "coalesce(ht.b::text, 'null'), ',' ORDER BY k.k) FROM "
              "(VALUES ('dup'), ('missing'), ('onlyb'), ('h0')) k(k) "
              "LEFT JOIN ht ON ht.key = k.k;")
    check(r.rc == 0 and r.out.strip() == "dup=A/7,h0=plain/5,missing=null/null,onlyb=null/3",
          "HMGET-style left join: got rc=%s out=%r err=%s" % (r.rc, r.out, r.err.strip()))

    # invalid UTF-8 and NUL in text: the flat path's SQLSTATE is GET's
    for name in ("bad", "nul"):
        ref = s.run("SELECT value FROM tt WHERE key = '%s';" % name)
        check(ref.rc == 1 and ref.sqlstate,
              "GET of %s text did not fail: %s %s" % (name, ref.out, ref.err))
        for sql in ("SELECT a FROM ht WHERE key = '%s';",
                    "SELECT ht.a FROM (VALUES ('%s'), ('h0')) k(k) JOIN ht ON ht.key = k.k;",
                    "SELECT member FROM st WHERE key = '%s';",
                    "SELECT value FROM lt WHERE key = '%s';"):
            r = s.run(sql % name)
            check(r.rc == 1 and r.sqlstate == ref.sqlstate,
                  "%s: want SQLSTATE %s as GET's, got rc=%s sqlstate=%s: %s"
                  % (sql % name, ref.sqlstate, r.rc, r.sqlstate, r.err.strip()))
    check(int(s.value("SELECT pg_backend_pid();")) == pid,
          "the backend changed (it died?)")
    s.close()
    proxy.lsock.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
