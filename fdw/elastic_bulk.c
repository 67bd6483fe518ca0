/*-------------------------------------------------------------------------
 *
 * elastic_bulk.c
 *		  pgpoly_elastic writes: _bulk NDJSON, buffered per transaction.
 *
 * INSERT becomes a bulk "index" action with the whole document, UPDATE an
 * "update" action with a partial document of the assigned columns (so
 * fields no column maps survive), DELETE a "delete" action.  With
 * write_mode 'transactional' each action is handed to the core's write
 * buffer and sent at pre-commit; 'immediate' sends batches while the
 * statement runs.  Either way batches hold at most batch_size actions.
 *
 * INSERT ... ON CONFLICT DO NOTHING becomes a "create" action, which
 * Elasticsearch refuses (409, version_conflict_engine_exception) for an id
 * that exists on the shard it lands on: such items are the rows skipped,
 * never an ERROR.  An _id is unique per shard of one index only, so the
 * rows are first looked up everywhere the table reads (ElasticIdsExist:
 * an ids search and a real-time multi-get), and in write_mode
 * 'transactional' through the buffered writes: the rows found are
 * skipped.  Sent at once (write_mode 'immediate') the 409s tell which
 * other rows were skipped; at COMMIT a 409, a document someone created
 * meanwhile, is skipped as well.
 *
 * An INSERT without _id gets a random 20-character URL-safe id (the shape
 * of Elasticsearch's own auto ids) when the row is inserted, not when it is
 * sent: RETURNING _id and read-your-writes need it before COMMIT, and an
 * "index" action with a fixed id stays idempotent when a 429/503 retry
 * resends the batch.
 *
 * No silently lost update: an UPDATE or DELETE of write_mode
 * 'transactional' whose target scan read the documents' versions
 * (_seq_no, _primary_term: elastic_fdw.c) is sent with if_seq_no and
 * if_primary_term (optimistic-concurrency-control.html; action metadata of
 * docs-bulk.html).  A document another client changed or deleted after the
 * read fails its item with 409 version_conflict_engine_exception (404
 * document_missing_exception for a partial "update", which looks the
 * document up first), and COMMIT fails with 40001.  A document the
 * transaction writes twice is read the second time from its own first
 * write: the second write's condition is the version the first one's item
 * returned, so it goes in a later _bulk request (ElasticSendWrites).
 *
 * The action of an UPDATE or DELETE is addressed to the concrete index of
 * the document its scan read (the hit's _index, elastic_fdw.c), not to the
 * table's index option: through an alias it would go to the alias's write
 * index (aliases.html), updating or deleting nothing of a document in
 * another index, and through a list or a pattern it would fail.  An INSERT
 * goes to the index option: a new document goes where the alias writes.
 * The action of an UPDATE or DELETE carries the custom routing of the
 * document its scan read ("routing" of the action metadata, docs-bulk.html;
 * the hit's _routing, elastic_fdw.c), so that it reaches the shard the
 * document is on; an INSERT carries the row's _routing column, if the
 * table has one and it is not NULL (else its _id routes it, and an index
 * whose mapping requires a routing refuses it: routing_missing_exception,
 * a hint names the mapping and the column).
 *
 * Every item of every bulk response is checked: the first failed one is an
 * ERROR naming the document id and the index, with Elasticsearch's error
 * type and reason in the detail (the type names vary across versions), so
 * COMMIT fails.  Its SQLSTATE follows the item's status as an HTTP status
 * would (PgpolyHttpStatusErrcode): an item refused with 429 (the write
 * queue is full: how Elasticsearch sheds load) or 503 means the store is
 * busy, not that it rejected the document.  Elasticsearch has no rollback:
 * the actions before it, in this and earlier batches, stay applied, and the
 * message says so.
 *
 * A plan of a table the transaction has written keeps ORDER BY, LIMIT and
 * count(*) local, so that the overlay of the writes applies; a cached plan
 * (a prepared statement's generic plan) made on the other side of the
 * transaction's first write is replanned: at that write the plans that read
 * the table are invalidated (in this backend), and at the end of a
 * transaction that planned with writes every cached plan is.
 *
 * _bulk is sent as application/x-ndjson, the content type the bulk API
 * documents (docs-bulk.html: "When sending requests to this endpoint the
 * Content-Type header should be set to application/x-ndjson"); every other
 * request is application/json.  The body ends with the newline ES requires.
 *
 * fdw/elastic_bulk.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pgpoly_jansson.h"

#include "common/base64.h"
#include "storage/proc.h"
#include "access/xact.h"
#include "miscadmin.h"
#include "utils/inval.h"
#include "utils/plancache.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "nodes/value.h"
#include "utils/memutils.h"

#include "elastic.h"

/* Relations written (buffered) in the current local transaction. */
static LocalTransactionId WrittenLxid = InvalidLocalTransactionId;
static List *WrittenRelids = NIL;	/* TopMemoryContext */

/* This transaction made a plan that saw WrittenRelids: replan at its end. */
static bool PlannedWithWrites = false;

/*
 * Transaction end: plans made while the transaction had writes push less
 * than they could; invalidate them all (flags only: safe in an abort).
 */
static void
replan_after_writes(XactEvent event, void *arg)
{
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		event != XACT_EVENT_PREPARE && event != XACT_EVENT_PARALLEL_COMMIT &&
		event != XACT_EVENT_PARALLEL_ABORT)
		return;
	if (PlannedWithWrites)
		ResetPlanCache();
	PlannedWithWrites = false;
}

/*
 * Note that relid has buffered writes in this transaction (for planning);
 * at the first, plans made before it are replanned at their next use.
 */
void
ElasticNoteWrite(Oid relid)
{
	static bool registered = false;
	MemoryContext old;

	if (WrittenLxid != MyProc->lxid)
	{
		list_free(WrittenRelids);
		WrittenRelids = NIL;
		WrittenLxid = MyProc->lxid;
	}
	if (list_member_oid(WrittenRelids, relid))
		return;
	old = MemoryContextSwitchTo(TopMemoryContext);
	WrittenRelids = lappend_oid(WrittenRelids, relid);
	MemoryContextSwitchTo(old);
	if (!registered)
	{
		RegisterXactCallback(replan_after_writes, NULL);
		registered = true;
	}
	PgpolyReplanReaders(relid);
}

/*
 * Whether relid may have buffered writes in this transaction: the planner
 * then keeps ORDER BY, LIMIT and count(*) local so that the overlay of the
 * writes can be applied.  (A savepoint rollback may have dropped them:
 * conservative.)  For the planner only: a plan made when it is true is
 * replanned after the transaction.
 */
bool
ElasticHasPendingWrites(Oid relid)
{
	if (WrittenLxid != MyProc->lxid || !list_member_oid(WrittenRelids, relid))
		return false;
	PlannedWithWrites = true;
	return true;
}

