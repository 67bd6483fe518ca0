--
-- One statement that updates or deletes a row of a foreign table through
-- two of its nodes: a data-modifying WITH query and the main statement, or
-- two WITH queries.  PostgreSQL modifies such a row once: the node that
-- meets it first wins, and the other skips it (the row was already
-- modified by the command).  Each statement runs on a foreign table of
-- every store and on a native table with the same rows; the contents,
-- row counts and RETURNING rows must be the same.
--
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_m2_v"

CREATE SERVER m2_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER m2_redis;
CREATE SERVER m2_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
CREATE SERVER m2_vec FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
SELECT pgpoly.elastic_request('m2_es', 'DELETE', '/regress_m2') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('m2_es', 'PUT', '/regress_m2',
    '{"mappings": {"properties": {"v": {"type": "keyword"}, "n": {"type": "integer"}}}}')->>'acknowledged';

CREATE FOREIGN TABLE m2_hash (k text OPTIONS (key 'true'), v text, n int)
  SERVER m2_redis OPTIONS (table_type 'hash', key_prefix 'regress_m2:h:');
CREATE FOREIGN TABLE m2_hash_now (k text OPTIONS (key 'true'), v text, n int)
  SERVER m2_redis OPTIONS (table_type 'hash', key_prefix 'regress_m2:n:', write_mode 'immediate');
CREATE FOREIGN TABLE m2_es (_id text, v text, n int)
  SERVER m2_es OPTIONS (index 'regress_m2', refresh 'true');
CREATE FOREIGN TABLE m2_vec (id text, embedding real[], v text OPTIONS (field 'v'), n int OPTIONS (field 'n'))
  SERVER m2_vec OPTIONS (collection 'regress_m2_v', create_collection 'true', distance 'l2');
CREATE TABLE m2_native (k text PRIMARY KEY, v text, n int);
CREATE TABLE m2_rows AS SELECT k, 'orig-' || k AS v, 10 AS n FROM unnest('{a,b,c,d}'::text[]) k;

