#!/usr/bin/env python3
"""Catalog changes during a session: where do reads and writes go?

ALTER FOREIGN TABLE / ALTER SERVER / RENAME / DROP + CREATE between the
statements of a session, inside a transaction that already buffered writes,
under a prepared statement with a generic plan, and by another session; and
DROP EXTENSION pgpoly CASCADE + CREATE EXTENSION while another session that
used the extension stays open.  The oracle is the store itself, read
directly (redis-cli, HTTP to the Elasticsearch stand-in), or a native twin
for what a read inside the transaction must see: the rows the target the
table names now holds, plus the transaction's own writes made for that
target, never those it buffered for another one (COMMIT sends those where
they were written for).
"""

import json
import os
import urllib.request

import es_helper
import pgtest

REDIS_PORT = os.environ["REDIS_PORT"]
PFX = "pgpoly_ddl_%d:" % os.getpid()


def rows(r):
    """The sorted lines of a psql -At result."""
    return sorted(l for l in r.out.split("\n") if l)


def ok(r, what):
    pgtest.check(r.rc == 0, "%s: %s" % (what, r.err))
    return r


def redis_keys(pattern, db=0):
    rc, out, err = pgtest.redis_cli(REDIS_PORT, "-n", str(db), "--scan", "--pattern", pattern)
    return sorted(l for l in out.split("\n") if l)


def es_ids(es, index):
    es.request("POST", "/%s/_refresh" % index)
    r = es.request("POST", "/%s/_search" % index, {"size": 100, "query": {"match_all": {}}})
    return sorted(h["_id"] for h in r["hits"]["hits"])


