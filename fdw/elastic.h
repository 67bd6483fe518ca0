/*-------------------------------------------------------------------------
 *
 * elastic.h
 *		  Internal API shared by the pgpoly_elastic source files.
 *
 * elastic_fdw.c	FDW handler, validator, planning (quals, ORDER BY,
 *					LIMIT, count(*)), EXPLAIN, IMPORT FOREIGN SCHEMA
 * elastic_conn.c	connections: version detection, requests, ES errors,
 *					mappings, pgpoly.elastic_request()
 * elastic_query.c	qual classification and the query DSL / request body
 * elastic_scan.c	scan execution: paging (from/size, PIT + search_after
 *					with Elasticsearch's or OpenSearch's PIT API, scroll),
 *					type mapping, read-your-writes overlay
 * elastic_bulk.c	INSERT/UPDATE/DELETE through _bulk, write buffer payloads
 * elastic_import.c	IMPORT FOREIGN SCHEMA from _mapping
 *
 * Invariants:
 *	- Request bodies are built with escape_json()/PgpolyJsonAppendValue():
 *	  no user value is ever formatted into JSON unescaped, and every value
 *	  has the core's fixed form, whatever the session's settings.
 *	- Documents (_source) become jsonb through PostgreSQL's own parser, so
 *	  numbers keep their precision; jansson only reads control responses.
 *	- No network I/O at plan time, except the index mapping, fetched once
 *	  per connection and only when a column is compared or sorted: a
 *	  comparison is pushed only where the field's mapped type compares as
 *	  the column's SQL type does.
 *
 * fdw/elastic.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGPOLY_ELASTIC_H
#define PGPOLY_ELASTIC_H

#include "pgpoly.h"

#include "fmgr.h"
#include "nodes/execnodes.h"
#include "nodes/parsenodes.h"
#include "nodes/pathnodes.h"

/* ES does not allow from + size beyond this (index.max_result_window). */
#define ELASTIC_MAX_RESULT_WINDOW 10000
#define ELASTIC_MAX_TERMS 65536	/* index.max_terms_count's default */
/* Most bytes of one _bulk body: Elasticsearch advises 5 to 15 MB a request. */
#define ELASTIC_MAX_BULK_BYTES (10 * 1024 * 1024)
/* Retries of 429/502/503 per request (jittered backoff in the core). */
#define ELASTIC_RETRIES 3
/* keep_alive of PIT and scroll contexts between pages. */
#define ELASTIC_KEEP_ALIVE "1m"

/*
 * Bound of closing a context at transaction abort or backend exit, where
 * a dead store must not hold the backend (keep_alive expires it anyway).
 */
#define ELASTIC_CLOSE_TIMEOUT_MS 500

/* What a column of an Elasticsearch foreign table stands for. */
typedef enum ElasticColRole
{
	ECOL_NONE,					/* dropped column */
	ECOL_ID,					/* _id */
	ECOL_SCORE,					/* _score */
	ECOL_QUERY,					/* _query: full-text query, not stored */
	ECOL_SOURCE,				/* _source: the whole document */
	ECOL_ROUTING,				/* _routing: custom routing, or NULL */
	ECOL_FIELD					/* a document field */
} ElasticColRole;

typedef struct ElasticColumn
{
	ElasticColRole role;
	char	   *name;			/* column name */
	char	   *field;			/* document field path ("a.b") */
	Oid			typid;
	int32		typmod;
	Oid			basetype;		/* element type for arrays, else the base type of typid */
	bool		is_array;
	bool		is_json;		/* json or jsonb: reads anything */
	bool		is_datetime;	/* date/timestamp(tz) (or array of) */
	PgpolyConv	conv;			/* text -> datum (convert.c) */
	PgpolyConv	instant;		/* scalar date or timestamp column: the
								 * timestamptz a value names (its UTC day or
								 * time is the column's, as Elasticsearch
								 * indexes it) */
} ElasticColumn;

