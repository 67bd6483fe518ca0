/*-------------------------------------------------------------------------
 *
 * vector.h
 *		  Internal API shared by the pgpoly_vector source files.
 *
 * vector_fdw.c		FDW handler, planning (quals -> where, k-NN pushdown
 *					through UPPERREL_FINAL), scan/modify callbacks, EXPLAIN,
 *					IMPORT FOREIGN SCHEMA
 * vector_table.c	options, validator, column roles of a table
 * vector_service.c	the provider-agnostic side of the service: connection,
 *					collection cache, errors, dispatch to the provider,
 *					batching and flushing buffered writes
 * vector_chroma.c	provider 'chroma': Chroma's REST API (v2)
 * vector_qdrant.c	provider 'qdrant': Qdrant's REST API
 * vector_scan.c	scan execution: remote rows, read-your-writes overlay,
 *					local k-NN, rows to tuples
 * vector_ops.c		distance operators on float4[], pgpoly.vector_search()
 *
 * Invariants:
 *	- Every write sent to the service carries an embedding of the table's
 *	  dimension (Chroma corrupts a collection written without one).
 *	- Distances handed to SQL are in the operator's metric (Euclidean,
 *	  1 - cosine, -dot), whatever the service reports.
 *	- A pushed-down filter never admits a row the SQL quals reject: only
 *	  conditions whose service semantics match SQL's are translated.
 *	- Planning, scans and writes (vector_fdw.c, vector_scan.c) never know
 *	  which service they talk to: everything that differs between services
 *	  is behind a VectorProvider.
 *
 * fdw/vector.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGPOLY_VECTOR_H
#define PGPOLY_VECTOR_H

#include "pgpoly.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

/* Distance of a collection, and the metric of an operator. */
typedef enum VectorDistance
{
	VDIST_UNKNOWN = 0,
	VDIST_L2,					/* <-> Euclidean (Chroma: squared) */
	VDIST_COSINE,				/* <=> 1 - cos (Qdrant: cos) */
	VDIST_IP					/* <#> -dot (Chroma: 1 - dot, Qdrant: dot) */
} VectorDistance;

struct VectorProvider;

typedef enum VectorColRole
{
	VCOL_NONE,					/* dropped column */
	VCOL_ID,
	VCOL_EMBEDDING,
	VCOL_DOCUMENT,
	VCOL_METADATA,				/* the whole metadata object (jsonb) */
	VCOL_FIELD,					/* one metadata key */
	VCOL_DISTANCE				/* _distance */
} VectorColRole;

typedef struct VectorColumn
{
	VectorColRole role;
	char	   *name;
	char	   *field;			/* VCOL_FIELD: metadata key */
	Oid			typid;
	int32		typmod;
	bool		is_array;
	PgpolyConv	conv;			/* text -> datum (convert.c) */
} VectorColumn;

/* A vector foreign table resolved from the catalogs (no network). */
typedef struct VectorTable
{
	Oid			relid;
	char	   *relname;
	char	   *collection;
	int			batch_size;
	int			fetch_size;
	bool		remote_estimate;	/* use_remote_estimate */
	bool		transactional;
	bool		create;			/* create_collection */
	VectorDistance distance;	/* table option, VDIST_UNKNOWN if absent */
	int			natts;
	VectorColumn *cols;			/* by attnum - 1 */
	AttrNumber	id_att;
	AttrNumber	emb_att;
	AttrNumber	doc_att;
	AttrNumber	meta_att;
	AttrNumber	dist_att;
	bool		has_fields;
	ForeignServer *server;
	UserMapping *user;
	const struct VectorProvider *provider;	/* the server's provider */
} VectorTable;

/* A collection as the service describes it; cached per connection. */
typedef struct VectorCollection
{
	char	   *name;
	char	   *uuid;			/* Chroma's id; Qdrant: the name */
	VectorDistance distance;
	int			dimension;		/* 0: unknown (empty collection) */
	LocalTransactionId lxid;	/* the transaction that read it */
} VectorCollection;

/* One record. */
typedef struct VectorRow
{
	char	   *id;
	float4	   *emb;			/* NULL when not fetched */
	int			dim;
	char	   *document;		/* NULL: none */
	bool		document_nul;	/* the service's document held a NUL */
	char	   *metadata;		/* JSON object text, NULL: none */
	/* id, document and metadata are in the database encoding (converted) */
	bool		has_distance;
	double		distance;		/* in the operator's metric */
	bool		distance_overflow;	/* no distance: the service's single
									 * precision overflowed (Chroma: null) */
} VectorRow;

