/*-------------------------------------------------------------------------
 *
 * vector_scan.c
 *		  Scan execution of pgpoly_vector: remote rows, read-your-writes
 *		  overlay, local k-NN, rows to tuples.
 *
 * A scan is one of:
 *	- by ids: the listed ids, in rounds of fetch_size;
 *	- paged: pages of fetch_size, each request continuing where the
 *	  previous one stopped (the provider's cursor); before an immediate-mode
 *	  write to the collection is sent, the pages left are read at once
 *	  (drain_pages), since the write would move them;
 *	- k-NN: one query with k results.
 * Writes of this transaction still buffered for the table overlay the
 * remote rows: a record they touch is taken from the buffer, not from the
 * service.  A k-NN scan with buffered writes, or whose operator does not
 * match the collection's distance, is computed here instead: the rows
 * matching the filter are fetched (paged), overlaid, the buffered ones
 * checked against the filter, and the k nearest kept; so is a cosine k-NN
 * whose answer holds a zero vector, which the service ranks at distance 1
 * and SQL's <=> (NaN) after every record, and a k-NN whose query vector
 * holds NaN or Infinity, which JSON cannot carry to the service.
 *
 * Invariant: in a k-NN scan no SQL qual is rechecked above the scan (the
 * LIMIT is consumed here), so rows that do not come from the service are
 * checked here against the same conditions the service applies.
 *
 * Memory: a batch of remote rows (and its request) lives in the scan's
 * batch context, reset when the next batch is fetched, so a scan holds one
 * batch at a time; a row returned is valid until the next call.  A k-NN
 * computed here keeps every batch (its candidates).
 *
 * fdw/vector_scan.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pgpoly_jansson.h"

#include <math.h>

#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/memutils.h"

#include "vector.h"

struct VectorScan
{
	VectorTable *tbl;
	PgpolyConnection *conn;
	VectorScanSpec *spec;
	VectorCollection *coll;		/* NULL: the collection does not exist yet */
	List	   *pending;		/* the table's buffered writes, in order */
	HTAB	   *overlay;		/* id -> latest buffered VectorWrite */
	List	   *overlay_rows;	/* buffered rows still to return */
	List	   *rows;			/* current batch of remote rows */
	int			pos;
	List	   *ids;			/* by ids: spec->ids, each once, in order */
	HTAB	   *wanted;			/* ... as a key table of WantedId */
	int			ids_next;		/* by ids: the first of ids not fetched yet */
	MemoryContext batch_cxt;	/* the current batch (reset by the next) */
	char	   *cursor;			/* paged: the next page, NULL: the first */
	bool		remote_done;
	bool		local;			/* k-NN computed here */
	bool		fetching;		/* paged: a page is being read */
	PgpolyPagedScan paged;		/* paged: listed while pages are left */
	int			requests;
	int			returned;		/* rows returned (capped scans) */
};

static void check_returned_ids(VectorScan *scan, List *rows);

/* An id a scan by ids asks for, and whether the service returned it. */
typedef struct WantedId
{
	PgpolyKeyRef id;			/* hash key (PgpolyKeyTable) */
	bool		returned;
} WantedId;

typedef struct OverlayEntry
{
	PgpolyKeyRef id;			/* hash key (PgpolyKeyTable): latest->row.id */
	VectorWrite *latest;		/* the last buffered write of this id */
} OverlayEntry;

/* ----------------------------------------------------------------
 *		Where conditions
 * ----------------------------------------------------------------
 */

/*
 * Compare a JSON number a (held) with a bound b as Chroma does: two
 * integers exactly (as 64-bit integers: 9007199254740993 > 9007199254740992,
 * which are one double), an integer with a whole double within the range
 * of int64 exactly too (Chroma converts the double to an integer: the
 * float8 bound 9.007199254740992e+15 sent for a numeric 2^53 is below
 * 9007199254740993 there), others as doubles.  (Chroma truncates a
 * fractional bound compared with an integer; the filters sent are made to
 * select the same records either way: VectorNumberConds.  A whole bound
 * beyond int64 is not sent to Chroma but as the largest float8, which no
 * integer reaches either way: chroma_exact_bound.)
 */
static int
number_cmp(json_t *a, json_t *b)
{
	double		d = json_number_value(b);
	int64		i;

	if (json_is_integer(a) && (json_is_integer(b) ||
							   (d == floor(d) && d >= -9223372036854775808.0 &&
								d < 9223372036854775808.0)))
	{
		i = json_is_integer(b) ? json_integer_value(b) : (int64) d;
		return json_integer_value(a) < i ? -1 : json_integer_value(a) > i;
	}
	return json_number_value(a) < d ? -1 : json_number_value(a) > d;
}

