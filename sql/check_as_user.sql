--
-- Whose user mapping a foreign scan or modification uses: the user the
-- plan checks the table's permissions as.  A view owned by another role
-- reads and writes its foreign tables with the owner's mapping, as
-- postgres_fdw does.  In Redis the two mappings are ACL users that may
-- touch different keys, so the wrong one fails; in every store
-- pgpoly.connections() shows whose mapping a connection belongs to.  The
-- test stores do not demand credentials (Redis' default user has no
-- password), so a superuser waives the trust rule's check on each mapping.
--
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL
\! redis-cli -p "$REDIS_PORT" ACL SETUSER regress_cau_owner on '>owner-pw' '~regress_cau:*' '+@all' >/dev/null
\! redis-cli -p "$REDIS_PORT" ACL SETUSER regress_cau_reader on '>reader-pw' '~elsewhere:*' '+@all' >/dev/null
CREATE ROLE regress_cau_owner;
CREATE ROLE regress_cau_reader;

CREATE SERVER cau_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR regress_cau_owner SERVER cau_redis
  OPTIONS (user 'regress_cau_owner', password 'owner-pw', password_required 'false');
CREATE USER MAPPING FOR regress_cau_reader SERVER cau_redis
  OPTIONS (user 'regress_cau_reader', password 'reader-pw', password_required 'false');
CREATE FOREIGN TABLE cau_r (key text, value text) SERVER cau_redis
  OPTIONS (table_type 'string', key_prefix 'regress_cau:', write_mode 'immediate');
CREATE SERVER cau_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
CREATE USER MAPPING FOR regress_cau_owner SERVER cau_es
  OPTIONS (username 'owner', password 'owner-pw', password_required 'false');
CREATE USER MAPPING FOR regress_cau_reader SERVER cau_es
  OPTIONS (username 'reader', password 'reader-pw', password_required 'false');
CREATE FOREIGN TABLE cau_e (_id text, v text) SERVER cau_es OPTIONS (index 'regress_cau');
CREATE SERVER cau_vec FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE USER MAPPING FOR regress_cau_owner SERVER cau_vec OPTIONS (api_key 'owner-key', password_required 'false');
CREATE USER MAPPING FOR regress_cau_reader SERVER cau_vec OPTIONS (api_key 'reader-key', password_required 'false');
CREATE FOREIGN TABLE cau_v (id text, embedding real[], document text) SERVER cau_vec
  OPTIONS (collection 'regress_cau', create_collection 'true', distance 'l2');

GRANT SELECT, INSERT ON cau_r, cau_e, cau_v TO regress_cau_owner, regress_cau_reader;
CREATE VIEW cau_rv AS SELECT * FROM cau_r;
CREATE VIEW cau_ev AS SELECT * FROM cau_e;
CREATE VIEW cau_vv AS SELECT * FROM cau_v;
ALTER VIEW cau_rv OWNER TO regress_cau_owner;
ALTER VIEW cau_ev OWNER TO regress_cau_owner;
ALTER VIEW cau_vv OWNER TO regress_cau_owner;
GRANT SELECT, INSERT ON cau_rv, cau_ev, cau_vv TO regress_cau_reader;
GRANT USAGE ON SCHEMA pgpoly TO regress_cau_owner, regress_cau_reader;
SELECT pgpoly.elastic_request('cau_es', 'PUT', '/regress_cau') IS NOT NULL AS created;
-- What Redis answered to a statement (its detail names no host or port).
CREATE FUNCTION redis_refusal(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  detail text;
BEGIN
  EXECUTE stmt;
  RETURN 'allowed';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
  RETURN split_part(detail, ' ', 3);
END $$;
GRANT EXECUTE ON FUNCTION redis_refusal(text) TO regress_cau_reader;

SET ROLE regress_cau_owner;
INSERT INTO cau_r VALUES ('a', 'written by the owner');
RESET ROLE;

SET ROLE regress_cau_reader;
-- Through the view: the owner's mapping, for reading and for writing.
SELECT * FROM cau_rv;
-- (The table is not the first entry of the range table: pushed quals deparse.)
SELECT * FROM cau_rv WHERE key = 'a';
EXPLAIN (VERBOSE, COSTS OFF) SELECT * FROM cau_rv WHERE key = 'a';
INSERT INTO cau_rv VALUES ('b', 'written through the view');
SELECT * FROM cau_rv ORDER BY key;
-- Directly: the reader's own mapping, which Redis does not let near the keys.
SELECT redis_refusal('SELECT * FROM cau_r') AS direct_read,
       redis_refusal($$INSERT INTO cau_r VALUES ('c', 'x')$$) AS direct_write;
-- Elasticsearch and the vector service: the connection is the owner's.
SELECT pgpoly.disconnect();
SELECT count(*) FROM cau_ev;
SELECT count(*) FROM cau_vv WHERE id = 'none';
SELECT server, user_name FROM pgpoly.connections()
  WHERE server IN ('cau_redis', 'cau_es', 'cau_vec') ORDER BY server, user_name;
SELECT pgpoly.disconnect();
SELECT count(*) FROM cau_e;
SELECT server, user_name FROM pgpoly.connections()
  WHERE server IN ('cau_redis', 'cau_es', 'cau_vec') ORDER BY server, user_name;
-- A plan made as one role and run as another: the user is taken when it runs.
RESET ROLE;
SET ROLE regress_cau_owner;
PREPARE cau_p AS SELECT count(*) FROM cau_e;
EXECUTE cau_p;
RESET ROLE;
SET ROLE regress_cau_reader;
SELECT pgpoly.disconnect();
EXECUTE cau_p;
SELECT server, user_name FROM pgpoly.connections() WHERE server = 'cau_es';
RESET ROLE;

SELECT pgpoly.disconnect();
DELETE FROM cau_r WHERE key IN ('a', 'b');
SELECT pgpoly.elastic_request('cau_es', 'DELETE', '/regress_cau') IS NOT NULL AS cleaned;
DROP VIEW cau_rv, cau_ev, cau_vv;
DROP FUNCTION redis_refusal(text);
REVOKE USAGE ON SCHEMA pgpoly FROM regress_cau_owner, regress_cau_reader;
DROP SERVER cau_redis, cau_es, cau_vec CASCADE;
DROP ROLE regress_cau_owner, regress_cau_reader;
\! redis-cli -p "$REDIS_PORT" ACL DELUSER regress_cau_owner regress_cau_reader >/dev/null
