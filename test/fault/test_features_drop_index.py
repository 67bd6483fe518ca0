#!/usr/bin/env python3
"""materialize() while DROP INDEX CONCURRENTLY drops the offline index.

The walk of the (entity, event_time DESC, created_at DESC) index and the
DISTINCT ON give the same rows; which one runs is decided with the offline
table locked, when the rows are read.  The interleaving is forced with locks,
not timing: session C holds the serving table (an uncommitted ALTER), so
session A's materialize() blocks when its statement locks the serving table;
session B's DROP INDEX CONCURRENTLY then commits the index as invalid and
waits for A (which read the offline table earlier in its transaction).  When C rolls back, A goes on
and must:

  * succeed (not 55000 "cannot be read through an index"),
  * write exactly the newest row per entity (the DISTINCT ON's answer) and
    return that many keys;

and B's DROP finishes once A's transaction ends.  The same again with the
index made invalid before materialize starts (B blocked by a transaction
that holds the table; get_online_features' offline probe then too), and
with no index left at all.
"""

import os

import pgtest

check = pgtest.check
VIEW = "fdi"
INDEX = "pgpoly.fdi_history_entity_time_idx"

SETUP = """
CREATE SERVER fdi FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%(port)s');
CREATE USER MAPPING FOR CURRENT_USER SERVER fdi;
CREATE FOREIGN TABLE fdi_online (user_id text OPTIONS (key 'true'), clicks int)
  SERVER fdi OPTIONS (key_prefix 'fault_fdi_%(pid)d:');
SELECT pgpoly.create_feature_view('fdi', 'user_id', 'fdi_online');
INSERT INTO pgpoly.fdi_history (entity, event_time, clicks)
SELECT 'e' || (i %% 50), timestamptz '2024-01-01' + i * interval '1 minute', i
FROM generate_series(1, 500) i;
"""

# The newest row per entity, as the user's query finds it.
WANT = """
WITH want AS (SELECT DISTINCT ON (entity) entity, clicks FROM pgpoly.fdi_history
              ORDER BY entity, event_time DESC, created_at DESC),
got AS (SELECT user_id, clicks FROM fdi_online)
SELECT count(*) FROM ((TABLE got EXCEPT ALL TABLE want)
                      UNION ALL (TABLE want EXCEPT ALL TABLE got)) d
"""

# Rows get_online_features (nothing online, so all from the offline probe)
# and the user's query differ by; read-only, so nothing is written back.
ONLINE_DIFF = """
BEGIN READ ONLY;
WITH e AS (SELECT 'e' || i AS e FROM generate_series(0, 50) i),
got AS (SELECT g.entity, (g.features->>'clicks')::int AS clicks, g.source
        FROM pgpoly.get_online_features('fdi', ARRAY(SELECT e FROM e)) g),
want AS (SELECT e.e, h.clicks, CASE WHEN h.clicks IS NULL THEN 'missing' ELSE 'offline' END
         FROM e LEFT JOIN LATERAL (SELECT * FROM pgpoly.fdi_history h WHERE h.entity = e.e
                                   ORDER BY h.event_time DESC, h.created_at DESC LIMIT 1) h ON true)
SELECT count(*) FROM ((TABLE got EXCEPT ALL TABLE want)
                      UNION ALL (TABLE want EXCEPT ALL TABLE got)) d;
COMMIT;
"""


def waiting_on_lock(db, pid):
    """Whether backend pid waits for a lock."""
    r = pgtest.psql("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %d" % pid,
                    db=db, timeout=10)
    return r.rc == 0 and r.out.strip() == "Lock"


def index_state(db):
    """indisvalid of the offline index ('t'/'f'), '' once it is gone."""
    r = pgtest.psql("SELECT indisvalid FROM pg_index WHERE indexrelid = "
                    "to_regclass('%s')" % INDEX, db=db, timeout=10)
    return r.out.strip() if r.rc == 0 else "?"


def reset(db):
    """Empty the online store; recreate the index if it is gone."""
    r = pgtest.psql("DELETE FROM fdi_online; CREATE INDEX IF NOT EXISTS fdi_history_entity_time_idx "
                    "ON pgpoly.fdi_history (entity, event_time DESC, created_at DESC);",
                    db=db, timeout=30)
    check(r.rc == 0, "reset: %s" % r.err)


