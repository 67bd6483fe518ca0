"""Feature store: seeded randomized differential test against a reference model.

Each case creates one to three feature views (text, int and uuid keys; the
default history table or an own offline table whose entity column is text,
int, uuid, citext or text under a nondeterministic ICU collation, with or
without the lookup index; online tables with and without `_event_time`;
random ttl: none, 0, seconds, minutes, hours, days, months), writes a random
history straight into the offline tables (several entities, event_time ties,
created_at ties on other event times, NULL features, rows in random
insertion order), and compares pgpoly's answers with a model written in
Python from the contract (/work/shared/API.md section 3 and the README's
"Feature store" sections), not from pgpoly's code:

- get_historical_features: the point-in-time rule (newest event_time <= the
  spine's time and within the ttl, ties to the newest created_at; one row per
  spine row, in spine order; 'view:feature' and 'view:*'; several views in one
  spine; entities in other spellings of the key type, unknown and NULL ones),
  under random TimeZone (daylight-saving zones included), DateStyle,
  IntervalStyle and extra_float_digits, and through a prepared statement
  executed 7 times (generic plans included);
- create_training_set: the same rows, in typed columns;
- get_online_features (source online / offline / expired / missing, input
  order, duplicates, NULLs, the offline write-back) after random
  put_features, ingest_features, materialize (random time windows, its
  returned key count) and deletions of Redis keys; after each materialize and
  at the end of a case, what Redis holds (newer wins).

Event times are whole half-hours from a base time just before the test
started, and ttls whole half-hours, so the few seconds the test runs never
move a value across a ttl boundary (the spine's times also fall a second
either side of a boundary).

Longer runs: FS_DIFF_CASES (default 8) cases, FS_DIFF_SEED (default
20261203); FS_DIFF_VERBOSE=1 prints every statement.
"""

import json
import os
import random
import time
import uuid

import pgtest

SEED = int(os.environ.get("FS_DIFF_SEED", "20261203"))
CASES = int(os.environ.get("FS_DIFF_CASES", "8"))
VERBOSE = os.environ.get("FS_DIFF_VERBOSE") == "1"
HALF = 1800

TZS = ["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe",
       "Asia/Kathmandu", "America/Santiago"]
DATESTYLES = ["ISO, MDY", "SQL, DMY", "German", "Postgres, YMD", "Postgres, DMY"]
INTERVALSTYLES = ["postgres", "sql_standard", "iso_8601", "postgres_verbose"]
FLOATDIGITS = [-3, 0, 1, 3]

# ttl literal -> seconds (a month is 30 days, a day 24 hours)
TTLS = [(None, None), ("0", None), ("5400 seconds", 5400), ("90 minutes", 5400),
        ("3 hours", 3 * 3600), ("1 day", 86400), ("2 days", 2 * 86400),
        ("1 mon", 30 * 86400), ("36:00:00", 36 * 3600)]

FEATURES = [("f_i", "int"), ("f_f", "float8"), ("f_t", "text")]

TEXT_POOL = ["a", "A", "b", "\u00fc", "u\u0308", "x y", "007", "7"]
INT_POOL = [1, 7, 42, -3]
UUID_POOL = [str(uuid.UUID(int=random.Random(i).getrandbits(128))) for i in range(4)]

# kind: (key type, offline entity column type or None for the default history)
KINDS = [("text", None), ("int", None), ("uuid", "uuid"), ("text", "citext"),
         ("text", "ci"), ("int", "int"), ("text", "text")]

stats = {"cases": 0, "pit_rows": 0, "pit_calls": 0, "online_rows": 0,
         "ops": 0, "redis_checks": 0}


def sql(db, text, settings=None):
    if settings:
        text = "".join("SET %s = '%s';\n" % kv for kv in settings) + text
    text = "\\set QUIET on\n" + text
    if VERBOSE:
        print(text, flush=True)
    r = pgtest.psql(text, db=db, timeout=120)
    if r.rc != 0:
        raise RuntimeError("SQL failed: %s\n%s" % (text[-2000:], r.err))
    return r.out


def lit(s):
    return "'" + s.replace("'", "''") + "'"


def ts(epoch):
    """An ISO timestamptz literal of an epoch (whole seconds), UTC."""
    return lit(time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(epoch)))


