#!/usr/bin/env bash
# The fanout binary's own mock upstream. env: PORT, REPO
set -euo pipefail
bin="${FANOUT_BIN:-$REPO/build/fanout}"
[ -x "$bin" ] || { echo "fanout not built: $bin is missing" >&2; exit 3; }
# S3 sends 10,000 concurrent calls: above the default connection limit.
# One process, as nginx-lua's upstream has one worker.
exec "$bin" mock --workers 0 --port "$PORT" --max-connections 100000 --access-log off
