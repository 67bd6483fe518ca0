"""pg_upgrade (PostgreSQL 15 to a fresh 15 cluster) of a database using pgpoly.

Private clusters with shared_preload_libraries = 'pgpoly' (the sync
launcher registered), a private Redis and Elasticsearch stand-in.  Database
u of the old cluster has foreign tables of the three wrappers, registry,
monitoring rows, sync kv and outbox table ob, one dead letter (a change
Redis rejected), and two changes still queued (Redis down) when the old
cluster stops.

1. `pg_upgrade --check` passes against the running old cluster.
2. `pg_upgrade` (copy mode) into a fresh cluster: the upgrade runs with Redis
   still down and nothing of the queue lost; once Redis is back the new
   cluster's worker delivers the queue (each queued change once: the
   sync's applied count grows by exactly the number of keys queued), the
   dead letter, registry rows and foreign table definitions are there,
   identities and sequences continue, and the extension's config tables
   are still marked for pg_dump.
3. `pg_upgrade --link` of the old cluster into another fresh cluster
   works as well (the old cluster is not started again).

The same run checks a CREATE DATABASE ... TEMPLATE copy of a database with
syncs (once test_sync_upgrade_copy.py, merged here to share the
pg_upgrade runs).  Database s of the old cluster has sync kv and outbox
table ob on a second private Redis (which stays up), both delivered; s's
worker is stopped, s is copied (CREATE DATABASE cp TEMPLATE s), and cp
changes key 1 of kv and key a of ob ('copy'): the copy's syncs are s's, so
those changes only queue in cp.  pg_upgrade keeps database and relation
oids but gives the new cluster another system identifier.  In the copied
cluster (2.):
  a. s's worker delivers (its syncs are its own);
  b. cp's worker must still not deliver s's syncs: Redis keeps s's rows,
     and cp's syncs are 'failing' with a last_error naming database s.  The
     upgrade did not make the copy the syncs' database.
"""

import os

import es_helper
import pgtest
import sync_helper as sh


def sql(c, text, db="u"):
    r = c.psql(text, db=db, timeout=120)
    pgtest.check(r.rc == 0, "SQL failed: %s\n%s" % (text.strip()[:200], r.err))
    return r.out.strip()


def fresh(name):
    """A new, stopped cluster to upgrade into."""
    c = sh.Cluster(preload=True, name=name, conf="pgpoly.sync_max_attempts = 1")
    c.stop()
    return c


def upgrade(old, new, *mode):
    """pg_upgrade old (stopped) into new (stopped); True on success."""
    r = old._as_user(["pg_upgrade", "-d", old.data, "-D", new.data, "-b", old.bindir,
                      "-B", new.bindir, "-p", str(old.port), "-P", str(new.port),
                      "-U", "postgres", "--jobs", "4"] + list(mode), check=False, timeout=300)
    pgtest.check(r.returncode == 0, "pg_upgrade %s: %s\n%s" % (" ".join(mode), r.stdout[-3000:],
                                                               r.stderr[-2000:]))
    return r.returncode == 0


def snapshot(c):
    """What the upgrade must carry, as one text."""
    return sql(c, """
        SELECT (SELECT string_agg(name || ':' || coalesce(home, '') IS NOT NULL || ':' || applied,
                                  ',' ORDER BY name) FROM pgpoly.syncs)
            || ' q=' || (SELECT count(*) FROM pgpoly.sync_queue)
            || ' dl=' || (SELECT string_agg(key || '/' || op, ',') FROM pgpoly.sync_dead_letters)
            || ' runs=' || (SELECT count(*) FROM pgpoly.runs)
            || ' mv=' || (SELECT string_agg(model_name || '@' || version, ',') FROM pgpoly.model_versions)
            || ' pred=' || (SELECT count(*) FROM pgpoly.predictions)
            || ' ft=' || (SELECT string_agg(c.relname || ' ' || array_to_string(ARRAY(SELECT unnest(t.ftoptions) ORDER BY 1), ' '), ',' ORDER BY c.relname)
                          FROM pg_foreign_table t JOIN pg_class c ON c.oid = t.ftrelid)
            || ' cfg=' || (SELECT cardinality(extconfig) FROM pg_extension WHERE extname = 'pgpoly')""")


