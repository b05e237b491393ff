// procxy_call_bench — what a procxy call and a procxy child cost, next to baselines measured in
// the same run (the bench machine is small and shared, so only same-run ratios mean much).
//
//   BM_RawPingPong            baseline: 16-byte write/read ping-pong over an AF_UNIX socketpair
//                             with a forked child (one write + one read per side per round trip)
//   BM_RawShmPingPong         baseline of the shared-memory transport: 16-byte ping-pong through
//                             shared memory with a forked child, with the same wake-up as procxy's
//                             rings (spin up to 30 µs when another CPU is available, then futex)
//   BM_ProxyAddSequential     calc.add(a, b).get() in a loop (no call_timeout: the default)
//   ..._Shm / ..._Socket      the procxy benchmarks over one transport (spawn_options::transport);
//                             without a suffix: the socket transport (the baselines are sockets)
//   BM_IdleProxyCpu_Shm/_Socket   CPU time (parent + child, ms) of a proxy idle for 10 s after a
//   call BM_ProxyAddSequential_Timeout   the same with call_timeout = 5 s (as in
//   examples/quickstart) BM_RawInFlight1000        baseline: 1,000 16-byte requests written at once
//   to a forked child
//                             that answers each with its own write (items/s)
//   BM_RawInFlight1000_Batched   diagnostic: the same child answering a read's requests in one
//                             write (what the liveness rule forbids procxy: docs/benchmarks.md)
//   BM_ProxyAddInFlight1000   one thread issues 1,000 add() calls, then get()s them all (items/s)
//   BM_InProcessWork200us     baseline: 64 x 200 us of CPU-bound work in this thread (items/s)
//   BM_PoolWork200us/N        the same 64 calls in flight over spawn_pool<Calculator> of N members
//   BM_PosixSpawnReplyOnce    baseline: posix_spawn(procxy_reply_once) + one 16-byte request/reply
//                             over an inherited socket + waitpid
//   BM_PosixSpawnSelfReplyOnce   diagnostic: the same, but the child is this binary (what reexec
//                             starts: same libraries and static initialisers, no procxy)
//   BM_SpawnToFirstResult     spawn<Calculator>() + add().get() + ~proxy (default: reexec)
//   BM_SpawnToFirstResult_Fork      the same with spawn_mode::fork (no exec, no dynamic loading)
//   BM_SandboxSpawn_<Layer>   spawn to first result with one sandbox layer on
//   (spawn_options::sandbox): BM_SandboxCall_<Layer>    Limits, NoNewPrivs, Strict (seccomp),
//   Landlock, UserNs, NetNs, MountNs,
//                             PidNs, All; _None is the unsandboxed baseline of the same run
//                             (automatic transport, reexec)
//   BM_IdleChildRss           VmRSS of an idle Calculator child (and of this parent), KiB
//   BM_IdleReplyOnceRss       VmRSS of an idle procxy_reply_once, for scale
//   BM_IdleSelfReplyOnceRss   VmRSS of this binary idling in --reply-once mode (no procxy), for
//   scale
//
// Not benchmarks (for counting syscalls with strace / perf trace; docs/benchmarks.md):
//   --calls=N [--in-flight=M] [--call-timeout-ms=T]   spawn a Calculator (call_timeout T, default
//        none), warm up, then N sequential add() calls (or N/M batches of M in flight) between
//        two marker syscalls, write(-1, "PROCXY_BENCH_BEGIN") and write(-1, "PROCXY_BENCH_END")
//   --raw-calls=N        the same for the raw ping-pong
//   --spawns=N [--fork]  N times spawn + add().get() + ~proxy, between the markers
//   --reply-once         the child of BM_PosixSpawnSelfReplyOnce (answers one request on fd 3)
//
// main() calls procxy::init() first: procxy's default spawn mode re-executes this binary.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <procxy/procxy.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#ifndef PROCXY_BENCH_REPLY_ONCE
#error "PROCXY_BENCH_REPLY_ONCE (path of procxy_reply_once) must be defined by bench/CMakeLists.txt"
#endif

extern char** environ;

using namespace std::chrono_literals;

