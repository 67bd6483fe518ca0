/*-------------------------------------------------------------------------
 *
 * http_peer.c
 *		  A scripted HTTP/1.1 peer on loopback, in a thread, for fuzzing.
 *
 * The peer plays the REST service (Elasticsearch, Chroma, Qdrant) of the
 * JSON harnesses: it answers each complete request it receives (request
 * line and headers, then Content-Length bytes of body; "Expect:
 * 100-continue" gets its interim answer) with the next reply of the
 * current script, whatever the request, framed as the reply says: with a
 * Content-Length, chunked, up to EOF, or cut short of its announced
 * length.  A request after the last reply gets EOF.  When libcurl opens a
 * new connection (after an EOF), the old one is dropped and the script goes
 * on where it was.
 *
 * A DELETE request (Elasticsearch closing a point in time or a scroll
 * context) is answered 200 {} without taking a reply of the script: an
 * earlier input's aborted scan may have queued such a close, which pgpoly
 * sends before its next request, and it must not shift this input's
 * script.
 *
 * HttpPeerReset() ends the connection with an RST (SO_LINGER 0) from this
 * side, so neither side keeps a TIME_WAIT socket: thousands of connections
 * a second would otherwise run out of ephemeral ports.  The socket, the
 * thread and the reset handshake are peer.c's.
 *
 * Invariants: the thread uses no PostgreSQL API (no palloc, no ereport);
 * the script is only changed while the peer holds no connection.  This file
 * is compiled without coverage instrumentation: its branches are not
 * pgpoly's.
 *
 * test/fuzz/http_peer.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "http_peer.h"
#include "peer.h"

#define MAX_REPLIES 64
#define MAX_SCRIPT (1024 * 1024)
#define MAX_HEADER 16384
#define CHUNK 100

static Peer peer = {"http_peer", -1};

/* The script: replies whose bodies are in script_buf. */
static char script_buf[MAX_SCRIPT];
static HttpPeerReply replies[MAX_REPLIES];
static int nreplies;
static int next_reply;			/* across connections */
static int requests;			/* complete requests received */

/* State of the current connection. */
static int conn_fd = -1;
static char *out_buf;			/* malloc'd, out_cap bytes */
static size_t out_cap;
static size_t out_len;
static size_t out_off;
static int close_after;			/* shut down once out_buf is sent */
static int queued;				/* requests not answered yet */
static unsigned int auto_bits;	/* per queued request, oldest first: DELETE */
static int head_auto;			/* the request being read is a DELETE */
static int shut;				/* our side shut down */
static int conn_dead;			/* the client closed or reset */

/* Streaming parser of requests. */
static char hdr[MAX_HEADER];
static size_t hdr_len;
static size_t body_left;		/* > 0: skipping a request body */

/* Forget the connection (RST when rst). */
static void
drop_conn(int rst)
{
	PeerClose(conn_fd, rst);
	conn_fd = -1;
	out_len = out_off = 0;
	close_after = queued = shut = conn_dead = 0;
	hdr_len = body_left = 0;
	auto_bits = head_auto = 0;
}

/* Append n bytes to the output buffer. */
static void
out_append(const char *s, size_t n)
{
	if (out_len + n > out_cap)
	{
		out_cap = (out_len + n) * 2;
		out_buf = realloc(out_buf, out_cap);
		if (out_buf == NULL)
			PeerFail(&peer, "realloc");
	}
	memcpy(out_buf + out_len, s, n);
	out_len += n;
}

/* The value of header name in the request head h (NUL-terminated), or NULL. */
static const char *
header(const char *h, const char *name)
{
	size_t		n = strlen(name);

	for (const char *p = strstr(h, "\r\n"); p; p = strstr(p + 2, "\r\n"))
		if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':')
		{
			p += 3 + n;
			while (*p == ' ')
				p++;
			return p;
		}
	return NULL;
}

/* A request was read completely: queue its answer. */
static void
request_done(void)
{
	if (queued < 32)
	{
		auto_bits |= (unsigned int) head_auto << queued;
		queued++;
	}
	requests++;
}

/* A complete request head is in hdr: note its body and Expect. */
static void
end_of_head(void)
{
	const char *cl;
	const char *ex;

	hdr[hdr_len] = '\0';
	cl = header(hdr, "Content-Length");
	ex = header(hdr, "Expect");
	body_left = cl ? strtoul(cl, NULL, 10) : 0;
	head_auto = strncmp(hdr, "DELETE ", 7) == 0;
	if (ex && strncasecmp(ex, "100-continue", 12) == 0)
	{
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

		out_append(cont, sizeof(cont) - 1);
	}
	hdr_len = 0;
	if (body_left == 0)
		request_done();
}

/* Feed n received bytes to the request parser. */
static void
parse(const char *buf, size_t n)
{
	size_t		i = 0;

	while (i < n)
	{
		if (body_left > 0)
		{
			size_t		take = body_left < n - i ? body_left : n - i;

			body_left -= take;
			i += take;
			if (body_left == 0)
				request_done();
			continue;
		}
		if (hdr_len < MAX_HEADER - 1)
			hdr[hdr_len++] = buf[i];
		i++;
		if ((hdr_len >= 4 && memcmp(hdr + hdr_len - 4, "\r\n\r\n", 4) == 0) ||
			hdr_len == MAX_HEADER - 1)
			end_of_head();
	}
}

