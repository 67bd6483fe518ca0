/*-------------------------------------------------------------------------
 *
 * features.c
 *		  The feature store's C side: the serving rule, privilege checks,
 *		  and the serving fast path of pgpoly.get_online_features().
 *
 * The serving rule — which status an entity gets (online, offline, expired,
 * missing), which value is served, what is written back — is defined here
 * once (fv_serve): the fast path calls it directly and the PL/pgSQL side
 * (extension/30_features.sql) through pgpoly._fv_serve() and
 * pgpoly._fv_is_fresh().  The ttl arrives as "fresh", the oldest event time
 * still fresh, computed by pgpoly._fv_fresh_since() from the absolute ttl.
 *
 * Online serving is the feature store's latency-critical call: many
 * entities, one pipelined Redis round, an answer in well under a
 * millisecond.  The general implementation is pgpoly._get_online_features()
 * in PL/pgSQL, whose planning and parsing of several statements per call
 * costs several times the Redis round itself.  This file serves every call
 * for a view with a text key by itself: it reads the serving table through
 * the same Redis scan code as the FDW (so buffered writes of the
 * transaction are seen), builds each entity's features like the SQL path
 * does, and when the rule does not serve every entity from online, probes
 * the offline table for the others: straight through its (entity,
 * event_time DESC, created_at DESC) index where it can (probe_direct: the
 * rows that statement's SELECT reads), otherwise — and whenever a value goes
 * back online — with the very statement the PL/pgSQL path runs
 * (pgpoly._fv_offline_sql), prepared once per view and kept.  Anything it
 * cannot serve — an unknown or unusable view or feature, non-text keys,
 * feature types it does not convert, a NULL entity — goes to the PL/pgSQL
 * implementation unchanged, so error messages live in one place.
 *
 * materialize() finds each entity's newest offline row with a walk of the
 * offline index done here (pgpoly_fv_newest_rows), which reads the heap
 * only for those rows and returns them.
 *
 * Invariants:
 *	- Privileges are those of the calling user on the user's own tables (the
 *	  online and offline table), checked as the equivalent statement would
 *	  (fv_require_privilege): the fast path reads Redis without a statement,
 *	  so it checks SELECT on the online, offline and serving tables first;
 *	  the probe statement is checked by the executor like any other.
 *	- Nothing from pgpoly's tables is trusted: a view's definition is read
 *	  on every call, and what the catalog says about it (fv_problem: its
 *	  tables exist and fit, the types and quoted names the statements spell)
 *	  is derived from the syscache; the derived facts and prepared
 *	  statements are cached per view only while no relcache invalidation of
 *	  its tables and no type or schema invalidation arrived since (see
 *	  "Feature views cached per backend").
 *
 * src/features.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/nbtree.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/index.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "parser/parse_coerce.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/datetime.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/typcache.h"

#include "../fdw/redis.h"
#include "sync.h"


/* ----------------------------------------------------------------
 *		The serving rule
 * ----------------------------------------------------------------
 */
typedef enum FvSource
{
	FV_ONLINE,
	FV_OFFLINE,
	FV_EXPIRED,
	FV_MISSING
} FvSource;

static const char *const fv_source_names[] = {"online", "offline", "expired", "missing"};

/* What one store holds for an entity: whether found, and its event time. */
typedef struct FvValue
{
	bool		found;
	bool		et_null;		/* found, but no event time */
	TimestampTz et;
} FvValue;

/*
 * Whether a value with event time et is fresh: there is no ttl (fresh is
 * NULL), or et is not older than *fresh.  An unknown event time is stale.
 */
static bool
fv_is_fresh(const TimestampTz *fresh, bool et_null, TimestampTz et)
{
	return fresh == NULL || (!et_null && et >= *fresh);
}

/*
 * The rule for one entity.  A fresh online value is served as is (the
 * offline table need not be asked).  Otherwise the newer of the two values
 * is served (ties and unknown offline event times: online); its status is
 * "offline" when it comes from the offline table and is fresh, "expired"
 * when it is stale, "missing" when neither store has the entity.  Exactly
 * the "offline" values are written back online.  Sets *from_offline.
 */
static FvSource
fv_serve(const TimestampTz *fresh, const FvValue *on, const FvValue *off,
		 bool *from_offline)
{
	const FvValue *chosen;

	*from_offline = false;
	if (on->found && fv_is_fresh(fresh, on->et_null, on->et))
		return FV_ONLINE;
	if (off->found &&
		(!on->found || (!off->et_null && (on->et_null || off->et > on->et))))
		*from_offline = true;
	else if (!on->found)
		return FV_MISSING;
	chosen = *from_offline ? off : on;
	if (!fv_is_fresh(fresh, chosen->et_null, chosen->et))
		return FV_EXPIRED;
	return *from_offline ? FV_OFFLINE : FV_ONLINE;
}

/* The value described by arguments found_arg and found_arg + 1. */
static FvValue
fv_value_arg(FunctionCallInfo fcinfo, int found_arg)
{
	FvValue		v;

	v.found = !PG_ARGISNULL(found_arg) && PG_GETARG_BOOL(found_arg);
	v.et_null = PG_ARGISNULL(found_arg + 1);
	v.et = v.et_null ? 0 : PG_GETARG_TIMESTAMPTZ(found_arg + 1);
	return v;
}

PG_FUNCTION_INFO_V1(pgpoly_fv_is_fresh);

/* pgpoly._fv_is_fresh(fresh, event_time): fv_is_fresh for SQL. */
Datum
pgpoly_fv_is_fresh(PG_FUNCTION_ARGS)
{
	TimestampTz fresh = PG_ARGISNULL(0) ? 0 : PG_GETARG_TIMESTAMPTZ(0);

	PG_RETURN_BOOL(fv_is_fresh(PG_ARGISNULL(0) ? NULL : &fresh, PG_ARGISNULL(1),
							   PG_ARGISNULL(1) ? 0 : PG_GETARG_TIMESTAMPTZ(1)));
}

PG_FUNCTION_INFO_V1(pgpoly_fv_serve);

/*
 * pgpoly._fv_serve(fresh, online_found, online_event_time, offline_found,
 * offline_event_time, OUT source, OUT from_offline): fv_serve for SQL.
 */
Datum
pgpoly_fv_serve(PG_FUNCTION_ARGS)
{
	TimestampTz fresh = PG_ARGISNULL(0) ? 0 : PG_GETARG_TIMESTAMPTZ(0);
	FvValue		on = fv_value_arg(fcinfo, 1);
	FvValue		off = fv_value_arg(fcinfo, 3);
	TupleDesc	desc = fcinfo->flinfo->fn_extra;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	bool		from_offline;
	FvSource	src;

	/* the blessed row type, once per call site: it is called per entity */
	if (desc == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);

		if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "return type must be a row type");
		desc = BlessTupleDesc(CreateTupleDescCopy(desc));
		fcinfo->flinfo->fn_extra = desc;
		MemoryContextSwitchTo(old);
	}
	src = fv_serve(PG_ARGISNULL(0) ? NULL : &fresh, &on, &off, &from_offline);
	values[0] = CStringGetTextDatum(fv_source_names[src]);
	values[1] = BoolGetDatum(from_offline);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/* ----------------------------------------------------------------
 *		Privileges
 * ----------------------------------------------------------------
 */

/*
 * Whether the current user holds privilege mode (one bit) on relid, on the
 * table or on every column, as a statement using all columns needs.
 */
static bool
fv_has_privilege(Oid relid, AclMode mode)
{
	Oid			user = GetUserId();

	return pg_class_aclcheck(relid, user, mode) == ACLCHECK_OK ||
		pg_attribute_aclcheck_all(relid, user, mode, ACLMASK_ALL) == ACLCHECK_OK;
}

/* ERROR "permission denied for [foreign] table rel" (42501) unless held. */
static void
fv_require_privilege(Oid relid, AclMode mode)
{
	if (!fv_has_privilege(relid, mode))
		aclcheck_error(ACLCHECK_NO_PRIV,
					   get_relkind_objtype(get_rel_relkind(relid)),
					   get_rel_name(relid));
}

/* The AclMode bit of a privilege name (SELECT, INSERT, UPDATE, DELETE). */
static AclMode
fv_privilege_mode(const char *name, size_t len)
{
	static const struct
	{
		const char *name;
		AclMode		mode;
	}			privs[] = {
		{"SELECT", ACL_SELECT}, {"INSERT", ACL_INSERT},
		{"UPDATE", ACL_UPDATE}, {"DELETE", ACL_DELETE}
	};

	for (int i = 0; i < lengthof(privs); i++)
		if (strlen(privs[i].name) == len && pg_strncasecmp(privs[i].name, name, len) == 0)
			return privs[i].mode;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unrecognized privilege type: \"%.*s\"", (int) len, name)));
	return ACL_NO_RIGHTS;		/* keep the compiler quiet */
}

PG_FUNCTION_INFO_V1(pgpoly_fv_require_privileges);

/*
 * pgpoly._fv_require_privileges(rel, 'SELECT, INSERT, ...'): 42501 unless
 * the current user holds each of them on rel (see fv_require_privilege).
 */
Datum
pgpoly_fv_require_privileges(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *p = text_to_cstring(PG_GETARG_TEXT_PP(1));

	while (*p)
	{
		size_t		len;

		while (*p == ' ' || *p == ',')
			p++;
		len = strcspn(p, " ,");
		if (len > 0)
			fv_require_privilege(relid, fv_privilege_mode(p, len));
		p += len;
	}
	PG_RETURN_VOID();
}

/*
 * Whether get_online_features may write back online: not in a read-only
 * transaction or on a hot standby, not under a transaction snapshot, and
 * INSERT and UPDATE (an upsert) on the user's online table and on the
 * serving table.  A REPEATABLE READ or SERIALIZABLE snapshot may predate a
 * newer offline row committed since: once Redis has lost that value
 * (evicted, expired, deleted), the older row the snapshot shows would go
 * back online and be served as current after COMMIT.
 */
static bool
fv_may_write(Oid online, Oid serving)
{
	if (XactReadOnly || RecoveryInProgress() || IsolationUsesXactSnapshot())
		return false;
	return fv_has_privilege(online, ACL_INSERT) && fv_has_privilege(online, ACL_UPDATE) &&
		fv_has_privilege(serving, ACL_INSERT) && fv_has_privilege(serving, ACL_UPDATE);
}

PG_FUNCTION_INFO_V1(pgpoly_fv_may_write);

/* pgpoly._fv_may_write(online_table, serving_table): fv_may_write for SQL. */
Datum
pgpoly_fv_may_write(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(fv_may_write(PG_GETARG_OID(0), PG_GETARG_OID(1)));
}

PG_FUNCTION_INFO_V1(pgpoly_fv_lock_entities);

