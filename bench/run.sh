#!/usr/bin/env bash
# bench/run.sh — builds procxy_call_bench (Release) and runs every call benchmark side by side
# with its baselines, then prints the ratio table of docs/benchmarks.md.
#
#   bench/run.sh                      # ~2.5 minutes on a 2-core machine
#   BUILD=/tmp/b bench/run.sh         # another build directory (default: <repo>/build-bench)
#   PROCXY_BENCH_PASSES=1cpu bench/run.sh          # only the pinned pass
#   bench/run.sh --benchmark_filter=Sequential     # extra flags go to the benchmark binary
#   bench/run.sh --table-only A.json [B.json]      # only print the table of earlier runs
#
# Two passes, each one run of the whole suite (baselines and subjects in the same process):
#   1cpu  everything pinned to CPU 0 (taskset; children inherit it). Wake-ups are same-CPU
#         context switches, so the figures are stable (cv ~3 %) and measure procxy's own cost.
#   2cpu  no pinning. Parent and child run in parallel, as in real use, but on a small VM a
#         wake-up across CPUs can cost anything from 5 to 40 µs depending on host load, so the
#         latency figures of this pass can be bimodal (see docs/benchmarks.md).
# Figures are medians of 7 repetitions, randomly interleaved so that load drifts hit baselines
# and subjects alike; a ratio is always between two medians of the same pass.
#
# A pass that has not finished after PROCXY_BENCH_TIMEOUT seconds (default 420) is treated as a
# hang: the stacks of the bench and its children are printed (if gdb is installed) and saved to
# <build>/bench/call_bench.<pass>.hang.N.txt, the processes are killed and the pass is retried,
# up to PROCXY_BENCH_ATTEMPTS (default 3) times.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
build="${BUILD:-$root/build-bench}"
timeout_s="${PROCXY_BENCH_TIMEOUT:-420}"  # a normal pass takes about 150 s
attempts="${PROCXY_BENCH_ATTEMPTS:-3}"
passes="${PROCXY_BENCH_PASSES:-1cpu 2cpu}"

table() {
  python3 - "$@" <<'PY'
import json, os, sys

scale = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}

def load(path):
    data = json.load(open(path))
    med, cv = {}, {}
    for b in data["benchmarks"]:
        if b.get("run_type") != "aggregate":
            # A benchmark of one repetition (the 10 s idle ones) has no aggregates: its run is its median.
            if b.get("repetitions", 1) == 1 and "error_occurred" not in b:
                n = b["run_name"].split("::")[-1].split("/")[0].removeprefix("BM_")
                med.setdefault(n, b)
            continue
        name = b["run_name"].split("::")[-1].split("/")[0].removeprefix("BM_")
        if b["aggregate_name"] == "median":
            med[name] = b
        elif b["aggregate_name"] == "cv":
            cv[name] = b
    label = os.path.basename(path).removeprefix("call_bench.").removesuffix(".json")
    return {"label": label, "ctx": data.get("context", {}), "med": med, "cv": cv}

runs = [load(p) for p in sys.argv[1:]]

def us(r, name):
    b = r["med"].get(name)
    return None if b is None else b["real_time"] * scale[b["time_unit"]]
def cvp(r, name):
    b = r["cv"].get(name)
    return "" if b is None else " (%.0f%%)" % (100 * b["real_time"])
def fmt(v):
    return "n/a" if v is None else ("%.2f" % v if v < 100 else "{:,.0f}".format(v))
def ratio(r, a, b):
    x, y = us(r, a), us(r, b)
    return None if x is None or y is None else x / y
def verdict(ok):
    return "n/a" if ok is None else ("met" if ok else "MISSED")

for r in runs:
    c = r["ctx"]
    print("pass %s: %s, %s CPUs, load avg %s" % (r["label"], c.get("date", "?"), c.get("num_cpus", "?"),
          " ".join("%.2f" % x for x in c.get("load_avg", []))))
