-- A registry name too long for the btree index that keeps it unique (an
-- entry holds at most 2704 bytes with 8 kB pages, after compression) is an
-- error naming the argument, its length and the limit (54000), as for a
-- feature store entity; it failed with PostgreSQL's "index row requires
-- 9632 bytes, maximum size is 8191", which named neither.  A long name that
-- compresses below the limit is kept, as before.
CREATE FUNCTION err(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	det text;
	hint text;
BEGIN
	EXECUTE q;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS det = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
	RETURN SQLSTATE || ': ' || SQLERRM || ' / ' || det || ' / ' || hint;
END $$;
-- 9,600 bytes that do not compress
SELECT string_agg(md5(i::text), '') AS long_name FROM generate_series(1, 300) i \gset
SELECT err(format($$SELECT pgpoly.register_model_version(%L, 's3://m/1')$$, :'long_name')) AS model;
SELECT pgpoly.register_model_version('rln_m', 's3://m/1');
SELECT err(format($$SELECT pgpoly.set_model_alias('rln_m', %L, 1)$$, :'long_name')) AS alias;
SELECT err(format($$SELECT pgpoly.start_run(%L)$$, :'long_name')) AS experiment;
SELECT err(format($$SELECT pgpoly.register_dataset(%L)$$, :'long_name')) AS dataset;
SELECT err(format($$SELECT pgpoly.add_lineage('job', %L, 'job', 'rln_j')$$, :'long_name')) AS lineage;
-- a param key is no index key
SELECT pgpoly.start_run('rln_e') AS run \gset
SELECT err(format($$SELECT pgpoly.log_param(%L, %L, 'v')$$, :'run', :'long_name')) AS param;
-- nothing was stored
SELECT (SELECT count(*) FROM pgpoly.registered_models WHERE name LIKE 'c4ca%') AS models,
       (SELECT count(*) FROM pgpoly.model_alias_slots WHERE model_name = 'rln_m') AS slots,
       (SELECT count(*) FROM pgpoly.experiments WHERE name LIKE 'c4ca%') AS experiments,
       (SELECT count(*) FROM pgpoly.datasets WHERE name LIKE 'c4ca%') AS datasets;
-- 3,000 bytes that compress: kept, as before
SELECT pgpoly.register_model_version(repeat('ab', 1500), 's3://m/2') AS version;
SELECT pgpoly.set_model_alias(repeat('ab', 1500), repeat('cd', 1500), 1);
SELECT length(model_name), length(alias), version FROM pgpoly.model_aliases
  WHERE model_name = repeat('ab', 1500);

-- Only that error is rewritten: another of class 54 (here a trigger's, with
-- its own detail), raised while a long name is stored, passes through
-- unchanged; it was re-raised as 54000 blaming the name, without its detail.
CREATE FUNCTION rln_limit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'rln trigger limit' USING ERRCODE = 'statement_too_complex', DETAIL = 'rln detail';
END $$;
CREATE TRIGGER rln_limit BEFORE INSERT ON pgpoly.datasets FOR EACH ROW EXECUTE FUNCTION rln_limit();
SELECT err(format($$SELECT pgpoly.register_dataset(%L)$$, repeat('ab', 1500))) AS dataset;
SELECT err($$SELECT pgpoly.register_dataset('rln_d')$$) AS dataset;
DROP TRIGGER rln_limit ON pgpoly.datasets;
CREATE TRIGGER rln_limit BEFORE INSERT ON pgpoly.experiments FOR EACH ROW EXECUTE FUNCTION rln_limit();
SELECT err(format($$SELECT pgpoly.start_run(%L)$$, repeat('ab', 1500))) AS experiment;
DROP TRIGGER rln_limit ON pgpoly.experiments;
DROP FUNCTION rln_limit();

-- Clean up.
DELETE FROM pgpoly.model_alias_history WHERE model_name IN ('rln_m', repeat('ab', 1500));
DELETE FROM pgpoly.model_aliases WHERE model_name IN ('rln_m', repeat('ab', 1500));
DELETE FROM pgpoly.model_alias_slots WHERE model_name IN ('rln_m', repeat('ab', 1500));
DELETE FROM pgpoly.model_versions WHERE model_name IN ('rln_m', repeat('ab', 1500));
DELETE FROM pgpoly.registered_models WHERE name IN ('rln_m', repeat('ab', 1500));
DELETE FROM pgpoly.runs WHERE experiment_id IN (SELECT experiment_id FROM pgpoly.experiments WHERE name = 'rln_e');
DELETE FROM pgpoly.experiments WHERE name = 'rln_e';
DROP FUNCTION err(text);
