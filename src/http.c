/*-------------------------------------------------------------------------
 *
 * http.c
 *		  The HTTP client of the REST stores (Elasticsearch, vector service).
 *
 * One libcurl easy handle per cached connection (so HTTP keep-alive reuses
 * the TCP connection across requests), driven through a multi handle with
 * curl_multi_socket_action(): libcurl tells us, through its socket and
 * timer callbacks, which sockets to watch and for how long; we wait on them
 * with PgpolyWaitSockets(), the same interruptible wait the Redis store
 * uses, so a cancel or statement_timeout stops a request at once.
 *
 * Invariants:
 *	- No libcurl callback ereports or pallocs: they record what happened in
 *	  plain C memory and return; errors are raised after libcurl returns.
 *	- The response body is bounded by pgpoly.max_response_size; a larger
 *	  one aborts the transfer and raises a clear ERROR.
 *	- Requests fail over across the configured base URLs on connection
 *	  failures, and retry 429/502/503 (only those) with jittered backoff
 *	  when the caller allows retries.
 *	- Secrets (passwords, API keys) are set as curl options or headers and
 *	  never appear in a message.
 *
 * src/http.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#if PG_VERSION_NUM >= 150000
#include "common/pg_prng.h"
#endif
#include "utils/memutils.h"

#include "pgpoly.h"

#define MAX_SOCKETS 6

struct PgpolyHttp
{
	CURLM	   *multi;
	CURL	   *easy;
	char	  **urls;			/* base URLs, no trailing slash */
	int			nurls;
	int			current;		/* URL that answered last */
	struct curl_slist *headers; /* fixed headers (auth, accept) */
	char	   *username;
	char	   *password;
	char	   *ca_file;
	bool		verify_tls;

	/* filled by the callbacks during one transfer */
	curl_socket_t socks[MAX_SOCKETS];
	int			sockev[MAX_SOCKETS];
	int			nsocks;
	long		timer_ms;		/* -1: none */
	char	   *body;			/* malloc'd */
	size_t		len;
	size_t		cap;
	bool		too_large;
	bool		oom;
};

/* CURLMOPT_SOCKETFUNCTION: track which sockets to wait on, for what. */
static int
socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	PgpolyHttp *h = userp;
	int			i;

	for (i = 0; i < h->nsocks; i++)
		if (h->socks[i] == s)
			break;
	if (what == CURL_POLL_REMOVE)
	{
		if (i < h->nsocks)
		{
			h->socks[i] = h->socks[h->nsocks - 1];
			h->sockev[i] = h->sockev[h->nsocks - 1];
			h->nsocks--;
		}
		return 0;
	}
	if (i == h->nsocks)
	{
		if (h->nsocks == MAX_SOCKETS)
			return -1;			/* makes libcurl fail the transfer */
		h->nsocks++;
	}
	h->socks[i] = s;
	h->sockev[i] = ((what & CURL_POLL_IN) ? PGPOLY_WAIT_READ : 0) |
		((what & CURL_POLL_OUT) ? PGPOLY_WAIT_WRITE : 0);
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: remember when libcurl wants to be called back. */
static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	((PgpolyHttp *) userp)->timer_ms = timeout_ms;
	return 0;
}

/* CURLOPT_WRITEFUNCTION: append to the body, within the size bound. */
static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userp)
{
	PgpolyHttp *h = userp;
	size_t		n = size * nmemb;

	if (h->len + n > PGPOLY_MAX_RESPONSE_BYTES)
	{
		h->too_large = true;
		return 0;				/* aborts the transfer */
	}
	if (h->len + n + 1 > h->cap)
	{
		size_t		cap = Max(h->cap * 2, h->len + n + 1);
		char	   *nb = realloc(h->body, Max(cap, 8192));

		if (nb == NULL)
		{
			h->oom = true;
			return 0;
		}
		h->body = nb;
		h->cap = Max(cap, 8192);
	}
	memcpy(h->body + h->len, ptr, n);
	h->len += n;
	h->body[h->len] = '\0';
	return n;
}

/* strdup into TopMemoryContext, NULL-safe. */
static char *
top_strdup(const char *s)
{
	return s ? MemoryContextStrdup(TopMemoryContext, s) : NULL;
}

/*
 * Create the client for conn from cfg (copied).  No network I/O happens
 * here; the first request connects.  The result lives until
 * PgpolyHttpClose().
 */
