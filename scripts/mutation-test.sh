#!/usr/bin/env bash
# Mutation testing: does the test suite (regression mode) or a fuzz campaign (search mode)
# notice the bugs we plant on purpose?
#
# The planted bugs are fuzz/mutants/NN-short-name.patch: each a small diff against the tree
# with a header saying its bug class, whether it breaks memory safety, the fuzz targets that
# should find it and the build it needs ("build: fast-arena" for the inline arena fast path
# in include/qorus_core.h, which only release-style builds compile).
#
#   scripts/mutation-test.sh [--mode regression|search] [--configs LIST] [--time SECONDS]
#                            [--only GLOB] [--out DIR] [-j N] [--scratch DIR] [--preset P]
#
#   --mode regression (default)  per mutant: apply, build, ctest --stop-on-failure, revert.
#          Result: "killed:<first failing test>", "survived" or "build-failed" (a bad mutant).
#          Mutants with "build: fast-arena" use the release preset (the inline fast path),
#          the others the asan preset.
#   --mode search  per mutant: apply, build the fuzz binaries, fuzz each target named in its
#          header from the valid seeds only (fuzz/make_seeds.py --valid-only) under every
#          configuration of --configs, revert. Result: seconds to the first report (crash,
#          sanitizer report, failed FUZZ_ASSERT, timeout) or "survived" after --time.
#   --configs  comma-separated, search mode only (default: all four):
#          lf                 libFuzzer, QORUS_FUZZ_STRUCTURED=0 (byte-level mutation only)
#          lf-struct          libFuzzer with the structure-aware mutators (the default build)
#          afl-cmplog         AFL++ with a CMPLOG binary (afl-fuzz -c), no custom mutator
#          afl-cmplog-struct  the same plus AFL_CUSTOM_MUTATOR_LIBRARY=libqorus_mutator_<t>.so
#          Fast-arena mutants use the fuzz-fast / afl-fast presets; a configuration whose
#          preset (or binary) this tree does not have is reported "n/a".
#   --time     seconds per target and configuration in search mode (default 300)
#   --only     shell glob (extglob) on the mutant file name: '0[1-4]-*', '*gguf*', '@(05|14)-*'
#   --out      results directory (default: $TMPDIR/qorus-mutation/results-<mode>): results.tsv,
#              matrix.md (kill matrix and mutation score) and one log per mutant
#   -j N       build jobs, ctest jobs, and in search mode targets fuzzed at once (default 2)
#   --scratch  scratch tree and build directories (default: $TMPDIR/qorus-mutation)
#   --preset   regression mode: build every mutant with preset P (e.g. release for a quick
#              check of logic-bug mutants; memory-safety ones need a sanitizer preset)
#
# The user's tree is never modified: the tree (tracked and untracked files, no build/) is
# copied into the scratch directory, which keeps one build directory per preset between
# runs, so each mutant costs an incremental rebuild. Exit status 0 when every mutant ran
# (survivors included: read the score), 1 on a usage or setup error.
set -u -o pipefail
shopt -s extglob  # --only may use @(a|b) patterns

die() { echo "mutation-test: $*" >&2; exit 1; }

mode=regression configs="lf,lf-struct,afl-cmplog,afl-cmplog-struct" seconds=300 only='*'
out="" jobs=2 scratch="${TMPDIR:-/tmp}/qorus-mutation" force_preset=""
while [ $# -gt 0 ]; do
  case "$1" in
    --mode) mode=${2:?}; shift 2 ;;
    --configs) configs=${2:?}; shift 2 ;;
    --time) seconds=${2:?}; shift 2 ;;
    --only) only=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    -j) jobs=${2:?}; shift 2 ;;
    --scratch) scratch=${2:?}; shift 2 ;;
    --preset) force_preset=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
case "$mode" in regression|search) ;; *) die "--mode must be regression or search" ;; esac
case "$seconds" in ''|*[!0-9]*) die "--time takes whole seconds" ;; esac
case "$jobs" in ''|*[!0-9]*|0) die "-j takes a positive number" ;; esac
for c in ${configs//,/ }; do
  case "$c" in lf|lf-struct|afl-cmplog|afl-cmplog-struct) ;; *) die "unknown config '$c'" ;; esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