def make_copy(old, cport):
    """Database s with syncs on the Redis at cport, delivered, and its
    TEMPLATE copy cp with changes queued (the old cluster, running)."""
    sql(old, "CREATE DATABASE s", db="postgres")
    sql(old, "CREATE EXTENSION pgpoly;" + sh.setup_sql(cport, "upc:")
        + sh.outbox_sql(cport, "ob", "ob:"), db="s")
    sql(old, "INSERT INTO kv SELECT i, 'v' || i, i FROM generate_series(1, 5) i;"
             "INSERT INTO ob VALUES ('a', 'first')", db="s")
    pgtest.check(sql(old, "SELECT pgpoly.sync_wait(NULL, '30 s')", db="s") == "t",
                 "initial delivery of s")
    pid = sh.worker_pid(lambda q: old.psql(q, timeout=10), "s")
    if pid:
        sql(old, "SELECT pg_terminate_backend(%d)" % pid, db="postgres")
        pgtest.check(sh.wait_gone(pid, 30), "the worker did not exit")
    sql(old, "CREATE DATABASE cp TEMPLATE s", db="postgres")
    sql(old, "UPDATE kv SET v = 'copy' WHERE k = 1; INSERT INTO ob VALUES ('a', 'copy')",
        db="cp")


def check_copy(new, cport):
    """The upgraded cluster (running): s delivers, its copy cp is held."""
    # a. s's syncs are s's in the new cluster
    sql(new, "UPDATE kv SET v = 'new' WHERE k = 2", db="s")
    pgtest.check(sql(new, "SELECT pgpoly.sync_wait(NULL, '30 s')", db="s") == "t",
                 "s delivers: %s"
                 % sql(new, "SELECT name, state, last_error FROM pgpoly.sync_status", db="s"))
    pgtest.check(sh.hget(cport, "upc:2", "v") == "new", "s's write is delivered")
    # b. cp is still a copy of s
    sh.check_copy_held(new, "cp", "s", 2)
    pgtest.check(sh.hget(cport, "upc:1", "v") == "v1",
                 "the copy's row reached s's target: %s" % sh.hget(cport, "upc:1", "v"))
    pgtest.check(sh.hget(cport, "ob:a", "v") == "first",
                 "the copy's outbox change reached s's target: %s" % sh.hget(cport, "ob:a", "v"))


def check_new(c, rport, before, applied_before, queued_keys, also=None):
    """The upgraded cluster: carried, then delivers the queue once; then
    also(c), if given, while it runs."""
    c.start()
    pgtest.check(sql(c, "SELECT sum(pending) FROM pgpoly.sync_status") == "2",
                 "the queued changes survived: %s"
                 % sql(c, "SELECT name, pending, state, last_error FROM pgpoly.sync_status"))
    after = snapshot(c)
    pgtest.check(after.split(" ", 1)[1] == before.split(" ", 1)[1],
                 "the upgrade carried everything:\n before %s\n after  %s" % (before, after))
    pgtest.start_redis(port=rport, name="upg-%d" % os.getpid())
    pgtest.check(sql(c, "SELECT pgpoly.sync_wait(NULL, '30 s')") == "t",
                 "the upgraded cluster delivers: %s"
                 % sql(c, "SELECT name, state, last_error FROM pgpoly.sync_status"))
    pgtest.check(sh.hget(rport, "upg:1", "v") == "queued" and sh.hget(rport, "ob:a", "v") == "queued",
                 "the queued changes are delivered")
    pgtest.check(int(sql(c, "SELECT sum(applied) FROM pgpoly.syncs")) == applied_before + queued_keys,
                 "each queued change is delivered once: %s"
                 % sql(c, "SELECT name, applied FROM pgpoly.syncs"))
    # (Redis restarted empty: only the delivered key is there)
    pgtest.check(sql(c, "SELECT string_agg(k || '=' || v, ',') FROM kv_redis") == "1=queued",
                 "kv_redis reads")
    pgtest.check(sql(c, "SELECT n FROM et WHERE _id = 'd1'") == "1", "the Elasticsearch table reads")
    # identities and sequences continue
    pid = sql(c, "SELECT pgpoly.log_prediction('churn', 1, 'e9', '1'::jsonb)")
    pgtest.check(int(pid) > int(sql(c, "SELECT max(prediction_id) FROM pgpoly.predictions "
                                       "WHERE prediction_id <> %s" % pid)),
                 "prediction ids continue: %s" % pid)
    pgtest.check(sql(c, "SELECT pgpoly.register_model_version('churn', 's3://m/2')") == "2",
                 "model versions continue")
    sql(c, "INSERT INTO kv VALUES (21, 'after', 21)")
    pgtest.check(sql(c, "SELECT pgpoly.sync_wait(NULL, '30 s')") == "t" and
                 sh.hget(rport, "upg:21", "v") == "after", "new writes are delivered")
    pgtest.stop_redis(rport)
    if also:
        also(c)
    c.stop()


