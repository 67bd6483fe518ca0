/*-------------------------------------------------------------------------
 *
 * drift.c
 *		  The numeric part of pgpoly.drift(): bin counts and the two-sample
 *		  Kolmogorov-Smirnov statistic of two samples of float8 values.
 *
 * pgpoly.drift() (extension/36_monitoring.sql) gathers each side's non-null
 * values of a numeric column with array_agg() and hands both arrays here;
 * the PSI formula, the categorical bins and the status stay in SQL.  Doing
 * this part in C replaces two sorts by tuplesort plus one binary search per
 * value run as a SQL expression (2M of them for 1M-row sides) with two
 * in-memory sorts of plain doubles and one merge.
 *
 * Invariants:
 *	- Results are exactly those of API.md 6 as the SQL formulation computed
 *	  them: values are ordered as PostgreSQL orders float8 (NaN equal to NaN
 *	  and above everything, -0 equal to 0; float8_cmp_internal); edge k is
 *	  percentile_cont(k / bins) of the reference with percentile_cont's own
 *	  float8 arithmetic (lo + (pos - floor(pos)) * (hi - lo)); bin i counts
 *	  #{v <= e_i} - #{v <= e_(i-1)}, as width_bucket() over the sorted values
 *	  would count them; KS is the largest |i/n_ref - j/n_cur| over every
 *	  distinct value x of either side, i and j the counts <= x.
 *	- The arrays must be one-dimensional without NULLs (SQL filters the
 *	  NULLs; anything else is an error).  Both are copied before sorting: the
 *	  caller's values are never changed.
 *	- Memory: one copy of each array in the caller's memory context, and
 *	  while one is sorted a scratch array of its size (freed after).
 *
 * src/drift.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/float.h"

/*
 * PostgreSQL's float8 order (float8_cmp_internal, which is not inlined):
 * NaN equal to NaN and above everything else.
 */
static inline int
drift_cmp(float8 a, float8 b)
{
	if (unlikely(isnan(a)))
		return isnan(b) ? 0 : 1;
	if (unlikely(isnan(b)))
		return -1;
	return (a > b) - (a < b);
}

/*
 * The sort key of a non-NaN double: its bits as an unsigned integer ordered
 * as the values are (sign bit flipped for positives, every bit for
 * negatives).  -0 and 0 get adjacent keys, and compare equal in drift_cmp.
 */
static inline uint64
drift_key(float8 v)
{
	uint64		u;

	memcpy(&u, &v, sizeof(u));
	return (u & UINT64CONST(0x8000000000000000)) ? ~u : u | UINT64CONST(0x8000000000000000);
}

/* The double of a sort key (drift_key's inverse). */
static inline float8
drift_unkey(uint64 k)
{
	uint64		u = (k & UINT64CONST(0x8000000000000000)) ? k & ~UINT64CONST(0x8000000000000000) : ~k;
	float8		v;

	memcpy(&v, &u, sizeof(v));
	return v;
}

/*
 * Sort v[0..n-1] in drift_cmp's order: the NaNs (whatever their sign) moved
 * to the end, the rest turned into their keys in place and sorted by an LSD
 * radix sort, a byte per pass (passes where every key has the same byte
 * skipped), then turned back.  O(n), one scratch array of n keys.
 */
static void
drift_sort(float8 *v, int n)
{
	uint64	   *a = (uint64 *) v;
	uint64	   *b = palloc(sizeof(uint64) * Max(n, 1));
	uint64	   *scratch = b;
	int			m = 0;

	StaticAssertStmt(sizeof(uint64) == sizeof(float8), "float8 is not 64 bits");
	for (int i = 0; i < n; i++)
		if (!isnan(v[i]))
			a[m++] = drift_key(v[i]);
	for (int shift = 0; shift < 64; shift += 8)
	{
		int			count[257] = {0};
		uint64	   *t;

		CHECK_FOR_INTERRUPTS();
		for (int i = 0; i < m; i++)
			count[((a[i] >> shift) & 0xFF) + 1]++;
		if (m == 0 || count[((a[0] >> shift) & 0xFF) + 1] == m)
			continue;
		for (int d = 0; d < 256; d++)
			count[d + 1] += count[d];
		for (int i = 0; i < m; i++)
			b[count[(a[i] >> shift) & 0xFF]++] = a[i];
		t = a;
		a = b;
		b = t;
	}
	for (int i = 0; i < m; i++)
		v[i] = drift_unkey(a[i]);
	for (int i = m; i < n; i++)
		v[i] = get_float8_nan();
	pfree(scratch);
}

/* A sorted sample. */
typedef struct DriftSample
{
	float8	   *v;
	int			n;
} DriftSample;

/*
 * Copy the values of a float8[] argument (no NULLs) into a palloc'd array
 * and sort it.  what names the argument in the can't-happen error.
 */
