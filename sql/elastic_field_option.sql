-- A column's field option names a path of keys in the document, split at
-- dots.  A path with an empty key ('a.', '.a', 'a..b') names a field
-- Elasticsearch refuses ("field name cannot be an empty string") and that a
-- read of the column never finds: the column wrote {"a": {"": 1}} and read
-- NULL.  Such a path is refused when the option is set.
\getenv es_url ES_URL
CREATE SERVER efo FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
CREATE FOREIGN TABLE efo_t (_id text, v int OPTIONS (field 'a.'), _source jsonb)
  SERVER efo OPTIONS (index 'regress_efo');
CREATE FOREIGN TABLE efo_t (_id text, v int OPTIONS (field '.a'), _source jsonb)
  SERVER efo OPTIONS (index 'regress_efo');
CREATE FOREIGN TABLE efo_t (_id text, v int OPTIONS (field 'a..b'), _source jsonb)
  SERVER efo OPTIONS (index 'regress_efo');
CREATE FOREIGN TABLE efo_t (_id text, v int OPTIONS (field '.'), _source jsonb)
  SERVER efo OPTIONS (index 'regress_efo');
-- a path of non-empty keys, and one key, are fine; ALTER is checked too
CREATE FOREIGN TABLE efo_t (_id text, v int OPTIONS (field 'a.b'), w int OPTIONS (field 'c'),
                            _source jsonb)
  SERVER efo OPTIONS (index 'regress_efo');
ALTER FOREIGN TABLE efo_t ALTER COLUMN v OPTIONS (SET field 'a.b.');
ALTER FOREIGN TABLE efo_t ALTER COLUMN w OPTIONS (SET field 'c.d');
SELECT attname, attfdwoptions FROM pg_attribute
WHERE attrelid = 'efo_t'::regclass AND attfdwoptions IS NOT NULL ORDER BY attnum;
DROP SERVER efo CASCADE;
