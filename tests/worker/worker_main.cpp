// A dedicated worker binary: serves Greeter for parents that spawn it with spawn_mode::executable.
#include <cstdio>

#include "greeter.hpp"

namespace worker_demo {
PROCXY_CONSTRUCTOR(Greeter, std::string);  // string literals, const char* and string_view too
}  // namespace worker_demo

int main(int argc, char** argv) {
  procxy::init(argc, argv);
  std::fprintf(stderr, "procxy_test_worker: start me with procxy::spawn (spawn_mode::executable)\n");
  return 2;
}
