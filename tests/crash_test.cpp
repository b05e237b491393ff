// The crash matrix: the child dies in every way a process can ({SIGSEGV by raise, SIGSEGV by a
// real invalid write, abort(), std::terminate(), exit(n), _exit(n), SIGKILL from outside}) in
// every state a proxy can be in ({inside a synchronous call, inside an async method's worker
// thread, idle}). Whatever the way and the state: every pending call fails with child_crashed
// naming the signal or the exit code, within 2 s of the death; later calls fail the same way at
// once; the parent and a sibling proxy are unaffected.
//
// Synchronisation with the child is event-based, never a sleep: a "gate" is a pair of FIFOs in a
// private directory. The child writes a byte to `entered` when it is where the test wants it, and
// dies only when the parent writes a byte to `go` (or sends SIGKILL). The parent holds both FIFOs
// open read-write, so the child's open() never blocks and the parent never sees EOF.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <future>
#include <latch>
#include <ostream>
#include <string>
#include <thread>
#include <tuple>
#include <typeinfo>
#include <vector>

#include "procxy/procxy.hpp"
#include "procxy/proxy.hpp"
#include "sanitizers.hpp"
#ifdef PROCXY_TEST_WORKER
#include "greeter.hpp"
#endif

using namespace std::chrono_literals;
using clk = std::chrono::steady_clock;

namespace {

enum class death {
  segv_raise,
  segv_write,
  abort_call,
  terminate_call,
  exit_call,
  underscore_exit,
  sigkill
};
enum class where { sync_call, async_call, idle };

constexpr int exit_code_of_exit = 42;
constexpr int exit_code_of_underscore_exit = 43;
// A pending call must fail this soon after the death (a hang guard, not a benchmark).
constexpr auto promptly = 2s;
// Bounds every wait of the test so that a broken library fails the test instead of hanging it.
constexpr auto hang_guard = 10s;

// ---- the child's side --------------------------------------------------------------------------

void wait_for_byte(const std::string& fifo) {
  int fd = ::open(fifo.c_str(), O_RDONLY | O_CLOEXEC);  // the parent holds a writer: no block
  if (fd < 0) return;
  pollfd p{fd, POLLIN, 0};
  ::poll(&p, 1, 60'000);  // the parent writes within seconds; a minute is only a hang guard
  char c;
  [[maybe_unused]] auto n = ::read(fd, &c, 1);
  ::close(fd);
}

void send_byte(const std::string& fifo) {
  int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);  // the parent holds a reader
  if (fd < 0) return;
  char c = 'e';
  [[maybe_unused]] auto n = ::write(fd, &c, 1);
  ::close(fd);
}

// A store to an unmapped address: a real SIGSEGV, not a raised one. Not instrumented, so UBSan's
// null check and ASan's shadow check do not turn it into a sanitizer report.
__attribute__((no_sanitize("address", "undefined"))) void invalid_write() {
  volatile int* volatile p = nullptr;
  *p = 1;
}

[[noreturn]] void die(death how) {
  rlimit no_core{0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);  // a thousand crashing tests must not write core files
  switch (how) {
    case death::segv_raise:
      ::signal(SIGSEGV, SIG_DFL);  // sanitizers install a SIGSEGV handler that would exit(1)
      ::raise(SIGSEGV);
      break;
    case death::segv_write:
      ::signal(SIGSEGV, SIG_DFL);
      invalid_write();
      break;
    case death::abort_call: std::abort();
    case death::terminate_call: std::terminate();
    case death::exit_call: std::exit(exit_code_of_exit);
    case death::underscore_exit: ::_exit(exit_code_of_underscore_exit);
    case death::sigkill: break;  // the parent sends SIGKILL; the test never says "go" for it
  }
  for (;;) ::pause();
}

class Victim {
 public:
  int ping(int n) { return n; }
  // Dies on the object thread, inside this call.
  int die_in_call(int how, const std::string& gate) {
    send_byte(gate + "/entered");
    wait_for_byte(gate + "/go");
    die(static_cast<death>(how));
  }
  // An async method whose worker thread dies while the parent waits for its result.
  procxy::future<int> die_in_async(int how, const std::string& gate) {
    procxy::promise<int> p;
    auto f = p.get_future();
    std::thread([p = std::move(p), how, gate]() mutable {
      send_byte(gate + "/entered");
      wait_for_byte(gate + "/go");
      die(static_cast<death>(how));
    }).detach();
    return f;
  }
  // An async call that never completes (its promise is kept, never fulfilled).
  procxy::future<int> never() {
    procxy::promise<int> p;
    auto f = p.get_future();
    held_.push_back(std::move(p));
    return f;
  }
  // Returns at once; a thread dies after the call has completed, when the parent says so.
  void die_later(int how, const std::string& gate) {
    std::thread([how, gate] {
      wait_for_byte(gate + "/go");
      die(static_cast<death>(how));
    }).detach();
  }