static DriftSample
drift_sample(ArrayType *a, const char *what)
{
	DriftSample s;

	if (ARR_ELEMTYPE(a) != FLOAT8OID)
		elog(ERROR, "%s is not a float8 array", what);
	if (ARR_NDIM(a) > 1 || ARR_HASNULL(a))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("argument \"%s\" must be a one-dimensional array without NULLs", what)));
	s.n = ArrayGetNItems(ARR_NDIM(a), ARR_DIMS(a));
	s.v = palloc(sizeof(float8) * Max(s.n, 1));
	if (s.n > 0)
		memcpy(s.v, ARR_DATA_PTR(a), sizeof(float8) * s.n);
	drift_sort(s.v, s.n);
	return s;
}

/* How many values of sorted sample s are <= x (float8 order). */
static int
drift_count_le(const DriftSample *s, float8 x)
{
	int			left = 0;
	int			right = s->n;

	while (left < right)
	{
		int			mid = left + (right - left) / 2;

		if (drift_cmp(x, s->v[mid]) < 0)
			right = mid;
		else
			left = mid + 1;
	}
	return left;
}

/*
 * percentile_cont(pct) of sorted sample s (n > 0), with the arithmetic of
 * PostgreSQL's percentile_cont for float8 (orderedsetaggs.c, float8_lerp):
 * plain C doubles, so an interpolation beyond the float8 range is +-Infinity
 * (or NaN between -Infinity and Infinity), as there, never an overflow ERROR.
 */
static float8
drift_percentile(const DriftSample *s, float8 pct)
{
	float8		pos = pct * (float8) (s->n - 1);
	float8		lo = floor(pos);
	float8		hi = ceil(pos);

	if (lo == hi)
		return s->v[(int) lo];
	return s->v[(int) lo] + ((pos - lo) * (s->v[(int) hi] - s->v[(int) lo]));
}

/*
 * Fill counts[0..bins-1] of sample s over the edges e_1..e_(bins-1):
 * #{v <= e_1}, then differences of the counts <= consecutive edges, the
 * last bin everything above e_(bins-1).
 */
static void
drift_bin_counts(const DriftSample *s, const float8 *edges, int bins, Datum *counts)
{
	int			prev = 0;

	for (int k = 0; k < bins - 1; k++)
	{
		int			le = drift_count_le(s, edges[k]);

		counts[k] = Int64GetDatum((int64) le - prev);
		prev = le;
	}
	counts[bins - 1] = Int64GetDatum((int64) s->n - prev);
}

/*
 * The two-sample KS statistic of sorted samples r and c (both non-empty):
 * a merge visiting each distinct value once, the gap taken after the last
 * of its equal values on both sides.
 */
static float8
drift_ks(const DriftSample *r, const DriftSample *c)
{
	int			i = 0;
	int			j = 0;
	float8		ks = 0;

	while (i < r->n || j < c->n)
	{
		float8		x;
		float8		gap;

		if (j >= c->n || (i < r->n && drift_cmp(r->v[i], c->v[j]) <= 0))
			x = r->v[i];
		else
			x = c->v[j];
		while (i < r->n && drift_cmp(r->v[i], x) == 0)
			i++;
		while (j < c->n && drift_cmp(c->v[j], x) == 0)
			j++;
		gap = fabs((float8) i / r->n - (float8) j / c->n);
		if (gap > ks)
			ks = gap;
	}
	return ks;
}

PG_FUNCTION_INFO_V1(pgpoly_drift_numeric_bins);

/*
 * pgpoly._drift_numeric_bins(ref float8[], cur float8[], bins int,
 *		OUT ref_counts bigint[], OUT cur_counts bigint[], OUT ks float8)
 *
 * The per-bin counts of both samples over the reference's edges, and KS.
 * All three NULL when a sample is empty (drift has nothing to compare).
 */
Datum
pgpoly_drift_numeric_bins(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	DriftSample r;
	DriftSample c;
	int32		bins = PG_GETARG_INT32(2);
	float8	   *edges;
	Datum	   *rc;
	Datum	   *cc;
	Datum		values[3];
	bool		nulls[3] = {true, true, true};

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (bins < 2 || bins > 10000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("bins must be between 2 and 10000 (got %d)", bins)));
	r = drift_sample(PG_GETARG_ARRAYTYPE_P(0), "ref");
	c = drift_sample(PG_GETARG_ARRAYTYPE_P(1), "cur");
	if (r.n > 0 && c.n > 0)
	{
		edges = palloc(sizeof(float8) * (bins - 1));
		for (int k = 1; k < bins; k++)
			edges[k - 1] = drift_percentile(&r, (float8) k / (float8) bins);
		rc = palloc(sizeof(Datum) * bins);
		cc = palloc(sizeof(Datum) * bins);
		drift_bin_counts(&r, edges, bins, rc);
		drift_bin_counts(&c, edges, bins, cc);
		values[0] = PointerGetDatum(construct_array(rc, bins, INT8OID, sizeof(int64),
													FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		values[1] = PointerGetDatum(construct_array(cc, bins, INT8OID, sizeof(int64),
													FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		values[2] = Float8GetDatum(drift_ks(&r, &c));
		nulls[0] = nulls[1] = nulls[2] = false;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}
