#!/usr/bin/env python3
"""pgpoly.drift() against PSI and KS computed here, independently, in Python.

API.md 6 defines drift exactly; this file implements that definition with the
standard library only (no SQL) and compares, on generated data, every psi and
ks value to 1e-9 and every status:

  * numeric columns: edges e_k = percentile_cont(k/bins) of the reference's
    non-null values (PostgreSQL's interpolation: lo + f * (hi - lo)); bin 1 is
    v <= e_1, bin i is e_(i-1) < v <= e_i, the last v > e_(bins-1); p = count /
    non-null count floored at 0.0001; psi = sum (p_cur - p_ref) ln(p_cur / p_ref);
    ks = max |F_ref(x) - F_cur(x)| over the values;
  * other columns: one bin per distinct reference value plus one for values the
    reference never had; ks NULL;
  * status: ok (psi < 0.1), warn (< 0.25), drift.

The data sets exercise NULLs, ties, many equal edges (empty bins), values near
the float8 limits, unseen categories, shifted and identical distributions, integer/numeric/real/double
columns, tiny and empty sides, and bins from 2 to 20; one comparison goes
through the query form of the arguments.  Adversarial columns: bigint
extremes, infinities, numeric with 60 digits or tiny exponents, every value
on an edge, constant columns, all NULL on both sides, '' beside NULL, one
reference row against 2000.
"""

import bisect
import math
import random

import pgtest

TOLERANCE = 1e-9
BINS = [2, 3, 5, 10, 20]


