#!/usr/bin/env python3
"""Randomized differential writes, part two: layouts, outbox, triggers, settings.

test_dml_differential.py runs random write statements on Redis hash tables
with plain columns, Elasticsearch in transactional/immediate mode and Chroma.
This test runs the same kind of comparison (the same Runner: each statement on
the foreign table, then on its native twin, in one transaction; answers and
whole contents compared after every statement, after COMMIT/ROLLBACK, and for
write_mode 'outbox' after sync_wait()) on what that one leaves out:

  * Redis `json` and `string` tables in write_mode transactional, immediate
    and outbox, `zset` tables in transactional and immediate, and `hash`
    tables with columns of many types;
  * Elasticsearch in write_mode 'outbox' (and transactional, immediate) with
    the same typed columns; Chroma (CHROMA_URL) with typed metadata columns;
  * joins of native tables to the foreign one on its key (SELECT, UPDATE
    ... FROM, DELETE ... USING), keys of every key type;
  * row triggers (BEFORE ROW INSERT/UPDATE/DELETE that change NEW, or skip
    the row by returning NULL; AFTER ROW triggers that log OLD and NEW) and
    statement triggers (BEFORE/AFTER STATEMENT, the AFTER one logging the
    table's row count) on tables of every store, their log compared too
    (PostgreSQL refuses transition tables on foreign tables);
  * every round under random session settings that change text forms:
    DateStyle, IntervalStyle, extra_float_digits, TimeZone, bytea_output and
    lc_numeric, with columns of date, timestamptz, interval, float8, numeric,
    bytea, float8[] and a composite type.

Documented behaviour a native table does not share is emulated or avoided:
  * an INSERT of an existing key (zset: key and member) overwrites (README:
    "Write semantics"; Elasticsearch `index` actions): the native twin's
    INSERT gets ON CONFLICT DO UPDATE; no INSERT names one key twice;
  * a key-moving UPDATE moves to a fresh key, none on Elasticsearch;
  * ON CONFLICT on an outbox table is an ERROR: not generated;
  * write_mode 'immediate' is not undone by ROLLBACK (TO SAVEPOINT): none;
  * a hash row of only NULLs does not exist (column a is never NULL); a
    string table's value is never NULL;
  * the sign of a float zero does not survive a JSON document or a zset
    score (README: "Values in the stores"): no -0 there; Elasticsearch holds
    finite dates and numbers in mapped fields: only int and keyword fields are
    mapped, and clauses on Elasticsearch tables use those and _id;
  * BEFORE ROW triggers fire once per join match (README: Limitations): no
    joins and no two modifying nodes on one table with triggers;
  * on tables with triggers every INSERT writes new keys and the twin gets
    no ON CONFLICT DO UPDATE (which fires UPDATE triggers on a native table);
  * Elasticsearch writes a document's numbers with a fraction as doubles
    again when an UPDATE (a script) rewrites it (elastic/elasticsearch#40202;
    the stand-in does too, README "Search" limits): numeric values and jsonb
    numbers there are ones a float8 spells the same.

Found: an Elasticsearch UPDATE of a jsonb column to an object merged it into
the old object (test elastic_update_object).

Environment: DML_LAYOUT_SEED (default 20261203), DML_LAYOUT_ROUNDS (rounds
per table, default 4; 25 or more for a long hunt), DML_LAYOUT_TABLES (a comma list of
the f_* tables), DML_DIFF_VERBOSE=1 prints every statement.
"""

import os
import random

import es_helper
import pgtest
import pgwire
import test_dml_differential as dd
from test_dml_differential import Runner, x

SEED = int(os.environ.get("DML_LAYOUT_SEED", "20261203"))
ROUNDS = int(os.environ.get("DML_LAYOUT_ROUNDS", "4"))
TAG = "dmllay_%d" % os.getpid()
dd.SEED = SEED

# the key literals per key type
KEYS = {
    "text": ["'k%02d'" % i for i in range(10)],
    "timestamptz": ["'2024-03-%02d 10:00:00.5+00'::timestamptz" % (i + 1) for i in range(10)],
    "date": ["'2024-02-%02d'::date" % (i + 20) for i in range(10)],
    "int8": [str(i * 7 - 20) for i in range(10)],
}

