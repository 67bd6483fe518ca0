#!/usr/bin/env python3
"""A sync's columns after pg_dump / pg_restore, when the tables had dropped columns.

A sync records its columns by number (attnum), and a restored table numbers
its columns anew without the dropped ones.  The source, the target and an
outbox table here each had columns dropped at other places, two source
columns swapped their names, and the sync and the outbox table have changes
queued (their store was down) and a dead
letter when the dump is taken, and the database is then dropped (moved: a
copy restored while it exists would not deliver).  Restored into a fresh database whose server then points at
a live Redis, the worker delivers every value into its own field, the
queued changes and the ones written after the restore alike (the stored
hashes are read directly).  Restored with a mapped column dropped before
the syncs' rows came in, the sync fails clearly (state failing, last_error names
the column), and a write to the outbox table whose queued change names a
column no longer there fails with 42703; no value lands in a wrong field.
"""

import os
import subprocess
import time

import pgtest

REDIS_PORT = os.environ["REDIS_PORT"]

SETUP = r"""
SET client_min_messages = warning;
CREATE SERVER rs_r FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (port '%(dead)s', connect_timeout_ms '200');
CREATE USER MAPPING FOR CURRENT_USER SERVER rs_r;
CREATE TABLE rs_src (s1 int, id int PRIMARY KEY, a text, s2 int, b text, c text, e text);
ALTER TABLE rs_src DROP COLUMN s1, DROP COLUMN s2;
CREATE FOREIGN TABLE rs_tgt (id text OPTIONS (key 'true'), t1 text, c text, t2 text, t3 text,
                             a text, b text)
  SERVER rs_r OPTIONS (table_type 'hash', key_prefix '%(pfx)ssync:');
ALTER FOREIGN TABLE rs_tgt DROP COLUMN t1, DROP COLUMN t2, DROP COLUMN t3;
INSERT INTO rs_src SELECT g, 'a' || g, 'b' || g, 'c' || g, 'e' || g FROM generate_series(1, 3) g;
SELECT pgpoly.create_sync('rs_sync', 'rs_src', 'rs_tgt');
UPDATE rs_src SET b = 'B' || id WHERE id = 2;
INSERT INTO rs_src VALUES (4, 'a4', 'b4', 'c4', 'e4');

CREATE FOREIGN TABLE rs_ob (o1 text, o2 text, id text OPTIONS (key 'true'), o3 text, p text, q text)
  SERVER rs_r OPTIONS (table_type 'hash', key_prefix '%(pfx)sob:', write_mode 'outbox');
ALTER FOREIGN TABLE rs_ob DROP COLUMN o1, DROP COLUMN o2, DROP COLUMN o3;
INSERT INTO rs_ob VALUES ('k1', 'p1', 'q1'), ('k2', 'p2', NULL);
INSERT INTO rs_ob (id, q) VALUES ('k3', 'q3');
-- a dead letter of it (as the worker files one), retried after the restore
INSERT INTO pgpoly.sync_dead_letters (name, key, op, payload, error, attempts, sync_id, owner, writer)
SELECT name, 'k5', 'upsert', '{"id": "k5", "p": "p5", "q": "q5"}', 'WRONGTYPE', 5, sync_id, owner,
       current_user::regrole
FROM pgpoly.syncs WHERE name = 'public.rs_ob';
-- the sync's columns follow a rename: the column named b now feeds field a
ALTER TABLE rs_src RENAME COLUMN a TO tmp;
ALTER TABLE rs_src RENAME COLUMN b TO a;
ALTER TABLE rs_src RENAME COLUMN tmp TO b;
"""


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(cmd), p.stderr))
    return p


def query(sql, db):
    r = pgtest.psql(sql, db=db, timeout=120)
    if r.rc != 0 or "ERROR" in r.err:
        raise RuntimeError("query failed in %s: %s" % (db, r.err))
    return r.out


def restore(dump, between):
    """A fresh database with the dump restored, SQL between run after the
    tables' data and before the syncs' rows and queued changes come in."""
    name = "pgpoly_rscol_%d_%d" % (os.getpid(), len(pgtest._databases))
    subprocess.run(["dropdb", "--if-exists", "--force", name], capture_output=True)
    run(["createdb", name])
    pgtest._databases.append(name)
    toc = run(["pg_restore", "-l", dump]).stdout.split("\n")
    syncs = [line for line in toc
             if "TABLE DATA pgpoly syncs " in line or "TABLE DATA pgpoly sync_queue " in line]
    pgtest.check(len(syncs) == 2, "the dump holds the syncs and their queue: %s" % syncs)
    lists = []
    for i, lines in enumerate(([line for line in toc if line not in syncs], syncs)):
        path = "%s.%s.%d.list" % (dump, name, i)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        lists.append(path)
    try:
        run(["pg_restore", "--exit-on-error", "--section=pre-data", "-d", name, dump])
        run(["pg_restore", "--exit-on-error", "--section=data", "-L", lists[0], "-d", name, dump])
        query(between, name)
        run(["pg_restore", "--exit-on-error", "-L", lists[1], "-d", name, dump])
        run(["pg_restore", "--exit-on-error", "--section=post-data", "-d", name, dump])
    finally:
        for path in lists:
            os.unlink(path)
    return name


def hgetall(key):
    rc, out, err = pgtest.redis_cli(REDIS_PORT, "HGETALL", key)
    if rc != 0:
        raise RuntimeError("HGETALL %s failed: %s" % (key, err))
    items = out.split("\n") if out else []
    return dict(zip(items[0::2], items[1::2]))


