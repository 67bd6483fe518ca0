#!/usr/bin/env python3
"""A Redis ACL user that may write but not run MULTI (least privilege:
+@read +@write, without +@transaction).

Redis refuses such a user's MULTI and then runs every command after it at
once, outside any transaction; the EXEC that ends the block fails too.  A
COMMIT that sent MULTI, the writes and EXEC in one pipeline therefore
failed while Redis kept every write.  pgpoly asks, when it connects as an
ACL user, whether MULTI is allowed (an empty MULTI and DISCARD), and a
COMMIT with writes on a connection that may not wrap them fails before
anything is sent.  Checked:

  * transactional INSERT and DELETE as that user: COMMIT fails with 42501
    naming MULTI and the ACL category, and Redis holds none of the writes;
  * the same with the write stream (pgpoly.redis_stream_threshold = 1):
    nothing reaches Redis during the statement nor at COMMIT;
  * write_mode 'immediate' (no MULTI) works for that user; reads work;
  * the user mapping switched to a user with +@transaction: the same
    transactions are written whole;
  * no crash in the PostgreSQL log.
"""

import pgtest

check = pgtest.check
PW = "acl-multi-pw"


def keys(port):
    """The acl: keys of port, sorted."""
    rc, out, _ = pgtest.redis_cli(port, "--scan", "--pattern", "acl:*")
    return sorted(out.split()) if rc == 0 else None


def test():
    mark = pgtest.pg_log_mark()
    port = pgtest.start_redis()
    for user, cats in (("writer", ["+@read", "+@write"]),
                       ("txn", ["+@read", "+@write", "+@transaction"])):
        rc, out, err = pgtest.redis_cli(port, "acl", "setuser", user, "on", ">" + PW,
                                        "~acl:*", "+ping", "+select", *cats)
        if not check(rc == 0 and out == "OK", "ACL SETUSER %s: %s %s" % (user, out, err)):
            return
    pgtest.redis_cli(port, "set", "acl:pre", "kept")
    db = pgtest.create_db("pgpoly_acl_multi")
    r = pgtest.psql("""
        CREATE SERVER racl FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%d');
        CREATE USER MAPPING FOR CURRENT_USER SERVER racl
            OPTIONS (user 'writer', password '%s');
        CREATE FOREIGN TABLE kv (key text, value text) SERVER racl
            OPTIONS (table_type 'string', key_prefix 'acl:');
        CREATE FOREIGN TABLE kv_now (key text, value text) SERVER racl
            OPTIONS (table_type 'string', key_prefix 'acl:now:', write_mode 'immediate');
    """ % (port, PW), db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    s = pgtest.Session(db)
    check(s.value("SELECT value FROM kv WHERE key = 'pre';") == "kept",
          "a read as the ACL user without MULTI failed")

    for what, sql in (
            ("INSERT", "BEGIN; INSERT INTO kv VALUES ('a', '1'), ('b', '2'); COMMIT;"),
            ("DELETE", "BEGIN; DELETE FROM kv WHERE key = 'pre'; COMMIT;"),
            ("streamed INSERT",
             "SET pgpoly.redis_stream_threshold = 1; BEGIN; "
             "INSERT INTO kv SELECT 's' || g, 'v' FROM generate_series(1, 200) g; "
             "COMMIT; RESET pgpoly.redis_stream_threshold;")):
        r = s.run(sql, timeout=15)
        check(r.rc == 1 and r.sqlstate == "42501" and "MULTI" in r.err
              and "+@transaction" in r.err,
              "%s as a user without MULTI: want 42501 naming MULTI and "
              "+@transaction, got rc=%s %s: %s" % (what, r.rc, r.sqlstate, r.err.strip()))
        check(keys(port) == ["acl:pre"],
              "%s as a user without MULTI changed Redis: %s" % (what, keys(port)))
        s.run("ROLLBACK;")

    r = s.run("INSERT INTO kv_now VALUES ('x', 'now');")
    check(r.rc == 0, "immediate INSERT as a user without MULTI: %s" % r.err.strip())
    check(keys(port) == ["acl:now:x", "acl:pre"], "after the immediate INSERT: %s"
          % keys(port))

    r = pgtest.psql("ALTER USER MAPPING FOR CURRENT_USER SERVER racl "
                    "OPTIONS (SET user 'txn');", db=db)
    check(r.rc == 0, "ALTER USER MAPPING: %s" % r.err)
    r = s.run("SET pgpoly.redis_stream_threshold = 1; BEGIN; "
              "INSERT INTO kv SELECT 's' || g, 'v' FROM generate_series(1, 200) g; "
              "DELETE FROM kv WHERE key = 'pre'; COMMIT;", timeout=15)
    check(r.rc == 0, "the same transaction as a user with MULTI: %s" % r.err.strip())
    k = keys(port) or []
    check(len(k) == 201 and "acl:pre" not in k and "acl:s200" in k,
          "as a user with MULTI, want 200 rows written and acl:pre deleted, got "
          "%d keys" % len(k))
    s.close()
    pgtest.check_pg_log(mark)


pgtest.main(test)