# value literals per column type (None: NULL)
VALUES = {
    "int4": ["0", "7", "-3", "13", "15", "42", "8"],
    "text": ["'x'", "'it''s'", "''", "'é ü'", "'z x'", None],
    "float8": ["0.1::float8", "1e300::float8", "'-2.5'::float8", "(1::float8 / 3)",
               "'NaN'::float8", "'-Infinity'::float8", "'-0'::float8", "5e-324::float8",
               None],
    "numeric": ["1.10", "'-0.000'::numeric", "12345678901234567890.123456789",
                "'NaN'::numeric", "'Infinity'::numeric", "0.1", None],
    "date": ["'2024-02-29'::date", "'1999-12-31'::date", "'infinity'::date",
             "'0044-03-15 BC'::date", None],
    "timestamptz": ["'2024-03-10 07:30:00+00'::timestamptz",
                    "'2024-07-01 23:59:59.123456-07'::timestamptz",
                    "'infinity'::timestamptz", "'2024-11-03 01:30'::timestamptz",
                    "'1880-06-01 12:00:00+00'::timestamptz",
                    "'0100-01-01 00:00:00+00 BC'::timestamptz", None],
    "interval": ["'1 year 2 mons -3 days 04:05:06'::interval", "'-1 day +02:00'::interval",
                 "'P1Y2M3DT4H5M6.5S'::interval", "'0'::interval",
                 "'-1780000 years'::interval", "'1.5 seconds'::interval",
                 "'@ 1 min ago'::interval", None],
    "bytea": ["'\\x00ff41'::bytea", "''::bytea", "'abc'::bytea", "'\\x5c78'::bytea", None],
    "float8[]": ["ARRAY[0.1, NULL, 1e-300]::float8[]", "'{}'::float8[]",
                 "'{NaN,-Infinity,-0}'::float8[]", None],
    "jsonb": ["'{\"a\": 1.0, \"b\": [1, \"x\", null]}'::jsonb", "'\"str\"'::jsonb",
              "'[1, 2.50, 1e3]'::jsonb", "'{}'::jsonb", "'-0'::jsonb", None],
    "timestamp": ["'2024-03-10 07:30:00'::timestamp", "'infinity'::timestamp",
                  "'1999-12-31 23:59:59.999999'::timestamp", "'0044-03-15 12:00 BC'::timestamp",
                  None],
    "real[]": ["ARRAY[1, 2, 3]::real[]", "ARRAY[0.5, -1, 7]::real[]", "ARRAY[0, 0, 1]::real[]"],
    "cv": ["ROW('2024-02-29', '2024-03-10 07:30:00+00', '1 mon -2 days', 0.1, "
           "'\\x00')::cv", "ROW(NULL, 'infinity', '-1 day +02:00', 'NaN', '')::cv",
           "ROW('0044-03-15 BC', '1880-06-01 12:00:00+00', 'P1Y', 1e300, 'a\"b')::cv"],
}

WIDE = [("a", "int4"), ("t", "text"), ("f", "float8"), ("nu", "numeric"), ("d", "date"),
        ("ts", "timestamptz"), ("iv", "interval"), ("b", "bytea"), ("ar", "float8[]"),
        ("j", "jsonb"), ("tsn", "timestamp")]

# a vector table: metadata fields and the embedding
VEC = [("a", "int4"), ("t", "text"), ("f", "float8"), ("nu", "numeric"), ("d", "date"),
       ("ts", "timestamptz"), ("iv", "interval"), ("embedding", "real[]")]

SETTINGS = [
    ("DateStyle", ["'ISO, MDY'", "'SQL, DMY'", "'German'", "'Postgres, MDY'",
                   "'ISO, YMD'"]),
    ("IntervalStyle", ["postgres", "sql_standard", "iso_8601", "postgres_verbose"]),
    ("extra_float_digits", ["-15", "0", "1", "3"]),
    ("TimeZone", ["UTC", "'America/New_York'", "'Asia/Kolkata'", "'<+0530>-05:30'",
                  "'Europe/Paris'"]),
    ("bytea_output", ["hex", "escape"]),
    ("lc_numeric", ["'C'", "'C.utf8'", "'POSIX'"]),
]

