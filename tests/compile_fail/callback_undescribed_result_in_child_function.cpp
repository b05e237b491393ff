// expect: procxy: this class is neither an aggregate nor described
// expect-gnu: R = Opaque
#include <procxy/procxy.hpp>

#include <functional>

struct Opaque {
  explicit Opaque(int) {}
};

struct Svc {
  // A function handed to the parent whose result type cannot cross.
  std::function<Opaque(int)> make() { return [](int x) { return Opaque(x); }; }
};
PROCXY_CLASS(Svc, make);

void use(procxy::proxy<Svc>& s) { (void)s.make(); }
