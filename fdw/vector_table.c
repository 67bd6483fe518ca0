/*-------------------------------------------------------------------------
 *
 * vector_table.c
 *		  Options of pgpoly_vector objects and the column roles of a table.
 *
 * VectorLoadTable() resolves a foreign table into a VectorTable without
 * network I/O: options with defaults, and what each column stands for.
 * Columns are recognised by name (id, embedding, document, metadata,
 * _distance); any other column, or one with the option field, maps to a
 * metadata key.  A column whose type does not fit its role is an ERROR at
 * first use that names the column and the expected type.
 *
 * Resolved tables are cached per backend, by table and user
 * (src/tablecache.c, which says when entries are dropped): a k-NN query's
 * every execution would otherwise read the catalogs and set up the
 * columns' conversions again.  Invariant: a caller gets its own copy of
 * the VectorTable; the columns, options, server and user mapping it points
 * to are the cache's and read-only.
 *
 * fdw/vector_table.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/htup_details.h"
#include "access/reloptions.h"
#include "access/table.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_foreign_table.h"
#include "catalog/pg_type.h"
#include "catalog/pg_user_mapping.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "vector.h"

const PgpolyOption VectorOptions[] = {
	{"url", ForeignServerRelationId, PGPOLY_OPT_URL, 0, 0, NULL, false},
	{"provider", ForeignServerRelationId, PGPOLY_OPT_ENUM, 0, 0, "chroma,qdrant", false},
	{"tenant", ForeignServerRelationId, PGPOLY_OPT_STRING, 1, 0, NULL, false},
	{"database", ForeignServerRelationId, PGPOLY_OPT_STRING, 1, 0, NULL, false},
	{"connect_timeout_ms", ForeignServerRelationId, PGPOLY_OPT_INT, 1, INT_MAX, NULL, false},
	{"timeout_ms", ForeignServerRelationId, PGPOLY_OPT_INT, 1, INT_MAX, NULL, false},
	{"api_key", UserMappingRelationId, PGPOLY_OPT_HEADER, 1, 0, NULL, true},
	{"password_required", UserMappingRelationId, PGPOLY_OPT_BOOL, 0, 0, NULL, false},
	{"collection", ForeignTableRelationId, PGPOLY_OPT_STRING, 1, 0, NULL, false},
	{"batch_size", ForeignTableRelationId, PGPOLY_OPT_INT, 1, 100000, NULL, false},
	{"fetch_size", ForeignTableRelationId, PGPOLY_OPT_INT, 1, 100000, NULL, false},
	{"use_remote_estimate", ForeignTableRelationId, PGPOLY_OPT_BOOL, 0, 0, NULL, false},
	{"write_mode", ForeignTableRelationId, PGPOLY_OPT_ENUM, 0, 0, "transactional,immediate,outbox", false},
	{"create_collection", ForeignTableRelationId, PGPOLY_OPT_BOOL, 0, 0, NULL, false},
	{"distance", ForeignTableRelationId, PGPOLY_OPT_ENUM, 0, 0, "l2,cosine,ip", false},
	{"field", AttributeRelationId, PGPOLY_OPT_STRING, 1, 0, NULL, false},
	{NULL}
};

/*
 * Server options that only one provider uses (README, Options): set on a
 * server of another provider they would be silently ignored.
 */
static const struct
{
	const char *option;
	const char *provider;
}			ProviderOnlyOptions[] = {
	{"tenant", "chroma"},
	{"database", "chroma"},
};

/*
 * ERROR (HV00D) if a server's options hold an option of another provider
 * than theirs.  ALTER SERVER gives the validator the resulting options, so
 * changing the provider of a server is checked too.
 */
static void
check_provider_options(List *options)
{
	const char *provider = PgpolyGetOption(options, "provider", "chroma");

	for (int i = 0; i < lengthof(ProviderOnlyOptions); i++)
		if (strcmp(provider, ProviderOnlyOptions[i].provider) != 0 &&
			PgpolyGetOption(options, ProviderOnlyOptions[i].option, NULL) != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("option \"%s\" is not used by provider \"%s\"",
							ProviderOnlyOptions[i].option, provider),
					 errhint("Option \"%s\" is for provider \"%s\" servers only.",
							 ProviderOnlyOptions[i].option, ProviderOnlyOptions[i].provider)));
}