/* Most bytes of one write request (vector_service.c, VectorSendWrites). */
#define VECTOR_MAX_BATCH_BYTES (8 * 1024 * 1024)

/* What a fetch asks the service to include. */
#define VINC_EMBEDDING	0x01
#define VINC_DOCUMENT	0x02
#define VINC_METADATA	0x04
#define VINC_DISTANCE	0x08

/* Kinds of buffered write. */
typedef enum VectorWriteKind
{
	VW_UPSERT,
	VW_UPDATE,
	VW_DELETE,
	VW_INSERT					/* not over an existing record (ON CONFLICT
								 * DO NOTHING) */
} VectorWriteKind;

/* A buffered write (PgpolyWriteContext) or an immediate-mode one. */
typedef struct VectorWrite
{
	VectorWriteKind kind;
	VectorTable *tbl;
	VectorRow	row;			/* the record as reads should see it */
	char	   *send_metadata;	/* JSON sent (UPDATE: removed keys null) */
	bool		must_exist;		/* a delete of the old id of an UPDATE that
								 * changed it: checked like an update's
								 * (check_update_targets) */
	struct VectorWrite *dim_of; /* set by VectorSendWrites: the flush's
								 * first write with an embedding to the same
								 * collection (all have its dimension) */
} VectorWrite;

/* Operators of a pushed filter condition. */
typedef enum VectorCondOp
{
	VCOND_EQ,
	VCOND_LT,
	VCOND_LE,
	VCOND_GT,
	VCOND_GE,
	VCOND_IN
} VectorCondOp;

/* vector_table.c */
extern const PgpolyOption VectorOptions[];
extern VectorTable *VectorLoadTable(Oid relid, Oid userid);
extern VectorDistance VectorParseDistance(const char *s);
extern const char *VectorDistanceName(VectorDistance d);
extern const char *VectorOperatorName(VectorDistance d);
extern VectorDistance VectorOperatorMetric(const char *opname);
extern bool VectorIsVectorType(Oid typid);

/* vector_fdw.c */
extern Datum pgpoly_vector_handler(PG_FUNCTION_ARGS);
extern bool VectorIsVectorTable(Oid relid);
extern List *VectorConflictColumns(Oid relid);

/*
 * A vector service's REST API.  Each provider builds its requests, parses
 * its responses and maps its errors; the rest of pgpoly_vector reaches it
 * only through the Vector* functions of vector_service.c.  Row lists are
 * VectorRow * in the current memory context, distances already in the
 * operator's metric.  "where" is the provider's own filter text (made by
 * filter()), NULL for none.
 */
typedef struct VectorProvider
{
	const char *name;			/* the provider option value */
	const char *label;			/* for messages: "Chroma", "Qdrant" */
	/* compares an integer it holds with a fractional bound truncated */
	bool		truncates_bounds;
	/*
	 * whether it compares every number it holds with the bound sent for a
	 * value v as SQL compares them with v, v the value of an integer or
	 * numeric column's comparison: bound is v as a float8 (for a numeric,
	 * PgpolyFloat8Bound's), integer says v is a 64-bit integer the bound
	 * sent is exactly (an integer's, sent as itself; a numeric's whose
	 * float8 and its shortest text both are v); NULL: every bound.  A
	 * condition with another value is not sent (a k-NN with it is computed
	 * here).
	 */
	bool		(*exact_bound) (double bound, bool integer);
	/*
	 * addresses records by an id a re-created collection does not keep
	 * (Chroma's UUID), and a collection's distance cannot change in place:
	 * a cached description is right until a record route answers 404
	 */
	bool		routes_by_uuid;
	/* HTTP headers (api_key) and the path prefix of every route */
	void		(*configure) (ForeignServer *server, UserMapping *user,
							  List **headers, char **base);
	/* the message of an error response body, or NULL */
	const char *(*error_text) (struct json_t *doc);
	/* tbl's collection (cached by the provider via VectorRememberCollection) */
	VectorCollection *(*lookup) (PgpolyConnection *conn, VectorTable *tbl,
								 bool missing_ok);
	List	   *(*list_collections) (PgpolyConnection *conn);
	char	   *(*filter) (List *conds);	/* VectorCondEval * ANDed */
	List	   *(*get_by_ids) (PgpolyConnection *conn, VectorTable *tbl,
							   VectorCollection *coll, List *ids,
							   const char *where, int include);
	/* *cursor: NULL for the first page; set to the next one, NULL at end */
	List	   *(*get_page) (PgpolyConnection *conn, VectorTable *tbl,
							 VectorCollection *coll, const char *where,
							 char **cursor, int limit, int include);
	List	   *(*query) (PgpolyConnection *conn, VectorTable *tbl,
						  VectorCollection *coll, const float4 *q, int dim,
						  int k, const char *where, List *ids, int include);
	/* ERROR for a write the service cannot take (before buffering); or NULL */
	void		(*check_write) (VectorWrite *w);
	/* send n writes of the same table and kind in one request */
	void		(*send_batch) (PgpolyConnection *conn, VectorWrite **w, int n);
	/* use_remote_estimate: records in the collection (one request) */
	double		(*count) (PgpolyConnection *conn, VectorTable *tbl,
						  VectorCollection *coll);
	/* EXPLAIN: the k-NN request and the scan request */
	char	   *(*query_text) (VectorTable *tbl, const char *where, int k,
							   int include, bool ids);
	char	   *(*scan_text) (VectorTable *tbl, bool by_ids, const char *where,
							  int include);
	/* EXPLAIN: the request a batch of writes of kind sends */
	char	   *(*write_text) (VectorTable *tbl, VectorWriteKind kind);
} VectorProvider;

