#!/usr/bin/env python3
"""A cancel that hits a COMMIT while it sends the buffered writes.

Once a COMMIT has sent a store the first request that can apply writes,
cancelling it would roll PostgreSQL back while the store keeps what it
applied.  pgpoly holds query cancels from then until the COMMIT ends, so
PostgreSQL and the stores agree.  The sending is made slow on purpose
(Redis CLIENT PAUSE WRITE, which postpones the transaction's writes; the
Elasticsearch stand-in delaying a _bulk request), and:

  * pg_cancel_backend once Redis holds the COMMIT's writes: the COMMIT
    succeeds, the native row and all the keys are there;
  * the same with statement_timeout, in a procedure that COMMITs (the one
    place statement_timeout covers a COMMIT): the transaction is committed
    in PostgreSQL and Redis alike;
  * pg_cancel_backend while the first _bulk request of a COMMIT to
    Elasticsearch (batch_size 100, 3000 rows) is delayed: the COMMIT
    succeeds and every document is there;
  * a cancel before anything is sent (a deferred trigger sleeping at
    COMMIT) still cancels the COMMIT: nothing in PostgreSQL, nothing in
    Redis;
  * pg_terminate_backend still ends a backend whose COMMIT waits on the
    paused Redis (termination is not held).
"""

import time

import es_helper
import pgtest

check = pgtest.check
ROWS = 2000


def key_count(port, prefix):
    rc, out, err = pgtest.redis_cli(port, "--scan", "--pattern", prefix + "*",
                                    timeout=60)
    return len(out.split())


def blocked_clients(port):
    rc, out, _ = pgtest.redis_cli(port, "info", "clients")
    for line in out.splitlines():
        if line.startswith("blocked_clients:"):
            return int(line.split(":")[1])
    return 0


def waiting(db, pid, event=None):
    """Whether backend pid runs a statement (waiting on event, if given)."""
    r = pgtest.psql("SELECT state, coalesce(wait_event, '') FROM pg_stat_activity "
                    "WHERE pid = %d;" % pid, db=db, timeout=5)
    if r.rc != 0 or not r.out.strip():
        return False
    state, ev = r.out.strip().split("|")
    return state == "active" and (event is None or ev == event)


def native(db, tag):
    return pgtest.psql("SELECT count(*) FROM n WHERE id = '%s';" % tag,
                       db=db).out.strip()


def paused_commit(s, db, port, pid, tag, interrupt):
    """Buffer ROWS keys and a native row, pause Redis' writes, send the
    COMMIT (CALL for statement_timeout), interrupt it once Redis postponed
    its writes, then unpause.  Returns the COMMIT's result."""
    before = blocked_clients(port)
    if interrupt == "statement_timeout":
        s.value("SET statement_timeout = '1s';")
        pgtest.redis_cli(port, "client", "pause", 60000, "write")
        s.send("CALL on_both('%s');" % tag)
    else:
        r = s.run("BEGIN; INSERT INTO cm SELECT '%s' || g, g FROM "
                  "generate_series(1, %d) g; INSERT INTO n VALUES ('%s');"
                  % (tag, ROWS, tag), timeout=60)
        check(r.rc == 0, "%s: writes failed: %s" % (tag, r.err))
        pgtest.redis_cli(port, "client", "pause", 60000, "write")
        s.send("COMMIT;")
    try:
        sent = pgtest.wait_for(lambda: blocked_clients(port) > before, timeout=20)
        check(sent, "%s: Redis never got the COMMIT's writes" % tag)
        if interrupt == "cancel":
            pgtest.psql("SELECT pg_cancel_backend(%d);" % pid, db=db)
        elif interrupt == "statement_timeout":
            # the CALL has run past its statement_timeout while waiting
            check(pgtest.wait_for(lambda: pgtest.psql(
                "SELECT now() - query_start > '2s' FROM pg_stat_activity "
                "WHERE pid = %d;" % pid, db=db).out.strip() == "t", timeout=20),
                "%s: the CALL ended before its statement_timeout" % tag)
        else:
            pgtest.psql("SELECT pg_terminate_backend(%d);" % pid, db=db)
            check(pgtest.wait_for(lambda: pgtest.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = %d;" % pid,
                db=db).out.strip() == "0", timeout=10),
                "%s: pg_terminate_backend did not end a backend whose COMMIT "
                "waits on a paused Redis" % tag)
        if interrupt != "terminate":
            check(waiting(db, pid), "%s: the COMMIT ended while Redis was "
                  "paused" % tag)
    finally:
        pgtest.redis_cli(port, "client", "unpause")
    return s.wait(timeout=60)


