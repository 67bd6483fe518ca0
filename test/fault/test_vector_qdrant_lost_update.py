#!/usr/bin/env python3
"""pgpoly_vector on Qdrant: an UPDATE of a point another client deleted.

Qdrant's upsert (PUT /collections/{c}/points) creates a point it does not
hold, so an UPDATE sent as a plain upsert brings back a point another client
deleted after the UPDATE read it.  pgpoly checks the batch's ids with one get
before the update (as for Chroma, sql/vector_lost_update.sql) and fails with
40001 naming the record, and sends the update with "update_mode":
"update_only" (Qdrant's UpdateMode: "only update existing points, do not
insert new points"), so that a point deleted between that get and the update
is not created again either.  Against the stand-in test/qdrant_fixture.py:

  * transactional: UPDATE of points 1 and 3, point 1 deleted before COMMIT:
    COMMIT fails with 40001 naming "1"; point 1 stays deleted, point 3 is
    unchanged (nothing of the batch sent);
  * immediate: point 2 deleted after the UPDATE's scan read it: the
    statement fails with 40001; point 2 stays deleted;
  * point 3 deleted between the get and the update: the update creates
    nothing (the COMMIT succeeds, as if the delete came after it);
  * an UPDATE of points that are there: one get, one upsert with
    update_mode "update_only", applied; an INSERT's upsert has no
    update_mode.
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
                for i, p in fx.collections["lu"]["points"].items()}


def delete_after(fx_, nth, pid):
    """A fixture.after hook: another client deletes point pid right after
    the nth retrieve by ids (POST /collections/lu/points) from now."""
    seen = [0]

    def hook(fx, method, path):
        if method == "POST" and path == "/collections/lu/points":
            seen[0] += 1
            if seen[0] == nth:
                fx.collections["lu"]["points"].pop(pid, None)
    fx_.after = hook


def test():
    mark = pgtest.pg_log_mark()
    fx = qdrant_fixture.Fixture()
    fx.add_collection("lu", 2, "Euclid", POINTS)
    port = fx.start()
    db = pgtest.create_db("pgpoly_vqlu")
    r = pgtest.psql(
        "CREATE SERVER qd FOREIGN DATA WRAPPER pgpoly_vector "
        "OPTIONS (url 'http://127.0.0.1:%d', provider 'qdrant');\n"
        "CREATE USER MAPPING FOR CURRENT_USER SERVER qd;\n"
        "CREATE FOREIGN TABLE t (id text, embedding real[], document text) SERVER qd"
        " OPTIONS (collection 'lu');\n"
        "CREATE FOREIGN TABLE ti (id text, embedding real[], document text) SERVER qd"
        " OPTIONS (collection 'lu', write_mode 'immediate');\n" % port, db=db)
    check(r.rc == 0, "setup: %s" % r.err)
    sess = pgtest.Session(db=db)

    # Transactional: another client deletes point 1 before COMMIT.
    r = sess.run("BEGIN; UPDATE t SET document = upper(document) WHERE id IN ('1', '3');")
    check(r.rc == 0, "UPDATE: %s" % r.err)
    with fx.lock:
        fx.collections["lu"]["points"].pop(1)
    r = sess.run("COMMIT;")
    check(r.rc == 1 and "40001" in r.err and 'record "1"' in r.err,
          "COMMIT should fail with 40001 naming record 1: %s" % r.err.strip())
    got = stored(fx)
    check("1" not in got, "a deleted point was brought back by the UPDATE: %r" % got)
    check(got.get("3") == "three", "the batch's other point changed: %r" % got)

    # Immediate: point 2 deleted after the UPDATE's scan read it.
    delete_after(fx, 1, 2)
    r = sess.run("UPDATE ti SET document = 'TWO' WHERE id = '2';")
    fx.after = None
    check(r.rc == 1 and "40001" in r.err and 'record "2"' in r.err,
          "UPDATE should fail with 40001 naming record 2: %s" % r.err.strip())
    got = stored(fx)
    check("2" not in got, "a deleted point was brought back by the UPDATE: %r" % got)

    # Point 3 deleted between the get before the update and the update.
    r = sess.run("BEGIN; UPDATE t SET document = 'THREE' WHERE id = '3';")
    check(r.rc == 0, "UPDATE: %s" % r.err)
    fx.clear_log()
    delete_after(fx, 1, 3)
    r = sess.run("COMMIT;")
    fx.after = None
    check(r.rc == 0, "COMMIT: %s" % r.err)
    got = stored(fx)
    check("3" not in got, "a point deleted before the update was created again: %r" % got)

    # Points that are there: one get, one update_only upsert, applied.
    fx.clear_log()
    r = sess.run("UPDATE ti SET document = 'FOUR' WHERE id = '4' RETURNING id, document;")
    check(r.rc == 0 and r.out.strip() == "4|FOUR", "UPDATE: %r %s" % (r.out, r.err))
    puts = fx.requests("PUT", "/points")
    check(len(fx.requests("POST", "/lu/points")) == 2 and len(puts) == 1,
          "one scan get, one check get, one upsert: %r" % fx.requests())
    check(puts and puts[0][2].get("update_mode") == "update_only",
          "the update's upsert should carry update_mode update_only: %r" % puts)
    check(stored(fx).get("4") == "FOUR", "UPDATE applied: %r" % stored(fx))
    fx.clear_log()
    r = sess.run("INSERT INTO t VALUES ('5', '{5,0}', 'five');")
    check(r.rc == 0, "INSERT: %s" % r.err)
    puts = fx.requests("PUT", "/points")
    check(len(puts) == 1 and "update_mode" not in puts[0][2],
          "an INSERT is a plain upsert: %r" % puts)
    check(stored(fx).get("5") == "five", "INSERT applied: %r" % stored(fx))

    sess.close()
    fx.stop()
    pgtest.check_pg_log(mark)


pgtest.main(test)
