#!/usr/bin/env bash
# env: PORT, UPSTREAM, WORKERS
cd "$(dirname "$0")" || exit 3
exec /usr/bin/python3 -m hypercorn --bind "127.0.0.1:$PORT" \
  --workers "${WORKERS:-1}" --worker-class uvloop --backlog 4096 app:app
