/*-------------------------------------------------------------------------
 *
 * elastic_query.c
 *		  Which quals Elasticsearch can evaluate, and the request body.
 *
 * A restriction clause is pushed down only when Elasticsearch computes
 * exactly what PostgreSQL would:
 *	- _query = expr: a query_string query (scored only when _score is used,
 *	  otherwise run in filter context);
 *	- column op expr for =, <>, <, <=, >, >= of the column type's default
 *	  btree operator family, column = ANY(array), column IS [NOT] NULL, on
 *	  scalar columns of numeric, boolean, date/time and text types, where
 *	  the value has the column's type (or another integer width): a
 *	  timestamptz compared with a timestamp column, or a float4 with a
 *	  float8 one, is converted by SQL in a way ES cannot reproduce;
 *	- _id = expr, _id = ANY(array): an ids query.
 * Every comparison goes through the mapping: it is pushed only when every
 * index the table reads maps the field with a type that compares as the
 * column's SQL type (mapped_type_compares: a float or long field rounds or
 * truncates what it indexes, a keyword orders numbers as strings, an
 * unmapped field matches nothing).  A `term` on an analyzed text field
 * would match single tokens, so such a field is compared through its
 * .keyword subfield when it has one, and otherwise the clause stays local.
 * What a field indexes must be what its _source holds: a keyword's
 * ignore_above leaves longer values unindexed (equality is pushed for
 * values within it; ranges, sorts and exists stay local), a null_value
 * indexes JSON nulls as a value (comparisons are rechecked locally, IS NULL
 * and sorts stay local), a copy_to target, runtime field or field with
 * ignore_malformed (its _source may hold values it did not index) is never
 * compared (ElasticFieldType).  A field whose name holds '*' is never
 * compared: exists queries and sorts expand such a name as a pattern
 * (`a*` would also find documents with only `ab`).
 * Text ranges and sorts (UTF-8 byte order in Lucene) are pushed only under
 * the C collation, and only in a database whose encoding's byte order is
 * the code point order (PgpolyStoreOrderIsByteOrder: UTF8, SQL_ASCII,
 * LATIN1; not EUC_JP, WIN1251 ...).
 * `col <> v` excludes documents without the field, as SQL's NULL does.
 * Date/time comparisons are near ones (make_near): Elasticsearch indexes an
 * instant to the millisecond, which a column's value is only close to, so
 * a range around the value is sent and the clause is also checked locally.
 *
 * Values are evaluated at execution time (Params, stable functions) and
 * written into the body with escape_json() / the core's JSON encoder, in
 * the fixed form documents are written in (dates in ISO 8601, timestamptz
 * in UTC), so a pushed comparison means the same in every session; for
 * EXPLAIN without values a placeholder is shown.  Elasticsearch holds
 * finite float8 numbers and dates: a numeric or float8 value is sent as the
 * float8 bound that selects what SQL selects from the _source text (1e400,
 * NaN and digits beyond a float8 were refused or rounded), and an infinite
 * date reaches every document with the field or none (value_reach).
 *
 * fdw/elastic_query.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/stratnum.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_opfamily.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "mb/pg_wchar.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/pg_locale.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "elastic.h"

/*
 * Types whose comparisons Elasticsearch reproduces.  Not float4 (ES float
 * rounding differs) and not char(n): SQL ignores its trailing blanks, a
 * keyword term or sort does not ('ab' = 'ab  ', 'ab' < E'ab\001').
 */
static bool
pushable_type(Oid typid)
{
	switch (typid)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case FLOAT8OID:
		case NUMERICOID:
		case BOOLOID:
		case TEXTOID:
		case VARCHAROID:
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return true;
		default:
			return false;
	}
}

/* Whether equality under collation collid is equality of the bytes. */
static bool
deterministic(Oid collid)
{
	return !OidIsValid(collid) || get_collation_isdeterministic(collid);
}

/* Whether typid is one of the text types. */
static bool
is_text_type(Oid typid)
{
	return typid == TEXTOID || typid == VARCHAROID || typid == BPCHAROID;
}

/* Whether type is one of the names in the NULL-terminated list. */
static bool
type_in(const char *type, const char *const *names)
{
	for (; *names; names++)
		if (strcmp(type, *names) == 0)
			return true;
	return false;
}

/*
 * Whether Elasticsearch compares the values of a field of mapped type as
 * SQL compares them in a column of type typid (date/time: approximately,
 * see near_bounds).  Integer fields truncate a fractional value and float,
 * half_float, scaled_float round every value, so a float8 or numeric
 * column compares only through a double; an int8 one not through a double
 * (2^53 + 1).
 */
static bool
mapped_type_compares(Oid typid, const char *type)
{
	static const char *const integers[] = {"long", "integer", "short", "byte", NULL};
	static const char *const dates[] = {"date", "date_nanos", NULL};

	switch (typid)
	{
		case INT2OID:
		case INT4OID:
			return type_in(type, integers) || strcmp(type, "double") == 0;
		case INT8OID:
			return type_in(type, integers);
		case FLOAT8OID:
		case NUMERICOID:
			return strcmp(type, "double") == 0;
		case BOOLOID:
			return strcmp(type, "boolean") == 0;
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return type_in(type, dates);
		case TEXTOID:
		case VARCHAROID:
			return strcmp(type, "keyword") == 0;
	}
	return false;
}

