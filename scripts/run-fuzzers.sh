#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, -DPROCXY_FUZZ=ON, in ./build-fuzz) and fuzzes each for
# PROCXY_FUZZ_SECONDS seconds (default 60), starting from a temporary copy of its seed corpus in
# fuzz/corpus (new corpus entries are thrown away, never written into the repository). Exits
# non-zero if any target finds a crash, a sanitizer report, a leak, a timeout or an out-of-memory;
# the input that did it is kept in build-fuzz/artifacts/<target>/. See docs/fuzzing.md.
# Usage: scripts/run-fuzzers.sh [target...]      targets: frame value message ring (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null  # packages (clang, libclang-rt-14-dev: libFuzzer's runtime)

seconds=${PROCXY_FUZZ_SECONDS:-60}
targets=("$@")
((${#targets[@]})) || targets=(frame value message ring)
dir=build-fuzz

CC=clang CXX=clang++ cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPROCXY_FUZZ=ON >/dev/null
cmake --build "$dir" -j"$(nproc)" --target "${targets[@]/%/_fuzz}" >/dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "$dir/artifacts/$t"
  cp fuzz/corpus/"$t"/* "$work/$t/"
  echo "== $t: fuzzing for ${seconds}s"
  log="$dir/artifacts/$t/last-run.log"
  if "$dir/fuzz/${t}_fuzz" "$work/$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=30 \
       -print_final_stats=1 -artifact_prefix="$dir/artifacts/$t/" >"$log" 2>&1; then
    grep -E "^(Done|stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)" "$log" || true
    grep -E "^#[0-9]+" "$log" | tail -n 1 || true
  else
    tail -n 60 "$log"
    echo "== $t: FAILED (log: $log; reproduce: $dir/fuzz/${t}_fuzz <artifact>)"
    failed+=("$t")
  fi
done
if ((${#failed[@]})); then
  echo "fuzzers failed: ${failed[*]}"
  exit 1
fi
echo "fuzzers passed: ${targets[*]} (${seconds}s each)"
