#!/usr/bin/env python3
"""Randomized stateful differential writes: each FDW against a native copy.

Each foreign table has a native twin (same columns, the key column its
PRIMARY KEY) holding the same rows.  One session runs seeded random rounds of
write statements on both, the foreign one first, in the same transaction, and
after every statement compares the statement's answer (RETURNING rows, the
command tag with its row count, an error's SQLSTATE) and both tables' whole
contents: inside a transaction that is read-your-writes, after COMMIT or
ROLLBACK what the store holds (for write_mode 'outbox' after sync_wait()).
No generated statement is meant to fail, so any error is a mismatch.

Tables (columns key, a int4, t text, f float8; a vector table also has its
embedding): pgpoly_redis hash tables in write_mode transactional, immediate
and outbox; pgpoly_elastic (private ES stand-in, refresh 'true') in
transactional and immediate mode; pgpoly_vector (the harness's Chroma, when
CHROMA_URL is set) in transactional and immediate mode.

Statements: INSERT VALUES, INSERT ... SELECT from the table itself, INSERT
... ON CONFLICT DO NOTHING, UPDATE (WHERE with pushed-down key/value clauses
and local ones, key-moving, SET from a join with a native table), DELETE
(WHERE, USING a native table), writing CTEs (WITH d AS (DELETE ... RETURNING)
INSERT ...), RETURNING, prepared UPDATE/DELETE/INSERT executed 7 times
(generic plans), PL/pgSQL blocks whose EXCEPTION handler catches an error
after writes (implicit subtransactions), cursors declared before writes and
fetched between them; rounds in autocommit or in BEGIN ... COMMIT/ROLLBACK
with SAVEPOINT, ROLLBACK TO SAVEPOINT and RELEASE, each round under a random
pgpoly.redis_stream_threshold (1 byte: every buffered Redis write streamed
ahead of COMMIT, so ROLLBACK TO drops streamed writes) and plan_cache_mode.

Documented behaviour a native table does not share is emulated or avoided:
  * an INSERT of an existing key overwrites the row in all three stores
    (README: Redis "Write semantics", Elasticsearch `index` actions, Chroma
    upserts): the native twin's INSERT gets ON CONFLICT (key) DO UPDATE of
    every column, and no INSERT has one key twice;
  * a key-moving UPDATE moves to a fresh key (never onto another row's key:
    Redis overwrites or raises 23505 where a native table always raises), and
    none on Elasticsearch (an `_id` cannot change);
  * ON CONFLICT DO UPDATE is an ERROR on every store, and ON CONFLICT on an
    outbox table: not generated;
  * write_mode 'immediate' sends while the statement runs, so ROLLBACK,
    ROLLBACK TO SAVEPOINT and a caught error in a PL/pgSQL block do not
    undo its writes, and a cursor reads the store as it goes: none of these
    on immediate tables;
  * a Redis hash row of only NULLs does not exist: column a is never NULL;
  * values are plain (ints, a few texts, exactly representable floats): the
    read-side test (test_fdw_differential.py) covers the value forms.

Environment: DML_DIFF_SEED (default 20261203), DML_DIFF_ROUNDS (rounds per
table, default 14: about 1,450 statements compared in ~20 s;
`DML_DIFF_ROUNDS=200` for a long hunt), DML_DIFF_TABLES (a comma list of the
f_* tables), DML_DIFF_VERBOSE=1 prints every statement.  A mismatch prints
the seed, the statements of the round so far, and both answers; that table
then stops.
"""

import os
import random
import urllib.request

import es_helper
import pgtest
import pgwire

SEED = int(os.environ.get("DML_DIFF_SEED", "20261203"))
ROUNDS = int(os.environ.get("DML_DIFF_ROUNDS", "14"))
VERBOSE = os.environ.get("DML_DIFF_VERBOSE") == "1"
TAG = "dmldiff_%d" % os.getpid()

KEYS = ["k%02d" % i for i in range(12)]
TEXTS = ["x", "y", "zz", "it's", "z x", None]
FLOATS = ["0.5", "1.25", "-3", "100", None]


