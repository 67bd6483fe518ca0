#!/usr/bin/env python3
"""pg_dump / pg_restore (custom and plain format) of a database that uses everything.

The source database holds the registry (experiments, runs, params, metrics,
tags, model versions, aliases and their history, versioned datasets with
hashes, run inputs), lineage, a feature view with history, predictions in
several monthly partitions with labels, a sync with queued changes and a
dead letter, an outbox table's queued change, and foreign servers, tables
and user mappings.  After pg_restore -Fc (and psql of a plain dump) into a
fresh database every pgpoly.* read answers as in the source, and new writes
work: sequences continue, unique rules hold, alias slots and partitions for
new months are made.
"""

import atexit
import difflib
import os
import subprocess

import pgtest

REDIS_PORT = os.environ["REDIS_PORT"]

SETUP = r"""
SET client_min_messages = warning;
CREATE SERVER dump_r FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '%(port)s');
CREATE USER MAPPING FOR CURRENT_USER SERVER dump_r;
CREATE SERVER dump_dead FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (port '1', connect_timeout_ms '200');
CREATE FOREIGN TABLE dump_fv (user_id text OPTIONS (key 'true'), clicks int, plan text)
  SERVER dump_r OPTIONS (table_type 'hash', key_prefix '%(pfx)sfv:');
SELECT pgpoly.create_feature_view('dump_fv', 'user_id', 'dump_fv', ttl => '3650 days');
SELECT pgpoly.put_features('dump_fv', 'u' || g, jsonb_build_object('clicks', g, 'plan', 'p' || (g %% 3)),
                           '2024-01-01'::timestamptz + g * interval '1 hour')
FROM generate_series(1, 6) g;
SELECT pgpoly.put_features('dump_fv', 'u1', '{"clicks": 100}', '2024-02-01');

SELECT pgpoly.start_run('dump_exp', 'r1', '{"lr": "0.1"}', '{"team": "a"}') AS run1 \gset
SELECT pgpoly.start_run('dump_exp', 'r2', '{"lr": "0.2"}') AS run2 \gset
SELECT pgpoly.start_run('dump_exp2', 'r3') AS run3 \gset
SELECT pgpoly.log_param(:'run1', 'depth', '3');
SELECT pgpoly.log_metric(:'run1', 'rmse', 0.5, 1, '2024-01-01');
SELECT pgpoly.log_metric(:'run1', 'rmse', 0.3, 2, '2024-01-02');
SELECT pgpoly.log_metric(:'run2', 'rmse', 0.4, 1, '2024-01-01');
SELECT pgpoly.set_tag(:'run2', 'team', 'b');
SELECT pgpoly.end_run(:'run1');
SELECT pgpoly.end_run(:'run2', 'FAILED');
SELECT pgpoly.register_dataset('dump_ds', 's3://ds/1', version => 'v1');
SELECT pgpoly.register_dataset('dump_ds', 's3://ds/2', version => 'v2');
SELECT pgpoly.log_input(:'run1', 'dump_ds', 'v1');
SELECT pgpoly.log_input(:'run2', 'dump_ds');
SELECT pgpoly.register_model_version('dump_model', 's3://m/1', :'run1');
SELECT pgpoly.register_model_version('dump_model', 's3://m/2', :'run2', '{"k": "v"}');
SELECT pgpoly.set_model_alias('dump_model', 'champion', 1);
SELECT pgpoly.set_model_alias('dump_model', 'champion', 2);
SELECT pgpoly.set_model_alias('dump_model', 'challenger', 1);
SELECT pgpoly.delete_model_alias('dump_model', 'challenger');
SELECT pgpoly.add_lineage('dataset', 'dump_raw', 'dataset', 'dump_ds', 'cleaned');
SELECT pgpoly.add_lineage('es_index', 'dump_idx', 'job', 'dump_job');
SELECT pgpoly.create_training_set('dump_train',
  $$SELECT 'u' || g AS user_id, '2024-01-03'::timestamptz AS event_time FROM generate_series(1, 4) g$$,
  ARRAY['dump_fv:*']);
SELECT pgpoly.log_predictions(jsonb_agg(jsonb_build_object(
	'model', 'dump_model@champion', 'entity', 'u' || g, 'prediction', g,
	'features', jsonb_build_object('clicks', g), 'confidence', g / 100.0,
	'request_id', 'q' || g, 'ts', timestamptz '2024-01-15' + g * interval '5 days')))
FROM generate_series(1, 20) g;
SELECT pgpoly.log_label('q' || g, to_jsonb(g %% 2 = 0)) FROM generate_series(1, 20, 3) g;

-- a sync whose target is unreachable: its changes stay queued
CREATE TABLE dump_src (id int PRIMARY KEY, v text);
INSERT INTO dump_src SELECT g, 'v' || g FROM generate_series(1, 5) g;
CREATE FOREIGN TABLE dump_tgt (id text OPTIONS (key 'true'), v text)
  SERVER dump_dead OPTIONS (key_prefix '%(pfx)ssync:');
SELECT pgpoly.create_sync('dump_sync', 'dump_src', 'dump_tgt');
UPDATE dump_src SET v = 'w' || id WHERE id <= 2;
-- a dead letter (as the worker files one after sync_max_attempts rejections)
INSERT INTO pgpoly.sync_dead_letters (name, key, op, payload, error, attempts, sync_id, owner)
SELECT name, '3', 'upsert', '{"id": 3, "v": "v3"}', 'WRONGTYPE', 5, sync_id, owner
FROM pgpoly.syncs WHERE name = 'dump_sync';
-- an outbox table with a queued change
CREATE FOREIGN TABLE dump_ob (id text OPTIONS (key 'true'), v text)
  SERVER dump_dead OPTIONS (key_prefix '%(pfx)sob:', write_mode 'outbox');
INSERT INTO dump_ob VALUES ('a', 'x');
"""

