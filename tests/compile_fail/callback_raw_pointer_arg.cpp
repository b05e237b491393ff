// expect: procxy: raw pointers cannot cross a process boundary
// expect-gnu: T = int*
#include <procxy/procxy.hpp>

#include <functional>

struct Svc {
  void visit(std::function<void(int*)> f) { f(nullptr); }
};
PROCXY_CLASS(Svc, visit);

void use(procxy::proxy<Svc>& s) { (void)s.visit([](int*) {}); }