# update assignments per column
UPDATES = {
    "a": ["a = a + 1", "a = a * 2", "a = %(int4)s"],
    "t": ["t = coalesce(t, '') || 'u'", "t = %(text)s"],
    "f": ["f = f * 3", "f = %(float8)s"],
    "nu": ["nu = nu + 0.1", "nu = %(numeric)s"],
    "d": ["d = d + 1", "d = %(date)s"],
    "ts": ["ts = ts + interval '1 day 02:00'", "ts = %(timestamptz)s"],
    "iv": ["iv = iv * 2", "iv = %(interval)s", "iv = -iv"],
    "b": ["b = b || '\\x01'::bytea", "b = %(bytea)s"],
    "ar": ["ar = ar || 2.5::float8", "ar = %(float8[])s"],
    "j": ["j = j || '{\"u\": 1}'", "j = %(jsonb)s"],
    "tsn": ["tsn = tsn + interval '1 hour'", "tsn = %(timestamp)s"],
    "v": ["v = %(cv)s", "v.iv = (v).iv * 2", "v.d = (v).d + 1"],
    "score": ["score = score + 1", "score = %(score)s"],
    "embedding": ["embedding = %(real[])s"],
}

SCORES = ["0.1::float8", "1e300::float8", "'-2.5'::float8", "(1::float8 / 3)",
          "'-Infinity'::float8", "'Infinity'::float8", "5e-324::float8"]
MEMBERS = ["'m1'", "'m2'", "'m 3'", "'it''s'", "'é'"]


class Table:
    def __init__(self, ftab, ntab, store, layout, mode, trig=False, ttype=None,
                 keytype="text"):
        self.f, self.n, self.store, self.layout, self.mode = ftab, ntab, store, layout, mode
        self.ttype = ttype or store
        self.trig = trig
        self.keytype = keytype
        self.k = "_id" if store == "es" else "k"
        kc = (self.k, keytype)
        if layout == "wide":
            self.cols = [kc] + WIDE
        elif layout == "vec":
            self.cols = [kc] + VEC
        elif layout == "string":
            self.cols = [kc, ("v", "cv")]
        else:
            self.cols = [kc, ("member", "text"), ("score", "float8")]
        self.ident = [self.k, "member"] if layout == "zset" else [self.k]

    @property
    def imm(self):
        return self.mode == "immediate"

    @property
    def names(self):
        return [c for c, _ in self.cols]


