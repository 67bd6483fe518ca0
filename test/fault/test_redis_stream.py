#!/usr/bin/env python3
"""The write stream: a transaction's buffered Redis writes queued in a
MULTI on a second connection while its statements run (issue 14).

pgpoly.redis_stream_threshold = 1 makes every transactional write go down
the stream at once, so a few hundred rows show each case.  Evidence comes
from CLIENT LIST (no MONITOR): a client in a MULTI (flags has 'x', multi=
the commands queued) while the transaction is open, none after.

  * streaming: during the INSERT, a second client of the backend holds
    the writes in a MULTI; Redis and a concurrent reader see none of them
    before COMMIT; the transaction's own reads see them; COMMIT applies all
    (checked against what was inserted), the stream is kept and reused;
  * a small transaction at the default threshold opens no second client;
  * ROLLBACK, an ERROR and a statement_timeout mid-stream: nothing
    applied, the stream's MULTI gone, the next transaction works; the
    backend terminated mid-stream: nothing applied, no MULTI left;
  * Redis closed the kept stream between transactions: the next one
    streams on a new connection;
  * ROLLBACK TO SAVEPOINT dropping streamed rows, and a plpgsql EXCEPTION
    block doing so: COMMIT falls back and writes exactly the rows kept;
  * a key read FOR UPDATE (WATCH) before or after the stream opened and
    changed by another client: COMMIT fails with 40001, nothing written;
  * Redis stopped mid-stream (an append-only file shows what it applied):
    COMMIT fails with class 08 and nothing of the transaction is applied;
  * no crash in the PostgreSQL log, same backend throughout.
"""

import os

import pgtest

check = pgtest.check


def multi_clients(port):
    """Clients of port in a MULTI: [(id, queued commands)]."""
    return [(c["id"], int(c.get("multi", "-1")))
            for c in pgtest.redis_clients(port) or []
            if "x" in c.get("flags", "")]


def queued(port, n):
    """The clients of port in a MULTI once one has n commands queued (Redis
    may still be reading what the backend sent), or as they are after 5 s."""
    pgtest.wait_for(lambda: any(q >= n for _, q in multi_clients(port)),
                    timeout=5)
    return multi_clients(port)


def ids(port):
    """Ids of the clients of port."""
    return set(c["id"] for c in pgtest.redis_clients(port) or [])


def dbsize(port):
    return int(pgtest.redis_cli(port, "dbsize")[1])


def keys_of(port, pattern):
    out = pgtest.redis_cli(port, "--scan", "--pattern", pattern)[1]
    return set(k for k in out.split("\n") if k)


def insert(n0, n1, prefix="k"):
    return ("INSERT INTO h SELECT '%s' || g, g, 'v' || g "
            "FROM generate_series(%d, %d) g;" % (prefix, n0, n1))


def check_rows(port, prefix, rng, what):
    """Redis holds exactly the hashes prefix+i of rng, with their values."""
    want = set("s:%s%d" % (prefix, i) for i in rng)
    got = keys_of(port, "s:%s*" % prefix)
    check(got == want, "%s: want %d keys, Redis holds %d (missing %s, extra %s)"
          % (what, len(want), len(got), sorted(want - got)[:5],
             sorted(got - want)[:5]))
    for i in list(rng)[:3] + list(rng)[-3:]:
        v = pgtest.redis_cli(port, "hmget", "s:%s%d" % (prefix, i), "a", "b")[1]
        check(v.split("\n") == [str(i), "v%d" % i],
              "%s: hash s:%s%d holds %r" % (what, prefix, i, v))


