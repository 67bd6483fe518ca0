#!/usr/bin/env python3
"""ALTER SERVER by another session while a transaction reads through a cursor.

A transaction opens a cursor over a foreign table, fetches a little, and
another session points the table's server elsewhere (Redis: another `db` of
the same Redis; Elasticsearch: another stand-in).  The transaction then
runs one more statement that takes in the invalidation (it locks a table it
had not locked) and reads the same foreign table, then fetches the rest of
the cursor.  The oracle is the old store's content: every row the cursor
returns, and the count read in the same transaction, come from the server
the transaction first used (postgres_fdw keeps a connection a transaction
used until its end), never half from one and half from the other — before
the fix the second statement reconnected under the cursor, whose SCAN
cursor (or page) then went on in the other database, returning a few of its
keys and missing the rest without an error.  The next transaction reads the
new server.  A connection the transaction used that is closed after such a
change (pgpoly.disconnect(), an error in a subtransaction) is not opened
again with the new options in that transaction: the cursor fails (08006).
"""

import es_helper
import pgtest

check = pgtest.check


def rows(r):
    return [l for l in r.out.split("\n") if l]


def redis(db):
    port = pgtest.start_redis()
    # db 0: 2000 keys a<i>, db 1: 30 keys b<i>
    pgtest.redis_cli(port, "EVAL",
                     "for i=1,2000 do redis.call('HSET', 't:a'..i, 'v', 'db0') end "
                     "redis.call('SELECT', 1) "
                     "for i=1,30 do redis.call('HSET', 't:b'..i, 'v', 'db1') end", "0")
    r = pgtest.psql("""
        CREATE SERVER rs FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%d');
        CREATE USER MAPPING FOR CURRENT_USER SERVER rs;
        CREATE FOREIGN TABLE rt (k text OPTIONS (key 'true'), v text)
            SERVER rs OPTIONS (key_prefix 't:', fetch_size '10');
    """ % port, db=db)
    check(r.rc == 0, "redis set-up: %s" % r.err)
    a = pgtest.Session(db=db)
    r = a.run("BEGIN; DECLARE c CURSOR FOR SELECT k, v FROM rt; FETCH 5 FROM c;")
    check(r.rc == 0 and len(rows(r)) == 5, "redis: first fetch: %r %s" % (r.out, r.err))
    first = rows(r)
    r = pgtest.psql("ALTER SERVER rs OPTIONS (ADD db '1');", db=db)
    check(r.rc == 0, "alter server: %s" % r.err)
    r = a.run("SELECT count(*) FROM fresh_lock; SELECT count(*) FROM rt;")
    check(r.rc == 0 and rows(r) == ["0", "2000"],
          "redis: a read in the transaction stays on db 0: %r %s" % (r.out, r.err))
    r = a.run("FETCH ALL FROM c;")
    got = first + rows(r)
    vals = sorted(set(l.split("|")[1] for l in got))
    check(r.rc == 0 and vals == ["db0"] and len(got) == 2000 and len(set(got)) == 2000,
          "redis: the cursor reads all 2000 keys of db 0 and nothing else: %d rows, "
          "values %r, %s" % (len(got), vals, r.err))
    check(a.run("COMMIT;").rc == 0, "redis: commit")
    r = a.run("SELECT count(*) FROM rt;")
    check(rows(r) == ["30"], "redis: the next transaction reads db 1: %r %s" % (r.out, r.err))

    # the connection closed (pgpoly.disconnect()) under the cursor after the
    # change: opening it again would go on in the other database
    r = a.run("BEGIN; DECLARE c CURSOR FOR SELECT k, v FROM rt; FETCH 5 FROM c;")
    check(r.rc == 0 and len(rows(r)) == 5, "redis: fetch in db 1: %r %s" % (r.out, r.err))
    r = pgtest.psql("ALTER SERVER rs OPTIONS (DROP db);", db=db)
    check(r.rc == 0, "alter server back: %s" % r.err)
    r = a.run("SELECT count(*) FROM fresh_lock; SELECT pgpoly.disconnect('rs');")
    check(r.rc == 0 and rows(r) == ["0", "1"], "redis: disconnect: %r %s" % (r.out, r.err))
    r = a.run("FETCH ALL FROM c;")
    check(r.rc == 1 and r.sqlstate == "08006" and "options changed" in r.err,
          "redis: the cursor fails (08006) instead of going on in db 0: %d rows, %s"
          % (len(rows(r)), r.err))
    check(a.run("ROLLBACK;").rc == 0, "redis: rollback")
    r = a.run("SELECT count(*) FROM rt;")
    check(rows(r) == ["2000"], "redis: the next transaction reads db 0: %r %s" % (r.out, r.err))
    a.close()


def elastic(db):
    es1 = es_helper.Standin()
    es2 = es_helper.Standin()
    es1.load("docs", 300)
    es2.load("docs", 30)
    es1.request("POST", "/docs/_refresh")
    es2.request("POST", "/docs/_refresh")
    r = pgtest.psql("""
        CREATE SERVER es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%s');
        CREATE USER MAPPING FOR CURRENT_USER SERVER es;
        CREATE FOREIGN TABLE et (_id text, n bigint) SERVER es
            OPTIONS (index 'docs', fetch_size '10');
    """ % es1.url, db=db)
    check(r.rc == 0, "elastic set-up: %s" % r.err)
    a = pgtest.Session(db=db)
    r = a.run("BEGIN; DECLARE c CURSOR FOR SELECT n FROM et; FETCH 5 FROM c;")
    check(r.rc == 0 and len(rows(r)) == 5, "elastic: first fetch: %r %s" % (r.out, r.err))
    first = rows(r)
    r = pgtest.psql("ALTER SERVER es OPTIONS (SET url '%s');" % es2.url, db=db)
    check(r.rc == 0, "alter server: %s" % r.err)
    r = a.run("SELECT count(*) FROM fresh_lock2; SELECT count(*) FROM et;")
    check(r.rc == 0 and rows(r) == ["0", "300"],
          "elastic: a read in the transaction stays on the first stand-in: %r %s"
          % (r.out, r.err))
    r = a.run("FETCH ALL FROM c;")
    got = first + rows(r)
    check(r.rc == 0 and sorted(int(x) for x in got) == list(range(300)),
          "elastic: the cursor reads the 300 documents of the first stand-in: %d rows, %s"
          % (len(got), r.err))
    check(a.run("COMMIT;").rc == 0, "elastic: commit")
    r = a.run("SELECT count(*) FROM et;")
    check(rows(r) == ["30"], "elastic: the next transaction reads the new url: %r %s"
          % (r.out, r.err))
    a.close()


def test():
    mark = pgtest.pg_log_mark()
    db = pgtest.create_db("pgpoly_cc_cursor")
    check(pgtest.psql("CREATE TABLE fresh_lock (); CREATE TABLE fresh_lock2 ();",
                      db=db).rc == 0, "tables")
    redis(db)
    elastic(db)
    pgtest.check_pg_log(mark)


pgtest.main(test)
