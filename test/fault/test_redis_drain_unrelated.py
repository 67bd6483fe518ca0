#!/usr/bin/env python3
"""An immediate-mode write drains only the Redis scans it can reach.

Before an immediate-mode batch is sent, the open Redis full scans list
their remaining keys (PgpolyPagedScan, drain_scan), since SCAN may return
keys the write adds.  A write can only add keys starting with its table's
key_prefix: a scan whose MATCH pattern no such key matches (another
prefix, on the same Redis or on another) has nothing to fear from it and
must go on paging.  Listing it anyway makes the write depend on that
scan's Redis: here a cursor is open on Redis A when A dies or restarts,
and an INSERT into a table of other keys (on Redis B, or on A itself)
fails with the cursor's error, where the same INSERT with the cursor over
a native table succeeds.  The cursor's own next FETCH still fails (class
08): the cursor cannot go on, the write must not care.

(test_redis_cluster_drain checks that the writes that may reach a scan,
through the same, a longer or a shorter key_prefix, still drain it.)
"""

import signal

import pgtest

check = pgtest.check
NKEYS = 40


def fill(port, prefix="t:"):
    """NKEYS hashes prefix k1..k40 with field v."""
    for i in range(1, NKEYS + 1):
        pgtest.redis_cli(port, "HSET", "%sk%d" % (prefix, i), "v", i)


def cursor_then(s, fault, write, what):
    """Open a cursor on ta, FETCH 3, run fault(), then the write: it must
    succeed (as with the cursor on a native table), and the cursor's next
    FETCH fail with class 08."""
    r = s.run("BEGIN; DECLARE cr CURSOR FOR SELECT id, v FROM ta; "
              "FETCH 3 FROM cr;")
    check(r.rc == 0, "cursor: %s" % r.err)
    fault()
    w = s.run(write)
    f = s.run("FETCH ALL FROM cr;")
    s.run("ROLLBACK;")
    check(w.rc == 0, "INSERT %s with a cursor open on A: want success; got "
          "rc=%s sqlstate=%s: %s" % (what, w.rc, w.sqlstate, w.err.strip()))
    check(f.rc == 1 and (f.sqlstate or "").startswith("08"),
          "the cursor's FETCH after the INSERT %s: want class 08; got rc=%s "
          "sqlstate=%s: %s" % (what, f.rc, f.sqlstate, f.err.strip()))


def test():
    mark = pgtest.pg_log_mark()
    pa = pgtest.start_redis()
    pb = pgtest.start_redis()
    db = pgtest.create_db("pgpoly_drain_unrelated")
    r = pgtest.psql("""
        CREATE SERVER ra FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d', timeout_ms '2000');
        CREATE SERVER rb FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d', timeout_ms '2000');
        CREATE FOREIGN TABLE ta (id text OPTIONS (key 'true'), v int) SERVER ra
            OPTIONS (key_prefix 't:', fetch_size '5');
        CREATE SERVER ra2 FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d', timeout_ms '2000');
        CREATE FOREIGN TABLE la (id text OPTIONS (key 'true'), v int) SERVER ra2
            OPTIONS (key_prefix 'log:', write_mode 'immediate');
        CREATE FOREIGN TABLE lb (id text OPTIONS (key 'true'), v int) SERVER rb
            OPTIONS (key_prefix 'log:', write_mode 'immediate');
    """ % (pa, pb, pa), db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    fill(pa)
    s = pgtest.Session(db)

    # Redis A dies while the cursor is open; the write goes to Redis B.
    cursor_then(s, lambda: pgtest.kill_redis(pa, signal.SIGKILL),
                "INSERT INTO lb VALUES ('a', 1);",
                "into Redis B, Redis A killed")

    # Redis A restarted while the cursor is open; the write goes to A's
    # log: keys (through a server of its own: the cursor's connection owes
    # the replies of the round it sent ahead, which the restart lost).
    pgtest.start_redis(port=pa)
    fill(pa)
    r = s.run("SELECT count(*) FROM ta;")
    check(r.rc == 0 and r.out.strip() == str(NKEYS),
          "ta after the restart: %s %s" % (r.out, r.err))

    def restart():
        pgtest.kill_redis(pa, signal.SIGKILL)
        pgtest.start_redis(port=pa)
        fill(pa)
    cursor_then(s, restart, "INSERT INTO la VALUES ('a', 1);",
                "into log: keys of Redis A, A restarted")

    s.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
