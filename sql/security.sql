--
-- Safe in a shared database: the trust rule of the three wrappers (a
-- non-superuser needs a credential in the user mapping unless a superuser
-- set password_required 'false'), connections cached across SET ROLE, the
-- privilege checks of SQL functions that act on foreign tables or servers,
-- and what CREATE EXTENSION grants to PUBLIC.
--
-- Servers at 127.0.0.1:1 have nothing listening: a statement refused there
-- with SQLSTATE 2F003 was refused before any network I/O (otherwise it
-- would fail to connect, SQLSTATE class 08).
--
\getenv redis_port REDIS_PORT
\getenv chroma_url CHROMA_URL
\set VERBOSITY default
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_sec_vt"

CREATE ROLE regress_pgpoly_alice NOLOGIN;	-- may create servers
CREATE ROLE regress_pgpoly_bob NOLOGIN;		-- only what is granted below
GRANT USAGE ON FOREIGN DATA WRAPPER pgpoly_redis, pgpoly_elastic, pgpoly_vector
  TO regress_pgpoly_alice;
GRANT USAGE ON SCHEMA pgpoly TO regress_pgpoly_alice, regress_pgpoly_bob;
CREATE SCHEMA regress_sec AUTHORIZATION regress_pgpoly_alice;
GRANT USAGE ON SCHEMA regress_sec TO regress_pgpoly_bob;

-- The SQLSTATE a statement ends with ('ok' if none): for errors whose text
-- carries the operating system's words (connection refused).
CREATE FUNCTION regress_sec_state(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLSTATE;
END $$;

--
-- password_required: a user-mapping option of the three wrappers that only
-- a superuser may set to false.
--
SET ROLE regress_pgpoly_alice;
CREATE SERVER regress_sec_rdead FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port '1');
CREATE USER MAPPING FOR CURRENT_USER SERVER regress_sec_rdead
  OPTIONS (password_required 'false');
CREATE USER MAPPING FOR CURRENT_USER SERVER regress_sec_rdead
  OPTIONS (password_required 'off');
CREATE USER MAPPING FOR CURRENT_USER SERVER regress_sec_rdead
  OPTIONS (password_required 'maybe');
CREATE USER MAPPING FOR CURRENT_USER SERVER regress_sec_rdead
  OPTIONS (password_required 'true');
ALTER USER MAPPING FOR CURRENT_USER SERVER regress_sec_rdead
  OPTIONS (SET password_required 'false');
-- Only on user mappings.
CREATE SERVER regress_sec_bad FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (password_required 'false');
CREATE SERVER regress_sec_edead FOREIGN DATA WRAPPER pgpoly_elastic
  OPTIONS (url 'http://127.0.0.1:1');
CREATE USER MAPPING FOR CURRENT_USER SERVER regress_sec_edead
  OPTIONS (password_required 'false');
CREATE SERVER regress_sec_vdead FOREIGN DATA WRAPPER pgpoly_vector
  OPTIONS (url 'http://127.0.0.1:1');
CREATE USER MAPPING FOR CURRENT_USER SERVER regress_sec_vdead
  OPTIONS (password_required 'false');
RESET ROLE;
-- A superuser may set it, for anyone.
CREATE USER MAPPING FOR regress_pgpoly_alice SERVER regress_sec_vdead
  OPTIONS (password_required 'false');
DROP USER MAPPING FOR regress_pgpoly_alice SERVER regress_sec_vdead;

--
-- pgpoly_redis: the trust rule, before any network I/O.
--
SET ROLE regress_pgpoly_alice;
CREATE FOREIGN TABLE regress_sec.r_dead (key text, v text)
  SERVER regress_sec_rdead OPTIONS (key_prefix 'regress_sec:');
-- A mapping without a password (password_required 'true' is the default).
SELECT * FROM regress_sec.r_dead;
-- No mapping at all.
DROP USER MAPPING FOR CURRENT_USER SERVER regress_sec_rdead;
SELECT * FROM regress_sec.r_dead WHERE key = 'a';
-- An empty password is no credential, and an ACL user name is none either.
CREATE USER MAPPING FOR CURRENT_USER SERVER regress_sec_rdead
  OPTIONS (user 'alice', password '');
