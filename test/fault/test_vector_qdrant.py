#!/usr/bin/env python3
"""pgpoly_vector with provider 'qdrant', against test/qdrant_fixture.py.

Qdrant cannot be installed here, so a stdlib stand-in that speaks its REST
API (shapes from the Qdrant API reference, see the fixture) serves the
requests, and this test asserts both what users see and the exact request
bodies pgpoly sent:

  * k-NN pushdown: one POST /points/query with the query vector, limit =
    LIMIT + OFFSET and the metadata filter ("must" of match/range/any);
  * _distance converted from each metric's score (Euclid, Cosine, Dot) to
    the operator's value, equal to the local operators;
  * get by ids (POST /points; with a filter, scroll with has_id), ids that
    cannot be Qdrant ids find nothing;
  * scan paging with scroll's next_page_offset;
  * INSERT/UPDATE/DELETE bodies sent at COMMIT (nothing before), the
    api-key header, create_collection, invalid ids refused at INSERT;
  * a write to a collection re-created with another dimension, or of two
    dimensions in one transaction: 22000 naming both, nothing sent;
  * an error body {"status": {"error"}} becomes an ERROR quoting it;
  * a service answering every point, farthest first: HV004 (more records
    than the LIMIT); one answering a request by ids with a point twice,
    or with points not asked for (a k-NN answer too): HV004;
  * a payload array (matched by a filter on any element): a k-NN answer
    holding such a record is an ERROR, not a row SQL's clause rejects, and
    a scalar column refuses to read the array (22P02), but only when the
    query reads that column;
  * the memo of the last query vector: a lateral k-NN per outer row over two
    collections of other dimensions, and repeated and alternating vectors,
    each request carrying its own vector and each answer that vector's;
  * integers around +-2^53, which Qdrant's floating-point range compares
    rounded: every comparison of an int8 and a numeric column with bounds
    there, constants and generic-plan parameters, plain and k-NN, selects
    what a native copy selects (big_integers).
"""

import json
import math
import os
import sys

import pgtest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qdrant_fixture  # noqa: E402

check = pgtest.check

UUID = "5c56c793-69f3-4fbf-87e6-c4bf54c28c26"
POINTS = [
    {"id": 1, "vector": [1.0, 0.0], "payload": {"document": "one", "task": "vision", "n": 1}},
    {"id": 2, "vector": [0.0, 1.0], "payload": {"document": "two", "task": "text", "n": 2}},
    {"id": 3, "vector": [1.0, 1.0], "payload": {"task": "vision", "n": 3}},
    {"id": 4, "vector": [-1.0, 0.5], "payload": {"document": "four", "task": "audio", "n": 4.5}},
    {"id": UUID, "vector": [0.5, 0.25], "payload": {"document": "five", "task": "vision", "n": 5}},
]
Q = [0.6, 0.8]


def local(metric, v, q):
    """The SQL operator's value: <-> Euclid, <=> 1 - cos, <#> -dot."""
    dot = sum(a * b for a, b in zip(v, q))
    if metric == "l2":
        return math.sqrt(sum((a - b) ** 2 for a, b in zip(v, q)))
    if metric == "cosine":
        return 1 - dot / (math.hypot(*v) * math.hypot(*q))
    return -dot


def rows(sess, sql):
    """The rows of a query as lists of fields ('|'-separated)."""
    r = sess.run(sql)
    check(r.rc == 0, "query failed: %s\n%s" % (sql, r.err))
    return [line.split("|") for line in r.out.splitlines() if line]


P53 = 2 ** 53
BIG = [P53 - 1, P53, P53 + 1, P53 + 2, -(P53 - 1), -P53, -(P53 + 1), -(P53 + 2),
       2 ** 63 - 1, -2 ** 63, 0]


OPS = ("=", "<", "<=", ">", ">=")
PLAIN = "SELECT coalesce(string_agg(id, ',' ORDER BY id), '-') FROM %s WHERE %s;"
KNN = ("SELECT coalesce(string_agg(id, ','), '-') FROM (SELECT id FROM %s WHERE %s"
       " ORDER BY embedding <-> '{0,0}' LIMIT 4) s;")


