#!/usr/bin/env python3
"""Redis Cluster nodes and a sentinel that lie (stdlib fakes on loopback).

Two fake cluster nodes, A (slots 0-8191) and B (8192-16383), keep a small
Redis model (strings, hashes; GET, HGETALL, HSET, RENAME, SCAN ...) and
answer CLUSTER SLOTS / CLUSTER NODES truthfully, except where a test arms
a hook that answers a command its own way:

  * MOVED and ASK loops between A and B: the statement ends with an ERROR
    (more than 16 redirections), it does not spin;
  * TRYAGAIN for ever: retried until timeout_ms, then an ERROR quoting it;
  * MOVED to a port where nothing listens: a connection ERROR naming it;
  * an extra reply from B: a protocol ERROR naming B, not a shifted reply;
  * B's SCAN cursor repeating for ever, or "007": a protocol ERROR (the
    cycle's naming B), where the scan used to run until cancelled;
  * write_mode 'immediate', a hash key renamed within its slot while the
    slot migrates: RENAME answered TRYAGAIN, the HSET after it applied.
    Sending the RENAME again later would overwrite what the HSET wrote
    (the UPDATE "succeeds" with the old values): it must fail instead;
  * the trust rule on a node met after the first (B answers PING without
    AUTH while A asks for the password): refused (2F003), naming B;
  * a sentinel naming port 99999, or a "primary" that is no Redis: class
    08 ERRORs saying so.

After each failure the next statements read the data right.  No crash.
"""

import os
import threading

import pgtest
import redis_cluster

check = pgtest.check
ROLE = "fault_cl_user_%d" % os.getpid()


keyslot = redis_cluster.keyslot


def bulk(b):
    return b"$-1\r\n" if b is None else b"$%d\r\n%s\r\n" % (len(b), b)


array = redis_cluster.Resp.encode     # an array of bulk strings


class Node:
    """A fake cluster node serving slots lo..hi of a shared keyspace."""

    def __init__(self, lo, hi, data, password=None):
        self.lo, self.hi = lo, hi
        self.data = data            # key -> bytes (string) or dict (hash)
        self.password = password
        self.peers = [self]
        self.hook = None            # f(node, cmd) -> reply bytes, or None
        self.lock = threading.Lock()
        self.sock = pgtest.serve_tcp(self._serve)
        self.port = self.sock.getsockname()[1]

    def _serve(self, sock):
        conn = redis_cluster.Resp.on(sock)
        authed = self.password is None
        # The replies to the commands of one pipeline (those read in one
        # go) are sent together, as Redis does: a reply sent after the
        # client has counted its replies (a slow fake) would make the
        # "extra reply" case depend on timing.
        out = []
        try:
            while True:
                cmd = conn.read()
                name = cmd[0].upper()
                if name == b"AUTH":
                    ok = self.password is not None and cmd[-1] == self.password
                    authed = authed or ok
                    out.append(b"+OK\r\n" if ok else b"-ERR AUTH failed\r\n")
                elif not authed:
                    out.append(b"-NOAUTH Authentication required.\r\n")
                else:
                    reply = self.hook(self, cmd) if self.hook else None
                    out.append(reply if reply is not None else self.answer(cmd))
                if not conn.buf:
                    with self.lock:
                        sock.sendall(b"".join(out))
                    out = []
        except (ConnectionError, OSError, ValueError, IndexError):
            pass
        finally:
            sock.close()

    def cluster(self, sub):
        if sub == b"SLOTS":
            return b"*%d\r\n" % len(self.peers) + b"".join(
                b"*3\r\n:%d\r\n:%d\r\n*2\r\n%s:%d\r\n" % (n.lo, n.hi, bulk(b"127.0.0.1"), n.port)
                for n in self.peers)
        lines = [b"%040d 127.0.0.1:%d@1 %s - 0 0 1 connected %d-%d"
                 % (n.port, n.port, b"myself,master" if n is self else b"master", n.lo, n.hi)
                 for n in self.peers]
        return bulk(b"\n".join(lines) + b"\n")

    def answer(self, cmd):
        """What Redis would answer (keys of other nodes' slots: MOVED)."""
        name = cmd[0].upper()
        if name in (b"PING", b"ASKING"):
            return b"+PONG\r\n" if name == b"PING" else b"+OK\r\n"
        if name == b"CLUSTER":
            return self.cluster(cmd[1].upper())
        if name == b"SCAN":
            prefix = cmd[3].rstrip(b"*").replace(b"\\", b"")
            want = dict if cmd[7] == b"hash" else bytes
            return b"*2\r\n" + bulk(b"0") + array(sorted(
                k for k, v in self.data.items() if k.startswith(prefix) and
                self.lo <= keyslot(k) <= self.hi and isinstance(v, want)))
        slot = keyslot(cmd[1])
        if not self.lo <= slot <= self.hi:
            owner = [n for n in self.peers if n.lo <= slot <= n.hi][0]
            return b"-MOVED %d 127.0.0.1:%d\r\n" % (slot, owner.port)
        d, k = self.data, cmd[1]
        if name == b"GET":
            return bulk(d.get(k))
        if name == b"SET":
            d[k] = cmd[2]
            return b"+OK\r\n"
        if name == b"HGETALL":
            return array([x for kv in sorted(d.get(k, {}).items()) for x in kv])
        if name == b"HSET":
            h = d.setdefault(k, {})
            for i in range(2, len(cmd), 2):
                h[cmd[i]] = cmd[i + 1]
            return b":1\r\n"
        if name == b"HDEL":
            for f in cmd[2:]:
                d.get(k, {}).pop(f, None)
            return b":1\r\n"
        if name == b"DEL":
            return b":%d\r\n" % (d.pop(k, None) is not None)
        if name == b"RENAME":
            if k not in d:
                return b"-ERR no such key\r\n"
            d[cmd[2]] = d.pop(k)
            return b"+OK\r\n"
        if name in (b"TTL", b"EXPIRE"):
            return b":-1\r\n" if name == b"TTL" else b":1\r\n"
        return b"-ERR unknown command '%s'\r\n" % name


