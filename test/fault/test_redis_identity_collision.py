#!/usr/bin/env python3
"""Row identities made to share a hash do not fail a correct UPDATE.

An UPDATE of a Redis table that assigns the key remembers where each row
of the statement is (so that a row moved onto another is an ERROR, as a
unique violation is), and a scan for an UPDATE or DELETE remembers the
rows read from a key not in pgpoly's form.  Both looked rows up by a
64-bit hash of their identity alone, hash_bytes_extended() with seed 0,
which anyone can compute: with it, two different keys of equal hash were
one row, and

    UPDATE t SET k = CASE k WHEN 'p' THEN k2 ELSE k END

over the rows k1 and 'p' failed ("moves two rows onto" / "moves another
row onto") though k1 and k2 are different keys.  Lookup3's state after a
12-byte block is a sum of that block and the state before, so choosing
the second block of k2 to undo the difference of the first gives any
number of such pairs.

The test checks its model of the old hash against PostgreSQL's own
(hashtextextended(text, 0) is hash_bytes_extended of the bytes), crafts
such pairs of bytea keys (identity: the int32 length, then the key's
bytes), checks they collide under the old hash, and runs the UPDATE,
which must move the row and keep the other.
"""

import random
import struct

import pgtest

check = pgtest.check
M32 = 0xffffffff


def rot(x, k):
    return ((x << k) | (x >> (32 - k))) & M32


def mix(a, b, c):
    a = (a - c) & M32; a ^= rot(c, 4); c = (c + b) & M32
    b = (b - a) & M32; b ^= rot(a, 6); a = (a + c) & M32
    c = (c - b) & M32; c ^= rot(b, 8); b = (b + a) & M32
    a = (a - c) & M32; a ^= rot(c, 16); c = (c + b) & M32
    b = (b - a) & M32; b ^= rot(a, 19); a = (a + c) & M32
    c = (c - b) & M32; c ^= rot(b, 4); b = (b + a) & M32
    return a, b, c


def final(a, b, c):
    c ^= b; c = (c - rot(b, 14)) & M32
    a ^= c; a = (a - rot(c, 11)) & M32
    b ^= a; b = (b - rot(a, 25)) & M32
    c ^= b; c = (c - rot(b, 16)) & M32
    a ^= c; a = (a - rot(c, 4)) & M32
    b ^= a; b = (b - rot(a, 14)) & M32
    c ^= b; c = (c - rot(b, 24)) & M32
    return a, b, c


def words(block):
    return struct.unpack("<3I", block)


def blocks_state(k, length=None):
    """The state after the whole 12-byte blocks of k (seed 0), and the rest;
    length: of the whole input k begins (default: k's)."""
    a = b = c = (0x9e3779b9 + (len(k) if length is None else length) + 3923095) & M32
    while len(k) >= 12:
        x, y, z = words(k[:12])
        a, b, c = mix((a + x) & M32, (b + y) & M32, (c + z) & M32)
        k = k[12:]
    return (a, b, c), k


def old_hash(k):
    """hash_bytes_extended(k, len(k), 0): the old identity_hash."""
    (a, b, c), rest = blocks_state(k)
    rest = rest + bytes(12 - len(rest)) if rest else b""
    if rest:
        x, y, z = words(rest)
        # the lowest byte of c is reserved for the length (none added here)
        a, b, c = (a + x) & M32, (b + y) & M32, (c + (z << 8)) & M32
    a, b, c = final(a, b, c)
    return (b << 32) | c


def identity(key):
    """RedisRowIdentity of a hash table's row: int32 length, key bytes."""
    return struct.pack("<i", len(key)) + key


def colliding_pair(rnd):
    """Two 32-byte keys whose identities (36 bytes) share the old hash."""
    k1 = rnd.randbytes(32)
    head2 = rnd.randbytes(8)
    s1, _ = blocks_state(identity(k1)[:12], 36)
    s2, _ = blocks_state(identity(head2 + bytes(24))[:12], 36)
    # the same length gives the same start: the states differ by block 0 only
    w1 = words(identity(k1)[12:24])
    w2 = [(s1[i] + w1[i] - s2[i]) & M32 for i in range(3)]
    k2 = head2 + struct.pack("<3I", *w2) + k1[20:]
    return k1, k2


def test():
    mark = pgtest.pg_log_mark()
    db = pgtest.create_db("pgpoly_identity_collision")
    rnd = random.Random(5)
    # The model of the old hash is PostgreSQL's.
    samples = ["".join(rnd.choice("abcdefghij0123456789") for _ in range(n)) for n in range(0, 41)]
    out = pgtest.psql("SELECT string_agg(hashtextextended(s, 0)::text, ' ' ORDER BY o) "
                      "FROM unnest(ARRAY[%s]) WITH ORDINALITY AS u(s, o);"
                      % ", ".join("'%s'" % s for s in samples), db=db)
    mine = " ".join(str(struct.unpack("<q", struct.pack("<Q", old_hash(s.encode())))[0])
                    for s in samples)
    if not check(out.rc == 0 and out.out.strip() == mine,
                 "the model of hash_bytes_extended differs from PostgreSQL's: %s" % out.err):
        return
    pairs = [colliding_pair(rnd) for _ in range(3)]
    for k1, k2 in pairs:
        check(k1 != k2 and old_hash(identity(k1)) == old_hash(identity(k2)),
              "the crafted keys do not collide under the old hash")
    port = pgtest.start_redis(name="identity_collision")
    r = pgtest.psql("""
        CREATE SERVER ic FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (host '127.0.0.1', port '%d');
        CREATE FOREIGN TABLE t (k bytea OPTIONS (key 'true'), v text) SERVER ic
            OPTIONS (key_prefix 'ic:');
    """ % port, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    for n, (k1, k2) in enumerate(pairs):
        x1, x2 = "\\x" + k1.hex(), "\\x" + k2.hex()
        # k1 stays, p moves onto k2: in either order of the scan.
        r = pgtest.psql("""
            DELETE FROM t;
            INSERT INTO t VALUES ('%(x1)s', 'stays'), ('p', 'moves');
            UPDATE t SET k = CASE WHEN k = 'p' THEN '%(x2)s'::bytea ELSE k END;
            SELECT string_agg(CASE k WHEN '%(x1)s' THEN 'k1' WHEN '%(x2)s' THEN 'k2'
                              ELSE encode(k, 'escape') END || '=' || v, ' ' ORDER BY v DESC)
              FROM t;
        """ % {"x1": x1, "x2": x2}, db=db)
        check(r.rc == 0 and r.out.strip().splitlines()[-1:] == ["k1=stays k2=moves"],
              "pair %d: UPDATE moving a row onto a key whose identity shares the old "
              "hash with another row's: rc=%s out=%r err=%s"
              % (n, r.rc, r.out, r.err.strip()))
    pgtest.stop_redis(port)
    pgtest.check_pg_log(mark)


if __name__ == "__main__":
    pgtest.main(test)
