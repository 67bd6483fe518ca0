#!/usr/bin/env python3
"""Newest-wins online under concurrent writers of one entity.

put_features, ingest_features and materialize write an entity online only
if the _event_time Redis holds is not newer; get_online_features writes back
the newest offline row of an entity online does not serve.  Two transactions
writing one entity must decide one after the other: the second one waits
for the first one's lock on the entity (held to COMMIT, whose Redis writes
go out before it is released), then reads what the first one wrote.  The
interleavings are forced with the locks, not timing: session B's call must
be seen waiting for an advisory lock (pg_locks, not granted) while A's
transaction is open.  For each, Redis must end with the newer value, and
online must equal the newest offline row per entity:

  * put_features vs put_features, newer first (before the fix B's older
    value, committed last, won) and older first; with the online table in
    write_mode 'transactional' and 'immediate', a text key and an int key,
    and as a non-superuser writer;
  * ingest_features vs put_features, and put_features vs ingest_features;
    ingest_features vs ingest_features, older and newer second;
  * ingest_features while another session drops the view's offline table:
    it waits, then gives the INSERT's ERROR (42P01), not an internal one;
  * ingest_features of 1000 rows of 400 kB values: the offline append's
    batch does not hold them all (the backend's peak memory grows < 250 MB);
  * materialize vs put_features, and put_features vs materialize;
  * get_online_features' write-back of an entity missing online while a
    put_features of it is uncommitted: the reader does not wait (it serves
    the offline value without writing it back), and the writer's value
    stays online after both COMMIT (the C and the PL/pgSQL path);
  * a savepoint rolled back gives the entity's lock back;
  * an entity lost to a newer online value (nothing written) still
    serializes; a different entity never waits (distinct buckets);
  * the lock needs INSERT on the online table, as its callers: 42501
    without it;
  * a transaction writing 300 entities holds at most 66 key locks (64
    buckets, then the table's lock): another entity's writer waits for it.
"""

import os

import pgtest

check = pgtest.check
FIELD4 = 0x4F42  # keylock.c: the field 4 of pgpoly's key locks
PID = os.getpid()

SETUP = """
CREATE SERVER fc FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%(port)s');
CREATE USER MAPPING FOR PUBLIC SERVER fc OPTIONS (password_required 'false');
CREATE FOREIGN TABLE fc_tx (user_id text OPTIONS (key 'true'), clicks int)
  SERVER fc OPTIONS (key_prefix 'fault_fc_%(pid)d:tx:');
CREATE FOREIGN TABLE fc_im (user_id text OPTIONS (key 'true'), clicks int)
  SERVER fc OPTIONS (key_prefix 'fault_fc_%(pid)d:im:', write_mode 'immediate');
CREATE FOREIGN TABLE fc_int (item_id int OPTIONS (key 'true'), clicks int,
                             _event_time timestamptz)
  SERVER fc OPTIONS (key_prefix 'fault_fc_%(pid)d:int:');
CREATE ROLE fc_writer_%(pid)d;
CREATE ROLE fc_nobody_%(pid)d;
GRANT USAGE ON SCHEMA pgpoly TO fc_nobody_%(pid)d;
GRANT USAGE ON SCHEMA pgpoly TO fc_writer_%(pid)d;
GRANT SELECT ON pgpoly.feature_views, pgpoly._feature_view_storage TO fc_writer_%(pid)d;
GRANT SELECT, INSERT, UPDATE ON fc_tx TO fc_writer_%(pid)d;
SELECT pgpoly.create_feature_view('fc_tx', 'user_id', 'fc_tx');
SELECT pgpoly.create_feature_view('fc_im', 'user_id', 'fc_im');
SELECT pgpoly.create_feature_view('fc_int', 'item_id', 'fc_int');
GRANT SELECT, INSERT ON pgpoly.fc_tx_history TO fc_writer_%(pid)d;
"""

PREFIX = {"fc_tx": "tx", "fc_im": "im", "fc_int": "int"}


