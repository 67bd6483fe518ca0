#!/bin/bash
# bench_redis_cluster.sh - pgpoly_redis on a 3-primary Redis Cluster against
# the same work on one Redis server, in one run.
#
# Starts a Redis Cluster of 3 primaries (no replicas, like the one server it
# is compared with) on loopback with test/fault/redis_cluster.py, next to
# the harness's Redis on 127.0.0.1:$REDIS_PORT, and measures with the same
# foreign tables on both:
#
#  1. INSERT ... SELECT of 100k rows into a hash table, write_mode
#     'transactional' (timed with COMMIT: one MULTI/EXEC on the server, one
#     per hash slot on the cluster): cluster rows/s >= 80% of the server's;
#  2. the 10k-key batched join (10k local rows, each round's keys fetched
#     from every primary at once): cluster <= 1.5x the server's time;
#  3. a full scan of 1M hashes (SCAN on every primary at once, values
#     fetched from their nodes): cluster no slower than the server (<= 1.0x).
#
# Data for 2 and 3 is loaded with redis-cli --pipe (each key to the node
# serving its slot, from pgpoly.redis_key_slot), not through the FDW.
# Queries are timed with EXPLAIN (ANALYZE, TIMING OFF) "Execution Time" in a
# fresh session after a warm-up run, inserts with psql \timing (INSERT +
# COMMIT, after a warm-up insert); server and cluster runs alternate, REPEAT
# rounds, and each figure is the median.  Every run is checked (plan node,
# row count, keys created); the cluster's answers equal the server's.
#
# Figures are reported through test/bench/common.sh (bench_report: MISSED on
# a missed target, the load average with every figure).  Exit status: 0 when
# every figure was measured; 1 when a measurement failed.
#
# Usage: PGHOST=... PGPORT=... PGUSER=... REDIS_PORT=... PGPOLY_WORK=... \
#        test/bench/bench_redis_cluster.sh   (make bench BENCH=redis_cluster)
# Environment: BENCH_PARTS (insert, join, scan; default all), REPEAT (5),
# SCAN_REPEAT (3), N_SCAN (1000000), KEEP_DB.  The server's Redis database 0
# must be empty at start (it is flushed).
set -euo pipefail

: "${REDIS_PORT:?REDIS_PORT must point at a throwaway Redis server}"
REPEAT=${REPEAT:-5}
SCAN_REPEAT=${SCAN_REPEAT:-3}
N_JOIN=10000
N_INS=100000
N_SCAN=${N_SCAN:-1000000}
EXT=${PGPOLY_EXTENSION:-pgpoly}
DB=${BENCH_DB:-pgpoly_bench_cluster_$$}
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FIXTURE="$HERE/../fault/redis_cluster.py"
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -d "$DB")
RCLI=(redis-cli -h 127.0.0.1 -p "$REDIS_PORT")

if [[ -n "${PGPOLY_WORK:-}" ]]; then
	WORK="$PGPOLY_WORK/bench_redis_cluster"
	mkdir -p "$WORK"
else
	WORK="$(mktemp -d "${TMPDIR:-/tmp}/bench_redis_cluster.XXXXXX")"
fi

STARTED=0
CLUSTER_DIR=""
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	set +e
	[[ -z "$CLUSTER_DIR" ]] || python3 "$FIXTURE" stop "$CLUSTER_DIR"
	if ((STARTED)) && [[ -z "${KEEP_DB:-}" ]]; then
		dropdb --if-exists "$DB" 2>/dev/null
		"${RCLI[@]}" flushdb >/dev/null 2>&1
	fi
	[[ -n "${PGPOLY_WORK:-}" ]] || rm -rf "$WORK"
}
trap cleanup EXIT

die() {
	echo "bench_redis_cluster: ERROR: $*" >&2
	exit 1
}

# shellcheck source=test/bench/common.sh
source "$HERE/common.sh"

# ---------------------------------------------------------------- setup

[[ "$("${RCLI[@]}" ping 2>&1)" == PONG ]] || die "no Redis on 127.0.0.1:$REDIS_PORT"
[[ "$("${RCLI[@]}" dbsize)" == 0 ]] || die "Redis db 0 on port $REDIS_PORT is not empty"