/* A random id like Elasticsearch's auto ids: 20 URL-safe base64 chars. */
static char *
random_id(void)
{
	char		raw[15];
	char	   *id = palloc(pg_b64_enc_len(sizeof(raw)) + 1);
	int			len;

	if (!pg_strong_random(raw, sizeof(raw)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random document id")));
	len = pg_b64_encode(raw, sizeof(raw), id, pg_b64_enc_len(sizeof(raw)));
	id[len] = '\0';
	for (char *p = id; *p; p++)
		*p = (*p == '+') ? '-' : (*p == '/') ? '_' : *p;
	return id;
}

/* One field of a document being built: its path and JSON value. */
typedef struct DocField
{
	List	   *parts;			/* char *: the path split at dots */
	char	   *json;
	const char *column;			/* the column it comes from */
} DocField;

static void append_level(StringInfo buf, List *fields, int depth);

/*
 * The members of object field whole (at depth) as DocFields one level
 * deeper, in the object's order: the object is merged member by member
 * with the deeper columns' fields, so that a member no column writes is
 * kept however deep it lies.
 */
static List *
object_members(DocField *whole)
{
	Jsonb	   *jb = DatumGetJsonbP(PgpolyJsonbFromText(whole->json, strlen(whole->json)));
	JsonbIterator *it = JsonbIteratorInit(&jb->root);
	JsonbIteratorToken tok;
	JsonbValue	v;
	List	   *members = NIL;
	char	   *key = NULL;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE)
		{
			DocField   *f = palloc(sizeof(DocField));
			Jsonb	   *val = JsonbValueToJsonb(&v);

			f->parts = lappend(list_copy(whole->parts), key);
			f->json = JsonbToCString(NULL, &val->root, VARSIZE(val));
			f->column = whole->column;
			members = lappend(members, f);
		}
	}
	return members;
}

/*
 * The group of the field at lc in fields (DocFields sharing a path prefix,
 * depth parts long): it and the later fields with the same key at depth,
 * in order; NIL when an earlier field has that key (its group holds them).
 * *whole: whether one of them ends at that key (a column maps it whole);
 * *path, when asked for, prefix (the keys before depth) and that key.
 */
static List *
key_group(List *fields, ListCell *lc, int depth, bool *whole, List *prefix,
		  List **path)
{
	char	   *key = list_nth(((DocField *) lfirst(lc))->parts, depth);
	List	   *group = NIL;
	ListCell   *gc;

	int			at = list_cell_number(fields, lc);

	*whole = false;
	for (int i = 0; i < at; i++)
		if (strcmp(list_nth(((DocField *) list_nth(fields, i))->parts, depth), key) == 0)
			return NIL;
	for_each_from(gc, fields, at)
	{
		DocField   *f = lfirst(gc);

		if (strcmp(list_nth(f->parts, depth), key) != 0)
			continue;
		group = lappend(group, f);
		*whole = *whole || list_length(f->parts) == depth + 1;
	}
	if (path)
		*path = lappend(list_copy(prefix), key);
	return group;
}

/*
 * Append the value of one key at depth: the group's fields share the path
 * up to and including that key.  A whole value (a column mapped to "meta")
 * and deeper fields ("meta.b") are merged at every level, the deeper ones
 * winning.
 */
static void
append_group(StringInfo buf, List *group, int depth)
{
	DocField   *whole = NULL;
	List	   *deeper = NIL;
	ListCell   *lc;

	foreach(lc, group)
	{
		DocField   *f = lfirst(lc);

		if (list_length(f->parts) == depth + 1)
			whole = f;
		else
			deeper = lappend(deeper, f);
	}
	/*
	 * Only a jsonb object (or null) can take the deeper fields: a scalar or
	 * an array would be lost (PgpolyCheckWrittenFields refused the other
	 * types of column).  Deeper nulls need no place: a scalar or array
	 * there reads back as NULL in them (a row read and written back).
	 */
	if (whole != NULL && whole->json[0] != '{' && strcmp(whole->json, "null") != 0)
	{
		List	   *set = NIL;

		foreach(lc, deeper)
			if (strcmp(((DocField *) lfirst(lc))->json, "null") != 0)
				set = lappend(set, lfirst(lc));
		if (set != NIL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("column \"%s\" holds a JSON %s, not an object, but column \"%s\" writes a field inside it",
							whole->column, whole->json[0] == '[' ? "array" : "scalar",
							((DocField *) linitial(set))->column),
					 errhint("Write an object (or NULL) into a column whose field holds other columns' fields.")));
		deeper = NIL;
	}
	if (deeper == NIL)
	{
		appendStringInfoString(buf, whole->json);
		return;
	}
	if (whole != NULL && whole->json[0] == '{')
		deeper = list_concat(object_members(whole), deeper);
	append_level(buf, deeper, depth + 1);
}

/* Append the object of fields at depth (nested objects for dotted paths). */
static void
append_level(StringInfo buf, List *fields, int depth)
{
	ListCell   *lc;

	appendStringInfoChar(buf, '{');
	foreach(lc, fields)
	{
		bool		whole;
		List	   *group = key_group(fields, lc, depth, &whole, NIL, NULL);

		if (group == NIL)
			continue;
		if (buf->data[buf->len - 1] != '{')
			appendStringInfoChar(buf, ',');
		escape_json(buf, list_nth(((DocField *) lfirst(lc))->parts, depth));
		appendStringInfoChar(buf, ':');
		append_group(buf, group, depth);
	}
	appendStringInfoChar(buf, '}');
}

/* A field path split at its dots. */
static List *
split_path(const char *path)
{
	List	   *parts = NIL;
	char	   *copy = pstrdup(path);
	char	   *p = copy;

	for (;;)
	{
		char	   *dot = strchr(p, '.');

		if (dot)
			*dot = '\0';
		parts = lappend(parts, p);
		if (!dot)
			return parts;
		p = dot + 1;
	}
}

/*
 * The field columns' values as DocFields, in column order: all (only ==
 * NULL) or the attnums in only; NULL values as null when with_nulls, else
 * left out.
 */
static List *
doc_fields(ElasticTable *tbl, Datum *values, bool *nulls, Bitmapset *only,
		   bool with_nulls)
{
	List	   *fields = NIL;

	for (int i = 0; i < tbl->natts; i++)
	{
		ElasticColumn *col = &tbl->cols[i];
		DocField   *f;
		StringInfoData val;

		if (col->role != ECOL_FIELD || (only && !bms_is_member(i + 1, only)) ||
			(nulls[i] && !with_nulls))
			continue;
		initStringInfo(&val);
		PgpolyJsonAppendValue(&val, values[i], col->typid, nulls[i]);
		f = palloc(sizeof(DocField));
		f->parts = split_path(col->field);
		f->json = val.data;
		f->column = col->name;
		fields = lappend(fields, f);
	}
	return fields;
}

/* jsonb_set(doc, path, value, create_missing): path is a List of keys. */
static Datum
set_path(Datum doc, List *path, Datum value)
{
	Datum	   *keys = palloc(sizeof(Datum) * list_length(path));
	ListCell   *lc;

	foreach(lc, path)
		keys[foreach_current_index(lc)] = CStringGetTextDatum(lfirst(lc));
	return DirectFunctionCall4(jsonb_set, doc,
							   PointerGetDatum(construct_array(keys, list_length(path),
															   TEXTOID, -1, false,
															   TYPALIGN_INT)),
							   value, BoolGetDatum(true));
}

/* Whether doc holds an object at path (a List of keys). */
static bool
object_at(Datum doc, List *path)
{
	Datum	   *keys = palloc(sizeof(Datum) * list_length(path));
	bool		isnull;
	Datum		v;
	ListCell   *lc;

	foreach(lc, path)
		keys[foreach_current_index(lc)] = CStringGetTextDatum(lfirst(lc));
	v = jsonb_get_element(DatumGetJsonbP(doc), keys, list_length(path), &isnull, false);
	return !isnull && JB_ROOT_IS_OBJECT(DatumGetJsonbP(v));
}

