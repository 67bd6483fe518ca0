#!/usr/bin/env bash
#
# test/run-tests.sh -- `make test`: install the needed packages, build and
# install pgpoly, start throwaway PostgreSQL, Redis, Chroma and Elasticsearch
# stand-in servers on free loopback ports, run the pg_regress suite (make
# installcheck) and the fault tests (test/fault/run.py, PGPOLY_TEST_JOBS of
# them at a time, default 2), and print "N passed, N failed".  Exits non-zero
# if any test failed.  A failing pg_regress run does not stop the fault tests.
#
# The fault tests run against servers of their own
# (test/fault/run-own-servers.sh, started during the build), so they run
# beside the pg_regress suite, which is one sequential psql session; their
# output is shown after the suite's.  PGPOLY_TEST_JOBS=1 (`make valgrind`, whose
# backends are CPU-bound) runs everything one after another.
set -euo pipefail

# shellcheck source=test/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$PGPOLY_ROOT"

pgpoly_install_packages
pgpoly_workdir

# The fault tests' servers start during the build, their tests after it.
fault_out="$PGPOLY_WORK/fault.out"
built="$PGPOLY_WORK/built"
fault_pid=
if [[ "${PGPOLY_TEST_JOBS:-2}" != 1 ]]; then
	pgpoly_log "fault tests: run beside the build and the pg_regress suite (output: $fault_out)"
	pgpoly_spawn_logged "$fault_out" bash test/fault/run-own-servers.sh --after "$built"
	fault_pid="$PGPOLY_SPAWNED"
fi
pgpoly_build_install
: >"$built"
pgpoly_start_servers

passed=0
failed=0
broken=0 # a runner failed without reporting a failed test

# --- the fuzz harnesses still compile ----------------------------------------
# `make fuzz` (clang, libFuzzer) is not part of this suite; a syntax check of
# its sources with the compiler at hand keeps them in step with the code they
# call (one test).
fuzz_flags=(-fsyntax-only -Werror -Wall -Wno-unused-function
	-I"$("$PG_CONFIG" --includedir-server)" -Isrc -Ifdw -Itest/fuzz)
read -ra fuzz_cpp <<<"$("$PG_CONFIG" --cppflags)"
fuzz_bad=0
for src in test/fuzz/*.c; do
	if ! gcc "${fuzz_flags[@]}" "${fuzz_cpp[@]}" "$src" >"$PGPOLY_WORK/fuzz_syntax.out" 2>&1; then
		echo "=== $src does not compile ==="
		head -n 40 "$PGPOLY_WORK/fuzz_syntax.out"
		fuzz_bad=1
	fi
done
if ((fuzz_bad)); then
	echo "fuzz harness sources                         ... FAILED"
	failed=$((failed + 1))
else
	echo "fuzz harness sources                         ... ok"
	passed=$((passed + 1))
fi

# --- pg_regress -------------------------------------------------------------
out="$PGPOLY_WORK/installcheck.out"
rm -f regression.diffs regression.out
rc=0
pgpoly_log "pg_regress suite: starting"
pgpoly_run_logged "$out" make PG_CONFIG="$PG_CONFIG" installcheck || rc=$?
pgpoly_log "pg_regress suite: done"

# PG15 prints "test name ... ok  12 ms" (or "     name ... FAILED" inside
# parallel groups); PG16+ prints TAP lines "ok 1 - name  12 ms".
read -r ok bad < <(awk '
	/^(test )? *[^ ]+ +\.\.\. +ok( |$)/                 { ok++; next }
	/^(test )? *[^ ]+ +\.\.\. +failed \(ignored\)/      { ok++; next }
	/^(test )? *[^ ]+ +\.\.\. +FAILED/                  { bad++; next }
	/^ok [0-9]+ +[-+] /                                 { ok++; next }
	/^not ok [0-9]+ +[-+] /                             { bad++; next }
	END { print ok + 0, bad + 0 }' "$out")
passed=$((passed + ok))
failed=$((failed + bad))
if ((rc != 0)); then
	if [[ -s regression.diffs ]]; then
		echo "=== regression.diffs (first 300 lines) ==="
		head -n 300 regression.diffs
		echo "=== end of regression.diffs ==="
	fi
	echo "=== last lines of the PostgreSQL log ($PGPOLY_PGLOG) ==="
	tail -n 40 "$PGPOLY_PGLOG" || true
	if ((bad == 0)); then
		pgpoly_log "make installcheck failed (exit $rc) without a failed test"
		broken=$((broken + 1))
	fi
fi

# --- fault tests ------------------------------------------------------------
out="$fault_out"
rc=0
if [[ -n "$fault_pid" ]]; then
	# what they printed so far, then the rest as it comes
	pgpoly_run tail -s 0.2 -n +1 -f --pid="$fault_pid" "$out" || true
	wait "$fault_pid" || rc=$?
	_PGPOLY_SPAWNED=()
else
	pgpoly_run_logged "$out" bash test/fault/run-own-servers.sh || rc=$?
fi
pgpoly_log "fault tests: done"
summary="$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out" | tail -n 1 || true)"
if [[ -n "$summary" ]]; then
	read -r ok _ bad _ <<<"${summary//,/}"
	passed=$((passed + ok))
	failed=$((failed + bad))
	if ((rc != 0 && bad == 0)); then
		broken=$((broken + 1))
	fi
elif ((rc != 0)); then
	pgpoly_log "test/fault/run.py failed (exit $rc) without a summary"
	broken=$((broken + 1))
fi

# A runner that failed without naming a failed test counts as one failure.
failed=$((failed + broken))
echo
echo "$passed passed, $failed failed"
((failed == 0))
