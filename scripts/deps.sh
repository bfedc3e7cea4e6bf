#!/usr/bin/env bash
# Installs the Debian 12 packages fanout needs, if any is missing.
#   scripts/deps.sh          build and run
#   scripts/deps.sh --test   also what the tests need
# As root it runs apt-get; otherwise it prints the exact command and fails.
set -euo pipefail

pkgs=(gcc libc6-dev make cmake pkg-config ca-certificates
      libuv1-dev node-llhttp libcurl4-openssl-dev libjansson-dev libssl-dev
      libhiredis-dev) # Redis: the shared tier (sessions, rate limits), with its libuv adapter
if [[ "${1:-}" == "--test" ]]; then
    pkgs+=(libcmocka-dev python3 wrk)
    pkgs+=(valgrind) # bench/instructions.py: callgrind's instructions per request (a guard)
    pkgs+=(nginx openssl) # test_tls.py: a real TLS and HTTP/2 upstream, its certificates
    pkgs+=(curl) # test_inbound_tls.py: curl as an https client of fanout
    pkgs+=(nghttp2-client) # h2load, the load of bench/tls_s2.py (S2 over TLS)
    pkgs+=(clang libclang-rt-14-dev) # the libFuzzer targets (tests/fuzz)
    pkgs+=(redis-server haproxy) # test_scale.py: a real Redis and a real load balancer
    pkgs+=(chromium) # test_observe.py: the waterfall page rendered in a real browser
fi

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
    echo "fanout needs these Debian packages: ${missing[*]}" >&2
    echo "run as root: apt-get update && $cmd" >&2
    exit 1
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
$cmd