/* An Elasticsearch foreign table, resolved from the catalogs (no I/O). */
typedef struct ElasticTable
{
	Oid			relid;
	char	   *relname;
	char	   *index;			/* index, alias or pattern */
	int			fetch_size;
	int			batch_size;
	const char *refresh;		/* "false", "true", "wait_for" */
	bool		transactional;
	int			natts;
	ElasticColumn *cols;		/* indexed by attnum - 1 */
	AttrNumber	id_att;			/* attnums of reserved columns, or 0 */
	AttrNumber	score_att;
	AttrNumber	query_att;
	AttrNumber	source_att;
	AttrNumber	routing_att;
	ForeignServer *server;
	UserMapping *user;			/* may be NULL */
	List	   *consulted;		/* String: column fields whose mapping a
								 * pushed clause or sort relies on */
} ElasticTable;

/* Which point-in-time API a cluster has (deep scans use it when present). */
typedef enum ElasticPitApi
{
	EPIT_NONE,					/* scroll: ES 7.10/7.11, OpenSearch < 2.4 */
	EPIT_ES,					/* POST /<index>/_pit, DELETE /_pit {"id"} */
	EPIT_OPENSEARCH				/* POST /<index>/_search/point_in_time,
								 * DELETE /_search/point_in_time
								 * {"pit_id": [...]} */
} ElasticPitApi;

/* The store's handle of one cached connection. */
typedef struct ElasticHandle
{
	PgpolyHttp *http;
	bool		opensearch;
	int			major;
	int			minor;
	char		version[32];
	ElasticPitApi pit_api;		/* EPIT_NONE: deep scans scroll */
	const char *tiebreaker;		/* PIT sort tiebreaker: "_shard_doc", "_id" */
	List	   *mappings;		/* ElasticMappingCache, TopMemoryContext */
} ElasticHandle;

/* elastic_fdw.c */
extern Datum pgpoly_elastic_handler(PG_FUNCTION_ARGS);
extern ElasticTable *ElasticLoadTable(Oid relid, Oid userid);
extern List *ElasticConflictColumns(Oid relid);
extern const PgpolyOption ElasticOptions[];

/* elastic_import.c */
extern List *ElasticImportForeignSchema(ImportForeignSchemaStmt *stmt,
										Oid serverOid);

/* elastic_conn.c */
extern const PgpolyStore ElasticStore;
extern PgpolyConnection *ElasticGetConnection(ElasticTable *tbl);
extern ElasticHandle *ElasticConnHandle(PgpolyConnection *conn);
extern void ElasticRequest(PgpolyConnection *conn, const char *method,
						   const char *path, const char *body, size_t len,
						   const char *content_type, const char *index,
						   PgpolyHttpResponse *resp);
extern void ElasticRequestOk(PgpolyConnection *conn, const char *method,
							 const char *path, const char *body, size_t len,
							 const char *index, PgpolyHttpResponse *resp);
extern void ElasticRaiseIndexCondition(PgpolyConnection *conn, long status,
									   const char *type, const char *index,
									   const char *detail, const char *more);
extern void ElasticRaiseStatus(PgpolyConnection *conn, const char *method,
							   const char *path, const char *index,
							   PgpolyHttpResponse *resp) pg_attribute_noreturn();
extern char *ElasticIndexPath(const char *index, const char *suffix);
/* What the mapping says of a field besides its type (ElasticFieldType). */
typedef struct ElasticFieldFacts
{
	bool		has_keyword;	/* text with a .keyword keyword subfield */
	int			ignore_above;	/* keyword: longer values are not indexed;
								 * -1 none */
	int			kw_ignore_above;	/* the same of the .keyword subfield */
	bool		null_value;		/* a JSON null is indexed as a value */
} ElasticFieldFacts;

extern const char *ElasticFieldType(ElasticTable *tbl, const char *field,
									ElasticFieldFacts *facts);
extern char *ElasticMappingFacts(ElasticTable *tbl, List *fields);
typedef struct ElasticOpenContext ElasticOpenContext;
extern ElasticOpenContext *ElasticTrackContext(PgpolyConnection *conn, bool pit,
											   const char *id, ElasticOpenContext *t);
extern void ElasticUntrackContext(ElasticOpenContext *t);
extern void ElasticQueueClose(ElasticOpenContext *t);
extern void ElasticSendQueuedCloses(PgpolyConnection *conn);
extern void ElasticCloseContext(PgpolyConnection *conn, bool pit,
								const char *id, const char *index);
