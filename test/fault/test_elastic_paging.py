#!/usr/bin/env python3
"""pgpoly_elastic deep paging, context cleanup, auth and OpenSearch.

Against private stand-ins:
  * a 25,000-document scan (beyond max_result_window) returns every row
    once, through a point in time + search_after; the PIT is closed at the
    end; a LIMIT within the window is one request;
  * a scan cancelled mid-way (statement_timeout while a page is delayed)
    and a cursor dropped by ROLLBACK leave no PIT open once the connection
    is used again;
  * an OpenSearch 2.11 stand-in (no /_pit, OpenSearch's own PIT API) is
    detected from GET / and scanned with one PIT opened by
    POST /<index>/_search/point_in_time, pages sent to POST /_search with
    "pit", search_after and the _id tiebreaker (no _shard_doc before
    OpenSearch 3.3), and the PIT deleted with DELETE /_search/point_in_time
    {"pit_id": [...]} at the end, after a cancel and after a cursor dropped
    by ROLLBACK; OpenSearch 3.3 pages with the _shard_doc tiebreaker;
  * OpenSearch 2.3 (before its PIT API) still pages with scroll, and the
    scroll is cleared;
  * basic auth and ApiKey come from the user mapping; without credentials
    the error is 28000 and never shows a secret.
"""

import es_helper
import pgtest

check = pgtest.check
N = 25000
# timeout_ms of the stand-ins' servers.  The stand-in sorts every document
# for each page: on a loaded machine (CI, tests side by side) a page of the
# 25,000-document index took more than the default 5000 ms, and the scan
# failed with 08006 "request timed out".  No case here is about timeout_ms;
# cancel_mid_scan()'s statement_timeout must stay far below it.
TIMEOUT_MS = int(60000 * pgtest.SCALE)


def cancel_mid_scan(s, standin):
    """Set a statement_timeout that cancels the next scan while standin
    delays its first page on POST /_search.  Both times are stretched by
    PGPOLY_TIMEOUT_SCALE (as is the servers' timeout_ms, TIMEOUT_MS): under
    valgrind the backend may need more than 700 ms to reach that page, and
    the delay, left unused, would then hit the next statement instead (the
    caller clears it after the scan).
    """
    s.value("SET statement_timeout = '%dms';" % (700 * pgtest.SCALE))
    standin.faults({"delay_ms": int(10000 * pgtest.SCALE), "count": 1,
                    "exact": "/_search"})


def cancelled_scan(s, standin, sql):
    """Run sql under cancel_mid_scan until the cancel strikes while the
    stand-in holds back the first page.  On a loaded machine it can strike
    earlier, while the PIT is being opened: that PIT's id never reached the
    backend and only its keep_alive ends it, as on a real cluster.  Returns
    the last result and the number of PITs orphaned that way.
    """
    orphans = 0
    for attempt in range(4):
        pits = standin.stats()["open_pits"]
        cancel_mid_scan(s, standin)
        r = s.run(sql, timeout=20)
        unused = standin.stats()["faults_left"]
        standin.clear()
        s.value("RESET statement_timeout;")
        if unused == 0:
            break
        orphans += standin.stats()["open_pits"] - pits
    return r, orphans


