--
-- The REST stores' URL rules (http/https only, no credentials, no query or
-- fragment) at CREATE/ALTER SERVER time and when a server is used; no
-- credential in any message; ca_file only for roles that may read server
-- files; NULL arguments of every SQL-callable C function.
--
\getenv es_url ES_URL

-- Runs stmt; 'ok', or the error's SQLSTATE, message and detail.  If the
-- message, detail or hint contains secret, says so instead.
CREATE FUNCTION pg_temp.try(stmt text, secret text DEFAULT NULL) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    st text;
    msg text;
    det text;
    hnt text;
BEGIN
    EXECUTE stmt;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
        det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    IF secret IS NOT NULL AND
       strpos(concat_ws(' ', msg, det, hnt), secret) > 0 THEN
        RETURN 'LEAKED ' || secret || ': ' || concat_ws(' / ', msg, det, hnt);
    END IF;
    RETURN st || ': ' || msg || coalesce(' / ' || nullif(det, ''), '');
END $$;

-- Only http and https, at CREATE SERVER, for both wrappers.
SELECT w, u, pg_temp.try(format(
         'CREATE SERVER hs_bad FOREIGN DATA WRAPPER %I OPTIONS (url %L)', w, u),
         'hunter2') AS result
FROM unnest(ARRAY['pgpoly_elastic', 'pgpoly_vector']) w,
     unnest(ARRAY['file:///etc/passwd',
                  'gopher://127.0.0.1:6379/_SET%20k%20v',
                  'ftp://127.0.0.1/x',
                  'dict://127.0.0.1:6379/info',
                  'FILE:///etc/hostname',
                  '127.0.0.1:9200',
                  '//127.0.0.1:9200',
                  'http:/127.0.0.1:9200',
                  'http://127.0.0.1:9200, file:///etc/passwd',
                  ' , ',
                  'http://alice:hunter2@127.0.0.1:9200',
                  'https://alice@127.0.0.1:9200',
                  'http://:hunter2@127.0.0.1:9200',
                  'http://127.0.0.1:9200, http://alice:hunter2@10.0.0.1:9200/es',
                  'ftp://alice:hunter2@127.0.0.1/',
                  'alice:hunter2@127.0.0.1:9200',
                  'http://127.0.0.1:9200/?',
                  'http://127.0.0.1:9200/#x',
                  'http://127.0.0.1:99999',
                  'http://',
                  'http://127.0.0.1:9200/a b']) u
ORDER BY w, u;

-- The message names the option and says why; no URL is echoed.
CREATE SERVER hs_bad FOREIGN DATA WRAPPER pgpoly_elastic
  OPTIONS (url 'gopher://127.0.0.1:6379/_SET');
CREATE SERVER hs_bad FOREIGN DATA WRAPPER pgpoly_vector
  OPTIONS (url 'http://alice:hunter2@127.0.0.1:8000');

-- Good URLs: http, https (any case), paths, several for failover.
CREATE SERVER hs_es FOREIGN DATA WRAPPER pgpoly_elastic
  OPTIONS (url 'http://127.0.0.1:9200, HTTPS://es.example:9243/prefix/');
CREATE SERVER hs_vec FOREIGN DATA WRAPPER pgpoly_vector
  OPTIONS (url 'http://[::1]:8000/chroma');

-- ... and at ALTER SERVER (SET and ADD), for both.
SELECT s, u, pg_temp.try(format('ALTER SERVER %I OPTIONS (SET url %L)', s, u),
                         'hunter2') AS result
FROM unnest(ARRAY['hs_es', 'hs_vec']) s,
     unnest(ARRAY['file:///etc/passwd', 'gopher://127.0.0.1:6379/_x',
                  'dict://127.0.0.1:11211/stat', 'localhost:9200',
                  'http://alice:hunter2@127.0.0.1:9200']) u
ORDER BY s, u;
CREATE SERVER hs_es2 FOREIGN DATA WRAPPER pgpoly_elastic;
ALTER SERVER hs_es2 OPTIONS (ADD url 'file:///etc/passwd');
SELECT pg_temp.try('ALTER SERVER hs_es2 OPTIONS (ADD url ''https://u:hunter2@h'')',
                   'hunter2');
