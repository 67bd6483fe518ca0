#!/usr/bin/env python3
"""pgpoly_elastic against a misbehaving Elasticsearch (the stand-in).

One psql session (one backend, cached connection) checks:
  * 429 twice, then success: the query succeeds (retried with backoff),
    and the stand-in saw the retries;
  * 503 more often than the retries allow: ERROR class 08 naming the
    server and URL; 500: ERROR HV000, not retried;
  * a non-JSON 200 body: HV004 "malformed" naming the server;
  * a body cut short: class 08 (transfer failed), never a wrong result;
  * a response delayed 10 s is cancelled by statement_timeout 500ms with
    57014 in < 1.5 s; timeout_ms 400 fails with class 08 in < 2 s;
  * a missing index: ERROR HV00R (fdw_table_not_found) naming the index;
  * a commit whose _bulk gets 429 then succeeds; a bulk item failure fails
    COMMIT naming the document (40001 for an update of a document deleted
    meanwhile), and the PostgreSQL side rolls back; an index under the
    flood-stage block fails writes with 55000 naming it; a COMMIT whose
    third _bulk request fails as a whole says the 20 actions of the first
    two stay applied;
  * after each error the next statement in the same session works, with
    one cached connection; no backend crashed.
Plus failover across urls: the first url refuses connections.
"""

import time

import es_helper
import pgtest

check = pgtest.check


def expect_error(s, sql, state, what, contains=(), timeout=20):
    r = s.run(sql, timeout=timeout)
    ok = r.rc == 1 and (r.sqlstate or "").startswith(state) and \
        all(c in r.err for c in contains)
    check(ok, "%s: want SQLSTATE %s* containing %s; got rc=%s sqlstate=%s: %s"
          % (what, state, contains, r.rc, r.sqlstate, r.err.strip()))
    ok2 = s.value("SELECT 1;") == "1"
    check(ok2, "backend unusable after: %s" % what)
    return r