class View:
    def __init__(self, rnd, case, j, base):
        self.name = "c%d_v%d" % (case, j)
        self.ent = "ent_%d" % j
        self.key, self.offtype = rnd.choice(KINDS)
        self.feats = [f for f in FEATURES if rnd.random() < 0.6] or [rnd.choice(FEATURES)]
        self.ttl_lit, self.ttl = rnd.choice(TTLS)
        self.declares_et = rnd.random() < 0.5
        self.index = rnd.random() < 0.7
        self.prefix = "fsd:%d:%s:" % (SEED, self.name)
        self.rows = []   # (canon, et, ca, {feature: value})
        self.redis = {}  # canon -> (et, {feature: value})
        self.seq = 0
        self.base = base
        self.range = rnd.choice([8, 100, 2000])  # half-hours back

    # entities -----------------------------------------------------------
    def pool(self):
        if self.key == "int":
            return [str(i) for i in INT_POOL]
        if self.key == "uuid":
            return list(UUID_POOL)
        return list(TEXT_POOL)

    def canon(self, s):
        """The canonical text of a spelling, or None (no such key)."""
        if s is None:
            return None
        if self.key == "int":
            try:
                v = int(s.strip())
            except ValueError:
                return None
            return str(v) if -2**31 <= v < 2**31 else None
        if self.key == "uuid":
            try:
                return str(uuid.UUID(s.strip()))
            except ValueError:
                return None
        return s

    def spell(self, rnd, canon):
        """A spelling of a canonical entity the key type reads as it."""
        if self.key == "int" and rnd.random() < 0.4:
            v = int(canon)
            return rnd.choice(["%03d" % v if v >= 0 else str(v), " %d" % v, "+%d" % v
                               if v >= 0 else str(v)])
        if self.key == "uuid" and rnd.random() < 0.4:
            return rnd.choice([canon.upper(), "{%s}" % canon, canon.replace("-", "")])
        return canon

    def unknown(self):
        return {"int": "99", "uuid": "00000000-0000-0000-0000-0000000000ff"}.get(self.key, "zz")

    # DDL ------------------------------------------------------------------
    def ddl(self):
        cols = ", ".join("%s %s" % f for f in self.feats)
        out = ["CREATE FOREIGN TABLE %s_on (%s %s OPTIONS (key 'true'), %s%s) SERVER fsd "
               "OPTIONS (key_prefix %s);" % (self.name, self.ent, self.key, cols,
                                            ", _event_time timestamptz" if self.declares_et
                                            else "", lit(self.prefix))]
        ttl = "NULL" if self.ttl_lit is None else "%s::interval" % lit(self.ttl_lit)
        if self.offtype is None:
            self.offline = "pgpoly.%s_history" % self.name
            self.entcol = "entity"
            out.append("SELECT pgpoly.create_feature_view(%s, %s, '%s_on', ttl => %s);"
                       % (lit(self.name), lit(self.ent), self.name, ttl))
        else:
            self.offline = "%s_off" % self.name
            self.entcol = self.ent if self.offtype in ("int", "text") else "entity"
            typ = "text COLLATE fsd_ci" if self.offtype == "ci" else self.offtype
            out.append("CREATE TABLE %s (%s %s, event_time timestamptz, created_at timestamptz "
                       "DEFAULT clock_timestamp(), %s);" % (self.offline, self.entcol, typ, cols))
            if self.index:
                out.append("CREATE INDEX ON %s (%s, event_time DESC, created_at DESC);"
                           % (self.offline, self.entcol))
            out.append("SELECT pgpoly.create_feature_view(%s, %s, '%s_on', '%s', ttl => %s);"
                       % (lit(self.name), lit(self.ent), self.name, self.offline, ttl))
        self.serving = ("%s_on" % self.name) if self.declares_et else \
            "pgpoly.%s_serving" % self.name
        return "\n".join(out)

    def value(self, rnd, f):
        if rnd.random() < 0.2:
            return None
        if f[1] == "int":
            return rnd.randint(-5, 50)
        if f[1] == "float8":
            return rnd.randint(-40, 40) / 4
        return rnd.choice(["v%d" % rnd.randint(0, 9), "\u00e4\"q'", "", "null"])

    def sqlval(self, f, v):
        if v is None:
            return "NULL::%s" % f[1]
        if f[1] == "text":
            return lit(v)
        return "%s::%s" % (v, f[1])

    def gen_history(self, rnd):
        rows = []
        for c in self.pool():
            if rnd.random() < 0.2:
                continue
            ets = []
            used = set()
            for _ in range(rnd.randint(1, 6)):
                if ets and rnd.random() < 0.35:
                    et = rnd.choice(ets)
                else:
                    et = self.base + rnd.randint(-self.range, 3) * HALF
                ets.append(et)
                ca = self.base - 864000 + rnd.randint(0, 6)  # created_at ties across ets
                while (et, ca) in used:
                    ca += 1
                used.add((et, ca))
                rows.append((c, et, ca, {f[0]: self.value(rnd, f) for f in self.feats}))
        rnd.shuffle(rows)
        self.rows = list(rows)
        if not rows:
            return ""
        vals = ",\n".join("(%s, %s, %s, %s)" % (
            lit(c), ts(et), ts(ca), ", ".join(self.sqlval(f, fv[f[0]]) for f in self.feats))
            for c, et, ca, fv in rows)
        return "INSERT INTO %s (%s, event_time, created_at, %s) VALUES %s;" % (
            self.offline, self.entcol, ", ".join(f[0] for f in self.feats), vals)

    # model ----------------------------------------------------------------
    def newest(self, canon, lo=None, hi=None):
        best = None
        for c, et, ca, fv in self.rows:
            if c != canon or (hi is not None and et > hi) or (lo is not None and et < lo):
                continue
            if best is None or (et, ca) > (best[1], best[2]):
                best = (c, et, ca, fv)
        return best

    def pit(self, canon, t):
        if canon is None:
            return None
        return self.newest(canon, None if self.ttl is None else t - self.ttl, t)

    def fresh(self, et, now):
        return self.ttl is None or et >= now - self.ttl

    def add_row(self, canon, et, fv):
        self.seq += 1
        self.rows.append((canon, et, 10**12 + self.seq, fv))

    def write_online(self, canon, et, fv):
        """Newer wins; on equal times the later write wins."""
        cur = self.redis.get(canon)
        if cur is None or et >= cur[0]:
            self.redis[canon] = (et, dict(fv))
            return True
        return False

    def serve(self, canon, now, feats):
        """(features, event_time, source) per the status table."""
        if canon is None:
            return None, None, "missing"
        pick = lambda fv: {f: fv.get(f) for f in feats}  # noqa: E731
        cur = self.redis.get(canon)
        if cur is not None and self.fresh(cur[0], now):
            return pick(cur[1]), cur[0], "online"
        off = self.newest(canon)
        if off is not None and (cur is None or off[1] > cur[0]):
            if self.fresh(off[1], now):
                self.redis[canon] = (off[1], dict(off[3]))
                return pick(off[3]), off[1], "offline"
            return pick(off[3]), off[1], "expired"
        if cur is not None:
            return pick(cur[1]), cur[0], "expired"
        return None, None, "missing"


