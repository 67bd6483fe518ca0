#!/usr/bin/env python3
"""pgpoly_elastic closes the point in time (PIT) contexts its scans leave.

Elasticsearch keeps a PIT until keep_alive expires and asks clients to
close them as soon as they are not needed (DELETE /_pit, the close point
in time API).  A scan closes its PIT when it ends; these cases check the
ones it cannot close itself, against a private stand-in (its stats count
the PITs open), each right after the event, without using the connection
again:

  * a cursor dropped by ROLLBACK: closed at the end of the transaction;
  * a scan abandoned by an error (division by zero at row 25 of 50): closed
    at the end of the transaction;
  * a backend terminated while idle in a transaction holding such a
    cursor, and one terminated while its scan runs (the query sleeps at
    row 20): closed by the backend on its way out;
  * a stand-in that does not answer the DELETE (delayed 60 s): ROLLBACK
    still returns, within the close's own short timeout (far below
    timeout_ms, 60 s here), and the PIT is closed at the next use.
"""

import es_helper
import pgtest

check = pgtest.check

CURSOR = "BEGIN; DECLARE c CURSOR FOR SELECT n FROM pits; FETCH 15 FROM c;"


def open_pits(es):
    return es.stats()["open_pits"]


def backend_gone(db, pid):
    """Whether backend pid has left pg_stat_activity."""
    r = pgtest.psql("SELECT count(*) FROM pg_stat_activity WHERE pid = %s;" % pid, db=db)
    return r.rc == 0 and r.out.strip() == "0"


def terminated(db, es, sql, what, running=None):
    """Open a session, run sql (send only when running, a condition on the
    session's pid to wait for), check a PIT is open, terminate the backend
    and check the PIT is closed once it is gone."""
    s = pgtest.Session(db)
    pid = s.value("SELECT pg_backend_pid();")
    if running is None:
        r = s.run(sql, timeout=60)
        check(r.rc == 0, "%s: %s" % (what, r.err))
    else:
        s.send(sql)
        check(pgtest.wait_for(lambda: running(pid), timeout=30),
              "%s: the query never reached its sleep" % what)
    check(open_pits(es) == 1, "%s: want one PIT open, got %d" % (what, open_pits(es)))
    r = pgtest.psql("SELECT pg_terminate_backend(%s);" % pid, db=db)
    check(r.rc == 0, "terminate: %s" % r.err)
    check(pgtest.wait_for(lambda: backend_gone(db, pid), timeout=30),
          "%s: the backend did not exit" % what)
    check(open_pits(es) == 0, "%s: PIT left open by the exited backend" % what)
    s.close()


def sleeping(db, pid):
    """Whether backend pid is in pg_sleep."""
    r = pgtest.psql("SELECT wait_event FROM pg_stat_activity WHERE pid = %s;" % pid, db=db)
    return r.rc == 0 and r.out.strip() == "PgSleep"


def test():
    mark = pgtest.pg_log_mark()
    es = es_helper.Standin()
    es.load("pits", 50)
    db = pgtest.create_db("pgpoly_es_pit")
    r = pgtest.psql("""
        CREATE SERVER es FOREIGN DATA WRAPPER pgpoly_elastic
            OPTIONS (url '%s', timeout_ms '60000');
        CREATE USER MAPPING FOR CURRENT_USER SERVER es;
        CREATE FOREIGN TABLE pits (_id text, n int) SERVER es OPTIONS (fetch_size '10');
    """ % es.url, db=db)
    check(r.rc == 0, "setup: %s" % r.err)
    s = pgtest.Session(db)

    # A whole scan closes its PIT (as before).
    check(s.value("SELECT count(*) FROM pits;") == "50", "scan")
    check(open_pits(es) == 0, "PIT left open by a complete scan")

    # A cursor dropped by ROLLBACK.
    r = s.run(CURSOR)
    check(r.rc == 0 and open_pits(es) == 1, "cursor: %s, %d PITs" % (r.err, open_pits(es)))
    r = s.run("ROLLBACK;")
    check(r.rc == 0 and open_pits(es) == 0,
          "ROLLBACK left the cursor's PIT open (%d)" % open_pits(es))

    # A scan abandoned by an error.
    r = s.run("SELECT 1 / (n - 25) FROM pits;")
    check(r.rc == 1 and r.sqlstate == "22012", "want division by zero: %s" % r.err)
    check(open_pits(es) == 0, "an error left the scan's PIT open (%d)" % open_pits(es))

    # Backend exit: idle in a transaction with a cursor, and mid-scan.
    terminated(db, es, CURSOR, "idle in transaction")
    terminated(db, es, "SELECT n, pg_sleep(CASE WHEN n = 20 THEN 60 ELSE 0 END) "
               "FROM pits;", "mid-scan", running=lambda pid: sleeping(db, pid))

    # A stand-in that holds the DELETE: ROLLBACK does not wait for it.
    r = s.run(CURSOR)
    check(r.rc == 0 and open_pits(es) == 1, "cursor: %s" % r.err)
    es.faults({"delay_ms": 60000, "count": 1, "exact": "/_pit"})
    r = s.run("ROLLBACK;", timeout=30)
    check(r.rc == 0, "ROLLBACK with the DELETE held: %s" % r.err)
    es.clear()
    check(s.value("SELECT count(*) FROM pits WHERE _id = 'd1';") == "1", "lookup")
    check(open_pits(es) == 0, "the held PIT was not closed at the next use (%d)"
          % open_pits(es))

    s.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
