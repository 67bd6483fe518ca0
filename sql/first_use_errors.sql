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

-- A server pointing at another service's port: the error says to check the
-- server's options.  Redis at PostgreSQL's port (which closes the connection
-- on RESP), Elasticsearch at Chroma's (404 on GET /), Chroma with a path in
-- url (a 404 without Chroma's JSON error: a route, not a missing collection).
-- Ports are masked.
CREATE FUNCTION fue_err(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st text; msg text; det text; hint text;
BEGIN
	EXECUTE stmt;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		det = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
	-- PostgreSQL closes the connection or resets it: the same to the user
	msg := regexp_replace(msg, 'could not read the reply: Connection reset by peer$',
						  'the server closed the connection');
	RETURN regexp_replace(format(E'%s: %s\nDETAIL: %s\nHINT: %s', st, msg, det, hint),
						  '127\.0\.0\.1:[0-9]+', '127.0.0.1:PORT', 'g');
END
$$;
\getenv pgport PGPORT
\getenv chroma_url CHROMA_URL
CREATE SERVER fue_redis FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port :'pgport');
CREATE FOREIGN TABLE fue_r (k text OPTIONS (key 'true'), v int) SERVER fue_redis;
SELECT fue_err($$SELECT * FROM fue_r WHERE k = 'a'$$);
CREATE SERVER fue_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE fue_e (_id text, v int) SERVER fue_es OPTIONS (index 'fue');
SELECT fue_err('SELECT * FROM fue_e');
SELECT :'chroma_url' || '/api/v2' AS chroma_api \gset
CREATE SERVER fue_vec FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_api');
CREATE FOREIGN TABLE fue_v (id text, embedding real[]) SERVER fue_vec OPTIONS (collection 'fue');
SELECT fue_err('SELECT * FROM fue_v');
-- with the right url, a missing collection is still named as such
CREATE SERVER fue_vec_ok FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE fue_v_ok (id text, embedding real[]) SERVER fue_vec_ok
  OPTIONS (collection 'pgpoly_rt_fue_missing');
SELECT fue_err('SELECT * FROM fue_v_ok');

-- A k-NN with a query vector of the wrong dimension is a clear 22000 naming
-- both dimensions, also in the session whose first write created the
-- collection (its cached description had no dimension yet).
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_fue_dim"
CREATE FOREIGN TABLE fue_dim (id text, embedding real[], _distance float8) SERVER fue_vec_ok
  OPTIONS (collection 'pgpoly_rt_fue_dim', create_collection 'true', distance 'cosine');
SELECT id FROM fue_dim ORDER BY embedding <=> '{1,2,3}' LIMIT 1;
INSERT INTO fue_dim VALUES ('a', '{1,2,3}');
SELECT id FROM fue_dim ORDER BY embedding <=> '{1,2}' LIMIT 1;
SELECT id FROM fue_dim ORDER BY embedding <=> '{1,2,4}' LIMIT 1;
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_rt_fue_dim"

-- Clean up
DROP SERVER fue_redis, fue_es, fue_vec, fue_vec_ok CASCADE;
DROP FUNCTION fue_err(text);
DROP TABLE fue_train;
DELETE FROM pgpoly.predictions WHERE model_name = 'fue_m';
SELECT pgpoly.drop_prediction_partitions('infinity') >= 0 AS dropped;
DELETE FROM pgpoly.registered_models WHERE name = 'fue_m';
DELETE FROM pgpoly.runs WHERE experiment_id IN
    (SELECT experiment_id FROM pgpoly.experiments WHERE name = 'fue_exp');
DELETE FROM pgpoly.experiments WHERE name = 'fue_exp';
