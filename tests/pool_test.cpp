// pool<T> (procxy/pool.hpp): routing by load and by key, broadcast, replacement of ended members,
// resize, terminate, and what a pool does with events.
#include "procxy/pool.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "procxy/procxy.hpp"

using namespace std::chrono_literals;

namespace pool_test {

class Worker {
 public:
  explicit Worker(std::string name) : name_(std::move(name)) {
    if (name_ == "throw") throw std::runtime_error("this worker never starts");
  }
  int where() const { return static_cast<int>(::getpid()); }
  int busy(int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return where();
  }
  int count() { return ++count_; }
  std::string name() const { return name_; }
  int crash() {
    ::signal(SIGSEGV, SIG_DFL);  // sanitizers install a SIGSEGV handler that would exit(1)
    ::raise(SIGSEGV);
    return 0;
  }
  int ping(int x) {
    tick.emit(x);
    return x;
  }
  procxy::event<int> tick;

 private:
  std::string name_;
  int count_ = 0;
};
PROCXY_CLASS(Worker, where, busy, count, name, crash, ping, tick);

}  // namespace pool_test

namespace {

using pool_test::Worker;

bool process_alive(int pid) { return ::kill(pid, 0) == 0; }

template <class F>
bool eventually(F f, std::chrono::milliseconds within = 10s) {
  const auto end = std::chrono::steady_clock::now() + within;
  while (std::chrono::steady_clock::now() < end) {
    if (f()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return f();
}

TEST(Pool, MembersAreSeparateChildrenBuiltFromTheSameArguments) {
  auto p = procxy::spawn_pool<Worker>({.size = 3}, {}, "w");  // a C string, kept for each
  p.started().get();
  EXPECT_EQ(p.size(), 3u);
  auto names = p.broadcast<&Worker::name>();
  ASSERT_EQ(names.size(), 3u);
  for (auto& n : names) EXPECT_EQ(n.get(), "w");
  std::set<int> pids;
  for (auto& f : p.broadcast<&Worker::where>()) pids.insert(f.get());
  EXPECT_EQ(pids.size(), 3u);
  EXPECT_EQ(pids.count(::getpid()), 0u);
  for (auto& m : p.member_stats()) {
    EXPECT_TRUE(m.running);
    EXPECT_TRUE(pids.count(m.pid)) << m.pid;
  }
}

TEST(Pool, ACallGoesToTheMemberWithTheFewestCallsInFlight) {
  auto p = procxy::spawn_pool<Worker>({.size = 2}, {}, "w");
  p.started().get();
  // The first member is busy with a long call: the next calls all go to the other one.
  auto slow = p.busy(500);
  std::set<int> quick;
  for (int i = 0; i < 5; ++i) quick.insert(p.busy(0).get());
  const int slow_pid = slow.get();
  EXPECT_EQ(quick.size(), 1u);
  EXPECT_EQ(quick.count(slow_pid), 0u);
  // Two long calls at once run on two children, side by side.
  const auto t0 = std::chrono::steady_clock::now();
  auto a = p.busy(300);
  auto b = p.busy(300);
  EXPECT_NE(a.get(), b.get());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 590ms);
}

TEST(Pool, CallsOfOneKeyAlwaysGoToTheSameMember) {
  auto p = procxy::spawn_pool<Worker>({.size = 3}, {}, "w");
  const int pid = p.by_key(std::string("alice")).where().get();
  for (int i = 1; i <= 10; ++i) {
    EXPECT_EQ(p.by_key(std::string("alice")).where().get(), pid);
    EXPECT_EQ(p.by_key(std::string("alice")).count().get(), i);  // its state stays with it
  }
  std::set<int> members;
  for (int k = 0; k < 64; ++k) members.insert(p.by_key(k).where().get());
  EXPECT_EQ(members.size(), 3u);  // keys spread over the members
}

TEST(Pool, MemberIAndBroadcastReachEachMember) {
  auto p = procxy::spawn_pool<Worker>({.size = 2}, {}, "w");
  EXPECT_EQ(p.member(1).count().get(), 1);
  EXPECT_EQ(p.member(1).count().get(), 2);
  EXPECT_EQ(p.member(0).count().get(), 1);
  auto counts = p.broadcast<&Worker::count>();
  ASSERT_EQ(counts.size(), 2u);
  EXPECT_EQ(counts[0].get(), 2);
  EXPECT_EQ(counts[1].get(), 3);
  EXPECT_THROW((void)p.member(2), std::out_of_range);
}

TEST(Pool, ACrashedMemberIsReplacedAndOnlyItsCallsFail) {
  auto p = procxy::spawn_pool<Worker>({.size = 2}, {}, "w");
  p.started().get();
  const int old0 = p.member(0).where().get();
  const int other = p.member(1).where().get();
  auto crash = p.member(0).crash();
  auto held = p.member(0).busy(0);  // queued behind the crash on member 0
  EXPECT_THROW((void)crash.get(), procxy::child_crashed);
  EXPECT_THROW((void)held.get(), procxy::child_crashed);
  EXPECT_TRUE(eventually([&] { return !process_alive(old0); }));
  // The next look replaces it: a new child from the same arguments; the other member is kept.
  const int new0 = p.member(0).where().get();
  EXPECT_NE(new0, old0);
  EXPECT_EQ(p.member(0).name().get(), "w");
  EXPECT_EQ(p.member(1).where().get(), other);
  EXPECT_EQ(p.replacements(), 1u);
  auto st = p.member_stats();
  ASSERT_EQ(st.size(), 2u);
  EXPECT_EQ(st[0].replaced, 1u);
  EXPECT_EQ(st[1].replaced, 0u);
  // Calls through the pool go on being served by both.
  std::set<int> pids;
  std::vector<procxy::future<int>> fs;
  for (int i = 0; i < 4; ++i) fs.push_back(p.busy(50));
  for (auto& f : fs) pids.insert(f.get());
  EXPECT_EQ(pids, (std::set<int>{new0, other}));
}

TEST(Pool, CallsAvoidAnEndedMemberWhenReplacementIsOff) {
  auto p = procxy::spawn_pool<Worker>({.size = 2, .replace_ended = false}, {}, "w");
  p.started().get();
  const int other = p.member(1).where().get();
  EXPECT_THROW((void)p.member(0).crash().get(), procxy::child_crashed);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(p.where().get(), other);
  EXPECT_EQ(p.replacements(), 0u);
  EXPECT_FALSE(p.running());
}

TEST(Pool, AMemberWhoseConstructorThrowsIsNotRestartedAndCallsSayWhy) {
  auto p = procxy::spawn_pool<Worker>({.size = 2}, {}, "throw");
  EXPECT_THROW(p.started().get(), procxy::spawn_error);
  try {
    (void)p.where().get();
    FAIL() << "a call succeeded";
  } catch (const procxy::spawn_error& e) {
    EXPECT_NE(std::string(e.what()).find("constructor"), std::string::npos) << e.what();
  }
  EXPECT_EQ(p.replacements(), 0u);
}

TEST(Pool, ResizeStartsMembersAndEndsTakenOutOnesAfterTheirCalls) {
  auto p = procxy::spawn_pool<Worker>({.size = 1}, {}, "w");
  const int first = p.where().get();
  p.resize(3);
  EXPECT_EQ(p.size(), 3u);
  std::set<int> pids;
  for (auto& f : p.broadcast<&Worker::where>()) pids.insert(f.get());
  EXPECT_EQ(pids.size(), 3u);
  const int last = p.member(2).where().get();
  auto running = p.member(2).busy(300);  // still in flight when member 2 is taken out
  p.resize(1);
  EXPECT_EQ(p.size(), 1u);
  EXPECT_EQ(running.get(), last);  // completed, not failed
  EXPECT_EQ(p.where().get(), first);
  (void)p.where().get();  // a later call ends the taken-out members whose calls are done
  EXPECT_TRUE(eventually([&] {
    (void)p.where().get();
    return !process_alive(last);
  }));
  p.resize(0);
  EXPECT_THROW((void)p.where().get(), procxy::terminated);
}

TEST(Pool, TerminateEndsEveryMember) {
  auto p = procxy::spawn_pool<Worker>({.size = 2}, {}, "w");
  std::vector<int> pids;
  for (auto& f : p.broadcast<&Worker::where>()) pids.push_back(f.get());
  EXPECT_TRUE(p.running());
  p.terminate();
  EXPECT_FALSE(p.running());
  for (int pid : pids) EXPECT_TRUE(eventually([&] { return !process_alive(pid); })) << pid;
  EXPECT_THROW((void)p.where().get(), procxy::terminated);
  auto moved = std::move(p);
  EXPECT_THROW((void)p.where().get(), procxy::terminated);  // moved-from
}

TEST(Pool, SizeZeroMeansOneMemberPerCpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(::sched_getaffinity(0, sizeof set, &set), 0);
  auto p = procxy::spawn_pool<Worker>({}, {}, "w");
  EXPECT_EQ(p.size(), static_cast<std::size_t>(CPU_COUNT(&set)));
}

TEST(Pool, EventsAreSubscribedPerMember) {
  auto p = procxy::spawn_pool<Worker>({.size = 2}, {}, "w");
  EXPECT_THROW((void)p.tick().on([](int) {}), std::logic_error);
  std::promise<int> got;
  auto sub = p.member(1).tick().on([&](int x) { got.set_value(x); });
  EXPECT_EQ(p.member(1).ping(7).get(), 7);
  auto f = got.get_future();
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(f.get(), 7);
}

TEST(Pool, StatsSumTheMembers) {
  auto p = procxy::spawn_pool<Worker>({.size = 2}, {}, "w");
  for (int i = 0; i < 10; ++i) (void)p.busy(0).get();
  auto per = p.member_stats();
  auto sum = p.stats();
  EXPECT_EQ(sum.frames_sent, per[0].channel.frames_sent + per[1].channel.frames_sent);
  EXPECT_GE(sum.frames_sent, 10u);
}

}  // namespace
