#!/bin/sh
# Build the container image (docker/Dockerfile) without a Docker engine and
# without pulling from any registry: podman/buildah with chroot isolation, on
# base images made here by debootstrap from this machine's own Debian sources.
#
#   scripts/image.sh [--target STAGE] [--tag NAME]     (make image)
#   scripts/image.sh --tools-only      install podman, buildah, debootstrap if missing
#
# Default tag: s2s-proxy:latest. What is slow is done once and cached:
#   - podman, buildah and debootstrap are installed with apt-get when missing;
#   - the debootstrap root file systems are kept as tarballs in $S2S_IMAGE_CACHE
#     (default /var/cache/s2s-proxy), outside the repository;
#   - debian:12 and debian:12-slim are imported into podman's storage only when
#     missing there (a real debian:12 already present, e.g. pulled by the user,
#     is used as it is);
#   - podman keeps the Dockerfile's layers, so a later build redoes only the
#     steps whose input changed.
# The image is built in Docker format so its HEALTHCHECK survives (OCI has none).
# With Docker at hand, `docker build -f docker/Dockerfile .` builds the same file.
set -eu
# debootstrap, chroot isolation and podman's system storage need root.
[ "$(id -u)" -eq 0 ] || exec sudo -E "$0" "$@"

here=$(cd "$(dirname "$0")/.." && pwd)
tag=s2s-proxy:latest
target=""
tools_only=""
while [ $# -gt 0 ]; do
	case $1 in
	--tag) tag=$2 && shift 2 ;;
	--target) target=$2 && shift 2 ;;
	--tools-only) tools_only=1 && shift ;;
	*)
		echo "usage: $0 [--target STAGE] [--tag NAME] | --tools-only" >&2
		exit 2
		;;
	esac
done

cache=${S2S_IMAGE_CACHE:-/var/cache/s2s-proxy}

step() { echo "image: $*"; }

install_tools() {
	missing=""
	for t in podman buildah debootstrap; do
		command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
	done
	[ -z "$missing" ] && return 0
	step "installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing </dev/null >/dev/null
}

# The first Debian mirror of this machine's apt sources (deb822 or one-line
# format): no host name is written in the repository.
host_mirror() {
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk 'tolower($1)=="uris:" && $2 !~ /security/ { print $2; exit }' "$f"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk '$1=="deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($i !~ /security/) print $i; break } }' "$f"
	done
}

# dpkg and apt settings of Debian's slim images: later installs leave out
# documentation and translations too, and apt keeps no downloaded packages.
slim_settings() { # rootfs
	cat >"$1/etc/dpkg/dpkg.cfg.d/s2s-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
	cat >"$1/etc/apt/apt.conf.d/s2s-slim" <<'EOF'
APT::Install-Recommends "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Acquire::GzipIndexes "true";
EOF
	find "$1/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
	find "$1/usr/share/doc" -mindepth 1 -type d -empty -delete
	rm -rf "$1/usr/share/man/"* "$1/usr/share/groff/"* "$1/usr/share/info/"* "$1/usr/share/lintian/"*
	find "$1/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
}

# Both root file systems, as tarballs in the cache (made once).
make_rootfs() {
	[ -f "$cache/debian-12.tar" ] && [ -f "$cache/debian-12-slim.tar" ] && return 0
	mirror=$(host_mirror | head -n 1)
	if [ -z "$mirror" ]; then
		echo "image: no Debian mirror found in /etc/apt/sources.list*" >&2
		exit 1
	fi
	mkdir -p "$cache"
	work=$(mktemp -d "${TMPDIR:-/tmp}/s2s-rootfs.XXXXXX")
	trap 'rm -rf "$work"' EXIT INT TERM
	root="$work/rootfs"
	step "debootstrap --variant=minbase bookworm (once; cached in $cache)"
	debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
		tail -20 "$work/debootstrap.log" >&2
		exit 1
	}
	# The build uses this machine's apt sources (mirror, security suite), as a
	# container on it would; the package lists are not kept.
	rm -f "$root/etc/apt/sources.list"
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
		if [ -f "$f" ]; then cp "$f" "$root$f"; fi
	done
	rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"*.bin "$root/var/cache/apt/archives/"*.deb
	find "$root/var/log" -type f -delete
	# not this machine's name and resolver: the runtime provides its own
	rm -f "$root/etc/hostname"
	: >"$root/etc/resolv.conf"
	tar -C "$root" --numeric-owner -cf "$work/debian-12.tar" .
	slim_settings "$root"
	tar -C "$root" --numeric-owner -cf "$work/debian-12-slim.tar" .
	mv "$work/debian-12.tar" "$work/debian-12-slim.tar" "$cache/"
}

import_bases() {
	for name in debian-12 debian-12-slim; do
		ref=$(echo "$name" | sed 's/^debian-12/debian:12/')
		if ! podman image exists "$ref"; then
			step "importing $ref from $cache/$name.tar"
			podman import --quiet "$cache/$name.tar" "$ref" >/dev/null
		fi
	done
}

install_tools
[ -z "$tools_only" ] || exit 0
make_rootfs
import_bases
step "building $tag${target:+ (stage $target)}"
set -- --isolation=chroot --network=host --pull=never --format=docker --layers -f docker/Dockerfile -t "$tag"
[ -z "$target" ] || set -- "$@" --target "$target"
cd "$here"
log=$(mktemp "${TMPDIR:-/tmp}/s2s-image-build.XXXXXX")
podman build "$@" . >"$log" 2>&1 || {
	tail -40 "$log" >&2
	rm -f "$log"
	echo "image: build failed (the last lines of its output are above)" >&2
	exit 1
}
rm -f "$log"
step "$tag ready ($(podman image inspect --format '{{.Size}}' "$tag") bytes)"
