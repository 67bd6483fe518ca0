#!/usr/bin/env python3
"""pgpoly_redis on a real Redis Cluster (3 primaries + 3 replicas, loopback).

The same foreign tables as on one server, checked against native copies:

  * slots: pgpoly.redis_key_slot() equals CLUSTER KEYSLOT for 3000 keys
    (hash tags, braces in odd places, non-ASCII);
  * every table type (hash with _ttl, string, json, zset, set, list) written
    through the FDW reads back equal to a native copy, full scans and every
    pushdown (key =, IN, = ANY(ARRAY(SELECT)), LIKE 'prefix%', zset score
    ranges); the keys are spread over all three primaries and no node ever
    answered MOVED (pgpoly routed every key itself: errorstat_MOVED = 0);
  * the batched join (inner, left, semi, anti) equals the native join and
    touches every primary in the same round;
  * direct modification (UPDATE SET col = constant, DELETE, keys only;
    UPDATE SET col = an expression of the row's fields, reading them):
    the keys of every primary found, one MULTI/EXEC per slot at COMMIT, the
    same rows as the native copy, also through buffered writes;
  * read-your-writes, ROLLBACK, ROLLBACK TO SAVEPOINT; COMMIT of writes over
    many slots; keys sharing a {hash tag} go in one MULTI/EXEC; a failing
    COMMIT names the key, the keys not written and the nodes written, and
    the other slots' writes are applied; a hash key moved to another slot;
  * pgpoly.connections() has one row per node, EXPLAIN VERBOSE shows the
    spread and the round trips per node; IMPORT FOREIGN SCHEMA and
    get_online_features/materialize on a cluster-backed feature view;
  * a slot migrated by hand (SETSLOT MIGRATING/IMPORTING + MIGRATE) while a
    cursor scan is half read: every row exactly once; lookups and writes of
    keys already moved follow ASK (errorstat_ASK grows), a COMMIT's
    MULTI/EXEC of a new key too (ASKING, then the block); a block whose
    keys the migration split fails at timeout_ms, saying why, and writes
    nothing;
  * slots resharded to a primary added to the cluster (no MOVED tells):
    a cursor scan open across the move and a new scan after it return
    every row once, and skip a key of another type under the prefix as
    SCAN ... TYPE does;
  * CLUSTER FAILOVER in the middle of a session: MOVED followed, no error;
  * a primary killed: statements fail (class 08/HV) or return the right
    rows, never wrong ones, and work again once its replica is promoted;
  * a paused node: statement_timeout cancels at once; no crashed backend.
"""

import re
import signal
import time

import pgtest
import redis_cluster

check = pgtest.check

N = 300  # keys per table


def q(sess, sql, timeout=60):
    """The output of a statement that must succeed."""
    r = sess.run(sql, timeout)
    if r.rc != 0:
        check(False, "statement failed: %s\n%s" % (sql.strip()[:300], r.err.strip()))
        return None
    return r.out.strip()


def errorstat(cl, name):
    """errorstat_<name> count summed over the live nodes."""
    total = 0
    for port in cl.live_ports():
        info = redis_cluster._text(cl.call(port, "INFO", "errorstats"))
        for line in info.splitlines():
            if line.startswith("errorstat_%s:" % name):
                total += int(line.split("count=")[1].split(",")[0])
    return total


def slots_phase(s, cl):
    keys = q(s, r"""SELECT string_agg(k, E'\n') FROM (
        SELECT CASE g % 6
            WHEN 0 THEN 'k' || g
            WHEN 1 THEN 'user:{' || (g % 97) || '}:' || g
            WHEN 2 THEN '{}' || g || '{x}'
            WHEN 3 THEN 'a{' || g || '}b{c}'
            WHEN 4 THEN md5(g::text) || '}{'
            ELSE 'clé-' || g || '{é' || g % 5 || '}' END AS k
        FROM generate_series(1, 3000) g) x;""")
    keys = keys.split("\n")
    got = q(s, "SELECT string_agg(pgpoly.redis_key_slot(k)::text, ',' ORDER BY o) "
               "FROM unnest(string_to_array(%s, E'\\n')) WITH ORDINALITY AS t(k, o);"
            % pg_literal("\n".join(keys)))
    ours = [int(x) for x in got.split(",")]
    theirs = cl.pipeline(cl.primaries()[0], [("CLUSTER", "KEYSLOT", k) for k in keys])
    bad = [(k, a, b) for k, a, b in zip(keys, ours, theirs) if a != b]
    check(len(ours) == 3000 and not bad,
          "redis_key_slot differs from CLUSTER KEYSLOT for %d keys, e.g. %s"
          % (len(bad), bad[:3]))


def pg_literal(text):
    return "'" + text.replace("'", "''") + "'"


