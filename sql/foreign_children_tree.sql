--
-- UPDATE and DELETE through a multi-level partition tree mixing stores:
-- Redis partitions (hash and json, immediate and transactional) under a
-- native sub-partition, an Elasticsearch partition and, under another
-- native sub-partition, an Elasticsearch partition beside a Redis default
-- partition, a Redis default partition of the root; every level has its own
-- column order, some a dropped column, and two foreign partitions BEFORE ROW
-- UPDATE triggers (their old rows are wholerow junk of their own row type).
-- Rows move from a native partition into foreign ones.  Each statement runs
-- on an all-native copy of the tree too, and both answer alike.
--
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
\! redis-cli -p $REDIS_PORT --scan --pattern 'regress_fctr*' | xargs -r redis-cli -p $REDIS_PORT del > /dev/null
CREATE SERVER fctr_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER fctr_redis;
CREATE SERVER fctr_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('fctr_es', 'DELETE', '/regress_fctr*') IS NOT NULL AS cleaned;

-- the tree, named p, of foreign tables where it can be, or all native
CREATE FUNCTION fctr_make(p text, foreign_ bool) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  x text;
  f text := CASE WHEN foreign_ THEN 'FOREIGN ' ELSE '' END;
  srv jsonb := CASE WHEN foreign_ THEN jsonb_build_object(
    'ar', ' SERVER fctr_redis OPTIONS (key_prefix ''regress_fctr_ar:'', table_type ''json'', write_mode ''immediate'')',
    'b', ' SERVER fctr_redis OPTIONS (key_prefix ''regress_fctr_b:'')',
    'e', ' SERVER fctr_es OPTIONS (index ''regress_fctr_e'', refresh ''true'')',
    'se', ' SERVER fctr_es OPTIONS (index ''regress_fctr_se'', refresh ''true'', write_mode ''immediate'')',
    'sd', ' SERVER fctr_redis OPTIONS (key_prefix ''regress_fctr_sd:'', write_mode ''immediate'')',
    'd', ' SERVER fctr_redis OPTIONS (key_prefix ''regress_fctr_d:'', write_mode ''immediate'')')
    ELSE '{"ar": "", "b": "", "e": "", "se": "", "sd": "", "d": ""}' END;
BEGIN
  EXECUTE format('CREATE TABLE %1$s (k text, v int, w text, _id text) PARTITION BY LIST (left(k, 1))', p);
  EXECUTE format('CREATE TABLE %1$s_a (w text, gone int, _id text, v int, k text) PARTITION BY LIST (k)', p);
  EXECUTE format('ALTER TABLE %1$s_a DROP COLUMN gone', p);
  EXECUTE format('ALTER TABLE %1$s ATTACH PARTITION %1$s_a FOR VALUES IN (''a'')', p);
  EXECUTE format('CREATE TABLE %1$s_a_n PARTITION OF %1$s_a FOR VALUES IN (''a1'', ''a2'')', p);
  EXECUTE format('CREATE %2$sTABLE %1$s_a_r (g2 int, v int, k text, _id text, w text)%3$s', p, f, srv->>'ar');
  EXECUTE format('ALTER %2$sTABLE %1$s_a_r DROP COLUMN g2', p, f);
  EXECUTE format('ALTER TABLE %1$s_a ATTACH PARTITION %1$s_a_r FOR VALUES IN (''a3'', ''a4'', ''a5'', ''a6'')', p);
  EXECUTE format('CREATE %2$sTABLE %1$s_b PARTITION OF %1$s FOR VALUES IN (''b'')%3$s', p, f, srv->>'b');
  EXECUTE format('CREATE %2$sTABLE %1$s_e (g3 int, v int, _id text, w text, k text)%3$s', p, f, srv->>'e');
  EXECUTE format('ALTER %2$sTABLE %1$s_e DROP COLUMN g3', p, f);
  EXECUTE format('ALTER TABLE %1$s ATTACH PARTITION %1$s_e FOR VALUES IN (''e'')', p);
  EXECUTE format('CREATE TABLE %1$s_s (k text, v int, w text, _id text) PARTITION BY LIST (k)', p);
  EXECUTE format('ALTER TABLE %1$s ATTACH PARTITION %1$s_s FOR VALUES IN (''s'')', p);
  EXECUTE format('CREATE %2$sTABLE %1$s_s_e (_id text, w text, k text, v int)%3$s', p, f, srv->>'se');
  EXECUTE format('ALTER TABLE %1$s_s ATTACH PARTITION %1$s_s_e FOR VALUES IN (''s1'', ''s2'', ''s3'', ''s4'')', p);
  EXECUTE format('CREATE %2$sTABLE %1$s_s_d PARTITION OF %1$s_s DEFAULT%3$s', p, f, srv->>'sd');
  EXECUTE format('CREATE %2$sTABLE %1$s_d PARTITION OF %1$s DEFAULT%3$s', p, f, srv->>'d');
  EXECUTE format('CREATE TRIGGER tr BEFORE UPDATE ON %1$s_e FOR EACH ROW EXECUTE FUNCTION fctr_mark()', p);
  EXECUTE format('CREATE TRIGGER tr BEFORE UPDATE ON %1$s_a_r FOR EACH ROW EXECUTE FUNCTION fctr_mark()', p);
  IF foreign_ THEN
    FOREACH x IN ARRAY '{a_r,b,s_d,d}'::text[] LOOP
      EXECUTE format('ALTER FOREIGN TABLE %1$s_%2$s ALTER COLUMN k OPTIONS (ADD key ''true'')', p, x);
    END LOOP;
  END IF;