 private:
  std::vector<procxy::promise<int>> held_;
};
PROCXY_CLASS(Victim, ping, die_in_call, die_in_async, never, die_later);

// ---- the parent's side -------------------------------------------------------------------------

class gate {
 public:
  gate() {
    char tmpl[] = "/tmp/procxy-crash-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    for (const char* name : {"/entered", "/go"})
      if (::mkfifo((dir_ + name).c_str(), 0600) != 0) throw std::runtime_error("mkfifo failed");
    entered_ = ::open((dir_ + "/entered").c_str(), O_RDWR | O_CLOEXEC);
    go_ = ::open((dir_ + "/go").c_str(), O_RDWR | O_CLOEXEC);
  }
  ~gate() {
    ::close(entered_);
    ::close(go_);
    ::unlink((dir_ + "/entered").c_str());
    ::unlink((dir_ + "/go").c_str());
    ::rmdir(dir_.c_str());
  }
  gate(const gate&) = delete;
  gate& operator=(const gate&) = delete;
  const std::string& dir() const { return dir_; }
  // Whether the child said it is where the test wants it, within the hang guard.
  bool wait_entered() const {
    pollfd p{entered_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::chrono::milliseconds(hang_guard).count())) != 1)
      return false;
    char c;
    return ::read(entered_, &c, 1) == 1;
  }
  void go() const {
    char c = 'g';
    [[maybe_unused]] auto n = ::write(go_, &c, 1);
  }

 private:
  std::string dir_;
  int entered_ = -1, go_ = -1;
};

const char* name_of(death d) {
  switch (d) {
    case death::segv_raise: return "SegvRaised";
    case death::segv_write: return "SegvInvalidWrite";
    case death::abort_call: return "Abort";
    case death::terminate_call: return "StdTerminate";
    case death::exit_call: return "Exit";
    case death::underscore_exit: return "UnderscoreExit";
    case death::sigkill: return "SigkillFromParent";
  }
  return "?";
}
const char* name_of(where w) {
  switch (w) {
    case where::sync_call: return "InSyncCall";
    case where::async_call: return "InAsyncMethod";
    case where::idle: return "WhileIdle";
  }
  return "?";
}
// Readable parameters in gtest's failure messages.
void PrintTo(death d, std::ostream* os) { *os << name_of(d); }
void PrintTo(where w, std::ostream* os) { *os << name_of(w); }

struct expected_end {
  int signal = 0;      // > 0: killed by this signal
  int exit_code = -1;  // >= 0: exited with this code
  std::string text;    // what() contains this
};
expected_end expected_for(death d) {
  switch (d) {
    case death::segv_raise:
    case death::segv_write: return {SIGSEGV, -1, "SIGSEGV"};
    case death::abort_call:
    case death::terminate_call: return {SIGABRT, -1, "SIGABRT"};
    case death::exit_call: return {0, exit_code_of_exit, "exited with code 42"};
    case death::underscore_exit: return {0, exit_code_of_underscore_exit, "exited with code 43"};
    case death::sigkill: return {SIGKILL, -1, "SIGKILL"};
  }
  return {};
}