print()
head = "| benchmark | baseline | target |" + "".join(" %s: median µs (cv) | ratio |" % r["label"] for r in runs)
print(head)
print("|---|---|---|" + "---|---|" * len(runs))
rows = [
    ("RawPingPong", None, None, ""),
    ("ProxyAddSequential", "RawPingPong", 1.15, "≤ 1.15×"),
    ("ProxyAddSequential_Timeout", "RawPingPong", None, "(info)"),
    ("RawShmPingPong", None, None, "(baseline of the shared-memory transport)"),
    ("ProxyAddSequential_Shm", "RawShmPingPong", 1.2, "≤ 1.2× (and ≤ 2 µs on two CPUs)"),
    ("ProxyAddSequential_Shm", "ProxyAddSequential", 1.0, "≤ 1.0× the socket (one CPU)"),
    ("ProxyDivideThrows", "ProxyAddSequential", None, "(info: exception vs value)"),
    ("ProxyDivideThrows_Backtrace", "ProxyDivideThrows", None, "(info: backtrace on)"),
    ("PosixSpawnReplyOnce", None, None, ""),
    ("PosixSpawnSelfReplyOnce", "PosixSpawnReplyOnce", None, "(info)"),
    ("SpawnToFirstResult", "PosixSpawnReplyOnce", 1.3, "≤ 1.3×"),
    ("SpawnToFirstResult_Fork", "PosixSpawnReplyOnce", None, "(info)"),
    ("SpawnToFirstResult", "PosixSpawnSelfReplyOnce", None, "(info: procxy's own share)"),
]
for name, base, limit, target in rows:
    cells = ""
    for r in runs:
        if name not in r["med"]:
            cells += " n/a | |"
            continue
        rr = ratio(r, name, base) if base else 1.0
        res = ""
        if limit is not None and rr is not None:
            res = " " + verdict(rr <= limit)
        cells += " %s%s | %s%s |" % (fmt(us(r, name)), cvp(r, name),
                                     "n/a" if rr is None else "%.2f" % rr, res)
    print("| %s | %s | %s |%s" % (name, base or "—", target, cells))
for name, base, target, floor in [
        ("RawInFlight1000", None, "(baseline: a write per reply)", None),
        ("RawInFlight1000_Batched", "RawInFlight1000", "(info: a write per read)", None),
        ("ProxyAddInFlight1000", "RawInFlight1000", "≥ 2,000,000 calls/s", 2000000),
        ("ProxyAddInFlight1000_Shm", "RawInFlight1000", "≥ 5,000,000 calls/s", 5000000)]:
    cells = ""
    for r in runs:
        b = r["med"].get(name)
        ips = b.get("items_per_second") if b else None
        rr = ratio(r, name, base) if base else 1.0
        cells += " %s per 1,000%s | %s calls/s%s, %s× |" % (
            fmt(us(r, name)), cvp(r, name), "n/a" if ips is None else "{:,.0f}".format(ips),
            "" if floor is None else " " + verdict(None if ips is None else ips >= floor),
            "n/a" if rr is None else "%.2f" % rr)
    print("| %s | %s | %s |%s" % (name, base or "—", target, cells))
def callback_row(name, label, base_name, limit):
    cells = ""
    for r in runs:
        b = r["med"].get(name)
        ips = b.get("items_per_second") if b else None
        base = us(r, base_name)
        per = None if not ips else 1e6 / ips
        rr = None if per is None or base is None else per / base
        cells += " %s per callback | %s %s |" % (fmt(per), "n/a" if rr is None else "%.2f" % rr,
                                                 verdict(None if rr is None else rr <= limit))
    print("| %s | %s | ≤ %s× |%s" % (label, base_name, limit, cells))
callback_row("CallbackRoundTrip", "CallbackRoundTrip (child calls a parent int(int))", "RawPingPong", 1.15)
callback_row("CallbackRoundTrip_Shm", "CallbackRoundTrip_Shm", "RawShmPingPong", 1.2)
def rate_row(name, label, unit, floor):
    cells = ""
    for r in runs:
        b = r["med"].get(name)
        ips = b.get("items_per_second") if b else None
        cells += " — | %s %s/s %s |" % ("n/a" if ips is None else "{:,.0f}".format(ips), unit,
                                        verdict(None if ips is None else ips >= floor))
    print("| %s | — | ≥ {:,}/s |%s".format(floor) % (label, cells))
