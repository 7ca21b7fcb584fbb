#!/usr/bin/env bash
# Source-based coverage of the corpus replay: builds the "coverage" preset (clang
# -fprofile-instr-generate -fcoverage-mapping, replay mains), replays every corpus/<target>/
# through its target, and writes
#   OUT/html/index.html   llvm-cov HTML report of src/ (line, region and branch coverage)
#   OUT/summary.txt       per-file summary (llvm-cov report), src/core and src/model totals
#
#   scripts/coverage.sh [OUT]        (default OUT: build/fuzz-coverage/report)
#
# Environment: QORUS_FUZZ_BUILD_DIR (default build/fuzz-coverage), QORUS_JOBS (default 2),
# LLVM_COV / LLVM_PROFDATA (default llvm-cov-14 / llvm-profdata-14, else unversioned).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
builddir=${QORUS_FUZZ_BUILD_DIR:-$root/build/fuzz-coverage}
out=${1:-$builddir/report}
pick() { for c in "$@"; do command -v "$c" >/dev/null 2>&1 && { echo "$c"; return; }; done; echo "$1"; }
llvm_cov=${LLVM_COV:-$(pick llvm-cov-14 llvm-cov)}
llvm_profdata=${LLVM_PROFDATA:-$(pick llvm-profdata-14 llvm-profdata)}

cmake --preset coverage -B "$builddir" >/dev/null
cmake --build "$builddir" -j "${QORUS_JOBS:-2}" --target fuzz_targets

rm -rf "$out"; mkdir -p "$out/profraw"
objects=()
for t in $(cat "$builddir/fuzz/targets.txt"); do
  [ -d "corpus/$t" ] || { echo "coverage: no corpus/$t, skipped"; continue; }
  echo "coverage: replaying corpus/$t ($(find "corpus/$t" -type f | wc -l) files)"
  LLVM_PROFILE_FILE="$out/profraw/$t-%p.profraw" "$builddir/fuzz/$t" -q "corpus/$t"
  objects+=("$builddir/fuzz/$t")
done
[ ${#objects[@]} -gt 0 ] || { echo "coverage: nothing replayed"; exit 1; }
"$llvm_profdata" merge -sparse "$out"/profraw/*.profraw -o "$out/merged.profdata"
obj_args=("${objects[0]}")
for o in "${objects[@]:1}"; do obj_args+=(-object "$o"); done

"$llvm_cov" show -format=html -output-dir="$out/html" -show-branches=count \
  -instr-profile="$out/merged.profdata" "${obj_args[@]}" "$root/src" >/dev/null
"$llvm_cov" report -instr-profile="$out/merged.profdata" "${obj_args[@]}" "$root/src" \
  >"$out/summary.txt"
{
  echo
  for area in core model infer; do
    [ -d "src/$area" ] || continue
    echo "== src/$area"
    "$llvm_cov" report -instr-profile="$out/merged.profdata" "${obj_args[@]}" "$root/src/$area" |
      tail -n 1 | sed "s|^TOTAL|src/$area|"
  done
} >>"$out/summary.txt"
cat "$out/summary.txt"
echo "coverage: HTML report $out/html/index.html"
