"""write_mode 'outbox' against a transactional twin, on random transactions.

Each round runs one random transaction twice: on a Redis hash table in
write_mode 'outbox' and on a transactional table of the same columns on
another key prefix (the ground truth: what the store must end with).  The
statements insert (overwriting), update a counter, set every column to NULL
(a hash then loses its key), delete, move a row to a free key, and use
savepoints rolled back or released.  After sync_wait() the two prefixes
must hold the same rows.  Rows are picked by their stored text
(k::text, k COLLATE "C"), so that keys equal under their type's equality but
stored apart (numeric 1.0 and 1.00, float8 -0 and 0, 'a' and 'A' under a
nondeterministic collation) are changed one at a time.  Each
transaction runs as one of three writer roles, at random, so that the
worker composes and orders the changes of several writers of a key (each
change is delivered as its writer).  Then, for text keys, rounds of
rejected deliveries: a key Redis holds as a list rejects its changes until
it is removed, and meanwhile writers in turn upsert it and other keys (the
worker parks the key's changes in a chain, one link per writer), and after
its removal Redis must equal the twin again.  A fixed seed per key type; a failure
prints the transaction.
"""

import os
import random

import pgtest

ROUNDS = 20
WRITERS = ["outbox_diff_w%d_%d" % (i, os.getpid()) for i in (1, 2, 3)]

# key type, column definition, the keys (SQL literals), how a row is picked
KINDS = [
    ("text", "text OPTIONS (key 'true')", ["'k%d'" % i for i in range(6)], "k = %s"),
    ("numeric", "numeric OPTIONS (key 'true')", ["1.0", "1.00", "2", "2.0", "-0.0", "0"],
     "k::text = (%s)::text"),
    ("float8", "float8 OPTIONS (key 'true')", ["'-0'::float8", "'0'::float8",
                                               "'1e300'::float8", "'NaN'::float8",
                                               "'0.1'::float8"], "k::text = (%s)::text"),
    ("ci", "text OPTIONS (key 'true') COLLATE outbox_ci", ["'a'", "'A'", "'b'", "'B'", "'c'"],
     "k COLLATE \"C\" = %s"),
]


def sql(db, text):
    r = pgtest.psql(text, db=db, timeout=120)
    pgtest.check(r.rc == 0, "SQL failed: %s\n%s" % (text.strip()[:300], r.err))
    return r.out.strip()


def statement(rnd, keys, pick):
    """One random statement on table %(t)s."""
    k, k2 = rnd.choice(keys), rnd.choice(keys)
    where = pick % k
    c = rnd.random()
    if c < 0.3:
        return "INSERT INTO %%(t)s VALUES (%s, 'v%d', %d);" % (k, rnd.randint(0, 99),
                                                                rnd.randint(0, 9))
    if c < 0.5:
        return "UPDATE %%(t)s SET n = coalesce(n, 0) + 1 WHERE %s;" % where
    if c < 0.6:
        return "UPDATE %%(t)s SET v = NULL, n = NULL WHERE %s;" % where
    if c < 0.75:
        return "DELETE FROM %%(t)s WHERE %s;" % where
    # a move onto a key no row holds (by its stored text)
    return ("UPDATE %%(t)s SET k = %s WHERE %s AND NOT EXISTS "
            "(SELECT 1 FROM %%(t)s x WHERE x.k::text = (%s)::text);" % (k2, where, k2))


def transaction(rnd, keys, pick):
    body = []
    for i in range(rnd.randint(1, 6)):
        if rnd.random() < 0.25:
            body.append("SAVEPOINT s;")
            body.append(statement(rnd, keys, pick))
            body.append("ROLLBACK TO SAVEPOINT s;" if rnd.random() < 0.5
                        else "RELEASE SAVEPOINT s;")
        else:
            body.append(statement(rnd, keys, pick))
    return "BEGIN;\nSET LOCAL ROLE %s;\n%s\nCOMMIT;\n" % (rnd.choice(WRITERS), "\n".join(body))


def run_kind(db, s, name, coldef, keys, pick):
    """ROUNDS random transactions on the outbox table and its twin (session s)."""
    rnd = random.Random("outbox-%s" % name)
    sql(db, """
CREATE FOREIGN TABLE %(n)s_o (k %(c)s, v text, n int)
  SERVER r OPTIONS (key_prefix 'od:%(n)s:o:', write_mode 'outbox');
CREATE FOREIGN TABLE %(n)s_t (k %(c)s, v text, n int)
  SERVER r OPTIONS (key_prefix 'od:%(n)s:t:');
CREATE FOREIGN TABLE %(n)s_on (k text OPTIONS (key 'true'), v text, n int)
  SERVER r OPTIONS (key_prefix 'od:%(n)s:o:');
CREATE FOREIGN TABLE %(n)s_tn (k text OPTIONS (key 'true'), v text, n int)
  SERVER r OPTIONS (key_prefix 'od:%(n)s:t:');
GRANT SELECT, INSERT, UPDATE, DELETE ON %(n)s_o, %(n)s_t TO %(w)s;
""" % {"n": name, "c": coldef, "w": ", ".join(WRITERS)})
    for i in range(ROUNDS):
        tx = transaction(rnd, keys, pick)
        ro = s.run(tx % {"t": name + "_o"}, timeout=60)
        rt = s.run(tx % {"t": name + "_t"}, timeout=60)
        if not pgtest.check((ro.rc == 0) == (rt.rc == 0),
                            "%s round %d: outbox and transactional runs differ:\n%s\n%s\n%s"
                            % (name, i, tx, ro.err, rt.err)):
            return
        if not compare(db, s, name, "round %d:\n%s" % (i, tx % {"t": name + "_o"})):
            return


