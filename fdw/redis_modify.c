/*-------------------------------------------------------------------------
 *
 * redis_modify.c
 *		  INSERT, UPDATE and DELETE on Redis tables.
 *
 * Each row change becomes one or two RedisWrite: what the change means to
 * a reader (the overlay kind and items) plus the Redis commands that
 * perform it.  With write_mode 'transactional' the writes go to the core's
 * transaction buffer and are sent at pre-commit by RedisFlushWrites() as one
 * pipelined MULTI ... EXEC per server, or on a Redis Cluster one per hash
 * slot (Redis runs a MULTI/EXEC only within one slot), all of them in one
 * exchange; with 'immediate' they are sent in pipelined batches of
 * batch_size while the statement runs.
 *
 * Semantics (documented in the README):
 *	- INSERT of an existing key overwrites the table's columns; hash fields
 *	  the table does not map are kept.  NULL removes a hash field.
 *	- UPDATE writes only the columns set; a changed key moves the key
 *	  (RENAME for hashes, so unmapped fields and TTL move along; a list
 *	  element moves to the end of the other list).  RENAME cannot cross
 *	  hash slots: on a cluster a hash moved to another slot is written
 *	  whole at its new key and deleted at the old one.
 *	- DELETE removes the key (zset/set: the member; list: the first equal
 *	  element).
 *	- INSERT ... ON CONFLICT DO NOTHING never overwrites: the existence
 *	  test and the write are one atomic command.  A hash, string or json
 *	  row conflicts with an existing key of any type (SET ... NX for
 *	  string/json; for a hash a script: EXISTS, HSET, EXPIRE).  A set or
 *	  zset row conflicts with the member already in the key's set (SADD,
 *	  ZADD NX; with ttl_seconds a script, so that a skipped member leaves
 *	  the key's TTL alone).  A list element has no identity: ON CONFLICT is
 *	  refused for lists.  In write_mode 'transactional' the same
 *	  conditional commands are buffered; which rows count as inserted is
 *	  decided when the statement runs, against Redis and the transaction's
 *	  buffered writes (RedisRowsExist, RedisIdentityExists).
 *	- Nothing is dropped silently: a value Redis cannot hold (NULL string
 *	  value, a hash with no fields, a write to _ttl) is an ERROR.
 *
 * fdw/redis_modify.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <hiredis/hiredis.h>

#include "utils/json.h"
#include "utils/memutils.h"

#include "redis.h"

/*
 * Lua of a hash INSERT ... ON CONFLICT DO NOTHING: KEYS[1] the key,
 * ARGV[1] the TTL in seconds ('' for none), then field/value pairs.
 * Returns 1 when it inserted, 0 when the key existed.
 */
static const char HashNxScript[] =
"if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end "
"redis.call('HSET', KEYS[1], unpack(ARGV, 2)) "
"if ARGV[1] ~= '' then redis.call('EXPIRE', KEYS[1], ARGV[1]) end "
"return 1";

/*
 * Lua of a set/zset member INSERT ... ON CONFLICT DO NOTHING with a TTL:
 * KEYS[1] the key, ARGV[1] the TTL, ARGV[2] the member, ARGV[3] the score
 * (zset).  The TTL is set only when the member was added.
 */
static const char MemberNxScript[] =
"local n "
"if #ARGV == 3 then n = redis.call('ZADD', KEYS[1], 'NX', ARGV[3], ARGV[2]) "
"else n = redis.call('SADD', KEYS[1], ARGV[2]) end "
"if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end "
"return n";

/* A RedisWrite under construction, in the writes' memory context. */
static RedisWrite *
new_write(RedisTable *tbl, RedisWriteKind kind, char *key, size_t keylen)
{
	RedisWrite *w = palloc0(sizeof(RedisWrite));

	w->kind = kind;
	w->key = key;
	w->keylen = keylen;
	w->tbl = tbl;
	return w;
}

/* Add a command with argc arguments to w; the caller fills them. */
static RedisCmd *
add_cmd(RedisWrite *w, int argc)
{
	RedisCmd   *c;

	w->cmds = w->cmds ? repalloc(w->cmds, sizeof(RedisCmd) * (w->ncmds + 1)) :
		palloc(sizeof(RedisCmd));
	c = &w->cmds[w->ncmds++];
	c->argc = argc;
	c->argv = palloc(sizeof(char *) * argc);
	c->lens = palloc(sizeof(size_t) * argc);
	return c;
}

/* Set argument i of c to s (NUL-terminated: a name or a number). */
static void
set_arg(RedisCmd *c, int i, const char *s)
{
	c->argv[i] = (char *) s;
	c->lens[i] = strlen(s);
}

/* Set argument i of c to the len bytes of s (a value: may hold NULs). */
static void
set_arg_len(RedisCmd *c, int i, const char *s, size_t len)
{
	c->argv[i] = (char *) s;
	c->lens[i] = len;
}