/*
 * pgpoly._fv_lock_entities(online_table, entities, wait): lock the entities
 * (canonical text, the Redis keys without prefix; NULL: all of them) of a
 * view's online table until the end of the transaction, before the caller
 * reads the event times Redis holds and decides newest-wins: a concurrent
 * writer of one entity then reads after this transaction's COMMIT sent its
 * writes (PgpolyLockKeys).  Needs INSERT on the table, as every caller
 * (42501 otherwise).  Returns whether they are held (without wait: false
 * when another transaction holds one).  A writer (wait) in a read-only
 * transaction fails at once with 25006, as its write would, rather than
 * wait for the writers of its entities first.
 */
Datum
pgpoly_fv_lock_entities(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Datum	   *elems;
	bool	   *nulls;
	char	  **keys;
	size_t	   *lens;
	int			n = -1;
	int			m = 0;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(2))
		PG_RETURN_NULL();
	fv_require_privilege(relid, ACL_INSERT);
	if (PG_GETARG_BOOL(2) && XactReadOnly)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot write the online table \"%s\" of a feature view in a read-only transaction",
						get_rel_name(relid))));
	if (PG_ARGISNULL(1))
		PG_RETURN_BOOL(PgpolyLockKeys(relid, NULL, NULL, -1, PG_GETARG_BOOL(2)));
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	keys = palloc(sizeof(char *) * Max(n, 1));
	lens = palloc(sizeof(size_t) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			continue;			/* no entity, no key */
		lens[m] = VARSIZE_ANY_EXHDR(DatumGetPointer(elems[i]));
		keys[m] = (char *) PgpolyServerToStore(VARDATA_ANY(DatumGetPointer(elems[i])),
											   &lens[m], false);
		m++;
	}
	PG_RETURN_BOOL(PgpolyLockKeys(relid, keys, lens, m, PG_GETARG_BOOL(2)));
}

/* ----------------------------------------------------------------
 *		A view's definition against the catalog
 * ----------------------------------------------------------------
 */

/* relid as a schema-qualified, quoted name, or NULL if it does not exist. */
static char *
fv_rel_text(Oid relid)
{
	char	   *name = get_rel_name(relid);

	if (name == NULL)
		return NULL;
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), name);
}

/* format_type() of column col of relid, or NULL if it has no such column. */
static char *
fv_column_type(Oid relid, const char *col)
{
	AttrNumber	att = get_attnum(relid, col);
	Oid			typid;
	int32		typmod;
	Oid			collid;

	if (att <= 0)				/* missing (InvalidAttrNumber) or a system column */
		return NULL;
	get_atttypetypmodcoll(relid, att, &typid, &typmod, &collid);
	return format_type_with_typemod(typid, typmod);
}

/* Append s to buf with each '%' doubled: a literal part of a format(). */
static void
append_format_literal(StringInfo buf, const char *s)
{
	for (; *s; s++)
	{
		if (*s == '%')
			appendStringInfoChar(buf, '%');
		appendStringInfoChar(buf, *s);
	}
}

/*
 * The part of matching an offline row to an entity that the offline index
 * answers (pgpoly._fv_same_entity adds the canonical text recheck that
 * makes it the entity's identity), as a format() template:
 * %1$s the row's entity column, %2$s the entity (an SQL expression), true
 * when they are equal as the column's type says it — its
 * default equality operator, the column's collation, the entity cast to
 * the type without typmod (a varchar(n) or numeric(p,s) cast would cut or
 * round it into another entity) — a domain's base type, whose typmod would
 * cut as well and whose CHECK would fail on an entity no row can be — as a
 * query of the user's comparing the column to a literal.  Everything qualified: the statements that use it
 * run under a pinned search_path (where citext's operators are not
 * visible, and = would compare the text) or the caller's (a spine).  An
 * entity is the canonical text of a value of the key's type key_typid:
 * where the column's type is neither that type nor a string type, it may
 * not read it ('abc' of a text key, an int column): such an entity is no
 * value of the column, found in no row, so it is read through
 * pgpoly._fv_entity_in, NULL (matching nothing) for one the type does not
 * read, rather than failing the cast.  NULL if the type has no equality
 * operator.
 */
static char *
fv_entity_match(Oid relid, AttrNumber att, Oid key_typid)
{
	Oid			typid;
	int32		typmod;
	Oid			collid;
	StringInfoData buf;

	get_atttypetypmodcoll(relid, att, &typid, &typmod, &collid);
	/* a domain's base type: its typmod and CHECK are no part of equality */
	typid = getBaseType(typid);
	if (!OidIsValid(lookup_type_cache(typid, TYPECACHE_EQ_OPR)->eq_opr))
		return NULL;
	initStringInfo(&buf);
	appendStringInfoString(&buf, "%1$s ");
	append_format_literal(&buf, SyncEqualityOperator(typid));
	if (typid == getBaseType(key_typid) || TypeCategory(typid) == TYPCATEGORY_STRING)
		appendStringInfoString(&buf, " CAST(%2$s AS ");
	else
		appendStringInfo(&buf, " CAST(pgpoly._fv_entity_in(%%2$s, %u) AS ", typid);
	/* typmod -1 "given": bpchar, not character (that is character(1)) */
	append_format_literal(&buf, format_type_extended(typid, -1, FORMAT_TYPE_TYPEMOD_GIVEN |
													 FORMAT_TYPE_FORCE_QUALIFY));
	appendStringInfoChar(&buf, ')');
	if (OidIsValid(collid))
	{
		HeapTuple	tup = SearchSysCache1(COLLOID, ObjectIdGetDatum(collid));
		Form_pg_collation coll;

		if (!HeapTupleIsValid(tup))
			elog(ERROR, "cache lookup failed for collation %u", collid);
		coll = (Form_pg_collation) GETSTRUCT(tup);
		appendStringInfoString(&buf, " COLLATE ");
		append_format_literal(&buf,
							  quote_qualified_identifier(get_namespace_name(coll->collnamespace),
														 NameStr(coll->collname)));
		ReleaseSysCache(tup);
	}
	return buf.data;
}

/*
 * Run fn(arg) in a subtransaction: true if it returned, false if it raised
 * an error of SQLSTATE class category (rolled back, forgotten); any other
 * error is raised again once the subtransaction is rolled back.
 */
static bool
run_catching(void (*fn) (void *), void *arg, int category)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *e;

		MemoryContextSwitchTo(cxt);
		e = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (ERRCODE_TO_CATEGORY(e->sqlerrcode) != category)
			ReThrowError(e);
		FreeErrorData(e);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return ok;
}

/* Arguments of entity_in_fn. */
typedef struct EntityInArgs
{
	char	   *entity;
	Oid			typid;
} EntityInArgs;

/* Read the entity with its type's input function (for run_catching). */
static void
entity_in_fn(void *arg)
{
	EntityInArgs *a = arg;
	Oid			input;
	Oid			ioparam;

	getTypeInputInfo(a->typid, &input, &ioparam);
	(void) OidInputFunctionCall(input, a->entity, ioparam, -1);
}

PG_FUNCTION_INFO_V1(pgpoly_fv_entity_in);

/*
 * pgpoly._fv_entity_in(entity, typid): entity if type typid (an offline
 * entity column's base type, no typmod) reads it, else NULL: the entities
 * no row of the column can be (fv_entity_match).  Only a data exception
 * (class 22: 'abc' or 99999999999 of an int) means that; any other error
 * is raised.  A subtransaction per call: used only where the column's type
 * is not the key's.
 */
Datum
pgpoly_fv_entity_in(PG_FUNCTION_ARGS)
{
	EntityInArgs a = {text_to_cstring(PG_GETARG_TEXT_PP(0)), PG_GETARG_OID(1)};

	if (!SearchSysCacheExists1(TYPEOID, ObjectIdGetDatum(a.typid)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("type with OID %u does not exist", a.typid)));
	if (!run_catching(entity_in_fn, &a, ERRCODE_DATA_EXCEPTION))
		PG_RETURN_NULL();
	PG_RETURN_DATUM(PG_GETARG_DATUM(0));
}

/*
 * Why a view's stored names do not fit its tables, or NULL; fills types[]
 * (nfeat entries) with the feature columns' types as it checks them, and
 * *entity_match with fv_entity_match() of the offline entity column.
 */
static char *
fv_problem(const char *view, Oid online, Oid offline, Oid serving,
		   const char *key_column, const char *entity_column,
		   Datum *features, int nfeat, char **key_type, char **entity_type,
		   char **entity_match, Datum *types)
{
	char	   *serving_ns;

	if (get_rel_name(online) == NULL)
		return psprintf("its online table (OID %u) no longer exists", online);
	if (get_rel_name(offline) == NULL)
		return "its offline table no longer exists";
	if (get_rel_name(serving) == NULL)
		return "its serving table no longer exists";
	serving_ns = get_namespace_name(get_rel_namespace(serving));
	if (serving != online &&
		(strcmp(serving_ns, "pgpoly") != 0 ||
		 strcmp(get_rel_name(serving), psprintf("%s_serving", view)) != 0))
		return psprintf("its serving table %s is neither its online table nor pgpoly.%s_serving",
						fv_rel_text(serving), view);
	if ((*key_type = fv_column_type(serving, key_column)) == NULL)
		return psprintf("its serving table has no key column \"%s\"", key_column);
	if ((*entity_type = fv_column_type(offline, entity_column)) == NULL)
		return psprintf("its offline table has no entity column \"%s\"", entity_column);
	if ((*entity_match = fv_entity_match(offline, get_attnum(offline, entity_column),
										 get_atttype(serving, get_attnum(serving, key_column)))) == NULL)
		return psprintf("the type %s of its offline entity column has no equality operator",
						*entity_type);
	for (int i = 0; i < nfeat; i++)
	{
		char	   *t = fv_column_type(serving, TextDatumGetCString(features[i]));

		if (t == NULL)
			return "a feature is not a column of its serving table";
		types[i] = CStringGetTextDatum(t);
	}
	return NULL;
}

PG_FUNCTION_INFO_V1(pgpoly_fv_describe);

/*
 * pgpoly._fv_describe(view, online_table, offline_table, serving_table,
 * key_column, entity_column, features): the catalog's types, the offline
 * entity match (fv_entity_match) and quoted names for a view's stored
 * names, and the problem if they do not fit.
 * Any NULL argument is itself the problem.
 */