def same_as_native(sess, ftbl, ntbl, conds, params):
    """Each of conds, as a plain scan and a k-NN with LIMIT, selects on
    foreign table ftbl what it selects on native table ntbl; so does each
    (column, type, values) of params as a generic plan's parameter
    (col = ANY($1) for an array type, else col op $1 for each operator),
    executed with each value."""
    # (label, statement): label None for a statement with no rows
    script = [(shape % ("TBL", c), shape % ("TBL", c)) for shape in (PLAIN, KNN) for c in conds]
    script.append((None, "SET plan_cache_mode = force_generic_plan;"))
    for si, shape in enumerate((PLAIN, KNN)):
        for pi, (col, typ, values) in enumerate(params):
            for oi, cond in enumerate(["%s = ANY($1)" % col] if typ.endswith("[]") else
                                      ["%s %s $1" % (col, op) for op in OPS]):
                name = "p_TBL_%d_%d_%d" % (si, pi, oi)
                script.append((None, "PREPARE %s(%s) AS %s" % (name, typ, shape % ("TBL", cond))))
                script += [("%s with $1 = %s" % (shape % ("TBL", cond), v),
                            "EXECUTE %s(%s);" % (name, v)) for v in values]
    script.append((None, "DEALLOCATE ALL; RESET plan_cache_mode;"))
    bad = []
    for label, stmt in script:
        got = sess.run(stmt.replace("TBL", ftbl))
        nat = sess.run(stmt.replace("TBL", ntbl))
        check(nat.rc == 0 and not nat.err.strip(), "native: %s: %s" % (stmt, nat.err))
        if (got.out, got.err) != (nat.out, nat.err):
            bad.append("%s: %s%s, native %s" % (label, got.out.strip(), got.err.strip(),
                                                 nat.out.strip()))
    check(not bad, "%s: %d of %d statements differ from the native copy:\n%s"
          % (ftbl, len(bad), len(script), "\n".join(bad[:40])))


def big_integers(sess, fx, port, db):
    """Integers beyond 2^53, which a Qdrant range compares as f64.

    Qdrant converts the stored integer to f64 (the fixture does as Qdrant
    does): 2^53 + 1 becomes 2^53, so a range gt 2^53 misses it.  Every
    comparison of an int8 column, and of a numeric column (integral and
    fractional bounds), with values around +-2^53 and at int8's limits, by
    each operator and = ANY, as constants and as generic-plan parameters,
    in plain scans and k-NN with LIMIT, selects what the same query
    selects on a native copy.  (Before: records missed, e.g. n > 2^53
    without 2^53 + 1.)
    """
    fx.add_collection("bigc", 2, "Euclid", [
        {"id": i + 1, "vector": [float(i + 1), 0.0], "payload": {"n": v}}
        for i, v in enumerate(BIG)])
    r = sess.run("CREATE FOREIGN TABLE t_big (id text, embedding real[], n int8,"
                 " m numeric OPTIONS (field 'n')) SERVER qd OPTIONS (collection 'bigc');\n"
                 "CREATE TABLE n_big (id text, embedding real[], n int8, m numeric);\n"
                 "INSERT INTO n_big VALUES %s;"
                 % ", ".join("('%d', '{%d,0}', %d, %d)" % (i + 1, i + 1, v, v)
                             for i, v in enumerate(BIG)))
    check(r.rc == 0, "big integers setup: %s" % r.err)
    ibounds = [str(v) for v in BIG]
    nbounds = ibounds + ["%d.5" % v for v in BIG if v > 0] + \
        ["%d.5" % v for v in BIG if v < 0]
    ins = ["'{%d,%d}'::int8[]" % (P53 + 1, -(P53 + 1)), "'{%d}'::int8[]" % P53,
           "'{%d,%d}'::int8[]" % (P53 + 2, 2 ** 63 - 1)]
    conds = ["n %s %s" % (op, b) for op in OPS for b in ibounds] + \
        ["m %s %s" % (op, b) for op in OPS for b in nbounds] + \
        ["n = ANY(%s)" % a for a in ins]
    params = [("n", "int8", ibounds), ("m", "numeric", nbounds),
              ("n", "int8[]", ins + ins)]
    same_as_native(sess, "t_big", "n_big", conds, params)

    # A numeric column's Infinity, -Infinity and NaN (stored as strings),
    # which SQL's comparisons admit too, compared locally with such bounds.
    specials = ["Infinity", "-Infinity", "NaN"]
    fx.add_collection("bigs", 2, "Euclid", [
        {"id": i + 1, "vector": [float(i + 1), 0.0], "payload": {"n": v}}
        for i, v in enumerate(specials + BIG)])
    r = sess.run("CREATE FOREIGN TABLE t_bigs (id text, embedding real[],"
                 " m numeric OPTIONS (field 'n')) SERVER qd OPTIONS (collection 'bigs');\n"
                 "CREATE TABLE n_bigs (id text, embedding real[], m numeric);\n"
                 "INSERT INTO n_bigs VALUES %s;"
                 % ", ".join("('%d', '{%d,0}', '%s')" % (i + 1, i + 1, v)
                             for i, v in enumerate(specials + BIG)))
    check(r.rc == 0, "big integers and specials setup: %s" % r.err)
    sbounds = ["%d" % (P53 + 1), "%d.5" % P53, "-%d" % (P53 + 1), "'NaN'", "'Infinity'"]
    same_as_native(sess, "t_bigs", "n_bigs", ["m %s %s" % (op, b) for op in OPS for b in sbounds],
                   [("m", "numeric", sbounds + sbounds)])
    # EXPLAIN: a k-NN with a constant Qdrant would round is sorted locally.
    for b, note in ((P53 - 1, None), (P53, "would compare a number comparison's value rounded")):
        r = sess.run("EXPLAIN " + KNN % ("t_big", "n > %d" % b))
        check(r.rc == 0 and (note in r.out if note else "computed locally" not in r.out),
              "EXPLAIN of n > %d: %s %s" % (b, r.out, r.err))
    # A bound Qdrant compares exactly is still sent (a k-NN: one query with
    # the range); one it would round is not (the k-NN is computed here).
    for b, pushed in ((-(P53 - 1), True), (P53, False), (-P53 - 1, False)):
        sql = KNN % ("t_big", "n > %d" % b)
        fx.clear_log()
        got = rows(sess, sql)
        check(got == rows(sess, sql.replace("t_big", "n_big")), "%s: %r" % (sql, got))
        sent = fx.requests("POST", "/points/query")
        want = [{"key": "n", "range": {"gt": b}}]
        check((len(sent) == 1 and sent[0][2].get("filter") == {"must": want}) if pushed
              else (sent == [] and not any(b in (c.get("range") or {}).values()
                                           for q in fx.requests()
                                           for c in ((q[2] or {}).get("filter") or {})
                                           .get("must", []))),
              "%s: requests %r" % (sql, fx.requests()))


