#!/usr/bin/env python3
"""One _id, several documents: INSERT routing, ON CONFLICT DO NOTHING and
the duplicate check of UPDATE/DELETE.

Elasticsearch keeps an _id unique per shard of one index only
(mapping-routing-field.html: "the uniqueness of the _id is not guaranteed
across all of the shards in the index"); an alias, a list or a pattern
reads several indices.  Before:
  * INSERT had no way to give a routing: on an index whose documents are
    routed, a document could only be indexed by its _id's shard, and an
    index requiring a routing refused every INSERT;
  * INSERT ... ON CONFLICT DO NOTHING of an _id that exists under another
    routing, or in another index of an alias, created a second document
    with that _id (the check asked the _id's shard of one index only, and
    a "create" action checks only the shard it lands on), in write_mode
    'transactional' and 'immediate' alike;
  * read-your-writes was keyed by _id alone: after an UPDATE of one of two
    documents with one _id (in two indices of an alias, or with two
    routings) the transaction saw the updated one only;
  * the duplicate _id check (21000) of an UPDATE or DELETE counted rows the
    statement's local (non-pushed) conditions exclude, so a DELETE that
    names exactly one of the two documents failed.
Now a column named _routing reads each hit's _routing and gives an INSERT
its routing (an UPDATE cannot change it: 0A000; an empty one, which
Elasticsearch takes for none, is 22023); ON CONFLICT DO NOTHING
looks for the _id in every index and shard the table reads (an ids
search, in pages of fetch_size hits: before, one of 10000 failed on an
index whose max_result_window is smaller) and in real time (multi-get,
with the row's routing), and skips
the row when it exists anywhere; a buffered write hides only the document
of its index and routing; only the rows an UPDATE or DELETE
actually writes count for the duplicate check.
A local condition on tableoid (which the executor sets only after the
scan returns a row) made the target scan drop what it read of every
document: the UPDATE or DELETE was then sent without the routing (and, in
write_mode 'transactional', with a version condition of -1), a bogus 40001
on every retry, or in write_mode 'immediate' a DELETE reported done that
deleted nothing.
ON CONFLICT DO NOTHING against the statement's and the transaction's own
writes of an _id: PostgreSQL skips a row whose key an earlier row of the same statement
inserted (a native table with a primary key is the reference).  Before:
  * in write_mode 'immediate' two rows of one statement with one _id and
    different _routing were both sent as "create" actions, each landing on
    its own shard, so both were created (INSERT 0 2, two documents);
  * in write_mode 'transactional' a transaction that deleted one of two
    documents sharing an _id (with a condition on _routing) took the _id
    for free: ON CONFLICT DO NOTHING counted the row inserted (only the
    last buffered write of the _id was looked at) although the other
    document still had it, and COMMIT created a third document.
No crash in the log.
"""

import es_helper
import pgtest

check = pgtest.check
bulk, hits, last_bulk = es_helper.bulk, es_helper.hits, es_helper.last_bulk

MAPPINGS = {"properties": {"n": {"type": "long"}, "grp": {"type": "keyword"}}}


def setup(es):
    """routed (4 shards): r<i> routed by u<i%3>; req (routing required);
    al-old / al-new under alias al (al-new its write index)."""
    es.request("PUT", "/routed", {"settings": {"number_of_shards": 4}, "mappings": MAPPINGS})
    lines = []
    for i in range(12):
        lines += [{"index": {"_id": "r%d" % i, "routing": "u%d" % (i % 3)}},
                  {"n": i, "grp": "g%d" % (i % 3)}]
    bulk(es, "routed", *lines)
    es.request("PUT", "/req", {"settings": {"number_of_shards": 2},
                               "mappings": dict(MAPPINGS, _routing={"required": True})})
    bulk(es, "req", {"index": {"_id": "q0", "routing": "k"}}, {"n": 0, "grp": "g0"})
    for index in ("al-old", "al-new"):
        es.request("PUT", "/" + index, {"mappings": MAPPINGS})
    bulk(es, "al-old", {"index": {"_id": "a0"}}, {"n": 0, "grp": "g0"},
         {"index": {"_id": "dup"}}, {"n": 1, "grp": "d"})
    bulk(es, "al-new", {"index": {"_id": "b0"}}, {"n": 0, "grp": "g0"},
         {"index": {"_id": "dup"}}, {"n": 2, "grp": "d"})
    es.request("PUT", "/small", {"settings": {"index": {"max_result_window": 5}},
                                 "mappings": MAPPINGS})
    bulk(es, "small", *[x for i in range(8)
                        for x in ({"index": {"_id": "s%d" % i}}, {"n": i, "grp": "s"})])
    es.request("POST", "/_aliases", {"actions": [
        {"add": {"index": "al-old", "alias": "al"}},
        {"add": {"index": "al-new", "alias": "al", "is_write_index": True}}]})


