#!/usr/bin/env python3
"""No silently lost update on Elasticsearch: if_seq_no/if_primary_term.

An UPDATE or DELETE of an Elasticsearch table in write_mode 'transactional'
reads its documents when the statement runs and writes them at COMMIT
(_bulk).  The scan of the modification's target asks for each hit's
_seq_no and _primary_term (search "seq_no_primary_term": true), and the
bulk action carries them as if_seq_no/if_primary_term, so a document
another client changed or deleted in between fails that item (409
version_conflict_engine_exception, or 404 document_missing_exception for a
partial update) and the COMMIT fails with 40001 naming the table and the
document, with a hint to retry.  Against a private stand-in:

  * increments interleaved by hand (A reads, B reads, A commits, B
    commits), by _id (an ids query), over a field query, row by row with
    RETURNING, in a WITH of a DELETE of another table and through a
    _source update (a whole "index" action): B's
    COMMIT fails with 40001; the counter equals the successful COMMITs; a
    PostgreSQL row of B's transaction is rolled back;
  * three sessions incrementing in rounds: the counter equals the successes;
  * a document deleted by another client between an UPDATE (to a
    constant) and COMMIT: 40001, the document stays deleted;
  * a DELETE whose WHERE read a value another client changed before
    COMMIT: 40001, the document keeps the other client's value; a DELETE
    by _id alone reads no value and deletes it (no condition);
  * a document written twice in one transaction (two UPDATEs; INSERT then
    UPDATE; UPDATE then DELETE), also with batch_size 1 and with the two
    writes in one _bulk request: COMMIT succeeds, each write is
    conditioned on the version the earlier one returned; changed by
    another client before COMMIT (UPDATE then DELETE by _id, value-reading
    DELETE then INSERT): 40001, and the later write is not applied either;
    an UPDATE of a
    document the transaction inserted with ON CONFLICT DO NOTHING, whose
    "create" another client's document made skip at COMMIT: 40001;
  * EXPLAIN VERBOSE: the target scan of UPDATE and of a value-reading
    DELETE sends "seq_no_primary_term":true; a plain SELECT, a DELETE by
    _id and the tables in write_mode 'immediate' and 'outbox' do not;
  * write_mode 'immediate': unchanged (the later write wins);
  * on Elasticsearch 7.10 (a stand-in paging by scroll), an UPDATE over
    three pages commits, and one of a document another client changed on
    the third page fails with 40001.
No crash in the PostgreSQL log.
"""

import json

import es_helper
import pgtest

check = pgtest.check


def q(sess, sql):
    """The output of a statement that must succeed (else the test stops)."""
    return sess.value(sql, 60)


def conflict(r, what, doc, table="docs"):
    """r is the 40001 of a version conflict naming table and document."""
    return check(r.rc == 1 and r.sqlstate == "40001" and ('"%s"' % table) in r.err
                 and ('"%s"' % doc) in r.err and "retried" in r.err,
                 "%s: want ERROR 40001 naming table \"%s\" and document \"%s\" with a "
                 "retry hint; got rc=%s sqlstate=%s: %s"
                 % (what, table, doc, r.rc, r.sqlstate, r.err.strip()[:600]))


class Docs:
    """Another client of index occ: direct requests to the stand-in."""

    def __init__(self, es, index="occ"):
        self.es, self.index = es, index

    def put(self, doc_id, src):
        self.bulk({"index": {"_id": doc_id}}, src)

    def delete(self, doc_id):
        self.bulk({"delete": {"_id": doc_id}})

    def bulk(self, *lines):
        body = "".join(json.dumps(x) + "\n" for x in lines).encode()
        r = self.es.request("POST", "/%s/_bulk" % self.index, body, ndjson=True)
        if r.get("errors"):
            raise RuntimeError("bulk failed: %s" % r)

    def get(self, doc_id):
        """The _source of doc_id, or None."""
        r = self.es.request("POST", "/%s/_mget" % self.index, {"ids": [doc_id]})
        d = r["docs"][0]
        return d.get("_source") if d.get("found") else None