-- Unchanged by the failed ALTERs:
SELECT srvname, srvoptions FROM pg_foreign_server
WHERE srvname LIKE 'hs\_%' ORDER BY srvname;

-- A catalog row that bypassed the validator (written before this check
-- existed, or edited directly) is refused when the server is used, before
-- any connection: nothing is requested and nothing is cached.
CREATE USER MAPPING FOR CURRENT_USER SERVER hs_es
  OPTIONS (username 'alice', password 'hunter2');
UPDATE pg_foreign_server SET srvoptions = ARRAY['url=file:///etc/passwd']
WHERE srvname = 'hs_es';
SELECT pgpoly.elastic_request('hs_es', 'GET', '/');
UPDATE pg_foreign_server
SET srvoptions = ARRAY['url=http://alice:hunter2@127.0.0.1:9/']
WHERE srvname = 'hs_es';
SELECT pg_temp.try('SELECT pgpoly.elastic_request(''hs_es'', ''GET'', ''/'')',
                   'hunter2');
UPDATE pg_foreign_server SET srvoptions = ARRAY['url=gopher://127.0.0.1:6379/_']
WHERE srvname = 'hs_vec';
CREATE FOREIGN TABLE hs_vt (id text, embedding real[]) SERVER hs_vec
  OPTIONS (collection 'c');
SELECT * FROM hs_vt;
SELECT count(*) AS cached FROM pgpoly.connections()
WHERE server IN ('hs_es', 'hs_vec');

-- ca_file makes libcurl read a file on the database server: only roles
-- that may read server files set it (as file_fdw's filename).
CREATE ROLE regress_http_plain;
CREATE ROLE regress_http_reader IN ROLE pg_read_server_files;
GRANT USAGE ON FOREIGN DATA WRAPPER pgpoly_elastic
  TO regress_http_plain, regress_http_reader;
SET ROLE regress_http_plain;
CREATE SERVER hs_ca FOREIGN DATA WRAPPER pgpoly_elastic
  OPTIONS (url 'https://127.0.0.1:9200', ca_file '/etc/passwd');
CREATE SERVER hs_ca FOREIGN DATA WRAPPER pgpoly_elastic
  OPTIONS (url 'https://127.0.0.1:9200');
ALTER SERVER hs_ca OPTIONS (ADD ca_file '/etc/ssl/certs/ca-certificates.crt');
RESET ROLE;
SET ROLE regress_http_reader;
CREATE SERVER hs_ca2 FOREIGN DATA WRAPPER pgpoly_elastic
  OPTIONS (url 'https://127.0.0.1:9200', ca_file '/etc/ssl/certs/ca-certificates.crt');
RESET ROLE;
-- A superuser may; an empty path is refused.
ALTER SERVER hs_ca OPTIONS (ADD ca_file '/etc/ssl/certs/ca-certificates.crt');
ALTER SERVER hs_ca OPTIONS (SET ca_file '');
SELECT srvname, srvoptions FROM pg_foreign_server
WHERE srvname IN ('hs_ca', 'hs_ca2') ORDER BY srvname;
DROP OWNED BY regress_http_plain, regress_http_reader;
DROP ROLE regress_http_plain, regress_http_reader;

-- NULL arguments of every SQL-callable C function: STRICT ones return
-- NULL; the others treat NULL as documented or raise 22004.
SELECT pg_temp.try('SELECT pgpoly.elastic_request(NULL, ''GET'', ''/'')');
SELECT pg_temp.try('SELECT pgpoly.elastic_request(''hs_es2'', NULL, ''/'')');
SELECT pg_temp.try('SELECT pgpoly.elastic_request(''hs_es2'', ''GET'', NULL)');
SELECT pg_temp.try('SELECT pgpoly.elastic_request(NULL, NULL, NULL, NULL)');
CREATE SERVER hs_live FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url :'es_url');
SELECT pgpoly.elastic_request('hs_live', 'GET', '/', NULL) ? 'version' AS null_body_is_no_body;
SELECT pg_temp.try('SELECT * FROM pgpoly.vector_search(NULL, ARRAY[1]::real[], 1)');
SELECT pg_temp.try('SELECT * FROM pgpoly.vector_search(''hs_vt'', NULL, 1)');
SELECT pg_temp.try('SELECT * FROM pgpoly.vector_search(''hs_vt'', ARRAY[1]::real[], NULL)');
SELECT pg_temp.try('SELECT * FROM pgpoly.vector_search(NULL, NULL, NULL, NULL)');
SELECT pg_temp.try('SELECT * FROM pgpoly.get_online_features(NULL, NULL)');
SELECT pg_temp.try('SELECT * FROM pgpoly.get_online_features(NULL, ARRAY[''a''])');
SELECT pg_temp.try('SELECT * FROM pgpoly.get_online_features(''nope'', NULL)');
SELECT pg_temp.try('SELECT * FROM pgpoly.get_online_features(NULL, NULL, NULL)');
SELECT pgpoly.disconnect(NULL) >= 0 AS disconnect_all;
SELECT pgpoly.l2_distance(NULL, ARRAY[1]::real[]) IS NULL AS l2,
       pgpoly.cosine_distance(ARRAY[1]::real[], NULL) IS NULL AS cosine,
       pgpoly.negative_inner_product(NULL, NULL) IS NULL AS ip,
       (NULL::real[] <-> ARRAY[1]::real[]) IS NULL AS op;
