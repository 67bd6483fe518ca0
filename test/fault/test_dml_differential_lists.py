#!/usr/bin/env python3
"""Randomized differential writes, part three: Redis `list` and `set` tables.

The same comparison as test_dml_differential.py (its Runner: each statement
on the foreign table, then on its native twin, in one transaction; answers
and whole contents compared after every statement, after SAVEPOINT, ROLLBACK
TO, RELEASE, COMMIT and ROLLBACK) for the two Redis table types whose write
semantics no native table shares (README: "Row shape by table type", "Write
semantics").  The native twin is a view over a plain table with INSTEAD OF
triggers that do what the README says Redis does:

  * `set` (key, member): one row per member.  INSERT of a member already
    there adds nothing and still counts (SADD); UPDATE removes the old member
    and adds the new one (moving onto a member the statement does not touch
    merges with it); DELETE removes the member; INSERT ... ON CONFLICT DO
    NOTHING skips a member already there (also one earlier in the same
    statement), uncounted -- the twin's is on the base table with a unique
    (key, member);
  * `list` (key, idx, value): one row per element, idx 0-based.  INSERT
    appends; UPDATE of the value sets the element at its idx (LSET), UPDATE
    of the key moves the element off its list (LREM key 1 value) onto the
    end of the other (RPUSH); DELETE removes the first element equal to the
    row's value (LREM key 1 value); idx cannot be assigned (0A000); ON
    CONFLICT is an ERROR (0A000).  The twin keeps an append position `pos`
    and numbers the elements of each list by it.

Both types in write_mode transactional and immediate (ROLLBACK and ROLLBACK
TO only on transactional ones), with prepared statements under random
plan_cache_mode; write_mode 'outbox' is refused for both at CREATE (checked).
Errors are compared by SQLSTATE (the native twin's messages differ).

Statements a native twin cannot model are not generated: RETURNING idx of an
INSERT or of a moved element (what the row said, not the position reached).

Environment: DML_LIST_SEED (default 20261203), DML_LIST_ROUNDS (rounds per
table, default 12; 200 or more for a long hunt), DML_LIST_TABLES (a comma list
of the f_* tables), DML_DIFF_VERBOSE=1 prints every statement.
"""

import os
import random

import pgtest
import pgwire
import test_dml_differential as dd
from test_dml_differential import Runner, x

SEED = int(os.environ.get("DML_LIST_SEED", "20261203"))
ROUNDS = int(os.environ.get("DML_LIST_ROUNDS", "12"))
TAG = "dmllist_%d" % os.getpid()
dd.SEED = SEED

KEYS = ["'k%d'" % i for i in range(5)]
VALUES = ["'x'", "'y'", "'z'", "'it''s'", "''", "'é'"]

TWINS = """
CREATE TABLE nl_base (k text NOT NULL, pos bigserial, value text NOT NULL);
CREATE FUNCTION nl_trg() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE base text := TG_ARGV[0];
BEGIN
  IF TG_OP IN ('DELETE', 'UPDATE') AND (TG_OP = 'DELETE' OR NEW.k <> OLD.k) THEN
    -- LREM key 1 value
    EXECUTE format('DELETE FROM %I WHERE pos = (SELECT min(pos) FROM %I '
                   'WHERE k = $1 AND value = $2)', base, base) USING OLD.k, OLD.value;
  END IF;
  IF TG_OP = 'DELETE' THEN
    RETURN OLD;
  END IF;
  IF NEW.k IS NULL OR NEW.value IS NULL THEN
    RAISE not_null_violation;
  END IF;
  IF TG_OP = 'UPDATE' AND NEW.idx IS DISTINCT FROM OLD.idx THEN
    RAISE feature_not_supported;
  END IF;
  IF TG_OP = 'INSERT' OR NEW.k <> OLD.k THEN
    -- RPUSH
    EXECUTE format('INSERT INTO %I (k, value) VALUES ($1, $2)', base) USING NEW.k, NEW.value;
  ELSE
    -- LSET key idx value
    EXECUTE format('UPDATE %I SET value = $1 WHERE pos = $2', base) USING NEW.value, OLD.pos;
  END IF;
  RETURN NEW;
END$$;
CREATE FUNCTION ns_trg() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE base text := TG_ARGV[0];
BEGIN
  IF TG_OP IN ('DELETE', 'UPDATE') THEN
    EXECUTE format('DELETE FROM %I WHERE k = $1 AND member = $2', base)
      USING OLD.k, OLD.member;
  END IF;
  IF TG_OP = 'DELETE' THEN
    RETURN OLD;
  END IF;
  IF NEW.k IS NULL OR NEW.member IS NULL THEN
    RAISE not_null_violation;
  END IF;
  EXECUTE format('INSERT INTO %I VALUES ($1, $2) ON CONFLICT DO NOTHING', base)
    USING NEW.k, NEW.member;
  RETURN NEW;
END$$;
"""