echo "starting a Redis Cluster of 3 primaries"
eval "$(python3 "$FIXTURE" cluster --primaries 3 --replicas 0)" ||
	die "could not start the cluster"
IFS=, read -ra NODES <<<"$CLUSTER_PORTS"
echo "cluster nodes: ${NODES[*]}"

createdb "$DB"
STARTED=1
"${PSQL[@]}" <<SQL
CREATE EXTENSION $EXT;
CREATE SERVER one FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (host '127.0.0.1', port '$REDIS_PORT');
CREATE SERVER cl FOREIGN DATA WRAPPER pgpoly_redis
  OPTIONS (nodes '127.0.0.1:${NODES[0]}, 127.0.0.1:${NODES[1]}', timeout_ms '60000');
CREATE FUNCTION bench_users(n int)
RETURNS TABLE (user_id text, clicks_7d int, ctr float8, country text, updated timestamptz)
LANGUAGE sql IMMUTABLE AS \$\$
	SELECT g::text, (g * 37) % 500, ((g::bigint * 7919) % 100003) / 100003.0::float8,
	       (ARRAY['US', 'DE', 'FR', 'JP', 'BR', 'IN', 'GB'])[1 + g % 7],
	       timestamptz '2024-06-01 00:00:00+00' + g * interval '17 seconds'
	FROM generate_series(1, n) AS g
\$\$;
CREATE TABLE bench_req10k (request_id int PRIMARY KEY, user_id text NOT NULL, score float8);
INSERT INTO bench_req10k
SELECT g, ((g::bigint * 7919) % $N_JOIN + 1)::text, (g % 101) / 101.0 FROM generate_series(1, $N_JOIN) g;
ANALYZE bench_req10k;
SQL
for srv in one cl; do
	"${PSQL[@]}" <<SQL
CREATE FOREIGN TABLE ${srv}_u10k (user_id text OPTIONS (key 'true'), clicks_7d int, ctr float8,
	country text, updated timestamptz) SERVER $srv OPTIONS (key_prefix 'bc:u10k:');
CREATE FOREIGN TABLE ${srv}_big (user_id text OPTIONS (key 'true'), clicks_7d int, ctr float8,
	country text, updated timestamptz) SERVER $srv OPTIONS (key_prefix 'bc:big:');
CREATE FOREIGN TABLE ${srv}_ins (user_id text OPTIONS (key 'true'), clicks_7d int, ctr float8,
	country text, updated timestamptz) SERVER $srv OPTIONS (key_prefix 'bc:ins:');
SQL
done

# flush_all: empty the server and every cluster node
flush_all() {
	local p
	"${RCLI[@]}" flushdb >/dev/null
	for p in "${NODES[@]}"; do redis-cli -p "$p" flushall >/dev/null; done
}

# dbsize_cluster: keys on all cluster nodes together
dbsize_cluster() {
	local p n=0
	for p in "${NODES[@]}"; do n=$((n + $(redis-cli -p "$p" dbsize))); done
	echo "$n"
}

# ---------------------------------------------------------------- 1. inserts

# insert_sample SRV: one timed INSERT of N_INS rows + COMMIT; sets SAMPLE (ms)
insert_sample() {
	local srv="$1" out="$WORK/ins_$1.out" before after
	flush_all
	# a warm-up of 1k rows opens the connection (and learns the slot map)
	"${PSQL[@]}" <<<"INSERT INTO ${srv}_ins SELECT * FROM bench_users(1000);
\\timing on
BEGIN;
INSERT INTO ${srv}_ins SELECT * FROM bench_users($N_INS);
COMMIT;" >"$out" 2>&1 || { ERR="$(grep -E 'ERROR|FATAL' "$out" | head -n 3)"; return 1; }
	if [[ "$srv" == one ]]; then after="$("${RCLI[@]}" dbsize)"; else after="$(dbsize_cluster)"; fi
	if ((after != N_INS)); then
		ERR="$after keys after inserting $N_INS"
		return 1
	fi
	SAMPLE="$(grep -o 'Time: [0-9.]*' "$out" | awk '{ s += $2 } END { print s }')"
}

