#!/usr/bin/env bash
# Run every libFuzzer target (build/fuzz/fuzz_*) for FUZZ_SECONDS (default 5)
# from its committed seed corpus (fuzz/corpus/<target>), in a scratch copy so
# the repository's corpus is never modified (fuzz_inbound also gets the seeds
# of tests/data/hostile/seeds.py when it exists). One line per target:
# "ok fuzz_x (N runs)" or "FAIL fuzz_x: ..." with the crash report's tail.
set -u
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-5}
work=tests/.work/fuzz
rm -rf "$work"
mkdir -p "$work"
rc=0
for bin in build/fuzz/fuzz_*; do
	[ -x "$bin" ] || continue
	name=$(basename "$bin")
	mkdir -p "$work/$name"
	[ -d "fuzz/corpus/$name" ] && cp -r "fuzz/corpus/$name/." "$work/$name/"
	# fuzz_inbound also starts from the hostile-input corpus when its generator
	# exists (tests/data/hostile/seeds.py DIR writes its seeds into DIR).
	if [ "$name" = fuzz_inbound ] && [ -f tests/data/hostile/seeds.py ] &&
		! python3 tests/data/hostile/seeds.py "$work/$name/hostile" >"$work/hostile.log" 2>&1; then
		echo "note: tests/data/hostile/seeds.py failed, $name runs without its seeds (see $work/hostile.log)"
	fi
	if "$bin" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix="$work/$name-" "$work/$name" >"$work/$name.log" 2>&1; then
		runs=$(grep -o 'Done [0-9]* runs' "$work/$name.log" | tail -1 | grep -o '[0-9]*')
		echo "ok $name (${runs:-?} runs in ${secs}s)"
	else
		echo "FAIL $name: fuzzer found a problem (artifact in $work)"
		tail -30 "$work/$name.log" | sed 's/^/  /'
		rc=1
	fi
done
exit $rc