def check_materialized(db, res, label):
    """A's materialize() result res succeeded and wrote the newest rows."""
    check(res.rc == 0, "%s: materialize failed: %s" % (label, res.err))
    if res.rc != 0:
        return
    check(res.out.strip() == "50", "%s: materialize returned %r, not 50 keys"
          % (label, res.out.strip()))
    r = pgtest.psql(WANT, db=db, timeout=30)
    check(r.rc == 0 and r.out.strip() == "0",
          "%s: online differs from the newest offline rows by %r (%s)" % (label, r.out, r.err))


def race_mid_statement(db):
    """The index becomes invalid between A's start and its read."""
    a, b, c = pgtest.Session(db), pgtest.Session(db), pgtest.Session(db)
    a_pid = int(a.value("SELECT pg_backend_pid();"))
    b_pid = int(b.value("SELECT pg_backend_pid();"))
    check(c.run("BEGIN; ALTER FOREIGN TABLE pgpoly.fdi_serving ADD COLUMN fdi_junk int;").rc == 0,
          "C holds the serving table")
    # A has read the offline table in its transaction (so B's DROP waits
    # for it after marking the index invalid), then materializes
    check(a.run("BEGIN; SELECT count(*) FROM pgpoly.fdi_history;").rc == 0, "A reads the table")
    a.send("SELECT pgpoly.materialize('fdi', '-infinity', 'infinity');")
    check(pgtest.wait_for(lambda: waiting_on_lock(db, a_pid), timeout=30),
          "A waits for the serving table")
    b.send("DROP INDEX CONCURRENTLY %s;" % INDEX)
    check(pgtest.wait_for(lambda: index_state(db) == "f" and waiting_on_lock(db, b_pid),
                          timeout=30),
          "B marked the index invalid and waits for A")
    check(c.run("ROLLBACK;").rc == 0, "C rolls back")
    res = a.wait(60)
    check(a.run("COMMIT;").rc == 0, "A commits (its online writes are sent)")
    check_materialized(db, res, "index invalid mid-statement")
    rb = b.wait(60)
    check(rb.rc == 0, "DROP INDEX CONCURRENTLY finishes: %s" % rb.err)
    check(index_state(db) == "", "the index is gone")
    for s in (a, b, c):
        s.close()


def invalid_from_start(db):
    """The index is invalid (DROP waiting for another holder) before A starts."""
    b, h = pgtest.Session(db), pgtest.Session(db)
    b_pid = int(b.value("SELECT pg_backend_pid();"))
    check(h.run("BEGIN; SELECT count(*) FROM pgpoly.fdi_history;").rc == 0, "H holds the table")
    b.send("DROP INDEX CONCURRENTLY %s;" % INDEX)
    check(pgtest.wait_for(lambda: index_state(db) == "f" and waiting_on_lock(db, b_pid),
                          timeout=30),
          "B marked the index invalid and waits for H")
    r = pgtest.psql("SELECT pgpoly.materialize('fdi', '-infinity', 'infinity')", db=db, timeout=60)
    check_materialized(db, r, "index invalid before the call")
    r = pgtest.psql("DELETE FROM fdi_online", db=db, timeout=30)
    r = pgtest.psql(ONLINE_DIFF, db=db, timeout=60)
    check(r.rc == 0 and [l for l in r.out.split() if l.isdigit()] == ["0"],
          "get_online_features with the index invalid differs by %r (%s)" % (r.out, r.err))
    check(h.run("COMMIT;").rc == 0, "H commits")
    rb = b.wait(60)
    check(rb.rc == 0, "DROP INDEX CONCURRENTLY finishes: %s" % rb.err)
    r = pgtest.psql("DELETE FROM fdi_online", db=db, timeout=30)
    r = pgtest.psql("SELECT pgpoly.materialize('fdi', '-infinity', 'infinity')", db=db, timeout=60)
    check_materialized(db, r, "no index")
    for s in (b, h):
        s.close()


def test():
    db = pgtest.create_db("pgpoly_fdi")
    mark = pgtest.pg_log_mark()
    r = pgtest.psql(SETUP % {"port": os.environ["REDIS_PORT"], "pid": os.getpid()},
                    db=db, timeout=60)
    check(r.rc == 0, "setup: %s" % r.err)
    try:
        race_mid_statement(db)
        reset(db)
        invalid_from_start(db)
    finally:
        pgtest.psql("DELETE FROM fdi_online", db=db, timeout=30)
    pgtest.check_pg_log(mark)


pgtest.main(test)