extern Datum ElasticParseJsonb(PgpolyConnection *conn, List **nuls, const char *body,
							   size_t len, const char *what);

/* elastic_query.c: pushed-down conditions */
typedef enum ElasticCondKind
{
	ECOND_QUERY = 1,			/* _query = expr (query_string) */
	ECOND_EQ,					/* field = expr (term) */
	ECOND_NE,					/* field <> expr */
	ECOND_LT,
	ECOND_LE,
	ECOND_GT,
	ECOND_GE,
	ECOND_IN,					/* field = ANY(array expr) (terms) */
	ECOND_EXISTS,				/* field IS NOT NULL */
	ECOND_MISSING,				/* field IS NULL */
	ECOND_IDS,					/* _id = expr */
	ECOND_IDS_IN				/* _id = ANY(array expr) */
} ElasticCondKind;

/*
 * One pushed condition: kind, the ES field it applies to, and the index
 * in fdw_exprs of its value (-1 when it has none).  In plans it travels as
 * a List (Integer kind, String field, Integer expr, Integer below or -1
 * when not near, Integer above, String exists_field, Integer limit).
 */
typedef struct ElasticCond
{
	ElasticCondKind kind;
	char	   *field;
	char	   *exists_field;	/* the field an exists query finds every
								 * document with a value through */
	int			limit;			/* a keyword's ignore_above: a longer value
								 * is not indexed, and the clause (kept
								 * local) is sent as match_all; -1 */
	int			expr;
	bool		near;			/* a date/time comparison sent as the range
								 * [value - below, value + above] (ms),
								 * which the clause, kept local, narrows */
	int			below;
	int			above;
} ElasticCond;

/* One ORDER BY item pushed down: field (or "_score"), direction, nulls. */
typedef struct ElasticSort
{
	char	   *field;
	bool		desc;
	bool		nulls_first;
} ElasticSort;

/* Everything needed to build the request body (plan-time knowledge). */
typedef struct ElasticQuerySpec
{
	List	   *conds;			/* ElasticCond * */
	List	   *sorts;			/* ElasticSort * */
	List	   *includes;		/* String: _source includes; NIL + all */
	bool		source_all;		/* the whole _source is needed */
	bool		whole_source;	/* ask for the whole _source though only
								 * includes are read (their numbers'
								 * spelling, reads_number_spelling) */
	bool		need_source;	/* any field at all */
	bool		fields_read;	/* fields the query uses, not only the
								 * columns of pushed clauses, read to check
								 * them */
	bool		need_score;
	bool		seq_no;			/* the scan of an UPDATE's or DELETE's
								 * target: hits carry _seq_no and
								 * _primary_term (seq_no_primary_term) */
	int64		limit;			/* rows to fetch (LIMIT + OFFSET), or -1 */
} ElasticQuerySpec;

/* A value of fdw_exprs at execution time (or, for EXPLAIN, its text). */
typedef struct ElasticParamValue
{
	Datum		value;
	bool		isnull;
	Oid			typid;
	const char *explain;		/* non-NULL: EXPLAIN placeholder */
} ElasticParamValue;

extern bool ElasticClassifyQual(ElasticTable *tbl, RelOptInfo *baserel,
								Expr *clause, List **conds, List **exprs,
								bool *recheck);
extern bool ElasticSortableColumn(ElasticTable *tbl, AttrNumber att,
								  Oid collation, char **field);
extern void ElasticAppendQuery(StringInfo buf, List *conds,
							   ElasticParamValue *params, bool scoring);
extern void ElasticAppendBody(StringInfo buf, ElasticQuerySpec *spec,
							  ElasticParamValue *params, int size,
							  const char *tiebreaker);
extern List *ElasticCondsToList(List *conds);
extern List *ElasticCondsFromList(List *list);
extern List *ElasticSortsToList(List *sorts);
extern List *ElasticSortsFromList(List *list);

/* elastic_scan.c */
typedef struct ElasticScan ElasticScan;

extern ElasticScan *ElasticScanBegin(ElasticTable *tbl, PgpolyConnection *conn,
									 ElasticQuerySpec *spec,
									 ElasticParamValue *params,
									 List *pending, MemoryContext parent);