/* Chroma's equality of two metadata values: numbers by value. */
static bool
values_equal(json_t *a, json_t *b)
{
	if (json_is_number(a) && json_is_number(b))
		return number_cmp(a, b) == 0;
	return json_equal(a, b);
}

/* Whether metadata value v satisfies op against c (Chroma semantics). */
static bool
value_matches(json_t *v, VectorCondOp op, json_t *c)
{
	size_t		i;
	json_t	   *e;

	if (v == NULL || json_is_null(v))
		return false;
	switch (op)
	{
		case VCOND_EQ:
			return values_equal(v, c);
		case VCOND_IN:
			json_array_foreach(c, i, e)
				if (values_equal(v, e))
				return true;
			return false;
		default:
			break;
	}
	if (!json_is_number(v) || !json_is_number(c))
		return false;
	switch (op)
	{
		case VCOND_LT:
			return number_cmp(v, c) < 0;
		case VCOND_LE:
			return number_cmp(v, c) <= 0;
		case VCOND_GT:
			return number_cmp(v, c) > 0;
		default:
			return number_cmp(v, c) >= 0;
	}
}

/* Whether parsed metadata meta satisfies every condition of conds. */
static bool
meta_matches(json_t *meta, List *conds)
{
	bool		ok = true;
	ListCell   *lc;

	foreach(lc, conds)
	{
		VectorCondEval *c = lfirst(lc);
		json_t	   *val = json_loads(PgpolyServerToStoreCstr(c->value, true),
									 JSON_DECODE_ANY, NULL);

		ok = val != NULL &&
			value_matches(json_object_get(meta, PgpolyServerToStoreCstr(c->key, true)),
						  c->op, val);
		if (val)
			json_decref(val);
		if (!ok && c->or_else)
			ok = meta_matches(meta, list_make1(c->or_else));
		if (!ok)
			break;
	}
	return ok;
}

/*
 * Whether a row not from the service satisfies every condition.  The
 * parsed metadata is malloc'd (jansson): freed on an ERROR too (a condition
 * not valid UTF-8 in a SQL_ASCII database is one), which no memory context
 * reset would free.
 */
static bool
row_matches(VectorRow *row, List *conds)
{
	json_t	   *meta;
	bool		ok;

	if (conds == NIL)
		return true;
	if (row->metadata == NULL)
		return false;
	meta = json_loads(PgpolyServerToStoreCstr(row->metadata, true), 0, NULL);
	if (meta == NULL)
		return false;
	PG_TRY();
	{
		ok = meta_matches(meta, conds);
	}
	PG_CATCH();
	{
		json_decref(meta);
		PG_RE_THROW();
	}
	PG_END_TRY();
	json_decref(meta);
	return ok;
}

/*
 * Whether metadata value v is a number that satisfies a number condition
 * c: compared exactly with c's numbers (numeric_cmp, as SQL compares an
 * integer or numeric column's value).  A string is not a number, but for a
 * numeric column's (c->specials) "Infinity", "-Infinity" and "NaN".
 */
