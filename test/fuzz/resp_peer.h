/*-------------------------------------------------------------------------
 *
 * resp_peer.h
 *		  A scripted RESP peer for the fuzz harness (test/fuzz/resp_peer.c).
 *
 * test/fuzz/resp_peer.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGPOLY_RESP_PEER_H
#define PGPOLY_RESP_PEER_H

#include <stddef.h>

extern void RespPeerStart(int port);
extern void RespPeerScript(const char *data, size_t len, const char *sep,
						   size_t seplen);
extern void RespPeerReset(void);

#endif							/* PGPOLY_RESP_PEER_H */
