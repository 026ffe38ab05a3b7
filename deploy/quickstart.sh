#!/usr/bin/env bash
# The README's main command. Installs what is missing and builds Rondo.
# The federated session itself (controller, combiner, clients) has not landed
# yet; this script says so and runs what exists.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/deploy/install-deps.sh"
"$root/deploy/build.sh" --target rondo
"$root/build/apps/rondo" --help
echo
echo "quickstart: the orchestrated federated session is not built yet;"
echo "quickstart: only the build and the tools above exist so far."
