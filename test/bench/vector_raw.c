/*
 * vector_raw.c -- the C floor of the vector k-NN benchmark
 * (test/bench/bench_vector.sh).
 *
 * Not part of pgpoly: the least a C application does to send a Chroma k-NN
 * query itself, so that the benchmark compares the wrapper with a client
 * that is not slower than any client could be.  It sends the same request
 * as the wrapper (the /query body of the same vector, k and include, with
 * the wrapper's headers in its order: no "Expect: 100-continue" round trip;
 * bench_vector.sh checks that the bytes are the same) with libcurl
 * over one keep-alive connection, reads the whole response, parses it with
 * jansson and checks that it holds K ids and K distances, so an empty or
 * wrong answer cannot be timed as a fast one.  The body is built once, not
 * per query (the wrapper builds it from the vector each time): the same
 * bytes every time, the floor of "the same HTTP request sent directly".
 *
 * Usage: vector_raw BASE COLLECTION QFILE K N
 *   BASE        Chroma's URL (http://host:port)
 *   COLLECTION  collection name (its id is looked up once)
 *   QFILE       the query vector as "{x1,x2,...}"
 *   K, N        neighbours per query; timed queries (after 5 warm-up ones)
 * Prints the mean latency of the N queries in ms, then on a second line
 * "cpu MS": this client's CPU milliseconds per query, and on a third
 * "median MS": the median latency of one query.
 *
 * Build: gcc -O2 -o vector_raw vector_raw.c -lcurl -ljansson
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#define PATH "/api/v2/tenants/default_tenant/databases/default_database/collections"

/* A growing buffer for response bodies. */
typedef struct Buf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} Buf;

static CURL *curl;
static struct curl_slist *headers;

static double
clock_ms(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void
die(const char *what, const char *detail)
{
	fprintf(stderr, "vector_raw: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
	exit(1);
}

/* libcurl write callback: append to the Buf. */
static size_t
collect(char *ptr, size_t size, size_t nmemb, void *arg)
{
	Buf		   *b = arg;
	size_t		n = size * nmemb;

	if (b->len + n + 1 > b->cap)
	{
		b->cap = (b->len + n + 1) * 2;
		if ((b->data = realloc(b->data, b->cap)) == NULL)
			die("out of memory", NULL);
	}
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return n;
}

/* One request on the shared handle; the parsed JSON response. */
static json_t *
call(const char *url, const char *body, Buf *resp)
{
	long		status = 0;
	json_error_t err;
	json_t	   *doc;

	resp->len = 0;
	curl_easy_setopt(curl, CURLOPT_URL, url);
	if (body)
	{
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long) strlen(body));
	}
	else
		curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
	if (curl_easy_perform(curl) != CURLE_OK)
		die("request failed", url);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200)
		die("unexpected HTTP status", resp->data);
	if ((doc = json_loadb(resp->data, resp->len, 0, &err)) == NULL)
		die("bad JSON", err.text);
	return doc;
}

/* The query vector of qfile ("{x1,x2,...}"); sets *dim. */
static float *
read_vector(const char *qfile, int *dim)
{
	FILE	   *f = fopen(qfile, "r");
	static char text[1 << 16];
	float	   *v = malloc(sizeof(float) * 4096);
	char	   *p;
	int			n = 0;

	if (f == NULL || fgets(text, sizeof(text), f) == NULL || v == NULL)
		die("cannot read", qfile);
	fclose(f);
	for (p = strchr(text, '{'); p && *p && *p != '}' && n < 4096; n++)
	{
		char	   *end;

		v[n] = strtof(p + 1, &end);
		if (end == p + 1)
			break;
		p = end;
	}
	*dim = n;
	return v;
}

/*
 * Append v to buf at len in the fewest significant digits that read back
 * as v (the wrapper's shortest round-trip form, so both send the same
 * bytes); returns the new length.
 */
static size_t
append_float(char *buf, size_t size, size_t len, float v)
{
	int			n = 0;

	for (int prec = 1; prec <= 9; prec++)
	{
		n = snprintf(buf + len, size - len, "%.*g", prec, v);
		if (strtof(buf + len, NULL) == v)
			break;
	}
	return len + n;
}

