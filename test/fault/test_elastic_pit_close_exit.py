#!/usr/bin/env python3
"""A failed best-effort close of a PIT is quiet: at backend exit and at
ROLLBACK (test_elastic_pit_close.py checks the closes that succeed).

A session ends (its client disconnects, or pg_terminate_backend) holding a
cursor whose point in time the backend closes on its way out
(before_shmem_exit).  PostgreSQL turns an ERROR raised once proc_exit has
begun into a FATAL (elog.c, errstart), which logs and changes the exit
code: the close must raise nothing.  For each way the close can fail (the
stand-in answers 500, holds the DELETE past the close's bound, is stopped),
the exited backend's lines of the PostgreSQL log must show no FATAL, ERROR
or WARNING but the termination's own.  And at ROLLBACK with many cursors
and a store holding every DELETE: the closes share one bound, so at most a couple of DELETEs are sent, not one per cursor.  A cursor open
at COMMIT or PREPARE TRANSACTION, or dropped by ROLLBACK TO SAVEPOINT, has
its PIT closed at the transaction's end as well.  A close refused at
ROLLBACK, tried again before the next statement's request, is refused
again quietly: that statement does not fail.
"""

import os
import re

import es_helper
import pgtest

check = pgtest.check

CURSOR = "BEGIN; DECLARE c CURSOR FOR SELECT n FROM pits; FETCH 15 FROM c;"


def log_lines(mark, pid):
    """The PostgreSQL log lines of backend pid since mark."""
    with open(os.environ["PGPOLY_PGLOG"], errors="replace") as f:
        f.seek(mark)
        return [l.rstrip() for l in f if "[%s]" % pid in l]


def backend_gone(db, pid):
    r = pgtest.psql("SELECT count(*) FROM pg_stat_activity WHERE pid = %s;" % pid, db=db)
    return r.rc == 0 and r.out.strip() == "0"


def quiet_exit(db, es, what, fault, end, sql=CURSOR, allowed=()):
    """Open a session holding a PIT, make its close fail by fault (a stand-in
    fault, or "stop"), end the session by end ("close" or "terminate"), and
    check the backend's log lines show nothing above LOG but allowed."""
    mark = pgtest.pg_log_mark()
    s = pgtest.Session(db)
    pid = s.value("SELECT pg_backend_pid();")
    r = s.run(sql, timeout=60)
    check(r.rc == 0, "%s: %s" % (what, r.err))
    check(es.stats()["open_pits"] >= 1, "%s: no PIT open" % what)
    if fault == "stop":
        es.stop()
    else:
        es.faults(fault)
    if end == "close":
        s.close()
    else:
        r = pgtest.psql("SELECT pg_terminate_backend(%s);" % pid, db=db)
        check(r.rc == 0, "terminate: %s" % r.err)
    check(pgtest.wait_for(lambda: backend_gone(db, pid), timeout=30),
          "%s: the backend did not exit" % what)
    s.close()
    bad = [l for l in log_lines(mark, pid)
           if re.search(r"\b(FATAL|ERROR|WARNING|PANIC):", l)
           and not any(a in l for a in allowed)]
    check(not bad, "%s: the failed close at exit logged:\n  %s" % (what, "\n  ".join(bad)))
    pgtest.check_pg_log(mark)


TERMINATED = ("terminating connection due to administrator command",)


def test():
    mark = pgtest.pg_log_mark()
    es = es_helper.Standin()
    es.load("pits", 50)
    db = pgtest.create_db("pgpoly_es_pitx")

    def setup(url):
        r = pgtest.psql("""
            DROP SERVER IF EXISTS es CASCADE;
            CREATE SERVER es FOREIGN DATA WRAPPER pgpoly_elastic
                OPTIONS (url '%s', timeout_ms '60000');
            CREATE USER MAPPING FOR PUBLIC SERVER es;
            CREATE FOREIGN TABLE pits (_id text, n int) SERVER es OPTIONS (fetch_size '10');
        """ % url, db=db)
        check(r.rc == 0, "setup: %s" % r.err)
    setup(es.url)

    # A cursor open at COMMIT (or PREPARE TRANSACTION), and one dropped by
    # ROLLBACK TO SAVEPOINT in a transaction that commits: closed at the
    # transaction's end too, not left to the next use or keep_alive.
    s = pgtest.Session(db)
    for sql, what in ((CURSOR + " COMMIT;", "a cursor open at COMMIT"),
                      ("BEGIN; SAVEPOINT a; DECLARE c CURSOR FOR SELECT n FROM pits; "
                       "FETCH 15 FROM c; ROLLBACK TO a; COMMIT;",
                       "a cursor dropped by ROLLBACK TO SAVEPOINT"),
                      (CURSOR + " PREPARE TRANSACTION 'pitx'; COMMIT PREPARED 'pitx';",
                       "a cursor open at PREPARE TRANSACTION")):
        r = s.run(sql, timeout=60)
        check(r.rc == 0, "%s: %s" % (what, r.err))
        check(es.stats()["open_pits"] == 0, "%s: its PIT left open" % what)
    s.close()

    for fault in ({"status": 500, "count": 100, "exact": "/_pit"},
                  {"delay_ms": 60000, "count": 1, "exact": "/_pit"}):
        for end in ("close", "terminate"):
            quiet_exit(db, es, "%s, %s" % (fault, end), fault, end,
                       allowed=TERMINATED if end == "terminate" else ())
            es.clear()

    # Many cursors at ROLLBACK, every DELETE held 400 ms (below the
    # close's bound of 500 ms, each): they share one bound.
    s = pgtest.Session(db)
    sql = "BEGIN;" + "".join(
        "DECLARE c%d CURSOR FOR SELECT n FROM pits; FETCH 15 FROM c%d;" % (i, i)
        for i in range(20))
    r = s.run(sql, timeout=60)
    check(r.rc == 0, "20 cursors: %s" % r.err)
    before = es.stats()["open_pits"]
    es.faults({"delay_ms": 400, "count": 100, "exact": "/_pit"})
    r = s.run("ROLLBACK;", timeout=60)
    check(r.rc == 0, "ROLLBACK: %s" % r.err)
    closed = before - es.stats()["open_pits"]
    check(closed <= 3, "ROLLBACK sent %d slow DELETEs one after another" % closed)
    es.clear()
    s.close()

    # A close the store refuses (500) at ROLLBACK stays queued, and the next
    # statement on the connection tries it again before its own request: a
    # second refusal there must not fail that statement (the PIT expires
    # after keep_alive; the statement has nothing to do with it).
    s = pgtest.Session(db)
    r = s.run(CURSOR, timeout=60)
    check(r.rc == 0, "cursor: %s" % r.err)
    es.faults({"status": 500, "count": 2, "exact": "/_pit"})
    r = s.run("ROLLBACK;", timeout=60)
    check(r.rc == 0, "ROLLBACK with the close refused: %s" % r.err)
    r = s.run("SELECT count(*) FROM pits;", timeout=60)
    check(r.rc == 0 and r.out.strip() == "50",
          "a statement failed on the refused close of an earlier PIT: %s %s"
          % (r.out.strip(), r.err.strip()))
    es.clear()
    s.close()

    # The stand-in stopped: the connection is refused.
    quiet_exit(db, es, "stand-in stopped, close", "stop", "close")

    pgtest.check_pg_log(mark)


pgtest.main(test)
