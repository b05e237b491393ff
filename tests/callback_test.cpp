// Callbacks across the process boundary, both directions: std::function parameters, results,
// kept listeners, higher-order functions, one-way notify, release, limits, failures.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "procxy/procxy.hpp"
#include "serial_executor.hpp"

using namespace std::chrono_literals;

namespace callback_test {

struct Tick {
  int seq;
  double value;
};

struct Job {
  std::string name;
  std::function<void(int)> on_progress;
};

class Worker {
 public:
  std::string process(const std::vector<std::string>& items,
                      std::function<void(const std::string&)> on_update,
                      std::function<bool(int done, int total)> keep_going) {
    int done = 0;
    for (const auto& item : items) {
      if (!keep_going(done, static_cast<int>(items.size())))
        return "cancelled at " + std::to_string(done);
      on_update("processing " + item);
      ++done;
    }
    return "done " + std::to_string(done);
  }
  std::vector<int> transform(const std::vector<int>& in, std::function<int(int)> mapper) {
    std::vector<int> out;
    for (int v : in) out.push_back(mapper(v));
    return out;
  }
  std::function<int(int)> make_scaler(int factor) {
    return [factor, pid = ::getpid()](int x) {
      if (::getpid() != pid) throw std::logic_error("ran in the wrong process");
      return x * factor;
    };
  }
  void subscribe(std::function<void(Tick)> listener) { listener_ = std::move(listener); }
  void publish(int n) {
    for (int i = 0; i < n; ++i) listener_(Tick{i, i * 0.5});
  }
  void unsubscribe() { listener_ = nullptr; }
  int run_job(Job job) {
    for (int i = 1; i <= 3; ++i) job.on_progress(i);
    return static_cast<int>(job.name.size());
  }
  int call_twice(std::function<int(int)> f, int x) { return f(f(x)); }
  // Higher order: the parent's function receives a child function.
  int with_helper(std::function<int(std::function<int(int)>)> user) {
    return user([](int x) { return x + 1000; });
  }
  void stream(int n, procxy::notify<void(int)> tick) {
    for (int i = 0; i < n; ++i) tick(i);
  }
  int add(int a, int b) { return a + b; }
  // Reentrancy: calls the parent, whose callback calls back into this object.
  int nest(int depth, std::function<int(int)> parent) {
    if (depth == 0) return 0;
    return 1 + parent(depth - 1);
  }
  int child_pid() const { return static_cast<int>(::getpid()); }
  void hold(std::function<void()> f) { held_.push_back(std::move(f)); }
  void drop_all() { held_.clear(); }
  // Hands a function back to where it came from.
  std::function<int(int)> echo_fn(std::function<int(int)> f) { return f; }
  // Calls the function on another thread of the child (an async method).
  std::future<int> async_apply(std::function<int(int)> f, int x) {
    return std::async(std::launch::async, [f = std::move(f), x] { return f(x) + f(x + 1); });
  }
  // A callback with several parameters of several types.
  std::string describe(
      std::function<std::string(int, const std::string&, std::vector<double>, Tick)> f) {
    return f(7, "seven", {0.5, 1.5}, Tick{3, 2.5});
  }
  std::function<int(int)> make_thrower() {
    return [](int x) -> int { throw std::invalid_argument("child refuses " + std::to_string(x)); };
  }

