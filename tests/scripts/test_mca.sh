#!/usr/bin/env bash
# bench/mca.sh reports one row per AVX-512 decode loop (Q8_0, Q4_0 and Q8_SPLIT of the int8
# loop, Q6_K, Q4_K, Q5_K), each with positive cycle counts (llvm-mca's and p015/2): the
# script runs, its parsing still matches llvm-mca's report, and every loop carries its markers.
#
#   tests/scripts/test_mca.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1
build=$2
report=$("$src/bench/mca.sh" "$build")
echo "$report"
for row in "avx512_int8_decode Q8_0" "avx512_int8_decode Q4_0" "avx512_int8_decode Q8_SPLIT" \
           "avx512_q6k_decode Q6_K" "avx512_qk_decode Q4_K" "avx512_qk_decode Q5_K"; do
  loop=${row% *}
  type=${row#* }
  cycles=$(echo "$report" | awk -v l="$loop" -v t="$type" '$1 == l && $2 == t { print $5, $6 }')
  if [ -z "$cycles" ] || ! awk -v c="$cycles" 'BEGIN { split(c, v, " "); exit !(v[1] > 0 && v[2] > 0) }'; then
    echo "test_mca: no cycle count for $loop $type" >&2
    exit 1
  fi
done
rows=$(echo "$report" | grep -c '^avx512_')
[ "$rows" -eq 6 ] || { echo "test_mca: $rows loop rows, expected 6" >&2; exit 1; }
echo "test_mca: ok"