/*
 * source (a jsonb object) with fields (DocFields sharing the path prefix,
 * depth parts long) set in place, as a partial update sets them: the
 * objects along a dotted field path are kept, or made where missing or not
 * objects, and a key some column maps whole is replaced by the value an
 * INSERT writes there (append_group).  Merging the fields' document with
 * jsonb || would replace the object {"a": {...}} a given _source holds by
 * the fields' {"a": {"b": ...}}, dropping what else it held.
 */
static Datum
merge_fields(Datum source, List *fields, List *prefix, int depth)
{
	ListCell   *lc;

	foreach(lc, fields)
	{
		bool		whole;
		List	   *path;
		List	   *group = key_group(fields, lc, depth, &whole, prefix, &path);
		StringInfoData val;

		if (group == NIL)
			continue;
		if (!whole)
		{
			if (!object_at(source, path))
				source = set_path(source, path, PgpolyJsonbFromText("{}", 2));
			source = merge_fields(source, group, path, depth + 1);
			continue;
		}
		initStringInfo(&val);
		append_group(&val, group, depth);
		source = set_path(source, path, PgpolyJsonbFromText(val.data, val.len));
	}
	return source;
}

/*
 * The document of the table's field columns: all (only == NULL) or the
 * attnums in only.  NULL values are written as null when with_nulls, else
 * left out.  A field path "a.b" becomes nested objects, as Elasticsearch
 * itself expands dotted names.  With with_source, a non-NULL _source
 * column is the document the columns are merged into.
 */
static char *
document_json(ElasticTable *tbl, Datum *values, bool *nulls, Bitmapset *only,
			  bool with_nulls, bool with_source)
{
	StringInfoData buf;
	List	   *fields = NIL;
	AttrNumber	src = tbl->source_att;
	bool		nested = false;

	for (int i = 0; i < tbl->natts; i++)
		if (tbl->cols[i].role == ECOL_FIELD && strchr(tbl->cols[i].field, '.'))
			nested = true;
	initStringInfo(&buf);
	if (!nested)
	{
		/* The common case, flat fields: no path splitting per row. */
		appendStringInfoChar(&buf, '{');
		for (int i = 0; i < tbl->natts; i++)
		{
			ElasticColumn *col = &tbl->cols[i];

			if (col->role != ECOL_FIELD || (only && !bms_is_member(i + 1, only)) ||
				(nulls[i] && !with_nulls))
				continue;
			if (buf.len > 1)
				appendStringInfoChar(&buf, ',');
			escape_json(&buf, col->field);
			appendStringInfoChar(&buf, ':');
			PgpolyJsonAppendValue(&buf, values[i], col->typid, nulls[i]);
		}
		appendStringInfoChar(&buf, '}');
	}
	if (nested)
		fields = doc_fields(tbl, values, nulls, only, with_nulls);
	if (nested && fields == NIL)
		appendStringInfoString(&buf, "{}");
	else if (nested)
		append_level(&buf, fields, 0);
	if (with_source && src && !nulls[src - 1])
	{
		Datum		merged = nested ? merge_fields(values[src - 1], fields, NIL, 0) :
			DirectFunctionCall2(jsonb_concat, values[src - 1],
								PgpolyJsonbFromText(buf.data, buf.len));

		return JsonbToCString(NULL, &DatumGetJsonbP(merged)->root, VARSIZE(DatumGetPointer(merged)));
	}
	/* Buffered for the whole transaction: keep only the bytes needed. */
	{
		char	   *doc = pnstrdup(buf.data, buf.len);

		pfree(buf.data);
		return doc;
	}
}

/* The text of the _id column of a row, or NULL. */
static char *
row_id(ElasticTable *tbl, Datum *values, bool *nulls)
{
	if (tbl->id_att == 0 || nulls[tbl->id_att - 1])
		return NULL;
	return TextDatumGetCString(values[tbl->id_att - 1]);
}

/*
 * The write of an INSERT of values/nulls; *assigned_id is set to the id
 * pgpoly generated when the row had none (else NULL).  Allocated in the
 * current memory context.
 */
ElasticWrite *
ElasticInsertWrite(ElasticTable *tbl, Datum *values, bool *nulls,
				   char **assigned_id)
{
	ElasticWrite *w = palloc0(sizeof(ElasticWrite));

	w->op = EWRITE_INDEX;
	w->tbl = tbl;
	w->id = row_id(tbl, values, nulls);
	*assigned_id = NULL;
	if (w->id == NULL)
		w->id = *assigned_id = random_id();
	if (strlen(w->id) > 512 || w->id[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("document id must be 1 to 512 bytes long"),
				 errdetail("Elasticsearch limits _id to 512 bytes.")));
	if (tbl->routing_att && !nulls[tbl->routing_att - 1])
		w->routing = TextDatumGetCString(values[tbl->routing_att - 1]);
	if (w->routing && w->routing[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("_routing of document \"%s\" of foreign table \"%s\" is empty",
						w->id, tbl->relname),
				 errdetail("Elasticsearch takes an empty routing for none: the document would be routed by its _id."),
				 errhint("Give a non-empty _routing, or NULL to route the document by its _id.")));
	w->doc = document_json(tbl, values, nulls, NULL, false, true);
	if (tbl->source_att && !nulls[tbl->source_att - 1] && w->doc[0] != '{')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("_source must be a JSON object")));
	w->row = w->doc;
	return w;
}

/*
 * Whether an UPDATE assigns a json/jsonb column a JSON object.  A partial
 * "update" merges an object into the object the document holds, keys the
 * new value lacks included (docs-update.html: "objects are merged
 * together"), where the column's new value must replace the old one.
 */
static bool
assigns_object(ElasticTable *tbl, Datum *values, bool *nulls, Bitmapset *updated)
{
	for (int i = 0; i < tbl->natts; i++)
	{
		ElasticColumn *col = &tbl->cols[i];
		StringInfoData val;
		const char *p;

		if (col->role != ECOL_FIELD || !col->is_json || col->is_array || nulls[i] ||
			!bms_is_member(i + 1, updated))
			continue;
		initStringInfo(&val);
		PgpolyJsonAppendValue(&val, values[i], col->typid, false);
		for (p = val.data; *p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'; p++)
			;
		if (*p == '{')
			return true;
		pfree(val.data);
	}
	return false;
}

/*
 * Append to buf the script's params.fields entries for fields (DocField,
 * all sharing the path prefix, depth parts long): a field whose path has
 * no other field's path under it is set to its value; one that has gets
 * the value an INSERT writes (append_group: the fields under it merged
 * into its object, or replacing what is not an object), so that no path
 * runs through another's value, whatever the columns' order.
 */
static void
append_script_fields(StringInfo buf, List *fields, List *prefix, int depth)
{
	ListCell   *lc;

	foreach(lc, fields)
	{
		bool		whole;
		List	   *path;
		List	   *group = key_group(fields, lc, depth, &whole, prefix, &path);
		ListCell   *gc;

		if (group == NIL)
			continue;
		if (!whole)
		{
			append_script_fields(buf, group, path, depth + 1);
			continue;
		}
		appendStringInfoString(buf, buf->data[buf->len - 1] == '[' ? "{\"path\":[" : ",{\"path\":[");
		foreach(gc, path)
		{
			if (foreach_current_index(gc) > 0)
				appendStringInfoChar(buf, ',');
			escape_json(buf, lfirst(gc));
		}
		appendStringInfoString(buf, "],\"value\":");
		append_group(buf, group, depth);
		appendStringInfoChar(buf, '}');
	}
}

/*
 * The source line of an "update" action that sets the assigned fields to
 * exactly their new values: a script, since a partial "doc" would merge an
 * object into the one the document holds.  Each field is a path (a dotted
 * field path, its parts) set in place: the objects along it are kept, or
 * made where missing or not objects, as the partial "doc" does; the last
 * part is replaced.  Fields no column maps are kept either way.
 */
static char *
script_update(ElasticTable *tbl, Datum *values, bool *nulls, Bitmapset *updated)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf,
						   "{\"script\":{\"lang\":\"painless\",\"source\":"
						   "\"for (def f : params.fields) { def o = ctx._source; "
						   "def p = f.path; for (int i = 0; i < p.size() - 1; ++i) { "
						   "if (!(o[p[i]] instanceof Map)) { o[p[i]] = new HashMap(); } "
						   "o = o[p[i]]; } o[p[p.size() - 1]] = f.value; }\","
						   "\"params\":{\"fields\":[");
	append_script_fields(&buf, doc_fields(tbl, values, nulls, updated, true), NIL, 0);
	appendStringInfoString(&buf, "]}}}");
	return buf.data;
}

