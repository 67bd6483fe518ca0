--
-- The content hash of a training set (datasets.content_hash) detects any
-- change of its rows, and is the same for the same rows whatever the session.
-- Differential: each changed table is compared with its unchanged twin.
--
\getenv redis_port REDIS_PORT
\set VERBOSITY terse
\set SHOW_CONTEXT never
SET client_min_messages = warning;
CREATE FUNCTION dh(rel regclass) RETURNS text LANGUAGE sql AS
	$$ SELECT pgpoly._dataset_content_hash(rel) $$;

-- Two rows exchanging their labels are a different training set: the row hash
-- combines the columns linearly, so a plain sum of row hashes only sees each
-- column's multiset of values.  Both methods (hash functions; text forms).
CREATE TABLE dh_a (user_id text, label int);
INSERT INTO dh_a VALUES ('u1', 0), ('u2', 1);
CREATE TABLE dh_a_swapped (user_id text, label int);
INSERT INTO dh_a_swapped VALUES ('u1', 1), ('u2', 0);
CREATE TABLE dh_a_cross (user_id text, label int, score float8);	-- u1 and u2 exchange both
CREATE TABLE dh_a_cross2 (user_id text, label int, score float8);
INSERT INTO dh_a_cross VALUES ('u1', 0, 0.25), ('u2', 1, 0.75), ('u3', 1, 0.5);
INSERT INTO dh_a_cross2 VALUES ('u1', 1, 0.75), ('u2', 0, 0.25), ('u3', 1, 0.5);
CREATE TABLE dh_j AS SELECT *, '{"k": 1}'::json AS j FROM dh_a;
CREATE TABLE dh_j_swapped AS SELECT *, '{"k": 1}'::json AS j FROM dh_a_swapped;
SELECT split_part(dh('dh_a'), ':', 1) AS method,
	   dh('dh_a') <> dh('dh_a_swapped') AS swapped_labels_differ,
	   dh('dh_a_cross') <> dh('dh_a_cross2') AS swapped_pairs_differ,
	   split_part(dh('dh_j'), ':', 1) AS method_json,
	   dh('dh_j') <> dh('dh_j_swapped') AS swapped_labels_differ_json;
-- and what held: row order, duplicates, a value, a column name, NULL vs ''
CREATE TABLE dh_a_reordered AS SELECT * FROM dh_a ORDER BY user_id DESC;
CREATE TABLE dh_n1 (a text, b text);
CREATE TABLE dh_n2 (a text, b text);
CREATE TABLE dh_n3 (a text, b text);
INSERT INTO dh_n1 VALUES ('x', NULL);
INSERT INTO dh_n2 VALUES ('x', '');
INSERT INTO dh_n3 VALUES ('x', 'NULL');
CREATE TABLE dh_c1 (a text, b text);
CREATE TABLE dh_c2 (a text, b text);
INSERT INTO dh_c1 VALUES ('ab', 'c');
INSERT INTO dh_c2 VALUES ('a', 'bc');
CREATE TABLE dh_arr1 (a text[]);
CREATE TABLE dh_arr2 (a text[]);
INSERT INTO dh_arr1 VALUES ('{a,b}');
INSERT INTO dh_arr2 VALUES ('{"a,b"}');
SELECT dh('dh_a') = dh('dh_a_reordered') AS order_free,
	   dh('dh_n1') <> dh('dh_n2') AND dh('dh_n2') <> dh('dh_n3') AND dh('dh_n1') <> dh('dh_n3')
		   AS null_empty_null_text_differ,
	   dh('dh_c1') <> dh('dh_c2') AS concatenation_differs,
	   dh('dh_arr1') <> dh('dh_arr2') AS arrays_differ;

-- A column named t (the table's alias in the hash's query) hashed the whole
-- row, not that column alone.
CREATE TABLE dh_t1 (t int, label int);
CREATE TABLE dh_t2 (t int, label int);
INSERT INTO dh_t1 VALUES (1, 0), (2, 1);
INSERT INTO dh_t2 VALUES (1, 5), (2, 7);
CREATE TABLE dh_tj1 (t text, j json);
CREATE TABLE dh_tj2 (t text, j json);
INSERT INTO dh_tj1 VALUES ('x', '{"a": 1}');
INSERT INTO dh_tj2 VALUES ('x', '{"a": 2}');
SELECT split_part(dh('dh_t1'), ':', 1) AS method,
	   dh('dh_t1') <> dh('dh_t2') AS column_t_other_values_differ,
	   dh('dh_tj1') <> dh('dh_tj2') AS column_t_json_differs;

