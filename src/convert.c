/*-------------------------------------------------------------------------
 *
 * convert.c
 *		  Datums <-> store text, in one fixed form for every store.
 *
 * Every value pgpoly writes to a store and every value it reads back goes
 * through this file: Redis keys, hash fields, string values and collection
 * members here; JSON documents (Redis json values, Elasticsearch documents
 * and query values, vector metadata) through json.c, which takes its
 * scalar forms from here.  The text form is the one a session with
 * postgres_fdw's transmission settings writes:
 *
 *		DateStyle ISO (MDY order for reading), IntervalStyle postgres,
 *		extra_float_digits 3, bytea_output hex, TimeZone UTC, and
 *		lc_monetary C for money, whose text form follows the locale
 *
 * so that what one session writes any other session reads back equal,
 * whatever its DateStyle, IntervalStyle, TimeZone, extra_float_digits,
 * bytea_output or lc_* settings.  Where a store keeps raw bytes (Redis),
 * bytea values are stored as those bytes (PgpolyDatumToBytes and
 * PgpolyBytesToDatum), not as text.
 *
 * Cost: the settings are global variables that the types' I/O functions
 * read.  The common scalar types take fast paths that never read them;
 * every other type (arrays, composites, ranges, domains of anything, and
 * types we do not know) runs inside PgpolyFixedSettingsEnter/Leave, which
 * save the six variables, set them and restore them; callers put Leave in
 * PG_FINALLY so that an error restores them too.  A caller converting many
 * values opens one scope around all of them (a row, a batch); a conversion
 * inside an open scope opens no other.  Dates and timestamps of the years
 * 1..9999 are written here without datetime.c's general encoder, in the
 * same bytes (sql/redis_write_forms.sql compares them with the output
 * functions'); plain decimals are read into float8 here, exactly rounded
 * as strtod rounds them, without strtod's general parser
 * (sql/redis_convert.sql compares them with the cast).  A caller that copies a value's form where it goes at once
 * (the Redis write builder) takes it from PgpolyDatumBytesRef: no palloc,
 * no copy of its own.  set_config_option() is never used
 * there: it costs far more than the conversion.  money is the exception:
 * lc_monetary is a string the GUC machinery owns, and its conventions are
 * cached (PGLC_localeconv), so a conversion of a type with money in it
 * sets lc_monetary 'C' through set_config_option, in a GUC nesting level of
 * its own (PgpolyWithCMoney).  Object names (regclass, regtype, regproc,
 * regprocedure, regoper, regoperator, regconfig, regdictionary,
 * regcollation) are written as the search_path pg_catalog alone shows
 * them, schema-qualified, as postgres_fdw's sessions do
 * (PgpolyWithQualifiedNames): written unqualified where the writer's
 * search_path reached them, they named another object, or none, for a
 * reader with another.  Read, an object name resolves as a cast in the
 * session does.
 *
 * Values read from a store carry their length.  Before any input function
 * sees them they are verified for the database encoding, which rejects NUL
 * bytes as well: a value that is not valid text is an ERROR with SQLSTATE
 * 22021 (the caller's error context names the key or document and field),
 * never a truncated or unverified datum.
 *
 * Character sets: stores hold text as UTF-8.  In a database of another
 * encoding, store -> datum converts from UTF-8 (PgpolyTextToDatum,
 * PgpolyBytesToDatum; PgpolyServerTextToDatum for text a converted jsonb
 * gave) and datum -> store converts to UTF-8 (PgpolyDatumToBytes,
 * PgpolyDatumBytesRef; HTTP bodies once in PgpolyHttpRequest).
 * PgpolyDatumToText stays in the database encoding (SQL text).  bytea is
 * never converted; UTF8 databases and ASCII text take no copy.
 *
 * Key pushdown: PgpolyKeyEqualityIsByteEquality() decides when SQL
 * equality on a key column is equality of the stored bytes.  The Redis
 * scan's pushdown and the batched join both ask it, so the planner and
 * the executor can never disagree about which keys a clause reaches.
 * Every store sends a compared value only when PgpolyValueHasColumnForm()
 * says its stored form is the column's (no cross-type comparison, which
 * SQL makes after a conversion the store cannot repeat).
 *
 * src/convert.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "access/stratnum.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "port/pg_bitutils.h"
#include "utils/builtins.h"
#include "utils/bytea.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/float.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/guc.h"
#include "utils/regproc.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "pgpoly.h"

/* the longest fixed form of a number or date/time type, and its NUL */
StaticAssertDecl(PGPOLY_FORM_BUFSIZE >= Max(MAXDATELEN, DOUBLE_SHORTEST_DECIMAL_LEN) + 1,
				 "PGPOLY_FORM_BUFSIZE too small");

/* The session's values of the settings we fix, while a scope is open. */
typedef struct SavedSettings
{
	int			datestyle;
	int			dateorder;
	int			intervalstyle;
	int			extra_float_digits;
	int			bytea_output;
	pg_tz	   *timezone;
} SavedSettings;

/* Nesting depth of fixed-settings scopes; the outermost one saved these. */
static int	fixed_depth = 0;
static SavedSettings fixed_saved;
static pg_tz *utc_tz = NULL;

/* ----------------------------------------------------------------
 *		The fixed settings
 * ----------------------------------------------------------------
 */

/* The UTC zone (pg_tzset caches zones for the backend's life). */
static pg_tz *
utc_zone(void)
{
	if (utc_tz == NULL)
	{
		utc_tz = pg_tzset("UTC");
		if (utc_tz == NULL)
			elog(ERROR, "could not load time zone \"UTC\"");
	}
	return utc_tz;
}

/*
 * Enter a scope in which the I/O functions see the fixed settings.  The
 * caller must call PgpolyFixedSettingsLeave on every path out, error paths
 * included (PG_FINALLY).  Scopes nest; only the outermost saves and
 * restores the session's values.
 */
void
PgpolyFixedSettingsEnter(void)
{
	pg_tz	   *utc = utc_zone();	/* before changing anything */

	if (fixed_depth++ > 0)
		return;
	fixed_saved.datestyle = DateStyle;
	fixed_saved.dateorder = DateOrder;
	fixed_saved.intervalstyle = IntervalStyle;
	fixed_saved.extra_float_digits = extra_float_digits;
	fixed_saved.bytea_output = bytea_output;
	fixed_saved.timezone = session_timezone;
	DateStyle = USE_ISO_DATES;
	DateOrder = DATEORDER_MDY;
	IntervalStyle = INTSTYLE_POSTGRES;
	extra_float_digits = 3;
	bytea_output = BYTEA_OUTPUT_HEX;
	session_timezone = utc;
}

/* Leave a scope entered with PgpolyFixedSettingsEnter. */
void
PgpolyFixedSettingsLeave(void)
{
	Assert(fixed_depth > 0);
	if (--fixed_depth > 0)
		return;
	DateStyle = fixed_saved.datestyle;
	DateOrder = fixed_saved.dateorder;
	IntervalStyle = fixed_saved.intervalstyle;
	extra_float_digits = fixed_saved.extra_float_digits;
	bytea_output = fixed_saved.bytea_output;
	session_timezone = fixed_saved.timezone;
}

/* Whether a fixed-settings scope is open. */
bool
PgpolyFixedSettingsActive(void)
{
	return fixed_depth > 0;
}

/*
 * Run fn(arg) with lc_monetary 'C' (money as "$1,234.56"), set in a GUC
 * nesting level of its own: whatever fn's I/O functions set nests inside
 * it, and the session's lc_monetary is back afterwards, errors included.
 */
