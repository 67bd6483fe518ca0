-- The row an INSERT or UPDATE of an Elasticsearch, vector or Redis foreign
-- table hands back to the executor is read by more than RETURNING: an AFTER
-- ROW trigger's NEW and a view's WITH CHECK OPTION read it too.  Each must
-- see the row a read of the table finds right after the write (as on a
-- native table, where all three see the stored row), whether or not the
-- statement has a RETURNING clause.  And building that row must not grow
-- the statement's memory with every row.
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL
\getenv redis_port REDIS_PORT
CREATE SERVER rdes FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('rdes', 'DELETE', '/regress_retrd') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('rdes', 'PUT', '/regress_retrd',
    '{"mappings": {"dynamic": false}}')->>'acknowledged';
CREATE FOREIGN TABLE rde (_id text, t text, x int OPTIONS (field 'a.b'), _source jsonb)
  SERVER rdes OPTIONS (index 'regress_retrd', refresh 'true');
CREATE SERVER rdvs FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE rdv (id text, embedding real[], metadata jsonb,
                          grp text OPTIONS (field 'grp'), k int OPTIONS (field 'k'))
  SERVER rdvs OPTIONS (collection 'regress_retrd', create_collection 'true', distance 'l2');
DELETE FROM rdv;
CREATE SERVER rdrs FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE FOREIGN TABLE rdr (id text OPTIONS (key 'true'), n int, _ttl int)
  SERVER rdrs OPTIONS (key_prefix 'regress_retrd:', ttl_seconds '1000');

-- AFTER ROW triggers log NEW; the log is compared with a read of each row in
-- the same transaction.
CREATE TABLE rd_log (tbl text, op text, id text, r text);
CREATE FUNCTION rd_after() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO rd_log VALUES (TG_TABLE_NAME, TG_OP, to_jsonb(NEW)->>TG_ARGV[0], row(NEW.*)::text);
  RETURN NEW;
END $$;
CREATE TRIGGER rde_after AFTER INSERT OR UPDATE ON rde FOR EACH ROW EXECUTE FUNCTION rd_after('_id');
CREATE TRIGGER rdv_after AFTER INSERT OR UPDATE ON rdv FOR EACH ROW EXECUTE FUNCTION rd_after('id');
CREATE TRIGGER rdr_after AFTER INSERT OR UPDATE ON rdr FOR EACH ROW EXECUTE FUNCTION rd_after('id');
CREATE FUNCTION rd_diff(step text) RETURNS TABLE (tbl text, op text, id text, trigger_new text, read text)
LANGUAGE sql AS $$
  SELECT l.tbl, l.op, l.id, l.r, x.r
  FROM rd_log l
  LEFT JOIN (SELECT 'rde' AS tbl, _id AS id, row(e.*)::text AS r FROM rde e
             UNION ALL SELECT 'rdv', id, row(v.*)::text FROM rdv v
             UNION ALL SELECT 'rdr', id, row(r.*)::text FROM rdr r) x USING (tbl, id)
  WHERE l.r IS DISTINCT FROM x.r
  ORDER BY 1, 2, 3 $$;
BEGIN;
INSERT INTO rde (_id, _source) VALUES ('a', '{"t": "x", "a": {"b": 1}}');
INSERT INTO rdv (id, embedding, metadata) VALUES ('a', '{1,0}', '{"grp": "g", "k": 2}');
INSERT INTO rdr VALUES ('a', 1);
SELECT * FROM rd_diff('insert');
TRUNCATE rd_log;
UPDATE rde SET _source = '{"t": "y"}' WHERE _id = 'a';
UPDATE rdv SET k = 3 WHERE id = 'a';
UPDATE rdr SET n = 2 WHERE id = 'a';
SELECT * FROM rd_diff('update');
COMMIT;
TRUNCATE rd_log;
DROP TRIGGER rde_after ON rde;
DROP TRIGGER rdv_after ON rdv;
DROP TRIGGER rdr_after ON rdr;