class Mismatch(Exception):
    pass


class Table:
    def __init__(self, ftab, ntab, key, mode, store):
        self.f, self.n, self.k, self.mode, self.store = ftab, ntab, key, mode, store
        self.vec = store == "vector"
        self.cols = [key, "a", "t", "f"] + (["embedding"] if self.vec else [])

    @property
    def imm(self):
        return self.mode == "immediate"


class Runner:
    def __init__(self, conn):
        self.c = conn
        self.count = 0
        self.log = []
        self.mismatches = []

    def raw(self, sql):
        if VERBOSE:
            print(sql, flush=True)
        self.log.append(sql)
        out = []
        for r in self.c.query(sql):
            if r.error:
                out.append(("E" + r.error.get("C", "?"), r.error.get("M")))
            elif not r.skipped:
                out.append((r.tag, [tuple(None if x is None else x.decode() for x in row)
                                    for row in r.rows]))
        return out

    def ok(self, sql):
        r = self.raw(sql)
        for x in r:
            if x[0] and x[0].startswith("E"):
                self.fail("setup statement failed", sql, r, "", [])
        return r

    def fail(self, what, fsql, fr, nsql, nr):
        msg = ("MISMATCH (%s) seed %d\nround so far:\n  %s\nforeign: %s\n -> %r\n"
               "native:  %s\n -> %r" % (what, SEED, "\n  ".join(self.log[-60:]),
                                          fsql, fr, nsql, nr))
        self.mismatches.append(msg)
        print(msg, flush=True)
        if self.c.status in ("E", "T"):
            self.c.query("ROLLBACK")
        raise Mismatch()

    def both(self, fsql, nsql, ordered=False):
        """Run the foreign, then the native statement; compare the answers."""
        self.count += 1
        fr = self.raw(fsql)
        nr = self.raw(nsql)

        def norm(res):
            return [(t, rows if ordered else sorted(rows, key=repr)) for t, rows in res]
        if norm(fr) != norm(nr):
            self.fail("statement", fsql, fr, nsql, nr)

    def same(self, t, what):
        """Compare the whole contents of the two tables."""
        cols = ", ".join(t.cols)
        self.both("SELECT %s FROM %s" % (cols, t.f), "SELECT %s FROM %s" % (cols, t.n))


def x(s, table):
    """s with its table slots (@T@) filled."""
    return s.replace("@T@", table)


def q(v):
    return "NULL" if v is None else "'%s'" % str(v).replace("'", "''")


