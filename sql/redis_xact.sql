-- pgpoly_redis: the transaction write buffer and write_mode 'immediate'.
\getenv redis_port REDIS_PORT
CREATE SERVER rx FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
-- The same Redis through another server object: another connection, which
-- overlays none of this session's buffered writes (those of rx's tables
-- over the same keys are: see features_overlay.sql).
CREATE SERVER rx_other FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE FOREIGN TABLE f (id text OPTIONS (key 'true'), v int)
  SERVER rx OPTIONS (key_prefix 'regress_xact:f:');
-- What Redis itself holds, read through an immediate-mode table.
CREATE FOREIGN TABLE raw (key text, value text) SERVER rx
  OPTIONS (table_type 'string', key_prefix 'regress_xact:', write_mode 'immediate');
CREATE FOREIGN TABLE rawh (key text, v text) SERVER rx_other
  OPTIONS (key_prefix 'regress_xact:f:', write_mode 'immediate');

-- Writes are sent at COMMIT, not before; the transaction reads its own.
BEGIN;
INSERT INTO f VALUES ('a', 1), ('b', 2);
SELECT * FROM f ORDER BY id;                 -- read-your-writes, full scan
SELECT * FROM f WHERE id = 'b';              -- and key lookup
SELECT count(*) FROM rawh;                   -- nothing sent yet
EXPLAIN (COSTS OFF) INSERT INTO f VALUES ('c', 3);
COMMIT;
SELECT * FROM rawh ORDER BY key;

-- ROLLBACK sends nothing.
BEGIN;
UPDATE f SET v = 100 WHERE id = 'a';
DELETE FROM f WHERE id = 'b';
INSERT INTO f VALUES ('c', 3);
SELECT * FROM f ORDER BY id;
ROLLBACK;
SELECT * FROM f ORDER BY id;

-- Savepoints: ROLLBACK TO discards only the writes after the savepoint.
BEGIN;
INSERT INTO f VALUES ('c', 3);
SAVEPOINT s1;
INSERT INTO f VALUES ('d', 4);
UPDATE f SET v = 10 WHERE id = 'a';
SELECT * FROM f ORDER BY id;
ROLLBACK TO SAVEPOINT s1;
SELECT * FROM f ORDER BY id;
SAVEPOINT s2;
DELETE FROM f WHERE id = 'b';
RELEASE SAVEPOINT s2;
COMMIT;
SELECT * FROM rawh ORDER BY key;

-- A failed statement inside a savepoint loses only its own writes.
BEGIN;
INSERT INTO f VALUES ('e', 5);
SAVEPOINT s;
INSERT INTO f VALUES ('g', 7), (NULL, 8);
ROLLBACK TO SAVEPOINT s;
COMMIT;
SELECT * FROM f ORDER BY id;

-- A key moved and then read in the same transaction.
BEGIN;
UPDATE f SET id = 'a2' WHERE id = 'a';
SELECT * FROM f ORDER BY id;
COMMIT;
SELECT * FROM rawh ORDER BY key;

-- PREPARE TRANSACTION with buffered writes is refused.
BEGIN;
INSERT INTO f VALUES ('p', 1);
PREPARE TRANSACTION 'regress_pgpoly';
SELECT * FROM f WHERE id = 'p';

-- A failure at COMMIT fails the COMMIT, and PostgreSQL rolls back too.
CREATE TABLE audit (note text);
INSERT INTO raw VALUES ('f:wrongtype', 'a string, not a hash');
BEGIN;
INSERT INTO audit VALUES ('must not survive');
INSERT INTO f VALUES ('wrongtype', 1);
COMMIT;
SELECT count(*) FROM audit;
DELETE FROM raw WHERE key = 'f:wrongtype';

-- write_mode 'immediate': sent while the statement runs, in batches.
CREATE FOREIGN TABLE fi (id text OPTIONS (key 'true'), v int) SERVER rx
  OPTIONS (key_prefix 'regress_xact:f:', write_mode 'immediate', batch_size '2');
EXPLAIN (COSTS OFF) INSERT INTO fi VALUES ('i', 1);
BEGIN;
INSERT INTO fi SELECT 'i' || n, n FROM generate_series(1, 5) n;
SELECT count(*) FROM rawh WHERE key LIKE 'i%';
ROLLBACK;
SELECT count(*) FROM rawh WHERE key LIKE 'i%';   -- immediate writes stay
DELETE FROM fi WHERE id LIKE 'i%';
-- Rows with two writes (a key move) across batch boundaries.
INSERT INTO fi SELECT 'm' || n, n FROM generate_series(1, 10) n;
UPDATE fi SET id = id || 'x' WHERE id LIKE 'm%';
SELECT count(*), min(v), max(v) FROM rawh WHERE key LIKE 'm%x';
SELECT count(*) FROM rawh WHERE key LIKE 'm%' AND key NOT LIKE '%x';
DELETE FROM fi WHERE id LIKE 'm%';

-- Writes to two tables on one server go in one MULTI/EXEC, in order.
BEGIN;
INSERT INTO f VALUES ('x', 1);
INSERT INTO raw VALUES ('other', 'o');
UPDATE f SET v = v + 1 WHERE id = 'x';
UPDATE f SET v = v + 1 WHERE id = 'x';
COMMIT;
SELECT * FROM f WHERE id = 'x';

