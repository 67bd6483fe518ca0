#!/usr/bin/env python3
"""A server changed while a statement looks up its connection reopens it.

A statement resolves a foreign table's server and user mapping, then asks
the connection cache for its connection.  The cache reads the catalogs
itself (it looks for dropped servers when an entry was invalidated), and
taking their lock takes in the invalidations other sessions committed
meanwhile: here an ALTER SERVER ... OPTIONS (ADD db '1'), committed while
the statement waited for that lock.  The connection's invalidation then
arrived after the statement read the server's options.  Before the fix the
cache compared the connection's options with the statement's stale copy,
found them unchanged and cleared the invalidation (or, before that, opened
the connection again with the stale options): every later statement of the
session went on reading Redis database 0 after the server said db 1.

  * The statement that waited may still read with the old options (it
    resolved its table before the change); the next one reads db 1.
"""

import pgtest

check = pgtest.check


def waiting_on_lock(db, pid):
    r = pgtest.psql("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %d" % pid,
                    db=db, timeout=10)
    return r.rc == 0 and r.out.strip() == "Lock"


def test():
    mark = pgtest.pg_log_mark()
    port = pgtest.start_redis()
    db = pgtest.create_db("pgpoly_stale_server")
    r = pgtest.psql("""
        CREATE SERVER rs FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%d');
        CREATE SERVER rs2 FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%d');
        CREATE FOREIGN TABLE kv (key text, value text) SERVER rs
          OPTIONS (table_type 'string', key_prefix 'st:');
        CREATE FOREIGN TABLE kv2 (key text, value text) SERVER rs2
          OPTIONS (table_type 'string', key_prefix 'st:');
        INSERT INTO kv VALUES ('a', 'in db 0');""" % (port, port), db=db)
    if not check(r.rc == 0, "setup: %s" % r.err):
        return
    s = pgtest.Session(db)
    pid = int(s.value("SELECT pg_backend_pid();"))
    check(s.value("SELECT count(*) FROM kv;") == "1", "first read")
    check(s.value("SELECT count(*) FROM kv2;") == "1", "first read of kv2")

    # an invalidated entry (rs2's) makes the next look-up read the catalogs
    r = pgtest.psql("ALTER SERVER rs2 OPTIONS (ADD timeout_ms '4000');", db=db)
    check(r.rc == 0, "alter rs2: %s" % r.err)

    t = pgtest.Session(db)
    t.value("BEGIN; LOCK TABLE pg_foreign_server IN ACCESS EXCLUSIVE MODE; SELECT 1;")
    s.send("SELECT count(*) FROM kv;")
    pgtest.wait_for(lambda: waiting_on_lock(db, pid), what="the read waiting for the catalog")
    r = t.run("ALTER SERVER rs OPTIONS (ADD db '1'); COMMIT;")
    check(r.rc == 0, "alter rs: %s" % r.err)
    r = s.wait()
    check(r.rc == 0, "the read that waited: %s" % r.err)

    check(s.value("SELECT count(*) FROM kv;") == "0",
          "the server now says db 1, but the session still reads db 0")
    check(s.value("SELECT count(*) FROM kv;") == "0", "and again")
    s.close()
    t.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