PG_FUNCTION_INFO_V1(pgpoly_vector_validator);

/* Validator of pgpoly_vector options (CREATE/ALTER of every object). */
Datum
pgpoly_vector_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));

	PgpolyValidateOptions(VectorOptions, options, PG_GETARG_OID(1));
	if (PG_GETARG_OID(1) == ForeignServerRelationId)
		check_provider_options(options);
	PG_RETURN_VOID();
}

/* Parse a distance option value ("l2", "cosine", "ip"); unknown otherwise. */
VectorDistance
VectorParseDistance(const char *s)
{
	if (s == NULL)
		return VDIST_UNKNOWN;
	if (strcmp(s, "l2") == 0)
		return VDIST_L2;
	if (strcmp(s, "cosine") == 0)
		return VDIST_COSINE;
	if (strcmp(s, "ip") == 0)
		return VDIST_IP;
	return VDIST_UNKNOWN;
}

/* The option spelling of a distance. */
const char *
VectorDistanceName(VectorDistance d)
{
	static const char *const names[] = {"unknown", "l2", "cosine", "ip"};

	return names[d];
}

/* The SQL operator whose metric is d. */
const char *
VectorOperatorName(VectorDistance d)
{
	static const char *const names[] = {"?", "<->", "<=>", "<#>"};

	return names[d];
}

/* The metric of a distance operator by name; VDIST_UNKNOWN if none. */
VectorDistance
VectorOperatorMetric(const char *opname)
{
	if (opname == NULL)
		return VDIST_UNKNOWN;
	if (strcmp(opname, "<->") == 0)
		return VDIST_L2;
	if (strcmp(opname, "<=>") == 0)
		return VDIST_COSINE;
	if (strcmp(opname, "<#>") == 0)
		return VDIST_IP;
	return VDIST_UNKNOWN;
}

/* Whether typid is pgvector's vector type (by name: it may be absent). */
bool
VectorIsVectorType(Oid typid)
{
	HeapTuple	tp = SearchSysCache1(TYPEOID, ObjectIdGetDatum(typid));
	bool		result;

	if (!HeapTupleIsValid(tp))
		return false;
	result = strcmp(NameStr(((Form_pg_type) GETSTRUCT(tp))->typname), "vector") == 0 &&
		((Form_pg_type) GETSTRUCT(tp))->typtype == TYPTYPE_BASE;
	ReleaseSysCache(tp);
	return result;
}

/* Complain that column name has a type that does not fit its role. */
static void
bad_type(VectorTable *tbl, VectorColumn *col, const char *expected)
{
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
			 errmsg("column \"%s\" of foreign table \"%s\" has type %s",
					col->name, tbl->relname, format_type_be(col->typid)),
			 errhint("A pgpoly_vector column \"%s\" must be of type %s.",
					 col->name, expected)));
}

/* Decide the role of column col (named name, with options opts). */
static void
set_role(VectorTable *tbl, VectorColumn *col, AttrNumber attnum, List *opts)
{
	const char *field = PgpolyGetOption(opts, "field", NULL);

	if (field != NULL)
		col->role = VCOL_FIELD;
	else if (strcmp(col->name, "id") == 0)
		col->role = VCOL_ID;
	else if (strcmp(col->name, "embedding") == 0)
		col->role = VCOL_EMBEDDING;
	else if (strcmp(col->name, "document") == 0)
		col->role = VCOL_DOCUMENT;
	else if (strcmp(col->name, "metadata") == 0)
		col->role = VCOL_METADATA;
	else if (strcmp(col->name, "_distance") == 0)
		col->role = VCOL_DISTANCE;
	else
		col->role = VCOL_FIELD;
	col->field = pstrdup(field ? field : col->name);

	switch (col->role)
	{
		case VCOL_ID:
			if (col->typid != TEXTOID && col->typid != VARCHAROID)
				bad_type(tbl, col, "text");
			tbl->id_att = attnum;
			break;
		case VCOL_EMBEDDING:
			if (col->typid != FLOAT4ARRAYOID && !VectorIsVectorType(col->typid))
				bad_type(tbl, col, "real[] (or pgvector's vector)");
			tbl->emb_att = attnum;
			break;
		case VCOL_DOCUMENT:
			if (col->typid != TEXTOID && col->typid != VARCHAROID)
				bad_type(tbl, col, "text");
			tbl->doc_att = attnum;
			break;
		case VCOL_METADATA:
			if (col->typid != JSONBOID)
				bad_type(tbl, col, "jsonb");
			tbl->meta_att = attnum;
			break;
		case VCOL_DISTANCE:
			if (col->typid != FLOAT8OID)
				bad_type(tbl, col, "double precision");
			tbl->dist_att = attnum;
			break;
		default:
			tbl->has_fields = true;
			break;
	}
}

