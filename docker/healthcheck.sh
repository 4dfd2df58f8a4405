#!/bin/bash
# Container health check: GET /healthz on the admin listener, success on 200.
# Needs only bash (its /dev/tcp), so the runtime image carries no HTTP client.
# S2S_ADMIN_LISTEN is HOST:PORT (default 127.0.0.1:9090); 0.0.0.0 is probed as 127.0.0.1.
set -u
addr="${S2S_ADMIN_LISTEN:-127.0.0.1:9090}"
host="${addr%:*}"
port="${addr##*:}"
host="${host#[}"
host="${host%]}"
case "$host" in "" | 0.0.0.0) host=127.0.0.1 ;; ::) host=::1 ;; esac
exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n' "$host" >&3
read -r -t 5 status_line <&3 || exit 1
exec 3<&-
case "$status_line" in
"HTTP/1."?" 200 "*) exit 0 ;;
*) exit 1 ;;
esac
