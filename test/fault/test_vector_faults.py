#!/usr/bin/env python3
"""pgpoly_vector against a vector service that is down, slow or broken.

Tiny HTTP servers on 127.0.0.1, run by this test, stand in for Chroma:

  * garbage  -- answers 200 with a body that is not JSON;
  * wrong    -- answers 200 with JSON of the wrong shape, and lists a
                collection with an empty name (IMPORT FOREIGN SCHEMA must
                refuse it clearly, not generate a statement that does not
                parse);
  * error500 -- answers 500 with Chroma's {"error", "message"} body;
  * silent   -- accepts and never answers (statement_timeout must cancel);
  * endless  -- streams a body far above pgpoly.max_response_size;
  * liar     -- answers in Chroma's shapes, but a record's document is a
                number, its metadata a string, its embedding an object, a
                k-NN answer holds a record twice: each an ERROR (HV004)
                naming the record, not a row with the field left out.

Plus a URL where nothing listens (service down).  Each query must fail
quickly with a clear ERROR (SQLSTATE class 08 for connection failures,
HV0xx for service errors and garbage, 57014 for the cancel, 54000 for the
oversized reply) naming the server; the backend survives (same pid), the
cached connection is not left broken, and a query against the real Chroma
($CHROMA_URL) in the same session still works.  No crash in the log.
"""

import os

import pgtest

check = pgtest.check

COLLECTION = {"id": "00000000-0000-0000-0000-000000000001", "name": "c1",
              "configuration_json": {"hnsw": {"space": "l2"}},
              "dimension": 2, "tenant": "default_tenant",
              "database": "default_database", "log_position": 0, "version": 0}


class FakeChroma:
    """An HTTP server on 127.0.0.1 that misbehaves in one way."""

    def __init__(self, mode):
        self.mode = mode
        self.server = pgtest.TcpServer(self._serve)
        self.port = self.server.port
        self.stop = self.server.stop

    @staticmethod
    def _respond(c, status, body):
        c.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (status, len(body), body))

    def _serve(self, c):
        import json
        buf = b""
        while True:
            req = pgtest.read_http_request(c, buf)
            if req is None:
                return
            _, path, _, buf = req
            if self.mode == "silent":
                self.stop.wait(60)
                return
            if self.mode == "endless":
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 100000000\r\n\r\n")
                chunk = b" " * 65536
                for _ in range(2000):
                    if self.stop.is_set():
                        return
                    c.sendall(chunk)
                return
            if path.endswith("/collections/c1"):
                self._respond(c, 200, json.dumps(COLLECTION).encode())
            elif self.mode == "liar":
                self._respond(c, 200, json.dumps(LIES[path.rsplit("/", 1)[-1]]).encode())
            elif self.mode == "wrong" and "/collections?" in path:
                self._respond(c, 200, json.dumps([COLLECTION, dict(COLLECTION, name="")]).encode())
            elif self.mode == "garbage":
                self._respond(c, 200, b"<html>definitely not json")
            elif self.mode == "wrong":
                self._respond(c, 200, b'{"ids": 42}')
            else:
                self._respond(c, 500, b'{"error":"InternalError","message":"boom"}')


# liar: what a /get (by the request's path) and a /query answer; the /get
# answer depends on what the test asks (see test()), so it is set there
LIES = {"query": {"ids": [["r1", "r1"]], "distances": [[0.5, 0.5]],
                  "embeddings": None, "documents": None, "metadatas": None}}


def setup(db, name, url, timeout_ms=5000):
    """A server and a table on it."""
    r = pgtest.psql(
        "CREATE SERVER %s FOREIGN DATA WRAPPER pgpoly_vector "
        "OPTIONS (url '%s', timeout_ms '%d', connect_timeout_ms '500');\n"
        "CREATE FOREIGN TABLE %s_t (id text, embedding real[], metadata jsonb) "
        "SERVER %s OPTIONS (collection 'c1');" % (name, url, timeout_ms, name, name),
        db=db)
    check(r.rc == 0, "setup of %s: %s" % (name, r.err))


def expect_error(sess, sql, states, what, within=5.0):
    """Run sql in the session; it must fail with one of states, fast."""
    r = sess.run(sql, timeout=30)
    check(r.rc == 1, "%s: expected an ERROR, got rc=%d out=%r err=%r"
          % (what, r.rc, r.out, r.err))
    state = r.sqlstate
    check(state is not None and any(state.startswith(s) for s in states),
          "%s: SQLSTATE %s not in %s: %s" % (what, state, states, r.err))
    check(r.elapsed < within, "%s: took %.1f s" % (what, r.elapsed))
    return r


