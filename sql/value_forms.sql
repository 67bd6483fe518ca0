--
-- Store forms that settings.sql does not reach: money, whose text follows
-- lc_monetary (written under de_DE, "1.234,56 €", it was unreadable in a C
-- session, and as a bare JSON "number" it made JSON documents invalid),
-- in arrays, composites and domains too, even one whose CHECK calls a
-- function that sets lc_monetary itself;
-- domains, which JSON documents write in their base type's form, as
-- to_json() does (a jsonb domain as JSON, not as a string of it; a
-- timestamptz domain in ISO 8601); and JSON scalars held by json/jsonb
-- columns or jsonb[] elements, which read back as themselves ('"str"'::jsonb
-- was unreadable).
-- Differential: each store's rows against a native copy, EXCEPT ALL both
-- ways, read in a session with the other lc_monetary.  The harness
-- provides the de_DE.UTF-8 locale (test/lib.sh).
--
\getenv redis_port REDIS_PORT
\getenv es_url ES_URL
\getenv chroma_url CHROMA_URL
\set VERBOSITY terse
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_vf"

CREATE DOMAIN vf_jdom AS jsonb;
CREATE DOMAIN vf_tzdom AS timestamptz;
CREATE DOMAIN vf_adom AS int[];
CREATE TYPE vf_pair AS (m money, t text);
CREATE FUNCTION vf_money_ok(m money) RETURNS bool LANGUAGE sql
  SET lc_monetary = 'de_DE.UTF-8' AS $$ SELECT m::text <> '' $$;
CREATE DOMAIN vf_mdom AS money CHECK (vf_money_ok(VALUE));
CREATE TABLE vf_native (id int, m money, ma money[], j jsonb, js json, jd vf_jdom,
                        td vf_tzdom, ad vf_adom, ja jsonb[], c vf_pair, md vf_mdom);
INSERT INTO vf_native VALUES
  (1, 1234.56, '{1.50,-2}', '"str"', '"s"', '{"a": [1, 2.5]}', '2024-03-10 07:30:00+00', '{1,2}',
   ARRAY['"s"', '{"a": "b"}', '5']::jsonb[], ROW(1000.5, 'x'), 7.25),
  (2, -0.01, '{}', '5', '[1, "a"]', '"x"', 'infinity', '{}', '{}', ROW(NULL, 'y'), -0.5),
  (3, 0, NULL, 'true', '{"k": null}', '3', NULL, '{NULL,3}', ARRAY['"only"']::jsonb[], NULL, NULL),
  (4, NULL, NULL, NULL, NULL, NULL, NULL, '{}', NULL, NULL, NULL);
\set cols 'id, m, ma, j, js::jsonb, jd, td, ad, ja, c::text, md'
CREATE FUNCTION vf_differences(rel regclass, cols text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
  EXECUTE format('SELECT count(*) FROM ((SELECT %2$s FROM vf_native EXCEPT ALL SELECT %2$s FROM %1$s)
                  UNION ALL (SELECT %2$s FROM %1$s EXCEPT ALL SELECT %2$s FROM vf_native)) x',
                 rel, cols) INTO n;
  RETURN n;
END $$;

CREATE SERVER vf_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port :'redis_port');
CREATE FOREIGN TABLE vf_h (id int OPTIONS (key 'true'), m money, ma money[], j jsonb, js json,
                           jd vf_jdom, td vf_tzdom, ad vf_adom, ja jsonb[], c vf_pair,
                           md vf_mdom)
  SERVER vf_redis OPTIONS (key_prefix 'regress_vf:h:');
CREATE FOREIGN TABLE vf_j (id int OPTIONS (key 'true'), m money, ma money[], j jsonb, js json,
                           jd vf_jdom, td vf_tzdom, ad vf_adom, ja jsonb[], c vf_pair,
                           md vf_mdom)
  SERVER vf_redis OPTIONS (table_type 'json', key_prefix 'regress_vf:j:');
