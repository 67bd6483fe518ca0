#!/usr/bin/env python3
"""Redis, Elasticsearch and vector foreign tables driven by real client
drivers: psycopg2 and SQLAlchemy 1.4 (Debian's python3-psycopg2 and
python3-sqlalchemy), each answer compared with the same calls on a native
copy of the rows (differential), not with hand-written expectations.

test_client_protocol*.py emulate the wire patterns of drivers; this test
runs the drivers themselves:

  * psycopg2 copy_expert: COPY FROM STDIN (text, csv with a header and
    NULLs, binary, a WHERE clause, a bad row that fails the COPY) into each
    store's table and into its native copy;
  * named (server-side) cursors read with a small itersize; scrollable
    cursors moved back, to an absolute position and past the end; a WITH
    HOLD cursor that fetched a few rows, then saw its transaction update the
    table and COMMIT (materialized at pre-commit), read to the end after;
    WITH HOLD in autocommit mode;
  * execute_values and executemany inserts; the connection reused after an
    error (rollback, then the same statements);
  * SQLAlchemy: Inspector reflection of the foreign tables (listed as
    foreign tables, columns typed as the native copies' columns), Core
    insert/update ... RETURNING (a row as a read finds it right after:
    Elasticsearch's _source, a vector record's metadata and the column
    mapped to one of its keys), executemany with bound parameters, and
    pgpoly.vector_search with bound parameters beside the k-NN ORDER BY;
    a pool with pool_pre_ping whose connection returns to the pool (reset
    by ROLLBACK) between transactions.
"""

import io
import json
import os
import sys

try:
    import psycopg2
    import psycopg2.extras
    import sqlalchemy as sa
except ImportError:
    # A Python other than Debian's (pyenv, a venv) lacks the Debian
    # packages: run the test with the interpreter they belong to.
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    raise

import pgtest

check = pgtest.check
PID = os.getpid()
INDEX = "pgpoly_drivers_%d" % PID
COLLECTION = "pgpoly_drivers_%d" % PID

REDIS_COLS = "id, n, d, num, ts, j, arr, b"
ES_COLS = "_id, n, d, t, ts, tags"
VEC_COLS = "id, embedding, document, grp"


def setup(db):
    sql = """
        CREATE SERVER rs FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%(redis)s');
        CREATE FOREIGN TABLE rh (id text OPTIONS (key 'true'), n int, d float8,
            num numeric, ts timestamptz, j jsonb, arr int[], b bool)
            SERVER rs OPTIONS (key_prefix 'drv%(pid)d:', fetch_size '7');
        CREATE TABLE nh (id text, n int, d float8, num numeric, ts timestamptz,
            j jsonb, arr int[], b bool);
        CREATE SERVER es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%(es)s');
        SELECT pgpoly.elastic_request('es', 'PUT', '/%(index)s',
            '{"mappings": {"properties": {"n": {"type": "long"}, "d": {"type": "double"},
              "t": {"type": "keyword"}, "ts": {"type": "date"},
              "tags": {"type": "keyword"}}}}');
        CREATE FOREIGN TABLE e (_id text, n bigint, d float8, t text, ts timestamptz,
            tags text[], _source jsonb, _score float4)
            SERVER es OPTIONS (index '%(index)s', refresh 'true', fetch_size '5');
        CREATE TABLE ne (_id text, n bigint, d float8, t text, ts timestamptz, tags text[]);
        CREATE SERVER vs FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url '%(chroma)s');
        CREATE FOREIGN TABLE v (id text, embedding real[], document text, metadata jsonb,
            grp text OPTIONS (field 'grp'), _distance float8)
            SERVER vs OPTIONS (collection '%(coll)s', create_collection 'true',
                               distance 'l2');
        CREATE TABLE nv (id text, embedding real[], document text, grp text);
    """ % {"redis": os.environ["REDIS_PORT"], "pid": PID, "es": os.environ["ES_URL"],
           "index": INDEX, "chroma": os.environ["CHROMA_URL"], "coll": COLLECTION}
    r = pgtest.psql(sql, db=db)
    check(r.rc == 0, "setup failed: %s" % r.err)


def cleanup(db):
    pgtest.psql("SELECT pgpoly.elastic_request('es', 'DELETE', '/%s'); DELETE FROM rh;"
                " DELETE FROM v;" % INDEX, db=db)


