-- extension/36_monitoring.sql
--	  Inference data and monitoring: the prediction log (partitioned by month),
--	  ground-truth labels, feature statistics and drift (PSI, Kolmogorov-Smirnov).
--
-- Contract: API.md section 6.  Design invariants kept by this file:
--	* pgpoly.predictions is range-partitioned on ts by calendar month (UTC), one
--	  partition pgpoly.predictions_YYYY_MM per month (_YYYY_MM_bc for a month BC),
--	  created when the first row of the month is logged (or ahead of time by
--	  create_prediction_partitions).  A creator takes SHARE UPDATE EXCLUSIVE on
--	  the parent, which serialises creators but not inserts or reads, re-checks
--	  under that lock (the lock also makes committed partitions visible), and
--	  attaches an empty table (ATTACH needs no ACCESS EXCLUSIVE lock).  A writer
--	  creates missing months before it locks anything of the table (the lock
--	  order of DETACH ... CONCURRENTLY: SHARE UPDATE EXCLUSIVE on the parent,
--	  then the partition), then
--	  locks the partitions of its months before its INSERT (_lock_partitions):
--	  a partition found by name can belong to a creator that has committed but
--	  not yet sent its invalidations, which the writer's cached partition
--	  descriptor needs (else: "no partition found for row"); the creator holds
--	  the new partition until then.  Each partition gets its primary key (prediction_id,
--	  from the parent's one identity sequence) and its indexes when it is created;
--	  the parent has none, because pg_dump dumps the partitions (not extension
--	  members) as tables with their indexes, which indexes of the extension's
--	  parent would duplicate on restore.  Partitions are created by a SECURITY
--	  DEFINER function, so they belong to the extension's owner like their parent,
--	  and writers need no right to create tables (INSERT on pgpoly.predictions,
--	  SELECT on its prediction_id, and read access to the registry).
--	* Logging is one set-based INSERT whatever the number of rows (for
--	  log_predictions, where the table has no triggers or row-level security,
--	  the same insertion done in C by _prediction_insert, in batches per
--	  partition as COPY does): no row is written unless all are (a bad row is an
--	  ERROR naming its position), 'name@alias' is resolved against model_aliases
--	  at call time and the resolved version is stored.  Errors: 42704 unknown
--	  model, version or alias; 22004 a required value is NULL; 22023 anything else
--	  malformed.  There is no foreign key from predictions to model_versions: the
--	  functions check, and deleting a model version does not touch its history.
--	* drift() runs one statement per feature, exactly as API.md 6 defines it:
--	  categories are counted in SQL; a numeric column's non-null values are
--	  gathered by one scan of each side and binned and compared by a sort and
--	  a merge in C (src/drift.c, _drift_numeric_bins); PSI is computed from
--	  the bin counts in SQL for both (_psi).  The reference and current
--	  relations are the caller's SQL (a table name or a query) and run with the
--	  caller's rights and search_path, so the functions that run them do not
--	  pin search_path and qualify every function, aggregate, operator and type
--	  they name themselves (pg_catalog.count, OPERATOR(pg_catalog.=) ...): the
--	  caller's search_path may hold better matches than pg_catalog's
--	  polymorphic functions, or put a schema before pg_catalog.  What needs no
--	  caller's SQL (checking the arguments, choosing the features) is done by
--	  functions that pin search_path.

--
-- The prediction log
--

CREATE TABLE pgpoly.predictions (
	prediction_id bigint GENERATED ALWAYS AS IDENTITY,
	model_name    text NOT NULL CONSTRAINT predictions_model_name_check CHECK (model_name <> ''),
	version       int NOT NULL CONSTRAINT predictions_version_check CHECK (version > 0),
	entity        text,
	features      jsonb,
	prediction    jsonb NOT NULL,
	confidence    float8,
	latency_ms    float8 CONSTRAINT predictions_latency_ms_check CHECK (latency_ms >= 0),
	request_id    text CONSTRAINT predictions_request_id_check CHECK (request_id <> ''),
	ts            timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (ts);

COMMENT ON TABLE pgpoly.predictions IS
	'Prediction log, partitioned by month of ts (UTC): pgpoly.predictions_YYYY_MM';

-- Ground truth, one label per request (logged again: replaced).  A request
-- id is any text, of any length: it is unique through a hash index (a
-- btree's entries are limited to a third of a page, ~2.7 kB, and a longer
-- id would fail the INSERT with an error about the index), and so is the
-- predictions' index on it (_prediction_partitions).
CREATE TABLE pgpoly.prediction_labels (
	request_id text NOT NULL CONSTRAINT prediction_labels_request_id_check CHECK (request_id <> ''),
	label      jsonb NOT NULL,
	ts         timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT prediction_labels_request_id_key EXCLUDE USING hash (request_id WITH =)
);

-- security_invoker: the caller reads the predictions and labels with their own
-- privileges and row-level security policies (see latest_metrics).
CREATE VIEW pgpoly.labeled_predictions WITH (security_invoker = true) AS
	SELECT p.prediction_id, p.model_name, p.version, p.entity, p.features, p.prediction,
		   p.confidence, p.latency_ms, p.request_id, p.ts, l.label, l.ts AS label_ts
	FROM pgpoly.predictions p
	JOIN pgpoly.prediction_labels l ON l.request_id = p.request_id;

COMMENT ON VIEW pgpoly.labeled_predictions IS
	'Predictions that have a ground-truth label (joined on request_id)';

-- The partitions hold the data and are dumped as ordinary tables; the labels and
-- the id sequence are extension tables whose contents pg_dump must keep.
SELECT pg_catalog.pg_extension_config_dump('pgpoly.prediction_labels', '');
SELECT pg_catalog.pg_extension_config_dump(
	pg_catalog.pg_get_serial_sequence('pgpoly.predictions', 'prediction_id')::regclass, '');

-- The name of the partition holding month m (a month start in UTC); a month
-- BC gets the suffix _bc (YYYY is the year without its era, and March 44 BC
-- must not take the name of March 44).
CREATE FUNCTION pgpoly._prediction_partition_name(m timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT 'predictions_' || to_char(m AT TIME ZONE 'UTC', 'YYYY_MM')
		   || CASE WHEN m < '0001-01-01 00:00:00+00' THEN '_bc' ELSE '' END
$$;

-- Whether t is in a month pgpoly.predictions can have a partition for: a
-- whole month of the timestamptz range, December 4714 BC to November
-- 294276 (the first month's start and the last one's end are out of range:
-- its rows failed with a bare "timestamp out of range").  False for the
-- infinities.
CREATE FUNCTION pgpoly._prediction_month_ok(t timestamptz)
RETURNS bool
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT t >= '4714-12-01 00:00:00+00 BC'::timestamptz AND t < '294276-12-01 00:00:00+00'::timestamptz
$$;

-- Create the missing partitions of the months that contain the times ts.  Runs as
-- the extension's owner: it only ever creates empty monthly partitions of
-- pgpoly.predictions, named and bounded by months it computes itself, in the
-- database's default tablespace (the caller's default_tablespace would have the
-- owner create them in a tablespace the caller may not create in).
CREATE FUNCTION pgpoly._prediction_partitions(ts timestamptz[])
RETURNS int
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pgpoly, pg_temp
SET timezone = 'UTC'
SET datestyle = 'ISO, YMD'
SET default_tablespace = ''
AS $$
DECLARE
	m      timestamptz;
	v_name text;
	v_made int := 0;
BEGIN
	FOR m IN SELECT DISTINCT date_trunc('month', t, 'UTC') FROM unnest(ts) t
			 WHERE isfinite(t) ORDER BY 1 LOOP
		v_name := pgpoly._prediction_partition_name(m);
		CONTINUE WHEN to_regclass('pgpoly.' || v_name) IS NOT NULL;
		-- one creator at a time; locking also processes the catalog changes of a
		-- creator that committed meanwhile, so the re-check sees its partition
		LOCK TABLE pgpoly.predictions IN SHARE UPDATE EXCLUSIVE MODE;
		CONTINUE WHEN to_regclass('pgpoly.' || v_name) IS NOT NULL;
		EXECUTE format('CREATE TABLE pgpoly.%I (LIKE pgpoly.predictions INCLUDING CONSTRAINTS)', v_name);
		-- the key (one identity sequence: unique across partitions); labels join on
		-- request_id (by equality only: a hash index, which holds ids of any
		-- length); monitoring reads one model's recent predictions
		EXECUTE format('ALTER TABLE pgpoly.%I ADD CONSTRAINT %I PRIMARY KEY (prediction_id)',
					   v_name, v_name || '_pkey');
		EXECUTE format('CREATE INDEX %I ON pgpoly.%I USING hash (request_id)',
					   v_name || '_request_id_idx', v_name);
		EXECUTE format('CREATE INDEX %I ON pgpoly.%I (model_name, version, ts)',
					   v_name || '_model_ts_idx', v_name);
		EXECUTE format('ALTER TABLE pgpoly.predictions ATTACH PARTITION pgpoly.%I FOR VALUES FROM (%L) TO (%L)',
					   v_name, m, m + interval '1 month');
		v_made := v_made + 1;
	END LOOP;
	RETURN v_made;
END
$$;

-- Only roles an administrator allows may make the extension's owner create
-- tables: without EXECUTE, a month needs its partition made ahead of time.
REVOKE ALL ON FUNCTION pgpoly._prediction_partitions(timestamptz[]) FROM PUBLIC;

-- Take the locks an INSERT into parent takes (if the caller may INSERT): ROW
-- EXCLUSIVE on parent, then on its partitions named names; returns the position
-- of the first name without a relation (NULL: none).  A partition found by
-- name may come from a creator that has committed but not yet sent its
-- invalidations; locking it waits for them (src/predictions.c).
CREATE FUNCTION pgpoly._lock_partitions(parent regclass, names text[])
RETURNS int
AS 'MODULE_PATHNAME', 'pgpoly_lock_partitions'
LANGUAGE C STRICT VOLATILE;

-- t's UTC year on a scale with a year 0 (1 BC is 0, 2 BC is -1), so that a
-- difference of years counts the years between across 1 BC / 1 AD.
CREATE FUNCTION pgpoly._utc_year0(t timestamptz)
RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT date_part('year', t AT TIME ZONE 'UTC')
		   + CASE WHEN date_part('year', t AT TIME ZONE 'UTC') < 0 THEN 1 ELSE 0 END
$$;

CREATE FUNCTION pgpoly.create_prediction_partitions(since timestamptz DEFAULT now(),
													until timestamptz DEFAULT now() + interval '3 months')
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
BEGIN
	PERFORM pgpoly._require(since, 'since');
	PERFORM pgpoly._require(until, 'until');
	IF NOT (isfinite(since) AND isfinite(until)) OR since > until THEN
		RAISE EXCEPTION 'invalid range of months: % to %', since, until
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass two finite times, since <= until.';
	END IF;
	IF NOT (pgpoly._prediction_month_ok(since) AND pgpoly._prediction_month_ok(until)) THEN
		RAISE EXCEPTION 'range of months % to % is outside the months pgpoly.predictions is partitioned in', since, until
			USING ERRCODE = 'datetime_field_overflow',
				  DETAIL = 'Partitions are whole months of the timestamptz range: December 4714 BC to November 294276 (UTC).';
	END IF;
	-- one partition per month, each with its indexes: a range of decades or
	-- millennia (a typo, '4713-01-01 BC') would create thousands of tables in
	-- one transaction (and run out of lock slots or statement_timeout)
	-- (years counted through a year 0: date_part gives 1 BC as -1, 1 AD as 1)
	IF (pgpoly._utc_year0(until) - pgpoly._utc_year0(since)) * 12
	   + date_part('month', until AT TIME ZONE 'UTC') - date_part('month', since AT TIME ZONE 'UTC') + 1 > 120 THEN
		RAISE EXCEPTION 'range of months too long: % to %', since, until
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'create_prediction_partitions creates at most 120 monthly partitions per call.',
				  HINT = 'Create the partitions of a longer range in several calls, or let log_prediction create the months it needs.';
	END IF;
	-- the first instant of each month in UTC, stepped in UTC: a month added to a
	-- timestamptz is added in the session's time zone, where the 1st 00:00 UTC
	-- can be the 31st, and the steps drifted to the 28th (and past a month)
	RETURN pgpoly._prediction_partitions(ARRAY(
		SELECT m AT TIME ZONE 'UTC'
		FROM generate_series(date_trunc('month', since AT TIME ZONE 'UTC'), until AT TIME ZONE 'UTC',
							 interval '1 month') AS m));
END
$$;

COMMENT ON FUNCTION pgpoly.create_prediction_partitions(timestamptz, timestamptz) IS
	'Create the monthly partitions of pgpoly.predictions from the month of since to the month of until (default: this month and the next three) that do not exist yet; returns how many were created';

CREATE FUNCTION pgpoly.drop_prediction_partitions(older_than timestamptz)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_part regclass;
	v_made int := 0;
BEGIN
	PERFORM pgpoly._require(older_than, 'older_than');
	-- the monthly partitions pgpoly made whose whole month is before older_than
	-- (the month's end computed in UTC: a month added to a timestamptz is added
	-- in the session's time zone, which west of UTC ended March on the 28th)
	FOR v_part IN
		SELECT c.oid::regclass
		FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'pgpoly.predictions'::regclass
		  AND c.relnamespace = 'pgpoly'::regnamespace
		  -- the year has 4 digits, more from year 10000 on (to_char's YYYY);
		  -- a CASE, so that no other name is ever cast (quals are reordered)
		  AND CASE WHEN c.relname ~ '^predictions_[0-9]{4,6}_[0-9]{2}(_bc)?$'
				   THEN (make_timestamp(split_part(c.relname, '_', 2)::int
										* CASE WHEN right(c.relname, 3) = '_bc' THEN -1 ELSE 1 END,
										split_part(c.relname, '_', 3)::int, 1, 0, 0, 0)
						 + interval '1 month') AT TIME ZONE 'UTC' <= older_than END
		ORDER BY c.relname
	LOOP
		-- the lock the DROP takes on the parent, taken before the labels are
		-- read: no log_label can then find a prediction of v_part, and no
		-- reader of the labels upgrades to it (DROP locks the parent first)
		LOCK TABLE pgpoly.predictions IN ACCESS EXCLUSIVE MODE;
		-- the labels of v_part's requests that no prediction of another
		-- partition has: a label applies to every prediction of its request,
		-- and stays while one is kept
		EXECUTE format($q$
			DELETE FROM pgpoly.prediction_labels l
			WHERE l.request_id IN (SELECT d.request_id FROM %1$s d)
			  AND NOT EXISTS (SELECT FROM pgpoly.predictions p
							  WHERE p.request_id = l.request_id AND p.tableoid <> %2$s)$q$,
			v_part, v_part::oid);
		EXECUTE format('DROP TABLE %s', v_part);
		v_made := v_made + 1;
	END LOOP;
	RETURN v_made;
END
$$;

COMMENT ON FUNCTION pgpoly.drop_prediction_partitions(timestamptz) IS
	'Drop the monthly partitions of pgpoly.predictions whose whole month is before older_than (retention), with the labels of their requests that no kept prediction has; returns how many partitions were dropped';

-- Raise the error of row pos of a prediction batch (pos NULL: a single call),
-- with a HINT only if hint is not NULL (an empty one is still sent, and
-- shown as an empty "HINT:" line).
CREATE FUNCTION pgpoly._prediction_error(pos bigint, state text, message text, hint text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_msg text := CASE WHEN pos IS NULL THEN message
					   ELSE format('element %s of rows: %s', pos, message) END;
BEGIN
	IF hint IS NULL THEN
		RAISE EXCEPTION '%', v_msg USING ERRCODE = state;
	END IF;
	RAISE EXCEPTION '%', v_msg USING ERRCODE = state, HINT = hint;
END
$$;

-- The model versions of the distinct (model, version) pairs of models and
-- versions (model '' and NULL left out): m and vk (the version as text, ''
-- for NULL: any int may be passed as a version) identify the pair, name is
-- the model's name, ver the version it stands for
-- ('name@alias' with version NULL: the version the alias points to now), NULL
-- when that model version does not exist.
CREATE FUNCTION pgpoly._prediction_versions(models text[], versions int[])
RETURNS TABLE (m text, vk text, name text, ver int)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT d.m, coalesce(d.v::text, ''), x.name, mv.version
	FROM (SELECT DISTINCT u.m, u.v FROM unnest(models, versions) AS u(m, v) WHERE u.m <> '') AS d
	CROSS JOIN LATERAL (SELECT CASE WHEN d.v IS NULL AND strpos(d.m, '@') > 0
									THEN substring(d.m FROM '^(.*)@') ELSE d.m END AS name) AS x
	LEFT JOIN pgpoly.model_aliases a
		   ON d.v IS NULL AND a.model_name = x.name AND a.alias = substring(d.m FROM '@([^@]*)$')
	LEFT JOIN pgpoly.model_versions mv ON mv.model_name = x.name AND mv.version = coalesce(d.v, a.version)
$$;

-- Validate, resolve and insert predictions given as parallel arrays (one element
-- per prediction); single: the arrays come from one log_prediction call (errors
-- do not name a position).  Every row is checked before anything is written;
-- model names and aliases are resolved once per distinct (model, version) pair.
-- Returns the first prediction_id and the row count.
CREATE FUNCTION pgpoly._log_predictions(models text[], versions int[], entities text[],
		predictions jsonb[], features jsonb[], confidences float8[], latencies float8[],
		request_ids text[], tss timestamptz[], single bool,
		OUT first_id bigint, OUT n bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_missing timestamptz;
	v_bad  bigint;			-- first bad row
	r      record;			-- the resolved pairs: m, vk (version as text, '' for NULL), name, ver
	v_lo   timestamptz;
	v_hi   timestamptz;
	v_months timestamptz[];
	v_names text[];			-- the names of the partitions of v_months
BEGIN
	-- rows bad on their own
	SELECT min(u.i) INTO v_bad
	FROM unnest(models, predictions, latencies, request_ids, tss) WITH ORDINALITY
		 AS u(m, p, lat, rid, t, i)
	WHERE u.m IS NULL OR u.m = '' OR u.p IS NULL OR u.lat < 0 OR u.lat = 'NaN' OR u.rid = ''
	   OR NOT pgpoly._prediction_month_ok(u.t);
	-- each distinct (model, version): name@alias (version NULL) resolved now
	SELECT array_agg(p.m) AS m, array_agg(p.vk) AS vk, array_agg(p.name) AS name,
		   array_agg(p.ver) AS ver,
		   array_agg(p.m) FILTER (WHERE p.ver IS NULL) AS bad_m,
		   array_agg(p.vk) FILTER (WHERE p.ver IS NULL) AS bad_vk
	INTO r
	FROM pgpoly._prediction_versions(models, versions) AS p;
	IF r.bad_m IS NOT NULL THEN
		SELECT least(v_bad, min(u.i)) INTO v_bad
		FROM unnest(models, versions) WITH ORDINALITY AS u(m, v, i)
		JOIN unnest(r.bad_m, r.bad_vk) AS b(m, vk) ON b.m = u.m AND b.vk = coalesce(u.v::text, '');
	END IF;
	IF v_bad IS NOT NULL THEN
		PERFORM pgpoly._prediction_check_row(CASE WHEN single THEN NULL ELSE v_bad END,
											 models[v_bad], versions[v_bad], predictions[v_bad] IS NULL,
											 latencies[v_bad], request_ids[v_bad], tss[v_bad]);
	END IF;

	-- the partitions of the months of ts (usually one), created (as the
	-- extension's owner) when one is missing, then found by name and locked for
	-- the INSERT (which so routes rows with every partition found, even one
	-- whose creator has just committed: _lock_partitions).  Missing ones are
	-- looked for without a lock and created before any lock on the table is
	-- taken: a writer holding ROW EXCLUSIVE on pgpoly.predictions (or on a
	-- partition) while it waits for the creators' SHARE UPDATE EXCLUSIVE
	-- deadlocks with a DETACH PARTITION ... CONCURRENTLY, which holds that
	-- lock while it waits for the table's lockers (then for its partition).
	SELECT min(t), max(t) INTO v_lo, v_hi FROM unnest(tss) AS t;
	v_months := CASE WHEN date_trunc('month', v_lo, 'UTC') = date_trunc('month', v_hi, 'UTC')
					 THEN ARRAY[date_trunc('month', v_lo, 'UTC')]
					 ELSE ARRAY(SELECT DISTINCT date_trunc('month', t, 'UTC') FROM unnest(tss) AS t) END;
	v_names := ARRAY(SELECT pgpoly._prediction_partition_name(m) FROM unnest(v_months) AS m);
	SELECT v_months[min(n.i)] INTO v_missing
	FROM unnest(v_names) WITH ORDINALITY AS n(name, i)
	WHERE to_regclass(format('pgpoly.%I', n.name)) IS NULL;
	-- (a role that may not insert gets the INSERT's own error below)
	IF v_missing IS NOT NULL AND has_table_privilege('pgpoly.predictions', 'INSERT') THEN
		IF NOT has_function_privilege('pgpoly._prediction_partitions(timestamptz[])', 'EXECUTE') THEN
			-- the month as the partitions are cut, in UTC: printed in the session's
			-- time zone, March's first instant was "2026-02-28 21:00:00-03"
			RAISE EXCEPTION 'pgpoly.predictions has no partition for the month of % (UTC), pgpoly.%',
				to_char(v_missing AT TIME ZONE 'UTC', 'YYYY-MM')
				|| CASE WHEN v_missing < '0001-01-01 00:00:00+00' THEN ' BC' ELSE '' END,
				pgpoly._prediction_partition_name(v_missing)
				USING ERRCODE = 'insufficient_privilege',
					  DETAIL = 'Creating partitions needs EXECUTE on pgpoly._prediction_partitions(timestamptz[]).',
					  HINT = 'Have an administrator create partitions ahead with pgpoly.create_prediction_partitions(), or grant that EXECUTE to the logging role.';
		END IF;
		PERFORM pgpoly._prediction_partitions(v_months);
	END IF;
	PERFORM pgpoly._lock_partitions('pgpoly.predictions', v_names);
	WITH ins AS (
		INSERT INTO pgpoly.predictions (model_name, version, entity, features, prediction,
										confidence, latency_ms, request_id, ts)
		SELECT p.name, p.ver, u.e, u.f, u.p, u.c, u.lat, u.rid, u.t
		FROM unnest(models, versions, entities, features, predictions, confidences, latencies,
					request_ids, tss) WITH ORDINALITY AS u(m, v, e, f, p, c, lat, rid, t, i)
		JOIN unnest(r.m, r.vk, r.name, r.ver) AS p(m, vk, name, ver)
		  ON p.m = u.m AND p.vk = coalesce(u.v::text, '')
		-- ids in the order of the rows, whichever side the join hashes
		ORDER BY u.i
		RETURNING prediction_id)
	SELECT min(ins.prediction_id), count(*) INTO first_id, n FROM ins;
END
$$;

-- Raise the error of a prediction row found bad by _log_predictions, the most
-- basic problem first.  pos: its position in a batch (NULL: a single call).
CREATE FUNCTION pgpoly._prediction_check_row(pos bigint, model text, version int,
		no_prediction bool, latency float8, request_id text, ts timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_alias bool := version IS NULL AND strpos(model, '@') > 0;
	v_name  text := CASE WHEN v_alias THEN substring(model FROM '^(.*)@') ELSE model END;
	v_ver   int := version;
BEGIN
	IF model IS NULL THEN
		PERFORM pgpoly._prediction_error(pos, '22004', 'argument "model" must not be NULL');
	ELSIF model = '' THEN
		PERFORM pgpoly._prediction_error(pos, '22023', 'argument "model" must not be empty');
	ELSIF no_prediction THEN
		PERFORM pgpoly._prediction_error(pos, '22004', 'argument "prediction" must not be NULL');
	ELSIF version IS NULL AND NOT v_alias THEN
		PERFORM pgpoly._prediction_error(pos, '22004', 'argument "version" must not be NULL',
			format('Pass a version, or the model as ''%s@<alias>'' to use the version an alias points to.', model));
	ELSIF NOT EXISTS (SELECT FROM pgpoly.registered_models m WHERE m.name = v_name) THEN
		PERFORM pgpoly._prediction_error(pos, '42704', format('registered model "%s" does not exist', v_name),
			CASE WHEN NOT v_alias AND strpos(model, '@') > 0 THEN 'To resolve an alias, pass version NULL.'
				 ELSE 'Models are created by pgpoly.register_model_version().' END);
	END IF;
	IF v_alias THEN
		SELECT a.version INTO v_ver FROM pgpoly.model_aliases a
		WHERE a.model_name = v_name AND a.alias = substring(model FROM '@([^@]*)$');
		IF NOT FOUND THEN
			PERFORM pgpoly._prediction_error(pos, '42704',
				format('model "%s" has no alias "%s"', v_name, substring(model FROM '@([^@]*)$')),
				'Set it with pgpoly.set_model_alias().');
		END IF;
	END IF;
	IF NOT EXISTS (SELECT FROM pgpoly.model_versions v
				   WHERE v.model_name = v_name AND v.version = v_ver) THEN
		PERFORM pgpoly._prediction_error(pos, '42704', format('model "%s" has no version %s', v_name, v_ver));
	ELSIF latency < 0 OR latency = 'NaN' THEN
		PERFORM pgpoly._prediction_error(pos, '22023',
			format('latency_ms must be a non-negative number, not %s', latency));
	ELSIF request_id = '' THEN
		PERFORM pgpoly._prediction_error(pos, '22023', 'argument "request_id" must not be empty',
										 'Pass NULL when there is no request id.');
	ELSIF NOT isfinite(ts) THEN
		PERFORM pgpoly._prediction_error(pos, '22023', format('ts must be a finite time, not %s', ts));
	ELSIF NOT pgpoly._prediction_month_ok(ts) THEN
		PERFORM pgpoly._prediction_error(pos, '22008',
			format('ts %s is outside the months pgpoly.predictions is partitioned in (December 4714 BC to November 294276, UTC)', ts));
	END IF;
	RAISE EXCEPTION 'prediction row % failed no check', pos	-- can't happen
		USING ERRCODE = 'internal_error';
END
$$;

CREATE FUNCTION pgpoly.log_prediction(model text, version int, entity text, prediction jsonb,
									  features jsonb DEFAULT NULL, confidence float8 DEFAULT NULL,
									  latency_ms float8 DEFAULT NULL, request_id text DEFAULT NULL,
									  ts timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT l.first_id
	-- the default collation, whatever the arguments'
	FROM pgpoly._log_predictions(ARRAY[$1 COLLATE pg_catalog."default"], ARRAY[$2], ARRAY[$3 COLLATE pg_catalog."default"], ARRAY[$4], ARRAY[$5],
								 ARRAY[$6], ARRAY[$7], ARRAY[$8 COLLATE pg_catalog."default"], ARRAY[coalesce($9, now())], true) l
$$;

COMMENT ON FUNCTION pgpoly.log_prediction(text, int, text, jsonb, jsonb, float8, float8, text, timestamptz) IS
	'Log one prediction of a model version (model ''name@alias'' with version NULL: the version the alias points to now); returns its prediction_id';

-- The keys of an element of log_predictions' rows.
CREATE FUNCTION pgpoly._prediction_keys()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT '{model,version,entity,prediction,features,confidence,latency_ms,request_id,ts}'::text[] $$;

-- One walk over rows (src/predictions.c): the position of the first element
-- that is not an object or has an unknown key (NULL: none), the elements'
-- (model, version) pairs as [{"model": ..., "version": ...}, ...] with their
-- JSON values unconverted (possibly repeated), and the number of elements.
CREATE FUNCTION pgpoly._prediction_scan(rows jsonb, OUT bad bigint, OUT pairs jsonb, OUT n bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'pgpoly_prediction_scan'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

-- Insert the elements of rows (as _prediction_scan passed them) into the
-- partitions of parent without the executor (src/predictions.c): values
-- converted as jsonb_to_recordset converts them, each element's (model,
-- version) found in the resolved pairs m, v -> name, ver (as
-- _prediction_versions returns them), the checks of _log_predictions, the
-- caller's privileges.  Returns the number inserted: all the elements, or
-- fewer if one failed a check (the caller must undo them by an ERROR); NULL,
-- having done nothing, where only an INSERT honours the table (triggers,
-- row-level security, a read-only transaction ...).
CREATE FUNCTION pgpoly._prediction_insert(parent regclass, rows jsonb, m text[], v int[],
										  name text[], ver int[])
RETURNS bigint
AS 'MODULE_PATHNAME', 'pgpoly_prediction_insert'
LANGUAGE C STRICT VOLATILE;

CREATE FUNCTION pgpoly.log_predictions(rows jsonb)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_scan  record;			-- _prediction_scan: bad, pairs, n
	v_elem  jsonb;
	a       record;
	v_out   record;
	v_pairs record;			-- the resolved pairs: k (key -> position), name, ver, m, v
	v_one   bool;			-- a single pair: rows are matched to it without a key
	v_n     bigint;
BEGIN
	PERFORM pgpoly._require(rows, 'rows');
	IF jsonb_typeof(rows) <> 'array' THEN
		RAISE EXCEPTION 'argument "rows" must be a JSON array, not %', jsonb_typeof(rows)
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass [{"model": "churn@champion", "entity": "u1", "prediction": {"p": 0.7}}, ...].';
	END IF;
	-- every element an object with known keys only (checked in the same walk
	-- that gathers the pairs)
	v_scan := pgpoly._prediction_scan(rows);
	IF v_scan.bad IS NOT NULL THEN
		v_elem := rows -> (v_scan.bad - 1)::int;
		IF jsonb_typeof(v_elem) <> 'object' THEN
			PERFORM pgpoly._prediction_error(v_scan.bad, '22023',
				format('a prediction must be a JSON object, not %s', jsonb_typeof(v_elem)));
		END IF;
		PERFORM pgpoly._prediction_error(v_scan.bad, '22023',
			format('unknown key "%s"', (SELECT min(k) FROM jsonb_object_keys(v_elem) k
									   WHERE NOT k = ANY (pgpoly._prediction_keys()))),
			'Keys are log_prediction''s arguments: ' || array_to_string(pgpoly._prediction_keys(), ', ') || '.');
	END IF;
	IF v_scan.n = 0 THEN
		RETURN 0;
	END IF;

	-- The fast path, for a batch whose rows all pass every check: its distinct
	-- (model, version) pairs are resolved once, then the rows, in the order of
	-- rows, are inserted by _prediction_insert (or, where the table needs the
	-- executor, by one INSERT of the rows read by jsonb_to_recordset) if they
	-- pass every check of _log_predictions.  If it did not take them all, or
	-- failed (a month without its partition, privileges ...), it is undone
	-- and the general path below finds the first bad row and raises its
	-- error, or creates the missing partitions, so that both behave the same.
	BEGIN
		-- k maps each pair's key to its position in the arrays: a row finds its
		-- pair by one lookup in k, whatever the number of pairs
		SELECT jsonb_object_agg(length(p.m) || ':' || p.m || ':' || p.vk, p.i) AS k,
			   array_agg(p.name ORDER BY p.i) AS name, array_agg(p.ver ORDER BY p.i) AS ver,
			   array_agg(p.m ORDER BY p.i) AS m, array_agg(nullif(p.vk, '')::int ORDER BY p.i) AS v
		INTO v_pairs
		FROM (SELECT x.*, row_number() OVER () AS i
			  FROM pgpoly._prediction_versions(ARRAY(SELECT u.model FROM jsonb_to_recordset(v_scan.pairs)
														AS u(model text, version int)),
											   ARRAY(SELECT u.version FROM jsonb_to_recordset(v_scan.pairs)
														AS u(model text, version int))) AS x) AS p;
	EXCEPTION WHEN data_exception THEN
		PERFORM pgpoly._prediction_bad_value(rows, SQLSTATE, SQLERRM);
	END;
	v_one := cardinality(v_pairs.m) = 1;
	BEGIN
		-- the rows converted, checked and inserted in C, in batches per
		-- partition; NULL (nothing done) where the table has what only the
		-- executor honours (triggers, row-level security ...): the INSERT below
		v_n := pgpoly._prediction_insert('pgpoly.predictions', rows, v_pairs.m, v_pairs.v,
										 v_pairs.name, v_pairs.ver);
		IF v_n = v_scan.n THEN
			RETURN v_n;
		ELSIF v_n IS NOT NULL THEN
			RAISE EXCEPTION 'a prediction row failed a check' USING ERRCODE = 'PGP01';
		END IF;
		INSERT INTO pgpoly.predictions (model_name, version, entity, features, prediction,
										confidence, latency_ms, request_id, ts)
		SELECT v_pairs.name[k.i], v_pairs.ver[k.i], u.entity, u.features, u.prediction, u.confidence,
			   u.latency_ms, u.request_id, coalesce(u.ts, now())
		FROM jsonb_to_recordset(rows)
			 AS u(model text, version int, entity text, prediction jsonb, features jsonb,
				  confidence float8, latency_ms float8, request_id text, ts timestamptz)
		CROSS JOIN LATERAL (SELECT CASE WHEN v_one
										THEN CASE WHEN u.model = v_pairs.m[1]
												   AND u.version IS NOT DISTINCT FROM v_pairs.v[1] THEN 1 END
										ELSE (v_pairs.k ->> (length(u.model) || ':' || u.model || ':'
															 || coalesce(u.version::text, '')))::int END AS i) AS k
		WHERE v_pairs.ver[k.i] IS NOT NULL AND u.prediction IS NOT NULL
		  AND (u.model = '' OR u.latency_ms < 0 OR u.latency_ms = 'NaN' OR u.request_id = ''
			   OR NOT isfinite(coalesce(u.ts, now()))) IS NOT TRUE;
		GET DIAGNOSTICS v_n = ROW_COUNT;
		IF v_n = v_scan.n THEN
			RETURN v_n;
		END IF;
		RAISE EXCEPTION 'a prediction row failed a check' USING ERRCODE = 'PGP01';
	EXCEPTION
		WHEN data_exception THEN	-- a value of the wrong type, as below
			PERFORM pgpoly._prediction_bad_value(rows, SQLSTATE, SQLERRM);
		WHEN OTHERS THEN
			-- undone: a row failed a check (PGP01), or the INSERT failed: the
			-- general path raises the error it raises, after its checks
			NULL;
	END;

	-- the general path: the rows as parallel arrays, checked and logged by
	-- _log_predictions (which also creates missing partitions)
	BEGIN
		-- one pass: the arrays are aligned, and in the order of rows
		SELECT array_agg(r.model) AS m, array_agg(r.version) AS v, array_agg(r.entity) AS e,
			   array_agg(r.prediction) AS p, array_agg(r.features) AS f,
			   array_agg(r.confidence) AS c, array_agg(r.latency_ms) AS l,
			   array_agg(r.request_id) AS q, array_agg(coalesce(r.ts, now())) AS t
		INTO a
		FROM jsonb_to_recordset(rows)
			 AS r(model text, version int, entity text, prediction jsonb, features jsonb,
				  confidence float8, latency_ms float8, request_id text, ts timestamptz);
	EXCEPTION WHEN data_exception THEN
		PERFORM pgpoly._prediction_bad_value(rows, SQLSTATE, SQLERRM);
	END;
	v_out := pgpoly._log_predictions(a.m, a.v, a.e, a.p, a.f, a.c, a.l, a.q, a.t, false);
	RETURN v_out.n;
END
$$;

COMMENT ON FUNCTION pgpoly.log_predictions(jsonb) IS
	'Log a JSON array of predictions (objects with log_prediction''s argument names as keys) in one INSERT; returns the number logged';

-- Find the element and key of rows whose value does not convert to its type and
-- re-raise the error naming them (the original error if none is found).
CREATE FUNCTION pgpoly._prediction_bad_value(rows jsonb, state text, msg text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	e jsonb;
	i bigint;
	k text;
BEGIN
	FOR e, i IN SELECT x.o, x.i FROM jsonb_array_elements(rows) WITH ORDINALITY x(o, i) LOOP
		FOREACH k IN ARRAY ARRAY['version', 'confidence', 'latency_ms', 'ts'] LOOP
			CONTINUE WHEN NOT e ? k;
			BEGIN
				PERFORM * FROM jsonb_to_record(jsonb_build_object(k, e -> k))
					AS r(version int, confidence float8, latency_ms float8, ts timestamptz);
			EXCEPTION WHEN data_exception THEN
				PERFORM pgpoly._prediction_error(i, SQLSTATE,
					format('invalid value %s for "%s": %s', e -> k, k, SQLERRM));
			END;
		END LOOP;
	END LOOP;
	RAISE EXCEPTION '%', msg USING ERRCODE = state;
END
$$;

CREATE FUNCTION pgpoly.log_label(request_id text, label jsonb, ts timestamptz DEFAULT now())
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_round int;
BEGIN
	PERFORM pgpoly._require_name(request_id, 'request_id');
	PERFORM pgpoly._require(label, 'label');
	-- as a prediction's time (NULL: now)
	IF NOT isfinite(ts) THEN
		RAISE EXCEPTION 'ts must be a finite time, not %', ts
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF NOT EXISTS (SELECT FROM pgpoly.predictions p
				   WHERE p.request_id = log_label.request_id COLLATE pg_catalog."default") THEN
		RAISE EXCEPTION 'no prediction has request_id "%"', request_id
			USING ERRCODE = 'undefined_object',
				  HINT = 'Log the prediction first, with pgpoly.log_prediction(..., request_id => ...).';
	END IF;
	-- a label logged again replaces the old one (ground truth gets corrected).
	-- An upsert by hand: ON CONFLICT DO UPDATE needs a unique btree, which
	-- would limit the id's length.  An INSERT that meets a label another
	-- transaction inserted meanwhile does nothing, and the UPDATE is tried
	-- again (read committed: it sees that label now; a snapshot that cannot
	-- see it makes ON CONFLICT fail with 40001, as an upsert does).  A label
	-- the UPDATE never changes although the INSERT keeps meeting it is hidden
	-- from this role's UPDATE (row-level security) or skipped by a trigger:
	-- an ERROR after a few rounds (it looped forever).
	FOR v_round IN 1..3 LOOP
		UPDATE pgpoly.prediction_labels l SET label = log_label.label, ts = coalesce(log_label.ts, now())
		WHERE l.request_id = log_label.request_id COLLATE pg_catalog."default";
		IF FOUND THEN
			RETURN;
		END IF;
		INSERT INTO pgpoly.prediction_labels (request_id, label, ts)
		VALUES (log_label.request_id, log_label.label, coalesce(log_label.ts, now()))
		ON CONFLICT DO NOTHING;
		IF FOUND THEN
			RETURN;
		END IF;
	END LOOP;
	RAISE EXCEPTION 'request_id "%" has a label that the current role cannot replace', request_id
		USING ERRCODE = 'insufficient_privilege',
			  DETAIL = 'The label exists, but an UPDATE of pgpoly.prediction_labels by this role does not change it.',
			  HINT = 'Check the row-level security policies and triggers of pgpoly.prediction_labels.';
END
$$;

COMMENT ON FUNCTION pgpoly.log_label(text, jsonb, timestamptz) IS
	'Record the ground truth of the prediction(s) of a request (see labeled_predictions); logging again replaces it';

--
-- Feature statistics
--

-- Which kind of number a type's values are, looking through domains (a CHECK
-- only restricts the numbers): 'float' (real, double precision), 'exact'
-- (smallint, integer, bigint, numeric: PostgreSQL's avg and stddev_samp of
-- them are exact), NULL for any other type.
CREATE FUNCTION pgpoly._numeric_kind(t regtype)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	WITH RECURSIVE b(oid) AS (
		SELECT t::oid
		UNION ALL
		SELECT y.typbasetype FROM pg_type y JOIN b ON y.oid = b.oid WHERE y.typtype = 'd')
	SELECT CASE WHEN b.oid IN ('real'::regtype, 'double precision'::regtype) THEN 'float'
				ELSE 'exact' END
	FROM b
	WHERE b.oid IN ('smallint'::regtype, 'integer'::regtype, 'bigint'::regtype,
					'real'::regtype, 'double precision'::regtype, 'numeric'::regtype)
$$;

-- Whether a type is a numeric type, or a domain over one: statistics and
-- drift treat it as a number, any other type as categories.
CREATE FUNCTION pgpoly._is_numeric_type(t regtype)
RETURNS bool
LANGUAGE sql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT pgpoly._numeric_kind(t) IS NOT NULL
$$;

-- feature_stats' body: one scan of the history window.  Distinct values of
-- non-numeric features are counted by text form, exact for floats inside them
-- (arrays, composites) whatever the caller's extra_float_digits, and byte for
-- byte whatever the column's collation (a nondeterministic one would count
-- 'a' and 'A' once).  The mean and
-- stddev of an integer or numeric feature are PostgreSQL's exact ones, rounded
-- to float8 (summed as float8 values, 2^53 and 2^53 + 1 were one value, and
-- their stddev 0).  A float feature's sum in float8; if a sum leaves the
-- float8 range (values near 1e308,
-- whose mean is still a float8) the scan is done again summing in numeric the
-- same float8 values min and max see, each converted exactly (through its
-- shortest exact text form: a plain cast to numeric keeps 15 digits of a
-- float8 and 6 of a real, and a constant feature's mean came out unequal to
-- its min and max).
CREATE FUNCTION pgpoly._feature_stats(view text, since timestamptz, until timestamptz)
RETURNS TABLE (o_feature text, o_count bigint, o_nulls bigint, o_distinct bigint,
			   o_mean float8, o_stddev float8, o_min float8, o_p50 float8, o_p95 float8,
			   o_max float8)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
SET extra_float_digits = 1
AS $$
DECLARE
	v      pgpoly._fv_def := pgpoly._fv_get(view);
	v_sum  text;
	v_aggs text;
	v_rows text;
BEGIN
	PERFORM pgpoly._require(since, 'since');
	PERFORM pgpoly._require(until, 'until');
	IF since > until THEN
		RAISE EXCEPTION 'since % is after until %', since, until
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOREACH v_sum IN ARRAY ARRAY['float8', 'float8::text::numeric'] LOOP
		-- one scan: per feature i the aggregates c<i>_*; then one row per feature
		SELECT string_agg(CASE WHEN pgpoly._is_numeric_type(u.t::regtype) THEN format(
				   'count(h.%1$I) AS c%2$s_n, count(DISTINCT h.%1$I) AS c%2$s_d, avg(%3$s)::float8 AS c%2$s_mean, '
				   'stddev_samp(%3$s)::float8 AS c%2$s_sd, min(h.%1$I::float8) AS c%2$s_min, '
				   'percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY h.%1$I::float8) AS c%2$s_p, '
				   'max(h.%1$I::float8) AS c%2$s_max', u.f, u.i,
				   -- the value summed: an integer's or numeric's own, a float's as v_sum
				   CASE WHEN pgpoly._numeric_kind(u.t::regtype) = 'exact' THEN format('h.%I', u.f)
						ELSE format('h.%I::%s', u.f, v_sum) END)
			   ELSE format(
				   'count(h.%1$I) AS c%2$s_n, count(DISTINCT h.%1$I::text COLLATE "default") AS c%2$s_d, NULL::float8 AS c%2$s_mean, '
				   'NULL::float8 AS c%2$s_sd, NULL::float8 AS c%2$s_min, NULL::float8[] AS c%2$s_p, '
				   'NULL::float8 AS c%2$s_max', u.f, u.i) END, ', ' ORDER BY u.i),
			   string_agg(format('(%L, a.c%2$s_n, a.total - a.c%2$s_n, a.c%2$s_d, a.c%2$s_mean, a.c%2$s_sd, '
								 'a.c%2$s_min, a.c%2$s_p[1], a.c%2$s_p[2], a.c%2$s_max)', u.f, u.i),
						  ', ' ORDER BY u.i)
		INTO v_aggs, v_rows
		FROM unnest(v.features, v.feature_types) WITH ORDINALITY AS u(f, t, i);
		BEGIN
			-- one aggregate row: an error comes before any row is returned
			RETURN QUERY EXECUTE format(
				'SELECT x.* FROM (SELECT count(*) AS total, %s FROM %s h WHERE h.event_time >= $1 AND h.event_time < $2) a '
				'CROSS JOIN LATERAL (VALUES %s) AS x', v_aggs, v.offline_rel, v_rows)
			USING since, until;
			RETURN;
		EXCEPTION WHEN numeric_value_out_of_range THEN
			IF v_sum <> 'float8' THEN
				RAISE;
			END IF;
		END;
	END LOOP;
END
$$;

CREATE FUNCTION pgpoly.feature_stats(view text, since timestamptz DEFAULT '-infinity',
									 until timestamptz DEFAULT 'infinity')
RETURNS TABLE (feature text, count bigint, nulls bigint, distinct_count bigint, mean float8,
			   stddev float8, min float8, p50 float8, p95 float8, max float8)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT * FROM pgpoly._feature_stats($1 COLLATE pg_catalog."default", $2, $3)
$$;

COMMENT ON FUNCTION pgpoly.feature_stats(text, timestamptz, timestamptz) IS
	'Per feature of a view, over its offline history with event_time in [since, until): non-null count, nulls, distinct values, and for numeric features mean, stddev, min, median, 95th percentile, max';

--
-- Drift
--

-- The PSI of bins given as parallel arrays of counts (reference, current) and the
-- non-null totals: sum of (p_cur - p_ref) * ln(p_cur / p_ref), each p = count /
-- total floored at 0.0001.  NULL when a side has no values.
CREATE FUNCTION pgpoly._psi(ref_counts bigint[], cur_counts bigint[], ref_total bigint,
							cur_total bigint)
RETURNS float8
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT sum((b.pc - b.pr) * ln(b.pc / b.pr))
	FROM unnest(ref_counts, cur_counts) AS u(r, c)
	CROSS JOIN LATERAL (SELECT greatest(u.r::float8 / ref_total, 0.0001) AS pr,
							   greatest(u.c::float8 / cur_total, 0.0001) AS pc) b
	WHERE ref_total > 0 AND cur_total > 0
$$;

-- The drift status of a PSI value.
CREATE FUNCTION pgpoly._drift_status(psi float8)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT CASE WHEN psi IS NULL THEN NULL WHEN psi < 0.1 THEN 'ok'
				WHEN psi < 0.25 THEN 'warn' ELSE 'drift' END
$$;

-- The bin counts of two samples of float8 values (no NULLs) over the
-- reference's edges e_k = percentile_cont(k/bins), and their KS statistic:
-- both sorted in PostgreSQL's float8 order (NaN last), bin i counting
-- e_(i-1) < v <= e_i, KS the largest gap between the two empirical
-- distribution functions (src/drift.c).  All NULL when a sample is empty.
CREATE FUNCTION pgpoly._drift_numeric_bins(ref float8[], cur float8[], bins int,
										   OUT ref_counts bigint[], OUT cur_counts bigint[],
										   OUT ks float8)
RETURNS record
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pgpoly_drift_numeric_bins';

-- PSI and KS of numeric column col of the relations ref and cur (FROM-clause
-- items), with bins bins: each side's non-null values as float8, gathered by
-- one scan into an array, binned and compared by _drift_numeric_bins; PSI
-- from the counts as for categories (_psi).  Runs the caller's SQL with the
-- caller's search_path: every name of its own is qualified.
CREATE FUNCTION pgpoly._drift_numeric(ref text, cur text, col text, bins int,
									  OUT psi float8, OUT ks float8)
LANGUAGE plpgsql STABLE
AS $$
BEGIN
	EXECUTE pg_catalog.format($q$
		WITH r AS (SELECT pg_catalog.array_agg(s.%3$I::pg_catalog.float8) AS a FROM %1$s s WHERE s.%3$I IS NOT NULL),
		c AS (SELECT pg_catalog.array_agg(s.%3$I::pg_catalog.float8) AS a FROM %2$s s WHERE s.%3$I IS NOT NULL)
		SELECT pgpoly._psi(b.ref_counts, b.cur_counts, pg_catalog.cardinality(r.a), pg_catalog.cardinality(c.a)), b.ks
		FROM r, c, pgpoly._drift_numeric_bins(coalesce(r.a, '{}'), coalesce(c.a, '{}'), $1) AS b$q$,
		ref, cur, col)
	INTO psi, ks USING bins;
END
$$;

-- PSI of a categorical column col: one bin per distinct reference value (by text
-- form), plus one for the values the reference never had.  A value is what
-- count() counts, so a composite with NULL fields is one (num_nulls: "row IS
-- NOT NULL" is false for it, and it was left out).  The text forms of
-- floats (in arrays, composites, points) are exact whatever the caller's
-- extra_float_digits: with fewer digits distinct values would share a bin.
-- Text forms are compared byte for byte (the default collation, whatever the
-- column's: under a nondeterministic one 'a' and 'A' would share a bin).  Runs
-- the caller's SQL with the caller's search_path: every name of its own is
-- qualified.
CREATE FUNCTION pgpoly._drift_categorical(ref text, cur text, col text, OUT psi float8)
LANGUAGE plpgsql STABLE
SET extra_float_digits = 1
AS $$
BEGIN
	EXECUTE pg_catalog.format($q$
		WITH r AS (SELECT s.%3$I::pg_catalog.text COLLATE pg_catalog."default" AS v, pg_catalog.count(*) AS n
				   FROM %1$s s WHERE pg_catalog.num_nulls(s.%3$I) OPERATOR(pg_catalog.=) 0 GROUP BY 1),
		c AS (SELECT s.%3$I::pg_catalog.text COLLATE pg_catalog."default" AS v, pg_catalog.count(*) AS n
			  FROM %2$s s WHERE pg_catalog.num_nulls(s.%3$I) OPERATOR(pg_catalog.=) 0 GROUP BY 1),
		bins AS (SELECT r.n AS nr, coalesce(c.n, 0) AS nc FROM r LEFT JOIN c ON c.v OPERATOR(pg_catalog.=) r.v
				 UNION ALL
				 SELECT 0, coalesce(pg_catalog.sum(c.n), 0)::bigint FROM c
				 WHERE NOT EXISTS (SELECT FROM r WHERE r.v OPERATOR(pg_catalog.=) c.v))
		SELECT pgpoly._psi(pg_catalog.array_agg(bins.nr), pg_catalog.array_agg(bins.nc),
						   (SELECT coalesce(pg_catalog.sum(r.n), 0) FROM r)::bigint,
						   (SELECT coalesce(pg_catalog.sum(c.n), 0) FROM c)::bigint)
		FROM bins$q$, ref, cur, col)
	INTO psi;
END
$$;

-- Check drift's bins argument.
CREATE FUNCTION pgpoly._drift_check_bins(bins int)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
BEGIN
	PERFORM pgpoly._require(bins, 'bins');
	IF bins < 2 OR bins > 10000 THEN
		RAISE EXCEPTION 'bins must be between 2 and 10000 (got %)', bins
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
END
$$;

-- The features drift compares, in order, and whether each is numeric: the
-- columns named by features (NULL: every column the two share, in the
-- reference's order) of a reference with columns rnames of types rtypes and a
-- current relation with columns cnames of types ctypes.  ERROR for a NULL or
-- unknown name, and for a column numeric on one side only.
CREATE FUNCTION pgpoly._drift_features(rnames text[], rtypes regtype[], cnames text[],
									   ctypes regtype[], features text[])
RETURNS TABLE (feature text, is_numeric bool)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_feat  text[];
	v_bad   text;
	v_side  text;
	f       text;
	v_rtype regtype;
	v_ctype regtype;
BEGIN
	IF features IS NULL THEN
		v_feat := ARRAY(SELECT n FROM unnest(rnames) WITH ORDINALITY u(n, i)
						WHERE n = ANY (cnames) ORDER BY i);
		-- an empty answer would hide a mistake (a column not aliased alike)
		IF cardinality(v_feat) = 0 THEN
			RAISE EXCEPTION 'the reference and the current relation share no column'
				USING ERRCODE = 'undefined_column',
					  DETAIL = format('The reference has columns (%s); the current relation has (%s).',
									  array_to_string(rnames, ', '), array_to_string(cnames, ', ')),
					  HINT = 'Give the columns to compare the same names in both (AS in a query).';
		END IF;
	ELSE
		IF array_position(features, NULL) IS NOT NULL THEN
			RAISE EXCEPTION 'argument "features" must not contain NULL'
				USING ERRCODE = 'null_value_not_allowed';
		END IF;
		-- each name once, in the order given
		v_feat := ARRAY(SELECT n FROM unnest(features) WITH ORDINALITY u(n, i)
						GROUP BY n ORDER BY min(i));
		IF cardinality(v_feat) = 0 THEN
			RAISE EXCEPTION 'argument "features" must name at least one column'
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Pass NULL for every column the two relations share.';
		END IF;
		SELECT n, CASE WHEN n = ANY (rnames) THEN 'current' ELSE 'reference' END
		INTO v_bad, v_side
		FROM unnest(v_feat) n WHERE NOT (n = ANY (rnames) AND n = ANY (cnames)) LIMIT 1;
		IF v_bad IS NOT NULL THEN
			RAISE EXCEPTION 'the % has no column "%"', v_side, v_bad
				USING ERRCODE = 'undefined_column';
		END IF;
	END IF;

	FOREACH f IN ARRAY v_feat LOOP
		v_rtype := rtypes[array_position(rnames, f)];
		v_ctype := ctypes[array_position(cnames, f)];
		IF pgpoly._is_numeric_type(v_rtype) <> pgpoly._is_numeric_type(v_ctype) THEN
			RAISE EXCEPTION 'column "%" is % in the reference but % in the current relation', f, v_rtype, v_ctype
				USING ERRCODE = 'datatype_mismatch',
					  HINT = 'Cast it in one of the queries: both numeric (compared by bins of values) or both not (compared by categories).';
		END IF;
		feature := f;
		is_numeric := pgpoly._is_numeric_type(v_rtype);
		RETURN NEXT;
	END LOOP;
END
$$;

-- drift's body.  It runs the caller's SQL (resolving a table name, reading the
-- relations' shapes and values) with the caller's search_path, so it names
-- only qualified objects; the pinned helpers do the rest.
CREATE FUNCTION pgpoly._drift(reference text, current text, features text[], bins int)
RETURNS TABLE (o_feature text, o_psi float8, o_ks float8, o_status text)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	v_ref   pg_catalog.text := pgpoly._relation_sql(reference, 'reference');
	v_cur   pg_catalog.text := pgpoly._relation_sql(current, 'current');
	v_rcols record;
	v_ccols record;
	v_f     record;
	v_num   record;
BEGIN
	PERFORM pgpoly._drift_check_bins(bins);
	SELECT c.names, c.types INTO v_rcols FROM pgpoly._relation_columns(v_ref, 'reference') c;
	SELECT c.names, c.types INTO v_ccols FROM pgpoly._relation_columns(v_cur, 'current relation') c;
	FOR v_f IN SELECT d.feature, d.is_numeric
			   FROM pgpoly._drift_features(v_rcols.names, v_rcols.types, v_ccols.names,
										   v_ccols.types, features) d LOOP
		o_feature := v_f.feature;
		IF v_f.is_numeric THEN
			v_num := pgpoly._drift_numeric(v_ref, v_cur, v_f.feature, bins);
			o_psi := v_num.psi;
			o_ks := v_num.ks;
		ELSE
			o_psi := pgpoly._drift_categorical(v_ref, v_cur, v_f.feature);
			o_ks := NULL;
		END IF;
		o_status := pgpoly._drift_status(o_psi);
		RETURN NEXT;
	END LOOP;
END
$$;

CREATE FUNCTION pgpoly.drift(reference text, current text, features text[] DEFAULT NULL,
							 bins int DEFAULT 10)
RETURNS TABLE (feature text, psi float8, ks float8, status text)
LANGUAGE sql STABLE
AS $$
	-- the default collation, whatever the arguments'
	SELECT * FROM pgpoly._drift($1 COLLATE pg_catalog."default", $2 COLLATE pg_catalog."default", $3 COLLATE pg_catalog."default", $4)
$$;

COMMENT ON FUNCTION pgpoly.drift(text, text, text[], int) IS
	'Population stability index and Kolmogorov-Smirnov statistic of each feature between a reference and a current relation (table names or queries); status ok (psi < 0.1), warn (< 0.25) or drift';
