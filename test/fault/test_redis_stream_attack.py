#!/usr/bin/env python3
"""Write stream, adversarial: every case runs at pgpoly.redis_stream_threshold
0 (no stream) and 1 (everything streams) and must end the same (statement
outcomes and Redis contents): Redis' idle timeout and CLIENT KILL mid-
transaction, hash/string/list/zset/TTL tables of one server with updates,
deletes, a key change and ON CONFLICT of streamed keys, savepoints with and
without writes, a FOR UPDATE read after the stream opened and changed by
another client, PREPARE TRANSACTION, maxmemory refusing the queued writes,
the threshold changed mid-transaction, ALTER SERVER, DISCARD ALL, a tiny
client-output-buffer-limit, PL/pgSQL EXCEPTION blocks in a loop, a FOR
UPDATE cursor, pgpoly.disconnect() and a write_mode 'immediate' table of the
same keys in between.

altered(): the server's port altered mid-transaction before the stream
opened; the writes must stay with the main connection (the old port), as
without a stream, not follow the new options.
"""

import pgtest

check = pgtest.check


VERBOSE = False


def dump(port):
    """Everything Redis holds: {key: (type, value)}, read in three pipelines."""
    keys, cursor = [], "0"
    while True:
        cursor, page = pgtest.redis_pipeline(port, [["SCAN", cursor, "COUNT", 1000]])[0]
        keys += page
        if cursor == "0":
            break
    types = pgtest.redis_pipeline(port, [["TYPE", k] for k in keys])
    reads = {"hash": ["HGETALL"], "string": ["GET"], "list": ["LRANGE", 0, -1],
             "zset": ["ZRANGE", 0, -1, "WITHSCORES"], "set": ["SMEMBERS"]}
    values = pgtest.redis_pipeline(
        port, [reads.get(t, ["TYPE"])[:1] + [k] + reads.get(t, ["TYPE"])[1:]
               for k, t in zip(keys, types)])
    out = {}
    for k, t, v in zip(keys, types, values):
        if t == "hash":
            v = sorted(zip(v[0::2], v[1::2]))
        elif t == "set":
            v = sorted(v)
        out[k] = (t, v)
    return out


def outcome(r):
    return (r.rc, r.sqlstate if r.rc else None, r.out if r.rc == 0 else None)


def run_case(db, port, name, steps, between=None):
    res = {}
    for thr in (0, 1):
        pgtest.redis_cli(port, "flushall")
        pgtest.redis_cli(port, "config", "set", "timeout", "0")
        s = pgtest.Session(db)
        s.run("SET pgpoly.redis_stream_threshold = %d;" % thr)
        outs = []
        for st in steps:
            if callable(st):
                st(port)
                continue
            r = s.run(st)
            outs.append((st, outcome(r), r.err.strip()[:200] if r.rc else ""))
        s.run("ROLLBACK;")
        res[thr] = (outs, dump(port))
        s.close()
    a, b = res[0], res[1]
    same = [x[:2] for x in a[0]] == [x[:2] for x in b[0]] and a[1] == b[1]
    if not same or VERBOSE:
        for x, y in zip(a[0], b[0]):
            if x[:2] != y[:2]:
                print("  %s: step %r\n    thr0 %r %s\n    thr1 %r %s" % (name, x[0], x[1], x[2], y[1], y[2]))
        for k in set(a[1]) | set(b[1]):
            if a[1].get(k) != b[1].get(k):
                print("  %s: key %s thr0 %r thr1 %r" % (name, k, a[1].get(k), b[1].get(k)))
    check(same, "%s: threshold 1 differs from threshold 0" % name)


def altered(db, port):
    """The server's port changes mid-transaction, before the stream opens:
    the writes buffered on the connection made before go where it goes,
    as they do without a stream (not to the new port)."""
    port2 = pgtest.start_redis()
    got = {}
    for thr in (0, 400):
        for p in (port, port2):
            pgtest.redis_cli(p, "flushall")
        s = pgtest.Session(db)
        s.run("SET pgpoly.redis_stream_threshold = %d;" % thr)
        r = s.run("BEGIN; INSERT INTO h VALUES ('first', 1, 'x'); "
                  "ALTER SERVER ra OPTIONS (SET port '%d'); "
                  "INSERT INTO h SELECT 'k' || g, g, 'v' || g "
                  "FROM generate_series(1, 30) g; COMMIT;" % port2)
        check(r.rc == 0, "threshold %d: the transaction failed: %s" % (thr, r.err))
        s.run("ALTER SERVER ra OPTIONS (SET port '%d');" % port)
        got[thr] = (len(dump(port)), len(dump(port2)))
        s.close()
    check(got[0] == got[400], "ALTER SERVER ... port mid-transaction: keys on "
          "(old port, new port): %r without a stream, %r with one" % (got[0], got[400]))


