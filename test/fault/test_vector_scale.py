#!/usr/bin/env python3
"""pgpoly_vector at scale: CPU and memory in proportion to the rows.

Against a real Chroma of its own (pgtest.start_chroma: its requests of up
to 8 MB hold up the shared $CHROMA_URL server, and other tests' requests to
it timed out under load), each part in its own database:

  * INSERT ... ON CONFLICT DO NOTHING of one batch of 100000 rows
    (batch_size 100000, write_mode 'transactional', a collection that
    does not exist yet) whose ids are 600 bytes long, share their first
    590 and repeat every 50000 rows.  Each row used to be compared with
    every row of the batch inserted before it: about 3.75e9 comparisons,
    minutes of CPU that statement_timeout could not cancel (killed by the
    runner after 120 s; 55 s with 200-byte ids).  The batch's ids now go
    through one seeded key table: seconds, under the statement_timeout of
    30 s.  The statement must finish, skip exactly the 50000 repeated ids
    (the transaction reads 50000 records, the first row of each id), and
    ROLLBACK sends nothing.
  * UPDATE of 100000 records (batch_size 100000, ids of 10 bytes, one
    dimension: about 93000 records a request, the 8 MB cap).  Before each
    update request pgpoly gets the batch's ids, to fail with 40001 if
    another client deleted one: that get asked for all 93000 ids at once,
    and Chroma answered 500 "too many SQL variables" (its SQLite store
    binds at most 32766), so the UPDATE failed.  It now asks in pieces of
    10000 ids, and marks the ids found in one seeded key table (they were
    compared with every id of the batch, n^2 comparisons, uncancellable):
    the UPDATE finishes under a statement_timeout of 120 s and every record
    holds the new document.  Then INSERT ... ON CONFLICT DO NOTHING of the
    same ids, whose get of the batch's ids had the same limit, inserts none.
  * SELECT count(*) FROM t WHERE id = ANY(<300000 ids>), fetch_size 1000
    (one record exists): 300 requests of 1000 ids.  Each request used to
    copy the list of the ids not asked yet and keep the copy until the
    scan ended, 300000^2 / 2000 list cells: the backend's peak memory
    (VmHWM) grew by 368 MB.  It may now grow by 100 MB at most (the ids,
    their key table, one request).  The count is 1.

Time limits are scaled by PGPOLY_TIMEOUT_SCALE (valgrind).
"""

import pgtest

check = pgtest.check

ROWS = 100000
DISTINCT = 50000
N = 300000


def session(db_name, table, options):
    """A session on a new database with server vs on Chroma and foreign
    table table (its name and columns) with options."""
    a = pgtest.Session(pgtest.create_db(db_name))
    a.value("CREATE SERVER vs FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url '%s');"
            "CREATE FOREIGN TABLE %s SERVER vs OPTIONS (%s);"
            % (CHROMA, table, options))
    return a


def conflict_batch():
    """One batch of ROWS rows, ON CONFLICT DO NOTHING, linear."""
    a = session("pgpoly_vector_scale", "big (id text, embedding real[], document text)",
                "collection 'pgpoly_scale_absent', create_collection 'true', "
                "distance 'l2', batch_size '%d'" % ROWS)
    timeout_ms = int(30000 * pgtest.SCALE)
    r = a.run("""
        BEGIN;
        SET LOCAL statement_timeout = %d;
        INSERT INTO big
          SELECT repeat('p', 590) || lpad((g %% %d)::text, 10, '0'), '{1,0}', 'row ' || g
          FROM generate_series(1, %d) g
          ON CONFLICT DO NOTHING;
        SELECT count(*), count(DISTINCT id), min(document), max(length(id)) FROM big;
        """ % (timeout_ms, DISTINCT, ROWS), timeout=600)
    print("INSERT ... ON CONFLICT DO NOTHING of %d rows in one batch: %.1f s"
          % (ROWS, r.elapsed))
    check(r.rc == 0, "the batch of %d rows did not finish (quadratic?): %s"
          % (ROWS, r.err.strip()[:400]))
    check(r.out.strip() == "%d|%d|row 1|600" % (DISTINCT, DISTINCT),
          "the transaction reads %r, want %d records, one per id, the first rows"
          % (r.out.strip(), DISTINCT))
    a.run("ROLLBACK;")
    n = a.value("SELECT count(*) FROM big;")
    check(n == "0", "after ROLLBACK the collection holds %s records, want none" % n)
    a.close()


