// expect: procxy: raw pointers cannot cross a process boundary
// expect: pass the pointee by value or const reference
// expect-gnu: U = const int*
#include <procxy/procxy.hpp>

struct Holder {
  int read(const int* p) { return *p; }
};
PROCXY_CLASS(Holder, read);
