#!/usr/bin/env bash
# Installs dependencies (if missing) and builds segue into build/ (binaries in build/bin).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$root/tools/scripts/install-deps.sh"
jobs="${SEGUE_BUILD_JOBS:-2}"
if [ ! -f "$root/build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
fi
cmake --build "$root/build" -j "$jobs" >&2
