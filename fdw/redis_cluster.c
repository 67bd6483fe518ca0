/*-------------------------------------------------------------------------
 *
 * redis_cluster.c
 *		  Redis topologies: one server, a Redis Cluster, or Sentinel.
 *
 * hiredis 0.14 knows nothing of clusters or sentinels, so pgpoly does what
 * a cluster client does, on its own non-blocking connections (redis_io.c):
 *	- a key's hash slot is CRC16-XMODEM of the key, or of its {hash tag},
 *	  modulo 16384 (the Redis Cluster specification);
 *	- the slot map comes from CLUSTER SLOTS, asked of a seed at connect and
 *	  again at the start of the first request after a MOVED, a CLUSTERDOWN
 *	  or a node failure;
 *	- MOVED and ASK replies, TRYAGAIN and CLUSTERDOWN are recognised here;
 *	  the exchange (redis_io.c) re-sends what they concern;
 *	- with Sentinel, the primary is asked of the first sentinel that
 *	  answers (SENTINEL get-master-addr-by-name), and checked with ROLE.
 *
 * Which topology a server uses is decided by its options alone, validated
 * here at CREATE/ALTER SERVER time: exactly one of host/port, unix_socket,
 * cluster or nodes, sentinels with sentinel_master.  A Unix-domain socket
 * reaches one server only: cluster nodes and sentinels announce TCP
 * addresses.
 *
 * Invariants:
 *	- A reply reaches the caller only when it is the answer: MOVED, ASK,
 *	  TRYAGAIN and CLUSTERDOWN never do (until retries run out at
 *	  timeout_ms), and a MULTI/EXEC block is redirected or retried whole.
 *	- Every command of a block is in the block's slot (callers group writes
 *	  by slot); a block is never split between nodes.
 *	- Writes of a slot run in the order they were sent: a write is sent
 *	  again (TRYAGAIN, CLUSTERDOWN) only when no later command of its slot
 *	  was sent with it; otherwise its refusal is the answer.
 *	- A full scan covers every slot, as the primaries themselves claim
 *	  them (the map is asked again when their claims leave a slot
 *	  unserved), and also lists the keys of the slots that moved while it
 *	  ran: it never returns part of the data as if it were all of it.
 *
 * fdw/redis_cluster.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <hiredis/hiredis.h>

#include "utils/builtins.h"
#include "utils/memutils.h"

#include "redis.h"

/* CRC16-XMODEM (polynomial 0x1021, initial value 0), by table. */
static uint16 crc16_table[256];
static bool crc16_ready = false;

/* Fill crc16_table: the CRC of each byte value shifted into the top. */
static void
crc16_init(void)
{
	for (int i = 0; i < 256; i++)
	{
		uint16		crc = (uint16) (i << 8);

		for (int bit = 0; bit < 8; bit++)
			crc = (crc & 0x8000) ? (uint16) ((crc << 1) ^ 0x1021) : (uint16) (crc << 1);
		crc16_table[i] = crc;
	}
	crc16_ready = true;
}

/* CRC16-XMODEM of len bytes. */
static uint16
crc16(const char *buf, size_t len)
{
	uint16		crc = 0;

	if (!crc16_ready)
		crc16_init();
	for (size_t i = 0; i < len; i++)
		crc = (uint16) ((crc << 8) ^ crc16_table[((crc >> 8) ^ (uint8) buf[i]) & 0xff]);
	return crc;
}

/*
 * The hash slot of a key (any bytes): when the key has a '{' followed later
 * by a '}' with at least one byte between the first '{' and the first '}'
 * after it, only those bytes are hashed (the hash tag), so that keys sharing
 * a tag share a slot.
 */
int
RedisKeySlot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len);

	if (open != NULL)
	{
		size_t		start = open - key + 1;
		const char *close = memchr(key + start, '}', len - start);

		if (close != NULL && close - (key + start) > 0)
			return crc16(key + start, close - (key + start)) & (REDIS_NSLOTS - 1);
	}
	return crc16(key, len) & (REDIS_NSLOTS - 1);
}

PG_FUNCTION_INFO_V1(pgpoly_redis_key_slot);

/*
 * pgpoly.redis_key_slot(key text): the Redis Cluster hash slot of a key,
 * as CLUSTER KEYSLOT computes it; for checking that {hash tags} keep keys
 * together.  The slot is that of the bytes Redis is sent: the key's UTF-8
 * in a database of another encoding.
 */
Datum
pgpoly_redis_key_slot(PG_FUNCTION_ARGS)
{
	text	   *key = PG_GETARG_TEXT_PP(0);
	size_t		len = VARSIZE_ANY_EXHDR(key);
	const char *bytes = PgpolyServerToStore(VARDATA_ANY(key), &len, false);

	PG_RETURN_INT32(RedisKeySlot(bytes, len));
}

/* ----------------------------------------------------------------
 *		Addresses and topology options
 * ----------------------------------------------------------------
 */

/*
 * Parse "host:port" (len bytes; an IPv6 host in brackets) into a RedisAddr
 * allocated in the current context.  false if it is not one.
 */
bool
RedisParseAddr(const char *s, size_t len, RedisAddr *addr)
{
	const char *colon;
	const char *host = s;
	size_t		hostlen;
	char		digits[8];
	size_t		ndigits;
	char	   *end;
	long		port;

	colon = NULL;
	for (size_t i = 0; i < len; i++)
		if (s[i] == ':')
			colon = s + i;
	if (colon == NULL)
		return false;
	hostlen = colon - s;
	if (hostlen >= 2 && host[0] == '[' && host[hostlen - 1] == ']')
	{
		host++;
		hostlen -= 2;
	}
	ndigits = len - (colon + 1 - s);
	if (hostlen == 0 || ndigits == 0 || ndigits >= sizeof(digits) ||
		memchr(host, ' ', hostlen) != NULL)
		return false;
	memcpy(digits, colon + 1, ndigits);
	digits[ndigits] = '\0';
	port = strtol(digits, &end, 10);
	if (*end != '\0' || port < 1 || port > 65535)
		return false;
	addr->host = pnstrdup(host, hostlen);
	addr->port = (int) port;
	return true;
}

/*
 * Parse the comma-separated "host:port" list of option name (nodes,
 * sentinels) into a List of RedisAddr; ERROR naming the option and the bad
 * element otherwise.
 */
static List *
parse_addr_list(const char *name, const char *value)
{
	List	   *result = NIL;
	const char *p = value;

	for (;;)
	{
		const char *end = strchr(p, ',');
		size_t		len = end ? (size_t) (end - p) : strlen(p);
		RedisAddr  *addr = palloc(sizeof(RedisAddr));

		while (len > 0 && (*p == ' ' || *p == '\t'))
			p++, len--;
		while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (!RedisParseAddr(p, len, addr))
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
					 errmsg("invalid value for option \"%s\": \"%s\"", name, value),
					 errdetail("\"%.*s\" is not host:port with a port between 1 and 65535.",
							   (int) len, p),
					 errhint("Use a comma-separated list such as '10.0.0.1:7000, 10.0.0.2:7000'.")));
		result = lappend(result, addr);
		if (end == NULL)
			break;
		p = end + 1;
	}
	return result;
}

/* The one hint of every topology conflict: what the valid forms are. */
#define TOPOLOGY_HINT \
	"Give exactly one topology: host and port, or unix_socket (one server); cluster 'true' " \
	"with host and port, or nodes 'h1:p1, h2:p2' (Redis Cluster); sentinels " \
	"'h1:p1, h2:p2' with sentinel_master 'name' (Sentinel)."

