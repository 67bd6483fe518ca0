/*-------------------------------------------------------------------------
 *
 * sync.c
 *		  The sync SQL functions (create_sync, drop_sync, sync_wait,
 *		  sync_retry) and the delivery SQL of a sync.
 *
 * A sync delivers a set of source keys with three statements run as the
 * sync's owner against the target foreign table, so the stores' own write
 * paths (MULTI/EXEC rounds, _bulk, upsert batches), options, privilege
 * checks and user mappings apply unchanged:
 *	upsert:	INSERT INTO target (tkey, cols) SELECT skey, cols FROM source
 *			WHERE skey = ANY($keys)		-- Redis/vector INSERT overwrites,
 *										-- an Elasticsearch INSERT is "index"
 *	absent:	the keys of $keys without a source row, as target keys
 *	delete:	DELETE FROM target WHERE tkey = ANY($absent)
 * Each reads the current source rows, so delivering a key twice has no
 * further effect.  The statements are built from attnums (SyncBuildDef)
 * with every name qualified and operators spelled OPERATOR(schema.=).
 *
 * Privileges: creating a sync requires owning the source and the rights to
 * INSERT, SELECT and DELETE the target; the worker delivers as the sync's
 * owner, so it never writes what the owner could not.  The internal tables
 * are written here as the extension's owner (SyncAdminRole) after these
 * checks.
 *
 * src/sync.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/nbtree.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "foreign/foreign.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/typcache.h"
#include "utils/wait_event.h"

#include "sync.h"

/* The wrapper a target belongs to. */
typedef enum SyncTargetKind
{
	SYNC_REDIS,
	SYNC_ELASTIC,
	SYNC_VECTOR
} SyncTargetKind;

/* ----------------------------------------------------------------
 *		Shared helpers
 * ----------------------------------------------------------------
 */

/* schema.relation of relid, quoted; ERROR if the relation is gone. */
char *
SyncQualifiedName(Oid relid)
{
	char	   *name = get_rel_name(relid);

	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation %u of a pgpoly sync no longer exists", relid),
				 errhint("Drop the sync with pgpoly.drop_sync().")));
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), name);
}

/* The quoted name of a live column; ERROR if it was dropped. */
static const char *
column_name(Oid relid, AttrNumber att)
{
	HeapTuple	tp = SearchSysCache2(ATTNUM, ObjectIdGetDatum(relid), Int16GetDatum(att));
	char	   *name = NULL;

	if (HeapTupleIsValid(tp))
	{
		Form_pg_attribute a = (Form_pg_attribute) GETSTRUCT(tp);

		if (!a->attisdropped)
			name = pstrdup(NameStr(a->attname));
		ReleaseSysCache(tp);
	}
	if (name == NULL)
	{
		/* A dropped relation takes its columns along: report the relation. */
		char	   *relname = SyncQualifiedName(relid);

		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column %d of relation %s, used by a pgpoly sync, no longer exists",
						att, relname),
				 errhint("Drop the sync with pgpoly.drop_sync() and create it again.")));
	}
	return quote_identifier(name);
}

/* The default equality operator of typid as OPERATOR(schema.name). */
char *
SyncEqualityOperator(Oid typid)
{
	TypeCacheEntry *tc = lookup_type_cache(typid, TYPECACHE_EQ_OPR);
	HeapTuple	tp;
	Form_pg_operator op;
	char	   *result;

	if (!OidIsValid(tc->eq_opr))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("key type %s has no default equality operator",
						format_type_be(typid))));
	tp = SearchSysCache1(OPEROID, ObjectIdGetDatum(tc->eq_opr));
	if (!HeapTupleIsValid(tp))
		elog(ERROR, "cache lookup failed for operator %u", tc->eq_opr);
	op = (Form_pg_operator) GETSTRUCT(tp);
	result = psprintf("OPERATOR(%s.%s)",
					  quote_identifier(get_namespace_name(op->oprnamespace)),
					  NameStr(op->oprname));
	ReleaseSysCache(tp);
	return result;
}

/* The array type of typid; ERROR if it has none. */
static Oid
array_type_of(Oid typid)
{
	Oid			arr = get_array_type(typid);

	if (!OidIsValid(arr))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("key type %s has no array type", format_type_be(typid))));
	return arr;
}

/*
 * Whether values of column att of relid that are equal under its type's
 * default equality (and the column's collation) are always identical, as
 * btree deduplication asks (BTEQUALIMAGE_PROC): false for numeric (1 and
 * 1.0), float8 (0 and -0), interval, a nondeterministic collation.  Keys
 * that are equal but not identical have different text forms, so they are
 * different keys in the target.
 */
static bool
equal_is_identical(Oid relid, AttrNumber att)
{
	Oid			typid;
	int32		typmod;
	Oid			collid;
	TypeCacheEntry *tc;
	Oid			proc;

	get_atttypetypmodcoll(relid, att, &typid, &typmod, &collid);
	tc = lookup_type_cache(getBaseType(typid), TYPECACHE_BTREE_OPFAMILY);
	if (!OidIsValid(tc->btree_opf))
		return false;
	proc = get_opfamily_proc(tc->btree_opf, tc->btree_opintype, tc->btree_opintype,
							 BTEQUALIMAGE_PROC);
	return OidIsValid(proc) &&
		DatumGetBool(OidFunctionCall1Coll(proc, collid,
										  ObjectIdGetDatum(tc->btree_opintype)));
}

/*
 * The sync id's definition and delivery SQL, resolved against the catalogs
 * (ERROR if a relation or column it uses is gone).
 */
SyncDef *
SyncBuildDef(int32 id, const char *name, Oid source, Oid target, Oid owner,
			 AttrNumber key_att, AttrNumber target_key_att, int ncols,
			 const AttrNumber *source_atts, const AttrNumber *target_atts)
{
	SyncDef    *d = palloc0(sizeof(SyncDef));
	char	   *src;
	char	   *tgt;
	const char *sk;
	const char *tk;
	char	   *eq;
	char	   *tt;
	Oid			ttype;
	int32		tmod;
	Oid			tcoll;
	StringInfoData cols;
	StringInfoData vals;

	/*
	 * Hold both relations while reading their catalog entries, so that a
	 * concurrent DROP is either complete (the relation is reported gone) or
	 * waits: never seen half-way, column by column.  The locks taken here
	 * go at the end; a caller that runs the SQL holds the relations itself
	 * (the worker's batch: lock_tables in sync_worker.c).
	 */
	LockRelationOid(source, AccessShareLock);
	LockRelationOid(target, AccessShareLock);
	src = SyncQualifiedName(source);
	tgt = SyncQualifiedName(target);
	sk = column_name(source, key_att);
	tk = column_name(target, target_key_att);

	d->id = id;
	d->name = pstrdup(name);
	d->source = source;
	d->target = target;
	d->owner = owner;
	d->key_att = key_att;
	d->key_type = getBaseType(get_atttype(source, key_att));
	d->key_array_type = array_type_of(d->key_type);
	d->target_key_type = get_atttype(target, target_key_att);
	d->target_key_array_type = array_type_of(d->target_key_type);
	eq = SyncEqualityOperator(d->key_type);

	initStringInfo(&cols);
	initStringInfo(&vals);
	appendStringInfoString(&cols, tk);
	appendStringInfo(&vals, "s.%s", sk);
	for (int i = 0; i < ncols; i++)
	{
		appendStringInfo(&cols, ", %s", column_name(target, target_atts[i]));
		appendStringInfo(&vals, ", s.%s", column_name(source, source_atts[i]));
	}
	d->upsert_sql = psprintf("INSERT INTO %s (%s) SELECT %s FROM %s s WHERE s.%s %s ANY ($1)",
							 tgt, cols.data, vals.data, src, sk, eq);
	d->key_identical = equal_is_identical(source, key_att);
	tt = format_type_be_qualified(d->target_key_type);
	/*
	 * Absent: the queued keys whose text form no row has now, compared byte
	 * for byte (COLLATE "C"): under the key column's own nondeterministic
	 * collation the old key 'Ab' of a row now 'AB' would count as present.
	 * unnest() in the select list: in FROM it would expand a composite key
	 * into its fields.
	 */
	d->absent_sql = psprintf("SELECT pg_catalog.array_agg(CAST(t.k AS %s)) "
							 "FROM (SELECT DISTINCT CAST(CAST(u.k AS %s) AS pg_catalog.text) AS k "
							 "      FROM (SELECT pg_catalog.unnest($1) AS k) u) t "
							 "WHERE NOT t.k COLLATE pg_catalog.\"C\" OPERATOR(pg_catalog.=) ANY "
							 "(SELECT CAST(CAST(s.%s AS %s) AS pg_catalog.text) FROM %s s "
							 " WHERE s.%s %s ANY ($1))",
							 tt, tt, sk, tt, src, sk, eq);
	/*
	 * Under a nondeterministic collation of the target's key column, the
	 * delete of 'Ab' would remove the row now written as 'AB' too: delete
	 * exactly the keys named.
	 */
	get_atttypetypmodcoll(target, target_key_att, &ttype, &tmod, &tcoll);
	d->delete_sql = psprintf("DELETE FROM %s WHERE %s%s %s ANY ($1)", tgt, tk,
							 OidIsValid(tcoll) && !get_collation_isdeterministic(tcoll) ?
							 " COLLATE pg_catalog.\"C\"" : "",
							 SyncEqualityOperator(getBaseType(d->target_key_type)));
	d->payload_sql = psprintf("SELECT pg_catalog.to_jsonb(s) FROM %s s WHERE s.%s %s $1",
							  src, sk, eq);
	UnlockRelationOid(target, AccessShareLock);
	UnlockRelationOid(source, AccessShareLock);
	return d;
}

