#!/usr/bin/env bash
# scripts/lib/require.sh on a "fresh machine": a PATH of symlinks to every tool except
# cmake/ctest and clang/llvm. As a non-root user (QORUS_REQUIRE_AS_ROOT=0) each README
# command must print exactly one line with the install command and exit 1 before building
# anything; as root (QORUS_REQUIRE_AS_ROOT=1, QORUS_REQUIRE_DRY_RUN=1) it must decide to
# install exactly the missing packages. With the real PATH nothing is missing.
#
#   test_require.sh SOURCE_DIR
set -u
src=$1
fake=$(mktemp -d "${TMPDIR:-/tmp}/qorus-require-test.XXXXXX")
trap 'rm -rf "$fake"' EXIT
mkdir "$fake/bin"
IFS=: read -r -a dirs <<<"$PATH"
for d in "${dirs[@]}"; do
  [ -d "$d" ] || continue
  for f in "$d"/*; do
    n=$(basename "$f")
    case "$n" in cmake | ctest | clang* | llvm-* | cc | gcc | c99 | valgrind) continue ;; esac
    [ -e "$fake/bin/$n" ] || ln -s "$f" "$fake/bin/$n" 2>/dev/null
  done
done
fail=0
check() { # name status want_status output_pattern output
  local lines
  lines=$(printf '%s' "$5" | grep -c '')
  if [ "$2" != "$3" ] || [ "$lines" != 1 ] || ! grep -qE "$4" <<<"$5"; then
    echo "FAIL $1: status $2 (want $3), $lines line(s): $5"
    fail=1
  else
    echo "ok   $1: $5"
  fi
}
for script in run-main.sh test-all.sh; do
  out=$(cd "$src" && PATH="$fake/bin" QORUS_REQUIRE_AS_ROOT=0 QORUS_MODELS="${QORUS_MODELS:-}" \
        "scripts/$script" 2>&1 >/dev/null)
  st=$?
  check "$script as a user" "$st" 1 "install with: sudo apt-get update && sudo apt-get install -y .*cmake.*build-essential" "$out"
  out=$(cd "$src" && PATH="$fake/bin" QORUS_REQUIRE_AS_ROOT=1 QORUS_REQUIRE_DRY_RUN=1 bash -c \
        '. scripts/lib/require.sh; qorus_require cmake cc make clang llvm asan-rt valgrind' 2>&1)
  check "$script as root (dry run)" 0 0 "would run: apt-get update && apt-get install -y .*cmake build-essential clang llvm libclang-rt-[0-9]+-dev valgrind" "$out"
done
out=$(cd "$src" && bash -c '. scripts/lib/require.sh; qorus_require cmake cc make' 2>&1)
st=$?
if [ $st != 0 ] || [ -n "$out" ]; then echo "FAIL real PATH: $st $out"; fail=1; else echo "ok   real PATH: nothing missing"; fi
exit $fail