class Gen:
    def __init__(self, rnd, t):
        self.r, self.t = rnd, t
        self.fresh = 0

    def newkey(self):
        self.fresh += 1
        return "n%03d" % self.fresh

    def row(self, key):
        r = self.r
        vals = [q(key), str(r.randint(-5, 20)), q(r.choice(TEXTS)),
                "NULL" if r.choice(FLOATS) is None else "%s::float8" % r.choice(FLOATS[:-1])]
        if self.t.vec:
            vals.append("ARRAY[%d, %d, 1]::real[]" % (r.randint(0, 9), r.randint(0, 9)))
        return "(%s)" % ", ".join(vals)

    def pred(self, depth=0):
        r, k = self.r, self.t.k
        c = r.randint(0, 11)
        if depth < 1 and c >= 10:
            return "(%s %s %s)" % (self.pred(1), r.choice(["AND", "OR"]), self.pred(1))
        return [
            lambda: "%s = %s" % (k, q(r.choice(KEYS))),
            lambda: "%s IN (%s)" % (k, ", ".join(q(x) for x in r.sample(KEYS, 3))),
            lambda: "a > %d" % r.randint(0, 15),
            lambda: "a = %d" % r.randint(0, 10),
            lambda: "t = %s" % q(r.choice(TEXTS[:-1])),
            lambda: "t IS NULL",
            lambda: "a %% 2 = %d" % r.randint(0, 1),         # local
            lambda: "t LIKE 'z%'",
            lambda: "f < 1",
            lambda: "%s LIKE 'n%%'" % k,
        ][min(c, 9)]()

    def ret(self):
        return self.r.choice(["", "", " RETURNING %s, a, t" % self.t.k, " RETURNING *"])

    def upsert(self):
        sets = ", ".join("%s = EXCLUDED.%s" % (c, c) for c in self.t.cols[1:])
        return " ON CONFLICT (%s) DO UPDATE SET %s" % (self.t.k, sets)

    def statement(self, in_xact):
        """One unit: a list of (foreign sql, native sql, ordered)."""
        r, t, k = self.r, self.t, self.t.k
        F, N = t.f, t.n
        cols = ", ".join(t.cols)
        kinds = ["ins", "ins", "inssel", "upd", "upd", "updjoin", "del", "delusing",
                 "cte", "prep"]
        if t.mode != "outbox":
            kinds.append("insnothing")
        if t.store != "es":
            kinds.append("move")
        kinds.append("cte2")
        if not t.imm:
            kinds += ["plpgsql", "plpgsql", "loop"]
            if in_xact:
                kinds.append("cursor")
        kind = r.choice(kinds)
        if kind == "ins":
            keys = r.sample(KEYS + [self.newkey()], r.randint(1, 3))
            ret = self.ret()
            s = "INSERT INTO @T@ (%s) VALUES %s" % (cols, ", ".join(self.row(x) for x in keys))
            return [(x(s, F) + ret, x(s, N) + self.upsert() + ret, False)]
        if kind == "inssel":
            sfx = self.newkey()
            ret = self.ret()
            s = ("INSERT INTO @T@ (%s) SELECT %s || '_%s', a + 1, t, f%s FROM @T@ WHERE %s"
                 % (cols, k, sfx, ", embedding" if t.vec else "", self.pred()))
            return [(x(s, F) + ret, x(s, N) + self.upsert() + ret, False)]
        if kind == "insnothing":
            # a key twice in one statement: the second row conflicts with
            # the first and is skipped, as on a native table
            keys = [r.choice(KEYS + [self.newkey()]) for _ in range(r.randint(1, 4))]
            ret = self.ret()
            s = ("INSERT INTO @T@ (%s) VALUES %s ON CONFLICT %s DO NOTHING"
                 % (cols, ", ".join(self.row(x) for x in keys),
                    r.choice(["", "(%s)" % k])))
            return [(x(s, F) + ret, x(s, N) + ret, False)]
        if kind == "upd":
            sets = r.choice(["a = a + 1", "t = %s" % q(r.choice(TEXTS)),
                             "a = a * 2, f = %s" % r.choice(["NULL", "0.5", "f + 1"]),
                             "t = t || 'u'", "a = %d" % r.randint(0, 9)])
            s = "UPDATE @T@ SET %s WHERE %s" % (sets, self.pred())
            ret = self.ret()
            return [(x(s, F) + ret, x(s, N) + ret, False)]
        if kind == "move":
            s = "UPDATE @T@ SET %s = %s || '_%s', a = a + 100 WHERE %s" % (
                k, k, self.newkey(), self.pred())
            ret = self.ret()
            return [(x(s, F) + ret, x(s, N) + ret, False)]
        if kind == "updjoin":
            s = ("UPDATE @T@ x SET a = s.v, t = s.sk FROM side s WHERE x.%s = s.sk%s"
                 % (k, r.choice(["", " AND s.v > 3", " AND " + self.pred()]).replace(
                     " a ", " x.a ")))
            ret = r.choice(["", " RETURNING x.%s, x.a, s.v" % k])
            return [(x(s, F) + ret, x(s, N) + ret, False)]
        if kind == "del":
            s = "DELETE FROM @T@ WHERE %s" % self.pred()
            ret = self.ret()
            return [(x(s, F) + ret, x(s, N) + ret, False)]
        if kind == "delusing":
            s = "DELETE FROM @T@ x USING side s WHERE x.%s = s.sk AND s.v %s %d" % (
                k, r.choice(["<", ">", "="]), r.randint(0, 8))
            ret = r.choice(["", " RETURNING x.%s, s.v" % k])
            return [(x(s, F) + ret, x(s, N) + ret, False)]
        if kind == "cte":
            sfx = self.newkey()
            s = ("WITH d AS (DELETE FROM @T@ WHERE %s RETURNING *) "
                 "INSERT INTO @T@ (%s) SELECT %s || '_%s', a, t, f%s FROM d "
                 "RETURNING %s, a" % (self.pred(), cols, k, sfx,
                                      ", embedding" if t.vec else "", k))
            return [(x(s, F), x(s, N), False)]
        if kind == "cte2":
            # two modifying nodes on one table: a row both reach is modified
            # once, by the node that meets it first, as on a native table
            s = r.choice([
                "WITH u AS (UPDATE @T@ SET a = a + 1 WHERE %s RETURNING %s) "
                "DELETE FROM @T@ WHERE %s RETURNING %s" % (self.pred(), k, self.pred(), k),
                "WITH d AS (DELETE FROM @T@ WHERE %s RETURNING %s) "
                "UPDATE @T@ SET t = 'w' WHERE %s RETURNING %s, a" % (self.pred(), k,
                                                                       self.pred(), k),
                "WITH u AS (UPDATE @T@ SET a = a + 2 WHERE %s RETURNING %s) "
                "SELECT count(*) FROM u" % (self.pred(), k)])
            return [(x(s, F), x(s, N), False)]
        if kind == "loop":
            s = ("DO $$DECLARE r record; BEGIN FOR r IN SELECT %s AS kk, a FROM @T@ "
                 "WHERE %s ORDER BY %s LOOP UPDATE @T@ SET a = a + r.a + 1 WHERE %s = r.kk; "
                 "%s END LOOP; END$$" % (k, self.pred(), k, k, r.choice([
                     "", "DELETE FROM @T@ WHERE %s = r.kk AND a > 10;" % k,
                     "INSERT INTO @T@ (%s) SELECT %s || '_%s', a, t, f%s FROM @T@ "
                     "WHERE %s = r.kk;" % (cols, k, self.newkey(),
                                           ", embedding" if t.vec else "", k)])))
            return [(x(s, F), x(s, N), False)]
        if kind == "prep":
            p = r.choice([
                ("UPDATE @T@ SET a = a + $1 WHERE %s = $2 RETURNING %s, a" % (k, k),
                 lambda: "(%d, %s)" % (r.randint(1, 3), q(r.choice(KEYS)))),
                ("DELETE FROM @T@ WHERE a = $1 OR %s = $2 RETURNING %s" % (k, k),
                 lambda: "(%d, %s)" % (r.randint(0, 12), q(r.choice(KEYS)))),
                ("UPDATE @T@ SET t = $1 WHERE a > $2", lambda: "(%s, %d)" % (
                    q(r.choice(TEXTS)), r.randint(0, 20))),
            ])
            out = [("PREPARE pf AS " + x(p[0], F), "PREPARE pn AS " + x(p[0], N), False)]
            for _ in range(7):
                args = p[1]()
                out.append(("EXECUTE pf" + args, "EXECUTE pn" + args, False))
            out.append(("DEALLOCATE pf", "DEALLOCATE pn", False))
            return out
        if kind == "plpgsql":
            w1 = "UPDATE @T@ SET a = a + 7 WHERE %s" % self.pred()
            w2 = "INSERT INTO @T@ (%s) VALUES %s" % (cols, self.row(self.newkey()))
            w3 = "DELETE FROM @T@ WHERE %s" % self.pred()
            if r.random() < 0.5:
                body = ("BEGIN %s; %s; PERFORM 1 / 0; EXCEPTION WHEN division_by_zero "
                        "THEN NULL; END" % (w1, w2))
            else:
                body = ("BEGIN BEGIN %s; %s; PERFORM 1 / 0; EXCEPTION WHEN division_by_zero "
                        "THEN NULL; END; %s; END" % (w3, w1, w2))
            s = "DO $$%s$$" % body
            return [(x(s, F), x(s, N), False)]
        if kind == "cursor":
            s1 = "DECLARE c@C@ CURSOR FOR SELECT %s, a FROM @T@ ORDER BY %s" % (k, k)
            out = [(x(s1, F).replace("@C@", "f"), x(s1, N).replace("@C@", "n"), False)]
            w = self.statement(in_xact=False)
            while w[0][0].startswith("PREPARE"):
                w = self.statement(in_xact=False)
            out.append(("FETCH 2 FROM cf", "FETCH 2 FROM cn", True))
            out += w
            out.append(("FETCH ALL FROM cf", "FETCH ALL FROM cn", True))
            out.append(("CLOSE cf", "CLOSE cn", False))
            return out
        raise AssertionError(kind)


