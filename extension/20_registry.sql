-- extension/20_registry.sql
--	  Native ML metadata: experiments, runs, params, metrics, tags, model registry
--	  with aliases and alias history, versioned datasets and the inputs of runs,
--	  feature views and the lineage graph.  (search_runs: 25_search_runs.sql.)
--
-- Contract: API.md section 2.  Design invariants kept by this file:
--	* Every table has a real primary key; versions reference their run (when given),
--	  aliases reference an existing version, and constraint names are stable.
--	* The functions validate their input and raise a specific SQLSTATE with a clear
--	  message before any constraint could fire:
--		42704 undefined_object          unknown run, model, version, alias, tag, lineage node
--		22023 invalid_parameter_value   bad status, lineage kind, direction, depth,
--		                                empty name, non-object jsonb, self edge
--		22004 null_value_not_allowed    a required argument is NULL
--		23505 unique_violation          a param logged again with a different value
--		54000 program_limit_exceeded    a lineage walk beyond 16383 levels, a name
--		                                too long for its index (_too_long_for_index)
--	  The constraints remain as the last line of defence for direct DML.
--	* Every function pins search_path and schema-qualifies every object, so it is
--	  safe under any caller search_path.
--	* Functions are SECURITY INVOKER: callers need the table privileges (see the
--	  reader/writer role pattern in the README).  Nothing here is granted to PUBLIC
--	  except EXECUTE on functions, which is harmless without table privileges.
--	* Model version numbers come from a per-model counter row updated with
--	  INSERT ... ON CONFLICT DO UPDATE, so concurrent registrations serialise on that
--	  row and never collide, and a rolled-back registration leaves no gap.
--	* Datasets are versioned: one row per (name, version), NULL the unversioned
--	  entry; a name's newest version is its highest dataset_id.  run_inputs records
--	  the version each run consumed.  A recorded content hash is never
--	  overwritten: new content of a training set is a new version
--	  (_dataset_record_content, serialised per name by an advisory lock).
--	* lineage() is one recursive query whose UNION duplicate elimination is the
--	  visited set (see _lineage_walk): cost grows with the edges walked.

--
-- Lineage node kinds: one list, used by the table CHECKs and by the functions.
--
CREATE FUNCTION pgpoly._lineage_kinds()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT '{dataset,feature_view,run,model_version,es_index,vector_collection,job}'::text[] $$;

COMMENT ON FUNCTION pgpoly._lineage_kinds() IS
	'Internal: the valid lineage node kinds';

