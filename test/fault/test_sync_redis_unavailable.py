"""Sync: a Redis that answers but cannot take writes now is down, not refusing.

A Redis over its maxmemory (noeviction) answers every write "OOM command not
allowed"; a Redis turned into a replica answers "READONLY"; others answer
LOADING, BUSY, MASTERDOWN, MISCONF or NOREPLICAS for a while.  None of these
rejects a change: the same change is taken once the server is back.  The
worker took them as rejections (SQLSTATE HV000), split the batch down to
single keys and, after pgpoly.sync_max_attempts, buried every change in the
dead letters -- for an outbox table, where a later sync_retry() then
overwrites newer writes with the buried ones.

For each condition, on a private Redis, with a source sync and an outbox
table: writes commit while Redis refuses them; the syncs go 'retrying' (the
store is unavailable: retried for as long as it takes) and no change becomes
a dead letter (with sync_max_attempts 2, a rejection would bury them within a
second); once Redis takes writes again, both targets equal what was written.
"""

import pgtest

# (what, redis-cli arguments that make Redis refuse writes, ... that undo it)
CONDITIONS = [
    ("OOM", [("CONFIG", "SET", "maxmemory-policy", "noeviction"),
             ("CONFIG", "SET", "maxmemory", "1")],
     [("CONFIG", "SET", "maxmemory", "0")]),
    ("READONLY", [("REPLICAOF", "127.0.0.1", "1")], [("REPLICAOF", "NO", "ONE")]),
]


def sql(db, text):
    r = pgtest.psql(text, db=db, timeout=60)
    pgtest.check(r.rc == 0, "SQL failed: %s\n%s" % (text.strip()[:300], r.err))
    return r.out.strip()


def redis(port, commands):
    for c in commands:
        rc, out, err = pgtest.redis_cli(port, *c)
        pgtest.check(rc == 0 and "ERR" not in out, "redis-cli %s: %s %s" % (c, out, err))


def settled(db):
    """Whether both syncs are 'retrying' (the store is unavailable) or a
    change became a dead letter (it was taken as rejected)."""
    return sql(db, "SELECT (SELECT count(*) FROM pgpoly.sync_dead_letters) > 0 OR "
                   "(SELECT count(*) FROM pgpoly.sync_status WHERE state = 'retrying') = 2"
               ) == "t"


def run(db, port, what, refuse, undo, i):
    redis(port, refuse)
    try:
        sql(db, "INSERT INTO src VALUES (%d, '%s'), (%d, '%s');"
                "INSERT INTO ob VALUES ('k%d', '%s'), ('k%d', '%s');"
                "UPDATE src SET v = v || '!' WHERE k = %d;"
                % (2 * i, what, 2 * i + 1, what, 2 * i, what, 2 * i + 1, what, 2 * i))
        pgtest.check(pgtest.wait_for(lambda: settled(db), timeout=30),
                     "%s: the syncs never went on retrying: %s" % (what, sql(
                         db, "SELECT name, state, last_error FROM pgpoly.sync_status")))
        pgtest.check(sql(db, "SELECT count(*) FROM pgpoly.sync_dead_letters") == "0",
                     "%s: changes became dead letters: %s" % (what, sql(
                         db, "SELECT name, key, error FROM pgpoly.sync_dead_letters")))
    finally:
        redis(port, undo)
    out = sql(db, "SELECT pgpoly.sync_wait(NULL, '30 s'); "
                  "SELECT count(*) FROM ((SELECT k::text, v FROM src EXCEPT ALL "
                  "SELECT * FROM src_r) UNION ALL (SELECT * FROM src_r EXCEPT ALL "
                  "SELECT k::text, v FROM src)) d; "
                  "SELECT string_agg(k || '=' || v, ',' ORDER BY k) FROM ob_now;")
    want = ",".join("k%d=%s" % (j, w) for j, w in
                    sorted((j, c[0]) for n, c in enumerate(CONDITIONS[:i + 1])
                           for j in (2 * n, 2 * n + 1)))
    pgtest.check(out.split() == ["t", "0", want],
                 "%s: after Redis came back (sync_wait, differing rows, outbox keys): %s, "
                 "want %s" % (what, out.split(), want))
    sql(db, "DELETE FROM pgpoly.sync_dead_letters")


def test():
    mark = pgtest.pg_log_mark()
    port = pgtest.start_redis()
    db = pgtest.create_db("pgpoly_sync_unavail")
    sql(db, """
ALTER DATABASE %(db)s SET pgpoly.sync_max_attempts = 2;
ALTER DATABASE %(db)s SET pgpoly.sync_max_retry_delay = 100;
CREATE SERVER r FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (host '127.0.0.1', port '%(p)d');
CREATE USER MAPPING FOR CURRENT_USER SERVER r;
CREATE TABLE src (k int PRIMARY KEY, v text);
CREATE FOREIGN TABLE src_r (k text OPTIONS (key 'true'), v text)
  SERVER r OPTIONS (key_prefix 'src:');
SELECT pgpoly.create_sync('src', 'src', 'src_r');
CREATE FOREIGN TABLE ob (k text OPTIONS (key 'true'), v text)
  SERVER r OPTIONS (key_prefix 'ob:', write_mode 'outbox');
CREATE FOREIGN TABLE ob_now (k text OPTIONS (key 'true'), v text)
  SERVER r OPTIONS (key_prefix 'ob:');
""" % {"db": db, "p": port})
    try:
        for i, (what, refuse, undo) in enumerate(CONDITIONS):
            run(db, port, what, refuse, undo, i)
    finally:
        sql(db, "SELECT count(pgpoly.drop_sync(name)) FROM pgpoly.syncs")
        pgtest.stop_redis(port)
    pgtest.check_pg_log(mark)


pgtest.main(test)