def streaming(s, port, db):
    """Streaming happens, nothing shows before COMMIT, all after."""
    before = ids(port)
    r = s.run("SET pgpoly.redis_stream_threshold = 1; BEGIN; " + insert(1, 300))
    check(r.rc == 0, "streamed INSERT failed: %s" % r.err)
    m = multi_clients(port)
    check(len(m) == 1 and m[0][1] > 0 and m[0][0] not in before,
          "want one new client in a MULTI with commands queued during the "
          "transaction, CLIENT LIST shows %r (clients before: %r)" % (m, before))
    check(dbsize(port) == 0, "Redis holds %d keys before COMMIT" % dbsize(port))
    r = pgtest.psql("SELECT count(*) FROM h;", db=db)
    check(r.rc == 0 and r.out.strip() == "0",
          "a concurrent reader sees rows before COMMIT: %r %s" % (r.out, r.err))
    r = s.run("SELECT count(*), sum(a) FROM h;")
    check(r.out.strip() == "300|45150",
          "the transaction does not read its own streamed writes: %r %s"
          % (r.out, r.err))
    r = s.run(insert(301, 310))
    check(r.rc == 0, "second INSERT failed: %s" % r.err)
    r = s.run("COMMIT;")
    check(r.rc == 0, "COMMIT of a streamed transaction failed: %s" % r.err)
    check_rows(port, "k", range(1, 311), "after a streamed COMMIT")
    check(multi_clients(port) == [], "a client is still in a MULTI after COMMIT")
    kept = ids(port)
    # The stream is kept for the next transaction (no new client).
    r = s.run("BEGIN; " + insert(311, 400) + " COMMIT;")
    check(r.rc == 0, "second streamed transaction failed: %s" % r.err)
    check(ids(port) == kept, "the stream was not reused: %r then %r"
          % (kept, ids(port)))
    check_rows(port, "k", range(1, 401), "after the second streamed COMMIT")
    # Redis closed the kept stream (its timeout, CLIENT KILL): the next
    # transaction streams on a new connection.
    check(m and m[0][0] in kept, "the stream client was not kept: %r" % m)
    if m:
        pgtest.redis_cli(port, "client", "kill", "id", m[0][0])
    r = s.run("BEGIN; " + insert(401, 500))
    m = multi_clients(port)
    check(r.rc == 0 and len(m) == 1 and m[0][0] not in kept,
          "no new stream after the kept one was killed: %r %s" % (m, r.err))
    r = s.run("COMMIT;")
    check(r.rc == 0, "COMMIT after the kept stream was killed failed: %s" % r.err)
    check_rows(port, "k", range(1, 501), "after the kept stream was killed")


def small(db, port):
    """At the default threshold a small transaction opens one client."""
    s = pgtest.Session(db)
    before = ids(port)
    r = s.run("BEGIN; " + insert(1, 50, "small"))
    new = ids(port) - before
    check(r.rc == 0 and len(new) == 1,
          "a small transaction opened %d clients (want 1): %s" % (len(new), r.err))
    check(multi_clients(port) == [], "a small transaction streams")
    r = s.run("COMMIT;")
    check(r.rc == 0, "small COMMIT failed: %s" % r.err)
    check_rows(port, "small", range(1, 51), "small transaction")
    s.close()


def aborts(s, port):
    """ROLLBACK, an ERROR and a cancel mid-stream apply nothing."""
    for how, sql, end in (
            ("ROLLBACK", "BEGIN; " + insert(1, 200, "rb"), "ROLLBACK;"),
            ("an ERROR", "BEGIN; " + insert(1, 200, "rb") +
             " SELECT 1/0;", "ROLLBACK;"),
            ("statement_timeout",
             "BEGIN; SET LOCAL statement_timeout = '1s'; "
             "INSERT INTO h SELECT 'rb' || g, g, "
             "CASE WHEN g = 150 THEN pg_sleep(30)::text ELSE 'x' END "
             "FROM generate_series(1, 200) g;", "ROLLBACK;")):
        r = s.run(sql)
        if how == "statement_timeout":
            check(r.sqlstate == "57014", "statement_timeout: want 57014, got %s: %s"
                  % (r.sqlstate, r.err))
        r = s.run(end)
        check(r.rc == 0, "%s: end failed: %s" % (how, r.err))
        check(keys_of(port, "s:rb*") == set(),
              "%s mid-stream: Redis holds %d keys of the transaction"
              % (how, len(keys_of(port, "s:rb*"))))
        ok = pgtest.wait_for(lambda: multi_clients(port) == [], timeout=5)
        check(ok, "%s: a client is still in a MULTI: %r" % (how, multi_clients(port)))
        r = s.run("BEGIN; " + insert(1, 20, "after") + " COMMIT;")
        check(r.rc == 0, "%s: the next transaction failed: %s" % (how, r.err))
        check_rows(port, "after", range(1, 21), "after %s" % how)
        pgtest.redis_cli(port, "flushall")


