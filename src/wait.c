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
 * Wait until sock is ready for events (PGPOLY_WAIT_READ / _WRITE), the
 * deadline passes, or max_sleep_ms elapses (a caller such as curl_multi may
 * have its own timer; pass -1 for none).  sock may be PGINVALID_SOCKET to
 * wait for time only.  Interrupts are serviced while waiting.
 *
 * Returns the ready events (possibly 0 if max_sleep_ms elapsed), or -1 when
 * the deadline has passed.  The caller decides what a timeout means.
 */
int
PgpolyWaitSocket(pgsocket sock, int events, TimestampTz deadline,
				 long max_sleep_ms)
{
	for (;;)
	{
		int			wl = WL_LATCH_SET | WL_EXIT_ON_PM_DEATH;
		int			rc;
		long		ms;

		CHECK_FOR_INTERRUPTS();
		if (deadline != DT_NOEND && GetCurrentTimestamp() >= deadline)
			return -1;

		ms = sleep_ms(deadline, max_sleep_ms);
		if (ms >= 0)
			wl |= WL_TIMEOUT;
		if (sock != PGINVALID_SOCKET)
		{
			if (events & PGPOLY_WAIT_READ)
				wl |= WL_SOCKET_READABLE;
			if (events & PGPOLY_WAIT_WRITE)
				wl |= WL_SOCKET_WRITEABLE;
		}

		rc = WaitLatchOrSocket(MyLatch, wl, sock, ms, PG_WAIT_EXTENSION);

		if (rc & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		if (rc & (WL_SOCKET_READABLE | WL_SOCKET_WRITEABLE))
			return ((rc & WL_SOCKET_READABLE) ? PGPOLY_WAIT_READ : 0) |
				((rc & WL_SOCKET_WRITEABLE) ? PGPOLY_WAIT_WRITE : 0);
		if (rc & WL_TIMEOUT)
		{
			if (deadline != DT_NOEND && GetCurrentTimestamp() >= deadline)
				return -1;
			if (max_sleep_ms >= 0)
				return 0;
		}
	}
}
