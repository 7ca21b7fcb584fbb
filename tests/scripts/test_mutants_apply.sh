#!/usr/bin/env bash
# Every planted bug in fuzz/mutants/ still applies to the tree (and reverts cleanly), so
# scripts/mutation-test.sh measures what it says. A patch that no longer applies after a
# change to the code it mutates must be regenerated against the new code, or dropped.
#
#   tests/scripts/test_mutants_apply.sh SOURCE_DIR
#
# Uses `patch --dry-run --fuzz=0` (as strict as the `git apply` of mutation-test.sh, and works
# without a git checkout). Exit 1 naming every patch that
# does not apply; also fails when there are fewer than 30 mutants.
set -euo pipefail
src=${1:?usage: test_mutants_apply.sh SOURCE_DIR}
cd "$src"
n=0 bad=0
for f in fuzz/mutants/*.patch; do
  n=$((n + 1))
  if ! patch -p1 --dry-run --force --fuzz=0 --silent <"$f" >/dev/null 2>&1; then
    echo "test_mutants_apply: $f does not apply to the tree" >&2
    bad=$((bad + 1))
  fi
done
echo "test_mutants_apply: $n mutants, $bad not applying"
if [ "$n" -lt 30 ]; then
  echo "test_mutants_apply: fewer than 30 mutants in fuzz/mutants/" >&2
  exit 1
fi
[ "$bad" -eq 0 ]
