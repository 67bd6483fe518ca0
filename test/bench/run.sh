#!/usr/bin/env bash
#
# test/bench/run.sh -- `make bench`: install the needed packages, build and
# install pgpoly, start throwaway PostgreSQL, Redis, Chroma and Elasticsearch
# stand-in servers, then run the benchmarks: test/bench/bench_*.sh (with
# bash) and test/bench/bench_*.py (with python3), in name order.  The
# benchmarks inherit PGHOST/PGPORT/PGUSER/PGDATABASE, REDIS_PORT, CHROMA_URL,
# ES_URL and PGPOLY_WORK.  At the end it prints every figure the benchmarks
# reported (test/bench/common.sh, bench_report) with the load average, and
# exits non-zero if any benchmark failed (a missed target prints MISSED but
# is not a failure).
#
# Usage: test/bench/run.sh [NAME[:PART[,PART...]]]...
#   NAME selects test/bench/bench_NAME.sh (or .py); PARTs are handed to it
#   as BENCH_PARTS (bench_redis.sh: join, keys, write, point;
#   bench_features.sh: materialize, serve, training; bench_monitoring.sh:
#   predictions, ingest, drift).  No argument: all.
#   From make: make bench BENCH="redis:join,keys features".
set -euo pipefail

# shellcheck source=test/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$PGPOLY_ROOT"

declare -A parts=()
selected=()
for arg in "$@"; do
	name="${arg%%:*}"
	found=()
	for f in test/bench/bench_"$name".sh test/bench/bench_"$name".py; do
		[[ ! -f "$f" ]] || found+=("$f")
	done
	((${#found[@]} == 1)) || pgpoly_die "no benchmark test/bench/bench_$name.sh or .py"
	selected+=("${found[0]}")
	[[ "$arg" != *:* ]] || parts["${found[0]}"]="${arg#*:}"
done

pgpoly_setup

if ((${#selected[@]} > 0)); then
	benches=("${selected[@]}")
else
	shopt -s nullglob
	benches=(test/bench/bench_*.sh test/bench/bench_*.py)
	shopt -u nullglob
	mapfile -t benches < <(printf '%s\n' "${benches[@]}" | sort)
fi
if ((${#benches[@]} == 0)); then
	pgpoly_log "no benchmarks (test/bench/bench_*.sh, bench_*.py)"
	exit 0
fi
: >"$PGPOLY_WORK/bench_results"

failed=()
start=$(date +%s)
for b in "${benches[@]}"; do
	pgpoly_log "running $b${parts[$b]:+ (parts ${parts[$b]})}; load average $(cut -d' ' -f1-3 /proc/loadavg)"
	case "$b" in
	*.sh) runner=bash ;;
	*.py) runner=python3 ;;
	esac
	t0=$(date +%s)
	if ! BENCH_PARTS="${parts[$b]:-}" pgpoly_run "$runner" "$b"; then
		pgpoly_log "benchmark $b FAILED"
		failed+=("$b")
	fi
	pgpoly_log "$b took $(($(date +%s) - t0)) s; load average $(cut -d' ' -f1-3 /proc/loadavg)"
done

echo
echo "make bench results ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores," \
	"$(($(date +%s) - start)) s; load average now $(cut -d' ' -f1-3 /proc/loadavg)):"
sed 's/^/  /' "$PGPOLY_WORK/bench_results"
echo "  $(grep -c MISSED "$PGPOLY_WORK/bench_results" || true) target(s) MISSED"

if ((${#failed[@]} > 0)); then
	pgpoly_die "${#failed[@]} of ${#benches[@]} benchmarks failed: ${failed[*]}"
fi
pgpoly_log "${#benches[@]} benchmarks finished"
