#!/usr/bin/env bash
#
# test/demo.sh -- `make demo`: install the needed packages, build and install
# pgpoly, start throwaway PostgreSQL and Redis servers, and run test/demo.sql
# with psql (REDIS_PORT is in the environment for psql's \getenv).  Everything
# is stopped and removed at the end (PGPOLY_KEEP_WORK=1 keeps the work dir).
set -euo pipefail

# shellcheck source=test/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$PGPOLY_ROOT"

demo_sql=test/demo.sql
[[ -f "$demo_sql" ]] || pgpoly_die "$demo_sql does not exist"

pgpoly_setup

pgpoly_log "running $demo_sql"
if ! pgpoly_run psql -X -v ON_ERROR_STOP=1 -f "$demo_sql"; then
	pgpoly_log "last lines of the PostgreSQL log ($PGPOLY_PGLOG):"
	tail -n 20 "$PGPOLY_PGLOG" >&2 || true
	pgpoly_die "demo failed: psql -f $demo_sql exited non-zero"
fi
pgpoly_log "demo finished successfully"
