#!/bin/bash
# bench_elastic.sh - pgpoly_elastic scan and write throughput against direct
# requests, in one run against the same server ($ES_URL: the stand-in, or a
# real cluster when the harness was given PGPOLY_ES_URL).
#
#  1. INSERT of N rows (default 100k) through a pgpoly_elastic table
#     (write_mode 'transactional', timed including COMMIT, i.e. the _bulk
#     requests) vs test/bench/es_direct.py sending the same NDJSON documents
#     in _bulk requests of the same batch size (target: <= 1.3x);
#  2. a full scan of those N documents through the FDW (fetch_size PAGE,
#     point in time + search_after) vs es_direct.py paging the same PIT +
#     search_after requests and parsing them (target: <= 1.5x).
# Each figure is the median of REPEAT runs (default 3).  Every run checks
# the row count.  Exit 0 when every figure was measured (a missed target
# prints MISSED), 1 when a measurement failed.
#
# Usage: PGHOST=... PGPORT=... PGUSER=... ES_URL=... test/bench/bench_elastic.sh
set -euo pipefail

: "${ES_URL:?ES_URL must point at Elasticsearch or the stand-in}"
N=${N:-100000}
PAGE=${PAGE:-1000}
BATCH=${BATCH:-1000}
REPEAT=${REPEAT:-3}
EXT=${PGPOLY_EXTENSION:-pgpoly}
DB=pgpoly_bench_es_$$
IDX_FDW=pgpoly_bench_fdw_$$
IDX_DIRECT=pgpoly_bench_direct_$$
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=test/bench/common.sh
source "$HERE/common.sh"
DIRECT=(python3 "$HERE/es_direct.py" "$ES_URL")
PSQL=(psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB")

cleanup() {
	set +e
	"${DIRECT[@]}" delete "$IDX_FDW" >/dev/null 2>&1
	"${DIRECT[@]}" delete "$IDX_DIRECT" >/dev/null 2>&1
	dropdb --if-exists "$DB" 2>/dev/null
}
trap cleanup EXIT

median() {
	sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) printf "%.3f", a[(NR + 1) / 2];
		else printf "%.3f", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
now() { date +%s.%N; }
elapsed() { awk "BEGIN { printf \"%.3f\", $(now) - $1 }"; }

createdb "$DB"
"${PSQL[@]}" -c "CREATE EXTENSION $EXT" -c "CREATE SERVER bench_es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '$ES_URL', timeout_ms '120000')" \
	-c "CREATE FOREIGN TABLE docs (_id text, n int, grp text, label text) SERVER bench_es OPTIONS (index '$IDX_FDW', fetch_size '$PAGE', batch_size '$BATCH')"

fdw_ins=() direct_ins=() fdw_scan=() direct_scan=()
for ((r = 1; r <= REPEAT; r++)); do
	"${DIRECT[@]}" create "$IDX_FDW" >/dev/null
	"${DIRECT[@]}" create "$IDX_DIRECT" >/dev/null
	t0=$(now)
	"${PSQL[@]}" -c "INSERT INTO docs SELECT 'b' || g, g, 'g' || (g % 3), 'label ' || g FROM generate_series(1, $N) g"
	fdw_ins+=("$(elapsed "$t0")")
	read -r secs cnt < <("${DIRECT[@]}" bulk "$IDX_DIRECT" "$N" "$BATCH")
	[[ "$cnt" == "$N" ]] || { echo "direct bulk wrote $cnt" >&2; exit 1; }
	direct_ins+=("$secs")
	"${DIRECT[@]}" delete "$IDX_DIRECT" >/dev/null
	curl -s -XPOST "$ES_URL/$IDX_FDW/_refresh" >/dev/null 2>&1 || python3 -c "import urllib.request,sys; urllib.request.urlopen(urllib.request.Request(sys.argv[1], method='POST'))" "$ES_URL/$IDX_FDW/_refresh"
	t0=$(now)
	cnt=$("${PSQL[@]}" -c "SELECT count(*) FROM (SELECT n, grp, label FROM docs OFFSET 0) x")
	fdw_scan+=("$(elapsed "$t0")")
	[[ "$cnt" == "$N" ]] || { echo "FDW scan returned $cnt rows, want $N" >&2; exit 1; }
	read -r secs cnt < <("${DIRECT[@]}" scan "$IDX_FDW" "$PAGE")
	[[ "$cnt" == "$N" ]] || { echo "direct scan returned $cnt" >&2; exit 1; }
	direct_scan+=("$secs")
done

fi_m=$(printf '%s\n' "${fdw_ins[@]}" | median)
di_m=$(printf '%s\n' "${direct_ins[@]}" | median)
fs_m=$(printf '%s\n' "${fdw_scan[@]}" | median)
ds_m=$(printf '%s\n' "${direct_scan[@]}" | median)
ri=$(awk "BEGIN { printf \"%.2f\", $fi_m / $di_m }")
rs=$(awk "BEGIN { printf \"%.2f\", $fs_m / $ds_m }")
echo "bench_elastic: server $ES_URL, N=$N, page $PAGE, batch $BATCH, median of $REPEAT"
echo "  INSERT runs (s): FDW ${fdw_ins[*]}; direct ${direct_ins[*]}"
echo "  scan runs (s):   FDW ${fdw_scan[*]}; direct ${direct_scan[*]}"
bench_report "Elasticsearch INSERT $N rows (median of $REPEAT)" "${fi_m} s" "direct _bulk ${di_m} s" "$ri" "<=" 1.3
bench_report "Elasticsearch scan of $N documents (median of $REPEAT)" "${fs_m} s" "direct PIT + search_after ${ds_m} s" "$rs" "<=" 1.5
bench_summary bench_elastic
