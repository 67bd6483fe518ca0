#!/usr/bin/env python3
"""pgpoly_redis through Sentinel (a primary, a replica, one sentinel; loopback).

  * The server names two sentinels, the first unreachable: the primary is
    asked of the first that answers, and pgpoly.connections() shows it.
  * A master name no sentinel knows, sentinels that are all down, and a
    "primary" that ROLE says is a replica fail at connect (class 08) with
    what each sentinel said.
  * The primary turned into a replica behind pgpoly's back (and the
    sentinel told of the new one): the next write fails cleanly on the
    READONLY answer (08006, nothing written), the statement after that asks
    the sentinel again and writes to the new primary.
  * The sentinels name another primary while the old one still accepts
    writes (as during a SENTINEL FAILOVER, until the sentinels demote it):
    with sentinel_check_ms, statements move to the new primary without an
    error and without being told by a failure; the old one gets no more
    writes.  A cursor's scan half read on the old primary fails (08006)
    rather than send the old node's SCAN cursor to the new one.
  * SENTINEL FAILOVER in the middle of a session: at most one statement
    fails (class 08), the next ones read the same data and write to the new
    primary.
  * No crashed backend.
"""

import time

import pgtest
import redis_cluster

check = pgtest.check
call = redis_cluster.call


def value(s, sql):
    r = s.run(sql)
    check(r.rc == 0, "statement failed: %s: %s" % (sql, r.err.strip()))
    return r.out.strip()


def test():
    mark = pgtest.pg_log_mark()
    st = redis_cluster.Sentinel()
    try:
        run(st)
    finally:
        st.stop()
    pgtest.check_pg_log(mark)


