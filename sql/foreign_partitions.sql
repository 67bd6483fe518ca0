--
-- Foreign tables of every store as partitions, against an all-native copy
-- of the same partitioned table.  PostgreSQL checks a native partition's
-- bounds on every new row and moves an updated row to the partition it now
-- belongs in; on a foreign partition it does neither (it leaves the
-- contents to the user).  A row stored outside its partition's bounds is
-- then lost to every query that prunes partitions, so pgpoly refuses it:
--   * INSERT or COPY straight into a foreign partition of a row outside
--     its bounds: PostgreSQL's own 23514;
--   * UPDATE that takes a row of a foreign partition out of its bounds:
--     an ERROR saying to DELETE and INSERT it (PostgreSQL cannot move it);
--   * rows routed from the parent (INSERT, COPY, an UPDATE that moves a
--     row from a native partition into a foreign one) and updates that
--     stay inside the bounds work, and every query then answers as on the
--     native copy.
--
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_fp_v"

CREATE SERVER fp_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER fp_redis;
CREATE SERVER fp_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
CREATE SERVER fp_vec FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
SELECT pgpoly.elastic_request('fp_es', 'DELETE', '/regress_fp') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('fp_es', 'PUT', '/regress_fp',
    '{"mappings": {"properties": {"v": {"type": "keyword"}}}}')->>'acknowledged';

-- Redis: k in [a, g) in Redis, the rest native; fn the all-native copy
CREATE TABLE fp (k text, v text) PARTITION BY RANGE (k);
CREATE FOREIGN TABLE fp_f PARTITION OF fp FOR VALUES FROM ('a') TO ('g')
  SERVER fp_redis OPTIONS (table_type 'hash', key_prefix 'regress_fp:');
ALTER FOREIGN TABLE fp_f ALTER COLUMN k OPTIONS (ADD key 'true');
CREATE TABLE fp_rest PARTITION OF fp DEFAULT;
CREATE TABLE fn (k text, v text) PARTITION BY RANGE (k);
CREATE TABLE fn_f PARTITION OF fn FOR VALUES FROM ('a') TO ('g');
CREATE TABLE fn_rest PARTITION OF fn DEFAULT;
-- Elasticsearch and the vector service: _id / id in [g, n)
CREATE TABLE fpe (_id text, v text) PARTITION BY RANGE (_id);
CREATE FOREIGN TABLE fpe_f PARTITION OF fpe FOR VALUES FROM ('g') TO ('n')
  SERVER fp_es OPTIONS (index 'regress_fp', refresh 'true');
CREATE TABLE fpe_rest PARTITION OF fpe DEFAULT;
CREATE TABLE fpv (id text, embedding real[], v text) PARTITION BY RANGE (id);
CREATE FOREIGN TABLE fpv_f PARTITION OF fpv FOR VALUES FROM ('g') TO ('n')
  SERVER fp_vec OPTIONS (collection 'regress_fp_v', create_collection 'true', distance 'l2');
ALTER FOREIGN TABLE fpv_f ALTER COLUMN v OPTIONS (ADD field 'v');
CREATE TABLE fpv_rest PARTITION OF fpv DEFAULT;

-- rows routed from the parent
INSERT INTO fp VALUES ('b', 'b0'), ('c', 'c0'), ('h', 'h0'), ('x', 'x0');
INSERT INTO fn VALUES ('b', 'b0'), ('c', 'c0'), ('h', 'h0'), ('x', 'x0');
COPY fp FROM stdin;
d	d0
j	j0
\.
COPY fn FROM stdin;
d	d0
j	j0
\.
INSERT INTO fpe VALUES ('h', 'h0'), ('i', 'i0'), ('x', 'x0');
INSERT INTO fpv VALUES ('h', '{1,0}', 'h0'), ('i', '{2,0}', 'i0'), ('x', '{3,0}', 'x0');

-- the Redis table's rows, each in its partition, as on the native copy
CREATE VIEW fp_rows AS SELECT right(tableoid::regclass::text, -3) AS part, k, v FROM fp;
CREATE VIEW fn_rows AS SELECT right(tableoid::regclass::text, -3) AS part, k, v FROM fn;
CREATE FUNCTION fp_same() RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM ((TABLE fp_rows EXCEPT ALL TABLE fn_rows)
                        UNION ALL (TABLE fn_rows EXCEPT ALL TABLE fp_rows)) d $$;
SELECT fp_same() AS differences;

-- straight into a foreign partition, outside its bounds: 23514, as native
\set VERBOSITY sqlstate
INSERT INTO fp_f VALUES ('zz', 'out');
INSERT INTO fn_f VALUES ('zz', 'out');
INSERT INTO fp_f VALUES ('e', 'in'), ('zz', 'out');
INSERT INTO fpe_f VALUES ('a', 'out');
INSERT INTO fpv_f VALUES ('b', '{4,0}', 'out');
COPY fp_f FROM stdin;
e	in
zz	out
\.
\set VERBOSITY default
INSERT INTO fp_f VALUES ('zz', 'out');
SELECT count(*) AS stored_outside FROM fp WHERE v IN ('in', 'out');
-- inside the bounds: fine
INSERT INTO fp_f VALUES ('e', 'e0');
INSERT INTO fn_f VALUES ('e', 'e0');
INSERT INTO fpe_f VALUES ('k', 'k0');
INSERT INTO fpv_f VALUES ('k', '{5,0}', 'k0');
SELECT fp_same() AS differences;

-- UPDATEs that stay in the bounds, and one that moves a native row into the
-- foreign partition (routed there): as native
UPDATE fp SET v = v || '+' WHERE k IN ('b', 'h');
UPDATE fn SET v = v || '+' WHERE k IN ('b', 'h');
UPDATE fp SET k = 'f' WHERE k = 'x';
UPDATE fn SET k = 'f' WHERE k = 'x';
BEGIN;
UPDATE fp SET k = 'cc' WHERE k = 'c';
UPDATE fn SET k = 'cc' WHERE k = 'c';
COMMIT;
SELECT fp_same() AS differences;
-- UPDATEs that would take a row out of a foreign partition: refused,
-- nothing written
UPDATE fp SET k = 'y' WHERE k = 'cc';
UPDATE fp_f SET k = 'z' || k WHERE k = 'b';
UPDATE fpe SET _id = 'y' WHERE _id = 'h';
UPDATE fpv SET id = 'a' WHERE id = 'i';
BEGIN;
UPDATE fp SET k = 'y' WHERE k = 'd';
ROLLBACK;
SELECT fp_same() AS differences;
SELECT part, k, v FROM fp_rows ORDER BY k;
SELECT tableoid::regclass, _id, v FROM fpe ORDER BY _id;
SELECT tableoid::regclass, id, v FROM fpv ORDER BY id;

-- a generic plan of a prepared UPDATE of the partition key
SET plan_cache_mode = force_generic_plan;
PREPARE fp_u(text, text) AS UPDATE fp SET k = $2 WHERE k = $1;
EXECUTE fp_u('b', 'bb');
EXECUTE fp_u('bb', 'zz');
RESET plan_cache_mode;
UPDATE fn SET k = 'bb' WHERE k = 'b';
SELECT fp_same() AS differences;

DELETE FROM fp; DELETE FROM fpe; DELETE FROM fpv;
SELECT pgpoly.elastic_request('fp_es', 'DELETE', '/regress_fp')->>'acknowledged';
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_fp_v"
