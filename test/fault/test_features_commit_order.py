#!/usr/bin/env python3
"""What a COMMIT leaves in Redis and offline when writers of the feature
store and of outbox tables meet.

  * A transaction that put_features (online table in write_mode
    'transactional') and writes an outbox table, whose COMMIT then fails
    while it queues the outbox changes: it waits for the commit-order lock
    of an outbox key that another transaction holds, and lock_timeout (or a
    cancel, a deadlock) ends it.  Nothing of the failed transaction may be
    in Redis: before the fix the Redis writes went out first, so the entity
    was online with no offline row behind it.  The same COMMIT once the
    lock is free succeeds and writes both.
  * Two put_features of one entity at the same event time: online must hold
    the one the offline history calls newest (the later created_at), the
    rule of get_historical_features.  Session B's offline row is made, then
    B is held (a trigger of the user's offline table waits on an advisory
    lock) while A writes the entity and commits; B then goes on.  Before the
    fix B made its offline row before taking the entity's lock, so its
    created_at was older than A's while B, deciding last, won online.  The
    same with an outbox online table, whose writes the sync worker delivers
    in COMMIT order (ties: the later): before the fix its writers took no
    lock, so A committed first and B's older row won.
  * put_features and materialize in a read-only transaction
    (default_transaction_read_only, as on a standby) while another
    transaction holds the entities' locks: 25006 at once, as the write
    itself fails, not a wait for the other writer (55P03 at lock_timeout
    before the fix).
  * get_online_features in a REPEATABLE READ (and a SERIALIZABLE)
    transaction whose snapshot predates a newer put_features of the entity,
    after Redis lost the key (evicted; here DEL): it may serve the older
    offline row its snapshot shows, but must not write it back, or that
    older value is served as online after COMMIT while the history holds a
    newer one (before the fix it was written back; the C path of a text
    key and the PL/pgSQL path of an int key).
  * get_online_features' write-back when an entity the first Redis read
    served online is gone at the second read, made under the locks (its key
    evicted in between; here a row-level security policy of the offline
    table holds the reader after the first read, and the key is DELeted):
    another transaction holds that entity's lock with a newer put.  The
    write-back must not write the entity's older row without its lock:
    before the fix it did, and that older value overwrote the newer one at
    the reader's COMMIT (the C path of a text key, the PL/pgSQL path of an
    int key).
"""

import os

import pgtest

check = pgtest.check
PID = os.getpid()
HOLD_KEY = 4242000 + PID % 1000  # the advisory lock the trigger waits on
FIELD4 = 0x4F42  # keylock.c: the field 4 of pgpoly's key locks

