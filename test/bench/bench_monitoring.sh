#!/bin/bash
# bench_monitoring.sh - inference logging, bulk feature ingestion and drift.
#
# In a scratch database, against the Redis at REDIS_PORT (keys under a unique
# prefix, deleted at the end):
#  1. log_predictions of a ROWS (50k) element JSON array (the call parses the JSON
#     text, as a client's would be; model given as name@alias), vs. the same rows
#     inserted by a plain INSERT ... SELECT into an unpartitioned copy of
#     pgpoly.predictions with exactly the indexes of its partitions: the primary
#     key, a hash index on request_id, a btree on (model_name, version, ts)
#     (until 2 December 2026 its request_id index was a btree, dearer than the
#     partitions' hash index by about 340 M instructions per 50k rows, which
#     flattered log_predictions' ratio); both tables hold the warm-up's rows
#     when measured (target >= 50k rows/s).
#  2. ingest_features of ENTITIES (100k) rows, one per entity, into a view whose
#     online store and history are empty (REPEAT times from that state, median),
#     COMMIT (the Redis MULTI/EXEC) included; then again,
#     over the keys now in Redis; vs. the same rows appended to the offline table
#     alone by a plain INSERT, and vs. the floor of the whole call: that INSERT
#     plus test/bench/redis_raw.c's ingest mode (the same Redis work from a bare
#     C client: HGET _event_time of every key in pipelined rounds of 1000, then
#     MULTI, one HSET of the same fields and value forms per key, EXEC), added
#     up since one transaction must do them one after the other; CPU compared
#     as backend + Redis against backend + client + Redis (target >= 100k rows/s).
#  3. drift between two DRIFT_ROWS (1M) row tables, one numeric and one
#     categorical feature, vs. the sort any KS statistic needs (the 2M values in
#     order, summed in a window) (target < 3 s).
# Parts (BENCH_PARTS, default all): predictions (1), ingest (2), drift (3);
# the data of a part not run is not made (make bench BENCH=monitoring:ingest).
# Each measurement is repeated REPEAT times after a warm-up run; medians are
# reported (test/bench/common.sh, bench_report: MISSED when a target is not
# met), each with the backend's CPU time (/proc/PID/schedstat), which unlike
# the elapsed time hardly depends on the load of the shared machine.
#
# Usage: PGHOST=... PGPORT=... PGUSER=... REDIS_PORT=... test/bench/bench_monitoring.sh
# Environment: BENCH_PARTS, ROWS (50000), ENTITIES (100000), DRIFT_ROWS (1000000), REPEAT (3),
#              PGPOLY_EXTENSION (pgpoly), KEEP_DB
set -euo pipefail

ROWS=${ROWS:-50000}
ENTITIES=${ENTITIES:-100000}
DRIFT_ROWS=${DRIFT_ROWS:-1000000}
REPEAT=${REPEAT:-3}
EXT=${PGPOLY_EXTENSION:-pgpoly}
DB=${BENCH_DB:-pgpoly_bench_monitoring_$$}
WORK="$(mktemp -d "${PGPOLY_WORK:-${TMPDIR:-/tmp}}/bench_monitoring.XXXXXX")"
PREFIX="bench_mon_$$:"
RAW_PREFIX="bench_mon_raw_$$:"	# redis_raw's keys: not under bench_online's prefix
: "${REDIS_PORT:?REDIS_PORT must be set}"

PSQL=(psql -X -q -v ON_ERROR_STOP=1 -d "$DB")
# shellcheck source=test/bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
bench_parts_include predictions || ROWS=0
bench_parts_include ingest || ENTITIES=0
bench_parts_include drift || DRIFT_ROWS=0