def interleaved(a, b, docs, sql, what, table="docs"):
    """A and B run sql in their transactions, A commits, then B: B fails."""
    docs.put("ctr", {"n": 0, "grp": "c"})
    q(a, "BEGIN; " + sql)
    q(b, "BEGIN; INSERT INTO native VALUES (1); " + sql)
    q(a, "COMMIT;")
    conflict(b.run("COMMIT;"), what, "ctr", table)
    n = (docs.get("ctr") or {}).get("n")
    check(n == 1, "%s: counter is %r after one successful COMMIT, want 1" % (what, n))
    c = q(b, "SELECT count(*) FROM native;")
    check(c == "0", "%s: the native row of the failed COMMIT stayed (%s)" % (what, c))


def rounds(sessions, docs, nrounds):
    """Every session reads, then each commits in turn; retries count."""
    docs.put("ctr", {"n": 0, "grp": "c"})
    ok = pgtest.commit_rounds(sessions, "UPDATE docs SET n = n + 1 WHERE _id = 'ctr';",
                              nrounds, lambda r: conflict(r, "round COMMIT", "ctr"))
    n = docs.get("ctr")["n"]
    check(n == ok, "%d sessions x %d rounds: counter %r, want the %d successes"
          % (len(sessions), nrounds, n, ok))


def deleted_meanwhile(a, docs, sql, what, table="docs"):
    """A document deleted after the UPDATE read it: COMMIT fails, it stays gone."""
    docs.put("gone", {"n": 5, "grp": "old"})
    q(a, "BEGIN; " + sql)
    docs.delete("gone")
    conflict(a.run("COMMIT;"), what, "gone", table)
    check(docs.get("gone") is None, "%s: the deleted document exists again: %r"
          % (what, docs.get("gone")))


def twice(a, docs, sql, want, what):
    """One transaction writes a document twice: COMMIT succeeds."""
    docs.put("two", {"n": 0, "grp": "t"})
    r = a.run("BEGIN; " + sql + " COMMIT;")
    check(r.rc == 0, "%s: COMMIT failed: %s" % (what, r.err.strip()[:600]))
    got = docs.get("two")
    check(got == want, "%s: document is %r, want %r" % (what, got, want))


def scroll_paging(db):
    """Elasticsearch < 7.12 pages a scan by scroll: the hits of every scroll
    page carry the versions the search asked for, so an UPDATE over more
    than one page commits, and one of a document changed on a later page
    fails with 40001 (before: the stand-in rendered scroll pages without
    them, hiding the path from the tests)."""
    old = es_helper.Standin("--version", "7.10.2")
    try:
        old.load("occ", 12)
        r = pgtest.psql("""
            CREATE SERVER esold FOREIGN DATA WRAPPER pgpoly_elastic
                OPTIONS (url '%s', timeout_ms '20000');
            CREATE FOREIGN TABLE old5 (_id text, n int, grp text) SERVER esold
                OPTIONS (index 'occ', fetch_size '5');""" % old.url, db=db)
        if not check(r.rc == 0, "scroll: setup failed: %s" % r.err):
            return
        s = pgtest.Session(db)
        plan = explain_body(s, "UPDATE old5 SET n = n + 1;")
        check("scroll" in plan, "scroll: the plan does not page by scroll: %s" % plan)
        r = s.run("BEGIN; UPDATE old5 SET n = n + 1; COMMIT;")
        check(r.rc == 0, "scroll: UPDATE of 12 documents in pages of 5 failed: %s"
              % r.err.strip()[:400])
        got = sum(d["_source"]["n"] for d in old.request(
            "POST", "/occ/_mget", {"ids": ["d%d" % i for i in range(12)]})["docs"])
        check(got == sum(range(12)) + 12, "scroll: the increments sum to %d" % got)
        q(s, "BEGIN; UPDATE old5 SET n = n + 1;")
        Docs(old).put("d11", {"n": 100, "grp": "g2"})
        conflict(s.run("COMMIT;"), "scroll: a document of the third page changed", "d11",
                 "old5")
        check(Docs(old).get("d11")["n"] == 100, "scroll: the other client's value was "
              "overwritten: %r" % Docs(old).get("d11"))
        s.close()
    finally:
        old.stop()


def explain_body(a, sql):
    return q(a, "EXPLAIN (VERBOSE, COSTS OFF) " + sql)


