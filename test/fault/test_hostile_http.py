#!/usr/bin/env python3
"""pgpoly_elastic and pgpoly_vector against a hostile HTTP server.

HostileServer (below, stdlib only) answers GET / like Elasticsearch, /ok
with a small JSON document, and misbehaves on any path containing a mode
name (so the vector store reaches a mode through its collection name):

  * redirect301 / redirect302 / redirect307: to file:///etc/passwd,
    gopher://<canary> and http://<canary>; never followed (a clear ERROR,
    and the canary port never sees a connection);
  * endless: a chunked body that never ends; hugelength: a Content-Length
    of 1 TB; gzipbomb: 20 kB of gzip that inflate to 20 MB: all bounded by
    pgpoly.max_response_size (54000);
  * shortbody: Content-Length larger than the body, then the connection
    closes; midchunk: a chunked body cut mid-chunk (class 08);
  * longbody: more bytes than Content-Length announces (the excess must
    not be read as the next response);
  * drip: a body dripping one byte at a time (statement_timeout cancels);
  * headerflood: header lines without end; headerline: one header line
    without end (libcurl's own bound, class 08, the backend's memory
    hardly grows); headerslow: header lines dripping (statement_timeout);
  * notjson: 200 with 100 kB of HTML, control bytes and invalid UTF-8: a
    clear ERROR quoting a bounded, escaped prefix;
  * echo: 400 (or 401) echoing every request header, as a text body and
    as an Elasticsearch error reason: the password, the basic-auth token
    and the API keys must not appear in the message;
  * mgeterror: a multi-get (ON CONFLICT DO NOTHING's real-time existence
    check, after an ids search that finds nothing) answered 200 with a
    per-document error whose type and reason hold
    control bytes, 100 kB and the echoed headers: quoted bounded, escaped
    and masked.

Plus a server whose catalog row was edited behind the validator's back
(UPDATE pg_foreign_server) to a file:// URL while its connection was
cached: refused when next used.  After each case the backend is the same,
the hostile server's /ok works on the same connection, and a query
against a well-behaved Elasticsearch stand-in works.  No crash in the log.
PGPOLY_SHOW_ERRORS=1 prints every error message the test provokes.
"""

import base64
import gzip
import json
import os
import time

import es_helper
import pgtest

check = pgtest.check

SECRET_PASSWORD = "hunter2-password"
SECRET_ES_KEY = "es-api-key-hunter2"
SECRET_VEC_KEY = "vec-api-key-hunter2"
BASIC = base64.b64encode(("alice:" + SECRET_PASSWORD).encode()).decode()
SECRETS = (SECRET_PASSWORD, SECRET_ES_KEY, SECRET_VEC_KEY, BASIC)

ES_ROOT = json.dumps({"name": "hostile", "cluster_name": "hostile",
                      "version": {"number": "8.11.0"},
                      "tagline": "You Know, for Search"}).encode()
MODES = ("redirect301", "redirect302", "redirect307", "endless", "hugelength",
         "gzipbomb", "shortbody", "midchunk", "longbody", "drip", "notjson",
         "echo", "headerflood", "headerline", "headerslow", "mgeterror")
GZIP_BOMB = gzip.compress(b"[" * (20 << 20))


