#!/usr/bin/env python3
"""EXPLAIN in every format, and auto_explain, over every store.

Production installations read plans as JSON, XML or YAML (auto_explain's
log_format, plan collectors), with ANALYZE, VERBOSE, BUFFERS, WAL and
SETTINGS, and log every statement's plan, nested ones too, at the end of
its execution (auto_explain's ExecutorEnd).  Each wrapper's EXPLAIN
callbacks (scan, batched join, k-NN, write, direct modify) then run in
those forms; their properties carry user text: key prefixes, field names,
pushed-down constants, full-text queries, metadata filters.  Here the text
holds what is special to each format (quotes, < & >, a newline, a tab, a
backslash, non-ASCII), and:

  * EXPLAIN (ANALYZE, VERBOSE, BUFFERS, WAL, SETTINGS, FORMAT json|xml|yaml)
    of reads, joins, k-NN and writes (INSERT, UPDATE and DELETE, direct
    modify too) on Redis, Elasticsearch (a private stand-in) and Chroma
    parses as its format and shows the wrapper's own properties, the
    constants in them as written;
  * EXPLAIN ANALYZE of writes in a transaction sends what the statements
    without EXPLAIN send: COMMIT leaves each store as the same statements
    leave a twin table, ROLLBACK leaves it untouched;
  * with auto_explain loaded (log_min_duration 0, log_analyze, log_verbose,
    log_buffers, log_wal, log_triggers, log_settings, log_nested_statements,
    log_level notice so that the plans reach this client), in each format,
    the same reads answer as without it, pgpoly's SQL functions (feature
    store, registry, vector_search) work, and every plan logged parses.
"""

import json
import os
import xml.dom.minidom

import es_helper
import pgtest

try:
    import yaml
except ImportError:  # python3-yaml: YAML plans are then not parsed
    yaml = None

PID = os.getpid()
# what each format escapes or quotes, and a key beginning with it
NASTY = 'q"<&>\'\n\u00e9\t\\'
KEY = 'k"<&>\'\n\u00fc'
FORMATS = ("json", "xml", "yaml") if yaml is not None else ("json", "xml")
MARK = "@@explain@@"


def lit(s):
    """s as an SQL string literal."""
    return "'" + s.replace("'", "''") + "'"


def parse(fmt, doc):
    """Parse a plan in fmt; return the text it holds (its strings, each on
    a line of its own) or raise."""
    if fmt == "json":
        return "\n".join(_strings(json.loads(doc)))
    if fmt == "xml":
        return "\n".join(_xml_strings(xml.dom.minidom.parseString(doc.encode())))
    if yaml is not None:
        return "\n".join(_strings(yaml.safe_load(doc)))
    return doc


def _strings(v):
    """The keys and string values in a parsed JSON or YAML document."""
    if isinstance(v, dict):
        for k, x in v.items():
            yield str(k)
            yield from _strings(x)
    elif isinstance(v, list):
        for x in v:
            yield from _strings(x)
    elif isinstance(v, str):
        yield v


def _xml_strings(node):
    """The element names and texts under an XML node."""
    for c in node.childNodes:
        if c.nodeType == c.TEXT_NODE:
            yield c.data
        else:
            yield c.tagName
            yield from _xml_strings(c)