SELECT * FROM regress_sec.r_dead WHERE key = ANY ('{a,b}');
-- Every path that would connect: writes, planning with use_remote_estimate.
INSERT INTO regress_sec.r_dead VALUES ('a', 'b');
DELETE FROM regress_sec.r_dead;
ALTER FOREIGN TABLE regress_sec.r_dead OPTIONS (ADD use_remote_estimate 'true');
EXPLAIN (COSTS OFF) SELECT * FROM regress_sec.r_dead;
-- With a password the rule lets the statement through to the network.
ALTER USER MAPPING FOR CURRENT_USER SERVER regress_sec_rdead
  OPTIONS (SET password 'secret');
SELECT regress_sec_state('SELECT * FROM regress_sec.r_dead');
SELECT regress_sec_state('EXPLAIN SELECT * FROM regress_sec.r_dead');
-- Nothing was opened by the refused statements.
SELECT count(*) FROM pgpoly.connections() WHERE server LIKE 'regress_sec%';

--
-- pgpoly_redis: a superuser's waiver, against the real Redis.
--
CREATE SERVER regress_sec_r FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER regress_sec_r;
CREATE FOREIGN TABLE regress_sec.r (key text, v text)
  SERVER regress_sec_r OPTIONS (key_prefix 'regress_sec:');
INSERT INTO regress_sec.r VALUES ('a', 'one');
RESET ROLE;
ALTER USER MAPPING FOR regress_pgpoly_alice SERVER regress_sec_r
  OPTIONS (ADD password_required 'false');
SET ROLE regress_pgpoly_alice;
INSERT INTO regress_sec.r VALUES ('a', 'one'), ('b', 'two');
SELECT * FROM regress_sec.r ORDER BY key;
-- She cannot alter the waived mapping herself (the validator sees the
-- whole option list), but she may drop it.
ALTER USER MAPPING FOR CURRENT_USER SERVER regress_sec_r OPTIONS (ADD user 'alice');
DROP USER MAPPING FOR CURRENT_USER SERVER regress_sec_r;
SELECT * FROM regress_sec.r ORDER BY key;
RESET ROLE;

--
-- A connection cached for a superuser is never reused by a non-superuser
-- (SET ROLE in one session).
--
CREATE SERVER regress_sec_su FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (host '127.0.0.1', port :'redis_port');
CREATE FOREIGN TABLE regress_sec_su_t (key text, v text)
  SERVER regress_sec_su OPTIONS (key_prefix 'regress_sec:');