def test():
    mark = pgtest.pg_log_mark()
    port = pgtest.start_redis()
    es = es_helper.Standin()
    db = pgtest.create_db("pgpoly_commit_cancel")
    r = pgtest.psql("""
        CREATE SERVER rc FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d', timeout_ms '%d');
        CREATE FOREIGN TABLE cm (key text OPTIONS (key 'true'), v int) SERVER rc
            OPTIONS (key_prefix 'cm:');
        CREATE SERVER esc FOREIGN DATA WRAPPER pgpoly_elastic
            OPTIONS (url '%s', timeout_ms '%d');
        CREATE FOREIGN TABLE ed (_id text, n int) SERVER esc
            OPTIONS (index 'commit_cancel', refresh 'true', batch_size '100');
        CREATE TABLE n (id text);
        CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.id LIKE 'slow%%' THEN PERFORM pg_sleep(60); END IF;
            RETURN NULL;
        END $$;
        CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON n
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow();
        CREATE PROCEDURE on_both(tag text) LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO cm SELECT tag || g, g FROM generate_series(1, %d) g;
            INSERT INTO n VALUES (tag);
            COMMIT;
        END $$;
    """ % (port, int(30000 * pgtest.SCALE), es.url, int(30000 * pgtest.SCALE),
           ROWS), db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    s = pgtest.Session(db)
    pid = int(s.value("SELECT pg_backend_pid();"))

    # --- a cancel once Redis holds the COMMIT's writes ----------------------
    r = paused_commit(s, db, port, pid, "a", "cancel")
    check(r.rc == 0, "a cancel during the COMMIT's send to Redis: want the "
          "COMMIT to succeed, got rc=%s sqlstate=%s: %s"
          % (r.rc, r.sqlstate, r.err.strip()[:400]))
    check(native(db, "a") == "1" and key_count(port, "cm:a") == ROWS,
          "cancelled COMMIT: PostgreSQL and Redis differ: native %s row(s), "
          "%d of %d keys" % (native(db, "a"), key_count(port, "cm:a"), ROWS))

    # --- statement_timeout, in a procedure's COMMIT --------------------------
    r = paused_commit(s, db, port, pid, "c", "statement_timeout")
    check(r.rc == 0 or r.sqlstate == "57014",
          "statement_timeout during a procedure's COMMIT: rc=%s sqlstate=%s: %s"
          % (r.rc, r.sqlstate, r.err.strip()[:400]))
    s.value("RESET statement_timeout;")
    check(native(db, "c") == "1" and key_count(port, "cm:c") == ROWS,
          "statement_timeout during a COMMIT: PostgreSQL and Redis differ: "
          "native %s row(s), %d of %d keys"
          % (native(db, "c"), key_count(port, "cm:c"), ROWS))

    # --- Elasticsearch: a cancel while the first _bulk is delayed ------------
    es.faults({"delay_ms": int(3000 * pgtest.SCALE), "count": 1, "path": "_bulk"})
    r = s.run("BEGIN; INSERT INTO ed SELECT 'e' || g, g FROM generate_series(1, 3000) g; "
              "INSERT INTO n VALUES ('e');", timeout=60)
    check(r.rc == 0, "ES writes failed: %s" % r.err)
    s.send("COMMIT;")
    check(pgtest.wait_for(lambda: es.stats()["faults_left"] == 0, timeout=20),
          "the COMMIT sent no _bulk request")
    pgtest.psql("SELECT pg_cancel_backend(%d);" % pid, db=db)
    r = s.wait(timeout=60)
    es.clear()
    check(r.rc == 0, "a cancel during the COMMIT's _bulk requests: want the "
          "COMMIT to succeed, got rc=%s sqlstate=%s: %s"
          % (r.rc, r.sqlstate, r.err.strip()[:400]))
    docs = es.request("GET", "/commit_cancel/_count").get("count")
    check(native(db, "e") == "1" and docs == 3000,
          "cancelled COMMIT to Elasticsearch: native %s row(s), %s of 3000 "
          "documents" % (native(db, "e"), docs))

    # --- a cancel before anything is sent still cancels -----------------------
    r = s.run("BEGIN; INSERT INTO cm SELECT 'slow' || g, g FROM "
              "generate_series(1, 100) g; INSERT INTO n VALUES ('slow');")
    check(r.rc == 0, "writes before the slow trigger failed: %s" % r.err)
    s.send("COMMIT;")
    check(pgtest.wait_for(lambda: waiting(db, pid, "PgSleep"), timeout=20),
          "the deferred trigger did not run at COMMIT")
    pgtest.psql("SELECT pg_cancel_backend(%d);" % pid, db=db)
    r = s.wait(timeout=30)
    check(r.rc == 1 and r.sqlstate == "57014",
          "a cancel before the send: want 57014, got rc=%s sqlstate=%s: %s"
          % (r.rc, r.sqlstate, r.err.strip()[:400]))
    check(native(db, "slow") == "0" and key_count(port, "cm:slow") == 0,
          "a COMMIT cancelled before its send wrote: native %s row(s), %d keys"
          % (native(db, "slow"), key_count(port, "cm:slow")))

    # the session still works
    check(s.value("SELECT count(*) FROM cm WHERE key = 'a1';") == "1",
          "the session is unusable after the cancels")
    s.close()

    # --- pg_terminate_backend is not held --------------------------------------
    s = pgtest.Session(db)
    pid = int(s.value("SELECT pg_backend_pid();"))
    paused_commit(s, db, port, pid, "t", "terminate")
    s.close()
    pgtest.check_pg_log(mark)


if __name__ == "__main__":
    pgtest.main(test)