/*
 * Lock pgpoly.syncs and pgpoly.sync_queue, in that order, in the mode the
 * worker's batches, drop_sync and sync_retry write them with, before they
 * read them.  Reading first would hold AccessShareLock on a table and the
 * index read until the write asks for RowExclusiveLock, which a REINDEX (or
 * CREATE INDEX) of the table blocks with its ShareLock while it waits for
 * that index: a deadlock.  The order is DROP EXTENSION's.
 */
void
SyncLockInternalTables(void)
{
	(void) RangeVarGetRelid(makeRangeVar("pgpoly", "syncs", -1), RowExclusiveLock, true);
	(void) RangeVarGetRelid(makeRangeVar("pgpoly", "sync_queue", -1), RowExclusiveLock, true);
}

/* The extension's owner: the role that writes the internal tables. */
Oid
SyncAdminRole(void)
{
	Oid			nsp = get_namespace_oid("pgpoly", false);
	Oid			relid = get_relname_relid("sync_queue", nsp);
	HeapTuple	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tp))
		elog(ERROR, "pgpoly.sync_queue does not exist");
	owner = ((Form_pg_class) GETSTRUCT(tp))->relowner;
	ReleaseSysCache(tp);
	return owner;
}

/*
 * Act as role until the caller restores *save_user / *save_sec (an ERROR
 * restores them at (sub)transaction abort).  restricted: also forbid what
 * a security-restricted operation forbids (SET ROLE, temp tables ...).
 */
void
SyncBecome(Oid role, bool restricted, Oid *save_user, int *save_sec)
{
	GetUserIdAndSecContext(save_user, save_sec);
	SetUserIdAndSecContext(role, *save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   (restricted ? SECURITY_RESTRICTED_OPERATION : 0));
}

/*
 * Parse and run generated SQL under search_path pg_catalog, pg_temp until
 * the caller ends it with AtEOXact_GUC(true, result) (an ERROR ends it
 * too).  Values are converted by convert.c, under no session setting.
 */
int
SyncSafeSearchPath(void)
{
	int			level = NewGUCNestLevel();

	if (strcmp(GetConfigOption("search_path", false, false), "pg_catalog, pg_temp") != 0)
		(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
								 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	return level;
}

/* Connect to SPI or fail. */
static void
spi_connect(void)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

/*
 * Run sql with args as the admin role, under SyncSafeSearchPath (the
 * caller's search_path could lend the admin the caller's operators);
 * check the result code.
 */
static void
admin_execute(const char *sql, int nargs, Oid *types, Datum *values, int expect)
{
	Oid			save_user;
	int			save_sec;
	int			level = SyncSafeSearchPath();
	int			rc;

	SyncBecome(SyncAdminRole(), false, &save_user, &save_sec);
	rc = SPI_execute_with_args(sql, nargs, types, values, NULL, false, 0);
	SetUserIdAndSecContext(save_user, save_sec);
	AtEOXact_GUC(true, level);
	if (rc != expect)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
}

/* ----------------------------------------------------------------
 *		create_sync
 * ----------------------------------------------------------------
 */

/* Check that source is a table the caller owns. */
static void
check_source(Oid source)
{
	char	   *name = PgpolyRelationName(source);
	char		relkind = get_rel_relkind(source);

	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("sync source \"%s\" is not a table", name)));
	if (get_rel_persistence(source) == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot sync temporary table \"%s\"", get_rel_name(source)),
				 errdetail("The sync worker cannot read another session's temporary tables.")));
	if (!pg_class_ownercheck(source, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, get_relkind_objtype(relkind),
					   get_rel_name(source));
}

/* The wrapper of target, which the caller must be able to write. */
static SyncTargetKind
check_target(Oid target)
{
	char	   *name = PgpolyRelationName(target);
	ForeignTable *ft;
	const char *fdw;
	SyncTargetKind kind;
	AclResult	acl;

	if (get_rel_relkind(target) != RELKIND_FOREIGN_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("sync target \"%s\" is not a foreign table", name),
				 errhint("The target must be a foreign table of pgpoly_redis, pgpoly_elastic or pgpoly_vector.")));
	ft = GetForeignTable(target);
	fdw = GetForeignDataWrapper(GetForeignServer(ft->serverid)->fdwid)->fdwname;
	if (strcmp(fdw, "pgpoly_redis") == 0)
		kind = SYNC_REDIS;
	else if (strcmp(fdw, "pgpoly_elastic") == 0)
		kind = SYNC_ELASTIC;
	else if (strcmp(fdw, "pgpoly_vector") == 0)
		kind = SYNC_VECTOR;
	else
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("sync target \"%s\" is a foreign table of wrapper \"%s\"",
						get_rel_name(target), fdw),
				 errhint("The target must be a foreign table of pgpoly_redis, pgpoly_elastic or pgpoly_vector.")));
	if (kind == SYNC_REDIS)
	{
		const char *type = PgpolyGetOption(ft->options, "table_type", "hash");

		if (strcmp(type, "hash") != 0 && strcmp(type, "json") != 0 &&
			strcmp(type, "string") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("a sync cannot target Redis table \"%s\" of table_type '%s'",
							get_rel_name(target), type),
					 errhint("Use a hash, json or string table: one key per source row.")));
	}
	acl = pg_class_aclcheck(target, GetUserId(), ACL_INSERT | ACL_SELECT | ACL_DELETE);
	if (acl != ACLCHECK_OK)
		aclcheck_error(acl, OBJECT_FOREIGN_TABLE, get_rel_name(target));
	return kind;
}

/* The key column of a one-column unique index (0 if it is not one). */
static AttrNumber
unique_index_column(Oid indexoid)
{
	HeapTuple	tp = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(indexoid));
	Form_pg_index idx;
	AttrNumber	att = 0;

	if (!HeapTupleIsValid(tp))
		return 0;
	idx = (Form_pg_index) GETSTRUCT(tp);
	if (idx->indisunique && idx->indisvalid && idx->indnkeyatts == 1 &&
		heap_attisnull(tp, Anum_pg_index_indpred, NULL) &&
		heap_attisnull(tp, Anum_pg_index_indexprs, NULL))
		att = idx->indkey.values[0];
	ReleaseSysCache(tp);
	return att;
}

/* Whether column att of rel has a one-column unique index. */
static bool
has_unique_index(Relation rel, AttrNumber att)
{
	ListCell   *lc;

	foreach(lc, RelationGetIndexList(rel))
		if (unique_index_column(lfirst_oid(lc)) == att)
		return true;
	return false;
}

/*
 * The source's key column: key_column (NULL: the one-column primary key),
 * which must be NOT NULL and unique, so that a key names one row.
 */
