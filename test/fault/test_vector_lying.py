#!/usr/bin/env python3
"""pgpoly_vector against a vector service that lies (Qdrant stand-in,
test/qdrant_fixture.py, whose answers each case rewrites).

Every answer that cannot be the answer to the request sent must be a clear
ERROR (SQLSTATE HV004, or HV004-class "unexpected" for a malformed field,
naming the record and what was wrong), never a wrong row:

  * a k-NN answer with more records than the LIMIT asked, a record twice,
    a record without a score (missing, null, a string), at a negative
    Euclidean distance or a cosine distance outside [0, 2], or not nearest
    first;
  * a record whose embedding has another dimension than the collection,
    or that lacks the embedding asked for (a scan, a by-ids read, a local
    k-NN), or whose vector is not an array;
  * a payload that is not an object, a payload "document" that is not a
    string.

What a service may legitimately answer still passes: fewer records than
the LIMIT (a collection with fewer matches), ties in any order.
"""

import os
import sys

import pgtest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qdrant_fixture  # noqa: E402

check = pgtest.check

PTS = [{"id": i, "vector": v, "payload": {"document": "d%d" % i, "n": i}}
       for i, v in ((1, [1.0, 0.0]), (2, [0.0, 1.0]), (3, [3.0, 3.0]), (4, [-1.0, 0.2]))]
KNN = "SELECT id, _distance FROM t ORDER BY embedding <-> '{0.9,0.1}' LIMIT 3;"


def points(result):
    """The list of points of a result (query/scroll: result.points)."""
    return result["points"] if isinstance(result, dict) else result


def on_query(f):
    """A mangle rewriting the points of k-NN answers only."""
    def mangle(method, path, result):
        if path.endswith("/points/query"):
            result["points"] = f(result["points"])
        return result
    return mangle


def on_points(f):
    """A mangle rewriting each point of every answer."""
    def mangle(method, path, result):
        for p in points(result):
            f(p)
        return result
    return mangle


