/*-------------------------------------------------------------------------
 *
 * harness.c
 *		  What the JSON fuzz harnesses share: the script of HTTP replies an
 *		  input stands for, structured bodies, and the oracles.
 *
 * An input of a JSON harness is two bytes the harness reads (which flow
 * of pgpoly's code to run, and its options) followed by the script of the
 * service: segments separated by "|#|", one HTTP reply each, answering the
 * requests in the order they come.  The first byte of a segment chooses
 * the reply's status (mostly 200; 201, 400, 404, 409, 500 and 503 too),
 * its framing (Content-Length, chunked, up to EOF, cut short: see
 * http_peer.h) and whether its body is raw (the rest of the segment as it
 * is) or structured: the rest is split at newlines into pieces, those that
 * are valid JSON are kept, and the harness wraps them in the envelope of
 * the flow's responses (the hits of a search page, the items of a bulk
 * response, the points of a scroll ...).  Structured replies keep a
 * mutated record from breaking the whole response, so the fuzzer spends
 * its time in pgpoly's decoding of records, not in PostgreSQL's or
 * jansson's JSON parser.
 *
 * Oracles, besides crashes and sanitizer reports: every datum a decoder
 * returns must be a valid value of its column type (its output function
 * succeeds and its input function reads the text back to the same text),
 * and every statement IMPORT FOREIGN SCHEMA generates must parse as one
 * CREATE FOREIGN TABLE.  A violation prints what was wrong and aborts,
 * which libFuzzer reports as a crash with the input.
 *
 * This file is harness machinery, compiled without coverage.
 *
 * test/fuzz/harness.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdio.h>
#include <stdlib.h>

#include "catalog/namespace.h"
#include "common/jsonapi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "harness.h"

#define MAX_SEGMENTS 32
#define MAX_FLOWS 8

/* How deep the inputs went, per flow (printed at exit). */
static int CurrentFlow;
static long StatInputs[MAX_FLOWS];
static long StatCompleted[MAX_FLOWS];
static long StatWithRows[MAX_FLOWS];
static long StatRows[MAX_FLOWS];
static bool RowSeen;

extern Datum pgpoly_disconnect(PG_FUNCTION_ARGS);

/* Reply status by the low four bits of a segment's first byte. */
static const int Statuses[16] = {
	200, 200, 200, 200, 200, 200, 200, 200, 200, 200, 201, 400, 404, 409, 500, 503
};

/* Whether len bytes at s are one valid JSON value. */
static bool
valid_json(const char *s, size_t len)
{
	JsonLexContext *lex;

	if (len == 0)
		return false;
	lex = makeJsonLexContextCstringLen(pnstrdup(s, len), (int) len, PG_UTF8, true);
	return pg_parse_json(lex, &nullSemAction) == JSON_SUCCESS;
}

/* The valid JSON pieces (char *) of len bytes at s, split at newlines. */
static List *
pieces_of(const char *s, size_t len)
{
	List	   *pieces = NIL;
	const char *end = s + len;

	while (s < end)
	{
		const char *nl = memchr(s, '\n', end - s);
		size_t		n = (nl ? nl : end) - s;

		if (valid_json(s, n))
			pieces = lappend(pieces, pnstrdup(s, n));
		s += n + 1;
	}
	return pieces;
}

/* The reply of one segment (its body built in the current context). */
static void
segment_reply(const char *seg, size_t len, HarnessEnvelope envelope, int flow,
			  HttpPeerReply *r)
{
	uint8_t		c = len > 0 ? (uint8_t) seg[0] : 0;

	r->status = Statuses[c & 15];
	r->framing = (c & 0x80) ? HTTP_PEER_CLOSE :
		((c >> 4) & 3) == 2 ? HTTP_PEER_CHUNKED :
		((c >> 4) & 3) == 3 ? HTTP_PEER_SHORT : HTTP_PEER_LENGTH;
	seg += len > 0;
	len -= len > 0;
	if ((c & 0x40) && envelope)
		r->body = envelope(flow, pieces_of(seg, len), &r->len);
	else
	{
		r->body = seg;
		r->len = len;
	}
}

/* Print the depth statistics (atexit: libFuzzer ends with exit()). */
static void
print_stats(void)
{
	for (int f = 0; f < MAX_FLOWS; f++)
		if (StatInputs[f] > 0)
			fprintf(stderr, "pgpoly fuzz depth: flow %d: %ld inputs, %ld completed without ERROR, "
					"%ld produced rows (%ld rows)\n", f, StatInputs[f], StatCompleted[f],
					StatWithRows[f], StatRows[f]);
}

/* Count a row the flow produced (and checked). */
void
HarnessRow(void)
{
	StatRows[CurrentFlow]++;
	if (!RowSeen)
		StatWithRows[CurrentFlow]++;
	RowSeen = true;
}

/* Count the input as completed without ERROR. */
void
HarnessCompleted(void)
{
	StatCompleted[CurrentFlow]++;
}

/*
 * Give the peer the script of an input: the nprefix canned replies, then
 * one per segment of data (see the file header); envelope builds
 * structured bodies for the flow.
 */
