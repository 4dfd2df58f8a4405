#!/bin/sh
# make demo: run build/s2s-proxy against the simulated Microsoft cloud in tests/sim.
set -eu
cd "$(dirname "$0")/.."
exec /usr/bin/python3 tests/lib/demo.py "$@"
