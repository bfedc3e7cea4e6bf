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
# CA_FILE (https variants of S2): Go's crypto/x509 reads SSL_CERT_FILE.
if [ -n "${CA_FILE:-}" ]; then export SSL_CERT_FILE="$CA_FILE"; fi
GOMAXPROCS="${WORKERS:-1}" exec "$bin"
