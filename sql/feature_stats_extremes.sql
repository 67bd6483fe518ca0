--
-- feature_stats on extreme numeric features: whichever way the mean and
-- stddev are summed (in float8, or again in numeric when a float8 sum
-- overflows), they are those of the float8 values min, max and the
-- quantiles are taken over.  A constant feature's mean is its value and its
-- stddev 0; every mean lies between min and max.
--
\getenv redis_port REDIS_PORT
\set VERBOSITY terse
SET client_min_messages = warning;
CREATE SERVER fse FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE FOREIGN TABLE fse_users (user_id text OPTIONS (key 'true'), big float8, r real,
  f float8, n numeric, i bigint) SERVER fse OPTIONS (key_prefix 'regress_fse:');
SELECT pgpoly.create_feature_view('fse_users', 'user_id', 'fse_users');

-- the rows: constant features (r, f, n, i) beside one whose float8 sum
-- overflows (big: its mean is still a float8) on the first day, the same
-- without it on the second
INSERT INTO pgpoly.fse_users_history (entity, event_time, big, r, f, n, i)
  SELECT 'u' || g, '2024-01-01', 1.5e308, 0.1, 1.2345678901234567e300, 0.30000000000000004,
         9007199254740993
  FROM generate_series(1, 3) g;
INSERT INTO pgpoly.fse_users_history (entity, event_time, big, r, f, n, i)
  SELECT 'v' || g, '2024-01-02', NULL, 0.1, 1.2345678901234567e300, 0.30000000000000004,
         9007199254740993
  FROM generate_series(1, 3) g;

SELECT w.day, s.feature, s.mean, s.min, s.max, s.stddev,
       s.mean = s.min AND s.mean = s.max AS mean_is_the_value
FROM (VALUES ('2024-01-01'::timestamptz), ('2024-01-02')) w(day),
     pgpoly.feature_stats('fse_users', w.day, w.day + interval '1 day') s
ORDER BY w.day, s.feature;

SELECT pgpoly.drop_feature_view('fse_users', drop_tables => true);
DROP SERVER fse CASCADE;
