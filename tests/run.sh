#!/usr/bin/env bash
# Run the whole suite: unit tests and integration tests, against the release
# build and again against the ASan+UBSan build. Every test prints one line,
# "ok NAME" or "FAIL NAME: why"; this script counts them and ends with the
# summary line "N passed, N failed". Exit status 1 on any failure.
#
# TESTS selects phases (default: all): format unit unit-asan fuzz integration integration-asan
# Extra arguments are passed to the integration runner (test module names).
set -u
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
PHASES=${TESTS:-"format unit unit-asan fuzz integration integration-asan"}
OUT=tests/.work/results
mkdir -p "$OUT"
: >"$OUT/all.txt"
status=0

run_phase() { # name, command...
	local name=$1
	shift
	echo "== $name"
	"$@" 2>&1 | tee "$OUT/$name.txt" | grep -E '^(FAIL|ok|skip) |^  |^==|passed|failed|error' | grep -v '^ok ' || true
	local rc=${PIPESTATUS[0]}
	sed -e "s/^ok /ok $name:/" -e "s/^FAIL /FAIL $name:/" -e "s/^skip /skip $name:/" "$OUT/$name.txt" |
		grep -E '^(ok|FAIL|skip) ' >>"$OUT/all.txt"
	local p f
	p=$(grep -c '^ok ' "$OUT/$name.txt")
	f=$(grep -c '^FAIL ' "$OUT/$name.txt")
	echo "$name: $p passed, $f failed"
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "FAIL $name: runner exited with status $rc" | tee -a "$OUT/all.txt"
	fi
	[ "$rc" -eq 0 ] || status=1
}

unit_tests() { # dir
	local rc=0
	for t in "$1"/tests/test_*; do
		[ -x "$t" ] || continue
		"$t" || { rc=1; echo "FAIL $(basename "$t"): exited non-zero"; }
	done
	return $rc
}

# Integration modules run in parallel (each has its own simulators, ports and
# work directory); most of their time is spent waiting, not computing.
export TEST_JOBS=${TEST_JOBS:-3}
# quarantine_size_mb: ASan keeps freed blocks out of reuse up to this much
# (256 MB by default), so a 64 MiB stream whose libraries allocate and free
# buffers as it flows would show as RSS growth; 32 MB still catches a use after free of anything
# freed during the last 32 MB of allocations, and the memory tests measure
# the proxy rather than the quarantine.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:exitcode=99:quarantine_size_mb=32"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# The C sources against .clang-format: one counted check, so a formatting
# slip shows in the summary and the rest of the suite still runs.
format_check() {
	if make --no-print-directory -s format-check >"$OUT/format-check.log" 2>&1; then
		if grep -q skipped "$OUT/format-check.log"; then
			echo "skip clang-format: not installed"
		else
			echo "ok clang-format"
		fi
	else
		echo "FAIL clang-format: $(grep -m1 "format-check:" "$OUT/format-check.log")"
		return 1
	fi
}

for phase in $PHASES; do
	case $phase in
	format) run_phase format format_check ;;
	unit) run_phase unit unit_tests build ;;
	unit-asan) run_phase unit-asan unit_tests build/asan ;;
	fuzz) run_phase fuzz tests/fuzz_smoke.sh ;;
	integration) S2S_PROXY_BIN=build/s2s-proxy run_phase integration $PY tests/integration/run.py "$@" ;;
	integration-asan) S2S_PROXY_BIN=build/asan/s2s-proxy S2S_SANITIZED=1 run_phase integration-asan $PY tests/integration/run.py "$@" ;;
	*) echo "unknown phase $phase" && status=1 ;;
	esac
done

passed=$(grep -c '^ok ' "$OUT/all.txt")
failed=$(grep -c '^FAIL ' "$OUT/all.txt")
if [ "$failed" -gt 0 ]; then
	echo
	echo "Failures:"
	grep '^FAIL ' "$OUT/all.txt"
	status=1
fi
skipped=$(grep -c '^skip ' "$OUT/all.txt") # shown, never counted as passed
echo
if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
exit $status