SETUP = """
CREATE SERVER co FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%(port)s');
CREATE USER MAPPING FOR PUBLIC SERVER co OPTIONS (password_required 'false');
CREATE FOREIGN TABLE co_fv (user_id text OPTIONS (key 'true'), clicks int)
  SERVER co OPTIONS (key_prefix 'fault_co_%(pid)d:fv:');
CREATE FOREIGN TABLE co_ob (k text OPTIONS (key 'true'), v text)
  SERVER co OPTIONS (key_prefix 'fault_co_%(pid)d:ob:', write_mode 'outbox');
SELECT pgpoly.create_feature_view('co_fv', 'user_id', 'co_fv');
-- holds a session named 'held' until the advisory lock is free
CREATE FUNCTION co_pause() RETURNS bool LANGUAGE plpgsql AS $$
BEGIN
	IF current_setting('application_name') = 'held' THEN
		PERFORM pg_advisory_xact_lock_shared(%(hold)d);
	END IF;
	RETURN true;
END $$;
-- a user's own offline table, with a trigger that holds the session named
-- 'held' after its row is made
CREATE TABLE co_hist (entity text, event_time timestamptz, created_at timestamptz, clicks int);
CREATE INDEX ON co_hist (entity, event_time DESC, created_at DESC);
CREATE FOREIGN TABLE co_tie (user_id text OPTIONS (key 'true'), clicks int)
  SERVER co OPTIONS (key_prefix 'fault_co_%(pid)d:tie:');
SELECT pgpoly.create_feature_view('co_tie', 'user_id', 'co_tie', offline_table => 'co_hist');
CREATE FOREIGN TABLE co_int (item_id int OPTIONS (key 'true'), clicks int, _event_time timestamptz)
  SERVER co OPTIONS (key_prefix 'fault_co_%(pid)d:int:');
SELECT pgpoly.create_feature_view('co_int', 'item_id', 'co_int');
CREATE ROLE co_reader_%(pid)d;
GRANT USAGE ON SCHEMA pgpoly TO co_reader_%(pid)d;
GRANT SELECT ON pgpoly.feature_views, pgpoly._feature_view_storage TO co_reader_%(pid)d;
CREATE TABLE co_ev_hist (entity text, event_time timestamptz,
                         created_at timestamptz DEFAULT clock_timestamp(), clicks int);
CREATE TABLE co_evi_hist (entity int, event_time timestamptz,
                          created_at timestamptz DEFAULT clock_timestamp(), clicks int);
CREATE FOREIGN TABLE co_ev (user_id text OPTIONS (key 'true'), clicks int)
  SERVER co OPTIONS (key_prefix 'fault_co_%(pid)d:ev:');
CREATE FOREIGN TABLE co_evi (item_id int OPTIONS (key 'true'), clicks int, _event_time timestamptz)
  SERVER co OPTIONS (key_prefix 'fault_co_%(pid)d:evi:');
SELECT pgpoly.create_feature_view('co_ev', 'user_id', 'co_ev', offline_table => 'co_ev_hist');
SELECT pgpoly.create_feature_view('co_evi', 'item_id', 'co_evi', offline_table => 'co_evi_hist');
GRANT SELECT, INSERT, UPDATE ON co_ev, pgpoly.co_ev_serving, co_evi TO co_reader_%(pid)d;
GRANT SELECT ON co_ev_hist, co_evi_hist TO co_reader_%(pid)d;
CREATE INDEX ON co_ev_hist (entity, event_time DESC, created_at DESC);
CREATE INDEX ON co_evi_hist (entity, event_time DESC, created_at DESC);
ALTER TABLE co_ev_hist ENABLE ROW LEVEL SECURITY;
ALTER TABLE co_evi_hist ENABLE ROW LEVEL SECURITY;
CREATE POLICY co_pause ON co_ev_hist USING (co_pause());
CREATE POLICY co_pause ON co_evi_hist USING (co_pause());
CREATE FUNCTION co_hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.co_pause();  -- put_features' search_path has no public
	RETURN NULL;
END $$;
CREATE TRIGGER co_hold AFTER INSERT ON co_hist FOR EACH ROW EXECUTE FUNCTION co_hold();
-- the same with an online table in write_mode 'outbox'
CREATE TABLE co_histo (entity text, event_time timestamptz, created_at timestamptz, clicks int);
CREATE INDEX ON co_histo (entity, event_time DESC, created_at DESC);
CREATE FOREIGN TABLE co_tieo (user_id text OPTIONS (key 'true'), clicks int)
  SERVER co OPTIONS (key_prefix 'fault_co_%(pid)d:tieo:', write_mode 'outbox');
SELECT pgpoly.create_feature_view('co_tieo', 'user_id', 'co_tieo', offline_table => 'co_histo');
CREATE TRIGGER co_hold AFTER INSERT ON co_histo FOR EACH ROW EXECUTE FUNCTION co_hold();
"""


def redis_hget(kind, key, field):
    """A field of a hash of this test in Redis ('' if absent)."""
    rc, out, _ = pgtest.redis_cli(os.environ["REDIS_PORT"], "HGET",
                                  "fault_co_%d:%s:%s" % (PID, kind, key), field)
    return out.strip() if rc == 0 else "?"


def waits_for(db, pid, objsubid):
    """Whether backend pid waits for an advisory lock with field 4 objsubid."""
    r = pgtest.psql("SELECT count(*) FROM pg_locks WHERE pid = %d AND NOT granted "
                    "AND locktype = 'advisory' AND objsubid = %d" % (pid, objsubid),
                    db=db, timeout=10)
    return r.rc == 0 and r.out.strip() == "1"