/* ERROR: options a and b belong to different topologies. */
static void
topology_conflict(const char *a, const char *b)
{
	ereport(ERROR,
			(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
			 errmsg("options \"%s\" and \"%s\" describe different Redis topologies", a, b),
			 errhint(TOPOLOGY_HINT)));
}

/* ERROR: option a needs option b. */
static void
topology_needs(const char *a, const char *b)
{
	ereport(ERROR,
			(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
			 errmsg("option \"%s\" needs option \"%s\"", a, b),
			 errhint(TOPOLOGY_HINT)));
}

/*
 * The first of host, port, unix_socket that options give, or NULL.  ERROR
 * if unix_socket comes with host or port: it replaces both.
 */
static const char *
single_option(List *options)
{
	const char *tcp = PgpolyGetOption(options, "host", NULL) ? "host" :
		PgpolyGetOption(options, "port", NULL) ? "port" : NULL;

	if (PgpolyGetOption(options, "unix_socket", NULL) == NULL)
		return tcp;
	if (tcp)
		topology_conflict("unix_socket", tcp);
	return "unix_socket";
}

/*
 * The topology server options describe, into topo (allocated in the
 * current context).  Every inconsistency is an ERROR naming the options
 * and the valid forms, so the validator calls this too.
 */
void
RedisTopologyFromOptions(List *options, RedisTopology *topo)
{
	const char *nodes = PgpolyGetOption(options, "nodes", NULL);
	const char *sentinels = PgpolyGetOption(options, "sentinels", NULL);
	const char *master = PgpolyGetOption(options, "sentinel_master", NULL);
	const char *cluster_opt = PgpolyGetOption(options, "cluster", NULL);
	bool		cluster = PgpolyGetBoolOption(options, "cluster", false);
	const char *single = single_option(options);

	memset(topo, 0, sizeof(*topo));
	if (!sentinels && PgpolyGetOption(options, "sentinel_check_ms", NULL))
		topology_needs("sentinel_check_ms", "sentinels");
	if (sentinels || master)
	{
		if (!sentinels)
			topology_needs("sentinel_master", "sentinels");
		if (!master)
			topology_needs("sentinels", "sentinel_master");
		if (cluster || nodes)
			topology_conflict("sentinels", cluster ? "cluster" : "nodes");
		if (single)
			topology_conflict("sentinels", single);
		topo->kind = RTOPO_SENTINEL;
		topo->addrs = parse_addr_list("sentinels", sentinels);
		topo->master = pstrdup(master);
		topo->check_ms = (int) PgpolyGetIntOption(options, "sentinel_check_ms",
												  REDIS_SENTINEL_CHECK_MS);
		return;
	}
	if (nodes && cluster_opt && !cluster)
		topology_conflict("nodes", "cluster");
	if (nodes && single)
		topology_conflict("nodes", single);
	if (nodes || cluster)
	{
		if (PgpolyGetIntOption(options, "db", 0) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
					 errmsg("option \"db\" must be 0 for a Redis Cluster"),
					 errdetail("Redis Cluster has only database 0."),
					 errhint("Remove the option db, or use separate key prefixes instead of databases.")));
		topo->kind = RTOPO_CLUSTER;
		if (nodes)
		{
			topo->addrs = parse_addr_list("nodes", nodes);
			return;
		}
	}
	else
		topo->kind = RTOPO_SINGLE;
	if (single && strcmp(single, "unix_socket") == 0)
	{
		if (topo->kind == RTOPO_CLUSTER)
			topology_conflict("cluster", "unix_socket");
		topo->unix_socket = pstrdup(PgpolyGetOption(options, "unix_socket", NULL));
		return;
	}
	{
		RedisAddr  *addr = palloc(sizeof(RedisAddr));

		addr->host = pstrdup(PgpolyGetOption(options, "host", "127.0.0.1"));
		addr->port = (int) PgpolyGetIntOption(options, "port", 6379);
		topo->addrs = list_make1(addr);
	}
}

/* ----------------------------------------------------------------
 *		The slot map
 * ----------------------------------------------------------------
 */

/* A string element of a reply as a palloc'd C string, or NULL. */
static char *
reply_text(redisReply *r)
{
	if (r == NULL || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS))
		return NULL;
	return pnstrdup(r->str, r->len);
}

/*
 * The node an endpoint of CLUSTER SLOTS or a redirection names.  An empty
 * (or "?", or NULL) endpoint means "the host you asked", with this port.
 */
static RedisNode *
endpoint_node(RedisHandle *h, RedisNode *asked, const char *host, int port)
{
	if (host == NULL || host[0] == '\0' || strcmp(host, "?") == 0)
		host = asked->host;
	return RedisNodeGet(h, host, port);
}

/*
 * Apply a CLUSTER SLOTS reply (asked of node `asked`) to h: every range's
 * first node is its primary.  false if the reply does not have that shape.
 */
static bool
apply_slots(RedisHandle *h, RedisNode *asked, redisReply *r)
{
	int16	   *slots = palloc(sizeof(int16) * REDIS_NSLOTS);
	bool	   *primary;

	if (r->type != REDIS_REPLY_ARRAY)
		return false;
	memset(slots, 0xff, sizeof(int16) * REDIS_NSLOTS);
	for (size_t i = 0; i < r->elements; i++)
	{
		redisReply *range = r->element[i];
		redisReply *ep;
		RedisNode  *node;
		int			idx;

		if (range->type != REDIS_REPLY_ARRAY || range->elements < 3 ||
			range->element[0]->type != REDIS_REPLY_INTEGER ||
			range->element[1]->type != REDIS_REPLY_INTEGER ||
			range->element[2]->type != REDIS_REPLY_ARRAY)
			return false;
		ep = range->element[2];
		if (ep->elements < 2 || ep->element[1]->type != REDIS_REPLY_INTEGER ||
			ep->element[1]->integer < 1 || ep->element[1]->integer > 65535 ||
			(ep->element[0]->type != REDIS_REPLY_NIL && reply_text(ep->element[0]) == NULL) ||
			range->element[0]->integer < 0 ||
			range->element[1]->integer >= REDIS_NSLOTS ||
			range->element[0]->integer > range->element[1]->integer)
			return false;
		node = endpoint_node(h, asked, reply_text(ep->element[0]),
							 (int) ep->element[1]->integer);
		idx = RedisNodeIndex(h, node);
		for (long long s = range->element[0]->integer; s <= range->element[1]->integer; s++)
			slots[s] = (int16) idx;
	}
	primary = palloc0(sizeof(bool) * h->nnodes);
	for (int s = 0; s < REDIS_NSLOTS; s++)
		if (slots[s] >= 0)
			primary[slots[s]] = true;
	for (int i = 0; i < h->nnodes; i++)
		h->nodes[i]->primary = primary[i];
	memcpy(h->slots, slots, sizeof(int16) * REDIS_NSLOTS);
	return true;
}

/* ERROR: the server option says cluster, but the node is not in one. */
static void
not_a_cluster(PgpolyConnection *conn, RedisNode *node, redisReply *r)
{
	strlcpy(conn->target, node->addr, sizeof(conn->target));
	ereport(ERROR,
			(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
			 errmsg("Redis server \"%s\" at %s is not a Redis Cluster node",
					conn->servername, conn->target),
			 errdetail("CLUSTER SLOTS answered: %s", PgpolyPrintable(r->str, r->len, 200)),
			 errhint("Remove the server options cluster and nodes, or point them at a cluster node.")));
}

