// expect: procxy: a method parameter is a non-const lvalue reference
// expect-gnu: P = std::vector<int>&
#include <procxy/procxy.hpp>

#include <vector>

struct Filler {
  void fill(std::vector<int>& v) { v.push_back(1); }
};

void use(procxy::proxy<Filler>& f) {
  std::vector<int> v;
  (void)f.call<&Filler::fill>(v);
}
