#!/usr/bin/env python3
"""Two sessions label one new request at once: one label, the last one wins.

pgpoly.prediction_labels keeps one label per request id through a hash
exclusion constraint (a request id may be longer than a btree entry can
be), so log_label upserts by hand: UPDATE, else INSERT ... ON CONFLICT DO
NOTHING, again until one of them takes.  Session A logs the label of a
request no label has yet and keeps its transaction open; session B logs
another label of the same request and waits on A's row (seen as a lock wait
in pg_stat_activity, no sleep).  Then:

  * A commits: B's INSERT does nothing, its UPDATE sees A's label now and
    replaces it; B returns, and the request has one label, B's;
  * the same with B in REPEATABLE READ (its snapshot taken before A
    commits, so A's label is invisible to its UPDATE): B fails with 40001,
    as an ON CONFLICT DO UPDATE upsert would, and does not loop; A's label
    stays;
  * A rolls back: B inserts its own label.
"""

import pgtest

check = pgtest.check

SETUP = r"""
SET client_min_messages = warning;
SELECT pgpoly.register_model_version('race_model', 's3://race/1');
SELECT pgpoly.log_prediction('race_model', 1, 'u', '1', request_id => r)
FROM unnest('{rq1,rq2,rq3}'::text[]) r;
"""


def race(db, req, a_end, b_begin, want_b, want_label):
    a = pgtest.Session(db)
    b = pgtest.Session(db)
    a.value("BEGIN; SELECT pgpoly.log_label('%s', '\"a\"');" % req)
    b_pid = b.value("SELECT pg_backend_pid();")
    b.value(b_begin)
    b.value("SELECT 1;")           # a REPEATABLE READ snapshot is taken here
    b.send("SELECT pgpoly.log_label('%s', '\"b\"');" % req)
    pgtest.wait_for(lambda: pgtest.psql(
        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s" % b_pid,
        db=db).out.strip() == "Lock", what="B waiting on A's label")
    a.value(a_end)
    r = b.wait(timeout=30)
    if want_b == "ok":
        check(r.rc == 0, "%s: B failed: rc=%s %s" % (req, r.rc, r.err.strip()))
    else:
        check(r.rc == 1 and r.sqlstate == want_b,
              "%s: B should fail with %s: rc=%s %s"
              % (req, want_b, r.rc, r.err.strip()))
    b.run("COMMIT;" if r.rc == 0 else "ROLLBACK;")
    got = pgtest.psql("SELECT string_agg(label::text, ',') FROM pgpoly.prediction_labels "
                      "WHERE request_id = '%s'" % req, db=db).out.strip()
    check(got == want_label, "%s: labels %r, want %r" % (req, got, want_label))
    a.close()
    b.close()


def test():
    db = pgtest.create_db("pgpoly_labels_race")
    r = pgtest.psql(SETUP, db=db)
    if not check(r.rc == 0, "setup failed: %s" % r.err):
        return
    race(db, "rq1", "COMMIT;", "BEGIN;", "ok", '"b"')
    race(db, "rq2", "COMMIT;", "BEGIN ISOLATION LEVEL REPEATABLE READ;", "40001", '"a"')
    race(db, "rq3", "ROLLBACK;", "BEGIN;", "ok", '"b"')


if __name__ == "__main__":
    pgtest.main(test)
