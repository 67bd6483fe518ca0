--
-- pgpoly_elastic: a scan reading a numeric, json or jsonb column asks for
-- the whole _source (to read the numbers as spelt), but converts only the
-- columns the query reads.  A column the query does not name must not
-- fail it: here qty holds, in one document, a value no int column takes
-- (written by another client), and tag a string no date column takes.
-- Differential: each query on the table with those columns gives the answer
-- of the same query on its twin without them (never an ERROR), through the
-- store and through the transaction's buffered writes.
--
\getenv es_url ES_URL
\set VERBOSITY terse

CREATE SERVER esc_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('esc_es', 'DELETE', '/regress_esc') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('esc_es', 'PUT', '/regress_esc', '{"mappings": {"dynamic": false,
    "properties": {"label": {"type": "keyword"}, "amount": {"type": "double"},
      "qty": {"type": "long"}, "tag": {"type": "keyword"}}}}')->>'acknowledged' AS created;
CREATE FOREIGN TABLE esc_raw (_id text, _source jsonb)
  SERVER esc_es OPTIONS (index 'regress_esc', refresh 'true');
INSERT INTO esc_raw VALUES
  ('1', '{"label": "one", "amount": 1.10, "qty": 3, "tag": "2020-01-01", "meta": {"k": 1.50}}'),
  ('2', '{"label": "two", "amount": 2.50, "qty": [1, 2], "tag": "not a date", "meta": {"k": 2}}'),
  ('3', '{"label": "three", "amount": 30, "qty": 7, "tag": "2021-06-30", "meta": {"k": 3.0}}');

-- esc_all has the columns no query below reads; esc_twin has not
CREATE FOREIGN TABLE esc_all (_id text, label text, amount numeric, meta jsonb,
                              qty int, tag date)
  SERVER esc_es OPTIONS (index 'regress_esc', refresh 'true');
CREATE FOREIGN TABLE esc_twin (_id text, label text, amount numeric, meta jsonb)
  SERVER esc_es OPTIONS (index 'regress_esc', refresh 'true');

-- the columns do not fit: a query naming them fails
SELECT _id, qty FROM esc_all ORDER BY _id;
SELECT _id, tag FROM esc_all ORDER BY _id;

-- Each query on esc_all and on esc_twin: the rows only one of them gives
-- (none), or the ERROR the esc_all query raised.
CREATE FUNCTION esc_diff(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
BEGIN
	EXECUTE format('SELECT count(*) FROM ((%s) EXCEPT ALL (%s)) d', q,
				   replace(q, 'esc_all', 'esc_twin')) INTO n;
	IF n = 0 THEN
		EXECUTE format('SELECT count(*) FROM ((%s) EXCEPT ALL (%s)) d',
					   replace(q, 'esc_all', 'esc_twin'), q) INTO n;
	END IF;
	RETURN n::text;
EXCEPTION WHEN OTHERS THEN
	RETURN 'ERROR: ' || SQLERRM;
END
$$;
SELECT q, esc_diff(q) AS differences FROM unnest(ARRAY[
  'SELECT _id, amount FROM esc_all',
  'SELECT _id, label, amount FROM esc_all WHERE amount > 2',
  'SELECT _id, meta FROM esc_all',
  'SELECT _id, (meta->>''k'')::numeric AS k FROM esc_all WHERE label <> ''one''',
  'SELECT amount::text FROM esc_all ORDER BY amount DESC LIMIT 2',
  'SELECT _id, label FROM esc_all WHERE amount IS NOT NULL'
]) q;

-- the same through writes buffered in the transaction (the overlay)
BEGIN;
INSERT INTO esc_all (_id, label, amount, meta) VALUES ('4', 'four', 4.00, '{"k": 4.0}');
DELETE FROM esc_all WHERE _id = '1';
SELECT _id, amount, meta FROM esc_all ORDER BY _id;
SELECT _id, label FROM esc_all WHERE amount > 2.6 ORDER BY _id;
ROLLBACK;

-- a generic plan reads the same columns
SET plan_cache_mode = force_generic_plan;
PREPARE esc_q(numeric) AS SELECT _id, amount FROM esc_all WHERE amount >= $1 ORDER BY _id;
EXECUTE esc_q(2.5);
RESET plan_cache_mode;

SELECT pgpoly.elastic_request('esc_es', 'DELETE', '/regress_esc')->>'acknowledged' AS dropped;
DROP SERVER esc_es CASCADE;
