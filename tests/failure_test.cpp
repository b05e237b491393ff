// Failure semantics that are not crashes: where remote exceptions come from (pid, method,
// backtrace), registered exception types, per-call timeouts, the timeout policy, idempotent
// retries, the on_exit handler, stderr capture, and the hard cases of terminate().
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "procxy/procxy.hpp"

using namespace std::chrono_literals;

namespace failure_test {

// A user exception type with a payload, rebuilt as itself (constructor from the members).
class quota_exceeded : public std::runtime_error {
 public:
  quota_exceeded(std::string u, int l)
      : std::runtime_error("quota exceeded for " + u + " (limit " + std::to_string(l) + ")"),
        user(std::move(u)),
        limit(l) {}
  std::string user;
  int limit;
};
PROCXY_EXCEPTION(quota_exceeded, user, limit);

// Rebuilt from (what, members...): the message is not derived from the payload.
class http_error : public std::runtime_error {
 public:
  http_error(std::string what, int s) : std::runtime_error(std::move(what)), status(s) {}
  int status;
};
PROCXY_EXCEPTION(http_error, status);

// No payload at all.
class cancelled : public std::exception {
 public:
  const char* what() const noexcept override { return "cancelled by the user"; }
};
PROCXY_EXCEPTION(cancelled);

[[gnu::noinline]] void deep_thrower(int depth) {
  if (depth == 0) throw std::out_of_range("deep failure");
  deep_thrower(depth - 1);
  asm volatile("");  // keep the recursion from becoming a loop
}

class Fragile {
 public:
  Fragile() = default;
  explicit Fragile(int mode) {
    if (mode == 1) ::signal(SIGTERM, SIG_IGN);  // a child that ignores SIGTERM
  }
  ~Fragile() {
    if (hang_in_destructor_) std::this_thread::sleep_for(1h);
  }
  int add(int a, int b) { return a + b; }
  void fail_domain() { throw std::domain_error("domain"); }
  void fail_system() { throw std::system_error(ENOENT, std::generic_category(), "open"); }
  void fail_custom() {
    struct unregistered_error : std::runtime_error {
      using std::runtime_error::runtime_error;
    };
    throw unregistered_error("who am I");
  }
  void fail_quota(std::string user) { throw quota_exceeded(std::move(user), 42); }
  void fail_http() { throw http_error("teapot", 418); }
  void fail_cancelled() { throw cancelled(); }
  void fail_deep() { deep_thrower(3); }
  int sleep_ms(int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return ms;
  }
  // Sleeps `ms` on its first invocation only; returns how many times it ran.
  int slow_first(int ms) {
    if (++runs_ == 1) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return runs_;
  }
  int runs() const { return runs_; }
  void hang_in_destructor() { hang_in_destructor_ = true; }
  void write_stderr_and_abort(std::string text) {
    std::fputs(text.c_str(), stderr);
    std::fflush(stderr);
    std::abort();
  }
  void exit_with(int code) { std::exit(code); }

 private:
  int runs_ = 0;
  bool hang_in_destructor_ = false;
};
PROCXY_CLASS(Fragile, add, fail_domain, fail_system, fail_custom, fail_quota, fail_http,
             fail_cancelled, fail_deep, sleep_ms, slow_first, runs, hang_in_destructor,
             write_stderr_and_abort, exit_with);

// Returns a copy of the exception (sliced to E: use try/catch to inspect remote_info_of).
template <class E, class F>
E catch_as(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e;
  }
  ADD_FAILURE() << "expected an exception";
  throw std::logic_error("no exception");
}

// ---- where remote exceptions come from --------------------------------------------------------

TEST(RemoteErrors, StandardExceptionsCarryPidMethodAndType) {
  auto p = procxy::spawn<Fragile>();
  try {
    p.fail_domain().get();
    FAIL();
  } catch (const std::domain_error& e) {
    EXPECT_STREQ(e.what(), "domain");
    auto* info = procxy::remote_info_of(e);
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(info->pid(), p.pid());
    EXPECT_EQ(info->method(), "failure_test::Fragile::fail_domain");
    EXPECT_EQ(info->type_name(), "std::domain_error");
    EXPECT_TRUE(info->backtrace().empty());
  }
  try {
    p.fail_system().get();
    FAIL();
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::error_code(ENOENT, std::generic_category()));
    auto* info = procxy::remote_info_of(e);
    ASSERT_NE(info, nullptr);
    EXPECT_EQ(info->method(), "failure_test::Fragile::fail_system");
  }
}