def savepoints(s, port):
    """Savepoint rollbacks of streamed rows fall back and write the rest."""
    r = s.run("BEGIN; " + insert(1, 100, "sp") + " SAVEPOINT a; " +
              insert(101, 200, "sp"))
    m = queued(port, 200)
    check(len(m) == 1 and m[0][1] >= 200, "no stream before ROLLBACK TO: %r" % m)
    r = s.run("ROLLBACK TO a; " + insert(201, 210, "sp"))
    check(r.rc == 0 and multi_clients(port) == [],
          "the stream survived a ROLLBACK TO that dropped streamed rows: %r %s"
          % (multi_clients(port), r.err))
    r = s.run("RELEASE a; SAVEPOINT b; " + insert(211, 220, "sp") + " RELEASE b;")
    check(r.rc == 0, "savepoint transaction failed: %s" % r.err)
    r = s.run("SELECT count(*) FROM h WHERE key LIKE 'sp%';")
    check(r.out.strip() == "120", "the transaction reads %r rows, want 120"
          % r.out.strip())
    r = s.run("COMMIT;")
    check(r.rc == 0, "COMMIT after ROLLBACK TO failed: %s" % r.err)
    check_rows(port, "sp", list(range(1, 101)) + list(range(201, 221)),
               "ROLLBACK TO SAVEPOINT of streamed rows")
    # A rolled-back savepoint that dropped nothing streamed keeps the stream.
    r = s.run("BEGIN; " + insert(1, 100, "sq") + " SAVEPOINT a; "
              "SELECT 1/0; ROLLBACK TO a; " + insert(101, 150, "sq"))
    m = queued(port, 150)
    check(len(m) == 1 and m[0][1] >= 150,
          "a savepoint that dropped no write stopped the stream: %r" % m)
    r = s.run("COMMIT;")
    check(r.rc == 0, "COMMIT failed: %s" % r.err)
    check_rows(port, "sq", range(1, 151), "savepoint that dropped nothing")
    # plpgsql: an EXCEPTION block undoes the streamed rows of its body.
    r = s.run("""BEGIN; %s
        DO $$ BEGIN
            INSERT INTO h SELECT 'pl' || g, g, 'v' || g
                FROM generate_series(101, 200) g;
            PERFORM 1/0;
        EXCEPTION WHEN division_by_zero THEN
            INSERT INTO h SELECT 'pl' || g, g, 'v' || g
                FROM generate_series(301, 310) g;
        END $$; COMMIT;""" % insert(1, 100, "pl"))
    check(r.rc == 0, "plpgsql EXCEPTION transaction failed: %s" % r.err)
    check_rows(port, "pl", list(range(1, 101)) + list(range(301, 311)),
               "plpgsql EXCEPTION block over streamed rows")


def watch(s, port):
    """A WATCHed key changed by another client: 40001, nothing written."""
    pgtest.redis_cli(port, "hset", "s:w1", "a", "1", "b", "x")
    for order in ("watch first", "stream first"):
        first, second = ("SELECT a FROM h WHERE key = 'w1' FOR UPDATE;",
                         insert(1, 200, "wt"))
        if order == "stream first":
            first, second = second, first
        r = s.run("BEGIN; " + first + " " + second)
        check(r.rc == 0, "%s: transaction failed: %s" % (order, r.err))
        m = multi_clients(port) if order == "watch first" else queued(port, 200)
        if order == "watch first":
            check(m == [], "the stream opened beside WATCHes: %r" % m)
        else:
            # COMMIT must see the WATCHes and EXEC where they are
            check(len(m) == 1 and m[0][1] >= 200, "no stream: %r" % m)
        pgtest.redis_cli(port, "hset", "s:w1", "b", "changed")
        r = s.run(("UPDATE h SET b = 'mine' WHERE key = 'w1'; "
                   if order == "watch first" else "") + "COMMIT;")
        check(r.sqlstate == "40001",
              "%s: COMMIT after a WATCHed key changed: want 40001, got %s: %s"
              % (order, r.sqlstate, r.err))
        check(keys_of(port, "s:wt*") == set(),
              "%s: the failed COMMIT wrote %d keys" % (order, len(keys_of(port, "s:wt*"))))
        b = pgtest.redis_cli(port, "hget", "s:w1", "b")[1]
        check(b == "changed", "%s: the other client's write was overwritten: %r"
              % (order, b))
        check(multi_clients(port) == [], "%s: a client is still in a MULTI" % order)


def terminated(db, port):
    """The backend ends mid-stream (pg_terminate_backend): Redis drops the
    stream's MULTI, nothing is applied."""
    t = pgtest.Session(db)
    tpid = t.value("SELECT pg_backend_pid();")
    r = t.run("SET pgpoly.redis_stream_threshold = 1; BEGIN; " +
              insert(1, 200, "term"))
    m = queued(port, 200)
    check(r.rc == 0 and len(m) == 1, "no stream before the backend ended: %r %s"
          % (m, r.err))
    r = pgtest.psql("SELECT pg_terminate_backend(%s);" % tpid, db=db)
    check(r.rc == 0, "pg_terminate_backend failed: %s" % r.err)
    ok = pgtest.wait_for(lambda: multi_clients(port) == [], timeout=10)
    check(ok, "a client is still in a MULTI after the backend ended: %r"
          % multi_clients(port))
    check(keys_of(port, "s:term*") == set(), "the ended backend's writes were "
          "applied: %d keys" % len(keys_of(port, "s:term*")))
    t.close()