def test():
    mark = pgtest.pg_log_mark()
    db = pgtest.create_db("pgpoly_vector_fault")
    chroma = os.environ.get("CHROMA_URL")
    check(chroma is not None, "CHROMA_URL is set by the harness")

    down = pgtest.free_port()
    setup(db, "down", "http://127.0.0.1:%d" % down)
    fakes = {}
    for mode in ("garbage", "wrong", "error500", "silent", "endless", "liar"):
        fakes[mode] = FakeChroma(mode)
        setup(db, mode, "http://127.0.0.1:%d" % fakes[mode].port,
              timeout_ms=60000 if mode == "silent" else 5000)
    setup(db, "real", chroma)

    sess = pgtest.Session(db=db)
    pid = sess.value("SELECT pg_backend_pid();")

    r = expect_error(sess, "SELECT * FROM down_t;", ["08"], "service down")
    check("down" in r.err and str(down) in r.err, "message names server and URL: " + r.err)
    r = expect_error(sess, "SELECT * FROM down_t ORDER BY embedding <-> '{1,2}' LIMIT 1;",
                     ["08"], "service down (k-NN)")

    r = expect_error(sess, "SELECT * FROM garbage_t;", ["HV"], "garbage JSON")
    check("malformed" in r.err and "garbage" in r.err, "garbage message: " + r.err)
    expect_error(sess, "SELECT * FROM wrong_t;", ["HV"], "wrong JSON shape")
    r = expect_error(sess, "IMPORT FOREIGN SCHEMA x FROM SERVER wrong INTO public;", ["HV"],
                     "a collection with an empty name")
    check("collection description" in r.err and "non-empty" in r.err,
          "empty collection name message: " + r.err)
    r = expect_error(sess, "SELECT * FROM error500_t;", ["HV"], "HTTP 500")
    check("boom" in r.err and "500" in r.err, "500 message quotes Chroma: " + r.err)
    r = expect_error(sess, "BEGIN; INSERT INTO error500_t VALUES ('a', '{1,2}'); COMMIT;",
                     ["HV"], "COMMIT against a failing service")
    sess.run("ROLLBACK;")

    # A server that lies in Chroma's own shapes: each lie an ERROR naming it.
    for field, value, sql, want in (
            ("documents", [5], "SELECT id FROM liar_t WHERE id = 'r1';", 'document of record "r1"'),
            ("metadatas", ["x"], "SELECT metadata FROM liar_t;", 'metadata of record "r1"'),
            ("embeddings", [{"a": 1}], "SELECT embedding FROM liar_t;",
             'embedding of record "r1"'),
            ("embeddings", [[1.0, 2.0, 3.0]], "SELECT embedding FROM liar_t;",
             'embedding of 3 dimensions, collection "c1" has 2'),
            ("embeddings", [None], "SELECT embedding FROM liar_t;", "without its embedding")):
        LIES["get"] = {"ids": ["r1"], "documents": None, "metadatas": None, "embeddings": None}
        LIES["get"][field] = value
        r = expect_error(sess, sql, ["HV"], "a lie in %s" % field)
        check(want in r.err, "a lie in %s names it: %s" % (field, r.err))
    r = expect_error(sess, "SELECT id FROM liar_t ORDER BY embedding <-> '{1,2}' LIMIT 2;",
                     ["HV004"], "a k-NN answer with a record twice")
    check('record "r1"' in r.err and "twice" in r.err, "twice: " + r.err)

    # A server that never answers: statement_timeout cancels promptly.
    r = expect_error(sess, "SET statement_timeout = '500ms'; SELECT * FROM silent_t;",
                     ["57014"], "statement_timeout on a silent server", within=3.0)
    sess.run("RESET statement_timeout;")
    # timeout_ms bounds a request too.
    sess.run("ALTER SERVER silent OPTIONS (SET timeout_ms '400');")
    expect_error(sess, "SELECT * FROM silent_t;", ["08"], "timeout_ms on a silent server",
                 within=3.0)

    r = expect_error(sess, "SET pgpoly.max_response_size = '64kB'; SELECT * FROM endless_t;",
                     ["54000"], "oversized response")
    sess.run("RESET pgpoly.max_response_size;")

    # The backend survived and the connections are usable.
    check(sess.value("SELECT pg_backend_pid();") == pid, "same backend after the errors")
    broken = sess.value("SELECT count(*) FROM pgpoly.connections() WHERE errors > 0 "
                        "AND server = 'real';")
    check(broken == "0", "the real server's connection has no errors")
    r = sess.run("SELECT count(*) FROM real_t;")
    check(r.rc == 1 and "does not exist" in r.err,
          "the real Chroma answers in the same session: %r" % r.err)
    r = sess.run("SELECT count(*) FROM pgpoly.vector_search('down_t', '{1,2}');")
    check(r.rc == 1 and r.sqlstate is not None and r.sqlstate.startswith("08"),
          "vector_search on a down service: %s" % r.err)
    check(sess.value("SELECT pg_backend_pid();") == pid, "same backend at the end")
    sess.close()
    for f in fakes.values():
        f.stop.set()
    pgtest.check_pg_log(mark)


pgtest.main(test)