def count_id(es, index, doc_id):
    return len(hits(es, index, doc_id))


def routing_column(s, es):
    """A _routing column: read, INSERT with it, UPDATE of it refused."""
    got = s.value("SELECT string_agg(_id || ':' || coalesce(_routing, '-'), ',' ORDER BY _id) "
                  "FROM rt WHERE _id IN ('r1', 'r5');")
    check(got == "r1:u1,r5:u2", "_routing column reads %r" % got)
    r = s.run("BEGIN; INSERT INTO rt VALUES ('new1', 7, 'g9', 'u2'); "
              "SELECT _routing FROM rt WHERE _id = 'new1'; COMMIT;")
    check(r.rc == 0 and r.out.split() == ["u2"],
          "INSERT with _routing: read-your-writes: rc=%s %r %s" % (r.rc, r.out, r.err.strip()[:400]))
    check('"routing":"u2"' in last_bulk(es), "INSERT sent no routing: %s" % last_bulk(es))
    h = hits(es, "routed", "new1")
    check(len(h) == 1 and h[0].get("_routing") == "u2",
          "INSERT with _routing: want one document new1 routed by u2: %r" % h)
    r = s.run("UPDATE rt SET _routing = 'zz' WHERE _id = 'r1';")
    check(r.rc == 1 and r.sqlstate == "0A000" and "_routing" in r.err,
          "UPDATE of _routing: want 0A000; got rc=%s %s %s" % (r.rc, r.sqlstate, r.err.strip()[:400]))
    # Elasticsearch takes an empty routing for none
    r = s.run("INSERT INTO rt VALUES ('emptyr', 1, 'x', '');")
    check(r.rc == 1 and r.sqlstate == "22023" and '"emptyr"' in r.err,
          "INSERT with an empty _routing: want 22023; got rc=%s %s %s"
          % (r.rc, r.sqlstate, r.err.strip()[:400]))
    check(count_id(es, "routed", "emptyr") == 0, "emptyr was indexed")
    # an index requiring a routing takes an INSERT that gives one
    r = s.run("INSERT INTO reqt VALUES ('q1', 1, 'g1', 'k');")
    check(r.rc == 0, "INSERT with _routing into an index requiring one: %s" % r.err.strip()[:400])
    got = s.value("SELECT string_agg(_id || ':' || _routing, ',' ORDER BY _id) FROM reqt;")
    check(got == "q0:k,q1:k", "index requiring a routing reads %r" % got)


def on_conflict(db, es):
    """ON CONFLICT DO NOTHING finds an _id under any routing and in any
    index of the alias, in both write modes."""
    for table, index, doc_id in (("rt", "routed", "r1"), ("rt_now", "routed", "r2"),
                                 ("docs", "al", "a0"), ("docs_now", "al", "a0"),
                                 ("docs", "al", "dup")):
        before = count_id(es, index, doc_id)
        r = pgtest.psql("BEGIN; INSERT INTO %s (_id, n, grp) VALUES ('%s', 99, 'x') "
                        "ON CONFLICT DO NOTHING; COMMIT;" % (table, doc_id), db=db)
        check(r.rc == 0 and "INSERT 0 0" in r.out,
              "%s ON CONFLICT DO NOTHING of existing %s: want INSERT 0 0; got rc=%s %r %s"
              % (table, doc_id, r.rc, r.out, r.err.strip()[:400]))
        after = count_id(es, index, doc_id)
        check(after == before, "%s ON CONFLICT DO NOTHING of %s: %d document(s) became %d"
              % (table, doc_id, before, after))
    # a new _id is inserted (where the alias writes, with the row's routing)
    r = pgtest.psql("INSERT INTO docs (_id, n, grp) VALUES ('fresh', 1, 'x'), ('a0', 2, 'y') "
                    "ON CONFLICT DO NOTHING;", db=db)
    check(r.rc == 0 and "INSERT 0 1" in r.out, "ON CONFLICT of fresh and a0: %r %s"
          % (r.out, r.err.strip()[:400]))
    check([h["_index"] for h in hits(es, "al", "fresh")] == ["al-new"],
          "fresh is not one document in al-new: %r" % hits(es, "al", "fresh"))
    r = pgtest.psql("INSERT INTO rt VALUES ('fresh2', 1, 'x', 'u1') ON CONFLICT DO NOTHING;",
                    db=db)
    check(r.rc == 0 and "INSERT 0 1" in r.out, "ON CONFLICT with _routing: %r %s"
          % (r.out, r.err.strip()[:400]))
    h = hits(es, "routed", "fresh2")
    check(len(h) == 1 and h[0].get("_routing") == "u1", "fresh2: %r" % h)