-- Text compares byte-wise: a nondeterministic collation does not make 'yes'
-- and 'YES' alike, and the same text hashes alike in every collation.
CREATE COLLATION dh_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE DOMAIN dh_ci_text AS text COLLATE dh_ci;
CREATE TABLE dh_ci1 (u text COLLATE dh_ci, label dh_ci_text, tags text[] COLLATE dh_ci);
CREATE TABLE dh_ci2 (u text COLLATE dh_ci, label dh_ci_text, tags text[] COLLATE dh_ci);
CREATE TABLE dh_ci3 (u text COLLATE dh_ci, label dh_ci_text, tags text[] COLLATE dh_ci);
CREATE TABLE dh_c (u text COLLATE "C", label dh_ci_text, tags text[]);
INSERT INTO dh_ci1 VALUES ('u1', 'yes', '{a}');
INSERT INTO dh_ci2 VALUES ('u1', 'YES', '{a}');
INSERT INTO dh_ci3 VALUES ('u1', 'yes', '{A}');
INSERT INTO dh_c VALUES ('u1', 'yes', '{a}');
SELECT dh('dh_ci1') <> dh('dh_ci2') AS case_change_differs,
	   dh('dh_ci1') <> dh('dh_ci3') AS case_change_in_array_differs,
	   dh('dh_ci1') = dh('dh_c') AS same_text_other_collation_same_hash;

-- Values a type's equality holds equal but that differ: a citext's case, a
-- case-insensitive text inside a composite, an array's shape or lower bound,
-- numeric's scale, an interval's months and days; and what stays equal.
CREATE EXTENSION citext;
CREATE TYPE dh_pair AS (k text COLLATE dh_ci, v int);
CREATE TABLE dh_v1 (u text, l citext, p dh_pair, e float8[], n numeric, d interval, ls citext[]);
CREATE TABLE dh_v2 (LIKE dh_v1);
CREATE TABLE dh_v3 (LIKE dh_v1);
CREATE TABLE dh_v4 (LIKE dh_v1);
CREATE TABLE dh_v5 (LIKE dh_v1);
CREATE TABLE dh_v6 (LIKE dh_v1);
CREATE TABLE dh_v7 (LIKE dh_v1);
CREATE TABLE dh_v8 (LIKE dh_v1);
CREATE TABLE dh_v9 (LIKE dh_v1);
INSERT INTO dh_v1 VALUES ('u1', 'Yes', ROW('yes', 1), '{1,2,3,4}', 1.0, '1 mon', '{a}');
INSERT INTO dh_v2 VALUES ('u1', 'yes', ROW('yes', 1), '{1,2,3,4}', 1.0, '1 mon', '{a}');
INSERT INTO dh_v3 VALUES ('u1', 'Yes', ROW('YES', 1), '{1,2,3,4}', 1.0, '1 mon', '{a}');
INSERT INTO dh_v4 VALUES ('u1', 'Yes', ROW('yes', 1), '{{1,2},{3,4}}', 1.0, '1 mon', '{a}');
INSERT INTO dh_v5 VALUES ('u1', 'Yes', ROW('yes', 1), '[0:3]={1,2,3,4}', 1.0, '1 mon', '{a}');
INSERT INTO dh_v6 VALUES ('u1', 'Yes', ROW('yes', 1), '{1,2,3,4}', 1.00, '1 mon', '{a}');
INSERT INTO dh_v7 VALUES ('u1', 'Yes', ROW('yes', 1), '{1,2,3,4}', 1.0, '30 days', '{a}');
INSERT INTO dh_v8 VALUES ('u1', 'Yes', ROW('yes', 1), '{1,2,3,4}', 1.0, '1 mon', '{A}');
INSERT INTO dh_v9 SELECT * FROM dh_v1;
SELECT dh('dh_v1') <> dh('dh_v2') AS citext_case_differs,
	   dh('dh_v1') <> dh('dh_v3') AS composite_case_differs,
	   dh('dh_v1') <> dh('dh_v4') AS array_shape_differs,
	   dh('dh_v1') <> dh('dh_v5') AS array_lower_bound_differs,
	   dh('dh_v1') <> dh('dh_v6') AS numeric_scale_differs,
	   dh('dh_v1') <> dh('dh_v7') AS interval_month_differs,
	   dh('dh_v1') <> dh('dh_v8') AS citext_array_case_differs,
	   dh('dh_v1') = dh('dh_v9') AS same_rows_same_hash,
	   split_part(dh('dh_v1'), ':', 1) AS method;
