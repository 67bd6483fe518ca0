--
-- An UPDATE through a partitioned table that moves a row into a foreign
-- partition the same statement updates: PostgreSQL routes the row to that
-- partition's own ResultRelInfo and begins an INSERT on it.  The INSERT
-- replaced the UPDATE's state, so the partition's rows updated after it
-- failed with "row identity column 0 ... is missing from the plan" (XX000).
-- A native partition comes first in the plan here (the rows it moves are
-- routed before the foreign partitions' own rows are updated) and a native
-- default partition last; the Redis partitions write immediately and at
-- COMMIT.  Each statement runs on an all-native copy too, and both answer
-- alike.
--
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
\! redis-cli -p $REDIS_PORT --scan --pattern 'regress_fcm*' | xargs -r redis-cli -p $REDIS_PORT del > /dev/null

CREATE SERVER fcm_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER fcm_redis;
CREATE TABLE fcm (k text, v int) PARTITION BY LIST (k);
CREATE TABLE fcm_a PARTITION OF fcm FOR VALUES IN ('a1', 'a2', 'a3');
CREATE FOREIGN TABLE fcm_i PARTITION OF fcm FOR VALUES IN ('i1', 'i2', 'i3', 'i4')
  SERVER fcm_redis OPTIONS (key_prefix 'regress_fcm_i:', write_mode 'immediate');
ALTER FOREIGN TABLE fcm_i ALTER COLUMN k OPTIONS (ADD key 'true');
CREATE FOREIGN TABLE fcm_t PARTITION OF fcm FOR VALUES IN ('t1', 't2', 't3', 't4')
  SERVER fcm_redis OPTIONS (key_prefix 'regress_fcm_t:');
ALTER FOREIGN TABLE fcm_t ALTER COLUMN k OPTIONS (ADD key 'true');
CREATE TABLE fcm_z PARTITION OF fcm DEFAULT;
CREATE TABLE fcmn (k text, v int) PARTITION BY LIST (k);
CREATE TABLE fcmn_a PARTITION OF fcmn FOR VALUES IN ('a1', 'a2', 'a3');
CREATE TABLE fcmn_i PARTITION OF fcmn FOR VALUES IN ('i1', 'i2', 'i3', 'i4');
CREATE TABLE fcmn_t PARTITION OF fcmn FOR VALUES IN ('t1', 't2', 't3', 't4');
CREATE TABLE fcmn_z PARTITION OF fcmn DEFAULT;
CREATE FUNCTION fcm_same() RETURNS bigint LANGUAGE sql AS $$
  WITH f AS (SELECT right(tableoid::regclass::text, 1) AS part, k, v FROM fcm),
       n AS (SELECT right(tableoid::regclass::text, 1) AS part, k, v FROM fcmn)
  SELECT count(*) FROM ((TABLE f EXCEPT ALL TABLE n) UNION ALL (TABLE n EXCEPT ALL TABLE f)) d $$;

INSERT INTO fcm VALUES ('a1', 1), ('a2', 2), ('i1', 3), ('i2', 4), ('t1', 5), ('t2', 6), ('z1', 7), ('z2', 8);
INSERT INTO fcmn VALUES ('a1', 1), ('a2', 2), ('i1', 3), ('i2', 4), ('t1', 5), ('t2', 6), ('z1', 7), ('z2', 8);
EXPLAIN (COSTS OFF) UPDATE fcm SET v = v + 10, k = CASE k WHEN 'a1' THEN 'i3' WHEN 'a2' THEN 't3' ELSE k END;
-- rows of the first partition move into the foreign ones, then those are updated
UPDATE fcm SET v = v + 10, k = CASE k WHEN 'a1' THEN 'i3' WHEN 'a2' THEN 't3' ELSE k END;
UPDATE fcmn SET v = v + 10, k = CASE k WHEN 'a1' THEN 'i3' WHEN 'a2' THEN 't3' ELSE k END;
SELECT fcm_same() AS differences;
-- with RETURNING (one row at a time), rows of the last partition too
WITH w AS (UPDATE fcm SET v = v + 100, k = CASE k WHEN 'z1' THEN 'i4' WHEN 'z2' THEN 't4' ELSE k END
           RETURNING right(tableoid::regclass::text, 1) AS part, k, v) SELECT * FROM w ORDER BY k;
WITH w AS (UPDATE fcmn SET v = v + 100, k = CASE k WHEN 'z1' THEN 'i4' WHEN 'z2' THEN 't4' ELSE k END
           RETURNING right(tableoid::regclass::text, 1) AS part, k, v) SELECT * FROM w ORDER BY k;
SELECT fcm_same() AS differences;
-- and back from the foreign partitions to a native one is refused
UPDATE fcm SET k = 'z3' WHERE k = 't3';
SELECT right(tableoid::regclass::text, 1) AS part, k, v FROM fcm ORDER BY k;
\! redis-cli -p $REDIS_PORT --scan --pattern 'regress_fcm*' | sort
\! redis-cli -p $REDIS_PORT --scan --pattern 'regress_fcm*' | xargs -r redis-cli -p $REDIS_PORT del > /dev/null
DROP TABLE fcm, fcmn;
DROP FUNCTION fcm_same();
DROP SERVER fcm_redis CASCADE;

-- An Elasticsearch partition, the parent partitioned on _id: the UPDATE
-- that moves a row into it assigns _id to every row, those of the
-- partition too, each its own _id (was refused as a change of _id, 0A000)
CREATE SERVER fcm_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('fcm_es', 'DELETE', '/regress_fcm*') IS NOT NULL AS cleaned;
CREATE TABLE fce (_id text, v int) PARTITION BY LIST (_id);
CREATE TABLE fce_a PARTITION OF fce FOR VALUES IN ('a1', 'a2');
CREATE FOREIGN TABLE fce_e PARTITION OF fce FOR VALUES IN ('e1', 'e2', 'e3', 'e4')
  SERVER fcm_es OPTIONS (index 'regress_fcm_e', refresh 'true');
CREATE TABLE fcen (_id text, v int) PARTITION BY LIST (_id);
CREATE TABLE fcen_a PARTITION OF fcen FOR VALUES IN ('a1', 'a2');
CREATE TABLE fcen_e PARTITION OF fcen FOR VALUES IN ('e1', 'e2', 'e3', 'e4');
CREATE VIEW fce_rows AS SELECT right(tableoid::regclass::text, 1) AS part, _id, v FROM fce;
CREATE VIEW fcen_rows AS SELECT right(tableoid::regclass::text, 1) AS part, _id, v FROM fcen;
INSERT INTO fce VALUES ('a1', 1), ('a2', 2), ('e1', 3), ('e2', 4);
INSERT INTO fcen VALUES ('a1', 1), ('a2', 2), ('e1', 3), ('e2', 4);
UPDATE fce SET v = v + 10, _id = CASE _id WHEN 'a1' THEN 'e3' ELSE _id END;
UPDATE fcen SET v = v + 10, _id = CASE _id WHEN 'a1' THEN 'e3' ELSE _id END;
SELECT count(*) AS differences FROM ((TABLE fce_rows EXCEPT ALL TABLE fcen_rows)
                                     UNION ALL (TABLE fcen_rows EXCEPT ALL TABLE fce_rows)) d;
SELECT part, _id, v FROM fce_rows ORDER BY _id;
-- straight on the partition: its own _id again is no change, another one is
UPDATE fce_e SET _id = _id, v = v + 1 WHERE _id = 'e1' RETURNING *;
UPDATE fce_e SET _id = 'e4' WHERE _id = 'e2';
DROP TABLE fce, fcen CASCADE;
SELECT pgpoly.elastic_request('fcm_es', 'DELETE', '/regress_fcm*') IS NOT NULL AS cleaned;
DROP SERVER fcm_es CASCADE;
