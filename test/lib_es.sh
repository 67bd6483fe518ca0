# shellcheck shell=bash
#
# test/lib_es.sh -- the Elasticsearch side of the test harness, sourced by
# test/lib.sh.  pgpoly_setup calls pgpoly_start_es after Redis.
#
# Elasticsearch cannot be installed on the test machines, so by default the
# tests run against test/es_standin.py, an in-memory server speaking the
# documented REST API.  To run the same tests against a real cluster, set
# PGPOLY_ES_URL (e.g. http://127.0.0.1:9200; the cluster must accept
# unauthenticated requests from this machine and must not hold indexes named
# regress_* / pgpoly_*, which the tests create and drop).
#
# Either way ES_URL is exported for the SQL tests (\getenv es_url ES_URL),
# and PGPOLY_ES_STANDIN=1 when the stand-in is used.

# Start the stand-in on a free loopback port (or use PGPOLY_ES_URL).
pgpoly_start_es() {
	local port pid i attempt log

	if [[ -n "${PGPOLY_ES_URL:-}" ]]; then
		export ES_URL="${PGPOLY_ES_URL%/}"
		export PGPOLY_ES_STANDIN=0
		pgpoly_log "Elasticsearch: using the real cluster at $ES_URL (PGPOLY_ES_URL)"
		return 0
	fi
	pgpoly_workdir
	log="$PGPOLY_WORK/es_standin.log"
	for attempt in 1 2 3; do
		port="$(pgpoly_free_port)"
		python3 "$PGPOLY_ROOT/test/es_standin.py" --port "$port" >"$log" 2>&1 &
		pid=$!
		for ((i = 0; i < 100; i++)); do
			if python3 -c 'import sys, urllib.request
urllib.request.urlopen("http://127.0.0.1:%s/" % sys.argv[1], timeout=1).read()' "$port" 2>/dev/null; then
				break
			fi
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if ((i < 100)) && kill -0 "$pid" 2>/dev/null; then
			break
		fi
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		if ((attempt == 3)); then
			cat "$log" >&2 || true
			pgpoly_die "could not start test/es_standin.py"
		fi
	done
	pgpoly_register_pid "$pid" es-standin
	export ES_URL="http://127.0.0.1:$port"
	export PGPOLY_ES_STANDIN=1
	pgpoly_log "Elasticsearch stand-in (test/es_standin.py) running on $ES_URL (pid $pid)"
}
