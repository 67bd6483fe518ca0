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
 * costs more than the Redis round itself.  This file makes the Redis round
 * itself for a view with a text key: it reads the serving table through the
 * same Redis scan code as the FDW (so buffered writes of the transaction are
 * seen) and builds each entity's features like the SQL path does.  If the
 * rule serves every entity from online it answers at once; otherwise it
 * passes what it fetched to the PL/pgSQL implementation (prefetched =>
 * true), which does the offline fallback, write-back and statuses without a
 * second Redis round.  Anything it cannot serve — an unknown view or
 * feature, non-text keys, feature types it does not convert, a NULL entity
 * — goes to the PL/pgSQL implementation unchanged, so error messages live
 * in one place.
 *
 * Invariants:
 *	- Privileges are those of the calling user on the user's own tables (the
 *	  online and offline table), checked as the equivalent statement would
 *	  (fv_require_privilege): the fast path reads Redis without a statement,
 *	  so it checks SELECT on the online, offline and serving tables first.
 *	- Nothing from pgpoly's tables is trusted: the view is looked up through
 *	  pgpoly._fv_lookup(), which re-derives the types from the catalog and
 *	  reports a definition that does not fit its tables (fv_problem).
 *
 * src/features.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "../fdw/redis.h"

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
	TupleDesc	desc;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	bool		from_offline;
	FvSource	src;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	src = fv_serve(PG_ARGISNULL(0) ? NULL : &fresh, &on, &off, &from_offline);
	values[0] = CStringGetTextDatum(fv_source_names[src]);
	values[1] = BoolGetDatum(from_offline);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls)));
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
 * transaction or on a hot standby, and INSERT and UPDATE (an upsert) on the
 * user's online table and on the serving table.
 */
static bool
fv_may_write(Oid online, Oid serving)
{
	if (XactReadOnly || RecoveryInProgress())
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

/*
 * Why a view's stored names do not fit its tables, or NULL; fills types[]
 * (nfeat entries) with the feature columns' types as it checks them.
 */
static char *
fv_problem(const char *view, Oid online, Oid offline, Oid serving,
		   const char *key_column, const char *entity_column,
		   Datum *features, int nfeat, char **key_type, char **entity_type,
		   Datum *types)
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
 * key_column, entity_column, features): the catalog's types and quoted
 * names for a view's stored names, and the problem if they do not fit.
 * Any NULL argument is itself the problem.
 */
Datum
pgpoly_fv_describe(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Datum		values[6] = {0};
	bool		nulls[6] = {true, true, true, true, true, true};
	Datum	   *features = NULL;
	Datum	   *types = NULL;
	char	   *key_type = NULL;
	char	   *entity_type = NULL;
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
						 features, nfeat, &key_type, &entity_type, types);
	if (problem == NULL)
	{
		values[0] = CStringGetTextDatum(key_type);
		values[1] = CStringGetTextDatum(entity_type);
		values[2] = PointerGetDatum(construct_array(types, nfeat, TEXTOID, -1, false,
													TYPALIGN_INT));
		values[3] = CStringGetTextDatum(fv_rel_text(PG_GETARG_OID(2)));
		values[4] = CStringGetTextDatum(fv_rel_text(PG_GETARG_OID(3)));
		for (int i = 0; i < 5; i++)
			nulls[i] = false;
	}
done:
	if (problem != NULL)
	{
		values[5] = CStringGetTextDatum(problem);
		nulls[5] = false;
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

/* ----------------------------------------------------------------
 *		The serving fast path
 * ----------------------------------------------------------------
 */

/* What the fast path needs to know about a view. */
typedef struct ServeView
{
	Oid			serving;		/* serving table */
	Oid			online;			/* the user's tables */
	Oid			offline;
	bool		has_ttl;
	TimestampTz fresh;			/* when has_ttl: oldest fresh event time */
	List	   *features;		/* char *, all features of the view */
} ServeView;

static SPIPlanPtr view_plan = NULL;

static bool simple_json_type(Oid typid);

/*
 * Look view up through pgpoly._fv_lookup() (cached plan); false if it does
 * not exist or cannot be used (the PL/pgSQL side then says why).
 */
static bool
load_view(text *view, ServeView *sv, MemoryContext cxt)
{
	Datum		arg = PointerGetDatum(view);
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;
	ArrayType  *feats;
	Datum	   *elems;
	Datum		fresh;
	int			n;

	if (view_plan == NULL)
	{
		Oid			argtype = TEXTOID;
		SPIPlanPtr	p = SPI_prepare("SELECT l.serving_table, l.online_table, l.offline_table, "
									"l.fresh, l.features FROM pgpoly._fv_lookup($1) l "
									"WHERE l.problem IS NULL", 1, &argtype);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "could not prepare the feature view lookup");
		view_plan = p;
	}
	if (SPI_execute_plan(view_plan, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "feature view lookup failed");
	if (SPI_processed == 0)
		return false;

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	sv->serving = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
	sv->online = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
	sv->offline = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull));
	fresh = SPI_getbinval(tup, desc, 4, &isnull);
	sv->has_ttl = !isnull;
	sv->fresh = isnull ? 0 : DatumGetTimestampTz(fresh);
	feats = DatumGetArrayTypeP(SPI_getbinval(tup, desc, 5, &isnull));
	deconstruct_array(feats, TEXTOID, -1, false, TYPALIGN_INT, &elems, NULL, &n);
	sv->features = NIL;
	for (int i = 0; i < n; i++)
		sv->features = lappend(sv->features,
							   MemoryContextStrdup(cxt, TextDatumGetCString(elems[i])));
	return true;
}

