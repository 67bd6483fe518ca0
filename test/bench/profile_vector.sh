#!/usr/bin/env bash
#
# test/bench/profile_vector.sh -- where the backend's work of a vector k-NN
# query goes (issue 14), on throwaway servers like `make bench`: the k=10
# query of bench_vector.sh over N vectors of dimension D (same data, same
# query vector), against the C client test/bench/vector_raw.c.
#
#   - strace -c on a backend running the query QUERIES times as a prepared
#     statement (after warm-up): syscalls per query (OUT/knn.strace), and on
#     vector_raw sending the same /query QUERIES times (OUT/raw.strace);
#   - the backend's CPU per query (/proc/PID/schedstat) over those runs;
#   - a timeline (perf record -a of the sendto/recvfrom tracepoints,
#     test/bench/vector_timeline.py): how the wall time of a query splits
#     between the hand-overs pgbench -> backend -> service -> backend ->
#     pgbench and each process's own work, pgbench -M prepared against
#     vector_raw (OUT/timeline.txt);
#   - callgrind: the postmaster stopped, a single-user backend (postgres
#     --single) under valgrind --tool=callgrind --dump-before=ReadyForQuery
#     runs a PL/pgSQL loop of 100 queries twice (warm-up, profiled): Ir per
#     query of the backend (Chroma, not under valgrind, is not counted);
#     and vector_raw under callgrind with 100 and 200 queries: the client's
#     Ir per query.  OUT/callgrind.totals, OUT/knn.cg.{self,incl}.txt.
#
# Usage: test/bench/profile_vector.sh [OUT]  (default /tmp/pgpoly-profile-vector)
# Environment: N (10000), D (128), QUERIES (300).  Run through
# /work/tools/iso-run NAME on the shared machines.  Needs valgrind, strace,
# perf.
set -euo pipefail

# shellcheck source=test/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$PGPOLY_ROOT"
OUT="$(realpath -m "${1:-/tmp/pgpoly-profile-vector}")"
N="${N:-10000}"
D="${D:-128}"
QUERIES="${QUERIES:-300}"
mkdir -p "$OUT"
chmod 777 "$OUT"
PGPOLY_PACKAGES="valgrind strace linux-perf" pgpoly_install_packages
pgpoly_setup
DB=pgpoly_profile_vector
COLL="pgpoly_profile_$$"

python3 test/bench/vector_direct.py gen "$N" "$D" "$OUT/data.csv"
head -n 1 "$OUT/data.csv" | python3 -c 'import csv,sys; print(next(csv.reader(sys.stdin))[1])' >"$OUT/q.txt"
q="$(cat "$OUT/q.txt")"
createdb "$DB"
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" <<SQL
CREATE EXTENSION pgpoly;
CREATE SERVER chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url '$CHROMA_URL', timeout_ms '600000');
CREATE FOREIGN TABLE items (id text, embedding real[], document text, metadata jsonb, _distance float8)
  SERVER chroma OPTIONS (collection '$COLL', create_collection 'true', distance 'l2', batch_size '500');
CREATE TABLE src (id text, embedding real[], document text, metadata jsonb);
\copy src FROM '$OUT/data.csv' WITH (FORMAT csv)
INSERT INTO items SELECT * FROM src;
SQL
KNN="SELECT id, _distance FROM items ORDER BY embedding <-> '$q' LIMIT 10"
gcc -O2 -Wall -o "$OUT/vector_raw" test/bench/vector_raw.c -lcurl -ljansson

# ---------------------------------------------------------------- strace
{
	echo "PREPARE k AS $KNN;"
	echo "SELECT pg_backend_pid() AS pid \\gset"
	echo "\\setenv PID :pid"
	for ((i = 0; i < 20; i++)); do echo "EXECUTE k;"; done
	echo "\\! strace -c -o $OUT/knn.strace -p \$PID & echo \$! > $OUT/strace.pid; sleep 1"
	echo "SELECT split_part(pg_read_file('/proc/' || pg_backend_pid() || '/schedstat'), ' ', 1)::bigint AS c0 \\gset"
	for ((i = 0; i < QUERIES; i++)); do echo "EXECUTE k;"; done
	echo "SELECT 'backend CPU per query (ms, under strace): ' || round((split_part(pg_read_file('/proc/' || pg_backend_pid() || '/schedstat'), ' ', 1)::bigint - :c0) / 1e6 / $QUERIES, 3) AS cpu \\gset"
	echo "\\! kill -INT \$(cat $OUT/strace.pid); sleep 0.5"
	echo "\\echo :cpu"
	echo "\\o /dev/null"
} >"$OUT/knn.psql"
psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB" -f "$OUT/knn.psql" | grep 'backend CPU' >"$OUT/knn.cpu" || true
strace -c -f -o "$OUT/raw.strace" "$OUT/vector_raw" "$CHROMA_URL" "$COLL" "$OUT/q.txt" 10 "$QUERIES" >/dev/null
{
	echo "syscalls per query, backend (strace -c, $QUERIES EXECUTEs; recvfrom/sendto are the client protocol):"
	awk -v n="$QUERIES" '$1 ~ /^[0-9.]+$/ && $4 ~ /^[0-9]+$/ { printf "  %-16s %.2f\n", $NF, $4 / n }' "$OUT/knn.strace"
	cat "$OUT/knn.cpu"
	echo "syscalls per query, vector_raw (strace -c -f, $QUERIES queries + 6 warm-up):"
	awk -v n="$QUERIES" '$1 ~ /^[0-9.]+$/ && $4 ~ /^[0-9]+$/ { printf "  %-16s %.2f\n", $NF, $4 / n }' "$OUT/raw.strace"
} >"$OUT/syscalls.txt"

