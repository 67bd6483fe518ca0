#!/usr/bin/env python3
"""Adversarial fuzz of pgpoly's SQL surface: every function in schema pgpoly.

The functions are enumerated from pg_proc at run time, so a new function is
covered without editing this file.  Each is called (named notation for
arguments that have names, positional otherwise) with NULL in each argument
position, with every argument NULL, and with edge values per argument type
(empty/blank/1 MB strings, 'name@alias' forms with odd characters, zero,
negative and extreme numbers, NaN/Infinity, empty, NULL-holding and
multi-dimensional arrays, empty/wrongly shaped/deeply nested JSON, unknown
objects) while the other arguments hold plausible values from a fixture
(a run, a model with an alias, a dataset, a feature view over Redis, a
vector table on Chroma, an Elasticsearch table).

Every option of the three wrappers is also set at every level (server,
user mapping, table, column; the wrong ones too) with edge values, and
IMPORT FOREIGN SCHEMA is given an option.

Each call runs in its own transaction, rolled back.  The test fails on:
  * a crashed backend (the connection drops, or the PostgreSQL log shows a
    terminated process),
  * an internal error: SQLSTATE XX*, or a message showing an elog()-style
    can't-happen error, a NULL string printed as "(null)", PostgreSQL's raw
    btree size error where README promises one naming the argument, or a
    helper's own limit leaking out (INTERNAL below),
  * a call that hangs past statement_timeout (57014),
  * a documented behaviour not honoured: a public function's argument
    without a default given NULL is not 22004 (README; DOCUMENTED_NULL
    lists the documented exceptions); an option at the wrong level, or a
    value its type must refuse, is accepted or refused without an HV0xx
    SQLSTATE; an IMPORT FOREIGN SCHEMA option is accepted.

Seeded (PGPOLY_FUZZ_SEED, default 20261203); PGPOLY_FUZZ_FULL=1 runs every
combination instead of the seeded sample that keeps make test fast (its
time: PGPOLY_FUZZ_BUDGET seconds, default 12).
"""

import os
import random
import re
import sys
import time

import pgtest
import pgwire

check = pgtest.check
SEED = int(os.environ.get("PGPOLY_FUZZ_SEED") or 20261203)
FULL = os.environ.get("PGPOLY_FUZZ_FULL") == "1"
BUDGET = float(os.environ.get("PGPOLY_FUZZ_BUDGET") or 12) * pgtest.SCALE
VERBOSE = os.environ.get("PGPOLY_FUZZ_VERBOSE") == "1"

BIG = "repeat('x', 1048576)"
# 6400 bytes that do not compress: over the btree limit of the registry's names
INCOMPRESSIBLE = "(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 200) g)"
DEEP_JSON = "('%s' || '%s')::jsonb" % ("[" * 5000, "]" * 5000)