void
PgpolyWithCMoney(void (*fn) (void *), void *arg)
{
	int			level = NewGUCNestLevel();

	(void) set_config_option("lc_monetary", "C", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	PG_TRY();
	{
		fn(arg);
	}
	PG_CATCH();
	{
		AtEOXact_GUC(false, level);
		PG_RE_THROW();
	}
	PG_END_TRY();
	AtEOXact_GUC(true, level);
}

/*
 * Run fn(arg) with pg_catalog alone on the search path, so that the output
 * functions of object names (regclass ...) qualify every name outside it;
 * the session's search path is back afterwards, errors included.
 */
void
PgpolyWithQualifiedNames(void (*fn) (void *), void *arg)
{
	OverrideSearchPath path = {NIL, true, false, 0};

	PushOverrideSearchPath(&path);
	PG_TRY();
	{
		fn(arg);
	}
	PG_FINALLY();
	{
		PopOverrideSearchPath();
	}
	PG_END_TRY();
}

/* ----------------------------------------------------------------
 *		Describing a type
 * ----------------------------------------------------------------
 */

/* What a test of type_any says of one base type. */
typedef enum TypeTest
{
	TYPE_NO,					/* no, whatever is inside it */
	TYPE_YES,
	TYPE_LOOK					/* look inside: elements, subtype, columns */
} TypeTest;

/*
 * Whether test says yes of typid's base type or, where it says look, of an
 * element type, range subtype or column type inside it, recursively.  A
 * type it says look of with nothing inside (or more than 8 levels deep)
 * counts as leaf.
 */
static bool
type_any(Oid typid, TypeTest (*test) (Oid basetype, bool arg), bool arg,
		 bool leaf, int depth)
{
	Oid			elem;

	if (depth > 8)
		return leaf;
	typid = getBaseType(typid);
	switch (test(typid, arg))
	{
		case TYPE_NO:
			return false;
		case TYPE_YES:
			return true;
		case TYPE_LOOK:
			break;
	}
	if ((elem = get_element_type(typid)) != InvalidOid)
		return type_any(elem, test, arg, leaf, depth + 1);
	if (get_typtype(typid) == TYPTYPE_RANGE)
		return type_any(get_range_subtype(typid), test, arg, leaf, depth + 1);
	if (type_is_rowtype(typid) && typid != RECORDOID)
	{
		TupleDesc	desc = lookup_rowtype_tupdesc(typid, -1);
		bool		found = false;

		for (int i = 0; i < desc->natts && !found; i++)
			if (!TupleDescAttr(desc, i)->attisdropped)
				found = type_any(TupleDescAttr(desc, i)->atttypid, test, arg, leaf,
								 depth + 1);
		ReleaseTupleDesc(desc);
		return found;
	}
	return leaf;
}

/*
 * type_any test: whether the output (out) or input function of a base
 * type reads the settings we fix, as far as we know the type.
 */
static TypeTest
reads_settings(Oid basetype, bool out)
{
	switch (basetype)
	{
		case BOOLOID:
		case CHAROID:
		case NAMEOID:
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case OIDOID:
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
		case NUMERICOID:
		case UUIDOID:
		case JSONOID:
		case JSONBOID:
		case INETOID:
		case CIDROID:
		case MACADDROID:
			return TYPE_NO;
		case FLOAT4OID:
		case FLOAT8OID:
		case BYTEAOID:
			/* extra_float_digits, bytea_output */
			return out ? TYPE_YES : TYPE_NO;
		default:
			return TYPE_LOOK;
	}
}

/*
 * Whether the I/O functions of typid read any of the settings we fix
 * (output: out; input: !out).  Types we do not know are assumed to.
 */
static bool
io_reads_settings(Oid typid, bool out)
{
	return type_any(typid, reads_settings, out, true, 0);
}

/* type_any test: whether a base type is money. */
static TypeTest
is_money(Oid basetype, bool arg)
{
	return basetype == CASHOID ? TYPE_YES : TYPE_LOOK;
}

/* Whether a value of typid can hold a money value (arrays, ranges, rows). */
bool
PgpolyTypeHasMoney(Oid typid)
{
	return type_any(typid, is_money, false, false, 0);
}

/* type_any test: whether a base type is an object name (regclass ...). */
static TypeTest
is_object_name(Oid basetype, bool arg)
{
	switch (basetype)
	{
		case REGCLASSOID:
		case REGTYPEOID:
		case REGPROCOID:
		case REGPROCEDUREOID:
		case REGOPEROID:
		case REGOPERATOROID:
		case REGCONFIGOID:
		case REGDICTIONARYOID:
		case REGCOLLATIONOID:
			return TYPE_YES;
		default:
			return TYPE_LOOK;
	}
}

/*
 * Whether a value of typid can hold an object name whose text depends on
 * the search path (arrays, ranges, rows): PgpolyWithQualifiedNames.
 */
bool
PgpolyTypeHasObjectNames(Oid typid)
{
	return type_any(typid, is_object_name, false, false, 0);
}

/* The fast path of a base type, PGPOLY_CONV_GENERIC when it has none. */
static PgpolyConvKind
fast_kind(Oid basetype)
{
	switch (basetype)
	{
		case TEXTOID:
		case VARCHAROID:
			return PGPOLY_CONV_TEXT;
		case BYTEAOID:
			return PGPOLY_CONV_BYTEA;
		case FLOAT4OID:
			return PGPOLY_CONV_FLOAT4;
		case FLOAT8OID:
			return PGPOLY_CONV_FLOAT8;
		case DATEOID:
			return PGPOLY_CONV_DATE;
		case TIMESTAMPOID:
			return PGPOLY_CONV_TIMESTAMP;
		case TIMESTAMPTZOID:
			return PGPOLY_CONV_TIMESTAMPTZ;
		case INTERVALOID:
			return PGPOLY_CONV_INTERVAL;
		case INT2OID:
			return PGPOLY_CONV_INT2;
		case INT4OID:
			return PGPOLY_CONV_INT4;
		case INT8OID:
			return PGPOLY_CONV_INT8;
		default:
			return PGPOLY_CONV_GENERIC;
	}
}

/*
 * Whether the input of a type of kind (typmod) has a fast path for the
 * fixed form (datum_in): the settings are then not read, unless a value
 * is not in that form.
 */
static bool
fast_input(PgpolyConvKind kind, int32 typmod)
{
	switch (kind)
	{
		case PGPOLY_CONV_TEXT:
		case PGPOLY_CONV_BYTEA:
		case PGPOLY_CONV_FLOAT8:
		case PGPOLY_CONV_INT2:
		case PGPOLY_CONV_INT4:
		case PGPOLY_CONV_INT8:
		case PGPOLY_CONV_DATE:
			return true;
		case PGPOLY_CONV_TIMESTAMP:
		case PGPOLY_CONV_TIMESTAMPTZ:
			return typmod < 0;	/* a precision (a domain's too) rounds: the
								 * input function */
		default:
			return false;
	}
}

/*
 * Describe type typid (typmod) for conversions; name (may be NULL) is the
 * column it belongs to, for messages.  The I/O functions' caches live in
 * the current memory context, which must outlive conv.
 */
void
PgpolyConvInit(PgpolyConv *conv, Oid typid, int32 typmod, const char *name)
{
	Oid			infn;
	Oid			outfn;
	Oid			elem;
	bool		isvarlena;

	memset(conv, 0, sizeof(PgpolyConv));
	conv->typid = typid;
	conv->typmod = typmod;
	conv->name = name;
	conv->basetypmod = typmod;
	conv->basetype = getBaseTypeAndTypmod(typid, &conv->basetypmod);
	conv->is_domain = conv->basetype != typid;
	conv->kind = fast_kind(conv->basetype);
	conv->out_settings = io_reads_settings(typid, true);
	conv->in_settings = io_reads_settings(typid, false);
	conv->in_fast = fast_input(conv->kind, conv->basetypmod);
	conv->is_array = type_is_array(conv->basetype);
	elem = conv->is_array ? getBaseType(get_element_type(conv->basetype)) :
		conv->basetype;
	conv->is_json = elem == JSONOID || elem == JSONBOID;
	conv->money = conv->kind == PGPOLY_CONV_GENERIC && PgpolyTypeHasMoney(typid);
	conv->qualify = conv->kind == PGPOLY_CONV_GENERIC && PgpolyTypeHasObjectNames(typid);
	conv->mcxt = CurrentMemoryContext;
	getTypeInputInfo(typid, &infn, &conv->ioparam);
	fmgr_info(infn, &conv->infn);
	getTypeOutputInfo(typid, &outfn, &isvarlena);
	fmgr_info(outfn, &conv->outfn);
}

/* ----------------------------------------------------------------
 *		Datum -> text
 * ----------------------------------------------------------------
 */

/* A palloc'd, NUL-terminated copy of the contents of a varlena. */
static char *
varlena_bytes(Datum value, size_t *len)
{
	struct varlena *v = PG_DETOAST_DATUM_PACKED(value);
	char	   *s;

	*len = VARSIZE_ANY_EXHDR(v);
	s = palloc(*len + 1);
	memcpy(s, VARDATA_ANY(v), *len);
	s[*len] = '\0';
	return s;
}

static char *conv_what(PgpolyConv *conv);

/*
 * ERROR 54000 unless a bytea of n bytes has a hex form (\x and two digits
 * a byte) that a text value can hold: a bytea over 512 MB has none, as in
 * SQL (bytea_output 'hex'), where it fails with "invalid memory alloc
 * request size".  conv (or NULL) names the value in the message.
 */
void
PgpolyCheckByteaHex(size_t n, PgpolyConv *conv)
{
	if (n > (MaxAllocSize - 3) / 2)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is too long to write in hex (%zu bytes)",
						conv ? psprintf("value for %s", conv_what(conv)) : "bytea value", n),
				 errdetail("Its hex form would take more than the 1 GB a text value may hold."),
				 errhint("Only a Redis string or hash table, which keeps bytea as raw bytes, holds bytea values over 512 MB.")));
}