def small_window(db, es):
    """ON CONFLICT DO NOTHING on an index whose max_result_window is 5 (the
    table's fetch_size): the ids search pages within it."""
    for table in ("small", "small_now"):
        r = pgtest.psql("INSERT INTO %s (_id, n, grp) SELECT 's' || i, i, 'x' "
                        "FROM generate_series(0, 6) i UNION ALL SELECT 'new_%s', 9, 'x' "
                        "ON CONFLICT DO NOTHING;" % (table, table), db=db, verbose=True)
        check(r.rc == 0 and r.out.strip() == "INSERT 0 1",
              "%s: ON CONFLICT of 7 existing ids and a new one: want INSERT 0 1; got rc=%s %r %s"
              % (table, r.rc, r.out, r.err.strip()[:400]))
    r = es.request("POST", "/small/_search", {"size": 5, "query": {"ids": {"values": ["s3"]}}})
    check(len(r["hits"]["hits"]) == 1, "s3 is not one document: %r" % r)


def two_routed(es, doc_id, grp="d"):
    """doc_id indexed twice in "routed" (n 1 and 2 in grp), by routing ra
    and rb<k>, on two shards; the second routing."""
    for k in range(40):
        rb = "rb%d" % k
        bulk(es, "routed", {"index": {"_id": doc_id, "routing": "ra"}}, {"n": 1, "grp": grp},
             {"index": {"_id": doc_id, "routing": rb}}, {"n": 2, "grp": grp})
        if len(hits(es, "routed", doc_id)) == 2:
            return rb
        bulk(es, "routed", {"delete": {"_id": doc_id, "routing": "ra"}})
    raise RuntimeError("no second shard for %s" % doc_id)


def same_statement(db, es):
    """Two rows of one statement with one _id: the second is skipped, as
    on a native table, in both write modes (whatever their routings), in
    a batch (no RETURNING) and row by row (RETURNING)."""
    k = 0
    for table in ("rt", "rt_now"):
        for ret in ("", " RETURNING n"):
            for r1, r2 in (("ra", "rb"), ("ra", "ra"), (None, "rc")):
                k += 1
                doc_id = "s%d" % k
                rows = "('%s', 1, 'a', %s), ('%s', 2, 'b', %s)" % (
                    doc_id, "'%s'" % r1 if r1 else "NULL", doc_id, "'%s'" % r2 if r2 else "NULL")
                a = pgtest.psql("INSERT INTO %s VALUES %s ON CONFLICT DO NOTHING%s;"
                                % (table, rows, ret), db=db)
                b = pgtest.psql("INSERT INTO native VALUES %s ON CONFLICT DO NOTHING%s;"
                                % (rows, ret), db=db)
                check(a.rc == 0 and b.rc == 0 and a.out == b.out,
                      "%s: ON CONFLICT DO NOTHING%s of two rows %s (routings %s, %s): foreign "
                      "%r (rc=%s %s), native %r" % (table, ret, doc_id, r1, r2, a.out, a.rc,
                                                    a.err.strip()[:300], b.out))
                got = [(h["_source"]["n"], h.get("_routing"))
                       for h in hits(es, "routed", doc_id)]
                check(got == [(1, r1)], "%s%s: the documents %s are %r (want one, n 1)"
                      % (table, ret, doc_id, got))
    # without a _routing column the rows of an _id land on one shard: the
    # second "create" is refused there (409)
    r = pgtest.psql("INSERT INTO docs_now (_id, n, grp) VALUES ('s0', 1, 'a'), ('s0', 2, 'b') "
                    "ON CONFLICT DO NOTHING;", db=db)
    check(r.rc == 0 and r.out.strip() == "INSERT 0 1",
          "docs_now: ON CONFLICT DO NOTHING of two rows s0: want INSERT 0 1; got rc=%s %r %s"
          % (r.rc, r.out, r.err.strip()[:300]))
    got = [(h["_index"], h["_source"]["n"]) for h in hits(es, "al", "s0")]
    check(got == [("al-new", 1)], "docs_now: the documents s0 are %r" % got)