/*
 * The columns of the document an UPDATE leaves (merged into the old
 * _source): the assigned ones, NULL or not, and the others that hold a
 * value.  A column neither assigned nor holding one is not written as
 * null: the partial update leaves the field as it is (absent), so that a
 * read of the buffered write shows the _source Elasticsearch will hold.
 */
static Bitmapset *
written_fields(ElasticTable *tbl, bool *nulls, Bitmapset *updated)
{
	Bitmapset  *cols = bms_make_singleton(0);	/* no column: never NULL,
												 * which means all */

	cols = bms_add_members(cols, updated);

	for (int i = 0; i < tbl->natts; i++)
		if (!nulls[i])
			cols = bms_add_member(cols, i + 1);
	return cols;
}

/*
 * The write of an UPDATE of document id to the new row values/nulls
 * (updated: the assigned attnums).  A new _source replaces the document
 * (with the fields assigned beside it).  An _id assigned its own value is
 * no change (an UPDATE through a partitioned table that moves other rows
 * into the partition assigns it to every row).
 */
ElasticWrite *
ElasticUpdateWrite(ElasticTable *tbl, const char *id, Datum *values,
				   bool *nulls, Bitmapset *updated)
{
	ElasticWrite *w = palloc0(sizeof(ElasticWrite));
	char	   *new_id = row_id(tbl, values, nulls);

	if (tbl->id_att && bms_is_member(tbl->id_att, updated) &&
		(new_id == NULL || strcmp(new_id, id) != 0))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot change the _id of a document in foreign table \"%s\"",
						tbl->relname),
				 errhint("DELETE the document and INSERT it with the new _id.")));
	if (tbl->routing_att && bms_is_member(tbl->routing_att, updated))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot change the _routing of a document in foreign table \"%s\"",
						tbl->relname),
				 errdetail("The routing names the shard a document is on; Elasticsearch cannot move a document."),
				 errhint("DELETE the document and INSERT it with the new _routing.")));
	w->tbl = tbl;
	w->id = pstrdup(id);
	if (tbl->source_att && bms_is_member(tbl->source_att, updated))
	{
		/*
		 * The new _source with the fields assigned beside it set in it; the
		 * other columns hold what the old document had, which must not undo
		 * the new one (SET _source = _source - 'f').
		 */
		w->op = EWRITE_INDEX;
		w->doc = w->row = document_json(tbl, values, nulls, updated, true, true);
		return w;
	}
	w->row = document_json(tbl, values, nulls, written_fields(tbl, nulls, updated),
						   true, true);
	w->op = EWRITE_UPDATE;
	if (assigns_object(tbl, values, nulls, updated))
		w->doc = script_update(tbl, values, nulls, updated);
	else
		w->doc = psprintf("{\"doc\":%s}",
						  document_json(tbl, values, nulls, updated, true, false));
	return w;
}

/* The write of a DELETE of document id. */
ElasticWrite *
ElasticDeleteWrite(ElasticTable *tbl, const char *id)
{
	ElasticWrite *w = palloc0(sizeof(ElasticWrite));

	w->op = EWRITE_DELETE;
	w->tbl = tbl;
	w->id = pstrdup(id);
	return w;
}

/*
 * The index the action of w is addressed to: the concrete index of the
 * document an UPDATE or DELETE read, else the table's index option.
 */
static const char *
write_index(ElasticWrite *w)
{
	return w->index ? w->index : w->tbl->index;
}

/* Append the NDJSON lines of one write. */
static void
append_action(StringInfo buf, ElasticWrite *w)
{
	static const char *const ops[] = {"index", "update", "delete", "create"};

	appendStringInfo(buf, "{\"%s\":{\"_index\":", ops[w->op]);
	escape_json(buf, write_index(w));
	appendStringInfoString(buf, ",\"_id\":");
	escape_json(buf, w->id);
	if (w->routing)
	{
		appendStringInfoString(buf, ",\"routing\":");
		escape_json(buf, w->routing);
	}
	if (w->versioned)
		appendStringInfo(buf, ",\"if_seq_no\":" INT64_FORMAT ",\"if_primary_term\":" INT64_FORMAT,
						 w->seq_no, w->primary_term);
	appendStringInfoString(buf, "}}\n");
	if (w->doc)
	{
		appendStringInfoString(buf, w->doc);
		appendStringInfoChar(buf, '\n');
	}
}

/*
 * An excerpt, fit for a message, of s, a JSON string of an error body the
 * service sent; dflt if s is not a string.
 */
static const char *
member_excerpt(PgpolyConnection *conn, json_t *s, const char *dflt)
{
	if (!json_is_string(s))
		return dflt;
	return PgpolyHttpExcerpt(conn, json_string_value(s), json_string_length(s));
}

/*
 * Whether bulk item entry ({"<action>": {...}}) for write w failed: it has
 * an "error", or a status that is not a success (a delete's 404 is: the
 * document is gone), in any of its members (an item has one; a member
 * that is no object, or none at all, is a failure too: nothing says the
 * write was applied).  A success is a 2xx: a 1xx, 0 or a negative status
 * reports nothing written.  A create's 409 (ON CONFLICT DO NOTHING: the
 * document exists) is the row skipped, not a failure.  *err and *status:
 * those of the first failed member, else of the last.
 */
static bool
item_failed(ElasticWrite *w, json_t *entry, json_t **err, json_t **status)
{
	const char *key;
	json_t	   *item;
	bool		skipped = false;

	*err = *status = NULL;
	if (json_object_size(entry) == 0)
		return true;
	json_object_foreach(entry, key, item)
	{
		json_int_t	st;

		*err = json_object_get(item, "error");
		*status = json_object_get(item, "status");
		st = json_is_integer(*status) ? json_integer_value(*status) : 0;
		if (*err == NULL && ((st >= 200 && st < 300) ||
							 (w->op == EWRITE_DELETE && st == 404)))
			continue;
		if (w->op == EWRITE_CREATE && st == 409)
		{
			skipped = true;
			continue;
		}
		return true;
	}
	if (skipped && w->applied)
		*w->applied = false;
	return false;
}

