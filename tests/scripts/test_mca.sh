#!/usr/bin/env bash
# bench/mca.sh reports one row per decode loop: of the AVX-512 table (Q8_0, Q4_0 and Q8_SPLIT
# of the int8 loop, Q6_K, Q4_K, Q5_K) and of the AVX2 table's 8x1 tile (the six types), each
# with positive cycle counts (AVX-512: llvm-mca's and p015/2; AVX2: the two CPU models). So
# the script runs, its parsing still matches llvm-mca's report, and every loop still carries
# its markers.
#
#   tests/scripts/test_mca.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1
build=$2
report=$("$src/bench/mca.sh" "$build")
echo "$report"
# check LOOP TYPE COLUMN COLUMN: the row exists and both columns are > 0
check() {
  local v
  v=$(echo "$report" | awk -v l="$1" -v t="$2" -v a="$3" -v b="$4" '$1 == l && $2 == t { print $a, $b }')
  if [ -z "$v" ] || ! awk -v c="$v" 'BEGIN { split(c, x, " "); exit !(x[1] > 0 && x[2] > 0) }'; then
    echo "test_mca: no cycle counts for $1 $2" >&2
    exit 1
  fi
}
for t in Q8_0 Q4_0 Q8_SPLIT; do check avx512_int8_decode $t 5 6; done
check avx512_q6k_decode Q6_K 5 6
check avx512_qk_decode Q4_K 5 6
check avx512_qk_decode Q5_K 5 6
for t in Q8_0 Q4_0 Q8_SPLIT Q6_K Q4_K Q5_K; do check avx2_decode $t 5 7; done
rows=$(echo "$report" | grep -c -E '^avx(512|2)_')
[ "$rows" -eq 12 ] || { echo "test_mca: $rows loop rows, expected 12" >&2; exit 1; }
echo "test_mca: ok"