-- refill table t with m2_rows; its contents as text
CREATE FUNCTION m2_fill(t text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('DELETE FROM %I', t);
  IF t = 'm2_vec' THEN
    INSERT INTO m2_vec SELECT k, ARRAY[ascii(k), 0]::real[], v, n FROM m2_rows;
  ELSE
    EXECUTE format('INSERT INTO %I SELECT * FROM m2_rows', t);
  END IF;
END $$;
CREATE FUNCTION m2_rows_of(t text, key text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
  EXECUTE format('SELECT string_agg(format(''%%s=%%s/%%s'', %I, v, n), '' '' ORDER BY %I) FROM %I', key, key, t) INTO r;
  RETURN r;
END $$;
-- run stmt (%1$s the table, %2$s its key column) on t from a fresh fill:
-- "rows returned | contents after"
CREATE FUNCTION m2_run(t text, key text, stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
  PERFORM m2_fill(t);
  EXECUTE format(stmt, t, key) INTO r;
  RETURN coalesce(r, '-') || ' | ' || coalesce(m2_rows_of(t, key), '(empty)');
END $$;

CREATE TABLE m2_tables (t text, key text);
INSERT INTO m2_tables VALUES ('m2_native', 'k'), ('m2_hash', 'k'), ('m2_hash_now', 'k'),
  ('m2_es', '_id'), ('m2_vec', 'id');
CREATE TABLE m2_stmts (name text, stmt text);
INSERT INTO m2_stmts VALUES
  ('1 WITH DELETE, UPDATE',
   'WITH d AS (DELETE FROM %1$s WHERE %2$s = ''a'' RETURNING %2$s)
    UPDATE %1$s SET v = v || ''+'', n = n + 1 WHERE %2$s IN (''a'', ''b'') RETURNING (SELECT count(*) FROM d)'),
  ('2 WITH UPDATE, DELETE',
   'WITH u AS (UPDATE %1$s SET v = ''u'' WHERE %2$s IN (''a'', ''b'') RETURNING %2$s)
    DELETE FROM %1$s WHERE %2$s IN (''b'', ''c'') RETURNING (SELECT count(*) FROM u)'),
  ('3 WITH UPDATE read by UPDATE',
   'WITH u AS (UPDATE %1$s SET n = 100 WHERE %2$s = ''a'' RETURNING %2$s)
    UPDATE %1$s x SET n = n + 1 FROM u WHERE x.%2$s IN (''a'', ''b'') RETURNING x.%2$s'),
  ('4 two WITH UPDATEs',
   'WITH u1 AS (UPDATE %1$s SET v = ''one'' WHERE %2$s IN (''a'', ''b'') RETURNING %2$s),
         u2 AS (UPDATE %1$s SET v = ''two'' WHERE %2$s IN (''b'', ''c'') RETURNING %2$s)
    SELECT (SELECT string_agg(%2$s, '','' ORDER BY %2$s) FROM u1) || ''/'' ||
           (SELECT string_agg(%2$s, '','' ORDER BY %2$s) FROM u2)'),
  ('5 WITH DELETE, DELETE',
   'WITH d AS (DELETE FROM %1$s WHERE %2$s IN (''a'', ''b'') RETURNING %2$s)
    DELETE FROM %1$s WHERE %2$s IN (''b'', ''c'') RETURNING (SELECT count(*) FROM d)');

SELECT s.name, t.t, m2_run(t.t, t.key, s.stmt) AS "returned | after"
FROM m2_stmts s, m2_tables t
ORDER BY s.name, t.t <> 'm2_native', t.t;

-- the same differences, counted, in one transaction per store (COMMIT included)
CREATE FUNCTION m2_diff(t text, key text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint := 0; s record;
BEGIN
  FOR s IN SELECT stmt FROM m2_stmts LOOP
    IF m2_run(t, key, s.stmt) IS DISTINCT FROM m2_run('m2_native', 'k', s.stmt) THEN
      n := n + 1;
    END IF;
  END LOOP;
  RETURN n;
END $$;
SELECT t, m2_diff(t, key) AS differences FROM m2_tables WHERE t <> 'm2_native' ORDER BY t;

DELETE FROM m2_hash; DELETE FROM m2_hash_now; DELETE FROM m2_es; DELETE FROM m2_vec;
SELECT pgpoly.elastic_request('m2_es', 'DELETE', '/regress_m2')->>'acknowledged';
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_m2_v"

-- The two nodes may reach the foreign table through an inheritance parent:
-- one node updates or deletes the parent (every child), the other the
-- foreign child itself, which then must not be a direct modification
-- either (it would not note its rows, and the other node would modify them
-- again).  The main statement runs first, the unread WITH query after it.
CREATE TABLE m2_parent (k text, v text, n int);
CREATE FOREIGN TABLE m2_child () INHERITS (m2_parent)
  SERVER m2_redis OPTIONS (table_type 'hash', key_prefix 'regress_m2:i:');
ALTER FOREIGN TABLE m2_child ALTER k OPTIONS (ADD key 'true');
CREATE TABLE m2_nparent (k text, v text, n int);
CREATE TABLE m2_nchild () INHERITS (m2_nparent);
CREATE TABLE m2_part (k text, v text, n int) PARTITION BY LIST (k);
CREATE FOREIGN TABLE m2_part_ab PARTITION OF m2_part FOR VALUES IN ('a', 'b')
  SERVER m2_redis OPTIONS (table_type 'hash', key_prefix 'regress_m2:p:');
ALTER FOREIGN TABLE m2_part_ab ALTER k OPTIONS (ADD key 'true');
CREATE TABLE m2_part_cd PARTITION OF m2_part FOR VALUES IN ('c', 'd');
CREATE TABLE m2_npart (k text, v text, n int) PARTITION BY LIST (k);
CREATE TABLE m2_npart_ab PARTITION OF m2_npart FOR VALUES IN ('a', 'b');
CREATE TABLE m2_npart_cd PARTITION OF m2_npart FOR VALUES IN ('c', 'd');
CREATE TABLE m2_inh (parent text, child text);
INSERT INTO m2_inh VALUES ('m2_parent', 'm2_child'), ('m2_nparent', 'm2_nchild'),
  ('m2_part', 'm2_part_ab'), ('m2_npart', 'm2_npart_ab');
CREATE TABLE m2_inh_stmts (name text, stmt text);
INSERT INTO m2_inh_stmts VALUES
  ('1 WITH UPDATE parent, UPDATE child',
   'WITH u AS (UPDATE %1$s SET n = n + 1 RETURNING k) UPDATE %2$s SET v = ''main'''),
  ('2 WITH UPDATE child, UPDATE parent',
   'WITH u AS (UPDATE %2$s SET n = n + 1 RETURNING k) UPDATE %1$s SET v = ''main'''),
  ('3 WITH UPDATE parent, DELETE child',
   'WITH u AS (UPDATE %1$s SET n = n + 1 RETURNING k) DELETE FROM %2$s'),
  ('4 WITH DELETE child, UPDATE parent',
   'WITH d AS (DELETE FROM %2$s RETURNING k) UPDATE %1$s SET n = n + 1');
-- run stmt on parent and child from a fresh fill: "rows | contents after"
CREATE FUNCTION m2_inh_run(parent text, child text, stmt text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE r text; c bigint;
BEGIN
  EXECUTE format('DELETE FROM %I', parent);
  EXECUTE format('INSERT INTO %I SELECT * FROM m2_rows WHERE k IN (''a'', ''b'')', child);
  IF parent LIKE '%part' THEN
    EXECUTE format('INSERT INTO %I SELECT * FROM m2_rows WHERE k IN (''c'', ''d'')', parent);
  END IF;
  EXECUTE format(stmt, parent, child);
  GET DIAGNOSTICS c = ROW_COUNT;
  RETURN c || ' | ' || coalesce(m2_rows_of(parent, 'k'), '(empty)');
END $$;
SELECT s.name, i.parent, m2_inh_run(i.parent, i.child, s.stmt) AS "rows | after"
FROM m2_inh_stmts s, m2_inh i
ORDER BY s.name, i.parent LIKE '%part', i.parent NOT LIKE 'm2_n%';
DELETE FROM m2_child; DELETE FROM m2_part_ab;
DROP TABLE m2_parent, m2_nparent, m2_part, m2_npart CASCADE;
