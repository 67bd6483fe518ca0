--
-- Vector writes at the services' request size limits (Chroma refuses a body
-- over about 40 MB, Qdrant over 32 MB, with 413): a batch of batch_size
-- records is split so that no request passes 8 MB.  360 records of 12000
-- dimensions (about 45 MB of JSON) fit in one batch_size of 500.
--
\getenv chroma_url CHROMA_URL
\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_vlim"

CREATE SERVER vlim FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url :'chroma_url', timeout_ms '120000');
CREATE FOREIGN TABLE vlim_t (id text, embedding real[], document text) SERVER vlim
  OPTIONS (collection 'regress_vlim', create_collection 'true', distance 'l2');

INSERT INTO vlim_t SELECT 'r' || g, g::real || array_fill((1.0 / 3)::real, ARRAY[11999]), NULL
  FROM generate_series(1, 360) g;
SELECT count(*) FROM vlim_t;
SELECT id, array_length(embedding, 1), embedding[1], embedding[12000] = (1.0 / 3)::real AS same
  FROM vlim_t WHERE id = 'r7';

\! curl -s -o /dev/null -X DELETE "$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections/regress_vlim"
DROP SERVER vlim CASCADE;