-- A cursor keeps working across pgpoly.disconnect() (the next round reconnects)
-- and across an error that broke the connection inside a savepoint.
CREATE FOREIGN TABLE fc (id text OPTIONS (key 'true'), v int) SERVER rx
  OPTIONS (key_prefix 'regress_xact:c:', fetch_size '2');
INSERT INTO fc SELECT 'c' || n, n FROM generate_series(1, 7) n;
INSERT INTO raw VALUES ('c:x', 'a string among hashes');
BEGIN;
DECLARE cur CURSOR FOR SELECT v FROM fc WHERE id IN ('c1','c2','c3','c4','c5','c6','c7');
FETCH 1 FROM cur;
SELECT pgpoly.disconnect('rx');
FETCH 2 FROM cur;
SAVEPOINT s;
SELECT * FROM fc WHERE id IN ('c1', 'x', 'c2');   -- WRONGTYPE in mid-pipeline
ROLLBACK TO SAVEPOINT s;
FETCH ALL FROM cur;
COMMIT;
DELETE FROM raw WHERE key = 'c:x';
DELETE FROM fc;

-- An UPDATE writes only the columns it sets: a reader in the transaction
-- sees them merged into what Redis holds (NULL removes the field).  A key
-- another client writes after the UPDATE read it fails the COMMIT with
-- 40001 (WATCH), and nothing of the transaction is written.  (An
-- immediate-mode table of the same server would overlay the buffered
-- UPDATE: its write to k is refused, 0A000, as COMMIT would undo it.)
CREATE FOREIGN TABLE m (id text OPTIONS (key 'true'), a int, b text, c text)
  SERVER rx OPTIONS (key_prefix 'regress_xact:m:');
CREATE FOREIGN TABLE m_other (id text OPTIONS (key 'true'), a int, b text, c text)
  SERVER rx_other OPTIONS (key_prefix 'regress_xact:m:', write_mode 'immediate');
CREATE FOREIGN TABLE m_same (id text OPTIONS (key 'true'), a int, b text, c text)
  SERVER rx OPTIONS (key_prefix 'regress_xact:m:', write_mode 'immediate');
INSERT INTO m VALUES ('k', 1, 'b1', 'c1'), ('j', 2, 'b2', 'c2');
BEGIN;
UPDATE m SET a = a + 10, c = NULL WHERE id = 'k';
UPDATE m_other SET b = 'from another client' WHERE id = 'k';   -- sent at once
SELECT * FROM m ORDER BY id;                 -- a and c ours, b Redis'
SELECT * FROM m WHERE id = 'k';
UPDATE m SET b = b || '!' WHERE id = 'k';    -- reads the merged row
SELECT * FROM m WHERE id = 'k';
COMMIT;                                      -- 40001: k changed
SELECT * FROM m_other ORDER BY id;           -- the other client's write only
BEGIN;
UPDATE m SET a = 5 WHERE id = 'j';
SELECT * FROM m_same ORDER BY id;            -- the buffered UPDATE seen
UPDATE m_same SET b = 'same server' WHERE id = 'k';   -- another key: sent
UPDATE m_same SET b = 'same server' WHERE id = 'j';   -- 0A000
ROLLBACK;
SELECT * FROM m_other ORDER BY id;
-- A key move takes the whole row along, merged updates before it included.
BEGIN;
UPDATE m SET a = 0 WHERE id = 'j';
UPDATE m SET id = 'j2', b = NULL WHERE id = 'j';
SELECT * FROM m ORDER BY id;
COMMIT;
SELECT * FROM m_other ORDER BY id;
DELETE FROM m;

-- A large transaction: its buffered writes span many memory chunks (values
-- of 1 kB, one of 3 MB), some dropped by a savepoint; the transaction reads
-- them back and COMMIT sends exactly the others, in one MULTI/EXEC.
-- (watch_limit 0: its UPDATE reads 4000 keys, more than one transaction
-- may WATCH by default)
CREATE FOREIGN TABLE big (id int OPTIONS (key 'true'), n int, pad text)
  SERVER rx OPTIONS (key_prefix 'regress_xact:big:', watch_limit '0');
BEGIN;
INSERT INTO big SELECT g, g, repeat(chr(65 + g % 26), 1000) FROM generate_series(1, 3000) g;
SAVEPOINT s;
INSERT INTO big SELECT g, -g, 'dropped' FROM generate_series(2001, 4000) g;
DELETE FROM big WHERE id <= 10;
ROLLBACK TO SAVEPOINT s;
INSERT INTO big VALUES (0, 0, repeat('z', 3 * 1024 * 1024));
UPDATE big SET n = n * 2 WHERE id > 2990;
SELECT count(*), sum(n), sum(length(pad)), count(DISTINCT md5(pad)) FROM big;
COMMIT;
SELECT count(*), sum(n), sum(length(pad)), count(DISTINCT md5(pad)) FROM big;
SELECT n, length(pad), pad = repeat(chr(65 + 1234 % 26), 1000) AS same FROM big WHERE id = 1234;
DELETE FROM big;
SELECT count(*) FROM big;

DELETE FROM f;
DELETE FROM raw;
SELECT count(*) FROM raw;
DROP TABLE audit;
DROP SERVER rx CASCADE;
DROP SERVER rx_other CASCADE;
