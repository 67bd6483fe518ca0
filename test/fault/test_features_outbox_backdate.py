"""Feature store, outbox: an UPDATE of _event_time composed with a put_features.

A serving table in write_mode 'outbox' is delivered newest-wins: an upsert
(put_features) reaches Redis only if its event time is not older than the
stored one, a direct UPDATE of the serving table always.  The worker
composed an UPDATE that set _event_time onto the upsert before it in the
same batch, and the composed upsert then compared the UPDATE's event time:
one older than the stored value dropped both writes (Redis kept the value
before them), while delivered in two batches the upsert arrives and the
UPDATE then sets its columns.  Likewise an UPDATE composed with a late
upsert (older than the stored value), before or after it, was dropped
with it.  Composition
must not change the result.

The worker is stopped (SIGSTOP) while the two transactions commit, so that
one batch reads both, then continued; the same writes on another entity,
with the worker delivering each before the next, give the expected result.
The same for changes parked behind a rejected one: on a private Redis whose
ACL user may read but not write, the put_features is rejected (NOPERM) and
isolated, the UPDATE (which reads the entity) is parked behind it; once the
user may write again, both arrive as if delivered one by one.
"""

import os
import signal

import pgtest
import sync_helper as sh

PUT = ("SELECT pgpoly.put_features('fv', '%s', '{\"clicks\": %d}', "
       "event_time => '2026-01-01 00:00:%02d+00');")
BACKDATE = ("UPDATE pgpoly.fv_serving SET _event_time = '2026-01-01 00:00:05+00', "
            "clicks = 9 WHERE user_id = '%s';")


def sql(db, text):
    r = pgtest.psql(text, db=db, timeout=60)
    pgtest.check(r.rc == 0, "SQL failed: %s\n%s" % (text.strip()[:300], r.err))
    return r.out.strip()


def online(db, entity):
    return sql(db, "SELECT pgpoly.sync_wait(NULL, '30 s'); SELECT clicks || ' ' || _event_time "
                   "FROM pgpoly.fv_serving WHERE user_id = '%s';" % entity).split("\n")


def acl(port, *rules):
    rc, out, err = pgtest.redis_cli(port, "ACL", "SETUSER", "fvw", *rules)
    pgtest.check(rc == 0 and out == "OK", "ACL SETUSER %s: %s %s" % (rules, out, err))


def parked(db, want):
    """The two writes parked behind the rejected put_features."""
    port = pgtest.start_redis()
    acl(port, "on", ">pw", "~*", "+@all")
    sql(db, """
CREATE SERVER ra FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (host '127.0.0.1', port '%d');
CREATE USER MAPPING FOR CURRENT_USER SERVER ra OPTIONS (user 'fvw', password 'pw');
CREATE FOREIGN TABLE fa (user_id text OPTIONS (key 'true'), clicks int)
  SERVER ra OPTIONS (key_prefix 'fa:', write_mode 'outbox');
SELECT pgpoly.create_feature_view('fa', 'user_id', 'fa');
""" % port + PUT.replace("'fv'", "'fa'") % ("p", 1, 10))
    try:
        sql(db, "SELECT pgpoly.sync_wait(NULL, '30 s')")
        acl(port, "-@write")
        sql(db, PUT.replace("'fv'", "'fa'") % ("p", 2, 20))
        pgtest.check(pgtest.wait_for(lambda: sql(
            db, "SELECT count(*) FROM pgpoly.sync_queue WHERE isolated") == "1", timeout=30),
            "the rejected put_features was never isolated")
        sql(db, BACKDATE.replace("fv_serving", "fa_serving") % "p")
        pgtest.check(pgtest.wait_for(lambda: sql(
            db, "SELECT count(*) FILTER (WHERE NOT isolated) FROM pgpoly.sync_queue") == "0",
            timeout=30), "the UPDATE was never parked")
        acl(port, "+@write")
        got = sql(db, "SELECT pgpoly.sync_wait(NULL, '30 s'); SELECT clicks || ' ' || "
                      "_event_time FROM pgpoly.fa_serving WHERE user_id = 'p';").split("\n")
        pgtest.check(got == want, "parked: Redis holds %s, delivered one by one %s"
                     % (got, want))
    finally:
        sql(db, "SELECT pgpoly.drop_sync('pgpoly.fa_serving')")
        pgtest.stop_redis(port)


def test():
    mark = pgtest.pg_log_mark()
    port = int(os.environ["REDIS_PORT"])
    db = pgtest.create_db("pgpoly_fv_backdate")
    sql(db, """
ALTER DATABASE %s SET pgpoly.sync_max_retry_delay = 100;
ALTER DATABASE %s SET pgpoly.sync_max_attempts = 1000;
CREATE SERVER r FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (host '127.0.0.1', port '%d');
CREATE USER MAPPING FOR CURRENT_USER SERVER r;
CREATE FOREIGN TABLE fv (user_id text OPTIONS (key 'true'), clicks int)
  SERVER r OPTIONS (key_prefix 'fv_backdate:', write_mode 'outbox');
SELECT pgpoly.create_feature_view('fv', 'user_id', 'fv');
""" % (db, db, port))
    try:
        # Sequential: each write delivered before the next (the expected result).
        for e in ("seq", "one"):
            sql(db, PUT % (e, 1, 10))
        online(db, "seq")
        sql(db, PUT % ("seq", 2, 20))
        online(db, "seq")
        sql(db, BACKDATE % "seq")
        want = online(db, "seq")
        pgtest.check(want == ["t", "9 2026-01-01 00:00:05+00"], "sequential: %s" % want)

        # One batch: the worker is stopped while both commit.
        pid = sh.worker_pid(lambda q: pgtest.psql(q, db=db), db)
        pgtest.check(pid != 0, "no sync worker runs")
        os.kill(pid, signal.SIGSTOP)
        try:
            sql(db, PUT % ("one", 2, 20))
            sql(db, BACKDATE % "one")
        finally:
            os.kill(pid, signal.SIGCONT)
        got = online(db, "one")
        pgtest.check(got == want, "one batch: Redis holds %s, delivered one by one %s"
                     % (got, want))
        # A late put_features (it loses) and an UPDATE of another column:
        # the UPDATE arrives, as it does delivered alone.
        os.kill(pid, signal.SIGSTOP)
        try:
            sql(db, PUT % ("one", 3, 1))
            sql(db, "UPDATE pgpoly.fv_serving SET clicks = 7 WHERE user_id = 'one';")
        finally:
            os.kill(pid, signal.SIGCONT)
        got = online(db, "one")
        pgtest.check(got == ["t", "7 2026-01-01 00:00:05+00"],
                     "one batch, late put: Redis holds %s" % got)
        # An UPDATE, then a late put_features: the same.
        os.kill(pid, signal.SIGSTOP)
        try:
            sql(db, "UPDATE pgpoly.fv_serving SET clicks = 8 WHERE user_id = 'one';")
            sql(db, PUT % ("one", 4, 2))
        finally:
            os.kill(pid, signal.SIGCONT)
        got = online(db, "one")
        pgtest.check(got == ["t", "8 2026-01-01 00:00:05+00"],
                     "one batch, UPDATE then late put: Redis holds %s" % got)
        parked(db, want)
    finally:
        sql(db, "SELECT count(pgpoly.drop_sync(name)) FROM pgpoly.syncs")
        pgtest.redis_cli(port, "DEL", "fv_backdate:seq", "fv_backdate:one")
    pgtest.check_pg_log(mark)


pgtest.main(test)
