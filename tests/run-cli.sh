#!/usr/bin/env bash
# CLI golden tests. Each case is a directory tests/cli/<tool>/<case>/ holding:
#   cmd      shell command line, run with bash in a fresh temporary directory ($PWD),
#            with the tools first on PATH and these variables set:
#              ROOT (repository root), FIX (tests/fixtures), CASE (the case directory)
#   stdout   expected standard output, byte for byte (optional: unchecked if absent)
#   stderr   extended regex that must match somewhere in standard error (optional)
#   exit     expected exit code (optional, default 0)
#   files    optional: lines "PATH EXPECTED" - file PATH (relative to $PWD) must equal
#            EXPECTED (relative to the case directory); "PATH -" means must NOT exist
# Prints one line per failure and "CLI-SUMMARY <passed> <failed>" at the end.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BINDIR=${BINDIR:-bin}
case "$BINDIR" in /*) ;; *) BINDIR="$ROOT/$BINDIR" ;; esac
pass=0 fail=0
for cmdf in tests/cli/*/*/cmd; do
	[ -f "$cmdf" ] || continue
	case_dir=$(dirname "$cmdf")
	name=${case_dir#tests/cli/}
	[ -n "${TEST_FILTER:-}" ] && [[ "$name" != *"$TEST_FILTER"* ]] && continue
	tmp=$(mktemp -d)
	want_exit=0
	[ -f "$case_dir/exit" ] && want_exit=$(tr -d ' \n' <"$case_dir/exit")
	(cd "$tmp" && PATH="$BINDIR:$PATH" ROOT="$ROOT" FIX="$ROOT/tests/fixtures" CASE="$ROOT/$case_dir" \
		timeout 120 bash "$ROOT/$cmdf" >"$tmp/.stdout" 2>"$tmp/.stderr" </dev/null)
	got_exit=$?
	why=""
	[ "$got_exit" = "$want_exit" ] || why="exit $got_exit, expected $want_exit"
	if [ -z "$why" ] && [ -f "$case_dir/stdout" ] && ! cmp -s "$case_dir/stdout" "$tmp/.stdout"; then
		why="stdout differs: $(diff "$case_dir/stdout" "$tmp/.stdout" | head -8 | tr '\n' '|')"
	fi
	if [ -z "$why" ] && [ -f "$case_dir/stderr" ] && ! grep -Eq -f "$case_dir/stderr" "$tmp/.stderr"; then
		why="stderr does not match /$(head -1 "$case_dir/stderr")/"
	fi
	if [ -z "$why" ] && [ -f "$case_dir/files" ]; then
		while read -r p expect; do
			[ -n "$p" ] || continue
			if [ "$expect" = "-" ]; then
				[ -e "$tmp/$p" ] && why="$p exists but must not"
			elif ! cmp -s "$case_dir/$expect" "$tmp/$p"; then
				why="file $p differs from $expect"
			fi
		done <"$case_dir/files"
	fi
	if [ -z "$why" ]; then
		pass=$((pass + 1))
	else
		fail=$((fail + 1))
		echo "FAIL cli/$name: $why"
		sed 's/^/    stderr: /' "$tmp/.stderr" | head -5
	fi
	rm -rf "$tmp"
done
echo "CLI-SUMMARY $pass $fail"
[ "$fail" -eq 0 ]