-- A null in the metadata value is no key: Chroma keeps none, and a read
-- after COMMIT shows none.  RETURNING and the transaction's read of its
-- buffered write must not show it either (nor an UPDATE's).
CREATE TABLE rd_v (step text, id text, metadata jsonb, k int);
BEGIN;
WITH r AS (INSERT INTO rdv (id, embedding, metadata)
           VALUES ('n', '{0,1}', '{"o": null, "k": 1}'), ('m', '{0,1}', '{"o": null}')
           RETURNING *)
INSERT INTO rd_v SELECT 'ins', id, metadata, k FROM r;
INSERT INTO rd_v SELECT 'ins:xact', id, metadata, k FROM rdv WHERE id IN ('n', 'm');
COMMIT;
INSERT INTO rd_v SELECT 'ins:after', id, metadata, k FROM rdv WHERE id IN ('n', 'm');
BEGIN;
WITH r AS (UPDATE rdv SET metadata = '{"k": 2, "p": null}' WHERE id = 'n' RETURNING *)
INSERT INTO rd_v SELECT 'upd', id, metadata, k FROM r;
INSERT INTO rd_v SELECT 'upd:xact', id, metadata, k FROM rdv WHERE id = 'n';
COMMIT;
INSERT INTO rd_v SELECT 'upd:after', id, metadata, k FROM rdv WHERE id = 'n';
SELECT r.step, r.id, r.metadata AS returned, x.metadata AS read_in_xact, a.metadata AS read_after
FROM rd_v r JOIN rd_v x ON x.step = r.step || ':xact' AND x.id = r.id
     JOIN rd_v a ON a.step = r.step || ':after' AND a.id = r.id
WHERE r.step NOT LIKE '%:%'
ORDER BY 1, 2;
DROP TABLE rd_v;

-- A metadata number that is no 64-bit integer as jsonb writes it (1e300 is
-- its 301 digits) is refused as out of range, not as "not an object".
INSERT INTO rdv (id, embedding, metadata) VALUES ('big', '{0,1}', '{"big": 1e300}');
INSERT INTO rdv (id, embedding, metadata) VALUES ('big', '{0,1}', '{"big": 12345678901234567890}');
INSERT INTO rdv (id, embedding, metadata) VALUES ('big', '{0,1}', '[1]');

-- A view's check option passes or fails on the row as read, with or without
-- RETURNING, transactional or immediate.
CREATE VIEW rde_t AS SELECT * FROM rde WHERE t IS NOT NULL WITH CHECK OPTION;
INSERT INTO rde_t (_id, _source) VALUES ('v1', '{"t": "in source"}');
INSERT INTO rde_t (_id, _source) VALUES ('v2', '{"t": "in source"}') RETURNING _id, t;
INSERT INTO rde_t (_id, t, _source) VALUES ('v3', 'col', '{}');
SELECT _id, t FROM rde WHERE _id LIKE 'v%' ORDER BY 1;
ALTER FOREIGN TABLE rde OPTIONS (ADD write_mode 'immediate');
UPDATE rde_t SET _source = '{}' WHERE _id = 'v3';    -- fails before it is sent
INSERT INTO rde_t (_id, _source) VALUES ('v4', '{"t": "in source"}');
SELECT _id, t FROM rde WHERE _id IN ('v3', 'v4') ORDER BY 1;
ALTER FOREIGN TABLE rde OPTIONS (DROP write_mode);

-- An _id varchar(5) cannot hold the 20-character id given to a row inserted
-- without one: the INSERT is refused (it wrote the document, which every
-- read then failed on, or failed only with RETURNING).
CREATE FOREIGN TABLE rde_short (_id varchar(5), t text)
  SERVER rdes OPTIONS (index 'regress_retrd', refresh 'true');
INSERT INTO rde_short (t) VALUES ('noid');
INSERT INTO rde_short (t) VALUES ('noid') RETURNING _id;
INSERT INTO rde_short (_id, t) VALUES ('given', 'ok') RETURNING _id, t;
SELECT _id, t FROM rde_short WHERE t IN ('noid', 'ok') ORDER BY 1;
DROP FOREIGN TABLE rde_short;

-- Memory: the statement's executor memory grows no more over 1000 rows of
-- an UPDATE ... RETURNING than that of the same UPDATE of a native table
-- (by more than one block of a statement-long structure: 64kB).
-- rd_mem() notes ExecutorState's size at the 200th and 1200th row.
CREATE SEQUENCE rd_row;
CREATE TABLE rd_mem (tbl text, i int, bytes bigint);
CREATE FUNCTION rd_mem(tbl text) RETURNS int LANGUAGE plpgsql AS $$
DECLARE i int := nextval('rd_row');
BEGIN
  IF i IN (200, 1200) THEN
    INSERT INTO rd_mem SELECT tbl, i, sum(total_bytes) FROM pg_backend_memory_contexts
    WHERE name = 'ExecutorState' AND parent = 'PortalContext';
  END IF;
  RETURN i;
END $$;
CREATE TABLE rdn (id text PRIMARY KEY, n int, _ttl int);
INSERT INTO rdn SELECT 'm' || g, g FROM generate_series(1, 1200) g;
INSERT INTO rdr SELECT * FROM rdn;
INSERT INTO rde (_id, _source)
  SELECT id, jsonb_build_object('t', 'x' || n, 'a', jsonb_build_object('b', n)) FROM rdn;
ALTER FOREIGN TABLE rdr OPTIONS (ADD watch_limit '0');
UPDATE rdn SET n = n + 1 RETURNING rd_mem('rdn') \g /dev/null
SELECT setval('rd_row', 1, false);
UPDATE rdr SET n = n + 1 WHERE id LIKE 'm%' RETURNING rd_mem('rdr') \g /dev/null
SELECT setval('rd_row', 1, false);
UPDATE rde SET x = x + 1 WHERE _id LIKE 'm%' RETURNING rd_mem('rde') \g /dev/null
SELECT tbl, count(*) AS noted,
       max(bytes) - min(bytes) - (SELECT max(bytes) - min(bytes) FROM rd_mem WHERE tbl = 'rdn')
         <= 65536 AS no_per_row_growth
FROM rd_mem GROUP BY 1 ORDER BY 1;

DELETE FROM rdr;
DELETE FROM rdv;
DELETE FROM rde;
DROP VIEW rde_t;
SELECT pgpoly.elastic_request('rdes', 'DELETE', '/regress_retrd')->>'acknowledged';
DROP SERVER rdes, rdvs, rdrs CASCADE;
DROP TABLE rd_log, rd_mem, rdn;
DROP SEQUENCE rd_row;
DROP FUNCTION rd_after(), rd_diff(text), rd_mem(text);
