#!/usr/bin/env python3
"""A hostile Redis: replies built to break the RESP reader, the memory
bound and the request/reply pairing.

A small stdlib RESP server (HostileRedis below) holds known data (string
keys k:good, k:two; a hash h:good) and answers GET, HGETALL, HMGET, TTL,
TYPE and SCAN like Redis, records the writes SET and DEL without applying them, except for one command at a time, which it answers with a
one-shot hostile reply:

  * huge_array   -- "*134217727" (a 1 GB element array announced in 13 bytes)
  * nested_array -- "*1 / *100000 / *100000" with max_response_size 1MB:
                    each level is charged before it is allocated
  * huge_bulk    -- "$2000000000" then megabytes of data, max_response_size 1MB
  * extra        -- the right reply plus an unsolicited one in the same write
  * late_extra   -- the right reply, then an unsolicited one after the
                    statement ended (seen when the next request starts)
  * wrong types  -- GET answered by an integer, HGETALL by a string, TTL by
                    a string, SCAN by a status, HMGET (the batched join's
                    fetch of the fields read) by a string, by an array of
                    one value too few and by an array holding an integer
  * UNWATCH      -- (sent ahead of the next command after a transaction
                    that read FOR UPDATE and wrote nothing) answered by
                    +QUEUED, by an error, not at all (the GET's reply
                    comes first), half and then a close, or by silence
  * scan_nul     -- SCAN returns keys holding NUL bytes
  * scan_utf8    -- SCAN returns a key that is not valid UTF-8 (read with
                    its value, and alone)
  * scan_foreign -- SCAN returns a key outside the MATCH pattern
  * cursor_00, cursor_2_64 -- SCAN returns the cursor "00" (sent back, it
                    would never be the "0" that ends the scan) or 2^64: no
                    unsigned 64-bit decimal as Redis writes one
  * cursor_cycle, cursor_cycle3 -- SCAN returns the cursor 7 for ever, or
                    7, 12, 9, 7, 12, 9 ...: the scan would never end (the
                    server keeps it up for 200 SCANs)
  * scan_dup     -- SCAN returns every key two or three times, under an
                    UPDATE or DELETE that runs as a direct modification
                    (keys only, write_mode 'immediate'): each key is
                    written once and counted once (and scan_utf8 fails a
                    direct DELETE before any write)
  * neg_zero     -- a bulk string of length "-0" (an empty string: the
                    reader measures it so), as GET's reply, as a value
                    of HGETALL's array (one element among others) and of
                    HMGET's: read as '' like "$0", never as an array
  * truncated    -- half a bulk string, then the connection closes
  * flat arrays  -- a key's fetch reply that is an array of bulk strings
                    only is built flat (redis_resp.c build_flat), by a
                    key lookup and by the batched join: answered by an
                    odd number of strings, by an array holding a nil, with
                    counts and lengths padded with zeros, with values
                    holding CR, LF and CRLF, cut off in the middle, and by
                    WRONGTYPE
  * garbage      -- bytes that are no RESP at all
  * auth_echo    -- AUTH refused with an error quoting the password sent
  * error_echo   -- GET answered by an error quoting that password, and
                    SCAN by a key that is that password (server
                    "hostile_auth", whose user mapping has a password)

After each: the statement fails with the right SQLSTATE (54000 for the
memory bound, 08P01 for protocol violations, 22021 for keys that cannot be
text, class 08 for the close), quickly; the backend is the same process; its
peak memory (VmHWM) grew by far less than what the reply announced; the next
statements return the known data (compared with what the server holds), so
no reply was ever taken for another command's.  For NUL keys the server
checks it was asked for exactly the bytes SCAN gave (no over-read: the old
code sent backend memory after a NUL).  A password the server echoes is
masked in every message and never reaches the PostgreSQL log.  No crash in
the PostgreSQL log.
"""

import os
import threading
import time

import pgtest

check = pgtest.check

SECRET = "resp-hunter2-secret"