extern bool ElasticScanNext(ElasticScan *scan, Datum *values, bool *nulls,
							bool *from_overlay);
extern const char *ElasticScanHit(ElasticScan *scan, const char **index,
								  const char **routing, int64 *seq_no,
								  int64 *primary_term);
extern void ElasticScanEnd(ElasticScan *scan);
extern int	ElasticScanRequests(ElasticScan *scan);
extern const char *ElasticScanPaging(ElasticScan *scan);
extern int64 ElasticCount(ElasticTable *tbl, PgpolyConnection *conn,
						  List *conds, ElasticParamValue *params,
						  List *pending);
extern void ElasticRowFromSource(ElasticTable *tbl, Datum source,
								 const char *id, List *nuls, const char *base,
								 const bool *fetched, Datum *values, bool *nulls);

/* elastic_bulk.c */
typedef enum ElasticWriteOp
{
	EWRITE_INDEX,				/* whole document (INSERT) */
	EWRITE_UPDATE,				/* partial document (UPDATE) */
	EWRITE_DELETE,
	EWRITE_CREATE				/* whole document unless the id exists
								 * (INSERT ... ON CONFLICT DO NOTHING) */
} ElasticWriteOp;

/* A buffered write: the bulk action plus the row the overlay shows. */
typedef struct ElasticWrite
{
	ElasticWriteOp op;
	char	   *id;
	char	   *index;			/* concrete index of the document (its
								 * hit's _index), or NULL: the table's
								 * index option (an INSERT) */
	char	   *routing;		/* custom routing of the document (its hit's
								 * _routing), or NULL: the _id routes */
	char	   *doc;			/* bulk source line, or NULL for delete */
	char	   *row;			/* full new row as a JSON object, or NULL */
	ElasticTable *tbl;			/* index, refresh, batch_size, messages */
	bool	   *applied;		/* EWRITE_CREATE sent at once: cleared
								 * when the id existed (409) */
	/* optimistic concurrency control (transactional UPDATE/DELETE) */
	bool		versioned;		/* sent with if_seq_no/if_primary_term */
	int64		seq_no;			/* the version the statement read, or -1:
								 * read from this transaction's own earlier
								 * write, whose result is the version */
	int64		primary_term;
	/* set while COMMIT sends the writes (ElasticSendWrites) */
	struct ElasticWrite *prev;	/* earlier write of the same document */
	bool		feeds;			/* a later versioned write needs its result */
	bool		has_result;		/* its item returned _seq_no/_primary_term: */
	int64		result_seq_no;
	int64		result_primary_term;
	int			batchno;		/* the _bulk request it went in */
} ElasticWrite;

extern void ElasticWriteRow(ElasticTable *tbl, ElasticWrite *w,
							const bool *fetched, Datum *values, bool *nulls);
extern ElasticWrite *ElasticInsertWrite(ElasticTable *tbl, Datum *values,
										bool *nulls, char **assigned_id);
extern ElasticWrite *ElasticUpdateWrite(ElasticTable *tbl, const char *id,
										Datum *values, bool *nulls,
										Bitmapset *updated);
extern ElasticWrite *ElasticDeleteWrite(ElasticTable *tbl, const char *id);
extern void ElasticSendWrites(PgpolyConnection *conn, List *writes);
typedef struct ElasticOverlay ElasticOverlay;

extern void ElasticIdsExist(PgpolyConnection *conn, ElasticTable *tbl,
							char **ids, char **routings, int n, bool realtime,
							ElasticOverlay *deleted, bool *exists);

/* elastic_scan.c: buffered writes by document id (read-your-writes) */

extern ElasticOverlay *ElasticOverlayCreate(MemoryContext cxt);
extern bool ElasticOverlayAdd(ElasticOverlay *ov, ElasticWrite *w);
extern bool ElasticOverlayLive(ElasticOverlay *ov, const char *id);
extern bool ElasticOverlayDeleted(ElasticOverlay *ov, const char *id,
								  const char *index, const char *routing);
extern void ElasticNoteWrite(Oid relid);
extern bool ElasticHasPendingWrites(Oid relid);

#endif							/* PGPOLY_ELASTIC_H */
