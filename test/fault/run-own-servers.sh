#!/usr/bin/env bash
#
# test/fault/run-own-servers.sh -- start servers of its own (PostgreSQL, the
# default Redis, Chroma, the Elasticsearch stand-in) in a work directory of
# its own, run test/fault/run.py against them, and stop them at exit (or on
# TERM).  test/run-tests.sh runs it beside the pg_regress suite, which so
# shares no server, database, role, key or server log with a fault test.
# Packages and build are the caller's.
#
# Usage: run-own-servers.sh [--after FILE] [run.py argument ...]
#   --after FILE: start the servers at once, but the tests only once FILE
#   exists (test/run-tests.sh creates it when pgpoly is built and installed,
#   so the servers start during the build).
set -euo pipefail

# shellcheck source=test/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$PGPOLY_ROOT"

after=
if [[ "${1:-}" == --after ]]; then
	after="$2"
	shift 2
fi
pgpoly_start_servers
if [[ -n "$after" && ! -e "$after" ]]; then
	pgpoly_log "fault tests: servers up, waiting for the build"
	while [[ ! -e "$after" ]]; do
		sleep 0.2
	done
fi
pgpoly_log "fault tests: starting"
pgpoly_run python3 test/fault/run.py "$@"