Datum
pgpoly_fv_describe(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[7] = {0};
	bool		nulls[7] = {true, true, true, true, true, true, true};
	Datum	   *features = NULL;
	Datum	   *types = NULL;
	char	   *key_type = NULL;
	char	   *entity_type = NULL;
	char	   *entity_match = NULL;
	char	   *problem = "its definition is incomplete";
	int			nfeat = 0;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	for (int i = 0; i < PG_NARGS(); i++)
		if (PG_ARGISNULL(i))
			goto done;
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(6), TEXTOID, -1, false, TYPALIGN_INT,
					  &features, NULL, &nfeat);
	types = palloc(sizeof(Datum) * Max(nfeat, 1));
	problem = fv_problem(text_to_cstring(PG_GETARG_TEXT_PP(0)), PG_GETARG_OID(1),
						 PG_GETARG_OID(2), PG_GETARG_OID(3),
						 text_to_cstring(PG_GETARG_TEXT_PP(4)),
						 text_to_cstring(PG_GETARG_TEXT_PP(5)),
						 features, nfeat, &key_type, &entity_type, &entity_match, types);
	if (problem == NULL)
	{
		values[0] = CStringGetTextDatum(key_type);
		values[1] = CStringGetTextDatum(entity_type);
		values[2] = CStringGetTextDatum(entity_match);
		values[3] = PointerGetDatum(construct_array(types, nfeat, TEXTOID, -1, false,
													TYPALIGN_INT));
		values[4] = CStringGetTextDatum(fv_rel_text(PG_GETARG_OID(2)));
		values[5] = CStringGetTextDatum(fv_rel_text(PG_GETARG_OID(3)));
		for (int i = 0; i < 6; i++)
			nulls[i] = false;
	}
done:
	if (problem != NULL)
	{
		values[6] = CStringGetTextDatum(problem);
		nulls[6] = false;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
}

PG_FUNCTION_INFO_V1(pgpoly_fv_rel);

/* pgpoly._fv_rel(rel): rel schema-qualified and quoted (NULL if gone). */
Datum
pgpoly_fv_rel(PG_FUNCTION_ARGS)
{
	char	   *name = fv_rel_text(PG_GETARG_OID(0));

	if (name == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(name));
}

PG_FUNCTION_INFO_V1(pgpoly_fv_eq_operator);

/*
 * pgpoly._fv_eq_operator(typ regtype): the default equality operator of
 * typ's base type as OPERATOR(schema.name), the operator a plain = between
 * two values of typ finds with nothing shadowing it.  For SQL that runs
 * under the caller's search_path (ingest_features' key equality), where a
 * plain = could find another.
 */
Datum
pgpoly_fv_eq_operator(PG_FUNCTION_ARGS)
{
	Oid			typid = PG_GETARG_OID(0);

	if (!SearchSysCacheExists1(TYPEOID, ObjectIdGetDatum(typid)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("type with OID %u does not exist", typid)));
	PG_RETURN_TEXT_P(cstring_to_text(SyncEqualityOperator(getBaseType(typid))));
}

PG_FUNCTION_INFO_V1(pgpoly_fv_store_text);

/*
 * pgpoly._fv_store_text(value anyelement): value in the fixed text form the
 * Redis FDW stores keys in (convert.c: ISO dates, UTC, IntervalStyle
 * postgres, shortest exact floats, hex bytea), the canonical text of an
 * entity of a view whose key is not text.  So the offline history names an
 * entity by the same text whatever the TimeZone, IntervalStyle or
 * bytea_output of the session that wrote it or reads it.  The conversion
 * set-up is kept in fn_extra for the calls of one expression.
 */
Datum
pgpoly_fv_store_text(PG_FUNCTION_ARGS)
{
	Oid			typid = get_fn_expr_argtype(fcinfo->flinfo, 0);
	PgpolyConv *conv = fcinfo->flinfo->fn_extra;
	size_t		len;
	char	   *s;

	if (!OidIsValid(typid))
		elog(ERROR, "could not determine the type of the _fv_store_text argument");
	if (conv == NULL || conv->typid != typid)
	{
		MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);

		conv = palloc(sizeof(PgpolyConv));
		PgpolyConvInit(conv, typid, -1, NULL);
		MemoryContextSwitchTo(old);
		fcinfo->flinfo->fn_extra = conv;
	}
	s = PgpolyDatumToText(conv, PG_GETARG_DATUM(0), &len);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(s, len));
}

/* ----------------------------------------------------------------
 *		The newest row of each entity (materialize)
 *
 * materialize() writes, per entity, the offline row with the latest
 * (event_time, created_at) in a time window: in SQL a DISTINCT ON over the
 * (entity, event_time DESC, created_at DESC) index, which fetches every one
 * of the window's rows from the heap only to keep the first of each entity
 * (a 1M-row history of 100k entities: 1M random heap fetches, ~70% of the
 * whole call).  _fv_newest_rows() walks the same index in the same order
 * but reads the entity and event time from the index tuples, and fetches
 * from the heap only each entity's first entry in the window (and the
 * entries before it that the snapshot cannot see): the same rows, each
 * entity's first visible one in index order, for a tenth of the heap
 * fetches.  It returns those rows as it fetched them (formerly their TIDs,
 * which a TID scan then sorted and fetched a second time).  It is used only
 * where it gives
 * what the DISTINCT ON gives and sees no more than the caller may: a plain
 * table without inheritance children (a scan of it reads theirs, its index
 * does not), event_time a timestamptz, a btree on exactly that order with
 * the default operator classes
 * and the columns' collations, the caller's SELECT privilege, no row-level
 * security; otherwise _fv_newest_rows() runs the DISTINCT ON itself.
 * ----------------------------------------------------------------
 */

/* The access method of relation relid (InvalidOid if it is gone). */
static Oid
rel_am(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			am;

	if (!HeapTupleIsValid(tup))
		return InvalidOid;
	am = ((Form_pg_class) GETSTRUCT(tup))->relam;
	ReleaseSysCache(tup);
	return am;
}

/*
 * Whether key k of index row ix is plain column att, ordered with options,
 * by the column's default operator class and its own collation (as ORDER
 * BY the column).
 */
static bool
newest_key_is(Form_pg_index ix, int2vector *options, oidvector *classes,
			  oidvector *colls, int k, Relation heap, AttrNumber att, int16 opts)
{
	Form_pg_attribute a = TupleDescAttr(RelationGetDescr(heap), att - 1);

	return ix->indkey.values[k] == att && options->values[k] == opts &&
		classes->values[k] == GetDefaultOpClass(a->atttypid, BTREE_AM_OID) &&
		colls->values[k] == a->attcollation;
}

/*
 * The index of heap (a plain table) that fv_newest_tids() can walk for
 * entity column entity_att, or InvalidOid: a valid, non-partial btree whose
 * first keys are the plain columns entity_att, event_time DESC and
 * created_at DESC (NULLS FIRST, as ORDER BY ... DESC), with the default
 * operator classes and the columns' own collations, on a table
 * without inheritance children whose event_time is a timestamptz.  An index
 * whose rows may not hold the keys of the row versions this transaction's
 * snapshots see (indcheckxmin: built over broken HOT chains, after this
 * transaction's xmin) is skipped, as by the planner, and *transient set.
 */
static Oid
newest_index(Relation heap, AttrNumber entity_att, bool *transient)
{
	AttrNumber	et_att = get_attnum(RelationGetRelid(heap), "event_time");
	AttrNumber	ca_att = get_attnum(RelationGetRelid(heap), "created_at");
	int16		desc = INDOPTION_DESC | INDOPTION_NULLS_FIRST;
	Oid			found = InvalidOid;
	ListCell   *lc;

	*transient = false;

	/*
	 * Not a table with inheritance children (whose rows a scan of the table
	 * reads, and its index does not hold), nor an event_time of another type
	 * (the walk reads it as timestamptz).
	 */
	if (heap->rd_rel->relkind != RELKIND_RELATION || heap->rd_rel->relhassubclass ||
		et_att <= 0 || ca_att <= 0 ||
		TupleDescAttr(RelationGetDescr(heap), et_att - 1)->atttypid != TIMESTAMPTZOID)
		return InvalidOid;
	foreach(lc, RelationGetIndexList(heap))
	{
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index ix;
		bool		isnull;
		int2vector *options;
		oidvector  *classes;
		oidvector  *colls;

		if (!HeapTupleIsValid(tup))
			continue;
		ix = (Form_pg_index) GETSTRUCT(tup);
		options = (int2vector *) DatumGetPointer(SysCacheGetAttr(INDEXRELID, tup,
																 Anum_pg_index_indoption, &isnull));
		classes = (oidvector *) DatumGetPointer(SysCacheGetAttr(INDEXRELID, tup,
																Anum_pg_index_indclass, &isnull));
		colls = (oidvector *) DatumGetPointer(SysCacheGetAttr(INDEXRELID, tup,
															  Anum_pg_index_indcollation, &isnull));
		if (ix->indcheckxmin &&
			!TransactionIdPrecedes(HeapTupleHeaderGetXmin(tup->t_data), TransactionXmin))
			*transient = true;
		else if (ix->indisvalid && ix->indisready && ix->indislive && ix->indnkeyatts >= 3 &&
			rel_am(ix->indexrelid) == BTREE_AM_OID &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL) &&
			heap_attisnull(tup, Anum_pg_index_indexprs, NULL) &&
			newest_key_is(ix, options, classes, colls, 0, heap, entity_att, 0) &&
			newest_key_is(ix, options, classes, colls, 1, heap, et_att, desc) &&
			newest_key_is(ix, options, classes, colls, 2, heap, ca_att, desc))
			found = ix->indexrelid;
		ReleaseSysCache(tup);
		if (OidIsValid(found))
			break;
	}
	return found;
}

/*
 * The index fv_newest_tids() walks for offline table relid and its entity
 * column, or InvalidOid when the walk may not be used there (see above): no
 * such index, or row-level security applies to the current user.  The
 * table is locked as a reader.
 */
static Oid
newest_usable(Oid relid, const char *entity_column, Relation *heap)
{
	AttrNumber	att = get_attnum(relid, entity_column);
	bool		transient;

	*heap = NULL;
	if (att <= 0 || check_enable_rls(relid, InvalidOid, true) == RLS_ENABLED)
		return InvalidOid;
	*heap = table_open(relid, AccessShareLock);
	return newest_index(*heap, att, &transient);
}

PG_FUNCTION_INFO_V1(pgpoly_fv_newest_usable);

/*
 * pgpoly._fv_newest_usable(offline_table, entity_column): whether
 * materialize may use _fv_newest_tids() on the table.  42501 unless the
 * caller may read it, checked before the table is locked: the lock lasts
 * until the end of the transaction, and a role without rights could keep
 * the owner's ALTER TABLE waiting.
 */
Datum
pgpoly_fv_newest_usable(PG_FUNCTION_ARGS)
{
	Relation	heap;
	Oid			index;

	fv_require_privilege(PG_GETARG_OID(0), ACL_SELECT);
	index = newest_usable(PG_GETARG_OID(0), text_to_cstring(PG_GETARG_TEXT_PP(1)), &heap);
	if (heap != NULL)
		table_close(heap, NoLock);
	PG_RETURN_BOOL(OidIsValid(index));
}

/*
 * The entity of the row newest_walk() found last: its value, kept in a
 * buffer reused from one entity to the next (no allocation per entity),
 * and, for a plain (not compressed, not external) varlena, where its bytes
 * start and how many there are, worked out once per entity rather than
 * once per index entry.
 */