/* bytea in hex form, as bytea_output 'hex' writes it; conv: for messages. */
static char *
bytea_hex(Datum value, size_t *len, PgpolyConv *conv)
{
	bytea	   *b = DatumGetByteaPP(value);
	size_t		n = VARSIZE_ANY_EXHDR(b);
	char	   *s;

	PgpolyCheckByteaHex(n, conv);
	s = palloc(2 * n + 3);

	s[0] = '\\';
	s[1] = 'x';
	*len = 2 + hex_encode(VARDATA_ANY(b), n, s + 2);
	s[*len] = '\0';
	return s;
}

/* Write v (0..99) as two digits at p; returns the end. */
static inline char *
put_2digits(char *p, int v)
{
	p[0] = (char) ('0' + v / 10);
	p[1] = (char) ('0' + v % 10);
	return p + 2;
}

/*
 * Write the ISO form of an AD date of a 4-digit year at p, "YYYY-MM-DD",
 * as EncodeDateOnly and EncodeDateTime write it; returns the end.
 */
static char *
put_iso_date(char *p, int year, int mon, int mday)
{
	p = put_2digits(p, year / 100);
	p = put_2digits(p, year % 100);
	*p++ = '-';
	p = put_2digits(p, mon);
	*p++ = '-';
	return put_2digits(p, mday);
}

/*
 * Write the ISO form of tm (fsec), "YYYY-MM-DD HH:MM:SS[.ffffff][+00]",
 * at p; returns the end.  Only for a year of 1..9999, whose form
 * EncodeDateTime (USE_ISO_DATES, UTC) writes the same way: the fraction
 * without trailing zeros, the offset of UTC as "+00".
 */
static char *
put_iso_timestamp(char *p, const struct pg_tm *tm, fsec_t fsec, bool withtz)
{
	p = put_iso_date(p, tm->tm_year, tm->tm_mon, tm->tm_mday);
	*p++ = ' ';
	p = put_2digits(p, tm->tm_hour);
	*p++ = ':';
	p = put_2digits(p, tm->tm_min);
	*p++ = ':';
	p = put_2digits(p, tm->tm_sec);
	if (fsec != 0)
	{
		int			f = fsec;
		int			n = 6;

		Assert(fsec > 0 && fsec < USECS_PER_SEC);
		while (f % 10 == 0)
		{
			f /= 10;
			n--;
		}
		*p++ = '.';
		for (int i = n - 1; i >= 0; i--)
		{
			p[i] = (char) ('0' + f % 10);
			f /= 10;
		}
		p += n;
	}
	if (withtz)
	{
		memcpy(p, "+00", 3);
		p += 3;
	}
	return p;
}

/*
 * Output of a date/time type under the fixed settings, into buf
 * (MAXDATELEN + 1 bytes); returns its length.  Dates and timestamps of
 * the years 1..9999, nearly all of them, are written here; other years
 * (BC, five digits), infinities and intervals by datetime.c.
 */
static size_t
datetime_text(PgpolyConvKind kind, Datum value, char *buf)
{
	struct pg_tm tm;
	fsec_t		fsec;

	switch (kind)
	{
		case PGPOLY_CONV_DATE:
			if (DATE_NOT_FINITE(DatumGetDateADT(value)))
				EncodeSpecialDate(DatumGetDateADT(value), buf);
			else
			{
				j2date(DatumGetDateADT(value) + POSTGRES_EPOCH_JDATE,
					   &tm.tm_year, &tm.tm_mon, &tm.tm_mday);
				if (tm.tm_year >= 1 && tm.tm_year <= 9999)
					return put_iso_date(buf, tm.tm_year, tm.tm_mon, tm.tm_mday) - buf;
				EncodeDateOnly(&tm, USE_ISO_DATES, buf);
			}
			return strlen(buf);
		case PGPOLY_CONV_TIMESTAMP:
		case PGPOLY_CONV_TIMESTAMPTZ:
			{
				bool		withtz = kind == PGPOLY_CONV_TIMESTAMPTZ;
				Timestamp	ts = DatumGetTimestamp(value);

				/*
				 * In UTC a timestamptz's fields are the timestamp's own and
				 * its offset is 0: nothing to look up in the zone's rules
				 * (pg_localtime), and ISO output ignores the zone's name.
				 * tm_isdst 0 says the offset is known (-1 would omit it).
				 */
				if (TIMESTAMP_NOT_FINITE(ts))
					EncodeSpecialTimestamp(ts, buf);
				else if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
					ereport(ERROR,
							(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
							 errmsg("timestamp out of range")));
				else if (tm.tm_year >= 1 && tm.tm_year <= 9999)
					return put_iso_timestamp(buf, &tm, fsec, withtz) - buf;
				else
				{
					tm.tm_isdst = 0;
					EncodeDateTime(&tm, fsec, withtz, 0, NULL, USE_ISO_DATES, buf);
				}
				return strlen(buf);
			}
		case PGPOLY_CONV_INTERVAL:
			{
				struct pg_itm itm;

				interval2itm(*DatumGetIntervalP(value), &itm);
				EncodeInterval(&itm, INTSTYLE_POSTGRES, buf);
				return strlen(buf);
			}
		default:
			elog(ERROR, "unexpected date/time conversion %d", (int) kind);
	}
	return 0;					/* keep compiler quiet */
}

/*
 * The fixed form of a number or date/time value (conv->kind neither text,
 * bytea nor generic) written into buf (PGPOLY_FORM_BUFSIZE bytes, not
 * NUL-terminated); returns its length.
 */
static size_t
scalar_form(PgpolyConvKind kind, Datum value, char *buf)
{
	switch (kind)
	{
		case PGPOLY_CONV_FLOAT4:
			return float_to_shortest_decimal_bufn(DatumGetFloat4(value), buf);
		case PGPOLY_CONV_FLOAT8:
			return double_to_shortest_decimal_bufn(DatumGetFloat8(value), buf);
		case PGPOLY_CONV_DATE:
		case PGPOLY_CONV_TIMESTAMP:
		case PGPOLY_CONV_TIMESTAMPTZ:
		case PGPOLY_CONV_INTERVAL:
			return datetime_text(kind, value, buf);
		case PGPOLY_CONV_INT2:
			return pg_itoa(DatumGetInt16(value), buf);
		case PGPOLY_CONV_INT4:
			return pg_ltoa(DatumGetInt32(value), buf);
		case PGPOLY_CONV_INT8:
			return pg_lltoa(DatumGetInt64(value), buf);
		default:
			elog(ERROR, "unexpected scalar conversion %d", (int) kind);
	}
	return 0;					/* keep compiler quiet */
}