def cluster(data, password=None, open_b=False):
    a = Node(0, 8191, data, password)
    b = Node(8192, 16383, data, None if open_b else password)
    a.peers = b.peers = [a, b]
    return a, b


def test():
    mark = pgtest.pg_log_mark()
    data = {}
    for i in range(60):
        data[b"k:%d" % i] = b"v%d" % i
        data[b"h:%d" % i] = {b"a": b"%d" % i, b"b": b"x"}
    a, b = cluster(data)
    db = pgtest.create_db("pgpoly_cluster_hostile")
    r = pgtest.psql("""
        CREATE SERVER fk FOREIGN DATA WRAPPER pgpoly_redis
          OPTIONS (nodes '127.0.0.1:%d', timeout_ms '1000');
        CREATE USER MAPPING FOR CURRENT_USER SERVER fk;
        CREATE FOREIGN TABLE t (key text, value text) SERVER fk
          OPTIONS (table_type 'string', key_prefix 'k:');
        CREATE FOREIGN TABLE h (key text, a int, b text) SERVER fk
          OPTIONS (key_prefix 'h:', write_mode 'immediate');
    """ % a.port, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    s = pgtest.Session(db)
    pid = s.value("SELECT pg_backend_pid();")
    keys = "key IN (%s)" % ", ".join("'%d'" % i for i in range(20))

    def healthy(after):
        r = s.run("SELECT count(*), count(DISTINCT value) FROM t; "
                  "SELECT string_agg(value, ',' ORDER BY key) FROM t WHERE %s;" % keys)
        want = "60|60\n" + ",".join("v%d" % i for i in sorted(range(20), key=str))
        check(r.rc == 0 and r.out.strip() == want,
              "after %s: rc=%s %r %s" % (after, r.rc, r.out, r.err.strip()))
        check(s.value("SELECT pg_backend_pid();") == pid, "after %s: backend changed" % after)

    def expect(name, sql, state, words, hook_a=None, hook_b=None):
        a.hook, b.hook = hook_a, hook_b
        r = s.run(sql, timeout=60)
        a.hook = b.hook = None
        check(r.rc == 1 and (r.sqlstate or "").startswith(state) and
              all(w in r.err for w in words) and r.elapsed < 10,
              "%s: want %s with %s, got rc=%s %s after %.1f s: %s"
              % (name, state, words, r.rc, r.sqlstate, r.elapsed, r.err.strip()))
        print("note: %s: %s" % (name, (r.err.strip().splitlines() or ["ok"])[0]))
        healthy(name)

    def redirect(kind):
        def hook(node, cmd):
            if cmd[0].upper() != b"GET":
                return None
            other = b if node is a else a
            return b"-%s %d 127.0.0.1:%d\r\n" % (kind, keyslot(cmd[1]), other.port)
        return hook

    def always(reply, command=b"GET"):
        return lambda node, cmd: reply if cmd[0].upper() == command else None

    healthy("start")
    lookup = "SELECT value FROM t WHERE %s;" % keys
    expect("MOVED loop", lookup, "HV000", ["redirected a command more than 16 times"],
           redirect(b"MOVED"), redirect(b"MOVED"))
    expect("ASK loop", lookup, "HV000", ["redirected a command more than 16 times"],
           redirect(b"ASK"), redirect(b"ASK"))
    # retried until timeout_ms: the TRYAGAIN is the answer, or (the last
    # retry's answer late) the timeout's detail
    expect("TRYAGAIN for ever", lookup, ("HV000", "08006"), ["TRYAGAIN"],
           always(b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n"))
    dead = pgtest.free_port()
    expect("MOVED to a closed port", lookup, "08001", ["127.0.0.1:%d" % dead],
           lambda node, cmd: b"-MOVED 1 127.0.0.1:%d\r\n" % dead
           if cmd[0].upper() == b"GET" else None)
    expect("extra reply", lookup, "08P01", ["127.0.0.1:%d" % b.port, "more replies"],
           None, lambda node, cmd: node.answer(cmd) + bulk(b"extra")
           if cmd[0].upper() == b"GET" else None)
    # B's SCAN cursor comes round again (the scan would never end), or is
    # no number as Redis writes one: an ERROR naming B
    expect("SCAN cursor cycle on B", "SELECT count(*) FROM t;", "08P01",
           ["returned before in this scan of node 127.0.0.1:%d" % b.port],
           None, lambda node, cmd: b"*2\r\n" + bulk(b"9") + array([])
           if cmd[0].upper() == b"SCAN" else None)
    expect("SCAN cursor 007 on B", "SELECT key, value FROM t;", "08P01",
           ["no unsigned 64-bit decimal number"],
           None, lambda node, cmd: b"*2\r\n" + bulk(b"007") + array([])
           if cmd[0].upper() == b"SCAN" else None)

    # A RENAME answered TRYAGAIN (its slot migrating), the HSET after it run.
    data[b"h:{t}old"] = {b"a": b"1", b"b": b"old"}
    tries = []

    def tryagain_rename(node, cmd):
        if cmd[0].upper() == b"RENAME" and len(tries) < 2:
            tries.append(cmd)
            return b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n"
        return None
    (a if keyslot(b"h:{t}old") <= 8191 else b).hook = tryagain_rename
    r = s.run("UPDATE h SET key = '{t}new', a = 99 WHERE key = '{t}old';")
    a.hook = b.hook = None
    new = data.get(b"h:{t}new", {})
    check(tries and ((r.rc == 1 and "TRYAGAIN" in r.err) or
                     (r.rc == 0 and new.get(b"a") == b"99")),
          "a RENAME retried after the HSET that followed it: rc=%s, h:{t}new = %r, "
          "h:{t}old = %r: %s" % (r.rc, new, data.get(b"h:{t}old"), r.err.strip()))
    print("note: RENAME answered TRYAGAIN: %s" % (r.err.strip().splitlines() or ["ok"])[0])
    healthy("TRYAGAIN on RENAME")
    s.close()

    trust(db)
    sentinel(db)
    pgtest.check_pg_log(mark)


def trust(db):
    """A non-superuser with a password: B does not ask for it."""
    data = {b"k:%d" % i: b"v%d" % i for i in range(40)}
    a, b = cluster(data, password=b"pw", open_b=True)
    r = pgtest.psql("""
        CREATE ROLE %(role)s NOLOGIN;
        GRANT USAGE ON FOREIGN DATA WRAPPER pgpoly_redis TO %(role)s;
        CREATE SERVER ft FOREIGN DATA WRAPPER pgpoly_redis
          OPTIONS (nodes '127.0.0.1:%(a)d', timeout_ms '1000');
        CREATE USER MAPPING FOR %(role)s SERVER ft OPTIONS (password 'pw');
        CREATE FOREIGN TABLE ft_t (key text, value text) SERVER ft
          OPTIONS (table_type 'string', key_prefix 'k:');
        GRANT SELECT ON ft_t TO %(role)s;
    """ % {"role": ROLE, "a": a.port}, db=db)
    if not check(r.rc == 0, "trust setup failed: %s" % r.err):
        return
    try:
        s = pgtest.Session(db)
        s.value("SET ROLE %s;" % ROLE)
        on_a = [i for i in range(40) if keyslot(b"k:%d" % i) <= 8191][0]
        on_b = [i for i in range(40) if keyslot(b"k:%d" % i) > 8191][0]
        r = s.run("SELECT value FROM ft_t WHERE key = '%d';" % on_a)
        check(r.rc == 0 and r.out.strip() == "v%d" % on_a,
              "trust: a key of the node that asks for the password: %s" % r.err.strip())
        r = s.run("SELECT value FROM ft_t WHERE key = '%d';" % on_b)
        check(r.rc == 1 and r.sqlstate == "2F003" and "127.0.0.1:%d" % b.port in r.err,
              "trust: a node that answers PING without AUTH: rc=%s %s: %s"
              % (r.rc, r.sqlstate, r.err.strip()))
        s.close()
    finally:
        pgtest.psql("DROP OWNED BY %s; DROP ROLE %s;" % (ROLE, ROLE), db=db)


def sentinel(db):
    """A sentinel naming a port out of range, then a server that is no Redis."""
    answer = {}

    def serve_sentinel(sock):
        conn = redis_cluster.Resp.on(sock)
        try:
            while True:
                conn.read()
                sock.sendall(answer["reply"])
        except (ConnectionError, OSError, ValueError):
            pass
        sock.close()

    def serve_http(sock):
        try:
            sock.recv(1024)
            sock.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        except OSError:
            pass
        sock.close()

    sent = pgtest.serve_tcp(serve_sentinel).getsockname()[1]
    http = pgtest.serve_tcp(serve_http).getsockname()[1]
    r = pgtest.psql("""
        CREATE SERVER fs FOREIGN DATA WRAPPER pgpoly_redis
          OPTIONS (sentinels '127.0.0.1:%d', sentinel_master 'm',
                   connect_timeout_ms '300', timeout_ms '1000');
        CREATE USER MAPPING FOR CURRENT_USER SERVER fs;
        CREATE FOREIGN TABLE fs_t (key text, value text) SERVER fs
          OPTIONS (table_type 'string', key_prefix 'k:');
    """ % sent, db=db)
    if not check(r.rc == 0, "sentinel setup failed: %s" % r.err):
        return
    s = pgtest.Session(db)
    for reply, state, words in (
            (array([b"127.0.0.1", b"99999"]), "08001",
             ["through its sentinels", "answered with an unexpected reply"]),
            (array([b"127.0.0.1", b"%d" % http]), "08P01",
             ["127.0.0.1:%d" % http, "malformed reply"])):
        answer["reply"] = reply
        r = s.run("SELECT * FROM fs_t WHERE key = 'x';")
        check(r.rc == 1 and r.sqlstate == state and all(w in r.err for w in words),
              "sentinel answering %r: want %s with %s, got %s: %s"
              % (reply, state, words, r.sqlstate, r.err.strip()))
    s.close()


pgtest.main(test)
