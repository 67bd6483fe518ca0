/*-------------------------------------------------------------------------
 *
 * fuzz_resp.c
 *		  Fuzz harness "resp": the Redis reply path, end to end.
 *
 * Every input plays the Redis server of one request flow of pgpoly's real
 * code: a key lookup round, a SCAN, or a pipelined write (plain or
 * MULTI/EXEC), on one of the foreign tables test/fuzz/resp.sql creates
 * (every table_type, a _ttl column, a server that sends AUTH and SELECT at
 * connect).  The bytes go through the connection set-up, the exchanges
 * (the RESP reader of redis_resp.c with its pgpoly.max_response_size
 * budget, 256kB here, building a key's fetch reply that is an array of
 * bulk strings flat, and every other reply as objects; rounds sent ahead
 * and read later), the
 * reply-pairing checks, the reply consumers and the conversion of keys and
 * values into datums.
 *
 * Input layout: byte 0 picks the table, byte 1 the flow (bits 0-1), the
 * number of keys or rows (bits 2-3, plus one) and, for reads, whether only
 * the keys are read (bit 4: SCAN alone, TYPE per key) or, for a key lookup,
 * the key and fields alone (bit 5: a hash table's HMGET, as a left join
 * reading fields does); the rest is the
 * server's script, split at "|#|" into segments: the peer
 * (resp_peer.c) answers the n-th command it receives with segment n.
 *
 * test/fuzz/fuzz_resp.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "redis.h"
#include "fuzz.h"
#include "resp_peer.h"

extern Datum pgpoly_disconnect(PG_FUNCTION_ARGS);

static const char *const TableNames[] = {
	"fz_hash", "fz_hash_ttl", "fz_string", "fz_json", "fz_zset", "fz_set",
	"fz_list", "fz_auth"
};

#define NTABLES lengthof(TableNames)

static RedisTable *Tables[NTABLES];

/* Load the tables and start the peer on the port of their server. */
static void
resp_init(void)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	for (int i = 0; i < (int) NTABLES; i++)
	{
		Oid			relid = RangeVarGetRelid(makeRangeVar(NULL, (char *) TableNames[i], -1),
											 NoLock, false);

		Tables[i] = RedisLoadTable(relid, GetUserId());
	}
	MemoryContextSwitchTo(old);
	RespPeerStart((int) PgpolyGetIntOption(Tables[0]->server->options, "port", 0));
}

/* Read every row of a scan, converting each (as a query would). */
static void
drain(RedisScan *scan, RedisTable *tbl)
{
	Datum	   *values = palloc(sizeof(Datum) * tbl->natts);
	bool	   *nulls = palloc(sizeof(bool) * tbl->natts);

	while (RedisScanNext(scan, values, nulls))
		CHECK_FOR_INTERRUPTS();
}

/* A scan of tbl reading every column, or (keyonly) only the key. */
static RedisScan *
begin_scan(RedisTable *tbl, bool keyonly)
{
	RedisScan  *scan = RedisScanBegin(tbl, RedisGetConnection(tbl),
									  !keyonly && tbl->ttl_att != 0, NIL);

	if (keyonly)
		RedisScanSetColumns(scan, RedisColumnsNeeded(tbl, list_make1_int(tbl->key_att)),
							false);
	return scan;
}

/*
 * Flow 0: a pipelined lookup of n keys; fields: reading the key and the
 * fields alone, allowed to fetch them alone (HMGET on a hash table).
 */
static void
flow_keys(RedisTable *tbl, int n, bool keyonly, bool fields)
{
	RedisScan  *scan = begin_scan(tbl, keyonly);
	char	  **keys = palloc(sizeof(char *) * n);
	size_t	   *lens = palloc(sizeof(size_t) * n);

	if (fields && !keyonly)
	{
		bool	   *needed = palloc(sizeof(bool) * tbl->natts);

		for (int i = 0; i < tbl->natts; i++)
			needed[i] = tbl->cols[i].role == RCOL_KEY ||
				tbl->cols[i].role == RCOL_FIELD;
		RedisScanSetColumns(scan, needed, false);
		RedisScanAllowFieldFetch(scan);
	}

	for (int i = 0; i < n; i++)
		keys[i] = RedisKeyFromDatum(tbl, NULL, CStringGetTextDatum(psprintf("%d", i)),
									&lens[i]);
	RedisScanSetKeys(scan, keys, lens, n);
	drain(scan, tbl);
}

/* Flow 1: a full scan (SCAN MATCH prefix*, then lookups). */
static void
flow_scan(RedisTable *tbl, bool keyonly)
{
	RedisScan  *scan = begin_scan(tbl, keyonly);

	RedisScanSetPattern(scan, psprintf("%s*", RedisGlobEscape(tbl->prefix, tbl->prefixlen)));
	drain(scan, tbl);
}

/* Flows 2 and 3: INSERT of n rows, sent atomically (MULTI/EXEC) or not. */
static void
flow_write(RedisTable *tbl, int n, bool atomic)
{
	Datum	   *values = palloc(sizeof(Datum) * tbl->natts);
	bool	   *nulls = palloc0(sizeof(bool) * tbl->natts);
	List	   *writes = NIL;

	for (int row = 0; row < n; row++)
	{
		for (int i = 0; i < tbl->natts; i++)
		{
			char	   *text = psprintf("%d", row + 1);

			nulls[i] = tbl->cols[i].role == RCOL_TTL;
			if (!nulls[i])
				values[i] = RedisTextDatum(tbl, i + 1, text, strlen(text));
		}
		writes = list_concat(writes, RedisInsertWrites(tbl, values, nulls,
													   CurrentMemoryContext));
	}
	RedisSendCommands(RedisGetConnection(tbl), writes, atomic);
}

/* One input: set the peer's script, run the chosen flow. */
static void
resp_one(const uint8_t *data, size_t size)
{
	RedisTable *tbl;
	int			n;

	if (size < 2)
		return;
	tbl = Tables[data[0] % NTABLES];
	n = 1 + ((data[1] >> 2) & 3);
	RespPeerScript((const char *) data + 2, size - 2, "|#|", 3);
	switch (data[1] & 3)
	{
		case 0:
			flow_keys(tbl, n, (data[1] & 16) != 0, (data[1] & 32) != 0);
			break;
		case 1:
			flow_scan(tbl, (data[1] & 16) != 0);
			break;
		default:
			flow_write(tbl, n, (data[1] & 3) == 2);
			break;
	}
}

/* After each input: the peer resets its end (no TIME_WAIT anywhere). */
static void
resp_done(void)
{
	RespPeerReset();
}

/* Then the cached connections are closed, as pgpoly.disconnect() does. */
static void
resp_after(void)
{
	LOCAL_FCINFO(fcinfo, 1);

	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = (Datum) 0;
	fcinfo->args[0].isnull = true;
	(void) pgpoly_disconnect(fcinfo);
}

const PgpolyFuzzHarness pgpoly_fuzz_resp = {
	"resp", resp_init, resp_one, resp_done, resp_after
};