/* An I/O function call of a conv, for PgpolyWithCMoney and the like. */
typedef struct IoCall
{
	PgpolyConv *conv;
	Datum		value;			/* output: the value; input: the result */
	char	   *text;			/* output: the result; input: the text */
	bool		money;			/* output: lc_monetary 'C' still to set */
	bool		qualify;		/* output: the search path still to set */
} IoCall;

/*
 * The output function's text, under lc_monetary 'C' and the search path
 * of qualified names where c still needs them (a callback of both).
 */
static void
output_io(void *arg)
{
	IoCall	   *c = arg;

	if (c->qualify)
	{
		c->qualify = false;
		PgpolyWithQualifiedNames(output_io, c);
	}
	else if (c->money)
	{
		c->money = false;
		PgpolyWithCMoney(output_io, c);
	}
	else
		c->text = OutputFunctionCall(&c->conv->outfn, c->value);
}

/* PgpolyWithCMoney callback: the input function's datum. */
static void
input_io(void *arg)
{
	IoCall	   *c = arg;

	c->value = InputFunctionCall(&c->conv->infn, c->text, c->conv->ioparam,
								 c->conv->typmod);
}

/*
 * The output function's text, with lc_monetary 'C' if conv has money and
 * names qualified if it has object names.
 */
static char *
output_call(PgpolyConv *conv, Datum value)
{
	IoCall		c = {conv, value, NULL, conv->money, conv->qualify};

	if (!conv->money && !conv->qualify)
		return OutputFunctionCall(&conv->outfn, value);
	output_io(&c);
	return c.text;
}

/* The output function's text under the fixed settings. */
static char *
output_fixed(PgpolyConv *conv, Datum value)
{
	char	   *volatile s = NULL;

	if (!conv->out_settings || fixed_depth > 0)
		return output_call(conv, value);
	PgpolyFixedSettingsEnter();
	PG_TRY();
	{
		s = output_call(conv, value);
	}
	PG_FINALLY();
	{
		PgpolyFixedSettingsLeave();
	}
	PG_END_TRY();
	return s;
}

/* Datum -> store form; raw: bytea as its bytes. */
static char *
datum_out(PgpolyConv *conv, Datum value, bool raw, size_t *len)
{
	char		buf[PGPOLY_FORM_BUFSIZE];
	char	   *s;

	switch (conv->kind)
	{
		case PGPOLY_CONV_TEXT:
			return varlena_bytes(value, len);
		case PGPOLY_CONV_BYTEA:
			return raw ? varlena_bytes(value, len) : bytea_hex(value, len, conv);
		case PGPOLY_CONV_GENERIC:
			s = output_fixed(conv, value);
			*len = strlen(s);	/* an output function's C string */
			return s;
		default:
			*len = scalar_form(conv->kind, value, buf);
			return pnstrdup(buf, *len);
	}
}

/*
 * The store form of value where the store keeps bytes, as
 * PgpolyDatumToBytes gives it, without a copy of its own: text, varchar
 * and bytea are the datum's own bytes (detoasted in the current context if
 * need be), numbers and date/time types are written into buf
 * (PGPOLY_FORM_BUFSIZE bytes), other types (PGPOLY_CONV_GENERIC) are
 * their output function's text, palloc'd in the current context (the
 * caller may pfree it).  Text is the store's UTF-8: in a database of
 * another encoding, non-ASCII text is a converted copy in the current
 * context.  The result is not NUL-terminated
 * and lives as long as value, buf and the current context; its length in
 * *len.  For a caller that copies the bytes where they go at once (a
 * Redis command being laid out).
 */
const char *
PgpolyDatumBytesRef(PgpolyConv *conv, Datum value, char *buf, size_t *len)
{
	struct varlena *v;
	char	   *s;

	switch (conv->kind)
	{
		case PGPOLY_CONV_TEXT:
			v = PG_DETOAST_DATUM_PACKED(value);
			*len = VARSIZE_ANY_EXHDR(v);
			return PgpolyServerToStore(VARDATA_ANY(v), len, false);
		case PGPOLY_CONV_BYTEA:
			v = PG_DETOAST_DATUM_PACKED(value);
			*len = VARSIZE_ANY_EXHDR(v);
			return VARDATA_ANY(v);
		case PGPOLY_CONV_GENERIC:
			s = output_fixed(conv, value);
			*len = strlen(s);	/* an output function's C string */
			return PgpolyServerToStore(s, len, false);
		default:
			*len = scalar_form(conv->kind, value, buf);
			return buf;
	}
}

/*
 * The fixed text form of value (bytea: \x hex), palloc'd and
 * NUL-terminated; its length in *len.
 */
char *
PgpolyDatumToText(PgpolyConv *conv, Datum value, size_t *len)
{
	return datum_out(conv, value, false, len);
}

/*
 * The store form of value where the store keeps bytes (Redis): bytea as
 * its raw bytes, every other type as PgpolyDatumToText, converted to UTF-8
 * (PgpolyServerToStore).  The result is
 * palloc'd and NUL-terminated but may contain NULs: use *len.
 */
char *
PgpolyDatumToBytes(PgpolyConv *conv, Datum value, size_t *len)
{
	char	   *s = datum_out(conv, value, true, len);

	if (conv->kind == PGPOLY_CONV_TEXT || conv->kind == PGPOLY_CONV_GENERIC)
		return (char *) PgpolyServerToStore(s, len, false);
	return s;
}

/* ----------------------------------------------------------------
 *		Text -> datum
 * ----------------------------------------------------------------
 */

/* What conv converts for, in messages. */
static char *
conv_what(PgpolyConv *conv)
{
	if (conv->name)
		return psprintf("column \"%s\" (%s)", conv->name,
						format_type_with_typemod(conv->typid, conv->typmod));
	return psprintf("type %s", format_type_be(conv->typid));
}

/*
 * Whether s (len bytes) is ASCII without NUL bytes, which is valid text in
 * every server encoding: the common case, checked without a call.
 */
static inline bool
plain_ascii(const char *s, size_t len)
{
	size_t		i = 0;

	/* eight bytes at a time: a high bit, or a zero byte */
	for (; i + 8 <= len; i += 8)
	{
		uint64		w;

		memcpy(&w, s + i, 8);
		if ((w & UINT64CONST(0x8080808080808080)) != 0 ||
			((w - UINT64CONST(0x0101010101010101)) & ~w &
			 UINT64CONST(0x8080808080808080)) != 0)
			return false;
	}
	for (; i < len; i++)
		if ((unsigned char) (s[i] - 1) >= 0x7f)	/* NUL or high bit */
			return false;
	return true;
}

/*
 * ERROR unless s (len bytes) is valid text in the database encoding.  A
 * NUL byte is not: PostgreSQL text cannot hold it.
 */
static void
check_text(PgpolyConv *conv, const char *s, size_t len)
{
	int			enc;
	int			ok;
	const char *nul;

	if (plain_ascii(s, len))
		return;
	enc = GetDatabaseEncoding();
	if (len > (size_t) (MaxAllocSize - 1))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("value for %s is too long (%zu bytes)", conv_what(conv), len)));
	ok = pg_encoding_verifymbstr(enc, s, (int) len);
	if (ok == (int) len)
		return;
	nul = memchr(s, '\0', len);
	if (nul != NULL && nul - s <= ok)
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("value for %s contains a NUL byte", conv_what(conv)),
				 errdetail("The NUL byte is at offset %d of %zu; text cannot hold NUL bytes.",
						   (int) (nul - s), len),
				 errhint("Read binary values into a bytea column.")));
	ereport(ERROR,
			(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
			 errmsg("value for %s is not valid %s", conv_what(conv),
					GetDatabaseEncodingName()),
			 errdetail("Invalid byte 0x%02x at offset %d of %zu.",
					   (unsigned char) s[ok], ok, len)));
}

