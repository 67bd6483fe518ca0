#!/usr/bin/env python3
"""Values and documents at pgpoly's size limits.

Always (small): a private Redis holds a set of 3000 members.  With
pgpoly.max_response_size '64kB' reading it fails with 54000, and the hint
says that one key's value comes in one reply (fetch_size cannot help: a
set is read whole); the backend survives, and after RESET the 3000 members
read back.

With PGPOLY_BIG_VALUES=1 (about 3 GB of memory and a minute; not part of
`make test`):
  * a 300 MB string reads back whole as text and as bytea (length and
    md5) with pgpoly.max_response_size at its maximum, and is refused with
    54000 at the default;
  * writing a 537 MB bytea into a json table, whose hex form (\\x and two
    digits a byte) cannot be a text value of at most 1 GB, fails with
    54000 ("too long to write in hex"), not XX000 "invalid memory alloc request size";
  * an Elasticsearch answer of 1.1 GB (a fake server streams it, with
    pgpoly.max_response_size at its maximum) read by
    pgpoly.elastic_request fails with 54000 "larger than 1 GB", not XX000
    "invalid memory alloc request size";
  * the backend survives each of them, and the PostgreSQL log shows no
    crash.
"""

import json
import os

import pgtest

check = pgtest.check
MB = 1024 * 1024


def small(s, port):
    rc, out, err = pgtest.redis_cli(
        port, "eval", "for i=1,3000 do redis.call('sadd', KEYS[1], 'm' .. i) end",
        1, "bv:set:big")
    check(rc == 0, "filling the set failed: %s" % err)
    s.value("SET pgpoly.max_response_size = '64kB';")
    r = s.run("SELECT count(*) FROM bv_set WHERE key = 'big';")
    check(r.rc == 1 and r.sqlstate == "54000"
          and "one key's value comes in one reply" in r.err,
          "a 3000-member set over max_response_size: want 54000 with a hint "
          "that the set is read whole; got rc=%s sqlstate=%s: %s"
          % (r.rc, r.sqlstate, r.err.strip()))
    s.value("RESET pgpoly.max_response_size;")
    n = s.value("SELECT count(DISTINCT member) FROM bv_set WHERE key = 'big';")
    check(n == "3000", "the set after RESET: want 3000 members, got %s" % n)


def big(s, port):
    rc, out, err = pgtest.redis_cli(
        port, "eval", "redis.call('set', KEYS[1], string.rep('abc', ARGV[1]))",
        1, "bv:s:300m", 100 * MB, timeout=120)
    check(rc == 0, "SET of 300 MB failed: %s" % err)
    r = s.run("SELECT length(value) FROM bv_str WHERE key = '300m';", timeout=120)
    check(r.rc == 1 and r.sqlstate == "54000",
          "300 MB at the default max_response_size: want 54000, got rc=%s %s"
          % (r.rc, r.err.strip()))
    s.value("SET pgpoly.max_response_size = '2097151kB';")
    want = s.value("SELECT md5(repeat('abc', %d));" % (100 * MB), timeout=120)
    for tbl in ("bv_str", "bv_bytes"):
        r = s.run("SELECT length(value), md5(value) FROM %s WHERE key = '300m';"
                  % tbl, timeout=300)
        check(r.rc == 0 and r.out.strip() == "%d|%s" % (300 * MB, want),
              "300 MB through %s: want its length and md5, got rc=%s out=%r %s"
              % (tbl, r.rc, r.out.strip(), r.err.strip()))
    pgtest.redis_cli(port, "del", "bv:s:300m")
    r = s.run("INSERT INTO bv_json (key, b) VALUES ('b', "
              "convert_to(repeat('a', 537000000), 'UTF8'));", timeout=300)
    check(r.rc == 1 and r.sqlstate == "54000" and "too long to write in hex" in r.err,
          "a 537 MB bytea into a json table: want 54000, got "
          "rc=%s sqlstate=%s: %s" % (r.rc, r.sqlstate, r.err.strip()))
    check(pgtest.redis_cli(port, "exists", "bv:j:b")[1] == "0",
          "the refused json value was written")


ES_ROOT = json.dumps({"name": "big", "cluster_name": "big",
                      "version": {"number": "8.11.0"},
                      "tagline": "You Know, for Search"}).encode()
BIG_DOC = 1100 * MB


def serve_es(c):
    """GET / like Elasticsearch; anything else: {"a": "xxx..."} of BIG_DOC
    bytes, streamed."""
    buf = b""
    while True:
        req = pgtest.read_http_request(c, buf)
        if req is None:
            return
        _, path, headers, buf = req
        if path == "/":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"X-elastic-product: Elasticsearch\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(ES_ROOT), ES_ROOT))
            continue
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n{\"a\": \"" % BIG_DOC)
        chunk = b"x" * MB
        left = BIG_DOC - 9
        while left > 0:
            c.sendall(chunk[:min(left, MB)])
            left -= min(left, MB)
        c.sendall(b"\"}")


def big_es(s, db):
    es = pgtest.TcpServer(serve_es)
    r = pgtest.psql("CREATE SERVER bv_es FOREIGN DATA WRAPPER pgpoly_elastic "
                    "OPTIONS (url 'http://127.0.0.1:%d', timeout_ms '600000');"
                    % es.port, db=db)
    check(r.rc == 0, "creating the Elasticsearch server failed: %s" % r.err)
    s.value("SET pgpoly.max_response_size = '2097151kB';")
    r = s.run("SELECT pgpoly.elastic_request('bv_es', 'GET', '/big') IS NULL;",
              timeout=300)
    check(r.rc == 1 and r.sqlstate == "54000" and "larger than 1 GB" in r.err,
          "a 1.1 GB Elasticsearch answer: want 54000, got rc=%s sqlstate=%s: %s"
          % (r.rc, r.sqlstate, r.err.strip()))
    s.value("RESET pgpoly.max_response_size;")
    es.close()


def test():
    mark = pgtest.pg_log_mark()
    port = pgtest.start_redis()
    db = pgtest.create_db("pgpoly_big_values")
    r = pgtest.psql("""
        CREATE SERVER bv FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d', timeout_ms '600000');
        CREATE FOREIGN TABLE bv_set (key text, member text) SERVER bv
            OPTIONS (table_type 'set', key_prefix 'bv:set:');
        CREATE FOREIGN TABLE bv_str (key text, value text) SERVER bv
            OPTIONS (table_type 'string', key_prefix 'bv:s:');
        CREATE FOREIGN TABLE bv_bytes (key text, value bytea) SERVER bv
            OPTIONS (table_type 'string', key_prefix 'bv:s:');
        CREATE FOREIGN TABLE bv_json (key text, b bytea) SERVER bv
            OPTIONS (table_type 'json', key_prefix 'bv:j:', write_mode 'immediate');
    """ % port, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    s = pgtest.Session(db)
    pid = s.value("SELECT pg_backend_pid();")
    small(s, port)
    if os.environ.get("PGPOLY_BIG_VALUES") == "1":
        big_es(s, db)
        big(s, port)
    else:
        print("note: set PGPOLY_BIG_VALUES=1 for the 300 MB to 1.1 GB values")
    check(s.value("SELECT pg_backend_pid();") == pid,
          "the session's backend changed (it died and psql reconnected?)")
    s.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
