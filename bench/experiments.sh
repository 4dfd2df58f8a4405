#!/bin/sh
# bench/experiments.sh - A/B runs behind the recommendations in docs/performance.md:
# s2s-proxy vs the nginx reference at 32 connections, changing only the
# s2s-proxy process (environment or log level). Writes bench/experiments/*.md.
# Run after `make bench` installed nginx and wrk; takes ~5 minutes.
set -eu
cd "$(dirname "$0")/.."
mkdir -p bench/experiments
export BENCH_PARTS=table BENCH_TARGETS="nginx s2s-proxy" BENCH_CONNS="${BENCH_CONNS:-32}"
export BENCH_DURATION="${BENCH_DURATION:-5}" BENCH_REPEATS="${BENCH_REPEATS:-3}"
BENCH_OUT=bench/experiments/baseline.md /usr/bin/python3 bench/run.py
BENCH_S2S_ENV="GLIBC_TUNABLES=glibc.malloc.trim_threshold=16777216" \
	BENCH_OUT=bench/experiments/trim-threshold.md /usr/bin/python3 bench/run.py
BENCH_S2S_LOG_LEVEL=warn BENCH_OUT=bench/experiments/log-warn.md /usr/bin/python3 bench/run.py