// One call's end as seen by whoever waited for it.
struct call_end {
  bool ready = false;
  std::exception_ptr error;
  clk::time_point at{};
};

template <class T>
call_end wait_end(procxy::future<T>& f) {
  call_end e;
  e.ready = f.wait_for(hang_guard) == std::future_status::ready;
  e.at = clk::now();
  if (e.ready) e.error = f.try_get().error();
  return e;
}

std::string type_of_current() {
  try {
    throw;
  } catch (const std::exception& x) {
    return std::string(typeid(x).name()) + ": " + x.what();
  } catch (...) {
    return "a non-std exception";
  }
}

void expect_child_crashed(const call_end& e, const expected_end& want, const std::string& which) {
  SCOPED_TRACE(which);
  ASSERT_TRUE(e.ready) << "the call did not complete within " << hang_guard.count() << " s";
  ASSERT_TRUE(e.error) << "the call succeeded";
  try {
    std::rethrow_exception(e.error);
  } catch (const procxy::child_crashed& c) {
    EXPECT_EQ(c.kind(), procxy::error_kind::child_crashed);
    EXPECT_EQ(c.signal(), want.signal) << c.what();
    EXPECT_EQ(c.exit_code(), want.exit_code) << c.what();
    EXPECT_THAT(c.what(), testing::HasSubstr(want.text));
  } catch (...) {
    ADD_FAILURE() << "expected procxy::child_crashed, got " << type_of_current();
  }
}

class ChildDeath : public testing::TestWithParam<std::tuple<death, where>> {};