def elastic(db):
    """An index change (ALTER FOREIGN TABLE index, RENAME of a table whose
    name is its index) inside a transaction with buffered writes."""
    es = es_helper.Standin()
    for ix in ("ddl_a", "ddl_b", "ddl_ren_a", "ddl_ren_b"):
        es.request("PUT", "/" + ix, {"mappings": {"properties": {"v": {"type": "keyword"}}}})
    es_helper.bulk(es, "ddl_b", {"index": {"_id": "b0"}}, {"v": "in b"})
    ok(pgtest.psql("CREATE SERVER ddl_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '%s');\n"
                   "CREATE FOREIGN TABLE ddl_e (_id text, v text) SERVER ddl_es "
                   "OPTIONS (index 'ddl_a', refresh 'true');\n"
                   "CREATE FOREIGN TABLE ddl_ren_a (_id text, v text) SERVER ddl_es "
                   "OPTIONS (refresh 'true');" % es.url, db=db), "ES setup")
    s = pgtest.Session(db)
    ok(s.run("BEGIN; INSERT INTO ddl_e VALUES ('a1', 'x');"), "insert a1")
    ok(s.run("ALTER FOREIGN TABLE ddl_e OPTIONS (SET index 'ddl_b');"), "alter index")
    ok(s.run("INSERT INTO ddl_e VALUES ('b1', 'y');"), "insert b1")
    r = ok(s.run("SELECT _id FROM ddl_e;"), "select after the index change")
    pgtest.check(rows(r) == ["b0", "b1"],
                 "ES: after SET index ddl_b the transaction reads ddl_b and its writes "
                 "to ddl_b only, not a1 (buffered for ddl_a): %s" % rows(r))
    r = ok(s.run("SELECT count(*) FROM ddl_e;"), "count after the index change")
    pgtest.check(r.out.strip() == "2", "ES: count(*) after the index change is 2: %r" % r.out)
    r = ok(s.run("SELECT _id FROM ddl_e WHERE _id = 'a1';"), "select a1")
    pgtest.check(rows(r) == [], "ES: a1 is not in ddl_b: %s" % rows(r))
    # the write for ddl_a is still there: switching back shows it again
    ok(s.run("ALTER FOREIGN TABLE ddl_e OPTIONS (SET index 'ddl_a');"), "alter index back")
    r = ok(s.run("SELECT _id FROM ddl_e;"), "select after switching back")
    pgtest.check(rows(r) == ["a1"], "ES: back on ddl_a the transaction reads a1: %s" % rows(r))
    ok(s.run("ALTER FOREIGN TABLE ddl_e OPTIONS (SET index 'ddl_b');"), "alter index again")
    ok(s.run("COMMIT;"), "commit")
    pgtest.check(es_ids(es, "ddl_a") == ["a1"] and es_ids(es, "ddl_b") == ["b0", "b1"],
                 "ES: each write went to the index it was made for: a=%s b=%s"
                 % (es_ids(es, "ddl_a"), es_ids(es, "ddl_b")))

    # a table without an index option reads the index of its name
    ok(s.run("BEGIN; INSERT INTO ddl_ren_a VALUES ('r1', 'x');"), "insert r1")
    ok(s.run("ALTER FOREIGN TABLE ddl_ren_a RENAME TO ddl_ren_b;"), "rename")
    r = ok(s.run("SELECT _id FROM ddl_ren_b;"), "select after rename")
    pgtest.check(rows(r) == [], "ES: after RENAME the table reads index ddl_ren_b, "
                 "which r1 (buffered for ddl_ren_a) will not be in: %s" % rows(r))
    ok(s.run("COMMIT;"), "commit rename")
    pgtest.check(es_ids(es, "ddl_ren_a") == ["r1"] and es_ids(es, "ddl_ren_b") == [],
                 "ES: r1 went to ddl_ren_a: %s %s"
                 % (es_ids(es, "ddl_ren_a"), es_ids(es, "ddl_ren_b")))

    # an outbox write is delivered where the table points then: reads show it
    ok(s.run("CREATE FOREIGN TABLE ddl_eo (_id text, v text) SERVER ddl_es "
             "OPTIONS (index 'ddl_ren_a', write_mode 'outbox');"), "outbox table")
    ok(s.run("BEGIN; INSERT INTO ddl_eo VALUES ('o1', 'x');"
             "ALTER FOREIGN TABLE ddl_eo OPTIONS (SET index 'ddl_ren_b');"), "outbox write, alter")
    r = ok(s.run("SELECT _id FROM ddl_eo;"), "outbox read")
    pgtest.check(rows(r) == ["o1"], "ES outbox: the write shows on the new index: %s" % rows(r))
    r = ok(s.run("COMMIT; SELECT pgpoly.sync_wait('public.ddl_eo', '20 s');"), "outbox commit")
    pgtest.check(r.out.strip() == "t" and es_ids(es, "ddl_ren_b") == ["o1"],
                 "ES outbox: delivered to the new index: %s" % es_ids(es, "ddl_ren_b"))

    # prepared statements with a generic plan follow the new index
    ok(s.run("SET plan_cache_mode = force_generic_plan;"
             "PREPARE ddl_es_sel(text) AS SELECT v FROM ddl_e WHERE _id = $1;"
             "PREPARE ddl_es_ins(text) AS INSERT INTO ddl_e VALUES ($1, 'p');"), "prepare")
    r = ok(s.run("EXECUTE ddl_es_sel('b0');"), "execute")
    pgtest.check(r.out.strip() == "in b", "ES: prepared read of ddl_b: %r" % r.out)
    ok(s.run("ALTER FOREIGN TABLE ddl_e OPTIONS (SET index 'ddl_a');"), "alter under prepared")
    r = ok(s.run("EXECUTE ddl_es_sel('b0');"), "execute after alter")
    pgtest.check(r.out.strip() == "", "ES: prepared read follows the index change: %r" % r.out)
    ok(s.run("EXECUTE ddl_es_ins('p1');"), "prepared insert")
    pgtest.check(es_ids(es, "ddl_a") == ["a1", "p1"],
                 "ES: prepared insert went to ddl_a: %s" % es_ids(es, "ddl_a"))
    s.close()


