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
 * here at CREATE/ALTER SERVER time: exactly one of host/port, cluster or
 * nodes, sentinels with sentinel_master.
 *
 * fdw/redis_cluster.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <hiredis/hiredis.h>

#include "utils/builtins.h"

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
 * together.
 */
Datum
pgpoly_redis_key_slot(PG_FUNCTION_ARGS)
{
	text	   *key = PG_GETARG_TEXT_PP(0);

	PG_RETURN_INT32(RedisKeySlot(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key)));
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
	"Give exactly one topology: host and port (one server); cluster 'true' " \
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

/* The first of host, port that options give, or NULL. */
static const char *
single_option(List *options)
{
	if (PgpolyGetOption(options, "host", NULL))
		return "host";
	if (PgpolyGetOption(options, "port", NULL))
		return "port";
	return NULL;
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
	{
		RedisAddr  *addr = palloc(sizeof(RedisAddr));

		addr->host = pstrdup(PgpolyGetOption(options, "host", "127.0.0.1"));
		addr->port = (int) PgpolyGetIntOption(options, "port", 6379);
		topo->addrs = list_make1(addr);
	}
}
