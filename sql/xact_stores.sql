--
-- The transaction lifecycle of the three stores, differential: the same
-- statements run against a native table n and the Redis (r), Elasticsearch
-- (e) and Chroma (c) tables, and diff() lists every row where a store and
-- n disagree (nothing, unless said otherwise).  Cursors over writes, WITH
-- HOLD cursors, deferred constraint triggers that write at COMMIT, INSERT
-- ... SELECT from the table itself, COPY with a bad row, a plpgsql loop of
-- subtransactions, read-only transactions, generic plans over ALTER, and a
-- COMMIT that fails at its last store after the others applied.
--
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL
\set VERBOSITY default
SET timezone = 'UTC';
CREATE SCHEMA xact_stores;
SET search_path = xact_stores, public;
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_xs*' | xargs -r redis-cli -p "$REDIS_PORT" del > /dev/null
\! for c in pgpoly_rt_xs pgpoly_rt_xs_nodist; do curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/$c"; done
CREATE SERVER xs_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE SERVER xs_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
CREATE SERVER xs_chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
SELECT pgpoly.elastic_request('xs_es', 'DELETE', '/regress_es_xs') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('xs_es', 'PUT', '/regress_es_xs',
  '{"mappings": {"properties": {"v": {"type": "long"}}}}') ->> 'acknowledged' AS created;
CREATE FOREIGN TABLE r (id text OPTIONS (key 'true'), v int) SERVER xs_redis
  OPTIONS (key_prefix 'regress_xs:');
CREATE FOREIGN TABLE e (_id text, v int) SERVER xs_es
  OPTIONS (index 'regress_es_xs', refresh 'true');
CREATE FOREIGN TABLE c (id text, embedding real[], v int OPTIONS (field 'v')) SERVER xs_chroma
  OPTIONS (collection 'pgpoly_rt_xs', create_collection 'true', distance 'l2', batch_size '3');
-- The same stores, write_mode 'immediate', in batches of 3.
CREATE FOREIGN TABLE ri (id text OPTIONS (key 'true'), v int) SERVER xs_redis
  OPTIONS (key_prefix 'regress_xs:', write_mode 'immediate', batch_size '3');
CREATE FOREIGN TABLE ei (_id text, v int) SERVER xs_es
  OPTIONS (index 'regress_es_xs', refresh 'true', write_mode 'immediate', batch_size '3');
CREATE FOREIGN TABLE ci (id text, embedding real[], v int OPTIONS (field 'v')) SERVER xs_chroma
  OPTIONS (collection 'pgpoly_rt_xs', write_mode 'immediate', batch_size '3');
CREATE TABLE n (id text PRIMARY KEY, v int);
CREATE VIEW stores AS
  SELECT 'r' AS s, id, v FROM r UNION ALL SELECT 'e', _id, v FROM e
  UNION ALL SELECT 'c', id, v FROM c;
CREATE FUNCTION diff() RETURNS TABLE (s text, id text, v int, only_in text)
LANGUAGE sql AS $$
  WITH want AS (SELECT x.s, n.id, n.v FROM n, (VALUES ('r'), ('e'), ('c')) x(s))
  SELECT * FROM ((SELECT *, 'store' FROM stores EXCEPT ALL SELECT *, 'store' FROM want)
                 UNION ALL
                 (SELECT *, 'native' FROM want EXCEPT ALL SELECT *, 'native' FROM stores)) d
  ORDER BY 1, 2, 3 $$;
