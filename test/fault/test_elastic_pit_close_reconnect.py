#!/usr/bin/env python3
"""pgpoly_elastic: the close of a cursor's point in time (PIT) that needs a
new connection to a store that went away is a WARNING, like any other
failed close.

Two cursors hold PITs on one connection and the Elasticsearch server goes
away.  CLOSE of the first sends DELETE /_pit, whose connect failure is
caught (a WARNING) and leaves the connection to be reopened at its next
use.  CLOSE of the second must reopen it to build its request (the PIT
close's form depends on the server's version), and that connect fails
too: it was raised as the CLOSE's ERROR, aborting the transaction, while
the first cursor's identical failure was a WARNING.  Both CLOSEs warn, the
transaction goes on (a native query answers) and COMMITs.
"""

import es_helper
import pgtest

check = pgtest.check

QUERY = "SELECT n FROM pits ORDER BY n"


def test():
    mark = pgtest.pg_log_mark()
    es = es_helper.Standin()
    es.load("pits", 50)
    db = pgtest.create_db("pgpoly_es_pitrec")
    r = pgtest.psql("""
        CREATE SERVER es FOREIGN DATA WRAPPER pgpoly_elastic
            OPTIONS (url '%s', timeout_ms '5000', connect_timeout_ms '2000');
        CREATE USER MAPPING FOR CURRENT_USER SERVER es;
        CREATE FOREIGN TABLE pits (_id text, n int) SERVER es OPTIONS (fetch_size '10');
    """ % es.url, db=db)
    check(r.rc == 0, "setup: %s" % r.err)
    s = pgtest.Session(db)
    r = s.run("BEGIN; DECLARE c1 CURSOR FOR %s; DECLARE c2 CURSOR FOR %s;"
              " FETCH 1 FROM c1; FETCH 1 FROM c2;" % (QUERY, QUERY), timeout=60)
    check(r.rc == 0 and r.out.split() == ["0", "0"], "cursors: %r %s" % (r.out, r.err))
    opened = sum(v for k, v in es.stats()["counts"].items() if "_pit" in k)
    check(opened == 2, "each cursor should hold a PIT: %r" % es.stats()["counts"])
    es.stop()
    for c in ("c1", "c2"):
        r = s.run("CLOSE %s;" % c, timeout=60)
        check(r.rc == 0, "CLOSE %s with the server gone should warn, not fail: %s"
              % (c, r.err.strip()))
        check("could not close the point in time of index \"pits\"" in r.err,
              "CLOSE %s: no WARNING: %s" % (c, r.err.strip()))
    r = s.run("SELECT count(*) FROM generate_series(1, 7);")
    check(r.rc == 0 and r.out.strip() == "7", "the transaction after the CLOSEs: %r %s"
          % (r.out, r.err.strip()))
    r = s.run("COMMIT;")
    check(r.rc == 0 and "ROLLBACK" not in r.out, "COMMIT: %r %s" % (r.out, r.err.strip()))
    s.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
