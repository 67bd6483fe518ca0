#!/usr/bin/env python3
"""The trust rule against stores that authenticate, and against services
that only look like stores.

A non-superuser whose user mapping does not waive the rule (no superuser
set password_required 'false') may use a store only if the store refuses a
request made without the credential, as postgres_fdw refuses a server that
did not ask for the password.  sql/security_attack.sql shows the refusals
against the harness's open stores; this test shows what still works:

  * Redis with a password on the default user and an ACL user: the right
    password (with or without the user name) works, a wrong one is Redis's
    own refusal (08001); the ACL user alone, while the default user needs
    no password, is refused (2F003): anyone can use that Redis.
  * An Elasticsearch stand-in that requires an API key: the right key
    works, a wrong one is the stand-in's 401 (28000).
  * A recording HTTP server that answers 401 to requests without the
    credential: the check request of each store (GET / for Elasticsearch,
    GET .../collections for Chroma and Qdrant) carries no Authorization,
    X-Chroma-Token or api-key header; the requests after it do.
  * A service that answers 200 to anyone with a secret body (a cloud
    metadata endpoint): refused (2F003), and nothing of the body is in the
    message: a non-superuser cannot read it through pgpoly; also when it is
    the second URL, reached by failover after a decoy first URL refused the
    check and went away (each URL is checked before its first request).

Superusers are never checked: their requests all carry the credential.
"""

import base64
import json
import os
import socket

import es_helper
import pgtest

check = pgtest.check

ROLE = "fault_att_user_%d" % os.getpid()
ES_ROOT = json.dumps({"name": "rec", "version": {"number": "8.11.0"},
                      "tagline": "You Know, for Search"}).encode()
SECRET_BODY = b"TOP-SECRET-instance-credentials AKIAEXAMPLE"
ECHO_KEY = 'key/with"quote\\and/slash'
ECHO_PASSWORD = "pass/word??>"       # its basic-auth token holds a "/"
AUTH_HEADERS = ("authorization", "x-chroma-token", "api-key")


class Recorder:
    """HTTP/1.1 server recording requests.  With want (a header line): 401
    without it, else a store's answer: GET / as Elasticsearch, anything
    else 404 as Chroma would.  Without: 200 with a secret to anything (a
    metadata endpoint anyone may read).  once: stop listening after the
    first answer (a decoy that refuses the check, then goes away)."""

    def __init__(self, want=None, once=False):
        self.want = want.lower().encode() if want else None
        self.once = once
        self.requests = []      # (method, path, set of auth header names)
        self.server = pgtest.TcpServer(self._serve)
        self.url = "http://127.0.0.1:%d" % self.server.port

    def _answer(self, path, headers):
        if self.want == b"echo":
            # 400 with the request's headers as JSON, "/" escaped as "\/"
            # (as PHP's json_encode does) and no "error" member.
            pairs = [l.decode("latin-1").split(": ", 1) for l in headers if b": " in l]
            h = dict(sorted(pairs, key=lambda kv: kv[0].lower() not in AUTH_HEADERS))
            return 400, json.dumps({"echo": h}).replace("/", "\\/").encode()
        if self.want is None:
            return 200, SECRET_BODY
        if not any(h.lower() == self.want for h in headers):
            return 401, b'{"error": "Unauthorized", "message": "no"}'
        if path == "/":
            return 200, ES_ROOT
        return 404, b'{"error": "NotFoundError", "message": "Collection not found"}'

    def _serve(self, c):
        buf = b""
        while not self.server.stop.is_set():
            req = pgtest.read_http_request(c, buf)
            if req is None:
                return
            method, path, headers, buf = req
            names = {h.split(b":")[0].strip().lower().decode() for h in headers}
            self.requests.append((method, path, names & set(AUTH_HEADERS)))
            status, body = self._answer(path, headers)
            if self.once:
                # Stop listening before answering, so that the next connect
                # is refused (shutdown wakes the accepting thread; close
                # alone may leave it accepting once more).
                self.server.sock.shutdown(socket.SHUT_RDWR)
                self.server.close()
            c.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n%s\r\n%s"
                      % (status, len(body),
                         b"Connection: close\r\n" if self.once else b"", body))
            if self.once:
                return