TEST_P(ChildDeath, PendingAndLaterCallsFailWithChildCrashed) {
  const death how = std::get<0>(GetParam());    // not a structured binding: clang 14 cannot
  const where state = std::get<1>(GetParam());  // capture those in lambdas
  const expected_end want = expected_for(how);
  auto bystander = procxy::spawn<Victim>();
  auto victim = procxy::spawn<Victim>();
  // Both children up and serving, so the times below measure the death only.
  ASSERT_EQ(victim.ping(1).get(), 1);
  ASSERT_EQ(bystander.ping(2).get(), 2);
  const int victim_pid = victim.pid();
  gate g;

  auto trigger = [&] {
    if (how == death::sigkill)
      ASSERT_EQ(::kill(victim_pid, SIGKILL), 0);
    else
      g.go();
  };

  // The calls pending at the time of the death: the fatal one (sync and async), calls made from
  // other threads (each waits for its own future), and calls pipelined from this thread.
  constexpr int threads = 4;
  std::vector<call_end> thread_ends(threads);
  std::vector<std::thread> callers;
  std::latch issued(threads);
  procxy::future<int> fatal;
  std::vector<procxy::future<int>> pipelined;

  clk::time_point died{};
  if (state == where::idle) {
    victim.die_later(static_cast<int>(how), g.dir()).get();  // completed: nothing is pending
    EXPECT_TRUE(victim.running());
    died = clk::now();
    trigger();
    // Nothing is pending, so there is no future to wait on: poll (test-side only, bounded).
    while (victim.running() && clk::now() - died < hang_guard) std::this_thread::sleep_for(1ms);
    EXPECT_FALSE(victim.running());
    EXPECT_LT(clk::now() - died, promptly) << "the death of an idle child went unnoticed";
    // Several calls made after the death, from several threads: all fail the same way.
    for (int i = 0; i < threads; ++i)
      callers.emplace_back([&, i] {
        auto f = victim.ping(100 + i);
        issued.count_down();
        thread_ends[static_cast<std::size_t>(i)] = wait_end(f);
      });
    for (auto& t : callers) t.join();
    for (int i = 0; i < threads; ++i)
      expect_child_crashed(thread_ends[static_cast<std::size_t>(i)], want,
                           "call made after the death from thread " + std::to_string(i));
  } else {
    if (state == where::sync_call) {
      fatal = victim.die_in_call(static_cast<int>(how), g.dir());
    } else {
      fatal = victim.die_in_async(static_cast<int>(how), g.dir());
    }
    ASSERT_TRUE(g.wait_entered()) << "the child never reached the fatal point";
    // In a sync call the object thread is stuck in the dying method: plain calls queue behind
    // it. In an async method the object thread is free: pending calls must be async too.
    auto another = [&](int i) {
      return state == where::sync_call ? victim.ping(i) : victim.never();
    };
    for (int i = 0; i < threads; ++i)
      callers.emplace_back([&, i] {
        auto f = another(100 + i);
        issued.count_down();
        thread_ends[static_cast<std::size_t>(i)] = wait_end(f);
      });
    for (int i = 0; i < 2; ++i) pipelined.push_back(another(200 + i));
    issued.wait();
    if (state == where::async_call) {
      // The object thread still serves while the async method is outstanding.
      EXPECT_EQ(victim.ping(3).get(), 3);
    }
    EXPECT_FALSE(fatal.ready());
    died = clk::now();
    trigger();
    auto fatal_end = wait_end(fatal);
    expect_child_crashed(fatal_end, want, "the fatal call");
    EXPECT_LT(fatal_end.at - died, promptly);
    for (std::size_t i = 0; i < pipelined.size(); ++i) {
      auto e = wait_end(pipelined[i]);
      expect_child_crashed(e, want, "pipelined call " + std::to_string(i));
      EXPECT_LT(e.at - died, promptly);
    }
    for (auto& t : callers) t.join();
    for (int i = 0; i < threads; ++i) {
      const auto& e = thread_ends[static_cast<std::size_t>(i)];
      expect_child_crashed(e, want, "call from thread " + std::to_string(i));
      if (e.ready) {
        EXPECT_LT(e.at - died, promptly);
      }
    }
    EXPECT_FALSE(victim.running());
  }

  // A later call fails at once, the same way.
  auto before = clk::now();
  auto later = victim.ping(7);
  auto later_end = wait_end(later);
  expect_child_crashed(later_end, want, "a call made after the death was reported");
  EXPECT_LT(later_end.at - before, promptly);
  EXPECT_EQ(victim.pid(), victim_pid);

  // The sibling child and this process are unaffected.
  EXPECT_TRUE(bystander.running());
  EXPECT_EQ(bystander.ping(5).get(), 5);
  std::vector<procxy::future<int>> burst;
  for (int i = 0; i < 20; ++i) burst.push_back(bystander.ping(i));
  for (int i = 0; i < 20; ++i) EXPECT_EQ(burst[static_cast<std::size_t>(i)].get(), i);

  // Destroying the crashed proxy is quick and does not throw.
  auto t0 = clk::now();
  victim.terminate();
  EXPECT_LT(clk::now() - t0, promptly);
}

INSTANTIATE_TEST_SUITE_P(
    Crash, ChildDeath,
    testing::Combine(testing::Values(death::segv_raise, death::segv_write, death::abort_call,
                                     death::terminate_call, death::exit_call,
                                     death::underscore_exit, death::sigkill),
                     testing::Values(where::sync_call, where::async_call, where::idle)),
    [](const testing::TestParamInfo<std::tuple<death, where>>& param_info) {
      return std::string(name_of(std::get<0>(param_info.param))) + "_" +
             name_of(std::get<1>(param_info.param));
    });

// ---- crash context: the calls in flight and the child's stack ---------------------------------
//
// child_crashed names the calls that were in flight and, when a crash signal killed the child,
// carries its stack where it crashed (docs/design.md "Crash reports"). The functions that crash
// are noinline, and no two have the same code (identical code folding would merge them under
// one name), so that the stack names each.

