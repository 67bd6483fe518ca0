#!/usr/bin/env python3
"""Resources of one long-lived session (a pooled connection) stay flat.

A backend behind pgbouncer or a JDBC pool lives for weeks; memory it keeps
reachable (a cache entry per dropped object, a malloc'd reply never freed)
escapes valgrind's end-of-run leak check yet grows without end.  One
backend runs every path below hundreds of times; after a warm-up, the
growth between two checkpoints must be nil:

  * the pgpoly memory contexts (pg_backend_memory_contexts, names starting
    with "pgpoly") by at most CTX_TOL bytes each;
  * the backend's anonymous memory (RssAnon) beyond the growth of all its
    memory contexts (so: malloc'd memory of hiredis, libcurl, jansson) by
    at most RSS_TOL_KB;
  * its sockets, and its clients of a private Redis (CLIENT LIST), by at
    most one.

Paths: Redis hash/json/list/zset reads, writes, commits, rollbacks,
savepoint rollbacks, prepared statements under generic plans, the batched
join, cursors (also WITH HOLD, and left open at ROLLBACK); Elasticsearch
(a private stand-in) and the vector service (CHROMA_URL, when set) reads
and writes; the error paths: store down (connection refused), silent store
(timeout_ms), statement_timeout and pg_cancel_backend() mid-request, a
lying Redis and HTTP peers answering 500 or a truncated body, a bad value
in a store, a key of the wrong type at COMMIT, a constraint ERROR with
pending writes; the pgpoly.* functions (features, ingest, materialize,
predictions, lineage, search_runs, drift, elastic_request, vector_search,
connections/disconnect); CREATE/DROP of foreign tables, servers, user
mappings and feature views, ALTER SERVER, SET ROLE switches; the sync
worker (its RssAnon and sockets) delivering changes and retrying a store
that is down.

Bugs it caught: the connection cache kept an entry (and the user
mapping's secrets) per dropped server or user mapping, ~0.9 kB each; the
Redis table cache kept an entry per dropped foreign table; the feature
view cache kept every dropped view's entry with its prepared probe
statements, ~16 kB each.

SESSION_SOAK_SCALE (default 1) multiplies the iterations (e.g. 20 for a
soak of several minutes); SESSION_SOAK_VERBOSE=1 prints every measurement.
"""

# pgpoly-fault: exclusive
# (run.py runs it alone: it runs thousands of CREATE/DROP statements, whose
# invalidation messages can overflow a neighbour backend's queue: a cache
# reset reopens that backend's store connections, which tests counting
# connections would see)

import os
import threading
import time

import es_helper
import pgtest
import pgwire
import sync_helper as sh

check = pgtest.check

SCALE = float(os.environ.get("SESSION_SOAK_SCALE", "1"))
VERBOSE = os.environ.get("SESSION_SOAK_VERBOSE") == "1"
CTX_TOL = 8192          # bytes, per pgpoly context
RSS_TOL_KB = 768        # a glibc arena step is 128-132 kB
ANY = "*"               # any outcome (a race decides)


def n_iter(n):
    return max(int(n * SCALE), 10)


class Cancel(str):
    """A statement cancelled by pg_cancel_backend() while it waits."""


