#!/usr/bin/env python3
"""pgpoly_elastic: a scan that read all its rows is not failed by the close
of its point in time (PIT).

Elasticsearch frees a PIT when its keep_alive elapses and asks clients to
close it as soon as it is not needed (close point in time API, DELETE
/_pit).  A scan closes its PIT after its last page; if that close is
refused or fails, the statement's rows are all read and correct, so the
close is a WARNING naming the PIT's index and the server, not an ERROR (as
postgres_fdw only warns about cleanup it cannot finish).  Against a private
stand-in, each query compared with the same query on a native table:

  * DELETE /_pit answered 500: the query's answer, one WARNING naming the
    index, the server and the status;
  * answered 503 every time (retried, then given up): the same;
  * answered 404 (the PIT expired already): the answer, no WARNING;
  * the answer cut off mid-body (a transport failure, 08): the answer and a
    WARNING; the connection is reopened and the next query works, in the
    same transaction too;
  * the same through a cursor (FETCH ALL, CLOSE);
  * a DELETE held by the stand-in with statement_timeout set: the cancel
    still fails the statement (57014): only the close's own failures are
    downgraded.
"""

import es_helper
import pgtest

check = pgtest.check

QUERY = "SELECT n FROM %s ORDER BY n;"


def answer(s, table):
    r = s.run(QUERY % table, timeout=60)
    return r, r.out.split()


def test():
    mark = pgtest.pg_log_mark()
    es = es_helper.Standin()
    es.load("pits", 50)
    db = pgtest.create_db("pgpoly_es_pitref")
    r = pgtest.psql("""
        CREATE SERVER es FOREIGN DATA WRAPPER pgpoly_elastic
            OPTIONS (url '%s', timeout_ms '60000');
        CREATE USER MAPPING FOR CURRENT_USER SERVER es;
        CREATE FOREIGN TABLE pits (_id text, n int) SERVER es OPTIONS (fetch_size '10');
        CREATE TABLE native AS SELECT n FROM generate_series(0, 49) n;  -- es.load: n = 0 .. 49
    """ % es.url, db=db)
    check(r.rc == 0, "setup: %s" % r.err)
    s = pgtest.Session(db)
    _, want = answer(s, "native")
    check(len(want) == 50, "native answer: %r" % want)

    def refused(fault, what, warn, text=None):
        es.clear()
        es.faults(dict(fault, exact="/_pit"))
        r, got = answer(s, "pits")
        es.clear()
        check(r.rc == 0, "%s: the query failed: %s" % (what, r.err.strip()))
        check(got == want, "%s: answer %r" % (what, got))
        warned = "could not close the point in time of index \"pits\" on " \
                 "Elasticsearch server \"es\"" in r.err
        check(warned == warn, "%s: WARNING %s expected: %s"
              % (what, "a" if warn else "no", r.err.strip()))
        if text:
            check(text in r.err, "%s: the WARNING should say %r: %s" % (what, text, r.err))

    refused({"status": 500, "count": 1}, "500", True, "answered 500")
    refused({"status": 503, "count": 10}, "503", True, "answered 503")
    refused({"status": 404, "count": 1}, "404", False)
    refused({"truncate": True, "count": 1}, "cut off", True, "request failed")
    r, got = answer(s, "pits")
    check(r.rc == 0 and got == want and "WARNING" not in r.err,
          "the query after a failed close: %s %r" % (r.err.strip(), got[:3]))

    # In a transaction: the failed close leaves nothing broken behind it.
    r = s.run("BEGIN;")
    refused({"truncate": True, "count": 1}, "cut off, in a transaction", True)
    refused({"status": 500, "count": 1}, "500, in a transaction", True)
    r, got = answer(s, "pits")
    check(r.rc == 0 and got == want, "the next query of the transaction: %s" % r.err.strip())
    r = s.run("COMMIT;")
    check(r.rc == 0, "COMMIT: %s" % r.err)

    # A cursor read to its end, then closed.
    es.faults({"status": 500, "count": 1, "exact": "/_pit"})
    r = s.run("BEGIN; DECLARE c CURSOR FOR %s FETCH ALL FROM c; CLOSE c; COMMIT;"
              % (QUERY % "pits"), timeout=60)
    es.clear()
    check(r.rc == 0 and r.out.split() == want, "cursor: %s" % r.err.strip())
    check("could not close the point in time" in r.err, "cursor: no WARNING: %s" % r.err)

    # A cancel while the close waits is still the cancel.
    es.faults({"delay_ms": 5000, "count": 1, "exact": "/_pit"})
    r = s.run("SET statement_timeout = '1s'; %s" % (QUERY % "pits"), timeout=60)
    es.clear()
    check(r.rc == 1 and "57014" in r.err, "statement_timeout during the close: %s"
          % r.err.strip())
    r = s.run("RESET statement_timeout;")
    r, got = answer(s, "pits")
    check(r.rc == 0 and got == want, "the query after the cancel: %s" % r.err.strip())

    s.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
