#!/usr/bin/env bash
# S7: the cost of the gateway. bench's S2 request (4 concurrent upstream
# calls, GET /fanout?n=4&ms=0) served two ways in the same run, against the
# same `fanout mock`: the hand-written C handler (build/bench/fanout-peer)
# and `fanout serve` with a gateway file that makes the same 4 calls. The
# target: the gateway costs at most 1.15x the handler's CPU per request.
#
#   bash bench/gateway.sh            # both figures
#   bash bench/gateway.sh cpu        # CPU time only (no valgrind)
#
# Figures: user-space instructions per request (callgrind, noise-free on a
# shared machine: the primary one), then CPU time per request (utime+stime
# from /proc around a wrk run of 64 connections, single process, access log
# off; best of 3 runs each, interleaved).
set -euo pipefail
cd "$(dirname "$0")/.."
PEER=${FANOUT_PEER:-build/bench/fanout-peer}
BIN=${FANOUT_BIN:-build/fanout}
UP=19321
PORT=19322
for tool in wrk curl; do
    command -v $tool >/dev/null || { echo "gateway.sh: needs $tool (apt-get install $tool)"; exit 1; }
done
[[ -x $PEER && -x $BIN ]] || { echo "gateway.sh: build first (bash scripts/build.sh)"; exit 1; }

tmp=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

# The same 4 calls as S2. s7.json places each answer under its backend's
# name (parsed by jansson and written again); s7-select.json selects each
# one's "value" (parsed, shaped, written again), which the handler's
# reading of "value" is closest to.
python3 - "$tmp" "http://127.0.0.1:$UP" <<'PY'
import json, sys
up = sys.argv[2]
for name, extra in (("s7", {}), ("s7-select", {"select": ["value"]})):
    json.dump({"endpoints": [{"path": "/fanout", "backends": [
        {"name": n, "url": f"{up}/delay?ms=0", **extra} for n in "abcd"]}]},
        open(f"{sys.argv[1]}/{name}.json", "w"))
PY

$BIN mock --workers 0 --port $UP --max-connections 100000 --access-log off >/dev/null 2>&1 &
pids+=($!)

# start_stack NAME [PREFIX...]: starts the handler, or the gateway on NAME.json, on $PORT
start_stack() {
    local name=$1
    shift
    if [[ $name == handler ]]; then
        "$@" "$PEER" --port $PORT --upstream http://127.0.0.1:$UP --workers 0 --access-log off \
            >"$tmp/$name.log" 2>&1 &
    else
        "$@" "$BIN" serve "$tmp/$name.json" --port $PORT --workers 0 --access-log off \
            --log-level warn >"$tmp/$name.log" 2>&1 &
    fi
    stack=$!
    pids+=($stack)
    for _ in $(seq 1 100); do
        curl -sf -m 5 "http://127.0.0.1:$PORT/fanout?n=4&ms=0" >/dev/null && return 0
        sleep 0.2
    done
    echo "gateway.sh: $name did not answer"; cat "$tmp/$name.log"; exit 1
}

stop_stack() {
    kill "$stack" 2>/dev/null || true
    wait "$stack" 2>/dev/null || true
    sleep 0.3
}

instructions() {
    local name=$1
    start_stack "$name" valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file="$tmp/cg.$name"
    wrk -t1 -c8 -d2s "http://127.0.0.1:$PORT/fanout?n=4&ms=0" >/dev/null
    callgrind_control -i on $stack >/dev/null 2>&1
    local n
    n=$(wrk -t1 -c8 -d4s "http://127.0.0.1:$PORT/fanout?n=4&ms=0" | awk '/requests in/{print $1}')
    callgrind_control -d $stack >/dev/null 2>&1
    sleep 1
    local f ir
    f=$(ls -t "$tmp"/cg.$name* | head -1)
    ir=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
    stop_stack
    echo $((ir / n))
}

# CPU µs per request of one wrk run.
cpu() {
    local name=$1
    start_stack "$name"
    wrk -t1 -c64 -d1s "http://127.0.0.1:$PORT/fanout?n=4&ms=0" >/dev/null
    local tck before after n
    tck=$(getconf CLK_TCK)
    before=$(awk '{print $14 + $15}' /proc/$stack/stat)
    n=$(wrk -t1 -c64 -d4s "http://127.0.0.1:$PORT/fanout?n=4&ms=0" | awk '/requests in/{print $1}')
    after=$(awk '{print $14 + $15}' /proc/$stack/stat)
    stop_stack
    awk -v b="$before" -v a="$after" -v n="$n" -v t="$tck" 'BEGIN { printf "%.1f", (a - b) / t * 1e6 / n }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b / a }'; }

if [[ ${1:-all} != cpu ]]; then
    command -v valgrind >/dev/null || { echo "gateway.sh: needs valgrind (apt-get install valgrind)"; exit 1; }
    h=$(instructions handler)
    g=$(instructions s7)
    s=$(instructions s7-select)
    echo "S7 instructions per request: handler $h, gateway $g (ratio $(ratio "$h" "$g"), target <= 1.15), with select $s (ratio $(ratio "$h" "$s"))"
fi
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (b < a) ? b : a }'; }
best_h=999999 best_g=999999 best_s=999999
for _ in 1 2 3; do
    best_h=$(min "$best_h" "$(cpu handler)")
    best_g=$(min "$best_g" "$(cpu s7)")
    best_s=$(min "$best_s" "$(cpu s7-select)")
done
echo "S7 CPU µs per request (best of 3): handler $best_h, gateway $best_g (ratio $(ratio "$best_h" "$best_g")), with select $best_s (ratio $(ratio "$best_h" "$best_s"))"