/* Set argument i of c to the key of w. */
static void
set_key(RedisCmd *c, int i, RedisWrite *w)
{
	c->argv[i] = w->key;
	c->lens[i] = w->keylen;
}

/* Add EXPIRE key ttl_seconds when the table has a TTL. */
static void
add_expire(RedisWrite *w)
{
	RedisCmd   *c;

	if (w->tbl->ttl_seconds <= 0)
		return;
	c = add_cmd(w, 3);
	set_arg(c, 0, "EXPIRE");
	set_key(c, 1, w);
	set_arg(c, 2, psprintf("%d", w->tbl->ttl_seconds));
}

/* ERROR for a value Redis cannot hold. */
static void
reject_null(RedisTable *tbl, const char *colname, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_NOT_NULL_VIOLATION),
			 errmsg("column \"%s\" of foreign table \"%s\" cannot be NULL",
					colname, tbl->relname),
			 errdetail("%s", why)));
}

/* Whether column att is written by this change (INSERT: all). */
static bool
is_written(Bitmapset *updated, AttrNumber att)
{
	return updated == NULL || bms_is_member(att, updated);
}

/*
 * Hash write for a new full row (values/nulls): items for the overlay,
 * HSET of the written non-NULL fields, HDEL of the written NULL ones.
 */
static void
hash_put(RedisWrite *w, Datum *values, bool *nulls, Bitmapset *updated)
{
	RedisTable *tbl = w->tbl;
	RedisCmd   *hset;
	RedisCmd   *hdel;
	int			nset = 0;
	int			ndel = 0;
	int			i;

	w->items = palloc(sizeof(RedisItem) * tbl->natts);
	hset = add_cmd(w, 2 + 2 * tbl->natts);
	hdel = add_cmd(w, 2 + tbl->natts);
	hset = &w->cmds[w->ncmds - 2];	/* add_cmd may have moved the array */
	for (i = 0; i < tbl->natts; i++)
	{
		RedisColumn *col = &tbl->cols[i];
		char	   *text;
		size_t		len;

		if (col->role != RCOL_FIELD)
			continue;
		if (nulls[i])
		{
			if (is_written(updated, i + 1))
				set_arg(hdel, 2 + ndel++, col->field);
			continue;
		}
		text = RedisDatumText(tbl, i + 1, values[i], &len);
		w->items[w->nitems++] = (RedisItem)
		{
			col->field, col->fieldlen, text, len
		};
		if (is_written(updated, i + 1))
		{
			set_arg(hset, 2 + 2 * nset, col->field);
			set_arg_len(hset, 3 + 2 * nset++, text, len);
		}
	}
	if (updated == NULL && w->nitems == 0)
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("cannot store a row with only NULL fields in Redis hash table \"%s\"",
						tbl->relname),
				 errdetail("Redis has no empty hashes: the key \"%s\" would not exist.",
						   PgpolyPrintable(w->key, w->keylen, 200))));
	set_arg(hset, 0, "HSET");
	set_key(hset, 1, w);
	hset->argc = 2 + 2 * nset;
	set_arg(hdel, 0, "HDEL");
	set_key(hdel, 1, w);
	hdel->argc = 2 + ndel;
	/* Drop commands with no fields: Redis rejects them. */
	if (ndel == 0)
		w->ncmds--;
	if (nset == 0)
	{
		if (ndel > 0)
			w->cmds[w->ncmds - 2] = w->cmds[w->ncmds - 1];
		w->ncmds--;
	}
}

