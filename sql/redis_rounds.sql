-- Rounds sent ahead, key-only reads and the columns a query reads.
--
-- A Redis scan sends its next round as soon as it has read one, and reads
-- its replies when it needs them; any other request on the connection in
-- between (another scan of the query, a correlated subquery, another
-- statement while a cursor is open) first reads them for it.  The rows
-- must come out as if every round were read at once, whatever comes in
-- between: a subquery per row, another statement, an error rolled back to
-- a savepoint, the connection closed, the cursor closed early.
--
-- A query that reads no value (count(*), the key alone) fetches none: a
-- full scan returns the keys SCAN returns, a key lookup asks TYPE; inside
-- a transaction with buffered writes the values are fetched (the overlay
-- needs them).  Columns the query does not read are not converted.
\getenv redis_port REDIS_PORT
\set VERBOSITY terse
CREATE SERVER rr FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE FOREIGN TABLE rr_t (key text, v int, w text)
  SERVER rr OPTIONS (key_prefix 'regress_rr:', fetch_size '3', write_mode 'immediate');
CREATE TABLE rr_native (key text, v int, w text);
INSERT INTO rr_native SELECT 'k' || g, g, md5(g::text) FROM generate_series(1, 20) g;
INSERT INTO rr_t SELECT * FROM rr_native;

-- A correlated subquery per row of a full scan (7 rounds of 3 keys): each
-- lookup is a request on the same connection as the scan's round in flight.
SELECT count(*) AS rows, count(*) FILTER (WHERE s.v = n.v) AS agree
FROM (SELECT a.key, (SELECT b.v FROM rr_t b WHERE b.key = a.key) AS v FROM rr_t a) s
JOIN rr_native n USING (key);