cleanup() {
	"${PSQL[@]}" -c "DELETE FROM bench_online" >/dev/null 2>&1 || true
	redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --scan --pattern "$RAW_PREFIX*" 2>/dev/null |
		xargs -r -n 1000 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" UNLINK >/dev/null 2>&1 || true
	[ -n "${KEEP_DB:-}" ] || dropdb --if-exists "$DB" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

createdb "$DB"
"${PSQL[@]}" <<SQL
\o /dev/null
CREATE EXTENSION $EXT;
SET client_min_messages = warning;
-- the backend's CPU time so far, in ms (/proc/PID/schedstat)
CREATE FUNCTION bench_cpu() RETURNS float8 LANGUAGE sql AS \$\$
	SELECT split_part(pg_read_file('/proc/' || pg_backend_pid() || '/schedstat'), ' ', 1)::float8 / 1e6
\$\$;
-- milliseconds one execution of q takes (server side, planning included),
-- and the backend's CPU milliseconds
CREATE FUNCTION bench_ms(q text, OUT ms float8, OUT cpu float8) LANGUAGE plpgsql AS \$\$
DECLARE t0 timestamptz;
BEGIN
	t0 := clock_timestamp();
	cpu := bench_cpu();
	EXECUTE q;
	ms := extract(epoch FROM clock_timestamp() - t0) * 1000;
	cpu := bench_cpu() - cpu;
END
\$\$;
CREATE TABLE bench_result (what text, ms float8, cpu float8);
SELECT setseed(0.42);

-- 1. predictions: a model with a champion, the JSON text of ROWS predictions
\set rows $ROWS
\i $(realpath "$(dirname "${BASH_SOURCE[0]}")")/predictions_data.sql
-- the same columns, defaults, checks and indexes as a partition of predictions
-- (pgpoly._prediction_partitions: request_id's index is a hash index)
CREATE TABLE bench_plain (LIKE pgpoly.predictions INCLUDING ALL);
ALTER TABLE bench_plain ADD PRIMARY KEY (prediction_id);
CREATE INDEX ON bench_plain USING hash (request_id);
CREATE INDEX ON bench_plain (model_name, version, ts);

-- 2. a feature view over an empty online store; ENTITIES source rows
CREATE SERVER bench_redis FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '$REDIS_PORT');
CREATE USER MAPPING FOR CURRENT_USER SERVER bench_redis;
CREATE FOREIGN TABLE bench_online (user_id text OPTIONS (key 'true'), clicks int, ctr float8,
                                   country text)
  SERVER bench_redis OPTIONS (key_prefix '$PREFIX', watch_limit '0');  -- its bulk DELETE
SELECT pgpoly.create_feature_view('bench', 'user_id', 'bench_online');
CREATE TABLE bench_source AS
SELECT 'u' || e AS user_id, now() - (e % 1000) * interval '1 second' AS event_time,
       (random() * 100)::int AS clicks, random() AS ctr, (ARRAY['de','fr','us'])[1 + e % 3] AS country
FROM generate_series(1, $ENTITIES) e;
ANALYZE bench_source;

-- 3. drift: reference and current with a shifted numeric and a categorical column
CREATE TABLE bench_ref AS
SELECT random() * 100 AS amount, (ARRAY['a','b','c','d'])[1 + (random() * 3.999)::int] AS segment
FROM generate_series(1, $DRIFT_ROWS);
CREATE TABLE bench_cur AS
SELECT random() * 110 AS amount, (ARRAY['a','b','c','e'])[1 + (random() * 3.999)::int] AS segment
FROM generate_series(1, $DRIFT_ROWS);
VACUUM ANALYZE bench_ref;
VACUUM ANALYZE bench_cur;
\o
SQL
echo "data: $ROWS predictions as JSON, $ENTITIES feature rows, drift $DRIFT_ROWS vs $DRIFT_ROWS rows"

if bench_parts_include predictions; then
# --- 1. log_predictions vs. a plain INSERT ------------------------------------
"${PSQL[@]}" <<SQL
\o /dev/null
SET client_min_messages = warning;
-- warm-up: caches, plans, the month's partition
SELECT pgpoly.log_predictions(j::jsonb) FROM bench_json;
INSERT INTO bench_plain (model_name, version, entity, features, prediction, confidence, latency_ms, request_id)
SELECT 'bench_model', 1, r.entity, r.features, r.prediction, r.confidence, r.latency_ms, r.request_id
FROM bench_json, jsonb_to_recordset(j::jsonb) AS r(entity text, features jsonb, prediction jsonb,
	confidence float8, latency_ms float8, request_id text);
DO \$\$
BEGIN
	FOR i IN 1 .. $REPEAT LOOP
		INSERT INTO bench_result SELECT 'log_predictions',
			(bench_ms('SELECT pgpoly.log_predictions(j::jsonb) FROM bench_json')).*;
		INSERT INTO bench_result SELECT 'plain_insert', (bench_ms(\$q\$
			INSERT INTO bench_plain (model_name, version, entity, features, prediction, confidence,
			                         latency_ms, request_id)
			SELECT 'bench_model', 1, r.entity, r.features, r.prediction, r.confidence, r.latency_ms,
			       r.request_id
			FROM bench_json, jsonb_to_recordset(j::jsonb) AS r(entity text, features jsonb,
				prediction jsonb, confidence float8, latency_ms float8, request_id text)\$q\$)).*;
	END LOOP;
END
\$\$;
\o
WITH m AS (SELECT what, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY cpu) AS cpu
           FROM bench_result GROUP BY what)
