/*-------------------------------------------------------------------------
 *
 * wait.c
 *		  The one interruptible network wait every store uses.
 *
 * Store libraries (hiredis, libcurl) run in non-blocking mode; whenever
 * they would block, the store calls PgpolyWaitSocket(), which sleeps on the
 * process latch and the socket together.  A query cancel, statement_timeout
 * or termination sets the latch, so CHECK_FOR_INTERRUPTS() runs within one
 * latch wake-up (well under 100 ms); postmaster death ends the backend.
 *
 * A caller that waits again and again on the same sockets keeps a
 * PgpolyWaitSet, so that the kernel's wait set is built once, not per wait;
 * any number of sockets can be waited on at once (a Redis Cluster
 * connection waits on all the nodes of a pipeline together).
 *
 * Invariant: nothing here longjmps while a library is mid-call.  Callers
 * invoke this between library calls, so an ERROR thrown from
 * CHECK_FOR_INTERRUPTS() leaves the library in a consistent state; the
 * connection is then discarded by the connection cache (it was "busy").
 *
 * src/wait.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "pgpoly.h"

/* Deadline timeout_ms from now; timeout_ms <= 0 means none. */
TimestampTz
PgpolyDeadline(int timeout_ms)
{
	if (timeout_ms <= 0)
		return DT_NOEND;
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
}

/* Milliseconds until deadline, capped at max_sleep_ms (< 0: no cap). */
static long
sleep_ms(TimestampTz deadline, long max_sleep_ms)
{
	long		ms;

	if (deadline == DT_NOEND)
		ms = max_sleep_ms >= 0 ? max_sleep_ms : -1;
	else
	{
		ms = (long) ((deadline - GetCurrentTimestamp()) / 1000);
		if (ms < 0)
			ms = 0;
		if (max_sleep_ms >= 0 && ms > max_sleep_ms)
			ms = max_sleep_ms;
	}
	return ms;
}

/*
 * A reusable wait on the latch, postmaster death and a set of sockets.
 * Building a WaitEventSet costs system calls (an epoll instance, one
 * registration per socket, a close), so a caller that waits many times on
 * the same sockets (a Redis connection's nodes) keeps one PgpolyWaitSet:
 * it is rebuilt only when the sockets change, and a change of the events
 * asked for is a cheap ModifyWaitEvent().  The owner must call
 * PgpolyWaitSetForget() when it closes or opens one of its sockets (a file
 * descriptor number can come back as another socket) and
 * PgpolyWaitSetFree() when done: a WaitEventSet holds a kernel descriptor
 * that no memory context reset releases.
 */
struct PgpolyWaitSet
{
	MemoryContext cxt;
	WaitEventSet *set;			/* NULL: to be built */
	int			nsocks;			/* sockets in set, after latch and PM death */
	int			first;			/* position of the first socket event */
	pgsocket   *socks;
	int		   *events;			/* PGPOLY_WAIT_* of each, as registered */
	WaitEvent  *occurred;		/* nsocks + 2 */
};

/* A wait set whose memory lives in cxt. */
PgpolyWaitSet *
PgpolyWaitSetCreate(MemoryContext cxt)
{
	PgpolyWaitSet *ws = MemoryContextAllocZero(cxt, sizeof(PgpolyWaitSet));

	ws->cxt = cxt;
	return ws;
}

/* Release the kernel resources; the next wait builds the set again. */
void
PgpolyWaitSetForget(PgpolyWaitSet *ws)
{
	if (ws->set)
		FreeWaitEventSet(ws->set);
	ws->set = NULL;
	if (ws->socks)
	{
		pfree(ws->socks);
		pfree(ws->events);
		pfree(ws->occurred);
		ws->socks = NULL;
	}
	ws->nsocks = 0;
}

/* Free ws entirely.  Never ereports (connection close paths call it). */
void
PgpolyWaitSetFree(PgpolyWaitSet *ws)
{
	PgpolyWaitSetForget(ws);
	pfree(ws);
}

/* WL_SOCKET_* flags of PGPOLY_WAIT_* events. */
static uint32
socket_flags(int events)
{
	return ((events & PGPOLY_WAIT_READ) ? WL_SOCKET_READABLE : 0) |
		((events & PGPOLY_WAIT_WRITE) ? WL_SOCKET_WRITEABLE : 0);
}

