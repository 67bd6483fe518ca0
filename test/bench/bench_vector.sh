#!/usr/bin/env bash
#
# test/bench/bench_vector.sh -- pgpoly_vector against the same requests sent
# directly over HTTP, in the same run, on the harness's Chroma ($CHROMA_URL):
#
#   1. bulk INSERT of N vectors (dim D) through the FDW (one transaction,
#      upsert batches of 500 at COMMIT) vs direct upsert batches of 500;
#   2. k=10 nearest-neighbour query on that collection: mean latency through
#      the FDW (pgbench, one connection, prepared) vs the same /query body
#      sent directly over a keep-alive HTTP connection.
#
# Prints each figure and the ratio FDW / direct (test/bench/common.sh);
# target for the query: <= 1.1x (issue 14; was 1.3x).  Run by `make bench`,
# or by hand with PGHOST/PGPORT/PGUSER and CHROMA_URL set.  Knobs: N (10000),
# D (128), QUERIES (300), ROUNDS (3).
set -euo pipefail

N="${N:-10000}"
D="${D:-128}"
QUERIES="${QUERIES:-300}"
ROUNDS="${ROUNDS:-3}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=test/bench/common.sh
source "$here/common.sh"
: "${CHROMA_URL:?CHROMA_URL must point at a Chroma server}"
tmp="$(mktemp -d "${TMPDIR:-/tmp}/pgpoly-bench-vector.XXXXXX")"
db="pgpoly_bench_vector_$$"
coll_fdw="pgpoly_bench_fdw_$$"
coll_direct="pgpoly_bench_direct_$$"
base="$CHROMA_URL/api/v2/tenants/default_tenant/databases/default_database/collections"

cleanup() {
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
direct_q=() fdw_q=()
for ((r = 0; r < ROUNDS; r++)); do
	direct_q+=("$(python3 "$here/vector_direct.py" query "$coll_fdw" "$tmp/q.txt" 10 "$QUERIES")")
	rm -f "$tmp"/knn_log*
	pgbench -n -M prepared -c 1 -t $((QUERIES + 5)) -f "$tmp/knn.sql" -l --log-prefix="$tmp/knn_log" "$db" \
		>"$tmp/pgbench.out" 2>&1 || { cat "$tmp/pgbench.out" >&2; exit 1; }
	fdw_q+=("$(cat "$tmp"/knn_log* | awk 'NR > 5 { s += $3; n++ } END { printf "%.3f", s / n / 1000 }')")
done
echo "k=10 query: direct runs (ms) ${direct_q[*]}; FDW runs (ms) ${fdw_q[*]}"
m_direct="$(bench_median <<<"${direct_q[*]}")"
m_fdw="$(bench_median <<<"${fdw_q[*]}")"

bench_report "vector bulk INSERT of $N x $D (batches of 500)" "${fdw_ins} s" "direct upsert batches ${direct_ins} s" \
	"$(bench_calc "$fdw_ins / $direct_ins")" "-" ""
bench_report "vector k=10 query, mean of $QUERIES (median of $ROUNDS rounds)" "$m_fdw ms" \
	"the same /query over HTTP (Python http.client, keep-alive) $m_direct ms" \
	"$(bench_calc "$m_fdw / $m_direct")" "<=" 1.1
bench_summary bench_vector
