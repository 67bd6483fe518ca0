#!/usr/bin/env python3
"""get_online_features on a hot standby: served, never written.

A streaming replica of the harness's PostgreSQL (pg_basebackup -R) shares a
private Redis with the primary.  On the primary a feature view gets u1
(fresh, online) and u2 (fresh, offline only: its Redis key is deleted).  On
the standby:

  * pg_is_in_recovery() is true;
  * get_online_features serves u1 'online' and u2 'offline' with its value,
    without an error (the write-back is skipped: no 25006), and u2 is still
    absent from Redis afterwards;
  * put_features fails as any write does on a standby (25006);
  * the primary, which may write, serves u2 and writes it back.

Every wrapper on the standby, beside the feature store: a Redis table
(transactional, immediate and outbox), an Elasticsearch table (a private stand-in) and a vector table
(the harness's Chroma) are read, k-NN and vector_search included; every
write through them (INSERT, UPDATE, DELETE, SELECT FOR UPDATE, a prepared
INSERT, one inside a DO block, COPY FROM, IMPORT FOREIGN SCHEMA) fails with
25006 and nothing reaches a store.  The sync worker: changes the primary
queued but could not deliver (its Redis down) replay to the standby, which
runs no worker for them; once the standby is promoted (and the old
primary's database gone), sync_wait on it starts a worker that delivers
them.
"""

import os
import pwd
import shutil
import subprocess

import es_helper
import pgtest

check = pgtest.check


def as_pg_owner(cmd):
    """cmd run as the OS user owning the primary's data directory."""
    owner = pwd.getpwuid(os.stat(os.environ["PGPOLY_PGDATA"]).st_uid).pw_name
    if os.geteuid() == 0 and owner != "root":
        return ["runuser", "-u", owner, "--"] + cmd
    return cmd


_standbys = 0


def start_standby():
    """Base-backup the primary, start it as a hot standby; return (port, dir)."""
    global _standbys
    _standbys += 1
    d = os.path.join(pgtest.work_dir(), "standby-%d-%d" % (os.getpid(), _standbys))
    os.makedirs(d)
    shutil.chown(d, user=pwd.getpwuid(os.stat(os.environ["PGPOLY_PGDATA"]).st_uid).pw_name)
    data = os.path.join(d, "data")
    subprocess.run(as_pg_owner(["pg_basebackup", "-h", "127.0.0.1", "-p", os.environ["PGPORT"],
                                "-U", "postgres", "-D", data, "-R", "-X", "stream",
                                "--checkpoint=fast", "--no-sync"]),
                   check=True, capture_output=True, text=True, timeout=60)
    log = os.path.join(d, "standby.log")

    def start(port):
        mark = os.path.getsize(log) if os.path.exists(log) else 0
        r = subprocess.run(as_pg_owner(["pg_ctl", "-D", data, "-l", log,
                                        "-o", "-p %d" % port, "-w", "-t", "60", "start"]),
                           capture_output=True, text=True, timeout=90)
        if r.returncode == 0:
            return True
        with open(log, errors="replace") as f:
            f.seek(mark)
            if "could not bind" not in f.read():
                raise RuntimeError("the standby did not start: %s" % r.stderr)
        return False

    port = pgtest.on_free_port(start)
    with open(os.path.join(data, "postmaster.pid")) as f:
        pgtest.register_pid(int(f.readline()), "standby")
    return port, data


def replayed(db, env, sql, want, what):
    """Wait until sql, run on the standby (env), returns want."""
    return pgtest.wait_for(lambda: pgtest.psql(sql, db=db, env=env).out.strip() == want,
                           timeout=30, what=what)


def standby_replaying(db, sql, want, what):
    """A standby started (start_standby), checked to replay until sql
    returns want on it; (data directory, env to reach it)."""
    port, data = start_standby()
    env = {"PGPORT": str(port)}
    check(replayed(db, env, sql, want, what), what)
    return data, env


def stop_standby(data):
    """Stop the standby at once."""
    subprocess.run(as_pg_owner(["pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"]),
                   capture_output=True, timeout=60)