def run(st):
    db = pgtest.create_db("pgpoly_sentinel")
    dead = pgtest.free_port()
    r = pgtest.psql("""
        CREATE SERVER rs FOREIGN DATA WRAPPER pgpoly_redis
          OPTIONS (sentinels '127.0.0.1:%(dead)d, 127.0.0.1:%(s)d', sentinel_master 'pgpoly',
                   connect_timeout_ms '1000', timeout_ms '3000', sentinel_check_ms '0');
        CREATE SERVER rs_check FOREIGN DATA WRAPPER pgpoly_redis
          OPTIONS (sentinels '127.0.0.1:%(s)d', sentinel_master 'pgpoly', sentinel_check_ms '100');
        CREATE SERVER rs_unknown FOREIGN DATA WRAPPER pgpoly_redis
          OPTIONS (sentinels '127.0.0.1:%(s)d', sentinel_master 'nobody');
        CREATE SERVER rs_down FOREIGN DATA WRAPPER pgpoly_redis
          OPTIONS (sentinels '127.0.0.1:%(dead)d', sentinel_master 'pgpoly');
        CREATE FOREIGN TABLE kv (key text, value text) SERVER rs
          OPTIONS (table_type 'string', key_prefix 'sn:');
        CREATE FOREIGN TABLE kv_unknown (key text, value text) SERVER rs_unknown
          OPTIONS (table_type 'string', key_prefix 'sn:');
        CREATE FOREIGN TABLE kv_down (key text, value text) SERVER rs_down
          OPTIONS (table_type 'string', key_prefix 'sn:');
        CREATE FOREIGN TABLE kv_check (key text, value text) SERVER rs_check
          OPTIONS (table_type 'string', key_prefix 'sn:', fetch_size '10');
        INSERT INTO kv SELECT 'k' || g, 'v' || g FROM generate_series(1, 100) g;
    """ % {"dead": dead, "s": st.sentinel}, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    s = pgtest.Session(db)
    check(value(s, "SELECT count(*), max(value) FROM kv;") == "100|v99", "initial read")
    check(value(s, "SELECT target FROM pgpoly.connections() WHERE server = 'rs';")
          == "127.0.0.1:%d" % st.primary, "connections() does not show the primary")
    check(call(st.primary, "GET", "sn:k7") == b"v7", "the rows are not on the primary")

    # --- failures at connect -------------------------------------------
    for table, want in (("kv_unknown", 'does not know master "nobody"'),
                        ("kv_down", "127.0.0.1:%d" % dead)):
        r = s.run("SELECT * FROM %s;" % table)
        check(r.rc == 1 and (r.sqlstate or "").startswith("08") and want in r.err
              and "through its sentinels" in r.err,
              "%s: want a class 08 ERROR saying %r, got %s: %s"
              % (table, want, r.sqlstate, r.err.strip()))
    call(st.sentinel, "SENTINEL", "MONITOR", "wrongrole", "127.0.0.1", st.replica, 1)
    r = pgtest.psql("""
        CREATE SERVER rs_replica FOREIGN DATA WRAPPER pgpoly_redis
          OPTIONS (sentinels '127.0.0.1:%d', sentinel_master 'wrongrole',
                   connect_timeout_ms '300');
        CREATE FOREIGN TABLE kv_replica (key text, value text) SERVER rs_replica
          OPTIONS (table_type 'string', key_prefix 'sn:');
        SELECT count(*) FROM kv_replica;""" % st.sentinel, db=db, verbose=True)
    check(r.rc != 0 and r.sqlstate == "08001" and "is not a primary (ROLE: slave)" in r.err,
          "a replica named as primary: %s" % r.err.strip())
    call(st.sentinel, "SENTINEL", "REMOVE", "wrongrole")

    # --- the primary became a replica: READONLY ------------------------
    old, new = st.primary, st.replica
    call(new, "REPLICAOF", "NO", "ONE")
    call(old, "REPLICAOF", "127.0.0.1", new)
    call(st.sentinel, "SENTINEL", "REMOVE", st.master_name)
    call(st.sentinel, "SENTINEL", "MONITOR", st.master_name, "127.0.0.1", new, 1)
    st.primary, st.replica = new, old
    redis_cluster.wait_until(lambda: st.master_addr() == new, 30, "the sentinel's new master")
    r = s.run("INSERT INTO kv VALUES ('ro', 'x');")
    check(r.rc == 1 and r.sqlstate == "08006" and "no longer the primary" in r.err
          and "READONLY" in r.err,
          "a write to the demoted primary: want 08006 on READONLY, got %s: %s"
          % (r.sqlstate, r.err.strip()))
    check(call(new, "EXISTS", "sn:ro") == 0, "the refused write reached the new primary")
    check(value(s, "SELECT count(*), max(value) FROM kv;") == "100|v99",
          "read after READONLY")
    value(s, "INSERT INTO kv VALUES ('after_ro', 'y');")
    check(call(new, "GET", "sn:after_ro") == b"y", "the write after READONLY is not on the new primary")
    check(value(s, "SELECT target FROM pgpoly.connections() WHERE server = 'rs';")
          == "127.0.0.1:%d" % new, "connections() does not show the new primary")

    # --- the sentinels name another primary; the old one is still one ---
    moved_without_failure(s, st, db)

    # --- SENTINEL FAILOVER mid-session ---------------------------------
    want = st.replica
    promoted = st.failover()
    check(promoted == want, "the failover promoted port %d, want %d" % (promoted, want))
    failed = 0
    for i in range(3):
        r = s.run("SELECT count(*), max(value) FROM kv;")
        if r.rc != 0:
            failed += 1
            check(i == 0 and (r.sqlstate or "").startswith("08"),
                  "statement %d after SENTINEL FAILOVER: %s: %s" % (i, r.sqlstate, r.err.strip()))
        else:
            check(r.out.strip() == "101|y", "read after failover: %s" % r.out.strip())
    value(s, "INSERT INTO kv VALUES ('after_failover', 'z');")
    check(call(promoted, "GET", "sn:after_failover") == b"z",
          "the write after SENTINEL FAILOVER is not on the promoted primary")
    check(value(s, "SELECT target FROM pgpoly.connections() WHERE server = 'rs';")
          == "127.0.0.1:%d" % promoted, "connections() after the failover")
    print("statements failed after SENTINEL FAILOVER: %d" % failed)
    s.close()


def moved_without_failure(s, st, db):
    """Two primaries (the old one not demoted yet) and the sentinel naming
    the new one: a server with sentinel_check_ms follows the sentinel before
    any statement fails."""
    check(value(s, "SELECT count(*) FROM kv_check;") == "101", "read through rs_check")
    # A scan half read when the primary moves: its SCAN cursor is the old node's.
    sc = pgtest.Session(db)
    value(sc, "BEGIN; DECLARE c CURSOR FOR SELECT * FROM kv_check;")
    check(len(value(sc, "FETCH 5 FROM c;").splitlines()) == 5, "the cursor's first rows")
    old, new = st.primary, st.replica
    call(new, "REPLICAOF", "NO", "ONE")
    call(st.sentinel, "SENTINEL", "REMOVE", st.master_name)
    call(st.sentinel, "SENTINEL", "MONITOR", st.master_name, "127.0.0.1", new, 1)
    redis_cluster.wait_until(lambda: st.master_addr() == new, 30, "the sentinel's new master")
    check(redis_cluster._text(call(old, "ROLE")[0]) == "master", "the old primary was demoted")
    n = [0]

    def landed():
        n[0] += 1
        value(s, "INSERT INTO kv_check VALUES ('moved%d', 'm');" % n[0])
        return call(new, "EXISTS", "sn:moved%d" % n[0]) == 1

    check(pgtest.wait_for(landed, timeout=30, interval=0.05),
          "writes through rs_check still go to the old primary %d, not to %d, "
          "which the sentinel names" % (old, new))
    check(call(old, "EXISTS", "sn:moved%d" % n[0]) == 0, "the write also reached the old primary")
    # Past sentinel_check_ms since sc last asked: its next SCAN round asks again.
    time.sleep(0.3)
    r = sc.run("FETCH ALL FROM c;")
    check(r.rc == 1 and r.sqlstate == "08006" and "moved from 127.0.0.1:%d" % old in r.err,
          "a scan continued on the new primary with the old one's cursor: %s %s %s"
          % (r.sqlstate, r.out.strip()[:200], r.err.strip()))
    sc.close()
    check(value(s, "SELECT target FROM pgpoly.connections() WHERE server = 'rs_check';")
          == "127.0.0.1:%d" % new, "connections() does not show the primary rs_check moved to")
    value(s, "DELETE FROM kv_check WHERE key LIKE 'moved%';")
    # The old primary rejoins as a replica; rs (sentinel_check_ms 0) still
    # holds it: reconnect, so the next phase starts from the primary.
    call(old, "REPLICAOF", "127.0.0.1", new)
    st.primary, st.replica = new, old
    redis_cluster.wait_until(lambda: "master_link_status:up" in
                             redis_cluster._text(call(old, "INFO", "replication")), 30,
                             "the old primary to sync as a replica")
    value(s, "SELECT pgpoly.disconnect('rs');")
    check(value(s, "SELECT count(*) FROM kv;") == "101", "read through rs after the move")


pgtest.main(test)