/* How a column compares in Elasticsearch (compare_field). */
typedef struct CompareField
{
	char	   *field;			/* the ES field compared (a .keyword maybe) */
	char	   *exists_field;	/* the field exists queries go to */
	const char *type;			/* the column field's mapped type */
	int			limit;			/* field's ignore_above, -1 */
	bool		exists_limited; /* exists_field has an ignore_above: exists
								 * misses documents with long values */
	bool		null_value;		/* a JSON null is indexed as a value */
} CompareField;

/*
 * How a scalar column compares in Elasticsearch (into *cf), or false if
 * comparisons on it cannot be pushed (array, jsonb, a field the mapping
 * does not give a type that compares as the column's, analyzed text
 * without .keyword ...).  ranged: the comparison is an ordering (needs the
 * C collation for text, over bytes that order as their UTF-8 does).  The column's field is noted in tbl->consulted:
 * the plan checks at execution that the mapping still says the same.
 */
static bool
compare_field(ElasticTable *tbl, AttrNumber att, Oid collation, bool ranged,
			  CompareField *cf)
{
	ElasticColumn *col = &tbl->cols[att - 1];
	ElasticFieldFacts facts;

	if (col->role != ECOL_FIELD || col->is_array || !pushable_type(col->typid))
		return false;
	/* exists (and sort) read a field name with '*' as a pattern of names */
	if (strchr(col->field, '*') != NULL)
		return false;
	if (is_text_type(col->typid) && !deterministic(collation))
		return false;
	if (is_text_type(col->typid) && ranged &&
		!(OidIsValid(collation) && lc_collate_is_c(collation) &&
		  PgpolyStoreOrderIsByteOrder()))
		return false;
	cf->type = ElasticFieldType(tbl, col->field, &facts);
	if (cf->type == NULL)
		return false;
	cf->exists_field = col->field;
	cf->exists_limited = facts.ignore_above >= 0;
	cf->null_value = facts.null_value;
	if (is_text_type(col->typid) && strcmp(cf->type, "text") == 0 && facts.has_keyword)
	{
		cf->field = psprintf("%s.keyword", col->field);
		cf->limit = facts.kw_ignore_above;
	}
	else if (mapped_type_compares(col->typid, cf->type))
	{
		cf->field = col->field;
		cf->limit = facts.ignore_above;
	}
	else
		return false;
	if (!list_member(tbl->consulted, makeString(col->field)))
		tbl->consulted = lappend(tbl->consulted, makeString(col->field));
	return true;
}

/*
 * Whether column att can be an ORDER BY key pushed down; *field gets the
 * ES field to sort on.  A date field holds milliseconds: it cannot order
 * timestamps that differ in their microseconds (date_nanos can).  A
 * keyword with ignore_above has no value for its long ones, and a field
 * with a null_value sorts the nulls as that value: neither sorts as SQL.
 */
bool
ElasticSortableColumn(ElasticTable *tbl, AttrNumber att, Oid collation,
					  char **field)
{
	Oid			typid = tbl->cols[att - 1].typid;
	CompareField cf;

	if (!compare_field(tbl, att, collation, true, &cf) || typid == BOOLOID ||
		cf.limit >= 0 || cf.null_value)
		return false;
	*field = cf.field;
	return (typid != TIMESTAMPOID && typid != TIMESTAMPTZOID) ||
		strcmp(cf.type, "date_nanos") == 0;
}

/*
 * The length Elasticsearch compares with ignore_above of a text value: a
 * Java String's length, in UTF-16 code units (a character beyond U+FFFF
 * counts twice).  Outside UTF-8 databases the byte length, which is never
 * less.
 */
static int
utf16_length(Datum value)
{
	text	   *t = DatumGetTextPP(value);
	const unsigned char *p = (const unsigned char *) VARDATA_ANY(t);
	int			len = VARSIZE_ANY_EXHDR(t);
	int			n = 0;

	if (GetDatabaseEncoding() != PG_UTF8)
		return len;
	for (int i = 0; i < len; i++)
	{
		/* a lead byte starts a character; a 4-byte one is a surrogate pair */
		if ((p[i] & 0xC0) != 0x80)
			n += (p[i] >= 0xF0) ? 2 : 1;
	}
	return n;
}

/*
 * Whether the text value (or an element of the text array value) of typid
 * is longer than limit (ignore_above, -1 none): Elasticsearch indexed no
 * such value, so a term on it matches nothing.
 */
static bool
over_limit(Datum value, Oid typid, int limit)
{
	Oid			elemtype = get_element_type(typid);

	if (limit < 0)
		return false;
	if (OidIsValid(elemtype))
	{
		ArrayType  *arr = DatumGetArrayTypeP(value);
		Datum	   *elems;
		bool	   *nulls;
		int			n;
		int16		elmlen;
		bool		elmbyval;
		char		elmalign;

		get_typlenbyvalalign(elemtype, &elmlen, &elmbyval, &elmalign);
		deconstruct_array(arr, elemtype, elmlen, elmbyval, elmalign, &elems, &nulls, &n);
		for (int i = 0; i < n; i++)
			if (!nulls[i] && utf16_length(elems[i]) > limit)
				return true;
		return false;
	}
	return utf16_length(value) > limit;
}

/*
 * Whether an equality on field cf with value can be pushed, and if so
 * whether ES only narrows the rows down (*recheck).  Under ignore_above a
 * longer value is not indexed: a constant within the limit compares
 * exactly, a longer one stays local, and a value known only at execution
 * is rechecked (a long one is then sent as match_all, see append_cond).
 * With a null_value, documents holding null match that value too.
 */
