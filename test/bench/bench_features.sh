#!/bin/bash
# bench_features.sh - feature store: online serving latency, point-in-time training
# set vs. the same LATERAL SQL by hand, materialize throughput.
#
# In a scratch database, against the Redis at REDIS_PORT (keys under a unique
# prefix, deleted at the end):
#  1. get_online_features for BATCH (100) random entities of a view whose online
#     store holds ENTITIES keys: p50/p99 server-side execution time over CALLS calls
#     (target p99 < 2 ms).
#  2. create_training_set for a SPINE (100k) row spine over ENTITIES x EVENTS (1M)
#     offline rows vs. CREATE TABLE AS with the hand-written LATERAL join
#     (target ratio <= 1.2); median of REPEAT runs each, alternating.
#  3. materialize of ENTITIES (100k) entities into an empty online store,
#     COMMIT (the pipelined MULTI/EXEC) included (target >= 100k keys/s).
#
# Usage: PGHOST=... PGPORT=... PGUSER=... REDIS_PORT=... test/bench/bench_features.sh
# Environment: ENTITIES (100000), EVENTS (10), SPINE (100000), BATCH (100),
#              CALLS (2000), REPEAT (3), PGPOLY_EXTENSION (pgpoly), KEEP_DB
set -euo pipefail

ENTITIES=${ENTITIES:-100000}
EVENTS=${EVENTS:-10}
SPINE=${SPINE:-100000}
BATCH=${BATCH:-100}
CALLS=${CALLS:-2000}
REPEAT=${REPEAT:-3}
EXT=${PGPOLY_EXTENSION:-pgpoly}
DB=${BENCH_DB:-pgpoly_bench_features_$$}
PREFIX="bench_fs_$$:"
: "${REDIS_PORT:?REDIS_PORT must be set}"

PSQL=(psql -X -q -v ON_ERROR_STOP=1 -d "$DB")

cleanup() {
	"${PSQL[@]}" -c "DELETE FROM bench_online" >/dev/null 2>&1 || true
	[ -n "${KEEP_DB:-}" ] || dropdb --if-exists "$DB" 2>/dev/null || true
}
trap cleanup EXIT

createdb "$DB"
"${PSQL[@]}" <<SQL
\o /dev/null
CREATE EXTENSION $EXT;
CREATE SERVER bench_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '$REDIS_PORT');
CREATE USER MAPPING FOR CURRENT_USER SERVER bench_redis;
CREATE FOREIGN TABLE bench_online (user_id text OPTIONS (key 'true'), clicks int, ctr float8,
                                   country text)
  SERVER bench_redis OPTIONS (key_prefix '$PREFIX');
SELECT pgpoly.create_feature_view('bench', 'user_id', 'bench_online', ttl => '30 days');
SELECT setseed(0.42);
-- ENTITIES x EVENTS offline rows, one event a day per entity over the last
-- EVENTS days (so within the 30-day ttl: served 'online')
SELECT date_trunc('day', now()) - interval '$EVENTS days' AS base \gset
INSERT INTO pgpoly.bench_history (entity, event_time, created_at, clicks, ctr, country)
SELECT 'u' || e, :'base'::timestamptz + (d - 1) * interval '1 day' + e * interval '1 second',
       :'base', (random() * 100)::int, random(), (ARRAY['de','fr','us'])[1 + e % 3]
FROM generate_series(1, $EVENTS) d, generate_series(1, $ENTITIES) e;
VACUUM ANALYZE pgpoly.bench_history;
CREATE TABLE spine AS
SELECT 'u' || (1 + (random() * ($ENTITIES - 1))::int) AS user_id,
       :'base'::timestamptz + random() * interval '$((EVENTS + 2)) days' AS event_time,
       (random() < 0.5) AS label
FROM generate_series(1, $SPINE);
ANALYZE spine;
\o
SQL
echo "data: $ENTITIES entities x $EVENTS events = $((ENTITIES * EVENTS)) offline rows, spine $SPINE rows"

