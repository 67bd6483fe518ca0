# shellcheck shell=bash
#
# test/lib.sh -- shared harness functions for test/run-tests.sh, test/demo.sh
# and test/bench/run.sh.
#
# Source it from a bash script that runs under `set -euo pipefail`.  Every
# server it starts (PostgreSQL, Redis, anything passed to pgpoly_register_pid)
# lives in one per-run work directory ($PGPOLY_WORK) and is stopped by
# pgpoly_cleanup, which pgpoly_workdir installs as the EXIT/INT/TERM trap; so
# a failing step never leaves processes behind.
#
# Environment knobs:
#   PG_CONFIG          pg_config to build against (default: the PostgreSQL 15 one)
#   PGPOLY_KEEP_WORK=1 keep $PGPOLY_WORK (logs, data dirs) after the run
#   PGPOLY_WORK_ROOT   parent directory of the work dir (default: $TMPDIR or /tmp)
#   PGPOLY_PG_WRAPPER  program pg_ctl starts instead of postgres (it must exec
#                      postgres with its arguments; `make valgrind` sets it)
#   PGPOLY_TIMEOUT_SCALE  multiplier for the harness's waits and the tests'
#                      time limits (default 1; `make valgrind` sets 20)
#   PGPOLY_TEST_JOBS   fault tests run at a time by test/fault/run.py (default 2;
#                      1: one after another; `make valgrind` sets 1)

# Debian packages the harness needs; later areas append (e.g. nodejs npm).
# gdb: test_prediction_partitions stops a backend at a chosen point.
# python3-psycopg2 python3-sqlalchemy: test_real_drivers runs the drivers.
# python3-yaml: test_explain_formats parses YAML plans.
PGPOLY_PACKAGES="postgresql-15 postgresql-server-dev-15 libhiredis-dev \
libcurl4-openssl-dev libjansson-dev redis-server libipc-run-perl python3 \
make gcc pkg-config locales gdb python3-psycopg2 python3-sqlalchemy python3-yaml"

PGPOLY_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PGPOLY_TIMEOUT_SCALE="${PGPOLY_TIMEOUT_SCALE:-1}"

# The tests run the same whatever the caller's environment: the servers'
# time zone (initdb writes TZ's zone into postgresql.conf; the fault tests'
# sessions and the sync worker use it) is UTC, client programs (psql, libpq,
# Python) speak English in UTF-8, and no libpq variable of the caller changes
# a session's settings or where and how it connects (pg_regress sets its own
# PGTZ and PGDATESTYLE; the harness sets PGHOST PGPORT PGUSER PGDATABASE).
export TZ=UTC LC_ALL=C.UTF-8
unset LANGUAGE PGTZ PGDATESTYLE PGOPTIONS PGCLIENTENCODING PGAPPNAME PGHOSTADDR \
	PGSERVICE PGSERVICEFILE PGPASSWORD PGPASSFILE PGSSLMODE PGREQUIRESSL PGGSSENCMODE \
	PGCHANNELBINDING PGREQUIREAUTH PGTARGETSESSIONATTRS PGCONNECT_TIMEOUT PGSYSCONFDIR \
	PGLOCALEDIR PGGEQO PGKRBSRVNAME

# Seconds scaled by PGPOLY_TIMEOUT_SCALE (an integer, at least 1).
pgpoly_scaled() {
	echo $(($1 * ${PGPOLY_TIMEOUT_SCALE%%.*}))
}
PGPOLY_PGVERSION=15

if [[ -z "${PG_CONFIG:-}" && -x /usr/lib/postgresql/$PGPOLY_PGVERSION/bin/pg_config ]]; then
	PG_CONFIG=/usr/lib/postgresql/$PGPOLY_PGVERSION/bin/pg_config
fi
export PG_CONFIG="${PG_CONFIG:-pg_config}"

_PGPOLY_CLEANED=0
_PGPOLY_SPAWNED=() # pids of the pgpoly_spawn_logged commands

# Seconds since the run began (exported, so the scripts a run starts count
# from the same moment).
export PGPOLY_T0="${PGPOLY_T0:-$EPOCHSECONDS}"

# Print a harness message on stderr, with the seconds since the run began.
pgpoly_log() {
	echo "pgpoly-test: [$((EPOCHSECONDS - PGPOLY_T0)) s] $*" >&2
}

# Print an error and exit non-zero (the EXIT trap then cleans up).
pgpoly_die() {
	echo "pgpoly-test: ERROR: $*" >&2
	exit 1
}

