#!/usr/bin/env bash
# Runs one fuzz target for a bounded time on a copy of its seed corpus:
#   run.sh TARGET CORPUS_DIR SECONDS
# New inputs land in the temporary copy, never in the repository. A crash
# input is kept next to the build (artifact_prefix) for reproduction:
#   TARGET crash-<sha1>
set -euo pipefail
target=$1 corpus=$2 secs=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$corpus" "$work/corpus"
# A dictionary next to the corpus (tests/fuzz/<target>.dict) helps structured
# inputs such as JSON get past the syntax.
dict=$(dirname "$corpus")/../$(basename "$corpus").dict
opts=()
[[ -f "$dict" ]] && opts+=(-dict="$dict")
"$target" -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$(dirname "$target")/" "${opts[@]}" "$work/corpus"
