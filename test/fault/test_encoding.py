#!/usr/bin/env python3
"""Character sets: every store holds text as UTF-8, whatever the database encoding.

In a LATIN1 and an EUC_JP (multibyte) database, non-ASCII text written
through each FDW and read back must equal a native twin table (a
differential), and must be stored as UTF-8: read directly from the store
(redis-cli, HTTP), its bytes are the UTF-8 of the characters written.
UTF-8 text written by another client (redis-cli, a direct HTTP _bulk, the
same FDW from the UTF8 database) reads back as the same characters.  A
stored character the database encoding cannot hold is an ERROR 22P05,
never replaced or dropped.  Stores:

  * pgpoly_redis: hash (key prefix, keys, field values, the batched join),
    string, json, zset and set tables; key = and LIKE pushdown;
    put_features / get_online_features of a feature view;
  * pgpoly_elastic on the harness's cluster (ES_URL: the stand-in or a real
    cluster): INSERT, term pushdown, pgpoly.elastic_request bodies and
    answers, documents written by another client, IMPORT FOREIGN SCHEMA of a
    non-ASCII field name;
  * pgpoly_vector on the harness's Chroma: ids, documents, metadata
    (column and mapped field, and a metadata `where` pushdown); on the
    Qdrant stand-in, a collection with a non-ASCII name (read, imported).

Ordering: under COLLATE "C" in EUC_JP and WIN1251, whose bytes do not order
as their UTF-8 does, ORDER BY ... LIMIT, min/max and ranges on an
Elasticsearch keyword answer as a native twin (they stay local); in LATIN1
they are still pushed.  pgpoly.redis_key_slot is the slot of the key's UTF-8.
The sync worker and an outbox table deliver non-ASCII keys and values (as
UTF-8, none to the dead letters).

In a SQL_ASCII database, text sent to the JSON stores must be valid UTF-8
(22021).
"""

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pgtest
import redis_cluster
from pgtest import check

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qdrant_fixture  # noqa: E402

TAG = "enc%d" % os.getpid()
UTF8 = {"PGCLIENTENCODING": "UTF8"}

# (database encoding, values it holds, a character it cannot hold)
CASES = [
    ("LATIN1", ["café", "straße", "naïve ü", "ÀÉÎÕÜ ÿ"], "日本"),
    ("EUC_JP", ["日本語", "ｶﾀｶﾅ と ひらがな", "漢字かな", "東京"], "😀"),
]


_encoded = {}  # encoding -> its scratch database


def create_encoded_db(encoding):
    """The scratch database of encoding with the extension (made once, dropped at exit)."""
    if encoding not in _encoded:
        _encoded[encoding] = pgtest.create_db("%s_%s" % (TAG, encoding.lower()),
                                              encoding=encoding)
    return _encoded[encoding]


def q(sess, sql):
    """Rows of sql in sess (ERROR: a failed check, [])."""
    r = sess.run(sql)
    if not check(r.rc == 0 and "ERROR" not in r.err, "%s: %s" % (sql, r.err.strip())):
        return []
    return [line for line in r.out.splitlines()]


def ok(sess, sql):
    """Run sql, which must succeed."""
    r = sess.run(sql)
    check("ERROR" not in r.err, "%s: %s" % (sql, r.err.strip()))


def fails(sess, sql, state, what):
    """Run sql, which must fail with SQLSTATE state."""
    r = sess.run(sql)
    check(r.sqlstate == state, "%s: want %s, got %s: %s"
          % (what, state, r.sqlstate, r.err.strip()[:300]))
    return r


def same(sess, foreign, native, what):
    """The differential: foreign and native queries answer the same rows."""
    a, b = q(sess, foreign), q(sess, native)
    check(a == b and a != [], "%s: foreign %r != native %r" % (what, a, b))


def lit(s):
    return "'" + s.replace("'", "''") + "'"




def redis_get(*args):
    """A bulk-string answer's bytes (redis-cli --raw)."""
    p = subprocess.run(["redis-cli", "-p", os.environ["REDIS_PORT"], "--raw"] +
                       [a if isinstance(a, bytes) else a.encode() for a in args],
                       capture_output=True, timeout=10)
    return p.stdout.rstrip(b"\n")