static AttrNumber
resolve_key(Oid source, const char *key_column)
{
	Relation	rel = table_open(source, AccessShareLock);
	AttrNumber	att;

	if (key_column == NULL)
	{
		Oid			pk = RelationGetPrimaryKeyIndex(rel);

		att = OidIsValid(pk) ? unique_index_column(pk) : 0;
		if (att <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("table \"%s\" has no one-column primary key",
							RelationGetRelationName(rel)),
					 errhint("Pass key_column: a NOT NULL column with a unique index.")));
		table_close(rel, AccessShareLock);
		return att;
	}
	att = get_attnum(source, key_column);
	if (att <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of table \"%s\" does not exist",
						key_column, RelationGetRelationName(rel))));
	if (!TupleDescAttr(RelationGetDescr(rel), att - 1)->attnotnull)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key column \"%s\" of table \"%s\" must be NOT NULL",
						key_column, RelationGetRelationName(rel))));
	if (!has_unique_index(rel, att))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("key column \"%s\" of table \"%s\" has no unique index",
						key_column, RelationGetRelationName(rel)),
				 errhint("A key must name one row: create a unique index or primary key on it.")));
	table_close(rel, AccessShareLock);
	return att;
}

/* The target column the source key feeds: Redis key, _id or id. */
static AttrNumber
target_key_column(Oid target, SyncTargetKind kind)
{
	const char *name;
	AttrNumber	att;

	if (kind == SYNC_REDIS)
	{
		Oid			type = REGCLASSOID;
		Datum		arg = ObjectIdGetDatum(target);
		bool		isnull;

		if (SPI_execute_with_args("SELECT pgpoly._redis_key_column($1)", 1, &type, &arg,
								  NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not resolve the key column of \"%s\"", get_rel_name(target));
		name = TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 1, &isnull));
	}
	else
		name = kind == SYNC_ELASTIC ? "_id" : "id";
	att = get_attnum(target, name);
	if (att <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("foreign table \"%s\" has no column \"%s\"", get_rel_name(target), name),
				 errhint("The sync writes the source key there: add a column %s text.", name)));
	return att;
}

/*
 * Check that the target key column takes every source key unchanged: text,
 * an unconstrained varchar, or the source key's own type and typmod
 * (domains resolved).  Any other type converts by an assignment cast that
 * may round or cut (numeric(5,1), varchar(2), int): two source rows would
 * then share one target key, each overwriting the other.  Never char(n):
 * the store keeps its blank-padded form, but the absent keys are deleted
 * by their text form, without the blanks, so a deleted row stayed.  Nor a
 * type whose equality is not identity (numeric, float8, interval, citext):
 * the delete of the old key 1.0 would remove the new key 1.00 too.
 */
static void
check_target_key_type(Oid source, AttrNumber key_att, Oid target, AttrNumber target_key)
{
	Oid			stype;
	Oid			ttype;
	int32		smod;
	int32		tmod;
	Oid			coll;

	get_atttypetypmodcoll(source, key_att, &stype, &smod, &coll);
	get_atttypetypmodcoll(target, target_key, &ttype, &tmod, &coll);
	stype = getBaseTypeAndTypmod(stype, &smod);
	ttype = getBaseTypeAndTypmod(ttype, &tmod);

	if ((ttype == TEXTOID || ttype == VARCHAROID) && tmod < 0)
		return;
	if (ttype == stype && ttype != BPCHAROID && (tmod < 0 || tmod == smod) &&
		equal_is_identical(target, target_key))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_DATATYPE_MISMATCH),
			 errmsg("key column \"%s\" of \"%s\" cannot hold every key of \"%s\" unchanged",
					get_attname(target, target_key, false), get_rel_name(target),
					get_rel_name(source)),
			 errdetail("Source keys of type %s would be converted to %s, which can round or cut two keys into one.",
					   format_type_with_typemod(stype, smod),
					   format_type_with_typemod(ttype, tmod)),
			 errhint("Declare the target's key column text (or of the source key's own type, if its equality is identity, as for integers, uuid or timestamptz).")));
}

/* Whether a target column is read-only or not stored (never written). */
static bool
reserved_column(SyncTargetKind kind, const char *name)
{
	switch (kind)
	{
		case SYNC_REDIS:
			return strcmp(name, "_ttl") == 0;
		case SYNC_ELASTIC:
			return strcmp(name, "_score") == 0 || strcmp(name, "_query") == 0;
		case SYNC_VECTOR:
			return strcmp(name, "_distance") == 0;
	}
	return false;
}

/*
 * PgpolyColumnField over the PgpolyFieldRefs of map_columns (terminated by
 * one without a column).
 */
static bool
mapped_field(const void *t, int i, PgpolyFieldRef *ref)
{
	*ref = ((const PgpolyFieldRef *) t)[i];
	return ref->column != NULL;
}

/*
 * The store field target column a writes (the column option field, else
 * its name) into *ref; false for the vector columns that are no metadata
 * key (id, embedding, document, metadata without a field option).
 */
static bool
target_field(SyncTargetKind kind, Form_pg_attribute a, PgpolyFieldRef *ref)
{
	const char *name = NameStr(a->attname);
	const char *field = NULL;
	ListCell   *lc;

	foreach(lc, GetForeignColumnOptions(a->attrelid, a->attnum))
		if (strcmp(lfirst_node(DefElem, lc)->defname, "field") == 0)
			field = defGetString(lfirst_node(DefElem, lc));
	if (field == NULL && kind == SYNC_VECTOR &&
		(strcmp(name, "embedding") == 0 || strcmp(name, "document") == 0 ||
		 strcmp(name, "metadata") == 0 || strcmp(name, "id") == 0))
		return false;
	if (field == NULL && kind == SYNC_ELASTIC && strcmp(name, "_source") == 0)
		return false;
	if (field == NULL)
		field = name;
	*ref = (PgpolyFieldRef) {pstrdup(name), pstrdup(field), strlen(field), a->attnum,
		kind == SYNC_ELASTIC ? '.' : '\0', kind == SYNC_ELASTIC && a->atttypid == JSONBOID};
	return true;
}

/*
 * Pair each writable target column with the same-named source column
 * (palloc'd arrays; returns how many pairs).  A target column without one
 * is left to the target's default: NULL.
 */
static int
map_columns(Oid source, Oid target, SyncTargetKind kind, AttrNumber target_key,
			AttrNumber **satts, AttrNumber **tatts)
{
	Relation	rel = relation_open(target, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	int			n = 0;
	bool		embedding = false;

	PgpolyFieldRef *fields = palloc0(sizeof(PgpolyFieldRef) * (desc->natts + 1));
	int			nfields = 0;

	*satts = palloc(sizeof(AttrNumber) * Max(desc->natts, 1));
	*tatts = palloc(sizeof(AttrNumber) * Max(desc->natts, 1));
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);
		AttrNumber	satt;

		if (a->attisdropped || a->attnum == target_key ||
			reserved_column(kind, NameStr(a->attname)))
			continue;
		satt = get_attnum(source, NameStr(a->attname));
		if (satt <= 0)
			continue;
		if (strcmp(NameStr(a->attname), "embedding") == 0)
			embedding = true;
		if (target_field(kind, a, &fields[nfields]))
			nfields++;
		(*satts)[n] = satt;
		(*tatts)[n++] = a->attnum;
	}
	/* the worker writes every mapped column: each to its own field */
	PgpolyCheckWrittenFields(RelationGetRelationName(rel), fields, nfields, mapped_field,
							 CMD_INSERT, NULL);
	relation_close(rel, AccessShareLock);
	if (kind == SYNC_VECTOR && !embedding)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("table \"%s\" has no column \"embedding\" for vector table \"%s\"",
						get_rel_name(source), get_rel_name(target)),
				 errhint("Target columns take the same-named source columns: add a real[] column embedding to the source.")));
	if (kind == SYNC_REDIS && n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("table \"%s\" has no column named like a value column of Redis table \"%s\"",
						get_rel_name(source), get_rel_name(target)),
				 errhint("Target columns take the same-named source columns.")));
	return n;
}

/*
 * Parse the delivery SQL, so that a column type the target cannot take
 * fails create_sync (with the parser's message as the detail: its position
 * would point into SQL the user never wrote).
 */
