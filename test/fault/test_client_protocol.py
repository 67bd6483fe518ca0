#!/usr/bin/env python3
"""Redis foreign tables driven through the extended protocol, as drivers do.

psql sends simple queries only; JDBC, psycopg 3, libpq pipeline mode and
pgbench -M extended/prepared send Parse/Bind/Execute, several statements
before one Sync, and Execute with a row limit (JDBC fetchSize with
autocommit off).  Through test/fault/pgwire.py, against a Redis table and a
native copy of it:

  * a pipeline of INSERTs whose third statement fails before the Sync: the
    implicit transaction rolls back, so no buffered write reaches Redis and
    no native row stays; the next pipeline commits both;
  * the same inside an explicit BEGIN: the transaction is failed until
    ROLLBACK, and nothing is written;
  * a portal bound (Bind: its snapshot) before an UPDATE/DELETE/INSERT of
    the same transaction and fetched after it in rounds of 4 rows
    (PortalSuspended) returns what the native portal returns: the rows as
    they were at Bind;
  * a named statement with a text[] key list (NULL elements, an empty array,
    duplicates), an int parameter in binary form and results in binary
    form, executed 8 times with changing values (its plan cache switches to
    the generic plan after 5): the same rows as the native statement.
"""

import os
import struct

import pgtest
import pgwire

check = pgtest.check


def setup(db):
    prefix = "cp%d:" % os.getpid()
    r = pgtest.psql("""
        CREATE SERVER rcp FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (port '%s');
        CREATE FOREIGN TABLE f (id text OPTIONS (key 'true'), v int)
            SERVER rcp OPTIONS (key_prefix '%s', fetch_size '3');
        CREATE TABLE n (id text, v int);
        INSERT INTO n SELECT 'k' || i, i FROM generate_series(1, 40) i;
        INSERT INTO f SELECT * FROM n;
    """ % (os.environ["REDIS_PORT"], prefix), db=db)
    check(r.rc == 0, "setup failed: %s" % r.err)
    return prefix


def rows_of(c, sql):
    """Sorted rows of sql (simple protocol), as tuples of bytes."""
    return sorted(tuple(r) for r in c.query(sql)[0].rows)


def test_pipeline(c, prefix):
    """A failing statement in a pipeline discards the writes before it."""
    c.parse("ins_f", "INSERT INTO f VALUES ($1, $2)")
    c.parse("ins_n", "INSERT INTO n VALUES ($1, $2)")
    c.parse("bad", "SELECT 1 / $1::int")
    for sql in (None, "BEGIN"):
        if sql:
            c.parse("", sql)
            c.bind("", "")
            c.execute("")
        c.bind("", "ins_f", [b"p1", b"1"])
        c.execute("")
        c.bind("", "ins_n", [b"p1", b"1"])
        c.execute("")
        c.bind("", "bad", [b"0"])
        c.execute("")
        c.bind("", "ins_f", [b"p2", b"2"])
        c.execute("")
        c.sync()
        res = c.flush()
        errs = [r.error["C"] for r in res if r.error]
        check(errs == ["22012"], "pipeline (%s): errors %r" % (sql, errs))
        check(res[-1].skipped, "pipeline (%s): the statement after the error ran" % sql)
        if sql:
            check(c.status == "E", "pipeline in BEGIN: status %r" % c.status)
            c.query("ROLLBACK")
        check(c.status == "I", "pipeline (%s): status %r after it" % (sql, c.status))
        rc, out, _ = pgtest.redis_cli(int(os.environ["REDIS_PORT"]), "--scan",
                                      "--pattern", prefix + "p*")
        check(out.strip() == "", "pipeline (%s): Redis holds %r" % (sql, out))
        check(rows_of(c, "SELECT * FROM n WHERE id LIKE 'p%'") == [],
              "pipeline (%s): the native row stayed" % sql)

    # A pipeline that succeeds commits both at its Sync.
    c.bind("", "ins_f", [b"p3", b"3"])
    c.execute("")
    c.bind("", "ins_n", [b"p3", b"3"])
    c.execute("")
    c.sync()
    res = c.flush()
    check(all(r.tag == "INSERT 0 1" for r in res) and not c.late_errors,
          "good pipeline: %r, at its COMMIT: %r" % (res, c.late_errors))
    check(rows_of(c, "SELECT * FROM f WHERE id LIKE 'p%'") ==
          rows_of(c, "SELECT * FROM n WHERE id LIKE 'p%'") == [(b"p3", b"3")],
          "good pipeline: rows differ")
    c.query("DELETE FROM f WHERE id = 'p3'; DELETE FROM n WHERE id = 'p3'")


