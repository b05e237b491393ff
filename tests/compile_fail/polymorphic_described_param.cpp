// expect: procxy: polymorphic class types cannot cross a process boundary
// expect-gnu: U = Shape
// A described class is still polymorphic: encoding it would slice whatever derived object the
// reference names, so it must be rejected like any other polymorphic type.
#include <procxy/procxy.hpp>

#include <boost/describe/class.hpp>

struct Shape {
  virtual ~Shape() = default;
  double size = 0;
  BOOST_DESCRIBE_CLASS(Shape, (), (size), (), ())
};
struct Painter {
  double paint(const Shape& s) { return s.size; }
};
PROCXY_CLASS(Painter, paint);