class HostileServer:
    """HTTP/1.1 on 127.0.0.1 with keep-alive; misbehaves by path."""

    def __init__(self, canary_port):
        self.canary_port = canary_port
        self.echo_json = False      # echo: as an ES error reason, not text
        self.server = pgtest.TcpServer(self._serve)
        self.stop = self.server.stop
        self.url = "http://127.0.0.1:%d" % self.server.port

    @staticmethod
    def _respond(c, status, body, extra=b""):
        c.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n%s\r\n%s"
                  % (status, len(body), extra, body))

    def _serve(self, c):
        buf = b""
        while not self.stop.is_set():
            req = pgtest.read_http_request(c, buf)
            if req is None:
                return
            _, path, headers, buf = req
            mode = next((m for m in MODES if m in path), None)
            if mode == "mgeterror" and "/_search" in path:
                # the ids search before the multi-get finds nothing
                self._respond(c, 200, b'{"hits": {"hits": []}}')
            elif mode is None:
                body = ES_ROOT if path == "/" else b'{"ok": true}'
                self._respond(c, 200, body)
            elif not getattr(self, "_" + mode)(c, headers):
                return          # the mode closed the connection

    def _redirect(self, c, status, location):
        self._respond(c, status, b'{"moved": true}',
                      b"Location: %s\r\n" % location.encode())
        return True

    def _redirect301(self, c, headers):
        return self._redirect(c, 301, "file:///etc/passwd")

    def _redirect302(self, c, headers):
        return self._redirect(c, 302, "gopher://127.0.0.1:%d/_SET%%20pwned%%201"
                              % self.canary_port)

    def _redirect307(self, c, headers):
        return self._redirect(c, 307, "http://127.0.0.1:%d/stolen" % self.canary_port)

    def _endless(self, c, headers):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (65536, b"[" * 65536)
        deadline = time.monotonic() + 60
        while not self.stop.is_set() and time.monotonic() < deadline:
            c.sendall(chunk)
        return False

    def _hugelength(self, c, headers):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000000000000\r\n\r\n{\"a\": ")
        self.stop.wait(5)
        return False

    def _gzipbomb(self, c, headers):
        self._respond(c, 200, GZIP_BOMB, b"Content-Encoding: gzip\r\n")
        return True

    def _shortbody(self, c, headers):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 5000\r\n\r\n{\"hits\": [1, 2")
        return False

    def _midchunk(self, c, headers):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n400\r\n{\"hits\": [1, 2")
        return False

    def _longbody(self, c, headers):
        # Announces 2 bytes, sends a whole fake second response after them.
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 2\r\n\r\n{}"
                  b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\n{\"smuggled\": true}\n")
        return True

    def _drip(self, c, headers):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100000\r\n\r\n")
        deadline = time.monotonic() + 60
        while not self.stop.is_set() and time.monotonic() < deadline:
            c.sendall(b" ")
            time.sleep(0.05)
        return False

    def _headers_forever(self, c, first, each, pause=0):
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + first)
        deadline = time.monotonic() + 60
        while not self.stop.is_set() and time.monotonic() < deadline:
            c.sendall(each)
            if pause:
                time.sleep(pause)
        return False

    def _headerflood(self, c, headers):
        return self._headers_forever(c, b"", b"X-Junk: %s\r\n" % (b"a" * 1000) * 64)

    def _headerline(self, c, headers):
        return self._headers_forever(c, b"X-Junk: ", b"a" * 65536)

    def _headerslow(self, c, headers):
        return self._headers_forever(c, b"", b"X-Slow: 1\r\n", 0.05)

    def _notjson(self, c, headers):
        body = (b"<html>\x01\x02\x1b[31m\xff\xfe\xc3(" +
                b"<p>not json</p>" * 7000 + b"</html>")
        self._respond(c, 200, body)
        return True

    def _echo(self, c, headers):
        text = b"; ".join(headers)
        if self.echo_json:
            body = json.dumps({"error": {"type": "security_exception",
                                         "reason": text.decode("latin-1")},
                               "status": 401}).encode()
        else:
            body = b"bad request, you sent: " + text
        self._respond(c, 401 if self.echo_json else 400, body)
        return True

    def _mgeterror(self, c, headers):
        text = b"; ".join(headers).decode("latin-1")
        err = {"type": "weird\x01_exception" + "t" * 300,
               "reason": "\x1b[31m" + text + " " + "r" * 100000}
        body = json.dumps({"docs": [{"_index": "mgeterror", "_id": "1",
                                     "error": err}]}).encode()
        self._respond(c, 200, body)
        return True


