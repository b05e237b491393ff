// A program that links procxy and the C++ runtime statically (-static-libstdc++, see
// static_runtime.cmake). procxy defines a weak __cxa_throw hook for its backtraces
// (src/backtrace.cpp); here the runtime's own __cxa_throw must be the one in use, so that
// exceptions behave exactly as in a program without procxy: thrown, rethrown, caught, carried in
// an exception_ptr, and across the process boundary, with backtraces off and on.
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>

#include "procxy/procxy.hpp"

namespace static_runtime {

struct custom_error {
  int code;
};

struct Thrower {
  int fail(int code) {
    if (code > 0) throw std::domain_error("child failed with " + std::to_string(code));
    return -code;
  }
};
PROCXY_CLASS(Thrower, fail);

int failures = 0;

void check(bool ok, const char* what) {
  std::printf("%s: %s\n", ok ? "ok" : "FAILED", what);
  if (!ok) ++failures;
}

[[gnu::noinline]] void throw_custom(int code) { throw custom_error{code}; }

void local_exceptions() {
  int caught = 0;
  try {
    throw std::runtime_error("local");
  } catch (const std::runtime_error& e) {
    caught += std::string(e.what()) == "local";
  }
  try {
    try {
      throw_custom(7);
    } catch (const custom_error&) {
      throw;  // __cxa_rethrow
    }
  } catch (const custom_error& e) {
    caught += e.code == 7;
  }
  std::exception_ptr p;
  try {
    throw std::out_of_range("kept");
  } catch (...) {
    p = std::current_exception();
  }
  try {
    std::rethrow_exception(p);
  } catch (const std::out_of_range& e) {
    caught += std::string(e.what()) == "kept";
  }
  check(caught == 3, "throw, rethrow and exception_ptr in this process");
}

void remote_exception(bool backtrace) {
  auto t = procxy::spawn<Thrower>({.backtrace = backtrace});
  check(t.fail(-5).get() == 5, "a call that returns");
  try {
    t.fail(3).get();
    check(false, "a call that throws");
  } catch (const std::domain_error& e) {
    check(std::string(e.what()) == "child failed with 3",
          "the child's exception, same type and message");
    const auto* info = procxy::remote_info_of(e);
    std::string trace = info ? info->backtrace() : "?";
    if (backtrace)
      check(trace.rfind("(no backtrace: ", 0) == 0, "backtrace on: a note instead of a stack");
    else
      check(trace.empty(), "backtrace off: none");
    if (backtrace) std::printf("  %s", trace.c_str());
  }
}

}  // namespace static_runtime

int main(int argc, char** argv) {
  using namespace static_runtime;
  procxy::init(argc, argv);
  check(*procxy::detail::throw_backtrace_unavailable_reason() != '\0',
        "the C++ runtime's __cxa_throw is the one in use, not procxy's hook");
  local_exceptions();
  remote_exception(false);
  remote_exception(true);
  local_exceptions();  // again, after backtraces were enabled in a child
  if (failures == 0) std::printf("static runtime: all checks passed\n");
  return failures == 0 ? 0 : 1;
}