class Soak:
    def __init__(self, db, redis_port):
        self.db = db
        self.redis_port = redis_port
        self.c = pgwire.Conn(db)
        self.pid = int(self.c.query("SELECT pg_backend_pid()")[0].rows[0][0])
        self.canceller = pgwire.Conn(db)
        self.report = []

    def measure(self):
        r = self.c.query("SELECT name, sum(total_bytes)::bigint FROM pg_backend_memory_contexts "
                         "GROUP BY 1")
        every = {row[0].decode(): int(row[1]) for row in r[0].rows}
        ctx = {k: v for k, v in every.items() if k.startswith("pgpoly")}
        return {"ctx": ctx, "all": sum(every.values()),
                "rss": pgtest.proc_status_kb(self.pid, "RssAnon"),
                "socks": pgtest.backend_sockets(self.pid),
                "redis": len(pgtest.redis_clients(self.redis_port) or [])}

    def _cancel_when_running(self):
        """pg_cancel_backend() once the soaked session runs its statement: a
        cancel that reaches it before, while it is idle, is dropped (as a
        fixed delay could on a loaded machine), and the statement would wait
        for its store's timeout instead."""
        deadline = time.monotonic() + 10 * pgtest.SCALE
        while time.monotonic() < deadline:
            r = self.canceller.query("SELECT state FROM pg_stat_activity WHERE pid = %d"
                                     % self.pid)
            if r[0].rows and r[0].rows[0][0] == b"active":
                break
            time.sleep(0.005)
        time.sleep(0.02)  # into the store request
        self.canceller.query("SELECT pg_cancel_backend(%d)" % self.pid)

    def _one(self, sql, want, errors):
        if callable(sql):
            sql = sql()
        if isinstance(sql, Cancel):
            t = threading.Thread(target=self._cancel_when_running)
            t.start()
            res = self.c.query(sql)
            t.join()
        else:
            res = self.c.query(sql)
        state = next((x.error.get("C") for x in res if x.error), None)
        if want != ANY and state != want:
            errors.append("%s: got %s, want %s (%s)" % (
                sql[:90], state, want,
                next((x.error.get("M") for x in res if x.error), "")))
        if self.c.status == "E" and state != want:
            self.c.query("ROLLBACK")

    def run(self, name, stmts, n):
        """stmts: (sql or callable, expected SQLSTATE or None or ANY)."""
        n = n_iter(n)
        errors = []
        t0 = time.monotonic()

        def rounds(k):
            for _ in range(k):
                for sql, want in stmts:
                    self._one(sql, want, errors)
        rounds(max(n // 2, 10))
        a = self.measure()
        rounds(n)
        b = self.measure()
        growth = {k: b["ctx"].get(k, 0) - a["ctx"].get(k, 0)
                  for k in set(a["ctx"]) | set(b["ctx"])}
        grew = {k: v for k, v in growth.items() if v > CTX_TOL}
        # malloc'd memory outside the memory contexts (libraries): what
        # RssAnon gained beyond the growth of every context (PostgreSQL's
        # own caches grow with each new OID a DDL statement makes)
        rss = b["rss"] - a["rss"] - max(b["all"] - a["all"], 0) // 1024
        line = "%-34s %5d iters %5.1fs  pgpoly ctx %+8d B  malloc %+6d kB  sockets %+d  redis clients %+d" % (
            name, n, time.monotonic() - t0, sum(growth.values()), rss,
            b["socks"] - a["socks"], b["redis"] - a["redis"])
        print(line, flush=True)
        if VERBOSE:
            print("   ", a, "\n   ", b)
        check(not errors, "%s: unexpected outcomes (%d), first: %s" % (
            name, len(errors), errors[:3]))
        check(not grew, "%s: pgpoly memory grew over %d iterations: %s bytes"
              % (name, n, grew))
        check(rss <= RSS_TOL_KB, "%s: RssAnon grew by %d kB more than the memory contexts over %d iterations"
              % (name, rss, n))
        check(b["socks"] - a["socks"] <= 1, "%s: sockets %d -> %d" % (
            name, a["socks"], b["socks"]))
        check(b["redis"] - a["redis"] <= 1, "%s: Redis clients %d -> %d" % (
            name, a["redis"], b["redis"]))


def hostile_servers():
    """A silent TCP peer, a lying RESP peer, HTTP peers answering 500 and junk."""
    def silent(s):
        while s.recv(65536):
            pass

    def liar(s):
        while s.recv(65536):
            s.sendall(b"?garbage\r\n")

    def http(status, body):
        def serve(s):
            while pgtest.read_http_request(s) is not None:
                s.sendall(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (status, len(body), body))
        return serve
    return (pgtest.TcpServer(silent), pgtest.TcpServer(liar),
            pgtest.TcpServer(http(b"500 Internal Server Error",
                                  b'{"error":{"type":"x","reason":"boom"},"status":500}')),
            pgtest.TcpServer(http(b"200 OK", b'{"hits": [1,2,')))


def setup(db, rport, es, chroma, dead, silent, liar, h500, hjunk):
    sql = """
CREATE SERVER r FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%(rport)d');
CREATE USER MAPPING FOR CURRENT_USER SERVER r;
CREATE SERVER rdead FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%(dead)d', connect_timeout_ms '200');
CREATE SERVER rsilent FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%(silent)d', timeout_ms '20');
CREATE SERVER rcancel FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%(silent)d', timeout_ms '10000');
CREATE SERVER rliar FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%(liar)d');
CREATE FOREIGN TABLE rh (key text, a int, t text) SERVER r OPTIONS (key_prefix 'soak:h:', fetch_size '7');
CREATE FOREIGN TABLE rbad (key text, a int) SERVER r OPTIONS (key_prefix 'soak:bad:');
CREATE FOREIGN TABLE rwt (key text, a int) SERVER r OPTIONS (key_prefix 'soak:wt:');
CREATE FOREIGN TABLE rj (key text, a int, t text) SERVER r OPTIONS (table_type 'json', key_prefix 'soak:j:');
CREATE FOREIGN TABLE rl (key text, idx int, value text) SERVER r OPTIONS (table_type 'list', key_prefix 'soak:l:');
CREATE FOREIGN TABLE rz (key text, member text, score float8) SERVER r OPTIONS (table_type 'zset', key_prefix 'soak:z:');
CREATE FOREIGN TABLE rdeadt (key text, a int) SERVER rdead;
CREATE FOREIGN TABLE rsilentt (key text, a int) SERVER rsilent;
CREATE FOREIGN TABLE rcancelt (key text, a int) SERVER rcancel;
CREATE FOREIGN TABLE rliart (key text, a int) SERVER rliar;
INSERT INTO rh SELECT g::text, g, 'v' || g FROM generate_series(1, 50) g;
INSERT INTO rj SELECT g::text, g, 'v' || g FROM generate_series(1, 20) g;
CREATE TABLE loc (k text PRIMARY KEY, n int);
INSERT INTO loc SELECT g::text, g FROM generate_series(1, 40) g;
ANALYZE loc;
CREATE TABLE uniq (k text PRIMARY KEY);
INSERT INTO uniq VALUES ('a');
CREATE SERVER e FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%(es)s');
CREATE SERVER edead FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url 'http://127.0.0.1:%(dead)d', connect_timeout_ms '200');
CREATE SERVER esilent FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url 'http://127.0.0.1:%(silent)d', timeout_ms '20');
CREATE SERVER ecancel FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url 'http://127.0.0.1:%(silent)d', timeout_ms '10000');
CREATE SERVER e500 FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url 'http://127.0.0.1:%(h500)d');
CREATE SERVER ejunk FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url 'http://127.0.0.1:%(hjunk)d');
CREATE FOREIGN TABLE et (_id text, a int, t text) SERVER e OPTIONS (index 'soak', refresh 'true', fetch_size '7');
CREATE FOREIGN TABLE edeadt (_id text, a int) SERVER edead OPTIONS (index 'soak');
CREATE FOREIGN TABLE esilentt (_id text, a int) SERVER esilent OPTIONS (index 'soak');
CREATE FOREIGN TABLE ecancelt (_id text, a int) SERVER ecancel OPTIONS (index 'soak');
CREATE FOREIGN TABLE e500t (_id text, a int) SERVER e500 OPTIONS (index 'soak');
CREATE FOREIGN TABLE ejunkt (_id text, a int) SERVER ejunk OPTIONS (index 'soak');
INSERT INTO et SELECT g::text, g, 'v' || g FROM generate_series(1, 30) g;
CREATE FOREIGN TABLE fo (user_id text OPTIONS (key 'true'), clicks int, ctr float8)
  SERVER r OPTIONS (key_prefix 'soak:f:');
SELECT pgpoly.create_feature_view('fv', 'user_id', 'fo', ttl => '1 day');
SELECT pgpoly.put_features('fv', 'u' || g, jsonb_build_object('clicks', g, 'ctr', 0.5))
  FROM generate_series(1, 20) g;
SELECT pgpoly.start_run('exp', 'r0') IS NOT NULL;
SELECT pgpoly.register_model_version('m', 's3://x');
SELECT pgpoly.set_model_alias('m', 'prod', 1);
CREATE TABLE dref AS SELECT g::float8 AS x, (g %% 5)::text AS y FROM generate_series(1, 200) g;
CREATE TABLE dcur AS SELECT (g * 1.3)::float8 AS x, (g %% 7)::text AS y FROM generate_series(1, 200) g;
CREATE ROLE soak_r1_%(pid)d;
CREATE ROLE soak_r2_%(pid)d;
GRANT SELECT ON rh TO soak_r1_%(pid)d, soak_r2_%(pid)d;
CREATE USER MAPPING FOR soak_r1_%(pid)d SERVER r OPTIONS (password_required 'false');
CREATE USER MAPPING FOR soak_r2_%(pid)d SERVER r OPTIONS (password_required 'false');
""" % {"rport": rport, "dead": dead, "silent": silent.port, "liar": liar.port,
       "es": es.url, "h500": h500.port, "hjunk": hjunk.port, "pid": os.getpid()}
    if chroma:
        sql += """
CREATE SERVER v FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url '%(chroma)s');
CREATE SERVER vdead FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url 'http://127.0.0.1:%(dead)d', connect_timeout_ms '200');
CREATE SERVER v500 FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url 'http://127.0.0.1:%(h500)d');
CREATE SERVER vjunk FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url 'http://127.0.0.1:%(hjunk)d');
CREATE FOREIGN TABLE vt (id text, embedding real[], document text, metadata jsonb) SERVER v
  OPTIONS (collection 'soak_%(pid)d', create_collection 'true', distance 'l2');
CREATE FOREIGN TABLE vdeadt (id text, embedding real[]) SERVER vdead OPTIONS (collection 'x');
CREATE FOREIGN TABLE v500t (id text, embedding real[]) SERVER v500 OPTIONS (collection 'x');
CREATE FOREIGN TABLE vjunkt (id text, embedding real[]) SERVER vjunk OPTIONS (collection 'x');
INSERT INTO vt SELECT g::text, ARRAY[g, g + 1, g + 2]::real[], 'd' || g, jsonb_build_object('g', g)
  FROM generate_series(1, 20) g;
""" % {"chroma": chroma, "dead": dead, "h500": h500.port, "hjunk": hjunk.port,
       "pid": os.getpid()}
    r = pgtest.psql(sql, db=db, timeout=120)
    check(r.rc == 0, "setup failed: %s" % r.err)
    return r.rc == 0


def session_paths(s, es_url, chroma):
    """Every path in one backend."""
    s.run("redis reads", [
        ("SELECT * FROM rh WHERE key = '7'", None),
        ("SELECT count(*) FROM rh", None),
        ("SELECT * FROM rh WHERE key = ANY('{1,2,3}')", None),
        ("SELECT * FROM rj WHERE key = '3'", None),
        ("SELECT * FROM rz WHERE key = 'a' AND score > 0", None)], 300)
    s.run("redis writes, rollbacks, savepoints", [
        ("INSERT INTO rh VALUES ('w', 1, 'x')", None),
        ("UPDATE rh SET a = a + 1 WHERE key = 'w'", None),
        ("DELETE FROM rh WHERE key = 'w'", None),
        ("INSERT INTO rl VALUES ('a', NULL, 'x')", None),
        ("DELETE FROM rl WHERE key = 'a'", None),
        ("INSERT INTO rz VALUES ('a', 'm', 1)", None),
        ("UPDATE rj SET a = a WHERE key = '4'", None),
        ("BEGIN", None), ("INSERT INTO rh VALUES ('w', 1, 'x')", None), ("ROLLBACK", None),
        ("BEGIN", None), ("INSERT INTO rh VALUES ('w', 1, 'x')", None), ("SAVEPOINT s", None),
        ("UPDATE rh SET a = 5 WHERE key = 'w'", None), ("ROLLBACK TO s", None),
        ("COMMIT", None)], 300)
    s.c.query("SET plan_cache_mode = force_generic_plan")
    s.c.query("PREPARE p(text) AS SELECT * FROM rh WHERE key = $1")
    s.c.query("PREPARE pj AS SELECT l.k, r.a FROM loc l JOIN rh r ON r.key = l.k WHERE l.n < 30")
    s.run("redis prepared, batched join, cursors", [
        ("EXECUTE p('5')", None), ("EXECUTE pj", None),
        ("SELECT l.k, r.a FROM loc l JOIN rh r ON r.key = l.k", None),
        ("BEGIN", None), ("DECLARE cc CURSOR FOR SELECT * FROM rh", None),
        ("FETCH 3 FROM cc", None), ("CLOSE cc", None),
        ("DECLARE cd CURSOR WITH HOLD FOR SELECT * FROM rh WHERE key = ANY('{1,2}')", None),
        ("COMMIT", None), ("FETCH 1 FROM cd", None), ("CLOSE cd", None),
        ("BEGIN", None), ("DECLARE ce CURSOR FOR SELECT * FROM rh", None),
        ("FETCH 3 FROM ce", None), ("ROLLBACK", None)], 300)
    s.c.query("RESET plan_cache_mode")
    s.run("redis bad value, wrong type, ERROR at COMMIT", [
        ("SELECT * FROM rbad", "22P02"),
        ("BEGIN", None), ("SAVEPOINT a", None), ("SELECT * FROM rbad WHERE key = '2'", "22P02"),
        ("ROLLBACK TO a", None), ("COMMIT", None),
        ("INSERT INTO rwt VALUES ('1', 2)", "HV004"),
        ("BEGIN", None), ("INSERT INTO rwt VALUES ('1', 2)", None), ("COMMIT", "HV004"),
        ("BEGIN", None), ("INSERT INTO rh VALUES ('c1', 1, 'x')", None),
        ("INSERT INTO uniq VALUES ('a')", "23505"), ("ROLLBACK", None)], 300)
    s.run("redis down, silent, lying", [
        ("SELECT * FROM rdeadt WHERE key = '1'", "08001"),
        ("INSERT INTO rdeadt VALUES ('1', 1)", "08001"),
        ("SELECT * FROM rsilentt WHERE key = '1'", "08006"),
        ("SELECT * FROM rliart WHERE key = '1'", "08P01"),
        ("SELECT * FROM rliart", "08P01")], 100)
    s.c.query("SET statement_timeout = '15ms'")
    s.run("redis statement_timeout", [("SELECT * FROM rcancelt WHERE key = '1'", "57014")], 60)
    s.c.query("RESET statement_timeout")
    s.run("redis+es pg_cancel_backend", [
        (Cancel("SELECT * FROM rcancelt WHERE key = '1'"), "57014"),
        (Cancel("SELECT * FROM ecancelt"), "57014")], 30)
    s.run("connections, disconnect", [
        ("SELECT count(*) FROM pgpoly.connections()", None),
        ("SELECT pgpoly.disconnect('r')", None),
        ("SELECT * FROM rh WHERE key = '1'", None)], 200)
    s.run("es reads, writes, rollbacks", [
        ("SELECT * FROM et WHERE _id = '3'", None),
        ("SELECT count(*) FROM et", None),
        ("SELECT * FROM et WHERE a > 5 ORDER BY a LIMIT 3", None),
        ("SELECT * FROM et", None),
        ("INSERT INTO et VALUES ('w', 1, 'x')", None),
        ("UPDATE et SET a = 2 WHERE _id = 'w'", None),
        ("DELETE FROM et WHERE _id = 'w'", None),
        ("BEGIN", None), ("INSERT INTO et VALUES ('w2', 1, 'x')", None), ("ROLLBACK", None)], 100)
    s.run("es down, silent, 500, truncated", [
        ("SELECT * FROM edeadt", "08001"),
        ("SELECT * FROM esilentt", "08006"),
        ("SELECT * FROM e500t", ANY),
        ("SELECT * FROM ejunkt", "HV004"),
        ("INSERT INTO e500t VALUES ('1', 1)", ANY),
        ("SELECT pgpoly.elastic_request('e500', 'GET', '/x')", ANY),
        ("SELECT pgpoly.elastic_request('e', 'GET', '/soak/_count') IS NOT NULL", None),
        ("SELECT pgpoly.elastic_request('e', 'GET', '/nosuch/_count')", ANY),
        ("SELECT pgpoly.elastic_request('edead', 'GET', '/')", "08001")], 100)
    if chroma:
        s.run("vector reads, writes, errors", [
            ("SELECT id FROM vt ORDER BY embedding <-> '{1,2,3}' LIMIT 3", None),
            ("SELECT * FROM vt WHERE id = '2'", None),
            ("SELECT * FROM pgpoly.vector_search('vt', '{1,2,3}', 3)", None),
            ("INSERT INTO vt VALUES ('w', '{1,1,1}', 'x', '{}')", None),
            ("BEGIN", None), ("INSERT INTO vt VALUES ('w2', '{1,1,1}')", None), ("ROLLBACK", None),
            ("SELECT * FROM vdeadt", "08001"),
            ("SELECT * FROM v500t", ANY),
            ("SELECT * FROM vjunkt", "HV004")], 40)
    else:
        print("note: CHROMA_URL not set, vector paths skipped")
    s.run("features, ingest, materialize", [
        ("SELECT * FROM pgpoly.get_online_features('fv', ARRAY['u1','u2','zz'])", None),
        ("SELECT * FROM pgpoly.get_online_features('fv', ARRAY['u1'], ARRAY['ctr'])", None),
        ("SELECT pgpoly.put_features('fv', 'u3', '{\"clicks\": 3}')", None),
        ("SELECT pgpoly.ingest_features('fv', $$SELECT 'u' || g AS user_id, now() AS event_time, "
         "g AS clicks FROM generate_series(1, 5) g$$)", None),
        ("SELECT pgpoly.materialize('fv')", None),
        ("SELECT * FROM pgpoly.get_online_features('nope', ARRAY['u1'])", "42704"),
        ("SELECT pgpoly.put_features('fv', 'u3', '{\"bogus\": 3}')", "42703")], 100)
    s.run("predictions, lineage, search_runs, drift", [
        ("SELECT pgpoly.log_prediction('m', 1, 'e1', '{\"p\": 1}')", None),
        ("SELECT pgpoly.log_prediction('m@prod', NULL, 'e1', '{\"p\": 1}', request_id => 'r')", None),
        ("SELECT pgpoly.log_predictions('[{\"model\": \"m\", \"version\": 1, \"entity\": \"a\", "
         "\"prediction\": 1}, {\"model\": \"m\", \"version\": 1, \"entity\": \"b\", \"prediction\": 2}]')", None),
        ("SELECT pgpoly.log_predictions('[{\"model\": \"m\"}]')", "22004"),
        ("SELECT pgpoly.log_prediction('m@nope', NULL, 'e1', '1')", "42704"),
        ("SELECT * FROM pgpoly.lineage('model_version', 'm@1', 'both')", None),
        ("SELECT * FROM pgpoly.search_runs('exp', 'metrics.rmse < 0.5 and params.model = ''rf''', "
         "'metrics.rmse ASC')", None),
        ("SELECT * FROM pgpoly.search_runs('exp', 'bogus ~~ 1')", "22023"),
        ("SELECT * FROM pgpoly.drift('dref', 'dcur')", None),
        ("SELECT * FROM pgpoly.drift('dref', 'nosuch')", "42P01")], 100)
    s.run("ALTER SERVER, SET ROLE", [
        ("ALTER SERVER r OPTIONS (SET port '%d')" % s.redis_port, None),
        ("SELECT * FROM rh WHERE key = '1'", None),
        ("ALTER SERVER e OPTIONS (ADD timeout_ms '5000')", None),
        ("SELECT * FROM et WHERE _id = '1'", None),
        ("ALTER SERVER e OPTIONS (DROP timeout_ms)", None),
        ("SET ROLE soak_r1_%d" % os.getpid(), None), ("SELECT * FROM rh WHERE key = '1'", None),
        ("SET ROLE soak_r2_%d" % os.getpid(), None), ("SELECT * FROM rh WHERE key = '1'", None),
        ("RESET ROLE", None)], 100)
    # per-backend caches keyed by OID: entries of dropped objects must go
    s.run("CREATE/DROP foreign tables", [
        ("CREATE FOREIGN TABLE tmpf (key text, a int) SERVER r OPTIONS (key_prefix 'soak:tmp:')", None),
        ("SELECT * FROM tmpf WHERE key = '1'", None),
        ("INSERT INTO tmpf VALUES ('1', 1)", None),
        ("DROP FOREIGN TABLE tmpf", None)], 800)
    s.run("CREATE/DROP servers, user mappings", [
        ("CREATE SERVER tmps FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%d')" % s.redis_port, None),
        ("CREATE USER MAPPING FOR CURRENT_USER SERVER tmps", None),
        ("CREATE FOREIGN TABLE tmpf (key text, a int) SERVER tmps OPTIONS (key_prefix 'soak:tmp:')", None),
        ("SELECT * FROM tmpf WHERE key = '1'", None),
        ("DROP USER MAPPING FOR CURRENT_USER SERVER tmps", None),
        ("CREATE USER MAPPING FOR CURRENT_USER SERVER tmps OPTIONS (password_required 'false')", None),
        ("SELECT * FROM tmpf WHERE key = '1'", None),
        ("DROP SERVER tmps CASCADE", None),
        ("CREATE SERVER tmpes FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%s')" % es_url, None),
        ("CREATE FOREIGN TABLE tmpe (_id text, a int) SERVER tmpes OPTIONS (index 'soak')", None),
        ("SELECT * FROM tmpe WHERE _id = '1'", None),
        ("DROP SERVER tmpes CASCADE", None)], 200)
    ctr = [0]

    def new_view():
        ctr[0] += 1
        return ("CREATE FOREIGN TABLE fvc%d_on (user_id text OPTIONS (key 'true'), x int) "
                "SERVER r OPTIONS (key_prefix 'soak:fvc:');"
                "SELECT pgpoly.create_feature_view('fvc%d', 'user_id', 'fvc%d_on')"
                % (ctr[0], ctr[0], ctr[0]))
    s.run("CREATE/DROP feature views", [
        (new_view, None),
        (lambda: "SELECT * FROM pgpoly.get_online_features('fvc%d', ARRAY['a','b'])" % ctr[0], None),
        (lambda: "SELECT * FROM pgpoly.get_online_features('fvc%d', ARRAY['a'], ARRAY['x'])"
         % ctr[0], None),
        (lambda: "SELECT pgpoly.drop_feature_view('fvc%d', true)" % ctr[0], None)], 60)
    s.c.query("RESET ROLE")


def sync_worker(db, rport):
    """The sync worker's RssAnon and sockets over delivery and retry cycles."""
    r = pgtest.psql("ALTER DATABASE %s SET pgpoly.sync_max_retry_delay = 100;" % db, db=db)
    check(r.rc == 0, r.err)
    r = pgtest.psql(sh.setup_sql(rport, "soak:s:", timeout_ms=300, sync="soak_kv"),
                    db=db)
    if not check(r.rc == 0, "sync setup: %s" % r.err):
        return
    c = pgwire.Conn(db)
    pid = 0
    pgtest.wait_for(lambda: sh.worker_pid(lambda q: pgtest.psql(q, db=db), db) != 0,
                    timeout=30, what="the sync worker")
    pid = sh.worker_pid(lambda q: pgtest.psql(q, db=db), db)

    def m():
        return pgtest.proc_status_kb(pid, "RssAnon"), pgtest.backend_sockets(pid)

    def cycle(i):
        c.query("INSERT INTO kv SELECT g, 'v%d', g FROM generate_series(1, 50) g "
                "ON CONFLICT (k) DO UPDATE SET v = excluded.v, n = kv.n + 1" % i)
        r = c.query("SELECT pgpoly.sync_wait('soak_kv', '20 s')")
        check(r[0].rows and r[0].rows[0][0] == b"t", "sync_wait %d timed out" % i)

    n = n_iter(60)
    for i in range(n // 2):
        cycle(i)
    a = m()
    for i in range(n):
        cycle(i)
    b = m()
    print("%-34s %5d cycles  RssAnon %+6d kB  sockets %+d"
          % ("sync worker delivering", n, b[0] - a[0], b[1] - a[1]), flush=True)
    check(b[0] - a[0] <= RSS_TOL_KB, "sync worker: RssAnon %d -> %d kB" % (a[0], b[0]))
    check(b[1] - a[1] <= 1, "sync worker: sockets %d -> %d" % (a[1], b[1]))

    # the store down: a retry every <= 100 ms
    pgtest.kill_redis(rport)
    c.query("INSERT INTO kv VALUES (99999, 'x', 1)")
    secs = 4 * SCALE
    time.sleep(secs / 2)
    a = m()
    time.sleep(secs)
    b = m()
    state = c.query("SELECT state FROM pgpoly.sync_status WHERE name = 'soak_kv'")[0].rows
    check(state and state[0][0] == b"retrying", "sync state with the store down: %s" % state)
    print("%-34s %5.0fs     RssAnon %+6d kB  sockets %+d"
          % ("sync worker retrying a dead store", secs, b[0] - a[0], b[1] - a[1]), flush=True)
    check(b[0] - a[0] <= RSS_TOL_KB, "sync worker (store down): RssAnon %d -> %d kB" % (a[0], b[0]))
    check(b[1] - a[1] <= 1, "sync worker (store down): sockets %d -> %d" % (a[1], b[1]))
    c.query("SELECT pgpoly.drop_sync('soak_kv')")
    c.close()


def test():
    mark = pgtest.pg_log_mark()
    db = pgtest.create_db("pgpoly_session_soak")
    rport = pgtest.start_redis()
    es = es_helper.Standin()
    es.request("PUT", "/soak", {"mappings": {"properties": {
        "a": {"type": "integer"}, "t": {"type": "keyword"}}}})
    chroma = os.environ.get("CHROMA_URL")
    dead = pgtest.free_port()
    silent, liar, h500, hjunk = hostile_servers()
    if not setup(db, rport, es, chroma, dead, silent, liar, h500, hjunk):
        return
    pgtest.redis_cli(rport, "set", "soak:wt:1", "str")
    pgtest.redis_cli(rport, "hset", "soak:bad:2", "a", "notanint")
    s = Soak(db, rport)
    try:
        session_paths(s, es.url, chroma)
    finally:
        s.c.close()
        s.canceller.close()
        pgtest.psql("DROP OWNED BY soak_r1_%(p)d, soak_r2_%(p)d; DROP ROLE soak_r1_%(p)d; "
                    "DROP ROLE soak_r2_%(p)d;" % {"p": os.getpid()}, db=db)
    sync_worker(db, rport)
    pgtest.check_pg_log(mark)


pgtest.main(test)
