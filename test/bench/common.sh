# shellcheck shell=bash
#
# test/bench/common.sh -- helpers shared by the test/bench/bench_*.sh scripts.
#
# Every benchmark reports each figure through bench_report, in one format:
#
#   <workload>: pgpoly <figure> | <baseline(s) measured in the same run> |
#       ratio <r> | target <op> <limit> [ MISSED ] | load <1-min load average>
#
# so that a missed target always prints MISSED, and the load of this shared
# machine is printed next to every figure.  When run by test/bench/run.sh
# (PGPOLY_WORK set), each line is also appended to $PGPOLY_WORK/bench_results,
# which run.sh prints as the run's summary.

# median of the numbers on stdin (one per line or space-separated)
bench_median() {
	tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 }
		END { if (NR == 0) exit 1
		      if (NR % 2) printf "%.3f\n", a[(NR + 1) / 2]
		      else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# the minimum and maximum of the numbers on stdin, as "min–max"
bench_range() {
	tr ' ' '\n' | grep -v '^$' | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 }
		END { printf "%s–%s\n", lo, hi }'
}

# bench_calc EXPR: evaluate an awk arithmetic expression (2 decimals)
bench_calc() {
	awk "BEGIN { printf \"%.2f\", $1 }"
}

# bench_load: the 1-minute load average now
bench_load() {
	cut -d' ' -f1 /proc/loadavg
}

# bench_missed VALUE OP LIMIT: "" if VALUE OP LIMIT holds, else "MISSED"
bench_missed() {
	if awk "BEGIN { exit !($1 $2 $3) }"; then echo ""; else echo "MISSED"; fi
}

BENCH_RESULTS=()
BENCH_FAILED=0

# bench_report WORKLOAD PGPOLY BASELINES VALUE OP LIMIT [NOTE]
#   PGPOLY and BASELINES are the figures as text; VALUE OP LIMIT is the
#   target test ("1.35 <= 1.2", "61000 >= 100000"); OP "-" reports a figure
#   that has no target.  VALUE is printed as the ratio unless it is the
#   figure itself (NOTE "figure").
bench_report() {
	local what="$1" fig="$2" base="$3" value="$4" op="$5" limit="$6" note="${7:-}"
	local line verdict=""

	line="$what: pgpoly $fig"
	[[ -z "$base" ]] || line+=" | $base"
	[[ "$note" == figure ]] || line+=" | ratio $value"
	if [[ "$op" == "-" ]]; then
		line+=" | no target"
	else
		verdict="$(bench_missed "$value" "$op" "$limit")"
		line+=" | target $op $limit${verdict:+ $verdict}"
	fi
	line+=" | load $(bench_load)"
	echo "RESULT $line"
	BENCH_RESULTS+=("$line")
	if [[ -n "${PGPOLY_WORK:-}" ]]; then
		echo "$line" >>"$PGPOLY_WORK/bench_results"
	fi
}

# bench_fail WHAT: a measurement that could not be made (the script then
# exits 1 from bench_summary)
bench_fail() {
	echo "FAILED: $*"
	BENCH_RESULTS+=("FAILED: $*")
	BENCH_FAILED=1
	if [[ -n "${PGPOLY_WORK:-}" ]]; then
		echo "FAILED: $*" >>"$PGPOLY_WORK/bench_results"
	fi
}

# bench_summary NAME: print this script's results; exit status 1 if any
# measurement failed (a missed target only prints MISSED)
bench_summary() {
	local missed

	echo
	echo "$1 summary:"
	printf '  %s\n' "${BENCH_RESULTS[@]}"
	missed=$(printf '%s\n' "${BENCH_RESULTS[@]}" | grep -c MISSED || true)
	echo "  $missed target(s) missed$( ((BENCH_FAILED)) && echo ", some measurements FAILED")"
	return "$BENCH_FAILED"
}

# bench_parts_include PART: whether PART was selected (BENCH_PARTS is a
# comma-separated list of parts; empty selects all)
bench_parts_include() {
	[[ -z "${BENCH_PARTS:-}" || ",$BENCH_PARTS," == *",$1,"* ]]
}
