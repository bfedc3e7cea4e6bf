#!/usr/bin/env bash
# env: PORT, BENCH_TMP (private scratch dir)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
command -v nginx >/dev/null || { echo "nginx is not installed" >&2; exit 3; }
sed -e "s|@PORT@|$PORT|g" -e "s|@DIR@|$BENCH_TMP|g" "$here/nginx.conf" > "$BENCH_TMP/nginx.conf"
exec nginx -e stderr -p "$BENCH_TMP" -c "$BENCH_TMP/nginx.conf" -g 'daemon off;'