void
HarnessScript(const uint8_t *data, size_t size, const HttpPeerReply *prefix,
			  int nprefix, HarnessEnvelope envelope, int flow)
{
	HttpPeerReply r[MAX_SEGMENTS + 8];
	int			n = 0;
	const char *s = (const char *) data;
	const char *end = s + size;
	static bool registered = false;

	if (!registered)
		atexit(print_stats);
	registered = true;
	CurrentFlow = flow & (MAX_FLOWS - 1);
	StatInputs[CurrentFlow]++;
	RowSeen = false;
	for (int i = 0; i < nprefix; i++)
		r[n++] = prefix[i];
	while (n < lengthof(r))
	{
		const char *sep = NULL;

		for (const char *p = s; p + 3 <= end; p++)
			if (memcmp(p, "|#|", 3) == 0)
			{
				sep = p;
				break;
			}
		segment_reply(s, (sep ? sep : end) - s, envelope, flow, &r[n++]);
		if (sep == NULL)
			break;
		s = sep + 3;
	}
	HttpPeerScript(r, n);
}

/* The pieces joined with commas between open and close (palloc'd). */
char *
HarnessJoin(List *pieces, const char *open, const char *close)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	appendStringInfoString(&buf, open);
	foreach(lc, pieces)
	{
		if (foreach_current_index(lc) > 0)
			appendStringInfoChar(&buf, ',');
		appendStringInfoString(&buf, lfirst(lc));
	}
	appendStringInfoString(&buf, close);
	return buf.data;
}

/* State of HarnessArrayItems' parse. */
typedef struct ArrayItems
{
	JsonLexContext *lex;
	int			depth;
	const char *start;
	List	   *items;
} ArrayItems;

static void
items_array_start(void *state)
{
	((ArrayItems *) state)->depth++;
}

static void
items_array_end(void *state)
{
	((ArrayItems *) state)->depth--;
}

static void
items_elem_start(void *state, bool isnull)
{
	ArrayItems *ai = state;

	if (ai->depth == 1)
		ai->start = ai->lex->token_start;
}

static void
items_elem_end(void *state, bool isnull)
{
	ArrayItems *ai = state;

	if (ai->depth == 1)
		ai->items = lappend(ai->items,
							pnstrdup(ai->start, ai->lex->prev_token_terminator - ai->start));
}

/*
 * The texts of the elements of json, a JSON array, as they are written
 * (char *); NIL if it is not a valid array.
 */
List *
HarnessArrayItems(const char *json)
{
	ArrayItems	ai = {NULL, 0, NULL, NIL};
	JsonSemAction sem = {0};

	if (json[0] != '[')
		return NIL;
	ai.lex = makeJsonLexContextCstringLen(pstrdup(json), strlen(json), PG_UTF8, true);
	sem.semstate = &ai;
	sem.array_start = items_array_start;
	sem.array_end = items_array_end;
	sem.array_element_start = items_elem_start;
	sem.array_element_end = items_elem_end;
	if (pg_parse_json(ai.lex, &sem) != JSON_SUCCESS)
		return NIL;
	return ai.items;
}

/* Report an oracle violation and abort (a finding). */
static void
violation(const char *what, const char *detail)
{
	fprintf(stderr, "pgpoly fuzz oracle: %s: %s\n", what, detail);
	fflush(stderr);
	abort();
}

/* Text of value through typid's output function (ERROR possible). */
static char *
output_text(Oid typid, Datum value)
{
	Oid			out;
	bool		isvarlena;

	getTypeOutputInfo(typid, &out, &isvarlena);
	return OidOutputFunctionCall(out, value);
}

/*
 * Oracle: value, which a decoder returned for a column of type typid and
 * typmod, is a valid value of it: it can be output, and reading that text
 * back gives the same text.  what names it in the report.
 */
void
HarnessCheckDatum(Oid typid, int32 typmod, Datum value, const char *what)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *text = NULL;
	char	   *again = NULL;

	PG_TRY();
	{
		Oid			in;
		Oid			ioparam;

		text = output_text(typid, value);
		getTypeInputInfo(typid, &in, &ioparam);
		again = output_text(typid, OidInputFunctionCall(in, text, ioparam, typmod));
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		violation(psprintf("%s (%s) is not a valid value", what, format_type_be(typid)),
				  psprintf("%s%s%s", edata->message, text ? "; text: " : "",
						   text ? text : ""));
	}
	PG_END_TRY();
	if (strcmp(text, again) != 0)
		violation(psprintf("%s (%s) does not read back", what, format_type_be(typid)),
				  psprintf("\"%s\" reads back as \"%s\"", text, again));
}

/* Oracle: each generated command is one CREATE FOREIGN TABLE. */
void
HarnessCheckImport(List *commands)
{
	ListCell   *lc;

	foreach(lc, commands)
	{
		MemoryContext cxt = CurrentMemoryContext;
		const char *cmd = lfirst(lc);
		List	   *stmts = NIL;

		PG_TRY();
		{
			stmts = raw_parser(cmd, RAW_PARSE_DEFAULT);
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(cxt);
			violation("IMPORT FOREIGN SCHEMA generated a command that does not parse",
					  psprintf("%s: %s", CopyErrorData()->message, cmd));
		}
		PG_END_TRY();
		if (list_length(stmts) != 1 ||
			!IsA(((RawStmt *) linitial(stmts))->stmt, CreateForeignTableStmt))
			violation("IMPORT FOREIGN SCHEMA generated something else than one CREATE FOREIGN TABLE",
					  cmd);
	}
}

/* Close every cached connection, as pgpoly.disconnect() does. */
void
HarnessDisconnect(void)
{
	LOCAL_FCINFO(fcinfo, 1);

	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = (Datum) 0;
	fcinfo->args[0].isnull = true;
	(void) pgpoly_disconnect(fcinfo);
}

/* The oid of the relation name (ERROR if absent). */
Oid
HarnessRelid(const char *name)
{
	return RangeVarGetRelid(makeRangeVar(NULL, (char *) name, -1), NoLock, false);
}
