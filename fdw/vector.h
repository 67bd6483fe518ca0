/*-------------------------------------------------------------------------
 *
 * vector.h
 *		  Internal API shared by the pgpoly_vector source files.
 *
 * vector_fdw.c		FDW handler, planning (quals -> where, k-NN pushdown
 *					through UPPERREL_FINAL), scan/modify callbacks, EXPLAIN,
 *					IMPORT FOREIGN SCHEMA
 * vector_table.c	options, validator, column roles of a table
 * vector_chroma.c	the Chroma REST API: connection, collections, request
 *					bodies, response parsing, flushing buffered writes
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
 *	  conditions whose Chroma semantics match SQL's are translated.
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
	VDIST_COSINE,				/* <=> 1 - cos */
	VDIST_IP					/* <#> -dot (Chroma: 1 - dot) */
} VectorDistance;

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
	FmgrInfo	infn;
	Oid			ioparam;
} VectorColumn;

/* A vector foreign table resolved from the catalogs (no network). */
typedef struct VectorTable
{
	Oid			relid;
	char	   *relname;
	char	   *collection;
	int			batch_size;
	int			fetch_size;
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
} VectorTable;

/* A collection as the service describes it; cached per connection. */
typedef struct VectorCollection
{
	char	   *name;
	char	   *uuid;
	VectorDistance distance;
	int			dimension;		/* 0: unknown (empty collection) */
} VectorCollection;

/* One record. */
typedef struct VectorRow
{
	char	   *id;
	float4	   *emb;			/* NULL when not fetched */
	int			dim;
	char	   *document;		/* NULL: none */
	char	   *metadata;		/* JSON object text, NULL: none */
	bool		has_distance;
	double		distance;		/* in the operator's metric */
} VectorRow;

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
	VW_DELETE
} VectorWriteKind;

/* A buffered write (PgpolyWriteContext) or an immediate-mode one. */
typedef struct VectorWrite
{
	VectorWriteKind kind;
	VectorTable *tbl;
	VectorRow	row;			/* the record as reads should see it */
	char	   *send_metadata;	/* JSON sent (UPDATE: removed keys null) */
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
extern bool VectorIsVectorTable(Oid relid);

/* vector_chroma.c */
extern const PgpolyStore VectorStore;
extern PgpolyConnection *VectorGetConnection(VectorTable *tbl);
extern VectorCollection *VectorLookupCollection(PgpolyConnection *conn,
												VectorTable *tbl,
												bool missing_ok);
extern void VectorForgetCollection(PgpolyConnection *conn, VectorTable *tbl);
struct json_t;
extern void VectorAppendJson(StringInfo buf, struct json_t *v);
extern List *VectorGetByIds(PgpolyConnection *conn, VectorTable *tbl,
							VectorCollection *coll, List *ids,
							const char *where, int include);
extern List *VectorGetPage(PgpolyConnection *conn, VectorTable *tbl,
						   VectorCollection *coll, const char *where,
						   int offset, int limit, int include);
extern List *VectorQuery(PgpolyConnection *conn, VectorTable *tbl,
						 VectorCollection *coll, const float4 *q, int dim,
						 int k, const char *where, List *ids, int include);
extern void VectorSendWrites(PgpolyConnection *conn, List *writes);
extern void VectorFlushWrites(PgpolyConnection *conn, List *writes);
extern List *VectorListCollections(PgpolyConnection *conn,
								   ForeignServer *server);
extern char *VectorQueryText(VectorTable *tbl, const char *where, int k,
							 int include, bool ids);

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
	float4	   *query;			/* k-NN: the query vector, or NULL */
	int			dim;
	VectorDistance metric;		/* k-NN: the operator's metric */
	int			k;
	int			include;
} VectorScanSpec;

/* A pushed condition with its value evaluated, for local checks. */
typedef struct VectorCondEval
{
	char	   *key;
	VectorCondOp op;
	char	   *value;			/* JSON text of the value (array for IN) */
} VectorCondEval;

extern VectorScan *VectorScanBegin(VectorTable *tbl, PgpolyConnection *conn,
								   VectorScanSpec *spec);
extern VectorRow *VectorScanNext(VectorScan *scan);
extern bool VectorScanWasLocal(VectorScan *scan);
extern int	VectorScanRequests(VectorScan *scan);
extern void VectorRowToValues(VectorTable *tbl, VectorRow *row,
							  Datum *values, bool *nulls);
extern char *VectorCondJson(VectorCondEval *c);
extern char *VectorWhereJson(List *conds);

#endif							/* PGPOLY_VECTOR_H */