SELECT round(l.ms), round(l.cpu), round(b.ms), round(b.cpu)
FROM m l, m b WHERE l.what = 'log_predictions' AND b.what = 'plain_insert'
\g (format=unaligned tuples_only fieldsep=' ') $WORK/logp.out
SELECT format('predictions logged: %s in %s partition(s)', count(*), count(DISTINCT tableoid))
FROM pgpoly.predictions \g (format=unaligned tuples_only)
SQL

fi

if bench_parts_include ingest; then
# --- 2. ingest_features vs. the offline INSERT alone ---------------------------
# the Redis server's CPU milliseconds so far (INFO cpu)
redis_cpu() {
	redis-cli -h 127.0.0.1 -p "$REDIS_PORT" INFO cpu |
		awk -F: '/^used_cpu_(sys|user):/ { s += $2 } END { printf "%.0f", s * 1000 }'
}
# ms_of SQL: "MS CPU REDIS": milliseconds of SQL run in its own transaction,
# COMMIT included (client side), the backend's CPU milliseconds over the same,
# and the Redis server's
ms_of() {
	local t0 t1 out r0 r1
	r0=$(redis_cpu)
	t0=$(date +%s%N)
	out="$("${PSQL[@]}" -At -c "SELECT bench_cpu()" -c "BEGIN" -c "$1" -c "COMMIT" -c "SELECT bench_cpu()")"
	t1=$(date +%s%N)
	r1=$(redis_cpu)
	echo "$(( (t1 - t0) / 1000000 )) $(awk 'NR == 1 { c0 = $1 } END { printf "%.0f", $1 - c0 }' <<<"$out") $((r1 - r0))"
}
# warm-up on a few rows (plans, connection)
ms_of "SELECT pgpoly.ingest_features('bench', 'SELECT * FROM bench_source LIMIT 100')" >/dev/null
# into an empty Redis and an empty history, REPEAT times (each from the same
# state: the keys deleted, the history truncated), as the other figures are a
# median: one call alone swung 654-888 ms of backend CPU between runs
fresh=(); fresh_cpu=(); fresh_rcpu=()
for ((i = 0; i < REPEAT; i++)); do
	"${PSQL[@]}" -c "DELETE FROM bench_online" -c "TRUNCATE pgpoly.bench_history" >/dev/null
	read -r t c rc < <(ms_of "SELECT pgpoly.ingest_features('bench', 'bench_source')")
	fresh+=("$t"); fresh_cpu+=("$c"); fresh_rcpu+=("$rc")