/* The /query body for q, as the wrapper sends it. */
static void
query_body(char *buf, size_t size, const float *q, int dim, int k)
{
	size_t		len = snprintf(buf, size, "{\"query_embeddings\":[[");

	for (int i = 0; i < dim; i++)
	{
		if (i > 0)
			buf[len++] = ',';
		len = append_float(buf, size, len, q[i]);
	}
	snprintf(buf + len, size - len, "]],\"n_results\":%d,\"include\":[\"distances\"]}", k);
	if (getenv("VECTOR_RAW_PRINT_BODY"))
		fprintf(stderr, "%s\n", buf);
}

/* One k-NN query with body: send, parse, check. */
static void
query(const char *url, const char *body, int k, Buf *resp)
{
	json_t	   *doc;
	json_t	   *ids;
	json_t	   *dists;

	doc = call(url, body, resp);
	ids = json_array_get(json_object_get(doc, "ids"), 0);
	dists = json_array_get(json_object_get(doc, "distances"), 0);
	if ((int) json_array_size(ids) != k || (int) json_array_size(dists) != k)
		die("the response does not hold k ids and distances", resp->data);
	for (size_t i = 0; i < (size_t) k; i++)
		if (!json_is_string(json_array_get(ids, i)) || !json_is_number(json_array_get(dists, i)))
			die("bad id or distance", resp->data);
	json_decref(doc);
}

/* qsort comparator of doubles, ascending. */
static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
	Buf			resp = {NULL, 0, 0};
	static char body[1 << 17];
	char		url[4096];
	json_t	   *coll;
	float	   *q;
	int			dim;
	int			k;
	int			n;
	double		t0;
	double		c0;
	double	   *lat;

	if (argc != 6)
		die("usage: vector_raw BASE COLLECTION QFILE K N", NULL);
	k = atoi(argv[4]);
	n = atoi(argv[5]);
	q = read_vector(argv[3], &dim);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	curl = curl_easy_init();
	/*
	 * the wrapper's headers in its order (src/http.c: its JSON list is the
	 * common one plus the Content-Type), so that the bytes sent are the
	 * same; no Expect: 100-continue round trip
	 */
	headers = curl_slist_append(NULL, "Accept: application/json");
	headers = curl_slist_append(headers, "Expect:");
	headers = curl_slist_append(headers, "Content-Type: application/json");
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &resp);
	curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
	/* the wrapper asks for any encoding libcurl decodes (Chroma sends none) */
	curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, "");

	snprintf(url, sizeof(url), "%s%s/%s", argv[1], PATH, argv[2]);
	coll = call(url, NULL, &resp);
	if (!json_is_string(json_object_get(coll, "id")))
		die("no such collection", argv[2]);
	snprintf(url, sizeof(url), "%s%s/%s/query", argv[1], PATH,
			 json_string_value(json_object_get(coll, "id")));
	json_decref(coll);

	query_body(body, sizeof(body), q, dim, k);
	for (int i = 0; i < 5; i++)
		query(url, body, k, &resp);
	if ((lat = malloc(sizeof(double) * (n > 0 ? n : 1))) == NULL)
		die("out of memory", NULL);
	t0 = clock_ms(CLOCK_MONOTONIC);
	c0 = clock_ms(CLOCK_PROCESS_CPUTIME_ID);
	for (int i = 0; i < n; i++)
	{
		double		q0 = clock_ms(CLOCK_MONOTONIC);

		query(url, body, k, &resp);
		lat[i] = clock_ms(CLOCK_MONOTONIC) - q0;
	}
	printf("%.3f\n", (clock_ms(CLOCK_MONOTONIC) - t0) / n);
	printf("cpu %.3f\n", (clock_ms(CLOCK_PROCESS_CPUTIME_ID) - c0) / n);
	qsort(lat, n, sizeof(double), cmp_double);
	printf("median %.3f\n", n > 0 ? (n % 2 ? lat[n / 2] : (lat[n / 2 - 1] + lat[n / 2]) / 2) : 0);
	free(lat);
	curl_slist_free_all(headers);
	curl_easy_cleanup(curl);
	curl_global_cleanup();
	return 0;
}