class Table:
    def __init__(self, ttype, mode):
        self.ttype, self.mode = ttype, mode
        name = "%s_%s" % (ttype, mode[0])
        self.f, self.n, self.base = "f_" + name, "n_" + name, "b_" + name
        self.cols = ["k", "idx", "value"] if ttype == "list" else ["k", "member"]
        self.el = "value" if ttype == "list" else "member"

    @property
    def imm(self):
        return self.mode == "immediate"


class Gen(dd.Gen):
    def newkey(self):
        return "'%s'" % dd.Gen.newkey(self)

    def key(self):
        return self.r.choice(KEYS + [self.newkey()])

    def el(self):
        return self.r.choice(VALUES)

    def pred(self, depth=0):
        r, t = self.r, self.t
        if depth == 0 and r.random() < 0.15:
            return "(%s %s %s)" % (self.pred(1), r.choice(["AND", "OR"]), self.pred(1))
        c = [lambda: "k = %s" % r.choice(KEYS),
             lambda: "k IN (%s)" % ", ".join(r.sample(KEYS, 2)),
             lambda: "k > %s" % r.choice(KEYS),
             lambda: "k LIKE 'n%'",
             lambda: "%s = %s" % (t.el, self.el()),
             lambda: "%s <> %s" % (t.el, self.el()),
             lambda: "(k = %s AND %s = %s)" % (r.choice(KEYS), t.el, self.el())]
        if t.ttype == "list":
            c += [lambda: "idx = %d" % r.randint(0, 3),
                  lambda: "idx > %d" % r.randint(0, 3),
                  lambda: "(k = %s AND idx = %d)" % (r.choice(KEYS), r.randint(0, 3)),
                  lambda: "idx %% 2 = %d" % r.randint(0, 1)]
        return r.choice(c)()

    def ret(self, moving=False):
        t = self.t
        c = ["", "", " RETURNING k, %s" % t.el]
        if not moving:
            c.append(" RETURNING %s" % ", ".join(t.cols))
        return self.r.choice(c)

    def rows(self, n):
        return ", ".join("(%s, %s)" % (self.key(), self.el()) for _ in range(n))

    def statement(self):
        """A list of (foreign sql, native sql)."""
        r, t = self.r, self.t
        F, N = t.f, t.n
        kinds = ["ins", "ins", "upd", "upd", "move", "del", "del", "inssel", "cte", "prep",
                 "mixed"]
        if t.ttype == "set":
            kinds += ["nothing", "nothing"]
        else:
            kinds += ["bad"]
        kind = r.choice(kinds)
        el = t.el
        if kind == "ins":
            s = "INSERT INTO @T@ (k, %s) VALUES %s" % (el, self.rows(r.randint(1, 4)))
            ret = self.ret(moving=True)
            return [(x(s, F) + ret, x(s, N) + ret)]
        if kind == "nothing":
            s = "INSERT INTO @T@ (k, member) VALUES %s ON CONFLICT %s DO NOTHING" % (
                self.rows(r.randint(1, 4)), r.choice(["", "(k, member)"]))
            ret = self.ret()
            return [(x(s, F) + ret, x(s, t.base) + ret)]
        if kind == "inssel":
            # appended in the order of the SELECT
            s = "INSERT INTO @T@ (k, %s) SELECT %s, %s FROM @T@ WHERE %s ORDER BY 1, 2" % (
                el, r.choice(["k || '_c%d'" % self.fresh, self.newkey()] if t.imm else
                             ["k", "k || '_c'", self.key()]),
                r.choice([el, "%s || 'i'" % el]), self.pred())
            ret = self.ret(moving=True)
            return [(x(s, F) + ret, x(s, N) + ret)]
        if kind == "upd":
            if t.ttype == "list":
                s = "UPDATE @T@ SET %s = %s WHERE %s" % (
                    el, r.choice([self.el(), "%s || 'u'" % el, "upper(%s)" % el,
                                  "CASE WHEN %s = 'x' THEN 'y' ELSE %s END" % (el, el)]),
                    self.pred())
            elif r.random() < 0.5:
                # a row moved onto a member another row of the statement
                # holds is refused (23505): new members, or one row
                s = "UPDATE @T@ SET member = member || '_u%s' WHERE %s" % (
                    self.newkey().strip("'"), self.pred())
            else:
                s = "UPDATE @T@ SET member = %s WHERE k = %s AND member = %s" % (
                    self.el(), r.choice(KEYS), self.el())
            ret = self.ret()
            return [(x(s, F) + ret, x(s, N) + ret)]
        if kind == "move":
            tgt = r.choice(["k || '_m%s'" % self.newkey().strip("'"), self.newkey(),
                            r.choice(KEYS)])
            s = "UPDATE @T@ SET k = %s WHERE %s" % (tgt, self.pred())
            if tgt.startswith("'") and t.ttype == "set":
                s = "UPDATE @T@ SET k = %s WHERE k = %s AND member = %s" % (
                    tgt, r.choice(KEYS), self.el())
            elif tgt.startswith("'"):
                # elements of several lists reach the target in scan order
                s += " AND k = %s" % r.choice(KEYS)
            ret = self.ret(moving=True)
            return [(x(s, F) + ret, x(s, N) + ret)]
        if kind == "mixed":
            # some rows of a key move, others of the same key change in place
            k0 = r.choice(KEYS)
            if t.ttype == "list":
                # the elements after a moved one are refused (test_list_move_shift)
                s = ("UPDATE @T@ SET k = CASE WHEN idx > %d THEN %s ELSE k END, "
                     "value = value || 'w' WHERE k = %s" % (
                         r.randint(0, 2), self.newkey(), k0))
            else:
                s = ("UPDATE @T@ SET k = CASE WHEN member = %s THEN %s ELSE k END, "
                     "member = member || '_w%s' WHERE k = %s" % (
                         self.el(), self.newkey(), self.newkey().strip("'"), k0))
            ret = self.ret(moving=True)
            return [(x(s, F) + ret, x(s, N) + ret)]
        if kind == "del":
            s = "DELETE FROM @T@ WHERE %s" % self.pred()
            ret = self.ret()
            return [(x(s, F) + ret, x(s, N) + ret)]
        if kind == "cte":
            s = r.choice([
                "WITH d AS (DELETE FROM @T@ WHERE %s RETURNING k, %s) "
                "INSERT INTO @T@ (k, %s) SELECT k || '_d%s', %s FROM d RETURNING k, %s"
                % (self.pred(), el, self.newkey().strip("'") if t.imm else "", el, el, el),
                "WITH d AS (INSERT INTO @T@ (k, %s) VALUES %s RETURNING k, %s) "
                "SELECT * FROM d" % (el, self.rows(2), el)])
            return [(x(s, F), x(s, N))]
        if kind == "bad":
            s = r.choice([
                "UPDATE @T@ SET idx = idx + 1 WHERE %s" % self.pred(),
                "UPDATE @T@ SET value = NULL WHERE %s" % self.pred()])
            return [(x(s, F), x(s, N))]
        if kind == "prep":
            p = r.choice([
                ("UPDATE @T@ SET %s = $1 WHERE k = $2 AND %s = $3 RETURNING k, %s"
                 % (el, el, el), 3),
                ("DELETE FROM @T@ WHERE k = $1 RETURNING k, %s" % el, 1),
                ("INSERT INTO @T@ (k, %s) VALUES ($1, $2), ($1, $3) RETURNING k, %s"
                 % (el, el), 3),
                ("UPDATE @T@ SET k = $1 WHERE k = $2 AND %s = $3 RETURNING k, %s"
                 % (el, el), 3),
            ])
            sql, n = p
            if t.ttype == "set" and sql.startswith("UPDATE @T@ SET k"):
                sql = sql.replace("AND member = $3", "AND member = $3 AND k <> $1")
            out = [("PREPARE pf(text, text, text) AS " + x(sql, F),
                    "PREPARE pn(text, text, text) AS " + x(sql, N))]
            for _ in range(6):
                args = [r.choice(KEYS + ["'n%03d'" % (self.fresh + 1)]), r.choice(KEYS),
                        self.el()]
                if sql.startswith("UPDATE @T@ SET %s" % el):
                    args = [self.el(), r.choice(KEYS), self.el()]
                elif sql.startswith("INSERT"):
                    args = [self.key(), self.el(), self.el()]
                a = "(%s)" % ", ".join(args[:n] + ["NULL"] * (3 - n))
                out.append(("EXECUTE pf" + a, "EXECUTE pn" + a))
            out.append(("DEALLOCATE pf", "DEALLOCATE pn"))
            return out
        raise AssertionError(kind)


