-- pgpoly_redis topologies: option validation (no server is contacted) and
-- the hash slot function.  Clusters and Sentinel run for real in the fault
-- tests (test/fault/test_redis_cluster.py, test_redis_sentinel.py).
\set VERBOSITY default

-- Valid forms.
CREATE SERVER t_single FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (host '127.0.0.1', port '6379');
CREATE SERVER t_seed FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (cluster 'true', host '10.0.0.1', port '7000');
CREATE SERVER t_nodes FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (nodes '10.0.0.1:7000, 10.0.0.2:7000,[::1]:7002', timeout_ms '1000');
CREATE SERVER t_nodes2 FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (cluster 'true', nodes 'a:1');
CREATE SERVER t_sent FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (sentinels 's1:26379, s2:26379', sentinel_master 'mymaster', db '2');
CREATE SERVER t_nocluster FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (cluster 'false', port '6380');

-- Exactly one topology.
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (nodes 'a:1', host 'b');
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (nodes 'a:1', port '7000');
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (nodes 'a:1', cluster 'false');
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (sentinels 'a:1', sentinel_master 'm', host 'b');
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (sentinels 'a:1', sentinel_master 'm', cluster 'true');
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (sentinels 'a:1', sentinel_master 'm', nodes 'b:2');
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (sentinels 'a:1');
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (sentinel_master 'm');
-- db 0 only on a cluster.
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (cluster 'true', db '1');
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (nodes 'a:1', db '3');
CREATE SERVER t_db0 FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (cluster 'true', db '0');
-- sentinel_check_ms: with sentinels only, 0 (only after a failure) or more.
CREATE SERVER t_sent_check FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (sentinels 's1:26379', sentinel_master 'm', sentinel_check_ms '0');
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (host 'a', sentinel_check_ms '100');
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (nodes 'a:1', sentinel_check_ms '100');
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (sentinels 'a:1', sentinel_master 'm', sentinel_check_ms '-1');
-- Address lists.
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (nodes 'a:1, b');
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (nodes 'a:70000');
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (nodes 'a:1,,b:2');
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (sentinels ':26379', sentinel_master 'm');
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (nodes '');
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (cluster 'sometimes');
CREATE SERVER bad FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (sentinel_mastr 'm');
-- ALTER SERVER checks the resulting option set.
ALTER SERVER t_single OPTIONS (ADD cluster 'true');
ALTER SERVER t_single OPTIONS (ADD db '1');
ALTER SERVER t_single OPTIONS (SET cluster 'false');
ALTER SERVER t_seed OPTIONS (ADD db '4');
ALTER SERVER t_nodes OPTIONS (ADD sentinels 'x:1');
ALTER SERVER t_sent OPTIONS (DROP sentinel_master);
ALTER SERVER t_sent OPTIONS (SET sentinel_master 'other');
SELECT srvname, srvoptions FROM pg_foreign_server WHERE srvname LIKE 't\_%' ORDER BY 1;

-- Hash slots: the specification's check value, and hash tags.
SELECT pgpoly.redis_key_slot('123456789') = x'31C3'::int AS crc16_check,
       pgpoly.redis_key_slot('123456789');
SELECT k, pgpoly.redis_key_slot(k)
  FROM unnest(ARRAY['', 'foo', 'bar', 'user:1', '{user1000}.following',
                    '{user1000}.followers', 'user1000', 'foo{}{bar}', '{}',
                    'foo{{bar}}zap', '{bar', 'foo{bar}{zap}', 'bar}', 'a{b}c',
                    'b']) AS k;
-- Keys sharing a hash tag share a slot; the tag is all that counts.
SELECT count(DISTINCT pgpoly.redis_key_slot('fv:{user42}:' || g)) AS slots
  FROM generate_series(1, 100) g;
SELECT count(DISTINCT pgpoly.redis_key_slot('fv:user42:' || g)) > 90 AS spread
  FROM generate_series(1, 100) g;
SELECT min(s), max(s) FROM (SELECT pgpoly.redis_key_slot(md5(g::text)) s
  FROM generate_series(1, 20000) g) x;

DROP SERVER t_single, t_seed, t_nodes, t_nodes2, t_sent, t_nocluster, t_db0, t_sent_check;
