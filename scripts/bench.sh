#!/bin/sh
# make bench: s2s-proxy against nginx proxy_pass, HAProxy, Caddy and the bare upstream, on
# loopback, with wrk. Writes bench/results.md (and bench/results.json).
# Parameters: see bench/run.py (BENCH_DURATION, BENCH_REPEATS, BENCH_CONNS,
# BENCH_WORKERS, BENCH_SOAK_SECONDS (default 600), BENCH_BIG_MIB, BENCH_PARTS).
set -eu
cd "$(dirname "$0")/.."

# nginx (Debian's nginx-light is enough: return, proxy_pass, map), HAProxy and
# Caddy (the other peers in the table) and wrk, installed only when missing,
# from the machine's configured apt sources. The project's own deps come from
# `make deps`.
want="nginx-light haproxy caddy wrk curl python3 python3-cryptography"
missing=""
for p in $want; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		# any nginx flavour that provides /usr/sbin/nginx will do
		if [ "$p" = nginx-light ] && [ -x /usr/sbin/nginx ]; then
			continue
		fi
		missing="$missing $p"
	fi
done
if [ -n "$missing" ]; then
	echo "bench: installing:$missing"
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	# shellcheck disable=SC2086
	$SUDO apt-get install -y -qq --no-install-recommends $missing </dev/null
fi
# Debian starts the nginx, haproxy and caddy services on install; the benchmark
# runs its own instances on free loopback ports and does not need them.

[ -x build/s2s-proxy ] || {
	echo "bench: build/s2s-proxy missing (run make)" >&2
	exit 1
}
exec /usr/bin/python3 bench/run.py
