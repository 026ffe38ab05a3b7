#!/usr/bin/env bash
# One ctest entry fuzz.<target>: replays tests/fuzz/regressions/<target>/
# (every input a fuzzer once crashed on), then fuzzes for a few seconds
# from tests/fuzz/corpus/<target>/. New inputs go to a temporary folder,
# never into the source tree; a crash's input lands in
# $RONDO_FUZZ_BUILD_DIR/artifacts/<target>/.
#
# The fuzzing run starts from a fixed seed (RONDO_FUZZ_SEED, default 1), so
# that a CI run repeats the same mutations; give another seed (or 0 for a
# random one) to explore further.
#
# Usage: run_fuzz_test.sh TARGET [SECONDS]
# Environment: RONDO_FUZZ_BUILD_DIR (the clang build; default the main
# build's RONDO_FUZZ_BUILD_DIR cache entry, else build-fuzz/
# next to tests/), RONDO_FUZZ_SECONDS (default 8).
# Exit codes: 0 passed, 77 skipped (fuzzer not built: reported, never a
# silent pass), other: a crash, leak, timeout or failed replay.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
target=$1
seconds=${2:-${RONDO_FUZZ_SECONDS:-8}}
build=${RONDO_FUZZ_BUILD_DIR:-${RONDO_FUZZ_DEFAULT_BUILD_DIR:-$here/../../build-fuzz}}
bin=$build/fuzz_$target

if [[ ! -x "$bin" ]]; then
  echo "SKIPPED: $bin is not built (tests/fuzz/build.sh builds it with" \
       "clang-14 and libFuzzer; deploy/test.sh runs it)"
  exit 77
fi

# Allocations past 2 GiB, inputs that run over 10 s, and leaks are
# findings too.
opts=(-rss_limit_mb=2048 -timeout=10 -print_final_stats=1)
seed=${RONDO_FUZZ_SEED:-1}
[[ -f "$here/dict/$target.dict" ]] && opts+=("-dict=$here/dict/$target.dict")
artifacts=$build/artifacts/$target
mkdir -p "$artifacts"

regressions=()
if [[ -d "$here/regressions/$target" ]]; then
  while IFS= read -r -d '' f; do regressions+=("$f"); done \
    < <(find "$here/regressions/$target" -type f -print0 | sort -z)
fi
if [[ ${#regressions[@]} -gt 0 ]]; then
  echo "== replaying ${#regressions[@]} regression input(s) of $target"
  if ! "$bin" "${opts[@]}" -artifact_prefix="$artifacts/" \
      "${regressions[@]}"; then
    echo "FAILED: fuzz_$target crashed on a regression input (above)"
    exit 1
  fi
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== fuzzing $target for $seconds s from corpus/$target"
if ! "$bin" "${opts[@]}" -artifact_prefix="$artifacts/" \
    -max_total_time="$seconds" -seed="$seed" "$work" "$here/corpus/$target"; then
  echo "FAILED: fuzz_$target found a crash; its input is in $artifacts/"
  exit 1
fi
