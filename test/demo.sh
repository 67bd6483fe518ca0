#!/usr/bin/env bash
#
# test/demo.sh -- `make demo`: install the needed packages, build and install
# pgpoly, start throwaway PostgreSQL and Redis servers, and run test/demo.sql
# with psql (REDIS_PORT is in the environment for psql's \getenv), then
# test/demo_sync.sql in three steps around a shutdown and restart of Redis.
# Everything is stopped and removed at the end (PGPOLY_KEEP_WORK=1 keeps the
# work dir).
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
# Keeping stores in sync, while Redis is shut down and started again.
demo_sync() {
	pgpoly_run psql -X -v ON_ERROR_STOP=1 -v step="$1" -f test/demo_sync.sql ||
		pgpoly_die "demo failed: test/demo_sync.sql, step $1"
}
redis_dir="$PGPOLY_WORK/redis-default"
demo_sync before
redis_pid="$(cat "$redis_dir/redis.pid")"
redis-cli -p "$REDIS_PORT" shutdown save >/dev/null 2>&1 || true
for ((i = 0; i < 100; i++)); do
	_pgpoly_alive "$redis_pid" || break
	sleep 0.1
done
demo_sync down
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
	--daemonize yes --pidfile "$redis_dir/redis.pid" --dir "$redis_dir" \
	--logfile "$redis_dir/redis.log" >/dev/null
for ((i = 0; i < 100; i++)); do
	[[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]] && break
	sleep 0.1
done
pgpoly_register_pid "$(cat "$redis_dir/redis.pid")" redis-default
demo_sync after

pgpoly_log "demo finished successfully"
