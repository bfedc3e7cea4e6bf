#!/usr/bin/env bash
# env: PORT, UPSTREAM, WORKERS
here="$(cd "$(dirname "$0")" && pwd)"
exec /usr/bin/python3 -m gunicorn --chdir "$here" --bind "127.0.0.1:$PORT" \
  --workers "${WORKERS:-1}" --worker-class aiohttp.GunicornUVLoopWebWorker --backlog 4096 app:app
