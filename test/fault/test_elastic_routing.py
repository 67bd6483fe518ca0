#!/usr/bin/env python3
"""UPDATE and DELETE of Elasticsearch documents indexed with a custom routing.

A document indexed with a routing (PUT idx/_doc/x?routing=r, or "routing"
in a bulk action) lives on the shard r names, not the shard of its _id
(mapping-routing-field.html); a search hit of it carries "_routing": "r".
Every write of the document must carry the same routing.  Before, pgpoly
wrote such documents back through _bulk without it, so on an index of more
than one shard:
  * a partial UPDATE failed its item with 404 document_missing_exception,
    in write_mode 'transactional' a 40001 on every retry;
  * a DELETE (by a field query or by _id) deleted nothing and reported
    its rows deleted (a delete of a missing document is 404 "not_found",
    which is no failure);
  * an UPDATE of _source (a whole-document "index" action) created a
    second document with the same _id on another shard.
Against a private stand-in index of four shards holding routed documents
(and some without routing), each statement runs on the foreign table and on
a native copy, and the two must then read the same (no duplicate, nothing
left behind): a partial UPDATE over a field query, one in write_mode
'immediate', an UPDATE of _source, DELETE by a field query, DELETE by _id
(its row count, and 0 for a missing _id), UPDATE and DELETE ... RETURNING,
a document updated twice and updated then deleted in one transaction (the
second write reads the first from the transaction's own writes and keeps
its routing), pgpoly's own INSERT then UPDATE (no routing), and an UPDATE
and a DELETE by _id of a table in write_mode 'outbox', delivered by the
sync worker.  The
writes' bulk actions carry the routing.  Optimistic concurrency still
works for routed documents: of two interleaved increments the second
COMMIT fails with 40001, and its retry succeeds.
An index whose mapping requires a routing: UPDATE and DELETE work, an
INSERT (pgpoly has no routing for a new document) is an ERROR naming the
document, routing_missing_exception and the mapping.  Two documents with
one _id on two shards (different routings): a SELECT by that _id reads
both (before: one), an UPDATE of it is an ERROR 21000 naming it, not a
write of one of them.  No crash in the log.
"""

import json

import es_helper
import pgtest

check = pgtest.check
bulk, hits, last_bulk = es_helper.bulk, es_helper.hits, es_helper.last_bulk


def load(es, index, mappings=None, n=12):
    """Index of four shards: r<i> routed by u<i % 3>, p<i> by their _id."""
    es.request("PUT", "/" + index, {"settings": {"number_of_shards": 4},
                                    "mappings": mappings or {"properties": {
                                        "n": {"type": "long"},
                                        "grp": {"type": "keyword"}}}})
    lines = []
    rows = []
    for i in range(n):
        lines += [{"index": {"_id": "r%d" % i, "routing": "u%d" % (i % 3)}},
                  {"n": i, "grp": "g%d" % (i % 3)}]
        rows.append(("r%d" % i, i, "g%d" % (i % 3)))
    if not (mappings or {}).get("_routing"):
        for i in range(4):
            lines += [{"index": {"_id": "p%d" % i}}, {"n": 100 + i, "grp": "g%d" % (i % 3)}]
            rows.append(("p%d" % i, 100 + i, "g%d" % (i % 3)))
    bulk(es, index, *lines)
    return rows


def misrouted(es, index, n=12):
    """The routed documents a write without routing misses (404): the
    stand-in shows real Elasticsearch's behaviour for them."""
    out = []
    for i in range(n):
        body = (json.dumps({"update": {"_id": "r%d" % i}}) + "\n" +
                json.dumps({"doc": {}}) + "\n").encode()
        r = es.request("POST", "/%s/_bulk" % index, body, ndjson=True)
        if r["items"][0]["update"]["status"] == 404:
            out.append("r%d" % i)
    return out


class Diff(es_helper.Diff):
    """Each document of the native copy is one document of the index."""

    def check_docs(self, what):
        for doc_id in self.s.value("SELECT id FROM native;").split("\n"):
            if doc_id:
                got = len(hits(self.es, "routed", doc_id))
                check(got == 1, "%s: _id %s is %d documents in the index"
                      % (what, doc_id, got))


