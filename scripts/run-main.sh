#!/usr/bin/env bash
# The main job: builds the release preset and generates text from the real stories260K
# model with `qorus run`. The model is taken from $QORUS_MODELS, else ../shared/models,
# else downloaded from its public location and checked against its SHA-256. Missing tools
# (cmake, a compiler, make, curl when a download is needed) are installed first when run as
# root, otherwise it stops with one line giving the install command (scripts/lib/require.sh).
#
#   scripts/run-main.sh ["PROMPT"] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
prompt=${1:-"Once upon a time"}
steps=${2:-256}

models=""
for dir in "${QORUS_MODELS:-}" ../shared/models build/models; do
  if [ -n "$dir" ] && [ -f "$dir/stories260K.bin" ] && [ -f "$dir/tok512.bin" ]; then
    models=$dir
    break
  fi
done

# Every tool first (installed with apt-get as root, else one line saying how), then build.
. scripts/lib/require.sh
if [ -z "$models" ]; then qorus_require cmake cc make pcre2 curl; else qorus_require cmake cc make pcre2; fi

mkdir -p build
if ! { cmake --preset release && cmake --build --preset release -j "${QORUS_JOBS:-2}"; } >build/run-main-build.log 2>&1; then
  cat build/run-main-build.log >&2
  echo "run-main.sh: the release build failed (log above)" >&2
  exit 1
fi

if [ -z "$models" ]; then
  models=build/models
  mkdir -p "$models"
  base=https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K
  for f in stories260K.bin tok512.bin; do
    if [ ! -f "$models/$f" ]; then
      echo "run-main.sh: downloading $f from $base" >&2
      curl -fsSL -o "$models/$f.part" "$base/$f"
      mv "$models/$f.part" "$models/$f"
    fi
  done
  (cd "$models" && sha256sum -c --quiet - <<'SUMS'
b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696  stories260K.bin
037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312  tok512.bin
SUMS
  ) || { echo "run-main.sh: downloaded model does not match its SHA-256; removed" >&2; rm -f "$models"/*.bin; exit 1; }
fi

exec build/release/qorus run "$models/stories260K.bin" -z "$models/tok512.bin" -i "$prompt" -n "$steps" -t 0
