-- An INSERT giving both _source and columns mapped to dotted field paths
-- sets each column's field in place in the given document, as a partial
-- update or Painless' path assignment does: the objects along the path keep
-- what else they hold.  A shallow merge replaced the object {"a": {...}}
-- of _source by the columns' {"a": {"b": ...}}, silently dropping a.z.
-- Each document is compared with the same fields set in place by jsonb_set
-- on a native copy of the row.  Also an UPDATE that assigns _source.
\getenv es_url ES_URL
CREATE SERVER esm FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('esm', 'DELETE', '/regress_esmerge') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('esm', 'PUT', '/regress_esmerge',
    '{"mappings": {"dynamic": false}}')->>'acknowledged';
CREATE FOREIGN TABLE em (_id text, x int OPTIONS (field 'a.b'), y int OPTIONS (field 'a.c'),
                         w text OPTIONS (field 'p.q.r'), _source jsonb)
  SERVER esm OPTIONS (index 'regress_esmerge', refresh 'true');
CREATE TABLE nm (_id text, x int, y int, w text, src jsonb);
INSERT INTO nm VALUES
  ('keep',   1, NULL, NULL, '{"a": {"z": 9, "b": 5}, "top": 1}'),
  ('deep',   NULL, 3, 'v',  '{"a": {"q": {"r": 1}}, "p": {"q": {"s": 2}, "t": [1]}}'),
  ('scalar', 2, NULL, NULL, '{"a": 7}'),
  ('array',  NULL, NULL, 'v', '{"p": [1, 2]}'),
  ('none',   NULL, NULL, NULL, '{"a": {"z": 1}}');
INSERT INTO em (_id, x, y, w, _source) SELECT * FROM nm;
-- The fields set in place: an object made where the path has none (or
-- something else), each non-NULL column's value at its path.
CREATE FUNCTION set_in(doc jsonb, path text[], v jsonb) RETURNS jsonb
LANGUAGE sql AS $$
  SELECT CASE WHEN v IS NULL THEN doc ELSE
    jsonb_set(CASE WHEN jsonb_typeof(doc #> path[:cardinality(path) - 1]) = 'object'
                        OR cardinality(path) = 1 THEN doc
                   WHEN cardinality(path) = 3 THEN
                     jsonb_set(CASE WHEN jsonb_typeof(doc #> path[:1]) = 'object' THEN doc
                                    ELSE jsonb_set(doc, path[:1], '{}') END,
                               path[:2], '{}')
                   ELSE jsonb_set(doc, path[:1], '{}') END, path, v) END $$;
SELECT n._id, e._source AS stored,
       e._source = set_in(set_in(set_in(n.src, '{a,b}', to_jsonb(n.x)), '{a,c}', to_jsonb(n.y)),
                          '{p,q,r}', to_jsonb(n.w)) AS fields_set_in_place
FROM nm n JOIN em e USING (_id) ORDER BY 1;
-- An UPDATE assigning _source replaces the document: the fields assigned
-- beside it are set in it, but the old values the other columns hold do not
-- undo it (SET _source = _source - 't' removed t, which the unassigned
-- column t put back, with a null for every other mapped field).  The
-- transaction's read of the buffered write and RETURNING show the same.
CREATE FOREIGN TABLE eu (_id text, n int, t text, _source jsonb)
  SERVER esm OPTIONS (index 'regress_esmerge', refresh 'true');
CREATE TABLE nu (_id text, n int, t text, _source jsonb);
INSERT INTO eu (_id, n, t) VALUES ('u1', 1, 'x'), ('u2', 2, 'y'), ('u3', 3, 'w');
INSERT INTO nu SELECT * FROM eu WHERE _id LIKE 'u%';
CREATE FUNCTION nu_fields() RETURNS void LANGUAGE sql AS $$
  UPDATE nu SET n = (_source->>'n')::int, t = _source->>'t' $$;
BEGIN;
UPDATE eu SET _source = _source - 't' WHERE _id = 'u1' RETURNING *;
UPDATE eu SET _source = '{"t": "z", "o": 1}', n = 5 WHERE _id = 'u2' RETURNING *;
UPDATE eu SET _source = _source || '{"o": 2}', t = NULL WHERE _id = 'u3' RETURNING *;
SELECT * FROM eu WHERE _id LIKE 'u%' ORDER BY 1;
COMMIT;
UPDATE nu SET _source = _source - 't' WHERE _id = 'u1';
UPDATE nu SET _source = '{"t": "z", "o": 1}'::jsonb || '{"n": 5}' WHERE _id = 'u2';
UPDATE nu SET _source = _source || '{"o": 2}' || '{"t": null}' WHERE _id = 'u3';
SELECT nu_fields();
SELECT * FROM eu WHERE _id LIKE 'u%' ORDER BY 1;
SELECT count(*) AS differ
FROM (SELECT * FROM eu WHERE _id LIKE 'u%' EXCEPT TABLE nu) d;
DROP FOREIGN TABLE eu;
DROP TABLE nu;
DROP FUNCTION nu_fields();
SELECT pgpoly.elastic_request('esm', 'DELETE', '/regress_esmerge')->>'acknowledged';
DROP SERVER esm CASCADE;
DROP TABLE nm;
DROP FUNCTION set_in(jsonb, text[], jsonb);