def concurrency(db, es):
    """Two interleaved increments of a routed document: the second COMMIT
    fails with 40001 (the write reached the document and its version
    differed), and its retry succeeds (before: even the first failed, and
    every retry would)."""
    a, b = pgtest.Session(db), pgtest.Session(db)
    bulk(es, "routed", {"index": {"_id": "ctr", "routing": "u1"}}, {"n": 0, "grp": "c"})
    stmt = "UPDATE docs SET n = n + 1 WHERE _id = 'ctr';"
    a.value("BEGIN; " + stmt)
    b.value("BEGIN; " + stmt)
    r = a.run("COMMIT;")
    check(r.rc == 0, "concurrency: first COMMIT failed: %s" % r.err.strip()[:600])
    r = b.run("COMMIT;")
    check(r.rc == 1 and r.sqlstate == "40001" and '"ctr"' in r.err,
          "concurrency: second COMMIT: want 40001 naming ctr; got rc=%s %s %s"
          % (r.rc, r.sqlstate, r.err.strip()[:600]))
    r = b.run("BEGIN; %s COMMIT;" % stmt)
    check(r.rc == 0, "concurrency: the retry failed: %s" % r.err.strip()[:600])
    h = hits(es, "routed", "ctr")
    check(len(h) == 1 and h[0]["_source"]["n"] == 2 and h[0].get("_routing") == "u1",
          "concurrency: want one document ctr routed by u1 with n 2: %r" % h)
    a.close()
    b.close()


def required(db, es):
    """An index whose mapping requires a routing."""
    load(es, "req", {"_routing": {"required": True},
                     "properties": {"n": {"type": "long"}, "grp": {"type": "keyword"}}},
         n=6)
    s = pgtest.Session(db)
    r = s.run("BEGIN; UPDATE req SET n = n + 10 WHERE grp = 'g0'; "
              "DELETE FROM req WHERE _id = 'r1'; COMMIT;")
    check(r.rc == 0, "required routing: UPDATE and DELETE failed: %s" % r.err.strip()[:600])
    got = s.value("SELECT string_agg(_id || ':' || n, ',' ORDER BY _id) FROM req;")
    check(got == "r0:10,r2:2,r3:13,r4:4,r5:5",
          "required routing: the documents are %s" % got)
    r = s.run("INSERT INTO req VALUES ('new', 1, 'x');")
    check(r.rc == 1 and '"new"' in r.err and "routing_missing_exception" in r.err
          and "required" in r.err,
          "required routing: INSERT: want an ERROR naming new, routing_missing_exception "
          "and the mapping; got rc=%s %s" % (r.rc, r.err.strip()[:600]))
    s.close()


def duplicate_id(db, es):
    """One _id on two shards: an UPDATE of it cannot tell them apart."""
    for k in range(2, 40):
        bulk(es, "routed", {"index": {"_id": "dup", "routing": "u0"}}, {"n": 1, "grp": "d"},
             {"index": {"_id": "dup", "routing": "v%d" % k}}, {"n": 2, "grp": "d"})
        if len(hits(es, "routed", "dup")) == 2:
            break
        bulk(es, "routed", {"delete": {"_id": "dup", "routing": "u0"}})
    before = sorted(h["_source"]["n"] for h in hits(es, "routed", "dup"))
    # a SELECT by _id reads both (before: an ids query asked for one hit)
    r = pgtest.psql("SELECT n FROM docs WHERE _id = 'dup' ORDER BY n;", db=db)
    check(r.rc == 0 and r.out.split() == ["1", "2"],
          "duplicate _id: SELECT by _id: want 1 and 2; got %r %s" % (r.out, r.err.strip()))
    r = pgtest.psql("UPDATE docs SET n = 0 WHERE _id = 'dup';", db=db, verbose=True)
    check(r.rc != 0 and r.sqlstate == "21000" and '"dup"' in r.err and '"routed"' in r.err,
          "duplicate _id: want ERROR 21000 naming dup and the index; got rc=%s %s %s"
          % (r.rc, r.sqlstate, r.err.strip()[:600]))
    after = sorted(h["_source"]["n"] for h in hits(es, "routed", "dup"))
    check(before == [1, 2] and after == before,
          "duplicate _id: documents %r became %r" % (before, after))