/*
 * Text read from a store (len bytes, s[len] == '\0') as valid text in the
 * database encoding, converted from UTF-8 where the database encoding is
 * another (PgpolyStoreToServer; *len updated); ERROR otherwise.  ASCII
 * text, the common case, is returned as it is without a call.
 */
static const char *
store_text(PgpolyConv *conv, const char *s, size_t *len)
{
	int			enc;

	if (plain_ascii(s, *len))
		return s;
	enc = GetDatabaseEncoding();
	if (enc != PG_UTF8 && enc != PG_SQL_ASCII && memchr(s, '\0', *len) == NULL)
		return PgpolyStoreToServer(s, len, psprintf("value for %s", conv_what(conv)));
	check_text(conv, s, *len);
	return s;
}

/* Apply the domain's constraints to value (a domain over a fast path). */
static Datum
check_domain(PgpolyConv *conv, Datum value)
{
	if (conv->is_domain)
		domain_check(value, false, conv->typid, &conv->domain_extra, conv->mcxt);
	return value;
}

/*
 * The datum of a NULL a store holds (or lacks) for conv's column: ERROR
 * where the column's domain refuses NULL (NOT NULL: 23502; a CHECK that
 * is false for NULL: 23514), as domain_in does of a NULL, which
 * postgres_fdw's reads run too: no native row holds such a NULL.  The
 * caller's error context names the key or document and field.
 */
Datum
PgpolyNullDatum(PgpolyConv *conv)
{
	if (conv->is_domain)
		domain_check((Datum) 0, true, conv->typid, &conv->domain_extra, conv->mcxt);
	return (Datum) 0;
}

/* The input function's datum for s, with lc_monetary 'C' if conv has money. */
static Datum
input_call(PgpolyConv *conv, char *s)
{
	IoCall		c = {conv, (Datum) 0, s, false, false};

	if (!conv->money)
		return InputFunctionCall(&conv->infn, s, conv->ioparam, conv->typmod);
	PgpolyWithCMoney(input_io, &c);
	return c.value;
}

/* The input function's datum for s under the fixed settings. */
static Datum
input_fixed(PgpolyConv *conv, char *s)
{
	volatile Datum d = (Datum) 0;

	if (!conv->in_settings || fixed_depth > 0)
		return input_call(conv, s);
	PgpolyFixedSettingsEnter();
	PG_TRY();
	{
		d = input_call(conv, s);
	}
	PG_FINALLY();
	{
		PgpolyFixedSettingsLeave();
	}
	PG_END_TRY();
	return d;
}

/* The value of the n decimal digits at s (n <= 9), or -1 if one is not. */
static inline int
digits(const char *s, int n)
{
	int			v = 0;

	for (int i = 0; i < n; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/*
 * The date of "YYYY-MM-DD" at s (10 bytes) as days since 2000-01-01, or
 * false if it is not a valid date in exactly that form.
 */
static bool
fixed_date(const char *s, int *ndays)
{
	int			y = digits(s, 4),
				m = digits(s + 5, 2),
				d = digits(s + 8, 2);

	if (y < 1 || m < 1 || m > MONTHS_PER_YEAR || d < 1 || s[4] != '-' || s[7] != '-' ||
		d > day_tab[isleap(y)][m - 1])
		return false;
	*ndays = date2j(y, m, d) - POSTGRES_EPOCH_JDATE;
	return true;
}

/*
 * The timestamp of the fixed form "YYYY-MM-DD HH:MM:SS[.f...]" (1 to 6
 * digits of fraction) at s (len bytes), followed for timestamptz (withtz) by
 * an offset "+HH" or "+HH:MM" (or '-'), which is what pgpoly writes (UTC,
 * "+00") and what most tools write.  false for anything else: a year
 * before 1 or after 9999, BC, 24:00:00, a leap second, special values,
 * spaces, a zone name, more digits of fraction ...; the input function then
 * reads the text, so the fast path changes no result.
 */
static bool
fixed_timestamp(const char *s, size_t len, bool withtz, Timestamp *result)
{
	int			ndays,
				h,
				mi,
				sec,
				off = 0;
	int64		usec = 0;
	size_t		p = 19;

	if (len < 19 || s[10] != ' ' || s[13] != ':' || s[16] != ':' ||
		!fixed_date(s, &ndays) ||
		(h = digits(s + 11, 2)) < 0 || h >= HOURS_PER_DAY ||
		(mi = digits(s + 14, 2)) < 0 || mi >= MINS_PER_HOUR ||
		(sec = digits(s + 17, 2)) < 0 || sec >= SECS_PER_MINUTE)
		return false;
	if (p < len && s[p] == '.')
	{
		int			n = 0;

		for (p++; p < len && s[p] >= '0' && s[p] <= '9' && n < 7; p++, n++)
			usec = usec * 10 + (s[p] - '0');
		if (n == 0 || n > 6)
			return false;
		for (; n < 6; n++)
			usec *= 10;
	}
	if (withtz)
	{
		int			oh,
					om = 0;

		if (p + 3 > len || (s[p] != '+' && s[p] != '-') ||
			(oh = digits(s + p + 1, 2)) < 0 || oh > MAX_TZDISP_HOUR)
			return false;
		if (p + 3 < len)
		{
			if (p + 6 != len || s[p + 3] != ':' ||
				(om = digits(s + p + 4, 2)) < 0 || om >= MINS_PER_HOUR)
				return false;
		}
		off = (oh * MINS_PER_HOUR + om) * SECS_PER_MINUTE;
		if (s[p] == '-')
			off = -off;
		p = len;
	}
	if (p != len)
		return false;
	/* tm2timestamp(), then dt2local() by the offset */
	*result = (int64) ndays * USECS_PER_DAY +
		((int64) ((h * MINS_PER_HOUR + mi) * SECS_PER_MINUTE + sec)) * USECS_PER_SEC +
		usec - (int64) off * USECS_PER_SEC;
	return IS_VALID_TIMESTAMP(*result);
}

#ifdef HAVE_INT128
/*
 * m / 10^k rounded to the nearest double, ties to even, as strtod rounds
 * (m > 0, k <= 27, so that 5^k < 2^63).  m / 10^k = (m * 2^s / 5^k) *
 * 2^-(s + k): the quotient of m shifted to the top of 127 bits by 5^k has
 * at least 64 bits, its first 53 are the mantissa and the rest, with the
 * remainder, decide the rounding; the result is a normal double (between
 * 1e-27 and 2^64), which ldexp scales exactly.
 */
static double
decimal_to_double(uint64 m, int k)
{
	int			s = 126 - pg_leftmost_one_pos64(m);
	uint64		five = 1;
	uint128		q;
	uint64		r;
	int			sh;
	uint64		mant;
	uint128		rest,
				half;

	for (int i = 0; i < k; i++)
		five *= 5;
	q = ((uint128) m << s) / five;
	r = (uint64) (((uint128) m << s) % five);
	sh = (q >> 64 ? 64 + pg_leftmost_one_pos64((uint64) (q >> 64)) :
		  pg_leftmost_one_pos64((uint64) q)) + 1 - 53;
	mant = (uint64) (q >> sh);
	rest = q & (((uint128) 1 << sh) - 1);
	half = (uint128) 1 << (sh - 1);
	if (rest > half || (rest == half && (r != 0 || (mant & 1))))
	{
		if (++mant == UINT64CONST(1) << 53)
		{
			mant >>= 1;
			sh++;
		}
	}
	return ldexp((double) mant, sh - s - k);
}
#endif

/*
 * The double of plain decimal text s (len bytes: an optional '-', digits,
 * an optional '.' and digits; no exponent, no spaces) of at most 19 digits,
 * at most 22 of them after the point, rounded as strtod rounds it: exactly
 * computed (Clinger's fast path where the integer of its digits is at most
 * 2^53, since that and the power of ten are then exact doubles and IEEE
 * division rounds their quotient correctly; decimal_to_double otherwise).
 * false for anything else (more digits, exponents, NaN, Infinity, spaces,
 * errors): float8in reads those.
 */
static bool
fast_float8(const char *s, size_t len, double *result)
{
	static const double pow10[] = {
		1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
		1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22
	};
	const char *p = s;
	const char *end = s + len;
	const char *digits;
	bool		neg = false;
	uint64		m = 0;			/* wraps past 19 digits: refused below */
	size_t		ndigits;
	size_t		nfrac = 0;

	if (p < end && *p == '-')
	{
		neg = true;
		p++;
	}
	for (digits = p; p < end && *p >= '0' && *p <= '9'; p++)
		m = m * 10 + (*p - '0');
	ndigits = p - digits;
	if (p < end && *p == '.')
	{
		for (digits = ++p; p < end && *p >= '0' && *p <= '9'; p++)
			m = m * 10 + (*p - '0');
		nfrac = p - digits;
		ndigits += nfrac;
	}
	if (p != end || ndigits == 0 || ndigits > 19 || nfrac >= lengthof(pow10))
		return false;
	if (m <= (UINT64CONST(1) << 53))
		*result = (double) m / pow10[nfrac];
	else
#ifdef HAVE_INT128
		*result = decimal_to_double(m, (int) nfrac);
#else
		return false;
#endif
	if (neg)
		*result = -*result;
	return true;
}

/*
 * The datum of s (len bytes, NUL-terminated, valid text) by a fast path of
 * conv's kind, giving what the input function gives; false when s is not
 * in the form the fast path reads (the input function must then read it).
 * Integer input calls what its input functions call; float8 reads plain
 * decimals of up to 19 digits itself, rounded exactly as strtod rounds
 * them (fast_float8), and calls float8in's parser for anything else.
 */
static bool
fast_in(PgpolyConv *conv, const char *s, size_t len, Datum *value)
{
	Timestamp	ts;
	int			ndays;
	double		f;

	switch (conv->kind)
	{
		case PGPOLY_CONV_INT2:
			*value = Int16GetDatum(pg_strtoint16(s));
			return true;
		case PGPOLY_CONV_INT4:
			*value = Int32GetDatum(pg_strtoint32(s));
			return true;
		case PGPOLY_CONV_INT8:
			*value = Int64GetDatum(pg_strtoint64(s));
			return true;
		case PGPOLY_CONV_FLOAT8:
			if (fast_float8(s, len, &f))
				*value = Float8GetDatum(f);
			else
				*value = Float8GetDatum(float8in_internal((char *) s, NULL,
														  "double precision", s));
			return true;
		case PGPOLY_CONV_DATE:
			if (len != 10 || !fixed_date(s, &ndays) || !IS_VALID_DATE(ndays))
				return false;
			*value = DateADTGetDatum(ndays);
			return true;
		case PGPOLY_CONV_TIMESTAMP:
		case PGPOLY_CONV_TIMESTAMPTZ:
			if (conv->basetypmod >= 0 ||
				!fixed_timestamp(s, len, conv->kind == PGPOLY_CONV_TIMESTAMPTZ, &ts))
				return false;
			*value = TimestampGetDatum(ts);
			return true;
		default:
			return false;
	}
}

/*
 * Store form -> datum; raw: bytea from its bytes; utf8: text is the store's
 * UTF-8 (else it is in the database encoding already: taken from a jsonb).
 */
static Datum
datum_in(PgpolyConv *conv, const char *s, size_t len, bool raw, bool utf8)
{
	Datum		value;

	Assert(s[len] == '\0');
	if (raw && conv->kind == PGPOLY_CONV_BYTEA)
	{
		bytea	   *b;

		if (len > (size_t) (MaxAllocSize - VARHDRSZ))
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("value for %s is too long (%zu bytes)", conv_what(conv), len)));
		b = palloc(len + VARHDRSZ);
		SET_VARSIZE(b, len + VARHDRSZ);
		memcpy(VARDATA(b), s, len);
		return check_domain(conv, PointerGetDatum(b));
	}
	if (utf8)
		s = store_text(conv, s, &len);
	else
		check_text(conv, s, len);
	if (conv->kind == PGPOLY_CONV_TEXT && conv->typmod < 0 && !conv->is_domain)
		return PointerGetDatum(cstring_to_text_with_len(s, (int) len));
	if (conv->in_fast && fast_in(conv, s, len, &value))
		return check_domain(conv, value);
	return input_fixed(conv, (char *) s);
}