static bool
equality_pushable(CompareField *cf, Node *value, bool *recheck)
{
	if (cf->null_value)
		*recheck = true;
	if (cf->limit < 0)
		return true;
	if (!IsA(value, Const))
	{
		*recheck = true;
		return true;
	}
	return ((Const *) value)->constisnull ||
		!over_limit(((Const *) value)->constvalue, ((Const *) value)->consttype, cf->limit);
}

/* Append a cond (and its value expression) to the lists. */
static bool
add_cond(List **conds, List **exprs, ElasticCondKind kind, const char *field,
		 Node *value)
{
	ElasticCond *c = palloc0(sizeof(ElasticCond));

	c->kind = kind;
	c->field = pstrdup(field);
	c->exists_field = c->field;
	c->limit = -1;
	c->expr = -1;
	if (value)
	{
		c->expr = list_length(*exprs);
		*exprs = lappend(*exprs, value);
	}
	*conds = lappend(*conds, c);
	return true;
}

/*
 * Make the cond just added to *conds, on date/time column col, near: the
 * instants Elasticsearch indexes for the column's values are only close to
 * them.  A date field keeps milliseconds (a timestamp's microseconds are
 * cut), a timestamp(p) column rounds what it reads, and a date column
 * holds the day (in UTC) of the instant.  The range sent around the value
 * finds every document the clause can hold for; the clause, kept local,
 * decides (*recheck).
 */
static bool
make_near(List *conds, ElasticColumn *col, bool *recheck)
{
	ElasticCond *c = llast(conds);

	c->near = true;
	if (col->typid == DATEOID)
		c->above = SECS_PER_DAY * 1000;
	else if (col->typmod >= 0 && col->typmod < 3)
		c->below = c->above = col->typmod == 0 ? 1000 : col->typmod == 1 ? 100 : 10;
	else if (col->typmod >= 3 && col->typmod < MAX_TIMESTAMP_PRECISION)
		c->below = c->above = 1;
	*recheck = true;
	return true;
}

/*
 * Append a cond on field cf (and its value expression) to the lists, with
 * what the request needs of the field's mapping.
 */
static bool
add_field_cond(List **conds, List **exprs, ElasticCondKind kind, CompareField *cf,
			   Node *value)
{
	ElasticCond *c;

	add_cond(conds, exprs, kind, cf->field, value);
	c = llast(*conds);
	c->exists_field = pstrdup(cf->exists_field);
	c->limit = cf->limit;
	return true;
}

/* Whether opno is "<>" of the default btree opfamily of typid. */
static bool
is_not_equal(Oid opno, Oid typid)
{
	Oid			neg = get_negator(opno);

	return OidIsValid(neg) && PgpolyBtreeStrategy(neg, typid) == BTEqualStrategyNumber;
}

/*
 * Whether ES compares a text other than the value col reads: a varchar(n)
 * column (a domain's too) reads a stored text longer than n cut, blanks
 * past n dropped.  A clause it finds is then rechecked.
 */
static bool
reads_cut(ElasticColumn *col)
{
	return col->conv.basetype == VARCHAROID && col->conv.basetypmod >= 0;
}

/* column op value, with the column on the left. */
static bool
classify_op(ElasticTable *tbl, Oid opno, AttrNumber att, Node *value,
			Oid collation, List **conds, List **exprs, bool *recheck)
{
	ElasticColumn *col = &tbl->cols[att - 1];
	int			strategy = PgpolyBtreeStrategy(opno, col->typid);
	bool		ne = strategy == 0 && is_not_equal(opno, col->typid);
	ElasticCondKind kind = 0;
	CompareField cf;

	if (col->role == ECOL_QUERY)
		return col->typid == TEXTOID && strategy == BTEqualStrategyNumber &&
			add_cond(conds, exprs, ECOND_QUERY, "_query", value);
	if (reads_cut(col))
		*recheck = true;
	if (col->role == ECOL_ID)
		return is_text_type(col->typid) && strategy == BTEqualStrategyNumber &&
			deterministic(collation) &&
			add_cond(conds, exprs, ECOND_IDS, "_id", value);
	if (strategy == 0 && !ne)
		return false;
	/* a value of another type compares after a conversion ES cannot make */
	if (!PgpolyValueHasColumnForm(col->typid, exprType(value)))
		return false;
	if (!compare_field(tbl, att, collation,
					   strategy != BTEqualStrategyNumber && !ne, &cf))
		return false;
	if (col->typid == BOOLOID && strategy != BTEqualStrategyNumber && !ne)
		return false;
	/* a near comparison cannot exclude documents: no <> on dates */
	if (ne && col->is_datetime)
		return false;
	/* documents holding null match the null_value: they are rechecked */
	if (cf.null_value)
		*recheck = true;

	/*
	 * Under ignore_above, a range misses the documents whose long values
	 * were not indexed; <> needs them found by exists and its value
	 * indexed.
	 */
	if (cf.limit >= 0 && strategy != BTEqualStrategyNumber)
	{
		if (!ne || cf.exists_limited || !IsA(value, Const) ||
			!equality_pushable(&cf, value, recheck))
			return false;
	}
	if (ne)
		return add_field_cond(conds, exprs, ECOND_NE, &cf, value);
	if (strategy == BTEqualStrategyNumber && !equality_pushable(&cf, value, recheck))
		return false;
	switch (strategy)
	{
		case BTLessStrategyNumber:
			kind = ECOND_LT;
			break;
		case BTLessEqualStrategyNumber:
			kind = ECOND_LE;
			break;
		case BTEqualStrategyNumber:
			kind = ECOND_EQ;
			break;
		case BTGreaterEqualStrategyNumber:
			kind = ECOND_GE;
			break;
		case BTGreaterStrategyNumber:
			kind = ECOND_GT;
			break;
		default:
			return false;
	}
	add_field_cond(conds, exprs, kind, &cf, value);
	return !col->is_datetime || make_near(*conds, col, recheck);
}

