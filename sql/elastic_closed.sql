--
-- pgpoly_elastic against an index that is there but cannot take the
-- request: closed (indices-close.html), with a write block
-- (index-modules-blocks.html), or missing while the cluster does not
-- create indices on write (action.auto_create_index false).  Each is an
-- error about the index, not a rejection of the documents: SQLSTATE 55000
-- for a closed or blocked index, HV00R for a missing one.  A sync into
-- such an index waits and retries (state 'retrying' or 'failing'), never
-- moves the changes to the dead letters, and delivers everything in order
-- once the index is back (differential: source against index).
-- Indices regress_ec, regress_ec_missing are created and removed here;
-- action.auto_create_index is set and reset.
--
\getenv es_url ES_URL
\set VERBOSITY terse
DO $$ BEGIN
  EXECUTE format('ALTER DATABASE %I SET pgpoly.sync_max_attempts = 2', current_database());
  EXECUTE format('ALTER DATABASE %I SET pgpoly.sync_max_retry_delay = 300', current_database());
END $$;

CREATE SERVER ec_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('ec_es', 'DELETE', '/regress_ec') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('ec_es', 'DELETE', '/regress_ec_missing') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('ec_es', 'PUT', '/regress_ec',
  '{"mappings": {"properties": {"n": {"type": "long"}}}}') ->> 'acknowledged' AS created;
CREATE FOREIGN TABLE ec (_id text, n int) SERVER ec_es OPTIONS (index 'regress_ec', refresh 'true');
INSERT INTO ec VALUES ('1', 1), ('2', 2), ('3', 3);

-- Poll the status view until cond holds for a sync (30 s at most).
CREATE FUNCTION ec_until(sync text, cond text) RETURNS bool LANGUAGE plpgsql AS $$
DECLARE
  ok bool;
BEGIN
  FOR i IN 1..600 LOOP
    EXECUTE format('SELECT %s FROM pgpoly.sync_status WHERE name = $1', cond) INTO ok USING sync;
    IF ok THEN
      RETURN true;
    END IF;
    PERFORM pg_sleep(0.05);
  END LOOP;
  RETURN false;
END $$;

--
-- A closed index: reads and writes say so, with 55000.
--
SELECT pgpoly.elastic_request('ec_es', 'POST', '/regress_ec/_close') ->> 'acknowledged' AS closed;
\set VERBOSITY default
SELECT * FROM ec ORDER BY _id;
\set VERBOSITY terse
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM ec;
\echo :LAST_ERROR_SQLSTATE
SELECT n FROM ec WHERE _id = '1';
\echo :LAST_ERROR_SQLSTATE
INSERT INTO ec VALUES ('4', 4);
\echo :LAST_ERROR_SQLSTATE
DELETE FROM ec WHERE _id = '1';
\echo :LAST_ERROR_SQLSTATE
SELECT pgpoly.elastic_request('ec_es', 'POST', '/regress_ec/_open') ->> 'acknowledged' AS opened;
SELECT * FROM ec ORDER BY _id;

--
-- A write block: reads work, writes say the index is blocked, with 55000.
--
SELECT pgpoly.elastic_request('ec_es', 'PUT', '/regress_ec/_settings',
  '{"index.blocks.write": true}') ->> 'acknowledged' AS blocked;
\set VERBOSITY default
INSERT INTO ec VALUES ('4', 4);
\set VERBOSITY terse
\echo :LAST_ERROR_SQLSTATE
UPDATE ec SET n = 20 WHERE _id = '2';
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM ec ORDER BY _id;
SELECT pgpoly.elastic_request('ec_es', 'PUT', '/regress_ec/_settings',
  '{"index.blocks.write": null}') ->> 'acknowledged' AS unblocked;

--
-- A sync into the index: closed, then blocked, it waits ('retrying'), and
-- every change arrives once the index is back; no dead letter.
--
CREATE TABLE ec_src (id int PRIMARY KEY, n int);
INSERT INTO ec_src VALUES (1, 1), (2, 2), (3, 3);
CREATE FUNCTION ec_diff() RETURNS bigint LANGUAGE sql AS $$
  SELECT count(*) FROM (
    (SELECT id::text, n FROM ec_src EXCEPT ALL SELECT _id, n FROM ec)
    UNION ALL
    (SELECT _id, n FROM ec EXCEPT ALL SELECT id::text, n FROM ec_src)) d $$;
SELECT pgpoly.create_sync('ec', 'ec_src', 'ec');
SELECT pgpoly.sync_wait('ec');
SELECT ec_diff();

