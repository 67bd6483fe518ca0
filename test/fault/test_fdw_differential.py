#!/usr/bin/env python3
"""Randomized differential queries: each FDW against a native copy of its rows.

The same rows are loaded into a foreign table and into a native PostgreSQL
table with the same columns; seeded random queries then run on both, in one
session (so under the same settings), and their answers must be equal: as
multisets, or as lists where ORDER BY determines the order (every ORDER BY
generated ends with the unique key column).  An error on one side only, or
different SQLSTATEs, is a mismatch too.  Stores and tables:

  * pgpoly_redis: hash tables with a text, an int8 and a timestamptz key, and
    a json table (key pushdown, key LIKE 'prefix%' as SCAN MATCH, HMGET field
    narrowing, keys-only scans, the batched join), and a zset table (score
    ranges as ZRANGEBYSCORE);
  * pgpoly_elastic against a private ES stand-in (test/es_standin.py), one
    index with an explicit mapping (keyword, integer, long, double, boolean,
    date, object) and one mapped as dynamic mapping would (text with a
    .keyword subfield of ignore_above 256, long, float): term/terms/range/
    exists/ids, sorts, size (LIMIT) and _count;
  * pgpoly_vector against the harness's Chroma: ids and metadata `where`
    filters;
  * pgpoly_vector with provider 'qdrant' against test/qdrant_fixture.py (the
    Qdrant stand-in): ids (point ids: unsigned integers and UUIDs, compared
    with texts that cannot be ids too), payload filters, and k-NN queries
    (ORDER BY embedding <->/<=>/<#> a constant or a parameter LIMIT n
    [OFFSET m], with WHERE trees, in plain, prepared and generic plans, in a
    LATERAL subquery rescanned per outer row, in a transaction with buffered
    writes, through a SCROLL cursor) against the native copy's embeddings.

Generated: WHERE trees of =, <>, <, <=, >, >=, BETWEEN [SYMMETRIC], IN and
NOT IN lists (with NULLs), = ANY(array), IS [NOT] NULL, IS [NOT] TRUE, LIKE /
ILIKE / NOT LIKE with %, _ and escapes (ESCAPE too), NOT, AND/OR nesting,
constants of the column's type and of other types (int2/int8/numeric/float4,
date/timestamp for timestamptz, COLLATE "C"); prepared statements whose
parameters are the compared values, LIMIT and OFFSET, executed 7 times with
NULL parameters among them (so the generic plan runs, also under
plan_cache_mode force_generic_plan); ORDER BY with ASC/DESC and NULLS
FIRST/LAST, LIMIT/OFFSET; count(*) and key-only queries; UPDATE, DELETE and
INSERT ... SELECT (with RETURNING) in an open transaction, followed by
queries that read them through the overlay; joins to a native
table (on the key and on a value), EXISTS / NOT EXISTS, LATERAL subqueries
with LIMIT (rescans with new parameters), with hash and merge joins switched
off so that nested loops rescan the foreign scan; SCROLL cursors read with
FETCH forward, BACKWARD, ABSOLUTE and PRIOR; each round under random session
settings (DateStyle, IntervalStyle, TimeZone, extra_float_digits, lc_numeric,
bytea_output); a column under a nondeterministic ICU collation.  Column
types: text (unicode, empty, blanks, quotes, backslashes, LIKE and glob
metacharacters), int4, int8, float8 (NaN, +-Infinity, -0, extremes),
numeric (NaN, Infinity, many digits), bool, timestamptz, date, jsonb.

Values a store cannot hold are left out of that store's rows, as its README
section documents (see STORE_SKIP); they still appear as query constants.
Documented behaviour that would differ from a native table is not generated:
see the comments at STORE_SKIP and in exercise().

Environment: FDW_DIFF_SEED (default 20261203), FDW_DIFF_QUERIES (queries
per table and kind of query, default 50: about 4,600 queries, 30 s;
`FDW_DIFF_QUERIES=300` for a long hunt), FDW_DIFF_TABLES (a comma list of
the f_* tables to query), FDW_DIFF_VERBOSE=1 prints every statement.  A mismatch prints the seed,
the settings and the query on both tables, with both answers.
"""

import os
import random
import urllib.request

import sys

import es_helper
import pgtest
import pgwire

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qdrant_fixture  # noqa: E402

SEED = int(os.environ.get("FDW_DIFF_SEED", "20261203"))
BUDGET = int(os.environ.get("FDW_DIFF_QUERIES", "50"))
VERBOSE = os.environ.get("FDW_DIFF_VERBOSE") == "1"
TAG = "fdwdiff_%d" % os.getpid()

COLS = ["t", "ci", "i4", "i8", "f8", "n", "b", "ts", "d", "j"]
TYPES = {"t": "text", "ci": "text", "i4": "int4", "i8": "int8", "f8": "float8",
         "n": "numeric", "b": "bool", "ts": "timestamptz", "d": "date",
         "j": "jsonb", "member": "text", "score": "float8"}

TEXTS = ["", " ", "a", "A", "ab", "aB", "a b", "b", "ba", "it's", "'", "''",
         "back\\slash", "\\", "a%b", "a_b", "100%", "_x", "x*y", "[ab]", "a?",
         "Ünïcödé", "ünïcödé", "ß", "SS", "ss", "日本語", "emoji 😀", "tab\there",
         "line\nbreak", "trailing ", " leading", "z", "zz", "\"dq\"", "a\\%b",
         # past the 256 of a dynamically mapped .keyword's ignore_above, in
         # code points or only in UTF-16 units
         "L" * 256, "é" * 255 + "😀", "y" * 300]
KEYS = ["k%02d" % i for i in range(24)] + [
    "a b", "o'q", "back\\slash", "ünï", "日本", "x*y", "pct%", "under_s",
    "[br]", "q?", "K00", "k0", "k1_", "k1%"]
# keys of an int8 and a timestamptz key column (Redis)
IKEYS = [0, 1, -1, 7, 42, 100, 2147483648, -9223372036854775808,
         9223372036854775807, 9007199254740993, 12, 13, 14, 15, 16, 17, 18, 19,
         20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33]