def redis_clicks(view, entity):
    """clicks of entity in Redis ('' if absent)."""
    rc, out, _ = pgtest.redis_cli(os.environ["REDIS_PORT"], "HGET",
                                  "fault_fc_%d:%s:%s" % (PID, PREFIX[view], entity), "clicks")
    return out.strip() if rc == 0 else "?"


def put(view, entity, clicks, day):
    """put_features of view for entity, clicks at 2024-01-<day>."""
    return ("SELECT pgpoly.put_features('%s', '%s', '{\"clicks\": %d}', "
            "'2024-01-%02d 00:00+00');" % (view, entity, clicks, day))


def waits_for_key_lock(db, pid):
    """Whether backend pid waits for one of pgpoly's key locks."""
    r = pgtest.psql("SELECT count(*) FROM pg_locks WHERE pid = %d AND NOT granted "
                    "AND locktype = 'advisory' AND objsubid = %d" % (pid, FIELD4),
                    db=db, timeout=10)
    return r.rc == 0 and r.out.strip() == "1"


def same_as_offline(db, view, entity_col, label):
    """Online equals the newest offline row of every entity of view."""
    r = pgtest.psql("""
WITH want AS (SELECT DISTINCT ON (entity) entity::text AS e, clicks FROM pgpoly.%(v)s_history
              ORDER BY entity, event_time DESC, created_at DESC),
got AS (SELECT %(k)s::text AS e, clicks FROM %(v)s)
SELECT count(*) FROM ((TABLE got EXCEPT ALL TABLE want)
                      UNION ALL (TABLE want EXCEPT ALL TABLE got)) d""" % {"v": view, "k": entity_col},
                    db=db, timeout=30)
    check(r.rc == 0 and r.out.strip() == "0",
          "%s: online differs from the newest offline rows of %s by %r (%s)"
          % (label, view, r.out.strip(), r.err.strip()[:300]))


def race(db, label, first, second, view, entity, want, blocks=True, role=None):
    """A runs first in an open transaction, B runs second: B waits for A's
    lock (if blocks) until A commits; then B commits.  Redis must hold
    clicks want for entity."""
    a, b = pgtest.Session(db), pgtest.Session(db)
    if role:
        for s in (a, b):
            check(s.run("SET ROLE %s;" % role).rc == 0, "%s: SET ROLE" % label)
    b_pid = int(b.value("SELECT pg_backend_pid();"))
    r = a.run("BEGIN; " + first)
    check(r.rc == 0, "%s: A's call failed: %s" % (label, r.err.strip()[:300]))
    b.send("BEGIN; " + second)
    if blocks:
        check(pgtest.wait_for(lambda: waits_for_key_lock(db, b_pid), timeout=10),
              "%s: B does not wait for A's lock on the entity" % label)
    else:
        r = b.wait(30)
        check(r.rc == 0, "%s: B's call failed: %s" % (label, r.err.strip()[:300]))
    check(a.run("COMMIT;").rc == 0, "%s: A commits" % label)
    if blocks:
        r = b.wait(30)
        check(r.rc == 0, "%s: B's call failed: %s" % (label, r.err.strip()[:300]))
    r = b.run("COMMIT;")
    check(r.rc == 0, "%s: B commits: %s" % (label, r.err.strip()[:300]))
    got = redis_clicks(view, entity)
    check(got == str(want), "%s: Redis holds clicks %r, not the newer %r" % (label, got, want))
    a.close()
    b.close()


