// A dedicated worker binary: serves Greeter and Counter for parents that spawn it with
// spawn_mode::executable. Counter's members are linked here (counter.cpp), not in its parents.
#include <cstdio>

#include "counter.hpp"
#include "greeter.hpp"

namespace worker_demo {
// The worker's build of Versioned; tests/interface_test.cpp describes another (a changed
// signature, a changed return type, a struct with a changed field, an added method) to check that
// the spawn fails naming the differences.
struct Dims {
  int w;
  int h;
};
class Versioned {
 public:
  explicit Versioned(int base) : base_(base) {}
  int size(int n) const { return base_ + n; }
  std::string label() const { return "v1"; }
  double ratio(int n) const { return n / 2.0; }
  int area(Dims d) const { return d.w * d.h; }

 private:
  int base_;
};
PROCXY_CLASS(Versioned, size, label, ratio, area);
PROCXY_CONSTRUCTOR(Versioned, int);

PROCXY_CONSTRUCTOR(Greeter, std::string);  // string literals, const char* and string_view too
PROCXY_CONSTRUCTOR(Counter, int);          // also registers Counter's members (PROCXY_INTERFACE)
PROCXY_CONSTRUCTOR(Counter, std::string, int);
}  // namespace worker_demo

int main(int argc, char** argv) {
  procxy::init(argc, argv);
  std::fprintf(stderr,
               "procxy_test_worker: start me with procxy::spawn (spawn_mode::executable)\n");
  return 2;
}
