// expect: procxy: a callback parameter is a non-const lvalue reference
// expect-gnu: A = std::__cxx11::basic_string<char>&
#include <procxy/procxy.hpp>

#include <functional>
#include <string>

struct Svc {
  void visit(std::function<void(std::string&)> f) {
    std::string s;
    f(s);
  }
};
PROCXY_CLASS(Svc, visit);

void use(procxy::proxy<Svc>& s) { (void)s.visit([](std::string&) {}); }