TSKEYS = ["2024-03-10 07:30:00+00", "2024-03-10 07:30:00.000001+00",
          "2024-03-10 02:30:00-05:30", "1999-12-31 23:59:59.999999+00",
          "2000-01-01 00:00:00+00", "1970-01-01 00:00:00+00", "infinity",
          "-infinity", "2024-02-29 12:00:00+05:30", "1900-06-15 00:00:00+00"] + [
          "2025-01-%02d 10:00:00+00" % d for d in range(1, 25)]
# Qdrant point ids as the id column spells them (a text column)
QIDS = ["0", "1", "2", "7", "10", "42", "99", "100", "1000", "65536", "4294967296",
        "9007199254740993", "9223372036854775807", "123456789012"] + [
        "%d" % (300 + i) for i in range(16)] + [
        "5c56c793-69f3-4fbf-87e6-c4bf54c28c26", "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff", "0a0b0c0d-1111-2222-3333-444455556666"]
KEYPOOL = {"text": KEYS, "int8": IKEYS, "timestamptz": TSKEYS, "qid": QIDS}
SIDEKEY = {"text": "sk", "int8": "si", "timestamptz": "st", "qid": "sk"}
# the SQL type of a key type
KEYSQL = {"qid": "text"}
I4 = [0, 1, -1, 2, 7, 42, 100, -100, 2147483647, -2147483648, 65536, 3]
I8 = [0, 1, -1, 5, 9007199254740993, -9007199254740993, 9223372036854775807,
      -9223372036854775808, 4294967296, 123456789012]
F8 = ["0", "-0", "1", "-1", "0.5", "2.5", "2", "-1.5", "0.1", "0.30000000000000004",
      "1e308", "-1e308", "5e-324", "2.2250738585072014e-308", "NaN", "Infinity",
      "-Infinity", "1048576.125", "3", "1e15", "123456.789"]
NUM = ["0", "1", "1.0", "1.00", "2.5", "-2.5", "3", "0.1", "-0.0",
       "3.14159265358979323846264338327950288",
       "12345678901234567890.123", "1e20", "NaN", "Infinity", "-Infinity",
       "0.000000000000000000001", "2.50000000000000000001", "100"]
TSS = ["2024-03-10 07:30:00+00", "2024-03-10 07:30:00.123456+00",
       "2024-03-10 07:30:00.123+00", "2024-03-10 02:30:00-05", "1999-12-31 23:59:59.999999+00",
       "2000-01-01 00:00:00+00", "1970-01-01 00:00:00+00", "2024-02-29 12:00:00+05:30",
       "1900-06-15 00:00:00+00", "infinity", "-infinity", "2038-01-19 03:14:08+00"]
DATES = ["2024-03-10", "2024-03-11", "2000-01-01", "1970-01-01", "1999-12-31",
         "2024-02-29", "1900-01-01", "2100-12-31", "infinity", "-infinity"]
JSONS = ['{"a": 1}', '{"a": "x", "b": [1, 2]}', '{}', '{"n": null}', '[1, 2, 3]',
         '"str"', '1.5', 'true', '{"u": "ünï", "q": "it\'s \\\\"}']
# values of a parameter's type, for the generic plan's executions
PARAM_POOLS = {"text": TEXTS + KEYS, "int4": I4, "int8": I8 + IKEYS, "float8": F8,
               "float4": ["0.5", "2.5", "-1", "NaN"], "int2": [0, 1, -1, 7],
               "numeric": NUM, "bool": [True, False], "timestamptz": TSS + TSKEYS,
               "timestamp": ["2024-03-10 07:30:00", "infinity"], "date": DATES,
               "jsonb": JSONS}
POOLS = {"t": TEXTS, "ci": TEXTS, "i4": I4, "i8": I8, "f8": F8, "n": NUM,
         "b": [True, False], "ts": TSS, "d": DATES, "j": JSONS, "member": TEXTS,
         "score": F8}

# Values each store cannot hold, as its README section documents; left out
# of that store's rows (queries still compare with them).
STORE_SKIP = {
    # Redis holds every value's text form.
    "redis": {},
    # A json table: a float -0 reads back as 0 (README "Values in the
    # stores": jsonb numbers have no negative zero); the same in ES and
    # vector metadata, left out there below too.
    "rjson": {"f8": {"-0"}},
    # Redis zset scores: Redis refuses NaN scores, and reads -0 back as 0
    # (README "Values in the stores").
    "zset": {"score": {"NaN", "-0"}},
    # Elasticsearch holds finite float8 numbers and finite dates (README
    # "Query syntax and what is pushed down"), and a double field tells -0.0
    # from 0.0 when sorting, which SQL does not (documented there: rows
    # holding both zeros may come in another order under a next sort key).
    "es": {"f8": {"NaN", "Infinity", "-Infinity", "-0"},
           # "1.00": the stand-in keeps _source as Python floats (1.0);
           # a real cluster returns the bytes it was sent
           "n": {"NaN", "Infinity", "-Infinity", "-0.0", "1.00",
                 "3.14159265358979323846264338327950288",
                 "12345678901234567890.123", "2.50000000000000000001",
                 "0.000000000000000000001"},
           "ts": {"infinity", "-infinity"}, "d": {"infinity", "-infinity"},
           # jsonb: an object field (mapping enabled false) only
           "j": {'[1, 2, 3]', '"str"', '1.5', 'true'}},
    # Chroma metadata: numbers are parsed to within one ulp (README Vector
    # search, Limitations), so only floats that are exact in few digits;
    # numeric is exact to 15 significant digits as a float8; no jsonb.
    # The Qdrant stand-in keeps JSON numbers as Python floats and ints (exact
    # doubles and integers): a numeric keeps no trailing zeros (1.0 reads 1)
    # and an integer beyond int64 cannot be metadata (22003).
    "qdrant": {"f8": {"-0"},
               "n": {"3.14159265358979323846264338327950288", "1.00",
                     "12345678901234567890.123", "0.000000000000000000001",
                     "2.50000000000000000001", "-0.0", "1e20", "1.0"}},
    "vector": {"f8": {"0.1", "0.30000000000000004", "1e308", "-1e308", "5e-324",
                      "2.2250738585072014e-308", "123456.789", "-0"},
               "n": {"3.14159265358979323846264338327950288", "1.0", "1.00",
                     "12345678901234567890.123", "0.000000000000000000001",
                     "2.50000000000000000001", "0.1", "1e20", "-0.0"}},
}