def test():
    mark = pgtest.pg_log_mark()
    es = es_helper.Standin()
    rows = load(es, "routed")
    missed = misrouted(es, "routed")
    check(len(missed) >= 3, "setup: only %r of the routed documents are on a shard "
          "their _id does not name" % missed)
    db = pgtest.create_db("pgpoly_es_routing")
    # name, last column, options
    tables = (("docs", "grp text", "index 'routed'"),
              ("docs_now", "grp text", "index 'routed', write_mode 'immediate'"),
              ("docsrc", "_source jsonb", "index 'routed'"),
              ("docs_out", "grp text", "index 'routed', write_mode 'outbox'"),
              ("req", "grp text", "index 'req'"))
    r = es_helper.create_tables(db, es, "esr", tables, "id text PRIMARY KEY, n int, grp text",
                                rows)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    s = pgtest.Session(db)
    d = Diff(s, es)
    d.same("setup")

    d.both("BEGIN; UPDATE docs SET n = n + 100 WHERE grp = 'g0'; COMMIT;",
           "UPDATE native SET n = n + 100 WHERE grp = 'g0';", "partial UPDATE")
    check('"routing":"u0"' in last_bulk(es),
          "the update actions carry no routing: %s" % last_bulk(es))
    d.both("UPDATE docs_now SET n = n + 1000 WHERE grp = 'g1';",
           "UPDATE native SET n = n + 1000 WHERE grp = 'g1';",
           "partial UPDATE, write_mode 'immediate'")
    d.both("BEGIN; UPDATE docsrc SET n = n * 2, _source = _source || '{\"grp\": \"gx\"}' "
           "WHERE _id IN ('r2', 'r5', 'r11', 'p1'); COMMIT;",
           "UPDATE native SET n = n * 2, grp = 'gx' WHERE id IN ('r2', 'r5', 'r11', 'p1');",
           "UPDATE of _source")
    h = hits(es, "routed", "r2")
    check(len(h) == 1 and h[0].get("_routing") == "u2",
          "UPDATE of _source: r2 must stay one document routed by u2: %r" % h)
    d.both("BEGIN; DELETE FROM docs WHERE grp = 'g1' AND n < 1010; COMMIT;",
           "DELETE FROM native WHERE grp = 'g1' AND n < 1010;", "DELETE by a field query")
    d.delete_by_id(db, "r3", "DELETE 1")
    d.delete_by_id(db, "nosuch", "DELETE 0")
    d.both("UPDATE docs SET n = n + 1 WHERE _id IN ('r6', 'p2') RETURNING _id, n;",
           "UPDATE native SET n = n + 1 WHERE id IN ('r6', 'p2') RETURNING id, n;",
           "UPDATE ... RETURNING")
    d.both("DELETE FROM docs WHERE _id = 'r9' RETURNING *;",
           "DELETE FROM native WHERE id = 'r9' RETURNING *;", "DELETE ... RETURNING *")
    d.both("BEGIN; UPDATE docs SET n = n + 1 WHERE _id = 'r8'; "
           "UPDATE docs SET n = n + 10 WHERE _id = 'r8'; COMMIT;",
           "UPDATE native SET n = n + 11 WHERE id = 'r8';", "two UPDATEs in one transaction")
    d.both("BEGIN; UPDATE docs SET n = n + 1 WHERE _id = 'r6'; "
           "DELETE FROM docs WHERE _id = 'r6'; COMMIT;",
           "DELETE FROM native WHERE id = 'r6';", "UPDATE then DELETE in one transaction")
    d.both("BEGIN; INSERT INTO docs VALUES ('mine', 1, 'm'); "
           "UPDATE docs SET n = n + 1 WHERE _id = 'mine'; COMMIT; "
           "UPDATE docs SET n = n + 1 WHERE _id = 'mine';",
           "INSERT INTO native VALUES ('mine', 3, 'm');", "INSERT then UPDATE (no routing)")
    check('"routing"' not in last_bulk(es),
          "a document pgpoly inserted is written with a routing: %s" % last_bulk(es))
    # write_mode 'outbox': the sync worker delivers an UPDATE and a DELETE
    # (by _id), whose scans read the routing too
    s.value("BEGIN; UPDATE docs_out SET n = n + 5 WHERE grp = 'g2'; "
            "DELETE FROM docs_out WHERE _id = 'r0'; COMMIT;")
    s.value("UPDATE native SET n = n + 5 WHERE grp = 'g2'; DELETE FROM native WHERE id = 'r0';")
    r = s.run("SELECT pgpoly.sync_wait(NULL, '60 s');", timeout=90)
    check(r.rc == 0 and r.out.strip() == "t", "outbox: sync_wait: %r %s" % (r.out, r.err))
    dead = s.value("SELECT count(*) FROM pgpoly.sync_dead_letters;")
    check(dead == "0", "outbox: %s change(s) in the dead letters" % dead)
    d.same("outbox UPDATE and DELETE delivered by the sync worker")
    s.close()

    concurrency(db, es)
    required(db, es)
    duplicate_id(db, es)
    pgtest.check_pg_log(mark)


pgtest.main(test)
