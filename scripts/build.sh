#!/usr/bin/env bash
# Configures and builds fanout into DIR (default build/); extra arguments go
# to cmake. Example: scripts/build.sh build-asan -DFANOUT_SANITIZE=ON
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
cmake -S . -B "$dir" "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