TEST(RemoteErrors, RemoteErrorNamesTypeMethodAndPid) {
  auto p = procxy::spawn<Fragile>();
  auto e = catch_as<procxy::remote_error>([&] { p.fail_custom().get(); });
  EXPECT_EQ(e.kind(), procxy::error_kind::remote);
  EXPECT_EQ(e.pid(), p.pid());
  EXPECT_EQ(e.method(), "failure_test::Fragile::fail_custom");
  EXPECT_NE(e.type_name().find("unregistered_error"), std::string::npos) << e.type_name();
  std::string what = e.what();
  EXPECT_NE(what.find("who am I"), std::string::npos) << what;
  EXPECT_NE(what.find("failure_test::Fragile::fail_custom"), std::string::npos) << what;
  EXPECT_NE(what.find(std::to_string(p.pid())), std::string::npos) << what;
}

TEST(RemoteErrors, LocalExceptionsHaveNoRemoteInfo) {
  std::domain_error local("here");
  EXPECT_EQ(procxy::remote_info_of(local), nullptr);
}

TEST(RemoteErrors, RegisteredTypeIsRebuiltWithItsPayload) {
  auto p = procxy::spawn<Fragile>();
  try {
    p.fail_quota("ann").get();
    FAIL();
  } catch (const quota_exceeded& e) {
    EXPECT_EQ(e.user, "ann");
    EXPECT_EQ(e.limit, 42);
    EXPECT_STREQ(e.what(), "quota exceeded for ann (limit 42)");
    ASSERT_NE(procxy::remote_info_of(e), nullptr);
    EXPECT_EQ(procxy::remote_info_of(e)->pid(), p.pid());
  }
}

TEST(RemoteErrors, RegisteredTypeRebuiltFromWhatAndMembers) {
  auto p = procxy::spawn<Fragile>();
  auto e = catch_as<http_error>([&] { p.fail_http().get(); });
  EXPECT_EQ(e.status, 418);
  EXPECT_STREQ(e.what(), "teapot");
}

TEST(RemoteErrors, RegisteredTypeWithoutPayload) {
  auto p = procxy::spawn<Fragile>();
  auto e = catch_as<cancelled>([&] { p.fail_cancelled().get(); });
  EXPECT_STREQ(e.what(), "cancelled by the user");
}

// Where this build cannot record stacks (configured with -DPROCXY_BACKTRACE=OFF, or without
// libbacktrace), a requested backtrace is a note saying why; the child is this same program.
void skip_unless_backtraces_available(const procxy::remote_info& info) {
  std::string why = procxy::detail::throw_backtrace_unavailable_reason();
  if (why.empty()) return;
  EXPECT_NE(info.backtrace().find("(no backtrace: " + why + ")"), std::string::npos)
      << info.backtrace();
  GTEST_SKIP() << "no backtraces in this build: " << why;
}

TEST(RemoteErrors, BacktraceOptionNamesTheThrowingFunctions) {
  auto p = procxy::spawn<Fragile>({.backtrace = true});
  try {
    p.fail_deep().get();
    FAIL();
  } catch (const std::out_of_range& e) {
    auto* info = procxy::remote_info_of(e);
    ASSERT_NE(info, nullptr);
    skip_unless_backtraces_available(*info);
    if (IsSkipped()) return;
    // The first frame is the function that threw (the hook's own frames are left out).
    EXPECT_NE(info->backtrace().substr(0, info->backtrace().find('\n')).find("deep_thrower"),
              std::string::npos)
        << info->backtrace();
    EXPECT_NE(info->backtrace().find("deep_thrower"), std::string::npos) << info->backtrace();
    EXPECT_NE(info->backtrace().find("fail_deep"), std::string::npos) << info->backtrace();
  }
  // A remote_error carries it in what() as well.
  auto e = catch_as<procxy::remote_error>([&] { p.fail_custom().get(); });
  EXPECT_NE(e.backtrace().find("fail_custom"), std::string::npos) << e.backtrace();
  EXPECT_NE(std::string(e.what()).find("fail_custom"), std::string::npos);
}

