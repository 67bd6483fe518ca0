#!/usr/bin/env python3
"""UPDATE and DELETE of an Elasticsearch table whose index option is an
alias, a pattern or a comma list.

The index option may name an alias of several indices, a wildcard pattern
or a comma list: a search reads every index it names, and each hit carries
the concrete "_index" it came from.  A write is another matter
(aliases.html): one addressed to an alias goes to the alias's write index
(is_write_index), whatever index the document is in, and fails when the
alias has none; one addressed to a pattern or a list fails (an index name
cannot hold "*" or ",", indices-create-index.html).  Before, pgpoly
addressed every bulk action to the table's index option, so:
  * through an alias with a write index, an UPDATE of a document of
    another index failed its partial "update" item with 404
    document_missing_exception (in write_mode 'transactional' a 40001 on
    every retry), an UPDATE of _source (a whole "index" action) created a
    second document with that _id in the write index, and a DELETE deleted
    nothing while reporting the rows deleted (404 "not_found" is no
    failure);
  * through a pattern, a list or an alias without write index, every
    UPDATE and DELETE failed at COMMIT.
Now the scan of an UPDATE's or DELETE's target keeps each hit's _index and
the write is addressed to it.  Against a private stand-in with an alias
over an old index and a write index, each statement runs on the foreign
table and on a native copy, which must then read the same, every document
being one document in the index the native copy says: a partial UPDATE
over a field query (in write_mode 'transactional' and 'immediate'), an
UPDATE of _source, DELETE by a field query, DELETE by _id (its row count),
UPDATE and DELETE ... RETURNING, two UPDATEs of a document in one
transaction, an INSERT (it goes to the write index, where the alias
writes) then its UPDATE.  Optimistic concurrency still works for a
document of the old index: of two interleaved increments the second COMMIT
fails with 40001, and its retry succeeds.  Tables on a pattern, a comma
list and an alias without write index: UPDATE and DELETE work; an INSERT
through the alias without write index fails naming the document and
Elasticsearch's "no write index" reason.  One _id in two indices of the
alias: a SELECT by it reads both, an UPDATE of it is an ERROR 21000 naming
both indices, and neither document changes.  No crash in the log.
"""

import json

import es_helper
import pgtest

check = pgtest.check
bulk, hits, last_bulk = es_helper.bulk, es_helper.hits, es_helper.last_bulk

MAPPINGS = {"properties": {"n": {"type": "long"}, "grp": {"type": "keyword"}}}


def load(es):
    """al-old (a0..a5) and al-new (b0..b3) under alias al, al-new its write
    index; pat-1 and pat-2 (q<i>) under alias nowrite (no write index)."""
    rows = []
    for index, prefix, n in (("al-old", "a", 6), ("al-new", "b", 4),
                             ("pat-1", "q1", 3), ("pat-2", "q2", 3)):
        es.request("PUT", "/" + index, {"mappings": MAPPINGS})
        lines = []
        for i in range(n):
            lines += [{"index": {"_id": "%s%d" % (prefix, i)}},
                      {"n": i, "grp": "g%d" % (i % 2)}]
            if index.startswith("al-"):
                rows.append(("%s%d" % (prefix, i), i, "g%d" % (i % 2), index))
        bulk(es, index, *lines)
    es.request("POST", "/_aliases", {"actions": [
        {"add": {"index": "al-old", "alias": "al"}},
        {"add": {"index": "al-new", "alias": "al", "is_write_index": True}},
        {"add": {"index": "pat-1", "alias": "nowrite"}},
        {"add": {"index": "pat-2", "alias": "nowrite"}}]})
    return rows


class Diff(es_helper.Diff):
    """Each document of the native copy is one document of the alias, in
    the index the copy names."""

    def check_docs(self, what):
        where = self.s.value("SELECT string_agg(id || ':' || idx, ',') FROM native;")
        for pair in (where or "").split(","):
            doc_id, index = pair.split(":")
            got = [h["_index"] for h in hits(self.es, "al", doc_id)]
            check(got == [index], "%s: _id %s is in %r, not only in %s"
                  % (what, doc_id, got, index))


