#!/usr/bin/env bash
# Benchmark suite entry point: installs what the suite needs from Debian's
# packages, then runs the harness with Debian's Python.
#   bash bench/run.sh [--quick | --smoke] [--only NAME,...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# The smoke run (fanout + nginx-lua only) needs only the nginx side.
base="nginx libnginx-mod-http-lua lua-cjson wrk gnuplot-nox"
full="golang-go nodejs python3-flask python3-asgiref python3-quart
      python3-hypercorn python3-uvloop python3-httpx python3-aiohttp gunicorn"
case " $* " in *" --smoke "*) wanted="$base" ;; *) wanted="$base $full" ;; esac

missing=""
for pkg in $wanted; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
# nodejs may come from another repository than Debian's: a node binary will do.
case "$missing" in *nodejs*) command -v node >/dev/null && missing="${missing/ nodejs/}" ;; esac

if [ -n "$missing" ]; then
  line="apt-get install -y --no-install-recommends$missing"
  if [ "$(id -u)" != 0 ]; then
    echo "bench: missing packages; as root run:" >&2
    echo "  apt-get update && $line" >&2
    exit 2
  fi
  echo "bench: installing:$missing" >&2
  # Keep the package scripts from starting a system-wide nginx on port 80.
  guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    guard=/usr/sbin/policy-rc.d
  fi
  unguard() { [ -z "$guard" ] || rm -f "$guard"; }
  trap unguard EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends $missing ||
    { apt-get update -qq && apt-get install -y --no-install-recommends $missing; }
  unguard
  trap - EXIT
fi

exec /usr/bin/python3 -B "$here/bench.py" "$@"
