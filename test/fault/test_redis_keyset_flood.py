#!/usr/bin/env python3
"""Keys made to share a hash do not make a scan quadratic.

A full scan remembers every key SCAN returned in a hash set (SCAN may
return a key twice).  Its hash used to be unseeded and weak in a way no
seed mends: a 64-bit word's top bit flipped flips bits 63 and 31 of the
state whatever the state is (multiplying by an odd constant adds 2^63, and
h ^ (h >> 32) moves it), and flipping those two bits of the next word
undoes it.  So 2^15 keys of 15 such word pairs, each pair flipped or not,
all had one hash for any seed, and a count(*) over them compared each key
with all those before it: 5 * 10^8 key comparisons.  Anyone who may write
keys under a table's prefix could stall the scans of it.

A private Redis holds those 32,768 keys (bytea keys, 248 bytes with the
8-byte prefix, so the words line up) and as many random keys of the same
length under another prefix.  count(*) of each (a key-only scan: every key
enters the set) must give 32,768, and the flood may take at most three
times as long as the random keys plus a second (it took minutes, or the
statement_timeout here, before the hash took a secret multiplier).  The
test first checks that the keys do collide under the old hash.
"""

import random
import socket
import time

import pgtest

check = pgtest.check
PAIRS = 15
N = 1 << PAIRS
M64 = (1 << 64) - 1


def old_keyset_hash(key):
    """The former keyset_hash of fdw/redis_scan.c (unseeded)."""
    def mix(h, w):
        h = ((h ^ w) * 0xff51afd7ed558ccd) & M64
        return h ^ (h >> 32)
    h = 0x9e3779b97f4a7c15 ^ len(key)
    full = len(key) // 8 * 8
    for i in range(0, full, 8):
        h = mix(h, int.from_bytes(key[i:i + 8], "little"))
    if len(key) > full:
        h = mix(h, int.from_bytes(key[full:], "little"))
    h ^= h >> 33
    h = (h * 0xc4ceb9fe1a85ec53) & M64
    h ^= h >> 33
    return h & 0xffffffff


def flood_keys(prefix):
    """The 2^PAIRS keys: prefix, then per pair (a, b) or (a ^ 2^63, b ^ (2^63 | 2^31))."""
    rnd = random.Random(7)
    pairs = [(rnd.getrandbits(64), rnd.getrandbits(64)) for _ in range(PAIRS)]
    keys = []
    for n in range(N):
        parts = [prefix]
        for i, (a, b) in enumerate(pairs):
            if n >> i & 1:
                a, b = a ^ (1 << 63), b ^ ((1 << 63) | (1 << 31))
            parts.append(a.to_bytes(8, "little") + b.to_bytes(8, "little"))
        keys.append(b"".join(parts))
    return keys


def load(port, keys):
    """SET every key to "v" through one pipelined connection."""
    s = socket.create_connection(("127.0.0.1", port))
    buf = b""
    for i in range(0, len(keys), 2000):
        chunk = keys[i:i + 2000]
        s.sendall(b"".join(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\nv\r\n" % (len(k), k)
                           for k in chunk))
        want = len(chunk)
        while buf.count(b"\r\n") < want:
            buf += s.recv(65536)
        check(buf.count(b"+OK\r\n") == want, "SET replies: %r" % buf[:100])
        buf = b""
    s.close()


def test():
    mark = pgtest.pg_log_mark()
    flood = flood_keys(b"hflood:a")
    check(len({old_keyset_hash(k) for k in flood[:64] + flood[-64:]}) == 1,
          "the flood keys do not collide under the old hash")
    rnd = random.Random(11)
    plain = [b"hflood:b" + rnd.randbytes(16 * PAIRS) for _ in range(N)]
    port = pgtest.start_redis(name="keyset_flood")
    load(port, flood)
    load(port, plain)
    db = pgtest.create_db("pgpoly_keyset_flood")
    r = pgtest.psql("""
        CREATE SERVER kf FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d', timeout_ms '60000');
        CREATE FOREIGN TABLE flood (key bytea, value text) SERVER kf
            OPTIONS (table_type 'string', key_prefix 'hflood:a');
        CREATE FOREIGN TABLE plain (key bytea, value text) SERVER kf
            OPTIONS (table_type 'string', key_prefix 'hflood:b');
    """ % port, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    s = pgtest.Session(db)
    limit = 20 * pgtest.SCALE
    s.value("SET statement_timeout = '%ds';" % limit)
    took = {}
    for t in ("plain", "flood", "plain", "flood"):
        start = time.monotonic()
        r = s.run("SELECT count(*) FROM %s;" % t, timeout=limit + 30)
        took[t] = min(took.get(t, 1e9), time.monotonic() - start)
        check(r.rc == 0 and r.out.strip() == str(N),
              "count(*) of %s: rc=%s out=%r err=%s" % (t, r.rc, r.out, r.err.strip()))
    print("note: count(*) of %d keys: random %.3f s, one old hash %.3f s"
          % (N, took["plain"], took["flood"]))
    check(took["flood"] <= 3 * took["plain"] + 1.0 * pgtest.SCALE,
          "the colliding keys took %.2f s, the random ones %.2f s"
          % (took["flood"], took["plain"]))
    s.close()
    pgtest.stop_redis(port)
    pgtest.check_pg_log(mark)


if __name__ == "__main__":
    pgtest.main(test)