--
-- Experiments and runs
--
CREATE TABLE pgpoly.experiments (
	experiment_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name          text NOT NULL CONSTRAINT experiments_name_key UNIQUE
	              CONSTRAINT experiments_name_check CHECK (name <> ''),
	tags          jsonb NOT NULL DEFAULT '{}'
	              CONSTRAINT experiments_tags_check CHECK (jsonb_typeof(tags) = 'object'),
	created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pgpoly.runs (
	run_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	experiment_id bigint NOT NULL REFERENCES pgpoly.experiments,
	run_name      text,
	status        text NOT NULL DEFAULT 'RUNNING'
	              CONSTRAINT runs_status_check
	              CHECK (status IN ('RUNNING', 'FINISHED', 'FAILED', 'KILLED')),
	start_time    timestamptz NOT NULL DEFAULT now(),
	end_time      timestamptz,
	params        jsonb NOT NULL DEFAULT '{}'
	              CONSTRAINT runs_params_check CHECK (jsonb_typeof(params) = 'object'),
	tags          jsonb NOT NULL DEFAULT '{}'
	              CONSTRAINT runs_tags_check CHECK (jsonb_typeof(tags) = 'object'),
	CONSTRAINT runs_end_time_check
		CHECK ((status = 'RUNNING') = (end_time IS NULL) AND end_time >= start_time)
);
-- "runs of experiment X, newest first" (MLflow's search_runs default order)
CREATE INDEX runs_experiment_start_idx ON pgpoly.runs (experiment_id, start_time DESC);

-- Full metric history.  metric_id is the logging order (first logged, lowest id); the
-- history order is (step, ts, value), as in MLflow.
CREATE TABLE pgpoly.metrics (
	metric_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	run_id    uuid NOT NULL REFERENCES pgpoly.runs ON DELETE CASCADE,
	key       text NOT NULL CONSTRAINT metrics_key_check CHECK (key <> ''),
	value     float8 NOT NULL,
	step      bigint NOT NULL DEFAULT 0,
	ts        timestamptz NOT NULL DEFAULT now()
);
-- Serves latest_metrics (one descending probe per run and key, the same expressions
-- in the same order as the view's ORDER BY) and history plots.
CREATE INDEX metrics_run_key_step_idx
	ON pgpoly.metrics (run_id, key, step DESC, ts DESC,
					   (CASE WHEN value = 'NaN' THEN 0
							 WHEN value = 'Infinity' THEN 1.7976931348623157e308
							 WHEN value = '-Infinity' THEN -1.7976931348623157e308
							 ELSE value END) DESC,
					   metric_id);

-- MLflow's latest-metric rule (SqlAlchemyStore._update_latest_metrics_if_necessary):
-- a logged value replaces the latest one only if its (step, timestamp, value) is
-- strictly greater, the value compared as MLflow stores it (NaN as 0, +/-Infinity as
-- +/-1.7976931348623157e308).  So per run and key: the highest step, ties to the
-- latest ts, then to the largest such value, and on a complete tie the first logged.
-- security_invoker: the caller reads pgpoly.metrics with their own privileges and its
-- row-level security policies, as a query of the table would (not as the owner).
CREATE VIEW pgpoly.latest_metrics WITH (security_invoker = true) AS
	SELECT DISTINCT ON (m.run_id, m.key)
	       m.run_id, m.key, m.value, m.step, m.ts
	FROM   pgpoly.metrics m
	ORDER  BY m.run_id, m.key, m.step DESC, m.ts DESC,
			  (CASE WHEN m.value = 'NaN' THEN 0
					WHEN m.value = 'Infinity' THEN 1.7976931348623157e308
					WHEN m.value = '-Infinity' THEN -1.7976931348623157e308
					ELSE m.value END) DESC,
			  m.metric_id;

COMMENT ON VIEW pgpoly.latest_metrics IS
	'Per run and key: the value at the highest step, ties to the latest ts, then to the largest value counting NaN as 0, then to the first logged (MLflow semantics)';

--
-- Model registry
--
-- last_version is the per-model version counter (see register_model_version).
CREATE TABLE pgpoly.registered_models (
	name         text PRIMARY KEY CONSTRAINT registered_models_name_check CHECK (name <> ''),
	description  text,
	tags         jsonb NOT NULL DEFAULT '{}'
	             CONSTRAINT registered_models_tags_check CHECK (jsonb_typeof(tags) = 'object'),
	last_version int NOT NULL DEFAULT 0 CONSTRAINT registered_models_last_version_check
	             CHECK (last_version >= 0),
	created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE pgpoly.model_versions (
	model_name text NOT NULL REFERENCES pgpoly.registered_models ON DELETE CASCADE,
	version    int NOT NULL CONSTRAINT model_versions_version_check CHECK (version > 0),
	run_id     uuid REFERENCES pgpoly.runs,
	source_uri text NOT NULL,
	tags       jsonb NOT NULL DEFAULT '{}'
	           CONSTRAINT model_versions_tags_check CHECK (jsonb_typeof(tags) = 'object'),
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (model_name, version)
);
CREATE INDEX model_versions_run_idx ON pgpoly.model_versions (run_id);

CREATE TABLE pgpoly.model_aliases (
	model_name text NOT NULL,
	alias      text NOT NULL CONSTRAINT model_aliases_alias_check CHECK (alias <> ''),
	version    int NOT NULL,
	PRIMARY KEY (model_name, alias),
	FOREIGN KEY (model_name, version) REFERENCES pgpoly.model_versions ON DELETE CASCADE
);
CREATE INDEX model_aliases_version_idx ON pgpoly.model_aliases (model_name, version);

-- One row per (model, alias) ever used, kept after the alias is deleted.  Its integer
-- slot_id exists only so that the history's no-overlap rule can be a real exclusion
-- constraint in stock PostgreSQL: equality on text needs btree_gist, which this
-- extension must not require, but equality on an integer k is exactly overlap of the
-- one-point ranges int4range(k, k, '[]'), which core GiST supports.
CREATE TABLE pgpoly.model_alias_slots (
	slot_id    int GENERATED ALWAYS AS IDENTITY CONSTRAINT model_alias_slots_slot_id_key UNIQUE,
	model_name text NOT NULL REFERENCES pgpoly.registered_models ON DELETE CASCADE,
	alias      text NOT NULL,
	PRIMARY KEY (model_name, alias),
	CONSTRAINT model_alias_slots_full_key UNIQUE (model_name, alias, slot_id)
);

-- Which version an alias pointed to, and when: valid is [set, moved-or-deleted).
-- The open range (upper bound infinite) is the current assignment.
CREATE TABLE pgpoly.model_alias_history (
	model_name text NOT NULL,
	alias      text NOT NULL,
	version    int NOT NULL,
	valid      tstzrange NOT NULL,
	alias_slot int NOT NULL,
	FOREIGN KEY (model_name, alias, alias_slot)
		REFERENCES pgpoly.model_alias_slots (model_name, alias, slot_id) ON DELETE CASCADE,
	FOREIGN KEY (model_name, version) REFERENCES pgpoly.model_versions ON DELETE CASCADE,
	CONSTRAINT model_alias_history_valid_check
		CHECK (NOT isempty(valid) AND NOT lower_inf(valid)),
	-- no two ranges of one (model, alias) overlap; see model_alias_slots
	CONSTRAINT model_alias_history_no_overlap EXCLUDE USING gist (
		int4range(alias_slot, alias_slot, '[]') WITH &&,
		valid WITH &&)
);
-- at most one open range per (model, alias), and a quick way to find it
CREATE UNIQUE INDEX model_alias_history_open_idx
	ON pgpoly.model_alias_history (alias_slot) WHERE upper_inf(valid);
CREATE INDEX model_alias_history_model_idx
	ON pgpoly.model_alias_history (model_name, alias, lower(valid));

--
-- Datasets, feature views, lineage
--
-- One row per version of a dataset: registering a new version keeps the old ones.
-- version NULL is a name's unversioned entry (registered or logged without a
-- version).  A name's newest version is its row with the highest dataset_id, i.e.
-- the one registered last.  content_hash identifies the rows of a training set
-- (see _dataset_content_hash); NULL for datasets pgpoly did not create.  A
-- version's content_hash, once set, never changes: new content under the same
-- name is a new version (_dataset_record_content), so run_inputs keep pointing
-- at the rows each run consumed.
CREATE TABLE pgpoly.datasets (
	dataset_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name         text NOT NULL CONSTRAINT datasets_name_check CHECK (name <> ''),
	version      text CONSTRAINT datasets_version_check CHECK (version <> ''),
	uri          text,
	store        text NOT NULL DEFAULT 'postgres',
	content_hash text,
	created_at   timestamptz NOT NULL DEFAULT now(),
	updated_at   timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT datasets_name_version_key UNIQUE NULLS NOT DISTINCT (name, version)
);

-- Which dataset versions a run consumed (log_input); MLflow's run inputs.
CREATE TABLE pgpoly.run_inputs (
	run_id     uuid NOT NULL REFERENCES pgpoly.runs ON DELETE CASCADE,
	dataset_id bigint NOT NULL REFERENCES pgpoly.datasets ON DELETE CASCADE,
	logged_at  timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (run_id, dataset_id)
);
CREATE INDEX run_inputs_dataset_idx ON pgpoly.run_inputs (dataset_id);

-- Rows are written by the feature store (create_feature_view).
CREATE TABLE pgpoly.feature_views (
	name          text PRIMARY KEY CONSTRAINT feature_views_name_check CHECK (name <> ''),
	entity        text NOT NULL,
	online_table  regclass NOT NULL,
	offline_table regclass,
	ttl           interval CONSTRAINT feature_views_ttl_check CHECK (ttl > interval '0'),
	created_at    timestamptz NOT NULL DEFAULT now()
);

-- Directed edges src -> dst ("dst was derived from / consumed src").  Nodes are
-- (kind, name) pairs and need not exist in any table (an es_index, a job).  The
-- primary key serves downstream walks and the dst index upstream walks, both as
-- index-only scans.
CREATE TABLE pgpoly.lineage_edges (
	src_kind   text NOT NULL,
	src_name   text NOT NULL,
	dst_kind   text NOT NULL,
	dst_name   text NOT NULL,
	relation   text NOT NULL DEFAULT 'derived',
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (src_kind, src_name, dst_kind, dst_name, relation),
	CONSTRAINT lineage_edges_kind_check
		CHECK (src_kind = ANY (pgpoly._lineage_kinds())
		       AND dst_kind = ANY (pgpoly._lineage_kinds())),
	CONSTRAINT lineage_edges_name_check
		CHECK (src_name <> '' AND dst_name <> '' AND relation <> ''),
	CONSTRAINT lineage_edges_no_self_edge
		CHECK ((src_kind, src_name) <> (dst_kind, dst_name))
);
CREATE INDEX lineage_edges_dst_idx
	ON pgpoly.lineage_edges (dst_kind, dst_name) INCLUDE (src_kind, src_name, relation);

-- pg_dump must dump the rows users put in these extension tables (one call per
-- statement: each call updates pg_extension's row).
SELECT pg_catalog.pg_extension_config_dump('pgpoly.experiments', '');
SELECT pg_catalog.pg_extension_config_dump('pgpoly.runs', '');
SELECT pg_catalog.pg_extension_config_dump('pgpoly.metrics', '');
SELECT pg_catalog.pg_extension_config_dump('pgpoly.registered_models', '');
SELECT pg_catalog.pg_extension_config_dump('pgpoly.model_versions', '');
SELECT pg_catalog.pg_extension_config_dump('pgpoly.model_aliases', '');
SELECT pg_catalog.pg_extension_config_dump('pgpoly.model_alias_slots', '');
SELECT pg_catalog.pg_extension_config_dump('pgpoly.model_alias_history', '');
SELECT pg_catalog.pg_extension_config_dump('pgpoly.datasets', '');
SELECT pg_catalog.pg_extension_config_dump('pgpoly.run_inputs', '');
SELECT pg_catalog.pg_extension_config_dump('pgpoly.feature_views', '');
SELECT pg_catalog.pg_extension_config_dump('pgpoly.lineage_edges', '');
SELECT pg_catalog.pg_extension_config_dump(
	pg_catalog.pg_get_serial_sequence('pgpoly.experiments', 'experiment_id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(
	pg_catalog.pg_get_serial_sequence('pgpoly.metrics', 'metric_id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(
	pg_catalog.pg_get_serial_sequence('pgpoly.model_alias_slots', 'slot_id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(
	pg_catalog.pg_get_serial_sequence('pgpoly.datasets', 'dataset_id')::regclass, '');

--
-- Internal helpers
--

-- Raise 22004 if a required argument is NULL.
CREATE FUNCTION pgpoly._require(val anyelement, argname text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
BEGIN
	IF val IS NULL THEN
		RAISE EXCEPTION 'argument "%" must not be NULL', argname
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
END
$$;

-- Raise 22004/22023 unless name is a non-empty text.
CREATE FUNCTION pgpoly._require_name(val text, argname text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
BEGIN
	PERFORM pgpoly._require(val, argname);
	IF val COLLATE pg_catalog."default" = '' THEN
		RAISE EXCEPTION 'argument "%" must not be empty', argname
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
END
$$;

-- Re-raise msg, PostgreSQL's "index row requires N bytes" error (54000) from
-- storing the values vals (named whats, e.g. 'argument "model"') in target
-- (what the index belongs to), as an error naming the longest of them, its
-- length and the limit: a btree index entry holds at most a third of a page
-- less headers (BTMaxItemSize, 2704 bytes with 8 kB pages), after
-- compression, so a longer value that compresses well is stored.  hint: how
-- to fix it.  Returns when that is not the error (state, its SQLSTATE, is
-- another of class 54, say a trigger's stack depth limit, or no value is
-- within 256 bytes of the limit): the caller's handler then re-raises its error
-- unchanged (RAISE), code, detail and context as they were.
CREATE FUNCTION pgpoly._too_long_for_index(state text, whats text[], vals text[], target text,
										   msg text, hint text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_max  int := (current_setting('block_size')::int - 56) / 3 / 8 * 8 - 8;
	v_what text;
	v_len  int;
BEGIN
	SELECT u.w, octet_length(u.v) INTO v_what, v_len
	FROM unnest(whats, vals) WITH ORDINALITY u(w, v, i)
	ORDER BY octet_length(u.v) DESC NULLS LAST, u.i LIMIT 1;
	-- the entry also holds a header and the index's other columns (a uuid,
	-- timestamps, a step: far less than 256 bytes), so a value a little
	-- shorter than the limit can be the one that does not fit
	IF state = '54000' AND v_len > v_max - 256 THEN
		RAISE EXCEPTION '% of % bytes is too long for %', v_what, v_len, target
			USING ERRCODE = 'program_limit_exceeded',
				  DETAIL = format('%s.  A btree index entry holds at most %s bytes (after compression).', msg, v_max),
				  HINT = hint;
	END IF;
END
$$;

-- _too_long_for_index for a registry function's names: re-raise msg naming
-- the longest of the arguments args (names) with the values vals; returns
-- for any other error (state: its SQLSTATE), which the caller re-raises.
CREATE FUNCTION pgpoly._registry_too_long(state text, args text[], vals text[], msg text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT pgpoly._too_long_for_index(state, ARRAY(SELECT format('argument "%s"', a) FROM unnest(args) a),
									  vals, 'an index of the registry', msg,
									  'Use a shorter name (for instance a hash of it).')
$$;

-- Return obj, '{}' for NULL; raise 22023 unless it is a JSON object whose keys
-- are not empty, 22004 if a value is JSON null.  The pairs are params or tags, and
-- must be what log_param/set_tag accept one by one: a null value would read as
-- "not set" (->> gives NULL), so a write-once param could be set again.
CREATE FUNCTION pgpoly._json_object(obj jsonb, argname text)
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_key text;
BEGIN
	IF obj IS NULL THEN
		RETURN '{}'::jsonb;
	END IF;
	IF jsonb_typeof(obj) <> 'object' THEN
		RAISE EXCEPTION 'argument "%" must be a JSON object, not %', argname, jsonb_typeof(obj)
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass key/value pairs, e.g. ''{"lr": "0.1"}''.';
	END IF;
	IF obj ? '' THEN
		RAISE EXCEPTION 'argument "%" has an empty key', argname
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT e.key INTO v_key FROM jsonb_each(obj) e WHERE jsonb_typeof(e.value) = 'null' LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'argument "%" has a null value for key "%"', argname, v_key
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Leave the key out: a key is set once it has a value.';
	END IF;
	RETURN obj;
END
$$;

-- Raise 42704 unless the run exists.  lock: take a row lock (params updates).
CREATE FUNCTION pgpoly._check_run(run uuid, lock bool DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
BEGIN
	PERFORM pgpoly._require(run, 'run');
	IF lock THEN
		PERFORM FROM pgpoly.runs r WHERE r.run_id = _check_run.run FOR NO KEY UPDATE;
	ELSE
		PERFORM FROM pgpoly.runs r WHERE r.run_id = _check_run.run;
	END IF;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'run % does not exist', run
			USING ERRCODE = 'undefined_object',
				  HINT = 'Create runs with pgpoly.start_run().';
	END IF;
END
$$;

-- Raise 42704 unless the registered model exists.
CREATE FUNCTION pgpoly._check_model(model text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
BEGIN
	PERFORM pgpoly._require_name(model, 'model');
	PERFORM FROM pgpoly.registered_models m WHERE m.name = _check_model.model COLLATE pg_catalog."default";
	IF NOT FOUND THEN
		RAISE EXCEPTION 'registered model "%" does not exist', model
			USING ERRCODE = 'undefined_object',
				  HINT = 'Models are created by pgpoly.register_model_version().';
	END IF;
END
$$;

-- Raise 42704 unless version exists for an existing model.
CREATE FUNCTION pgpoly._check_model_version(model text, version int)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
BEGIN
	PERFORM pgpoly._check_model(model);
	PERFORM pgpoly._require(version, 'version');
	PERFORM FROM pgpoly.model_versions v
	WHERE v.model_name = _check_model_version.model COLLATE pg_catalog."default"
	  AND v.version = _check_model_version.version;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'model "%" has no version %', model, version
			USING ERRCODE = 'undefined_object',
				  DETAIL = format('Existing versions: 1 to %s.',
								  (SELECT m.last_version FROM pgpoly.registered_models m
								   WHERE m.name = _check_model_version.model COLLATE pg_catalog."default"));
	END IF;
END
$$;

-- Raise 22023 unless kind is a lineage node kind.
CREATE FUNCTION pgpoly._check_kind(kind text, argname text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
BEGIN
	PERFORM pgpoly._require(kind, argname);
	IF NOT kind = ANY (pgpoly._lineage_kinds()) THEN
		RAISE EXCEPTION 'invalid lineage node kind "%"', kind
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Valid kinds: ' || array_to_string(pgpoly._lineage_kinds(), ', ') || '.';
	END IF;
END
$$;

-- Validate a lineage node and return its canonical name: run names are the run's
-- uuid in canonical text form, model_version names are "model@version"; both must
-- exist.  Other kinds are free-form names.
CREATE FUNCTION pgpoly._lineage_node(kind text, name text, argprefix text)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_run   uuid;
	v_model text;
	v_ver   text;
BEGIN
	PERFORM pgpoly._check_kind(kind, argprefix || 'kind');
	PERFORM pgpoly._require_name(name, argprefix || 'name');
	IF kind = 'run' THEN
		IF name !~* '^\{?[0-9a-f]{8}-?([0-9a-f]{4}-?){3}[0-9a-f]{12}\}?$' THEN
			RAISE EXCEPTION 'run node name "%" is not a run id', name
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Run nodes are named by their run_id (a uuid).';
		END IF;
		v_run := name::uuid;
		PERFORM pgpoly._check_run(v_run);
		RETURN v_run::text;
	ELSIF kind = 'model_version' THEN
		v_model := substring(name FROM '^(.+)@[0-9]{1,9}$');
		v_ver := substring(name FROM '@([0-9]{1,9})$');
		IF v_model IS NULL THEN
			RAISE EXCEPTION 'model_version node name "%" is not of the form model@version', name
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'For example ''churn@3''.';
		END IF;
		PERFORM pgpoly._check_model_version(v_model, v_ver::int);
		RETURN v_model || '@' || v_ver::int;
	END IF;
	RETURN name;
END
$$;

-- Insert a lineage edge unless it exists.
CREATE FUNCTION pgpoly._add_edge(src_kind text, src_name text, dst_kind text,
								 dst_name text, relation text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	INSERT INTO pgpoly.lineage_edges (src_kind, src_name, dst_kind, dst_name, relation)
	VALUES ($1, $2, $3, $4, $5)
	ON CONFLICT DO NOTHING
$$;

--
-- Runs
--

CREATE FUNCTION pgpoly.start_run(experiment text, run_name text DEFAULT NULL,
								 params jsonb DEFAULT '{}', tags jsonb DEFAULT '{}')
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_exp bigint;
	v_run uuid;
	v_params jsonb := pgpoly._json_object(start_run.params, 'params');
	v_tags   jsonb := pgpoly._json_object(start_run.tags, 'tags');
BEGIN
	PERFORM pgpoly._require_name(experiment, 'experiment');
	-- create the experiment if new; a concurrent creator makes us wait, then we see it
	SELECT e.experiment_id INTO v_exp FROM pgpoly.experiments e WHERE e.name = experiment COLLATE pg_catalog."default";
	IF NOT FOUND THEN
		INSERT INTO pgpoly.experiments (name) VALUES (experiment)
		ON CONFLICT (name) DO NOTHING
		RETURNING experiment_id INTO v_exp;
		IF v_exp IS NULL THEN
			SELECT e.experiment_id INTO STRICT v_exp
			FROM pgpoly.experiments e WHERE e.name = experiment COLLATE pg_catalog."default";
		END IF;
	END IF;

	INSERT INTO pgpoly.runs (experiment_id, run_name, params, tags)
	VALUES (v_exp, start_run.run_name, v_params, v_tags)
	RETURNING run_id INTO v_run;
	RETURN v_run;
EXCEPTION WHEN program_limit_exceeded THEN
	PERFORM pgpoly._registry_too_long(SQLSTATE, '{experiment,run_name}', ARRAY[experiment, run_name], SQLERRM);
	RAISE;
END
$$;

COMMENT ON FUNCTION pgpoly.start_run(text, text, jsonb, jsonb) IS
	'Start a RUNNING run in an experiment (created if new); returns its run_id';

CREATE FUNCTION pgpoly.log_param(run uuid, key text, value text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_old text;
BEGIN
	PERFORM pgpoly._require_name(key, 'key');
	PERFORM pgpoly._require(value, 'value');
	-- the row lock makes check-then-write atomic against a concurrent log_param
	PERFORM pgpoly._check_run(run, lock => true);
	SELECT r.params ->> log_param.key INTO v_old
	FROM pgpoly.runs r WHERE r.run_id = log_param.run;
	IF v_old IS NULL THEN
		UPDATE pgpoly.runs r
		SET params = r.params || jsonb_build_object(log_param.key, log_param.value)
		WHERE r.run_id = log_param.run;
	ELSIF v_old IS DISTINCT FROM value COLLATE pg_catalog."default" THEN
		RAISE EXCEPTION 'param "%" of run % is already set to a different value', key, run
			USING ERRCODE = 'unique_violation',
				  DETAIL = format('Logged value: %L; new value: %L.', v_old, value),
				  HINT = 'Params are write-once: start a new run for the new value (a number that changes during a run is a metric: pgpoly.log_metric()).';
	END IF;
END
$$;

COMMENT ON FUNCTION pgpoly.log_param(uuid, text, text) IS
	'Set a write-once param of a run (runs.params); logging the same value again is a no-op';

-- log_metric's row (step NULL: 0, ts NULL: now).
CREATE FUNCTION pgpoly._metric_insert(run uuid, key text, value float8, step bigint,
									  ts timestamptz)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	INSERT INTO pgpoly.metrics (run_id, key, value, step, ts)
	VALUES (run, key, value, coalesce(step, 0), coalesce(ts, now()))
$$;

CREATE FUNCTION pgpoly.log_metric(run uuid, key text, value float8, step bigint DEFAULT 0,
								  ts timestamptz DEFAULT now())
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
BEGIN
	PERFORM pgpoly._require_name(key, 'key');
	PERFORM pgpoly._require(value, 'value');
	-- as log_prediction and log_label: a metric's time orders latest_metrics
	IF NOT isfinite(ts) THEN
		RAISE EXCEPTION 'ts must be a finite time, not %', ts
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM pgpoly._check_run(run);
	-- A key near a btree entry's size (2704 bytes with 8 kB pages, which also
	-- hold the entry's header, run_id and step: an incompressible key of 2641
	-- bytes does not fit) may not fit metrics' index even compressed: only
	-- then pay for the subtransaction that turns PostgreSQL's error into one
	-- naming the argument.  A key of at most 2 kB always fits.
	IF octet_length(key) <= 2048 THEN
		PERFORM pgpoly._metric_insert(run, key, value, step, ts);
		RETURN;
	END IF;
	BEGIN
		PERFORM pgpoly._metric_insert(run, key, value, step, ts);
	EXCEPTION WHEN program_limit_exceeded THEN
		PERFORM pgpoly._registry_too_long(SQLSTATE, '{key}', ARRAY[key], SQLERRM);
		RAISE;
	END;
END
$$;

COMMENT ON FUNCTION pgpoly.log_metric(uuid, text, float8, bigint, timestamptz) IS
	'Append a metric value to a run''s history (see view latest_metrics)';

CREATE FUNCTION pgpoly.end_run(run uuid, status text DEFAULT 'FINISHED')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_status text := upper(end_run.status);
BEGIN
	PERFORM pgpoly._require(status, 'status');
	IF v_status COLLATE pg_catalog."default" NOT IN ('FINISHED', 'FAILED', 'KILLED') THEN
		RAISE EXCEPTION 'invalid status "%" for ending a run', status
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A run ends as FINISHED, FAILED or KILLED; RUNNING is the status of a started run.';
	END IF;
	PERFORM pgpoly._check_run(run);
	-- ending an ended run changes its status but keeps its first end_time
	UPDATE pgpoly.runs r
	SET status = v_status,
		end_time = coalesce(r.end_time, greatest(now(), r.start_time))
	WHERE r.run_id = end_run.run;
END
$$;

COMMENT ON FUNCTION pgpoly.end_run(uuid, text) IS
	'End a run as FINISHED (default), FAILED or KILLED';

-- Raise 22023 if an optional version argument is the empty string.
CREATE FUNCTION pgpoly._check_version_text(version text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
BEGIN
	IF version COLLATE pg_catalog."default" = '' THEN
		RAISE EXCEPTION 'argument "version" must not be empty'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass NULL for the newest version.';
	END IF;
END
$$;

-- The dataset_id of the newest version of dataset name (NULL: none).
CREATE FUNCTION pgpoly._dataset_newest(name text)
RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT max(d.dataset_id) FROM pgpoly.datasets d WHERE d.name = $1 COLLATE pg_catalog."default"
$$;

CREATE FUNCTION pgpoly.register_dataset(name text, uri text DEFAULT NULL,
										store text DEFAULT 'postgres', version text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
BEGIN
	PERFORM pgpoly._require_name(name, 'name');
	PERFORM pgpoly._require_name(store, 'store');
	PERFORM pgpoly._check_version_text(version);
	-- without a version: update the newest version's entry (a NULL uri keeps the
	-- old one), or create the unversioned entry of a new name
	IF version IS NULL THEN
		UPDATE pgpoly.datasets d
		SET uri = coalesce(register_dataset.uri, d.uri),
			store = register_dataset.store,
			updated_at = now()
		WHERE d.dataset_id = pgpoly._dataset_newest(register_dataset.name);
		IF FOUND THEN
			RETURN;
		END IF;
	END IF;
	-- a new version is a new row; registering a known version again updates it
	INSERT INTO pgpoly.datasets AS d (name, uri, store, version)
	VALUES (register_dataset.name, register_dataset.uri, register_dataset.store,
			register_dataset.version)
	ON CONFLICT ON CONSTRAINT datasets_name_version_key DO UPDATE
	SET uri = coalesce(EXCLUDED.uri, d.uri),
		store = EXCLUDED.store,
		updated_at = now();
EXCEPTION WHEN program_limit_exceeded THEN
	PERFORM pgpoly._registry_too_long(SQLSTATE, '{name,version}', ARRAY[name, version], SQLERRM);
	RAISE;
END
$$;

COMMENT ON FUNCTION pgpoly.register_dataset(text, text, text, text) IS
	'Register a dataset version (a new version keeps the old ones), or update the newest entry of a dataset when version is NULL';

-- The dataset_id of version of dataset name (NULL: its newest version); a version
-- or dataset not registered yet is registered with defaults, as MLflow's
-- log_input does.
CREATE FUNCTION pgpoly._dataset_version_id(name text, version text)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_id bigint;
BEGIN
	IF version IS NULL THEN
		v_id := pgpoly._dataset_newest(name);
		IF v_id IS NOT NULL THEN
			RETURN v_id;
		END IF;
	END IF;
	INSERT INTO pgpoly.datasets (name, version)
	VALUES (_dataset_version_id.name, _dataset_version_id.version)
	ON CONFLICT ON CONSTRAINT datasets_name_version_key DO NOTHING;
	SELECT d.dataset_id INTO STRICT v_id FROM pgpoly.datasets d
	WHERE d.name = _dataset_version_id.name COLLATE pg_catalog."default"
	  AND d.version IS NOT DISTINCT FROM _dataset_version_id.version COLLATE pg_catalog."default";
	RETURN v_id;
END
$$;

CREATE FUNCTION pgpoly.log_input(run uuid, dataset text, version text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
BEGIN
	PERFORM pgpoly._require_name(dataset, 'dataset');
	PERFORM pgpoly._check_version_text(version);
	PERFORM pgpoly._check_run(run);
	INSERT INTO pgpoly.run_inputs (run_id, dataset_id)
	VALUES (run, pgpoly._dataset_version_id(dataset, version))
	ON CONFLICT DO NOTHING;
	PERFORM pgpoly._add_edge('dataset', dataset, 'run', run::text, 'input');
EXCEPTION WHEN program_limit_exceeded THEN
	-- an unknown dataset is registered: its name and version have the
	-- limit register_dataset reports
	PERFORM pgpoly._registry_too_long(SQLSTATE, '{dataset,version}', ARRAY[dataset, version], SQLERRM);
	RAISE;
END
$$;

COMMENT ON FUNCTION pgpoly.log_input(uuid, text, text) IS
	'Record that a run consumed a dataset version (NULL: the newest) in run_inputs, and the lineage edge dataset -> run';

-- The expression _dataset_content_hash hashes for column col (of type typ,
-- collation coll) of the row t: fields whose hash functions tell apart every
-- two values that differ.  Types whose hash is that of their equality, which
-- holds different values equal, are hashed otherwise: text-like ones in the
-- "C" collation (byte-wise), enums through their labels (an enum's hash is its
-- label's OID, which differs from one database to the next), numeric with its
-- scale (1.0 = 1.00), arrays with their dimensions (the array hash sees only
-- the elements: {1,2,3,4}, {{1,2},{3,4}} and [0:3]={1,2,3,4} hash alike);
-- any other type (citext, interval: '1 mon' = '30 days', composites, ranges,
-- jsonb, json ...) through its text form in the "C" collation, under the
-- caller's pinned settings.  Domains count as their base type.
CREATE FUNCTION pgpoly._hash_column_expr(col name, typ oid, coll oid)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	t        pg_type;
	is_array bool := false;
	c        text := format('t.%I', col);
	exact    oid[] := ARRAY['int2', 'int4', 'int8', 'oid', 'bool', 'float4', 'float8',
							'date', 'time', 'timestamp', 'timestamptz', 'uuid', 'bytea',
							'"char"', 'name', 'text', 'varchar', 'bpchar', 'timetz']::regtype[]::oid[];
	v_coll   text := CASE WHEN coll <> 0 THEN ' COLLATE pg_catalog."C"' ELSE '' END;
BEGIN
	LOOP
		SELECT * INTO t FROM pg_type WHERE oid = typ;
		IF t.typtype = 'd' THEN
			typ := t.typbasetype;
		ELSIF t.typcategory = 'A' AND t.typelem <> 0 AND NOT is_array THEN
			is_array := true;
			typ := t.typelem;
		ELSE
			EXIT;
		END IF;
	END LOOP;
	IF t.typtype = 'e' THEN
		RETURN c || '::pg_catalog.text' || CASE WHEN is_array
			THEN '[], pg_catalog.array_dims(' || c || ') COLLATE pg_catalog."C"' ELSE '' END;
	ELSIF typ = ANY (exact) THEN
		RETURN c || v_coll || CASE WHEN is_array
			THEN ', pg_catalog.array_dims(' || c || ') COLLATE pg_catalog."C"' ELSE '' END;
	ELSIF typ = 'numeric'::regtype AND NOT is_array THEN
		RETURN c || ', pg_catalog.scale(' || c || ')';
	END IF;
	RETURN c || '::pg_catalog.text COLLATE pg_catalog."C"';
END
$$;

-- The expression of _dataset_content_hash's row sums over rows row_expr (a
-- ROW(...) of the columns): the row count and two sums of each row's 64-bit
-- hash mixed once more; over: '' (an aggregate) or ' OVER ()' (the same
-- totals on every row, get_historical_features).  Qualified: it runs under
-- the caller's search_path there.
CREATE FUNCTION pgpoly._dataset_hash_sums(row_expr text, over text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT format('pg_catalog.concat_ws('' '', pg_catalog.count(*)%2$s, '
				  'pg_catalog.sum(pg_catalog.hashint8extended(pg_catalog.hash_record_extended(%1$s, 0), 0))%2$s, '
				  'pg_catalog.sum(pg_catalog.hashint8extended(pg_catalog.hash_record_extended(%1$s, 1), 1))%2$s)',
				  $1, $2)
$$;

-- The content hash text of _dataset_content_hash from its method, column list
-- (names and types) and row sums (count, then the two sums): also used by
-- get_historical_features for the rows it returns.
CREATE FUNCTION pgpoly._dataset_hash_text(method text, cols text, sums text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT $1 || ':' || encode(sha256(convert_to(coalesce($2, '') || E'\n' || $3, 'UTF8')), 'hex')
$$;

-- The content hash of the rows of rel, independent of their physical order:
-- sha256 over the column names and types, the row count, and two sums over
-- the rows of a 64-bit hash of each row (hash_record_extended, seeds 0 and 1:
-- the hash functions of the column types, so equal values hash alike), each
-- mixed once more (hashint8extended) before it is summed: the row hash
-- combines its columns linearly, so a plain sum would depend only on each
-- column's values and not on which row holds them (labels swapped between
-- two entities would hash alike).  Each column is hashed as
-- _hash_column_expr says (the "C" collation, enum labels, numeric scale,
-- array dimensions, text forms), so that values equal but different
-- ('yes' and 'YES' in a case-insensitive collation or citext, 1.0 and 1.00,
-- '1 mon' and '30 days') hash otherwise.  The row is built from the columns
-- qualified by the table's alias (a column named t would otherwise stand for
-- the row).  Text forms are made under pinned settings (every setting an
-- output function reads: DateStyle, TimeZone, IntervalStyle,
-- extra_float_digits, bytea_output, lc_monetary); a type without a hash
-- function, if one is still met, has the whole table hashed through the rows'
-- text forms (pgpoly-text-v1).  The prefix names the method.  It detects
-- changed data; it is not meant to resist deliberate collisions.
CREATE FUNCTION pgpoly._dataset_content_hash(rel regclass)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
SET datestyle = 'ISO, YMD'
SET timezone = 'UTC'
SET intervalstyle = 'postgres'
SET extra_float_digits = 1
SET bytea_output = 'hex'
SET lc_monetary = 'C'
AS $$
DECLARE
	v_cols   text;
	v_row    text;
	v_sums   text;
	v_method text := 'pgpoly-rows-v3';
BEGIN
	SELECT string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod),
					  ', ' ORDER BY a.attnum),
		   'ROW(' || coalesce(string_agg(
			   pgpoly._hash_column_expr(a.attname, a.atttypid, a.attcollation),
			   ', ' ORDER BY a.attnum), '') || ')'
	INTO v_cols, v_row
	FROM pg_attribute a
	WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped;
	BEGIN
		EXECUTE format('SELECT %s FROM %s t', pgpoly._dataset_hash_sums(v_row, ''), rel)
		INTO v_sums;
	EXCEPTION WHEN undefined_function THEN
		v_method := 'pgpoly-text-v1';
		EXECUTE format('SELECT concat_ws('' '', count(*), '
					   'sum((''x'' || substr(md5(%1$s::text), 1, 16))::bit(64)::bigint), '
					   'sum((''x'' || substr(md5(%1$s::text), 17, 16))::bit(64)::bigint)) FROM %2$s t',
					   v_row, rel)
		INTO v_sums;
	END;
	RETURN pgpoly._dataset_hash_text(v_method, v_cols, v_sums);
END
$$;

-- Record that dataset name now holds the content whose hash is hash
-- (create_training_set, get_historical_features with a dataset), without
-- rewriting what runs consumed: the newest version keeps it when it has the
-- same hash, or has none yet and no run logged it (a version registered
-- ahead); otherwise the content is a new version, 'auto-<n>' with n the
-- name's count of versions + 1 (the next free n: never a version a user
-- registered), carrying the newest's uri.  A name's first content is its
-- unversioned entry.  Serialised per name by a transaction advisory lock
-- (class: hashtext of 'pgpoly.datasets'), so that sessions recording the same
-- name at once make one version each and never the same one; under READ
-- COMMITTED each statement after the lock sees the other's commit (under
-- REPEATABLE READ a version committed after the snapshot makes the INSERT
-- conflict: 40001, retry).  Returns the dataset_id.
CREATE FUNCTION pgpoly._dataset_record_content(name text, hash text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	d       pgpoly.datasets;
	v_n     bigint;
	v_id    bigint;
BEGIN
	PERFORM pg_advisory_xact_lock(hashtext('pgpoly.datasets'), hashtext(name));
	SELECT * INTO d FROM pgpoly.datasets x
	WHERE x.dataset_id = pgpoly._dataset_newest(_dataset_record_content.name);
	IF NOT FOUND THEN
		INSERT INTO pgpoly.datasets AS x (name, store, content_hash)
		VALUES (_dataset_record_content.name, 'postgres', hash)
		RETURNING x.dataset_id INTO v_id;
		RETURN v_id;
	END IF;
	IF d.content_hash = hash
	   OR (d.content_hash IS NULL
		   AND NOT EXISTS (SELECT FROM pgpoly.run_inputs i WHERE i.dataset_id = d.dataset_id)) THEN
		UPDATE pgpoly.datasets x
		SET content_hash = hash, store = 'postgres', updated_at = now()
		WHERE x.dataset_id = d.dataset_id;
		RETURN d.dataset_id;
	END IF;
	SELECT count(*) + 1 INTO v_n FROM pgpoly.datasets x
	WHERE x.name = _dataset_record_content.name COLLATE pg_catalog."default";
	WHILE EXISTS (SELECT FROM pgpoly.datasets x
				  WHERE x.name = _dataset_record_content.name COLLATE pg_catalog."default"
					AND x.version = ('auto-' || v_n) COLLATE pg_catalog."default") LOOP
		v_n := v_n + 1;
	END LOOP;
	INSERT INTO pgpoly.datasets AS x (name, version, uri, store, content_hash)
	VALUES (_dataset_record_content.name, 'auto-' || v_n, d.uri, 'postgres', hash)
	RETURNING x.dataset_id INTO v_id;
	RETURN v_id;
EXCEPTION
	WHEN program_limit_exceeded THEN
		PERFORM pgpoly._registry_too_long(SQLSTATE, '{name}', ARRAY[name], SQLERRM);
		RAISE;
	WHEN unique_violation THEN	-- a version this snapshot could not see (REPEATABLE READ)
		RAISE EXCEPTION 'could not record a new version of dataset "%": a concurrent transaction added one', name
			USING ERRCODE = 'serialization_failure',
				  HINT = 'Retry the transaction.';
END
$$;

--
-- Tags
--

CREATE FUNCTION pgpoly.set_tag(run uuid, key text, value text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
BEGIN
	PERFORM pgpoly._require_name(key, 'key');
	PERFORM pgpoly._require(value, 'value');
	PERFORM pgpoly._check_run(run);
	UPDATE pgpoly.runs r SET tags = r.tags || jsonb_build_object(set_tag.key, set_tag.value)
	WHERE r.run_id = set_tag.run;
END
$$;

COMMENT ON FUNCTION pgpoly.set_tag(uuid, text, text) IS
	'Set a tag of a run (runs.tags); unlike params, tags can be changed at any time';

CREATE FUNCTION pgpoly.delete_tag(run uuid, key text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
BEGIN
	PERFORM pgpoly._require_name(key, 'key');
	PERFORM pgpoly._check_run(run);
	UPDATE pgpoly.runs r SET tags = r.tags - delete_tag.key
	WHERE r.run_id = delete_tag.run AND r.tags ? delete_tag.key;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'run % has no tag "%"', run, key
			USING ERRCODE = 'undefined_object';
	END IF;
END
$$;

COMMENT ON FUNCTION pgpoly.delete_tag(uuid, text) IS
	'Remove a tag of a run';

--
-- Model registry
--

CREATE FUNCTION pgpoly.register_model_version(model text, source_uri text, run uuid DEFAULT NULL,
											  tags jsonb DEFAULT '{}')
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_version int;
	v_tags jsonb := pgpoly._json_object(register_model_version.tags, 'tags');
BEGIN
	PERFORM pgpoly._require_name(model, 'model');
	PERFORM pgpoly._require_name(source_uri, 'source_uri');
	IF run IS NOT NULL THEN
		PERFORM pgpoly._check_run(run);
	END IF;
	-- The counter row serialises registrations of one model: a concurrent caller
	-- waits on the row lock, then increments the committed value.  (Under REPEATABLE
	-- READ or SERIALIZABLE the waiter gets a serialization failure instead, to retry.)
	INSERT INTO pgpoly.registered_models AS m (name, last_version)
	VALUES (model, 1)
	ON CONFLICT (name) DO UPDATE SET last_version = m.last_version + 1
	RETURNING m.last_version INTO v_version;

	INSERT INTO pgpoly.model_versions (model_name, version, run_id, source_uri, tags)
	VALUES (model, v_version, run, source_uri, v_tags);
	IF run IS NOT NULL THEN
		PERFORM pgpoly._add_edge('run', run::text, 'model_version',
								 model || '@' || v_version, 'output');
	END IF;
	RETURN v_version;
EXCEPTION WHEN program_limit_exceeded THEN
	PERFORM pgpoly._registry_too_long(SQLSTATE, '{model}', ARRAY[model], SQLERRM);
	RAISE;
END
$$;

COMMENT ON FUNCTION pgpoly.register_model_version(text, text, uuid, jsonb) IS
	'Register the next version (1, 2, 3 ...) of a model, created if new; returns the version';

CREATE FUNCTION pgpoly.set_model_alias(model text, alias text, version int)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_slot int;
	v_open tstzrange;
	v_open_version int;
	v_now timestamptz;
BEGIN
	PERFORM pgpoly._require_name(alias, 'alias');
	-- 'model@alias' (log_prediction) splits at the last '@': such an alias could
	-- never be named there, and would make the text of another model's alias
	IF strpos(alias COLLATE pg_catalog."default", '@') > 0 THEN
		RAISE EXCEPTION 'alias "%" must not contain "@"', alias
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'An alias is named as ''model@alias'', which splits at the last "@".';
	END IF;
	PERFORM pgpoly._check_model_version(model, version);

	-- the slot row lock serialises moves of this alias, so history stays ordered
	INSERT INTO pgpoly.model_alias_slots (model_name, alias)
	VALUES (model, alias) ON CONFLICT DO NOTHING;
	SELECT s.slot_id INTO STRICT v_slot FROM pgpoly.model_alias_slots s
	WHERE s.model_name = model COLLATE pg_catalog."default" AND s.alias = set_model_alias.alias COLLATE pg_catalog."default" FOR UPDATE;

	SELECT h.valid, h.version INTO v_open, v_open_version
	FROM pgpoly.model_alias_history h
	WHERE h.alias_slot = v_slot AND upper_inf(h.valid);
	IF v_open_version = version THEN
		RETURN;								-- already there: no new history
	END IF;

	-- clock time, not transaction time: moves of one alias within one transaction
	-- must still get ordered ranges.  Never go back before the open range.
	v_now := greatest(clock_timestamp(), lower(v_open));
	PERFORM pgpoly._close_alias_range(v_slot, v_open, v_now);
	INSERT INTO pgpoly.model_alias_history (model_name, alias, version, valid, alias_slot)
	VALUES (model, alias, version, tstzrange(v_now, NULL), v_slot);

	INSERT INTO pgpoly.model_aliases AS a (model_name, alias, version)
	VALUES (model, alias, version)
	ON CONFLICT ON CONSTRAINT model_aliases_pkey DO UPDATE SET version = EXCLUDED.version;
EXCEPTION WHEN program_limit_exceeded THEN
	PERFORM pgpoly._registry_too_long(SQLSTATE, '{model,alias}', ARRAY[model, alias], SQLERRM);
	RAISE;
END
$$;

COMMENT ON FUNCTION pgpoly.set_model_alias(text, text, int) IS
	'Point an alias at an existing version; the move is recorded in model_alias_history';

-- Close the open history range of an alias slot at time t (no-op when there is no
-- open range).  A range that would be empty (set and moved at the same instant) was
-- never observable and is removed.
CREATE FUNCTION pgpoly._close_alias_range(slot int, open tstzrange, t timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
BEGIN
	IF open IS NULL THEN
		RETURN;
	ELSIF lower(open) < t THEN
		UPDATE pgpoly.model_alias_history h SET valid = tstzrange(lower(h.valid), t)
		WHERE h.alias_slot = slot AND upper_inf(h.valid);
	ELSE
		DELETE FROM pgpoly.model_alias_history h
		WHERE h.alias_slot = slot AND upper_inf(h.valid);
	END IF;
END
$$;

CREATE FUNCTION pgpoly.delete_model_alias(model text, alias text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_slot int;
	v_open tstzrange;
BEGIN
	PERFORM pgpoly._check_model(model);
	PERFORM pgpoly._require_name(alias, 'alias');
	SELECT s.slot_id INTO v_slot FROM pgpoly.model_alias_slots s
	WHERE s.model_name = model COLLATE pg_catalog."default" AND s.alias = delete_model_alias.alias COLLATE pg_catalog."default" FOR UPDATE;
	DELETE FROM pgpoly.model_aliases a
	WHERE a.model_name = model COLLATE pg_catalog."default" AND a.alias = delete_model_alias.alias COLLATE pg_catalog."default";
	IF NOT FOUND THEN
		RAISE EXCEPTION 'model "%" has no alias "%"', model, alias
			USING ERRCODE = 'undefined_object';
	END IF;
	SELECT h.valid INTO v_open FROM pgpoly.model_alias_history h
	WHERE h.alias_slot = v_slot AND upper_inf(h.valid);
	PERFORM pgpoly._close_alias_range(v_slot, v_open, greatest(clock_timestamp(), lower(v_open)));
END
$$;

COMMENT ON FUNCTION pgpoly.delete_model_alias(text, text) IS
	'Remove an alias; its history range is closed';

CREATE FUNCTION pgpoly.model_version_by_alias(model text, alias text)
RETURNS int
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_version int;
BEGIN
	PERFORM pgpoly._require_name(alias, 'alias');
	SELECT a.version INTO v_version FROM pgpoly.model_aliases a
	WHERE a.model_name = model COLLATE pg_catalog."default" AND a.alias = model_version_by_alias.alias COLLATE pg_catalog."default";
	IF NOT FOUND THEN
		PERFORM pgpoly._check_model(model);
		RAISE EXCEPTION 'model "%" has no alias "%"', model, alias
			USING ERRCODE = 'undefined_object',
				  HINT = 'Set it with pgpoly.set_model_alias().';
	END IF;
	RETURN v_version;
END
$$;

COMMENT ON FUNCTION pgpoly.model_version_by_alias(text, text) IS
	'The version an alias points to; ERROR if the model has no such alias';

--
-- Lineage
--

CREATE FUNCTION pgpoly.add_lineage(src_kind text, src_name text, dst_kind text, dst_name text,
								   relation text DEFAULT 'derived')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	-- kinds and names as spelt, whatever the collation they are given in
	v_src text := pgpoly._lineage_node(src_kind COLLATE pg_catalog."default", src_name COLLATE pg_catalog."default", 'src_');
	v_dst text := pgpoly._lineage_node(dst_kind COLLATE pg_catalog."default", dst_name COLLATE pg_catalog."default", 'dst_');
BEGIN
	PERFORM pgpoly._require_name(relation, 'relation');
	IF (src_kind, v_src) = (dst_kind COLLATE pg_catalog."default", v_dst COLLATE pg_catalog."default") THEN
		RAISE EXCEPTION 'lineage edge from % "%" to itself', src_kind, src_name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- recording a known edge again is a no-op
	PERFORM pgpoly._add_edge(src_kind, v_src, dst_kind, v_dst, relation);
EXCEPTION WHEN program_limit_exceeded THEN
	PERFORM pgpoly._registry_too_long(SQLSTATE, '{src_name,dst_name,relation}', ARRAY[src_name, dst_name, relation], SQLERRM);
	RAISE;
END
$$;

COMMENT ON FUNCTION pgpoly.add_lineage(text, text, text, text, text) IS
	'Record a lineage edge src -> dst (dst derived from / consumed src)';

-- The lineage walk as one recursive query: every node reachable upstream and/or
-- downstream of (kind, name) within max_depth (<= 16383) edges, once, at its
-- minimal depth, with one edge that reached it: the one from the smallest (parent
-- kind, parent name, relation) among the parents one level closer.  A node reached
-- both ways (only on a cycle) is reported at its smaller depth; at equal depths
-- with its upstream edge.  The start node itself is not reported.
--
-- How it stays linear in the edges walked.  A row's depth is written as the scale
-- of the number 1 (1, 1.0, 1.00 ...; multiplying by 1.0 adds one).  Numerics that
-- differ only in scale are equal and hash alike, so UNION, which discards every row
-- equal to one the recursion has already produced, discards a row met again at a
-- greater depth: its hash table is the walk's visited set.  Each step emits two
-- rows per edge out of the frontier: a node row (parent columns NULL), the only
-- kind that is expanded further, so every node is expanded once, however many
-- paths lead to it, and cycles end the walk; and an edge row (the edge's parent
-- and relation), kept once per edge, at its parent's minimal depth + 1.  UNION
-- evaluates level by level, so a node's smallest edge-row depth is its minimal
-- depth, and the edge rows at that depth are exactly the edges from the level
-- above, among which the parent rule picks.  The numeric scale is at most 16383,
-- the depth bound.
CREATE FUNCTION pgpoly._lineage_walk(kind text, name text, upstream bool, downstream bool,
									 max_depth int)
RETURNS TABLE (depth int, node_kind text, node_name text, relation text,
			   parent_kind text, parent_name text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	WITH RECURSIVE
	up_walk (kind, name, pkind, pname, relation, mark) AS (
		SELECT $1, $2, NULL::text, NULL::text, NULL::text, 1::numeric WHERE $3
		UNION
		SELECT e.src_kind, e.src_name, x.pkind, x.pname, x.relation, w.mark * 1.0
		FROM up_walk w
		JOIN pgpoly.lineage_edges e ON e.dst_kind = w.kind AND e.dst_name = w.name
		CROSS JOIN LATERAL (VALUES (NULL, NULL, NULL), (e.dst_kind, e.dst_name, e.relation))
			AS x (pkind, pname, relation)
		WHERE w.pkind IS NULL AND scale(w.mark) < least($5, 16383)),
	down_walk (kind, name, pkind, pname, relation, mark) AS (
		SELECT $1, $2, NULL::text, NULL::text, NULL::text, 1::numeric WHERE $4
		UNION
		SELECT e.dst_kind, e.dst_name, x.pkind, x.pname, x.relation, w.mark * 1.0
		FROM down_walk w
		JOIN pgpoly.lineage_edges e ON e.src_kind = w.kind AND e.src_name = w.name
		CROSS JOIN LATERAL (VALUES (NULL, NULL, NULL), (e.src_kind, e.src_name, e.relation))
			AS x (pkind, pname, relation)
		WHERE w.pkind IS NULL AND scale(w.mark) < least($5, 16383))
	SELECT DISTINCT ON (a.kind, a.name)
		   scale(a.mark), a.kind, a.name, a.relation, a.pkind, a.pname
	FROM (SELECT true AS up, u.* FROM up_walk u WHERE u.pkind IS NOT NULL
		  UNION ALL
		  SELECT false, d.* FROM down_walk d WHERE d.pkind IS NOT NULL) AS a
	WHERE (a.kind, a.name) <> ($1, $2)
	ORDER BY a.kind, a.name, scale(a.mark), a.up DESC, a.pkind, a.pname, a.relation
$$;

-- Raise 54000: the walk reached the depth bound of _lineage_walk while the caller
-- asked for more.  Called only in that case (see _lineage).
CREATE FUNCTION pgpoly._lineage_too_deep(max_depth int)
RETURNS bool
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
BEGIN
	RAISE EXCEPTION 'lineage walks deeper than 16383 levels are not supported (max_depth %)', max_depth
		USING ERRCODE = 'program_limit_exceeded',
			  HINT = 'Pass max_depth => 16383 or less.';
END
$$;

-- Validate the arguments of lineage() and run the walk(s).
CREATE FUNCTION pgpoly._lineage(kind text, name text, direction text, max_depth int)
RETURNS TABLE (depth int, node_kind text, node_name text, relation text,
			   parent_kind text, parent_name text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_dir text := lower(direction);
	v_name text;
BEGIN
	PERFORM pgpoly._require(direction, 'direction');
	IF v_dir NOT IN ('upstream', 'downstream', 'both') THEN
		RAISE EXCEPTION 'invalid lineage direction "%"', direction
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Valid directions: upstream, downstream, both.';
	END IF;
	PERFORM pgpoly._require(max_depth, 'max_depth');
	IF max_depth < 0 THEN
		RAISE EXCEPTION 'max_depth must not be negative (got %)', max_depth
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	v_name := pgpoly._lineage_node(kind, name, '');
	-- runs and model versions were checked above; any other node must be registered
	-- (datasets, feature views) or appear in some edge
	IF kind NOT IN ('run', 'model_version')
	   AND NOT (kind = 'dataset' AND EXISTS (SELECT FROM pgpoly.datasets d
											 WHERE d.name = v_name))
	   AND NOT (kind = 'feature_view' AND EXISTS (SELECT FROM pgpoly.feature_views f
												  WHERE f.name = v_name))
	   AND NOT EXISTS (SELECT FROM pgpoly.lineage_edges e
					   WHERE e.src_kind = _lineage.kind AND e.src_name = v_name)
	   AND NOT EXISTS (SELECT FROM pgpoly.lineage_edges e
					   WHERE e.dst_kind = _lineage.kind AND e.dst_name = v_name) THEN
		RAISE EXCEPTION 'lineage node % "%" does not exist', kind, name
			USING ERRCODE = 'undefined_object',
				  HINT = 'Record edges with pgpoly.add_lineage(), datasets with pgpoly.register_dataset().';
	END IF;

	-- one walk per direction asked for ('both' is the union of the two, never
	-- up-then-down, which would give siblings); deeper than the walk's bound is an
	-- ERROR, not a silently cut answer
	RETURN QUERY
		SELECT w.* FROM pgpoly._lineage_walk(kind, v_name, v_dir <> 'downstream',
											 v_dir <> 'upstream', max_depth) w
		WHERE w.depth < 16383 OR max_depth <= 16383 OR pgpoly._lineage_too_deep(max_depth)
		ORDER BY w.depth, w.node_kind, w.node_name;
END
$$;

-- A SQL-language wrapper: PL/pgSQL cannot have an argument and a result column both
-- named kind/name, which the contract requires.
CREATE FUNCTION pgpoly.lineage(kind text, name text, direction text DEFAULT 'upstream',
							   max_depth int DEFAULT 20)
RETURNS TABLE (depth int, kind text, name text, relation text,
			   parent_kind text, parent_name text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	-- the default collation, whatever the arguments'
	SELECT * FROM pgpoly._lineage($1 COLLATE pg_catalog."default", $2 COLLATE pg_catalog."default", $3 COLLATE pg_catalog."default", $4)
$$;

COMMENT ON FUNCTION pgpoly.lineage(text, text, text, int) IS
	'Walk the lineage graph upstream, downstream or both from a node; each reachable node once, at its minimal depth (1 = direct neighbour), with the edge that reached it';