static bool
number_satisfies(JsonbValue *v, VectorLocalCond *c)
{
	Datum		x;
	ListCell   *lc;

	if (v->type == jbvNumeric)
		x = NumericGetDatum(v->val.numeric);
	else if (c->specials && v->type == jbvString &&
			 ((v->val.string.len == 8 && strncmp(v->val.string.val, "Infinity", 8) == 0) ||
			  (v->val.string.len == 9 && strncmp(v->val.string.val, "-Infinity", 9) == 0) ||
			  (v->val.string.len == 3 && strncmp(v->val.string.val, "NaN", 3) == 0)))
		x = DirectFunctionCall3(numeric_in,
								CStringGetDatum(pnstrdup(v->val.string.val, v->val.string.len)),
								ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	else
		return false;
	foreach(lc, c->numbers)
	{
		int			cmp = DatumGetInt32(DirectFunctionCall2(numeric_cmp, x,
															NumericGetDatum(lfirst(lc))));

		if (c->op == VCOND_LT ? cmp < 0 : c->op == VCOND_LE ? cmp <= 0 :
			c->op == VCOND_GT ? cmp > 0 : c->op == VCOND_GE ? cmp >= 0 : cmp == 0)
			return true;
	}
	return false;
}

/*
 * Whether the text SQL's ->> reads of metadata value v is one of the texts
 * of a text condition c.
 */
static bool
text_satisfies(JsonbValue *v, VectorLocalCond *c)
{
	char	   *text;
	ListCell   *lc;

	if (v->type == jbvString)
		text = pnstrdup(v->val.string.val, v->val.string.len);
	else if (v->type == jbvNumeric)
		text = DatumGetCString(DirectFunctionCall1(numeric_out,
												   NumericGetDatum(v->val.numeric)));
	else if (v->type == jbvBool)
		text = v->val.boolean ? "true" : "false";
	else
		text = JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
	foreach(lc, c->texts)
		if (strcmp(text, lfirst(lc)) == 0)
			return true;
	return false;
}

/*
 * Whether row satisfies every condition not sent (VectorLocalCond), as SQL
 * reads its key: a text condition its text as SQL's ->> reads it (a
 * string's value, a number's numeric_out, true/false, an array's or
 * object's JSON), a number condition its number; a missing key or a JSON
 * null is SQL's NULL, which satisfies none.
 */
static bool
local_conds_match(VectorRow *row, List *local_conds)
{
	Jsonb	   *doc;
	ListCell   *lc;

	if (local_conds == NIL)
		return true;
	if (row->metadata == NULL)
		return false;
	doc = DatumGetJsonbP(PgpolyJsonbFromServerText(row->metadata, strlen(row->metadata), NULL));
	foreach(lc, local_conds)
	{
		VectorLocalCond *c = lfirst(lc);
		JsonbValue *v = JsonContainerIsObject(&doc->root) ?
			getKeyJsonValueFromContainer(&doc->root, c->key, strlen(c->key), NULL) : NULL;

		if (v == NULL || v->type == jbvNull ||
			!(c->texts != NIL ? text_satisfies(v, c) : number_satisfies(v, c)))
			return false;
	}
	return true;
}

/* ----------------------------------------------------------------
 *		Overlay of buffered writes
 * ----------------------------------------------------------------
 */

/*
 * Add buffered write w to *overlay (created in the current memory context
 * if NULL): id -> the last buffered write of it.  The ids are anyone's (a
 * SELECT copies them, the service lists them): a seeded key table
 * (keyhash.c), so that ids chosen to collide cannot make the overlay
 * quadratic.  The entry's key points at the id of the write it keeps, which
 * the caller keeps as long as the overlay.
 */
void
VectorOverlayAdd(HTAB **overlay, VectorWrite *w)
{
	PgpolyKeyRef ref = {w->row.id, strlen(w->row.id)};
	OverlayEntry *e;
	bool		found;

	if (*overlay == NULL)
		*overlay = PgpolyKeyTable("pgpoly vector overlay", sizeof(OverlayEntry),
								  CurrentMemoryContext);
	e = hash_search(*overlay, &ref, HASH_ENTER, &found);
	e->id.key = w->row.id;		/* the same bytes, in the write kept */
	e->latest = w;
}

/*
 * Index buffered writes (PgpolyWrite * of one table, PgpolyPendingWrites)
 * by id; NULL when there are none.
 */
HTAB *
VectorOverlayBuild(List *pending)
{
	HTAB	   *h = NULL;
	ListCell   *lc;

	foreach(lc, pending)
		VectorOverlayAdd(&h, ((PgpolyWrite *) lfirst(lc))->payload);
	return h;
}

/* The latest buffered write of id (a NUL-free string), or NULL. */
VectorWrite *
VectorOverlayLatest(HTAB *overlay, const char *id)
{
	OverlayEntry *e;

	if (overlay == NULL)
		return NULL;
	e = PgpolyKeyTableFind(overlay, id, strlen(id));
	return e ? e->latest : NULL;
}

/*
 * The buffered rows that exist (the latest write of each id is not a
 * delete), in the order of their latest writes (pending: the writes the
 * overlay was built from).
 */
static List *
overlay_rows(HTAB *overlay, List *pending)
{
	List	   *rows = NIL;
	ListCell   *lc;

	foreach(lc, pending)
	{
		VectorWrite *w = ((PgpolyWrite *) lfirst(lc))->payload;

		if (w->kind != VW_DELETE && VectorOverlayLatest(overlay, w->row.id) == w)
			rows = lappend(rows, &w->row);
	}
	return rows;
}

/* ----------------------------------------------------------------
 *		Fetching
 * ----------------------------------------------------------------
 */

/*
 * The next page's cursor, just read into the batch's memory, outlives the
 * batch: copy it into the scan's.
 */
static void
keep_cursor(VectorScan *scan)
{
	if (scan->cursor)
		scan->cursor = MemoryContextStrdup(GetMemoryChunkContext(scan), scan->cursor);
}

/*
 * PgpolyPagedScan's drain: an immediate-mode write to the collection is
 * about to be sent while pages are left (a function the scan's query calls
 * writes).  Pages are offsets, which the write would move: read every page
 * left now, behind the current batch's unread rows.
 */
static void
drain_pages(void *arg)
{
	VectorScan *scan = arg;
	MemoryContext old;

	if (scan->fetching || scan->remote_done || scan->cursor == NULL)
		return;
	old = MemoryContextSwitchTo(scan->batch_cxt);
	do
	{
		scan->requests++;
		scan->rows = list_concat(scan->rows,
								 VectorGetPage(scan->conn, scan->tbl, scan->coll,
											   scan->spec->where, &scan->cursor,
											   scan->tbl->fetch_size, scan->spec->include));
		keep_cursor(scan);		/* an error may cut the drain short */
	} while (scan->cursor != NULL);
	scan->remote_done = true;
	MemoryContextSwitchTo(old);
}

/* Fetch the next batch of remote rows into scan->rows; false when done. */
static bool
fetch_batch(VectorScan *scan)
{
	VectorScanSpec *spec = scan->spec;
	int			n = scan->tbl->fetch_size;

	MemoryContext old;

	if (scan->remote_done || scan->coll == NULL)
		return false;
	scan->pos = 0;
	scan->rows = NIL;
	scan->requests++;
	if (!scan->local)
		MemoryContextReset(scan->batch_cxt);	/* the last batch's rows */
	old = MemoryContextSwitchTo(scan->batch_cxt);
	if (spec->by_ids)
	{
		List	   *batch = NIL;

		/* a new list of the next n: copying the rest each time is n^2 */
		while (scan->ids_next < list_length(scan->ids) && list_length(batch) < n)
			batch = lappend(batch, list_nth(scan->ids, scan->ids_next++));
		scan->remote_done = scan->ids_next >= list_length(scan->ids);
		if (batch != NIL)
		{
			scan->rows = VectorGetByIds(scan->conn, scan->tbl, scan->coll, batch,
										spec->where, spec->include);
			check_returned_ids(scan, scan->rows);
		}
	}
	else if (scan->cursor == NULL && PgpolyImmediateWritesRunning() &&
			 (!spec->capped || spec->k > n))
	{
		/*
		 * Pages are offsets: an immediate-mode write of this statement sent
		 * between two pages would move the records after it (a delete
		 * shifts unread ones below the offset, an insert adds one at the
		 * end, which an INSERT ... SELECT from the table would read and
		 * insert again, without end).  Read every page first, before the
		 * first row is returned (and written), as a native table shows a
		 * statement none of its own writes.  (A capped scan whose k rows
		 * fit one page reads one page anyway.)
		 */
		char	   *cursor = NULL;

		do
		{
			scan->rows = list_concat(scan->rows,
									 VectorGetPage(scan->conn, scan->tbl, scan->coll,
												   spec->where, &cursor, n, spec->include));
			if (cursor)
				scan->requests++;
		} while (cursor != NULL);
		scan->remote_done = true;
	}
	else
	{
		scan->fetching = true;
		scan->rows = VectorGetPage(scan->conn, scan->tbl, scan->coll, spec->where,
								   &scan->cursor, n, spec->include);
		scan->fetching = false;
		keep_cursor(scan);
		scan->remote_done = scan->cursor == NULL;
		if (scan->remote_done)
			PgpolyPagedScanClose(&scan->paged);
		else
			PgpolyPagedScanOpen(&scan->paged, &VectorStore, scan->tbl->collection,
								NULL, drain_pages, scan, GetMemoryChunkContext(scan));
	}
	MemoryContextSwitchTo(old);
	return scan->rows != NIL || !scan->remote_done;
}

/* Next remote row not shadowed by a buffered write, or NULL. */
static VectorRow *
next_remote(VectorScan *scan)
{
	for (;;)
	{
		VectorRow  *row;

		if (scan->pos >= list_length(scan->rows))
		{
			if (!fetch_batch(scan))
				return NULL;
			continue;
		}
		row = list_nth(scan->rows, scan->pos++);
		if (VectorOverlayLatest(scan->overlay, row->id) == NULL)
			return row;
	}
}

/*
 * A scan by ids: its ids without repeats, in their order, and a seeded key
 * table of them (the ids are anyone's).  id = ANY('{a,a}') asks for 'a'
 * once: asked twice (in two batches, say), its record would be two rows.
 */
static void
index_ids(VectorScan *scan)
{
	ListCell   *lc;

	if (!scan->spec->by_ids)
		return;
	scan->wanted = PgpolyKeyTable("pgpoly vector scan ids", sizeof(WantedId),
								  CurrentMemoryContext);
	foreach(lc, scan->spec->ids)
	{
		PgpolyKeyRef ref = {lfirst(lc), strlen(lfirst(lc))};
		bool		found;
		WantedId   *e = hash_search(scan->wanted, &ref, HASH_ENTER, &found);

		if (found)
			continue;
		e->returned = false;
		scan->ids = lappend(scan->ids, lfirst(lc));
	}
}

/* Whether id is in the scan's id list (always true without one). */
static bool
wanted_id(VectorScan *scan, const char *id)
{
	return !scan->spec->by_ids || PgpolyKeyTableFind(scan->wanted, id, strlen(id)) != NULL;
}

/*
 * ERROR unless the rows the service returned to a scan by ids are records
 * it asked for, each at most once: nothing rechecks a k-NN answer, and a
 * record returned twice would be two rows.
 */
static void
check_returned_ids(VectorScan *scan, List *rows)
{
	ListCell   *lc;

	if (!scan->spec->by_ids)
		return;
	foreach(lc, rows)
	{
		VectorRow  *row = lfirst(lc);
		WantedId   *e = PgpolyKeyTableFind(scan->wanted, row->id, strlen(row->id));

		if (e == NULL || e->returned)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
					 errmsg("vector service server \"%s\" returned record \"%s\" of foreign table \"%s\" %s",
							scan->conn->servername, row->id, scan->tbl->relname,
							e ? "twice" : "without being asked for it"),
					 errdetail("A request for records by id must return each of them at most once.")));
		e->returned = true;
	}
}