def lit(v, typ):
    """SQL literal of v as typ."""
    if v is None:
        return "NULL::%s" % typ
    if isinstance(v, bool):
        return "true" if v else "false"
    s = str(v)
    return "'%s'::%s" % (s.replace("'", "''"), typ)


class Runner:
    def __init__(self, conn):
        self.c = conn
        self.count = 0
        self.mismatches = []
        self.settings = ""

    def run(self, sql):
        """Results of sql: (error sqlstate or None, rows as tuples of str)."""
        out = []
        if VERBOSE:
            print(sql, flush=True)
        try:
            res = self.c.query(sql)
        except ConnectionError:
            print("CONNECTION LOST running: %s\nsettings: %s" % (sql, self.settings),
                  flush=True)
            raise
        for r in res:
            if r.error:
                out.append(("E" + r.error.get("C", "?"), r.error.get("M")))
            elif not r.skipped:
                out.append((None, [tuple(None if x is None else x.decode()
                                         for x in row) for row in r.rows]))
        return out

    def compare(self, fsql, nsql, ordered, what):
        """Run both; record a mismatch.  ordered: a list of bools, one per
        statement (True: compare in order)."""
        self.count += 1
        fr = self.run(fsql)
        if self.c.status in ("E", "T"):
            self.run("ROLLBACK")
        nr = self.run(nsql)
        if self.c.status in ("E", "T"):
            self.run("ROLLBACK")
        bad = len(fr) != len(nr)
        for i, (a, b) in enumerate(zip(fr, nr)):
            if (a[0] is None) != (b[0] is None):
                bad = True
            elif a[0] is not None:
                bad = bad or a[0] != b[0]
            else:
                o = ordered[i] if i < len(ordered) else False
                ra, rb = a[1], b[1]
                if not o:
                    ra, rb = sorted(ra, key=repr), sorted(rb, key=repr)
                bad = bad or ra != rb
        if bad:
            msg = ("MISMATCH (%s) seed %d\nsettings: %s\nforeign: %s\n -> %r\n"
                   "native:  %s\n -> %r" % (what, SEED, self.settings, fsql,
                                              fr, nsql, nr))
            self.mismatches.append(msg)
            print(msg, flush=True)
        return not bad


SETTINGS = [
    ("DateStyle", ["ISO, MDY", "SQL, DMY", "German", "Postgres, MDY", "ISO, YMD"]),
    ("IntervalStyle", ["postgres", "sql_standard", "iso_8601", "postgres_verbose"]),
    ("TimeZone", ["UTC", "Asia/Kathmandu", "America/St_Johns", "Pacific/Kiritimati",
                  "America/Los_Angeles"]),
    ("extra_float_digits", ["-15", "0", "1", "3"]),
    ("lc_numeric", ["C", "C.utf8"]),
    ("bytea_output", ["hex", "escape"]),
    ("enable_hashjoin", ["on", "off"]),
    ("enable_mergejoin", ["on", "off"]),
    ("plan_cache_mode", ["auto", "auto", "force_generic_plan", "force_custom_plan"]),
]