def after_delete(db, es):
    """A transaction deletes one of two documents with one _id: the _id
    is still taken."""
    rb = two_routed(es, "dd")
    r = pgtest.psql("BEGIN; DELETE FROM rt WHERE _id = 'dd' AND _routing = 'ra'; "
                    "INSERT INTO rt (_id, n, grp) VALUES ('dd', 9, 'x') ON CONFLICT DO NOTHING; "
                    "COMMIT;", db=db)
    check(r.rc == 0 and "INSERT 0 0" in r.out,
          "ON CONFLICT DO NOTHING of dd after deleting dd/ra (dd/%s remains): want INSERT 0 0; "
          "got rc=%s %r %s" % (rb, r.rc, r.out, r.err.strip()[:400]))
    got = sorted((h["_source"]["n"], h.get("_routing")) for h in hits(es, "routed", "dd"))
    check(got == [(2, rb)], "dd: the documents are %r (want only n 2 routed by %s)" % (got, rb))
    # deleting both frees the _id
    two_routed(es, "de")
    r = pgtest.psql("BEGIN; DELETE FROM rt WHERE _id = 'de' AND _routing = 'ra'; "
                    "DELETE FROM rt WHERE _id = 'de'; "
                    "INSERT INTO rt (_id, n, grp) VALUES ('de', 9, 'x') ON CONFLICT DO NOTHING; "
                    "COMMIT;", db=db)
    check(r.rc == 0 and "INSERT 0 1" in r.out,
          "ON CONFLICT DO NOTHING of de after deleting both: want INSERT 0 1; got rc=%s %r %s"
          % (r.rc, r.out, r.err.strip()[:400]))
    got = [h["_source"]["n"] for h in hits(es, "routed", "de")]
    check(got == [9], "de: the documents are %r (want n 9)" % got)
    # pages of fetch_size (2) hits full of deleted documents: searched
    # again id by id (dp2 also has a document the transaction keeps)
    bulk(es, "routed", {"index": {"_id": "dp2", "routing": two_routed(es, "dp2")}},
         {"n": 7, "grp": "q"})
    bulk(es, "routed", *[x for i in range(4) for x in (
        {"index": {"_id": "dp%d" % i, "routing": "ra"}}, {"n": i, "grp": "p"})])
    r = pgtest.psql("BEGIN; DELETE FROM rt_small WHERE grp = 'p'; "
                    "INSERT INTO rt_small (_id, n, grp) SELECT 'dp' || i, 10 + i, 'x' "
                    "FROM generate_series(0, 4) i ON CONFLICT DO NOTHING; COMMIT;", db=db)
    check(r.rc == 0 and "INSERT 0 4" in r.out,
          "ON CONFLICT DO NOTHING of dp0..dp4 after deleting dp0..dp3 (dp2 is also another "
          "document): want INSERT 0 4; got rc=%s %r %s" % (r.rc, r.out, r.err.strip()[:400]))
    got = sorted(h["_source"]["n"] for i in range(5) for h in hits(es, "routed", "dp%d" % i))
    check(got == [7, 10, 11, 13, 14], "dp0..dp4: the documents are %r" % got)


def overlay(db, es):
    """Read-your-writes tells apart two documents with one _id: the write of
    one (in one index, or with one routing) does not hide the other."""
    two_routed(es, "rd", "rd")
    for table, sql in (("docs", "UPDATE docs SET n = 10 WHERE grp = 'd' AND n = 1;"),
                       ("rt", "UPDATE rt SET n = 10 WHERE _id = 'rd' AND _routing = 'ra';")):
        grp = "d" if table == "docs" else "rd"
        r = pgtest.psql("BEGIN; %s SELECT string_agg(n::text, ',' ORDER BY n) FROM %s "
                        "WHERE grp = '%s'; COMMIT;" % (sql, table, grp), db=db)
        check(r.rc == 0 and "2,10" in r.out.split(),
              "%s: after the UPDATE of one of two documents with one _id the transaction "
              "reads %r (want 2,10) %s" % (table, r.out, r.err.strip()[:400]))
    got = sorted(h["_source"]["n"] for h in hits(es, "routed", "rd"))
    check(got == [2, 10], "rd: the documents are %r" % got)
    got = sorted((h["_index"], h["_source"]["n"]) for h in hits(es, "al", "dup"))
    check(got == [("al-new", 2), ("al-old", 10)], "dup: the documents are %r" % got)
    bulk(es, "al-old", {"index": {"_id": "dup"}}, {"n": 1, "grp": "d"})


