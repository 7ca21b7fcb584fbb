#!/usr/bin/env bash
# Cycles per weight of the decode loops of the AVX-512 and AVX2 kernel tables, from llvm-mca's
# model of a CPU: repeatable, where timing on a shared machine is not, and the one count there
# is for the AVX-512 loops (valgrind's CPU has no AVX-512, so bench/callgrind.sh and
# `kernel_bench --count` cannot run them).
#
# Each kernel file is compiled to assembly as the release build compiles it (same compiler,
# -O3, the file's instruction-set flags) plus -DQ_MCA_MARKERS, which puts llvm-mca region
# markers around each decode loop body (Q_MCA_BEGIN / Q_MCA_END in
# src/kernels/kernels_internal.h). For each region llvm-mca reports the steady-state cycles of
# one iteration ("Block RThroughput") and its micro-ops. An iteration covers 8 weight rows x 64
# weights (AVX-512 int8: two blocks) or 8 rows x 256 (AVX-512 Q4_K, Q5_K, Q6_K: a super-block;
# AVX2: a chunk of 8 blocks).
#
# AVX-512 loops: also "p015/2", the micro-ops llvm-mca puts on ports 0, 1 and 5 over the two
# ports that execute 512-bit vector uops on these CPUs (port 1's vector unit is fused into
# port 0 while they run; llvm-mca's model lets them use all three): the tighter bound for
# loops made of 512-bit operations. AVX2 loops: modeled on MCPU and on znver3 (AMD Zen 3, the
# AVX2-only EPYC kind issue 7 quoted its peers on).
#
# A model, not a measurement: read the ratios between loops and between revisions.
#
#   bench/mca.sh [BUILD_DIR] [MCPU]    (defaults: build/release icelake-server)
set -euo pipefail
build=${1:-build/release}
mcpu=${2:-icelake-server}
root=$(cd "$(dirname "$0")/.." && pwd)
cc=${CC:-cc}
mca=$(command -v llvm-mca || command -v llvm-mca-14 || true)
[ -n "$mca" ] || { echo "mca.sh: llvm-mca not installed (Debian: llvm)" >&2; exit 1; }
[ -f "$build/include/qorus_config.h" ] || { echo "mca.sh: $build is not a configured build (cmake --preset release)" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# compile FILE OUT FLAGS...: the kernel file to assembly with its markers
compile() {
  local file=$1 asm=$2
  shift 2
  "$cc" -std=c11 -O3 -DNDEBUG -DQORUS_HAVE_AVX2=1 -DQORUS_HAVE_AVX512=1 -DQ_MCA_MARKERS \
    -I"$root/include" -I"$build/include" -I"$root/src" "$@" -S "$root/src/kernels/$file" -o "$asm"
}
compile matmul_avx512.c "$out/avx512.s" -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512vnni
compile matmul_avx2.c "$out/avx2.s" -mavx2 -mfma -mf16c
"$mca" -mcpu="$mcpu" -iterations=200 -all-stats=false -instruction-info=false "$out/avx512.s" >"$out/avx512.txt" 2>&1
"$mca" -mcpu="$mcpu" -iterations=200 -all-stats=false -instruction-info=false "$out/avx2.s" >"$out/avx2-1.txt" 2>&1
"$mca" -mcpu=znver3 -iterations=200 -all-stats=false -instruction-info=false "$out/avx2.s" >"$out/avx2-2.txt" 2>&1

# Region names end in the ggml type id (include/qorus_model.h).
types='function tname(id) {
    if (id == 2) return "Q4_0"; if (id == 8) return "Q8_0"; if (id == 12) return "Q4_K"
    if (id == 13) return "Q5_K"; if (id == 14) return "Q6_K"; return "Q8_SPLIT"
  }
  # loopname: the name without its type suffix; sets the global id to that suffix
  function loopname(name) { n = split(name, part, "_"); id = part[n]; return substr(name, 1, length(name) - length(id) - 1) }'

echo "AVX-512 decode loops, llvm-mca -mcpu=$mcpu"
awk "$types"'
  BEGIN { printf "%-20s %-9s %8s %8s %8s %8s %10s %11s\n", "loop", "type", "weights", "uops", "cycles", "p015/2", "cycles/kW", "p015/2/kW" }
  /Code Region - / { name = $NF; sub(/^.*Code Region - /, "", name) }
  /^Iterations:/ { it = $2 }
  /^Total uOps:/ { uops = $3 }
  /^Block RThroughput:/ { rt = $3 }
  /^\[[0-9]+\] +- +[A-Za-z]+Port[015]$/ { col = substr($1, 2, length($1) - 2) + 1; port[substr($3, length($3))] = col }
  /^Resource pressure per iteration:/ { want = 2; next }
  want > 0 && --want == 0 {
    p015 = ($(port["0"]) + $(port["1"]) + $(port["5"])) / 2
    loop = loopname(name)
    w = (id == 12 || id == 13 || id == 14) ? 2048 : 512
    printf "%-20s %-9s %8d %8.1f %8.1f %8.1f %10.1f %11.1f\n", loop, tname(id), w, uops / it, rt, p015, 1000 * rt / w, 1000 * p015 / w
  }' "$out/avx512.txt"

echo
echo "AVX2 decode loops (8x1 tile, one chunk), llvm-mca -mcpu=$mcpu and -mcpu=znver3"
# one line per region of each model: name uops cycles
for f in avx2-1 avx2-2; do
  awk '/Code Region - / { name = $NF; sub(/^.*Code Region - /, "", name) }
       /^Iterations:/ { it = $2 }
       /^Total uOps:/ { uops = $3 }
       /^Block RThroughput:/ { print name, uops / it, $3 }' "$out/$f.txt" >"$out/$f.rows"
done
paste -d' ' "$out/avx2-1.rows" "$out/avx2-2.rows" | awk "$types"'
  BEGIN { printf "%-20s %-9s %8s %8s %8s %10s %12s\n", "loop", "type", "weights", "uops", "cycles", "cycles/kW", "znver3/kW" }
  { loop = loopname($1)
    printf "%-20s %-9s %8d %8.1f %8.1f %10.1f %12.1f\n", loop, tname(id), 2048, $2, $3, 1000 * $3 / 2048, 1000 * $6 / 2048 }'