/* A row and its position in the list it came from (ties keep order). */
typedef struct RankedRow
{
	VectorRow  *row;
	int			pos;
} RankedRow;

/* qsort comparator: ascending distance, NaN last, then position. */
static int
cmp_distance(const void *a, const void *b)
{
	const RankedRow *ra = a;
	const RankedRow *rb = b;
	double		x = ra->row->distance;
	double		y = rb->row->distance;

	if (isnan(x) || isnan(y))
	{
		if (isnan(x) != isnan(y))
			return isnan(x) - isnan(y);
	}
	else if (x != y)
		return x < y ? -1 : 1;
	return ra->pos - rb->pos;
}

/*
 * The first k of rows (with distances) by ascending distance, NaN last;
 * rows at equal distances keep their order.
 */
static List *
nearest_k(List *rows, int k)
{
	int			n = list_length(rows);
	RankedRow  *arr = palloc(sizeof(RankedRow) * Max(n, 1));
	List	   *result = NIL;
	ListCell   *lc;

	foreach(lc, rows)
	{
		arr[foreach_current_index(lc)].row = lfirst(lc);
		arr[foreach_current_index(lc)].pos = foreach_current_index(lc);
	}
	qsort(arr, n, sizeof(RankedRow), cmp_distance);
	for (int i = 0; i < Min(n, k); i++)
		result = lappend(result, arr[i].row);
	pfree(arr);
	return result;
}

