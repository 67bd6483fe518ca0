# shellcheck shell=bash
#
# test/lib_chroma.sh -- start a real Chroma server for the pgpoly_vector tests.
#
# Sourced by test/lib.sh; pgpoly_setup calls pgpoly_start_chroma after Redis.
# Chroma comes from npm (chromadb, pinned with its Linux bindings in
# test/chroma/package-lock.json) and runs from test/chroma/node_modules on a
# free loopback port with its data in $PGPOLY_WORK/chroma.  Its pid is
# registered, so pgpoly_cleanup stops it.  Exports CHROMA_URL.

PGPOLY_CHROMA_DIR="$PGPOLY_ROOT/test/chroma"

# Install node and npm from Debian when missing (a NodeSource nodejs ships npm).
_pgpoly_chroma_node() {
	if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
		return 0
	fi
	PGPOLY_PACKAGES="nodejs npm" pgpoly_install_packages
	command -v npm >/dev/null 2>&1 || pgpoly_die "npm is not available after installing nodejs npm"
}

# npm ci from the committed lockfile, unless node_modules already matches it.
_pgpoly_chroma_install() {
	local stamp="$PGPOLY_CHROMA_DIR/node_modules/.package-lock.json"

	if [[ -x "$PGPOLY_CHROMA_DIR/node_modules/.bin/chroma" && -f "$stamp" &&
		"$stamp" -nt "$PGPOLY_CHROMA_DIR/package-lock.json" ]]; then
		return 0
	fi
	pgpoly_log "installing Chroma (npm ci in test/chroma)"
	# npm's own output only when it fails
	if ! (cd "$PGPOLY_CHROMA_DIR" && npm ci --no-audit --no-fund --loglevel=error) \
		>"$PGPOLY_WORK/npm.log" 2>&1; then
		cat "$PGPOLY_WORK/npm.log" >&2
		pgpoly_die "npm ci failed in $PGPOLY_CHROMA_DIR"
	fi
}

# True once Chroma on port $1 answers its heartbeat.
_pgpoly_chroma_up() {
	curl -sf -m 2 "http://127.0.0.1:$1/api/v2/heartbeat" >/dev/null 2>&1
}

# Install node and Chroma (once: later calls find them installed), under a
# lock on test/chroma, so that two harness scripts starting Chroma at the
# same time (test/run-tests.sh and its test/fault/run-own-servers.sh) do
# not run npm ci over each other.
pgpoly_prepare_chroma() {
	local fd

	pgpoly_workdir
	exec {fd}<"$PGPOLY_CHROMA_DIR"
	flock "$fd" || pgpoly_die "could not lock $PGPOLY_CHROMA_DIR"
	_pgpoly_chroma_node
	_pgpoly_chroma_install
	exec {fd}<&-
}

# Start Chroma on a free port; exports CHROMA_URL.
pgpoly_start_chroma() {
	local dir port pid attempt i

	pgpoly_prepare_chroma
	dir="$PGPOLY_WORK/chroma"
	mkdir -p "$dir"
	for attempt in 1 2 3; do
		port="$(pgpoly_free_port)"
		(cd "$PGPOLY_CHROMA_DIR" && exec setsid node_modules/.bin/chroma run \
			--path "$dir/data" --host 127.0.0.1 --port "$port" \
			>"$dir/chroma.log" 2>&1 </dev/null) &
		pid=$!
		pgpoly_register_pid "$pid" chroma
		for ((i = 0; i < 300; i++)); do
			if _pgpoly_chroma_up "$port"; then
				break 2
			fi
			_pgpoly_alive "$pid" || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		if ((attempt == 3)); then
			tail -n 30 "$dir/chroma.log" >&2 2>/dev/null || true
			pgpoly_die "could not start Chroma"
		fi
	done
	export CHROMA_URL="http://127.0.0.1:$port"
	pgpoly_log "chroma running on $CHROMA_URL (pid $pid)"
}