namespace bench {

// Spins on arithmetic for about `us` microseconds of this thread's CPU time.
inline double bench_work(int us) {
  timespec start{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &start);
  double x = 1.0;
  for (;;) {
    for (int i = 0; i < 1000; ++i) x = x * 1.0000001 + 1e-9;
    timespec now{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    const long elapsed =
        (now.tv_sec - start.tv_sec) * 1'000'000L + (now.tv_nsec - start.tv_nsec) / 1000;
    if (elapsed >= us) return x;
  }
}

class Calculator {
 public:
  explicit Calculator(int precision = 2) : precision_(precision) {}
  double add(double a, double b) { return round(a + b); }
  double divide(double a, double b) {
    if (b == 0) throw std::domain_error("division by zero");
    return round(a / b);
  }
  int whoami() { return static_cast<int>(::getpid()); }
  // CPU-bound work of about `us` microseconds (the pool benchmark's unit of work).
  double work(int us) { return bench_work(us); }

 private:
  double round(double v) const {
    double f = std::pow(10.0, precision_);
    return std::round(v * f) / f;
  }
  int precision_;
};
PROCXY_CLASS(Calculator, add, divide, whoami, work);

// Calls the parent back: `n` two-way int(int) callbacks, or `n` one-way notifications.
class Pump {
 public:
  long long pump(int n, std::function<int(int)> f) {
    long long sum = 0;
    for (int i = 0; i < n; ++i) sum += f(i);
    return sum;
  }
  void stream(int n, procxy::notify<void(int)> tick) {
    for (int i = 0; i < n; ++i) tick(i);
  }
};
PROCXY_CLASS(Pump, pump, stream);

// Emits events: `n` in one call (throughput), or one stamped with the child's steady clock
// (latency: CLOCK_MONOTONIC is the same clock in both processes).
class Emitter {
 public:
  procxy::event<int> tick;
  procxy::event<long long> stamped;
  void run(int n) {
    for (int i = 0; i < n; ++i) tick.emit(i);
  }
  void stamp() {
    stamped.emit(std::chrono::duration_cast<std::chrono::nanoseconds>(
                     std::chrono::steady_clock::now().time_since_epoch())
                     .count());
  }
};
PROCXY_CLASS(Emitter, run, stamp, tick, stamped);

// Streams rows to the parent four ways (README "Callbacks: which to use when"): a two-way
// std::function (a round trip per row), a one-way procxy::notify (coalesced), an event, or all
// rows returned at once.
struct Row {
  int id;
  std::string name;
  double value;
};
class Rows {
 public:
  procxy::event<Row> row;
  static Row make(int i) { return Row{i, "row-" + std::to_string(i), i * 0.5}; }
  void by_callback(int n, std::function<void(const Row&)> f) {
    for (int i = 0; i < n; ++i) f(make(i));
  }
  void by_notify(int n, procxy::notify<void(Row)> f) {
    for (int i = 0; i < n; ++i) f(make(i));
  }
  void by_event(int n) {
    for (int i = 0; i < n; ++i) row.emit(make(i));
  }
  std::vector<Row> returned(int n) {
    std::vector<Row> out;
    out.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) out.push_back(make(i));
    return out;
  }
};
PROCXY_CLASS(Rows, by_callback, by_notify, by_event, returned, row);

namespace {

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "procxy_call_bench: %s: %s\n", what, std::strerror(errno));
  std::abort();
}

void read_exact(int fd, void* p, std::size_t n) {
  auto* b = static_cast<unsigned char*>(p);
  while (n > 0) {
    ssize_t r = ::read(fd, b, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) die("read");
    b += r;
    n -= static_cast<std::size_t>(r);
  }
}

void write_exact(int fd, const void* p, std::size_t n) {
  auto* b = static_cast<const unsigned char*>(p);
  while (n > 0) {
    ssize_t w = ::write(fd, b, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) die("write");
    b += w;
    n -= static_cast<std::size_t>(w);
  }
}

// Forks a child connected by a socketpair: the child runs `serve(fd)` (async-signal-safe calls
// only, it must _exit), the parent gets its end in *fd. Returns the child's pid.
template <class Serve>
pid_t fork_with_socket(int* fd, Serve serve) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) die("socketpair");
  pid_t pid = ::fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    ::close(sv[0]);
    serve(sv[1]);
    _exit(0);
  }
  ::close(sv[1]);
  *fd = sv[0];
  return pid;
}

// ---- 1. baseline: raw ping-pong ----------------------------------------------------------------

// Forks the echo child of the raw baseline: read 16, write 16, until EOF. Returns its pid; *fd is
// the parent's end of the socketpair.
pid_t start_echo_child(int* fd) {
  return fork_with_socket(fd, [](int s) {
    unsigned char buf[16];
    for (;;) {
      std::size_t got = 0;
      while (got < sizeof buf) {
        ssize_t r = ::read(s, buf + got, sizeof buf - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) _exit(0);
        got += static_cast<std::size_t>(r);
      }
      std::size_t put = 0;
      while (put < sizeof buf) {
        ssize_t w = ::write(s, buf + put, sizeof buf - put);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) _exit(1);
        put += static_cast<std::size_t>(w);
      }
    }
  });
}

