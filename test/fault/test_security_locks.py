#!/usr/bin/env python3
"""Locks a role without rights takes through pgpoly's internal functions.

PostgreSQL checks a role's rights on a relation before it locks it (LOCK
TABLE, and every statement naming a relation through
RangeVarGetRelidExtended's callbacks): a role may not queue for, or hold, a
lock on a table it may not use, or it could stall the owner's DDL, VACUUM
FULL or retention.  pgpoly's internal functions that take a relation as an
argument are callable by PUBLIC (the public functions that call them run
with the caller's rights), so they must keep the same rule:

  * pgpoly._fv_newest_usable(regclass, text): a role with no right on a
    table held ACCESS SHARE on it until the end of its transaction; an idle
    transaction of that role blocked the owner's ALTER TABLE.  Now 42501
    (permission denied), nothing locked.
  * pgpoly._prediction_insert(regclass, ...): a role that may only read
    pgpoly.predictions held ROW EXCLUSIVE on it (the lock of a writer),
    which blocks CREATE INDEX (SHARE) and retention.  Now nothing is
    locked (NULL: the caller's INSERT raises the privilege error).
  * pgpoly._lock_partitions(regclass, text[]): a role that may INSERT into
    one partitioned table locked, by name, the partitions of any other
    table of that schema before finding they were not the first one's: it
    queued behind the owner's lock (here: until lock_timeout).  Now the
    name is found not to be a partition of the table first (42809), without
    a lock.

Each case runs the intruder in one session and the owner in another, with
a lock_timeout on the side that waits, so a regression fails fast.
"""

import os

import pgtest

check = pgtest.check

INTRUDER = "fault_lock_intruder_%d" % os.getpid()
READER = "fault_lock_reader_%d" % os.getpid()


def setup(db):
    r = pgtest.psql("""
        CREATE ROLE %(i)s NOLOGIN;
        CREATE ROLE %(r)s NOLOGIN;
        GRANT USAGE ON SCHEMA pgpoly TO %(i)s, %(r)s;
        GRANT SELECT ON pgpoly.predictions TO %(r)s;
        CREATE TABLE lock_victim (id int PRIMARY KEY, v text);
        CREATE INDEX ON lock_victim (id, v);
        CREATE TABLE lock_orders (id int, at date) PARTITION BY RANGE (at);
        CREATE TABLE lock_orders_1 PARTITION OF lock_orders
            FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');
        CREATE TABLE lock_inbox (id int, at date) PARTITION BY RANGE (at);
        GRANT INSERT ON lock_inbox TO %(i)s;
        GRANT USAGE ON SCHEMA public TO %(i)s;
        SELECT pgpoly.create_prediction_partitions();
    """ % {"i": INTRUDER, "r": READER}, db=db)
    if r.rc != 0:
        raise RuntimeError("setup failed: %s" % r.err)


def drop_roles(db):
    pgtest.psql("""
        DROP OWNED BY %(i)s, %(r)s;
        DROP ROLE IF EXISTS %(i)s;
        DROP ROLE IF EXISTS %(r)s;
    """ % {"i": INTRUDER, "r": READER}, db=db)


def held_lock_blocks_owner(db, role, call, ddl, what):
    """role runs call in an open transaction; then the owner's ddl (with a
    lock_timeout) must not be blocked by it.  Returns the call's Result."""
    intruder = pgtest.Session(db)
    owner = pgtest.Session(db)
    intruder.value("SET ROLE %s;" % role)
    intruder.value("BEGIN;")
    res = intruder.run(call)
    r = owner.run("SET lock_timeout = '2s'; %s" % ddl)
    check(r.rc == 0,
          "%s: the owner's %s is not blocked by the intruder's open "
          "transaction (got rc=%d %s)" % (what, ddl, r.rc, r.err.strip()[:300]))
    intruder.run("ROLLBACK;")
    intruder.close()
    owner.close()
    return res


def test():
    db = pgtest.create_db()
    setup(db)
    try:
        # 1. _fv_newest_usable on a table the intruder has no right on
        res = held_lock_blocks_owner(
            db, INTRUDER,
            "SELECT pgpoly._fv_newest_usable('public.lock_victim', 'id');",
            "ALTER TABLE lock_victim ADD COLUMN w int;",
            "_fv_newest_usable")
        check(res.rc == 1 and "42501" in res.err
              and 'permission denied for table lock_victim' in res.err,
              "_fv_newest_usable without SELECT: 42501 permission denied "
              "(got rc=%d %s)" % (res.rc, res.err.strip()[:300]))

        # 2. _prediction_insert by a role that may only read the log
        res = held_lock_blocks_owner(
            db, READER,
            "SELECT pgpoly._prediction_insert('pgpoly.predictions', '[]', "
            "'{}', '{}', '{}', '{}') IS NULL AS nothing;",
            "CREATE INDEX lock_pred_idx ON pgpoly.predictions (entity); "
            "DROP INDEX pgpoly.lock_pred_idx;",
            "_prediction_insert")
        check(res.rc == 0 and res.out.strip() == "t",
              "_prediction_insert without INSERT: NULL, nothing inserted "
              "(got rc=%d %s %s)" % (res.rc, res.out, res.err.strip()[:300]))

        # 3. _lock_partitions naming another table's partition
        owner = pgtest.Session(db)
        intruder = pgtest.Session(db)
        owner.value("BEGIN;")
        owner.value("LOCK TABLE lock_orders_1 IN ACCESS EXCLUSIVE MODE;")
        intruder.value("SET ROLE %s;" % INTRUDER)
        intruder.value("SET lock_timeout = '2s';")
        res = intruder.run("SELECT pgpoly._lock_partitions('public.lock_inbox', "
                           "ARRAY['lock_orders_1']);")
        check(res.rc == 1 and "42809" in res.err
              and "is not a partition of" in res.err,
              "_lock_partitions: another table's partition is refused "
              "(42809) without waiting for its lock (got rc=%d %s)"
              % (res.rc, res.err.strip()[:300]))
        # its own table's partitions still lock (as its INSERT would)
        owner.value("ROLLBACK;")
        owner.value("CREATE TABLE lock_inbox_1 PARTITION OF lock_inbox "
                    "FOR VALUES FROM ('2020-01-01') TO ('2021-01-01');")
        intruder.value("BEGIN;")
        out = intruder.value(
            "SELECT coalesce(pgpoly._lock_partitions('public.lock_inbox', "
            "ARRAY['lock_inbox_1', 'lock_inbox_2'])::text, 'none'); "
            "SELECT string_agg(relation::regclass::text || ' ' || mode, ', ' "
            "ORDER BY relation::regclass::text) FROM pg_locks "
            "WHERE pid = pg_backend_pid() AND locktype = 'relation' "
            "AND relation::regclass::text LIKE 'lock_inbox%';")
        check(out.split("\n") == ["2", "lock_inbox RowExclusiveLock, "
                                       "lock_inbox_1 RowExclusiveLock"],
              "_lock_partitions on the caller's own table: its partition "
              "locked, the missing name's position (got %r)" % out)
        intruder.run("ROLLBACK;")
        intruder.close()
        owner.close()
    finally:
        drop_roles(db)


pgtest.main(test)
