// share<T>(key, options, args...) (procxy/shared.hpp): one child per key, constructor arguments
// and options; it ends with its last holder; concurrent first uses start one child.
#include "procxy/shared.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "procxy/procxy.hpp"

using namespace std::chrono_literals;

namespace shared_test {

class Named {
 public:
  explicit Named(std::string name) : name_(std::move(name)) {}
  std::string name() const { return name_; }
  int where() const { return static_cast<int>(::getpid()); }
  int crash() {
    ::signal(SIGSEGV, SIG_DFL);  // sanitizers install a SIGSEGV handler that would exit(1)
    ::raise(SIGSEGV);
    return 0;
  }

 private:
  std::string name_;
};
PROCXY_CLASS(Named, name, where, crash);

}  // namespace shared_test

namespace {

using shared_test::Named;

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

TEST(Shared, TheSameKeyArgumentsAndOptionsGiveTheSameChild) {
  auto a = procxy::share<Named>("same", {}, "db");
  auto b = procxy::share<Named>("same", {}, std::string("db"));  // the same argument, as a string
  EXPECT_EQ(a.get(), b.get());
  EXPECT_EQ(a->where().get(), b->where().get());
  EXPECT_EQ(b->name().get(), "db");
}

TEST(Shared, AnotherKeyArgumentOrOptionIsAnotherChild) {
  auto base = procxy::share<Named>("distinct", {}, "db");
  const int pid = base->where().get();
  std::set<int> pids{pid};
  auto other_key = procxy::share<Named>("distinct-2", {}, "db");
  auto other_arg = procxy::share<Named>("distinct", {}, "db2");
  auto other_timeout = procxy::share<Named>("distinct", {.call_timeout = 5s}, "db");
  auto other_env = procxy::share<Named>("distinct", {.env = {{"X", "1"}}}, "db");
  auto with_hook =
      procxy::share<Named>("distinct", {.on_exit = [](const procxy::exit_info&) {}}, "db");
  for (auto* p : {&other_key, &other_arg, &other_timeout, &other_env, &with_hook}) {
    EXPECT_NE(p->get(), base.get());
    pids.insert((*p)->where().get());
  }
  EXPECT_EQ(pids.size(), 6u);
  EXPECT_EQ(other_arg->name().get(), "db2");
  // The same options again (an equal environment) share.
  auto same_env = procxy::share<Named>("distinct", {.env = {{"X", "1"}}}, "db");
  EXPECT_EQ(same_env.get(), other_env.get());
}

TEST(Shared, TheChildEndsWhenTheLastHolderLetsGo) {
  auto a = procxy::share<Named>("last", {}, "x");
  auto b = procxy::share<Named>("last", {}, "x");
  const int pid = a->where().get();
  a.reset();
  EXPECT_EQ(b->where().get(), pid);  // still served
  b.reset();
  EXPECT_TRUE(eventually([&] { return !process_alive(pid); }));
  // A later share starts a new child.
  auto c = procxy::share<Named>("last", {}, "x");
  EXPECT_NE(c->where().get(), pid);
}

TEST(Shared, ConcurrentFirstUsesStartExactlyOneChild) {
  constexpr int threads = 16;
  std::vector<procxy::shared<Named>> got(threads);
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i)
    ts.emplace_back(
        [&, i] { got[static_cast<std::size_t>(i)] = procxy::share<Named>("race", {}, "r"); });
  for (auto& t : ts) t.join();
  for (auto& g : got) EXPECT_EQ(g.get(), got[0].get());
  EXPECT_EQ(got[0]->name().get(), "r");
}

TEST(Shared, AChildThatCrashedIsNotHandedOutAgain) {
  auto a = procxy::share<Named>("crash", {}, "c");
  const int pid = a->where().get();
  EXPECT_THROW((void)a->crash().get(), procxy::child_crashed);
  EXPECT_TRUE(eventually([&] { return !a->running(); }));
  auto b = procxy::share<Named>("crash", {}, "c");
  EXPECT_NE(b.get(), a.get());
  EXPECT_NE(b->where().get(), pid);
  EXPECT_THROW((void)a->name().get(), procxy::child_crashed);  // the old holder keeps its child
}

}  // namespace