def put_vs_put(db):
    """Two put_features of one entity, both orders, both write modes."""
    for view in ("fc_tx", "fc_im"):
        race(db, "%s newer first" % view, put(view, "e1", 2, 2), put(view, "e1", 1, 1),
             view, "e1", 2)
        race(db, "%s older first" % view, put(view, "e2", 1, 1), put(view, "e2", 2, 2),
             view, "e2", 2)
        same_as_offline(db, view, "user_id", "put vs put")
    race(db, "int key newer first", put("fc_int", "7", 2, 2), put("fc_int", "007", 1, 1),
         "fc_int", "7", 2)
    race(db, "non-superuser newer first", put("fc_tx", "u1", 2, 2), put("fc_tx", "u1", 1, 1),
         "fc_tx", "u1", 2, role="fc_writer_%d" % PID)
    # a loser (Redis holds a newer value: nothing written) still orders
    race(db, "loser first", put("fc_tx", "e1", 0, 1), put("fc_tx", "e1", 3, 3),
         "fc_tx", "e1", 3)
    # another entity does not wait ("e1" and "e3" are in distinct buckets)
    race(db, "other entity", put("fc_tx", "e1", 4, 4), put("fc_tx", "e3", 1, 1),
         "fc_tx", "e1", 4, blocks=False)
    # a savepoint rolled back gives the lock back
    race(db, "savepoint", "SAVEPOINT s; %s ROLLBACK TO SAVEPOINT s;" % put("fc_tx", "e3", 9, 9),
         put("fc_tx", "e3", 2, 2), "fc_tx", "e3", 2, blocks=False)
    same_as_offline(db, "fc_int", "item_id", "int key")


def ingest(view, entity, clicks, when):
    """ingest_features of one row, clicks at when."""
    return ("SELECT pgpoly.ingest_features('%s', $$SELECT '%s' AS user_id, "
            "timestamptz '%s 00:00+00' AS event_time, %d AS clicks$$);"
            % (view, entity, when, clicks))


def bulk_vs_put(db):
    """ingest_features and materialize against put_features, both orders."""
    race(db, "ingest then older put", ingest("fc_tx", "i1", 2, "2024-02-02"),
         put("fc_tx", "i1", 1, 20), "fc_tx", "i1", 2)
    race(db, "put then older ingest", put("fc_tx", "i2", 2, 25),
         ingest("fc_tx", "i2", 1, "2023-12-01"), "fc_tx", "i2", 2)
    same_as_offline(db, "fc_tx", "user_id", "ingest vs put")
    # two ingest_features (each appending offline without the executor's
    # INSERT): the second waits for the first, both rows stay offline
    race(db, "ingest then older ingest", ingest("fc_tx", "i3", 2, "2024-02-02"),
         ingest("fc_tx", "i3", 1, "2024-01-01"), "fc_tx", "i3", 2)
    race(db, "ingest then newer ingest", ingest("fc_tx", "i4", 1, "2024-01-01"),
         ingest("fc_tx", "i4", 2, "2024-02-02"), "fc_tx", "i4", 2)
    r = pgtest.psql("SELECT count(*) FROM pgpoly.fc_tx_history WHERE entity IN ('i3', 'i4')",
                    db=db)
    check(r.rc == 0 and r.out.strip() == "4", "ingest vs ingest: offline rows %r" % r.out)
    same_as_offline(db, "fc_tx", "user_id", "ingest vs ingest")

    # m1 is offline only (clicks 1, January 5th): materialize would write it
    check(pgtest.psql("INSERT INTO pgpoly.fc_tx_history (entity, event_time, clicks) "
                      "VALUES ('m1', '2024-01-05 00:00+00', 1), ('m2', '2024-01-05 00:00+00', 1)",
                      db=db).rc == 0, "offline rows")
    race(db, "put then materialize", put("fc_tx", "m1", 2, 6),
         "SELECT pgpoly.materialize('fc_tx');", "fc_tx", "m1", 2)
    race(db, "materialize then older put", "SELECT pgpoly.materialize('fc_tx');",
         put("fc_tx", "m2", 0, 4), "fc_tx", "m2", 1)
    same_as_offline(db, "fc_tx", "user_id", "materialize vs put")