 private:
  std::function<void(Tick)> listener_;
  std::vector<std::function<void()>> held_;
};
PROCXY_CLASS(Worker, process, transform, make_scaler, subscribe, publish, unsubscribe, run_job,
             call_twice, with_helper, stream, add, nest, child_pid, hold, drop_all, echo_fn,
             async_apply, describe, make_thrower);

// The parent's registry settles when the child's release messages have been handled; they are
// sent before the reply of any later call, so one more round trip is enough.
void settle(procxy::proxy<Worker>& w) { (void)w.add(0, 0).get(); }

TEST(Callbacks, ParentFunctionsRunInTheParentWithResultsAndInOrder) {
  auto w = procxy::spawn<Worker>();
  std::vector<std::string> updates;
  std::vector<std::pair<int, int>> asked;
  auto r = w.process(
                {"a", "b", "c"}, [&](const std::string& s) { updates.push_back(s); },
                [&](int done, int total) {
                  asked.emplace_back(done, total);
                  return true;
                })
               .get();
  EXPECT_EQ(r, "done 3");
  EXPECT_EQ(updates, (std::vector<std::string>{"processing a", "processing b", "processing c"}));
  EXPECT_EQ(asked, (std::vector<std::pair<int, int>>{{0, 3}, {1, 3}, {2, 3}}));
  settle(w);
  EXPECT_EQ(w.stats().callbacks_lent, 0u);  // the child kept no copy: all released
  EXPECT_EQ(w.stats().callback_invocations_in, 6u);
}

TEST(Callbacks, ReturnValueReachesTheChild) {
  auto w = procxy::spawn<Worker>();
  bool cancelled = false;
  auto r = w.process(
                {"a", "b", "c"}, [](const std::string&) {},
                [&](int done, int) {
                  cancelled = done == 2;
                  return !cancelled;
                })
               .get();
  EXPECT_EQ(r, "cancelled at 2");
}

TEST(Callbacks, MapperCalledPerElement) {
  auto w = procxy::spawn<Worker>();
  int parent_pid = ::getpid();
  auto out = w.transform({1, 2, 3, 4}, [&](int x) {
                EXPECT_EQ(::getpid(), parent_pid);
                return x * x;
              }).get();
  EXPECT_EQ(out, (std::vector<int>{1, 4, 9, 16}));
}

TEST(Callbacks, ChildFunctionReturnedToTheParentRunsInTheChild) {
  auto w = procxy::spawn<Worker>();
  std::function<int(int)> scale = w.make_scaler(3).get();
  EXPECT_EQ(scale(3), 9);
  EXPECT_EQ(w.stats().callbacks_held, 1);
  std::vector<std::thread> ts;  // from any parent thread
  std::atomic<int> sum{0};
  for (int i = 0; i < 4; ++i) ts.emplace_back([&, i] { sum += scale(i); });
  for (auto& t : ts) t.join();
  EXPECT_EQ(sum.load(), 3 * (0 + 1 + 2 + 3));
  scale = nullptr;
  EXPECT_EQ(w.stats().callbacks_held, 0);
}

TEST(Callbacks, ChildFunctionAfterTerminateThrowsTerminated) {
  auto w = procxy::spawn<Worker>();
  auto scale = w.make_scaler(2).get();
  w.terminate();
  EXPECT_THROW(scale(1), procxy::terminated);
}

TEST(Callbacks, ChildFunctionAfterTheChildDiedThrowsChildCrashed) {
  auto w = procxy::spawn<Worker>();
  auto scale = w.make_scaler(2).get();
  ::kill(w.pid(), SIGKILL);
  EXPECT_THROW((void)w.add(1, 1).get(), procxy::child_crashed);
  EXPECT_THROW(scale(1), procxy::child_crashed);
}

TEST(Callbacks, ChildFunctionAfterTheProxyIsGoneThrowsTerminated) {
  std::function<int(int)> scale;
  {
    auto w = procxy::spawn<Worker>();
    scale = w.make_scaler(2).get();
  }
  EXPECT_THROW(scale(1), procxy::terminated);
}

TEST(Callbacks, KeptListenerIsCalledLaterAndReleasedByUnsubscribe) {
  auto w = procxy::spawn<Worker>();
  std::vector<int> seen;
  w.subscribe([&](Tick t) { seen.push_back(t.seq); }).get();
  settle(w);
  EXPECT_EQ(w.stats().callbacks_lent, 1u);
  w.publish(5).get();  // every invocation completed before publish's future is ready
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2, 3, 4}));
  w.unsubscribe().get();
  settle(w);
  EXPECT_EQ(w.stats().callbacks_lent, 0u);
}

TEST(Callbacks, CallbackInsideAStruct) {
  auto w = procxy::spawn<Worker>();
  std::vector<int> progress;
  EXPECT_EQ(w.run_job(Job{"four", [&](int p) { progress.push_back(p); }}).get(), 4);
  EXPECT_EQ(progress, (std::vector<int>{1, 2, 3}));
}

