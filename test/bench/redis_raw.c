/*
 * redis_raw.c -- the C floor of the Redis benchmarks (test/bench/bench_redis.sh,
 * bench_features.sh, bench_monitoring.sh).
 *
 * Not part of pgpoly: a minimal blocking hiredis client doing, with nothing
 * around it, the Redis work a pgpoly query has to do, so the benchmarks can
 * report pgpoly's time as a ratio to it.  Every mode pipelines its commands
 * in rounds of BATCH (pgpoly's fetch_size, default 1000: one round trip per
 * round), reads every reply in full and checks it, so a wrong prefix or an
 * empty database cannot be timed as a fast run.
 *
 * Usage: redis_raw HOST PORT DB MODE ARGS...
 *   fetch PREFIX N BATCH REPEAT
 *       HGETALL PREFIX<k> for k = 1..N in the order of the benchmark's
 *       request tables ((i * 7919) % N + 1 for i = 1..N); every key must be
 *       a non-empty hash.  (The batched join's work.)
 *   exists PREFIX FIRST N BATCH REPEAT
 *       EXISTS PREFIX<k> for k = FIRST..FIRST+N-1, one command per key;
 *       prints the keys found on stderr.  (A semi/anti join's work.)
 *   scan PATTERN COUNT TYPE REPEAT
 *       SCAN 0 MATCH PATTERN COUNT COUNT TYPE TYPE until the cursor is 0;
 *       prints the keys returned on stderr (SCAN may repeat a key; they are
 *       not deduplicated).  (count(*), SELECT key, key LIKE 'p%'.)
 *   latency PREFIX NKEYS BATCH MISSING CALLS
 *       CALLS rounds, each HGETALL of BATCH random keys among PREFIX1 ..
 *       PREFIX<NKEYS>, MISSING of them absent keys; prints "p50 p99" in ms.
 *       (The Redis round of get_online_features.)
 *   ingest PREFIX N BATCH FRESH REPEAT
 *       The Redis work of ingest_features over N entities: HGET PREFIX<k>
 *       _event_time for k = 1..N in pipelined rounds of BATCH (newer-wins
 *       reads the event time Redis holds), then MULTI, one HSET PREFIX<k>
 *       clicks C ctr R country S _event_time T per key with the value forms
 *       pgpoly writes (int, float8 with 17 significant digits, text, ISO
 *       timestamptz in UTC: the serving table of bench_monitoring.sh), and
 *       EXEC, sent in one exchange as pgpoly sends its COMMIT.  FRESH 1:
 *       the N keys are deleted before each run (not timed) and every HGET
 *       must answer nil, every HSET 4 new fields; FRESH 0: every key must
 *       hold _event_time and every HSET answers 0.  Prints the runs' ms and
 *       "cpu CLIENT REDIS" as fetch does (the untimed DEL excluded).
 *   cpumon
 *       For each line read on stdin, print on one line (flushed) the CPU
 *       milliseconds the Redis server has used so far (INFO cpu), asked on
 *       this one connection kept open: a new connection per reading (as
 *       redis-cli would make) costs Redis ~300 µs that lands on the queries
 *       measured next to it (bench_redis.sh's per-session CPU).
 * fetch, exists and scan run once to warm up, then REPEAT timed runs, and
 * print each run's milliseconds on one line ("12.345 11.987 ..."), then on a
 * second line "cpu CLIENT REDIS": the CPU milliseconds per timed run of this
 * client and of the Redis server (INFO cpu), which unlike elapsed times
 * hardly depend on the load of the machine.
 * DB is the Redis database number (SELECT DB first when not 0).
 *
 * Build: gcc -O2 -o redis_raw redis_raw.c -lhiredis
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

static redisContext *conn;

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void
die(const char *what)
{
	fprintf(stderr, "redis_raw: %s: %s\n", what, conn && conn->err ? conn->errstr : "");
	exit(1);
}

/* Append one command: argv[0] then PREFIX<k> (binary-safe, explicit lengths). */
static void
append_key_cmd(const char *cmd, const char *prefix, long k)
{
	char		key[512];
	const char *argv[2] = {cmd, key};
	size_t		lens[2] = {strlen(cmd), 0};

	lens[1] = snprintf(key, sizeof(key), "%s%ld", prefix, k);
	if (redisAppendCommandArgv(conn, 2, argv, lens) != REDIS_OK)
		die("append");
}

static redisReply *
get_reply(void)
{
	redisReply *r;

	if (redisGetReply(conn, (void **) &r) != REDIS_OK)
		die("reply");
	if (r->type == REDIS_REPLY_ERROR)
	{
		fprintf(stderr, "redis_raw: error reply: %s\n", r->str);
		exit(1);
	}
	return r;
}

