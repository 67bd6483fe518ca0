/*-------------------------------------------------------------------------
 *
 * redis_table.c
 *		  Options of pgpoly_redis objects and the column roles of a table.
 *
 * RedisLoadTable() resolves a foreign table into a RedisTable: options with
 * defaults applied, and the role of every column for its table_type.  It
 * does no network I/O, so the planner can call it freely.  A table whose
 * columns do not fit its table_type is an ERROR that says which column is
 * wrong and what the type expects.
 *
 * Resolved tables are cached per backend, by table and user
 * (src/tablecache.c, which says when entries are dropped).  Invariant: a
 * caller gets its own copy of the RedisTable (it may set target and the
 * columns' hints); the columns, options and conversions it points to are
 * the cache's and read-only.
 *
 * fdw/redis_table.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/reloptions.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_foreign_table.h"
#include "catalog/pg_type.h"
#include "catalog/pg_user_mapping.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "redis.h"

#define REDIS_TYPES "hash,string,json,zset,set,list"
#define REDIS_TYPES_TEXT "hash, string, json, zset, set, list"

const PgpolyOption RedisOptions[] = {
	{"host", ForeignServerRelationId, PGPOLY_OPT_STRING, 1, 0, NULL, false},
	{"port", ForeignServerRelationId, PGPOLY_OPT_INT, 1, 65535, NULL, false},
	{"unix_socket", ForeignServerRelationId, PGPOLY_OPT_SOCKET, 0, 0, NULL, false},
	{"db", ForeignServerRelationId, PGPOLY_OPT_INT, 0, 1000000, NULL, false},
	{"connect_timeout_ms", ForeignServerRelationId, PGPOLY_OPT_INT, 1, INT_MAX, NULL, false},
	{"timeout_ms", ForeignServerRelationId, PGPOLY_OPT_INT, 1, INT_MAX, NULL, false},
	{"cluster", ForeignServerRelationId, PGPOLY_OPT_BOOL, 0, 0, NULL, false},
	{"nodes", ForeignServerRelationId, PGPOLY_OPT_STRING, 1, 0, NULL, false},
	{"sentinels", ForeignServerRelationId, PGPOLY_OPT_STRING, 1, 0, NULL, false},
	{"sentinel_master", ForeignServerRelationId, PGPOLY_OPT_STRING, 1, 0, NULL, false},
	{"sentinel_check_ms", ForeignServerRelationId, PGPOLY_OPT_INT, 0, INT_MAX, NULL, false},
	{"user", UserMappingRelationId, PGPOLY_OPT_STRING, 1, 0, NULL, false},
	{"password", UserMappingRelationId, PGPOLY_OPT_STRING, 0, 0, NULL, true},
	{"password_required", UserMappingRelationId, PGPOLY_OPT_BOOL, 0, 0, NULL, false},
	{"table_type", ForeignTableRelationId, PGPOLY_OPT_ENUM, 0, 0, REDIS_TYPES, false},
	{"key_prefix", ForeignTableRelationId, PGPOLY_OPT_STRING, 0, 0, NULL, false},
	{"ttl_seconds", ForeignTableRelationId, PGPOLY_OPT_INT, 1, INT_MAX, NULL, false},
	{"write_mode", ForeignTableRelationId, PGPOLY_OPT_ENUM, 0, 0, "transactional,immediate,outbox", false},
	{"batch_size", ForeignTableRelationId, PGPOLY_OPT_INT, 1, 1000000, NULL, false},
	{"fetch_size", ForeignTableRelationId, PGPOLY_OPT_INT, 1, 1000000, NULL, false},
	{"watch_limit", ForeignTableRelationId, PGPOLY_OPT_INT, 0, 1000000, NULL, false},
	{"use_remote_estimate", ForeignTableRelationId, PGPOLY_OPT_BOOL, 0, 0, NULL, false},
	{"key", AttributeRelationId, PGPOLY_OPT_BOOL, 0, 0, NULL, false},
	{"field", AttributeRelationId, PGPOLY_OPT_STRING, 1, 0, NULL, false},
	{NULL}
};

/*
 * write_mode 'outbox' delivers each change by the key of its row, so it
 * needs a table whose rows are keys: hash, json or string.
 */
