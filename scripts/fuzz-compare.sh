#!/usr/bin/env bash
# What a search configuration buys: fuzzes each target from the valid seeds only
# (fuzz/make_seeds.py --valid-only) once per configuration, for the same time, then replays
# every input each run kept through the source-coverage build and counts the lines of
# src/model and src/infer it reached. Prints (and writes to OUT/compare.md) one row per
# target and configuration:
#
#   target | config | execs | engine edges | src/model lines | src/infer lines | crashes
#
# "engine edges" is the engine's own count (libFuzzer cov:, AFL++ edges_found): comparable
# between configurations of one engine only. The line counts come from one llvm-cov build
# and compare every configuration with every other.
#
#   scripts/fuzz-compare.sh [-t SECONDS] [-P PARALLEL] [-o OUT] [--configs "LIST"] TARGET...
#
#   -t SECONDS    fuzzing time per run (default 600)
#   -P N          runs at the same time (default 2; one core each)
#   -o OUT        results folder (default build/fuzz-compare)
#   --configs L   space-separated, from:
#                   lf                 libFuzzer, byte-level mutation only (QORUS_FUZZ_STRUCTURED=0)
#                   lf-struct          libFuzzer with the structure-aware mutators
#                   lf-vp              libFuzzer byte-level with -use_value_profile=1
#                   afl                AFL++, no CMPLOG, no custom mutator
#                   afl-cmplog         AFL++ with a CMPLOG binary (-c)
#                   afl-cmplog-struct  AFL++ with CMPLOG and the custom mutator library
#                 default: "lf lf-struct afl afl-cmplog afl-cmplog-struct"
#   TARGET...     default: fuzz_gguf fuzz_model_llama2c fuzz_tokenizer
#
# Every run is a fuzz/campaign.sh run with --seeds and --no-merge: corpus/ is not touched.
# Crashes found are kept in OUT/work/<config>/<target>/ and counted in the table.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

seconds=600
parallel=2
out=$root/build/fuzz-compare
configs="lf lf-struct afl afl-cmplog afl-cmplog-struct"
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    -t) seconds=$2; shift 2 ;;
    -P) parallel=$2; shift 2 ;;
    -o) out=$2; shift 2 ;;
    --configs) configs=$2; shift 2 ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    -*) echo "fuzz-compare: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_gguf fuzz_model_llama2c fuzz_tokenizer)
mkdir -p "$out"
out=$(cd "$out" && pwd)

pick() { for c in "$@"; do command -v "$c" >/dev/null 2>&1 && { echo "$c"; return; }; done; echo "$1"; }
llvm_cov=${LLVM_COV:-$(pick llvm-cov-14 llvm-cov)}
llvm_profdata=${LLVM_PROFDATA:-$(pick llvm-profdata-14 llvm-profdata)}

# campaign.sh options of one configuration.
campaign_args() {
  case "$1" in
    lf) echo "-e libfuzzer --no-struct" ;;
    lf-struct) echo "-e libfuzzer" ;;
    lf-vp) echo "-e libfuzzer --no-struct -V" ;;
    afl) echo "-e afl --no-struct" ;;
    afl-cmplog) echo "-e afl -c --no-struct" ;;
    afl-cmplog-struct) echo "-e afl -c" ;;
    *) echo "fuzz-compare: unknown configuration $1" >&2; return 2 ;;
  esac
}
for c in $configs; do campaign_args "$c" >/dev/null; done

echo "fuzz-compare: valid seeds"
rm -rf "$out/seeds"
python3 fuzz/make_seeds.py --valid-only "$out/seeds" >/dev/null

# Build every engine configuration once (the runs below use -n, so parallel runs never
# build the same folder at once), and the coverage replay build.
echo "fuzz-compare: building"
declare -A built=()
for c in $configs; do
  # shellcheck disable=SC2046
  key=$(campaign_args "$c" | sed 's/--no-struct//; s/-V//')
  [ -n "${built[$key]:-}" ] && continue
  built[$key]=1
  # A zero-second campaign of nothing but the build: -t 0 with a target that exists.
  # shellcheck disable=SC2086
  fuzz/campaign.sh $key -t 1 --seeds "$out/seeds" --no-merge -w "$out/build-log" \
    "${targets[0]}" >"$out/build-$c.log" 2>&1 || { tail -n 30 "$out/build-$c.log"; exit 1; }