/*
 * The datum of type conv of the text s (len bytes; s[len] must be '\0'),
 * read under the fixed settings.  s is the store's UTF-8, converted to the
 * database encoding (PgpolyStoreToServer).  Text that is not valid (a NUL
 * byte included) is an ERROR with SQLSTATE 22021.
 */
Datum
PgpolyTextToDatum(PgpolyConv *conv, const char *s, size_t len)
{
	return datum_in(conv, s, len, false, true);
}

/*
 * PgpolyTextToDatum of text already in the database encoding (no UTF-8
 * conversion): a value taken from a store's document once it is jsonb
 * (PgpolyJsonbFromStore converted the document), or read from a
 * PostgreSQL table (the sync and outbox queues).
 */
Datum
PgpolyServerTextToDatum(PgpolyConv *conv, const char *s, size_t len)
{
	return datum_in(conv, s, len, false, false);
}

/*
 * The datum of the store form s (len bytes, s[len] == '\0') where the store
 * keeps bytes: bytea takes the bytes as they are, every other type reads
 * them as PgpolyTextToDatum does.
 */
Datum
PgpolyBytesToDatum(PgpolyConv *conv, const char *s, size_t len)
{
	return datum_in(conv, s, len, true, true);
}

/* ----------------------------------------------------------------
 *		Character sets
 * ----------------------------------------------------------------
 * Every store holds text as UTF-8: JSON over HTTP must be UTF-8 (RFC
 * 8259), and Redis clients read and write UTF-8.  In a database whose
 * encoding is not UTF8, text is converted at the store boundary: store ->
 * datum by PgpolyStoreToServer, datum or SQL text -> store by
 * PgpolyServerToStore.  bytea is never converted.  A character the database
 * encoding cannot hold is an ERROR (22P05) naming the value, never replaced
 * or dropped.  In a UTF8 database, and for ASCII text in any encoding, both
 * return their argument: no copy, no call.  SQL_ASCII: PostgreSQL does not
 * know what the bytes mean, so they pass unchanged, except that a JSON
 * store (strict) must be sent valid UTF-8 (22021 otherwise).
 */

static const char *store_to_server(const char *s, size_t *len, const char *what,
									bool noError);

/* Whether text in the database encoding passes to and from stores as is. */
static inline bool
db_is_store_encoding(void)
{
	int			enc = GetDatabaseEncoding();

	return enc == PG_UTF8 || enc == PG_SQL_ASCII;
}

/* The conversion function from encoding "from" to "to" (cached). */
static Oid
conversion_proc(int from, int to)
{
	static Oid	procs[2];
	static int	dbenc = -1;
	int			i = (from == PG_UTF8) ? 0 : 1;

	if (dbenc != GetDatabaseEncoding())
	{
		procs[0] = procs[1] = InvalidOid;
		dbenc = GetDatabaseEncoding();
	}
	if (!OidIsValid(procs[i]))
		procs[i] = FindDefaultConversionProc(from, to);
	if (!OidIsValid(procs[i]))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("default conversion function for encoding \"%s\" to \"%s\" does not exist",
						pg_encoding_to_char(from), pg_encoding_to_char(to))));
	return procs[i];
}

/*
 * Convert s (len bytes, valid in encoding from, no NUL) to encoding to,
 * palloc'd and NUL-terminated; *len becomes its length.  Returns NULL, with
 * *bad the offset of the first character it could not convert, when
 * noError and a character has no equivalent.
 */
