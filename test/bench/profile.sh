#!/usr/bin/env bash
#
# test/bench/profile.sh -- where the time of the main Redis paths goes
# (issue 14), measured on throwaway servers like `make bench`:
#
#   join10k    the 10k-key batched join of bench_redis.sh
#   join1k     the same over 1k ids (callgrind only: CG_WORKLOADS=join1k)
#   count100k  count(*) over 100k hashes (Redis db 1 holds only them)
#   selkey100k count(user_id) over the same 100k hashes: every key made a
#              datum, as SELECT key does, without printing 100k rows
#   insert100k INSERT ... SELECT of 100k rows, write_mode 'transactional',
#              BEGIN ... COMMIT (the COMMIT-time MULTI/EXEC included)
#   update100k UPDATE ... SET clicks_7d = clicks_7d + 1 of those 100k rows,
#              transactional (the SCAN that finds them included)
#   updconst100k UPDATE ... SET country = 'ZZ' of those 100k rows,
#              transactional: a direct modification (keys only)
#   delete100k DELETE of those 100k rows, transactional
#   point      WHERE key = $1, prepared, generic plan (pgbench -M prepared,
#              one client; under callgrind: PREPARE + EXECUTE)
#   ingest100k ingest_features of 100k rows of 100k entities (the data of
#              bench_monitoring.sh), BEGIN ... COMMIT, over the keys the
#              warm-up run wrote (callgrind only: CG_WORKLOADS=ingest100k)
#   materialize100k materialize of 100k entities over 1M offline rows (the
#              data of bench_features.sh) into an emptied online store,
#              COMMIT included (callgrind only: CG_WORKLOADS=materialize100k;
#              the 1M rows are made only then)
#   serve1k    get_online_features of 1k of materialize100k's entities over
#              an empty online store, in a read-only transaction (no write
#              back): 1k offline probes of the history index (callgrind
#              only: CG_WORKLOADS=serve1k; the 1M rows are made then too)
#   predictions50k log_predictions of bench_monitoring.sh's 50k predictions
#              (JSON text parsed in the call), COMMIT included, the partition
#              holding the warm-up's 50k rows (callgrind only)
#
# For each, against the running cluster (one backend, after warm-up runs in
# the same backend):
#   - perf record --call-graph dwarf on the backend's pid while the workload
#     repeats (cpu-clock: this VM has no hardware counters), reported by self
#     and by inclusive (children) cost: OUT/NAME.self.txt, NAME.children.txt;
#   - strace -c -f on the backend over the same kind of run: syscalls per
#     query = the counts / the runs (OUT/NAME.strace, runs in NAME.runs);
#   - insert100k, update100k, delete100k: perf stat page faults of one
#     statement + COMMIT, and the size of TopTransactionContext (the write
#     buffer) before the COMMIT (OUT/NAME.memory, OUT/NAME.faults).
# Then, the postmaster stopped, a single-user backend (postgres --single,
# which reads each input line as one query) runs each workload
# under valgrind --tool=callgrind with --dump-before=ReadyForQuery, so
# each statement gets its own profile (ReadyForQuery runs before each input
# line is read; exec_simple_query is static in the stripped Debian binary,
# so callgrind cannot find it): instruction counts that do not depend
# on the machine's load.  OUT/NAME.cg.self.txt and NAME.cg.incl.txt annotate
# the last timed statement (a warm-up one ran before it in the same backend);
# OUT/callgrind.totals has Ir per statement of every workload, and of
# redis_raw doing the same Redis work (the C floor).
#
# Usage: test/bench/profile.sh [OUT]   (OUT defaults to /tmp/pgpoly-profile)
# Environment: PROFILE_PARTS (default "join10k count100k insert100k point
# callgrind") selects what to run (update100k, delete100k and selkey100k
# are extra parts); CG_WORKLOADS (default "join10k count100k insert100k point") the
# workloads callgrind runs (update100k, updconst100k, delete100k, selkey100k,
# ingest100k, materialize100k, serve1k, predictions50k can be added); PROFILE_LOCALE
# (e.g. en_US.UTF-8) the locale of the database they run in (default: the
# cluster's, C).
# Run through /work/tools/iso-run NAME on the shared machines.  Needs perf
# (Debian: linux-perf), valgrind, strace: installed when missing (as root).
set -euo pipefail