[ -d "$root/fuzz/mutants" ] || die "no fuzz/mutants/ in $root"
src=$scratch/src
out=${out:-$scratch/results-$mode}
mkdir -p "$src" "$out" || die "cannot create $scratch / $out"
out=$(cd "$out" && pwd)
for tool in cmake ctest git python3; do
  command -v "$tool" >/dev/null || die "needs $tool"
done

# ---- the scratch copy -------------------------------------------------------------------
# Copied by content, without keeping times: a file the previous run mutated and reverted
# keeps its newer time, so make still rebuilds it; identical files keep theirs.
echo "mutation-test: copying $root to $src"
(cd "$root" && git ls-files -z --cached --others --exclude-standard) |
  python3 -c '
import os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
for rel in sys.stdin.buffer.read().decode().split("\0"):
    a, b = os.path.join(src, rel), os.path.join(dst, rel)
    if not rel or not os.path.isfile(a):
        continue
    data = open(a, "rb").read()
    if os.path.isfile(b) and open(b, "rb").read() == data:
        continue
    os.makedirs(os.path.dirname(b), exist_ok=True)
    open(b, "wb").write(data)
    shutil.copymode(a, b)
' "$root" "$src" || die "copying the tree failed"
if [ ! -d "$src/.git" ]; then
  git -C "$src" init -q && git -C "$src" config user.email mutation@localhost &&
    git -C "$src" config user.name mutation-test || die "git init in $src failed"
fi
echo /build/ >"$src/.git/info/exclude"
# the scratch repository's index is the clean tree: a mutant is reverted with checkout
git -C "$src" add -A >/dev/null 2>&1 && git -C "$src" commit -qm clean --allow-empty >/dev/null 2>&1
git -C "$src" reset -q --hard HEAD

mutants=()
for f in "$root"/fuzz/mutants/*.patch; do
  # shellcheck disable=SC2254
  case "$(basename "$f")" in $only) mutants+=("$f") ;; esac
done
[ ${#mutants[@]} -gt 0 ] || die "no mutant matches '$only'"

field() { # field FILE NAME: a header field ("NAME: value") of a mutant
  sed -n "/^diff --git/q; s/^$2: *//p" "$1" | head -n 1
}
has_preset() { grep -q "\"name\": *\"$1\"" "$src/CMakePresets.json"; }

apply_mutant() { git -C "$src" apply "$1"; }
revert_mutant() { git -C "$src" checkout -q -- . && git -C "$src" clean -qfd >/dev/null; }

# Real models for the tests that need them: $QORUS_MODELS, else ../shared/models beside the
# user's tree (the scratch copy has no such neighbour).
models=${QORUS_MODELS:-}
[ -z "$models" ] && [ -d "$root/../shared/models" ] && models=$(cd "$root/../shared/models" && pwd)
configured=" "
build_preset() { # build_preset PRESET LOG [TARGET]: configure once, then incremental builds
  local p=$1 log=$2 target=${3:-}
  if [[ $configured != *" $p "* ]]; then
    (cd "$src" && cmake --preset "$p" -DQORUS_WERROR=OFF ${models:+"-DQORUS_MODELS_DIR=$models"}) >>"$log" 2>&1 ||
      return 1
    configured+="$p "
  fi
  (cd "$src" && cmake --build --preset "$p" -j "$jobs" ${target:+--target $target}) >>"$log" 2>&1
}