TABLES = """
CREATE FOREIGN TABLE c_hash (key text, a int, b text, c float8, _ttl int)
  SERVER rc OPTIONS (key_prefix 'ct:h:', fetch_size '37');
CREATE FOREIGN TABLE c_hash_ttl (key text, a int, _ttl int) SERVER rc2
  OPTIONS (key_prefix 'ct:ht:', ttl_seconds '5000');
CREATE FOREIGN TABLE c_string (key text, value text) SERVER rc
  OPTIONS (table_type 'string', key_prefix 'ct:s:');
CREATE FOREIGN TABLE c_json (key text, a int, b text) SERVER rc
  OPTIONS (table_type 'json', key_prefix 'ct:j:');
CREATE FOREIGN TABLE c_zset (key text, member text, score float8) SERVER rc
  OPTIONS (table_type 'zset', key_prefix 'ct:z:');
CREATE FOREIGN TABLE c_set (key text, member text) SERVER rc
  OPTIONS (table_type 'set', key_prefix 'ct:st:');
CREATE FOREIGN TABLE c_list (key text, idx int, value text) SERVER rc
  OPTIONS (table_type 'list', key_prefix 'ct:l:');
CREATE FOREIGN TABLE c_list_imm (key text, idx int, value text) SERVER rc
  OPTIONS (table_type 'list', key_prefix 'ct:l:', write_mode 'immediate', batch_size '7');

CREATE TABLE n_hash (key text PRIMARY KEY, a int, b text, c float8);
CREATE TABLE n_string (key text PRIMARY KEY, value text);
CREATE TABLE n_json (key text PRIMARY KEY, a int, b text);
CREATE TABLE n_zset (key text, member text, score float8);
CREATE TABLE n_set (key text, member text);
CREATE TABLE n_list (key text, idx int, value text);

INSERT INTO n_hash SELECT 'h' || g, g, 'b' || g, g / 7.0 FROM generate_series(1, %(n)d) g;
INSERT INTO n_string SELECT 's' || g, 'v' || g FROM generate_series(1, %(n)d) g;
INSERT INTO n_json SELECT 'j' || g, g, CASE WHEN g %% 3 = 0 THEN NULL ELSE 'x' || g END
  FROM generate_series(1, %(n)d) g;
INSERT INTO n_zset SELECT 'z' || (g %% 40), 'm' || g, g %% 17 FROM generate_series(1, %(n)d) g;
INSERT INTO n_set SELECT 'st' || (g %% 50), 'm' || g FROM generate_series(1, %(n)d) g;
INSERT INTO n_list SELECT 'l' || (g %% 30), row_number() OVER (PARTITION BY g %% 30 ORDER BY g) - 1,
  'v' || g FROM generate_series(1, %(n)d) g;

INSERT INTO c_hash (key, a, b, c) SELECT * FROM n_hash;
INSERT INTO c_string SELECT * FROM n_string;
INSERT INTO c_json SELECT * FROM n_json;
INSERT INTO c_zset SELECT * FROM n_zset;
INSERT INTO c_set SELECT * FROM n_set;
INSERT INTO c_list (key, value) SELECT key, value FROM n_list ORDER BY key, idx;
INSERT INTO c_hash_ttl SELECT 't' || g, g FROM generate_series(1, 50) g;
-- hashes without the field b (the left joins below fetch it alone)
UPDATE c_hash SET b = NULL WHERE key LIKE 'h2_';
UPDATE n_hash SET b = NULL WHERE key LIKE 'h2_';
"""

# (foreign query, native query): must return the same rows.
SAME = [
    ("SELECT key, a, b, c FROM c_hash", "SELECT * FROM n_hash"),
    ("SELECT * FROM c_string", "SELECT * FROM n_string"),
    ("SELECT * FROM c_json", "SELECT * FROM n_json"),
    ("SELECT * FROM c_zset", "SELECT * FROM n_zset"),
    ("SELECT * FROM c_set", "SELECT * FROM n_set"),
    ("SELECT * FROM c_list", "SELECT * FROM n_list"),
    ("SELECT key, a FROM c_hash WHERE key = 'h17'", "SELECT key, a FROM n_hash WHERE key = 'h17'"),
    ("SELECT key, b FROM c_hash WHERE key IN ('h1', 'h99', 'h250', 'nope')",
     "SELECT key, b FROM n_hash WHERE key IN ('h1', 'h99', 'h250', 'nope')"),
    ("SELECT key, c FROM c_hash WHERE key = ANY(ARRAY(SELECT 'h' || g FROM generate_series(1, 400, 3) g))",
     "SELECT key, c FROM n_hash WHERE key = ANY(ARRAY(SELECT 'h' || g FROM generate_series(1, 400, 3) g))"),
    ("SELECT key, a FROM c_hash WHERE key LIKE 'h1%'", "SELECT key, a FROM n_hash WHERE key LIKE 'h1%'"),
    ("SELECT * FROM c_zset WHERE score BETWEEN 3 AND 5", "SELECT * FROM n_zset WHERE score BETWEEN 3 AND 5"),
    ("SELECT * FROM c_zset WHERE key IN ('z1', 'z7') AND score > 10",
     "SELECT * FROM n_zset WHERE key IN ('z1', 'z7') AND score > 10"),
    ("SELECT * FROM c_set WHERE key = 'st3'", "SELECT * FROM n_set WHERE key = 'st3'"),
    ("SELECT * FROM c_list WHERE key LIKE 'l2%'", "SELECT * FROM n_list WHERE key LIKE 'l2%'"),
    # joins: batched (plan checked below), all four kinds
    ("SELECT r.id, h.a FROM req r JOIN c_hash h ON h.key = r.k",
     "SELECT r.id, h.a FROM req r JOIN n_hash h ON h.key = r.k"),
    ("SELECT r.id, h.b FROM req r LEFT JOIN c_hash h ON h.key = r.k",
     "SELECT r.id, h.b FROM req r LEFT JOIN n_hash h ON h.key = r.k"),
    # the key read by the ON clauses alone: b fetched alone (HMGET), a hash
    # without it null-extended; the key read after the join: whole hashes
    ("SELECT r.id, h.b FROM req r LEFT JOIN c_hash h ON h.key = r.k AND h.key <> 'h17'",
     "SELECT r.id, h.b FROM req r LEFT JOIN n_hash h ON h.key = r.k AND h.key <> 'h17'"),
    ("SELECT r.id, h.key, h.b FROM req r LEFT JOIN c_hash h ON h.key = r.k AND h.key <> 'h17'",
     "SELECT r.id, h.key, h.b FROM req r LEFT JOIN n_hash h ON h.key = r.k AND h.key <> 'h17'"),
    ("SELECT r.id FROM req r WHERE EXISTS (SELECT 1 FROM c_hash h WHERE h.key = r.k)",
     "SELECT r.id FROM req r WHERE EXISTS (SELECT 1 FROM n_hash h WHERE h.key = r.k)"),
    ("SELECT r.id FROM req r WHERE NOT EXISTS (SELECT 1 FROM c_hash h WHERE h.key = r.k)",
     "SELECT r.id FROM req r WHERE NOT EXISTS (SELECT 1 FROM n_hash h WHERE h.key = r.k)"),
    ("SELECT r.k, z.member, z.score FROM req r JOIN c_zset z ON z.key = r.k",
     "SELECT r.k, z.member, z.score FROM req r JOIN n_zset z ON z.key = r.k"),
]