def settings(rnd):
    return [("TimeZone", rnd.choice(TZS)), ("DateStyle", rnd.choice(DATESTYLES)),
            ("IntervalStyle", rnd.choice(INTERVALSTYLES)),
            ("extra_float_digits", str(rnd.choice(FLOATDIGITS)))]


def same(a, b):
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def norm(d):
    """JSON numbers as floats, so 2 and 2.0 compare equal."""
    if d is None:
        return None
    return {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
            for k, v in d.items()}


VIEWS = []


def fail(what, case, sets, got, want, stmt):
    pgtest.check(False, "seed %d case %d %s mismatch\nsettings: %s\nviews: %s\nstatement: %s\n"
                 "got:  %s\nwant: %s" % (SEED, case, what, sets, "; ".join(
                     "%s key %s offline %s ttl %s index %s _event_time %s" % (
                         v.name, v.key, v.offtype, v.ttl_lit, v.index, v.declares_et)
                     for v in VIEWS), stmt[:3000], got, want))
    raise RuntimeError("stop at the first mismatch")


def pit_case(db, rnd, case, views, base):
    n = rnd.randint(1, 10)
    spine = []
    shared = len({v.ent for v in views}) == 1
    for rn in range(1, n + 1):
        t = base + rnd.randint(-max(v.range for v in views), 4) * HALF + rnd.choice([0, 0, 1, -1])
        # often the time of a history row, or its ttl boundary
        v0 = rnd.choice(views)
        if v0.rows and rnd.random() < 0.5:
            t = rnd.choice(v0.rows)[1]
            if v0.ttl and rnd.random() < 0.5:
                t += v0.ttl + rnd.choice([0, 1, -1])
        ents = []
        for v in views:
            if shared and ents:  # one spine column for every view
                ents.append(ents[0])
                continue
            r = rnd.random()
            if r < 0.08:
                ents.append(None)
            elif r < 0.16:
                ents.append(v.unknown())
            else:
                ents.append(v.spell(rnd, rnd.choice(v.pool())))
        spine.append((rn, t, ents))
    cols = ", ".join(v.ent for v in (views[:1] if shared else views))
    # the spine's entity columns: text, citext, text under the
    # nondeterministic collation, or the key's own type
    ctypes = []
    for v in views[:1] if shared else views:
        c = rnd.choice(["text", "text", "citext", "text COLLATE fsd_ci"] +
                       ([] if shared and len(views) > 1 else [v.key]))
        ctypes.append(c)
        if c == v.key and c != "text":
            for _, _, ents in spine:
                i = views.index(v)
                if ents[i] is not None:
                    ents[i] = v.canon(ents[i]) or ents[i]
                    if v.canon(ents[i]) is None:
                        ents[i] = None
    vals = ",\n".join("(%d, %s, %s::timestamptz)" % (
        rn, ", ".join("NULL::%s" % c if e is None else "%s::%s" % (lit(e), c)
                      for e, c in zip(ents[:1] if shared else ents, ctypes)), ts(t))
        for rn, t, ents in spine)
    spine_sql = "SELECT * FROM (VALUES %s) s(rn, %s, event_time)" % (vals, cols)
    sel = []
    for v in views:
        if rnd.random() < 0.5:
            sel.append((v, "*", [f[0] for f in v.feats]))
        else:
            fs = [f[0] for f in v.feats if rnd.random() < 0.7] or [v.feats[0][0]]
            for f in fs:
                sel.append((v, f, [f]))
    rnd.shuffle(sel)
    feats_arr = "ARRAY[%s]" % ", ".join(lit("%s:%s" % (v.name, f)) for v, f, _ in sel)
    want = []
    for rn, t, ents in spine:
        out = {}
        for v, _, fs in sel:
            row = v.pit(v.canon(ents[views.index(v)]), t)
            for f in fs:
                out["%s__%s" % (v.name, f)] = None if row is None else row[3][f]
        want.append((rn, norm(out)))
    stmt = "SELECT row_no, features FROM pgpoly.get_historical_features(%s, %s);" % (
        lit(spine_sql), feats_arr)
    sets = settings(rnd)
    check_pit(sql(db, stmt, sets), want, case, sets, stmt, 1)
    # a prepared statement, 7 executions
    sets = settings(rnd)
    prep = ("PREPARE h%d(text, text[]) AS SELECT row_no, features FROM "
            "pgpoly.get_historical_features($1, $2);\n" % case +
            "\\echo ---\nEXECUTE h%d(%s, %s);\n" % (case, lit(spine_sql), feats_arr) * 7)
    outs = sql(db, prep, sets).split("---\n")[1:]
    for o in outs:
        check_pit(o, want, case, sets, prep, 1)
    # create_training_set: the same rows, typed
    name = "ts_c%d" % case
    out = sql(db, "SELECT pgpoly.create_training_set(%s, %s, %s);\n"
                  "SELECT to_jsonb(t) FROM %s t ORDER BY rn;" % (lit(name), lit(spine_sql),
                                                                 feats_arr, name))
    lines = out.splitlines()
    if lines[0] != str(n):
        fail("create_training_set count", case, None, lines[0], n, spine_sql)
    got = []
    for line in lines[1:]:
        d = json.loads(line)
        got.append((d["rn"], norm({k: d[k] for k in d if "__" in k})))
    if not same(got, want):
        fail("create_training_set", case, None, got, want, spine_sql)
    stats["pit_rows"] += n * 9
    stats["pit_calls"] += 9


