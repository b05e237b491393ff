// expect: procxy: polymorphic class types cannot cross a process boundary
// expect-gnu: U = Shape
#include <procxy/procxy.hpp>

struct Shape {
  virtual ~Shape() = default;
  virtual double area() const { return 0; }
};
struct Factory {
  Shape make() { return {}; }
};
PROCXY_CLASS(Factory, make);