def same(s, fq, nq, what=""):
    """fq and nq return the same multiset of rows."""
    out = q(s, "SELECT count(*) FROM ((%s) EXCEPT ALL (%s)) a;"
               "SELECT count(*) FROM ((%s) EXCEPT ALL (%s)) b;"
               "SELECT count(*) FROM (%s) c;" % (fq, nq, nq, fq, fq))
    if out is None:
        return False
    extra, missing, n = out.split("\n")
    return check(extra == "0" and missing == "0",
                 "%s%s: %s rows, %s not in the native result, %s native rows missing"
                 % (what, fq, n, extra, missing))


def tables_phase(s, cl):
    if q(s, TABLES % {"n": N}) is None:
        return False
    q(s, """CREATE TABLE req AS SELECT g AS id, CASE WHEN g % 5 = 0 THEN 'nope' || g
                                   WHEN g % 7 = 0 THEN 'z' || (g % 40)
                                   ELSE 'h' || (g % 350) END AS k
            FROM generate_series(1, 700) g; ANALYZE req;""")
    for fq, nq in SAME:
        same(s, fq, nq)
    plan = q(s, "EXPLAIN (COSTS OFF) SELECT r.id, h.a FROM req r JOIN c_hash h ON h.key = r.k;")
    check(plan and "Redis Batched Join" in plan, "join plan is not batched: %s" % plan)
    plan = q(s, "EXPLAIN (COSTS OFF) SELECT r.id, h.b FROM req r LEFT JOIN c_hash h "
                "ON h.key = r.k AND h.key <> 'h17';")
    check(plan and "Redis Batched Join" in plan and "HMGET" in plan,
          "left join reading a field is not batched by HMGET: %s" % plan)
    # _ttl, and the TTL table's keys expire
    out = q(s, "SELECT count(*) FILTER (WHERE _ttl = -1) FROM c_hash;"
               "SELECT min(_ttl) > 4000 AND max(_ttl) <= 5000 FROM c_hash_ttl "
               "JOIN (SELECT 't' || g AS key FROM generate_series(1, 50) g) k USING (key);")
    check(out == "%d\nt" % N, "_ttl: %s" % out)
    # keys on all primaries, none routed wrong
    sizes = cl.dbsize()
    total = sum(sizes.values())
    check(len(sizes) == 3 and min(sizes.values()) > total / 6,
          "keys not spread over the three primaries: %s" % sizes)
    check(errorstat(cl, "MOVED") == 0,
          "a node answered MOVED %d times with a stable map" % errorstat(cl, "MOVED"))
    return True


def explain_phase(s, cl):
    primaries = ["127.0.0.1:%d" % p for p in cl.primaries()]
    out = q(s, "SELECT target FROM pgpoly.connections() WHERE server = 'rc' ORDER BY 1;")
    rows = (out or "").split("\n")
    check(sorted(rows) == sorted(primaries),
          "connections() rows %s, want one per primary %s" % (rows, primaries))
    out = q(s, "SELECT count(*), bool_and(requests > 0), bool_and(errors = 0), "
               "count(DISTINCT server) FROM pgpoly.connections() WHERE server = 'rc';")
    check(out == "3|t|t|1", "connections() counters: %s" % out)
    plan = q(s, "EXPLAIN (ANALYZE, VERBOSE, COSTS OFF, TIMING OFF, SUMMARY OFF) "
                "SELECT count(*) FROM c_hash;")
    check(plan and "Redis Cluster: SCAN on every primary at once" in plan and
          all(p in plan for p in primaries) and "Round Trips per Node" in plan,
          "EXPLAIN of a cluster scan does not show its spread: %s" % plan)
    # A full scan reading values, 3000 keys, fetch_size 100: each round
    # fetches keys of every primary (a round's SCAN pages are taken one key
    # of each in turn), not one primary's page while the others idle.
    q(s, "CREATE FOREIGN TABLE c_big (key text, a int) SERVER rc "
         "OPTIONS (key_prefix 'ct:big:', fetch_size '100');"
         "INSERT INTO c_big SELECT 'b' || g, g FROM generate_series(1, 3000) g;")
    plan = q(s, "EXPLAIN (ANALYZE, VERBOSE, COSTS OFF, TIMING OFF, SUMMARY OFF) "
                "SELECT sum(a) FROM c_big;") or ""
    total = re.search(r"Redis Round Trips: (\d+)", plan)
    per = dict(re.findall(r"(127\.0\.0\.1:\d+) (\d+)",
                          plan.split("Round Trips per Node:")[-1]))
    print("note: full scan, %s rounds; per node %s" % (total and total.group(1), per))
    check(total and sorted(per) == sorted(primaries) and
          all(int(n) >= int(total.group(1)) - 1 for n in per.values()),
          "a full scan's rounds do not fetch from every primary: %s" % plan)
    q(s, "DELETE FROM c_big; DROP FOREIGN TABLE c_big;")
    plan = q(s, "EXPLAIN (ANALYZE, VERBOSE, COSTS OFF, TIMING OFF, SUMMARY OFF) "
                "SELECT count(*) FROM req r JOIN c_hash h ON h.key = r.k;")
    # 700 outer rows, fetch_size 37: 19 rounds, each touching every primary
    check(plan and "Redis Round Trips: 19" in plan and
          all("%s 19" % p in plan for p in primaries),
          "batched join is not spread over all nodes per round: %s" % plan)


