#!/usr/bin/env bash
# Installs what procxy needs from Debian 12's packages (only what is missing), then configures and
# builds into ./build. Usage: scripts/setup.sh [extra cmake -D options]
set -euo pipefail
cd "$(dirname "$0")/.."

# The library: a C++20 compiler, CMake, Boost >= 1.81's headers, libseccomp (the sandbox; found
# with pkg-config) and GCC's libbacktrace (libgcc-12-dev; optional, for backtraces). The tests:
# GoogleTest, clang (+ its runtime: the fuzzers), clang-format-14 (the format check). The
# benchmarks: Google Benchmark, cereal, Cap'n Proto.
packages=(build-essential cmake g++ libboost1.81-dev libgcc-12-dev pkg-config libseccomp-dev
          libgtest-dev libgmock-dev clang libclang-rt-14-dev
          libbenchmark-dev libcereal-dev libcapnp-dev capnproto clang-format-14)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

build_type=${BUILD_TYPE:-RelWithDebInfo}
cmake -S . -B "${BUILD_DIR:-build}" -DCMAKE_BUILD_TYPE="$build_type" "$@" >/dev/null
cmake --build "${BUILD_DIR:-build}" -j"$(nproc)"