void BM_RawPingPong(benchmark::State& state) {
  int fd = -1;
  pid_t pid = start_echo_child(&fd);
  unsigned char msg[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  unsigned char reply[16];
  for (int i = 0; i < 100; ++i) {  // warm up both sides
    write_exact(fd, msg, sizeof msg);
    read_exact(fd, reply, sizeof reply);
  }
  for (auto _ : state) {
    write_exact(fd, msg, sizeof msg);
    read_exact(fd, reply, sizeof reply);
    benchmark::DoNotOptimize(reply);
  }
  ::close(fd);
  ::waitpid(pid, nullptr, 0);
  state.SetItemsProcessed(state.iterations());
}

// ---- 1a. baseline of the shared-memory transport: raw ping-pong through shared memory ----------

// One direction of the raw shared-memory ping-pong: a 16-byte slot, a sequence word (the futex
// word) the writer bumps, and a flag the reader sets while it sleeps. The wake-up is procxy's
// (src/shm_transport.cpp): spin while another CPU is available, then sleep on the futex.
struct raw_slot {
  alignas(64) std::atomic<std::uint32_t> seq{0};
  alignas(64) std::atomic<std::uint32_t> sleeping{0};
  alignas(64) unsigned char data[16];
};
struct raw_pair {
  raw_slot to_child, to_parent;
};

void raw_put(raw_slot& s, const unsigned char* p) {
  std::memcpy(s.data, p, 16);
  s.seq.fetch_add(1, std::memory_order_release);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (s.sleeping.load(std::memory_order_relaxed))
    ::syscall(SYS_futex, &s.seq, FUTEX_WAKE, 1, nullptr, nullptr, 0);
}

// Waits until seq moves past `last`, copies the slot out; false once `stop` says so.
void raw_get(raw_slot& s, std::uint32_t& last, unsigned char* p, bool spin) {
  if (spin) {
    auto until = std::chrono::steady_clock::now() + 30us;
    for (unsigned i = 1; s.seq.load(std::memory_order_acquire) == last; ++i) {
      __builtin_ia32_pause();
      if ((i & 15) == 0 && std::chrono::steady_clock::now() > until) break;
    }
  }
  while (s.seq.load(std::memory_order_acquire) == last) {
    s.sleeping.store(1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (s.seq.load(std::memory_order_acquire) == last)
      ::syscall(SYS_futex, &s.seq, FUTEX_WAIT, last, nullptr, nullptr, 0);
    s.sleeping.store(0, std::memory_order_relaxed);
  }
  last = s.seq.load(std::memory_order_acquire);
  std::memcpy(p, s.data, 16);
}

bool may_spin() {
  cpu_set_t set;
  CPU_ZERO(&set);
  return ::sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) >= 2;
}

void BM_RawShmPingPong(benchmark::State& state) {
  void* m =
      ::mmap(nullptr, sizeof(raw_pair), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) die("mmap");
  auto* pair = new (m) raw_pair();
  const bool spin = may_spin();
  pid_t pid = ::fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    std::uint32_t last = 0;
    unsigned char buf[16];
    for (;;) {
      raw_get(pair->to_child, last, buf, spin);
      if (buf[0] == 0xff) _exit(0);
      raw_put(pair->to_parent, buf);
    }
  }
  unsigned char msg[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  unsigned char reply[16];
  std::uint32_t last = 0;
  for (int i = 0; i < 100; ++i) {
    raw_put(pair->to_child, msg);
    raw_get(pair->to_parent, last, reply, spin);
  }
  for (auto _ : state) {
    raw_put(pair->to_child, msg);
    raw_get(pair->to_parent, last, reply, spin);
    benchmark::DoNotOptimize(reply);
  }
  msg[0] = 0xff;
  raw_put(pair->to_child, msg);
  ::waitpid(pid, nullptr, 0);
  ::munmap(m, sizeof(raw_pair));
  state.SetItemsProcessed(state.iterations());
}

// ---- 1b. baselines of 1,000 in flight: the raw socket with the same pattern ---------------------

// Forks the pipelined echo child: reads whatever requests are there (up to 64 KiB), then answers
// each 16-byte request with one 16-byte write (`batched`: one write for all the replies of a
// read). One write per reply is the least a child can do when a reply must be in the kernel
// before its next method runs (docs/design.md "Liveness", point 3).
pid_t start_pipelined_child(int* fd, bool batched) {
  return fork_with_socket(fd, [batched](int s) {
    static unsigned char buf[65536];
    std::size_t have = 0;
    for (;;) {
      ssize_t r = ::read(s, buf + have, sizeof buf - have);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) _exit(0);
      have += static_cast<std::size_t>(r);
      const std::size_t whole = have / 16 * 16;
      const std::size_t step = batched ? whole : 16;
      for (std::size_t off = 0; off < whole; off += step) {
        std::size_t put = 0;
        while (put < step) {
          ssize_t w = ::write(s, buf + off + put, step - put);
          if (w < 0 && errno == EINTR) continue;
          if (w <= 0) _exit(1);
          put += static_cast<std::size_t>(w);
        }
      }
      std::memmove(buf, buf + whole, have - whole);
      have -= whole;
    }
  });
}

// 1,000 16-byte requests written at once, then the 1,000 replies read (items/s).
void raw_in_flight(benchmark::State& state, bool batched) {
  constexpr int n = 1000;
  int fd = -1;
  pid_t pid = start_pipelined_child(&fd, batched);
  std::vector<unsigned char> out(16 * n, 7), in(16 * n);
  auto batch = [&] {
    write_exact(fd, out.data(), out.size());
    // As procxy's reader does with many calls out: yield before each read, so that on one CPU
    // the child answers a run of requests before this side reads them (not a switch per reply).
    for (std::size_t got = 0; got < in.size();) {
      ::sched_yield();
      ssize_t r = ::read(fd, in.data() + got, in.size() - got);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) die("read");
      got += static_cast<std::size_t>(r);
    }
  };
  for (int i = 0; i < 3; ++i) batch();
  for (auto _ : state) {
    batch();
    benchmark::DoNotOptimize(in.data());
  }
  ::close(fd);
  ::waitpid(pid, nullptr, 0);
  state.SetItemsProcessed(state.iterations() * n);
}

void BM_RawInFlight1000(benchmark::State& state) { raw_in_flight(state, false); }
void BM_RawInFlight1000_Batched(benchmark::State& state) { raw_in_flight(state, true); }

// ---- 2. sequential calls through procxy --------------------------------------------------------

void sequential_calls(benchmark::State& state, const procxy::spawn_options& opts) {
  auto calc = procxy::spawn<Calculator>(opts);
  calc.started().get();
  double a = 1.25;
  for (int i = 0; i < 100; ++i) benchmark::DoNotOptimize(calc.add(a, 2.5).get());
  for (auto _ : state) {
    double r = calc.add(a, 2.5).get();
    benchmark::DoNotOptimize(r);
  }
  auto st = calc.stats();
  state.counters["write_syscalls_per_call"] = benchmark::Counter(
      static_cast<double>(st.write_syscalls) / static_cast<double>(st.frames_sent));
  state.SetItemsProcessed(state.iterations());
}

const procxy::spawn_options over_socket{.transport = procxy::transport_kind::socket};
const procxy::spawn_options over_shm{.transport = procxy::transport_kind::shared_memory};

