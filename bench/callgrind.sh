#!/usr/bin/env bash
# Instructions per q_arena_alloc / q_arena_reset, counted by valgrind's callgrind (repeatable,
# unlike time). Each workload of arena_bench runs alone for N operations; the instruction
# count of its loop function, divided by N, is instructions per operation (loop included,
# the same loop for qorus and the bump baseline).
#
#   bench/callgrind.sh [BUILD_DIR]     (default build/release; needs valgrind)
set -euo pipefail
build=${1:-build/release}
bench="$build/bench/arena_bench"
n=1000000
[ -x "$bench" ] || { echo "callgrind.sh: $bench not built (cmake --build --preset release)" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind not installed" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# Inclusive instructions of function $2 in workload $1.
count() {
  valgrind --tool=callgrind --callgrind-out-file="$out/$1.cg" "$bench" --only "$1" --iterations $n >/dev/null 2>&1
  callgrind_annotate --inclusive=yes --threshold=100 "$out/$1.cg" 2>/dev/null |
    awk -v fn="$2" '{ for (i = 2; i <= NF; i++) if ($i ~ ("[:]" fn "([.][a-z]+[.][0-9]+)?$") || $i == fn) { if (!done) { gsub(",", "", $1); print $1; done = 1 } } }'
}
# Self instructions of function $2 in workload $1 (already run).
self_count() {
  callgrind_annotate --threshold=100 "$out/$1.cg" 2>/dev/null |
    awk -v fn="$2" '{ for (i = 2; i <= NF; i++) if ($i ~ ("[:]" fn "([.][a-z]+[.][0-9]+)?$") || $i == fn) { if (!done) { gsub(",", "", $1); print $1; done = 1 } } }'
}
per_op() { awk -v a="$1" -v n=$n 'BEGIN { printf "%.2f", a / n }'; }

qa=$(count qorus-aligned run_qorus_aligned)
ba=$(count bump-aligned run_bump_aligned)
qu=$(count qorus-unaligned run_qorus_unaligned)
bu=$(count bump-unaligned run_bump_unaligned)
count qorus-reset run_qorus_reset >/dev/null
rs=$(self_count qorus-reset q_arena_reset_extern)

printf '%-40s %14s\n' "callgrind, $n operations each" "instr/op"
printf '%-40s %14s\n' "bump pointer, aligned sizes" "$(per_op "$ba")"
printf '%-40s %14s   (%s)\n' "q_arena_alloc, aligned sizes" "$(per_op "$qa")" "$(awk -v a="$qa" -v b="$ba" -v n=$n 'BEGIN{printf "%.2fx the baseline, +%.2f instr/op", a/b, (a-b)/n}')"
printf '%-40s %14s\n' "bump pointer, unaligned sizes" "$(per_op "$bu")"
printf '%-40s %14s   (%s)\n' "q_arena_alloc, unaligned sizes" "$(per_op "$qu")" "$(awk -v a="$qu" -v b="$bu" -v n=$n 'BEGIN{printf "%.2fx the baseline, +%.2f instr/op", a/b, (a-b)/n}')"
printf '%-40s %14s   (body and ret %s, plus the call)\n' "q_arena_reset, call and return included" \
  "$(awk -v a="$rs" -v n=$n 'BEGIN { printf "%.2f", a / n + 1 }')" "$(per_op "$rs")"