def update_batch():
    """An UPDATE of ROWS records in one batch (as the byte cap allows), linear."""
    a = session("pgpoly_vector_update_scale", "up (id text, embedding real[], document text)",
                "collection 'pgpoly_scale_update', create_collection 'true', "
                "distance 'l2', batch_size '%d'" % ROWS)
    a.value("ALTER SERVER vs OPTIONS (ADD timeout_ms '120000');")
    a.value("DELETE FROM up; INSERT INTO up SELECT lpad(g::text, 10, '0'), '{1}', NULL "
            "FROM generate_series(1, %d) g;" % ROWS, timeout=300)
    timeout_ms = int(120000 * pgtest.SCALE)
    r = a.run("SET statement_timeout = %d; UPDATE up SET document = 'u';" % timeout_ms,
              timeout=600)
    print("UPDATE of %d records: %.1f s" % (ROWS, r.elapsed))
    check(r.rc == 0, "the UPDATE of %d records failed: %s"
          % (ROWS, r.err.strip()[:400]))
    n = a.value("RESET statement_timeout; SELECT count(*) FROM up WHERE document = 'u';",
                timeout=300)
    check(n == str(ROWS), "%s records hold the new document, want %d" % (n, ROWS))
    # ON CONFLICT DO NOTHING of the same ids: its get by ids had the same limit
    r = a.run("INSERT INTO up SELECT lpad(g::text, 10, '0'), '{2}', 'new' "
              "FROM generate_series(1, %d) g ON CONFLICT DO NOTHING;" % ROWS, timeout=600)
    check(r.rc == 0, "INSERT ... ON CONFLICT DO NOTHING of %d existing ids failed: %s"
          % (ROWS, r.err.strip()[:400]))
    n = a.value("SELECT count(*) FROM up WHERE document = 'new';", timeout=300)
    check(n == "0", "ON CONFLICT DO NOTHING of existing ids wrote %s records" % n)
    a.run("DELETE FROM up;", timeout=600)
    a.close()


def ids_memory():
    """A scan by N ids keeps no copy of the ids per request."""
    a = session("pgpoly_vector_ids_memory", "t (id text, embedding real[])",
                "collection 'pgpoly_ids_memory', create_collection 'true', "
                "distance 'l2', write_mode 'immediate'")
    a.value("DELETE FROM t; INSERT INTO t VALUES ('id7', '{1,0}');")
    pid = int(a.value("SELECT pg_backend_pid();"))
    ids = "ARRAY(SELECT 'id' || g FROM generate_series(1, %d) g)" % N
    a.value("SELECT count(*) FROM generate_series(1, %d) g WHERE ('id' || g) = ANY(%s);"
            % (1000, ids))  # the backend's own memory for such an array
    before = pgtest.proc_status_kb(pid, "VmHWM")
    r = a.run("SELECT count(*) FROM t WHERE id = ANY(%s);" % ids, timeout=300)
    after = pgtest.proc_status_kb(pid, "VmHWM")
    grew = (after - before) // 1024
    print("scan of %d ids, fetch_size 1000: peak memory +%d MB, %.1f s"
          % (N, grew, r.elapsed))
    check(r.rc == 0 and r.out.strip() == "1",
          "count over %d ids: %r %s" % (N, r.out.strip(), r.err.strip()[:300]))
    check(grew <= 100, "the scan of %d ids raised the backend's peak memory by %d MB, "
          "want at most 100" % (N, grew))
    a.run("DELETE FROM t;")
    a.close()


CHROMA = None


def test():
    global CHROMA
    CHROMA = pgtest.start_chroma()
    mark = pgtest.pg_log_mark()
    conflict_batch()
    update_batch()
    ids_memory()
    pgtest.check_pg_log(mark)


pgtest.main(test)
