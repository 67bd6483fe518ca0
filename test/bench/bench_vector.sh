#!/usr/bin/env bash
#
# test/bench/bench_vector.sh -- pgpoly_vector against the same requests sent
# directly over HTTP, in the same run, on the harness's Chroma ($CHROMA_URL):
#
#   1. bulk INSERT of N vectors (dim D) through the FDW (one transaction,
#      upsert batches of 500 at COMMIT) vs direct upsert batches of 500;
#   2. k=10 nearest-neighbour query on that collection: mean latency through
#      the FDW (pgbench, one connection, prepared) vs the same /query sent
#      directly by test/bench/vector_raw.c, a C client that does what the
#      wrapper's own HTTP client does per query and no more (libcurl over one
#      keep-alive connection with the wrapper's headers, the response
#      parsed with jansson and checked; the body built once) -- the baseline
#      the target is measured against -- and by Python's http.client (for
#      reference).  The wrapper alone is timed too: the same query run by a
#      PL/pgSQL loop in one backend, without pgbench's client round trip per
#      query; with the CPU per query of that backend and of the C client
#      (/proc/PID/schedstat, CLOCK_PROCESS_CPUTIME_ID), which unlike the
#      latencies hardly depend on the load; and the PostgreSQL client round
#      trip alone (pgbench of SELECT 1, prepared), which the end-to-end
#      figure includes and a direct client does not pay.  The C client
#      sends the wrapper's bytes: the same body (the vector in shortest
#      round-trip form, k, include) and headers, in the same order; the
#      run checks it (both send one query through a recording proxy,
#      vector_direct.py record, which must see one and the same /query
#      request from both).  Both sides are timed end to end (from the
#      client's send to its reading of the answer) with one connection and
#      one query at a time; each figure is also given as the median
#      latency of one query, less moved than the mean by the scheduling
#      delays of a loaded machine (the target is judged on the mean).
#      Each round runs the C client and pgbench back to back (which one
#      first alternating between rounds) and the target is judged on the
#      median over the rounds of each round's ratio of the two means:
#      paired, so that the load of the other processes, which drifts
#      between rounds, weighs on both sides of a ratio alike.
#
# Prints each figure and the ratio FDW / C client (test/bench/common.sh);
# target for the query: <= 1.1x (issue 14).  Run by `make bench`, or by hand
# with PGHOST/PGPORT/PGUSER and CHROMA_URL set.  Knobs: N (10000), D (128),
# QUERIES (300), ROUNDS (5).
set -euo pipefail

N="${N:-10000}"
D="${D:-128}"
QUERIES="${QUERIES:-300}"
ROUNDS="${ROUNDS:-5}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=test/bench/common.sh
source "$here/common.sh"
: "${CHROMA_URL:?CHROMA_URL must point at a Chroma server}"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/pgpoly-bench-vector.XXXXXX")"
db="pgpoly_bench_vector_$$"
coll_fdw="pgpoly_bench_fdw_$$"
coll_direct="pgpoly_bench_direct_$$"
base="$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections"

rec_pid=""
cleanup() {
	[[ -z "$rec_pid" ]] || kill "$rec_pid" 2>/dev/null || true
	dropdb --if-exists "$db" >/dev/null 2>&1 || true
	curl -s -o /dev/null -X DELETE "$base/$coll_fdw" || true
	curl -s -o /dev/null -X DELETE "$base/$coll_direct" || true
	rm -rf "$tmp"
}
trap cleanup EXIT

echo "== pgpoly_vector benchmark: $N vectors of dimension $D, Chroma at $CHROMA_URL"
python3 "$here/vector_direct.py" gen "$N" "$D" "$tmp/data.csv"
head -n 1 "$tmp/data.csv" | python3 -c 'import csv,sys; print(next(csv.reader(sys.stdin))[1])' >"$tmp/q.txt"
q="$(cat "$tmp/q.txt")"

createdb "$db"
psql -X -q -v ON_ERROR_STOP=1 -d "$db" <<-SQL
	CREATE EXTENSION pgpoly;
	CREATE SERVER chroma FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url '$CHROMA_URL', timeout_ms '120000');
	CREATE FOREIGN TABLE items (id text, embedding real[], document text, metadata jsonb, _distance float8)
	  SERVER chroma OPTIONS (collection '$coll_fdw', create_collection 'true', distance 'l2', batch_size '500');
	CREATE TABLE src (id text, embedding real[], document text, metadata jsonb);
	\copy src FROM '$tmp/data.csv' WITH (FORMAT csv)
SQL

# 1. Bulk insert.
fdw_ins="$(psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" <<-SQL
	SELECT count(*) FROM items;  -- creates the collection and warms the connection
	SELECT extract(epoch FROM clock_timestamp())::numeric(20,6) AS t0 \gset
	INSERT INTO items SELECT * FROM src;
	SELECT round((extract(epoch FROM clock_timestamp()) - :t0)::numeric, 3);
SQL
)"
fdw_ins="$(echo "$fdw_ins" | tail -n 1)"
direct_ins="$(python3 "$here/vector_direct.py" upsert "$coll_direct" "$tmp/data.csv" 500)"
count="$(psql -X -At -d "$db" -c "SELECT count(*) FROM items")"
[[ "$count" == "$N" ]] || { echo "FDW insert left $count records, expected $N" >&2; exit 1; }