PgpolyHttp *
PgpolyHttpOpen(const PgpolyHttpConfig *cfg)
{
	static bool curl_ready = false;
	PgpolyHttp *h;
	ListCell   *lc;
	int			i = 0;

	if (!curl_ready)
	{
		if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not initialise libcurl")));
		curl_ready = true;
	}
	h = MemoryContextAllocZero(TopMemoryContext, sizeof(PgpolyHttp));
	h->urls = MemoryContextAlloc(TopMemoryContext, sizeof(char *) * list_length(cfg->urls));
	foreach(lc, cfg->urls)
		h->urls[i++] = top_strdup(lfirst(lc));
	h->nurls = i;
	h->username = top_strdup(cfg->username);
	h->password = top_strdup(cfg->password);
	h->ca_file = top_strdup(cfg->ca_file);
	h->verify_tls = cfg->verify_tls;
	h->timer_ms = -1;
	foreach(lc, cfg->headers)
		h->headers = curl_slist_append(h->headers, lfirst(lc));
	h->headers = curl_slist_append(h->headers, "Accept: application/json");
	/* No "Expect: 100-continue" round trip before larger request bodies. */
	h->headers = curl_slist_append(h->headers, "Expect:");
	h->multi = curl_multi_init();
	h->easy = curl_easy_init();
	if (h->multi == NULL || h->easy == NULL || h->headers == NULL)
	{
		PgpolyHttpClose(h);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory creating an HTTP client")));
	}
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	return h;
}

/* Free the client; never ereports. */
void
PgpolyHttpClose(PgpolyHttp *h)
{
	if (h == NULL)
		return;
	if (h->multi && h->easy)
		curl_multi_remove_handle(h->multi, h->easy);
	if (h->easy)
		curl_easy_cleanup(h->easy);
	if (h->multi)
		curl_multi_cleanup(h->multi);
	curl_slist_free_all(h->headers);
	free(h->body);
	for (int i = 0; i < h->nurls; i++)
		pfree(h->urls[i]);
	pfree(h->urls);
	if (h->username)
		pfree(h->username);
	if (h->password)
		pfree(h->password);
	if (h->ca_file)
		pfree(h->ca_file);
	pfree(h);
}

/*
 * Split a comma-separated url option into a list of base URLs without
 * surrounding spaces or trailing slashes.
 */
List *
PgpolySplitUrls(const char *urls)
{
	List	   *result = NIL;
	char	   *copy = pstrdup(urls);
	char	   *tok;
	char	   *save = NULL;

	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
	{
		char	   *end;

		while (*tok == ' ')
			tok++;
		end = tok + strlen(tok);
		while (end > tok && (end[-1] == ' ' || end[-1] == '/'))
			*--end = '\0';
		if (*tok)
			result = lappend(result, pstrdup(tok));
	}
	return result;
}

/* The base URL requests go to now (for messages). */
const char *
PgpolyHttpBaseUrl(PgpolyHttp *h)
{
	return h->urls[h->current];
}

/* Set the easy handle up for one request. */
static void
prepare(PgpolyConnection *conn, PgpolyHttp *h, const char *method,
		const char *url, const char *body, size_t len,
		struct curl_slist *headers)
{
	CURL	   *e = h->easy;

	curl_easy_reset(e);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, h);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) conn->connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) conn->timeout_ms);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, h->verify_tls ? 1L : 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, h->verify_tls ? 2L : 0L);
	if (h->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_file);
	if (h->username)
	{
		curl_easy_setopt(e, CURLOPT_USERNAME, h->username);
		curl_easy_setopt(e, CURLOPT_PASSWORD, h->password ? h->password : "");
	}
	if (body)
	{
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);
	}
	else if (strcmp(method, "HEAD") == 0)
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	h->len = 0;
	h->too_large = h->oom = false;
	h->timer_ms = -1;
}

/*
 * Run the transfer prepared on h->easy to completion, waiting through
 * PgpolyWaitSockets().  Returns libcurl's result.
 */
static CURLcode
run_transfer(PgpolyConnection *conn, PgpolyHttp *h, TimestampTz deadline)
{
	int			running = 1;
	CURLMsg    *msg;
	int			left;

	curl_multi_add_handle(h->multi, h->easy);
	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	while (running)
	{
		int			ready[MAX_SOCKETS];
		pgsocket	socks[MAX_SOCKETS];
		int			n = h->nsocks;
		int			rc;

		for (int i = 0; i < n; i++)
			socks[i] = h->socks[i];
		rc = PgpolyWaitSockets(n, socks, h->sockev, deadline, h->timer_ms, ready);
		if (rc < 0)
			return CURLE_OPERATION_TIMEDOUT;
		if (rc == 0)
			curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
		for (int i = 0; i < n && rc > 0; i++)
			if (ready[i])
				curl_multi_socket_action(h->multi, socks[i],
										 ((ready[i] & PGPOLY_WAIT_READ) ? CURL_CSELECT_IN : 0) |
										 ((ready[i] & PGPOLY_WAIT_WRITE) ? CURL_CSELECT_OUT : 0),
										 &running);
	}
	while ((msg = curl_multi_info_read(h->multi, &left)) != NULL)
		if (msg->msg == CURLMSG_DONE)
		{
			CURLcode	res = msg->data.result;

			curl_multi_remove_handle(h->multi, h->easy);
			return res;
		}
	curl_multi_remove_handle(h->multi, h->easy);
	return CURLE_RECV_ERROR;
}

