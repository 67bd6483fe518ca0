"""Sync: writers never wait on, nor fail with, a store; everything arrives.

Against private stores (a Redis with an append-only file, an ES stand-in):

1. Redis killed while writers commit: every commit succeeds, pending and
   lag grow, the state is 'retrying', sync_wait times out; one LOG line when
   the store goes away, one when it is back; then every change arrives and
   the target equals the source row for row.
2. Elasticsearch answering 503 to every _bulk: the same, for an index.
   A _bulk answered 200 with items refused with 429 (a full write queue)
   is retried as an unavailable store, never buried; an item refused with
   400 in the same requests goes to the dead letters.
3. Redis paused (SIGSTOP) while four writers update, delete, re-insert and
   move the same 40 keys concurrently; after SIGCONT the target equals the
   source row for row, whatever order the transactions committed in.
4. A change Redis rejects (its key holds a string) is retried while the
   other keys keep flowing; once the key is fixed it is delivered.
5. drop_sync while the worker delivers that sync waits for the batch (no
   deadlock) and the other syncs keep flowing.
"""

import os
import random
import time

import pgtest
import sync_helper as sh
from es_helper import Standin

REDIS_ARGS = ["--appendonly", "yes", "--appendfsync", "always"]
REDIS_NAME = "sync-outage-%d" % os.getpid()


def sql(db, text):
    r = pgtest.psql(text, db=db, timeout=120)
    pgtest.check(r.rc == 0, "SQL failed: %s\n%s" % (text.strip()[:200], r.err))
    return r.out.strip()


def status(db, name):
    """(pending, lag in seconds, state) of a sync."""
    out = sql(db, "SELECT pending, extract(epoch FROM lag), state FROM pgpoly.sync_status "
                  "WHERE name = '%s'" % name)
    pending, lag, state = out.split("|")
    return int(pending), float(lag), state


def wait_state(db, name, state):
    ok = pgtest.wait_for(lambda: status(db, name)[2] == state, timeout=60, interval=0.1)
    pgtest.check(ok, "sync %s never reached state %s: %s" % (name, state, status(db, name)))


def log_lines(mark, pattern):
    with open(os.environ["PGPOLY_PGLOG"], errors="replace") as f:
        f.seek(mark)
        return sh.count_lines(f.read(), pattern)


def test_redis_down(db, rport):
    mark = pgtest.pg_log_mark()
    pgtest.kill_redis(rport)
    start = time.monotonic()
    for i in range(10):
        sql(db, "UPDATE kv SET n = n + 1 WHERE k = %d" % (i + 1))
    first, lag1, _ = status(db, "kv")
    for i in range(10):
        sql(db, "INSERT INTO kv VALUES (%d, 'down', %d)" % (1000 + i, i))
    sql(db, "DELETE FROM kv WHERE k BETWEEN 50 AND 59")
    # Wall time over PGPOLY_TIMEOUT_SCALE, as pgtest's Result.elapsed: every
    # psql above starts a backend, slow under make valgrind.
    pgtest.check((time.monotonic() - start) / pgtest.SCALE < 30,
                 "writers waited on the dead store")
    wait_state(db, "kv", "retrying")
    second, lag2, _ = status(db, "kv")
    pgtest.check(second > first >= 10, "pending did not grow: %d, %d" % (first, second))
    pgtest.check(lag2 > lag1 > 0, "lag did not grow: %s, %s" % (lag1, lag2))
    pgtest.check(sql(db, "SELECT pgpoly.sync_wait('kv', '0.3 s')") == "f",
                 "sync_wait claimed delivery while Redis is down")
    pgtest.start_redis(port=rport, name=REDIS_NAME, extra_args=REDIS_ARGS)
    pgtest.check(sql(db, "SELECT pgpoly.sync_wait('kv', '60 s')") == "t",
                 "changes did not arrive after Redis came back")
    pgtest.check(sql(db, "SELECT kv_diff()") == "0", "kv differs after the outage")
    gone = log_lines(mark, r'pgpoly sync "kv": the store of .* is unreachable')
    back = log_lines(mark, r'pgpoly sync "kv": delivering to .* again')
    pgtest.check(gone == 1 and back == 1,
                 "expected one LOG line each for the outage, got %d and %d" % (gone, back))


def test_es_unavailable(db, es):
    es.faults({"status": 503, "count": 100000, "path": "_bulk"})
    sql(db, "INSERT INTO docs SELECT i, 'doc ' || i FROM generate_series(1, 300) i")
    sql(db, "UPDATE docs SET title = 'changed' WHERE id <= 10")
    wait_state(db, "docs", "retrying")
    pgtest.check(status(db, "docs")[0] >= 300, "docs pending: %s" % (status(db, "docs"),))
    es.clear()
    pgtest.check(sql(db, "SELECT pgpoly.sync_wait('docs', '60 s')") == "t",
                 "documents did not arrive after ES recovered")
    pgtest.check(sql(db, "SELECT docs_diff()") == "0", "the index differs from docs")


