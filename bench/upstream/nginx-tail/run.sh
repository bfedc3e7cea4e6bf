#!/usr/bin/env bash
# env: PORT, BENCH_TMP (private scratch dir), TAIL_P (share), TAIL_MS
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
command -v nginx >/dev/null || { echo "nginx is not installed" >&2; exit 3; }
sed -e "s|@PORT@|$PORT|g" -e "s|@DIR@|$BENCH_TMP|g" -e "s|@TAIL_P@|${TAIL_P:-0.01}|g" \
    -e "s|@TAIL_MS@|${TAIL_MS:-1000}|g" "$here/nginx.conf" > "$BENCH_TMP/nginx.conf"
exec nginx -e stderr -p "$BENCH_TMP" -c "$BENCH_TMP/nginx.conf" -g 'daemon off;'