# Install the Debian packages in PGPOLY_PACKAGES that are not installed yet.
pgpoly_install_packages() {
	local pkg missing=()

	for pkg in $PGPOLY_PACKAGES; do
		if ! dpkg -s "$pkg" >/dev/null 2>&1; then
			missing+=("$pkg")
		fi
	done
	if ((${#missing[@]} == 0)); then
		return 0
	fi
	if ((EUID != 0)); then
		pgpoly_die "missing Debian packages: ${missing[*]}; install them as root:" \
			"apt-get install -y ${missing[*]}"
	fi
	pgpoly_log "installing Debian packages: ${missing[*]}"
	apt-get update -qq || pgpoly_die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" \
		|| pgpoly_die "apt-get install failed for: ${missing[*]}"
}

# Build with -Werror (as many compilers at a time as there are CPUs) and
# install the extension; show the output only on failure.
pgpoly_build_install() {
	local log jobs

	log="$(mktemp "${TMPDIR:-/tmp}/pgpoly-build.XXXXXX")"
	jobs="$(nproc 2>/dev/null || echo 1)"
	pgpoly_log "building (make -j$jobs PGPOLY_WERROR=1)"
	if ! make -C "$PGPOLY_ROOT" -j"$jobs" PG_CONFIG="$PG_CONFIG" PGPOLY_WERROR=1 >"$log" 2>&1; then
		cat "$log" >&2
		rm -f "$log"
		pgpoly_die "build failed"
	fi
	pgpoly_log "installing (make install)"
	if ! make -C "$PGPOLY_ROOT" PG_CONFIG="$PG_CONFIG" install >"$log" 2>&1; then
		cat "$log" >&2
		rm -f "$log"
		pgpoly_die "make install failed"
	fi
	rm -f "$log"
}

# Print a TCP port on 127.0.0.1 that is free right now.
pgpoly_free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Create this run's work directory (once), export PGPOLY_WORK and install the
# cleanup traps.  The directory is world-readable so the postgres OS user can
# reach its own subdirectory.
pgpoly_workdir() {
	if [[ -n "${_PGPOLY_WORK_OWNED:-}" ]]; then
		return 0
	fi
	PGPOLY_WORK="$(mktemp -d "${PGPOLY_WORK_ROOT:-${TMPDIR:-/tmp}}/pgpoly.XXXXXX")"
	chmod 755 "$PGPOLY_WORK"
	export PGPOLY_WORK
	# File of "pid starttime label" lines; pgtest.py appends to it too.
	export PGPOLY_PIDS="$PGPOLY_WORK/pids"
	: >"$PGPOLY_PIDS"
	_PGPOLY_WORK_OWNED=1
	trap pgpoly_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	pgpoly_log "work directory: $PGPOLY_WORK"
}

# Print the start time (in clock ticks since boot) of a process, or nothing.
_pgpoly_proc_start() {
	local stat rest
	local -a f

	stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
	rest="${stat##*) }"
	read -ra f <<<"$rest"
	echo "${f[19]:-}"
}

# True if a process exists and is not a zombie (an exited child of a parent,
# often PID 1, that has not reaped it yet).
_pgpoly_alive() {
	local stat

	stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
	stat="${stat##*) }"
	[[ "${stat:0:1}" != Z ]]
}

# Record a process for pgpoly_cleanup to stop: pgpoly_register_pid PID [LABEL].
pgpoly_register_pid() {
	local pid="$1" label="${2:-process}" start

	pgpoly_workdir
	start="$(_pgpoly_proc_start "$pid")"
	[[ -n "$start" ]] || pgpoly_die "cannot register pid $pid ($label): no such process"
	echo "$pid $start $label" >>"$PGPOLY_PIDS"
}

# Run a command as the OS user that owns the PostgreSQL cluster.
_pgpoly_as_pg() {
	if [[ "$PGPOLY_PG_OSUSER" == "$(id -un)" ]]; then
		"$@"
	else
		runuser -u "$PGPOLY_PG_OSUSER" -- "$@"
	fi
}

# Choose the non-root OS user for initdb/pg_ctl, creating `pgpoly` if needed.
_pgpoly_pick_pg_osuser() {
	if ((EUID != 0)); then
		PGPOLY_PG_OSUSER="$(id -un)"
	elif id postgres >/dev/null 2>&1; then
		PGPOLY_PG_OSUSER=postgres
	else
		if ! id pgpoly >/dev/null 2>&1; then
			useradd --system --no-create-home --shell /usr/sbin/nologin pgpoly \
				|| pgpoly_die "could not create the pgpoly OS user"
		fi
		PGPOLY_PG_OSUSER=pgpoly
	fi
}

# initdb and start a throwaway PostgreSQL on a free loopback port; export the
# libpq variables (PGHOST PGPORT PGUSER PGDATABASE) that point at it.
pgpoly_start_pg() {
	local bindir pgdir port attempt

	pgpoly_workdir
	_pgpoly_pick_pg_osuser
	bindir="$("$PG_CONFIG" --bindir)"
	PATH="$bindir:$PATH"
	export PATH
	pgdir="$PGPOLY_WORK/pg"
	PGPOLY_PGDATA="$pgdir/data"
	PGPOLY_PGLOG="$pgdir/postgres.log"
	mkdir -p "$pgdir/sock" "$pgdir/locale"
	chown -R "$PGPOLY_PG_OSUSER" "$pgdir"
	chmod 755 "$pgdir"

	if ! (cd "$pgdir" && _pgpoly_as_pg initdb -D "$PGPOLY_PGDATA" -A trust -U postgres \
		--no-sync -E UTF8 --locale=C >"$pgdir/initdb.log" 2>&1); then
		cat "$pgdir/initdb.log" >&2
		pgpoly_die "initdb failed"
	fi
	_pgpoly_as_pg tee -a "$PGPOLY_PGDATA/postgresql.conf" >/dev/null <<-EOF

		# pgpoly test harness
		listen_addresses = '127.0.0.1'
		unix_socket_directories = '$pgdir/sock'
		fsync = off
		synchronous_commit = off
		full_page_writes = off
		max_prepared_transactions = 2
		logging_collector = off
		# no ANALYZE at a time of autovacuum's choosing between a test's
		# statements: plans (EXPLAIN output) follow the test's own ANALYZEs
		autovacuum = off
		log_line_prefix = '%m [%p] %q%a '
		# room for the sync workers and parallel workers of two fault
		# tests at a time (test/fault/run.py -j 2)
		max_worker_processes = 16
	EOF

	# A locale whose money differs from C's, for sql/value_forms.sql: made
	# from the locales package's sources into the work directory, which
	# LOCPATH (with the system's directory after it) points PostgreSQL at.
	if ! localedef -i de_DE -f UTF-8 "$pgdir/locale/de_DE.UTF-8" >"$pgdir/localedef.log" 2>&1 \
		|| [[ ! -d "$pgdir/locale/de_DE.UTF-8" ]]; then
		cat "$pgdir/localedef.log" >&2
		pgpoly_die "localedef could not make the de_DE.UTF-8 locale"
	fi
	chmod -R a+rX "$pgdir/locale"

	# The free port can be taken between choosing and binding it; retry.
	local -a wrapper=()
	if [[ -n "${PGPOLY_PG_WRAPPER:-}" ]]; then
		wrapper=(-p "$PGPOLY_PG_WRAPPER")
	fi
	for attempt in 1 2 3; do
		port="$(pgpoly_free_port)"
		if (cd "$pgdir" && export LOCPATH="$pgdir/locale:/usr/lib/locale" &&
			_pgpoly_as_pg pg_ctl -D "$PGPOLY_PGDATA" -l "$PGPOLY_PGLOG" \
			"${wrapper[@]}" -o "-p $port" -w -t "$(pgpoly_scaled 60)" start \
			>"$pgdir/pg_ctl.log" 2>&1); then
			break
		fi
		if ((attempt == 3)) || ! grep -q 'could not bind' "$PGPOLY_PGLOG" 2>/dev/null; then
			cat "$pgdir/pg_ctl.log" >&2
			tail -n 30 "$PGPOLY_PGLOG" >&2 2>/dev/null || true
			pgpoly_die "could not start PostgreSQL"
		fi
	done
	_PGPOLY_PG_STARTED=1

	export PGHOST=127.0.0.1 PGPORT="$port" PGUSER=postgres PGDATABASE=postgres
	export PGPOLY_PGDATA PGPOLY_PGLOG
	pg_isready -q -t "$(pgpoly_scaled 30)" || pgpoly_die "PostgreSQL on port $port is not accepting connections"
	pgpoly_log "PostgreSQL running on 127.0.0.1:$port (log: $PGPOLY_PGLOG)"
}

# Start a Redis server on a free loopback port: pgpoly_start_redis [NAME].
# Sets PGPOLY_REDIS_PORT to its port.  The default instance (no NAME) also
# exports REDIS_PORT; a named one exports REDIS_PORT_<NAME> (upper case, with
# non-alphanumerics turned into _).  Its files live in $PGPOLY_WORK/redis-NAME.
# It also listens on the Unix-domain socket $PGPOLY_WORK/redis-NAME/redis.sock
# (writable by the postgres OS user), exported as REDIS_SOCKET (or
# REDIS_SOCKET_<NAME>), for servers with option unix_socket.
pgpoly_start_redis() {
	local name="${1:-default}" dir port pid attempt i var sock

	pgpoly_workdir
	dir="$PGPOLY_WORK/redis-$name"
	[[ ! -e "$dir" ]] || pgpoly_die "redis instance '$name' already exists"
	mkdir -p "$dir"
	chmod 755 "$dir"
	sock="$dir/redis.sock"
	((${#sock} < 108)) || pgpoly_die "socket path $sock is too long for a Unix-domain socket: use a shorter PGPOLY_WORK_ROOT"
	for attempt in 1 2 3; do
		port="$(pgpoly_free_port)"
		rm -f "$dir/redis.pid"
		redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
			--unixsocket "$sock" --unixsocketperm 777 \
			--daemonize yes --pidfile "$dir/redis.pid" --dir "$dir" \
			--logfile "$dir/redis.log" >/dev/null 2>&1 || true
		for ((i = 0; i < 100; i++)); do
			if [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == PONG && -s "$dir/redis.pid" ]]; then
				break
			fi
			sleep 0.1
		done
		if ((i < 100)); then
			break
		fi
		# Not answering: stop whatever started before retrying or giving up.
		if [[ -s "$dir/redis.pid" ]]; then
			kill -KILL "$(cat "$dir/redis.pid")" 2>/dev/null || true
		fi
		if ((attempt == 3)); then
			tail -n 30 "$dir/redis.log" >&2 2>/dev/null || true
			pgpoly_die "could not start redis-server '$name'"
		fi
	done
	pid="$(cat "$dir/redis.pid")"
	pgpoly_register_pid "$pid" "redis-$name"

	# shellcheck disable=SC2034 # read by the scripts that source this file
	PGPOLY_REDIS_PORT="$port"
	if [[ "$name" == default ]]; then
		export REDIS_PORT="$port" REDIS_SOCKET="$sock"
	else
		var="$(echo "$name" | tr '[:lower:]' '[:upper:]' | tr -c 'A-Z0-9\n' '_')"
		export "REDIS_PORT_$var=$port" "REDIS_SOCKET_$var=$sock"
	fi
	pgpoly_log "redis '$name' running on 127.0.0.1:$port and $sock (pid $pid)"
}

# Run a command in a process group of its own and wait for it, so that a
# signal to this script interrupts the wait at once and pgpoly_cleanup can
# stop the whole group.  Returns the command's exit status.
pgpoly_run() {
	local rc=0

	setsid -w "$@" &
	_PGPOLY_CHILD=$!
	wait "$_PGPOLY_CHILD" || rc=$?
	_PGPOLY_CHILD=
	return "$rc"
}

# pgpoly_run with the command's output (stdout and stderr) also copied to LOG:
# pgpoly_run_logged LOG COMMAND [ARG...].  Returns the command's exit status.
pgpoly_run_logged() {
	# shellcheck disable=SC2016 # expanded by the inner bash
	pgpoly_run bash -c '"${@:2}" 2>&1 | tee "$1"; exit "${PIPESTATUS[0]}"' _ "$@"
}

# Start a command in the background, in a process group of its own, with its
# output (stdout and stderr) to LOG: pgpoly_spawn_logged LOG COMMAND [ARG...].
# Sets PGPOLY_SPAWNED to its pid (wait "$PGPOLY_SPAWNED" gives its exit
# status); pgpoly_cleanup stops it if it is still running.
pgpoly_spawn_logged() {
	local log="$1"

	shift
	setsid -w "$@" >"$log" 2>&1 </dev/null &
	PGPOLY_SPAWNED=$!
	_PGPOLY_SPAWNED+=("$PGPOLY_SPAWNED")
}

# Stop a process group: TERM, then KILL after $2 tenths of a second.
_pgpoly_stop_group() {
	local i

	kill -TERM -- "-$1" 2>/dev/null || return 0
	for ((i = 0; i < $2; i++)); do
		kill -0 -- "-$1" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL -- "-$1" 2>/dev/null
	wait "$1" 2>/dev/null
}

# Stop the process group of a pgpoly_run command still running, and of
# every pgpoly_spawn_logged one (those are harness scripts that stop their
# own servers on TERM: they get 30 s for it).
_pgpoly_stop_child() {
	local pid

	if [[ -n "${_PGPOLY_CHILD:-}" ]]; then
		_pgpoly_stop_group "$_PGPOLY_CHILD" 50
		_PGPOLY_CHILD=
	fi
	for pid in "${_PGPOLY_SPAWNED[@]}"; do
		_pgpoly_stop_group "$pid" 300
	done
	_PGPOLY_SPAWNED=()
}

# Stop PostgreSQL (immediate), if this run started it.
_pgpoly_stop_pg() {
	local pmpid i

	[[ -n "${_PGPOLY_PG_STARTED:-}" && -f "$PGPOLY_PGDATA/postmaster.pid" ]] || return 0
	_PGPOLY_PG_STARTED=
	pmpid="$(head -n 1 "$PGPOLY_PGDATA/postmaster.pid" 2>/dev/null)"
	if (cd / && _pgpoly_as_pg pg_ctl -D "$PGPOLY_PGDATA" -m immediate -w -t 30 stop \
		>/dev/null 2>&1); then
		return 0
	fi
	# pg_ctl could not stop it: signal the postmaster ourselves.
	[[ -n "$pmpid" ]] && _pgpoly_alive "$pmpid" || return 0
	kill -QUIT "$pmpid" 2>/dev/null
	for ((i = 0; i < 50; i++)); do
		_pgpoly_alive "$pmpid" || return 0
		sleep 0.1
	done
	pkill -KILL -P "$pmpid" 2>/dev/null
	kill -KILL "$pmpid" 2>/dev/null
}

# Stop every registered process still alive (TERM, then KILL after 5 s).
_pgpoly_stop_registered() {
	local pid start label i
	local -a alive=() left

	[[ -f "${PGPOLY_PIDS:-}" ]] || return 0
	while read -r pid start label; do
		[[ -n "$pid" ]] || continue
		# Skip pids that died and were reused by something else.
		[[ "$(_pgpoly_proc_start "$pid")" == "$start" ]] || continue
		kill -TERM "$pid" 2>/dev/null
		kill -CONT "$pid" 2>/dev/null # a SIGSTOPped server must see the TERM
		alive+=("$pid")
	done <"$PGPOLY_PIDS"
	for ((i = 0; i < 50 && ${#alive[@]} > 0; i++)); do
		left=()
		for pid in "${alive[@]}"; do
			if _pgpoly_alive "$pid"; then
				left+=("$pid")
			fi
		done
		alive=("${left[@]}")
		((${#alive[@]} == 0)) || sleep 0.1
	done
	for pid in "${alive[@]}"; do
		kill -KILL "$pid" 2>/dev/null
	done
}

# Stop everything this run started and remove the work directory (unless
# PGPOLY_KEEP_WORK=1).  Runs as the EXIT trap; safe to call more than once;
# keeps the script's exit status.
pgpoly_cleanup() {
	local rc=$?

	set +e
	if ((_PGPOLY_CLEANED)) || [[ -z "${_PGPOLY_WORK_OWNED:-}" ]]; then
		return "$rc"
	fi
	_PGPOLY_CLEANED=1
	_pgpoly_stop_child
	pgpoly_log "stopping the servers"
	_pgpoly_stop_pg
	_pgpoly_stop_registered
	if [[ "${PGPOLY_KEEP_WORK:-0}" == 1 ]]; then
		pgpoly_log "keeping work directory $PGPOLY_WORK"
	else
		pgpoly_log "removing the work directory"
		rm -rf "$PGPOLY_WORK"
	fi
	pgpoly_log "cleaned up"
	return "$rc"
}

# Common setup of the project commands: packages, build, then the servers.
pgpoly_setup() {
	pgpoly_install_packages
	pgpoly_build_install
	pgpoly_start_servers
}

# Each further store brings its own start-up file (test/lib_<store>.sh)
# defining pgpoly_start_<store>; it is run when present.
PGPOLY_STORES="chroma es"

# Start this run's servers: PostgreSQL, the default Redis, and each store's.
pgpoly_start_servers() {
	local store

	pgpoly_workdir
	pgpoly_start_pg
	pgpoly_start_redis default
	for store in $PGPOLY_STORES; do
		if declare -F "pgpoly_start_$store" >/dev/null; then
			"pgpoly_start_$store"
		fi
	done
}

# Store start-up files: test/lib_chroma.sh (vector service), test/lib_es.sh
# (Elasticsearch stand-in or PGPOLY_ES_URL).
for _pgpoly_lib in "$PGPOLY_ROOT"/test/lib_*.sh; do
	# shellcheck source=/dev/null
	[[ -e "$_pgpoly_lib" ]] && source "$_pgpoly_lib"
done
unset _pgpoly_lib
