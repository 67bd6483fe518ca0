-- extension/35_ingest.sql
--	  Bulk feature ingestion (ingest_features), and the reading of relations that
--	  callers give as a table name or a query (also used by drift, 36_monitoring.sql).
--
-- Contract: API.md section 3 (ingest_features).  Design invariants kept by this
-- file:
--	* ingest_features is one statement: the source rows are read once into a
--	  materialized CTE (numbered in the source's order by _ingest_ordinal; a
--	  scan of it returns them in that order, so created_at follows it), checked
--	  in one pass (NULL entity or event_time, an entity a key type would cut,
--	  one the offline entity column would store as another entity) before any
--	  row is written, appended to the offline table, and
--	  each entity's newest row (latest event_time, ties to the later source row;
--	  found in the check pass by _ingest_newest's hash table, the rows
--	  DISTINCT ON (k COLLATE "C") would keep, without sorting every row) is
--	  written to the view's serving table through INSERT ... SELECT, in the
--	  source's order, after a batched join that reads the event times Redis
--	  holds (pipelined rounds of fetch_size keys).  The Redis writes are buffered in the caller's transaction
--	  and sent at COMMIT as pipelined MULTI/EXEC (a large transaction's queued in
--	  the MULTI on a second connection as they are made: fdw/redis_stream.c),
--	  exactly as materialize() does;
--	  ROLLBACK undoes both.
--	* The statement runs with work_mem at least 64MB, so that the materialized
--	  source of 100k rows stays in memory (at the default 4MB it spills to a
--	  temporary file); a larger setting of the caller's is
--	  kept, and the caller's setting is back when the call returns.
--	* One entity is one Redis key: the rows whose entities have the same
--	  canonical text (byte for byte, whatever the source column's type or
--	  collation compares equal: citext 'A' and 'a' are two keys online).
--	* Newer wins as in put_features: an entity is written online unless Redis holds
--	  a strictly newer _event_time, read after locking every entity of the view
--	  to the end of the transaction (_fv_lock_entities), so that concurrent
--	  writers of one entity decide one after the other.  Rows are full snapshots: features the source
--	  does not return are NULL offline and online.  With the serving table in
--	  write_mode 'outbox' the newest rows are queued without reading Redis, and
--	  the sync worker applies the same rule when it delivers them.
--	* The source is the caller's SQL and runs with the caller's rights and
--	  search_path, and so do the functions that run it (_relation_sql,
--	  _relation_columns, _ingest_features, _ingest_bad_value,
--	  _ingest_long_entity): they qualify every function, aggregate, operator,
--	  collation and type they name, in their bodies and in the statements they
--	  build around the source (the key's equality is its type's own, read from
--	  the catalog), so that nothing the caller's search_path finds first (a
--	  better match than a polymorphic built-in, a schema before pg_catalog)
--	  changes a result; the view's column types are cast to as _fv_type_sql
--	  writes them.  The checks and the statement itself are made with a pinned
--	  search_path (_ingest_statement).  The caller needs INSERT on the offline
--	  table and SELECT and INSERT on the view's online table, checked before
--	  anything is read, as the equivalent SQL statements would need them.
--	* Identifiers reach SQL through %I (or as the quoted relation names of
--	  _fv_get), types as format_type() of the catalog's columns at call time;
--	  values only as parameters.

--
-- Relations given as a table name or a query
--

-- Whether _relation_sql's source is a query (not a relation's name).
CREATE FUNCTION pgpoly._is_query(source text)
RETURNS bool
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT source ~* '^\s*(\(|(select|with|values|table)\M)'
$$;

-- The FROM-clause item for source: text starting with SELECT, WITH, VALUES, TABLE
-- or "(" is a query, wrapped as a subquery (the newline ends a trailing comment);
-- anything else names a table or view, resolved as in the caller's own SQL (42P01
-- if there is none) and quoted.  argname names the argument in errors.  Runs
-- with the caller's search_path (to resolve the name), so every name of its
-- own is qualified.
CREATE FUNCTION pgpoly._relation_sql(source text, argname text)
RETURNS text
LANGUAGE plpgsql STABLE
AS $$
BEGIN
	PERFORM pgpoly._require_name(source, argname);
	IF pgpoly._is_query(source) THEN
		RETURN pg_catalog.format('(%s%s)', source, E'\n');
	END IF;
	RETURN pgpoly._fv_rel(source::pg_catalog.regclass);