/* OpExpr: column op value or value op column. */
static bool
classify_opexpr(ElasticTable *tbl, RelOptInfo *baserel, OpExpr *op,
				List **conds, List **exprs, bool *recheck)
{
	Node	   *l;
	Node	   *r;
	Oid			opno = op->opno;
	AttrNumber	att;

	if (list_length(op->args) != 2)
		return false;
	l = linitial(op->args);
	r = lsecond(op->args);
	if (PgpolyColumnOf(l, baserel) == 0)
	{
		Node	   *t = l;

		l = r;
		r = t;
		opno = get_commutator(opno);
		if (!OidIsValid(opno))
			return false;
	}
	att = PgpolyColumnOf(l, baserel);
	if (att == 0 || att > tbl->natts || !PgpolyIsScanConstant(r))
		return false;
	return classify_op(tbl, opno, att, r, op->inputcollid, conds, exprs, recheck);
}

/* column = ANY(array value). */
static bool
classify_any(ElasticTable *tbl, RelOptInfo *baserel, ScalarArrayOpExpr *sa,
			 List **conds, List **exprs, bool *recheck)
{
	AttrNumber	att = PgpolyColumnOf(linitial(sa->args), baserel);
	Node	   *arr = lsecond(sa->args);
	ElasticColumn *col;
	CompareField cf;

	if (!sa->useOr || att == 0 || att > tbl->natts || !PgpolyIsScanConstant(arr))
		return false;
	col = &tbl->cols[att - 1];
	if (PgpolyBtreeStrategy(sa->opno, col->typid) != BTEqualStrategyNumber)
		return false;
	if (reads_cut(col))
		*recheck = true;
	if (col->role == ECOL_ID)
		return deterministic(sa->inputcollid) &&
			add_cond(conds, exprs, ECOND_IDS_IN, "_id", arr);
	/* the terms of dates would not be near ones */
	if (col->is_datetime ||
		!PgpolyValueHasColumnForm(col->typid, get_element_type(exprType(arr))))
		return false;
	return compare_field(tbl, att, sa->inputcollid, false, &cf) &&
		equality_pushable(&cf, arr, recheck) &&
		add_field_cond(conds, exprs, ECOND_IN, &cf, arr);
}

/*
 * If clause can be evaluated by Elasticsearch, append its condition to
 * *conds (and its value to *exprs, the future fdw_exprs) and return true.
 * *recheck is set when Elasticsearch only narrows the rows down: the
 * clause must stay in the local quals too.
 */
bool
ElasticClassifyQual(ElasticTable *tbl, RelOptInfo *baserel, Expr *clause,
					List **conds, List **exprs, bool *recheck)
{
	AttrNumber	att;
	CompareField cf;

	*recheck = false;
	if (IsA(clause, OpExpr))
		return classify_opexpr(tbl, baserel, (OpExpr *) clause, conds, exprs, recheck);
	if (IsA(clause, ScalarArrayOpExpr))
		return classify_any(tbl, baserel, (ScalarArrayOpExpr *) clause, conds, exprs,
							recheck);
	if (IsA(clause, NullTest))
	{
		NullTest   *nt = (NullTest *) clause;

		att = PgpolyColumnOf((Node *) nt->arg, baserel);
		if (att == 0 || att > tbl->natts || nt->argisrow ||
			!compare_field(tbl, att, InvalidOid, false, &cf))
			return false;

		/*
		 * exists runs on the field itself: a .keyword may skip long values.
		 * It misses the long values of a keyword with ignore_above, and
		 * finds the nulls indexed as a null_value (IS NOT NULL rechecks).
		 */
		if (cf.exists_limited || (cf.null_value && nt->nulltesttype == IS_NULL))
			return false;
		*recheck = cf.null_value;
		return add_cond(conds, exprs,
						nt->nulltesttype == IS_NULL ? ECOND_MISSING : ECOND_EXISTS,
						cf.exists_field, NULL);
	}
	/* A boolean column alone, or NOT column. */
	att = PgpolyColumnOf((Node *) clause, baserel);
	if (att == 0 && is_notclause(clause))
		att = PgpolyColumnOf((Node *) get_notclausearg(clause), baserel);
	if (att > 0 && att <= tbl->natts && tbl->cols[att - 1].typid == BOOLOID &&
		compare_field(tbl, att, InvalidOid, false, &cf))
	{
		*recheck = cf.null_value;
		return add_cond(conds, exprs, ECOND_EQ, tbl->cols[att - 1].field,
						(Node *) makeBoolConst(!is_notclause(clause), false));
	}
	return false;
}

/* ----------------------------------------------------------------
 *		Plan representation
 * ----------------------------------------------------------------
 */

/* Conds as Lists of (Integer kind, String field, Integer expr, below, above). */
List *
ElasticCondsToList(List *conds)
{
	List	   *result = NIL;
	ListCell   *lc;

	foreach(lc, conds)
	{
		ElasticCond *c = lfirst(lc);

		List	   *l = list_make5(makeInteger(c->kind),
									   makeString(c->field),
									   makeInteger(c->expr),
									   makeInteger(c->near ? c->below : -1),
									   makeInteger(c->above));

		l = lappend(l, makeString(c->exists_field));
		result = lappend(result, lappend(l, makeInteger(c->limit)));
	}
	return result;
}

