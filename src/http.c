/*-------------------------------------------------------------------------
 *
 * http.c
 *		  The HTTP client of the REST stores (Elasticsearch, vector service).
 *
 * One libcurl easy handle per cached connection (so HTTP keep-alive reuses
 * the TCP connection across requests), driven through a multi handle with
 * curl_multi_socket_action(): libcurl tells us, through its socket and
 * timer callbacks, which sockets to watch and for how long; we wait on them
 * with a PgpolyWaitSet kept per client (src/wait.c, the same interruptible
 * wait the Redis store uses), so a cancel or statement_timeout stops a
 * request at once and a request on a kept-alive connection costs one
 * epoll_wait, not a wait set built and freed.
 *
 * Invariants:
 *	- No libcurl callback ereports or pallocs: they record what happened in
 *	  plain C memory and return; errors are raised after libcurl returns.
 *	- The response body is bounded by pgpoly.max_response_size, and by
 *	  1 GB (it is copied into a palloc'd chunk); a larger one aborts the
 *	  transfer and raises a clear ERROR (54000).
 *	- Requests fail over across the configured base URLs on connection
 *	  failures, and retry 429/502/503 (only those) with jittered backoff
 *	  when the caller allows retries.
 *	- Only http and https: base URLs are checked when a server is created
 *	  or altered and again when a connection opens (PgpolyServerUrls), and
 *	  libcurl is told to speak nothing else.  Redirects are never followed:
 *	  a 3xx answer is an ERROR.
 *	- Under the trust rule (a probe_path), each URL's host name is pinned
 *	  to the address its check reached (pin_checked_address), so every
 *	  later TCP connection for that URL goes where the check went.
 *	- Secrets (passwords, API keys) are set as curl options or headers and
 *	  never appear in a message: base URLs carry no credentials, and text a
 *	  service sent is quoted only through PgpolyHttpExcerpt(), which masks
 *	  them.
 *
 * src/http.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>
#include <sys/socket.h>

#if PG_VERSION_NUM >= 150000
#include "common/pg_prng.h"
#endif
#include "common/base64.h"
#include "common/string.h"
#include "miscadmin.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "pgpoly.h"

#define MAX_SOCKETS 6

/* Bytes of a response quoted in a message at most (PgpolyHttpExcerpt). */
#define EXCERPT_BYTES 200

struct PgpolyHttp
{
	PgpolyHttp *next;			/* in OpenClients */
	PgpolyConnection *conn;		/* the connection it last served */
	char	  **secrets;		/* masked in excerpts */
	int			nsecrets;
	CURLM	   *multi;
	CURL	   *easy;
	char	  **urls;			/* base URLs, no trailing slash */
	int			nurls;
	int			current;		/* URL that answered last */
	struct curl_slist *headers; /* fixed headers (auth, accept) */
	struct curl_slist *json_headers;	/* the same + a JSON Content-Type */
	struct curl_slist *anon_headers;	/* the same without credentials */
	char	   *username;
	char	   *password;
	char	   *ca_file;
	bool		verify_tls;
	char	   *probe_path;		/* PgpolyHttpConfig.probe_path */
	bool	   *proven;			/* per URL: the probe was refused there */
	struct curl_slist **pins;	/* per URL: its host pinned to the address
								 * the probe reached (CURLOPT_RESOLVE) */

	/* filled by the callbacks during one transfer */
	curl_socket_t socks[MAX_SOCKETS];
	int			sockev[MAX_SOCKETS];
	int			nsocks;
	long		timer_ms;		/* -1: none */
	char	   *body;			/* malloc'd */
	size_t		len;
	size_t		cap;
	bool		too_large;		/* over pgpoly.max_response_size ... */
	bool		too_large_alloc;	/* ... or over the 1 GB a palloc'd body
									 * may take */
	bool		oom;

	PgpolyWaitSet *waitset;		/* kept across requests */
	bool		sockets_changed;	/* since the last wait (open_cb, close_cb,
									 * a failed transfer): a socket number
									 * may now name another socket */
};

