#!/usr/bin/env python3
"""pgpoly_elastic deep paging, context cleanup, auth and OpenSearch.

Against private stand-ins:
  * a 25,000-document scan (beyond max_result_window) returns every row
    once, through a point in time + search_after; the PIT is closed at the
    end; a LIMIT within the window is one request;
  * a scan cancelled mid-way (statement_timeout while a page is delayed)
    and a cursor dropped by ROLLBACK leave no PIT open once the connection
    is used again;
  * an OpenSearch stand-in (it reports version 2.x and has no _pit) is
    detected from GET / and scanned with scroll; the scroll is cleared;
  * basic auth and ApiKey come from the user mapping; without credentials
    the error is 28000 and never shows a secret.
"""

import es_helper
import pgtest

check = pgtest.check
N = 25000


def test():
    mark = pgtest.pg_log_mark()
    es = es_helper.Standin()
    es.load("deep", N)
    osd = es_helper.Standin("--distribution", "opensearch", "--version", "2.11.0")
    osd.load("deep", 5000)
    basic = es_helper.Standin("--auth", "elastic:s3cr3t-pw")
    key = es_helper.Standin("--api-key", "k3y-VALUE")
    db = pgtest.create_db("pgpoly_es_paging")
    r = pgtest.psql("""
        CREATE SERVER es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%s');
        CREATE SERVER os FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%s');
        CREATE SERVER basic FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%s');
        CREATE SERVER apikey FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%s');
        CREATE FOREIGN TABLE deep (_id text, n int, grp text) SERVER es
            OPTIONS (fetch_size '3000');
        CREATE FOREIGN TABLE osdeep (_id text, n int, grp text) SERVER os
            OPTIONS (index 'deep', fetch_size '1000');
        CREATE FOREIGN TABLE bdeep (_id text) SERVER basic OPTIONS (index 'deep');
        CREATE FOREIGN TABLE kdeep (_id text) SERVER apikey OPTIONS (index 'deep');
    """ % (es.url, osd.url, basic.url, key.url), db=db)
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
    before = es.stats()["requests"]
    check(s.value("SELECT count(*) FROM (SELECT n FROM deep ORDER BY n LIMIT 500) x;")
          == "500", "limit 500")
    check(es.stats()["requests"] - before == 1, "a pushed LIMIT took %d requests"
          % (es.stats()["requests"] - before))

    # Cancel mid-scan: the PIT is closed at the next use of the connection.
    s.value("SET statement_timeout = '700ms';")
    es.faults({"delay_ms": 10000, "count": 1, "exact": "/_search"})
    r = s.run("SELECT count(*) FROM (SELECT n FROM deep OFFSET 0) x;", timeout=20)
    s.value("RESET statement_timeout;")
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
    left = pgtest.wait_for(lambda: es.stats()["open_pits"] == 0, timeout=5)
    check(left, "PITs left open after cancelled scans: %d"
          % es.stats()["open_pits"])

    # OpenSearch: scroll.
    got = s.value("SELECT count(*) || ' ' || sum(n) FROM (SELECT n FROM osdeep OFFSET 0) x;",
                  timeout=60)
    check(got == "5000 12497500", "OpenSearch scroll scan: %s" % got)
    st = osd.stats()
    check(st["counts"].get("POST /_search/scroll", 0) >= 4 and st["open_scrolls"] == 0,
          "want scroll paging and no scroll left: %s" % st["counts"])

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