def read_vs_put(db):
    """get_online_features' write-back while a put of the entity is open."""
    for view, ent, key in (("fc_tx", "r1", "'r1'"), ("fc_int", "41", "41")):
        check(pgtest.psql("INSERT INTO pgpoly.%s_history (entity, event_time, clicks) "
                          "VALUES (%s, '2024-01-05 00:00+00', 1)" % (view, key),
                          db=db).rc == 0, "offline row of %s" % ent)
        race(db, "%s: put then get_online_features" % view, put(view, ent, 2, 6),
             "SELECT source FROM pgpoly.get_online_features('%s', ARRAY['%s']);" % (view, ent),
             view, ent, 2, blocks=False)
        # and with no writer, the write-back happens
        check(pgtest.psql("DELETE FROM %s; SELECT pgpoly.get_online_features('%s', ARRAY['%s'])"
                          % (view, view, ent), db=db).rc == 0, "%s: read alone" % view)
        check(redis_clicks(view, ent) == "2", "%s: the write-back wrote %r"
              % (view, redis_clicks(view, ent)))


def many_entities(db):
    """300 put_features in one transaction: a bounded number of locks."""
    a, b = pgtest.Session(db), pgtest.Session(db)
    a_pid = int(a.value("SELECT pg_backend_pid();"))
    b_pid = int(b.value("SELECT pg_backend_pid();"))
    r = a.run("BEGIN; SELECT count(pgpoly.put_features('fc_tx', 'many' || i, '{\"clicks\": 1}', "
              "'2024-03-01 00:00+00')) FROM generate_series(1, 300) i;")
    check(r.rc == 0, "300 puts: %s" % r.err.strip()[:300])
    r = pgtest.psql("SELECT count(*) FROM pg_locks WHERE pid = %d AND locktype = 'advisory' "
                    "AND objsubid = %d" % (a_pid, FIELD4), db=db, timeout=10)
    check(r.rc == 0 and 0 < int(r.out.strip() or 0) <= 66,
          "300 puts in one transaction hold %r key locks, not at most 66" % r.out.strip())
    b.send("BEGIN; " + put("fc_tx", "other", 1, 1))
    check(pgtest.wait_for(lambda: waits_for_key_lock(db, b_pid), timeout=10),
          "past 64 buckets the table is locked: another entity's writer waits")
    check(a.run("COMMIT;").rc == 0, "A commits")
    check(b.wait(30).rc == 0 and b.run("COMMIT;").rc == 0, "B goes on and commits")
    same_as_offline(db, "fc_tx", "user_id", "300 puts")
    a.close()
    b.close()


def lock_needs_insert(db):
    """pgpoly._fv_lock_entities as a role without INSERT on the table."""
    r = pgtest.psql("SET ROLE fc_nobody_%d; "
                    "SELECT pgpoly._fv_lock_entities('fc_tx', ARRAY['e1'], true);" % PID,
                    db=db, timeout=10, verbose=True)
    check(r.rc != 0 and r.sqlstate == "42501" and "fc_tx" in r.err,
          "locking without INSERT: rc=%s %s" % (r.rc, r.err.strip()[:300]))


def view_with_offline_table(db, name, feature):
    """A view name over a new online table name (user_id and feature) and a
    new offline table name_off; whether it was made."""
    r = pgtest.psql("CREATE FOREIGN TABLE %(n)s (user_id text OPTIONS (key 'true'), %(f)s) "
                    "SERVER fc OPTIONS (key_prefix 'fault_fc_%(pid)d:%(n)s:'); "
                    "CREATE TABLE %(n)s_off (user_id text, event_time timestamptz, "
                    "created_at timestamptz, %(f)s); "
                    "SELECT pgpoly.create_feature_view('%(n)s', 'user_id', '%(n)s', '%(n)s_off');"
                    % {"n": name, "f": feature, "pid": PID}, db=db, timeout=30)
    return check(r.rc == 0, "%s: setup: %s" % (name, r.err.strip()[:300]))