def check_pit(out, want, case, sets, stmt, _):
    got = []
    for line in out.splitlines():
        rn, _, f = line.partition("|")
        got.append((int(rn), norm(json.loads(f))))
    if not same(got, want):
        fail("get_historical_features", case, sets, got, want, stmt)


def redis_state(db, v):
    out = sql(db, "SELECT to_jsonb(t) FROM %s t;" % v.serving)
    got = {}
    for line in out.splitlines():
        d = json.loads(line)
        et = d.pop("_event_time")
        key = d.pop(v.ent)
        got[str(key)] = (et, norm(d))
    return got


def check_redis(db, v, case):
    got = redis_state(db, v)
    epochs = sql(db, "SELECT %s::text, extract(epoch from _event_time)::bigint FROM %s;"
                 % (v.ent, v.serving))
    ets = dict(line.split("|") for line in epochs.splitlines())
    got = {k: (int(ets[k]), fv) for k, (_, fv) in got.items()}
    want = {k: (et, norm(fv)) for k, (et, fv) in v.redis.items()}
    stats["redis_checks"] += 1
    if not same(got, want):
        fail("Redis contents of %s" % v.name, case, None, got, want, "")


def online_ops(db, rnd, case, v, base):
    now = base + 0.5
    for _ in range(rnd.randint(4, 10)):
        op = rnd.choice(["put", "put", "ingest", "materialize", "del", "get", "get", "get"])
        stats["ops"] += 1
        if op == "put":
            c = rnd.choice(v.pool())
            et = base + rnd.randint(-v.range, 3) * HALF
            given = [f for f in v.feats if rnd.random() < 0.7]
            fv = {f[0]: v.value(rnd, f) for f in given}
            full = {f[0]: fv.get(f[0]) for f in v.feats}
            sql(db, "SELECT pgpoly.put_features(%s, %s, %s, %s);" % (
                lit(v.name), lit(v.spell(rnd, c)), lit(json.dumps(fv)), ts(et)))
            v.add_row(c, et, full)
            v.write_online(c, et, full)
        elif op == "ingest":
            given = [f for f in v.feats if rnd.random() < 0.7]
            rows, seen = [], set()
            for _ in range(rnd.randint(1, 8)):
                c = rnd.choice(v.pool())
                et = base + rnd.randint(-v.range, 3) * HALF
                if (c, et) in seen:  # created_at could tie within one statement
                    continue
                seen.add((c, et))
                rows.append((c, v.spell(rnd, c), et, {f[0]: v.value(rnd, f) for f in given}))
            src = "SELECT * FROM (VALUES %s) s(%s)" % (",\n".join(
                "(%s::text, %s::timestamptz%s)" % (lit(sp), ts(et), "".join(
                    ", " + v.sqlval(f, fv[f[0]]) for f in given))
                for _, sp, et, fv in rows), ", ".join([v.ent, "event_time"] + [
                    f[0] for f in given]))
            got = sql(db, "SELECT pgpoly.ingest_features(%s, %s);" % (lit(v.name), lit(src)))
            if got.strip() != str(len(rows)):
                fail("ingest_features count", case, None, got, len(rows), src)
            newest = {}
            for c, _, et, fv in rows:
                full = {f[0]: fv.get(f[0]) for f in v.feats}
                v.add_row(c, et, full)
                if c not in newest or et >= newest[c][0]:
                    newest[c] = (et, full)
            for c, (et, full) in newest.items():
                v.write_online(c, et, full)
        elif op == "materialize":
            lo = rnd.choice([None, base + rnd.randint(-v.range, 0) * HALF])
            hi = rnd.choice([None, base + rnd.randint(-v.range // 2, 4) * HALF])
            if lo is not None and hi is not None and lo > hi:
                lo, hi = hi, lo
            args = [lit(v.name)]
            if lo is not None:
                args.append("start_time => %s" % ts(lo))
            if hi is not None:
                args.append("end_time => %s" % ts(hi))
            stmt = "SELECT pgpoly.materialize(%s);" % ", ".join(args)
            got = sql(db, stmt, settings(rnd)).strip()
            n = 0
            for c in sorted({r[0] for r in v.rows}):
                row = v.newest(c, lo, now if hi is None else hi)
                if row is None:
                    continue
                cur = v.redis.get(c)
                if cur is None or cur[0] <= row[1]:
                    v.redis[c] = (row[1], dict(row[3]))
                    n += 1
            if got != str(n):
                fail("materialize count", case, None, got, n, stmt)
            check_redis(db, v, case)
        elif op == "del":
            c = rnd.choice(v.pool())
            pgtest.redis_cli(os.environ["REDIS_PORT"], "DEL", v.prefix + c)
            v.redis.pop(c, None)
        else:
            ents = []
            for _ in range(rnd.randint(1, 7)):
                r = rnd.random()
                if r < 0.06:
                    ents.append(None)
                elif r < 0.12:
                    ents.append(v.unknown())
                else:
                    ents.append(v.spell(rnd, rnd.choice(v.pool())))
            if rnd.random() < 0.3 and ents:
                ents.append(rnd.choice(ents))
            feats = [f[0] for f in v.feats]
            farg = ""
            if rnd.random() < 0.4:
                feats = [f for f in feats if rnd.random() < 0.6] or feats[:1]
                farg = ", ARRAY[%s]::text[]" % ", ".join(lit(f) for f in feats)
            arr = "ARRAY[%s]::text[]" % ", ".join("NULL" if e is None else lit(e) for e in ents)
            q = ("SELECT entity, features, extract(epoch from event_time)::bigint, source "
                 "FROM pgpoly.get_online_features(%s, %s%s)" % (lit(v.name), arr, farg))
            sets = settings(rnd)
            reps = 1
            if rnd.random() < 0.3:
                reps = 7
                stmt = ("PREPARE o%d_%d(text, text[]) AS %s;\n" % (case, stats["ops"], q.replace(
                    lit(v.name), "$1", 1).replace(arr, "$2", 1)) +
                    "\\echo ---\nEXECUTE o%d_%d(%s, %s);\n" % (case, stats["ops"], lit(v.name), arr)
                    * reps)
                outs = sql(db, stmt, sets).split("---\n")[1:]
            else:
                stmt = q + ";"
                outs = [sql(db, "\\echo ---\n" + stmt, sets).split("---\n")[1]]
            for out in outs:
                # one Redis round for the whole call: duplicates see the same
                # state; the write-backs land after it
                snapshot = dict(v.redis)
                want, back = [], {}
                for e in ents:
                    v.redis = dict(snapshot)
                    fv, et, src = v.serve(v.canon(e), now, feats)
                    want.append([e, norm(fv), et, src])
                    if src == "offline":
                        back[v.canon(e)] = v.redis[v.canon(e)]
                v.redis = snapshot
                v.redis.update(back)
                got = []
                for line in out.splitlines():
                    e, f, et, src = line.split("|")
                    got.append([e, norm(json.loads(f)) if f else None,
                                int(et) if et else None, src])
                # NULL entities come back as '' in psql's unaligned output
                want = [[("" if w[0] is None else w[0])] + w[1:] for w in want]
                stats["online_rows"] += len(got)
                if not same(got, want):
                    fail("get_online_features", case, sets, got, want, stmt)
    check_redis(db, v, case)


def test():
    rnd = random.Random(SEED)
    db = pgtest.create_db("pgpoly_fsdiff")
    port = os.environ["REDIS_PORT"]
    sql(db, """
CREATE EXTENSION citext;
CREATE COLLATION fsd_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE SERVER fsd FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%s');
CREATE USER MAPPING FOR CURRENT_USER SERVER fsd;
""" % port)
    base = int(float(sql(db, "SELECT extract(epoch from now())").strip())) - 1
    start = time.monotonic()
    try:
        for case in range(CASES):
            views = [View(rnd, case, j, base) for j in range(rnd.randint(1, 3))]
            VIEWS[:] = views
            # the views share one entity column (if their keys are of one
            # type: a spelling another key type rejects is an error)
            if rnd.random() < 0.4 and len({v.key for v in views}) == 1:
                for v in views:
                    v.ent = "ent_s"
            sql(db, "\n".join(v.ddl() for v in views))
            sql(db, "\n".join(v.gen_history(rnd) for v in views))
            pit_case(db, rnd, case, views, base)
            for v in views:
                online_ops(db, rnd, case, v, base)
            pit_case(db, rnd, case + 1000, views, base)
            stats["cases"] += 1
    finally:
        keys = pgtest.redis_cli(port, "--scan", "--pattern", "fsd:%d:*" % SEED)[1].split()
        for i in range(0, len(keys), 200):
            pgtest.redis_cli(port, "DEL", *keys[i:i + 200])
        print("seed %d: %s in %.1f s" % (SEED, stats, time.monotonic() - start), flush=True)


pgtest.main(test)
