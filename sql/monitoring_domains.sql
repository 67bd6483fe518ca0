--
-- drift() and feature_stats() treat a column of a domain over a numeric type
-- as numeric.
--
\getenv redis_port REDIS_PORT
\set VERBOSITY terse
SET client_min_messages = warning;

-- A column of a domain over a numeric type is numeric: binned with a KS
-- statistic by drift, with mean and quantiles by feature_stats, exactly as a
-- column of its base type (a domain over a domain too).
CREATE SERVER mdo FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE DOMAIN mdo_prob AS float8 CHECK (VALUE BETWEEN 0 AND 1);
CREATE DOMAIN mdo_small_prob AS mdo_prob CHECK (VALUE < 0.99);
CREATE DOMAIN mdo_count AS int;
CREATE TABLE mdo_d_r AS
  SELECT (g / 1000.0)::mdo_small_prob AS p, (g / 1000.0)::float8 AS p_base,
         (g % 17)::mdo_count AS n, g % 17 AS n_base
  FROM generate_series(1, 900) g;
CREATE TABLE mdo_d_k AS
  SELECT (g / 1100.0)::mdo_small_prob AS p, (g / 1100.0)::float8 AS p_base,
         (g % 13)::mdo_count AS n, g % 13 AS n_base
  FROM generate_series(1, 900) g;
SELECT * FROM pgpoly.drift('mdo_d_r', 'mdo_d_k');
-- one side a domain, the other its base type: numeric on both sides
SELECT * FROM pgpoly.drift('SELECT p, n_base AS n FROM mdo_d_r', 'SELECT p_base AS p, n FROM mdo_d_k');

CREATE FOREIGN TABLE mdo_scores (user_id text OPTIONS (key 'true'), p mdo_prob, p_base float8)
  SERVER mdo OPTIONS (key_prefix 'regress_mdo_scores:');
SELECT pgpoly.create_feature_view('mdo_scores', 'user_id', 'mdo_scores');
INSERT INTO pgpoly.mdo_scores_history (entity, event_time, p, p_base)
  SELECT 'u' || g, '2024-01-01', g / 100.0, g / 100.0 FROM generate_series(0, 100) g;
SELECT * FROM pgpoly.feature_stats('mdo_scores');
SELECT pgpoly.drop_feature_view('mdo_scores', drop_tables => true);
DROP FOREIGN TABLE mdo_scores;
DROP TABLE mdo_d_r, mdo_d_k;
DROP DOMAIN mdo_small_prob, mdo_prob, mdo_count;
DROP SERVER mdo CASCADE;
