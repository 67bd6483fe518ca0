--
-- A backend keeps each vector foreign table resolved (options, columns,
-- server, user mapping, conversions) for the next statement
-- (src/tablecache.c); any change to them takes effect at the next
-- execution, even of a prepared statement whose generic plan is reused.
--
\getenv chroma_url CHROMA_URL
\! for c in pgpoly_vc_a pgpoly_vc_b vc_a vc_renamed; do curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/$c"; done
\set VERBOSITY terse
CREATE SERVER vc FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE vc_a (id text, embedding real[], document text, grp text, tag text,
                           _distance float8)
  SERVER vc OPTIONS (collection 'pgpoly_vc_a', create_collection 'true', distance 'l2',
                     write_mode 'immediate');
CREATE FOREIGN TABLE vc_b (id text, embedding real[], document text, grp text, tag text)
  SERVER vc OPTIONS (collection 'pgpoly_vc_b', create_collection 'true', distance 'l2',
                     write_mode 'immediate');
INSERT INTO vc_a (id, embedding, document, grp, tag)
  VALUES ('a1', '{1,0}', 'doc a1', 'x', 'ta'), ('a2', '{0,1}', 'doc a2', 'y', 'tb');
INSERT INTO vc_b VALUES ('b1', '{1,0}', 'doc b1', 'z', '7'), ('b2', '{0,1}', 'doc b2', 'w', '8');

SET plan_cache_mode = force_generic_plan;
PREPARE q AS SELECT id, document, grp::text AS grp, round(_distance::numeric, 4) AS d
  FROM vc_a ORDER BY embedding <-> '{1,0.5}' LIMIT 1;
EXECUTE q;
-- the table's options
ALTER FOREIGN TABLE vc_a OPTIONS (SET collection 'pgpoly_vc_b');
EXECUTE q;
-- a column's options
ALTER FOREIGN TABLE vc_a ALTER COLUMN grp OPTIONS (ADD field 'tag');
EXECUTE q;
-- a column's type (an int column reads only JSON numbers: the string "7"
-- of tag, and "z" of grp, are an ERROR)
ALTER FOREIGN TABLE vc_a ALTER COLUMN grp TYPE int;
EXECUTE q;
ALTER FOREIGN TABLE vc_a ALTER COLUMN grp OPTIONS (DROP field);
EXECUTE q;
-- the table's name, the collection's when it has no option collection
ALTER FOREIGN TABLE vc_a ALTER COLUMN grp TYPE text;
ALTER FOREIGN TABLE vc_a OPTIONS (DROP collection);
INSERT INTO vc_a (id, embedding) VALUES ('n1', '{1,1}');
SELECT id FROM vc_a;
ALTER FOREIGN TABLE vc_a RENAME TO vc_renamed;
SELECT id FROM vc_renamed;
ALTER FOREIGN TABLE vc_renamed OPTIONS (ADD collection 'pgpoly_vc_a');
DEALLOCATE q;
PREPARE q AS SELECT id, document, grp::text AS grp FROM vc_renamed ORDER BY embedding <-> '{1,0.5}' LIMIT 1;
EXECUTE q;
-- the server's options: a tenant that does not exist
ALTER SERVER vc OPTIONS (ADD tenant 'pgpoly_no_such_tenant');
EXECUTE q;
ALTER SERVER vc OPTIONS (DROP tenant);
EXECUTE q;

DEALLOCATE q;
RESET plan_cache_mode;
DELETE FROM vc_renamed;
DELETE FROM vc_b;
DROP SERVER vc CASCADE;
\! for c in pgpoly_vc_a pgpoly_vc_b vc_a vc_renamed; do curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/$c"; done
