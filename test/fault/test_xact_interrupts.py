#!/usr/bin/env python3
"""Interrupts during a transaction that buffered Redis writes, differential.

Every scenario makes the same writes to a native table and to a Redis hash
table (write_mode 'transactional'), interrupts the transaction somewhere,
and then compares what Redis holds with what PostgreSQL committed:

  * idle_in_transaction_session_timeout ends a session holding buffered
    writes, small ones and ones already streamed into a MULTI on the second
    connection (pgpoly.redis_stream_threshold 16kB): nothing is written, the
    native rows are gone, and no client of the session stays in Redis;
  * pg_terminate_backend of an idle transaction the same;
  * statement_timeout and pg_cancel_backend firing inside a savepoint, in a
    large buffered (streamed) INSERT and in a multi-round scan (fetch_size
    50) of an UPDATE that WATCHes what it reads, after writes made before
    the savepoint: ROLLBACK TO SAVEPOINT, more writes, COMMIT; Redis then
    holds exactly the native table, each of several rounds with a different
    timeout (a request cut in the middle closes the connection, and with it
    the WATCH taken before the savepoint: that COMMIT fails with 40001, as
    the README says, and writes nothing);
  * lock_timeout on a native row lock after buffered writes fails the
    transaction: nothing of it reaches Redis;
  * the backend never crashes (log checked) and keeps one cached connection.
"""

import time

import pgtest

check = pgtest.check


def redis_rows(port, prefix):
    """{id: v} of the hashes under prefix, read from Redis directly."""
    rc, out, err = pgtest.redis_cli(port, "--scan", "--pattern", prefix + "*",
                                    timeout=60)
    keys = out.split()
    vals = pgtest.redis_pipeline(port, [["HGET", k, "v"] for k in keys],
                                 timeout=60) if keys else []
    return {k[len(prefix):]: v for k, v in zip(keys, vals)}


def native_rows(db, table):
    r = pgtest.psql("SELECT id, v FROM %s;" % table, db=db)
    return dict(line.split("|") for line in r.out.split())


def same(port, db, what):
    """Redis holds exactly what the native table n holds."""
    want = native_rows(db, "n")
    got = redis_rows(port, "x:")
    missing = {k: v for k, v in want.items() if got.get(k) != v}
    extra = {k: v for k, v in got.items() if want.get(k) != v}
    return check(not missing and not extra,
                 "%s: Redis differs from the native table: %d rows missing "
                 "or different (e.g. %s), %d extra (e.g. %s)"
                 % (what, len(missing), list(missing.items())[:3], len(extra),
                    list(extra.items())[:3]))


def session_clients(port):
    c = pgtest.redis_clients(port)
    return None if c is None else len(c)


