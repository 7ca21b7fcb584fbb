#!/usr/bin/env bash
# A fuzz campaign in one command: build the engine, fuzz the chosen targets one after the
# other for a given time on N cores, show progress, merge new coverage into
# corpus/<target>/ (minimized), minimize every crash into corpus/<target>/crash-*, print a
# summary table. Exit status 1 if anything crashed (or timed out / ran out of memory).
#
#   fuzz/campaign.sh [-e libfuzzer|afl] [-t SECONDS] [-j CORES] [-w WORKDIR] [-n]
#                    [-c] [-l] [-V] [--fast-arena] [--no-struct] [--seeds DIR] [--no-merge]
#                    [--sync-dir DIR --role main|secondary --name NAME]
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
#   -c            AFL++: also build preset "afl-cmplog" (AFL_LLVM_CMPLOG) and give its binary
#                 to the first instance (afl-fuzz -c): magic values and checksums solved
#   -l            AFL++: fuzz the "afl-laf" build (AFL_LLVM_LAF_ALL: comparisons split into
#                 bytes, laf-intel / COMPCOV) instead of "afl"
#   -V            libFuzzer: -use_value_profile=1 (comparison operands as coverage)
#   --fast-arena  the release arena (inline fast path) under ASan+UBSan: presets fuzz-fast /
#                 afl-fast (with -l: afl-laf plus QORUS_ARENA_FAST=ON)
#   --no-struct   no structure-aware mutators: libFuzzer gets QORUS_FUZZ_STRUCTURED=0, AFL++
#                 no AFL_CUSTOM_MUTATOR_LIBRARY (by default AFL++ runs of fuzz_gguf,
#                 fuzz_model_llama2c and fuzz_tokenizer load
#                 <builddir>/fuzz/libqorus_mutator_<target>.so when it was built)
#   --seeds DIR   start from DIR/<target>/ instead of corpus/<target>/ (e.g. the valid seeds
#                 of fuzz/make_seeds.py --valid-only DIR)
#   --no-merge    measurement run: corpus/ is not touched (no merge; crashes go to
#                 WORKDIR/<target>/crashes unless --crash-dir is given)
#   --sync-dir D  AFL++ on several machines: the output folder is D/<target>, on a folder
#                 every machine mounts; its instances sync through it (afl-fuzz -M/-S -o D/..).
#                 Not wiped between runs (AFL_AUTORESUME); only the main machine merges.
#   --role R      with --sync-dir: main (afl-fuzz -M, one machine) or secondary (-S)
#   --name NAME   with --sync-dir: this machine's instance name, unique per machine (default:
#                 the host name); local extra instances (-j) are NAME-s1, NAME-s2...
#   --crash-dir D minimized crashes go to D/<target>/crash-* instead of corpus/<target>/
#                 (e.g. fuzz/pending-crashes while the bug is not fixed)
#   TARGET...     default: every target the build produced (fuzz/targets.txt)
#
# Several machines (AFL++): mount one shared folder, e.g. /shared/sync, everywhere, then
#   host1$ fuzz/campaign.sh -e afl -c -t 3600 --sync-dir /shared/sync --role main --name host1 fuzz_gguf
#   host2$ fuzz/campaign.sh -e afl -t 3600 --sync-dir /shared/sync --role secondary --name host2 fuzz_gguf
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
cmplog=0
laf=0
value_profile=0
fast_arena=0
structured=1
seeds_root=""
merge=1
sync_dir=""
role=""
name=""
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    -e) engine=$2; shift 2 ;;
    -t) seconds=$2; shift 2 ;;
    -j) cores=$2; shift 2 ;;
    -w) workdir=$2; shift 2 ;;
    -n) build=0; shift ;;
    -c) cmplog=1; shift ;;
    -l) laf=1; shift ;;
    -V) value_profile=1; shift ;;
    --fast-arena) fast_arena=1; shift ;;
    --no-struct) structured=0; shift ;;
    --seeds) seeds_root=$(cd "$2" && pwd); shift 2 ;;
    --no-merge) merge=0; shift ;;
    --sync-dir) mkdir -p "$2"; sync_dir=$(cd "$2" && pwd); shift 2 ;;
    --role) role=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --crash-dir) crash_root=$2; shift 2 ;;
    -h|--help) sed -n '2,50p' "$0"; exit 0 ;;
    -*) echo "campaign: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