done
first=$(bench_median <<<"${fresh[*]}"); first_cpu=$(bench_median <<<"${fresh_cpu[*]}")
first_rcpu=$(bench_median <<<"${fresh_rcpu[*]}")
again=(); again_cpu=(); again_rcpu=(); plain=(); plain_cpu=()
for ((i = 0; i < REPEAT; i++)); do
	read -r t c rc < <(ms_of "SELECT pgpoly.ingest_features('bench', 'bench_source')")
	again+=("$t"); again_cpu+=("$c"); again_rcpu+=("$rc")
	read -r t c _ < <(ms_of "INSERT INTO pgpoly.bench_history (entity, event_time, created_at, clicks, ctr, country)
	               SELECT user_id, event_time, clock_timestamp(), clicks, ctr, country FROM bench_source")
	plain+=("$t"); plain_cpu+=("$c")
done
m_again=$(bench_median <<<"${again[*]}"); m_plain=$(bench_median <<<"${plain[*]}")
c_again=$(bench_median <<<"${again_cpu[*]}"); c_plain=$(bench_median <<<"${plain_cpu[*]}")
r_again=$(bench_median <<<"${again_rcpu[*]}")
keys=$("${PSQL[@]}" -At -c "SELECT count(*) FROM bench_online")
[[ "$keys" == "$ENTITIES" ]] || bench_fail "ingest_features left $keys keys in Redis, expected $ENTITIES"
# the C client doing the same Redis work: into absent keys, then over held ones
# raw_ingest FRESH: sets RAW ("MEDIAN_MS CLIENT_CPU REDIS_CPU" per run)
raw_ingest() {
	local out found
	RAW="0 0 0"
	if ! out="$("$WORK/redis_raw" 127.0.0.1 "$REDIS_PORT" 0 ingest "${RAW_PREFIX}u" "$ENTITIES" 1000 "$1" "$REPEAT" 2>"$WORK/raw.err")"; then
		bench_fail "redis_raw ingest: $(cat "$WORK/raw.err")"
		return
	fi
	found=$(cat "$WORK/raw.err")
	[[ "$found" == "$( ((${1})) && echo 0 || echo "$ENTITIES")" ]] ||
		bench_fail "redis_raw ingest FRESH $1 found $found keys holding _event_time"
	RAW="$(head -1 <<<"$out" | bench_median) $(awk '/^cpu/ { print $2, $3 }' <<<"$out")"
}
gcc -O2 -Wall -o "$WORK/redis_raw" "$(dirname "${BASH_SOURCE[0]}")/redis_raw.c" -lhiredis ||
	bench_fail "cannot build redis_raw.c (libhiredis-dev installed?)"
raw_ingest 1
read -r raw_fresh raw_fresh_cpu raw_fresh_rcpu <<<"$RAW"
raw_ingest 0
read -r raw_held raw_held_cpu raw_held_rcpu <<<"$RAW"
rate_first=$(bench_calc "$ENTITIES * 1000 / ($first > 0 ? $first : 1)")
rate_again=$(bench_calc "$ENTITIES * 1000 / ($m_again > 0 ? $m_again : 1)")
# floor_text PGPOLY_MS BACKEND_CPU REDIS_CPU RAW_MS RAW_CPU RAW_REDIS_CPU
floor_text() {
	local floor
	floor=$(bench_calc "$m_plain + $4")
	echo "floor = the offline INSERT alone $(printf '%.0f' "$m_plain") ms (CPU $(printf '%.0f' "$c_plain") ms)" \
		"+ redis_raw ingest $(printf '%.0f' "$4") ms (CPU client $(printf '%.0f' "$5") ms, Redis $(printf '%.0f' "$6") ms)" \
		"= $(printf '%.0f' "$floor") ms, $(printf '%.0f' "$(bench_calc "$ENTITIES * 1000 / $floor")") rows/s;" \
		"pgpoly/floor $(bench_calc "$1 / $floor")" \
		"(CPU backend + Redis $(printf '%.0f' "$(bench_calc "$2 + $3")") ms vs $(printf '%.0f' "$(bench_calc "$c_plain + $5 + $6")") ms: $(bench_calc "($2 + $3) / ($c_plain + $5 + $6)"));" \
		"pgpoly/offline INSERT $(bench_calc "$1 / $m_plain") (CPU $(bench_calc "$2 / $c_plain"))"
}
bench_report "ingest_features $ENTITIES rows of $ENTITIES entities into an empty Redis, COMMIT incl. (median of $REPEAT)" \
	"$(printf '%.0f' "$rate_first") rows/s ($(printf '%.0f' "$first") ms; backend CPU $(printf '%.0f' "$first_cpu") ms, Redis $(printf '%.0f' "$first_rcpu") ms)" \
	"$(floor_text "$first" "$first_cpu" "$first_rcpu" "$raw_fresh" "$raw_fresh_cpu" "$raw_fresh_rcpu")" \
	"$rate_first" ">=" 100000 figure
bench_report "ingest_features $ENTITIES rows over keys Redis holds, COMMIT incl. (median of $REPEAT)" \
	"$(printf '%.0f' "$rate_again") rows/s ($(printf '%.0f' "$m_again") ms; backend CPU $(printf '%.0f' "$c_again") ms, Redis $(printf '%.0f' "$r_again") ms)" \
	"$(floor_text "$m_again" "$c_again" "$r_again" "$raw_held" "$raw_held_cpu" "$raw_held_rcpu")" \
	"$rate_again" ">=" 100000 figure

fi

if bench_parts_include drift; then
# --- 3. drift -------------------------------------------------------------------
"${PSQL[@]}" <<SQL
\o /dev/null
SET client_min_messages = warning;
TRUNCATE bench_result;
SELECT count(*) FROM pgpoly.drift('bench_ref', 'bench_cur');	-- warm-up
DO \$\$
BEGIN
	FOR i IN 1 .. $REPEAT LOOP
		INSERT INTO bench_result SELECT 'drift', (bench_ms('SELECT count(*) FROM pgpoly.drift(''bench_ref'', ''bench_cur'')')).*;
		INSERT INTO bench_result SELECT 'drift_numeric', (bench_ms('SELECT count(*) FROM pgpoly.drift(''bench_ref'', ''bench_cur'', ''{amount}'')')).*;
		INSERT INTO bench_result SELECT 'sort', (bench_ms(\$q\$
			SELECT max(f) FROM (SELECT sum(s) OVER (ORDER BY v) AS f
			                    FROM (SELECT amount AS v, 1 AS s FROM bench_ref
			                          UNION ALL SELECT amount, -1 FROM bench_cur) u) w\$q\$)).*;
	END LOOP;
END
\$\$;
\o
SELECT feature, round(psi::numeric, 4) AS psi, round(ks::numeric, 4) AS ks, status
FROM pgpoly.drift('bench_ref', 'bench_cur');
WITH m AS (SELECT what, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms,
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY cpu) AS cpu
           FROM bench_result GROUP BY what)
