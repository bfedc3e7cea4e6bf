#!/usr/bin/env bash
# The fanout binary's own mock upstream. env: PORT, REPO
set -euo pipefail
bin="${FANOUT_BIN:-$REPO/build/fanout}"
[ -x "$bin" ] || { echo "fanout not built: $bin is missing" >&2; exit 3; }
# S3 sends 10,000 concurrent calls: above the default connection limit.
# One process, as nginx-lua's upstream has one worker. Idle keep-alive
# connections are kept 120 s, as nginx's keepalive_timeout here: with the
# default 5 s, the idle tail of a slow stack's pool was closed under it and
# counted as that stack's reconnects.
exec "$bin" mock --workers 0 --port "$PORT" --max-connections 100000 --access-log off \
  --idle-timeout-ms 120000