def setup(db, es_url, chroma):
    """The servers and tables: two twins per store (a and b) plus a
    native table to join."""
    sql = """
CREATE SERVER r FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%(redis)s');
CREATE USER MAPPING FOR CURRENT_USER SERVER r;
CREATE SERVER e FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%(es)s');
CREATE USER MAPPING FOR CURRENT_USER SERVER e;
CREATE TABLE loc (k text, w int);
INSERT INTO loc VALUES (%(key)s, 1), ('k2', 2), ('nokey', 3);
ANALYZE loc;
""" % {"redis": os.environ["REDIS_PORT"], "es": es_url, "key": lit(KEY)}
    for t in ("a", "b"):
        sql += """
CREATE FOREIGN TABLE r_%(t)s (id text OPTIONS (key 'true'), n int, s text OPTIONS (field %(f)s))
  SERVER r OPTIONS (key_prefix %(p)s);
CREATE FOREIGN TABLE e_%(t)s (_id text, n int, kw text OPTIONS (field %(f)s), _query text)
  SERVER e OPTIONS (index 'fmt_%(pid)d_%(t)s', refresh 'true');
""" % {"t": t, "f": lit("f" + NASTY), "p": lit("fmt:%d:%s:%s:" % (PID, t, NASTY)),
       "pid": PID}
        if chroma:
            sql += """
CREATE FOREIGN TABLE v_%(t)s (id text, embedding real[], document text, metadata jsonb,
                              _distance float8)
  SERVER v OPTIONS (collection 'fmt_%(pid)d_%(t)s', create_collection 'true', distance 'l2');
""" % {"t": t, "pid": PID}
    if chroma:
        sql = ("CREATE SERVER v FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url '%s');\n"
               "CREATE USER MAPPING FOR CURRENT_USER SERVER v;\n" % chroma) + sql
    r = pgtest.psql(sql, db=db)
    if r.rc != 0:
        raise RuntimeError("setup failed: %s" % r.err)


def writes(t, chroma):
    """Writes on the tables of twin t: INSERT, UPDATE (direct modify and
    not) and DELETE on each store."""
    w = [
        "INSERT INTO r_%s VALUES (%s, 1, %s), ('k2', 2, 'x'), ('k3', 3, NULL)"
        % (t, lit(KEY), lit(NASTY)),
        "UPDATE r_%s SET s = %s WHERE id = %s" % (t, lit(NASTY + "2"), lit(KEY)),
        "UPDATE r_%s SET n = n + 10 WHERE n > 1" % t,
        "DELETE FROM r_%s WHERE id = 'k3'" % t,
        "INSERT INTO e_%s (_id, n, kw) VALUES (%s, 1, %s), ('d2', 2, 'x')"
        % (t, lit(KEY), lit(NASTY)),
        "UPDATE e_%s SET n = 5 WHERE _id = %s" % (t, lit(KEY)),
        "DELETE FROM e_%s WHERE _id = 'd2'" % t,
    ]
    if chroma:
        w += [
            "INSERT INTO v_%s (id, embedding, document, metadata) VALUES "
            "(%s, '{1,2,3}', %s, jsonb_build_object('t', %s::text)), "
            "('v2', '{3,2,1}', 'two', '{\"t\": \"y\"}')" % (t, lit(KEY), lit(NASTY), lit(NASTY)),
            "UPDATE v_%s SET document = %s WHERE id = 'v2'" % (t, lit(NASTY)),
            "DELETE FROM v_%s WHERE id = 'nothing'" % t,
        ]
    return w


def reads(t, chroma):
    """Reads of twin t: key lookups, prefix scans, the batched join,
    Elasticsearch queries and a count, a k-NN search with a filter."""
    q = [
        "SELECT * FROM r_%s WHERE id = %s" % (t, lit(KEY)),
        "SELECT * FROM r_%s WHERE id LIKE %s ORDER BY id" % (t, lit(KEY[:4] + "%")),
        "SELECT l.k, l.w, r.n, r.s FROM loc l JOIN r_%s r ON r.id = l.k ORDER BY l.k" % t,
        "SELECT l.k FROM loc l WHERE NOT EXISTS (SELECT FROM r_%s r WHERE r.id = l.k) "
        "ORDER BY 1" % t,
        "SELECT _id, n, kw FROM e_%s WHERE kw = %s ORDER BY _id" % (t, lit(NASTY)),
        "SELECT _id FROM e_%s WHERE _query = %s ORDER BY _id" % (t, lit('n:1 OR kw:"<&>\n"')),
        "SELECT count(*) FROM e_%s WHERE n >= 0" % t,
    ]
    if chroma:
        q += [
            "SELECT id, document, _distance FROM v_%s WHERE metadata->>'t' = %s "
            "ORDER BY embedding <-> '{1,2,3}' LIMIT 1" % (t, lit(NASTY)),
            "SELECT id, document FROM v_%s WHERE id = ANY (ARRAY[%s, 'v2']) ORDER BY id"
            % (t, lit(KEY)),
        ]
    return q