/* Give row its local distance to the query (dimension checked). */
static void
set_local_distance(VectorScanSpec *spec, VectorRow *row)
{
	if (row->emb == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("record \"%s\" has no embedding", row->id)));
	if (row->dim != spec->dim)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("different vector dimensions %d and %d", row->dim, spec->dim),
				 errcontext("record \"%s\"", row->id)));
	row->distance = VectorLocalDistance(spec->metric, row->emb, spec->query, spec->dim);
	row->has_distance = true;
}

/* k-NN computed here: every matching row, overlaid, sorted, first k. */
static List *
local_knn(VectorScan *scan)
{
	VectorScanSpec *spec = scan->spec;
	List	   *cands = NIL;
	VectorRow  *row;
	ListCell   *lc;

	spec->include |= VINC_EMBEDDING;
	scan->ids_next = 0;
	if (spec->local_conds != NIL)
		spec->include |= VINC_METADATA;
	while ((row = next_remote(scan)) != NULL)
		if (local_conds_match(row, spec->local_conds))
			cands = lappend(cands, row);
	foreach(lc, overlay_rows(scan->overlay, scan->pending))
	{
		row = lfirst(lc);
		if (wanted_id(scan, row->id) && row_matches(row, spec->conds) &&
			local_conds_match(row, spec->local_conds))
			cands = lappend(cands, row);
	}
	foreach(lc, cands)
		set_local_distance(spec, lfirst(lc));
	return nearest_k(cands, spec->k);
}

/*
 * Whether a record of the service's k-NN answer rows is at a distance the
 * service could not compute in its single precision (an overflow): it ranked
 * such records in no particular order, where SQL's operators, in double
 * precision, rank them.
 */
