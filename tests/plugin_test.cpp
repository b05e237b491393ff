// spawn_options::module: the class lives in a shared library loaded by procxy-host; this parent
// links neither the library nor the class's members (tests/plugin/plugin.cmake).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "parser.hpp"

namespace {

using plugin_demo::Parser;

procxy::spawn_options module() {
  return {.executable = PROCXY_TEST_HOST, .module = PROCXY_TEST_MODULE};
}

TEST(Plugin, AClassFromAModuleServesThroughTheHost) {
  auto p = procxy::spawn<Parser>(module(), ";");
  EXPECT_EQ(p.keys("a=1;b=2;c=3").get(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(p.parsed().get(), 1);
  EXPECT_EQ(p.loaded_from_module().get(), 4242);
}

TEST(Plugin, TheHostIsFoundThroughPROCXY_HOST) {
  ::setenv("PROCXY_HOST", PROCXY_TEST_HOST, 1);
  auto p = procxy::spawn<Parser>({.module = PROCXY_TEST_MODULE}, ",");
  ::unsetenv("PROCXY_HOST");
  EXPECT_EQ(p.keys("x=1,y=2").get(), (std::vector<std::string>{"x", "y"}));
}

TEST(Plugin, AModuleThatDoesNotLoadIsASpawnErrorNamingItAndWhy) {
  auto p = procxy::spawn<Parser>({.executable = PROCXY_TEST_HOST, .module = "/nonexistent/libx.so"},
                                 ";");
  try {
    p.started().get();
    FAIL() << "no exception";
  } catch (const procxy::spawn_error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("the module /nonexistent/libx.so could not be loaded"), std::string::npos)
        << what;
    EXPECT_NE(what.find("No such file"), std::string::npos) << what;
  }
}

TEST(Plugin, ForkModeWithAModuleIsASpawnError) {
  EXPECT_THROW(procxy::spawn<Parser>({.mode = procxy::spawn_mode::fork,
                                      .executable = PROCXY_TEST_HOST,
                                      .module = PROCXY_TEST_MODULE},
                                     ";"),
               procxy::spawn_error);
}

// The module crashes on a malformed record: the parent sees child_crashed and goes on with a
// fresh child.
TEST(Plugin, ACrashInTheModuleIsChildCrashedAndAFreshChildServes) {
  auto p = procxy::spawn<Parser>(module(), ";");
  EXPECT_EQ(p.keys("a=1").get().size(), 1u);
  try {
    p.keys("!boom").get();
    FAIL() << "no exception";
  } catch (const procxy::error& e) {
    EXPECT_EQ(e.kind(), procxy::error_kind::child_crashed) << e.what();
  }
  p = procxy::spawn<Parser>(module(), ";");
  EXPECT_EQ(p.keys("k=v").get(), (std::vector<std::string>{"k"}));
}

}  // namespace
