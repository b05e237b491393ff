// expect: procxy: spawn<T>(options, args...)
// expect: T has no constructor taking these arguments
// expect-gnu: T = Widget
#include <procxy/procxy.hpp>

#include <string>

struct Widget {
  explicit Widget(int size) : size_(size) {}
  int size() const { return size_; }
  int size_;
};
PROCXY_CLASS(Widget, size);

void use() { auto w = procxy::spawn<Widget>({}, std::string("not an int")); }