DROP TABLE dh_v1, dh_v2, dh_v3, dh_v4, dh_v5, dh_v6, dh_v7, dh_v8, dh_v9;
DROP TYPE dh_pair;
DROP EXTENSION citext;

-- An enum hashes through its labels: the same rows give the same hash after
-- the type is made again (its labels then have other OIDs).
CREATE TYPE dh_mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN dh_mood_d AS dh_mood;
CREATE TABLE dh_e (u text, m dh_mood, ms dh_mood[], md dh_mood_d);
INSERT INTO dh_e VALUES ('u1', 'ok', '{sad,happy}', 'happy'), ('u2', NULL, '{}', 'sad');
SELECT dh('dh_e') AS h_enum \gset
DROP TABLE dh_e;
DROP DOMAIN dh_mood_d;
DROP TYPE dh_mood;
CREATE TYPE dh_other AS ENUM ('a', 'b', 'c', 'd', 'e');
CREATE TYPE dh_mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN dh_mood_d AS dh_mood;
CREATE TABLE dh_e (u text, m dh_mood, ms dh_mood[], md dh_mood_d);
INSERT INTO dh_e VALUES ('u2', NULL, '{}', 'sad'), ('u1', 'ok', '{sad,happy}', 'happy');
CREATE TABLE dh_e2 (u text, m dh_mood, ms dh_mood[], md dh_mood_d);
INSERT INTO dh_e2 VALUES ('u2', NULL, '{}', 'sad'), ('u1', 'happy', '{sad,happy}', 'happy');
SELECT dh('dh_e') = :'h_enum' AS same_enum_rows_same_hash,
	   dh('dh_e') <> dh('dh_e2') AS enum_change_differs;

-- The same hash under every setting an output or input function reads, a
-- hostile schema first in search_path, and another role.
CREATE TABLE dh_s (id int, ts timestamptz, d date, t time, iv interval, f float8, r real,
				   n numeric, b bytea, s text, arr float8[], jb jsonb);
INSERT INTO dh_s VALUES
	(1, '2024-03-01 12:34:56.789+05:30', '2024-02-29', '23:59:59.999999', '1 mon 2 days 03:04:05',
	 0.1, 1.5e-40, 123456789.000000000000000000000001, '\x00ff5c', 'a\b', '{-0,NaN,1e-310,Infinity}',
	 '{"a": [1, 2.50]}'),
	(2, 'infinity', '-infinity', NULL, '-178000000 years', '-0', 'NaN', 'NaN', '', '', '{}', 'null');
