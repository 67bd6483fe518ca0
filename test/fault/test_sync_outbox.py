"""write_mode 'outbox': writes to foreign tables commit while the store is down.

Against private stores (a Redis with an append-only file, an ES stand-in, a
Qdrant stand-in), with a native copy of every table written in the same
transactions as the ground truth:

1. For each wrapper, the store goes away (Redis killed, every ES _bulk
   answered 503, the Qdrant stand-in answering 503, then stopped) while
   writers commit: each
   COMMIT succeeds at once, pending and lag grow, the state is 'retrying';
   after the store returns everything arrives and the target equals the
   native copy row for row.
2. Four writers upsert the same 30 keys concurrently (single and multi-key
   transactions, in random key order) while Redis is paused: once it
   resumes, Redis holds per key the last committed write, as the native
   copy does.
3. A change Redis rejects (its key holds a string) is retried while the
   other keys flow; a later write of the same key joins it instead of
   overtaking it; once the key is fixed the last write is what arrives.
   With attempts exhausted, a rejected change goes to the dead letters.
4. The feature store with an outbox online table: put_features commits
   while Redis is down (late events included), get_online_features serves
   from the offline table meanwhile (status 'offline'), and after Redis
   returns the newest event of every entity is online.
"""

import os
import random
import sys
import time

import pgtest
import sync_helper as sh
from es_helper import Standin

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import qdrant_fixture  # noqa: E402

REDIS_ARGS = ["--appendonly", "yes", "--appendfsync", "always"]
REDIS_NAME = "sync-outbox-%d" % os.getpid()


def sql(db, text):
    r = pgtest.psql(text, db=db, timeout=120)
    pgtest.check(r.rc == 0, "SQL failed: %s\n%s" % (text.strip()[:300], r.err))
    return r.out.strip()


def status(db, name):
    """(pending, lag in seconds, state) of a sync."""
    out = sql(db, "SELECT pending, extract(epoch FROM lag), state FROM pgpoly.sync_status "
                  "WHERE name = '%s'" % name)
    if not out:
        return 0, 0.0, "none"
    pending, lag, state = out.split("|")
    return int(pending), float(lag), state


def wait_state(db, name, state):
    ok = pgtest.wait_for(lambda: status(db, name)[2] == state, timeout=60, interval=0.1)
    pgtest.check(ok, "sync %s never reached state %s: %s" % (name, state, status(db, name)))


def diff(db, target, copy, cols):
    """Rows of copy missing from target and the reverse."""
    return sql(db, "SELECT count(*) FROM ((SELECT %(c)s FROM %(a)s EXCEPT ALL "
                   "SELECT %(c)s FROM %(b)s) UNION ALL (SELECT %(c)s FROM %(b)s "
                   "EXCEPT ALL SELECT %(c)s FROM %(a)s)) d"
               % {"a": target, "b": copy, "c": cols})


def commit_while_down(db, name, writes):
    """Run writes (transactions) against a store that is down; check the
    commits were quick and that pending and lag grew."""
    start = time.monotonic()
    sql(db, writes[0])
    first, lag1, _ = status(db, name)
    for w in writes[1:]:
        sql(db, w)
    # Wall time over PGPOLY_TIMEOUT_SCALE (make valgrind), as Result.elapsed.
    pgtest.check((time.monotonic() - start) / pgtest.SCALE < 20,
                 "writers waited on the store that is down")
    wait_state(db, name, "retrying")
    second, lag2, _ = status(db, name)
    pgtest.check(second > first > 0, "%s: pending did not grow: %d, %d" % (name, first, second))
    pgtest.check(lag2 > lag1 > 0, "%s: lag did not grow: %s, %s" % (name, lag1, lag2))
    pgtest.check(sql(db, "SELECT pgpoly.sync_wait('%s', '0.2 s')" % name) == "f",
                 "%s: sync_wait claimed delivery while the store is down" % name)


# The columns of the tables and their native copies: (key, other columns).
COLUMNS = {"kv": ("k", ["v", "n"]), "docs": ("_id", ["title"]),
           "vec": ("id", ["embedding", "document"])}


def both(table, select):
    """One transaction inserting the rows of select into table (overwriting,
    as the stores do) and upserting them into its native copy."""
    key, rest = COLUMNS[table]
    cols = ", ".join([key] + rest)
    return ("BEGIN; INSERT INTO %s (%s) %s; INSERT INTO %s_copy (%s) %s "
            "ON CONFLICT (%s) DO UPDATE SET (%s) = ROW(%s); COMMIT;"
            % (table, cols, select, table, cols, select, key, ", ".join(rest),
               ", ".join("excluded." + c for c in rest)))