# ---------------------------------------------------------------- timeline
echo "$KNN;" >"$OUT/knn.sql"
events=(-e syscalls:sys_enter_sendto -e syscalls:sys_exit_sendto
	-e syscalls:sys_enter_recvfrom -e syscalls:sys_exit_recvfrom)
perf record -q -a "${events[@]}" -o "$OUT/timeline.pgbench.data" -- \
	pgbench -n -M prepared -c 1 -t $((QUERIES + 5)) -f "$OUT/knn.sql" "$DB" >/dev/null
perf record -q -a "${events[@]}" -o "$OUT/timeline.raw.data" -- \
	"$OUT/vector_raw" "$CHROMA_URL" "$COLL" "$OUT/q.txt" 10 "$QUERIES" >/dev/null
{
	echo "timeline of a query, ms (perf record -a of the sendto/recvfrom tracepoints):"
	perf script -i "$OUT/timeline.pgbench.data" -F comm,pid,time,event,trace 2>/dev/null |
		python3 test/bench/vector_timeline.py pgbench
	perf script -i "$OUT/timeline.raw.data" -F comm,pid,time,event,trace 2>/dev/null |
		python3 test/bench/vector_timeline.py client vector_raw
} >"$OUT/timeline.txt"
rm -f "$OUT"/timeline.*.data

# ---------------------------------------------------------------- callgrind
pgpoly_log "callgrind: stopping the postmaster; single-user backend"
(cd / && _pgpoly_as_pg pg_ctl -D "$PGPOLY_PGDATA" -m fast -w stop >/dev/null)
loop="DO \$\$ DECLARE r record; BEGIN FOR i IN 1 .. 100 LOOP FOR r IN $KNN LOOP END LOOP; END LOOP; END \$\$"
printf '%s\n%s\nSELECT 1\n' "$loop" "$loop" >"$OUT/knn.single.sql"
rm -f "$OUT/knn.cg".*
(cd / && _pgpoly_as_pg valgrind --tool=callgrind --dump-before=ReadyForQuery \
	--compress-strings=no --compress-pos=no --callgrind-out-file="$OUT/knn.cg" \
	"$(dirname "$PG_CONFIG")/postgres" --single -D "$PGPOLY_PGDATA" -c timezone=UTC "$DB" \
	<"$OUT/knn.single.sql" >"$OUT/knn.single.out" 2>"$OUT/knn.valgrind")
# dumps: .1 start-up, .2 warm-up loop, .3 profiled loop
ir="$(grep -m1 '^summary:' "$OUT/knn.cg.3" | awk '{ print $2 }')"
echo "backend: $((ir / 100)) Ir per query (100-query loop after a warm-up loop)" >"$OUT/callgrind.totals"
callgrind_annotate --inclusive=no --threshold=99 "$OUT/knn.cg.3" >"$OUT/knn.cg.self.txt" 2>/dev/null || true
callgrind_annotate --inclusive=yes --threshold=99 "$OUT/knn.cg.3" >"$OUT/knn.cg.incl.txt" 2>/dev/null || true
raw=()
for n in 100 200; do
	valgrind --tool=callgrind --callgrind-out-file="$OUT/raw.cg" \
		"$OUT/vector_raw" "$CHROMA_URL" "$COLL" "$OUT/q.txt" 10 "$n" >/dev/null 2>"$OUT/raw.valgrind"
	raw+=("$(grep -m1 '^summary:' "$OUT/raw.cg" | awk '{ print $2 }')")
done
echo "vector_raw: $(((raw[1] - raw[0]) / 100)) Ir per query (200 runs minus 100, client side)" >>"$OUT/callgrind.totals"
rm -f "$OUT"/knn.cg "$OUT"/knn.cg.[12] "$OUT/raw.cg"
cat "$OUT/syscalls.txt" "$OUT/timeline.txt" "$OUT/callgrind.totals"
pgpoly_log "profile written to $OUT"