CREATE TABLE dh_sm AS SELECT *, 12.34::money AS m, '{"x": 1}'::json AS j FROM dh_s;
SELECT dh('dh_s') AS h_s, dh('dh_sm') AS h_sm \gset
CREATE SCHEMA dh_hostile;
CREATE FUNCTION dh_hostile.md5(text) RETURNS text LANGUAGE sql AS $$ SELECT 'same' $$;
CREATE FUNCTION dh_hostile.sha256(bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT '\x00'::bytea $$;
CREATE FUNCTION dh_hostile.hash_record_extended(record, bigint) RETURNS bigint
	LANGUAGE plpgsql AS $$ BEGIN RETURN 0; END $$;
CREATE FUNCTION dh_hostile.hashint8extended(bigint, bigint) RETURNS bigint
	LANGUAGE sql AS $$ SELECT 0::bigint $$;
CREATE FUNCTION dh_hostile.string_agg(text, text) RETURNS text LANGUAGE sql AS $$ SELECT 'same' $$;
CREATE FUNCTION dh_hostile.concat_ws(text, VARIADIC "any") RETURNS text
	LANGUAGE internal IMMUTABLE AS 'text_concat_ws';
CREATE FUNCTION dh_hostile.text_eq(text, text) RETURNS bool LANGUAGE sql AS $$ SELECT true $$;
CREATE OPERATOR dh_hostile.= (LEFTARG = text, RIGHTARG = text, FUNCTION = dh_hostile.text_eq);
CREATE FUNCTION dh_hostile.dh_both() RETURNS bool LANGUAGE sql AS
	$$ SELECT pgpoly._dataset_content_hash('public.dh_s') = current_setting('dh.h_s')
			  AND pgpoly._dataset_content_hash('public.dh_sm') = current_setting('dh.h_sm') $$;
SELECT set_config('dh.h_s', :'h_s', false), set_config('dh.h_sm', :'h_sm', false) \gset
BEGIN;
SET LOCAL datestyle = 'SQL, DMY';
SET LOCAL intervalstyle = 'sql_standard';
SET LOCAL timezone = 'Pacific/Chatham';
SET LOCAL extra_float_digits = -15;
SET LOCAL bytea_output = 'escape';
SET LOCAL lc_monetary = 'de_DE.UTF-8';
SET LOCAL lc_numeric = 'de_DE.UTF-8';
SET LOCAL standard_conforming_strings = off;
SET LOCAL default_text_search_config = 'pg_catalog.german';
SET LOCAL search_path = dh_hostile, public;
SELECT dh_hostile.dh_both() AS same_hash_other_settings;
ROLLBACK;
BEGIN;
SET LOCAL datestyle = 'German';
SET LOCAL intervalstyle = 'iso_8601';
SET LOCAL timezone = 'America/St_Johns';
SET LOCAL extra_float_digits = 3;
SET LOCAL search_path = dh_hostile, public;
SELECT dh_hostile.dh_both() AS same_hash_more_settings;
ROLLBACK;
CREATE ROLE regress_dh_user NOLOGIN;
GRANT USAGE ON SCHEMA pgpoly, dh_hostile TO regress_dh_user;
GRANT SELECT ON dh_s, dh_sm TO regress_dh_user;
BEGIN;
SET LOCAL ROLE regress_dh_user;
SET LOCAL datestyle = 'Postgres, MDY';
SET LOCAL search_path = dh_hostile, public;
SELECT dh_hostile.dh_both() AS same_hash_other_role;
ROLLBACK;

-- End to end: create_training_set records the hash; two training sets whose
-- labels are exchanged between entities differ, the same one made again and
-- made from a session with other settings is equal.
CREATE SERVER dh_srv FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER dh_srv;
CREATE FOREIGN TABLE dh_users (user_id text OPTIONS (key 'true'), clicks int, ctr float8)
  SERVER dh_srv OPTIONS (key_prefix 'regress_dh:user:');
SELECT pgpoly.create_feature_view('dh_users', 'user_id', 'dh_users');
SELECT pgpoly.put_features('dh_users', u, jsonb_build_object('clicks', c, 'ctr', c / 10.0),
						   '2024-01-01 00:00:00+00')
FROM (VALUES ('u1', 3), ('u2', 4)) v(u, c);
CREATE TABLE dh_labels (user_id text, event_time timestamptz, churned bool);
INSERT INTO dh_labels VALUES ('u1', '2024-02-01 00:00:00+00', true), ('u2', '2024-02-01 00:00:00+00', false);
SELECT pgpoly.create_training_set('dh_train1', 'SELECT user_id, event_time, churned FROM dh_labels',
								  '{dh_users:*}') AS rows;
SELECT pgpoly.create_training_set('dh_train2',
	'SELECT user_id, event_time, NOT churned AS churned FROM dh_labels', '{dh_users:*}') AS rows;
BEGIN;
SET LOCAL datestyle = 'SQL, DMY';
SET LOCAL timezone = 'Asia/Kolkata';
SET LOCAL extra_float_digits = -15;
SELECT pgpoly.create_training_set('dh_train3',
	'SELECT user_id, event_time, churned FROM dh_labels ORDER BY user_id DESC', '{dh_users:*}') AS rows;
COMMIT;
SELECT d1.content_hash <> d2.content_hash AS swapped_labels_differ,
	   d1.content_hash = d3.content_hash AS same_rows_same_hash,
	   d1.content_hash = dh('dh_train1') AS recorded_is_current,
	   split_part(d1.content_hash, ':', 1) AS method
FROM pgpoly.datasets d1, pgpoly.datasets d2, pgpoly.datasets d3
WHERE d1.name = 'dh_train1' AND d2.name = 'dh_train2' AND d3.name = 'dh_train3';

-- clean up Redis
CREATE FOREIGN TABLE dh_raw (key text, clicks text)
  SERVER dh_srv OPTIONS (key_prefix 'regress_dh:', write_mode 'immediate');
DELETE FROM dh_raw;
-- and what this test registered
SELECT pgpoly.drop_feature_view('dh_users', drop_tables => true);
DELETE FROM pgpoly.lineage_edges WHERE dst_name LIKE 'dh\_%' OR src_name LIKE 'dh\_%'
  OR src_name LIKE 'pgpoly.dh\_%';
DELETE FROM pgpoly.datasets WHERE name LIKE 'dh\_%' OR name LIKE 'pgpoly.dh\_%';
DROP OWNED BY regress_dh_user;
DROP ROLE regress_dh_user;
RESET client_min_messages;
