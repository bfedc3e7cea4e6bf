#!/usr/bin/env bash
# Repeatable measurements of fanout alone, for before/after figures of an
# optimization (the peers are not involved; use run.sh for those):
#
#   bash bench/profile.sh instructions   # user-space instructions per aggregated
#                                        # S2 request (callgrind), and the top functions
#   bash bench/profile.sh memory [N]     # S3 with N clients (default 1000): RSS per
#                                        # in-flight request, coroutine stacks by RSS, heap
#
# Both run build/bench/fanout-peer (FANOUT_PEER) against `fanout mock`
# (FANOUT_BIN) on 127.0.0.1, with the access log off, as the benchmark does;
# PEER_ARGS adds options to the peer, e.g. PEER_ARGS="--server-timing off
# --trace-context off --metrics off" against PEER_ARGS="--admin-port 0" for
# the cost of observability (docs/observability.md).
# Needs wrk (and valgrind for `instructions`).
set -euo pipefail
cd "$(dirname "$0")/.."
PEER=${FANOUT_PEER:-build/bench/fanout-peer}
BIN=${FANOUT_BIN:-build/fanout}
UP=19311
PORT=19312
for tool in wrk curl; do
    command -v $tool >/dev/null || { echo "profile.sh: needs $tool (apt-get install $tool)"; exit 1; }
done
[[ -x $PEER && -x $BIN ]] || { echo "profile.sh: build first (bash scripts/build.sh)"; exit 1; }

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

start_mock() {
    $BIN mock --workers 0 --port $UP --max-connections 100000 --access-log off >/dev/null 2>&1 &
    pids+=($!)
}

wait_peer() {
    for _ in $(seq 1 100); do
        curl -s -m 5 "http://127.0.0.1:$PORT/fanout?n=2&ms=0" >/dev/null && return 0
        sleep 0.2
    done
    echo "profile.sh: the peer did not answer"
    exit 1
}

instructions() {
    command -v valgrind >/dev/null || { echo "profile.sh: needs valgrind (apt-get install valgrind)"; exit 1; }
    local out
    out=$(mktemp -d)
    start_mock
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/cg.%p" \
        "$PEER" --port $PORT --upstream http://127.0.0.1:$UP --workers 0 --access-log off \
        ${PEER_ARGS:-} >"$out/peer.log" 2>&1 &
    local vg=$!
    pids+=($vg)
    wait_peer
    wrk -t1 -c8 -d2s "http://127.0.0.1:$PORT/fanout?n=4&ms=0" >/dev/null # warm up
    callgrind_control -i on $vg >/dev/null 2>&1
    local n
    n=$(wrk -t1 -c8 -d4s "http://127.0.0.1:$PORT/fanout?n=4&ms=0" | awk '/requests in/{print $1}')
    callgrind_control -d $vg >/dev/null 2>&1
    sleep 1
    local f ir
    f=$(ls -t "$out"/cg.* | head -1)
    ir=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
    echo "S2 (n=4, ms=0): $n requests, $((ir / n)) instructions per aggregated request"
    echo "top functions (exclusive):"
    callgrind_annotate "$f" 2>/dev/null | grep -E '^ *[0-9,]+ +\(' | sed -n 2,16p
    echo "profile kept in $f (callgrind_annotate --inclusive=yes $f)"
}

memory() {
    local clients=${1:-1000}
    start_mock
    "$PEER" --port $PORT --upstream http://127.0.0.1:$UP --workers 0 --access-log off \
        >/dev/null 2>&1 &
    local peer=$!
    pids+=($peer)
    wait_peer
    local idle
    idle=$(awk '/VmRSS/{print $2}' /proc/$peer/status)
    wrk -t2 -c"$clients" -d6s --timeout 3s "http://127.0.0.1:$PORT/fanout?n=2&ms=1000" \
        >/tmp/profile-wrk.$$ &
    local w=$!
    sleep 4 # every client has a request waiting on its two 1 s calls
    local peak
    peak=$(awk '/VmRSS/{print $2}' /proc/$peer/status)
    python3 - "$peer" <<'EOF'
import collections, re, sys
stacks, heap, cur = collections.Counter(), 0, None
for line in open(f"/proc/{sys.argv[1]}/smaps"):
    m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)", line)
    if m:
        cur = (int(m.group(2), 16) - int(m.group(1), 16), m.group(3), m.group(4))
    elif line.startswith("Rss:"):
        kib = int(line.split()[1])
        if cur[0] == 69632 and cur[1].startswith("rw") and not cur[2]:
            stacks[kib] += 1  # a coroutine: 64 KiB of stack and the page of its top (the guard page is apart)
        elif cur[2] == "[heap]":
            heap += kib
print("coroutine stacks by RSS (KiB: count):", dict(sorted(stacks.items())))
print(f"heap: {heap} KiB")
EOF
    wait $w
    awk -v i="$idle" -v p="$peak" -v c="$clients" 'BEGIN {
        printf "idle %d KiB, peak %d KiB: %.2f KiB per in-flight request (%d clients)\n",
               i, p, (p - i) / c, c }'
    grep -E "Socket errors|Non-2xx" /tmp/profile-wrk.$$ || echo "no errors"
    rm -f /tmp/profile-wrk.$$
}

case ${1:-} in
instructions) instructions ;;
memory) memory "${2:-}" ;;
*) sed -n 2,13p "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
