"""Outbox tables renamed or moved to another schema: their sync follows.

The sync of a table in write_mode 'outbox' is named after the table with its
schema (README).  A rename in a session that has loaded pgpoly renames the
sync at once; one in another session, when the worker next runs.  Against
the harness's Redis, in a scratch database:

1. ALTER FOREIGN TABLE ob RENAME TO ob2: the sync (and its dead letters) is
   named public.ob2; sync_wait('public.ob2') waits for its changes.
2. ALTER TABLE ... SET SCHEMA and ALTER SCHEMA ... RENAME (names that need
   quoting): the sync is named as quote_ident would name the table.  A
   rename in a session that has not loaded pgpoly: the worker renames it.
3. An outbox table created again under the old name public.ob takes writes
   (its own sync; before, the renamed table's sync kept the name and every
   write was refused with 42710) and both tables' changes are delivered.
4. A rename in a session that has not loaded pgpoly, and in the same
   transaction an outbox table created under the old name and written (the
   write loads pgpoly; the worker has not run): the write's COMMIT renames
   the old table's sync out of the way instead of refusing it (42710).
"""

import os

import pgtest

LOADED = "SELECT FROM pgpoly.sync_status LIMIT 0; "

def test():
    db = pgtest.create_db("pgpoly_obren")
    rport = int(os.environ["REDIS_PORT"])
    pfx = "obren%d" % os.getpid()

    def sql(text):
        r = pgtest.psql(text, db=db)
        pgtest.check(r.rc == 0, "SQL failed: %s\n%s" % (text.strip()[:200], r.err))
        return r.out.strip()

    def names():
        return sql("SELECT string_agg(name, ',' ORDER BY name) FROM pgpoly.syncs")

    sql("""
CREATE SERVER r FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (host '127.0.0.1', port '%d');
CREATE FOREIGN TABLE ob (k text OPTIONS (key 'true'), v text)
  SERVER r OPTIONS (key_prefix '%s:a:', write_mode 'outbox');
CREATE FOREIGN TABLE ob_now (k text OPTIONS (key 'true'), v text)
  SERVER r OPTIONS (key_prefix '%s:a:');
CREATE FOREIGN TABLE ob_new_now (k text OPTIONS (key 'true'), v text)
  SERVER r OPTIONS (key_prefix '%s:b:');
INSERT INTO ob VALUES ('1', 'one');
""" % (rport, pfx, pfx, pfx))
    pgtest.check(sql("SELECT pgpoly.sync_wait('public.ob', '30 s')") == "t", "delivered")
    # a dead letter of the sync (as the worker files one)
    sql("INSERT INTO pgpoly.sync_dead_letters (name, key, op, error, attempts, sync_id, owner) "
        "SELECT name, '9', 'delete', 'x', 5, sync_id, owner FROM pgpoly.syncs")

    # 1. RENAME (in a session that has loaded pgpoly: sync_status calls it)
    sql(LOADED + "ALTER FOREIGN TABLE ob RENAME TO ob2")
    pgtest.check(names() == "public.ob2", "the sync follows RENAME: %s" % names())
    pgtest.check(sql("SELECT name FROM pgpoly.sync_dead_letters") == "public.ob2",
                 "the dead letter follows RENAME")
    sql("INSERT INTO ob2 VALUES ('2', 'two')")
    pgtest.check(sql("SELECT pgpoly.sync_wait('public.ob2', '30 s')") == "t",
                 "sync_wait under the new name")

    # 2. SET SCHEMA, schema renamed
    sql(LOADED + 'CREATE SCHEMA "Out box"; ALTER TABLE ob2 SET SCHEMA "Out box"')
    pgtest.check(names() == '"Out box".ob2', "the sync follows SET SCHEMA: %s" % names())
    sql(LOADED + 'ALTER SCHEMA "Out box" RENAME TO outbox2')
    pgtest.check(names() == "outbox2.ob2", "the sync follows ALTER SCHEMA RENAME: %s" % names())

    # a session that has not loaded pgpoly: the worker renames the sync
    sql("ALTER TABLE outbox2.ob2 RENAME TO ob3")
    sql("SELECT pgpoly.sync_wait(NULL, '10 s')")
    pgtest.check(pgtest.wait_for(lambda: names() == "outbox2.ob3", timeout=20),
                 "the worker renames the sync: %s" % names())
    sql(LOADED + "ALTER TABLE outbox2.ob3 RENAME TO ob2")

    # 3. a table created again under the old name
    sql("""
CREATE FOREIGN TABLE ob (k text OPTIONS (key 'true'), v text)
  SERVER r OPTIONS (key_prefix '%s:b:', write_mode 'outbox');
""" % pfx)
    r = pgtest.psql("INSERT INTO ob VALUES ('3', 'three')", db=db)
    pgtest.check(r.rc == 0, "a write to the new public.ob: %s" % r.err)
    sql("INSERT INTO outbox2.ob2 VALUES ('4', 'four')")
    pgtest.check(sql("SELECT pgpoly.sync_wait(NULL, '30 s')") == "t", "all delivered")
    pgtest.check(names() == "outbox2.ob2,public.ob", "two syncs: %s" % names())
    pgtest.check(sql("SELECT string_agg(k || v, ',' ORDER BY k) FROM ob_now")
                 == "1one,2two,4four", "the renamed table's keys")
    pgtest.check(sql("SELECT string_agg(k || v, ',' ORDER BY k) FROM ob_new_now")
                 == "3three", "the new table's keys")

    # 4. renamed where pgpoly was not loaded, a new table under the old name
    r = pgtest.psql("""
ALTER TABLE public.ob RENAME TO ob5;
CREATE FOREIGN TABLE ob (k text OPTIONS (key 'true'), v text)
  SERVER r OPTIONS (key_prefix '%s:c:', write_mode 'outbox');
INSERT INTO ob VALUES ('5', 'five');
""" % pfx, db=db)
    pgtest.check(r.rc == 0, "a write to a table created under a name renamed away: %s" % r.err)
    pgtest.check(sql("SELECT pgpoly.sync_wait(NULL, '30 s')") == "t", "all delivered (4)")
    pgtest.check(names() == "outbox2.ob2,public.ob,public.ob5", "three syncs: %s" % names())
    sql("CREATE FOREIGN TABLE ob_c_now (k text OPTIONS (key 'true'), v text) "
        "SERVER r OPTIONS (key_prefix '%s:c:')" % pfx)
    pgtest.check(sql("SELECT string_agg(k || v, ',') FROM ob_c_now") == "5five",
                 "the newest table's key")
    pgtest.redis_cli(rport, "DEL", pfx + ":a:1", pfx + ":a:2", pfx + ":a:4", pfx + ":b:3",
                     pfx + ":c:5")


pgtest.main(test)