# every read, in a stable order; the sync's columns that move with time
# (lag, errors) are left out
CHECK = r"""
SELECT name FROM pgpoly.experiments ORDER BY 1;
SELECT e.name, r.run_name, r.status, r.params, r.tags FROM pgpoly.runs r
  JOIN pgpoly.experiments e USING (experiment_id) ORDER BY 2;
SELECT r.run_name, m.key, m.value, m.step, m.ts FROM pgpoly.metrics m JOIN pgpoly.runs r USING (run_id) ORDER BY 1, 2, 4;
SELECT r.run_name, m.key, m.value, m.step FROM pgpoly.latest_metrics m JOIN pgpoly.runs r USING (run_id) ORDER BY 1, 2;
SELECT run_name FROM pgpoly.search_runs('dump_exp', 'metrics.rmse < 0.45', 'metrics.rmse ASC');
SELECT run_name FROM pgpoly.search_runs('dump_exp', 'tags.team = ''b''');
SELECT model_name, version, source_uri, tags FROM pgpoly.model_versions ORDER BY 1, 2;
SELECT model_name, alias, version FROM pgpoly.model_aliases ORDER BY 1, 2;
SELECT model_name, alias, version, upper_inf(valid) FROM pgpoly.model_alias_history ORDER BY 1, 2, lower(valid);
SELECT pgpoly.model_version_by_alias('dump_model', 'champion');
SELECT name, version, uri, store FROM pgpoly.datasets ORDER BY 1, 2;
SELECT * FROM pgpoly.lineage('model_version', 'dump_model@1', 'upstream') ORDER BY 1, 2, 3;
SELECT * FROM pgpoly.lineage('dataset', 'dump_raw', 'downstream') ORDER BY 1, 2, 3;
SELECT * FROM pgpoly.lineage('job', 'dump_job', 'both') ORDER BY 1, 2, 3;
SELECT name, entity, online_table, offline_table, ttl FROM pgpoly.feature_views ORDER BY 1;
SELECT entity, features, event_time, source FROM pgpoly.get_online_features('dump_fv', ARRAY['u1', 'u2', 'u9']);
SELECT * FROM pgpoly.get_historical_features(
  $$SELECT 'u' || g AS user_id, '2024-01-03'::timestamptz AS event_time FROM generate_series(1, 3) g$$,
  ARRAY['dump_fv:*']);
SELECT * FROM dump_train ORDER BY 1;
SELECT * FROM pgpoly.feature_stats('dump_fv') ORDER BY 1;
SELECT view_name, newest_event_time, ttl FROM pgpoly.feature_freshness ORDER BY 1;
SELECT prediction_id, model_name, version, entity, features, prediction, confidence, request_id, ts
  FROM pgpoly.predictions ORDER BY 1;
SELECT prediction_id, label FROM pgpoly.labeled_predictions ORDER BY 1;
SELECT * FROM pgpoly.drift('SELECT (features->>''clicks'')::int AS c FROM pgpoly.predictions WHERE ts < ''2024-02-15''',
                           'SELECT (features->>''clicks'')::int AS c FROM pgpoly.predictions WHERE ts >= ''2024-02-15''');
SELECT name, source, target, pending, dead_letters FROM pgpoly.sync_status ORDER BY 1;
SELECT name, key, op, payload FROM pgpoly.sync_dead_letters ORDER BY 1, 2;
SELECT srvname, array(SELECT unnest(srvoptions) ORDER BY 1) FROM pg_foreign_server WHERE srvname LIKE 'dump%%' ORDER BY 1;
SELECT srvname, array(SELECT unnest(umoptions) ORDER BY 1) FROM pg_user_mappings WHERE srvname LIKE 'dump%%' ORDER BY 1;
"""

