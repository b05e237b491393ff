// expect: procxy: a callback parameter is an rvalue reference
#include <procxy/procxy.hpp>

#include <functional>
#include <string>

struct Svc {
  void feed(std::function<void(std::string&&)> f) { f(std::string("x")); }
};
PROCXY_CLASS(Svc, feed);

void use(procxy::proxy<Svc>& s) { (void)s.feed([](std::string&&) {}); }