void BM_ProxyAddSequential(benchmark::State& state) { sequential_calls(state, over_socket); }
void BM_ProxyAddSequential_Shm(benchmark::State& state) { sequential_calls(state, over_shm); }
void BM_ProxyAddSequential_Timeout(benchmark::State& state) {
  sequential_calls(state, {.call_timeout = 5s, .transport = procxy::transport_kind::socket});
}

// ---- 2b. a call that throws: the cost of carrying an exception, with and without backtraces --

void throwing_calls(benchmark::State& state, const procxy::spawn_options& opts) {
  auto calc = procxy::spawn<Calculator>(opts);
  calc.started().get();
  auto once = [&] {
    try {
      calc.divide(1, 0).get();
    } catch (const std::domain_error& e) {
      benchmark::DoNotOptimize(e.what());
    }
  };
  for (int i = 0; i < 20; ++i) once();  // warm: libbacktrace reads the debug info once
  for (auto _ : state) once();
  state.SetItemsProcessed(state.iterations());
}
void BM_ProxyDivideThrows(benchmark::State& state) { throwing_calls(state, {}); }
void BM_ProxyDivideThrows_Backtrace(benchmark::State& state) {
  throwing_calls(state, {.backtrace = true});
}

// ---- 2c. callbacks: the child calls the parent
// ---------------------------------------------------

constexpr int callbacks_per_call = 1000;

// Per item: one callback round trip (child → parent's int(int) on the dispatch thread → child).
void callback_round_trips(benchmark::State& state, const procxy::spawn_options& o) {
  auto p = procxy::spawn<Pump>(o);
  p.started().get();
  std::function<int(int)> twice = [](int x) { return 2 * x; };
  p.pump(100, twice).get();
  for (auto _ : state) benchmark::DoNotOptimize(p.pump(callbacks_per_call, twice).get());
  state.SetItemsProcessed(state.iterations() * callbacks_per_call);
}
void BM_CallbackRoundTrip(benchmark::State& state) { callback_round_trips(state, over_socket); }
void BM_CallbackRoundTrip_Shm(benchmark::State& state) { callback_round_trips(state, over_shm); }

// Per item: one one-way notification (coalesced), all delivered before the call returns.
void notify_stream(benchmark::State& state, const procxy::spawn_options& o) {
  auto p = procxy::spawn<Pump>(o);
  p.started().get();
  long long seen = 0;
  procxy::notify<void(int)> tick = [&](int) { ++seen; };
  constexpr int n = 100'000;
  for (auto _ : state) p.stream(n, tick).get();
  if (seen != static_cast<long long>(state.iterations()) * n)
    state.SkipWithError("lost notifications");
  state.SetItemsProcessed(state.iterations() * n);
}
void BM_NotifyStream(benchmark::State& state) { notify_stream(state, over_socket); }
void BM_NotifyStream_Shm(benchmark::State& state) { notify_stream(state, over_shm); }

// Events per second, child → parent, one listener; emitted inside one call, coalesced.
void event_stream(benchmark::State& state, const procxy::spawn_options& o) {
  auto p = procxy::spawn<Emitter>(o);
  p.started().get();
  long long seen = 0;
  auto sub = p.tick().on([&](int) { ++seen; });
  constexpr int n = 100'000;
  for (auto _ : state) p.run(n).get();
  if (seen != static_cast<long long>(state.iterations()) * n) state.SkipWithError("lost events");
  state.SetItemsProcessed(state.iterations() * n);
}
void BM_EventStream(benchmark::State& state) { event_stream(state, over_socket); }
void BM_EventStream_Shm(benchmark::State& state) { event_stream(state, over_shm); }

// Rows per second, child → parent, with the default options (the automatic transport).
template <class Run>
void rows(benchmark::State& state, int n, Run run) {
  auto p = procxy::spawn<Rows>();
  p.started().get();
  long long seen = 0;
  run(p, std::min(n, 100), seen);  // warm
  seen = 0;
  for (auto _ : state) run(p, n, seen);
  if (seen != static_cast<long long>(state.iterations()) * n) state.SkipWithError("lost rows");
  state.SetItemsProcessed(state.iterations() * n);
}
void BM_RowsByCallback(benchmark::State& state) {
  rows(state, 2'000, [](procxy::proxy<Rows>& p, int n, long long& seen) {
    p.by_callback(n, [&](const Row& r) { seen += r.id >= 0; }).get();
  });
}
void BM_RowsByNotify(benchmark::State& state) {
  rows(state, 100'000, [](procxy::proxy<Rows>& p, int n, long long& seen) {
    p.by_notify(n, [&](const Row& r) { seen += r.id >= 0; }).get();
  });
}
void BM_RowsByEvent(benchmark::State& state) {
  rows(state, 100'000, [](procxy::proxy<Rows>& p, int n, long long& seen) {
    auto sub = p.row().on([&](const Row& r) { seen += r.id >= 0; });
    p.by_event(n).get();
  });
}
void BM_RowsReturned(benchmark::State& state) {
  rows(state, 100'000, [](procxy::proxy<Rows>& p, int n, long long& seen) {
    for (const auto& r : p.returned(n).get()) seen += r.id >= 0;
  });
}

// One event: emit (in the child) → listener (in the parent), measured with the shared monotonic
// clock; the iteration is a call that emits one event and returns.
void BM_EventLatency(benchmark::State& state) {
  auto p = procxy::spawn<Emitter>(over_socket);
  p.started().get();
  long long total_ns = 0, count = 0;
  auto sub = p.stamped().on([&](long long t0) {
    auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                   std::chrono::steady_clock::now().time_since_epoch())
                   .count();
    total_ns += now - t0;
    ++count;
  });
  for (auto _ : state) p.stamp().get();
  state.counters["emit_to_listener_us"] =
      count ? static_cast<double>(total_ns) / static_cast<double>(count) / 1000.0 : 0.0;
}