def diff(cur, a, b, cols):
    """Rows of a not in b plus rows of b not in a (EXCEPT ALL both ways)."""
    cur.execute("SELECT count(*) FROM ((SELECT {c} FROM {a} EXCEPT ALL SELECT {c} FROM {b})"
                " UNION ALL (SELECT {c} FROM {b} EXCEPT ALL SELECT {c} FROM {a})) x"
                .format(a=a, b=b, c=cols))
    return cur.fetchone()[0]


PAIRS = (("rh", "nh", REDIS_COLS, "id"), ("e", "ne", ES_COLS, "_id"),
         ("v", "nv", VEC_COLS, "id"))


def test_copy(conn):
    """COPY FROM STDIN in several forms: the same rows in both tables."""
    cur = conn.cursor()
    redis_rows = "".join(
        "k%d\t%d\t%r\t%d.%02d\t2024-01-0%d 10:00:00.25+02\t{\"a\": %d}\t{1,%d}\t%s\n"
        % (i, i, i / 3, i, i, i % 9 + 1, i, i, "t" if i % 2 else "f") for i in range(1, 41))
    es_rows = "".join("d%d\t%d\t%r\tt%d\t2024-02-0%d 00:00:00+00\t{a,b%d}\n"
                      % (i, i, i * 1.5, i % 3, i % 9 + 1, i) for i in range(1, 31))
    vec_rows = "".join("v%d\t{%d,%d,%d}\tdoc %d\tg%d\n" % (i, i, i + 1, i % 5, i, i % 2)
                       for i in range(1, 21))
    for f, n, cols, _ in PAIRS:
        data = {"rh": redis_rows, "e": es_rows, "v": vec_rows}[f]
        for t in (f, n):
            cur.copy_expert("COPY %s (%s) FROM STDIN" % (t, cols), io.StringIO(data))
        conn.commit()
        check(diff(cur, f, n, cols) == 0, "COPY into %s: rows differ from %s" % (f, n))
    csv = "id,n,d\nc1,1,\nc2,,2.5\n"
    for t in ("rh", "nh"):
        cur.copy_expert("COPY %s (id, n, d) FROM STDIN WITH (FORMAT csv, HEADER)" % t,
                        io.StringIO(csv))
        cur.copy_expert("COPY %s (id, n) FROM STDIN WHERE n > 5" % t,
                        io.StringIO("w1\t1\nw2\t10\n"))
        buf = io.BytesIO()
        cur.copy_expert("COPY (SELECT 'bin' || i, i, i / 4.0::float8, (i / 7.0)::numeric(10, 3)"
                        " FROM generate_series(1, 5) i) TO STDOUT WITH (FORMAT binary)", buf)
        buf.seek(0)
        cur.copy_expert("COPY %s (id, n, d, num) FROM STDIN WITH (FORMAT binary)" % t, buf)
    conn.commit()
    check(diff(cur, "rh", "nh", REDIS_COLS) == 0, "COPY csv/WHERE/binary: rows differ")
    for t in ("rh", "nh"):
        try:
            cur.copy_expert("COPY %s (id, n) FROM STDIN" % t, io.StringIO("x1\t1\nx2\tzz\n"))
            check(False, "COPY of a bad row into %s succeeded" % t)
        except psycopg2.DataError as e:
            check(e.pgcode == "22P02", "COPY of a bad row: SQLSTATE %s" % e.pgcode)
        conn.rollback()
    check(diff(cur, "rh", "nh", REDIS_COLS) == 0, "a failed COPY left rows behind")


def fetch_named(conn, t, cols, **kw):
    c = conn.cursor("nc_%s" % t, **kw)
    c.itersize = 3
    c.execute("SELECT %s FROM %s" % (cols, t))
    rows = sorted((tuple(r) for r in c), key=repr)
    c.close()
    return rows


def scroll(conn, t, cols, key):
    c = conn.cursor("sc_%s" % t, scrollable=True)
    c.execute("SELECT %s FROM %s ORDER BY %s" % (cols, t, key))
    out = [c.fetchmany(4)]
    c.scroll(-2)
    out.append(c.fetchmany(3))
    c.scroll(0, mode="absolute")
    out.append(c.fetchmany(2))
    c.scroll(10, mode="absolute")
    out.append(c.fetchone())
    out.append(len(c.fetchall()))
    c.scroll(-3)
    out.append(c.fetchall())
    c.close()
    conn.commit()
    return out