/* JSON object text of the table's field columns. */
static char *
json_object_text(RedisTable *tbl, Datum *values, bool *nulls)
{
	StringInfoData buf;
	bool		first = true;
	int			i;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (i = 0; i < tbl->natts; i++)
	{
		RedisColumn *col = &tbl->cols[i];

		if (col->role != RCOL_FIELD)
			continue;
		if (!first)
			appendStringInfoChar(&buf, ',');
		first = false;
		escape_json(&buf, col->field);
		appendStringInfoChar(&buf, ':');
		PgpolyJsonAppendValue(&buf, values[i], col->typid, nulls[i]);
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/* string/json write: SET key value [EX ttl]. */
static void
string_put(RedisWrite *w, Datum *values, bool *nulls)
{
	RedisTable *tbl = w->tbl;
	RedisCmd   *c;
	char	   *text;
	size_t		len;

	if (tbl->type == REDIS_JSON)
	{
		text = json_object_text(tbl, values, nulls);
		len = strlen(text);		/* JSON we wrote: no NULs */
	}
	else
	{
		if (nulls[tbl->value_att - 1])
			reject_null(tbl, tbl->cols[tbl->value_att - 1].name,
						"A Redis string cannot hold NULL; DELETE the row instead.");
		text = RedisDatumText(tbl, tbl->value_att, values[tbl->value_att - 1], &len);
	}
	w->items = palloc(sizeof(RedisItem));
	w->items[0] = (RedisItem)
	{
		text, len, NULL, 0
	};
	w->nitems = 1;
	c = add_cmd(w, tbl->ttl_seconds > 0 ? 5 : 3);
	set_arg(c, 0, "SET");
	set_key(c, 1, w);
	set_arg_len(c, 2, text, len);
	if (tbl->ttl_seconds > 0)
	{
		set_arg(c, 3, "EX");
		set_arg(c, 4, psprintf("%d", tbl->ttl_seconds));
	}
}

/* Stored form of a collection column that must not be NULL; *len set. */
static char *
required_text(RedisTable *tbl, AttrNumber att, Datum *values, bool *nulls,
			  size_t *len)
{
	if (nulls[att - 1])
		reject_null(tbl, tbl->cols[att - 1].name,
					"Redis collections cannot hold NULL elements.");
	return RedisDatumText(tbl, att, values[att - 1], len);
}

/*
 * The element of a row: a = member (zset, set) or value (list), with its
 * length; b = the score of a zset member when score is asked for.
 */
static RedisItem
row_element(RedisTable *tbl, Datum *values, bool *nulls, bool score)
{
	RedisItem	it = {NULL, 0, NULL, 0};

	it.a = required_text(tbl, tbl->type == REDIS_LIST ? tbl->value_att : tbl->member_att,
						 values, nulls, &it.alen);
	if (score && tbl->type == REDIS_ZSET)
		it.b = required_text(tbl, tbl->score_att, values, nulls, &it.blen);
	return it;
}

/*
 * zset/set/list element write (add, remove, append, set, remove first) of
 * elem (see row_element).
 */
static RedisWrite *
element_write(RedisTable *tbl, RedisWriteKind kind, char *key, size_t keylen,
			  RedisItem elem, long idx)
{
	static const char *const zset_cmds[] = {"ZADD", "ZREM"};
	static const char *const set_cmds[] = {"SADD", "SREM"};
	RedisWrite *w = new_write(tbl, kind, key, keylen);
	RedisCmd   *c;
	char	   *member = elem.a;
	size_t		mlen = elem.alen;

	w->item = elem;
	w->idx = idx;
	switch (kind)
	{
		case RW_ADD:
		case RW_REM:
			if (tbl->type == REDIS_ZSET && kind == RW_ADD)
			{
				c = add_cmd(w, 4);
				set_arg_len(c, 2, elem.b, elem.blen);
				set_arg_len(c, 3, member, mlen);
			}
			else
			{
				c = add_cmd(w, 3);
				set_arg_len(c, 2, member, mlen);
			}
			set_arg(c, 0, (tbl->type == REDIS_ZSET ? zset_cmds : set_cmds)[kind == RW_REM]);
			break;
		case RW_APPEND:
			c = add_cmd(w, 3);
			set_arg(c, 0, "RPUSH");
			set_arg_len(c, 2, member, mlen);
			break;
		case RW_SET_IDX:
			c = add_cmd(w, 4);
			set_arg(c, 0, "LSET");
			set_arg(c, 2, psprintf("%ld", idx));
			set_arg_len(c, 3, member, mlen);
			break;
		case RW_REM_FIRST:
			c = add_cmd(w, 4);
			set_arg(c, 0, "LREM");
			set_arg(c, 2, "1");
			set_arg_len(c, 3, member, mlen);
			break;
		default:
			elog(ERROR, "unexpected element write kind %d", (int) kind);
	}
	set_key(c, 1, w);
	if (kind == RW_ADD || kind == RW_APPEND)
		add_expire(w);
	return w;
}

/* Key of a full row; NULL keys are rejected. */
static char *
row_key(RedisTable *tbl, Datum *values, bool *nulls, size_t *len)
{
	if (nulls[tbl->key_att - 1])
		reject_null(tbl, tbl->cols[tbl->key_att - 1].name,
					"The key column names the Redis key.");
	return RedisKeyFromDatum(tbl, NULL, values[tbl->key_att - 1], len);
}

/* Refuse writes to the read-only _ttl column. */
static void
check_ttl_untouched(RedisTable *tbl, bool *nulls, Bitmapset *updated)
{
	if (tbl->ttl_att == 0)
		return;
	if (updated ? bms_is_member(tbl->ttl_att, updated) : !nulls[tbl->ttl_att - 1])
		ereport(ERROR,
				(errcode(ERRCODE_FDW_INVALID_ATTRIBUTE_VALUE),
				 errmsg("column \"_ttl\" of foreign table \"%s\" is read-only",
						tbl->relname),
				 errhint("Set the table option ttl_seconds to give written keys an expiry.")));
}

/* The writes of an INSERT of one full row. */
List *
RedisInsertWrites(RedisTable *tbl, Datum *values, bool *nulls)
{
	size_t		keylen;
	char	   *key;
	RedisWrite *w;

	check_ttl_untouched(tbl, nulls, NULL);
	key = row_key(tbl, values, nulls, &keylen);
	switch (tbl->type)
	{
		case REDIS_HASH:
			w = new_write(tbl, RW_PUT, key, keylen);
			hash_put(w, values, nulls, NULL);
			add_expire(w);
			return list_make1(w);
		case REDIS_STRING:
		case REDIS_JSON:
			w = new_write(tbl, RW_PUT, key, keylen);
			string_put(w, values, nulls);
			return list_make1(w);
		case REDIS_ZSET:
		case REDIS_SET:
			return list_make1(element_write(tbl, RW_ADD, key, keylen,
											row_element(tbl, values, nulls, true), 0));
		case REDIS_LIST:
			return list_make1(element_write(tbl, RW_APPEND, key, keylen,
											row_element(tbl, values, nulls, false), 0));
	}
	return NIL;
}

/* The writes of a DELETE; old holds the row identity (key, member, ...). */
List *
RedisDeleteWrites(RedisTable *tbl, Datum *old, bool *oldnulls)
{
	size_t		keylen;
	char	   *key = row_key(tbl, old, oldnulls, &keylen);
	RedisWrite *w;
	RedisCmd   *c;

	switch (tbl->type)
	{
		case REDIS_ZSET:
		case REDIS_SET:
			return list_make1(element_write(tbl, RW_REM, key, keylen,
											row_element(tbl, old, oldnulls, false), 0));
		case REDIS_LIST:
			return list_make1(element_write(tbl, RW_REM_FIRST, key, keylen,
											row_element(tbl, old, oldnulls, false), 0));
		default:
			w = new_write(tbl, RW_DEL, key, keylen);
			c = add_cmd(w, 2);
			set_arg(c, 0, "DEL");
			set_key(c, 1, w);
			return list_make1(w);
	}
}

/*
 * Hash UPDATE: changed columns only; a changed key is RENAMEd first.  On a
 * cluster, a new key in another hash slot cannot be a RENAME target: the
 * new key gets every column of the row and the old key is deleted.
 */
static List *
hash_update(RedisTable *tbl, char *oldkey, size_t oldlen, char *key,
			size_t keylen, Datum *values, bool *nulls, Bitmapset *updated)
{
	RedisWrite *w = new_write(tbl, RW_PUT, key, keylen);
	List	   *result = NIL;

	if (oldlen != keylen || memcmp(oldkey, key, keylen) != 0)
	{
		RedisWrite *del = new_write(tbl, RW_DEL, oldkey, oldlen);
		RedisCmd   *c;

		if (tbl->cluster && RedisKeySlot(oldkey, oldlen) != RedisKeySlot(key, keylen))
		{
			c = add_cmd(del, 2);
			set_arg(c, 0, "DEL");
			set_key(c, 1, del);
			c = add_cmd(w, 2);
			set_arg(c, 0, "DEL");
			set_key(c, 1, w);
			updated = NULL;		/* write the whole row */
		}
		else
		{
			c = add_cmd(w, 3);
			set_arg(c, 0, "RENAME");
			c->argv[1] = oldkey;
			c->lens[1] = oldlen;
			set_key(c, 2, w);
		}
		result = lappend(result, del);
	}
	hash_put(w, values, nulls, updated);
	add_expire(w);
	return lappend(result, w);
}

/*
 * The writes of an UPDATE: old holds the row identity columns, values the
 * complete new row, updated the attnums the statement assigns.
 */
List *
RedisUpdateWrites(RedisTable *tbl, Datum *old, bool *oldnulls, Datum *values,
				  bool *nulls, Bitmapset *updated)
{
	size_t		oldlen;
	size_t		keylen;
	size_t		idxlen;
	char	   *oldkey = row_key(tbl, old, oldnulls, &oldlen);
	char	   *key;
	bool		moved;

	check_ttl_untouched(tbl, nulls, updated);
	key = row_key(tbl, values, nulls, &keylen);
	moved = oldlen != keylen || memcmp(oldkey, key, keylen) != 0;

	switch (tbl->type)
	{
		case REDIS_HASH:
			return hash_update(tbl, oldkey, oldlen, key, keylen, values, nulls, updated);
		case REDIS_STRING:
		case REDIS_JSON:
			{
				RedisWrite *w = new_write(tbl, RW_PUT, key, keylen);

				string_put(w, values, nulls);
				if (moved)
					return list_make2(linitial(RedisDeleteWrites(tbl, old, oldnulls)), w);
				return list_make1(w);
			}
		case REDIS_ZSET:
		case REDIS_SET:
			{
				RedisItem	member = row_element(tbl, values, nulls, true);
				RedisItem	oldmember = row_element(tbl, old, oldnulls, false);
				List	   *result = NIL;

				if (moved || member.alen != oldmember.alen ||
					memcmp(member.a, oldmember.a, member.alen) != 0)
					result = RedisDeleteWrites(tbl, old, oldnulls);
				return lappend(result,
							   element_write(tbl, RW_ADD, key, keylen, member, 0));
			}
		case REDIS_LIST:
			if (bms_is_member(tbl->idx_att, updated))
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot change the idx of a Redis list element"),
						 errhint("DELETE the element and INSERT it again: INSERT appends.")));
			/* A new key moves the element: off the old list, onto the end of the new. */
			if (moved)
				return lappend(RedisDeleteWrites(tbl, old, oldnulls),
							   element_write(tbl, RW_APPEND, key, keylen,
											 row_element(tbl, values, nulls, false), 0));
			return list_make1(element_write(tbl, RW_SET_IDX, key, keylen,
											row_element(tbl, values, nulls, false),
											atol(RedisDatumText(tbl, tbl->idx_att,
																old[tbl->idx_att - 1], &idxlen))));
	}
	return NIL;
}