# Edge values per argument type (SQL expressions).
EDGES = {
    "text": ["''", "' '", "E'\\t\\n'", BIG, "'x@'", "'@x'", "'@'", "'a@b@c'",
             "'churn@'", "'fz_model@no_alias'", "'fz_model@3'", "'fz_model@-1'",
             "'fz_model@99999999999'", "'nosuch@x'", "'x''y\"z'",
             "'%_\\*?[]{}'", "'ünï©ødé 🙂'", "'no_such_thing'", "'a:b'",
             "'fz_view:*'", "'fz_view:'", "':x'", "'select 1'", INCOMPRESSIBLE,
             "'SELECT 1 AS x; DROP TABLE fz_native'", "'('"],
    "name": ["''", "' '", "'no_such_server'", "repeat('n', 200)::name"],
    "integer": ["0", "-1", "2147483647", "-2147483648"],
    "bigint": ["0", "-1", "9223372036854775807", "-9223372036854775808"],
    "double precision": ["'NaN'", "'Infinity'", "'-Infinity'", "0", "-1",
                         "1e308", "-0.0"],
    "real": ["'NaN'", "'Infinity'", "0"],
    "boolean": ["true", "false"],
    "jsonb": ["'[]'", "'{}'", "'null'", "'\"s\"'", "'1'", "'[null]'",
              "'{\"a\": null}'", "'[{}]'", "'[1, 2]'", "'{\"\": \"\"}'",
              DEEP_JSON, "jsonb_build_object('k', " + BIG + ")",
              "'[{\"model\": null}]'", "'{\"x\": {\"y\": [1, {\"z\": []}]}}'"],
    "text[]": ["'{}'", "'{NULL}'", "'{\"\"}'", "'{{a,b},{c,d}}'",
               "'[0:1]={a,b}'", "ARRAY[" + BIG + "]", "'{x@y,@,:}'",
               "'{fz_view:*,fz_view:*}'", "'{fz_view:nosuch}'",
               "array_fill('e'::text, ARRAY[100000])"],
    "real[]": ["'{}'", "'{NULL}'", "'{1,NULL,3}'", "'{{1,2},{3,4}}'",
               "'{NaN,1,2}'", "'{Infinity,1,2}'", "'{1,2}'", "'{0,0,0}'",
               "'[5:7]={1,2,3}'", "array_fill(1::real, ARRAY[100000])",
               "'{3.4e38,3.4e38,3.4e38}'"],
    "double precision[]": ["'{}'", "'{NULL}'", "'{NaN}'", "'{{1,2},{3,4}}'"],
    "bigint[]": ["'{}'", "'{NULL}'", "'{-1}'", "'{{1,2},{3,4}}'"],
    "integer[]": ["'{}'", "'{NULL}'", "'{-1}'", "'{{1,2},{3,4}}'"],
    "jsonb[]": ["'{}'", "'{NULL}'"],
    "timestamp with time zone[]": ["'{}'", "'{NULL}'", "'{infinity}'"],
    "regtype[]": ["'{}'", "'{NULL}'", "'{int4,text}'"],
    "uuid": ["'00000000-0000-0000-0000-000000000000'",
             "'ffffffff-ffff-ffff-ffff-ffffffffffff'"],
    "timestamp with time zone": ["'infinity'", "'-infinity'",
                                 "'4713-01-01 00:00 BC'", "'294276-12-31'",
                                 "'epoch'"],
    "timestamp without time zone": ["'infinity'", "'-infinity'"],
    "date": ["'infinity'", "'-infinity'"],
    "interval": ["'0'", "'-1 day'", "'178000000 years'", "'-178000000 years'",
                 "'1 microsecond'"],
    "regclass": ["'pg_class'", "'fz_native'", "'pgpoly.runs'", "'fz_vec'",
                 "'fz_es'", "'fz_online'", "'fz_list'", "'fz_view_v'",
                 "0", "4000000000"],
    "oid": ["0", "1", "4294967295", "'pg_class'::regclass::oid"],
    "tstzrange": ["'empty'", "'(,)'"],
    "anyelement": ["1", "'x'::text", "ROW(1)::fz_native"],
}

# Plausible values per argument name (then per type), so that an edge in one
# position reaches the code behind the argument checks of the others.
GOOD_BY_NAME = {
    "experiment": "'fz_exp'", "run": "(SELECT run_id FROM fz_ids)",
    "model": "'fz_model'", "alias": "'prod'", "version": "1",
    "dataset": "'fz_ds'", "view": "'fz_view'", "name": "'fz_x'",
    "entity": "'u1'", "entities": "'{u1,u2}'", "features": "NULL",
    "online_table": "'fz_online'", "offline_table": "NULL",
    "spine": "'SELECT ''u1''::text AS user_id, now() AS event_time'",
    "source": "'SELECT ''u1''::text AS user_id, now() AS event_time, 1 AS clicks'",
    "reference": "'fz_native'", "current": "'fz_native'",
    "tbl": "'fz_vec'", "query": "'{1,2,3}'", "k": "3",
    "server": "'fz_redis'", "kind": "'dataset'", "src_kind": "'dataset'",
    "dst_kind": "'run'", "src_name": "'fz_ds'", "dst_name": "'fz_y'",
    "key": "'k'", "value": "'v'", "status": "'FINISHED'",
    "source_uri": "'s3://x'", "request_id": "'req-1'", "label": "'1'",
    "prediction": "'1'", "rows": "'[]'", "direction": "'both'",
    "filter": "NULL", "order_by": "NULL", "bins": "10",
    "target": "'fz_online'", "key_column": "NULL", "method": "'GET'",
    "path": "'/'", "timeout": "'0.1 s'", "uri": "NULL", "store": "'postgres'",
}
GOOD_BY_FUNC = {("create_sync", "source"): "'fz_native'"}
GOOD_BY_TYPE = {
    "text": "'x'", "name": "'x'", "integer": "1", "bigint": "1",
    "double precision": "1.5", "real": "1.5", "boolean": "false",
    "jsonb": "'{}'", "text[]": "'{}'", "real[]": "'{1,2,3}'",
    "uuid": "'00000000-0000-0000-0000-000000000001'",
    "timestamp with time zone": "now()", "interval": "'1 day'",
    "regclass": "'fz_native'", "oid": "'fz_native'::regclass::oid",
}

