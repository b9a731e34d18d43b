#!/usr/bin/env bash
# Short libFuzzer run of every target: tests/run-fuzz.sh SECONDS TARGET...
# Seeds come from tests/fuzz/corpus/<target-name-without-fuzz_>/ when present.
set -u
secs=$1; shift
rc=0
for t in "$@"; do
	name=$(basename "$t"); seed="tests/fuzz/corpus/${name#fuzz_}"
	work=$(mktemp -d)
	export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
	[ -d "$seed" ] && cp -r "$seed"/. "$work"/ 2>/dev/null
	echo "fuzz: $name for ${secs}s"
	if ! "$t" -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=0 "$work" >"$work.log" 2>&1; then
		echo "fuzz: $name FAILED"; tail -30 "$work.log"; rc=1
	fi
	rm -rf "$work" "$work.log"
done
[ $rc -eq 0 ] && echo "fuzz: all targets ran clean"
exit $rc