/* The TTL argument of the conditional scripts: seconds, or '' for none. */
static char *
ttl_arg(RedisTable *tbl)
{
	return tbl->ttl_seconds > 0 ? psprintf("%d", tbl->ttl_seconds) : "";
}

/*
 * Replace w's commands (an INSERT's) by the one command that performs it
 * only if the row does not exist yet (see the file header).
 */
static void
make_conditional(RedisWrite *w)
{
	RedisTable *tbl = w->tbl;
	RedisCmd   *c;
	int			i;

	w->ncmds = 0;
	switch (tbl->type)
	{
		case REDIS_HASH:
			c = add_cmd(w, 5 + 2 * w->nitems);
			set_arg(c, 0, "EVAL");
			set_arg(c, 1, HashNxScript);
			set_arg(c, 2, "1");
			set_key(c, 3, w);
			set_arg(c, 4, ttl_arg(tbl));
			for (i = 0; i < w->nitems; i++)
			{
				c->argv[5 + 2 * i] = w->items[i].a;
				c->lens[5 + 2 * i] = w->items[i].alen;
				c->argv[6 + 2 * i] = w->items[i].b;
				c->lens[6 + 2 * i] = w->items[i].blen;
			}
			c->argc = 5 + 2 * w->nitems;
			break;
		case REDIS_STRING:
		case REDIS_JSON:
			c = add_cmd(w, tbl->ttl_seconds > 0 ? 6 : 4);
			set_arg(c, 0, "SET");
			set_key(c, 1, w);
			set_arg_len(c, 2, w->items[0].a, w->items[0].alen);
			set_arg(c, 3, "NX");
			if (tbl->ttl_seconds > 0)
			{
				set_arg(c, 4, "EX");
				set_arg(c, 5, ttl_arg(tbl));
			}
			break;
		case REDIS_ZSET:
		case REDIS_SET:
			if (tbl->ttl_seconds > 0)
			{
				c = add_cmd(w, tbl->type == REDIS_ZSET ? 7 : 6);
				set_arg(c, 0, "EVAL");
				set_arg(c, 1, MemberNxScript);
				set_arg(c, 2, "1");
				set_key(c, 3, w);
				set_arg(c, 4, ttl_arg(tbl));
				set_arg_len(c, 5, w->item.a, w->item.alen);
				if (tbl->type == REDIS_ZSET)
					set_arg_len(c, 6, w->item.b, w->item.blen);
			}
			else if (tbl->type == REDIS_ZSET)
			{
				c = add_cmd(w, 5);
				set_arg(c, 0, "ZADD");
				set_key(c, 1, w);
				set_arg(c, 2, "NX");
				set_arg_len(c, 3, w->item.b, w->item.blen);
				set_arg_len(c, 4, w->item.a, w->item.alen);
			}
			else
			{
				c = add_cmd(w, 3);
				set_arg(c, 0, "SADD");
				set_key(c, 1, w);
				set_arg_len(c, 2, w->item.a, w->item.alen);
			}
			break;
		case REDIS_LIST:
			elog(ERROR, "ON CONFLICT on a Redis list table");
	}
}

