// expect: procxy: call<&C::m>() names a method of another class
// expect-gnu: MP = &Beta::f
#include <procxy/procxy.hpp>

struct Alpha {
  int f(int x) { return x; }
};
struct Beta {
  int f(int x) { return -x; }
};

void use(procxy::proxy<Alpha>& a) { (void)a.call<&Beta::f>(1); }
