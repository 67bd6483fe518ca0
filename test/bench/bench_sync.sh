#!/bin/bash
# bench_sync.sh - the outbox and its worker (pgpoly.create_sync) against
# writing the stores directly, in one run:
#
#  1. delivery of N (100k) rows inserted into a synced native table to a
#     Redis hash table (from the writer's COMMIT until sync_wait returns) vs
#     INSERT ... SELECT of the same rows into the Redis foreign table
#     directly, timed including COMMIT (target: <= 2x);
#  2. the same delivery to an Elasticsearch index vs test/bench/es_direct.py
#     sending the same documents in _bulk requests of the same size
#     (target: <= 2x);
#  3. steady state: pgbench commits 2000 single-row UPDATEs per second to a
#     synced table for DURATION seconds; sync_status.lag (the age of the
#     oldest undelivered change) is sampled every 20 ms (target: p99 of the
#     samples < 200 ms, with >= 95% of the rate achieved);
#  4. the writer's overhead: INSERT of N rows into a native table with a
#     sync vs into the same table without one, each timed including COMMIT
#     (target: <= 1.5x);
#  5. write_mode 'outbox': INSERT of N rows into a Redis hash table in
#     outbox mode, timed including COMMIT, vs the same INSERT in the default
#     transactional mode (figure 1's direct INSERT); and the delivery of
#     those rows (from that COMMIT until sync_wait returns) vs the same
#     direct INSERT (no target: the ratios are printed).
# Figures 1, 2, 4 and 5 are medians of REPEAT (3) rounds, interleaved after
# a warm-up round; every round checks that the target holds all N rows.
# Every figure goes through bench_report (test/bench/common.sh), so `make
# bench`'s summary lists it and counts a missed target.  Exit 0 when every
# figure was measured (a missed target prints MISSED), 1 when a measurement
# failed.
#
# Usage: PGHOST=... REDIS_PORT=... ES_URL=... test/bench/bench_sync.sh
# Environment: N (100000), REPEAT (3), DURATION (10), RATE (2000),
#              REDIS_DB (3: the Redis database used and flushed).
set -euo pipefail
# shellcheck source=test/bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

: "${REDIS_PORT:?REDIS_PORT must point at a throwaway Redis server}"
: "${ES_URL:?ES_URL must point at Elasticsearch or the stand-in}"
N=${N:-100000}
REPEAT=${REPEAT:-3}
DURATION=${DURATION:-10}
RATE=${RATE:-2000}
REDIS_DB=${REDIS_DB:-3}
BATCH=1000
EXT=${PGPOLY_EXTENSION:-pgpoly}
DB=pgpoly_bench_sync_$$
IDX=pgpoly_bench_sync_$$
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIRECT=(python3 "$HERE/es_direct.py" "$ES_URL")
PSQL=(psql -X -q -At -v ON_ERROR_STOP=1 -d "$DB")
RCLI=(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" -n "$REDIS_DB")
WORK="${PGPOLY_WORK:-${TMPDIR:-/tmp}}/bench_sync_$$"
mkdir -p "$WORK"

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
	set +e
	dropdb --if-exists --force "$DB" 2>/dev/null
	"${DIRECT[@]}" delete "$IDX" >/dev/null 2>&1
	"${DIRECT[@]}" delete "${IDX}_direct" >/dev/null 2>&1
	"${RCLI[@]}" flushdb >/dev/null 2>&1
	rm -rf "$WORK"
}
trap cleanup EXIT

die() {
	echo "bench_sync: ERROR: $*" >&2
	exit 1
}
now() { date +%s.%N; }
elapsed() { awk "BEGIN { printf \"%.3f\", $(now) - $1 }"; }
ratio() { awk "BEGIN { printf \"%.2f\", $1 / $2 }"; }

# sql SQL...: run statements, print the output
sql() { "${PSQL[@]}" "$@"; }

# timed SQL: seconds one statement takes (autocommit: including COMMIT),
# as psql's \timing measures it (without psql's start and connection)
timed() {
	sql -c '\timing on' -c "$1" | awk '/^Time: / { printf "%.3f", $2 / 1000 }'
}

# wait_sync NAME: seconds until sync NAME delivered what is committed
wait_sync() {
	local t0 done
	t0=$(now)
	done=$(sql -c "SELECT pgpoly.sync_wait('$1', '600 s')")
	[[ "$done" == t ]] || die "sync $1 did not deliver within 600 s"
	elapsed "$t0"
}

# reset_sync NAME SOURCE TARGET: empty the source, recreate the sync (no backfill)
reset_sync() {
	sql -c "SELECT pgpoly.drop_sync('$1')" -c "TRUNCATE $2" \
		-c "SELECT pgpoly.create_sync('$1', '$2', '$3', backfill => false)" >/dev/null
}

expect_count() {
	local got
	got=$(sql -c "SELECT count(*) FROM $1")
	[[ "$got" == "$2" ]] || die "$1 holds $got rows, want $2"
}