class Gen(dd.Gen):
    """The statements of one table (its own row, clause and key forms)."""

    def newkey(self):
        """A key literal no row has had."""
        self.fresh += 1
        return {"text": "'n%03d'" % self.fresh,
                "timestamptz": "'2031-01-01 00:00:00+00'::timestamptz + interval '%d s'"
                % self.fresh,
                "date": "'3031-01-01'::date + %d" % self.fresh,
                "int8": str(100000 + self.fresh)}[self.t.keytype]

    def moved(self):
        """An expression of the key that no row has had."""
        k = self.t.k
        if self.t.keytype == "text":
            return "%s || '_%s'" % (k, self.newkey().strip("'"))
        n = self.r.randint(1, 10 ** 9)
        return {"timestamptz": "%s + interval '%d microseconds'" % (k, n),
                "date": "%s + %d" % (k, n % 1000000),
                "int8": "%s + %d" % (k, n * 1000)}[self.t.keytype]

    def keys(self):
        return KEYS[self.t.keytype]

    def value(self, typ, nonnull=False):
        t = self.t
        if typ == "score":
            return self.r.choice(SCORES)
        vals = VALUES[typ]
        if nonnull or t.layout == "string":
            vals = [v for v in vals if v is not None]
        if t.ttype in ("es", "json", "vector"):
            # README "Values in the stores": a JSON number has no -0
            vals = [v for v in vals if v is None or "-0'" not in v and "-0}" not in v]
        if t.store in ("es", "vector") and typ == "numeric":
            # Elasticsearch rewrites an updated document's numbers as doubles
            # (README "Search" limits), Chroma metadata numbers are float64
            vals = ["0.1", "2.5", "'NaN'::numeric", "'Infinity'::numeric", None]
        if t.store == "es" and typ == "jsonb":
            vals = [v for v in vals if v is None or ".0" not in v and "2.50" not in v]
        v = self.r.choice(vals)
        return "NULL" if v is None else v

    def row(self, key, member=None):
        t = self.t
        vals = [key]
        for c, typ in t.cols[1:]:
            if c == "member":
                vals.append(member or self.r.choice(MEMBERS))
            elif c == "score":
                vals.append(self.value("score"))
            else:
                vals.append(self.value(typ, nonnull=(c == "a")))
        return "(%s)" % ", ".join(vals)

    def rows(self):
        """Rows of one INSERT, no identity twice."""
        t, r = self.t, self.r
        keys = r.sample(self.keys()[:6] + [self.newkey()], r.randint(1, 3))
        if t.trig:
            # a native upsert fires UPDATE triggers: only new keys
            keys = [self.newkey() for _ in keys]
        if t.layout == "zset":
            self.idents = [(k, m) for k in keys for m in r.sample(MEMBERS, r.randint(1, 2))]
        else:
            self.idents = [(k,) for k in keys]
        return [self.row(*i) for i in self.idents]

    def pred(self, depth=0):
        r, t, k = self.r, self.t, self.t.k
        c = r.random()
        if depth == 0 and c < 0.15:
            return "(%s %s %s)" % (self.pred(1), r.choice(["AND", "OR"]), self.pred(1))
        common = [
            lambda: "%s = %s" % (k, r.choice(self.keys())),
            lambda: "%s IN (%s)" % (k, ", ".join(r.sample(self.keys(), 3))),
            lambda: "%s > %s" % (k, r.choice(self.keys())),
        ]
        if t.keytype == "text":
            common.append(lambda: "%s LIKE 'n%%'" % k)
        if t.layout in ("wide", "vec"):
            common += [lambda: "a > %d" % r.randint(0, 15), lambda: "a = %d" % r.choice([7, 13, 8]),
                       lambda: "t IS NULL", lambda: "t = %s" % r.choice(["'x'", "''", "'é ü'"]),
                       lambda: "a %% 2 = %d" % r.randint(0, 1)]
            if t.store == "vector":
                common += [lambda: "d < '2000-01-01'", lambda: "f < 1", lambda: "nu > 1",
                           lambda: "ts > '2024-01-01 00:00+00'"]
            elif t.store != "es":
                common += [lambda: "d < '2000-01-01'", lambda: "ts > '2024-01-01 00:00+00'",
                           lambda: "iv > '1 day'", lambda: "f < 1", lambda: "nu > 1",
                           lambda: "b = '\\x00ff41'", lambda: "cardinality(ar) > 1",
                           lambda: "j ? 'a'", lambda: "tsn < '2000-01-01'"]
        elif t.layout == "zset":
            common += [lambda: "member = %s" % r.choice(MEMBERS),
                       lambda: "score > %s" % r.choice(["0.2::float8", "'-3'::float8", "1"]),
                       lambda: "score <= 0.1::float8"]
        else:
            common += [lambda: "(v).iv > '0'", lambda: "(v).d IS NULL",
                       lambda: "(v).f < 1"]
        return r.choice(common)()

    def ret(self):
        return self.r.choice(["", "", " RETURNING *", " RETURNING %s" % self.t.k])

    def upsert(self):
        t = self.t
        if t.trig:
            return ""
        sets = ", ".join("%s = EXCLUDED.%s" % (c, c) for c in t.names if c not in t.ident)
        return " ON CONFLICT (%s) DO UPDATE SET %s" % (", ".join(t.ident), sets)

    def sets(self):
        t, r = self.t, self.r
        cols = [c for c in t.names if c not in t.ident]
        out = []
        for c in r.sample(cols, r.randint(1, min(3, len(cols)))):
            s = r.choice(UPDATES[c])
            if c == "a" and "%(" in s:
                s = "a = %s" % self.value("int4", nonnull=True)
            elif "%(" in s:
                s = s % {"int4": 0, "text": self.value("text"), "float8": self.value("float8"),
                         "numeric": self.value("numeric"), "date": self.value("date"),
                         "timestamptz": self.value("timestamptz"),
                         "interval": self.value("interval"), "bytea": self.value("bytea"),
                         "float8[]": self.value("float8[]"), "cv": self.value("cv"),
                         "jsonb": self.value("jsonb"), "timestamp": self.value("timestamp"),
                         "real[]": self.value("real[]"),
                         "score": self.value("score")}
            out.append(s)
        return ", ".join(out)

    def statement(self):
        r, t, k = self.r, self.t, self.t.k
        F, N = t.f, t.n
        cols = ", ".join(t.names)
        kinds = ["ins", "ins", "upd", "upd", "upd", "del", "inssel", "cte", "joinsel"]
        if not t.trig:
            kinds += ["updjoin", "deljoin"]
        if t.mode != "outbox":
            kinds.append("insnothing")
        if t.store != "es":
            kinds.append("move")
        if t.layout == "wide":
            kinds.append("prep")
        kind = r.choice(kinds)
        ret = self.ret()
        if kind == "ins":
            s = "INSERT INTO @T@ (%s) VALUES %s" % (cols, ", ".join(self.rows()))
            return [(x(s, F) + ret, x(s, N) + self.upsert() + ret)]
        if kind == "insnothing":
            rows = self.rows()
            rows += [self.row(*r.choice(self.idents))] if r.random() < 0.5 else []
            s = "INSERT INTO @T@ (%s) VALUES %s ON CONFLICT %s DO NOTHING" % (
                cols, ", ".join(rows), r.choice(["", "(%s)" % ", ".join(t.ident)]))
            return [(x(s, F) + ret, x(s, N) + ret)]
        if kind == "joinsel":
            # the batched join probes the keys of a native table
            s = r.choice([
                "SELECT s.sk, x.%s FROM side_%s s JOIN @T@ x ON x.%s = s.sk" % (
                    t.names[1], t.keytype, k),
                "SELECT s.sk FROM side_%s s WHERE s.sk NOT IN (SELECT %s FROM @T@)" % (
                    t.keytype, k),
                "SELECT s.sk, x.%s FROM side_%s s LEFT JOIN @T@ x ON x.%s = s.sk" % (
                    k, t.keytype, k)])
            return [(x(s, F), x(s, N))]
        if kind == "updjoin":
            col = t.names[1] if t.layout != "string" else "v.f"
            val = "s.v" if t.layout != "string" else "s.v::float8"
            s = "UPDATE @T@ x SET %s = %s FROM side_%s s WHERE x.%s = s.sk%s" % (
                col, val, t.keytype, k, r.choice(["", " AND s.v > 3"]))
            if t.layout == "zset":
                s = s.replace("SET member = s.v", "SET score = s.v")
            ret = r.choice(["", " RETURNING x.%s, s.v" % k])
            return [(x(s, F) + ret, x(s, N) + ret)]
        if kind == "deljoin":
            s = "DELETE FROM @T@ x USING side_%s s WHERE x.%s = s.sk AND s.v %s %d" % (
                t.keytype, k, r.choice(["<", ">", "="]), r.randint(0, 8))
            return [(x(s, F) + ret.replace("RETURNING *", "RETURNING x.*"),
                     x(s, N) + ret.replace("RETURNING *", "RETURNING x.*"))]
        if kind == "inssel":
            sel = ", ".join(self.moved() if c == k else c for c in t.names)
            s = "INSERT INTO @T@ (%s) SELECT %s FROM @T@ WHERE %s" % (cols, sel, self.pred())
            return [(x(s, F) + ret, x(s, N) + self.upsert() + ret)]
        if kind == "upd":
            s = "UPDATE @T@ SET %s WHERE %s" % (self.sets(), self.pred())
            return [(x(s, F) + ret, x(s, N) + ret)]
        if kind == "move":
            s = "UPDATE @T@ SET %s = %s WHERE %s" % (k, self.moved(), self.pred())
            return [(x(s, F) + ret, x(s, N) + ret)]
        if kind == "del":
            s = "DELETE FROM @T@ WHERE %s" % self.pred()
            return [(x(s, F) + ret, x(s, N) + ret)]
        if kind == "cte":
            sel = ", ".join(self.moved() if c == k else c for c in t.names)
            s = ("WITH d AS (DELETE FROM @T@ WHERE %s RETURNING *) "
                 "INSERT INTO @T@ (%s) SELECT %s FROM d RETURNING *" % (self.pred(), cols, sel))
            return [(x(s, F), x(s, N))]
        if kind == "prep":
            p = r.choice([
                ("UPDATE @T@ SET ts = ts + $1, d = $2 WHERE %s = $3 RETURNING *" % k,
                 lambda: "(%s, %s, %s)" % (r.choice(["'1 mon -2 days'::interval", "NULL",
                                                     "'-1 day +02:00'::interval"]),
                                           self.value("date"),
                                           r.choice(self.keys()))),
                ("UPDATE @T@ SET f = $1, b = $2 WHERE a > $3 RETURNING %s, f, b" % k,
                 lambda: "(%s, %s, %d)" % (self.value("float8"), self.value("bytea"),
                                           r.randint(0, 20))),
                ("DELETE FROM @T@ WHERE iv < $1 RETURNING *",
                 lambda: "(%s)" % self.value("interval")),
            ])
            out = [("PREPARE pf AS " + x(p[0], F), "PREPARE pn AS " + x(p[0], N))]
            for _ in range(6):
                a = p[1]()
                out.append(("EXECUTE pf" + a, "EXECUTE pn" + a))
            out.append(("DEALLOCATE pf", "DEALLOCATE pn"))
            return out
        raise AssertionError(kind)