-- The stored text itself.
CREATE FOREIGN TABLE vf_h_text (id int OPTIONS (key 'true'), m text, ma text, c text, md text)
  SERVER vf_redis OPTIONS (key_prefix 'regress_vf:h:');
CREATE FOREIGN TABLE vf_j_text (key text, value text)
  SERVER vf_redis OPTIONS (table_type 'string', key_prefix 'regress_vf:j:');

CREATE SERVER vf_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('vf_es', 'DELETE', '/regress_vf') IS NOT NULL AS cleaned;
SELECT pgpoly.elastic_request('vf_es', 'PUT', '/regress_vf',
    '{"mappings": {"dynamic": false, "properties": {"id": {"type": "long"}}}}')->>'acknowledged';
CREATE FOREIGN TABLE vf_e (_id text, id int, m money, ma money[], j jsonb, js json,
                           jd vf_jdom, td vf_tzdom, ad vf_adom, ja jsonb[], c vf_pair,
                           md vf_mdom)
  SERVER vf_es OPTIONS (index 'regress_vf', refresh 'true');

CREATE SERVER vf_vec FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url');
CREATE FOREIGN TABLE vf_v (id text, embedding real[], k int OPTIONS (field 'k'),
                           m money OPTIONS (field 'm'), j jsonb OPTIONS (field 'j'),
                           td vf_tzdom OPTIONS (field 'td'))
  SERVER vf_vec OPTIONS (collection 'regress_vf', create_collection 'true', distance 'l2');

-- Written with German money, read with C money; then the other way round.
SET lc_monetary = 'de_DE.UTF-8';
SELECT m FROM vf_native WHERE id = 1;
INSERT INTO vf_h SELECT * FROM vf_native;
INSERT INTO vf_j SELECT * FROM vf_native;
INSERT INTO vf_e SELECT id::text, * FROM vf_native;
INSERT INTO vf_v SELECT id::text, '{1,0}', id, m, j, td FROM vf_native;
SET lc_monetary = 'C';
SELECT vf_differences('vf_h', :'cols') AS hash, vf_differences('vf_j', :'cols') AS json,
       vf_differences('vf_e', :'cols') AS elastic;
SELECT count(*) AS vector FROM ((SELECT id::text, m, j, td FROM vf_native
                                 EXCEPT ALL SELECT k::text, m, j, td FROM vf_v)
                                UNION ALL (SELECT k::text, m, j, td FROM vf_v
                                 EXCEPT ALL SELECT id::text, m, j, td FROM vf_native)) x;
DELETE FROM vf_h; DELETE FROM vf_j;
INSERT INTO vf_h SELECT * FROM vf_native;
INSERT INTO vf_j SELECT * FROM vf_native;
SET lc_monetary = 'de_DE.UTF-8';
SELECT vf_differences('vf_h', :'cols') AS hash, vf_differences('vf_j', :'cols') AS json;
SELECT m, ma, c, md FROM vf_h WHERE id = 1;
-- The session's own setting is untouched by all of it.
SHOW lc_monetary;

-- What is stored does not depend on the writer's locale; JSON documents
-- are valid JSON, with the domains in their base types' forms.
SELECT * FROM vf_h_text ORDER BY id;
SELECT key, value::jsonb FROM vf_j_text ORDER BY key;
SELECT _id, m, jd, td, ad, ja FROM vf_e ORDER BY _id;

RESET lc_monetary;
DELETE FROM vf_h; DELETE FROM vf_j;
SELECT pgpoly.elastic_request('vf_es', 'DELETE', '/regress_vf')->>'acknowledged';
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_vf"
DROP SERVER vf_redis, vf_es, vf_vec CASCADE;
DROP FUNCTION vf_differences(regclass, text);
DROP TABLE vf_native;
DROP DOMAIN vf_jdom, vf_tzdom, vf_adom, vf_mdom;
DROP FUNCTION vf_money_ok(money);
DROP TYPE vf_pair;