namespace context {

__attribute__((noinline, no_sanitize("address", "undefined"))) void culprit_invalid_write() {
  volatile int* volatile p = nullptr;
  *p = 14;
}
__attribute__((noinline, no_sanitize("address", "undefined"))) void
culprit_invalid_write_on_a_thread() {
  volatile int* volatile p = nullptr;
  *p = 15;
}
__attribute__((noinline)) void culprit_abort() { std::abort(); }
// Recurses until the stack is exhausted (the test never passes a negative depth; the compiler
// cannot know that, so it neither warns of infinite recursion nor turns it into a loop).
__attribute__((noinline)) int culprit_recurse(int depth) {
  volatile char pad[256];
  pad[0] = static_cast<char>(depth);
  if (depth < 0) return 0;
  return culprit_recurse(depth + 1) + pad[0];
}

class Culprit {
 public:
  explicit Culprit(bool crash_in_constructor) {
    if (crash_in_constructor) culprit_invalid_write();
  }
  int ping(int n) { return n; }
  int segfault() {
    culprit_invalid_write();
    return 0;
  }
  int abort_now() {
    culprit_abort();
    return 0;
  }
  int overflow() { return culprit_recurse(0); }
  int sleep_long() {
    ::sleep(60);  // killed from outside long before
    return 0;
  }
  procxy::future<int> never() {
    procxy::promise<int> p;
    auto f = p.get_future();
    held_.push_back(std::move(p));
    return f;
  }
  // Returns at once; a thread crashes when the parent says so, while no call is in flight.
  void segfault_later(const std::string& gate) {
    std::thread([gate] {
      wait_for_byte(gate + "/go");
      culprit_invalid_write_on_a_thread();
    }).detach();
  }
  // The object replaces procxy's handler with its own: that one decides (documented).
  int own_handler_then_segfault() {
    ::signal(SIGSEGV, [](int) { ::_exit(3); });
    culprit_invalid_write();
    return 0;
  }