def test():
    rport = pgtest.start_redis(name="upg-%d" % os.getpid())
    cport = pgtest.start_redis(name="upg-copy-%d" % os.getpid())
    es = es_helper.Standin()
    es.load("docs", 3)
    old = sh.Cluster(preload=True, name="upg-old", conf="pgpoly.sync_max_attempts = 1")
    sql(old, "CREATE DATABASE u", db="postgres")
    sql(old, "CREATE EXTENSION pgpoly;" + sh.setup_sql(rport, "upg:")
        + sh.outbox_sql(rport, "ob", "ob:") + """
        CREATE SERVER es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%s');
        CREATE FOREIGN TABLE et (_id text, n bigint) SERVER es OPTIONS (index 'docs');
        CREATE SERVER vs FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url 'http://127.0.0.1:9');
        CREATE FOREIGN TABLE vt (id text, embedding real[], metadata jsonb)
            SERVER vs OPTIONS (collection 'c1');
        SELECT pgpoly.start_run('exp', 'r1');
        SELECT pgpoly.register_model_version('churn', 's3://m/1');
        SELECT pgpoly.log_prediction('churn', 1, 'e' || i, '1'::jsonb) FROM generate_series(1, 5) i;
        """ % es.url)
    sql(old, "INSERT INTO kv SELECT i, 'v' || i, i FROM generate_series(1, 20) i;"
             "INSERT INTO ob VALUES ('a', 'first')")
    pgtest.check(sql(old, "SELECT pgpoly.sync_wait(NULL, '30 s')") == "t", "initial delivery")
    make_copy(old, cport)
    # a dead letter: Redis rejects an HSET of a string key
    pgtest.redis_cli(rport, "SET", "ob:bad", "string")
    sql(old, "INSERT INTO ob VALUES ('bad', 'x')")
    pgtest.check(pgtest.wait_for(lambda: sql(old, "SELECT count(*) FROM pgpoly.sync_dead_letters")
                                 == "1", timeout=30, interval=0.2), "a dead letter")
    # two changes queued while Redis is down
    pgtest.stop_redis(rport)
    sql(old, "UPDATE kv SET v = 'queued' WHERE k = 1; INSERT INTO ob VALUES ('a', 'queued')")
    pgtest.check(sql(old, "SELECT sum(pending) FROM pgpoly.sync_status") == "2", "queued")
    applied = int(sql(old, "SELECT sum(applied) FROM pgpoly.syncs"))
    before = snapshot(old)

    # 1. --check against the running old cluster
    new1 = fresh("upg-new1")
    upgrade(old, new1, "--check")
    old.stop()

    # 2. copying (PostgreSQL 15's pg_upgrade has no --copy: its default)
    if upgrade(old, new1):
        check_new(new1, rport, before, applied, 2, also=lambda c: check_copy(c, cport))

    # 3. --link
    new2 = fresh("upg-new2")
    if upgrade(old, new2, "--link"):
        check_new(new2, rport, before, applied, 2)


pgtest.main(test)