/* Every open client, so that an excerpt can find its connection's secrets. */
static PgpolyHttp *OpenClients = NULL;

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
	if (h->len + n > MaxAllocSize - 1)
	{
		h->too_large_alloc = true;
		return 0;
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

/*
 * CURLOPT_CLOSESOCKETFUNCTION: close a socket of libcurl's and note it, so
 * that the next wait rebuilds the wait set (a socket opened later can get
 * the same number, which the kept set would not watch).
 */
static int
close_cb(void *clientp, curl_socket_t s)
{
	((PgpolyHttp *) clientp)->sockets_changed = true;
	return close(s);
}

/*
 * CURLOPT_OPENSOCKETFUNCTION: open a connection's socket and note it.  The
 * threaded resolver's socket pair is closed without close_cb, and the
 * connection's socket opened next gets its number: the kept set would
 * modify a registration the kernel dropped with the closed socket.
 */
static curl_socket_t
open_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
	((PgpolyHttp *) clientp)->sockets_changed = true;
	return socket(addr->family, addr->socktype, addr->protocol);
}

/* strdup into TopMemoryContext, NULL-safe. */
static char *
top_strdup(const char *s)
{
	return s ? MemoryContextStrdup(TopMemoryContext, s) : NULL;
}

/* Keep s as a secret of h unless it is empty or kept already. */
static void
keep_secret(PgpolyHttp *h, const char *s)
{
	for (int i = 0; i < h->nsecrets; i++)
		if (strcmp(h->secrets[i], s) == 0)
			return;
	if (s[0] != '\0')
		h->secrets[h->nsecrets++] = top_strdup(s);
}

/*
 * Keep secret s, and the forms a service echoing it in JSON text may give
 * it: JSON-escaped (a quote, a backslash), and with "/" escaped as "\/"
 * too, as some JSON encoders write it (API keys and basic-auth tokens are
 * base64, which has "/").  h->secrets must have room for 3 more.
 */
static void
keep_secret_forms(PgpolyHttp *h, const char *s)
{
	StringInfoData json;
	StringInfoData slashes;

	keep_secret(h, s);
	initStringInfo(&json);
	escape_json(&json, s);
	json.data[json.len - 1] = '\0';	/* without the quotes */
	keep_secret(h, json.data + 1);
	initStringInfo(&slashes);
	for (const char *p = json.data + 1; *p; p++)
		appendStringInfoString(&slashes, *p == '/' ? "\\/" : (char[2]) {*p, 0});
	keep_secret(h, slashes.data);
}

/*
 * Keep, in TopMemoryContext, what an excerpt must mask: cfg's secrets and
 * the basic-auth token libcurl sends (base64 of "username:password"), in
 * the forms keep_secret_forms() lists.
 */
static void
remember_secrets(PgpolyHttp *h, const PgpolyHttpConfig *cfg)
{
	ListCell   *lc;

	h->secrets = MemoryContextAlloc(TopMemoryContext,
									sizeof(char *) * 3 * (list_length(cfg->secrets) + 1));
	foreach(lc, cfg->secrets)
		keep_secret_forms(h, lfirst(lc));
	if (cfg->username)
	{
		char	   *pair = psprintf("%s:%s", cfg->username,
									cfg->password ? cfg->password : "");
		int			len = pg_b64_enc_len(strlen(pair));
		char	   *token = palloc0(len + 1);

		if (pg_b64_encode(pair, strlen(pair), token, len) < 0)
			elog(ERROR, "could not encode the basic-auth token");
		keep_secret_forms(h, token);
	}
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
	h->probe_path = top_strdup(cfg->probe_path);
	h->proven = MemoryContextAllocZero(TopMemoryContext, sizeof(bool) * h->nurls);
	h->pins = MemoryContextAllocZero(TopMemoryContext,
									 sizeof(struct curl_slist *) * h->nurls);
	remember_secrets(h, cfg);
	foreach(lc, cfg->headers)
		h->headers = curl_slist_append(h->headers, lfirst(lc));
	h->headers = curl_slist_append(h->headers, "Accept: application/json");
	/* No "Expect: 100-continue" round trip before larger request bodies. */
	h->headers = curl_slist_append(h->headers, "Expect:");
	h->anon_headers = curl_slist_append(NULL, "Accept: application/json");
	for (struct curl_slist *s = h->headers; s; s = s->next)
		h->json_headers = curl_slist_append(h->json_headers, s->data);
	h->json_headers = curl_slist_append(h->json_headers, "Content-Type: application/json");
	h->waitset = PgpolyWaitSetCreate(TopMemoryContext);
	h->multi = curl_multi_init();
	h->easy = curl_easy_init();
	if (h->multi == NULL || h->easy == NULL || h->headers == NULL ||
		h->anon_headers == NULL || h->json_headers == NULL)
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
	h->next = OpenClients;
	OpenClients = h;
	return h;
}