/*
 * Run the PL/pgSQL implementation and copy its rows into the result;
 * prefetched (may be NULL) holds the online round's keys, event times and
 * features as three arrays.
 */
static void
serve_general(FunctionCallInfo fcinfo, ReturnSetInfo *rsinfo, Datum *prefetched)
{
	Oid			argtypes[7] = {TEXTOID, TEXTARRAYOID, TEXTARRAYOID, BOOLOID,
	TEXTARRAYOID, TIMESTAMPTZARRAYOID, JSONBARRAYOID};
	Datum		args[7];
	char		nulls[7];

	for (int i = 0; i < 3; i++)
	{
		args[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}
	args[3] = BoolGetDatum(prefetched != NULL);
	nulls[3] = ' ';
	for (int i = 0; i < 3; i++)
	{
		args[4 + i] = prefetched ? prefetched[i] : (Datum) 0;
		nulls[4 + i] = prefetched ? ' ' : 'n';
	}
	if (SPI_execute_with_args("SELECT * FROM pgpoly._get_online_features($1, $2, $3, $4, $5, $6, $7)",
							  7, argtypes, args, nulls, false, 0) != SPI_OK_SELECT)
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
feature_columns(RedisTable *tbl, ServeView *sv, ArrayType *req,
				List **names, List **atts)
{
	List	   *want = sv->features;
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
			foreach(lc, sv->features)
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

/* The features of one Redis row as jsonb, like jsonb_build_object(). */
static Datum
features_jsonb(RedisTable *tbl, List *names, List *atts, Datum *values,
			   bool *nulls)
{
	JsonbParseState *ps = NULL;
	JsonbValue *res;
	ListCell   *ln,
			   *la;

	pushJsonbValue(&ps, WJB_BEGIN_OBJECT, NULL);
	forboth(ln, names, la, atts)
	{
		int			i = lfirst_int(la) - 1;
		JsonbValue	k;
		JsonbValue	v;

		k.type = jbvString;
		k.val.string.val = lfirst(ln);
		k.val.string.len = strlen(lfirst(ln));
		pushJsonbValue(&ps, WJB_KEY, &k);
		PgpolyJsonbValue(&v, values[i], tbl->cols[i].typid, nulls[i]);
		pushJsonbValue(&ps, WJB_VALUE, &v);
	}
	res = pushJsonbValue(&ps, WJB_END_OBJECT, NULL);
	return JsonbPGetDatum(JsonbValueToJsonb(res));
}

/* One entity's answer. */
typedef struct Served
{
	bool		found;
	Datum		features;
	Datum		event_time;
	bool		et_null;
} Served;

/*
 * Fetch the distinct keys from Redis into served[], in rounds of
 * fetch_size.  Returns whether the serving rule serves every key from
 * online as it is.
 */
static bool
fetch_online(RedisTable *tbl, ServeView *sv, char **keys, size_t *lens, int n,
			 List *names, List *atts, Served *served)
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
			FvValue		on = {false, true, 0};
			bool		from_offline;

			sd->found = RedisStateRowCount(tbl, st) > 0;
			if (sd->found)
			{
				RedisStateRow(scan, st, 0, values, nulls);
				sd->et_null = nulls[et - 1];
				sd->event_time = sd->et_null ? (Datum) 0 : values[et - 1];
				sd->features = features_jsonb(tbl, names, atts, values, nulls);
				on.found = true;
				on.et_null = sd->et_null;
				on.et = sd->et_null ? 0 : DatumGetTimestampTz(sd->event_time);
			}
			if (fv_serve(sv->has_ttl ? &sv->fresh : NULL, &on, &none,
						 &from_offline) != FV_ONLINE)
				all_online = false;
		}
	}
	return all_online;
}