# ---- regression -------------------------------------------------------------------------
area_tests() { # area_tests MUTANT: ctest regex of the tests closest to the files it changes
  local files re=""
  files=$(sed -n 's|^+++ b/||p' "$1")
  case "$files" in *src/core/*|*include/qorus_core.h*) re+="|^core|fuzz_arena" ;; esac
  case "$files" in *src/model/*) re+="|^model|fuzz_replay_fuzz_(gguf|model|tokenizer)" ;; esac
  case "$files" in *src/infer/*) re+="|^infer|fuzz_replay_fuzz_(generate|tokenizer)" ;; esac
  case "$files" in *src/kernels/*) re+="|^kernels|^infer_kernels|fuzz_replay_fuzz_kernels" ;; esac
  if [ -n "$re" ]; then echo "${re#|}"; else echo "."; fi
}

regression_one() { # prints the result column
  local m=$1 log=$2 preset=asan rc
  [ "$(field "$m" build)" = fast-arena ] && preset=release
  [ -n "$force_preset" ] && preset=$force_preset
  build_preset "$preset" "$log" || { echo "build-failed($preset)"; return; }
  # the tests of the mutated area first (a kill comes sooner), then all the others
  local area
  area=$(area_tests "$m")
  (cd "$src" && ctest --preset "$preset" --stop-on-failure -j "$jobs" --timeout 600 -R "$area" &&
     ctest --preset "$preset" --stop-on-failure -j "$jobs" --timeout 600 -E "$area") >>"$log" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then
    echo "survived($preset)"
  else
    # ctest prints "N/M Test #K: name ....***Failed" (or Exception/Timeout) for a failure
    local t
    t=$(grep -E '^ *[0-9]+/[0-9]+ Test +#[0-9]+: ' "$log" | grep -Ev ' (Passed|\*\*\*Skipped) ' |
        head -n 1 | sed -E 's/^ *[0-9]+\/[0-9]+ Test +#[0-9]+: ([^ ]+).*/\1/')
    echo "killed:${t:-ctest-exit-$rc}($preset)"
  fi
}

# ---- search -----------------------------------------------------------------------------
seeds=$scratch/seeds
prepare_seeds() {
  rm -rf "$seeds"
  python3 "$src/fuzz/make_seeds.py" --valid-only "$seeds" || die "make_seeds.py --valid-only failed"
}

# preset and engine of a configuration for a mutant: "preset engine", or "" if n/a
config_preset() {
  local c=$1 fast=$2 p
  case "$c" in lf|lf-struct) p=fuzz ;; *) p=afl ;; esac
  [ "$fast" = 1 ] && p=$p-fast
  has_preset "$p" || return 1
  case "$c" in afl-cmplog*) has_preset afl-cmplog || return 1 ;; esac
  [ "$fast" = 1 ] && case "$c" in afl-cmplog*) ;; esac
  echo "$p"
}

# fuzz_one CONFIG PRESET TARGET WORKDIR: prints seconds to the first report, or survived / n/a
# run_until_stop STOPFILE CMD...: runs CMD, stopping it (status 254) once STOPFILE exists,
# i.e. once another target of the same mutant and configuration has reported.
run_until_stop() {
  local stop=$1 pid
  shift
  "$@" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    if [ -e "$stop" ]; then
      kill "$pid" 2>/dev/null
      wait "$pid"
      return 254
    fi
    sleep 1
  done
  wait "$pid"
}

