#!/usr/bin/env bash
#
# test/fault/run-own-servers.sh -- start servers of its own (PostgreSQL, the
# default Redis, Chroma, the Elasticsearch stand-in) in a work directory of
# its own, run test/fault/run.py against them (arguments are run.py's), and
# stop them at exit (or on TERM).  test/run-tests.sh runs it beside the
# pg_regress suite, which so shares no server, database, role, key or
# server log with a fault test.  Packages and build are the caller's.
set -euo pipefail

# shellcheck source=test/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$PGPOLY_ROOT"

pgpoly_start_servers
pgpoly_run python3 test/fault/run.py "$@"
