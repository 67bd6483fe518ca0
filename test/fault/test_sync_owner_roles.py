"""Sync owners and REASSIGN OWNED / DROP OWNED / DROP ROLE.

A role's syncs are its objects in the database: against the harness's Redis,
in a scratch database, role A owns a source, a Redis table and sync s_a.

1. REASSIGN OWNED BY A TO B makes B the owner of s_a (and of its dead
   letters): B sees its last_error, may drop it, and the worker delivers as
   B.  Before, the sync stayed A's: after DROP ROLE A (which nothing
   prevented) it was failing for good, its last_error shown to no one but
   superusers, and no one but a superuser could drop it.
2. ALTER FOREIGN TABLE ... OWNER TO B of an outbox table (whose sync is
   its owner's): the sync and its dead letters are B's.  Before, the sync
   stayed the old owner's, delivered with the old owner's user mapping, and
   was left behind failing once that role was dropped.
3. DROP OWNED BY B drops B's syncs with its tables (as drop_sync), so that
   DROP ROLE B leaves no sync behind.
The statements run in sessions that have loaded pgpoly (a limit, README).
"""

import os

import pgtest

LOADED = "SELECT FROM pgpoly.sync_status LIMIT 0; "


def test():
    db = pgtest.create_db("pgpoly_owner")
    rport = int(os.environ["REDIS_PORT"])
    pid = os.getpid()
    a, b = "regress_own_a_%d" % pid, "regress_own_b_%d" % pid
    pfx = "own%d:" % pid

    def sql(text, role=None):
        if role:
            text = "SET ROLE %s; %s" % (role, text)
        r = pgtest.psql(text, db=db)
        pgtest.check(r.rc == 0, "SQL failed: %s\n%s" % (text.strip()[:200], r.err))
        return r.out.strip().partition("\n")[2] if role else r.out.strip()

    try:
        sql("""
CREATE ROLE %(a)s; CREATE ROLE %(b)s;
GRANT USAGE ON SCHEMA pgpoly TO %(a)s, %(b)s;
GRANT CREATE ON SCHEMA public TO %(a)s, %(b)s;
CREATE SERVER r FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (host '127.0.0.1', port '%(port)d');
GRANT USAGE ON FOREIGN SERVER r TO %(a)s, %(b)s;
CREATE USER MAPPING FOR %(a)s SERVER r OPTIONS (password_required 'false');
CREATE USER MAPPING FOR %(b)s SERVER r OPTIONS (password_required 'false');
""" % {"a": a, "b": b, "port": rport})
        sql("""
CREATE TABLE src (id int PRIMARY KEY, v text);
CREATE FOREIGN TABLE tgt (id text OPTIONS (key 'true'), v text)
  SERVER r OPTIONS (key_prefix '%s');
INSERT INTO src VALUES (1, 'one');
SELECT pgpoly.create_sync('s_a', 'src', 'tgt');
""" % pfx, role=a)
        pgtest.check(sql("SELECT pgpoly.sync_wait('s_a', '30 s')") == "t", "delivered")
        sql("INSERT INTO pgpoly.sync_dead_letters (name, key, op, error, attempts, sync_id, owner) "
            "SELECT name, '9', 'delete', 'x', 5, sync_id, owner FROM pgpoly.syncs")

        # 1. REASSIGN OWNED
        sql(LOADED + "REASSIGN OWNED BY %s TO %s" % (a, b))
        pgtest.check(sql("SELECT owner FROM pgpoly.syncs") == b, "the sync is B's: %s"
                     % sql("SELECT owner FROM pgpoly.syncs"))
        seen = sql("SELECT count(*) FROM pgpoly.sync_dead_letters", role=b)
        pgtest.check(seen == "1", "B sees the dead letter: %r" % seen)
        sql("DROP OWNED BY %s; DROP ROLE %s" % (a, a))
        sql("INSERT INTO src VALUES (2, 'two')")
        pgtest.check(sql("SELECT pgpoly.sync_wait('s_a', '30 s')") == "t",
                     "delivered as B: %s" % sql("SELECT state, last_error FROM pgpoly.sync_status"))
        pgtest.check(sql("SELECT string_agg(id || v, ',' ORDER BY id) FROM tgt") == "1one,2two",
                     "the target")

        # 2. ALTER ... OWNER TO of an outbox table
        sql("""
CREATE FOREIGN TABLE ob (id text OPTIONS (key 'true'), v text)
  SERVER r OPTIONS (key_prefix '%sob:', write_mode 'outbox');
INSERT INTO ob VALUES ('1', 'one');
""" % pfx)
        pgtest.check(sql("SELECT pgpoly.sync_wait('public.ob', '30 s')") == "t", "ob delivered")
        sql("INSERT INTO pgpoly.sync_dead_letters (name, key, op, error, attempts, sync_id, owner) "
            "SELECT name, '9', 'delete', 'x', 5, sync_id, owner FROM pgpoly.syncs "
            "WHERE name = 'public.ob'")
        sql(LOADED + "ALTER FOREIGN TABLE ob OWNER TO %s" % b)
        pgtest.check(sql("SELECT owner FROM pgpoly.syncs WHERE name = 'public.ob'") == b,
                     "the outbox sync follows its table's owner: %s"
                     % sql("SELECT owner FROM pgpoly.syncs WHERE name = 'public.ob'"))
        pgtest.check(sql("SELECT count(*) FROM pgpoly.sync_dead_letters WHERE name = 'public.ob'",
                         role=b) == "1", "B sees the outbox sync's dead letter")

        # 3. DROP OWNED
        sql(LOADED + "DROP OWNED BY %s" % b)
        pgtest.check(sql("SELECT count(*) FROM pgpoly.syncs") == "0", "B's sync is dropped")
        pgtest.check(sql("SELECT count(*) FROM pgpoly.sync_dead_letters") == "0",
                     "with its dead letters")
        sql("DROP ROLE %s" % b)
    finally:
        pgtest.redis_cli(rport, "DEL", pfx + "1", pfx + "2", pfx + "ob:1")
        pgtest.psql("DROP DATABASE %s WITH (FORCE)" % db, db="postgres")
        pgtest.psql("DROP ROLE IF EXISTS %s; DROP ROLE IF EXISTS %s" % (a, b), db="postgres")


pgtest.main(test)
