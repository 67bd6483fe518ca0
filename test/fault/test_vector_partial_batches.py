#!/usr/bin/env python3
"""pgpoly_vector writes sent in several requests, a later one failing.

A vector service has no transactions: when the writes of a COMMIT (or of
an immediate-mode statement) go in several requests (batch_size) and a
later request fails, the earlier requests' records are applied and stay.
The error must say so, with how many, and how many records were not sent,
so that nothing the user wrote is lost without a word.  Runs against the
Qdrant stand-in (test/qdrant_fixture.py, whose fail_writes fails a
collection's write requests after the first few); Chroma goes through the
same batching code (fdw/vector_service.c).

  * transactional, batch_size 2, 5 rows, the second request fails: the
    COMMIT fails; 2 records applied (in the collection), 2 in the failing
    request, 1 not sent; the error says "2 earlier record(s)" and "1 later";
  * immediate, batch_size 2, 5 rows, the second batch fails: the statement
    fails; its 2 earlier rows are in the collection, and the error says so
    (a ROLLBACK TO SAVEPOINT would not take them back);
  * the first request failing: nothing applied, and no such claim.
"""

import os
import sys

import pgtest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qdrant_fixture  # noqa: E402

check = pgtest.check

ROWS = "SELECT g::text, ARRAY[g, 0]::real[] FROM generate_series(1, 5) g"


def stored(fx, name):
    """The ids in collection name, sorted."""
    with fx.lock:
        return sorted(str(i) for i in fx.collections[name]["points"])


def test():
    mark = pgtest.pg_log_mark()
    fx = qdrant_fixture.Fixture()
    fx.add_collection("tx", 2, "Euclid")
    fx.add_collection("im", 2, "Euclid")
    fx.add_collection("first", 2, "Euclid")
    port = fx.start()
    db = pgtest.create_db("pgpoly_vpartial")
    r = pgtest.psql(
        "CREATE SERVER qd FOREIGN DATA WRAPPER pgpoly_vector "
        "OPTIONS (url 'http://127.0.0.1:%d', provider 'qdrant');\n"
        "CREATE USER MAPPING FOR CURRENT_USER SERVER qd;\n"
        "CREATE FOREIGN TABLE t_tx (id text, embedding real[]) SERVER qd"
        " OPTIONS (collection 'tx', batch_size '2');\n"
        "CREATE FOREIGN TABLE t_im (id text, embedding real[]) SERVER qd"
        " OPTIONS (collection 'im', batch_size '2', write_mode 'immediate');\n"
        "CREATE FOREIGN TABLE t_first (id text, embedding real[]) SERVER qd"
        " OPTIONS (collection 'first', batch_size '2');\n"
        "CREATE TABLE native (n int);\n" % port, db=db)
    check(r.rc == 0, "setup: %s" % r.err)
    sess = pgtest.Session(db=db)

    # COMMIT in three requests (2, 2, 1), the second failing.
    fx.fail_writes["tx"] = [1, 500, "Service internal error: disk full"]
    r = sess.run("BEGIN; INSERT INTO native VALUES (1); INSERT INTO t_tx %s; COMMIT;" % ROWS)
    check(r.rc == 1 and "disk full" in r.err, "COMMIT should fail: %s" % r.err)
    check("2 earlier record(s)" in r.err and "stay applied" in r.err,
          "the COMMIT's error should say the 2 records of the first request stay "
          "applied: %s" % r.err.strip())
    check("1 later record(s)" in r.err and "not sent" in r.err,
          "the COMMIT's error should say the last record was not sent: %s" % r.err.strip())
    check(stored(fx, "tx") == ["1", "2"], "applied: %r" % stored(fx, "tx"))
    check(sess.value("SELECT count(*) FROM native;") == "0", "the native row rolled back")

    # Immediate mode: each batch is sent while the statement runs.
    fx.fail_writes["im"] = [1, 500, "Service internal error: disk full"]
    r = sess.run("BEGIN; SAVEPOINT s; INSERT INTO t_im %s;" % ROWS)
    check(r.rc == 1 and "disk full" in r.err, "INSERT should fail: %s" % r.err)
    check("2 earlier write(s)" in r.err and "stay applied" in r.err,
          "the statement's error should say its 2 rows of the first batch stay "
          "applied: %s" % r.err.strip())
    r = sess.run("ROLLBACK TO SAVEPOINT s; COMMIT;")
    check(r.rc == 0, "rollback to savepoint: %s" % r.err)
    check(stored(fx, "im") == ["1", "2"], "applied: %r" % stored(fx, "im"))

    # The first request failing: nothing applied, nothing claimed.
    fx.fail_writes["first"] = [0, 500, "Service internal error: disk full"]
    r = sess.run("INSERT INTO t_first %s;" % ROWS)
    check(r.rc == 1 and "disk full" in r.err and "stay applied" not in r.err,
          "a failed first request applied nothing: %s" % r.err.strip())
    check(stored(fx, "first") == [], "applied: %r" % stored(fx, "first"))

    sess.close()
    fx.stop()
    pgtest.check_pg_log(mark)


pgtest.main(test)