static bool
answer_has_overflow(List *rows)
{
	ListCell   *lc;

	foreach(lc, rows)
		if (((VectorRow *) lfirst(lc))->distance_overflow)
			return true;
	return false;
}

/*
 * Whether the service's cosine k-NN answer rows rank a record as SQL does
 * not: SQL's <=> is NaN, after every number, for a record (or a query)
 * whose embedding is a zero vector, where the service, which normalizes
 * vectors and leaves a zero one zero, puts it at distance 1 exactly, before
 * every record pointing away from the query.  The rows of the answer at
 * distance 1 are looked up with their embeddings (one request) to tell a
 * zero vector from a record orthogonal to the query.
 */
static bool
answer_has_zero_vector(VectorScan *scan, List *rows)
{
	List	   *suspects = NIL;
	ListCell   *lc;

	if (scan->spec->metric != VDIST_COSINE)
		return false;
	foreach(lc, rows)
	{
		VectorRow  *row = lfirst(lc);

		if (row->has_distance && row->distance == 1.0)
			suspects = lappend(suspects, row->id);
	}
	if (suspects == NIL)
		return false;
	scan->requests++;
	foreach(lc, VectorGetByIds(scan->conn, scan->tbl, scan->coll, suspects, NULL,
							   VINC_EMBEDDING))
	{
		VectorRow  *row = lfirst(lc);

		set_local_distance(scan->spec, row);
		if (isnan(row->distance))
			return true;
	}
	return false;
}

/*
 * Whether the query vector can be sent: JSON has no NaN or Infinity, while
 * SQL's operators rank such a query (every distance NaN or Infinity, so in
 * no particular order), as they do on a native table; such a k-NN is
 * computed here instead of failing.
 */
static bool
query_is_finite(VectorScanSpec *spec)
{
	for (int i = 0; i < spec->dim; i++)
		if (isnan(spec->query[i]) || isinf(spec->query[i]))
			return false;
	return true;
}

/*
 * ERROR unless every row of a k-NN answer satisfies the pushed filter: the
 * service's answer is used as it is (nothing rechecks it, and a row it
 * should not have returned took the place of one it should have), so a
 * record the service's filter admitted but SQL's comparison would not (a
 * metadata key holding an array, which a filter matches on any element)
 * must not pass as an answer.
 */
static void
check_filtered(VectorScan *scan, List *rows)
{
	ListCell   *lc;

	foreach(lc, rows)
	{
		VectorRow  *row = lfirst(lc);

		if (!row_matches(row, scan->spec->conds))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
					 errmsg("vector service server \"%s\" returned record \"%s\" of foreign table \"%s\", which does not satisfy the filter sent",
							scan->conn->servername, row->id, scan->tbl->relname),
					 errdetail("Its metadata: %s",
							   row->metadata ? PgpolyHttpExcerpt(scan->conn, row->metadata,
																 strlen(row->metadata)) : "(none)"),
					 errhint("A metadata key holding an array or an object matches a filter on any of its elements; read such a key through an array or jsonb column, whose clauses stay local.")));
	}
}

/*
 * Start a scan of tbl described by spec (kept by reference), reading
 * through pending (the table's buffered writes, PgpolyPendingWrites).
 * k-NN scans do their request(s) here; the others fetch lazily.
 */
