#!/bin/bash -eu
# ClusterFuzzLite / OSS-Fuzz build script: builds every fuzz target with $CC $CFLAGS and
# links $LIB_FUZZING_ENGINE (QORUS_FUZZ_ENGINE=external), then copies to $OUT each target,
# its seed corpus as <target>_seed_corpus.zip and its dictionary as <target>.dict.
#
# Runs outside Docker too, with the variables set by hand (docs/fuzzing.md), e.g.:
#   CC=clang CFLAGS="-fsanitize=address,fuzzer-no-link -g" LIB_FUZZING_ENGINE=-fsanitize=fuzzer \
#   SANITIZER=address OUT=/tmp/cflite-out SRC=$PWD/.. WORK=/tmp/cflite-work .clusterfuzzlite/build.sh
#
# $SANITIZER (address, memory, undefined, coverage; OSS-Fuzz sets it) selects the library's
# arena instrumentation: ASan/MSan builds poison the arena so the targets can check it.
# The arena targets are built a second time over the release arena (QORUS_ARENA_FAST: the
# inline fast path of q_arena_alloc / q_arena_reset, checked against the slow path on a
# twin context) as fuzz_arena_alloc_fast and fuzz_arena_reset_fast, with the same corpora,
# so every sanitizer's runs fuzz the optimized path too.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -f "$here/../CMakeLists.txt" ]; then
  src=$(cd "$here/.." && pwd)         # run from the checkout
else
  src=$SRC/qorus                      # $SRC/build.sh inside the image
fi
work=${WORK:-/tmp}/qorus-cflite-build
mkdir -p "$OUT"

# The sanitizer flags themselves come in $CFLAGS. QORUS_SANITIZER only tells the library to
# poison its arena (ASan, MSan). It is left empty for "undefined": it would add our own
# -fsanitize=undefined -fno-sanitize-recover=all, which makes OSS-Fuzz's deliberately
# recoverable unsigned-integer-overflow check fatal, and every target aborts on intended
# modular arithmetic (hashes, the sampler's PRNG, the arena's size - 1) in its first input
# (scripts/cflite-check.sh undefined found this).
case "${SANITIZER:-}" in
  address) qsan=address ;;
  memory) qsan=memory ;;
  *) qsan="" ;;
esac

# PCRE2 statically, so the fuzzers run on a runner image without it.
pcre2_static=""
for a in /usr/lib/x86_64-linux-gnu/libpcre2-8.a /usr/lib/libpcre2-8.a /usr/local/lib/libpcre2-8.a; do
  if [ -f "$a" ]; then pcre2_static="-DQORUS_PCRE2_LIB=$a"; break; fi
done

cmake -S "$src" -B "$work" $pcre2_static \
  -DCMAKE_C_COMPILER="$CC" -DCMAKE_C_FLAGS="$CFLAGS" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_FLAGS_RELEASE="-O1" \
  -DQORUS_SANITIZER="$qsan" -DQORUS_FUZZ_ENGINE=external \
  -DQORUS_LIB_FUZZING_ENGINE="$LIB_FUZZING_ENGINE" \
  -DQORUS_BUILD_TESTS=OFF -DQORUS_BUILD_BENCH=OFF -DQORUS_BUILD_DRIVER=OFF
cmake --build "$work" -j "$(nproc)" --target fuzz_targets

for t in $(cat "$work/fuzz/targets.txt"); do
  cp "$work/fuzz/$t" "$OUT/$t"
  if [ -d "$src/corpus/$t" ] && [ -n "$(ls -A "$src/corpus/$t")" ]; then
    rm -f "$OUT/${t}_seed_corpus.zip"
    (cd "$src/corpus/$t" && zip -q -r "$OUT/${t}_seed_corpus.zip" .)
  fi
  dict=""
  case "$t" in
    fuzz_model_llama2c) dict=llama2c ;;
    fuzz_gguf) dict=gguf ;;
    fuzz_tokenizer) dict=tokenizer ;;
    fuzz_bpe) dict=bpe ;;
  esac
  if [ -n "$dict" ]; then
    cp "$src/fuzz/dict/$dict.dict" "$OUT/$t.dict"
  fi
done
# The release-arena (fast path) builds of the arena targets.
cmake -S "$src" -B "$work-fast" $pcre2_static \
  -DCMAKE_C_COMPILER="$CC" -DCMAKE_C_FLAGS="$CFLAGS" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_FLAGS_RELEASE="-O1" \
  -DQORUS_SANITIZER="$qsan" -DQORUS_FUZZ_ENGINE=external -DQORUS_ARENA_FAST=ON \
  -DQORUS_LIB_FUZZING_ENGINE="$LIB_FUZZING_ENGINE" \
  -DQORUS_BUILD_TESTS=OFF -DQORUS_BUILD_BENCH=OFF -DQORUS_BUILD_DRIVER=OFF
cmake --build "$work-fast" -j "$(nproc)" --target fuzz_arena_alloc fuzz_arena_reset
fast=0
for t in fuzz_arena_alloc fuzz_arena_reset; do
  cp "$work-fast/fuzz/$t" "$OUT/${t}_fast"
  if [ -f "$OUT/${t}_seed_corpus.zip" ]; then
    cp "$OUT/${t}_seed_corpus.zip" "$OUT/${t}_fast_seed_corpus.zip"
  fi
  fast=$((fast + 1))
done
echo "qorus: built $(wc -l <"$work/fuzz/targets.txt") fuzz targets and $fast fast-arena targets into $OUT"
