#!/bin/sh
# Install the Debian packages s2s-proxy needs to build, test and run its demo.
# Idempotent: packages already present are not touched, and apt-get runs only
# when something is missing. Needs root (or sudo) when it has work to do.
set -eu

# Build and runtime libraries (keep in step with docker/Dockerfile). libmicrohttpd
# is not one: scripts/libmicrohttpd.sh builds the pinned release in third_party/.
BUILD_PKGS="build-essential pkg-config libgnutls28-dev libcurl4-openssl-dev libssl-dev libcjson-dev libinih-dev libxml2-dev libcrypt-dev"
# Tests: the simulated Microsoft cloud (Debian's python3 with cryptography; requests
# as one of the real clients in test_clients.py),
# the test CA (openssl), curl as a client, sanitizers and fuzzers (clang),
# libfaketime to step the wall clock under a running proxy (test_clock.py).
TEST_PKGS="python3 python3-cryptography python3-requests openssl curl clang libclang-rt-14-dev libfaketime"

want="$BUILD_PKGS"
case "${1:-}" in
--test | "") want="$want $TEST_PKGS" ;;
--build) ;;
*)
	echo "usage: $0 [--build|--test]" >&2
	exit 2
	;;
esac

missing=""
for p in $want; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

echo "deps: installing:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing </dev/null