/* fetch: HGETALL of the N keys, request-table order; returns fields read. */
static long
run_fetch(const char *prefix, long n, long batch)
{
	long		fields = 0;

	for (long first = 1; first <= n; first += batch)
	{
		long		last = first + batch - 1 < n ? first + batch - 1 : n;

		for (long i = first; i <= last; i++)
			append_key_cmd("HGETALL", prefix, (i * 7919) % n + 1);
		for (long i = first; i <= last; i++)
		{
			redisReply *r = get_reply();

			if (r->type != REDIS_REPLY_ARRAY || r->elements == 0)
			{
				fprintf(stderr, "redis_raw: key %s%ld is not a non-empty hash\n",
						prefix, (i * 7919) % n + 1);
				exit(1);
			}
			fields += r->elements / 2;
			freeReplyObject(r);
		}
	}
	return fields;
}

/* exists: one EXISTS per key; returns the keys that exist. */
static long
run_exists(const char *prefix, long firstkey, long n, long batch)
{
	long		found = 0;

	for (long first = 0; first < n; first += batch)
	{
		long		last = first + batch < n ? first + batch : n;

		for (long i = first; i < last; i++)
			append_key_cmd("EXISTS", prefix, firstkey + i);
		for (long i = first; i < last; i++)
		{
			redisReply *r = get_reply();

			if (r->type != REDIS_REPLY_INTEGER)
				die("EXISTS did not answer an integer");
			found += r->integer;
			freeReplyObject(r);
		}
	}
	return found;
}

/* scan: SCAN MATCH pattern COUNT count TYPE type to the end; returns keys. */
static long
run_scan(const char *pattern, const char *count, const char *type)
{
	char		cursor[64] = "0";
	long		keys = 0;

	do
	{
		const char *argv[8] = {"SCAN", cursor, "MATCH", pattern, "COUNT", count,
		"TYPE", type};
		redisReply *r;

		if (redisAppendCommandArgv(conn, 8, argv, NULL) != REDIS_OK)
			die("append");
		r = get_reply();
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
			r->element[0]->type != REDIS_REPLY_STRING ||
			r->element[0]->len >= sizeof(cursor) ||
			r->element[1]->type != REDIS_REPLY_ARRAY)
			die("malformed SCAN reply");
		memcpy(cursor, r->element[0]->str, r->element[0]->len);
		cursor[r->element[0]->len] = '\0';
		for (size_t i = 0; i < r->element[1]->elements; i++)
			if (r->element[1]->element[i]->type != REDIS_REPLY_STRING)
				die("SCAN returned a non-string key");
		keys += r->element[1]->elements;
		freeReplyObject(r);
	} while (strcmp(cursor, "0") != 0);
	return keys;
}

