// expect: procxy: raw pointers cannot cross a process boundary
// expect-gnu: U = const double*
// The macro-free form checks parameters too.
#include <procxy/procxy.hpp>

struct Holder {
  int read(const double* p) { return static_cast<int>(*p); }
};

void use(procxy::proxy<Holder>& h) {
  double d = 1;
  (void)h.call<&Holder::read>(&d);
}
