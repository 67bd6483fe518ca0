#!/usr/bin/env python3
"""Elasticsearch and vector foreign tables driven through the extended
protocol, as JDBC, psycopg 3, node-pg and pgbench -M prepared drive them.

test_client_protocol.py covers Redis; this test does the same for an
Elasticsearch index (a private test/es_standin.py) and a Chroma collection
(the harness's), each beside a native copy of its rows, and every answer
must be the native copy's (differential):

  * comparisons pushed down with parameters of the column's type and of
    others (int8 and numeric against int4, numeric against float8, varchar
    and bpchar against text, timestamp and date against timestamptz), with
    unknown-typed parameters (no type in Parse, as psycopg 3 and node-pg
    send them), NULL parameters, arrays (= ANY($1), NULL elements), in text
    and binary form, under plan_cache_mode auto (7 executions: the generic
    plan after 5), force_generic_plan and force_custom_plan;
  * every column type in binary and text results, in sessions whose
    DateStyle, IntervalStyle, TimeZone, extra_float_digits and bytea_output
    come from the startup packet's options;
  * portals fetched a few rows at a time (JDBC fetchSize), several open on
    the same table and fetched in turns, one closed half-way and the
    statement bound again, a WITH HOLD cursor read across COMMIT: no point
    in time is left open in the stand-in afterwards;
  * a pipeline whose fourth statement fails after three buffered writes to
    the index, the collection and a native table: nothing reaches either
    store, and the error of a COMMIT at Sync is reported (pgwire.late_errors);
  * k-NN searches (ORDER BY embedding <-> $1 LIMIT $2) with the query vector
    as a parameter in text and binary form, filters with parameters, and
    query vectors holding NaN or Infinity, which a native table ranks (every
    distance NaN or Infinity) and the service cannot be sent.
"""

import os
import struct

import es_helper
import pgtest
import pgwire

check = pgtest.check
MODES = ("auto", "force_generic_plan", "force_custom_plan")

ES_COLS = ("n int8, i int4, d float8, num numeric, b bool, t text, ts timestamptz, "
           "dt date, tags text[], obj jsonb")