# Messages that show an elog()-style can't-happen error reached from SQL.
INTERNAL = re.compile(r"cache lookup failed|unrecognized node type|"
                      r"invalid memory alloc|unexpected (?:node|type|tag)|"
                      r"could not find (?:tuple|array type|function)|"
                      r"wrong number of|should not happen|corrupt|"
                      # a NULL string given to printf (glibc prints it)
                      r"\(null\)|"
                      # PostgreSQL's raw btree limit: README promises an error
                      # naming the argument, its length and the limit
                      r"index row (?:size|requires)|"
                      # a helper's own limit leaking out (the option hint)
                      r"levenshtein", re.I)

# Calls that may run past statement_timeout by design (the caller asked for
# a lot of work): function -> argument whose edge values do that.  None:
# create_prediction_partitions refuses a range of more than 120 months.
KNOWN_SLOW = {}

# Raw PostgreSQL errors still let through, by function -> argument.  None:
# create_sync names a sync name too long for its index as the registry does.
KNOWN_RAW = {}

FIXTURE = """
SET client_min_messages = warning;
CREATE SERVER fz_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '{redis_port}');
CREATE USER MAPPING FOR CURRENT_USER SERVER fz_redis;
CREATE FOREIGN TABLE fz_online (user_id text OPTIONS (key 'true'), clicks int, ctr float8)
  SERVER fz_redis OPTIONS (key_prefix 'fz:{pid}:u:');
CREATE FOREIGN TABLE fz_list (key text, idx int, value text)
  SERVER fz_redis OPTIONS (table_type 'list', key_prefix 'fz:{pid}:l:');
CREATE SERVER fz_chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url '{chroma_url}');
CREATE USER MAPPING FOR CURRENT_USER SERVER fz_chroma;
CREATE FOREIGN TABLE fz_vec (id text, embedding real[], document text, metadata jsonb,
  _distance float8) SERVER fz_chroma
  OPTIONS (collection 'fz_{pid}', create_collection 'true', distance 'l2',
           write_mode 'immediate');
CREATE SERVER fz_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '{es_url}');
CREATE USER MAPPING FOR CURRENT_USER SERVER fz_es;
CREATE FOREIGN TABLE fz_es (_id text, title text, n int) SERVER fz_es
  OPTIONS (index 'fz_{pid}');
CREATE TABLE fz_native (user_id text PRIMARY KEY, clicks int, ctr float8);
INSERT INTO fz_native SELECT 'u' || g, g, g / 10.0 FROM generate_series(1, 50) g;
CREATE TABLE fz_ids AS SELECT pgpoly.start_run('fz_exp') AS run_id;
SELECT pgpoly.log_metric(run_id, 'rmse', 0.5) FROM fz_ids;
SELECT pgpoly.register_model_version('fz_model', 's3://m', run_id) FROM fz_ids;
SELECT pgpoly.set_model_alias('fz_model', 'prod', 1);
SELECT pgpoly.register_dataset('fz_ds');
SELECT pgpoly.create_feature_view('fz_view', 'user_id', 'fz_online', ttl => '1 day');
SELECT pgpoly.put_features('fz_view', 'u1', '{{"clicks": 3, "ctr": 0.5}}');
CREATE VIEW fz_view_v AS SELECT * FROM fz_native;
INSERT INTO fz_vec (id, embedding, document) VALUES ('a', '{{1,2,3}}', 'doc a'),
  ('b', '{{3,2,1}}', 'doc b');
"""