static void
validate_def(SyncDef *def)
{
	const char *sql[4] = {def->upsert_sql, def->absent_sql, def->delete_sql, def->payload_sql};
	Oid			types[4] = {def->key_array_type, def->key_array_type,
	def->target_key_array_type, def->key_type};
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		for (int i = 0; i < 4; i++)
		{
			SPIPlanPtr	plan = SPI_prepare(sql[i], 1, &types[i]);

			if (plan == NULL)
				elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
			SPI_freeplan(plan);
		}
	}
	PG_CATCH();
	{
		ErrorData  *e;

		MemoryContextSwitchTo(cxt);
		e = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
				(errcode(e->sqlerrcode),
				 errmsg("table \"%s\" cannot be synced to \"%s\"",
						get_rel_name(def->source), get_rel_name(def->target)),
				 errdetail("%s", e->message),
				 errhint("Target columns take the same-named source columns: their types must be assignable.")));
	}
	PG_END_TRY();
}

/* An int2[] of n attnums. */
Datum
SyncAttnumArray(const AttrNumber *atts, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int16GetDatum(atts[i]);
	return PointerGetDatum(construct_array(d, n, INT2OID, 2, true, TYPALIGN_SHORT));
}

/*
 * A sync name of at most this many bytes always fits pgpoly.syncs' unique
 * index (a btree entry holds 2704 bytes with 8 kB pages, header included):
 * only a longer one pays for the subtransaction of insert_sync_checked.
 */
#define SYNC_NAME_ALWAYS_FITS 2048

/* Insert the sync's row; returns its id.  ERROR if the name is taken. */
static int32
insert_sync(const char *name, Oid source, Oid target, AttrNumber key_att,
			AttrNumber target_key, int n, AttrNumber *satts, AttrNumber *tatts)
{
	Oid			types[8] = {TEXTOID, REGCLASSOID, REGCLASSOID, INT2OID, INT2OID,
	INT2ARRAYOID, INT2ARRAYOID, REGROLEOID};
	Datum		values[8];
	bool		isnull;

	values[0] = CStringGetTextDatum(name);
	values[1] = ObjectIdGetDatum(source);
	values[2] = ObjectIdGetDatum(target);
	values[3] = Int16GetDatum(key_att);
	values[4] = Int16GetDatum(target_key);
	values[5] = SyncAttnumArray(satts, n);
	values[6] = SyncAttnumArray(tatts, n);
	values[7] = ObjectIdGetDatum(GetUserId());
	admin_execute("INSERT INTO pgpoly.syncs (name, source, target, key_attnum, "
				  "target_key_attnum, source_attnums, target_attnums, owner, "
				  "source_ref, target_ref, source_columns, target_columns) "
				  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, pgpoly._sync_ref($2::pg_catalog.oid), "
				  "pgpoly._sync_ref($3::pg_catalog.oid), pgpoly._sync_columns($2), "
				  "pgpoly._sync_columns($3)) "
				  "ON CONFLICT (name) DO NOTHING RETURNING sync_id",
				  8, types, values, SPI_OK_INSERT_RETURNING);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("sync \"%s\" already exists", name)));
	return DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									   1, &isnull));
}

/*
 * insert_sync, turning PostgreSQL's "index row size ... exceeds btree"
 * error (54000) for a name too long for the syncs' index into one naming
 * the argument, its length and the limit, as the registry functions do
 * (pgpoly._too_long_for_index; a long name that compresses is kept).
 */
static int32
insert_sync_checked(const char *name, Oid source, Oid target, AttrNumber key_att,
					AttrNumber target_key, int n, AttrNumber *satts, AttrNumber *tatts)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile int32 id = 0;
	ErrorData  *volatile e = NULL;

	if (strlen(name) <= SYNC_NAME_ALWAYS_FITS)
		return insert_sync(name, source, target, key_att, target_key, n, satts, tatts);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		id = insert_sync(name, source, target, key_att, target_key, n, satts, tatts);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		e = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	if (e == NULL)
		return id;
	if (e->sqlerrcode == ERRCODE_PROGRAM_LIMIT_EXCEEDED)
	{
		Oid			types[2] = {TEXTOID, TEXTOID};
		Datum		values[2] = {CStringGetTextDatum(name), CStringGetTextDatum(e->message)};

		admin_execute("SELECT pgpoly._too_long_for_index('54000', ARRAY['argument \"name\"'], "
					  "ARRAY[$1], 'the index of pgpoly.syncs', $2, "
					  "'Use a shorter sync name (for instance a hash of it).')",
					  2, types, values, SPI_OK_SELECT);
	}
	ReThrowError(e);
}

/*
 * The capture triggers: name suffix, timing and events, transition tables,
 * level and when they fire.  The statement triggers fire ALWAYS, so that a
 * session with session_replication_role = replica is captured too; a
 * logical replication apply worker fires row triggers only, so it is
 * captured by the row trigger, which fires in replica mode only (and does
 * nothing outside an apply worker: see sync_capture.c).
 */
static const char *const CaptureTriggers[5][5] = {
	{"insert", "AFTER INSERT", "REFERENCING NEW TABLE AS pgpoly_new", "STATEMENT", "ALWAYS"},
	{"update", "AFTER UPDATE", "REFERENCING OLD TABLE AS pgpoly_old NEW TABLE AS pgpoly_new",
	"STATEMENT", "ALWAYS"},
	{"delete", "AFTER DELETE", "REFERENCING OLD TABLE AS pgpoly_old", "STATEMENT", "ALWAYS"},
	{"truncate", "BEFORE TRUNCATE", "", "STATEMENT", "ALWAYS"},
	{"applied", "AFTER INSERT OR UPDATE OR DELETE", "", "ROW", "REPLICA"}
};

/* The name of capture trigger i of sync id. */
static char *
trigger_name(int32 id, int i)
{
	return psprintf("pgpoly_sync_%d_%s", id, CaptureTriggers[i][0]);
}

/* Attach the capture triggers to source. */
static void
create_triggers(int32 id, Oid source, AttrNumber key_att)
{
	char	   *rel = SyncQualifiedName(source);

	for (int i = 0; i < lengthof(CaptureTriggers); i++)
	{
		const char *const *t = CaptureTriggers[i];
		const char *name = quote_identifier(trigger_name(id, i));

		admin_execute(psprintf("CREATE TRIGGER %s %s ON %s %s FOR EACH %s "
							   "EXECUTE FUNCTION pgpoly._sync_capture('%d', '%d')",
							   name, t[1], rel, t[2], t[3], id, (int) key_att),
					  0, NULL, NULL, SPI_OK_UTILITY);
		admin_execute(psprintf("ALTER TABLE %s ENABLE %s TRIGGER %s", rel, t[4], name),
					  0, NULL, NULL, SPI_OK_UTILITY);
	}
}

/* An argument that must not be NULL. */
static void
require_arg(FunctionCallInfo fcinfo, int i, const char *name)
{
	if (PG_ARGISNULL(i))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", name)));
}

/*
 * A function that writes the sync catalog: refused (25006) on a standby or
 * in a read-only transaction, before anything is looked up or locked.
 */
static void
require_writable(const char *fn)
{
	PreventCommandDuringRecovery(fn);
	PreventCommandIfReadOnly(fn);
}

PG_FUNCTION_INFO_V1(pgpoly_create_sync);

/*
 * pgpoly.create_sync(name, source, target, key_column, backfill): see
 * API.md section 5.  Returns the number of keys queued by the backfill.
 */
Datum
pgpoly_create_sync(PG_FUNCTION_ARGS)
{
	char	   *name;
	Oid			source;
	Oid			target;
	SyncTargetKind kind;
	AttrNumber	key_att;
	AttrNumber	target_key;
	AttrNumber *satts;
	AttrNumber *tatts;
	int			n;
	int32		id;
	int64		queued = 0;
	int			guc_level;

	require_writable("pgpoly.create_sync()");
	require_arg(fcinfo, 0, "name");
	require_arg(fcinfo, 1, "source");
	require_arg(fcinfo, 2, "target");
	require_arg(fcinfo, 4, "backfill");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	source = PG_GETARG_OID(1);
	target = PG_GETARG_OID(2);
	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("sync name must not be empty")));
	if (PG_GETARG_BOOL(4) && IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("create_sync with backfill must run at READ COMMITTED isolation"),
				 errdetail("The backfill must see the rows committed before the capture triggers exist.")));
	check_source(source);
	kind = check_target(target);
	key_att = resolve_key(source, PG_ARGISNULL(3) ? NULL : NameStr(*PG_GETARG_NAME(3)));

	guc_level = SyncSafeSearchPath();
	spi_connect();
	target_key = target_key_column(target, kind);
	check_target_key_type(source, key_att, target, target_key);
	n = map_columns(source, target, kind, target_key, &satts, &tatts);
	validate_def(SyncBuildDef(0, name, source, target, GetUserId(), key_att,
							  target_key, n, satts, tatts));
	id = insert_sync_checked(name, source, target, key_att, target_key, n, satts, tatts);
	create_triggers(id, source, key_att);
	if (PG_GETARG_BOOL(4))
		queued = SyncQueueAllKeys(id, source, key_att, GetUserId());
	SPI_finish();
	AtEOXact_GUC(true, guc_level);
	SyncKickAtCommit();
	PG_RETURN_INT64(queued);
}