def test_es_item_faults(db, es):
    """A _bulk answered 200 with per-item failures: items refused with 429
    (Elasticsearch's full write queue) are retried as an unavailable store,
    for as long as it takes; an item refused with 400 is a rejection."""
    sql(db, "ALTER DATABASE %s SET pgpoly.sync_max_attempts = 2" % db)
    sql(db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE backend_type = 'pgpoly sync worker' AND datname = current_database()")
    es.faults({"path": "_bulk", "count": 12, "item_faults": {"901": 400, "902": 429}},
              {"path": "_bulk", "count": 100000, "item_faults": {"901": 400}})
    sql(db, "INSERT INTO docs VALUES (901, 'rejected'), (902, 'busy a while')")
    pgtest.check(sql(db, "SELECT pgpoly.sync_wait('docs', '60 s')") == "t",
                 "the changes did not arrive or end in the dead letters")
    pgtest.check(sql(db, "SELECT string_agg(key, ',') FROM pgpoly.sync_dead_letters") == "901",
                 "dead letters: %s" % sql(db, "SELECT key, error FROM pgpoly.sync_dead_letters"))
    pgtest.check(sql(db, "SELECT title FROM docs_es WHERE _id = '902'") == "busy a while",
                 "the document refused with 429 was not delivered")
    es.clear()
    sql(db, "ALTER DATABASE %s SET pgpoly.sync_max_attempts = 1000;"
            "DELETE FROM pgpoly.sync_dead_letters; DELETE FROM docs WHERE id IN (901, 902)" % db)
    sql(db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE backend_type = 'pgpoly sync worker' AND datname = current_database()")
    pgtest.check(sql(db, "SELECT pgpoly.sync_wait('docs', '60 s')") == "t", "docs after item faults")
    pgtest.check(sql(db, "SELECT docs_diff()") == "0", "the index differs from docs")


def writer(db, n, seed, errors):
    """n transactions on keys 1..40: update, delete, re-insert, move."""
    rnd = random.Random(seed)
    s = pgtest.Session(db=db)
    for _ in range(n):
        k = rnd.randint(1, 40)
        to = rnd.randint(1, 40)
        op = rnd.choice(["update", "delete", "upsert", "move", "multi"])
        stmt = {
            "update": "UPDATE kv SET v = 'u%d', n = n + 1 WHERE k = %d" % (seed, k),
            "delete": "DELETE FROM kv WHERE k = %d" % k,
            "upsert": "INSERT INTO kv VALUES (%d, 'i%d', 0) ON CONFLICT (k) DO UPDATE "
                      "SET v = excluded.v, n = kv.n - 1" % (k, seed),
            "move": "UPDATE kv SET k = %d WHERE k = %d AND NOT EXISTS "
                    "(SELECT 1 FROM kv WHERE k = %d)" % (to, k, to),
            "multi": "BEGIN; DELETE FROM kv WHERE k = %d; INSERT INTO kv VALUES (%d, 'm', 1) "
                     "ON CONFLICT DO NOTHING; UPDATE kv SET n = 9 WHERE k BETWEEN %d AND %d; "
                     "COMMIT" % (k, k, k, k + 3),
        }[op]
        r = s.run(stmt + ";", timeout=60)
        # Concurrent moves may collide on the primary key: that transaction
        # rolls back, which the sync must not see either.
        if r.rc != 0 and r.sqlstate not in ("23505", "40P01"):
            errors.append(r.err)
            s.run("ROLLBACK;")
    s.close()


def test_paused_concurrent(db, rport):
    sql(db, "INSERT INTO kv SELECT i, 'p', 0 FROM generate_series(1, 40) i "
            "ON CONFLICT (k) DO NOTHING")
    sh.writers_while_paused(rport, writer, (db, 60), lambda: status(db, "kv")[0])
    pgtest.check(sql(db, "SELECT pgpoly.sync_wait('kv', '60 s')") == "t",
                 "changes did not arrive after SIGCONT")
    pgtest.check(sql(db, "SELECT kv_diff()") == "0", "kv differs after concurrent writers")


def test_poison(db, rport):
    # The hash of key 7777 is taken by a string: HSET fails with WRONGTYPE.
    pgtest.redis_cli(rport, "SET", "out:7777", "in the way")
    sql(db, "INSERT INTO kv VALUES (7777, 'poison', 0)")
    for i in range(20):
        sql(db, "INSERT INTO kv VALUES (%d, 'flowing', %d)" % (8000 + i, i))
    flowed = pgtest.wait_for(
        lambda: sql(db, "SELECT count(*) FROM kv_redis WHERE k::int BETWEEN 8000 AND 8019") == "20",
        timeout=60, interval=0.1)
    pgtest.check(flowed, "the other keys did not flow past the rejected one")
    pgtest.check(sql(db, "SELECT count(*) FROM pgpoly.sync_queue q JOIN pgpoly.syncs s "
                         "USING (sync_id) WHERE s.name = 'kv' AND '7777' = ANY (q.keys)") == "1",
                 "the rejected change is not waiting for its retry")
    pgtest.check(sql(db, "SELECT dead_letters FROM pgpoly.sync_status WHERE name = 'kv'") == "0",
                 "the rejected change went to the dead letters too early")
    pgtest.redis_cli(rport, "DEL", "out:7777")
    pgtest.check(sql(db, "SELECT pgpoly.sync_wait('kv', '60 s')") == "t",
                 "the rejected change was not retried")
    pgtest.check(sql(db, "SELECT kv_diff()") == "0", "kv differs after the retry")


def test_drop_while_delivering(db, rport):
    """drop_sync while the worker delivers that sync: it waits for the batch."""
    sql(db, "CREATE TABLE kv2 (k int PRIMARY KEY, v text NOT NULL, n int);"
            "INSERT INTO kv2 SELECT i, 'x', i FROM generate_series(1, 30000) i;"
            "CREATE FOREIGN TABLE kv2_redis (k text OPTIONS (key 'true'), v text, n int) "
            "SERVER sync_redis OPTIONS (table_type 'hash', key_prefix 'out2:', "
            "write_mode 'immediate');"
            "SELECT pgpoly.create_sync('kv2', 'kv2', 'kv2_redis')")
    for _ in range(3):
        sql(db, "UPDATE kv2 SET n = n + 1")
        r = pgtest.psql("SELECT pgpoly.drop_sync('kv2')", db=db, timeout=60, verbose=True)
        pgtest.check(r.rc == 0, "drop_sync during delivery failed: %s" % r.err)
        sql(db, "SELECT pgpoly.create_sync('kv2', 'kv2', 'kv2_redis', backfill => false)")
    sql(db, "SELECT pgpoly.drop_sync('kv2')")
    sql(db, "UPDATE kv SET n = 0 WHERE k = 1")
    pgtest.check(sql(db, "SELECT pgpoly.sync_wait('kv', '60 s')") == "t",
                 "the worker stopped delivering after drop_sync")


def test():
    mark = pgtest.pg_log_mark()
    rport = pgtest.start_redis(name=REDIS_NAME, extra_args=REDIS_ARGS)
    es = Standin()
    db = pgtest.create_db("pgpoly_sync_outage")
    # Fast backoff, and a rejected change retried (not buried) during the test.
    sql(db, "ALTER DATABASE %s SET pgpoly.sync_max_retry_delay = 500;"
            "ALTER DATABASE %s SET pgpoly.sync_max_attempts = 1000" % (db, db))
    sql(db, sh.setup_sql(rport, "out:", timeout_ms=1000) + """
CREATE SERVER sync_es FOREIGN DATA WRAPPER pgpoly_elastic
  OPTIONS (url '%s', timeout_ms '2000');
SELECT pgpoly.elastic_request('sync_es', 'PUT', '/sync_docs', '{}') IS NOT NULL;
CREATE FOREIGN TABLE docs_es (_id text, title text) SERVER sync_es
  OPTIONS (index 'sync_docs');
CREATE TABLE docs (id int PRIMARY KEY, title text);
CREATE FUNCTION docs_diff() RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM (
    (SELECT id::text, title FROM docs EXCEPT ALL SELECT _id, title FROM docs_es)
    UNION ALL
    (SELECT _id, title FROM docs_es EXCEPT ALL SELECT id::text, title FROM docs)) d $$;
SELECT pgpoly.create_sync('docs', 'docs', 'docs_es');
INSERT INTO kv SELECT i, 'v' || i, i FROM generate_series(1, 100) i;
""" % es.url)
    pgtest.check(sql(db, "SELECT pgpoly.sync_wait(NULL, '60 s')") == "t", "initial sync")
    test_redis_down(db, rport)
    test_es_unavailable(db, es)
    test_es_item_faults(db, es)
    test_paused_concurrent(db, rport)
    test_poison(db, rport)
    test_drop_while_delivering(db, rport)
    pgtest.check_pg_log(mark)


pgtest.main(test)