TEST(Callbacks, ExceptionFromAParentCallbackReachesTheCaller) {
  auto w = procxy::spawn<Worker>();
  try {
    w.transform({1, 2}, [](int x) -> int {
       if (x == 2) throw std::out_of_range("two is too many");
       return x;
     }).get();
    FAIL();
  } catch (const std::out_of_range& e) {  // parent → child (as out_of_range) → back to the caller
    EXPECT_STREQ(e.what(), "two is too many");
  }
  EXPECT_EQ(w.add(1, 2).get(), 3);  // the child keeps serving
}

TEST(Callbacks, ExceptionFromAChildFunctionIsRethrownInTheParent) {
  auto w = procxy::spawn<Worker>();
  auto thrower = w.make_thrower().get();
  try {
    thrower(4);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "child refuses 4");
    EXPECT_EQ(procxy::remote_info_of(e)->pid(), w.pid());
  }
}

TEST(Callbacks, ChildFunctionAsTheArgumentOfAParentFunction) {
  auto w = procxy::spawn<Worker>();
  auto helper_user = [](std::function<int(int)> helper) { return helper(1); };
  EXPECT_EQ(w.with_helper(helper_user).get(), 1001);  // higher order: a child function as argument
}

TEST(Callbacks, ReentrancyThreeLevelsDeep) {
  auto w = procxy::spawn<Worker>();
  std::function<int(int)> parent_side = [&](int depth) -> int {
    // Runs on the proxy's dispatch thread while the child waits for it; calls the child again.
    return w.nest(depth, parent_side).get();
  };
  EXPECT_EQ(w.nest(3, parent_side).get(), 3);
}

TEST(Callbacks, ParentCallbackCallsOtherMethodsOfTheSameProxy) {
  auto w = procxy::spawn<Worker>();
  EXPECT_EQ(w.call_twice([&](int x) { return w.add(x, 10).get(); }, 1).get(), 21);
}

TEST(Callbacks, ManyCallsEachWithACallbackLeaveNoRegistration) {
  auto w = procxy::spawn<Worker>();
  // 100,000 by default; the sanitizer runs (PROCXY_HYGIENE_CYCLES=100) do 10,000.
  const char* env = std::getenv("PROCXY_HYGIENE_CYCLES");
  const int n = 100 * (env ? std::max(1, std::atoi(env)) : 1000);
  long long sum = 0;
  for (int i = 0; i < n; ++i) sum += w.call_twice([](int x) { return x + 1; }, i).get();
  EXPECT_EQ(sum, static_cast<long long>(n) * (n - 1) / 2 + 2LL * n);
  settle(w);
  auto st = w.stats();
  EXPECT_EQ(st.callbacks_lent, 0u);
  EXPECT_EQ(st.callback_releases_in, static_cast<std::uint64_t>(n));
  EXPECT_EQ(st.callbacks_held, 0);
}