def concurrency(db, es):
    """Two interleaved increments of a document of the old index: the second
    COMMIT fails with 40001, and its retry succeeds (before: even the first
    failed, 404 in the write index, and every retry would)."""
    a, b = pgtest.Session(db), pgtest.Session(db)
    stmt = "UPDATE docs SET n = n + 1 WHERE _id = 'a0';"
    a.value("BEGIN; " + stmt)
    b.value("BEGIN; " + stmt)
    r = a.run("COMMIT;")
    check(r.rc == 0, "concurrency: first COMMIT failed: %s" % r.err.strip()[:600])
    r = b.run("COMMIT;")
    check(r.rc == 1 and r.sqlstate == "40001" and '"a0"' in r.err and '"al-old"' in r.err,
          "concurrency: second COMMIT: want 40001 naming a0 and al-old; got rc=%s %s %s"
          % (r.rc, r.sqlstate, r.err.strip()[:600]))
    r = b.run("BEGIN; %s COMMIT;" % stmt)
    check(r.rc == 0, "concurrency: the retry failed: %s" % r.err.strip()[:600])
    h = hits(es, "al", "a0")
    check(len(h) == 1 and h[0]["_index"] == "al-old" and h[0]["_source"]["n"] == 103,
          "concurrency: want one document a0 in al-old with n 103: %r" % h)
    a.close()
    b.close()


def no_write_index(db, es):
    """A pattern, a comma list and an alias without write index."""
    s = pgtest.Session(db)
    for table in ("pat", "lst", "nw"):
        r = s.run("BEGIN; UPDATE %s SET n = n + 10 WHERE grp = 'g0'; "
                  "DELETE FROM %s WHERE _id = 'q21'; COMMIT;" % (table, table))
        check(r.rc == 0, "%s: UPDATE and DELETE failed: %s" % (table, r.err.strip()[:600]))
        bulk(es, "pat-2", {"index": {"_id": "q21"}}, {"n": 1, "grp": "g1"})
    got = s.value("SELECT string_agg(_id || ':' || n, ',' ORDER BY _id) FROM pat;")
    check(got == "q10:30,q11:1,q12:32,q20:30,q21:1,q22:32",
          "pattern, list, alias without write index: the documents are %s" % got)
    r = s.run("INSERT INTO nw VALUES ('new', 1, 'x');")
    check(r.rc == 1 and '"new"' in r.err and "no write index" in r.err,
          "INSERT through an alias without write index: want an ERROR naming new and "
          "Elasticsearch's reason; got rc=%s %s" % (r.rc, r.err.strip()[:600]))
    s.close()


def duplicate_id(db, es):
    """One _id in two indices of the alias: an UPDATE cannot tell them apart."""
    bulk(es, "al-old", {"index": {"_id": "dup"}}, {"n": 1, "grp": "d"})
    bulk(es, "al-new", {"index": {"_id": "dup"}}, {"n": 2, "grp": "d"})
    r = pgtest.psql("SELECT n FROM docs WHERE _id = 'dup' ORDER BY n;", db=db)
    check(r.rc == 0 and r.out.split() == ["1", "2"],
          "duplicate _id: SELECT by _id: want 1 and 2; got %r %s" % (r.out, r.err.strip()))
    for stmt in ("UPDATE docs SET n = 0 WHERE _id = 'dup';",
                 "DELETE FROM docs WHERE grp = 'd';"):
        r = pgtest.psql(stmt, db=db, verbose=True)
        check(r.rc != 0 and r.sqlstate == "21000" and '"dup"' in r.err and
              '"al-old"' in r.err and '"al-new"' in r.err,
              "duplicate _id: %s want ERROR 21000 naming dup and both indices; got rc=%s %s %s"
              % (stmt, r.rc, r.sqlstate, r.err.strip()[:600]))
    got = sorted((h["_index"], h["_source"]["n"]) for h in hits(es, "al", "dup"))
    check(got == [("al-new", 2), ("al-old", 1)], "duplicate _id: the documents are %r" % got)