/* Ask node for the slot map; false with *error set if it could not say. */
static bool
refresh_from(PgpolyConnection *conn, RedisHandle *h, RedisNode *node,
			 char **error)
{
	const char *argv[2] = {"CLUSTER", "SLOTS"};
	redisReply *r;

	if (node->ctx == NULL && !RedisNodeOpen(conn, h, node, true, error))
		return false;
	if ((r = RedisNodeCall(conn, h, node, 2, argv, error)) == NULL)
		return false;
	if (r->type == REDIS_REPLY_ERROR && strstr(r->str, "cluster support disabled"))
		not_a_cluster(conn, node, r);
	if (r->type == REDIS_REPLY_ERROR || !apply_slots(h, node, r))
	{
		*error = r->type == REDIS_REPLY_ERROR ? psprintf("CLUSTER SLOTS answered: %s", PgpolyPrintable(r->str, r->len, 200)) :
			pstrdup("malformed reply to CLUSTER SLOTS");
		RedisNodeClose(h, node);
		return false;
	}
	return true;
}

/*
 * Learn the slot map: ask the nodes already connected, then the others
 * known, then the seeds, until one answers CLUSTER SLOTS.  ERROR listing
 * what each said when none does.  Called at connect and at the start of a
 * request after the map went stale; never inside a request.
 */
void
RedisClusterRefresh(PgpolyConnection *conn, RedisHandle *h)
{
	MemoryContext tmp = AllocSetContextCreate(CurrentMemoryContext, "pgpoly redis map",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(tmp);
	StringInfoData errors;
	ListCell   *lc;

	initStringInfo(&errors);
	foreach(lc, h->seeds)
	{
		RedisAddr  *a = lfirst(lc);

		(void) RedisNodeGet(h, a->host, a->port);
	}
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < h->nnodes; i++)
		{
			RedisNode  *node = h->nodes[i];
			char	   *error;

			if ((node->ctx != NULL) != (pass == 0))
				continue;		/* connected ones first */
			if (refresh_from(conn, h, node, &error))
			{
				strlcpy(conn->target, node->addr, sizeof(conn->target));
				/* Keep connections to primaries only (a seed may be a replica). */
				for (int j = 0; j < h->nnodes; j++)
					if (!h->nodes[j]->primary)
						RedisNodeClose(h, h->nodes[j]);
				h->map_stale = false;
				MemoryContextSwitchTo(old);
				MemoryContextDelete(tmp);
				return;
			}
			appendStringInfo(&errors, "%s%s: %s", errors.len ? "; " : "",
							 node->addr, error);
		}
	MemoryContextSwitchTo(old);
	ereport(ERROR,
			(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
			 errmsg("could not learn the slot map of Redis Cluster server \"%s\": no node answered",
					conn->servername),
			 errdetail("%s", errors.data),
			 errhint("Check that the cluster runs and the server option nodes (or host and port) names its nodes.")));
}