def test():
    mark = pgtest.pg_log_mark()
    port = pgtest.start_redis()
    db = pgtest.create_db("pgpoly_stream_attack")
    r = pgtest.psql("""
        CREATE SERVER ra FOREIGN DATA WRAPPER pgpoly_redis
            OPTIONS (host '127.0.0.1', port '%d');
        CREATE USER MAPPING FOR PUBLIC SERVER ra;
        CREATE FOREIGN TABLE h (key text, a int, b text) SERVER ra
            OPTIONS (table_type 'hash', key_prefix 'h:');
        CREATE FOREIGN TABLE st (key text, v text) SERVER ra
            OPTIONS (table_type 'string', key_prefix 's:');
        CREATE FOREIGN TABLE li (key text, idx int, value text) SERVER ra
            OPTIONS (table_type 'list', key_prefix 'l:');
        CREATE FOREIGN TABLE z (key text, member text, score float8) SERVER ra
            OPTIONS (table_type 'zset', key_prefix 'z:');
        CREATE FOREIGN TABLE ht (key text, a int) SERVER ra
            OPTIONS (table_type 'hash', key_prefix 't:', ttl_seconds '1000');
        """ % port, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    ins = "INSERT INTO h SELECT 'k' || g, g, 'v' || g FROM generate_series(1, 30) g;"
    run_case(db, port, "idle timeout", [
        "BEGIN;", ins,
        lambda p: pgtest.redis_cli(p, "config", "set", "timeout", "1"),
        "SELECT pg_sleep(2.5);", "COMMIT;",
        "SELECT count(*) FROM h;"])
    run_case(db, port, "client kill", [
        "BEGIN;", ins,
        lambda p: pgtest.redis_cli(p, "client", "kill", "type", "normal"),
        "COMMIT;", "SELECT count(*) FROM h;"])
    run_case(db, port, "mixed tables", [
        "BEGIN;", ins,
        "INSERT INTO st SELECT 'k' || g, 'x' || g FROM generate_series(1, 20) g;",
        "INSERT INTO li SELECT 'a', NULL, 'e' || g FROM generate_series(1, 20) g;",
        "INSERT INTO z SELECT 'a', 'm' || g, g FROM generate_series(1, 20) g;",
        "INSERT INTO ht SELECT 'k' || g, g FROM generate_series(1, 20) g;",
        "UPDATE h SET a = a + 100 WHERE key LIKE 'k1%';",
        "DELETE FROM h WHERE key = 'k2';",
        "UPDATE h SET key = 'r' || key WHERE key = 'k3';",
        "INSERT INTO h VALUES ('k4', 0, 'zz') ON CONFLICT DO NOTHING;",
        "INSERT INTO h VALUES ('k2', 0, 'back') ON CONFLICT DO NOTHING;",
        "INSERT INTO st VALUES ('k5', 'u') ON CONFLICT (key) DO UPDATE SET v = 'upd';",
        "DELETE FROM li WHERE value = 'e3';",
        "UPDATE z SET score = -score WHERE member = 'm5';",
        "SAVEPOINT a;", "INSERT INTO st VALUES ('sp', '1');", "RELEASE a;",
        "SAVEPOINT b;", "SAVEPOINT c;", "ROLLBACK TO c;", "RELEASE b;",
        "INSERT INTO li VALUES ('a', NULL, 'last');",
        "COMMIT;",
        "SELECT count(*), sum(a) FROM h;"])
    run_case(db, port, "savepoint no writes", [
        "BEGIN;", ins, "SAVEPOINT a;", "SELECT count(*) FROM h;",
        "ROLLBACK TO a;", "INSERT INTO st VALUES ('q', 'q');", "COMMIT;"])
    run_case(db, port, "other table in aborted subxact", [
        "BEGIN;", ins, "SAVEPOINT a;", "INSERT INTO st VALUES ('q', 'q');",
        "ROLLBACK TO a;", "INSERT INTO st VALUES ('w', 'w');", "COMMIT;"])
    run_case(db, port, "watch after stream", [
        "BEGIN;", ins, "SELECT a FROM h WHERE key = 'k7' FOR UPDATE;",
        lambda p: pgtest.redis_cli(p, "hset", "h:k7", "a", "999"),
        "UPDATE h SET a = 1 WHERE key = 'k7';", "COMMIT;"])
    run_case(db, port, "prepare", [
        "BEGIN;", ins, "PREPARE TRANSACTION 'x';", "ROLLBACK PREPARED 'x';"])
    run_case(db, port, "oom", [
        lambda p: pgtest.redis_cli(p, "config", "set", "maxmemory", "1"),
        "BEGIN;", ins, "COMMIT;",
        lambda p: pgtest.redis_cli(p, "config", "set", "maxmemory", "0")])
    run_case(db, port, "threshold mid-xact", [
        "BEGIN;", ins, "SET pgpoly.redis_stream_threshold = 0;",
        "INSERT INTO st VALUES ('q', 'q');",
        "SET pgpoly.redis_stream_threshold = 1;",
        "INSERT INTO st VALUES ('w', 'w');", "COMMIT;"])
    run_case(db, port, "alter server mid-xact", [
        "BEGIN;", ins, "ALTER SERVER ra OPTIONS (ADD connect_timeout '5');",
        "INSERT INTO st VALUES ('q', 'q');", "COMMIT;",
        "ALTER SERVER ra OPTIONS (DROP connect_timeout);"])
    run_case(db, port, "discard", [
        "BEGIN;", ins, "COMMIT;", "DISCARD ALL;", "BEGIN;", ins, "COMMIT;"])
    big = "INSERT INTO h SELECT 'k' || g, g, 'v' || g FROM generate_series(1, 600) g;"
    run_case(db, port, "output buffer limit", [
        lambda p: pgtest.redis_cli(p, "config", "set", "client-output-buffer-limit", "normal 2kb 2kb 0"),
        "BEGIN;", big, "INSERT INTO st VALUES ('q', 'q');", "COMMIT;",
        lambda p: pgtest.redis_cli(p, "config", "set", "client-output-buffer-limit", "normal 0 0 0"),
        "SELECT count(*) FROM h;"])
    run_case(db, port, "plpgsql exception loop", [
        "BEGIN;", """DO $$ BEGIN FOR i IN 1..20 LOOP
            BEGIN INSERT INTO h VALUES ('e' || i, i, 'x');
              INSERT INTO st VALUES ('e' || i, 'y');
              IF i % 3 = 0 THEN RAISE EXCEPTION 'x'; END IF;
            EXCEPTION WHEN OTHERS THEN NULL; END; END LOOP; END $$;""",
        "INSERT INTO li SELECT 'b', NULL, 'e' || g FROM generate_series(1, 5) g;",
        "COMMIT;", "SELECT count(*) FROM h;"])
    run_case(db, port, "cursor for update", [
        "BEGIN;", ins, "DECLARE c CURSOR FOR SELECT * FROM h WHERE key = 'k9' FOR UPDATE;",
        "FETCH c;",
        lambda p: pgtest.redis_cli(p, "hset", "h:k9", "a", "999"),
        "INSERT INTO st VALUES ('q', 'q');", "COMMIT;"])
    run_case(db, port, "disconnect mid-xact", [
        "BEGIN;", ins, "SELECT pgpoly.disconnect();",
        "INSERT INTO st VALUES ('q', 'q');", "COMMIT;", "SELECT count(*) FROM h;"])
    run_case(db, port, "immediate table between", [
        "CREATE FOREIGN TABLE IF NOT EXISTS im (key text, v text) SERVER ra "
        "OPTIONS (table_type 'string', key_prefix 's:', write_mode 'immediate');",
        "BEGIN;", "INSERT INTO st VALUES ('a', 'tx1');",
        "INSERT INTO im VALUES ('a', 'im') ON CONFLICT (key) DO UPDATE SET v = 'im2';",
        "UPDATE st SET v = 'tx2' WHERE key = 'a';", "COMMIT;"])
    altered(db, port)
    pgtest.check_pg_log(mark)


pgtest.main(test)
