--
-- Several foreign tables under one parent (partitions or INHERITS
-- children), of one store or of several, whose row-identity columns (the
-- Redis key, the Elasticsearch _id, the vector id) sit at different attnums:
-- one was created with a column since dropped and then attached, one has
-- its key among its own columns.  An UPDATE or DELETE through the parent
-- carries every child's identity column in one plan, and PostgreSQL lets a
-- junk column's name stand for one column definition only: they failed
-- with "conflicting uses of row-identity name" (XX000), and so did every
-- DELETE ... RETURNING through a parent of two foreign tables (each carried
-- its old row as a Var of its own row type).  Each statement runs on an
-- all-native copy too, and both answer alike.
--
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_fc_v"
\! redis-cli -p $REDIS_PORT --scan --pattern 'regress_fc*' | xargs -r redis-cli -p $REDIS_PORT del > /dev/null

CREATE SERVER fc_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER fc_redis;
CREATE SERVER fc_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
CREATE SERVER fc_vec FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
SELECT pgpoly.elastic_request('fc_es', 'DELETE', '/regress_fc*') IS NOT NULL AS cleaned;

-- a partitioned table: two Redis partitions whose key k is attnum 1 and 2,
-- and a native one; fcn the all-native copy, built the same way
CREATE TABLE fc (k text, v int) PARTITION BY LIST (k);
CREATE FOREIGN TABLE fc_a PARTITION OF fc FOR VALUES IN ('a1', 'a2')
  SERVER fc_redis OPTIONS (key_prefix 'regress_fc_a:');
ALTER FOREIGN TABLE fc_a ALTER COLUMN k OPTIONS (ADD key 'true');
CREATE FOREIGN TABLE fc_b (gone int, k text OPTIONS (key 'true'), v int)
  SERVER fc_redis OPTIONS (key_prefix 'regress_fc_b:');
ALTER FOREIGN TABLE fc_b DROP COLUMN gone;
ALTER TABLE fc ATTACH PARTITION fc_b FOR VALUES IN ('b1', 'b2');
CREATE TABLE fc_n PARTITION OF fc DEFAULT;
CREATE TABLE fcn (k text, v int) PARTITION BY LIST (k);
CREATE TABLE fcn_a PARTITION OF fcn FOR VALUES IN ('a1', 'a2');
CREATE TABLE fcn_b (gone int, k text, v int);
ALTER TABLE fcn_b DROP COLUMN gone;
ALTER TABLE fcn ATTACH PARTITION fcn_b FOR VALUES IN ('b1', 'b2');
CREATE TABLE fcn_n PARTITION OF fcn DEFAULT;
CREATE VIEW fc_rows AS SELECT right(tableoid::regclass::text, 1) AS part, k, v FROM fc;
CREATE VIEW fcn_rows AS SELECT right(tableoid::regclass::text, 1) AS part, k, v FROM fcn;
CREATE FUNCTION fc_same() RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM ((TABLE fc_rows EXCEPT ALL TABLE fcn_rows)
                        UNION ALL (TABLE fcn_rows EXCEPT ALL TABLE fc_rows)) d $$;

INSERT INTO fc VALUES ('a1', 1), ('a2', 2), ('b1', 3), ('b2', 4), ('n1', 5);
INSERT INTO fcn VALUES ('a1', 1), ('a2', 2), ('b1', 3), ('b2', 4), ('n1', 5);
WITH w AS (UPDATE fc SET v = v * 10 WHERE v > 1 RETURNING right(tableoid::regclass::text, 1) AS part, k, v) SELECT * FROM w ORDER BY k;
WITH w AS (UPDATE fcn SET v = v * 10 WHERE v > 1 RETURNING right(tableoid::regclass::text, 1) AS part, k, v) SELECT * FROM w ORDER BY k;
UPDATE fc SET k = 'a1' || 'x' WHERE k = 'b2';	-- leaves a foreign partition: refused
BEGIN;
UPDATE fc SET v = v + 1 WHERE k IN ('a2', 'b1', 'n1');
UPDATE fcn SET v = v + 1 WHERE k IN ('a2', 'b1', 'n1');
WITH w AS (DELETE FROM fc WHERE v = 31 RETURNING right(tableoid::regclass::text, 1) AS part, k, v) SELECT * FROM w ORDER BY k;
WITH w AS (DELETE FROM fcn WHERE v = 31 RETURNING right(tableoid::regclass::text, 1) AS part, k, v) SELECT * FROM w ORDER BY k;
SELECT fc_same() AS differences;
COMMIT;
WITH w AS (DELETE FROM fc WHERE k IN ('a2', 'b1') RETURNING right(tableoid::regclass::text, 1) AS part, *) SELECT * FROM w ORDER BY k;
WITH w AS (DELETE FROM fcn WHERE k IN ('a2', 'b1') RETURNING right(tableoid::regclass::text, 1) AS part, *) SELECT * FROM w ORDER BY k;
-- a prepared DELETE under a generic plan, run twice
SET plan_cache_mode = force_generic_plan;
PREPARE fc_d(text[]) AS WITH w AS (DELETE FROM fc WHERE k = ANY($1) RETURNING k, v)
  SELECT * FROM w ORDER BY k;
PREPARE fcn_d(text[]) AS WITH w AS (DELETE FROM fcn WHERE k = ANY($1) RETURNING k, v)
  SELECT * FROM w ORDER BY k;