VectorScan *
VectorScanBegin(VectorTable *tbl, PgpolyConnection *conn, VectorScanSpec *spec,
				List *pending)
{
	VectorScan *scan = palloc0(sizeof(VectorScan));

	scan->tbl = tbl;
	scan->conn = conn;
	scan->spec = spec;
	scan->remote_done = spec->empty;
	scan->batch_cxt = AllocSetContextCreate(CurrentMemoryContext, "pgpoly vector batch",
											ALLOCSET_DEFAULT_SIZES);
	index_ids(scan);
	scan->ids_next = 0;
	/* a k-NN's answer depends on the distance: read in this transaction */
	scan->coll = spec->query ? VectorFreshCollection(conn, tbl, tbl->create) :
		VectorLookupCollection(conn, tbl, tbl->create);
	scan->pending = pending;
	scan->overlay = VectorOverlayBuild(pending);
	if (spec->capped && (spec->conds != NIL || spec->local_conds != NIL))
		spec->include |= VINC_METADATA;
	if (spec->query == NULL)
	{
		if (!spec->empty)
			scan->overlay_rows = overlay_rows(scan->overlay, pending);
		return scan;
	}
	if (scan->coll && scan->coll->dimension > 0 && scan->coll->dimension != spec->dim)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("query vector has %d dimensions, collection \"%s\" has %d",
						spec->dim, scan->coll->name, scan->coll->dimension)));
	if (spec->empty || spec->k == 0)
		scan->rows = NIL;
	else if (scan->coll && scan->overlay == NULL && scan->coll->distance == spec->metric &&
			 query_is_finite(spec) && spec->local_conds == NIL)
	{
		scan->requests++;
		/* the metadata the pushed filter reads, to check the answer */
		if (spec->conds != NIL)
			spec->include |= VINC_METADATA;
		scan->rows = VectorQuery(conn, tbl, scan->coll, spec->query, spec->dim, spec->k,
								 spec->where, scan->ids, spec->include);
		if (spec->by_ids && scan->ids == NIL)
			scan->rows = NIL;
		check_returned_ids(scan, scan->rows);
		check_filtered(scan, scan->rows);
		/* (VectorQuery checked: no more than k rows, nearest first) */
		/*
		 * ... unless the service ranked records by distances it could not
		 * compute (overflowed), or SQL ranks a zero vector last: then
		 * computed here
		 */
		if (answer_has_overflow(scan->rows) ||
			answer_has_zero_vector(scan, scan->rows))
		{
			scan->local = true;
			scan->rows = NIL;	/* not candidates: they lack embeddings */
			scan->rows = local_knn(scan);
		}
	}
	else
	{
		scan->local = true;
		scan->rows = local_knn(scan);
	}
	scan->pos = 0;
	scan->remote_done = true;
	return scan;
}

/*
 * The next row of the scan, or NULL at the end.  A capped scan (k-NN
 * without a query vector) ends after k rows, and its rows from the service
 * are checked against the filter as a k-NN answer is.
 */
VectorRow *
VectorScanNext(VectorScan *scan)
{
	VectorRow  *row;

	if (scan->spec->query != NULL)
	{
		if (scan->pos < list_length(scan->rows))
			return list_nth(scan->rows, scan->pos++);
		return NULL;
	}
	if (scan->spec->capped && scan->returned++ >= scan->spec->k)
		return NULL;
	while ((row = next_remote(scan)) != NULL)
	{
		if (scan->spec->capped)
			check_filtered(scan, list_make1(row));
		if (local_conds_match(row, scan->spec->local_conds))
			return row;
	}
	while (scan->overlay_rows != NIL)
	{
		row = linitial(scan->overlay_rows);
		scan->overlay_rows = list_delete_first(scan->overlay_rows);
		if (local_conds_match(row, scan->spec->local_conds))
			return row;
	}
	return NULL;
}

/* Whether a k-NN scan was computed locally (EXPLAIN ANALYZE). */
bool
VectorScanWasLocal(VectorScan *scan)
{
	return scan->local;
}

/* Requests the scan sent. */
int
VectorScanRequests(VectorScan *scan)
{
	return scan->requests;
}

/* ----------------------------------------------------------------
 *		Rows to tuples
 * ----------------------------------------------------------------
 */

/* errcontext callback: the record, column and table being converted. */
static void
convert_context(void *arg)
{
	const char **what = arg;

	errcontext("column \"%s\" of record \"%s\" of foreign table \"%s\"",
			   what[1], what[0], what[2]);
}

/* A row's metadata as jsonb, with the paths of strings that held a NUL. */
typedef struct RowMeta
{
	Datum		doc;			/* 0: none */
	List	   *nuls;
	bool		fetched;		/* the scan asked for metadata (a record's
								 * lack of it is then its lack of keys) */
} RowMeta;

/* ERROR if the metadata value at field held a NUL character. */
static void
check_meta_nul(VectorColumn *col, VectorRow *row, RowMeta *meta, const char *field)
{
	if (meta->nuls != NIL && PgpolyJsonNulAt(meta->nuls, field))
		PgpolyJsonNulError(psprintf("the metadata of record \"%s\"", row->id),
						   field[0] ? field : "metadata", &col->conv);
}

/*
 * The value of a column that maps to a metadata key.  A column of a type
 * other than json/jsonb refuses a key holding an array or an object (as an
 * Elasticsearch column does: PgpolyJsonbFieldValues): Qdrant matches a
 * pushed  col = 'a'  on any element of ["a", "b"], and no single value of
 * the column could stand for the array.
 */
static Datum
field_value(VectorColumn *col, VectorRow *row, RowMeta *meta, bool *isnull)
{
	Datum		value;

	check_meta_nul(col, row, meta, col->field);
	value = VectorMetadataFieldValue(col, meta->doc, isnull);
	return *isnull ? PgpolyNullDatum(&col->conv) : value;
}