# 2. k=10 query latency (same body both ways): ROUNDS rounds, each a direct
# run (5 warm-up requests, then QUERIES timed) and an FDW run (pgbench, one
# connection, prepared, QUERIES + 5 transactions; the mean latency of the
# last QUERIES from pgbench's per-transaction log, so the first ones, which
# warm the new backend up, are not counted either).
cat >"$tmp/knn.sql" <<-SQL
	SELECT id, _distance FROM items ORDER BY embedding <-> '$q' LIMIT 10;
SQL
psql -X -q -At -d "$db" -c "EXPLAIN (COSTS OFF) SELECT id, _distance FROM items ORDER BY embedding <-> '$q' LIMIT 10" |
	grep -q 'pushed down' || { echo "k-NN was not pushed down" >&2; exit 1; }
gcc -O2 -Wall -o "$tmp/vector_raw" "$here/vector_raw.c" -lcurl -ljansson

# Like with like: the wrapper and the C client each send the query once
# through a recording proxy; it must have seen both send the same bytes.
python3 "$here/vector_direct.py" record "$tmp/rec" >"$tmp/rec.port" &
rec_pid=$!
for ((i = 0; i < 100; i++)); do
	[[ -s "$tmp/rec.port" ]] && break
	sleep 0.1
done
rec_url="http://127.0.0.1:$(cat "$tmp/rec.port")"
psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" >/dev/null <<-SQL
	CREATE SERVER recorder FOREIGN DATA WRAPPER pgpoly_vector OPTIONS (url '$rec_url');
	CREATE FOREIGN TABLE items_rec (id text, embedding real[], document text, metadata jsonb, _distance float8)
	  SERVER recorder OPTIONS (collection '$coll_fdw', distance 'l2');
	SELECT id, _distance FROM items_rec ORDER BY embedding <-> '$q' LIMIT 10;
SQL
"$tmp/vector_raw" "$rec_url" "$coll_fdw" "$tmp/q.txt" 10 1 >/dev/null
kill "$rec_pid"
wait "$rec_pid" 2>/dev/null || true
rec_pid=""
# (a /query from each client: each used a connection of its own)
if (("$(cut -d' ' -f1 "$tmp/rec" | sort -u | wc -l)" < 2)) ||
	[[ "$(cut -d' ' -f2 "$tmp/rec" | sort -u | wc -l)" != 1 ]]; then
	echo "the wrapper and vector_raw did not send the same /query bytes:" >&2
	for f in "$tmp"/rec.*[0-9a-f]; do
		echo "--- $f" >&2
		cat -A "$f" >&2
		echo >&2
	done
	exit 1