/* The online round's findings as the three arrays _get_online_features takes. */
static void
prefetched_arrays(char **keys, int n, Served *served, size_t prefixlen,
				  Datum *out)
{
	ArrayBuildState *k = initArrayResult(TEXTOID, CurrentMemoryContext, false);
	ArrayBuildState *e = initArrayResult(TIMESTAMPTZOID, CurrentMemoryContext, false);
	ArrayBuildState *f = initArrayResult(JSONBOID, CurrentMemoryContext, false);

	for (int i = 0; i < n; i++)
	{
		if (!served[i].found)
			continue;
		accumArrayResult(k, CStringGetTextDatum(keys[i] + prefixlen), false,
						 TEXTOID, CurrentMemoryContext);
		accumArrayResult(e, served[i].event_time, served[i].et_null,
						 TIMESTAMPTZOID, CurrentMemoryContext);
		accumArrayResult(f, served[i].features, false, JSONBOID, CurrentMemoryContext);
	}
	out[0] = makeArrayResult(k, CurrentMemoryContext);
	out[1] = makeArrayResult(e, CurrentMemoryContext);
	out[2] = makeArrayResult(f, CurrentMemoryContext);
}

/*
 * Make the online round.  Answers at once when the rule serves every entity
 * from online (returns true); otherwise fills prefetched[3] for the PL/pgSQL
 * path (returns false, *fetched true).  Returns false with *fetched false
 * when the call is not one it can serve.  The caller checked privileges.
 */
static bool
serve_fast(FunctionCallInfo fcinfo, ReturnSetInfo *rsinfo, ServeView *sv,
		   Datum *prefetched, bool *fetched)
{
	ArrayType  *ents = PG_GETARG_ARRAYTYPE_P(1);
	RedisTable *tbl;
	List	   *names = NIL;
	List	   *atts = NIL;
	RedisKeySet *seen = RedisKeySetCreate(CurrentMemoryContext, 0);
	Datum	   *elems;
	bool	   *enulls;
	int		   *slot;
	char	  **keys;
	size_t	   *lens;
	Served	   *served;
	int			n;
	int			nd = 0;
	Oid			keytype;

	*fetched = false;
	tbl = RedisLoadTable(sv->serving, GetUserId());
	keytype = tbl->cols[tbl->key_att - 1].typid;
	if ((keytype != TEXTOID && keytype != VARCHAROID) ||
		column_named(tbl, "_event_time") == 0 ||
		!feature_columns(tbl, sv, PG_ARGISNULL(2) ? NULL : PG_GETARG_ARRAYTYPE_P(2),
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
	served = palloc(sizeof(Served) * Max(nd, 1));
	if (!fetch_online(tbl, sv, keys, lens, nd, names, atts, served))
	{
		prefetched_arrays(keys, nd, served, tbl->prefixlen, prefetched);
		*fetched = true;
		return false;
	}

	for (int i = 0; i < n; i++)
	{
		Datum		v[4] = {elems[i], served[slot[i]].features,
		served[slot[i]].event_time, CStringGetTextDatum("online")};
		bool		nl[4] = {false, false, served[slot[i]].et_null, false};

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, nl);
	}
	return true;
}

/* One call's work, with its scratch memory in cxt. */
static void
serve(FunctionCallInfo fcinfo, ReturnSetInfo *rsinfo, MemoryContext cxt)
{
	MemoryContext old;
	ServeView	sv;
	Datum		prefetched[3];
	bool		fetched = false;
	bool		done = false;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	old = MemoryContextSwitchTo(cxt);
	if (!PG_ARGISNULL(0) && load_view(PG_GETARG_TEXT_PP(0), &sv, cxt))
	{
		/* as a SELECT of the tables the call reads (online, offline) */
		fv_require_privilege(sv.online, ACL_SELECT);
		fv_require_privilege(sv.offline, ACL_SELECT);
		fv_require_privilege(sv.serving, ACL_SELECT);
		if (!PG_ARGISNULL(1))
			done = serve_fast(fcinfo, rsinfo, &sv, prefetched, &fetched);
	}
	if (!done)
		serve_general(fcinfo, rsinfo, fetched ? prefetched : NULL);
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
		serve(fcinfo, rsinfo, cxt);
	}
	PG_FINALLY();
	{
		depth--;
	}
	PG_END_TRY();
	MemoryContextReset(cxt);
	PG_RETURN_VOID();
}