class Gen:
    """Query generator for one foreign table and its native copy."""

    def __init__(self, rnd, key, cols, unique=None, keytype="text"):
        self.r = rnd
        self.key = key
        self.keytype = keytype
        self.unique = unique or key  # what makes an ORDER BY total
        self.cols = cols
        self.params = None  # list of (type, value) while building a PREPARE

    def const(self, col):
        typ = self.typ(col)
        r = self.r
        pool = POOLS.get(col, TEXTS)
        if col == self.key:
            pool = KEYPOOL[self.keytype] + {
                "text": ["nope", "", "K01", "k0%", "k0_"], "int8": [-2, 5000],
                "timestamptz": ["2024-03-10 07:30:00.000002+00"],
                # texts that are no point ids, or not as Qdrant spells them
                "qid": ["01", "-1", "1.0", "x", "9223372036854775808", " 1",
                        "5C56C793-69F3-4FBF-87E6-C4BF54C28C26", "3000"]}[self.keytype]
        v = r.choice(pool) if r.random() < 0.93 else None
        if self.params is not None and r.random() < 0.5:
            self.params.append((typ, v))
            return "$%d" % len(self.params)
        # another type now and then
        if v is not None and r.random() < 0.12:
            if typ == "int4":
                return lit(v, r.choice(["int2" if abs(v) < 32768 else "int8", "int8", "numeric"]))
            if typ == "int8":
                return lit(v, r.choice(["numeric", "int8"]))
            if typ == "float8":
                return lit(v, r.choice(["float4", "numeric" if v not in ("NaN", "Infinity", "-Infinity") else "float8"]))
            if typ == "numeric":
                return lit(v, r.choice(["float8", "numeric"]))
            if typ == "timestamptz":
                return lit(v, "timestamp")
            if typ == "date":
                return lit(v, r.choice(["timestamptz", "timestamp"]))
            if typ == "text":
                return lit(v, "text") + ' COLLATE "C"'
        return lit(v, typ)

    def typ(self, col):
        if col == self.key:
            return KEYSQL.get(self.keytype, self.keytype)
        return TYPES.get(col, "text")

    def leaf(self):
        r = self.r
        # the key column, where most pushdown is, a third of the time
        col = self.key if r.random() < 0.33 else r.choice(self.cols)
        typ = self.typ(col)
        k = r.random()
        if typ == "bool":
            return r.choice(["%s", "NOT %s", "%s IS TRUE", "%s IS NOT FALSE",
                             "%s = %s" % ("%s", self.const(col)),
                             "%s IS NULL", "%s IS NOT NULL"]) % col
        if typ == "jsonb":
            return r.choice(["%s IS NULL" % col, "%s IS NOT NULL" % col,
                             "%s = %s" % (col, self.const(col)),
                             "%s->>'a' = 'x'" % col, "%s ? 'a'" % col])
        if k < 0.35:
            op = r.choice(["=", "=", "<>", "<", "<=", ">", ">="])
            return "%s %s %s" % (col, op, self.const(col))
        if k < 0.45:
            return "%s %sBETWEEN %s%s AND %s" % (
                col, r.choice(["", "", "NOT "]), r.choice(["", "SYMMETRIC "]),
                self.const(col), self.const(col))
        if k < 0.62:
            items = [self.const(col) for _ in range(r.randint(1, 4))]
            if r.random() < 0.5:
                return "%s %sIN (%s)" % (col, r.choice(["", "", "NOT "]), ", ".join(items))
            vals = [r.choice(KEYPOOL[self.keytype] if col == self.key else POOLS[col])
                    for _ in range(3)]
            arr = "ARRAY[%s]::%s[]" % (", ".join(lit(v, typ) for v in vals), typ)
            return "%s = ANY (%s)" % (col, arr)
        if k < 0.72:
            return "%s IS %sNULL" % (col, r.choice(["", "NOT "]))
        if typ == "text" and k < 0.95:
            base = r.choice(KEYS if col == self.key and r.random() < 0.7 else TEXTS)
            pat = list(base)
            if pat and r.random() < 0.5:
                pat = pat[:r.randint(0, len(pat))]
            pat = "".join(pat) + r.choice(["%", "%", "", "_%", "_"])
            if r.random() < 0.3:
                pat = r.choice(["%", "_"]) + pat
            esc = ""
            if r.random() < 0.2:
                pat = pat.replace("%", "#%", 1) if r.random() < 0.5 else "#_" + pat
                esc = " ESCAPE '#'"
            # a pattern ending in its escape character raises 22025 on the
            # first row it is tested on: whether any row reaches it depends
            # on the order the quals run in (a pushed qual filtering first),
            # which SQL leaves open, so it would not compare; escape it
            e = "#" if esc else "\\"
            if (len(pat) - len(pat.rstrip(e))) % 2:
                pat += e
            op = r.choice(["LIKE", "LIKE", "LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE"])
            if col == "ci" and "I" not in op:
                op = "LIKE"  # nondeterministic collations refuse LIKE
                return "%s COLLATE \"C\" %s %s%s" % (col, op, lit(pat, "text"), esc)
            if col == "ci":
                return "%s COLLATE \"C\" %s %s%s" % (col, op, lit(pat, "text"), esc)
            if self.params is not None and r.random() < 0.3:
                self.params.append(("text", pat))
                return "%s %s $%d%s" % (col, op, len(self.params), esc)
            return "%s %s %s%s" % (col, op, lit(pat, "text"), esc)
        op = r.choice(["=", "<", ">="])
        return "%s %s %s" % (col, op, self.const(col))

    def pred(self, depth=0):
        r = self.r
        k = r.random()
        if depth >= 3 or k < 0.45:
            return self.leaf()
        if k < 0.7:
            return "(%s AND %s)" % (self.pred(depth + 1), self.pred(depth + 1))
        if k < 0.92:
            return "(%s OR %s)" % (self.pred(depth + 1), self.pred(depth + 1))
        return "NOT (%s)" % self.pred(depth + 1)

    def where(self):
        if self.r.random() < 0.08:
            return ""
        return " WHERE " + self.pred()

    def order(self, alias=""):
        r = self.r
        keys = []
        for _ in range(r.randint(0, 2)):
            c = r.choice(self.cols)
            if TYPES.get(c) == "jsonb":
                continue
            keys.append("%s%s%s%s" % (alias, c, r.choice(["", " DESC", " ASC"]),
                                      r.choice(["", " NULLS FIRST", " NULLS LAST"])))
        d = r.choice(["", " DESC"])
        keys.append(", ".join("%s%s%s" % (alias, u.strip(), d)
                              for u in self.unique.split(",")))
        return " ORDER BY " + ", ".join(keys)

    def select_list(self):
        r = self.r
        k = r.random()
        if k < 0.15:
            return "count(*)", False
        if k < 0.3:
            return self.key, True
        cols = r.sample(self.cols, r.randint(1, min(4, len(self.cols))))
        return ", ".join([self.key] + cols), True


def quoted(s):
    return "'%s'" % s.replace("'", "''")


def rows_for(rnd, store, key, cols, n, keytype="text"):
    """n rows (dicts) for a store, values from the pools minus STORE_SKIP."""
    skip = STORE_SKIP.get(store, {})
    keys = rnd.sample(KEYPOOL[keytype], n)
    rows = []
    for k in keys:
        row = {key: k}
        for c in cols:
            pool = [v for v in POOLS[c] if str(v) not in skip.get(c, set())]
            row[c] = rnd.choice(pool) if rnd.random() < 0.85 else None
        rows.append(row)
    return rows


def values_sql(rows, cols, keytype="text"):
    return ", ".join("(%s)" % ", ".join(lit(row[c], keytype if i == 0 else TYPES[c])
                                        for i, c in enumerate(cols)) for row in rows)


def coldefs(cols, key, keydef="text"):
    out = ["%s %s" % (key, keydef)]
    for c in cols:
        t = TYPES[c]
        out.append("%s %s%s" % (c, t, " COLLATE dci" if c == "ci" else ""))
    return ", ".join(out)