/* Free the client; never ereports. */
void
PgpolyHttpClose(PgpolyHttp *h)
{
	if (h == NULL)
		return;
	for (PgpolyHttp **p = &OpenClients; *p; p = &(*p)->next)
		if (*p == h)
		{
			*p = h->next;
			break;
		}
	if (h->multi && h->easy)
		curl_multi_remove_handle(h->multi, h->easy);
	if (h->easy)
		curl_easy_cleanup(h->easy);
	if (h->multi)
		curl_multi_cleanup(h->multi);
	curl_slist_free_all(h->headers);
	curl_slist_free_all(h->json_headers);
	curl_slist_free_all(h->anon_headers);
	if (h->waitset)
		PgpolyWaitSetFree(h->waitset);
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
	if (h->probe_path)
		pfree(h->probe_path);
	if (h->proven)
		pfree(h->proven);
	if (h->pins)
	{
		for (int i = 0; i < h->nurls; i++)
			curl_slist_free_all(h->pins[i]);
		pfree(h->pins);
	}
	for (int i = 0; i < h->nsecrets; i++)
		pfree(h->secrets[i]);
	if (h->secrets)
		pfree(h->secrets);
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

/* Why one base URL is refused: the message's tail and the detail. */
typedef struct UrlProblem
{
	const char *what;			/* NULL: the URL is acceptable */
	char	   *detail;
} UrlProblem;

/*
 * The scheme url names ("scheme://..." with scheme in RFC 3986's syntax),
 * or NULL.  Never more: what follows may hold a password.
 */
static char *
url_scheme(const char *url)
{
	size_t		n = 0;

	if (!isalpha((unsigned char) url[0]))
		return NULL;
	while (isalnum((unsigned char) url[n]) || url[n] == '+' || url[n] == '-' ||
		   url[n] == '.')
		n++;
	return strncmp(url + n, "://", 3) == 0 ? pnstrdup(url, n) : NULL;
}

/* Whether libcurl found part in the URL u parsed (e.g. a user name). */
static bool
url_has_part(CURLU *u, CURLUPart part)
{
	char	   *v = NULL;

	if (curl_url_get(u, part, &v, 0) != CURLUE_OK)
		return false;
	curl_free(v);
	return true;
}

/*
 * Check one base URL (the n-th of the option).  It must be http or https
 * and carry no credentials (they belong in the user mapping), query or
 * fragment (request paths are appended to it).  The parts are those
 * libcurl's own parser finds with the flags CURLOPT_URL uses, never a
 * reading of our own: "http:///user:pw@host" has an empty authority to a
 * naive split but a user and password to libcurl.  The problem never
 * quotes the URL, which may hold a password.
 */
static UrlProblem
url_problem(const char *url, int n)
{
	UrlProblem	p = {NULL, NULL};
	char	   *scheme = url_scheme(url);
	CURLU	   *u;
	CURLUcode	rc;

	if (scheme == NULL || (pg_strcasecmp(scheme, "http") != 0 &&
						   pg_strcasecmp(scheme, "https") != 0))
	{
		p.what = "only http and https URLs are allowed";
		p.detail = scheme ? psprintf("URL %d uses the scheme \"%s\".", n, scheme) :
			psprintf("URL %d does not start with http:// or https://.", n);
		return p;
	}
	u = curl_url();
	if (u == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory parsing a URL")));
	rc = curl_url_set(u, CURLUPART_URL, url,
					  CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME);
	if (rc != CURLUE_OK)
	{
		p.what = "not a valid URL";
		p.detail = psprintf("URL %d: %s.", n, curl_url_strerror(rc));
	}
	else if (url_has_part(u, CURLUPART_USER) || url_has_part(u, CURLUPART_PASSWORD) ||
			 url_has_part(u, CURLUPART_OPTIONS))
	{
		p.what = "a URL must not contain credentials";
		p.detail = psprintf("URL %d has a user name or password before its host.", n);
	}
	else if (strpbrk(url, "?#") != NULL)
	{
		p.what = "a base URL must not have a query or fragment";
		p.detail = psprintf("URL %d has one; request paths are appended to it.", n);
	}
	curl_url_cleanup(u);
	return p;
}

/*
 * ERROR unless every comma-separated URL of value (option option) is an
 * http or https base URL without credentials.  servername NULL: checking
 * a CREATE/ALTER; otherwise the catalog row of that server, about to be
 * used (it may predate this check, or have been edited directly).
 */
void
PgpolyCheckUrls(const char *option, const char *value, const char *servername)
{
	List	   *urls = PgpolySplitUrls(value);
	ListCell   *lc;

	if (urls == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("option \"%s\" must name at least one URL", option)));
	foreach(lc, urls)
	{
		UrlProblem	p = url_problem(lfirst(lc), foreach_current_index(lc) + 1);

		if (p.what == NULL)
			continue;
		if (servername)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
					 errmsg("server \"%s\" has an invalid option \"%s\": %s",
							servername, option, p.what),
					 errdetail("%s", p.detail),
					 errhint("Fix it with ALTER SERVER %s OPTIONS (SET %s 'http://host:port'); credentials go in the user mapping.",
							 quote_identifier(servername), option)));
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("invalid value for option \"%s\": %s", option, p.what),
				 errdetail("%s", p.detail),
				 errhint("Use http://host:port or https://host:port; credentials go in the user mapping.")));
	}
}