typedef struct NewestPrev
{
	bool		have;			/* an entity found yet? */
	bool		isnull;
	Datum		value;			/* in buf, or by value */
	const char *data;			/* plain varlena: its bytes, else NULL */
	Size		len;
	char	   *buf;			/* in cxt, cap bytes */
	Size		cap;
	MemoryContext cxt;
} NewestPrev;

/* Whether varlena p is stored plain (its bytes in place). */
static inline bool
plain_varlena(const char *p)
{
	return !VARATT_IS_EXTERNAL(p) && !VARATT_IS_COMPRESSED(p);
}

/* Make value (NULL when isnull; a value of att) the entity found last. */
static void
newest_prev_set(NewestPrev *prev, Datum value, bool isnull, Form_pg_attribute att)
{
	prev->have = true;
	prev->isnull = isnull;
	prev->data = NULL;
	if (isnull || att->attbyval)
		prev->value = value;
	else if (att->attlen == -1 && plain_varlena(DatumGetPointer(value)))
	{
		Size		size = VARSIZE_ANY(DatumGetPointer(value));

		if (size > prev->cap)
		{
			prev->buf = prev->buf ? repalloc(prev->buf, size) : MemoryContextAlloc(prev->cxt, size);
			prev->cap = size;
		}
		memcpy(prev->buf, DatumGetPointer(value), size);
		prev->value = PointerGetDatum(prev->buf);
		prev->data = VARDATA_ANY(prev->buf);
		prev->len = VARSIZE_ANY_EXHDR(prev->buf);
	}
	else
	{
		/* a compressed index value or a fixed-length type: copied whole */
		MemoryContext old = MemoryContextSwitchTo(prev->cxt);

		if (prev->buf)
			pfree(prev->buf);
		prev->value = datumCopy(value, att->attbyval, att->attlen);
		prev->buf = DatumGetPointer(prev->value);
		prev->cap = 0;			/* not reused: its size is unknown here */
		MemoryContextSwitchTo(old);
	}
}

/*
 * Whether value (not NULL, a value of att) has the same image as prev's
 * (not NULL): the bytes of plain varlenas compared in place, anything else
 * by datum_image_eq().
 */
static inline bool
newest_prev_same_image(NewestPrev *prev, Datum value, Form_pg_attribute att)
{
	const char *p = DatumGetPointer(value);

	if (prev->data != NULL && plain_varlena(p))
		return VARSIZE_ANY_EXHDR(p) == prev->len &&
			memcmp(VARDATA_ANY(p), prev->data, prev->len) == 0;
	return datum_image_eq(prev->value, value, att->attbyval, att->attlen);
}

/*
 * Put the heap row in slot (of the table's descriptor) into store.  A row
 * written before columns were added with a default has fewer attributes
 * than the table, and store's reader knows only the row type, not the
 * table's values for the missing ones: such a row is stored with them.
 */
static void
newest_put(Tuplestorestate *store, TupleTableSlot *slot)
{
	bool		should_free;
	HeapTuple	tup = ExecFetchSlotHeapTuple(slot, false, &should_free);

	if (HeapTupleHeaderGetNatts(tup->t_data) < slot->tts_tupleDescriptor->natts)
	{
		slot_getallattrs(slot);
		tuplestore_putvalues(store, slot->tts_tupleDescriptor, slot->tts_values,
							 slot->tts_isnull);
	}
	else
		tuplestore_puttupleslot(store, slot);
	if (should_free)
		heap_freetuple(tup);
}

/*
 * Walk index of heap in order and put, per entity, its first row in the
 * window [since, until] that snapshot sees into store (of the heap's row
 * type).  Each index entry's entity and event time come from the index
 * tuple; the heap is read only for the candidates, once.
 */
static void
newest_walk(Relation heap, Relation index, Snapshot snapshot, TimestampTz since,
			TimestampTz until, Tuplestorestate *store)
{
	IndexScanDesc scan = index_beginscan(heap, index, snapshot, 0, 0);
	TupleTableSlot *slot = table_slot_create(heap, NULL);
	FmgrInfo   *cmp = index_getprocinfo(index, 1, BTORDER_PROC);
	Oid			coll = index->rd_indcollation[0];
	Form_pg_attribute ent_att = TupleDescAttr(RelationGetDescr(index), 0);
	bool		by_image = _bt_allequalimage(index, false);
	NewestPrev	prev = {0};

	prev.cxt = AllocSetContextCreate(CurrentMemoryContext, "pgpoly newest key",
									 ALLOCSET_SMALL_SIZES);
	scan->xs_want_itup = true;
	index_rescan(scan, NULL, 0, NULL, 0);
	while (index_getnext_tid(scan, ForwardScanDirection) != NULL)
	{
		bool		isnull;
		bool		et_null;
		Datum		ent = index_getattr(scan->xs_itup, 1, scan->xs_itupdesc, &isnull);
		Datum		et;

		CHECK_FOR_INTERRUPTS();

		/*
		 * The same entity as the row found last: skip.  Equal images are
		 * equal values where the operator class says so (as for
		 * deduplication), which saves the comparison function.
		 */
		if (prev.have && isnull == prev.isnull &&
			(isnull ||
			 (by_image ? newest_prev_same_image(&prev, ent, ent_att) :
			  DatumGetInt32(FunctionCall2Coll(cmp, coll, prev.value, ent)) == 0)))
			continue;
		et = index_getattr(scan->xs_itup, 2, scan->xs_itupdesc, &et_null);
		if (et_null || DatumGetTimestampTz(et) < since || DatumGetTimestampTz(et) > until)
			continue;			/* outside the window */
		if (!index_fetch_heap(scan, slot))
			continue;			/* invisible: the entity's next entry may do */
		newest_put(store, slot);
		newest_prev_set(&prev, ent, isnull, ent_att);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	MemoryContextDelete(prev.cxt);
}

/*
 * The rows newest_walk() finds, found without the index: the DISTINCT ON
 * of materialize, run as the current user (row-level security applies, as
 * it does to any query of theirs), into store (of relid's row type).  Read
 * through a cursor in batches, so that only the tuplestore (which spills
 * to disk past work_mem) holds the whole result.
 */
static void
newest_distinct_on(Oid relid, const char *entity_column, TimestampTz since,
				   TimestampTz until, Tuplestorestate *store)
{
	Oid			types[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		args[2] = {TimestampTzGetDatum(since), TimestampTzGetDatum(until)};
	const char *ent = quote_identifier(entity_column);

	/*
	 * The row as h.* cast to its own type: a bare h would be the table's
	 * column h where it has one.
	 */
	char	   *sql = psprintf("SELECT DISTINCT ON (h.%s) h.*::%s FROM %s h "
							   "WHERE h.event_time OPERATOR(pg_catalog.>=) $1 "
							   "AND h.event_time OPERATOR(pg_catalog.<=) $2 "
							   "ORDER BY h.%s, h.event_time DESC, h.created_at DESC",
							   ent, format_type_be_qualified(get_rel_type_id(relid)),
							   fv_rel_text(relid), ent);
	SPIPlanPtr	plan;
	Portal		portal;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = SPI_prepare_cursor(sql, 2, types, 0);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare_cursor failed: %s", SPI_result_code_string(SPI_result));
	portal = SPI_cursor_open(NULL, plan, args, NULL, true);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, 1000);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			bool		isnull;
			HeapTupleHeader row;
			HeapTupleData tup;

			row = DatumGetHeapTupleHeader(SPI_getbinval(SPI_tuptable->vals[i],
														SPI_tuptable->tupdesc, 1, &isnull));
			tup.t_len = HeapTupleHeaderGetDatumLength(row);
			ItemPointerSetInvalid(&tup.t_self);
			tup.t_tableOid = InvalidOid;
			tup.t_data = row;
			tuplestore_puttuple(store, &tup);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	SPI_finish();
}

PG_FUNCTION_INFO_V1(pgpoly_fv_newest_rows);

/*
 * pgpoly._fv_newest_rows(NULL::offline_table, entity_column, since, until):
 * the rows materialize writes, in the statement's snapshot (see above), as
 * rows of the table.  The caller needs SELECT on the table.  Whether the
 * walk may be used (newest_usable) is decided here, with the table locked,
 * and the index it names is opened at once: an index another session makes
 * invalid meanwhile (DROP INDEX CONCURRENTLY) stays whole until this
 * transaction ends, and one found unusable — or none — gives the same rows
 * through the DISTINCT ON.  A NULL entity column or bound: no rows.
 */
Datum
pgpoly_fv_newest_rows(PG_FUNCTION_ARGS)
{
	Oid			rowtype = get_fn_expr_argtype(fcinfo->flinfo, 0);
	Oid			relid = OidIsValid(rowtype) ? get_typ_typrelid(rowtype) : InvalidOid;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Relation	heap;
	Relation	index;
	Oid			indexid;

	if (!OidIsValid(relid) || get_rel_relkind(relid) != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("the first argument must be a row of a table, not of type %s",
						format_type_be(rowtype)),
				 errhint("Pass NULL cast to the offline table's row type.")));
	fv_require_privilege(relid, ACL_SELECT);
	PgpolyMaterializedSRF(fcinfo);
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2) || PG_ARGISNULL(3))
		PG_RETURN_VOID();
	indexid = newest_usable(relid, text_to_cstring(PG_GETARG_TEXT_PP(1)), &heap);
	if (!OidIsValid(indexid))
	{
		if (heap != NULL)
			table_close(heap, NoLock);
		newest_distinct_on(relid, text_to_cstring(PG_GETARG_TEXT_PP(1)),
						   PG_GETARG_TIMESTAMPTZ(2), PG_GETARG_TIMESTAMPTZ(3),
						   rsinfo->setResult);
		PG_RETURN_VOID();
	}
	index = index_open(indexid, AccessShareLock);
	newest_walk(heap, index, GetActiveSnapshot(), PG_GETARG_TIMESTAMPTZ(2),
				PG_GETARG_TIMESTAMPTZ(3), rsinfo->setResult);
	index_close(index, NoLock);
	table_close(heap, NoLock);
	PG_RETURN_VOID();
}

/* ----------------------------------------------------------------
 *		Feature views cached per backend
 *
 * Every call reads the view's stored definition (its rows of
 * pgpoly.feature_views and pgpoly._feature_view_storage) through a kept
 * plan, with the caller's privileges and the call's snapshot.  What is
 * derived from the catalog for that definition — that it fits its tables
 * (fv_problem), the quoted names and types that the offline probe
 * statement spells, and the prepared probe statements themselves — is kept
 * per view in a CachedView and reused while the stored definition is the
 * same and no invalidation touched it: a relcache invalidation of one of
 * its three tables (every DDL on them: drop, rename, column changes), or a
 * syscache invalidation of any type or schema (whose names the statements
 * spell).  The callbacks only mark entries stale; the next call rebuilds a
 * stale entry before using it and frees those of other views, and at most
 * MAX_CACHED_VIEWS (the most recently used) are kept.  Nested calls (get_online_features run by
 * something the outer call runs) take the general path and never touch
 * the cache, so an entry is never freed while a call uses it.
 * ----------------------------------------------------------------
 */

