#!/usr/bin/env python3
"""A COMMIT that a user cancelled, then failed connecting to a later store.

Once a COMMIT has sent a store its first write, query cancels are held
until the COMMIT ends (test_commit_cancel).  If a later store of the same
COMMIT then cannot be reached, the COMMIT fails with that connection
error, and its message must say what happened: that the connect failed
(08001, naming the server), that nothing reached that server (a refused
connection cannot have delivered the writes, so no "it may still apply
them"), that the first store keeps what it applied, and that the cancel,
held, is not what failed the COMMIT.  Redis "ra" (paused with CLIENT PAUSE
WRITE, cancelled while it holds the COMMIT's writes) comes first, then:

  * Redis "rb", killed after the INSERT opened its connection: the flush
    reconnects and is refused;
  * an Elasticsearch stand-in, stopped after the INSERT: libcurl cannot
    connect;
  * the same as the first, without a cancel: no word of a cancel.

Each time PostgreSQL rolls back (the native row is not there), "ra" keeps
its keys, and the session goes on (the held cancel is not left pending).
"""

import es_helper
import pgtest
from test_commit_cancel import blocked_clients, key_count

check = pgtest.check
ROWS = 100


def commit(s, db, pa, pid, tag, table, stop, cancel=True):
    """Buffer ROWS keys on ra, a row of table and a native row; stop the
    second store; COMMIT with ra paused, cancelled once ra holds the writes
    (if cancel); return the COMMIT's result."""
    r = s.run("BEGIN; INSERT INTO ta SELECT '%s' || g, g FROM generate_series(1, %d) g; "
              "INSERT INTO %s VALUES ('%s', 1); INSERT INTO n VALUES ('%s');"
              % (tag, ROWS, table, tag, tag), timeout=60)
    check(r.rc == 0, "%s: writes failed: %s" % (tag, r.err))
    stop()
    before = blocked_clients(pa)
    pgtest.redis_cli(pa, "client", "pause", 60000, "write")
    s.send("COMMIT;")
    try:
        check(pgtest.wait_for(lambda: blocked_clients(pa) > before, timeout=20),
              "%s: ra never got the COMMIT's writes" % tag)
        if cancel:
            pgtest.psql("SELECT pg_cancel_backend(%d);" % pid, db=db)
    finally:
        pgtest.redis_cli(pa, "client", "unpause")
    return s.wait(timeout=60)


def test():
    mark = pgtest.pg_log_mark()
    pa = pgtest.start_redis()
    pb = pgtest.start_redis()
    es = es_helper.Standin()
    db = pgtest.create_db("pgpoly_commit_cancel_connect")
    r = pgtest.psql("""
        CREATE SERVER ra FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (host '127.0.0.1', port '%d');
        CREATE SERVER rb FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (host '127.0.0.1', port '%d');
        CREATE SERVER es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%s');
        CREATE FOREIGN TABLE ta (key text OPTIONS (key 'true'), v int) SERVER ra
            OPTIONS (key_prefix 'a:');
        CREATE FOREIGN TABLE tb (key text OPTIONS (key 'true'), v int) SERVER rb
            OPTIONS (key_prefix 'b:');
        CREATE FOREIGN TABLE te (_id text, v int) SERVER es OPTIONS (index 'cc');
        CREATE TABLE n (id text);
    """ % (pa, pb, es.url), db=db)
    check(r.rc == 0, "setup: %s" % r.err)
    s = pgtest.Session(db)
    pid = int(s.value("SELECT pg_backend_pid();"))

    def outcome(tag, r, server, cancelled):
        """Check COMMIT result r of the writes tagged tag[0]."""
        err = r.err
        check(r.rc == 1 and "08001" in err and "could not connect" in err
              and '"%s"' % server in err.split("\n")[0],
              "%s: want 08001 could not connect naming %s: %s" % (tag, server, err.strip()))
        check("sending the transaction's buffered writes to" in err
              and "may still apply them" not in err,
              "%s: the context should not say %s may still apply writes it never "
              "received: %s" % (tag, server, err.strip()))
        check('had already sent the transaction\'s writes to Redis server "ra"' in err,
              "%s: the context should say ra keeps its writes: %s" % (tag, err.strip()))
        held = "did not cause this error" in err
        check(held == cancelled, "%s: the held cancel should %sbe named: %s"
              % (tag, "" if cancelled else "not ", err.strip()))
        check(s.value("SELECT count(*) FROM n WHERE id = '%s';" % tag[0]) == "0",
              "%s: the native row was committed" % tag)
        check(key_count(pa, "a:" + tag[0]) == ROWS, "%s: ra should keep the %d keys it "
              "applied, has %d" % (tag, ROWS, key_count(pa, "a:" + tag[0])))

    # Redis rb, refused when the flush reconnects.
    r = commit(s, db, pa, pid, "r", "tb", lambda: pgtest.kill_redis(pb))
    outcome("redis", r, "rb", True)

    # Elasticsearch, refused by the stopped stand-in.
    r = commit(s, db, pa, pid, "e", "te", es.stop)
    outcome("elasticsearch", r, "es", True)

    # The same without a cancel: no word of one.
    pgtest.start_redis(port=pb)
    r = commit(s, db, pa, pid, "x", "tb", lambda: pgtest.kill_redis(pb), cancel=False)
    outcome("x, no cancel", r, "rb", False)

    check(s.value("SELECT count(*) FROM ta WHERE key = 'r1';") == "1",
          "the session is unusable after the failed COMMITs")
    s.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
