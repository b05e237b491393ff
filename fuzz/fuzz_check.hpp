// fuzz/fuzz_check.hpp — how the fuzz targets fail: a violated invariant, or an exception other
// than the ones a decoder documents, prints what happened and aborts, which libFuzzer (and the
// corpus replay under CTest) reports as a crash.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <typeinfo>

#include "procxy/detail/remote_error.hpp"

#define PROCXY_FUZZ_CHECK(cond)                                                                \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      std::fprintf(stderr, "%s:%d: fuzz invariant violated: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                            \
    }                                                                                          \
  } while (false)

namespace procxy_fuzz {

// Call from a catch (...) block: names the exception that escaped a decoder, then aborts.
[[noreturn]] inline void unexpected_exception(const char* where) {
  try {
    throw;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: unexpected exception %s: %s\n", where,
                 procxy::detail::demangle(typeid(e).name()).c_str(), e.what());
  } catch (...) {
    std::fprintf(stderr, "%s: unexpected exception not derived from std::exception\n", where);
  }
  std::abort();
}

}  // namespace procxy_fuzz