class CodeRunner(Runner):
    """Errors compared by SQLSTATE only; in a transaction each side runs in
    a savepoint, so that the native statement runs after a foreign error."""

    def raw(self, sql):
        return [(tag, None) if tag and tag.startswith("E") else (tag, rows)
                for tag, rows in Runner.raw(self, sql)]

    def guarded(self, sql):
        if self.c.status != "T":
            return self.raw(sql)
        self.c.query("SAVEPOINT e")
        r = self.raw(sql)
        self.c.query("ROLLBACK TO SAVEPOINT e" if self.c.status == "E" else "RELEASE e")
        return r

    def both(self, fsql, nsql, ordered=False):
        self.count += 1
        fr, nr = self.guarded(fsql), self.guarded(nsql)

        def norm(res):
            return [(t, rows if rows is None else sorted(rows, key=repr)) for t, rows in res]
        if norm(fr) != norm(nr):
            self.fail("statement", fsql, fr, nsql, nr)


def same(run, t):
    cols = ", ".join(t.cols)
    run.both("SELECT %s FROM %s" % (cols, t.f), "SELECT %s FROM %s" % (cols, t.n))


def exercise(run, rnd, t):
    g = Gen(rnd, t)
    run.log = []
    run.ok("RESET ALL; DEALLOCATE ALL; DELETE FROM %s; DELETE FROM %s" % (t.f, t.base))
    init = g.rows(10)
    run.ok("INSERT INTO %s (k, %s) VALUES %s" % (t.f, t.el, init))
    run.ok("INSERT INTO %s (k, %s) VALUES %s" % (t.n, t.el, init))
    same(run, t)
    for rnd_no in range(ROUNDS):
        run.log = ["-- round %d" % rnd_no]
        run.ok("SET plan_cache_mode = %s; SET pgpoly.redis_stream_threshold = %s"
               % (rnd.choice(["auto", "force_generic_plan", "force_custom_plan"]),
                  rnd.choice(["1", "-1", "DEFAULT"])))
        xact = rnd.random() < 0.7
        if xact:
            run.ok("BEGIN")
        sps = []
        for _ in range(rnd.randint(2, 6)):
            if xact and rnd.random() < 0.3:
                dd.savepoint_step(run, rnd, t, sps, lambda what: same(run, t))
            for fsql, nsql in g.statement():
                run.both(fsql, nsql)
                if not fsql.startswith(("PREPARE", "DEALLOCATE")):
                    same(run, t)
        if xact:
            run.ok("ROLLBACK" if (not t.imm and rnd.random() < 0.3) else "COMMIT")
        same(run, t)
        # growth bound: start lists and sets small again now and then
        if rnd.random() < 0.2:
            run.ok("DELETE FROM %s; DELETE FROM %s" % (t.f, t.base))
            init = g.rows(10)
            run.ok("INSERT INTO %s (k, %s) VALUES %s" % (t.f, t.el, init))
            run.ok("INSERT INTO %s (k, %s) VALUES %s" % (t.n, t.el, init))