def vector(db, chroma):
    """A collection change inside a transaction with buffered writes."""
    ok(pgtest.psql("CREATE SERVER ddl_vs FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url '%s');\n"
                   "CREATE FOREIGN TABLE ddl_v (id text, embedding real[], document text) SERVER ddl_vs "
                   "OPTIONS (collection 'ddl_va_%d', create_collection 'true', distance 'l2');\n"
                   "CREATE FOREIGN TABLE ddl_vb (id text, embedding real[], document text) SERVER ddl_vs "
                   "OPTIONS (collection 'ddl_vb_%d', create_collection 'true', distance 'l2');\n"
                   "INSERT INTO ddl_vb VALUES ('b0', '{1,1}', 'in b');"
                   % (chroma, os.getpid(), os.getpid()), db=db), "vector setup")
    s = pgtest.Session(db)
    ok(s.run("BEGIN; INSERT INTO ddl_v VALUES ('a1', '{1,0}', 'x');"), "insert a1")
    ok(s.run("ALTER FOREIGN TABLE ddl_v OPTIONS (SET collection 'ddl_vb_%d');" % os.getpid()),
       "alter collection")
    ok(s.run("INSERT INTO ddl_v VALUES ('b1', '{0,1}', 'y');"), "insert b1")
    r = ok(s.run("SELECT id FROM ddl_v;"), "select after the collection change")
    pgtest.check(rows(r) == ["b0", "b1"],
                 "vector: after SET collection the transaction reads the new collection and "
                 "its writes to it only: %s" % rows(r))
    r = ok(s.run("INSERT INTO ddl_v VALUES ('a1', '{1,1}', 'z') ON CONFLICT DO NOTHING;"),
           "insert a1 into the new collection")
    pgtest.check(r.rc == 0, "vector: a1 does not conflict in the new collection")
    ok(s.run("COMMIT;"), "commit")
    r = ok(s.run("SELECT id, document FROM ddl_vb ORDER BY id;"), "read b")
    pgtest.check(rows(r) == ["a1|z", "b0|in b", "b1|y"], "vector: collection b: %s" % rows(r))
    ok(s.run("ALTER FOREIGN TABLE ddl_v OPTIONS (SET collection 'ddl_va_%d');" % os.getpid()),
       "alter back")
    r = ok(s.run("SELECT id, document FROM ddl_v ORDER BY id;"), "read a")
    pgtest.check(rows(r) == ["a1|x"], "vector: collection a: %s" % rows(r))
    s.close()