SELECT pgpoly.elastic_request('ec_es', 'POST', '/regress_ec/_close') ->> 'acknowledged' AS closed;
UPDATE ec_src SET n = n * 10;
INSERT INTO ec_src SELECT i, i FROM generate_series(4, 30) i;
DELETE FROM ec_src WHERE id = 3;
UPDATE ec_src SET n = n + 1 WHERE id = 4;
SELECT ec_until('ec', $$state = 'retrying'$$);
SELECT pgpoly.sync_wait('ec', '1 s');
SELECT state, pending > 0 AS pending, dead_letters, last_error LIKE '%index "regress_ec"%is closed%' AS says_closed
  FROM pgpoly.sync_status WHERE name = 'ec';
SELECT pgpoly.elastic_request('ec_es', 'POST', '/regress_ec/_open') ->> 'acknowledged' AS opened;
SELECT pgpoly.sync_wait('ec', '60 s');
SELECT ec_diff();
SELECT state, pending, dead_letters FROM pgpoly.sync_status WHERE name = 'ec';

SELECT pgpoly.elastic_request('ec_es', 'PUT', '/regress_ec/_settings',
  '{"index.blocks.write": true}') ->> 'acknowledged' AS blocked;
UPDATE ec_src SET n = -n WHERE id <= 10;
DELETE FROM ec_src WHERE id > 25;
SELECT ec_until('ec', $$state = 'retrying'$$);
SELECT state, pending > 0 AS pending, dead_letters, last_error LIKE '%index "regress_ec"%blocked%' AS says_blocked
  FROM pgpoly.sync_status WHERE name = 'ec';
SELECT pgpoly.elastic_request('ec_es', 'PUT', '/regress_ec/_settings',
  '{"index.blocks.write": null}') ->> 'acknowledged' AS unblocked;
SELECT pgpoly.sync_wait('ec', '60 s');
SELECT ec_diff();
SELECT state, pending, dead_letters FROM pgpoly.sync_status WHERE name = 'ec';
SELECT count(*) AS dead FROM pgpoly.sync_dead_letters WHERE name = 'ec';
SELECT pgpoly.drop_sync('ec');

--
-- A missing index while the cluster creates none on write: HV00R, and a
-- sync into it is 'failing' until the index exists.
--
SELECT pgpoly.elastic_request('ec_es', 'PUT', '/_cluster/settings',
  '{"persistent": {"action.auto_create_index": "false"}}') ->> 'acknowledged' AS no_auto_create;
CREATE FOREIGN TABLE ec_missing (_id text, n int)
  SERVER ec_es OPTIONS (index 'regress_ec_missing', refresh 'true');
INSERT INTO ec_missing VALUES ('1', 1);
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE ec_src2 (id int PRIMARY KEY, n int);
SELECT pgpoly.create_sync('ec_missing', 'ec_src2', 'ec_missing');
INSERT INTO ec_src2 SELECT i, i FROM generate_series(1, 5) i;
SELECT ec_until('ec_missing', $$state = 'failing'$$);
SELECT dead_letters, last_error LIKE '%index "regress_ec_missing" does not exist%' AS says_missing
  FROM pgpoly.sync_status WHERE name = 'ec_missing';
SELECT pgpoly.elastic_request('ec_es', 'PUT', '/regress_ec_missing',
  '{"mappings": {"properties": {"n": {"type": "long"}}}}') ->> 'acknowledged' AS created;
SELECT pgpoly.sync_wait('ec_missing', '60 s');
SELECT count(*) AS differences FROM (
  (SELECT id::text, n FROM ec_src2 EXCEPT ALL SELECT _id, n FROM ec_missing)
  UNION ALL
  (SELECT _id, n FROM ec_missing EXCEPT ALL SELECT id::text, n FROM ec_src2)) d;
SELECT state, dead_letters FROM pgpoly.sync_status WHERE name = 'ec_missing';
SELECT pgpoly.drop_sync('ec_missing');
SELECT pgpoly.elastic_request('ec_es', 'PUT', '/_cluster/settings',
  '{"persistent": {"action.auto_create_index": null}}') ->> 'acknowledged' AS auto_create_reset;

SELECT pgpoly.elastic_request('ec_es', 'DELETE', '/regress_ec') ->> 'acknowledged' AS dropped;
SELECT pgpoly.elastic_request('ec_es', 'DELETE', '/regress_ec_missing') ->> 'acknowledged' AS dropped;
DROP TABLE ec_src, ec_src2;
DROP FUNCTION ec_until, ec_diff;
DROP SERVER ec_es CASCADE;
DO $$ BEGIN
  EXECUTE format('ALTER DATABASE %I RESET pgpoly.sync_max_attempts', current_database());
  EXECUTE format('ALTER DATABASE %I RESET pgpoly.sync_max_retry_delay', current_database());
END $$;
