--
-- Mistakes a first-time user makes following the README: each error says
-- what to fix (message, DETAIL and HINT shown).
--
\set SHOW_CONTEXT never
SET client_min_messages = warning;

SELECT pgpoly.start_run('fue_exp', 'r1') AS run \gset
SELECT pgpoly.register_model_version('fue_m', 's3://m/1', run => :'run');
SELECT pgpoly.set_model_alias('fue_m', 'champion', 1);

-- an alias of a model that does not exist: the model is what is missing
-- (not "pass version NULL", which the call did)
SELECT pgpoly.log_prediction('fue_nope@champion', NULL, 'u1', '{"p": 1}');
SELECT pgpoly.log_predictions('[{"model": "fue_nope@champion", "entity": "u1", "prediction": {"p": 1}}]');
SELECT pgpoly.log_prediction('fue_nope', 1, 'u1', '{"p": 1}');
-- name@alias with a version: the hint about aliases still applies
SELECT pgpoly.log_prediction('fue_m@champion', 1, 'u1', '{"p": 1}');
-- and the alias resolves
SELECT pgpoly.log_prediction('fue_m@champion', NULL, 'u1', '{"p": 1}', request_id => 'fue-1') > 0 AS logged;

-- drift of two relations that share no column is an ERROR naming both
-- sides' columns, not an empty answer
CREATE TABLE fue_train (user_stats__clicks_7d int, user_stats__ctr float8);
INSERT INTO fue_train VALUES (1, 0.1), (2, 0.2);
SELECT * FROM pgpoly.drift('fue_train',
    $$SELECT (features->>'age')::int AS age FROM pgpoly.predictions WHERE model_name = 'fue_m'$$);
SELECT * FROM pgpoly.drift('fue_train', 'SELECT');
-- aliased alike, the columns are compared
SELECT feature, status IS NULL AS no_current_values FROM pgpoly.drift('fue_train',
    $$SELECT (features->>'clicks')::int AS user_stats__clicks_7d FROM pgpoly.predictions WHERE model_name = 'fue_m'$$);

-- Clean up
DROP TABLE fue_train;
DELETE FROM pgpoly.predictions WHERE model_name = 'fue_m';
SELECT pgpoly.drop_prediction_partitions('infinity') >= 0 AS dropped;
DELETE FROM pgpoly.registered_models WHERE name = 'fue_m';
DELETE FROM pgpoly.runs WHERE experiment_id IN
    (SELECT experiment_id FROM pgpoly.experiments WHERE name = 'fue_exp');
DELETE FROM pgpoly.experiments WHERE name = 'fue_exp';