/*
 * The value column col (a field column) reads from metadata doc, a jsonb
 * Datum (*isnull when it lacks the key): field_value without the check
 * for NUL characters, also for the metadata a row writes (vector_fdw.c).
 * A number or boolean column reads only the JSON type pgpoly writes for
 * it (typed PgpolyJsonbFieldValues): a string "5" is an ERROR, not 5, so
 * that the service's number and boolean matches, which a comparison on
 * such a column is sent as, select every record the column reads.
 */
Datum
VectorMetadataFieldValue(VectorColumn *col, Datum doc, bool *isnull)
{
	size_t		len;
	char	   *text;

	text = col->conv.is_json && !col->conv.is_array ?
		PgpolyJsonbColumnText(doc, col->field, PGPOLY_FIELD_PATH, &col->conv, &len) :
		PgpolyJsonbFieldValues(doc, col->field, PGPOLY_FIELD_PATH, &col->conv, true, &len);
	*isnull = text == NULL;
	if (text == NULL)
		return (Datum) 0;
	return PgpolyServerTextToDatum(&col->conv, text, len);
}

/* Datum of column col for row (isnull set); meta: the row's metadata. */
static Datum
column_value(VectorColumn *col, VectorRow *row, RowMeta *meta, bool *isnull)
{
	*isnull = false;
	switch (col->role)
	{
		case VCOL_ID:
			return PgpolyServerTextToDatum(&col->conv, row->id, strlen(row->id));
		case VCOL_EMBEDDING:
			if (row->emb)
				return VectorFloatsDatum(row->emb, row->dim, col);
			break;
		case VCOL_DOCUMENT:
			if (row->document_nul)
				VectorDocumentNul(row, &col->conv);
			if (row->document)
				return PgpolyServerTextToDatum(&col->conv, row->document,
											   strlen(row->document));
			break;
		case VCOL_METADATA:
			if (meta->doc)
			{
				check_meta_nul(col, row, meta, "");
				return meta->doc;
			}
			break;
		case VCOL_FIELD:
			if (meta->doc)
				return field_value(col, row, meta, isnull);
			*isnull = true;
			/* no metadata: no key, if the scan asked for metadata */
			return meta->fetched ? PgpolyNullDatum(&col->conv) : (Datum) 0;
		case VCOL_DISTANCE:
			if (row->has_distance)
				return Float8GetDatum(row->distance);
			break;
		case VCOL_NONE:
			break;
	}
	*isnull = true;
	return (Datum) 0;
}

/* Fill values/nulls from row (see VectorRowToValues). */
static void
row_values(VectorTable *tbl, VectorRow *row, bool metadata_fetched,
		   const bool *read, const char **what, Datum *values, bool *nulls)
{
	RowMeta		meta = {(Datum) 0, NIL, metadata_fetched};
	bool		parsed = false;

	for (int i = 0; i < tbl->natts; i++)
	{
		VectorColumn *col = &tbl->cols[i];

		if (read && !read[i])
		{
			values[i] = (Datum) 0;
			nulls[i] = true;
			continue;
		}
		/* the metadata as jsonb, once, if a column read needs it */
		if (!parsed && row->metadata &&
			(col->role == VCOL_METADATA || col->role == VCOL_FIELD))
		{
			meta.doc = PgpolyJsonbFromServerText(row->metadata, strlen(row->metadata),
											&meta.nuls);
			parsed = true;
		}
		what[1] = col->name ? col->name : "?";
		values[i] = column_value(col, row, &meta, &nulls[i]);
	}
}

/*
 * Fill values/nulls (one per table column) from row, read under the core's
 * fixed settings (convert.c).  metadata_fetched: the scan asked for the
 * records' metadata (VINC_METADATA), so a record without any lacks every
 * key (a field column whose domain refuses NULL is then an ERROR).
 * read: by attnum - 1, the columns to convert (the others are NULL, so a
 * value a column the query does not read refuses is no ERROR); NULL: all.
 */
void
VectorRowToValues(VectorTable *tbl, VectorRow *row, bool metadata_fetched,
				  const bool *read, Datum *values, bool *nulls)
{
	const char *what[3] = {row->id, "metadata", tbl->relname};
	ErrorContextCallback cb;

	cb.callback = convert_context;
	cb.arg = what;
	cb.previous = error_context_stack;
	error_context_stack = &cb;
	PgpolyFixedSettingsEnter();
	PG_TRY();
	{
		row_values(tbl, row, metadata_fetched, read, what, values, nulls);
	}
	PG_FINALLY();
	{
		PgpolyFixedSettingsLeave();
	}
	PG_END_TRY();
	error_context_stack = cb.previous;
}
