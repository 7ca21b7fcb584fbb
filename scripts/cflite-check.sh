#!/bin/bash
# Builds the ClusterFuzzLite / OSS-Fuzz fuzzers here, without Docker, the way the OSS-Fuzz
# base-builder image would (its compiler flags per sanitizer, $LIB_FUZZING_ENGINE, $OUT),
# by running .clusterfuzzlite/build.sh, then checks the result the way ClusterFuzzLite's
# build check does before it fuzzes: every target in $OUT must run its whole seed corpus
# and then fuzz for a few seconds without a report.
#
#   scripts/cflite-check.sh [-t SECONDS] [SANITIZER...]
#
#   SANITIZER  address, undefined, memory or coverage (default: all four)
#   -t SECONDS fuzzing time per target after the corpus replay (default 10; 0: replay only;
#              the coverage build is replayed only)
#
# Output under ${TMPDIR:-/tmp}/qorus-cflite/<sanitizer>/: out/ (what OSS-Fuzz would upload:
# binaries, <target>_seed_corpus.zip, <target>.dict), work/ (the CMake build trees) and
# one log per target. Exit status 1 if a build failed or any target reported anything.
#
# The flags are those of the OSS-Fuzz base images (infra/base-images/base-builder), which
# are what ClusterFuzzLite's GitHub actions build with. The image's clang is newer than
# Debian's; this checks our build script, flags and targets, not that compiler.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=10
sanitizers=()
while [ $# -gt 0 ]; do
  case "$1" in
    -t) seconds=$2; shift 2 ;;
    -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    address | undefined | memory | coverage) sanitizers+=("$1"); shift ;;
    *) echo "cflite-check: unknown argument '$1' (see --help)" >&2; exit 1 ;;
  esac
done
[ ${#sanitizers[@]} -gt 0 ] || sanitizers=(address undefined memory coverage)
for tool in clang zip unzip cmake; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "cflite-check: '$tool' not found (apt-get install -y clang zip unzip cmake)" >&2
    exit 1
  fi
done

base_cflags="-O1 -fno-omit-frame-pointer -gline-tables-only -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION"
ubsan_checks="array-bounds,bool,builtin,enum,float-divide-by-zero,function,integer-divide-by-zero,null,object-size,return,returns-nonnull-attribute,shift,signed-integer-overflow,unsigned-integer-overflow,unreachable,vla-bound,vptr"
ubsan_fatal="array-bounds,bool,builtin,enum,float-divide-by-zero,function,integer-divide-by-zero,null,object-size,return,returns-nonnull-attribute,shift,signed-integer-overflow,unreachable,vla-bound,vptr"
# ClusterFuzz's runtime options: stop at the first report; unsigned wrap-around is
# reported by the undefined build only where a project opts in, which qorus does not.
export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:symbolize=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:silence_unsigned_overflow=1"
export MSAN_OPTIONS="halt_on_error=1:symbolize=1"

failed=0
root=${TMPDIR:-/tmp}/qorus-cflite
for san in "${sanitizers[@]}"; do
  case "$san" in
    address) flags="-fsanitize=address -fsanitize-address-use-after-scope" ;;
    undefined) flags="-fsanitize=$ubsan_checks -fno-sanitize-recover=$ubsan_fatal" ;;
    memory) flags="-fsanitize=memory -fsanitize-memory-track-origins" ;;
    coverage) flags="-fprofile-instr-generate -fcoverage-mapping -pthread -Wl,--no-as-needed -Wl,-ldl -Wl,-lm -Wno-unused-command-line-argument" ;;
  esac
  dir=$root/$san
  rm -rf "$dir"
  mkdir -p "$dir/out" "$dir/work" "$dir/logs"
  echo "== $san: building with .clusterfuzzlite/build.sh"
  if ! CC=clang CXX=clang++ CFLAGS="$base_cflags $flags -fsanitize=fuzzer-no-link" \
      LIB_FUZZING_ENGINE=-fsanitize=fuzzer SANITIZER=$san \
      OUT=$dir/out SRC=$(dirname "$here") WORK=$dir/work \
      bash "$here/.clusterfuzzlite/build.sh" >"$dir/logs/build.log" 2>&1; then
    echo "   build FAILED (last lines of $dir/logs/build.log):"
    tail -15 "$dir/logs/build.log" | sed 's/^/   /'
    failed=1
    continue
  fi
  tail -1 "$dir/logs/build.log" | sed 's/^/   /'
  for bin in "$dir"/out/fuzz_*; do
    case "$bin" in *.zip | *.dict) continue ;; esac
    t=$(basename "$bin")
    seeds=$dir/seeds/$t
    mkdir -p "$seeds"
    [ -f "$dir/out/${t}_seed_corpus.zip" ] && unzip -q -o "$dir/out/${t}_seed_corpus.zip" -d "$seeds"
    n=$(find "$seeds" -type f | wc -l)
    dict=()
    [ -f "$dir/out/$t.dict" ] && dict=(-dict="$dir/out/$t.dict")
    log=$dir/logs/$t.log
    # Replay: -runs=0 executes the seed corpus and stops. Crash files go to the logs, never
    # to the working directory.
    if [ "$san" = coverage ]; then
      LLVM_PROFILE_FILE=$dir/logs/$t.profraw "$bin" -runs=0 "$seeds" >"$log" 2>&1
    else
      "$bin" -runs=0 -artifact_prefix="$dir/logs/$t-" "${dict[@]}" "$seeds" >"$log" 2>&1
    fi
    rc=$?
    result="replayed $n"
    if [ $rc -eq 0 ] && [ "$seconds" != 0 ] && [ "$san" != coverage ]; then
      mkdir -p "$dir/new/$t"
      "$bin" -max_total_time="$seconds" -artifact_prefix="$dir/logs/$t-" "${dict[@]}" \
        "$dir/new/$t" "$seeds" >>"$log" 2>&1
      rc=$?
      result="$result, fuzzed ${seconds}s"
    fi
    if [ $rc -ne 0 ]; then
      failed=1
      echo "   $t: FAILED ($result; exit $rc), see $log:"
      grep -m3 -E 'ERROR|runtime error|WARNING: MemorySanitizer|deadly signal' "$log" | sed 's/^/     /'
    else
      echo "   $t: ok ($result)"
    fi
  done
done
exit $failed
