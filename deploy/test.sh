#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, and runs every
# test through ctest (one entry per doctest case). Exits non-zero on any
# failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
"$root/deploy/install-deps.sh"
BUILD_DIR="$build" "$root/deploy/build.sh"
cd "$build"
ctest --output-on-failure -j "$(nproc)" --timeout 900
