#!/usr/bin/env python3
"""Concurrent content recording of one dataset name: versions stay distinct.

Several sessions, released at the same instant, each record ROUNDS new
contents (distinct content hashes) of the dataset "conc_ds" through
pgpoly._dataset_record_content, the function create_training_set and
get_historical_features(dataset => ...) call, and the same content of
"conc_same".  Afterwards:

  * every call succeeded (no unique violation from two sessions choosing the
    same automatic version: this test fails so without the per-name lock);
  * conc_ds has one row per content: the unversioned entry and the versions
    auto-2 .. auto-N, each content hash once;
  * conc_same has exactly one row: identical content reuses the newest version.

Then, under REPEATABLE READ, a transaction whose snapshot predates another's
new version of the name fails with SQLSTATE 40001 (serialization_failure,
retry) instead of a raw unique violation, and records nothing.

Environment: DATASET_CONC_SESSIONS (default 6), DATASET_CONC_ROUNDS (default 25).
"""

import os

import pgtest

SESSIONS = int(os.environ.get("DATASET_CONC_SESSIONS", "6"))
ROUNDS = int(os.environ.get("DATASET_CONC_ROUNDS", "25"))
LOCK_KEY = 724502                       # the start barrier's advisory lock


def worker_script(i):
    """Record ROUNDS contents of conc_ds and the same content of conc_same."""
    lines = []
    for j in range(ROUNDS):
        lines.append("SELECT pgpoly._dataset_record_content('conc_ds', 'h-%d-%d');" % (i, j))
        lines.append("SELECT pgpoly._dataset_record_content('conc_same', 'same');")
    return "\n".join(lines) + "\n"


def test_many_sessions(db):
    results = pgtest.run_at_barrier(db, [worker_script(i) for i in range(SESSIONS)], LOCK_KEY)
    for i, r in enumerate(results):
        pgtest.check(r.rc == 0 and not r.err.strip(),
                     "session %d failed (exit %s): %s" % (i, r.rc, r.err.strip()[:500]))
    total = SESSIONS * ROUNDS
    got = pgtest.psql(
        "SELECT count(*), count(DISTINCT content_hash), count(*) FILTER (WHERE version IS NULL), "
        "count(DISTINCT version), bool_and(version IS NULL OR version ~ '^auto-[0-9]+$'), "
        "max(substr(version, 6)::int) FROM pgpoly.datasets WHERE name = 'conc_ds'", db=db).out.strip()
    want = "%d|%d|1|%d|t|%d" % (total, total, total - 1, total)
    pgtest.check(got == want, "conc_ds rows|hashes|unversioned|versions|auto|max = %s, expected %s"
                 % (got, want))
    got = pgtest.psql("SELECT count(*), min(content_hash) FROM pgpoly.datasets "
                      "WHERE name = 'conc_same'", db=db).out.strip()
    pgtest.check(got == "1|same", "conc_same holds %s, expected one row with hash 'same'" % got)


def test_repeatable_read(db):
    pgtest.psql("SELECT pgpoly._dataset_record_content('conc_rr', 'rr-1')", db=db)
    stale = pgtest.Session(db)
    stale.value("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM pgpoly.datasets;")
    r = pgtest.psql("SELECT pgpoly._dataset_record_content('conc_rr', 'rr-2')", db=db)
    pgtest.check(r.rc == 0, "second recording: %s" % r.err)
    r = stale.run("SELECT pgpoly._dataset_record_content('conc_rr', 'rr-3');")
    pgtest.check(r.sqlstate == "40001",
                 "stale REPEATABLE READ recording: expected 40001, got %s: %s" % (r.sqlstate, r.err))
    stale.run("ROLLBACK;")
    stale.close()
    got = pgtest.psql("SELECT string_agg(coalesce(version, '-') || '=' || content_hash, ' ' "
                      "ORDER BY dataset_id) FROM pgpoly.datasets WHERE name = 'conc_rr'", db=db).out.strip()
    pgtest.check(got == "-=rr-1 auto-2=rr-2", "conc_rr holds %s after the stale recording" % got)


def test():
    db = pgtest.create_db("pgpoly_dataset_conc")
    test_many_sessions(db)
    test_repeatable_read(db)


pgtest.main(test)