/*
 * The base URLs of server's option url (dflt when it has none), checked
 * with PgpolyCheckUrls before anything uses them.
 */
List *
PgpolyServerUrls(ForeignServer *server, const char *dflt)
{
	const char *value = PgpolyGetOption(server->options, "url", dflt);

	if (value == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("server \"%s\" has no option \"url\"", server->servername),
				 errhint("ALTER SERVER %s OPTIONS (ADD url 'http://host:port').",
						 quote_identifier(server->servername))));
	PgpolyCheckUrls("url", value, server->servername);
	return PgpolySplitUrls(value);
}

/* The longest secret of h that text (len bytes) starts with: its length. */
static size_t
secret_at(PgpolyHttp *h, const char *text, size_t len)
{
	size_t		best = 0;

	for (int i = 0; h && i < h->nsecrets; i++)
	{
		size_t		n = strlen(h->secrets[i]);

		if (n > best && n <= len && memcmp(text, h->secrets[i], n) == 0)
			best = n;
	}
	return best;
}

/* The open client that last served conn, or NULL (e.g. a Redis one). */
static PgpolyHttp *
client_of(PgpolyConnection *conn)
{
	for (PgpolyHttp *h = OpenClients; h; h = h->next)
		if (h->conn == conn)
			return h;
	return NULL;
}

/*
 * Append the UTF-8 character at s (len bytes at most) to buf in the database
 * encoding (not UTF8) and return its length; 0 (nothing appended) if s
 * holds no valid UTF-8 character the database encoding has.
 */
