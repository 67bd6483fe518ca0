--
-- A hostile non-superuser against the trust rule and the privilege checks
-- (a review of issue 9).  Each block is an attack that worked before its
-- fix; the expected output records the refusal.
--
-- The stores of the test harness ask for no credential (Redis without
-- requirepass, Chroma and the Elasticsearch stand-in without security):
-- they are what the trust rule protects.  test/fault/test_security_attack.py
-- runs the same rule against stores that do authenticate.
--
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL
\set VERBOSITY default
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_att_v"

CREATE ROLE regress_att_mallory NOLOGIN;
GRANT USAGE ON FOREIGN DATA WRAPPER pgpoly_redis, pgpoly_elastic, pgpoly_vector
  TO regress_att_mallory;
GRANT USAGE ON SCHEMA pgpoly TO regress_att_mallory;
GRANT EXECUTE ON FUNCTION pgpoly.elastic_request(name, text, text, jsonb)
  TO regress_att_mallory;
CREATE SCHEMA regress_att AUTHORIZATION regress_att_mallory;

-- SQLSTATE and message of a statement ('ok' if none), ports masked.
CREATE FUNCTION regress_att_try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	msg text;
	det text;
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
	RETURN regexp_replace(SQLSTATE || ': ' || msg || coalesce(' / ' || nullif(det, ''), ''),
						  '127\.0\.0\.1:[0-9]+', '127.0.0.1:PORT', 'g');
END $$;
GRANT EXECUTE ON FUNCTION regress_att_try(text) TO regress_att_mallory;

--
-- 1. A made-up credential.  The trust rule asks for a password or api_key
-- in the user mapping; a store that never asks for it accepts any, so the
-- rule must also check that the store asked (postgres_fdw refuses a server
-- that did not use the password).  Mallory owns these servers.
--
SET ROLE regress_att_mallory;
CREATE SERVER regress_att_r FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port :'redis_port');
-- Redis accepts AUTH default <anything> when the default user has no password.
CREATE USER MAPPING FOR CURRENT_USER SERVER regress_att_r
  OPTIONS (user 'default', password 'made-up');
CREATE FOREIGN TABLE regress_att.r (key text, value text) SERVER regress_att_r
  OPTIONS (table_type 'string', key_prefix 'regress_att:');
SELECT regress_att_try('SELECT * FROM regress_att.r');
SELECT regress_att_try('INSERT INTO regress_att.r VALUES (''k'', ''v'')');
ALTER USER MAPPING FOR CURRENT_USER SERVER regress_att_r OPTIONS (DROP user);
SELECT regress_att_try('SELECT * FROM regress_att.r');

