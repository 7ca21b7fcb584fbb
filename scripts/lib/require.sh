# Sourced by scripts/run-main.sh and scripts/test-all.sh: makes sure the tools they need are
# here BEFORE anything is built. As root, missing Debian packages are installed
# (apt-get update once, then apt-get install -y); otherwise one line gives the exact
# install command and the script exits 1 — never a "command not found" halfway through.
#
#   qorus_require NAME...   NAME: cmake cc make clang llvm asan-rt fuzzer-rt valgrind curl
#                           pcre2 node npm
#
# Environment (for tests): QORUS_REQUIRE_AS_ROOT=0 behaves as a non-root user even as root,
# =1 as root; QORUS_REQUIRE_DRY_RUN=1 prints the apt-get commands instead of running them.

# Debian package that provides each requirement.
qorus_require_package() {
  case "$1" in
    cmake) echo cmake ;;
    cc | make) echo build-essential ;;
    clang) echo clang ;;
    llvm) echo llvm ;;
    asan-rt | fuzzer-rt) echo "libclang-rt-$(qorus_clang_major)-dev" ;;
    valgrind) echo valgrind ;;
    curl) echo "curl ca-certificates" ;;
    pcre2) echo libpcre2-dev ;;
    node) echo nodejs ;;
    npm) echo "npm ca-certificates" ;;
    *) echo "$1" ;;
  esac
}

# Major version of the clang on PATH (14 on Debian 12), or of Debian's default clang.
qorus_clang_major() {
  local v=""
  if command -v clang >/dev/null 2>&1; then
    v=$(clang -dumpversion 2>/dev/null | cut -d. -f1)
  fi
  echo "${v:-14}"
}

# 0 if requirement $1 is satisfied.
qorus_require_check() {
  case "$1" in
    cmake) command -v cmake >/dev/null 2>&1 && command -v ctest >/dev/null 2>&1 ;;
    cc) command -v cc >/dev/null 2>&1 ;;
    make) command -v make >/dev/null 2>&1 ;;
    clang) command -v clang >/dev/null 2>&1 ;;
    llvm) command -v llvm-symbolizer >/dev/null 2>&1 || command -v "llvm-symbolizer-$(qorus_clang_major)" >/dev/null 2>&1 ;;
    asan-rt) command -v clang >/dev/null 2>&1 && qorus_clang_links -fsanitize=address,undefined ;;
    fuzzer-rt) command -v clang >/dev/null 2>&1 && qorus_clang_links -fsanitize=fuzzer,address ;;
    valgrind) command -v valgrind >/dev/null 2>&1 ;;
    curl) command -v curl >/dev/null 2>&1 ;;
    pcre2) [ -f /usr/include/pcre2.h ] || [ -f /usr/local/include/pcre2.h ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

# 0 if clang links a trivial program with the given flags (the sanitizer runtime exists).
qorus_clang_links() {
  local d rc
  d=$(mktemp -d "${TMPDIR:-/tmp}/qorus-require.XXXXXX") || return 1
  if [[ " $* " == *fuzzer* ]]; then
    printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' >"$d/t.c"
  else
    printf 'int main(void) { return 0; }\n' >"$d/t.c"
  fi
  clang "$@" -o "$d/t" "$d/t.c" >/dev/null 2>&1
  rc=$?
  rm -rf "$d"
  return $rc
}

qorus_is_root() {
  case "${QORUS_REQUIRE_AS_ROOT:-}" in
    0) return 1 ;;
    1) return 0 ;;
  esac
  [ "$(id -u)" = 0 ]
}

qorus_require() {
  local missing=() pkgs=() name p
  for name in "$@"; do
    [[ " ${missing[*]} " == *" $name "* ]] && continue
    qorus_require_check "$name" || missing+=("$name")
  done
  [ ${#missing[@]} = 0 ] && return 0
  for name in "${missing[@]}"; do
    for p in $(qorus_require_package "$name"); do
      [[ " ${pkgs[*]} " == *" $p "* ]] || pkgs+=("$p")
    done
  done
  local cmd="apt-get install -y --no-install-recommends ${pkgs[*]}"
  if ! qorus_is_root; then
    echo "$(basename "$0"): missing ${missing[*]}: install with: sudo apt-get update && sudo $cmd" >&2
    exit 1
  fi
  if [ "${QORUS_REQUIRE_DRY_RUN:-0}" = 1 ]; then
    echo "would run: apt-get update && $cmd" >&2
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$(basename "$0"): missing ${missing[*]} and no apt-get to install Debian packages ${pkgs[*]}" >&2
    exit 1
  fi
  echo "$(basename "$0"): installing ${pkgs[*]} (for ${missing[*]})" >&2
  if [ -z "${QORUS_APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || { echo "$(basename "$0"): apt-get update failed" >&2; exit 1; }
    export QORUS_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $cmd >&2 || { echo "$(basename "$0"): $cmd failed" >&2; exit 1; }
  for name in "${missing[@]}"; do
    qorus_require_check "$name" || { echo "$(basename "$0"): $name still missing after installing ${pkgs[*]}" >&2; exit 1; }
  done
}