/* ERROR: no node serves slot (the map is asked again before the next request). */
static void
unserved_slot(PgpolyConnection *conn, RedisHandle *h, int slot)
{
	h->map_stale = true;
	ereport(ERROR,
			(errcode(ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
			 errmsg("no node of Redis Cluster server \"%s\" serves hash slot %d",
					conn->servername, slot),
			 errhint("The cluster may be down or being resharded; the next statement asks it again.")));
}

/* The node serving slot; ERROR if the map has none. */
static RedisNode *
slot_owner(PgpolyConnection *conn, RedisHandle *h, int slot)
{
	if (h->slots[slot] < 0)
		unserved_slot(conn, h, slot);
	return h->nodes[h->slots[slot]];
}

/*
 * ERROR unless every hash slot has a node in h's map: a scan of the
 * primaries would otherwise miss the keys of the slots no node serves.
 */
void
RedisClusterCheckCoverage(PgpolyConnection *conn, RedisHandle *h)
{
	for (int s = 0; s < REDIS_NSLOTS; s++)
		if (h->slots[s] < 0)
			(void) slot_owner(conn, h, s);	/* raises the ERROR */
}

/* ----------------------------------------------------------------
 *		Routing and redirections
 * ----------------------------------------------------------------
 */

#define MAX_REDIRECTS 16		/* as redis-cli and most cluster clients */

/* The RESP of ASKING. */
static const char asking_resp[] = "*1\r\n$6\r\nASKING\r\n";

/* The RESP of command cmd of h's request (cmd->len bytes). */
static const char *
cmd_resp(RedisHandle *h, RedisCmdInfo *cmd)
{
	return cmd->ext ? cmd->ext : h->resp.data + cmd->off;
}

/*
 * Send command idx (already encoded: in h->resp, copied since h->resp may
 * move, or where its caller keeps it) to node, after ASKING if asking.
 */
static void
send_cmd(PgpolyConnection *conn, RedisHandle *h, int idx, RedisNode *node,
		 bool asking)
{
	RedisCmdInfo *cmd = &h->cmds[idx];

	if (asking)
		RedisNodeSend(conn, h, node, RQ_ASKING, asking_resp, sizeof(asking_resp) - 1,
					  false);
	cmd->node = RedisNodeIndex(h, node);
	cmd->final = false;
	RedisNodeSend(conn, h, node, idx, cmd_resp(h, cmd), cmd->len, cmd->ext == NULL);
}

/* Whether argv[0] is the command name (any case). */
static bool
is_command(const char **argv, const size_t *lens, const char *name)
{
	size_t		len;

	/* Most commands differ in the first letter: no length, no compare. */
	if ((argv[0][0] & ~0x20) != name[0])
		return false;
	len = lens ? lens[0] : strlen(argv[0]);
	return len == strlen(name) && pg_strncasecmp(argv[0], name, len) == 0;
}

/*
 * The key a command is routed by: its first key, argv[1] for the commands
 * pgpoly sends, or the first of EVAL's keys.  false for a command with no
 * key.
 */
bool
RedisCommandKey(int argc, const char **argv, const size_t *lens,
				const char **key, size_t *keylen)
{
	int			pos = 1;

	if (is_command(argv, lens, "EVAL") || is_command(argv, lens, "EVALSHA"))
	{
		if (argc < 4 || atoi(argv[2]) < 1)
			return false;
		pos = 3;
	}
	if (argc <= pos)
		return false;
	*key = argv[pos];
	*keylen = lens ? lens[pos] : strlen(argv[pos]);
	return true;
}

/* Add command idx to the request, not routed, its RESP not recorded yet. */
static RedisCmdInfo *
new_cmd(RedisHandle *h, int idx)
{
	RedisCmdInfo *cmd;

	if (h->ncmds == h->maxcmds)
	{
		h->maxcmds = Max(256, h->maxcmds * 2);
		h->cmds = h->cmds ? repalloc_huge(h->cmds, sizeof(RedisCmdInfo) * h->maxcmds) :
			MemoryContextAllocExtended(h->req_cxt, sizeof(RedisCmdInfo) * h->maxcmds,
									   MCXT_ALLOC_HUGE);
	}
	Assert(idx == h->ncmds);
	cmd = &h->cmds[h->ncmds++];
	memset(cmd, 0, sizeof(*cmd));
	cmd->slot = -1;
	cmd->node = -1;
	cmd->group = -1;
	return cmd;
}

/* Record command idx of the request: its RESP, appended to h->resp. */
static RedisCmdInfo *
record_cmd(RedisHandle *h, int idx, int argc, const char **argv,
		   const size_t *lens)
{
	MemoryContext old = MemoryContextSwitchTo(h->req_cxt);
	RedisCmdInfo *cmd = new_cmd(h, idx);

	if (h->resp.data == NULL)
		initStringInfo(&h->resp);
	cmd->off = h->resp.len;
	RedisEncodeCommand(&h->resp, argc, argv, lens);
	cmd->len = h->resp.len - cmd->off;
	MemoryContextSwitchTo(old);
	return cmd;
}

/*
 * Send command idx, keyed (slot set) or for a named node (target), to its
 * node; inside a MULTI, to the node of the transaction, whose commands must
 * share a slot (callers group writes by slot).
 */
static void
route_cmd(PgpolyConnection *conn, RedisHandle *h, int idx, RedisNode *target)
{
	RedisCmdInfo *cmd = &h->cmds[idx];
	int			g = h->open_group;
	RedisNode  *node = target ? target : slot_owner(conn, h, cmd->slot);

	if (g >= 0)
	{
		RedisCmdInfo *multi = &h->cmds[g];

		cmd->group = g;
		if (multi->node < 0)
		{
			multi->slot = cmd->slot;
			send_cmd(conn, h, g, node, false);
		}
		else if (multi->slot != cmd->slot)
			elog(ERROR, "Redis transaction spans hash slots %d and %d",
				 multi->slot, cmd->slot);
		node = h->nodes[multi->node];
	}
	send_cmd(conn, h, idx, node, false);
}

/*
 * Route command idx on a cluster connection: target (a keyless command for
 * a named node), or the node serving argv[1]'s slot.  MULTI waits for the
 * first command it wraps to know its node; the commands up to EXEC must
 * share that slot (callers group writes by slot).
 */
void
RedisClusterRoute(PgpolyConnection *conn, RedisHandle *h, int idx, int argc,
				  const char **argv, const size_t *lens, RedisNode *target)
{
	RedisCmdInfo *cmd = record_cmd(h, idx, argc, argv, lens);
	int			g = h->open_group;

	if (is_command(argv, lens, "MULTI"))
	{
		if (g >= 0)
			elog(ERROR, "nested MULTI on Redis server \"%s\"", conn->servername);
		cmd->group = h->open_group = idx;
		if (target)
			send_cmd(conn, h, idx, target, false);
		return;
	}
	if (is_command(argv, lens, "EXEC"))
	{
		if (g < 0)
			elog(ERROR, "EXEC without MULTI on Redis server \"%s\"", conn->servername);
		cmd->group = g;
		cmd->is_exec = true;
		h->open_group = -1;
		if (h->cmds[g].node < 0)	/* an empty transaction */
			send_cmd(conn, h, g, slot_owner(conn, h, 0), false);
		send_cmd(conn, h, idx, h->nodes[h->cmds[g].node], false);
		return;
	}
	if (target == NULL)
	{
		const char *key;
		size_t		keylen;

		if (!RedisCommandKey(argc, argv, lens, &key, &keylen))
			elog(ERROR, "Redis command without a key routed by key");
		cmd->slot = RedisKeySlot(key, keylen);
	}
	route_cmd(conn, h, idx, target);
}

/*
 * Route command idx, encoded by the caller (len bytes at resp, which it
 * keeps until the exchange ends: sent from there, never copied), whose key
 * is in slot.  Never MULTI or EXEC.
 */
void
RedisClusterRouteEncoded(PgpolyConnection *conn, RedisHandle *h, int idx,
						 const char *resp, size_t len, int slot)
{
	RedisCmdInfo *cmd = new_cmd(h, idx);

	cmd->ext = resp;
	cmd->len = (uint32) len;
	cmd->slot = slot;
	route_cmd(conn, h, idx, NULL);
}

/* What a reply asks the client to do. */
typedef enum RedirectKind
{
	REDIR_NONE,					/* nothing: it is the answer */
	REDIR_MOVED,				/* the slot lives elsewhere now */
	REDIR_ASK,					/* this key, this once, elsewhere */
	REDIR_RETRY					/* TRYAGAIN, CLUSTERDOWN: later */
} RedirectKind;

/*
 * Classify reply r (answered by node `from`); for MOVED and ASK set *slot
 * and *target (a node of h, added if new).
 */
static RedirectKind
classify(RedisHandle *h, RedisNode *from, redisReply *r, int *slot,
		 RedisNode **target)
{
	bool		moved;
	char	   *text;
	char	   *sp;
	char	   *colon;
	long		s,
				port;
	RedisAddr	a;

	if (r->type != REDIS_REPLY_ERROR)
		return REDIR_NONE;
	if (strncmp(r->str, "TRYAGAIN", 8) == 0 || strncmp(r->str, "CLUSTERDOWN", 11) == 0)
	{
		if (r->str[0] == 'C')
			h->map_stale = true;
		return REDIR_RETRY;
	}
	moved = strncmp(r->str, "MOVED ", 6) == 0;
	if (!moved && strncmp(r->str, "ASK ", 4) != 0)
		return REDIR_NONE;
	text = pstrdup(r->str + (moved ? 6 : 4));
	s = strtol(text, &sp, 10);
	if (*sp != ' ' || s < 0 || s >= REDIS_NSLOTS ||
		(colon = strrchr(sp + 1, ':')) == NULL)
		return REDIR_NONE;		/* not one we understand: an answer */
	port = strtol(colon + 1, NULL, 10);
	if (colon == sp + 1 && (port < 1 || port > 65535))
		return REDIR_NONE;
	if (colon == sp + 1)		/* ":port": the host we asked */
		a.host = NULL;
	else if (!RedisParseAddr(sp + 1, strlen(sp + 1), &a))
		return REDIR_NONE;
	*slot = (int) s;
	*target = endpoint_node(h, from, a.host, (int) port);
	pfree(text);
	return moved ? REDIR_MOVED : REDIR_ASK;
}

/* Whether reply is a redirection or a retry request (never an answer). */
bool
RedisIsRedirect(redisReply *reply)
{
	return reply->type == REDIS_REPLY_ERROR &&
		(strncmp(reply->str, "MOVED ", 6) == 0 || strncmp(reply->str, "ASK ", 4) == 0 ||
		 strncmp(reply->str, "TRYAGAIN", 8) == 0 ||
		 strncmp(reply->str, "CLUSTERDOWN", 11) == 0);
}

/* Count a redirection of command idx; ERROR past MAX_REDIRECTS. */
static void
count_redirect(RedisExchangeState *ex, int idx, redisReply *r)
{
	if (++ex->h->cmds[idx].redirects <= MAX_REDIRECTS)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_FDW_ERROR),
			 errmsg("Redis Cluster server \"%s\" redirected a command more than %d times",
					ex->conn->servername, MAX_REDIRECTS),
			 errdetail("The last redirection was: %s", PgpolyPrintable(r->str, r->len, 200)),
			 errhint("The cluster's slots may be moving; retry later.")));
}

/* A command or transaction waiting to be sent again. */
typedef struct RedisRetry
{
	int			idx;			/* command, or the MULTI of a transaction */
	int			attempt;
	TimestampTz due;
} RedisRetry;

/*
 * Schedule command (or transaction) idx, refused with answer why, to be
 * sent again after a pause that doubles with each attempt (10 ms up to
 * 200 ms).  false if that would be past the exchange's deadline: the caller
 * then keeps the reply as final.
 */
static bool
schedule_retry(RedisExchangeState *ex, int idx, redisReply *why)
{
	int			attempt = 0;
	long		ms;
	RedisRetry *rt;
	ListCell   *lc;

	foreach(lc, ex->retries)
		if (((RedisRetry *) lfirst(lc))->idx == idx)
			elog(ERROR, "Redis command %d retried twice at once", idx);
	attempt = ex->h->cmds[idx].retries;
	ms = Min(200, 10L << Min(attempt, 5));
	if (TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms) >= ex->deadline)
		return false;
	ex->h->cmds[idx].retries = (uint8) Min(attempt + 1, 255);
	ex->retried = PgpolyPrintable(why->str, why->len, 200);
	rt = palloc(sizeof(RedisRetry));
	rt->idx = idx;
	rt->attempt = attempt;
	rt->due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
	ex->retries = lappend(ex->retries, rt);
	return true;
}