/* Make ws->set wait for socks/events, rebuilding it only if the sockets differ. */
static void
prepare_set(PgpolyWaitSet *ws, int n, const pgsocket *socks, const int *events)
{
	if (ws->set && n == ws->nsocks &&
		memcmp(socks, ws->socks, sizeof(pgsocket) * n) == 0)
	{
		for (int i = 0; i < n; i++)
			if (events[i] != ws->events[i])
			{
				ModifyWaitEvent(ws->set, ws->first + i, socket_flags(events[i]), NULL);
				ws->events[i] = events[i];
			}
		return;
	}
	PgpolyWaitSetForget(ws);
	ws->set = CreateWaitEventSet(ws->cxt, n + 2);
	AddWaitEventToSet(ws->set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	if (IsUnderPostmaster)		/* single-user mode has no postmaster */
		AddWaitEventToSet(ws->set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	ws->first = IsUnderPostmaster ? 2 : 1;
	ws->socks = MemoryContextAlloc(ws->cxt, sizeof(pgsocket) * Max(n, 1));
	ws->events = MemoryContextAlloc(ws->cxt, sizeof(int) * Max(n, 1));
	ws->occurred = MemoryContextAlloc(ws->cxt, sizeof(WaitEvent) * (n + 2));
	for (int i = 0; i < n; i++)
	{
		AddWaitEventToSet(ws->set, socket_flags(events[i]), socks[i], NULL,
						  (void *) (intptr_t) i);
		ws->socks[i] = socks[i];
		ws->events[i] = events[i];
	}
	ws->nsocks = n;
}

/*
 * Wait until one of socks[0..n-1] is ready for its events[i]
 * (PGPOLY_WAIT_READ / _WRITE), the deadline passes, or max_sleep_ms elapses
 * (a caller such as curl_multi may have its own timer; -1 for none).  n may
 * be 0 to wait for time only; there is no limit on n.  Interrupts are
 * serviced while waiting.
 *
 * Returns the number of ready sockets (their events in ready[i]), 0 if
 * max_sleep_ms elapsed, or -1 when the deadline has passed.  The caller
 * decides what a timeout means.
 */
int
PgpolyWaitSetWait(PgpolyWaitSet *ws, int n, const pgsocket *socks,
				  const int *events, TimestampTz deadline, long max_sleep_ms,
				  int *ready)
{
	for (;;)
	{
		long		ms;
		int			nev;
		int			result = 0;

		CHECK_FOR_INTERRUPTS();
		if (deadline != DT_NOEND && GetCurrentTimestamp() >= deadline)
			return -1;
		ms = sleep_ms(deadline, max_sleep_ms);
		prepare_set(ws, n, socks, events);
		memset(ready, 0, sizeof(int) * n);
		nev = WaitEventSetWait(ws->set, ms, ws->occurred, n + 2, PG_WAIT_EXTENSION);

		for (int e = 0; e < nev; e++)
		{
			WaitEvent  *ev = &ws->occurred[e];

			if (ev->events & WL_LATCH_SET)
				ResetLatch(MyLatch);
			if (ev->events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
			{
				int			i = (int) (intptr_t) ev->user_data;

				ready[i] = ((ev->events & WL_SOCKET_READABLE) ? PGPOLY_WAIT_READ : 0) |
					((ev->events & WL_SOCKET_WRITEABLE) ? PGPOLY_WAIT_WRITE : 0);
				result++;
			}
		}
		if (result > 0)
			return result;
		if (nev == 0)			/* timed out */
		{
			if (deadline != DT_NOEND && GetCurrentTimestamp() >= deadline)
				return -1;
			if (max_sleep_ms >= 0)
				return 0;
		}
		/* latch set: loop to CHECK_FOR_INTERRUPTS() */
	}
}

/*
 * PgpolyWaitSetWait() on a set used for this one wait (callers whose
 * sockets change between waits, such as libcurl's).
 */
int
PgpolyWaitSockets(int n, const pgsocket *socks, const int *events,
				  TimestampTz deadline, long max_sleep_ms, int *ready)
{
	PgpolyWaitSet *ws = PgpolyWaitSetCreate(CurrentMemoryContext);
	volatile int rc = -1;

	PG_TRY();
	{
		rc = PgpolyWaitSetWait(ws, n, socks, events, deadline, max_sleep_ms, ready);
	}
	PG_FINALLY();
	{
		PgpolyWaitSetFree(ws);
	}
	PG_END_TRY();
	return rc;
}

/*
 * PgpolyWaitSockets() for one socket (or none, with PGINVALID_SOCKET).
 * Returns the ready events, 0 if max_sleep_ms elapsed, -1 past the deadline.
 */
int
PgpolyWaitSocket(pgsocket sock, int events, TimestampTz deadline,
				 long max_sleep_ms)
{
	int			ready = 0;
	int			rc;

	rc = PgpolyWaitSockets(sock == PGINVALID_SOCKET ? 0 : 1, &sock, &events,
						   deadline, max_sleep_ms, &ready);
	return rc < 0 ? -1 : ready;
}