def xact_phase(s, cl):
    out = q(s, """BEGIN;
        INSERT INTO c_hash (key, a) VALUES ('new1', 1), ('new2', 2);
        UPDATE c_hash SET a = -a WHERE key IN ('h1', 'h2', 'h3');
        DELETE FROM c_hash WHERE key = 'h4';
        SELECT count(*), sum(a) FILTER (WHERE key IN ('h1', 'h2', 'h3', 'new1', 'new2')) FROM c_hash;
        SAVEPOINT sp;
        DELETE FROM c_hash WHERE key LIKE 'h5%';
        SELECT count(*) FROM c_hash;
        ROLLBACK TO SAVEPOINT sp;
        SELECT count(*) FROM c_hash;
        ROLLBACK;
        SELECT count(*), sum(a) FILTER (WHERE key IN ('h1', 'h2', 'h3')) FROM c_hash;""")
    check(out == "%d|-3\n%d\n%d\n%d|6" % (N + 1, N + 1 - 11, N + 1, N),
          "read-your-writes / rollback on the cluster: %r" % out)
    # a COMMIT over many slots
    blocks = cl.call(cl.primaries()[0], "INFO", "commandstats")
    q(s, """BEGIN; UPDATE c_hash SET b = 'u' || a; INSERT INTO c_string
            SELECT 'x' || g, 'y' FROM generate_series(1, 200) g; COMMIT;""")
    q(s, "INSERT INTO n_string SELECT 'x' || g, 'y' FROM generate_series(1, 200) g;"
         "UPDATE n_hash SET b = 'u' || a;")
    same(s, "SELECT key, a, b, c FROM c_hash", "SELECT * FROM n_hash", "after COMMIT: ")
    same(s, "SELECT * FROM c_string", "SELECT * FROM n_string", "after COMMIT: ")
    # keys sharing a hash tag: one MULTI/EXEC
    before = sum(exec_calls(cl, p) for p in cl.primaries())
    q(s, "INSERT INTO c_string SELECT '{tag1}:' || g, 't' FROM generate_series(1, 60) g;")
    after = sum(exec_calls(cl, p) for p in cl.primaries())
    check(after - before == 1, "60 keys with one hash tag took %d EXECs, want 1"
          % (after - before))
    before = after
    slots = q(s, "SELECT count(DISTINCT pgpoly.redis_key_slot('ct:s:notag:' || g)) "
                 "FROM generate_series(1, 60) g;")
    q(s, "INSERT INTO c_string SELECT 'notag:' || g, 't' FROM generate_series(1, 60) g;")
    after = sum(exec_calls(cl, p) for p in cl.primaries())
    check(str(after - before) == slots and int(slots) > 50,
          "60 keys in %s slots took %d EXECs, want one per slot" % (slots, after - before))
    del blocks
    q(s, "DELETE FROM c_string WHERE key LIKE '{tag1}:%' OR key LIKE 'notag:%';")
    # a failing COMMIT: the key, what was not written, which nodes were
    cl.call(cl.owner(cl.keyslot("ct:h:bad")), "SET", "ct:h:bad", "a string")
    r = s.run("""BEGIN; INSERT INTO c_string SELECT 'f' || g, 'w' FROM generate_series(1, 40) g;
                 INSERT INTO c_hash (key, a) VALUES ('bad', 1); COMMIT;""")
    check(r.rc == 1 and 'could not write key "ct:h:bad"' in r.err and "WRONGTYPE" in r.err
          and "hash-slot transactions ran" in r.err and "Not written:" in r.err
          and "127.0.0.1:" in r.err and r.sqlstate == "HV004",
          "failing COMMIT on a cluster: %s" % r.err)
    out = q(s, "SELECT count(*) FROM c_string WHERE key ~ '^f[0-9]+$';"
               "DELETE FROM c_string WHERE key ~ '^f[0-9]+$';")
    check(out == "40", "the other slots' writes of the failed COMMIT: %s of 40 applied" % out)
    cl.call(cl.owner(cl.keyslot("ct:h:bad")), "DEL", "ct:h:bad")
    # a hash key moved to another slot: DEL + full write, unmapped fields stay behind
    owner = cl.owner(cl.keyslot("ct:h:h10"))
    cl.call(owner, "HSET", "ct:h:h10", "unmapped", "1")
    out = q(s, "UPDATE c_hash SET key = 'moved10' WHERE key = 'h10';"
               "SELECT key, a, b FROM c_hash WHERE key IN ('h10', 'moved10');")
    check(out == "UPDATE 1\nmoved10|10|u10" if out and out.startswith("UPDATE") else
          out == "moved10|10|u10", "hash key moved across slots: %r" % out)
    check(cl.call(owner, "EXISTS", "ct:h:h10") == 0, "old key of a moved hash still exists")
    q(s, "UPDATE c_hash SET key = 'h10' WHERE key = 'moved10';")
    # ON CONFLICT DO NOTHING: the conditional scripts are routed by their key
    out = q(s, "INSERT INTO c_hash (key, a) SELECT 'h' || g, -1 FROM generate_series(290, 310) g "
               "ON CONFLICT DO NOTHING;"
               "SELECT count(*), sum(a) FILTER (WHERE a = -1) FROM c_hash WHERE key LIKE 'h3__';"
               "INSERT INTO c_zset VALUES ('z1', 'm41', 99), ('z1', 'new', 1) ON CONFLICT DO NOTHING;"
               "SELECT string_agg(member || '=' || score, ',' ORDER BY member) FROM c_zset "
               "WHERE key = 'z1' AND member IN ('m41', 'new');")
    check(out == "11|-10\nm41=7,new=1", "ON CONFLICT DO NOTHING on the cluster: %r" % out)
    q(s, "DELETE FROM c_hash WHERE a = -1; DELETE FROM c_zset WHERE member = 'new';")
    # immediate mode: batches spread over nodes
    q(s, "INSERT INTO c_list_imm (key, value) SELECT 'imm' || (g % 9), 'v' || g "
         "FROM generate_series(1, 100) g;")
    out = q(s, "SELECT count(*), count(DISTINCT key) FROM c_list WHERE key LIKE 'imm%';")
    check(out == "100|9", "immediate-mode list appends on the cluster: %s" % out)