def list_move_shift(run):
    """An UPDATE that moves an element off a list and then changes a later
    element of that list in place: the move's LREM shifts the later ones, so
    the LSET at the idx read changed the next element (or failed at COMMIT
    with "index out of range", after the commands before it had run).  Now
    refused (0A000) before anything is written; moving the later elements
    and changing the earlier ones in place is right."""
    for f in ("f_list_t", "f_list_i"):
        run.ok("DELETE FROM %s; INSERT INTO %s (k, value) VALUES ('q', 'a'), ('q', 'b'), "
               "('q', 'c'), ('q', 'd')" % (f, f))
        r = run.raw("UPDATE %s SET k = CASE WHEN idx = 1 THEN 'q2' ELSE k END, "
                    "value = value || 'w' WHERE k = 'q'" % f)
        pgtest.check(r == [("E0A000", None)], "%s: move then change in place: %r" % (f, r))
        if f == "f_list_t":
            r = run.raw("SELECT k, idx, value FROM %s ORDER BY k, idx" % f)
            pgtest.check(r == [("SELECT 4", [("q", "0", "a"), ("q", "1", "b"), ("q", "2", "c"),
                                             ("q", "3", "d")])], "%s after: %r" % (f, r))
        run.ok("DELETE FROM %s; INSERT INTO %s (k, value) VALUES ('q', 'a'), ('q', 'b'), "
               "('q', 'c'), ('q', 'd')" % (f, f))
        r = run.raw("UPDATE %s SET k = CASE WHEN idx >= 2 THEN 'q2' ELSE k END, "
                    "value = value || 'w' WHERE k = 'q'" % f)
        pgtest.check(r == [("UPDATE 4", [])], "%s: change then move: %r" % (f, r))
        r = run.raw("SELECT k, idx, value FROM %s ORDER BY k, idx" % f)
        pgtest.check(r == [("SELECT 4", [("q", "0", "aw"), ("q", "1", "bw"), ("q2", "0", "cw"),
                                         ("q2", "1", "dw")])], "%s after: %r" % (f, r))
        run.ok("DELETE FROM %s" % f)


