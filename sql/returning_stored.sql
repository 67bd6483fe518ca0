-- INSERT/UPDATE ... RETURNING on Elasticsearch, vector and Redis foreign
-- tables return the row as the store holds it after the write, as a read of it
-- finds it: JDBC's getGeneratedKeys (RETURNING *) and ORMs refreshing an
-- object from RETURNING must not get a _source, a metadata column, a column
-- mapped to a metadata key or a _ttl that a read of the same row right after
-- (in the transaction, from its buffered write, and after COMMIT, from the
-- store) contradicts.  Each RETURNING row is compared with both reads.
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL
CREATE SERVER rses FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('rses', 'DELETE', '/regress_retst') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('rses', 'PUT', '/regress_retst',
    '{"mappings": {"properties": {"n": {"type": "long"}, "t": {"type": "keyword"},
      "d": {"type": "double"}}}}')->>'acknowledged';
CREATE FOREIGN TABLE re (_id text, n bigint, t text, d float8, _source jsonb, _score float4)
  SERVER rses OPTIONS (index 'regress_retst', refresh 'true');
CREATE SERVER rsvs FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE rv (id text, embedding real[], document text, metadata jsonb,
                         grp text OPTIONS (field 'grp'), _distance float8)
  SERVER rsvs OPTIONS (collection 'regress_retst', create_collection 'true', distance 'l2');
DELETE FROM rv;

-- What each statement returned, what the transaction then read, what a
-- later transaction read; the test shows the rows where they differ.
CREATE TABLE ret_e (step text, _id text, n bigint, t text, d float8, _source jsonb);
CREATE TABLE ret_v (step text, id text, metadata jsonb, grp text);
CREATE FUNCTION ret_e_diff() RETURNS TABLE (step text, returned text, read_in_xact text, read_after text)
LANGUAGE sql AS $$
  SELECT r.step, row(r._id, r.n, r.t, r.d, r._source)::text,
         row(x._id, x.n, x.t, x.d, x._source)::text, row(e._id, e.n, e.t, e.d, e._source)::text
  FROM ret_e r JOIN ret_e x ON x.step = r.step || ':read' AND x._id = r._id
       LEFT JOIN re e ON e._id = r._id
  WHERE r.step NOT LIKE '%:read'
    AND (row(r._id, r.n, r.t, r.d, r._source) IS DISTINCT FROM row(x._id, x.n, x.t, x.d, x._source)
         OR (r.step LIKE 'last%' AND row(r._id, r.n, r.t, r.d, r._source)
                                     IS DISTINCT FROM row(e._id, e.n, e.t, e.d, e._source)))
  ORDER BY 1, 2 $$;
CREATE FUNCTION ret_v_diff() RETURNS TABLE (step text, returned text, read_in_xact text, read_after text)
LANGUAGE sql AS $$
  SELECT r.step, row(r.id, r.metadata, r.grp)::text, row(x.id, x.metadata, x.grp)::text,
         row(v.id, v.metadata, v.grp)::text
  FROM ret_v r JOIN ret_v x ON x.step = r.step || ':read' AND x.id = r.id
       LEFT JOIN rv v ON v.id = r.id
  WHERE r.step NOT LIKE '%:read'
    AND (row(r.id, r.metadata, r.grp) IS DISTINCT FROM row(x.id, x.metadata, x.grp)
         OR (r.step LIKE 'last%' AND row(r.id, r.metadata, r.grp)
                                     IS DISTINCT FROM row(v.id, v.metadata, v.grp)))
  ORDER BY 1, 2 $$;

-- Elasticsearch: INSERT with and without _source (unmapped fields), with and
-- without an _id; UPDATE of a field, to NULL, of _source.
BEGIN;
WITH r AS (INSERT INTO re (_id, n, t) VALUES ('a', 1, 'x') RETURNING *)
INSERT INTO ret_e SELECT 'ins', _id, n, t, d, _source FROM r;
WITH r AS (INSERT INTO re (_id, n, _source) VALUES ('b', 2, '{"extra": [1, 2], "t": "y"}') RETURNING *)
INSERT INTO ret_e SELECT 'ins', _id, n, t, d, _source FROM r;
WITH r AS (INSERT INTO re (n, t) VALUES (3, 'noid') RETURNING *)
INSERT INTO ret_e SELECT 'ins', _id, n, t, d, _source FROM r;
INSERT INTO ret_e SELECT 'ins:read', _id, n, t, d, _source FROM re;
COMMIT;
SELECT * FROM ret_e_diff();
BEGIN;
WITH r AS (UPDATE re SET n = n + 10 WHERE _id IN ('a', 'b') RETURNING *)
INSERT INTO ret_e SELECT 'upd', _id, n, t, d, _source FROM r;
WITH r AS (UPDATE re SET t = NULL WHERE t = 'noid' RETURNING *)
INSERT INTO ret_e SELECT 'upd_null', _id, n, t, d, _source FROM r;
INSERT INTO ret_e SELECT 'upd:read', _id, n, t, d, _source FROM re WHERE _id IN ('a', 'b');
INSERT INTO ret_e SELECT 'upd_null:read', _id, n, t, d, _source FROM re WHERE n = 3;
COMMIT;
SELECT * FROM ret_e_diff();
-- After COMMIT: the last statement's RETURNING is what the index holds.
BEGIN;
WITH r AS (UPDATE re SET d = 0.5 WHERE _id = 'b' RETURNING *)
INSERT INTO ret_e SELECT 'last', _id, n, t, d, _source FROM r;
INSERT INTO ret_e SELECT 'last:read', _id, n, t, d, _source FROM re WHERE _id = 'b';
COMMIT;
SELECT * FROM ret_e_diff();
SELECT CASE WHEN _id IN ('a', 'b') THEN _id ELSE 'assigned' END AS _id, n, t, d, _source
FROM re ORDER BY n;