def test():
    mark = pgtest.pg_log_mark()
    es = es_helper.Standin()
    es.load("deep", N)
    osd = es_helper.Standin("--distribution", "opensearch", "--version", "2.11.0")
    osd.load("deep", 5000)
    os33 = es_helper.Standin("--distribution", "opensearch", "--version", "3.3.0")
    os33.load("deep", 5000)
    os23 = es_helper.Standin("--distribution", "opensearch", "--version", "2.3.0")
    os23.load("deep", 5000)
    basic = es_helper.Standin("--auth", "elastic:s3cr3t-pw")
    key = es_helper.Standin("--api-key", "k3y-VALUE")
    db = pgtest.create_db("pgpoly_es_paging")
    r = pgtest.psql("""
        CREATE SERVER es FOREIGN DATA WRAPPER pgpoly_elastic
            OPTIONS (url '%s', timeout_ms '%d');
        CREATE SERVER os FOREIGN DATA WRAPPER pgpoly_elastic
            OPTIONS (url '%s', timeout_ms '%d');
        CREATE SERVER os33 FOREIGN DATA WRAPPER pgpoly_elastic
            OPTIONS (url '%s', timeout_ms '%d');
        CREATE SERVER os23 FOREIGN DATA WRAPPER pgpoly_elastic
            OPTIONS (url '%s', timeout_ms '%d');
        CREATE SERVER basic FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%s');
        CREATE SERVER apikey FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%s');
        CREATE FOREIGN TABLE deep (_id text, n int, grp text) SERVER es
            OPTIONS (fetch_size '3000');
        CREATE FOREIGN TABLE osdeep (_id text, n int, grp text) SERVER os
            OPTIONS (index 'deep', fetch_size '1000');
        CREATE FOREIGN TABLE os33deep (_id text, n int) SERVER os33
            OPTIONS (index 'deep', fetch_size '1000');
        CREATE FOREIGN TABLE os23deep (_id text, n int) SERVER os23
            OPTIONS (index 'deep', fetch_size '1000');
        CREATE FOREIGN TABLE bdeep (_id text) SERVER basic OPTIONS (index 'deep');
        CREATE FOREIGN TABLE kdeep (_id text) SERVER apikey OPTIONS (index 'deep');
    """ % (es.url, TIMEOUT_MS, osd.url, TIMEOUT_MS, os33.url, TIMEOUT_MS, os23.url,
           TIMEOUT_MS, basic.url, key.url), db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    s = pgtest.Session(db)

    before = es.stats()["counts"]
    got = s.value("SELECT count(*) || ' ' || count(DISTINCT _id) || ' ' || sum(n) "
                  "FROM (SELECT _id, n FROM deep OFFSET 0) x;", timeout=120)
    want = "%d %d %d" % (N, N, N * (N - 1) // 2)
    check(got == want, "deep scan: want %s, got %s" % (want, got))
    st = es.stats()
    opened = st["counts"].get("POST /{index}/_pit", 0) - before.get("POST /{index}/_pit", 0)
    check(opened == 1, "want one PIT opened, got %d" % opened)
    check(st["open_pits"] == 0, "PIT still open after the scan")
    sorted_rows = s.value("SELECT string_agg(n::text, ',') FROM "
                          "(SELECT n FROM deep ORDER BY n DESC OFFSET 24997) x;",
                          timeout=120)
    check(sorted_rows == "2,1,0", "sorted deep tail: %r" % sorted_rows)
    before = es.data_requests()
    check(s.value("SELECT count(*) FROM (SELECT n FROM deep ORDER BY n LIMIT 500) x;")
          == "500", "limit 500")
    took = es.data_requests() - before
    check(took == 1, "a pushed LIMIT took %d requests: %s" % (
        took, [(r.get("method"), r.get("path")) for r in es.stats()["last_requests"][-took:]]))

    # Cancel mid-scan: the PIT is closed at the next use of the connection.
    r, orphans = cancelled_scan(s, es, "SELECT count(*) FROM (SELECT n FROM deep OFFSET 0) x;")
    check(r.rc == 1 and r.sqlstate == "57014", "cancel mid-scan: %s %s"
          % (r.sqlstate, r.err.strip()))
    # A cursor dropped by ROLLBACK.
    r = s.run("BEGIN; DECLARE c CURSOR FOR SELECT n FROM deep; "
              "FETCH 4000 FROM c;", timeout=60)
    check(r.rc == 0, "cursor: %s" % r.err)
    check(es.stats()["open_pits"] >= 1, "the cursor's PIT is not open")
    s.run("ROLLBACK;")
    check(s.value("SELECT count(*) FROM deep WHERE _id = 'd1';") == "1",
          "lookup after the cancelled scans")
    left = pgtest.wait_for(lambda: es.stats()["open_pits"] == orphans, timeout=5)
    check(left, "PITs left open after cancelled scans: %d (%d orphaned by a cancel "
          "during the PIT's opening)" % (es.stats()["open_pits"], orphans))

    # OpenSearch 2.11: its own PIT API, search_after with the _id tiebreaker.
    got = s.value("SELECT count(*) || ' ' || count(DISTINCT _id) || ' ' || sum(n) "
                  "FROM (SELECT _id, n FROM osdeep OFFSET 0) x;", timeout=60)
    check(got == "5000 5000 12497500", "OpenSearch PIT scan: %s" % got)
    st = osd.stats()
    c = st["counts"]
    check(c.get("POST /{index}/_search/point_in_time", 0) == 1,
          "want one OpenSearch PIT created: %s" % c)
    check(c.get("DELETE /_search/point_in_time", 0) == 1 and st["open_pits"] == 0,
          "want the OpenSearch PIT deleted at scan end: %s, open %d"
          % (c, st["open_pits"]))
    # a full first plain page, then 5 full PIT pages and an empty one
    check(c.get("POST /_search", 0) == 6,
          "want 6 PIT pages on POST /_search: %s" % c)
    check(not any(k.endswith("/_pit") or "scroll" in k for k in c),
          "OpenSearch 2.11 used /_pit or scroll: %s" % c)
    pages = [r for r in st["last_requests"]
             if r["method"] == "POST" and r["path"] == "/_search"]
    check(len(pages) == 6 and all('"sort":[{"_id":"asc"}]' in r["body"]
                                  and '"pit":{"id":' in r["body"]
                                  and "_shard_doc" not in r["body"]
                                  for r in pages),
          "PIT pages without the _id tiebreaker: %s" % [r["body"] for r in pages])
    check(sum('"search_after":["d' in r["body"] for r in pages) == 5,
          "want search_after on the 5 later pages: %s" % [r["body"] for r in pages])
    deletes = [r for r in st["last_requests"]
               if r["method"] == "DELETE" and r["path"] == "/_search/point_in_time"]
    check(len(deletes) == 1 and deletes[0]["body"].startswith('{"pit_id":["'),
          "want DELETE /_search/point_in_time {\"pit_id\": [...]}: %s" % deletes)
    got = s.value("SELECT string_agg(n::text, ',') FROM "
                  "(SELECT n FROM osdeep ORDER BY n DESC OFFSET 4997) x;", timeout=60)
    check(got == "2,1,0", "OpenSearch sorted deep tail: %r" % got)
    body = [r["body"] for r in osd.stats()["last_requests"]
            if r["path"] == "/_search"][-1:]
    check(body and '"sort":[{"n":{"order":"desc","missing":"_first"}},{"_id":"asc"}]'
          in body[0], "sorted OpenSearch PIT page: %s" % body)
    check(osd.stats()["open_pits"] == 0, "OpenSearch PIT open after the sorted scan")

    # OpenSearch: cancel mid-scan and a cursor dropped by ROLLBACK.
    deleted = osd.stats()["counts"].get("DELETE /_search/point_in_time", 0)
    r, os_orphans = cancelled_scan(s, osd,
                                   "SELECT count(*) FROM (SELECT n FROM osdeep OFFSET 0) x;")
    check(r.rc == 1 and r.sqlstate == "57014", "OpenSearch cancel mid-scan: %s %s"
          % (r.sqlstate, r.err.strip()))
    check(osd.stats()["open_pits"] == 1 + os_orphans, "the cancelled scan's PIT is not open")
    r = s.run("BEGIN; DECLARE c CURSOR FOR SELECT n FROM osdeep; "
              "FETCH 1500 FROM c;", timeout=60)
    check(r.rc == 0, "OpenSearch cursor: %s" % r.err)
    check(osd.stats()["open_pits"] >= 1, "the OpenSearch cursor's PIT is not open")
    s.run("ROLLBACK;")
    check(s.value("SELECT count(*) FROM osdeep WHERE _id = 'd1';") == "1",
          "OpenSearch lookup after the cancelled scans")
    left = pgtest.wait_for(lambda: osd.stats()["open_pits"] == os_orphans, timeout=5)
    st = osd.stats()
    check(left, "OpenSearch PITs left open after cancelled scans: %d" % st["open_pits"])
    check(st["counts"].get("DELETE /_search/point_in_time", 0) - deleted >= 2,
          "the cancelled OpenSearch PITs were not deleted: %s" % st["counts"])

    # OpenSearch 3.3 has _shard_doc.
    got = s.value("SELECT count(*) || ' ' || count(DISTINCT _id) FROM "
                  "(SELECT _id FROM os33deep OFFSET 0) x;", timeout=60)
    check(got == "5000 5000", "OpenSearch 3.3 PIT scan: %s" % got)
    st = os33.stats()
    pages = [r["body"] for r in st["last_requests"] if r["path"] == "/_search"]
    check(st["counts"].get("POST /{index}/_search/point_in_time", 0) == 1
          and st["open_pits"] == 0 and len(pages) == 6
          and all('{"_shard_doc":"asc"}' in b for b in pages),
          "OpenSearch 3.3: want PIT paging with _shard_doc: %s %s"
          % (st["counts"], pages))

    # OpenSearch 2.3 (no PIT API yet): scroll.
    got = s.value("SELECT count(*) || ' ' || sum(n) FROM (SELECT n FROM os23deep OFFSET 0) x;",
                  timeout=60)
    check(got == "5000 12497500", "OpenSearch 2.3 scroll scan: %s" % got)
    st = os23.stats()
    check(st["counts"].get("POST /_search/scroll", 0) >= 4 and st["open_scrolls"] == 0,
          "want scroll paging and no scroll left: %s" % st["counts"])
    check(not any("point_in_time" in k or k.endswith("_pit") for k in st["counts"]),
          "OpenSearch 2.3 was asked for a PIT: %s" % st["counts"])

    # Credentials from the user mapping.
    r = s.run("SELECT count(*) FROM bdeep;")
    check(r.rc == 1 and r.sqlstate == "28000" and "s3cr3t" not in r.err,
          "no credentials: want 28000, got %s: %s" % (r.sqlstate, r.err.strip()))
    s.run("CREATE USER MAPPING FOR CURRENT_USER SERVER basic "
          "OPTIONS (username 'elastic', password 's3cr3t-pw');")
    s.run("CREATE USER MAPPING FOR CURRENT_USER SERVER apikey "
          "OPTIONS (api_key 'k3y-VALUE');")
    basic.request("PUT", "/deep", headers={
        "Authorization": "Basic ZWxhc3RpYzpzM2NyM3QtcHc="})
    key.request("PUT", "/deep", headers={"Authorization": "ApiKey k3y-VALUE"})
    check(s.value("SELECT count(*) FROM bdeep;") == "0", "basic auth works")
    check(s.value("SELECT count(*) FROM kdeep;") == "0", "ApiKey works")
    s.run("ALTER USER MAPPING FOR CURRENT_USER SERVER apikey "
          "OPTIONS (SET api_key 'wrong-KEY');")
    r = s.run("SELECT count(*) FROM kdeep;")
    check(r.rc == 1 and r.sqlstate == "28000" and "wrong-KEY" not in r.err,
          "wrong api key: want 28000 without the key, got %s: %s"
          % (r.sqlstate, r.err.strip()))
    r = s.run("EXPLAIN VERBOSE SELECT * FROM kdeep;")
    check("wrong-KEY" not in r.out + r.err, "EXPLAIN shows the api key")
    s.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