def compare(db, s, name, what):
    """Check (after sync_wait) that the outbox table's prefix equals the twin's."""
    d = s.value("SELECT pgpoly.sync_wait(NULL, '60 s'); "
                "SELECT count(*) FROM ((SELECT * FROM %(n)s_on EXCEPT ALL "
                "SELECT * FROM %(n)s_tn) UNION ALL (SELECT * FROM %(n)s_tn "
                "EXCEPT ALL SELECT * FROM %(n)s_on)) d;" % {"n": name}, timeout=90)
    if pgtest.check(d.split() == ["t", "0"], "%s: Redis differs from the transactional twin "
                    "(sync_wait, differing rows: %s) after:\n%s" % (name, d.split(), what)):
        return True
    print(sql(db, "SELECT 'outbox', * FROM %(n)s_on UNION ALL "
                  "SELECT 'twin', * FROM %(n)s_tn ORDER BY 2, 1" % {"n": name}))
    return False


def parked(s):
    """Whether the worker read every entry and holds a rejected (isolated) one."""
    return s.value("SELECT NOT EXISTS (SELECT FROM pgpoly.sync_queue WHERE NOT isolated) "
                   "AND EXISTS (SELECT FROM pgpoly.sync_queue WHERE isolated);") == "t"


def run_rejected(db, s, name, keys, port):
    """Rounds of upserts by several writers while Redis rejects one key's."""
    rnd = random.Random("outbox-rejected-%s" % name)
    for i in range(4):
        blocked = rnd.choice(keys)
        rkey = "od:%s:o:%s" % (name, blocked.strip("'"))
        pgtest.redis_cli(port, "DEL", rkey)
        pgtest.redis_cli(port, "RPUSH", rkey, "not a hash")
        log = []
        for j in range(10):
            rows = [blocked] if j == 0 else rnd.sample(keys, rnd.randint(1, 2))
            tx = "BEGIN;\nSET LOCAL ROLE %s;\n%s\nCOMMIT;\n" % (rnd.choice(WRITERS), "\n".join(
                "INSERT INTO %%(t)s VALUES (%s, 'r%d', %d);" % (k, rnd.randint(0, 99), j)
                for k in rows))
            log.append(tx % {"t": name + "_o"})
            for t in ("_o", "_t"):
                r = s.run(tx % {"t": name + t}, timeout=60)
                pgtest.check(r.rc == 0, "%s: %s failed: %s" % (name, tx, r.err))
            # the worker reads the change (parked behind the blocked key's first one)
            if j == 0 or rnd.random() < 0.6:
                pgtest.check(pgtest.wait_for(lambda: parked(s), timeout=30),
                             "%s: the worker did not park the changes of %s" % (name, blocked))
        pgtest.redis_cli(port, "DEL", rkey)
        if not compare(db, s, name, "rejected round %d (key %s):\n%s"
                       % (i, blocked, "".join(log))):
            return


def test():
    mark = pgtest.pg_log_mark()
    db = pgtest.create_db("pgpoly_outbox_diff")
    sql(db, """
ALTER DATABASE %s SET pgpoly.sync_max_attempts = 1000;
ALTER DATABASE %s SET pgpoly.sync_max_retry_delay = 200;
CREATE COLLATION outbox_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE SERVER r FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port '%s');
%s""" % (db, db, os.environ["REDIS_PORT"], "".join(
        "CREATE ROLE %s; CREATE USER MAPPING FOR %s SERVER r "
        "OPTIONS (password_required 'false');\n" % (w, w) for w in WRITERS)))
    try:
        s = pgtest.Session(db=db)
        for name, coldef, keys, pick in KINDS:
            run_kind(db, s, name, coldef, keys, pick)
        run_rejected(db, s, KINDS[0][0], KINDS[0][2], int(os.environ["REDIS_PORT"]))
        s.close()
        pgtest.check(sql(db, "SELECT count(*) FROM pgpoly.sync_dead_letters") == "0",
                     "changes ended in the dead letters: %s"
                     % sql(db, "SELECT * FROM pgpoly.sync_dead_letters"))
    finally:
        sql(db, "SELECT count(pgpoly.drop_sync(name)) FROM pgpoly.syncs")
        sql(db, "DROP OWNED BY %s; DROP ROLE %s;" % (", ".join(WRITERS), ", ".join(WRITERS)))
        port = int(os.environ["REDIS_PORT"])
        _, out, _ = pgtest.redis_cli(port, "--scan", "--pattern", "od:*")
        for key in out.split("\n"):
            if key:
                pgtest.redis_cli(port, "DEL", key)
    pgtest.check_pg_log(mark)


pgtest.main(test)
