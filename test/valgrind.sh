#!/usr/bin/env bash
#
# test/valgrind.sh -- `make valgrind`: the whole `make test` suite with every
# PostgreSQL backend under valgrind memcheck.
#
# The postmaster is started through a wrapper (PGPOLY_PG_WRAPPER, honoured
# by test/lib.sh) that execs it under valgrind; backends are forked, so each
# runs under valgrind too.  PostgreSQL's own suppression file
# (src/tools/valgrind.supp) is not in the Debian binary packages: it is taken
# from the Debian source package of the installed major version, fetched
# once with `apt-get source` through a private deb-src list into a cache
# directory (nothing in the system's apt configuration changes, nothing is
# committed).  test/valgrind-stripped.supp adds the few of its suppressions
# that name static functions, which Debian's stripped binaries hide, keyed
# on an exported caller, and the definite leaks every PostgreSQL process has
# at exit (none of them pgpoly's).  Time limits are stretched by PGPOLY_TIMEOUT_SCALE
# (default 20).  The fault tests run one at a time (PGPOLY_TEST_JOBS,
# default 1 here, 2 in `make test`): backends under valgrind are CPU-bound,
# so a second test at a time would only slow both.
#
# Definite leaks are reported at each process's exit (leak errors): pgpoly's
# library objects (hiredis contexts, jansson values, curl handles) are
# malloc'd outside PostgreSQL's memory contexts, so one lost on an ERROR path
# shows only there.
#
# Exit status: 1 if any valgrind error report has a pgpoly frame (pgpoly.so,
# or hiredis, curl or jansson called from it) or the suite failed; the other
# reports (PostgreSQL's own, with no pgpoly frame) are counted and listed.
#
# Environment: PGPOLY_TIMEOUT_SCALE (20), PGPOLY_TEST_JOBS (1), PGPOLY_CACHE (~/.cache/pgpoly),
#              PGPOLY_VALGRIND_LOGS (./valgrind-logs, emptied at start).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}"
CACHE="${PGPOLY_CACHE:-${HOME:-/root}/.cache/pgpoly}/valgrind"
LOGS="${PGPOLY_VALGRIND_LOGS:-$ROOT/valgrind-logs}"
export PGPOLY_TIMEOUT_SCALE="${PGPOLY_TIMEOUT_SCALE:-20}"
export PGPOLY_TEST_JOBS="${PGPOLY_TEST_JOBS:-1}"

