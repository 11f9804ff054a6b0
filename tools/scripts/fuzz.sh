#!/usr/bin/env bash
# Fuzzes segue's parsers and message handlers (tests/fuzz) with clang's libFuzzer, each for a
# bounded time, starting from the committed corpus:
#   tools/scripts/fuzz.sh [SECONDS_EACH] [TARGET...]     (default 20 s; every target)
# Builds into build-fuzz/ (clang, AddressSanitizer, UndefinedBehaviorSanitizer). New inputs go
# to a scratch folder, not into the repository; a crash stops with the input written to
# build-fuzz/TARGET-crash-*: copy it into tests/fuzz/corpus/TARGET/ so that it replays in ctest
# (Fuzz.TARGET.CorpusReplays) once fixed. Exit status: non-zero if a target crashed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
seconds="${1:-20}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(manifest_fuzz pools_fuzz keys_fuzz jpeg_fuzz envelope_fuzz assignment_fuzz records_fuzz http_fuzz)
"$root/tools/scripts/install-deps.sh" --test
build="$root/build-fuzz"
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSEGUE_FUZZ=ON \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" \
    -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link,address,undefined" >&2
else
  cmake -S "$root" -B "$build" >&2  # targets added since it was configured
fi
cmake --build "$build" -j "${SEGUE_BUILD_JOBS:-2}" --target "${targets[@]}" >&2
for t in "${targets[@]}"; do
  scratch="$(mktemp -d)"
  echo "fuzz: $t for ${seconds}s" >&2
  # detect_leaks=0: the targets keep one core for the process on purpose.
  set +e
  ASAN_OPTIONS=detect_leaks=0 "$build/bin/$t" -max_total_time="$seconds" -max_len=65536 \
    -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$build/$t-" \
    "$scratch" "$root/tests/fuzz/corpus/$t" 2>&1 | tail -n 12 >&2
  status=${PIPESTATUS[0]}
  set -e
  rm -rf "$scratch"
  if [ "$status" -ne 0 ]; then
    echo "fuzz: $t crashed; the input is in $build/$t-crash-* (or -timeout-, -oom-)" >&2
    exit 1
  fi
done