/* A view's stored definition, as this call read it. */
typedef struct ViewDef
{
	Oid			online;			/* the user's tables */
	Oid			offline;
	Oid			serving;		/* the serving table */
	bool		has_ttl;
	TimestampTz fresh;			/* when has_ttl: oldest fresh event time */
	char	   *key_column;
	char	   *entity_column;
	List	   *features;		/* char *, all features of the view */
} ViewDef;

/* A kept offline probe statement of a cached view (_fv_offline_sql). */
typedef struct ProbePlan
{
	List	   *features;		/* the requested features it returns */
	bool		write;			/* with the write-back */
	SPIPlanPtr	plan;
} ProbePlan;

/* A view whose definition fits its tables, with its probe statements. */
typedef struct CachedView
{
	char	   *name;
	MemoryContext cxt;			/* holds all of it but the plans */
	bool		stale;			/* set by the invalidation callbacks */
	ViewDef		def;			/* the definition it was built from */
	char	   *key_type;		/* format_type() of the serving key column */
	char	   *entity_type;	/* ... and of the offline entity column */
	char	   *entity_match;	/* how its rows match an entity (fv_entity_match) */
	char	   *offline_rel;	/* quoted, schema-qualified names */
	char	   *serving_rel;
	bool		probe_known;	/* probe_index was looked up */
	Oid			probe_index;	/* the index probe_direct() reads, if usable */
	List	   *plans;			/* ProbePlan *, most recently used first */
} CachedView;

/* Probe statements kept per view (distinct requested feature lists). */
#define MAX_PROBE_PLANS 8

/*
 * Views kept (the most recently used): each holds its probe statements,
 * and a view dropped without its tables leaves no invalidation behind.
 */
#define MAX_CACHED_VIEWS 256

static List *cached_views = NIL;	/* CachedView *, cells in CacheMemoryContext */
static SPIPlanPtr definition_plan = NULL;

/* Relcache invalidation of relid (InvalidOid: all): its views are stale. */
static void
views_relcache_callback(Datum arg, Oid relid)
{
	ListCell   *lc;

	foreach(lc, cached_views)
	{
		CachedView *cv = lfirst(lc);

		if (relid == InvalidOid || relid == cv->def.online ||
			relid == cv->def.offline || relid == cv->def.serving)
			cv->stale = true;
	}
}

/*
 * Syscache invalidation of a type, a schema, a collation or an operator
 * (the names entity_match spells): every view is stale.
 */
static void
views_syscache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	ListCell   *lc;

	foreach(lc, cached_views)
		((CachedView *) lfirst(lc))->stale = true;
}

/* Register the cache's invalidation callbacks (at module load). */
void
PgpolyFeaturesInit(void)
{
	CacheRegisterRelcacheCallback(views_relcache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(TYPEOID, views_syscache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(NAMESPACEOID, views_syscache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(COLLOID, views_syscache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(OPEROID, views_syscache_callback, (Datum) 0);
}

/* The text[] datum d as a list of C strings (current memory context). */
static List *
text_array_list(Datum d)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	List	   *out = NIL;

	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
		out = lappend(out, nulls[i] ? NULL : TextDatumGetCString(elems[i]));
	return out;
}

/* Whether two lists of C strings (none NULL) are equal. */
static bool
same_names(List *a, List *b)
{
	ListCell   *la,
			   *lb;

	if (list_length(a) != list_length(b))
		return false;
	forboth(la, a, lb, b)
		if (strcmp(lfirst(la), lfirst(lb)) != 0)
			return false;
	return true;
}

/*
 * Read view's stored definition into def (current memory context); false
 * if there is none or it is incomplete (the PL/pgSQL side then says so).
 */
static bool
read_definition(text *view, ViewDef *def)
{
	Datum		arg = PointerGetDatum(view);
	Datum		v[7];
	bool		isnull[7];

	if (definition_plan == NULL)
	{
		Oid			argtype = TEXTOID;
		SPIPlanPtr	p = SPI_prepare("SELECT f.online_table, f.offline_table, s.serving_table, "
									"pgpoly._fv_fresh_since(f.ttl), s.key_column, "
									"s.entity_column, s.features "
									"FROM pgpoly.feature_views f "
									"JOIN pgpoly._feature_view_storage s ON s.view_name = f.name "
									"WHERE f.name = $1", 1, &argtype);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "could not prepare the feature view lookup");
		definition_plan = p;
	}
	if (SPI_execute_plan(definition_plan, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "feature view lookup failed");
	if (SPI_processed == 0)
		return false;
	heap_deform_tuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, v, isnull);
	for (int i = 0; i < 7; i++)
		if (isnull[i] && i != 3)	/* only the ttl is optional */
			return false;
	def->online = DatumGetObjectId(v[0]);
	def->offline = DatumGetObjectId(v[1]);
	def->serving = DatumGetObjectId(v[2]);
	def->has_ttl = !isnull[3];
	def->fresh = isnull[3] ? 0 : DatumGetTimestampTz(v[3]);
	def->key_column = TextDatumGetCString(v[4]);
	def->entity_column = TextDatumGetCString(v[5]);
	def->features = text_array_list(v[6]);
	return !list_member_ptr(def->features, NULL);
}

/* Whether a and b are the same stored definition (the ttl aside). */
static bool
same_definition(ViewDef *a, ViewDef *b)
{
	return a->online == b->online && a->offline == b->offline &&
		a->serving == b->serving && strcmp(a->key_column, b->key_column) == 0 &&
		strcmp(a->entity_column, b->entity_column) == 0 &&
		same_names(a->features, b->features);
}

/*
 * The index of offline table heap that probe_direct() may read for a text
 * entity column under a deterministic collation, or InvalidOid: the one
 * materialize's walk reads (newest_index), whatever the user (row-level
 * security is checked per call).  Its equality is then byte equality of
 * the text, the entity's identity (its Redis key); a nondeterministic
 * collation would also find other spellings ('A' for 'a'), which the probe
 * statement's text recheck skips.  Kept per view, looked up by the first
 * call that probes (which holds the table's lock): a change of the table
 * or its indexes invalidates its relcache entry, hence the view's entry.
 * *transient: an index was skipped for this transaction only
 * (newest_index).
 */
static Oid
probe_index_of(Relation heap, const char *entity_column, bool *transient)
{
	AttrNumber	att = get_attnum(RelationGetRelid(heap), entity_column);
	Form_pg_attribute a;

	*transient = false;
	if (att <= 0)
		return InvalidOid;
	a = TupleDescAttr(RelationGetDescr(heap), att - 1);
	if (a->atttypid != TEXTOID || !get_collation_isdeterministic(a->attcollation))
		return InvalidOid;
	return newest_index(heap, att, transient);
}

/*
 * Derive cv's catalog facts from its definition: false if the definition
 * does not fit its tables.  Allocates in cv's context.
 */
static bool
derive_view(CachedView *cv)
{
	MemoryContext old = MemoryContextSwitchTo(cv->cxt);
	int			n = list_length(cv->def.features);
	Datum	   *feats = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *types = palloc(sizeof(Datum) * Max(n, 1));
	ListCell   *lc;
	char	   *problem;

	foreach(lc, cv->def.features)
		feats[foreach_current_index(lc)] = CStringGetTextDatum(lfirst(lc));
	problem = fv_problem(cv->name, cv->def.online, cv->def.offline, cv->def.serving,
						 cv->def.key_column, cv->def.entity_column, feats, n,
						 &cv->key_type, &cv->entity_type, &cv->entity_match, types);
	if (problem == NULL)
	{
		cv->offline_rel = fv_rel_text(cv->def.offline);
		cv->serving_rel = fv_rel_text(cv->def.serving);
	}
	MemoryContextSwitchTo(old);
	return problem == NULL;
}

/* derive_view() of a listed entry, which an error leaves stale. */
static bool
derive_listed_view(CachedView *cv)
{
	bool		fits = false;

	PG_TRY();
	{
		fits = derive_view(cv);
	}
	PG_CATCH();
	{
		cv->stale = true;
		PG_RE_THROW();
	}
	PG_END_TRY();
	return fits;
}

/* A new cache entry of view name for definition def, not derived yet. */
static CachedView *
new_view(const char *name, ViewDef *def)
{
	MemoryContext cxt = AllocSetContextCreate(CacheMemoryContext, "pgpoly feature view",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	CachedView *cv = palloc0(sizeof(CachedView));
	ListCell   *lc;

	cv->name = pstrdup(name);
	cv->cxt = cxt;
	cv->def = *def;
	cv->def.key_column = pstrdup(def->key_column);
	cv->def.entity_column = pstrdup(def->entity_column);
	cv->def.features = NIL;
	foreach(lc, def->features)
		cv->def.features = lappend(cv->def.features, pstrdup(lfirst(lc)));
	MemoryContextSwitchTo(old);
	return cv;
}

/* Free a cache entry that is no longer in cached_views. */
static void
free_view(CachedView *cv)
{
	ListCell   *lc;

	foreach(lc, cv->plans)
		SPI_freeplan(((ProbePlan *) lfirst(lc))->plan);
	MemoryContextDelete(cv->cxt);
}

/*
 * The cache entry of view name for its definition def as this call read
 * it, (re)built when missing, stale or built from another definition; NULL
 * if def does not fit its tables.  Only for calls that are not nested.  A
 * new entry is listed before its catalog facts are derived, so that an
 * invalidation arriving meanwhile marks it stale (it is rebuilt by the next
 * call), as does an error.
 */
static CachedView *
cached_view(const char *name, ViewDef *def)
{
	CachedView *cv = NULL;
	ListCell   *lc;
	MemoryContext old;

	/*
	 * Free the stale entries, not only this view's: those of views dropped
	 * (with their tables) or changed and never asked for again would stay
	 * for as long as the backend lives.
	 */
	foreach(lc, cached_views)
	{
		CachedView *e = lfirst(lc);

		if (e->stale || (strcmp(e->name, name) == 0 &&
						 !same_definition(&e->def, def)))
		{
			cached_views = foreach_delete_current(cached_views, lc);
			free_view(e);
		}
		else if (strcmp(e->name, name) == 0)
			cv = e;
	}
	if (cv != NULL)
	{
		/* most recently used first */
		if (linitial(cached_views) != cv)
		{
			cached_views = list_delete_ptr(cached_views, cv);
			old = MemoryContextSwitchTo(CacheMemoryContext);
			cached_views = lcons(cv, cached_views);
			MemoryContextSwitchTo(old);
		}
		return cv;
	}
	/* at most MAX_CACHED_VIEWS: the least recently used goes */
	while (list_length(cached_views) >= MAX_CACHED_VIEWS)
	{
		CachedView *e = llast(cached_views);

		cached_views = list_delete_last(cached_views);
		free_view(e);
	}
	cv = new_view(name, def);
	old = MemoryContextSwitchTo(CacheMemoryContext);
	cached_views = lcons(cv, cached_views);
	MemoryContextSwitchTo(old);
	if (derive_listed_view(cv))
		return cv;
	cached_views = list_delete_ptr(cached_views, cv);
	free_view(cv);
	return NULL;
}

/* A list of C strings as a text[] datum (current memory context). */
static Datum
names_array(List *names)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(names), 1));
	ListCell   *lc;

	foreach(lc, names)
		elems[foreach_current_index(lc)] = CStringGetTextDatum(lfirst(lc));
	return PointerGetDatum(construct_array(elems, list_length(names), TEXTOID, -1, false,
										   TYPALIGN_INT));
}

