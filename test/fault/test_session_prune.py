#!/usr/bin/env python3
"""The connection cache's pruning of dropped servers survives an ERROR.

A long-lived (pooled) session removes the cache entry of a dropped server
or user mapping the next time it asks for a connection (prune_dropped(),
which reads pg_foreign_server and pg_user_mapping).  That look-up can be
cut by an ERROR: lock_timeout or statement_timeout while another session
holds a lock on the catalog, a cancel.  The entries of the objects dropped
before must still be removed by the next request, not kept until some
later invalidation happens to touch the same server: a session that
creates and drops servers would otherwise grow (about 0.9 kB per entry,
with the dropped mapping's secrets) whenever such an ERROR hits.

Each round: CREATE SERVER + USER MAPPING + FOREIGN TABLE, a read through
it (a cache entry), DROP SERVER ... CASCADE; then a read of another server
while a second session holds ACCESS EXCLUSIVE on pg_foreign_server, with a
lock_timeout (55P03); then the same read without the lock.  After a
warm-up, the "pgpoly connections" memory context must stay flat.

The stores' own state of a removed entry goes with it: an Elasticsearch
point in time of a cursor dropped by ROLLBACK is queued for closing at the
next request on the same server and user mapping (ElasticQueueClose); when
the server is dropped first, no such request ever comes.  Each round of
the second part leaves one so (CREATE SERVER, a cursor FETCH under a PIT,
ROLLBACK, DROP SERVER, a request elsewhere): the memory used by
TopMemoryContext and pgpoly's contexts must stay flat.
"""

# pgpoly-fault: exclusive
# (run.py runs it alone: it churns servers, user mappings and tables, as
# test_session_soak.py does)

import es_helper
import pgtest
import pgwire

check = pgtest.check
ROUNDS = 60
TOL = 8192


def ctx_bytes(c):
    r = c.query("SELECT coalesce(sum(total_bytes), 0)::bigint FROM pg_backend_memory_contexts "
                "WHERE name = 'pgpoly connections'")
    return int(r[0].rows[0][0])


def state(res):
    return next((x.error.get("C") for x in res if x.error), None)


def used_bytes(c):
    r = c.query("SELECT coalesce(sum(used_bytes), 0)::bigint FROM pg_backend_memory_contexts "
                "WHERE name = 'TopMemoryContext' OR name LIKE 'pgpoly%'")
    return int(r[0].rows[0][0])


def elastic_part(db):
    es = es_helper.Standin()
    r = pgtest.psql("""
CREATE SERVER e FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%s');
CREATE FOREIGN TABLE et (_id text, a int) SERVER e OPTIONS (index 'prune', refresh 'true');
INSERT INTO et SELECT g::text, g FROM generate_series(1, 10) g;
""" % es.url, db=db)
    if not check(r.rc == 0, "elastic setup failed: %s" % r.err):
        return
    c = pgwire.Conn(db)
    errors = []

    def one(sql):
        res = c.query(sql)
        if state(res) is not None:
            errors.append("%s: %s" % (sql[:60], state(res)))
            if c.status == "E":
                c.query("ROLLBACK")

    def rounds(n):
        for _ in range(n):
            one("CREATE SERVER etmp FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%s')"
                % es.url)
            one("CREATE FOREIGN TABLE etmpt (_id text, a int) SERVER etmp "
                "OPTIONS (index 'prune', fetch_size '3')")
            one("BEGIN")
            one("DECLARE c CURSOR FOR SELECT * FROM etmpt")
            one("FETCH 1 FROM c")
            one("ROLLBACK")
            one("DROP SERVER etmp CASCADE")
            one("SELECT * FROM et WHERE _id = '1'")

    try:
        rounds(40)
        before = used_bytes(c)
        rounds(120)
        after = used_bytes(c)
        check(not errors, "elastic: unexpected errors (%d), first: %s" % (len(errors), errors[:3]))
        check(after - before <= 4096,
              "elastic: memory used grew by %d bytes over 120 rounds: the closes queued "
              "for dropped servers stay" % (after - before))
    finally:
        c.close()


def test():
    mark = pgtest.pg_log_mark()
    db = pgtest.create_db("pgpoly_session_prune")
    rport = pgtest.start_redis()
    r = pgtest.psql("""
CREATE SERVER r FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%d');
CREATE USER MAPPING FOR CURRENT_USER SERVER r;
CREATE FOREIGN TABLE rh (key text, a int) SERVER r OPTIONS (key_prefix 'prune:');
INSERT INTO rh VALUES ('1', 1);
""" % rport, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    c = pgwire.Conn(db)
    locker = pgwire.Conn(db)
    errors = []

    def one(sql, want=None):
        res = c.query(sql)
        got = state(res)
        if got != want:
            errors.append("%s: got %s, want %s" % (sql[:60], got, want))
        if c.status == "E":
            c.query("ROLLBACK")

    def rounds(n):
        for _ in range(n):
            one("CREATE SERVER tmpp FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%d')"
                % rport)
            one("CREATE USER MAPPING FOR CURRENT_USER SERVER tmpp")
            one("CREATE FOREIGN TABLE tmppt (key text, a int) SERVER tmpp "
                "OPTIONS (key_prefix 'prune:')")
            one("SELECT * FROM tmppt WHERE key = '1'")
            one("DROP SERVER tmpp CASCADE")
            locker.query("BEGIN")
            locker.query("LOCK TABLE pg_catalog.pg_foreign_server IN ACCESS EXCLUSIVE MODE")
            one("SET lock_timeout = '30ms'")
            one("SELECT * FROM rh WHERE key = '1'", "55P03")
            locker.query("ROLLBACK")
            one("RESET lock_timeout")
            one("SELECT * FROM rh WHERE key = '1'")

    try:
        rounds(ROUNDS // 2)
        before = ctx_bytes(c)
        rounds(ROUNDS)
        after = ctx_bytes(c)
        check(not errors, "unexpected outcomes (%d), first: %s" % (len(errors), errors[:3]))
        check(after - before <= TOL,
              "the connection cache grew by %d bytes over %d rounds: the entries of "
              "the servers dropped before an ERROR cut the pruning stay"
              % (after - before, ROUNDS))
    finally:
        c.close()
        locker.close()
    elastic_part(db)
    pgtest.check_pg_log(mark)


pgtest.main(test)
