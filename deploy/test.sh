#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, and runs every
# test through ctest (one entry per doctest case). Exits non-zero on any
# failure. Also builds the libFuzzer targets (tests/fuzz, clang-14) into
# build-fuzz/ (FUZZ_BUILD_DIR), which ctest's fuzz.* entries run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
fuzz=${FUZZ_BUILD_DIR:-$root/build-fuzz}
"$root/deploy/install-deps.sh"
BUILD_DIR="$build" "$root/deploy/build.sh"
FUZZ_BUILD_DIR="$fuzz" "$root/tests/fuzz/build.sh"
export RONDO_FUZZ_BUILD_DIR="$fuzz"
cd "$build"
ctest --output-on-failure -j "$(nproc)" --timeout 900
