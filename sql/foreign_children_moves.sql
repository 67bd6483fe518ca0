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

-- A row moved into a Redis partition onto the key of a row the same
-- UPDATE updates: Redis holds one row per key, so that is an ERROR
-- (23505), as a row the UPDATE moves within the partition is; it silently
-- overwrote the other row (write_mode immediate: the held row was sent at
-- the end, over the updated one; transactional: the buffered row was
-- renamed away by the partition's own move at COMMIT).  A row moved onto a
-- key the partition's row moves away from is fine where the rows moved in
-- are held (immediate) and where they come after the move.  Each statement
-- runs on an all-native copy too.
CREATE SERVER fcm_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER fcm_redis;
CREATE TABLE fco (k text, v int) PARTITION BY LIST (k);
CREATE TABLE fco_a PARTITION OF fco FOR VALUES IN ('a1', 'a2', 'a3');
CREATE FOREIGN TABLE fco_i PARTITION OF fco FOR VALUES IN ('i1', 'i2', 'i3', 'i4')
  SERVER fcm_redis OPTIONS (key_prefix 'regress_fco_i:', write_mode 'immediate');
ALTER FOREIGN TABLE fco_i ALTER COLUMN k OPTIONS (ADD key 'true');
CREATE FOREIGN TABLE fco_t PARTITION OF fco FOR VALUES IN ('t1', 't2', 't3', 't4')
  SERVER fcm_redis OPTIONS (key_prefix 'regress_fco_t:');
ALTER FOREIGN TABLE fco_t ALTER COLUMN k OPTIONS (ADD key 'true');
CREATE TABLE fco_z PARTITION OF fco DEFAULT;
CREATE TABLE fcon (k text, v int) PARTITION BY LIST (k);
CREATE TABLE fcon_a PARTITION OF fcon FOR VALUES IN ('a1', 'a2', 'a3');
CREATE TABLE fcon_i PARTITION OF fcon FOR VALUES IN ('i1', 'i2', 'i3', 'i4');
CREATE TABLE fcon_t PARTITION OF fcon FOR VALUES IN ('t1', 't2', 't3', 't4');
CREATE TABLE fcon_z PARTITION OF fcon DEFAULT;
CREATE FUNCTION fco_diff() RETURNS bigint LANGUAGE sql AS $$
  WITH f AS (SELECT right(tableoid::regclass::text, 1) AS part, k, v FROM fco),
       n AS (SELECT right(tableoid::regclass::text, 1) AS part, k, v FROM fcon)
  SELECT count(*) FROM ((TABLE f EXCEPT ALL TABLE n) UNION ALL (TABLE n EXCEPT ALL TABLE f)) d $$;
INSERT INTO fco VALUES ('a1', 1), ('a2', 2), ('i1', 3), ('i2', 4), ('t1', 5), ('t2', 6), ('z1', 7);
-- onto a row updated in place (immediate), onto a row moving away (transactional)
UPDATE fco SET v = v + 10, k = CASE k WHEN 'a1' THEN 'i1' ELSE k END;
BEGIN;
UPDATE fco SET k = CASE k WHEN 'a1' THEN 't2' WHEN 't2' THEN 't3' ELSE k END;
ROLLBACK;
-- a later row (of the default partition) onto one moved in
UPDATE fco SET k = CASE k WHEN 'a1' THEN 'i3' WHEN 'z1' THEN 'i3' ELSE k END;
-- none of them changed anything
INSERT INTO fcon VALUES ('a1', 1), ('a2', 2), ('i1', 3), ('i2', 4), ('t1', 5), ('t2', 6), ('z1', 7);
SELECT fco_diff() AS differences;
-- onto keys the partitions' rows move away from: as on the native copy
UPDATE fco SET k = CASE k WHEN 'a1' THEN 'i2' WHEN 'i2' THEN 'i4' WHEN 'z1' THEN 't2' WHEN 't2' THEN 't4' ELSE k END;
UPDATE fcon SET k = CASE k WHEN 'a1' THEN 'i2' WHEN 'i2' THEN 'i4' WHEN 'z1' THEN 't2' WHEN 't2' THEN 't4' ELSE k END;
SELECT fco_diff() AS differences;
DROP TABLE fco, fcon;
DROP FUNCTION fco_diff();
-- partitioned on another column than the key: a row moved in onto a key
CREATE TABLE fcv (k text, v int) PARTITION BY RANGE (v);
CREATE TABLE fcv_n PARTITION OF fcv FOR VALUES FROM (0) TO (100);
CREATE FOREIGN TABLE fcv_f PARTITION OF fcv FOR VALUES FROM (100) TO (200)
  SERVER fcm_redis OPTIONS (key_prefix 'regress_fcv:', write_mode 'immediate');
ALTER FOREIGN TABLE fcv_f ALTER COLUMN k OPTIONS (ADD key 'true');
INSERT INTO fcv VALUES ('x', 50), ('x', 150), ('y', 160);
UPDATE fcv SET v = CASE WHEN v < 100 THEN v + 100 ELSE v + 1 END;
SELECT right(tableoid::regclass::text, 1) AS part, k, v FROM fcv ORDER BY k, v;
DROP TABLE fcv;
-- The rows moved into an immediate partition are held until the UPDATE has
-- read all its rows; its AFTER ROW and AFTER STATEMENT triggers, which run
-- after that, find them reading the partition, as on a native one (they
-- were sent when the statement ended, after the triggers)
CREATE TABLE fct (k text, v int) PARTITION BY LIST (left(k, 1));
CREATE TABLE fct_a PARTITION OF fct FOR VALUES IN ('a');
CREATE FOREIGN TABLE fct_i PARTITION OF fct FOR VALUES IN ('i')
  SERVER fcm_redis OPTIONS (key_prefix 'regress_fct_i:', write_mode 'immediate');
ALTER FOREIGN TABLE fct_i ALTER COLUMN k OPTIONS (ADD key 'true');
CREATE TABLE fctn (k text, v int) PARTITION BY LIST (left(k, 1));
CREATE TABLE fctn_a PARTITION OF fctn FOR VALUES IN ('a');
CREATE TABLE fctn_i PARTITION OF fctn FOR VALUES IN ('i');
CREATE TABLE fct_log (side text, tg text, n bigint, total bigint);
CREATE FUNCTION fct_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('INSERT INTO fct_log SELECT %L, %L, count(*), sum(v) FROM %I',
                 TG_ARGV[0], TG_WHEN || ' ' || TG_LEVEL || ' ' || TG_OP || ' ' ||
                 CASE WHEN TG_TABLE_NAME LIKE '%\_i' THEN 'partition' ELSE 'parent' END,
                 TG_ARGV[1]);
  RETURN NULL;
END $$;
CREATE TRIGGER s AFTER UPDATE ON fct FOR EACH STATEMENT EXECUTE FUNCTION fct_count('F', 'fct_i');
CREATE TRIGGER s AFTER UPDATE ON fctn FOR EACH STATEMENT EXECUTE FUNCTION fct_count('N', 'fctn_i');
CREATE TRIGGER r AFTER INSERT OR UPDATE ON fct_i FOR EACH ROW EXECUTE FUNCTION fct_count('F', 'fct_i');
CREATE TRIGGER r AFTER INSERT OR UPDATE ON fctn_i FOR EACH ROW EXECUTE FUNCTION fct_count('N', 'fctn_i');
INSERT INTO fct VALUES ('a1', 1), ('a2', 2), ('i1', 3);
INSERT INTO fctn VALUES ('a1', 1), ('a2', 2), ('i1', 3);
DELETE FROM fct_log;
UPDATE fct SET k = CASE k WHEN 'a1' THEN 'i2' ELSE k END, v = v + 10;
UPDATE fctn SET k = CASE k WHEN 'a1' THEN 'i2' ELSE k END, v = v + 10;
SELECT count(*) AS differences FROM (
  (SELECT tg, n, total FROM fct_log WHERE side = 'F' EXCEPT ALL SELECT tg, n, total FROM fct_log WHERE side = 'N')
  UNION ALL
  (SELECT tg, n, total FROM fct_log WHERE side = 'N' EXCEPT ALL SELECT tg, n, total FROM fct_log WHERE side = 'F')) d;
SELECT tg, n, total FROM fct_log WHERE side = 'F' ORDER BY tg, n;
-- a row moved onto the key the partition's row moves away from: the
-- partition's own moves are sent first
DELETE FROM fct_log;
UPDATE fct SET k = CASE k WHEN 'a2' THEN 'i1' WHEN 'i1' THEN 'i3' ELSE k END, v = v + 100;
UPDATE fctn SET k = CASE k WHEN 'a2' THEN 'i1' WHEN 'i1' THEN 'i3' ELSE k END, v = v + 100;
SELECT count(*) AS differences FROM (
  (SELECT tg, n, total FROM fct_log WHERE side = 'F' EXCEPT ALL SELECT tg, n, total FROM fct_log WHERE side = 'N')
  UNION ALL
  (SELECT tg, n, total FROM fct_log WHERE side = 'N' EXCEPT ALL SELECT tg, n, total FROM fct_log WHERE side = 'F')) d;
SELECT right(tableoid::regclass::text, 1) AS part, k, v FROM fct ORDER BY k;
SELECT right(tableoid::regclass::text, 1) AS part, k, v FROM fctn ORDER BY k;
DROP TABLE fct, fctn, fct_log;
DROP FUNCTION fct_count();
\! redis-cli -p $REDIS_PORT --scan --pattern 'regress_fc[ovt]*' | xargs -r redis-cli -p $REDIS_PORT del > /dev/null
DROP SERVER fcm_redis CASCADE;

-- The same for a vector partition (one record per id, an upsert overwrites)
\getenv chroma_url CHROMA_URL
CREATE SERVER fcm_vec FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE TABLE fcw (id text, embedding real[], note text) PARTITION BY LIST (id);
CREATE TABLE fcw_a PARTITION OF fcw FOR VALUES IN ('a1', 'a2');
CREATE FOREIGN TABLE fcw_v PARTITION OF fcw FOR VALUES IN ('v1', 'v2', 'v3', 'v4')
  SERVER fcm_vec OPTIONS (collection 'regress_fcw', create_collection 'true', distance 'l2',
                          write_mode 'immediate');
ALTER FOREIGN TABLE fcw_v ALTER COLUMN note OPTIONS (ADD field 'note');
CREATE TABLE fcwn (id text, embedding real[], note text) PARTITION BY LIST (id);
CREATE TABLE fcwn_a PARTITION OF fcwn FOR VALUES IN ('a1', 'a2');
CREATE TABLE fcwn_v PARTITION OF fcwn FOR VALUES IN ('v1', 'v2', 'v3', 'v4');
INSERT INTO fcw VALUES ('a1', '{1,0}', 'a1'), ('a2', '{2,0}', 'a2'), ('v1', '{3,0}', 'v1'), ('v2', '{4,0}', 'v2');
INSERT INTO fcwn VALUES ('a1', '{1,0}', 'a1'), ('a2', '{2,0}', 'a2'), ('v1', '{3,0}', 'v1'), ('v2', '{4,0}', 'v2');
-- onto a record updated in place: refused, nothing changed
UPDATE fcw SET note = note || '!', id = CASE id WHEN 'a1' THEN 'v1' ELSE id END;
-- onto an id the record moves away from: as on the native copy
UPDATE fcw SET id = CASE id WHEN 'a1' THEN 'v2' WHEN 'v2' THEN 'v3' ELSE id END;
UPDATE fcwn SET id = CASE id WHEN 'a1' THEN 'v2' WHEN 'v2' THEN 'v3' ELSE id END;
SELECT count(*) AS differences FROM (
  (SELECT right(tableoid::regclass::text, 1), id, note FROM fcw EXCEPT ALL
   SELECT right(tableoid::regclass::text, 1), id, note FROM fcwn) UNION ALL
  (SELECT right(tableoid::regclass::text, 1), id, note FROM fcwn EXCEPT ALL
   SELECT right(tableoid::regclass::text, 1), id, note FROM fcw)) d;
DELETE FROM fcw_v;
DROP TABLE fcw, fcwn;
DROP SERVER fcm_vec CASCADE;

-- And for an Elasticsearch partition (one document per _id: an index
-- action replaces it, an update of it would rewrite the row moved in)
CREATE SERVER fcm_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
CREATE TABLE fcd (_id text, v int) PARTITION BY LIST (_id);
CREATE TABLE fcd_a PARTITION OF fcd FOR VALUES IN ('a1', 'a2');
CREATE FOREIGN TABLE fcd_e PARTITION OF fcd FOR VALUES IN ('e1', 'e2', 'e3', 'e4')
  SERVER fcm_es OPTIONS (index 'regress_fcd_e', refresh 'true', write_mode 'immediate');
CREATE TABLE fcd_z PARTITION OF fcd DEFAULT;
CREATE TABLE fcdn (_id text, v int) PARTITION BY LIST (_id);
CREATE TABLE fcdn_a PARTITION OF fcdn FOR VALUES IN ('a1', 'a2');
CREATE TABLE fcdn_e PARTITION OF fcdn FOR VALUES IN ('e1', 'e2', 'e3', 'e4');
CREATE TABLE fcdn_z PARTITION OF fcdn DEFAULT;
INSERT INTO fcd VALUES ('a1', 1), ('a2', 2), ('e1', 3), ('e2', 4), ('z1', 5);
INSERT INTO fcdn VALUES ('a1', 1), ('a2', 2), ('e1', 3), ('e2', 4), ('z1', 5);
-- refused, nothing changed: onto a document updated later (the row held,
-- immediate) and, transactional, updated before
UPDATE fcd SET v = v + 10, _id = CASE _id WHEN 'a1' THEN 'e1' ELSE _id END;
ALTER FOREIGN TABLE fcd_e OPTIONS (SET write_mode 'transactional');
UPDATE fcd SET v = v + 10, _id = CASE _id WHEN 'z1' THEN 'e2' ELSE _id END;
-- onto free _ids: as on the native copy
UPDATE fcd SET v = v + 10, _id = CASE _id WHEN 'a1' THEN 'e3' WHEN 'z1' THEN 'e4' ELSE _id END;
UPDATE fcdn SET v = v + 10, _id = CASE _id WHEN 'a1' THEN 'e3' WHEN 'z1' THEN 'e4' ELSE _id END;
SELECT count(*) AS differences FROM (
  (SELECT right(tableoid::regclass::text, 1), _id, v FROM fcd EXCEPT ALL
   SELECT right(tableoid::regclass::text, 1), _id, v FROM fcdn) UNION ALL
  (SELECT right(tableoid::regclass::text, 1), _id, v FROM fcdn EXCEPT ALL
   SELECT right(tableoid::regclass::text, 1), _id, v FROM fcd)) d;
DROP TABLE fcd, fcdn;
SELECT pgpoly.elastic_request('fcm_es', 'DELETE', '/regress_fcd*') IS NOT NULL AS cleaned;
DROP SERVER fcm_es CASCADE;