CREATE SERVER regress_att_e FOREIGN DATA WRAPPER pgpoly_elastic
  OPTIONS (url :'es_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER regress_att_e
  OPTIONS (api_key 'made-up');
CREATE FOREIGN TABLE regress_att.e (_id text, title text) SERVER regress_att_e
  OPTIONS (index 'regress_att_e');
SELECT regress_att_try('SELECT * FROM regress_att.e');
SELECT regress_att_try($$SELECT pgpoly.elastic_request('regress_att_e', 'GET', '/')$$);
SELECT regress_att_try('IMPORT FOREIGN SCHEMA "regress_att*" FROM SERVER regress_att_e INTO regress_att');
-- A password without a username is not even sent.
ALTER USER MAPPING FOR CURRENT_USER SERVER regress_att_e
  OPTIONS (DROP api_key, ADD password 'made-up');
SELECT regress_att_try('SELECT * FROM regress_att.e');

CREATE SERVER regress_att_v FOREIGN DATA WRAPPER pgpoly_vector
  OPTIONS (url :'chroma_url');
CREATE USER MAPPING FOR CURRENT_USER SERVER regress_att_v
  OPTIONS (api_key 'made-up');
CREATE FOREIGN TABLE regress_att.v (id text, embedding real[]) SERVER regress_att_v
  OPTIONS (collection 'pgpoly_att_v');
SELECT regress_att_try('SELECT * FROM regress_att.v');
SELECT regress_att_try($$SELECT * FROM pgpoly.vector_search('regress_att.v', '{1,0}')$$);
SELECT regress_att_try('IMPORT FOREIGN SCHEMA x FROM SERVER regress_att_v INTO regress_att');
RESET ROLE;
-- Nothing is cached for the refused statements.
SELECT count(*) FROM pgpoly.connections() WHERE server LIKE 'regress_att%';
-- A superuser may waive the rule for a store that rightly asks for nothing.
ALTER USER MAPPING FOR regress_att_mallory SERVER regress_att_r
  OPTIONS (ADD password_required 'false', DROP password);
SET ROLE regress_att_mallory;
INSERT INTO regress_att.r VALUES ('k', 'v');
SELECT * FROM regress_att.r;
DELETE FROM regress_att.r;
RESET ROLE;
-- Superusers are not checked (no request without credentials is made).
SELECT count(*) FROM regress_att.r;

--
-- 2. A plan made for one role, run by another.  Which user mapping a scan
-- uses (and whom the trust rule checks) is decided when it runs, as for
-- privileges: a prepared statement or a PL/pgSQL function's cached plan
-- first run by a superuser must not lend the superuser's mapping to the
-- next role that runs it in the same backend (SET ROLE, a pooler).
--
CREATE SERVER regress_att_es FOREIGN DATA WRAPPER pgpoly_elastic
  OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('regress_att_es', 'DELETE', '/regress_att_docs') IS NOT NULL AS cleaned;
CREATE FOREIGN TABLE regress_att_docs (_id text, title text) SERVER regress_att_es
  OPTIONS (index 'regress_att_docs', refresh 'true');
INSERT INTO regress_att_docs VALUES ('1', 'classified');
GRANT SELECT ON regress_att_docs TO regress_att_mallory;
CREATE FUNCTION regress_att_titles() RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
	RETURN QUERY SELECT title FROM regress_att_docs;
END $$;
GRANT EXECUTE ON FUNCTION regress_att_titles() TO regress_att_mallory;
PREPARE regress_att_q AS SELECT title FROM regress_att_docs;
PREPARE regress_att_c AS SELECT count(*) FROM regress_att_docs;
EXECUTE regress_att_q;
EXECUTE regress_att_c;
SELECT regress_att_titles();
SET ROLE regress_att_mallory;
-- Mallory has no user mapping: each is refused as her own query is.
SELECT title FROM regress_att_docs;
EXECUTE regress_att_q;
EXECUTE regress_att_c;
SELECT regress_att_titles();
RESET ROLE;
-- With a mapping of her own, that is the one used.
CREATE USER MAPPING FOR regress_att_mallory SERVER regress_att_es
  OPTIONS (password_required 'false');
SET ROLE regress_att_mallory;
EXECUTE regress_att_q;
RESET ROLE;
SELECT user_name FROM pgpoly.connections() WHERE server = 'regress_att_es'
ORDER BY 1;
DEALLOCATE regress_att_q;
DEALLOCATE regress_att_c;

--
-- 3. vector_search returns what the table it is given exposes, no more.
-- A table may expose only some of a collection (no document, some
-- metadata keys as columns); the k-NN query on it cannot read the rest,
-- and neither may vector_search, nor filter on it.
--
CREATE SERVER regress_att_chroma FOREIGN DATA WRAPPER pgpoly_vector
  OPTIONS (url :'chroma_url');
CREATE USER MAPPING FOR regress_att_mallory SERVER regress_att_chroma
  OPTIONS (password_required 'false');
CREATE FOREIGN TABLE regress_att_vall (id text, embedding real[], document text,
                                       metadata jsonb)
  SERVER regress_att_chroma
  OPTIONS (collection 'pgpoly_att_v', create_collection 'true', distance 'l2');
INSERT INTO regress_att_vall VALUES
  ('a', '{1,0}', 'private a', '{"title": "A", "ssn": "123-45-6789", "n": 1}'),
  ('b', '{0,1}', 'private b', '{"title": "B", "ssn": "987-65-4321", "n": 2}');
-- Exposes the id, the embedding and the title (as column "t").
CREATE FOREIGN TABLE regress_att_vpub (id text, embedding real[],
                                       t text OPTIONS (field 'title'))
  SERVER regress_att_chroma OPTIONS (collection 'pgpoly_att_v');
GRANT SELECT ON regress_att_vpub TO regress_att_mallory;
SET ROLE regress_att_mallory;
SELECT * FROM regress_att_vpub ORDER BY id;
SELECT * FROM regress_att_vpub ORDER BY embedding <-> '{1,0}' LIMIT 1;
SELECT id, distance, document, metadata
FROM pgpoly.vector_search('regress_att_vpub', '{1,0}', 5) ORDER BY id;
SELECT id, metadata FROM pgpoly.vector_search('regress_att_vpub', '{1,0}', 5, '{"title": "B"}');
SELECT id FROM pgpoly.vector_search('regress_att_vpub', '{1,0}', 5, '{"ssn": "987-65-4321"}');
SELECT id FROM pgpoly.vector_search('regress_att_vpub', '{1,0}', 5, '{"n": [1, 2]}');
SELECT id FROM pgpoly.vector_search('regress_att_vall', '{1,0}', 5);
RESET ROLE;
-- The whole metadata and the document, for a table that has them.
GRANT SELECT ON regress_att_vall TO regress_att_mallory;
SET ROLE regress_att_mallory;
SELECT id, document, metadata
FROM pgpoly.vector_search('regress_att_vall', '{1,0}', 1, '{"ssn": "123-45-6789"}');
RESET ROLE;
-- Only the id and the embedding: no document, no metadata.
CREATE FOREIGN TABLE regress_att_vids (id text, embedding real[])
  SERVER regress_att_chroma OPTIONS (collection 'pgpoly_att_v');
SELECT id, document, metadata FROM pgpoly.vector_search('regress_att_vids', '{0,1}', 1);

--
-- 4. elastic_request's method and path are a request line: no CR, LF,
-- space or other control byte may smuggle headers or a second request.
--
SELECT regress_att_try($$SELECT pgpoly.elastic_request('regress_att_es',
  E'GET / HTTP/1.1\r\nX-Smuggled: 1\r\n\r\nGET', '/')$$);
SELECT regress_att_try($$SELECT pgpoly.elastic_request('regress_att_es', '', '/')$$);
SELECT regress_att_try($$SELECT pgpoly.elastic_request('regress_att_es', 'GET', E'/\r\nX-Smuggled: 1')$$);
SELECT regress_att_try($$SELECT pgpoly.elastic_request('regress_att_es', 'GET', '/a b')$$);
SELECT pgpoly.elastic_request('regress_att_es', 'HEAD', '/regress_att_docs') IS NULL AS head_ok;

--
-- 5. Internal functions given a table of the wrong kind: a clear error,
-- not an internal one.
--
SELECT regress_att_try($$SELECT pgpoly._redis_key_column('pg_class')$$);
SELECT regress_att_try($$SELECT pgpoly._redis_key_column('regress_att_vids')$$);
SELECT regress_att_try($$SELECT pgpoly._redis_key_column(0)$$);
SELECT pgpoly._redis_key_column('regress_att.r');

--
-- 6. A reconnection keeps the connection's own user mapping.  A cursor
-- holds a connection of PUBLIC's mapping; it is closed under it and the
-- role creates a mapping of her own: the next fetch must reconnect with
-- PUBLIC's mapping (that the cache entry stands for), not hers.
--
CREATE SERVER regress_att_rp FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port :'redis_port');
GRANT USAGE ON FOREIGN SERVER regress_att_rp TO regress_att_mallory;
CREATE USER MAPPING FOR PUBLIC SERVER regress_att_rp OPTIONS (password_required 'false');
CREATE FOREIGN TABLE regress_att_rp_t (key text, value text) SERVER regress_att_rp
  OPTIONS (table_type 'string', key_prefix 'regress_att_rp:', fetch_size '1');