/*
 * The write of an INSERT ... ON CONFLICT DO NOTHING of one full row: one
 * atomic command that inserts only if the row does not exist.  With
 * applied, the reply of an immediate-mode send sets *applied to whether it
 * inserted (buffered writes pass NULL: COMMIT does not report it).
 */
RedisWrite *
RedisInsertIfAbsentWrite(RedisTable *tbl, Datum *values, bool *nulls,
						 bool *applied)
{
	RedisWrite *w = linitial(RedisInsertWrites(tbl, values, nulls));

	make_conditional(w);
	w->applied = applied;
	return w;
}

/*
 * The identity an INSERT of a full row conflicts on: the key in id->a, and
 * for set/zset the member in id->b (NULL otherwise).
 */
void
RedisInsertIdentity(RedisTable *tbl, Datum *values, bool *nulls, RedisItem *id)
{
	memset(id, 0, sizeof(RedisItem));
	id->a = row_key(tbl, values, nulls, &id->alen);
	if (tbl->type == REDIS_ZSET || tbl->type == REDIS_SET)
	{
		id->b = required_text(tbl, tbl->member_att, values, nulls, &id->blen);
	}
}

/* Arguments of the reply handler of RedisRowsExist. */
typedef struct ExistsReplies
{
	PgpolyConnection *conn;
	RedisTable *tbl;
	RedisItem  *ids;
	bool	   *exists;
} ExistsReplies;

