"""Sync: pg_dump of a database with syncs restored into another database of
the same cluster while the original keeps running.

A private cluster without shared_preload_libraries, one private Redis.
Database s has sync kv (sync_helper.setup_sql) and an outbox table ob, both
delivered.  Redis goes down, key 1 of kv and key a of ob change ('old'):
the changes are queued when s is dumped (pg_dump -Fc) and restored into
database r (pg_restore), s's worker still running.  Redis comes back; s
delivers, then changes both keys again ('new') and delivers them.

1. r's worker (started by sync_wait in r) must not deliver r's copy of the
   queue (s delivered it already: a second delivery) nor a write made in r
   over s's newer rows: both keys stay 'new', r's syncs are 'failing' with
   a last_error naming database s, and r's writes still queue.
2. s goes on delivering.
3. Once s is dropped, r's syncs are its own: its worker delivers what they
   queued.
"""

import os

import pgtest
import sync_helper as sh


def sql(c, text, db="s"):
    r = c.psql(text, db=db, timeout=120)
    pgtest.check(r.rc == 0, "SQL failed: %s\n%s" % (text.strip()[:200], r.err))
    return r.out.strip()


def dump_restore(c, src, dst):
    """pg_dump -Fc src | pg_restore into the new database dst (same cluster)."""
    path = os.path.join(c.dir, "%s.dump" % src)
    conn = ["-h", "127.0.0.1", "-p", str(c.port), "-U", "postgres"]
    r = c._as_user(["pg_dump", "-Fc", "-f", path] + conn + [src], check=False)
    pgtest.check(r.returncode == 0, "pg_dump: %s" % r.stderr)
    sql(c, "CREATE DATABASE %s" % dst, db="postgres")
    r = c._as_user(["pg_restore", "--exit-on-error", "-d", dst] + conn + [path], check=False)
    pgtest.check(r.returncode == 0, "pg_restore: %s" % r.stderr)


def test():
    name = "sync-restore-%d" % os.getpid()
    rport = pgtest.start_redis(name=name)
    c = sh.Cluster(preload=False, name="sync-restore")
    sql(c, "CREATE DATABASE s", db="postgres")
    sql(c, "CREATE EXTENSION pgpoly;" + sh.setup_sql(rport, "rst:")
        + sh.outbox_sql(rport, "ob", "ob:"))
    sql(c, "INSERT INTO kv SELECT i, 'v' || i, i FROM generate_series(1, 20) i;"
           "INSERT INTO ob VALUES ('a', 'first')")
    pgtest.check(sql(c, "SELECT pgpoly.sync_wait(NULL, '30 s')") == "t", "initial delivery")

    # changes queued in s while Redis is down; s dumped and restored as r
    pgtest.stop_redis(rport)
    sql(c, "UPDATE kv SET v = 'old' WHERE k = 1; INSERT INTO ob VALUES ('a', 'old')")
    pgtest.check(sql(c, "SELECT sum(pending) FROM pgpoly.sync_status") == "2",
                 "the changes are queued")
    dump_restore(c, "s", "r")
    pgtest.check(sql(c, "SELECT sum(pending) FROM pgpoly.sync_status", db="r") == "2",
                 "the restore carries the queue")
    pgtest.start_redis(port=rport, name=name)
    pgtest.check(sql(c, "SELECT pgpoly.sync_wait(NULL, '30 s')") == "t", "s delivers")
    sql(c, "UPDATE kv SET v = 'new' WHERE k = 1; INSERT INTO ob VALUES ('a', 'new')")
    pgtest.check(sql(c, "SELECT pgpoly.sync_wait(NULL, '30 s')") == "t", "s delivers again")
    pgtest.check(sh.hget(rport, "rst:1", "v") == "new" and sh.hget(rport, "ob:a", "v") == "new",
                 "s delivered its newer rows")

    # 1. r's worker runs, but delivers neither its copy of the queue nor its writes
    sql(c, "UPDATE kv SET v = 'restored' WHERE k = 2", db="r")
    sh.check_copy_held(c, "r", "s", 2)
    pgtest.check(sh.hget(rport, "rst:1", "v") == "new",
                 "the restored queue was delivered a second time: %s" % sh.hget(rport, "rst:1", "v"))
    pgtest.check(sh.hget(rport, "rst:2", "v") != "restored",
                 "a write in the restored database reached s's target: %s"
                 % sh.hget(rport, "rst:2", "v"))
    pgtest.check(sh.hget(rport, "ob:a", "v") == "new",
                 "the restored outbox queue was delivered a second time: %s"
                 % sh.hget(rport, "ob:a", "v"))
    sql(c, "INSERT INTO ob VALUES ('b', 'restored')", db="r")
    pgtest.check(sql(c, "SELECT pending FROM pgpoly.sync_status WHERE name = 'public.ob'",
                     db="r") == "2", "a write in the restored database queues")

    # 2. s is still the syncs' database
    sql(c, "UPDATE kv SET v = 'newer' WHERE k = 3")
    pgtest.check(sql(c, "SELECT pgpoly.sync_wait(NULL, '30 s')") == "t", "s still delivers")
    pgtest.check(sh.hget(rport, "rst:3", "v") == "newer", "s's write is delivered")
    states = sql(c, "SELECT string_agg(name || ' ' || state || ' ' || COALESCE(last_error, ''), "
                    "', ' ORDER BY name) FROM pgpoly.sync_status")
    pgtest.check(states == "kv idle , public.ob idle", "s's syncs are ok: %s" % states)

    # 3. s dropped: r is the syncs' database now
    sql(c, "DROP DATABASE s WITH (FORCE)", db="postgres")
    pgtest.check(sql(c, "SELECT pgpoly.sync_wait(NULL, '30 s')", db="r") == "t",
                 "r delivers once s is gone: %s"
                 % sql(c, "SELECT name, state, last_error FROM pgpoly.sync_status", db="r"))
    pgtest.check(sh.hget(rport, "rst:2", "v") == "restored", "r's write is delivered")
    pgtest.check(sh.hget(rport, "ob:b", "v") == "restored", "r's outbox write is delivered")
    c.stop()


pgtest.main(test)