def test():
    mark = pgtest.pg_log_mark()
    fx = qdrant_fixture.Fixture()
    fx.add_collection("lc", 2, "Euclid", PTS)
    port = fx.start()
    db = pgtest.create_db("pgpoly_vector_lying")
    r = pgtest.psql(
        "CREATE SERVER qd FOREIGN DATA WRAPPER pgpoly_vector "
        "OPTIONS (url 'http://127.0.0.1:%d', provider 'qdrant');\n"
        "CREATE USER MAPPING FOR CURRENT_USER SERVER qd;\n"
        "CREATE FOREIGN TABLE t (id text, embedding real[], document text, n int,"
        " _distance float8) SERVER qd OPTIONS (collection 'lc');\n" % port, db=db)
    check(r.rc == 0, "setup: %s" % r.err)
    sess = pgtest.Session(db=db)
    pid = sess.value("SELECT pg_backend_pid();")
    r = sess.run(KNN)
    truth = r.out
    check(r.rc == 0 and [l.split("|")[0] for l in truth.split()] == ["1", "2", "4"],
          "honest k-NN: %s %s" % (r.out, r.err))

    def lie(name, mangle, sql, want_state, *want_text):
        fx.mangle = mangle
        r = sess.run(sql)
        fx.mangle = None
        check(r.rc == 1 and r.sqlstate == want_state and
              all(t in r.err for t in want_text),
              "%s: want %s %r; got rc=%s %s out=%r err=%r"
              % (name, want_state, want_text, r.rc, r.sqlstate, r.out, r.err.strip()[:400]))

    # k-NN answers that are not answers.
    lie("one more record than asked", on_query(lambda ps: ps + [dict(ps[-1], id=3)]), KNN,
        "HV004", "among 4 records answering a k-NN request for 3")
    lie("a record twice", on_query(lambda ps: [ps[0], ps[0]] + ps[2:]), KNN,
        "HV004", 'record "1"', "twice in a k-NN answer")
    lie("not nearest first", on_query(lambda ps: ps[::-1]), KNN,
        "HV004", "after record", "in a k-NN answer at distance")
    for what, score in (("missing", None), ("null", "null"), ("a string", "NaN")):
        def drop(ps, score=score):
            ps[1] = dict(ps[1])
            if score is None:
                del ps[1]["score"]
            else:
                ps[1]["score"] = None if score == "null" else score
            return ps
        lie("a score " + what, on_query(drop), KNN, "HV004", 'record "2"',
            "without a distance")
    lie("a negative Euclidean distance",
        on_query(lambda ps: [dict(ps[0], score=-1.0)] + ps[1:]), KNN,
        "HV004", 'record "1"', "negative Euclidean distance")

    fx.add_collection("lcos", 2, "Cosine", PTS)
    sess.run("CREATE FOREIGN TABLE tc (id text, embedding real[]) SERVER qd "
             "OPTIONS (collection 'lcos');")
    lie("a cosine similarity above 1",
        on_query(lambda ps: [dict(ps[0], score=1.5)] + ps[1:]),
        "SELECT id FROM tc ORDER BY embedding <=> '{0.9,0.1}' LIMIT 2;",
        "HV004", 'record "1"', "cosine distance outside [0, 2] (-0.5)")

    # Records that do not belong to the collection or lack what was asked.
    def widen(p):
        if p.get("vector") is not None and p["id"] == 2:
            p["vector"] = p["vector"] + [0.5]
    for sql in ("SELECT id, embedding FROM t;", "SELECT embedding FROM t WHERE id = '2';",
                "SELECT id FROM t ORDER BY embedding <#> '{1,1}' LIMIT 2;"):
        lie("an embedding of 3 dimensions (%s)" % sql, on_points(widen), sql, "HV004",
            'record "2"', 'embedding of 3 dimensions, collection "lc" has 2')

    def novector(p):
        if p["id"] == 3:
            p["vector"] = None
    lie("no embedding", on_points(novector), "SELECT id, embedding FROM t;", "HV004",
        'record "3"', "without its embedding")

    def named(p):
        if p.get("vector") is not None:
            p["vector"] = {"a": p["vector"]}
    lie("a vector that is not an array", on_points(named), "SELECT id, embedding FROM t;",
        "HV004", 'vector of point "1"')

    def strpayload(p):
        p["payload"] = "n=1"
    lie("a payload that is a string", on_points(strpayload), "SELECT id, n FROM t;",
        "HV004", 'payload of point "1"', "an object or null")

    def numdoc(p):
        if p["id"] == 4:
            p["payload"] = dict(p["payload"], document=4)
    lie("a document that is a number", on_points(numdoc), "SELECT id, document FROM t;",
        "HV004", 'payload key "document" of point "4"')

    # Legitimate answers pass: fewer records than the LIMIT, ties in any order.
    fx.mangle = on_query(lambda ps: ps[:1])
    r = sess.run(KNN)
    fx.mangle = None
    check(r.rc == 0 and r.out.split() == truth.split()[:1], "fewer records: %s %s"
          % (r.out, r.err))
    fx.add_collection("lc", 2, "Euclid", PTS + [{"id": 5, "vector": [1.0, 0.0], "payload": {}}])
    fx.mangle = on_query(lambda ps: [ps[1], ps[0]] + ps[2:])
    r = sess.run("SELECT id FROM t ORDER BY embedding <-> '{1,0}' LIMIT 2;")
    fx.mangle = None
    check(r.rc == 0 and sorted(r.out.split()) == ["1", "5"], "ties in any order: %s %s"
          % (r.out, r.err))

    check(sess.value("SELECT pg_backend_pid();") == pid, "same backend after the lies")
    sess.close()
    fx.stop()
    pgtest.check_pg_log(mark)


pgtest.main(test)