TRIGGERS = """
CREATE TABLE trlog (side text, op text, whn text, lvl text, o text, n text, c bigint);
CREATE SEQUENCE trseq_f; CREATE SEQUENCE trseq_n;
CREATE FUNCTION trg_before() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE j jsonb;
BEGIN
  INSERT INTO trlog VALUES (left(TG_TABLE_NAME, 1), TG_OP, 'B', 'R',
                            CASE WHEN TG_OP <> 'INSERT' THEN OLD::text END,
                            CASE WHEN TG_OP <> 'DELETE' THEN NEW::text END, NULL);
  IF TG_OP = 'DELETE' THEN
    j := to_jsonb(OLD);
    IF j->>'a' = '13' OR j->>'member' = 'm 3' THEN RETURN NULL; END IF;
    RETURN OLD;
  END IF;
  j := to_jsonb(NEW);
  IF j->>'a' = '42' OR j->>'member' = 'é' THEN RETURN NULL; END IF;
  IF (j->>'a')::int % 4 = 0 THEN
    NEW := jsonb_populate_record(NEW, jsonb_build_object(
      't', coalesce(j->>'t', '') || '!', 'f', coalesce((j->>'f')::float8, 0) + 0.5));
  END IF;
  IF TG_OP = 'UPDATE' AND j->>'a' IS DISTINCT FROM to_jsonb(OLD)->>'a' THEN
    -- a column the UPDATE does not assign
    NEW := jsonb_populate_record(NEW, jsonb_build_object(
      'iv', (coalesce((to_jsonb(OLD)->>'iv')::interval, '0') + '1 hour')::text));
  END IF;
  IF TG_NARGS > 0 AND j->>'t' = 'z x' THEN
    -- move the row to a new key
    NEW := jsonb_populate_record(NEW, jsonb_build_object(
      'k', (j->>'k') || '_' || currval('trseq_' || left(TG_TABLE_NAME, 1))));
  END IF;
  IF j ? 'score' AND j->>'member' = 'm2' THEN
    NEW := jsonb_populate_record(NEW, jsonb_build_object('score', (j->>'score')::float8 + 0.25));
  END IF;
  RETURN NEW;
END$$;
CREATE FUNCTION trg_after() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE c bigint;
BEGIN
  IF TG_LEVEL = 'STATEMENT' THEN
    -- the suffix of the keys the row trigger moves in this statement
    PERFORM nextval('trseq_' || left(TG_TABLE_NAME, 1));
    IF TG_WHEN = 'AFTER' THEN
      EXECUTE format('SELECT count(*) FROM %I', TG_TABLE_NAME) INTO c;
    END IF;
    INSERT INTO trlog VALUES (left(TG_TABLE_NAME, 1), TG_OP, left(TG_WHEN, 1), 'S',
                              NULL, NULL, c);
    RETURN NULL;
  END IF;
  INSERT INTO trlog VALUES (left(TG_TABLE_NAME, 1), TG_OP, 'A', 'R',
                            CASE WHEN TG_OP <> 'INSERT' THEN OLD::text END,
                            CASE WHEN TG_OP <> 'DELETE' THEN NEW::text END, NULL);
  RETURN NULL;
END$$;
"""