static int
store_char(StringInfo buf, const char *s, size_t len)
{
	int			n = pg_encoding_verifymbchar(PG_UTF8, s, (int) Min(len, 8));
	size_t		clen;
	const char *conv;

	if (n <= 0)
		return 0;
	clen = n;
	conv = PgpolyStoreToServerOrNull(pnstrdup(s, n), &clen, "a character");
	if (conv == NULL)
		return 0;
	appendBinaryStringInfo(buf, conv, clen);
	return n;
}

/*
 * An excerpt of text (len bytes) a store sent, to quote in a message: at
 * most EXCERPT_BYTES of it ("..." marks a cut), its UTF-8 characters in
 * the database encoding (store_char), control bytes and bytes valid in
 * neither as \xNN, and every secret of conn's HTTP
 * client (PgpolyHttpConfig.secrets, the basic-auth token) as "********":
 * a service that echoes a request header must not put a credential into a
 * message.  palloc'd; conn may be any store's connection.
 */
char *
PgpolyHttpExcerpt(PgpolyConnection *conn, const char *text, size_t len)
{
	PgpolyHttp *h = client_of(conn);
	int			enc = GetDatabaseEncoding();
	StringInfoData buf;
	size_t		i = 0;

	if (text == NULL || len == 0)
		return pstrdup("(empty)");
	initStringInfo(&buf);
	while (i < len && i < EXCERPT_BYTES)
	{
		unsigned char c = (unsigned char) text[i];
		size_t		secret = secret_at(h, text + i, len - i);
		int			n;

		if (secret > 0)
		{
			appendStringInfoString(&buf, "********");
			i += secret;
			continue;
		}
		if (c >= 0x80 && enc != PG_UTF8 && enc != PG_SQL_ASCII &&
			(n = store_char(&buf, text + i, len - i)) > 0)
		{
			i += n;
			continue;
		}
		n = c < 0x80 ? 1 : pg_encoding_verifymbchar(enc, text + i, (int) Min(len - i, 8));
		if ((c < 0x80 && (c < 0x20 || c == 0x7f)) || n <= 0)
		{
			appendStringInfo(&buf, "\\x%02X", c);
			n = 1;
		}
		else
			appendBinaryStringInfo(&buf, text + i, n);
		i += n;
	}
	if (i < len)
		appendStringInfoString(&buf, "...");
	return buf.data;
}

/* The base URL requests go to now (for messages). */
const char *
PgpolyHttpBaseUrl(PgpolyHttp *h)
{
	return h->urls[h->current];
}

/*
 * Whether a request answered with HTTP status is retried (when its caller
 * allows retries): 429, 502 and 503, the overloaded or restarting service.
 */
bool
PgpolyHttpRetried(long status)
{
	return status == 429 || status == 502 || status == 503;
}

/*
 * The SQLSTATE of an HTTP error status, the same for every REST store: the
 * credentials were refused (28000); the service is overloaded or
 * unavailable (429, 502, 503, 504: a connection failure, 08006, which the
 * sync worker retries with backoff); the request body was too large (413:
 * 54000); anything else an FDW error (HV000).
 */
int
PgpolyHttpStatusErrcode(long status)
{
	if (status == 401 || status == 403)
		return ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
	if (status == 429 || status == 502 || status == 503 || status == 504)
		return ERRCODE_CONNECTION_FAILURE;
	if (status == 413)			/* Payload Too Large: a size limit */
		return ERRCODE_PROGRAM_LIMIT_EXCEEDED;
	return ERRCODE_FDW_ERROR;
}

/* Set the easy handle up for one request (anonymous: without basic auth). */
static void
prepare(PgpolyConnection *conn, PgpolyHttp *h, const char *method,
		const char *url, const char *body, size_t len,
		struct curl_slist *headers, bool anonymous)
{
	CURL	   *e = h->easy;

