#!/usr/bin/env python3
"""Memory of a Sentinel connection that asks the sentinels again and again.

A connection behind Sentinel asks the sentinels for the primary before a
statement at most every sentinel_check_ms (default 1 s), and again each
time the primary closed the idle connection (Redis' `timeout` setting, a
restart, CLIENT KILL).  Each ask opened a node for the sentinel whose
reader buffer (64 kB) went into the connection's memory and was never
freed, and each reconnection left the replaced primary's node there too:
a busy backend grew by tens of kB per second, for as long as it lived.
Checked against a real primary, replica and sentinel:

  * sentinel_check_ms 1, 150 key lookups: the memory of the connection
    ("pgpoly redis connection" in pg_backend_memory_contexts) after them is
    what it was after the first 10;
  * sentinel_check_ms 0, the primary's clients killed before each of 40
    statements (each asks the sentinels and connects anew): every
    statement works and the memory stays as it was after the first;
  * a full scan through a cursor, the primary's clients killed between two
    FETCHes: the FETCH fails with 08006 (the SCAN cursor may be another
    Redis process's), never returns part of the keys;
  * no crash in the PostgreSQL log.
"""

import pgtest
import redis_cluster

check = pgtest.check

MEMORY = ("SELECT sum(total_bytes) FROM pg_backend_memory_contexts "
          "WHERE name = 'pgpoly redis connection';")


def kill_clients(port):
    """CLIENT KILL every client of port but redis-cli's own."""
    for c in pgtest.redis_clients(port) or []:
        pgtest.redis_cli(port, "client", "kill", "id", c["id"])


def flat(s, what, n, before_each=None, sql="SELECT value FROM kv WHERE key = '7';"):
    """Run sql n times; the connection's memory after the first tenth must
    be its memory at the end."""
    base = None
    for i in range(n):
        if before_each:
            before_each()
        r = s.run(sql)
        check(r.rc == 0 and r.out.strip() == "v7", "%s: statement %d: %s"
              % (what, i, r.err.strip()))
        if i == n // 10:
            base = int(s.value(MEMORY))
    end = int(s.value(MEMORY))
    check(end == base, "%s: the connection's memory grew from %d to %d bytes "
          "over %d statements" % (what, base, end, n - n // 10))


def test():
    mark = pgtest.pg_log_mark()
    st = redis_cluster.Sentinel()
    try:
        db = pgtest.create_db("pgpoly_sentinel_memory")
        r = pgtest.psql("""
            CREATE SERVER rs_often FOREIGN DATA WRAPPER pgpoly_redis
              OPTIONS (sentinels '127.0.0.1:%(s)d', sentinel_master '%(m)s',
                       sentinel_check_ms '1');
            CREATE SERVER rs_never FOREIGN DATA WRAPPER pgpoly_redis
              OPTIONS (sentinels '127.0.0.1:%(s)d', sentinel_master '%(m)s',
                       sentinel_check_ms '0');
            CREATE USER MAPPING FOR CURRENT_USER SERVER rs_often;
            CREATE USER MAPPING FOR CURRENT_USER SERVER rs_never;
            CREATE FOREIGN TABLE kv (key text, value text) SERVER rs_often
              OPTIONS (table_type 'string', key_prefix 'sm:');
            CREATE FOREIGN TABLE kv_never (key text, value text) SERVER rs_never
              OPTIONS (table_type 'string', key_prefix 'sm:', fetch_size '50');
            INSERT INTO kv SELECT g::text, 'v' || g FROM generate_series(1, 1000) g;
        """ % {"s": st.sentinel, "m": st.master_name}, db=db)
        if not check(r.rc == 0, "setup failed: %s" % r.err):
            return

        s = pgtest.Session(db)
        flat(s, "sentinel_check_ms 1", 150)
        s.close()

        s = pgtest.Session(db)
        flat(s, "primary's clients killed before each statement", 40,
             lambda: kill_clients(st.primary),
             "SELECT value FROM kv_never WHERE key = '7';")

        r = s.run("BEGIN; DECLARE c CURSOR FOR SELECT key FROM kv_never; "
                  "FETCH 300 FROM c;")
        check(r.rc == 0 and len(r.out.split()) == 300, "first FETCH: %s"
              % r.err.strip())
        kill_clients(st.primary)
        r2 = s.run("FETCH ALL FROM c;")
        keys = set(r.out.split() + r2.out.split())
        check((r2.rc == 1 and r2.sqlstate == "08006") or
              (r2.rc == 0 and len(keys) == 1000),
              "a SCAN cursor after the primary closed the connection: want "
              "08006 or all 1000 keys, got rc=%s %s and %d keys: %s"
              % (r2.rc, r2.sqlstate, len(keys), r2.err.strip()))
        s.run("ROLLBACK;")
        s.close()
    finally:
        st.stop()
    pgtest.check_pg_log(mark)


pgtest.main(test)