/*
 * Whether a failed item (status) of versioned write w says that the
 * document no longer has the version the transaction read: 409
 * (version_conflict_engine_exception: changed, or deleted, meanwhile) or,
 * for a partial "update", 404 (document_missing_exception: Elasticsearch
 * looks the document up before it checks the version).
 */
static bool
item_conflict(ElasticWrite *w, json_t *status)
{
	json_int_t	st = json_is_integer(status) ? json_integer_value(status) : 0;

	return w->versioned && (st == 409 || (w->op == EWRITE_UPDATE && st == 404));
}

/*
 * Keep the version a successful item gave document w (_seq_no and
 * _primary_term, which every index, update and delete item carries):
 * the condition of a later versioned write of the document.  A written
 * item (2xx) without one is an ERROR: the later write could never be
 * sent, and a 40001 would have the transaction retried for ever.  Only a
 * create skipped for another client's document (or a delete of a missing
 * one) gives no version (chain_version).  applied: actions of the COMMIT
 * up to this request's.
 */
static void
note_result(PgpolyConnection *conn, ElasticWrite *w, json_t *entry, int64 applied)
{
	const char *key;
	json_t	   *item;

	json_object_foreach(entry, key, item)
	{
		json_t	   *seq = json_object_get(item, "_seq_no");
		json_t	   *term = json_object_get(item, "_primary_term");
		json_t	   *status = json_object_get(item, "status");

		w->has_result = json_is_integer(seq) && json_is_integer(term) &&
			json_integer_value(seq) >= 0 && json_integer_value(term) > 0;
		if (w->has_result)
		{
			w->result_seq_no = json_integer_value(seq);
			w->result_primary_term = json_integer_value(term);
		}
		else if (json_integer_value(status) < 300)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
					 errmsg("Elasticsearch server \"%s\" wrote document \"%s\" of index \"%s\" without giving its _seq_no and _primary_term",
							conn->servername, w->id, write_index(w)),
					 errdetail("The transaction writes the document again, on the condition of the version this write gave it (if_seq_no, if_primary_term)."),
					 errhint("Elasticsearch has no rollback: " INT64_FORMAT " action(s) of this COMMIT, up to this one's request, stay applied.",
							 applied)));
	}
}

/*
 * ERROR 40001 for versioned write w, whose document another client
 * changed or deleted after the transaction read it (the version it read
 * is gone); detail: what Elasticsearch said, or NULL.  Elasticsearch has
 * no rollback: applied actions before it (and maybe other items of its
 * request) stay.
 */
static void
raise_conflict(ElasticWrite *w, const char *detail, int64 applied)
{
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not serialize the write of document \"%s\" of foreign table \"%s\" (index \"%s\")",
					w->id, w->tbl->relname, write_index(w)),
			 detail ? errdetail("Another client changed or deleted the document after this transaction's UPDATE or DELETE read it (if_seq_no/if_primary_term): %s", detail) :
			 errdetail("The transaction's UPDATE or DELETE read the document from the transaction's own earlier write of it, which Elasticsearch did not apply as that write (another client's document, or a write without a version)."),
			 errhint("The transaction can be retried. Elasticsearch has no rollback: " INT64_FORMAT " earlier action(s) of this COMMIT stay applied, as may the other items of its _bulk request.",
					 applied)));
}

/*
 * Whether the error of a failed item is routing_missing_exception: the
 * index mapping requires a routing (mapping-routing-field.html, "Making a
 * routing value required") and the action had none.
 */
static bool
routing_missing(json_t *err)
{
	json_t	   *type = json_object_get(err, "type");

	return json_is_string(type) &&
		strcmp(json_string_value(type), "routing_missing_exception") == 0;
}

/*
 * Whether the error of a failed item is about its index, not its document
 * (ElasticRaiseIndexCondition): the index is missing (and the cluster does
 * not create indices on write: action.auto_create_index), closed, or
 * blocked.
 */
static bool
index_condition(json_t *err)
{
	const char *t = json_string_value(json_object_get(err, "type"));

	return t != NULL && (strcmp(t, "index_not_found_exception") == 0 ||
						 strcmp(t, "index_closed_exception") == 0 ||
						 strcmp(t, "cluster_block_exception") == 0);
}

/*
 * ERROR unless bulk item entry, the i-th of its request's, is about the
 * document of write w: Elasticsearch answers the actions in the order they
 * were sent, each item with its action's _id.  An item for another
 * document (reordered items, another request's, an ingest pipeline that
 * set another _id) says nothing of w's write.  An item without _id is
 * taken by its place.
 */
static void
item_for(PgpolyConnection *conn, ElasticWrite *w, json_t *entry, int i,
		 int64 sent_before)
{
	const char *key;
	json_t	   *item;

	json_object_foreach(entry, key, item)
	{
		json_t	   *id = json_object_get(item, "_id");
		size_t		idlen = json_is_string(id) ? json_string_length(id) : 0;
		const char *idtext = json_is_string(id) ?
			PgpolyStoreToServer(json_string_value(id), &idlen, "document _id") : NULL;

		if (id != NULL &&
			!(idtext != NULL && strlen(w->id) == idlen &&
			  memcmp(w->id, idtext, idlen) == 0))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
					 errmsg("Elasticsearch server \"%s\" answered the write of document \"%s\" of index \"%s\" with an item for document %s",
							conn->servername, w->id, write_index(w),
							json_is_string(id) ?
							psprintf("\"%s\"", PgpolyHttpExcerpt(conn, json_string_value(id),
																 json_string_length(id))) :
							"(no string)"),
					 errdetail("Elasticsearch answers the actions of a _bulk request in the order sent, each item with its action's _id; item %d has another (an ingest pipeline that sets another _id is not supported).",
							   i + 1),
					 errhint("Elasticsearch has no rollback: " INT64_FORMAT " earlier action(s) of this write stay applied, as may the items of its batch.",
							 sent_before + (int64) i)));
	}
}

/*
 * ERROR if an item of a bulk response failed (see item_failed), naming
 * the first failed document with its error, and the others (up to ten).
 * A version conflict (item_conflict) is SQLSTATE 40001.  The versions of
 * the successful items later writes depend on are kept (note_result).
 */