def test():
    mark = pgtest.pg_log_mark()
    es = es_helper.Standin()
    rows = load(es)
    db = pgtest.create_db("pgpoly_es_alias")
    # name, last column, options
    tables = (("docs", "grp text", "index 'al'"),
              ("docs_now", "grp text", "index 'al', write_mode 'immediate'"),
              ("docsrc", "_source jsonb", "index 'al'"),
              ("docsrc_now", "_source jsonb", "index 'al', write_mode 'immediate'"),
              ("pat", "grp text", "index 'pat-*'"),
              ("lst", "grp text", "index 'pat-1,pat-2'"),
              ("nw", "grp text", "index 'nowrite'"))
    r = es_helper.create_tables(db, es, "esa", tables,
                                "id text PRIMARY KEY, n int, grp text, idx text", rows)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    s = pgtest.Session(db)
    d = Diff(s, es)
    d.same("setup")

    d.both("BEGIN; UPDATE docs SET n = n + 100 WHERE grp = 'g0'; COMMIT;",
           "UPDATE native SET n = n + 100 WHERE grp = 'g0';", "partial UPDATE")
    check('"_index":"al-old"' in last_bulk(es),
          "the update actions are not addressed to al-old: %s" % last_bulk(es))
    d.both("UPDATE docs_now SET n = n + 1000 WHERE grp = 'g1';",
           "UPDATE native SET n = n + 1000 WHERE grp = 'g1';",
           "partial UPDATE, write_mode 'immediate'")
    d.both("BEGIN; UPDATE docsrc SET n = n * 2, _source = _source || '{\"grp\": \"gx\"}' "
           "WHERE _id IN ('a1', 'a2', 'b1'); COMMIT;",
           "UPDATE native SET n = n * 2, grp = 'gx' WHERE id IN ('a1', 'a2', 'b1');",
           "UPDATE of _source")
    d.both("UPDATE docsrc_now SET _source = _source || '{\"grp\": \"gy\"}' WHERE _id = 'a5';",
           "UPDATE native SET grp = 'gy' WHERE id = 'a5';",
           "UPDATE of _source, write_mode 'immediate' (no version: before, a duplicate)")
    d.both("BEGIN; DELETE FROM docs WHERE grp = 'g1' AND n < 1004; COMMIT;",
           "DELETE FROM native WHERE grp = 'g1' AND n < 1004;", "DELETE by a field query")
    d.delete_by_id(db, "a4", "DELETE 1")
    d.delete_by_id(db, "nosuch", "DELETE 0")
    d.both("UPDATE docs SET n = n + 1 WHERE _id IN ('a0', 'b0') RETURNING _id, n;",
           "UPDATE native SET n = n + 1 WHERE id IN ('a0', 'b0') RETURNING id, n;",
           "UPDATE ... RETURNING")
    d.both("DELETE FROM docs WHERE _id = 'a1' RETURNING *;",
           "DELETE FROM native WHERE id = 'a1' RETURNING id, n, grp;", "DELETE ... RETURNING *")
    d.both("BEGIN; UPDATE docs SET n = n + 1 WHERE _id = 'a2'; "
           "UPDATE docs SET n = n + 10 WHERE _id = 'a2'; COMMIT;",
           "UPDATE native SET n = n + 11 WHERE id = 'a2';", "two UPDATEs in one transaction")
    d.both("BEGIN; INSERT INTO docs VALUES ('mine', 1, 'm'); "
           "UPDATE docs SET n = n + 1 WHERE _id = 'mine'; COMMIT; "
           "UPDATE docs SET n = n + 1 WHERE _id = 'mine';",
           "INSERT INTO native VALUES ('mine', 3, 'm', 'al-new');",
           "INSERT (into the write index) then UPDATE")
    s.close()

    concurrency(db, es)
    no_write_index(db, es)
    duplicate_id(db, es)
    pgtest.check_pg_log(mark)


pgtest.main(test)
