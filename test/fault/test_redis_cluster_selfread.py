#!/usr/bin/env python3
"""Immediate-mode statements that scan the Redis Cluster table they write.

On a real cluster (3 primaries, no replicas), a table with write_mode
'immediate', fetch_size 5 and batch_size 5: the SCAN of every primary
takes many rounds and the statement's writes land while it runs.  SCAN
may return keys added during it, so without reading the whole SCAN first
an INSERT ... SELECT from the table itself read rows it had inserted, and
an UPDATE moving keys met keys it had moved.  Each statement runs on the
cluster table and on a native copy; the rows must be the same:

  * INSERT ... SELECT from the table itself (values read; and key-only,
    a string table whose key alone is read);
  * an UPDATE moving every key, twice;
  * a DELETE whose rows a second node inserts again under new keys.
No crash in the PostgreSQL log.
"""

import pgtest
import redis_cluster

check = pgtest.check

SAME = """SELECT format('%%s rows, native %%s, %%s differ',
  (SELECT count(*) FROM %(f)s), (SELECT count(*) FROM %(n)s),
  (SELECT count(*) FROM ((TABLE %(f)s EXCEPT ALL TABLE %(n)s)
                         UNION ALL (TABLE %(n)s EXCEPT ALL TABLE %(f)s)) d));"""


def same(s, what, f, n):
    """Table f holds the rows of its native copy n."""
    out = s.value(SAME % {"f": f, "n": n})
    rows = s.value("SELECT count(*) FROM %s;" % n)
    check(out == "%s rows, native %s, 0 differ" % (rows, rows), "%s: %s" % (what, out))


def both(s, what, sql, f, n):
    """Run sql (with {t} for the table) on f and on n, then compare them."""
    for t in (f, n):
        r = s.run(sql.format(t=t), timeout=120)
        check(r.rc == 0, "%s on %s: %s" % (what, t, r.err.strip()[:300]))
    same(s, what, f, n)


def test():
    mark = pgtest.pg_log_mark()
    cl = redis_cluster.Cluster(primaries=3, replicas=0)
    try:
        db = pgtest.create_db("pgpoly_cluster_selfread")
        r = pgtest.psql("""
            CREATE SERVER rc FOREIGN DATA WRAPPER pgpoly_redis
              OPTIONS (nodes '127.0.0.1:%d', timeout_ms '5000');
            CREATE FOREIGN TABLE c_hash (key text, v text, n int) SERVER rc
              OPTIONS (key_prefix 'sr:h:', fetch_size '5', batch_size '5',
                       write_mode 'immediate');
            CREATE FOREIGN TABLE c_str (key text, v text) SERVER rc
              OPTIONS (table_type 'string', key_prefix 'sr:s:', fetch_size '5',
                       batch_size '5', write_mode 'immediate');
            CREATE TABLE n_hash (key text, v text, n int);
            CREATE TABLE n_str (key text, v text);
            INSERT INTO n_hash SELECT 'k' || g, 'v' || g, g FROM generate_series(1, 300) g;
            INSERT INTO c_hash SELECT * FROM n_hash;
            INSERT INTO n_str SELECT 'k' || g, 'v' || g FROM generate_series(1, 200) g;
            INSERT INTO c_str SELECT * FROM n_str;
        """ % cl.primaries()[0], db=db)
        if not check(r.rc == 0, "setup failed: %s" % r.err):
            return
        s = pgtest.Session(db)
        same(s, "at rest", "c_hash", "n_hash")
        same(s, "at rest", "c_str", "n_str")
        both(s, "INSERT ... SELECT from itself",
             "INSERT INTO {t} SELECT key || 'x', v, n FROM {t};", "c_hash", "n_hash")
        both(s, "key-only INSERT ... SELECT from itself",
             "INSERT INTO {t} SELECT key || 'x', 'c' FROM {t};", "c_str", "n_str")
        both(s, "UPDATE moving every key",
             "UPDATE {t} SET key = key || 'y';", "c_hash", "n_hash")
        both(s, "UPDATE moving every key again",
             "UPDATE {t} SET key = key || 'z', n = n + 1;", "c_hash", "n_hash")
        both(s, "DELETE, its rows inserted again",
             "WITH d AS (DELETE FROM {t} WHERE n % 2 = 0 RETURNING *) "
             "INSERT INTO {t} SELECT key || 'w', v, n + 1 FROM d;", "c_hash", "n_hash")
        s.close()
    finally:
        cl.stop()
    pgtest.check_pg_log(mark)


pgtest.main(test)
