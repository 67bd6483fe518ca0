-- Tables of one server and user mapping over the same Redis hashes with
-- different columns see each other's buffered writes: what a read shows in
-- the transaction is what Redis holds after COMMIT, read through a table on
-- a second server object (no sharing).
\getenv redis_port REDIS_PORT
CREATE SERVER ovs FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER ovs;
CREATE SERVER ovs2 FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE USER MAPPING FOR CURRENT_USER SERVER ovs2;
CREATE FOREIGN TABLE ovs_ab (k text OPTIONS (key 'true'), a int, b int)
  SERVER ovs OPTIONS (key_prefix 'regress_ovs:');
CREATE FOREIGN TABLE ovs_a (k text OPTIONS (key 'true'), a int)
  SERVER ovs OPTIONS (key_prefix 'regress_ovs:');
CREATE FOREIGN TABLE ovs_wide (k text OPTIONS (key 'true'), a int, b int)
  SERVER ovs OPTIONS (key_prefix 'regress_');
CREATE FOREIGN TABLE ovs_raw (k text OPTIONS (key 'true'), a int, b int)
  SERVER ovs2 OPTIONS (key_prefix 'regress_ovs:');
DELETE FROM ovs_raw;
INSERT INTO ovs_raw VALUES ('k1', 1, 10), ('k2', 2, 20);

-- INSERT through the narrow table: HSET a, which keeps b
BEGIN;
INSERT INTO ovs_a VALUES ('k1', 100);
SELECT * FROM ovs_ab ORDER BY k;
SELECT * FROM ovs_ab WHERE k = 'k1';
SELECT * FROM ovs_wide WHERE k LIKE 'ovs:%' ORDER BY k;
COMMIT;
SELECT * FROM ovs_raw ORDER BY k;

-- UPDATE moving a key through the narrow table: RENAME, which moves b too
-- (a read of b there is refused: its value is under the old key)
BEGIN;
UPDATE ovs_a SET k = 'k3' WHERE k = 'k2';
SELECT * FROM ovs_ab ORDER BY k;
ROLLBACK;
BEGIN;
UPDATE ovs_a SET k = 'k3' WHERE k = 'k2';
SELECT * FROM ovs_ab WHERE k = 'k3';
ROLLBACK;
-- (not once a DELETE replaced it)
BEGIN;
UPDATE ovs_a SET k = 'k3' WHERE k = 'k2';
DELETE FROM ovs_a WHERE k = 'k3';
SELECT * FROM ovs_ab ORDER BY k;
INSERT INTO ovs_ab VALUES ('k3', 3, 30);
SELECT * FROM ovs_ab ORDER BY k;
ROLLBACK;
BEGIN;
UPDATE ovs_a SET k = 'k3' WHERE k = 'k2';
SELECT * FROM ovs_a ORDER BY k;
COMMIT;
SELECT * FROM ovs_raw ORDER BY k;

-- prefix 'regress_' sees 'regress_ovs:' writes, and back
BEGIN;
UPDATE ovs_wide SET b = 7 WHERE k = 'ovs:k1';
DELETE FROM ovs_ab WHERE k = 'k3';
SELECT * FROM ovs_wide WHERE k LIKE 'ovs:%' ORDER BY k;
SELECT * FROM ovs_ab ORDER BY k;
INSERT INTO ovs_wide VALUES ('ovs:k9', 9, 90), ('other', 1, 1);
SELECT * FROM ovs_ab ORDER BY k;
SELECT * FROM ovs_a ORDER BY k;
COMMIT;
SELECT * FROM ovs_raw ORDER BY k;
DELETE FROM ovs_raw;
DELETE FROM ovs_wide WHERE k = 'other';

-- _ttl: the writer's table sets its ttl_seconds (EXPIRE, SET ... EX), an
-- HSET keeps the key's TTL, a SET without EX clears it, whichever table reads
-- (sign: 1 expires, -1 none)
CREATE FOREIGN TABLE ovs_abt (k text OPTIONS (key 'true'), a int, b int, _ttl int)
  SERVER ovs OPTIONS (key_prefix 'regress_ovs:');
CREATE FOREIGN TABLE ovs_x (k text OPTIONS (key 'true'), x int OPTIONS (field 'a'), _ttl int)
  SERVER ovs OPTIONS (key_prefix 'regress_ovs:', ttl_seconds '1000');
CREATE FOREIGN TABLE ovs_rawt (k text OPTIONS (key 'true'), a int, b int, _ttl int)
  SERVER ovs2 OPTIONS (key_prefix 'regress_ovs:');
CREATE FOREIGN TABLE ovs_s (k text OPTIONS (key 'true'), v text, _ttl int)
  SERVER ovs OPTIONS (key_prefix 'regress_ovss:', table_type 'string');
CREATE FOREIGN TABLE ovs_st (k text OPTIONS (key 'true'), v text, _ttl int)
  SERVER ovs OPTIONS (key_prefix 'regress_ovss:', table_type 'string', ttl_seconds '1000');
CREATE FOREIGN TABLE ovs_sraw (k text OPTIONS (key 'true'), v text, _ttl int)
  SERVER ovs2 OPTIONS (key_prefix 'regress_ovss:', table_type 'string');
INSERT INTO ovs_rawt VALUES ('k1', 1, 10), ('k2', 2, 20);
INSERT INTO ovs_st VALUES ('s1', 'x');
BEGIN;
UPDATE ovs_abt SET a = 5 WHERE k = 'k1';
UPDATE ovs_x SET x = 6 WHERE k = 'k2';
SELECT k, a, b, sign(_ttl) FROM ovs_abt ORDER BY k;
SELECT k, x, sign(_ttl) FROM ovs_x ORDER BY k;
INSERT INTO ovs_s VALUES ('s1', 'y');
SELECT k, v, sign(_ttl) FROM ovs_s;
SELECT k, v, sign(_ttl) FROM ovs_st;
COMMIT;
SELECT k, a, b, sign(_ttl) FROM ovs_rawt ORDER BY k;
SELECT k, v, sign(_ttl) FROM ovs_sraw;
DELETE FROM ovs_rawt;
DELETE FROM ovs_sraw;
