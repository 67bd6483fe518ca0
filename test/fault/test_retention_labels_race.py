#!/usr/bin/env python3
"""Retention and a label logged at the same time: no label outlives its
predictions.

drop_prediction_partitions deletes, with each partition it drops, the
labels of its requests that no kept prediction has.  Session A labels a
request of an old month and keeps its transaction open (it has found the
prediction, and its label is not committed yet); session B runs retention
on that month and must wait for A (seen as a lock wait in
pg_stat_activity, no sleep), then delete A's label with the partition: the
lock the DROP takes on pgpoly.predictions is taken before the labels are
read.  Had B read the labels first, A's uncommitted label was invisible to
it, A committed while B waited for its DROP lock, and the label stayed,
labelling nothing.  A later log_label of that request is 42704.
"""

import pgtest

check = pgtest.check

SETUP = r"""
SET client_min_messages = warning;
SELECT pgpoly.register_model_version('ret_race', 's3://ret/1');
SELECT pgpoly.create_prediction_partitions('2019-01-01', '2019-02-01');
SELECT pgpoly.log_prediction('ret_race', 1, 'u', '1', request_id => 'old-req',
                             ts => '2019-01-10 00:00+00');
SELECT pgpoly.log_prediction('ret_race', 1, 'u', '1', request_id => 'kept-req',
                             ts => '2019-02-10 00:00+00');
"""


def test():
    db = pgtest.create_db()
    r = pgtest.psql(SETUP, db=db)
    if r.rc != 0:
        raise RuntimeError("setup failed: %s" % r.err)
    a = pgtest.Session(db)
    b = pgtest.Session(db)
    a.value("BEGIN; SELECT pgpoly.log_label('old-req', '\"a\"'); "
            "SELECT pgpoly.log_label('kept-req', '\"a\"');")
    b_pid = b.value("SELECT pg_backend_pid();")
    b.send("SELECT pgpoly.drop_prediction_partitions('2019-02-01');")
    pgtest.wait_for(lambda: pgtest.psql(
        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s" % b_pid,
        db=db).out.strip() == "Lock", what="retention waiting for the labeler")
    a.value("COMMIT;")
    res = b.wait(timeout=30)
    check(res.rc == 0 and res.out.strip() == "1",
          "retention dropped one partition (rc=%s %s %s)"
          % (res.rc, res.out.strip(), res.err.strip()[:300]))
    got = pgtest.psql("SELECT string_agg(request_id, ',' ORDER BY request_id) "
                      "FROM pgpoly.prediction_labels", db=db).out.strip()
    check(got == "kept-req",
          "the label of the dropped request went with it, the kept one "
          "stayed (labels: %r)" % got)
    r = b.run("SELECT pgpoly.log_label('old-req', '\"b\"');")
    check(r.rc == 1 and r.sqlstate == "42704",
          "a label of the dropped request has nothing to label (rc=%s %s)"
          % (r.rc, r.err.strip()[:200]))
    a.close()
    b.close()


pgtest.main(test)