# Preset, and extra cache settings for combinations without a preset of their own.
extra_cmake=()
case "$engine" in
  libfuzzer)
    preset=fuzz
    [ "$fast_arena" = 1 ] && preset=fuzz-fast
    if [ "$cmplog" = 1 ] || [ "$laf" = 1 ] || [ -n "$sync_dir" ]; then
      echo "campaign: -c, -l and --sync-dir are AFL++ options (-e afl)" >&2; exit 2
    fi ;;
  afl)
    preset=afl
    if [ "$laf" = 1 ]; then
      preset=afl-laf
      [ "$fast_arena" = 1 ] && extra_cmake+=(-DQORUS_ARENA_FAST=ON)
    elif [ "$fast_arena" = 1 ]; then
      preset=afl-fast
    fi
    [ "$value_profile" = 1 ] && { echo "campaign: -V is a libFuzzer option" >&2; exit 2; } ;;
  *) echo "campaign: engine must be libfuzzer or afl" >&2; exit 2 ;;
esac
suffix=$preset
[ ${#extra_cmake[@]} -gt 0 ] && suffix=$preset-fast
if [ -n "$sync_dir" ]; then
  case "$role" in
    main|secondary) ;;
    *) echo "campaign: --sync-dir needs --role main or --role secondary" >&2; exit 2 ;;
  esac
  name=${name:-$(hostname -s 2>/dev/null || hostname)}
  case "$name" in
    *[!A-Za-z0-9_-]* | "") echo "campaign: --name must be letters, digits, - and _" >&2; exit 2 ;;
  esac
elif [ -n "$role" ] || [ -n "$name" ]; then
  echo "campaign: --role and --name go with --sync-dir" >&2; exit 2
fi
builddir=${QORUS_FUZZ_BUILD_DIR:-$root/build/fuzz-$suffix}
cmplog_builddir=$root/build/fuzz-afl-cmplog
cmplog_extra=()
if [ "$fast_arena" = 1 ]; then
  cmplog_builddir=$root/build/fuzz-afl-cmplog-fast
  cmplog_extra=(-DQORUS_ARENA_FAST=ON)
fi
workdir=${workdir:-$root/build/campaign-$engine}
progress_every=${QORUS_CAMPAIGN_PROGRESS:-15}
# The configuration, for the summary table: engine plus options (e.g. afl+cmplog+fast).
label=$engine
[ "$cmplog" = 1 ] && label+=+cmplog
[ "$laf" = 1 ] && label+=+laf
[ "$value_profile" = 1 ] && label+=+vp
[ "$fast_arena" = 1 ] && label+=+fast
[ "$structured" = 0 ] && label+=+nostruct
if [ "$structured" = 0 ]; then
  export QORUS_FUZZ_STRUCTURED=0 # the libFuzzer custom mutators fall back to byte mutation
fi
mkdir -p "$workdir"

# build_preset PRESET DIR [CMAKE ARGS...]: configure and build the fuzz targets. The AFL++
# instrumentation modes (AFL_LLVM_CMPLOG, AFL_LLVM_LAF_ALL) come from the presets' compiler
# launcher, so a plain `cmake --build` of the folder keeps them.
build_preset() {
  local p=$1 dir=$2; shift 2
  echo "campaign: building preset $p${*:+ ($*)} in $dir"
  cmake --preset "$p" -B "$dir" "$@" >"$workdir/configure-$p.log" 2>&1 ||
    { cat "$workdir/configure-$p.log"; exit 1; }
  cmake --build "$dir" -j "${QORUS_JOBS:-2}" --target fuzz_targets >"$workdir/build-$p.log" 2>&1 ||
    { tail -n 40 "$workdir/build-$p.log"; exit 1; }
}
if [ "$build" = 1 ]; then
  build_preset "$preset" "$builddir" ${extra_cmake[@]+"${extra_cmake[@]}"}
  if [ "$cmplog" = 1 ]; then
    build_preset afl-cmplog "$cmplog_builddir" ${cmplog_extra[@]+"${cmplog_extra[@]}"}
  fi
