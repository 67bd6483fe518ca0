#!/usr/bin/env python3
"""A connection a transaction used, closed, and then its server changed.

test_catalog_change_cursor.py covers a connection whose server changed
(ALTER SERVER by another session) before it was closed in the transaction
(pgpoly.disconnect(), an error in a subtransaction): its next use fails
with 08006 rather than reopening it with the new options.  Here the order is
the other way round: the connection is closed first, and the server changes
while it is closed.  Before the fix its next use opened it with the new
options, in the same transaction:

  * a cursor open over a Redis table went on with its SCAN cursor in the
    other database (a few of its keys, mixed with the first database's,
    without an error);
  * a transaction whose connection an error in a subtransaction broke
    (statement_timeout while Redis was stopped) read the other database
    after ROLLBACK TO, and COMMIT sent the writes it had made before to the
    other database.

Now both fail with 08006 ("closed after its options changed") and nothing
reaches either database; the next transaction uses the new options.  A
change that leaves the options as they were (GRANT USAGE ON FOREIGN SERVER,
an option set and set back) is no reason to fail: the connection is opened
again, on the same database, and the cursor and the COMMIT go on there.
"""

import signal

import pgtest

check = pgtest.check


def rows(r):
    return [l for l in r.out.split("\n") if l]


def break_in_savepoint(a, port, key, count):
    """BEGIN, write key, read (count rows), then a read in a savepoint
    cancelled mid-request (Redis stopped), and ROLLBACK TO: the connection
    the transaction used is closed."""
    r = a.run("BEGIN; INSERT INTO rt VALUES ('%s', 'x'); SELECT count(*) FROM rt; "
              "SAVEPOINT s; SET LOCAL statement_timeout = '300ms';" % key)
    check(r.rc == 0 and rows(r) == [count], "write, read: %r %s" % (r.out, r.err))
    pgtest.kill_redis(port, signal.SIGSTOP)
    try:
        r = a.run("SELECT count(*) FROM rt;")
    finally:
        pgtest.kill_redis(port, signal.SIGCONT)
    check(r.rc == 1 and r.sqlstate == "57014",
          "a read cancelled mid-request in the subtransaction: %s" % r.err)
    check(a.run("ROLLBACK TO s;").rc == 0, "rollback to savepoint")