-- Vector: metadata and a column mapped to one of its keys.
BEGIN;
WITH r AS (INSERT INTO rv (id, embedding, metadata) VALUES ('a', '{1,0}', '{"grp": "g1", "o": 1}') RETURNING *)
INSERT INTO ret_v SELECT 'ins', id, metadata, grp FROM r;
WITH r AS (INSERT INTO rv (id, embedding, grp) VALUES ('b', '{0,1}', 'g2') RETURNING *)
INSERT INTO ret_v SELECT 'ins', id, metadata, grp FROM r;
INSERT INTO ret_v SELECT 'ins:read', id, metadata, grp FROM rv;
COMMIT;
SELECT * FROM ret_v_diff();
BEGIN;
WITH r AS (UPDATE rv SET grp = 'g3' WHERE id = 'a' RETURNING *)
INSERT INTO ret_v SELECT 'upd_grp', id, metadata, grp FROM r;
WITH r AS (UPDATE rv SET metadata = '{"o": 2}' WHERE id = 'b' RETURNING *)
INSERT INTO ret_v SELECT 'upd_meta', id, metadata, grp FROM r;
INSERT INTO ret_v SELECT 'upd_grp:read', id, metadata, grp FROM rv WHERE id = 'a';
INSERT INTO ret_v SELECT 'upd_meta:read', id, metadata, grp FROM rv WHERE id = 'b';
COMMIT;
SELECT * FROM ret_v_diff();
BEGIN;
WITH r AS (UPDATE rv SET metadata = '{"p": 1}' WHERE id = 'a' RETURNING *)
INSERT INTO ret_v SELECT 'last', id, metadata, grp FROM r;
INSERT INTO ret_v SELECT 'last:read', id, metadata, grp FROM rv WHERE id = 'a';
COMMIT;
SELECT * FROM ret_v_diff();
SELECT id, metadata, grp FROM rv ORDER BY id;

-- write_mode 'immediate' returns the same rows, one batch at a time.
ALTER FOREIGN TABLE re OPTIONS (ADD write_mode 'immediate', ADD batch_size '1');
INSERT INTO re (_id, n, _source) VALUES ('c', 5, '{"k": true}'), ('d', 6, '{"k": false}')
  RETURNING _id, n, _source;
UPDATE re SET n = -n WHERE _id IN ('c', 'd') RETURNING _id, n, _source;
SELECT _id, n, _source FROM re WHERE _id IN ('c', 'd') ORDER BY _id;

-- Redis: a table with ttl_seconds returns the _ttl every write gives the key,
-- as the transaction's read of its buffered write finds it (a TTL read
-- after COMMIT counts down from it).
\getenv redis_port REDIS_PORT
CREATE SERVER rsrs FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE FOREIGN TABLE rr (id text OPTIONS (key 'true'), n int, _ttl int)
  SERVER rsrs OPTIONS (key_prefix 'regress_retst:', ttl_seconds '1000');
CREATE TABLE ret_r (step text, id text, n int, _ttl int);
BEGIN;
WITH r AS (INSERT INTO rr VALUES ('a', 1), ('b', 2) RETURNING *)
INSERT INTO ret_r SELECT 'ins', * FROM r;
INSERT INTO ret_r SELECT 'ins:read', * FROM rr;
COMMIT;
BEGIN;
WITH r AS (UPDATE rr SET n = n + 10 WHERE id = 'a' RETURNING *)
INSERT INTO ret_r SELECT 'upd', * FROM r;
INSERT INTO ret_r SELECT 'upd:read', * FROM rr WHERE id = 'a';
COMMIT;
SELECT r.step, r.id, r.n, r._ttl AS returned_ttl, x._ttl AS read_ttl
FROM ret_r r JOIN ret_r x ON x.step = r.step || ':read' AND x.id = r.id
WHERE row(r.n, r._ttl) IS DISTINCT FROM row(x.n, x._ttl);
SELECT id, n, _ttl BETWEEN 900 AND 1000 AS ttl_set FROM rr ORDER BY id;
DELETE FROM rr;
DROP SERVER rsrs CASCADE;
DROP TABLE ret_r;

DROP FOREIGN TABLE rv;
SELECT pgpoly.elastic_request('rses', 'DELETE', '/regress_retst')->>'acknowledged';
DROP SERVER rses CASCADE;
DROP SERVER rsvs CASCADE;
DROP TABLE ret_e, ret_v;
DROP FUNCTION ret_e_diff(), ret_v_diff();