fi
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets <"$builddir/fuzz/targets.txt"
fi

dict_for() {
  case "$1" in
    fuzz_model_llama2c) echo "$root/fuzz/dict/llama2c.dict" ;;
    fuzz_gguf) echo "$root/fuzz/dict/gguf.dict" ;;
    fuzz_tokenizer) echo "$root/fuzz/dict/tokenizer.dict" ;;
    fuzz_bpe) echo "$root/fuzz/dict/bpe.dict" ;;
    fuzz_generate) echo "$root/fuzz/dict/generate.dict" ;;
    *) echo "" ;;
  esac
}

sha() { sha1sum "$1" | cut -c1-12; }

summary=()
total_crashes=0

# ---------------------------------------------------------------- libFuzzer ----
# Where a target's run starts (--seeds DIR/<t> or corpus/<t>) and where its minimized
# crashes go (--crash-dir, else corpus/<t>, or WORKDIR/<t>/crashes with --no-merge).
seeds_for() { echo "${seeds_root:+$seeds_root/$1}"; }
crashdir_for() {
  if [ -n "$crash_root" ]; then echo "$crash_root/$1"
  elif [ "$merge" = 1 ]; then echo "$root/corpus/$1"
  else echo "$workdir/$1/crashes"; fi
}

run_libfuzzer() {
  local t=$1 bin=$builddir/fuzz/$1 corpus=$root/corpus/$1 wd=$workdir/$1
  local dict crashdir seeds
  dict=$(dict_for "$t")
  crashdir=$(crashdir_for "$t")
  seeds=$(seeds_for "$t"); seeds=${seeds:-$corpus}
  rm -rf "$wd"; mkdir -p "$wd/new" "$wd/artifacts" "$seeds"
  local args=(-max_total_time="$seconds" -print_final_stats=1 -timeout=25 -rss_limit_mb=2560
              -max_len=65536 -artifact_prefix="$wd/artifacts/")
  [ -n "$dict" ] && [ -f "$dict" ] && args+=(-dict="$dict")
  [ "$value_profile" = 1 ] && args+=(-use_value_profile=1)
  if [ "$cores" -gt 1 ]; then
    args+=(-fork="$cores" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
  fi
  echo "campaign: $t: libFuzzer ${seconds}s on $cores core(s) from $seeds, log $wd/fuzz.log"
  # Corpus order: new inputs go to the first directory; the seeds are only read.
  "$bin" "${args[@]}" "$wd/new" "$seeds" >"$wd/fuzz.log" 2>&1 &
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
  local before=0 after=0
  if [ "$merge" = 1 ]; then
    mkdir -p "$corpus"
    before=$(find "$corpus" -type f | wc -l)
    "$bin" -merge=1 -max_len=65536 -rss_limit_mb=2560 -timeout=25 "$corpus" "$wd/new" >"$wd/merge.log" 2>&1 ||
      echo "campaign: $t: merge failed, see $wd/merge.log"
    after=$(find "$corpus" -type f | wc -l)
  fi

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
  summary+=("$(printf '%-20s %-16s %6ss %12s %8s %8s %6s %7s' "$t" "$label" "$seconds" "${execs:-?}" "${eps:-?}" "${cov:-?}" "+$((after - before))" "$n")")
}

# ------------------------------------------------------------------- AFL++ ----
run_afl() {
  local t=$1 bin=$builddir/fuzz/$1 corpus=$root/corpus/$1 wd=$workdir/$1
  local dict crashdir seeds
  dict=$(dict_for "$t")
  crashdir=$(crashdir_for "$t")
  seeds=$(seeds_for "$t"); seeds=${seeds:-$corpus}
  rm -rf "$wd"; mkdir -p "$wd/seeds" "$seeds"
  # Seeds: the start folder without known crashes, at most 1 MiB each (AFL++'s limit).
  find "$seeds" -type f ! -name 'crash-*' -size -1024k -exec cp {} "$wd/seeds/" \;
  [ -n "$(ls -A "$wd/seeds")" ] || printf 'seed' >"$wd/seeds/empty"
  export AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
  export AFL_SKIP_CRASHES=1 AFL_NO_UI=1 AFL_IMPORT_FIRST=1
  # Output: a local folder, or D/<t> shared by every machine of a --sync-dir campaign
  # (kept between runs: an instance that exists resumes).
  local out=$wd/out first=main role_flag=-M prefix=s
  if [ -n "$sync_dir" ]; then
    out=$sync_dir/$t; first=$name; prefix=$name-s
    [ "$role" = main ] || role_flag=-S
    mkdir -p "$out"
    export AFL_AUTORESUME=1
  fi
  local common=(-i "$wd/seeds" -o "$out" -m none -t 25000 -V "$seconds")
  [ -n "$dict" ] && [ -f "$dict" ] && common+=(-x "$dict")
  # Structure-aware mutation (C2): the target's custom mutator library, when it was built.
  local mutenv=()
  case "$t" in
    fuzz_gguf | fuzz_model_llama2c | fuzz_tokenizer)
      local lib=$builddir/fuzz/libqorus_mutator_$t.so
      if [ "$structured" = 1 ] && [ -f "$lib" ]; then
        mutenv=(AFL_CUSTOM_MUTATOR_LIBRARY="$lib")
        echo "campaign: $t: custom mutator $lib"
      fi ;;
  esac
  # CMPLOG (-c): the first instance also runs the AFL_LLVM_CMPLOG build of the target.
  local first_extra=()
  if [ "$cmplog" = 1 ]; then
    if [ ! -x "$cmplog_builddir/fuzz/$t" ]; then
      echo "campaign: $t: no CMPLOG binary $cmplog_builddir/fuzz/$t (build without -n)" >&2
      exit 2
    fi
    first_extra=(-c "$cmplog_builddir/fuzz/$t")
  fi
  echo "campaign: $t: AFL++ ${seconds}s on $cores core(s) from $seeds, output $out, logs $wd/afl-*.log"
  local pids=() insts=("$first") i
  env -u AFL_CUSTOM_MUTATOR_LIBRARY ${mutenv[@]+"${mutenv[@]}"} afl-fuzz "${common[@]}" \
    "$role_flag" "$first" ${first_extra[@]+"${first_extra[@]}"} -- "$bin" >"$wd/afl-$first.log" 2>&1 &
  pids+=($!)
  for ((i = 1; i < cores; i++)); do
    insts+=("$prefix$i")
    env -u AFL_CUSTOM_MUTATOR_LIBRARY ${mutenv[@]+"${mutenv[@]}"} afl-fuzz "${common[@]}" \
      -S "$prefix$i" -- "$bin" >"$wd/afl-$prefix$i.log" 2>&1 &
    pids+=($!)
  done
  local alive=1
  while [ "$alive" = 1 ]; do
    sleep "$progress_every"
    alive=0
    for i in "${pids[@]}"; do kill -0 "$i" 2>/dev/null && alive=1; done
    local st=$out/$first/fuzzer_stats
    if [ -f "$st" ]; then
      local eps=0 crashes=0 execs=0 s
      for s in "$out"/*/fuzzer_stats; do
        eps=$(awk -v a="$eps" '/^execs_per_sec/ {printf "%d", a + $3}' "$s")
        execs=$(awk -v a="$execs" '/^execs_done/ {print a + $3}' "$s")
        crashes=$(awk -v a="$crashes" '/^(saved_crashes|unique_crashes|saved_hangs|unique_hangs)/ {a += $3} END {print a}' "$s")
      done
      printf '  %s execs: %s exec/s: %s cov: %s corpus: %s | crashes+hangs: %s\n' "$t" "$execs" "$eps" \
        "$(awk '/^bitmap_cvg/ {print $3}' "$st")" "$(awk '/^corpus_count/ {print $3}' "$st")" "$crashes"
    else
      printf '  %s starting (see %s)\n' "$t" "$wd/afl-$first.log"
    fi
  done
  for i in "${pids[@]}"; do wait "$i" || true; done

  # Totals of this machine's instances.
  local execs=0 eps=0 cov="?" s inst
  for inst in "${insts[@]}"; do
    s=$out/$inst/fuzzer_stats
    [ -f "$s" ] || continue
    execs=$(awk -v a="$execs" '/^execs_done/ {print a + $3}' "$s")
    eps=$(awk -v a="$eps" '/^execs_per_sec/ {printf "%d", a + $3}' "$s")
  done
  [ -f "$out/$first/fuzzer_stats" ] && cov=$(awk '/^bitmap_cvg/ {print $3}' "$out/$first/fuzzer_stats")
  if [ ! -f "$out/$first/fuzzer_stats" ]; then
    echo "campaign: $t: afl-fuzz did not start:"; tail -n 20 "$wd/afl-$first.log"
  fi

  # Merge: afl-cmin over corpus + queues picks a minimal covering set; of its files, those
  # not in the corpus are added only if they reach an edge the corpus does not (afl-showmap).
  # Not with --no-merge, nor on a secondary machine (the main one merges every queue).
  local before=0 after=0
  if [ "$merge" = 1 ] && [ "$role" != secondary ]; then
    mkdir -p "$corpus"
    before=$(find "$corpus" -type f | wc -l)
    mkdir -p "$wd/all"
    cp "$wd"/seeds/* "$wd/all/" 2>/dev/null || true
    for q in "$out"/*/queue; do
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
  fi

  # Minimize this machine's crashes and hangs with afl-tmin.
  local n=0 f min
  mkdir -p "$crashdir"
  for inst in "${insts[@]}"; do
    for f in "$out/$inst"/crashes/id:* "$out/$inst"/hangs/id:*; do
      [ -f "$f" ] || continue
      n=$((n + 1))
      min="$wd/min-$n"
      local kind=crash
      case "$f" in */hangs/*) kind=timeout ;; esac
      afl-tmin -m none -t 25000 -i "$f" -o "$min" -- "$bin" - >"$wd/tmin-$n.log" 2>&1 || cp "$f" "$min"
      cp "$min" "$crashdir/crash-afl-$kind-$(sha "$min")"
      echo "campaign: $t: $kind -> $crashdir/crash-afl-$kind-$(sha "$min")"
    done
  done
  total_crashes=$((total_crashes + n))
  summary+=("$(printf '%-20s %-16s %6ss %12s %8s %8s %6s %7s' "$t" "$label" "$seconds" "$execs" "$eps" "$cov" "+$((after - before))" "$n")")
}

for t in "${targets[@]}"; do
  if [ ! -x "$builddir/fuzz/$t" ]; then
    echo "campaign: $t is not built in $builddir" >&2
    exit 2
  fi
  "run_$engine" "$t"
done

echo
printf '%-20s %-16s %7s %12s %8s %8s %6s %7s\n' target config time execs exec/s coverage corpus crashes
for row in "${summary[@]}"; do echo "$row"; done
if [ "$total_crashes" -gt 0 ]; then
  echo "campaign: $total_crashes crash(es); minimized inputs are listed above"
  exit 1
fi
echo "campaign: no crashes"
