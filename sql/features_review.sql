--
-- The feature store's serving fast path and materialize under attack
-- (review of src/features.c): answers against the PL/pgSQL implementation
-- and native queries, keys that do not fit, privileges and row security
-- with a probe statement kept across roles.  Redis keys regress_fr* are
-- created and removed here.
--
\getenv redis_port REDIS_PORT
\set VERBOSITY terse
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_fr*' | xargs -r redis-cli -p "$REDIS_PORT" del > /dev/null
SET timezone = 'UTC';
CREATE SERVER frs FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR PUBLIC SERVER frs OPTIONS (password_required 'false');

--
-- Every type the fast path converts itself, edge values, in a TimeZone
-- with a half-hour offset: the same jsonb as the PL/pgSQL implementation,
-- served from offline (written back) and then from Redis.
--
CREATE TABLE fr_off (entity text NOT NULL, event_time timestamptz NOT NULL,
                     created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                     i2 int2, i8 int8, f4 float4, f8 float8, n numeric, b bool, t text,
                     vc varchar(5), bc char(4), d date, ts timestamp, tz timestamptz, j jsonb);
CREATE INDEX ON fr_off (entity, event_time DESC, created_at DESC);
CREATE FOREIGN TABLE fr_online (id text OPTIONS (key 'true'), i2 int2, i8 int8, f4 float4,
                                f8 float8, n numeric, b bool, t text, vc varchar(5), bc char(4),
                                d date, ts timestamp, tz timestamptz, j jsonb)
  SERVER frs OPTIONS (key_prefix 'regress_fr:');
SELECT pgpoly.create_feature_view('fr', 'id', 'fr_online', 'fr_off', ttl => '1 day');
INSERT INTO fr_off (entity, event_time, i2, i8, f4, f8, n, b, t, vc, bc, d, ts, tz, j) VALUES
 ('a', now(), -32768, 9223372036854775807, 'NaN', 'Infinity', 'NaN', true,
  E'q"\\\u00e9\n\t\u0001', 'ab', 'x', 'infinity', '-infinity', 'infinity', '{"a":[1,2.50,null]}'),
 ('b', now(), 0, -1, '-0', '-Infinity', '1e-20', false, '', 'abcde', 'xy  ', '2024-02-29',
  '2024-01-01 10:00:00.123456', '2024-06-01 12:00:00.5+02', '"s"'),
 ('c', now(), 1, 2, 1.5e30, 1e308, '123456789012345678901234567890.000100', NULL, NULL, NULL,
  NULL, '0001-01-01 BC', '0001-01-01 00:00:00 BC', '1999-12-31 23:59:59.999999+14', 'null'),
 ('d', now(), NULL, NULL, 3.14159274, 0.1, '-0.0', true, 'x', NULL, '', '5874897-12-31',
  '294276-12-31 23:59:59', '294276-12-31 23:59:59+00', '[]');
SET timezone = 'America/St_Johns';
CREATE TEMP TABLE fr_pl (o_entity text, o_features jsonb, o_event_time timestamptz, o_source text);
BEGIN TRANSACTION READ ONLY;                  -- from offline, nothing written back
SELECT count(*) AS differences FROM (
  (SELECT * FROM pgpoly._get_online_features('fr', '{a,b,c,d}', NULL)
   EXCEPT SELECT entity, features, event_time, source FROM pgpoly.get_online_features('fr', '{a,b,c,d}'))
  UNION ALL
  (SELECT entity, features, event_time, source FROM pgpoly.get_online_features('fr', '{a,b,c,d}')
   EXCEPT SELECT * FROM pgpoly._get_online_features('fr', '{a,b,c,d}', NULL))) d;
COMMIT;
INSERT INTO fr_pl SELECT * FROM pgpoly._get_online_features('fr', '{a,b,c,d}', NULL);
SELECT entity, source FROM pgpoly.get_online_features('fr', '{a,b,c,d}');   -- written back
CREATE TEMP TABLE fr_c AS SELECT * FROM pgpoly.get_online_features('fr', '{a,b,c,d}');
SELECT entity, features, source FROM fr_c ORDER BY entity;
SELECT count(*) AS differences FROM (
  (SELECT o_entity, o_features::text, o_event_time FROM fr_pl
   EXCEPT SELECT entity, features::text, event_time FROM fr_c)
  UNION ALL
  (SELECT entity, features::text, event_time FROM fr_c
   EXCEPT SELECT o_entity, o_features::text, o_event_time FROM fr_pl)) d;
SET timezone = 'UTC';

