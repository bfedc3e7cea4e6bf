#!/usr/bin/env bash
# Builds the peer once per bench run (into BENCH_CACHE), then runs it with
# GOMAXPROCS=WORKERS: Go serves from one process, WORKERS bounds its cores.
# env: PORT, UPSTREAM, WORKERS, BENCH_CACHE (scratch dir shared by the run)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
command -v go >/dev/null || { echo "go is not installed" >&2; exit 3; }
bin="$BENCH_CACHE/go-peer"
if [ ! -x "$bin" ]; then
  (cd "$here" && GOCACHE="$BENCH_CACHE/gocache" GOPATH="$BENCH_CACHE/gopath" \
     GOFLAGS= go build -o "$bin" .)
fi
GOMAXPROCS="${WORKERS:-1}" exec "$bin"
