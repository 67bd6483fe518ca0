#!/usr/bin/env python3
"""A syscache reset keeps the store connections whose options did not change.

A backend that falls behind the shared invalidation queue (other sessions'
DDL while it runs a long statement; a loaded CI machine running tests side
by side) gets a reset: every syscache entry is invalidated, and the
invalidation callbacks are called for every server and user mapping.
Before the fix pgpoly closed every cached store connection on such a reset
and opened it again on the next use.  That dropped the store session for
nothing, and moved a Sentinel server's session to whatever primary the
sentinels named by then: test_redis_sentinel failed in CI that way (a write
meant for the demoted primary went to the new one).

  * After a reset the session's Redis connection is the same one (the same
    CLIENT ID, no second connection).
  * ALTER SERVER ... RENAME and GRANT USAGE (invalidations that leave the
    options as they were) keep it too; pgpoly.connections() shows the new
    name.
  * A change of options still reopens it, when it comes with a reset too.
"""

# pgpoly-fault: exclusive
# (run.py runs it alone: its floods reset every backend's caches, which the
# tests beside it would meet at random points)

import pgtest

check = pgtest.check


def flood(db, also=""):
    """Invalidation messages far past the queue's 4096 while session s
    sleeps in a statement (it cannot catch up, so it gets a reset)."""
    r = pgtest.psql("""BEGIN; %s
        DO $$ BEGIN FOR i IN 1..3000 LOOP
          EXECUTE format('CREATE TEMP TABLE reset_%%s (a int)', i);
        END LOOP; END $$;
        COMMIT;""" % also, db=db)
    check(r.rc == 0, "flood: %s" % r.err)


def client_ids(port):
    return sorted(c["id"] for c in pgtest.redis_clients(port))


def test():
    mark = pgtest.pg_log_mark()
    port = pgtest.start_redis()
    db = pgtest.create_db("pgpoly_cache_reset")
    r = pgtest.psql("""
        CREATE SERVER rr FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%d');
        CREATE FOREIGN TABLE kv (key text, value text) SERVER rr
          OPTIONS (table_type 'string', key_prefix 'cr:');
        INSERT INTO kv VALUES ('a', 'b');
        CREATE ROLE cache_reset_%d;""" % (port, port), db=db)
    if not check(r.rc == 0, "setup: %s" % r.err):
        return
    s = pgtest.Session(db)
    check(s.value("SELECT count(*) FROM kv;") == "1", "first read")
    first = client_ids(port)
    check(len(first) == 1, "one connection: %r" % first)

    # a reset while s sleeps: the connection is kept
    s.send("SELECT pg_sleep(3);")
    flood(db)
    s.wait()
    check(s.value("SELECT count(*) FROM kv;") == "1", "read after a reset")
    check(client_ids(port) == first,
          "a syscache reset reopened the connection: %r, was %r" % (client_ids(port), first))

    # invalidations that leave the options as they were
    r = pgtest.psql("ALTER SERVER rr RENAME TO rr_renamed; "
                    "GRANT USAGE ON FOREIGN SERVER rr_renamed TO cache_reset_%d;" % port,
                    db=db)
    check(r.rc == 0, "rename, grant: %s" % r.err)
    check(s.value("SELECT count(*) FROM kv;") == "1", "read after RENAME and GRANT")
    check(client_ids(port) == first,
          "RENAME/GRANT reopened the connection: %r, was %r" % (client_ids(port), first))
    check(s.value("SELECT server FROM pgpoly.connections();") == "rr_renamed",
          "connections() does not show the new name")

    # options changed, with a reset: reopened, with the new options
    s.send("SELECT pg_sleep(3);")
    flood(db, "ALTER SERVER rr_renamed OPTIONS (ADD timeout_ms '4000');")
    s.wait()
    check(s.value("SELECT count(*) FROM kv;") == "1", "read after the options changed")
    now = client_ids(port)
    check(len(now) == 1 and now != first,
          "the options changed but the connection was kept: %r, was %r" % (now, first))
    s.close()
    pgtest.psql("DROP OWNED BY cache_reset_%d; DROP ROLE cache_reset_%d;" % (port, port), db=db)
    pgtest.check_pg_log(mark)


pgtest.main(test)