def direct_phase(s, cl):
    """UPDATE and DELETE that need no row run as direct modifications."""
    plan = q(s, "EXPLAIN (VERBOSE, COSTS OFF) UPDATE c_hash SET c = -1 WHERE key LIKE 'h1%';")
    check(plan and "Foreign Update on public.c_hash" in plan and "keys only" in plan
          and "HSET ct:h:{key} c {c}" in plan,
          "a constant UPDATE on the cluster is not direct: %s" % plan)
    slots = q(s, "SELECT count(DISTINCT pgpoly.redis_key_slot('ct:h:' || key)) "
                 "FROM n_hash WHERE key LIKE 'h1%';")
    before = sum(exec_calls(cl, p) for p in cl.primaries())
    out = q(s, "CREATE FUNCTION rowcount(stmt text) RETURNS bigint LANGUAGE plpgsql AS "
               "$$DECLARE n bigint; BEGIN EXECUTE stmt; GET DIAGNOSTICS n = ROW_COUNT; "
               "RETURN n; END$$;"
               "SELECT rowcount($$UPDATE c_hash SET c = -1 WHERE key LIKE 'h1%'$$);")
    after = sum(exec_calls(cl, p) for p in cl.primaries())
    check(out == "111", "direct UPDATE counted %r rows, want 111" % out)
    check(str(after - before) == slots,
          "direct UPDATE of keys in %s slots took %d EXECs" % (slots, after - before))
    q(s, "UPDATE n_hash SET c = -1 WHERE key LIKE 'h1%';")
    same(s, "SELECT key, a, b, c FROM c_hash", "SELECT * FROM n_hash", "direct UPDATE: ")
    # through the transaction's buffered writes, keys on every node
    q(s, """BEGIN; INSERT INTO c_hash (key, a) VALUES ('dnew', 1);
            DELETE FROM c_hash WHERE key = 'h2';
            UPDATE c_hash SET b = NULL, c = 0.5 WHERE key = ANY ('{h2,h3,h4,dnew,nope}');
            DELETE FROM c_hash WHERE key LIKE 'h29%';
            UPDATE c_string SET value = 'direct' WHERE key LIKE 'x1%'; COMMIT;""")
    q(s, """INSERT INTO n_hash (key, a) VALUES ('dnew', 1); DELETE FROM n_hash WHERE key = 'h2';
            UPDATE n_hash SET b = NULL, c = 0.5 WHERE key = ANY ('{h2,h3,h4,dnew,nope}');
            DELETE FROM n_hash WHERE key LIKE 'h29%';
            UPDATE n_string SET value = 'direct' WHERE key LIKE 'x1%';""")
    same(s, "SELECT key, a, b, c FROM c_hash", "SELECT * FROM n_hash", "direct, buffered: ")
    same(s, "SELECT * FROM c_string", "SELECT * FROM n_string", "direct string UPDATE: ")
    check(errorstat(cl, "MOVED") == 0, "direct modification met MOVED")
    # back to the rows the later phases expect (per-row: they read a)
    q(s, "DELETE FROM c_hash WHERE key = 'dnew'; DELETE FROM n_hash WHERE key = 'dnew';"
         "INSERT INTO c_hash (key, a, b, c) SELECT 'h' || g, g, 'b' || g, g / 7.0 "
         "FROM generate_series(1, %d) g WHERE g = 2 OR g::text LIKE '29%%' OR g = 3 OR g = 4;"
         "INSERT INTO n_hash SELECT 'h' || g, g, 'b' || g, g / 7.0 "
         "FROM generate_series(1, %d) g WHERE g = 2 OR g::text LIKE '29%%' "
         "ON CONFLICT (key) DO NOTHING;"
         "UPDATE n_hash SET b = 'b' || a, c = a / 7.0 WHERE key IN ('h3', 'h4');"
         "UPDATE c_hash SET c = a / 7.0 WHERE key LIKE 'h1%%';"
         "UPDATE n_hash SET c = a / 7.0 WHERE key LIKE 'h1%%';" % (N, N))
    same(s, "SELECT key, a, b, c FROM c_hash", "SELECT * FROM n_hash", "after direct_phase: ")
    # assignments over the row's own fields: read (HGETALL) on every node
    plan = q(s, "EXPLAIN (VERBOSE, COSTS OFF) UPDATE c_hash SET c = c * 2 + a WHERE key LIKE 'h2%';")
    check(plan and "Foreign Update on public.c_hash" in plan and "Redis Columns Read" in plan,
          "an UPDATE over the row's fields on the cluster is not direct: %s" % plan)
    for t in ("c_hash", "n_hash"):
        q(s, "UPDATE %s SET c = c * 2 + a, b = b || key WHERE key LIKE 'h2%%';" % t)
    same(s, "SELECT key, a, b, c FROM c_hash", "SELECT * FROM n_hash", "direct UPDATE over the row: ")
    for t in ("c_hash", "n_hash"):
        q(s, "UPDATE %s SET b = 'b' || a, c = a / 7.0 WHERE key LIKE 'h2%%';" % t)
    same(s, "SELECT key, a, b, c FROM c_hash", "SELECT * FROM n_hash", "after direct_phase (2): ")