INSERT INTO fc VALUES ('a2', 7), ('b1', 8);
INSERT INTO fcn VALUES ('a2', 7), ('b1', 8);
EXECUTE fc_d('{a2,b1}');
EXECUTE fcn_d('{a2,b1}');
EXECUTE fc_d('{a1,n1}');
EXECUTE fcn_d('{a1,n1}');
RESET plan_cache_mode;
SELECT fc_same() AS differences;
SELECT part, k, v FROM fc_rows ORDER BY k;
\! redis-cli -p $REDIS_PORT --scan --pattern 'regress_fc*' | sort

-- INHERITS: a native parent with a Redis, an Elasticsearch and a vector
-- child, their identity columns at attnums 1, 4 and 4 (the vector one keyed
-- on its own column id), and two Elasticsearch children with _id at 4 and 3
CREATE TABLE fi (k text, v int);
CREATE FOREIGN TABLE fi_r (x text) INHERITS (fi) SERVER fc_redis
  OPTIONS (key_prefix 'regress_fc_r:');
ALTER FOREIGN TABLE fi_r ALTER COLUMN k OPTIONS (ADD key 'true');
CREATE FOREIGN TABLE fi_e (x text, _id text) INHERITS (fi) SERVER fc_es
  OPTIONS (index 'regress_fc_e', refresh 'true');
CREATE FOREIGN TABLE fi_e2 (_id text) INHERITS (fi) SERVER fc_es
  OPTIONS (index 'regress_fc_e2', refresh 'true');
CREATE FOREIGN TABLE fi_v (x text, id text, embedding real[]) INHERITS (fi) SERVER fc_vec
  OPTIONS (collection 'regress_fc_v', create_collection 'true', distance 'l2');
ALTER FOREIGN TABLE fi_v ALTER COLUMN k OPTIONS (ADD field 'k');
ALTER FOREIGN TABLE fi_v ALTER COLUMN v OPTIONS (ADD field 'v');
ALTER FOREIGN TABLE fi_v ALTER COLUMN x OPTIONS (ADD field 'x');
CREATE TABLE fin (k text, v int);
CREATE TABLE fin_r (x text) INHERITS (fin);
CREATE TABLE fin_e (x text, _id text) INHERITS (fin);
CREATE TABLE fin_e2 (_id text) INHERITS (fin);
CREATE TABLE fin_v (x text, id text, embedding real[]) INHERITS (fin);
CREATE VIEW fi_rows AS SELECT right(tableoid::regclass::text, -3) AS child, k, v FROM fi;
CREATE VIEW fin_rows AS SELECT right(tableoid::regclass::text, -4) AS child, k, v FROM fin;
CREATE FUNCTION fi_same() RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM ((TABLE fi_rows EXCEPT ALL TABLE fin_rows)
                        UNION ALL (TABLE fin_rows EXCEPT ALL TABLE fi_rows)) d $$;

INSERT INTO fi VALUES ('p', 1);
INSERT INTO fin VALUES ('p', 1);
INSERT INTO fi_r VALUES ('r1', 2, 'x'), ('r2', 3, 'y');
INSERT INTO fin_r VALUES ('r1', 2, 'x'), ('r2', 3, 'y');
INSERT INTO fi_e VALUES ('e1', 4, 'x', 'e1'), ('e2', 5, 'y', 'e2');
INSERT INTO fin_e VALUES ('e1', 4, 'x', 'e1'), ('e2', 5, 'y', 'e2');
INSERT INTO fi_e2 VALUES ('f1', 6, 'f1'), ('f2', 7, 'f2');
INSERT INTO fin_e2 VALUES ('f1', 6, 'f1'), ('f2', 7, 'f2');
INSERT INTO fi_v VALUES ('v1', 8, 'x', 'v1', '{1,0}'), ('v2', 9, 'y', 'v2', '{0,1}');
INSERT INTO fin_v VALUES ('v1', 8, 'x', 'v1', '{1,0}'), ('v2', 9, 'y', 'v2', '{0,1}');
SELECT fi_same() AS differences;
WITH w AS (UPDATE fi SET v = v + 100 WHERE v % 2 = 0 RETURNING right(tableoid::regclass::text, -3) AS child, k, v) SELECT * FROM w ORDER BY k;
WITH w AS (UPDATE fin SET v = v + 100 WHERE v % 2 = 0 RETURNING right(tableoid::regclass::text, -4) AS child, k, v) SELECT * FROM w ORDER BY k;
WITH w AS (DELETE FROM fi WHERE v IN (3, 5, 7, 9) RETURNING right(tableoid::regclass::text, -3) AS child, k, v) SELECT * FROM w ORDER BY k;
WITH w AS (DELETE FROM fin WHERE v IN (3, 5, 7, 9) RETURNING right(tableoid::regclass::text, -4) AS child, k, v) SELECT * FROM w ORDER BY k;
SELECT fi_same() AS differences;
BEGIN;
WITH w AS (DELETE FROM fi WHERE k <> 'p' RETURNING right(tableoid::regclass::text, -3) AS child, k, v) SELECT * FROM w ORDER BY k;
SELECT child, k, v FROM fi_rows ORDER BY k;
ROLLBACK;
SELECT fi_same() AS differences;
SELECT child, k, v FROM fi_rows ORDER BY k;
DROP TABLE fi, fin, fc, fcn CASCADE;
DROP FUNCTION fc_same(), fi_same();
SELECT pgpoly.elastic_request('fc_es', 'DELETE', '/regress_fc*') IS NOT NULL AS cleaned;
\! redis-cli -p $REDIS_PORT --scan --pattern 'regress_fc*' | xargs -r redis-cli -p $REDIS_PORT del > /dev/null
DROP SERVER fc_redis, fc_es, fc_vec CASCADE;
