--
-- Settings production installations run with, applied to pgpoly's
-- functions: session_replication_role = replica (a replication tool's or
-- pg_restore --disable-triggers' session fires no ordinary trigger, so no
-- foreign key's ON DELETE CASCADE either).  Redis keys regress_ps* are
-- created and removed here.
--
\getenv redis_port REDIS_PORT
\set VERBOSITY terse
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_ps*' | xargs -r redis-cli -p "$REDIS_PORT" del > /dev/null
CREATE SERVER ps_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER ps_redis;

--
-- drop_feature_view under session_replication_role = replica removes the
-- view's storage row too (the cascade of its foreign key does not fire), so
-- the name can be used again and nothing dangling is left to dump.
--
CREATE FOREIGN TABLE ps_online (user_id text OPTIONS (key 'true'), clicks int)
  SERVER ps_redis OPTIONS (key_prefix 'regress_ps:fv:');
SELECT pgpoly.create_feature_view('ps_fv', 'user_id', 'ps_online');
SET session_replication_role = replica;
SELECT pgpoly.drop_feature_view('ps_fv', drop_tables => true);
RESET session_replication_role;
SELECT count(*) AS storage_rows_left FROM pgpoly._feature_view_storage WHERE view_name = 'ps_fv';
SELECT pgpoly.create_feature_view('ps_fv', 'user_id', 'ps_online');
SELECT pgpoly.put_features('ps_fv', 'u1', '{"clicks": 3}');
SELECT entity, features, source FROM pgpoly.get_online_features('ps_fv', ARRAY['u1']);
SELECT pgpoly.drop_feature_view('ps_fv', drop_tables => true);
DROP SERVER ps_redis CASCADE;