def add_triggers(run, table, t):
    # a BEFORE ROW trigger that changes the key, where a key can change
    move = t.store == "redis" and t.layout == "wide" and t.keytype == "text"
    run.ok("CREATE TRIGGER b BEFORE INSERT OR UPDATE OR DELETE ON %(t)s FOR EACH ROW "
           "EXECUTE FUNCTION trg_before(%(a)s); "
           "CREATE TRIGGER a AFTER INSERT OR UPDATE OR DELETE ON %(t)s FOR EACH ROW "
           "EXECUTE FUNCTION trg_after(); "
           "CREATE TRIGGER sb BEFORE INSERT OR UPDATE OR DELETE ON %(t)s "
           "FOR EACH STATEMENT EXECUTE FUNCTION trg_after(); "
           "CREATE TRIGGER sa AFTER INSERT OR UPDATE OR DELETE ON %(t)s "
           "FOR EACH STATEMENT EXECUTE FUNCTION trg_after()"
           % {"t": table, "a": "'move'" if move else ""})


def settle(run, t):
    if t.mode == "outbox":
        r = run.raw("SELECT pgpoly.sync_wait(NULL, '60 s')")
        pgtest.check(r == [("SELECT 1", [("t",)])], "sync_wait: %r" % (r,))


def same(run, t):
    cols = ", ".join(t.names)
    run.both("SELECT %s FROM %s" % (cols, t.f), "SELECT %s FROM %s" % (cols, t.n))
    if t.trig:
        run.both("SELECT op, whn, lvl, o, n, c FROM trlog WHERE side = 'f'",
                 "SELECT op, whn, lvl, o, n, c FROM trlog WHERE side = 'n'")