	curl_easy_reset(e);
	/* Defence in depth: the URLs were checked, but never speak file:// ... */
#if LIBCURL_VERSION_NUM >= 0x075500	/* 7.85.0 */
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
	curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_DISALLOW_USERNAME_IN_URL, 1L);
	/* An announced Content-Length above the bound fails before the body. */
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) PGPOLY_MAX_RESPONSE_BYTES);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, h);
	curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_cb);
	curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, h);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_cb);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, h);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) conn->connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) conn->timeout_ms);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, h->verify_tls ? 1L : 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, h->verify_tls ? 2L : 0L);
	if (h->ca_file)
		curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_file);
	if (h->pins[h->current])
		curl_easy_setopt(e, CURLOPT_RESOLVE, h->pins[h->current]);
	if (h->username && !anonymous)
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
	h->too_large = h->too_large_alloc = h->oom = false;
	h->timer_ms = -1;
}

/*
 * Run the transfer prepared on h->easy to completion, waiting on the
 * client's wait set.  Returns libcurl's result.
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
		if (h->sockets_changed)
		{
			PgpolyWaitSetForget(h->waitset);
			h->sockets_changed = false;
		}
		rc = PgpolyWaitSetWait(h->waitset, n, socks, h->sockev, deadline,
							   h->timer_ms, ready);
		if (rc < 0)
		{
			h->sockets_changed = true;
			return CURLE_OPERATION_TIMEDOUT;
		}
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
			/* a failed resolution leaves its closed socket pair in the set */
			if (res != CURLE_OK)
				h->sockets_changed = true;
			return res;
		}
	curl_multi_remove_handle(h->multi, h->easy);
	h->sockets_changed = true;
	return CURLE_RECV_ERROR;
}

/* Whether a libcurl failure means "try the next URL". */
static bool
is_connect_failure(CURLcode res)
{
	return res == CURLE_COULDNT_CONNECT || res == CURLE_COULDNT_RESOLVE_HOST ||
		res == CURLE_COULDNT_RESOLVE_PROXY;
}

/*
 * ERROR for a transfer that failed below HTTP.  One that could not connect
 * sent nothing: a COMMIT's flush failing there is settled (flush_settled),
 * not in doubt.
 */
static void
transfer_error(PgpolyConnection *conn, PgpolyHttp *h, CURLcode res,
			   const char *method, const char *path)
{
	if (is_connect_failure(res))
		conn->flush_settled = true;
	if (h->too_large || res == CURLE_FILESIZE_EXCEEDED)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s server \"%s\" at %s sent a response larger than pgpoly.max_response_size (%d kB)",
						conn->store->label, conn->servername, h->urls[h->current],
						pgpoly_max_response_kb),
				 errdetail("Request: %s %s", method, path),
				 errhint("Fetch fewer rows per request (fetch_size), or raise pgpoly.max_response_size.")));
	if (h->too_large_alloc)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s server \"%s\" at %s sent a response larger than 1 GB, the most PostgreSQL reads",
						conn->store->label, conn->servername, h->urls[h->current]),
				 errdetail("Request: %s %s", method, path),
				 errhint("Fetch fewer rows per request (fetch_size).")));
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

/*
 * ERROR for a redirect (3xx).  Redirects are never followed: the target is
 * the server option url, nothing a service says.  The Location is not
 * quoted: it may be any URL, credentials included.
 */