INSERT INTO regress_att_rp_t VALUES ('a', '1'), ('b', '2'), ('c', '3');
GRANT SELECT ON regress_att_rp_t TO regress_att_mallory;
SET ROLE regress_att_mallory;
BEGIN;
DECLARE regress_att_cur CURSOR FOR SELECT count(*) OVER () FROM regress_att_rp_t;
SELECT pgpoly.disconnect('regress_att_rp');
CREATE USER MAPPING FOR CURRENT_USER SERVER regress_att_rp;
FETCH ALL FROM regress_att_cur;
COMMIT;
RESET ROLE;
DELETE FROM regress_att_rp_t;
DROP FOREIGN TABLE regress_att_rp_t;
DROP SERVER regress_att_rp CASCADE;

--
-- 7. A credential in a URL, seen by libcurl but not by a naive split of
-- the authority: libcurl skips a third slash, so "http:///user:pw@host"
-- has a user and password.  Refused like "http://user:pw@host", never
-- quoted (it was accepted, and its password was in every message naming
-- the server's URL).
--
SELECT w, u, regress_att_try(format(
         'CREATE SERVER regress_att_url FOREIGN DATA WRAPPER %I OPTIONS (url %L)', w, u))
FROM unnest(ARRAY['pgpoly_elastic', 'pgpoly_vector']) w,
     unnest(ARRAY['http:///alice:hunter2@127.0.0.1:9',
                  'https:///alice@127.0.0.1:9',
                  'http://127.0.0.1:9, http:///:hunter2@127.0.0.1:9',
                  'http://127.0.0.1:9\@example.com',
                  'http://;auth=hunter2@127.0.0.1:9']) u
ORDER BY w, u;
-- A catalog row written behind the validator's back is refused when used.
CREATE SERVER regress_att_url FOREIGN DATA WRAPPER pgpoly_elastic
  OPTIONS (url 'http://127.0.0.1:9');
UPDATE pg_foreign_server SET srvoptions = ARRAY['url=http:///alice:hunter2@127.0.0.1:9']
WHERE srvname = 'regress_att_url';
SELECT regress_att_try($$SELECT pgpoly.elastic_request('regress_att_url', 'GET', '/')$$);
DROP SERVER regress_att_url;

--
-- 8. A connection opened without the check (for a superuser) is not
-- handed to a role that needs it.  PUBLIC's mapping, with a made-up
-- password, is used by the superuser first (no check): the role's query
-- in the same session must not reuse that connection unchecked.
--
CREATE SERVER regress_att_rs FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port :'redis_port');
CREATE USER MAPPING FOR PUBLIC SERVER regress_att_rs
  OPTIONS (user 'default', password 'made-up');
