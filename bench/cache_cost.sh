#!/bin/bash
# CPU time per request of the testapp's /fetch (one upstream GET to the
# mock) without single-flight or the cache, with single-flight, and with
# every call a cache hit: the app's and the mock's CPU time (utime + stime
# from /proc) over a wrk run of 64 connections, divided by the requests.
# Needs a build with -DFANOUT_TESTS=ON and wrk. Ports: MOCK_PORT, APP_PORT.
#     bash bench/cache_cost.sh [seconds]
set -eu
secs=${1:-4}
mp=${MOCK_PORT:-18931}
ap=${APP_PORT:-18932}
build/fanout mock --workers 0 --port "$mp" --host 127.0.0.1 2>/dev/null &
mock=$!
build/tests/testapp --workers 0 --port "$ap" --host 127.0.0.1 2>/dev/null &
app=$!
trap 'kill $app $mock 2>/dev/null; wait' EXIT
sleep 0.5
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
url="http%3A%2F%2F127.0.0.1%3A$mp%2Fb"
for q in "" "&coalesce=1" "&cache=1&ttl=600000"; do
    a0=$(cpu $app) m0=$(cpu $mock)
    n=$(wrk -t1 -c64 -d"${secs}s" "http://127.0.0.1:$ap/fetch?url=$url$q" |
        awk '/requests in/ {print $1}')
    a1=$(cpu $app) m1=$(cpu $mock)
    up=$(curl -s "http://127.0.0.1:$mp/stats?reset=1" |
         python3 -c 'import json, sys; print(json.load(sys.stdin)["requests"])')
    tick=$(getconf CLK_TCK)
    python3 -c "print('/fetch%-22s %7d requests %7d upstream  app %6.1f us/request  mock %5.1f us/request'
        % ('$q' or ' (plain)', $n, $up, ($a1 - $a0) * 1e6 / $tick / $n, ($m1 - $m0) * 1e6 / $tick / $n))"
done