TEST(RemoteErrors, BacktraceFromTheEnvironmentVariable) {
  auto p = procxy::spawn<Fragile>({.env = {{"PROCXY_BACKTRACE", "1"}}});
  try {
    p.fail_deep().get();
    FAIL();
  } catch (const std::out_of_range& e) {
    ASSERT_NE(procxy::remote_info_of(e), nullptr);
    skip_unless_backtraces_available(*procxy::remote_info_of(e));
    if (IsSkipped()) return;
    EXPECT_NE(procxy::remote_info_of(e)->backtrace().find("deep_thrower"), std::string::npos);
  }
}

TEST(RemoteErrors, NoBacktraceByDefault) {
  auto p = procxy::spawn<Fragile>({.env = {{"PROCXY_BACKTRACE", "0"}}});
  try {
    p.fail_deep().get();
    FAIL();
  } catch (const std::out_of_range& e) {
    ASSERT_NE(procxy::remote_info_of(e), nullptr);
    EXPECT_TRUE(procxy::remote_info_of(e)->backtrace().empty());
  }
}

// ---- timeouts ---------------------------------------------------------------------------------

TEST(Timeouts, PerCallTimeoutOverridesTheProxys) {
  auto p = procxy::spawn<Fragile>({.call_timeout = 10s});
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_THROW(p.with_timeout(100ms).sleep_ms(2000).get(), procxy::timeout_error);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1500ms);
  EXPECT_EQ(p.stats().calls_timed_out, 1u);
}

TEST(Timeouts, PerCallZeroMeansNoTimeoutEvenIfTheProxyHasOne) {
  auto p = procxy::spawn<Fragile>({.call_timeout = 100ms});
  EXPECT_EQ(p.with_timeout(0ms).sleep_ms(300).get(), 300);
  EXPECT_THROW(p.sleep_ms(300).get(), procxy::timeout_error);  // the proxy's own still applies
}

TEST(Timeouts, ViewWorksWithCallByMemberPointer) {
  auto p = procxy::spawn<Fragile>();
  EXPECT_THROW((p.with_timeout(100ms).call<&Fragile::sleep_ms>(1000).get()), procxy::timeout_error);
  EXPECT_EQ((p.with_timeout(5s).call<&Fragile::add>(2, 3).get()), 5);
}

TEST(Timeouts, KeepChildPolicyDropsTheLateReplyAndKeepsState) {
  auto p = procxy::spawn<Fragile>({.call_timeout = 100ms});
  EXPECT_THROW(p.slow_first(400).get(), procxy::timeout_error);
  EXPECT_EQ(p.with_timeout(5s).runs().get(), 1);  // queued behind the slow call; state kept
  EXPECT_TRUE(p.running());
}

TEST(Timeouts, KillChildPolicyKillsTheChildAndFailsEverythingElse) {
  std::promise<procxy::exit_info> exited;
  auto p =
      procxy::spawn<Fragile>({.call_timeout = 200ms,
                              .on_timeout = procxy::timeout_policy::kill_child,
                              .on_exit = [&](const procxy::exit_info& i) { exited.set_value(i); }});
  auto slow = p.sleep_ms(5000);
  auto queued = p.with_timeout(0ms).add(1, 2);  // no timeout of its own: fails with the kill
  EXPECT_THROW(slow.get(), procxy::timeout_error);
  auto e = catch_as<procxy::terminated>([&] { queued.get(); });
  EXPECT_NE(std::string(e.what()).find("kill_child"), std::string::npos) << e.what();
  EXPECT_THROW(p.add(1, 2).get(), procxy::terminated);  // later calls fail at once
  auto fut = exited.get_future();
  ASSERT_EQ(fut.wait_for(5s), std::future_status::ready);
  auto info = fut.get();
  EXPECT_EQ(info.signal, SIGKILL);
  EXPECT_TRUE(info.requested);
  EXPECT_FALSE(p.running());
}

TEST(Timeouts, IdempotentCallIsSentAgainAfterATimeout) {
  auto p = procxy::spawn<Fragile>();
  // First run sleeps 600 ms: the 400 ms attempt times out, the retry runs right after it, 200 ms
  // before its own deadline (a margin that holds under the sanitizers on a loaded machine).
  EXPECT_EQ(p.with({.timeout = 400ms, .retries = 2}).slow_first(600).get(), 2);
  EXPECT_EQ(p.stats().calls_retried, 1u);
  EXPECT_EQ(p.stats().calls_timed_out, 0u);
}

TEST(Timeouts, IdempotentShorthandAndRetriesExhausted) {
  auto p = procxy::spawn<Fragile>({.call_timeout = 100ms});
  auto e = catch_as<procxy::timeout_error>([&] { p.idempotent(2).sleep_ms(1000).get(); });
  EXPECT_NE(std::string(e.what()).find("retries"), std::string::npos) << e.what();
  EXPECT_EQ(p.stats().calls_retried, 2u);
}