// ---- 3. 1,000 calls in flight from one thread --------------------------------------------------

void add_in_flight(benchmark::State& state, const procxy::spawn_options& o) {
  constexpr int n = 1000;
  auto calc = procxy::spawn<Calculator>(o);
  calc.started().get();
  std::vector<procxy::future<double>> fs;
  fs.reserve(n);
  auto batch = [&] {
    for (int i = 0; i < n; ++i) fs.push_back(calc.add(static_cast<double>(i), 0.5));
    double sum = 0;
    for (auto& f : fs) sum += f.get();
    fs.clear();
    return sum;
  };
  for (int i = 0; i < 3; ++i) benchmark::DoNotOptimize(batch());
  auto before = calc.stats();
  for (auto _ : state) {
    double sum = batch();
    benchmark::DoNotOptimize(sum);
  }
  auto after = calc.stats();
  state.SetItemsProcessed(state.iterations() * n);
  double calls = static_cast<double>(after.frames_sent - before.frames_sent);
  if (calls > 0)
    state.counters["write_syscalls_per_call"] = benchmark::Counter(
        static_cast<double>(after.write_syscalls - before.write_syscalls) / calls);
}
void BM_ProxyAddInFlight1000(benchmark::State& state) { add_in_flight(state, over_socket); }
void BM_ProxyAddInFlight1000_Shm(benchmark::State& state) { add_in_flight(state, over_shm); }

// ---- 3b. an idle proxy's CPU time --------------------------------------------------------------

// CPU seconds (user + system) of a process from /proc/<pid>/stat (this process: 0).
double cpu_ms(int pid) {
  std::ifstream in(pid ? "/proc/" + std::to_string(pid) + "/stat" : std::string("/proc/self/stat"));
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = all.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(all.substr(close + 2));
  std::string f;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> f; ++i) {
    if (i == 14) utime = std::strtod(f.c_str(), nullptr);
    if (i == 15) stime = std::strtod(f.c_str(), nullptr);
  }
  return (utime + stime) * 1000.0 / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// A proxy that made a burst of calls, then sits idle for 10 s: the CPU both processes used in
// those 10 s (ms; 100 ms is 1 % of a CPU).
void idle_cpu(benchmark::State& state, const procxy::spawn_options& o) {
  for (auto _ : state) {
    auto calc = procxy::spawn<Calculator>(o);
    for (int i = 0; i < 1000; ++i) benchmark::DoNotOptimize(calc.add(1.0, 2.0).get());
    const double parent0 = cpu_ms(0), child0 = cpu_ms(calc.pid());
    std::this_thread::sleep_for(10s);
    state.counters["idle_cpu_ms_per_10s"] = (cpu_ms(0) - parent0) + (cpu_ms(calc.pid()) - child0);
    state.counters["idle_cpu_percent"] = state.counters["idle_cpu_ms_per_10s"] / 100.0;
  }
}
void BM_IdleProxyCpu_Socket(benchmark::State& state) { idle_cpu(state, over_socket); }
void BM_IdleProxyCpu_Shm(benchmark::State& state) { idle_cpu(state, over_shm); }

// ---- 4. spawn to first result ------------------------------------------------------------------

// Mean µs per iteration of the two phases of a spawn benchmark: up to the first result, and
// from there until the child is gone (reaped; for procxy: ~proxy returned).
template <class D>
void set_phase_counters(benchmark::State& state, D to_result, D to_reaped) {
  auto us = [&](D d) {
    return std::chrono::duration<double, std::micro>(d).count() /
           static_cast<double>(std::max<benchmark::IterationCount>(state.iterations(), 1));
  };
  state.counters["first_result_us"] = us(to_result);
  state.counters["teardown_us"] = us(to_reaped);
  state.SetItemsProcessed(state.iterations());
}

// posix_spawn `exe` with a connected socket as fd 3, send a 16-byte request, read the 16-byte
// reply, waitpid. `exe` answers with reply_once() below (procxy_reply_once does the same).
void spawn_reply_once(benchmark::State& state, const char* exe, char* const argv[]) {
  using clk = std::chrono::steady_clock;
  unsigned char msg[16] = {42}, reply[16];
  clk::duration to_result{}, to_reaped{};
  for (auto _ : state) {
    auto t0 = clk::now();
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) die("socketpair");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, sv[1], 3);  // the same fd layout as a procxy child
    posix_spawn_file_actions_addclosefrom_np(&fa, 4);
    pid_t pid = -1;
    int rc = ::posix_spawn(&pid, exe, &fa, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      errno = rc;
      die(exe);
    }
    ::close(sv[1]);
    write_exact(sv[0], msg, sizeof msg);
    read_exact(sv[0], reply, sizeof reply);
    benchmark::DoNotOptimize(reply);
    auto t1 = clk::now();
    ::close(sv[0]);
    int status = 0;
    if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
      die("the reply-once child failed");
    auto t2 = clk::now();
    to_result += t1 - t0;
    to_reaped += t2 - t1;
  }
  set_phase_counters(state, to_result, to_reaped);
}

// Baseline: the smallest program that can answer (procxy_reply_once: libc only).
void BM_PosixSpawnReplyOnce(benchmark::State& state) {
  char* argv[] = {const_cast<char*>("procxy_reply_once"), nullptr};
  spawn_reply_once(state, PROCXY_BENCH_REPLY_ONCE, argv);
}

