// expect: procxy: polymorphic class types cannot cross a process boundary
// expect: pass a plain aggregate or a described value type instead
// expect-gnu: U = Shape
#include <procxy/procxy.hpp>

struct Shape {
  virtual ~Shape() = default;
  virtual double area() const { return 0; }
};
struct Painter {
  double paint(const Shape& s) { return s.area(); }
};
PROCXY_CLASS(Painter, paint);