def ingest_vs_drop(db):
    """ingest_features into a view whose offline table another session is
    dropping: it waits for the DROP's lock, then gives the INSERT's ERROR
    (undefined_table), not an internal one."""
    if not view_with_offline_table(db, "fc_drop", "clicks int"):
        return
    a, b = pgtest.Session(db), pgtest.Session(db)
    b_pid = int(b.value("SELECT pg_backend_pid();"))
    check(a.run("BEGIN; DROP TABLE fc_drop_off;").rc == 0, "ingest vs drop: A drops")
    b.send(ingest("fc_drop", "d1", 1, "2024-01-01"))
    check(pgtest.wait_for(lambda: pgtest.psql(
        "SELECT count(*) FROM pg_locks WHERE pid = %d AND NOT granted "
        "AND locktype = 'relation'" % b_pid, db=db, timeout=10).out.strip() == "1", timeout=10),
        "ingest vs drop: B does not wait for the DROP's lock")
    check(a.run("COMMIT;").rc == 0, "ingest vs drop: A commits")
    r = b.wait(30)
    check(r.rc != 0 and "42P01" in r.err and "fc_drop_off" in r.err,
          "ingest vs drop: not the INSERT's ERROR: rc=%s %s" % (r.rc, r.err.strip()[:300]))
    a.close()
    b.close()
    pgtest.psql("SELECT pgpoly.drop_feature_view('fc_drop'); DELETE FROM fc_drop; "
                "DROP FOREIGN TABLE fc_drop;", db=db, timeout=30)


def ingest_memory(db):
    """ingest_features' offline append without the executor holds a batch of
    rows before it inserts them (_offline_append): of 1000 rows of 400 kB
    values (in memory, not yet compressed or in TOAST), not all at once:
    the backend's peak memory (VmHWM) grows by less than 250 MB (the whole
    batch is 400 MB), and every row arrives whole."""
    if not view_with_offline_table(db, "fc_mem", "big text"):
        return
    s = pgtest.Session(db)
    check(s.value("SELECT pgpoly._offline_direct('fc_mem_off'::regclass, "
                  "'{user_id,event_time,created_at,big}');") == "t",
          "ingest memory: fc_mem_off does not qualify for the direct append")
    pid = int(s.value("SELECT pg_backend_pid();"))
    before = pgtest.proc_status_kb(pid, "VmHWM") or 0
    r = s.run("SELECT pgpoly.ingest_features('fc_mem', $$SELECT 'u1' AS user_id, "
              "timestamptz '2024-01-01' + g * interval '1 second' AS event_time, "
              "repeat(md5(g::text), 12800) AS big FROM generate_series(1, 1000) g$$);",
              timeout=120)
    check(r.rc == 0 and r.out.strip() == "1000",
          "ingest memory: %r %s" % (r.out, r.err.strip()[:300]))
    grew = (pgtest.proc_status_kb(pid, "VmHWM") or 0) - before
    check(grew < 250 * 1024, "ingest memory: the backend's peak memory grew by %d kB" % grew)
    check(s.value("SELECT count(*) FILTER (WHERE length(big) = 409600) FROM fc_mem_off;")
          == "1000", "ingest memory: not all 1000 rows arrived whole")
    s.close()
    pgtest.psql("SELECT pgpoly.drop_feature_view('fc_mem'); DELETE FROM fc_mem; "
                "DROP FOREIGN TABLE fc_mem; DROP TABLE fc_mem_off;", db=db, timeout=30)


def run():
    mark = pgtest.pg_log_mark()
    db = pgtest.create_db("pgpoly_fc")
    r = pgtest.psql(SETUP % {"port": os.environ["REDIS_PORT"], "pid": PID}, db=db, timeout=60)
    if not check(r.rc == 0, "setup: %s" % r.err):
        return
    try:
        put_vs_put(db)
        bulk_vs_put(db)
        many_entities(db)
        lock_needs_insert(db)
        read_vs_put(db)
        ingest_vs_drop(db)
        ingest_memory(db)
    finally:
        pgtest.psql("DELETE FROM fc_tx; DELETE FROM fc_im; DELETE FROM fc_int; "
                    "DROP OWNED BY fc_writer_%d, fc_nobody_%d; DROP ROLE fc_writer_%d, fc_nobody_%d"
                    % (PID, PID, PID, PID),
                    db=db, timeout=30)
    pgtest.check_pg_log(mark)


if __name__ == "__main__":
    pgtest.main(run)
