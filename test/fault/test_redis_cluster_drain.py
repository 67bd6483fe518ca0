#!/usr/bin/env python3
"""Writes from outside a Redis Cluster scan's statement, differential.

On a real cluster (3 primaries), a full scan (fetch_size 5: many SCAN
rounds on every primary) while a function its query calls per row, or a
statement between two FETCHes of a cursor, writes the table through an
immediate-mode table (batch_size 1).  Before such a write is sent the scan
lists its remaining keys on every primary (drain_scan: the round sent
ahead, then SCAN to its end on each node), so it returns the keys held
before the write, as the native copy does: per-row inserts (values read,
key-only, a pushed-down LIKE; through a table of the same, a longer or a
shorter key_prefix), per-row deletes, a cursor.  A write to a
table of other keys leaves the scan paging.  No crash in the log.
"""

import pgtest
import redis_cluster

check = pgtest.check

SETUP = """
CREATE SERVER rc FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (nodes '127.0.0.1:%d', timeout_ms '5000');
CREATE FOREIGN TABLE t (key text OPTIONS (key 'true'), n int) SERVER rc
  OPTIONS (key_prefix 'dr:', fetch_size '5');
CREATE FOREIGN TABLE w (key text OPTIONS (key 'true'), n int) SERVER rc
  OPTIONS (key_prefix 'dr:', write_mode 'immediate', batch_size '1');
CREATE FOREIGN TABLE w_longer (key text OPTIONS (key 'true'), n int) SERVER rc
  OPTIONS (key_prefix 'dr:k', write_mode 'immediate', batch_size '1');
CREATE FOREIGN TABLE w_shorter (key text OPTIONS (key 'true'), n int) SERVER rc
  OPTIONS (key_prefix 'dr', write_mode 'immediate', batch_size '1');
CREATE FOREIGN TABLE lg (key text OPTIONS (key 'true'), n int) SERVER rc
  OPTIONS (key_prefix 'drlog:', write_mode 'immediate', batch_size '1');
CREATE TABLE n (key text, n int);
CREATE FUNCTION fill() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM n; DELETE FROM w;
  INSERT INTO n SELECT 'k' || g, g FROM generate_series(1, 120) g;
  INSERT INTO w SELECT * FROM n;
END $$;
CREATE FUNCTION ins(tb text, k text, v int) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  IF length(k) < 6 THEN
    EXECUTE format('INSERT INTO %%I VALUES ($1, $2)', tb) USING k || 'x', v;
  END IF;
  RETURN k;
END $$;
CREATE FUNCTION del(tb text, k text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('DELETE FROM %%I WHERE key = $1', tb) USING k;
  RETURN k;
END $$;
CREATE TABLE got (c text, key text);
CREATE FUNCTION fetch_rest(cur refcursor) RETURNS void LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
  LOOP FETCH cur INTO r; EXIT WHEN NOT FOUND; INSERT INTO got VALUES (cur, r.key); END LOOP;
END $$;
"""

CASES = [
    ("insert per row", "SELECT count(*), count(DISTINCT k) FROM (SELECT ins('{w}', key, n) AS k FROM {t}) s"),
    ("insert per row, key only", "SELECT count(*), count(DISTINCT k) FROM (SELECT ins('{w}', key, 0) AS k FROM {t}) s"),
    ("insert per row, LIKE", "SELECT count(*), count(DISTINCT k) FROM (SELECT ins('{w}', key, n) AS k FROM {t} WHERE key LIKE 'k1%') s"),
    ("count(*) with inserts", "SELECT count(*) FROM {t} WHERE ins('{w}', key, 0) IS NOT NULL"),
    ("insert per row, longer prefix", "SELECT count(*), count(DISTINCT k) FROM (SELECT ins('{wl}', {sub}, n) AS k FROM {t}) s"),
    ("insert per row, shorter prefix", "SELECT count(*), count(DISTINCT k) FROM (SELECT ins('{ws}', {colon}, n) AS k FROM {t}) s"),
    ("insert per row, longer prefix, LIKE", "SELECT count(*), count(DISTINCT k) FROM (SELECT ins('{wl}', {sub}, n) AS k FROM {t} WHERE key LIKE 'k1%') s"),
    ("delete per row", "SELECT count(*), count(DISTINCT k) FROM (SELECT del('{w}', key) AS k FROM {t}) s"),
    ("log per row", "SELECT count(*), count(DISTINCT k) FROM (SELECT ins('{lg}', key, n) AS k FROM {t}) s"),
]


def test():
    mark = pgtest.pg_log_mark()
    cl = redis_cluster.Cluster(primaries=3, replicas=0)
    try:
        db = pgtest.create_db("pgpoly_cluster_drain")
        r = pgtest.psql(SETUP % cl.primaries()[0], db=db)
        if not check(r.rc == 0, "setup failed: %s" % r.err):
            return
        s = pgtest.Session(db)
        for what, sql in CASES:
            s.value("SELECT fill();")
            native = s.value(sql.format(t="n", w="n", wl="n", ws="n", lg="got", sub="key", colon="key") + ";")
            r = s.run(sql.format(t="t", w="w", wl="w_longer", ws="w_shorter", lg="lg",
                                  sub="substr(key, 2)", colon="':' || key") + ";", timeout=120)
            check(r.rc == 0 and r.out.strip() == native,
                  "%s: native %s, cluster %s %s" % (what, native, r.out.strip(), r.err.strip()[:300]))
            r = s.run("SELECT count(*), min(d::text) FROM ((SELECT key, n, 't' FROM t EXCEPT SELECT key, n, 't' FROM n) "
                      "UNION ALL (SELECT key, n, 'n' FROM n EXCEPT SELECT key, n, 'n' FROM t)) d;")
            check(r.rc == 0 and r.out.strip().startswith("0|"), "%s: rows apart: %s %s" % (what, r.out, r.err))
        # a cursor: inserts between FETCHes show in none
        s.value("SELECT fill(); DELETE FROM got;")
        r = s.run("""BEGIN;
            DECLARE ct CURSOR FOR SELECT key FROM t; DECLARE cn CURSOR FOR SELECT key FROM n;
            MOVE 7 IN ct; MOVE 7 IN cn;
            INSERT INTO w SELECT 'new' || g, g FROM generate_series(1, 50) g;
            INSERT INTO n SELECT 'new' || g, g FROM generate_series(1, 50) g;
            SELECT fetch_rest('ct'), fetch_rest('cn');
            COMMIT;""")
        check(r.rc == 0, "cursor: %s" % r.err)
        out = s.value("SELECT string_agg(format('%s %s %s', c, count, d), ', ' ORDER BY c) FROM "
                      "(SELECT c, count(*), count(DISTINCT key) d FROM got GROUP BY c) s;")
        check(out == "cn 113 113, ct 113 113", "cursor rows after 7: %s" % out)
        s.close()
    finally:
        cl.stop()
    pgtest.check_pg_log(mark)


pgtest.main(test)