END
$$;

-- The column names and types of a FROM-clause item from _relation_sql, in order,
-- without reading a row of it: one all-NULL row of its shape (an outer join to an
-- empty LIMIT 0) gives the names as JSON keys, pg_typeof the types.  Two columns
-- of one name are an error (42702).  what names the relation in errors.  Runs
-- the caller's SQL with the caller's search_path: every name of its own is
-- qualified.
CREATE FUNCTION pgpoly._relation_columns(rel text, what text, OUT names text[], OUT types regtype[])
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	v_shape pg_catalog.text := pg_catalog.format(
		'(SELECT) AS d LEFT JOIN (SELECT * FROM %s AS q LIMIT 0) AS s ON true', rel);
BEGIN
	EXECUTE pg_catalog.format(
		'SELECT pg_catalog.array_agg(j.k ORDER BY j.i) FROM (SELECT s.* FROM %s) AS x, '
		'pg_catalog.json_object_keys(pg_catalog.to_json(x.*)) WITH ORDINALITY AS j(k, i)', v_shape)
	INTO names;
	PERFORM pgpoly._relation_check_columns(names, what);
	EXECUTE pg_catalog.format('SELECT ARRAY[%s]::pg_catalog.regtype[] FROM %s',
							  pgpoly._relation_typeof_list(names), v_shape)
	INTO types;
END
$$;