/* The text of cv's offline probe statement for features feat (SQL-built). */
static char *
probe_sql(CachedView *cv, List *feat, bool write)
{
	Oid			types[10] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	TEXTARRAYOID, TEXTARRAYOID, BOOLOID, OIDOID};
	Datum		args[10];
	bool		isnull;
	Datum		sql;

	args[0] = CStringGetTextDatum(cv->offline_rel);
	args[1] = CStringGetTextDatum(cv->def.entity_column);
	args[2] = CStringGetTextDatum(cv->entity_match);
	args[3] = CStringGetTextDatum(cv->serving_rel);
	args[4] = CStringGetTextDatum(cv->def.key_column);
	args[5] = CStringGetTextDatum(cv->key_type);
	args[6] = names_array(cv->def.features);
	args[7] = names_array(feat);
	args[8] = BoolGetDatum(write);
	args[9] = ObjectIdGetDatum(cv->def.offline);
	if (SPI_execute_with_args("SELECT pgpoly._fv_offline_sql($1, $2, $3, $4, $5, $6, $7, $8, $9, "
							  "pgpoly._fv_column_is_key($10::pg_catalog.regclass, $2, $6))",
							  10, types, args, NULL, true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not build the offline probe of feature view \"%s\"", cv->name);
	sql = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		elog(ERROR, "could not build the offline probe of feature view \"%s\"", cv->name);
	return TextDatumGetCString(sql);
}

/*
 * cv's kept probe statement for the requested features feat, with or
 * without the write-back; prepared on first use.  At most MAX_PROBE_PLANS
 * are kept per view: the least recently used one goes.
 */
static SPIPlanPtr
probe_plan(CachedView *cv, List *feat, bool write)
{
	Oid			argtypes[4] = {TEXTARRAYOID, BOOLARRAYOID, TIMESTAMPTZARRAYOID,
	TIMESTAMPTZOID};
	ListCell   *lc;
	ProbePlan  *p;
	SPIPlanPtr	plan;
	MemoryContext old;

	foreach(lc, cv->plans)
	{
		p = lfirst(lc);
		if (p->write == write && same_names(p->features, feat))
		{
			/* most recently used first (no allocation: just reordered) */
			for (int i = foreach_current_index(lc); i > 0; i--)
				list_nth_cell(cv->plans, i)->ptr_value = list_nth(cv->plans, i - 1);
			linitial(cv->plans) = p;
			return p->plan;
		}
	}
	plan = SPI_prepare(probe_sql(cv, feat, write), 4, argtypes);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (list_length(cv->plans) >= MAX_PROBE_PLANS)
	{
		SPI_freeplan(((ProbePlan *) llast(cv->plans))->plan);
		cv->plans = list_delete_last(cv->plans);
	}
	old = MemoryContextSwitchTo(cv->cxt);
	p = palloc(sizeof(ProbePlan));
	p->features = NIL;
	foreach(lc, feat)
		p->features = lappend(p->features, pstrdup(lfirst(lc)));
	p->write = write;
	p->plan = plan;
	cv->plans = lcons(p, cv->plans);
	MemoryContextSwitchTo(old);
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	return plan;
}

/* ----------------------------------------------------------------
 *		The serving fast path
 * ----------------------------------------------------------------
 */

static bool simple_json_type(Oid typid);

/* The oldest fresh event time of def, or NULL when it has no ttl. */
static const TimestampTz *
fresh_of(ViewDef *def)
{
	return def->has_ttl ? &def->fresh : NULL;
}

/*
 * Run the PL/pgSQL implementation and copy its rows into the result.  It is
 * passed the caller's DateStyle (get_online_features does not set one), so
 * that it reads entities in the caller's field order.
 */