static void
check_items(PgpolyConnection *conn, json_t *doc, ElasticWrite **batch, int n,
			int64 sent_before)
{
	json_t	   *items = json_object_get(doc, "items");
	json_t	   *err = NULL;
	json_t	   *status = NULL;
	int			first = -1;
	int			failed = 0;
	int			cond = -1;		/* the first failed for its index */
	json_t	   *cond_err = NULL;
	json_t	   *cond_status = NULL;
	StringInfoData others;

	if (!json_is_array(items) || json_array_size(items) != (size_t) n)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("Elasticsearch server \"%s\" answered a bulk request of %d actions with %zu items",
						conn->servername, n, json_is_array(items) ? json_array_size(items) : 0)));
	initStringInfo(&others);
	for (int i = 0; i < n; i++)
	{
		json_t	   *e;
		json_t	   *st;

		item_for(conn, batch[i], json_array_get(items, i), i, sent_before);
		if (!item_failed(batch[i], json_array_get(items, i), &e, &st))
		{
			if (batch[i]->feeds)
				note_result(conn, batch[i], json_array_get(items, i),
							sent_before + (int64) n);
			continue;
		}
		if (cond < 0 && index_condition(e))
		{
			cond = i;
			cond_err = e;
			cond_status = st;
		}
		if (failed++ == 0)
		{
			first = i;
			err = e;
			status = st;
		}
		else if (failed <= 11)
			appendStringInfo(&others, "%s\"%s\"", failed > 2 ? ", " : "", batch[i]->id);
	}
	if (first < 0)
		return;
	if (failed > 1)
		appendStringInfo(&others, "%s.", failed > 11 ? ", ..." : "");
	/* the index cannot take writes: no document is to blame */
	if (cond >= 0)
		ElasticRaiseIndexCondition(conn, json_integer_value(cond_status),
								   json_string_value(json_object_get(cond_err, "type")),
								   write_index(batch[cond]),
								   psprintf("The write of document \"%s\" failed%s: %s: %s",
											batch[cond]->id,
											failed > 1 ? psprintf(" (%d other item(s) of the request failed too)",
																  failed - 1) : "",
											member_excerpt(conn, json_object_get(cond_err, "type"), "error"),
											member_excerpt(conn, json_object_get(cond_err, "reason"), "no reason given")),
								   psprintf(" Elasticsearch has no rollback: " INT64_FORMAT " earlier action(s) of this write stay applied, as may the other items of its batch.",
											sent_before + (int64) first));
	if (item_conflict(batch[first], status))
		raise_conflict(batch[first],
					   psprintf("%s: %s%s%s",
								member_excerpt(conn, json_object_get(err, "type"), "error"),
								member_excerpt(conn, json_object_get(err, "reason"), "no reason given"),
								failed > 1 ? psprintf(". %d other item(s) of the request failed too: ",
													  failed - 1) : "",
								others.data),
					   sent_before + (int64) first);
	ereport(ERROR,
			(errcode(PgpolyHttpStatusErrcode(json_integer_value(status))),
			 errmsg("Elasticsearch rejected document \"%s\" in index \"%s\"",
					batch[first]->id, write_index(batch[first])),
			 err ? errdetail("%s: %s%s%s",
							 member_excerpt(conn, json_object_get(err, "type"), "error"),
							 member_excerpt(conn, json_object_get(err, "reason"), "no reason given"),
							 failed > 1 ? psprintf(". %d other item(s) of the request failed too: ",
												   failed - 1) : "",
							 others.data) :
			 errdetail("The item has status %s and no error%s%s",
					   json_is_integer(status) ?
					   psprintf("%" JSON_INTEGER_FORMAT, json_integer_value(status)) :
					   "(none)",
					   failed > 1 ? psprintf("; %d other item(s) of the request failed too: ",
											 failed - 1) : ".",
					   others.data),
			 routing_missing(err) ?
			 errhint("The index mapping requires a custom routing value (\"_routing\": {\"required\": true}): an INSERT gives it in a column named _routing (ALTER FOREIGN TABLE ... ADD COLUMN _routing text); an UPDATE or DELETE sends the routing of the document it read. Elasticsearch has no rollback: " INT64_FORMAT " earlier action(s) of this write stay applied, as may the other items of its batch.",
					 sent_before + (int64) first) :
			 errhint("Elasticsearch has no rollback: " INT64_FORMAT " earlier action(s) of this write stay applied, as may the other items of its batch.",
					 sent_before + (int64) first)));
}

/* An entry of ids_searched's map: an id and its positions in the list. */
typedef struct IdPos
{
	PgpolyKeyRef key;			/* hash key (PgpolyKeyTable) */
	int			pos;			/* last position; prev[pos] the one before */
} IdPos;

/*
 * The body of an ids search, for at most size hits, of the distinct ids
 * (of n) not yet marked in exists (map: the last position of each id).
 */
static char *
ids_search_body(HTAB *map, char **ids, int n, bool *exists, int size)
{
	StringInfoData body;
	bool		first = true;

	initStringInfo(&body);
	appendStringInfo(&body, "{\"size\":%d,\"_source\":false,\"query\":{\"ids\":{\"values\":[",
					 size);
	for (int i = 0; i < n; i++)
	{
		IdPos	   *e = PgpolyKeyTableFind(map, ids[i], strlen(ids[i]));

		if (exists[i] || e->pos != i)
			continue;
		if (!first)
			appendStringInfoChar(&body, ',');
		escape_json(&body, ids[i]);
		first = false;
	}
	appendStringInfoString(&body, "]}}}");
	return body.data;
}

/* The NUL-free string v, or NULL (not a string, or one with a NUL). */
static const char *
json_name(json_t *v)
{
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
		return NULL;
	return json_string_value(v);
}

/*
 * Whether doc, a hit of document id (a search hit or a multi-get
 * document, both naming its "_index" and its "_routing" if it has one), is
 * one the transaction's buffered writes delete (deleted: their overlay, or
 * NULL): Elasticsearch still has it until COMMIT, the transaction does
 * not.  (A multi-get without routing finds a document on the shard of its
 * _id whatever routing it was indexed with.)
 */
static bool
hit_deleted(ElasticOverlay *deleted, const char *id, json_t *doc)
{
	const char *index = json_name(json_object_get(doc, "_index"));

	return deleted && index &&
		ElasticOverlayDeleted(deleted, id, index,
							  json_name(json_object_get(doc, "_routing")));
}

static void ids_searched(PgpolyConnection *conn, ElasticTable *tbl, char **ids,
						 int n, ElasticOverlay *deleted, bool *exists, int *left);
static void ids_deleted_page(PgpolyConnection *conn, ElasticTable *tbl, char **ids,
							 int n, ElasticOverlay *deleted, bool *exists, int *left);

/*
 * Mark in exists the ids (n of them, *left not yet marked) that a search
 * of tbl's index option finds: an ids query reads every index of an
 * alias, a list or a pattern and every shard, whatever routing a document
 * was indexed with.  A page holds at most fetch_size hits (which an
 * index's max_result_window allows, as for a scan): after a full one the
 * ids still unmarked are searched again.  A hit of a document the
 * transaction deleted (in deleted) marks nothing; a full page of only
 * such hits has the ids left searched one by one.  A missing index has
 * none.
 */
