#!/usr/bin/env bash
# Builds and tests qorus in every build type, warnings fatal:
#   release  -O2, the inline arena fast path
#   debug    fill patterns and Valgrind annotations
#   asan     AddressSanitizer + UndefinedBehaviorSanitizer (clang), with the death tests
#   msan     MemorySanitizer with origins (clang)
# then, if present, the libFuzzer smoke run of every fuzz target (scripts/fuzz-smoke.sh).
#
# Missing tools are installed first when run as root (apt-get), otherwise the script stops
# with one line giving the install command (scripts/lib/require.sh).
#
# Environment: QORUS_PRESETS="release asan" to run a subset; QORUS_SKIP_FUZZ_SMOKE=1 to skip
# the fuzz smoke run; QORUS_MODELS=/path/to/models for the real-model tests (default
# ../shared/models; those tests are skipped when no models are found).
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=${QORUS_JOBS:-2}
presets=${QORUS_PRESETS:-"release debug asan msan"}

# Every tool the chosen presets need, before anything is built: installed with apt-get as
# root, otherwise one line with the install command and exit 1 (scripts/lib/require.sh).
. scripts/lib/require.sh
need=(cmake cc make)
case " $presets " in *" asan "* | *" msan "*) need+=(clang llvm asan-rt) ;; esac
case " $presets " in *" release "* | *" debug "*) need+=(valgrind) ;; esac
if [ -x scripts/fuzz-smoke.sh ] && [ "${QORUS_SKIP_FUZZ_SMOKE:-0}" != 1 ]; then
  need+=(clang fuzzer-rt)
fi
qorus_require "${need[@]}"
for preset in $presets; do
  echo "=== $preset ==="
  cmake --preset "$preset" -DQORUS_WERROR=ON
  cmake --build --preset "$preset" -j "$jobs"
  ctest --preset "$preset" -j "$jobs"
done

if [ -x scripts/fuzz-smoke.sh ] && [ "${QORUS_SKIP_FUZZ_SMOKE:-0}" != 1 ]; then
  echo "=== fuzz smoke ==="
  scripts/fuzz-smoke.sh
fi
echo "all tests passed: $presets"