def local_quals(db, es):
    """Only the rows a DELETE writes count for the duplicate check."""
    r = pgtest.psql("DELETE FROM docs WHERE grp = 'd' AND (n * 3) % 2 = 1;", db=db)
    check(r.rc == 0 and r.out.strip() == "DELETE 1",
          "DELETE of one of two documents dup (a local condition): want DELETE 1; got rc=%s %r %s"
          % (r.rc, r.out, r.err.strip()[:400]))
    got = sorted((h["_index"], h["_source"]["n"]) for h in hits(es, "al", "dup"))
    check(got == [("al-new", 2)], "dup: the documents are %r" % got)
    # a condition on a system column, which the executor sets only after
    # the scan returned the row: the writes still reach the routed documents
    # (before, the UPDATE was refused by Elasticsearch, a 40001 on every
    # retry, and the DELETE deleted nothing)
    for sql, want in (("UPDATE rt SET n = n + 100 WHERE _id = 'r4' "
                       "AND tableoid::regclass::text = 'rt';", "UPDATE 1"),
                      ("UPDATE rt_now SET n = n + 100 WHERE _id = 'r7' "
                       "AND tableoid::regclass::text = 'rt_now';", "UPDATE 1"),
                      ("DELETE FROM rt WHERE _id = 'r10' AND n >= 0 "
                       "AND tableoid::regclass::text = 'rt';", "DELETE 1"),
                      ("DELETE FROM rt_now WHERE _id = 'r1' AND n >= 0 "
                       "AND tableoid::regclass::text = 'rt_now';", "DELETE 1")):
        r = pgtest.psql(sql, db=db)
        check(r.rc == 0 and r.out.strip() == want,
              "%s: want %s; got rc=%s %r %s" % (sql, want, r.rc, r.out, r.err.strip()[:400]))
        doc_id = sql.split("'")[1]
        got = [h["_source"]["n"] for h in hits(es, "routed", doc_id)]
        check(got == ([] if want == "DELETE 1" else [int(doc_id[1:]) + 100]),
              "%s: the documents %s are %r" % (sql, doc_id, got))



def test():
    mark = pgtest.pg_log_mark()
    es = es_helper.Standin()
    setup(es)
    db = pgtest.create_db("pgpoly_es_dupid")
    r = pgtest.psql(
        "CREATE SERVER esd FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%s');\n" % es.url +
        "CREATE FOREIGN TABLE rt (_id text, n int, grp text, _routing text) SERVER esd "
        "OPTIONS (index 'routed');\n"
        "CREATE FOREIGN TABLE rt_now (_id text, n int, grp text, _routing text) SERVER esd "
        "OPTIONS (index 'routed', write_mode 'immediate');\n"
        "CREATE FOREIGN TABLE rt_small (_id text, n int, grp text, _routing text) SERVER esd "
        "OPTIONS (index 'routed', fetch_size '2');\n"
        "CREATE TABLE native (id text PRIMARY KEY, n int, grp text, routing text);\n"
        "CREATE FOREIGN TABLE reqt (_id text, n int, grp text, _routing text) SERVER esd "
        "OPTIONS (index 'req', refresh 'true');\n"
        "CREATE FOREIGN TABLE small (_id text, n int, grp text) SERVER esd "
        "OPTIONS (index 'small', fetch_size '5');\n"
        "CREATE FOREIGN TABLE small_now (_id text, n int, grp text) SERVER esd "
        "OPTIONS (index 'small', fetch_size '5', write_mode 'immediate');\n"
        "CREATE FOREIGN TABLE docs (_id text, n int, grp text) SERVER esd "
        "OPTIONS (index 'al');\n"
        "CREATE FOREIGN TABLE docs_now (_id text, n int, grp text) SERVER esd "
        "OPTIONS (index 'al', write_mode 'immediate');\n", db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    s = pgtest.Session(db)
    routing_column(s, es)
    on_conflict(db, es)
    small_window(db, es)
    overlay(db, es)
    local_quals(db, es)
    same_statement(db, es)
    after_delete(db, es)
    s.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