TEST(Timeouts, NoSilentResendForOrdinaryCalls) {
  auto p = procxy::spawn<Fragile>({.call_timeout = 100ms});
  EXPECT_THROW(p.slow_first(300).get(), procxy::timeout_error);
  EXPECT_EQ(p.with_timeout(5s).runs().get(), 1);  // ran exactly once
  EXPECT_EQ(p.stats().calls_retried, 0u);
}

// ---- on_exit ----------------------------------------------------------------------------------

struct exit_log {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<procxy::exit_info> seen;
  std::vector<std::thread::id> threads;
  std::function<void(const procxy::exit_info&)> handler() {
    return [this](const procxy::exit_info& i) {
      std::lock_guard lk(mu);
      seen.push_back(i);
      threads.push_back(std::this_thread::get_id());
      cv.notify_all();
    };
  }
  bool wait_for(std::size_t n) {
    std::unique_lock lk(mu);
    return cv.wait_for(lk, 10s, [&] { return seen.size() >= n; });
  }
};

TEST(OnExit, RunsOnceWhenTheChildIsKilledFromOutside) {
  exit_log log;
  auto p = procxy::spawn<Fragile>({.on_exit = log.handler()});
  EXPECT_EQ(p.add(1, 1).get(), 2);
  ::kill(p.pid(), SIGKILL);
  ASSERT_TRUE(log.wait_for(1));
  EXPECT_THROW(p.add(1, 1).get(), procxy::child_crashed);
  p.terminate();
  p.terminate();
  std::this_thread::sleep_for(50ms);
  std::lock_guard lk(log.mu);
  ASSERT_EQ(log.seen.size(), 1u);
  EXPECT_EQ(log.seen[0].signal, SIGKILL);
  EXPECT_FALSE(log.seen[0].requested);
  EXPECT_EQ(log.seen[0].pid, p.pid());
  EXPECT_NE(log.threads[0], std::this_thread::get_id());
}

TEST(OnExit, RunsOnceOnTerminateWithRequestedSet) {
  exit_log log;
  {
    auto p = procxy::spawn<Fragile>({.on_exit = log.handler()});
    EXPECT_EQ(p.add(1, 1).get(), 2);
    p.terminate();
    std::lock_guard lk(log.mu);
    ASSERT_EQ(log.seen.size(), 1u);  // terminate() returns after the handler ran
    EXPECT_TRUE(log.seen[0].requested);
    EXPECT_EQ(log.seen[0].exit_code, 0);
  }
  std::lock_guard lk(log.mu);
  EXPECT_EQ(log.seen.size(), 1u);  // not again on destruction
}

TEST(OnExit, RunsOnExitCode) {
  exit_log log;
  auto p = procxy::spawn<Fragile>({.on_exit = log.handler()});
  auto e = catch_as<procxy::child_crashed>([&] { p.exit_with(7).get(); });
  EXPECT_EQ(e.exit_code(), 7);
  ASSERT_TRUE(log.wait_for(1));
  std::lock_guard lk(log.mu);
  EXPECT_EQ(log.seen[0].exit_code, 7);
  EXPECT_FALSE(log.seen[0].requested);
  EXPECT_EQ(log.seen[0].description, "exited with code 7");
}

TEST(OnExit, HandlerMayDestroyTheProxy) {
  std::optional<procxy::proxy<Fragile>> p;
  std::promise<void> done;
  p.emplace(procxy::spawn<Fragile>({.on_exit = [&](const procxy::exit_info&) {
    p.reset();  // on the dispatch thread, inside the handler
    done.set_value();
  }}));
  int pid = p->pid();
  ASSERT_GT(pid, 0);
  EXPECT_EQ(p->add(2, 2).get(), 4);
  ::kill(pid, SIGKILL);
  ASSERT_EQ(done.get_future().wait_for(10s), std::future_status::ready);
}

TEST(OnExit, HandlerMayCallTerminateDuringTerminate) {
  std::optional<procxy::proxy<Fragile>> p;
  std::atomic<int> runs{0};
  p.emplace(procxy::spawn<Fragile>({.on_exit = [&](const procxy::exit_info&) {
    ++runs;
    p->terminate();  // terminate() is running on the main thread and joins this one
  }}));
  EXPECT_EQ(p->add(2, 2).get(), 4);
  p->terminate();
  EXPECT_EQ(runs.load(), 1);
}