rate_row("NotifyStream", "NotifyStream (one-way, coalesced)", "notifications", 1000000)
rate_row("EventStream", "EventStream (child → parent, one listener, coalesced)", "events", 5000000)
rate_row("NotifyStream_Shm", "NotifyStream_Shm", "notifications", 1000000)
rate_row("EventStream_Shm", "EventStream_Shm", "events", 10000000)
def rows_row(name, label):
    cells = ""
    for r in runs:
        b = r["med"].get(name)
        ips = b.get("items_per_second") if b else None
        base = r["med"].get("RowsByCallback", {}).get("items_per_second")
        ratio = None if not ips or not base else ips / base
        cells += " — | %s rows/s, %s× the callback |" % (
            "n/a" if ips is None else "{:,.0f}".format(ips), "n/a" if ratio is None else "%.1f" % ratio)
    print("| %s | RowsByCallback | (info) |%s" % (label, cells))
rows_row("RowsByCallback", "RowsByCallback (a row {int, string, double} per std::function call)")
rows_row("RowsByNotify", "RowsByNotify (procxy::notify<void(Row)>)")
rows_row("RowsByEvent", "RowsByEvent (procxy::event<Row>, one listener)")
rows_row("RowsReturned", "RowsReturned (std::vector<Row> returned by one call)")
for name in ("IdleProxyCpu_Socket", "IdleProxyCpu_Shm"):
    cells = ""
    for r in runs:
        b = r["med"].get(name, {})
        pct = b.get("idle_cpu_percent")
        cells += " — | %s %s |" % ("n/a" if pct is None else "%.3f %% of a CPU" % pct,
                                   verdict(None if pct is None else pct <= 1.0))
    print("| %s (parent + child, 10 s idle after 1,000 calls) | — | ≤ 1 %% |%s" % (name, cells))
cells = ""
for r in runs:
    b = r["med"].get("EventLatency")
    lat = b.get("emit_to_listener_us") if b else None
    base = us(r, "RawPingPong")
    rr = None if lat is None or base is None else lat / base
    cells += " %s emit → listener | %s |" % (fmt(lat), "n/a" if rr is None else "%.2f× RawPingPong" % rr)
print("| EventLatency (one event, inside a call) | RawPingPong | (info) |%s" % cells)

phases = ("PosixSpawnReplyOnce", "PosixSpawnSelfReplyOnce", "SpawnToFirstResult", "SpawnToFirstResult_Fork")
print()
print("| spawn phase (median of per-repetition means, µs) |" +
      "".join(" %s: start → first result | ratio | first result → reaped | ratio |" % r["label"] for r in runs))
print("|---|" + "---|---|---|---|" * len(runs))
for n in phases:
    cells = ""
    for r in runs:
        b, base = r["med"].get(n), r["med"].get("PosixSpawnReplyOnce", {})
        if not b or "first_result_us" not in b:
            cells += " n/a | | n/a | |"
            continue
        rr = lambda k: "%.2f" % (b[k] / base[k]) if base.get(k) else "n/a"
        cells += " %s | %s | %s | %s |" % (fmt(b["first_result_us"]), rr("first_result_us"),
                                          fmt(b["teardown_us"]), rr("teardown_us"))
    print("| %s |%s" % (n, cells))

print()
print("| idle process, 100 ms after its first call (KiB) |" +
      "".join(" %s: VmRSS | RssAnon | RssFile | Pss |" % r["label"] for r in runs) + " target |")
print("|---|" + "---|---|---|---|" * len(runs) + "---|")
for name, label, limit in [("IdleChildRss", "procxy Calculator child (reexec)", 4096),
                           ("IdleSelfReplyOnceRss", "same binary, no procxy (--reply-once)", None),
                           ("IdleReplyOnceRss", "procxy_reply_once (libc only)", None)]:
    cells = ""
    for r in runs:
        b = r["med"].get(name, {})
        g = lambda k: "{:,.0f}".format(b[k]) if k in b else "n/a"
        res = ""
        if limit and "child_rss_kib" in b:
            res = " " + verdict(b["child_rss_kib"] <= limit)
        cells += " %s%s | %s | %s | %s |" % (g("child_rss_kib"), res, g("child_rss_anon_kib"),
                                            g("child_rss_file_kib"), g("child_pss_kib"))
    print("| %s |%s %s |" % (label, cells, "≤ 4,096" if limit else ""))