static void
redirect_error(PgpolyConnection *conn, PgpolyHttp *h, long status,
			   const char *method, const char *path)
{
	ereport(ERROR,
			(errcode(ERRCODE_FDW_ERROR),
			 errmsg("%s server \"%s\" at %s answered %ld, a redirect, which pgpoly does not follow",
					conn->store->label, conn->servername, h->urls[h->current], status),
			 errdetail("Request: %s %s", method, path),
			 errhint("Set the server option url to the address that serves the requests.")));
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
 * The trust rule's check of a URL (PgpolyHttpConfig.probe_path): the
 * service answered status to GET probe_path sent without any credential.
 * Only a refusal (401 or 403) shows that it asks for the user mapping's
 * credential; anything else raises, never quoting what it answered: the
 * service may be anything the database server can reach.
 */
static void
check_refused(PgpolyConnection *conn, PgpolyHttp *h, long status)
{
	if (status != 401 && status != 403)
	{
		snprintf(conn->target, sizeof(conn->target), "%s", h->urls[h->current]);
		PgpolyCredentialNotRequested(conn,
									 psprintf("HTTP %ld to GET %s without credentials",
											  status, h->probe_path));
	}
}

/*
 * "host:port:address" pinning the host of base URL url to address (as
 * CURLINFO_PRIMARY_IP gives it), palloc'd; NULL when the URL cannot be
 * read, or names its host by an IPv6 address (*literal set: nothing to
 * resolve; an IPv4 one gets a harmless entry).
 */
static char *
pin_entry(const char *url, const char *address, bool *literal)
{
	CURLU	   *u = curl_url();
	char	   *host = NULL;
	char	   *port = NULL;
	char	   *entry = NULL;
	unsigned int flags = 0;

#ifdef CURLU_PUNYCODE
	flags |= CURLU_PUNYCODE;	/* the name libcurl resolves */
#endif
	*literal = false;
	if (u != NULL &&
		curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_HOST, &host, flags) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK)
	{
		*literal = host[0] == '[';
		if (!*literal && address[0] != '\0')
			entry = psprintf(strchr(address, ':') ? "%s:%s:[%s]" : "%s:%s:%s",
							 host, port, address);
	}
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return entry;
}

/*
 * After the trust rule's check of URL h->current passed, pin its host name
 * to the address the check reached: every later connection to that URL
 * (keep-alive lost, the DNS cache expired) goes there, whatever the name
 * resolves to then (DNS rebinding: the check answered by one server, the
 * requests sent to another that asks for no credential).  The entry is
 * permanent in the multi handle's DNS cache and set again by prepare();
 * it lives as long as the client, which a new server or URL replaces.
 * Raises rather than go on unpinned.
 */
static void
pin_checked_address(PgpolyConnection *conn, PgpolyHttp *h)
{
	char	   *address = NULL;
	char	   *entry;
	bool		literal;

	curl_easy_getinfo(h->easy, CURLINFO_PRIMARY_IP, &address);
	entry = pin_entry(h->urls[h->current], address ? address : "", &literal);
	if (entry == NULL && literal)
		return;
	if (entry == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("%s server \"%s\" at %s: could not pin the address its check reached",
						conn->store->label, conn->servername, h->urls[h->current])));
	curl_slist_free_all(h->pins[h->current]);
	h->pins[h->current] = curl_slist_append(NULL, entry);
	pfree(entry);
	if (h->pins[h->current] == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory creating an HTTP client")));
}