def test():
    mark = pgtest.pg_log_mark()
    rport = pgtest.start_redis()
    db = pgtest.create_db("pgpoly_fs_standby")
    r = pgtest.psql("""
        CREATE SERVER s FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%d');
        CREATE USER MAPPING FOR CURRENT_USER SERVER s;
        CREATE FOREIGN TABLE stats (user_id text OPTIONS (key 'true'), clicks int)
            SERVER s OPTIONS (key_prefix 'fs:');
        SELECT pgpoly.create_feature_view('stats', 'user_id', 'stats', ttl => '1 day');
        SELECT pgpoly.put_features('stats', 'u1', '{"clicks": 1}', now() - interval '1 hour');
        SELECT pgpoly.put_features('stats', 'u2', '{"clicks": 2}', now() - interval '1 hour');
        DELETE FROM stats WHERE user_id = 'u2';
    """ % rport, db=db)
    check(r.rc == 0, "set-up on the primary: %s" % r.err)
    check(pgtest.redis_cli(rport, "EXISTS", "fs:u2")[1] == "0", "u2 is gone from Redis")

    data, env = standby_replaying(db, "SELECT count(*) FROM pgpoly.feature_views", "1",
                                  "the standby has the feature view")
    try:
        r = pgtest.psql("SELECT pg_is_in_recovery()", db=db, env=env)
        check(r.out.strip() == "t", "the standby is in recovery: %r" % (r.out,))
        r = pgtest.psql("SELECT entity, features, source "
                        "FROM pgpoly.get_online_features('stats', '{u1,u2,u3}')",
                        db=db, env=env, verbose=True)
        check(r.rc == 0, "serving on the standby works: %s" % r.err)
        check(r.out.split("\n")[:3] == ['u1|{"clicks": 1}|online',
                                         'u2|{"clicks": 2}|offline',
                                         'u3||missing'],
              "standby statuses: %r" % (r.out,))
        check(pgtest.redis_cli(rport, "EXISTS", "fs:u2")[1] == "0",
              "the standby wrote nothing back to Redis")
        r = pgtest.psql("SELECT pgpoly.put_features('stats', 'u3', '{\"clicks\": 3}')",
                        db=db, env=env, verbose=True)
        check(r.rc != 0 and r.sqlstate == "25006",
              "put_features on a standby fails with 25006: %s" % r.err)
    finally:
        stop_standby(data)

    r = pgtest.psql("SELECT source FROM pgpoly.get_online_features('stats', '{u2}')", db=db)
    check(r.out.strip() == "offline", "the primary serves u2 from offline: %r" % (r.out,))
    check(pgtest.redis_cli(rport, "EXISTS", "fs:u2")[1] == "1",
          "the primary wrote u2 back to Redis")
    wrappers_and_promotion()
    pgtest.check_pg_log(mark)


# statements that write through a wrapper: each must fail on the standby
STANDBY_WRITES = [
    "INSERT INTO rt VALUES ('b', '2')",
    "INSERT INTO ri VALUES ('b', '2')",
    "INSERT INTO ro VALUES ('b', '2')",
    "UPDATE ri SET v = 'x'",
    "DELETE FROM ri",
    "SELECT * FROM rt FOR UPDATE",
    "INSERT INTO et VALUES ('x', 1)",
    "INSERT INTO eti VALUES ('x', 1)",
    "DELETE FROM eti",
    "INSERT INTO vt VALUES ('v2', '{0,1,0}', '{}')",
    "DELETE FROM vt",
    "PREPARE p AS INSERT INTO ri VALUES ($1, 'p'); EXECUTE p('pp')",
    "DO $$ BEGIN INSERT INTO ri VALUES ('do', '1'); END $$",
    "COPY ri FROM PROGRAM 'echo c,3' (FORMAT csv)",
    "IMPORT FOREIGN SCHEMA x FROM SERVER s2 INTO public",
]


