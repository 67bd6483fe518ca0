/*-------------------------------------------------------------------------
 *
 * peer.c
 *		  What the scripted peers of the fuzz harnesses share: a loopback
 *		  listening socket, a thread, and the reset handshake.
 *
 * A peer (resp_peer.c, http_peer.c) runs its event loop in a thread of the
 * backend; the harness's main thread asks it, between inputs, to drop its
 * connection (PeerReset) and waits until it has: the peer polls the read
 * end of the control pipe, drops its connection with an RST (PeerClose),
 * so that no TIME_WAIT socket is left on either side, and acknowledges
 * (PeerAcknowledge).
 *
 * Invariants: no PostgreSQL API here (the thread must not palloc or
 * ereport); a broken peer exits the process with status 2, which is not a
 * finding.  Compiled without coverage instrumentation.
 *
 * test/fuzz/peer.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peer.h"

/* Print and exit: a broken harness is not a finding. */
void
PeerFail(const Peer *p, const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", p->name, what, strerror(errno));
	_exit(2);
}

/*
 * Listen on 127.0.0.1:port (non-blocking) and start loop in a thread, once;
 * returns the listening socket.
 */
int
PeerStart(Peer *p, int port, void *(*loop) (void *))
{
	struct sockaddr_in a;
	int			one = 1;
	pthread_t	t;

	if (p->listen_fd >= 0)
		return p->listen_fd;
	p->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	if (p->listen_fd < 0)
		PeerFail(p, "socket");
	setsockopt(p->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_port = htons((unsigned short) port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(p->listen_fd, (struct sockaddr *) &a, sizeof(a)) < 0)
		PeerFail(p, "bind");
	if (listen(p->listen_fd, 16) < 0)
		PeerFail(p, "listen");
	fcntl(p->listen_fd, F_SETFL, fcntl(p->listen_fd, F_GETFL) | O_NONBLOCK);
	if (pipe(p->ctl) < 0 || pipe(p->ack) < 0)
		PeerFail(p, "pipe");
	if (pthread_create(&t, NULL, loop, NULL) != 0)
		PeerFail(p, "pthread_create");
	return p->listen_fd;
}

/* In the peer thread: take the reset request (after dropping), answer it. */
void
PeerAcknowledge(const Peer *p)
{
	char		c;

	if (read(p->ctl[0], &c, 1) != 1)
		PeerFail(p, "read control pipe");
	if (write(p->ack[1], &c, 1) != 1)
		PeerFail(p, "write ack pipe");
}

/* In the main thread: have the peer drop its connection, wait until it has. */
void
PeerReset(const Peer *p)
{
	char		c = 'r';

	if (write(p->ctl[1], &c, 1) != 1)
		PeerFail(p, "write control pipe");
	while (read(p->ack[0], &c, 1) != 1)
		if (errno != EINTR)
			PeerFail(p, "read ack pipe");
}

/* Close a connection, with an RST (SO_LINGER 0) when rst. */
void
PeerClose(int fd, int rst)
{
	if (fd < 0)
		return;
	if (rst)
	{
		struct linger lg = {1, 0};

		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	close(fd);
}
