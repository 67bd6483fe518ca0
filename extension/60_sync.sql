-- extension/60_sync.sql
--	  Sync: native tables kept in step with the stores through a transactional
--	  outbox delivered by a background worker (API.md section 5).
--
-- Design invariants kept by this file and src/sync*.c:
--	* A sync pairs a source table with a pgpoly foreign table.  Statement-level
--	  triggers on the source (pgpoly._sync_capture, C) queue the keys each
--	  statement touched into pgpoly.sync_queue, in the writer's transaction: a
--	  ROLLBACK leaves no trace and no logical decoding is needed.
--	* The queue holds keys, not row images: the worker re-reads each key's
--	  current source row when it delivers, upserts it into the target, or
--	  deletes the key from the target when the row is gone.  So the commit
--	  order of concurrent writers, duplicates and redelivery cannot leave a
--	  stale version in the target.
--	* Column mapping is resolved once, by attnum, when the sync is created.
--	  The attnums follow RENAME COLUMN; source_ref and target_ref name the
--	  relations they belong to (pgpoly._sync_ref: cluster, database and
--	  relation oid, as text that pg_dump keeps, while it writes the regclass
--	  columns as names), source_columns and target_columns those relations'
--	  column names by attnum (kept current by RENAME COLUMN and ALTER TABLE,
--	  and by the worker; NULL: recorded by the worker).  A restored table (or one dropped and created
--	  again) numbers its columns anew: when a ref is not the relation's now,
--	  the sync's attnums and its queued entries' cols are mapped again by
--	  name, once (SyncResolveColumns, src/sync.c); a name no longer there
--	  fails the sync (42703), never a guess.
--	* home names the database a sync delivers from (pgpoly._sync_home:
--	  cluster and database oid).  A copy of that database (CREATE DATABASE
--	  ... TEMPLATE, or a dump restored into another database) in the same
--	  cluster delivers none of its syncs while that database exists: the
--	  worker fails them (3D000, SyncClaimHome).  In another cluster (a
--	  restore there, pg_upgrade), or once that database is gone, the worker
--	  makes the sync this database's before it delivers.
--	* A foreign table in write_mode 'outbox' has a sync of kind 'outbox',
--	  named after the table (schema.table) and made by the first COMMIT that
--	  queues a change of it.  Its entries carry the row changes themselves
--	  (op, keys, cols, vals, userid: see src/sync_outbox.c), queued at
--	  pre-commit in commit order per key; the worker delivers them as the
--	  users who wrote them.
--	* The internal tables (syncs, sync_queue) are not accessible to PUBLIC: the
--	  C functions check the caller's rights, then write them as the extension's
--	  owner.  sync_dead_letters is readable (and its rows deletable) by members
--	  of the sync owner's role only (row-level security).

--
-- One row per sync.  state, applied, last_error, last_applied_at are kept by
-- the worker.  kind 'table': source kept in step with target by the capture
-- triggers; kind 'outbox': the changes written to target (a foreign table in
-- write_mode 'outbox'), no source, no column mapping, owner: the table's.
--
-- The database a sync created here delivers from (system identifier,
-- database oid), as pgpoly.syncs.home records it.
CREATE FUNCTION pgpoly._sync_home()
RETURNS text
AS 'MODULE_PATHNAME', 'pgpoly_sync_home'
LANGUAGE C STABLE STRICT;
REVOKE ALL ON FUNCTION pgpoly._sync_home() FROM PUBLIC;

