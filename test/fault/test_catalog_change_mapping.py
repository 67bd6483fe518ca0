#!/usr/bin/env python3
"""The user mapping of a role replaced by another session mid-transaction.

A transaction writes through a Redis server with one user mapping of its
role, and another session replaces that mapping with another one of the
same role (CREATE USER MAPPING FOR the role where PUBLIC's was used, or
DROP of the role's own leaving PUBLIC's) and moves the server to another
Redis.  Before the fix the transaction's next statement took the other
mapping, hence another cache entry and a new connection with the new
options: one transaction's writes went to two Redis servers, and its reads
no longer saw the writes buffered on the first connection.  Now:

  * a mapping created for the role while the transaction used PUBLIC's:
    the transaction goes on with PUBLIC's connection, reads its own
    writes, and COMMIT sends them all to the first Redis; the next
    transaction uses the new mapping and server;
  * the mapping the transaction used dropped: its next statement fails
    (42704) and nothing reaches either Redis;
  * no crash in the log.
"""

import pgtest

check = pgtest.check


def rows(r):
    return [l for l in r.out.split("\n") if l]


def dbsize(port):
    return pgtest.redis_cli(port, "DBSIZE")[1]


def test():
    mark = pgtest.pg_log_mark()
    r1 = pgtest.start_redis()
    r2 = pgtest.start_redis()
    db = pgtest.create_db("pgpoly_cc_mapping")
    r = pgtest.psql("""
        CREATE TABLE lock1 (); CREATE TABLE lock2 ();
        CREATE SERVER s1 FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%d');
        CREATE USER MAPPING FOR PUBLIC SERVER s1;
        CREATE FOREIGN TABLE t1 (k text OPTIONS (key 'true'), v text)
            SERVER s1 OPTIONS (key_prefix 'one:');
        CREATE SERVER s2 FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%d');
        CREATE USER MAPPING FOR CURRENT_USER SERVER s2;
        CREATE FOREIGN TABLE t2 (k text OPTIONS (key 'true'), v text)
            SERVER s2 OPTIONS (key_prefix 'two:');
    """ % (r1, r1), db=db)
    check(r.rc == 0, "set-up: %s" % r.err)
    a = pgtest.Session(db=db)

    # PUBLIC's mapping in use, the role's own created meanwhile
    r = a.run("BEGIN; INSERT INTO t1 VALUES ('p1', 'x'); SELECT count(*) FROM t1;")
    check(r.rc == 0 and rows(r) == ["1"], "first write: %r %s" % (r.out, r.err))
    r = pgtest.psql("CREATE USER MAPPING FOR CURRENT_USER SERVER s1; "
                    "ALTER SERVER s1 OPTIONS (SET port '%d');" % r2, db=db)
    check(r.rc == 0, "replace the mapping: %s" % r.err)
    r = a.run("SELECT FROM lock1; INSERT INTO t1 VALUES ('p2', 'x'); SELECT count(*) FROM t1;")
    check(r.rc == 0 and rows(r) == ["2"],
          "the transaction reads its two writes on its first connection: %r %s"
          % (r.out, r.err))
    r = a.run("SELECT count(*) FROM pgpoly.connections() WHERE server = 's1';")
    check(rows(r) == ["1"], "one connection to s1 in the transaction: %r" % r.out)
    check(a.run("COMMIT;").rc == 0, "commit")
    check(dbsize(r1) == "2" and dbsize(r2) == "0",
          "both writes went to the first Redis: r1 %s, r2 %s" % (dbsize(r1), dbsize(r2)))
    r = a.run("INSERT INTO t1 VALUES ('p3', 'x'); SELECT count(*) FROM t1;")
    check(r.rc == 0 and rows(r) == ["1"] and dbsize(r2) == "1",
          "the next transaction uses the new mapping and server: %r %s" % (r.out, r.err))

    # the role's own mapping in use, dropped meanwhile (PUBLIC's remains)
    r = a.run("BEGIN; INSERT INTO t2 VALUES ('q1', 'x');")
    check(r.rc == 0, "write: %s" % r.err)
    r = pgtest.psql("DROP USER MAPPING FOR CURRENT_USER SERVER s2; "
                    "CREATE USER MAPPING FOR PUBLIC SERVER s2; "
                    "ALTER SERVER s2 OPTIONS (SET port '%d');" % r2, db=db)
    check(r.rc == 0, "drop the mapping: %s" % r.err)
    r = a.run("SELECT FROM lock2; INSERT INTO t2 VALUES ('q2', 'x');")
    check(r.rc == 1 and r.sqlstate == "42704" and "dropped" in r.err,
          "a write after the transaction's mapping was dropped fails with 42704: %s" % r.err)
    a.run("ROLLBACK;")
    check(pgtest.redis_cli(r1, "EXISTS", "two:q1", "two:q2")[1] == "0" and
          pgtest.redis_cli(r2, "EXISTS", "two:q1", "two:q2")[1] == "0",
          "nothing of the failed transaction reached either Redis")
    r = a.run("INSERT INTO t2 VALUES ('q3', 'x');")
    check(r.rc == 0 and pgtest.redis_cli(r2, "EXISTS", "two:q3")[1] == "1",
          "the next transaction uses PUBLIC's mapping and the new server: %s" % r.err)
    a.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