-- Run statement q on n and on each store table: in q, %1$s is the table,
-- %2$s its key column, %3$s 'embedding,' for Chroma's extra column (else '').
CREATE FUNCTION on_all(q text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format(q, 'n', 'id', '');
  EXECUTE format(q, 'r', 'id', '');
  EXECUTE format(q, 'e', '_id', '');
  EXECUTE format(q, 'c', 'id', 'embedding,');
END $$;
CREATE FUNCTION ins(tbl text, id text, v int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF tbl = 'c' THEN
    INSERT INTO c VALUES (id, ARRAY[1,0,0]::real[], v);
  ELSE
    EXECUTE format('INSERT INTO %I VALUES ($1, $2)', tbl) USING id, v;
  END IF;
END $$;
CREATE FUNCTION ins_all(id text, v int) RETURNS void LANGUAGE sql AS $$
  SELECT ins('n', id, v); SELECT ins('r', id, v); SELECT ins('e', id, v); SELECT ins('c', id, v) $$;
SELECT ins_all(id, v) FROM (VALUES ('a', 1), ('b', 2), ('c', 3)) x(id, v);
SELECT * FROM diff();

-- Cursors see the writes made before their DECLARE, not those after it;
-- a WITH HOLD cursor keeps that at COMMIT, whether it was read before or not.
BEGIN;
DECLARE cn CURSOR FOR SELECT id, v FROM n ORDER BY id;
DECLARE cr CURSOR FOR SELECT id, v FROM r ORDER BY id;
DECLARE ce CURSOR FOR SELECT _id, v FROM e ORDER BY _id;
DECLARE cc CURSOR FOR SELECT id, v FROM c ORDER BY id;
DECLARE hn CURSOR WITH HOLD FOR SELECT id, v FROM n ORDER BY id;
DECLARE hr CURSOR WITH HOLD FOR SELECT id, v FROM r ORDER BY id;
DECLARE he CURSOR WITH HOLD FOR SELECT _id, v FROM e ORDER BY _id;
DECLARE hc CURSOR WITH HOLD FOR SELECT id, v FROM c ORDER BY id;
SELECT ins_all('d', 4);
SELECT on_all('UPDATE %1$s SET v = v + 10 WHERE %2$s = ''a''');
FETCH 1 FROM cn; FETCH 1 FROM cr; FETCH 1 FROM ce; FETCH 1 FROM cc;
DECLARE hn2 SCROLL CURSOR WITH HOLD FOR SELECT id, v FROM n ORDER BY id;
DECLARE hr2 SCROLL CURSOR WITH HOLD FOR SELECT id, v FROM r ORDER BY id;
DECLARE he2 SCROLL CURSOR WITH HOLD FOR SELECT _id, v FROM e ORDER BY _id;
DECLARE hc2 SCROLL CURSOR WITH HOLD FOR SELECT id, v FROM c ORDER BY id;
FETCH 1 FROM hn2; FETCH 1 FROM hr2; FETCH 1 FROM he2; FETCH 1 FROM hc2;
SELECT on_all('DELETE FROM %1$s WHERE %2$s = ''b''');
SAVEPOINT s;
SELECT on_all('DELETE FROM %1$s WHERE %2$s = ''c''');
FETCH ALL FROM cn; FETCH ALL FROM cr; FETCH ALL FROM ce; FETCH ALL FROM cc;
ROLLBACK TO SAVEPOINT s;
COMMIT;
FETCH ALL FROM hn; FETCH ALL FROM hr; FETCH ALL FROM he; FETCH ALL FROM hc;
FETCH ABSOLUTE -1 FROM hn2; FETCH ABSOLUTE -1 FROM hr2; FETCH ABSOLUTE -1 FROM he2; FETCH ABSOLUTE -1 FROM hc2;
FETCH BACKWARD 2 FROM hn2; FETCH BACKWARD 2 FROM hr2; FETCH BACKWARD 2 FROM he2; FETCH BACKWARD 2 FROM hc2;
CLOSE ALL;
SELECT * FROM diff();

-- A deferred constraint trigger writes to the stores at COMMIT: the writes
-- it buffers then are sent; one that fails after some writes sends nothing.
CREATE TABLE src (id text, v int);
CREATE FUNCTION src_to_stores() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM ins_all(NEW.id, NEW.v);
  IF NEW.v < 0 THEN RAISE EXCEPTION 'negative v %', NEW.v; END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER src_deferred AFTER INSERT ON src
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION src_to_stores();
BEGIN;
INSERT INTO src VALUES ('t1', 1), ('t2', 2);
SELECT count(*) FROM stores WHERE id LIKE 't%';     -- not yet: at COMMIT
COMMIT;
SELECT s, id, v FROM stores WHERE id LIKE 't%' ORDER BY 1, 2;
BEGIN;
INSERT INTO src VALUES ('t3', 3), ('t4', -4);
COMMIT;
SELECT * FROM diff();
DROP TABLE src;

-- INSERT ... SELECT from the table itself reads it as of the statement's
-- start (no Halloween problem), also over earlier writes of the transaction.
SELECT on_all('INSERT INTO %1$s (%2$s, %3$s v) SELECT %2$s || ''x'', %3$s v + 100 FROM %1$s');
BEGIN;
SELECT on_all('INSERT INTO %1$s (%2$s, %3$s v) SELECT %2$s || ''y'', %3$s v FROM %1$s');
SELECT on_all('INSERT INTO %1$s (%2$s, %3$s v) SELECT %2$s || ''z'', %3$s v FROM %1$s');
SELECT s, count(*) FROM stores GROUP BY s ORDER BY s;
SELECT * FROM diff();
COMMIT;
SELECT * FROM diff();
-- An UPDATE moving the key (Redis key, vector id; Elasticsearch refuses
-- to change an _id).
UPDATE n SET id = id || 'k' WHERE id LIKE 'a%';
UPDATE r SET id = id || 'k' WHERE id LIKE 'a%';
UPDATE c SET id = id || 'k' WHERE id LIKE 'a%';
SELECT * FROM diff() WHERE s <> 'e';
UPDATE e SET _id = _id || 'k' WHERE _id LIKE 'a%';
SELECT on_all('DELETE FROM %1$s');

-- COPY with a bad row in the middle: nothing of it in transactional mode;
-- an immediate table keeps the full batches sent before the bad row.
COPY r FROM STDIN;
k1	1
k2	2
k3	notanint
k4	4
\.
COPY e FROM STDIN;
k1	1
k2	2
k3	notanint
k4	4
\.
COPY c (id, embedding, v) FROM STDIN;
k1	{1,0,0}	1
k2	{1,0,0}	2
k3	{1,0,0}	notanint
k4	{1,0,0}	4
\.
SELECT count(*) FROM stores;
COPY ri FROM STDIN;
k1	1
k2	2
k3	3
k4	4
k5	notanint
\.
COPY ei FROM STDIN;
k1	1
k2	2
k3	3
k4	4
k5	notanint
\.
COPY ci (id, embedding, v) FROM STDIN;
k1	{1,0,0}	1
k2	{1,0,0}	2
k3	{1,0,0}	3
k4	{1,0,0}	4
k5	{1,0,0}	notanint
\.
SELECT s, id, v FROM stores ORDER BY 1, 2;
SELECT on_all('DELETE FROM %1$s');

-- A plpgsql loop of 300 subtransactions, half of them failing after their
-- writes (and some after an UPDATE or DELETE of an earlier row): the stores
-- hold exactly what the committed half wrote.
DO $$
BEGIN
  FOR i IN 1..300 LOOP
    BEGIN
      PERFORM ins_all('L' || i, i);
      IF i % 2 = 0 THEN RAISE EXCEPTION 'even'; END IF;
      IF i % 3 = 0 THEN
        PERFORM on_all(format('UPDATE %%1$s SET v = -v WHERE %%2$s = %L', 'L' || (i - 2)));
      END IF;
      IF i % 5 = 0 THEN
        PERFORM on_all(format('DELETE FROM %%1$s WHERE %%2$s = %L', 'L' || (i - 4)));
        IF i % 7 = 0 THEN RAISE EXCEPTION 'multiple of 35'; END IF;
      END IF;
    EXCEPTION WHEN raise_exception THEN NULL;
    END;
  END LOOP;
END $$;
SELECT count(*), sum(v), sum(abs(v)) FROM n;
SELECT * FROM diff();
SELECT on_all('DELETE FROM %1$s');

-- write_mode 'immediate', a statement reading the table it writes, its
-- writes sent one by one while its scan pages 10 records at a time: it
-- reads none of them (Chroma pages by offset: a DELETE used to skip half
-- of the records, an UPDATE moving ids to move some twice, and an INSERT
-- ... SELECT from the table to read its own rows without end).  r is the
-- transactional Redis table, for comparison.
CREATE FOREIGN TABLE cp (id text, embedding real[], v int OPTIONS (field 'v')) SERVER xs_chroma
  OPTIONS (collection 'pgpoly_rt_xs', write_mode 'immediate', batch_size '1', fetch_size '10');
CREATE FOREIGN TABLE ep (_id text, v int) SERVER xs_es
  OPTIONS (index 'regress_es_xs', refresh 'true', write_mode 'immediate', batch_size '1',
           fetch_size '10');
SET statement_timeout = '60s';
INSERT INTO n SELECT 'p' || i, i FROM generate_series(1, 60) i;
INSERT INTO cp SELECT 'p' || i, '{1,0,0}', i FROM generate_series(1, 60) i;
INSERT INTO ep SELECT 'p' || i, i FROM generate_series(1, 60) i;
INSERT INTO r SELECT 'p' || i, i FROM generate_series(1, 60) i;
DELETE FROM n WHERE v % 3 = 0;
DELETE FROM cp WHERE v % 3 = 0;
DELETE FROM ep WHERE v % 3 = 0;
DELETE FROM r WHERE v % 3 = 0;
SELECT * FROM diff();
INSERT INTO n SELECT id || 'x', v + 100 FROM n;
INSERT INTO cp SELECT id || 'x', embedding, v + 100 FROM cp;
INSERT INTO ep SELECT _id || 'x', v + 100 FROM ep;
INSERT INTO r SELECT id || 'x', v + 100 FROM r;
SELECT * FROM diff();
UPDATE n SET id = id || 'm' WHERE id LIKE 'p1%';
UPDATE cp SET id = id || 'm' WHERE id LIKE 'p1%';
UPDATE r SET id = id || 'm' WHERE id LIKE 'p1%';
SELECT * FROM diff() WHERE s <> 'e';
DELETE FROM n;
DELETE FROM cp;
DELETE FROM ep;
DELETE FROM r;
SELECT * FROM diff();
RESET statement_timeout;

-- A read-only transaction writes nothing, whatever the path (the SQLSTATE
-- only where which statement refuses depends on what exists already).
CREATE FUNCTION err(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
CREATE FOREIGN TABLE user_stats (user_id text OPTIONS (key 'true'), clicks int)
  SERVER xs_redis OPTIONS (key_prefix 'regress_xs:user:');
SELECT pgpoly.create_feature_view('xs_user_stats', 'user_id', 'user_stats');
SELECT pgpoly.register_model_version('xs_model', 's3://xs/1');
CREATE TABLE xs_source AS
  SELECT 'u' || i AS user_id, '2024-01-02'::timestamptz AS event_time, i AS clicks
  FROM generate_series(1, 3) i;
CREATE TABLE xs_synced (id text PRIMARY KEY, v int);
CREATE FOREIGN TABLE ro (id text OPTIONS (key 'true'), v int) SERVER xs_redis
  OPTIONS (key_prefix 'regress_xs:ro:', write_mode 'outbox');
SET default_transaction_read_only = on;
SELECT err('INSERT INTO r VALUES (''ro'', 1)');
SELECT err('INSERT INTO ri VALUES (''ro'', 1)');
SELECT err('UPDATE e SET v = 1');
SELECT err('DELETE FROM ci');
SELECT err('INSERT INTO ro VALUES (''ro'', 1)');
SELECT err($$SELECT pgpoly.put_features('xs_user_stats', 'u1', '{"clicks": 1}')$$);
SELECT err($$SELECT pgpoly.ingest_features('xs_user_stats', 'SELECT * FROM xs_source')$$);
SELECT err($$SELECT pgpoly.materialize('xs_user_stats')$$);
SELECT left(err($$SELECT pgpoly.log_prediction('xs_model', 1, 'e', '{"p": 1}')$$), 5) AS sqlstate;
SELECT left(err($$SELECT pgpoly.log_predictions('[{"model": "xs_model", "version": 1, "entity": "e", "prediction": {}}]')$$), 5) AS sqlstate;
SELECT left(err($$SELECT pgpoly.create_sync('xs', 'xs_synced', 'r')$$), 5) AS sqlstate;
SELECT left(err($$SELECT pgpoly.sync_retry('xs')$$), 5) AS sqlstate;
RESET default_transaction_read_only;
BEGIN;
SET TRANSACTION READ ONLY;
COPY r FROM STDIN;
SELECT 1;
\.
ROLLBACK;
-- ... also when only a function is read-only.
CREATE FUNCTION put_read_only() RETURNS text LANGUAGE plpgsql
  SET transaction_read_only = on AS $$
BEGIN
  RETURN pgpoly.put_features('xs_user_stats', 'u9', '{"clicks": 9}');
END $$;
SELECT err('SELECT put_read_only()');
SELECT count(*) AS written FROM stores;
SELECT count(*) AS online FROM user_stats;
SELECT count(*) AS predictions FROM pgpoly.predictions;
SELECT count(*) AS queued FROM pgpoly.sync_queue;

-- Generic plans of writes, re-executed after ALTER FOREIGN TABLE changed
-- the key prefix, the write_mode and a field name.
CREATE FOREIGN TABLE g (id text OPTIONS (key 'true'), v int) SERVER xs_redis
  OPTIONS (key_prefix 'regress_xsg:g1:');
CREATE FOREIGN TABLE g_raw (key text, v text, vv text) SERVER xs_redis
  OPTIONS (key_prefix 'regress_xsg:', write_mode 'immediate');
SET plan_cache_mode = force_generic_plan;
PREPARE g_ins(text, int) AS INSERT INTO g VALUES ($1, $2);
PREPARE g_upd(text, int) AS UPDATE g SET v = $2 WHERE id = $1;
PREPARE g_sel(text) AS SELECT * FROM g WHERE id = $1;
EXECUTE g_ins('a', 1);
EXECUTE g_upd('a', 2);
BEGIN;
EXECUTE g_ins('b', 1);
ALTER FOREIGN TABLE g OPTIONS (SET key_prefix 'regress_xsg:g2:');
EXECUTE g_ins('c', 1);
EXECUTE g_sel('b');              -- written under the old prefix
EXECUTE g_sel('c');
COMMIT;
ALTER FOREIGN TABLE g OPTIONS (ADD write_mode 'immediate');
BEGIN;
EXECUTE g_ins('d', 4);
ROLLBACK;                        -- immediate: d stays
ALTER FOREIGN TABLE g OPTIONS (SET write_mode 'transactional');
ALTER FOREIGN TABLE g ALTER COLUMN v OPTIONS (ADD field 'vv');
EXECUTE g_upd('c', 44);
SELECT * FROM g_raw ORDER BY key;
RESET plan_cache_mode;
DEALLOCATE ALL;

-- A COMMIT that fails at its last store: the stores flushed before it keep
-- the writes (no two-phase commit), and the error says which.
CREATE FOREIGN TABLE c_nodist (id text, embedding real[]) SERVER xs_chroma
  OPTIONS (collection 'pgpoly_rt_xs_nodist', create_collection 'true');
BEGIN;
INSERT INTO n VALUES ('f1', 1);
INSERT INTO r VALUES ('f1', 1);
INSERT INTO e VALUES ('f1', 1);
INSERT INTO c_nodist VALUES ('f1', '{1,0,0}');
COMMIT;
SELECT s, id, v FROM stores ORDER BY 1, 2;
SELECT count(*) FROM n;
-- Only the failing store written: no such line.
DELETE FROM r;
BEGIN;
INSERT INTO c_nodist VALUES ('f1', '{1,0,0}');
INSERT INTO r VALUES ('f2', 2);
COMMIT;
SELECT s, id, v FROM stores ORDER BY 1, 2;
SELECT on_all('DELETE FROM %1$s');
SELECT pgpoly.elastic_request('xs_es', 'DELETE', '/regress_es_xs') ->> 'acknowledged' AS dropped;
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_xs*' | xargs -r redis-cli -p "$REDIS_PORT" del > /dev/null
SELECT pgpoly.drop_feature_view('xs_user_stats');
SET client_min_messages = warning;
DROP SCHEMA xact_stores CASCADE;
DROP SERVER xs_redis, xs_es, xs_chroma CASCADE;
RESET search_path;
RESET client_min_messages;