def redis(db):
    """key_prefix and db changes in a transaction, under prepared
    statements, and by another session; DROP + CREATE under a prepared
    statement."""
    other = pgtest.start_redis()
    ok(pgtest.psql("CREATE SERVER ddl_r FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%s');\n"
                   "CREATE FOREIGN TABLE ddl_t (id text OPTIONS (key 'true'), v text) SERVER ddl_r "
                   "OPTIONS (key_prefix '%sA:');" % (REDIS_PORT, PFX), db=db), "redis setup")
    s = pgtest.Session(db)
    ok(s.run("BEGIN; INSERT INTO ddl_t VALUES ('1', 'one');"), "insert 1")
    ok(s.run("ALTER FOREIGN TABLE ddl_t OPTIONS (SET key_prefix '%sB:');" % PFX), "alter prefix")
    ok(s.run("INSERT INTO ddl_t VALUES ('2', 'two');"), "insert 2")
    r = ok(s.run("SELECT id FROM ddl_t;"), "select")
    pgtest.check(rows(r) == ["2"], "redis: the new prefix's rows only: %s" % rows(r))
    ok(s.run("COMMIT;"), "commit")
    pgtest.check(redis_keys(PFX + "*") == [PFX + "A:1", PFX + "B:2"],
                 "redis: each write under the prefix it was made for: %s" % redis_keys(PFX + "*"))

    # prepared, generic plan: follows ALTER and DROP + CREATE
    ok(s.run("SET plan_cache_mode = force_generic_plan;"
             "PREPARE ddl_sel(text) AS SELECT v FROM ddl_t WHERE id = $1;"
             "PREPARE ddl_ins(text) AS INSERT INTO ddl_t VALUES ($1, 'p');"), "prepare")
    ok(s.run("ALTER FOREIGN TABLE ddl_t OPTIONS (SET key_prefix '%sC:');" % PFX), "alter")
    ok(s.run("EXECUTE ddl_ins('3');"), "execute insert")
    r = ok(s.run("EXECUTE ddl_sel('2');"), "execute select")
    pgtest.check(r.out.strip() == "", "redis: prepared read follows the prefix: %r" % r.out)
    ok(s.run("DROP FOREIGN TABLE ddl_t; CREATE FOREIGN TABLE ddl_t (id text OPTIONS (key 'true'), "
             "v text) SERVER ddl_r OPTIONS (key_prefix '%sD:');" % PFX), "drop + create")
    ok(s.run("EXECUTE ddl_ins('4');"), "execute insert after re-create")
    pgtest.check(redis_keys(PFX + "[CD]:*") == [PFX + "C:3", PFX + "D:4"],
                 "redis: prepared inserts went to the table's prefix of the moment: %s"
                 % redis_keys(PFX + "[CD]:*"))

    # another session moves the server to another Redis between statements
    r = ok(s.run("SELECT id FROM ddl_t;"), "select")
    pgtest.check(rows(r) == ["4"], "redis: before the move: %s" % rows(r))
    ok(pgtest.psql("ALTER SERVER ddl_r OPTIONS (SET port '%d');" % other, db=db), "move")
    ok(s.run("EXECUTE ddl_ins('5');"), "insert after the move")
    r = ok(s.run("SELECT id FROM ddl_t;"), "select after the move")
    pgtest.check(rows(r) == ["5"], "redis: after the move the session reads the new Redis: %s"
                 % rows(r))
    rc, out, err = pgtest.redis_cli(other, "--scan", "--pattern", PFX + "*")
    pgtest.check(out.split() == [PFX + "D:5"], "redis: the insert went to the new Redis: %r" % out)
    pgtest.check(redis_keys(PFX + "D:*") == [PFX + "D:4"], "redis: nothing new on the old one")
    s.close()


def outbox(db):
    """An outbox table dropped (drained, or with changes queued) and created
    again under its name."""
    ok(pgtest.psql("CREATE SERVER ddl_ob FOREIGN DATA WRAPPER pgpoly_redis "
                   "OPTIONS (port '%s', connect_timeout_ms '200');" % REDIS_PORT, db=db), "setup")
    table = ("CREATE FOREIGN TABLE ddl_o (id text OPTIONS (key 'true'), v text) SERVER ddl_ob "
             "OPTIONS (key_prefix '%s%%s:', write_mode 'outbox');" % PFX)
    s = pgtest.Session(db)
    ok(s.run(table % "o1" + "INSERT INTO ddl_o VALUES ('1', 'x');"), "write o1")
    r = ok(s.run("SELECT pgpoly.sync_wait('public.ddl_o', '20 s');"), "wait o1")
    pgtest.check(r.out.strip() == "t", "outbox: delivered: %r" % r.out)
    ok(s.run("DROP FOREIGN TABLE ddl_o;" + table % "o2"), "drop and create again")
    r = s.run("INSERT INTO ddl_o VALUES ('2', 'y');")
    pgtest.check(r.rc == 0, "outbox: a table created again under the name of a drained, "
                 "dropped one takes writes: %s" % r.err)
    r = ok(s.run("SELECT pgpoly.sync_wait('public.ddl_o', '20 s');"), "wait o2")
    pgtest.check(redis_keys(PFX + "o[12]:*") == [PFX + "o1:1", PFX + "o2:2"],
                 "outbox: both delivered: %s" % redis_keys(PFX + "o[12]:*"))
    # dropped with a change queued (its store down): failing, with a clear error
    ok(s.run("ALTER SERVER ddl_ob OPTIONS (SET port '1');"
             "INSERT INTO ddl_o VALUES ('3', 'z'); DROP FOREIGN TABLE ddl_o;"
             "ALTER SERVER ddl_ob OPTIONS (SET port '%s');" % REDIS_PORT), "drop with a change queued")
    got = pgtest.wait_for(lambda: s.value(
        "SELECT state || ' ' || last_error FROM pgpoly.sync_status WHERE name = 'public.ddl_o';")
        .startswith("failing the foreign table"), timeout=20)
    pgtest.check(got, "outbox: the sync of a table dropped with changes queued is failing and "
                 "says why: %r" % s.value("SELECT state, last_error FROM pgpoly.sync_status;"))
    r = s.run(table % "o3" + "INSERT INTO ddl_o VALUES ('4', 'w');")
    pgtest.check(r.sqlstate == "42710", "outbox: its name stays taken while it holds "
                 "changes: %s" % r.err)
    ok(s.run("SELECT pgpoly.drop_sync('public.ddl_o'); INSERT INTO ddl_o VALUES ('4', 'w');"),
       "write after drop_sync")
    r = ok(s.run("SELECT pgpoly.sync_wait('public.ddl_o', '20 s');"), "wait o3")
    pgtest.check(r.out.strip() == "t" and redis_keys(PFX + "o3:*") == [PFX + "o3:4"],
                 "outbox: delivered after drop_sync: %s" % redis_keys(PFX + "o3:*"))
    s.close()