static char *
convert_text(const char *s, size_t *len, int from, int to, bool noError,
			 int *bad)
{
	size_t		destlen;
	char	   *dest;
	int			done;

	if (*len >= (MaxAllocSize - 1) / MAX_CONVERSION_GROWTH - 1)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("text of %zu bytes is too long to convert from %s to %s",
						*len, pg_encoding_to_char(from), pg_encoding_to_char(to))));
	destlen = *len * MAX_CONVERSION_GROWTH + MAX_CONVERSION_GROWTH + 1;
	dest = palloc(destlen);
	done = pg_do_encoding_conversion_buf(conversion_proc(from, to), from, to,
										 (unsigned char *) s, (int) *len,
										 (unsigned char *) dest, (int) destlen,
										 noError);
	if (done < (int) *len)
	{
		*bad = done;
		pfree(dest);
		return NULL;
	}
	*len = strlen(dest);		/* the input had no NUL */
	return dest;
}

/* "0xe3 0x81 0x82": the bytes of the UTF-8 character at s, for messages */
static char *
utf8_char_bytes(const char *s, size_t len)
{
	StringInfoData buf;
	int			n = Min(pg_utf_mblen((const unsigned char *) s), (int) len);

	initStringInfo(&buf);
	for (int i = 0; i < n; i++)
		appendStringInfo(&buf, "%s0x%02x", i ? " " : "", (unsigned char) s[i]);
	return buf.data;
}

/*
 * Text read from a store (UTF-8, len bytes, s[len] == '\0') in the
 * database encoding: s itself when no conversion is needed, else a
 * palloc'd NUL-terminated copy (*len updated).  what names the value in
 * messages ("value for column \"v\" (text)"); invalid UTF-8 is an ERROR
 * 22021, a character the database encoding lacks an ERROR 22P05.
 */
const char *
PgpolyStoreToServer(const char *s, size_t *len, const char *what)
{
	return store_to_server(s, len, what, false);
}

/*
 * PgpolyStoreToServer, but NULL (no ERROR) when a character has no
 * equivalent in the database encoding.
 */
const char *
PgpolyStoreToServerOrNull(const char *s, size_t *len, const char *what)
{
	return store_to_server(s, len, what, true);
}

/* PgpolyStoreToServer; noError: NULL for an untranslatable character. */
static const char *
store_to_server(const char *s, size_t *len, const char *what, bool noError)
{
	int			enc;
	int			ok;
	int			bad;
	char	   *out;

	if (db_is_store_encoding() || plain_ascii(s, *len))
		return s;
	enc = GetDatabaseEncoding();
	if (*len > (size_t) (MaxAllocSize - 1))
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is too long (%zu bytes)", what, *len)));
	ok = pg_encoding_verifymbstr(PG_UTF8, s, (int) *len);
	if (ok < (int) *len)
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("%s is not valid UTF-8", what),
				 errdetail("Invalid byte 0x%02x at offset %d of %zu; stores hold text as UTF-8.",
						   (unsigned char) s[ok], ok, *len)));
	out = convert_text(s, len, PG_UTF8, enc, true, &bad);
	if (out == NULL && noError)
		return NULL;
	if (out == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNTRANSLATABLE_CHARACTER),
				 errmsg("%s has a character with no equivalent in encoding \"%s\"",
						what, GetDatabaseEncodingName()),
				 errdetail("The character with UTF-8 byte sequence %s is at offset %d of %zu.",
						   utf8_char_bytes(s + bad, *len - bad), bad, *len),
				 errhint("Use a database whose encoding is UTF8 to read this value.")));
	return out;
}

/*
 * Text in the database encoding (len bytes, no NUL) as a store holds it
 * (UTF-8): s itself when no conversion is needed (a UTF8 database, ASCII
 * text, SQL_ASCII unless strict), else a palloc'd NUL-terminated copy
 * (*len updated).  strict: the store must be sent valid UTF-8 (the JSON
 * stores), which SQL_ASCII text may not be (ERROR 22021).
 */
const char *
PgpolyServerToStore(const char *s, size_t *len, bool strict)
{
	int			enc = GetDatabaseEncoding();
	int			ok;
	int			bad;

	if (enc == PG_UTF8 || plain_ascii(s, *len))
		return s;
	if (enc != PG_SQL_ASCII)
		return convert_text(s, len, enc, PG_UTF8, false, &bad);
	if (!strict)
		return s;
	ok = pg_encoding_verifymbstr(PG_UTF8, s, (int) Min(*len, (size_t) INT_MAX));
	if (ok < (int) *len)
		ereport(ERROR,
				(errcode(ERRCODE_CHARACTER_NOT_IN_REPERTOIRE),
				 errmsg("text sent to the store is not valid UTF-8: \"%s\"",
						PgpolyPrintable(s, *len, 60)),
				 errdetail("Invalid byte 0x%02x at offset %d of %zu; in a SQL_ASCII database, text sent to Elasticsearch or a vector service must be UTF-8.",
						   (unsigned char) s[ok], ok, *len)));
	return s;
}

/*
 * Whether UTF-8 text s (len bytes) converts to the database encoding: every
 * character has an equivalent there.
 */
bool
PgpolyStoreTextConverts(const char *s, size_t len)
{
	int			bad;

	if (db_is_store_encoding() || plain_ascii(s, len))
		return true;
	if (pg_encoding_verifymbstr(PG_UTF8, s, (int) len) != (int) len)
		return true;			/* not this test's failure */
	return convert_text(s, &len, PG_UTF8, GetDatabaseEncoding(), true, &bad) != NULL;
}

/* PgpolyStoreToServer of a C string, as a C string. */
const char *
PgpolyStoreToServerCstr(const char *s, const char *what)
{
	size_t		len = strlen(s);

	return PgpolyStoreToServer(s, &len, what);
}

/* PgpolyServerToStore of a C string, as a C string. */
const char *
PgpolyServerToStoreCstr(const char *s, bool strict)
{
	size_t		len = strlen(s);

	return PgpolyServerToStore(s, &len, strict);
}

/* Whether text needs converting between the database and the stores. */
bool
PgpolyStoreConverts(void)
{
	return GetDatabaseEncoding() != PG_UTF8;
}

/*
 * Whether the bytes of text in the database encoding order as the stores
 * order its UTF-8 (by code point: Lucene's keyword sort and range), so that
 * a comparison under the C collation (byte order) can be pushed.  UTF8 and
 * SQL_ASCII (sent to the stores as the UTF-8 it must be) are the stores'
 * bytes; LATIN1's byte is the code point.  Other encodings order
 * differently (EUC_JP's kanji by reading, WIN1251's 0xA8 'Ё' before 0xC0
 * 'А' but U+0401 < U+0410 < U+0451 'ё' at 0xB8).
 */
bool
PgpolyStoreOrderIsByteOrder(void)
{
	int			enc = GetDatabaseEncoding();

	return enc == PG_UTF8 || enc == PG_SQL_ASCII || enc == PG_LATIN1;
}

/* ----------------------------------------------------------------
 *		Key equality
 * ----------------------------------------------------------------
 */

/*
 * Types whose SQL equality is equality of their fixed stored form: equal
 * values have one text form (integers, text under a deterministic
 * collation, timestamps in UTC ...).  Not numeric (1 = 1.0), floats
 * (0 = -0), bpchar (trailing blanks), interval ('1 day' = '24 hours'),
 * json/jsonb, arrays, composites, or types we do not know.
 */
static bool
byte_equal_type(Oid typid)
{
	switch (typid)
	{
		case TEXTOID:
		case VARCHAROID:
		case NAMEOID:
		case CHAROID:
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case OIDOID:
		case BOOLOID:
		case UUIDOID:
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return true;
		default:
			/* bytea would qualify, once key sets compare lengths, not strlen */
			return false;
	}
}

/*
 * Whether a value of type valtype has the fixed stored form that a column
 * of type coltype has for an equal value: the same type (a domain counts as
 * its base type), integers of any width, text and varchar.  A store can
 * compare such a value with the column's stored values as SQL compares
 * them.  A value of another type does not qualify even where SQL has a
 * cross-type operator: SQL converts one side first (a timestamp to
 * timestamptz in the session's TimeZone, a float4 to float8), and the store
 * would compare the value's own stored form instead.  The Redis key
 * pushdown, the Elasticsearch query and the vector filter ask this before
 * sending a value.
 */
