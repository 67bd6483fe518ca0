#!/usr/bin/env python3
"""pgpoly_vector on Qdrant: an UPDATE that changes the id of a point
another client deleted.

An UPDATE that keeps the id fails with 40001 when another client deleted
the record after the UPDATE read it (test_vector_qdrant_lost_update).  One
that changes the id is sent as a delete of the old id and an upsert of the
new one, and nothing checked that the old record was still there: the
deleted point came back under its new id, with the content the UPDATE had
read.  It now fails the same way, with nothing sent.  Against the stand-in
test/qdrant_fixture.py:

  * transactional: UPDATE SET id = '9' WHERE id = '1', point 1 deleted
    before COMMIT: COMMIT fails with 40001 naming "1"; no point 9;
  * immediate: point 2 deleted after the UPDATE's scan read it: 40001, no
    point 8;
  * the same UPDATEs of points that are there move them.
"""

import os
import sys

import pgtest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qdrant_fixture  # noqa: E402

check = pgtest.check

POINTS = [{"id": i, "vector": [float(i), 0.0], "payload": {"document": d}}
          for i, d in ((1, "one"), (2, "two"), (3, "three"), (4, "four"))]


def stored(fx):
    """{id: document} of the collection."""
    with fx.lock:
        return {str(i): p["payload"].get("document")
                for i, p in fx.collections["rk"]["points"].items()}


def test():
    mark = pgtest.pg_log_mark()
    fx = qdrant_fixture.Fixture()
    fx.add_collection("rk", 2, "Euclid", POINTS)
    port = fx.start()
    db = pgtest.create_db("pgpoly_vqrk")
    r = pgtest.psql(
        "CREATE SERVER qd FOREIGN DATA WRAPPER pgpoly_vector "
        "OPTIONS (url 'http://127.0.0.1:%d', provider 'qdrant');\n"
        "CREATE USER MAPPING FOR CURRENT_USER SERVER qd;\n"
        "CREATE FOREIGN TABLE t (id text, embedding real[], document text) SERVER qd"
        " OPTIONS (collection 'rk');\n"
        "CREATE FOREIGN TABLE ti (id text, embedding real[], document text) SERVER qd"
        " OPTIONS (collection 'rk', write_mode 'immediate');\n" % port, db=db)
    check(r.rc == 0, "setup: %s" % r.err)
    sess = pgtest.Session(db=db)

    # Transactional: another client deletes point 1 before COMMIT.
    r = sess.run("BEGIN; UPDATE t SET id = '9' WHERE id = '1';")
    check(r.rc == 0, "UPDATE: %s" % r.err)
    with fx.lock:
        fx.collections["rk"]["points"].pop(1)
    r = sess.run("COMMIT;")
    check(r.rc == 1 and "40001" in r.err and 'record "1"' in r.err,
          "COMMIT should fail with 40001 naming record 1: %s" % r.err.strip())
    got = stored(fx)
    check("9" not in got and "1" not in got,
          "a deleted point was brought back under its new id: %r" % got)

    # Immediate: point 2 deleted after the UPDATE's scan read it.
    seen = [0]

    def hook(fx_, method, path):
        if method == "POST" and path.startswith("/collections/rk/points"):
            seen[0] += 1
            if seen[0] == 1:
                fx_.collections["rk"]["points"].pop(2, None)
    fx.after = hook
    r = sess.run("UPDATE ti SET id = '8' WHERE id = '2';")
    fx.after = None
    check(r.rc == 1 and "40001" in r.err and 'record "2"' in r.err,
          "UPDATE should fail with 40001 naming record 2: %s" % r.err.strip())
    got = stored(fx)
    check("8" not in got and "2" not in got,
          "a deleted point was brought back under its new id: %r" % got)

    # Points that are there move, in both modes.
    r = sess.run("UPDATE ti SET id = '7' WHERE id = '3' RETURNING id, document;")
    check(r.rc == 0 and r.out.strip() == "7|three", "UPDATE: %r %s" % (r.out, r.err))
    r = sess.run("BEGIN; UPDATE t SET id = '6', document = 'FOUR' WHERE id = '4'; COMMIT;")
    check(r.rc == 0, "UPDATE: %s" % r.err)
    check(stored(fx) == {"7": "three", "6": "FOUR"}, "moved: %r" % stored(fx))

    sess.close()
    fx.stop()
    pgtest.check_pg_log(mark)


pgtest.main(test)