END $$;
CREATE FUNCTION fctr_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.w := coalesce(NEW.w, '') || '+'; RETURN NEW; END $$;
SELECT fctr_make('fctr', true), fctr_make('fctrn', false);
-- the rows of each tree, by the partition's name past its tree's prefix
CREATE FUNCTION fctr_diff() RETURNS text LANGUAGE sql AS $$
  WITH f AS (SELECT substr(tableoid::regclass::text, 5) || ':' || k || '=' || v || '/' || coalesce(w, '-') || '/' || coalesce(_id, '-') AS r FROM fctr),
       n AS (SELECT substr(tableoid::regclass::text, 6) || ':' || k || '=' || v || '/' || coalesce(w, '-') || '/' || coalesce(_id, '-') AS r FROM fctrn)
  SELECT coalesce(string_agg(d, ' ' ORDER BY d), 'same')
  FROM ((SELECT '+' || r AS d FROM f EXCEPT ALL SELECT '+' || r FROM n)
        UNION ALL (SELECT '-' || r FROM n EXCEPT ALL SELECT '-' || r FROM f)) x $$;

INSERT INTO fctr VALUES ('a1', 1, 'x', NULL), ('a2', 2, 'y', NULL), ('a3', 3, 'z', NULL), ('b1', 4, 'q', NULL),
  ('e1', 5, 'r', 'e1'), ('z1', 6, 's', NULL), ('s1', 7, 't', 's1'), ('s7', 8, 'u', NULL), ('e2', 9, 'v', 'e2');
INSERT INTO fctrn SELECT * FROM fctr;
SELECT fctr_diff() AS rows;
UPDATE fctr SET v = v + 10, w = w || '!';
UPDATE fctrn SET v = v + 10, w = w || '!';
SELECT fctr_diff() AS rows;
-- a1 moves into the Redis partition under the native sub-partition, a2
-- into the Elasticsearch one under the other
WITH x AS (UPDATE fctr SET v = v + 1, k = CASE k WHEN 'a1' THEN 'a4' WHEN 'a2' THEN 's2' ELSE k END,
                          _id = CASE k WHEN 'a2' THEN 's2' ELSE _id END
           RETURNING substr(tableoid::regclass::text, 5) AS part, *)
SELECT * FROM x ORDER BY k;
WITH x AS (UPDATE fctrn SET v = v + 1, k = CASE k WHEN 'a1' THEN 'a4' WHEN 'a2' THEN 's2' ELSE k END,
                           _id = CASE k WHEN 'a2' THEN 's2' ELSE _id END
           RETURNING substr(tableoid::regclass::text, 6) AS part, *)
SELECT * FROM x ORDER BY k;
SELECT fctr_diff() AS rows;
BEGIN;
UPDATE fctr SET v = v + 1, w = NULL WHERE v % 2 = 0;
UPDATE fctrn SET v = v + 1, w = NULL WHERE v % 2 = 0;
SELECT fctr_diff() AS rows;
COMMIT;
SELECT fctr_diff() AS rows;
WITH x AS (DELETE FROM fctr WHERE v > 14 RETURNING substr(tableoid::regclass::text, 5) AS part, *) SELECT * FROM x ORDER BY k;
WITH x AS (DELETE FROM fctrn WHERE v > 14 RETURNING substr(tableoid::regclass::text, 6) AS part, *) SELECT * FROM x ORDER BY k;
SELECT fctr_diff() AS rows;
WITH x AS (DELETE FROM fctr RETURNING fctr) SELECT * FROM x ORDER BY 1;
WITH x AS (DELETE FROM fctrn RETURNING fctrn) SELECT * FROM x ORDER BY 1;
SELECT fctr_diff() AS rows;

DROP TABLE fctr, fctrn;
DROP FUNCTION fctr_make(text, bool), fctr_mark(), fctr_diff();
SELECT pgpoly.elastic_request('fctr_es', 'DELETE', '/regress_fctr*') IS NOT NULL AS cleaned;
DROP SERVER fctr_redis, fctr_es CASCADE;
\! redis-cli -p $REDIS_PORT --scan --pattern 'regress_fctr*' | xargs -r redis-cli -p $REDIS_PORT del > /dev/null