# shellcheck source=test/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
cd "$PGPOLY_ROOT"
OUT="$(realpath -m "${1:-/tmp/pgpoly-profile}")"
PARTS=" ${PROFILE_PARTS:-join10k count100k insert100k point callgrind} "
want() { [[ "$PARTS" == *" $1 "* ]]; }
mkdir -p "$OUT"
chmod 777 "$OUT"
# the profilers, from Debian (as root; otherwise the missing ones are named)
PGPOLY_PACKAGES="linux-perf valgrind strace" pgpoly_install_packages
for tool in perf valgrind strace callgrind_annotate; do
	command -v "$tool" >/dev/null || pgpoly_die "$tool is missing (apt-get install linux-perf valgrind strace)"
done

pgpoly_setup
DB=pgpoly_profile
P=pgpoly_bench:
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -d "$DB")
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

# ---------------------------------------------------------------- data

# PROFILE_LOCALE (e.g. en_US.UTF-8): the database's locale instead of the
# cluster's C, made with localedef where the server looks (LOCPATH, lib.sh)
if [[ -n "${PROFILE_LOCALE:-}" ]]; then
	export LOCPATH="$PGPOLY_WORK/pg/locale:/usr/lib/locale"
	localedef -i "${PROFILE_LOCALE%%.*}" -f UTF-8 "$PGPOLY_WORK/pg/locale/$PROFILE_LOCALE" ||
		pgpoly_die "localedef could not make $PROFILE_LOCALE"
	chmod -R a+rX "$PGPOLY_WORK/pg/locale"
	createdb --template=template0 --locale="$PROFILE_LOCALE" "$DB"
else
	createdb "$DB"
fi
cols="user_id text OPTIONS (key 'true'), clicks_7d int, ctr float8, country text, updated timestamptz"
"${PSQL[@]}" <<SQL
CREATE EXTENSION pgpoly;
CREATE SERVER r0 FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '$REDIS_PORT', timeout_ms '600000');
CREATE SERVER r1 FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '$REDIS_PORT', db '1', timeout_ms '600000');
CREATE SERVER r2 FOREIGN DATA WRAPPER pgpoly_redis OPTIONS (port '$REDIS_PORT', db '2', timeout_ms '600000');
CREATE USER MAPPING FOR CURRENT_USER SERVER r0;
CREATE USER MAPPING FOR CURRENT_USER SERVER r1;
CREATE USER MAPPING FOR CURRENT_USER SERVER r2;
CREATE FUNCTION bench_users(n int)
RETURNS TABLE (user_id text, clicks_7d int, ctr float8, country text, updated timestamptz)
LANGUAGE sql IMMUTABLE AS \$\$
	SELECT g::text, (g * 37) % 500, ((g::bigint * 7919) % 100003) / 100003.0::float8,
	       (ARRAY['US', 'DE', 'FR', 'JP', 'BR', 'IN', 'GB'])[1 + g % 7],
	       timestamptz '2024-06-01 00:00:00+00' + g * interval '17 seconds'
	FROM generate_series(1, n) AS g
\$\$;
CREATE FOREIGN TABLE bench_u ($cols) SERVER r0 OPTIONS (key_prefix '${P}u:');
CREATE FOREIGN TABLE bench_c ($cols) SERVER r1 OPTIONS (key_prefix '${P}c:');
-- watch_limit 0: the 100k-key UPDATE/DELETE cannot be WATCHed (README)
CREATE FOREIGN TABLE bench_w ($cols) SERVER r2 OPTIONS (key_prefix '${P}w:', watch_limit '0');
CREATE TABLE bench_req AS
	SELECT g AS request_id, ((g::bigint * 7919) % 10000 + 1)::text AS user_id,
	       (g % 101) / 101.0::float8 AS score
	FROM generate_series(1, 10000) AS g;
VACUUM ANALYZE bench_req;
CREATE TABLE bench_req1k AS SELECT * FROM bench_req WHERE request_id <= 1000;
VACUUM ANALYZE bench_req1k;
CREATE FOREIGN TABLE bench_ing_online (user_id text OPTIONS (key 'true'), clicks int, ctr float8,
                                       country text) SERVER r0 OPTIONS (key_prefix '${P}i:');
SELECT pgpoly.create_feature_view('bench_ing', 'user_id', 'bench_ing_online');
CREATE TABLE bench_ing_source AS
SELECT 'u' || e AS user_id, timestamptz '2024-06-01 00:00:00+00' - (e % 1000) * interval '1 second' AS event_time,
       (e * 37) % 101 AS clicks, ((e::bigint * 7919) % 100003) / 100003.0::float8 AS ctr,
       (ARRAY['de','fr','us'])[1 + e % 3] AS country
FROM generate_series(1, 100000) e;
ANALYZE bench_ing_source;
SQL
# materialize100k: bench_features.sh's feature view, 100k entities x 10 events
if [[ " ${CG_WORKLOADS:-} " == *" materialize100k "* || " ${CG_WORKLOADS:-} " == *" serve1k "* ]]; then
	"${PSQL[@]}" <<SQL