static void
serve_general(FunctionCallInfo fcinfo, ReturnSetInfo *rsinfo)
{
	Oid			argtypes[4] = {TEXTOID, TEXTARRAYOID, TEXTARRAYOID, TEXTOID};
	Datum		args[4];
	char		nulls[4];

	for (int i = 0; i < 3; i++)
	{
		args[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}
	args[3] = CStringGetTextDatum(GetConfigOption("DateStyle", false, false));
	nulls[3] = ' ';
	if (SPI_execute_with_args("SELECT * FROM pgpoly._get_online_features($1, $2, $3, $4)",
							  4, argtypes, args, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "pgpoly._get_online_features failed");
	for (uint64 i = 0; i < SPI_processed; i++)
		tuplestore_puttuple(rsinfo->setResult, SPI_tuptable->vals[i]);
}

/* The attnum of the column called name in tbl, or 0. */
static AttrNumber
column_named(RedisTable *tbl, const char *name)
{
	for (int i = 0; i < tbl->natts; i++)
		if (tbl->cols[i].role != RCOL_NONE && strcmp(tbl->cols[i].name, name) == 0)
			return i + 1;
	return 0;
}

/*
 * The requested features' attnums (NULL request: all); false if one is
 * unknown or of a type the fast path does not convert.
 */
static bool
feature_columns(RedisTable *tbl, ViewDef *def, ArrayType *req,
				List **names, List **atts)
{
	List	   *want = def->features;
	ListCell   *lc;

	if (req != NULL)
	{
		Datum	   *elems;
		bool	   *enulls;
		int			n;

		deconstruct_array(req, TEXTOID, -1, false, TYPALIGN_INT, &elems, &enulls, &n);
		want = NIL;
		for (int i = 0; i < n; i++)
		{
			char	   *f;

			if (enulls[i])
				return false;
			f = TextDatumGetCString(elems[i]);
			foreach(lc, def->features)
				if (strcmp(lfirst(lc), f) == 0)
					break;
			if (lc == NULL)
				return false;
			want = lappend(want, f);
		}
	}
	foreach(lc, want)
	{
		AttrNumber	att = column_named(tbl, lfirst(lc));

		if (att == 0 || !simple_json_type(tbl->cols[att - 1].typid))
			return false;
		*names = lappend(*names, lfirst(lc));
		*atts = lappend_int(*atts, att);
	}
	return true;
}

/*
 * Whether the fast path converts values of typid exactly as
 * jsonb_build_object() does; the SQL path serves views with other types.
 */
static bool
simple_json_type(Oid typid)
{
	switch (typid)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case FLOAT4OID:
		case FLOAT8OID:
		case NUMERICOID:
		case BOOLOID:
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
		case JSONBOID:
			return true;
		default:
			return false;
	}
}

/*
 * The jsonb object of the requested features, laid out once per call: the
 * keys in the order jsonb keeps them (shorter first, then bytewise; of
 * duplicate names the last requested wins, as in jsonb_build_object()), so
 * that each row's object is handed to JsonbValueToJsonb() as it is, with
 * no pushJsonbValue() sorting and de-duplication per row.  Features of type
 * jsonb are containers that must be unpacked: with one of them the object
 * is built with pushJsonbValue() (direct false).
 */
typedef struct FeatureJson
{
	List	   *names;			/* requested features, in request order */
	List	   *atts;			/* and their attnums */
	bool		direct;			/* the object is built from pairs[] */
	Oid		   *types;			/* type of each attnum's value (by attnum - 1) */
	int			npairs;
	JsonbPair  *pairs;			/* keys set, values set per row */
	int		   *pair_att;		/* attnum of each pair's value */
} FeatureJson;

/* jsonb's key order: shorter first, then bytewise (0 for the same key). */
static int
jsonb_key_cmp(const char *a, const char *b)
{
	size_t		la = strlen(a);
	size_t		lb = strlen(b);

	if (la != lb)
		return la < lb ? -1 : 1;
	return memcmp(a, b, la);
}

/*
 * Lay out fj's object for the features names, whose values are at attnums
 * atts of rows whose attnum a has type types[a - 1].
 */
static void
feature_json_init(FeatureJson *fj, List *names, List *atts, Oid *types)
{
	int			n = list_length(names);
	int		   *order = palloc(sizeof(int) * Max(n, 1));
	ListCell   *la;

	fj->names = names;
	fj->atts = atts;
	fj->types = types;
	fj->direct = true;
	foreach(la, atts)
		if (types[lfirst_int(la) - 1] == JSONBOID)
			fj->direct = false;
	/* insertion sort by (key, request position): few keys */
	for (int i = 0; i < n; i++)
	{
		int			j = i;

		while (j > 0 && jsonb_key_cmp(list_nth(names, order[j - 1]), list_nth(names, i)) > 0)
		{
			order[j] = order[j - 1];
			j--;
		}
		order[j] = i;
	}
	fj->pairs = palloc0(sizeof(JsonbPair) * Max(n, 1));
	fj->pair_att = palloc(sizeof(int) * Max(n, 1));
	fj->npairs = 0;
	for (int i = 0; i < n; i++)
	{
		char	   *name = list_nth(names, order[i]);
		JsonbPair  *p;

		/* the same key again: the later request replaces the earlier one */
		if (fj->npairs > 0 && jsonb_key_cmp(fj->pairs[fj->npairs - 1].key.val.string.val, name) == 0)
			fj->npairs--;
		p = &fj->pairs[fj->npairs];
		p->key.type = jbvString;
		p->key.val.string.val = name;
		p->key.val.string.len = strlen(name);
		p->order = fj->npairs;
		fj->pair_att[fj->npairs++] = list_nth_int(atts, order[i]);
	}
}

/* The features of one row as jsonb, like jsonb_build_object(). */
static Datum
features_jsonb(FeatureJson *fj, Datum *values, bool *nulls)
{
	JsonbParseState *ps = NULL;
	JsonbValue *res;
	ListCell   *ln,
			   *la;

	if (fj->direct)
	{
		JsonbValue	obj;

		for (int p = 0; p < fj->npairs; p++)
		{
			int			i = fj->pair_att[p] - 1;

			PgpolyJsonbValue(&fj->pairs[p].value, values[i], fj->types[i], nulls[i]);
		}
		obj.type = jbvObject;
		obj.val.object.nPairs = fj->npairs;
		obj.val.object.pairs = fj->pairs;
		return JsonbPGetDatum(JsonbValueToJsonb(&obj));
	}
	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	forboth(ln, fj->names, la, fj->atts)
	{
		int			i = lfirst_int(la) - 1;
		JsonbValue	k;
		JsonbValue	v;

		k.type = jbvString;
		k.val.string.val = lfirst(ln);
		k.val.string.len = strlen(lfirst(ln));
		pushJsonbValue(&ps, WJB_KEY, &k);
		PgpolyJsonbValue(&v, values[i], fj->types[i], nulls[i]);
		pushJsonbValue(&ps, WJB_VALUE, &v);
	}
	res = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	return JsonbPGetDatum(JsonbValueToJsonb(res));
}

/* What one store holds for one distinct key, as served. */
typedef struct Served
{
	bool		found;
	Datum		features;		/* jsonb of the requested features */
	Datum		event_time;
	bool		et_null;
} Served;

/* s as the serving rule sees it. */
static FvValue
served_value(const Served *s)
{
	FvValue		v;

	v.found = s->found;
	v.et_null = !s->found || s->et_null;
	v.et = v.et_null ? 0 : DatumGetTimestampTz(s->event_time);
	return v;
}

/*
 * Fetch the distinct keys from Redis into served[], in rounds of
 * fetch_size.  Returns whether the serving rule serves every key from
 * online as it is.
 */
static bool
fetch_online(RedisTable *tbl, ViewDef *def, char **keys, size_t *lens, int n,
			 FeatureJson *fj, Served *served)
{
	PgpolyConnection *conn = RedisGetConnection(tbl);
	RedisScan  *scan = RedisScanBegin(tbl, conn, false,
									  PgpolyPendingWrites(conn, tbl->relid));
	AttrNumber	et = column_named(tbl, "_event_time");
	Datum	   *values = palloc(sizeof(Datum) * tbl->natts);
	bool	   *nulls = palloc(sizeof(bool) * tbl->natts);
	const FvValue none = {false, true, 0};
	bool		all_online = true;

	for (int off = 0; off < n; off += tbl->fetch_size)
	{
		int			m = Min(tbl->fetch_size, n - off);

		RedisScanFetchKeys(scan, keys + off, lens + off, m);
		for (int i = 0; i < m; i++)
		{
			RedisKeyState *st = RedisScanRoundState(scan, i);
			Served	   *sd = &served[off + i];
			FvValue		on;
			bool		from_offline;

			sd->found = RedisStateRowCount(tbl, st) > 0;
			if (sd->found)
			{
				RedisStateRow(scan, st, 0, values, nulls);
				sd->et_null = nulls[et - 1];
				sd->event_time = sd->et_null ? (Datum) 0 : values[et - 1];
				sd->features = features_jsonb(fj, values, nulls);
			}
			on = served_value(sd);
			if (fv_serve(fresh_of(def), &on, &none, &from_offline) != FV_ONLINE)
				all_online = false;
		}
	}
	return all_online;
}

/* Arguments and result of fetch_online_fn. */
typedef struct FetchOnlineArgs
{
	RedisTable *tbl;
	ViewDef    *def;
	char	  **keys;
	size_t	   *lens;
	int			n;
	FeatureJson *fj;
	Served	   *served;
	bool		all_online;
} FetchOnlineArgs;

/* fetch_online() for run_catching. */
static void
fetch_online_fn(void *arg)
{
	FetchOnlineArgs *a = arg;

	a->all_online = fetch_online(a->tbl, a->def, a->keys, a->lens, a->n, a->fj, a->served);
}

/*
 * fetch_online() for the serving table of a view in write_mode 'outbox',
 * whose serving must not depend on Redis being up: when Redis cannot be
 * reached (SQLSTATE class 08) nothing is found online, and the offline
 * fallback serves every entity.  The round runs in a subtransaction, so an
 * error leaves the connection closed and nothing else behind.
 */
static bool
fetch_online_or_none(RedisTable *tbl, ViewDef *def, char **keys, size_t *lens, int n,
					 FeatureJson *fj, Served *served)
{
	FetchOnlineArgs a = {tbl, def, keys, lens, n, fj, served, false};

	if (run_catching(fetch_online_fn, &a, ERRCODE_CONNECTION_EXCEPTION))
		return a.all_online;
	memset(served, 0, sizeof(Served) * Max(n, 1));
	return false;
}

/*
 * Probe the offline table for the keys whose online value the rule does not
 * serve (missing or stale) with cv's kept probe statement, and record in
 * off[] what it found; with write (the caller may write and holds the
 * entities' locks), the statement also writes back online what the rule
 * serves from offline.
 * seen maps each of the nd distinct keys (with the table's prefix) to its
 * slot in on[] and off[].
 */
static void
probe_offline(CachedView *cv, ViewDef *def, RedisTable *tbl, List *names,
			  char **keys, int nd, Served *on, Served *off, RedisKeySet *seen,
			  bool write)
{
	ArrayBuildState *k = initArrayResult(TEXTOID, CurrentMemoryContext, false);
	ArrayBuildState *f = initArrayResult(BOOLOID, CurrentMemoryContext, false);
	ArrayBuildState *t = initArrayResult(TIMESTAMPTZOID, CurrentMemoryContext, false);
	const FvValue none = {false, true, 0};
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', def->has_ttl ? ' ' : 'n'};
	SPIPlanPtr	plan = probe_plan(cv, names, write);
	Datum		found[3];
	bool		isnull[3];
	Datum	   *fk,
			   *fet,
			   *ff;
	bool	   *etnull;
	int			nf;

	for (int i = 0; i < nd; i++)
	{
		FvValue		v = served_value(&on[i]);
		bool		from_offline;

		if (fv_serve(fresh_of(def), &v, &none, &from_offline) == FV_ONLINE)
			continue;
		accumArrayResult(k, CStringGetTextDatum(keys[i] + tbl->prefixlen), false,
						 TEXTOID, CurrentMemoryContext);
		accumArrayResult(f, BoolGetDatum(v.found), false, BOOLOID, CurrentMemoryContext);
		accumArrayResult(t, TimestampTzGetDatum(v.et), v.et_null, TIMESTAMPTZOID,
						 CurrentMemoryContext);
	}
	args[0] = makeArrayResult(k, CurrentMemoryContext);
	args[1] = makeArrayResult(f, CurrentMemoryContext);
	args[2] = makeArrayResult(t, CurrentMemoryContext);
	args[3] = TimestampTzGetDatum(def->fresh);
	if (SPI_execute_plan(plan, args, nulls, false, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "the offline probe of feature view \"%s\" failed", cv->name);
	heap_deform_tuple(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, found, isnull);
	if (isnull[0])
		return;					/* none found offline */
	deconstruct_array(DatumGetArrayTypeP(found[0]), TEXTOID, -1, false, TYPALIGN_INT,
					  &fk, NULL, &nf);
	deconstruct_array(DatumGetArrayTypeP(found[1]), TIMESTAMPTZOID, sizeof(TimestampTz),
					  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &fet, &etnull, &nf);
	deconstruct_array(DatumGetArrayTypeP(found[2]), JSONBOID, -1, false, TYPALIGN_INT,
					  &ff, NULL, &nf);
	for (int j = 0; j < nf; j++)
	{
		size_t		len;
		char	   *key = RedisKeyFromDatum(tbl, NULL, fk[j], &len);
		int			slot = RedisKeySetIndex(seen, key, len, -1);

		if (slot < 0)
			elog(ERROR, "the offline probe of feature view \"%s\" returned an entity not asked for",
				 cv->name);
		off[slot].found = true;
		off[slot].features = ff[j];
		off[slot].et_null = etnull[j];
		off[slot].event_time = fet[j];
	}
}

/*
 * The attnums in heap (an offline table) of the features names, appended
 * to *atts, and of event_time; false when one is missing or of a type the
 * direct probe does not convert.
 */
static bool
offline_columns(Relation heap, List *names, List **atts, AttrNumber *et_att)
{
	TupleDesc	desc = RelationGetDescr(heap);
	ListCell   *lc;

	*et_att = get_attnum(RelationGetRelid(heap), "event_time");
	if (*et_att <= 0 || TupleDescAttr(desc, *et_att - 1)->atttypid != TIMESTAMPTZOID)
		return false;
	foreach(lc, names)
	{
		AttrNumber	att = get_attnum(RelationGetRelid(heap), lfirst(lc));

		if (att <= 0 || !simple_json_type(TupleDescAttr(desc, att - 1)->atttypid))
			return false;
		*atts = lappend_int(*atts, att);
	}
	return true;
}

/*
 * Look up in the offline table's index, for each key i (of entity text
 * keys[i] + prefixlen) with need[i], the entity's first row in index order
 * that the snapshot sees — its newest (event_time DESC, created_at DESC),
 * what the probe statement's ORDER BY ... LIMIT 1 reads — into off[i].
 */
static void
probe_index(Relation heap, Relation index, FeatureJson *fj, AttrNumber et,
			char **keys, int prefixlen, int nd, const bool *need, Served *off)
{
	IndexScanDesc scan = index_beginscan(heap, index, GetActiveSnapshot(), 1, 0);
	TupleTableSlot *slot = table_slot_create(heap, NULL);

	for (int i = 0; i < nd; i++)
	{
		ScanKeyData key;

		if (!need[i])
			continue;
		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_TEXTEQ,
					CStringGetTextDatum(keys[i] + prefixlen));
		key.sk_collation = index->rd_indcollation[0];
		index_rescan(scan, &key, 1, NULL, 0);
		if (!index_getnext_slot(scan, ForwardScanDirection, slot))
			continue;
		slot_getallattrs(slot);
		off[i].found = true;
		off[i].et_null = slot->tts_isnull[et - 1];
		off[i].event_time = off[i].et_null ? (Datum) 0 : slot->tts_values[et - 1];
		off[i].features = features_jsonb(fj, slot->tts_values, slot->tts_isnull);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
}

/*
 * The offline probe without a statement, for the keys whose online value
 * the rule does not serve: the same rows the probe statement's SELECT
 * reads (an index probe per entity, in a new snapshot after a command
 * counter increment, as SPI runs it), into off[].  Only where the walk of
 * materialize could be used on the offline table (cv->probe_index: such an
 * index and a text entity column; no row-level security), with features
 * and event time of types features_jsonb converts; false otherwise (off[]
 * untouched).  It writes nothing back: the statement does (goes_back).
 */
static bool
probe_direct(CachedView *cv, ViewDef *def, RedisTable *tbl, List *names, char **keys,
			 int nd, Served *on, Served *off)
{
	const FvValue none = {false, true, 0};
	Relation	heap;
	Relation	index;
	List	   *atts = NIL;
	AttrNumber	et;
	FeatureJson fj;
	Oid		   *types;
	bool	   *need = palloc(sizeof(bool) * Max(nd, 1));
	TupleDesc	desc;

	if ((cv->probe_known && !OidIsValid(cv->probe_index)) ||
		check_enable_rls(def->offline, InvalidOid, true) == RLS_ENABLED)
		return false;
	heap = table_open(def->offline, AccessShareLock);
	desc = RelationGetDescr(heap);

	/*
	 * An invalidation taken in with the lock (a dropped index...) makes the
	 * entry stale: the statement serves this call, the next rebuilds it.
	 * The table stays locked as a reader, as by the statement.
	 */
	if (!cv->stale && !cv->probe_known)
	{
		bool		transient;

		/* none usable in this transaction only: look again in the next */
		cv->probe_index = probe_index_of(heap, def->entity_column, &transient);
		cv->probe_known = OidIsValid(cv->probe_index) || !transient;
	}
	if (cv->stale || !OidIsValid(cv->probe_index) ||
		!offline_columns(heap, names, &atts, &et))
	{
		table_close(heap, NoLock);
		return false;
	}
	types = palloc(sizeof(Oid) * Max(desc->natts, 1));
	for (int i = 0; i < desc->natts; i++)
		types[i] = TupleDescAttr(desc, i)->atttypid;
	feature_json_init(&fj, names, atts, types);
	for (int i = 0; i < nd; i++)
	{
		FvValue		v = served_value(&on[i]);
		bool		from_offline;

		need[i] = fv_serve(fresh_of(def), &v, &none, &from_offline) != FV_ONLINE;
	}
	index = index_open(cv->probe_index, AccessShareLock);
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	probe_index(heap, index, &fj, et, keys, tbl->prefixlen, nd, need, off);
	PopActiveSnapshot();
	index_close(index, NoLock);
	table_close(heap, NoLock);
	return true;
}

/*
 * Whether the rule serves one of the nd keys from offline, given on[] and
 * off[]: that value goes back online (where the caller may write).
 */
static bool
goes_back(ViewDef *def, int nd, Served *on, Served *off)
{
	for (int i = 0; i < nd; i++)
	{
		FvValue		von = served_value(&on[i]);
		FvValue		voff = served_value(&off[i]);
		bool		from_offline;

		if (fv_serve(fresh_of(def), &von, &voff, &from_offline) == FV_OFFLINE && from_offline)
			return true;
	}
	return false;
}

/*
 * Lock, without waiting, the entities of the nd keys whose online value the
 * rule does not serve (those a write-back may write) until the end of the
 * transaction (pgpoly._fv_lock_entities); false when another transaction
 * holds one of them (nothing taken).
 */
static bool
lock_unserved(ViewDef *def, RedisTable *tbl, char **keys, const size_t *lens, int nd,
			  Served *on)
{
	const FvValue none = {false, true, 0};
	char	  **ents = palloc(sizeof(char *) * Max(nd, 1));
	size_t	   *elens = palloc(sizeof(size_t) * Max(nd, 1));
	int			m = 0;

	for (int i = 0; i < nd; i++)
	{
		FvValue		v = served_value(&on[i]);
		bool		from_offline;

		if (fv_serve(fresh_of(def), &v, &none, &from_offline) == FV_ONLINE)
			continue;
		ents[m] = keys[i] + tbl->prefixlen;
		elens[m++] = lens[i] - tbl->prefixlen;
	}
	return PgpolyLockKeys(def->online, ents, elens, m, false);
}

/*
 * Serve the call for a text-keyed view: one Redis round for the distinct
 * entities, then the offline probe for those online does not serve, then
 * each input element as the rule says.  false (nothing done) when the call
 * is one the fast path does not serve.  The caller checked privileges.
 */
static bool
serve_fast(FunctionCallInfo fcinfo, ReturnSetInfo *rsinfo, ViewDef *def,
		   CachedView *cv)
{
	ArrayType  *ents = PG_GETARG_ARRAYTYPE_P(1);
	RedisTable *tbl;
	List	   *names = NIL;
	List	   *atts = NIL;
	FeatureJson fj;
	Oid		   *types;
	RedisKeySet *seen = RedisKeySetCreate(CurrentMemoryContext, 0);
	Datum		sources[lengthof(fv_source_names)];
	Datum	   *elems;
	bool	   *enulls;
	int		   *slot;
	char	  **keys;
	size_t	   *lens;
	Served	   *on;
	Served	   *off;
	int			n;
	int			nd = 0;
	Oid			keytype;
	bool		outbox;

	tbl = RedisLoadTable(def->serving, GetUserId());
	keytype = tbl->cols[tbl->key_att - 1].typid;
	if ((keytype != TEXTOID && keytype != VARCHAROID) ||
		column_named(tbl, "_event_time") == 0 ||
		!feature_columns(tbl, def, PG_ARGISNULL(2) ? NULL : PG_GETARG_ARRAYTYPE_P(2),
						 &names, &atts))
		return false;

	deconstruct_array(ents, TEXTOID, -1, false, TYPALIGN_INT, &elems, &enulls, &n);
	slot = palloc(sizeof(int) * Max(n, 1));
	keys = palloc(sizeof(char *) * Max(n, 1));
	lens = palloc(sizeof(size_t) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		char	   *key;

		if (enulls[i])
			return false;
		key = RedisKeyFromDatum(tbl, NULL, elems[i], &lens[nd]);
		slot[i] = RedisKeySetIndex(seen, key, lens[nd], nd);
		if (slot[i] == nd)
			keys[nd++] = key;
	}
	on = palloc(sizeof(Served) * Max(nd, 1));
	off = palloc0(sizeof(Served) * Max(nd, 1));
	types = palloc(sizeof(Oid) * Max(tbl->natts, 1));
	for (int i = 0; i < tbl->natts; i++)
		types[i] = tbl->cols[i].typid;
	feature_json_init(&fj, names, atts, types);
	outbox = PgpolyTableWriteMode(GetForeignTable(def->serving)->options) == PGPOLY_WRITE_OUTBOX;
	if (!(outbox ? fetch_online_or_none(tbl, def, keys, lens, nd, &fj, on) :
		  fetch_online(tbl, def, keys, lens, nd, &fj, on)))
	{
		bool		write = fv_may_write(def->online, def->serving);

		/* the offline values */
		if (!probe_direct(cv, def, tbl, names, keys, nd, on, off))
		{
			memset(off, 0, sizeof(Served) * Max(nd, 1));
			probe_offline(cv, def, tbl, names, keys, nd, on, off, seen, false);
		}

		/*
		 * Values that go back online, with the statement.  Only under their
		 * entities' locks, decided on what Redis holds once the locks are
		 * held (read again): a concurrent writer's newer value is never
		 * overwritten.  Where another transaction holds one, nothing goes
		 * back (its COMMIT writes).  An entity online served at the first
		 * read but not at the second (its key evicted meanwhile) is locked
		 * then, or nothing goes back.  For an outbox table the sync worker
		 * decides on what Redis holds when it delivers (Redis is not read
		 * again: it may be down); the locks order the write-back after a
		 * concurrent writer's at equal event times.
		 */
		if (write && goes_back(def, nd, on, off) &&
			lock_unserved(def, tbl, keys, lens, nd, on) &&
			(outbox || (!fetch_online(tbl, def, keys, lens, nd, &fj, on) &&
						lock_unserved(def, tbl, keys, lens, nd, on))))
		{
			memset(off, 0, sizeof(Served) * Max(nd, 1));
			probe_offline(cv, def, tbl, names, keys, nd, on, off, seen, true);
		}
	}

	for (int i = 0; i < lengthof(fv_source_names); i++)
		sources[i] = CStringGetTextDatum(fv_source_names[i]);
	for (int i = 0; i < n; i++)
	{
		FvValue		von = served_value(&on[slot[i]]);
		FvValue		voff = served_value(&off[slot[i]]);
		bool		from_offline;
		FvSource	src = fv_serve(fresh_of(def), &von, &voff, &from_offline);
		Served	   *c = from_offline ? &off[slot[i]] : &on[slot[i]];
		Datum		v[4] = {elems[i], c->features, c->event_time, sources[src]};
		bool		nl[4] = {false, !c->found, !c->found || c->et_null, false};

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, nl);
	}
	return true;
}

/*
 * One call's work, with its scratch memory in cxt; nested: the call runs
 * inside another one (it takes the general path).
 */
static void
serve(FunctionCallInfo fcinfo, ReturnSetInfo *rsinfo, MemoryContext cxt, bool nested)
{
	MemoryContext old;
	ViewDef		def;
	CachedView *cv;
	bool		done = false;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	old = MemoryContextSwitchTo(cxt);
	if (!nested && !PG_ARGISNULL(0) && read_definition(PG_GETARG_TEXT_PP(0), &def) &&
		(cv = cached_view(text_to_cstring(PG_GETARG_TEXT_PP(0)), &def)) != NULL)
	{
		/* as a SELECT of the tables the call reads (online, offline) */
		fv_require_privilege(def.online, ACL_SELECT);
		fv_require_privilege(def.offline, ACL_SELECT);
		fv_require_privilege(def.serving, ACL_SELECT);
		if (!PG_ARGISNULL(1))
			done = serve_fast(fcinfo, rsinfo, &def, cv);
	}
	if (!done)
		serve_general(fcinfo, rsinfo);
	MemoryContextSwitchTo(old);
	SPI_finish();
}

PG_FUNCTION_INFO_V1(pgpoly_get_online_features);

/*
 * pgpoly.get_online_features(view, entities, features): see API.md 3.
 * The fast path first; the PL/pgSQL implementation for everything else.
 */
Datum
pgpoly_get_online_features(PG_FUNCTION_ARGS)
{
	static MemoryContext cached = NULL;
	static int	depth = 0;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext cxt;

	PgpolyMaterializedSRF(fcinfo);

	/*
	 * A long-lived context, reset per call: creating and deleting one per
	 * call costs more (fresh pages) than the Redis round.  Nothing in it
	 * outlives the call.  A nested call (from a function the outer one runs)
	 * gets a context of its own.
	 */
	if (cached == NULL)
		cached = AllocSetContextCreate(TopMemoryContext, "pgpoly online features",
									   ALLOCSET_DEFAULT_SIZES);
	cxt = depth > 0 ?
		AllocSetContextCreate(CurrentMemoryContext, "pgpoly online features (nested)",
							  ALLOCSET_DEFAULT_SIZES) : cached;
	MemoryContextReset(cxt);
	depth++;
	PG_TRY();
	{
		serve(fcinfo, rsinfo, cxt, depth > 1);
	}
	PG_FINALLY();
	{
		depth--;
	}
	PG_END_TRY();
	MemoryContextReset(cxt);
	PG_RETURN_VOID();
}
