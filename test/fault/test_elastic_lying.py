#!/usr/bin/env python3
"""pgpoly_elastic against a store that lies about its _bulk writes.

A scripted HTTP server answers GET / like Elasticsearch 8.11 and every
_bulk request with HTTP 200 and a body chosen by the test:

  * noitems: "errors": false and no items at all (a gateway's canned
    answer): nothing was written, so COMMIT must fail;
  * hidden: "errors": false, yet the second and third items failed with
    an error (the ERROR names the first, its detail the other);
  * statusonly: "errors": false, the second item has status 500 and no
    error object;
  * fewer: "errors": false, one item fewer than the actions sent;
  * dupstatus: "errors": false, the second item has "status" twice, 201
    then 500 (JSON leaves duplicate names to the reader; pgpoly's reader
    takes the last): the summary read without a document must not count
    it as written when the item read with one says it failed;
  * dupitems: "errors": false, "items" twice: every item 201, then every
    item 400 with an error (the reader keeps the last): an ERROR;
  * errorok / nested / extra: "errors": false, the second item is one the
    summary read without a document must not count as written, since the
    item read with one fails: status 201 with an "error" object; an array
    holding the item's fields instead of an object; an object whose last
    member is a number after the action's object;
  * lowstatus: "errors": false, the second item has status 100 and no
    error (no 2xx: nothing says it was written): an ERROR;
  * twomembers: "errors": false, the second item has two members, the
    first failed with an error, the second 201 (a reader of the last
    member only took it as written): an ERROR;
  * otherid / reorder: "errors": false, every item 201, but the second
    item's _id is another document's, or the items come in reverse order
    (Elasticsearch answers in the order sent, each item with its action's
    _id): an ERROR naming both documents, not a COMMIT on the word of
    items about other writes;
  * honest: every item 201 (COMMIT succeeds);
  * samepage: every search page full and the same, whatever search_after
    or the scroll id says (a cache in front of the cluster): an ERROR, not
    rows repeated until statement_timeout, and none of the page's rows
    returned again before it (a cursor's FETCH gets the ERROR), under a
    point in time (8.11) and under a scroll (a second server answering
    GET / like Elasticsearch 7.10, before point in time);
  * countpartial / countnegative / counthuge: a _count answer counting
    the shards that answered (one failed), or a count of -5 or 10^20;
  * gone: a delete answered 404 "not_found" without error, as
    Elasticsearch answers a delete of a document already deleted (COMMIT
    succeeds: the document is gone);
  * versions: the hits an UPDATE's scan reads with "seq_no_primary_term"
    carry a _seq_no or _primary_term that is no version (missing, -1,
    5.5, "7", 10^30, a primary term 0): an HV ERROR naming the document
    (before: 5.5 was rounded into if_seq_no 6); a document the
    transaction inserted and then updated, whose "index" item comes back
    201 without _seq_no: an HV ERROR naming it, not a 40001 that no retry
    can get past;
  * routing: the hit an UPDATE's scan reads carries a _routing that is no
    string (a number, null): HV004 naming the document (its write could
    not reach the document's shard); a string one is sent with the write
    ("routing" of its bulk action);
  * index: the hit an UPDATE's scan reads carries an _index that is no
    index name (a number, null, "", an array): HV004 naming the document
    (its write is addressed to that index); a string one is the _index of
    the write's bulk action.

Each failing COMMIT is an ERROR naming the server (and, for a failed item,
the document), and the native row written in the same transaction is
rolled back; the backend survives; no crash in the log.
"""

import json

import pgtest

check = pgtest.check

def es_root(version):
    """GET / of Elasticsearch version."""
    return json.dumps({"name": "liar", "cluster_name": "liar",
                       "version": {"number": version},
                       "tagline": "You Know, for Search"}).encode()