def exercise(run, rnd, t):
    g = Gen(rnd, t)
    run.log = []
    if t.trig:
        run.ok("ALTER TABLE %s DISABLE TRIGGER USER; ALTER TABLE %s DISABLE TRIGGER USER"
               % (t.f, t.n))
    run.ok("RESET ALL; DEALLOCATE ALL; DELETE FROM %s; DELETE FROM %s" % (t.f, t.n))
    settle(run, t)
    cols = ", ".join(t.names)
    init = ", ".join(g.row(k) for k in rnd.sample(g.keys(), 6))
    if t.layout == "zset":
        init = ", ".join(g.row(k, m) for k in rnd.sample(g.keys(), 4)
                         for m in rnd.sample(MEMBERS, 2))
    run.ok("INSERT INTO %s (%s) VALUES %s" % (t.f, cols, init))
    run.ok("INSERT INTO %s (%s) VALUES %s" % (t.n, cols, init))
    settle(run, t)
    if t.trig:
        run.ok("ALTER TABLE %s ENABLE TRIGGER USER; ALTER TABLE %s ENABLE TRIGGER USER"
               % (t.f, t.n))
    same(run, t)
    for rnd_no in range(ROUNDS):
        run.log = ["-- round %d" % rnd_no]
        run.ok("; ".join("SET %s = %s" % (name, rnd.choice(vals)) for name, vals in SETTINGS)
               + "; SET pgpoly.redis_stream_threshold = %s; SET plan_cache_mode = %s"
               % (rnd.choice(["1", "-1", "DEFAULT"]),
                  rnd.choice(["auto", "force_generic_plan", "force_custom_plan"])))
        xact = rnd.random() < 0.7
        if xact:
            run.ok("BEGIN")
        sps = []
        for _ in range(rnd.randint(2, 5)):
            if xact and rnd.random() < 0.3:
                dd.savepoint_step(run, rnd, t, sps, lambda what: same(run, t))
            for fsql, nsql in g.statement():
                run.both(fsql, nsql)
                if not xact:
                    settle(run, t)
                if not fsql.startswith(("PREPARE", "DEALLOCATE")):
                    same(run, t)
        if xact:
            run.ok("ROLLBACK" if (not t.imm and rnd.random() < 0.3) else "COMMIT")
        settle(run, t)
        same(run, t)


