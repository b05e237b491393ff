#!/usr/bin/env bash
# Checks that every C++ file of the tree is formatted by .clang-format (clang-format 14, Debian
# 12's). Exit 0: formatted; 1: not (the files and a diff are printed); 77: no clang-format-14
# (CTest reports the test as skipped). Fix with: scripts/check-format.sh --fix
set -uo pipefail
cd "$(dirname "$0")/.."
cf=$(command -v clang-format-14 || true)
if [ -z "$cf" ]; then
  echo "check-format: clang-format-14 not found (scripts/setup.sh installs it)"
  exit 77
fi
# tests/compile_fail is left as written: its cases are checked line by line ("// expect: ...").
mapfile -t files < <( (git ls-files -- 'include/*.hpp' 'src/*.cpp' 'src/*.hpp' 'tests/*.cpp' \
                        'tests/*.hpp' 'examples/*.cpp' 'examples/*.hpp' 'bench/*.cpp' \
                        'fuzz/*.cpp' 'fuzz/*.hpp' 2>/dev/null ||
                      find include src tests examples bench fuzz -name '*.[ch]pp') |
                      grep -v '^tests/compile_fail/')
if [ "${1:-}" = "--fix" ]; then
  "$cf" -i "${files[@]}"
  exit 0
fi
bad=0
for f in "${files[@]}"; do
  if ! "$cf" --dry-run --Werror "$f" >/dev/null 2>&1; then
    echo "check-format: $f is not formatted:"
    "$cf" "$f" | diff -u "$f" - | head -20
    bad=1
  fi
done
[ $bad -eq 0 ] && echo "check-format: ${#files[@]} files formatted"
exit $bad
