#!/usr/bin/env bash
# Fuzz smoke run for CI: builds the "fuzz" preset (libFuzzer, ASan+UBSan) and runs every
# fuzz target for a short time on its corpus. Fails on the first crash, leak, timeout or
# out-of-memory. New inputs go to a scratch folder, never into corpus/.
#
# Then the release arena under the fuzzer: builds the arena targets of the "fuzz-fast"
# preset (inline fast path of q_arena_alloc / q_arena_reset, ASan+UBSan) and replays their
# corpora there (ctest --preset fuzz-fast, seconds), and, when AFL++ is installed, checks
# that the "afl-fast" arena targets build.
#
# Environment:
#   QORUS_FUZZ_SMOKE_SECONDS  time per target (default 30)
#   QORUS_FUZZ_SMOKE_TARGETS  space-separated subset (default: every target built)
#   QORUS_FUZZ_BUILD_DIR      build folder (default build/fuzz-fuzz)
#   QORUS_JOBS                build parallelism (default 2)
#   QORUS_WERROR              passed to the configure step like the other presets
#   QORUS_FUZZ_SMOKE_FAST=0   skip the fuzz-fast replay and the afl-fast build
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${QORUS_FUZZ_SMOKE_SECONDS:-30}
builddir=${QORUS_FUZZ_BUILD_DIR:-$root/build/fuzz-fuzz}

cmake --preset fuzz -B "$builddir" ${QORUS_WERROR:+-DQORUS_WERROR=$QORUS_WERROR} >/dev/null
cmake --build "$builddir" -j "${QORUS_JOBS:-2}" --target fuzz_targets

work=$(mktemp -d "${TMPDIR:-/tmp}/qorus-fuzz-smoke.XXXXXX")
trap 'rm -rf "$work"' EXIT
targets=${QORUS_FUZZ_SMOKE_TARGETS:-$(cat "$builddir/fuzz/targets.txt")}
failed=0
for t in $targets; do
  dict=""
  case "$t" in
    fuzz_model_llama2c) dict=fuzz/dict/llama2c.dict ;;
    fuzz_gguf) dict=fuzz/dict/gguf.dict ;;
    fuzz_tokenizer) dict=fuzz/dict/tokenizer.dict ;;
  esac
  mkdir -p "$work/$t" "corpus/$t"
  args=(-max_total_time="$seconds" -timeout=25 -rss_limit_mb=2560 -max_len=65536
        -print_final_stats=1 -artifact_prefix="$work/$t-")
  [ -n "$dict" ] && [ -f "$dict" ] && args+=(-dict="$dict")
  printf 'fuzz smoke: %-20s %ss ... ' "$t" "$seconds"
  if "$builddir/fuzz/$t" "${args[@]}" "$work/$t" "corpus/$t" >"$work/$t.log" 2>&1; then
    eps=$(grep -aoE 'stat::average_exec_per_sec: *[0-9]+' "$work/$t.log" | grep -oE '[0-9]+$' || echo '?')
    cov=$(grep -aoE 'cov: [0-9]+' "$work/$t.log" | tail -n 1 || true)
    echo "ok ($eps exec/s, $cov)"
  else
    echo "FAILED"
    grep -aE -B2 -A30 'ERROR|FUZZ_ASSERT|runtime error' "$work/$t.log" | head -n 60
    for a in "$work/$t"-*; do
      [ -f "$a" ] || continue
      mkdir -p build/fuzz-smoke-artifacts
      cp "$a" build/fuzz-smoke-artifacts/
      echo "fuzz smoke: input saved as build/fuzz-smoke-artifacts/$(basename "$a")"
    done
    failed=1
  fi
done
if [ "$failed" != 0 ]; then
  echo "fuzz smoke: FAILED (reproduce: $builddir/fuzz/<target> <saved input>)"
  exit 1
fi

if [ "${QORUS_FUZZ_SMOKE_FAST:-1}" != 0 ]; then
  # The arena targets over the release arena: every corpus input through the inline fast
  # path, checked against the slow path on a twin context (fuzz/arena_shadow.h).
  arena_targets="fuzz_arena_alloc fuzz_arena_reset"
  echo "fuzz smoke: fuzz-fast (release arena) replay of the arena corpora"
  cmake --preset fuzz-fast ${QORUS_WERROR:+-DQORUS_WERROR=$QORUS_WERROR} >/dev/null
  cmake --build --preset fuzz-fast -j "${QORUS_JOBS:-2}" --target $arena_targets
  ctest --preset fuzz-fast
  if command -v afl-clang-fast >/dev/null 2>&1; then
    echo "fuzz smoke: afl-fast (AFL++, release arena) builds the arena targets"
    cmake --preset afl-fast ${QORUS_WERROR:+-DQORUS_WERROR=$QORUS_WERROR} >/dev/null
    cmake --build --preset afl-fast -j "${QORUS_JOBS:-2}" --target $arena_targets
  else
    echo "fuzz smoke: afl-clang-fast not installed: afl-fast build not checked"
  fi
fi
echo "fuzz smoke: all targets ok"