/* ----------------------------------------------------------------
 *		drop_sync, sync_retry
 * ----------------------------------------------------------------
 */

/*
 * Look up sync name (locking its row) and check that the caller is a
 * member of its owner's role.  Sets *source (InvalidOid: an outbox table's
 * sync) and *target; returns its id.
 */
static int32
owned_sync(const char *name, Oid *source, Oid *target)
{
	Oid			type = TEXTOID;
	Datum		arg = CStringGetTextDatum(name);
	bool		isnull;
	HeapTuple	tup;
	Oid			owner;

	admin_execute("SELECT sync_id, source::pg_catalog.oid, owner::pg_catalog.oid, "
				  "target::pg_catalog.oid "
				  "FROM pgpoly.syncs WHERE name = $1 FOR UPDATE",
				  1, &type, &arg, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("sync \"%s\" does not exist", name)));
	tup = SPI_tuptable->vals[0];
	*source = DatumGetObjectId(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
	if (isnull)
		*source = InvalidOid;
	*target = DatumGetObjectId(SPI_getbinval(tup, SPI_tuptable->tupdesc, 4, &isnull));
	owner = DatumGetObjectId(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull));
	if (!has_privs_of_role(GetUserId(), owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of sync \"%s\"", name)));
	return DatumGetInt32(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Lock the source of sync name in DROP TRIGGER's mode before owned_sync
 * locks the sync's row: every party takes a sync's tables before its row
 * (lock_tables in sync_worker.c; ALTER TABLE then updates the row), and
 * DROP TRIGGER itself takes a weaker lock first, which a session waiting
 * to ALTER the table would wait for.  Only a member of the sync's owner's
 * role locks anything (owned_sync checks again, under the row lock).
 */
static void
lock_source(const char *name)
{
	Oid			type = TEXTOID;
	Datum		arg = CStringGetTextDatum(name);
	bool		nosource;
	bool		isnull;
	Oid			source;
	Oid			owner;

	admin_execute("SELECT source::pg_catalog.oid, owner::pg_catalog.oid "
				  "FROM pgpoly.syncs WHERE name = $1", 1, &type, &arg, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return;
	source = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
											1, &nosource));
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										   2, &isnull));
	if (!nosource && has_privs_of_role(GetUserId(), owner))
		LockRelationOid(source, AccessExclusiveLock);
}

PG_FUNCTION_INFO_V1(pgpoly_drop_sync);

/*
 * pgpoly.drop_sync(name): remove the capture triggers (if the source still
 * exists), the undelivered changes, the dead letters and the sync.
 */
Datum
pgpoly_drop_sync(PG_FUNCTION_ARGS)
{
	char	   *name;
	Oid			source;
	Oid			target;
	int32		id;
	Oid			type = INT4OID;
	Datum		arg;
	int			guc_level;

	require_writable("pgpoly.drop_sync()");
	require_arg(fcinfo, 0, "name");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	guc_level = SyncSafeSearchPath();
	spi_connect();
	SyncLockInternalTables();
	lock_source(name);
	id = owned_sync(name, &source, &target);
	arg = Int32GetDatum(id);
	if (OidIsValid(source) && get_rel_name(source) != NULL)
	{
		for (int i = 0; i < lengthof(CaptureTriggers); i++)
			admin_execute(psprintf("DROP TRIGGER IF EXISTS %s ON %s",
								   quote_identifier(trigger_name(id, i)),
								   SyncQualifiedName(source)),
						  0, NULL, NULL, SPI_OK_UTILITY);
	}
	admin_execute("DELETE FROM pgpoly.sync_queue WHERE sync_id = $1", 1, &type, &arg,
				  SPI_OK_DELETE);
	admin_execute("DELETE FROM pgpoly.sync_dead_letters WHERE sync_id = $1", 1, &type,
				  &arg, SPI_OK_DELETE);
	admin_execute("DELETE FROM pgpoly.syncs WHERE sync_id = $1", 1, &type, &arg,
				  SPI_OK_DELETE);
	SPI_finish();
	AtEOXact_GUC(true, guc_level);
	SyncKickAtCommit();			/* the worker leaves when no sync remains */
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(pgpoly_sync_retry);

/*
 * Requeue the dead letters of outbox sync id (of target): each as the
 * change it was, queued now, after every change queued before (columns
 * dropped since are left out).  The queued changes' columns are numbered
 * for the table now first (a restored table), as these are.
 */
static void
retry_outbox(Datum id, Oid target)
{
	Oid			types[2] = {INT4OID, REGCLASSOID};
	Datum		values[2] = {id, ObjectIdGetDatum(target)};

	SyncResolveColumns(DatumGetInt32(id), NULL);
	admin_execute("WITH d AS (DELETE FROM pgpoly.sync_dead_letters WHERE sync_id = $1 "
				  "           RETURNING key, op, payload, writer, failed_at) "
				  "INSERT INTO pgpoly.sync_queue (sync_id, keys, op, userid, cols, vals) "
				  "SELECT $1, ARRAY[d.key], "
				  "       CASE d.op WHEN 'upsert' THEN 'u' WHEN 'update' THEN 'p' ELSE 'd' END, "
				  "       d.writer, "
				  "       CASE WHEN d.op <> 'delete' THEN COALESCE(c.cols, '{}') END, "
				  "       CASE WHEN c.cols IS NOT NULL THEN ARRAY[c.vals] END "
				  "FROM d LEFT JOIN LATERAL ("
				  "  SELECT pg_catalog.array_agg(a.attnum ORDER BY a.attnum) AS cols, "
				  "         pg_catalog.array_agg(e.value ORDER BY a.attnum) AS vals "
				  "  FROM pg_catalog.jsonb_each_text(d.payload) e "
				  "  JOIN pg_catalog.pg_attribute a ON a.attrelid = $2 "
				  "   AND a.attname OPERATOR(pg_catalog.=) e.key "
				  "   AND a.attnum > 0 AND NOT a.attisdropped) c ON true "
				  "ORDER BY d.failed_at "
				  "RETURNING pg_catalog.cardinality(keys)",
				  2, types, values, SPI_OK_INSERT_RETURNING);
}

/*
 * pgpoly.sync_retry(name): move the sync's dead letters back to the queue
 * (the worker delivers their keys' current rows; for an outbox table, the
 * changes again).  Returns how many.
 */
Datum
pgpoly_sync_retry(PG_FUNCTION_ARGS)
{
	char	   *name;
	Oid			source;
	Oid			target;
	Oid			type = INT4OID;
	Datum		arg;
	int64		moved = 0;
	int			guc_level;

	require_writable("pgpoly.sync_retry()");
	require_arg(fcinfo, 0, "name");
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	guc_level = SyncSafeSearchPath();
	spi_connect();
	SyncLockInternalTables();
	arg = Int32GetDatum(owned_sync(name, &source, &target));
	if (!OidIsValid(source))
		retry_outbox(arg, target);
	else
		admin_execute("WITH d AS (DELETE FROM pgpoly.sync_dead_letters WHERE sync_id = $1 "
					  "                RETURNING key), "
					  "     n AS (SELECT key, (pg_catalog.row_number() OVER () - 1) / 1000 AS chunk "
					  "           FROM d) "
					  "INSERT INTO pgpoly.sync_queue (sync_id, keys) "
					  "SELECT $1, pg_catalog.array_agg(key) FROM n GROUP BY chunk "
					  "RETURNING pg_catalog.cardinality(keys)",
					  1, &type, &arg, SPI_OK_INSERT_RETURNING);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		moved += DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
											 SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_finish();
	AtEOXact_GUC(true, guc_level);
	if (moved > 0)
		SyncNoteQueued();
	PG_RETURN_INT64(moved);
}

/* ----------------------------------------------------------------
 *		sync_wait
 * ----------------------------------------------------------------
 */

/* The id of sync name (anyone may wait for any sync). */
static int32
sync_id_by_name(const char *name)
{
	Oid			type = TEXTOID;
	Datum		arg = CStringGetTextDatum(name);
	bool		isnull;

	admin_execute("SELECT sync_id FROM pgpoly.syncs WHERE name = $1", 1, &type, &arg,
				  SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("sync \"%s\" does not exist", name)));
	return DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									   1, &isnull));
}

