"""Sync: pg_upgrade of a cluster holding a CREATE DATABASE ... TEMPLATE copy
of a database with syncs.

A private cluster without shared_preload_libraries, one private Redis.
Database s has sync kv (sync_helper.setup_sql) and an outbox table ob, both
delivered.  s's worker is stopped, s is copied (CREATE DATABASE cp TEMPLATE
s), and cp changes key 1 of kv and key a of ob ('copy'): the copy's syncs
are s's, so those changes only queue in cp.  The cluster is upgraded
(pg_upgrade, which keeps database and relation oids but gives the new
cluster another system identifier).

1. s's worker delivers in the new cluster (its syncs are its own).
2. cp's worker must still not deliver s's syncs: Redis keeps s's rows, and
   cp's syncs are 'failing' with a last_error naming database s.  The
   upgrade did not make the copy the syncs' database.
"""

import os

import pgtest
import sync_helper as sh


def sql(c, text, db="s"):
    r = c.psql(text, db=db, timeout=120)
    pgtest.check(r.rc == 0, "SQL failed: %s\n%s" % (text.strip()[:200], r.err))
    return r.out.strip()


def upgrade(old, new):
    """pg_upgrade old (stopped) into new (stopped)."""
    r = old._as_user(["pg_upgrade", "-d", old.data, "-D", new.data, "-b", old.bindir,
                      "-B", new.bindir, "-p", str(old.port), "-P", str(new.port),
                      "-U", "postgres"], check=False, timeout=300)
    pgtest.check(r.returncode == 0, "pg_upgrade: %s\n%s" % (r.stdout[-3000:], r.stderr[-2000:]))


def test():
    rport = pgtest.start_redis(name="upg-copy-%d" % os.getpid())
    old = sh.Cluster(preload=False, name="upg-copy-old")
    sql(old, "CREATE DATABASE s", db="postgres")
    sql(old, "CREATE EXTENSION pgpoly;" + sh.setup_sql(rport, "upc:")
        + sh.outbox_sql(rport, "ob", "ob:"))
    sql(old, "INSERT INTO kv SELECT i, 'v' || i, i FROM generate_series(1, 5) i;"
             "INSERT INTO ob VALUES ('a', 'first')")
    pgtest.check(sql(old, "SELECT pgpoly.sync_wait(NULL, '30 s')") == "t", "initial delivery")
    pid = sh.worker_pid(lambda q: old.psql(q, timeout=10), "s")
    if pid:
        sql(old, "SELECT pg_terminate_backend(%d)" % pid, db="postgres")
        pgtest.check(sh.wait_gone(pid, 30), "the worker did not exit")
    sql(old, "CREATE DATABASE cp TEMPLATE s", db="postgres")
    sql(old, "UPDATE kv SET v = 'copy' WHERE k = 1; INSERT INTO ob VALUES ('a', 'copy')", db="cp")
    old.stop()
    new = sh.Cluster(preload=False, name="upg-copy-new")
    new.stop()
    upgrade(old, new)
    new.start()

    # 1. s's syncs are s's in the new cluster
    sql(new, "UPDATE kv SET v = 'new' WHERE k = 2")
    pgtest.check(sql(new, "SELECT pgpoly.sync_wait(NULL, '30 s')") == "t",
                 "s delivers: %s" % sql(new, "SELECT name, state, last_error FROM pgpoly.sync_status"))
    pgtest.check(sh.hget(rport, "upc:2", "v") == "new", "s's write is delivered")

    # 2. cp is still a copy of s
    sh.check_copy_held(new, "cp", "s", 2)
    pgtest.check(sh.hget(rport, "upc:1", "v") == "v1",
                 "the copy's row reached s's target: %s" % sh.hget(rport, "upc:1", "v"))
    pgtest.check(sh.hget(rport, "ob:a", "v") == "first",
                 "the copy's outbox change reached s's target: %s" % sh.hget(rport, "ob:a", "v"))
    new.stop()


pgtest.main(test)