/* vector_chroma.c, vector_qdrant.c */
extern const VectorProvider VectorChroma;
extern const VectorProvider VectorQdrant;

/* vector_service.c */
struct json_t;
extern const PgpolyStore VectorStore;
extern const VectorProvider *VectorServerProvider(ForeignServer *server);
extern PgpolyConnection *VectorGetConnection(VectorTable *tbl);
extern PgpolyHttp *VectorHttp(PgpolyConnection *conn);
extern const char *VectorBase(PgpolyConnection *conn);
extern struct json_t *VectorCall(PgpolyConnection *conn, const char *method,
								 const char *path, StringInfo body,
								 const char *what, bool notfound_ok);
/* A request the service refused with 400 or 404 (VectorCallRefusable). */
typedef struct VectorRefusal
{
	PgpolyHttpResponse resp;
	const char *method;
	const char *path;
	const char *what;
} VectorRefusal;
extern struct json_t *VectorCallRefusable(PgpolyConnection *conn, const char *method,
										  const char *path, StringInfo body,
										  const char *what, VectorRefusal *refusal);
extern void VectorRefused(PgpolyConnection *conn, VectorRefusal *refusal) pg_attribute_noreturn();
extern void VectorCheckRecreated(VectorTable *tbl, const VectorCollection *c,
								 const VectorCollection *expect, const char *op);
extern void VectorBadResponse(PgpolyConnection *conn, const char *what,
							  const char *expected);
extern void VectorNoCollection(PgpolyConnection *conn, VectorTable *tbl);
extern VectorCollection *VectorCachedCollection(PgpolyConnection *conn,
												const char *name);
extern VectorCollection *VectorRememberCollection(PgpolyConnection *conn,
												  VectorCollection *c);
extern VectorCollection *VectorLookupCollection(PgpolyConnection *conn,
												VectorTable *tbl,
												bool missing_ok);
extern VectorCollection *VectorFreshCollection(PgpolyConnection *conn,
											   VectorTable *tbl,
											   bool missing_ok);
extern double VectorRemoteCount(VectorTable *tbl);
extern void VectorForgetCollection(PgpolyConnection *conn, VectorTable *tbl);
extern char *VectorUrlSegment(const char *s);
extern void VectorAppendJson(StringInfo buf, struct json_t *v);
extern char *VectorRecordId(PgpolyConnection *conn, struct json_t *id);
extern char *VectorCollectionName(PgpolyConnection *conn, struct json_t *name,
								  const char *what);
extern char *VectorDocument(struct json_t *doc, bool *had_nul);
extern void VectorParseEmbedding(PgpolyConnection *conn, VectorRow *row,
								 struct json_t *emb, const char *what);
extern void VectorDocumentNul(VectorRow *row, PgpolyConv *conv) pg_attribute_noreturn();
extern void VectorAppendFloats(StringInfo buf, const float4 *v, int dim);
extern void VectorAppendQueryFloats(StringInfo buf, const float4 *v, int dim);
extern char *VectorWhereJson(VectorTable *tbl, List *conds);
extern List *VectorGetByIds(PgpolyConnection *conn, VectorTable *tbl,
							VectorCollection *coll, List *ids,
							const char *where, int include);
extern List *VectorGetPage(PgpolyConnection *conn, VectorTable *tbl,
						   VectorCollection *coll, const char *where,
						   char **cursor, int limit, int include);
extern List *VectorQuery(PgpolyConnection *conn, VectorTable *tbl,
						 VectorCollection *coll, const float4 *q, int dim,
						 int k, const char *where, List *ids, int include);