def settle(run, t):
    """After a transaction: let the sync worker deliver an outbox table."""
    if t.mode == "outbox":
        r = run.raw("SELECT pgpoly.sync_wait(NULL, '60 s')")
        pgtest.check(r == [("SELECT 1", [("t",)])], "sync_wait: %r" % (r,))


def savepoint_step(run, rnd, t, sps, same):
    """SAVEPOINT, ROLLBACK TO SAVEPOINT (not on immediate tables) or RELEASE
    at random; sps: the open savepoints; same(what) compares the tables."""
    c = rnd.random()
    if c < 0.5 or not sps:
        sps.append("s%d" % len(sps))
        run.ok("SAVEPOINT " + sps[-1])
    elif c < 0.8 and not t.imm:
        sp = rnd.choice(sps)
        del sps[sps.index(sp) + 1:]
        run.ok("ROLLBACK TO SAVEPOINT " + sp)
        same("after rollback to")
    else:
        sp = rnd.choice(sps)
        del sps[sps.index(sp):]
        run.ok("RELEASE SAVEPOINT " + sp)
        same("after release")


def exercise(run, rnd, t):
    g = Gen(rnd, t)
    run.log = []
    run.ok("DELETE FROM %s; DELETE FROM %s" % (t.f, t.n))
    settle(run, t)
    init = ", ".join(g.row(x) for x in rnd.sample(KEYS, 8))
    cols = ", ".join(t.cols)
    run.ok("INSERT INTO %s (%s) VALUES %s" % (t.f, cols, init))
    run.ok("INSERT INTO %s (%s) VALUES %s" % (t.n, cols, init))
    settle(run, t)
    run.same(t, "initial")
    for rnd_no in range(ROUNDS):
        run.log = ["-- round %d" % rnd_no]
        # Redis: stream buffered writes on a second connection from the first
        # byte on, or after a few, or not at all (README: Transactions)
        run.ok("SET pgpoly.redis_stream_threshold = %s; SET plan_cache_mode = %s"
               % (rnd.choice(["1", "300", "-1", "DEFAULT"]),
                  rnd.choice(["auto", "force_generic_plan", "force_custom_plan"])))
        xact = rnd.random() < 0.75
        if xact:
            run.ok("BEGIN")
        sps = []
        for _ in range(rnd.randint(2, 6)):
            if xact and rnd.random() < 0.3:
                savepoint_step(run, rnd, t, sps, lambda what: run.same(t, what))
            for fsql, nsql, ordered in g.statement(xact):
                run.both(fsql, nsql, ordered)
                if not xact:
                    # an autocommitted outbox write is in the store once
                    # delivered (README: Outbox tables)
                    settle(run, t)
                if not fsql.startswith(("PREPARE", "DEALLOCATE", "DECLARE", "CLOSE",
                                        "FETCH")):
                    run.same(t, "after statement")
        if xact:
            end = "ROLLBACK" if (not t.imm and rnd.random() < 0.3) else "COMMIT"
            run.ok(end)
        settle(run, t)
        run.same(t, "after end of transaction")