def test():
    rnd = random.Random(SEED)
    db = pgtest.create_db()
    c = pgwire.Conn(db)
    run = Runner(c)
    run.ok("CREATE TYPE cv AS (d date, ts timestamptz, iv interval, f float8, b bytea)")
    run.ok(TRIGGERS)
    for kt, keys in KEYS.items():
        run.ok("CREATE TABLE side_%s (sk %s UNIQUE, v int4); INSERT INTO side_%s VALUES %s"
               % (kt, kt, kt, ", ".join("(%s, %d)" % (key, rnd.randint(0, 9))
                                        for key in rnd.sample(keys, 6))))
    tables = []

    def native(t):
        run.ok("CREATE TABLE %s (%s, PRIMARY KEY (%s))"
               % (t.n, ", ".join("%s %s" % ct for ct in t.cols), ", ".join(t.ident)))
        if t.trig:
            add_triggers(run, t.n, t)

    def foreign(t, ddl):
        run.ok(ddl)
        if t.trig:
            add_triggers(run, t.f, t)
        tables.append(t)

    port = os.environ["REDIS_PORT"]
    run.ok("CREATE SERVER dr FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%s')" % port)
    redis = [("hash", "wide", m, False, "text") for m in ("transactional", "immediate", "outbox")]
    redis += [("json", "wide", m, False, "text")
              for m in ("transactional", "immediate", "outbox")]
    redis += [("string", "string", m, False, "text")
              for m in ("transactional", "immediate", "outbox")]
    redis += [("zset", "zset", m, False, "text") for m in ("transactional", "immediate")]
    redis += [("hash", "wide", "transactional", True, "text"),
              ("json", "wide", "outbox", True, "text"),
              ("hash", "wide", "immediate", True, "text"),
              ("zset", "zset", "transactional", True, "text"),
              ("string", "string", "outbox", True, "text")]
    # keys of types whose text form depends on the session's settings
    redis += [("hash", "wide", "transactional", False, "timestamptz"),
              ("hash", "wide", "outbox", True, "timestamptz"),
              ("json", "wide", "immediate", False, "date"),
              ("string", "string", "transactional", True, "date"),
              ("zset", "zset", "immediate", False, "timestamptz"),
              ("hash", "wide", "immediate", False, "int8")]
    for ttype, layout, mode, trig, keytype in redis:
        name = "%s_%s%s%s" % (ttype, mode[0], "g" if trig else "",
                              "" if keytype == "text" else "_" + keytype[:2])
        t = Table("f_" + name, "n_" + name, "redis", layout, mode, trig, ttype, keytype)
        native(t)
        coldefs = ", ".join("%s %s%s" % (c, typ, " OPTIONS (key 'true')" if c == "k" else "")
                            for c, typ in t.cols)
        foreign(t, "CREATE FOREIGN TABLE %s (%s) SERVER dr OPTIONS (table_type '%s', "
                "key_prefix '%s:%s:', write_mode '%s', fetch_size '3', batch_size '2')"
                % (t.f, coldefs, ttype, TAG, name, mode))

    es = es_helper.Standin()
    run.ok("CREATE SERVER des FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%s')" % es.url)
    for mode, trig in (("transactional", False), ("outbox", False), ("immediate", False),
                       ("transactional", True), ("outbox", True)):
        name = "es_%s%s" % (mode[0], "g" if trig else "")
        idx = "%s_%s" % (TAG, name)
        es.request("PUT", "/" + idx, {"mappings": {"dynamic": False, "properties": {
            "a": {"type": "integer"}, "t": {"type": "keyword"}}}})
        t = Table("f_" + name, "n_" + name, "es", "wide", mode, trig)
        native(t)
        foreign(t, "CREATE FOREIGN TABLE %s (%s) SERVER des OPTIONS (index '%s', "
                "refresh 'true', fetch_size '3', batch_size '2', write_mode '%s')"
                % (t.f, ", ".join("%s %s" % ct for ct in t.cols), idx, mode))

    chroma = os.environ.get("CHROMA_URL")
    if chroma:
        run.ok("CREATE SERVER dv FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url '%s')"
               % chroma)
        for mode, trig in (("transactional", False), ("immediate", True),
                           ("transactional", True)):
            name = "vec_%s%s" % (mode[0], "g" if trig else "")
            t = Table("f_" + name, "n_" + name, "vector", "vec", mode, trig)
            t.k = "id"
            t.cols[0] = ("id", "text")
            t.ident = ["id"]
            native(t)
            foreign(t, "CREATE FOREIGN TABLE %s (%s) SERVER dv OPTIONS (collection "
                    "'%s_%s', create_collection 'true', distance 'l2', fetch_size '4', "
                    "batch_size '2', write_mode '%s')"
                    % (t.f, ", ".join("%s %s" % ct for ct in t.cols), TAG, name, mode))
    else:
        print("note: CHROMA_URL not set, vector tables skipped")

    dd.run_tables(run, rnd, tables, os.environ.get("DML_LAYOUT_TABLES"), exercise)
    c.query("RESET ALL")
    for t in tables:
        c.query("DELETE FROM %s" % t.f)
    c.query("SELECT pgpoly.sync_wait(NULL, '60 s')")
    c.close()
    for t in tables:
        if t.store == "vector":
            dd.drop_collection(chroma, "%s_%s" % (TAG, t.f[2:]))
    es.stop()


if __name__ == "__main__":
    pgtest.main(test)