fi
echo "the wrapper and vector_raw send the same /query request ($(wc -c <"$(ls "$tmp"/rec.*[0-9a-f])") bytes)"
# fdw_server: the wrapper alone, without a client round trip per query: the
# k-NN query run QUERIES times (after 5) by a PL/pgSQL loop in one backend
# (its plan prepared once); prints the mean latency and the backend's CPU
# per query, in ms
fdw_server() {
	psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" 2>&1 <<-SQL | sed -n 's/.*NOTICE:  server //p'
	DO \$\$
	DECLARE
		q real[] := '$q';
		r record;
		t0 timestamptz;
		c0 bigint;
	BEGIN
		FOR i IN -4 .. $QUERIES LOOP
			IF i = 1 THEN
				t0 := clock_timestamp();
				c0 := split_part(pg_read_file('/proc/' || pg_backend_pid() || '/schedstat'), ' ', 1)::bigint;
			END IF;
			FOR r IN SELECT id, _distance FROM items ORDER BY embedding <-> q LIMIT 10 LOOP
			END LOOP;
		END LOOP;
		RAISE NOTICE 'server % %', round((extract(epoch FROM clock_timestamp() - t0) * 1000 / $QUERIES)::numeric, 3),
			round((split_part(pg_read_file('/proc/' || pg_backend_pid() || '/schedstat'), ' ', 1)::bigint - c0) / 1e6 / $QUERIES, 3);
	END
	\$\$;
	SQL
}
# the PostgreSQL client round trip alone, which the FDW's end-to-end figure
# includes and a direct client does not pay: pgbench of SELECT 1 the same way
echo "SELECT 1;" >"$tmp/one.sql"
# log_median: the median latency (ms) of the transactions of pgbench's
# per-transaction log after the first 5
log_median() {
	cat "$tmp"/knn_log* | awk 'NR > 5 { print $3 / 1000 }' | sort -n |
		awk '{ v[NR] = $1 } END { printf "%.3f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
raw_q=() raw_cpu=() raw_m=() py_q=() fdw_q=() fdw_m=() srv_q=() srv_c=() one_q=()
# run_raw / run_fdw: one run of the C client / of pgbench, appended to the
# round's figures
run_raw() {
	local t c m
	{ read -r t; read -r _ c; read -r _ m; } < <("$tmp/vector_raw" "$CHROMA_URL" "$coll_fdw" "$tmp/q.txt" 10 "$QUERIES")
	raw_q+=("$t"); raw_cpu+=("$c"); raw_m+=("$m")
}
run_fdw() {
	rm -f "$tmp"/knn_log*
	pgbench -n -M prepared -c 1 -t $((QUERIES + 5)) -f "$tmp/knn.sql" -l --log-prefix="$tmp/knn_log" "$db" \
		>"$tmp/pgbench.out" 2>&1 || { cat "$tmp/pgbench.out" >&2; exit 1; }
	fdw_q+=("$(cat "$tmp"/knn_log* | awk 'NR > 5 { s += $3; n++ } END { printf "%.3f", s / n / 1000 }')")
	fdw_m+=("$(log_median)")
}
ratio_q=() ratio_srv=()
for ((r = 0; r < ROUNDS; r++)); do
	# the two compared runs back to back, which one first alternating
	# between rounds (neither side always runs right after the other's load)
	if ((r % 2 == 0)); then run_raw; run_fdw; else run_fdw; run_raw; fi
	py_q+=("$(python3 "$here/vector_direct.py" query "$coll_fdw" "$tmp/q.txt" 10 "$QUERIES")")
	rm -f "$tmp"/knn_log*
	pgbench -n -M prepared -c 1 -t $((QUERIES + 5)) -f "$tmp/one.sql" -l --log-prefix="$tmp/knn_log" "$db" \
		>"$tmp/pgbench.out" 2>&1 || { cat "$tmp/pgbench.out" >&2; exit 1; }
	one_q+=("$(cat "$tmp"/knn_log* | awk 'NR > 5 { s += $3; n++ } END { printf "%.3f", s / n / 1000 }')")
	read -r t c < <(fdw_server)
	[[ -n "$c" ]] || { echo "the server-side k-NN loop failed" >&2; exit 1; }
	srv_q+=("$t"); srv_c+=("$c")
	ratio_q+=("$(awk "BEGIN { printf \"%.3f\", ${fdw_q[r]} / ${raw_q[r]} }")")
	ratio_srv+=("$(awk "BEGIN { printf \"%.3f\", $t / ${raw_q[r]} }")")
done
echo "k=10 query: C client runs (ms) ${raw_q[*]}; Python runs (ms) ${py_q[*]}; FDW runs (ms) ${fdw_q[*]};" \
	"FDW server-side runs (ms) ${srv_q[*]}; pgbench SELECT 1 runs (ms) ${one_q[*]}"
echo "k=10 query CPU per query: C client (ms) ${raw_cpu[*]}; FDW backend (ms) ${srv_c[*]}"
echo "k=10 query median latency of one query: C client runs (ms) ${raw_m[*]}; FDW runs (ms) ${fdw_m[*]}"
echo "k=10 query, each round's FDW / C client (means): ${ratio_q[*]}; server-side / C client: ${ratio_srv[*]}"
m_raw="$(bench_median <<<"${raw_q[*]}")"
m_py="$(bench_median <<<"${py_q[*]}")"
m_fdw="$(bench_median <<<"${fdw_q[*]}")"
m_srv="$(bench_median <<<"${srv_q[*]}")"
m_rawc="$(bench_median <<<"${raw_cpu[*]}")"
m_srvc="$(bench_median <<<"${srv_c[*]}")"
m_one="$(bench_median <<<"${one_q[*]}")"
m_rawm="$(bench_median <<<"${raw_m[*]}")"
m_fdwm="$(bench_median <<<"${fdw_m[*]}")"

bench_report "vector bulk INSERT of $N x $D (batches of 500)" "${fdw_ins} s" "direct upsert batches ${direct_ins} s" \
	"$(bench_calc "$fdw_ins / $direct_ins")" "-" ""
bench_report "vector k=10 query, mean of $QUERIES, pgbench -M prepared (ratio: median over $ROUNDS rounds of the round's FDW / C client)" \
	"$m_fdw ms (median query $m_fdwm ms); server-side (no client round trip) $m_srv ms, backend CPU $m_srvc ms/query; PostgreSQL client round trip alone (pgbench SELECT 1) $m_one ms" \
	"the same /query bytes from C (libcurl, keep-alive, response parsed per query) $m_raw ms (median query $m_rawm ms), client CPU $m_rawc ms/query; from Python http.client $m_py ms" \
	"$(bench_median <<<"${ratio_q[*]}")" "<=" 1.1
bench_report "vector k=10 query, the same medians' ratio (unpaired, for comparison)" \
	"$m_fdw ms" "C client $m_raw ms" "$(bench_calc "$m_fdw / $m_raw")" "-" ""
bench_report "vector k=10 query, median latency of one query (the same runs)" \
	"$m_fdwm ms" "C client $m_rawm ms" "$(bench_calc "$m_fdwm / $m_rawm")" "-" ""
bench_report "vector k=10 query, the wrapper alone: server-side latency / C client (median of the rounds' ratios)" \
	"$m_srv ms" "C client $m_raw ms" "$(bench_median <<<"${ratio_srv[*]}")" "<=" 1.1
bench_summary bench_vector