def drop_extension(db):
    """DROP EXTENSION pgpoly CASCADE and CREATE EXTENSION in one session
    while another that used the extension stays open, then both use it."""
    setup = ("SET client_min_messages = warning;\n"
             "CREATE SERVER ddl_x FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%s');\n"
             "CREATE FOREIGN TABLE ddl_fv (user_id text OPTIONS (key 'true'), clicks int) SERVER ddl_x "
             "OPTIONS (key_prefix '%sfv%%s:');\n"
             "SELECT pgpoly.create_feature_view('ddl_fv', 'user_id', 'ddl_fv', "
             "offline_table => 'ddl_fv_hist');\n" % (REDIS_PORT, PFX))
    use = ("SELECT pgpoly.put_features('ddl_fv', 'u1', '{\"clicks\": %d}', '2024-01-0%d');\n"
           "SELECT features->>'clicks', source FROM pgpoly.get_online_features('ddl_fv', ARRAY['u1']);\n"
           "SELECT pgpoly.register_model_version('ddl_m', 's3://x') >= 1;\n"
           "SELECT pgpoly.log_prediction('ddl_m', 1, 'e', '1', ts => '2024-0%d-05') > 0;\n"
           "SELECT count(*) FROM pgpoly.predictions;\n")
    ok(pgtest.psql("CREATE TABLE ddl_fv_hist (entity text, event_time timestamptz, "
                   "created_at timestamptz DEFAULT clock_timestamp(), clicks int);\n" +
                   setup % 1, db=db), "setup 1")
    a = pgtest.Session(db)
    r = ok(a.run(use % (1, 1, 1)), "use 1")
    pgtest.check("1|online" in r.out and r.out.split()[-1] == "1", "first use: %r" % r.out)
    b = pgtest.Session(db)
    ok(b.run("DROP EXTENSION pgpoly CASCADE; CREATE EXTENSION pgpoly;\n" + setup % 2),
       "drop and create the extension")
    r = ok(a.run(use % (2, 2, 2)), "the other session uses it again")
    pgtest.check("2|online" in r.out and r.out.split()[-1] == "1",
                 "the other session sees the new extension's objects: %r" % r.out)
    r = ok(b.run(use % (3, 3, 3)), "the dropping session uses it")
    pgtest.check("3|online" in r.out and r.out.split()[-1] == "2",
                 "the dropping session sees the new extension's objects: %r" % r.out)
    a.close()
    b.close()


def test():
    db = pgtest.create_db("pgpoly_ddl")
    mark = pgtest.pg_log_mark()
    redis(db)
    elastic(db)
    chroma = os.environ.get("CHROMA_URL")
    if chroma:
        vector(db, chroma)
    else:
        print("note: CHROMA_URL not set, vector part skipped")
    outbox(db)
    drop_extension(pgtest.create_db("pgpoly_ddl_x"))
    pgtest.check_pg_log(mark)


pgtest.main(test)
