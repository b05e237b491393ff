// expect: procxy: a callback parameter is an rvalue reference
// expect-gnu: A = std::__cxx11::basic_string<char>&&
#include <procxy/procxy.hpp>

#include <functional>
#include <string>

struct Svc {
  void feed(std::function<void(std::string&&)> f) { f(std::string("x")); }
};
PROCXY_CLASS(Svc, feed);

void use(procxy::proxy<Svc>& s) { (void)s.feed([](std::string&&) {}); }
