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
 * Wait until one of socks[0..n-1] is ready for its events[i]
 * (PGPOLY_WAIT_READ / _WRITE), the deadline passes, or max_sleep_ms elapses
 * (a caller such as curl_multi may have its own timer; -1 for none).  n may
 * be 0 to wait for time only.  Interrupts are serviced while waiting.
 *
 * Returns the number of ready sockets (their events in ready[i]), 0 if
 * max_sleep_ms elapsed, or -1 when the deadline has passed.  The caller
 * decides what a timeout means.
 */
int
PgpolyWaitSockets(int n, const pgsocket *socks, const int *events,
				  TimestampTz deadline, long max_sleep_ms, int *ready)
{
	WaitEventSet *set;
	WaitEvent	occurred[8];
	int			result = 0;

	Assert(n <= lengthof(occurred) - 2);
	for (;;)
	{
		long		ms;
		int			nev;

		CHECK_FOR_INTERRUPTS();
		if (deadline != DT_NOEND && GetCurrentTimestamp() >= deadline)
			return -1;
		ms = sleep_ms(deadline, max_sleep_ms);

		set = CreateWaitEventSet(CurrentMemoryContext, n + 2);
		AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		if (IsUnderPostmaster)	/* single-user mode has no postmaster */
			AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		for (int i = 0; i < n; i++)
		{
			uint32		wl = ((events[i] & PGPOLY_WAIT_READ) ? WL_SOCKET_READABLE : 0) |
				((events[i] & PGPOLY_WAIT_WRITE) ? WL_SOCKET_WRITEABLE : 0);

			ready[i] = 0;
			AddWaitEventToSet(set, wl, socks[i], NULL, (void *) (intptr_t) i);
		}
		nev = WaitEventSetWait(set, ms, occurred, lengthof(occurred),
							   PG_WAIT_EXTENSION);
		FreeWaitEventSet(set);

		for (int e = 0; e < nev; e++)
		{
			if (occurred[e].events & WL_LATCH_SET)
				ResetLatch(MyLatch);
			if (occurred[e].events & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
			{
				int			i = (int) (intptr_t) occurred[e].user_data;

				ready[i] = ((occurred[e].events & WL_SOCKET_READABLE) ? PGPOLY_WAIT_READ : 0) |
					((occurred[e].events & WL_SOCKET_WRITEABLE) ? PGPOLY_WAIT_WRITE : 0);
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