class Fuzzer:
    """One wire-protocol session calling functions, recording findings."""

    def __init__(self, db):
        self.db = db
        self.conn = None
        self.calls = 0
        self.findings = []
        self.reconnect()

    def reconnect(self):
        """(Re)open the session with the fuzzing settings."""
        self.conn = pgwire.Conn(self.db, timeout=60 * pgtest.SCALE)
        self.conn.query("SET statement_timeout = '%ds'; SET lock_timeout = '5s'; "
                        "SET client_min_messages = error;"
                        % int(10 * pgtest.SCALE))

    def call(self, sql, label, fname="", arg=""):
        """Run sql in a transaction rolled back; return the error dict or None.

        fname, arg: the function and the argument holding the edge value."""
        self.calls += 1
        try:
            res = self.conn.query("BEGIN; " + sql + "; ROLLBACK")
        except (ConnectionError, OSError) as e:
            self.findings.append("%s: backend died (%s): %s" % (label, e, sql[:300]))
            self.reconnect()
            return {"C": "crash"}
        err = next((r.error for r in res if r.error), None)
        if self.conn.status != "I":
            self.conn.query("ROLLBACK")
        if err is not None:
            state, msg = err.get("C", ""), err.get("M", "")
            if VERBOSE:
                print("  %s %s: %s" % (state, label, msg[:200]))
            # An internal helper (_name) called directly with values its
            # callers never pass may RAISE its own can't-happen XX000 from
            # PL/pgSQL; an elog() from C code is a bug anywhere.
            # Likewise a raw btree size error (their callers name the
            # argument) is no finding for a helper.
            deliberate = fname.startswith("_") and (
                (state == "XX000" and err.get("F") == "pl_exec.c") or
                (state == "54000" and "index row" in msg))
            if arg in KNOWN_RAW.get(fname, ()) and state == "54000":
                deliberate = True
            if (state[:2] == "XX" and not deliberate) or \
                    (INTERNAL.search(msg) and not deliberate):
                self.findings.append("%s: internal error %s %s (%s:%s): %s"
                                     % (label, state, msg[:200], err.get("F"),
                                        err.get("L"), sql[:300]))
            elif state == "57014" and arg not in KNOWN_SLOW.get(fname, ()):
                self.findings.append("%s: hangs past statement_timeout: %s"
                                     % (label, sql[:300]))
        elif VERBOSE:
            print("  ok %s" % label)
        return err


def functions(conn):
    """(name, [(argname, argtype, has_default)], returns_set) of pgpoly's functions."""
    res = conn.query("""
        SELECT p.proname, p.oid,
               coalesce(array_to_string(p.proargnames, ',', ''), ''),
               coalesce(array_to_string(p.proargmodes::text[], ',', ''), ''),
               array_to_string(ARRAY(SELECT format_type(t, NULL)
                    FROM unnest(p.proargtypes) t), '|'),
               p.pronargdefaults, p.proretset
        FROM pg_proc p
        WHERE p.pronamespace = 'pgpoly'::regnamespace AND p.prokind = 'f'
        ORDER BY 1, 2""")[0].rows
    out = []
    for name, oid, names, modes, types, ndef, retset in res:
        names = names.decode().split(",") if names else []
        modes = modes.decode().split(",") if modes else []
        types = types.decode().split("|") if types else []
        if modes:  # keep input arguments only
            names = [n for n, m in zip(names, modes) if m in ("i", "b", "v")]
        names += [""] * (len(types) - len(names))
        nd = int(ndef)
        args = [(n, t, i >= len(types) - nd) for i, (n, t) in
                enumerate(zip(names, types))]
        out.append((name.decode(), int(oid), args, retset == b"t"))
    return out


def good(arg, fname=""):
    """A plausible value for an argument (by name where the type fits)."""
    name, typ, _ = arg
    if (fname, name) in GOOD_BY_FUNC:
        return GOOD_BY_FUNC[(fname, name)]
    v = GOOD_BY_NAME.get(name)
    if v is not None and (typ in ("text", "name", "regclass") or
                          not v.startswith("'") or v.startswith("'{")):
        return v
    return GOOD_BY_TYPE.get(typ, "NULL")


def render(fname, args, values):
    """SELECT of the function with values (named notation where possible)."""
    parts = []
    named = all(a[0] for a in args)
    for (name, typ, _), v in zip(args, values):
        expr = "(%s)::%s" % (v, typ) if typ not in ("anyelement",) else v
        parts.append("%s => %s" % (name, expr) if named else expr)
    return "SELECT * FROM pgpoly.%s(%s)" % (fname, ", ".join(parts))


def cases(fn):
    """Every (label, sql) case for one function."""
    fname, oid, args, retset = fn
    base = [good(a, fname) for a in args]
    yield fname + "()", render(fname, args, base), fname, ""
    if args:
        yield (fname + "(all NULL)", render(fname, args, ["NULL"] * len(args)),
               fname, "")
    for i, a in enumerate(args):
        vals = list(base)
        vals[i] = "NULL"
        yield ("%s(%s=NULL)" % (fname, a[0] or i), render(fname, args, vals),
               fname, a[0])
        for e in EDGES.get(a[1], []):
            vals = list(base)
            vals[i] = e
            yield ("%s(%s=%s)" % (fname, a[0] or i, e[:40]),
                   render(fname, args, vals), fname, a[0])


