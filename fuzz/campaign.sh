#!/usr/bin/env bash
# A fuzz campaign in one command: build the engine, fuzz the chosen targets one after the
# other for a given time on N cores, show progress, merge new coverage into
# corpus/<target>/ (minimized), minimize every crash into corpus/<target>/crash-*, print a
# summary table. Exit status 1 if anything crashed (or timed out / ran out of memory).
#
#   fuzz/campaign.sh [-e libfuzzer|afl] [-t SECONDS] [-j CORES] [-w WORKDIR] [-n]
#                    [--crash-dir DIR] [TARGET...]
#
#   -e ENGINE     libfuzzer (default; preset "fuzz", ASan+UBSan) or afl (preset "afl",
#                 afl-clang-fast, persistent mode, ASan+UBSan)
#   -t SECONDS    fuzzing time per target (default 600)
#   -j CORES      parallel fuzzer processes per target (default 1): libFuzzer -fork=N,
#                 AFL++ one -M main plus N-1 -S secondaries
#   -w WORKDIR    scratch directory (default build/campaign-<engine>); new inputs, queues
#                 and raw crashes live there
#   -n            do not (re)build
#   --crash-dir D minimized crashes go to D/<target>/crash-* instead of corpus/<target>/
#                 (e.g. fuzz/pending-crashes while the bug is not fixed)
#   TARGET...     default: every target the build produced (fuzz/targets.txt)
#
# Environment: QORUS_JOBS (build parallelism, default 2), QORUS_CAMPAIGN_PROGRESS (seconds
# between progress lines, default 15), QORUS_FUZZ_BUILD_DIR (override the build folder).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

engine=libfuzzer
seconds=600
cores=1
workdir=""
build=1
crash_root=""
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    -e) engine=$2; shift 2 ;;
    -t) seconds=$2; shift 2 ;;
    -j) cores=$2; shift 2 ;;
    -w) workdir=$2; shift 2 ;;
    -n) build=0; shift ;;
    --crash-dir) crash_root=$2; shift 2 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    -*) echo "campaign: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
case "$engine" in
  libfuzzer) preset=fuzz ;;
  afl) preset=afl ;;
  *) echo "campaign: engine must be libfuzzer or afl" >&2; exit 2 ;;
esac
builddir=${QORUS_FUZZ_BUILD_DIR:-$root/build/fuzz-$preset}
workdir=${workdir:-$root/build/campaign-$engine}
progress_every=${QORUS_CAMPAIGN_PROGRESS:-15}
mkdir -p "$workdir"

if [ "$build" = 1 ]; then
  echo "campaign: building preset $preset in $builddir"
  cmake --preset "$preset" -B "$builddir" >"$workdir/configure.log" 2>&1 ||
    { cat "$workdir/configure.log"; exit 1; }
  cmake --build "$builddir" -j "${QORUS_JOBS:-2}" --target fuzz_targets >"$workdir/build.log" 2>&1 ||
    { tail -n 40 "$workdir/build.log"; exit 1; }
fi
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets <"$builddir/fuzz/targets.txt"
fi

dict_for() {
  case "$1" in
    fuzz_model_llama2c) echo "$root/fuzz/dict/llama2c.dict" ;;
    fuzz_gguf) echo "$root/fuzz/dict/gguf.dict" ;;
    fuzz_tokenizer) echo "$root/fuzz/dict/tokenizer.dict" ;;
    fuzz_generate) echo "$root/fuzz/dict/generate.dict" ;;
    *) echo "" ;;
  esac
}

sha() { sha1sum "$1" | cut -c1-12; }

summary=()
total_crashes=0