def hold(conn, t, cols, key):
    """A WITH HOLD cursor: a few rows, an UPDATE of the table, COMMIT, the rest."""
    cur = conn.cursor()
    c = conn.cursor("wh_%s" % t, withhold=True)
    c.itersize = 4
    c.execute("SELECT %s FROM %s ORDER BY %s" % (cols, t, key))
    rows = c.fetchmany(3)
    col = "document" if t in ("v", "nv") else "n"
    val = "document || '+'" if col == "document" else "n + 1000"
    cur.execute("UPDATE %s SET %s = %s WHERE %s IN (SELECT %s FROM %s ORDER BY %s DESC LIMIT 3)"
                % (t, col, val, key, key, t, key))
    conn.commit()
    rows += c.fetchall()
    c.close()
    cur.execute("SELECT %s FROM %s ORDER BY %s" % (cols, t, key))
    after = cur.fetchall()
    conn.commit()
    return rows, after


def autocommit_hold(conn, t, cols, key):
    conn.autocommit = True
    try:
        c = conn.cursor("ah_%s" % t, withhold=True)
        c.itersize = 2
        c.execute("SELECT %s FROM %s ORDER BY %s" % (cols, t, key))
        rows = list(c)
        c.close()
        return rows
    finally:
        conn.autocommit = False


def test_cursors(conn):
    for f, n, cols, key in PAIRS:
        check(fetch_named(conn, f, cols) == fetch_named(conn, n, cols),
              "named cursor over %s: rows differ from %s" % (f, n))
        conn.commit()
        check(scroll(conn, f, cols, key) == scroll(conn, n, cols, key),
              "scrollable cursor over %s: rows differ from %s" % (f, n))
        check(hold(conn, f, cols, key) == hold(conn, n, cols, key),
              "WITH HOLD cursor over %s across an UPDATE and COMMIT: rows differ" % f)
        check(autocommit_hold(conn, f, cols, key) == autocommit_hold(conn, n, cols, key),
              "WITH HOLD cursor in autocommit over %s: rows differ" % f)


def test_batches_and_errors(conn):
    cur = conn.cursor()
    rows = [("ev%d" % i, i, i / 8, "%d.5" % i, None, json.dumps({"i": [i, None]}), [i, None],
             i % 3 == 0) for i in range(60)]
    for t in ("rh", "nh"):
        psycopg2.extras.execute_values(cur, "INSERT INTO %s (%s) VALUES %%s" % (t, REDIS_COLS),
                                       rows, page_size=25)
        cur.executemany("UPDATE %s SET n = %%s WHERE id = %%s" % t,
                        [(i * 7, "ev%d" % i) for i in range(0, 60, 5)])
    conn.commit()
    check(diff(cur, "rh", "nh", REDIS_COLS) == 0, "execute_values/executemany: rows differ")
    # An error mid-transaction, rollback, and the same connection again.
    for t in ("rh", "nh"):
        cur.execute("INSERT INTO %s (id, n) VALUES ('err1', 1)" % t)
        try:
            cur.execute("INSERT INTO %s (id, n) VALUES ('err2', 1 / 0)" % t)
            check(False, "division by zero in %s succeeded" % t)
        except psycopg2.errors.DivisionByZero:
            pass
        conn.rollback()
        cur.execute("INSERT INTO %s (id, n) VALUES ('err3', 3)" % t)
        conn.commit()
    check(diff(cur, "rh", "nh", REDIS_COLS) == 0, "reuse after an error: rows differ")