/* Inverse of ElasticCondsToList. */
List *
ElasticCondsFromList(List *list)
{
	List	   *result = NIL;
	ListCell   *lc;

	foreach(lc, list)
	{
		List	   *l = lfirst(lc);
		ElasticCond *c = palloc(sizeof(ElasticCond));

		c->kind = intVal(linitial(l));
		c->field = strVal(lsecond(l));
		c->expr = intVal(lthird(l));
		c->below = intVal(lfourth(l));
		c->above = intVal(list_nth(l, 4));
		c->exists_field = strVal(list_nth(l, 5));
		c->limit = intVal(list_nth(l, 6));
		c->near = c->below >= 0;
		result = lappend(result, c);
	}
	return result;
}

/* Sorts as a List of (String field, Integer desc, Integer nulls_first). */
List *
ElasticSortsToList(List *sorts)
{
	List	   *result = NIL;
	ListCell   *lc;

	foreach(lc, sorts)
	{
		ElasticSort *s = lfirst(lc);

		result = lappend(result, list_make3(makeString(s->field),
											makeInteger(s->desc),
											makeInteger(s->nulls_first)));
	}
	return result;
}

/* Inverse of ElasticSortsToList. */
List *
ElasticSortsFromList(List *list)
{
	List	   *result = NIL;
	ListCell   *lc;

	foreach(lc, list)
	{
		List	   *l = lfirst(lc);
		ElasticSort *s = palloc(sizeof(ElasticSort));

		s->field = strVal(linitial(l));
		s->desc = intVal(lsecond(l));
		s->nulls_first = intVal(lthird(l));
		result = lappend(result, s);
	}
	return result;
}

/* ----------------------------------------------------------------
 *		Request body
 * ----------------------------------------------------------------
 */

/* Append the value of param (or its EXPLAIN placeholder). */
static void
append_param(StringInfo buf, ElasticParamValue *p)
{
	if (p->explain)
		escape_json(buf, p->explain);
	else
		PgpolyJsonAppendValue(buf, p->value, p->typid, p->isnull);
}

/* What a comparison with a value can match in Elasticsearch. */
typedef enum ElasticReach
{
	EREACH_VALUE,				/* the documents the comparison selects */
	EREACH_NONE,				/* no document */
	EREACH_ALL					/* every document that has the field */
} ElasticReach;

/*
 * What  field <kind> value  (EQ, NE read as EQ, or a range) reaches, for a
 * numeric, float8 or date/time value; the comparison to send, when it is
 * EREACH_VALUE, is in *kind and *p.  Elasticsearch holds finite float8
 * numbers and finite dates only, so a number becomes the float8 bound that
 * selects exactly what SQL's comparison of the _source text selects
 * (PgpolyFloat8Bound: 1e400, NaN and values with more digits than a float8
 * were refused or rounded), and an infinite date reaches all or nothing.
 */
static ElasticReach
value_reach(ElasticCondKind *kind, ElasticParamValue *p)
{
	static const int strategies[] = {BTLessStrategyNumber, BTLessEqualStrategyNumber,
	BTGreaterStrategyNumber, BTGreaterEqualStrategyNumber};
	bool		ranged = *kind >= ECOND_LT && *kind <= ECOND_GE;
	int			strategy = ranged ? strategies[*kind - ECOND_LT] : BTEqualStrategyNumber;
	Oid			type = getBaseType(p->typid);
	int			sign = 0;		/* an infinite date/time: its sign */
	double		d;

	if (p->explain || p->isnull)
		return EREACH_VALUE;
	if (type == NUMERICOID || type == FLOAT8OID)
	{
		if (!PgpolyFloat8Bound(p->value, p->typid, &strategy, &d))
			return EREACH_NONE;
		for (int k = 0; ranged && k < 4; k++)
			if (strategies[k] == strategy)
				*kind = ECOND_LT + k;
		p->value = Float8GetDatum(d);
		p->typid = FLOAT8OID;
		return EREACH_VALUE;
	}
	if (type == DATEOID && DATE_NOT_FINITE(DatumGetDateADT(p->value)))
		sign = DATE_IS_NOBEGIN(DatumGetDateADT(p->value)) ? -1 : 1;
	else if ((type == TIMESTAMPOID || type == TIMESTAMPTZOID) &&
			 TIMESTAMP_NOT_FINITE(DatumGetTimestamp(p->value)))
		sign = TIMESTAMP_IS_NOBEGIN(DatumGetTimestamp(p->value)) ? -1 : 1;
	if (sign == 0)
		return EREACH_VALUE;
	if (!ranged)
		return EREACH_NONE;
	return (strategy == BTLessStrategyNumber || strategy == BTLessEqualStrategyNumber) ==
		(sign > 0) ? EREACH_ALL : EREACH_NONE;
}

/* Whether p is a float8 zero (value_reach made numbers float8). */
static bool
is_float_zero(ElasticParamValue *p)
{
	return !p->explain && !p->isnull && p->typid == FLOAT8OID &&
		DatumGetFloat8(p->value) == 0.0;
}

/*
 * The elements of the array param p (not NULL, not EXPLAIN's placeholder),
 * deconstructed in the current context; their count.
 */
static int
param_elements(ElasticParamValue *p, Oid *elemtype, Datum **elems, bool **enulls)
{
	ArrayType  *arr = DatumGetArrayTypeP(p->value);
	int16		elmlen;
	bool		elmbyval;
	char		elmalign;
	int			n;

	*elemtype = ARR_ELEMTYPE(arr);
	get_typlenbyvalalign(*elemtype, &elmlen, &elmbyval, &elmalign);
	deconstruct_array(arr, *elemtype, elmlen, elmbyval, elmalign, elems, enulls, &n);
	return n;
}