def test():
    mark = pgtest.pg_log_mark()
    db = pgtest.create_db("pgpoly_security_attack")
    redis = pgtest.start_redis()
    pgtest.redis_cli(redis, "set", "att:k", "v")
    pgtest.redis_cli(redis, "acl", "setuser", "app", "on", ">app-pw", "~*", "+@all")
    redis_open = pgtest.start_redis()
    pgtest.redis_cli(redis_open, "acl", "setuser", "app", "on", ">app-pw", "~*",
                     "+@all")
    pgtest.redis_cli(redis, "config", "set", "requirepass", "redis-pw")
    es = es_helper.Standin("--api-key", "es-key")
    es.request("PUT", "/att", {"mappings": {"properties": {"n": {"type": "long"}}}},
               headers={"Authorization": "ApiKey es-key"})
    es.request("POST", "/att/_bulk?refresh=true",
               b'{"index": {"_id": "1"}}\n{"n": 7}\n', ndjson=True,
               headers={"Authorization": "ApiKey es-key"})
    rec_es = Recorder("Authorization: ApiKey rec-key")
    rec_vec = Recorder("X-Chroma-Token: vec-key")
    rec_qd = Recorder("api-key: qd-key")
    open_svc = Recorder()

    r = pgtest.psql("""
        CREATE ROLE %(role)s NOLOGIN;
        GRANT USAGE ON FOREIGN DATA WRAPPER pgpoly_redis, pgpoly_elastic,
            pgpoly_vector TO %(role)s;
        GRANT USAGE ON SCHEMA pgpoly TO %(role)s;
        GRANT EXECUTE ON FUNCTION pgpoly.elastic_request(name, text, text, jsonb)
            TO %(role)s;
        GRANT CREATE ON SCHEMA public TO %(role)s;
    """ % {"role": ROLE}, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    try:
        run(db, redis, redis_open, es, rec_es, rec_vec, rec_qd, open_svc)
    finally:
        pgtest.psql("DROP OWNED BY %s; DROP ROLE %s;" % (ROLE, ROLE), db=db)
    pgtest.check_pg_log(mark)


def es_and_vector(s, name, url, opts):
    """Servers NAME_es (pgpoly_elastic) and NAME_vec (pgpoly_vector, with
    table NAME_t) at url, with user mappings of the current user (opts:
    options of the Elasticsearch one; the vector one gets its api_key, or
    none)."""
    vec_opts = opts if opts.startswith("api_key") else "password_required 'true'"
    s.value("""
        CREATE SERVER %(n)s_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%(u)s');
        CREATE USER MAPPING FOR CURRENT_USER SERVER %(n)s_es OPTIONS (%(o)s);
        CREATE SERVER %(n)s_vec FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url '%(u)s');
        CREATE USER MAPPING FOR CURRENT_USER SERVER %(n)s_vec OPTIONS (%(v)s);
        CREATE FOREIGN TABLE %(n)s_t (id text, embedding real[]) SERVER %(n)s_vec
            OPTIONS (collection 'c');
    """ % {"n": name, "u": url, "o": opts, "v": vec_opts})


def run(db, redis, redis_open, es, rec_es, rec_vec, rec_qd, open_svc):
    s = pgtest.Session(db)
    pid = s.value("SELECT pg_backend_pid();")
    s.value("SET ROLE %s;" % ROLE)

    def expect(sql, state, what, absent=()):
        r = s.run(sql, timeout=60)
        check(r.rc == 1 and r.sqlstate == state,
              "%s: want SQLSTATE %s, got rc=%s %s: %s"
              % (what, state, r.rc, r.sqlstate, r.err.strip()))
        for a in absent:
            check(a not in r.err, "%s: %r is in the message: %s" % (what, a, r.err))
        return r

    def works(sql, want, what):
        r = s.run(sql, timeout=60)
        check(r.rc == 0 and r.out.strip() == want,
              "%s: want %r, got rc=%s %r %s" % (what, want, r.rc, r.out, r.err))

    def mapping(server, opts):
        s.value("DROP USER MAPPING IF EXISTS FOR CURRENT_USER SERVER %s;" % server)
        s.value("CREATE USER MAPPING FOR CURRENT_USER SERVER %s OPTIONS (%s);"
                % (server, opts))
        s.value("SELECT pgpoly.disconnect();")

    # Redis that asks for a password.
    s.value("""
        CREATE SERVER att_r FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d');
        CREATE FOREIGN TABLE att_r_t (key text, value text) SERVER att_r
            OPTIONS (table_type 'string', key_prefix 'att:');
        CREATE SERVER att_ro FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d');
        CREATE FOREIGN TABLE att_ro_t (key text, value text) SERVER att_ro
            OPTIONS (table_type 'string', key_prefix 'att:');
    """ % (redis, redis_open))
    mapping("att_r", "password 'redis-pw'")
    works("SELECT value FROM att_r_t WHERE key = 'k';", "v", "Redis, the password")
    mapping("att_r", "user 'app', password 'app-pw'")
    works("SELECT value FROM att_r_t WHERE key = 'k';", "v", "Redis, an ACL user")
    mapping("att_r", "password 'wrong'")
    expect("SELECT * FROM att_r_t;", "08001", "Redis, a wrong password")
    # The same ACL user on a Redis whose default user needs no password.
    mapping("att_ro", "user 'app', password 'app-pw'")
    expect("SELECT * FROM att_ro_t;", "2F003", "Redis whose default user is open")

    # Elasticsearch that asks for an API key.
    s.value("""
        CREATE SERVER att_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%s');
        CREATE FOREIGN TABLE att_es_t (_id text, n int) SERVER att_es
            OPTIONS (index 'att');
    """ % es.url)
    mapping("att_es", "api_key 'es-key'")
    works("SELECT n FROM att_es_t;", "7", "Elasticsearch, the API key")
    mapping("att_es", "api_key 'wrong'")
    expect("SELECT n FROM att_es_t;", "28000", "Elasticsearch, a wrong API key")

    # What the check request carries: nothing; what follows: the credential.
    for name, rec, wrapper, opts, table, sql in (
            ("att_rec_es", rec_es, "pgpoly_elastic", "",
             "(_id text) SERVER att_rec_es OPTIONS (index 'x')",
             "SELECT pgpoly.elastic_request('att_rec_es', 'GET', '/x');"),
            ("att_rec_vec", rec_vec, "pgpoly_vector", "",
             "(id text, embedding real[]) SERVER att_rec_vec OPTIONS (collection 'c')",
             "SELECT * FROM att_rec_vec_t;"),
            ("att_rec_qd", rec_qd, "pgpoly_vector", ", provider 'qdrant'",
             "(id text, embedding real[]) SERVER att_rec_qd OPTIONS (collection 'c')",
             "SELECT * FROM att_rec_qd_t;")):
        key = rec.want.decode().split(" ")[-1]
        s.value("CREATE SERVER %s FOREIGN DATA WRAPPER %s OPTIONS (url '%s'%s);"
                % (name, wrapper, rec.url, opts))
        s.value("CREATE FOREIGN TABLE %s_t %s;" % (name, table))
        mapping(name, "api_key '%s'" % key)
        r = s.run(sql, timeout=60)
        check(r.sqlstate != "2F003" and len(rec.requests) >= 2,
              "%s: refused or no request after the check: %s %s"
              % (name, r.sqlstate, r.err))
        if rec.requests:
            first = rec.requests[0]
            check(first[0] == "GET" and not first[2],
                  "%s: the check request carried %s" % (name, first))
            check(all(req[2] for req in rec.requests[1:]),
                  "%s: a request after the check carried no credential: %s"
                  % (name, rec.requests))
            print("note: %s: check %s %s, then %s" % (name, first[0], first[1],
                  ", ".join("%s %s" % q[:2] for q in rec.requests[1:])))

    # A service anyone may read: refused, and its answer is not quoted.
    es_and_vector(s, "att_open", open_svc.url, "api_key 'made-up'")
    expect("SELECT pgpoly.elastic_request('att_open_es', 'GET', '/');", "2F003",
           "an open service as Elasticsearch", ("TOP-SECRET", "AKIA"))
    expect("SELECT * FROM att_open_t;", "2F003",
           "an open service as a vector store", ("TOP-SECRET", "AKIA"))

    # A decoy refuses the check, then goes away: the request fails over to
    # the next URL, which must be checked too (it answers anyone).
    decoy = Recorder("X-Never: matched", once=True)
    s.value("""
        CREATE SERVER att_decoy FOREIGN DATA WRAPPER pgpoly_elastic
            OPTIONS (url '%s, %s');
        CREATE USER MAPPING FOR CURRENT_USER SERVER att_decoy
            OPTIONS (api_key 'made-up');
    """ % (decoy.url, open_svc.url))
    expect("SELECT pgpoly.elastic_request('att_decoy', 'GET', '/');", "2F003",
           "failover to a URL not checked", ("TOP-SECRET", "AKIA"))
    check([q[:2] for q in decoy.requests] == [("GET", "/")],
          "the decoy saw %s" % decoy.requests)

    # A service echoing the request headers JSON-escaped: the credential is
    # masked in that form too (a superuser's mapping: no check request).
    echo = Recorder("echo")
    s.value("RESET ROLE;")
    es_and_vector(s, "att_echo", echo.url,
                  "api_key '%s'" % ECHO_KEY.replace("'", "''"))
    es_and_vector(s, "att_echo_basic", echo.url,
                  "username 'u', password '%s'" % ECHO_PASSWORD)
    basic = base64.b64encode(("u:" + ECHO_PASSWORD).encode()).decode()
    for sql, what in (("SELECT pgpoly.elastic_request('att_echo_es', 'GET', '/');",
                       "echo, Elasticsearch api_key"),
                      ("SELECT pgpoly.elastic_request('att_echo_basic_es', 'GET', '/');",
                       "echo, basic auth"),
                      ("SELECT * FROM att_echo_t;", "echo, vector api_key")):
        r = s.run(sql, timeout=60)
        forms = [ECHO_KEY, basic]
        forms += [json.dumps(f)[1:-1].replace("/", "\\/") for f in forms]
        check(r.rc == 1 and "echo" in r.err and "********" in r.err,
              "%s: want an error quoting the masked echo, got %s" % (what, r.err))
        for f in forms:
            check(f not in r.err, "%s: the credential leaked as %r: %s"
                  % (what, f, r.err))

    # A superuser is not checked.
    s.value("RESET ROLE;")
    s.value("CREATE USER MAPPING FOR CURRENT_USER SERVER att_rec_es "
            "OPTIONS (api_key 'rec-key');")
    s.value("SELECT pgpoly.disconnect();")
    n = len(rec_es.requests)
    r = s.run("SELECT pgpoly.elastic_request('att_rec_es', 'GET', '/x');")
    check(r.rc == 0 and all(q[2] for q in rec_es.requests[n:]),
          "superuser: %s %s" % (rec_es.requests[n:], r.err))
    check(s.value("SELECT pg_backend_pid();") == pid, "the backend changed")
    s.close()


pgtest.main(test)