/* PgpolyHttpRequest of path and body already UTF-8. */
static void
http_request(PgpolyConnection *conn, PgpolyHttp *h, const char *method,
			 const char *path, const char *body, size_t len,
			 const char *content_type, int retries,
			 PgpolyHttpResponse *resp)
{
	TimestampTz deadline = PgpolyDeadline(conn->timeout_ms);
	struct curl_slist *headers = NULL;	/* made for this request */
	struct curl_slist *send_headers = body ? h->json_headers : h->headers;
	int			attempt = 0;
	int			tried_urls = 0;

	h->conn = conn;
	PgpolyBeginRequest(conn);
	if (body && content_type && strcmp(content_type, "application/json") != 0)
	{
		for (struct curl_slist *s = h->headers; s; s = s->next)
			headers = curl_slist_append(headers, s->data);
		headers = curl_slist_append(headers, psprintf("Content-Type: %s", content_type));
		send_headers = headers;
	}
	PG_TRY();
	{
		for (;;)
		{
			bool		probe = h->probe_path && !h->proven[h->current];
			const char *m = probe ? "GET" : method;
			const char *p = probe ? h->probe_path : path;
			CURLcode	res;

			prepare(conn, h, m, psprintf("%s%s", h->urls[h->current], p),
					probe ? NULL : body, len, probe ? h->anon_headers : send_headers, probe);
			res = run_transfer(conn, h, deadline);
			if (res != CURLE_OK && is_connect_failure(res) && ++tried_urls < h->nurls)
			{
				h->current = (h->current + 1) % h->nurls;
				continue;
			}
			if (res != CURLE_OK)
				transfer_error(conn, h, res, m, p);
			curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &resp->status);
			if (resp->status >= 300 && resp->status <= 399)
				redirect_error(conn, h, resp->status, m, p);
			if (PgpolyHttpRetried(resp->status) && attempt++ < retries)
			{
				backoff(attempt, deadline);
				continue;
			}
			if (!probe)
				break;
			check_refused(conn, h, resp->status);
			/* Proven only once pinned: a failed pin checks again next time. */
			pin_checked_address(conn, h);
			h->proven[h->current] = true;
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

/*
 * A best-effort request that raises nothing (barring out of memory), for
 * cleanup at transaction abort or at backend exit, where PostgreSQL turns
 * any ERROR into a FATAL once proc_exit has begun: send method path with
 * a JSON body, both ASCII (sent as they are), to the current URL once (no
 * credential check, which a URL not checked yet makes this skip; no
 * failover, no retry), answered by deadline.  Interrupts are held
 * meanwhile: a cancel or statement_timeout waits for it.  Returns the HTTP
 * status, or 0 when nothing was sent or answered; the connection is then
 * left in its request (if one was started), which the caller's transaction
 * end closes (PgpolyConnectionsAtXactEnd).
 */
long
PgpolyHttpTryRequest(PgpolyConnection *conn, PgpolyHttp *h, const char *method,
					 const char *path, const char *body, TimestampTz deadline)
{
	long		ms = (long) ((deadline - GetCurrentTimestamp()) / 1000);
	long		status = 0;
	CURLcode	res;

	if (conn->busy || ms <= 0 || (h->probe_path && !h->proven[h->current]) ||
		!pg_is_ascii(path) || !pg_is_ascii(body))
		return 0;
	h->conn = conn;
	conn->busy = true;			/* cleared once answered */
	conn->requests++;
	conn->errors++;
	HOLD_INTERRUPTS();
	prepare(conn, h, method, psprintf("%s%s", h->urls[h->current], path),
			body, strlen(body), h->json_headers, false);
	curl_easy_setopt(h->easy, CURLOPT_CONNECTTIMEOUT_MS, Min(ms, (long) conn->connect_timeout_ms));
	curl_easy_setopt(h->easy, CURLOPT_TIMEOUT_MS, ms);
	res = run_transfer(conn, h, deadline);
	RESUME_INTERRUPTS();
	if (res == CURLE_OK)
	{
		curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &status);
		conn->busy = false;
		conn->errors--;
	}
	return status;
}

/*
 * Send method path (relative to the base URL) with an optional body
 * (JSON unless content_type says otherwise) and return the response in
 * *resp (body palloc'd and NUL-terminated).  Connection failures fail over
 * to the next URL; with retries > 0, 429/502/503 are retried with backoff.
 * Any HTTP status but a redirect (an ERROR: never followed) is returned to
 * the caller; failures below HTTP ERROR.  With a probe_path, the first
 * request to each URL is that check (check_refused), whichever URL a
 * failover reaches, and the requests after it go to the address it
 * reached (pin_checked_address).
 * The whole exchange is one request on conn (see PgpolyBeginRequest).
 * path and body are text in the database encoding, sent as UTF-8
 * (PgpolyServerToStore: converted here once, the one point for every HTTP
 * store; free in a UTF8 database); the response body is the store's UTF-8,
 * as sent.
 */
void
PgpolyHttpRequest(PgpolyConnection *conn, PgpolyHttp *h, const char *method,
				  const char *path, const char *body, size_t len,
				  const char *content_type, int retries,
				  PgpolyHttpResponse *resp)
{
	if (body)
		body = PgpolyServerToStore(body, &len, true);
	http_request(conn, h, method, PgpolyServerToStoreCstr(path, true), body, len,
				 content_type, retries, resp);
}