// Diagnostic: the same protocol answered by this very binary (what procxy's reexec mode starts:
// the same dynamic libraries and static initialisers), but without procxy's serve loop.
void BM_PosixSpawnSelfReplyOnce(benchmark::State& state) {
  char* argv[] = {const_cast<char*>("procxy_call_bench"), const_cast<char*>("--reply-once"),
                  nullptr};
  spawn_reply_once(state, "/proc/self/exe", argv);
}

void spawn_to_first_result(benchmark::State& state, const procxy::spawn_options& opts) {
  using clk = std::chrono::steady_clock;
  clk::duration to_result{}, to_reaped{};
  for (auto _ : state) {
    auto t0 = clk::now();
    clk::time_point t1;
    {
      auto calc = procxy::spawn<Calculator>(opts);
      double r = calc.add(1.0, 2.0).get();
      benchmark::DoNotOptimize(r);
      t1 = clk::now();
    }  // ~proxy: shutdown frame, wait for the child to exit, reap, join the dispatch thread
    auto t2 = clk::now();
    to_result += t1 - t0;
    to_reaped += t2 - t1;
  }
  set_phase_counters(state, to_result, to_reaped);
}

void BM_SpawnToFirstResult(benchmark::State& state) { spawn_to_first_result(state, {}); }
void BM_SpawnToFirstResult_Fork(benchmark::State& state) {
  spawn_to_first_result(state, {.mode = procxy::spawn_mode::fork});
}

// ---- 4b. the sandbox: what each layer adds to a spawn and to a call ---------------------------

// spawn_options::sandbox with one layer (or all) on; "None" is the baseline of the same run.
procxy::spawn_options sandboxed(const std::string& layer) {
  procxy::spawn_options o;
  auto& s = o.sandbox;
  if (layer == "Limits" || layer == "All")
    s.limits = {.address_space = std::size_t{1} << 30,
                .cpu = std::chrono::seconds(60),
                .open_files = 64,
                .file_size = std::size_t{1} << 20,
                .processes = 64,
                .no_core_dumps = true};
  if (layer == "NoNewPrivs") s.no_new_privs = true;
  if (layer == "Strict" || layer == "All") s.syscalls = procxy::syscall_profile::strict;
  if (layer == "Landlock" || layer == "All")
    s.filesystem = std::vector<procxy::path_rule>{{"/tmp", false}};
  if (layer == "UserNs") s.namespaces.user = true;
  if (layer == "NetNs" || layer == "All") s.namespaces.network = true;
  if (layer == "MountNs" || layer == "All") s.namespaces.mounts = true;
  if (layer == "PidNs" || layer == "All") s.namespaces.pids = true;
  if (layer == "All") s.namespaces.ipc = true;
  return o;
}

#define PROCXY_SANDBOX_BENCH(layer)                       \
  void BM_SandboxSpawn_##layer(benchmark::State& state) { \
    spawn_to_first_result(state, sandboxed(#layer));      \
  }                                                       \
  void BM_SandboxCall_##layer(benchmark::State& state) {  \
    sequential_calls(state, sandboxed(#layer));           \
  }
PROCXY_SANDBOX_BENCH(None)
PROCXY_SANDBOX_BENCH(Limits)
PROCXY_SANDBOX_BENCH(NoNewPrivs)
PROCXY_SANDBOX_BENCH(Strict)
PROCXY_SANDBOX_BENCH(Landlock)
PROCXY_SANDBOX_BENCH(UserNs)
PROCXY_SANDBOX_BENCH(NetNs)
PROCXY_SANDBOX_BENCH(MountNs)
PROCXY_SANDBOX_BENCH(PidNs)
PROCXY_SANDBOX_BENCH(All)
#undef PROCXY_SANDBOX_BENCH

// ---- 5. idle child RSS -------------------------------------------------------------------------

// A "Key:   123 kB" line of /proc/<pid>/status, in KiB (-1 if absent).
double status_field(int pid, const char* key) {
  std::ifstream in("/proc/" + (pid > 0 ? std::to_string(pid) : std::string("self")) + "/status");
  std::string line;
  std::size_t klen = std::strlen(key);
  while (std::getline(in, line))
    if (line.compare(0, klen, key) == 0 && line.size() > klen && line[klen] == ':')
      return std::strtod(line.c_str() + klen + 1, nullptr);
  return -1;
}

// A "Key:   123 kB" line of /proc/<pid>/smaps_rollup, in KiB (-1 if absent).
double rollup_field(int pid, const char* key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps_rollup");
  std::string line;
  std::size_t klen = std::strlen(key);
  while (std::getline(in, line))
    if (line.compare(0, klen, key) == 0 && line.size() > klen && line[klen] == ':')
      return std::strtod(line.c_str() + klen + 1, nullptr);
  return -1;
}

void BM_IdleChildRss(benchmark::State& state) {
  for (auto _ : state) {
    auto calc = procxy::spawn<Calculator>();
    benchmark::DoNotOptimize(calc.add(1.0, 2.0).get());
    std::this_thread::sleep_for(100ms);
    int pid = calc.pid();
    state.counters["child_rss_kib"] = status_field(pid, "VmRSS");
    state.counters["child_rss_anon_kib"] = status_field(pid, "RssAnon");
    state.counters["child_rss_file_kib"] = status_field(pid, "RssFile");
    state.counters["child_pss_kib"] = rollup_field(pid, "Pss");
    state.counters["child_threads"] = status_field(pid, "Threads");
    state.counters["parent_rss_kib"] = status_field(0, "VmRSS");
  }
}

// For scale: the RSS of an idle process that only waits for its request on fd 3, either the tiny
// procxy_reply_once (libc only) or this binary in --reply-once mode (the same libraries and
// static initialisers as a reexec child, no procxy).
void idle_reply_once_rss(benchmark::State& state, const char* exe, char* const argv[]) {
  for (auto _ : state) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) die("socketpair");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
    pid_t pid = -1;
    int rc = ::posix_spawn(&pid, exe, &fa, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      errno = rc;
      die(exe);
    }
    ::close(sv[1]);
    std::this_thread::sleep_for(100ms);
    state.counters["child_rss_kib"] = status_field(pid, "VmRSS");
    state.counters["child_rss_anon_kib"] = status_field(pid, "RssAnon");
    state.counters["child_rss_file_kib"] = status_field(pid, "RssFile");
    state.counters["child_pss_kib"] = rollup_field(pid, "Pss");
    unsigned char msg[16] = {}, reply[16];
    write_exact(sv[0], msg, sizeof msg);
    read_exact(sv[0], reply, sizeof reply);
    ::close(sv[0]);
    ::waitpid(pid, nullptr, 0);
  }
}