--
-- A varchar(3) key: an entity longer than the key is never written online
-- (cut, it was the key of another entity), in either implementation of
-- get_online_features, in materialize and in put_features.
--
CREATE TABLE fr3_off (entity text NOT NULL, event_time timestamptz NOT NULL,
                      created_at timestamptz NOT NULL DEFAULT clock_timestamp(), n int);
CREATE INDEX ON fr3_off (entity, event_time DESC, created_at DESC);
CREATE FOREIGN TABLE fr3_online (id varchar(3) OPTIONS (key 'true'), n int)
  SERVER frs OPTIONS (key_prefix 'regress_fr3:');
SELECT pgpoly.create_feature_view('fr3', 'id', 'fr3_online', 'fr3_off', ttl => '1 day');
INSERT INTO fr3_off VALUES ('abc', now() - interval '1 hour', DEFAULT, 1),
                           ('abcdef', now(), DEFAULT, 666), ('abcxyz', now(), DEFAULT, 777);
SELECT entity, features, source FROM pgpoly.get_online_features('fr3', '{abc}');
SELECT entity, features, source FROM pgpoly.get_online_features('fr3', '{abcdef,abc}');
SELECT o_entity, o_features, o_source FROM pgpoly._get_online_features('fr3', '{abcxyz}', NULL);
SELECT id, n FROM pgpoly.fr3_serving ORDER BY id;
SELECT entity, features, source FROM pgpoly.get_online_features('fr3', '{abc}');
DELETE FROM pgpoly.fr3_serving;
SELECT pgpoly.materialize('fr3');
SELECT id, n FROM pgpoly.fr3_serving ORDER BY id;
SELECT pgpoly.put_features('fr3', 'abcdef', '{"n": 5}');
SELECT pgpoly.put_features('fr3', 'ab', '{"n": 2}');
SELECT id, n FROM pgpoly.fr3_serving ORDER BY id;
SELECT entity, n FROM fr3_off ORDER BY entity, n;

--
-- The probe statement kept per view serves every role with the role's own
-- privileges and row security: a superuser's call first, then a reader
-- whose policy hides entity b, then one without SELECT on the offline
-- table.
--
DELETE FROM pgpoly.fr_serving;
CREATE ROLE regress_fr_reader;
GRANT USAGE ON SCHEMA pgpoly TO regress_fr_reader;
GRANT SELECT ON pgpoly.feature_views, pgpoly._feature_view_storage TO regress_fr_reader;
GRANT SELECT ON fr_off, fr_online, pgpoly.fr_serving TO regress_fr_reader;
ALTER TABLE fr_off ENABLE ROW LEVEL SECURITY;
CREATE POLICY fr_hide_b ON fr_off FOR SELECT TO regress_fr_reader USING (entity <> 'b');
BEGIN TRANSACTION READ ONLY;
SELECT entity, source FROM pgpoly.get_online_features('fr', '{a,b}', '{i2}');
COMMIT;
SET ROLE regress_fr_reader;
SELECT entity, features, source FROM pgpoly.get_online_features('fr', '{a,b}', '{i2}');
SELECT o_entity, o_features, o_source FROM pgpoly._get_online_features('fr', '{a,b}', '{i2}');
RESET ROLE;
SELECT count(*) AS written_back FROM pgpoly.fr_serving;   -- the reader may not write
REVOKE SELECT ON fr_off FROM regress_fr_reader;
SET ROLE regress_fr_reader;
SELECT entity, source FROM pgpoly.get_online_features('fr', '{a,b}', '{i2}');
RESET ROLE;

-- Clean up.
DELETE FROM pgpoly.fr_serving;
DELETE FROM pgpoly.fr3_serving;
SELECT pgpoly.drop_feature_view('fr');
SELECT pgpoly.drop_feature_view('fr3');
DELETE FROM pgpoly.lineage_edges WHERE src_name IN ('public.fr_off', 'public.fr3_off');
DELETE FROM pgpoly.datasets WHERE name IN ('public.fr_off', 'public.fr3_off');
DROP TABLE fr_off, fr3_off;
DROP SERVER frs CASCADE;
REVOKE ALL ON pgpoly.feature_views, pgpoly._feature_view_storage FROM regress_fr_reader;
REVOKE ALL ON SCHEMA pgpoly FROM regress_fr_reader;
DROP ROLE regress_fr_reader;
\! redis-cli -p "$REDIS_PORT" --scan --pattern 'regress_fr*' | xargs -r redis-cli -p "$REDIS_PORT" del > /dev/null
