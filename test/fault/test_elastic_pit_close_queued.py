#!/usr/bin/env python3
"""pgpoly_elastic: a queued close of an aborted scan's point in time (PIT)
that fails at transport does not fail the next, unrelated statement.

A scan aborted mid-way (its transaction rolled back) leaves its PIT to be
closed: at the end of that transaction (quietly), else before the next
request on the connection.  A refused close (an HTTP error) there was
already only a DEBUG message, but one whose request failed (the answer cut
off: SQLSTATE class 08) was raised as the ERROR of the next statement,
which had nothing to do with that PIT and whose own request works on a
reopened connection.  Now that statement answers, as a failed close of a
scan's own PIT warns instead of failing it.  Against a private stand-in:

  * a cursor's PIT left by ROLLBACK, its close at the abort refused (500);
  * the next query, whose queued close is cut off: its answer, equal to
    the native one; the query after it works too, in a transaction too.
"""

import es_helper
import pgtest

check = pgtest.check

QUERY = "SELECT n FROM %s ORDER BY n;"


def test():
    mark = pgtest.pg_log_mark()
    es = es_helper.Standin()
    es.load("pits", 50)
    db = pgtest.create_db("pgpoly_es_pitq")
    r = pgtest.psql("""
        CREATE SERVER es FOREIGN DATA WRAPPER pgpoly_elastic
            OPTIONS (url '%s', timeout_ms '60000');
        CREATE USER MAPPING FOR CURRENT_USER SERVER es;
        CREATE FOREIGN TABLE pits (_id text, n int) SERVER es OPTIONS (fetch_size '10');
        CREATE TABLE native AS SELECT n FROM generate_series(0, 49) n;
    """ % es.url, db=db)
    check(r.rc == 0, "setup: %s" % r.err)
    s = pgtest.Session(db)
    want = s.run(QUERY % "native").out.split()
    check(len(want) == 50, "native answer: %r" % want)

    for txn in (False, True):
        what = "in a transaction" if txn else "alone"
        es.clear()
        es.faults({"status": 500, "count": 1, "exact": "/_pit"})
        r = s.run("BEGIN; DECLARE c CURSOR FOR %s FETCH 1 FROM c; ROLLBACK;"
                  % (QUERY % "pits"), timeout=60)
        check(r.rc == 0 and r.out.split() == ["0"], "%s: cursor: %r %s"
              % (what, r.out, r.err.strip()))
        es.clear()
        es.faults({"truncate": True, "count": 1, "exact": "/_pit"})
        if txn:
            s.run("BEGIN;")
        r = s.run(QUERY % "pits", timeout=60)
        es.clear()
        check(r.rc == 0 and r.out.split() == want,
              "%s: the query after the aborted scan failed on its PIT's queued close: %s"
              % (what, r.err.strip()))
        r = s.run(QUERY % "pits", timeout=60)
        check(r.rc == 0 and r.out.split() == want, "%s: the next query: %s"
              % (what, r.err.strip()))
        if txn:
            r = s.run("COMMIT;")
            check(r.rc == 0 and "ROLLBACK" not in r.out, "COMMIT: %r %s" % (r.out, r.err))
    s.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