void BM_IdleReplyOnceRss(benchmark::State& state) {
  char* argv[] = {const_cast<char*>("procxy_reply_once"), nullptr};
  idle_reply_once_rss(state, PROCXY_BENCH_REPLY_ONCE, argv);
}
void BM_IdleSelfReplyOnceRss(benchmark::State& state) {
  char* argv[] = {const_cast<char*>("procxy_call_bench"), const_cast<char*>("--reply-once"),
                  nullptr};
  idle_reply_once_rss(state, "/proc/self/exe", argv);
}

}  // namespace

// ---- strace mode -------------------------------------------------------------------------------

int run_calls(long n, long in_flight, long timeout_ms) {
  auto calc = procxy::spawn<Calculator>({.call_timeout = std::chrono::milliseconds(timeout_ms)});
  calc.started().get();
  std::vector<procxy::future<double>> fs;
  auto some = [&](long count) {
    double sum = 0;
    if (in_flight <= 1) {
      for (long i = 0; i < count; ++i) sum += calc.add(1.0, static_cast<double>(i)).get();
    } else {
      for (long done = 0; done < count; done += in_flight) {
        for (long i = 0; i < in_flight; ++i) fs.push_back(calc.add(1.0, static_cast<double>(i)));
        for (auto& f : fs) sum += f.get();
        fs.clear();
      }
    }
    return sum;
  };
  double sum = some(std::max(100L, in_flight));  // warm up
  [[maybe_unused]] auto b = ::write(-1, "PROCXY_BENCH_BEGIN", 18);
  sum += some(n);
  [[maybe_unused]] auto e = ::write(-1, "PROCXY_BENCH_END", 16);
  auto st = calc.stats();
  std::printf("calls=%ld in_flight=%ld sum=%g frames_sent=%llu write_syscalls=%llu child=%d\n", n,
              in_flight, sum, static_cast<unsigned long long>(st.frames_sent),
              static_cast<unsigned long long>(st.write_syscalls), calc.pid());
  return 0;
}

// BM_PosixSpawnSelfReplyOnce's child: what procxy_reply_once does, from this binary.
int reply_once() {
  unsigned char buf[16];
  read_exact(3, buf, sizeof buf);
  buf[0] ^= 0xff;
  write_exact(3, buf, sizeof buf);
  return 0;
}

int run_raw(long n) {
  int fd = -1;
  pid_t pid = start_echo_child(&fd);
  unsigned char msg[16] = {1}, reply[16];
  for (int i = 0; i < 100; ++i) {
    write_exact(fd, msg, sizeof msg);
    read_exact(fd, reply, sizeof reply);
  }
  [[maybe_unused]] auto b = ::write(-1, "PROCXY_BENCH_BEGIN", 18);
  for (long i = 0; i < n; ++i) {
    write_exact(fd, msg, sizeof msg);
    read_exact(fd, reply, sizeof reply);
  }
  [[maybe_unused]] auto e = ::write(-1, "PROCXY_BENCH_END", 16);
  ::close(fd);
  ::waitpid(pid, nullptr, 0);
  std::printf("raw calls=%ld child=%d\n", n, pid);
  return 0;
}

// ---- pools: a CPU-bound method (200 us) over 1, 2 and 4 members ---------------------------------

constexpr int pool_work_us = 200;
constexpr int pool_batch = 64;

// Baseline: the same work in this thread, in process.
void BM_InProcessWork200us(benchmark::State& state) {
  for (auto _ : state)
    for (int i = 0; i < pool_batch; ++i) benchmark::DoNotOptimize(bench_work(pool_work_us));
  state.SetItemsProcessed(state.iterations() * pool_batch);
}

// 64 calls in flight over a pool of state.range(0) members, then all of them waited for.
void BM_PoolWork200us(benchmark::State& state) {
  auto p = procxy::spawn_pool<Calculator>({.size = static_cast<std::size_t>(state.range(0))});
  p.started().get();
  std::vector<procxy::future<double>> fs;
  fs.reserve(pool_batch);
  for (auto _ : state) {
    for (int i = 0; i < pool_batch; ++i) fs.push_back(p.work(pool_work_us));
    for (auto& f : fs) benchmark::DoNotOptimize(f.get());
    fs.clear();
  }
  state.SetItemsProcessed(state.iterations() * pool_batch);
}