def http(url, method, path, body=None, ndjson=False):
    """A direct HTTP request (body: a dict or bytes); the parsed answer."""
    data = None
    hdrs = {}
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs["Content-Type"] = "application/x-ndjson" if ndjson else "application/json"
    req = urllib.request.Request(url + path, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return json.loads(e.read() or b"null")


def redis_part(s, db, enc, vals, bad):
    """Redis tables, their native twins, redis-cli on both sides."""
    port = os.environ["REDIS_PORT"]
    pre = "%s:%s:é:" % (TAG, enc) if enc == "LATIN1" else "%s:%s:鍵:" % (TAG, enc)
    ok(s, "CREATE SERVER r FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%s');"
       "CREATE USER MAPPING FOR CURRENT_USER SERVER r;" % port)
    for t, cols, typ in (("h", "key text, v text, n int", "hash"),
                         ("s", "key text, value text", "string"),
                         ("j", "key text, v text, d jsonb", "json"),
                         ("z", "key text, member text, score float8", "zset"),
                         ("st", "key text, member text", "set")):
        ok(s, "CREATE FOREIGN TABLE r_%s (%s) SERVER r OPTIONS (table_type '%s', "
           "key_prefix %s); CREATE TABLE n_%s (%s);"
           % (t, cols, typ, lit(pre + t + ":"), t, cols))
    rows = {
        "h": ["(%s, %s, %d)" % (lit(v + str(i)), lit(v), i) for i, v in enumerate(vals)],
        "s": ["(%s, %s)" % (lit(v), lit(v + "!")) for v in vals],
        "j": ["(%s, %s, %s)" % (lit(v), lit(v), lit(json.dumps({"k": v, v: [v]},
                                                             ensure_ascii=False)))
              for v in vals],
        "z": ["(%s, %s, %d)" % (lit("z"), lit(v), i) for i, v in enumerate(vals)],
        "st": ["(%s, %s)" % (lit(vals[0]), lit(v)) for v in vals],
    }
    for t, r in rows.items():
        ok(s, "INSERT INTO r_%s VALUES %s; INSERT INTO n_%s VALUES %s;"
           % (t, ", ".join(r), t, ", ".join(r)))
    for t, order in (("h", "key"), ("s", "key"), ("j", "key"),
                     ("z", "key, member"), ("st", "key, member")):
        same(s, "SELECT *, length(%s) FROM r_%s ORDER BY %s;" % (order.split(",")[-1], t, order),
             "SELECT *, length(%s) FROM n_%s ORDER BY %s;" % (order.split(",")[-1], t, order),
             "%s redis %s" % (enc, t))
    v0 = vals[0]
    same(s, "SELECT v, n FROM r_h WHERE key = %s;" % lit(v0 + "0"),
         "SELECT v, n FROM n_h WHERE key = %s;" % lit(v0 + "0"), enc + " hash key =")
    same(s, "SELECT key FROM r_h WHERE key LIKE %s ORDER BY 1;" % lit(v0[:2] + "%"),
         "SELECT key FROM n_h WHERE key LIKE %s ORDER BY 1;" % lit(v0[:2] + "%"),
         enc + " hash key LIKE")
    same(s, "SELECT n.key, r.v FROM n_h n JOIN r_h r USING (key) ORDER BY 1;",
         "SELECT n.key, m.v FROM n_h n JOIN n_h m USING (key) ORDER BY 1;",
         enc + " hash join")
    same(s, "SELECT d->>%s, d->%s FROM r_j ORDER BY key;" % (lit(v0), lit(v0)),
         "SELECT d->>%s, d->%s FROM n_j ORDER BY key;" % (lit(v0), lit(v0)), enc + " json")
    # Stored as UTF-8: what another client reads.
    key = (pre + "h:" + v0 + "0").encode()
    got = redis_get("HGET", key, "v")
    check(got == v0.encode(), "%s: HGET of the hash field reads %r, want UTF-8 %r"
          % (enc, got, v0.encode()))
    got = redis_get("GET", (pre + "j:" + v0).encode())
    try:
        k = json.loads(got.decode("utf-8"))["d"].get("k")
    except (ValueError, KeyError, AttributeError):
        k = None
    check(k == v0, "%s: the JSON document is UTF-8: %r" % (enc, got))
    # Written by another client as UTF-8: the right characters.
    other = vals[-1] + " (redis-cli)"
    redis_get("HSET", (pre + "h:" + other).encode(), "v", other.encode(), "n", b"9")
    redis_get("ZADD", (pre + "z:z").encode(), b"99", other.encode())
    got = q(s, "SELECT key, v, length(v) FROM r_h WHERE key = %s;" % lit(other))
    check(got == ["%s|%s|%d" % (other, other, len(other))],
          "%s: UTF-8 hash written by redis-cli reads %r" % (enc, got))
    got = q(s, "SELECT member FROM r_z WHERE score = 99;")
    check(got == [other], "%s: UTF-8 zset member reads %r" % (enc, got))
    # A character the database encoding lacks: 22P05 naming the column.
    redis_get("HSET", (pre + "h:bad").encode(), "v", bad.encode())
    r = fails(s, "SELECT * FROM r_h;", "22P05", enc + " untranslatable hash value")
    check('column "v"' in r.err, "%s: the error names the column: %s" % (enc, r.err))
    redis_get("DEL", (pre + "h:bad").encode())
    redis_get("HSET", (pre + "h:" + bad).encode(), "v", b"x")
    fails(s, "SELECT * FROM r_h;", "22P05", enc + " untranslatable key")
    redis_get("DEL", (pre + "h:" + bad).encode())
    # The feature store: put_features / get_online_features.
    ok(s, "CREATE FOREIGN TABLE fv_on (user_id text OPTIONS (key 'true'), country text) "
       "SERVER r OPTIONS (key_prefix %s);"
       "SELECT pgpoly.create_feature_view('fv_%s', 'user_id', 'fv_on');"
       % (lit(pre + "fv:"), enc.lower()))
    ok(s, "SELECT pgpoly.put_features('fv_%s', %s, jsonb_build_object('country', %s));"
       % (enc.lower(), lit(vals[1]), lit(vals[2])))
    got = q(s, "SELECT entity, features->>'country', source FROM "
            "pgpoly.get_online_features('fv_%s', ARRAY[%s]);" % (enc.lower(), lit(vals[1])))
    check(got == ["%s|%s|online" % (vals[1], vals[2])],
          "%s: get_online_features: %r" % (enc, got))
    got = redis_get("HGET", (pre + "fv:" + vals[1]).encode(), "country")
    check(got == vals[2].encode(), "%s: put_features stored UTF-8: %r" % (enc, got))


def elastic_part(s, db, enc, vals, bad):
    """Elasticsearch: writes, pushdown, elastic_request, other clients."""
    url = os.environ["ES_URL"]
    index = "%s_%s" % (TAG, enc.lower())
    ok(s, "CREATE SERVER es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url %s);"
       "CREATE USER MAPPING FOR CURRENT_USER SERVER es;" % lit(url))
    ok(s, "SELECT pgpoly.elastic_request('es', 'PUT', %s, %s);"
       % (lit("/" + index), lit(json.dumps({"mappings": {"properties": {
           "title": {"type": "keyword"}, "n": {"type": "integer"}}}}))))
    ok(s, "CREATE FOREIGN TABLE docs (_id text, title text, n int) SERVER es "
       "OPTIONS (index %s, refresh 'true'); CREATE TABLE ndocs (_id text, title text, n int);"
       % lit(index))
    rows = ", ".join("(%s, %s, %d)" % (lit(v + "#"), lit(v), i) for i, v in enumerate(vals))
    ok(s, "INSERT INTO docs VALUES %s; INSERT INTO ndocs VALUES %s;" % (rows, rows))
    same(s, "SELECT _id, title, length(title), n FROM docs ORDER BY n;",
         "SELECT _id, title, length(title), n FROM ndocs ORDER BY n;", enc + " elastic rows")
    same(s, "SELECT n FROM docs WHERE title = %s;" % lit(vals[1]),
         "SELECT n FROM ndocs WHERE title = %s;" % lit(vals[1]), enc + " elastic term")
    same(s, "SELECT count(*) FROM docs WHERE title IN (%s, %s);" % (lit(vals[0]), lit(vals[2])),
         "SELECT count(*) FROM ndocs WHERE title IN (%s, %s);" % (lit(vals[0]), lit(vals[2])),
         enc + " elastic terms count")
    ok(s, "UPDATE docs SET title = title || %s WHERE n = 0;"
       "UPDATE ndocs SET title = title || %s WHERE n = 0;" % (lit(vals[3]), lit(vals[3])))
    same(s, "SELECT _id, title FROM docs ORDER BY n;", "SELECT _id, title FROM ndocs ORDER BY n;",
         enc + " elastic update")
    # Stored as UTF-8.
    got = http(url, "POST", "/%s/_search" % index,
               {"query": {"term": {"title": vals[1]}}})
    titles = [h["_source"].get("title") for h in got.get("hits", {}).get("hits", [])]
    check(titles == [vals[1]], "%s: ES holds %r, want %r" % (enc, titles, [vals[1]]))
    # elastic_request: a non-ASCII body and its answer.
    got = q(s, "SELECT h->'_source'->>'title' FROM jsonb_array_elements("
            "pgpoly.elastic_request('es', 'POST', %s, %s)->'hits'->'hits') h;"
            % (lit("/%s/_search" % index),
               lit(json.dumps({"query": {"term": {"title": vals[2]}}}, ensure_ascii=False))))
    check(got == [vals[2]], "%s: elastic_request answer %r" % (enc, got))
    # Written by another client.
    other = vals[-1] + " (http)"
    body = (json.dumps({"index": {"_id": other}}) + "\n" +
            json.dumps({"title": other, "n": 50}) + "\n").encode()
    http(url, "POST", "/%s/_bulk?refresh=true" % index, body, ndjson=True)
    got = q(s, "SELECT _id, title, length(title) FROM docs WHERE n = 50;")
    check(got == ["%s|%s|%d" % (other, other, len(other))],
          "%s: UTF-8 document written over HTTP reads %r" % (enc, got))
    body = (json.dumps({"index": {"_id": "bad"}}) + "\n" +
            json.dumps({"title": bad, "n": 51}) + "\n").encode()
    http(url, "POST", "/%s/_bulk?refresh=true" % index, body, ndjson=True)
    r = fails(s, "SELECT * FROM docs WHERE n = 51;", "22P05", enc + " untranslatable ES value")
    check('title' in r.err, "%s: the error names the field: %s" % (enc, r.err))
    # Messages quote the store's answer in the right characters.
    missing = index + "_" + vals[0].lower()
    ok(s, "CREATE FOREIGN TABLE nodocs (_id text) SERVER es OPTIONS (index %s);" % lit(missing))
    r = fails(s, "SELECT * FROM nodocs;", "HV00R", enc + " missing index")
    check(r.err.count(missing) >= 2, "%s: the message quotes the answer: %s" % (enc, r.err))
    ok(s, "SELECT pgpoly.elastic_request('es', 'DELETE', %s);" % lit("/" + index))
    # IMPORT FOREIGN SCHEMA names a non-ASCII field's column in the database encoding.
    imported = index + "_imp"
    http(url, "PUT", "/" + imported, {"mappings": {"properties": {
        vals[0]: {"type": "keyword"}, "n": {"type": "integer"}}}})
    http(url, "POST", "/%s/_bulk?refresh=true" % imported,
         (json.dumps({"index": {"_id": vals[1]}}) + "\n" +
          json.dumps({vals[0]: vals[2], "n": 1}) + "\n").encode(), ndjson=True)
    ok(s, "CREATE SCHEMA imp_es; IMPORT FOREIGN SCHEMA %s LIMIT TO (%s) FROM SERVER es "
       "INTO imp_es;" % (imported, imported))
    col = '"%s"' % vals[0]
    got = q(s, "SELECT _id, %s, n FROM imp_es.%s WHERE %s = %s;"
            % (col, imported, col, lit(vals[2])))
    check(got == ["%s|%s|1" % (vals[1], vals[2])],
          "%s: imported column %s reads %r" % (enc, col, got))
    http(url, "DELETE", "/" + imported)


def chroma_part(s, db, enc, vals, bad, utf8db):
    """Chroma: ids, documents, metadata; written from the UTF8 database too."""
    url = os.environ.get("CHROMA_URL")
    if not check(url is not None, "CHROMA_URL is set by the harness"):
        return
    coll = "%s_%s" % (TAG, enc.lower())
    ddl = ("CREATE SERVER IF NOT EXISTS ch FOREIGN DATA WRAPPER pgpoly_vector "
           "OPTIONS (url %s); CREATE USER MAPPING IF NOT EXISTS FOR CURRENT_USER SERVER ch;"
           "CREATE FOREIGN TABLE vv (id text, embedding real[], document text, "
           "metadata jsonb, k text) SERVER ch OPTIONS (collection %s, "
           "create_collection 'true', distance 'l2');" % (lit(url), lit(coll)))
    ok(s, ddl + "CREATE TABLE nvv (id text, embedding real[], document text, "
       "metadata jsonb, k text);")
    rows = ", ".join("(%s, '{%d,1}', %s, %s, %s)"
                     % (lit(v + "-id"), i, lit(v),
                        lit(json.dumps({"m": v}, ensure_ascii=False)), lit(v[:1]))
                     for i, v in enumerate(vals))
    ok(s, "INSERT INTO vv VALUES %s; INSERT INTO nvv VALUES %s;" % (rows, rows))
    same(s, "SELECT id, document, length(document), metadata->>'m', k FROM vv ORDER BY id;",
         "SELECT id, document, length(document), metadata->>'m', k FROM nvv ORDER BY id;",
         enc + " chroma rows")
    same(s, "SELECT id FROM vv WHERE k = %s ORDER BY id;" % lit(vals[1][:1]),
         "SELECT id FROM nvv WHERE k = %s ORDER BY id;" % lit(vals[1][:1]), enc + " chroma where")
    same(s, "SELECT document FROM vv WHERE id = %s;" % lit(vals[2] + "-id"),
         "SELECT document FROM nvv WHERE id = %s;" % lit(vals[2] + "-id"), enc + " chroma id")
    # Written by another client: the same FDW in the UTF8 database.
    other = vals[-1] + " (utf8)"
    u = pgtest.Session(db=utf8db, env=UTF8)
    ok(u, ddl.replace("vv", "vv_%s" % enc.lower()))
    ok(u, "INSERT INTO vv_%s VALUES (%s, '{9,9}', %s, %s, 'o'), ('bad', '{8,8}', %s, '{}', 'b');"
       % (enc.lower(), lit(other), lit(other),
          lit(json.dumps({"m": other}, ensure_ascii=False)), lit(bad)))
    u.close()
    got = q(s, "SELECT id, document, metadata->>'m' FROM vv WHERE k = 'o';")
    check(got == ["%s|%s|%s" % (other, other, other)],
          "%s: UTF-8 record written by another client reads %r" % (enc, got))
    fails(s, "SELECT document FROM vv WHERE k = 'b';", "22P05",
          enc + " untranslatable Chroma document")


def sql_ascii_part(utf8db):
    """SQL_ASCII: JSON stores must be sent valid UTF-8; Redis bytes pass as they are."""
    name = create_encoded_db("SQL_ASCII")
    s = pgtest.Session(db=name)
    index = "%s_sqlascii" % TAG
    ok(s, "CREATE SERVER es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url %s);"
       "CREATE USER MAPPING FOR CURRENT_USER SERVER es;"
       "CREATE FOREIGN TABLE docs (_id text, title text) SERVER es "
       "OPTIONS (index %s, refresh 'true');" % (lit(os.environ["ES_URL"]), lit(index)))
    # convert_from: the LATIN1 byte 0xe9 alone, not UTF-8
    r = fails(s, "INSERT INTO docs VALUES ('1', convert_from('\\xe9'::bytea, 'SQL_ASCII'));",
              "22021", "SQL_ASCII: invalid UTF-8 sent to Elasticsearch")
    ok(s, "INSERT INTO docs VALUES ('2', convert_from('\\xc3a9'::bytea, 'SQL_ASCII'));")
    got = http(os.environ["ES_URL"], "POST", "/%s/_search" % index, {})
    titles = [h["_source"].get("title") for h in got.get("hits", {}).get("hits", [])]
    check(titles == ["é"], "SQL_ASCII: UTF-8 bytes stored as they are: %r" % titles)
    ok(s, "CREATE SERVER r FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%s');"
       "CREATE USER MAPPING FOR CURRENT_USER SERVER r;"
       "CREATE FOREIGN TABLE rs (key text, value text) SERVER r OPTIONS "
       "(table_type 'string', key_prefix '%s:sa:');" % (os.environ["REDIS_PORT"], TAG))
    ok(s, "INSERT INTO rs VALUES ('k', convert_from('\\xe9'::bytea, 'SQL_ASCII'));")
    got = redis_get("GET", "%s:sa:k" % TAG)
    check(got == b"\xe9", "SQL_ASCII: Redis gets the bytes as they are: %r" % got)
    s.close()
    http(os.environ["ES_URL"], "DELETE", "/" + index)


# (database encoding, values whose byte order in it is not their code point
# order, or None where it is: there the sort and the range are still pushed)
ORDERS = [
    ("EUC_JP", ["A", "ｱ", "あ", "亜", "一"]),
    ("WIN1251", ["Ёж", "ёлка", "Абв", "яд", "€"]),
    ("LATIN1", None),
]


def order_part(enc, vals):
    """Under COLLATE "C", SQL orders text by the database encoding's bytes;
    Elasticsearch orders a keyword by its UTF-8 bytes (code points).  Where the
    two differ, ORDER BY ... LIMIT and ranges must not be pushed."""
    db = create_encoded_db(enc)     # those of CASES are there already
    s = pgtest.Session(db=db, env=UTF8)
    index = "%s_order_%s" % (TAG, enc.lower())
    if vals is None:
        vals = ["A", "z", "À", "é", "ÿ"]
    ok(s, "CREATE SERVER eso FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url %s);"
       "CREATE USER MAPPING FOR CURRENT_USER SERVER eso;" % lit(os.environ["ES_URL"]))
    ok(s, "SELECT pgpoly.elastic_request('eso', 'PUT', %s, %s);"
       % (lit("/" + index), lit(json.dumps({"mappings": {"properties": {
           "t": {"type": "keyword"}, "n": {"type": "integer"}}}}))))
    ok(s, "CREATE FOREIGN TABLE odocs (t text COLLATE \"C\", n int) SERVER eso "
       "OPTIONS (index %s, refresh 'true'); CREATE TABLE nodocs_o (t text COLLATE \"C\", n int);"
       % lit(index))
    rows = ", ".join("(%s, %d)" % (lit(v), i) for i, v in enumerate(vals))
    ok(s, "INSERT INTO odocs VALUES %s; INSERT INTO nodocs_o VALUES %s;" % (rows, rows))
    mid = lit(vals[2])
    for what, tail in [("ORDER BY LIMIT", "ORDER BY t LIMIT 3"),
                       ("ORDER BY DESC LIMIT", "ORDER BY t DESC LIMIT 2"),
                       ("range >", "WHERE t > %s ORDER BY n" % mid),
                       ("range <=", "WHERE t <= %s ORDER BY n" % mid),
                       ("BETWEEN", "WHERE t BETWEEN %s AND %s ORDER BY n" % (lit(vals[1]), lit(vals[3])))]:
        same(s, "SELECT t, n FROM odocs %s;" % tail,
             "SELECT t, n FROM nodocs_o %s;" % tail, "%s elastic %s" % (enc, what))
    same(s, "SELECT min(t), max(t) FROM odocs;", "SELECT min(t), max(t) FROM nodocs_o;",
         enc + " elastic min/max")
    if enc == "LATIN1":
        # LATIN1's byte order is code point order: still pushed
        plan = "\n".join(q(s, "EXPLAIN (VERBOSE, COSTS OFF) SELECT t FROM odocs "
                           "WHERE t > %s ORDER BY t LIMIT 2;" % mid))
        check('"sort":[{"t"' in plan and '"range"' in plan,
              "LATIN1: the sort and the range are pushed: %s" % plan)
    ok(s, "SELECT pgpoly.elastic_request('eso', 'DELETE', %s);" % lit("/" + index))
    s.close()


def sync_part(s, enc, vals):
    """The sync worker (in this database) and an outbox table deliver UTF-8:
    what they read from their queues is text in the database encoding."""
    port = os.environ["REDIS_PORT"]
    pre = {"sync": "%s:%s:s:" % (TAG, enc), "outbox": "%s:%s:o:" % (TAG, enc)}
    ok(s, "CREATE SERVER rs FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%s');"
       "CREATE USER MAPPING FOR CURRENT_USER SERVER rs;"
       "CREATE FOREIGN TABLE skv (k text OPTIONS (key 'true'), v text) SERVER rs "
       "OPTIONS (table_type 'hash', key_prefix %s);"
       "CREATE TABLE nskv (k text PRIMARY KEY, v text);"
       "CREATE FOREIGN TABLE okv (k text OPTIONS (key 'true'), v text) SERVER rs "
       "OPTIONS (table_type 'hash', key_prefix %s, write_mode 'outbox');"
       % (port, lit(pre["sync"]), lit(pre["outbox"])))
    rows = ", ".join("(%s, %s)" % (lit(v), lit(v + "!")) for v in vals)
    ok(s, "INSERT INTO nskv VALUES %s;" % rows)
    ok(s, "SELECT pgpoly.create_sync('skv_sync', 'nskv', 'skv');")
    ok(s, "UPDATE nskv SET v = v || %s WHERE k = %s;" % (lit(vals[1]), lit(vals[0])))
    ok(s, "INSERT INTO okv VALUES %s;" % rows)
    ok(s, "INSERT INTO okv VALUES (%s, %s);" % (lit(vals[0]), lit(vals[0] + "!" + vals[1])))
    # (the DELETE finds the row once it is delivered)
    check(q(s, "SELECT pgpoly.sync_wait(NULL, '30 seconds');") == ["t"], enc + ": sync_wait")
    ok(s, "DELETE FROM okv WHERE k = %s;" % lit(vals[2]))
    check(q(s, "SELECT pgpoly.sync_wait(NULL, '30 seconds');") == ["t"], enc + ": sync_wait")
    same(s, "SELECT k, v FROM skv ORDER BY k;", "SELECT k, v FROM nskv ORDER BY k;",
         enc + " sync worker")
    same(s, "SELECT k, v FROM okv ORDER BY k;",
         "SELECT k, v FROM nskv WHERE k <> %s ORDER BY k;" % lit(vals[2]), enc + " outbox table")
    for what, p in pre.items():
        got = redis_get("HGET", (p + vals[0]).encode(), "v")
        check(got == (vals[0] + "!" + vals[1]).encode(),
              "%s: %s delivered UTF-8: %r" % (enc, what, got))
    dead = q(s, "SELECT name, key, error FROM pgpoly.sync_dead_letters;")
    check(dead == [], "%s: no dead letters: %r" % (enc, dead))
    ok(s, "SELECT pgpoly.drop_sync('skv_sync');")


def qdrant_part(s, enc, vals):
    """A Qdrant collection with a non-ASCII name (test/qdrant_fixture.py): its
    name is the database's text, in IMPORT FOREIGN SCHEMA and the option."""
    fx = qdrant_fixture.Fixture()
    name = "c_" + vals[0]
    fx.add_collection(name, 2, "Euclid", [
        {"id": 1, "vector": [1.0, 0.0], "payload": {"document": vals[1]}}])
    port = fx.start()
    try:
        ok(s, "CREATE SERVER qd FOREIGN DATA WRAPPER pgpoly_vector OPTIONS "
           "(url 'http://127.0.0.1:%d', provider 'qdrant');"
           "CREATE USER MAPPING FOR CURRENT_USER SERVER qd;"
           "CREATE FOREIGN TABLE qt (id text, embedding real[], document text) SERVER qd "
           "OPTIONS (collection %s);" % (port, lit(name)))
        got = q(s, "SELECT id, document FROM qt;")
        check(got == ["1|" + vals[1]], "%s: Qdrant collection %r reads %r" % (enc, name, got))
        ok(s, "CREATE SCHEMA imp_qd; IMPORT FOREIGN SCHEMA x FROM SERVER qd INTO imp_qd;")
        got = q(s, "SELECT id, document FROM imp_qd.%s;" % ('"%s"' % name))
        check(got == ["1|" + vals[1]], "%s: imported Qdrant collection reads %r" % (enc, got))
    finally:
        fx.stop()


def keyslot_part(s, enc, vals):
    """pgpoly.redis_key_slot hashes the key Redis is sent: its UTF-8."""
    for v in ["foo"] + vals + ["{%s}:x" % vals[0]]:
        want = redis_cluster.keyslot(v.encode())
        got = q(s, "SELECT pgpoly.redis_key_slot(%s);" % lit(v))
        check(got == [str(want)], "%s: redis_key_slot(%r) = %r, want the slot of its UTF-8 %d"
              % (enc, v, got, want))


def test():
    utf8db = pgtest.create_db(TAG)
    for enc, vals, bad in CASES:
        db = create_encoded_db(enc)
        s = pgtest.Session(db=db, env=UTF8)
        redis_part(s, db, enc, vals, bad)
        elastic_part(s, db, enc, vals, bad)
        chroma_part(s, db, enc, vals, bad, utf8db)
        keyslot_part(s, enc, vals)
        sync_part(s, enc, vals)
        qdrant_part(s, enc, vals)
        s.close()
    for enc, vals in ORDERS:
        order_part(enc, vals)
    sql_ascii_part(utf8db)
    subprocess.run(["redis-cli", "-p", os.environ["REDIS_PORT"], "--raw", "EVAL",
                    "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do "
                    "redis.call('DEL', k) end", "0", TAG + ":*"],
                   capture_output=True, timeout=10)


pgtest.main(test)