CREATE FOREIGN TABLE bench_online (user_id text OPTIONS (key 'true'), clicks int, ctr float8,
                                   country text) SERVER r0 OPTIONS (key_prefix '${P}f:');
SELECT pgpoly.create_feature_view('bench', 'user_id', 'bench_online', ttl => '30 days');
SELECT setseed(0.42);
SELECT date_trunc('day', now()) - interval '10 days' AS base \gset
INSERT INTO pgpoly.bench_history (entity, event_time, created_at, clicks, ctr, country)
SELECT 'u' || e, :'base'::timestamptz + (d - 1) * interval '1 day' + e * interval '1 second',
       :'base', (random() * 100)::int, random(), (ARRAY['de','fr','us'])[1 + e % 3]
FROM generate_series(1, 10) d, generate_series(1, 100000) e;
VACUUM ANALYZE pgpoly.bench_history;
SQL
fi
# predictions50k: bench_monitoring.sh's 50k predictions as JSON text
if [[ " ${CG_WORKLOADS:-} " == *" predictions50k "* ]]; then
	"${PSQL[@]}" <<SQL
SELECT setseed(0.42);
\\set rows 50000
\\i $PGPOLY_ROOT/test/bench/predictions_data.sql
SQL
fi
load_redis() {
	psql -X -q -d "$DB" -c "SET datestyle = ISO; SET timezone = UTC" \
		-c "COPY (SELECT * FROM bench_users($3)) TO STDOUT" |
		LC_ALL=C awk -F'\t' -v p="$2" '
			function b(s) { return "$" length(s) "\r\n" s "\r\n" }
			{ printf "*10\r\n%s%s%s%s%s%s%s%s%s%s", b("HSET"), b(p $1),
			         b("clicks_7d"), b($2), b("ctr"), b($3), b("country"), b($4),
			         b("updated"), b($5) }' | rcli -n "$1" --pipe >/dev/null
}
load_redis 0 "${P}u:" 100000
load_redis 1 "${P}c:" 100000

JOIN="SELECT count(*), sum(u.clicks_7d), round(sum(u.ctr * r.score)::numeric, 6), max(u.updated), min(u.country) FROM bench_req r JOIN bench_u u ON u.user_id = r.user_id"
JOIN1K="${JOIN/bench_req r/bench_req1k r}"
COUNT="SELECT count(*) FROM bench_c"
SELKEY="SELECT count(user_id) FROM bench_c"
INSERT="BEGIN; INSERT INTO bench_w SELECT * FROM bench_users(100000); COMMIT"
UPDATE="BEGIN; UPDATE bench_w SET clicks_7d = clicks_7d + 1; COMMIT"
UPDCONST="BEGIN; UPDATE bench_w SET country = 'ZZ'; COMMIT"
DELETE="BEGIN; DELETE FROM bench_w; COMMIT"
INGEST="BEGIN; SELECT pgpoly.ingest_features('bench_ing', 'bench_ing_source'); COMMIT"
MATERIALIZE="SELECT pgpoly.materialize('bench')"
SERVE="BEGIN READ ONLY; SELECT count(*) FROM pgpoly.get_online_features('bench', ARRAY(SELECT 'u' || (g * 97 % 100000 + 1) FROM generate_series(1, 1000) g)) o WHERE o.source = 'offline'; COMMIT"
PREDICTIONS="BEGIN; SELECT pgpoly.log_predictions(j::jsonb) FROM bench_json; COMMIT"

# ---------------------------------------------------------------- perf, strace

# record NAME RUNS STATEMENT: in one session, 3 warm-up runs, then perf record
# over RUNS runs, then strace -c over RUNS more
record() {
	local name="$1" runs="$2" stmt="$3" script i
	script="SELECT pg_backend_pid() AS pid \\gset"$'\n'"\\setenv PID :pid"$'\n'"\\o /dev/null"$'\n'
	for ((i = 0; i < 3; i++)); do script+="$stmt;"$'\n'; done
	script+="\\! perf record -q -e cpu-clock -F 499 --call-graph dwarf,32768 -p \$PID -o $OUT/$name.perf.data >/dev/null 2>&1 & echo \$! >$OUT/perf.pid; sleep 2"$'\n'
	for ((i = 0; i < runs; i++)); do script+="$stmt;"$'\n'; done
	script+="\\! kill -INT \$(cat $OUT/perf.pid); sleep 3"$'\n'
	script+="\\! strace -c -f -p \$PID -o $OUT/$name.strace & echo \$! >$OUT/strace.pid; sleep 2"$'\n'
	for ((i = 0; i < runs; i++)); do script+="$stmt;"$'\n'; done
	script+="\\! kill -INT \$(cat $OUT/strace.pid); sleep 2"$'\n'
	"${PSQL[@]}" <<<"$script"
	echo "$runs" >"$OUT/$name.runs"
}

