#!/usr/bin/env python3
"""pgpoly_vector on Qdrant (test/qdrant_fixture.py): a collection another
client drops and re-creates under the same name while this session holds
its cached description.

Qdrant addresses a collection by name, so nothing answers "not found" for a
re-created collection: a request built for the old description reaches the
new one.  What must hold (README "Limitations", the cache paragraph):

  * pgpoly.vector_search in a later transaction answers in the metric of the
    collection as it is now (before: the old distance, computed locally);
  * inside one transaction, a k-NN whose query vector has the old dimension
    fails with 40001 naming the re-creation, not Qdrant's bare HTTP 400;
  * inside one transaction, a k-NN on a collection re-created with another
    distance (same dimension: Euclid to Cosine, Cosine to Dot with dot
    products beyond 1) fails with 40001 (before: Qdrant's ranking read with
    the old distance: wrong rows, wrong _distance);
  * a COMMIT whose buffered writes have the old dimension fails with 22000
    naming both dimensions and the re-creation, not HTTP 400;
  * a re-created collection of the same distance and dimension is simply
    used; one dropped and not re-created is 42P01-like HV00R "does not
    exist", and a write to it never succeeds silently.
"""

import os
import sys

import pgtest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qdrant_fixture  # noqa: E402

check = pgtest.check

PTS = [{"id": i, "vector": v, "payload": {"n": i}}
       for i, v in ((1, [1.0, 0.0]), (2, [0.0, 1.0]), (3, [3.0, 3.0]), (4, [-1.0, 0.2]))]
Q = "'{0.9,0.1}'"


def res(r):
    return "rc=%s %s out=%r err=%r" % (r.rc, r.sqlstate, r.out.strip()[:300],
                                       r.err.strip()[:400])