CREATE FOREIGN TABLE regress_att_rs_t (key text, value text) SERVER regress_att_rs
  OPTIONS (table_type 'string', key_prefix 'regress_att_rs:');
GRANT SELECT ON regress_att_rs_t TO regress_att_mallory;
SELECT count(*) FROM regress_att_rs_t;
SET ROLE regress_att_mallory;
SELECT regress_att_try('SELECT count(*) FROM regress_att_rs_t');
RESET ROLE;
SELECT count(*) FROM regress_att_rs_t;
DROP FOREIGN TABLE regress_att_rs_t;
DROP SERVER regress_att_rs CASCADE;

--
-- 9. A sync reads its source as its owner, never as the extension's owner.
-- Mallory's table has a child (inheritance) that is a foreign table on a
-- server of hers pointing at the Redis, for which she has no mapping.  The
-- backfill of create_sync and the capture of TRUNCATE read every key of
-- the source, children included: as the extension's owner (a superuser)
-- they read the Redis without the trust rule (and would have used a
-- superuser's user mapping); as Mallory they are refused, as her SELECT is.
--
CREATE SERVER regress_att_su FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port :'redis_port');
CREATE FOREIGN TABLE regress_att_su_keys (key text, value text) SERVER regress_att_su
  OPTIONS (table_type 'string', key_prefix 'regress_att_su:');
INSERT INTO regress_att_su_keys VALUES ('k1', 'x'), ('k2', 'y');
SET ROLE regress_att_mallory;
CREATE SERVER regress_att_ev FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port :'redis_port');
CREATE SERVER regress_att_dead FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER regress_att_dead OPTIONS (password 'pw');
CREATE FOREIGN TABLE regress_att.sync_t (key text OPTIONS (key 'true'), v text)
  SERVER regress_att_dead OPTIONS (key_prefix 'regress_att_sync:');
CREATE TABLE regress_att.src (key text NOT NULL UNIQUE, v text);
INSERT INTO regress_att.src VALUES ('mine', 'm');
CREATE FOREIGN TABLE regress_att.src_child () INHERITS (regress_att.src)
  SERVER regress_att_ev OPTIONS (table_type 'string', key_prefix 'regress_att_su:');