# report NAME: perf's self and inclusive tables
report() {
	perf report -i "$OUT/$1.perf.data" --stdio --no-children --sort dso,symbol -g none \
		--percent-limit 0.7 2>/dev/null | grep -v '^$' >"$OUT/$1.self.txt" || true
	perf report -i "$OUT/$1.perf.data" --stdio --children --sort symbol -g none \
		--percent-limit 2 2>/dev/null | grep -v '^$' >"$OUT/$1.children.txt" || true
	rm -f "$OUT/$1.perf.data"
}

if want join10k; then
	pgpoly_log "perf + strace: join10k"
	record join10k 150 "$JOIN"
	report join10k
fi
if want count100k; then
	pgpoly_log "perf + strace: count100k"
	record count100k 20 "$COUNT"
	report count100k
fi
if want selkey100k; then
	pgpoly_log "perf + strace: selkey100k"
	record selkey100k 20 "$SELKEY"
	report selkey100k
fi
# memory NAME STATEMENT: page faults of one BEGIN; STATEMENT; COMMIT (after a
# warm-up run of the same in the session), and TopTransactionContext's size
# (the write buffer) before the COMMIT
memory() {
	"${PSQL[@]}" <<SQL >"$OUT/$1.memory"
SELECT pg_backend_pid() AS pid \gset
\setenv PID :pid
\o /dev/null
BEGIN;
$2;
ROLLBACK;
$INSERT;
\o
\! perf stat -e page-faults,minor-faults,major-faults -p \$PID -o $OUT/$1.faults & echo \$! >$OUT/pstat.pid; sleep 2
BEGIN;
$2;
SELECT 'TopTransactionContext after the statement, before COMMIT: ' || pg_size_pretty(sum(total_bytes)) || ' in ' || sum(total_nblocks) || ' blocks (' || (sum(total_bytes) / 100000)::int || ' bytes/row), used ' || pg_size_pretty(sum(used_bytes))
FROM pg_backend_memory_contexts WHERE name = 'TopTransactionContext' OR parent = 'TopTransactionContext';
COMMIT;
\! kill -INT \$(cat $OUT/pstat.pid); sleep 2
SQL
}

if want insert100k; then
	pgpoly_log "perf + strace: insert100k"
	record insert100k 5 "$INSERT"
	report insert100k
	memory insert100k "INSERT INTO bench_w SELECT * FROM bench_users(100000)"
fi
if want update100k; then
	pgpoly_log "perf + strace: update100k"
	"${PSQL[@]}" -c "$INSERT"
	record update100k 5 "$UPDATE"
	report update100k
	memory update100k "UPDATE bench_w SET clicks_7d = clicks_7d + 1"
fi
if want delete100k; then
	pgpoly_log "perf + strace: delete100k (each run re-inserts first, untimed)"
	record delete100k 5 "$INSERT; $DELETE"
	report delete100k
	memory delete100k "DELETE FROM bench_w"
fi

# point: pgbench, one client; perf and strace on its backend
printf '\\set id random(1, 100000)\nSELECT * FROM bench_u WHERE user_id = :id;\n' >"$OUT/point.sql"
point_run() {  # point_run TOOL...: run pgbench 8 s, TOOL attached to its backend after 2 s
	PGOPTIONS="-c plan_cache_mode=force_generic_plan" PGAPPNAME=pgbench_profile \
		pgbench -n -M prepared -c 1 -T 8 -f "$OUT/point.sql" "$DB" >"$OUT/point.pgbench" 2>&1 &
	local pg=$! pid tp
	sleep 2
	pid="$(psql -X -At -d "$DB" -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench_profile'")"
	"$@" -p "$pid" &
	tp=$!
	sleep 4
	kill -INT "$tp" || true
	wait "$tp" || true
	wait "$pg"
}
if want point; then
pgpoly_log "perf + strace: point"
point_run perf record -q -e cpu-clock -F 499 --call-graph dwarf,32768 -o "$OUT/point.perf.data"
report point
point_run strace -c -f -o "$OUT/point.strace"
# lookups in the strace window: one sendto (the result to pgbench) each
awk '$NF == "sendto" { print $4 }' "$OUT/point.strace" >"$OUT/point.runs"
fi

# ---------------------------------------------------------------- callgrind