static void
check_outbox_type(List *options)
{
	const char *type = PgpolyGetOption(options, "table_type", "hash");

	if (strcmp(PgpolyGetOption(options, "write_mode", ""), "outbox") != 0 ||
		strcmp(type, "hash") == 0 || strcmp(type, "json") == 0 ||
		strcmp(type, "string") == 0)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
			 errmsg("write_mode 'outbox' is not supported for table_type '%s'", type),
			 errdetail("The outbox delivers each change by the key of its row; a %s member or element is not a row of its own key.",
					   type),
			 errhint("Use write_mode 'outbox' with hash, json or string tables.")));
}

PG_FUNCTION_INFO_V1(pgpoly_redis_validator);

/*
 * Validator of pgpoly_redis options (CREATE/ALTER of every object).  A
 * server's options must also describe exactly one topology.
 */
Datum
pgpoly_redis_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	RedisTopology topo;
	Oid			context = PG_GETARG_OID(1);

	PgpolyValidateOptions(RedisOptions, options, context);
	if (context == ForeignServerRelationId)
		RedisTopologyFromOptions(options, &topo);
	if (context == ForeignTableRelationId)
		check_outbox_type(options);
	PG_RETURN_VOID();
}

/* Parse table_type. */
static RedisTableType
parse_table_type(const char *s)
{
	static const char *const names[] = {"hash", "string", "json", "zset", "set", "list"};
	int			i;

	for (i = 0; i < lengthof(names); i++)
		if (strcmp(s, names[i]) == 0)
			return (RedisTableType) i;
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
			 errmsg("invalid value for option \"table_type\": \"%s\"", s),
			 errhint("Valid values are: " REDIS_TYPES_TEXT ".")));
	return REDIS_HASH;			/* keep compiler quiet */
}

/* Complain that column name does not fit the table type. */
static void
bad_column(RedisTable *tbl, const char *name, const char *expected)
{
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_COLUMN_NAME),
			 errmsg("column \"%s\" of foreign table \"%s\" does not fit table_type '%s'",
					name, tbl->relname, tbl->type_name),
			 errhint("A '%s' table has %s.", tbl->type_name, expected)));
}

/* Columns each collection type expects, for messages. */
static const char *
expected_columns(RedisTableType type)
{
	switch (type)
	{
		case REDIS_HASH:
		case REDIS_JSON:
			return "a key column plus one column per field";
		case REDIS_STRING:
			return "a key column and one value column";
		case REDIS_ZSET:
			return "columns key, member (text) and score (float8)";
		case REDIS_SET:
			return "columns key and member (text)";
		case REDIS_LIST:
			return "columns key, idx (int) and value";
	}
	return "";
}

/* Decide the role of a non-key, non-_ttl column for the table's type. */
static RedisColRole
column_role(RedisTable *tbl, const char *name, AttrNumber attnum)
{
	switch (tbl->type)
	{
		case REDIS_HASH:
		case REDIS_JSON:
			return RCOL_FIELD;
		case REDIS_STRING:
			if (tbl->value_att != 0)
				bad_column(tbl, name, expected_columns(tbl->type));
			tbl->value_att = attnum;
			return RCOL_VALUE;
		case REDIS_ZSET:
		case REDIS_SET:
			if (strcmp(name, "member") == 0)
			{
				tbl->member_att = attnum;
				return RCOL_MEMBER;
			}
			if (tbl->type == REDIS_ZSET && strcmp(name, "score") == 0)
			{
				tbl->score_att = attnum;
				return RCOL_SCORE;
			}
			break;
		case REDIS_LIST:
			if (strcmp(name, "idx") == 0)
			{
				tbl->idx_att = attnum;
				return RCOL_IDX;
			}
			if (strcmp(name, "value") == 0)
			{
				tbl->value_att = attnum;
				return RCOL_VALUE;
			}
			break;
	}
	bad_column(tbl, name, expected_columns(tbl->type));
	return RCOL_NONE;
}

