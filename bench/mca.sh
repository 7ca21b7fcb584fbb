#!/usr/bin/env bash
# Cycles per weight of the AVX-512 decode loops, from llvm-mca's model of a CPU: repeatable,
# where timing on a shared machine is not, and the one count there is for the AVX-512 loops
# (valgrind's CPU has no AVX-512, so bench/callgrind.sh and `kernel_bench --count` cannot
# run them).
#
# The kernel file is compiled to assembly exactly as the release build compiles it (same
# compiler, -O3, the file's instruction-set flags) plus -DQ_MCA_MARKERS, which puts llvm-mca
# region markers around each decode loop body (Q_MCA_BEGIN / Q_MCA_END in
# src/kernels/kernels_internal.h). For each region llvm-mca reports the steady-state cycles
# of one iteration ("Block RThroughput": the busiest port's share) and its micro-ops; an
# iteration covers 8 weight rows x 64 weights (int8: two blocks) or 8 rows x 256 (Q4_K, Q5_K,
# Q6_K: a super-block).
# The model is a CPU of the same family as this machine (icelake-server, the newest Intel
# server model of LLVM 14), not a measurement: read the ratios between loops and between
# revisions, not the absolute figures.
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

"$cc" -std=c11 -O3 -DNDEBUG -DQORUS_HAVE_AVX2=1 -DQORUS_HAVE_AVX512=1 -DQ_MCA_MARKERS \
  -I"$root/include" -I"$build/include" -I"$root/src" \
  -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512vnni \
  -S "$root/src/kernels/matmul_avx512.c" -o "$out/avx512.s"
"$mca" -mcpu="$mcpu" -iterations=200 -all-stats=false -instruction-info=false \
  "$out/avx512.s" >"$out/mca.txt" 2>&1

# region name suffix: the ggml type id (include/qorus_model.h). Two cycle figures per loop:
# llvm-mca's own (its model lets 512-bit uops use ports 0, 1 and 5), and "p015/2": the micro-ops
# it puts on ports 0, 1 and 5 over the two ports that execute 512-bit vector uops on these
# CPUs (port 1's vector unit is fused into port 0 while they run), the tighter bound for
# loops made of 512-bit operations.
awk -v mcpu="$mcpu" '
  function tname(id) {
    if (id == 2) return "Q4_0"; if (id == 8) return "Q8_0"; if (id == 12) return "Q4_K"
    if (id == 13) return "Q5_K"; if (id == 14) return "Q6_K"; return "Q8_SPLIT"
  }
  BEGIN { printf "llvm-mca -mcpu=%s, one iteration of each decode loop body\n", mcpu
          printf "%-22s %-9s %8s %8s %8s %10s %10s %12s\n", "loop", "type", "weights", "uops", "cycles", "p015/2", "cycles/kW", "p015/2 /kW" }
  /Code Region - / { name = $NF; sub(/^.*Code Region - /, "", name); p0 = p1 = p5 = -1 }
  /^Iterations:/ { it = $2 }
  /^Total uOps:/ { uops = $3 }
  /^Block RThroughput:/ { rt = $3 }
  /^\[[0-9]+\] +- +[A-Za-z]+Port[015]$/ { col = substr($1, 2, length($1) - 2) + 1; port[substr($3, length($3))] = col }
  /^Resource pressure per iteration:/ { want = 2; next }
  want > 0 && --want == 0 {
    p015 = ($(port["0"]) + $(port["1"]) + $(port["5"])) / 2
    n = split(name, part, "_"); id = part[n]; loop = substr(name, 1, length(name) - length(id) - 1)
    w = (id == 12 || id == 13 || id == 14) ? 2048 : 512
    printf "%-22s %-9s %8d %8.1f %8.1f %10.1f %10.1f %12.1f\n", loop, tname(id), w, uops / it, rt, p015, 1000 * rt / w, 1000 * p015 / w
  }' "$out/mca.txt"
