"""Sync: CREATE DATABASE ... TEMPLATE of a database with syncs and queued changes.

A private cluster without shared_preload_libraries, one Redis.  Database s
has sync kv (sync_helper.setup_sql) and an outbox table ob, both delivered.

1. While s's worker runs, s cannot be the template of CREATE DATABASE (the
   README's claim: the worker is connected).
2. Redis goes down, key 1 of kv and key a of ob change ('old'), the worker
   is terminated: the changes stay queued and no worker runs.  s is copied
   (CREATE DATABASE cp TEMPLATE s).  Redis comes back; s changes both keys
   again ('new') and delivers them.
3. The copy's worker (started by sync_wait in cp) must not deliver the
   copy's stale queue over them: both keys stay 'new', and cp's syncs are
   'failing' with a last_error naming database s (SQLSTATE 3D000), as
   pgpoly.syncs records which database a sync belongs to.  A write to the
   copy's outbox table still queues (nothing is lost).
4. Once s is dropped, the copy is the syncs' database: its worker delivers
   its queued changes (key 1 as the copy has it, the copy's outbox write).
"""

import os

import pgtest
import sync_helper as sh


def sql(c, text, db="s"):
    r = c.psql(text, db=db, timeout=120)
    pgtest.check(r.rc == 0, "SQL failed: %s\n%s" % (text.strip()[:200], r.err))
    return r.out.strip()


def stop_worker(c, db):
    pid = sh.worker_pid(lambda q: c.psql(q, timeout=10), db)
    if pid:
        sql(c, "SELECT pg_terminate_backend(%d)" % pid, db="postgres")
        pgtest.check(sh.wait_gone(pid, 30), "the worker did not exit")


def test():
    rport = pgtest.start_redis(name="sync-copy-%d" % os.getpid())
    c = sh.Cluster(preload=False, name="sync-copy")
    sql(c, "CREATE DATABASE s", db="postgres")
    sql(c, "CREATE EXTENSION pgpoly;" + sh.setup_sql(rport, "copy:")
        + sh.outbox_sql(rport, "ob", "ob:"))
    sql(c, "INSERT INTO kv SELECT i, 'v' || i, i FROM generate_series(1, 20) i;"
           "INSERT INTO ob VALUES ('a', 'first')")
    pgtest.check(sql(c, "SELECT pgpoly.sync_wait(NULL, '30 s')") == "t", "initial delivery")

    # 1. the worker is connected: no copy
    r = c.psql("CREATE DATABASE busy TEMPLATE s", db="postgres", timeout=60)
    pgtest.check(r.rc != 0 and "being accessed by other users" in r.err,
                 "CREATE DATABASE from a database whose worker runs: %s %s" % (r.rc, r.err))

    # 2. changes queued, no worker, copy
    pgtest.stop_redis(rport)
    sql(c, "UPDATE kv SET v = 'old' WHERE k = 1; INSERT INTO ob VALUES ('a', 'old')")
    stop_worker(c, "s")
    pgtest.check(sql(c, "SELECT sum(pending) FROM pgpoly.sync_status") == "2",
                 "the changes are queued")
    sql(c, "CREATE DATABASE cp TEMPLATE s", db="postgres")
    pgtest.start_redis(port=rport, name="sync-copy-%d" % os.getpid())
    sql(c, "UPDATE kv SET v = 'new' WHERE k = 1; INSERT INTO ob VALUES ('a', 'new')")
    pgtest.check(sql(c, "SELECT pgpoly.sync_wait(NULL, '30 s')") == "t", "s delivers")
    pgtest.check(sh.hget(rport, "copy:1", "v") == "new" and sh.hget(rport, "ob:a", "v") == "new",
                 "s delivered its newer rows")

    # 3. the copy's worker runs, but does not deliver s's syncs
    sh.check_copy_held(c, "cp", "s", 2)
    pgtest.check(sh.hget(rport, "copy:1", "v") == "new",
                 "the copy's stale row overwrote the target: %s" % sh.hget(rport, "copy:1", "v"))
    pgtest.check(sh.hget(rport, "ob:a", "v") == "new",
                 "the copy's stale outbox change overwrote the target: %s"
                 % sh.hget(rport, "ob:a", "v"))
    sql(c, "INSERT INTO ob VALUES ('b', 'copy')", db="cp")
    pgtest.check(sql(c, "SELECT pending FROM pgpoly.sync_status WHERE name = 'public.ob'",
                     db="cp") == "2", "a write in the copy queues")
    pgtest.check(sh.hget(rport, "copy:1", "v") == "new", "still new")

    # 4. s dropped: the copy is the syncs' database now
    sql(c, "DROP DATABASE s WITH (FORCE)", db="postgres")
    pgtest.check(sql(c, "SELECT pgpoly.sync_wait(NULL, '30 s')", db="cp") == "t",
                 "the copy delivers once s is gone: %s"
                 % sql(c, "SELECT name, state, last_error FROM pgpoly.sync_status", db="cp"))
    # (Redis restarted empty: the keys delivered since are there)
    pgtest.check(sh.hget(rport, "copy:1", "v") == "old",
                 "the copy's row of key 1 is delivered: %s" % sh.hget(rport, "copy:1", "v"))
    pgtest.check(sh.hget(rport, "ob:b", "v") == "copy", "the copy's own write is delivered")
    c.stop()


pgtest.main(test)