/* Set up the conversions of a column (convert.c). */
static void
column_io(RedisTable *tbl, RedisColumn *col)
{
	PgpolyConvInit(&col->conv, col->typid, col->typmod, col->name);
	col->is_array = type_is_array(col->typid);
	/* a row opens one settings scope for the columns whose input needs it */
	if (col->conv.in_settings && !col->conv.in_fast)
		tbl->fixed_in = true;
}

/* Whether the column carries the option key 'true'. */
static bool
column_is_key(List *options, const char *name)
{
	return PgpolyGetBoolOption(options, "key", false);
}

/* Whether the column carries the option key 'false' (not merely no option). */
static bool
column_is_not_key(List *options)
{
	return PgpolyGetOption(options, "key", NULL) != NULL &&
		!PgpolyGetBoolOption(options, "key", false);
}

/* Resolve every column of rel into tbl->cols. */
static void
load_columns(RedisTable *tbl, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	AttrNumber	named_key = 0;
	AttrNumber	i;

	tbl->natts = desc->natts;
	tbl->cols = palloc0(sizeof(RedisColumn) * desc->natts);
	for (i = 1; i <= desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i - 1);
		RedisColumn *col = &tbl->cols[i - 1];
		List	   *opts;

		if (att->attisdropped)
			continue;
		opts = GetForeignColumnOptions(tbl->relid, i);
		col->name = pstrdup(NameStr(att->attname));
		col->typid = att->atttypid;
		col->typmod = att->atttypmod;
		col->field = pstrdup(PgpolyGetOption(opts, "field", col->name));
		col->fieldlen = strlen(col->field);
		/* a hash field is the store's UTF-8; a JSON field is read from jsonb */
		if (tbl->type != REDIS_JSON)
			col->field = (char *) PgpolyServerToStore(col->field, &col->fieldlen, false);
		column_io(tbl, col);

		if (column_is_key(opts, col->name))
		{
			if (tbl->key_att != 0)
				ereport(ERROR,
						(errcode(ERRCODE_FDW_INVALID_COLUMN_NAME),
						 errmsg("foreign table \"%s\" has more than one key column",
								tbl->relname)));
			tbl->key_att = i;
			col->role = RCOL_KEY;
		}
		else if (strcmp(col->name, "key") == 0 && !column_is_not_key(opts))
			named_key = i;
		else if (strcmp(col->name, "_ttl") == 0)
		{
			tbl->ttl_att = i;
			col->role = RCOL_TTL;
		}
		else
			col->role = column_role(tbl, col->name, i);
	}

	if (tbl->key_att == 0)
	{
		if (named_key == 0)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_COLUMN_NAME),
					 errmsg("foreign table \"%s\" has no key column", tbl->relname),
					 errhint("Name a column \"key\" or give it OPTIONS (key 'true').")));
		tbl->key_att = named_key;
		tbl->cols[named_key - 1].role = RCOL_KEY;
	}
	else if (named_key != 0)
		tbl->cols[named_key - 1].role = column_role(tbl, "key", named_key);
}

/* Check that the collection types got all the columns they need. */
static void
check_required_columns(RedisTable *tbl)
{
	bool		ok = true;

	switch (tbl->type)
	{
		case REDIS_STRING:
			ok = tbl->value_att != 0;
			break;
		case REDIS_ZSET:
			ok = tbl->member_att != 0 && tbl->score_att != 0;
			break;
		case REDIS_SET:
			ok = tbl->member_att != 0;
			break;
		case REDIS_LIST:
			ok = tbl->value_att != 0 && tbl->idx_att != 0;
			break;
		default:
			break;
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_COLUMN_NAME),
				 errmsg("foreign table \"%s\" lacks columns for table_type '%s'",
						tbl->relname, tbl->type_name),
				 errhint("A '%s' table has %s.", tbl->type_name,
						 expected_columns(tbl->type))));
}