ins_one=() ins_cl=()
if bench_parts_include insert; then
	echo
	echo "INSERT of $N_INS rows (transactional, COMMIT included), server and cluster alternating:"
	for ((i = 0; i < REPEAT; i++)); do
		for srv in one cl; do
			if insert_sample "$srv"; then
				eval "ins_${srv}+=(\"\$SAMPLE\")"
			else
				bench_fail "insert on $srv: $ERR"
				break 2
			fi
		done
	done
fi
if ((BENCH_FAILED == 0 && ${#ins_one[@]} > 0)); then
	echo "  server runs (ms):  ${ins_one[*]}"
	echo "  cluster runs (ms): ${ins_cl[*]}"
	m1="$(printf '%s\n' "${ins_one[@]}" | bench_median)"
	m2="$(printf '%s\n' "${ins_cl[@]}" | bench_median)"
	r1="$(bench_calc "$N_INS / ($m1 / 1000)")"
	r2="$(bench_calc "$N_INS / ($m2 / 1000)")"
	r="$(bench_calc "$r2 / $r1")"
	bench_report "redis cluster insert 100k (rows/s, cluster over server)" \
		"$(printf '%.0f' "$r2") rows/s on the cluster" "one server: $(printf '%.0f' "$r1") rows/s" \
		"$r" '>=' 0.80
fi
flush_all

# ---------------------------------------------------------------- load

# load PREFIX N: HSET PREFIX<i> for users 1..N on the server and, each key on
# the node serving its slot, on the cluster
load() {
	local prefix="$1" n="$2" port slots
	# shellcheck disable=SC2016
	local gen='function b(s) { return "$" length(s) "\r\n" s "\r\n" }
		{ printf "*10\r\n%s%s%s%s%s%s%s%s%s%s", b("HSET"), b(p $1),
		  b("clicks_7d"), b($2), b("ctr"), b($3), b("country"), b($4), b("updated"), b($5) }'
	psql -X -q -d "$DB" -v ON_ERROR_STOP=1 -c "SET datestyle = ISO; SET timezone = UTC" \
		-c "COPY (SELECT * FROM bench_users($n)) TO STDOUT" |
		LC_ALL=C awk -F'\t' -v p="$prefix" "$gen" | "${RCLI[@]}" --pipe >"$WORK/load.out" 2>&1 ||
		die "loading $prefix on the server: $(cat "$WORK/load.out")"
	for port in "${NODES[@]}"; do
		slots="$(python3 -c "
import sys; sys.path.insert(0, '$HERE/../fault')
import redis_cluster as rc
print(' OR '.join('s BETWEEN %d AND %d' % (r[0], r[1])
      for r in rc.call($port, 'CLUSTER', 'SLOTS') if r[2][1] == $port))")"
		psql -X -q -d "$DB" -v ON_ERROR_STOP=1 -c "SET datestyle = ISO; SET timezone = UTC" \
			-c "COPY (SELECT user_id, clicks_7d, ctr, country, updated FROM (
			        SELECT *, pgpoly.redis_key_slot('$prefix' || user_id) AS s
			        FROM bench_users($n)) x WHERE $slots) TO STDOUT" |
			LC_ALL=C awk -F'\t' -v p="$prefix" "$gen" |
			redis-cli -p "$port" --pipe >"$WORK/load.out" 2>&1 ||
			die "loading $prefix on node $port: $(cat "$WORK/load.out")"
		grep -q "errors: 0," "$WORK/load.out" || die "loading $prefix on node $port: $(cat "$WORK/load.out")"
	done
	[[ "$(dbsize_cluster)" == "$("${RCLI[@]}" dbsize)" ]] ||
		die "the cluster holds $(dbsize_cluster) keys, the server $("${RCLI[@]}" dbsize)"
}

t0=$(date +%s%N)
load bc:u10k: "$N_JOIN"
bench_parts_include scan || N_SCAN=0
((N_SCAN == 0)) || load bc:big: "$N_SCAN"
echo
echo "loaded $N_JOIN + $N_SCAN hashes on the server and on the cluster in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
for p in "${NODES[@]}"; do echo "  node $p: $(redis-cli -p "$p" dbsize) keys"; done

# ---------------------------------------------------------------- queries

# sample_query NAME NODE ROWS QUERY: warm-up then timed EXPLAIN (ANALYZE,
# TIMING OFF) in a fresh session; NODE must appear with ROWS rows in both.
sample_query() {
	local name="$1" node="$2" rows="$3" q="$4" out="$WORK/$1.out"
	SAMPLE="" ERR=""
	if ! "${PSQL[@]}" -At >"$out" 2>&1 <<<"EXPLAIN (ANALYZE, TIMING OFF) $q;
EXPLAIN (ANALYZE, VERBOSE, TIMING OFF) $q;"; then
		ERR="$(grep -E 'ERROR|FATAL' "$out" | head -n 3 | tr '\n' ' ')"
		return 1
	fi
	if grep -E "$node" "$out" | grep -vq "actual rows=$rows "; then
		ERR="no '$node' node with $rows rows: $(grep -E "$node" "$out" | head -n 1)"
		return 1
	fi
	SAMPLE="$(grep -o 'Execution Time: [0-9.]*' "$out" | tail -n 1 | awk '{ print $3 }')"
}

# measure NAME NODE ROWS REPEATS QUERY_TEMPLATE (@ is one/cl): sets M_ONE, M_CL
measure() {
	local name="$1" node="$2" rows="$3" n="$4" tmpl="$5" i srv
	local -a one=() cl=()
	M_ONE="" M_CL=""
	for ((i = 0; i < n; i++)); do
		for srv in one cl; do
			if ! sample_query "$name-$srv" "$node" "$rows" "${tmpl//@/$srv}"; then
				bench_fail "$name on $srv: $ERR"
				return 1
			fi
			eval "$srv+=(\"\$SAMPLE\")"
		done
	done
	echo "  server runs (ms):  ${one[*]}"
	echo "  cluster runs (ms): ${cl[*]}"
	M_ONE="$(printf '%s\n' "${one[@]}" | bench_median)"
	M_CL="$(printf '%s\n' "${cl[@]}" | bench_median)"
}

AGG="count(*) AS n, sum(u.clicks_7d) AS clicks, round(sum(u.ctr * r.score)::numeric, 6) AS wctr, max(u.updated) AS last"
JOIN="SELECT $AGG FROM bench_req10k r JOIN @_u10k u ON u.user_id = r.user_id"
SCAN="SELECT count(*), sum(clicks_7d), max(updated) FROM @_big"

if bench_parts_include join; then
a="$("${PSQL[@]}" -At -c "${JOIN//@/one}")"
b="$("${PSQL[@]}" -At -c "${JOIN//@/cl}")"
[[ "$a" == "$b" ]] || bench_fail "join: the cluster's answer ($b) differs from the server's ($a)"

echo
echo "plan of the join on the cluster (printed once):"
"${PSQL[@]}" -c "EXPLAIN (ANALYZE, VERBOSE, TIMING OFF) ${JOIN//@/cl}" | sed 's/^/    /'

echo
echo "join $N_JOIN local rows to $N_JOIN Redis hashes (Redis Batched Join):"
if measure join "Custom Scan \(Redis Batched Join\)" "$N_JOIN" "$REPEAT" "$JOIN"; then
	r="$(bench_calc "$M_CL / $M_ONE")"
	bench_report "redis cluster join 10k (time, cluster over server)" "$M_CL ms on the cluster" \
		"one server: $M_ONE ms" "$r" '<=' 1.50
fi

fi

if ((N_SCAN > 0)); then
a="$("${PSQL[@]}" -At -c "${SCAN//@/one}")"
b="$("${PSQL[@]}" -At -c "${SCAN//@/cl}")"
[[ "$a" == "$b" ]] || bench_fail "scan: the cluster's answer ($b) differs from the server's ($a)"

echo
echo "full scan of $N_SCAN Redis hashes:"
if measure scan "Foreign Scan on public\.(one|cl)_big" "$N_SCAN" "$SCAN_REPEAT" "$SCAN"; then
	r="$(bench_calc "$M_CL / $M_ONE")"
	bench_report "redis cluster full scan of $N_SCAN hashes (time, cluster over server)" "$M_CL ms on the cluster" \
		"one server: $M_ONE ms" "$r" '<=' 1.00
	grep -E "Round Trips" "$WORK/scan-cl.out" | sed 's/^/    /'
fi
fi

# ---------------------------------------------------------------- summary

echo "(medians of $REPEAT insert and join runs, $SCAN_REPEAT scan runs)"
bench_summary bench_redis_cluster