log() { echo "pgpoly-valgrind: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Install valgrind if it is missing.
ensure_valgrind() {
	command -v valgrind >/dev/null && return 0
	((EUID == 0)) || die "valgrind is not installed (apt-get install valgrind)"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind \
		|| die "could not install valgrind"
}

# Print the path of PostgreSQL's valgrind.supp for the installed major
# version, fetching the Debian source package into $CACHE the first time.
suppressions() {
	local major version dir apt srcver tarball
	major="$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')"
	version="$(dpkg-query -W -f '${Version}' "postgresql-$major" 2>/dev/null || true)"
	dir="$CACHE/pg$major"
	if [[ -s "$dir/valgrind.supp" ]]; then
		echo "$dir/valgrind.supp"
		return 0
	fi
	mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial" "$dir/src"
	# A private deb-src list from the system's own Debian sources.
	sed -nE 's/^URIs: +//p; s/^Suites: +//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null \
		| paste - - | while read -r uri suites; do
			for s in $suites; do echo "deb-src $uri $s main"; done
		done >"$dir/apt/sources.list"
	grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | sed 's/^deb /deb-src /' \
		>>"$dir/apt/sources.list" || true
	[[ -s "$dir/apt/sources.list" ]] || die "no Debian apt source found to derive deb-src from"
	apt=(apt-get -q -o "Dir::Etc::SourceList=$dir/apt/sources.list"
		-o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$dir/apt/lists"
		-o "Dir::Cache=$dir/apt/cache")
	log "fetching the postgresql-$major source package for src/tools/valgrind.supp"
	"${apt[@]}" update >"$dir/apt.log" 2>&1 || die "apt-get update (deb-src) failed: see $dir/apt.log"
	# The installed version first, then every other version the mirrors
	# list, newest first (the suppressions hardly change within a major).
	for srcver in "$version" $("${apt[@]/apt-get/apt-cache}" showsrc "postgresql-$major" \
		2>/dev/null | sed -nE 's/^Version: //p' | sort -Vru); do
		rm -f "$dir"/src/*
		if (cd "$dir/src" && "${apt[@]}" source --download-only \
			"postgresql-$major=$srcver" >>"$dir/apt.log" 2>&1); then
			[[ "$srcver" == "$version" ]] || log "source $version not available; using $srcver"
			break
		fi
	done
	ls "$dir"/src/postgresql-"$major"_*.orig.tar.* >/dev/null 2>&1 \
		|| die "apt-get source postgresql-$major failed: see $dir/apt.log"
	tarball="$(ls "$dir"/src/postgresql-"$major"_*.orig.tar.* | head -n 1)"
	tar -xf "$tarball" -C "$dir/src" --wildcards '*/src/tools/valgrind.supp' \
		|| die "no src/tools/valgrind.supp in $tarball"
	cp "$(ls "$dir"/src/postgresql-*/src/tools/valgrind.supp | head -n 1)" "$dir/valgrind.supp"
	rm -rf "$dir/src" "$dir/apt/cache"
	echo "$dir/valgrind.supp"
}

# Write the postmaster wrapper (in $LOGS, readable by the cluster's OS user).
write_wrapper() {
	local supp="$1" bindir
	bindir="$("$PG_CONFIG" --bindir)"
	cp "$supp" "$LOGS/valgrind.supp"
	cp "$ROOT/test/valgrind-stripped.supp" "$LOGS/valgrind-stripped.supp"
	cat >"$LOGS/postgres-valgrind" <<-EOF
		#!/bin/sh
		# pg_ctl runs this instead of postgres (make valgrind).
		exec valgrind --quiet --tool=memcheck --trace-children=yes \\
		    --leak-check=full --show-leak-kinds=definite \\
		    --errors-for-leak-kinds=definite --track-origins=yes --read-var-info=no \\
		    --num-callers=40 --error-markers=VALGRINDERROR-BEGIN,VALGRINDERROR-END \\
		    --suppressions=$LOGS/valgrind.supp \\
		    --suppressions=$LOGS/valgrind-stripped.supp --gen-suppressions=all \\
		    --log-file=$LOGS/%p.log \\
		    $bindir/postgres "\$@"
	EOF
	chmod 755 "$LOGS/postgres-valgrind"
}

# Print a summary of the valgrind logs; return 1 if any report has a pgpoly frame.
summarize() {
	python3 - "$LOGS" "$ROOT"/src/*.c "$ROOT"/fdw/*.c <<-'EOF'
		import glob, os, re, sys
		# A pgpoly frame: in pgpoly.so or hiredis, or at a line of a pgpoly
		# source file (frames with debug information name the file only).
		files = "|".join(re.escape(os.path.basename(f)) for f in sys.argv[2:])
		ours = re.compile(r"pgpoly\.so|libhiredis|\((?:%s):\d+\)" % files)
		mine, other = [], []
		for path in sorted(glob.glob(sys.argv[1] + "/*.log")):
		    text = open(path, errors="replace").read()
		    for block in re.findall(r"VALGRINDERROR-BEGIN\n(.*?)VALGRINDERROR-END", text, re.S):
		        (mine if ours.search(block) else other).append((path, block))
		print("valgrind: %d error report(s) with a pgpoly frame, %d without"
		      % (len(mine), len(other)))
		for path, block in mine:
		    print("=== %s ===\n%s" % (path, block))
		kinds = {}
		for path, block in other:
		    first = block.strip().splitlines()[0]
		    first = re.sub(r"^==\d+== ", "", first)
		    kinds[first] = kinds.get(first, 0) + 1
		for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]):
		    print("  not pgpoly (%d): %s" % (n, k))
		sys.exit(1 if mine else 0)
	EOF
}

ensure_valgrind
supp="$(suppressions)"
rm -rf "$LOGS"
mkdir -p "$LOGS"
chmod 1777 "$LOGS"
write_wrapper "$supp"
log "suppressions: $supp; logs: $LOGS; PGPOLY_TIMEOUT_SCALE=$PGPOLY_TIMEOUT_SCALE PGPOLY_TEST_JOBS=$PGPOLY_TEST_JOBS"

rc=0
PGPOLY_PG_WRAPPER="$LOGS/postgres-valgrind" bash "$ROOT/test/run-tests.sh" || rc=$?
summarize || rc=1
if ((rc != 0)); then
	log "FAILED (suite or valgrind); logs in $LOGS"
fi
exit "$rc"