if want callgrind; then
	pgpoly_log "callgrind: stopping the postmaster; single-user backends"
	(cd / && _pgpoly_as_pg pg_ctl -D "$PGPOLY_PGDATA" -m fast -w stop >/dev/null)
	points=""
	for i in $(seq 1 100); do points+="EXECUTE q('$((i * 997 % 100000 + 1))'); "; done
	declare -A CG=(
		[join10k]="$JOIN"
		[join1k]="$JOIN1K"
		[count100k]="$COUNT"
		[selkey100k]="$SELKEY"
		[insert100k]="$INSERT"
		[update100k]="$UPDATE"
		[updconst100k]="$UPDCONST"
		[delete100k]="$DELETE"
		[point]="$points"
		[ingest100k]="$INGEST"
		[materialize100k]="$MATERIALIZE"
		[serve1k]="$SERVE"
		[predictions50k]="$PREDICTIONS"
	)
	# the warm-up of each (DELETE: the rows inserted, the DELETE rolled back)
	declare -A WARM=(
		[update100k]="$INSERT; $UPDATE"
		[updconst100k]="$INSERT; $UPDCONST"
		[delete100k]="$INSERT; BEGIN; DELETE FROM bench_w; ROLLBACK"
		[materialize100k]="BEGIN; $MATERIALIZE; COMMIT; BEGIN; DELETE FROM bench_online; COMMIT"
	)
	: >"$OUT/callgrind.totals"
	for name in ${CG_WORKLOADS:-join10k count100k insert100k point}; do
		pgpoly_log "callgrind: $name"
		{
			echo "SET plan_cache_mode = force_generic_plan"
			echo "PREPARE q(text) AS SELECT * FROM bench_u WHERE user_id = \$1"
			echo "${WARM[$name]:-${CG[$name]}}"	# warm-up
			echo "${CG[$name]}"	# profiled
			echo "SELECT 1"		# its dump is taken before this one runs
		} >"$OUT/$name.single.sql"
		rm -f "$OUT/$name.cg".*
		(cd / && _pgpoly_as_pg valgrind --tool=callgrind --dump-before=ReadyForQuery \
			--compress-strings=no --compress-pos=no \
			--callgrind-out-file="$OUT/$name.cg" \
			"$(dirname "$PG_CONFIG")/postgres" --single -D "$PGPOLY_PGDATA" -c timezone=UTC "$DB" \
			<"$OUT/$name.single.sql" >"$OUT/$name.single.out" 2>"$OUT/$name.valgrind")
		# dumps: .1 start-up, .2 SET, .3 PREPARE, .4 warm-up, .5 profiled
		for d in 4 5; do
			echo "$name statement $((d - 3)) ($([[ $d == 4 ]] && echo warm-up || echo profiled)): $(grep -m1 '^summary:' "$OUT/$name.cg.$d" | awk '{ print $2 }') Ir" >>"$OUT/callgrind.totals"
		done
		# (each dump file self-contained: --compress-strings=no above)
		callgrind_annotate --inclusive=no --threshold=100 "$OUT/$name.cg.5" >"$OUT/$name.cg.self.txt" 2>/dev/null || true
		callgrind_annotate --inclusive=yes --threshold=100 "$OUT/$name.cg.5" >"$OUT/$name.cg.incl.txt" 2>/dev/null || true
		callgrind_annotate --threshold=100 --tree=caller "$OUT/$name.cg.5" >"$OUT/$name.cg.callers.txt" 2>/dev/null || true
	done
	# the C floor doing the same Redis work: a warm-up run plus 1 or 2 timed
	gcc -O2 -o "$OUT/redis_raw" test/bench/redis_raw.c -lhiredis
	for args in "0 fetch ${P}u: 10000 1000" "1 scan ${P}c:* 1000 hash"; do
		ir=()
		for rep in 1 2; do
			# shellcheck disable=SC2086 # args are words
			(set -f && valgrind --tool=callgrind --callgrind-out-file="$OUT/raw.cg" \
				"$OUT/redis_raw" 127.0.0.1 "$REDIS_PORT" $args "$rep" >/dev/null 2>"$OUT/raw.valgrind")
			ir+=("$(grep -m1 '^summary:' "$OUT/raw.cg" | awk '{ print $2 }')")
		done
		echo "redis_raw $args: $((ir[1] - ir[0])) Ir per run (2 runs minus 1 run, client side)" >>"$OUT/callgrind.totals"
	done
	rm -f "$OUT"/*.cg "$OUT"/*.cg.[0-46-9] "$OUT/raw.cg"
fi
pgpoly_log "profile written to $OUT"