def test():
    mark = pgtest.pg_log_mark()
    canary = pgtest.TcpServer(lambda c: None)   # counts connections
    hostile = HostileServer(canary.port)
    good = es_helper.Standin()
    good.load("hostile_good", 10)
    db = pgtest.create_db("pgpoly_hostile_http")
    r = pgtest.psql("""
        CREATE SERVER hostile FOREIGN DATA WRAPPER pgpoly_elastic
            OPTIONS (url '%(h)s', timeout_ms '60000');
        CREATE USER MAPPING FOR CURRENT_USER SERVER hostile
            OPTIONS (username 'alice', password '%(pw)s');
        CREATE SERVER hostile_key FOREIGN DATA WRAPPER pgpoly_elastic
            OPTIONS (url '%(h)s');
        CREATE USER MAPPING FOR CURRENT_USER SERVER hostile_key
            OPTIONS (api_key '%(esk)s');
        CREATE FOREIGN TABLE es_echo (_id text, n int) SERVER hostile
            OPTIONS (index 'echo');
        CREATE FOREIGN TABLE es_echo_key (_id text, n int) SERVER hostile_key
            OPTIONS (index 'echo');
        CREATE FOREIGN TABLE es_mget (_id text, n int) SERVER hostile
            OPTIONS (index 'mgeterror');
        CREATE SERVER hostile_vec FOREIGN DATA WRAPPER pgpoly_vector
            OPTIONS (url '%(h)s', timeout_ms '60000');
        CREATE USER MAPPING FOR CURRENT_USER SERVER hostile_vec
            OPTIONS (api_key '%(vk)s');
        CREATE FOREIGN TABLE vec_redirect (id text, embedding real[])
            SERVER hostile_vec OPTIONS (collection 'redirect302');
        CREATE FOREIGN TABLE vec_echo (id text, embedding real[])
            SERVER hostile_vec OPTIONS (collection 'echo');
        CREATE FOREIGN TABLE vec_notjson (id text, embedding real[])
            SERVER hostile_vec OPTIONS (collection 'notjson');
        CREATE SERVER good FOREIGN DATA WRAPPER pgpoly_elastic
            OPTIONS (url '%(g)s');
        CREATE FOREIGN TABLE good_docs (_id text, n int) SERVER good
            OPTIONS (index 'hostile_good');
    """ % {"h": hostile.url, "g": good.url, "pw": SECRET_PASSWORD,
           "esk": SECRET_ES_KEY, "vk": SECRET_VEC_KEY}, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    s = pgtest.Session(db)
    pid = s.value("SELECT pg_backend_pid();")

    def still_fine(what):
        """The same backend; /ok on the hostile server; the good server."""
        check(s.value("SELECT pg_backend_pid();") == pid,
              "%s: the backend changed (crashed?)" % what)
        r = s.run("SELECT pgpoly.elastic_request('hostile', 'GET', '/ok');")
        check(r.rc == 0 and r.out.strip() == '{"ok": true}',
              "%s: /ok on the hostile server afterwards: %r %r"
              % (what, r.out, r.err))
        r = s.run("SELECT count(*) FROM good_docs;")
        check(r.rc == 0 and r.out.strip() == "10",
              "%s: the good server afterwards: %r %r" % (what, r.out, r.err))

    def expect(sql, states, what, contains=(), timeout=60):
        """sql fails with a SQLSTATE starting with one of states."""
        r = s.run(sql, timeout=timeout)
        if os.environ.get("PGPOLY_SHOW_ERRORS"):
            print("--- %s\n%s" % (what, r.err))
        ok = r.rc == 1 and any((r.sqlstate or "").startswith(x) for x in states)
        check(ok, "%s: want SQLSTATE %s, got rc=%s sqlstate=%s: %s"
              % (what, states, r.rc, r.sqlstate, r.err.strip()))
        for c in contains:
            check(c in r.err, "%s: %r not in the message: %s" % (what, c, r.err))
        for secret in SECRETS:
            check(secret not in r.err and secret not in r.out,
                  "%s: a credential leaked: %s" % (what, r.err))
        still_fine(what)
        return r

    def req(path, server="hostile"):
        return "SELECT pgpoly.elastic_request('%s', 'GET', '%s');" % (server, path)

    check(s.value(req("/ok")) == '{"ok": true}', "the hostile server's /ok")

    # Redirects: an ERROR, never followed (the canary sees nothing).
    for mode, code in (("redirect301", "301"), ("redirect302", "302"),
                       ("redirect307", "307")):
        r = expect(req("/" + mode), ["HV000"], mode,
                   ('"hostile"', code, "redirect", "does not follow"))
        check("passwd" not in r.err and "gopher" not in r.err,
              "%s: the Location is quoted: %s" % (mode, r.err))
    expect("SELECT * FROM vec_redirect;", ["HV000"], "vector redirect",
           ('"hostile_vec"', "302", "redirect"))
    check(canary.accepted == 0, "a redirect was followed: the canary saw %d "
          "connection(s)" % canary.accepted)

    # Oversized: bounded by pgpoly.max_response_size.
    s.value("SET pgpoly.max_response_size = '1MB';")
    expect(req("/endless"), ["54000"], "endless body", ("max_response_size",))
    expect(req("/hugelength"), ["54000"], "Content-Length of 1 TB",
           ("max_response_size",))
    expect(req("/gzipbomb"), ["54000"], "gzip bomb", ("max_response_size",))
    s.value("RESET pgpoly.max_response_size;")

    # Headers without end: libcurl keeps a bounded amount of them (the
    # backend's memory hardly grows) and fails the transfer long before
    # timeout_ms (60 s); dripping headers are cancelled by statement_timeout.
    hwm = pgtest.proc_status_kb(int(pid), "VmHWM")
    expect(req("/headerflood"), ["08"], "endless header lines", ('"hostile"',),
           timeout=30)
    expect(req("/headerline"), ["08"], "one endless header line", ('"hostile"',),
           timeout=30)
    grew = (pgtest.proc_status_kb(int(pid), "VmHWM") or 0) - (hwm or 0)
    check(grew < 32 * 1024, "hostile headers: the backend's peak memory grew by "
          "%d kB" % grew)
    s.value("SET statement_timeout = '1s';")
    expect(req("/headerslow"), ["57014"], "dripping headers", timeout=30)
    s.value("RESET statement_timeout;")

    # Lying Content-Length and a connection closed mid-body.
    expect(req("/shortbody"), ["08"], "body shorter than Content-Length",
           ('"hostile"',))
    expect(req("/midchunk"), ["08"], "connection closed mid-chunk",
           ('"hostile"',))
    r = s.run(req("/longbody"))
    check(r.rc == 0 and r.out.strip() == "{}",
          "body longer than Content-Length: want the announced {}, got %r %r"
          % (r.out, r.err))
    still_fine("body longer than Content-Length")
    r = s.run(req("/ok"))
    check("smuggled" not in r.out,
          "the excess after Content-Length was read as the next response: %r"
          % r.out)

    # A slow drip: statement_timeout cancels it.
    s.value("SET statement_timeout = '1s';")
    r = expect(req("/drip"), ["57014"], "slow drip", timeout=60)
    s.value("RESET statement_timeout;")
    print("note: statement_timeout 1s cancelled a dripping body after %.2f s"
          % r.elapsed)
    check(r.elapsed < 15, "the slow drip was not cancelled by statement_timeout "
          "(%.1f s)" % r.elapsed)

    # Not JSON: a clear ERROR quoting a bounded, escaped prefix.
    r = expect(req("/notjson"), ["HV004"], "body that is not JSON",
               ('"hostile"', "malformed", "<html>", "\\x01", "\\xFF", "..."))
    check(len(r.err) < 2000, "the message about a 100 kB body is %d bytes"
          % len(r.err))
    r = expect("SELECT * FROM vec_notjson;", ["HV004"], "vector: not JSON",
               ('"hostile_vec"', "malformed", "<html>", "..."))
    check(len(r.err) < 2000, "vector: the message is %d bytes" % len(r.err))

    # Echoed credentials are masked in messages: basic auth, ES api_key,
    # vector api_key.  (elastic_request returns an error body as its result:
    # data the caller asked for, not a message, so the scans are used here.)
    for echo_json in (False, True):
        hostile.echo_json = echo_json
        what = "echo (%s)" % ("ES error reason" if echo_json else "text body")
        r = expect("SELECT * FROM es_echo;", ["HV000", "28000"],
                   what + ", basic auth", ("Authorization: Basic ********",))
        r = expect("SELECT * FROM es_echo_key;", ["HV000", "28000"],
                   what + ", api_key", ("Authorization: ApiKey ********",))
        r = expect("SELECT * FROM vec_echo;", ["HV", "28000"],
                   what + ", vector api_key", ("********",))

    # A per-document error of a multi-get: type and reason quoted bounded,
    # escaped and with the echoed credentials masked.
    r = expect("INSERT INTO es_mget VALUES ('1', 1) ON CONFLICT DO NOTHING;", ["HV000"],
               "multi-get document error", ("could not tell whether document", "weird\\x01",
                                            "\\x1B[31m", "Authorization: Basic ********", "..."))
    check(len(r.err) < 2000, "the message about a 100 kB reason is %d bytes" % len(r.err))

    # A catalog row edited behind the validator's back, while the server's
    # connection is cached: refused at its next use, never used.
    n = s.value("SELECT count(*) FROM pgpoly.connections() WHERE server = 'hostile';")
    check(n == "1", "hostile's connection is cached (%s)" % n)
    hits = canary.accepted
    pgtest.psql("UPDATE pg_foreign_server SET srvoptions = "
                "ARRAY['url=file:///etc/passwd'] WHERE srvname = 'hostile';", db=db)
    r = s.run(req("/ok"))
    check(r.rc == 1 and r.sqlstate == "HV024" and '"hostile"' in r.err
          and '"url"' in r.err and "root:" not in r.err,
          "edited catalog row: want HV024 naming the server and option, got "
          "%s: %s" % (r.sqlstate, r.err))
    pgtest.psql("UPDATE pg_foreign_server SET srvoptions = "
                "ARRAY['url=gopher://127.0.0.1:%d/_x'] WHERE srvname = 'hostile_vec';"
                % canary.port, db=db)
    r = s.run("SELECT * FROM vec_echo;")
    check(r.rc == 1 and r.sqlstate == "HV024" and "gopher" in r.err,
          "edited vector catalog row: %s: %s" % (r.sqlstate, r.err))
    check(canary.accepted == hits, "the edited gopher URL was used")
    n = s.value("SELECT count(*) FROM pgpoly.connections() "
                "WHERE server IN ('hostile', 'hostile_vec');")
    check(n == "0", "connections with an edited URL stay cached (%s)" % n)
    check(s.value("SELECT pg_backend_pid();") == pid, "the backend changed")
    check(s.value("SELECT count(*) FROM good_docs;") == "10", "final query")
    s.close()
    hostile.server.close()
    canary.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