/*
 * Append elements [*i, n) of an array param as comma-separated JSON
 * values, at most max of them; *i moves past the elements taken.  NULLs
 * and values that match nothing (1e400) are skipped; a float zero writes
 * two values.
 */
static void
append_elements(StringInfo buf, Oid elemtype, Datum *elems, bool *enulls,
				int n, int *i, int max)
{
	int			written = 0;

	for (; *i < n; (*i)++)
	{
		ElasticCondKind kind = ECOND_EQ;
		ElasticParamValue e = {elems[*i], false, elemtype, NULL};
		int			need;

		if (enulls[*i] || value_reach(&kind, &e) != EREACH_VALUE)
			continue;			/* = NULL never matches, nor = 1e400 */
		need = is_float_zero(&e) ? 2 : 1;
		if (written + need > max)
			break;
		if (written > 0)
			appendStringInfoChar(buf, ',');
		/* SQL's 0 is also Elasticsearch's -0.0 (append_zero_compare) */
		if (need == 2)
			appendStringInfoString(buf, "0.0,-0.0");
		else
			PgpolyJsonAppendValue(buf, e.value, e.typid, false);
		written += need;
	}
}

/* Append the elements of an array param as a JSON array. */
static void
append_array_param(StringInfo buf, ElasticParamValue *p)
{
	Oid			elemtype;
	Datum	   *elems;
	bool	   *enulls;
	int			n;
	int			i = 0;

	appendStringInfoChar(buf, '[');
	if (p->explain)
		escape_json(buf, p->explain);
	else if (!p->isnull)
	{
		n = param_elements(p, &elemtype, &elems, &enulls);
		append_elements(buf, elemtype, elems, enulls, n, &i, INT_MAX);
	}
	appendStringInfoChar(buf, ']');
}

/* Append {"<name>":{"<field>":<value>}} and a comma if needed. */
static void
append_leaf(StringInfo buf, const char *name, const char *field,
			ElasticParamValue *p, bool array)
{
	appendStringInfo(buf, "{\"%s\":{", name);
	escape_json(buf, field);
	appendStringInfoChar(buf, ':');
	if (array)
		append_array_param(buf, p);
	else
		append_param(buf, p);
	appendStringInfoString(buf, "}}");
}

/*
 * Append field IN (array param p) as a terms query.  Elasticsearch refuses
 * a terms query of more values than the index's max_terms_count (65536 by
 * default): a longer list becomes several terms queries of at most that
 * many values, any of which matches (a bool query of should clauses only).
 */
static void
append_terms(StringInfo buf, const char *field, ElasticParamValue *p)
{
	Oid			elemtype;
	Datum	   *elems;
	bool	   *enulls;
	int			n;
	int			i = 0;
	bool		first = true;

	if (p->explain || p->isnull ||
		(n = param_elements(p, &elemtype, &elems, &enulls)) <= ELASTIC_MAX_TERMS / 2)
	{
		append_leaf(buf, "terms", field, p, true);
		return;
	}
	appendStringInfoString(buf, "{\"bool\":{\"should\":[");
	do
	{
		appendStringInfoString(buf, first ? "{\"terms\":{" : ",{\"terms\":{");
		first = false;
		escape_json(buf, field);
		appendStringInfoString(buf, ":[");
		append_elements(buf, elemtype, elems, enulls, n, &i, ELASTIC_MAX_TERMS);
		appendStringInfoString(buf, "]}}");
	} while (i < n);
	appendStringInfoString(buf, "]}}");
}

/*
 * Append the instant ts moved by ms milliseconds and rounded to a
 * millisecond away from ts (up for an upper bound, down for a lower one:
 * a date_nanos field holds the microseconds a bound of milliseconds would
 * cut, even when ms is 0) as ISO 8601 in UTC with every field present: a
 * bound without its fraction would be read as the end of its second by gt
 * and lte.  false (nothing appended) when the bound is outside years 1 to
 * 9999, which the date format cannot write: the caller then leaves that
 * side open.
 */
static bool
append_near_bound(StringInfo buf, Timestamp ts, int ms, bool upper)
{
	struct pg_tm tm;
	fsec_t		fsec;
	int64		usec = ts + (int64) ms * 1000;
	int64		rem = usec % 1000;

	if (rem < 0)
		rem += 1000;
	usec -= rem;
	if (upper && rem > 0)
		usec += 1000;
	if (!IS_VALID_TIMESTAMP(usec) || timestamp2tm(usec, NULL, &tm, &fsec, NULL, NULL) != 0 ||
		tm.tm_year < 1 || tm.tm_year > 9999)
		return false;
	appendStringInfo(buf, "\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"",
					 tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min,
					 tm.tm_sec, (int) (fsec / 1000));
	return true;
}

/*
 * Append the range query of near cond c (see make_near) with the finite
 * value p: [value - below, value + above] for =, the upper side for < and
 * <=, the lower for > and >=; a side beyond what a date holds is open.
 */