/* Reply handler of RedisRowsExist: an integer (EXISTS, SISMEMBER) or a score. */
static bool
exists_reply(redisReply *r, int index, void *arg)
{
	ExistsReplies *er = arg;

	if (r->type == REDIS_REPLY_ERROR)
		RedisReplyError(er->conn, r, er->ids[index].a, er->ids[index].alen, er->tbl);
	er->exists[index] = r->type == REDIS_REPLY_INTEGER ? r->integer > 0 :
		r->type != REDIS_REPLY_NIL;
	return false;
}

/*
 * Whether each of the n identities (RedisInsertIdentity) exists in Redis
 * now, in one pipelined round: EXISTS key, SISMEMBER key member, or ZSCORE
 * key member.
 */
void
RedisRowsExist(PgpolyConnection *conn, RedisTable *tbl, RedisItem *ids, int n,
			   bool *exists)
{
	ExistsReplies er = {conn, tbl, ids, exists};

	for (int i = 0; i < n; i++)
	{
		const char *argv[3] = {"EXISTS", ids[i].a, ids[i].b};
		size_t		lens[3] = {6, ids[i].alen, ids[i].blen};
		int			argc = 2;

		if (tbl->type == REDIS_SET || tbl->type == REDIS_ZSET)
		{
			argv[0] = tbl->type == REDIS_SET ? "SISMEMBER" : "ZSCORE";
			lens[0] = strlen(argv[0]);
			argc = 3;
		}
		RedisAppendArgv(conn, argc, argv, lens);
	}
	if (n > 0)
		RedisExchange(conn, n, exists_reply, &er);
}

/* Arguments of the reply handler of a write exchange. */
typedef struct WriteReplies
{
	PgpolyConnection *conn;
	RedisWrite **owner;			/* the write of each command; NULL: MULTI, EXEC */
	int		   *multi;			/* atomic: the MULTI of each command's block */
	bool		atomic;
	bool		cluster;
	/* atomic: what failed, reported once every reply is in */
	int			failed;			/* the first command that failed, or -1 */
	char	   *answer;			/* what Redis said about it */
	List	   *lost_keys;		/* keys of the writes not applied */
	RedisWrite *last_lost;		/* the write of the last key listed */
	int			nblocks;		/* MULTI/EXEC blocks sent */
	int			napplied;		/* of them, those that ran */
	List	   *written;		/* nodes where a block ran */
} WriteReplies;

/* ERROR for a failed write command of an immediate-mode batch. */
static void
write_failed(WriteReplies *wr, int cmd, redisReply *r)
{
	RedisWrite *w = wr->owner[cmd];

	wr->conn->errors++;
	ereport(ERROR,
			(errcode(strncmp(r->str, "WRONGTYPE", 9) == 0 ?
					 ERRCODE_FDW_INVALID_DATA_TYPE : ERRCODE_FDW_ERROR),
			 errmsg("could not write key \"%s\" of foreign table \"%s\" to Redis server \"%s\"",
					PgpolyPrintable(w->key, w->keylen, 200), w->tbl->relname,
					wr->conn->servername),
			 errdetail("Redis answered: %s", PgpolyPrintable(r->str, r->len, 200))));
}

/* Remember the first failure of a block: command cmd, Redis said r. */
static void
note_failure(WriteReplies *wr, int cmd, redisReply *r)
{
	if (wr->failed >= 0)
		return;
	wr->failed = cmd;
	wr->answer = r->type == REDIS_REPLY_ERROR ? PgpolyPrintable(r->str, r->len, 200) :
		pstrdup("an unexpected reply");
}

/* Remember that command cmd (of a block) was not applied; Redis said r. */
static void
note_lost(WriteReplies *wr, int cmd, redisReply *r)
{
	RedisWrite *w = wr->owner[cmd];

	if (w == NULL)
		return;
	note_failure(wr, cmd, r);
	if (w == wr->last_lost)
		return;					/* its other commands: listed once */
	wr->last_lost = w;
	wr->lost_keys = lappend(wr->lost_keys, PgpolyPrintable(w->key, w->keylen, 200));
}

/*
 * EXEC of the block opened at MULTI m answered r (index e): an array of one
 * reply per command (the block ran), or an error (it did not).
 */
static void
exec_reply(WriteReplies *wr, int m, int e, redisReply *r)
{
	const char *node;

	if (r->type == REDIS_REPLY_ERROR)
	{
		note_failure(wr, e, r);
		for (int i = m + 1; i < e; i++)
			note_lost(wr, i, r);
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY || (int) r->elements != e - m - 1)
		RedisProtocolError(wr->conn, "EXEC", r,
						   psprintf("not an array of %d replies", e - m - 1));
	for (size_t i = 0; i < r->elements; i++)
		if (r->element[i]->type == REDIS_REPLY_ERROR)
			note_lost(wr, m + 1 + i, r->element[i]);
	wr->napplied++;
	node = RedisReplyNode(wr->conn, e);
	if (!list_member(wr->written, makeString((char *) node)))
		wr->written = lappend(wr->written, makeString(pstrdup(node)));
}

