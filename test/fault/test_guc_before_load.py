#!/usr/bin/env python3
"""pgpoly.* settings made before the library is loaded are kept.

A new session has not loaded pgpoly yet: its pgpoly.* settings are
placeholders until _PG_init defines the variables, and the prefix reservation
deletes every placeholder still undefined at that moment.  Each way a value
can arrive before the load is tried with pgpoly.enable_batched_join = off,
in a fresh session (a new backend), and the value must survive the load:

  * ALTER DATABASE ... SET;
  * ALTER ROLE ... IN DATABASE ... SET;
  * PGOPTIONS='-c ...' at connection;
  * a SET as the session's first statement.

The first statement that uses pgpoly loads it; SHOW then says off, and the
plan of a local-to-Redis join on the key has no Redis Batched Join (it does
when the setting is on, checked as the control).  A misspelt pgpoly.* name is
still refused after the load (the prefix stays reserved).
"""

import os

import pgtest

check = pgtest.check

JOIN = ("EXPLAIN (COSTS OFF) SELECT * FROM local_keys l "
        "JOIN kv ON kv.key = l.k;")


def session_sql(prefix=""):
    """SQL of a fresh session: maybe a SET, a load, then SHOW and the plan."""
    return (prefix +
            "SELECT count(*) FROM pg_settings WHERE name = 'pgpoly.max_response_size';\n"
            "SELECT count(*) FROM kv WHERE key = 'x';\n"
            "SHOW pgpoly.enable_batched_join;\n" + JOIN)


def loaded_before(db, env=None):
    """Whether pgpoly is already loaded when a fresh session starts."""
    r = pgtest.psql("SELECT count(*) FROM pg_settings "
                    "WHERE name = 'pgpoly.max_response_size';", db=db, env=env)
    return r.out.strip() != "0"


def expect(r, setting, what):
    """Check a session's output: the SHOW value and the join plan."""
    if not check(r.rc == 0, "%s: session failed: %s" % (what, r.err)):
        return
    lines = [l for l in r.out.strip().splitlines() if l != "SET"]
    check(lines[0] == "0", "%s: pgpoly was already loaded at session start "
          "(the test would prove nothing): %s" % (what, lines[0]))
    check(setting in lines, "%s: SHOW pgpoly.enable_batched_join is not %s: %s"
          % (what, setting, r.out))
    batched = "Redis Batched Join" in r.out
    check(batched == (setting == "on"),
          "%s: plan %s a Redis Batched Join with the setting %s:\n%s"
          % (what, "has" if batched else "lacks", setting, r.out))
    check("removed" not in r.err and "invalid configuration parameter" not in r.err,
          "%s: the setting was dropped at load: %s" % (what, r.err))


def test():
    db = pgtest.create_db("pgpoly_guc_load")
    role = db + "_r"
    r = pgtest.psql("""
        CREATE SERVER r FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%s');
        CREATE FOREIGN TABLE kv (key text, value text) SERVER r
            OPTIONS (table_type 'string', key_prefix 'guc_load:');
        CREATE TABLE local_keys (k text);
        INSERT INTO local_keys SELECT 'k' || g FROM generate_series(1, 50) g;
        ANALYZE local_keys;
        CREATE ROLE %s LOGIN SUPERUSER;
    """ % (os.environ["REDIS_PORT"], role), db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    try:
        # Control: the default plan batches the join.
        expect(pgtest.psql(session_sql(), db=db), "on", "default")

        # The session's first statement.
        expect(pgtest.psql(session_sql("SET pgpoly.enable_batched_join = off;\n"),
                           db=db), "off", "SET before load")

        # PGOPTIONS at connection.
        expect(pgtest.psql(session_sql(), db=db,
                           env={"PGOPTIONS": "-c pgpoly.enable_batched_join=off"}),
               "off", "PGOPTIONS")

        # ALTER ROLE ... IN DATABASE ... SET, for a role logging in.
        pgtest.psql("ALTER ROLE %s IN DATABASE %s SET pgpoly.enable_batched_join = off;"
                    % (role, db), db=db)
        expect(pgtest.psql(session_sql(), db=db, env={"PGUSER": role}),
               "off", "ALTER ROLE SET")

        # ALTER DATABASE ... SET.
        pgtest.psql("ALTER DATABASE %s SET pgpoly.enable_batched_join = off;" % db,
                    db=db)
        expect(pgtest.psql(session_sql(), db=db), "off", "ALTER DATABASE SET")

        # The prefix is still reserved once loaded: a misspelling is refused.
        r = pgtest.psql("SELECT count(*) FROM kv WHERE key = 'x';\n"
                        "SET pgpoly.enable_batched_joins = off;", db=db,
                        verbose=True)
        check(r.rc != 0 and r.sqlstate == "42602",
              "a misspelt pgpoly.* setting is not refused: rc %d %s"
              % (r.rc, r.err))
    finally:
        pgtest.psql("ALTER DATABASE %s RESET ALL;" % db, db=db)
        pgtest.psql("DROP ROLE IF EXISTS %s;" % role, db="postgres")


pgtest.main(test)