def idle_in_xact(db, pid):
    """Whether backend pid finished its statement inside a transaction."""
    r = pgtest.psql("SELECT state FROM pg_stat_activity WHERE pid = %d" % pid, db=db, timeout=10)
    return r.rc == 0 and r.out.strip() == "idle in transaction"


def failed_queueing(db):
    """COMMIT fails while queueing outbox changes: nothing reached Redis."""
    holder, writer = pgtest.Session(db), pgtest.Session(db)
    # the outbox key's commit-order lock, held as a committing writer of it would
    check(holder.run("BEGIN; SELECT pgpoly._fv_lock_entities('co_ob', NULL, true);").rc == 0,
          "holder takes the outbox table's key locks")
    r = writer.run("SET lock_timeout = '300ms'; BEGIN; "
                   "SELECT pgpoly.put_features('co_fv', 'q1', '{\"clicks\": 7}', '2024-01-01'); "
                   "INSERT INTO co_ob VALUES ('k1', 'a');")
    check(r.rc == 0, "writer's statements: %s" % r.err.strip()[:300])
    r = writer.run("COMMIT;", timeout=30)
    check(r.rc != 0 and r.sqlstate == "55P03",
          "COMMIT waiting for the outbox key lock ends with lock_timeout: rc=%s %s"
          % (r.rc, r.err.strip()[:300]))
    got = redis_hget("fv", "q1", "clicks")
    check(got == "", "a failed COMMIT wrote clicks %r of entity q1 to Redis" % got)
    r = pgtest.psql("SELECT count(*) FROM pgpoly.co_fv_history WHERE entity = 'q1'", db=db)
    check(r.rc == 0 and r.out.strip() == "0", "offline rows of q1 after the failed COMMIT: %r"
          % r.out.strip())
    check(holder.run("COMMIT;").rc == 0, "holder commits")
    # free now: the same transaction commits and writes both stores
    r = writer.run("BEGIN; SELECT pgpoly.put_features('co_fv', 'q1', '{\"clicks\": 8}', '2024-01-01'); "
                   "INSERT INTO co_ob VALUES ('k1', 'b'); COMMIT;")
    check(r.rc == 0, "the COMMIT without a lock holder: %s" % r.err.strip()[:300])
    check(redis_hget("fv", "q1", "clicks") == "8", "entity q1 online after the COMMIT: %r"
          % redis_hget("fv", "q1", "clicks"))
    holder.close()
    writer.close()


def same_time_ties(db):
    """Equal event times: online holds the row the history calls newest."""
    for view, kind, hist in (("co_tie", "tie", "co_hist"), ("co_tieo", "tieo", "co_histo")):
        ctl, a, b = pgtest.Session(db), pgtest.Session(db), pgtest.Session(db)
        check(ctl.run("SELECT pg_advisory_lock(%d);" % HOLD_KEY).rc == 0, "hold the trigger")
        b_pid = int(b.value("SET application_name = 'held'; SELECT pg_backend_pid();"))
        a_pid = int(a.value("SELECT pg_backend_pid();"))
        b.send("BEGIN; SELECT pgpoly.put_features('%s', 't1', '{\"clicks\": 2}', '2024-03-01');"
               % view)
        check(pgtest.wait_for(lambda: waits_for(db, b_pid, 1), timeout=10),
              "%s: B is held by the trigger of its offline row" % view)
        # A's put: done at once (before the fix), or waiting for B's entity lock
        a.send("BEGIN; SELECT pgpoly.put_features('%s', 't1', '{\"clicks\": 1}', '2024-03-01');"
               % view)
        check(pgtest.wait_for(lambda: waits_for(db, a_pid, FIELD4) or idle_in_xact(db, a_pid),
                              timeout=10),
              "%s: A's put finishes or waits for the entity's lock" % view)
        a_waits = not idle_in_xact(db, a_pid)
        if not a_waits:
            check(a.wait(10).rc == 0 and a.run("COMMIT;").rc == 0, "%s: A commits" % view)
        check(ctl.run("SELECT pg_advisory_unlock(%d);" % HOLD_KEY).rc == 0, "let B go on")
        r = b.wait(30)
        check(r.rc == 0 and b.run("COMMIT;").rc == 0, "%s: B commits: %s" % (view, r.err.strip()[:300]))
        if a_waits:
            check(a.wait(30).rc == 0 and a.run("COMMIT;").rc == 0, "%s: A commits after B" % view)
        if view == "co_tieo":
            r = pgtest.psql("SELECT pgpoly.sync_wait('pgpoly.co_tieo_serving')", db=db, timeout=60)
            check(r.rc == 0 and r.out.strip() == "t", "%s: delivered: %s" % (view, r.err.strip()[:300]))
        r = pgtest.psql("SELECT clicks FROM %s WHERE entity = 't1' "
                        "ORDER BY event_time DESC, created_at DESC LIMIT 1" % hist, db=db)
        got = redis_hget(kind, "t1", "clicks")
        check(r.rc == 0 and got == r.out.strip(),
              "%s: equal event times: Redis holds clicks %r, the newest offline row has %r"
              % (view, got, r.out.strip()))
        for s in (ctl, a, b):
            s.close()


