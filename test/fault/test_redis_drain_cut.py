#!/usr/bin/env python3
"""A Redis scan's drain cut short, then the cursor read on: differential.

Before an immediate-mode write is sent, an open full scan lists its
remaining keys (drain_scan: the round it sent ahead, then SCAN to its end,
on every primary of a cluster).  Here the drain is cut short: one Redis
(or one cluster primary) is paused (SIGSTOP) after the cursor's first
FETCH, so the write's statement_timeout cancels it; the savepoint is
rolled back, Redis resumed.  The cursor must still read every key once
(none of a SCAN page whose reply came before the cancel may be lost), and
a write made after that must stay out of it, as on a native twin: the
scan stays listed for the next write.
"""

import signal
import time

import pgtest
import redis_cluster

check = pgtest.check
NKEYS = 3000

SETUP = """
CREATE SERVER rs FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (%s, timeout_ms '20000');
CREATE FOREIGN TABLE t (key text OPTIONS (key 'true'), n int) SERVER rs
  OPTIONS (key_prefix 'dc:', fetch_size '50');
CREATE FOREIGN TABLE w (key text OPTIONS (key 'true'), n int) SERVER rs
  OPTIONS (key_prefix 'dc:', write_mode 'immediate');
CREATE TABLE got (key text);
CREATE FUNCTION fetch_rest(cur refcursor) RETURNS void LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
  LOOP FETCH cur INTO r; EXIT WHEN NOT FOUND; INSERT INTO got VALUES (r.key); END LOOP;
END $$;
INSERT INTO w SELECT 'k' || g, g FROM generate_series(1, %d) g;
"""


def cut_drain(what, options, pause, resume):
    """The scenario on a server of options; pause()/resume() one Redis."""
    db = pgtest.create_db("pgpoly_drain_cut")
    r = pgtest.psql(SETUP % (options, NKEYS), db=db)
    if not check(r.rc == 0, "%s: setup failed: %s" % (what, r.err)):
        return
    s = pgtest.Session(db)
    r = s.run("BEGIN; DECLARE c CURSOR FOR SELECT key FROM t; FETCH 10 FROM c;")
    check(r.rc == 0, "%s: cursor: %s" % (what, r.err))
    time.sleep(0.3)             # the round sent ahead is answered
    pause()
    r = s.run("SAVEPOINT s; SET LOCAL statement_timeout = '700ms'; "
              "INSERT INTO w VALUES ('cut', 0);", timeout=20)
    resume()
    check(r.rc == 1 and r.sqlstate == "57014",
          "%s: the write while Redis is paused: want 57014, got rc=%s "
          "sqlstate=%s %s" % (what, r.rc, r.sqlstate, r.err.strip()[:300]))
    r = s.run("ROLLBACK TO s; INSERT INTO w VALUES ('after', 0); "
              "SELECT fetch_rest('c');", timeout=60)
    check(r.rc == 0, "%s: the rest of the cursor: %s" % (what, r.err))
    out = s.value("SELECT format('%s rows, %s keys, %s written after', "
                  "count(*) + 10, count(DISTINCT key) + 10, "
                  "count(*) FILTER (WHERE key IN ('cut', 'after'))) FROM got;")
    want = "%d rows, %d keys, 0 written after" % (NKEYS, NKEYS)
    check(out == want, "%s: the cursor read %s; want %s (as a native "
          "table's cursor)" % (what, out, want))
    s.run("ROLLBACK;")
    s.close()


def test():
    mark = pgtest.pg_log_mark()
    port = pgtest.start_redis()
    cut_drain("one Redis", "host '127.0.0.1', port '%d'" % port,
              lambda: pgtest.kill_redis(port, signal.SIGSTOP),
              lambda: pgtest.kill_redis(port, signal.SIGCONT))
    cl = redis_cluster.Cluster(primaries=3, replicas=0)
    try:
        last = cl.primaries()[-1]
        cut_drain("cluster", "nodes '127.0.0.1:%d'" % cl.primaries()[0],
                  lambda: cl.servers.kill(last, signal.SIGSTOP),
                  lambda: cl.servers.kill(last, signal.SIGCONT))
    finally:
        cl.stop()
    pgtest.check_pg_log(mark)


pgtest.main(test)