SELECT pgpoly._redis_key_column(NULL) IS NULL AS key_column;
SELECT pgpoly.redis_key_slot(NULL) IS NULL AS key_slot;
SELECT pgpoly.redis_validator(NULL, NULL) IS NULL AS redis,
       pgpoly.elastic_validator(NULL, 'pg_foreign_server'::regclass) IS NULL AS elastic,
       pgpoly.vector_validator(ARRAY['url=http://x'], NULL) IS NULL AS vector;
SELECT pg_temp.try('SELECT pgpoly.elastic_validator(ARRAY[NULL]::text[], ''pg_foreign_server''::regclass)');
-- drift's internal C function
SELECT * FROM pgpoly._drift_numeric_bins(NULL, '{1}', 2);
SELECT pg_temp.try('SELECT * FROM pgpoly._drift_numeric_bins(''{1,NULL}'', ''{}'', 2)');
SELECT pg_temp.try('SELECT * FROM pgpoly._drift_numeric_bins(''{1}'', ''{1}'', 2147483647)');
SELECT (pgpoly._drift_numeric_bins('[0:1]={NaN,Infinity}', '{-Infinity}', 10000)).ks AS odd_values;
-- the prediction log's walk over its rows
SELECT * FROM pgpoly._prediction_scan(NULL);
SELECT pg_temp.try('SELECT pgpoly._prediction_scan(''{"model": "m"}'')');
SELECT pg_temp.try('SELECT pgpoly._prediction_scan(''"a string"'')');
SELECT * FROM pgpoly._prediction_scan('[]');
SELECT * FROM pgpoly._prediction_scan('[{"model": {"a": [1]}, "version": null}, {"model": {"a": [1]}}, {"model": 1, "version": true}, [], 5]');
SELECT * FROM pgpoly._prediction_scan('[{"model": "m", "version": 1}, {"version": 1, "model": "m", "ts": null}, {"model": "m", "version": "1"}, {"model": "m", "version": 1}]');
-- the prediction log's partition locks
SELECT pgpoly._lock_partitions(NULL, '{x}') IS NULL AS lock_null_parent,
       pgpoly._lock_partitions('pgpoly.predictions', NULL) IS NULL AS lock_null_names,
       pgpoly._lock_partitions('pgpoly.predictions', '{}') IS NULL AS lock_no_names,
       pgpoly._lock_partitions('pgpoly.predictions', '[0:2]={NULL,no_such_relation,x}') AS lock_missing;