/* CPU milliseconds this process has used. */
static double
cpu_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* CPU milliseconds the Redis server has used (INFO cpu, main process). */
static double
redis_cpu_ms(void)
{
	redisReply *r = redisCommand(conn, "INFO cpu");
	double		ms = 0;
	const char *p;

	if (r == NULL || r->type != REDIS_REPLY_STRING)
		die("INFO cpu");
	if ((p = strstr(r->str, "used_cpu_sys:")) != NULL)
		ms += atof(p + 13) * 1e3;
	if ((p = strstr(r->str, "used_cpu_user:")) != NULL)
		ms += atof(p + 14) * 1e3;
	freeReplyObject(r);
	return ms;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

/* latency: CALLS rounds of BATCH HGETALL (MISSING absent); prints p50 p99. */
static void
run_latency(const char *prefix, long nkeys, long batch, long missing, int calls)
{
	double	   *ms = malloc(sizeof(double) * calls);
	long		hits = 0;

	srandom(42);
	for (int c = -calls / 10; c < calls; c++)	/* first 10%: warm-up */
	{
		double		t0 = now_ms();

		for (long i = 0; i < batch; i++)
			append_key_cmd("HGETALL", i < missing ? "pgpoly_bench_absent:" : prefix,
						   1 + random() % nkeys);
		for (long i = 0; i < batch; i++)
		{
			redisReply *r = get_reply();

			if (r->type != REDIS_REPLY_ARRAY)
				die("HGETALL did not answer an array");
			hits += r->elements > 0;
			freeReplyObject(r);
		}
		if (c >= 0)
			ms[c] = now_ms() - t0;
	}
	if (hits != (long) (calls + calls / 10) * (batch - missing))
	{
		fprintf(stderr, "redis_raw: %ld hits, expected %ld\n", hits,
				(long) (calls + calls / 10) * (batch - missing));
		exit(1);
	}
	qsort(ms, calls, sizeof(double), cmp_double);
	printf("%.3f %.3f\n", ms[calls / 2], ms[(int) (calls * 0.99)]);
	free(ms);
}

/*
 * ingest: the reads of one ingest_features call (see the file header):
 * HGET _event_time of the N keys in rounds.  held 1: every key must hold
 * it; 0: none may; -1: either.  Returns the number of keys that held it.
 */
static long
run_ingest_reads(const char *prefix, long n, long batch, int held)
{
	long		found = 0;

	for (long first = 1; first <= n; first += batch)
	{
		long		last = first + batch - 1 < n ? first + batch - 1 : n;

		for (long k = first; k <= last; k++)
		{
			char		key[512];
			const char *argv[3] = {"HGET", key, "_event_time"};
			size_t		lens[3] = {4, 0, 11};

			lens[1] = snprintf(key, sizeof(key), "%s%ld", prefix, k);
			if (redisAppendCommandArgv(conn, 3, argv, lens) != REDIS_OK)
				die("append");
		}
		for (long k = first; k <= last; k++)
		{
			redisReply *r = get_reply();

			if ((held == 1 && r->type != REDIS_REPLY_STRING) ||
				(held == 0 && r->type != REDIS_REPLY_NIL) ||
				(r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL))
			{
				fprintf(stderr, "redis_raw: HGET %s%ld _event_time: unexpected reply type %d\n",
						prefix, k, r->type);
				exit(1);
			}
			found += r->type == REDIS_REPLY_STRING;
			freeReplyObject(r);
		}
	}
	return found;
}

/* Append HSET PREFIX<k> with the four fields of the monitoring bench's rows. */
static void
append_ingest_hset(const char *prefix, long k, time_t t0)
{
	char		key[512],
				clicks[16],
				ctr[32],
				ts[48];
	const char *country[3] = {"de", "fr", "us"};
	const char *argv[10] = {"HSET", key, "clicks", clicks, "ctr", ctr,
	"country", country[k % 3], "_event_time", ts};
	size_t		lens[10];
	time_t		t = t0 - k % 1000;
	struct tm	tm;

	snprintf(key, sizeof(key), "%s%ld", prefix, k);
	snprintf(clicks, sizeof(clicks), "%ld", (k * 37) % 101);
	snprintf(ctr, sizeof(ctr), "%.17g", ((k * 7919) % 100003) / 100003.0);
	gmtime_r(&t, &tm);
	snprintf(ts, sizeof(ts), "%04d-%02d-%02d %02d:%02d:%02d.%06ld+00",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
			 tm.tm_min, tm.tm_sec, (k * 7919) % 1000000);
	for (int i = 0; i < 10; i++)
		lens[i] = strlen(argv[i]);
	if (redisAppendCommandArgv(conn, 10, argv, lens) != REDIS_OK)
		die("append");
}

/*
 * MULTI, the N HSETs and EXEC in one exchange; checks every reply (HSET
 * answers the fields it added: 0 where the key was held, 4 where not).
 */
static void
run_ingest_writes(const char *prefix, long n, int held)
{
	time_t		t0 = time(NULL);
	redisReply *r;

	if (redisAppendCommand(conn, "MULTI") != REDIS_OK)
		die("append");
	for (long k = 1; k <= n; k++)
		append_ingest_hset(prefix, k, t0);
	if (redisAppendCommand(conn, "EXEC") != REDIS_OK)
		die("append");
	r = get_reply();
	if (r->type != REDIS_REPLY_STATUS || strcmp(r->str, "OK") != 0)
		die("MULTI did not answer OK");
	freeReplyObject(r);
	for (long k = 1; k <= n; k++)
	{
		r = get_reply();
		if (r->type != REDIS_REPLY_STATUS || strcmp(r->str, "QUEUED") != 0)
			die("a HSET was not QUEUED");
		freeReplyObject(r);
	}
	r = get_reply();
	if (r->type != REDIS_REPLY_ARRAY || r->elements != (size_t) n)
		die("EXEC did not answer an array of N replies");
	for (long k = 0; k < n; k++)
		if (r->element[k]->type != REDIS_REPLY_INTEGER ||
			(held == 1 && r->element[k]->integer != 0) ||
			(held == 0 && r->element[k]->integer != 4))
		{
			fprintf(stderr, "redis_raw: HSET %s%ld did not answer %d\n",
					prefix, k + 1, held ? 0 : 4);
			exit(1);
		}
	freeReplyObject(r);
}

/* DEL the N keys in pipelined rounds of BATCH (before a FRESH run). */
static void
run_ingest_delete(const char *prefix, long n, long batch)
{
	for (long first = 1; first <= n; first += batch)
	{
		long		last = first + batch - 1 < n ? first + batch - 1 : n;

		for (long k = first; k <= last; k++)
			append_key_cmd("DEL", prefix, k);
		for (long k = first; k <= last; k++)
			freeReplyObject(get_reply());
	}
}

/*
 * ingest mode: a warm-up run, then REPEAT timed runs of the reads and the
 * MULTI/EXEC; prints the runs' ms and the CPU per run of this client and
 * Redis, the FRESH deletes outside both.
 */
static void
run_ingest(const char *prefix, long n, long batch, int fresh, int repeat)
{
	double		cpu = 0,
				rcpu = 0;
	long		found = 0;

	for (int r = -1; r < repeat; r++)	/* r = -1: the warm-up run */
	{
		double		t0,
					c0,
					rc0;
		int			held;

		if (fresh)
			run_ingest_delete(prefix, n, batch);
		rc0 = redis_cpu_ms();
		c0 = cpu_ms();
		t0 = now_ms();
		/* held: 1 every key held, 0 none, -1 unknown (FRESH 0's warm-up) */
		held = fresh ? 0 : r < 0 ? -1 : 1;
		found = run_ingest_reads(prefix, n, batch, held);
		run_ingest_writes(prefix, n, held);
		if (r < 0)
			continue;
		printf("%s%.3f", r > 0 ? " " : "", now_ms() - t0);
		cpu += cpu_ms() - c0;
		rcpu += redis_cpu_ms() - rc0;
	}
	printf("\ncpu %.3f %.3f\n", cpu / repeat, rcpu / repeat);
	fprintf(stderr, "%ld\n", found);
}

static void
usage(const char *prog)
{
	fprintf(stderr, "usage: %s HOST PORT DB fetch PREFIX N BATCH REPEAT\n"
			"       %s HOST PORT DB exists PREFIX FIRST N BATCH REPEAT\n"
			"       %s HOST PORT DB scan PATTERN COUNT TYPE REPEAT\n"
			"       %s HOST PORT DB latency PREFIX NKEYS BATCH MISSING CALLS\n"
			"       %s HOST PORT DB ingest PREFIX N BATCH FRESH REPEAT\n"
			"       %s HOST PORT DB cpumon\n",
			prog, prog, prog, prog, prog, prog);
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *mode;
	int			repeat;
	long		result = 0;
	double		cpu0 = 0,
				rcpu0 = 0;

	if (argc < 5)
		usage(argv[0]);
	mode = argv[4];
	conn = redisConnect(argv[1], atoi(argv[2]));
	if (conn == NULL || conn->err)
		die("cannot connect");
	if (strcmp(argv[3], "0") != 0)
	{
		redisReply *r = redisCommand(conn, "SELECT %s", argv[3]);

		if (r == NULL || r->type == REDIS_REPLY_ERROR)
			die("SELECT failed");
		freeReplyObject(r);
	}

	if (strcmp(mode, "latency") == 0)
	{
		if (argc != 10)
			usage(argv[0]);
		run_latency(argv[5], atol(argv[6]), atol(argv[7]), atol(argv[8]), atoi(argv[9]));
		redisFree(conn);
		return 0;
	}
	if (strcmp(mode, "cpumon") == 0)
	{
		char		line[64];

		if (argc != 5)
			usage(argv[0]);
		while (fgets(line, sizeof(line), stdin) != NULL)
		{
			printf("%.3f\n", redis_cpu_ms());
			fflush(stdout);
		}
		redisFree(conn);
		return 0;
	}
	if (strcmp(mode, "ingest") == 0)
	{
		if (argc != 10 || atoi(argv[9]) < 1)
			usage(argv[0]);
		run_ingest(argv[5], atol(argv[6]), atol(argv[7]), atoi(argv[8]) != 0, atoi(argv[9]));
		redisFree(conn);
		return 0;
	}
	if ((strcmp(mode, "fetch") == 0 && argc != 9) ||
		(strcmp(mode, "exists") == 0 && argc != 10) ||
		(strcmp(mode, "scan") == 0 && argc != 9))
		usage(argv[0]);
	repeat = atoi(argv[argc - 1]);
	if (repeat < 1)
		usage(argv[0]);

	for (int r = -1; r < repeat; r++)	/* r = -1: the warm-up run */
	{
		double		t0;

		if (r == 0)
		{
			rcpu0 = redis_cpu_ms();
			cpu0 = cpu_ms();
		}
		t0 = now_ms();

		if (strcmp(mode, "fetch") == 0)
			result = run_fetch(argv[5], atol(argv[6]), atol(argv[7]));
		else if (strcmp(mode, "exists") == 0)
			result = run_exists(argv[5], atol(argv[6]), atol(argv[7]), atol(argv[8]));
		else if (strcmp(mode, "scan") == 0)
			result = run_scan(argv[5], argv[6], argv[7]);
		else
			usage(argv[0]);
		if (r >= 0)
			printf("%s%.3f", r > 0 ? " " : "", now_ms() - t0);
	}
	printf("\ncpu %.3f", (cpu_ms() - cpu0) / repeat);
	printf(" %.3f\n", (redis_cpu_ms() - rcpu0) / repeat);
	fprintf(stderr, "%ld\n", result);
	redisFree(conn);
	return 0;
}