TEST(Callbacks, SeveralConcurrentCallsEachWithItsOwnCallback) {
  auto w = procxy::spawn<Worker>();
  std::vector<std::thread> ts;
  std::atomic<int> bad{0};
  for (int t = 0; t < 8; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        auto out = w.transform({i}, [t](int x) { return x * 100 + t; }).get();
        if (out != std::vector<int>{i * 100 + t}) ++bad;
      }
    });
  for (auto& th : ts) th.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(Callbacks, OneWayNotificationsArriveInOrderBeforeTheReply) {
  auto w = procxy::spawn<Worker>();
  std::vector<int> seen;
  w.stream(10'000, [&](int i) { seen.push_back(i); }).get();
  ASSERT_EQ(seen.size(), 10'000u);
  for (int i = 0; i < 10'000; ++i) ASSERT_EQ(seen[static_cast<std::size_t>(i)], i);
}

TEST(Callbacks, OneWayExceptionsGoToTheErrorHandler) {
  std::atomic<int> errors{0};
  auto w = procxy::spawn<Worker>({.on_callback_error = [&](std::exception_ptr) { ++errors; }});
  w.stream(3, [](int i) {
     if (i == 1) throw std::runtime_error("bad tick");
   }).get();
  EXPECT_EQ(errors.load(), 1);
}

TEST(Callbacks, LimitOnLentCallbacksFailsTheCallAndLeaksNothing) {
  auto w = procxy::spawn<Worker>({.max_callbacks = 2});
  w.hold([] {}).get();
  w.hold([] {}).get();
  EXPECT_THROW(w.hold([] {}).get(), procxy::serialization_error);
  EXPECT_EQ(w.stats().callbacks_lent, 2u);
  w.drop_all().get();
  settle(w);
  EXPECT_EQ(w.stats().callbacks_lent, 0u);
  w.hold([] {}).get();  // room again
}

TEST(Callbacks, TerminateReleasesEverything) {
  auto w = procxy::spawn<Worker>();
  w.hold([] {}).get();
  w.hold([] {}).get();
  EXPECT_EQ(w.stats().callbacks_lent, 2u);
  w.terminate();
  EXPECT_EQ(w.stats().callbacks_lent, 0u);
}

TEST(Callbacks, CallbackTimeout) {
  auto w = procxy::spawn<Worker>({.callback_timeout = 100ms});
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_ANY_THROW(w.transform({1}, [](int x) {
                      std::this_thread::sleep_for(500ms);
                      return x;
                    }).get());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 450ms + 500ms);
}

TEST(Callbacks, ChildCrashesWhileTheParentRunsItsCallback) {
  auto w = procxy::spawn<Worker>();
  int pid = w.pid();
  auto f = w.transform({1}, [pid](int x) {
    ::kill(pid, SIGKILL);
    std::this_thread::sleep_for(50ms);
    return x;
  });
  EXPECT_THROW(f.get(), procxy::child_crashed);
}

TEST(Callbacks, ParentCallbackDestroysTheProxy) {
  std::optional<procxy::proxy<Worker>> w;
  w.emplace(procxy::spawn<Worker>());
  std::promise<void> destroyed;
  auto f = w->transform({1, 2}, [&](int x) {
    w.reset();  // legal: terminate from the dispatch thread
    destroyed.set_value();
    return x;
  });
  EXPECT_THROW(f.get(), procxy::terminated);
  // `w` lives in this frame: the dispatch thread is still inside w.reset() (terminate waits for
  // the child) when f fails, so leave only after it is done with it.
  destroyed.get_future().wait();
}

TEST(Callbacks, InvokedFromAnAsyncMethodOnAnotherChildThread) {
  auto w = procxy::spawn<Worker>();
  int parent_pid = ::getpid();
  auto r = w.async_apply(
                [&](int x) {
                  EXPECT_EQ(::getpid(), parent_pid);
                  return x * 10;
                },
                4)
               .get();
  EXPECT_EQ(r, 40 + 50);
}

TEST(Callbacks, SeveralParametersOfSeveralTypes) {
  auto w = procxy::spawn<Worker>();
  auto r = w.describe([](int n, const std::string& s, std::vector<double> v, Tick t) {
              return std::to_string(n) + s + std::to_string(v.size()) + std::to_string(t.seq) +
                     (t.value == 2.5 && v[1] == 1.5 ? "ok" : "bad");
            }).get();
  EXPECT_EQ(r, "7seven23ok");
}

// A named function type, so the test can ask a std::function what it holds.
struct AddOne {
  int operator()(int x) const { return x + 1; }
};

TEST(Callbacks, AParentFunctionHandedBackIsTheParentsOwn) {
  auto w = procxy::spawn<Worker>();
  std::function<int(int)> back = w.echo_fn(AddOne{}).get();
  ASSERT_NE(back.target<AddOne>(), nullptr);  // not a proxy of a proxy
  auto before = w.stats().callback_invocations_out;
  EXPECT_EQ(back(1), 2);
  EXPECT_EQ(w.stats().callback_invocations_out, before);  // ran here, no message
  settle(w);
  EXPECT_EQ(w.stats().callbacks_lent, 0u);  // the child kept no copy
  EXPECT_EQ(w.stats().callbacks_held, 0);
}

TEST(Callbacks, AChildFunctionHandedBackIsTheChildsOwn) {
  auto w = procxy::spawn<Worker>();
  auto scale = w.make_scaler(3).get();
  // call_twice receives the child's own function: it runs there without a hop to the parent.
  EXPECT_EQ(w.call_twice(scale, 2).get(), 18);
  EXPECT_EQ(w.stats().callback_invocations_in, 0u);
  EXPECT_EQ(w.stats().callbacks_lent, 0u);
  // And back again, many times, with a release racing each hand-back.
  for (int i = 0; i < 200; ++i) EXPECT_EQ(w.call_twice(scale, i).get(), 9 * i);
  EXPECT_EQ(w.stats().callbacks_held, 1);
}

using procxy_test::serial_executor;

TEST(CallbackExecutor, CallbacksRunOnTheUsersExecutor) {
  serial_executor ex;
  auto w = procxy::spawn<Worker>({.callback_executor = ex.post()});
  std::vector<std::thread::id> where;
  auto out = w.transform({1, 2, 3}, [&](int x) {
                where.push_back(std::this_thread::get_id());
                return x * 2;
              }).get();
  EXPECT_EQ(out, (std::vector<int>{2, 4, 6}));
  ASSERT_EQ(where.size(), 3u);
  for (auto id : where) EXPECT_EQ(id, ex.id());
}

TEST(CallbackExecutor, OneWayCallbacksCompleteBeforeTheReply) {
  serial_executor ex;
  auto w = procxy::spawn<Worker>({.callback_executor = ex.post()});
  std::atomic<int> seen{0};
  std::atomic<bool> in_order{true};
  ex.hold(true);  // nothing runs yet: the reply must wait behind the notifications
  auto f = w.stream(1000, [&](int i) {
    if (seen.load() != i) in_order = false;
    ++seen;
  });
  EXPECT_EQ(f.wait_for(200ms), std::future_status::timeout);
  ex.hold(false);
  f.get();
  EXPECT_EQ(seen.load(), 1000);
  EXPECT_TRUE(in_order.load());
}

TEST(CallbackExecutor, ACallbackOnTheExecutorMayCallTheProxyAndWait) {
  serial_executor ex;
  auto w = procxy::spawn<Worker>({.callback_executor = ex.post()});
  std::function<int(int)> parent_side = [&](int depth) -> int {
    return w.nest(depth, parent_side).get();
  };
  EXPECT_EQ(w.nest(3, parent_side).get(), 3);
  // One-way callbacks queued behind a callback that waits run while it waits (nested, as on the
  // dispatch thread); a call made from a callback is not held behind them.
  std::atomic<int> sum{0};
  w.stream(3, [&](int i) { sum += w.add(i, 100).get(); }).get();
  for (int i = 0; i < 5000 && sum.load() != 303; ++i) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(sum.load(), 303);
}

TEST(CallbackExecutor, NoCallbackRunsAfterTheProxyIsDestroyed) {
  serial_executor ex;
  std::atomic<int> ran{0};
  {
    auto w = procxy::spawn<Worker>({.callback_executor = ex.post()});
    ex.hold(true);
    auto f = w.stream(50, [&](int) { ++ran; });
    for (int i = 0; i < 5000 && ex.queued() < 51; ++i) std::this_thread::sleep_for(1ms);
    EXPECT_GE(ex.queued(), 51u);  // 50 notifications + the reply behind them (+ a release)
    w.terminate();
    EXPECT_THROW(f.get(), procxy::terminated);
  }
  ex.hold(false);
  while (ex.queued() > 0) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(ran.load(), 0);
}

TEST(CallbackExecutor, ACallbackMayDestroyTheProxy) {
  serial_executor ex;
  std::optional<procxy::proxy<Worker>> w;
  w.emplace(procxy::spawn<Worker>({.callback_executor = ex.post()}));
  std::promise<void> destroyed;
  auto f = w->transform({1, 2}, [&](int x) {
    w.reset();
    destroyed.set_value();
    return x;
  });
  EXPECT_THROW(f.get(), procxy::terminated);
  destroyed.get_future().wait();
}

}  // namespace callback_test