SELECT pg_temp.try('SELECT pgpoly._lock_partitions(0, ''{x}'')');
SELECT pg_temp.try('SELECT pgpoly._lock_partitions(''pg_class'', ''{pg_attribute}'')');
SELECT pg_temp.try('SELECT pgpoly._lock_partitions(''pgpoly.predictions'', ''{registered_models}'')');
-- ingest_features' offline append (nothing inserted or locked by any of these)
CREATE TEMP TABLE hs_off (k text, n int CHECK (n > 0));
SELECT pgpoly._offline_direct(NULL, '{k}') IS NULL AS direct_null_rel,
       pgpoly._offline_direct('hs_off'::regclass, NULL) IS NULL AS direct_null_cols,
       pgpoly._offline_direct(0, '{k}') AS direct_no_rel,
       pgpoly._offline_direct('pg_class'::regclass, '{relname}') AS direct_catalog,
       pgpoly._offline_direct('pgpoly.predictions'::regclass, '{entity}') AS direct_partitioned,
       pgpoly._offline_direct('hs_off'::regclass, '{k,nope}') AS direct_no_column,
       pgpoly._offline_direct('hs_off'::regclass, '{k,NULL}') AS direct_null_column,
       pgpoly._offline_direct('hs_off'::regclass, '{k}') AS direct_ok;
SELECT pg_temp.try('SELECT pgpoly._offline_append(NULL, ''{k}'', ''x''::text)');
SELECT pg_temp.try('SELECT pgpoly._offline_append(''hs_off''::regclass, NULL, ''x''::text)');
SELECT pg_temp.try('SELECT pgpoly._offline_append(0, ''{k}'', ''x''::text)');
SELECT pg_temp.try('SELECT pgpoly._offline_append(''pg_class''::regclass, ''{relname}'', ''x''::name)');
SELECT pg_temp.try('SELECT pgpoly._offline_append(''hs_off''::regclass, ''{k,n}'', ''x''::text)');
SELECT pg_temp.try('SELECT pgpoly._offline_append(''hs_off''::regclass, ''{n}'', now())');
SELECT pg_temp.try('SELECT pgpoly._offline_append(''hs_off''::regclass, ''{k,n}'', ''x''::text, 0)');
SELECT pg_temp.try('SELECT pgpoly._offline_append(''hs_off''::regclass, ''{k}'', ''x''::text) OVER ()');
SELECT (SELECT pgpoly._offline_append('hs_off'::regclass, '{k}', 'x'::text) FROM generate_series(1, 0)) AS appended_none,
       (SELECT count(*) FROM hs_off) AS rows_left;
DROP TABLE hs_off;
-- ingest_features' newest rows: any bytes, any row number
SELECT pgpoly._ingest_is_newest(NULL, 1) IS NULL AS is_newest_null,
       pgpoly._ingest_is_newest('', 0) AS is_newest_empty,
       pgpoly._ingest_is_newest('\xff', -9223372036854775808) AS is_newest_min,
       pgpoly._ingest_is_newest('\xff', 9223372036854775807) AS is_newest_max,
       pgpoly._ingest_newest(NULL, NULL, NULL) IS NULL AS newest_null;
SELECT pg_temp.try('SELECT pgpoly._ingest_newest(''k'', now(), -9223372036854775808)');
SELECT pg_temp.try('SELECT pgpoly._ingest_newest(''k'', now(), 1) OVER ()');
-- the prediction log's direct insertion (nothing inserted by any of these)
SELECT pgpoly._prediction_insert(NULL, '[]', '{}', '{}', '{}', '{}') IS NULL AS insert_null_parent,
       pgpoly._prediction_insert('pgpoly.predictions', NULL, '{}', '{}', '{}', '{}') IS NULL AS insert_null_rows,
       pgpoly._prediction_insert('pgpoly.predictions', '[]', '{}', '{}', '{}', NULL) IS NULL AS insert_null_pairs,
       pgpoly._prediction_insert('pg_class', '[{"model": "m"}]', '{m}', '{1}', '{m}', '{1}') IS NULL AS insert_not_partitioned,
       pgpoly._prediction_insert('pgpoly.predictions', '[]', '{}', '{}', '{}', '{}') AS insert_nothing,
       pgpoly._prediction_insert('pgpoly.predictions', '[{"model": "m", "version": 1, "prediction": 1}]',
                                 '{m}', '{1}', '{m}', '{NULL}') AS insert_no_version;
