#!/usr/bin/env bash
# Runs the examples in docs/*.md so the docs stay true. A fenced block opened with
# ```sh test
# is run with bash from the repository root (tools first on PATH, FIX=tests/fixtures,
# TMP=a fresh temporary directory) and must exit 0. If the very next fenced block is
# opened with ```output, the example's stdout must equal it exactly.
# Prints "DOC-SUMMARY <passed> <failed>".
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BINDIR=${BINDIR:-bin}
case "$BINDIR" in /*) ;; *) BINDIR="$ROOT/$BINDIR" ;; esac
pass=0 fail=0
for md in docs/*.md; do
	[ -f "$md" ] || continue
	[ -n "${TEST_FILTER:-}" ] && [[ "$md" != *"$TEST_FILTER"* ]] && continue
	work=$(mktemp -d)
	# split into numbered example files: N.sh and optional N.out
	awk -v dir="$work" '
		/^```sh test[ \t]*$/ { n++; f = dir "/" n ".sh"; inb = 1; lastn = n; next }
		/^```output[ \t]*$/ { if (lastn && !used[lastn]) { f = dir "/" lastn ".out"; inb = 1; used[lastn] = 1; printf "" > f } ; next }
		/^```/ { if (inb) { inb = 0; close(f) } else if ($0 != "```") { lastn = 0 } ; next }
		inb { print > f; next }
		/[^ \t]/ { if (!inb) { } }
	' "$md"
	for ex in "$work"/*.sh; do
		[ -f "$ex" ] || continue
		n=$(basename "$ex" .sh)
		tmp=$(mktemp -d)
		(cd "$ROOT" && PATH="$BINDIR:$PATH" FIX="$ROOT/tests/fixtures" TMP="$tmp" timeout 120 bash "$ex" \
			>"$tmp/.stdout" 2>"$tmp/.stderr" </dev/null)
		rc=$?
		why=""
		[ $rc -eq 0 ] || why="exit $rc"
		if [ -z "$why" ] && [ -f "$work/$n.out" ] && ! cmp -s "$work/$n.out" "$tmp/.stdout"; then
			why="output differs: $(diff "$work/$n.out" "$tmp/.stdout" | head -6 | tr '\n' '|')"
		fi
		if [ -z "$why" ]; then pass=$((pass + 1)); else
			fail=$((fail + 1)); echo "FAIL doc $md example $n: $why"; head -3 "$tmp/.stderr" | sed 's/^/    /'
		fi
		rm -rf "$tmp"
	done
	rm -rf "$work"
done
echo "DOC-SUMMARY $pass $fail"
[ "$fail" -eq 0 ]