[[ "$("${RCLI[@]}" ping 2>&1)" == PONG ]] || die "no Redis on port $REDIS_PORT"
"${RCLI[@]}" flushdb >/dev/null
createdb "$DB"
sql -c "CREATE EXTENSION $EXT" >/dev/null
sql >/dev/null <<-EOF
	CREATE SERVER r FOREIGN DATA WRAPPER pgpoly_redis
	  OPTIONS (host '127.0.0.1', port '$REDIS_PORT', db '$REDIS_DB', timeout_ms '120000');
	CREATE FOREIGN TABLE kv_direct (k text OPTIONS (key 'true'), n int, v text)
	  SERVER r OPTIONS (table_type 'hash', key_prefix 'direct:');
	CREATE FOREIGN TABLE kv_synced (k text OPTIONS (key 'true'), n int, v text)
	  SERVER r OPTIONS (table_type 'hash', key_prefix 'synced:');
	CREATE FOREIGN TABLE kv_outbox (k text OPTIONS (key 'true'), n int, v text)
	  SERVER r OPTIONS (table_type 'hash', key_prefix 'outbox:', write_mode 'outbox');
	CREATE TABLE kv (k text PRIMARY KEY, n int, v text);
	SELECT pgpoly.create_sync('kv', 'kv', 'kv_synced');
	CREATE SERVER es FOREIGN DATA WRAPPER pgpoly_elastic OPTIONS (url '$ES_URL', timeout_ms '120000');
	CREATE FOREIGN TABLE docs_synced (_id text, n int, grp text, label text)
	  SERVER es OPTIONS (index '$IDX', batch_size '$BATCH');
	CREATE TABLE docs (id text PRIMARY KEY, n int, grp text, label text);
	SELECT pgpoly.create_sync('docs', 'docs', 'docs_synced');
	CREATE TABLE plain (id int PRIMARY KEY, a int, b text) WITH (autovacuum_enabled = off);
	CREATE TABLE synced (id int PRIMARY KEY, a int, b text) WITH (autovacuum_enabled = off);
	CREATE FOREIGN TABLE synced_redis (id text OPTIONS (key 'true'), a int, b text)
	  SERVER r OPTIONS (table_type 'hash', key_prefix 'w:');
	SELECT pgpoly.create_sync('synced', 'synced', 'synced_redis');
EOF

KV_ROWS="SELECT 'k' || g, g, 'value ' || g FROM generate_series(1, %d) g"
DOC_ROWS="SELECT 'b' || g, g, 'g' || (g %% 3), 'label ' || g FROM generate_series(1, %d) g"
W_ROWS="SELECT g, g, 'row ' || g FROM generate_series(1, %d) g"

# round N I: one round of figures 1, 2, 4 and 5 with N rows; appends to the arrays.
redis_direct=() redis_sync=() es_direct=() es_sync=() w_plain=() w_synced=()
ob_commit=() ob_sync=()
round() {
	local n=$1 secs cnt
	# 1. Redis
	"${RCLI[@]}" flushdb >/dev/null
	reset_sync kv kv kv_synced
	redis_direct+=("$(timed "INSERT INTO kv_direct $(printf "$KV_ROWS" "$n")")")
	sql -c "INSERT INTO kv $(printf "$KV_ROWS" "$n")"
	redis_sync+=("$(wait_sync kv)")
	expect_count kv_synced "$n"
	# 5. write_mode 'outbox': the writer's COMMIT, then the delivery
	ob_commit+=("$(timed "INSERT INTO kv_outbox $(printf "$KV_ROWS" "$n")")")
	ob_sync+=("$(wait_sync public.kv_outbox)")
	expect_count kv_outbox "$n"
	# 2. Elasticsearch
	"${DIRECT[@]}" create "$IDX" >/dev/null
	"${DIRECT[@]}" create "${IDX}_direct" >/dev/null
	reset_sync docs docs docs_synced
	read -r secs cnt < <("${DIRECT[@]}" bulk "${IDX}_direct" "$n" "$BATCH")
	[[ "$cnt" == "$n" ]] || die "direct bulk wrote $cnt"
	es_direct+=("$secs")
	sql -c "INSERT INTO docs $(printf "$DOC_ROWS" "$n")"
	es_sync+=("$(wait_sync docs)")
	"${DIRECT[@]}" delete "${IDX}_direct" >/dev/null
	# 4. the writer, with and without a sync (the delivery is not timed);
	# which goes first alternates, each after a checkpoint.
	sql -c "TRUNCATE plain" >/dev/null
	reset_sync synced synced synced_redis
	if (($2 % 2)); then
		sql -c CHECKPOINT
		w_plain+=("$(timed "INSERT INTO plain $(printf "$W_ROWS" "$n")")")
	fi
	sql -c CHECKPOINT
	w_synced+=("$(timed "INSERT INTO synced $(printf "$W_ROWS" "$n")")")
	wait_sync synced >/dev/null
	if ((!($2 % 2))); then
		sql -c CHECKPOINT
		w_plain+=("$(timed "INSERT INTO plain $(printf "$W_ROWS" "$n")")")
	fi
	expect_count synced_redis "$n"
}

