#!/usr/bin/env python3
"""pgpoly_vector on Qdrant: an UPDATE that moves a row onto the id of
another row of the same statement.

A change of id is sent as a delete of the old id and an upsert of the new
one, row by row.  A swap of ids 1 and 2 (delete 1, upsert 2 = 'one',
delete 2, upsert 1 = 'two') left 1|two and lost 'one'; a shift 1->2,
2->3 lost a row the same way.  As with Redis, a row moved onto the id of
another row of the statement is now an ERROR (23505) raised before
anything is sent, and a row moved onto an id the statement does not touch
overwrites what is there, as INSERT does.  Against the stand-in
test/qdrant_fixture.py (which scrolls in id order), in transactional and
immediate mode:

  * swap 1 <-> 2: 23505 naming the table and an id, nothing sent;
  * 1 -> 2 with 2 met later (row moved onto a row the statement then
    meets), and 2 -> 1 with 1 met (and updated) earlier;
  * shifts 1->2, 2->3 and 3->2, 2->1;
  * a move onto an untouched id overwrites it; moves onto free ids work.
"""

import os
import sys

import pgtest
import test_dml_differential as dd

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qdrant_fixture  # noqa: E402

check = pgtest.check

DOCS = {1: "one", 2: "two", 3: "three"}


def reset(fx):
    with fx.lock:
        fx.collections["sw"]["points"] = {
            i: {"id": i, "vector": [float(i), 0.0], "payload": {"document": d}}
            for i, d in DOCS.items()}
    fx.clear_log()


def stored(fx):
    """{id: document} of the collection."""
    with fx.lock:
        return {str(i): p["payload"].get("document")
                for i, p in fx.collections["sw"]["points"].items()}


def writes(fx):
    return fx.requests("PUT", "/points") + fx.requests("POST", "/points/delete")


def test():
    mark = pgtest.pg_log_mark()
    fx = qdrant_fixture.Fixture()
    fx.add_collection("sw", 2, "Euclid")
    port = fx.start()
    db = pgtest.create_db("pgpoly_vqsw")
    r = pgtest.psql(
        "CREATE SERVER qd FOREIGN DATA WRAPPER pgpoly_vector "
        "OPTIONS (url 'http://127.0.0.1:%d', provider 'qdrant');\n"
        "CREATE USER MAPPING FOR CURRENT_USER SERVER qd;\n"
        "CREATE FOREIGN TABLE t (id text, embedding real[], document text) SERVER qd"
        " OPTIONS (collection 'sw');\n"
        "CREATE FOREIGN TABLE ti (id text, embedding real[], document text) SERVER qd"
        " OPTIONS (collection 'sw', write_mode 'immediate');\n" % port, db=db)
    check(r.rc == 0, "setup: %s" % r.err)
    sess = pgtest.Session(db=db)
    before = {str(i): d for i, d in DOCS.items()}

    refused = [
        ("swap", "SET id = CASE id WHEN '1' THEN '2' WHEN '2' THEN '1' ELSE id END", "2"),
        ("onto a later row", "SET id = CASE id WHEN '1' THEN '2' ELSE id END", "2"),
        ("onto an earlier row",
         "SET id = CASE id WHEN '2' THEN '1' ELSE id END, document = upper(document)", "1"),
        ("shift up", "SET id = CASE id WHEN '1' THEN '2' WHEN '2' THEN '3' ELSE id END", "2"),
        ("shift down", "SET id = CASE id WHEN '3' THEN '2' WHEN '2' THEN '1' ELSE id END",
         "1"),
    ]
    for tbl, wrap in (("t", "BEGIN; %s; COMMIT;"), ("ti", "%s;")):
        for what, setlist, at in refused:
            reset(fx)
            r = sess.run(wrap % ("UPDATE %s %s" % (tbl, setlist)))
            check(r.rc == 1 and "23505" in r.err
                  and 'UPDATE of foreign table "%s" moves' % tbl in r.err
                  and 'id "%s"' % at in r.err
                  and "Qdrant holds one row there" in r.err
                  and "Move the rows in separate statements" in r.err,
                  "%s %s: should fail with 23505 naming id %s: %s"
                  % (tbl, what, at, r.err.strip()))
            check(stored(fx) == before, "%s %s: store changed: %r" % (tbl, what, stored(fx)))
            check(writes(fx) == [], "%s %s: writes sent: %r" % (tbl, what, writes(fx)))

        # A move onto an id the statement does not touch overwrites it.
        reset(fx)
        r = sess.run(wrap % ("UPDATE %s SET id = '3' WHERE id = '1'" % tbl))
        check(r.rc == 0, "%s onto untouched: %s" % (tbl, r.err))
        check(stored(fx) == {"2": "two", "3": "one"}, "%s onto untouched: %r"
              % (tbl, stored(fx)))

        # Moves onto free ids, and rows that stay, are fine.
        reset(fx)
        r = sess.run(wrap % ("UPDATE %s SET id = CASE id WHEN '3' THEN id ELSE id || '0' END"
                             % tbl))
        check(r.rc == 0, "%s free ids: %s" % (tbl, r.err))
        check(stored(fx) == {"10": "one", "20": "two", "3": "three"}, "%s free ids: %r"
              % (tbl, stored(fx)))

    # Chroma (a real server, when the suite runs one): the same rule.
    chroma = os.environ.get("CHROMA_URL")
    if chroma:
        r = pgtest.psql(
            "CREATE SERVER ch FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url '%s');\n"
            "CREATE USER MAPPING FOR CURRENT_USER SERVER ch;\n"
            "CREATE FOREIGN TABLE c (id text, embedding real[], document text) SERVER ch"
            " OPTIONS (collection 'pgpoly_swap_%d', create_collection 'true', distance 'l2');\n"
            "CREATE FOREIGN TABLE ci (id text, embedding real[], document text) SERVER ch"
            " OPTIONS (collection 'pgpoly_swap_%d', create_collection 'true', distance 'l2',"
            " write_mode 'immediate');\n"
            % (chroma, os.getpid(), os.getpid()), db=db)
        check(r.rc == 0, "chroma setup: %s" % r.err)
        fill = ("DELETE FROM ci; INSERT INTO ci VALUES ('1', '{1,0}', 'one'), "
                "('2', '{2,0}', 'two'), ('3', '{3,0}', 'three');")
        rows = "SELECT id, document FROM ci ORDER BY id;"
        for tbl, wrap in (("c", "BEGIN; %s; COMMIT;"), ("ci", "%s;")):
            for what, setlist, at in (refused[0], refused[3]):
                r = sess.run(fill)
                check(r.rc == 0, "chroma fill: %s" % r.err)
                r = sess.run(wrap % ("UPDATE %s %s" % (tbl, setlist)))
                check(r.rc == 1 and "23505" in r.err and 'id "%s"' % at in r.err
                      and "Chroma holds one row there" in r.err,
                      "chroma %s %s: should fail with 23505: %s" % (tbl, what, r.err.strip()))
                r = sess.run(rows)
                check(r.out.split() == ["1|one", "2|two", "3|three"],
                      "chroma %s %s: rows changed: %r" % (tbl, what, r.out))
        dd.drop_collection(chroma, "pgpoly_swap_%d" % os.getpid())
    else:
        print("note: CHROMA_URL not set, Chroma skipped")

    sess.close()
    fx.stop()
    pgtest.check_pg_log(mark)


pgtest.main(test)