static void
ids_searched(PgpolyConnection *conn, ElasticTable *tbl, char **ids, int n,
			 ElasticOverlay *deleted, bool *exists, int *left)
{
	char	   *path = ElasticIndexPath(tbl->index, "/_search");
	HTAB	   *map = PgpolyKeyTable("pgpoly elastic ids", sizeof(IdPos), CurrentMemoryContext);
	int		   *prev = palloc(sizeof(int) * n);
	bool		full = true;
	bool		hidden = false;

	for (int i = 0; i < n; i++)
	{
		bool		found;
		IdPos	   *e = PgpolyKeyTableEnter(map, CurrentMemoryContext, ids[i],
											strlen(ids[i]), &found);

		prev[i] = found ? e->pos : -1;
		e->pos = i;
	}
	while (full && *left > 0)
	{
		char	   *body = ids_search_body(map, ids, n, exists, tbl->fetch_size);
		PgpolyHttpResponse resp;
		json_t	   *hits;
		json_t	   *hit;
		size_t		k;
		int			before = *left;

		ElasticRequest(conn, "POST", path, body, strlen(body), "application/json",
					   tbl->index, &resp);
		if (resp.status == 404)
			return;
		if (resp.status < 200 || resp.status > 299)
			ElasticRaiseStatus(conn, "POST", path, tbl->index, &resp);
		hits = json_object_get(json_object_get(PgpolyJsonParse(conn, resp.body, resp.len,
															   "search response"),
											   "hits"), "hits");
		full = json_array_size(hits) >= (size_t) tbl->fetch_size;
		json_array_foreach(hits, k, hit)
		{
			json_t	   *id = json_object_get(hit, "_id");
			size_t		idlen = json_is_string(id) ? json_string_length(id) : 0;
			IdPos	   *e = json_is_string(id) ?
				PgpolyKeyTableFind(map, PgpolyStoreToServer(json_string_value(id), &idlen,
															"document _id"),
								   idlen) : NULL;

			if (e && hit_deleted(deleted, ids[e->pos], hit))
			{
				hidden = true;
				continue;
			}
			for (int i = e ? e->pos : -1; i >= 0; i = prev[i])
				if (!exists[i])
				{
					exists[i] = true;
					(*left)--;
				}
		}
		if (full && *left == before && hidden)
		{
			ids_deleted_page(conn, tbl, ids, n, deleted, exists, left);
			return;
		}
		if (!json_is_array(hits) || (full && *left == before))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
					 errmsg("Elasticsearch server \"%s\" answered an ids search of index \"%s\" with %s",
							conn->servername, tbl->index,
							json_is_array(hits) ? "a full page of hits of no id it asked for" :
							"no hits.hits array")));
	}
}

/*
 * ids_searched's page was full of hits of documents the transaction
 * deleted: search the ids still unmarked (n, *left of them) one at a
 * time, so that each page holds one id's documents.  An _id with more
 * deleted documents than a page holds is an ERROR.
 */
static void
ids_deleted_page(PgpolyConnection *conn, ElasticTable *tbl, char **ids, int n,
				 ElasticOverlay *deleted, bool *exists, int *left)
{
	if (n == 1)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("cannot tell whether document \"%s\" exists in index \"%s\"",
						ids[0], tbl->index),
				 errdetail("A page of %d hits of the _id holds only documents this transaction deleted.",
						   tbl->fetch_size),
				 errhint("Raise the foreign table's fetch_size option.")));
	for (int i = 0; i < n; i++)
	{
		int			one = 1;

		if (exists[i])
			continue;
		ids_searched(conn, tbl, &ids[i], 1, deleted, &exists[i], &one);
		if (exists[i])
			(*left)--;
	}
}

/*
 * Whether a multi-get document's error (its type) says only that the
 * multi-get cannot look there, which the ids search did: a missing index,
 * an alias of several indices ("alias [...] has more than one index
 * associated with it", illegal_argument_exception) or an index requiring
 * a routing the row does not give (the "create" fails then).
 */
static bool
mget_error_ok(json_t *type)
{
	const char *t = json_is_string(type) ? json_string_value(type) : "";

	return strcmp(t, "index_not_found_exception") == 0 ||
		strcmp(t, "illegal_argument_exception") == 0 ||
		strcmp(t, "routing_missing_exception") == 0;
}

/*
 * Mark in exists the ids (n, *left not yet marked) that a multi-get of
 * tbl's index option finds, each with its routing (routings[i], or NULL:
 * the shard of its _id): real time, a document indexed a moment ago is
 * found before any refresh.  A multi-get addresses one index: through a
 * list or a pattern it is not sent, and an alias of several indices fails
 * each document (ids_searched looks there).  A document the transaction
 * deleted (in deleted) does not count.  A missing index has none.
 */
static void
ids_got(PgpolyConnection *conn, ElasticTable *tbl, char **ids, char **routings,
		int n, ElasticOverlay *deleted, bool *exists, int *left)
{
	char	   *path = ElasticIndexPath(tbl->index, "/_mget?_source=false");
	StringInfoData body;
	PgpolyHttpResponse resp;
	json_t	   *docs;
	int		   *pos = palloc(sizeof(int) * n);
	int			m = 0;

	if (*left == 0 || strpbrk(tbl->index, ",*") != NULL)
		return;
	initStringInfo(&body);
	appendStringInfoString(&body, "{\"docs\":[");
	for (int i = 0; i < n; i++)
	{
		if (exists[i])
			continue;
		appendStringInfoString(&body, m > 0 ? ",{\"_id\":" : "{\"_id\":");
		escape_json(&body, ids[i]);
		if (routings && routings[i])
		{
			appendStringInfoString(&body, ",\"routing\":");
			escape_json(&body, routings[i]);
		}
		appendStringInfoChar(&body, '}');
		pos[m++] = i;
	}
	appendStringInfoString(&body, "]}");
	ElasticRequest(conn, "POST", path, body.data, body.len, "application/json",
				   tbl->index, &resp);
	if (resp.status == 404)
		return;
	if (resp.status < 200 || resp.status > 299)
		ElasticRaiseStatus(conn, "POST", path, tbl->index, &resp);
	docs = json_object_get(PgpolyJsonParse(conn, resp.body, resp.len, "multi-get response"),
						   "docs");
	if (!json_is_array(docs) || json_array_size(docs) != (size_t) m)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_DATA_TYPE),
				 errmsg("Elasticsearch server \"%s\" answered a multi-get of %d ids with %zu documents",
						conn->servername, m, json_is_array(docs) ? json_array_size(docs) : 0)));
	for (int j = 0; j < m; j++)
	{
		json_t	   *doc = json_array_get(docs, j);
		json_t	   *err = json_object_get(doc, "error");

		if (err && !mget_error_ok(json_object_get(err, "type")))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_ERROR),
					 errmsg("Elasticsearch could not tell whether document \"%s\" exists in index \"%s\"",
							ids[pos[j]], tbl->index),
					 errdetail("%s: %s", member_excerpt(conn, json_object_get(err, "type"), "error"),
							   member_excerpt(conn, json_object_get(err, "reason"),
											  "no reason given"))));
		if (json_is_true(json_object_get(doc, "found")) &&
			!hit_deleted(deleted, ids[pos[j]], doc))
		{
			exists[pos[j]] = true;
			(*left)--;
		}
	}
}

/*
 * Whether each of the n document ids exists in tbl's index option now
 * (ON CONFLICT DO NOTHING), routings[i] (or NULL, or routings NULL) the
 * custom routing the row gives.  An _id is unique per shard of one index
 * only: an ids search finds it in any index and on any shard, under any
 * routing, as of the last refresh; with realtime (rows that are not sent
 * at once: the "create" action's 409 comes too late to count them) a
 * multi-get with the row's routing finds it on the shard the row would be
 * written to, in real time.  (A document another client indexed under
 * another routing, or in another index of an alias, since the last
 * refresh is not seen: the "create" action then checks its own shard
 * only.)  A document the transaction's buffered writes delete (in
 * deleted, or NULL) is not counted, although Elasticsearch has it until
 * COMMIT.
 */
void
ElasticIdsExist(PgpolyConnection *conn, ElasticTable *tbl, char **ids,
				char **routings, int n, bool realtime, ElasticOverlay *deleted,
				bool *exists)
{
	int			left = n;

	memset(exists, 0, sizeof(bool) * n);
	if (n == 0)
		return;
	ids_searched(conn, tbl, ids, n, deleted, exists, &left);
	if (realtime)
		ids_got(conn, tbl, ids, routings, n, deleted, exists, &left);
}

