"""Helpers of the pgpoly_elastic fault tests: a private ES stand-in.

Fault tests never use the shared cluster (ES_URL, maybe a real one): each
starts its own test/es_standin.py, whose /_standin/faults endpoint injects
429/5xx answers, delays, truncated and garbage bodies.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request

import pgtest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Standin:
    """A test/es_standin.py process on a free port (stopped at exit)."""

    def __init__(self, *args):
        self.port = pgtest.on_free_port(lambda port: self._start(port, args))

    def _start(self, port, args):
        """Start the stand-in on port: False if it exited at once (the port
        was taken)."""
        self.port = port
        self.url = "http://127.0.0.1:%d" % port
        log = open(os.path.join(pgtest.work_dir(), "es_standin_%d.log" % port), "w")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "es_standin.py"),
             "--port", str(port)] + list(args),
            stdout=log, stderr=subprocess.STDOUT)
        pgtest.register_pid(self.proc.pid, "es-standin-fault")
        pgtest.wait_for(lambda: self.proc.poll() is not None or self._up(),
                        timeout=10, interval=0.05)
        if self.proc.poll() is not None:
            return False
        if not self._up():
            raise RuntimeError("es_standin.py did not start")
        return True

    def _up(self):
        try:
            self.request("GET", "/_standin/stats")
            return True
        except OSError:
            return False

    def request(self, method, path, body=None, ndjson=False, headers=None):
        """Send a request directly; return the parsed JSON response."""
        data = None
        hdrs = dict(headers or {})
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs["Content-Type"] = ("application/x-ndjson" if ndjson
                                    else "application/json")
        req = urllib.request.Request(self.url + path, data=data,
                                     method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return json.loads(e.read() or b"null")

    def faults(self, *faults):
        self.request("POST", "/_standin/faults", {"faults": list(faults)})

    def clear(self):
        self.request("DELETE", "/_standin/faults")

    def stats(self):
        return self.request("GET", "/_standin/stats")

    def data_requests(self):
        """Requests so far other than the GET index request (of the
        mapping and settings), which a session sends once per transaction
        that plans or runs a pushed-down scan, and GET / (the version),
        which each new connection sends: a connection is opened again after
        a cache reset, which another session's DDL can cause at any time."""
        st = self.stats()
        return (st["requests"] - st["counts"].get("GET /{index}", 0)
                - st["counts"].get("GET /", 0))

    def load(self, index, n, mappings=None):
        """Create index with n documents {"n": i, "grp": "g<i%3>"} via _bulk."""
        self.request("PUT", "/" + index, {"mappings": mappings or {
            "properties": {"n": {"type": "long"}, "grp": {"type": "keyword"}}}})
        for start in range(0, n, 5000):
            lines = []
            for i in range(start, min(n, start + 5000)):
                lines.append(json.dumps({"index": {"_id": "d%d" % i}}))
                lines.append(json.dumps({"n": i, "grp": "g%d" % (i % 3)}))
            self.request("POST", "/%s/_bulk" % index,
                         ("\n".join(lines) + "\n").encode(), ndjson=True)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def bulk(es, index, *lines):
    """Send lines (action and source objects) as one _bulk request to
    index; raise if an item failed."""
    body = "".join(json.dumps(x) + "\n" for x in lines).encode()
    r = es.request("POST", "/%s/_bulk" % index, body, ndjson=True)
    if r.get("errors"):
        raise RuntimeError("bulk failed: %s" % r)
    return r


def hits(es, index, doc_id):
    """The hits of an ids query for doc_id in index (every shard, and
    every index of an alias, is searched)."""
    r = es.request("POST", "/%s/_search" % index,
                   {"query": {"ids": {"values": [doc_id]}}})
    return r["hits"]["hits"]


def last_bulk(es):
    """The body (first 300 bytes) of the last _bulk request pgpoly sent."""
    for r in reversed(es.stats()["last_requests"]):
        if "_bulk" in r["path"]:
            return r["body"]
    return ""


def create_tables(db, es, server, tables, native, rows):
    """Create server for es, the foreign tables (name, last column,
    options) with columns _id text, n int and that last one, and the
    native table (its column list) holding rows; the psql Result."""
    return pgtest.psql(
        "CREATE SERVER %s FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%s');\n"
        % (server, es.url) +
        "".join("CREATE FOREIGN TABLE %s (_id text, n int, %s) SERVER %s OPTIONS (%s);\n"
                % (name, col, server, opts) for name, col, opts in tables) +
        "CREATE TABLE native (%s);\n" % native +
        "INSERT INTO native VALUES %s;" % ", ".join(
            "(%s)" % ", ".join("'%s'" % v for v in row) for row in rows),
        db=db)


class Diff:
    """A foreign table docs (_id, n, grp) and its native copy native (id,
    n, grp), compared after each step; check_docs(what) checks the
    documents in the store too."""

    def __init__(self, sess, es):
        self.s, self.es = sess, es

    def both(self, sql_foreign, sql_native, what):
        """Run a statement on both; their outputs (RETURNING) must match."""
        check = pgtest.check
        a = self.s.run(sql_foreign)
        b = self.s.run(sql_native)
        check(a.rc == 0 and b.rc == 0,
              "%s: rc %s / %s: %s %s" % (what, a.rc, b.rc, a.err.strip()[:600],
                                         b.err.strip()[:300]))
        check(sorted(a.out.split()) == sorted(b.out.split()),
              "%s: foreign returned %r, native %r" % (what, a.out, b.out))
        self.same(what)

    def same(self, what):
        f = self.s.value("SELECT _id, n, grp FROM docs ORDER BY 1, 2, 3;")
        n = self.s.value("SELECT id, n, grp FROM native ORDER BY 1, 2, 3;")
        pgtest.check(f == n, "%s: the index and its native copy differ:\nforeign:\n%s\n"
                     "native:\n%s" % (what, f, n))
        self.check_docs(what)

    def delete_by_id(self, db, doc_id, want):
        """DELETE doc_id in its own transaction: the command tag must be
        want; then delete it from the native copy and compare."""
        r = pgtest.psql("DELETE FROM docs WHERE _id = '%s';" % doc_id, db=db)
        pgtest.check(r.rc == 0 and r.out.strip() == want,
                     "DELETE by _id %s: want %s; got rc=%s %r %s"
                     % (doc_id, want, r.rc, r.out, r.err.strip()[:400]))
        self.s.value("DELETE FROM native WHERE id = '%s';" % doc_id)
        self.same("DELETE by _id %s" % doc_id)

    def check_docs(self, what):
        pass