# fuzz_one CONFIG PRESET TARGET WORKDIR: prints the seconds to the first report, "survived",
# "stopped" (another target reported first: the mutant is found) or "n/a". A report creates
# WORKDIR/../CONFIG.stop, which stops the mutant's other targets.
fuzz_one() {
  local c=$1 p=$2 t=$3 wd=$4 bin="$src/build/$2/fuzz/$3" start end rc
  local stop="${4%/*}.stop"
  [ -x "$bin" ] || { echo "n/a"; return; }
  [ -e "$stop" ] && { echo stopped; return; }
  rm -rf "$wd"; mkdir -p "$wd/corpus"
  if [ -d "$seeds/$t" ]; then cp "$seeds/$t"/* "$wd/corpus/"; else printf 'seed' >"$wd/corpus/seed-empty"; fi
  local dict="$src/fuzz/dict/$t.dict" dictarg=()
  start=$(date +%s.%N)
  case "$c" in
    lf|lf-struct)
      [ -f "$dict" ] && dictarg=(-dict="$dict")
      local structured=1
      [ "$c" = lf ] && structured=0
      (cd "$wd" && export QORUS_FUZZ_STRUCTURED=$structured &&
         run_until_stop "$stop" timeout -k 10 $((seconds + 60)) "$bin" \
         "${dictarg[@]}" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2560 \
         -print_final_stats=1 -artifact_prefix="$wd/" corpus) >"$wd/fuzz.log" 2>&1
      rc=$?
      end=$(date +%s.%N)
      if [ $rc -eq 254 ]; then
        echo stopped
      elif [ $rc -eq 0 ] && ! ls "$wd"/crash-* "$wd"/timeout-* "$wd"/oom-* >/dev/null 2>&1; then
        echo survived
      else
        : >"$stop"
        awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f\n", b - a }'
      fi ;;
    afl-cmplog|afl-cmplog-struct)
      local cmplog="$src/build/afl-cmplog/fuzz/$t" env=()
      [ -x "$cmplog" ] || { echo "n/a"; return; }
      [ -f "$dict" ] && dictarg=(-x "$dict")
      if [ "$c" = afl-cmplog-struct ]; then
        local lib="$src/build/$p/fuzz/libqorus_mutator_$t.so"
        [ -f "$lib" ] || { echo "n/a"; return; }
        env=(AFL_CUSTOM_MUTATOR_LIBRARY="$lib")
      fi
      (cd "$wd" && run_until_stop "$stop" env AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 AFL_NO_UI=1 \
         AFL_BENCH_UNTIL_CRASH=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_CRASHES=1 \
         "${env[@]}" timeout -k 10 $((seconds + 60)) afl-fuzz -i corpus -o out -m none -t 25000 \
         -V "$seconds" "${dictarg[@]}" -c "$cmplog" -- "$bin") >"$wd/fuzz.log" 2>&1
      rc=$?
      end=$(date +%s.%N)
      [ $rc -eq 254 ] && { echo stopped; return; }
      local first
      first=$(find "$wd/out" \( -path '*/crashes/id:*' -o -path '*/hangs/id:*' \) -printf '%T@\n' 2>/dev/null |
              sort -n | head -n 1)
      if [ -n "$first" ]; then
        : >"$stop"
        awk -v a="$start" -v b="$first" 'BEGIN { printf "%.1f\n", b - a }'
      elif grep -q "valid input seed that does not crash" "$wd/fuzz.log"; then
        : >"$stop"  # every seed already crashes the mutant: found before any search
        echo "0.0"
      elif [ ! -f "$wd/out/default/fuzzer_stats" ]; then
        echo "n/a"  # afl-fuzz did not start (see fuzz.log)
      else
        echo survived
      fi ;;
  esac
}

search_one() { # prints one result column per configuration, tab-separated
  local m=$1 log=$2 name fast=0 targets cols=() c p
  name=$(basename "$m" .patch)
  [ "$(field "$m" build)" = fast-arena ] && fast=1
  targets=$(field "$m" targets)
  for c in ${configs//,/ }; do
    if [[ $targets == \(* ]]; then cols+=("no-target"); continue; fi
    if ! p=$(config_preset "$c" "$fast"); then cols+=("n/a"); continue; fi
    local what=$targets # only the binaries this mutant is fuzzed with: a quick relink
    [[ $c == afl-*-struct ]] && what+=" fuzz_mutators"
    if ! build_preset "$p" "$log" "$what" ||
       { [[ $c == afl-cmplog* ]] && ! build_preset afl-cmplog "$log" "$what"; }; then
      cols+=("build-failed"); continue
    fi
    # run the named targets, -j at a time; the mutant's result is the fastest report
    local t i=0 pids=() best=survived res
    mkdir -p "$out/work/$name/$c"
    rm -f "$out/work/$name/$c.stop"
    for t in $targets; do
      ( fuzz_one "$c" "$p" "$t" "$out/work/$name/$c/$t" >"$out/work/$name/$c.$t.res" ) &
      pids+=($!)
      i=$((i + 1))
      if [ $((i % jobs)) -eq 0 ]; then wait "${pids[@]}"; pids=(); fi
    done
    [ ${#pids[@]} -gt 0 ] && wait "${pids[@]}"
    for t in $targets; do
      res=$(cat "$out/work/$name/$c.$t.res" 2>/dev/null || echo n/a)
      echo "$name $c $t $res" >>"$log"
      case "$res" in
        survived|stopped|n/a) [ "$best" = survived ] && [ "$res" = n/a ] && best=n/a ;;
        *) if [[ $best == survived || $best == n/a ]] || awk -v x="$res" -v y="${best%%s *}" 'BEGIN { exit !(x < y) }'; then
             best="${res}s ($t)"
           fi ;;
      esac
    done
    cols+=("$best")
  done
  local IFS=$'\t'
  echo "${cols[*]}"
}

# ---- the run ----------------------------------------------------------------------------
tsv=$out/results.tsv
if [ "$mode" = regression ]; then
  printf 'mutant\tclass\tmemory-safety\tbuild\tresult\tseconds\n' >"$tsv"
else
  prepare_seeds
  mkdir -p "$out/work"
  printf 'mutant\tclass\tmemory-safety\tbuild\t%s\n' "${configs//,/$'\t'}" >"$tsv"
fi

# The clean tree must build and (regression) pass first, or no result means anything: checked
# once per preset, before its first mutant. Mutants run grouped by build (asan ones first,
# then the fast-arena ones, whose header change rebuilds everything).
ordered=()
for m in "${mutants[@]}"; do [ "$(field "$m" build)" != fast-arena ] && ordered+=("$m"); done
for m in "${mutants[@]}"; do [ "$(field "$m" build)" = fast-arena ] && ordered+=("$m"); done
mutants=("${ordered[@]}")
baselined=" "
check_clean() { # check_clean MUTANT: the clean tree passes with the mutant's preset
  local p=asan r
  [ "$mode" = regression ] || return 0
  [ "$(field "$1" build)" = fast-arena ] && p=release
  [ -n "$force_preset" ] && p=$force_preset
  [[ $baselined == *" $p "* ]] && return 0
  echo "mutation-test: building and testing the clean tree ($p)"
  r=$(regression_one "$1" "$out/clean-$p.log")
  case "$r" in survived*) ;; *) die "the clean tree does not pass: $r (see $out/clean-$p.log)" ;; esac
  baselined+="$p "
}