GRANT SELECT, INSERT, DELETE ON regress_sec_su_t TO regress_pgpoly_alice;
SELECT * FROM regress_sec_su_t ORDER BY key;	-- superuser, no mapping: allowed
SELECT server, user_name = current_user AS mine FROM pgpoly.connections()
WHERE server = 'regress_sec_su';
SET ROLE regress_pgpoly_alice;
SELECT * FROM regress_sec_su_t ORDER BY key;
INSERT INTO regress_sec_su_t VALUES ('c', 'three');
RESET ROLE;
SELECT * FROM regress_sec_su_t ORDER BY key;	-- the cached connection still serves the superuser
-- A PUBLIC mapping is one connection shared by both roles.
CREATE USER MAPPING FOR PUBLIC SERVER regress_sec_su;
SELECT count(*) FROM regress_sec_su_t;
SET ROLE regress_pgpoly_alice;
SELECT count(*) FROM regress_sec_su_t;
RESET ROLE;
ALTER USER MAPPING FOR PUBLIC SERVER regress_sec_su OPTIONS (ADD password_required 'false');
SET ROLE regress_pgpoly_alice;
SELECT count(*) FROM regress_sec_su_t;
RESET ROLE;
DROP USER MAPPING FOR PUBLIC SERVER regress_sec_su;
-- Through a view, the rule applies to the view owner's mapping, as the
-- privilege checks do (postgres_fdw's rule).
CREATE VIEW regress_sec_su_view AS SELECT * FROM regress_sec_su_t;
GRANT SELECT ON regress_sec_su_view TO regress_pgpoly_alice;
CREATE VIEW regress_sec.alice_view AS SELECT * FROM regress_sec_su_t;
ALTER VIEW regress_sec.alice_view OWNER TO regress_pgpoly_alice;
SET ROLE regress_pgpoly_alice;
SELECT count(*) FROM regress_sec_su_view;		-- checked as the superuser owner
RESET ROLE;
SELECT count(*) FROM regress_sec.alice_view;	-- checked as alice
DELETE FROM regress_sec_su_t;

--
-- pgpoly_elastic: password or api_key.
--
SET ROLE regress_pgpoly_alice;
CREATE FOREIGN TABLE regress_sec.es_t (_id text, title text)
  SERVER regress_sec_edead OPTIONS (index 'regress_sec');
SELECT * FROM regress_sec.es_t;
IMPORT FOREIGN SCHEMA "regress_sec*" FROM SERVER regress_sec_edead INTO regress_sec;
-- pgpoly.elastic_request: revoked from PUBLIC, then the rule.
SELECT pgpoly.elastic_request('regress_sec_edead', 'GET', '/');
RESET ROLE;
GRANT EXECUTE ON FUNCTION pgpoly.elastic_request(name, text, text, jsonb)
  TO regress_pgpoly_alice, regress_pgpoly_bob;
SET ROLE regress_pgpoly_alice;
SELECT pgpoly.elastic_request('regress_sec_edead', 'GET', '/');
-- A user name is no credential.
CREATE USER MAPPING FOR CURRENT_USER SERVER regress_sec_edead
  OPTIONS (username 'alice');
INSERT INTO regress_sec.es_t VALUES ('1', 'x');
ALTER USER MAPPING FOR CURRENT_USER SERVER regress_sec_edead
  OPTIONS (ADD password 'secret');
SELECT regress_sec_state('SELECT * FROM regress_sec.es_t');
ALTER USER MAPPING FOR CURRENT_USER SERVER regress_sec_edead
  OPTIONS (DROP username, DROP password, ADD api_key 'k');
SELECT regress_sec_state('SELECT * FROM regress_sec.es_t');
SELECT regress_sec_state($$SELECT pgpoly.elastic_request('regress_sec_edead', 'GET', '/')$$);
RESET ROLE;
-- elastic_request needs USAGE on the server, as dblink does.
SET ROLE regress_pgpoly_bob;
SELECT pgpoly.elastic_request('regress_sec_edead', 'GET', '/');
RESET ROLE;

--
-- pgpoly_vector: api_key, and pgpoly.vector_search().
--
SET ROLE regress_pgpoly_alice;
CREATE FOREIGN TABLE regress_sec.v_dead (id text, embedding real[], document text,
                                         metadata jsonb)
  SERVER regress_sec_vdead OPTIONS (collection 'regress_sec', distance 'l2');
SELECT id FROM regress_sec.v_dead;
SELECT * FROM pgpoly.vector_search('regress_sec.v_dead', '{1,0}');
IMPORT FOREIGN SCHEMA anything FROM SERVER regress_sec_vdead INTO regress_sec;
CREATE USER MAPPING FOR CURRENT_USER SERVER regress_sec_vdead OPTIONS (api_key 'k');
SELECT regress_sec_state('SELECT id FROM regress_sec.v_dead');
SELECT regress_sec_state($$SELECT pgpoly.vector_search('regress_sec.v_dead', '{1,0}')$$);
RESET ROLE;
-- Without SELECT on the table, vector_search is refused as the SELECT it
-- stands for is, before any network I/O.
SET ROLE regress_pgpoly_bob;
SELECT id FROM regress_sec.v_dead;
SELECT * FROM pgpoly.vector_search('regress_sec.v_dead', '{1,0}');
RESET ROLE;

-- Against the real Chroma.
CREATE SERVER regress_sec_chroma FOREIGN DATA WRAPPER pgpoly_vector
  OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE regress_sec_vt (id text, embedding real[], document text,
                                     metadata jsonb, grp text OPTIONS (field 'grp'),
                                     _distance float8)
  SERVER regress_sec_chroma
  OPTIONS (collection 'pgpoly_sec_vt', create_collection 'true', distance 'l2');
INSERT INTO regress_sec_vt (id, embedding, document, metadata)
SELECT 'v' || i, ARRAY[i, 10 - i]::real[], 'doc ' || i,
       jsonb_build_object('grp', CASE WHEN i % 2 = 0 THEN 'even' ELSE 'odd' END)
FROM generate_series(1, 6) i;
-- The test Chroma asks for no credential: a superuser waives the rule for bob.
CREATE USER MAPPING FOR regress_pgpoly_bob SERVER regress_sec_chroma
  OPTIONS (password_required 'false');
-- Column privileges: bob may read ids, not what vector_search returns.
GRANT SELECT (id) ON regress_sec_vt TO regress_pgpoly_bob;
SET ROLE regress_pgpoly_bob;
SELECT id FROM regress_sec_vt ORDER BY id;
SELECT id, document FROM regress_sec_vt;
SELECT * FROM pgpoly.vector_search('regress_sec_vt', '{2.1,7.9}', 3);
RESET ROLE;
-- The columns it reads are enough (_distance is computed, not read).
GRANT SELECT (embedding, document, metadata, grp) ON regress_sec_vt TO regress_pgpoly_bob;
SET ROLE regress_pgpoly_bob;
SELECT id, round(distance::numeric, 3) AS distance, document, metadata
FROM pgpoly.vector_search('regress_sec_vt', '{2.1,7.9}', 3);
RESET ROLE;
REVOKE SELECT (id, embedding, document, metadata, grp) ON regress_sec_vt FROM regress_pgpoly_bob;
-- The table privilege: the same rows as the k-NN query.
GRANT SELECT ON regress_sec_vt TO regress_pgpoly_bob;
SET ROLE regress_pgpoly_bob;
SELECT array_agg(id) AS vector_search
FROM pgpoly.vector_search('regress_sec_vt', '{5,5}', 2, '{"grp": "odd"}');
SELECT array_agg(id) AS knn
FROM (SELECT id FROM regress_sec_vt WHERE grp = 'odd'
      ORDER BY embedding <-> '{5,5}' LIMIT 2) s;
RESET ROLE;

--
-- What CREATE EXTENSION grants to PUBLIC: EXECUTE on its functions (except
-- elastic_request and the sync capture trigger), SELECT on the sync_status
-- view and SELECT/DELETE on sync_dead_letters (both row-secured to the
-- members of each sync's owner), nothing else: no privilege on any other
-- table, view or sequence of schema pgpoly, no USAGE on the schema or the
-- wrappers, and one SECURITY DEFINER function, which only creates empty
-- monthly partitions of pgpoly.predictions and is revoked from PUBLIC.
--
SELECT c.relname, a.privilege_type
FROM pg_class c, aclexplode(c.relacl) a
WHERE c.relnamespace = 'pgpoly'::regnamespace AND a.grantee = 0
ORDER BY 1, 2;
SELECT n.nspname FROM pg_namespace n, aclexplode(n.nspacl) a
WHERE n.nspname = 'pgpoly' AND a.grantee = 0;
SELECT w.fdwname FROM pg_foreign_data_wrapper w, aclexplode(w.fdwacl) a
WHERE w.fdwname LIKE 'pgpoly%' AND a.grantee = 0;
SELECT p.oid::regprocedure FROM pg_proc p
WHERE p.pronamespace = 'pgpoly'::regnamespace AND p.prosecdef;
SELECT p.oid::regprocedure FROM pg_proc p
WHERE p.pronamespace = 'pgpoly'::regnamespace
  AND NOT EXISTS (SELECT FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                  WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')
ORDER BY p.oid::regprocedure::text COLLATE "C";

--
-- Clean up (the regression database is shared by every file).
--
DROP FOREIGN TABLE regress_sec_vt;
DROP VIEW regress_sec_su_view;
DROP FOREIGN TABLE regress_sec_su_t CASCADE;
DROP SERVER regress_sec_su, regress_sec_chroma CASCADE;
DROP FUNCTION regress_sec_state(text);
DROP OWNED BY regress_pgpoly_alice, regress_pgpoly_bob;
DROP ROLE regress_pgpoly_alice, regress_pgpoly_bob;
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/pgpoly_sec_vt"
