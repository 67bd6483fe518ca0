-- extension/30_features.sql
--	  Feature store: feature views over an online Redis hash table and an offline
--	  history table; point-in-time training sets; materialization.
--
-- Contract: API.md section 3.  Design invariants kept by this file:
--	* A feature view's online reads and writes go through one pgpoly_redis table,
--	  its *serving table*: the user's online table itself when it declares a
--	  timestamptz column _event_time and writes transactionally, otherwise an
--	  internal foreign table pgpoly.<view>_serving on the same server and
--	  key_prefix that maps the same fields plus _event_time.  So one HGETALL per
--	  entity returns features and event time together (one pipelined round per
--	  call), and one HSET per entity writes both in the caller's transaction
--	  (sent at COMMIT in the MULTI/EXEC of the Redis write buffer).
--	* The offline table is the complete history: every put_features appends a
--	  row, whether or not the online write wins.  Online holds, per entity, the
--	  row with the newest event_time (ties: the later write).  A put is a full
--	  snapshot of the entity: features it does not name are NULL both offline and
--	  online, so the online value always equals some offline row.
--	* An entity is its canonical text, byte for byte: the Redis key
--	  (_fv_uncut_text under the key type).  Every path matches offline rows
--	  to entities by it (_fv_same_entity: the offline column type's equality
--	  for the index, then the text), so the point-in-time join, the serving
--	  fallback, materialize and ingest_features agree with what is served
--	  online: citext 'A' and 'a' are two entities everywhere.
--	* The point-in-time join is one set-based statement: the spine drives nested
--	  loops into LIMIT 1 probes of the (entity, event_time DESC, created_at DESC)
--	  index, which also keeps the spine's row order.  Parallel query is turned
--	  off in these functions because a Gather would lose that order.
--	* A ttl is an absolute duration, extract(epoch from ttl) seconds
--	  (_fv_ttl_span), the same in every TimeZone; 0 means no ttl.  The serving
--	  rule (which source and status an entity gets, what is written back) is
--	  defined once, in C (src/features.c): the fast path calls it directly and
--	  this file through pgpoly._fv_serve() / pgpoly._fv_is_fresh().
--	* Privileges: every function checks the caller's privileges on the user's
--	  online and offline tables as the equivalent statement would
--	  (pgpoly._fv_require_privileges, 42501 "permission denied for ...");
--	  statements on the serving table check its own ACL besides.  Nothing is
--	  SECURITY DEFINER.  get_online_features writes back only where the caller
--	  may write (pgpoly._fv_may_write: not read-only, not in recovery, INSERT
--	  and UPDATE held).
--	* Nothing read from pgpoly._feature_view_storage or pgpoly.feature_views is
--	  spliced into SQL as is: relations are regclass (quoted from the catalog),
--	  column names go through %I, type names are format_type() of the catalog
--	  columns, re-derived on every call (pgpoly._fv_lookup), and a definition
--	  whose tables do not fit together is refused.
--	* Functions that read or write Redis pin DateStyle (ISO) and
--	  extra_float_digits (shortest exact) so the text forms stored in Redis are
--	  read back identically by every session.
--	* Errors: 42704 unknown view, 42703 unknown feature or missing column,
--	  22023 bad argument, 22004 NULL argument, 42501 missing privilege, 22P02
--	  & co. (the input function's own SQLSTATE) for a value that does not fit
--	  its feature, naming it.
--	* Newest-wins is checked against the online value as the writing
--	  transaction sees it (read-your-writes included), after locking the
--	  entities it may write until the end of the transaction
--	  (pgpoly._fv_lock_entities; all of them for materialize and
--	  ingest_features): a concurrent writer of one entity reads Redis only
--	  after the first one's COMMIT sent its writes, so the writers decide one
--	  after the other.  get_online_features' write-back never waits: what
--	  another transaction has locked is not written back.
--	* An online table in write_mode 'outbox' (asynchronous online updates):
--	  the serving table is in outbox mode too, put_features and materialize
--	  queue their online writes without reading Redis, and the sync worker
--	  delivers them newest-wins (src/sync_outbox.c compares _event_time when
--	  it delivers, as the only writer of the table's changes; ties in COMMIT
--	  order).  The writers lock the entities as in the other modes, so that
--	  of two equal event times the later COMMIT is the later created_at.
--	  get_online_features serves from the offline table, with status
--	  'offline', while Redis cannot be reached (SQLSTATE class 08), and
--	  queues its write-back like any other write.

--
-- Internal state of a feature view (one row per pgpoly.feature_views row).
-- Names only: the types are read from the catalog on every use.
--
CREATE TABLE pgpoly._feature_view_storage (
	view_name       text PRIMARY KEY
	                REFERENCES pgpoly.feature_views ON DELETE CASCADE ON UPDATE CASCADE,
	serving_table   regclass NOT NULL,	-- the Redis table read and written
	serving_created bool NOT NULL,		-- pgpoly created it (drop_feature_view drops it)
	offline_created bool NOT NULL,		-- pgpoly created the offline table
	key_column      text NOT NULL,		-- key column of the serving table
	entity_column   text NOT NULL,		-- entity column of the offline table
	features        text[] NOT NULL,	-- feature columns, in table order
	CONSTRAINT feature_view_storage_features_check CHECK (cardinality(features) > 0)
);
SELECT pg_catalog.pg_extension_config_dump('pgpoly._feature_view_storage', '');

COMMENT ON TABLE pgpoly._feature_view_storage IS
	'Internal: how pgpoly stores each feature view (serving table, columns)';

-- Lock entities (canonical text; NULL: every entity) of a view's online
-- table until the end of the transaction, before reading the event times
-- Redis holds to decide newest-wins (src/keylock.c): two transactions
-- writing one entity decide one after the other, the second reading what
-- the first one's COMMIT wrote.  Without wait, false when another
-- transaction holds one (nothing taken).  INSERT on the table needed.
CREATE FUNCTION pgpoly._fv_lock_entities(online_table regclass, entities text[], wait bool)
RETURNS bool
AS 'MODULE_PATHNAME', 'pgpoly_fv_lock_entities'
LANGUAGE C VOLATILE;

-- Everything a feature-store function needs to know about a view.
CREATE TYPE pgpoly._fv_def AS (
	name          text,
	entity        text,
	online_table  regclass,
	offline_table regclass,
	ttl           interval,
	serving_table regclass,
	key_column    text,
	key_type      text,			-- format_type() of the serving table's key column
	entity_column text,
	entity_type   text,			-- likewise, the offline table's entity column
	entity_match  text,			-- format() template: offline entity %1$s is entity %2$s
	features      text[],
	feature_types text[],		-- likewise, the serving table's feature columns
	offline_rel   text,			-- offline_table, schema-qualified and quoted
	serving_rel   text,			-- serving_table, likewise
	fresh         timestamptz,	-- values older than this are stale (NULL: no ttl)
	problem       text			-- why the definition cannot be used, or NULL
);

-- rel as a schema-qualified, quoted name (from the catalog): generated SQL
-- may run under the caller's search_path (the spine of a training set is the
-- caller's SQL).
CREATE FUNCTION pgpoly._fv_rel(rel regclass)
RETURNS text
AS 'MODULE_PATHNAME', 'pgpoly_fv_rel'
LANGUAGE C STRICT STABLE;

-- The default equality operator of typ's base type as OPERATOR(schema.name):
-- what a plain = between two values of typ finds when nothing shadows it,
-- for generated SQL that runs under the caller's search_path.
CREATE FUNCTION pgpoly._fv_eq_operator(typ regtype)
RETURNS text
AS 'MODULE_PATHNAME', 'pgpoly_fv_eq_operator'
LANGUAGE C STRICT STABLE;

-- typ, a format_type() printed under a search_path with pg_catalog first
-- (the feature views' types, _fv_describe), as SQL that names the same type
-- under any search_path: a bare name of pg_catalog's (text, uuid, date,
-- text[] ...), or one format_type() quotes ("char"), qualified; the SQL
-- standard's names, which the grammar reads
-- as pg_catalog's whatever the search_path (integer, character varying(n),
-- timestamp with time zone ...), and qualified names as they are.  For the
-- casts of generated SQL that may run under the caller's search_path.
CREATE FUNCTION pgpoly._fv_type_sql(typ text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT CASE WHEN typ ~ '^([a-z_][a-z0-9_]*|"[a-z_][a-z0-9_]*")(\[\])*$'
					 AND to_regtype('pg_catalog.' || typ) IS NOT NULL
				THEN 'pg_catalog.' || typ ELSE typ END
$$;

-- A ttl as the absolute duration it stands for: extract(epoch from ttl)
-- seconds, as an interval of hours/seconds only, so that arithmetic with it
-- is the same in every TimeZone (calendar days would shift at DST changes).
-- At most 9e12 seconds (~285,000 years, about the whole timestamptz range;
-- a longer one, '1000000 years', does not fit an interval of seconds).
-- NULL when there is no ttl (NULL or 0).  Inlined: no SET clause.
CREATE FUNCTION pgpoly._fv_ttl_span(ttl interval)
RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE WHEN pg_catalog.date_part('epoch', ttl) > 0
				THEN pg_catalog.make_interval(secs => LEAST(pg_catalog.date_part('epoch', ttl),
															9e12::pg_catalog.float8)) END
$$;

-- The oldest event time within ttl of t: t - _fv_ttl_span(ttl), or
-- -infinity where that is before the first timestamptz (4714-11-24 BC):
-- every event time is then within ttl (the subtraction failed, "timestamp
-- out of range", for a ttl such as '10000 years', or an early t).  The
-- first timestamptz plus a span (at most 9e12 seconds) never overflows.
-- NULL when there is no ttl.  Inlined (no SET clause), so every name is
-- qualified: it may run under the caller's search_path.
CREATE FUNCTION pgpoly._fv_ttl_start(t timestamptz, ttl interval)
RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
	SELECT CASE WHEN pgpoly._fv_ttl_span(ttl) IS NULL THEN NULL
				WHEN t OPERATOR(pg_catalog.<) ('4714-11-24 00:00:00+00 BC'::pg_catalog.timestamptz
											  OPERATOR(pg_catalog.+) pgpoly._fv_ttl_span(ttl))
				THEN '-infinity'::pg_catalog.timestamptz
				ELSE t OPERATOR(pg_catalog.-) pgpoly._fv_ttl_span(ttl) END
$$;

-- The oldest event time that is still fresh now under ttl (NULL: no ttl).
CREATE FUNCTION pgpoly._fv_fresh_since(ttl interval)
RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
	SELECT pgpoly._fv_ttl_start(pg_catalog.now(), ttl)
$$;

-- The serving rule (src/features.c; the C fast path uses the same code).
-- An event time is fresh when there is no ttl (fresh NULL) or it is not older
-- than fresh.
CREATE FUNCTION pgpoly._fv_is_fresh(fresh timestamptz, event_time timestamptz)
RETURNS bool
AS 'MODULE_PATHNAME', 'pgpoly_fv_is_fresh'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

-- One entity's answer from what online and offline hold: its status
-- (online, offline, expired, missing) and whether the offline value is the
-- one served.  The online value is served as is when it is fresh; otherwise
-- the newer of the two (ties: online); status offline means "fresh, from the
-- offline table", and exactly those values are written back online.
CREATE FUNCTION pgpoly._fv_serve(fresh timestamptz, online_found bool,
								 online_event_time timestamptz, offline_found bool,
								 offline_event_time timestamptz,
								 OUT source text, OUT from_offline bool)
AS 'MODULE_PATHNAME', 'pgpoly_fv_serve'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

-- Raise 42501 "permission denied for [foreign] table rel" unless the caller
-- holds each of privileges ('SELECT, INSERT, UPDATE') on rel, on the table or
-- on all its columns, exactly as a statement using them would be refused.
CREATE FUNCTION pgpoly._fv_require_privileges(rel regclass, privileges text)
RETURNS void
AS 'MODULE_PATHNAME', 'pgpoly_fv_require_privileges'
LANGUAGE C STRICT STABLE;

-- Whether get_online_features may write back to the online store: not in a
-- read-only transaction, not on a hot standby, not under a transaction
-- snapshot (REPEATABLE READ, SERIALIZABLE: it may miss a newer offline row
-- whose Redis key is gone since), and the caller holds INSERT and UPDATE on
-- both the online table and the serving table.
CREATE FUNCTION pgpoly._fv_may_write(online_table regclass, serving_table regclass)
RETURNS bool
AS 'MODULE_PATHNAME', 'pgpoly_fv_may_write'
LANGUAGE C STRICT STABLE;

-- What the catalog says about a view's stored names (src/features.c, from
-- the syscache): the format_type() of the serving table's key column, of the
-- offline table's entity column and of the serving table's feature columns,
-- entity_match: the part of matching an offline row to an entity that the
-- offline index answers (_fv_same_entity rechecks the text), a format()
-- template "%1$s OPERATOR(schema.=) CAST(%2$s AS type) COLLATE coll" of the
-- entity column (%1$s) and the entity (%2$s): the column type's own
-- equality and collation, qualified, so that every statement matches
-- entities as a query comparing the column to a literal would (citext
-- case-insensitively, a nondeterministic collation as it says, a
-- varchar(n) entity uncut) whatever its search_path and the spine's
-- collations; the quoted names of the offline and serving tables, and problem: why the
-- names do not fit the tables (NULL when they do).  The serving table must
-- be the online table or pgpoly.<view>_serving; every column must exist.
CREATE FUNCTION pgpoly._fv_describe(view text, online_table regclass, offline_table regclass,
									serving_table regclass, key_column text,
									entity_column text, features text[],
									OUT key_type text, OUT entity_type text,
									OUT entity_match text,
									OUT feature_types text[], OUT offline_rel text,
									OUT serving_rel text, OUT problem text)
AS 'MODULE_PATHNAME', 'pgpoly_fv_describe'
LANGUAGE C STABLE;

-- The definition of view with the types read from the catalog, or no row.
-- A single inlinable SELECT (no SET clause, everything qualified): the C
-- fast path runs it as a cached plan on every call.
CREATE FUNCTION pgpoly._fv_lookup(view text)
RETURNS SETOF pgpoly._fv_def
LANGUAGE sql STABLE
AS $$
	SELECT f.name, f.entity, f.online_table, f.offline_table, f.ttl, s.serving_table,
		   s.key_column, d.key_type, s.entity_column, d.entity_type, d.entity_match, s.features,
		   d.feature_types, d.offline_rel, d.serving_rel, pgpoly._fv_fresh_since(f.ttl),
		   d.problem
	FROM pgpoly.feature_views f
	JOIN pgpoly._feature_view_storage s ON s.view_name = f.name
	CROSS JOIN LATERAL pgpoly._fv_describe(f.name, f.online_table, f.offline_table,
										   s.serving_table, s.key_column, s.entity_column,
										   s.features) d
	-- the name as it is spelt, whatever the collation view is given in
	WHERE f.name = view COLLATE pg_catalog."default"
$$;

-- The definition of view; 42704 if there is none, 55000 if it is unusable.
CREATE FUNCTION pgpoly._fv_get(view text)
RETURNS pgpoly._fv_def
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v pgpoly._fv_def;
BEGIN
	PERFORM pgpoly._require_name(view, 'view');
	SELECT * INTO v FROM pgpoly._fv_lookup(view);
	IF NOT FOUND THEN
		RAISE EXCEPTION 'feature view "%" does not exist', view
			USING ERRCODE = 'undefined_object',
				  HINT = 'Create it with pgpoly.create_feature_view().';
	END IF;
	IF v.problem IS NOT NULL THEN
		RAISE EXCEPTION 'feature view "%" cannot be used: %', view, v.problem
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Its tables changed since it was created, or pgpoly._feature_view_storage was edited: drop the view with pgpoly.drop_feature_view() and create it again.';
	END IF;
	RETURN v;
END
$$;

-- Check the caller's privileges on the view's own tables: online_privs on
-- the online table, offline_privs on the offline table (NULL: none).
CREATE FUNCTION pgpoly._fv_check_access(v pgpoly._fv_def, online_privs text,
										offline_privs text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
BEGIN
	IF online_privs IS NOT NULL THEN
		PERFORM pgpoly._fv_require_privileges(v.online_table, online_privs);
	END IF;
	IF offline_privs IS NOT NULL THEN
		PERFORM pgpoly._fv_require_privileges(v.offline_table, offline_privs);
	END IF;
END
$$;

-- Raise 42703 for a feature name view does not have.
CREATE FUNCTION pgpoly._fv_unknown_feature(v pgpoly._fv_def, feature text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
BEGIN
	RAISE EXCEPTION 'feature view "%" has no feature "%"', v.name, feature
		USING ERRCODE = 'undefined_column',
			  HINT = 'Its features are: ' || array_to_string(v.features, ', ') || '.';
END
$$;

-- A jsonb-building SQL expression {key: expr, ...}; keys and exprs are parallel.
-- jsonb_build_object takes at most 100 arguments, so longer lists are concatenated.
CREATE FUNCTION pgpoly._fv_jsonb_expr(keys text[], exprs text[])
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT coalesce(string_agg(c.part, ' OPERATOR(pg_catalog.||) ' ORDER BY c.chunk),
					'''{}''::pg_catalog.jsonb')
	FROM (SELECT (u.i - 1) / 50 AS chunk,
				 'pg_catalog.jsonb_build_object(' || string_agg(quote_literal(u.k) || ', ' || u.e, ', '
													ORDER BY u.i) || ')' AS part
		  FROM unnest(keys, exprs) WITH ORDINALITY AS u(k, e, i)
		  GROUP BY 1) c
$$;

-- Column list "alias.col1, alias.col2, ..." of names (quoted).
CREATE FUNCTION pgpoly._fv_cols(names text[], alias text DEFAULT NULL)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT string_agg(CASE WHEN alias IS NULL THEN '' ELSE alias || '.' END || quote_ident(n),
					  ', ' ORDER BY i)
	FROM unnest(names) WITH ORDINALITY AS u(n, i)
$$;

-- entity if the type typ (an OID: an offline entity column's base type)
-- reads it, else NULL: in an entity match (_fv_describe's entity_match)
-- where the column's type is not the key's, an entity the column's type does
-- not read ('abc' of a text key, an int column) is no value of the column,
-- found in no row (status missing), rather than an error.
CREATE FUNCTION pgpoly._fv_entity_in(entity text, typ oid)
RETURNS text
AS 'MODULE_PATHNAME', 'pgpoly_fv_entity_in'
LANGUAGE C STRICT STABLE;

-- Whether key_type (a format_type()) is text-like: entities are used as given.
CREATE FUNCTION pgpoly._fv_text_type(key_type text)
RETURNS bool
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT key_type = 'text' OR key_type LIKE 'character varying%'
$$;

-- Whether the view's key is text-like (_fv_text_type).
CREATE FUNCTION pgpoly._fv_key_is_text(v pgpoly._fv_def)
RETURNS bool
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT pgpoly._fv_text_type(v.key_type)
$$;

-- An SQL condition that the entity expr (text) is stored as it is under the
-- view's key type key_type: a varchar(n) or char(n) key would cut a longer
-- entity to the key of another one (an explicit cast truncates, where an
-- INSERT of it would fail), so such entities are never written.  Trailing
-- spaces a char(n) drops are no loss (char(n) compares without them).
-- Other key types take the canonical text form.
CREATE FUNCTION pgpoly._fv_key_fits(key_type text, expr text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT CASE WHEN key_type LIKE 'character varying(%'
				THEN format('(%1$s)::%2$s::pg_catalog.text OPERATOR(pg_catalog.=) (%1$s)::pg_catalog.text',
							expr, key_type)
				WHEN key_type LIKE 'character(%'
				THEN format('(%1$s)::%2$s::pg_catalog.text OPERATOR(pg_catalog.=) '
							'pg_catalog.rtrim((%1$s)::pg_catalog.text, '' '')', expr, key_type)
				ELSE 'true' END
$$;

-- The type _fv_key_fits checks an entity against for column col of rel: its
-- format_type(), through any domains to the base type with the typmod a
-- domain gives it (an explicit cast to a domain over varchar(n) cuts as one
-- to varchar(n) does).
CREATE FUNCTION pgpoly._fv_fit_type(rel regclass, col text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	WITH RECURSIVE d(t, m) AS (
		SELECT a.atttypid, a.atttypmod FROM pg_attribute a
		WHERE a.attrelid = rel AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped
		UNION ALL
		SELECT ty.typbasetype, ty.typtypmod FROM d JOIN pg_type ty ON ty.oid = d.t
		WHERE ty.typtype = 'd')
	SELECT format_type(d.t, d.m) FROM d JOIN pg_type ty ON ty.oid = d.t WHERE ty.typtype <> 'd'
$$;

-- A value in the fixed text form the Redis FDW stores keys in (src/features.c;
-- ISO dates, UTC, IntervalStyle postgres, shortest exact floats, hex bytea).
CREATE FUNCTION pgpoly._fv_store_text(value anyelement)
RETURNS text
AS 'MODULE_PATHNAME', 'pgpoly_fv_store_text'
LANGUAGE C STRICT STABLE PARALLEL SAFE;

-- An SQL expression for the canonical text of expr, a value of the view's
-- key type: a text-like key's own text, any other the fixed form the key
-- has in Redis (_fv_store_text), so that the entity's text, which names it
-- offline, is the same in every session: '2024-01-01 05:00:00+00' whatever
-- the TimeZone, '\x01' whatever bytea_output.
CREATE FUNCTION pgpoly._fv_key_text(v pgpoly._fv_def, expr text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT CASE WHEN pgpoly._fv_key_is_text(v) OR v.key_type LIKE 'character(%'
				THEN format('(%s)::pg_catalog.text', expr)
				ELSE format('pgpoly._fv_store_text(%s)', expr) END
$$;

-- An SQL expression for the text of the Redis key expr (a value of key_type,
-- or text that reads as one) names, uncut: a text key's own text, a
-- char(n) key's without trailing blanks, any other key's fixed form
-- (_fv_store_text).  ingest_features and materialize keep one row per such
-- text (byte for byte: under COLLATE "C"), so an entity is its Redis key
-- whatever the collation or type of the column it comes from; one that a
-- varchar(n) or char(n) key would cut keeps its whole text (it is refused or
-- skipped, never merged into the key it would be cut to).
CREATE FUNCTION pgpoly._fv_uncut_text(key_type text, expr text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT CASE WHEN pgpoly._fv_text_type(key_type) THEN format('(%s)::pg_catalog.text', expr)
				WHEN key_type LIKE 'character(%'
				THEN format('pg_catalog.rtrim((%s)::pg_catalog.text, '' '')', expr)
				WHEN key_type LIKE 'timestamp% with time zone'
				THEN format('pgpoly._fv_store_text(pgpoly._fv_utc(%s)::%s)', expr, key_type)
				ELSE format('pgpoly._fv_store_text((%s)::%s)', expr, pgpoly._fv_type_sql(key_type)) END
$$;

-- The timestamptz a timestamptz key reads an offline entity column's value
-- as: a timestamp (or date) column holds the key's UTC time, as writing
-- the key's canonical text ('2024-01-02 10:00:00+00') into it stores it
-- (the cast drops the offset), whatever the session's TimeZone, so it
-- reads back as UTC (a cast would read it in the session's TimeZone: the
-- row would be another entity's in Tokyo).  Text is read as the session
-- reads it (an ingest_features source).  Inlined: no SET clause.
CREATE FUNCTION pgpoly._fv_utc(value timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE
AS $$
	SELECT value
$$;

CREATE FUNCTION pgpoly._fv_utc(value timestamp)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE
AS $$
	SELECT pg_catalog.timezone('UTC', value)
$$;

CREATE FUNCTION pgpoly._fv_utc(value date)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE
AS $$
	SELECT pg_catalog.timezone('UTC', value::pg_catalog.timestamp)
$$;

CREATE FUNCTION pgpoly._fv_utc(value text)
RETURNS timestamptz
LANGUAGE sql STABLE
AS $$
	SELECT value::pg_catalog.timestamptz
$$;

-- Whether the equality of column col of offline_table (a plain text,
-- integer or uuid type under a deterministic collation) is equality of the
-- Redis key of key_type (a format_type()): then two values it finds equal
-- have one canonical text, and every value is the canonical text's
-- (_fv_same_entity needs no text recheck, materialize may walk the index).
-- Not for citext, a nondeterministic collation ('A' and 'a' one entity
-- offline, two keys), numeric or float (1.0 and 1.00), nor a column whose
-- type is not the key's ('01' and '1' of an int key).
CREATE FUNCTION pgpoly._fv_column_is_key(offline_table regclass, col text, key_type text)
RETURNS bool
LANGUAGE sql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT coalesce((
		SELECT ty.typname IN ('text', 'varchar', 'bpchar', 'int2', 'int4', 'int8', 'uuid')
			   AND coalesce(c.collisdeterministic, true)
			   AND (key_type = format_type(a.atttypid, NULL)
					OR (pgpoly._fv_text_type(key_type) AND ty.typname IN ('text', 'varchar')))
		FROM pg_attribute a
		JOIN pg_type ty ON ty.oid = a.atttypid
		LEFT JOIN pg_collation c ON c.oid = a.attcollation
		WHERE a.attrelid = offline_table AND a.attname = col
		  AND a.attnum > 0 AND NOT a.attisdropped), false)
$$;

-- The SQL condition that the offline row's entity col (an expression of the
-- offline entity column) is entity (an SQL expression of an entity's
-- canonical text, _fv_entity_expr): an entity is its Redis key, so the
-- row's entity must have the same canonical text byte for byte
-- (_fv_uncut_text under the key type key_type; citext 'A' and 'a',
-- numeric 1.0 and 1.00 are two entities, int '007' and '7' one).
-- entity_match (_fv_describe), the column type's own equality, comes first:
-- it is what the offline (entity, event_time DESC, created_at DESC) index
-- answers, the text a recheck of the rows it finds, unless key_equal (the
-- column's equality is the key's, _fv_column_is_key) makes it redundant:
-- the recheck is a filter that also makes the planner's estimate of the
-- rows a LIMIT 1 probe reads tiny, so that it fetches and sorts every row
-- of the entity (a bitmap scan) instead of reading the index in order and
-- stopping at the first.  Every path that matches offline rows to an
-- entity uses this: the point-in-time join and get_online_features'
-- offline probe; materialize and ingest_features group rows by the same
-- text.
CREATE FUNCTION pgpoly._fv_same_entity(entity_match text, key_type text, col text, entity text,
									   key_equal bool)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT format(entity_match, col, entity) ||
		   CASE WHEN key_equal THEN ''
				ELSE format(' AND (%s) COLLATE pg_catalog."C" OPERATOR(pg_catalog.=) (%s) COLLATE pg_catalog."C"',
							pgpoly._fv_uncut_text(key_type, col), entity) END
$$;

-- An SQL expression for the canonical text (_fv_uncut_text) that the entity
-- of canonical text expr has once stored in the view's offline entity
-- column (as (expr)::entity_type): expr itself, unless the column's type
-- makes it another entity's (an int column keeps '007' of a text key as 7,
-- entity '7'; numeric(3,1) keeps '1.23' as 1.2, uuid any spelling in lower
-- case, char(n) none of its trailing blanks).  put_features and
-- ingest_features refuse such an entity: its history would not be its own.
-- A text column keeps every entity.
CREATE FUNCTION pgpoly._fv_offline_text(v pgpoly._fv_def, expr text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT CASE WHEN v.entity_type = 'text' THEN expr
				ELSE pgpoly._fv_uncut_text(v.key_type,
											format('(%s)::%s', expr, pgpoly._fv_type_sql(v.entity_type))) END
$$;

-- An SQL expression for the entity of expr (any type) in canonical text
-- form: through the view's key type, so '007' and '7' are the same entity of
-- an int-keyed view.  put_features, get_online_features and the point-in-time
-- join all normalise entities with it.  NULL for an entity a char(n) key
-- would cut (it is no key of the view: missing, and refused by put_features).
-- Text is read into the key type as the session reads it (its TimeZone; the
-- callers keep the caller's DateStyle field order, _fv_caller_datestyle).
CREATE FUNCTION pgpoly._fv_entity_expr(v pgpoly._fv_def, expr text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT CASE WHEN pgpoly._fv_key_is_text(v) THEN format('(%s)::pg_catalog.text', expr)
				WHEN v.key_type LIKE 'character(%'
				THEN format('CASE WHEN %s THEN (%s)::pg_catalog.text::%s::pg_catalog.text END',
							pgpoly._fv_key_fits(v.key_type, format('(%s)::pg_catalog.text', expr)),
							expr, v.key_type)
				ELSE pgpoly._fv_key_text(v, format('(%s)::pg_catalog.text::%s', expr,
												   pgpoly._fv_type_sql(v.key_type))) END
$$;

-- Read dates and times in the field order (MDY, DMY, YMD) of caller, the
-- DateStyle of the session that called the feature-store function, as that
-- session reads them; output stays ISO.  Only for a function whose SET
-- clause names datestyle (which undoes this at its exit): the public
-- function passes current_setting('DateStyle') to the one doing the work,
-- whose own SET clause hides the caller's setting.  No SET clause here: one
-- would make this its own GUC level, and the setting would pass to the
-- caller's on exit only by the merging rules of nested levels.
CREATE FUNCTION pgpoly._fv_caller_datestyle(caller text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
	-- run by ingest_features under the caller's search_path: qualified
	IF pgpoly._fv_caller_datestyle_iso(caller) IS NOT NULL THEN
		PERFORM pg_catalog.set_config('datestyle', pgpoly._fv_caller_datestyle_iso(caller), true);
	END IF;
END
$$;

-- The DateStyle 'ISO, <caller's field order>' for _fv_caller_datestyle, or
-- NULL if caller names no field order.
CREATE FUNCTION pgpoly._fv_caller_datestyle_iso(caller text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT CASE WHEN upper(split_part(caller, ',', 2)) ~ '^\s*(MDY|DMY|YMD)\s*$'
				THEN 'ISO, ' || btrim(split_part(caller, ',', 2)) END
$$;

-- entities in canonical text form (see _fv_entity_expr).
CREATE FUNCTION pgpoly._fv_normalize(v pgpoly._fv_def, entities text[])
RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_out text[];
BEGIN
	IF pgpoly._fv_key_is_text(v) THEN
		RETURN entities;
	END IF;
	EXECUTE format('SELECT array_agg(%s ORDER BY i) FROM unnest($1) WITH ORDINALITY u(e, i)',
				   pgpoly._fv_entity_expr(v, 'e'))
	INTO v_out USING entities;
	RETURN v_out;
END
$$;

-- Options of a foreign table (or column) as an OPTIONS (...) clause, '' if none.
-- skip: option names left out; extra: 'name=value' entries added.
CREATE FUNCTION pgpoly._fv_options_clause(opts text[], skip text[] DEFAULT '{}',
										  extra text[] DEFAULT '{}')
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT coalesce(' OPTIONS (' || string_agg(quote_ident(o.name) || ' ' || quote_literal(o.value),
											   ', ' ORDER BY o.i) || ')', '')
	FROM (SELECT split_part(x, '=', 1) AS name,
				 substr(x, strpos(x, '=') + 1) AS value, i
		  FROM unnest(coalesce(opts, '{}') || coalesce(extra, '{}')) WITH ORDINALITY AS u(x, i)) o
	WHERE NOT o.name = ANY (coalesce(skip, '{}'))
$$;

-- Whether foreign table rel writes in write_mode 'outbox'.
CREATE FUNCTION pgpoly._fv_outbox(rel regclass)
RETURNS bool
LANGUAGE sql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT coalesce('write_mode=outbox' = ANY (t.ftoptions), false)
	FROM pg_foreign_table t WHERE t.ftrelid = rel
$$;

-- Column definitions "name type OPTIONS (...)" of a foreign table's live columns;
-- skip: column names left out.
CREATE FUNCTION pgpoly._fv_column_defs(rel regclass, skip text[] DEFAULT '{}')
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT string_agg(quote_ident(a.attname) || ' ' || format_type(a.atttypid, a.atttypmod)
					  || pgpoly._fv_options_clause(a.attfdwoptions), ', ' ORDER BY a.attnum)
	FROM pg_attribute a
	WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
	  AND NOT a.attname = ANY (skip)
$$;

--
-- create_feature_view
--

-- Check that rel is a pgpoly_redis hash table; return its key column.
CREATE FUNCTION pgpoly._fv_check_online(rel regclass)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_fdw   name;
	v_opts  text[];
	v_ttype text;
	v_key   text;
BEGIN
	SELECT w.fdwname, t.ftoptions INTO v_fdw, v_opts
	FROM pg_foreign_table t
	JOIN pg_foreign_server s ON s.oid = t.ftserver
	JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw
	WHERE t.ftrelid = rel;
	IF v_fdw IS DISTINCT FROM 'pgpoly_redis' THEN
		RAISE EXCEPTION 'online table % is not a pgpoly_redis foreign table', rel
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The online store of a feature view is a Redis hash table: CREATE FOREIGN TABLE ... SERVER <pgpoly_redis server> OPTIONS (table_type ''hash'').';
	END IF;
	SELECT substr(o, 12) INTO v_ttype FROM unnest(v_opts) o WHERE o LIKE 'table\_type=%';
	IF coalesce(v_ttype, 'hash') <> 'hash' THEN
		RAISE EXCEPTION 'online table % has table_type ''%'', not ''hash''', rel, v_ttype
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A feature view keeps one Redis hash per entity.';
	END IF;
	-- the key column, resolved by the FDW itself (ERROR if there is none);
	-- not an array: the entities are looked up as key = ANY (array of keys),
	-- which an array key would read as an array of its elements
	v_key := pgpoly._redis_key_column(rel);
	IF pgpoly._fv_fit_type(rel, v_key) LIKE '%[]' THEN
		RAISE EXCEPTION 'key column "%" of online table % is of array type %', v_key, rel,
			pgpoly._fv_fit_type(rel, v_key)
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'An entity is one value: key the online table by a scalar type (text, int, uuid ...).';
	END IF;
	RETURN v_key;
END
$$;

-- Create the default offline table pgpoly.<name>_history for features of types.
CREATE FUNCTION pgpoly._fv_create_history(name text, features text[], types text[])
RETURNS regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_tab text := name || '_history';
	v_bad text;
BEGIN
	SELECT f INTO v_bad FROM unnest(features) f
	WHERE f IN ('entity', 'event_time', 'created_at') LIMIT 1;
	IF v_bad IS NOT NULL THEN
		RAISE EXCEPTION 'feature name "%" collides with a column of the offline history table', v_bad
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Rename the online column (keep the hash field with OPTIONS (field ''...'')), or pass your own offline_table.';
	END IF;
	-- the entity under COLLATE "C": an entity is its canonical text byte
	-- for byte (its Redis key), which "C" compares with memcmp, where a
	-- libc or ICU default collation (en_US.UTF-8) would run strcoll for
	-- every comparison of every index insertion and probe
	EXECUTE format('CREATE TABLE pgpoly.%I (entity text COLLATE pg_catalog."C" NOT NULL, '
				   'event_time timestamptz NOT NULL, '
				   'created_at timestamptz NOT NULL DEFAULT clock_timestamp(), %s)',
				   v_tab,
				   (SELECT string_agg(quote_ident(f) || ' ' || t, ', ' ORDER BY i)
					FROM unnest(features, types) WITH ORDINALITY AS u(f, t, i)));
	-- point-in-time probes and the online fallback: newest row of an entity.
	-- No deduplication: created_at (the clock at the write) makes equal
	-- keys all but impossible, and the deduplication pass that would run
	-- over each full leaf page before it is split would merge nothing
	EXECUTE format('CREATE INDEX %I ON pgpoly.%I (entity, event_time DESC, created_at DESC) '
				   'WITH (deduplicate_items = off)',
				   v_tab || '_entity_time_idx', v_tab);
	-- feature_freshness (_fv_newest_event_time) and windows of the history
	-- (feature_stats' since): a BRIN, whose upkeep costs a write next to
	-- nothing where a btree cost each row a second index insertion;
	-- autosummarize, so that ranges filled since the last VACUUM are summarised
	EXECUTE format('CREATE INDEX %I ON pgpoly.%I USING brin (event_time) WITH (autosummarize = on)',
				   v_tab || '_time_idx', v_tab);
	RETURN format('pgpoly.%I', v_tab)::regclass;
END
$$;

-- Check a user-supplied offline table: the entity column (entity or <entity>),
-- event_time and created_at (timestamptz), and every feature.  Returns the entity
-- column.
CREATE FUNCTION pgpoly._fv_check_offline(rel regclass, entity text, features text[])
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_missing     text;
	entity_column text;
BEGIN
	SELECT a.attname INTO entity_column
	FROM pg_attribute a
	WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
	  AND a.attname IN ('entity', _fv_check_offline.entity)
	ORDER BY a.attname = 'entity' DESC LIMIT 1;
	IF entity_column IS NULL THEN
		RAISE EXCEPTION 'offline table % has no entity column', rel
			USING ERRCODE = 'undefined_column',
				  HINT = format('Name it "entity" or %I.', entity);
	END IF;
	SELECT c INTO v_missing
	FROM unnest(ARRAY['event_time', 'created_at']) c
	WHERE NOT EXISTS (SELECT FROM pg_attribute a
					  WHERE a.attrelid = rel AND a.attname = c AND NOT a.attisdropped
						AND a.atttypid = 'timestamptz'::regtype)
	LIMIT 1;
	IF v_missing IS NOT NULL THEN
		RAISE EXCEPTION 'offline table % has no timestamptz column "%"', rel, v_missing
			USING ERRCODE = 'undefined_column',
				  HINT = 'An offline table has columns entity, event_time timestamptz, created_at timestamptz and one column per feature.';
	END IF;
	SELECT f INTO v_missing FROM unnest(features) WITH ORDINALITY u(f, i)
	WHERE NOT EXISTS (SELECT FROM pg_attribute a
					  WHERE a.attrelid = rel AND a.attname = f AND a.attnum > 0
						AND NOT a.attisdropped)
	ORDER BY i LIMIT 1;
	IF v_missing IS NOT NULL THEN
		RAISE EXCEPTION 'offline table % has no column for feature "%"', rel, v_missing
			USING ERRCODE = 'undefined_column';
	END IF;
	RETURN entity_column;
END
$$;

-- Give dst (an internal serving table) the table privileges that roles hold
-- on src (the user's online table), so that whoever may use the online table
-- may use the view's statements on dst; PUBLIC gets only what it has on src.
-- Later GRANTs and REVOKEs on src are not copied (the functions check src
-- itself on every call).
CREATE FUNCTION pgpoly._fv_copy_grants(src regclass, dst regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	r record;
BEGIN
	EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', dst);
	FOR r IN
		SELECT DISTINCT a.grantee, a.privilege_type
		FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
		WHERE c.oid = src AND a.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')
		  AND a.grantee <> (SELECT d.relowner FROM pg_class d WHERE d.oid = dst)
		ORDER BY 1, 2
	LOOP
		EXECUTE format('GRANT %s ON %s TO %s', r.privilege_type, dst,
					   CASE WHEN r.grantee = 0 THEN 'PUBLIC'
							ELSE quote_ident(pg_get_userbyid(r.grantee)) END);
	END LOOP;
END
$$;

-- The serving table of a view over online table rel: rel itself when it declares
-- _event_time timestamptz and does not write immediately; else a new internal
-- table pgpoly.<name>_serving with rel's columns and options plus _event_time
-- (and rel's write_mode when it is 'outbox'), and rel's grants.
CREATE FUNCTION pgpoly._fv_serving_table(name text, rel regclass, OUT serving regclass,
										 OUT created bool)
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_et_type  regtype;
	v_opts     text[];
	v_server   name;
	v_tab      text := name || '_serving';
BEGIN
	SELECT a.atttypid INTO v_et_type FROM pg_attribute a
	WHERE a.attrelid = rel AND a.attname = '_event_time' AND NOT a.attisdropped;
	IF v_et_type IS NOT NULL AND v_et_type <> 'timestamptz'::regtype THEN
		RAISE EXCEPTION 'column "_event_time" of online table % must be timestamptz, not %',
						rel, v_et_type
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	SELECT t.ftoptions, s.srvname INTO v_opts, v_server
	FROM pg_foreign_table t JOIN pg_foreign_server s ON s.oid = t.ftserver
	WHERE t.ftrelid = rel;
	IF v_et_type IS NOT NULL AND NOT coalesce('write_mode=immediate' = ANY (v_opts), false) THEN
		serving := rel;
		created := false;
		RETURN;
	END IF;
	EXECUTE format('CREATE FOREIGN TABLE pgpoly.%I (%s, _event_time timestamptz) SERVER %I%s',
				   v_tab, pgpoly._fv_column_defs(rel, '{_event_time,_ttl}'), v_server,
				   pgpoly._fv_options_clause(v_opts,
					   CASE WHEN 'write_mode=outbox' = ANY (v_opts) THEN '{batch_size}'
							ELSE '{write_mode,batch_size}' END::text[]));
	EXECUTE format('COMMENT ON FOREIGN TABLE pgpoly.%I IS %L', v_tab,
				   format('pgpoly internal: serving table of feature view "%s" (the fields of %s plus _event_time)',
						  name, rel));
	serving := format('pgpoly.%I', v_tab)::regclass;
	created := true;
	PERFORM pgpoly._fv_copy_grants(rel, serving);
END
$$;

CREATE FUNCTION pgpoly.create_feature_view(name text, entity text, online_table regclass,
										   offline_table regclass DEFAULT NULL,
										   ttl interval DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_key     text;
	v_feat    text[];
	v_types   text[];
	v_offline regclass := create_feature_view.offline_table;
	v_ecol    text := 'entity';
	v_serving regclass;
	v_created bool;
	v_ttl     interval := ttl;
	v_problem text;
BEGIN
	PERFORM pgpoly._require_name(name, 'name');
	PERFORM pgpoly._require_name(entity, 'entity');
	PERFORM pgpoly._require(online_table, 'online_table');
	PERFORM pgpoly._relation_name(online_table);
	PERFORM pgpoly._relation_name(offline_table);
	IF date_part('epoch', ttl) < 0 THEN
		RAISE EXCEPTION 'ttl must not be negative (got %)', ttl
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass NULL or 0 for features that never expire.';
	ELSIF date_part('epoch', ttl) = 0 THEN
		v_ttl := NULL;				-- 0 means no ttl, as in Feast
	END IF;
	-- name and entity as spelt, whatever the collation they are given in
	IF name COLLATE pg_catalog."default" !~ '^[A-Za-z_][A-Za-z0-9_]*$' OR length(name) > 40 THEN
		RAISE EXCEPTION 'invalid feature view name "%"', name
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'Feature references are written view:feature and output columns view__feature.',
				  HINT = 'Use letters, digits and underscores, at most 40 characters.';
	END IF;
	IF EXISTS (SELECT FROM pgpoly.feature_views f WHERE f.name = create_feature_view.name COLLATE pg_catalog."default") THEN
		RAISE EXCEPTION 'feature view "%" already exists', name
			USING ERRCODE = 'duplicate_object';
	END IF;

	v_key := pgpoly._fv_check_online(online_table);
	-- the view serves what the online (and offline) table holds: its creator
	-- must be able to read them
	PERFORM pgpoly._fv_require_privileges(online_table, 'SELECT');
	SELECT array_agg(a.attname::text ORDER BY a.attnum),
		   array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
	INTO v_feat, v_types
	FROM pg_attribute a
	WHERE a.attrelid = online_table AND a.attnum > 0 AND NOT a.attisdropped
	  AND a.attname NOT IN (v_key COLLATE pg_catalog."default", '_event_time', '_ttl');
	IF v_feat IS NULL THEN
		RAISE EXCEPTION 'online table % has no feature columns', online_table
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Features are the columns other than the key, _event_time and _ttl.';
	END IF;

	IF v_offline IS NULL THEN
		v_offline := pgpoly._fv_create_history(name COLLATE pg_catalog."default", v_feat, v_types);
	ELSE
		v_ecol := pgpoly._fv_check_offline(v_offline, entity COLLATE pg_catalog."default", v_feat);
		PERFORM pgpoly._fv_require_privileges(v_offline, 'SELECT');
	END IF;
	SELECT s.serving, s.created INTO v_serving, v_created
	FROM pgpoly._fv_serving_table(name COLLATE pg_catalog."default", online_table) s;

	INSERT INTO pgpoly.feature_views (name, entity, online_table, offline_table, ttl)
	VALUES (name, entity, online_table, v_offline, v_ttl);
	INSERT INTO pgpoly._feature_view_storage
		(view_name, serving_table, serving_created, offline_created, key_column,
		 entity_column, features)
	VALUES (name, v_serving, v_created, create_feature_view.offline_table IS NULL,
			v_key, v_ecol, v_feat);
	-- what every call checks (_fv_describe), refused now rather than at the
	-- first call: the one left is an entity type without equality
	SELECT l.problem INTO v_problem FROM pgpoly._fv_lookup(name COLLATE pg_catalog."default") l;
	IF v_problem IS NOT NULL THEN
		RAISE EXCEPTION 'feature view "%" cannot be created: %', name, v_problem
			USING ERRCODE = 'undefined_function',
				  HINT = 'Entities are matched by the default equality of the offline entity column''s type (its btree or hash operator class).';
	END IF;

	-- lineage: the offline table is the view's source dataset
	PERFORM pgpoly.register_dataset(pgpoly._fv_rel(v_offline), store => 'postgres');
	PERFORM pgpoly._add_edge('dataset', pgpoly._fv_rel(v_offline), 'feature_view', name,
							 'offline_store');
END
$$;

COMMENT ON FUNCTION pgpoly.create_feature_view(text, text, regclass, regclass, interval) IS
	'Register a feature view: an online pgpoly_redis hash table plus an offline history table (created as pgpoly.<name>_history when NULL)';

-- Drop a view's registration, and the tables pgpoly made for it: its serving
-- table, and with drop_tables its history table.  A table is dropped only if
-- it is the one pgpoly names for the view (pgpoly.<view>_serving /
-- pgpoly.<view>_history), whatever _feature_view_storage says; DROP checks
-- ownership as usual.  Works on a view _fv_get refuses as unusable.
CREATE FUNCTION pgpoly.drop_feature_view(name text, drop_tables bool DEFAULT false)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	f pgpoly.feature_views;
	s pgpoly._feature_view_storage;
BEGIN
	PERFORM pgpoly._require_name(name, 'name');
	-- the name as it is spelt, whatever the collation it is given in
	SELECT * INTO f FROM pgpoly.feature_views x
	WHERE x.name = drop_feature_view.name COLLATE pg_catalog."default";
	IF NOT FOUND THEN
		PERFORM pgpoly._fv_get(name);		-- raises 42704
	END IF;
	SELECT * INTO s FROM pgpoly._feature_view_storage x WHERE x.view_name = f.name;
	DELETE FROM pgpoly.feature_views x WHERE x.name = f.name;
	-- ON DELETE CASCADE removed the storage row, unless it did not fire: it
	-- is a trigger, and a session with session_replication_role = replica
	-- fires none (only then is DELETE on the storage table needed)
	IF EXISTS (SELECT FROM pgpoly._feature_view_storage x WHERE x.view_name = f.name) THEN
		DELETE FROM pgpoly._feature_view_storage x WHERE x.view_name = f.name;
	END IF;
	IF s.serving_created AND s.serving_table IS NOT DISTINCT FROM
			to_regclass(format('pgpoly.%I', f.name || '_serving')) THEN
		EXECUTE format('DROP FOREIGN TABLE %s', s.serving_table);
	END IF;
	IF drop_tables AND s.offline_created AND f.offline_table IS NOT DISTINCT FROM
			to_regclass(format('pgpoly.%I', f.name || '_history')) THEN
		EXECUTE format('DROP TABLE %s', f.offline_table);
	END IF;
END
$$;

COMMENT ON FUNCTION pgpoly.drop_feature_view(text, bool) IS
	'Unregister a feature view (and drop the offline table pgpoly created for it when drop_tables); Redis data is kept';

--
-- put_features
--

-- Re-raise msg, a program_limit_exceeded error of the offline INSERT of
-- entity (canonical text), naming the entity when it is too long for a
-- btree entry (the history index on (entity, event_time, created_at) is one,
-- and must be: its order serves the newest-row probes): an entry holds at
-- most a third of a page, 2704 bytes with 8 kB pages, after compression.
-- Returns for any other error (state: its SQLSTATE; _too_long_for_index),
-- which the caller re-raises.
CREATE FUNCTION pgpoly._fv_long_entity(state text, v pgpoly._fv_def, entity text, msg text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT pgpoly._too_long_for_index(state, '{entity}', ARRAY[entity],
									  format('an index of the offline table of feature view "%s"', v.name),
									  msg, 'Use a shorter entity (for instance a hash of it), or an offline table without a btree index on the entity.')
$$;

-- Find the feature whose value in features does not convert and re-raise its error
-- with the feature named; re-raise the original error if none is found.
CREATE FUNCTION pgpoly._fv_bad_value(v pgpoly._fv_def, features jsonb, state text, msg text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	k text;
	t text;
BEGIN
	FOR k, t IN SELECT f, ty FROM unnest(v.features, v.feature_types) u(f, ty)
				WHERE features ? u.f LOOP
		BEGIN
			EXECUTE format('SELECT (jsonb_populate_record(NULL::%s, $1)).%I',
						   v.offline_rel, k)
			USING jsonb_build_object(k, features -> k);
		EXCEPTION WHEN data_exception THEN
			RAISE EXCEPTION 'invalid value for feature "%" of feature view "%": %', k, v.name, SQLERRM
				USING ERRCODE = SQLSTATE,
					  DETAIL = format('The value %s does not fit type %s.', features -> k, t);
		END;
	END LOOP;
	RAISE EXCEPTION '%', msg USING ERRCODE = state;
END
$$;

-- Raise 22023 for entity, which the offline entity column of view v would
-- store as the other entity stored (_fv_offline_text); source_row: its row
-- of an ingest_features source.
CREATE FUNCTION pgpoly._fv_not_kept(v pgpoly._fv_def, entity text, stored text,
									source_row bigint DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
BEGIN
	RAISE EXCEPTION 'entity "%" would be entity "%" in the entity column "%" (%) of the offline table of feature view "%"',
		entity, stored, v.entity_column, v.entity_type, v.name
		USING ERRCODE = 'invalid_parameter_value',
			  DETAIL = CASE WHEN source_row IS NOT NULL THEN format('Row %s of the source.  ', source_row) ELSE '' END ||
					   format('The key column "%s" (%s) keeps them apart: they are two entities online.',
							  v.key_column, v.key_type),
			  HINT = 'Write the entity as the key type prints it, or give the offline table an entity column of the key''s type (or text).';
END
$$;

-- Raise the error of an infinite event time given to put_features (pos
-- NULL) or in row pos of ingest_features' source.  Such a time would be
-- newer (or older) than every other forever: online, 'infinity' kept every
-- later write of the entity out of Redis, silently; no spine time is ever
-- after it; feature_stats' default window leaves it out.
CREATE FUNCTION pgpoly._fv_infinite_event_time(pos bigint)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
BEGIN
	RAISE EXCEPTION '%event_time must be a finite time',
		CASE WHEN pos IS NULL THEN '' ELSE format('row %s of the source: ', pos) END
		USING ERRCODE = 'invalid_parameter_value',
			  DETAIL = 'An event time of infinity would be newer than every later write forever, and one of -infinity older than any time.',
			  HINT = 'Give the time the values were observed (e.g. ''1970-01-01'' for values known since long ago).';
END
$$;

-- put_features' work; caller_datestyle: the caller's DateStyle, whose field
-- order reads the entity and the features' values (_fv_caller_datestyle).
CREATE FUNCTION pgpoly._put_features(view text, entity text, features jsonb,
									 event_time timestamptz, caller_datestyle text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
SET datestyle = 'ISO, YMD'
SET extra_float_digits = 1
AS $$
DECLARE
	v       pgpoly._fv_def := pgpoly._fv_get(view);
	v_bad   text;
	v_ent   text;
	v_old   timestamptz;
	v_found bool;
	v_cols  text;
	v_stored text;
	v_outbox bool;
BEGIN
	PERFORM pgpoly._fv_caller_datestyle(caller_datestyle);
	PERFORM pgpoly._require_name(entity, 'entity');
	PERFORM pgpoly._require(event_time, 'event_time');
	IF NOT isfinite(event_time) THEN
		PERFORM pgpoly._fv_infinite_event_time(NULL);
	END IF;
	PERFORM pgpoly._require(features, 'features');
	IF jsonb_typeof(features) <> 'object' THEN
		RAISE EXCEPTION 'argument "features" must be a JSON object, not %', jsonb_typeof(features)
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass {"feature": value, ...}.';
	END IF;
	SELECT k INTO v_bad FROM jsonb_object_keys(features) k
	WHERE NOT k = ANY (v.features) ORDER BY k LIMIT 1;
	IF v_bad IS NOT NULL THEN
		PERFORM pgpoly._fv_unknown_feature(v, v_bad);
	END IF;
	-- as INSERT INTO offline, and online an upsert that reads the stored event
	-- time (INSERT ... ON CONFLICT DO UPDATE ... WHERE)
	PERFORM pgpoly._fv_check_access(v, 'SELECT, INSERT, UPDATE', 'INSERT');
	v_ent := (pgpoly._fv_normalize(v, ARRAY[entity]))[1];
	v_cols := pgpoly._fv_cols(v.features);
	EXECUTE 'SELECT coalesce(' || pgpoly._fv_key_fits(v.key_type, '$1') || ', false)'
	INTO v_found USING v_ent;
	IF NOT v_found THEN
		RAISE EXCEPTION 'entity "%" does not fit the key column "%" (%) of feature view "%"',
			entity, v.key_column, v.key_type, view
			USING ERRCODE = 'string_data_right_truncation',
				  HINT = 'Cut to the key type, it would be the key of another entity; give the online table a longer key type.';
	END IF;
	-- likewise the offline entity column (as ingest_features checks it)
	EXECUTE 'SELECT ' || pgpoly._fv_key_fits(pgpoly._fv_fit_type(v.offline_table, v.entity_column), '$1')
	INTO v_found USING v_ent;
	IF NOT v_found THEN
		RAISE EXCEPTION 'entity "%" does not fit the entity column "%" (%) of the offline table of feature view "%"',
			entity, v.entity_column, v.entity_type, view
			USING ERRCODE = 'string_data_right_truncation',
				  HINT = 'Cut to the column''s type it would be another entity; give the offline table a longer entity type.';
	END IF;

	-- and its row offline must be this entity's (a text column keeps every
	-- entity; one the column's type does not read is no value of it: 'abc'
	-- of an int column)
	IF v.entity_type <> 'text' THEN
		BEGIN
			EXECUTE 'SELECT ' || pgpoly._fv_offline_text(v, '$1') INTO v_stored USING v_ent;
		EXCEPTION WHEN data_exception THEN
			RAISE EXCEPTION 'invalid entity "%" for the entity column "%" (%) of the offline table of feature view "%": %',
				entity, v.entity_column, v.entity_type, view, SQLERRM
				USING ERRCODE = SQLSTATE,
					  HINT = 'Give the offline table an entity column of the key''s type (or text).';
		END;
		IF v_stored IS DISTINCT FROM v_ent THEN
			PERFORM pgpoly._fv_not_kept(v, entity, v_stored);
		END IF;
	END IF;

	-- the entity's lock, held to the end of the transaction whether this one
	-- writes online or not, before the offline row is made: its created_at
	-- (the tie-break of equal event times offline) then follows the order in
	-- which the writers of the entity decide online (an outbox table: the
	-- order of their COMMITs, in which the sync worker delivers them), so
	-- that of two equal event times the one online is the one the history
	-- calls newest
	v_outbox := pgpoly._fv_outbox(v.serving_table);
	PERFORM pgpoly._fv_lock_entities(v.online_table, ARRAY[v_ent], true);

	-- offline: always appended; the conversion of the values happens here
	BEGIN
		EXECUTE format('INSERT INTO %s (%I, event_time, created_at, %s) '
					   'SELECT $1::%s, $2, clock_timestamp(), %s FROM jsonb_populate_record(NULL::%s, $3) r',
					   v.offline_rel, v.entity_column, v_cols, v.entity_type,
					   pgpoly._fv_cols(v.features, 'r'), v.offline_rel)
		USING v_ent, event_time, features;
	EXCEPTION
		WHEN data_exception THEN
			PERFORM pgpoly._fv_bad_value(v, features, SQLSTATE, SQLERRM);
		WHEN program_limit_exceeded THEN
			PERFORM pgpoly._fv_long_entity(SQLSTATE, v, v_ent, SQLERRM);
			RAISE;
	END;

	-- online: only if not older than what the online store holds (an outbox
	-- table: decided when the sync worker delivers it); that is the Redis
	-- key of the same text (a numeric key's equality would find 1.0 for
	-- 1.00, a citext one 'A' for 'a')
	IF NOT v_outbox THEN
		EXECUTE format('SELECT s._event_time, true FROM %s s WHERE s.%I = $1::%s '
					   'AND %s COLLATE "C" = $1 COLLATE "C"',
					   v.serving_rel, v.key_column, v.key_type,
					   pgpoly._fv_key_text(v, format('s.%I', v.key_column)))
		INTO v_old, v_found USING v_ent;
		IF v_found AND v_old > event_time THEN
			RETURN;
		END IF;
	END IF;
	EXECUTE format('INSERT INTO %s (%I, %s, _event_time) '
				   'SELECT $1::%s, %s, $2 FROM jsonb_populate_record(NULL::%s, $3) r',
				   v.serving_rel, v.key_column, v_cols, v.key_type,
				   pgpoly._fv_cols(v.features, 'r'), v.offline_rel)
	USING v_ent, event_time, features;
END
$$;

-- The entity is read as the caller's own SQL reads a literal of the view's
-- key type (TimeZone, DateStyle field order: '01/02/2024' is 1 February in
-- a DMY session), and stored under its canonical text (_fv_entity_expr).
CREATE FUNCTION pgpoly.put_features(view text, entity text, features jsonb,
									event_time timestamptz DEFAULT now())
RETURNS void
LANGUAGE sql VOLATILE
AS $$
	-- the default collation: an argument of a nondeterministic one (an entity
	-- read from such a column) would otherwise be the collation every text
	-- of _put_features compares under
	SELECT pgpoly._put_features($1 COLLATE pg_catalog."default", $2 COLLATE pg_catalog."default",
								$3, $4, pg_catalog.current_setting('DateStyle'))
$$;

COMMENT ON FUNCTION pgpoly.put_features(text, text, jsonb, timestamptz) IS
	'Record an entity''s features at event_time: appended offline, written online unless the online value is newer; in the caller''s transaction';

--
-- get_online_features
--

-- The online values of keys: their keys (canonical text, _fv_key_text), event times and the
-- features feat as jsonb, in one pipelined Redis round per fetch_size keys.
CREATE FUNCTION pgpoly._fv_fetch_online(v pgpoly._fv_def, keys text[], feat text[],
										OUT online_keys text[],
										OUT online_event_times timestamptz[],
										OUT online_features jsonb[])
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgpoly, pg_temp
SET datestyle = 'ISO, YMD'
SET extra_float_digits = 1
AS $$
BEGIN
	EXECUTE format('SELECT array_agg(%5$s), array_agg(s._event_time), array_agg(%3$s) '
				   'FROM %2$s s WHERE s.%1$I = ANY ($1::%4$s[])',
				   v.key_column, v.serving_rel,
				   pgpoly._fv_jsonb_expr(feat, ARRAY(SELECT 's.' || quote_ident(f) FROM unnest(feat) f)),
				   v.key_type, pgpoly._fv_key_text(v, format('s.%I', v.key_column)))
	INTO online_keys, online_event_times, online_features USING keys;
END
$$;

-- The statement that probes the offline table for the entities whose online
-- value the rule does not serve, and with write also writes back online what
-- the rule serves from offline (the INSERT runs to completion although nothing
-- reads it).  Its parameters: $1 the entities (text[], canonical text form),
-- $2 whether each was found online (bool[]), $3 its online event time
-- (timestamptz[]), $4 fresh (timestamptz).  Its one row: the entities found
-- offline, their newest event times (as timestamptz, also where the column
-- was altered to another type since) and features feat of that row as jsonb,
-- as parallel arrays (NULL when none was found).  One indexed LIMIT 1 probe
-- per entity.  Both implementations of get_online_features run it: the
-- PL/pgSQL one below, and the C one (src/features.c), which prepares it once
-- per view; the names and types are the catalog's (_fv_lookup), and rows
-- match an entity as _fv_same_entity says: the index finds them with
-- entity_match (_fv_describe), their canonical text must be the entity's.
CREATE FUNCTION pgpoly._fv_offline_sql(offline_rel text, entity_column text, entity_match text,
									   serving_rel text, key_column text, key_type text,
									   features text[], feat text[], write bool, key_equal bool)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT format($q$
		WITH h AS MATERIALIZED (
			SELECT n._fv_k, n._fv_found, n._fv_oet, h.event_time::timestamptz AS _fv_et, %1$s
			FROM unnest($1::text[], $2::bool[], $3::timestamptz[]) n(_fv_k, _fv_found, _fv_oet)
			CROSS JOIN LATERAL (SELECT * FROM %2$s h WHERE %3$s
								ORDER BY h.event_time DESC, h.created_at DESC LIMIT 1) h)%4$s
		SELECT array_agg(h._fv_k), array_agg(h._fv_et), array_agg(%5$s) FROM h$q$,
		pgpoly._fv_cols(features, 'h'), offline_rel,
		pgpoly._fv_same_entity(entity_match, key_type, 'h.' || quote_ident(entity_column), 'n._fv_k',
							   key_equal),
		CASE WHEN write THEN format($q$,
		w AS (INSERT INTO %1$s (%2$I, %3$s, _event_time)
			  SELECT h._fv_k::%4$s, %5$s, h._fv_et FROM h
			  WHERE (pgpoly._fv_serve($4::timestamptz, h._fv_found, h._fv_oet, true, h._fv_et)).source = 'offline'
				AND %6$s
			  RETURNING 1)$q$,
			serving_rel, key_column, pgpoly._fv_cols(features), key_type,
			pgpoly._fv_cols(features, 'h'), pgpoly._fv_key_fits(key_type, 'h._fv_k')) ELSE '' END,
		pgpoly._fv_jsonb_expr(feat, ARRAY(SELECT 'h.' || quote_ident(f) FROM unnest(feat) f)))
$$;

-- The general implementation of get_online_features: the C entry point in
-- src/features.c serves what it can by itself and calls this for the rest
-- (other key or feature types, unusable views, bad arguments).  The status
-- and the value of each entity, and which values go back online, are decided
-- by pgpoly._fv_serve(); the write-back happens only where
-- pgpoly._fv_may_write() allows it.
CREATE FUNCTION pgpoly._get_online_features(view text, entities text[], features text[],
											 caller_datestyle text DEFAULT NULL)
RETURNS TABLE (o_entity text, o_features jsonb, o_event_time timestamptz, o_source text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgpoly, pg_temp
SET datestyle = 'ISO, YMD'
SET extra_float_digits = 1
AS $$
DECLARE
	v       pgpoly._fv_def := pgpoly._fv_get(view);
	v_feat  text[] := coalesce(features, v.features);
	v_bad   text;
	v_norm  text[];
	v_keys  text[];
	v_ok    text[];			-- online: keys, event times, requested features
	v_oet   timestamptz[];
	v_of    jsonb[];
	v_need  text[];			-- keys the online value does not serve
	v_needf bool[];			-- and whether they were found online
	v_needt timestamptz[];	-- and their online event times
	v_fk    text[];			-- offline: keys, event times, features
	v_fet   timestamptz[];
	v_ff    jsonb[];
	v_outbox bool;
	v_write bool;			-- values served from offline go back online
	v_locked bool := false;
BEGIN
	PERFORM pgpoly._fv_caller_datestyle(caller_datestyle);
	PERFORM pgpoly._require(entities, 'entities');
	SELECT f INTO v_bad FROM unnest(v_feat) f WHERE f IS NULL OR NOT f = ANY (v.features) LIMIT 1;
	IF FOUND THEN
		PERFORM pgpoly._fv_unknown_feature(v, v_bad);
	END IF;
	-- as a SELECT of both tables (and of the serving table, checked by the
	-- statements on it)
	PERFORM pgpoly._fv_check_access(v, 'SELECT', 'SELECT');
	v_norm := pgpoly._fv_normalize(v, entities);
	SELECT array_agg(DISTINCT k) INTO v_keys FROM unnest(v_norm) k WHERE k IS NOT NULL;

	v_outbox := pgpoly._fv_outbox(v.serving_table);
	v_write := pgpoly._fv_may_write(v.online_table, v.serving_table);
	LOOP
		-- one pipelined Redis round (per fetch_size keys) for all entities; an
		-- outbox table's view serves from offline while Redis is unreachable
		-- (and is not read again once locked: the sync worker decides)
		IF v_outbox AND v_locked THEN
			NULL;
		ELSIF v_outbox THEN
			BEGIN
				SELECT * INTO v_ok, v_oet, v_of FROM pgpoly._fv_fetch_online(v, v_keys, v_feat);
			EXCEPTION WHEN connection_exception THEN
				v_ok := NULL;
			END;
		ELSE
			SELECT * INTO v_ok, v_oet, v_of FROM pgpoly._fv_fetch_online(v, v_keys, v_feat);
		END IF;

		-- what the online value alone does not serve: missing, or stale
		SELECT array_agg(k.k), array_agg(o.k IS NOT NULL), array_agg(o.et)
		INTO v_need, v_needf, v_needt
		FROM unnest(v_keys) k(k)
		LEFT JOIN unnest(v_ok, v_oet) o(k, et) ON o.k = k.k
		WHERE (pgpoly._fv_serve(v.fresh, o.k IS NOT NULL, o.et, false, NULL)).source <> 'online';

		-- read again under the locks: an entity the first read served online
		-- may not be served now (its key evicted meanwhile); it is locked too,
		-- or nothing goes back
		IF v_locked AND v_write AND v_need IS NOT NULL THEN
			v_write := pgpoly._fv_lock_entities(v.online_table, v_need, false);
		END IF;

		v_fk := NULL;
		v_fet := NULL;
		v_ff := NULL;
		IF v_need IS NOT NULL THEN
			EXECUTE pgpoly._fv_offline_sql(v.offline_rel, v.entity_column, v.entity_match,
										   v.serving_rel, v.key_column, v.key_type, v.features,
										   v_feat, v_write AND v_locked,
										   pgpoly._fv_entity_is_key(v))
			INTO v_fk, v_fet, v_ff
			USING v_need, v_needf, v_needt, v.fresh;
		END IF;

		-- a value goes back online only under its entity's lock, decided on
		-- what Redis holds once the lock is held (read again, and the probe
		-- run again, writing): a concurrent writer's newer value is never
		-- overwritten; where another transaction holds it nothing goes back
		-- (its COMMIT writes).  For an outbox table the sync worker decides
		-- on what Redis holds; the lock still orders the write-back after a
		-- concurrent writer's at equal event times.
		EXIT WHEN v_locked OR NOT v_write OR NOT EXISTS (
			SELECT FROM unnest(v_need, v_needf, v_needt) n(k, f, t)
			JOIN unnest(v_fk, v_fet) h(k, et) ON h.k = n.k
			WHERE (pgpoly._fv_serve(v.fresh, n.f, n.t, true, h.et)).source = 'offline');
		v_write := pgpoly._fv_lock_entities(v.online_table, v_need, false);
		v_locked := true;
		EXIT WHEN NOT v_write;
	END LOOP;

	-- per input element, as the rule says
	RETURN QUERY
	SELECT i.e,
		   CASE WHEN d.from_offline THEN h.f ELSE o.f END,
		   CASE WHEN d.from_offline THEN h.et ELSE o.et END,
		   d.source
	FROM unnest(entities, v_norm) WITH ORDINALITY AS i(e, n, ord)
	LEFT JOIN unnest(v_ok, v_oet, v_of) o(k, et, f) ON o.k = i.n
	LEFT JOIN unnest(v_fk, v_fet, v_ff) h(k, et, f) ON h.k = i.n
	CROSS JOIN LATERAL pgpoly._fv_serve(v.fresh, o.k IS NOT NULL, o.et, h.k IS NOT NULL, h.et) d
	ORDER BY i.ord;
END
$$;

-- The entry point is C (src/features.c): for a text-keyed view it checks the
-- caller's privileges, makes the Redis round itself, runs the offline probe
-- (pgpoly._fv_offline_sql, prepared once per view) for the entities online
-- does not serve and answers; pgpoly._get_online_features above serves every
-- call it cannot (other key or feature types, bad arguments, unknown views).
-- No DateStyle in its SET clause: the PL/pgSQL implementation is passed the
-- caller's, whose field order reads the entities (_fv_caller_datestyle).
CREATE FUNCTION pgpoly.get_online_features(view text, entities text[], features text[] DEFAULT NULL)
RETURNS TABLE (entity text, features jsonb, event_time timestamptz, source text)
AS 'MODULE_PATHNAME', 'pgpoly_get_online_features'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pgpoly, pg_temp
SET extra_float_digits = 1;

COMMENT ON FUNCTION pgpoly.get_online_features(text, text[], text[]) IS
	'Serve features of entities from Redis in one pipelined round; missing or stale entities fall back to the offline table (and are written back online)';

--
-- Point-in-time joins: get_historical_features, create_training_set
--

-- Parse feature references 'view:feature' / 'view:*' into (view, feature), in
-- order, each once.
CREATE FUNCTION pgpoly._fv_parse_refs(features text[])
RETURNS TABLE (view_name text, feature text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	r     text;
	v     pgpoly._fv_def;
	v_f   text;
	v_out text[] := '{}';	-- 'view:feature' pairs already emitted
BEGIN
	PERFORM pgpoly._require(features, 'features');
	IF cardinality(features) = 0 THEN
		RAISE EXCEPTION 'argument "features" must name at least one feature'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Write ''view:feature'' or ''view:*''.';
	END IF;
	FOREACH r IN ARRAY features LOOP
		IF r IS NULL OR strpos(r, ':') = 0 THEN
			RAISE EXCEPTION 'invalid feature reference "%"', r
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Write ''view:feature'' or ''view:*''.';
		END IF;
		v := pgpoly._fv_get(split_part(r, ':', 1));
		v_f := substr(r, strpos(r, ':') + 1);
		IF v_f <> '*' AND NOT v_f = ANY (v.features) THEN
			PERFORM pgpoly._fv_unknown_feature(v, v_f);
		END IF;
		FOREACH v_f IN ARRAY CASE WHEN v_f = '*' THEN v.features ELSE ARRAY[v_f] END LOOP
			CONTINUE WHEN v.name || ':' || v_f = ANY (v_out);
			v_out := v_out || (v.name || ':' || v_f);
			view_name := v.name;
			feature := v_f;
			RETURN NEXT;
		END LOOP;
	END LOOP;
END
$$;

-- The FROM clause of the point-in-time join of spine to the features, and the
-- output columns: one LEFT JOIN LATERAL per view, probing its offline index for
-- the newest row with event_time in [spine.event_time - ttl, spine.event_time]
-- (ties to the newest created_at; ttl an absolute duration, _fv_ttl_span).
-- The spine is checked for its columns first, and for columns that would
-- collide with an output column view__feature.
CREATE TYPE pgpoly._fv_pit AS (
	from_clause text,			-- (spine) s LEFT JOIN LATERAL ... v1 ON true ...
	out_names   text[],			-- view__feature
	out_exprs   text[],			-- v1.feature
	views       text[]
);

-- _fv_pit_query's work once the spine's columns (cols) are known.  Pinned
-- search_path: it runs none of the caller's SQL; what it generates runs
-- under the caller's (the spine's names resolve as in the caller's
-- session), so it is schema-qualified (the entity match, _fv_entity_expr,
-- OPERATOR(pg_catalog.<=) ...).
CREATE FUNCTION pgpoly._fv_pit_build(spine text, features text[], cols text[])
RETURNS pgpoly._fv_pit
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v      pgpoly._fv_def;
	v_i    int := 0;
	v_need text[];
	v_bad  text;
	v_feat text[];
	views  text[];
	from_clause text;
	out_names text[];
	out_exprs text[];
BEGIN
	SELECT array_agg(DISTINCT r.view_name) INTO views FROM pgpoly._fv_parse_refs(features) r;
	SELECT array_agg(DISTINCT f.entity ORDER BY f.entity) INTO v_need
	FROM pgpoly.feature_views f WHERE f.name = ANY (views);
	IF NOT coalesce('event_time' = ANY (cols) AND v_need <@ cols, false) THEN
		RAISE EXCEPTION 'the spine must return columns event_time and %', array_to_string(v_need, ', ')
			USING ERRCODE = 'undefined_column',
				  DETAIL = format('It returns: %s.', array_to_string(cols, ', ')),
				  HINT = 'The spine has one row per (entity, time) to look up: SELECT <entity columns>, event_time FROM ...';
	END IF;

	from_clause := format('(%s%s) s', spine, E'\n');
	out_names := '{}';
	out_exprs := '{}';
	FOR v IN SELECT (pgpoly._fv_get(x.n)).* FROM unnest(views) x(n) ORDER BY x.n LOOP
		v_i := v_i + 1;
		PERFORM pgpoly._fv_check_access(v, NULL, 'SELECT');
		SELECT array_agg(r.feature) INTO v_feat
		FROM pgpoly._fv_parse_refs(features) r WHERE r.view_name = v.name;
		-- the spine's entity normalised as put_features does; the ttl as an
		-- absolute duration (the same training set in every TimeZone)
		from_clause := from_clause || format(
			E'\nLEFT JOIN LATERAL (SELECT %s FROM %s h WHERE %s'
			' AND h.event_time OPERATOR(pg_catalog.<=) s.event_time::pg_catalog.timestamptz%s'
			' ORDER BY h.event_time DESC, h.created_at DESC LIMIT 1) v%s ON true',
			pgpoly._fv_cols(v_feat, 'h'), v.offline_rel,
			pgpoly._fv_same_entity(v.entity_match, v.key_type, format('h.%I', v.entity_column),
								   pgpoly._fv_entity_expr(v, format('s.%I', v.entity)),
								   pgpoly._fv_entity_is_key(v)),
			CASE WHEN pgpoly._fv_ttl_span(v.ttl) IS NULL THEN ''
				 ELSE format(' AND h.event_time OPERATOR(pg_catalog.>=) pgpoly._fv_ttl_start('
							 's.event_time::pg_catalog.timestamptz, %L::pg_catalog.interval)',
							 v.ttl) END,
			v_i);
		SELECT out_names || array_agg(v.name || '__' || f ORDER BY i),
			   out_exprs || array_agg('v' || v_i || '.' || quote_ident(f) ORDER BY i)
		INTO out_names, out_exprs
		FROM unnest(v_feat) WITH ORDINALITY u(f, i);
	END LOOP;
	-- an output column must not repeat a spine column
	SELECT n INTO v_bad FROM unnest(out_names) n WHERE n = ANY (cols) LIMIT 1;
	IF FOUND THEN
		RAISE EXCEPTION 'spine column "%" collides with the feature output column of the same name', v_bad
			USING ERRCODE = 'duplicate_column',
				  DETAIL = 'Features are returned as view__feature.',
				  HINT = 'Rename the spine column (SELECT ... AS other_name).';
	END IF;
	RETURN ROW(from_clause, out_names, out_exprs, views)::pgpoly._fv_pit;
END
$$;

-- No pinned search_path here and in the two callers: the spine is the
-- caller's SQL and resolves its names like any query of theirs; so every
-- name of their own, in their bodies and in the SQL they run, is qualified,
-- and the rest is done by _fv_pit_build, whose search_path is pinned.
CREATE FUNCTION pgpoly._fv_pit_query(spine text, features text[])
RETURNS pgpoly._fv_pit
LANGUAGE plpgsql STABLE
AS $$
DECLARE
	v_cols pg_catalog.text[];
BEGIN
	PERFORM pgpoly._require_name(spine, 'spine');
	-- the features' errors first (_fv_pit_build reads them again), then the
	-- spine's own, then its column names (from a row of NULLs: the spine is
	-- not run), then the columns it must have (_fv_pit_build).
	PERFORM pgpoly._fv_parse_refs(features);
	-- (x.*, s.*: the rows; a bare x or s would be a spine column of that name)
	EXECUTE pg_catalog.format(
		'SELECT array(SELECT pg_catalog.jsonb_object_keys(pg_catalog.to_jsonb(x.*))) '
		'FROM (SELECT s.* FROM (SELECT) d LEFT JOIN (SELECT * FROM (%s%s) s LIMIT 0) s ON true) x',
		spine, E'\n')
	INTO v_cols;
	RETURN pgpoly._fv_pit_build(spine, features, v_cols);
END
$$;

-- Record content_hash as the content of dataset name (if given: a new
-- version when it differs from the newest's, see _dataset_record_content)
-- with lineage edges from views.
CREATE FUNCTION pgpoly._fv_register_dataset(name text, views text[], content_hash text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
BEGIN
	IF name IS NULL THEN
		RETURN;
	END IF;
	PERFORM pgpoly._dataset_record_content(name, content_hash);
	PERFORM pgpoly._add_edge('feature_view', x.v, 'dataset', name, 'derived')
	FROM unnest(views) x(v);
END
$$;

-- The point-in-time join and create_training_set run the caller's spine in
-- the caller's DateStyle field order (caller_datestyle, as ingest_features
-- runs its source), but print dates and times in ISO form and floats in
-- full: a spine's entity goes through its text into the key type
-- (_fv_entity_expr), and '... 2024 IST' (Postgres style in Asia/Kolkata)
-- reads back as Israel time, a float printed with extra_float_digits 0 as
-- another number.
CREATE FUNCTION pgpoly._get_historical_features(spine text, features text[], dataset text,
												caller_datestyle text)
RETURNS TABLE (o_row_no bigint, o_spine jsonb, o_features jsonb)
LANGUAGE plpgsql VOLATILE
SET max_parallel_workers_per_gather = 0
SET datestyle = 'ISO, YMD'
SET extra_float_digits = 1
AS $$
DECLARE
	q      pgpoly._fv_pit;
	v_sums text;		-- the row count and sums of _dataset_hash_sums
BEGIN
	PERFORM pgpoly._fv_caller_datestyle(caller_datestyle);
	IF dataset OPERATOR(pg_catalog.=) '' THEN
		RAISE EXCEPTION 'argument "dataset" must not be empty'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	q := pgpoly._fv_pit_query(spine, features);
	-- nested loops driven by the spine keep its order, which row_number() records
	-- to_jsonb(s.*): the spine row, also where the spine has a column s
	-- (the caller's search_path, as the spine's: qualified)
	IF dataset IS NULL THEN
		RETURN QUERY EXECUTE pg_catalog.format(
			'SELECT pg_catalog.row_number() OVER (), pg_catalog.to_jsonb(s.*), %s FROM %s',
			pgpoly._fv_jsonb_expr(q.out_names, q.out_exprs), q.from_clause);
		RETURN;
	END IF;
	-- with a dataset: the rows returned are its content, hashed as a table of
	-- them would be (_dataset_content_hash) by window sums over all rows, and
	-- recorded once (no CTE: its name would be visible to the spine's SQL)
	-- (each column as _dataset_content_hash hashes it: _hash_column_expr
	-- over the alias t)
	FOR o_row_no, o_spine, o_features, v_sums IN EXECUTE pg_catalog.format(
		'SELECT t.row_no, t.spine, t.features, %s FROM ('
		'SELECT pg_catalog.row_number() OVER () AS row_no, pg_catalog.to_jsonb(s.*) AS spine, %s AS features '
		'FROM %s) t ORDER BY t.row_no',
		pgpoly._dataset_hash_sums(pg_catalog.format('ROW(%s, %s, %s)',
			pgpoly._hash_column_expr('row_no', 'pg_catalog.int8'::pg_catalog.regtype, 0),
			pgpoly._hash_column_expr('spine', 'pg_catalog.jsonb'::pg_catalog.regtype, 0),
			pgpoly._hash_column_expr('features', 'pg_catalog.jsonb'::pg_catalog.regtype, 0)), ' OVER ()'),
		pgpoly._fv_jsonb_expr(q.out_names, q.out_exprs), q.from_clause)
	LOOP
		IF o_row_no OPERATOR(pg_catalog.=) 1 THEN
			PERFORM pgpoly._fv_register_dataset(dataset, q.views, pgpoly._dataset_hash_text(
				'pgpoly-rows-v3', 'row_no bigint, spine jsonb, features jsonb', v_sums));
		END IF;
		RETURN NEXT;
	END LOOP;
	IF NOT FOUND THEN	-- no rows: the hash of an empty table
		PERFORM pgpoly._fv_register_dataset(dataset, q.views, pgpoly._dataset_hash_text(
			'pgpoly-rows-v3', 'row_no bigint, spine jsonb, features jsonb', '0'));
	END IF;
END
$$;

CREATE FUNCTION pgpoly.get_historical_features(spine text, features text[], dataset text DEFAULT NULL)
RETURNS TABLE (row_no bigint, spine jsonb, features jsonb)
LANGUAGE sql VOLATILE
AS $$
	-- the default collation, whatever the arguments' (as put_features)
	SELECT * FROM pgpoly._get_historical_features($1 COLLATE pg_catalog."default", $2 COLLATE pg_catalog."default",
												  $3 COLLATE pg_catalog."default",
												  pg_catalog.current_setting('DateStyle'))
$$;

COMMENT ON FUNCTION pgpoly.get_historical_features(text, text[], text) IS
	'Point-in-time join of a spine query (event_time + entity columns) to feature views'' offline history; one row per spine row, in spine order';

-- The table name (a possibly qualified name, quoted part by part) and the
-- CREATE TABLE AS of create_training_set for the point-in-time join q: the
-- spine's columns then one typed column per feature, rows in spine order.
-- Pinned search_path; what it writes is qualified (_fv_pit_build).
CREATE FUNCTION pgpoly._fv_training_set_sql(name text, q pgpoly._fv_pit, OUT rel text, OUT stmt text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT r.rel, format('CREATE TABLE %s AS SELECT s.*, %s FROM %s', r.rel,
						 (SELECT string_agg(e || ' AS ' || quote_ident(n), ', ' ORDER BY i)
						  FROM unnest(q.out_names, q.out_exprs) WITH ORDINALITY u(n, e, i)),
						 q.from_clause)
	FROM (SELECT string_agg(quote_ident(p), '.' ORDER BY i)
		  FROM unnest(parse_ident(name)) WITH ORDINALITY u(p, i)) r(rel)
$$;

-- create_training_set's work (see _get_historical_features): the caller's
-- search_path, as the spine's, so its body is qualified.
CREATE FUNCTION pgpoly._create_training_set(name text, spine text, features text[],
											caller_datestyle text)
RETURNS bigint
LANGUAGE plpgsql
SET max_parallel_workers_per_gather = 0
SET datestyle = 'ISO, YMD'
SET extra_float_digits = 1
AS $$
DECLARE
	q      pgpoly._fv_pit;
	v_sql  pg_catalog.record;	-- the table and the statement (_fv_training_set_sql)
	v_rows bigint;
BEGIN
	PERFORM pgpoly._fv_caller_datestyle(caller_datestyle);
	PERFORM pgpoly._require_name(name, 'name');
	q := pgpoly._fv_pit_query(spine, features);
	v_sql := pgpoly._fv_training_set_sql(name, q);
	EXECUTE v_sql.stmt;
	GET DIAGNOSTICS v_rows = ROW_COUNT;
	PERFORM pgpoly._fv_register_dataset(name, q.views,
										pgpoly._dataset_content_hash(v_sql.rel::pg_catalog.regclass));
	RETURN v_rows;
END
$$;

CREATE FUNCTION pgpoly.create_training_set(name text, spine text, features text[])
RETURNS bigint
LANGUAGE sql VOLATILE
AS $$
	-- the default collation, whatever the arguments' (as put_features)
	SELECT pgpoly._create_training_set($1 COLLATE pg_catalog."default", $2 COLLATE pg_catalog."default",
									   $3 COLLATE pg_catalog."default",
									   pg_catalog.current_setting('DateStyle'))
$$;

COMMENT ON FUNCTION pgpoly.create_training_set(text, text, text[]) IS
	'Materialize the point-in-time join as a table (spine columns + one typed column per feature), registered as a dataset with lineage from the feature views';

--
-- materialize
--

-- The newest rows of each entity of an offline table, read through its
-- (entity, event_time DESC, created_at DESC) index with the heap read only
-- for each entity's first entry (src/features.c): _fv_newest_usable says
-- whether the table allows it (a plain table with such an index, no
-- row-level security for the caller); _fv_newest_rows returns the rows, per
-- entity the newest with event_time in [since, until] (ties: the newest
-- created_at): through the index where the table allows it when it runs,
-- otherwise from the DISTINCT ON it runs itself.  Its first argument
-- is NULL cast to the table's row type, the type of the rows it returns.
CREATE FUNCTION pgpoly._fv_newest_usable(offline_table regclass, entity_column text)
RETURNS bool
AS 'MODULE_PATHNAME', 'pgpoly_fv_newest_usable'
LANGUAGE C STRICT STABLE;

CREATE FUNCTION pgpoly._fv_newest_rows(offline_row anyelement, entity_column text,
									   since timestamptz, until timestamptz)
RETURNS SETOF anyelement
AS 'MODULE_PATHNAME', 'pgpoly_fv_newest_rows'
LANGUAGE C STABLE;

-- Whether the offline entity column's equality is equality of the entity's
-- Redis key (_fv_column_is_key), so that the newest row per entity the
-- column's index gives is the newest per key.
CREATE FUNCTION pgpoly._fv_entity_is_key(v pgpoly._fv_def)
RETURNS bool
LANGUAGE sql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT pgpoly._fv_column_is_key(v.offline_table, v.entity_column, v.key_type)
$$;

CREATE FUNCTION pgpoly.materialize(view text, start_time timestamptz DEFAULT '-infinity',
								   end_time timestamptz DEFAULT now())
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pgpoly, pg_temp
SET datestyle = 'ISO, YMD'
SET extra_float_digits = 1
AS $$
DECLARE
	v        pgpoly._fv_def := pgpoly._fv_get(view);
	v_rows   bigint;
	v_newest text;
	v_online text := '';
BEGIN
	PERFORM pgpoly._require(start_time, 'start_time');
	PERFORM pgpoly._require(end_time, 'end_time');
	IF start_time > end_time THEN
		RAISE EXCEPTION 'start_time % is after end_time %', start_time, end_time
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- as a SELECT of offline joined to online, upserting online
	PERFORM pgpoly._fv_check_access(v, 'SELECT, INSERT, UPDATE', 'SELECT');
	-- Newest row per entity in the window: from a walk of the offline index
	-- that fetches only those rows from the heap, where the table allows it,
	-- else a DISTINCT ON; _fv_newest_rows decides which with the table
	-- locked, as it reads (a check made here first could be stale by the
	-- time the statement runs: DROP INDEX CONCURRENTLY).  The online event times
	-- come from a batched join (pipelined rounds of fetch_size keys); the
	-- writes are buffered and sent at COMMIT as pipelined MULTI/EXEC.  An
	-- outbox table's are queued without reading Redis: the sync worker keeps
	-- what is online when newer.
	-- every entity locked first, until the end of the transaction: a
	-- concurrent put_features of one waits, then reads what this one's
	-- COMMIT wrote (and the other way round); an outbox table's writes are
	-- so queued in the order of the offline rows' created_at too
	PERFORM pgpoly._fv_lock_entities(v.online_table, NULL, true);
	IF NOT pgpoly._fv_outbox(v.serving_table) THEN
		-- the Redis key of the same text (a citext key or a nondeterministic
		-- collation would match 'A' to the newer 'a' too)
		v_online := format($q$ LEFT JOIN %1$s s ON s.%2$I = c.k::%3$s
				AND %5$s COLLATE "C" = %6$s COLLATE "C"
			WHERE (s.%2$I IS NULL OR s._event_time IS NULL OR s._event_time <= c.event_time)
			  AND %4$s$q$,
			v.serving_rel, v.key_column, v.key_type, pgpoly._fv_key_fits(v.key_type, 'c.k'),
			pgpoly._fv_key_text(v, format('s.%I', v.key_column)),
			pgpoly._fv_key_text(v, format('c.k::%s', v.key_type)));
	ELSE
		v_online := ' WHERE ' || pgpoly._fv_key_fits(v.key_type, 'c.k');
	END IF;
	IF pgpoly._fv_entity_is_key(v) THEN
		v_newest := format($q$
			SELECT h.%1$I AS k, h.event_time, %2$s
			FROM pgpoly._fv_newest_rows(NULL::%3$s, %4$L, $1, $2) h$q$,
			v.entity_column, pgpoly._fv_cols(v.features, 'h'), v.offline_rel,
			v.entity_column);
	ELSE
		-- one row per Redis key: entities the column finds equal ('A' and
		-- 'a' of a citext column, 1.0 and 1.00 of a numeric one) are
		-- different keys where their key texts differ.  Only rows that the
		-- lookups of that key find (entity_match: a text column of an int
		-- key holds '007', which is no key's; the point-in-time join and
		-- the serving fallback for key 7 look for '7'), so that serving
		-- agrees with training; a column of the key's type has only such
		v_newest := format($q$
			SELECT DISTINCT ON (%1$s COLLATE "C") %1$s AS k, h.event_time, %3$s
			FROM %4$s h
			WHERE h.event_time >= $1 AND h.event_time <= $2 AND %5$s
			ORDER BY %1$s COLLATE "C", h.event_time DESC, h.created_at DESC$q$,
			pgpoly._fv_uncut_text(v.key_type, format('h.%I', v.entity_column)),
			v.entity_column, pgpoly._fv_cols(v.features, 'h'), v.offline_rel,
			CASE WHEN v.entity_type = v.key_type THEN 'true'
				 ELSE format(v.entity_match, format('h.%I', v.entity_column),
							 pgpoly._fv_uncut_text(v.key_type, format('h.%I', v.entity_column))) END);
	END IF;
	-- a plain INSERT, its row count the keys written: no RETURNING rows
	-- stored and counted
	EXECUTE format($q$
		WITH c AS (%1$s)
		INSERT INTO %2$s (%3$I, %4$s, _event_time)
		SELECT c.k::%5$s, %6$s, c.event_time
		FROM c%7$s$q$,
		v_newest, v.serving_rel, v.key_column, pgpoly._fv_cols(v.features), v.key_type,
		pgpoly._fv_cols(v.features, 'c'), v_online)
	USING start_time, end_time;
	GET DIAGNOSTICS v_rows = ROW_COUNT;
	RETURN v_rows;
END
$$;

COMMENT ON FUNCTION pgpoly.materialize(text, timestamptz, timestamptz) IS
	'Write the newest offline row per entity with event_time in [start_time, end_time] to the online store, unless online is newer; returns keys written';

--
-- feature_freshness
--

-- The newest event time at or after bound in the FROM-clause item rel (NULL:
-- none), by a bitmap scan where an index on event_time allows one: a BRIN
-- cannot answer max() itself, and the planner would read the whole table
-- where the statistics predate the newest rows (a table without such an
-- index is read whole anyway); no parallel workers: their start costs more
-- than the few pages read.
CREATE FUNCTION pgpoly._fv_newest_event_time_from(rel text, bound timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
SET enable_seqscan = off
SET enable_indexscan = off
SET max_parallel_workers_per_gather = 0
AS $$
DECLARE
	v_t timestamptz;
BEGIN
	EXECUTE format('SELECT max(event_time) FROM %s WHERE event_time >= $1', rel) INTO v_t USING bound;
	RETURN v_t;
END
$$;

-- The newest event time in the offline table of a view (NULL: no rows).
-- A history table is mostly appended to in time order, and its default
-- index on event_time is a BRIN, which cannot answer max() by itself.  So,
-- for a plain table larger than 128 pages, the newest event time among the
-- rows of its last 128 pages (a TID range scan) is a lower bound, and the
-- max() is taken over the rows at or above it only (the index's ranges
-- that can hold them); as that bound is the event time of a row the caller
-- sees, those rows hold the newest.  Anything else (no row there, another
-- kind of relation, one that changed in between) reads max() over the
-- whole table, as the planner sees fit (a btree on event_time answers it
-- at once).
CREATE FUNCTION pgpoly._fv_newest_event_time(offline_table regclass)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
DECLARE
	v_rel   text := pgpoly._fv_rel(offline_table);
	v_pages bigint;
	v_bound timestamptz;
	v_t     timestamptz;
BEGIN
	IF (SELECT c.relkind FROM pg_class c WHERE c.oid = offline_table) = 'r' THEN
		v_pages := pg_relation_size(offline_table) / current_setting('block_size')::int;
	END IF;
	IF v_pages > 128 THEN
		EXECUTE format('SELECT max(event_time) FROM %s WHERE ctid >= $1', v_rel)
		INTO v_bound USING format('(%s,0)', v_pages - 128)::tid;
	END IF;
	IF v_bound IS NOT NULL THEN
		v_t := pgpoly._fv_newest_event_time_from(v_rel, v_bound);
	END IF;
	IF v_t IS NULL THEN
		EXECUTE format('SELECT max(event_time) FROM %s', v_rel) INTO v_t;
	END IF;
	RETURN v_t;
END
$$;

-- security_invoker: the caller reads pgpoly.feature_views and each offline
-- table with their own privileges, as a query of theirs would.  stale is the
-- serving rule's freshness (the absolute ttl): an entity with this newest
-- event time would not be served as fresh.  age is NULL for an infinite
-- newest event time (an interval cannot be infinite: now() - 'infinity' is
-- an ERROR, which failed the whole view, for every view).
CREATE VIEW pgpoly.feature_freshness WITH (security_invoker = true) AS
	SELECT f.name AS view_name, n.t AS newest_event_time,
		   CASE WHEN isfinite(n.t) THEN now() - n.t END AS age, f.ttl,
		   NOT pgpoly._fv_is_fresh(pgpoly._fv_fresh_since(f.ttl), n.t) AS stale
	FROM pgpoly.feature_views f
	CROSS JOIN LATERAL (SELECT pgpoly._fv_newest_event_time(f.offline_table) AS t) n;

COMMENT ON VIEW pgpoly.feature_freshness IS
	'Per feature view: newest offline event time, its age, and whether it is older than the ttl';

--
-- IMPORT FOREIGN SCHEMA feature_views FROM SERVER s INTO x (fdw/redis_import.c)
--

-- One CREATE FOREIGN TABLE per feature view whose online table is on server:
-- named after the view, with the online table's columns and options, plus
-- _event_time when the online table does not declare it.
CREATE FUNCTION pgpoly._fv_import_ddl(server oid, server_name text)
RETURNS TABLE (view_name text, ddl text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pgpoly, pg_temp
AS $$
	SELECT f.name,
		   format('CREATE FOREIGN TABLE %I (%s%s) SERVER %I%s', f.name,
				  pgpoly._fv_column_defs(f.online_table),
				  CASE WHEN EXISTS (SELECT FROM pg_attribute a
									WHERE a.attrelid = f.online_table
									  AND a.attname = '_event_time' AND NOT a.attisdropped)
					   THEN '' ELSE ', _event_time timestamptz' END,
				  server_name, pgpoly._fv_options_clause(t.ftoptions))
	FROM pgpoly.feature_views f
	JOIN pg_foreign_table t ON t.ftrelid = f.online_table
	WHERE t.ftserver = server
	ORDER BY f.name
$$;
