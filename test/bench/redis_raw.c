/*
 * redis_raw.c -- benchmark baseline for test/bench/bench_redis.sh.
 *
 * Not part of pgpoly: a minimal raw Redis client that does what the
 * pgpoly_redis join has to do, with nothing else around it, so the benchmark
 * can report the FDW's time as a ratio to it.  It fetches the N hashes
 * PREFIX<STEP*1> .. PREFIX<STEP*N> with HGETALL, pipelined in batches of
 * BATCH commands (one round trip per batch, like the FDW's fetch_size),
 * reading every reply in full.  Blocking hiredis is enough for a baseline.
 *
 * Usage: redis_raw HOST PORT PREFIX N [BATCH [REPEAT [STEP]]]
 *        BATCH defaults to 1000, REPEAT to 7, STEP to 1.
 * Prints the median elapsed milliseconds over REPEAT runs (after one warm-up
 * run), e.g. "85.123"; checks that every key exists (a hash with >= 1 field)
 * and exits 1 if not, so a wrong prefix cannot be timed as a fast run.
 *
 * Build: gcc -O2 -o redis_raw redis_raw.c -lhiredis
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

/* One full fetch of the N keys; returns the number of fields read, or -1. */
static long
fetch_all(redisContext *c, const char *prefix, long n, long batch, long step)
{
	long		fields = 0;

	for (long first = 1; first <= n; first += batch)
	{
		long		last = first + batch - 1 < n ? first + batch - 1 : n;

		/* queue the batch ... */
		for (long i = first; i <= last; i++)
			redisAppendCommand(c, "HGETALL %s%ld", prefix, i * step);
		/* ... and read its replies: one round trip per batch */
		for (long i = first; i <= last; i++)
		{
			redisReply *r;

			if (redisGetReply(c, (void **) &r) != REDIS_OK)
			{
				fprintf(stderr, "redis_raw: %s\n", c->errstr);
				return -1;
			}
			if (r->type != REDIS_REPLY_ARRAY || r->elements == 0)
			{
				fprintf(stderr, "redis_raw: key %s%ld is not a non-empty hash\n",
						prefix, i * step);
				freeReplyObject(r);
				return -1;
			}
			fields += r->elements / 2;
			freeReplyObject(r);
		}
	}
	return fields;
}

int
main(int argc, char **argv)
{
	redisContext *c;
	const char *prefix;
	long		n,
				batch = 1000,
				step = 1;
	int			repeat = 7;
	double	   *ms;

	if (argc < 5 || argc > 8)
	{
		fprintf(stderr, "usage: %s HOST PORT PREFIX N [BATCH [REPEAT [STEP]]]\n", argv[0]);
		return 2;
	}
	prefix = argv[3];
	n = atol(argv[4]);
	if (argc > 5)
		batch = atol(argv[5]);
	if (argc > 6)
		repeat = atoi(argv[6]);
	if (argc > 7)
		step = atol(argv[7]);
	if (n < 1 || batch < 1 || repeat < 1 || step < 1)
	{
		fprintf(stderr, "redis_raw: N, BATCH, REPEAT and STEP must be positive\n");
		return 2;
	}

	c = redisConnect(argv[1], atoi(argv[2]));
	if (c == NULL || c->err)
	{
		fprintf(stderr, "redis_raw: cannot connect to %s:%s: %s\n", argv[1], argv[2],
				c ? c->errstr : "out of memory");
		return 1;
	}

	/* warm-up run, also the existence check */
	if (fetch_all(c, prefix, n, batch, step) < 0)
		return 1;

	ms = malloc(sizeof(double) * repeat);
	for (int r = 0; r < repeat; r++)
	{
		double		t0 = now_ms();

		if (fetch_all(c, prefix, n, batch, step) < 0)
			return 1;
		ms[r] = now_ms() - t0;
	}
	qsort(ms, repeat, sizeof(double), cmp_double);
	printf("%.3f\n", ms[repeat / 2]);

	free(ms);
	redisFree(c);
	return 0;
}