def read_only_writer(db):
    """A writer in a read-only transaction does not wait for entity locks."""
    holder = pgtest.Session(db)
    check(holder.run("BEGIN; SELECT pgpoly.put_features('co_fv', 'ro1', '{\"clicks\": 1}');").rc == 0,
          "holder writes entity ro1")
    for call in ("SELECT pgpoly.put_features('co_fv', 'ro1', '{\"clicks\": 2}');",
                 "SELECT pgpoly.materialize('co_fv');"):
        r = pgtest.psql(call, db=db, timeout=30, verbose=True,
                        env={"PGOPTIONS": "-c default_transaction_read_only=on -c lock_timeout=5s"})
        check(r.rc != 0 and r.sqlstate == "25006" and r.elapsed < 4,
              "%s read-only, entity locked elsewhere: rc=%s after %.1f s: %s"
              % (call, r.rc, r.elapsed, r.err.strip()[:300]))
    check(holder.run("ROLLBACK;").rc == 0, "holder rolls back")
    holder.close()


def snapshot_write_back(db):
    """No write-back from a transaction snapshot that misses a newer row."""
    cases = (("co_fv", "fv", "'rr1'", "REPEATABLE READ"), ("co_int", "int", "'41'", "REPEATABLE READ"),
             ("co_fv", "fv", "'rr2'", "SERIALIZABLE"))
    for view, kind, ent, iso in cases:
        key = ent.strip("'")
        label = "%s, %s, entity %s" % (view, iso, key)
        r = pgtest.psql("SELECT pgpoly.put_features('%s', %s, '{\"clicks\": 5}', '2024-01-05')"
                        % (view, ent), db=db)
        check(r.rc == 0, "%s: first put: %s" % (label, r.err.strip()[:300]))
        reader = pgtest.Session(db)
        check(reader.run("BEGIN ISOLATION LEVEL %s; SELECT count(*) FROM pgpoly.%s_history;"
                         % (iso, view)).rc == 0,
              "%s: the reader's snapshot" % label)
        r = pgtest.psql("SELECT pgpoly.put_features('%s', %s, '{\"clicks\": 10}', '2024-01-10')"
                        % (view, ent), db=db)
        check(r.rc == 0, "%s: newer put: %s" % (label, r.err.strip()[:300]))
        pgtest.redis_cli(os.environ["REDIS_PORT"], "DEL", "fault_co_%d:%s:%s" % (PID, kind, key))
        r = reader.run("SELECT source FROM pgpoly.get_online_features('%s', ARRAY[%s]); COMMIT;"
                       % (view, ent))
        check(r.rc == 0, "%s: the reader: %s" % (label, r.err.strip()[:300]))
        got = redis_hget(kind, key, "clicks")
        check(got in ("", "10"), "%s: after the reader's COMMIT Redis holds clicks %r, "
              "older than the newest offline row (10)" % (label, got))
        reader.close()