/*
 * Resolve foreign table relid, as seen by userid (for the user mapping),
 * into a RedisTable allocated in the current memory context.
 */
static void *
load_table(Oid relid, Oid userid)
{
	RedisTable *tbl = palloc0(sizeof(RedisTable));
	ForeignTable *ft = GetForeignTable(relid);
	List	   *opts = ft->options;
	Relation	rel;

	tbl->relid = relid;
	tbl->relname = get_rel_name(relid);
	tbl->type_name = pstrdup(PgpolyGetOption(opts, "table_type", "hash"));
	tbl->type = parse_table_type(tbl->type_name);
	tbl->prefix = pstrdup(PgpolyServerToStoreCstr(PgpolyGetOption(opts, "key_prefix", ""),
												  false));
	tbl->prefixlen = strlen(tbl->prefix);
	tbl->ttl_seconds = (int) PgpolyGetIntOption(opts, "ttl_seconds", -1);
	tbl->fetch_size = (int) PgpolyGetIntOption(opts, "fetch_size", 1000);
	tbl->batch_size = (int) PgpolyGetIntOption(opts, "batch_size", 1000);
	tbl->watch_limit = (int) PgpolyGetIntOption(opts, "watch_limit", REDIS_WATCH_LIMIT);
	tbl->transactional =
		strcmp(PgpolyGetOption(opts, "write_mode", "transactional"), "transactional") == 0;
	tbl->remote_estimate = PgpolyGetBoolOption(opts, "use_remote_estimate", false);
	tbl->server = GetForeignServer(ft->serverid);
	tbl->user = PgpolyGetUserMapping(userid, ft->serverid);
	tbl->cluster = PgpolyGetOption(tbl->server->options, "nodes", NULL) != NULL ||
		PgpolyGetBoolOption(tbl->server->options, "cluster", false);

	rel = table_open(relid, AccessShareLock);
	load_columns(tbl, rel);
	table_close(rel, AccessShareLock);
	check_required_columns(tbl);
	return tbl;
}

/*
 * Foreign table relid as seen by userid (for the user mapping): a
 * RedisTable palloc'd in the current memory context, whose columns,
 * options and conversions belong to the cache (read-only; the columns'
 * hints excepted).
 */
RedisTable *
RedisLoadTable(Oid relid, Oid userid)
{
	static PgpolyTableCache *cache = NULL;
	RedisTable *copy = palloc(sizeof(RedisTable));

	if (cache == NULL)
		cache = PgpolyTableCacheCreate("pgpoly redis tables", load_table);
	*copy = *(RedisTable *) PgpolyTableCacheGet(cache, relid, userid);
	copy->target = NULL;
	return copy;
}

/*
 * PgpolyStore.shares_writes: whether foreign table relid reads the keys
 * that buffered write payload (a RedisWrite of another table of the same
 * server and user mapping) writes: a table of the same table_type whose
 * key_prefix and the writer's agree as far as the shorter goes (one's keys
 * may be the other's).  A feature view's serving table and the online table
 * it was made for (same server and key_prefix) thus see each other's
 * writes.  The overlay applies a write by key and field name, whichever
 * table made it.
 */
bool
RedisSharesWrites(Oid relid, void *payload)
{
	RedisTable *reader = RedisLoadTable(relid, GetUserId());
	const RedisTable *writer = ((RedisWrite *) payload)->tbl;

	return reader->type == writer->type &&
		memcmp(reader->prefix, writer->prefix,
			   Min(reader->prefixlen, writer->prefixlen)) == 0;
}

/*
 * The attnos of tbl's columns that attrs (pull_varattnos() form: offset by
 * FirstLowInvalidHeapAttributeNumber) reads; a whole-row reference reads
 * them all.  For the plan: a List of Integer.
 */