SELECT pg_temp.try('SELECT pgpoly._prediction_insert(''pgpoly.predictions'', ''{"model": "m"}'', ''{}'', ''{}'', ''{}'', ''{}'')');
SELECT pg_temp.try('SELECT pgpoly._prediction_insert(''pgpoly.predictions'', ''[5]'', ''{}'', ''{}'', ''{}'', ''{}'')');
SELECT pg_temp.try('SELECT pgpoly._prediction_insert(''pgpoly.predictions'', ''[{"model": "m", "bogus": 1}]'', ''{m}'', ''{1}'', ''{m}'', ''{1}'')');
SELECT pg_temp.try('SELECT pgpoly._prediction_insert(''pgpoly.predictions'', ''[]'', ''{m,n}'', ''{1}'', ''{m}'', ''{1}'')');
CREATE TABLE hs_parted (model_name text, version bigint) PARTITION BY LIST (model_name);
SELECT pg_temp.try('SELECT pgpoly._prediction_insert(''hs_parted'', ''[]'', ''{}'', ''{}'', ''{}'', ''{}'')');
DROP TABLE hs_parted;
-- the feature store's internal C functions
SELECT pgpoly._fv_rel(NULL) IS NULL AS fv_rel,
       pgpoly._fv_require_privileges(NULL, 'SELECT') IS NULL AS fv_require,
       pgpoly._fv_may_write(NULL, NULL) IS NULL AS fv_may_write;
SELECT pgpoly._fv_lock_entities(NULL, NULL, NULL) IS NULL AS fv_lock,
       pgpoly._fv_lock_entities('pg_class', '{k}', NULL) IS NULL AS fv_lock_no_wait,
       pgpoly._fv_lock_entities('pg_class', '{NULL,"",k}', false) AS fv_lock_null_entity;
SELECT pg_temp.try('SELECT pgpoly._fv_lock_entities(0, ''{k}'', true)');
SELECT pgpoly._fv_is_fresh(NULL, NULL) AS no_ttl_is_fresh,
       pgpoly._fv_is_fresh(now(), NULL) AS no_event_time;
SELECT * FROM pgpoly._fv_serve(NULL, NULL, NULL, NULL, NULL);
SELECT pg_temp.try('SELECT * FROM pgpoly._fv_describe(NULL, NULL, NULL, NULL, NULL, NULL, NULL)');
SELECT pgpoly._fv_newest_usable(NULL, NULL) IS NULL AS newest_usable,
       (SELECT count(*) FROM pgpoly._fv_newest_rows(NULL::pg_class, NULL, NULL, NULL)) AS newest_rows;
SELECT pg_temp.try('SELECT pgpoly._fv_newest_rows(NULL::pg_class, ''relname'', ''-infinity'', ''infinity'')');
SELECT pg_temp.try('SELECT pgpoly._fv_newest_rows(NULL::int, ''relname'', ''-infinity'', ''infinity'')');
SELECT pgpoly._fv_newest_usable('pg_class', 'nope') AS newest_usable_no_column;
SELECT pgpoly._fv_entity_in(NULL, 23) IS NULL AS entity_in_null,
       pgpoly._fv_entity_in('abc', 23) IS NULL AS entity_in_not_int,
       pgpoly._fv_entity_in('7', NULL) IS NULL AS entity_in_no_type,
       pgpoly._fv_entity_in('7', 23) AS entity_in_int;
SELECT pg_temp.try('SELECT pgpoly._fv_entity_in(''7'', 0)');
SELECT pg_temp.try('SELECT pgpoly._fv_entity_in(''7'', ''pg_catalog.internal''::regtype)');
SELECT pgpoly._fv_eq_operator(NULL) IS NULL AS eq_operator_null,
       pgpoly._fv_eq_operator('text') AS eq_operator_text;