def explained(db, fmt, stmts, end):
    """Run each statement under EXPLAIN (ANALYZE, ...) in fmt, in one
    transaction ended by end; return (the plans, psql Result)."""
    sql = "SET jit = off;\nBEGIN;\n"
    for s in stmts:
        sql += ("\\echo %s\nEXPLAIN (ANALYZE, VERBOSE, BUFFERS, WAL, SETTINGS, FORMAT %s) %s;\n"
                % (MARK, fmt, s))
    sql += "\\echo %s\n%s;\n" % (MARK, end)
    r = pgtest.psql(sql, db=db)
    parts = r.out.split(MARK + "\n")[1:-1]
    return [p.rstrip("\n") for p in parts], r


def check_plans(fmt, stmts, plans, what):
    """Each plan parses as fmt and shows the store's own properties."""
    pgtest.check(len(plans) == len(stmts), "%s %s: %d plans for %d statements"
                 % (fmt, what, len(plans), len(stmts)))
    for s, p in zip(stmts, plans):
        try:
            text = parse(fmt, p)
        except Exception as e:  # noqa: BLE001 -- any parse error is the finding
            pgtest.check(False, "%s plan of %r does not parse: %s\n%s" % (fmt, s, e, p))
            continue
        store = ("Redis" if " r_" in s else "Elasticsearch" if " e_" in s else "Vector")
        pgtest.check(store in text, "%s plan of %r shows no %s property:\n%s"
                     % (fmt, s, store, p))
        # a constant of the statement's WHERE shows in the pushed quals
        # (deparsed: its quotes doubled)
        for c in (KEY, NASTY):
            if ("= %s" % lit(c)) in s and store != "Vector":
                pgtest.check(lit(c) in text, "%s plan of %r lost the constant %r:\n%s"
                             % (fmt, s, c, p))


def contents(db, t, chroma):
    """The rows of twin t's tables, as text."""
    sql = ("SELECT id, n, s FROM r_%s ORDER BY id;\n"
           "SELECT _id, n, kw FROM e_%s ORDER BY _id;\n" % (t, t))
    if chroma:
        sql += "SELECT id, embedding, document, metadata FROM v_%s ORDER BY id;\n" % t
    r = pgtest.psql(sql, db=db)
    pgtest.check(r.rc == 0, "reading twin %s: %s" % (t, r.err))
    return r.out


def auto_explained(db, fmt, stmts):
    """Run stmts with auto_explain logging every plan, nested ones too, as
    NOTICEs in fmt; return (psql Result, the plans logged)."""
    sql = ("SET jit = off;\nLOAD 'auto_explain';\n"
           "SET auto_explain.log_min_duration = 0;\nSET auto_explain.log_analyze = on;\n"
           "SET auto_explain.log_verbose = on;\nSET auto_explain.log_buffers = on;\n"
           "SET auto_explain.log_wal = on;\nSET auto_explain.log_triggers = on;\n"
           "SET auto_explain.log_settings = on;\n"
           "SET auto_explain.log_nested_statements = on;\n"
           "SET auto_explain.log_format = %s;\nSET auto_explain.log_level = notice;\n" % fmt)
    sql += "".join("\\echo %s\n%s;\n" % (MARK, s) for s in stmts)
    r = pgtest.psql(sql, db=db)
    plans = []
    for chunk in r.err.split("NOTICE:  duration: ")[1:]:
        body = chunk.split("  plan:\n", 1)[1]
        # the plan ends where psql's next message begins
        plans.append(body.split("\npsql:", 1)[0].rstrip("\n"))
    return r, plans