round 1000 0	# warm-up: connections, caches, the worker
redis_direct=() redis_sync=() es_direct=() es_sync=() w_plain=() w_synced=()
ob_commit=() ob_sync=()
for ((r = 1; r <= REPEAT; r++)); do
	round "$N" "$r"
done
rd=$(printf '%s\n' "${redis_direct[@]}" | bench_median)
rs=$(printf '%s\n' "${redis_sync[@]}" | bench_median)
ed=$(printf '%s\n' "${es_direct[@]}" | bench_median)
es=$(printf '%s\n' "${es_sync[@]}" | bench_median)
wp=$(printf '%s\n' "${w_plain[@]}" | bench_median)
ws=$(printf '%s\n' "${w_synced[@]}" | bench_median)
oc=$(printf '%s\n' "${ob_commit[@]}" | bench_median)
os=$(printf '%s\n' "${ob_sync[@]}" | bench_median)

# 3. steady state: pgbench at RATE single-row UPDATEs/s, lag sampled.
sql -c "SELECT pgpoly.drop_sync('kv')" -c "TRUNCATE kv" \
	-c "INSERT INTO kv $(printf "$KV_ROWS" 10000)" \
	-c "SELECT pgpoly.create_sync('kv', 'kv', 'kv_synced')" >/dev/null
wait_sync kv >/dev/null
printf '%s\n' '\set k random(1, 10000)' \
	"UPDATE kv SET n = n + 1 WHERE k = 'k' || :k;" >"$WORK/update.sql"
pgbench -n -c 4 -j 2 -R "$RATE" -T 2 -f "$WORK/update.sql" "$DB" >/dev/null 2>&1 # warm-up
samples=$((DURATION * 50))
sql -c "CREATE UNLOGGED TABLE lag_samples (lag float8)" >/dev/null
pgbench -n -c 4 -j 2 -R "$RATE" -T "$DURATION" -f "$WORK/update.sql" "$DB" >"$WORK/pgbench.out" 2>&1 &
bench=$!
sql -c "DO \$\$ BEGIN FOR i IN 1..$samples LOOP
	INSERT INTO lag_samples SELECT extract(epoch FROM lag) FROM pgpoly.sync_status WHERE name = 'kv';
	PERFORM pg_sleep(0.02); END LOOP; END \$\$" >/dev/null
wait "$bench" || die "pgbench failed: $(tail -5 "$WORK/pgbench.out")"
tps=$(awk '/^tps = / { printf "%.0f", $3; exit }' "$WORK/pgbench.out")
read -r p50 p99 pmax < <(sql -F ' ' -c "SELECT round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY lag)),
	round(1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY lag)), round(1000 * max(lag)) FROM lag_samples")
wait_sync kv >/dev/null
[[ "$(sql -c "SELECT count(*) FROM (SELECT k, n, v FROM kv EXCEPT SELECT k, n, v FROM kv_synced) d")" == 0 ]] \
	|| die "the Redis table differs from kv after the steady-state run"

r1=$(ratio "$rs" "$rd")
r2=$(ratio "$es" "$ed")
r4=$(ratio "$ws" "$wp")
r5c=$(ratio "$oc" "$rd")
r5d=$(ratio "$os" "$rd")
echo "bench_sync: N=$N, median of $REPEAT rounds; ES at $ES_URL"
bench_report "sync: delivery of $N rows to Redis (sync_wait after the writer's COMMIT)" \
	"${rs} s" "direct INSERT into the foreign table: ${rd} s" "$r1" "<=" 2
bench_report "sync: delivery of $N rows to Elasticsearch" \
	"${es} s" "direct _bulk: ${ed} s" "$r2" "<=" 2
bench_report "sync: steady-state lag p99 at $RATE changes/s asked (ms)" \
	"${p99} ms (p50 ${p50} ms, max ${pmax} ms)" "" "$p99" "<" 200 figure
bench_report "sync: steady-state rate committed while lag was sampled (changes/s)" \
	"$tps" "asked $RATE" "$tps" ">=" "$(bench_calc "0.95 * $RATE")" figure
bench_report "sync: writer's INSERT of $N native rows, with a sync over without" \
	"${ws} s" "without a sync: ${wp} s" "$r4" "<=" 1.5
bench_report "sync: write_mode 'outbox' INSERT of $N rows, COMMIT" \
	"${oc} s" "transactional INSERT incl. COMMIT: ${rd} s" "$r5c" "-" ""
bench_report "sync: write_mode 'outbox', delivery after that COMMIT" \
	"${os} s" "transactional INSERT incl. COMMIT: ${rd} s" "$r5d" "-" ""
bench_summary bench_sync
