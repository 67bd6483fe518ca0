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
"""

import os
import pwd
import shutil
import subprocess

import pgtest

check = pgtest.check


def as_pg_owner(cmd):
    """cmd run as the OS user owning the primary's data directory."""
    owner = pwd.getpwuid(os.stat(os.environ["PGPOLY_PGDATA"]).st_uid).pw_name
    if os.geteuid() == 0 and owner != "root":
        return ["runuser", "-u", owner, "--"] + cmd
    return cmd


def start_standby():
    """Base-backup the primary, start it as a hot standby; return (port, dir)."""
    d = os.path.join(pgtest.work_dir(), "standby-%d" % os.getpid())
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

    port, data = start_standby()
    try:
        env = {"PGPORT": str(port)}
        ok = pgtest.wait_for(
            lambda: pgtest.psql("SELECT count(*) FROM pgpoly.feature_views", db=db,
                                env=env).out.strip() == "1",
            timeout=30, what="the standby to replay the feature view")
        check(ok, "the standby has the feature view")
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
    pgtest.check_pg_log(mark)


pgtest.main(test)