/* Replace the text of error reply r (the caller's message quotes it). */
static void
reword_reply(redisReply *r, const char *text)
{
	r->str = MemoryContextStrdup(GetMemoryChunkContext(r), text);
	r->len = strlen(r->str);
}

/*
 * Whether command idx may be sent again after the commands that follow it
 * in the request: a read may; a write only when no later command is in its
 * slot.  Otherwise the write would run after them: a RENAME answered
 * TRYAGAIN and sent again once the HSET after it ran would overwrite what
 * the HSET wrote.  Any command but the reads pgpoly sends counts as a write.
 */
static bool
may_run_late(RedisHandle *h, int idx)
{
	static const char *const reads[] = {"GET", "HGETALL", "ZRANGE", "ZRANGEBYSCORE",
	"SMEMBERS", "LRANGE", "TTL", "EXISTS", "SISMEMBER", "ZSCORE"};
	RedisCmdInfo *cmd = &h->cmds[idx];
	const char *p = cmd_resp(h, cmd);
	const char *name;
	size_t		len;

	if (cmd->slot < 0)
		return true;			/* keyless: SCAN, CLUSTER ... */
	/* The RESP is "*<argc>\r\n$<len>\r\n<name>\r\n...". */
	p = memchr(p, '$', cmd->len);
	len = strtoul(p + 1, (char **) &name, 10);
	name += 2;
	for (int i = 0; i < lengthof(reads); i++)
		if (strlen(reads[i]) == len && pg_strncasecmp(name, reads[i], len) == 0)
			return true;
	for (int j = idx + 1; j < h->ncmds; j++)
		if (h->cmds[j].slot == cmd->slot)
			return false;
	return true;
}

/*
 * A write answered TRYAGAIN or CLUSTERDOWN that may not be sent again (see
 * may_run_late): make its reply say why it was not retried.
 */
static void
explain_no_retry(redisReply *r, int slot)
{
	reword_reply(r, psprintf("%s (not sent again: later writes to hash slot %d had been sent and may have run)",
							 PgpolyPrintable(r->str, r->len, 200), slot));
}

/*
 * Transaction g (commands g..e) could not run before the deadline because
 * its slot was migrating or the cluster was down (why: the last refusal):
 * make its EXEC reply and the redirections among its replies say so (the
 * caller's message quotes the first failed reply) rather than a bare
 * EXECABORT, or an ASK it seems pgpoly did not follow.
 */
static void
explain_abort(RedisExchangeState *ex, int g, int e, redisReply *why)
{
	char	   *text = psprintf("TRYAGAIN the transaction of hash slot %d could not run within timeout_ms: the slot was migrating between nodes, or the cluster was down (last answer: %s)",
								ex->h->cmds[g].slot, PgpolyPrintable(why->str, why->len, 200));

	for (int i = g + 1; i <= e; i++)
		if (i == e || RedisIsRedirect(ex->held[i]))
			reword_reply(ex->held[i], text);
}

/* The indexes of the commands of the transaction whose MULTI is g: g..*last. */
static void
group_end(RedisHandle *h, int g, int *last)
{
	int			i = g + 1;

	while (i < h->ncmds && !(h->cmds[i].group == g && h->cmds[i].is_exec))
		i++;
	*last = i;
}

/* Send transaction g again to node (after ASKING if asking). */
static void
resend_group(RedisExchangeState *ex, int g, RedisNode *node, bool asking)
{
	RedisHandle *h = ex->h;
	int			e;

	group_end(h, g, &e);
	for (int i = g; i <= e; i++)
	{
		if (ex->held[i])
			RedisReplyDiscard(ex->held[i]);
		ex->held[i] = NULL;
	}
	send_cmd(ex->conn, h, g, node, asking);
	for (int i = g + 1; i <= e; i++)
		send_cmd(ex->conn, h, i, node, false);
}

/* Mark transaction g's replies final (to be delivered as they are). */
static void
group_final(RedisHandle *h, int g, int e)
{
	for (int i = g; i <= e; i++)
		h->cmds[i].final = true;
}

/*
 * The EXEC of transaction g (commands g..e) was answered.  An array: the
 * transaction ran.  Otherwise it was aborted, and the replies say why: a
 * MOVED sends it whole to the new owner; ASK for every command sends it to
 * the target after ASKING; TRYAGAIN, CLUSTERDOWN or keys split between the
 * two nodes of a migrating slot retry it later; any other error is the
 * answer the caller gets.
 */
static void
resolve_group(RedisExchangeState *ex, int g, int e, RedisNode *from)
{
	RedisHandle *h = ex->h;
	RedisNode  *moved = NULL,
			   *ask = NULL,
			   *target;
	redisReply *redirect = NULL;	/* the MOVED or ASK, for messages */
	redisReply *refusal = ex->held[e];	/* why it cannot run now */
	int			nask = 0,
				slot;
	bool		retry = false,
				other = false;

	if (ex->held[e]->type == REDIS_REPLY_ARRAY)
	{
		group_final(h, g, e);
		return;
	}
	for (int i = g + 1; i <= e; i++)
	{
		redisReply *r = ex->held[i];

		switch (classify(h, from, r, &slot, &target))
		{
			case REDIR_MOVED:
				h->slots[slot] = (int16) RedisNodeIndex(h, target);
				h->map_stale = true;
				moved = target;
				redirect = r;
				break;
			case REDIR_ASK:
				ask = target;
				nask += (i < e) ? 1 : e - g - 1;	/* ASK at EXEC: all keys */
				redirect = r;
				break;
			case REDIR_RETRY:
				retry = true;
				refusal = r;
				break;
			case REDIR_NONE:
				if (r->type == REDIS_REPLY_ERROR && i < e)
					other = true;
				break;
		}
	}
	if (moved == NULL && ask == NULL && !retry)
	{
		group_final(h, g, e);	/* a real error: the caller reports it */
		return;
	}
	if (moved && !other)
	{
		count_redirect(ex, g, redirect);
		resend_group(ex, g, moved, false);
	}
	else if (ask && nask >= e - g - 1 && !retry && !other)
	{
		count_redirect(ex, g, redirect);
		resend_group(ex, g, ask, true);
	}
	else if (!other && schedule_retry(ex, g, refusal))
	{
		for (int i = g; i <= e; i++)
		{
			RedisReplyDiscard(ex->held[i]);
			ex->held[i] = NULL;
		}
	}
	else
	{
		if (!other)
			explain_abort(ex, g, e, retry || redirect == NULL ? refusal : redirect);
		group_final(h, g, e);
	}
}

/*
 * A reply from node for queue entry `entry` (a command index, or the
 * RQ_ASKING of a redirection): redirect, retry, hold or make it final.
 * Redirections and retries never reach the caller.
 */
void
RedisClusterReply(RedisExchangeState *ex, RedisNode *node, int entry,
				  redisReply *reply)
{
	RedisHandle *h = ex->h;
	RedisCmdInfo *cmd;
	RedisNode  *target;
	int			slot;

	if (entry == RQ_ASKING)
	{
		RedisReplyDiscard(reply);	/* a refusal shows in the next reply */
		return;
	}
	cmd = &h->cmds[entry];
	if (cmd->group >= 0)
	{
		ex->held[entry] = reply;
		if (cmd->is_exec)
			resolve_group(ex, cmd->group, entry, node);
		return;
	}
	switch (classify(h, node, reply, &slot, &target))
	{
		case REDIR_MOVED:
			count_redirect(ex, entry, reply);
			h->slots[slot] = (int16) RedisNodeIndex(h, target);
			h->map_stale = true;
			RedisReplyDiscard(reply);
			send_cmd(ex->conn, h, entry, target, false);
			return;
		case REDIR_ASK:
			count_redirect(ex, entry, reply);
			RedisReplyDiscard(reply);
			send_cmd(ex->conn, h, entry, target, true);
			return;
		case REDIR_RETRY:
			if (!may_run_late(h, entry))
				explain_no_retry(reply, cmd->slot);
			else if (schedule_retry(ex, entry, reply))
			{
				RedisReplyDiscard(reply);
				return;
			}
			break;
		case REDIR_NONE:
			break;
	}
	ex->held[entry] = reply;
	cmd->final = true;
}

