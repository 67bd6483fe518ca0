"""Sync on replicas: rows applied by logical replication are captured; a hot
standby waits for the primary's deliveries and starts no worker.

A private cluster (wal_level logical, no shared_preload_libraries) and a
private Redis:

1. Logical replication.  Database sub subscribes to table kv of database
   pub (same cluster) and syncs its kv, partitioned there (a partition
   with other column numbers), to Redis.  The rows the initial table
   synchronisation copies, and those the apply worker inserts, updates,
   moves to another key (and partition), deletes and truncates, all reach Redis: the
   target equals sub's kv row for row.  (The apply worker fires row
   triggers only, never statement triggers.)
2. A hot standby of the cluster: sync_wait there waits until the standby
   has replayed the primary's deliveries (true), and never registers a
   worker: no WARNING about worker slots, and a parallel query on the
   standby still gets its workers after many sync_wait calls.
"""

import pgtest
import sync_helper as sh

check = pgtest.check


def sql(c, text, db):
    r = c.psql(text, db=db, timeout=120)
    check(r.rc == 0, "SQL failed in %s: %s\n%s" % (db, text.strip()[:300], r.err))
    return r.out.strip()


def rows(c, db):
    """kv of db as one text, to compare two databases."""
    return sql(c, "SELECT count(*) || ':' || coalesce(md5(string_agg(k || '/' || v || '/' "
                  "|| coalesce(n::text, '-'), ',' ORDER BY k)), '') FROM kv", db)


def replicated(c, what):
    """Wait until sub's kv equals pub's, then until Redis equals sub's kv."""
    ok = pgtest.wait_for(lambda: rows(c, "sub") == rows(c, "pub"), timeout=60,
                         interval=0.1)
    check(ok, "%s: sub never caught up with pub: %s vs %s"
          % (what, rows(c, "sub"), rows(c, "pub")))
    check(sql(c, "SELECT pgpoly.sync_wait('kv', '60 s')", "sub") == "t",
          "%s: the changes the apply worker made were not delivered" % what)
    check(sql(c, "SELECT kv_diff()", "sub") == "0",
          "%s: Redis differs from the subscriber's table (%s rows in Redis)"
          % (what, sql(c, "SELECT count(*) FROM kv_redis", "sub")))


def test_logical(c, rport):
    sql(c, "CREATE DATABASE pub; CREATE DATABASE sub", "postgres")
    sql(c, "CREATE TABLE kv (k int PRIMARY KEY, v text NOT NULL, n int);"
           "INSERT INTO kv SELECT i, 'copied', i FROM generate_series(1, 50) i;"
           "CREATE PUBLICATION p FOR TABLE kv;"
           "SELECT pg_create_logical_replication_slot('s_sub', 'pgoutput') IS NOT NULL", "pub")
    # sub's kv is partitioned, a partition with other attnums than kv's.
    setup = sh.setup_sql(rport, "lr:").replace(
        "CREATE TABLE kv (k int PRIMARY KEY, v text NOT NULL, n int);",
        "CREATE TABLE kv (k int PRIMARY KEY, v text NOT NULL, n int) PARTITION BY RANGE (k);"
        "CREATE TABLE kv_low PARTITION OF kv FOR VALUES FROM (MINVALUE) TO (60);"
        "CREATE TABLE kv_high (n int, v text NOT NULL, k int NOT NULL);"
        "ALTER TABLE kv ATTACH PARTITION kv_high FOR VALUES FROM (60) TO (MAXVALUE);")
    check("PARTITION BY" in setup, "the set-up SQL changed")
    sql(c, "CREATE EXTENSION pgpoly;" + setup, "sub")
    sql(c, "CREATE SUBSCRIPTION s CONNECTION 'host=127.0.0.1 port=%d dbname=pub user=postgres' "
           "PUBLICATION p WITH (create_slot = false, slot_name = 's_sub')" % c.port, "sub")
    replicated(c, "initial table synchronisation")
    sql(c, "INSERT INTO kv SELECT i, 'applied', i FROM generate_series(51, 80) i;"
           "UPDATE kv SET v = 'updated', n = -n WHERE k % 7 = 0;"
           "DELETE FROM kv WHERE k BETWEEN 10 AND 19;"
           "UPDATE kv SET k = 1000 + k WHERE k IN (1, 2, 3);"
           "BEGIN; INSERT INTO kv VALUES (500, 'in a transaction', 0);"
           "UPDATE kv SET v = 'twice' WHERE k = 500; COMMIT", "pub")
    replicated(c, "inserts, updates and deletes applied")
    sql(c, "BEGIN; TRUNCATE kv; INSERT INTO kv VALUES (7, 'after truncate', 7); COMMIT", "pub")
    replicated(c, "truncate applied")
    sql(c, "DROP SUBSCRIPTION s", "sub")


def test_standby(c, rport):
    sql(c, "CREATE DATABASE s; ALTER DATABASE s SET pgpoly.sync_max_retry_delay = 500",
        "postgres")
    sql(c, "CREATE EXTENSION pgpoly;" + sh.setup_sql(rport, "sb:"), "s")
    sb = sh.Cluster(preload=False, name="sync-standby", primary=c)
    ok = pgtest.wait_for(lambda: sb.psql("SELECT count(*) FROM pgpoly.syncs", db="s",
                                         timeout=10).out.strip() == "1", timeout=60)
    check(ok, "the standby did not replay the sync")
    # Redis down: the primary's changes wait in the queue the standby replays.
    pgtest.kill_redis(rport)
    sql(c, "INSERT INTO kv SELECT i, 'primary', i FROM generate_series(1, 20) i", "s")
    ok = pgtest.wait_for(lambda: sb.psql("SELECT pending FROM pgpoly.sync_status", db="s",
                                         timeout=10).out.strip() == "20", timeout=60)
    check(ok, "the standby did not replay the queued changes")
    # More calls (each a new backend) than the cluster has worker slots.
    for _ in range(20):
        r = sb.psql("SELECT pgpoly.sync_wait('kv', '0.1 s')", db="s", timeout=30)
        check(r.rc == 0 and r.out.strip() == "f",
              "sync_wait on the standby while Redis is down: %s %s" % (r.out, r.err))
        check("worker slot" not in r.err, "sync_wait on the standby warned: %s" % r.err)
    r = sb.psql("SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;"
                "SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 2;"
                "EXPLAIN (ANALYZE, COSTS OFF) SELECT count(*) FROM pg_class a, "
                "generate_series(1, 10) g", db="s", timeout=60)
    check("Workers Launched: 2" in r.out,
          "sync_wait on the standby took background worker slots:\n%s%s" % (r.out, r.err))
    check("pgpoly sync worker" not in sb.log_since(0), "a sync worker ran on the standby")
    # Redis back: the primary delivers, the standby sees it and returns true.
    pgtest.start_redis(port=rport, name="sync-replicas")
    r = sb.psql("SELECT pgpoly.sync_wait('kv', '60 s')", db="s", timeout=90)
    check(r.rc == 0 and r.out.strip() == "t",
          "sync_wait on the standby did not see the deliveries: %s %s" % (r.out, r.err))
    check(sql(c, "SELECT kv_diff()", "s") == "0", "Redis differs from the primary's kv")
    sb.stop("immediate")


def test():
    rport = pgtest.start_redis(name="sync-replicas")
    c = sh.Cluster(preload=False, name="sync-replicas", conf="wal_level = logical\n")
    test_logical(c, rport)
    test_standby(c, rport)


pgtest.main(test)
