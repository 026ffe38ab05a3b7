#!/usr/bin/env bash
# Configures and builds Rondo in ./build (override with BUILD_DIR).
# Usage: deploy/build.sh [cmake --build args...], e.g. --target rondo
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache}
# Paths relative to the checkout, so that clones share cached objects.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root}
# Debug info holds the build folder; without this every clone misses.
export CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
cmake --build "$build" "$@"