/*
 * Send again the commands whose retry is due, each to the node now serving
 * its slot.  Returns when the next retry is due (DT_NOEND: none).
 */
TimestampTz
RedisClusterRetries(RedisExchangeState *ex)
{
	RedisHandle *h = ex->h;
	TimestampTz now;
	TimestampTz next = DT_NOEND;
	ListCell   *lc;

	if (ex->retries == NIL)
		return DT_NOEND;
	now = GetCurrentTimestamp();
	foreach(lc, ex->retries)
	{
		RedisRetry *rt = lfirst(lc);
		RedisCmdInfo *cmd = &h->cmds[rt->idx];
		RedisNode  *node;

		if (rt->due > now)
		{
			next = Min(next, rt->due);
			continue;
		}
		node = cmd->slot >= 0 ? slot_owner(ex->conn, h, cmd->slot) : h->nodes[cmd->node];
		if (cmd->group == rt->idx)
			resend_group(ex, rt->idx, node, false);
		else
			send_cmd(ex->conn, h, rt->idx, node, false);
		ex->retries = foreach_delete_current(ex->retries, lc);
	}
	return next;
}

/* ----------------------------------------------------------------
 *		Sentinel
 * ----------------------------------------------------------------
 */

/* A node of no handle, for asking one sentinel. */
static RedisNode *
sentinel_node(RedisAddr *a)
{
	RedisNode  *node = palloc0(sizeof(RedisNode));

	node->index = -1;
	node->host = a->host;
	node->port = a->port;
	node->addr = psprintf("%s:%d", a->host, a->port);
	return node;
}

/* The port a string reply holds (1 to 65535), or 0. */
static int
reply_port(redisReply *r)
{
	char	   *end;
	long		port;

	if (r->type != REDIS_REPLY_STRING || r->len == 0)
		return 0;
	port = strtol(r->str, &end, 10);
	return (*end == '\0' && port >= 1 && port <= 65535) ? (int) port : 0;
}

/*
 * Whether sentinel s answers PING with PONG, as a sentinel does; else why
 * not, in *error.  Asked first for a user under the trust rule: the
 * sentinels are any addresses a non-superuser named, and the master name
 * (hers too) is sent to them without AUTH; a line-based service there
 * (memcached, a mail server) would run it as a command.
 */
static bool
speaks_resp(PgpolyConnection *conn, RedisHandle *h, RedisNode *s, char **error)
{
	const char *argv[1] = {"PING"};
	redisReply *r = RedisNodeCall(conn, h, s, 1, argv, error);

	if (r == NULL)
		return false;
	if (r->type == REDIS_REPLY_STATUS && r->len == 4 && memcmp(r->str, "PONG", 4) == 0)
		return true;
	/* An error (a sentinel's requirepass: NOAUTH) is quoted, as ask_sentinels does. */
	*error = r->type == REDIS_REPLY_ERROR ?
		psprintf("answered PING with %s, not PONG as a sentinel does",
				 PgpolyPrintable(r->str, r->len, 200)) :
		pstrdup("did not answer PING as a sentinel does");
	return false;
}

/*
 * Ask sentinel node s (of no handle: freed here, ERROR or not) the
 * question in argv (3 words): its reply, or NULL with *error set.
 * (Not inlined: the PG_TRY would see its caller's locals clobbered.)
 */
static pg_noinline redisReply *
ask_sentinel(PgpolyConnection *conn, RedisHandle *h, RedisNode *s,
			 const char **argv, char **error)
{
	redisReply *volatile r = NULL;

	PG_TRY();
	{
		if (RedisNodeOpen(conn, h, s, false, error) &&
			(!h->probe || speaks_resp(conn, h, s, error)))
			r = RedisNodeCall(conn, h, s, 3, argv, error);
	}
	PG_CATCH();
	{
		RedisNodeFree(h, s);
		PG_RE_THROW();
	}
	PG_END_TRY();
	RedisNodeFree(h, s);		/* its reader's buffer is the handle's memory */
	return r;
}

/*
 * Ask the sentinels, in order, for the address of master; the first that
 * names it wins.  false (what each said appended to errors) if none does.
 */
static bool
ask_sentinels(PgpolyConnection *conn, RedisHandle *h, RedisTopology *topo,
			  RedisAddr *primary, StringInfo errors)
{
	const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", topo->master};
	ListCell   *lc;

	foreach(lc, topo->addrs)
	{
		RedisAddr  *a = lfirst(lc);
		RedisNode  *s = sentinel_node(a);
		char	   *error = NULL;
		redisReply *r = ask_sentinel(conn, h, s, argv, &error);

		if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
			(primary->host = reply_text(r->element[0])) != NULL &&
			(primary->port = reply_port(r->element[1])) > 0)
			return true;
		if (error == NULL)
			error = r && r->type == REDIS_REPLY_NIL ?
				psprintf("does not know master \"%s\"", topo->master) :
				r && r->type == REDIS_REPLY_ERROR ? psprintf("answered %s", PgpolyPrintable(r->str, r->len, 200)) :
				pstrdup("answered with an unexpected reply");
		appendStringInfo(errors, "%ssentinel %s:%d %s", errors->len ? "; " : "",
						 a->host, a->port, error);
	}
	return false;
}

/* Whether node's ROLE is master; else why not, in *error. */
static bool
is_primary(PgpolyConnection *conn, RedisHandle *h, RedisNode *node, char **error)
{
	const char *argv[1] = {"ROLE"};
	redisReply *r = RedisNodeCall(conn, h, node, 1, argv, error);
	char	   *role;

	if (r == NULL)
		return false;
	role = (r->type == REDIS_REPLY_ARRAY && r->elements > 0) ?
		reply_text(r->element[0]) : NULL;
	if (role && strcmp(role, "master") == 0)
		return true;
	*error = psprintf("is not a primary (ROLE: %s)", role ? role : "?");
	return false;
}

/*
 * Between requests: if the primary closed h's idle connection (Sentinel
 * has a demoted primary close its clients so that they ask again, as the
 * Sentinel client guidelines say; also Redis' timeout setting or a
 * restart) and it held no WATCH of this transaction, ask the sentinels for
 * the primary and connect to it.  Otherwise, at most every
 * sentinel_check_ms: ask the sentinels
 * whether h's primary is still the one they name, and if they name another,
 * move to it before the request starts.  A Sentinel failover leaves the old
 * primary accepting writes until the sentinels demote it, seconds after
 * they promoted the replica; writes it takes meanwhile are lost when it
 * resyncs.  When no sentinel answers, the primary h has stays in use (the
 * request itself tells whether it is alive).  Returns the new primary, or
 * NULL when it did not move.
 */