def test():
    mark = pgtest.pg_log_mark()
    es = es_helper.Standin()
    es.load("fault_docs", 3000)
    db = pgtest.create_db("pgpoly_es_faults")
    dead = pgtest.free_port()      # nothing listens there: failover
    r = pgtest.psql("""
        CREATE SERVER esf FOREIGN DATA WRAPPER pgpoly_elastic
            OPTIONS (url 'http://127.0.0.1:%d, %s', timeout_ms '20000');
        CREATE SERVER esf400 FOREIGN DATA WRAPPER pgpoly_elastic
            OPTIONS (url '%s', timeout_ms '400');
        CREATE FOREIGN TABLE docs (_id text, n int, grp text) SERVER esf
            OPTIONS (index 'fault_docs', fetch_size '1000');
        CREATE FOREIGN TABLE docs400 (_id text, n int) SERVER esf400
            OPTIONS (index 'fault_docs');
        CREATE FOREIGN TABLE missing (_id text) SERVER esf
            OPTIONS (index 'fault_missing');
        CREATE FOREIGN TABLE w (_id text, n int) SERVER esf
            OPTIONS (index 'fault_w', refresh 'true');
        CREATE FOREIGN TABLE wb (_id text, n int) SERVER esf
            OPTIONS (index 'fault_wb', refresh 'true', batch_size '10');
        CREATE TABLE native (id int);
    """ % (dead, es.url, es.url), db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    s = pgtest.Session(db)
    pid = s.value("SELECT pg_backend_pid();")
    q = "SELECT count(*) FROM (SELECT n FROM docs WHERE grp = 'g1' OFFSET 0) x;"
    check(s.value(q) == "1000", "scan through the failover url")

    # 429 twice: retried.
    before = es.data_requests()
    es.faults({"status": 429, "count": 2, "path": "_search"})
    t0 = time.monotonic()
    check(s.value(q) == "1000", "query after two 429s should succeed")
    print("note: two 429s retried in %.2f s" % (time.monotonic() - t0))
    check(es.data_requests() - before >= 3, "the 429s were not retried")

    # 503 beyond the retries; 500 is not retried.
    es.faults({"status": 503, "count": 10, "path": "_search"})
    expect_error(s, q, "08", "503 after retries", ('"esf"', "503"))
    es.clear()
    before = es.data_requests()
    es.faults({"status": 500, "count": 1, "path": "_search"})
    expect_error(s, q, "HV000", "500", ('"esf"', "500"))
    check(es.data_requests() - before == 1, "a 500 was retried")

    # Garbage and truncated bodies.
    es.faults({"garbage": True, "count": 1, "path": "_search"})
    expect_error(s, q, "HV004", "garbage body", ('"esf"', "malformed"))
    es.faults({"truncate": True, "count": 1, "path": "_search"})
    expect_error(s, q, "08", "truncated body", ('"esf"',))

    # A delayed response: statement_timeout and timeout_ms.
    es.faults({"delay_ms": 10000, "count": 1, "path": "_search"})
    s.value("SET statement_timeout = '500ms';")
    r = expect_error(s, q, "57014", "statement_timeout on a slow search")
    check(r.elapsed < 1.5, "statement_timeout 500ms took %.2f s" % r.elapsed)
    print("note: statement_timeout cancelled a delayed search after %.2f s"
          % r.elapsed)
    s.value("RESET statement_timeout;")
    es.faults({"delay_ms": 10000, "count": 1, "path": "_search"})
    r = expect_error(s, "SELECT count(*) FROM (SELECT n FROM docs400 OFFSET 0) x;",
                     "08", "timeout_ms 400", ("timed out",))
    check(r.elapsed < 2.0, "timeout_ms 400 took %.2f s" % r.elapsed)
    es.clear()

    # Missing index.
    expect_error(s, "SELECT * FROM missing;", "HV00R", "missing index",
                 ('"fault_missing"',))

    # Writes: 429 on _bulk retried; an item failure fails COMMIT.
    es.request("PUT", "/fault_w", {"mappings": {"properties": {
        "n": {"type": "long"}}}})
    es.faults({"status": 429, "count": 1, "path": "_bulk"})
    r = s.run("BEGIN; INSERT INTO native VALUES (1); "
              "INSERT INTO w SELECT 'w' || g, g FROM generate_series(1, 50) g; "
              "COMMIT;")
    check(r.rc == 0, "COMMIT after a 429 on _bulk failed: %s" % r.err)
    check(s.value("SELECT count(*) FROM w;") == "50", "50 documents written")
    r = s.run("BEGIN; INSERT INTO native VALUES (2); "
              "INSERT INTO w SELECT 'x' || g, g FROM generate_series(1, 3) g; "
              "UPDATE w SET n = n WHERE _id = 'w1';"
              "COMMIT;")
    check(r.rc == 0, "second commit failed: %s" % r.err)
    es.request("DELETE", "/fault_w")
    es.request("PUT", "/fault_w", {"mappings": {"properties": {
        "n": {"type": "long"}}}})
    r = s.run("BEGIN; INSERT INTO native VALUES (3); "
              "INSERT INTO w VALUES ('good', 1); "
              "UPDATE w SET n = 2 WHERE _id = 'w1'; COMMIT;")
    check(r.rc == 0, "UPDATE of a row not found should be a no-op: %s" % r.err)
    r = s.run("BEGIN; INSERT INTO native VALUES (4);")
    s.run("INSERT INTO w VALUES ('ok2', 2);")
    # The document vanishes between the scan and the commit: the update
    # (on the version it read) fails with 40001 (test_elastic_occ.py).
    s.run("UPDATE w SET n = 3 WHERE _id = 'good';")
    es.request("POST", "/fault_w/_bulk",
               b'{"delete": {"_id": "good"}}\n', ndjson=True)
    r = s.run("COMMIT;")
    check(r.rc == 1 and r.sqlstate == "40001" and '"good"' in r.err
          and "document_missing_exception" in r.err,
          "bulk item failure at COMMIT: want 40001 naming \"good\" and "
          "document_missing_exception; got rc=%s sqlstate=%s: %s"
          % (r.rc, r.sqlstate, r.err.strip()))
    check(s.value("SELECT count(*) FROM native WHERE id = 4;") == "0",
          "the native row of the failed COMMIT is visible")

    # A COMMIT sent in several _bulk requests (batch_size 10) whose third
    # request fails as a whole (500): the first two were applied and stay,
    # and the error says how many actions that is.
    es.faults({"status": 500, "count": 1, "skip": 2, "path": "_bulk"})
    r = s.run("BEGIN; INSERT INTO native VALUES (5); "
              "INSERT INTO wb SELECT 'b' || g, g FROM generate_series(1, 25) g; "
              "COMMIT;")
    es.clear()
    check(r.rc == 1 and "20 earlier action(s)" in r.err and "stay applied" in r.err
          and "retried" not in r.err,
          "a later _bulk request of a COMMIT failed: want the error to say the 20 "
          "earlier actions stay applied (and a 500 is not retried); got rc=%s: %s" % (r.rc, r.err.strip()))
    check(s.value("SELECT count(*) FROM wb;") == "20",
          "the first two _bulk requests' documents are written")

    # The flood-stage disk block (index.blocks.read_only_allow_delete, which
    # Elasticsearch sets and lifts itself, so only the stand-in can hold it):
    # items refused with 429 cluster_block_exception are 55000 naming the
    # index, deletes too; reads still work.
    r = s.run("INSERT INTO w VALUES ('blk', 1);")
    check(r.rc == 0, "INSERT before the block failed: %s" % r.err)
    es.request("PUT", "/fault_w/_settings",
               {"index.blocks.read_only_allow_delete": True})
    expect_error(s, "INSERT INTO w VALUES ('flood', 1);", "55000", "flood-stage block",
                 ('"fault_w"', "is blocked", "TOO_MANY_REQUESTS/12"))
    expect_error(s, "DELETE FROM w WHERE _id = 'blk';", "55000",
                 "flood-stage block, delete", ('"fault_w"', "is blocked"))
    check(s.value("SELECT count(*) FROM w WHERE _id = 'blk';") == "1",
          "a read under the block")
    es.request("PUT", "/fault_w/_settings",
               {"index": {"blocks": {"read_only_allow_delete": None}}})
    r = s.run("INSERT INTO w VALUES ('flood', 1);")
    check(r.rc == 0, "INSERT after the block was lifted failed: %s" % r.err)

    # The session survived everything, with one cached connection.
    check(s.value("SELECT pg_backend_pid();") == pid, "the backend changed")
    check(s.value(q) == "1000", "final query")
    n = s.value("SELECT count(*) FROM pgpoly.connections() WHERE server = 'esf';")
    check(n == "1", "want 1 cached connection to esf, got %s" % n)
    s.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