bool
PgpolyValueHasColumnForm(Oid coltype, Oid valtype)
{
	Oid			c = getBaseType(coltype);
	Oid			v = getBaseType(valtype);
	bool		cint = c == INT2OID || c == INT4OID || c == INT8OID;
	bool		vint = v == INT2OID || v == INT4OID || v == INT8OID;
	bool		ctext = c == TEXTOID || c == VARCHAROID;
	bool		vtext = v == TEXTOID || v == VARCHAROID;

	/* integers print alike whatever their width; text and varchar too */
	return c == v || (cint && vint) || (ctext && vtext);
}

/*
 * Whether  key = value  (operator opno, input collation collid; the key of
 * type keytype and typmod keytypmod, the value of valtype) holds exactly
 * when the stored form of the key and the stored form of the value
 * (PgpolyDatumToBytes of a conv of valtype) are the same bytes.  Only then
 * may a store look the key up by those bytes; otherwise the clause must
 * stay a local filter.  A timestamp(p) key (a domain's too) is not: a key
 * stored with more digits of fraction reads rounded, so the value's bytes
 * found a key that does not equal it.  When false and why is not NULL,
 * *why says why, for EXPLAIN.
 */
bool
PgpolyKeyEqualityIsByteEquality(Oid opno, Oid keytype, int32 keytypmod,
								Oid valtype, Oid collid, const char **why)
{
	Oid			kbase = getBaseTypeAndTypmod(keytype, &keytypmod);
	Oid			vbase = getBaseType(valtype);
	TypeCacheEntry *tc;
	const char *reason = NULL;

	if (!byte_equal_type(kbase))
		reason = psprintf("equality of %s is not equality of its stored text",
						  format_type_be(keytype));
	else if ((kbase == TIMESTAMPOID || kbase == TIMESTAMPTZOID) && keytypmod >= 0)
		reason = psprintf("a key of %s stored with more digits reads rounded",
						  format_type_with_typemod(kbase, keytypmod));
	else if (!PgpolyValueHasColumnForm(kbase, vbase))
		reason = psprintf("the value (%s) is not stored as the key (%s) is",
						  format_type_be(valtype), format_type_be(keytype));
	else
	{
		tc = lookup_type_cache(kbase, TYPECACHE_BTREE_OPFAMILY);
		if (!OidIsValid(tc->btree_opf) ||
			get_op_opfamily_strategy(opno, tc->btree_opf) != BTEqualStrategyNumber)
			reason = psprintf("operator %s is not the equality of %s",
							  format_operator(opno), format_type_be(keytype));
		else if (type_is_collatable(kbase) && OidIsValid(collid) &&
				 !get_collation_isdeterministic(collid))
			reason = psprintf("collation \"%s\" is nondeterministic",
							  get_collation_name(collid));
	}
	if (why)
		*why = reason;
	return reason == NULL;
}

/*
 * Whether value (of the type valconv describes; NULL: the key column's
 * own) can equal a value of the key column key describes, for a lookup of
 * its stored form (PgpolyKeyEqualityIsByteEquality said the bytes match).
 * Not a text longer than a varchar(n) key's n characters (a domain's too):
 * no value of the column is, and a key stored with those bytes, blanks past
 * n, reads cut to n, a value the text does not equal.  The lookup of such a
 * value finds no row.
 */
bool
PgpolyKeyValueFits(PgpolyConv *key, PgpolyConv *valconv, Datum value)
{
	Oid			vbase = valconv ? valconv->basetype : key->basetype;
	text	   *t;

	if (key->basetype != VARCHAROID || key->basetypmod < (int32) VARHDRSZ ||
		(vbase != TEXTOID && vbase != VARCHAROID))
		return true;
	t = DatumGetTextPP(value);
	return pg_mbstrlen_with_len(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t)) <=
		key->basetypmod - (int32) VARHDRSZ;
}

/* ----------------------------------------------------------------
 *		Numbers compared by a store
 * ----------------------------------------------------------------
 */

/*
 * For a store that holds float8 numbers x, compares them with a float8,
 * and returns each as its shortest decimal text T(x), which is what SQL
 * then compares: the comparison with a float8 that selects exactly the x
 * whose T(x) satisfies  T(x) <strategy> value, for value a numeric or float8
 * datum of type typid.  *strategy (a btree strategy number; equality,
 * less or greater) is updated and the float8 goes to *bound.  Returns
 * false when no number satisfies it.
 *
 * For d = (float8) value, rounding being monotonic, x > d implies
 * T(x) > value and x < d implies T(x) < value; only x = d depends on how
 * value compares with T(d), which differs when value has more digits than
 * a float8 holds (0.1000000000000000001 rounds to 0.1).  A value beyond the
 * range of float8 (1e400, Infinity) or NaN, which SQL sorts above every
 * number, is compared as the largest (smallest) float8, which no stored
 * number exceeds: a store sent 1e400 would refuse it, or round it to
 * Infinity.
 */
bool
PgpolyFloat8Bound(Datum value, Oid typid, int *strategy, double *bound)
{
	bool		numeric = getBaseType(typid) == NUMERICOID;
	int			cmp;			/* value compared with T(d) */
	double		d;

	d = numeric ? DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow, value)) :
		DatumGetFloat8(value);
	if (isnan(d) || isinf(d))
	{
		cmp = isnan(d) || d > 0 ? 1 : -1;
		d = cmp > 0 ? DBL_MAX : -DBL_MAX;
	}
	else if (!numeric)
		cmp = 0;
	else
		cmp = DatumGetInt32(DirectFunctionCall2(numeric_cmp, value,
												DirectFunctionCall3(numeric_in,
																	CStringGetDatum(double_to_shortest_decimal(d)),
																	ObjectIdGetDatum(InvalidOid),
																	Int32GetDatum(-1))));
	*bound = d;
	if (cmp == 0)
		return true;
	switch (*strategy)
	{
		case BTLessStrategyNumber:
		case BTLessEqualStrategyNumber:
			/* x = d: T(d) < value when cmp > 0 */
			*strategy = cmp > 0 ? BTLessEqualStrategyNumber : BTLessStrategyNumber;
			return true;
		case BTGreaterStrategyNumber:
		case BTGreaterEqualStrategyNumber:
			*strategy = cmp > 0 ? BTGreaterStrategyNumber : BTGreaterEqualStrategyNumber;
			return true;
		default:
			return false;		/* equality: no T(x) is value */
	}
}

/* ----------------------------------------------------------------
 *		Messages
 * ----------------------------------------------------------------
 */

/*
 * A printable rendering of len bytes of store data for a message: valid
 * characters as they are, a backslash doubled, other bytes (NUL, invalid
 * sequences, control characters) as \xNN, a credential of a cached
 * connection (PgpolySecretAt: a store echoing AUTH) as "********"; at most
 * max bytes of input, then "...".
 */
char *
PgpolyPrintable(const char *s, size_t len, size_t max)
{
	StringInfoData buf;
	int			enc = GetDatabaseEncoding();
	size_t		i = 0;

	initStringInfo(&buf);
	while (i < len && i < max)
	{
		unsigned char c = (unsigned char) s[i];
		size_t		secret = PgpolySecretAt(s + i, len - i);
		int			n;

		if (secret > 0)
		{
			appendStringInfoString(&buf, "********");
			i += secret;
			continue;
		}
		if (c == '\\')
		{
			appendStringInfoString(&buf, "\\\\");
			i++;
			continue;
		}
		if (c < 0x20 || c == 0x7f)
			n = 0;
		else if (!IS_HIGHBIT_SET(c))
			n = 1;
		else
			n = pg_encoding_verifymbchar(enc, s + i, (int) Min(len - i, 8));
		if (n <= 0)
		{
			appendStringInfo(&buf, "\\x%02x", c);
			i++;
			continue;
		}
		appendBinaryStringInfo(&buf, s + i, n);
		i += n;
	}
	if (i < len)
		appendStringInfoString(&buf, "...");
	return buf.data;
}
