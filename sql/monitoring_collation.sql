--
-- drift() and feature_stats() compare the text forms of non-numeric values
-- byte for byte, whatever the collation of the column they come from.
--
\getenv redis_port REDIS_PORT
\set VERBOSITY terse
SET client_min_messages = warning;

-- Categories are text forms, compared byte for byte whatever the column's
-- collation: under a case-insensitive one, 'a' and 'A' are still two
-- categories for drift and two distinct values for feature_stats.
CREATE COLLATION mco_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE mco_ci_r (c text COLLATE mco_ci, t text);
CREATE TABLE mco_ci_k (c text COLLATE mco_ci, t text);
INSERT INTO mco_ci_r SELECT v, v FROM unnest(ARRAY['a', 'a', 'b', 'b']) v;
INSERT INTO mco_ci_k SELECT v, v FROM unnest(ARRAY['A', 'A', 'B', 'b']) v;
-- the same answer for the column in mco_ci as for the one in the default collation
SELECT * FROM pgpoly.drift('mco_ci_r', 'mco_ci_k');
SELECT * FROM pgpoly.drift('SELECT c, c::text COLLATE "C" AS t FROM mco_ci_r',
                           'SELECT c, c::text COLLATE "C" AS t FROM mco_ci_k');

CREATE SERVER mco FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE FOREIGN TABLE mco_users (user_id text OPTIONS (key 'true'), plan text, tier text)
  SERVER mco OPTIONS (key_prefix 'regress_mco:');
CREATE TABLE mco_users_history (entity text NOT NULL, event_time timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(), plan text COLLATE mco_ci, tier text);
SELECT pgpoly.create_feature_view('mco_users', 'user_id', 'mco_users', offline_table => 'mco_users_history');
INSERT INTO mco_users_history (entity, event_time, plan, tier)
  SELECT 'u' || i, '2024-01-01', v, v FROM unnest(ARRAY['a', 'A', 'b', 'B', 'b', NULL]) WITH ORDINALITY u(v, i);
SELECT feature, count, nulls, distinct_count FROM pgpoly.feature_stats('mco_users');
SELECT pgpoly.drop_feature_view('mco_users');
DROP TABLE mco_users_history, mco_ci_r, mco_ci_k;
DROP SERVER mco CASCADE;
DROP COLLATION mco_ci;