class LyingServer:
    """HTTP/1.1 with keep-alive; _bulk answers by self.mode."""

    def __init__(self, version="8.11.0"):
        self.mode = "honest"
        self.hit_version = {}   # members the hits of _search carry
        self.last_bulk = b""
        self.root = es_root(version)
        self.server = pgtest.TcpServer(self._serve)
        self.url = "http://127.0.0.1:%d" % self.server.port

    def _serve(self, c):
        buf = b""
        while True:
            req = pgtest.read_http_request_body(c, buf)
            if req is None:
                return
            method, path, _, body, buf = req
            if "_bulk" in path:
                out = json.dumps(self._bulk(body)).encode()
            elif "_count" in path:
                out = json.dumps(self._count()).encode()
            elif "_pit" in path:
                out = b'{"id": "pit-1", "succeeded": true, "num_freed": 1}'
            elif "_search" in path and self.mode == "samepage":
                # a full page, the same whatever search_after or the
                # scroll id says
                out = json.dumps({"took": 1, "timed_out": False, "pit_id": "pit-1",
                                  "_scroll_id": "scroll-1",
                                  "_shards": {"total": 1, "successful": 1,
                                              "skipped": 0, "failed": 0},
                                  "hits": {"hits": [
                                      {"_index": "lies", "_id": "p%d" % i, "_score": None,
                                       "_source": {"n": i}, "sort": [i]}
                                      for i in (1, 2)]}}).encode()
            elif "_search" in path:
                hit = dict({"_index": "lies", "_id": "zz", "_score": None,
                            "_source": {"n": 1}}, **self.hit_version)
                out = json.dumps({"took": 1, "timed_out": False, "_shards": {
                    "total": 1, "successful": 1, "skipped": 0, "failed": 0},
                    "hits": {"hits": [] if self.mode == "nohits" else [hit]}}
                                 ).encode()
                # a number JSON has but Python would not write so
                out = out.replace(b'"@raw@', b"").replace(b'@raw@"', b"")
            else:
                out = self.root
            # a member name twice, which a Python dict cannot hold
            out = out.replace(b'"@dupstatus@"', b'"status"').replace(b'"@dupitems@"', b'"items"')
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(out), out))

    def _count(self):
        """A _count answer in the current mode."""
        shards = {"total": 2, "successful": 2, "skipped": 0, "failed": 0}
        if self.mode == "countpartial":
            # 200 with the count of the shards that answered
            shards.update(successful=1, failed=1, failures=[{
                "shard": 1, "index": "lies", "reason": {
                    "type": "node_disconnected_exception",
                    "reason": "node left the cluster"}}])
        count = {"countnegative": -5, "counthuge": 10 ** 20}.get(self.mode, 3)
        return {"count": count, "_shards": shards}

    def _bulk(self, body):
        """The answer to a _bulk body (NDJSON) in the current mode."""
        self.last_bulk = body
        actions = []
        lines = [ln for ln in body.split(b"\n") if ln.strip()]
        i = 0
        while i < len(lines):
            (op, meta), = json.loads(lines[i]).items()
            actions.append((op, meta.get("_id")))
            i += 1 if op == "delete" else 2
        items = []
        for k, (op, doc_id) in enumerate(actions):
            item = {"_index": "lies", "_id": doc_id, "status": 201,
                    "result": "created"}
            if op == "delete":
                item.update(status=200, result="deleted")
                if self.mode == "gone":
                    item.update(status=404, result="not_found")
            if k >= 1 and self.mode == "hidden":
                item.update(status=400, error={
                    "type": "mapper_parsing_exception",
                    "reason": "failed to parse field [n]"})
            if k == 1 and self.mode == "statusonly":
                item.update(status=500)
                del item["result"]
            if k == 1 and self.mode == "dupstatus":
                del item["result"]
                item["@dupstatus@"] = 500
            if k == 1 and self.mode == "errorok":
                item["error"] = {"type": "mapper_parsing_exception",
                                 "reason": "failed to parse field [n]"}
            if k == 1 and self.mode == "lowstatus":
                item.update(status=100)
                del item["result"]
            if k == 1 and self.mode == "twomembers":
                items.append({op: dict(item, status=500, error={
                    "type": "mapper_parsing_exception",
                    "reason": "failed to parse field [n]"}), "create": item})
            elif k == 1 and self.mode == "nested":
                items.append([item])
            elif k == 1 and self.mode == "extra":
                items.append({op: item, "shard": 7})
            else:
                items.append({op: item})
        if self.mode == "otherid":
            (op, item), = items[1].items()
            item["_id"] = "zz-other"
        if self.mode == "reorder":
            items.reverse()
        if self.mode == "noitems":
            items = []
        if self.mode == "fewer":
            items = items[:-1]
        if self.mode == "dupitems":
            failed = [{op: {"_index": "lies", "_id": doc_id, "status": 400, "error": {
                "type": "mapper_parsing_exception", "reason": "failed to parse field [n]"}}}
                      for op, doc_id in actions]
            return {"took": 1, "errors": False, "items": items, "@dupitems@": failed}
        return {"took": 1, "errors": False, "items": items}


