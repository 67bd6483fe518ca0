/*-------------------------------------------------------------------------
 *
 * http_peer.h
 *		  A scripted HTTP/1.1 peer for the fuzz harnesses (http_peer.c).
 *
 * test/fuzz/http_peer.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGPOLY_HTTP_PEER_H
#define PGPOLY_HTTP_PEER_H

#include <stddef.h>

/* How a reply is framed. */
typedef enum HttpPeerFraming
{
	HTTP_PEER_LENGTH,			/* Content-Length, connection kept */
	HTTP_PEER_CHUNKED,			/* Transfer-Encoding: chunked */
	HTTP_PEER_CLOSE,			/* no length: the body ends at EOF */
	HTTP_PEER_SHORT				/* Content-Length one more than sent, EOF */
} HttpPeerFraming;

/* One scripted reply. */
typedef struct HttpPeerReply
{
	int			status;
	HttpPeerFraming framing;
	const char *body;
	size_t		len;
} HttpPeerReply;

extern void HttpPeerStart(int port);
extern void HttpPeerScript(const HttpPeerReply *replies, int n);
extern void HttpPeerReset(void);
extern int	HttpPeerRequests(void);

#endif							/* PGPOLY_HTTP_PEER_H */
