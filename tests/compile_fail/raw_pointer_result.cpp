// expect: procxy: raw pointers cannot cross a process boundary
// expect-gnu: U = int*
#include <procxy/procxy.hpp>

struct Holder {
  int value = 0;
  int* address() { return &value; }
};
PROCXY_CLASS(Holder, address);