/* Put the next reply into the output buffer. */
static void
queue_reply(const HttpPeerReply *r)
{
	char		head[256];
	int			n;

	switch (r->framing)
	{
		case HTTP_PEER_LENGTH:
		case HTTP_PEER_SHORT:
			n = snprintf(head, sizeof(head),
						 "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
						 "Content-Length: %zu\r\n\r\n", r->status,
						 r->len + (r->framing == HTTP_PEER_SHORT));
			out_append(head, n);
			out_append(r->body, r->len);
			close_after = r->framing == HTTP_PEER_SHORT;
			break;
		case HTTP_PEER_CLOSE:
			n = snprintf(head, sizeof(head),
						 "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
						 "Connection: close\r\n\r\n", r->status);
			out_append(head, n);
			out_append(r->body, r->len);
			close_after = 1;
			break;
		case HTTP_PEER_CHUNKED:
			n = snprintf(head, sizeof(head),
						 "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
						 "Transfer-Encoding: chunked\r\n\r\n", r->status);
			out_append(head, n);
			for (size_t off = 0; off < r->len; off += CHUNK)
			{
				size_t		c = r->len - off < CHUNK ? r->len - off : CHUNK;

				n = snprintf(head, sizeof(head), "%zx\r\n", c);
				out_append(head, n);
				out_append(r->body + off, c);
				out_append("\r\n", 2);
			}
			out_append("0\r\n\r\n", 5);
			break;
	}
}

/* Send what is queued without blocking; EOF after the last reply. */
static void
pump(void)
{
	while (!shut)
	{
		ssize_t		n;

		if (out_off == out_len)
		{
			out_off = out_len = 0;
			if (queued > 0 && (auto_bits & 1))
			{
				static const HttpPeerReply ok = {200, HTTP_PEER_LENGTH, "{}", 2};

				queued--;
				auto_bits >>= 1;
				queue_reply(&ok);
				continue;
			}
			if (close_after || (queued > 0 && next_reply >= nreplies))
			{
				shutdown(conn_fd, SHUT_WR);
				shut = 1;
				return;
			}
			if (queued == 0)
				return;
			queued--;
			auto_bits >>= 1;
			queue_reply(&replies[next_reply++]);
		}
		n = send(conn_fd, out_buf + out_off, out_len - out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0)
		{
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return;
			shut = 1;			/* the client went away */
			return;
		}
		out_off += (size_t) n;
	}
}

/* Accept a connection (dropping the previous one). */
static void
accept_conn(void)
{
	int			fd = accept(peer.listen_fd, NULL, NULL);

	if (fd < 0)
	{
		if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		PeerFail(&peer, "accept");
	}
	drop_conn(1);
	conn_fd = fd;
	fcntl(conn_fd, F_SETFL, fcntl(conn_fd, F_GETFL) | O_NONBLOCK);
}

/* Read what the client sent and answer the requests completed. */
static void
serve_conn(void)
{
	static char buf[65536];
	ssize_t		n = recv(conn_fd, buf, sizeof(buf), MSG_DONTWAIT);

	if (n > 0)
		parse(buf, (size_t) n);
	else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
	{
		conn_dead = 1;			/* keep the fd until the reset */
		return;
	}
	pump();
}

/* The peer's event loop. */
static void *
peer_main(void *arg)
{
	for (;;)
	{
		struct pollfd pfd[3];
		int			npfd = 2;

		pfd[0] = (struct pollfd) {peer.ctl[0], POLLIN, 0};
		pfd[1] = (struct pollfd) {peer.listen_fd, POLLIN, 0};
		if (conn_fd >= 0 && !conn_dead)
			pfd[npfd++] = (struct pollfd) {conn_fd,
				POLLIN | (out_off < out_len && !shut ? POLLOUT : 0), 0};
		if (poll(pfd, npfd, -1) < 0)
		{
			if (errno == EINTR)
				continue;
			PeerFail(&peer, "poll");
		}
		if (pfd[0].revents & POLLIN)
		{
			drop_conn(1);
			PeerAcknowledge(&peer);
			continue;
		}
		if (npfd > 2 && pfd[2].revents)
			serve_conn();
		if (pfd[1].revents & POLLIN)
			accept_conn();
	}
	return NULL;
}

/* Listen on 127.0.0.1:port and start the peer thread (once). */
void
HttpPeerStart(int port)
{
	if (peer.listen_fd < 0)
		drop_conn(0);
	PeerStart(&peer, port, peer_main);
}

/*
 * Set the script of the next input: n replies (bodies copied; at most
 * MAX_REPLIES, MAX_SCRIPT bytes in all).  Call only after HttpPeerReset().
 */
void
HttpPeerScript(const HttpPeerReply *r, int n)
{
	size_t		used = 0;

	nreplies = 0;
	next_reply = 0;
	requests = 0;
	for (int i = 0; i < n && i < MAX_REPLIES; i++)
	{
		size_t		len = r[i].len < MAX_SCRIPT - used ? r[i].len : MAX_SCRIPT - used;

		memcpy(script_buf + used, r[i].body, len);
		replies[nreplies] = r[i];
		replies[nreplies].body = script_buf + used;
		replies[nreplies++].len = len;
		used += len;
	}
}

/* End the current connection (RST) and wait until the peer is idle. */
void
HttpPeerReset(void)
{
	PeerReset(&peer);
}

/* Requests received since the script was set (racy; for statistics only). */
int
HttpPeerRequests(void)
{
	return requests;
}
