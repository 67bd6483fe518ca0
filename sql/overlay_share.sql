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
