#!/usr/bin/env python3
"""Redis failing at COMMIT of a transaction that wrote to it.

Foreign tables use write_mode 'transactional' (the default): writes are
buffered and sent at COMMIT.  A transaction inserts into a native table and
into a Redis foreign table, then Redis fails before COMMIT:

  * stopped (clean shutdown; the private Redis persists with an fsync'ed
    append-only file, so a write that reached it would survive the restart):
    COMMIT fails with class 08 naming the server and host:port, the native
    row does not exist afterwards (not in the session, not from another
    session), and after Redis restarts the key does not exist while a key
    committed earlier does;  the session then reconnects and reads fine;
  * read-only (REPLICAOF a master that does not exist: Redis answers
    READONLY to writes): COMMIT fails with an ERROR naming the server, the
    native rows roll back, and no key of the transaction was written (the
    writes are one MULTI/EXEC);
  * the session survives both (same backend pid), at most one cached
    connection and one Redis client remain, and the PostgreSQL log shows no
    crash.
"""

import os

import pgtest

check = pgtest.check


def test():
    mark = pgtest.pg_log_mark()
    name = "commit-%d" % os.getpid()
    aof = ["--appendonly", "yes", "--appendfsync", "always"]
    port = pgtest.start_redis(name=name, extra_args=aof)
    db = pgtest.create_db("pgpoly_redis_commit")
    r = pgtest.psql("""
        CREATE SERVER rc FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d', connect_timeout_ms '1000',
                     timeout_ms '2000');
        CREATE FOREIGN TABLE kv (key text, value text) SERVER rc
            OPTIONS (table_type 'string', key_prefix 'c:');
        CREATE FOREIGN TABLE h (key text, a int, b text) SERVER rc
            OPTIONS (table_type 'hash', key_prefix 'h:');
        CREATE TABLE native (id int);
        INSERT INTO kv VALUES ('before', '1');
    """ % port, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    check(pgtest.redis_cli(port, "get", "c:before")[1] == "1",
          "the committed write of the setup is not in Redis")

    s = pgtest.Session(db)
    pid = int(s.value("SELECT pg_backend_pid();"))

    # --- Redis stopped before COMMIT --------------------------------------
    r = s.run("BEGIN; INSERT INTO native VALUES (1); "
              "INSERT INTO kv VALUES ('k1', 'v1'); "
              "INSERT INTO h VALUES ('k1', 1, 'x');")
    check(r.rc == 0, "transaction before COMMIT failed: %s" % r.err)
    r = s.run("SELECT value FROM kv WHERE key = 'k1';")
    check(r.rc == 0 and r.out.strip() == "v1",
          "buffered write not visible in its transaction: rc=%s out=%r err=%s"
          % (r.rc, r.out, r.err.strip()))
    pgtest.stop_redis(port)
    r = s.run("COMMIT;", timeout=15)
    check(r.rc == 1 and (r.sqlstate or "").startswith("08")
          and '"rc"' in r.err and ("127.0.0.1:%d" % port) in r.err,
          "COMMIT with Redis stopped: want an ERROR of class 08 naming server "
          "\"rc\" and 127.0.0.1:%d; got rc=%s sqlstate=%s: %s"
          % (port, r.rc, r.sqlstate, r.err.strip()))
    check(r.elapsed < 3, "COMMIT with Redis stopped took %.1f s" % r.elapsed)
    r = s.run("SELECT count(*) FROM native;")
    check(r.rc == 0 and r.out.strip() == "0",
          "native row of the failed COMMIT, seen by its session: rc=%s "
          "out=%r err=%s" % (r.rc, r.out, r.err.strip()))
    r = pgtest.psql("SELECT count(*) FROM native;", db=db)
    check(r.rc == 0 and r.out.strip() == "0",
          "native row of the failed COMMIT, seen by another session: %r %s"
          % (r.out, r.err))

    pgtest.start_redis(port=port, name=name, extra_args=aof)
    check(pgtest.redis_cli(port, "get", "c:before")[1] == "1",
          "Redis lost the key committed before the fault (the check below "
          "would prove nothing)")
    for key in ("c:k1", "h:k1"):
        check(pgtest.redis_cli(port, "exists", key)[1] == "0",
              "key %s of the failed COMMIT exists in Redis" % key)
    r = s.run("SELECT value FROM kv WHERE key = 'before';")
    check(r.rc == 0 and r.out.strip() == "1",
          "first read after Redis restarted: rc=%s out=%r err=%s"
          % (r.rc, r.out, r.err.strip()))

    # --- Redis refuses writes at COMMIT ------------------------------------
    nowhere = pgtest.free_port()
    rc, out, err = pgtest.redis_cli(port, "replicaof", "127.0.0.1", nowhere)
    if check(rc == 0, "REPLICAOF failed: %s %s" % (out, err)):
        r = s.run("BEGIN; INSERT INTO native VALUES (2), (3); "
                  "INSERT INTO kv VALUES ('k2', 'v2'), ('k3', 'v3'); "
                  "INSERT INTO h VALUES ('k2', 2, 'y');")
        check(r.rc == 0, "transaction before COMMIT failed: %s" % r.err)
        r = s.run("COMMIT;", timeout=15)
        check(r.rc == 1 and '"rc"' in r.err
              and (r.sqlstate or "")[:2] in ("08", "HV"),
              "COMMIT to a read-only Redis: want an ERROR (class 08 or HV) "
              "naming server \"rc\"; got rc=%s sqlstate=%s: %s"
              % (r.rc, r.sqlstate, r.err.strip()))
        print("note: COMMIT to a read-only Redis: %s"
              % " / ".join(r.err.strip().splitlines()[:2]))
        r = s.run("SELECT count(*) FROM native;")
        check(r.rc == 0 and r.out.strip() == "0",
              "native rows of the COMMIT refused by Redis are visible: rc=%s "
              "out=%r err=%s" % (r.rc, r.out, r.err.strip()))
        pgtest.redis_cli(port, "replicaof", "no", "one")
        for key in ("c:k2", "c:k3", "h:k2"):
            check(pgtest.redis_cli(port, "exists", key)[1] == "0",
                  "key %s of the COMMIT refused by Redis exists in Redis" % key)
        r = s.run("INSERT INTO kv VALUES ('after', 'ok');")
        check(r.rc == 0 and pgtest.redis_cli(port, "get", "c:after")[1] == "ok",
              "write after Redis accepts writes again failed: rc=%s err=%s"
              % (r.rc, r.err.strip()))

    # --- nothing leaked -----------------------------------------------------
    check(s.value("SELECT pg_backend_pid();") == str(pid),
          "the session's backend changed (it died and psql reconnected?)")
    n = s.value("SELECT count(*) FROM pgpoly.connections() WHERE server = 'rc';")
    check(n == "1", "want exactly 1 cached connection to rc, got %s" % n)
    ok = pgtest.wait_for(lambda: (lambda c: c is not None and len(c) <= 1)(
        pgtest.redis_clients(port)), timeout=5)
    check(ok, "Redis has more than one client from the session: %s"
          % pgtest.redis_clients(port))
    s.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