def wrappers_and_promotion():
    """Every wrapper read and refused to write on a standby; the sync
    worker's queue delivered after promotion."""
    rport = pgtest.start_redis()
    qport = pgtest.start_redis()    # the syncs' Redis, down while they queue
    es = es_helper.Standin()
    es.load("docs", 5)
    es.request("POST", "/docs/_refresh")
    db = pgtest.create_db("pgpoly_sb_wrappers")
    r = pgtest.psql("""
        CREATE SERVER s2 FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%d');
        CREATE USER MAPPING FOR CURRENT_USER SERVER s2;
        CREATE FOREIGN TABLE rt (k text OPTIONS (key 'true'), v text) SERVER s2
            OPTIONS (key_prefix 'rt:');
        CREATE FOREIGN TABLE ri (k text OPTIONS (key 'true'), v text) SERVER s2
            OPTIONS (key_prefix 'ri:', write_mode 'immediate');
        CREATE SERVER sq FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%d');
        CREATE USER MAPPING FOR CURRENT_USER SERVER sq;
        CREATE FOREIGN TABLE ro (k text OPTIONS (key 'true'), v text) SERVER sq
            OPTIONS (key_prefix 'ro:', write_mode 'outbox');
        INSERT INTO rt VALUES ('a', '1');
        INSERT INTO ri VALUES ('a', '1');
        CREATE SERVER es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%s');
        CREATE USER MAPPING FOR CURRENT_USER SERVER es;
        CREATE FOREIGN TABLE et (_id text, n bigint) SERVER es OPTIONS (index 'docs');
        CREATE FOREIGN TABLE eti (_id text, n bigint) SERVER es
            OPTIONS (index 'docs', write_mode 'immediate');
        CREATE SERVER vs FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url '%s');
        CREATE USER MAPPING FOR CURRENT_USER SERVER vs;
        CREATE FOREIGN TABLE vt (id text, embedding real[], metadata jsonb) SERVER vs
            OPTIONS (collection 'standby_%d', create_collection 'true', distance 'l2');
        INSERT INTO vt VALUES ('v1', '{1,0,0}', '{}');
        CREATE TABLE src (k text PRIMARY KEY, v text);
        CREATE FOREIGN TABLE rsync (k text OPTIONS (key 'true'), v text) SERVER sq
            OPTIONS (key_prefix 'sy:');
        SELECT pgpoly.create_sync('sy', 'src', 'rsync');
    """ % (rport, qport, es.url, os.environ["CHROMA_URL"], os.getpid()), db=db)
    check(r.rc == 0, "wrappers: set-up on the primary: %s" % r.err)

    def redis_keys():
        return sorted(pgtest.redis_cli(rport, "--scan")[1].split())

    before = redis_keys()
    check(before == ["ri:a", "rt:a"], "wrappers: Redis holds the primary's rows: %r" % before)
    # changes the primary cannot deliver: the syncs' Redis is down
    pgtest.stop_redis(qport)
    r = pgtest.psql("INSERT INTO src VALUES ('q1', 'queued'); INSERT INTO ro VALUES ('o1', 'ob');",
                    db=db)
    check(r.rc == 0, "wrappers: changes queued on the primary: %s" % r.err)

    data, env = standby_replaying(db, "SELECT count(*) FROM pgpoly.sync_queue", "2",
                                  "wrappers: the standby has the two queued changes")
    try:
        for q, want in (("SELECT k, v FROM rt", "a|1"), ("SELECT k, v FROM ri", "a|1"),
                        ("SELECT count(*) FROM et", "5"),
                        ("SELECT id FROM vt", "v1"),
                        ("SELECT id FROM vt ORDER BY embedding <-> '{1,0,0}' LIMIT 1", "v1"),
                        ("SELECT id FROM pgpoly.vector_search('vt', '{1,0,0}', 1)", "v1")):
            r = pgtest.psql(q, db=db, env=env, verbose=True)
            check(r.rc == 0 and r.out.strip() == want,
                  "wrappers: %s on the standby: %r %s" % (q, r.out, r.err))
        for q in STANDBY_WRITES:
            r = pgtest.psql(q, db=db, env=env, verbose=True)
            check(r.rc != 0 and r.sqlstate == "25006",
                  "wrappers: %s on the standby fails with 25006: %s" % (q, r.err))
        for q in ("SELECT pgpoly.sync_retry('sy')", "SELECT pgpoly.drop_sync('sy')",
                  "SELECT pgpoly.create_sync('sy2', 'src', 'rsync')"):
            r = pgtest.psql(q, db=db, env=env, verbose=True)
            fn = q.split("pgpoly.")[1].split("(")[0]
            check(r.rc != 0 and r.sqlstate == "25006" and
                  "cannot execute pgpoly.%s() during recovery" % fn in r.err,
                  "wrappers: %s on the standby says it cannot run during recovery: %s"
                  % (q, r.err))
        check(redis_keys() == before, "wrappers: the standby wrote nothing to Redis: %r"
              % redis_keys())
        check(es.request("GET", "/docs/_count")["count"] == 5,
              "wrappers: the standby wrote nothing to Elasticsearch")
        r = pgtest.psql("SELECT count(*) FROM vt", db=db, verbose=True)
        check(r.out.strip() == "1", "wrappers: the standby wrote nothing to Chroma: %r %s"
              % (r.out, r.err))
        r = pgtest.psql("SELECT pgpoly.sync_wait(NULL, '1 s'); "
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE backend_type = 'pgpoly sync worker'", db=db, env=env)
        check(r.rc == 0 and r.out.split() == ["f", "0"],
              "wrappers: the standby runs no sync worker and does not claim delivery: %r %s"
              % (r.out, r.err))

        # promotion: the standby's own worker delivers what the old primary left
        r = subprocess.run(as_pg_owner(["pg_ctl", "-D", data, "-w", "-t", "60", "promote"]),
                           capture_output=True, text=True, timeout=90)
        check(r.returncode == 0, "wrappers: promote: %s" % r.stderr)
        promoted = replayed(db, env, "SELECT pg_is_in_recovery()", "f", "promotion")
        check(promoted, "wrappers: the standby was promoted")
        # the old primary's worker must not deliver them instead
        r = pgtest.psql("DROP DATABASE %s WITH (FORCE)" % db, db="postgres")
        check(r.rc == 0, "wrappers: drop the old primary's database: %s" % r.err)
        pgtest.start_redis(port=qport)
        r = pgtest.psql("SELECT pgpoly.sync_wait(NULL, '30 s')", db=db, env=env, timeout=90)
        check(r.rc == 0 and r.out.strip() == "t",
              "wrappers: after promotion the changes are delivered: %r %s" % (r.out, r.err))
        check(pgtest.redis_cli(qport, "EXISTS", "sy:q1", "ro:o1")[1] == "2",
              "wrappers: both queued changes reached Redis: %r"
              % pgtest.redis_cli(qport, "--scan")[1])
        r = pgtest.psql("INSERT INTO ri VALUES ('after', '1')", db=db, env=env)
        check(r.rc == 0 and pgtest.redis_cli(rport, "EXISTS", "ri:after")[1] == "1",
              "wrappers: the promoted server writes: %s" % r.err)
    finally:
        stop_standby(data)


pgtest.main(test)