def test():
    mark = pgtest.pg_log_mark()
    db = pgtest.create_db("pgpoly_cc_reopen")
    port = pgtest.start_redis()
    # db 0: 2000 keys a<i>, db 1: 30 keys b<i>
    pgtest.redis_cli(port, "EVAL",
                     "for i=1,2000 do redis.call('HSET', 't:a'..i, 'v', 'db0') end "
                     "redis.call('SELECT', 1) "
                     "for i=1,30 do redis.call('HSET', 't:b'..i, 'v', 'db1') end", "0")
    r = pgtest.psql("""
        CREATE TABLE lock1 (); CREATE TABLE lock2 (); CREATE TABLE lock3 ();
        CREATE TABLE lock4 (); CREATE TABLE lock5 ();
        CREATE SERVER rs FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%d');
        CREATE USER MAPPING FOR CURRENT_USER SERVER rs;
        CREATE FOREIGN TABLE rt (k text OPTIONS (key 'true'), v text)
            SERVER rs OPTIONS (key_prefix 't:', fetch_size '10');
    """ % port, db=db)
    check(r.rc == 0, "set-up: %s" % r.err)
    a = pgtest.Session(db=db)

    # closed by pgpoly.disconnect() under a cursor, then the server changed
    r = a.run("BEGIN; DECLARE c CURSOR FOR SELECT k, v FROM rt; FETCH 5 FROM c; "
              "SELECT pgpoly.disconnect('rs');")
    check(r.rc == 0 and len(rows(r)) == 6, "fetch, disconnect: %r %s" % (r.out, r.err))
    r = pgtest.psql("ALTER SERVER rs OPTIONS (ADD db '1');", db=db)
    check(r.rc == 0, "alter server: %s" % r.err)
    r = a.run("SELECT FROM lock1; FETCH ALL FROM c;")
    got = rows(r)
    check(r.rc == 1 and r.sqlstate == "08006" and "options changed" in r.err,
          "the cursor fails (08006) instead of going on in db 1: %d rows, values %r, %s"
          % (len(got), sorted(set(l.split("|")[-1] for l in got)), r.err))
    check(a.run("ROLLBACK;").rc == 0, "rollback")
    r = a.run("SELECT count(*) FROM rt;")
    check(r.rc == 0 and rows(r) == ["30"],
          "the next transaction reads db 1: %r %s" % (r.out, r.err))
    r = pgtest.psql("ALTER SERVER rs OPTIONS (DROP db);", db=db)
    check(r.rc == 0, "alter server back: %s" % r.err)

    # broken by an error in a subtransaction, then the server changed
    break_in_savepoint(a, port, "w1", "2001")
    r = pgtest.psql("ALTER SERVER rs OPTIONS (ADD db '1');", db=db)
    check(r.rc == 0, "alter server: %s" % r.err)
    r = a.run("SELECT FROM lock2; SELECT count(*) FROM rt;")
    check(r.rc == 1 and r.sqlstate == "08006" and "options changed" in r.err,
          "a read after ROLLBACK TO fails (08006) instead of reading db 1: %r %s"
          % (r.out, r.err))
    a.run("ROLLBACK;")
    for n in (0, 1):
        e = pgtest.redis_cli(port, "-n", str(n), "EXISTS", "t:w1")[1]
        check(e == "0", "the transaction's write reached no database (db %d: %s)" % (n, e))

    # the same with COMMIT right after ROLLBACK TO: the write is not sent to db 0
    r = pgtest.psql("ALTER SERVER rs OPTIONS (DROP db);", db=db)
    check(r.rc == 0, "alter server back: %s" % r.err)
    break_in_savepoint(a, port, "w2", "2001")
    r = pgtest.psql("ALTER SERVER rs OPTIONS (ADD db '1');", db=db)
    check(r.rc == 0, "alter server: %s" % r.err)
    r = a.run("SELECT FROM lock3; COMMIT;")
    check(r.rc == 1 and r.sqlstate == "08006",
          "COMMIT fails (08006) instead of sending the write to db 1: %s" % r.err)
    a.run("ROLLBACK;")
    for n in (0, 1):
        e = pgtest.redis_cli(port, "-n", str(n), "EXISTS", "t:w2")[1]
        check(e == "0", "the transaction's write reached no database (db %d: %s)" % (n, e))
    r = a.run("SELECT count(*) FROM rt;")
    check(r.rc == 0 and rows(r) == ["30"],
          "the next transaction reads db 1: %r %s" % (r.out, r.err))

    # changes that leave the options as they were: the connection reopens
    # (before the connection is closed; test_catalog_change_cursor.py)
    r = a.run("BEGIN; DECLARE c CURSOR FOR SELECT k, v FROM rt; FETCH 5 FROM c;")
    check(r.rc == 0 and len(rows(r)) == 5, "fetch: %r %s" % (r.out, r.err))
    r = pgtest.psql("GRANT USAGE ON FOREIGN SERVER rs TO PUBLIC; "
                    "ALTER SERVER rs OPTIONS (SET db '0'); "
                    "ALTER SERVER rs OPTIONS (SET db '1');", db=db)
    check(r.rc == 0, "grant, alter and back: %s" % r.err)
    r = a.run("SELECT FROM lock4; SELECT pgpoly.disconnect('rs');")
    check(r.rc == 0 and rows(r) == ["1"], "disconnect: %r %s" % (r.out, r.err))
    r = a.run("FETCH ALL FROM c;")
    got = rows(r)
    check(r.rc == 0 and len(got) == 25 and
          sorted(set(l.split("|")[-1] for l in got)) == ["db1"],
          "the cursor goes on in db 1 after a change that left its options: "
          "%d rows, %s" % (len(got), r.err))
    check(a.run("COMMIT;").rc == 0, "commit")
    break_in_savepoint(a, port, "w3", "31")
    r = pgtest.psql("REVOKE USAGE ON FOREIGN SERVER rs FROM PUBLIC;", db=db)
    check(r.rc == 0, "revoke: %s" % r.err)
    r = a.run("SELECT FROM lock5; SELECT count(*) FROM rt; COMMIT;")
    check(r.rc == 0 and rows(r) == ["31"],
          "after a change that left the options, the transaction goes on: %r %s"
          % (r.out, r.err))
    e = pgtest.redis_cli(port, "-n", "1", "EXISTS", "t:w3")[1]
    check(e == "1", "COMMIT wrote to db 1: %s" % e)
    a.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