/*
 * Whether a change queued up to t0 is still undelivered (for sync id, or
 * all when id is 0).  Each call sees the changes committed since the last.
 */
static bool
changes_pending(int32 id, TimestampTz t0)
{
	Oid			types[2] = {INT4OID, TIMESTAMPTZOID};
	Datum		values[2] = {Int32GetDatum(id), TimestampTzGetDatum(t0)};
	bool		isnull;
	bool		pending;

	admin_execute("SELECT EXISTS (SELECT 1 FROM pgpoly.sync_queue "
				  "WHERE ($1 = 0 OR sync_id = $1) AND queued_at <= $2)",
				  2, types, values, SPI_OK_SELECT);
	pending = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										 1, &isnull));
	SPI_freetuptable(SPI_tuptable);
	return pending;
}

/* Microseconds of an interval (months as 30 days); <= 0 for none. */
static int64
interval_usecs(Interval *iv)
{
	return iv->time + (int64) iv->day * USECS_PER_DAY +
		(int64) iv->month * DAYS_PER_MONTH * USECS_PER_DAY;
}

PG_FUNCTION_INFO_V1(pgpoly_sync_wait);

/*
 * pgpoly.sync_wait(name, timeout): wait until every change queued before
 * the call is delivered (or moved to the dead letters): true; false when
 * timeout (NULL: none) passes first.  Needs READ COMMITTED, where each look
 * at the queue takes a new snapshot.
 */
Datum
pgpoly_sync_wait(PG_FUNCTION_ARGS)
{
	TimestampTz t0 = GetCurrentTimestamp();
	TimestampTz deadline = DT_NOEND;
	TimestampTz last_kick = t0;
	int32		id = 0;
	long		poll_ms = 2;
	bool		done;
	int			guc_level;

	if (SyncQueuedInXact() || PgpolyChangesPending())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("sync_wait cannot wait for changes of its own transaction"),
				 errhint("COMMIT first: changes are delivered once committed.")));
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("sync_wait must run at READ COMMITTED isolation"),
				 errdetail("A transaction snapshot would never see the changes delivered.")));
	if (!PG_ARGISNULL(1))
		deadline = t0 + Max(interval_usecs(PG_GETARG_INTERVAL_P(1)), 0);
	guc_level = SyncSafeSearchPath();
	spi_connect();
	if (!PG_ARGISNULL(0))
		id = sync_id_by_name(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	SyncKickWorker();
	while ((done = !changes_pending(id, t0)) == false)
	{
		TimestampTz now = GetCurrentTimestamp();

		if (now >= deadline)
			break;
		/* The worker may have stopped (crash, pg_terminate_backend). */
		if (TimestampDifferenceExceeds(last_kick, now, 1000))
		{
			SyncKickWorker();
			last_kick = now;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 poll_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		poll_ms = Min(poll_ms * 2, 50);
	}
	SPI_finish();
	AtEOXact_GUC(true, guc_level);
	PG_RETURN_BOOL(done);
}

/* ----------------------------------------------------------------
 *		Columns across dump and restore
 * ----------------------------------------------------------------
 */

/* An int2[] datum as a palloc'd attnum array; sets *n. */
AttrNumber *
SyncAttnums(Datum d, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	AttrNumber *result;

	deconstruct_array(DatumGetArrayTypeP(d), INT2OID, 2, true, TYPALIGN_SHORT,
					  &elems, &nulls, n);
	result = palloc(sizeof(AttrNumber) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
		result[i] = DatumGetInt16(elems[i]);
	return result;
}

/* A text[] datum (NULL: none) as a palloc'd array, NULL elements kept. */
static char **
text_elems(Datum d, bool isnull, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	char	  **result;

	*n = 0;
	if (isnull)
		return NULL;
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, n);
	result = palloc0(sizeof(char *) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
		result[i] = nulls[i] ? NULL : TextDatumGetCString(elems[i]);
	return result;
}

/*
 * The attnum in rel of the column named name, recorded as attnum old of
 * the sync's source or target (role) when it was another relation.  ERROR
 * 42703 if rel has no such column: the sync cannot be mapped by guessing.
 */
AttrNumber
SyncRemapColumn(const char *sync, const char *role, Oid rel, const char *name,
				AttrNumber old)
{
	AttrNumber	att = name ? get_attnum(rel, name) : InvalidAttrNumber;

	if (att > 0)
		return att;
	if (name)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of pgpoly sync \"%s\" no longer exists in its %s \"%s\"",
						name, sync, role, get_rel_name(rel)),
				 errdetail("The %s is not the table the sync's columns were numbered for (it was restored from a dump), so they are mapped again by name.",
						   role),
				 errhint("Add the column back under that name, or drop the sync with pgpoly.drop_sync() and create it again.")));
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("column %d of pgpoly sync \"%s\" has no recorded name in its %s \"%s\"",
					old, sync, role, get_rel_name(rel)),
			 errhint("Drop the sync with pgpoly.drop_sync() and create it again.")));
	return InvalidAttrNumber;	/* keep compiler quiet */
}

/* A recorded column map of a relation: its column names by attnum. */
typedef struct ColumnMap
{
	const char *sync;
	const char *role;
	Oid			rel;			/* the relation now */
	char	  **names;
	int			n;
} ColumnMap;

static AttrNumber
remap(ColumnMap *m, AttrNumber old)
{
	return SyncRemapColumn(m->sync, m->role, m->rel,
						   old >= 1 && old <= m->n ? m->names[old - 1] : NULL, old);
}

/*
 * The database of which this one is a copy (CREATE DATABASE ... TEMPLATE),
 * when ref (pgpoly._sync_ref) names relation rel as that database has it:
 * another database that still exists, the same relation oid (a restore
 * numbers its relations anew).  NULL otherwise.  The system identifier is
 * not compared: pg_upgrade gives the cluster a new one but keeps database
 * and relation oids, and a copy must stay one across it.
 */
static char *
copied_from(const char *ref, Oid rel)
{
	uint64		sysid;
	Oid			db;
	Oid			relid;

	if (sscanf(ref, UINT64_FORMAT "/%u/%u", &sysid, &db, &relid) != 3 ||
		db == MyDatabaseId || relid != rel)
		return NULL;
	return get_database_name(db);
}

/* ERROR: sync belongs to database db, of which this database is a copy. */
static void
belongs_elsewhere(const char *sync, const char *db)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_CATALOG_NAME),
			 errmsg("pgpoly sync \"%s\" belongs to database \"%s\", of which this database is a copy",
					sync, db),
			 errdetail("The copy's queued changes are not delivered: that database's worker delivers the sync, and the copy's older rows would overwrite its newer ones."),
			 errhint("Drop the sync here with pgpoly.drop_sync() (and create it again if this database is to feed the target), or drop database \"%s\" to make this database the sync's.",
					 db)));
}

/*
 * The worker, before it delivers sync s whose home (pgpoly.syncs.home) is
 * not this database: ERROR 3D000 when that home is another database of
 * this cluster that still exists (this one is its copy, by CREATE DATABASE
 * ... TEMPLATE or a restored dump: both would deliver the same changes to
 * the same targets, the copy's older ones last); otherwise (another
 * cluster: a restore there, pg_upgrade; a database dropped since; no home
 * recorded) the sync becomes this database's.  Runs in the delivery's
 * transaction, so a claim whose batch fails is claimed again.
 */