/* Whether a libcurl failure means "try the next URL". */
static bool
is_connect_failure(CURLcode res)
{
	return res == CURLE_COULDNT_CONNECT || res == CURLE_COULDNT_RESOLVE_HOST ||
		res == CURLE_COULDNT_RESOLVE_PROXY;
}

/* ERROR for a transfer that failed below HTTP. */
static void
transfer_error(PgpolyConnection *conn, PgpolyHttp *h, CURLcode res,
			   const char *method, const char *path)
{
	if (h->too_large)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s server \"%s\" at %s sent a response larger than pgpoly.max_response_size (%d kB)",
						conn->store->label, conn->servername, h->urls[h->current],
						pgpoly_max_response_kb),
				 errdetail("Request: %s %s", method, path),
				 errhint("Fetch fewer rows per request (fetch_size), or raise pgpoly.max_response_size.")));
	if (h->oom)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory reading a response from %s server \"%s\"",
						conn->store->label, conn->servername)));
	ereport(ERROR,
			(errcode(is_connect_failure(res) ?
					 ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION :
					 ERRCODE_CONNECTION_FAILURE),
			 errmsg("%s server \"%s\" at %s: %s", conn->store->label, conn->servername,
					h->urls[h->current],
					res == CURLE_OPERATION_TIMEDOUT ? "request timed out" :
					is_connect_failure(res) ? "could not connect" : "request failed"),
			 errdetail("Request: %s %s; libcurl: %s", method, path, curl_easy_strerror(res)),
			 res == CURLE_OPERATION_TIMEDOUT ?
			 errhint("Raise the server option timeout_ms, or check the server's load.") :
			 errhint("Check the server option url and that the service is running.")));
}

/* Sleep before retry attempt (1-based): jittered exponential backoff. */
static void
backoff(int attempt, TimestampTz deadline)
{
	long		base = 50L << Min(attempt - 1, 6);
#if PG_VERSION_NUM >= 150000
	double		r = pg_prng_double(&pg_global_prng_state);
#else
	double		r = (double) random() / ((double) MAX_RANDOM_VALUE + 1);
#endif
	long		ms = base / 2 + (long) (r * base);

	(void) PgpolyWaitSocket(PGINVALID_SOCKET, 0, deadline, ms);
}

/*
 * Send method path (relative to the base URL) with an optional body
 * (JSON unless content_type says otherwise) and return the response in
 * *resp (body palloc'd and NUL-terminated).  Connection failures fail over
 * to the next URL; with retries > 0, 429/502/503 are retried with backoff.
 * Any HTTP status is returned to the caller; failures below HTTP ERROR.
 * The whole exchange is one request on conn (see PgpolyBeginRequest).
 */
void
PgpolyHttpRequest(PgpolyConnection *conn, PgpolyHttp *h, const char *method,
				  const char *path, const char *body, size_t len,
				  const char *content_type, int retries,
				  PgpolyHttpResponse *resp)
{
	TimestampTz deadline = PgpolyDeadline(conn->timeout_ms);
	struct curl_slist *headers = NULL;
	int			attempt = 0;
	int			tried_urls = 0;

	PgpolyBeginRequest(conn);
	for (struct curl_slist *s = h->headers; s; s = s->next)
		headers = curl_slist_append(headers, s->data);
	if (body)
		headers = curl_slist_append(headers, psprintf("Content-Type: %s",
													  content_type ? content_type : "application/json"));
	PG_TRY();
	{
		for (;;)
		{
			char	   *url = psprintf("%s%s", h->urls[h->current], path);
			CURLcode	res;

			prepare(conn, h, method, url, body, len, headers);
			res = run_transfer(conn, h, deadline);
			if (res != CURLE_OK && is_connect_failure(res) && ++tried_urls < h->nurls)
			{
				h->current = (h->current + 1) % h->nurls;
				continue;
			}
			if (res != CURLE_OK)
				transfer_error(conn, h, res, method, path);
			curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &resp->status);
			if ((resp->status == 429 || resp->status == 502 || resp->status == 503) &&
				attempt++ < retries)
			{
				backoff(attempt, deadline);
				continue;
			}
			break;
		}
	}
	PG_CATCH();
	{
		curl_slist_free_all(headers);
		PG_RE_THROW();
	}
	PG_END_TRY();
	curl_slist_free_all(headers);

	resp->len = h->len;
	resp->body = palloc(h->len + 1);
	if (h->len > 0)
		memcpy(resp->body, h->body, h->len);
	resp->body[h->len] = '\0';
	PgpolyEndRequest(conn);
}