 private:
  std::vector<procxy::promise<int>> held_;
};
PROCXY_CLASS(Culprit, ping, segfault, abort_now, overflow, sleep_long, never, segfault_later,
             own_handler_then_segfault);

// Sanitizers install handlers of their own for the crash signals before main: procxy's handler
// then reports first and hands the signal on to theirs, which exits with 1 instead of dying of
// the signal. These tests check the plain behaviour, so their children ask the sanitizer runtime
// to leave those signals alone (the variables mean nothing to a normal build).
procxy::spawn_options crash_options(procxy::spawn_options o = {}) {
  const std::string flags =
      "handle_segv=0:handle_sigbus=0:handle_sigfpe=0:handle_sigill=0:handle_abort=0";
  for (const char* var : {"ASAN_OPTIONS", "TSAN_OPTIONS"}) {
    const char* old = std::getenv(var);
    o.env[var] = old && *old ? std::string(old) + ":" + flags : flags;
  }
  return o;
}

template <class E, class F>
E failure_of(F&& f) {
  auto fut = f();
  if (fut.wait_for(hang_guard) != std::future_status::ready)
    throw std::runtime_error("the call hung");
  try {
    fut.get();
  } catch (const E& e) {
    return e;
  }
  throw std::runtime_error("the call did not fail with the expected error");
}

bool addr2line_installed() {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "";
  for (std::size_t at = 0; at <= dirs.size();) {
    auto end = dirs.find(':', at);
    if (end == std::string::npos) end = dirs.size();
    if (::access((dirs.substr(at, end - at) + "/addr2line").c_str(), X_OK) == 0) return true;
    at = end + 1;
  }
  return false;
}

using testing::HasSubstr;
using testing::Not;

TEST(CrashContext, SegfaultNamesTheMethodAndTheFunctionThatCrashed) {
  auto p = procxy::spawn<Culprit>(crash_options(), false);
  ASSERT_EQ(p.ping(1).get(), 1);
  auto e = failure_of<procxy::child_crashed>([&] { return p.segfault(); });
  EXPECT_EQ(e.signal(), SIGSEGV) << e.what();
  EXPECT_THAT(e.what(), HasSubstr("Culprit::segfault was in flight"));
  EXPECT_THAT(e.what(), HasSubstr("its stack at the fault (SIGSEGV at address 0x0, thread "));
  // The first frame is the function that made the invalid write; the method is below it.
  ASSERT_FALSE(e.backtrace().empty()) << e.what();
  EXPECT_THAT(e.backtrace().substr(0, e.backtrace().find('\n')),
              HasSubstr(" 0# (anonymous namespace)::context::culprit_invalid_write()"))
      << e.backtrace();
  EXPECT_THAT(e.backtrace(), HasSubstr("Culprit::segfault"));
  EXPECT_THAT(e.what(), HasSubstr(e.backtrace()));
  // Later calls fail with the same message.
  auto later = failure_of<procxy::child_crashed>([&] { return p.ping(2); });
  EXPECT_EQ(std::string(later.what()), e.what());
}

// The crash handler needs nothing the strictest sandbox forbids (it writes to a pipe it was
// given before the sandbox): a sandboxed child's crash is reported the same way.
TEST(CrashContext, ASandboxedChildsCrashNamesTheMethodAndTheStack) {
  procxy::sandbox_options box{.syscalls = procxy::syscall_profile::strict};
  if (!under_tsan) {  // TSan's thread in a forked child refuses namespaces and Landlock
    // The server of a PID namespace is a fork, and sees itself as another pid.
    box.namespaces = {.network = true, .pids = true};
    box.filesystem = std::vector<procxy::path_rule>{};  // not even /proc/self/maps
  }
  auto p = procxy::spawn<Culprit>(crash_options({.sandbox = box}), false);
  ASSERT_EQ(p.ping(1).get(), 1);
  auto e = failure_of<procxy::child_crashed>([&] { return p.segfault(); });
  EXPECT_EQ(e.signal(), SIGSEGV) << e.what();
  EXPECT_THAT(e.what(), Not(HasSubstr("blocked by the sandbox")));
  EXPECT_THAT(e.what(), HasSubstr("Culprit::segfault was in flight"));
  EXPECT_THAT(e.backtrace(),
              HasSubstr(" 0# (anonymous namespace)::context::culprit_invalid_write()"))
      << e.what();

  // abort() is the child's own signal, not one sent from outside, seen from inside a namespace.
  auto q = procxy::spawn<Culprit>(crash_options({.sandbox = box}), false);
  auto a = failure_of<procxy::child_crashed>([&] { return q.abort_now(); });
  EXPECT_EQ(a.signal(), SIGABRT) << a.what();
  EXPECT_THAT(a.what(), HasSubstr("its stack when it aborted (thread ")) << a.what();
  EXPECT_THAT(a.backtrace(), HasSubstr("context::culprit_abort()"));
}

TEST(CrashContext, AbortNamesTheMethodAndTheStackOfTheAbort) {
  auto p = procxy::spawn<Culprit>(crash_options(), false);
  auto e = failure_of<procxy::child_crashed>([&] { return p.abort_now(); });
  EXPECT_EQ(e.signal(), SIGABRT) << e.what();
  EXPECT_THAT(e.what(), HasSubstr("Culprit::abort_now was in flight"));
  EXPECT_THAT(e.what(), HasSubstr("its stack when it aborted (thread "));
  EXPECT_THAT(e.backtrace(), HasSubstr("abort"));
  EXPECT_THAT(e.backtrace(), HasSubstr("context::culprit_abort()"));
  EXPECT_THAT(e.backtrace(), HasSubstr("Culprit::abort_now"));
}

TEST(CrashContext, StackOverflowIsReportedFromTheAlternateStack) {
  auto p = procxy::spawn<Culprit>(crash_options(), false);
  auto e = failure_of<procxy::child_crashed>([&] { return p.overflow(); });
  EXPECT_EQ(e.signal(), SIGSEGV) << e.what();
  EXPECT_THAT(e.what(), HasSubstr("Culprit::overflow was in flight"));
  EXPECT_THAT(e.backtrace(), HasSubstr(" 0# (anonymous namespace)::context::culprit_recurse(int)"));
  // A bounded report: at most 64 frames of an exhausted stack.
  EXPECT_THAT(e.backtrace(), HasSubstr("63# "));
  EXPECT_THAT(e.backtrace(), Not(HasSubstr("64# ")));
}

TEST(CrashContext, SigkillFromOutsideNamesTheCallAndSaysWhyThereIsNoStack) {
  auto p = procxy::spawn<Culprit>(crash_options(), false);
  ASSERT_EQ(p.ping(1).get(), 1);
  auto e = failure_of<procxy::child_crashed>([&] {
    auto f = p.sleep_long();
    ::kill(p.pid(), SIGKILL);
    return f;
  });
  EXPECT_EQ(e.signal(), SIGKILL) << e.what();
  EXPECT_THAT(e.what(), HasSubstr("Culprit::sleep_long was in flight"));
  EXPECT_THAT(e.what(), HasSubstr("no stack is available: SIGKILL cannot be caught"));
  EXPECT_THAT(e.what(), HasSubstr("from outside the child's code"));
  EXPECT_THAT(e.what(), HasSubstr("this is expected"));
  EXPECT_TRUE(e.backtrace().empty()) << e.backtrace();
}

TEST(CrashContext, SigtermFromOutsideNamesTheCallAndSaysWhyThereIsNoStack) {
  auto p = procxy::spawn<Culprit>(crash_options(), false);
  ASSERT_EQ(p.ping(1).get(), 1);
  auto e = failure_of<procxy::child_crashed>([&] {
    auto f = p.sleep_long();
    ::kill(p.pid(), SIGTERM);
    return f;
  });
  EXPECT_EQ(e.signal(), SIGTERM) << e.what();
  EXPECT_THAT(e.what(), HasSubstr("Culprit::sleep_long was in flight"));
  EXPECT_THAT(e.what(), HasSubstr("no stack is available: procxy's crash handler catches only"));
  EXPECT_THAT(e.what(), HasSubstr("SIGTERM usually comes from outside the child's code"));
  EXPECT_THAT(e.what(), HasSubstr("this is expected"));
  EXPECT_TRUE(e.backtrace().empty()) << e.backtrace();
}

TEST(CrashContext, TwoCallsInFlightAreBothNamedOldestFirst) {
  auto p = procxy::spawn<Culprit>(crash_options(), false);
  auto pending = p.never();  // an async method: in flight until the child dies
  auto e = failure_of<procxy::child_crashed>([&] { return p.segfault(); });
  const std::string what = e.what();
  EXPECT_THAT(what, HasSubstr("with 2 calls in flight (oldest first): "));
  const auto never_at = what.find("Culprit::never");
  const auto segfault_at = what.find("Culprit::segfault");
  ASSERT_NE(never_at, std::string::npos) << what;
  ASSERT_NE(segfault_at, std::string::npos) << what;
  EXPECT_LT(never_at, segfault_at) << what;
  EXPECT_THAT(e.backtrace(), HasSubstr("context::culprit_invalid_write()"));
  EXPECT_THROW(pending.get(), procxy::child_crashed);
}

TEST(CrashContext, ACrashWithNoCallInFlightSaysSoAndHasTheStack) {
  // on_exit runs once the death was handled: a call made after it fails at once, with the
  // message made when the child died (a call made earlier, between the death and its handling,
  // would be one in flight).
  std::promise<void> handled;
  auto p = procxy::spawn<Culprit>(
      crash_options({.on_exit = [&](const procxy::exit_info&) { handled.set_value(); }}), false);
  gate g;
  p.segfault_later(g.dir()).get();
  g.go();
  ASSERT_EQ(handled.get_future().wait_for(hang_guard), std::future_status::ready);
  auto e = failure_of<procxy::child_crashed>([&] { return p.ping(1); });
  EXPECT_EQ(e.signal(), SIGSEGV) << e.what();
  EXPECT_THAT(e.what(), HasSubstr("while no call was in flight"));
  EXPECT_THAT(e.backtrace(),
              HasSubstr(" 0# (anonymous namespace)::context::culprit_invalid_write_on_a_thread()"));
}

TEST(CrashContext, ACrashInTheConstructorShowsTheStackInTheSpawnError) {
  auto p = procxy::spawn<Culprit>(crash_options(), true);
  auto e = failure_of<procxy::spawn_error>([&] { return p.started(); });
  EXPECT_THAT(e.what(), HasSubstr("while constructing the object"));
  EXPECT_THAT(e.what(), HasSubstr(" 0# (anonymous namespace)::context::culprit_invalid_write()"));
  EXPECT_THAT(e.what(), Not(HasSubstr("does its main() call procxy::init")));
}

TEST(CrashContext, ForkModeReportsTheStackToo) {
  // A TSan runtime refuses to start threads in a child forked from a multi-threaded process.
  if (under_tsan)
    GTEST_SKIP() << "ThreadSanitizer cannot run a fork child of a multi-threaded parent";
  auto p = procxy::spawn<Culprit>(crash_options({.mode = procxy::spawn_mode::fork}), false);
  auto e = failure_of<procxy::child_crashed>([&] { return p.segfault(); });
  // A fork child keeps this process's handlers, crash_options' variables notwithstanding (the
  // sanitizer runtime read them when this process started): under ASan, procxy's handler
  // reports and hands the signal on to ASan's, which exits with 1, and the message says so.
  if (e.signal() != SIGSEGV) {
    EXPECT_EQ(e.exit_code(), 1) << e.what();
    EXPECT_THAT(e.what(), HasSubstr("procxy's crash handler had caught SIGSEGV first"));
  }
  EXPECT_THAT(e.what(), HasSubstr("Culprit::segfault was in flight"));
  EXPECT_THAT(e.backtrace(),
              HasSubstr(" 0# (anonymous namespace)::context::culprit_invalid_write()"));
}

TEST(CrashContext, TheObjectsOwnHandlerReplacesProcxys) {
  auto p = procxy::spawn<Culprit>(crash_options(), false);
  auto e = failure_of<procxy::child_crashed>([&] { return p.own_handler_then_segfault(); });
  EXPECT_EQ(e.exit_code(), 3) << e.what();
  EXPECT_THAT(e.what(), HasSubstr("Culprit::own_handler_then_segfault was in flight"));
  EXPECT_TRUE(e.backtrace().empty()) << e.backtrace();
}

#ifdef PROCXY_TEST_WORKER
// The worker binary is not mapped in this process: its frames are symbolized by addr2line when it
// is installed, and shown as module+offset otherwise.
TEST(CrashContext, WorkerExecutableNamesTheMethodAndItsFrames) {
  auto g = procxy::spawn<worker_demo::Greeter>(
      crash_options({.mode = procxy::spawn_mode::executable, .executable = PROCXY_TEST_WORKER}),
      std::string("Hi"));
  auto e = failure_of<procxy::child_crashed>([&] { return g.crash(); });
  EXPECT_EQ(e.signal(), SIGSEGV) << e.what();
  EXPECT_THAT(e.what(), HasSubstr("worker_demo::Greeter::crash was in flight"));
  // addr2line is bounded (5 s); on a machine loaded enough to exceed that, the message says so
  // and the frames are module+offset.
  if (addr2line_installed() && e.backtrace().find("addr2line did not finish") == std::string::npos)
    EXPECT_THAT(e.backtrace(), HasSubstr(" 0# worker_demo::worker_invalid_write()"));
  else
    EXPECT_THAT(e.backtrace(), HasSubstr(" 0# ?? in " + std::string(PROCXY_TEST_WORKER) + "+0x"));
}
#endif

}  // namespace context

}  // namespace