static void
append_near(StringInfo buf, ElasticCond *c, ElasticCondKind kind,
			ElasticParamValue *p)
{
	Timestamp	ts;
	StringInfoData lower;
	StringInfoData upper;

	if (getBaseType(p->typid) == DATEOID)
		ts = date2timestamp_no_overflow(DatumGetDateADT(p->value));
	else
		ts = DatumGetTimestamp(p->value);
	initStringInfo(&lower);
	initStringInfo(&upper);
	if (kind == ECOND_LT || kind == ECOND_LE || !append_near_bound(&lower, ts, -c->below, false))
		resetStringInfo(&lower);
	if (kind == ECOND_GT || kind == ECOND_GE || !append_near_bound(&upper, ts, c->above, true))
		resetStringInfo(&upper);
	if (lower.len == 0 && upper.len == 0)
	{
		appendStringInfoString(buf, "{\"exists\":{\"field\":");
		escape_json(buf, c->field);
		appendStringInfoString(buf, "}}");
		return;
	}
	appendStringInfoString(buf, "{\"range\":{");
	escape_json(buf, c->field);
	appendStringInfoString(buf, ":{");
	if (lower.len)
		appendStringInfo(buf, "\"gte\":%s%s", lower.data, upper.len ? "," : "");
	if (upper.len)
		appendStringInfo(buf, "\"lte\":%s", upper.data);
	appendStringInfoString(buf, ",\"format\":\"strict_date_optional_time\"}}}");
}

/*
 * Append the comparison of field with zero (EQ, NE read as EQ, or a range).
 * Elasticsearch tells -0.0 from 0.0 (number.html): a term 0 misses the
 * documents holding -0.0, which SQL finds equal, and gte 0 misses them too.
 * So = 0 is the range from -0.0 to 0.0, and each range has the zero that
 * takes in (or leaves out) both (an exclusive lower bound on 0.0 and an
 * exclusive upper bound on -0.0 leave out both zeros).  The bounds are
 * written with a fraction: "-0" would be read as the integer 0.
 */
static void
append_zero_compare(StringInfo buf, const char *field, ElasticCondKind kind)
{
	appendStringInfoString(buf, "{\"range\":{");
	escape_json(buf, field);
	switch (kind)
	{
		case ECOND_LT:
			appendStringInfoString(buf, ":{\"lt\":-0.0}}}");
			break;
		case ECOND_LE:
			appendStringInfoString(buf, ":{\"lte\":0.0}}}");
			break;
		case ECOND_GT:
			appendStringInfoString(buf, ":{\"gt\":0.0}}}");
			break;
		case ECOND_GE:
			appendStringInfoString(buf, ":{\"gte\":-0.0}}}");
			break;
		default:
			appendStringInfoString(buf, ":{\"gte\":-0.0,\"lte\":0.0}}}");
			break;
	}
}

/*
 * Append the term (EQ, and NE, which goes into must_not) or range query of
 * cond c with the value p (see value_reach; near conds: append_near).
 */
static void
append_compare(StringInfo buf, ElasticCond *c, ElasticParamValue *p)
{
	static const char *const range_ops[] = {"lt", "lte", "gt", "gte"};
	ElasticCondKind kind = c->kind;
	ElasticParamValue v = *p;

	switch (value_reach(&kind, &v))
	{
		case EREACH_NONE:
			appendStringInfoString(buf, "{\"match_none\":{}}");
			return;
		case EREACH_ALL:
			appendStringInfoString(buf, "{\"exists\":{\"field\":");
			escape_json(buf, c->field);
			appendStringInfoString(buf, "}}");
			return;
		case EREACH_VALUE:
			break;
	}
	if (c->near && !v.explain && !v.isnull)
	{
		append_near(buf, c, kind, &v);
		return;
	}
	if (is_float_zero(&v))
	{
		append_zero_compare(buf, c->field, kind);
		return;
	}
	if (kind == ECOND_EQ || kind == ECOND_NE)
	{
		append_leaf(buf, "term", c->field, &v, false);
		return;
	}
	appendStringInfoString(buf, "{\"range\":{");
	escape_json(buf, c->field);
	appendStringInfo(buf, ":{\"%s\":", range_ops[kind - ECOND_LT]);
	append_param(buf, &v);
	appendStringInfoString(buf, "}}}");
}

/* Append the ES query of one cond that goes into filter or must_not. */
static void
append_cond(StringInfo buf, ElasticCond *c, ElasticParamValue *params)
{
	ElasticParamValue *p = c->expr >= 0 ? &params[c->expr] : NULL;

	/*
	 * A value longer than the keyword's ignore_above was never indexed: the
	 * documents holding it are found by the clause, rechecked here.
	 */
	if (p && !p->explain && !p->isnull && (c->kind == ECOND_EQ || c->kind == ECOND_IN) &&
		over_limit(p->value, p->typid, c->limit))
	{
		appendStringInfoString(buf, "{\"match_all\":{}}");
		return;
	}
	switch (c->kind)
	{
		case ECOND_EQ:
		case ECOND_NE:
		case ECOND_LT:
		case ECOND_LE:
		case ECOND_GT:
		case ECOND_GE:
			append_compare(buf, c, p);
			break;
		case ECOND_IN:
			append_terms(buf, c->field, p);
			break;
		case ECOND_EXISTS:
		case ECOND_MISSING:
			appendStringInfoString(buf, "{\"exists\":{\"field\":");
			escape_json(buf, c->field);
			appendStringInfoString(buf, "}}");
			break;
		case ECOND_IDS:
		case ECOND_IDS_IN:
			appendStringInfoString(buf, "{\"ids\":{\"values\":");
			if (c->kind == ECOND_IDS_IN)
				append_array_param(buf, p);
			else
			{
				appendStringInfoChar(buf, '[');
				append_param(buf, p);
				appendStringInfoChar(buf, ']');
			}
			appendStringInfoString(buf, "}}");
			break;
		case ECOND_QUERY:
			appendStringInfoString(buf, "{\"query_string\":{\"query\":");
			append_param(buf, p);
			appendStringInfoString(buf, "}}");
			break;
	}
}