List *
RedisColumnsRead(RedisTable *tbl, Bitmapset *attrs)
{
	bool		whole = bms_is_member(0 - FirstLowInvalidHeapAttributeNumber, attrs);
	List	   *result = NIL;

	for (AttrNumber att = 1; att <= tbl->natts; att++)
		if (tbl->cols[att - 1].role != RCOL_NONE &&
			(whole || bms_is_member(att - FirstLowInvalidHeapAttributeNumber, attrs)))
			result = lappend_int(result, att);
	return result;
}

/* RedisColumnsRead's list as flags by attno - 1, palloc'd. */
bool *
RedisColumnsNeeded(RedisTable *tbl, List *attnos)
{
	bool	   *needed = palloc0(sizeof(bool) * Max(tbl->natts, 1));
	ListCell   *lc;

	foreach(lc, attnos)
		if (lfirst_int(lc) >= 1 && lfirst_int(lc) <= tbl->natts)
			needed[lfirst_int(lc) - 1] = true;
	return needed;
}

/*
 * The hash fields of the columns needed[attno - 1], as EXPLAIN VERBOSE
 * lists the fields fetched alone (RedisFieldsOnly), palloc'd.
 */
char *
RedisFieldsText(RedisTable *tbl, const bool *needed)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < tbl->natts; i++)
		if (needed[i] && tbl->cols[i].role == RCOL_FIELD)
			appendStringInfo(&buf, "%s%s", buf.len > 0 ? ", " : "",
							 PgpolyPrintable(tbl->cols[i].field, tbl->cols[i].fieldlen, 200));
	return buf.data;
}

/* The command that reads one key of this table's type. */
const char *
RedisFetchCommand(RedisTable *tbl)
{
	switch (tbl->type)
	{
		case REDIS_HASH:
			return "HGETALL";
		case REDIS_STRING:
		case REDIS_JSON:
			return "GET";
		case REDIS_ZSET:
			return "ZRANGE";
		case REDIS_SET:
			return "SMEMBERS";
		case REDIS_LIST:
			return "LRANGE";
	}
	return "";
}

/* The Redis type name SCAN ... TYPE filters on. */
const char *
RedisScanTypeFilter(RedisTable *tbl)
{
	switch (tbl->type)
	{
		case REDIS_HASH:
			return "hash";
		case REDIS_STRING:
		case REDIS_JSON:
			return "string";
		case REDIS_ZSET:
			return "zset";
		case REDIS_SET:
			return "set";
		case REDIS_LIST:
			return "list";
	}
	return "";
}

/* Escape the glob metacharacters of s so that SCAN MATCH takes it literally. */
char *
RedisGlobEscape(const char *s, int len)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < len; i++)
	{
		if (strchr("*?[]\\", s[i]) != NULL)
			appendStringInfoChar(&buf, '\\');
		appendStringInfoChar(&buf, s[i]);
	}
	return buf.data;
}

/*
 * The stored form of value for column att (convert.c: the fixed text form,
 * raw bytes for bytea), palloc'd; its length in *len (it may hold NULs).
 */
char *
RedisDatumText(RedisTable *tbl, AttrNumber att, Datum value, size_t *len)
{
	return PgpolyDatumToBytes(&tbl->cols[att - 1].conv, value, len);
}

/*
 * Datum of column att from its stored form s (len bytes, s[len] == '\0').
 * Bytes that are not valid text for a text-input type are an ERROR 22021.
 */
Datum
RedisTextDatum(RedisTable *tbl, AttrNumber att, const char *s, size_t len)
{
	return PgpolyBytesToDatum(&tbl->cols[att - 1].conv, s, len);
}

/* Whether column att identifies a row to UPDATE and DELETE. */
static bool
is_identity(RedisTable *tbl, AttrNumber att)
{
	RedisColRole role = tbl->cols[att - 1].role;

	return role == RCOL_KEY || role == RCOL_MEMBER ||
		(role == RCOL_VALUE && tbl->type == REDIS_LIST);
}

