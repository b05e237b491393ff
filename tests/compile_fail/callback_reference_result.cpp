// expect: procxy: a callback cannot return a reference
// expect-gnu: R = const int&
#include <procxy/procxy.hpp>

#include <functional>

struct Svc {
  int read(std::function<const int&()> f) { return f(); }
};
PROCXY_CLASS(Svc, read);

void use(procxy::proxy<Svc>& s) {
  static int v = 1;
  (void)s.read([]() -> const int& { return v; });
}