-- A cursor over a key list (rounds of 3, in the list's order), with
-- requests of other statements between its fetches.
BEGIN;
DECLARE c CURSOR FOR
  SELECT key, v FROM rr_t WHERE key = ANY (ARRAY(SELECT 'k' || g FROM generate_series(1, 20) g));
FETCH 2 FROM c;
SELECT v FROM rr_t WHERE key = 'k17';
FETCH 2 FROM c;
SAVEPOINT s;
SELECT v / 0 FROM rr_t WHERE key = 'k1';
ROLLBACK TO s;
FETCH 3 FROM c;
-- The connection closed under the cursor: its round is sent again.
SELECT pgpoly.disconnect('rr');
FETCH 3 FROM c;
SELECT v FROM rr_t WHERE key = 'k18';
FETCH ALL FROM c;
COMMIT;

-- A cursor closed with a round in flight, and a LIMIT that stops a scan
-- early: the replies owed are dropped, the next statements are right.
BEGIN;
DECLARE c CURSOR FOR
  SELECT key, v FROM rr_t WHERE key = ANY (ARRAY(SELECT 'k' || g FROM generate_series(1, 20) g));
FETCH 4 FROM c;
CLOSE c;
SELECT v FROM rr_t WHERE key = 'k20';
COMMIT;
SELECT count(*) FROM (SELECT key FROM rr_t LIMIT 2) l;
SELECT v, w FROM rr_t WHERE key = 'k3';
SELECT requests > 0 AS used, errors FROM pgpoly.connections() WHERE server = 'rr';

-- Key-only reads: SCAN alone, TYPE for key lists.
EXPLAIN (COSTS OFF) SELECT count(*) FROM rr_t;
EXPLAIN (COSTS OFF) SELECT key FROM rr_t WHERE key LIKE 'k1%';
EXPLAIN (COSTS OFF) SELECT key FROM rr_t WHERE key IN ('k1', 'k2', 'nope');
EXPLAIN (COSTS OFF) SELECT v FROM rr_t WHERE key IN ('k1', 'k2', 'nope');
SELECT count(*), (SELECT count(*) FROM rr_native) AS native FROM rr_t;
SELECT (SELECT array_agg(key ORDER BY key) FROM rr_t) = (SELECT array_agg(key ORDER BY key) FROM rr_native) AS same_keys;
SELECT key FROM rr_t WHERE key LIKE 'k1%' ORDER BY key;
SELECT key FROM rr_t WHERE key IN ('k1', 'k2', 'nope') ORDER BY key;
-- TYPE checks the key's type as the fetch command would.
CREATE FOREIGN TABLE rr_s (key text, value text)
  SERVER rr OPTIONS (table_type 'string', key_prefix 'regress_rr:', write_mode 'immediate');
INSERT INTO rr_s VALUES ('str', 'a string');
SELECT key FROM rr_t WHERE key IN ('k1', 'str');
SELECT v FROM rr_t WHERE key IN ('k1', 'str');
SELECT key FROM rr_s WHERE key IN ('str', 'nope');
DELETE FROM rr_s;

-- A transaction's buffered writes are seen by key-only reads too.
-- (rr_did: the Redis line of EXPLAIN ANALYZE, without the round trips)
CREATE FUNCTION pg_temp.rr_did(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
	l text;
BEGIN
	FOR l IN EXECUTE 'EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) ' || q LOOP
		IF l LIKE '%Redis:%' THEN
			RETURN NEXT trim(l);
		END IF;
	END LOOP;
END $$;
CREATE FOREIGN TABLE rr_tx (key text, v int, w text)
  SERVER rr OPTIONS (key_prefix 'regress_rr:', fetch_size '3');
BEGIN;
INSERT INTO rr_tx VALUES ('new1', 1, 'x'), ('new2', 2, 'y');
DELETE FROM rr_tx WHERE key IN ('k1', 'k2', 'k3');
SELECT count(*) FROM rr_tx;
SELECT key FROM rr_tx WHERE key IN ('new1', 'k1', 'k4') ORDER BY key;
-- EXPLAIN ANALYZE says what was done: with buffered writes the values are
-- read (the overlay needs them), not keys only as planned
SELECT pg_temp.rr_did('SELECT count(*) FROM rr_tx');
SELECT pg_temp.rr_did($$SELECT key FROM rr_tx WHERE key IN ('new1', 'k1', 'k4')$$);
ROLLBACK;
SELECT pg_temp.rr_did('SELECT count(*) FROM rr_tx');
SELECT count(*) FROM rr_tx;

-- Only the columns read are converted: a field no column of the query
-- reads may hold what its column cannot take.
CREATE FOREIGN TABLE rr_bad (key text, v text, w int OPTIONS (field 'v'))
  SERVER rr OPTIONS (key_prefix 'regress_rr:bad:', write_mode 'immediate');
CREATE FOREIGN TABLE rr_badw (key text, v text)
  SERVER rr OPTIONS (key_prefix 'regress_rr:bad:', write_mode 'immediate');
INSERT INTO rr_badw VALUES ('b1', 'not a number');
SELECT key, v FROM rr_bad;
SELECT count(*) FROM rr_bad;
SELECT w FROM rr_bad;
DELETE FROM rr_badw;

-- Semi and anti joins on the key alone ask TYPE; with a condition on a
-- value they fetch it.
CREATE TABLE rr_l (id int, k text);
INSERT INTO rr_l SELECT g, 'k' || (g * 3) FROM generate_series(1, 12) g;
EXPLAIN (COSTS OFF) SELECT count(*) FROM rr_l l WHERE EXISTS (SELECT 1 FROM rr_t t WHERE t.key = l.k);
EXPLAIN (COSTS OFF) SELECT count(*) FROM rr_l l WHERE EXISTS (SELECT 1 FROM rr_t t WHERE t.key = l.k AND t.v > 30);
SELECT count(*) FROM rr_l l WHERE EXISTS (SELECT 1 FROM rr_t t WHERE t.key = l.k);
SELECT count(*) FROM rr_l l WHERE NOT EXISTS (SELECT 1 FROM rr_t t WHERE t.key = l.k);
SELECT count(*) FROM rr_l l WHERE EXISTS (SELECT 1 FROM rr_t t WHERE t.key = l.k AND t.v > 30);

-- Rounds of more than 16 keys take their memory from a per-backend pool of
-- at most two contexts, given back when the scan's memory goes (end,
-- cursor closed with a round in flight, error, rescan): whatever order
-- scans borrow and return them in, the rows are right and the pool keeps
-- at most two contexts of at most 4 MB each.
CREATE FOREIGN TABLE rr_big (key text, v int, w text)
  SERVER rr OPTIONS (key_prefix 'regress_rr:big:', fetch_size '40', write_mode 'immediate');
CREATE TABLE rr_bignative (key text, v int, w text);
INSERT INTO rr_bignative SELECT 'b' || g, g, md5(g::text) FROM generate_series(1, 300) g;
INSERT INTO rr_big SELECT * FROM rr_bignative;
CREATE FUNCTION pg_temp.rr_pool() RETURNS text LANGUAGE sql AS $$
  SELECT count(*) FILTER (WHERE ident = 'in use') || ' in use, ' ||
         count(*) FILTER (WHERE ident = 'kept') || ' kept, within 4 MB each: ' ||
         coalesce(bool_and(total_bytes <= 4 * 1024 * 1024), true)
  FROM pg_backend_memory_contexts WHERE name = 'pgpoly redis round' $$;
CREATE FUNCTION pg_temp.rr_same(q text) RETURNS bool LANGUAGE plpgsql AS $$
DECLARE
	a text;
	b text;
BEGIN
	EXECUTE format(q, 'rr_big') INTO a;
	EXECUTE format(q, 'rr_bignative') INTO b;
	RETURN a = b;
END $$;
SELECT pg_temp.rr_same('SELECT sum(v)::text || max(w) FROM %s WHERE key = ANY (ARRAY(SELECT ''b'' || g FROM generate_series(1, 300) g))');
SELECT pg_temp.rr_same('SELECT count(*)::text || sum(b.v) FROM rr_bignative a JOIN %s b USING (key)');
SELECT pg_temp.rr_pool();
-- Two cursors with rounds in flight borrow four contexts; the first two
-- given back are kept, the others freed.
BEGIN;
DECLARE c1 CURSOR FOR
  SELECT key, v FROM rr_big WHERE key = ANY (ARRAY(SELECT 'b' || g FROM generate_series(1, 300) g));
DECLARE c2 CURSOR FOR
  SELECT key, v FROM rr_big WHERE key = ANY (ARRAY(SELECT 'b' || g FROM generate_series(300, 1, -1) g));
FETCH 2 FROM c1;
FETCH 2 FROM c2;
SELECT pg_temp.rr_pool();
SELECT v FROM rr_big WHERE key = 'b77';
MOVE FORWARD 40 IN c1;
FETCH 1 FROM c1;
SAVEPOINT s;
SELECT sum(v / (v - 150)) FROM rr_big WHERE key = ANY (ARRAY(SELECT 'b' || g FROM generate_series(1, 300) g));
ROLLBACK TO s;
FETCH 1 FROM c2;
SELECT pgpoly.disconnect('rr');
FETCH 1 FROM c1;
FETCH 2 FROM c2;
MOVE FORWARD ALL IN c2;
CLOSE c1;
COMMIT;
SELECT pg_temp.rr_pool();
-- An error in the middle of a batched join gives its rounds back.
SELECT sum(b.v / (b.v - 290)) FROM rr_bignative a JOIN rr_big b USING (key);
SELECT pg_temp.rr_pool();
SELECT pg_temp.rr_same('SELECT count(*)::text || sum(b.v) || max(b.w) FROM rr_bignative a JOIN %s b USING (key)');
SELECT pg_temp.rr_same('SELECT sum(v)::text || max(w) FROM %s WHERE key = ANY (ARRAY(SELECT ''b'' || g FROM generate_series(1, 300) g))');
SELECT pg_temp.rr_pool();
DELETE FROM rr_big;
DROP TABLE rr_bignative;

DELETE FROM rr_t;
DROP SERVER rr CASCADE;
DROP TABLE rr_native, rr_l;
