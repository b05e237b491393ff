// A worker binary serving sandbox_test::Untrusted (spawn_mode::executable in sandbox_test).
#include "untrusted.hpp"

namespace sandbox_test {
PROCXY_CONSTRUCTOR(Untrusted);
}  // namespace sandbox_test

int main(int argc, char** argv) {
  procxy::init(argc, argv);
  return 2;
}
