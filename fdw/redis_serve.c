/*-------------------------------------------------------------------------
 *
 * redis_serve.c
 *		  The serving fast path of pgpoly.get_online_features().
 *
 * Online serving is the feature store's latency-critical call: many
 * entities, one pipelined Redis round, an answer in well under a
 * millisecond.  The general implementation is pgpoly._get_online_features()
 * in PL/pgSQL (extension/30_features.sql), whose planning and parsing of
 * several statements per call costs more than the Redis round itself.  This
 * file makes the Redis round itself for a view with a text key: it reads
 * the serving table through the same Redis scan code as the FDW (so
 * buffered writes of the transaction are seen) and builds each entity's
 * features like the SQL path does.  If every entity is online and fresh it
 * answers at once; otherwise it passes what it fetched to the PL/pgSQL
 * implementation (prefetched => true), which does the offline fallback,
 * backfill and statuses without a second Redis round.  Anything it cannot
 * serve — an unknown view or feature, non-text keys, a NULL entity, missing
 * privileges — goes to the PL/pgSQL implementation unchanged, so the rules
 * and error messages live in one place.
 *
 * fdw/redis_serve.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
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
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "redis.h"

/* What the fast path needs to know about a view. */
typedef struct ServeView
{
	Oid			serving;		/* serving table */
	bool		text_key;
	Datum		ttl;			/* interval, or 0 when NULL */
	List	   *features;		/* char *, all features of the view */
} ServeView;

static SPIPlanPtr view_plan = NULL;

static bool simple_json_type(Oid typid);

/* Look view up (cached plan); false if it does not exist. */
static bool
load_view(text *view, ServeView *sv, MemoryContext cxt)
{
	Datum		arg = PointerGetDatum(view);
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;
	ArrayType  *feats;
	Datum	   *elems;
	int			n;

	if (view_plan == NULL)
	{
		Oid			argtype = TEXTOID;
		SPIPlanPtr	p = SPI_prepare("SELECT s.serving_table, s.key_type IN ('text', 'character varying'), "
									"f.ttl, s.features FROM pgpoly.feature_views f "
									"JOIN pgpoly._feature_view_storage s ON s.view_name = f.name "
									"WHERE f.name = $1", 1, &argtype);

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
	sv->text_key = DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull));
	sv->ttl = SPI_getbinval(tup, desc, 3, &isnull);
	sv->ttl = isnull ? (Datum) 0 : datumCopy(sv->ttl, false, sizeof(Interval));
	feats = DatumGetArrayTypeP(SPI_getbinval(tup, desc, 4, &isnull));
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

/* The jsonb scalar (or container) for value, as jsonb_build_object() makes it. */
static void
json_value(JsonbValue *jv, Datum value, Oid typid, FmgrInfo *outfn)
{
	char		dt[MAXDATELEN + 1];
	char	   *s;

	switch (typid)
	{
		case BOOLOID:
			jv->type = jbvBool;
			jv->val.boolean = DatumGetBool(value);
			return;
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			s = pstrdup(JsonEncodeDateTime(dt, value, typid, NULL));
			break;
		case JSONBOID:
			{
				Jsonb	   *jb = DatumGetJsonbP(value);

				jv->type = jbvBinary;
				jv->val.binary.data = &jb->root;
				jv->val.binary.len = VARSIZE(jb) - VARHDRSZ;
				return;
			}
		default:
			s = OutputFunctionCall(outfn, value);
			if (typid != TEXTOID && typid != VARCHAROID && typid != BPCHAROID &&
				(s[0] == '-' || isdigit((unsigned char) s[0])) &&
				strcmp(s, "-Infinity") != 0)
			{
				jv->type = jbvNumeric;
				jv->val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in,
																	  CStringGetDatum(s),
																	  ObjectIdGetDatum(InvalidOid),
																	  Int32GetDatum(-1)));
				return;
			}
			break;
	}
	jv->type = jbvString;
	jv->val.string.val = s;
	jv->val.string.len = strlen(s);
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
		if (nulls[i])
			v.type = jbvNull;
		else
			json_value(&v, values[i], tbl->cols[i].typid, &tbl->cols[i].outfn);
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
 * fetch_size.  Returns whether every key is present and fresh.
 */
static bool
fetch_online(RedisTable *tbl, ServeView *sv, char **keys, size_t *lens, int n,
			 List *names, List *atts, Served *served)
{
	RedisScan  *scan = RedisScanBegin(tbl, RedisGetConnection(tbl), false);
	AttrNumber	et = column_named(tbl, "_event_time");
	Datum	   *values = palloc(sizeof(Datum) * tbl->natts);
	bool	   *nulls = palloc(sizeof(bool) * tbl->natts);
	TimestampTz fresh = DT_NOBEGIN;
	bool		all_fresh = true;

	if (sv->ttl != (Datum) 0)
		fresh = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
														TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
														sv->ttl));
	for (int off = 0; off < n; off += tbl->fetch_size)
	{
		int			m = Min(tbl->fetch_size, n - off);

		RedisScanFetchKeys(scan, keys + off, lens + off, m);
		for (int i = 0; i < m; i++)
		{
			RedisKeyState *st = RedisScanRoundState(scan, i);
			Served	   *sd = &served[off + i];

			sd->found = RedisStateRowCount(tbl, st) > 0;
			if (!sd->found)
			{
				all_fresh = false;
				continue;
			}
			RedisStateRow(scan, st, 0, values, nulls);
			sd->et_null = nulls[et - 1];
			sd->event_time = sd->et_null ? (Datum) 0 : values[et - 1];
			sd->features = features_jsonb(tbl, names, atts, values, nulls);
			if (sv->ttl != (Datum) 0 &&
				(sd->et_null || DatumGetTimestampTz(sd->event_time) < fresh))
				all_fresh = false;
		}
	}
	return all_fresh;
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
 * Make the online round.  Answers at once when every entity is online and
 * fresh (returns true); otherwise fills prefetched[3] for the PL/pgSQL path
 * (returns false, *fetched true).  Returns false with *fetched false when
 * the call is not one it can serve.
 */
static bool
serve_fast(FunctionCallInfo fcinfo, ReturnSetInfo *rsinfo, ServeView *sv,
		   Datum *prefetched, bool *fetched)
{
	ArrayType  *ents = PG_GETARG_ARRAYTYPE_P(1);
	RedisTable *tbl;
	List	   *names = NIL;
	List	   *atts = NIL;
	HTAB	   *seen = RedisKeySet(CurrentMemoryContext);
	Datum	   *elems;
	bool	   *enulls;
	int		   *slot;
	char	  **keys;
	size_t	   *lens;
	Served	   *served;
	int			n;
	int			nd = 0;

	*fetched = false;
	if (!sv->text_key ||
		pg_class_aclcheck(sv->serving, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		return false;
	tbl = RedisLoadTable(sv->serving, GetUserId());
	if (column_named(tbl, "_event_time") == 0 ||
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
		key = RedisKeyFromDatum(tbl, elems[i], &lens[nd]);
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
	if (!PG_ARGISNULL(0) && !PG_ARGISNULL(1) &&
		load_view(PG_GETARG_TEXT_PP(0), &sv, cxt))
		done = serve_fast(fcinfo, rsinfo, &sv, prefetched, &fetched);
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
