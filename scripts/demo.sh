#!/usr/bin/env bash
# Installs what is missing, builds, and runs `fanout demo` (the seed's example)
# on port 8080. Extra arguments go to `fanout demo` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFANOUT_TESTS=OFF
echo
echo "fanout demo: try   curl http://127.0.0.1:8080/   and   curl 'http://127.0.0.1:8080/?format=json'"
echo
exec build/fanout demo "$@"