int run_spawns(long n, bool fork_mode) {
  procxy::spawn_options opts;
  if (fork_mode) opts.mode = procxy::spawn_mode::fork;
  double sum = 0;
  {
    auto warm = procxy::spawn<Calculator>(opts);
    sum += warm.add(1.0, 2.0).get();
  }
  [[maybe_unused]] auto b = ::write(-1, "PROCXY_BENCH_BEGIN", 18);
  for (long i = 0; i < n; ++i) {
    auto calc = procxy::spawn<Calculator>(opts);
    sum += calc.add(1.0, 2.0).get();
  }
  [[maybe_unused]] auto e = ::write(-1, "PROCXY_BENCH_END", 16);
  std::printf("spawns=%ld sum=%g\n", n, sum);
  return 0;
}

}  // namespace bench

BENCHMARK(bench::BM_RawPingPong)->UseRealTime();
BENCHMARK(bench::BM_RawShmPingPong)->UseRealTime();
BENCHMARK(bench::BM_ProxyAddSequential)->UseRealTime();
BENCHMARK(bench::BM_ProxyAddSequential_Shm)->UseRealTime();
BENCHMARK(bench::BM_ProxyAddSequential_Timeout)->UseRealTime();
BENCHMARK(bench::BM_ProxyDivideThrows)->UseRealTime();
BENCHMARK(bench::BM_ProxyDivideThrows_Backtrace)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(bench::BM_CallbackRoundTrip)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(bench::BM_CallbackRoundTrip_Shm)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(bench::BM_NotifyStream)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(bench::BM_NotifyStream_Shm)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(bench::BM_EventStream)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(bench::BM_EventStream_Shm)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(bench::BM_RowsByCallback)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(bench::BM_RowsByNotify)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(bench::BM_RowsByEvent)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(bench::BM_RowsReturned)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(bench::BM_EventLatency)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(bench::BM_RawInFlight1000)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(bench::BM_RawInFlight1000_Batched)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(bench::BM_ProxyAddInFlight1000)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(bench::BM_ProxyAddInFlight1000_Shm)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(bench::BM_InProcessWork200us)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(bench::BM_PoolWork200us)
    ->Arg(1)
    ->Arg(2)
    ->Arg(4)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(bench::BM_IdleProxyCpu_Socket)
    ->Iterations(1)
    ->Repetitions(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(bench::BM_IdleProxyCpu_Shm)
    ->Iterations(1)
    ->Repetitions(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK(bench::BM_PosixSpawnReplyOnce)
    ->MinTime(1.0)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(bench::BM_PosixSpawnSelfReplyOnce)
    ->MinTime(1.0)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(bench::BM_SpawnToFirstResult)->MinTime(1.0)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(bench::BM_SpawnToFirstResult_Fork)
    ->MinTime(1.0)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(bench::BM_SandboxSpawn_None)->MinTime(1.0)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(bench::BM_SandboxCall_None)->UseRealTime();
BENCHMARK(bench::BM_SandboxSpawn_Limits)
    ->MinTime(1.0)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(bench::BM_SandboxCall_Limits)->UseRealTime();
BENCHMARK(bench::BM_SandboxSpawn_NoNewPrivs)
    ->MinTime(1.0)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(bench::BM_SandboxCall_NoNewPrivs)->UseRealTime();
BENCHMARK(bench::BM_SandboxSpawn_Strict)
    ->MinTime(1.0)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(bench::BM_SandboxCall_Strict)->UseRealTime();
BENCHMARK(bench::BM_SandboxSpawn_Landlock)
    ->MinTime(1.0)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(bench::BM_SandboxCall_Landlock)->UseRealTime();
BENCHMARK(bench::BM_SandboxSpawn_UserNs)
    ->MinTime(1.0)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(bench::BM_SandboxCall_UserNs)->UseRealTime();
BENCHMARK(bench::BM_SandboxSpawn_NetNs)->MinTime(1.0)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(bench::BM_SandboxCall_NetNs)->UseRealTime();
BENCHMARK(bench::BM_SandboxSpawn_MountNs)
    ->MinTime(1.0)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(bench::BM_SandboxCall_MountNs)->UseRealTime();
BENCHMARK(bench::BM_SandboxSpawn_PidNs)->MinTime(1.0)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(bench::BM_SandboxCall_PidNs)->UseRealTime();
BENCHMARK(bench::BM_SandboxSpawn_All)->MinTime(1.0)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(bench::BM_SandboxCall_All)->UseRealTime();
BENCHMARK(bench::BM_IdleChildRss)->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(bench::BM_IdleReplyOnceRss)->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(bench::BM_IdleSelfReplyOnceRss)
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  procxy::init(argc, argv);  // in a child started by procxy: serves the object, never returns
  if (argc == 2 && std::strcmp(argv[1], "--reply-once") == 0) return bench::reply_once();

  long calls = -1, in_flight = 1, timeout_ms = 0, raw = -1, spawns = -1;
  bool fork_mode = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--calls=", 8) == 0) calls = std::atol(argv[i] + 8);
    if (std::strncmp(argv[i], "--in-flight=", 12) == 0) in_flight = std::atol(argv[i] + 12);
    if (std::strncmp(argv[i], "--call-timeout-ms=", 18) == 0) timeout_ms = std::atol(argv[i] + 18);
    if (std::strncmp(argv[i], "--raw-calls=", 12) == 0) raw = std::atol(argv[i] + 12);
    if (std::strncmp(argv[i], "--spawns=", 9) == 0) spawns = std::atol(argv[i] + 9);
    if (std::strcmp(argv[i], "--fork") == 0) fork_mode = true;
  }
  if (raw >= 0) return bench::run_raw(raw);
  if (spawns >= 0) return bench::run_spawns(spawns, fork_mode);
  if (calls >= 0) return bench::run_calls(calls, in_flight, timeout_ms);

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