def test():
    mark = pgtest.pg_log_mark()
    port = pgtest.start_redis()
    db = pgtest.create_db("pgpoly_xact_interrupts")
    r = pgtest.psql("""
        CREATE SERVER rx FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d');
        CREATE FOREIGN TABLE f (id text OPTIONS (key 'true'), v int) SERVER rx
            OPTIONS (key_prefix 'x:', fetch_size '50', watch_limit '100000');
        CREATE TABLE n (id text PRIMARY KEY, v int);
        CREATE TABLE lockme (id int PRIMARY KEY);
        INSERT INTO lockme VALUES (1);
        -- the same statement on both
        CREATE FUNCTION on_both(q text) RETURNS void LANGUAGE plpgsql AS $$
        BEGIN EXECUTE format(q, 'n'); EXECUTE format(q, 'f'); END $$;
        SELECT on_both('INSERT INTO %%I SELECT ''base'' || i, i FROM generate_series(1, 5000) i');
    """ % port, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    same(port, db, "setup")
    base_clients = session_clients(port)

    # --- the session ends while its transaction holds buffered writes ------
    for how in ("idle_timeout", "terminate"):
        for rows in (10, 20000):        # below / above the stream threshold
            s = pgtest.Session(db)
            pid = int(s.value("SELECT pg_backend_pid();"))
            s.value("SET pgpoly.redis_stream_threshold = '16kB';")
            if how == "idle_timeout":
                s.value("SET idle_in_transaction_session_timeout = '300ms';")
            r = s.run("BEGIN; SELECT on_both('INSERT INTO %%I SELECT ''gone'' || i, i "
                      "FROM generate_series(1, %d) i'); "
                      "SELECT on_both('UPDATE %%I SET v = -v WHERE id = ''base1''');"
                      % rows, timeout=60)
            check(r.rc == 0, "%s/%d: writes failed: %s" % (how, rows, r.err))
            streamed = session_clients(port)
            if how == "terminate":
                pgtest.psql("SELECT pg_terminate_backend(%d);" % pid, db=db)
            else:
                time.sleep(0.3 * pgtest.SCALE)
            gone = pgtest.wait_for(lambda: pgtest.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = %d;" % pid,
                db=db).out.strip() == "0", timeout=10)
            check(gone, "%s/%d: the backend did not end" % (how, rows))
            s.close()
            same(port, db, "%s with %d buffered rows" % (how, rows))
            check(pgtest.wait_for(lambda: session_clients(port) == base_clients,
                                  timeout=5),
                  "%s/%d: Redis clients of the ended session remain (%s, had "
                  "%s while streaming, %s before)"
                  % (how, rows, session_clients(port), streamed, base_clients))

    # --- interrupts inside a savepoint -----------------------------------
    s = pgtest.Session(db)
    pid = int(s.value("SELECT pg_backend_pid();"))
    s.value("SET pgpoly.redis_stream_threshold = '16kB';")
    for rnd, ms in enumerate((5, 20, 60, 150)):
        for where in ("insert", "scan", "cancel"):
            tag = "r%d%s" % (rnd, where[0])
            r = s.run("BEGIN; "
                      "SELECT on_both('INSERT INTO %%I VALUES (''%s_before'', 1)'); "
                      "SELECT on_both('UPDATE %%I SET v = v + 1 WHERE id = ''base7'''); "
                      "SAVEPOINT sp;" % tag)
            check(r.rc == 0, "%s: before the savepoint: %s" % (tag, r.err))
            if where == "insert":
                stmt = ("SELECT on_both('INSERT INTO %%I SELECT ''%s_'' || i, i "
                        "FROM generate_series(1, 100000) i');" % tag)
            else:
                stmt = "SELECT on_both('UPDATE %I SET v = v + 1000 WHERE v > 0');"
            if where == "cancel":
                s.send(stmt)
                time.sleep(ms / 1000.0)
                pgtest.psql("SELECT pg_cancel_backend(%d);" % pid, db=db)
                r = s.wait(timeout=60)
            else:
                r = s.run("SET LOCAL statement_timeout = '%dms'; %s "
                          "SET LOCAL statement_timeout = 0;" % (ms, stmt),
                          timeout=60)
            if r.rc == 0:
                print("note: %s finished before the interrupt (%d ms)" % (tag, ms))
            else:
                check(r.sqlstate == "57014", "%s: want 57014, got %s: %s"
                      % (tag, r.sqlstate, r.err.strip()[:300]))
            r = s.run("ROLLBACK TO SAVEPOINT sp; "
                      "SELECT on_both('INSERT INTO %%I VALUES (''%s_after'', 2)'); "
                      "SELECT on_both('DELETE FROM %%I WHERE id = ''base%d'''); "
                      "COMMIT;" % (tag, 100 + rnd), timeout=60)
            # A request cut in the middle closes the connection at ROLLBACK
            # TO SAVEPOINT, and with it the WATCH of base7 taken before the
            # savepoint: the COMMIT then fails with 40001 (README), never
            # writes unwatched.  The INSERT reads nothing from Redis.
            if r.rc == 1 and r.sqlstate == "40001" and where != "insert":
                print("note: %s: COMMIT failed with 40001 (the WATCH before "
                      "the savepoint was lost with the interrupted request)" % tag)
            else:
                check(r.rc == 0, "%s: after ROLLBACK TO SAVEPOINT: %s"
                      % (tag, r.err))
            same(port, db, "%s (interrupt after %d ms)" % (tag, ms))

    # --- lock_timeout on a native lock after buffered writes ----------------
    holder = pgtest.Session(db)
    holder.value("BEGIN; SELECT id FROM lockme FOR UPDATE;")
    r = s.run("BEGIN; SELECT on_both('INSERT INTO %I VALUES (''locked'', 1)'); "
              "SET LOCAL lock_timeout = '100ms'; UPDATE lockme SET id = 1;")
    check(r.rc == 1 and r.sqlstate == "55P03",
          "lock_timeout: want 55P03, got rc=%s %s: %s"
          % (r.rc, r.sqlstate, r.err.strip()))
    r = s.run("COMMIT;")
    holder.value("ROLLBACK;")
    holder.close()
    same(port, db, "lock_timeout")

    check(s.value("SELECT pg_backend_pid();") == str(pid),
          "the session's backend changed")
    rows = s.value("SELECT server, count(*) FROM pgpoly.connections() GROUP BY 1;")
    check(rows in ("rx|1", "rx|2"), "cached connections: %r" % rows)
    s.close()
    pgtest.check_pg_log(mark)


if __name__ == "__main__":
    pgtest.main(test)