/* Resolve the columns of rel into tbl->cols. */
static void
load_columns(VectorTable *tbl, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);

	tbl->natts = desc->natts;
	tbl->cols = palloc0(sizeof(VectorColumn) * Max(desc->natts, 1));
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);
		VectorColumn *col = &tbl->cols[i];

		if (a->attisdropped)
			continue;
		col->name = pstrdup(NameStr(a->attname));
		col->typid = a->atttypid;
		col->typmod = a->atttypmod;
		col->is_array = type_is_array(a->atttypid);
		PgpolyConvInit(&col->conv, col->typid, col->typmod, col->name);
		set_role(tbl, col, i + 1, GetForeignColumnOptions(tbl->relid, i + 1));
	}
	if (tbl->id_att == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_COLUMN_NAME_NOT_FOUND),
				 errmsg("foreign table \"%s\" has no column \"id\"", tbl->relname),
				 errhint("A pgpoly_vector table needs an id text column.")));
}

/*
 * Resolve foreign table relid for userid (whose user mapping, if any, the
 * connection uses), in the current memory context.
 */
static void *
load_table(Oid relid, Oid userid)
{
	VectorTable *tbl = palloc0(sizeof(VectorTable));
	ForeignTable *ft = GetForeignTable(relid);
	Relation	rel;

	tbl->relid = relid;
	tbl->relname = get_rel_name(relid);
	tbl->server = GetForeignServer(ft->serverid);
	tbl->provider = VectorServerProvider(tbl->server);
	tbl->user = PgpolyGetUserMapping(userid, ft->serverid);
	tbl->collection = pstrdup(PgpolyGetOption(ft->options, "collection", tbl->relname));
	tbl->batch_size = (int) PgpolyGetIntOption(ft->options, "batch_size", 500);
	tbl->fetch_size = (int) PgpolyGetIntOption(ft->options, "fetch_size", 1000);
	tbl->remote_estimate = PgpolyGetBoolOption(ft->options, "use_remote_estimate", false);
	tbl->transactional = strcmp(PgpolyGetOption(ft->options, "write_mode",
												"transactional"), "transactional") == 0;
	tbl->create = PgpolyGetBoolOption(ft->options, "create_collection", false);
	tbl->distance = VectorParseDistance(PgpolyGetOption(ft->options, "distance", NULL));

	rel = table_open(relid, AccessShareLock);
	PG_TRY();
	{
		load_columns(tbl, rel);
	}
	PG_FINALLY();
	{
		table_close(rel, AccessShareLock);
	}
	PG_END_TRY();
	return tbl;
}

/*
 * Foreign table relid as seen by userid: a VectorTable palloc'd in the
 * current memory context, whose columns, options, server and user mapping
 * belong to the cache (read-only).
 */
VectorTable *
VectorLoadTable(Oid relid, Oid userid)
{
	static PgpolyTableCache *cache = NULL;
	VectorTable *copy = palloc(sizeof(VectorTable));

	if (cache == NULL)
		cache = PgpolyTableCacheCreate("pgpoly vector tables", load_table);
	*copy = *(VectorTable *) PgpolyTableCacheGet(cache, relid, userid);
	return copy;
}