RedisNode *
RedisSentinelRecheck(PgpolyConnection *conn, RedisHandle *h)
{
	RedisTopology topo;
	RedisAddr	a;
	RedisNode  *node;
	StringInfoData errors;
	TimestampTz now;

	if (h->kind != RTOPO_SENTINEL || h->nnodes != 1)
		return NULL;
	topo.kind = RTOPO_SENTINEL;
	topo.addrs = h->seeds;
	topo.master = h->master;
	topo.check_ms = h->check_ms;
	node = h->nodes[0];
	if (node->ctx != NULL && !node->watched && RedisPeerClosed(conn))
	{
		ereport(DEBUG1,
				(errmsg_internal("pgpoly: the primary of Redis server \"%s\" at %s closed the idle connection; asking the sentinels",
								 conn->servername, node->addr)));
		RedisNodeClose(h, node);
		node = RedisSentinelPrimary(conn, h, &topo);
		node->peer_reopen = node->session;	/* see RedisAppendToNode */
		return node;
	}
	if (h->check_ms == 0)
		return NULL;
	now = GetCurrentTimestamp();
	if (now < h->next_check)
		return NULL;
	h->next_check = TimestampTzPlusMilliseconds(now, h->check_ms);
	initStringInfo(&errors);
	if (!ask_sentinels(conn, h, &topo, &a, &errors))
	{
		ereport(DEBUG1,
				(errmsg_internal("pgpoly: no sentinel of Redis server \"%s\" answered; staying on %s",
								 conn->servername, node->addr),
				 errdetail_internal("%s", errors.data)));
		return NULL;
	}
	if (a.port == node->port && strcmp(a.host, node->host) == 0)
		return NULL;
	ereport(DEBUG1,
			(errmsg_internal("pgpoly: the sentinels of Redis server \"%s\" moved its primary from %s to %s:%d",
							 conn->servername, node->addr, a.host, a.port)));
	RedisNodeClose(h, node);
	return RedisSentinelPrimary(conn, h, &topo);
}

/*
 * Find and open Sentinel's primary for topo, as the Sentinel client
 * guidelines say: the address from the first sentinel that knows it, then
 * ROLE on it, which must be master (a failover may be under way: then ask
 * again, within connect_timeout_ms).  The node becomes h's only node.
 */
RedisNode *
RedisSentinelPrimary(PgpolyConnection *conn, RedisHandle *h, RedisTopology *topo)
{
	TimestampTz deadline = PgpolyDeadline(conn->connect_timeout_ms);
	StringInfoData errors;

	initStringInfo(&errors);
	for (;;)
	{
		RedisAddr	a;
		char	   *error = NULL;

		resetStringInfo(&errors);
		if (ask_sentinels(conn, h, topo, &a, &errors))
		{
			RedisNode  *node;

			/* forget the primary of an earlier try, or the one replaced */
			while (h->nnodes > 0)
				RedisNodeFree(h, h->nodes[--h->nnodes]);
			node = RedisNodeGet(h, a.host, a.port);
			if (RedisNodeOpen(conn, h, node, true, &error) &&
				is_primary(conn, h, node, &error))
			{
				h->next_check = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															h->check_ms);
				return node;
			}
			RedisNodeClose(h, node);
			appendStringInfo(&errors, "%s (named by the sentinels) %s", node->addr, error);
		}
		if (GetCurrentTimestamp() >= deadline)
			break;
		(void) PgpolyWaitSocket(PGINVALID_SOCKET, 0, deadline, 100);
	}
	ereport(ERROR,
			(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
			 errmsg("could not find the primary \"%s\" of Redis server \"%s\" through its sentinels",
					topo->master, conn->servername),
			 errdetail("%s", errors.data),
			 errhint("Check the server options sentinels and sentinel_master, and that a failover is not stuck.")));
	return NULL;				/* keep compiler quiet */
}

/* ----------------------------------------------------------------
 *		Scans while slots move
 * ----------------------------------------------------------------
 */

/* A slot being migrated, as one node's own CLUSTER NODES line says. */
typedef struct ViewMark
{
	int			slot;
	int			node;			/* the node that said it (addrs index) */
	char	   *peer;			/* the other node's id */
	bool		migrating;		/* node -> peer; else peer -> node */
} ViewMark;

/* What the primaries say of their slots: who owns what, what is moving. */
struct RedisClusterView
{
	int			naddrs;
	char	  **addrs;			/* the nodes asked, by index */
	int16	   *owner;			/* REDIS_NSLOTS addrs indexes, -1: none */
	List	   *ids;			/* node id, address: pairs of char * */
	List	   *marks;			/* ViewMark * */
};

/* The address in a CLUSTER NODES line ("ip:port@cport[,host]"); asked: default host. */
static char *
nodes_line_addr(char *field, const char *asked)
{
	char	   *at = strchr(field, '@');
	RedisAddr	a;

	if (at)
		*at = '\0';
	if (field[0] == ':')
		return psprintf("%s%s", asked, field);
	if (!RedisParseAddr(field, strlen(field), &a))
		return pstrdup(field);
	return strchr(a.host, ':') ? psprintf("[%s]:%d", a.host, a.port) :
		psprintf("%s:%d", a.host, a.port);
}