// ---- stderr capture ---------------------------------------------------------------------------

TEST(StderrCapture, CrashMessageCarriesTheLastBytesOfStderr) {
  auto p = procxy::spawn<Fragile>({.capture_stderr = 64});
  std::string text = std::string(1000, 'x') + "\nfatal: the disk is on fire\n";
  auto e = catch_as<procxy::child_crashed>([&] { p.write_stderr_and_abort(text).get(); });
  EXPECT_EQ(e.signal(), SIGABRT);
  EXPECT_EQ(e.stderr_tail().size(), 64u);
  EXPECT_NE(e.stderr_tail().find("fatal: the disk is on fire"), std::string::npos)
      << e.stderr_tail();
  EXPECT_NE(std::string(e.what()).find("fatal: the disk is on fire"), std::string::npos)
      << e.what();
  EXPECT_EQ(std::string(e.what()).find("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
            std::string::npos);
}

TEST(StderrCapture, OffByDefault) {
  auto p = procxy::spawn<Fragile>();
  auto e = catch_as<procxy::child_crashed>([&] { p.write_stderr_and_abort("not kept\n").get(); });
  EXPECT_TRUE(e.stderr_tail().empty());
  EXPECT_EQ(std::string(e.what()).find("not kept"), std::string::npos);
}

TEST(StderrCapture, WorksInForkMode) {
  auto p = procxy::spawn<Fragile>({.mode = procxy::spawn_mode::fork, .capture_stderr = 4096});
  auto e = catch_as<procxy::child_crashed>(
      [&] { p.write_stderr_and_abort("forked and failed\n").get(); });
  EXPECT_NE(e.stderr_tail().find("forked and failed"), std::string::npos);
}

// ---- terminate: the hard cases ----------------------------------------------------------------

TEST(Terminate, ConcurrentFromManyThreads) {
  exit_log log;
  auto p = procxy::spawn<Fragile>({.on_exit = log.handler()});
  EXPECT_EQ(p.add(1, 1).get(), 2);
  auto pending = p.sleep_ms(5000);
  std::vector<std::thread> ts;
  for (int i = 0; i < 8; ++i) ts.emplace_back([&] { p.terminate(); });
  for (auto& t : ts) t.join();
  EXPECT_THROW(pending.get(), procxy::terminated);
  EXPECT_FALSE(p.running());
  std::lock_guard lk(log.mu);
  EXPECT_EQ(log.seen.size(), 1u);
}

TEST(Terminate, DestructorThatHangsIsEndedBySigterm) {
  exit_log log;
  auto p = procxy::spawn<Fragile>({.terminate_grace = 200ms, .on_exit = log.handler()});
  p.hang_in_destructor().get();
  auto t0 = std::chrono::steady_clock::now();
  p.terminate();
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 200ms);
  EXPECT_LT(took, 3s);
  std::lock_guard lk(log.mu);
  ASSERT_EQ(log.seen.size(), 1u);
  EXPECT_EQ(log.seen[0].signal, SIGTERM);
}

TEST(Terminate, ChildIgnoringSigtermIsKilled) {
  exit_log log;
  auto p = procxy::spawn<Fragile>({.terminate_grace = 200ms, .on_exit = log.handler()}, 1);
  p.hang_in_destructor().get();
  auto t0 = std::chrono::steady_clock::now();
  p.terminate();
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 400ms);
  EXPECT_LT(took, 3s);
  std::lock_guard lk(log.mu);
  ASSERT_EQ(log.seen.size(), 1u);
  EXPECT_EQ(log.seen[0].signal, SIGKILL);
}

TEST(Terminate, ProxyDestroyedWhileCallsArePending) {
  std::vector<procxy::future<int>> futures;
  {
    auto p = procxy::spawn<Fragile>();
    for (int i = 0; i < 5; ++i) futures.push_back(p.sleep_ms(2000));
  }
  for (auto& f : futures) EXPECT_THROW(f.get(), procxy::terminated);
}

TEST(Terminate, CallsThroughAViewAfterTerminateFail) {
  auto p = procxy::spawn<Fragile>();
  auto& view_holder = p;
  p.terminate();
  EXPECT_THROW(view_holder.with_timeout(1s).add(1, 2).get(), procxy::terminated);
}

}  // namespace failure_test
