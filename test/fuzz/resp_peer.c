/*-------------------------------------------------------------------------
 *
 * resp_peer.c
 *		  A scripted RESP peer on loopback, in a thread, for fuzzing.
 *
 * The peer plays the Redis server of the RESP harness: it accepts one
 * connection at a time and answers each complete command it receives (a
 * RESP array of bulk strings, as pgpoly sends) with the next segment of the
 * current script, whatever the command; after the last segment it shuts
 * its side down, so the client sees EOF instead of waiting for a timeout.
 * A segment may hold several replies, half of one, or garbage: pairing is
 * what is being tested.
 *
 * RespPeerReset() ends the connection with an RST (SO_LINGER 0) from this
 * side, so neither side keeps a TIME_WAIT socket: thousands of connections
 * a second would otherwise run out of ephemeral ports.  The socket, the
 * thread and the reset handshake are peer.c's.
 *
 * Invariants: the thread uses no PostgreSQL API (no palloc, no ereport);
 * the script is only changed while the peer holds no connection.  This file
 * is compiled without coverage instrumentation: its branches are not
 * pgpoly's.
 *
 * test/fuzz/resp_peer.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "peer.h"
#include "resp_peer.h"

#define MAX_SEGMENTS 64
#define MAX_SCRIPT (1024 * 1024)

static Peer peer = {"resp_peer", -1};

/* The script: segments of script_buf. */
static char script_buf[MAX_SCRIPT];
static size_t seg_off[MAX_SEGMENTS];
static size_t seg_len[MAX_SEGMENTS];
static int nsegs;

/* State of the current connection. */
static int conn_fd = -1;
static int next_seg;			/* next segment to queue */
static size_t out_off;			/* bytes of out_seg already sent */
static int out_seg;				/* segment being sent, or -1 */
static int queued;				/* commands answered but not yet sent */
static int shut;				/* our side shut down */
static int conn_dead;			/* the client closed or reset */

/* Streaming parser of RESP commands. */
static int p_state;				/* 0: '*' line, 1: '$' line, 2: payload */
static char p_line[32];
static int p_linelen;
static long p_args;
static long p_skip;

/* Forget the connection's state. */
static void
drop_conn(int rst)
{
	PeerClose(conn_fd, rst);
	conn_fd = -1;
	next_seg = 0;
	out_off = 0;
	out_seg = -1;
	queued = 0;
	shut = 0;
	conn_dead = 0;
	p_state = 0;
	p_linelen = 0;
}

/* Feed n received bytes to the parser; count complete commands in queued. */
static void
parse(const char *buf, size_t n)
{
	size_t		i = 0;

	while (i < n)
	{
		if (p_state == 2)
		{
			size_t		take = (size_t) p_skip < n - i ? (size_t) p_skip : n - i;

			p_skip -= take;
			i += take;
			if (p_skip == 0 && --p_args <= 0)
			{
				queued++;
				p_state = 0;
			}
			else if (p_skip == 0)
				p_state = 1;
			continue;
		}
		if (buf[i] != '\n')
		{
			if (p_linelen < (int) sizeof(p_line) - 1)
				p_line[p_linelen++] = buf[i];
			i++;
			continue;
		}
		i++;
		p_line[p_linelen] = '\0';
		p_linelen = 0;
		if (p_state == 0)
		{
			p_args = strtol(p_line + 1, NULL, 10);
			if (p_args <= 0)
				queued++;
			else
				p_state = 1;
		}
		else
		{
			p_skip = strtol(p_line + 1, NULL, 10) + 2;
			p_state = 2;
		}
	}
}

/* Send what is queued without blocking; shut down after the last segment. */
static void
pump(void)
{
	while (!shut)
	{
		ssize_t		n;

		if (out_seg < 0)
		{
			if (next_seg >= nsegs)
			{
				shutdown(conn_fd, SHUT_WR);
				shut = 1;
				return;
			}
			if (queued == 0)
				return;
			queued--;
			out_seg = next_seg++;
			out_off = 0;
		}
		n = send(conn_fd, script_buf + seg_off[out_seg] + out_off,
				 seg_len[out_seg] - out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0)
		{
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return;
			shut = 1;			/* the client went away */
			return;
		}
		out_off += (size_t) n;
		if (out_off == seg_len[out_seg])
			out_seg = -1;
	}
}

/* Accept a connection on the listening socket. */
static void
accept_conn(void)
{
	conn_fd = accept(peer.listen_fd, NULL, NULL);
	if (conn_fd < 0)
	{
		if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		PeerFail(&peer, "accept");
	}
	fcntl(conn_fd, F_SETFL, fcntl(conn_fd, F_GETFL) | O_NONBLOCK);
	pump();						/* an empty script: EOF at once */
}

/* Read what the client sent and answer the commands completed. */
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
		struct pollfd pfd[2];
		int			npfd = 1;

		pfd[0] = (struct pollfd) {peer.ctl[0], POLLIN, 0};
		if (conn_fd < 0)
			pfd[npfd++] = (struct pollfd) {peer.listen_fd, POLLIN, 0};
		else if (!conn_dead)
			pfd[npfd++] = (struct pollfd) {conn_fd, POLLIN | (out_seg >= 0 ? POLLOUT : 0), 0};
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
		}
		else if (npfd > 1 && pfd[1].revents && conn_fd < 0)
			accept_conn();
		else if (npfd > 1 && pfd[1].revents)
			serve_conn();
	}
	return NULL;
}

/* Listen on 127.0.0.1:port and start the peer thread (once). */
void
RespPeerStart(int port)
{
	if (peer.listen_fd < 0)
		drop_conn(0);
	PeerStart(&peer, port, peer_main);
}

/*
 * Set the script of the next connection: data split at every occurrence of
 * sep into at most MAX_SEGMENTS segments.  Call only after RespPeerReset().
 */
void
RespPeerScript(const char *data, size_t len, const char *sep, size_t seplen)
{
	size_t		start = 0;

	if (len > MAX_SCRIPT)
		len = MAX_SCRIPT;
	memcpy(script_buf, data, len);
	nsegs = 0;
	for (size_t i = 0; nsegs < MAX_SEGMENTS - 1 && i + seplen <= len; i++)
		if (memcmp(script_buf + i, sep, seplen) == 0)
		{
			seg_off[nsegs] = start;
			seg_len[nsegs++] = i - start;
			start = i + seplen;
			i += seplen - 1;
		}
	seg_off[nsegs] = start;
	seg_len[nsegs++] = len - start;
}

/* End the current connection (RST) and wait until the peer is idle. */
void
RespPeerReset(void)
{
	PeerReset(&peer);
}