def test():
    mark = pgtest.pg_log_mark()
    db = pgtest.create_db()
    es = es_helper.Standin()
    chroma = os.environ.get("CHROMA_URL")
    if not chroma:
        print("note: CHROMA_URL not set, vector tables skipped")
    if yaml is None:
        print("note: no Python yaml module (python3-yaml), YAML plans skipped")
    for t in ("a", "b"):
        es.request("PUT", "/fmt_%d_%s" % (PID, t), {"mappings": {"properties": {
            "n": {"type": "integer"}, "f" + NASTY: {"type": "keyword"}}}})
    setup(db, es.url, chroma)

    # 1. EXPLAIN ANALYZE of the writes, committed on twin a, beside the
    #    same statements without EXPLAIN on twin b: the stores end equal.
    wa, wb = writes("a", chroma), writes("b", chroma)
    plans, r = explained(db, "json", wa, "COMMIT")
    pgtest.check(r.rc == 0, "EXPLAIN ANALYZE of the writes failed: %s" % r.err)
    check_plans("json", wa, plans, "writes")
    r = pgtest.psql("".join(s + ";\n" for s in wb), db=db)
    pgtest.check(r.rc == 0, "the writes failed: %s" % r.err)
    got_a, got_b = contents(db, "a", chroma), contents(db, "b", chroma)
    pgtest.check(got_a == got_b,
                 "EXPLAIN ANALYZE of writes left other contents than the writes:\n"
                 "with EXPLAIN:\n%s\nwithout:\n%s" % (got_a, got_b))

    # 2. Each format, reads and writes; the writes rolled back leave the
    #    stores as they were.
    for fmt in FORMATS:
        stmts = reads("a", chroma) + writes("a", chroma)
        plans, r = explained(db, fmt, stmts, "ROLLBACK")
        pgtest.check(r.rc == 0, "EXPLAIN (FORMAT %s) failed: %s" % (fmt, r.err))
        check_plans(fmt, stmts, plans, "reads and writes")
        pgtest.check(contents(db, "a", chroma) == got_a,
                     "EXPLAIN ANALYZE (FORMAT %s) of writes rolled back changed a store" % fmt)

    # 3. auto_explain: the same answers, pgpoly's functions work, every
    #    plan logged (nested statements' too) parses.
    fv = ("SELECT pgpoly.create_feature_view('fmt_fv', 'id', 'r_b')",
          "SELECT pgpoly.put_features('fmt_fv', %s, jsonb_build_object('n', 7, 's', %s::text))"
          % (lit(KEY), lit(NASTY)),
          "SELECT entity = %s, features, source FROM pgpoly.get_online_features('fmt_fv', "
          "ARRAY[%s, 'nobody'])" % (lit(KEY), lit(KEY)),
          "SELECT pgpoly.drop_feature_view('fmt_fv', drop_tables => true)",
          "SELECT pgpoly.log_metric(pgpoly.start_run(%s), 'm', 1)" % lit(NASTY))
    if chroma:
        fv += ("SELECT id, document FROM pgpoly.vector_search('v_a', '{1,2,3}', 1, "
               "jsonb_build_object('t', %s::text))" % lit(NASTY),)
    plain = pgtest.psql("SET jit = off;\n" + "".join("\\echo %s\n%s;\n" % (MARK, s)
                                                     for s in reads("a", chroma)), db=db)
    pgtest.check(plain.rc == 0, "the reads failed: %s" % plain.err)
    for fmt in FORMATS:
        r, logged = auto_explained(db, fmt, reads("a", chroma) + list(fv))
        pgtest.check(r.rc == 0, "with auto_explain (%s): %s" % (fmt, r.err[-3000:]))
        answers = r.out[r.out.index(MARK):]
        pgtest.check(answers.startswith(plain.out[plain.out.index(MARK):]),
                     "with auto_explain (%s) the reads answer otherwise:\n%s\nwithout:\n%s"
                     % (fmt, answers, plain.out))
        pgtest.check(len(logged) > len(reads("a", chroma)) + len(fv),
                     "auto_explain (%s) logged %d plans: no nested statement's"
                     % (fmt, len(logged)))
        for p in logged:
            try:
                parse(fmt, p)
            except Exception as e:  # noqa: BLE001
                pgtest.check(False, "auto_explain %s plan does not parse: %s\n%s" % (fmt, e, p))
        pgtest.check(any("Redis" in p for p in logged) and
                     any("Elasticsearch" in p for p in logged),
                     "auto_explain (%s) shows no wrapper's properties" % fmt)
    pgtest.check_pg_log(mark)


pgtest.main(test)