def test():
    mark = pgtest.pg_log_mark()
    fx = qdrant_fixture.Fixture()
    fx.add_collection("rc", 2, "Euclid", PTS)
    port = fx.start()
    db = pgtest.create_db("pgpoly_qdrant_recreate")
    r = pgtest.psql(
        "CREATE SERVER qd FOREIGN DATA WRAPPER pgpoly_vector "
        "OPTIONS (url 'http://127.0.0.1:%d', provider 'qdrant');\n"
        "CREATE USER MAPPING FOR CURRENT_USER SERVER qd;\n"
        "CREATE FOREIGN TABLE t (id text, embedding real[], n int, _distance float8)"
        " SERVER qd OPTIONS (collection 'rc');\n" % port, db=db)
    check(r.rc == 0, "setup: %s" % r.err)
    sess = pgtest.Session(db=db)

    # vector_search in a later transaction: the metric of the collection now.
    r = sess.run("SELECT id FROM pgpoly.vector_search('t', %s, 1);" % Q)
    check(r.rc == 0 and r.out.split() == ["1"], "vector_search l2: %s" % res(r))
    fx.add_collection("rc", 2, "Dot", PTS)
    fx.clear_log()
    r = sess.run("SELECT id, distance FROM pgpoly.vector_search('t', %s, 1);" % Q)
    check(r.rc == 0 and r.out.split() == ["3|-3"] and
          len(fx.requests("POST", "/points/query")) == 1,
          "vector_search after re-creation as Dot: the nearest by -dot, pushed: %s %r"
          % (res(r), [x[1] for x in fx.requests()]))

    # Inside one transaction: re-created with another dimension.
    fx.add_collection("rc", 2, "Euclid", PTS)
    r = sess.run("BEGIN; SELECT id FROM t ORDER BY embedding <-> %s LIMIT 1;" % Q)
    check(r.rc == 0 and r.out.split() == ["1"], "k-NN in a transaction: %s" % res(r))
    fx.add_collection("rc", 3, "Euclid", [{"id": 9, "vector": [1.0, 0.0, 0.0], "payload": {}}])
    r = sess.run("SELECT id FROM t ORDER BY embedding <-> %s LIMIT 1;" % Q)
    check(r.rc == 1 and r.sqlstate == "40001" and "re-created" in r.err and
          "HTTP 400" not in r.err,
          "k-NN of the old dimension in the same transaction: %s" % res(r))
    sess.run("ROLLBACK;")
    r = sess.run("SELECT id FROM t ORDER BY embedding <-> '{1,0,0}' LIMIT 1;")
    check(r.rc == 0 and r.out.split() == ["9"], "run again: %s" % res(r))

    # Inside one transaction: re-created with another distance, same dimension.
    fx.add_collection("rc", 2, "Euclid", PTS)
    r = sess.run("BEGIN; SELECT id FROM t ORDER BY embedding <-> %s LIMIT 2;" % Q)
    check(r.rc == 0 and r.out.split() == ["1", "2"], "k-NN l2: %s" % res(r))
    fx.add_collection("rc", 2, "Cosine", PTS)
    r = sess.run("SELECT id, _distance FROM t ORDER BY embedding <-> %s LIMIT 2;" % Q)
    check(r.rc == 1 and r.sqlstate == "40001" and "re-created" in r.err,
          "k-NN of a collection re-created as Cosine in the same transaction: %s" % res(r))
    sess.run("ROLLBACK;")
    r = sess.run("SELECT id FROM t ORDER BY embedding <=> %s LIMIT 2;" % Q)
    check(r.rc == 0 and r.out.split() == ["1", "3"], "cosine after: %s" % res(r))

    # Re-created from Cosine to Dot in one transaction: both rank the highest
    # score first, but a dot product beyond [-1, 1] is no cosine similarity.
    fx.add_collection("rc", 2, "Cosine", PTS)
    r = sess.run("BEGIN; SELECT id FROM t ORDER BY embedding <=> %s LIMIT 2;" % Q)
    check(r.rc == 0 and r.out.split() == ["1", "3"], "k-NN cosine: %s" % res(r))
    fx.add_collection("rc", 2, "Dot", PTS)
    r = sess.run("SELECT id FROM t ORDER BY embedding <=> %s LIMIT 2;" % Q)
    check(r.rc == 1 and r.sqlstate == "40001" and "re-created" in r.err,
          "k-NN of a collection re-created as Dot in the same transaction: %s" % res(r))
    sess.run("ROLLBACK;")

    # A COMMIT whose writes have the old dimension.
    fx.add_collection("rc", 2, "Euclid", PTS)
    r = sess.run("BEGIN; INSERT INTO t (id, embedding) VALUES ('7', '{0.5,0.5}');")
    check(r.rc == 0, "insert: %s" % res(r))
    fx.add_collection("rc", 3, "Euclid")
    fx.clear_log()
    r = sess.run("COMMIT;")
    check(r.rc == 1 and r.sqlstate == "22000" and
          'has 2 dimensions, collection "rc" has 3' in r.err and "re-created" in r.err
          and "HTTP 400" not in r.err,
          "COMMIT of the old dimension: %s" % res(r))
    check(fx.collections["rc"]["points"] == {}, "nothing written")
    sess.run("ROLLBACK;")

    # Same distance and dimension: the new collection is used.
    fx.add_collection("rc", 2, "Euclid", PTS)
    r = sess.run("BEGIN; SELECT id FROM t ORDER BY embedding <-> %s LIMIT 1;" % Q)
    fx.add_collection("rc", 2, "Euclid", PTS[1:])
    r = sess.run("SELECT id FROM t ORDER BY embedding <-> %s LIMIT 1; "
                 "INSERT INTO t (id, embedding) VALUES ('8', '{1,1}'); COMMIT;" % Q)
    check(r.rc == 0 and r.out.split()[0] == "2" and 8 in fx.collections["rc"]["points"],
          "same description: %s" % res(r))

    # Dropped, not re-created: a write in flight fails, never succeeds silently.
    r = sess.run("BEGIN; INSERT INTO t (id, embedding) VALUES ('11', '{0.5,0.5}');")
    check(r.rc == 0, "insert: %s" % res(r))
    del fx.collections["rc"]
    r = sess.run("COMMIT;")
    check(r.rc == 1 and "does not exist" in r.err, "COMMIT to a dropped collection: %s" % res(r))
    sess.run("ROLLBACK;")

    sess.close()
    fx.stop()
    pgtest.check_pg_log(mark)


pgtest.main(test)
