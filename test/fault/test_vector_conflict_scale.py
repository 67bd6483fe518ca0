#!/usr/bin/env python3
"""INSERT ... ON CONFLICT DO NOTHING on a vector table is linear per batch.

One batch of 100000 rows (batch_size 100000, write_mode 'transactional',
a collection that does not exist yet) whose ids are 600 bytes long, share
their first 590 and repeat every 50000 rows.  Each row used to be compared
with every row of the batch inserted before it: about 3.75e9 comparisons
of 600-byte strings, minutes of CPU that statement_timeout could not
cancel (killed by the runner after 120 s; 55 s with 200-byte ids).  The
batch's ids now go through one seeded key table: about 3 s, far below the
statement_timeout of 30 s.  The statement must finish, skip exactly the
50000 repeated ids (the transaction then reads 50000 records, the first
row of each id), and ROLLBACK sends nothing.  Against the real Chroma
($CHROMA_URL).  The timeout is scaled by PGPOLY_TIMEOUT_SCALE (valgrind).
"""

import os

import pgtest

check = pgtest.check

ROWS = 100000
DISTINCT = 50000


def test():
    chroma = os.environ.get("CHROMA_URL")
    if not check(chroma is not None, "CHROMA_URL is set by the harness"):
        return
    mark = pgtest.pg_log_mark()
    db = pgtest.create_db("pgpoly_vector_scale")
    a = pgtest.Session(db)
    a.value("""
        CREATE SERVER vs FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url '%s');
        CREATE FOREIGN TABLE big (id text, embedding real[], document text) SERVER vs
          OPTIONS (collection 'pgpoly_scale_absent', create_collection 'true',
                   distance 'l2', batch_size '%d');""" % (chroma, ROWS))
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
    pgtest.check_pg_log(mark)


pgtest.main(test)
