/*-------------------------------------------------------------------------
 *
 * peer.h
 *		  What the scripted peers of the fuzz harnesses share (peer.c).
 *
 * test/fuzz/peer.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGPOLY_FUZZ_PEER_H
#define PGPOLY_FUZZ_PEER_H

/* A peer thread: its listening socket and its control pipes. */
typedef struct Peer
{
	const char *name;			/* for messages */
	int			listen_fd;		/* -1 until started */
	int			ctl[2];			/* main -> peer: reset now */
	int			ack[2];			/* peer -> main: done */
} Peer;

extern void PeerFail(const Peer *p, const char *what) __attribute__((noreturn));
extern int	PeerStart(Peer *p, int port, void *(*loop) (void *));
extern void PeerAcknowledge(const Peer *p);
extern void PeerReset(const Peer *p);
extern void PeerClose(int fd, int rst);

#endif							/* PGPOLY_FUZZ_PEER_H */
