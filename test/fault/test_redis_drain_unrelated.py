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

A write to a table whose keys the scan's pattern matches (the same
prefix, a longer one, a shorter one; a pushed-down LIKE 'k1%') still
lists the scan's keys first: the counts agree with a native twin.
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
        CREATE TABLE n (id text, v int);
        INSERT INTO n SELECT 'k' || i, i FROM generate_series(1, %d) i;
    """ % (pa, pb, pa, NKEYS), db=db)
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

    # Writes whose keys the scan's pattern matches still list its keys
    # first: per row, insert id || 'x' through a table of prefix p (the
    # key written is p || the id's part after p), as into n.
    r = s.run("""
        CREATE FUNCTION ins(t text, k text, v int) RETURNS text
        LANGUAGE plpgsql AS $$
        BEGIN
          IF length(k) < 6 THEN
            EXECUTE format('INSERT INTO %I VALUES ($1, $2)', t) USING k || 'x', v;
          END IF;
          RETURN k;
        END $$;
        CREATE FOREIGN TABLE w_same (id text OPTIONS (key 'true'), v int)
            SERVER ra OPTIONS (key_prefix 't:', write_mode 'immediate', batch_size '1');
        CREATE FOREIGN TABLE w_longer (id text OPTIONS (key 'true'), v int)
            SERVER ra OPTIONS (key_prefix 't:k', write_mode 'immediate', batch_size '1');
        CREATE FOREIGN TABLE w_shorter (id text OPTIONS (key 'true'), v int)
            SERVER ra OPTIONS (key_prefix 't', write_mode 'immediate', batch_size '1');
    """)
    check(r.rc == 0, "functions: %s" % r.err)
    for table, arg, where in (("w_same", "id", ""),
                              ("w_longer", "substr(id, 2)", ""),
                              ("w_shorter", "':' || id", ""),
                              ("w_same", "id", " WHERE id LIKE 'k1%'"),
                              ("w_longer", "substr(id, 2)", " WHERE id LIKE 'k1%'")):
        s.run("DELETE FROM n WHERE id LIKE '%x'; DELETE FROM w_same WHERE id LIKE '%x';")
        native = s.value("SELECT count(*) FROM (SELECT ins('n', id, v) FROM n%s) s;"
                         % where)
        r = s.run("SELECT count(*) FROM (SELECT ins('%s', %s, v) FROM ta%s) s;"
                  % (table, arg, where))
        check(r.rc == 0 and r.out.strip() == native,
              "per-row insert through %s%s: want %s calls (native), got %s %s"
              % (table, where, native, r.out.strip(), r.err.strip()))
        got = s.value("SELECT count(*) FROM ta;")
        want = s.value("SELECT count(*) FROM n;")
        check(got == want, "rows after the inserts through %s%s: want %s, "
              "got %s" % (table, where, want, got))
    s.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