SELECT pg_temp.try('SELECT pgpoly._fv_eq_operator(0)');
SELECT pg_temp.try('SELECT pgpoly._fv_eq_operator(''xml'')');
SELECT pgpoly._fv_store_text(NULL::int) IS NULL AS store_text_null,
       pgpoly._fv_store_text(timestamptz '2024-01-01 05:00+00') AS store_text,
       pgpoly._fv_store_text('\x00ff'::bytea) AS store_bytea,
       pgpoly._fv_store_text(ROW(1, 'a b', NULL::date)) AS store_record;
-- sync functions
SELECT pg_temp.try('SELECT pgpoly.create_sync(NULL, NULL, NULL)');
SELECT pg_temp.try('SELECT pgpoly.create_sync(''s'', NULL, ''pg_class'')');
SELECT pg_temp.try('SELECT pgpoly.create_sync(''s'', ''pg_class'', ''pg_class'', NULL, NULL)');
SELECT pg_temp.try('SELECT pgpoly.drop_sync(NULL)');
SELECT pg_temp.try('SELECT pgpoly.sync_retry(NULL)');
SELECT pg_temp.try('SELECT pgpoly.sync_wait(NULL, NULL)');
SELECT pg_temp.try('SELECT pgpoly.sync_wait(''nope'')');
SELECT pgpoly._sync_ref(NULL) IS NULL AS sync_ref_null, pgpoly._sync_ref(0) LIKE '%/0' AS sync_ref_no_relation;
SELECT pg_temp.try('SELECT pgpoly.vector_validator(ARRAY[''url=file:///etc/passwd''], ''pg_foreign_server''::regclass)');
SELECT pg_temp.try('SELECT pgpoly._relation_name(0)');
-- Every C function is covered above (or takes no argument).
SELECT p.proname
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'pgpoly' AND p.prolang = (SELECT oid FROM pg_language WHERE lanname = 'c')
  AND p.pronargs > 0
  AND p.proname NOT IN ('elastic_request', 'vector_search', 'get_online_features',
                        'disconnect', 'l2_distance', 'cosine_distance',
                        'negative_inner_product', '_redis_key_column', 'redis_key_slot',
                        '_drift_numeric_bins', '_prediction_scan', '_lock_partitions', '_prediction_insert',
                        'redis_validator', 'elastic_validator', 'vector_validator',
                        '_fv_rel', '_fv_require_privileges', '_fv_may_write', '_fv_lock_entities',
                        '_fv_is_fresh', '_fv_serve', '_fv_describe',
                        '_fv_newest_usable', '_fv_newest_rows', '_fv_store_text', '_fv_entity_in',
                        '_fv_eq_operator', '_offline_direct', '_offline_append_step', '_offline_append_final',
                        '_ingest_newest_step', '_ingest_newest_final', '_ingest_is_newest',
                        '_ingest_is_newest_support',
                        'create_sync', 'drop_sync', 'sync_retry', 'sync_wait', '_sync_ref',
                        '_relation_name')
ORDER BY 1;

-- An api_key is sent as an HTTP header's value, as given: a CR or LF in it
-- would add headers of the user's choosing (or a second request) to every
-- request.  Refused, and never quoted.
SELECT pg_temp.try($$CREATE USER MAPPING FOR CURRENT_USER SERVER hs_vec
  OPTIONS (api_key E'k\r\nX-Injected: yes')$$, 'X-Injected');
SELECT pg_temp.try($$CREATE USER MAPPING FOR PUBLIC SERVER hs_es
  OPTIONS (api_key E'k\nHost: elsewhere')$$, 'elsewhere');
CREATE USER MAPPING FOR PUBLIC SERVER hs_es OPTIONS (api_key 'k');
SELECT pg_temp.try($$ALTER USER MAPPING FOR PUBLIC SERVER hs_es
  OPTIONS (SET api_key E'k\tX')$$);
DROP USER MAPPING FOR PUBLIC SERVER hs_es;

DROP USER MAPPING FOR CURRENT_USER SERVER hs_es;
DROP FOREIGN TABLE hs_vt;
DROP SERVER hs_es, hs_es2, hs_vec, hs_live;