/*
 * Send one batch of writes as one _bulk request and check every item.
 * sent_before actions were sent (and applied) before it, later come after.
 * A request that fails as a whole (an HTTP error, a lost connection) says
 * so in its context: Elasticsearch has no rollback.
 */
static void
send_batch(PgpolyConnection *conn, ElasticWrite **batch, int n, int64 sent_before,
		   int64 later)
{
	PgpolySendProgress progress = {"Elasticsearch has no rollback", "action", "these writes",
	"earlier _bulk requests", sent_before, later};
	StringInfoData body;
	PgpolyHttpResponse resp;
	const char *refresh = batch[0]->tbl->refresh;
	char	   *path = strcmp(refresh, "false") == 0 ? "/_bulk" :
		psprintf("/_bulk?refresh=%s", refresh);
	json_t	   *doc;
	PgpolyJsonTopLevel summary = {"errors", "items", "status", 200, 299};
	bool		need_results = false;

	initStringInfo(&body);
	for (int i = 0; i < n; i++)
		append_action(&body, batch[i]);
	PgpolySendProgressPush(&progress);
	ElasticRequest(conn, "POST", path, body.data, body.len,
				   "application/x-ndjson", batch[0]->tbl->index, &resp);
	if (resp.status < 200 || resp.status > 299)
		ElasticRaiseStatus(conn, "POST", path, batch[0]->tbl->index, &resp);
	PgpolySendProgressPop(&progress);	/* item errors give the count */
	/*
	 * The common case needs no document (jansson) at all: "errors": false,
	 * one item per action, each an object of objects with a 2xx status, no
	 * "error" and the action's _id (what check_items accepts).  Anything else, even when
	 * "errors" says false, has every item checked.
	 */
	for (int i = 0; i < n; i++)
		need_results |= batch[i]->feeds;
	summary.reject_key = "error";
	summary.match_key = "_id";
	summary.match_values = palloc(sizeof(char *) * n);
	summary.nmatch = n;
	for (int i = 0; i < n; i++)
		summary.match_values[i] = batch[i]->id;
	if (!need_results && PgpolyJsonTopLevelScan(resp.body, resp.len, &summary) &&
		summary.found && !summary.value && summary.elements == n &&
		summary.inner_count == n)
		return;
	doc = PgpolyJsonParse(conn, resp.body, resp.len, "bulk response");
	check_items(conn, doc, batch, n, sent_before);
}

/* An entry of link_writes' map: the last write of a document. */
typedef struct LastWrite
{
	PgpolyKeyRef key;			/* index, NUL, id (PgpolyKeyTable) */
	ElasticWrite *w;
} LastWrite;

/*
 * Link each write to the previous write of the same document (w->prev)
 * and mark the writes whose result a later versioned write needs
 * (w->feeds).  A document written twice in the transaction (two UPDATEs,
 * an INSERT then an UPDATE, or a join that updates it twice) is read the
 * second time from the first write, and then its version is the one the
 * first write gives it.  Nothing to do without versioned writes.
 */
static void
link_writes(List *writes, MemoryContext cxt)
{
	HTAB	   *last = NULL;
	ListCell   *lc;

	foreach(lc, writes)
	{
		ElasticWrite *w = lfirst(lc);

		w->prev = NULL;
		w->feeds = w->has_result = false;
		w->batchno = -1;
		if (w->versioned && last == NULL)
			last = PgpolyKeyTable("pgpoly elastic writes", sizeof(LastWrite), cxt);
	}
	foreach(lc, last ? writes : NIL)
	{
		ElasticWrite *w = lfirst(lc);
		const char *index = write_index(w);
		size_t		ilen = strlen(index);
		size_t		len = ilen + 1 + strlen(w->id);
		char	   *key = palloc(len + 1);
		bool		found;
		LastWrite  *e;

		/* index, NUL, id: no index name holds a NUL */
		memcpy(key, index, ilen + 1);
		strcpy(key + ilen + 1, w->id);
		e = PgpolyKeyTableEnter(last, cxt, key, len, &found);
		pfree(key);
		if (found)
		{
			w->prev = e->w;
			if (w->versioned)
				w->prev->feeds = true;
		}
		e->w = w;
	}
}

/*
 * The condition of versioned write w whose document the transaction wrote
 * before (w->prev, sent in an earlier batch): the version that write
 * gave it.  ERROR 40001 when it gave none (a "create" skipped because
 * another client's document had the id).
 */
static void
chain_version(ElasticWrite *w, int64 sent)
{
	if (!w->prev->has_result)
		raise_conflict(w, NULL, sent);
	w->seq_no = w->prev->result_seq_no;
	w->primary_term = w->prev->result_primary_term;
}

/*
 * About the bytes w adds to a _bulk body: its source line and action line
 * (append_action; the action's names and numbers in 256 bytes).
 */
static size_t
write_bytes(ElasticWrite *w)
{
	return (w->doc ? strlen(w->doc) : 0) + strlen(w->id) +
		(w->routing ? strlen(w->routing) : 0) + strlen(write_index(w)) + 256;
}

/*
 * Send writes (ElasticWrite *) in _bulk batches of the tables' batch_size
 * and of at most ELASTIC_MAX_BULK_BYTES (a larger body is refused with 413
 * past http.max_content_length, 100mb by default; a single larger document
 * goes alone); a change of refresh option starts a new batch, and so does a versioned
 * write of a document written earlier in the same batch (its condition is
 * the version that write returns), or any write of a document whose
 * earlier write in the batch is versioned: if that one fails with 40001,
 * the later write of the document (a DELETE by _id after an UPDATE, an
 * INSERT after a DELETE) must not be applied either.
 */
void
ElasticSendWrites(PgpolyConnection *conn, List *writes)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "pgpoly elastic bulk",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	ElasticWrite **batch = palloc(sizeof(ElasticWrite *) * Max(list_length(writes), 1));
	int			n = 0;
	int			batchno = 0;
	int64		sent = 0;
	size_t		bytes = 0;
	ListCell   *lc;

	link_writes(writes, cxt);
	MemoryContextSwitchTo(old);
	foreach(lc, writes)
	{
		ElasticWrite *w = lfirst(lc);
		bool		chained = w->versioned && w->prev != NULL;
		bool		follows = w->prev != NULL && (w->versioned || w->prev->versioned);
		size_t		wbytes = write_bytes(w);

		if (n > 0 && (n >= batch[0]->tbl->batch_size ||
					  bytes + wbytes > ELASTIC_MAX_BULK_BYTES ||
					  strcmp(w->tbl->refresh, batch[0]->tbl->refresh) != 0 ||
					  (follows && w->prev->batchno == batchno)))
		{
			old = MemoryContextSwitchTo(cxt);
			send_batch(conn, batch, n, sent, list_length(writes) - sent - n);
			MemoryContextSwitchTo(old);
			sent += n;
			n = 0;
			bytes = 0;
			batchno++;
		}
		if (chained)
			chain_version(w, sent);
		w->batchno = batchno;
		batch[n++] = w;
		bytes += wbytes;
	}
	if (n > 0)
	{
		old = MemoryContextSwitchTo(cxt);
		send_batch(conn, batch, n, sent, 0);
		MemoryContextSwitchTo(old);
	}
	MemoryContextDelete(cxt);
}
