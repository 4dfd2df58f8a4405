#!/bin/sh
# Build the pinned libmicrohttpd (third_party/libmicrohttpd) into a local
# prefix, once: a static library and its header, linked into the binary so
# nothing is looked up at run time and no environment variable is needed.
#
#   scripts/libmicrohttpd.sh [PREFIX]     default: build/deps/libmicrohttpd
#
# The tarball's SHA-256 is checked against third_party/libmicrohttpd/SHA256SUMS
# before anything is unpacked. PREFIX/.stamp records the checksum and the
# configure line; when both match, the build is skipped (so `make clean`,
# which keeps build/deps, and every later build reuse it). Needs the
# packages of `scripts/deps.sh --build` (a C compiler, make, GnuTLS headers).
# docker/Dockerfile runs the same script, so the image carries the same library.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
src_dir="$here/third_party/libmicrohttpd"
version=$(sed -n 's/.*libmicrohttpd-\([0-9.]*\)\.tar\.gz$/\1/p' "$src_dir/SHA256SUMS")
tarball="$src_dir/libmicrohttpd-$version.tar.gz"
prefix=${1:-"$here/build/deps/libmicrohttpd"}
case $prefix in /*) ;; *) prefix="$(pwd)/$prefix" ;; esac

# What we need of the library: the HTTP/1.1 server with epoll, suspend and
# resume, and HTTPS through GnuTLS (inbound TLS). Everything the proxy does
# not call is left out: fewer parsers exposed to clients, a smaller binary.
CONFIGURE="--disable-shared --enable-static --with-pic --enable-https --with-gnutls --enable-epoll \
--disable-doc --disable-examples --disable-tools --disable-curl --disable-nls \
--disable-dauth --disable-bauth --disable-postprocessor --disable-cookie --disable-httpupgrade"

want_sum=$(awk '{print $1}' "$src_dir/SHA256SUMS")
stamp="$want_sum $CONFIGURE"
if [ -f "$prefix/.stamp" ] && [ "$(cat "$prefix/.stamp")" = "$stamp" ] &&
	[ -f "$prefix/lib/libmicrohttpd.a" ] && [ -f "$prefix/include/microhttpd.h" ]; then
	exit 0
fi

if [ ! -f "$tarball" ]; then
	echo "libmicrohttpd: $tarball is missing" >&2
	exit 1
fi
got_sum=$(sha256sum "$tarball" | awk '{print $1}')
if [ "$got_sum" != "$want_sum" ]; then
	echo "libmicrohttpd: checksum mismatch for $tarball" >&2
	echo "  expected $want_sum" >&2
	echo "  found    $got_sum" >&2
	exit 1
fi

echo "libmicrohttpd: building $version into $prefix (once; cached)"
work=$(mktemp -d "${TMPDIR:-/tmp}/s2s-mhd.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
tar -xzf "$tarball" -C "$work"
log="$work/build.log"
(
	cd "$work/libmicrohttpd-$version"
	# shellcheck disable=SC2086
	CFLAGS="-O2 -g -fstack-protector-strong -D_FORTIFY_SOURCE=2" ./configure --prefix="$prefix" $CONFIGURE
	make -j"$(nproc 2>/dev/null || echo 2)"
	rm -rf "$prefix"
	make install
) >"$log" 2>&1 || {
	tail -40 "$log" >&2
	echo "libmicrohttpd: build failed (log above)" >&2
	exit 1
}
rm -f "$prefix/lib/libmicrohttpd.la"
printf '%s\n' "$stamp" >"$prefix/.stamp"
echo "libmicrohttpd: $version ready"