# writes after the restore; every result is compared with the source's
WRITES = r"""
SET client_min_messages = warning;
SELECT pgpoly.start_run('dump_exp', 'r4') IS NOT NULL;
SELECT pgpoly.start_run('dump_exp3', 'r5') IS NOT NULL;
SELECT name FROM pgpoly.experiments ORDER BY experiment_id;
SELECT pgpoly.register_model_version('dump_model', 's3://m/3');
SELECT pgpoly.register_model_version('dump_model2', 's3://n/1');
SELECT pgpoly.set_model_alias('dump_model', 'champion', 3);
SELECT pgpoly.set_model_alias('dump_model', 'challenger', 2);
SELECT pgpoly.model_version_by_alias('dump_model', 'challenger');
SELECT model_name, alias, version, upper_inf(valid) FROM pgpoly.model_alias_history ORDER BY 1, 2, lower(valid);
SELECT pgpoly.register_dataset('dump_ds', version => 'v3');
SELECT name, version FROM pgpoly.datasets ORDER BY 1, 2;
SELECT pgpoly.log_prediction('dump_model@champion', NULL, 'x', '1', ts => '2025-03-01');
SELECT pgpoly.log_prediction('dump_model', 1, 'y', '2', ts => '2024-01-20');
SELECT pgpoly.put_features('dump_fv', 'u7', '{"clicks": 7}', '2024-01-05');
SELECT count(*) FROM pgpoly.dump_fv_history;
INSERT INTO dump_src VALUES (6, 'v6');
SELECT pgpoly.sync_retry('dump_sync');
SELECT name, pending, dead_letters FROM pgpoly.sync_status ORDER BY 1;
"""


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(cmd), p.stderr))
    return p


def fresh_db(name):
    subprocess.run(["dropdb", "--if-exists", "--force", name], capture_output=True)
    atexit.register(lambda: subprocess.run(["dropdb", "--if-exists", "--force", name],
                                           capture_output=True))
    run(["createdb", name])


def query(sql, db):
    r = pgtest.psql(sql, db=db, timeout=120)
    if r.rc != 0 or "ERROR" in r.err:
        raise RuntimeError("query failed in %s: %s" % (db, r.err))
    return r.out


def same(expected, got, dst, what):
    """Check that dst answered as the source did (else show the diff)."""
    if got != expected:
        diff = "\n".join(difflib.unified_diff(expected.split("\n"), got.split("\n"),
                                              "source", dst, lineterm=""))
        pgtest.check(False, "%s in %s answer as in the source:\n%s" % (what, dst, diff))


def test():
    pfx = "pgpoly_dump_%d:" % os.getpid()
    src = pgtest.create_db("pgpoly_dumpall_src")
    r = pgtest.psql(SETUP % {"port": REDIS_PORT, "pfx": pfx}, db=src, timeout=120)
    if r.rc != 0 or "ERROR" in r.err:
        raise RuntimeError("setup failed: %s" % r.err)
    # the sync's and the outbox table's changes stay queued: their store is down
    before = query(CHECK, src)
    pgtest.check("dump_sync|dump_src|dump_tgt|7|1" in before and "dump_sync|3|upsert|" in before,
                 "the sync, its queued changes and its dead letter are listed: %s" % before)

    work = pgtest.work_dir()
    dump = os.path.join(work, "pgpoly_dumpall_%d.dump" % os.getpid())
    plain = os.path.join(work, "pgpoly_dumpall_%d.sql" % os.getpid())
    atexit.register(lambda: [os.path.exists(f) and os.unlink(f) for f in (dump, plain)])
    run(["pg_dump", "-Fc", "-f", dump, src])
    run(["pg_dump", "-f", plain, src])

    dst_c = "pgpoly_dumpall_c_%d" % os.getpid()
    dst_p = "pgpoly_dumpall_p_%d" % os.getpid()
    fresh_db(dst_c)
    fresh_db(dst_p)
    p = subprocess.run(["pg_restore", "--exit-on-error", "-d", dst_c, dump],
                       capture_output=True, text=True)
    pgtest.check(p.returncode == 0, "pg_restore --exit-on-error succeeds: %s" % p.stderr)
    p = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dst_p, "-f", plain],
                       capture_output=True, text=True)
    pgtest.check(p.returncode == 0, "the plain dump restores with ON_ERROR_STOP: %s" % p.stderr)

    for dst in (dst_c, dst_p):
        same(before, query(CHECK, dst), dst, "reads")
    # the same writes in the source and in each restored copy answer alike
    src_w = query(WRITES, src)
    for dst in (dst_c, dst_p):
        same(src_w, query(WRITES, dst), dst, "writes")

pgtest.main(test)