def test():
    pfx = "pgpoly_rscol_%d:" % os.getpid()
    dead = pgtest.free_port()
    src = pgtest.create_db("pgpoly_rscol_src")
    r = pgtest.psql(SETUP % {"dead": dead, "pfx": pfx}, db=src, timeout=120)
    if r.rc != 0 or "ERROR" in r.err:
        raise RuntimeError("setup failed: %s" % r.err)
    st = query("SELECT name, pending FROM pgpoly.sync_status ORDER BY 1", src)
    pgtest.check(st.split() == ["public.rs_ob|3", "rs_sync|5"],
                 "the changes stay queued while the store is down: %s" % st)

    dump = os.path.join(pgtest.work_dir(), "pgpoly_rscol_%d.dump" % os.getpid())
    run(["pg_dump", "-Fc", "-f", dump, src])
    # a move: while src exists, a copy restored in its cluster delivers nothing
    # (test_sync_restore_same_cluster.py)
    run(["dropdb", "--force", src])
    try:
        restored(dump, pfx)
        renamed(dump)
    finally:
        os.unlink(dump)


def restored(dump, pfx):
    """Restored as is: every value lands in its own field."""
    db = restore(dump, "ALTER SERVER rs_r OPTIONS (SET port '%s');" % REDIS_PORT)
    # written after the restore, before or while the worker maps the columns again
    query("SELECT pgpoly.sync_retry('public.rs_ob');"
          "UPDATE rs_src SET c = 'C3' WHERE id = 3;"
          "INSERT INTO rs_src VALUES (5, 'a5', 'b5', 'c5', 'e5');"
          "INSERT INTO rs_ob VALUES ('k4', 'p4', 'q4');", db)
    ok = query("SELECT pgpoly.sync_wait(NULL, '60 seconds')", db).strip()
    st = query("SELECT name, state, pending, last_error FROM pgpoly.sync_status ORDER BY 1", db)
    pgtest.check(ok == "t", "the restored syncs deliver everything: %s" % st)
    want = {
        "sync:1": {"a": "a1", "b": "b1", "c": "c1"},
        "sync:2": {"a": "a2", "b": "B2", "c": "c2"},
        "sync:3": {"a": "a3", "b": "b3", "c": "C3"},
        "sync:4": {"a": "a4", "b": "b4", "c": "c4"},
        "sync:5": {"a": "a5", "b": "b5", "c": "c5"},
        "ob:k1": {"p": "p1", "q": "q1"},
        "ob:k2": {"p": "p2"},
        "ob:k3": {"q": "q3"},
        "ob:k4": {"p": "p4", "q": "q4"},
        "ob:k5": {"p": "p5", "q": "q5"},
    }
    for key, fields in want.items():
        got = hgetall(pfx + key)
        pgtest.check(got == fields, "%s holds %s: %s" % (key, fields, got))
    # the recorded columns are the restored tables' now
    rows = query("SELECT name, source_ref = pgpoly._sync_ref(source), target_ref = pgpoly._sync_ref(target), "
                 "key_attnum, source_attnums, target_attnums, source_columns, target_columns "
                 "FROM pgpoly.syncs ORDER BY 1", db)
    pgtest.check(rows.split("\n")[:2] == [
        "public.rs_ob||t|1|{}|{}||{id,p,q}",
        "rs_sync|t|t|1|{4,2,3}|{2,3,4}|{id,b,a,c,e}|{id,c,a,b}"],
        "the syncs' rows are numbered for the restored tables: %s" % rows)
    # the capture trigger and the worker keep working on the restored tables
    query("UPDATE rs_src SET a = 'A1' WHERE id = 1;"
          "UPDATE rs_ob SET q = 'Q1' WHERE id = 'k1';", db)
    pgtest.check(query("SELECT pgpoly.sync_wait(NULL, '30 seconds')", db).strip() == "t",
                 "the later changes are delivered")
    got = hgetall(pfx + "sync:1")
    pgtest.check(got == {"a": "a1", "b": "A1", "c": "c1"}, "sync:1 after a later change: %s" % got)
    got = hgetall(pfx + "ob:k1")
    pgtest.check(got == {"p": "p1", "q": "Q1"}, "ob:k1 after a later change: %s" % got)
    for key in want:
        pgtest.redis_cli(REDIS_PORT, "DEL", pfx + key)


def renamed(dump):
    """Restored with mapped columns gone: a clear failure, never a guess."""
    db = restore(dump, "ALTER TABLE rs_src DROP COLUMN b;"
                       "ALTER FOREIGN TABLE rs_ob DROP COLUMN q;")
    query("SELECT pgpoly.sync_wait(NULL, '1 second')", db)

    def failing():
        st = query("SELECT state, last_error FROM pgpoly.sync_status WHERE name = 'rs_sync'", db)
        return st.startswith("failing|")
    pgtest.wait_for(failing, timeout=30, what="rs_sync failing")
    st = query("SELECT state, last_error FROM pgpoly.sync_status WHERE name = 'rs_sync'", db)
    pgtest.check('column "b" of pgpoly sync "rs_sync" no longer exists in its source "rs_src"'
                 in st, "last_error names the column: %s" % st)
    r = pgtest.psql("INSERT INTO rs_ob VALUES ('k9', 'p9');", db=db, verbose=True)
    pgtest.check(r.rc != 0 and r.sqlstate == "42703" and 'column "q"' in r.err
                 and "drop_sync" in r.err,
                 "a write to the outbox table fails with 42703 naming the column: %s" % r.err)
    # the source still takes writes (its key column is there)
    query("INSERT INTO rs_src VALUES (7, 'b7', 'c7', 'e7');", db)
    pend = query("SELECT pending FROM pgpoly.sync_status WHERE name = 'rs_sync'", db).strip()
    pgtest.check(pend == "6", "the source's new change is queued: %s" % pend)


pgtest.main(test)