def fetch_all(c, portal, limit):
    """Rows of a bound portal, fetched limit at a time (Execute + Sync)."""
    rows = []
    while True:
        c.execute(portal, limit)
        c.sync()
        (res,) = c.flush()
        check(res.error is None, "fetch %s: %r" % (portal, res.error))
        rows += [tuple(r) for r in res.rows]
        if not res.suspended:
            return sorted(rows)


def test_suspended_portal(c):
    """A portal bound before a write does not see it, as on a native table."""
    c.query("BEGIN")
    for t in ("f", "n"):
        c.parse("sel_" + t, "SELECT id, v FROM %s WHERE v > $1" % t)
        c.bind("P" + t, "sel_" + t, [b"5"])
    c.sync()
    c.flush()
    for t in ("f", "n"):
        c.query("UPDATE %s SET v = -v WHERE id LIKE 'k1%%';"
                "DELETE FROM %s WHERE id LIKE 'k2%%';"
                "INSERT INTO %s VALUES ('zz', 99)" % (t, t, t))
    got = {t: fetch_all(c, "P" + t, 4) for t in ("f", "n")}
    check(len(got["n"]) == 35, "native portal: %d rows" % len(got["n"]))
    check(got["f"] == got["n"],
          "portal bound before the writes: Redis %d rows, native %d; "
          "only Redis: %r" % (len(got["f"]), len(got["n"]),
                              sorted(set(got["f"]) - set(got["n"]))[:5]))
    # A portal bound now sees them.
    for t in ("f", "n"):
        c.bind("Q" + t, "sel_" + t, [b"5"])
    c.sync()
    c.flush()
    got = {t: fetch_all(c, "Q" + t, 4) for t in ("f", "n")}
    check(got["f"] == got["n"] and len(got["n"]) == 16,
          "portal bound after the writes: %d and %d rows" %
          (len(got["f"]), len(got["n"])))
    c.query("ROLLBACK")


def test_generic_plan(c):
    """Changing parameters, text[] and binary forms, custom then generic."""
    for t in ("f", "n"):
        c.parse("any_" + t, "SELECT id, v FROM %s WHERE id = ANY ($1::text[]) "
                "AND v >= $2::int" % t)
    c.sync()
    c.flush()
    cases = [b"{k1,k2,k3}", b"{k1,NULL,k2,k1}", b"{}", b"{NULL}", None,
             b"{k40,k39,nope}", b"{k5}", b"{k7,k8,k9,k10,k11}"]
    for i, keys in enumerate(cases):
        minv = struct.pack("!i", i)  # int4, binary
        got = {}
        for t in ("f", "n"):
            c.bind("", "any_" + t, [keys, minv], param_formats=[0, 1],
                   result_formats=[1, 1])
            c.execute("")
            c.sync()
            (res,) = c.flush()
            check(res.error is None, "ANY %r (%s): %r" % (keys, t, res.error))
            got[t] = sorted(tuple(r) for r in res.rows)
        check(got["f"] == got["n"], "ANY %r, v >= %d: Redis %r, native %r" %
              (keys, i, got["f"], got["n"]))
        # binary int4 results decode to the keys' numbers
        check(all(struct.unpack("!i", v)[0] == int(k[1:]) for k, v in got["f"]),
              "binary results: %r" % got["f"])


def test():
    mark = pgtest.pg_log_mark()
    db = pgtest.create_db("pgpoly_client_protocol")
    prefix = setup(db)
    c = pgwire.Conn(db)
    try:
        test_pipeline(c, prefix)
        test_suspended_portal(c)
        test_generic_plan(c)
    finally:
        c.query("DELETE FROM f")
        c.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
