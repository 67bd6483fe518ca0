#!/usr/bin/env python3
"""A real Redis never trips the SCAN cursor checks, while its table resizes.

pgpoly refuses a SCAN cursor that is not an unsigned 64-bit decimal as Redis
writes it, and one that a node returns a second time in one scan (a store
doing so would make the scan loop for ever; test_hostile_resp.py has those
stores).  Redis walks its table in reverse binary order, each returned
cursor strictly later than the one given, also while the table is being
rehashed to twice its size or shrunk: so the checks must never fire on it.

A private Redis holds 3,000 string keys t:1 .. t:3000.  A cursor reads the
foreign table (fetch_size 10: many small SCAN steps) a few rows at a time;
between the FETCHes the keyspace grows to 60 times its size (the table is
rehashed, incrementally, under the scan), shrinks back (the keys are
deleted; Redis shrinks the table in its cron), and grows again.  The scan
ends without error and returns each of the 3,000 keys, all present from
start to end, exactly once.  No crash in the PostgreSQL log.
"""

import pgtest

check = pgtest.check
N = 3000
GROW = 180000

# Lua run by EVAL: SET or UNLINK keys prefix..1 .. prefix..n in one command.
FILL = "for i = 1, tonumber(ARGV[2]) do redis.call('SET', ARGV[1] .. i, 'x') end"
DROP = "for i = 1, tonumber(ARGV[2]) do redis.call('UNLINK', ARGV[1] .. i) end"


def redis(port, *args):
    rc, out, err = pgtest.redis_cli(port, *args, timeout=60)
    check(rc == 0 and not out.startswith("ERR"),
          "redis-cli %s: rc=%s %s %s" % (args[:2], rc, out[:200], err))
    return out


def test():
    mark = pgtest.pg_log_mark()
    port = pgtest.start_redis(name="scan_cursor")
    redis(port, "eval", FILL, "0", "t:", str(N))
    db = pgtest.create_db("pgpoly_scan_cursor")
    r = pgtest.psql("""
        CREATE SERVER sc FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d');
        CREATE FOREIGN TABLE t (key text, value text) SERVER sc
            OPTIONS (table_type 'string', key_prefix 't:', fetch_size '10');
    """ % port, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    s = pgtest.Session(db)
    s.run("BEGIN; DECLARE c NO SCROLL CURSOR FOR SELECT key FROM t;")
    keys = []

    def fetch(n):
        r = s.run("FETCH %d FROM c;" % n, timeout=60)
        check(r.rc == 0, "FETCH %d: %s" % (n, r.err.strip()))
        keys.extend(r.out.split())

    fetch(300)
    redis(port, "eval", FILL, "0", "grow:", str(GROW))
    fetch(300)
    fetch(300)
    redis(port, "eval", DROP, "0", "grow:", str(GROW))
    fetch(300)
    redis(port, "eval", FILL, "0", "again:", str(GROW // 2))
    fetch(300)
    fetch(N)
    r = s.run("COMMIT;")
    check(r.rc == 0, "COMMIT: %s" % r.err.strip())
    want = sorted(str(i) for i in range(1, N + 1))
    check(sorted(keys) == want,
          "the scan gave %d keys, %d distinct, want each of %d once: first "
          "extra/missing %r / %r"
          % (len(keys), len(set(keys)), N,
             sorted(set(keys) - set(want))[:3], sorted(set(want) - set(keys))[:3]))
    s.close()
    pgtest.stop_redis(port)
    pgtest.check_pg_log(mark)


if __name__ == "__main__":
    pgtest.main(test)