extern void VectorCheckWrite(VectorWrite *w);
extern void VectorDimensionError(VectorTable *tbl, const char *id, int got, int want,
								 const char *detail) pg_attribute_noreturn();
extern void VectorCheckFlushDimension(VectorTable *tbl, const VectorCollection *c,
									  const VectorWrite *dim_of, bool recreated);
extern void VectorSendWrites(PgpolyConnection *conn, List *writes);
extern List *VectorListCollections(PgpolyConnection *conn);
extern char *VectorQueryText(VectorTable *tbl, const char *where, int k,
							 int include, bool ids);
extern char *VectorScanText(VectorTable *tbl, bool by_ids, const char *where,
							int include);

/* vector_ops.c */
extern float4 *VectorDatumFloats(Datum value, Oid typid, int *dim);
extern Datum VectorFloatsDatum(const float4 *v, int dim, VectorColumn *col);
extern double VectorLocalDistance(VectorDistance metric, const float4 *a,
								  const float4 *b, int dim);
extern double VectorConvertDistance(VectorDistance d, double chroma);

/* vector_scan.c */
typedef struct VectorScan VectorScan;

typedef struct VectorScanSpec
{
	List	   *ids;			/* char *: fetch these ids; NIL: no id list */
	bool		by_ids;
	bool		empty;			/* a qual can match nothing */
	char	   *where;			/* JSON, or NULL */
	List	   *conds;			/* VectorCondEval, for rows not from the service */
	List	   *local_conds;	/* VectorLocalCond: not sent; k-NN checks
								 * them on every row (computed locally) */
	float4	   *query;			/* k-NN: the query vector, or NULL */
	int			dim;
	VectorDistance metric;		/* k-NN: the operator's metric */
	int			k;
	bool		capped;			/* k-NN with a NULL query vector: any k rows
								 * (every distance is NULL), by a plain scan */
	int			include;
} VectorScanSpec;

/* A pushed condition with its value evaluated, for local checks. */
typedef struct VectorCondEval
{
	char	   *key;
	VectorCondOp op;
	char	   *value;			/* JSON text of the value (array for IN) */
	struct VectorCondEval *or_else; /* also admitted (OR), or NULL */
} VectorCondEval;

/*
 * A comparison not sent to the service, which would select other records
 * than SQL; a k-NN (or capped) scan checks it here on every row, as SQL
 * reads key's value:
 *	- texts (char *, not NIL): its text as SQL's ->> reads it (a string
 *	  match would miss the number or boolean SQL reads as that text) is
 *	  one of them;
 *	- else a number (with specials, also the strings "Infinity",
 *	  "-Infinity" and "NaN", which is how a numeric column writes them)
 *	  that satisfies  number op n  exactly, n the one of numbers (Numeric;
 *	  for VCOND_IN, any one of them), which the service would compare
 *	  rounded (VectorProvider.exact_bound).
 */
typedef struct VectorLocalCond
{
	char	   *key;
	List	   *texts;
	VectorCondOp op;
	List	   *numbers;
	bool		specials;
} VectorLocalCond;

extern bool VectorFilterableKey(const char *key);
extern List *VectorNumericEqConds(List *conds, VectorTable *tbl, char *key, Datum num,
								  bool *empty);
extern bool VectorNumericSentExactly(VectorTable *tbl, Datum num);
extern void VectorRefuseRounded(VectorTable *tbl, const char *key, Datum num,
								bool element) pg_attribute_noreturn();
extern List *VectorNumberConds(List *conds, VectorTable *tbl, char *key,
							   VectorCondOp op, double d, VectorCondEval *specials);
extern VectorScan *VectorScanBegin(VectorTable *tbl, PgpolyConnection *conn,
								   VectorScanSpec *spec, List *pending);
extern struct HTAB *VectorOverlayBuild(List *pending);
extern void VectorOverlayAdd(struct HTAB **overlay, VectorWrite *w);
extern VectorWrite *VectorOverlayLatest(struct HTAB *overlay, const char *id);
extern VectorRow *VectorScanNext(VectorScan *scan);
extern bool VectorScanWasLocal(VectorScan *scan);
extern int	VectorScanRequests(VectorScan *scan);
extern void VectorRowToValues(VectorTable *tbl, VectorRow *row,
							  bool metadata_fetched, const bool *read,
							  Datum *values, bool *nulls);
extern Datum VectorMetadataFieldValue(VectorColumn *col, Datum doc, bool *isnull);

#endif							/* PGPOLY_VECTOR_H */
