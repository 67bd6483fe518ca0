#!/usr/bin/env python3
"""Key-only full scans of a Redis Cluster across slot moves.

A key-only scan (count(*), the key alone) takes a SCAN page's keys only
once the next page is asked for, and on its last round the keys of the
slots that moved during the scan are listed before the last pages' keys
are taken.  On a real cluster (3 primaries, no replicas; hash keys spread
over every primary, and a string key under the prefix in a slot that
moves, which SCAN's TYPE filter and the moved keys' TYPE check skip):

  * a key-only cursor (SELECT key, small fetch_size) half read while a
    slot moves to a primary added to the cluster, and another while a slot
    is half migrated and then handed over (ASK), each give every key
    exactly once, as the native copy has them;
  * count(*) and SELECT key of the whole table then equal the native copy;
  * a primary killed (no replica takes over): key-only reads fail with a
    class 08 or HV error, never with fewer rows, and a key-only cursor
    opened before the kill fails the same way.
No crash in the PostgreSQL log.
"""

import pgtest
import redis_cluster

check = pgtest.check


def rows_of(*outs):
    """The non-empty output lines, without COMMIT."""
    return [l for o in outs for l in (o or "").split("\n") if l and l != "COMMIT"]


def native_keys(s):
    """The native copy's keys, sorted."""
    return sorted(rows_of(s.value("SELECT key FROM n_hash;")))


def cursor_across(s, what, move):
    """A key-only cursor half read, move() run, then read to the end."""
    s.value("BEGIN; DECLARE cur NO SCROLL CURSOR FOR SELECT key FROM c_hash;")
    first = s.value("FETCH 7 FROM cur;")
    move()
    rest = s.value("FETCH ALL FROM cur; COMMIT;")
    got = rows_of(first, rest)
    want = native_keys(s)
    check(sorted(got) == want,
          "%s: key-only cursor gave %d rows (%d distinct), want %d; missing %r, extra %r"
          % (what, len(got), len(set(got)), len(want),
             sorted(set(want) - set(got))[:5], sorted(set(got) - set(want))[:5]))


def whole(s, what):
    """count(*) and SELECT key of the whole table equal the native copy."""
    want = native_keys(s)
    out = s.value("SELECT count(*) FROM c_hash;")
    check(out == str(len(want)), "%s: count(*) %s, want %d" % (what, out, len(want)))
    got = sorted(rows_of(s.value("SELECT key FROM c_hash;")))
    check(got == want, "%s: SELECT key gave %d rows, want %d" % (what, len(got), len(want)))


def test():
    mark = pgtest.pg_log_mark()
    cl = redis_cluster.Cluster(primaries=3, replicas=0)
    try:
        db = pgtest.create_db("pgpoly_cluster_keyonly")
        r = pgtest.psql("""
            CREATE SERVER rc FOREIGN DATA WRAPPER pgpoly_redis
              OPTIONS (nodes '127.0.0.1:%d', timeout_ms '5000');
            CREATE FOREIGN TABLE c_hash (key text, a int) SERVER rc
              OPTIONS (key_prefix 'ck:', fetch_size '5', write_mode 'immediate');
            CREATE TABLE n_hash (key text, a int);
            INSERT INTO n_hash SELECT 'h' || g, g FROM generate_series(1, 200) g;
            INSERT INTO n_hash SELECT '{mv' || t || '}' || g, g
              FROM generate_series(1, 40) g, generate_series(1, 2) t;
            INSERT INTO c_hash SELECT * FROM n_hash;
        """ % cl.primaries()[0], db=db)
        if not check(r.rc == 0, "setup failed: %s" % r.err):
            return
        s = pgtest.Session(db)
        whole(s, "at rest")
        slots = [cl.keyslot("ck:{mv%d}1" % t) for t in (1, 2)]
        cl.call(cl.owner(slots[0]), "SET", "ck:{mv1}plain", "a string")
        new = cl.add_primary()
        cursor_across(s, "reshard to a new primary", lambda: cl.move_slot(slots[0], new))
        whole(s, "after the reshard")

        src = cl.owner(slots[1])
        dst = [p for p in cl.primaries() if p != src][0]
        ids = {n["port"]: n["id"] for n in cl.nodes()}
        keys = ["ck:{mv2}%d" % g for g in range(1, 41)]

        def migrate():
            """Half the slot's keys moved, the slot marked on both sides."""
            cl.call(dst, "CLUSTER", "SETSLOT", slots[1], "IMPORTING", ids[src])
            cl.call(src, "CLUSTER", "SETSLOT", slots[1], "MIGRATING", ids[dst])
            cl.call(src, "MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", *keys[:20])

        cursor_across(s, "half migrated", migrate)

        def finish():
            """The rest moved and the slot handed over."""
            cl.call(src, "MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", *keys[20:])
            for p in cl.primaries() + [new]:
                cl.call(p, "CLUSTER", "SETSLOT", slots[1], "NODE", ids[dst])

        cursor_across(s, "migration finished", finish)
        whole(s, "after the migration")

        s.value("BEGIN; DECLARE cur NO SCROLL CURSOR FOR SELECT key FROM c_hash;")
        s.value("FETCH 3 FROM cur;")
        cl.kill(cl.primaries()[1])
        for sql in ("FETCH ALL FROM cur;", "SELECT count(*) FROM c_hash;",
                    "SELECT key FROM c_hash;"):
            r = s.run(sql, timeout=60)
            check(r.rc == 1 and (r.sqlstate or "").startswith(("08", "HV")),
                  "%s with a primary down: rc=%s %s %s (%d rows)"
                  % (sql, r.rc, r.sqlstate, r.err.strip()[:300], len(r.out.split())))
            s.run("ROLLBACK;")
        s.close()
    finally:
        cl.stop()
    pgtest.check_pg_log(mark)


pgtest.main(test)