# The options of each wrapper by level, as README's option tables give them;
# kind: i (integer), b (bool), e (enum), s (string), u (url).
WRAPPER_OPTIONS = {
    "pgpoly_redis": {
        "server": {"host": "s", "port": "i", "db": "i", "connect_timeout_ms": "i",
                   "timeout_ms": "i", "cluster": "b", "nodes": "s", "sentinels": "s",
                   "sentinel_master": "s", "sentinel_check_ms": "i", "unix_socket": "s"},
        "user mapping": {"user": "s", "password": "s", "password_required": "b"},
        "table": {"table_type": "e", "key_prefix": "s", "ttl_seconds": "i",
                  "write_mode": "e", "batch_size": "i", "fetch_size": "i",
                  "watch_limit": "i", "use_remote_estimate": "b"},
        "column": {"key": "b", "field": "s"}},
    "pgpoly_elastic": {
        "server": {"url": "u", "connect_timeout_ms": "i", "timeout_ms": "i",
                   "ca_file": "s", "verify_tls": "b"},
        "user mapping": {"username": "s", "password": "s", "api_key": "s",
                         "password_required": "b"},
        "table": {"index": "s", "fetch_size": "i", "batch_size": "i", "refresh": "e",
                  "write_mode": "e", "use_remote_estimate": "b"},
        "column": {"field": "s"}},
    "pgpoly_vector": {
        "server": {"url": "u", "provider": "e", "tenant": "s", "database": "s",
                   "connect_timeout_ms": "i", "timeout_ms": "i"},
        "user mapping": {"api_key": "s", "password_required": "b"},
        "table": {"collection": "s", "batch_size": "i", "fetch_size": "i",
                  "write_mode": "e", "create_collection": "b", "distance": "e",
                  "use_remote_estimate": "b"},
        "column": {"field": "s"}},
}
OPTION_VALUES = ["", " ", "-1", "0", "1", "99999999999999999999", "2147483648",
                 "abc", "1.5", "5 ", "0x10", "1e3", "x" * 300, "x" * 100000,
                 "TRUE", "on", "http://", "ftp://x", "http://u:p@h/",
                 "http://[::1", "h:99999", "a:1,,b:2", ":", "\t", "qdrant"]
# Values each kind must refuse (any level): never silently accepted.
MUST_REFUSE = {"i": {"", "abc", "1.5", "5 ", "0x10", "1e3", "99999999999999999999",
                     "2147483648", "x" * 300},
               "b": {"", "abc", "1.5", "x" * 300},
               "e": {"", "abc", "x" * 300, "x" * 100000},
               "u": {"", "ftp://x", "http://u:p@h/"}}


def option_statement(wrapper, level, opt, value, n):
    """A statement setting option opt = value at level (rolled back by the caller)."""
    q = "'%s'" % value.replace("'", "''")
    if level == "server":
        return "CREATE SERVER fzo%d FOREIGN DATA WRAPPER %s OPTIONS (%s %s)" % (
            n, wrapper, opt, q)
    if level == "user mapping":
        return ("CREATE SERVER fzo%d FOREIGN DATA WRAPPER %s; CREATE USER MAPPING "
                "FOR CURRENT_USER SERVER fzo%d OPTIONS (%s %s)" % (n, wrapper, n, opt, q))
    server = {"pgpoly_redis": "fz_redis", "pgpoly_elastic": "fz_es",
              "pgpoly_vector": "fz_chroma"}[wrapper]
    if level == "table":
        return ("CREATE FOREIGN TABLE fzo%d (id text, key text) SERVER %s "
                "OPTIONS (%s %s)" % (n, server, opt, q))
    return ("CREATE FOREIGN TABLE fzo%d (id text OPTIONS (%s %s), key text) "
            "SERVER %s" % (n, opt, q, server))