void
SyncClaimHome(SyncRow *s)
{
	Oid			type = INT4OID;
	Datum		arg = Int32GetDatum(s->id);
	bool		isnull;
	Datum		home;
	uint64		sysid;
	Oid			db;
	char	   *name;

	SyncExecute("SELECT home FROM pgpoly.syncs WHERE sync_id = $1",
				1, &type, &arg, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		return;
	home = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull &&
		sscanf(TextDatumGetCString(home), UINT64_FORMAT "/%u", &sysid, &db) == 2 &&
		sysid == GetSystemIdentifier() && db != MyDatabaseId &&
		(name = get_database_name(db)) != NULL)
		belongs_elsewhere(s->name, name);
	SyncExecute("UPDATE pgpoly.syncs SET home = pgpoly._sync_home() WHERE sync_id = $1",
				1, &type, &arg, NULL, SPI_OK_UPDATE);
	s->away = false;
}

/*
 * The columns of sync id when its source or target is not the relation its
 * attnums were recorded for (source_ref, target_ref: a restored table, or
 * one dropped and created again under the name): number them again by the
 * recorded names, in its row and in its queued entries' cols, and record
 * the relations and their names now.  ERROR 42703 naming a column no
 * longer there (the worker records it as the sync's failure).  Nothing when
 * the sync is gone or was mapped again meanwhile (the row is locked until
 * COMMIT).  s (if not NULL) is the worker's copy of the row: it gets the
 * new attnums.
 */
void
SyncResolveColumns(int32 id, SyncRow *s)
{
	Oid			type = INT4OID;
	Datum		arg = Int32GetDatum(id);
	Oid			save_user;
	int			save_sec;
	int			level;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	bool		srcnull;
	Oid			source;
	Oid			target;
	bool		outbox;
	ColumnMap	src;
	ColumnMap	tgt;
	AttrNumber	key_att;
	AttrNumber	target_key_att;
	AttrNumber *satts;
	AttrNumber *tatts;
	AttrNumber *qcols;
	AttrNumber *qmap;
	int			ncols;
	int			nq;
	int			n;
	Oid			types[5] = {INT4OID, INT2OID, INT2OID, INT2ARRAYOID, INT2ARRAYOID};
	Datum		values[5];

	spi_connect();
	level = SyncSafeSearchPath();
	SyncBecome(SyncAdminRole(), false, &save_user, &save_sec);
	if (SPI_execute_with_args("SELECT s.name, s.source::oid, s.target::oid, "
							  "COALESCE(s.source_ref <> pgpoly._sync_ref(s.source::oid), false) "
							  "OR COALESCE(s.target_ref <> pgpoly._sync_ref(s.target::oid), false), "
							  "s.source_columns, s.target_columns, s.key_attnum, "
							  "s.target_key_attnum, s.source_attnums, s.target_attnums, "
							  "s.kind = 'outbox', "
							  "ARRAY(SELECT DISTINCT c FROM pgpoly.sync_queue q, unnest(q.cols) c "
							  "      WHERE q.sync_id = s.sync_id ORDER BY c), "
							  "s.source_ref, s.target_ref "
							  "FROM pgpoly.syncs s WHERE s.sync_id = $1 FOR NO KEY UPDATE OF s",
							  1, &type, &arg, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "reading pgpoly sync %d failed", id);
	if (SPI_processed == 0 ||
		!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull)))
	{
		SetUserIdAndSecContext(save_user, save_sec);
		AtEOXact_GUC(true, level);
		SPI_finish();
		return;
	}
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	source = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &srcnull));
	target = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull));
	outbox = DatumGetBool(SPI_getbinval(tup, desc, 11, &isnull));
	src.sync = tgt.sync = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));
	{
		Datum		sref = SPI_getbinval(tup, desc, 13, &isnull);
		char	   *copy = NULL;

		if (!isnull && !srcnull)
			copy = copied_from(TextDatumGetCString(sref), source);
		if (copy == NULL)
		{
			Datum		tref = SPI_getbinval(tup, desc, 14, &isnull);

			if (!isnull)
				copy = copied_from(TextDatumGetCString(tref), target);
		}
		/*
		 * A copy's attnums are its template's: a writer there (s NULL)
		 * queues as it would, the worker delivers nothing.
		 */
		if (copy != NULL && s != NULL)
			belongs_elsewhere(src.sync, copy);
		if (copy != NULL)
		{
			SetUserIdAndSecContext(save_user, save_sec);
			AtEOXact_GUC(true, level);
			SPI_finish();
			return;
		}
	}
	src.role = "source";
	tgt.role = "target";
	src.rel = srcnull ? InvalidOid : source;
	tgt.rel = target;
	{
		Datum		d = SPI_getbinval(tup, desc, 5, &isnull);

		src.names = text_elems(d, isnull, &src.n);
		d = SPI_getbinval(tup, desc, 6, &isnull);
		tgt.names = text_elems(d, isnull, &tgt.n);
	}
	key_att = DatumGetInt16(SPI_getbinval(tup, desc, 7, &isnull));
	target_key_att = DatumGetInt16(SPI_getbinval(tup, desc, 8, &isnull));
	satts = SyncAttnums(SPI_getbinval(tup, desc, 9, &isnull), &ncols);
	tatts = SyncAttnums(SPI_getbinval(tup, desc, 10, &isnull), &n);
	qcols = SyncAttnums(SPI_getbinval(tup, desc, 12, &isnull), &nq);

	/* the key column of an outbox sync is its target's */
	key_att = remap(outbox ? &tgt : &src, key_att);
	target_key_att = remap(&tgt, target_key_att);
	for (int i = 0; i < ncols; i++)
	{
		satts[i] = remap(&src, satts[i]);
		tatts[i] = remap(&tgt, tatts[i]);
	}
	/* old attnum of the target -> new one, for the queued entries' cols */
	n = 0;
	for (int i = 0; i < nq; i++)
		n = Max(n, qcols[i]);
	qmap = palloc0(sizeof(AttrNumber) * Max(n, 1));
	for (int i = 0; i < nq; i++)
		qmap[qcols[i] - 1] = remap(&tgt, qcols[i]);

	values[0] = arg;
	values[1] = Int16GetDatum(key_att);
	values[2] = Int16GetDatum(target_key_att);
	values[3] = SyncAttnumArray(satts, ncols);
	values[4] = SyncAttnumArray(tatts, ncols);
	if (SPI_execute_with_args("UPDATE pgpoly.syncs SET key_attnum = $2, target_key_attnum = $3, "
							  "source_attnums = $4, target_attnums = $5, "
							  "source_ref = pgpoly._sync_ref(source::oid), "
							  "target_ref = pgpoly._sync_ref(target::oid), "
							  "source_columns = pgpoly._sync_columns(source), "
							  "target_columns = pgpoly._sync_columns(target) "
							  "WHERE sync_id = $1", 5, types, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "updating pgpoly sync %d failed", id);
	if (nq > 0)
	{
		values[1] = SyncAttnumArray(qmap, n);
		types[1] = INT2ARRAYOID;
		if (SPI_execute_with_args("UPDATE pgpoly.sync_queue q SET cols = "
								  "ARRAY(SELECT ($2)[u.c] FROM unnest(q.cols) WITH ORDINALITY u(c, o) "
								  "      ORDER BY u.o) "
								  "WHERE q.sync_id = $1 AND q.cols IS NOT NULL",
								  2, types, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "updating the queued changes of pgpoly sync %d failed", id);
	}
	SetUserIdAndSecContext(save_user, save_sec);
	AtEOXact_GUC(true, level);
	ereport(LOG,
			(errmsg("pgpoly sync \"%s\": its columns were numbered again by name, for a restored or re-created table",
					src.sync)));
	if (s)
	{
		MemoryContext old = MemoryContextSwitchTo(GetMemoryChunkContext(s));

		s->key_att = key_att;
		s->target_key_att = target_key_att;
		s->ncols = ncols;
		s->satts = palloc(sizeof(AttrNumber) * Max(ncols, 1));
		s->tatts = palloc(sizeof(AttrNumber) * Max(ncols, 1));
		memcpy(s->satts, satts, sizeof(AttrNumber) * ncols);
		memcpy(s->tatts, tatts, sizeof(AttrNumber) * ncols);
		s->moved = false;
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
}

PG_FUNCTION_INFO_V1(pgpoly_sync_home);

/*
 * pgpoly._sync_home(): this database, in any cluster (system identifier,
 * database oid), as pgpoly.syncs.home records a sync's.
 */
Datum
pgpoly_sync_home(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(psprintf(UINT64_FORMAT "/%u", GetSystemIdentifier(),
											  MyDatabaseId)));
}

PG_FUNCTION_INFO_V1(pgpoly_sync_ref);

/*
 * pgpoly._sync_ref(rel): which relation rel is, in any cluster and
 * database: a restored table (another cluster, or another database of
 * this one) or one created again has another ref, even where its oid is
 * the same number.
 */
Datum
pgpoly_sync_ref(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(psprintf(UINT64_FORMAT "/%u/%u", GetSystemIdentifier(),
											  MyDatabaseId, PG_GETARG_OID(0))));
}