def evicted_between_looks(db):
    """A key gone between the reader's two Redis reads is not written back
    while another transaction holds its lock."""
    for view, kind, hist, ents in (("co_ev", "ev", "co_ev_hist", ("'a1'", "'m1'")),
                                   ("co_evi", "evi", "co_evi_hist", ("41", "42"))):
        online, missing = ents
        key = online.strip("'")
        r = pgtest.psql("SELECT pgpoly.put_features('%s', '%s', '{\"clicks\": 5}', '2024-01-05');"
                        "INSERT INTO %s (entity, event_time, clicks) VALUES (%s, '2024-01-05', 1)"
                        % (view, key, hist, missing), db=db)
        check(r.rc == 0, "%s: setup: %s" % (view, r.err.strip()[:300]))
        writer, ctl = pgtest.Session(db), pgtest.Session(db)
        reader = pgtest.Session(db, env={"PGAPPNAME": "held"})
        r = writer.run("BEGIN; SELECT pgpoly.put_features('%s', '%s', '{\"clicks\": 10}', '2024-01-10');"
                       % (view, key))
        check(r.rc == 0, "%s: the writer's newer put: %s" % (view, r.err.strip()[:300]))
        check(ctl.run("SELECT pg_advisory_lock(%d);" % HOLD_KEY).rc == 0, "%s: hold" % view)
        r_pid = int(reader.value("SET ROLE co_reader_%d; SELECT pg_backend_pid();" % PID))
        reader.send("BEGIN; SELECT entity, source FROM pgpoly.get_online_features('%s', "
                    "ARRAY['%s', '%s']);" % (view, missing.strip("'"), key))
        check(pgtest.wait_for(lambda: waits_for(db, r_pid, 1), timeout=10),
              "%s: the reader is held after its first read" % view)
        pgtest.redis_cli(os.environ["REDIS_PORT"], "DEL", "fault_co_%d:%s:%s" % (PID, kind, key))
        check(ctl.run("SELECT pg_advisory_unlock(%d);" % HOLD_KEY).rc == 0, "%s: release" % view)
        r = reader.wait(30)
        check(r.rc == 0, "%s: the reader: %s" % (view, r.err.strip()[:300]))
        check(writer.run("COMMIT;").rc == 0, "%s: the writer commits" % view)
        r = reader.run("COMMIT;")
        check(r.rc == 0, "%s: the reader commits: %s" % (view, r.err.strip()[:300]))
        got = redis_hget(kind, key, "clicks")
        check(got == "10", "%s: Redis holds clicks %r of entity %s, not the newest (10)"
              % (view, got, key))
        for s in (writer, ctl, reader):
            s.close()


def run():
    mark = pgtest.pg_log_mark()
    db = pgtest.create_db("pgpoly_co")
    r = pgtest.psql(SETUP % {"port": os.environ["REDIS_PORT"], "pid": PID, "hold": HOLD_KEY},
                    db=db, timeout=60)
    if not check(r.rc == 0, "setup: %s" % r.err):
        return
    try:
        failed_queueing(db)
        same_time_ties(db)
        read_only_writer(db)
        snapshot_write_back(db)
        evicted_between_looks(db)
    finally:
        pgtest.psql("SELECT pgpoly.drop_sync(name) FROM pgpoly.syncs WHERE name LIKE '%%co_ob' "
                    "OR name LIKE '%%co_tieo_serving';"
                    "DELETE FROM co_fv; DELETE FROM co_tie; DELETE FROM co_int; DELETE FROM co_ev; "
                    "DELETE FROM co_evi; DROP OWNED BY co_reader_%d; DROP ROLE co_reader_%d"
                    % (PID, PID), db=db, timeout=30)
        pgtest.redis_cli(os.environ["REDIS_PORT"], "DEL", "fault_co_%d:ob:k1" % PID)
    pgtest.check_pg_log(mark)


if __name__ == "__main__":
    pgtest.main(run)