# HGETALL answered by an array of bulk strings one of whose headers or
# lengths is wrong (the flat path's first pass must refuse them as the
# objects' did): mode -> (reply, words of the error's detail)
BAD_FLAT = {
    "len_plus": (b"*4\r\n$1\r\na\r\n$+1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n",
                 "bad bulk string length"),
    "len_space": (b"*4\r\n$1\r\na\r\n$ 1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n",
                  "bad bulk string length"),
    "len_trailing": (b"*4\r\n$1\r\na\r\n$1 \r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n",
                     "bad bulk string length"),
    "len_minus2": (b"*4\r\n$1\r\na\r\n$-2\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n",
                   "bad bulk string length"),
    "count_minus2": (b"*-2\r\n", "bad array length"),
    "len_short": (b"*4\r\n$1\r\na\r\n$2\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n",
                  "not terminated by CRLF"),
    "len_long": (b"*4\r\n$1\r\na\r\n$0\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n",
                 "not terminated by CRLF"),
    "cr_only": (b"*2\r\n$1\r\na\r\n$1\r\n1\r\r", "not terminated by CRLF"),
}


def bulk(b):
    """RESP bulk string of bytes b (None: nil)."""
    if b is None:
        return b"$-1\r\n"
    return b"$%d\r\n%s\r\n" % (len(b), b)


def array(items):
    """RESP array of bulk strings."""
    return b"*%d\r\n" % len(items) + b"".join(bulk(i) for i in items)