/*
 * Whether s (len bytes), the stored form column att of a row was read
 * from, is not the fixed form of value, its datum, where att identifies
 * the row (the key, a zset/set member, a list element's value).  UPDATE
 * and DELETE address the row by the fixed form of its identity; another
 * client's spelling of the same value (an int key "007", a uuid in
 * capitals, a timestamp with a T) names another key or member.
 */
bool
RedisIdentityMisspelled(RedisTable *tbl, AttrNumber att, Datum value,
						const char *s, size_t len)
{
	size_t		flen;
	char	   *form;
	bool		same;

	if (!is_identity(tbl, att))
		return false;
	form = RedisDatumText(tbl, att, value, &flen);
	same = flen == len && memcmp(form, s, len) == 0;
	pfree(form);
	return !same;
}

/*
 * The identity of a row as UPDATE and DELETE address it: the fixed forms of
 * its identity columns (NULLs included), each after its length, palloc'd;
 * its length in *len.  Only the identity columns of values/nulls are read.
 */
char *
RedisRowIdentity(RedisTable *tbl, Datum *values, bool *nulls, size_t *len)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (AttrNumber att = 1; att <= tbl->natts; att++)
	{
		size_t		flen = 0;
		char	   *form;
		int32		n;

		if (!is_identity(tbl, att))
			continue;
		n = -1;
		form = nulls[att - 1] ? NULL : RedisDatumText(tbl, att, values[att - 1], &flen);
		if (form)
			n = (int32) flen;
		appendBinaryStringInfo(&buf, (char *) &n, sizeof(n));
		if (form)
			appendBinaryStringInfo(&buf, form, flen);
	}
	*len = buf.len;
	return buf.data;
}

/*
 * The Redis key (prefix || stored form of value), palloc'd and
 * NUL-terminated; sets *len.  conv describes value's type (a key clause's
 * value may be another integer width than the key); NULL: the key
 * column's own type.  The value's form is copied once, into the key.
 */
char *
RedisKeyFromDatum(RedisTable *tbl, PgpolyConv *conv, Datum value, size_t *len)
{
	char		buf[PGPOLY_FORM_BUFSIZE];
	size_t		tlen;
	const char *text;
	char	   *key;

	if (conv == NULL)
		conv = &tbl->cols[tbl->key_att - 1].conv;
	text = PgpolyDatumBytesRef(conv, value, buf, &tlen);
	key = palloc(tbl->prefixlen + tlen + 1);
	memcpy(key, tbl->prefix, tbl->prefixlen);
	memcpy(key + tbl->prefixlen, text, tlen);
	key[tbl->prefixlen + tlen] = '\0';
	*len = tbl->prefixlen + tlen;
	if (conv->kind == PGPOLY_CONV_GENERIC)
		pfree((char *) text);	/* an output function's text */
	return key;
}

/*
 * RedisKeyFromDatum for a lookup of value: NULL where no key of the
 * column can equal it (PgpolyKeyValueFits), so no key is looked up.
 */
char *
RedisLookupKey(RedisTable *tbl, PgpolyConv *conv, Datum value, size_t *len)
{
	if (!PgpolyKeyValueFits(&tbl->cols[tbl->key_att - 1].conv, conv, value))
		return NULL;
	return RedisKeyFromDatum(tbl, conv, value, len);
}

PG_FUNCTION_INFO_V1(pgpoly_redis_key_column);

/*
 * pgpoly._redis_key_column(regclass): the key column of a pgpoly_redis
 * table, resolved exactly as the FDW does (so the feature store never
 * disagrees with it); ERROR if the table has none.
 */
Datum
pgpoly_redis_key_column(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	RedisTable *tbl;

	if (!RedisIsRedisTable(relid))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a pgpoly_redis foreign table",
						get_rel_name(relid) ? get_rel_name(relid) : "?")));
	tbl = RedisLoadTable(relid, GetUserId());

	PG_RETURN_TEXT_P(cstring_to_text(tbl->cols[tbl->key_att - 1].name));
}