# --- 3 first: materialize fills the online store the serving benchmark reads ---
t0=$(date +%s%N)
n=$("${PSQL[@]}" -At -c "SELECT pgpoly.materialize('bench')")
t1=$(date +%s%N)
ms=$(( (t1 - t0) / 1000000 ))
echo "materialize: $n keys in $ms ms = $(( n * 1000 / (ms > 0 ? ms : 1) )) keys/s (COMMIT included; target >= 100000)"

# --- 1. online serving -------------------------------------------------------
"${PSQL[@]}" <<SQL
SET timezone = 'UTC';
CREATE TEMP TABLE lat (ms float8);
DO \$\$
DECLARE
	ents text[];
	t0 timestamptz;
BEGIN
	FOR i IN 1 .. $CALLS LOOP
		ents := ARRAY(SELECT 'u' || (1 + (random() * ($ENTITIES - 1))::int)
					  FROM generate_series(1, $BATCH));
		t0 := clock_timestamp();
		PERFORM count(*) FROM pgpoly.get_online_features('bench', ents);
		INSERT INTO lat VALUES (extract(epoch FROM clock_timestamp() - t0) * 1000);
	END LOOP;
END
\$\$;
SELECT format('get_online_features (%s entities, %s calls): p50 %s ms, p99 %s ms (target p99 < 2 ms)',
              $BATCH, count(*),
              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 3),
              round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 3))
FROM lat \g (format=unaligned tuples_only)
-- sources seen (all online after materialize)
SELECT 'sources: ' || string_agg(source || '=' || n, ', ') FROM (
	SELECT source, count(*) n FROM pgpoly.get_online_features('bench',
		ARRAY(SELECT 'u' || g FROM generate_series(1, $BATCH) g)) GROUP BY 1) s
\g (format=unaligned tuples_only)
SQL

# --- 2. training set vs. hand-written LATERAL --------------------------------
hand="CREATE TABLE ts_hand AS SELECT s.*, f.clicks AS bench__clicks, f.ctr AS bench__ctr,
       f.country AS bench__country
FROM spine s LEFT JOIN LATERAL (
	SELECT h.clicks, h.ctr, h.country FROM pgpoly.bench_history h
	WHERE h.entity = s.user_id AND h.event_time <= s.event_time
	  AND h.event_time >= s.event_time - interval '30 days'
	ORDER BY h.event_time DESC, h.created_at DESC LIMIT 1) f ON true"
fs="SELECT pgpoly.create_training_set('ts_fs', 'SELECT * FROM spine', '{bench:*}')"
time_sql() {  # median-free single timing in ms of one statement, server side
	"${PSQL[@]}" -At <<SQL
SET max_parallel_workers_per_gather = ${2:-2};
SELECT clock_timestamp() AS t0 \gset
$1;
SELECT round(extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000);
SQL
}
fs_t=(); hand_t=(); hand_serial_t=()
for ((i = 0; i < REPEAT; i++)); do
	"${PSQL[@]}" -c "SET client_min_messages = warning; DROP TABLE IF EXISTS ts_fs, ts_hand" >/dev/null
	fs_t+=("$(time_sql "$fs" | tail -n 1)")
	"${PSQL[@]}" -c "SET client_min_messages = warning; DROP TABLE IF EXISTS ts_hand" >/dev/null
	hand_t+=("$(time_sql "$hand" 2 | tail -n 1)")
	"${PSQL[@]}" -c "SET client_min_messages = warning; DROP TABLE IF EXISTS ts_hand" >/dev/null
	hand_serial_t+=("$(time_sql "$hand" 0 | tail -n 1)")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m_fs=$(median "${fs_t[@]}"); m_hand=$(median "${hand_t[@]}"); m_hs=$(median "${hand_serial_t[@]}")
same=$("${PSQL[@]}" -At -c "SELECT count(*) = 0 FROM (SELECT * FROM ts_fs EXCEPT ALL SELECT * FROM ts_hand) x")
echo "create_training_set ($SPINE spine rows): pgpoly $m_fs ms; hand-written LATERAL $m_hand ms" \
     "(default parallelism), $m_hs ms (serial); ratio $(awk -v a="$m_fs" -v b="$m_hand" 'BEGIN {printf "%.2f", a / b}')" \
     "/ $(awk -v a="$m_fs" -v b="$m_hs" 'BEGIN {printf "%.2f", a / b}') (target <= 1.2); same rows: $same"
