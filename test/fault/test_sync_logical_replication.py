"""Sync: a table with a sync published by logical replication to another
database that has the same table and a sync to the same Redis keys.

A private cluster (wal_level = logical), one private Redis.  Database pub
has sync kv (sync_helper.setup_sql) and publication p of kv; database sub
has the same objects (sync kv to the same key prefix: the publisher's
target) and a subscription to p (its slot made by hand, as both are in one
cluster).

The apply worker runs with session_replication_role = replica, yet the
subscriber's sync captures the rows it applies (README, Capture: the
statement triggers are ENABLE ALWAYS, a row trigger enabled REPLICA takes
the apply worker's rows), the initial copy and later changes alike, so a
subscriber's sync feeds its own target.  With the publisher's target, both
deliver each change: the target is written twice, and as each worker
writes the row its database has when it delivers, the target ends with
the publisher's rows once both are done (the README says so and what a
lagging subscriber does meanwhile).  A write made in the subscriber itself
is captured there as usual.
"""

import os

import pgtest
import sync_helper as sh


def sql(c, text, db="pub"):
    r = c.psql(text, db=db, timeout=120)
    pgtest.check(r.rc == 0, "SQL failed: %s\n%s" % (text.strip()[:200], r.err))
    return r.out.strip()


def test():
    rport = pgtest.start_redis(name="sync-lrep-%d" % os.getpid())
    c = sh.Cluster(preload=False, name="sync-lrep", conf="wal_level = logical")
    for db in ("pub", "sub"):
        sql(c, "CREATE DATABASE %s" % db, db="postgres")
        sql(c, "CREATE EXTENSION pgpoly;" + sh.setup_sql(rport, "lr:"), db=db)
    sql(c, "INSERT INTO kv SELECT i, 'v' || i, i FROM generate_series(1, 10) i;"
           "CREATE PUBLICATION p FOR TABLE kv;"
           "SELECT pg_create_logical_replication_slot('lrep_slot', 'pgoutput')")
    pgtest.check(sql(c, "SELECT pgpoly.sync_wait(NULL, '30 s')") == "t", "pub delivers")
    sql(c, "CREATE SUBSCRIPTION s CONNECTION 'host=127.0.0.1 port=%d dbname=pub user=postgres' "
           "PUBLICATION p WITH (create_slot = false, slot_name = 'lrep_slot')" % c.port, db="sub")

    # the initial copy is captured in sub
    pgtest.check(pgtest.wait_for(
        lambda: sql(c, "SELECT count(*) FROM pg_subscription_rel WHERE srsubstate = 'r'",
                    db="sub") == "1", timeout=30, interval=0.2), "the initial copy ends")
    pgtest.check(sql(c, "SELECT pgpoly.sync_wait(NULL, '30 s')", db="sub") == "t",
                 "sub delivers the rows it copied")
    copied = int(sql(c, "SELECT applied FROM pgpoly.sync_status", db="sub"))
    pgtest.check(copied >= 10, "the subscriber captured the copied rows: %d" % copied)

    # later changes are captured in sub too
    sql(c, "UPDATE kv SET v = 'pub' WHERE k <= 5; DELETE FROM kv WHERE k = 10;"
           "INSERT INTO kv VALUES (11, 'v11', 11)")
    pgtest.check(sql(c, "SELECT pgpoly.sync_wait(NULL, '30 s')") == "t", "pub delivers again")
    want = sql(c, "SELECT string_agg(k || v, ',' ORDER BY k) FROM kv")
    pgtest.check(pgtest.wait_for(
        lambda: sql(c, "SELECT string_agg(k || v, ',' ORDER BY k) FROM kv", db="sub") == want,
        timeout=30, interval=0.2), "the subscriber has the publisher's rows")
    pgtest.check(sql(c, "SELECT pgpoly.sync_wait(NULL, '30 s')", db="sub") == "t",
                 "sub delivers the rows it applied")
    applied = int(sql(c, "SELECT applied FROM pgpoly.sync_status", db="sub"))
    pgtest.check(applied >= copied + 7, "the subscriber captured the applied rows: %d" % applied)
    pgtest.check(sql(c, "SELECT kv_diff()") == "0", "the target matches the publisher")
    pgtest.check(sql(c, "SELECT kv_diff()", db="sub") == "0", "... and the subscriber")

    # a write made in the subscriber itself is captured and delivered there
    sql(c, "INSERT INTO kv VALUES (100, 'sub', 100)", db="sub")
    pgtest.check(sql(c, "SELECT pgpoly.sync_wait(NULL, '30 s')", db="sub") == "t",
                 "sub delivers its own write")
    rc, out, err = pgtest.redis_cli(rport, "HGET", "lr:100", "v")
    pgtest.check(out == "sub", "the subscriber's own write: %r %s" % (out, err))
    sql(c, "DROP SUBSCRIPTION s", db="sub")
    c.stop()


pgtest.main(test)