def test():
    mark = pgtest.pg_log_mark()
    es = es_helper.Standin()
    es.request("PUT", "/occ", {"mappings": {"properties": {
        "n": {"type": "long"}, "grp": {"type": "keyword"}}}})
    docs = Docs(es)
    db = pgtest.create_db("pgpoly_es_occ")
    r = pgtest.psql("""
        CREATE SERVER eso FOREIGN DATA WRAPPER pgpoly_elastic
            OPTIONS (url '%s', timeout_ms '20000');
        CREATE FOREIGN TABLE docs (_id text, n int, grp text) SERVER eso
            OPTIONS (index 'occ');
        CREATE FOREIGN TABLE docs1 (_id text, n int, grp text) SERVER eso
            OPTIONS (index 'occ', batch_size '1');
        CREATE FOREIGN TABLE docsrc (_id text, n int, _source jsonb) SERVER eso
            OPTIONS (index 'occ');
        CREATE FOREIGN TABLE docs_now (_id text, n int, grp text) SERVER eso
            OPTIONS (index 'occ', write_mode 'immediate');
        CREATE FOREIGN TABLE docs_out (_id text, n int, grp text) SERVER eso
            OPTIONS (index 'occ', write_mode 'outbox');
        CREATE TABLE native (id int);
    """ % es.url, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    a, b, c = pgtest.Session(db), pgtest.Session(db), pgtest.Session(db)

    # Only the scan of a modification's target asks for versions.
    seq = '"seq_no_primary_term":true'
    for sql, want in (
            ("UPDATE docs SET n = n + 1 WHERE _id = 'ctr';", True),
            ("UPDATE docs SET grp = 'x' WHERE n > 3;", True),
            ("DELETE FROM docs WHERE _id = 'd' AND n < 10;", True),
            ("DELETE FROM docs WHERE _id = 'd';", False),
            ("DELETE FROM docs;", False),
            ("SELECT * FROM docs WHERE _id = 'ctr';", False),
            ("SELECT n FROM docs WHERE n > 3 ORDER BY n LIMIT 2;", False),
            ("UPDATE docs_now SET n = n + 1 WHERE _id = 'ctr';", False),
            ("UPDATE docs_out SET n = n + 1 WHERE _id = 'ctr';", False)):
        plan = explain_body(a, sql)
        check((seq in plan) == want, "EXPLAIN VERBOSE %s: %s seq_no_primary_term:\n%s"
              % (sql, "want" if want else "must not have", plan))

    interleaved(a, b, docs, "UPDATE docs SET n = n + 1 WHERE _id = 'ctr';",
                "UPDATE by _id")
    interleaved(a, b, docs, "UPDATE docs SET n = n + 1 WHERE grp = 'c';",
                "UPDATE over a field query")
    interleaved(a, b, docs, "UPDATE docs SET n = n + 1 WHERE _id = 'ctr' RETURNING n;",
                "UPDATE ... RETURNING")
    interleaved(a, b, docs,
                "UPDATE docsrc SET n = n + 1, _source = _source WHERE _id = 'ctr';",
                "UPDATE of _source (an index action)", "docsrc")
    interleaved(a, b, docs,
                "WITH u AS (UPDATE docs SET n = n + 1 WHERE _id = 'ctr' RETURNING n) "
                "DELETE FROM native WHERE id < 0;", "UPDATE in a WITH of a DELETE")
    rounds([a, b, c], docs, 5)

    deleted_meanwhile(a, docs, "UPDATE docs SET grp = 'new' WHERE _id = 'gone';",
                      "constant UPDATE, document deleted before COMMIT")
    deleted_meanwhile(a, docs, "UPDATE docsrc SET _source = '{\"n\": 9}' WHERE _id = 'gone';",
                      "_source UPDATE, document deleted before COMMIT", "docsrc")

    # A DELETE whose WHERE read a value changed meanwhile fails ...
    docs.put("d", {"n": 5, "grp": "d"})
    q(a, "BEGIN; DELETE FROM docs WHERE _id = 'd' AND n < 10;")
    docs.put("d", {"n": 50, "grp": "d"})
    conflict(a.run("COMMIT;"), "DELETE whose WHERE read a changed value", "d")
    got = docs.get("d")
    check(got == {"n": 50, "grp": "d"},
          "the DELETE removed or changed a document changed meanwhile: %r" % got)
    # ... one by _id alone reads nothing and deletes.
    q(a, "BEGIN; DELETE FROM docs WHERE _id = 'd';")
    docs.put("d", {"n": 51, "grp": "d"})
    r = a.run("COMMIT;")
    check(r.rc == 0 and docs.get("d") is None,
          "DELETE by _id after a change: rc=%s, document %r: %s"
          % (r.rc, docs.get("d"), r.err.strip()[:400]))

    # A document written twice in one transaction.
    for tbl in ("docs", "docs1"):
        twice(a, docs, "UPDATE %s SET n = n + 1 WHERE _id = 'two'; "
              "UPDATE %s SET n = n + 10 WHERE _id = 'two';" % (tbl, tbl),
              {"n": 11, "grp": "t"}, "two UPDATEs (%s)" % tbl)
        twice(a, docs, "DELETE FROM %s WHERE _id = 'two'; "
              "INSERT INTO %s VALUES ('two', 7, 'i'); "
              "UPDATE %s SET n = n * 2 WHERE _id = 'two';" % (tbl, tbl, tbl),
              {"n": 14, "grp": "i"}, "DELETE, INSERT, UPDATE (%s)" % tbl)
    twice(a, docs, "UPDATE docs SET n = n + 1 WHERE _id = 'two'; "
          "DELETE FROM docs WHERE _id = 'two' AND n = 1;", None,
          "UPDATE then a value-reading DELETE")
    # ... and the second write of the two still checks its version.
    docs.put("two", {"n": 0, "grp": "t"})
    q(a, "BEGIN; UPDATE docs SET n = n + 1 WHERE _id = 'two'; "
      "UPDATE docs SET n = n + 10 WHERE _id = 'two';")
    docs.put("two", {"n": 100, "grp": "t"})
    conflict(a.run("COMMIT;"), "two UPDATEs, changed meanwhile", "two")
    check(docs.get("two")["n"] == 100, "the other client's value was overwritten: %r"
          % docs.get("two"))

    # ... and a later write of a document whose versioned write fails with
    # 40001 is not applied either: it goes in a later _bulk request (before:
    # in the same one, so a DELETE by _id after the UPDATE deleted the other
    # client's document, an INSERT after a value-reading DELETE overwrote it)
    for sql, what in (
            ("UPDATE docs SET n = n + 1 WHERE _id = 'two'; DELETE FROM docs WHERE _id = 'two';",
             "UPDATE then DELETE by _id"),
            ("DELETE FROM docs WHERE _id = 'two' AND n = 0; "
             "INSERT INTO docs VALUES ('two', 7, 'i');", "value-reading DELETE then INSERT")):
        docs.put("two", {"n": 0, "grp": "t"})
        q(a, "BEGIN; " + sql)
        docs.put("two", {"n": 100, "grp": "t"})
        conflict(a.run("COMMIT;"), what + ", changed meanwhile", "two")
        check(docs.get("two") == {"n": 100, "grp": "t"}, "%s: the other client's document "
              "was deleted or overwritten by the failed COMMIT: %r" % (what, docs.get("two")))
    # A create (ON CONFLICT DO NOTHING) that another client's document
    # makes skip at COMMIT gives the UPDATE read from it no version: 40001,
    # and the other client's document is left alone.
    if docs.get("cr") is not None:
        docs.delete("cr")
    q(a, "BEGIN; INSERT INTO docs VALUES ('cr', 1, 'mine') ON CONFLICT DO NOTHING; "
      "UPDATE docs SET n = n + 1 WHERE _id = 'cr';")
    docs.put("cr", {"n": 100, "grp": "theirs"})
    conflict(a.run("COMMIT;"), "UPDATE of a skipped create", "cr")
    check(docs.get("cr") == {"n": 100, "grp": "theirs"},
          "the other client's document was changed: %r" % docs.get("cr"))

    # write_mode 'immediate' is unchanged: each statement writes at once.
    docs.put("ctr", {"n": 0, "grp": "c"})
    q(a, "UPDATE docs_now SET n = n + 1 WHERE _id = 'ctr';")
    q(b, "UPDATE docs_now SET n = n + 1 WHERE _id = 'ctr';")
    check(docs.get("ctr")["n"] == 2, "immediate increments: %r" % docs.get("ctr"))

    for s in (a, b, c):
        s.close()
    scroll_paging(db)
    pgtest.check_pg_log(mark)


pgtest.main(test)