def exercise(run, rnd, ftab, ntab, key, cols, budget, zset=False, keytype="text",
             store="redis"):
    """Generate budget queries of each kind on ftab and ntab."""
    g = Gen(rnd, key, cols, "key, member" if zset else None, keytype)
    sk = SIDEKEY[keytype]

    def both(tmpl, ordered, what, **kw):
        return run.compare(tmpl.replace("{T}", ftab), tmpl.replace("{T}", ntab),
                           ordered, "%s %s" % (ftab, what))

    def new_settings():
        sets = []
        for name, vals in SETTINGS:
            if rnd.random() < 0.5:
                sets.append("SET %s = %s" % (name, quoted(rnd.choice(vals))))
        run.settings = "RESET ALL; " + "; ".join(sets)
        run.run(run.settings)

    for i in range(budget):
        if i % 5 == 0:
            new_settings()
        # plain queries
        sel, keyed = g.select_list()
        w = g.where()
        if sel != "count(*)" and rnd.random() < 0.6:
            o = g.order()
            lim = ""
            if rnd.random() < 0.6:
                lim = " LIMIT %d" % rnd.choice([0, 1, 2, 3, 5, 10, 100])
                if rnd.random() < 0.5:
                    lim += " OFFSET %d" % rnd.choice([0, 1, 3, 7, 50])
            both("SELECT %s FROM {T}%s%s%s" % (sel, w, o, lim), [True], "ordered")
        else:
            both("SELECT %s FROM {T}%s" % (sel, w), [False], "plain")

        # prepared, 7 executions
        g.params = []
        p = g.pred()
        params = g.params
        g.params = None
        tail = ""
        lim_params = []
        if rnd.random() < 0.5:
            tail = g.order()
            if rnd.random() < 0.7:
                lim_params.append(("int8", rnd.choice([0, 1, 2, 5, None])))
                tail += " LIMIT $%d" % (len(params) + 1)
                if rnd.random() < 0.5:
                    lim_params.append(("int8", rnd.choice([0, 1, 4, None])))
                    tail += " OFFSET $%d" % (len(params) + 2)
        sel, _ = g.select_list()
        if sel == "count(*)":
            tail = ""
            lim_params = []
        allp = params + lim_params
        types = ", ".join(t for t, _ in allp)
        decl = "(%s)" % types if allp else ""
        body = "SELECT %s FROM {T} WHERE %s%s" % (sel, p, tail)
        fpre = "PREPARE fq%s AS %s" % (decl, body.replace("{T}", ftab))
        npre = "PREPARE nq%s AS %s" % (decl, body.replace("{T}", ntab))
        run.run("DEALLOCATE ALL")
        e1, e2 = run.run(fpre), run.run(npre)
        if e1[0][0] or e2[0][0]:
            run.compare(fpre, npre, [False], "prepare")
        else:
            # the first executions with the values generated (custom plans),
            # the later ones (the generic plan) with others of the type
            for ex in range(7):
                vals = []
                for i, (t, v) in enumerate(allp):
                    if ex > 0 and i >= len(params):
                        v = rnd.choice([0, 1, 2, 3, 5, None])
                    elif ex > 1 and rnd.random() < 0.6:
                        v = None if rnd.random() < 0.15 else rnd.choice(PARAM_POOLS[t])
                    vals.append(lit(v, t))
                args = "(%s)" % ", ".join(vals) if vals else ""
                ok = run.compare("EXECUTE fq%s" % args, "EXECUTE nq%s" % args,
                                 [bool(tail)], "execute #%d of %s" % (ex + 1, fpre))
                if not ok:
                    break
            # the values generated again, with other limits
            vals = []
            for i, (t, v) in enumerate(allp):
                vals.append(lit(rnd.choice([1, 3]) if i >= len(params) else v, t))
            args = "(%s)" % ", ".join(vals) if vals else ""
            run.compare("EXECUTE fq%s" % args, "EXECUTE nq%s" % args,
                        [bool(tail)], "execute again of %s" % fpre)

        # joins with the native side table, nested loops rescanning
        w = g.pred()
        j = rnd.choice([
            ("SELECT f.{K}, s.v FROM {T} f JOIN side s ON f.{K} = s.sk WHERE %s" % w, False),
            ("SELECT s.sk, f.{K} FROM side s LEFT JOIN {T} f ON f.{K} = s.sk AND %s" % w, False),
            ("SELECT s.sk FROM side s WHERE EXISTS (SELECT 1 FROM {T} f WHERE f.{K} = s.sk AND %s)" % w, False),
            ("SELECT s.sk FROM side s WHERE NOT EXISTS (SELECT 1 FROM {T} f WHERE f.{K} = s.sk AND %s)" % w, False),
            ("SELECT s.sk, x.{K} FROM side s, LATERAL (SELECT f.{K} FROM {T} f WHERE %s AND f.{K} >= s.sk ORDER BY f.{K} LIMIT 2) x" % w, False),
            ("SELECT s.sk, (SELECT count(*) FROM {T} f WHERE f.{K} = s.sk OR %s) FROM side s" % w, False),
            ("SELECT count(*) FROM {T} f WHERE f.{K} IN (SELECT s.sk FROM side s) AND %s" % w, False),
            ("SELECT f.{K} FROM {T} f WHERE f.{K} = ANY (ARRAY(SELECT s.sk FROM side s WHERE v > 1)) AND %s" % w, False),
        ] + ([("SELECT f.{K}, s.sk FROM {T} f JOIN side s ON f.i4 = s.v WHERE %s" % w, False)]
             if "i4" in cols else []))
        both(j[0].replace("{K}", key).replace("s.sk", "s." + sk), [j[1]], "join")

        # cursors
        if i % 3 == 0:
            sel, _ = g.select_list()
            if sel == "count(*)":
                sel = key
            w = g.where()
            o = g.order() if rnd.random() < 0.7 else ""
            fetches = ["FETCH %d FROM c" % rnd.randint(1, 4),
                       "FETCH BACKWARD %d FROM c" % rnd.randint(1, 3),
                       "FETCH ABSOLUTE %d FROM c" % rnd.randint(-3, 5),
                       "FETCH PRIOR FROM c", "FETCH ALL FROM c",
                       "FETCH BACKWARD ALL FROM c"]
            rnd.shuffle(fetches)
            sql = ("BEGIN; DECLARE c SCROLL CURSOR FOR SELECT %s FROM {T}%s%s; %s; COMMIT"
                   % (sel, w, o, "; ".join(fetches)))
            if o:
                both(sql, [True] * 9, "cursor")
            else:
                # no order: forward then backward must mirror each other, and
                # the rows be the native ones
                sql = ("BEGIN; DECLARE c SCROLL CURSOR FOR SELECT %s FROM {T}%s; "
                       "FETCH ALL FROM c; FETCH BACKWARD ALL FROM c; COMMIT" % (sel, w))
                fr = run.run(sql.replace("{T}", ftab))
                if run.c.status in ("E", "T"):
                    run.run("ROLLBACK")
                if len(fr) > 3 and fr[2][0] is None and fr[3][0] is None:
                    pgtest.check(fr[2][1][::-1] == fr[3][1],
                                 "cursor backward mirrors forward: %s" % sql.replace("{T}", ftab))
                both(sql, [False, False, False, False], "cursor unordered")
        # a transaction's own writes overlaid on what the store returns
        dml = rnd.random()
        skip = STORE_SKIP.get(store, {})
        if dml < 0.4:
            # not a zset's member: the row's identity, and several rows moved
            # onto one member is an ERROR (README "Row shape by table type")
            c = rnd.choice(["score"] if zset else cols)
            # (a zset's score cannot be NULL: README "Row shape by table type")
            v = rnd.choice([x for x in POOLS[c] if str(x) not in skip.get(c, set())] +
                           ([] if zset else [None]))
            if c == "b" and v is None and store == "vector":
                v = True
            stmt = "UPDATE {T} SET %s = %s WHERE %s RETURNING %s" % (
                c, lit(v, TYPES[c]), g.pred(), g.unique)
        elif dml < 0.7:
            stmt = "DELETE FROM {T} WHERE %s RETURNING %s" % (g.pred(), g.unique)
        elif keytype == "text" and store != "vector":
            newkey = "%s || '+'" % key if not zset else key
            extra = "member || '+', score" if zset else ", ".join(cols)
            stmt = "INSERT INTO {T} (%s, %s) SELECT %s, %s FROM {T} WHERE %s RETURNING %s" % (
                key, ", ".join(["member", "score"] if zset else cols), newkey, extra,
                g.pred(), g.unique)
        else:
            stmt = "DELETE FROM {T} WHERE %s RETURNING %s" % (g.pred(), g.unique)
        sel, _ = g.select_list()
        o = g.order() if sel != "count(*)" else ""
        lim = " LIMIT %d" % rnd.choice([1, 3, 10]) if o and rnd.random() < 0.5 else ""
        sel2, _ = g.select_list()
        both("BEGIN; %s; SELECT %s FROM {T}%s%s%s; SELECT %s FROM {T}%s; ROLLBACK"
             % (stmt, sel, g.where(), o, lim, sel2, g.where()),
             [False, False, bool(o), False, False], "in a writing transaction")

        if zset:
            # score ranges: ZRANGEBYSCORE
            v1, v2 = rnd.choice(F8), rnd.choice(F8)
            t = rnd.choice(["float8", "float8", "float4", "numeric" if v1 not in ("NaN", "Infinity", "-Infinity") else "float8"])
            op = rnd.choice(["=", "<", "<=", ">", ">="])
            both("SELECT key, member, score FROM {T} WHERE score %s %s AND score <= %s"
                 % (op, lit(v1, t), lit(v2, "float8")), [False], "zset score")


