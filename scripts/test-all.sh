#!/usr/bin/env bash
# Builds and tests qorus in every build type, warnings fatal:
#   release  -O2, the inline arena fast path
#   debug    fill patterns and Valgrind annotations
#   asan     AddressSanitizer + UndefinedBehaviorSanitizer (clang), with the death tests
#   msan     MemorySanitizer with origins (clang)
#   tsan     ThreadSanitizer (clang): the thread pool and everything that runs on it
# then, if present, the libFuzzer smoke run of every fuzz target (scripts/fuzz-smoke.sh),
# which also replays the arena corpora over the release arena (preset fuzz-fast: the inline
# fast path under ASan+UBSan, checked against the slow path) and builds afl-fast if AFL++ is
# installed, and finally the ClusterFuzzLite build check of the OSS-Fuzz "undefined" flags
# (scripts/cflite-check.sh -t 0 undefined: .clusterfuzzlite/build.sh with the image's UBSan
# flags, every target replaying its seed corpus zip).
#
# Missing tools are installed first when run as root (apt-get), otherwise the script stops
# with one line giving the install command (scripts/lib/require.sh).
#
# Environment: QORUS_PRESETS="release asan" to run a subset; QORUS_SKIP_FUZZ_SMOKE=1 to skip
# the fuzz smoke run; QORUS_SKIP_CFLITE=1 to skip the ClusterFuzzLite check; QORUS_MODELS=/path/to/models for the real-model tests (default
# ../shared/models; those tests are skipped when no models are found).
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=${QORUS_JOBS:-2}

# ctest for one preset. The tsan tests run with address-space randomization off for them
# alone (setarch -R): clang 14's TSan runtime expects the mmap layout of vm.mmap_rnd_bits=28
# and aborts with "FATAL: ThreadSanitizer: unexpected memory mapping" on kernels that
# randomize with more bits (32 on recent distributions). Fixed in later LLVM releases; the
# other fix is `sysctl vm.mmap_rnd_bits=28` on the machine. Where personality(2) is refused
# (Docker's default seccomp profile: run the container with --security-opt seccomp=unconfined)
# the tests run as they are, which works wherever vm.mmap_rnd_bits is 28 or less.
run_ctest() {
  local preset=$1
  if [ "$preset" = tsan ] && setarch "$(uname -m)" -R true 2>/dev/null; then
    setarch "$(uname -m)" -R ctest --preset "$preset" -j "$jobs"
  else
    if [ "$preset" = tsan ]; then
      echo "note: setarch -R is not allowed here; TSan needs vm.mmap_rnd_bits <= 28" \
           "(now $(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo unknown))" >&2
    fi
    ctest --preset "$preset" -j "$jobs"
  fi
}
presets=${QORUS_PRESETS:-"release debug asan msan tsan"}

# Every tool the chosen presets need, before anything is built: installed with apt-get as
# root, otherwise one line with the install command and exit 1 (scripts/lib/require.sh).
. scripts/lib/require.sh
# pcre2: the BPE pre-tokenizers; node, npm: the original tokenizers' reference ids
# (tests/scripts/bpe_reference.sh).
need=(cmake cc make pcre2 node npm)
case " $presets " in *" asan "* | *" msan "* | *" tsan "*) need+=(clang llvm asan-rt) ;; esac
case " $presets " in *" release "* | *" debug "*) need+=(valgrind) ;; esac
if [ -x scripts/fuzz-smoke.sh ] && [ "${QORUS_SKIP_FUZZ_SMOKE:-0}" != 1 ]; then
  need+=(clang fuzzer-rt)
fi
if [ "${QORUS_SKIP_CFLITE:-0}" != 1 ]; then
  need+=(clang fuzzer-rt zip unzip)
fi
qorus_require "${need[@]}"
for preset in $presets; do
  echo "=== $preset ==="
  cmake --preset "$preset" -DQORUS_WERROR=ON
  cmake --build --preset "$preset" -j "$jobs"
  run_ctest "$preset"
done

if [ -x scripts/fuzz-smoke.sh ] && [ "${QORUS_SKIP_FUZZ_SMOKE:-0}" != 1 ]; then
  echo "=== fuzz smoke ==="
  scripts/fuzz-smoke.sh
fi
if [ "${QORUS_SKIP_CFLITE:-0}" != 1 ]; then
  echo "=== ClusterFuzzLite build check (undefined) ==="
  scripts/cflite-check.sh -t 0 undefined
fi
echo "all tests passed: $presets"