/*
 * Reply handler.  Immediate mode: any error is an ERROR at once, and a
 * conditional write (RedisInsertIfAbsentWrite) that asked for it learns
 * whether it inserted: 1 or OK, against 0 or nil.  Blocks: MULTI's OK, the
 * QUEUED acks, then EXEC's array; failures are collected and reported by
 * report_failures() once every block has answered, so the error can say
 * what was written where.  A reply of a type the command never answers
 * with is a protocol violation.
 */
static bool
write_reply(redisReply *r, int index, void *arg)
{
	WriteReplies *wr = arg;

	if (!wr->atomic)
	{
		if (r->type == REDIS_REPLY_ERROR)
			write_failed(wr, index, r);
		if (wr->owner[index]->applied)
			*wr->owner[index]->applied = r->type == REDIS_REPLY_INTEGER ?
				r->integer > 0 : r->type != REDIS_REPLY_NIL;
		return false;
	}
	if (wr->multi[index] != index && wr->owner[index] == NULL)
	{
		exec_reply(wr, wr->multi[index], index, r);
		return false;
	}
	if (wr->multi[index] == index)	/* MULTI */
	{
		wr->nblocks++;
		if (r->type == REDIS_REPLY_ERROR)
			note_failure(wr, index, r);
	}
	else if (r->type == REDIS_REPLY_ERROR)	/* not QUEUED */
		note_lost(wr, index, r);
	if (r->type != REDIS_REPLY_STATUS && r->type != REDIS_REPLY_ERROR)
		RedisProtocolError(wr->conn, wr->multi[index] == index ? "MULTI" : "a queued command",
						   r, NULL);
	return false;
}

/* Up to ten of keys (already printable), quoted, for a message. */
static char *
keys_text(List *keys)
{
	StringInfoData buf;
	ListCell   *lc;
	int			n = 0;

	initStringInfo(&buf);
	foreach(lc, keys)
	{
		if (n++ == 10)
		{
			appendStringInfo(&buf, " and %d more", list_length(keys) - 10);
			break;
		}
		appendStringInfo(&buf, "%s\"%s\"", n > 1 ? ", " : "", (char *) lfirst(lc));
	}
	return buf.data;
}

/* The nodes of wr->written, for a message. */
static char *
nodes_text(List *nodes)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, nodes)
		appendStringInfo(&buf, "%s%s", buf.len ? ", " : "", strVal(lfirst(lc)));
	return buf.data;
}

/*
 * After the blocks answered: ERROR if a write failed, naming its key (and
 * on a cluster the keys not written and the nodes that were).
 */
static void
report_failures(WriteReplies *wr)
{
	RedisWrite *w;

	if (wr->failed < 0)
		return;
	wr->conn->errors++;
	w = wr->owner[wr->failed];
	if (w == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("Redis server \"%s\" did not execute the transaction's writes",
						wr->conn->servername),
				 errdetail("Redis answered: %s", wr->answer),
				 wr->cluster ?
				 errhint("Not written: %s.  %d of %d hash-slot transactions ran, on: %s.",
						 keys_text(wr->lost_keys), wr->napplied, wr->nblocks,
						 wr->napplied ? nodes_text(wr->written) : "no node") : 0));
	ereport(ERROR,
			(errcode(strncmp(wr->answer, "WRONGTYPE", 9) == 0 ?
					 ERRCODE_FDW_INVALID_DATA_TYPE : ERRCODE_FDW_ERROR),
			 errmsg("could not write key \"%s\" of foreign table \"%s\" to Redis server \"%s\"",
					PgpolyPrintable(w->key, w->keylen, 200), w->tbl->relname,
					wr->conn->servername),
			 errdetail("Redis answered: %s", wr->answer),
			 wr->cluster ?
			 errhint("Not written: %s.  %d of %d hash-slot transactions ran (Redis applies the other commands of a MULTI/EXEC even when one fails at run time), on: %s.",
					 keys_text(wr->lost_keys), wr->napplied, wr->nblocks,
					 wr->napplied ? nodes_text(wr->written) : "no node") :
			 errhint("Redis applies the other commands of a MULTI/EXEC block even when one fails at run time; check the keys named.")));
}

/* One command of a write, for ordering them into blocks. */
typedef struct WriteCmd
{
	RedisWrite *w;
	RedisCmd   *cmd;
	int			block;			/* its MULTI/EXEC block (atomic) */
} WriteCmd;

/*
 * The commands of writes (RedisWrite * or PgpolyWrite * with a RedisWrite
 * payload) in the order they are sent: as written, or for atomic writes on
 * a cluster grouped by hash slot (blocks in the order of their first
 * command, commands in write order within a block).  Sets *nblocks.
 */