def stopped(db):
    """Redis stopped mid-stream: COMMIT fails, nothing applied; then (the
    main connection closed with the broken stream) the first read after
    Redis restarts works.  Two ways: more rows inserted while Redis is down
    (the stream must not fail that statement), and COMMIT at once (the
    COMMIT's exchange runs on the stream and breaks there)."""
    name = "stream-%d" % os.getpid()
    aof = ["--appendonly", "yes", "--appendfsync", "always"]
    port = pgtest.start_redis(name=name, extra_args=aof)
    r = pgtest.psql("""
        CREATE SERVER rs2 FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d', connect_timeout_ms '1000',
                     timeout_ms '2000');
        CREATE FOREIGN TABLE h2 (key text, a int, b text) SERVER rs2
            OPTIONS (table_type 'hash', key_prefix 's:');
        CREATE TABLE native2 (id int);""" % port, db=db)
    check(r.rc == 0, "setup of rs2 failed: %s" % r.err)
    s = pgtest.Session(db)
    s.run("SET pgpoly.redis_stream_threshold = 1;")
    for i, how in enumerate(("insert while down", "commit at once")):
        r = s.run("BEGIN; INSERT INTO native2 VALUES (1); "
                  "INSERT INTO h2 SELECT 'z' || g, g, 'x' "
                  "FROM generate_series(1, 300) g;")
        check(r.rc == 0, "%s: INSERT before the stop failed: %s" % (how, r.err))
        m = queued(port, 300)
        check(len(m) == 1 and m[0][1] > 0, "%s: no stream before the stop: %r"
              % (how, m))
        pgtest.stop_redis(port)
        if how == "insert while down":
            r = s.run("INSERT INTO h2 SELECT 'z' || g, g, 'x' "
                      "FROM generate_series(301, 400) g;")
            check(r.rc == 0, "an INSERT while Redis is down failed (the stream "
                  "must not fail a statement): %s" % r.err)
        r = s.run("COMMIT;", timeout=15)
        check(r.rc == 1 and (r.sqlstate or "").startswith("08"),
              "%s: COMMIT with Redis stopped mid-stream: want class 08, got %s: %s"
              % (how, r.sqlstate, r.err))
        r = s.run("SELECT count(*) FROM native2;")
        check(r.out.strip() == "0", "%s: the native row of the failed COMMIT "
              "exists" % how)
        pgtest.start_redis(port=port, name=name, extra_args=aof)
        check(keys_of(port, "s:z*") == set(), "%s: Redis applied %d keys of the "
              "failed COMMIT" % (how, len(keys_of(port, "s:z*"))))
        r = s.run("SELECT count(*) FROM h2 WHERE key LIKE 'z%';")
        check(r.rc == 0 and r.out.strip() == "0",
              "%s: first read after Redis restarted: %r %s" % (how, r.out, r.err))
        r = s.run("BEGIN; INSERT INTO h2 SELECT 'y%d_' || g, g, 'x' "
                  "FROM generate_series(1, 100) g; COMMIT;" % i)
        check(r.rc == 0, "%s: the transaction after the restart failed: %s"
              % (how, r.err))
        check(len(keys_of(port, "s:y%d_*" % i)) == 100, "%s: the transaction "
              "after the restart wrote %d keys" % (how, len(keys_of(port, "s:y%d_*" % i))))
    s.close()


def test():
    mark = pgtest.pg_log_mark()
    port = pgtest.start_redis()
    db = pgtest.create_db("pgpoly_redis_stream")
    r = pgtest.psql("""
        CREATE SERVER rs FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d');
        CREATE FOREIGN TABLE h (key text, a int, b text) SERVER rs
            OPTIONS (table_type 'hash', key_prefix 's:');""" % port, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    small(db, port)
    pgtest.redis_cli(port, "flushall")
    s = pgtest.Session(db)
    pid = s.value("SELECT pg_backend_pid();")
    streaming(s, port, db)
    pgtest.redis_cli(port, "flushall")
    aborts(s, port)
    savepoints(s, port)
    pgtest.redis_cli(port, "flushall")
    watch(s, port)
    check(s.value("SELECT pg_backend_pid();") == pid, "the backend changed")
    s.close()
    terminated(db, port)
    stopped(db)
    pgtest.check_pg_log(mark)


pgtest.main(test)