# ---------------------------------------------------------------- libFuzzer ----
run_libfuzzer() {
  local t=$1 bin=$builddir/fuzz/$1 corpus=$root/corpus/$1 wd=$workdir/$1
  local dict crashdir
  dict=$(dict_for "$t")
  crashdir=${crash_root:+$crash_root/$t}
  crashdir=${crashdir:-$corpus}
  rm -rf "$wd"; mkdir -p "$wd/new" "$wd/artifacts" "$corpus"
  local args=(-max_total_time="$seconds" -print_final_stats=1 -timeout=25 -rss_limit_mb=2560
              -max_len=65536 -artifact_prefix="$wd/artifacts/")
  [ -n "$dict" ] && [ -f "$dict" ] && args+=(-dict="$dict")
  if [ "$cores" -gt 1 ]; then
    args+=(-fork="$cores" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
  fi
  echo "campaign: $t: libFuzzer ${seconds}s on $cores core(s), log $wd/fuzz.log"
  # Corpus order: new inputs go to the first directory; corpus/<t> is only read.
  "$bin" "${args[@]}" "$wd/new" "$corpus" >"$wd/fuzz.log" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep "$progress_every"
    local line crashes
    line=$(grep -aE '^#[0-9]+' "$wd/fuzz.log" | tail -n 1 || true)
    crashes=$(find "$wd/artifacts" -type f | wc -l)
    printf '  %s %s | crashes: %s\n' "$t" "$(echo "$line" | grep -oE '#[0-9]+|cov: [0-9]+|ft: [0-9]+|corp: [^ ]+|exec/s: [0-9]+' | tr '\n' ' ')" "$crashes"
  done
  wait "$pid" || true

  local execs eps cov
  execs=$(grep -aoE 'stat::number_of_executed_units: *[0-9]+' "$wd/fuzz.log" | grep -oE '[0-9]+$' | tail -n 1 || true)
  eps=$(grep -aoE 'stat::average_exec_per_sec: *[0-9]+' "$wd/fuzz.log" | grep -oE '[0-9]+$' | tail -n 1 || true)
  cov=$(grep -aoE 'cov: [0-9]+' "$wd/fuzz.log" | tail -n 1 | grep -oE '[0-9]+' || true)
  if [ -z "$execs" ]; then # fork mode prints no stat:: lines
    execs=$(grep -aoE '^#[0-9]+' "$wd/fuzz.log" | tail -n 1 | tr -d '#' || true)
    [ -n "$execs" ] && eps=$((execs / seconds))
  fi

  # Merge: only inputs that add coverage over corpus/<t> are copied into it.
  local before after
  before=$(find "$corpus" -type f | wc -l)
  "$bin" -merge=1 -max_len=65536 -rss_limit_mb=2560 -timeout=25 "$corpus" "$wd/new" >"$wd/merge.log" 2>&1 ||
    echo "campaign: $t: merge failed, see $wd/merge.log"
  after=$(find "$corpus" -type f | wc -l)

  # Minimize every crash into crashdir/crash-<hash>.
  local n=0 f out
  mkdir -p "$crashdir"
  for f in "$wd"/artifacts/*; do
    [ -f "$f" ] || continue
    n=$((n + 1))
    local kind; kind=$(basename "$f" | cut -d- -f1)
    out="$wd/min-$(basename "$f")"
    "$bin" -minimize_crash=1 -max_total_time=60 -timeout=25 -exact_artifact_path="$out" "$f" \
      >"$wd/minimize-$(basename "$f").log" 2>&1 || true
    [ -s "$out" ] || cp "$f" "$out"
    cp "$out" "$crashdir/crash-$kind-$(sha "$out")"
    echo "campaign: $t: $kind -> $crashdir/crash-$kind-$(sha "$out")"
  done
  total_crashes=$((total_crashes + n))
  summary+=("$(printf '%-20s %-9s %6ss %12s %8s %8s %6s %7s' "$t" libfuzzer "$seconds" "${execs:-?}" "${eps:-?}" "${cov:-?}" "+$((after - before))" "$n")")
}

# ------------------------------------------------------------------- AFL++ ----
run_afl() {
  local t=$1 bin=$builddir/fuzz/$1 corpus=$root/corpus/$1 wd=$workdir/$1
  local dict crashdir
  dict=$(dict_for "$t")
  crashdir=${crash_root:+$crash_root/$t}
  crashdir=${crashdir:-$corpus}
  rm -rf "$wd"; mkdir -p "$wd/seeds" "$corpus"
  # Seeds: the corpus without known crashes, at most 1 MiB each (AFL++'s limit).
  find "$corpus" -type f ! -name 'crash-*' -size -1024k -exec cp {} "$wd/seeds/" \;
  [ -n "$(ls -A "$wd/seeds")" ] || printf 'seed' >"$wd/seeds/empty"
  export AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
  export AFL_SKIP_CRASHES=1 AFL_NO_UI=1 AFL_IMPORT_FIRST=1
  local common=(-i "$wd/seeds" -o "$wd/out" -m none -t 25000 -V "$seconds")
  [ -n "$dict" ] && [ -f "$dict" ] && common+=(-x "$dict")
  echo "campaign: $t: AFL++ ${seconds}s on $cores core(s), logs $wd/afl-*.log"
  local pids=() i
  afl-fuzz "${common[@]}" -M main -- "$bin" >"$wd/afl-main.log" 2>&1 &
  pids+=($!)
  for ((i = 1; i < cores; i++)); do
    afl-fuzz "${common[@]}" -S "s$i" -- "$bin" >"$wd/afl-s$i.log" 2>&1 &
    pids+=($!)
  done
  local alive=1
  while [ "$alive" = 1 ]; do
    sleep "$progress_every"
    alive=0
    for i in "${pids[@]}"; do kill -0 "$i" 2>/dev/null && alive=1; done
    local st=$wd/out/main/fuzzer_stats
    if [ -f "$st" ]; then
      local eps=0 crashes=0 execs=0 s
      for s in "$wd"/out/*/fuzzer_stats; do
        eps=$(awk -v a="$eps" '/^execs_per_sec/ {printf "%d", a + $3}' "$s")
        execs=$(awk -v a="$execs" '/^execs_done/ {print a + $3}' "$s")
        crashes=$(awk -v a="$crashes" '/^(saved_crashes|unique_crashes|saved_hangs|unique_hangs)/ {a += $3} END {print a}' "$s")
      done
      printf '  %s execs: %s exec/s: %s cov: %s corpus: %s | crashes+hangs: %s\n' "$t" "$execs" "$eps" \
        "$(awk '/^bitmap_cvg/ {print $3}' "$st")" "$(awk '/^corpus_count/ {print $3}' "$st")" "$crashes"
    else
      printf '  %s starting (see %s)\n' "$t" "$wd/afl-main.log"
    fi
  done
  for i in "${pids[@]}"; do wait "$i" || true; done

  local execs=0 eps=0 cov="?" s
  for s in "$wd"/out/*/fuzzer_stats; do
    [ -f "$s" ] || continue
    execs=$(awk -v a="$execs" '/^execs_done/ {print a + $3}' "$s")
    eps=$(awk -v a="$eps" '/^execs_per_sec/ {printf "%d", a + $3}' "$s")
  done
  [ -f "$wd/out/main/fuzzer_stats" ] && cov=$(awk '/^bitmap_cvg/ {print $3}' "$wd/out/main/fuzzer_stats")
  if [ ! -f "$wd/out/main/fuzzer_stats" ]; then
    echo "campaign: $t: afl-fuzz did not start:"; tail -n 20 "$wd/afl-main.log"
  fi

  # Merge: afl-cmin over corpus + queues picks a minimal covering set; of its files, those
  # not in the corpus are added only if they reach an edge the corpus does not (afl-showmap).
  local before after
  before=$(find "$corpus" -type f | wc -l)
  mkdir -p "$wd/all"
  cp "$wd"/seeds/* "$wd/all/" 2>/dev/null || true
  for q in "$wd"/out/*/queue; do
    [ -d "$q" ] && find "$q" -maxdepth 1 -type f -exec sh -c 'cp "$1" "$2/q-$(sha1sum "$1" | cut -c1-16)"' _ {} "$wd/all" \;
  done
  if AFL_SKIP_BIN_CHECK=1 afl-cmin -m none -t 25000 -i "$wd/all" -o "$wd/cmin" -- "$bin" - >"$wd/cmin.log" 2>&1; then
    declare -A have=()
    for f in "$corpus"/*; do [ -f "$f" ] && have[$(sha1sum "$f" | cut -c1-40)]=1; done
    AFL_QUIET=1 afl-showmap -m none -t 25000 -C -i "$wd/seeds" -o "$wd/union" -- "$bin" - \
      >"$wd/showmap.log" 2>&1 || : >"$wd/union"
    cut -d: -f1 "$wd/union" | sort -u >"$wd/edges"
    for f in "$wd"/cmin/*; do
      [ -f "$f" ] || continue
      [ "$(stat -c %s "$f")" -le 65536 ] || continue
      local h; h=$(sha1sum "$f" | cut -c1-40)
      [ -z "${have[$h]:-}" ] || continue
      afl-showmap -m none -t 25000 -q -o "$wd/one" -- "$bin" - <"$f" >/dev/null 2>&1 || true
      cut -d: -f1 "$wd/one" | sort -u >"$wd/one.edges"
      if comm -13 "$wd/edges" "$wd/one.edges" | grep -q .; then
        cp "$f" "$corpus/afl-${h:0:16}"
        sort -u "$wd/edges" "$wd/one.edges" -o "$wd/edges"
      fi
    done
  else
    echo "campaign: $t: afl-cmin failed, see $wd/cmin.log"
  fi
  after=$(find "$corpus" -type f | wc -l)

  # Minimize crashes and hangs with afl-tmin.
  local n=0 f out
  mkdir -p "$crashdir"
  for f in "$wd"/out/*/crashes/id:* "$wd"/out/*/hangs/id:*; do
    [ -f "$f" ] || continue
    n=$((n + 1))
    out="$wd/min-$n"
    local kind=crash
    case "$f" in */hangs/*) kind=timeout ;; esac
    afl-tmin -m none -t 25000 -i "$f" -o "$out" -- "$bin" - >"$wd/tmin-$n.log" 2>&1 || cp "$f" "$out"
    cp "$out" "$crashdir/crash-afl-$kind-$(sha "$out")"
    echo "campaign: $t: $kind -> $crashdir/crash-afl-$kind-$(sha "$out")"
  done
  total_crashes=$((total_crashes + n))
  summary+=("$(printf '%-20s %-9s %6ss %12s %8s %8s %6s %7s' "$t" afl "$seconds" "$execs" "$eps" "$cov" "+$((after - before))" "$n")")
}

for t in "${targets[@]}"; do
  if [ ! -x "$builddir/fuzz/$t" ]; then
    echo "campaign: $t is not built in $builddir" >&2
    exit 2
  fi
  "run_$engine" "$t"
done

echo
printf '%-20s %-9s %7s %12s %8s %8s %6s %7s\n' target engine time execs exec/s coverage corpus crashes
for row in "${summary[@]}"; do echo "$row"; done
if [ "$total_crashes" -gt 0 ]; then
  echo "campaign: $total_crashes crash(es); minimized inputs are listed above"
  exit 1
fi
echo "campaign: no crashes"