def test():
    rnd = random.Random(SEED)
    db = pgtest.create_db()
    c = pgwire.Conn(db)
    run = CodeRunner(c)
    run.ok(TWINS)
    port = os.environ["REDIS_PORT"]
    run.ok("CREATE SERVER dr FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%s')" % port)
    tables = []
    for ttype in ("list", "set"):
        # README: write_mode 'outbox' is for hash, json and string tables only
        r = run.raw("CREATE FOREIGN TABLE ob_%s (k text OPTIONS (key 'true'), idx int, "
                    "value text, member text) SERVER dr OPTIONS (table_type '%s', "
                    "write_mode 'outbox')" % (ttype, ttype))
        pgtest.check(r == [("E0A000", None)] or (r and r[0][0].startswith("E")),
                     "outbox %s table accepted: %r" % (ttype, r))
        for mode in ("transactional", "immediate"):
            t = Table(ttype, mode)
            if ttype == "list":
                run.ok("CREATE TABLE %s (LIKE nl_base INCLUDING DEFAULTS); "
                       "CREATE VIEW %s AS SELECT k, (row_number() OVER (PARTITION BY k "
                       "ORDER BY pos) - 1)::int AS idx, value, pos FROM %s; "
                       "CREATE TRIGGER t INSTEAD OF INSERT OR UPDATE OR DELETE ON %s "
                       "FOR EACH ROW EXECUTE FUNCTION nl_trg('%s')"
                       % (t.base, t.n, t.base, t.n, t.base))
                cols = "k text OPTIONS (key 'true'), idx int, value text"
            else:
                run.ok("CREATE TABLE %s (k text, member text, PRIMARY KEY (k, member)); "
                       "CREATE VIEW %s AS SELECT k, member FROM %s; "
                       "CREATE TRIGGER t INSTEAD OF INSERT OR UPDATE OR DELETE ON %s "
                       "FOR EACH ROW EXECUTE FUNCTION ns_trg('%s')"
                       % (t.base, t.n, t.base, t.n, t.base))
                cols = "k text OPTIONS (key 'true'), member text"
            run.ok("CREATE FOREIGN TABLE %s (%s) SERVER dr OPTIONS (table_type '%s', "
                   "key_prefix '%s:%s:', write_mode '%s', fetch_size '3', batch_size '2')"
                   % (t.f, cols, ttype, TAG, t.f, mode))
            tables.append(t)
    r = run.raw("INSERT INTO f_list_t (k, value) VALUES ('a', 'b') ON CONFLICT DO NOTHING")
    pgtest.check(r and r[0][0] == "E0A000", "ON CONFLICT on a list table: %r" % (r,))
    list_move_shift(run)
    dd.run_tables(run, rnd, tables, os.environ.get("DML_LIST_TABLES"), exercise)
    c.query("RESET ALL")
    for t in tables:
        c.query("DELETE FROM %s" % t.f)
    c.close()


if __name__ == "__main__":
    pgtest.main(test)