class Conn:
    """A buffered reader of RESP commands (arrays of bulk strings)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _need(self, n):
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            self._need(len(self.buf) + 1)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def command(self):
        """The next command as a list of bytes."""
        head = self._line()
        if not head.startswith(b"*"):
            raise ValueError("not a RESP array: %r" % head)
        args = []
        for _ in range(int(head[1:])):
            n = int(self._line()[1:])
            self._need(n + 2)
            args.append(self.buf[:n])
            self.buf = self.buf[n + 2:]
        return args


class HostileRedis:
    """A threaded RESP server on 127.0.0.1 with one-shot hostile replies."""

    def __init__(self):
        self.strings = {b"k:good": b"hello", b"k:two": b"world"}
        self.hashes = {b"h:good": {b"a": b"1", b"b": b"2"}}
        # Values of the keys only the hostile SCANs return.
        self.hidden = {b"k:a\x00b": b"v1", b"k:a\x00c": b"v2",
                       b"k:\xff\xfe": b"v3"}
        self.lock = threading.Lock()
        self.mode = None          # (command name, hostile mode), one shot
        self.cycled = 0           # SCANs answered by the armed cursor cycle
        self.scan_keys = None     # keys the hostile SCAN returns
        self.gets = []            # keys of every GET received
        self.writes = []          # (command, key) of every SET and DEL
        self.late_sent = threading.Event()
        self.password = None      # the last AUTH password received
        self.sock = pgtest.serve_tcp(self._serve)
        self.port = self.sock.getsockname()[1]

    def arm(self, command, mode, scan_keys=None):
        """Answer the next `command` (e.g. b"GET") the hostile way `mode`."""
        with self.lock:
            self.mode = (command, mode)
            self.scan_keys = scan_keys
            self.cycled = 0
            self.late_sent.clear()

    def disarm(self):
        """Answer every command like Redis again."""
        with self.lock:
            self.mode = None

    def _take(self, name):
        """The armed mode if it is for command name (disarming it), or None."""
        with self.lock:
            if self.mode and self.mode[0] == name:
                mode, self.mode = self.mode[1], None
                return mode
        return None

    def _serve(self, c):
        conn = Conn(c)
        try:
            while True:
                cmd = conn.command()
                if not self._answer(c, cmd):
                    break
        except (EOFError, OSError, ValueError):
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def _normal(self, cmd):
        """What Redis would answer."""
        name = cmd[0].upper()
        if name == b"GET":
            with self.lock:
                self.gets.append(cmd[1])
            return bulk(self.strings.get(cmd[1], self.hidden.get(cmd[1])))
        if name == b"HGETALL":
            h = self.hashes.get(cmd[1], {})
            return array([x for kv in sorted(h.items()) for x in kv])
        if name == b"HMGET":
            h = self.hashes.get(cmd[1], {})
            return array([h.get(f) for f in cmd[2:]])
        if name == b"TTL":
            return b":-1\r\n"
        if name == b"TYPE":
            return b"+string\r\n" if cmd[1] in self.strings else \
                b"+hash\r\n" if cmd[1] in self.hashes else b"+none\r\n"
        if name in (b"SET", b"DEL"):
            with self.lock:
                self.writes.append((name, cmd[1]))
            return b"+OK\r\n" if name == b"SET" else b":1\r\n"
        if name == b"SCAN":
            prefix = cmd[3].rstrip(b"*").replace(b"\\", b"")
            typ = cmd[7] if len(cmd) > 7 else b"string"
            src = self.hashes if typ == b"hash" else self.strings
            keys = self.scan_keys if self.scan_keys is not None else \
                sorted(k for k in src if k.startswith(prefix))
            self.scan_keys = None
            return b"*2\r\n" + bulk(b"0") + array(keys)
        if name == b"PING":
            return b"+PONG\r\n"
        if name in (b"WATCH", b"UNWATCH"):
            return b"+OK\r\n"
        if name == b"AUTH":
            with self.lock:
                self.password = cmd[-1]
            return b"+OK\r\n"
        return b"-ERR unknown command\r\n"

    def _answer(self, c, cmd):
        """Send the reply to cmd; False to close the connection."""
        name = cmd[0].upper()
        mode = self._take(name)
        if mode is None or mode in ("scan_nul", "scan_utf8", "scan_foreign",
                                    "scan_dup"):
            if mode is not None:
                with self.lock:
                    self.scan_keys = {
                        "scan_nul": [b"k:a\x00b", b"k:a\x00c"],
                        "scan_utf8": [b"k:\xff\xfe"],
                        "scan_foreign": [b"other:1"],
                        "scan_dup": [b"k:good", b"k:two", b"k:good",
                                     b"k:two", b"k:good"]}[mode]
            c.sendall(self._normal(cmd))
            return True
        if mode == "huge_array":
            c.sendall(b"*134217727\r\n")
        elif mode == "nested_array":
            c.sendall(b"*1\r\n*100000\r\n*100000\r\n")
        elif mode == "huge_bulk":
            c.sendall(b"$2000000000\r\n")
            chunk = b"x" * 65536
            for _ in range(300):      # ~20 MB, far over the 1 MB bound
                c.sendall(chunk)
        elif mode == "extra":
            c.sendall(self._normal(cmd) + bulk(b"extra"))
        elif mode == "late_extra":
            c.sendall(self._normal(cmd))
            time.sleep(0.3)
            c.sendall(bulk(b"late"))
            self.late_sent.set()
        elif mode == "wrong_int":
            c.sendall(b":5\r\n")
        elif mode == "wrong_string":
            c.sendall(bulk(b"abc"))
        elif mode == "wrong_status":
            c.sendall(b"+OK\r\n")
        elif mode == "queued":
            c.sendall(b"+QUEUED\r\n")
        elif mode == "error_reply":
            c.sendall(b"-ERR not now\r\n")
        elif mode == "no_reply":
            pass
        elif mode == "hang":
            time.sleep(5)
            return False
        elif mode == "short_array":
            c.sendall(array([b"1"] * (len(cmd) - 3)))
        elif mode == "int_element":
            c.sendall(b"*%d\r\n" % (len(cmd) - 2) + b":7\r\n" * (len(cmd) - 2))
        elif mode == "neg_zero" and name == b"GET":
            c.sendall(b"$-0\r\n\r\n")
        elif mode == "neg_zero" and name == b"HGETALL":
            c.sendall(b"*4\r\n$1\r\na\r\n$-00\r\n\r\n$1\r\nb\r\n$1\r\n2\r\n")
        elif mode == "neg_zero" and name == b"HMGET":
            c.sendall(b"*%d\r\n" % (len(cmd) - 2) + b"$-0\r\n\r\n" * (len(cmd) - 2))
        elif mode == "odd_array":
            c.sendall(array([b"a", b"1", b"b"]))
        elif mode == "nil_element":
            c.sendall(array([b"a", b"1", b"b", None]))
        elif mode == "padded":
            c.sendall(b"*0000000000000000004\r\n" + b"".join(
                b"$%019d\r\n%s\r\n" % (len(x), x) for x in (b"a", b"1", b"b", b"2")))
        elif mode == "crlf_values":
            c.sendall(array([b"a", b"x\r\ny", b"b", b"\r\n\r"]))
        elif mode == "truncated_array":
            c.sendall(b"*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1")
            return False
        elif mode in BAD_FLAT:
            c.sendall(BAD_FLAT[mode][0])
        elif mode == "wrongtype":
            c.sendall(b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n")
        elif mode == "truncated":
            c.sendall(b"$10\r\nabc")
            return False
        elif mode == "garbage":
            c.sendall(b"?what is this\r\n")
        elif mode == "auth_echo":
            c.sendall(b"-WRONGPASS you sent " + b" ".join(cmd[1:]) + b"\r\n")
        elif mode == "error_echo":
            c.sendall(b"-ERR " + cmd[1] + b" and your password " +
                      (self.password or b"?") + b"\r\n")
        elif mode in ("cursor_00", "cursor_2_64"):
            cursor = b"00" if mode == "cursor_00" else b"18446744073709551616"
            c.sendall(b"*2\r\n" + bulk(cursor) + array([b"k:good"]))
        elif mode in ("cursor_cycle", "cursor_cycle3"):
            cycle = [b"7"] if mode == "cursor_cycle" else [b"7", b"12", b"9"]
            with self.lock:
                n = self.cycled
                self.cycled += 1
                if self.cycled < 200:
                    self.mode = (name, mode)      # still armed
            c.sendall(b"*2\r\n" + bulk(cycle[n % len(cycle)]) +
                      array([b"k:good"]))
        elif mode == "scan_password":
            c.sendall(b"*2\r\n" + bulk(b"0") + array([self.password or b"?"]))
        else:
            raise ValueError(mode)
        return True


def test():
    mark = pgtest.pg_log_mark()
    srv = HostileRedis()
    db = pgtest.create_db("pgpoly_hostile_resp")
    r = pgtest.psql("""
        CREATE SERVER hostile FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d', timeout_ms '3000');
        CREATE FOREIGN TABLE t (key text, value text) SERVER hostile
            OPTIONS (table_type 'string', key_prefix 'k:');
        CREATE FOREIGN TABLE tt (key text, value text, _ttl int) SERVER hostile
            OPTIONS (table_type 'string', key_prefix 'k:');
        CREATE FOREIGN TABLE h (key text, a int, b int) SERVER hostile
            OPTIONS (table_type 'hash', key_prefix 'h:');
        CREATE FOREIGN TABLE ht (key text, a text, b text) SERVER hostile
            OPTIONS (table_type 'hash', key_prefix 'h:');
        CREATE TABLE hl (k text);
        INSERT INTO hl VALUES ('good'), ('none');
        ANALYZE hl;
        CREATE FOREIGN TABLE tw (key text, value text) SERVER hostile
            OPTIONS (table_type 'string', key_prefix 'k:',
                     write_mode 'immediate');
        CREATE SERVER hostile_auth FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d', timeout_ms '3000');
        CREATE USER MAPPING FOR CURRENT_USER SERVER hostile_auth
            OPTIONS (user 'alice', password '%s');
        CREATE FOREIGN TABLE ta (key text, value text) SERVER hostile_auth
            OPTIONS (table_type 'string', key_prefix 'k:');
    """ % (srv.port, srv.port, SECRET), db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return

    s = pgtest.Session(db)
    pid = int(s.value("SELECT pg_backend_pid();"))

    def healthy(after):
        """The session answers with the server's known data."""
        r = s.run("SELECT key, value FROM t ORDER BY key;")
        check(r.rc == 0 and r.out.split() == ["good|hello", "two|world"],
              "after %s: full scan gave rc=%s out=%r err=%s"
              % (after, r.rc, r.out, r.err.strip()))
        r = s.run("SELECT value FROM t WHERE key = 'two';")
        check(r.rc == 0 and r.out.strip() == "world",
              "after %s: key lookup gave rc=%s out=%r err=%s"
              % (after, r.rc, r.out, r.err.strip()))
        r = s.run("SELECT a + b FROM h WHERE key = 'good';")
        check(r.rc == 0 and r.out.strip() == "3",
              "after %s: hash lookup gave rc=%s out=%r err=%s"
              % (after, r.rc, r.out, r.err.strip()))

    def expect(name, command, mode, sql, state, words=(), limit=None,
               max_growth_kb=32 * 1024):
        """Arm mode, run sql, check the error, the backend and later reads."""
        if limit:
            s.value("SET pgpoly.max_response_size = '%s';" % limit)
        if command is not None:
            srv.arm(command, mode)
        hwm = pgtest.proc_status_kb(pid, "VmHWM")
        r = s.run(sql, timeout=30)
        srv.disarm()
        grew = (pgtest.proc_status_kb(pid, "VmHWM") or 0) - (hwm or 0)
        ok = r.rc == 1 and r.sqlstate is not None and \
            r.sqlstate.startswith(state) and \
            ('"hostile"' in r.err or state == "22021")
        check(ok and all(w in r.err for w in words),
              "%s: %s want SQLSTATE %s naming the server (or table) and %s; got rc=%s "
              "sqlstate=%s: %s" % (name, sql, state, list(words), r.rc,
                                   r.sqlstate, r.err.strip()))
        check(r.elapsed < 10, "%s took %.1f s" % (name, r.elapsed))
        check(grew < max_growth_kb, "%s: the backend's peak memory grew by "
              "%d kB" % (name, grew))
        print("note: %s: %s (VmHWM +%d kB)" % (
            name, (r.err.strip().splitlines() or ["no error"])[0], grew))
        if limit:
            s.value("RESET pgpoly.max_response_size;")
        check(s.value("SELECT pg_backend_pid();") == str(pid),
              "%s: the backend changed (it died?)" % name)
        healthy(name)

    healthy("start")

    # Memory bound: counted before allocating, over the whole request.
    expect("huge array", b"GET", "huge_array",
           "SELECT value FROM t WHERE key = 'good';", "54000",
           ["pgpoly.max_response_size"])
    expect("nested arrays", b"GET", "nested_array",
           "SELECT value FROM t WHERE key = 'good';", "54000",
           ["pgpoly.max_response_size"], limit="1MB")
    expect("huge bulk", b"GET", "huge_bulk",
           "SELECT value FROM t WHERE key = 'good';", "54000",
           ["pgpoly.max_response_size"], limit="1MB")

    # Replies and commands stay paired.
    expect("extra reply", b"GET", "extra",
           "SELECT value FROM t WHERE key = 'good';", "08P01",
           ["more replies than commands"])
    srv.arm(b"GET", "late_extra")
    r = s.run("SELECT value FROM t WHERE key = 'good';")
    check(r.rc == 0 and r.out.strip() == "hello",
          "late extra: the statement itself gave rc=%s out=%r err=%s"
          % (r.rc, r.out, r.err.strip()))
    check(srv.late_sent.wait(10), "the server did not send the late reply")
    expect("late extra reply", None, None,
           "SELECT value FROM t WHERE key = 'two';", "08P01",
           ["no request was pending"])

    expect("GET answered by an integer", b"GET", "wrong_int",
           "SELECT value FROM t WHERE key = 'good';", "08P01",
           ["GET", "the integer 5"])
    expect("HGETALL answered by a string", b"HGETALL", "wrong_string",
           "SELECT a FROM h WHERE key = 'good';", "08P01", ["HGETALL"])
    expect("TTL answered by a string", b"TTL", "wrong_string",
           "SELECT _ttl FROM tt WHERE key = 'good';", "08P01", ["TTL"])
    expect("SCAN answered by a status", b"SCAN", "wrong_status",
           "SELECT count(*) FROM t;", "08P01", ["SCAN"])
    # The batched left join reading fields alone fetches them by HMGET.
    hmget = "SELECT hl.k, h.a, h.b FROM hl LEFT JOIN h ON h.key = hl.k ORDER BY 1;"
    r = s.run("EXPLAIN (COSTS OFF) " + hmget)
    check(r.rc == 0 and "HMGET h:{key}" in r.out,
          "the join does not fetch by HMGET: %s %s" % (r.out, r.err))
    r = s.run(hmget)
    check(r.rc == 0 and r.out.split() == ["good|1|2", "none||"],
          "the HMGET join gave rc=%s out=%r err=%s" % (r.rc, r.out, r.err.strip()))
    expect("HMGET answered by a string", b"HMGET", "wrong_string", hmget,
           "08P01", ["HMGET"])
    expect("HMGET answered by one value too few", b"HMGET", "short_array", hmget,
           "08P01", ["HMGET", "2 fields asked"])
    expect("HMGET answered by integers", b"HMGET", "int_element", hmget,
           "08P01", ["HMGET", "no string"])

    # "$-0" is a bulk string of length 0 (the reader measures it so): an
    # empty string wherever it comes, as "$0" would be.
    for sql, want in (("SELECT value = '' FROM t WHERE key = 'good';", ["t"]),
                      ("SELECT a = '', b FROM ht WHERE key = 'good';", ["t|2"]),
                      ("SELECT hl.k, ht.a = '', ht.b = '' FROM hl LEFT JOIN ht "
                       "ON ht.key = hl.k ORDER BY 1;", ["good|t|t", "none||"])):
        srv.arm(sql.split()[1] == "value" and b"GET" or
                "JOIN" in sql and b"HMGET" or b"HGETALL", "neg_zero")
        r = s.run(sql)
        srv.disarm()
        check(r.rc == 0 and r.out.split() == want,
              "%s with \"$-0\": want %r, got rc=%s out=%r err=%s"
              % (sql, want, r.rc, r.out, r.err.strip()))
        check(s.value("SELECT pg_backend_pid();") == str(pid),
              "\"$-0\": the backend changed (it died?)")
        healthy("$-0")

    # A key's fetch reply that is an array of bulk strings is built flat,
    # without an object per element, by a lookup and by the batched join
    # (its rounds read as the rows are joined): checked as the objects are.
    join = "SELECT hl.k, ht.a, ht.b FROM hl JOIN ht ON ht.key = hl.k ORDER BY 1;"
    r = s.run("EXPLAIN (COSTS OFF) " + join)
    check(r.rc == 0 and "Redis Batched Join" in r.out and "HGETALL" in r.out,
          "the inner join is not a batched HGETALL join: %s %s" % (r.out, r.err))
    lookup = "SELECT a, b FROM ht WHERE key = 'good';"
    for sql in (lookup, join):
        expect("HGETALL answered by an odd number of strings", b"HGETALL",
               "odd_array", sql, "08P01", ["HGETALL", "an odd number of elements (3)"])
        expect("HGETALL answered by an array holding a nil", b"HGETALL",
               "nil_element", sql, "08P01", ["HGETALL", "no string", "a nil reply"])
        expect("HGETALL cut off in its array", b"HGETALL", "truncated_array",
               sql, "08")
        for mode, (_, words) in BAD_FLAT.items():
            expect("HGETALL answered %s" % mode, b"HGETALL", mode, sql, "08P01",
                   ["malformed reply", words])
        srv.arm(b"HGETALL", "wrongtype")
        r = s.run(sql)
        srv.disarm()
        check(r.rc == 1 and r.sqlstate == "HV004" and '"h:good"' in r.err and
              "WRONGTYPE" in r.err,
              "%s with HGETALL answered by WRONGTYPE: want HV004 naming the key, "
              "got rc=%s sqlstate=%s: %s" % (sql, r.rc, r.sqlstate, r.err.strip()))
        healthy("WRONGTYPE")
        for mode, want in (("padded", ["1", "2"]),
                           ("crlf_values", ["x\r\ny", "\r\n\r"])):
            srv.arm(b"HGETALL", mode)
            r = s.run("SELECT " + ("k, " if sql == join else "") +
                      "a = E'%s', b = E'%s', length(a) + length(b) FROM (%s) q;"
                      % (want[0], want[1], sql.rstrip(";")))
            srv.disarm()
            got = r.out.split()
            check(r.rc == 0 and got and got[0].endswith("t|t|%d" % (
                len(want[0].encode().decode("unicode_escape")) +
                len(want[1].encode().decode("unicode_escape")))),
                  "%s with HGETALL %s: got rc=%s out=%r err=%s"
                  % (sql, mode, r.rc, r.out, r.err.strip()))
            healthy(mode)

    # A cursor that is not Redis' own, or that comes round again, would
    # make the scan loop for ever: an error naming the server and the node.
    for mode, sql in (("cursor_00", "SELECT count(*) FROM t;"),
                      ("cursor_2_64", "SELECT key, value FROM t;")):
        expect("SCAN cursor " + mode, b"SCAN", mode, sql, "08P01",
               ["SCAN", "no unsigned 64-bit decimal number"])
    for mode, sql in (("cursor_cycle", "SELECT count(*) FROM t;"),
                      ("cursor_cycle3", "SELECT key, value FROM t;")):
        expect("SCAN " + mode, b"SCAN", mode, sql, "08P01",
               ["SCAN", "was returned before in this scan of node 127.0.0.1:%d"
                % srv.port])
        check(srv.cycled <= 12, "%s: %d SCANs before the error"
              % (mode, srv.cycled))

    # Keys that cannot be text are errors naming the key, never dropped.
    del srv.gets[:]
    expect("SCAN key with NUL bytes", b"SCAN", "scan_nul",
           "SELECT key, value FROM t;", "22021",
           ['"k:a\\x00b"', 'foreign table "t"'])
    check(b"k:a\x00b" in srv.gets and b"k:a\x00c" in srv.gets,
          "GET was not sent for exactly the SCAN keys with NUL bytes "
          "(both distinct): %r" % srv.gets[:10])
    check(all(g in (b"k:a\x00b", b"k:a\x00c", b"k:good", b"k:two")
              for g in srv.gets),
          "pgpoly sent keys SCAN never gave: %r" % srv.gets)
    expect("SCAN key with invalid UTF-8", b"SCAN", "scan_utf8",
           "SELECT key, value FROM t;", "22021",
           ['"k:\\xff\\xfe"', 'foreign table "t"'])
    expect("SCAN key with invalid UTF-8, keys only", b"SCAN", "scan_utf8",
           "SELECT key FROM t;", "22021",
           ['"k:\\xff\\xfe"', 'foreign table "t"'])
    expect("SCAN key outside the pattern", b"SCAN", "scan_foreign",
           "SELECT key, value FROM t;", "08P01", ["other:1"])

    # Direct modification: keys only, so SCAN's keys are the rows; a key
    # SCAN returns again (Redis may) is neither written nor counted twice.
    def direct(sql, mode, tag, writes):
        r = s.run("EXPLAIN (COSTS OFF) %s" % sql)
        check(r.rc == 0 and ("Foreign Update" in r.out or
                             "Foreign Delete" in r.out),
              "%s: not a direct modification: %s %s" % (sql, r.out, r.err))
        with srv.lock:
            del srv.writes[:]
        if mode:
            srv.arm(b"SCAN", mode)
        r = s.run("\\set QUIET off\n%s\n\\set QUIET on" % sql)
        with srv.lock:
            got = sorted(srv.writes)
        check(r.rc == 0 and r.out.strip() == tag,
              "%s with %s: want %s, got rc=%s out=%r err=%s"
              % (sql, mode, tag, r.rc, r.out, r.err.strip()))
        check(got == sorted(writes),
              "%s with %s: want the writes %r, got %r" % (sql, mode, writes, got))
        healthy(sql)

    direct("DELETE FROM tw;", "scan_dup", "DELETE 2",
           [(b"DEL", b"k:good"), (b"DEL", b"k:two")])
    direct("UPDATE tw SET value = 'x';", "scan_dup", "UPDATE 2",
           [(b"SET", b"k:good"), (b"SET", b"k:two")])
    direct("DELETE FROM tw WHERE key IN ('good', 'good', 'two', 'nope');", None,
           "DELETE 2", [(b"DEL", b"k:good"), (b"DEL", b"k:two")])
    # A key that cannot be text fails the direct path too, before any write.
    with srv.lock:
        del srv.writes[:]
    expect("direct DELETE over a SCAN key with invalid UTF-8", b"SCAN",
           "scan_utf8", "DELETE FROM tw;", "22021",
           ['"k:\\xff\\xfe"', 'foreign table "tw"'])
    check(srv.writes == [], "a direct DELETE that failed wrote %r" % srv.writes)

    # A transaction that read FOR UPDATE and wrote nothing leaves its
    # WATCH to the UNWATCH sent ahead of the connection's next command:
    # any answer but OK to it is 08P01 (class 08 for a close or silence),
    # the connection is not used again, and the next statements read right.
    for mode, state, words in (
            ("queued", "08P01", ["UNWATCH", 'the status "QUEUED"']),
            ("error_reply", "08P01", ["UNWATCH", "not now"]),
            ("no_reply", "08P01", ["UNWATCH", "a string of 5 bytes"]),
            ("truncated", "08", ["closed the connection"]),
            ("hang", "08", ["did not answer within 3000 ms"])):
        r = s.run("BEGIN; SELECT value FROM t WHERE key = 'good' FOR UPDATE; ROLLBACK;")
        check(r.rc == 0 and r.out.strip() == "hello",
              "FOR UPDATE before UNWATCH %s: rc=%s out=%r err=%s"
              % (mode, r.rc, r.out, r.err.strip()))
        expect("UNWATCH answered " + mode, b"UNWATCH", mode,
               "SELECT value FROM t WHERE key = 'two';", state, words)

    expect("truncated reply", b"GET", "truncated",
           "SELECT value FROM t WHERE key = 'good';", "08",
           ["closed the connection"])
    expect("garbage", b"GET", "garbage",
           "SELECT value FROM t WHERE key = 'good';", "08P01",
           ["malformed reply"])

    # A password the store echoes never appears in a message (nor, through
    # the message, in the log): refused AUTH, an error reply, a SCAN key.
    def masked(name, command, mode, sql, state):
        srv.arm(command, mode)
        r = s.run(sql, timeout=30)
        check(r.rc == 1 and (r.sqlstate or "").startswith(state) and
              SECRET not in r.err and "********" in r.err,
              "%s: want SQLSTATE %s with the echoed password masked, got "
              "rc=%s sqlstate=%s: %s" % (name, state, r.rc, r.sqlstate,
                                          r.err.strip()))
        check(s.value("SELECT pg_backend_pid();") == str(pid),
              "%s: the backend changed (it died?)" % name)

    masked("AUTH refusal echoing the password", b"AUTH", "auth_echo",
           "SELECT value FROM ta WHERE key = 'good';", "08")
    r = s.run("SELECT value FROM ta WHERE key = 'good';")
    check(r.rc == 0 and r.out.strip() == "hello" and srv.password == SECRET.encode(),
          "hostile_auth after the refused AUTH: rc=%s out=%r err=%s"
          % (r.rc, r.out, r.err.strip()))
    masked("error reply echoing the password", b"GET", "error_echo",
           "SELECT value FROM ta WHERE key = 'good';", "HV000")
    masked("SCAN key that is the password", b"SCAN", "scan_password",
           "SELECT key, value FROM ta;", "08P01")
    if mark is not None:
        with open(os.environ["PGPOLY_PGLOG"], errors="replace") as f:
            f.seek(mark)
            check(SECRET not in f.read(),
                  "the echoed password is in the PostgreSQL log")

    n = s.value("SELECT count(*) FROM pgpoly.connections() "
                "WHERE server = 'hostile';")
    check(n == "1", "want one cached connection to the hostile server, got %s"
          % n)
    s.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
