// proxy<T> end to end: calls, errors, concurrency, async methods, lifetime.
#include "procxy/proxy.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <coroutine>
#include <fstream>
#include <future>
#include <iterator>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "procxy/procxy.hpp"

using namespace std::chrono_literals;

namespace {

class Counter {
 public:
  explicit Counter(int start = 0) : value_(start) {}
  int add(int n) { return value_ += n; }
  int get() const { return value_; }
  int child_pid() const { return static_cast<int>(::getpid()); }
  // Returns n after sleeping: used to show that calls run one at a time, in order.
  int echo_after(int n, int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    log_.push_back(n);
    return n;
  }
  std::vector<int> log() const { return log_; }
  double divide(double a, double b) {
    if (b == 0) throw std::domain_error("division by zero");
    return a / b;
  }
  void fail_custom() {
    struct my_error : std::runtime_error {
      using std::runtime_error::runtime_error;
    };
    throw my_error("custom failure");
  }
  void fail_int() { throw 42; }
  // An async method: the child replies when the promise is fulfilled, and keeps serving calls.
  procxy::future<int> later(int n, int ms) {
    procxy::promise<int> p;
    auto f = p.get_future();
    std::thread([p = std::move(p), n, ms]() mutable {
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      p.set_value(n * 2);
    }).detach();
    return f;
  }
  std::future<std::string> later_std(std::string s, int ms) {
    return std::async(std::launch::async, [s, ms] {
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      if (s.empty()) throw std::invalid_argument("empty");
      return s + s;
    });
  }
  void crash() { std::abort(); }
  std::string blob(std::size_t n) { return std::string(n, 'b'); }
  std::size_t length(const std::string& s) { return s.size(); }