ES_ROWS = [
    "('d1', 1, 1, 1.5, 1.5, true, 'a', '2024-01-01 00:00:00.123456+00', '2024-01-01', "
    "'{x,y}', '{\"a\": 1}')",
    "('d2', 2, -2, 0, 0, false, 'b', '2024-06-01 12:00:00+00', '2023-12-31', '{y}', "
    "'{\"a\": [1, 2]}')",
    "('d3', 3000000000, 2147483647, 1e300, 123456789.25, NULL, 'ccc', "
    "'1999-12-31 23:59:59.999999+00', '2000-02-29', '{}', '{\"s\": \"x\"}')",
    "('d4', -1, 0, 0.1, 0.1, true, '', '2024-01-01 00:00:00+00', '2024-01-01', NULL, NULL)",
    "('d5', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    "('d6', 5, 5, 2.2250738585072014e-308, -5.5, false, 'é', '2024-03-10 07:30:00.5+00', "
    "'1970-01-01', '{\"a b\",NULL}', '{\"z\": {\"y\": null}}')",
]
ES_MAPPING = {"properties": {
    "n": {"type": "long"}, "i": {"type": "integer"}, "d": {"type": "double"},
    "num": {"type": "double"}, "b": {"type": "boolean"}, "t": {"type": "keyword"},
    "ts": {"type": "date_nanos"}, "dt": {"type": "date"}, "tags": {"type": "keyword"},
    "obj": {"type": "object"}}}

# (column, parameter type, values) for the pushed comparisons; type "" is an
# unknown-typed parameter (Parse without a type)
ES_PARAMS = [
    ("n", ("int8", "int4", "numeric", ""), ("1", "-1", "3000000000", None)),
    ("i", ("int4", "int8", ""), ("1", "2147483647", "-2")),
    ("i", ("int8",), ("4294967297", "-3000000000")),
    ("d", ("float8", "numeric", ""), ("1.5", "0", "-0", "0.1", "NaN", "Infinity")),
    ("num", ("numeric", "float8", ""), ("1.5", "0.1", "-5.5", "1e400", "NaN")),
    ("b", ("bool", ""), ("true", "false", None)),
    ("t", ("text", "varchar", "bpchar", ""), ("a", "", "ccc", "é")),
    ("ts", ("timestamptz", "timestamp", "date", ""),
     ("2024-01-01 00:00:00.123456+00", "2024-01-01", "infinity", "-infinity")),
    ("dt", ("date", "timestamptz", ""), ("2024-01-01", "2000-02-29")),
]
OIDS = {"int8": 20, "int4": 23, "numeric": 1700, "float8": 701, "bool": 16, "text": 25,
        "varchar": 1043, "bpchar": 1042, "timestamptz": 1184, "timestamp": 1114,
        "date": 1082, "": 0}

# session settings that change text forms, from the startup packet
OPTIONS = [None,
           "-c DateStyle=SQL,DMY -c IntervalStyle=sql_standard "
           "-c TimeZone=Asia/Kathmandu -c extra_float_digits=-3",
           "-c DateStyle=German -c TimeZone=America/St_Johns -c extra_float_digits=0 "
           "-c bytea_output=escape"]


class Diff:
    """One protocol connection comparing a foreign table with its copy."""

    def __init__(self, c, pairs):
        self.c = c
        self.pairs = pairs      # [(foreign table, native table)]
        self.n = 0

    def binary(self, typ, text):
        """The binary form of text::typ, as the server sends it; None if
        text is not a value of typ."""
        self.c.parse("", "SELECT $1::%s" % typ)
        self.c.bind("", "", [text.encode()], result_formats=[1])
        self.c.execute("")
        self.c.sync()
        (r,) = self.c.flush()
        return None if r.error else r.rows[0][0]

    def run(self, stmt, params, pf, rf, limit):
        """Rows of one Bind + Execute(s) of stmt (sorted unless limit<0),
        or the error's SQLSTATE."""
        self.c.query("BEGIN")
        self.c.bind("P", stmt, params, param_formats=pf, result_formats=rf)
        rows = []
        while True:
            self.c.execute("P", max(limit, 0))
            self.c.sync()
            (r,) = self.c.flush()
            if r.error:
                self.c.query("ROLLBACK")
                return ("ERROR", r.error["C"])
            rows += [tuple(x) for x in r.rows]
            if not r.suspended:
                break
        self.c.query("COMMIT")
        return rows if limit < 0 else sorted(rows)

    def same(self, sql, oids=(), params=(), pf=(), rf=(1,), modes=MODES, limit=0):
        """sql ({t}: the table) answers the same on each pair, in every
        plan_cache_mode; limit > 0: fetched limit rows at a time; -1: order
        kept."""
        for mode in modes:
            self.c.query("SET plan_cache_mode = " + mode)
            for ft, nt in self.pairs:
                got = []
                for t in (ft, nt):
                    self.n += 1
                    name = "s%d" % self.n
                    self.c.parse(name, sql.format(t=t), list(oids))
                    self.c.sync()
                    self.c.flush()
                    reps = 7 if mode == "auto" else 1
                    got.append([self.run(name, params, pf, rf, limit) for _ in range(reps)])
                    self.c.query("DEALLOCATE " + name)
                check(got[0] == got[1],
                      "%s (%s, %s, params %r formats %r): foreign %r, native %r"
                      % (sql.format(t=ft), mode, oids, params, pf, got[0][:2], got[1][:2]))
        self.c.query("RESET plan_cache_mode")


def es_setup(db, es, index):
    es.request("PUT", "/" + index, {"mappings": ES_MAPPING})
    r = pgtest.psql(
        "CREATE SERVER es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%s');\n"
        "CREATE FOREIGN TABLE ef (_id text, %s) SERVER es\n"
        "    OPTIONS (index '%s', fetch_size '2', refresh 'true');\n"
        "CREATE TABLE en (_id text, %s);\n"
        "INSERT INTO ef VALUES %s;\n"
        "INSERT INTO en VALUES %s;\n"
        % (es.url, ES_COLS, index, ES_COLS, ", ".join(ES_ROWS), ", ".join(ES_ROWS)), db=db)
    check(r.rc == 0, "Elasticsearch setup: %s" % r.err)


def test_es_params(d):
    """Pushed comparisons with parameters of every kind."""
    for col, types, values in ES_PARAMS:
        for typ in types:
            for op in ("=", "<", ">=", "<>"):
                for v in values:
                    sql = "SELECT _id FROM {t} WHERE %s %s $1" % (col, op)
                    d.same(sql, [OIDS[typ]], [None if v is None else v.encode()],
                           modes=("auto",))
                    b = typ and v is not None and d.binary(typ, v)
                    if b:
                        d.same(sql, [OIDS[typ]], [b], pf=[1], modes=("force_generic_plan",))
            if typ:
                arr = "{%s,NULL}" % ",".join('"%s"' % v for v in values if v is not None)
                d.same("SELECT _id FROM {t} WHERE %s = ANY($1)" % col, [0], [arr.encode()])
                b = d.binary(typ + "[]", arr)
                if b:
                    d.same("SELECT _id FROM {t} WHERE %s = ANY($1::%s[])" % (col, typ), [0],
                           [b], pf=[1])
    d.same("SELECT _id FROM {t} WHERE _id = ANY($1)", [1015], [b"{d1,NULL,d3,zz}"])
    d.same("SELECT _id, n FROM {t} WHERE n > $2 ORDER BY n, _id LIMIT $1", [0, 0],
           [b"2", b"0"], limit=-1)
    d.same("SELECT count(*) FROM {t} WHERE n > $1", [0], [b"1"])


def test_es_results(db, es):
    """Every column, binary and text results, odd settings; then fetched
    in rounds of 2 rows, several portals in turns, one closed half-way, a
    WITH HOLD cursor across COMMIT."""
    for opts in OPTIONS:
        c = pgwire.Conn(db, options=opts)
        d = Diff(c, [("ef", "en")])
        for rf in ((0,), (1,)):
            d.same("SELECT * FROM {t} ORDER BY _id", rf=rf, modes=("auto",), limit=-1)
            d.same("SELECT * FROM {t} ORDER BY _id", rf=rf, modes=("auto",), limit=2)
        c.close()
    c = pgwire.Conn(db)
    got = {}
    for t in ("ef", "en"):
        c.query("BEGIN")
        c.parse("a" + t, "SELECT _id, n FROM %s WHERE n > $1" % t)
        c.parse("b" + t, "SELECT _id, t FROM %s ORDER BY n DESC NULLS LAST, _id" % t)
        c.bind("A", "a" + t, [b"0"])
        c.bind("B", "b" + t, [], result_formats=[1])
        c.bind("C", "a" + t, [b"-5"])
        c.execute("C", 2)   # C: closed after 2 rows, then bound again
        c.close_portal("C")
        c.bind("C", "a" + t, [b"-5"])
        c.sync()
        c.flush()
        out = []
        for _ in range(5):
            for p in "ABC":
                c.execute(p, 1)
                c.sync()
                (r,) = c.flush()
                check(r.error is None, "portal %s on %s: %r" % (p, t, r.error))
                out.append((p, [tuple(x) for x in r.rows]))
        c.query("COMMIT")
        c.query("BEGIN")
        c.query("DECLARE h CURSOR WITH HOLD FOR SELECT _id, ts FROM %s ORDER BY _id" % t)
        first = c.query("FETCH 2 FROM h")[0].rows
        c.query("COMMIT")
        rest = c.query("FETCH ALL FROM h")[0].rows
        c.query("CLOSE h")
        got[t] = (out, first, rest)
    check(got["ef"] == got["en"], "portals in turns: foreign %r, native %r"
          % (got["ef"], got["en"]))
    check(es.stats()["open_pits"] == 0, "points in time left open: %r" % es.stats())
    c.close()


def failing_pipeline(c, statements, what):
    """Send statements (sql, params), a division by zero and the first
    statement again, before one Sync: the implicit transaction must roll
    back, the last statement skipped."""
    for sql, params in statements + [("SELECT 1 / $1::int", [b"0"]), statements[0]]:
        c.parse("", sql)
        c.bind("", "", params)
        c.execute("")
    c.sync()
    res = c.flush()
    errs = [r.error["C"] for r in res if r.error]
    check(errs == ["22012"], "%s: errors %r" % (what, errs))
    check(res[-1].skipped and c.status == "I", "%s: %r, status %s" % (what, res, c.status))


def test_es_pipeline(db, es):
    c = pgwire.Conn(db)
    before = es.stats()["counts"].get("POST /_bulk", 0)
    failing_pipeline(c, [("INSERT INTO ef (_id, n) VALUES ($1, 1)", [b"px"]),
                         ("UPDATE ef SET n = n + 1 WHERE _id = $1", [b"d1"]),
                         ("INSERT INTO en (_id, n) VALUES ($1, 1)", [b"px"])],
                     "Elasticsearch pipeline")
    check(es.stats()["counts"].get("POST /_bulk", 0) == before,
          "the failed pipeline sent a _bulk request")
    check(c.query("SELECT count(*) FROM ef WHERE _id = 'px' OR n = 2")[0].rows == [[b"1"]],
          "the failed pipeline's writes reached the index")
    # a COMMIT that fails at Sync is reported even though every Execute completed
    c.parse("", "INSERT INTO ef (_id, obj) VALUES ($1, $2)")
    c.bind("", "", [b"bad", b'"a string for an object field"'])
    c.execute("")
    c.sync()
    res = c.flush()
    check(res[0].tag == "INSERT 0 1" and len(c.late_errors) == 1 and
          "rejected document" in c.late_errors[0]["M"],
          "COMMIT failing at Sync: %r, late %r" % (res, c.late_errors))
    c.close()


V_COLS = "id text, embedding real[], k text OPTIONS (field 'k'), n int8 OPTIONS (field 'n')"


def vector_setup(db, chroma, coll):
    r = pgtest.psql(
        "CREATE SERVER vs FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url '%s');\n"
        "CREATE FOREIGN TABLE vf (%s) SERVER vs OPTIONS (collection '%s',\n"
        "    create_collection 'true', distance 'l2', fetch_size '3');\n"
        "CREATE TABLE vn (id text, embedding real[], k text, n int8);\n"
        "INSERT INTO vn SELECT 'r' || lpad(i::text, 2, '0'),\n"
        "    ARRAY[sin(i), cos(i * 1.3), sin(i * 0.7)]::real[],\n"
        "    (ARRAY['a', 'b', 'é', ''])[i %% 4 + 1], (i %% 5) - 2\n"
        "    FROM generate_series(1, 25) i;\n"
        "INSERT INTO vf SELECT * FROM vn;\n" % (chroma, V_COLS, coll), db=db)
    check(r.rc == 0, "vector setup: %s" % r.err)


def test_vector(db):
    c = pgwire.Conn(db)
    d = Diff(c, [("vf", "vn")])
    for oid, v in ((0, b"r01"), (25, b"r02"), (1043, b"r03"), (0, None)):
        d.same("SELECT id, n FROM {t} WHERE id = $1", [oid], [v])
    d.same("SELECT id FROM {t} WHERE id = ANY($1)", [1015], [b"{r01,NULL,zz,r01,r04}"])
    for typ, v in (("int8", "1"), ("int4", "-2"), ("", "0")):
        d.same("SELECT id FROM {t} WHERE n >= $1", [OIDS[typ]], [v.encode()])
    for typ, v in (("text", "a"), ("varchar", "é"), ("", "")):
        d.same("SELECT id FROM {t} WHERE k = $1", [OIDS[typ]], [v.encode()])
    q = "{0.1,0.2,0.3}"
    d.same("SELECT id, n FROM {t} ORDER BY embedding <-> $1 LIMIT 5", [0], [q.encode()],
           limit=-1)
    d.same("SELECT id FROM {t} ORDER BY embedding <-> $1 LIMIT $2", [0, 0],
           [q.encode(), b"4"], limit=-1)
    d.same("SELECT id FROM {t} WHERE n >= $2 ORDER BY embedding <-> $1 LIMIT 6", [1021, 20],
           [d.binary("real[]", q), struct.pack("!q", 0)], pf=[1, 1], limit=-1)
    d.same("SELECT id FROM {t} ORDER BY embedding <-> $1 LIMIT 11", [0], [q.encode()],
           limit=3)
    # a query vector the service cannot be sent: every distance is NaN or
    # Infinity, so (LIMIT past every row) the answer is every row
    for bad in ("{NaN,0.2,0.3}", "{Infinity,0.2,0.3}", "{1,-Infinity,0}"):
        d.same("SELECT id, embedding <-> $1 FROM {t} ORDER BY embedding <-> $1 LIMIT 100",
               [0], [bad.encode()])
        d.same("SELECT count(*) FROM (SELECT id FROM {t} ORDER BY embedding <-> $1 "
               "LIMIT 3) s", [1021], [d.binary("real[]", bad)], pf=[1])
    c.close()


def test_vector_pipeline(db):
    c = pgwire.Conn(db)
    failing_pipeline(c, [("INSERT INTO vf (id, embedding, n) VALUES ($1, '{1,1,1}', 7)",
                          [b"px"]),
                         ("DELETE FROM vf WHERE id = $1", [b"r01"]),
                         ("UPDATE vf SET k = 'zz' WHERE id = $1", [b"r02"])],
                     "vector pipeline")
    rows = c.query("SELECT id, k FROM vf WHERE id IN ('px', 'r01', 'r02') ORDER BY id")[0].rows
    want = c.query("SELECT id, k FROM vn WHERE id IN ('px', 'r01', 'r02') ORDER BY id")[0].rows
    check(rows == want, "the failed pipeline reached the collection: %r, want %r"
          % (rows, want))
    c.close()


def test():
    mark = pgtest.pg_log_mark()
    chroma = os.environ.get("CHROMA_URL")
    check(chroma is not None, "CHROMA_URL is set by the harness")
    db = pgtest.create_db("pgpoly_client_stores")
    es = es_helper.Standin()
    es_setup(db, es, "cps%d" % os.getpid())
    c = pgwire.Conn(db)
    test_es_params(Diff(c, [("ef", "en")]))
    c.close()
    test_es_results(db, es)
    test_es_pipeline(db, es)
    coll = "cps%d" % os.getpid()
    vector_setup(db, chroma, coll)
    test_vector(db)
    test_vector_pipeline(db)
    pgtest.check_pg_log(mark)


pgtest.main(test)