-- ERROR unless names (of the columns of the relation what) is a non-empty
-- list of distinct names.
CREATE FUNCTION pgpoly._relation_check_columns(names text[], what text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_dup   text;
BEGIN
	IF names IS NULL THEN
		RAISE EXCEPTION 'the % returns no columns', what
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT n INTO v_dup FROM unnest(names) n GROUP BY n HAVING count(*) > 1 LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'the % returns more than one column named "%"', what, v_dup
			USING ERRCODE = 'ambiguous_column',
				  HINT = 'Give each column its own name (AS ...).';
	END IF;
END
$$;

-- The select list pg_catalog.pg_typeof(s.<name>), ... of the columns names.
CREATE FUNCTION pgpoly._relation_typeof_list(names text[])
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT string_agg(format('pg_catalog.pg_typeof(s.%I)', n), ', ' ORDER BY i)
	FROM unnest(names) WITH ORDINALITY u(n, i)
$$;

--
-- ingest_features
--

-- Raise 42501 unless the caller may run the statements ingest_features runs for
-- view v: INSERT into the offline table, SELECT and INSERT on the online table
-- (whose fields the serving table writes).
CREATE FUNCTION pgpoly._ingest_check_privileges(v pgpoly._fv_def)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_rel  regclass;
	v_priv text;
BEGIN
	SELECT x.rel, x.priv INTO v_rel, v_priv
	FROM (VALUES (1, v.offline_table, 'INSERT'), (2, v.online_table, 'SELECT'),
				 (3, v.online_table, 'INSERT')) AS x(i, rel, priv)
	WHERE NOT has_table_privilege(x.rel, x.priv)
	ORDER BY x.i LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'permission denied for table %', v_rel
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('ingest_features into feature view "%s" needs %s on %s.', v.name, v_priv, v_rel);
	END IF;
END
$$;

-- The types ingest_features casts to, read from the catalog with format_type():
-- the serving table's key column, the offline table's entity column and feature
-- columns (in the view's feature order; NULL for a column that is gone).
CREATE FUNCTION pgpoly._ingest_types(v pgpoly._fv_def, OUT key_type text, OUT entity_type text,
									 OUT feature_types text[])
LANGUAGE sql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
			WHERE a.attrelid = ($1).serving_table AND a.attname = ($1).key_column
			  AND NOT a.attisdropped),
		   (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
			WHERE a.attrelid = ($1).offline_table AND a.attname = ($1).entity_column
			  AND NOT a.attisdropped),
		   ARRAY(SELECT format_type(a.atttypid, a.atttypmod)
				 FROM unnest(($1).features) WITH ORDINALITY AS u(f, i)
				 LEFT JOIN pg_attribute a ON a.attrelid = ($1).offline_table AND a.attname = u.f
										 AND NOT a.attisdropped
				 ORDER BY u.i)
$$;

-- The source columns whose values ingest_features casts, with the types it
-- casts them to (typ, and typ_sql as _fv_type_sql writes it), in the order
-- _ingest_bad_value checks them: the entity to the key type and to the
-- offline entity column's type, event_time, then each of the view's features
-- in feats.
CREATE FUNCTION pgpoly._ingest_cast_columns(v pgpoly._fv_def, ty record, feats text[])
RETURNS TABLE (col text, typ text, typ_sql text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
BEGIN
	RETURN QUERY
		SELECT x.c, x.t, pgpoly._fv_type_sql(x.t)
		FROM (SELECT v.entity, ty.key_type
			  UNION ALL SELECT v.entity, ty.entity_type
			  UNION ALL SELECT 'event_time', 'timestamp with time zone'
			  UNION ALL SELECT u.f, u.t FROM unnest(v.features, ty.feature_types) u(f, t)
						WHERE u.f = ANY (feats)) AS x(c, t);
END
$$;

-- Find the source column whose values do not convert to their feature's type (or
-- the entity's key type, or the offline entity column's) and re-raise the error
-- naming it; the original error if none is found.  Reads the source again: only
-- on this error path.  Runs the caller's SQL with the caller's search_path:
-- every name of its own is qualified.
CREATE FUNCTION pgpoly._ingest_bad_value(v pgpoly._fv_def, ty record, src text, feats text[],
										 state text, msg text)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	c pg_catalog.text;
	t pg_catalog.text;
	t_sql pg_catalog.text;
BEGIN
	FOR c, t, t_sql IN SELECT x.col, x.typ, x.typ_sql
					   FROM pgpoly._ingest_cast_columns(v, ty, feats) x LOOP
		BEGIN
			EXECUTE pg_catalog.format('SELECT pg_catalog.count(q.%I::pg_catalog.text::%s) FROM %s AS q',
									  c, t_sql, src);
		EXCEPTION WHEN data_exception THEN
			RAISE EXCEPTION 'invalid value in column "%" of the source of feature view "%": %', c, v.name, SQLERRM
				USING ERRCODE = SQLSTATE,
					  DETAIL = pg_catalog.format('The column''s values must convert to %s.', t);
		END;
	END LOOP;
	RAISE EXCEPTION '%', msg USING ERRCODE = state;
END
$$;

-- Re-raise msg, a program_limit_exceeded error of ingest_features (an index
-- row too large), as put_features does (_fv_long_entity: 54000 naming the
-- entity's length and the limit) for the source's longest entity (key: the
-- SQL of its canonical text over q), naming its row; returns for any other
-- error (state: its SQLSTATE), which the caller re-raises.  Reads the
-- source again: only on this error path.  Runs the caller's SQL with the
-- caller's search_path: every name of its own is qualified.
CREATE FUNCTION pgpoly._ingest_long_entity(state text, v pgpoly._fv_def, src text, key text,
										   msg text)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
	v_row bigint;
	v_ent pg_catalog.text;
BEGIN
	IF state OPERATOR(pg_catalog.<>) '54000' THEN
		RETURN;
	END IF;
	EXECUTE pg_catalog.format(
		'SELECT s.i, s.k FROM (SELECT pg_catalog.row_number() OVER () AS i, %s AS k '
		'FROM %s AS q) AS s ORDER BY pg_catalog.octet_length(s.k) DESC NULLS LAST, s.i LIMIT 1',
		key, src)
	INTO v_row, v_ent;
	PERFORM pgpoly._fv_long_entity(state, v, v_ent,
								   pg_catalog.format('Row %s of the source: %s', v_row, msg));
END
$$;

-- 1, 2, 3 ... on the successive calls from one place in one execution of a
-- query: ingest_features numbers the source rows with it as they are read
-- (row_number() OVER () would copy every row into a window's tuple store).
CREATE FUNCTION pgpoly._ingest_ordinal()
RETURNS bigint
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pgpoly_ingest_ordinal';


-- clock_timestamp(), but each call from one place in one execution of a
-- query at least a microsecond after the one before: ingest_features'
-- created_at, distinct and in the source's order however fast rows are
-- appended.
CREATE FUNCTION pgpoly._ingest_clock()
RETURNS timestamptz
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pgpoly_ingest_clock';

CREATE FUNCTION pgpoly._ingest_newest_step(internal, text, timestamptz, bigint)
RETURNS internal
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pgpoly_ingest_newest_step';

CREATE FUNCTION pgpoly._ingest_newest_final(internal)
RETURNS bytea
LANGUAGE C IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pgpoly_ingest_newest_final';

-- Which source rows (k the entity's canonical text, et the event time, ord
-- the row's number, _ingest_ordinal) are their entity's newest: the rows
-- SELECT DISTINCT ON (k COLLATE "C") ... ORDER BY k COLLATE "C", et DESC,
-- ord DESC keeps, found with a hash table instead of a sort of every row
-- (src/ingest.c); rows with a NULL are left out.  The answer is read by
-- _ingest_is_newest.
CREATE AGGREGATE pgpoly._ingest_newest(text, timestamptz, bigint) (
	SFUNC = pgpoly._ingest_newest_step,
	STYPE = internal,
	FINALFUNC = pgpoly._ingest_newest_final
);

CREATE FUNCTION pgpoly._ingest_is_newest_support(internal)
RETURNS internal
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pgpoly_ingest_is_newest_support';

-- Whether source row number ord is one of rows (_ingest_newest's answer).
-- Its planner support estimates the rows it keeps as DISTINCT ON would.
CREATE FUNCTION pgpoly._ingest_is_newest(rows bytea, ord bigint)
RETURNS bool
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE
SUPPORT pgpoly._ingest_is_newest_support
AS 'MODULE_PATHNAME', 'pgpoly_ingest_is_newest';

-- Whether ingest_features appends to the offline table rel (the columns cols)
-- with _offline_append rather than an INSERT: a plain table with no triggers,
-- row-level security or generated columns, which the caller may insert into
-- (src/ingest.c).  Takes the INSERT's lock on rel when the caller may insert.
CREATE FUNCTION pgpoly._offline_direct(rel oid, cols text[])
RETURNS bool
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pgpoly_offline_direct';

CREATE FUNCTION pgpoly._offline_append_step(internal, oid, text[], VARIADIC "any")
RETURNS internal
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pgpoly_offline_append_step';

CREATE FUNCTION pgpoly._offline_append_final(internal)
RETURNS bigint
LANGUAGE C VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'pgpoly_offline_append_final';

-- Append each row (its values: the arguments after cols, of the columns
-- cols, already of their types) to the table rel, as COPY does: heap tuples
-- a batch at a time, then their index entries; returns the rows appended.
-- Only where _offline_direct said so, earlier in the transaction.
CREATE AGGREGATE pgpoly._offline_append(oid, text[], VARIADIC "any") (
	SFUNC = pgpoly._offline_append_step,
	STYPE = internal,
	FINALFUNC = pgpoly._offline_append_final,
	FINALFUNC_MODIFY = READ_WRITE,
	PARALLEL = UNSAFE
);

-- The offline table's columns ingest_features writes, in the order of its
-- INSERT's column list: the entity column, event_time, created_at, then
-- every feature of view v.
CREATE FUNCTION pgpoly._ingest_offline_columns(v pgpoly._fv_def)
RETURNS text[]
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT ARRAY[($1).entity_column::text, 'event_time', 'created_at'] || ($1).features
$$;

-- The statement that ingests the source src (a FROM-clause item) with
-- columns names into view v (ty: its types, _ingest_types), after checking
-- that the source returns the entity, event_time and only the view's
-- features, and that the view's tables still have every column: stmt returns
-- the rows written offline and the first source rows with a NULL entity or
-- event time, an entity a key type would cut, and one the offline entity
-- column stores as another.  key is the SQL of the entity's canonical text
-- over q (a source row), feats the view's features the source returns, in
-- view order.  Pinned search_path: the statement runs under the caller's
-- (the source's names resolve as in the caller's SQL), so everything it
-- names itself is qualified (pg_catalog.count, OPERATOR(pg_catalog.=),
-- COLLATE pg_catalog."C", the key type's own equality from the catalog,
-- the view's types as _fv_type_sql writes them).
CREATE FUNCTION pgpoly._ingest_statement(v pgpoly._fv_def, ty record, src text, names text[],
										 direct bool, OUT stmt text, OUT key text, OUT feats text[])
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_bad   text;
	v_vals  text;			-- SQL of every feature's value over s (NULL if absent)
	v_online text := '';	-- the newer-wins join to Redis (none for an outbox table)
BEGIN
	IF NOT (v.entity = ANY (names) AND 'event_time' = ANY (names)) THEN
		RAISE EXCEPTION 'the source must return columns % and event_time', v.entity
			USING ERRCODE = 'undefined_column',
				  DETAIL = format('It returns: %s.', array_to_string(names, ', ')),
				  HINT = 'Return the entity, event_time and any of the view''s features: SELECT user_id, event_time, clicks FROM ...';
	END IF;
	SELECT n INTO v_bad FROM unnest(names) WITH ORDINALITY u(n, i)
	WHERE n NOT IN (v.entity, 'event_time') AND NOT n = ANY (v.features) ORDER BY i LIMIT 1;
	IF FOUND THEN
		PERFORM pgpoly._fv_unknown_feature(v, v_bad);
	END IF;
	feats := ARRAY(SELECT f FROM unnest(v.features) WITH ORDINALITY u(f, i)
				   WHERE f = ANY (names) ORDER BY i);
	IF ty.key_type IS NULL OR ty.entity_type IS NULL OR array_position(ty.feature_types, NULL) IS NOT NULL THEN
		RAISE EXCEPTION 'the tables of feature view "%" no longer have all its columns', v.name
			USING ERRCODE = 'undefined_column',
				  HINT = 'Drop and re-create the feature view after altering its tables.';
	END IF;
	-- the entity as its key type's text form, so '007' and '7' are one int entity;
	-- a varchar(n) or char(n) key keeps it uncut, so that the fit check below
	-- sees it whole
	key := pgpoly._fv_uncut_text(v.key_type, format('q.%I::pg_catalog.text', v.entity));
	SELECT string_agg(CASE WHEN u.f = ANY (feats) THEN format('s.%I', u.f)
						   ELSE format('NULL::%s', pgpoly._fv_type_sql(u.t)) END, ', ' ORDER BY u.i)
	INTO v_vals
	FROM unnest(v.features, ty.feature_types) WITH ORDINALITY u(f, t, i);
	IF NOT pgpoly._fv_outbox(v.serving_table) THEN
		-- its output and WHERE read _event_time alone (the key only in ON
		-- clauses): the batched join then fetches just that field (HMGET),
		-- and an entity Redis lacks reads as one whose _event_time is NULL,
		-- as it should; the Redis key is the one of the same text (a citext
		-- key or a nondeterministic collation would match 'A' to the newer
		-- 'a' too).  The key's
		-- equality is its type's own (citext's for citext), as a plain =
		-- finds it with nothing shadowing it: the Redis FDW pushes it down
		v_online := format(' LEFT JOIN %1$s o ON o.%2$I %5$s s.k::%3$s'
						   ' AND %4$s COLLATE pg_catalog."C" OPERATOR(pg_catalog.=) s.k COLLATE pg_catalog."C"'
						   ' WHERE o._event_time IS NULL OR o._event_time OPERATOR(pg_catalog.<=) s.et',
						   v.serving_rel, v.key_column, pgpoly._fv_type_sql(ty.key_type),
						   pgpoly._fv_key_text(v, format('o.%I', v.key_column)),
						   (SELECT pgpoly._fv_eq_operator(a.atttypid) FROM pg_attribute a
							WHERE a.attrelid = v.serving_table AND a.attname = v.key_column
							  AND NOT a.attisdropped));
	END IF;
	-- "other": the entity's text once stored offline is not its own; NOT
	-- coalesce(a = b, both NULL) is a IS DISTINCT FROM b with the = qualified
	stmt := format($q$
		WITH s AS MATERIALIZED (
			SELECT pgpoly._ingest_ordinal() AS ord, %1$s AS k,
				   q.event_time::pg_catalog.timestamptz AS et%2$s
			FROM %3$s AS q),
		chk AS (SELECT pg_catalog.min(s.ord) FILTER (WHERE s.k IS NULL OR s.et IS NULL) AS bad,
					   pg_catalog.min(s.ord) FILTER (WHERE NOT (%13$s AND %14$s)) AS long,
					   pg_catalog.min(s.ord) FILTER (WHERE NOT coalesce((%15$s) OPERATOR(pg_catalog.=) s.k,
																	 (%15$s) IS NULL AND s.k IS NULL)) AS other,
					   pg_catalog.min(s.ord) FILTER (WHERE NOT pg_catalog.isfinite(s.et)) AS inf,
					   pgpoly._ingest_newest(s.k, s.et, s.ord) AS newest
				FROM s),
		ok AS (SELECT chk.bad IS NULL AND chk.long IS NULL AND chk.other IS NULL AND chk.inf IS NULL AS ok
			   FROM chk),
		off AS (%16$s
			SELECT %17$s s.k::%7$s, s.et, pgpoly._ingest_clock(), %8$s%18$s
			FROM s WHERE (SELECT ok.ok FROM ok)%19$s),
		newest AS (
			SELECT s.* FROM s
			WHERE pgpoly._ingest_is_newest((SELECT chk.newest FROM chk, ok WHERE ok.ok), s.ord)),
		w AS (
			INSERT INTO %9$s (%10$I, %6$s, _event_time)
			SELECT s.k::%11$s, %8$s, s.et
			FROM newest s%12$s)
		SELECT (SELECT %20$s FROM off), (SELECT chk.bad FROM chk),
			   (SELECT chk.long FROM chk), (SELECT chk.other FROM chk), (SELECT chk.inf FROM chk)$q$,
		key,
		(SELECT coalesce(string_agg(format(', q.%1$I::%2$s AS %1$I', u.f, pgpoly._fv_type_sql(u.t)),
									'' ORDER BY u.i), '')
		 FROM unnest(v.features, ty.feature_types) WITH ORDINALITY u(f, t, i) WHERE u.f = ANY (feats)),
		src, v.offline_rel, v.entity_column, pgpoly._fv_cols(v.features),
		pgpoly._fv_type_sql(ty.entity_type), v_vals, v.serving_rel, v.key_column,
		pgpoly._fv_type_sql(ty.key_type), v_online,
		pgpoly._fv_key_fits(ty.key_type, 's.k'),
		pgpoly._fv_key_fits(pgpoly._fv_fit_type(v.offline_table, v.entity_column), 's.k'),
		pgpoly._fv_offline_text(v, 's.k'),
		-- the offline append: _offline_append (direct) or an INSERT
		CASE WHEN direct THEN '' ELSE format('INSERT INTO %s (%I, event_time, created_at, %s)',
											 v.offline_rel, v.entity_column, pgpoly._fv_cols(v.features)) END,
		CASE WHEN direct THEN format('pgpoly._offline_append(%s::pg_catalog.oid, %L::pg_catalog.text[],',
									 v.offline_table::oid, pgpoly._ingest_offline_columns(v)) ELSE '' END,
		CASE WHEN direct THEN ') AS n' ELSE '' END,
		CASE WHEN direct THEN '' ELSE ' RETURNING 1' END,
		CASE WHEN direct THEN 'off.n' ELSE 'pg_catalog.count(*)' END);
END
$$;

-- caller_work_mem is the caller's work_mem (ingest_features passes it): the
-- function runs with the larger of it and 64MB (see the SET clause and the
-- first lines); the caller's setting is back at exit, error or not.
-- caller_datestyle is the caller's DateStyle: dates and times are printed in
-- ISO form (the entity's canonical text must read back as the same value),
-- but the caller's field order (MDY, DMY, YMD) is kept, so that text the
-- caller's source turns into dates or times reads as in the caller's own SQL.
-- The source runs with the caller's search_path, and so does this body (no
-- SET clause for it): every name of its own is qualified, and the checks
-- and the statement are made by _ingest_statement, whose search_path is
-- pinned.
CREATE FUNCTION pgpoly._ingest_features(view text, source text, caller_work_mem text,
										caller_datestyle text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET datestyle = 'ISO, YMD'
SET extra_float_digits = 1
SET work_mem = '64MB'
AS $$
DECLARE
	v       pgpoly._fv_def := pgpoly._fv_get(view);
	v_src   pg_catalog.text := pgpoly._relation_sql(source, 'source');
	v_cols  pg_catalog.record;
	ty      pg_catalog.record;	-- the types to cast to (_ingest_types)
	st      pg_catalog.record;	-- the statement, the entity's SQL (_ingest_statement)
	v_rows  bigint;
	v_null  bigint;
	v_long  bigint;			-- first source row whose entity a varchar(n) would cut
	v_other bigint;			-- first whose entity the offline column makes another
	v_inf   bigint;			-- first whose event time is infinite
	v_bad   pg_catalog.text;
	v_stored pg_catalog.text;	-- and what it makes of it
BEGIN
	-- the materialized source stays in memory up to 64MB (at 4MB, 100k rows
	-- already spill to a temporary file), a larger work_mem of
	-- the caller is kept; a SET LOCAL of a variable the function's SET clause
	-- names is undone at exit
	IF pg_catalog.pg_size_bytes(caller_work_mem) OPERATOR(pg_catalog.>)
	   pg_catalog.pg_size_bytes(pg_catalog.current_setting('work_mem')) THEN
		PERFORM pg_catalog.set_config('work_mem', caller_work_mem, true);
	END IF;
	PERFORM pgpoly._fv_caller_datestyle(caller_datestyle);
	PERFORM pgpoly._ingest_check_privileges(v);
	SELECT c.names, c.types INTO v_cols FROM pgpoly._relation_columns(v_src, 'source') c;
	ty := pgpoly._ingest_types(v);
	-- the offline append without the executor's INSERT where nothing only
	-- the executor honours applies to the offline table (its lock taken)
	st := pgpoly._ingest_statement(v, ty, v_src, v_cols.names,
								   pgpoly._offline_direct(v.offline_table,
														  pgpoly._ingest_offline_columns(v)));
	-- every entity of the view locked, until the end of the transaction,
	-- before Redis is read: a concurrent writer of one of them (put_features,
	-- materialize, another ingest_features) waits, then reads what this
	-- one's COMMIT wrote, and the other way round (an outbox table: their
	-- writes are queued in the order of their offline rows' created_at)
	PERFORM pgpoly._fv_lock_entities(v.online_table, NULL, true);

	BEGIN
		EXECUTE st.stmt INTO v_rows, v_null, v_long, v_other, v_inf;
	EXCEPTION
		WHEN data_exception THEN
			PERFORM pgpoly._ingest_bad_value(v, ty, v_src, st.feats, SQLSTATE, SQLERRM);
		WHEN program_limit_exceeded THEN
			PERFORM pgpoly._ingest_long_entity(SQLSTATE, v, v_src, st.key, SQLERRM);
			RAISE;
	END;
	IF v_null IS NOT NULL THEN
		RAISE EXCEPTION 'row % of the source has a NULL % or event_time', v_null, v.entity
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF v_inf IS NOT NULL THEN
		PERFORM pgpoly._fv_infinite_event_time(v_inf);
	END IF;
	IF v_long IS NOT NULL THEN
		RAISE EXCEPTION 'row % of the source has a % that does not fit the key column "%" (%) or the entity column "%" (%) of feature view "%"',
			v_long, v.entity, v.key_column, ty.key_type, v.entity_column, ty.entity_type, v.name
			USING ERRCODE = 'string_data_right_truncation',
				  HINT = 'Cut to the column''s type it would be another entity; give the tables a longer key type.';
	END IF;
	IF v_other IS NOT NULL THEN
		-- that row read again (only on this error path), in the source's order
		EXECUTE pg_catalog.format(
			'SELECT s.e, %1$s FROM (SELECT pg_catalog.row_number() OVER () AS i, '
			'q.%2$I::pg_catalog.text AS e, %3$s AS k FROM %4$s AS q) AS s '
			'WHERE s.i OPERATOR(pg_catalog.=) $1',
			pgpoly._fv_offline_text(v, 's.k'), v.entity, st.key, v_src)
		INTO v_bad, v_stored USING v_other;
		PERFORM pgpoly._fv_not_kept(v, v_bad, v_stored, v_other);
	END IF;
	RETURN v_rows;
END
$$;

CREATE FUNCTION pgpoly.ingest_features(view text, source text)
RETURNS bigint
LANGUAGE sql VOLATILE
AS $$
	-- the default collation, whatever the arguments' (as put_features);
	-- the caller's search_path (no SET clause): qualified
	SELECT pgpoly._ingest_features($1 COLLATE pg_catalog."default", $2 COLLATE pg_catalog."default",
								   pg_catalog.current_setting('work_mem'),
								   pg_catalog.current_setting('DateStyle'))
$$;

COMMENT ON FUNCTION pgpoly.ingest_features(text, text) IS
	'Bulk-load feature rows (a query or table returning the entity, event_time and features): all appended offline, each entity''s newest written online unless Redis holds a newer one; one transaction; returns rows ingested';
