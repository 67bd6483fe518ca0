--
-- feature_stats on extreme numeric features: whichever way the mean and
-- stddev of a float feature are summed (in float8, or again in numeric when a
-- float8 sum overflows), they are those of the float8 values min, max and the
-- quantiles are taken over; an integer or numeric feature's are exact.  A constant feature's mean is its value and its
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

-- integer and numeric features whose values differ beyond a float8's 53
-- bits: mean and stddev are those of the values (PostgreSQL's exact integer and
-- numeric aggregates, then rounded to float8), as a plain avg / stddev_samp of
-- the history gives them; summed as float8 values, 2^53 and 2^53 + 1 were one
-- value and the stddev 0.  Compared with the native aggregates.
INSERT INTO pgpoly.fse_users_history (entity, event_time, n, i)
  VALUES ('w1', '2024-01-03', 1.00000000000000001, 9007199254740992),
         ('w2', '2024-01-03', 1.00000000000000002, 9007199254740993),
         ('w3', '2024-01-03', 1.00000000000000004, 9007199254740992),
         ('w4', '2024-01-03', 1.00000000000000005, 9007199254740993);
SELECT s.feature, s.mean, s.stddev,
       s.mean = n.mean AND s.stddev = n.sd AS native_mean_and_stddev,
       s.mean BETWEEN s.min AND s.max AS mean_in_range
FROM pgpoly.feature_stats('fse_users', '2024-01-03', '2024-01-04') s
JOIN (SELECT 'i' AS f, avg(i)::float8 AS mean, stddev_samp(i)::float8 AS sd
      FROM pgpoly.fse_users_history WHERE event_time = '2024-01-03'
      UNION ALL
      SELECT 'n', avg(n)::float8, stddev_samp(n)::float8
      FROM pgpoly.fse_users_history WHERE event_time = '2024-01-03') n ON n.f = s.feature
ORDER BY s.feature;

SELECT pgpoly.drop_feature_view('fse_users', drop_tables => true);
DROP SERVER fse CASCADE;