# k-NN query vectors and operators.  Never zero (a zero vector's <=> is NaN
# for every row), nor so large that every row's <-> rounds to one double
# (then the rows tie and no answer fixes their order).
QVECS = ["{0.5,0.5,1}", "{1,0,0}", "{-1,2,0.5}", "{0.001,1000,1}", "{0.25,0.75,1}",
         "{1e-30,1,0}", "{1e6,1,0.5}", "{-0.5,-0.5,-1}"]
KNN_OPS = ["<->", "<->", "<=>", "<#>"]


def exercise_knn(run, rnd, ftab, ntab, key, cols, budget):
    """k-NN queries on ftab and ntab (which both have an embedding column)."""
    g = Gen(rnd, key, cols, None, "qid")

    def both(tmpl, ordered, what):
        return run.compare(tmpl.replace("{T}", ftab), tmpl.replace("{T}", ntab),
                           ordered, "%s k-NN %s" % (ftab, what))

    def knn_order(alias=""):
        op = rnd.choice(KNN_OPS)
        q = rnd.choice(QVECS)
        return op, q, " ORDER BY %sembedding %s '%s'::real[]" % (alias, op, q)

    for i in range(budget):
        if i % 5 == 0:
            run.settings = "RESET ALL; " + "; ".join(
                "SET %s = %s" % (n, quoted(rnd.choice(v))) for n, v in SETTINGS
                if rnd.random() < 0.5)
            run.run(run.settings)
        # (not the distance itself: a pushed k-NN's comes from the service,
        # which computes it in its own precision: README Vector search)
        _, _, o = knn_order()
        sel = ", ".join([key] + rnd.sample(cols, rnd.randint(0, 3)))
        lim = " LIMIT %d" % rnd.choice([0, 1, 2, 3, 5, 10, 100])
        if rnd.random() < 0.3:
            lim += " OFFSET %d" % rnd.choice([0, 1, 3, 40])
        w = g.where()
        both("SELECT %s FROM {T}%s%s%s" % (sel, w, o, lim), [True], "plain")

        # prepared: the query vector and the limit as parameters
        g.params = []
        p = g.pred()
        params = g.params
        g.params = None
        n = len(params)
        op = rnd.choice(KNN_OPS)
        decl = ", ".join([t for t, _ in params] + ["real[]", "int8"])
        body = "SELECT %s FROM {T} WHERE %s ORDER BY embedding %s $%d LIMIT $%d" % (
            key, p, op, n + 1, n + 2)
        fpre = "PREPARE fk(%s) AS %s" % (decl, body.replace("{T}", ftab))
        npre = "PREPARE nk(%s) AS %s" % (decl, body.replace("{T}", ntab))
        run.run("DEALLOCATE ALL")
        e1, e2 = run.run(fpre), run.run(npre)
        if e1[0][0] or e2[0][0]:
            run.compare(fpre, npre, [False], "k-NN prepare")
        else:
            for ex in range(7):
                vals = [lit(v if ex < 2 or rnd.random() < 0.4 else
                            rnd.choice(PARAM_POOLS[t] + [None]), t) for t, v in params]
                vals += ["'%s'::real[]" % rnd.choice(QVECS),
                         lit(rnd.choice([0, 1, 2, 5, None]), "int8")]
                if not run.compare("EXECUTE fk(%s)" % ", ".join(vals),
                                   "EXECUTE nk(%s)" % ", ".join(vals), [True],
                                   "k-NN execute #%d of %s" % (ex + 1, fpre)):
                    break

        # rescans: a k-NN per outer row, its vector from the row
        op = rnd.choice(KNN_OPS)
        both("SELECT s.sk, x.%s FROM side s, LATERAL (SELECT f.%s FROM {T} f WHERE %s "
             "ORDER BY f.embedding %s ARRAY[coalesce(s.v, 0), 1, 0.5]::real[] LIMIT %d) x"
             % (key, key, g.pred(), op, rnd.choice([1, 2, 4])), [False], "lateral")

        # a transaction's writes: the k-NN computed through them
        _, _, o = knn_order()
        stmt = rnd.choice([
            "DELETE FROM {T} WHERE %s" % g.pred(),
            # (each row its own vector: equal distances would tie)
            "UPDATE {T} SET embedding = ARRAY[embedding[2] * %s, embedding[1], -1]::real[] "
            "WHERE %s" % (rnd.choice(["1", "-3", "1000"]), g.pred()),
            "UPDATE {T} SET %s = NULL WHERE %s" % (rnd.choice(cols), g.pred())])
        both("BEGIN; %s; SELECT %s FROM {T}%s%s LIMIT 3; ROLLBACK" % (stmt, key, g.where(), o),
             [False, True, False], "in a writing transaction")

        # a scroll cursor over a pushed k-NN
        if i % 3 == 0:
            _, _, o = knn_order()
            both("BEGIN; DECLARE c SCROLL CURSOR FOR SELECT %s FROM {T}%s%s LIMIT 4; "
                 "FETCH 2 FROM c; FETCH BACKWARD 1 FROM c; FETCH ALL FROM c; "
                 "FETCH ABSOLUTE 1 FROM c; COMMIT" % (key, g.where(), o),
                 [True] * 7, "cursor")