def test_redis_down(db, rport):
    mark = pgtest.pg_log_mark()
    pgtest.kill_redis(rport)
    writes = [both("kv", "SELECT i, 'down', i FROM generate_series(%d, %d) i"
                   % (100 * b, 100 * b + 99)) for b in range(1, 6)]
    writes.append(both("kv", "VALUES (1, 'again', -1)"))
    commit_while_down(db, "public.kv", writes)
    pgtest.start_redis(port=rport, name=REDIS_NAME, extra_args=REDIS_ARGS)
    pgtest.check(sql(db, "SELECT pgpoly.sync_wait('public.kv', '60 s')") == "t",
                 "changes did not arrive after Redis came back")
    pgtest.check(diff(db, "kv_now", "kv_copy", "k, v, n") == "0", "kv differs after the outage")
    with open(os.environ["PGPOLY_PGLOG"], errors="replace") as f:
        f.seek(mark)
        log = f.read()
    gone = log.count('pgpoly sync "public.kv": the store of "public.kv" is unreachable')
    back = log.count('pgpoly sync "public.kv": delivering to "public.kv" again')
    pgtest.check(gone == 1 and back == 1,
                 "expected one LOG line each for the outage, got %d and %d" % (gone, back))


def test_es_unavailable(db, es):
    es.faults({"status": 503, "count": 100000, "path": "_bulk"})
    writes = [both("docs", "SELECT i::text, 'doc ' || i FROM generate_series(%d, %d) i"
                   % (100 * b, 100 * b + 99)) for b in range(3)]
    writes.append(both("docs", "VALUES ('5', 'changed')"))
    commit_while_down(db, "public.docs", writes)
    es.clear()
    pgtest.check(sql(db, "SELECT pgpoly.sync_wait('public.docs', '60 s')") == "t",
                 "documents did not arrive after ES recovered")
    pgtest.check(diff(db, "docs", "docs_copy", "_id, title") == "0",
                 "the index differs from docs_copy")


def test_vector_down(db, fx, vport):
    # Overloaded (503) is unavailable, not a rejection: nothing is buried.
    fx.fail["outbox_vec"] = (503, "service overloaded")
    writes = [both("vec", "SELECT (1000 + i)::text, ARRAY[i, 1]::real[], 'doc ' || i "
                   "FROM generate_series(%d, %d) i" % (20 * b, 20 * b + 19)) for b in range(2)]
    commit_while_down(db, "public.vec", writes)
    del fx.fail["outbox_vec"]
    pgtest.check(sql(db, "SELECT pgpoly.sync_wait('public.vec', '60 s')") == "t",
                 "records did not arrive after the vector service recovered")
    # Stopped: connections refused.
    fx.stop()
    writes = [both("vec", "SELECT (1000 + i)::text, ARRAY[i, 2]::real[], 'doc ' || i "
                   "FROM generate_series(%d, %d) i" % (20 * b, 20 * b + 19)) for b in range(1, 4)]
    commit_while_down(db, "public.vec", writes)
    fx.start(vport)
    pgtest.check(sql(db, "SELECT pgpoly.sync_wait('public.vec', '60 s')") == "t",
                 "records did not arrive after the vector service came back")
    pgtest.check(diff(db, "vec", "vec_copy", "id, embedding, document") == "0",
                 "the collection differs from vec_copy")
    pgtest.check(sql(db, "SELECT count(*) FROM pgpoly.sync_dead_letters") == "0",
                 "an unavailable vector service buried changes")


def writer(db, n, seed, errors):
    """n transactions upserting keys 1..30 of kv and kv_copy alike."""
    rnd = random.Random(seed)
    s = pgtest.Session(db=db)
    for i in range(n):
        keys = rnd.sample(range(1, 31), rnd.choice([1, 1, 3]))
        stmts = []
        for k in keys:
            v = "w%d.%d" % (seed, i)
            stmts.append("INSERT INTO kv VALUES (%d, '%s', %d)" % (k, v, seed))
            stmts.append("INSERT INTO kv_copy VALUES (%d, '%s', %d) ON CONFLICT (k) "
                         "DO UPDATE SET v = excluded.v, n = excluded.n" % (k, v, seed))
        r = s.run("BEGIN; %s; COMMIT;" % "; ".join(stmts), timeout=60)
        # Multi-key transactions may deadlock on kv_copy: that one rolls
        # back, which the outbox must not see either.
        if r.rc != 0 and r.sqlstate != "40P01":
            errors.append(r.err)
            s.run("ROLLBACK;")
    s.close()


