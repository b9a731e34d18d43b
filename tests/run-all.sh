#!/usr/bin/env bash
# Runs every test: cmocka unit tests (TAP output), CLI golden tests (tests/cli), and the
# runnable examples in docs/*.md. Ends with one line "N passed, N failed".
# Env: BINDIR (default bin), BUILD (default build), TEST_FILTER (substring of test names).
set -u
cd "$(dirname "$0")/.."
export BINDIR=${BINDIR:-bin} BUILD=${BUILD:-build}
pass=0 fail=0 failed_names=()
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

record() { # name status
	if [ "$2" = 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); failed_names+=("$1"); fi
}

# 1. unit tests: each binary prints TAP; count every "ok"/"not ok" line.
for t in "$BUILD"/tests/test_*; do
	[ -x "$t" ] || continue
	case "$t" in *.d|*.o) continue ;; esac
	name=$(basename "$t")
	[ -n "${TEST_FILTER:-}" ] && [[ "$name" != *"$TEST_FILTER"* ]] && continue
	out="$log/$name.out"
	CMOCKA_MESSAGE_OUTPUT=TAP SFT_TEST_DATA=tests/fixtures timeout 600 "$t" >"$out" 2>&1
	rc=$?
	n_ok=$(grep -c '^ok ' "$out")
	n_bad=$(grep -c '^not ok ' "$out")
	pass=$((pass + n_ok)); fail=$((fail + n_bad))
	if [ "$n_bad" -gt 0 ] || { [ "$rc" -ne 0 ] && [ "$n_bad" -eq 0 ]; }; then
		[ "$rc" -ne 0 ] && [ "$n_bad" -eq 0 ] && { fail=$((fail + 1)); }
		failed_names+=("$name")
		echo "--- $name (exit $rc)"; grep -v '^ok ' "$out" | tail -40
	fi
done

# 2. CLI golden tests.
out=$(tests/run-cli.sh 2>&1); rc=$?
echo "$out" | grep -v '^CLI-SUMMARY' 
s=$(echo "$out" | grep '^CLI-SUMMARY' | tail -1)
if [ -n "$s" ]; then
	set -- $s; pass=$((pass + $2)); fail=$((fail + $3))
	[ "$3" -gt 0 ] && failed_names+=("cli")
elif [ $rc -ne 0 ]; then record cli-runner 1; fi

# 3. doc examples.
out=$(tests/run-doc-examples.sh 2>&1); rc=$?
echo "$out" | grep -v '^DOC-SUMMARY'
s=$(echo "$out" | grep '^DOC-SUMMARY' | tail -1)
if [ -n "$s" ]; then
	set -- $s; pass=$((pass + $2)); fail=$((fail + $3))
	[ "$3" -gt 0 ] && failed_names+=("doc-examples")
elif [ $rc -ne 0 ]; then record doc-runner 1; fi

[ ${#failed_names[@]} -gt 0 ] && echo "failed: ${failed_names[*]}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