def load(run, ftab, ntab, key, keydef, cols, rows, fdef, extra_ins=""):
    """Create the native table and fill both; check the baseline."""
    r = run.run("CREATE TABLE %s (%s)" % (ntab, coldefs(cols, key, keydef)))
    assert r[0][0] is None, r
    allc = [key] + cols
    r = run.run("INSERT INTO %s (%s) VALUES %s" % (ntab, ", ".join(allc), values_sql(rows, allc, keydef)))
    assert r[0][0] is None, r
    r = run.run(fdef)
    assert r[0][0] is None, (fdef, r)
    ins = "INSERT INTO %s (%s%s) SELECT %s%s FROM %s" % (
        ftab, ", ".join(allc), ", embedding" if extra_ins else "",
        ", ".join(allc), extra_ins, ntab)
    r = run.run(ins)
    pgtest.check(r[0][0] is None, "load %s: %r" % (ftab, r))
    run.compare("SELECT * FROM %s" % ftab if not extra_ins else
                "SELECT %s FROM %s" % (", ".join(allc), ftab),
                "SELECT %s FROM %s" % (", ".join(allc), ntab), [False],
                "baseline " + ftab)


def test():
    rnd = random.Random(SEED)
    db = pgtest.create_db()
    c = pgwire.Conn(db)
    run = Runner(c)
    setup = """
CREATE COLLATION dci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE side (sk text, v int, si int8, st timestamptz);
INSERT INTO side VALUES %s;
""" % ", ".join("(%s, %s, %s, %s)" % (lit(k, "text"), lit(rnd.choice(I4[:9] + [None]), "int4"),
                                      lit(rnd.choice(IKEYS + [None, 5000]), "int8"),
                                      lit(rnd.choice(TSKEYS + [None]), "timestamptz"))
                 for k in rnd.sample(KEYS, 14) + ["nope", "zz"])
    for r in run.run(setup):
        assert r[0] is None, r

    # --- Redis: hash, json, zset --------------------------------------
    # a Redis of its own: its SCANs walk the whole keyspace, so keys of the
    # tests running beside it would only slow it down
    port = pgtest.start_redis()
    run.run("CREATE SERVER dr FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%s')" % port)
    rows = rows_for(rnd, "redis", "k", COLS, 30)
    load(run, "f_rh", "n_rh", "k", "text", COLS, rows,
         "CREATE FOREIGN TABLE f_rh (%s) SERVER dr OPTIONS (table_type 'hash', "
         "key_prefix '%s:h:', fetch_size '7')" % (coldefs(COLS, "k").replace(
             "k text", "k text OPTIONS (key 'true')", 1), TAG))
    rows = rows_for(rnd, "rjson", "k", COLS, 30)
    load(run, "f_rj", "n_rj", "k", "text", COLS, rows,
         "CREATE FOREIGN TABLE f_rj (%s) SERVER dr OPTIONS (table_type 'json', "
         "key_prefix '%s:j:', fetch_size '5')" % (coldefs(COLS, "k").replace(
             "k text", "k text OPTIONS (key 'true')", 1), TAG))
    rows = rows_for(rnd, "redis", "id", COLS, 24, "int8")
    load(run, "f_ri", "n_ri", "id", "int8", COLS, rows,
         "CREATE FOREIGN TABLE f_ri (%s) SERVER dr OPTIONS (table_type 'hash', "
         "key_prefix '%s:i:', fetch_size '4')" % (coldefs(COLS, "id", "int8").replace(
             "id int8", "id int8 OPTIONS (key 'true')", 1), TAG))
    rows = rows_for(rnd, "redis", "ts_key", ["t", "i4", "f8", "d"], 24, "timestamptz")
    load(run, "f_rt", "n_rt", "ts_key", "timestamptz", ["t", "i4", "f8", "d"], rows,
         "CREATE FOREIGN TABLE f_rt (%s) SERVER dr OPTIONS (table_type 'hash', "
         "key_prefix '%s:t:')" % ("ts_key timestamptz OPTIONS (key 'true'), t text, i4 int4, f8 float8, d date", TAG))
    zrows = []
    for k in rnd.sample(KEYS, 8):
        for m in rnd.sample(TEXTS, rnd.randint(1, 4)):
            zrows.append({"key": k, "member": m,
                          "score": rnd.choice([v for v in F8 if v not in ("NaN", "-0")])})
    load(run, "f_rz", "n_rz", "key", "text", ["member", "score"], zrows,
         "CREATE FOREIGN TABLE f_rz (key text, member text, score float8) SERVER dr "
         "OPTIONS (table_type 'zset', key_prefix '%s:z:', fetch_size '3')" % TAG)

    # --- Elasticsearch stand-in -----------------------------------------
    es = es_helper.Standin()
    idx = "fdwdiff"
    es.request("PUT", "/" + idx, {"mappings": {"dynamic": False, "properties": {
        "t": {"type": "keyword"}, "ci": {"type": "keyword"},
        "i4": {"type": "integer"}, "i8": {"type": "long"},
        "f8": {"type": "double"}, "n": {"type": "double"},
        "b": {"type": "boolean"}, "ts": {"type": "date"}, "d": {"type": "date"},
        "j": {"type": "object", "enabled": False}}}})
    run.run("CREATE SERVER des FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%s')" % es.url)
    rows = rows_for(rnd, "es", "_id", COLS, 30)
    load(run, "f_es", "n_es", "_id", "text", COLS, rows,
         "CREATE FOREIGN TABLE f_es (%s) SERVER des OPTIONS (index '%s', "
         "refresh 'true', fetch_size '4')" % (coldefs(COLS, "_id"), idx))

    # the same columns in an index mapped dynamically: text fields with a
    # .keyword subfield (ignore_above 256), floats as "float", ints as long
    run.run("CREATE FOREIGN TABLE f_ed (%s) SERVER des OPTIONS (index '%s_dyn', "
            "refresh 'true', fetch_size '5')" % (coldefs(COLS, "_id"), idx))
    rows = rows_for(rnd, "es", "_id", COLS, 30)
    # (the others mapped as dynamic mapping maps their first value, so that
    # no later value is refused: {"a": "x"} after {"a": 1}, 2.5 after 2)
    es.request("PUT", "/%s_dyn" % idx, {"mappings": {"properties": {
        "i4": {"type": "long"}, "i8": {"type": "long"}, "f8": {"type": "float"},
        "n": {"type": "float"}, "b": {"type": "boolean"}, "ts": {"type": "date"},
        "d": {"type": "date"}, "j": {"type": "object", "enabled": False}}}})
    load(run, "f_ed", "n_ed", "_id", "text", COLS, rows, "SELECT 1")

    # --- Chroma -------------------------------------------------------
    chroma = os.environ.get("CHROMA_URL")
    vcols = [c for c in COLS if c != "j"]
    if chroma:
        coll = TAG + "_v"
        run.run("CREATE SERVER dv FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url '%s')" % chroma)
        rows = rows_for(rnd, "vector", "id", vcols, 30)
        load(run, "f_v", "n_v", "id", "text", vcols, rows,
             "CREATE FOREIGN TABLE f_v (%s, embedding real[]) SERVER dv OPTIONS "
             "(collection '%s', create_collection 'true', distance 'l2', fetch_size '6')"
             % (coldefs(vcols, "id"), coll),
             extra_ins=", ARRAY[random(), random(), 1]::real[]")
    else:
        print("note: CHROMA_URL not set, vector table skipped")

    # --- Qdrant stand-in ----------------------------------------------
    qfx = qdrant_fixture.Fixture()
    qport = qfx.start()
    run.run("CREATE SERVER dq FOREIGN DATA WRAPPER pgpoly_vector OPTIONS "
            "(url 'http://127.0.0.1:%d', provider 'qdrant')" % qport)
    rows = rows_for(rnd, "qdrant", "id", vcols, 30, "qid")
    load(run, "f_q", "n_q", "id", "text", vcols, rows,
         "CREATE FOREIGN TABLE f_q (%s, embedding real[]) SERVER dq OPTIONS "
         "(collection 'fdwdiff', create_collection 'true', distance 'l2', fetch_size '7')"
         % coldefs(vcols, "id"),
         extra_ins=", ARRAY[random(), random(), 1]::real[]")
    for r in run.run("ALTER TABLE n_q ADD COLUMN embedding real[]; "
                     "UPDATE n_q SET embedding = f.embedding FROM f_q f WHERE f.id = n_q.id"):
        assert r[0] is None, r

    tables = [("f_rh", "n_rh", "k", COLS, False, "text", "redis"),
              ("f_rj", "n_rj", "k", COLS, False, "text", "rjson"),
              ("f_ri", "n_ri", "id", COLS, False, "int8", "redis"),
              ("f_rt", "n_rt", "ts_key", ["t", "i4", "f8", "d"], False, "timestamptz", "redis"),
              ("f_rz", "n_rz", "key", ["member", "score"], True, "text", "zset"),
              ("f_es", "n_es", "_id", COLS, False, "text", "es"),
              ("f_ed", "n_ed", "_id", COLS, False, "text", "es")]
    if chroma:
        tables.append(("f_v", "n_v", "id", vcols, False, "text", "vector"))
    tables.append(("f_q", "n_q", "id", vcols, False, "qid", "qdrant"))
    only = os.environ.get("FDW_DIFF_TABLES")
    for ft, nt, key, cols, z, keytype, store in tables:
        if only and ft not in only.split(","):
            continue
        before = run.count
        exercise(run, rnd, ft, nt, key, cols, BUDGET, zset=z, keytype=keytype,
                 store=store)
        if store == "qdrant":
            exercise_knn(run, rnd, ft, nt, key, cols, BUDGET)
        print("%s: %d queries" % (ft, run.count - before), flush=True)

    print("%d queries compared, %d mismatches (seed %d)"
          % (run.count, len(run.mismatches), SEED), flush=True)
    pgtest.check(not run.mismatches, "%d mismatches" % len(run.mismatches))
    run.run("RESET ALL")
    run.run("DELETE FROM f_rh; DELETE FROM f_rj; DELETE FROM f_rz; "
            "DELETE FROM f_ri; DELETE FROM f_rt")
    if chroma:
        run.run("DELETE FROM f_v")
        try:
            urllib.request.urlopen(urllib.request.Request(
                "%s/api/v2/tenants/default_tenant/databases/default_database/"
                "collections/%s" % (chroma, TAG + "_v"), method="DELETE"), timeout=10)
        except OSError:
            pass
    c.close()
    es.stop()
    qfx.stop()


pgtest.main(test)