done
covdir=$root/build/fuzz-coverage
cmake --preset coverage -B "$covdir" >/dev/null
cmake --build "$covdir" -j "${QORUS_JOBS:-2}" --target fuzz_targets >"$out/build-coverage.log" 2>&1 ||
  { tail -n 30 "$out/build-coverage.log"; exit 1; }

# The runs, PARALLEL at a time.
run_one() {
  local c=$1 t=$2 wd=$out/work/$1
  mkdir -p "$wd"
  # shellcheck disable=SC2046
  QORUS_CAMPAIGN_PROGRESS=60 fuzz/campaign.sh $(campaign_args "$c") -n -t "$seconds" \
    --seeds "$out/seeds" --no-merge -w "$wd" "$t" >"$wd/$t.campaign.log" 2>&1 || true
}
jobs_list=()
for t in "${targets[@]}"; do for c in $configs; do jobs_list+=("$c $t"); done; done
echo "fuzz-compare: ${#jobs_list[@]} runs of ${seconds}s, $parallel at a time"
running=0
for j in "${jobs_list[@]}"; do
  # shellcheck disable=SC2086
  run_one $j &
  running=$((running + 1))
  if [ "$running" -ge "$parallel" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true

# Coverage of what each run kept: seeds + new inputs (libFuzzer) or the queues (AFL++).
lines_of() { # profdata area -> covered lines
  "$llvm_cov" report -instr-profile="$1" "$covdir/fuzz/$3" "$root/src/$2" 2>/dev/null |
    awk '/^TOTAL/ {print $8 - $9}'
}
table=$out/compare.md
{
  echo "| target | config | execs | engine edges | src/model lines | src/infer lines | crashes |"
  echo "|---|---|---:|---:|---:|---:|---:|"
} >"$table"
for t in "${targets[@]}"; do
  for c in $configs; do
    wd=$out/work/$c/$t
    inputs=()
    [ -d "$wd/new" ] && inputs+=("$wd/new")
    for q in "$wd"/out/*/queue; do [ -d "$q" ] && inputs+=("$q"); done
    inputs+=("$out/seeds/$t")
    prof=$wd/profraw
    rm -rf "$prof"; mkdir -p "$prof"
    LLVM_PROFILE_FILE="$prof/%p.profraw" "$covdir/fuzz/$t" -q "${inputs[@]}" >/dev/null 2>&1 ||
      echo "fuzz-compare: $c/$t: an input fails the replay (see the crashes column)"
    "$llvm_profdata" merge -sparse "$prof"/*.profraw -o "$wd/merged.profdata"
    model=$(lines_of "$wd/merged.profdata" model "$t")
    infer=$(lines_of "$wd/merged.profdata" infer "$t")
    if [ -f "$wd/fuzz.log" ]; then
      execs=$(grep -aoE 'stat::number_of_executed_units: *[0-9]+' "$wd/fuzz.log" | grep -oE '[0-9]+$' | tail -n 1 || true)
      edges=$(grep -aoE 'cov: [0-9]+' "$wd/fuzz.log" | tail -n 1 | grep -oE '[0-9]+' || true)
      crashes=$(find "$wd/artifacts" -type f 2>/dev/null | wc -l)
    else
      execs=$(cat "$wd"/out/*/fuzzer_stats 2>/dev/null | awk '/^execs_done/ {a += $3} END {print a + 0}')
      edges=$(awk '/^edges_found/ {print $3}' "$wd"/out/main/fuzzer_stats 2>/dev/null || true)
      crashes=$(find "$wd"/out/*/crashes "$wd"/out/*/hangs -type f -name 'id:*' 2>/dev/null | wc -l)
    fi
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$t" "$c" "${execs:-?}" "${edges:-?}" \
      "${model:-?}" "${infer:-?}" "$crashes" >>"$table"
  done
done
echo
cat "$table"
echo "fuzz-compare: table in $table, runs in $out/work"