def run_tables(run, rnd, tables, only, exercise):
    """exercise(run, rnd, t) each table (only: a comma list of the f_* tables
    to run, or None); check that no table had a mismatch."""
    for t in tables:
        if only and t.f not in only.split(","):
            continue
        before = run.count
        try:
            exercise(run, rnd, t)
        except Mismatch:
            pass
        print("%s (%s): %d statements compared" % (t.f, t.mode, run.count - before),
              flush=True)
    print("%d statements compared, %d mismatches (seed %d)"
          % (run.count, len(run.mismatches), SEED), flush=True)
    pgtest.check(not run.mismatches, "%d mismatches" % len(run.mismatches))


def drop_collection(chroma, name):
    """Delete a Chroma collection a test made (if the service still answers)."""
    try:
        urllib.request.urlopen(urllib.request.Request(
            "%s/api/v2/tenants/default_tenant/databases/default_database/"
            "collections/%s" % (chroma, name), method="DELETE"), timeout=10)
    except OSError:
        pass


def test():
    rnd = random.Random(SEED)
    db = pgtest.create_db()
    c = pgwire.Conn(db)
    run = Runner(c)
    run.ok("CREATE TABLE side (sk text, v int4); INSERT INTO side VALUES %s"
           % ", ".join("(%s, %d)" % (q(k), rnd.randint(0, 9))
                       for k in rnd.sample(KEYS, 6) + ["nope"]))
    tables = []

    def native(t, keydef="text"):
        run.ok("CREATE TABLE %s (%s %s PRIMARY KEY, a int4, t text, f float8%s)"
               % (t.n, t.k, keydef, ", embedding real[]" if t.vec else ""))

    port = os.environ["REDIS_PORT"]
    run.ok("CREATE SERVER dr FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%s')" % port)
    for mode in ("transactional", "immediate", "outbox"):
        t = Table("f_r" + mode[0], "n_r" + mode[0], "k", mode, "redis")
        native(t)
        run.ok("CREATE FOREIGN TABLE %s (k text OPTIONS (key 'true'), a int4, t text, "
               "f float8) SERVER dr OPTIONS (table_type 'hash', key_prefix '%s:%s:', "
               "write_mode '%s', fetch_size '3', batch_size '2')"
               % (t.f, TAG, mode[0], mode))
        tables.append(t)

    es = es_helper.Standin()
    run.ok("CREATE SERVER des FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%s')" % es.url)
    for mode in ("transactional", "immediate"):
        idx = "dmldiff_" + mode[0]
        es.request("PUT", "/" + idx, {"mappings": {"dynamic": False, "properties": {
            "a": {"type": "integer"}, "t": {"type": "keyword"}, "f": {"type": "double"}}}})
        t = Table("f_e" + mode[0], "n_e" + mode[0], "_id", mode, "es")
        native(t)
        run.ok("CREATE FOREIGN TABLE %s (_id text, a int4, t text, f float8) SERVER des "
               "OPTIONS (index '%s', refresh 'true', fetch_size '3', batch_size '2', "
               "write_mode '%s')" % (t.f, idx, mode))
        tables.append(t)

    chroma = os.environ.get("CHROMA_URL")
    if chroma:
        run.ok("CREATE SERVER dv FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url '%s')" % chroma)
        for mode in ("transactional", "immediate"):
            t = Table("f_v" + mode[0], "n_v" + mode[0], "id", mode, "vector")
            native(t)
            run.ok("CREATE FOREIGN TABLE %s (id text, a int4, t text, f float8, "
                   "embedding real[]) SERVER dv OPTIONS "
                   "(collection '%s_%s', create_collection 'true', distance 'l2', "
                   "fetch_size '4', batch_size '2', write_mode '%s')"
                   % (t.f, TAG, mode[0], mode))
            tables.append(t)
    else:
        print("note: CHROMA_URL not set, vector tables skipped")

    run_tables(run, rnd, tables, os.environ.get("DML_DIFF_TABLES"), exercise)
    for t in tables:
        c.query("DELETE FROM %s" % t.f)
    if chroma:
        for m in "ti":
            drop_collection(chroma, "%s_%s" % (TAG, m))
    c.query("SELECT pgpoly.sync_wait(NULL, '60 s')")
    c.close()
    es.stop()


if __name__ == "__main__":
    pgtest.main(test)