def test_sqlalchemy(db):
    eng = sa.create_engine("postgresql+psycopg2:///%s" % db, pool_pre_ping=True,
                           pool_size=1, max_overflow=0, future=True)
    insp = sa.inspect(eng)
    check(set(insp.get_foreign_table_names()) == {"rh", "e", "v"},
          "foreign tables listed: %r" % insp.get_foreign_table_names())
    for f, n, cols, _ in PAIRS:
        fc = {c["name"]: str(c["type"]) for c in insp.get_columns(f)}
        nc = {c["name"]: str(c["type"]) for c in insp.get_columns(n)}
        check(all(fc.get(k) == t for k, t in nc.items()),
              "reflected columns of %s %r, of %s %r" % (f, fc, n, nc))
    md = sa.MetaData()
    E, V = (sa.Table(t, md, autoload_with=eng) for t in ("e", "v"))

    def read(c, tbl, key, val, cols):
        return c.execute(sa.select(*[tbl.c[k] for k in cols]).where(tbl.c[key] == val)).one()

    ecols, vcols = ("_id", "n", "t", "_source"), ("id", "grp", "metadata", "document")
    with eng.begin() as c:
        stmts = [
            (E, "_id", sa.insert(E).values(_id="sa1", n=1, _source={"t": "from_source", "x": 1})),
            (E, "_id", sa.insert(E).values(n=2, t="no_id")),
            (E, "_id", sa.update(E).where(E.c._id == "d1").values(n=-1)),
            (V, "id", sa.insert(V).values(id="sa1", embedding=[1.0, 2.0, 3.0],
                                          metadata={"grp": "g9", "o": 1})),
            (V, "id", sa.update(V).where(V.c.id == "v1").values(grp="gx")),
            (V, "id", sa.update(V).where(V.c.id == "v2").values(metadata={"o": 2})),
        ]
        for tbl, key, st in stmts:
            cols = ecols if tbl is E else vcols
            ret = c.execute(st.returning(*[tbl.c[k] for k in cols])).one()
            got = read(c, tbl, key, ret[0], cols)
            check(tuple(ret) == tuple(got),
                  "%s: RETURNING %r, a read right after %r" % (st, tuple(ret), tuple(got)))
    with eng.connect() as c:
        # after COMMIT, from the stores
        check(read(c, V, "id", "v1", vcols)[1:3] == ("gx", {"grp": "gx"}),
              "vector record after COMMIT: %r" % (read(c, V, "id", "v1", vcols),))
    with eng.begin() as c:
        c.execute(sa.insert(E), [{"_id": "m%d" % i, "n": i, "t": "many"} for i in range(20)])
        c.execute(sa.update(E).where(E.c._id == sa.bindparam("k")).values(n=sa.bindparam("nv")),
                  [{"k": "m%d" % i, "nv": i * 100} for i in range(20)])
    with eng.connect() as c:
        got = c.execute(sa.text("SELECT sum(n), count(*) FROM e WHERE t = 'many'")).one()
        check(tuple(got) == (19000, 20), "SQLAlchemy executemany into e: %r" % (got,))
        q = [1.0, 2.0, 3.0]
        by_fn = c.execute(sa.text("SELECT id, distance FROM pgpoly.vector_search(:t, :q, :k)"),
                          {"t": "v", "q": q, "k": 4}).all()
        by_op = c.execute(sa.text("SELECT id, _distance FROM v ORDER BY embedding <-> :q LIMIT :k"),
                          {"q": q, "k": 4}).all()
        local = c.execute(sa.text("SELECT id, embedding <-> CAST(:q AS real[]) FROM v"
                                  " ORDER BY 2, 1 LIMIT :k"), {"q": q, "k": 4}).all()
        check([r[0] for r in by_fn] == [r[0] for r in by_op] == [r[0] for r in local],
              "k-NN: vector_search %r, ORDER BY %r, local %r" % (by_fn, by_op, local))
    # The pooled connection, returned (ROLLBACK) with buffered writes
    # pending, discards them; the next checkout (pre-ping) starts clean.
    with eng.connect() as c:
        c.execute(sa.text("INSERT INTO rh (id, n) VALUES ('pool1', 1)"))
    with eng.connect() as c:
        check(c.execute(sa.text("SELECT count(*) FROM rh WHERE id = 'pool1'")).scalar() == 0,
              "a write of a connection returned to the pool was kept")
    eng.dispose()


def test():
    db = pgtest.create_db()
    setup(db)
    try:
        conn = psycopg2.connect(dbname=db)
        test_copy(conn)
        test_cursors(conn)
        test_batches_and_errors(conn)
        conn.close()
        test_sqlalchemy(db)
    finally:
        cleanup(db)


pgtest.main(test)
