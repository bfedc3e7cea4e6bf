#!/usr/bin/env bash
# S7: S2's request served by `fanout serve` from a gateway file instead of C.
# GET /fanout?n=4&ms=D makes the same 4 concurrent calls to UPSTREAM/delay?ms=D
# as the fanout peer and places each answer under its backend's name (the
# query's n is not read: the file has 4 backends).
# env: PORT, UPSTREAM, WORKERS, REPO, BENCH_TMP
set -euo pipefail
bin="${FANOUT_BIN:-$REPO/build/fanout}"
[ -x "$bin" ] || { echo "fanout not built: $bin is missing" >&2; exit 3; }
cat > "$BENCH_TMP/gateway.json" <<JSON
{"endpoints": [{"path": "/fanout", "backends": [
  {"name": "a", "url": "$UPSTREAM/delay?ms={query.ms}"},
  {"name": "b", "url": "$UPSTREAM/delay?ms={query.ms}"},
  {"name": "c", "url": "$UPSTREAM/delay?ms={query.ms}"},
  {"name": "d", "url": "$UPSTREAM/delay?ms={query.ms}"}]}]}
JSON
# The same process options as the fanout peer: no access log, as no stack writes one.
exec "$bin" serve "$BENCH_TMP/gateway.json" --port "$PORT" --workers "${WORKERS:-1}" \
  --access-log off --log-level warn
