#!/usr/bin/env bash
# Configures and builds the libFuzzer targets (tests/fuzz/CMakeLists.txt)
# with clang-14 into build-fuzz/ (override with FUZZ_BUILD_DIR); extra
# arguments go to the configure step, e.g. -DRONDO_FUZZ_TOKEN=ON.
# Idempotent. Without clang++-14 it says so and exits 0: the fuzz.*
# ctest entries then report skipped.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root}
export CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
if ! command -v clang++-14 >/dev/null; then
  echo "fuzz: clang++-14 not found (apt: clang-14 libfuzzer-14-dev" \
       "libclang-rt-14-dev); the fuzz.* tests will report skipped"
  exit 0
fi
if [[ ! -f "$build/build.ninja" || $# -gt 0 ]]; then
  CC=clang-14 CXX=clang++-14 cmake -S "$root/tests/fuzz" -B "$build" \
    -G Ninja "$@"
fi
cmake --build "$build"
