// A parent that uses a class it only declares (PROCXY_INTERFACE): this executable links no
// definition of Counter's members (tests/worker/counter.cpp is linked into the worker only), so
// linking it at all is half of the test; the calls below are the other half.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <vector>

#include "counter.hpp"

namespace {

using worker_demo::Counter;

procxy::spawn_options worker() {
  return {.mode = procxy::spawn_mode::executable, .executable = PROCXY_TEST_WORKER};
}

TEST(Interface, ParentCallsAClassWhoseMembersItDoesNotLink) {
  auto c = procxy::spawn<Counter>(worker(), 10);
  EXPECT_EQ(c.add(5).get(), 15);
  EXPECT_EQ(c.add(1, 2).get(), 18);  // a described overload
  EXPECT_EQ(c.name().get(), "counter");
  EXPECT_EQ(c.history().get(), (std::vector<int>{5, 3}));
  EXPECT_EQ(c.call<static_cast<int (Counter::*)(int)>(&Counter::add)>(2).get(), 20);
}

TEST(Interface, CallbacksEventsAndPropertiesWork) {
  auto c = procxy::spawn<Counter>(worker(), "named", 1);
  EXPECT_EQ(c.name().get(), "named");
  std::vector<int> seen;
  c.count_to(3, [&](int i) { seen.push_back(i); }).get();
  EXPECT_EQ(seen, (std::vector<int>{1, 2, 3}));
  std::atomic<int> last{0};
  auto sub = c.changed().on([&](int v) { last = v; });
  c.add(4).get();
  EXPECT_EQ(last.load(), 5);
  EXPECT_EQ(c.value(), 5);
}

TEST(Interface, SpawningItInThisBinaryIsASpawnErrorNamingTheWay) {
  auto c = procxy::spawn<Counter>({}, 1);  // re-exec: this binary has no constructor for it
  try {
    c.started().get();
    FAIL() << "no exception";
  } catch (const procxy::spawn_error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("no constructor worker_demo::Counter(int)"), std::string::npos) << what;
    EXPECT_NE(what.find("PROCXY_INTERFACE"), std::string::npos) << what;
  }
}

}  // namespace

// The parent's build of Versioned: size changed from int(int) to long(long), ratio's result from
// double to int (the parameters are the same), Dims's h from int to float (the same size: decoded
// as the other it would be a silently wrong value), and extra() added. The worker
// (tests/worker/worker_main.cpp) has the other build.
namespace worker_demo {
struct Dims {
  int w;
  float h;
};
class Versioned {
 public:
  explicit Versioned(int base);
  long size(long n) const;
  std::string label() const;
  int ratio(int n) const;
  int area(Dims d) const;
  int extra();
};
PROCXY_INTERFACE(Versioned, size, label, ratio, area, extra);
}  // namespace worker_demo

namespace {
TEST(Interface, ADescriptionThatDiffersFromTheWorkersIsASpawnErrorNamingEachDifference) {
  auto v = procxy::spawn<worker_demo::Versioned>(worker(), 1);
  try {
    v.started().get();
    FAIL() << "no exception";
  } catch (const procxy::spawn_error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("does not match"), std::string::npos) << what;
    EXPECT_NE(what.find("Versioned::size: long (worker_demo::Versioned::*)(long) const"),
              std::string::npos)
        << what;
    EXPECT_NE(what.find("the child has worker_demo::Versioned::size: int "
                        "(worker_demo::Versioned::*)(int) const"),
              std::string::npos)
        << what;
    EXPECT_NE(what.find("Versioned::extra"), std::string::npos) << what;
    // A result type alone, and a struct's field alone, are differences too.
    EXPECT_NE(what.find("Versioned::ratio: int (worker_demo::Versioned::*)(int) const (the child "
                        "has worker_demo::Versioned::ratio: double"),
              std::string::npos)
        << what;
    EXPECT_NE(what.find("Versioned::area: int (worker_demo::Versioned::*)(worker_demo::Dims) const "
                        "(the child has the same signature, but a type in it is built "
                        "differently"),
              std::string::npos)
        << what;
    EXPECT_EQ(what.find("Versioned::label"), std::string::npos) << what;  // it matches
  }
  // Nothing reached the wrong code: every call fails the same way.
  EXPECT_THROW(v.label().get(), procxy::spawn_error);
}
}  // namespace
