#!/bin/sh
# Container entrypoint: run s2s-proxy with the mounted configuration, or,
# when none is mounted, with one written from the environment:
#   S2S_UPSTREAM       upstream base URL (required without a mounted file),
#                      e.g. https://contoso.crm4.dynamics.com
#   S2S_AUDIENCE       dataverse | bc | fo | securityservice | https://... (optional:
#                      inferred from the upstream host when absent)
#   S2S_LISTEN         proxy address (image default 0.0.0.0:8080)
#   S2S_ADMIN_LISTEN   admin address for /healthz, /readyz, /metrics (image default 127.0.0.1:9090)
#   S2S_LOG_FORMAT     json | text (default json)
#   AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET or
#   AZURE_FEDERATED_TOKEN_FILE: the credential, read by s2s-proxy itself
#   (never written to a file here).
# Extra arguments are passed on (for example -t to only check the configuration).
set -eu
conf="${S2S_CONFIG:-/etc/s2s-proxy/s2s-proxy.ini}"
bin="${S2S_PROXY_BIN:-/usr/local/bin/s2s-proxy}"
if [ ! -f "$conf" ]; then
	if [ -z "${S2S_UPSTREAM:-}" ]; then
		echo "s2s-proxy: no configuration at $conf and S2S_UPSTREAM is not set" >&2
		exit 2
	fi
	conf="${TMPDIR:-/tmp}/s2s-proxy-env.ini"
	umask 077
	{
		echo "[proxy]"
		echo "listen = ${S2S_LISTEN:-127.0.0.1:8080}"
		echo "admin_listen = ${S2S_ADMIN_LISTEN:-127.0.0.1:9090}"
		echo "log_format = ${S2S_LOG_FORMAT:-json}"
		echo "[route:default]"
		echo "upstream = $S2S_UPSTREAM"
		if [ -n "${S2S_AUDIENCE:-}" ]; then echo "audience = $S2S_AUDIENCE"; fi
	} >"$conf"
fi
exec "$bin" -c "$conf" "$@"