SELECT round(d.ms), round(d.cpu), round(n.ms), round(s.ms), round(s.cpu)
FROM m d, m n, m s WHERE d.what = 'drift' AND n.what = 'drift_numeric' AND s.what = 'sort'
\g (format=unaligned tuples_only fieldsep=' ') $WORK/drift.out
SQL

fi

if bench_parts_include predictions; then
read -r l_ms l_cpu b_ms b_cpu <"$WORK/logp.out"
bench_report "log_predictions $ROWS-row JSON array (text parsed, name@alias; median of $REPEAT)" \
	"$(printf '%.0f' "$(bench_calc "$ROWS * 1000 / $l_ms")") rows/s ($l_ms ms; backend CPU $l_cpu ms)" \
	"plain INSERT ... SELECT of the same rows: $b_ms ms, CPU $b_cpu ms; ratio $(bench_calc "$l_ms / $b_ms") (CPU $(bench_calc "$l_cpu / $b_cpu"))" \
	"$(bench_calc "$ROWS * 1000 / $l_ms")" ">=" 50000 figure
fi
if bench_parts_include drift; then
read -r d_ms d_cpu n_ms s_ms s_cpu <"$WORK/drift.out"
bench_report "drift $DRIFT_ROWS vs $DRIFT_ROWS rows, 1 numeric + 1 categorical feature (median of $REPEAT)" \
	"$d_ms ms (numeric alone $n_ms ms; backend CPU $d_cpu ms)" \
	"sort + running sum of the $((2 * DRIFT_ROWS)) numeric values: $s_ms ms, CPU $s_cpu ms; ratio $(bench_calc "$d_ms / $s_ms") (CPU $(bench_calc "$d_cpu / $s_cpu"))" \
	"$d_ms" "<" 3000 figure
fi
bench_summary bench_monitoring
