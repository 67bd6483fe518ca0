#!/usr/bin/env bash
#
# test/bench/run.sh -- `make bench`: install the needed packages, build and
# install pgpoly, start throwaway PostgreSQL and Redis servers, then run every
# test/bench/bench_*.sh (with bash) and test/bench/bench_*.py (with python3)
# in name order.  The benchmarks inherit PGHOST/PGPORT/PGUSER/PGDATABASE,
# REDIS_PORT and PGPOLY_WORK.  Exits non-zero if any benchmark failed.
set -euo pipefail

# shellcheck source=test/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$PGPOLY_ROOT"

pgpoly_setup

shopt -s nullglob
benches=(test/bench/bench_*.sh test/bench/bench_*.py)
shopt -u nullglob
if ((${#benches[@]} == 0)); then
	pgpoly_log "no benchmarks (test/bench/bench_*.sh, bench_*.py)"
	exit 0
fi
mapfile -t benches < <(printf '%s\n' "${benches[@]}" | sort)

failed=()
for b in "${benches[@]}"; do
	pgpoly_log "running $b"
	case "$b" in
	*.sh) runner=bash ;;
	*.py) runner=python3 ;;
	esac
	if ! pgpoly_run "$runner" "$b"; then
		pgpoly_log "benchmark $b FAILED"
		failed+=("$b")
	fi
done

if ((${#failed[@]} > 0)); then
	pgpoly_die "${#failed[@]} of ${#benches[@]} benchmarks failed: ${failed[*]}"
fi
pgpoly_log "${#benches[@]} benchmarks finished"