/* Record the slots and migration marks of node's own line (the slot fields). */
static void
view_slots(RedisClusterView *v, int node, char *slots)
{
	char	   *save = NULL;

	for (char *tok = strtok_r(slots, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
	{
		if (tok[0] == '[')
		{
			ViewMark   *m = palloc(sizeof(ViewMark));
			char	   *arrow = strstr(tok, "->-");

			m->slot = atoi(tok + 1);
			m->node = node;
			m->migrating = arrow != NULL;
			if (!arrow)
				arrow = strstr(tok, "-<-");
			if (arrow == NULL || m->slot < 0 || m->slot >= REDIS_NSLOTS)
				continue;
			m->peer = pnstrdup(arrow + 3, strcspn(arrow + 3, "]"));
			v->marks = lappend(v->marks, m);
		}
		else
		{
			char	   *dash = strchr(tok, '-');
			int			lo = atoi(tok);
			int			hi = dash ? atoi(dash + 1) : lo;

			for (int sl = Max(lo, 0); sl <= Min(hi, REDIS_NSLOTS - 1); sl++)
				v->owner[sl] = (int16) node;
		}
	}
}

/* Reply handler of CLUSTER NODES asked of v->addrs[index]. */
static bool
view_reply(redisReply *r, int index, void *arg)
{
	RedisClusterView *v = arg;
	char	   *text;
	char	   *save = NULL;
	RedisAddr	asked;

	if (r->type != REDIS_REPLY_STRING)
		return false;
	text = pnstrdup(r->str, r->len);
	if (!RedisParseAddr(v->addrs[index], strlen(v->addrs[index]), &asked))
		asked.host = "";
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
	{
		char	   *f[8];
		char	   *p = line;
		int			n;

		/* id addr flags master ping-sent pong-recv epoch link slots... */
		for (n = 0; n < 8 && p; n++)
		{
			f[n] = p;
			if ((p = strchr(p, ' ')) != NULL)
				*p++ = '\0';
		}
		if (n < 8)
			continue;
		v->ids = lappend(lappend(v->ids, pstrdup(f[0])),
						 nodes_line_addr(f[1], asked.host));
		if (strstr(f[2], "myself") && p)
			view_slots(v, index, p);
	}
	return false;
}

/* addrs with addr appended unless it is there already (NULL: unchanged). */
static List *
add_addr(List *addrs, const char *addr)
{
	ListCell   *lc;

	if (addr == NULL)
		return addrs;
	foreach(lc, addrs)
		if (strcmp(lfirst(lc), addr) == 0)
			return addrs;
	return lappend(addrs, (char *) addr);
}

/* What the nodes at addrs say of themselves: CLUSTER NODES, one exchange. */
static RedisClusterView *
ask_view(PgpolyConnection *conn, List *addrs)
{
	const char *argv[2] = {"CLUSTER", "NODES"};
	RedisClusterView *v;
	ListCell   *lc;
	int			i = 0;

	v = palloc0(sizeof(RedisClusterView));
	v->naddrs = list_length(addrs);
	v->addrs = palloc(sizeof(char *) * Max(v->naddrs, 1));
	v->owner = palloc(sizeof(int16) * REDIS_NSLOTS);
	memset(v->owner, 0xff, sizeof(int16) * REDIS_NSLOTS);
	foreach(lc, addrs)
	{
		v->addrs[i++] = pstrdup(lfirst(lc));
		RedisAppendToNode(conn, lfirst(lc), 2, argv, NULL);
	}
	RedisExchange(conn, v->naddrs, view_reply, v);
	return v;
}

/* The first slot no node of v says it serves, or -1. */
static int
view_unserved(RedisClusterView *v)
{
	for (int s = 0; s < REDIS_NSLOTS; s++)
		if (v->owner[s] < 0)
			return s;
	return -1;
}

/*
 * What the primaries say of themselves (CLUSTER NODES): the slots each
 * owns and those it is migrating or importing, asked of the nodes at addrs
 * and of every primary of the slot map.  Their claims must cover every
 * slot: a slot no node claims was handed to a node the map does not know
 * yet (a reshard to a new node needs no MOVED to happen), so the map is
 * asked again and the view with it; ERROR if a slot stays unserved.  Taken
 * before and after a full scan: keys can only have moved between nodes in
 * the slots where the two differ or a migration was under way.  NULL on a
 * connection that is not a cluster.
 */
RedisClusterView *
RedisClusterViewOf(PgpolyConnection *conn, List *addrs)
{
	RedisClusterView *v;
	int			slot;

	if (!RedisIsCluster(conn))
		return NULL;
	for (int attempt = 0;; attempt++)
	{
		List	   *ask = list_copy(addrs);
		ListCell   *lc;

		foreach(lc, RedisPrimaryNodes(conn))
			ask = add_addr(ask, lfirst(lc));
		v = ask_view(conn, ask);
		if ((slot = view_unserved(v)) < 0)
			return v;
		if (attempt == 2)
			unserved_slot(conn, conn->handle, slot);
		((RedisHandle *) conn->handle)->map_stale = true;
	}
}

/* The addresses of the nodes of v that serve slots: where a full scan runs. */
List *
RedisClusterViewNodes(RedisClusterView *v)
{
	bool	   *serves = palloc0(sizeof(bool) * Max(v->naddrs, 1));
	List	   *result = NIL;

	for (int s = 0; s < REDIS_NSLOTS; s++)
		serves[v->owner[s]] = true; /* every slot has an owner */
	for (int i = 0; i < v->naddrs; i++)
		if (serves[i])
			result = lappend(result, v->addrs[i]);
	return result;
}

/* The address of node id in v, or NULL. */
static const char *
view_id_addr(RedisClusterView *v, const char *id)
{
	for (int i = 0; i + 1 < list_length(v->ids); i += 2)
		if (strcmp(list_nth(v->ids, i), id) == 0)
			return list_nth(v->ids, i + 1);
	return NULL;
}

/* Add the nodes v's marks name for each marked slot: sources, or targets. */
static void
add_marks(List **lists, RedisClusterView *v, bool sources)
{
	ListCell   *lc;

	foreach(lc, v->marks)
	{
		ViewMark   *m = lfirst(lc);
		const char *self = v->addrs[m->node];
		const char *peer = view_id_addr(v, m->peer);

		lists[m->slot] = add_addr(lists[m->slot], (m->migrating == sources) ? self : peer);
	}
}

/* Arguments of the reply handler of GETKEYSINSLOT. */
typedef struct SlotKeys
{
	int		   *asked;			/* count asked of each command */
	bool	   *full;			/* the reply filled it: ask for more */
	RedisMovedKey add;
	void	   *arg;
} SlotKeys;

/* Reply handler of CLUSTER GETKEYSINSLOT: every key to add(). */
static bool
slot_keys_reply(redisReply *r, int index, void *arg)
{
	SlotKeys   *sk = arg;

	if (r->type != REDIS_REPLY_ARRAY)
		return false;			/* a node that left: the scan saw its keys */
	sk->full[index] = (int) r->elements >= sk->asked[index];
	for (size_t i = 0; i < r->elements; i++)
		if (r->element[i]->type == REDIS_REPLY_STRING)
			sk->add(r->element[i]->str, r->element[i]->len, sk->arg);
	return false;
}

/*
 * Ask the k-th node of each slot's list for all the slot's keys (doubling
 * the count until a reply does not fill it), one exchange per count.
 */
static void
ask_slot_keys(PgpolyConnection *conn, List **lists, int k, RedisMovedKey add,
			  void *arg)
{
	int			count = 1000;
	bool	   *again = palloc(sizeof(bool) * REDIS_NSLOTS);

	for (int s = 0; s < REDIS_NSLOTS; s++)
		again[s] = list_length(lists[s]) > k;
	for (;;)
	{
		SlotKeys	sk = {NULL, NULL, add, arg};
		int		   *slot_of = palloc(sizeof(int) * REDIS_NSLOTS);
		char		num[16],
					cnt[16];
		const char *argv[4] = {"CLUSTER", "GETKEYSINSLOT", num, cnt};
		int			n = 0;

		snprintf(cnt, sizeof(cnt), "%d", count);
		for (int s = 0; s < REDIS_NSLOTS; s++)
			if (again[s])
			{
				snprintf(num, sizeof(num), "%d", s);
				RedisAppendToNode(conn, list_nth(lists[s], k), 4, argv, NULL);
				slot_of[n++] = s;
			}
		if (n == 0)
			break;
		sk.asked = palloc(sizeof(int) * n);
		sk.full = palloc0(sizeof(bool) * n);
		for (int i = 0; i < n; i++)
			sk.asked[i] = count;
		RedisExchange(conn, n, slot_keys_reply, &sk);
		memset(again, 0, sizeof(bool) * REDIS_NSLOTS);
		for (int i = 0; i < n; i++)
			again[slot_of[i]] = sk.full[i];
		count = count > INT_MAX / 2 ? INT_MAX : count * 2;
	}
}

/*
 * The keys a full scan might have missed because they moved between nodes
 * while it ran (before/after: views taken at its start and end), handed to
 * add(): every key of each slot whose owner changed or that was being
 * migrated, asked of the nodes it moves from before the nodes it moves to
 * (keys only move that way, so a key moving meanwhile is still met once).
 * Nothing to do, and no request, when the slots stood still.
 */
void
RedisClusterMovedKeys(PgpolyConnection *conn, RedisClusterView *before,
					  RedisClusterView *after, RedisMovedKey add, void *arg)
{
	List	  **lists = palloc0(sizeof(List *) * REDIS_NSLOTS);
	int			depth = 0;

	for (int s = 0; s < REDIS_NSLOTS; s++)
	{
		const char *was = before->owner[s] >= 0 ? before->addrs[before->owner[s]] : NULL;
		const char *now = after->owner[s] >= 0 ? after->addrs[after->owner[s]] : NULL;

		if ((was == NULL) != (now == NULL) || (was && strcmp(was, now) != 0))
		{
			lists[s] = add_addr(lists[s], was);
			lists[s] = add_addr(lists[s], now);
		}
	}
	add_marks(lists, before, true);
	add_marks(lists, after, true);
	add_marks(lists, before, false);
	add_marks(lists, after, false);
	for (int s = 0; s < REDIS_NSLOTS; s++)
		depth = Max(depth, list_length(lists[s]));
	for (int k = 0; k < depth; k++)
		ask_slot_keys(conn, lists, k, add, arg);
}
