#!/usr/bin/env bash
# env: PORT, UPSTREAM, WORKERS
command -v node >/dev/null || { echo "node is not installed" >&2; exit 3; }
exec node "$(dirname "$0")/server.js"
