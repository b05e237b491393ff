// Built against an installed (and moved) procxy by tests/install/run_install_test.cmake, once
// with CMake (CMakeLists.txt here) and once with pkg-config.
#include <cstdio>
#include <procxy/procxy.hpp>
#include <stdexcept>
#include <string>

#ifdef CONSUMER_MODULE
#include "greeter.hpp"
#endif

[[gnu::noinline]] void consumer_thrower(int code) {
  throw std::runtime_error("consumer failure " + std::to_string(code));
}

struct Adder {
  int add(int a, int b) { return a + b; }
  void fail(int code) { consumer_thrower(code); }
};
PROCXY_CLASS(Adder, add, fail);

int main(int argc, char** argv) {
  procxy::init(argc, argv);
  auto a = procxy::spawn<Adder>({.backtrace = true});
  int r = a.add(20, 22).get();
  std::printf("consumer: add(20, 22) = %d\n", r);
  try {
    a.fail(7).get();
  } catch (const std::runtime_error& e) {
    const auto* info = procxy::remote_info_of(e);
    std::string trace = info ? info->backtrace() : std::string();
    if (trace.find("consumer_thrower") != std::string::npos)
      std::printf("consumer: the backtrace names consumer_thrower\n");
    else
      std::printf("consumer: backtrace: %s\n", trace.c_str());
  }
#ifdef CONSUMER_MODULE  // the CMake consumer: a class from a module, in the installed host
  auto g = procxy::spawn<Greeter>({.executable = CONSUMER_HOST, .module = CONSUMER_MODULE}, "Hi");
  std::printf("consumer: %s\n", g.greet("consumer").get().c_str());
#endif
  return r == 42 ? 0 : 1;
}