def test():
    mark = pgtest.pg_log_mark()
    fx = qdrant_fixture.Fixture()
    for name, dist in (("l2c", "Euclid"), ("cosc", "Cosine"), ("dotc", "Dot")):
        fx.add_collection(name, 2, dist, POINTS)
    fx.add_collection("arrc", 2, "Euclid", [
        {"id": 1, "vector": [1.0, 0.0], "payload": {"task": ["vision", "text"], "n": [1, 9]}},
        {"id": 2, "vector": [0.0, 1.0], "payload": {"task": "text", "n": 2}}])
    fx.fail["broken"] = (400, "Wrong input: payload index is broken")
    port = fx.start()
    db = pgtest.create_db("pgpoly_qdrant")
    r = pgtest.psql(
        "CREATE SERVER qd FOREIGN DATA WRAPPER pgpoly_vector "
        "OPTIONS (url 'http://127.0.0.1:%d', provider 'qdrant');\n"
        "CREATE USER MAPPING FOR CURRENT_USER SERVER qd OPTIONS (api_key 'sekret');\n"
        "CREATE FOREIGN TABLE t_l2 (id text, embedding real[], document text, metadata jsonb,"
        " task text, n float8, _distance float8) SERVER qd OPTIONS (collection 'l2c');\n"
        "CREATE FOREIGN TABLE t_cos (id text, embedding real[], document text, metadata jsonb,"
        " _distance float8) SERVER qd OPTIONS (collection 'cosc');\n"
        "CREATE FOREIGN TABLE t_dot (id text, embedding real[], document text, metadata jsonb,"
        " _distance float8) SERVER qd OPTIONS (collection 'dotc');\n"
        "CREATE FOREIGN TABLE t_page (id text, embedding real[], document text) SERVER qd"
        " OPTIONS (collection 'l2c', fetch_size '2');\n"
        "CREATE FOREIGN TABLE t_new (id text, embedding real[], document text, metadata jsonb,"
        " _distance float8)"
        " SERVER qd OPTIONS (collection 'newc', create_collection 'true', distance 'cosine');\n"
        "CREATE FOREIGN TABLE t_broken (id text, embedding real[]) SERVER qd"
        " OPTIONS (collection 'broken');\n"
        "CREATE FOREIGN TABLE t_arr (id text, embedding real[], task text, n int,"
        " metadata jsonb) SERVER qd OPTIONS (collection 'arrc');\n"
        "CREATE FOREIGN TABLE t_arr2 (id text, embedding real[], tasks text[]"
        " OPTIONS (field 'task')) SERVER qd OPTIONS (collection 'arrc');\n"
        % port, db=db)
    check(r.rc == 0, "setup: %s" % r.err)
    sess = pgtest.Session(db=db)
    qtext = "'{%s}'" % ",".join(str(x) for x in Q)

    # k-NN pushdown, one request per metric, distances in the operator's metric.
    for tbl, op, metric in (("t_l2", "<->", "l2"), ("t_cos", "<=>", "cosine"),
                            ("t_dot", "<#>", "ip")):
        fx.clear_log()
        got = rows(sess, "SELECT id, _distance FROM %s WHERE metadata->>'task' = 'vision' "
                         "ORDER BY embedding %s %s LIMIT 2 OFFSET 1;" % (tbl, op, qtext))
        sent = fx.requests("POST", "/points/query")
        check(len(sent) == 1 and len(fx.requests()) <= 2,
              "%s: one query request (+ one lookup): %r" % (tbl, fx.requests()))
        if sent:
            body = sent[0][2]
            # (the payload: the answer is checked against the filter)
            check(body == {"query": Q, "limit": 3,
                           "filter": {"must": [{"key": "task", "match": {"value": "vision"}}]},
                           "with_payload": True, "with_vector": False},
                  "%s: query body %r" % (tbl, body))
            check(sent[0][3].get("api-key") == "sekret", "api-key header sent")
        want = sorted(((local(metric, p["vector"], Q), str(p["id"])) for p in POINTS
                       if p["payload"]["task"] == "vision"))[1:3]
        check([g[0] for g in got] == [w[1] for w in want], "%s: order %r vs %r" % (tbl, got, want))
        for g, w in zip(got, want):
            check(abs(float(g[1]) - w[0]) < 1e-6, "%s: _distance %s vs %s" % (tbl, g, w))

    # A payload array: Qdrant matches a filter on any element, which SQL's
    # comparison does not, so the k-NN answer cannot stand (it would claim
    # task = 'text' or n > 5 for record 1, even for a column not read),
    # and a scalar column cannot read the array; an array column reads both.
    for sql in ("SELECT id, task FROM t_arr WHERE task = 'text' "
                "ORDER BY embedding <-> %s LIMIT 2;" % qtext,
                "SELECT id FROM t_arr WHERE n > 5 ORDER BY embedding <-> %s LIMIT 2;" % qtext,
                "SELECT id FROM t_arr WHERE metadata->>'task' = 'text' "
                "ORDER BY embedding <-> %s LIMIT 2;" % qtext):
        r = sess.run(sql)
        check(r.rc == 1 and r.sqlstate == "HV004" and '"1"' in r.err,
              "k-NN over a payload array: want HV004 naming record 1; "
              "got rc=%s %s %s %s" % (r.rc, r.sqlstate, r.out, r.err))
    r = sess.run("SELECT id FROM t_arr WHERE n > 5;")
    check(r.rc == 1 and r.sqlstate == "22P02" and '"1"' in r.err,
          "a scalar column over a payload array: want 22P02 naming record 1; "
          "got rc=%s %s %s %s" % (r.rc, r.sqlstate, r.out, r.err))
    check(rows(sess, "SELECT id, tasks FROM t_arr2 ORDER BY id;") ==
          [["1", "{vision,text}"], ["2", "{text}"]], "array column over a payload array")
    check(rows(sess, "SELECT id FROM t_arr WHERE task = 'text' AND id = '2' "
                     "ORDER BY embedding <-> %s LIMIT 2;" % qtext) == [["2"]],
          "k-NN whose answer satisfies the filter")
    # Only the columns a query reads are converted: the metadata column, or
    # the scalar column n, of the record whose task is an array (and the
    # k-NN answer asks for the payload only when a column needs it).
    check(rows(sess, "SELECT id, metadata->'task', n FROM t_arr WHERE id = '2';") ==
          [["2", '"text"', "2"]], "n of a record without arrays")
    check(rows(sess, "SELECT id, metadata FROM t_arr ORDER BY id;") ==
          [["1", '{"n": [1, 9], "task": ["vision", "text"]}'],
           ["2", '{"n": 2, "task": "text"}']], "metadata of a record holding arrays")
    fx.clear_log()
    check(rows(sess, "SELECT id FROM t_arr ORDER BY embedding <-> %s LIMIT 2;" % qtext) ==
          [["2"], ["1"]], "k-NN reading only ids")
    sent = fx.requests("POST", "/points/query")
    check(len(sent) == 1 and sent[0][2].get("with_payload") is False and
          sent[0][2].get("with_vector") is False, "k-NN of ids only: %r" % sent)
    r = sess.run("SELECT id, task FROM t_arr WHERE metadata->'n' = '2';")
    check(r.rc == 1 and r.sqlstate == "22P02" and '"1"' in r.err,
          "a scalar column read over a payload array: want 22P02 naming record 1; "
          "got rc=%s %s %s %s" % (r.rc, r.sqlstate, r.out, r.err))

    # A service that answers every point, farthest first: not the answer
    # to the request (its rows cannot be trusted to hold the LIMIT nearest),
    # so an ERROR naming what was wrong (test_vector_lying.py has the rest).
    fx.overfill = True
    r = sess.run("SELECT id FROM t_l2 ORDER BY embedding <-> %s LIMIT 2;" % qtext)
    check(r.rc == 1 and r.sqlstate == "HV004" and
          "among 5 records answering a k-NN request for 2" in r.err,
          "an overfull answer: %s %s %s" % (r.sqlstate, r.out, r.err))
    fx.overfill = False

    # A service that answers a request by ids with points twice, or with
    # points not asked for: an ERROR naming the record, not two rows of one
    # record or a k-NN answer that nothing rechecks (before: each record
    # twice; records other than '1' in the k-NN answer).
    for lie, sql, want in (
            ("dup", "SELECT id FROM t_l2 WHERE id = ANY('{1,2}');", "twice"),
            ("extra", "SELECT id FROM t_l2 WHERE id = '1' ORDER BY embedding <-> %s LIMIT 3;"
             % qtext, "without being asked for it")):
        fx.lie_ids = lie
        r = sess.run(sql)
        check(r.rc == 1 and r.sqlstate == "HV004" and want in r.err,
              "a service lying about ids (%s): want HV004 saying %r; got rc=%s %s %s %s"
              % (lie, want, r.rc, r.sqlstate, r.out, r.err.strip()[:300]))
    fx.lie_ids = None

    # use_remote_estimate: the plan's row count is the collection's points_count.
    r = sess.run("ALTER FOREIGN TABLE t_l2 OPTIONS (ADD use_remote_estimate 'true');\n"
                 "EXPLAIN SELECT id FROM t_l2;\n"
                 "ALTER FOREIGN TABLE t_l2 OPTIONS (DROP use_remote_estimate);")
    check(r.rc == 0 and "rows=%d " % len(POINTS) in r.out,
          "use_remote_estimate gives points_count: %s %s" % (r.out, r.err))

    # EXPLAIN shows the request; a numeric range and IN go to the filter.
    r = sess.run("EXPLAIN (VERBOSE, COSTS OFF) SELECT id FROM t_l2 WHERE n >= 2 AND "
                 "task IN ('vision','text') ORDER BY embedding <-> %s LIMIT 3;" % qtext)
    check("POST collections/l2c/points/query" in r.out and '"range":{"gte":2}' in r.out
          and '"match":{"any":["vision","text"]}' in r.out, "EXPLAIN: %s" % r.out)
    # EXPLAIN of a write shows the request each batch sends.
    for sql, want in (("INSERT INTO t_l2 (id, embedding) VALUES ('9', '{1,0,0}')",
                       "Vector Write: PUT collections/l2c/points?wait=true\n"),
                      ("INSERT INTO t_l2 (id, embedding) VALUES ('9', '{1,0,0}') ON CONFLICT DO NOTHING",
                       'Vector Write: PUT collections/l2c/points?wait=true {"update_mode":"insert_only"}'),
                      ("UPDATE t_l2 SET n = 1 WHERE id = '1'",
                       'Vector Write: PUT collections/l2c/points?wait=true {"update_mode":"update_only"}'),
                      ("DELETE FROM t_l2 WHERE id = '1'",
                       "Vector Write: POST collections/l2c/points/delete?wait=true")):
        r = sess.run("EXPLAIN (VERBOSE, COSTS OFF) %s;" % sql)
        check(r.rc == 0 and want in r.out, "EXPLAIN %s shows %r: %s %s" % (sql, want, r.out, r.err))
    fx.clear_log()
    got = rows(sess, "SELECT id FROM t_l2 WHERE n >= 2 AND task IN ('vision','text') "
                     "ORDER BY embedding <-> %s LIMIT 3;" % qtext)
    check(sorted(g[0] for g in got) == sorted(["2", "3", UUID]), "range + IN rows: %r" % got)
    body = fx.requests("POST", "/points/query")[0][2]
    # (a float8 Infinity or NaN is stored as that string: n >= 2 admits them)
    check(body["filter"] == {"must": [{"should": [{"key": "n", "range": {"gte": 2}},
                                                  {"key": "n", "match": {"any": ["Infinity", "NaN"]}}]},
                                      {"key": "task", "match": {"any": ["vision", "text"]}}]},
          "range + IN filter: %r" % body["filter"])
    # A float equality is a closed range (match is exact for integers only).
    fx.clear_log()
    got = rows(sess, "SELECT id FROM t_l2 WHERE n = 4.5 ORDER BY embedding <-> %s LIMIT 3;"
               % qtext)
    check(got == [["4"]], "n = 4.5: %r" % got)
    check(fx.requests("POST", "/points/query")[0][2]["filter"] ==
          {"must": [{"key": "n", "range": {"gte": 4.5, "lte": 4.5}}]}, "float equality")

    # Get by ids: POST /points; ids that cannot be Qdrant ids find nothing.
    fx.clear_log()
    got = rows(sess, "SELECT id, document, metadata FROM t_l2 WHERE id IN ('1', '%s', 'nope') "
                     "ORDER BY id;" % UUID)
    check(got == [["1", "one", '{"n": 1, "task": "vision"}'],
                  [UUID, "five", '{"n": 5, "task": "vision"}']], "by ids: %r" % got)
    sent = fx.requests("POST", "/collections/l2c/points")
    check(len(sent) == 1 and sent[0][2] == {"ids": [1, UUID], "with_payload": True,
                                            "with_vector": False}, "retrieve body %r" % sent)
    fx.clear_log()
    got = rows(sess, "SELECT id FROM t_l2 WHERE id IN ('1','2','3') AND task = 'vision' "
                     "ORDER BY id;")
    check(got == [["1"], ["3"]], "by ids with a filter: %r" % got)
    sent = fx.requests("POST", "/points/scroll")
    check(len(sent) == 1 and sent[0][2].get("filter") ==
          {"must": [{"has_id": [1, 2, 3]},
                    {"must": [{"key": "task", "match": {"value": "vision"}}]}]},
          "has_id scroll %r" % sent)
    check(rows(sess, "SELECT count(*) FROM t_l2 WHERE id = 'x1';") == [["0"]],
          "an impossible id is no row")

    # Paging with next_page_offset.
    fx.clear_log()
    got = rows(sess, "SELECT id, document FROM t_page ORDER BY id;")
    check(len(got) == 5, "paged scan sees every point: %r" % got)
    sent = fx.requests("POST", "/points/scroll")
    offsets = [s[2].get("offset") for s in sent]
    check(offsets == [None, 3, UUID], "scroll offsets follow next_page_offset: %r" % offsets)
    check(all(s[2]["limit"] == 2 and s[2]["with_payload"] == ["document"] for s in sent),
          "scroll bodies: %r" % sent)

    # Writes are sent at COMMIT, with the document in the payload.
    fx.clear_log()
    r = sess.run("BEGIN;\n"
                 "INSERT INTO t_l2 (id, embedding, document, metadata) VALUES "
                 "('10', '{0.5,0.5}', 'ten', '{\"task\": \"new\", \"n\": 10}');\n"
                 "UPDATE t_l2 SET document = 'TWO' WHERE id = '2';\n"
                 "DELETE FROM t_l2 WHERE id = '3';")
    check(r.rc == 0, "writes: %s" % r.err)
    check(not fx.requests("PUT") and not fx.requests("POST", "/points/delete"),
          "nothing written before COMMIT")
    check(rows(sess, "SELECT id, document FROM t_l2 WHERE id IN ('2','3','10') ORDER BY id;")
          == [["10", "ten"], ["2", "TWO"]], "read-your-writes before COMMIT")
    r = sess.run("COMMIT;")
    check(r.rc == 0, "COMMIT: %s" % r.err)
    puts = fx.requests("PUT", "/points")
    check([p[2] for p in puts] == [
        {"points": [{"id": 10, "vector": [0.5, 0.5],
                     "payload": {"task": "new", "n": 10, "document": "ten"}}]},
        {"points": [{"id": 2, "vector": [0.0, 1.0],
                     "payload": {"n": 2, "task": "text", "document": "TWO"}}],
         "update_mode": "update_only"}],
        "upsert bodies: %r" % puts)
    check(all(p[1].endswith("?wait=true") for p in puts), "upserts wait")
    dels = fx.requests("POST", "/points/delete")
    check(len(dels) == 1 and dels[0][2] == {"points": [3]}, "delete body %r" % dels)
    check(3 not in fx.collections["l2c"]["points"] and
          fx.collections["l2c"]["points"][10]["payload"]["document"] == "ten", "stored")

    # Ids Qdrant cannot take are refused at INSERT, naming the id.
    r = sess.run("INSERT INTO t_l2 (id, embedding) VALUES ('doc-7', '{1,2}');")
    check(r.rc == 1 and '"doc-7"' in r.err and r.sqlstate == "22P02", "bad id: %s" % r.err)
    r = sess.run("INSERT INTO t_l2 (id, embedding, metadata) VALUES "
                 "('11', '{1,2}', '{\"document\": 1}');")
    check(r.rc == 1 and "document" in r.err, "metadata key document refused: %s" % r.err)

    # create_collection: PUT /collections/newc with the size and distance.
    fx.clear_log()
    r = sess.run("INSERT INTO t_new VALUES ('%s', '{3,4}', 'hello', '{\"a\": true}');" % UUID)
    check(r.rc == 0, "insert into a new collection: %s" % r.err)
    created = [c for c in fx.requests("PUT") if c[1] == "/collections/newc"]
    check(len(created) == 1 and created[0][2] == {"vectors": {"size": 2, "distance": "Cosine"}},
          "create body %r" % created)
    got = rows(sess, "SELECT id, _distance FROM t_new ORDER BY embedding <=> '{3,4}' LIMIT 1;")
    check(len(got) == 1 and got[0][0] == UUID and abs(float(got[0][1])) < 1e-6,
          "k-NN on the new collection: %r" % got)

    # A collection another client dropped and re-created with another
    # dimension since this session cached it: a write of the old dimension is
    # an ERROR naming both (22000) before anything is sent, not Qdrant's
    # HTTP 400 at COMMIT (the description is read once per transaction).
    fx.add_collection("dimc", 2, "Euclid")
    r = sess.run("CREATE FOREIGN TABLE t_dim (id text, embedding real[]) SERVER qd "
                 "OPTIONS (collection 'dimc');\n"
                 "INSERT INTO t_dim VALUES ('1', '{1,0}');")
    check(r.rc == 0, "insert into dimc: %s" % r.err)
    fx.add_collection("dimc", 3, "Euclid")
    fx.clear_log()
    r = sess.run("INSERT INTO t_dim VALUES ('2', '{0,1}');")
    check(r.rc == 1 and r.sqlstate == "22000" and
          'has 2 dimensions, collection "dimc" has 3' in r.err,
          "write to a collection re-created with another dimension: %s %s"
          % (r.sqlstate, r.err))
    check(not fx.requests("PUT"), "nothing sent: %r" % fx.requests("PUT"))
    r = sess.run("INSERT INTO t_dim VALUES ('2', '{0,1,0}');")
    check(r.rc == 0 and list(fx.collections["dimc"]["points"]) == [2],
          "the new dimension is written: %s" % r.err)
    # Statements of one transaction writing two dimensions into a collection
    # that create_collection is to create: COMMIT fails before anything is
    # sent (the collection is not created either).
    fx.clear_log()
    r = sess.run("CREATE FOREIGN TABLE t_dimnew (id text, embedding real[]) SERVER qd "
                 "OPTIONS (collection 'dimnew', create_collection 'true', distance 'l2');\n"
                 "BEGIN;\n"
                 "INSERT INTO t_dimnew VALUES ('3', '{0,1,0}');\n"
                 "INSERT INTO t_dimnew VALUES ('4', '{0,1}');\n"
                 "COMMIT;")
    check(r.rc == 1 and r.sqlstate == "22000" and
          'record "4" has 2 dimensions' in r.err and not fx.requests("PUT") and
          "dimnew" not in fx.collections,
          "two dimensions in one transaction: %s %s %r" % (r.sqlstate, r.err, fx.requests("PUT")))
    sess.run("ROLLBACK;")
    del fx.collections["dimc"]

    # ON CONFLICT DO NOTHING: existing ids skipped (one get by ids), the rest
    # sent with update_mode insert_only, so Qdrant never overwrites either.
    fx.clear_log()
    r = sess.run("INSERT INTO t_l2 (id, embedding, document) VALUES ('1', '{9,9}', 'x'), "
                 "('20', '{2,0}', 'twenty') ON CONFLICT (id) DO NOTHING RETURNING id;")
    check(r.rc == 0 and r.out.split() == ["20"], "ON CONFLICT RETURNING: %s %s" % (r.out, r.err))
    puts = fx.requests("PUT", "/points")
    check(fx.collections["l2c"]["points"][1]["vector"] == [1.0, 0.0],
          "existing point untouched: %r" % fx.collections["l2c"]["points"][1])
    check(len(puts) == 1 and puts[0][2].get("update_mode") == "insert_only" and
          [p["id"] for p in puts[0][2]["points"]] == [20], "insert-only body: %r" % puts)

    # vector_search over a Qdrant table.
    got = rows(sess, "SELECT id, round(distance::numeric, 6) FROM "
                     "pgpoly.vector_search('t_dot', '{1,0}', 2, '{\"task\": \"vision\"}');")
    check(got == [["3", "-1.000000"], ["1", "-1.000000"]] or
          got == [["1", "-1.000000"], ["3", "-1.000000"]], "vector_search: %r" % got)
    # a mixed array is an IN per kind, ORed; an empty one matches nothing
    got = rows(sess, "SELECT id FROM pgpoly.vector_search('t_dot', '{1,0}', 2, "
                     "'{\"task\": [7, \"vision\", true]}') ORDER BY id;")
    check(got == [["1"], ["3"]], "vector_search of a mixed array: %r" % got)
    got = rows(sess, "SELECT id FROM pgpoly.vector_search('t_dot', '{1,0}', 2, "
                     "'{\"task\": []}');")
    check(got == [], "vector_search of an empty array: %r" % got)

    # An embedding element beyond real's range is an ERROR (22003), not Infinity.
    fx.add_collection("bigc", 2, "Euclid", [{"id": 1, "vector": [1e39, 0.5], "payload": {}}])
    r = sess.run("CREATE FOREIGN TABLE t_big (id text, embedding real[]) SERVER qd "
                 "OPTIONS (collection 'bigc'); SELECT id, embedding FROM t_big;")
    check(r.rc == 1 and r.sqlstate == "22003" and "out of range for type real" in r.err
          and 'record "1"' in r.err, "embedding out of range: %s" % r.err)
    sess.run("DROP FOREIGN TABLE t_big;")
    del fx.collections["bigc"]

    # Errors: {"status": {"error": ...}} is quoted; a missing collection is clear.
    r = sess.run("SELECT * FROM t_broken;")
    check(r.rc == 1 and "payload index is broken" in r.err and "Qdrant said" in r.err
          and (r.sqlstate or "").startswith("HV"), "error body: %s" % r.err)
    r = sess.run("INSERT INTO t_l2 (id, embedding) VALUES ('12', '{1,2,3}');")
    check(r.rc == 1 and "dimensions" in r.err, "wrong dimension refused: %s" % r.err)
    del fx.collections["cosc"]
    r = sess.run("SELECT pgpoly.disconnect(); SELECT * FROM t_cos;")
    check(r.rc == 1 and "does not exist" in r.err, "missing collection: %s" % r.err)

    # A listed collection with an empty name is refused clearly (it cannot
    # become a table: the generated statement would not parse).
    fx.add_collection("", 2, "Dot")
    r = sess.run("IMPORT FOREIGN SCHEMA x FROM SERVER qd INTO public;")
    check(r.rc == 1 and (r.sqlstate or "").startswith("HV") and "collection list" in r.err,
          "collection with an empty name: %s %s" % (r.sqlstate, r.err))
    del fx.collections[""]

    # IMPORT FOREIGN SCHEMA: one table per collection, with its distance.
    r = sess.run("CREATE SCHEMA imp; IMPORT FOREIGN SCHEMA x FROM SERVER qd INTO imp;")
    check(r.rc == 0, "import: %s" % r.err)
    got = rows(sess, "SELECT c.relname, array_to_string(t.ftoptions, ',') FROM "
                     "pg_foreign_table t JOIN pg_class c ON c.oid = t.ftrelid JOIN "
                     "pg_namespace s ON s.oid = c.relnamespace WHERE s.nspname = 'imp' "
                     "ORDER BY 1;")
    check(got == [["arrc", "collection=arrc,distance=l2"],
                  ["dotc", "collection=dotc,distance=ip"], ["l2c", "collection=l2c,distance=l2"],
                  ["newc", "collection=newc,distance=cosine"]], "imported: %r" % got)

    # The memo of the last rendered query vector (VectorAppendQueryFloats):
    # a lateral k-NN per outer row over two collections of other
    # dimensions, the vectors alternating and repeating, then the same
    # vector twice and another in between; each request carries its own
    # vector (the bodies, in order) and each answer is that vector's.
    l3 = [{"id": i, "vector": [float(i), 0.5, -0.25], "payload": {}} for i in range(1, 7)]
    fx.add_collection("l3c", 3, "Euclid", l3)
    r = sess.run("CREATE FOREIGN TABLE t_l3 (id text, embedding real[]) SERVER qd"
                 " OPTIONS (collection 'l3c');")
    check(r.rc == 0, "t_l3: %s" % r.err)
    v2 = [[0.6, 0.8], [0.6, 0.8], [-1.0, 0.5], [0.6, 0.8], [0.5, -0.25], [0.5, -0.25]]
    v3 = [[2.25, 0.5, 0], [5.75, 0.5, 0], [2.25, 0.5, 0], [2.25, 0.5, 0], [0.25, 1, 1],
          [4.25, 0.5, -0.25]]

    def arr(v):
        return "'{%s}'::real[]" % ",".join(repr(float(x)) for x in v)

    def nearest(points, q, k):
        return [str(p["id"]) for p in sorted(points, key=lambda p: local("l2", p["vector"], q))[:k]]

    l2 = list(fx.collections["l2c"]["points"].values())  # (after the writes above)
    fx.clear_log()
    got = rows(sess, "SELECT q.n, a.ids, b.ids FROM (VALUES %s) q(n, v2, v3), "
                     "LATERAL (SELECT string_agg(id, ',') ids FROM (SELECT id FROM t_l2 "
                     "ORDER BY embedding <-> q.v2 LIMIT 2) s) a, "
                     "LATERAL (SELECT string_agg(id, ',') ids FROM (SELECT id FROM t_l3 "
                     "ORDER BY embedding <-> q.v3 LIMIT 2) s) b ORDER BY q.n;"
                 % ", ".join("(%d, %s, %s)" % (i, arr(a), arr(b))
                             for i, (a, b) in enumerate(zip(v2, v3))))
    want = [[str(i), ",".join(nearest(l2, a, 2)), ",".join(nearest(l3, b, 2))]
            for i, (a, b) in enumerate(zip(v2, v3))]
    check(got == want, "lateral k-NN per row: %r vs %r" % (got, want))
    sent = fx.requests("POST", "/points/query")
    check([b[2]["query"] for b in sent if "/l2c/" in b[1]] == v2 and
          [b[2]["query"] for b in sent if "/l3c/" in b[1]] == v3,
          "query vectors sent per row: %r" % [(b[1], b[2]["query"]) for b in sent])
    for seq in ([v2[0], v2[0], v2[2], v2[0], v2[4]], [v3[1], v3[0], v3[0], v3[1]]):
        tbl, pts = ("t_l2", l2) if len(seq[0]) == 2 else ("t_l3", l3)
        fx.clear_log()
        for q in seq:
            got = rows(sess, "SELECT string_agg(id, ',') FROM (SELECT id FROM %s "
                             "ORDER BY embedding <-> %s LIMIT 3) s;" % (tbl, arr(q)))
            check(got == [[",".join(nearest(pts, q, 3))]], "%s %r: %r" % (tbl, q, got))
        sent = [b[2]["query"] for b in fx.requests("POST", "/points/query")]
        check(sent == seq, "%s: vectors sent %r vs %r" % (tbl, sent, seq))

    big_integers(sess, fx, port, db)

    sess.close()
    fx.stop()
    pgtest.check_pg_log(mark)


pgtest.main(test)