CREATE TABLE pgpoly.syncs (
	sync_id           int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name              text NOT NULL CONSTRAINT syncs_name_key UNIQUE
	                  CONSTRAINT syncs_name_check CHECK (name <> ''),
	kind              text NOT NULL DEFAULT 'table'
	                  CONSTRAINT syncs_kind_check CHECK (kind IN ('table', 'outbox')),
	source            regclass,
	target            regclass NOT NULL,
	key_attnum        smallint NOT NULL,		-- source key column (outbox: target's)
	target_key_attnum smallint NOT NULL,		-- target's key (Redis key, _id, id)
	source_attnums    smallint[] NOT NULL,		-- source column i feeds ...
	target_attnums    smallint[] NOT NULL,		-- ... target column i
	source_ref        text,						-- the relations the attnums
	target_ref        text,						-- ... are of (see above)
	source_columns    text[],					-- their column names by attnum
	target_columns    text[],					-- (NULL element: a dropped column)
	owner             regrole NOT NULL,
	created_at        timestamptz NOT NULL DEFAULT now(),
	state             text NOT NULL DEFAULT 'ok'
	                  CONSTRAINT syncs_state_check CHECK (state IN ('ok', 'retrying', 'failing')),
	applied           bigint NOT NULL DEFAULT 0,
	last_error        text,
	last_applied_at   timestamptz,
	home              text DEFAULT pgpoly._sync_home(),	-- see above
	CONSTRAINT syncs_columns_check
		CHECK (cardinality(source_attnums) = cardinality(target_attnums)),
	CONSTRAINT syncs_source_check CHECK ((kind = 'table') = (source IS NOT NULL))
);
CREATE UNIQUE INDEX syncs_outbox_target_key ON pgpoly.syncs (target) WHERE kind = 'outbox';

--
-- The outbox.  Each entry is a set of at most 1000 keys (in the fixed text
-- form of src/convert.c) of one sync.  An isolated entry holds keys of a
-- batch the target rejected: it is delivered on its own (outbox syncs: with
-- the other entries of its grp), not before not_before.
-- Entries of an outbox sync carry the changes: op (u upsert, p update of
-- the columns cols, d delete; U upsert regardless of the stored event time),
-- and vals[i][j], the value of column cols[j] for keys[i]; userid wrote them.
--
CREATE TABLE pgpoly.sync_queue (
	entry_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	sync_id    int NOT NULL,
	keys       text[] NOT NULL,
	queued_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
	attempts   int NOT NULL DEFAULT 0,
	isolated   bool NOT NULL DEFAULT false,
	not_before timestamptz,
	op         "char" CONSTRAINT sync_queue_op_check CHECK (op IN ('u', 'U', 'p', 'd')),
	userid     regrole,
	cols       smallint[],
	vals       text[],
	grp        bigint
);
CREATE INDEX sync_queue_order_idx ON pgpoly.sync_queue (sync_id, queued_at, entry_id);
CREATE INDEX sync_queue_entry_idx ON pgpoly.sync_queue (sync_id, entry_id);
-- Written once, read once: compressing the arrays would only cost the writer.
ALTER TABLE pgpoly.sync_queue ALTER keys SET STORAGE EXTERNAL,
                              ALTER vals SET STORAGE EXTERNAL;

--
-- Changes the target rejected sync_max_attempts times.  payload: the source
-- row when the change failed (NULL for a delete); for an outbox table, the
-- columns the change writes, as their text forms, and writer, whose change
-- it was (op 'update': an UPDATE of those columns).
--
CREATE TABLE pgpoly.sync_dead_letters (
	name      text NOT NULL,
	key       text NOT NULL,
	op        text NOT NULL CONSTRAINT sync_dead_letters_op_check
	          CHECK (op IN ('upsert', 'update', 'delete')),
	payload   jsonb,
	error     text NOT NULL,
	failed_at timestamptz NOT NULL DEFAULT now(),
	attempts  int NOT NULL,
	sync_id   int NOT NULL,
	owner     regrole NOT NULL,
	writer    regrole
);
CREATE INDEX sync_dead_letters_sync_idx ON pgpoly.sync_dead_letters (sync_id, failed_at);
ALTER TABLE pgpoly.sync_dead_letters ENABLE ROW LEVEL SECURITY;
CREATE POLICY sync_dead_letters_owner ON pgpoly.sync_dead_letters
	USING (pg_catalog.pg_has_role(owner, 'USAGE'));
GRANT SELECT, DELETE ON pgpoly.sync_dead_letters TO PUBLIC;

-- The column names of relation rel by attnum (NULL for a dropped column),
-- as pgpoly.syncs records them.
CREATE FUNCTION pgpoly._sync_columns(rel oid)
RETURNS text[]
LANGUAGE sql STABLE STRICT
AS $$SELECT COALESCE(pg_catalog.array_agg(CASE WHEN NOT a.attisdropped THEN a.attname::pg_catalog.text END
                                          ORDER BY a.attnum), '{}')
      FROM pg_catalog.pg_attribute a
      WHERE a.attrelid OPERATOR(pg_catalog.=) rel AND a.attnum OPERATOR(pg_catalog.>) 0$$;

-- Which relation rel is, across clusters and databases (system identifier,
-- database oid, rel), as pgpoly.syncs records it.
CREATE FUNCTION pgpoly._sync_ref(rel oid)
RETURNS text
AS 'MODULE_PATHNAME', 'pgpoly_sync_ref'
LANGUAGE C STABLE STRICT;
REVOKE ALL ON FUNCTION pgpoly._sync_ref(oid) FROM PUBLIC;

-- Whether this database's sync worker is running (any caller may ask).
CREATE FUNCTION pgpoly._sync_worker_running()
RETURNS bool
AS 'MODULE_PATHNAME', 'pgpoly_sync_worker_running'
LANGUAGE C VOLATILE STRICT;

-- The dead letters the caller may see, for sync_status: security_invoker, so
-- that sync_dead_letters' row-level security applies to the caller also
-- when sync_status, which runs as its owner (who bypasses it), reads this.
CREATE VIEW pgpoly._sync_dead_letters_seen WITH (security_invoker = true) AS
	SELECT d.sync_id FROM pgpoly.sync_dead_letters d;

--
-- Status per sync.  lag: age of the oldest undelivered change (0 when none).
-- Every role sees every sync; last_error only members of its owner's role (a
-- store's error names keys and values of the source, as dead letters do), and
-- dead_letters counts the dead letters the caller may read.  It runs as its
-- owner on purpose (not security_invoker): PUBLIC reads it without any right
-- on syncs and sync_queue, and it shows only counts of their rows.
--
CREATE VIEW pgpoly.sync_status AS
	SELECT s.name, s.source, s.target,
	       CASE
	           WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
	                        WHERE t.tgrelid = s.source
	                          AND t.tgname LIKE 'pgpoly\_sync\_' || s.sync_id || '\_%'
	                          AND t.tgenabled = 'D') THEN 'capture disabled'
	           WHEN s.state <> 'ok' THEN s.state
	           WHEN q.pending = 0 THEN 'idle'
	           WHEN NOT pgpoly._sync_worker_running() THEN 'no worker'
	           ELSE 'delivering'
	       END AS state,
	       q.pending, q.oldest_pending,
	       COALESCE(pg_catalog.clock_timestamp() - q.oldest_pending, interval '0') AS lag,
	       s.applied,
	       (SELECT count(*) FROM pgpoly._sync_dead_letters_seen d
	        WHERE d.sync_id = s.sync_id) AS dead_letters,
	       CASE WHEN pg_catalog.pg_has_role(s.owner, 'USAGE') THEN s.last_error END
	           AS last_error,
	       s.last_applied_at
	FROM pgpoly.syncs s,
	     LATERAL (SELECT COALESCE(sum(pg_catalog.cardinality(e.keys)), 0)::bigint AS pending,
	                     min(e.queued_at) AS oldest_pending
	              FROM pgpoly.sync_queue e WHERE e.sync_id = s.sync_id) q;