/* Which bool clause a cond goes to: 0 must, 1 filter, 2 must_not. */
static int
cond_clause(ElasticCond *c, bool scoring)
{
	if (c->kind == ECOND_QUERY)
		return scoring ? 0 : 1;
	if (c->kind == ECOND_NE || c->kind == ECOND_MISSING)
		return 2;
	return 1;
}

/* Whether a cond's value is NULL (the cond then matches nothing). */
static bool
cond_is_null(ElasticCond *c, ElasticParamValue *params)
{
	return c->expr >= 0 && params[c->expr].explain == NULL && params[c->expr].isnull;
}

/*
 * Append the "query" object for conds: a bool query with must (scored
 * full-text), filter and must_not clauses; match_all when there is none.
 * scoring: run _query in scoring context.
 */
void
ElasticAppendQuery(StringInfo buf, List *conds, ElasticParamValue *params,
				   bool scoring)
{
	static const char *const names[] = {"must", "filter", "must_not"};
	ListCell   *lc;

	if (conds == NIL)
	{
		appendStringInfoString(buf, "{\"match_all\":{}}");
		return;
	}
	foreach(lc, conds)
		if (cond_is_null(lfirst(lc), params))
		{
			/* col op NULL is never true in SQL */
			appendStringInfoString(buf, "{\"match_none\":{}}");
			return;
		}
	appendStringInfoString(buf, "{\"bool\":{");
	for (int k = 0; k < 3; k++)
	{
		bool		first = true;
		bool		any = buf->data[buf->len - 1] != '{';

		foreach(lc, conds)
		{
			ElasticCond *c = lfirst(lc);

			/* col <> v needs the field to exist, like SQL's NULL */
			if (!(cond_clause(c, scoring) == k ||
				  (k == 1 && c->kind == ECOND_NE)))
				continue;
			if (!first || any)
				appendStringInfoChar(buf, ',');
			if (first)
				appendStringInfo(buf, "\"%s\":[", names[k]);
			if (k == 1 && c->kind == ECOND_NE)
			{
				appendStringInfoString(buf, "{\"exists\":{\"field\":");
				escape_json(buf, c->exists_field);
				appendStringInfoString(buf, "}}");
			}
			else
				append_cond(buf, c, params);
			first = false;
		}
		if (!first)
			appendStringInfoChar(buf, ']');
	}
	appendStringInfoString(buf, "}}");
}

/*
 * Append the "sort" array; tiebreaker (PIT paging) is the field appended
 * last so that every hit has distinct sort values ("_shard_doc", "_id").
 */
static void
append_sort(StringInfo buf, List *sorts, const char *tiebreaker)
{
	ListCell   *lc;

	appendStringInfoString(buf, ",\"sort\":[");
	foreach(lc, sorts)
	{
		ElasticSort *s = lfirst(lc);

		if (foreach_current_index(lc) > 0)
			appendStringInfoChar(buf, ',');
		appendStringInfoChar(buf, '{');
		escape_json(buf, s->field);
		appendStringInfo(buf, ":{\"order\":\"%s\"", s->desc ? "desc" : "asc");
		if (strcmp(s->field, "_score") != 0)
			appendStringInfo(buf, ",\"missing\":\"%s\"", s->nulls_first ? "_first" : "_last");
		appendStringInfoString(buf, "}}");
	}
	if (tiebreaker)
	{
		if (sorts)
			appendStringInfoChar(buf, ',');
		appendStringInfoChar(buf, '{');
		escape_json(buf, tiebreaker);
		appendStringInfoString(buf, ":\"asc\"}");
	}
	appendStringInfoChar(buf, ']');
}

/*
 * Append the search body (without "pit", "search_after" and the closing
 * brace, which the scan adds per page): query, _source, sort,
 * seq_no_primary_term (the scan of a modification's target only), size.
 */
void
ElasticAppendBody(StringInfo buf, ElasticQuerySpec *spec,
				  ElasticParamValue *params, int size, const char *tiebreaker)
{
	ListCell   *lc;
	bool		score_sorted = false;

	foreach(lc, spec->sorts)
		if (strcmp(((ElasticSort *) lfirst(lc))->field, "_score") == 0)
			score_sorted = true;
	appendStringInfoString(buf, "{\"query\":");
	ElasticAppendQuery(buf, spec->conds, params, spec->need_score);
	appendStringInfoString(buf, ",\"_source\":");
	if (!spec->need_source)
		appendStringInfoString(buf, "false");
	else if (spec->source_all || spec->whole_source)
		appendStringInfoString(buf, "true");
	else
	{
		appendStringInfoChar(buf, '[');
		foreach(lc, spec->includes)
		{
			if (foreach_current_index(lc) > 0)
				appendStringInfoChar(buf, ',');
			escape_json(buf, strVal(lfirst(lc)));
		}
		appendStringInfoChar(buf, ']');
	}
	if (spec->sorts || tiebreaker)
		append_sort(buf, spec->sorts, tiebreaker);
	if (spec->need_score && !score_sorted && (spec->sorts || tiebreaker))
		appendStringInfoString(buf, ",\"track_scores\":true");
	if (spec->seq_no)
		appendStringInfoString(buf, ",\"seq_no_primary_term\":true");
	appendStringInfo(buf, ",\"size\":%d,\"track_total_hits\":false", size);
}