def fuzz_options(fz):
    """Every option of every wrapper at every level with edge values, plus
    options at the wrong level and on IMPORT FOREIGN SCHEMA."""
    n = 0
    all_opts = sorted({o for w in WRAPPER_OPTIONS.values() for l in w.values()
                       for o in l})
    for wrapper, levels in WRAPPER_OPTIONS.items():
        for level, opts in levels.items():
            for opt in all_opts:
                kind = opts.get(opt)
                for value in (OPTION_VALUES if kind else ["1"]):
                    n += 1
                    label = "%s %s option %s=%r" % (wrapper, level, opt, value[:20])
                    err = fz.call(option_statement(wrapper, level, opt, value, n),
                                  label)
                    if kind is None:
                        check(err is not None and err.get("C") == "HV00D",
                              "%s: an option of another level must be refused "
                              "(HV00D), got %s" % (label, err and err.get("C")))
                    elif value in MUST_REFUSE.get(kind, ()):
                        check(err is not None and err.get("C", "")[:2] == "HV",
                              "%s: must be refused with HV0xx, got %s %s"
                              % (label, err and err.get("C"), err and err.get("M", "")[:100]))
        server = {"pgpoly_redis": "fz_redis", "pgpoly_elastic": "fz_es",
                  "pgpoly_vector": "fz_chroma"}[wrapper]
        for remote in ("feature_views", "fz_*", "anything"):
            label = "%s IMPORT %s OPTIONS" % (wrapper, remote)
            err = fz.call('CREATE SCHEMA fz_imp; IMPORT FOREIGN SCHEMA "%s" FROM SERVER '
                          '%s INTO fz_imp OPTIONS (fetch_size \'10\')' % (remote, server),
                          label)
            check(err is not None and err.get("C") == "HV00D",
                  "%s: an IMPORT FOREIGN SCHEMA option must be refused (HV00D), got %s"
                  % (label, err and err.get("C")))
    return n


# Arguments without a default whose NULL is documented as accepted.
DOCUMENTED_NULL = {
    ("log_prediction", "entity"),   # README: 22004 only for model, prediction, version
}


def check_null_arguments(fz, fns):
    """A public function's argument without a default rejects NULL with 22004
    (README: "22004 for a NULL required argument"), unless the function is
    STRICT (NULL in, NULL out: the distance functions)."""
    strict = {r[0].decode() for r in fz.conn.query(
        "SELECT proname FROM pg_proc WHERE pronamespace = 'pgpoly'::regnamespace "
        "AND proisstrict")[0].rows}
    for fname, oid, args, retset in fns:
        if fname.startswith("_") or fname in strict or fname.endswith(
                ("_handler", "_validator")):
            continue
        base = [good(a, fname) for a in args]
        for i, (name, typ, has_default) in enumerate(args):
            if has_default or (fname, name) in DOCUMENTED_NULL:
                continue
            vals = list(base)
            vals[i] = "NULL"
            label = "%s(%s => NULL)" % (fname, name)
            err = fz.call(render(fname, args, vals), label, fname, name)
            check(err is not None and err.get("C") == "22004",
                  "%s: a required argument's NULL must be 22004, got %s %s"
                  % (label, err and err.get("C"), err and err.get("M", "")[:100]))


def test():
    db = pgtest.create_db("fz")
    fix = FIXTURE.format(redis_port=os.environ["REDIS_PORT"],
                         chroma_url=os.environ["CHROMA_URL"],
                         es_url=os.environ["ES_URL"], pid=os.getpid())
    r = pgtest.psql(fix, db=db, timeout=120)
    if not check(r.rc == 0, "fixture: %s" % r.err[-2000:]):
        return
    mark = pgtest.pg_log_mark()
    fz = Fuzzer(db)
    fns = functions(fz.conn)
    check(len(fns) > 50, "found pgpoly's functions: %d" % len(fns))
    t0 = time.monotonic()
    nopt = fuzz_options(fz)
    check_null_arguments(fz, fns)
    print("%d option statements and the NULL checks in %.1f s"
          % (nopt, time.monotonic() - t0))
    rng = random.Random(SEED)
    allcases = [c for fn in fns for c in cases(fn)]
    if not FULL:
        # Every function's base, all-NULL and per-position NULL cases, then a
        # seeded sample of the edges within the time budget.
        must = [c for c in allcases if c[0].endswith(("()", "NULL)"))]
        rest = [c for c in allcases if c not in must]
        rng.shuffle(rest)
        allcases = must + rest
    start = time.monotonic()
    for label, sql, fname, arg in allcases:
        if not FULL and time.monotonic() - start > BUDGET:
            break
        fz.call(sql, label, fname, arg)
    print("%d calls over %d functions in %.1f s (of %d cases)"
          % (fz.calls, len(fns), time.monotonic() - start, len(allcases)))
    for f in fz.findings:
        check(False, f)
    pgtest.check_pg_log(mark)


if __name__ == "__main__":
    pgtest.main(test)