def exec_calls(cl, port):
    for line in redis_cluster._text(cl.call(port, "INFO", "commandstats")).splitlines():
        if line.startswith("cmdstat_exec:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def features_phase(s, cl):
    out = q(s, """
        CREATE FOREIGN TABLE c_fv (user_id text OPTIONS (key 'true'), clicks int, plan text)
          SERVER rc OPTIONS (key_prefix 'ct:fv:');
        SELECT count(*) FROM (SELECT pgpoly.create_feature_view('c_fv', entity => 'user_id',
            online_table => 'c_fv', ttl => '7 days')) x;
        SELECT count(*) FROM (SELECT pgpoly.put_features('c_fv', 'u' || g,
            jsonb_build_object('clicks', g, 'plan', 'p' || g % 3), now() - interval '1 hour')
            FROM generate_series(1, 40) g) x;
        SELECT count(*), sum((features->>'clicks')::int), bool_and(source = 'online')
          FROM pgpoly.get_online_features('c_fv', ARRAY(SELECT 'u' || g FROM generate_series(1, 40) g));
        DELETE FROM c_fv;
        SELECT pgpoly.materialize('c_fv');
        SELECT count(*), sum(clicks) FROM c_fv;
        CREATE SCHEMA imp;
        IMPORT FOREIGN SCHEMA feature_views FROM SERVER rc INTO imp;
        SELECT count(*), sum(clicks) FROM imp.c_fv;""")
    check(out is not None and out.split("\n")[-4:] == ["40|820|t", "40", "40|820", "40|820"],
          "feature view on a cluster: %r" % out)


def migration_phase(s, cl):
    """A slot moved by hand while a cursor scan is half read (ASK)."""
    keys = ["ct:h:{mig}%d" % i for i in range(120)]
    slot = cl.keyslot(keys[0])
    src = cl.owner(slot)
    dst = [p for p in cl.primaries() if p != src][0]
    ids = {n["port"]: n["id"] for n in cl.nodes()}
    q(s, "INSERT INTO c_hash (key, a, b) SELECT '{mig}' || g, g, 'm' FROM generate_series(0, 119) g;"
         "INSERT INTO n_hash (key, a, b) SELECT '{mig}' || g, g, 'm' FROM generate_series(0, 119) g;")
    ask_before = errorstat(cl, "ASK")
    q(s, "BEGIN; DECLARE cur NO SCROLL CURSOR FOR SELECT key, a FROM c_hash;")
    first = q(s, "FETCH 100 FROM cur;")
    # importing on dst, migrating on src, then half the keys moved
    cl.call(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[src])
    cl.call(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[dst])
    cl.call(src, "MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", *keys[:60])
    # lookups of moved and unmoved keys: ASK for the moved ones
    same(s, "SELECT key, a FROM c_hash WHERE key LIKE '{mig}%'",
         "SELECT key, a FROM n_hash WHERE key LIKE '{mig}%'", "half migrated: ")
    out = q(s, "SELECT count(*), sum(a) FROM c_hash WHERE key = ANY(ARRAY(SELECT '{mig}' || g "
               "FROM generate_series(0, 119) g));")
    check(out == "120|7140", "keys of a half-migrated slot by lookup: %s" % out)
    check(errorstat(cl, "ASK") > ask_before, "no ASK was followed during the migration")
    # an immediate-mode write to a key already moved goes to the target
    q(s, "SAVEPOINT w; INSERT INTO c_list_imm (key, value) VALUES ('{mig}l', 'x'); RELEASE w;")
    check(cl.pipeline(dst, [("ASKING",), ("EXISTS", "ct:l:{mig}l")])[1] == 1,
          "a write to a migrating slot's moved part did not reach the importing node")
    # a COMMIT's MULTI/EXEC of a new key there (another session: this one is
    # in the cursor's transaction): ASK for all of it, sent again after ASKING
    db = q(s, "SELECT current_database();")
    r = pgtest.psql("INSERT INTO c_hash (key, a, b) VALUES ('{mig}new', 500, 'm');", db=db)
    check(r.rc == 0 and
          cl.pipeline(dst, [("ASKING",), ("HGET", "ct:h:{mig}new", "a")])[1] == b"500",
          "a COMMIT to a migrating slot's new key did not reach the importing node: %s"
          % r.err.strip())
    # a block whose keys are split between the two nodes cannot run until the
    # slot moved: at timeout_ms (300 ms here) the COMMIT fails saying why,
    # lists each key once (HSET + EXPIRE each), and nothing is written
    r = pgtest.psql("UPDATE c_hash_fast SET b = 'split' WHERE key IN ('{mig}1', '{mig}70');",
                    db=db)
    lost = r.err.split("Not written:")[-1].split("hash-slot")[0]
    check(r.rc != 0 and "could not run within timeout_ms" in r.err and "answered: ASK" not in r.err
          and lost.count('"ct:h:{mig}1"') == 1 and lost.count('"ct:h:{mig}70"') == 1,
          "a COMMIT block split by a migration: %s" % r.err.strip())
    check(cl.call(src, "HGET", "ct:h:{mig}70", "b") == b"m" and
          cl.pipeline(dst, [("ASKING",), ("HGET", "ct:h:{mig}1", "b")])[1] == b"m",
          "the refused COMMIT block wrote something")
    # the rest moved and the slot handed over, while the cursor is open
    cl.call(src, "MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", *keys[60:])
    for p in cl.primaries():
        cl.call(p, "CLUSTER", "SETSLOT", slot, "NODE", ids[dst])
    rest = q(s, "FETCH ALL FROM cur; COMMIT;"
                "INSERT INTO n_hash (key, a, b) VALUES ('{mig}new', 500, 'm');")
    rows = (first or "").split("\n") + [l for l in (rest or "").split("\n") if l != "COMMIT"]
    rows = [r for r in rows if r]
    want = q(s, "SELECT count(*) FROM n_hash;")
    check(want is not None and len(rows) == int(want) and len(set(rows)) == len(rows),
          "scan across a slot migration: %d rows (%d distinct), want %s"
          % (len(rows), len(set(rows)), want))
    cl.wait_ok()
    same(s, "SELECT key, a, b FROM c_hash", "SELECT key, a, b FROM n_hash", "after migration: ")
    q(s, "DELETE FROM c_list WHERE key = '{mig}l';")


def scale_out_phase(s, cl):
    """Slots resharded to a primary added to the cluster, which no MOVED
    announces: a cursor scan open across the move, and a new statement
    after another move, return every row once; then the slots come back."""
    new = cl.add_primary()
    q(s, "INSERT INTO c_hash (key, a, b) SELECT '{so' || t || '}' || g, g, 'so' "
         "FROM generate_series(0, 59) g, generate_series(1, 2) t;"
         "INSERT INTO n_hash (key, a, b) SELECT '{so' || t || '}' || g, g, 'so' "
         "FROM generate_series(0, 59) g, generate_series(1, 2) t;")
    slots = [cl.keyslot("ct:h:{so%d}0" % t) for t in (1, 2)]
    # a key of another type under the prefix: SCAN's TYPE filter skips it,
    # and so must the listing of a moved slot's keys
    cl.call(cl.owner(slots[0]), "SET", "ct:h:{so1}plain", "a string")
    q(s, "BEGIN; DECLARE cur NO SCROLL CURSOR FOR SELECT key, a FROM c_hash;")
    first = q(s, "FETCH 1 FROM cur;")
    src1 = cl.move_slot(slots[0], new)
    rest = q(s, "FETCH ALL FROM cur; COMMIT;")
    rows = [first] + [l for l in (rest or "").split("\n") if l and l != "COMMIT"]
    want = q(s, "SELECT count(*) FROM n_hash;")
    check(want is not None and len(rows) == int(want) and len(set(rows)) == len(rows),
          "scan across a reshard to a new node: %d rows (%d distinct), want %s"
          % (len(rows), len(set(rows)), want))
    src2 = cl.move_slot(slots[1], new)
    same(s, "SELECT key, a, b FROM c_hash", "SELECT key, a, b FROM n_hash",
         "after a reshard to a new node: ")
    out = q(s, "SELECT count(*) FROM pgpoly.connections() WHERE target = '127.0.0.1:%d';" % new)
    check(out == "1", "connections() has no row for the new primary: %s" % out)
    # a COMMIT whose slot moved after its writes were buffered: MOVED sends
    # that slot's MULTI/EXEC again, and only it (the other list gets one append)
    q(s, "BEGIN; INSERT INTO c_hash (key, a, b) VALUES ('{so1}late', 7, 'so');"
         "INSERT INTO c_list (key, value) VALUES ('{so1}l', 'a'), ('so-other', 'b');")
    cl.move_slot(slots[0], src1)
    q(s, "COMMIT;")
    out = q(s, "SELECT a FROM c_hash WHERE key = '{so1}late';"
               "SELECT string_agg(key || '=' || value, ',' ORDER BY key) FROM c_list "
               "WHERE key IN ('{so1}l', 'so-other');"
               "DELETE FROM c_list WHERE key IN ('{so1}l', 'so-other');"
               "INSERT INTO n_hash (key, a, b) VALUES ('{so1}late', 7, 'so');")
    check(out == "7\nso-other=b,{so1}l=a",
          "a COMMIT whose slot moved meanwhile: %r" % out)
    check(cl.call(src1, "EXISTS", "ct:h:{so1}late") == 1,
          "the COMMIT's write did not reach the slot's new owner")
    cl.move_slot(slots[1], src2)
    same(s, "SELECT key, a, b FROM c_hash", "SELECT key, a, b FROM n_hash",
         "after the slots came back: ")
    q(s, "DELETE FROM c_hash WHERE b = 'so'; DELETE FROM n_hash WHERE b = 'so';")
    cl.call(cl.owner(slots[0]), "DEL", "ct:h:{so1}plain")


def failover_phase(s, cl):
    """CLUSTER FAILOVER of one primary's replica in the middle of a session."""
    old = cl.owner(cl.keyslot("ct:h:h1"))
    new = cl.replica_of(old)
    moved_before = errorstat(cl, "MOVED")
    cl.call(new, "CLUSTER", "FAILOVER")
    redis_cluster.wait_until(lambda: cl.owner(cl.keyslot("ct:h:h1")) == new and
                             cl.call(old, "ROLE")[0] == b"slave", 30, "the manual failover")
    cl.wait_ok()
    # lookups first: a full scan learns the new map without a MOVED
    for fq, nq in SAME[8:9] + SAME[14:15] + SAME[:3]:
        same(s, fq, nq, "after CLUSTER FAILOVER: ")
    r = s.run("UPDATE c_hash SET c = c + 1; UPDATE n_hash SET c = c + 1;")
    check(r.rc == 0, "write after CLUSTER FAILOVER failed: %s" % r.err)
    same(s, "SELECT key, a, b, c FROM c_hash", "SELECT * FROM n_hash", "written after failover: ")
    check(errorstat(cl, "MOVED") > moved_before, "no MOVED was followed after the failover")
    out = q(s, "SELECT count(*) FROM pgpoly.connections() WHERE target = '127.0.0.1:%d';" % new)
    check(out == "1", "connections() has no row for the promoted node: %s" % out)


def kill_phase(s, cl):
    """A primary killed: errors while the cluster is down, never wrong rows."""
    cl.wait_ok()
    want = q(s, "SELECT count(*), sum(a), round(sum(c)::numeric, 6) FROM n_hash;")
    victim = cl.primaries()[1]
    print("killing primary %d of %s" % (victim, cl.primaries()))
    redis_cluster.wait_until(lambda: all(
        cl.call(r, "DBSIZE") == cl.call(cl.master_of(r), "DBSIZE")
        for r in cl.replicas()), 30, "replicas in sync")
    cl.kill(victim)
    deadline = time.monotonic() + 60
    ok = 0
    fails = 0
    while time.monotonic() < deadline and ok < 3:
        r = s.run("SELECT count(*), sum(a), round(sum(c)::numeric, 6) FROM c_hash;", timeout=30)
        if r.rc == 0:
            check(r.out.strip() == want, "wrong rows with a primary down: %s, want %s"
                  % (r.out.strip(), want))
            ok += 1
            print("ok after %d failures" % fails)
        else:
            if fails == 0:
                print("first failure: %s" % r.err.strip())
            fails += 1
            check((r.sqlstate or "").startswith(("08", "HV")),
                  "a primary down gave %s: %s" % (r.sqlstate, r.err.strip()))
            time.sleep(0.2)
    check(ok == 3, "queries did not work again after the replica's promotion (%d failures)"
          % fails)
    r = s.run("INSERT INTO c_string VALUES ('after_kill', 'v');"
              "SELECT value FROM c_string WHERE key = 'after_kill';")
    check(r.rc == 0 and r.out.strip().endswith("v"), "write after promotion: %s" % r.err)


def pause_phase(s, cl):
    """A paused primary: statement_timeout cancels, and it names no false data."""
    port = cl.primaries()[0]
    cl.kill(port, signal.SIGSTOP)
    try:
        r = s.run("SET statement_timeout = '300ms'; SELECT count(*) FROM c_hash;", timeout=30)
        check(r.rc == 1 and r.sqlstate == "57014" and r.elapsed < 5,
              "statement_timeout with a paused node: rc=%s %s after %.1f s"
              % (r.rc, r.sqlstate, r.elapsed))
    finally:
        cl.kill(port, signal.SIGCONT)
        s.run("RESET statement_timeout;")


def test():
    mark = pgtest.pg_log_mark()
    cl = redis_cluster.Cluster()
    try:
        db = pgtest.create_db("pgpoly_cluster")
        ps = cl.primaries()
        r = pgtest.psql("""
            CREATE SERVER rc FOREIGN DATA WRAPPER pgpoly_redis
              OPTIONS (nodes '127.0.0.1:%d, 127.0.0.1:%d', timeout_ms '3000');
            CREATE SERVER rc2 FOREIGN DATA WRAPPER pgpoly_redis
              OPTIONS (cluster 'true', host '127.0.0.1', port '%d');
            CREATE SERVER rc_fast FOREIGN DATA WRAPPER pgpoly_redis
              OPTIONS (nodes '127.0.0.1:%d', timeout_ms '300');
            CREATE FOREIGN TABLE c_hash_fast (key text, a int, b text) SERVER rc_fast
              OPTIONS (key_prefix 'ct:h:', ttl_seconds '100000');
        """ % (cl.replicas()[0], ps[1], ps[2], ps[0]), db=db)
        if not check(r.rc == 0, "setup failed: %s" % r.err):
            return
        s = pgtest.Session(db)
        for phase in (slots_phase, tables_phase, explain_phase, xact_phase, direct_phase,
                      features_phase, migration_phase, scale_out_phase, failover_phase,
                      pause_phase, kill_phase):
            t0 = time.monotonic()
            s.run("ROLLBACK;")  # whatever an earlier phase left open
            try:
                if phase(s, cl) is False:
                    break
            except Exception as e:  # noqa: BLE001 -- report and go on
                check(False, "%s raised %r" % (phase.__name__, e))
            print("%s: %.1f s" % (phase.__name__, time.monotonic() - t0), flush=True)
        s.close()
    finally:
        cl.stop()
    pgtest.check_pg_log(mark)


pgtest.main(test)
