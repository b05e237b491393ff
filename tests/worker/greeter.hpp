// A class served by a dedicated worker binary (tests/worker/worker_main.cpp). Parent and worker
// both include this description; the worker also registers the constructors parents use.
#pragma once

#include <unistd.h>

#include <string>

#include "procxy/procxy.hpp"

namespace worker_demo {

// A real invalid write in a function of the worker's own (tests/crash_test.cpp: the crash report
// of a worker names it). Not instrumented, so sanitizers do not turn it into a report of theirs.
__attribute__((noinline, no_sanitize("address", "undefined"))) inline void worker_invalid_write() {
  volatile int* volatile p = nullptr;
  *p = 7;
}

class Greeter {
 public:
  explicit Greeter(std::string greeting) : greeting_(std::move(greeting)) {}
  Greeter(std::string greeting, int times) : greeting_(std::move(greeting)) {
    for (int i = 1; i < times; ++i) greeting_ += greeting_;
  }
  std::string greet(const std::string& name) const { return greeting_ + ", " + name; }
  int child_pid() const { return static_cast<int>(::getpid()); }
  std::string binary() const {
    char buf[4096];
    auto n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
  }
  int crash() const {
    worker_invalid_write();
    return 0;
  }

 private:
  std::string greeting_;
};
PROCXY_CLASS(Greeter, greet, child_pid, binary, crash);

}  // namespace worker_demo