def test_concurrent(db, rport):
    sh.writers_while_paused(rport, writer, (db, 40), lambda: status(db, "public.kv")[0])
    pgtest.check(sql(db, "SELECT pgpoly.sync_wait('public.kv', '60 s')") == "t",
                 "changes did not arrive after SIGCONT")
    pgtest.check(diff(db, "kv_now", "kv_copy", "k, v, n") == "0",
                 "Redis does not hold the last committed write of every key")


def test_poison(db, rport):
    # The hash of key 7777 is taken by a string: HSET fails with WRONGTYPE.
    pgtest.redis_cli(rport, "SET", "ob:7777", "in the way")
    sql(db, both("kv", "VALUES (7777, 'first', 0)"))
    for i in range(10):
        sql(db, both("kv", "VALUES (%d, 'flowing', %d)" % (8000 + i, i)))
    flowed = pgtest.wait_for(
        lambda: sql(db, "SELECT count(*) FROM kv_now WHERE k = ANY (ARRAY(SELECT "
                        "generate_series(8000, 8009)))") == "10", timeout=60, interval=0.1)
    pgtest.check(flowed, "the other keys did not flow past the rejected one")
    # A later write of the rejected key joins it: it is not delivered first.
    sql(db, both("kv", "VALUES (7777, 'last', 1)"))
    sql(db, both("kv", "VALUES (8100, 'after', 0)"))
    pgtest.check(pgtest.wait_for(
        lambda: sql(db, "SELECT count(*) FROM kv_now WHERE k = 8100") == "1",
        timeout=60, interval=0.1), "a change after the rejected one did not flow")
    pgtest.check(pgtest.redis_cli(rport, "GET", "ob:7777")[1] == "in the way",
                 "the later write of the rejected key overtook it")
    pgtest.check(sql(db, "SELECT count(*) FROM pgpoly.sync_queue q JOIN pgpoly.syncs s "
                         "USING (sync_id) WHERE s.name = 'public.kv' AND q.isolated "
                         "AND '7777' = ANY (q.keys)") == "1",
                 "the rejected key is not waiting for its retry")
    pgtest.redis_cli(rport, "DEL", "ob:7777")
    pgtest.check(sql(db, "SELECT pgpoly.sync_wait('public.kv', '60 s')") == "t",
                 "the rejected change was not retried")
    pgtest.check(diff(db, "kv_now", "kv_copy", "k, v, n") == "0",
                 "kv differs after the retry: the last write of 7777 did not win")
    # Attempts exhausted: the change goes to the dead letters, others flow.
    sql(db, "ALTER DATABASE %s SET pgpoly.sync_max_attempts = 2" % db)
    sql(db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE backend_type = 'pgpoly sync worker' AND datname = current_database()")
    pgtest.redis_cli(rport, "SET", "ob:7778", "in the way")
    sql(db, "INSERT INTO kv VALUES (7778, 'dead', 0), (8200, 'alive', 0)")
    pgtest.check(sql(db, "SELECT pgpoly.sync_wait('public.kv', '60 s')") == "t",
                 "the poison change did not end in the dead letters")
    pgtest.check(sql(db, "SELECT key || ' ' || op || ' ' || (payload ->> 'v') "
                         "FROM pgpoly.sync_dead_letters") == "7778 upsert dead",
                 "dead letters: %s" % sql(db, "SELECT * FROM pgpoly.sync_dead_letters"))
    pgtest.check(sql(db, "SELECT v FROM kv_now WHERE k = 8200") == "alive",
                 "the other change of the batch was not delivered")


def test_features(db, rport):
    pgtest.kill_redis(rport)
    start = time.monotonic()
    sql(db, "SELECT pgpoly.put_features('fv', 'u' || i, jsonb_build_object('clicks', i), "
            "'2024-01-02 00:00+00') FROM generate_series(1, 5) i")
    # late events, committed later, and a newer one for u1
    sql(db, "SELECT pgpoly.put_features('fv', 'u' || i, jsonb_build_object('clicks', -i), "
            "'2024-01-01 00:00+00') FROM generate_series(1, 5) i")
    sql(db, "SELECT pgpoly.put_features('fv', 'u1', '{\"clicks\": 100}', '2024-01-03 00:00+00')")
    pgtest.check((time.monotonic() - start) / pgtest.SCALE < 20,
                 "put_features waited on the dead Redis")
    served = sql(db, "SELECT string_agg(entity || '=' || (features ->> 'clicks') || ':' || source, "
                     "' ' ORDER BY entity) FROM pgpoly.get_online_features('fv', '{u1,u2,u9}')")
    pgtest.check(served == "u1=100:offline u2=2:offline", "served while Redis is down: %s" % served)
    pgtest.check(pgtest.wait_for(lambda: status(db, "pgpoly.fv_serving")[2] == "retrying",
                                 timeout=60, interval=0.1), "the serving table's sync is not retrying")
    pgtest.start_redis(port=rport, name=REDIS_NAME, extra_args=REDIS_ARGS)
    pgtest.check(sql(db, "SELECT pgpoly.sync_wait('pgpoly.fv_serving', '60 s')") == "t",
                 "online features did not arrive after Redis came back")
    served = sql(db, "SELECT string_agg(entity || '=' || (features ->> 'clicks') || ':' || source, "
                     "' ' ORDER BY entity) FROM pgpoly.get_online_features('fv', "
                     "'{u1,u2,u3,u4,u5}')")
    pgtest.check(served == "u1=100:online u2=2:online u3=3:online u4=4:online u5=5:online",
                 "online after the outage: %s" % served)


def test():
    mark = pgtest.pg_log_mark()
    rport = pgtest.start_redis(name=REDIS_NAME, extra_args=REDIS_ARGS)
    es = Standin()
    fx = qdrant_fixture.Fixture()
    vport = fx.start()
    db = pgtest.create_db("pgpoly_sync_outbox")
    sql(db, "ALTER DATABASE %s SET pgpoly.sync_max_retry_delay = 500;"
            "ALTER DATABASE %s SET pgpoly.sync_max_attempts = 1000" % (db, db))
    sql(db, """
CREATE SERVER ob_redis FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port '%d', timeout_ms '1000', connect_timeout_ms '1000');
CREATE FOREIGN TABLE kv (k int OPTIONS (key 'true'), v text, n int)
  SERVER ob_redis OPTIONS (key_prefix 'ob:', write_mode 'outbox');
CREATE FOREIGN TABLE kv_now (k int OPTIONS (key 'true'), v text, n int)
  SERVER ob_redis OPTIONS (key_prefix 'ob:');
CREATE TABLE kv_copy (k int PRIMARY KEY, v text, n int);
CREATE SERVER ob_es FOREIGN DATA WRAPPER pgpoly_elastic
  OPTIONS (url '%s', timeout_ms '2000');
SELECT pgpoly.elastic_request('ob_es', 'PUT', '/outbox_docs', '{}') IS NOT NULL;
CREATE FOREIGN TABLE docs (_id text, title text) SERVER ob_es
  OPTIONS (index 'outbox_docs', write_mode 'outbox');
CREATE TABLE docs_copy (_id text PRIMARY KEY, title text);
CREATE SERVER ob_vec FOREIGN DATA WRAPPER pgpoly_vector
  OPTIONS (url 'http://127.0.0.1:%d', provider 'qdrant', timeout_ms '2000',
           connect_timeout_ms '1000');
CREATE FOREIGN TABLE vec (id text, embedding real[], document text) SERVER ob_vec
  OPTIONS (collection 'outbox_vec', create_collection 'true', distance 'l2',
           write_mode 'outbox');
CREATE TABLE vec_copy (id text PRIMARY KEY, embedding real[], document text);
CREATE FOREIGN TABLE fv_online (user_id text OPTIONS (key 'true'), clicks int)
  SERVER ob_redis OPTIONS (key_prefix 'fv:', write_mode 'outbox');
SELECT pgpoly.create_feature_view('fv', 'user_id', 'fv_online');
""" % (rport, es.url, vport))
    sql(db, both("kv", "SELECT i, 'v' || i, i FROM generate_series(1, 50) i"))
    sql(db, both("docs", "VALUES ('0', 'zero')"))
    sql(db, both("vec", "VALUES ('1', '{0,1}'::real[], 'zero')"))
    pgtest.check(sql(db, "SELECT pgpoly.sync_wait(NULL, '60 s')") == "t", "initial delivery")
    test_redis_down(db, rport)
    test_es_unavailable(db, es)
    test_vector_down(db, fx, vport)
    test_concurrent(db, rport)
    test_poison(db, rport)
    test_features(db, rport)
    fx.stop()
    pgtest.check_pg_log(mark)


pgtest.main(test)