print()
for r in runs:
    b = r["med"].get("IdleChildRss", {})
    seq = r["med"].get("ProxyAddSequential", {})
    inf = r["med"].get("ProxyAddInFlight1000", {})
    print("%s: parent VmRSS %s KiB, child threads %s; parent write syscalls per call: sequential %s, "
          "1,000 in flight %s" % (r["label"],
          "{:,.0f}".format(b["parent_rss_kib"]) if "parent_rss_kib" in b else "n/a",
          "%.0f" % b["child_threads"] if "child_threads" in b else "n/a",
          "%.3f" % seq["write_syscalls_per_call"] if "write_syscalls_per_call" in seq else "n/a",
          "%.3f" % inf["write_syscalls_per_call"] if "write_syscalls_per_call" in inf else "n/a"))
PY
}

if [[ "${1:-}" == "--table-only" ]]; then
  shift
  table "$@"
  exit 0
fi

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPROCXY_BUILD_BENCH=ON \
  -DPROCXY_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j2 --target procxy_call_bench procxy_reply_once >/dev/null

rev="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git -C "$root" status --porcelain -- src include 2>/dev/null | wc -l)"
echo "procxy $rev ($dirty uncommitted file(s) in src/ include/), build $build"

# Stacks of a process and its children, for a hang report (gdb is optional).
dump_stacks() {
  local pids="$1 $(pgrep -P "$1" | tr '\n' ' ' || true)"
  if ! command -v gdb >/dev/null; then
    echo "(install gdb to get the stacks of a hung run)"
    return
  fi
  for p in $pids; do
    echo "--- stacks of pid $p ($(cat /proc/"$p"/comm 2>/dev/null))"
    gdb -p "$p" -batch -ex "thread apply all bt 12" 2>/dev/null | grep -E '^(#|Thread)' || true
  done
}

# run_pass NAME [benchmark flags...]: one complete run of the suite; retried if it hangs.
run_pass() {
  local name="$1"
  shift
  local pin=()
  [[ "$name" == 1cpu ]] && pin=(taskset -c 0)
  local out="$build/bench/call_bench.$name.json" txt="$build/bench/call_bench.$name.txt"
  local i t pid rc children
  for ((i = 1; i <= attempts; i++)); do
    rm -f "$out"
    "${pin[@]}" "$build/bench/procxy_call_bench" \
      --benchmark_repetitions=7 \
      --benchmark_report_aggregates_only=true \
      --benchmark_enable_random_interleaving=true \
      --benchmark_min_time=0.5 \
      --benchmark_out="$out" --benchmark_out_format=json \
      "$@" >"$txt" 2>&1 &
    pid=$!
    for ((t = 0; t < timeout_s; t++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "pass $name, attempt $i: still running after ${timeout_s}s: hung (docs/benchmarks.md, 'Hangs')" >&2
      dump_stacks "$pid" | tee "$build/bench/call_bench.$name.hang.$i.txt" >&2
      children="$(pgrep -P "$pid" | tr '\n' ' ' || true)"
      kill -KILL "$pid" $children 2>/dev/null || true
    fi
    set +e
    wait "$pid"
    rc=$?
    set -e
    if [[ $rc -eq 0 ]]; then
      echo "pass $name: $txt, $out" >&2
      return 0
    fi
    echo "pass $name, attempt $i: exit status $rc" >&2
    tail -5 "$txt" >&2 || true
  done
  echo "pass $name: no complete run in $attempts attempts" >&2
  return 1
}

jsons=()
for p in $passes; do
  if run_pass "$p" "$@"; then
    jsons+=("$build/bench/call_bench.$p.json")
  fi
done
[[ ${#jsons[@]} -gt 0 ]] || exit 1
echo
table "${jsons[@]}"
