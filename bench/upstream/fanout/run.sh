#!/usr/bin/env bash
# The fanout binary's own mock upstream. env: PORT, REPO
set -euo pipefail
bin="${FANOUT_BIN:-$REPO/build/fanout}"
[ -x "$bin" ] || { echo "fanout not built: $bin is missing" >&2; exit 3; }
# S3 sends 10,000 concurrent calls: above the default connection limit.
exec "$bin" mock --port "$PORT" --max-connections 100000 --access-log off
