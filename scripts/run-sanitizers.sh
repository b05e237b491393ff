#!/usr/bin/env bash
# Builds and runs the test suite under AddressSanitizer + UndefinedBehaviorSanitizer, then under
# ThreadSanitizer (separate build directories). The compile-fail pins and the install test are
# left out: they test the toolchain and packaging, not runtime behaviour, and an instrumented
# library cannot be linked by the uninstrumented consumer project. No -Werror here: g++ 12's flow
# analysis under -fsanitize gives false -Wmaybe-uninitialized; the normal build enforces warnings.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null  # packages
# Under TSan a process that ends with more than one thread sleeps atexit_sleep_ms (default 1 s)
# before exiting; every child would take a second to end. Children inherit the setting.
# scripts/tsan.supp: what TSan cannot see inside the uninstrumented libstdc++ (the file says why).
export TSAN_OPTIONS="${TSAN_OPTIONS:+$TSAN_OPTIONS:}atexit_sleep_ms=0:suppressions=$PWD/scripts/tsan.supp"
for kind in asan tsan; do
  flag=$([ "$kind" = asan ] && echo -DPROCXY_ASAN=ON || echo -DPROCXY_TSAN=ON)
  dir=build-$kind
  echo "== $kind"
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$flag" >/dev/null
  cmake --build "$dir" -j"$(nproc)" >/dev/null
  ctest --test-dir "$dir" --output-on-failure -j"$(nproc)" --timeout 300 -E "CompileFail|Install"
done