GRANT SELECT ON pgpoly.sync_status TO PUBLIC;

COMMENT ON VIEW pgpoly.sync_status IS
	'Per sync: state, pending changes, lag (age of the oldest undelivered change), counters';

-- pg_dump keeps the syncs, their undelivered changes and dead letters (the
-- capture triggers it dumps name their sync by id).
SELECT pg_catalog.pg_extension_config_dump('pgpoly.syncs', '');
SELECT pg_catalog.pg_extension_config_dump('pgpoly.sync_queue', '');
SELECT pg_catalog.pg_extension_config_dump('pgpoly.sync_dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump(
	pg_catalog.pg_get_serial_sequence('pgpoly.syncs', 'sync_id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(
	pg_catalog.pg_get_serial_sequence('pgpoly.sync_queue', 'entry_id')::regclass, '');

--
-- SQL surface (src/sync.c).
--
CREATE FUNCTION pgpoly.create_sync(name text, source regclass, target regclass,
                                   key_column name DEFAULT NULL,
                                   backfill bool DEFAULT true)
RETURNS bigint
AS 'MODULE_PATHNAME', 'pgpoly_create_sync'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION pgpoly.create_sync(text, regclass, regclass, name, bool) IS
	'Keep target (a pgpoly foreign table) in step with table source; returns rows queued by the backfill';

CREATE FUNCTION pgpoly.drop_sync(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'pgpoly_drop_sync'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION pgpoly.drop_sync(text) IS
	'Drop a sync: its capture triggers, undelivered changes and dead letters';

CREATE FUNCTION pgpoly.sync_wait(name text DEFAULT NULL,
                                 timeout interval DEFAULT '30 seconds')
RETURNS bool
AS 'MODULE_PATHNAME', 'pgpoly_sync_wait'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION pgpoly.sync_wait(text, interval) IS
	'Wait until every change committed before the call was delivered (true) or the timeout passed (false); NULL: all syncs';

CREATE FUNCTION pgpoly.sync_retry(name text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'pgpoly_sync_retry'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION pgpoly.sync_retry(text) IS
	'Queue the dead letters of a sync again; returns how many';

-- The capture trigger: attached by create_sync only (EXECUTE is checked when
-- a trigger is created, so revoking it keeps users from attaching it).
CREATE FUNCTION pgpoly._sync_capture()
RETURNS trigger
AS 'MODULE_PATHNAME', 'pgpoly_sync_capture'
LANGUAGE C;
REVOKE ALL ON FUNCTION pgpoly._sync_capture() FROM PUBLIC;