def test():
    mark = pgtest.pg_log_mark()
    liar = LyingServer()
    scroller = LyingServer("7.10.2")
    db = pgtest.create_db("pgpoly_es_lying")
    r = pgtest.psql("""
        CREATE SERVER scroller FOREIGN DATA WRAPPER pgpoly_elastic
            OPTIONS (url '%s');
        CREATE FOREIGN TABLE scrolled (_id text, n int) SERVER scroller
            OPTIONS (index 'lies', fetch_size '2');
        CREATE SERVER liar FOREIGN DATA WRAPPER pgpoly_elastic
            OPTIONS (url '%s');
        CREATE FOREIGN TABLE w (_id text, n int) SERVER liar
            OPTIONS (index 'lies');
        CREATE FOREIGN TABLE paged (_id text, n int) SERVER liar
            OPTIONS (index 'lies', fetch_size '2');
        CREATE TABLE native (id int);
    """ % (scroller.url, liar.url), db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    s = pgtest.Session(db)
    pid = s.value("SELECT pg_backend_pid();")
    write = ("BEGIN; INSERT INTO native VALUES (%d); "
             "INSERT INTO w VALUES ('a%d', 1), ('b%d', 2), ('c%d', 3); COMMIT;")
    for k, (mode, want) in enumerate([
            ("noitems", ("liar", "3 actions with 0 items")),
            ("hidden", ('"b1"', "mapper_parsing_exception",
                        '1 other item(s) of the request failed too: "c1"')),
            ("statusonly", ('"b', "status 500")),
            ("fewer", ("liar", "3 actions with 2 items")),
            ("dupstatus", ('"b', "status 500")),
            ("dupitems", ('"a', "mapper_parsing_exception")),
            ("errorok", ('"b', "mapper_parsing_exception")),
            ("nested", ('"b', "status (none)")),
            ("extra", ('"b', "status (none)")),
            ("lowstatus", ('"b', "status 100")),
            ("twomembers", ('"b', "mapper_parsing_exception")),
            ("otherid", ('"b', '"zz-other"', "item 2")),
            ("reorder", ('"a', '"c', "item 1")),
            ("honest", None)]):
        liar.mode = mode
        r = s.run(write % ((k,) * 4))
        if want is None:
            check(r.rc == 0, "%s: COMMIT failed: %s" % (mode, r.err))
        else:
            check(r.rc == 1 and r.sqlstate and r.sqlstate.startswith("HV")
                  and all(w in r.err for w in want),
                  "%s: want an HV ERROR containing %s; got rc=%s sqlstate=%s: %s"
                  % (mode, want, r.rc, r.sqlstate, r.err.strip()))
            s.run("ROLLBACK;")
            n = s.value("SELECT count(*) FROM native WHERE id = %d;" % k)
            check(n == "0", "%s: the native row of the failed COMMIT is there"
                  % mode)
    # A store that answers every page with the same page: an ERROR, not
    # the same rows again and again until statement_timeout; and not the
    # page's rows again before the ERROR.
    liar.mode = scroller.mode = "samepage"
    for table in ("paged", "scrolled"):
        r = s.run("SET statement_timeout = '10s'; SELECT count(*) FROM (SELECT n FROM %s OFFSET 0) x; "
                  "RESET statement_timeout;" % table)
        check(r.rc == 1 and r.sqlstate == "HV000" and "same page" in r.err,
              "%s: repeated page: want HV000 'same page'; got rc=%s %s %s"
              % (table, r.rc, r.sqlstate, r.err.strip()))
        s.run("ROLLBACK; RESET statement_timeout;")
        r = s.run("SET statement_timeout = '10s'; BEGIN; "
                  "DECLARE c CURSOR FOR SELECT _id FROM %s; FETCH 2 FROM c;" % table)
        check(r.rc == 0 and r.out.split() == ["p1", "p2"],
              "%s: the first page: rc=%s %s %s" % (table, r.rc, r.out, r.err.strip()))
        r = s.run("FETCH 2 FROM c;")
        check(r.rc == 1 and r.sqlstate == "HV000" and "same page" in r.err,
              "%s: FETCH of the repeated page: want HV000 'same page'; got rc=%s %r %s"
              % (table, r.rc, r.out, r.err.strip()))
        s.run("ROLLBACK; RESET statement_timeout;")
    # count(*) pushed down as _count: a partial count (a shard failed) or
    # one that cannot be a count is an ERROR, not the answer.
    for mode, want in (("countpartial", "failed on 1 shard"),
                       ("countnegative", "without a count"),
                       ("counthuge", "without a count"),
                       ("honest", None)):
        liar.mode = mode
        r = s.run("SELECT count(*) FROM paged;")
        if want is None:
            check(r.rc == 0 and r.out.strip() == "3", "count: %s %s" % (r.out, r.err))
        else:
            check(r.rc == 1 and r.sqlstate and r.sqlstate.startswith("HV")
                  and want in r.err, "%s: want an HV ERROR '%s'; got rc=%s %s %s"
                  % (mode, want, r.rc, r.sqlstate, (r.out + r.err).strip()))
    # Versions that are none: an HV ERROR naming the document, never a
    # rounded if_seq_no or a 40001 for ever.
    liar.mode = "honest"
    for version, key in (({}, "_seq_no"),
                         ({"_seq_no": -1, "_primary_term": 1}, "_seq_no"),
                         ({"_seq_no": "@raw@5.5@raw@", "_primary_term": 1}, "_seq_no"),
                         ({"_seq_no": "7", "_primary_term": 1}, "_seq_no"),
                         ({"_seq_no": "@raw@1000000000000000000000000000000@raw@",
                           "_primary_term": 1}, "_seq_no"),
                         ({"_seq_no": 4, "_primary_term": 0}, "_primary_term")):
        liar.hit_version = version
        r = s.run("BEGIN; UPDATE w SET n = n + 1; COMMIT;")
        check(r.rc == 1 and r.sqlstate == "HV004" and '"zz"' in r.err and
              ("without a valid %s" % key) in r.err,
              "hit version %r: want HV004 naming zz and %s; got rc=%s %s %s"
              % (version, key, r.rc, r.sqlstate, r.err.strip()[:400]))
        s.run("ROLLBACK;")
    liar.hit_version = {"_seq_no": 4, "_primary_term": 1}
    r = s.run("BEGIN; UPDATE w SET n = n + 1; COMMIT;")
    check(r.rc == 0, "hit with a valid version: COMMIT failed: %s" % r.err.strip()[:400])
    # A routing that is no string, an _index that is no index name: HV004
    # naming the document and the member; string ones go with the write
    # (its "routing", and its "_index" whatever the table's index option).
    for key, values in (("_routing", (7, None, ["a"])), ("_index", (7, None, "", ["a"]))):
        for v in values:
            liar.hit_version = {"_seq_no": 4, "_primary_term": 1, key: v}
            r = s.run("BEGIN; UPDATE w SET n = n + 1; COMMIT;")
            check(r.rc == 1 and r.sqlstate == "HV004" and '"zz"' in r.err and key in r.err,
                  "hit %s %r: want HV004 naming zz and %s; got rc=%s %s %s"
                  % (key, v, key, r.rc, r.sqlstate, r.err.strip()[:400]))
            s.run("ROLLBACK;")
    liar.hit_version = {"_seq_no": 4, "_primary_term": 1, "_routing": "r1",
                        "_index": "lies-000002"}
    r = s.run("DELETE FROM w WHERE _id = 'zz';")
    check(r.rc == 0 and b'"routing":"r1"' in liar.last_bulk and
          b'"_index":"lies-000002"' in liar.last_bulk,
          "hit of index lies-000002 routed by r1: the delete must be addressed to it and "
          "carry the routing: rc=%s %s, bulk %r" % (r.rc, r.err.strip()[:400], liar.last_bulk))
    liar.hit_version = {"_seq_no": 4, "_primary_term": 1}
    liar.mode = "nohits"
    r = s.run("BEGIN; INSERT INTO w VALUES ('v1', 1); UPDATE w SET n = n + 1 "
              "WHERE _id = 'v1'; COMMIT;")
    check(r.rc == 1 and r.sqlstate == "HV004" and '"v1"' in r.err and "_seq_no" in r.err,
          "a written item without _seq_no that a later write needs: want HV004 naming "
          "v1; got rc=%s %s %s" % (r.rc, r.sqlstate, r.err.strip()[:400]))
    s.run("ROLLBACK;")
    # A delete of a document already gone is no failure.
    liar.mode = "gone"
    r = s.run("BEGIN; DELETE FROM w WHERE _id = 'zz'; COMMIT;")
    check(r.rc == 0, "delete of nothing failed: %s" % r.err)
    check(s.value("SELECT pg_backend_pid();") == pid, "the backend changed")
    s.close()
    liar.server.close()
    scroller.server.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
