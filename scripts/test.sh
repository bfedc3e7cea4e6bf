#!/usr/bin/env bash
# Installs what is missing, then builds and runs every test twice: in the
# normal build and in an AddressSanitizer + UndefinedBehaviorSanitizer build
# (which also fails on any leak at a server's exit), then the fuzz targets
# for a bounded time in a clang build. Tests run one at a time:
# their timing ratios assume the machine is not busy with another test. The
# normal build also runs the benchmark's smoke mode, which installs nginx,
# wrk and gnuplot if they are missing.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --test || exit 1

passed=0
failed=0
run_suite() {
    local dir=$1
    shift
    echo "== $dir: build"
    if ! bash scripts/build.sh "$dir" "$@"; then
        echo "== $dir: build failed"
        failed=$((failed + 1))
        return
    fi
    echo "== $dir: tests"
    local log
    log=$(mktemp)
    (cd "$dir" && ctest --output-on-failure --timeout 600) | tee "$log"
    local summary
    summary=$(grep -E "tests passed, [0-9]+ tests failed out of [0-9]+" "$log" | tail -1)
    rm -f "$log"
    if [[ -z "$summary" ]]; then
        failed=$((failed + 1))
        return
    fi
    local total fails
    total=$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$summary")
    fails=$(sed -E 's/.* ([0-9]+) tests failed.*/\1/' <<<"$summary")
    passed=$((passed + total - fails))
    failed=$((failed + fails))
}

run_suite build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFANOUT_TESTS=ON
run_suite build-asan -DFANOUT_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DFANOUT_TESTS=ON
# libFuzzer targets (tests/fuzz), built with clang, each run for 20 s on a
# copy of its seed corpus.
run_suite build-fuzz -DFANOUT_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFANOUT_TESTS=OFF \
    -DCMAKE_C_COMPILER=clang
echo
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
