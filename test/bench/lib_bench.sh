# shellcheck shell=bash
#
# test/bench/lib_bench.sh -- helpers of the benchmarks' reports: medians,
# ratios, verdicts against targets, and the summary lines.  Source it from a
# benchmark script (test/bench/run.sh runs only bench_*.sh files).
#
# A benchmark calls report LINE for each figure (a line ending in "MISSED"
# when verdict said so) and fail MESSAGE when a measurement failed; FAILED
# is then 1, and RESULTS holds every line for bench_summary.

RESULTS=()
FAILED=0

# median of the numbers on stdin
median() {
	sort -g | awk '{ a[NR] = $1 }
		END { if (NR == 0) exit 1
		      if (NR % 2) printf "%.2f\n", a[(NR + 1) / 2]
		      else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# calc EXPR: evaluate an awk arithmetic expression (two decimals)
calc() {
	awk "BEGIN { printf \"%.2f\", $1 }"
}

# verdict VALUE OP LIMIT: "" if VALUE OP LIMIT holds, else "  MISSED"
verdict() {
	if awk "BEGIN { exit !($1 $2 $3) }"; then echo ""; else echo "  MISSED"; fi
}

# report LINE: print a result line and keep it for the summary
report() {
	echo "$1"
	RESULTS+=("$1")
}

# fail MESSAGE: a measurement failed
fail() {
	echo "FAILED: $*"
	RESULTS+=("FAILED: $*")
	FAILED=1
}

# bench_summary WHAT: print the kept lines and how many targets were missed
bench_summary() {
	local missed
	echo
	echo "summary ($1):"
	printf '  %s\n' "${RESULTS[@]}"
	missed=$(printf '%s\n' "${RESULTS[@]}" | grep -c MISSED || true)
	echo "  $missed target(s) missed$( ((FAILED)) && echo ", some measurements FAILED")"
}
