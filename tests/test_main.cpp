// GoogleTest main for tests that spawn children: in a child, procxy::init serves and never returns.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "procxy/init.hpp"
#include "sanitizers.hpp"

namespace {

// Under ThreadSanitizer a process that ends with more than one thread sleeps atexit_sleep_ms
// (default 1 s) in exit/_exit, so every child would take a second to end. Children inherit this
// setting; the parent, already started, keeps its own. (scripts/run-sanitizers.sh sets it too;
// this covers running a test binary by hand.)
#ifdef PROCXY_TEST_TSAN
[[maybe_unused]] const bool tsan_children_exit_promptly = [] {
  const char* old = std::getenv("TSAN_OPTIONS");
  std::string v = old ? std::string(old) + ":atexit_sleep_ms=0" : std::string("atexit_sleep_ms=0");
  ::setenv("TSAN_OPTIONS", v.c_str(), 1);  // static initialisation: no other thread yet
  return true;
}();
#endif

}  // namespace

int main(int argc, char** argv) {
  procxy::init(argc, argv);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
