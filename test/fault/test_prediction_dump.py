#!/usr/bin/env python3
"""pg_dump / pg_restore of a database with logged predictions, labels and dataset versions.

The monthly partitions of pgpoly.predictions are created at run time, so they
are not extension members: pg_dump dumps them as tables (attached to the
extension's parent) with their data, keys and indexes, and the rows of the
extension's own tables (labels, datasets, run inputs) through
pg_extension_config_dump.  The restore must succeed with --exit-on-error (no
"already exists" error), give back the same rows, keep the partitions' keys and
indexes, and go on numbering predictions after the restored ones.
"""

import atexit
import os
import subprocess

import pgtest

SETUP = r"""
SET client_min_messages = warning;
SELECT pgpoly.register_model_version('dump_model', 's3://dump/1');
SELECT pgpoly.set_model_alias('dump_model', 'champion', 1);
SELECT pgpoly.log_predictions(jsonb_agg(jsonb_build_object(
	'model', 'dump_model@champion', 'entity', 'u' || g, 'prediction', g,
	'request_id', 'r' || g, 'ts', timestamptz '2024-01-15' + g * interval '1 day')))
FROM generate_series(1, 40) g;
SELECT pgpoly.log_label('r' || g, to_jsonb(g % 2 = 0)) FROM generate_series(1, 40, 3) g;
SELECT pgpoly.start_run('dump_exp', 'r1') AS run \gset
SELECT pgpoly.register_dataset('dump_ds', version => 'v1');
SELECT pgpoly.register_dataset('dump_ds', version => 'v2');
SELECT pgpoly.log_input(:'run', 'dump_ds', 'v1');
"""

CHECK = r"""
SELECT count(*), sum(prediction_id), count(DISTINCT tableoid) FROM pgpoly.predictions;
SELECT count(*), sum(prediction_id) FROM pgpoly.labeled_predictions;
SELECT string_agg(d.name || ':' || d.version, ',' ORDER BY d.version)
FROM pgpoly.run_inputs i JOIN pgpoly.datasets d USING (dataset_id);
SELECT count(*) FROM pg_indexes WHERE schemaname = 'pgpoly' AND tablename LIKE 'predictions\_2024\_%';
"""


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(cmd), p.stderr))
    return p


def test():
    src = pgtest.create_db("pgpoly_dump_src")
    r = pgtest.psql(SETUP, db=src)
    if r.rc != 0:
        raise RuntimeError("setup failed: %s" % r.err)
    before = pgtest.psql(CHECK, db=src)
    pgtest.check(before.rc == 0 and before.out.split("\n")[0].startswith("40|"),
                 "40 predictions in the source: %r %s" % (before.out, before.err))

    dump = os.path.join(pgtest.work_dir(), "pgpoly_dump_%d.dump" % os.getpid())
    dst = "pgpoly_dump_dst_%d" % os.getpid()
    atexit.register(lambda: subprocess.run(["dropdb", "--if-exists", "--force", dst],
                                           capture_output=True))
    atexit.register(lambda: os.path.exists(dump) and os.unlink(dump))
    run(["pg_dump", "-Fc", "-f", dump, src])
    run(["createdb", dst])
    p = subprocess.run(["pg_restore", "--exit-on-error", "-d", dst, dump],
                       capture_output=True, text=True)
    pgtest.check(p.returncode == 0, "pg_restore --exit-on-error succeeds: %s" % p.stderr)

    after = pgtest.psql(CHECK, db=dst)
    pgtest.check(after.rc == 0 and after.out == before.out,
                 "restored rows equal the dumped ones:\n%s\nvs\n%s%s" % (after.out, before.out, after.err))
    # new predictions are numbered after the restored ones, into a new partition too
    r = pgtest.psql("SELECT pgpoly.log_prediction('dump_model@champion', NULL, 'x', '1', "
                    "ts => '2024-06-01') > (SELECT max(prediction_id) FROM pgpoly.predictions "
                    "WHERE entity <> 'x');", db=dst)
    pgtest.check(r.rc == 0 and r.out.strip() == "t",
                 "logging after the restore continues the ids: %r %s" % (r.out, r.err))


pgtest.main(test)