static WriteCmd *
order_commands(List *writes, bool by_slot, int *ncmds, int *nblocks)
{
	int		   *block_of_slot = NULL;
	int		   *count = NULL;
	WriteCmd   *cmds;
	WriteCmd   *sorted;
	ListCell   *lc;
	int			n = 0;

	*ncmds = 0;
	*nblocks = 1;
	foreach(lc, writes)
		*ncmds += ((RedisWrite *) lfirst(lc))->ncmds;
	cmds = palloc_extended(sizeof(WriteCmd) * Max(*ncmds, 1), MCXT_ALLOC_HUGE);
	if (by_slot)
	{
		block_of_slot = palloc(sizeof(int) * REDIS_NSLOTS);
		memset(block_of_slot, -1, sizeof(int) * REDIS_NSLOTS);
		count = palloc0(sizeof(int) * REDIS_NSLOTS);
		*nblocks = 0;
	}
	foreach(lc, writes)
	{
		RedisWrite *w = lfirst(lc);

		for (int i = 0; i < w->ncmds; i++)
		{
			cmds[n].w = w;
			cmds[n].cmd = &w->cmds[i];
			cmds[n].block = 0;
			if (by_slot)
			{
				const char *key;
				size_t		keylen;
				int			slot;

				if (!RedisCommandKey(w->cmds[i].argc, (const char **) w->cmds[i].argv,
									 w->cmds[i].lens, &key, &keylen))
					elog(ERROR, "Redis write without a key");
				slot = RedisKeySlot(key, keylen);

				if (block_of_slot[slot] < 0)
					block_of_slot[slot] = (*nblocks)++;
				cmds[n].block = block_of_slot[slot];
				count[cmds[n].block]++;
			}
			n++;
		}
	}
	if (!by_slot || *nblocks <= 1)
		return cmds;
	/* A stable counting sort by block. */
	for (int b = 0, start = 0; b < *nblocks; b++)
	{
		int			c = count[b];

		count[b] = start;
		start += c;
	}
	sorted = palloc_extended(sizeof(WriteCmd) * n, MCXT_ALLOC_HUGE);
	for (int i = 0; i < n; i++)
		sorted[count[cmds[i].block]++] = cmds[i];
	pfree(cmds);
	return sorted;
}

/*
 * Send the commands of writes (RedisWrite * or PgpolyWrite * whose payload
 * is a RedisWrite) in one pipelined exchange; atomic wraps them in
 * MULTI/EXEC, one block per hash slot on a cluster.  Any failed command is
 * an ERROR naming its key, raised once every block has answered.
 */
void
RedisSendCommands(PgpolyConnection *conn, List *writes, bool atomic)
{
	WriteReplies wr = {conn, NULL, NULL, atomic, false, -1};
	const char *multi[1] = {"MULTI"};
	const char *exec[1] = {"EXEC"};
	WriteCmd   *cmds;
	int			ncmds;
	int			nblocks;
	int			n = 0;
	int			m = -1;

	wr.cluster = RedisIsCluster(conn);
	cmds = order_commands(writes, atomic && wr.cluster, &ncmds, &nblocks);
	if (ncmds == 0)
		return;
	if (atomic)
		ncmds += 2 * nblocks;
	wr.owner = palloc_extended(sizeof(RedisWrite *) * ncmds, MCXT_ALLOC_HUGE);
	wr.multi = atomic ? palloc_extended(sizeof(int) * ncmds, MCXT_ALLOC_HUGE) : NULL;
	for (int i = 0; n < ncmds; i++)
	{
		bool		first = atomic && (i == 0 || cmds[i].block != cmds[i - 1].block);
		bool		last;

		if (first)
		{
			wr.owner[n] = NULL;
			wr.multi[n] = m = n;
			n++;
			RedisAppendArgv(conn, 1, multi, NULL);
		}
		wr.owner[n] = cmds[i].w;
		if (atomic)
			wr.multi[n] = m;
		n++;
		RedisAppendArgv(conn, cmds[i].cmd->argc, (const char **) cmds[i].cmd->argv,
						cmds[i].cmd->lens);
		last = atomic && (n + 1 == ncmds || cmds[i + 1].block != cmds[i].block);
		if (last)
		{
			wr.owner[n] = NULL;
			wr.multi[n] = m;
			n++;
			RedisAppendArgv(conn, 1, exec, NULL);
		}
	}
	RedisExchange(conn, ncmds, write_reply, &wr);
	report_failures(&wr);
	pfree(wr.owner);
	if (wr.multi)
		pfree(wr.multi);
	pfree(cmds);
}

/* PgpolyStore.flush: all the buffered writes in MULTI/EXEC blocks. */
void
RedisFlushWrites(PgpolyConnection *conn, List *payloads)
{
	RedisSendCommands(conn, payloads, true);
}