 private:
  int value_;
  std::vector<int> log_;
};
PROCXY_CLASS(Counter, add, get, child_pid, echo_after, log, divide, fail_custom, fail_int, later,
             later_std, crash, blob, length);

TEST(Proxy, CallsRunInTheChildProcess) {
  auto c = procxy::spawn<Counter>();
  int child = c.child_pid().get();
  EXPECT_NE(child, ::getpid());
  EXPECT_EQ(child, c.pid());
}

TEST(Proxy, ConstructorArgumentsReachTheChild) {
  auto c = procxy::spawn<Counter>({}, 40);
  EXPECT_EQ(c.add(2).get(), 42);
}

TEST(Proxy, TwoProxiesOfOneClassHoldSeparateState) {
  auto a = procxy::spawn<Counter>({}, 100);
  auto b = procxy::spawn<Counter>({}, 200);
  a.add(1).get();
  b.add(2).get();
  EXPECT_EQ(a.get().get(), 101);
  EXPECT_EQ(b.get().get(), 202);
  EXPECT_NE(a.pid(), b.pid());
}

TEST(Proxy, StandardExceptionsArriveAsThemselves) {
  auto c = procxy::spawn<Counter>();
  try {
    c.divide(1, 0).get();
    FAIL() << "no exception";
  } catch (const std::domain_error& e) {
    EXPECT_STREQ(e.what(), "division by zero");
  }
  EXPECT_DOUBLE_EQ(c.divide(1, 4).get(), 0.25);  // the child keeps serving
}

TEST(Proxy, OtherExceptionsArriveAsRemoteErrorWithTheirTypeName) {
  auto c = procxy::spawn<Counter>();
  try {
    c.fail_custom().get();
    FAIL() << "no exception";
  } catch (const procxy::remote_error& e) {
    EXPECT_NE(e.type_name().find("my_error"), std::string::npos) << e.type_name();
    EXPECT_NE(std::string(e.what()).find("custom failure"), std::string::npos) << e.what();
    EXPECT_EQ(e.kind(), procxy::error_kind::remote);
  }
  try {
    c.fail_int().get();
    FAIL() << "no exception";
  } catch (const procxy::remote_error& e) {
    EXPECT_EQ(e.type_name(), "int");
  }
}

TEST(Proxy, CallsMadeWhileTheChildIsStartingRunInOrder) {
  auto c = procxy::spawn<Counter>();
  std::vector<procxy::future<int>> fs;
  for (int i = 1; i <= 100; ++i) fs.push_back(c.add(1));  // before the child has constructed
  for (int i = 1; i <= 100; ++i) EXPECT_EQ(fs[i - 1].get(), i);
  c.started().get();
}

TEST(Proxy, ChildRunsCallsOneAtATimeInArrivalOrder) {
  auto c = procxy::spawn<Counter>();
  std::vector<procxy::future<int>> fs;
  for (int i = 0; i < 5; ++i) fs.push_back(c.echo_after(i, 5 - i));  // later ones are faster
  for (auto& f : fs) f.get();
  EXPECT_EQ(c.log().get(), (std::vector<int>{0, 1, 2, 3, 4}));
}

TEST(Proxy, SixteenThreadsThousandCallsEachNoCrossTalk) {
  auto c = procxy::spawn<Counter>();
  constexpr int threads = 16, calls = 1000;
  std::atomic<int> wrong{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = 0; i < calls; ++i) {
        double a = t * 100000 + i;
        if (c.divide(a, 1).get() != a) ++wrong;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(Proxy, SixteenThreadsPipeliningWithoutWaitingInOrder) {
  auto c = procxy::spawn<Counter>();
  std::vector<std::thread> ts;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 16; ++t) {
    ts.emplace_back([&, t] {
      std::vector<procxy::future<double>> fs;
      for (int i = 0; i < 200; ++i) fs.push_back(c.divide(t * 1000 + i, 2));
      for (int i = 0; i < 200; ++i)
        if (fs[i].get() != (t * 1000 + i) / 2.0) ++wrong;
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST(Proxy, AsyncMethodOverlapsWithOtherCalls) {
  auto c = procxy::spawn<Counter>();
  auto slow = c.later(21, 300);  // replies after 300 ms
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(c.add(5).get(), 5);  // served meanwhile
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 250ms);
  EXPECT_FALSE(slow.ready());
  EXPECT_EQ(slow.get(), 42);
}

TEST(Proxy, StdFutureAsyncMethodRepliesWithValueOrException) {
  auto c = procxy::spawn<Counter>();
  auto ok = c.later_std("ab", 50);
  auto bad = c.later_std("", 10);
  EXPECT_EQ(c.add(1).get(), 1);
  EXPECT_EQ(ok.get(), "abab");
  EXPECT_THROW(bad.get(), std::invalid_argument);
}

TEST(Proxy, MacroFreeCallByMemberPointer) {
  auto c = procxy::spawn<Counter>({}, 1);
  EXPECT_EQ(c.call<&Counter::add>(2).get(), 3);
  EXPECT_DOUBLE_EQ(c.call<&Counter::divide>(1, 8).get(), 0.125);
}

TEST(Proxy, ThenRunsOnTheDispatchThreadWithTheValue) {
  auto c = procxy::spawn<Counter>({}, 1);
  auto caller = std::this_thread::get_id();
  std::thread::id ran_on;
  auto f = c.add(1).then([&](int v) {
    ran_on = std::this_thread::get_id();
    return v * 10;
  });
  EXPECT_EQ(f.get(), 20);
  EXPECT_NE(ran_on, caller);
}

TEST(Proxy, ThenPropagatesErrorsWithoutCallingTheContinuation) {
  auto c = procxy::spawn<Counter>();
  bool called = false;
  auto f = c.divide(1, 0).then([&](double) {
    called = true;
    return 0;
  });
  EXPECT_THROW(f.get(), std::domain_error);
  EXPECT_FALSE(called);
}

TEST(Proxy, TryGetYieldsValueOrErrorWithoutThrowing) {
  auto c = procxy::spawn<Counter>();
  auto ok = c.divide(1, 2).try_get();
  ASSERT_TRUE(ok.has_value());
  EXPECT_DOUBLE_EQ(ok.value(), 0.5);
  auto bad = c.divide(1, 0).try_get();
  ASSERT_FALSE(bad.has_value());
  EXPECT_THROW(std::rethrow_exception(bad.error()), std::domain_error);
}

TEST(Proxy, WaitForTimesOutThenSucceeds) {
  auto c = procxy::spawn<Counter>();
  auto f = c.echo_after(7, 200);
  EXPECT_EQ(f.wait_for(10ms), std::future_status::timeout);
  EXPECT_FALSE(f.ready());
  EXPECT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_TRUE(f.ready());
  EXPECT_EQ(f.get(), 7);
}

// A minimal coroutine type to show co_await works from any C++20 coroutine.
struct task {
  struct promise_type {
    std::promise<double> result;
    task get_return_object() { return task{result.get_future()}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_value(double v) { result.set_value(v); }
    void unhandled_exception() { result.set_exception(std::current_exception()); }
  };
  std::future<double> result;
};

task sum_twice(procxy::proxy<Counter>& c) {
  double a = co_await c.divide(10, 2);
  double b = co_await c.divide(a, 5);
  co_return a + b;
}

TEST(Proxy, CoAwaitFromAnyCoroutine) {
  auto c = procxy::spawn<Counter>();
  auto t = sum_twice(c);
  ASSERT_EQ(t.result.wait_for(5s), std::future_status::ready);
  EXPECT_DOUBLE_EQ(t.result.get(), 6.0);
}

task divide_by_zero(procxy::proxy<Counter>& c) {
  double a = co_await c.divide(1, 0);
  co_return a;
}

TEST(Proxy, CoAwaitRethrowsTheChildsException) {
  auto c = procxy::spawn<Counter>();
  auto t = divide_by_zero(c);
  ASSERT_EQ(t.result.wait_for(5s), std::future_status::ready);
  EXPECT_THROW(t.result.get(), std::domain_error);
}

TEST(Proxy, TerminateIsIdempotentAndFailsLaterCalls) {
  auto c = procxy::spawn<Counter>();
  int pid = c.pid();
  EXPECT_EQ(c.add(1).get(), 1);
  EXPECT_TRUE(c.running());
  c.terminate();
  c.terminate();
  EXPECT_FALSE(c.running());
  EXPECT_EQ(c.pid(), pid);
  EXPECT_THROW(c.add(1).get(), procxy::terminated);
  // The child was reaped: no zombie with that pid remains our child.
  EXPECT_NE(::kill(pid, 0), 0);
}

TEST(Proxy, PendingCallsFailWithTerminated) {
  auto c = procxy::spawn<Counter>();
  c.started().get();
  auto slow = c.echo_after(1, 2000);
  std::this_thread::sleep_for(50ms);
  c.terminate();
  EXPECT_THROW(slow.get(), procxy::terminated);
}

TEST(Proxy, FutureOutlivesItsProxy) {
  procxy::future<int> f;
  {
    auto c = procxy::spawn<Counter>();
    f = c.echo_after(3, 1000);
  }
  EXPECT_THROW(f.get(), procxy::terminated);
}

TEST(Proxy, MoveTransfersTheChildAndMovedFromFailsCalls) {
  auto a = procxy::spawn<Counter>({}, 5);
  int pid = a.pid();
  auto b = std::move(a);
  EXPECT_EQ(b.pid(), pid);
  EXPECT_EQ(b.add(1).get(), 6);
  EXPECT_THROW(a.add(1).get(), procxy::terminated);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(a.pid(), -1);                            // NOLINT(bugprone-use-after-move)
  procxy::proxy<Counter> c = procxy::spawn<Counter>({}, 9);
  c = std::move(b);
  EXPECT_EQ(c.get().get(), 6);
}

TEST(Proxy, ChildCrashFailsThePendingCallWithChildCrashed) {
  auto c = procxy::spawn<Counter>();
  try {
    c.crash().get();
    FAIL() << "no exception";
  } catch (const procxy::child_crashed& e) {
    EXPECT_EQ(e.signal(), SIGABRT) << e.what();
    EXPECT_NE(std::string(e.what()).find("SIGABRT"), std::string::npos) << e.what();
  }
  EXPECT_THROW(c.add(1).get(), procxy::child_crashed);
  EXPECT_FALSE(c.running());
}

TEST(Proxy, CallTimeoutFailsWithTimeoutErrorAndTheChildKeepsServing) {
  auto c = procxy::spawn<Counter>({.call_timeout = 100ms});
  auto t0 = std::chrono::steady_clock::now();
  try {
    (void)c.echo_after(1, 400).get();
    ADD_FAILURE() << "no timeout";
  } catch (const procxy::timeout_error& e) {  // says which call and what the limit was
    EXPECT_NE(std::string(e.what()).find("echo_after timed out after 100 ms"), std::string::npos)
        << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 350ms);
  std::this_thread::sleep_for(400ms);  // the child finishes the slow call; its reply is dropped
  EXPECT_EQ(c.add(2).get(), 2);        // and later calls still match up
}

TEST(Proxy, UnwaitedCallTimesOutInTheBackground) {
  auto c = procxy::spawn<Counter>({.call_timeout = 100ms});
  auto f = c.echo_after(1, 500);
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(f.ready());
  EXPECT_THROW(f.get(), procxy::timeout_error);
}

TEST(Proxy, ArgumentsLargerThanMaxMessageSizeFailThatCallOnly) {
  auto c = procxy::spawn<Counter>({.max_message_size = 4096});
  EXPECT_THROW(c.length(std::string(10000, 'x')).get(), procxy::serialization_error);
  EXPECT_EQ(c.length(std::string(100, 'x')).get(), 100u);
}

TEST(Proxy, ResultLargerThanMaxMessageSizeFailsThatCallOnly) {
  auto c = procxy::spawn<Counter>({.max_message_size = 4096});
  EXPECT_THROW(c.blob(10000).get(), procxy::serialization_error);
  EXPECT_EQ(c.blob(10).get(), "bbbbbbbbbb");
}

// PROCXY_TRACE=1 makes both sides print every message, decoded, to stderr.
TEST(Proxy, TraceEnvPrintsDecodedMessagesOfBothSides) {
  char path[] = "/tmp/procxy-trace-XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  int saved = ::dup(2);
  ::dup2(fd, 2);
  ::setenv("PROCXY_TRACE", "1", 1);
  {
    auto c = procxy::spawn<Counter>({}, 40);
    EXPECT_EQ(c.add(2).get(), 42);
  }
  ::unsetenv("PROCXY_TRACE");
  ::dup2(saved, 2);
  ::close(saved);
  ::close(fd);
  std::ifstream in(path);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ::unlink(path);
  EXPECT_NE(all.find("procxy[parent"), std::string::npos) << all;
  EXPECT_NE(all.find("send call"), std::string::npos) << all;
  EXPECT_NE(all.find("recv call #2"), std::string::npos) << all;
  EXPECT_NE(all.find("Counter::add(2)"), std::string::npos) << all;
  EXPECT_NE(all.find("Counter::add = 42"), std::string::npos) << all;
  EXPECT_NE(all.find("recv shutdown"), std::string::npos) << all;
}

// Method names that proxy<T> once used for its own private members (reset, bind, self, merge)
// are ordinary described names: none is hidden by the proxy (issue 10, point 5).
class Names {
 public:
  int reset() { return n_ = 0; }
  int bind(int v) { return n_ += v; }
  int self() const { return n_; }
  int merge(int a, int b) { return a + b; }

 private:
  int n_ = 5;
};
PROCXY_CLASS(Names, reset, bind, self, merge);

// stats() returns a public type a user can name and store.
static_assert(std::is_same_v<decltype(std::declval<const procxy::proxy<Counter>&>().stats()),
                             procxy::channel_stats>);

TEST(Proxy, NoPrivateMemberOfTheProxyHidesADescribedMethodName) {
  auto p = procxy::spawn<Names>();
  EXPECT_EQ(p.self().get(), 5);
  EXPECT_EQ(p.reset().get(), 0);
  EXPECT_EQ(p.bind(3).get(), 3);
  EXPECT_EQ(p.merge(1, 2).get(), 3);
  auto q = std::move(p);  // moving re-binds the faces of both
  EXPECT_EQ(q.self().get(), 3);
  EXPECT_THROW(p.self().get(), procxy::terminated);
}

}  // namespace

// ---- the call-target seam (detail/call_target.hpp) ----------------------------------------------

namespace {
// The smallest pool: calls alternate between two children; events, properties and started() are
// the first one's. Shows that proxy<T>'s typed face works over any call target.
class round_robin final : public procxy::detail::call_target {
 public:
  explicit round_robin(std::vector<std::shared_ptr<call_target>> m) : members_(std::move(m)) {}
  procxy::detail::connection& channel_for_call() override {
    return members_[next_.fetch_add(1) % members_.size()]->channel_for_call();
  }
  std::chrono::milliseconds default_timeout() const override {
    return members_[0]->default_timeout();
  }
  procxy::detail::event_hub& events() override { return members_[0]->events(); }
  procxy::detail::connection& event_channel() override { return members_[0]->event_channel(); }
  procxy::future<void> started() override { return members_[0]->started(); }
  int pid() const noexcept override { return -1; }
  bool running() const override {
    for (auto& m : members_)
      if (!m->running()) return false;
    return true;
  }
  void terminate() override {
    for (auto& m : members_) m->terminate();
  }
  procxy::channel_stats stats() const override { return members_[0]->stats(); }

 private:
  std::vector<std::shared_ptr<call_target>> members_;
  std::atomic<std::size_t> next_{0};
};
}  // namespace

TEST(CallTarget, TheTypedFaceWorksOverAnyTarget) {
  auto a = procxy::detail::spawn_target<Counter>({}, 100);
  auto b = procxy::detail::spawn_target<Counter>({}, 200);
  const int pid_a = a->pid(), pid_b = b->pid();
  auto pool = procxy::detail::make_proxy<Counter>(std::make_shared<round_robin>(
      std::vector<std::shared_ptr<procxy::detail::call_target>>{a, b}));
  EXPECT_EQ(pool.pid(), -1);
  std::set<int> pids;
  for (int i = 0; i < 4; ++i) pids.insert(pool.child_pid().get());
  EXPECT_EQ(pids, (std::set<int>{pid_a, pid_b}));
  EXPECT_EQ(pool.add(1).get(), 101);  // the 5th call: member a again
  EXPECT_EQ(pool.add(1).get(), 201);
  EXPECT_THROW(pool.divide(1, 0).get(), std::domain_error);
  EXPECT_TRUE(pool.running());
  pool.terminate();
  EXPECT_FALSE(a->running());
  EXPECT_FALSE(b->running());
  EXPECT_THROW(pool.add(1).get(), procxy::terminated);
}
