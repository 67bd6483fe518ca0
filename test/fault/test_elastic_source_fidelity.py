#!/usr/bin/env python3
"""Values read back from Elasticsearch documents against a native copy,
with a stand-in that returns _source as Elasticsearch does.

Elasticsearch returns a document's _source as the JSON text it was sent,
but a source filter (the "_source": [fields] of a search) makes it parse
and write the source again, and that parse "round-trips floating-point-like
numbers via IEEE754 doubles" (elastic/elasticsearch#40202): 1.50 comes back
1.5 and a numeric with more digits than a double holds comes back rounded.
The stand-in (test/es_standin.py, RawSource) does the same, so these checks
hold against a real cluster.  Checked: numerics with trailing zeros and
20+ digits, floats with every digit, numeric -0.0, integers near 2^53 and 2^63 and
json/jsonb holding such numbers read back through a column scan, a pushed
comparison and the _source column as the native table reads them; and a
_query Lucene cannot parse ("(((") is an ERROR naming the parse failure,
not an empty answer, while (a OR b) groups and ranges answer as SQL does.
"""

import es_helper
import pgtest

check = pgtest.check

COLS = "n numeric, f8 float8, f4 float4, i8 bigint, js jsonb, j json, t text"
MAPPINGS = {"properties": {
    "n": {"type": "double"}, "f8": {"type": "double"}, "f4": {"type": "float"},
    "i8": {"type": "long"}, "js": {"type": "object", "enabled": False},
    "j": {"type": "object", "enabled": False}, "t": {"type": "text"}}}
ROWS = [
    ("a", "1.50", "0.30000000000000004", "0.1", "9007199254740993",
     '{"x": 1.50, "y": 123456789012345678901234.5}', '[1.0, 2.50]', "red apple"),
    ("b", "12345678901234567890.123456789", "-1.0000000000000002", "-1.1754944e-38",
     "9223372036854775807",
     '{"x": 12345678901234567890123}', '{"k": 0.1000000000000000055511151231257827}',
     "green pear"),
    ("c", "-0.0", "1.7976931348623157e308", "3.4028235e38", "-9223372036854775808",
     '[1e2, -0.0, 2.000]', '{"z": -0}', "red cherry"),
    ("d", "100000000000000000000000", "5e-324", "1e-45", "9007199254740992",
     '1.10', '"s"', "blue plum"),
]
# json reads back in jsonb's form (README, "Values in the stores")
SELECT = ("SELECT %s, n::text, f8::text, f4::text, i8, js::text, j::jsonb::text, t "
          "FROM %s ORDER BY 1;")


def values(s, es):
    """Each column reads what the native copy holds, scanned whole, through
    a pushed comparison and through the _source column."""
    want = s.run(SELECT % ("id", "native"))
    for table in ("docs", "docs_src"):
        got = s.run(SELECT % ("_id", table))
        check(got.rc == 0 and got.out == want.out,
              "%s reads\n%s\nwant (native)\n%s%s" % (table, got.out, want.out,
                                                    got.err.strip()[:400]))
    for cond in ("n = 1.50", "n > 1e19", "i8 = 9223372036854775807", "f8 < 0",
                 "i8 >= 9007199254740993"):
        want = s.run(SELECT % ("id", "native WHERE " + cond))
        got = s.run(SELECT % ("_id", "docs WHERE " + cond))
        check(got.rc == 0 and got.out == want.out,
              "docs WHERE %s reads\n%s\nwant (native)\n%s%s"
              % (cond, got.out, want.out, got.err.strip()[:400]))


def query_syntax(s):
    """(a OR b) and ranges answer as the same condition in SQL; a _query
    that does not parse is an ERROR quoting Elasticsearch's reason."""
    for q, sql in (("(red OR blue) AND NOT cherry", "t ~ '(red|blue)' AND t !~ 'cherry'"),
                   ("i8:[0 TO 9007199254740993]", "i8 BETWEEN 0 AND 9007199254740993"),
                   ("i8:<0 OR t:pear", "i8 < 0 OR t ~ 'pear'")):
        got = s.value("SELECT string_agg(_id, ',' ORDER BY _id) FROM docs_src "
                      "WHERE _query = '%s';" % q)
        want = s.value("SELECT string_agg(id, ',' ORDER BY id) FROM native WHERE %s;" % sql)
        check(got == want, "_query %r finds %r, want %r" % (q, got, want))
    r = s.run("SELECT _id FROM docs_src WHERE _query = 'red)';")
    check(r.rc == 1 and r.sqlstate == "42601" and "_search" in r.err,
          "a malformed _query in a search: want 42601; got rc=%s %s %s"
          % (r.rc, r.sqlstate, r.err.strip()[:600]))
    r = s.run("SELECT count(*) FROM docs_src WHERE _query = '(((';")
    check(r.rc == 1 and "Failed to parse query [(((]" in r.err
          and "Cannot parse '(((':" in r.err and r.sqlstate == "42601",
          "a malformed _query: want 42601 quoting the parse failure; "
          "got rc=%s %s %r %s" % (r.rc, r.sqlstate, r.out, r.err.strip()[:600]))


def test():
    mark = pgtest.pg_log_mark()
    es = es_helper.Standin()
    es.request("PUT", "/fid", {"mappings": MAPPINGS})
    db = pgtest.create_db("pgpoly_es_fid")
    native_rows = ", ".join("(%s)" % ", ".join("'%s'" % v for v in row) for row in ROWS)
    r = pgtest.psql(
        "CREATE SERVER esf FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%s');\n" % es.url +
        "CREATE FOREIGN TABLE docs (_id text, %s) SERVER esf "
        "OPTIONS (index 'fid', refresh 'true');\n" % COLS +
        "CREATE FOREIGN TABLE docs_src (_id text, %s, _source jsonb, _query text) SERVER esf "
        "OPTIONS (index 'fid');\n" % COLS +
        "CREATE TABLE native (id text PRIMARY KEY, %s);\n" % COLS +
        "INSERT INTO native VALUES %s;\n" % native_rows +
        "INSERT INTO docs VALUES %s;\n" % native_rows, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    s = pgtest.Session(db)
    values(s, es)
    query_syntax(s)
    s.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