for m in "${mutants[@]}"; do
  name=$(basename "$m" .patch)
  log=$out/$name.log
  : >"$log"
  cls=$(field "$m" class) mem=$(field "$m" memory-safety) bk=$(field "$m" build)
  check_clean "$m"
  t0=$(date +%s)
  if ! apply_mutant "$m" 2>>"$log"; then
    res="does-not-apply"
    [ "$mode" = search ] && res=$(printf 'does-not-apply%.0s\t' ${configs//,/ } | sed 's/\t$//')
  elif [ "$mode" = regression ]; then
    res=$(regression_one "$m" "$log")
  else
    res=$(search_one "$m" "$log")
  fi
  revert_mutant
  t1=$(date +%s)
  if [ "$mode" = regression ]; then
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$cls" "$mem" "$bk" "$res" $((t1 - t0)) >>"$tsv"
  else
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$cls" "$mem" "$bk" "$res" >>"$tsv"
  fi
  echo "mutation-test: $name: $res ($((t1 - t0))s)"
done

# ---- kill matrix and score ----------------------------------------------------------------
python3 - "$tsv" "$mode" >"$out/matrix.md" <<'EOF'
import csv, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter="\t"))
head, body = rows[0], rows[1:]
mode = sys.argv[2]
cols = [4] if mode == "regression" else list(range(4, len(head)))
print("| mutant | class | mem | " + " | ".join(head[c] for c in cols) + " |")
print("|---|---|---|" + "---|" * len(cols))
for r in body:
    print("| %s | %s | %s | %s |" % (r[0], r[1], r[2], " | ".join(r[c] for c in cols)))
print()
def killed(v):
    return not (v.startswith("survived") or v in ("n/a", "no-target") or v.startswith("build-failed")
                or v.startswith("does-not-apply"))
for c in cols:
    runs = [r for r in body if not (r[c] in ("n/a", "no-target") or r[c].startswith("build-failed")
                                    or r[c].startswith("does-not-apply"))]
    k = sum(1 for r in runs if killed(r[c]))
    bad = len(body) - len(runs)
    score = 100.0 * k / len(runs) if runs else 0.0
    print("%s: %d of %d mutants killed, mutation score %.1f%%%s" %
          (head[c], k, len(runs), score, " (%d not run: n/a, no target, build failed)" % bad if bad else ""))
EOF
cat "$out/matrix.md"
echo "mutation-test: results in $out (results.tsv, matrix.md, <mutant>.log)"