SELECT regress_att_try('SELECT * FROM regress_att.src');
SELECT regress_att_try($$SELECT pgpoly.create_sync('regress_att_sync', 'regress_att.src',
                                                   'regress_att.sync_t', 'key')$$);
-- TRUNCATE (ONLY: the child is not truncated, but the capture reads it).
ALTER TABLE regress_att.src_child NO INHERIT regress_att.src;
BEGIN;
SELECT pgpoly.create_sync('regress_att_sync_t', 'regress_att.src', 'regress_att.sync_t',
                          'key', backfill => false);
ALTER TABLE regress_att.src_child INHERIT regress_att.src;
SELECT regress_att_try('TRUNCATE ONLY regress_att.src');
ROLLBACK;
RESET ROLE;
SELECT count(*) AS opened FROM pgpoly.connections() WHERE server = 'regress_att_ev';
SELECT count(*) AS syncs FROM pgpoly.syncs WHERE name LIKE 'regress_att_sync%';
DELETE FROM regress_att_su_keys;
DROP SERVER regress_att_su CASCADE;

--
-- 10. The capture trigger and an outbox table's COMMIT write pgpoly's queue
-- as the extension's owner, in the writer's session: not under the
-- writer's search_path.  Mallory's schema comes first in hers, with an
-- operator "=" on integer, text and oid that notes who runs it: the
-- queries run as the extension's owner (sync_id = $1, s.name = $2, c.oid =
-- $1 ...) ran it as a superuser, who could have been made to do anything.
--
SET ROLE regress_att_mallory;
CREATE TABLE regress_att.seen (who name);
CREATE FUNCTION regress_att.note_eq_int(int4, int4) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO regress_att.seen VALUES (current_user);
	RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE FUNCTION regress_att.note_eq_text(text, text) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO regress_att.seen VALUES (current_user);
	RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE FUNCTION regress_att.note_eq_oid(oid, oid) RETURNS bool LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO regress_att.seen VALUES (current_user);
	RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE OPERATOR regress_att.= (LEFTARG = int4, RIGHTARG = int4, FUNCTION = regress_att.note_eq_int);
CREATE OPERATOR regress_att.= (LEFTARG = text, RIGHTARG = text, FUNCTION = regress_att.note_eq_text);
CREATE OPERATOR regress_att.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = regress_att.note_eq_oid);
CREATE TABLE regress_att.src2 (key text PRIMARY KEY, v text);
CREATE FOREIGN TABLE regress_att.ob (key text OPTIONS (key 'true'), v text)
  SERVER regress_att_dead OPTIONS (key_prefix 'regress_att_ob:', write_mode 'outbox');
SELECT pgpoly.create_sync('regress_att_sync_sp', 'regress_att.src2', 'regress_att.sync_t',
                          backfill => false);
SET search_path = regress_att, pg_catalog;
INSERT INTO src2 VALUES ('a', '1');
UPDATE src2 SET v = '2';
DELETE FROM src2;
TRUNCATE src2;
INSERT INTO ob VALUES ('a', '1');
SELECT pgpoly.sync_retry('regress_att_sync_sp');
SELECT pgpoly.drop_sync('regress_att_sync_sp');
SELECT pgpoly.drop_sync('regress_att.ob');
SELECT 'a'::text = 'b' AS her_own_query_uses_it;
RESET search_path;
SELECT count(*) FILTER (WHERE who = 'regress_att_mallory') > 0 AS run_as_her,
       count(*) FILTER (WHERE who <> 'regress_att_mallory') AS run_as_another_role
FROM regress_att.seen;
RESET ROLE;

--
-- Clean up.
--
SELECT pgpoly.elastic_request('regress_att_es', 'DELETE', '/regress_att_docs') IS NOT NULL AS cleaned;
DROP FUNCTION regress_att_titles();
DROP FOREIGN TABLE regress_att_docs, regress_att_vall, regress_att_vpub, regress_att_vids;
DROP SERVER regress_att_es, regress_att_chroma CASCADE;
DROP FUNCTION regress_att_try(text);
DROP OWNED BY regress_att_mallory;
DROP ROLE regress_att_mallory;
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_att_v"