/*
 * An outbox sync is named after its table with the table's schema
 * (SyncQualifiedName): after the table, or its schema, was renamed or the
 * table moved to another schema, the sync and its dead letters take the
 * table's name now, unless another sync has that name.  One statement, so
 * the worker (SPI connected, as superuser) runs it too.
 */
const char *const SyncFollowNamesSQL =
	"WITH r AS (UPDATE pgpoly.syncs s SET name = n.name "
	"  FROM (SELECT o.sync_id, pg_catalog.quote_ident(ns.nspname) OPERATOR(pg_catalog.||) '.' "
	"               OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname) AS name "
	"        FROM pgpoly.syncs o JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) o.target "
	"        JOIN pg_catalog.pg_namespace ns ON ns.oid OPERATOR(pg_catalog.=) c.relnamespace "
	"        WHERE o.kind OPERATOR(pg_catalog.=) 'outbox') n "
	"  WHERE n.sync_id OPERATOR(pg_catalog.=) s.sync_id AND s.name OPERATOR(pg_catalog.<>) n.name "
	"  AND NOT EXISTS (SELECT FROM pgpoly.syncs t WHERE t.name OPERATOR(pg_catalog.=) n.name) "
	"  RETURNING s.sync_id, s.name) "
	"UPDATE pgpoly.sync_dead_letters d SET name = r.name FROM r "
	"WHERE d.sync_id OPERATOR(pg_catalog.=) r.sync_id";

/*
 * An outbox sync is its table's owner's (outbox.c): after ALTER ... OWNER
 * TO, the sync and its dead letters are the new owner's (who alone sees
 * them, and whose user mapping the worker uses).  One statement, for the
 * worker too.
 */
const char *const SyncFollowOwnersSQL =
	"WITH r AS (UPDATE pgpoly.syncs s SET owner = c.relowner "
	"  FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) s.target "
	"  AND s.kind OPERATOR(pg_catalog.=) 'outbox' "
	"  AND s.owner::pg_catalog.oid OPERATOR(pg_catalog.<>) c.relowner "
	"  RETURNING s.sync_id, s.owner) "
	"UPDATE pgpoly.sync_dead_letters d SET owner = r.owner FROM r "
	"WHERE d.sync_id OPERATOR(pg_catalog.=) r.sync_id";

/* A table or schema was renamed, or a table moved (see SyncFollowNamesSQL). */
void
SyncNoteRelationRenamed(void)
{
	Oid			nsp;
	int			level;

	if (creating_extension ||
		!OidIsValid(nsp = get_namespace_oid("pgpoly", true)) ||
		!OidIsValid(get_relname_relid("syncs", nsp)))
		return;
	spi_connect();
	level = SyncSafeSearchPath();
	admin_execute(SyncFollowNamesSQL, 0, NULL, NULL, SPI_OK_UPDATE);
	AtEOXact_GUC(true, level);
	SPI_finish();
}

/*
 * REASSIGN OWNED and DROP OWNED treat the syncs of this database as the
 * roles' objects: REASSIGN OWNED makes the new role their owner (and of
 * their dead letters), DROP OWNED drops them as drop_sync does (the caller
 * has the privileges of the roles, as both statements require).  Run
 * after the statement, in its transaction.
 */
void
SyncNoteOwnedChanged(Node *stmt)
{
	List	   *roles = IsA(stmt, ReassignOwnedStmt) ? ((ReassignOwnedStmt *) stmt)->roles :
		((DropOwnedStmt *) stmt)->roles;
	Datum	   *oids = palloc(sizeof(Datum) * Max(list_length(roles), 1));
	Oid			types[2] = {OIDARRAYOID, OIDOID};
	Datum		values[2];
	Oid			nsp;
	ListCell   *lc;
	int			n = 0;
	int			level;

	if (!OidIsValid(nsp = get_namespace_oid("pgpoly", true)) ||
		!OidIsValid(get_relname_relid("syncs", nsp)))
		return;
	foreach(lc, roles)
		oids[n++] = ObjectIdGetDatum(get_rolespec_oid(lfirst(lc), false));
	values[0] = PointerGetDatum(construct_array(oids, n, OIDOID, sizeof(Oid), true,
												TYPALIGN_INT));
	spi_connect();
	level = SyncSafeSearchPath();
	if (IsA(stmt, ReassignOwnedStmt))
	{
		values[1] = ObjectIdGetDatum(get_rolespec_oid(((ReassignOwnedStmt *) stmt)->newrole,
													  false));
		admin_execute("WITH s AS (UPDATE pgpoly.syncs SET owner = $2 "
					  "           WHERE owner::pg_catalog.oid = ANY ($1) RETURNING sync_id) "
					  "UPDATE pgpoly.sync_dead_letters d SET owner = $2 FROM s "
					  "WHERE d.sync_id = s.sync_id",
					  2, types, values, SPI_OK_UPDATE);
	}
	else
	{
		List	   *names = NIL;

		admin_execute("SELECT name FROM pgpoly.syncs WHERE owner::pg_catalog.oid = ANY ($1) "
					  "ORDER BY sync_id", 1, types, values, SPI_OK_SELECT);
		for (uint64 i = 0; i < SPI_processed; i++)
			names = lappend(names, SPI_getvalue(SPI_tuptable->vals[i],
												SPI_tuptable->tupdesc, 1));
		foreach(lc, names)
		{
			Oid			type = TEXTOID;
			Datum		name = CStringGetTextDatum(lfirst(lc));

			if (SPI_execute_with_args("SELECT pgpoly.drop_sync($1)", 1, &type, &name,
									  NULL, false, 0) != SPI_OK_SELECT)
				elog(ERROR, "dropping pgpoly sync \"%s\" failed", (char *) lfirst(lc));
		}
	}
	AtEOXact_GUC(true, level);
	SPI_finish();
}

/*
 * The columns of relid were renamed, added or dropped (ALTER TABLE): the
 * column names the syncs recorded for it are refreshed, so that a dump
 * taken now carries its names now (see SyncResolveColumns); an outbox
 * sync takes its table's owner (SyncFollowOwnersSQL).  Only rows whose
 * names differ are updated: an ALTER that changes no column (OPTIONS, a
 * default) does not wait for a sync's batch, which holds its row.  Nothing
 * while the extension is being created or is absent.
 */
void
SyncNoteColumnsChanged(Oid relid)
{
	Oid			nsp;
	Oid			type = OIDOID;
	Datum		arg = ObjectIdGetDatum(relid);
	int			level;

	if (creating_extension || !OidIsValid(relid) ||
		!OidIsValid(nsp = get_namespace_oid("pgpoly", true)) ||
		!OidIsValid(get_relname_relid("syncs", nsp)))
		return;
	spi_connect();
	level = SyncSafeSearchPath();
	admin_execute("WITH n AS (SELECT pgpoly._sync_ref($1) AS ref, "
				  "pgpoly._sync_columns($1) AS cols) "
				  "UPDATE pgpoly.syncs SET "
				  "source_columns = CASE WHEN source_ref = n.ref "
				  "THEN n.cols ELSE source_columns END, "
				  "target_columns = CASE WHEN target_ref = n.ref "
				  "THEN n.cols ELSE target_columns END "
				  "FROM n WHERE (source::oid = $1 AND source_ref = n.ref "
				  "AND source_columns IS DISTINCT FROM n.cols) "
				  "OR (target::oid = $1 AND target_ref = n.ref "
				  "AND target_columns IS DISTINCT FROM n.cols)",
				  1, &type, &arg, SPI_OK_UPDATE);
	/* ALTER ... OWNER TO of an outbox table */
	admin_execute(SyncFollowOwnersSQL, 0, NULL, NULL, SPI_OK_UPDATE);
	AtEOXact_GUC(true, level);
	SPI_finish();
}