def percentile_cont(sorted_vals, p):
    """PostgreSQL's percentile_cont of a sorted list (orderedsetaggs.c)."""
    pos = p * (len(sorted_vals) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    if lo == hi:
        return sorted_vals[lo]
    a, b = sorted_vals[lo], sorted_vals[hi]
    return a + ((pos - lo) * (b - a))


def psi(ref_counts, cur_counts, nr, nc):
    """PSI of parallel bin counts; None when a side has no values."""
    if nr == 0 or nc == 0:
        return None
    total = 0.0
    for r, c in zip(ref_counts, cur_counts):
        pr = max(r / nr, 0.0001)
        pc = max(c / nc, 0.0001)
        total += (pc - pr) * math.log(pc / pr)
    return total


def pg_le(a, b):
    """a <= b in PostgreSQL's float8 order (NaN above everything, equal to NaN)."""
    if math.isnan(b):
        return True
    if math.isnan(a):
        return False
    return a <= b


def pg_key(v):
    return (1, 0.0) if math.isnan(v) else (0, v)


def numeric_drift(ref, cur, bins):
    """(psi, ks) of two lists of numbers (None = NULL), taken as float8 values
    (README: an integer or numeric value is compared as its float8, correctly
    rounded as float() rounds it)."""
    r = sorted((float(v) for v in ref if v is not None), key=pg_key)
    c = sorted((float(v) for v in cur if v is not None), key=pg_key)
    if not r or not c:
        return None, None
    edges = [percentile_cont(r, k / bins) for k in range(1, bins)]
    if not any(math.isnan(e) for e in edges):
        rc, cc = [0] * bins, [0] * bins
        for v in r:
            rc[bisect.bisect_left(edges, v)] += 1      # 1 + #edges below v, 0-based
        for v in c:
            cc[bisect.bisect_left(edges, v)] += 1
    else:
        # an edge interpolated between -Infinity and Infinity is NaN: the
        # definition word for word, bin i = e_(i-1) < v <= e_i
        def counts(vals):
            out = []
            for i in range(bins):
                out.append(sum(1 for v in vals
                               if (i == 0 or not pg_le(v, edges[i - 1]))
                               and (i == bins - 1 or pg_le(v, edges[i]))))
            return out
        rc, cc = counts(r), counts(c)
    # F(x) = #(v <= x) / n: r and c are sorted in float8 order (pg_key), so
    # the count of values <= x is where x would be inserted after its equals
    ks = 0.0
    for x in set(r) | set(c):
        fr = bisect.bisect_right(r, pg_key(x), key=pg_key) / len(r)
        fc = bisect.bisect_right(c, pg_key(x), key=pg_key) / len(c)
        ks = max(ks, abs(fr - fc))
    return psi(rc, cc, len(r), len(c)), ks


def categorical_drift(ref, cur):
    """psi of two lists of category strings (None = NULL)."""
    r = [v for v in ref if v is not None]
    c = [v for v in cur if v is not None]
    cats = sorted(set(r))
    rc = [r.count(k) for k in cats] + [0]
    cc = [c.count(k) for k in cats] + [sum(1 for v in c if v not in set(cats))]
    return psi(rc, cc, len(r), len(c))


def status(p):
    if p is None:
        return None
    return "ok" if p < 0.1 else "warn" if p < 0.25 else "drift"


def with_nulls(rng, values, share):
    return [None if rng.random() < share else v for v in values]


def datasets(rng):
    """(name, {column: (sql type, kind, ref values, cur values)})."""
    n = 2000
    yield "shifted", {
        "x": ("float8", "num", with_nulls(rng, [rng.gauss(0, 1) for _ in range(n)], 0.1),
              with_nulls(rng, [rng.gauss(0.3, 1.2) for _ in range(n)], 0.2)),
        "same": ("float8", "num", [rng.random() for _ in range(n)],
                 [rng.random() for _ in range(n)]),
    }
    yield "ties", {
        "i": ("int", "num", with_nulls(rng, [rng.randint(0, 20) for _ in range(n)], 0.05),
              with_nulls(rng, [rng.randint(2, 25) for _ in range(n)], 0.05)),
        "n": ("numeric", "num", [round(rng.uniform(-5, 5), 1) for _ in range(n)],
              [round(rng.uniform(-4, 6), 1) for _ in range(n)]),
    }
    # most reference values equal: many equal edges, so empty bins in between
    yield "equal_edges", {
        "e": ("float8", "num",
              [7.0 if rng.random() < 0.7 else rng.uniform(0, 14) for _ in range(n)],
              [7.0 if rng.random() < 0.4 else rng.uniform(0, 14) for _ in range(n)]),
        "b": ("bigint", "num", [0] * (n - 3) + [1, 2, 3], [0] * (n // 2) + [5] * (n // 2)),
        "r": ("real", "num", [float(rng.randint(0, 3)) for _ in range(n)],
              [float(rng.randint(0, 3)) for _ in range(n)]),
    }
    yield "categories", {
        "c": ("text", "cat",
              with_nulls(rng, [rng.choice("aaabbc") for _ in range(n)], 0.1),
              with_nulls(rng, [rng.choice("abcdde") for _ in range(n)], 0.3)),
        "flag": ("bool", "cat", [rng.random() < 0.3 for _ in range(n)],
                 [rng.random() < 0.5 for _ in range(n)]),
        "same_c": ("text", "cat", [rng.choice("xy") for _ in range(n)],
                   [rng.choice("xy") for _ in range(n)]),
    }
    # values near the float8 limits: an edge interpolated between -1.7e308 and
    # 1.7e308 is beyond the range, Infinity as percentile_cont computes it (not
    # an overflow ERROR); subnormals and -0 among them
    extremes = [-1.7e308, -1e308, -5e-324, -0.0, 0.0, 5e-324, 1e308, 1.7e308]
    yield "extremes", {
        "big": ("float8", "num", [rng.choice(extremes) for _ in range(n // 4)],
                [rng.choice(extremes[2:]) for _ in range(n // 4)]),
        "two": ("float8", "num", [-1.7e308, 1.7e308], [1.7e308, 1.7e308, -1e308]),
    }
    # adversarial: integer extremes (compared as their float8 values),
    # infinities (an edge between -Infinity and Infinity is NaN), numeric with
    # more digits than a float8 holds, every value on a bin edge, one distinct
    # value, all NULL on both sides, '' beside NULL, one row against many
    i8 = [-9223372036854775808, 9223372036854775807, 9223372036854775806, 0, -1]
    yield "adversarial", {
        "i8": ("bigint", "num", [rng.choice(i8) for _ in range(300)],
               [rng.choice(i8[1:]) for _ in range(200)]),
        "inf": ("float8", "num", [rng.choice([-math.inf, math.inf, 0.0, 1.0]) for _ in range(300)],
                [rng.choice([math.inf, 0.0, 2.0]) for _ in range(200)]),
        "nscale": ("numeric", "num",
                   ["0.%s" % "".join(rng.choice("0123456789") for _ in range(60))
                    for _ in range(300)],
                   ["1e-%d" % rng.randint(1, 300) for _ in range(200)]),
        "onedge": ("int", "num", [1, 2, 3, 4, 5] * 40, [2, 2, 3, 4, 4] * 20),
        "const": ("float8", "num", [3.25] * 300, [3.25] * 200),
        "allnull": ("float8", "num", [None] * 300, [None] * 200),
        "allnull_c": ("text", "cat", [None] * 300, [None] * 200),
        "empty_vs_null": ("text", "cat", [rng.choice(["", "", "a"]) for _ in range(300)],
                          [rng.choice(["", None, None, "a", "b"]) for _ in range(200)]),
        "const_c": ("text", "cat", ["k"] * 300, ["k"] * 200),
    }
    yield "one_row", {
        "x": ("float8", "num", [0.5], [rng.random() for _ in range(n)]),
        "c": ("text", "cat", ["a"], [rng.choice("ab") for _ in range(n)]),
    }
    yield "tiny", {
        "one": ("float8", "num", [1.5], [1.5, 2.5]),
        "two": ("float8", "num", [1.0, 3.0, None], [2.0, None, None]),
        "none_cur": ("float8", "num", [1.0, 2.0, 3.0], [None, None, None]),
        "none_ref": ("text", "cat", [None, None, None], ["a", "b", "c"]),
    }


def sql_literal(v, sqltype):
    if v is None:
        return "NULL"
    if sqltype == "bool":
        return "true" if v else "false"
    if sqltype == "text":
        return "'%s'" % v
    if sqltype in ("int", "bigint"):
        return str(v)
    if sqltype == "numeric" and isinstance(v, str):
        return "'%s'::numeric" % v
    return "'%r'::%s" % (v, sqltype)


def load(db, table, cols, side):
    """Create table with the columns' side (2: ref, 3: cur) values."""
    names = list(cols)
    rows = max(len(cols[c][side]) for c in names)
    values = []
    for i in range(rows):
        vals = [cols[c][side][i] if i < len(cols[c][side]) else None for c in names]
        values.append("(%s)" % ", ".join(sql_literal(v, cols[c][0])
                                         for v, c in zip(vals, names)))
    sql = "CREATE TABLE %s (%s);\nINSERT INTO %s VALUES\n%s;\n" % (
        table, ", ".join("%s %s" % (c, cols[c][0]) for c in names), table, ",\n".join(values))
    r = pgtest.psql(sql, db=db)
    if r.rc != 0:
        raise RuntimeError("loading %s failed: %s" % (table, r.err))


def drift(db, ref, cur, bins):
    """{feature: (psi, ks, status)} from pgpoly.drift."""
    r = pgtest.psql("SET extra_float_digits = 3;\n"
                    "SELECT feature, psi, ks, status FROM pgpoly.drift(%s, %s, bins => %d);\n"
                    % (ref, cur, bins), db=db)
    if r.rc != 0:
        raise RuntimeError("drift(%s, %s) failed: %s" % (ref, cur, r.err))
    out = {}
    for line in r.out.splitlines():
        if line == "SET":
            continue
        f, p, k, s = line.split("|")
        out[f] = (float(p) if p else None, float(k) if k else None, s or None)
    return out


def close(a, b):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= TOLERANCE * max(1.0, abs(b))


def test():
    db = pgtest.create_db("pgpoly_drift_ref")
    rng = random.Random(20240601)
    compared = 0
    for name, cols in datasets(rng):
        load(db, "ref_" + name, cols, 2)
        load(db, "cur_" + name, cols, 3)
        for bins in BINS:
            got = drift(db, "'ref_%s'" % name, "'cur_%s'" % name, bins)
            pgtest.check(list(got) == list(cols),
                         "%s: features %s, expected %s" % (name, list(got), list(cols)))
            for col, (_, kind, ref, cur) in cols.items():
                if kind == "num":
                    want_psi, want_ks = numeric_drift(ref, cur, bins)
                else:
                    want_psi, want_ks = categorical_drift(
                        [None if v is None else str(v).lower() for v in ref],
                        [None if v is None else str(v).lower() for v in cur]), None
                got_psi, got_ks, got_status = got.get(col, (None, None, None))
                where = "%s.%s bins=%d" % (name, col, bins)
                pgtest.check(close(got_psi, want_psi),
                             "%s: psi %r, Python %r" % (where, got_psi, want_psi))
                pgtest.check(close(got_ks, want_ks),
                             "%s: ks %r, Python %r" % (where, got_ks, want_ks))
                pgtest.check(got_status == status(want_psi),
                             "%s: status %r, Python %r" % (where, got_status, status(want_psi)))
                compared += 1
    # the query form, a subset of features, NULLs filtered by the query
    cols = dict(datasets(random.Random(20240601)))["shifted"]
    got = drift(db, "'SELECT x FROM ref_shifted WHERE x > 0'",
                "$$SELECT x, same FROM cur_shifted WHERE x > 0 -- a comment$$", 10)
    want_psi, want_ks = numeric_drift([v for v in cols["x"][2] if v is not None and v > 0],
                                      [v for v in cols["x"][3] if v is not None and v > 0], 10)
    pgtest.check(list(got) == ["x"], "query form: features %s" % list(got))
    pgtest.check(close(got["x"][0], want_psi) and close(got["x"][1], want_ks),
                 "query form: %r, Python %r" % (got["x"], (want_psi, want_ks)))
    # the data really drifts in places and not in others
    statuses = {status(numeric_drift(c[2], c[3], 10)[0]) for c in cols.values()}
    pgtest.check(statuses == {"ok", "drift"} or len(statuses) > 1,
                 "the generated data covers more than one status: %s" % statuses)
    print("%d psi/ks/status triples compared to %g" % (compared + 1, TOLERANCE))


pgtest.main(test)
